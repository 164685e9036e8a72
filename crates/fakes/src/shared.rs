//! What every fake shares between its handlers and the test's handle: its token, its
//! URL, and its state behind one mutex that no handler holds across an `.await`; and the
//! request-log methods every fake handle offers.

use std::sync::{Mutex, MutexGuard, PoisonError};

pub(crate) struct Shared<S> {
    pub token: String,
    pub base_url: String,
    state: Mutex<S>,
}

impl<S> Shared<S> {
    pub(crate) fn new(token: String, base_url: String, state: S) -> Self {
        Self {
            token,
            base_url,
            state: Mutex::new(state),
        }
    }

    /// The state; a panic in another test thread must not hide this test's requests.
    pub(crate) fn state(&self) -> MutexGuard<'_, S> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `set_delay`, `requests`, `request_count` and `reset_requests` for a fake handle whose
/// `shared.state()` has `requests: Vec<RecordedRequest>` and `delay: Duration`.
macro_rules! request_log_methods {
    () => {
        /// Every answer waits this long first (`Duration::ZERO` to stop).
        pub fn set_delay(&self, delay: std::time::Duration) {
            self.shared.state().delay = delay;
        }

        /// Every request received so far, oldest first.
        pub fn requests(&self) -> Vec<$crate::RecordedRequest> {
            self.shared.state().requests.clone()
        }

        /// How many received requests have a path starting with `path_prefix`.
        pub fn request_count(&self, path_prefix: &str) -> usize {
            let state = self.shared.state();
            let matching = state.requests.iter();
            matching.filter(|r| r.path.starts_with(path_prefix)).count()
        }

        /// Forgets the requests received so far (not what they created).
        pub fn reset_requests(&self) {
            self.shared.state().requests.clear();
        }
    };
}
pub(crate) use request_log_methods;

/// Binds `127.0.0.1:0` and serves `router` over a new shared state on the current
/// tokio runtime, until the returned task is aborted (the handle's `Drop`).
///
/// # Panics
/// If no local port can be bound.
pub(crate) async fn serve<S: Send + 'static>(
    what: &str,
    token: String,
    state: S,
    router: impl FnOnce(std::sync::Arc<Shared<S>>) -> axum::Router,
) -> (std::sync::Arc<Shared<S>>, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind 127.0.0.1:0 for the fake {what}: {e}"));
    let address = listener.local_addr().expect("local address of the fake");
    let shared = std::sync::Arc::new(Shared::new(token, format!("http://{address}"), state));
    let app = router(shared.clone());
    let server = tokio::spawn(async move {
        // Ends only when the handle aborts it.
        let _ = axum::serve(listener, app).await;
    });
    (shared, server)
}
