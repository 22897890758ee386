//! What the portals read and do beside configuration: the message browser (buffered
//! messages by state, sequence and time), re-sending a delivered message, the live feed, the
//! rejections, the storage figures. The web layer calls these and never touches a pair's
//! buffer, counters or feed itself: a re-sent copy enters the buffer exactly as a received
//! message does (counted, shown in the live view), whoever asks for it.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use tokio::sync::broadcast;

use super::{Engine, EngineError, blocking, read};
use crate::feed::FeedEntry;
use crate::stats::{Rejected, Side};
use crate::trace::{MessageTrace, record_copies};

/// Where a buffered message is on its way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageState {
    /// Durable, waiting for delivery.
    Pending,
    /// Handed to the destination, not confirmed yet.
    InFlight,
    /// Delivered (confirmed where the destination confirms).
    Done,
    /// Accepted but its write is not confirmed durable yet.
    Unconfirmed,
    /// Not in the buffer (never stored, or removed by retention).
    Absent,
}

impl MessageState {
    /// `pending`, `in_flight`, `done`, `unconfirmed` or `absent`.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageState::Pending => "pending",
            MessageState::InFlight => "in_flight",
            MessageState::Done => "done",
            MessageState::Unconfirmed => "unconfirmed",
            MessageState::Absent => "absent",
        }
    }
}

impl From<iobp_log::MessageState> for MessageState {
    fn from(s: iobp_log::MessageState) -> Self {
        match s {
            iobp_log::MessageState::Pending => MessageState::Pending,
            iobp_log::MessageState::InFlight => MessageState::InFlight,
            iobp_log::MessageState::Done => MessageState::Done,
            iobp_log::MessageState::Unconfirmed => MessageState::Unconfirmed,
            iobp_log::MessageState::Absent => MessageState::Absent,
        }
    }
}

/// A buffered message, or the start of it.
#[derive(Debug, Clone)]
pub struct BufferedMessage {
    /// Sequence number in the pair's buffer.
    pub seq: u64,
    /// When it was stored, µs since the Unix epoch.
    pub timestamp_us: u64,
    /// Where it is on its way.
    pub state: MessageState,
    /// For a message relayed from another instance: its producer id there and its sequence
    /// number in that producer's stream (what makes relay delivery exactly-once).
    pub origin: Option<(u64, u64)>,
    /// The whole payload's length.
    pub length: usize,
    /// The payload, or its first bytes in a listing ([`MessageQuery::preview_bytes`]).
    pub payload: Vec<u8>,
}

/// Which buffered messages to list.
#[derive(Debug, Clone, Default)]
pub struct MessageQuery {
    /// Only messages in this state (`None`: all).
    pub state: Option<MessageState>,
    /// Start at this sequence number; else at `since_us`; else the newest `limit` messages.
    pub from_seq: Option<u64>,
    /// Start at the first message stored at or after this time (µs since the Unix epoch).
    pub since_us: Option<u64>,
    /// At most this many (1 ..= [`MAX_PAGE`]).
    pub limit: usize,
    /// Payload bytes kept per message.
    pub preview_bytes: usize,
    /// Only messages whose payload matches (the browser's search). Without a start
    /// (`from_seq`, `since_us`), a search starts at the oldest message.
    pub matching: Option<MessageMatch>,
}

/// A condition on a message's payload: the message browser's search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageMatch {
    /// The payload contains these bytes.
    Contains(Vec<u8>),
    /// An ASTM E1394 field of the first record of a type equals a value: `record` `b'O'`,
    /// `field` 3 is the order record's specimen (sample) id (E1394 numbering: the record type
    /// is field 1).
    AstmField {
        /// The record type.
        record: u8,
        /// The field number.
        field: usize,
        /// The value, whole.
        value: Vec<u8>,
    },
    /// An HL7 v2 field of the first segment of a type equals a value: `MSH` 10 is the
    /// message's own control id (HL7 numbering).
    Hl7Field {
        /// The segment id (`MSH`, `PID`, …).
        segment: String,
        /// The field number.
        field: usize,
        /// The value, whole.
        value: Vec<u8>,
    },
}

impl MessageMatch {
    /// Whether `payload` matches.
    #[must_use]
    pub fn matches(&self, payload: &[u8]) -> bool {
        match self {
            MessageMatch::Contains(needle) => {
                needle.is_empty() || payload.windows(needle.len()).any(|w| w == needle.as_slice())
            }
            MessageMatch::AstmField { record, field, value } => {
                iobp_codec::astm::field(payload, *record, *field) == Some(value.as_slice())
            }
            MessageMatch::Hl7Field { segment, field, value } => {
                iobp_codec::hl7::field(payload, segment, *field) == Some(value.as_slice())
            }
        }
    }
}

