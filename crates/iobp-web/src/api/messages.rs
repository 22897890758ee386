//! The message browser: buffered messages by state, sequence number and time; one message's
//! payload as text, hex and base64; re-sending a delivered message.

use axum::extract::State;
use base64::Engine as _;
use iobp_engine::{MessageQuery, MessageState};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::responses::{Malformed, Session, SessionWrite, TooLarge};
use super::{ApiJson, ApiPath, ApiQuery, display_text, hex, pair_id};
use crate::WebState;
use crate::auth::{Auth, Operator, Viewer, now_ms};
use crate::error::{ApiError, ApiResult, ErrorBody};

/// Payload bytes shown as text in a detail view.
const DETAIL_TEXT: usize = 64 * 1024;
/// Payload bytes shown as hex in a detail view.
const DETAIL_HEX: usize = 4096;
/// Payload bytes shown as text in a list.
const LIST_TEXT: usize = 200;
/// Payload bytes shown as hex in a list.
const LIST_HEX: usize = 32;

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

impl MessageDto {
    /// A buffered message as a list shows it.
    fn listed(m: &iobp_engine::BufferedMessage) -> Self {
        MessageDto {
            seq: m.seq,
            timestamp_ms: m.timestamp_us / 1000,
            state: m.state.as_str().into(),
            length: m.length,
            text: display_text(&m.payload, LIST_TEXT),
            hex: hex(&m.payload, LIST_HEX),
        }
    }
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
    /// The first sequence number not examined: a search (or a state filter) goes on from
    /// here with `from_seq` (`next_seq`: it reached the newest message). A search examines
    /// at most 20,000 messages per request.
    pub scanned_to: u64,
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
    /// Search: only messages whose payload contains this text (at most 256 bytes). Without
    /// `from_seq`/`since_ms` a search starts at the oldest message.
    contains: Option<String>,
    /// Search ASTM E1394 messages by a field: `<record type>.<field number>`, E1394
    /// numbering (`O.3`: the order record's specimen id, `P.3`: the patient id); with
    /// `astm_value`.
    #[param(pattern = "^[A-Za-z]\\.[1-9][0-9]{0,2}$")]
    astm_field: Option<String>,
    /// The value the ASTM field must have, whole (at most 256 bytes).
    astm_value: Option<String>,
    /// Search HL7 v2 messages by a field: `<segment>.<field number>`, HL7 numbering
    /// (`MSH.10`: the message control id, `PID.3`: the patient identifiers); with
    /// `hl7_value`.
    #[param(pattern = "^[A-Z][A-Z0-9]{2}\\.[1-9][0-9]{0,2}$")]
    hl7_field: Option<String>,
    /// The value the HL7 field must have, whole (at most 256 bytes).
    hl7_value: Option<String>,
}

/// The search a listing asks for, if any.
fn matching(q: &ListQuery) -> ApiResult<Option<iobp_engine::MessageMatch>> {
    let hl7 = hl7_search(q.hl7_field.as_ref(), q.hl7_value.as_ref())?;
    let other = search(q.contains.as_ref(), q.astm_field.as_ref(), q.astm_value.as_ref())?;
    one_search(hl7, other)
}

/// At most one kind of search at a time.
fn one_search(
    hl7: Option<iobp_engine::MessageMatch>,
    other: Option<iobp_engine::MessageMatch>,
) -> ApiResult<Option<iobp_engine::MessageMatch>> {
    match (hl7, other) {
        (Some(_), Some(_)) => {
            Err(ApiError::bad_request("search by one of contains, astm_field or hl7_field"))
        }
        (h, o) => Ok(h.or(o)),
    }
}

