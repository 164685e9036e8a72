//! The rules in force, replaceable while the service runs: [`RulesHandle`] holds the
//! current [`RuleSet`] and reloads its folder on demand (SIGHUP, see
//! [`spawn_sighup_reloader`]); [`PidFile`] lets `followthrough reload` find the process
//! to signal.
//!
//! A reload is all or nothing: if any rule is invalid the old set stays in force, so a
//! typo in one file never stops the others. Readers take an `Arc` of the set
//! ([`RulesHandle::current`]) and keep evaluating against it while a reload swaps in
//! the next one.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use anyhow::Context as _;
use followthrough_rules::{Diagnostic, Pos, RuleSet, RuleSetDiff};
use tokio_util::sync::CancellationToken;

/// The rule set in force and the folder it comes from.
#[derive(Debug)]
pub struct RulesHandle {
    dir: PathBuf,
    current: RwLock<Arc<RuleSet>>,
    /// Bumped by every successful reload: which set a cache was built from.
    generation: AtomicU64,
    /// One reload at a time, so each diff is against the set it replaces and an older
    /// read of the folder never replaces a newer one.
    reloading: Mutex<()>,
}

impl RulesHandle {
    /// Loads the folder; a missing folder is an empty set (logged as a warning); invalid
    /// rules → `Err(diagnostics)`.
    pub fn load(dir: &Path) -> Result<RulesHandle, Vec<Diagnostic>> {
        let set = if dir.exists() {
            RuleSet::load_dir(dir)?
        } else {
            tracing::warn!(
                dir = %dir.display(),
                "rules folder not found: starting with no rules"
            );
            RuleSet::default()
        };
        Ok(Self::with_dir(dir.to_owned(), set))
    }

    /// A handle on a set built in memory (tests); [`RulesHandle::reload`] then reads the
    /// empty path, which does not exist, and fails.
    pub fn from_set(set: RuleSet) -> RulesHandle {
        Self::with_dir(PathBuf::new(), set)
    }

    fn with_dir(dir: PathBuf, set: RuleSet) -> RulesHandle {
        RulesHandle {
            dir,
            current: RwLock::new(Arc::new(set)),
            generation: AtomicU64::new(0),
            reloading: Mutex::new(()),
        }
    }

    /// The folder the rules are loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The set in force. Evaluate one event (or batch) against one `current()`, so all of
    /// it sees the same rules even if a reload happens meanwhile.
    pub fn current(&self) -> Arc<RuleSet> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// 0 for the set loaded first, +1 on each successful reload.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Reloads the folder; on any invalid rule keeps the old set and returns the
    /// diagnostics.
    ///
    /// Unlike [`RulesHandle::load`], a folder that has gone missing is an error, not an
    /// empty set: a renamed folder or a deploy half done would otherwise remove every rule
    /// and cancel every run. To remove all rules, delete their files.
    pub fn reload(&self) -> Result<RuleSetDiff, Vec<Diagnostic>> {
        let _one_at_a_time = self
            .reloading
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !self.dir.is_dir() {
            return Err(vec![Diagnostic::new(
                &self.dir,
                Pos::START,
                format!(
                    "rules folder not found: keeping the {} rules in force",
                    self.current().rules().len()
                ),
            )]);
        }
        let newer = RuleSet::load_dir(&self.dir)?;
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        let diff = current.diff(&newer);
        *current = Arc::new(newer);
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(diff)
    }
}

