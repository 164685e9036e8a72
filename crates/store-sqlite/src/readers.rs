//! A small pool of read connections. WAL lets them read a consistent snapshot while the
//! writer commits; rusqlite is blocking, so each read runs on tokio's blocking pool.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use followthrough_store::StoreError;
use rusqlite::Connection;

/// Connections kept for reuse; more may be open at a burst, and are closed after it.
const KEEP: usize = 4;

pub(crate) struct Readers {
    path: PathBuf,
    idle: Arc<Mutex<Vec<Connection>>>,
}

impl Readers {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            path,
            idle: Arc::new(Mutex::new(Vec::new())),
        }
    }

    pub(crate) async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let path = self.path.clone();
        let idle = Arc::clone(&self.idle);
        tokio::task::spawn_blocking(move || {
            let reused = idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let connection = match reused {
                Some(connection) => connection,
                None => crate::open_connection(&path)?,
            };
            let result = work(&connection);
            let mut idle = idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < KEEP {
                idle.push(connection);
            }
            result
        })
        .await
        .map_err(|e| StoreError::Backend(format!("read task failed: {e}")))?
    }
}
