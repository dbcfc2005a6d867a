//! The HTTP API (axum) of a running agent: read endpoints open on loopback, mutating ones
//! behind the admin bearer token and turned into commands on the agent loop's queue, a live
//! stream, Prometheus metrics, health, and the OpenAPI document generated from the handlers
//! (`/openapi.json`).
//!
//! Every error is JSON of one shape ([`error`]); bodies are bounded by `api.max_body_bytes`;
//! a request that takes longer than [`REQUEST_TIMEOUT`] is answered 503. Binding to an address
//! that is not loopback without a token is refused at start. Requests from a non-loopback
//! peer need the token for reads too.

pub mod auth;
mod dashboard;
pub mod error;
mod read;
pub mod runtime;
mod stream;
mod transactions;
mod write;

pub use read::{JournalEntry, Performance, RiskStatus, journal_entries};

use crate::live::Shared;
use athena_config::Config;
use auth::{Guard, Token};
use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequest, FromRequestParts, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use error::ApiError;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};

/// The longest a request may take (an operator command waits for the tick in progress and
/// its own commit, at most [`crate::control::ANSWER_TIMEOUT`]).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(40);

/// What every handler sees.
#[derive(Clone)]
pub struct ApiState {
    /// What the agent shares.
    pub shared: Arc<Shared>,
    /// The configuration.
    pub config: Arc<Config>,
    /// The admin token check.
    pub guard: Arc<Guard>,
    /// Position → pool, read incrementally from the ledger (for `/journal`).
    pub pools: Arc<std::sync::Mutex<crate::journal::PositionPools>>,
    /// Turns true when the server is stopping: open streams end, so the shutdown does not
    /// wait on them.
    pub closing: watch::Receiver<bool>,
}

/// A JSON body whose rejections are [`ApiError`]s.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Body<T>(pub T);

/// A path parameter whose rejections are [`ApiError`]s.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct PathParam<T>(pub T);

/// Query parameters whose rejections are [`ApiError`]s.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Params<T>(pub T);

#[derive(OpenApi)]
#[openapi(
    info(title = "Athena", description = "The operators' API of a running Athena agent."),
    modifiers(&BearerToken),
    components(schemas(error::ErrorBody, crate::risk::BreakerKind))
)]
struct ApiDoc;

struct BearerToken;

impl utoipa::Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The router with every endpoint, and the OpenAPI document of its handlers.
pub fn router(state: ApiState) -> (Router, utoipa::openapi::OpenApi) {
    let reads = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(read::status))
        .routes(routes!(read::positions))
        .routes(routes!(read::performance))
        .routes(routes!(read::cache_stats))
        .routes(routes!(read::query_stats))
        .routes(routes!(read::memories_recent))
        .routes(routes!(read::memories_stats))
        .routes(routes!(read::risk_status))
        .routes(routes!(read::risk_exposure))
        .routes(routes!(read::gas))
        .routes(routes!(read::opportunities))
        .routes(routes!(read::sync_status))
        .routes(routes!(read::recovery_status))
        .routes(routes!(read::checkpoints))
        .routes(routes!(read::journal))
        .routes(routes!(read::trades))
        .routes(routes!(read::equity))
        .routes(routes!(transactions::transactions))
        .routes(routes!(monitor_endpoints::health))
        .routes(routes!(monitor_endpoints::health_detailed))
        .routes(routes!(monitor_endpoints::metrics))
        .routes(routes!(monitor_endpoints::alerts));
    let writes = OpenApiRouter::new()
        .routes(routes!(write::stop))
        .routes(routes!(write::resume))
        .routes(routes!(write::exit_all))
        .routes(routes!(write::reset_breaker))
        .routes(routes!(write::override_limit))
        .routes(routes!(write::checkpoint))
        .routes(routes!(write::sync_flush))
        .routes(routes!(write::prune))
        .routes(routes!(write::restore));
    let (reads, mut doc) = reads
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            reads_off_loopback_need_the_token,
        ))
        .split_for_parts();
    let (writes, write_doc) = writes.split_for_parts();
    doc.merge(write_doc);
    let (stream_router, stream_doc) = OpenApiRouter::new()
        .routes(routes!(stream::stream))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            reads_off_loopback_need_the_token,
        ))
        .split_for_parts();
    doc.merge(stream_doc);
    let served = doc.clone();
    let bounded = reads
        .merge(writes)
        .route(
            "/openapi.json",
            axum::routing::get(move || async move { axum::Json(served) }),
        )
        .route("/", axum::routing::get(dashboard::index))
        .route("/assets/{name}", axum::routing::get(dashboard::asset))
        .layer(axum::middleware::from_fn(time_limit));
    let app = bounded
        .merge(stream_router)
        .fallback(|| async { ApiError::not_found("no such endpoint (see /openapi.json)") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method (see /openapi.json)",
            )
        })
        .layer(DefaultBodyLimit::max(
            state.config.api.max_body_bytes as usize,
        ))
        // A span per request (method, path, status, latency at debug; never its headers, so
        // never the token).
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state);
    (app, doc)
}

