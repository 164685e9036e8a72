//! `followthrough dlq list|show|replay`: the dead letters (actions that failed for good,
//! or whose outcome nobody can know) seen and put back in the outbox from the command
//! line. The store does the work; this module chooses, prints and journals.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{ArgGroup, Subcommand};
use followthrough_core::{Clock as _, SystemClock};
use followthrough_store::{DeadLetter, Store};
use serde_json::{Value, json};

use crate::config::Validated;

/// How much of a dead letter's message `list` shows.
const SHORT_MESSAGE: usize = 60;

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List the dead letters waiting for a person, oldest first.
    ///
    /// One line each: id, dead_at, rule, action, connector, object, kind, message. Params
    /// are left out (they may hold personal data); `dlq show ID` prints them.
    List {
        /// Also list the letters already replayed.
        #[arg(long)]
        all: bool,
        /// Only the letters of this rule.
        #[arg(long, value_name = "RULE")]
        rule: Option<String>,
        /// Print a JSON array of dead letters (without `params`).
        #[arg(long)]
        json: bool,
    },
    /// Print every field of one dead letter, params included.
    ///
    /// Params, the API's last status and response, attempts, idempotency key, run id.
    /// Exit 1 if there is no such dead letter.
    Show {
        id: i64,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Put dead letters back in the outbox; a running server picks them up on its own.
    ///
    /// The jobs become pending and due now, their attempts counted from zero (the first
    /// one checks whether the action already took effect if its last outcome was
    /// unknown). A running server picks them up on its own, within outbox.poll_ms; if
    /// none runs, the next `serve` does. Ids that are unknown or already replayed are
    /// reported on stderr; exit 1 if none of the given ids was replayed.
    #[command(group(ArgGroup::new("which").required(true).args(["ids", "all"])))]
    Replay {
        /// The dead letters to replay (ids from `dlq list`).
        #[arg(value_name = "ID", conflicts_with = "all")]
        ids: Vec<i64>,
        /// Replay every waiting dead letter.
        #[arg(long)]
        all: bool,
        /// With --all: only the letters of this rule.
        #[arg(long, value_name = "RULE", requires = "all")]
        rule: Option<String>,
        /// Print `{"replayed": [ids]}` instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(config: Validated, command: DlqCommand) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let store = config.store.open(false).await?;
        let store = store.as_ref();
        store
            .ready()
            .await
            .context("the store is not ready; run `followthrough migrate`")?;
        let code = match command {
            DlqCommand::List { all, rule, json } => list(store, all, rule.as_deref(), json).await,
            DlqCommand::Show { id, json } => show(store, id, json).await,
            DlqCommand::Replay {
                ids,
                all,
                rule,
                json,
            } => {
                let which = if all {
                    Which::Waiting { rule }
                } else {
                    Which::Ids(ids)
                };
                replay(store, which, json).await
            }
        };
        store.close().await?;
        code
    })
}

async fn list(
    store: &dyn Store,
    all: bool,
    rule: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let letters: Vec<DeadLetter> = store
        .dead_letters(all)
        .await?
        .into_iter()
        .filter(|letter| rule.is_none_or(|rule| letter.job.rule_id == rule))
        .collect();
    if json {
        let listed: Vec<Value> = letters
            .iter()
            .map(without_params)
            .collect::<anyhow::Result<_>>()?;
        println!("{}", serde_json::to_string_pretty(&listed)?);
    } else if letters.is_empty() {
        eprintln!("no dead letters{}", if all { "" } else { " waiting" });
    } else {
        print!("{}", render_list(&letters));
    }
    Ok(ExitCode::SUCCESS)
}

/// A dead letter as `list --json` prints it: every field but `params`.
fn without_params(letter: &DeadLetter) -> anyhow::Result<Value> {
    let mut value = serde_json::to_value(letter)?;
    if let Some(fields) = value.as_object_mut() {
        fields.remove("params");
    }
    Ok(value)
}

