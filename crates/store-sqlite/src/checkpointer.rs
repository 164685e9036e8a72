//! Moves WAL checkpoints off the writer thread.
//!
//! By default SQLite checkpoints inside the commit that crosses `wal_autocheckpoint`,
//! so one unlucky webhook waits while thousands of pages are copied and the database
//! file is fsynced. Here a thread with its own connection runs a PASSIVE checkpoint a few
//! times a second; WAL mode lets it run beside the writer, on the other core. The
//! writer keeps a large `wal_autocheckpoint` only as a safety net should this thread
//! fall behind.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

const INTERVAL: Duration = Duration::from_millis(200);

pub(crate) struct Checkpointer {
    stop: Mutex<Option<mpsc::Sender<()>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Checkpointer {
    pub(crate) fn start(path: PathBuf) -> Self {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                let connection = match crate::open_connection(&path) {
                    Ok(connection) => connection,
                    Err(error) => {
                        tracing::error!(%error, "checkpointer could not open the database; the writer will checkpoint");
                        return;
                    }
                };
                // Runs until `stop` is sent or dropped.
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(INTERVAL) {
                    if let Err(error) = connection.execute_batch("PRAGMA wal_checkpoint(PASSIVE)") {
                        tracing::warn!(%error, "background checkpoint failed");
                    }
                }
            })
            .expect("spawning the SQLite checkpoint thread");
        Self {
            stop: Mutex::new(Some(stop)),
            thread: Mutex::new(Some(thread)),
        }
    }

    pub(crate) fn stop(&self) {
        self.stop.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}
