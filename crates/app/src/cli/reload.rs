//! `followthrough reload`: checks the rules folder, then asks the running `serve` to
//! reload it by sending SIGHUP to the process named in `server.pid_file`.
//!
//! Checking first means a broken rule is reported here, at the terminal, instead of only
//! in the server's log (the server would keep its old rules anyway). Exit codes: 0
//! signalled, 1 a rule is invalid (nothing signalled) or the signal failed, 2 no running
//! server found.

use std::path::Path;
use std::process::ExitCode;

use followthrough_rules::{RuleSet, print_diagnostics};

use crate::rules_handle::{process_alive, read_pid, send_sighup};

const NO_SERVER: u8 = 2;

pub fn run(dir: &Path, pid_file: &Path) -> anyhow::Result<ExitCode> {
    // The server refuses a missing folder on reload (it would remove every rule).
    if !dir.is_dir() {
        eprintln!(
            "error: rules folder {} not found: nothing to reload",
            dir.display()
        );
        return Ok(ExitCode::from(1));
    }
    let rules = match RuleSet::load_dir(dir) {
        Ok(set) => set.rules().len(),
        Err(diagnostics) => {
            print_diagnostics(&diagnostics, &mut std::io::stderr().lock())?;
            eprintln!("not reloaded: the server keeps its rules until these are fixed");
            return Ok(ExitCode::from(1));
        }
    };
    if pid_file.as_os_str().is_empty() {
        eprintln!(
            "error: server.pid_file is empty, so the server's process id is unknown: send it SIGHUP yourself (kill -HUP <pid>)"
        );
        return Ok(ExitCode::from(NO_SERVER));
    }
    let pid = match read_pid(pid_file) {
        Ok(Some(pid)) => pid,
        Ok(None) => {
            eprintln!(
                "error: no pid file at {}: is `followthrough serve` running, with this server.pid_file (relative paths are from its working directory)?",
                pid_file.display()
            );
            return Ok(ExitCode::from(NO_SERVER));
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            return Ok(ExitCode::from(NO_SERVER));
        }
    };
    if !process_alive(pid) {
        eprintln!(
            "error: {} names process {pid}, which is not running (a stale pid file): is `followthrough serve` running?",
            pid_file.display()
        );
        return Ok(ExitCode::from(NO_SERVER));
    }
    if let Err(error) = send_sighup(pid) {
        eprintln!("error: cannot send SIGHUP to process {pid}: {error}");
        let gone = error.raw_os_error() == Some(rustix::io::Errno::SRCH.raw_os_error());
        return Ok(ExitCode::from(if gone { NO_SERVER } else { 1 }));
    }
    eprintln!(
        "reloaded rules in {} ({rules} rules) in process {pid}: sent SIGHUP; the server's log shows the outcome",
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}