/// Runs until `shutdown`: on each SIGHUP, reloads and calls `on_reload` with the outcome
/// (the engine uses it to cancel runs of removed/disabled rules). Logs the outcome
/// (diagnostics as file:line:column: message).
///
/// The SIGHUP handler is installed before this returns, so a SIGHUP sent right after
/// cannot terminate the process (the default action). Must be called inside a Tokio
/// runtime.
pub fn spawn_sighup_reloader(
    handle: Arc<RulesHandle>,
    shutdown: CancellationToken,
    on_reload: impl Fn(Result<RuleSetDiff, Vec<Diagnostic>>) + Send + Sync + 'static,
) -> tokio::task::JoinHandle<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let hangups = signal(SignalKind::hangup());
    tokio::spawn(async move {
        let mut hangups = match hangups {
            Ok(hangups) => hangups,
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGHUP: rules reload only on restart");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                received = hangups.recv() => if received.is_none() { return },
            }
            tracing::info!(dir = %handle.dir().display(), "SIGHUP received: reloading rules");
            let reloading = Arc::clone(&handle);
            let outcome = match tokio::task::spawn_blocking(move || reloading.reload()).await {
                Ok(outcome) => outcome,
                Err(error) => {
                    tracing::error!(%error, "rules reload panicked: keeping the rules in force");
                    continue;
                }
            };
            log_outcome(&handle, &outcome);
            on_reload(outcome);
        }
    })
}

fn log_outcome(handle: &RulesHandle, outcome: &Result<RuleSetDiff, Vec<Diagnostic>>) {
    let dir = handle.dir().display();
    match outcome {
        Ok(diff) => tracing::info!(
            %dir,
            rules = handle.current().rules().len(),
            generation = handle.generation(),
            added = ?diff.added,
            changed = ?diff.changed,
            removed = ?diff.removed,
            disabled = ?diff.disabled,
            "rules reloaded"
        ),
        Err(diagnostics) => {
            for diagnostic in diagnostics {
                tracing::error!("{diagnostic}");
            }
            tracing::error!(
                %dir,
                problems = diagnostics.len(),
                "rules not reloaded: keeping the rules in force"
            );
        }
    }
}

/// The process id of this process in a file, for `followthrough reload`; removed on drop.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    pid: u32,
}

impl PidFile {
    /// Writes the process id to `path` (atomically: temp file + rename); the returned guard
    /// removes it on drop. Refuses if the file names a process that is alive (another
    /// serve); a file naming a process that is gone is replaced.
    pub fn create(path: &Path) -> anyhow::Result<PidFile> {
        match read_pid(path) {
            Ok(Some(pid)) if process_alive(pid) => anyhow::bail!(
                "{} names process {pid}, which is running: is another `followthrough serve` using it? Stop it, or set server.pid_file to another path",
                path.display()
            ),
            Ok(Some(pid)) => tracing::warn!(
                path = %path.display(),
                pid,
                "replacing a pid file left by a process that is gone"
            ),
            Ok(None) => {}
            // Not a pid: no process to protect, so it is replaced too.
            Err(error) => tracing::warn!(%error, "replacing an unreadable pid file"),
        }
        let pid = std::process::id();
        let file_name = path
            .file_name()
            .with_context(|| format!("server.pid_file `{}` names no file", path.display()))?;
        let mut temporary_name = std::ffi::OsString::from(".");
        temporary_name.push(file_name);
        temporary_name.push(format!(".{pid}.tmp"));
        let temporary = path.with_file_name(temporary_name);
        let written = std::fs::File::create(&temporary).and_then(|mut file| {
            writeln!(file, "{pid}")?;
            file.sync_all()
        });
        if let Err(error) = written.and_then(|()| std::fs::rename(&temporary, path)) {
            let _ = std::fs::remove_file(&temporary);
            return Err(error).with_context(|| format!("cannot write {}", path.display()));
        }
        Ok(PidFile {
            path: path.to_owned(),
            pid,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Only our own: never remove a file another process has written since.
        if matches!(read_pid(&self.path), Ok(Some(pid)) if pid == self.pid)
            && let Err(error) = std::fs::remove_file(&self.path)
        {
            tracing::warn!(path = %self.path.display(), %error, "cannot remove the pid file");
        }
    }
}

/// The process id in a pid file: `Ok(None)` when there is no file, `Err` when its content
/// is not a process id.
pub fn read_pid(path: &Path) -> anyhow::Result<Option<u32>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error).with_context(|| format!("cannot read {}", path.display())),
    };
    match text.trim().parse::<u32>() {
        Ok(pid) if pid > 0 && i32::try_from(pid).is_ok() => Ok(Some(pid)),
        _ => anyhow::bail!(
            "{} does not hold a process id (found `{}`)",
            path.display(),
            text.trim()
        ),
    }
}

