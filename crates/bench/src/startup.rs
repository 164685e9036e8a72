//! The `startup` scenario (issue #8's targets: start-up to ready under 200 ms, idle RSS
//! under 30 MB): starts `followthrough serve` N times, each on a fresh store with the
//! example rules loaded, and measures the time from spawning the process to the first
//! 200 from `/readyz` (polled every 2 ms), then the RSS after a few idle seconds.
//!
//! On PostgreSQL each start gets a fresh schema, so start-up includes creating it and
//! running the migrations, as a first deployment would.

use std::path::Path;
use std::time::Duration;

use followthrough_fakes::FakeHubSpot;
use serde_json::json;

use crate::fleet::{Fleet, StoreArg, mib};
use crate::load::ms;
use crate::server::{EXAMPLE_RULES, status_kib};

/// Issue #8's targets.
const STARTUP_TARGET: Duration = Duration::from_millis(200);
const IDLE_RSS_TARGET_BYTES: u64 = 30_000_000;

pub struct Options {
    pub runs: usize,
    pub idle: Duration,
    pub store: StoreArg,
}

struct Run {
    startup: Duration,
    idle_rss: u64,
    /// The idle RSS's parts: anonymous memory (of it, transparent huge pages) and
    /// file-backed pages (the binary's code and data as far as it has been touched).
    anon: u64,
    huge: u64,
    file: u64,
    /// VmHWM at the same moment: the most the start itself used.
    peak_rss: u64,
}

pub struct Report {
    options: Options,
    runs: Vec<Run>,
}

pub async fn run(binary: &Path, options: Options) -> anyhow::Result<Report> {
    anyhow::ensure!(options.runs > 0, "--runs must be at least 1");
    // Nothing is sent, so nothing calls HubSpot; the fake is there so that no start
    // depends on reaching the internet.
    let hubspot = FakeHubSpot::start().await;
    let env = [
        (
            "FOLLOWTHROUGH__CONNECTORS__HUBSPOT__BASE_URL",
            hubspot.base_url(),
        ),
        ("FOLLOWTHROUGH__CONNECTORS__HUBSPOT__TOKEN", hubspot.token()),
    ];
    let mut runs = Vec::new();
    for _ in 0..options.runs {
        let fleet = Fleet::start(binary, &options.store, 1, &EXAMPLE_RULES, &env).await?;
        let startup = fleet.servers[0].startup;
        tokio::time::sleep(options.idle).await;
        let server = &fleet.servers[0];
        let idle_rss = server.rss();
        let pid = server.pid();
        let anon = status_kib(pid, "RssAnon:") * 1024;
        let file = status_kib(pid, "RssFile:") * 1024;
        let huge = anon_huge_pages(pid);
        let peak_rss = server.peak_rss();
        fleet.stop().await?;
        runs.push(Run {
            startup,
            idle_rss,
            anon,
            huge,
            file,
            peak_rss,
        });
    }
    Ok(Report { options, runs })
}

/// AnonHugePages of /proc/PID/smaps_rollup, in bytes.
fn anon_huge_pages(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("AnonHugePages:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(0)
        * 1024
}

fn median<T: Copy + Ord>(mut values: Vec<T>) -> T {
    values.sort_unstable();
    values[values.len() / 2]
}

impl Report {
    fn startup_median(&self) -> Duration {
        median(self.runs.iter().map(|r| r.startup).collect())
    }

    fn idle_rss_median(&self) -> u64 {
        median(self.runs.iter().map(|r| r.idle_rss).collect())
    }

    pub fn table(&self) -> String {
        let status = |met: bool| if met { "met" } else { "MISSED" };
        let startup = self.startup_median();
        let rss = self.idle_rss_median();
        let mut out = format!(
            "startup ({} x {} runs, example rules loaded, RSS after {:.0} s idle)\n",
            self.options.store.name(),
            self.runs.len(),
            self.options.idle.as_secs_f64()
        );
        out.push_str(
            "  run   start-up to ready   idle RSS     = anon (huge pages) + file    peak RSS\n",
        );
        for (i, run) in self.runs.iter().enumerate() {
            out.push_str(&format!(
                "  {:>3}   {:>14.1} ms   {:>7.1} MiB  = {:.1} ({:.1}) + {:.1} MiB   {:>7.1} MiB\n",
                i + 1,
                ms(run.startup),
                mib(run.idle_rss),
                mib(run.anon),
                mib(run.huge),
                mib(run.file),
                mib(run.peak_rss)
            ));
        }
        out.push_str(&format!(
            "  median start-up to ready  {:.1} ms (target < {} ms: {})\n",
            ms(startup),
            STARTUP_TARGET.as_millis(),
            status(startup < STARTUP_TARGET)
        ));
        out.push_str(&format!(
            "  median idle RSS           {:.1} MiB = {:.1} MB (target < 30 MB: {})\n",
            mib(rss),
            rss as f64 / 1e6,
            status(rss < IDLE_RSS_TARGET_BYTES)
        ));
        out
    }

    pub fn json(&self) -> serde_json::Value {
        json!({
            "scenario": "startup",
            "store": self.options.store.name(),
            "idle_s": self.options.idle.as_secs_f64(),
            "startup_ms": self.runs.iter().map(|r| ms(r.startup)).collect::<Vec<_>>(),
            "idle_rss_bytes": self.runs.iter().map(|r| r.idle_rss).collect::<Vec<_>>(),
            "rss_anon_bytes": self.runs.iter().map(|r| r.anon).collect::<Vec<_>>(),
            "rss_anon_huge_pages_bytes": self.runs.iter().map(|r| r.huge).collect::<Vec<_>>(),
            "rss_file_bytes": self.runs.iter().map(|r| r.file).collect::<Vec<_>>(),
            "peak_rss_bytes": self.runs.iter().map(|r| r.peak_rss).collect::<Vec<_>>(),
            "startup_ms_median": ms(self.startup_median()),
            "idle_rss_bytes_median": self.idle_rss_median(),
            "startup_target_met": self.startup_median() < STARTUP_TARGET,
            "idle_rss_target_met": self.idle_rss_median() < IDLE_RSS_TARGET_BYTES,
        })
    }
}
