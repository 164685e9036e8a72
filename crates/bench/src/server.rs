//! Starting `followthrough serve` as a child process on a fresh store (optionally with a
//! rules folder), and reading its CPU time and peak RSS from /proc.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SECRET: &str = "bench-secret";
/// The public URL the server verifies signatures against (see `server.public_url`).
pub const PUBLIC_URL: &str = "http://127.0.0.1:8080";

pub struct Server {
    child: Child,
    pub port: u16,
    pub startup: Duration,
    _dir: tempfile::TempDir,
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
    /// A server with no rules: ingest only (the engine marks events applied).
    pub async fn start(binary: &Path, extra_env: &[(&str, String)]) -> anyhow::Result<Server> {
        Self::start_with_rules(binary, &[], extra_env).await
    }

    /// A server whose rules folder holds `rules` (file name, text).
    pub async fn start_with_rules(
        binary: &Path,
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
        let started = Instant::now();
        let mut command = Command::new(&binary);
        command
            .arg("serve")
            .current_dir(dir.path())
            .env("FOLLOWTHROUGH__SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env("FOLLOWTHROUGH__SERVER__PUBLIC_URL", PUBLIC_URL)
            .env(
                "FOLLOWTHROUGH__STORE__URL",
                format!("sqlite://{}", dir.path().join("bench.db").display()),
            )
            .env("FOLLOWTHROUGH__RULES__DIR", &rules_dir)
            .env("FOLLOWTHROUGH__SOURCES__HUBSPOT__CLIENT_SECRET", SECRET)
            .env("FOLLOWTHROUGH__LOG__LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (key, value) in extra_env {
            command.env(key, value);
        }
        let child = command.spawn()?;
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
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(Server {
            child,
            port,
            startup: started.elapsed(),
            _dir: dir,
        })
    }

    /// Events accepted but not yet applied by the engine, read from the server's own
    /// database file (read-only; WAL lets this run beside the server).
    pub fn pending_events(&self) -> anyhow::Result<i64> {
        let connection = self.open_db()?;
        Ok(connection.query_row("SELECT COUNT(*) FROM inbox_pending", [], |row| row.get(0))?)
    }

    /// The server's SQLite file.
    pub fn db_path(&self) -> PathBuf {
        self._dir.path().join("bench.db")
    }

    /// A read-only connection to the server's database (WAL lets it run beside the server).
    pub fn open_db(&self) -> anyhow::Result<rusqlite::Connection> {
        Ok(rusqlite::Connection::open_with_flags(
            self.db_path(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )?)
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
        anyhow::ensure!(status.success(), "server exited with {status}");
        Ok(())
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
