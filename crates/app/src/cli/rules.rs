//! `followthrough check DIR` and `followthrough test DIR`: load-time validation and rule
//! tests, straight from the rules library. Neither opens a store nor needs a secret, so
//! both run in a CI job that has only the rules repository.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use followthrough_rules::{check_dir, print_diagnostics, run_tests};

/// Prints every problem of every rule and test file under `dir` as
/// `file:line:column: message` on stderr (or one JSON object per line on stdout with
/// `json`, for editors and scripts). Exit 1 if there is any.
pub fn check(dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let diagnostics = check_dir(dir);
    if json {
        let mut out = std::io::stdout().lock();
        for diagnostic in &diagnostics {
            serde_json::to_writer(&mut out, diagnostic)?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
    } else {
        print_diagnostics(&diagnostics, &mut std::io::stderr().lock())?;
    }
    if diagnostics.is_empty() {
        eprintln!("{}: no problems", dir.display());
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::from(1))
    }
}

/// Runs the `*.test.yaml` cases under `dir`. The report is the command's result, so it
/// goes to stdout: `ok`/`FAILED` per case with a diff, then exactly `N passed, M failed`.
pub fn test(dir: &Path) -> anyhow::Result<ExitCode> {
    let report = run_tests(dir);
    if report.cases.is_empty() && report.diagnostics.is_empty() {
        eprintln!("{}: no *.test.yaml files", dir.display());
    }
    let mut out = std::io::stdout().lock();
    report.print(&mut out)?;
    out.flush()?;
    Ok(if report.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
