//! `followthrough dlq list|show|replay`, run as the real executable on a store whose
//! dead letters were made through the store API, as the outbox workers make them.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use followthrough_core::{Clock as _, ObjectRef, RunId, SystemClock, Timestamp};
use followthrough_store::{
    AttemptRecord, AttemptResult, DeadLetterReason, OutboxJob, Store, UnitOfWork,
};
use serde_json::{Value, json};

use crate::backend::TestDb;

const HOUR: Duration = Duration::from_secs(3600);

/// A store with a config naming it, open as a running server would hold it.
struct Setup {
    dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    _db: TestDb,
}

impl Setup {
    async fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let db = TestDb::new(dir.path().join("followthrough.db"));
        std::fs::write(dir.path().join("followthrough.toml"), db.config_toml()).unwrap();
        let store = db.open(true).await;
        Setup {
            dir,
            store,
            _db: db,
        }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("followthrough.toml")
    }

    /// Runs `followthrough --config FILE dlq ARGS...`.
    fn dlq(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_followthrough"))
            .arg("--config")
            .arg(self.config())
            .arg("dlq")
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    }

    /// Queues a `create_task` job of `rule` about `object`, claims it and records it
    /// dead (terminal, HTTP 400), as a HubSpot worker would. Returns the letter's id.
    async fn dead_letter(&self, rule: &str, object: &str) -> i64 {
        let now = SystemClock.now();
        let an_hour_ago = Timestamp(now.as_millis() - 3_600_000);
        let run_id = RunId::new();
        let job = OutboxJob {
            idempotency_key: format!("{run_id}:steps[0]"),
            run_id,
            rule_id: rule.into(),
            action: "create_task".into(),
            connector: "hubspot".into(),
            object: object.parse::<ObjectRef>().unwrap(),
            params: json!({ "subject": "Call Ada Lovelace", "email": "ada@example.com" }),
            created_at: an_hour_ago,
            next_at: an_hour_ago,
        };
        self.store
            .apply(UnitOfWork {
                outbox: vec![job.clone()],
                ..UnitOfWork::default()
            })
            .await
            .unwrap();
        let mut claimed = self
            .store
            .claim_jobs("hubspot", now, now.saturating_add(HOUR), 10)
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1, "{claimed:?}");
        let claimed = claimed.remove(0);
        let recorded = self
            .store
            .record_attempt(AttemptRecord {
                seq: claimed.seq,
                lease: claimed.lease,
                at: now,
                result: AttemptResult::Dead(DeadLetterReason {
                    kind: "terminal".into(),
                    message: "Property values were not valid: hs_task_type is required".into(),
                    last_status: Some(400),
                    last_response: Some(
                        r#"{"status":"error","category":"VALIDATION_ERROR"}"#.into(),
                    ),
                }),
                journal: vec![],
                timers: vec![],
            })
            .await
            .unwrap();
        assert!(recorded);
        let letters = self.store.dead_letters(true).await.unwrap();
        let letter = letters
            .iter()
            .find(|letter| letter.job.idempotency_key == job.idempotency_key)
            .unwrap();
        letter.id
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn json_of(out: &Output) -> Value {
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)))
}

