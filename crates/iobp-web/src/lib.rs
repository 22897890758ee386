//! # iobp-web: the two portals and the REST API
//!
//! Serves the **Operations Portal** (default port 8080) and the **Management Dashboard**
//! (default port 8081). Both portals are static pages (embedded in the binary, no CDN) whose
//! scripts act only through the **REST API** under `/api/v1`, which is served on both ports
//! with the same handlers and documented by the OpenAPI document at `/api/openapi.json`
//! (generated from the handlers, so it cannot drift from them).
//!
//! Contract:
//! - Every API route checks, server-side, the caller's session and role (Admin ⊇ Operator ⊇
//!   Viewer); state changes also need the session's CSRF token and a same-origin request (see
//!   [`auth`]). Logged-out requests get 401, insufficient roles 403.
//! - Errors are JSON `{"error": "...", "problems": [{"path", "message"}]}` (405 and 404 too);
//!   validation errors name the field. No input makes a handler panic; request bodies are limited to 1 MiB.
//! - `/healthz`, `/readyz`, `/metrics` and `/api/openapi.json` need no login (monitoring).
//! - The portals show the same numbers as `/metrics`: both read the engine's snapshots.
//! - What the portals may hold is bounded ([`limits`]): connections per portal and per
//!   address, within half of the process's open-file limit, header-read and idle timeouts
//!   ([`serve::serve_portal`], the accept loop of both), SSE streams per user and in total
//!   (429 past them).
//!
//! The crate knows the engine and the store; neither knows it.

#![warn(missing_docs)]

mod api;
mod assets;
mod auth;
mod error;
mod limits;
mod logbuf;
mod metrics;
mod relay_links;
mod serve;
mod system;
mod throttle;
mod tls;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use iobp_engine::Engine;
use iobp_store::Store;

pub use crate::auth::{
    FREE_FAILURES, INITIAL_PASSWORD_FILE, Passwords, ResetError, ensure_admin, reset_password,
};
pub use crate::error::{ApiError, ApiResult, ErrorBody, ProblemDto};
pub use crate::limits::{ConnectionGate, PortalLimits, StreamSlots};
pub use crate::logbuf::{LogBuffer, LogLayer};
pub use crate::serve::serve_portal;
pub use crate::system::SystemMonitor;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Which portal a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Portal {
    /// The Operations Portal (8080).
    Ops,
    /// The Management Dashboard (8081).
    Mgmt,
}

impl Portal {
    /// `ops` or `mgmt`.
    pub fn as_str(self) -> &'static str {
        match self {
            Portal::Ops => "ops",
            Portal::Mgmt => "mgmt",
        }
    }

    /// The session cookie's base name: distinct per portal, because cookies are not isolated
    /// by port and SameSite treats both ports of a host as the same site.
    pub fn cookie_name(self) -> &'static str {
        match self {
            Portal::Ops => "iobp_ops_session",
            Portal::Mgmt => "iobp_mgmt_session",
        }
    }

    /// The session cookie's name for a request: the base name, followed by `_<port>` when the
    /// browser reached the portal at an explicit port (`Host: plant:8080` →
    /// `iobp_ops_session_8080`). Two instances on one host then keep separate sessions in the
    /// same browser, where they would otherwise log each other out.
    pub fn cookie_name_for(self, headers: &axum::http::HeaderMap) -> String {
        let port = headers
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.rsplit_once(':'))
            .map(|(_, p)| p)
            .filter(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
        match port {
            Some(p) => format!("{}_{p}", self.cookie_name()),
            None => self.cookie_name().to_string(),
        }
    }
}

/// What both portals share.
#[derive(Debug)]
pub struct WebShared {
    /// The engine.
    pub engine: Engine,
    /// The store (users, sessions, audit, settings).
    pub store: Arc<Store>,
    /// The data directory.
    pub data_dir: PathBuf,
    /// Sessions.
    pub sessions: auth::Sessions,
    /// Password hashing.
    pub passwords: Passwords,
    /// Failed-login throttling.
    pub throttle: throttle::LoginThrottle,
    /// Recent log lines.
    pub logs: LogBuffer,
    /// CPU, memory, disk and throughput.
    pub system: SystemMonitor,
    /// Start time.
    pub started: Instant,
    /// Ready to serve (false while starting and stopping).
    pub ready: AtomicBool,
    /// What the portals may hold.
    pub limits: PortalLimits,
    /// The Operations Portal's connections.
    pub ops_connections: Arc<ConnectionGate>,
    /// The Management Dashboard's connections.
    pub mgmt_connections: Arc<ConnectionGate>,
    /// SSE streams, per user and in total.
    pub streams: Arc<StreamSlots>,
}