/// An HL7 field search: `MSH.10` and a value.
fn hl7_search(
    field: Option<&String>,
    value: Option<&String>,
) -> ApiResult<Option<iobp_engine::MessageMatch>> {
    match (field, value) {
        (None, None) => Ok(None),
        (Some(f), Some(value)) => {
            if value.len() > 256 {
                return Err(ApiError::bad_request("hl7_value must be at most 256 bytes"));
            }
            let parsed = f.split_once('.').and_then(|(seg, n)| {
                let ok = seg.len() == 3
                    && seg.bytes().next().is_some_and(|b| b.is_ascii_uppercase())
                    && seg.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
                let n = n.parse::<usize>().ok().filter(|n| (1..=999).contains(n))?;
                ok.then(|| (seg.to_string(), n))
            });
            let Some((segment, field)) = parsed else {
                return Err(ApiError::bad_request(format!(
                    "hl7_field must be a segment and a field number like `MSH.10`, not `{f}`"
                )));
            };
            Ok(Some(iobp_engine::MessageMatch::Hl7Field {
                segment,
                field,
                value: value.as_bytes().to_vec(),
            }))
        }
        _ => Err(ApiError::bad_request("hl7_field and hl7_value go together")),
    }
}

/// A search from its three settings (a text, or an ASTM field and its value).
fn search(
    contains: Option<&String>,
    astm_field: Option<&String>,
    astm_value: Option<&String>,
) -> ApiResult<Option<iobp_engine::MessageMatch>> {
    const MAX: usize = 256;
    let too_long =
        |what: &str| ApiError::bad_request(format!("{what} must be at most {MAX} bytes"));
    match (contains, astm_field, astm_value) {
        (None, None, None) => Ok(None),
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            Err(ApiError::bad_request("search by `contains` or by `astm_field`, not both"))
        }
        (Some(text), None, None) => {
            if text.len() > MAX {
                return Err(too_long("contains"));
            }
            Ok(Some(iobp_engine::MessageMatch::Contains(text.as_bytes().to_vec())))
        }
        (None, Some(f), Some(value)) => {
            if value.len() > MAX {
                return Err(too_long("astm_value"));
            }
            let parsed = f.split_once('.').and_then(|(r, n)| {
                let record = match r.as_bytes() {
                    [c] if c.is_ascii_alphabetic() => c.to_ascii_uppercase(),
                    _ => return None,
                };
                let field = n.parse::<usize>().ok().filter(|n| (1..=999).contains(n))?;
                Some((record, field))
            });
            let Some((record, field)) = parsed else {
                return Err(ApiError::bad_request(format!(
                    "astm_field must be a record type and a field number like `O.3`, not `{f}`"
                )));
            };
            Ok(Some(iobp_engine::MessageMatch::AstmField {
                record,
                field,
                value: value.as_bytes().to_vec(),
            }))
        }
        (None, _, _) => Err(ApiError::bad_request("astm_field and astm_value go together")),
    }
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
    let query = MessageQuery {
        state: want,
        from_seq: q.from_seq,
        since_us: q.since_ms.map(|t| t.saturating_mul(1000)),
        limit: q.limit.unwrap_or(50).clamp(1, iobp_engine::MAX_PAGE),
        preview_bytes: LIST_TEXT.max(LIST_HEX),
        matching: matching(&q)?,
    };
    let page = s.engine.messages(id, query).await?;
    Ok(axum::Json(MessagePageDto {
        first_seq: page.first_seq,
        next_seq: page.next_seq,
        scanned_to: page.scanned_to,
        messages: page.messages.iter().map(MessageDto::listed).collect(),
    }))
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
    let m = s.engine.message(pair_id(&id)?, seq).await?;
    Ok(axum::Json(MessageDetailDto {
        seq,
        timestamp_ms: m.timestamp_us / 1000,
        state: m.state.as_str().into(),
        length: m.length,
        text: display_text(&m.payload, DETAIL_TEXT),
        hex: hex(&m.payload, DETAIL_HEX),
        base64: base64::engine::general_purpose::STANDARD.encode(&m.payload),
        truncated: m.length > DETAIL_HEX,
    }))
}