/// Messages a search examines per request at most: a search through a large buffer goes on
/// page by page ([`MessagePage::scanned_to`]) instead of holding a request for long.
pub const SEARCH_SCAN: usize = 20_000;

/// Most messages in one page.
pub const MAX_PAGE: usize = 500;

/// A page of buffered messages, in sequence order.
#[derive(Debug, Clone)]
pub struct MessagePage {
    /// Oldest sequence number still retained.
    pub first_seq: u64,
    /// The sequence number the next message will get.
    pub next_seq: u64,
    /// The messages.
    pub messages: Vec<BufferedMessage>,
    /// The first sequence number not examined: where a filtered listing or a search goes on
    /// (`next_seq` when it reached the newest message).
    pub scanned_to: u64,
}

/// The storage budget's figures, as the health page and `/metrics` show them.
#[derive(Debug, Clone, Copy)]
pub struct StorageFigures {
    /// Bytes used by all buffers.
    pub used: u64,
    /// `max_storage_mb` in bytes.
    pub limit: u64,
    /// The limit in force: `max_storage_mb`, or less where the disk has less room.
    pub effective_limit: u64,
    /// The disk, not `max_storage_mb`, bounds the buffers.
    pub disk_bound: bool,
    /// The buffers use 80 % or more of the limit in force.
    pub warning: bool,
}

