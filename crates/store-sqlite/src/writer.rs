//! The single writer thread, and group commit.
//!
//! SQLite allows one writer at a time, and with `synchronous=FULL` every commit pays an
//! fsync (a few milliseconds here). If each webhook committed on its own, throughput
//! would be capped at a few hundred commits per second. Instead every write is a job sent
//! to one thread that owns the write connection: it takes all jobs that are waiting, runs
//! them in one transaction and commits them together with one fsync. Each caller is
//! answered only after that commit, so an `Ok` still means "durable".
//!
//! If one job of a group fails, the whole group is rolled back and each job is run again
//! in a transaction of its own, so one bad job cannot undo or fail the others. (A
//! SAVEPOINT per job would give the same isolation, but SQLite then copies every page a
//! job touches into a statement journal; profiles showed that as a fifth of the writer's
//! time. Failures are rare, so they pay instead.)
//!
//! The thread also runs a [`Chore`] every so often, in a transaction of its own between
//! groups (and once more at close): work that is cheaper done in bulk than with every
//! write, such as entering new rows in the trace indexes (`trace_index.rs`).

use std::sync::mpsc;
use std::sync::{Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use followthrough_store::StoreError;
use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::sql_error;

/// Most jobs folded into one transaction; bounds the latency of the first job in it.
const MAX_GROUP: usize = 512;

/// A unit of work with its reply channel. `run` may be called more than once (each time
/// in a fresh transaction); `finish` answers the caller with the last run's result.
trait Job: Send {
    fn run(&mut self, connection: &Connection) -> bool;
    fn finish(self: Box<Self>, committed: Result<(), StoreError>);
}

struct TypedJob<T, F> {
    work: F,
    result: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Job for TypedJob<T, F>
where
    T: Send + 'static,
    F: FnMut(&Connection) -> Result<T, StoreError> + Send + 'static,
{
    fn run(&mut self, connection: &Connection) -> bool {
        let result = (self.work)(connection);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(self: Box<Self>, committed: Result<(), StoreError>) {
        let TypedJob {
            work,
            result,
            reply,
        } = *self;
        // The work (and what it captured) is dropped before the caller is answered, so
        // a caller that shares its data with `work` through an `Arc` frees it on its own
        // thread: the writer is the thread every write waits for.
        drop(work);
        let result = match (committed, result) {
            (_, Some(Err(job_error))) => Err(job_error),
            (Err(commit_error), _) => Err(commit_error),
            (Ok(()), Some(Ok(value))) => Ok(value),
            (Ok(()), None) => Err(StoreError::Backend("job was never run".into())),
        };
        let _ = reply.send(result);
    }
}

/// Periodic work for the writer thread. A round of it is `steps` steps, each run in a
/// transaction of its own with the jobs that came meanwhile committed in between, so a
/// round holds no job back for longer than its longest step.
pub(crate) struct Chore {
    pub(crate) name: &'static str,
    pub(crate) every: Duration,
    pub(crate) steps: usize,
    /// Runs step `n` (from 0) and returns how many rows it wrote.
    pub(crate) work: fn(&Connection, usize) -> Result<u64, StoreError>,
}

pub(crate) struct Writer {
    sender: RwLock<Option<mpsc::Sender<Box<dyn Job>>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    pub(crate) fn start(connection: Connection, chore: Option<Chore>) -> Self {
        let (sender, receiver) = mpsc::channel::<Box<dyn Job>>();
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(connection, receiver, chore))
            .expect("spawning the SQLite writer thread");
        Self {
            sender: RwLock::new(Some(sender)),
            thread: Mutex::new(Some(thread)),
        }
    }

    /// Runs `work` in the next group transaction and returns its result once committed.
    /// `work` may run more than once (after another job of its group failed), each time
    /// in a fresh transaction, so it must not depend on having run before.
    pub(crate) async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(TypedJob {
            work,
            result: None,
            reply,
        });
        {
            let sender = self.sender.read().unwrap_or_else(|e| e.into_inner());
            let sender = sender.as_ref().ok_or(StoreError::Closed)?;
            sender.send(job).map_err(|_| StoreError::Closed)?;
        }
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Stops taking jobs, lets the thread commit what it has, and waits for it.
    pub(crate) fn close(&self) {
        self.sender
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.close();
    }
}

fn run(connection: Connection, receiver: mpsc::Receiver<Box<dyn Job>>, chore: Option<Chore>) {
    let mut group: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_GROUP);
    let mut chore_due = chore.as_ref().map(|chore| Instant::now() + chore.every);
    // The chore's next step while a round is under way.
    let mut next_step: Option<usize> = None;
    loop {
        // Block for the first job (no longer than until the chore is due, and not at all
        // mid-round), then take whatever else is already waiting.
        let first = match (chore_due, next_step) {
            (None, _) => receiver
                .recv()
                .map_err(|_| mpsc::RecvTimeoutError::Disconnected),
            (Some(_), Some(_)) => receiver.try_recv().map_err(|e| match e {
                mpsc::TryRecvError::Empty => mpsc::RecvTimeoutError::Timeout,
                mpsc::TryRecvError::Disconnected => mpsc::RecvTimeoutError::Disconnected,
            }),
            (Some(due), None) => {
                receiver.recv_timeout(due.saturating_duration_since(Instant::now()))
            }
        };
        match first {
            Ok(first) => group.push(first),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        while !group.is_empty() && group.len() < MAX_GROUP {
            match receiver.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        if group.len() == 1 || (!group.is_empty() && !commit_together(&connection, &mut group)) {
            for job in group.drain(..) {
                commit_alone(&connection, job);
            }
        }
        if let (Some(chore), Some(due)) = (&chore, &mut chore_due) {
            if next_step.is_none() && Instant::now() >= *due {
                next_step = Some(0);
            }
            if let Some(step) = next_step {
                run_chore_step(&connection, chore, step);
                next_step = Some(step + 1).filter(|next| *next < chore.steps);
                if next_step.is_none() {
                    *due = Instant::now() + chore.every;
                }
            }
        }
    }
    // Every sender is gone: the store is closing. Leave the chore done and the WAL
    // checkpointed.
    if let Some(chore) = &chore {
        for step in 0..chore.steps {
            run_chore_step(&connection, chore, step);
        }
    }
    if let Err(error) = connection.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)") {
        tracing::warn!(%error, "checkpoint at close failed");
    }
}

fn execute(connection: &Connection, sql: &str) -> Result<(), StoreError> {
    connection
        .prepare_cached(sql)
        .and_then(|mut statement| statement.execute([]))
        .map(drop)
        .map_err(sql_error)
}

/// Runs the whole group in one transaction. Returns false, with everything rolled back
/// and no job answered, if any job failed.
fn commit_together(connection: &Connection, group: &mut Vec<Box<dyn Job>>) -> bool {
    if execute(connection, "BEGIN IMMEDIATE").is_err() {
        return false;
    }
    let all_ok = group.iter_mut().all(|job| job.run(connection));
    if !all_ok {
        let _ = execute(connection, "ROLLBACK");
        return false;
    }
    let committed = execute(connection, "COMMIT");
    if committed.is_err() {
        let _ = execute(connection, "ROLLBACK");
    }
    for job in group.drain(..) {
        job.finish(
            committed
                .as_ref()
                .map(|_| ())
                .map_err(|e| StoreError::Backend(e.to_string())),
        );
    }
    true
}

fn run_chore_step(connection: &Connection, chore: &Chore, step: usize) {
    let started = Instant::now();
    let result = execute(connection, "BEGIN IMMEDIATE").and_then(|()| {
        let done = (chore.work)(connection, step);
        match &done {
            Ok(_) => execute(connection, "COMMIT")?,
            Err(_) => {
                let _ = execute(connection, "ROLLBACK");
            }
        }
        done
    });
    match result {
        Ok(0) => {}
        Ok(rows) => tracing::debug!(
            chore = chore.name,
            step,
            rows,
            ms = started.elapsed().as_millis() as u64,
            "writer chore done"
        ),
        Err(error) => {
            let _ = execute(connection, "ROLLBACK");
            tracing::warn!(chore = chore.name, %error, "writer chore failed; it runs again later");
        }
    }
}

fn commit_alone(connection: &Connection, mut job: Box<dyn Job>) {
    if let Err(error) = execute(connection, "BEGIN IMMEDIATE") {
        tracing::error!(%error, "could not begin a write transaction");
        job.finish(Err(StoreError::Unavailable(
            "could not begin a transaction".into(),
        )));
        return;
    }
    let committed = if job.run(connection) {
        let committed = execute(connection, "COMMIT");
        if committed.is_err() {
            let _ = execute(connection, "ROLLBACK");
        }
        committed
    } else {
        // The job's own error is what its caller gets (see `finish`).
        let _ = execute(connection, "ROLLBACK");
        Ok(())
    };
    job.finish(committed);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn writer(dir: &tempfile::TempDir) -> (Arc<Writer>, std::path::PathBuf) {
        let path = dir.path().join("w.db");
        let connection = crate::open_connection(&path).unwrap();
        connection
            .execute_batch("CREATE TABLE t (x INTEGER NOT NULL UNIQUE)")
            .unwrap();
        (Arc::new(Writer::start(connection, None)), path)
    }

    fn insert(x: i64) -> impl FnMut(&Connection) -> Result<(), StoreError> + Send + 'static {
        move |connection| {
            connection
                .execute("INSERT INTO t (x) VALUES (?1)", [x])
                .map(drop)
                .map_err(sql_error)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_failing_job_fails_alone_and_its_group_still_commits() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, path) = writer(&dir);
        writer.write(insert(0)).await.unwrap();
        // Many concurrent jobs so they share groups; the ones inserting 0 again fail.
        let tasks: Vec<_> = (1..=200i64)
            .map(|i| {
                let writer = Arc::clone(&writer);
                let x = if i % 10 == 0 { 0 } else { i };
                tokio::spawn(async move { (x, writer.write(insert(x)).await) })
            })
            .collect();
        for task in tasks {
            let (x, result) = task.await.unwrap();
            assert_eq!(result.is_err(), x == 0, "x = {x}: {result:?}");
        }
        writer.close();
        let connection = Connection::open(path).unwrap();
        let rows: i64 = connection
            .query_row("SELECT COUNT(*) FROM t", [], |row| row.get(0))
            .unwrap();
        assert_eq!(rows, 1 + 180, "every job that succeeded is committed");
    }

    /// The chore runs on its own while no job comes, between groups while jobs keep
    /// coming, and once more at close; what it writes is committed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_chore_runs_when_idle_between_groups_and_at_close() {
        fn count_pass(connection: &Connection, step: usize) -> Result<u64, StoreError> {
            connection
                .execute("INSERT INTO passes (step) VALUES (?1)", [step as i64])
                .map(|n| n as u64)
                .map_err(sql_error)
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let connection = crate::open_connection(&path).unwrap();
        connection
            .execute_batch(
                "CREATE TABLE t (x INTEGER NOT NULL UNIQUE);
                 CREATE TABLE passes (n INTEGER PRIMARY KEY, step INTEGER NOT NULL);",
            )
            .unwrap();
        let chore = Chore {
            name: "count",
            every: Duration::from_millis(20),
            steps: 2,
            work: count_pass,
        };
        let writer = Writer::start(connection, Some(chore));
        // The steps each pass ran, in order.
        let steps = || -> Vec<i64> {
            Connection::open(&path)
                .unwrap()
                .prepare("SELECT step FROM passes ORDER BY n")
                .unwrap()
                .query_map([], |row| row.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        let rounds = |steps: &[i64]| steps.iter().filter(|step| **step == 1).count();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let idle = steps();
        assert!(rounds(&idle) >= 3, "{idle:?} in 300 ms idle");
        assert!(
            idle.chunks(2).all(|round| round == [0, 1] || round == [0]),
            "each round runs its steps in order: {idle:?}"
        );
        // A steady stream of jobs, each arriving before the writer would time out.
        for x in 0..60 {
            writer.write(insert(x)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let busy = steps();
        assert!(
            rounds(&busy) - rounds(&idle) >= 3,
            "{busy:?} after 60 jobs 5 ms apart"
        );
        writer.close();
        let closed = steps();
        assert_eq!(closed[..busy.len()], busy[..]);
        let tail = &closed[busy.len()..];
        // Close runs one whole round, after whatever the chore did between `busy` being
        // read and the close (a round's second step, a round begun and left unfinished,
        // which close starts over): at most one round's steps.
        assert!(tail.ends_with(&[0, 1]), "one more round at close: {tail:?}");
        assert!(tail.len() <= 4, "{tail:?}");
    }

    #[tokio::test]
    async fn writes_after_close_fail_with_closed() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, _) = writer(&dir);
        writer.close();
        assert!(matches!(
            writer.write(insert(1)).await,
            Err(StoreError::Closed)
        ));
    }
}
