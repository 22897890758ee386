//! The message browser: buffered messages by state, sequence number and time; one message's
//! payload as text, hex and base64; re-sending a delivered message.

use axum::extract::State;
use base64::Engine as _;
use iobp_log::{Log, MessageState};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::responses::{Malformed, Session, SessionWrite};
use super::{ApiPath, ApiQuery, display_text, hex, pair_id};
use crate::WebState;
use crate::auth::{Auth, Operator, Viewer, now_ms};
use crate::error::{ApiError, ApiResult, ErrorBody};

/// Most messages per page.
const MAX_PAGE: usize = 500;
/// Payload bytes shown as text in a detail view.
const DETAIL_TEXT: usize = 64 * 1024;
/// Payload bytes shown as hex in a detail view.
const DETAIL_HEX: usize = 4096;

fn state_name(s: MessageState) -> &'static str {
    match s {
        MessageState::Pending => "pending",
        MessageState::InFlight => "in_flight",
        MessageState::Done => "done",
        MessageState::Unconfirmed => "unconfirmed",
        MessageState::Absent => "absent",
    }
}

/// A message in a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageDto {
    /// Sequence number in the pair's buffer.
    pub seq: u64,
    /// When it was stored, ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// `pending`, `in_flight` or `done`.
    pub state: String,
    /// Payload length.
    pub length: usize,
    /// The first 200 bytes as text.
    pub text: String,
    /// The first 32 bytes in hex.
    pub hex: String,
}

/// A page of messages, in sequence order.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessagePageDto {
    /// Oldest sequence number still retained.
    pub first_seq: u64,
    /// The sequence number the next message will get.
    pub next_seq: u64,
    /// The messages.
    pub messages: Vec<MessageDto>,
}

/// One message in full.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageDetailDto {
    /// Sequence number.
    pub seq: u64,
    /// When it was stored, ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// `pending`, `in_flight` or `done`.
    pub state: String,
    /// Payload length.
    pub length: usize,
    /// Up to 64 KiB of the payload as text (invalid UTF-8 shown as `\xNN`).
    pub text: String,
    /// Up to 4 KiB in hex.
    pub hex: String,
    /// The whole payload, base64.
    pub base64: String,
    /// Whether `text` or `hex` were cut.
    pub truncated: bool,
}

/// The sequence number of a re-sent copy.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResendDto {
    /// The copy's sequence number; it is delivered after everything already buffered.
    pub seq: u64,
}

/// Which messages to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// `pending`, `in_flight`, `done` or `all` (default).
    #[param(pattern = "^(pending|in_flight|done|all)$")]
    state: Option<String>,
    /// Start at this sequence number. Default: the newest `limit` messages.
    from_seq: Option<u64>,
    /// Start at the first message stored at or after this time (ms since the Unix epoch).
    since_ms: Option<u64>,
    /// At most this many (default 50, at most 500).
    limit: Option<usize>,
}

fn log_of(s: &WebState, id: &str) -> ApiResult<Log> {
    s.engine.log(id).ok_or_else(|| ApiError::not_found(format!("no channel pair with id `{id}`")))
}

/// The first sequence number stored at or after `t_us` (binary search; timestamps follow
/// append order).
fn seq_at_time(log: &Log, first: u64, next: u64, t_us: u64) -> u64 {
    let (mut lo, mut hi) = (first, next);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match log.get(mid) {
            Ok(Some(r)) if r.timestamp_us < t_us => lo = mid + 1,
            Ok(Some(_)) => hi = mid,
            // A gap (damage): look further on.
            _ => lo = mid + 1,
        }
    }
    lo
}

/// Browse buffered messages.
#[utoipa::path(get, path = "/api/v1/pairs/{id}/messages", tag = "messages", operation_id = "list_messages",
    params(("id" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$"), ListQuery),
    responses(Session, Malformed, (status = 200, body = MessagePageDto), (status = 404, body = ErrorBody)))]