/// One event of a message's trace.
#[derive(Debug, Serialize, ToSchema)]
pub struct TraceEventDto {
    /// When, µs since the Unix epoch.
    pub at_us: u64,
    /// Events alike about consecutive messages within 100 ms are one: the time of the last
    /// of them (`at_us` is the first's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until_us: Option<u64>,
    /// `stored` (received and durable: when its commit resolved; `peer` sent it),
    /// `delivered` (Done: `route`, `peer`, the receiver's `answer`), `refused` (the receiver
    /// refused it: `answer`), `returned` (an attempt ended without confirmation: `error`;
    /// sent again), `undeliverable`, `parked` (`count` refusals), `parked_resent`
    /// (`other_seq`: the copy), `parked_discarded`, `copied` (replayed or re-sent into
    /// `other_pair` as `other_seq`), `copy_of` (a copy of `other_pair`'s `other_seq`),
    /// `started` (the pair started while it waited: `error` says why) or `trimmed` (older
    /// events were removed to keep the trace within its size).
    pub kind: String,
    /// The batch it was part of: the first sequence number …
    pub from_seq: u64,
    /// … and the last.
    pub to_seq: u64,
    /// The sender (`stored`) or receiver (delivery events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// Which destination, for a pair with backups.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// The receiver's answer: `AA`, `AE text`, `ACK 0x06`, `NAK 0x15`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// Why (an error, a reason, which kind of copy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The other pair of a copy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other_pair: Option<String>,
    /// The copy's (or the original's) sequence number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other_seq: Option<u64>,
    /// Refusals before it was parked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

/// What happened to one message.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageTraceDto {
    /// Its sequence number.
    pub seq: u64,
    /// Where it is now: `pending`, `in_flight`, `done`, or `absent` (removed by retention,
    /// or never stored).
    pub state: String,
    /// When it was received (its record's time), ms since the Unix epoch, while retained.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub received_ms: Option<u64>,
    /// Its events, oldest first (at most 1,000: the first 500 and the latest 500).
    pub events: Vec<TraceEventDto>,
    /// Events left out of a longer trace.
    pub events_omitted: u64,
    /// Trace events of this pair the instance could not write (overload): the trace may be
    /// incomplete. Messages are never affected.
    pub events_lost: u64,
}

/// What happened to a message: received (when, from whom), durable, every delivery attempt
/// (where, the receiver's answer, the error), Done, parked, re-sent, replayed. Kept as long
/// as the message is retained; it survives restarts.
#[utoipa::path(get, path = "/api/v1/pairs/{id}/messages/{seq}/trace", tag = "messages", operation_id = "trace_message",
    params(("id" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$"), ("seq" = u64, Path)),
    responses(Session, Malformed, (status = 200, body = MessageTraceDto), (status = 404, body = ErrorBody)))]
