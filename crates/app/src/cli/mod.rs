//! The command line: `followthrough <command>`. Data goes to stdout, diagnostics to
//! stderr; exit 0 on success, 1 on failure, 2 on bad usage.

mod dlq;
mod reload;
mod replay;
mod rules;
mod serve;
mod trace;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, Overrides, Validated};

#[derive(Debug, Parser)]
#[command(
    name = "followthrough",
    version,
    about = "Follow-up automation for sales CRMs"
)]
pub struct Cli {
    /// Configuration file (default: ./followthrough.toml if present, else built-in defaults).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: webhooks in, engine, actions out.
    Serve {
        /// Address to listen on (server.listen).
        #[arg(long)]
        listen: Option<String>,
        /// Store URL (store.url): sqlite://PATH or postgres://USER@HOST/DB.
        #[arg(long)]
        store: Option<String>,
        /// Rules folder (rules.dir).
        #[arg(long)]
        rules: Option<String>,
    },
    /// Apply pending schema migrations to the store and exit.
    Migrate {
        #[arg(long)]
        store: Option<String>,
    },
    /// Print an object's properties and timeline, e.g. `trace hubspot:contact:501`.
    Trace {
        object: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[arg(long)]
        store: Option<String>,
    },
    /// List, show and replay dead letters (actions that failed for good).
    ///
    /// A dead letter is an action that failed for good, or whose outcome nobody can know.
    /// `replay` puts it back in the outbox; a running server picks it up on its own (it
    /// is pending and due now).
    Dlq {
        #[command(subcommand)]
        command: dlq::DlqCommand,
        /// Store URL (store.url).
        #[arg(long, global = true)]
        store: Option<String>,
    },
    /// Check every rule and test file in a folder; print each problem as
    /// file:line:column: message; exit 1 if there is any.
    Check {
        /// Rules folder (default: rules.dir).
        dir: Option<PathBuf>,
        /// Print problems as JSON lines on stdout instead of text on stderr.
        #[arg(long)]
        json: bool,
    },
    /// Run the rule tests (*.test.yaml) beside the rules; exit 1 on any failure.
    Test {
        /// Rules folder (default: rules.dir).
        dir: Option<PathBuf>,
    },
    /// Run recorded events through the rules in event time and print, as JSON lines, the
    /// actions they would have taken. Touches no store and calls no API.
    Replay {
        /// Required: replay only exists as a dry run.
        #[arg(long)]
        dry_run: bool,
        /// Rules folder (default: rules.dir).
        #[arg(long, value_name = "DIR")]
        rules: Option<PathBuf>,
        /// Owners for `owner.*` and `to: owner`: a JSON array of {id, email, name, teams}.
        #[arg(long, value_name = "FILE")]
        owners: Option<PathBuf>,
        /// Let time run to this RFC 3339 time after the last event, firing due timers
        /// (default: the last event's time).
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// Recorded events: per line, a HubSpot webhook body (JSON array) or one
        /// canonical event (JSON object).
        file: PathBuf,
    },
    /// Make an admin token for the API and the web console: prints the token (give it to
    /// the person) and the `sha256:` digest to add to `api.tokens` (the config keeps
    /// only that). `--hash TOKEN` prints the digest of an existing token.
    Token {
        #[arg(long, value_name = "TOKEN")]
        hash: Option<String>,
    },
    /// Check the rules folder, then make the running `serve` reload it: SIGHUP to the
    /// process in server.pid_file. Exit 1 if a rule is invalid (nothing is signalled), 2
    /// if no running server is found.
    Reload {
        /// Rules folder to check (default: rules.dir); the server reloads its own.
        #[arg(long, value_name = "DIR")]
        rules: Option<PathBuf>,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let load = |overrides: Overrides| -> anyhow::Result<Validated> {
        Ok(Config::load(cli.config.as_deref(), &overrides)?.validate()?)
    };
    match cli.command {
        Command::Serve {
            listen,
            store,
            rules,
        } => serve::run(load(Overrides {
            listen,
            store_url: store,
            rules_dir: rules,
        })?),
        Command::Migrate { store } => {
            let config = load(Overrides {
                store_url: store,
                ..Overrides::default()
            })?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let version = runtime.block_on(config.store.migrate())?;
            eprintln!("{}: schema at version {version}", config.store.describe());
            Ok(ExitCode::SUCCESS)
        }
        Command::Trace {
            object,
            json,
            store,
        } => trace::run(
            load(Overrides {
                store_url: store,
                ..Overrides::default()
            })?,
            &object,
            json,
        ),
        Command::Dlq { command, store } => dlq::run(
            load(Overrides {
                store_url: store,
                ..Overrides::default()
            })?,
            command,
        ),
        Command::Check { dir, json } => {
            let dir = rules_dir(cli.config.as_deref(), dir)?.0;
            rules::check(&dir, json)
        }
        Command::Test { dir } => rules::test(&rules_dir(cli.config.as_deref(), dir)?.0),
        Command::Replay {
            dry_run,
            rules,
            owners,
            until,
            file,
        } => {
            if !dry_run {
                eprintln!(
                    "error: replay only exists as a dry run: pass --dry-run (it touches no store and calls no API)"
                );
                return Ok(ExitCode::from(2));
            }
            let until = until.as_deref().map(replay::parse_until).transpose()?;
            let (rules, config) = rules_dir(cli.config.as_deref(), rules)?;
            replay::run(replay::Options {
                rules,
                input: file,
                owners,
                until,
                calendar: config.rules.calendar()?,
            })
        }
        Command::Token { hash } => {
            match hash {
                Some(token) => println!("{}", crate::auth::digest_of(&token)),
                None => {
                    let (token, digest) = crate::auth::new_token();
                    println!("token:  {token}");
                    println!("config: api.tokens = [\"{digest}\"]");
                    eprintln!("Keep the token secret; only the digest goes in the configuration.");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Reload { rules } => {
            let (dir, config) = rules_dir(cli.config.as_deref(), rules)?;
            reload::run(&dir, &config.server.pid_file)
        }
    }
}

/// The configuration the rule commands read (no `validate()`: they need neither a store
/// nor a secret), and the rules folder: `dir` if given, else `rules.dir`.
fn rules_dir(file: Option<&Path>, dir: Option<PathBuf>) -> anyhow::Result<(PathBuf, Config)> {
    let config = Config::load(file, &Overrides::default())?;
    let dir = dir.unwrap_or_else(|| config.rules.dir.clone());
    Ok((dir, config))
}