fn rustix_pid(pid: u32) -> Option<rustix::process::Pid> {
    rustix::process::Pid::from_raw(i32::try_from(pid).ok()?)
}

/// Whether a process with this id exists (one of another user counts: it exists).
pub fn process_alive(pid: u32) -> bool {
    match rustix_pid(pid).map(rustix::process::test_kill_process) {
        Some(Ok(())) => true,
        Some(Err(error)) => error == rustix::io::Errno::PERM,
        None => false,
    }
}

/// Sends SIGHUP to `pid`.
pub fn send_sighup(pid: u32) -> std::io::Result<()> {
    let pid = rustix_pid(pid)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a process id"))?;
    rustix::process::kill_process(pid, rustix::process::Signal::HUP)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_rule(dir: &Path, id: &str, extra: &str) {
        std::fs::write(
            dir.join(format!("{id}.yaml")),
            format!(
                "id: {id}\n{extra}on: {{ object: deal, event: created }}\nsteps:\n  - create_note: {{ body: hi }}\n"
            ),
        )
        .unwrap();
    }

    fn ids(handle: &RulesHandle) -> Vec<String> {
        handle
            .current()
            .rules()
            .iter()
            .map(|r| r.id.clone())
            .collect()
    }

    #[test]
    fn rules_handle_reload_reports_the_diff_and_swaps_the_set() {
        let dir = tempfile::tempdir().unwrap();
        for id in ["kept", "edited", "removed", "disabled"] {
            write_rule(dir.path(), id, "");
        }
        let handle = RulesHandle::load(dir.path()).unwrap();
        assert_eq!(handle.generation(), 0);
        let before = handle.current();

        write_rule(
            dir.path(),
            "edited",
            "description: now with a description\n",
        );
        write_rule(dir.path(), "disabled", "enabled: false\n");
        std::fs::remove_file(dir.path().join("removed.yaml")).unwrap();
        write_rule(dir.path(), "added", "");
        let diff = handle.reload().unwrap();
        assert_eq!(
            diff,
            RuleSetDiff {
                added: vec!["added".into()],
                changed: vec!["edited".into()],
                removed: vec!["removed".into()],
                disabled: vec!["disabled".into()],
            }
        );
        assert_eq!(handle.generation(), 1);
        assert_eq!(ids(&handle), ["added", "disabled", "edited", "kept"]);
        // A reader holding the old set keeps it whole.
        assert_eq!(before.rules().len(), 4);
        assert!(before.get("removed").is_some());

        assert!(handle.reload().unwrap().is_empty());
        assert_eq!(handle.generation(), 2);
    }

    #[test]
    fn rules_handle_reload_keeps_the_old_set_on_an_invalid_rule() {
        let dir = tempfile::tempdir().unwrap();
        write_rule(dir.path(), "good", "");
        let handle = RulesHandle::load(dir.path()).unwrap();
        write_rule(dir.path(), "second", "");
        std::fs::write(
            dir.path().join("broken.yaml"),
            "id: broken\non: { object: deal, event: created }\nsteps:\n  - wait: 3 fortnights\n",
        )
        .unwrap();
        let diagnostics = handle.reload().unwrap_err();
        assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
        let line = diagnostics[0].to_string();
        assert!(line.contains("broken.yaml:4:"), "{line}");
        assert!(line.contains("`3 fortnights` is not a duration"), "{line}");
        assert_eq!(
            ids(&handle),
            ["good"],
            "the valid new rule is not taken either"
        );
        assert_eq!(handle.generation(), 0);

        // Fixed: the next reload takes everything.
        std::fs::remove_file(dir.path().join("broken.yaml")).unwrap();
        assert_eq!(handle.reload().unwrap().added, ["second"]);
        assert_eq!(handle.generation(), 1);
    }

    #[test]
    fn rules_handle_missing_dir_is_an_empty_set_at_load_only() {
        let dir = tempfile::tempdir().unwrap();
        let rules = dir.path().join("rules");
        let handle = RulesHandle::load(&rules).unwrap();
        assert!(handle.current().rules().is_empty());

        std::fs::create_dir(&rules).unwrap();
        write_rule(&rules, "one", "");
        assert_eq!(handle.reload().unwrap().added, ["one"]);

        std::fs::remove_dir_all(&rules).unwrap();
        let diagnostics = handle.reload().unwrap_err();
        assert!(
            diagnostics[0].message.contains("rules folder not found"),
            "{diagnostics:?}"
        );
        assert_eq!(ids(&handle), ["one"]);
        // A file is not a folder, at load either.
        std::fs::write(&rules, "").unwrap();
        assert!(RulesHandle::load(&rules).is_err());
    }

    #[test]
    fn rules_handle_from_set_serves_the_set() {
        let rule = RuleSet::parse_rule(
            Path::new("a.yaml"),
            "id: a\non: { object: deal, event: created }\nsteps:\n  - create_note: { body: hi }\n",
        )
        .unwrap();
        let handle = RulesHandle::from_set(RuleSet::new(vec![rule]));
        assert!(handle.current().get("a").is_some());
        assert!(handle.reload().is_err());
        assert!(handle.current().get("a").is_some());
    }

    #[test]
    fn rules_handle_pid_file_is_written_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("followthrough.pid");
        let guard = PidFile::create(&path).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{}\n", std::process::id())
        );
        assert_eq!(read_pid(&path).unwrap(), Some(std::process::id()));
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
        drop(guard);
        assert!(!path.exists());
    }

    #[test]
    fn rules_handle_pid_file_refuses_a_live_process_and_replaces_a_dead_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("followthrough.pid");
        // This test process is alive: as if another serve had written the file.
        std::fs::write(&path, format!("{}\n", std::process::id())).unwrap();
        let error = PidFile::create(&path).unwrap_err().to_string();
        assert!(error.contains("which is running"), "{error}");
        assert!(path.exists(), "the other process's file is left alone");

        // Above any pid_max: no such process.
        std::fs::write(&path, "2147483000\n").unwrap();
        assert!(!process_alive(2_147_483_000));
        let guard = PidFile::create(&path).unwrap();
        assert_eq!(read_pid(&path).unwrap(), Some(std::process::id()));

        // Overwritten by someone else meanwhile: not ours to remove.
        std::fs::write(&path, "2147483000\n").unwrap();
        drop(guard);
        assert!(path.exists());

        std::fs::write(&path, "not a pid").unwrap();
        assert!(read_pid(&path).is_err());
        drop(PidFile::create(&path).unwrap());
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn rules_handle_sighup_reloads_and_reports() {
        let dir = tempfile::tempdir().unwrap();
        write_rule(dir.path(), "one", "");
        let handle = Arc::new(RulesHandle::load(dir.path()).unwrap());
        let shutdown = CancellationToken::new();
        let (sender, mut outcomes) = tokio::sync::mpsc::unbounded_channel();
        let task = spawn_sighup_reloader(Arc::clone(&handle), shutdown.clone(), move |o| {
            sender.send(o).unwrap();
        });
        write_rule(dir.path(), "two", "");
        send_sighup(std::process::id()).unwrap();
        let outcome = tokio::time::timeout(std::time::Duration::from_secs(10), outcomes.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(outcome.unwrap().added, ["two"]);
        assert_eq!(handle.generation(), 1);
        shutdown.cancel();
        task.await.unwrap();
    }
}