pub(crate) async fn trace(
    State(s): State<WebState>,
    _auth: Auth<Viewer>,
    ApiPath((id, seq)): ApiPath<(String, u64)>,
) -> ApiResult<axum::Json<MessageTraceDto>> {
    let id = pair_id(&id)?;
    let t = s.engine.trace(id, seq).await?;
    let (state, received_ms) = match s.engine.message(id, seq).await {
        Ok(m) => (m.state.as_str().to_string(), Some(m.timestamp_us / 1000)),
        Err(iobp_engine::EngineError::MessageNotFound { .. }) => {
            (MessageState::Absent.as_str().to_string(), None)
        }
        Err(e) => return Err(e.into()),
    };
    let events = t
        .events
        .into_iter()
        .map(|e| TraceEventDto {
            at_us: e.t,
            until_us: e.u,
            kind: e.k.as_str().to_string(),
            from_seq: e.a,
            to_seq: e.b,
            peer: e.peer,
            route: e.route,
            answer: e.ack,
            error: e.err,
            other_pair: e.pair,
            other_seq: e.seq,
            count: e.n,
        })
        .collect();
    Ok(axum::Json(MessageTraceDto {
        seq,
        state,
        received_ms,
        events,
        events_omitted: t.events_omitted,
        events_lost: t.events_lost,
    }))
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
    let new_seq = s.engine.resend(&id, seq).await?;
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

/// Which messages to replay, and where to.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// The first sequence number (included).
    pub from_seq: Option<u64>,
    /// The last sequence number (included).
    pub to_seq: Option<u64>,
    /// Messages stored at or after this time (ms since the Unix epoch).
    pub since_ms: Option<u64>,
    /// Messages stored before this time (ms since the Unix epoch).
    pub until_ms: Option<u64>,
    /// Only messages whose payload contains this text (at most 256 bytes).
    pub contains: Option<String>,
    /// Only ASTM E1394 messages whose field `<record>.<number>` (`O.3`: the sample id) …
    pub astm_field: Option<String>,
    /// … has this value.
    pub astm_value: Option<String>,
    /// Only HL7 v2 messages whose field `<segment>.<number>` (`MSH.10`: the control id) …
    pub hl7_field: Option<String>,
    /// … has this value.
    pub hl7_value: Option<String>,
    /// The pair the copies go into (default: this pair, i.e. to its own destination again).
    #[schema(pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")]
    pub into: Option<String>,
    /// Only count and show the selection; store nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// What a replay selected and did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayDto {
    /// Messages selected (at most 100,000 are replayed at once).
    pub count: u64,
    /// The first and last selected sequence numbers.
    pub first_seq: Option<u64>,
    /// The last selected sequence number.
    pub last_seq: Option<u64>,
    /// The first few selected messages.
    pub preview: Vec<MessageDto>,
    /// What the selection asked for that retention has removed already.
    pub not_retained: Option<NotRetainedDto>,
    /// Nothing was stored: the selection only.
    pub dry_run: bool,
    /// The pair the copies went into.
    pub into: String,
    /// Copies stored (durable, counted as received).
    pub replayed: u64,
    /// The copies' first sequence number in `into`.
    pub new_first_seq: Option<u64>,
    /// The copies' last sequence number in `into`.
    pub new_last_seq: Option<u64>,
    /// The replay stopped early: why (`into`'s buffer is full).
    pub stopped: Option<String>,
    /// The replay stopped early: the first original sequence number not replayed (replay
    /// again from it).
    pub resume_from_seq: Option<u64>,
}

/// Part of a selection that is no longer retained.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotRetainedDto {
    /// The oldest message still retained.
    pub oldest_seq: u64,
    /// When it was stored (ms since the Unix epoch).
    pub oldest_ms: Option<u64>,
    /// Messages the selection asked for that are gone (for a time range: every removed
    /// message, whose times are gone with them).
    pub removed: u64,
}

/// Replays messages: those of a sequence or time range (and, optionally, a search) are
/// stored again as new messages, in their original order, after everything already
/// buffered — for this pair's destination or into another pair. `dry_run` shows the
/// selection without storing anything.
#[utoipa::path(post, path = "/api/v1/pairs/{id}/replay", tag = "messages", operation_id = "replay_messages",
    params(("id" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")),
    request_body = ReplayRequest,
    responses(
        SessionWrite, Malformed, TooLarge,
        (status = 200, body = ReplayDto),
        (status = 404, body = ErrorBody),
    ))]