pub(crate) async fn list(
    State(s): State<WebState>,
    _auth: Auth<Viewer>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<axum::Json<MessagePageDto>> {
    let id = pair_id(&id)?;
    let want: Option<MessageState> = match q.state.as_deref() {
        None | Some("all") => None,
        Some("pending") => Some(MessageState::Pending),
        Some("in_flight") => Some(MessageState::InFlight),
        Some("done") => Some(MessageState::Done),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "state must be pending, in_flight, done or all, not `{other}`"
            )));
        }
    };
    let limit = q.limit.unwrap_or(50).clamp(1, MAX_PAGE);
    let log = log_of(&s, id)?;
    // The browser reads from disk: keep it off the async workers.
    let page = tokio::task::spawn_blocking(move || -> ApiResult<MessagePageDto> {
        let st = log.stats();
        let (first, next) = (st.first_seq, st.next_seq);
        let start = match (q.from_seq, q.since_ms) {
            (Some(f), _) => f.max(first),
            (None, Some(t)) => seq_at_time(&log, first, next, t.saturating_mul(1000)),
            (None, None) => next.saturating_sub(limit as u64).max(first),
        };
        let mut messages = Vec::new();
        let mut from = start;
        // Scan at most ten pages' worth when filtering by state.
        let mut budget = limit * 10;
        while messages.len() < limit && budget > 0 && from < next {
            let batch =
                log.read_range(from, limit.min(budget), 1 << 20).map_err(ApiError::internal)?;
            if batch.is_empty() {
                break;
            }
            for r in batch.iter() {
                from = r.seq + 1;
                budget = budget.saturating_sub(1);
                let state = log.state_of(r.seq);
                if want.is_some_and(|w| w != state) || messages.len() == limit {
                    continue;
                }
                messages.push(MessageDto {
                    seq: r.seq,
                    timestamp_ms: r.timestamp_us / 1000,
                    state: state_name(state).into(),
                    length: r.payload.len(),
                    text: display_text(r.payload, 200),
                    hex: hex(r.payload, 32),
                });
            }
        }
        Ok(MessagePageDto { first_seq: first, next_seq: next, messages })
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(axum::Json(page))
}

/// One message: payload as text, hex and base64.
#[utoipa::path(get, path = "/api/v1/pairs/{id}/messages/{seq}", tag = "messages", operation_id = "get_message",
    params(("id" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$"), ("seq" = u64, Path)),
    responses(Session, Malformed, (status = 200, body = MessageDetailDto), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_one(
    State(s): State<WebState>,
    _auth: Auth<Viewer>,
    ApiPath((id, seq)): ApiPath<(String, u64)>,
) -> ApiResult<axum::Json<MessageDetailDto>> {
    let log = log_of(&s, pair_id(&id)?)?;
    let detail = tokio::task::spawn_blocking(move || -> ApiResult<MessageDetailDto> {
        let r = log
            .get(seq)
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError::not_found(format!("message {seq} is not in the buffer")))?;
        Ok(MessageDetailDto {
            seq,
            timestamp_ms: r.timestamp_us / 1000,
            state: state_name(log.state_of(seq)).into(),
            length: r.payload.len(),
            text: display_text(&r.payload, DETAIL_TEXT),
            hex: hex(&r.payload, DETAIL_HEX),
            base64: base64::engine::general_purpose::STANDARD.encode(&r.payload),
            truncated: r.payload.len() > DETAIL_HEX,
        })
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(axum::Json(detail))
}

/// Re-sends a delivered (Done) message: a copy is stored and delivered after everything
/// already buffered.
#[utoipa::path(post, path = "/api/v1/pairs/{id}/messages/{seq}/resend", tag = "messages",
    params(("id" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$"), ("seq" = u64, Path)),
    responses(
        SessionWrite, Malformed,
        (status = 200, body = ResendDto),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Not delivered yet: it will be delivered anyway", body = ErrorBody),
    ))]
pub(crate) async fn resend(
    State(s): State<WebState>,
    auth: Auth<Operator>,
    ApiPath((id, seq)): ApiPath<(String, u64)>,
) -> ApiResult<axum::Json<ResendDto>> {
    let id = pair_id(&id)?.to_string();
    let log = log_of(&s, &id)?;
    let state = log.state_of(seq);
    if state != MessageState::Done {
        return Err(ApiError::conflict(format!(
            "message {seq} is {}; only delivered (done) messages can be re-sent",
            state_name(state)
        )));
    }
    let l2 = log.clone();
    let record = tokio::task::spawn_blocking(move || l2.get(seq))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(format!("message {seq} is not in the buffer")))?;
    let new_seq = log.append(&record.payload).await.map_err(|e| match e {
        iobp_log::Error::Full { .. } => ApiError::conflict(format!("cannot store the copy: {e}")),
        other => ApiError::internal(other),
    })?;
    // The copy entered the buffer like any message: counted as received and shown in the
    // source view, so received and sent keep adding up.
    if let Some(stats) = s.engine.stats(&id) {
        use std::sync::atomic::Ordering::Relaxed;
        stats.received.fetch_add(1, Relaxed);
        stats.received_bytes.fetch_add(record.payload.len() as u64, Relaxed);
    }
    if let Some(feed) = s.engine.feed(&id) {
        let origin: std::sync::Arc<str> = format!("re-send of #{seq}").into();
        let items = std::iter::once((Some(new_seq), record.payload.as_slice()));
        feed.record(iobp_engine::Side::Source, Some(&origin), items);
    }
    s.store.audit(
        &auth.audit(
            "message.resend",
            Some(&id),
            Some(format!("message {seq} re-sent as {new_seq}")),
        ),
        now_ms(),
    )?;
    Ok(axum::Json(ResendDto { seq: new_seq }))
}