/// The state of one portal's router.
#[derive(Debug, Clone)]
pub struct WebState {
    shared: Arc<WebShared>,
    /// Which portal.
    pub portal: Portal,
    /// Whether this portal is served over HTTPS.
    pub tls: bool,
}

impl std::ops::Deref for WebState {
    type Target = WebShared;
    fn deref(&self) -> &WebShared {
        &self.shared
    }
}

impl WebShared {
    /// Everything the portals need, with the default [`PortalLimits`].
    pub fn new(
        engine: Engine,
        store: Arc<Store>,
        data_dir: PathBuf,
        logs: LogBuffer,
    ) -> Arc<WebShared> {
        Self::with_limits(engine, store, data_dir, logs, PortalLimits::default())
    }

    /// Everything the portals need, with `limits`.
    pub fn with_limits(
        engine: Engine,
        store: Arc<Store>,
        data_dir: PathBuf,
        logs: LogBuffer,
        limits: PortalLimits,
    ) -> Arc<WebShared> {
        let system = SystemMonitor::new(&data_dir);
        Arc::new(WebShared {
            engine,
            store,
            data_dir,
            sessions: auth::Sessions::default(),
            passwords: Passwords::new(),
            throttle: throttle::LoginThrottle::default(),
            logs,
            system,
            started: Instant::now(),
            ready: AtomicBool::new(false),
            limits,
            ops_connections: ConnectionGate::new(Portal::Ops, limits),
            mgmt_connections: ConnectionGate::new(Portal::Mgmt, limits),
            streams: StreamSlots::new(limits.streams_per_user, limits.streams),
        })
    }

    /// The connections of `portal`.
    pub fn connections(&self, portal: Portal) -> &Arc<ConnectionGate> {
        match portal {
            Portal::Ops => &self.ops_connections,
            Portal::Mgmt => &self.mgmt_connections,
        }
    }

    /// Marks the portals ready (or not, while stopping).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }
}

/// The router of one portal: its pages, the REST API, the OpenAPI document, metrics and
/// health endpoints.
pub fn router(shared: Arc<WebShared>, portal: Portal, tls: bool) -> Router {
    let (api, openapi) = api::router().split_for_parts();
    let openapi_json = Arc::new(serde_json::to_string_pretty(&openapi).unwrap_or_default());
    let state = WebState { shared, portal, tls };
    Router::new()
        .merge(api)
        .route(
            "/api/openapi.json",
            get(move || {
                let doc = openapi_json.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], doc.as_str().to_owned()) }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::metrics))
        .merge(assets::pages(portal))
        .fallback(|| async { ApiError::not_found("no such page or API route") })
        // After every route: it applies to the routes registered so far. Axum adds `Allow`.
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "this route does not take this method")
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// The OpenAPI document (for CI's drift check and the docs).
pub fn openapi_json() -> String {
    let (_, openapi) = api::router().split_for_parts();
    serde_json::to_string_pretty(&openapi).unwrap_or_default()
}

async fn readyz(State(s): State<WebState>) -> impl IntoResponse {
    if s.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn security_headers(mut r: axum::response::Response) -> axum::response::Response {
    let h = r.headers_mut();
    // API answers (the session's CSRF token among them) and pages are never stored by a
    // browser or proxy; assets set their own caching.
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
        ),
    );
    r
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue, header};

    use super::Portal;

    #[test]
    fn session_cookies_are_named_per_portal_and_port() {
        let with_host = |h: &'static str| {
            let mut m = HeaderMap::new();
            m.insert(header::HOST, HeaderValue::from_static(h));
            m
        };
        assert_eq!(Portal::Ops.cookie_name_for(&with_host("plant:8080")), "iobp_ops_session_8080");
        assert_eq!(
            Portal::Mgmt.cookie_name_for(&with_host("[::1]:9081")),
            "iobp_mgmt_session_9081"
        );
        // No explicit port (80/443 behind a proxy): the base name.
        assert_eq!(Portal::Ops.cookie_name_for(&with_host("plant.example")), "iobp_ops_session");
        assert_eq!(Portal::Ops.cookie_name_for(&HeaderMap::new()), "iobp_ops_session");
        // Garbage is not put into a cookie name.
        assert_eq!(Portal::Ops.cookie_name_for(&with_host("h:80;x=1")), "iobp_ops_session");
    }
}