pub(crate) async fn replay(
    State(s): State<WebState>,
    auth: Auth<Operator>,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<ReplayRequest>,
) -> ApiResult<axum::Json<ReplayDto>> {
    let id = pair_id(&id)?.to_string();
    let into = match &req.into {
        Some(p) => Some(pair_id(p)?.to_string()),
        None => None,
    };
    if req.from_seq.is_some() && req.since_ms.is_some()
        || req.to_seq.is_some() && req.until_ms.is_some()
    {
        return Err(ApiError::bad_request(
            "select by sequence numbers (from_seq, to_seq) or by time (since_ms, until_ms) at each end, not both",
        ));
    }
    let sel = iobp_engine::ReplaySelection {
        from_seq: req.from_seq,
        to_seq: req.to_seq,
        since_us: req.since_ms.map(|t| t.saturating_mul(1000)),
        until_us: req.until_ms.map(|t| t.saturating_mul(1000)),
        matching: one_search(
            hl7_search(req.hl7_field.as_ref(), req.hl7_value.as_ref())?,
            search(req.contains.as_ref(), req.astm_field.as_ref(), req.astm_value.as_ref())?,
        )?,
    };
    let (plan, outcome) = if req.dry_run {
        (s.engine.replay_plan(&id, sel).await?, None)
    } else {
        if let Some(target) = &into {
            // Refused before anything is read when the target does not exist.
            s.engine.snapshot(target).ok_or_else(|| {
                ApiError::not_found(format!("no channel pair with id `{target}`"))
            })?;
        }
        let o = s.engine.replay(&id, sel, into.as_deref()).await?;
        (o.plan.clone(), Some(o))
    };
    let dto = ReplayDto {
        count: plan.count,
        first_seq: plan.seqs.map(|x| x.0),
        last_seq: plan.seqs.map(|x| x.1),
        preview: plan.first.iter().map(MessageDto::listed).collect(),
        not_retained: plan.not_retained.map(|n| NotRetainedDto {
            oldest_seq: n.oldest_seq,
            oldest_ms: n.oldest_us.map(|u| u / 1000),
            removed: n.removed,
        }),
        dry_run: req.dry_run,
        into: into.clone().unwrap_or_else(|| id.clone()),
        replayed: outcome.as_ref().map_or(0, |o| o.replayed),
        new_first_seq: outcome.as_ref().and_then(|o| o.new_seqs.map(|x| x.0)),
        new_last_seq: outcome.as_ref().and_then(|o| o.new_seqs.map(|x| x.1)),
        stopped: outcome.as_ref().and_then(|o| o.stopped.as_ref().map(|x| x.0.clone())),
        resume_from_seq: outcome.as_ref().and_then(|o| o.stopped.as_ref().map(|x| x.1)),
    };
    if !req.dry_run {
        let selection = replay_selection_text(&req);
        let detail = format!(
            "replayed {} of {} selected message(s) ({selection}) into `{}`{}{}",
            dto.replayed,
            dto.count,
            dto.into,
            match (dto.first_seq, dto.last_seq, dto.new_first_seq, dto.new_last_seq) {
                (Some(from), Some(to), Some(new_from), Some(new_to)) => {
                    format!(": #{from}–#{to} as #{new_from}–#{new_to}")
                }
                _ => String::new(),
            },
            dto.stopped.as_ref().map_or(String::new(), |w| format!("; stopped: {w}")),
        );
        s.store.audit(&auth.audit("message.replay", Some(&id), Some(detail)), now_ms())?;
    }
    Ok(axum::Json(dto))
}

/// The selection as the audit trail records it.
fn replay_selection_text(r: &ReplayRequest) -> String {
    let mut parts = Vec::new();
    if let Some(v) = r.from_seq {
        parts.push(format!("from #{v}"));
    }
    if let Some(v) = r.to_seq {
        parts.push(format!("to #{v}"));
    }
    if let Some(v) = r.since_ms {
        parts.push(format!("since {v} ms"));
    }
    if let Some(v) = r.until_ms {
        parts.push(format!("until {v} ms"));
    }
    if let Some(v) = &r.contains {
        parts.push(format!("containing {v:?}"));
    }
    if let (Some(f), Some(v)) = (&r.astm_field, &r.astm_value) {
        parts.push(format!("ASTM {f} = {v:?}"));
    }
    if let (Some(f), Some(v)) = (&r.hl7_field, &r.hl7_value) {
        parts.push(format!("HL7 {f} = {v:?}"));
    }
    if parts.is_empty() { "every retained message".into() } else { parts.join(", ") }
}

