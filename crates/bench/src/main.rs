//! `followthrough-bench`: drives a real `followthrough serve` child process with signed
//! HubSpot webhooks and reports throughput, latency percentiles, server CPU time and peak
//! RSS; the `engine`, `timers` and `outbox` scenarios drive the engine and the outbox workers in
//! process instead. Each scenario has a quick mode that finishes well under two minutes.
//!
//! `ingest`, `end-to-end`, `soak` and `startup` run on SQLite by default, or on a fresh
//! schema of a PostgreSQL database with `--store postgres://... [--instances N]`.

mod db;
mod end_to_end;
mod engine_backlog;
mod fleet;
mod in_process;
mod ingest;
mod load;
mod mix;
mod outbox;
mod peer;
mod proc;
mod server;
mod soak;
mod startup;
mod timers;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::fleet::StoreArg;

// The server's allocator, so the in-process `timers` scenario's RSS is the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// The store of the servers the bench starts (ingest, end-to-end, soak, startup):
    /// `sqlite` (a fresh file) or a PostgreSQL URL such as
    /// postgres://postgres@127.0.0.1:5432/test, where each run creates a fresh schema
    /// `bench_<ulid>` and drops it at the end.
    #[arg(long, global = true, default_value = "sqlite", value_parser = StoreArg::parse)]
    store: StoreArg,
    /// How many `followthrough serve` instances share the store (PostgreSQL only); the
    /// load is dealt over them round robin, one connection at a time.
    #[arg(long, global = true, default_value_t = 1)]
    instances: usize,
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
    /// Webhook to outbox row with the example rules loaded, a fake HubSpot answering the
    /// engine's owner look-ups. Quick mode: --duration 5s.
    EndToEnd {
        /// Concurrent connections.
        #[arg(long, default_value_t = 32)]
        connections: usize,
        /// Events per webhook (HubSpot sends up to 100).
        #[arg(long, default_value_t = 100)]
        batch: usize,
        /// Measured duration, e.g. 20s.
        #[arg(long, default_value = "20s", value_parser = parse_duration)]
        duration: Duration,
        /// Objects active at once (deals are replaced by new ones as they reach
        /// negotiation; see `mix.rs`).
        #[arg(long, default_value_t = 10_000)]
        objects: u64,
        /// HubSpot owners the objects are spread over.
        #[arg(long, default_value_t = 50)]
        owners: u64,
    },
    /// Schedule waiting runs with their timers, then fire them all through the engine, in
    /// process on a temporary SQLite file. Quick mode: --count 100000.
    Timers {
        /// Runs (and timers) to schedule and fire.
        #[arg(long, default_value_t = 1_000_000)]
        count: u64,
        /// Runs written per unit of work while scheduling.
        #[arg(long, default_value_t = 10_000)]
        chunk: usize,
        /// The engine's batch size (engine.batch_size).
        #[arg(long, default_value_t = 2_000)]
        batch_size: usize,
    },
    /// The end-to-end mix's events stored first, then applied by the engine alone with
    /// the example rules, in process on a temporary SQLite file: the engine's rate and
    /// CPU per event without ingest or the HTTP load beside it. Quick mode: --events 50000.
    Engine {
        /// Events of the mix to store and apply.
        #[arg(long, default_value_t = 300_000)]
        events: u64,
        /// Objects active at once (as in end-to-end).
        #[arg(long, default_value_t = 10_000)]
        objects: u64,
        /// Owners the objects are spread over.
        #[arg(long, default_value_t = 50)]
        owners: u64,
        /// The engine's batch size (engine.batch_size).
        #[arg(long, default_value_t = 2_000)]
        batch_size: usize,
    },
    /// The peer comparison's workload (webhook -> condition -> HTTP request to a local
    /// sink on 127.0.0.1:9999), against followthrough (started here) or a running n8n
    /// (`--n8n-url`, `--n8n-pid`); `bench/peers/n8n/compare.sh` runs both. Quick mode:
    /// --duration 10s.
    Peer {
        /// Concurrent connections.
        #[arg(long, default_value_t = 16)]
        connections: usize,
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        duration: Duration,
        /// How long to wait after the load for the sink to receive what was accepted.
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        drain: Duration,
        /// Measure n8n's workflow webhook at this URL instead of followthrough.
        #[arg(long)]
        n8n_url: Option<String>,
        /// n8n's process id, for its CPU time and peak RSS.
        #[arg(long)]
        n8n_pid: Option<u32>,
    },
    /// A steady rate of webhooks for a fixed time against a server with the example rules
    /// loaded, sampling its RSS and the request latency as it goes: do they stay flat?
    /// Quick mode: --duration 30s.
    Soak {
        /// Events per second, sent open loop (each request at its time, answered or not).
        #[arg(long, default_value_t = 2_000)]
        rate: u64,
        /// Events per webhook.
        #[arg(long, default_value_t = 10)]
        batch: usize,
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        duration: Duration,
        /// How often RSS is sampled (and latency summed up).
        #[arg(long, default_value = "2s", value_parser = parse_duration)]
        sample_every: Duration,
        /// Objects active at once (as in end-to-end, fewer so that at 2,000 events/s
        /// the rules start firing after a second).
        #[arg(long, default_value_t = 1_000)]
        objects: u64,
        /// HubSpot owners the objects are spread over.
        #[arg(long, default_value_t = 50)]
        owners: u64,
    },
    /// Start the server N times on a fresh store: time from spawn to the first 200 from
    /// /readyz, and RSS after a few idle seconds (medians). About 4 s per run.
    Startup {
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// How long the server sits idle before its RSS is read.
        #[arg(long, default_value = "3s", value_parser = parse_duration)]
        idle: Duration,
    },
    /// Perform queued `create_task` jobs through the outbox workers and the HubSpot
    /// connector against a local fake HubSpot that answers at once, in process on a
    /// temporary SQLite file. Quick mode: --count 20000.
    Outbox {
        /// Jobs to queue and perform.
        #[arg(long, default_value_t = 20_000)]
        count: u64,
        /// Concurrent calls of the HubSpot lane.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// outbox.claim_batch (a claim also stops at four jobs per concurrent call).
        #[arg(long, default_value_t = 256)]
        claim_batch: usize,
        /// Jobs queued per unit of work before the run.
        #[arg(long, default_value_t = 2_000)]
        chunk: usize,
    },
}

