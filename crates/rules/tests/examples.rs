//! The three scenarios of DESIGN.md, as shipped in examples/rules: they load cleanly and
//! their rule tests pass.

use std::path::Path;

fn examples() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/rules"))
}

#[test]
fn examples_check_clean() {
    let diagnostics = followthrough_rules::check_dir(examples());
    assert!(diagnostics.is_empty(), "{diagnostics:#?}");
}

#[test]
fn example_rule_tests_pass() {
    let report = followthrough_rules::run_tests(examples());
    let mut out = Vec::new();
    report.print(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    println!("{text}");
    assert!(report.success(), "{text}");
    assert!(report.passed() >= 13, "{text}");
    assert!(text.ends_with(&format!("{} passed, 0 failed\n", report.passed())));
}