/// A parked message (dead-letter policy).
#[derive(Debug, Serialize, ToSchema)]
pub struct ParkedDto {
    /// Its id among the pair's parked messages.
    pub id: u64,
    /// Its sequence number in the pair's buffer when it was parked.
    pub original_seq: u64,
    /// When it was parked, ms since the Unix epoch.
    pub parked_ms: u64,
    /// Payload length.
    pub length: usize,
    /// The first 200 bytes as text.
    pub text: String,
    /// The first 32 bytes in hex.
    pub hex: String,
}

/// The pair's parked messages, oldest first: those its destination refused
/// `dead_letter.after_rejections` times.
#[utoipa::path(get, path = "/api/v1/pairs/{id}/parked", tag = "messages", operation_id = "list_parked",
    params(("id" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")),
    responses(Session, Malformed, (status = 200, body = Vec<ParkedDto>), (status = 404, body = ErrorBody)))]
pub(crate) async fn parked(
    State(s): State<WebState>,
    _auth: Auth<Viewer>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<axum::Json<Vec<ParkedDto>>> {
    let list = s.engine.parked(pair_id(&id)?).await?;
    Ok(axum::Json(
        list.iter()
            .map(|m| ParkedDto {
                id: m.id,
                original_seq: m.original_seq,
                parked_ms: m.parked_us / 1000,
                length: m.payload.len(),
                text: display_text(&m.payload, LIST_TEXT),
                hex: hex(&m.payload, LIST_HEX),
            })
            .collect(),
    ))
}

/// Re-sends a parked message: stored again in the pair's buffer (delivered after everything
/// already buffered), and no longer parked.
#[utoipa::path(post, path = "/api/v1/pairs/{id}/parked/{parked}/resend", tag = "messages", operation_id = "resend_parked",
    params(("id" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$"), ("parked" = u64, Path)),
    responses(SessionWrite, Malformed, (status = 200, body = ResendDto), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn resend_parked(
    State(s): State<WebState>,
    auth: Auth<Operator>,
    ApiPath((id, parked)): ApiPath<(String, u64)>,
) -> ApiResult<axum::Json<ResendDto>> {
    let id = pair_id(&id)?.to_string();
    let new_seq = s.engine.resend_parked(&id, parked).await?;
    let detail = format!("parked message {parked} re-sent as {new_seq}");
    s.store.audit(&auth.audit("message.parked.resend", Some(&id), Some(detail)), now_ms())?;
    Ok(axum::Json(ResendDto { seq: new_seq }))
}

/// Discards a parked message for good.
#[utoipa::path(post, path = "/api/v1/pairs/{id}/parked/{parked}/discard", tag = "messages", operation_id = "discard_parked",
    params(("id" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$"), ("parked" = u64, Path)),
    responses(SessionWrite, Malformed, (status = 204, description = "Discarded"), (status = 404, body = ErrorBody)))]
pub(crate) async fn discard_parked(
    State(s): State<WebState>,
    auth: Auth<Operator>,
    ApiPath((id, parked)): ApiPath<(String, u64)>,
) -> ApiResult<axum::http::StatusCode> {
    let id = pair_id(&id)?.to_string();
    let m = s.engine.parked(&id).await?.into_iter().find(|m| m.id == parked);
    s.engine.discard_parked(&id, parked).await?;
    let detail = format!(
        "parked message {parked} discarded{}",
        m.map_or(String::new(), |m| format!(
            " (originally #{}, {} bytes)",
            m.original_seq,
            m.payload.len()
        ))
    );
    s.store.audit(&auth.audit("message.parked.discard", Some(&id), Some(detail)), now_ms())?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}
