//! A pair's accounting: its counters added up against its buffer (`Engine::reconciliation`).

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::responses::{Malformed, Session};
use super::{ApiPath, pair_id};
use crate::WebState;
use crate::auth::{Auth, Viewer};
use crate::error::{ApiResult, ErrorBody};

/// A pair's accounting since its counters started (this instance's start, or the pair's
/// creation). Each `*_difference` is one identity and must be 0; `discrepancy` is the sum of
/// their absolute values in the last settled reading.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReconciliationDto {
    /// Messages accepted (durably stored) since the counters started.
    pub received: u64,
    /// Messages delivered and confirmed.
    pub delivered: u64,
    /// Messages parked by the dead-letter policy.
    pub parked: u64,
    /// Messages this destination cannot carry (set aside, in the rejections).
    pub undeliverable: u64,
    /// Records lost to buffer damage (skipped).
    pub lost: u64,
    /// Waiting for delivery now.
    pub pending: u64,
    /// Being delivered now.
    pub in_flight: u64,
    /// Undelivered messages the buffer held when the counters started.
    pub backlog_at_start: u64,
    /// Records that healing a failed buffer returned from Done to pending (delivered again).
    pub returned_by_heal: i64,
    /// Refused at the source because the buffer was full: never accepted — the sender kept
    /// them — so beside the sums, not in them.
    pub refused: u64,
    /// Parked now.
    pub parked_now: u64,
    /// Records the buffer made durable since the counters started.
    pub stored: u64,
    /// Records the buffer marked Done since the counters started.
    pub done: u64,
    /// Records the buffer ever stored.
    pub buffer_total: u64,
    /// Records retention removed (Done only).
    pub removed_by_retention: u64,
    /// Done records still retained.
    pub done_retained: u64,
    /// `received − stored`.
    pub stored_difference: i64,
    /// `done − (delivered + parked + undeliverable + lost)`.
    pub done_difference: i64,
    /// `buffer_total − (removed_by_retention + done_retained + pending + in_flight)`.
    pub buffer_difference: i64,
    /// `received + backlog_at_start + returned_by_heal − (delivered + parked + undeliverable +
    /// lost + pending + in_flight)`.
    pub pair_difference: i64,
    /// The figures come from a reading the pair held unchanged for a moment (under traffic a
    /// reading can fall between a store and its count, so only settled readings count).
    pub settled: bool,
    /// Sum of the absolute differences in the last settled reading: 0 when every message is
    /// accounted for.
    pub discrepancy: u64,
}

impl From<iobp_engine::Reconciliation> for ReconciliationDto {
    fn from(r: iobp_engine::Reconciliation) -> Self {
        ReconciliationDto {
            received: r.received,
            delivered: r.delivered,
            parked: r.parked,
            undeliverable: r.undeliverable,
            lost: r.lost,
            pending: r.pending,
            in_flight: r.in_flight,
            backlog_at_start: r.backlog_at_start,
            returned_by_heal: r.returned_by_heal,
            refused: r.refused,
            parked_now: r.parked_now,
            stored: r.stored,
            done: r.done,
            buffer_total: r.buffer_total,
            removed_by_retention: r.removed_by_retention,
            done_retained: r.done_retained,
            stored_difference: r.stored_difference,
            done_difference: r.done_difference,
            buffer_difference: r.buffer_difference,
            pair_difference: r.pair_difference,
            settled: r.settled,
            discrepancy: r.discrepancy,
        }
    }
}

/// The pair's accounting: received = delivered + parked + undeliverable + lost + pending +
/// in flight (− the backlog it started with), each identity's difference, and whether the
/// reading is settled.
#[utoipa::path(get, path = "/api/v1/pairs/{id}/reconciliation", tag = "pairs", params(("id" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")),
    responses(Session, Malformed, (status = 200, body = ReconciliationDto), (status = 404, body = ErrorBody)))]
pub(crate) async fn reconciliation(
    State(s): State<WebState>,
    _auth: Auth<Viewer>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<axum::Json<ReconciliationDto>> {
    let id = pair_id(&id)?;
    // As cheap as the pair's status snapshot, which the handlers read in place too.
    Ok(axum::Json(s.engine.reconciliation(id)?.into()))
}