/// Answers 503 when a request takes longer than [`REQUEST_TIMEOUT`].
async fn time_limit(request: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!(
                "the request took longer than {}s",
                REQUEST_TIMEOUT.as_secs()
            ),
        )
        .into_response(),
    }
}

/// Reads are open to loopback peers; any other peer needs the token.
async fn reads_off_loopback_need_the_token(
    State(state): State<ApiState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    if !peer.ip().is_loopback()
        && let Err(e) = state.guard.admit(request.headers()).await
    {
        return e.into_response();
    }
    next.run(request).await
}

/// The running server.
pub struct Api {
    stop: watch::Sender<bool>,
    /// Sent by the server's thread when it has stopped.
    done: tokio::sync::oneshot::Receiver<()>,
    data_dir: std::path::PathBuf,
    /// Where it listens.
    pub address: SocketAddr,
}

/// Why the API cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The token is too short.
    #[error(transparent)]
    Token(#[from] auth::TooShort),
    /// A bind address that is not loopback needs a token.
    #[error(
        "api.bind {0} is not a loopback address, and no admin token is set: set ATHENA_API_ADMIN_TOKEN or api.admin_token_file, or bind 127.0.0.1"
    )]
    OpenWithoutToken(String),
    /// Another agent runs on this data directory.
    #[error(
        "an agent (pid {pid}) already runs on this data directory, its API at http://{address}: stop it first, or use another --data-dir"
    )]
    AlreadyRunning {
        /// Its process.
        pid: u32,
        /// Its API.
        address: String,
    },
    /// The bind address does not parse.
    #[error("api.bind {0:?} is not an address like 127.0.0.1:8787")]
    BadAddress(String),
    /// The address cannot be bound.
    #[error("cannot listen on {address}")]
    Bind {
        /// The address.
        address: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Starts the API when `api.enabled`: checks the token and bind address, listens, and writes
/// the runtime file the CLI finds it by. Stops with `stop` (or [`Api::stop`]).
pub async fn start(
    config: &Config,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) -> Result<Option<Api>, StartError> {
    if !config.api.enabled {
        return Ok(None);
    }
    // Its runtime file is how the CLI reaches it (the emergency stop included): never take it.
    if let Some(other) = runtime::Runtime::find(&config.agent.data_dir) {
        return Err(StartError::AlreadyRunning {
            pid: other.pid,
            address: other.address,
        });
    }
    let token = Token::from_config(config)?;
    let address: SocketAddr = config
        .api
        .bind
        .parse()
        .map_err(|_| StartError::BadAddress(config.api.bind.clone()))?;
    if !address.ip().is_loopback() && token.is_none() {
        return Err(StartError::OpenWithoutToken(config.api.bind.clone()));
    }
    let bind_error = |source| StartError::Bind {
        address: config.api.bind.clone(),
        source,
    };
    let listener = std::net::TcpListener::bind(address).map_err(bind_error)?;
    listener.set_nonblocking(true).map_err(bind_error)?;
    let address = listener.local_addr().map_err(bind_error)?;
    let (closing_tx, closing) = watch::channel(false);
    let state = ApiState {
        shared,
        config: Arc::new(config.clone()),
        guard: Arc::new(Guard::new(token)),
        pools: Default::default(),
        closing: closing.clone(),
    };
    let has_token = state.guard.has_token();
    let (app, _) = router(state);
    let (stop_tx, own_stop) = watch::channel(false);
    let (done_tx, done) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("athena-api".into())
        .spawn(move || {
            serve(listener, app, own_stop, stop, closing_tx);
            let _ = done_tx.send(());
        })
        .map_err(bind_error)?;
    let data_dir = config.agent.data_dir.clone();
    let runtime = runtime::Runtime {
        pid: std::process::id(),
        address: address.to_string(),
    };
    std::fs::create_dir_all(&data_dir).ok();
    if let Err(e) = runtime.write(&data_dir) {
        println!("athena: cannot write the runtime file (the CLI will not find the API): {e}");
    }
    println!(
        "athena: API on http://{address} ({}); OpenAPI at /openapi.json, metrics at /metrics",
        if has_token {
            "admin token set"
        } else {
            "no admin token: controls refused"
        }
    );
    Ok(Some(Api {
        stop: stop_tx,
        done,
        data_dir,
        address,
    }))
}

/// How much less CPU weight the API's threads get than the agent loop's (a nice value): under
/// load the operators' reads slow down, the ticks do not.
const API_NICE: i32 = 10;

/// Serves the API on its own runtime in this thread (one worker; its blocking reads inherit the
/// thread's priority), at a lower CPU priority than the agent, until either stop turns true.
fn serve(
    listener: std::net::TcpListener,
    app: Router,
    mut own_stop: watch::Receiver<bool>,
    mut process_stop: watch::Receiver<bool>,
    closing: watch::Sender<bool>,
) {
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), API_NICE) {
        tracing::warn!(error = %e, "the API thread keeps the agent's CPU priority");
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("athena-api")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            println!("athena: the API cannot start its runtime: {e}");
            return;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                println!("athena: the API cannot listen: {e}");
                return;
            }
        };
        let shutdown = async move {
            tokio::select! {
                _ = own_stop.changed() => {}
                _ = process_stop.changed() => {}
            }
            closing.send_replace(true);
        };
        let served = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "the API server failed");
        }
    });
}