/// The first sequence number stored at or after `t_us` (binary search; timestamps follow
/// append order).
pub(super) fn seq_at_time(log: &iobp_log::Log, first: u64, next: u64, t_us: u64) -> u64 {
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

fn list(log: &iobp_log::Log, q: &MessageQuery) -> iobp_log::Result<MessagePage> {
    let limit = q.limit.clamp(1, MAX_PAGE);
    let st = log.stats();
    let (first, next) = (st.first_seq, st.next_seq);
    let start = match (q.from_seq, q.since_us) {
        (Some(f), _) => f.max(first),
        (None, Some(t)) => seq_at_time(log, first, next, t),
        (None, None) if q.matching.is_some() => first,
        (None, None) => next.saturating_sub(limit as u64).max(first),
    };
    let mut messages = Vec::new();
    let mut from = start;
    // Scan at most ten pages' worth when filtering by state, more for a search.
    let mut budget = if q.matching.is_some() { SEARCH_SCAN } else { limit * 10 };
    while messages.len() < limit && budget > 0 && from < next {
        let batch = log.read_range(from, limit.max(256).min(budget), 1 << 20)?;
        if batch.is_empty() {
            break;
        }
        for r in batch.iter() {
            from = r.seq + 1;
            budget = budget.saturating_sub(1);
            let state = MessageState::from(log.state_of(r.seq));
            if messages.len() == limit {
                // The page is full: what follows is examined by the next request.
                from = r.seq;
                break;
            }
            if q.state.is_some_and(|w| w != state)
                || q.matching.as_ref().is_some_and(|m| !m.matches(r.payload))
            {
                continue;
            }
            messages.push(BufferedMessage {
                seq: r.seq,
                timestamp_us: r.timestamp_us,
                state,
                origin: r.origin,
                length: r.payload.len(),
                payload: r.payload[..r.payload.len().min(q.preview_bytes)].to_vec(),
            });
        }
    }
    Ok(MessagePage { first_seq: first, next_seq: next, messages, scanned_to: from.max(start) })
}

impl Engine {
    pub(super) fn log_of(&self, id: &str) -> Result<iobp_log::Log, EngineError> {
        read(&self.inner.pairs)
            .get(id)
            .map(|e| e.log.clone())
            .ok_or_else(|| EngineError::NotFound(id.to_string()))
    }

    /// A page of a pair's buffered messages (read from disk, off the async workers).
    pub async fn messages(
        &self,
        id: &str,
        query: MessageQuery,
    ) -> Result<MessagePage, EngineError> {
        let log = self.log_of(id)?;
        blocking(move || list(&log, &query))
            .await
            .map_err(|source| EngineError::Buffer { id: id.to_string(), source })
    }

    /// One buffered message in full.
    pub async fn message(&self, id: &str, seq: u64) -> Result<BufferedMessage, EngineError> {
        let log = self.log_of(id)?;
        let l2 = log.clone();
        let record = blocking(move || l2.get(seq))
            .await
            .map_err(|source| EngineError::Buffer { id: id.to_string(), source })?
            .ok_or_else(|| EngineError::MessageNotFound { id: id.to_string(), seq })?;
        Ok(BufferedMessage {
            seq,
            timestamp_us: record.timestamp_us,
            state: log.state_of(seq).into(),
            origin: record.origin,
            length: record.payload.len(),
            payload: record.payload,
        })
    }

    /// Re-sends a delivered (Done) message: a copy is stored — counted as received and shown
    /// in the source's live view like any message — and delivered after everything already
    /// buffered. Returns the copy's sequence number.
    pub async fn resend(&self, id: &str, seq: u64) -> Result<u64, EngineError> {
        let (log, counters, feed) = {
            let pairs = read(&self.inner.pairs);
            let e = pairs.get(id).ok_or_else(|| EngineError::NotFound(id.to_string()))?;
            (e.log.clone(), e.stats.clone(), e.feed.clone())
        };
        let state = MessageState::from(log.state_of(seq));
        if state == MessageState::Absent {
            return Err(EngineError::MessageNotFound { id: id.to_string(), seq });
        }
        if state != MessageState::Done {
            return Err(EngineError::NotDelivered { seq, state });
        }
        let l2 = log.clone();
        let record = blocking(move || l2.get(seq))
            .await
            .map_err(|source| EngineError::Buffer { id: id.to_string(), source })?
            .ok_or_else(|| EngineError::MessageNotFound { id: id.to_string(), seq })?;
        let new_seq = log.append(&record.payload).await.map_err(|e| match e {
            iobp_log::Error::Full { .. } => {
                EngineError::BufferFull { id: id.to_string(), detail: e.to_string() }
            }
            source => EngineError::Buffer { id: id.to_string(), source },
        })?;
        // Only now, durable: counted as received, so received and sent keep adding up.
        counters.received.fetch_add(1, Relaxed);
        counters.received_bytes.fetch_add(record.payload.len() as u64, Relaxed);
        let origin: Arc<str> = format!("re-send of #{seq}").into();
        feed.record(
            Side::Source,
            Some(&origin),
            std::iter::once((Some(new_seq), record.payload.as_slice())),
        );
        if let Some(trace) = self.trace_of(id) {
            let id = id.to_string();
            let _ = tokio::task::spawn_blocking(move || {
                record_copies((&trace, &id), (&trace, &id), [(seq, new_seq)], "re-send");
            })
            .await;
        }
        Ok(new_seq)
    }

    /// What happened to message `seq` of pair `id`: its trace, oldest event first (see
    /// [`crate::trace`]: persisted, kept as long as the message is retained).
    pub async fn trace(&self, id: &str, seq: u64) -> Result<MessageTrace, EngineError> {
        let trace = self.trace_of(id).ok_or_else(|| EngineError::NotFound(id.to_string()))?;
        tokio::task::spawn_blocking(move || trace.lookup(seq))
            .await
            .map_err(|e| EngineError::Trace(e.to_string()))?
            .map_err(|e| EngineError::Trace(e.to_string()))
    }

    pub(crate) fn trace_of(&self, id: &str) -> Option<std::sync::Arc<crate::trace::PairTrace>> {
        read(&self.inner.pairs).get(id).map(|e| e.trace.clone())
    }

    /// A pair's recent messages on one side, newest first.
    pub fn recent(&self, id: &str, side: Side) -> Option<Vec<FeedEntry>> {
        read(&self.inner.pairs).get(id).map(|e| e.feed.recent(side))
    }

    /// Subscribes to a pair's messages as they pass (a slow subscriber misses some:
    /// `RecvError::Lagged`, rather than holding memory).
    pub fn subscribe(&self, id: &str) -> Option<broadcast::Receiver<FeedEntry>> {
        read(&self.inner.pairs).get(id).map(|e| e.feed.subscribe())
    }

    /// A pair's rejected frames and messages, oldest first.
    pub fn rejections(&self, id: &str) -> Option<Vec<Rejected>> {
        read(&self.inner.pairs).get(id).map(|e| e.stats.rejections())
    }

    /// The storage budget's figures now.
    pub fn storage(&self) -> StorageFigures {
        let b = &self.inner.budget;
        StorageFigures {
            used: b.used(),
            limit: b.limit(),
            effective_limit: b.effective_limit(),
            disk_bound: b.disk_bound(),
            warning: b.is_warning(),
        }
    }
}
