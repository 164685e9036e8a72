//! The command line: `followthrough <command>`. Data goes to stdout, diagnostics to
//! stderr; exit 0 on success, 1 on failure, 2 on bad usage.

mod serve;
mod trace;

use std::path::PathBuf;
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
        /// Store URL (store.url), e.g. sqlite://followthrough.db.
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
            let version = followthrough_store_sqlite::SqliteStore::migrate(&config.store_path)?;
            eprintln!(
                "{}: schema at version {version}",
                config.store_path.display()
            );
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
    }
}