impl StartError {
    /// Whether the configuration is at fault (the CLI exits 2 for it).
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            Self::Token(_) | Self::OpenWithoutToken(_) | Self::BadAddress(_)
        )
    }
}

impl Api {
    /// Stops serving (open streams end) and removes the runtime file.
    pub async fn stop(self) {
        runtime::remove(&self.data_dir);
        self.stop.send(true).ok();
        // Never a blocking join: a server that does not stop is left to the process's exit.
        if tokio::time::timeout(Duration::from_secs(5), self.done)
            .await
            .is_err()
        {
            tracing::warn!("the API server did not stop within 5 s");
        }
    }
}

/// Alerts as stream events, as they are raised (a client that falls behind skips the ones
/// it missed; `/alerts` lists them).
fn alert_events(
    state: &ApiState,
) -> impl futures_util::Stream<Item = axum::response::sse::Event> + use<> {
    use futures_util::StreamExt;
    tokio_stream::wrappers::BroadcastStream::new(state.shared.monitor.alerts.subscribe())
        .filter_map(|alert| async move {
            let alert = alert.ok()?;
            axum::response::sse::Event::default()
                .event("alert")
                .json_data(&alert)
                .ok()
        })
}

mod monitor_endpoints {
    //! Health, metrics and alerts, from the monitor.
    use super::ApiState;
    use crate::monitor::{Alert, HealthReport, Status, wall_ms};
    use axum::Json;
    use axum::extract::State;
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;

    fn answer(report: HealthReport) -> (StatusCode, Json<HealthReport>) {
        let status = if report.status == Status::Unhealthy {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        };
        (status, Json(report))
    }

    /// Liveness: unhealthy (503) only when the agent loop is stuck or the store cannot be
    /// written; degraded components still answer 200.
    #[utoipa::path(get, path = "/health", tag = "health", responses(
        (status = 200, description = "Alive (healthy or degraded)", body = Object),
        (status = 503, description = "The loop is stuck or the store cannot be written", body = Object)))]
    pub async fn health(State(s): State<ApiState>) -> impl IntoResponse {
        answer(s.shared.monitor.liveness(wall_ms()))
    }

    /// Every component (store, sync, market source, agent loop, process, pruning) with its
    /// status and reason; 503 when one is unhealthy.
    #[utoipa::path(get, path = "/health/detailed", tag = "health", responses(
        (status = 200, description = "Healthy or degraded", body = Object),
        (status = 503, description = "A component is unhealthy", body = Object)))]
    pub async fn health_detailed(State(s): State<ApiState>) -> impl IntoResponse {
        answer(s.shared.monitor.health(wall_ms()))
    }

    /// Prometheus text exposition.
    #[utoipa::path(get, path = "/metrics", tag = "health", responses(
        (status = 200, description = "Prometheus text format 0.0.4", body = String, content_type = "text/plain")))]
    pub async fn metrics(State(s): State<ApiState>) -> impl IntoResponse {
        (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            s.shared.monitor.metrics.encode(),
        )
    }

    /// Recent alerts, oldest first (the last 200).
    #[utoipa::path(get, path = "/alerts", tag = "health", responses(
        (status = 200, description = "Alerts", body = Vec<Object>)))]
    pub async fn alerts(State(s): State<ApiState>) -> Json<Vec<Alert>> {
        Json(s.shared.monitor.alerts.recent())
    }
}
