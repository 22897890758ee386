//! What the two portal ports serve until the portals arrive: health, readiness and a JSON
//! status of every channel pair (the same snapshot the portals will show).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use iobp_engine::{Engine, PairSnapshot, SideSnapshot};
use serde_json::{Value, json};

#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    pub ready: Arc<AtomicBool>,
}

/// Routes served on both ports for now.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/api/v1/pairs", get(pairs))
        .route("/api/v1/pairs/{id}", get(pair))
        .with_state(state)
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    if s.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    }
}

async fn pairs(State(s): State<AppState>) -> Json<Value> {
    Json(Value::Array(s.engine.snapshots().iter().map(pair_json).collect()))
}

async fn pair(State(s): State<AppState>, Path(id): Path<String>) -> impl IntoResponse {
    match s.engine.snapshot(&id) {
        Some(p) => (StatusCode::OK, Json(pair_json(&p))),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("no channel pair with id `{id}`")})),
        ),
    }
}

fn side_json(s: &SideSnapshot, kind: &str) -> Value {
    json!({
        "type": kind,
        "status": s.color.as_str(),
        "detail": s.detail,
        "peers": s.peers,
        "connections": s.connections,
    })
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0))
}

pub fn pair_json(p: &PairSnapshot) -> Value {
    json!({
        "id": p.id,
        "name": p.name,
        "enabled": p.enabled,
        "status": { "channel": p.channel.as_str(), "buffer": p.buffer.as_str() },
        "source": side_json(&p.source, p.source_type),
        "destination": side_json(&p.destination, p.destination_type),
        "counts": {
            "received": p.received,
            "received_bytes": p.received_bytes,
            "sent": p.sent,
            "sent_bytes": p.sent_bytes,
            "pending": p.pending,
            "in_flight": p.in_flight,
            "done": p.done,
            "refused": p.refused,
            "rejected": p.rejected,
            "errors": p.errors,
            "retries": p.retries,
            "connections_refused": p.connections_refused,
        },
        "buffer_bytes": p.buffer_bytes,
        "oldest_pending_age_ms": p.oldest_pending_age.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        "last_error": p.last_error.as_ref().map(|(at, side, msg)| json!({
            "at_ms": unix_ms(*at), "side": side.as_str(), "message": msg,
        })),
        "buffer_failure": p.buffer_failure,
    })
}
