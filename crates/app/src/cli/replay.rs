//! `followthrough replay --dry-run --rules DIR FILE`: recorded events through the rules in
//! event time, in the rules library's [`Simulator`], printing what would have been done.
//!
//! Each line of FILE is either a HubSpot webhook body as received (a JSON array) or one
//! canonical event (a JSON object, as followthrough serializes [`Event`]); the first
//! character decides, so one file may mix both. Nothing here opens a store, writes a file
//! or calls an API: owners, which production fetches from the CRM, come from `--owners`.
//!
//! A malformed line stops the replay before it starts (every bad line is reported as
//! `FILE:LINE: why`, exit 1): replaying the rest would print actions that depend on the
//! missing events and look trustworthy.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use followthrough_core::{Event, Timestamp};
use followthrough_rules::{
    Calendar, Owner, ReplaySummary, RuleSet, Simulator, Taken, print_diagnostics,
};
use indicatif::{ProgressBar, ProgressStyle};

use crate::ingest::hubspot::payload::parse_batch;

/// Malformed lines reported before the rest are only counted.
const MAX_REPORTED: usize = 20;

/// Events per [`Simulator::replay`] call: one step of the progress bar.
const CHUNK: usize = 1000;

pub struct Options {
    pub rules: PathBuf,
    pub input: PathBuf,
    pub owners: Option<PathBuf>,
    /// Fire timers up to here after the last event (default: the last event's time).
    pub until: Option<Timestamp>,
    pub calendar: Calendar,
}

/// Parses `--until`: an RFC 3339 time such as `2025-12-20T00:00:00Z`.
pub fn parse_until(text: &str) -> anyhow::Result<Timestamp> {
    let time: jiff::Timestamp = text
        .parse()
        .with_context(|| format!("--until `{text}` is not a time like 2025-12-20T00:00:00Z"))?;
    Ok(Timestamp(time.as_millisecond()))
}

pub fn run(options: Options) -> anyhow::Result<ExitCode> {
    let rules = match RuleSet::load_dir(&options.rules) {
        Ok(rules) => rules,
        Err(diagnostics) => {
            print_diagnostics(&diagnostics, &mut std::io::stderr().lock())?;
            return Ok(ExitCode::from(1));
        }
    };
    let owners = match &options.owners {
        Some(path) => read_owners(path)?,
        None => Vec::new(),
    };
    let progress = progress_bar(&options.input)?;
    let events = match read_events(&options.input, &progress)? {
        Ok(events) => events,
        Err(bad) => {
            progress.finish_and_clear();
            report_malformed(&options.input, &bad);
            return Ok(ExitCode::from(1));
        }
    };
    let start = events
        .iter()
        .map(|e| e.occurred_at)
        .min()
        .unwrap_or(Timestamp(0));
    let mut simulator = Simulator::new(rules, options.calendar, start);
    for owner in owners {
        simulator.add_owner(owner);
    }
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut write_error: Option<std::io::Error> = None;
    let mut emit = |taken: &Taken| {
        if write_error.is_none() {
            write_error = write_line(&mut out, taken).err();
        }
    };
    let summary = replay_in_chunks(&mut simulator, events, options.until, &progress, &mut emit);
    let flushed = out.flush();
    progress.finish_and_clear();
    match write_error.map_or(flushed, Err) {
        // `| head` closed the pipe: the reader has what it wanted.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
        Err(e) => return Err(e).context("writing to stdout"),
        Ok(()) => {}
    }
    eprintln!(
        "replay: {} events read, {} actions, {} failures, {} runs still waiting",
        summary.events, summary.actions, summary.failures, summary.active_runs
    );
    Ok(ExitCode::SUCCESS)
}

/// [`Simulator::replay`] over slices of the time-sorted events, so the bar can move.
/// The same as one call: each call ends by firing the timers due up to its last event,
/// which the next event (no earlier) would have fired first anyway, and no timer is due
/// at the instant it is set.
fn replay_in_chunks(
    simulator: &mut Simulator,
    mut events: Vec<Event>,
    until: Option<Timestamp>,
    progress: &ProgressBar,
    emit: &mut dyn FnMut(&Taken),
) -> ReplaySummary {
    events.sort_by_key(|e| e.occurred_at);
    progress.set_position(0);
    progress.set_length(events.len() as u64);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} replaying {pos}/{len} events [{wide_bar}] {eta} left",
    ) {
        progress.set_style(style.progress_chars("=> "));
    }
    let mut total = ReplaySummary::default();
    let mut rest = events.into_iter().peekable();
    loop {
        let chunk: Vec<Event> = rest.by_ref().take(CHUNK).collect();
        let last = rest.peek().is_none();
        let n = chunk.len() as u64;
        let summary = simulator.replay(chunk, if last { until } else { None }, emit);
        total.events += summary.events;
        total.actions += summary.actions;
        total.failures += summary.failures;
        total.active_runs = summary.active_runs;
        progress.inc(n);
        if last {
            return total;
        }
    }
}

