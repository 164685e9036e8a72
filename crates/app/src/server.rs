//! The HTTP server: routes, shared state, request ids, and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, Request, StatusCode};
use axum::routing::{get, post};
use followthrough_core::Clock;
use followthrough_store::Store;
use secrecy::SecretString;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tower_http::request_id::PropagateRequestIdLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::api_error::{self, ApiError};
use crate::auth::AdminTokens;
use crate::config::Validated;
use crate::engine::{Engine, EngineParts, Hydrator};
use crate::ingest;
use crate::ingest::hubspot::signature::SignaturePolicy;
use crate::journal::Redactor;
use crate::listener;
use crate::outbox::Outbox;
use crate::rules_handle::{RulesHandle, spawn_sighup_reloader};
use followthrough_connectors::CrmReader;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub hubspot: Arc<HubSpotIngest>,
    pub max_body_bytes: usize,
    /// Poked after an accepted webhook so the engine does not wait for its next poll.
    pub engine_wake: Arc<Notify>,
    /// The rules in force (the admin API and console list them).
    pub rules: Arc<RulesHandle>,
    /// The outbox workers, for their connectors' health.
    pub outbox: Outbox,
    /// Who may use `/api/v1` and `/ui/`.
    pub admin: Arc<AdminAccess>,
    /// When this process started serving.
    pub started_at: followthrough_core::Timestamp,
    /// Scrubs what the server journals itself (a rejected webhook's reason).
    pub redactor: Redactor,
}

/// The admin API's and the console's access settings.
pub struct AdminAccess {
    pub tokens: AdminTokens,
    /// How long a console login lasts.
    pub session: Duration,
    /// Signs console session cookies (random per process when not configured).
    pub session_key: SecretString,
}

pub struct HubSpotIngest {
    pub secret: SecretString,
    pub policy: SignaturePolicy,
    pub public_url: url::Url,
}

/// The request's id (`req_<ulid>`), set by middleware, echoed in `X-Request-Id`, and
/// carried into logs and the journal.
#[derive(Debug, Clone)]
pub struct RequestId(String);

impl RequestId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let id = parts
            .headers
            .get(&REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("req_unknown");
        Ok(RequestId(id.to_owned()))
    }
}

/// Gives every request a fresh id. A client's own X-Request-Id is replaced, so ids in
/// our journal are always ours and unique.
async fn assign_request_id<B>(mut request: Request<B>) -> Request<B> {
    let id = format!("req_{}", ulid::Ulid::new());
    if let Ok(value) = HeaderValue::from_str(&id) {
        request.headers_mut().insert(REQUEST_ID, value);
    }
    request
}

pub fn router(state: AppState, request_timeout: Duration) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(crate::metrics::scrape))
        .route("/webhooks/hubspot", post(ingest::hubspot::receive))
        .nest(crate::api::PREFIX, crate::api::router())
        .merge(crate::ui::router())
        .fallback(api_error::not_found)
        .method_not_allowed_fallback(api_error::method_not_allowed)
        .with_state(state)
        .layer(axum::middleware::from_fn(crate::metrics::observe_request))
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, request_timeout))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                let id = request.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
                tracing::info_span!("request", request_id = id, method = %request.method(), path = request.uri().path())
            }),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        // Outermost: the id exists before anything else sees the request.
        .layer(axum::middleware::map_request(assign_request_id))
}

async fn healthz() -> axum::Json<serde_json::Value> {
    axum::Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AppState>) -> Result<axum::Json<serde_json::Value>, ApiError> {
    state.store.ready().await.map_err(|error| {
        tracing::warn!(%error, "not ready");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "store not reachable or not migrated",
        )
    })?;
    Ok(axum::Json(json!({ "status": "ready" })))
}

