//! `followthrough-bench`: drives a real `followthrough serve` child process with signed
//! HubSpot webhooks and reports throughput, latency percentiles, server CPU time and peak
//! RSS. Each scenario has a quick mode that finishes well under two minutes.

mod ingest;
mod load;
mod server;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "followthrough-bench", about = "Benchmarks for followthrough")]
struct Cli {
    /// The followthrough binary to benchmark (build it with --release first).
    #[arg(long, global = true, default_value = "target/release/followthrough")]
    binary: PathBuf,
    /// Drive an already running server at this base URL instead of starting one (its
    /// secret must be `bench-secret`, its public_url http://127.0.0.1:8080); server CPU
    /// and RSS are then not reported.
    #[arg(long, global = true)]
    url: Option<String>,
    /// Also write the result as JSON to this file.
    #[arg(long, global = true)]
    json: Option<PathBuf>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Durable acknowledgement only: signed batches from concurrent connections.
    Ingest {
        /// Concurrent connections.
        #[arg(long, default_value_t = 32)]
        connections: usize,
        /// Events per webhook (HubSpot sends up to 100).
        #[arg(long, default_value_t = 100)]
        batch: usize,
        /// Measured duration, e.g. 20s.
        #[arg(long, default_value = "20s", value_parser = parse_duration)]
        duration: Duration,
        /// Distinct objects the events are spread over.
        #[arg(long, default_value_t = 10_000)]
        objects: u64,
    },
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 20s"))?;
    match unit {
        "s" | "" => Ok(Duration::from_secs(number)),
        "m" => Ok(Duration::from_secs(number * 60)),
        "ms" => Ok(Duration::from_millis(number)),
        _ => Err(format!("`{text}`: unit must be ms, s or m")),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let report = match cli.scenario {
        Scenario::Ingest {
            connections,
            batch,
            duration,
            objects,
        } => {
            ingest::run(
                &cli.binary,
                cli.url.as_deref(),
                ingest::Options {
                    connections,
                    batch,
                    duration,
                    objects,
                },
            )
            .await?
        }
    };
    println!("{}", report.table());
    if let Some(path) = cli.json {
        std::fs::write(&path, serde_json::to_string_pretty(&report.json())?)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
