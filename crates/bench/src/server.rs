//! Starting `followthrough serve` as a child process on a fresh store (optionally with a
//! rules folder), and reading its CPU time and peak RSS from /proc.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::db::DbTarget;

pub const SECRET: &str = "bench-secret";
/// The public URL the server verifies signatures against (see `server.public_url`).
pub const PUBLIC_URL: &str = "http://127.0.0.1:8080";

pub struct Server {
    child: Child,
    /// Set once [`Server::stop`] has waited for the child; until then, dropping the
    /// server kills it (a scenario that fails half-way leaves no server behind).
    stopped: bool,
    pub port: u16,
    pub startup: Duration,
    store: DbTarget,
    _dir: tempfile::TempDir,
}

/// The store a started server uses: a fresh SQLite file in its scratch folder, or a
/// schema of a PostgreSQL database (which the caller creates and drops).
#[derive(Debug, Clone)]
pub enum StoreChoice {
    Sqlite,
    Postgres { url: String, schema: String },
}

/// The example rules (`examples/rules/*.yaml`), embedded so the bench binary runs from
/// any folder.
pub const EXAMPLE_RULES: [(&str, &str); 3] = [
    (
        "lead-gone-cold.yaml",
        include_str!("../../../examples/rules/lead-gone-cold.yaml"),
    ),
    (
        "negotiation-needs-next-step.yaml",
        include_str!("../../../examples/rules/negotiation-needs-next-step.yaml"),
    ),
    (
        "new-sql-gets-a-call.yaml",
        include_str!("../../../examples/rules/new-sql-gets-a-call.yaml"),
    ),
];

impl Server {
    /// A server whose rules folder holds `rules` (file name, text).
    pub async fn start_with_rules(
        binary: &Path,
        rules: &[(&str, &str)],
        extra_env: &[(&str, String)],
    ) -> anyhow::Result<Server> {
        Self::start_on(binary, &StoreChoice::Sqlite, rules, extra_env).await
    }

    /// A server on `store` whose rules folder holds `rules` (file name, text).
    pub async fn start_on(
        binary: &Path,
        store: &StoreChoice,
        rules: &[(&str, &str)],
        extra_env: &[(&str, String)],
    ) -> anyhow::Result<Server> {
        anyhow::ensure!(
            binary.exists(),
            "{} not found: run `cargo build --release -p followthrough` first",
            binary.display()
        );
        // The child runs in a scratch folder, so a relative binary path must be resolved here.
        let binary = binary.canonicalize()?;
        let dir = tempfile::tempdir()?;
        let rules_dir = dir.path().join("rules");
        std::fs::create_dir(&rules_dir)?;
        for (name, text) in rules {
            std::fs::write(rules_dir.join(name), text)?;
        }
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let (store_url, schema, target) = match store {
            StoreChoice::Sqlite => {
                let path = dir.path().join("bench.db");
                let url = format!("sqlite://{}", path.display());
                (url, String::new(), DbTarget::Sqlite(path))
            }
            StoreChoice::Postgres { url, schema } => (
                url.clone(),
                schema.clone(),
                DbTarget::Postgres {
                    url: url.clone(),
                    schema: schema.clone(),
                },
            ),
        };
        let started = Instant::now();
        let mut command = Command::new(&binary);
        command
            .arg("serve")
            .current_dir(dir.path())
            .env("FOLLOWTHROUGH__SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env("FOLLOWTHROUGH__SERVER__PUBLIC_URL", PUBLIC_URL)
            .env("FOLLOWTHROUGH__STORE__URL", store_url)
            .env("FOLLOWTHROUGH__RULES__DIR", &rules_dir)
            .env("FOLLOWTHROUGH__SOURCES__HUBSPOT__CLIENT_SECRET", SECRET)
            .env("FOLLOWTHROUGH__LOG__LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if !schema.is_empty() {
            command.env("FOLLOWTHROUGH__STORE__SCHEMA", schema);
        }
        for (key, value) in extra_env {
            command.env(key, value);
        }
        let child = command.spawn()?;
        let mut server = Server {
            child,
            stopped: false,
            port,
            startup: Duration::ZERO,
            store: target,
            _dir: dir,
        };
        let client = reqwest::Client::new();
        let deadline = started + Duration::from_secs(20);
        loop {
            if let Ok(response) = client
                .get(format!("http://127.0.0.1:{port}/readyz"))
                .send()
                .await
                && response.status() == 200
            {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "server did not become ready in 20 s"
            );
            if let Some(status) = server.child.try_wait()? {
                server.stopped = true;
                anyhow::bail!("server exited with {status} before it was ready");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        server.startup = started.elapsed();
        Ok(server)
    }

    /// Where the server keeps its data.
    pub fn db_target(&self) -> &DbTarget {
        &self.store
    }

    /// The process id of the server.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Peak resident set size so far (VmHWM), in bytes.
    pub fn peak_rss(&self) -> u64 {
        status_kib(self.child.id(), "VmHWM:") * 1024
    }

    /// Current resident set size (VmRSS), in bytes.
    pub fn rss(&self) -> u64 {
        status_kib(self.child.id(), "VmRSS:") * 1024
    }

    /// User + system CPU time consumed so far.
    pub fn cpu_time(&self) -> Duration {
        cpu_time_of(self.child.id())
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(mut self) -> anyhow::Result<()> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let status = self.child.wait()?;
        self.stopped = true;
        anyhow::ensure!(status.success(), "server exited with {status}");
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// User + system CPU time process `pid` consumed so far (0 if it is gone).
pub fn cpu_time_of(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after ')'.
    let clock_ticks = 100; // sysconf(_SC_CLK_TCK) is 100 on Linux x86_64
    Duration::from_millis((ticks(11) + ticks(12)) * 1000 / clock_ticks)
}

/// A `/proc/<pid>/status` field in KiB (0 if the process is gone).
pub fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