/// One aligned line per letter, under a header; the (shortened) message last, so its
/// spaces do not break the columns.
fn render_list(letters: &[DeadLetter]) -> String {
    let header = [
        "ID",
        "DEAD_AT",
        "RULE",
        "ACTION",
        "CONNECTOR",
        "OBJECT",
        "KIND",
        "MESSAGE",
    ];
    let rows: Vec<[String; 8]> = letters
        .iter()
        .map(|letter| {
            let mut message = short(&letter.reason.message);
            if let Some(at) = letter.replayed_at {
                let _ = write!(message, " (replayed {at})");
            }
            [
                letter.id.to_string(),
                letter.dead_at.to_string(),
                letter.job.rule_id.clone(),
                letter.job.action.clone(),
                letter.job.connector.clone(),
                letter.job.object.to_string(),
                letter.reason.kind.clone(),
                message,
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(header.map(str::to_owned)).chain(rows) {
        let (last, columns) = row.split_last().expect("eight columns");
        for (cell, width) in columns.iter().zip(widths) {
            let _ = write!(out, "{cell:width$}  ");
        }
        let _ = writeln!(out, "{last}");
    }
    out
}

/// The message on one line, cut to [`SHORT_MESSAGE`] characters.
fn short(message: &str) -> String {
    let line = message.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= SHORT_MESSAGE {
        return line;
    }
    let mut cut: String = line.chars().take(SHORT_MESSAGE - 1).collect();
    cut.push('…');
    cut
}

async fn show(store: &dyn Store, id: i64, json: bool) -> anyhow::Result<ExitCode> {
    let Some(letter) = store.dead_letter(id).await? else {
        eprintln!("dead letter {id}: no such dead letter (see `followthrough dlq list --all`)");
        return Ok(ExitCode::from(1));
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&letter)?);
    } else {
        print!("{}", render_letter(&letter)?);
    }
    Ok(ExitCode::SUCCESS)
}

fn render_letter(letter: &DeadLetter) -> anyhow::Result<String> {
    let job = &letter.job;
    let reason = &letter.reason;
    let status = match letter.replayed_at {
        Some(at) => format!("replayed {at}"),
        None => "waiting".to_owned(),
    };
    let optional = |value: Option<String>| value.unwrap_or_else(|| "-".to_owned());
    let fields = [
        ("status", status),
        ("dead_at", letter.dead_at.to_string()),
        ("kind", reason.kind.clone()),
        ("message", reason.message.clone()),
        (
            "last_status",
            optional(reason.last_status.map(|s| s.to_string())),
        ),
        ("rule", job.rule_id.clone()),
        ("run_id", job.run_id.to_string()),
        ("action", job.action.clone()),
        ("connector", job.connector.clone()),
        ("object", job.object.to_string()),
        ("key", job.idempotency_key.clone()),
        ("seq", letter.seq.to_string()),
        ("attempts", letter.attempts.to_string()),
        ("created_at", job.created_at.to_string()),
        ("next_at", job.next_at.to_string()),
    ];
    let width = fields.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    let mut out = format!("dead letter {}\n", letter.id);
    for (name, value) in fields {
        let _ = writeln!(out, "  {name:width$}  {value}");
    }
    let _ = writeln!(out, "\nlast_response:");
    let _ = writeln!(
        out,
        "{}",
        indent(reason.last_response.as_deref().unwrap_or("(none)"))
    );
    let _ = writeln!(out, "\nparams:");
    let _ = writeln!(
        out,
        "{}",
        indent(&serde_json::to_string_pretty(&job.params)?)
    );
    Ok(out)
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|line| format!("  {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Which dead letters `replay` puts back.
enum Which {
    /// These, as given (unknown or already replayed ones are reported and skipped).
    Ids(Vec<i64>),
    /// Every waiting letter, or only those of one rule.
    Waiting { rule: Option<String> },
}

async fn replay(store: &dyn Store, which: Which, json: bool) -> anyhow::Result<ExitCode> {
    let (chosen, by_id) = match which {
        Which::Ids(ids) => (choose(store, ids).await?, true),
        Which::Waiting { rule } => {
            let letters = store.dead_letters(false).await?;
            let chosen: Vec<DeadLetter> = letters
                .into_iter()
                .filter(|letter| {
                    rule.as_deref()
                        .is_none_or(|rule| letter.job.rule_id == rule)
                })
                .collect();
            (chosen, false)
        }
    };
    let now = SystemClock.now();
    let ids: Vec<i64> = chosen.iter().map(|letter| letter.id).collect();
    let replayed = if ids.is_empty() {
        Vec::new()
    } else {
        let journal = chosen
            .iter()
            .map(|letter| {
                crate::journal::dead_letter_replayed(now, letter, "followthrough dlq replay")
            })
            .collect();
        store.replay_dead_letters(&ids, now, journal).await?
    };
    for id in ids.iter().filter(|id| !replayed.contains(id)) {
        // Read as waiting a moment ago: someone else replayed it in between.
        eprintln!("dead letter {id}: already replayed (by someone else, just now)");
    }
    if json {
        println!("{}", json!({ "replayed": replayed }));
    } else {
        let list: Vec<String> = replayed.iter().map(i64::to_string).collect();
        let which = if list.is_empty() {
            String::new()
        } else {
            format!(": {}", list.join(", "))
        };
        println!("replayed {} dead letter(s){which}", replayed.len());
    }
    if !replayed.is_empty() {
        eprintln!("a running server picks them up on its own (they are due now)");
    } else if !by_id {
        eprintln!("no dead letters waiting");
    }
    Ok(if replayed.is_empty() && by_id {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The waiting letters among `ids` (each once, in the order given); says on stderr why
/// each other id is skipped.
async fn choose(store: &dyn Store, ids: Vec<i64>) -> anyhow::Result<Vec<DeadLetter>> {
    let mut seen = BTreeSet::new();
    let mut chosen = Vec::new();
    for id in ids {
        if !seen.insert(id) {
            continue;
        }
        match store.dead_letter(id).await? {
            None => eprintln!("dead letter {id}: no such dead letter"),
            Some(DeadLetter {
                replayed_at: Some(at),
                ..
            }) => eprintln!("dead letter {id}: already replayed {at}"),
            Some(letter) => chosen.push(letter),
        }
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_messages_fit_one_line() {
        assert_eq!(short("bad\n  request"), "bad request");
        let long = "x".repeat(100);
        let cut = short(&long);
        assert_eq!(cut.chars().count(), SHORT_MESSAGE);
        assert!(cut.ends_with('…'));
        assert_eq!(short(&"é".repeat(SHORT_MESSAGE)), "é".repeat(SHORT_MESSAGE));
    }
}
