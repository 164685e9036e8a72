//! `followthrough check`, `test` and `replay --dry-run`, run as the real executable in an
//! empty temporary directory: exit codes, what goes to stdout and stderr, and that a
//! replay writes nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use serde_json::{Value, json};

/// 2025-11-28T10:00:00Z, a Friday, in milliseconds.
const T0: i64 = 1_764_324_000_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn followthrough(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_followthrough"))
        .args(args)
        .current_dir(cwd)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn path_arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The names in `dir`, to show that nothing was written there.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn check_accepts_the_examples() {
    let cwd = tempfile::tempdir().unwrap();
    let rules = repo_root().join("examples/rules");
    let out = followthrough(cwd.path(), &["check", path_arg(&rules)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
}

#[test]
fn check_names_file_line_and_column_of_every_broken_rule() {
    let cwd = tempfile::tempdir().unwrap();
    let broken = repo_root().join("crates/rules/tests/fixtures/broken");
    let out = followthrough(cwd.path(), &["check", path_arg(&broken)]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty(), "diagnostics go to stderr");
    for expected in [
        "broken/bad-duration.yaml:4:43: `3 fortnights` is not a duration",
        "broken/impossible-duration.yaml:4:11: `0d` is not a positive duration",
        "broken/cel-unknown-variable.yaml:4:9: unknown variable `deal`",
        "broken/unknown-field.yaml:3:1: unknown field `whne`",
        "broken/parse-error.yaml:3:6: ",
        "broken/template-syntax.yaml:6:13: template syntax error",
        "broken/duplicate-b.yaml:2:5: duplicate rule id `duplicate`",
    ] {
        assert!(
            stderr.contains(expected),
            "missing `{expected}` in\n{stderr}"
        );
    }
    // Every broken file (but the first of the duplicate pair) has its own file:line:column.
    for entry in std::fs::read_dir(&broken).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name == "duplicate-a.yaml" {
            continue;
        }
        let located = stderr.lines().any(|line| {
            line.split_once(&format!("broken/{name}:"))
                .and_then(|(_, rest)| rest.split_once(": "))
                .is_some_and(|(position, _)| {
                    let parts: Vec<&str> = position.split(':').collect();
                    parts.len() == 2 && parts.iter().all(|p| p.parse::<u64>().is_ok())
                })
        });
        assert!(located, "{name} has no file:line:column in\n{stderr}");
    }
}

#[test]
fn test_passes_the_examples() {
    let cwd = tempfile::tempdir().unwrap();
    let rules = repo_root().join("examples/rules");
    let out = followthrough(cwd.path(), &["test", path_arg(&rules)]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    let last = stdout.lines().last().unwrap();
    let passed = last.strip_suffix(" passed, 0 failed").unwrap_or_else(|| {
        panic!("last line `{last}` is not `N passed, 0 failed`");
    });
    assert!(passed.parse::<usize>().unwrap() >= 13, "{stdout}");
}

#[test]
fn test_shows_a_wrong_expectation_as_a_diff() {
    let cwd = tempfile::tempdir().unwrap();
    let dir = repo_root().join("crates/rules/tests/fixtures/wrong-expectation");
    let out = followthrough(cwd.path(), &["test", path_arg(&dir)]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    for expected in [
        "ok      wrong.test.yaml: right",
        "FAILED  wrong.test.yaml: expects a task but the rule sends a DM",
        "action #1: expected `create_task`, got `slack_dm`",
        "--- expected",
        "- 1. create_task {\"priority\":\"HIGH\"}",
        "+++ actual",
        "+ 1. slack_dm at +0",
        "params.channel expected \"#wrong\", got \"#deals\"",
    ] {
        assert!(
            stdout.contains(expected),
            "missing `{expected}` in\n{stdout}"
        );
    }
    assert_eq!(stdout.lines().last(), Some("1 passed, 2 failed"));
}

#[test]
fn replay_requires_dry_run() {
    let cwd = tempfile::tempdir().unwrap();
    std::fs::write(cwd.path().join("events.jsonl"), "").unwrap();
    let out = followthrough(cwd.path(), &["replay", "events.jsonl"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--dry-run"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(entries(cwd.path()), ["events.jsonl"]);
}

/// One HubSpot property change as the webhook carries it.
fn change(
    event_id: usize,
    object_type: &str,
    id: usize,
    at: i64,
    property: &str,
    value: &str,
) -> Value {
    json!({
        "eventId": event_id, "subscriptionId": 2101, "portalId": 62515, "occurredAt": at,
        "subscriptionType": format!("{object_type}.propertyChange"), "objectId": id,
        "propertyName": property, "propertyValue": value, "changeSource": "CRM_UI",
    })
}

const SQL_CONTACTS: usize = 10_000;
const DEALS: usize = 8_000;
const QUIET_CONTACTS: usize = 6_000;
const COMPANY_CHANGES: usize = 40_000;

/// 100,000 HubSpot events over 20 days, in four groups whose outcome under
/// `examples/rules` follows from the index alone (see `replay_of_100k_hubspot_events`).
fn generate_hubspot_events() -> Vec<Value> {
    let mut events = Vec::new();
    let mut add = |object_type: &str, id: usize, at: i64, property: &str, value: &str| {
        let n = events.len() + 1;
        events.push(change(n, object_type, id, at, property, value));
    };
    // A: contacts 1..=10,000 become SQLs on day 0; four in five have an owner first.
    for i in 0..SQL_CONTACTS {
        let at = T0 + i as i64 * 1000;
        if i % 5 != 0 {
            add("contact", 1 + i, at, "hubspot_owner_id", "882761034");
        }
        add(
            "contact",
            1 + i,
            at + 500,
            "lifecyclestage",
            "salesqualifiedlead",
        );
    }
    // B: deals 1..=8,000 owned by 42 move proposal -> negotiation on day 1. j % 4 == 0
    // had a next step already; j % 4 == 1 gets one 3 h later; the rest never do.
    for j in 0..DEALS {
        let at = T0 + DAY + j as i64 * 1000;
        add("deal", 1 + j, at, "hubspot_owner_id", "42");
        add("deal", 1 + j, at + 100, "dealstage", "proposal");
        if j % 4 == 0 {
            add("deal", 1 + j, at + 200, "next_step", "Call CFO");
        }
        add("deal", 1 + j, at + 300, "dealstage", "negotiation");
        if j % 4 == 1 {
            add(
                "deal",
                1 + j,
                at + 300 + 3 * HOUR,
                "next_step",
                "Send the quote",
            );
        }
    }
    // C: contacts 20,001..=26,000 with a lead score (hot if k is even) and activity:
    // k % 3 == 0 on day 0; k % 3 == 1 on day 0 and again on day 5 (the wait restarts);
    // k % 3 == 2 on day 10 (its 14 days end after the recording).
    for k in 0..QUIET_CONTACTS {
        let at = T0 + k as i64 * 1000;
        let id = 20_001 + k;
        let score = if k % 2 == 0 { "80" } else { "20" };
        add("contact", id, at, "lead_score", score);
        let first = if k % 3 == 2 { at + 10 * DAY } else { at };
        add("contact", id, first + 100, "notes_last_contacted", "1");
        if k % 3 == 1 {
            add(
                "contact",
                id,
                at + 5 * DAY + 100,
                "notes_last_contacted",
                "2",
            );
        }
    }
    // D: company renames that no rule watches, the last one exactly on day 20.
    for m in 0..COMPANY_CHANGES {
        let at = T0 + (m as i64 + 1) * (20 * DAY / COMPANY_CHANGES as i64);
        add("company", 1 + m % 1000, at, "name", &format!("Company {m}"));
    }
    events
}

#[test]
fn replay_of_100k_hubspot_events_prints_the_expected_actions_and_writes_nothing() {
    let events = generate_hubspot_events();
    assert_eq!(events.len(), 100_000);
    let cwd = tempfile::tempdir().unwrap();
    let input = cwd.path().join("hubspot.jsonl");
    // As received: bodies of 100 events, one per line; not in time order (groups D, C,
    // B, A), as a recording merged from several files might be.
    let mut body = String::new();
    for chunk in events.chunks(100).rev() {
        body.push_str(&serde_json::to_string(chunk).unwrap());
        body.push('\n');
    }
    std::fs::write(&input, body).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let owners = elsewhere.path().join("owners.json");
    std::fs::write(
        &owners,
        r#"[{"id": "42", "email": "rep@example.com", "name": "Rae Rep", "teams": ["closers"]}]"#,
    )
    .unwrap();
    let rules = repo_root().join("examples/rules");

    let started = Instant::now();
    let out = followthrough(
        cwd.path(),
        &[
            "replay",
            "--dry-run",
            "--rules",
            path_arg(&rules),
            "--owners",
            path_arg(&owners),
            "hubspot.jsonl",
        ],
    );
    let elapsed = started.elapsed();
    eprintln!("replay of 100,000 events took {elapsed:?}");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");

    let lines: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut counts: BTreeMap<(String, String), usize> = BTreeMap::new();
    for line in &lines {
        assert_eq!(line["outcome"], "action", "{line}");
        let key = (
            line["rule_id"].as_str().unwrap().to_owned(),
            line["action"].as_str().unwrap().to_owned(),
        );
        *counts.entry(key).or_default() += 1;
    }

    // A: one call task per SQL with an owner (the guard skips the others).
    let owned_sqls = (0..SQL_CONTACTS).filter(|i| i % 5 != 0).count();
    // B: enforce mode: a DM and a revert per deal entering negotiation without a next
    // step; the escalation after 24 h for those whose next step never came.
    let without_next_step = (0..DEALS).filter(|j| j % 4 != 0).count();
    let escalated = (0..DEALS).filter(|j| j % 4 >= 2).count();
    // C: the 14-day wait ends inside the recording for k % 3 != 2; hot leads (score 80)
    // go to the hunters with a task, cold ones (20) to nurture and hibernation.
    let gone_cold = |hot: bool| {
        (0..QUIET_CONTACTS)
            .filter(|k| k % 3 != 2 && (k % 2 == 0) == hot)
            .count()
    };
    let expected: BTreeMap<(String, String), usize> = [
        ("new-sql-gets-a-call", "create_task", owned_sqls),
        ("negotiation-needs-next-step", "slack_dm", without_next_step),
        ("negotiation-needs-next-step", "revert", without_next_step),
        ("negotiation-needs-next-step", "slack_message", escalated),
        ("lead-gone-cold", "assign_owner", gone_cold(true)),
        ("lead-gone-cold", "create_task", gone_cold(true)),
        ("lead-gone-cold", "enroll_sequence", gone_cold(false)),
        ("lead-gone-cold", "update", gone_cold(false)),
    ]
    .into_iter()
    .map(|(rule, action, n)| ((rule.to_owned(), action.to_owned()), n))
    .collect();
    assert_eq!(
        (owned_sqls, without_next_step, escalated, gone_cold(true)),
        (8_000, 6_000, 4_000, 2_000),
        "the hand computation"
    );
    assert_eq!(counts, expected);
    let total: usize = expected.values().sum();
    let waiting = (0..QUIET_CONTACTS).filter(|k| k % 3 == 2).count();
    assert!(
        stderr.contains(&format!(
            "replay: 100000 events read, {total} actions, 0 failures, {waiting} runs still waiting"
        )),
        "{stderr}"
    );

    // Spot checks: rendered parameters and simulated time. Deal 3 (j = 2) entered
    // negotiation at day 1 + 2 s + 300 ms and was escalated 24 h later.
    let deal_3 = |action: &str| {
        lines
            .iter()
            .find(|l| l["object"]["id"] == "3" && l["action"] == action)
            .unwrap_or_else(|| panic!("no {action} for deal 3"))
    };
    let entered = T0 + DAY + 2000 + 300;
    assert_eq!(deal_3("revert")["at"], entered);
    assert_eq!(deal_3("revert")["object"]["type"], "deal");
    assert_eq!(
        deal_3("revert")["params"],
        json!({"property": "dealstage", "value": "proposal", "from": "negotiation"})
    );
    assert_eq!(deal_3("slack_dm")["params"]["to"], "rep@example.com");
    assert_eq!(deal_3("slack_message")["at"], entered + DAY);
    // No dealname in this recording: the template renders it empty.
    assert_eq!(
        deal_3("slack_message")["params"]["text"],
        " still has no next step (Rae Rep)."
    );

    assert_eq!(entries(cwd.path()), ["hubspot.jsonl"], "nothing written");
    assert_eq!(
        entries(elsewhere.path()),
        ["owners.json"],
        "nothing written"
    );
}

/// Canonical events (followthrough's own JSON) and a HubSpot body in one file.
fn canonical_file() -> String {
    let event = |n: usize, at: i64, property: &str, value: &str| {
        json!({
            "id": format!("evt_{n}"), "source": "hubspot", "dedup_key": format!("1:1:{n}"),
            "object": {"source": "hubspot", "type": "contact", "id": "501"},
            "kind": "property_change", "property": property, "value": value,
            "occurred_at": at, "received_at": at, "subscription": "contact.propertyChange",
            "change_source": "CRM_UI", "raw": {},
        })
        .to_string()
    };
    let hubspot = serde_json::to_string(&[change(
        3,
        "deal",
        9001,
        T0 + 2000,
        "dealstage",
        "negotiation",
    )])
    .unwrap();
    [
        event(1, T0, "hubspot_owner_id", "882761034"),
        event(2, T0 + 1000, "lifecyclestage", "salesqualifiedlead"),
        String::new(),
        hubspot,
    ]
    .join("\n")
}

#[test]
fn replay_reads_canonical_events_and_reports_failed_runs() {
    let cwd = tempfile::tempdir().unwrap();
    std::fs::write(cwd.path().join("events.jsonl"), canonical_file()).unwrap();
    let rules = repo_root().join("examples/rules");
    let out = followthrough(
        cwd.path(),
        &[
            "replay",
            "--dry-run",
            "--rules",
            path_arg(&rules),
            "events.jsonl",
        ],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let lines: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:#?}");

    let task = &lines[0];
    assert_eq!(task["outcome"], "action");
    assert_eq!(task["rule_id"], "new-sql-gets-a-call");
    assert_eq!(task["action"], "create_task");
    assert_eq!(
        task["object"],
        json!({"source": "hubspot", "type": "contact", "id": "501"})
    );
    assert_eq!(task["at"], T0 + 1000);
    assert_eq!(task["params"]["owner_id"], "882761034");
    assert_eq!(task["params"]["priority"], "HIGH");
    // One business day from Friday 10:00:01 in the default calendar (UTC, Mon-Fri).
    assert_eq!(task["params"]["due_at"], "2025-12-01T10:00:01Z");

    // No --owners: the deal's `slack_dm to: owner` has nobody to write to. The run fails
    // (reported, not fatal), so its revert is not taken.
    let failed = &lines[1];
    assert_eq!(failed["outcome"], "failed");
    assert_eq!(failed["rule_id"], "negotiation-needs-next-step");
    assert_eq!(failed["object"]["id"], "9001");
    assert!(
        failed["why"]
            .as_str()
            .unwrap()
            .contains("no owner with an email"),
        "{failed}"
    );
    assert!(
        stderr.contains("replay: 3 events read, 1 actions, 1 failures, 0 runs still waiting"),
        "{stderr}"
    );
    assert_eq!(entries(cwd.path()), ["events.jsonl"]);
}

#[test]
fn replay_uses_the_configured_calendar() {
    let cwd = tempfile::tempdir().unwrap();
    std::fs::write(cwd.path().join("events.jsonl"), canonical_file()).unwrap();
    let config = tempfile::tempdir().unwrap();
    let six_days = config.path().join("six-days.toml");
    std::fs::write(
        &six_days,
        "[rules]\ntime_zone = \"Europe/Paris\"\nworking_days = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\"]\n",
    )
    .unwrap();
    let rules = repo_root().join("examples/rules");
    let args = |config: &Path| -> Vec<String> {
        [
            "--config",
            path_arg(config),
            "replay",
            "--dry-run",
            "--rules",
            path_arg(&rules),
            "events.jsonl",
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let run = |config: &Path| {
        let args = args(config);
        followthrough(
            cwd.path(),
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        )
    };
    let out = run(&six_days);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let task: Value = serde_json::from_str(text(&out.stdout).lines().next().unwrap()).unwrap();
    // Saturday is a working day here: one business day from Friday is Saturday.
    assert_eq!(task["params"]["due_at"], "2025-11-29T10:00:01Z");

    let bad = config.path().join("bad.toml");
    std::fs::write(&bad, "[rules]\ntime_zone = \"Mars/Olympus\"\n").unwrap();
    let out = run(&bad);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("rules.time_zone"),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn replay_reports_every_malformed_line_and_replays_nothing() {
    let cwd = tempfile::tempdir().unwrap();
    let good = canonical_file();
    let body = format!(
        "{}\nnot json\n{{\"eventId\":1,\"subscriptionType\":\"contact.creation\",\"objectId\":1}}\n[{{\"eventId\":1}}]\n",
        good.lines().next().unwrap()
    );
    std::fs::write(cwd.path().join("events.jsonl"), body).unwrap();
    let rules = repo_root().join("examples/rules");
    let out = followthrough(
        cwd.path(),
        &[
            "replay",
            "--dry-run",
            "--rules",
            path_arg(&rules),
            "events.jsonl",
        ],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing replayed");
    assert!(
        stderr.contains("events.jsonl:2: expected a HubSpot webhook body"),
        "{stderr}"
    );
    assert!(
        stderr.contains("events.jsonl:3: not a canonical event")
            && stderr.contains("must be inside a JSON array"),
        "{stderr}"
    );
    assert!(
        stderr.contains("events.jsonl:4: not a HubSpot webhook body: event 0: missing field"),
        "{stderr}"
    );
    assert!(!stderr.contains("events.jsonl:1:"), "{stderr}");
    assert_eq!(entries(cwd.path()), ["events.jsonl"]);
}

#[test]
fn replay_until_lets_waits_end_after_the_recording() {
    let cwd = tempfile::tempdir().unwrap();
    let body = serde_json::to_string(&[
        change(1, "contact", 7, T0, "lead_score", "80"),
        change(2, "contact", 7, T0 + 100, "notes_last_contacted", "1"),
    ])
    .unwrap();
    std::fs::write(cwd.path().join("events.jsonl"), body).unwrap();
    let rules = repo_root().join("examples/rules");
    let replay = |extra: &[&str]| {
        let mut args = vec!["replay", "--dry-run", "--rules", path_arg(&rules)];
        args.extend_from_slice(extra);
        args.push("events.jsonl");
        followthrough(cwd.path(), &args)
    };

    let out = replay(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        out.stdout.is_empty(),
        "the 14 days end after the last event"
    );
    assert!(text(&out.stderr).contains("0 actions, 0 failures, 1 runs still waiting"));

    let out = replay(&["--until", "2025-12-20T00:00:00Z"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let actions: Vec<(&str, i64)> = lines
        .iter()
        .map(|l| (l["action"].as_str().unwrap(), l["at"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        actions,
        [
            ("assign_owner", T0 + 100 + 14 * DAY),
            ("create_task", T0 + 100 + 14 * DAY)
        ]
    );

    let out = replay(&["--until", "next week"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("--until"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(entries(cwd.path()), ["events.jsonl"]);
}