#[tokio::test]
async fn list_shows_waiting_letters_without_params_and_show_prints_everything() {
    let setup = Setup::new().await;
    let cold = setup
        .dead_letter("lead-gone-cold", "hubspot:contact:501")
        .await;
    let sql = setup
        .dead_letter("new-sql-gets-a-call", "hubspot:contact:502")
        .await;

    let out = setup.dlq(&["list"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let listed = text(&out.stdout);
    let line = listed
        .lines()
        .find(|line| line.starts_with(&format!("{cold} ")))
        .unwrap_or_else(|| panic!("no line for {cold}:\n{listed}"));
    for field in [
        "lead-gone-cold",
        "create_task",
        "hubspot:contact:501",
        "terminal",
        "Property values were not valid",
    ] {
        assert!(line.contains(field), "{field} missing from {line}");
    }
    assert!(
        line.contains('T') && line.contains('Z'),
        "dead_at in RFC 3339: {line}"
    );
    assert!(listed.contains("hubspot:contact:502"));
    assert!(
        !listed.contains("Ada"),
        "params stay out of the list:\n{listed}"
    );

    let json = json_of(&setup.dlq(&["list", "--json"]));
    let letters = json.as_array().unwrap();
    assert_eq!(letters.len(), 2);
    assert_eq!(letters[0]["id"], cold);
    assert_eq!(letters[0]["rule_id"], "lead-gone-cold");
    assert_eq!(letters[0]["kind"], "terminal");
    assert_eq!(letters[0]["last_status"], 400);
    assert_eq!(letters[0]["object"]["id"], "501");
    assert!(letters[0].get("params").is_none(), "{}", letters[0]);

    let only = json_of(&setup.dlq(&["list", "--rule", "new-sql-gets-a-call", "--json"]));
    let ids: Vec<&Value> = only.as_array().unwrap().iter().map(|l| &l["id"]).collect();
    assert_eq!(ids, vec![&json!(sql)]);

    let out = setup.dlq(&["show", &cold.to_string()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    for field in [
        "Call Ada Lovelace",
        "ada@example.com",
        "terminal",
        "hs_task_type is required",
        "400",
        "VALIDATION_ERROR",
        "lead-gone-cold",
        "run_",
        ":steps[0]",
        "waiting",
    ] {
        assert!(shown.contains(field), "{field} missing from:\n{shown}");
    }

    let json = json_of(&setup.dlq(&["show", &cold.to_string(), "--json"]));
    assert_eq!(json["params"]["subject"], "Call Ada Lovelace");
    assert_eq!(
        json["message"],
        "Property values were not valid: hs_task_type is required"
    );
    assert_eq!(json["attempts"], 1);
    assert_eq!(json["replayed_at"], Value::Null);

    let unknown = setup.dlq(&["show", "9999"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(unknown.stdout.is_empty());
    assert!(
        text(&unknown.stderr).contains("9999"),
        "{}",
        text(&unknown.stderr)
    );
}

#[tokio::test]
async fn replay_puts_a_letter_back_once_and_a_worker_claims_it_again() {
    let setup = Setup::new().await;
    let id = setup
        .dead_letter("lead-gone-cold", "hubspot:contact:501")
        .await;
    let before = SystemClock.now();

    let out = setup.dlq(&["replay", &id.to_string()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&format!("replayed 1 dead letter(s): {id}")),
        "{}",
        text(&out.stdout)
    );

    // Pending and due now: the store (a server's, here) claims it again, as a first attempt.
    let now = SystemClock.now();
    let claimed = setup
        .store
        .claim_jobs("hubspot", now, now.saturating_add(HOUR), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "{claimed:?}");
    assert_eq!(claimed[0].job.rule_id, "lead-gone-cold");
    assert_eq!(claimed[0].attempt, 1);

    let letter = setup.store.dead_letter(id).await.unwrap().unwrap();
    assert!(letter.replayed_at.is_some_and(|at| at >= before));
    let object: ObjectRef = "hubspot:contact:501".parse().unwrap();
    let journal = setup.store.journal_for(&object).await.unwrap();
    let entry = journal
        .iter()
        .find(|entry| entry.summary.contains("replayed from dead letter"))
        .unwrap_or_else(|| panic!("no replay in the journal: {journal:?}"));
    assert_eq!(
        entry.summary,
        format!("action create_task replayed from dead letter {id} (by followthrough dlq replay)")
    );
    assert_eq!(entry.detail["dead_letter_id"], id);
    assert_eq!(entry.detail["outcome"], "replayed");
    assert_eq!(entry.detail["key"], letter.job.idempotency_key);

    assert_eq!(json_of(&setup.dlq(&["list", "--json"])), json!([]));
    let all = json_of(&setup.dlq(&["list", "--all", "--json"]));
    assert_eq!(all[0]["id"], id);
    assert!(all[0]["replayed_at"].is_i64(), "{all}");

    let again = setup.dlq(&["replay", &id.to_string()]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("already replayed"),
        "{}",
        text(&again.stderr)
    );
    let unknown = setup.dlq(&["replay", "9999"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(text(&unknown.stderr).contains("no such dead letter"));
}

#[tokio::test]
async fn replay_all_takes_only_the_rule_asked_for() {
    let setup = Setup::new().await;
    let cold = setup
        .dead_letter("lead-gone-cold", "hubspot:contact:501")
        .await;
    let sql = setup
        .dead_letter("new-sql-gets-a-call", "hubspot:contact:502")
        .await;

    let json = json_of(&setup.dlq(&["replay", "--all", "--rule", "lead-gone-cold", "--json"]));
    assert_eq!(json, json!({ "replayed": [cold] }));
    let waiting = json_of(&setup.dlq(&["list", "--json"]));
    assert_eq!(waiting.as_array().unwrap().len(), 1);
    assert_eq!(waiting[0]["id"], sql);

    let json = json_of(&setup.dlq(&["replay", "--all", "--json"]));
    assert_eq!(json, json!({ "replayed": [sql] }));
    let none = setup.dlq(&["replay", "--all"]);
    assert_eq!(
        none.status.code(),
        Some(0),
        "nothing waiting is not a failure"
    );
    assert!(text(&none.stdout).contains("replayed 0"));
}

#[tokio::test]
async fn replay_without_ids_or_all_is_bad_usage() {
    let setup = Setup::new().await;
    let id = setup
        .dead_letter("lead-gone-cold", "hubspot:contact:501")
        .await;
    let id_arg = id.to_string();
    for args in [
        vec!["replay"],
        vec!["replay", "--rule", "lead-gone-cold"],
        vec!["replay", "--all", &id_arg],
        vec!["replay", "seven"],
    ] {
        let out = setup.dlq(&args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    assert!(
        setup
            .store
            .dead_letter(id)
            .await
            .unwrap()
            .unwrap()
            .replayed_at
            .is_none()
    );
}
