//! `followthrough reload`, run as the real executable: it checks the rules, then sends
//! SIGHUP to the process in `server.pid_file` (here a shell that records the signal).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A temporary directory with a config naming `pid_file` and `rules` there.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(rules: &Path) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("followthrough.toml"),
            format!(
                "[server]\npid_file = {:?}\n[rules]\ndir = {:?}\n",
                dir.path().join("serve.pid"),
                rules
            ),
        )
        .unwrap();
        Setup { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn reload(&self, extra: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_followthrough"))
            .arg("--config")
            .arg(self.path("followthrough.toml"))
            .arg("reload")
            .args(extra)
            .current_dir(self.dir.path())
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    }
}

/// A shell that writes `got-hup` when it receives SIGHUP, and `ready` once its trap is
/// set (before that, SIGHUP would end it).
struct HupCatcher {
    child: Child,
    got: PathBuf,
}

impl HupCatcher {
    fn spawn(dir: &Path) -> HupCatcher {
        let got = dir.join("got-hup");
        let ready = dir.join("ready");
        let script = format!(
            "trap 'echo got-hup > {got:?}' HUP; echo > {ready:?}; while true; do sleep 0.1; done"
        );
        let child = Command::new("bash").arg("-c").arg(script).spawn().unwrap();
        assert!(
            wait_for(|| ready.exists()),
            "the shell did not start in time"
        );
        HupCatcher { child, got }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for HupCatcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for(condition: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    condition()
}

#[test]
fn reload_signals_the_running_server() {
    let rules = repo_root().join("examples/rules");
    let setup = Setup::new(&rules);
    let catcher = HupCatcher::spawn(setup.dir.path());
    std::fs::write(setup.path("serve.pid"), format!("{}\n", catcher.pid())).unwrap();

    let out = setup.reload(&[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "reloaded rules in {} (3 rules) in process {}",
            rules.display(),
            catcher.pid()
        )),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
    assert!(wait_for(|| catcher.got.exists()), "no SIGHUP received");
    assert_eq!(std::fs::read_to_string(&catcher.got).unwrap(), "got-hup\n");
}

#[test]
fn reload_refuses_invalid_rules_and_signals_nothing() {
    let examples = repo_root().join("examples/rules");
    let setup = Setup::new(&examples);
    let catcher = HupCatcher::spawn(setup.dir.path());
    std::fs::write(setup.path("serve.pid"), format!("{}\n", catcher.pid())).unwrap();
    let broken = repo_root().join("crates/rules/tests/fixtures/broken");

    let out = setup.reload(&["--rules", broken.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for expected in [
        "broken/bad-duration.yaml:4:43: `3 fortnights` is not a duration",
        "broken/cel-unknown-variable.yaml:4:9: unknown variable `deal`",
        "not reloaded",
    ] {
        assert!(
            stderr.contains(expected),
            "missing `{expected}` in\n{stderr}"
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(!catcher.got.exists(), "signalled despite invalid rules");

    // A missing folder is refused too: the server would keep its rules.
    let out = setup.reload(&["--rules", setup.path("nowhere").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("not found"));
    assert!(!catcher.got.exists());
}

#[test]
fn reload_without_a_running_server_exits_2() {
    let rules = repo_root().join("examples/rules");
    let setup = Setup::new(&rules);

    // No pid file.
    let out = setup.reload(&[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no pid file at"), "{stderr}");

    // A stale one: the process it names has exited.
    let mut gone = Command::new("true").spawn().unwrap();
    let pid = gone.id();
    gone.wait().unwrap();
    std::fs::write(setup.path("serve.pid"), format!("{pid}\n")).unwrap();
    let out = setup.reload(&[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("names process {pid}, which is not running")),
        "{stderr}"
    );

    // Not a pid at all.
    std::fs::write(setup.path("serve.pid"), "hello\n").unwrap();
    let out = setup.reload(&[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("does not hold a process id"));

    // No pid file configured.
    std::fs::write(
        setup.path("followthrough.toml"),
        "[server]\npid_file = \"\"\n",
    )
    .unwrap();
    let out = setup.reload(&["--rules", rules.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("send it SIGHUP yourself"), "{stderr}");
}

const HOURLY_RULE: &str = r#"id: follow-up-in-an-hour
description: A demo request gets a follow-up task an hour later.
on: { object: contact, change: demo_requested, to: "yes" }
steps:
  - wait: 1h
  - create_task: { subject: "Follow up the demo request" }
"#;

/// The real server: a rule with a 1-hour wait gets runs; an invalid edit is refused by
/// `reload` and by SIGHUP alike (the old rules stay in force); removing the rule and
/// reloading cancels its waiting runs, with the reason in the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_removes_a_rule_cancels_its_waiting_runs_and_a_bad_one_changes_nothing() {
    use crate::backend::TestDb;
    use crate::crash::{free_port, start_server, wait_ready};
    use crate::helpers::{SECRET, property_change, signed_headers};
    use followthrough_core::{Clock as _, SystemClock};

    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(dir.path().join("reload.db"));
    let rules = db.file().with_extension("rules"); // the folder start_server points at
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(rules.join("follow-up.yaml"), HOURLY_RULE).unwrap();
    let port = free_port();
    let mut server = start_server(&db, port);
    let client = reqwest::Client::new();
    wait_ready(&client, port).await;

    let post = |contact: u64| {
        let client = client.clone();
        async move {
            let at = SystemClock.now().as_millis();
            let body = serde_json::json!([property_change(
                contact,
                "contact",
                contact,
                at,
                "demo_requested",
                "yes"
            )])
            .to_string();
            let mut request = client
                .post(format!("http://127.0.0.1:{port}/webhooks/hubspot"))
                .body(body.clone());
            for (name, value) in
                signed_headers(SECRET, "http://127.0.0.1:8080/webhooks/hubspot", &body, at)
            {
                request = request.header(name, value);
            }
            assert_eq!(request.send().await.unwrap().status(), 200);
        }
    };
    let waiting = || db.count("SELECT COUNT(*) FROM runs WHERE status = 'waiting'");
    post(1).await;
    assert!(wait_for(|| waiting() == 1), "a run waits");

    // An invalid rule: `reload` refuses it and signals nothing; a SIGHUP sent anyway is
    // refused by the server, which keeps its rules.
    std::fs::write(
        rules.join("broken.yaml"),
        "id: broken\non: { object: contact }\nsteps: []\n",
    )
    .unwrap();
    let config = dir.path().join("followthrough.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\npid_file = {:?}\n[rules]\ndir = {:?}\n",
            db.file().with_extension("pid"),
            rules
        ),
    )
    .unwrap();
    let reload = || {
        Command::new(env!("CARGO_BIN_EXE_followthrough"))
            .arg("--config")
            .arg(&config)
            .arg("reload")
            .output()
            .unwrap()
    };
    let refused = reload();
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused.stderr));
    assert!(
        text(&refused.stderr).contains("broken.yaml:"),
        "{}",
        text(&refused.stderr)
    );
    let hup = Command::new("kill")
        .args(["-HUP", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        server.try_wait().unwrap().is_none(),
        "SIGHUP does not stop the server"
    );
    post(2).await;
    assert!(wait_for(|| waiting() == 2), "the rule is still in force");

    // Without the rule (and the broken file), a reload cancels its waiting runs.
    std::fs::remove_file(rules.join("broken.yaml")).unwrap();
    std::fs::remove_file(rules.join("follow-up.yaml")).unwrap();
    let reloaded = reload();
    assert_eq!(
        reloaded.status.code(),
        Some(0),
        "{}",
        text(&reloaded.stderr)
    );
    let cancelled = || {
        db.count(
            "SELECT COUNT(*) FROM runs WHERE status = 'cancelled' AND reason = 'its rule was removed by a reload'",
        )
    };
    assert!(
        wait_for(|| cancelled() == 2),
        "both runs cancelled: {}",
        cancelled()
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM timers"),
        0,
        "and their timers"
    );
    assert!(
        db.count(
            "SELECT COUNT(*) FROM journal WHERE kind = 'run' AND summary LIKE '%removed by a reload%'"
        ) >= 2,
        "journaled"
    );
    server.kill().unwrap();
    server.wait().unwrap();
}
