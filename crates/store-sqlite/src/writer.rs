//! The single writer thread, and group commit.
//!
//! SQLite allows one writer at a time, and with `synchronous=FULL` every commit pays an
//! fsync (a few milliseconds here). If each webhook committed on its own, throughput
//! would be capped at a few hundred commits per second. Instead every write is a job sent
//! to one thread that owns the write connection: it takes all jobs that are waiting,
//! runs each inside its own SAVEPOINT (so one failing job does not undo the others), and
//! commits them together with one fsync. Each caller is answered only after that commit,
//! so an `Ok` still means "durable".

use std::sync::mpsc;
use std::sync::{Mutex, RwLock};
use std::thread::JoinHandle;

use followthrough_store::StoreError;
use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::sql_error;

/// Most jobs folded into one transaction; bounds the latency of the first job in it.
const MAX_GROUP: usize = 512;

type Finish = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// A job runs inside the group's transaction, or is given `None` when that transaction
/// could not begin; either way it returns what to tell its caller once the group ends.
type Job = Box<dyn FnOnce(Option<&Connection>) -> Finish + Send>;

pub(crate) struct Writer {
    sender: RwLock<Option<mpsc::Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    pub(crate) fn start(connection: Connection) -> Self {
        let (sender, receiver) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(connection, receiver))
            .expect("spawning the SQLite writer thread");
        Self {
            sender: RwLock::new(Some(sender)),
            thread: Mutex::new(Some(thread)),
        }
    }

    /// Runs `work` in the next group transaction and returns its result once committed.
    pub(crate) async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |connection| {
            let result = match connection {
                Some(connection) => in_savepoint(connection, work),
                None => Err(StoreError::Unavailable(
                    "could not begin a transaction".into(),
                )),
            };
            Box::new(move |committed: Result<(), StoreError>| {
                let _ = reply.send(committed.and(result));
            })
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

fn in_savepoint<T>(
    connection: &Connection,
    work: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    // Cached statements: these run twice per job, and parsing them each time showed up
    // in profiles.
    let run = |sql: &str| -> Result<(), StoreError> {
        connection
            .prepare_cached(sql)
            .and_then(|mut statement| statement.execute([]))
            .map(drop)
            .map_err(sql_error)
    };
    run("SAVEPOINT job")?;
    let result = work(connection);
    if result.is_err() {
        run("ROLLBACK TO job")?;
    }
    run("RELEASE job")?;
    result
}

fn run(connection: Connection, receiver: mpsc::Receiver<Job>) {
    let mut group: Vec<Job> = Vec::with_capacity(MAX_GROUP);
    // Block for the first job, then take whatever else is already waiting.
    while let Ok(first) = receiver.recv() {
        group.push(first);
        while group.len() < MAX_GROUP {
            match receiver.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        commit_group(&connection, &mut group);
    }
    // Every sender is gone: the store is closing. Leave the WAL checkpointed.
    if let Err(error) = connection.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)") {
        tracing::warn!(%error, "checkpoint at close failed");
    }
}

fn commit_group(connection: &Connection, group: &mut Vec<Job>) {
    if let Err(error) = connection.execute_batch("BEGIN IMMEDIATE") {
        tracing::error!(error = %sql_error(error), "could not begin a write transaction");
        for job in group.drain(..) {
            job(None)(Ok(()));
        }
        return;
    }
    let finishers: Vec<Finish> = group.drain(..).map(|job| job(Some(connection))).collect();
    let committed = connection.execute_batch("COMMIT").map_err(sql_error);
    if committed.is_err() {
        let _ = connection.execute_batch("ROLLBACK");
    }
    for finish in finishers {
        finish(match &committed {
            Ok(()) => Ok(()),
            Err(error) => Err(StoreError::Backend(error.to_string())),
        });
    }
}