/// What every scenario's report offers.
trait Report {
    fn table(&self) -> String;
    fn json(&self) -> serde_json::Value;
}

macro_rules! report {
    ($($t:ty),*) => {$(
        impl Report for $t {
            fn table(&self) -> String {
                <$t>::table(self)
            }
            fn json(&self) -> serde_json::Value {
                <$t>::json(self)
            }
        }
    )*};
}
report!(
    ingest::Report,
    end_to_end::Report,
    engine_backlog::Report,
    timers::Report,
    outbox::Report,
    peer::Report,
    soak::Report,
    startup::Report
);

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
    // The in-process scenarios (`engine`, `timers`) log the engine's batches with
    // RUST_LOG=followthrough::engine=debug.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let multi_store = matches!(
        cli.scenario,
        Scenario::Ingest { .. }
            | Scenario::EndToEnd { .. }
            | Scenario::Soak { .. }
            | Scenario::Startup { .. }
    );
    anyhow::ensure!(
        multi_store || (matches!(cli.store, StoreArg::Sqlite) && cli.instances == 1),
        "--store and --instances apply to ingest, end-to-end, soak and startup only"
    );
    anyhow::ensure!(
        !matches!(cli.scenario, Scenario::Startup { .. }) || cli.instances == 1,
        "startup measures one instance at a time"
    );
    let report: Box<dyn Report> = match cli.scenario {
        Scenario::Ingest {
            connections,
            batch,
            duration,
            objects,
        } => Box::new(
            ingest::run(
                &cli.binary,
                cli.url.as_deref(),
                ingest::Options {
                    connections,
                    batch,
                    duration,
                    objects,
                    store: cli.store,
                    instances: cli.instances,
                },
            )
            .await?,
        ),
        Scenario::EndToEnd {
            connections,
            batch,
            duration,
            objects,
            owners,
        } => {
            anyhow::ensure!(
                cli.url.is_none(),
                "end-to-end reads the server's database: it cannot use --url"
            );
            Box::new(
                end_to_end::run(
                    &cli.binary,
                    end_to_end::Options {
                        connections,
                        batch,
                        duration,
                        objects,
                        owners,
                        store: cli.store,
                        instances: cli.instances,
                    },
                )
                .await?,
            )
        }
        Scenario::Soak {
            rate,
            batch,
            duration,
            sample_every,
            objects,
            owners,
        } => {
            anyhow::ensure!(cli.url.is_none(), "soak starts its own server: no --url");
            Box::new(
                soak::run(
                    &cli.binary,
                    soak::Options {
                        rate,
                        batch,
                        duration,
                        sample_every,
                        objects,
                        owners,
                        store: cli.store,
                        instances: cli.instances,
                    },
                )
                .await?,
            )
        }
        Scenario::Startup { runs, idle } => {
            anyhow::ensure!(cli.url.is_none(), "startup starts its own server: no --url");
            Box::new(
                startup::run(
                    &cli.binary,
                    startup::Options {
                        runs,
                        idle,
                        store: cli.store,
                    },
                )
                .await?,
            )
        }
        Scenario::Timers {
            count,
            chunk,
            batch_size,
        } => Box::new(
            timers::run(timers::Options {
                count,
                chunk,
                batch_size,
            })
            .await?,
        ),
        Scenario::Engine {
            events,
            objects,
            owners,
            batch_size,
        } => Box::new(
            engine_backlog::run(engine_backlog::Options {
                events,
                objects,
                owners,
                batch_size,
            })
            .await?,
        ),
        Scenario::Outbox {
            count,
            concurrency,
            claim_batch,
            chunk,
        } => Box::new(
            outbox::run(outbox::Options {
                count,
                concurrency,
                claim_batch,
                chunk,
            })
            .await?,
        ),
        Scenario::Peer {
            connections,
            duration,
            drain,
            n8n_url,
            n8n_pid,
        } => {
            let target = match n8n_url {
                Some(url) => peer::Target::N8n { url, pid: n8n_pid },
                None => peer::Target::Followthrough {
                    binary: &cli.binary,
                },
            };
            let options = peer::Options {
                connections,
                duration,
                drain,
            };
            Box::new(peer::run(target, options).await?)
        }
    };
    println!("{}", report.table());
    if let Some(path) = cli.json {
        std::fs::write(&path, serde_json::to_string_pretty(&report.json())?)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
