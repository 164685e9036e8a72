//! A folder with one broken rule of each kind: `check` reports every one of them, each
//! at the file, line and column of the offending value.

use std::path::Path;

fn broken() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/broken"
    ))
}

#[test]
fn every_broken_rule_is_reported_at_its_value() {
    let diagnostics = followthrough_rules::check_dir(broken());
    let printed: Vec<String> = diagnostics
        .iter()
        .map(|d| {
            let name = d.file.file_name().unwrap().to_string_lossy();
            format!("{name}:{}:{}: {}", d.line, d.column, d.message)
        })
        .collect();
    let expected = [
        ("parse-error.yaml:3:6:", "did not find expected ',' or '}'"),
        (
            "unknown-field.yaml:3:1:",
            "unknown field `whne`, expected one of",
        ),
        ("unknown-step.yaml:4:5:", "unknown field `wiat`"),
        ("unknown-action.yaml:5:5:", "unknown field `send_fax`"),
        ("cel-syntax.yaml:3:28:", "CEL syntax error"),
        ("cel-unknown-variable.yaml:4:9:", "unknown variable `deal`"),
        ("template-syntax.yaml:6:13:", "template syntax error"),
        (
            "template-unknown-variable.yaml:4:47:",
            "unknown variable `deal` in template",
        ),
        (
            "impossible-duration.yaml:4:11:",
            "`0d` is not a positive duration",
        ),
        (
            "bad-duration.yaml:4:43:",
            "`3 fortnights` is not a duration",
        ),
        (
            "duplicate-b.yaml:2:5:",
            "duplicate rule id `duplicate`: also defined in",
        ),
        ("unknown-event.yaml:2:31:", "unknown event `updated`"),
        ("two-kinds-in-one-step.yaml:4:5:", "a step does one thing"),
    ];
    for (at, message) in expected {
        assert!(
            printed
                .iter()
                .any(|p| p.starts_with(at) && p.contains(message)),
            "no `{at} ...{message}...` in:\n{}",
            printed.join("\n")
        );
    }
    assert_eq!(printed.len(), expected.len(), "{}", printed.join("\n"));
    // Display is exactly `file:line:column: message`.
    let first = &diagnostics[0];
    assert_eq!(
        first.to_string(),
        format!(
            "{}:{}:{}: {}",
            first.file.display(),
            first.line,
            first.column,
            first.message
        )
    );
}

#[test]
fn a_wrong_expectation_fails_with_a_readable_diff() {
    let dir = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/wrong-expectation"
    ));
    let report = followthrough_rules::run_tests(dir);
    let mut out = Vec::new();
    report.print(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(!report.success(), "{text}");
    assert_eq!(report.failed(), 2, "{text}");
    assert_eq!(report.passed(), 1, "{text}");
    assert!(text.ends_with("1 passed, 2 failed\n"), "{text}");
    assert!(
        text.contains("FAILED  wrong.test.yaml: expects a task but the rule sends a DM"),
        "{text}"
    );
    assert!(
        text.contains("action #1: expected `create_task`, got `slack_dm`"),
        "{text}"
    );
    assert!(text.contains("- 1. create_task"), "{text}");
    assert!(text.contains("+ 1. slack_dm at +0"), "{text}");
    assert!(
        text.contains("params.channel expected \"#wrong\", got \"#deals\""),
        "{text}"
    );
}