/// A server running in this process.
pub struct RunningServer {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// What the server runs on, built by `serve` (or a test).
pub struct Services {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub rules: Arc<RulesHandle>,
    /// The CRM the engine reads owners and linked objects from; `None` when no
    /// connector is configured (rules that need them then wait, journaled).
    pub crm: Option<Arc<dyn CrmReader>>,
}

/// Binds, starts the engine, and serves until `shutdown` is cancelled; then stops
/// accepting, lets in-flight requests finish (up to the grace period), stops the engine
/// and closes the store.
pub async fn spawn(config: Validated, services: Services) -> anyhow::Result<RunningServer> {
    let Services {
        store,
        clock,
        rules,
        crm,
    } = services;
    crate::metrics::install();
    let listener = TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let hubspot = &config.config.sources.hubspot;
    let versions = &hubspot.signature_versions;
    let engine_wake = Arc::new(Notify::new());
    let outbox = crate::outbox::lanes::build(
        &config,
        Arc::clone(&store),
        Arc::clone(&clock),
        Arc::clone(&engine_wake),
    )?;
    let state = AppState {
        store: Arc::clone(&store),
        clock: Arc::clone(&clock),
        hubspot: Arc::new(HubSpotIngest {
            secret: config.hubspot_secret.clone(),
            policy: SignaturePolicy {
                accept_v1: versions.iter().any(|v| v == "v1"),
                accept_v2: versions.iter().any(|v| v == "v2"),
                accept_v3: versions.iter().any(|v| v == "v3"),
                max_skew_ms: i64::try_from(hubspot.max_timestamp_skew_ms).unwrap_or(i64::MAX),
            },
            public_url: config.public_url.clone(),
        }),
        max_body_bytes: config.config.server.max_body_bytes,
        engine_wake: Arc::clone(&engine_wake),
        rules: Arc::clone(&rules),
        outbox: outbox.clone(),
        admin: Arc::new(admin_access(&config)),
        started_at: clock.now(),
        redactor: redactor(&config),
    };
    let engine_config = &config.config.engine;
    let outbox_wake = Arc::new(Notify::new());
    let store_wide = Arc::new(crate::engine::StoreWideDuties::default());
    let engine = Engine::new(EngineParts {
        store: Arc::clone(&store),
        clock: Arc::clone(&clock),
        rules: Arc::clone(&rules),
        calendar: config.config.rules.calendar()?,
        redactor: redactor(&config),
        hydrator: Hydrator {
            crm,
            max_age_ms: clamp_ms(engine_config.context_max_age_ms),
            timeout: Duration::from_millis(engine_config.fetch_timeout_ms),
        },
        batch_size: engine_config.batch_size,
        catch_up_limit_ms: clamp_ms(engine_config.timer_catch_up_limit_ms),
        fetch_retry_ms: clamp_ms(engine_config.fetch_retry_ms),
        own_source_ids: Arc::new(own_source_ids(&config)),
        outbox_wake: Arc::clone(&outbox_wake),
        holder: format!("{}-{}", std::process::id(), ulid::Ulid::new()),
        lease_ms: clamp_ms(engine_config.lease_ms),
        store_wide: Arc::clone(&store_wide),
    });
    tracing::info!(connectors = ?outbox.connectors(), "outbox workers ready");
    if config.plain_admin_tokens > 0 {
        tracing::warn!(
            count = config.plain_admin_tokens,
            "api.tokens holds tokens in clear: replace each with its digest (`followthrough token --hash TOKEN`)"
        );
    }
    let outbox_stop = CancellationToken::new();
    let outbox = tokio::spawn(outbox.run(outbox_wake, outbox_stop.clone()));
    let background_stop = CancellationToken::new();
    let mut background = Vec::new();
    let privacy = &config.config.privacy;
    if privacy.retention_days > 0 {
        let retention = crate::retention::Retention {
            store: Arc::clone(&store),
            clock: Arc::clone(&clock),
            keep: Duration::from_secs(privacy.retention_days.saturating_mul(24 * 3600)),
            every: Duration::from_millis(privacy.prune_interval_ms.max(1)),
            store_wide: Arc::clone(&store_wide),
        };
        background.push(tokio::spawn(retention.run(background_stop.clone())));
    }
    if let Some(watcher) = crate::alerts::Watcher::from_config(
        &config,
        Arc::clone(&store),
        Arc::clone(&clock),
        state.outbox.clone(),
        Arc::clone(&store_wide),
    )? {
        background.push(tokio::spawn(watcher.run(background_stop.clone())));
    }
    let engine_stop = CancellationToken::new();
    let (reloaded, reloads) = tokio::sync::mpsc::unbounded_channel();
    let reloader = spawn_sighup_reloader(rules, engine_stop.clone(), move |outcome| {
        if let Ok(diff) = outcome {
            let _ = reloaded.send(diff);
        }
    });
    let engine =
        tokio::spawn(engine.run(Arc::clone(&state.engine_wake), reloads, engine_stop.clone()));

    let app = router(
        state,
        Duration::from_millis(config.config.server.request_timeout_ms),
    );
    let grace = Duration::from_millis(config.config.server.shutdown_grace_ms);
    let header_read_timeout_ms = config.config.server.header_read_timeout_ms;
    let token = shutdown.clone();
    let handle = tokio::spawn(async move {
        tracing::info!(%addr, "followthrough listening");
        let header_timeout = Duration::from_millis(header_read_timeout_ms);
        let serving = tokio::spawn(listener::serve(
            listener,
            app,
            header_timeout,
            token.clone(),
            grace,
        ));
        token.cancelled().await;
        tracing::info!("shutting down: finishing in-flight requests");
        if !serving.await? {
            tracing::warn!(
                grace_ms = grace.as_millis() as u64,
                "in-flight requests did not finish in time"
            );
        }
        background_stop.cancel();
        for task in background {
            let _ = task.await;
        }
        engine_stop.cancel();
        let _ = engine.await;
        // After the engine: jobs it queued last are still claimed if due; calls in
        // flight finish and are recorded before the store closes.
        outbox_stop.cancel();
        let _ = outbox.await;
        let _ = reloader.await;
        store.close().await?;
        tracing::info!("store closed; bye");
        Ok(())
    });
    Ok(RunningServer {
        addr,
        shutdown,
        handle,
    })
}

/// The journal's redactor, as `privacy` configures it.
pub fn redactor(config: &Validated) -> Redactor {
    let privacy = &config.config.privacy;
    Redactor::new(
        privacy.redact_properties.iter().cloned(),
        privacy.redact_patterns,
    )
}

fn admin_access(config: &Validated) -> AdminAccess {
    let api = &config.config.api;
    let configured = secrecy::ExposeSecret::expose_secret(&api.session_secret);
    let session_key = if configured.is_empty() {
        let (random, _) = crate::auth::new_token();
        SecretString::from(random)
    } else {
        api.session_secret.clone()
    };
    AdminAccess {
        tokens: config.admin_tokens.clone(),
        session: Duration::from_millis(api.session_ms),
        session_key,
    }
}

/// The `sourceId`s our own HubSpot writes come back with.
fn own_source_ids(config: &Validated) -> Vec<String> {
    let app_id = config.config.connectors.hubspot.app_id.trim();
    if app_id.is_empty() {
        Vec::new()
    } else {
        vec![app_id.to_owned()]
    }
}

fn clamp_ms(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}
