//! What a running source or destination task holds, and the conversions from the
//! configuration's framing and acknowledgement settings.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use iobp_codec::{Framing, RejectKind, Rejection};
use iobp_config::{BackoffSpec, FramingSpec};
use iobp_log::{Commit, Log};
use tokio_util::sync::CancellationToken;

use crate::feed::LiveFeed;
use crate::stats::{PairStats, Rejected, Side, hex_preview};

/// Everything one side's task needs.
#[derive(Debug, Clone)]
pub(crate) struct SideCtx {
    pub pair: Arc<str>,
    pub log: Log,
    pub stats: Arc<PairStats>,
    pub feed: Arc<LiveFeed>,
    pub cancel: CancellationToken,
    pub retry: BackoffSpec,
    /// Where relay connections opened by remote instances are handed to.
    pub relay_hub: Arc<crate::relay::RelayHub>,
}

/// Why frames could not be queued into the buffer.
#[derive(Debug)]
pub(crate) enum IntakeError {
    /// Storage is full: hold the sender back, NAK, or refuse.
    Full(String),
    /// The buffer failed or closed; the pair is being restarted.
    Broken(String),
}

impl SideCtx {
    pub(crate) fn error(&self, side: Side, message: impl Into<String>) {
        self.stats.error(&self.pair, side, message);
    }

    /// Queues frames into the buffer, waiting while the append queue is full. The frames are
    /// accepted only once the returned commit resolves.
    pub(crate) async fn intake(&self, frames: &[Bytes]) -> Result<Commit, IntakeError> {
        match self.log.append_queued(frames).await {
            Ok(c) => {
                self.stats.clear_full();
                Ok(c)
            }
            Err(iobp_log::Error::Full { scope, used, limit, needed }) => {
                self.stats.set_full(needed);
                Err(IntakeError::Full(format!(
                    "buffer full ({scope} limit: {used} of {limit} bytes used)"
                )))
            }
            Err(e) => Err(IntakeError::Broken(e.to_string())),
        }
    }

    /// Counts `count` messages of `bytes` payload bytes that became durable, and shows
    /// `shown` (the last of them, starting at sequence number `first_shown_seq`) in the feed.
    pub(crate) fn accepted_counts(
        &self,
        count: u64,
        bytes: u64,
        shown: &[Bytes],
        first_shown_seq: u64,
        peer: Option<&Arc<str>>,
    ) {
        use std::sync::atomic::Ordering::Relaxed;
        self.stats.received.fetch_add(count, Relaxed);
        self.stats.received_bytes.fetch_add(bytes, Relaxed);
        let items =
            shown.iter().enumerate().map(|(i, f)| (Some(first_shown_seq + i as u64), f.as_ref()));
        self.feed.record(Side::Source, peer, items);
    }

    /// Keeps and logs a frame the source's framing rejected.
    pub(crate) fn rejected_frame(&self, r: &Rejection, peer: Option<&Arc<str>>) {
        let reason = match r.kind {
            RejectKind::Oversize => "oversize frame (longer than max_message_bytes)".to_string(),
            RejectKind::Malformed(why) => format!("malformed frame: {why}"),
        };
        self.stats.reject(
            &self.pair,
            Rejected {
                at: SystemTime::now(),
                side: Side::Source,
                reason,
                len: r.len,
                preview: hex_preview(&r.preview),
                seq: None,
                peer: peer.map(ToString::to_string),
            },
        );
    }
}

/// The codec's framing for a configured one.
pub(crate) fn framing_of(spec: &FramingSpec) -> Framing {
    match spec {
        FramingSpec::Raw { .. } => Framing::Raw,
        FramingSpec::Line { delimiter, .. } => Framing::line(delimiter.as_bytes()),
        FramingSpec::Mllp { .. } => Framing::mllp(),
        FramingSpec::StxEtx { .. } => Framing::stx_etx(),
        FramingSpec::LengthPrefixed { length_bytes, .. } => {
            Framing::LengthPrefixed { width: *length_bytes }
        }
        FramingSpec::Delimited { start, end, .. } => {
            Framing::Delimited { start: start.as_bytes().to_vec(), end: end.as_bytes().to_vec() }
        }
        FramingSpec::IdleGap { gap_ms, .. } => {
            Framing::IdleGap { gap: Duration::from_millis(*gap_ms) }
        }
    }
}

/// Sleeps for `d` unless cancelled first; returns false if cancelled.
pub(crate) async fn pause(cancel: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        () = cancel.cancelled() => false,
        () = tokio::time::sleep(d) => true,
    }
}