fn write_line(out: &mut impl Write, taken: &Taken) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, taken)?;
    out.write_all(b"\n")
}

/// A bar over the file's bytes while reading (the slow part for big recordings), drawn
/// only when stderr is a terminal so logs and pipes stay clean.
fn progress_bar(input: &Path) -> anyhow::Result<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return Ok(ProgressBar::hidden());
    }
    let len = std::fs::metadata(input)
        .with_context(|| format!("cannot read {}", input.display()))?
        .len();
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} reading {bytes}/{total_bytes} [{wide_bar}] {eta} left",
        )?
        .progress_chars("=> "),
    );
    Ok(bar)
}

/// A line that could not be read, 1-based.
struct Malformed {
    line: usize,
    why: String,
}

/// All events of the file, or every malformed line.
fn read_events(
    input: &Path,
    progress: &ProgressBar,
) -> anyhow::Result<Result<Vec<Event>, Vec<Malformed>>> {
    let file = File::open(input).with_context(|| format!("cannot read {}", input.display()))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut events = Vec::new();
    let mut bad = Vec::new();
    let mut line = Vec::new();
    let mut number = 0;
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .with_context(|| format!("cannot read {}", input.display()))?;
        if read == 0 {
            break;
        }
        number += 1;
        progress.inc(read as u64);
        match parse_line(&line) {
            Ok(parsed) => events.extend(parsed),
            Err(why) => bad.push(Malformed { line: number, why }),
        }
    }
    Ok(if bad.is_empty() { Ok(events) } else { Err(bad) })
}

/// One line: a HubSpot body (`[`), a canonical event (`{`) or blank.
fn parse_line(line: &[u8]) -> Result<Vec<Event>, String> {
    let text = line.trim_ascii();
    match text.first() {
        None => Ok(Vec::new()),
        Some(b'[') => {
            // A recording has no receipt time of its own; say it arrived when it happened.
            let mut events = parse_batch(text, Timestamp(0))
                .map_err(|e| format!("not a HubSpot webhook body: {e}"))?;
            for event in &mut events {
                event.received_at = event.occurred_at;
            }
            Ok(events)
        }
        Some(b'{') => serde_json::from_slice::<Event>(text)
            .map(|event| vec![event])
            .map_err(|e| {
                let hint = if text.windows(16).any(|w| w == b"subscriptionType") {
                    " (a HubSpot event must be inside a JSON array, as HubSpot sends it)"
                } else {
                    ""
                };
                format!("not a canonical event: {e}{hint}")
            }),
        Some(_) => Err(
            "expected a HubSpot webhook body (a JSON array) or a canonical event (a JSON object)"
                .to_owned(),
        ),
    }
}

fn report_malformed(input: &Path, bad: &[Malformed]) {
    let mut err = std::io::stderr().lock();
    for m in bad.iter().take(MAX_REPORTED) {
        let _ = writeln!(err, "{}:{}: {}", input.display(), m.line, m.why);
    }
    if bad.len() > MAX_REPORTED {
        let _ = writeln!(
            err,
            "... and {} more malformed lines",
            bad.len() - MAX_REPORTED
        );
    }
    let _ = writeln!(
        err,
        "replay: {} malformed lines; nothing replayed",
        bad.len()
    );
}

/// `--owners FILE`: a JSON array of `{"id", "email", "name", "teams"}`, what the engine
/// would look up in the CRM for `owner.*` and `to: owner`.
fn read_owners(path: &Path) -> anyhow::Result<Vec<Owner>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: expected a JSON array of owners like [{{\"id\": \"42\", \"email\": \"rep@example.com\", \"name\": \"Rae Rep\", \"teams\": [\"closers\"]}}]",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_line_says_what_it_is() {
        assert!(parse_line(b"  \n").unwrap().is_empty());
        let hubspot = br#"[{"eventId":1,"subscriptionId":2,"portalId":3,"occurredAt":50,"subscriptionType":"contact.creation","objectId":9}]"#;
        let events = parse_line(hubspot).unwrap();
        assert_eq!(events[0].object.to_string(), "hubspot:contact:9");
        assert_eq!(events[0].received_at, Timestamp(50));
        let canonical = serde_json::to_vec(&events[0]).unwrap();
        assert_eq!(parse_line(&canonical).unwrap(), events);

        let unwrapped = br#"{"eventId":1,"subscriptionType":"contact.creation"}"#;
        assert!(
            parse_line(unwrapped)
                .unwrap_err()
                .contains("inside a JSON array")
        );
        assert!(parse_line(b"hello").unwrap_err().contains("JSON array"));
        assert!(parse_line(b"[{}]").unwrap_err().contains("HubSpot"));
    }
}
