//! What a running source or destination task holds, why one of its connections can fail
//! ([`SideError`]), and the conversions from the configuration's framing and acknowledgement
//! settings.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use iobp_codec::{Framing, RejectKind, Rejection};
use iobp_config::{BackoffSpec, FramingSpec};
use iobp_log::{Commit, Log};
use tokio_util::sync::CancellationToken;

use crate::feed::LiveFeed;
use crate::stats::{PairStats, Rejected, Side, hex_preview};
use crate::trace::{PairTrace, TraceEvent, TraceKind};

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
    /// The dead-letter policy: the parked-message log and after how many explicit refusals
    /// of the same message it is parked (`None`: retried forever, strict FIFO).
    pub parked: Option<(Log, u32)>,
    /// What happened to each message: the pair's trace.
    pub trace: Arc<PairTrace>,
    /// A destination with backups: which one this is (`backup destination 1 (tcp_client)`);
    /// `None` for a pair without backups.
    pub route: Option<Arc<str>>,
}

/// Why frames could not be queued into the buffer.
#[derive(Debug)]
pub(crate) enum IntakeError {
    /// Storage is full: hold the sender back, NAK, or refuse.
    Full(String),
    /// The buffer failed or closed; the pair is being restarted.
    Broken(iobp_log::Error),
}

/// Why a side's connection, or the session on it, failed. The connector loop decides by the
/// kind ([`SideError::next`]), never by the text; the text is what operators read (status
/// line, last error), the peer named by the loop where the fault is the peer's.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SideError {
    /// The peer (a serial port included): connecting, reading or writing failed, it went
    /// away mid-exchange or stopped answering in time, or it refused us. Retried after the
    /// backoff, on a new connection.
    #[error("{0}")]
    Peer(String),
    /// The durable buffer failed under the session: never the peer's fault, and never
    /// reported as one. A failed or closed log waits for the engine, which reopens it and
    /// starts the pair's sides again; other buffer errors (a read error) are retried after
    /// the backoff.
    #[error("{doing}: {source}")]
    Buffer {
        /// What the side was doing with the buffer ("reading the buffer").
        doing: &'static str,
        /// The buffer's error.
        #[source]
        source: iobp_log::Error,
    },
    /// TLS: the side's certificate files, or the handshake. Retried: files may be replaced and
    /// certificates renewed without an edit.
    #[error("{0}")]
    Tls(String),
    /// The peer broke the protocol: a garbled acknowledgement, a bad relay frame, an answer
    /// that makes no sense. Retried on a new connection, which starts from a known state.
    #[error("{0}")]
    Protocol(String),
    /// A credentials file of the side (a NATS `.creds` file) cannot be read or used. Retried:
    /// the file may be replaced (rotated) without an edit. The text names the file, never
    /// quotes it.
    #[error("{0}")]
    Credentials(String),
    /// The side's settings cannot work (a relay `url` without host, no credentials, a path
    /// that is no serial port): reported once, and nothing is tried again until the pair is
    /// edited (which restarts the side).
    #[error("{0}")]
    Config(String),
}

/// What the connector loop does after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Wait the backoff, then open a new connection.
    Retry,
    /// Show the failure and wait for the pair to stop (an edit, or the engine healing the
    /// buffer, starts the side again).
    WaitForStop,
}

impl SideError {
    /// A buffer error met while `doing` something, as a side error (for `map_err`).
    pub(crate) fn buffer(doing: &'static str) -> impl FnOnce(iobp_log::Error) -> SideError {
        move |source| SideError::Buffer { doing, source }
    }

    /// What the connector loop does after this error.
    pub(crate) fn next(&self) -> Next {
        match self {
            SideError::Config(_)
            | SideError::Buffer {
                source: iobp_log::Error::Failed(_) | iobp_log::Error::Closed,
                ..
            } => Next::WaitForStop,
            SideError::Peer(_)
            | SideError::Buffer { .. }
            | SideError::Tls(_)
            | SideError::Credentials(_)
            | SideError::Protocol(_) => Next::Retry,
        }
    }

    /// Whether the fault is the peer's (peer, TLS and protocol faults): messages about those
    /// name the peer; a buffer fault or the side's settings are nobody's at the other end.
    pub(crate) fn is_the_peers(&self) -> bool {
        matches!(self, SideError::Peer(_) | SideError::Tls(_) | SideError::Protocol(_))
    }

    /// The same error with `what` in front of its text ("/dev/ttyUSB0: …").
    #[must_use]
    pub(crate) fn within(self, what: &str) -> SideError {
        match self {
            SideError::Peer(m) => SideError::Peer(format!("{what}: {m}")),
            SideError::Tls(m) => SideError::Tls(format!("{what}: {m}")),
            SideError::Protocol(m) => SideError::Protocol(format!("{what}: {m}")),
            SideError::Credentials(m) => SideError::Credentials(format!("{what}: {m}")),
            SideError::Config(m) => SideError::Config(format!("{what}: {m}")),
            buffer @ SideError::Buffer { .. } => buffer,
        }
    }
}

impl SideCtx {
    pub(crate) fn error(&self, side: Side, message: impl Into<String>) {
        self.stats.error(&self.pair, side, message);
    }

    /// Hands the next Pending records (at most `records`, about `bytes`) to a destination in
    /// `batch`. Damaged records are reported once and skipped: `Ok(false)`, read again (the
    /// next read continues after the damage; a relay receiver sees a gap in the numbers). A
    /// read error can repeat: the connector loop backs off, or waits for the engine if the
    /// buffer failed or closed.
    pub(crate) fn next_batch(
        &self,
        batch: &mut iobp_log::Batch,
        records: usize,
        bytes: usize,
    ) -> Result<bool, SideError> {
        match self.log.read_batch_into(batch, records, bytes) {
            Ok(()) => Ok(true),
            Err(iobp_log::Error::Corrupt(c)) => {
                self.error(Side::Destination, format!("buffer damage skipped: {c}"));
                Ok(false)
            }
            Err(e) => Err(SideError::Buffer { doing: "reading the buffer", source: e }),
        }
    }

    /// Queues frames into the buffer, waiting while the append queue is full. The frames are
    /// accepted only once the returned commit resolves.
    pub(crate) async fn intake(&self, frames: &[Bytes]) -> Result<Commit, IntakeError> {
        let appended = self.log.append_queued(frames).await;
        self.intake_outcome(appended)
    }

    /// Like [`SideCtx::intake`], for an idempotent producer `origin` whose records carry
    /// increasing tags: a record whose tag the buffer already holds is skipped as a duplicate
    /// (see [`iobp_log::Log::try_append_tagged`]).
    pub(crate) async fn intake_tagged(
        &self,
        origin: u64,
        records: &[(u64, Bytes)],
    ) -> Result<iobp_log::TaggedAppend, IntakeError> {
        let appended = self.log.append_tagged_queued(origin, records).await;
        self.intake_outcome(appended)
    }

    /// A full buffer is shown (and cleared once an append succeeds) and told apart from a
    /// broken one.
    fn intake_outcome<T>(&self, appended: iobp_log::Result<T>) -> Result<T, IntakeError> {
        match appended {
            Ok(a) => {
                self.stats.clear_full();
                Ok(a)
            }
            Err(iobp_log::Error::Full { scope, used, limit, needed }) => {
                self.stats.set_full(needed);
                Err(IntakeError::Full(format!(
                    "buffer full ({scope} limit: {used} of {limit} bytes used)"
                )))
            }
            Err(e) => Err(IntakeError::Broken(e)),
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
        // The shown frames are the batch's last: the batch ends where they end.
        if count > 0 {
            let last = (first_shown_seq + shown.len() as u64).saturating_sub(1);
            self.trace_stored((last + 1).saturating_sub(count), last, peer);
        }
        let items =
            shown.iter().enumerate().map(|(i, f)| (Some(first_shown_seq + i as u64), f.as_ref()));
        self.feed.record(Side::Source, peer, items);
    }

    /// Messages `first..=last` are durable: received from `peer`.
    pub(crate) fn trace_stored(&self, first: u64, last: u64, peer: Option<&Arc<str>>) {
        let mut ev = TraceEvent::new(TraceKind::Stored, first, last);
        ev.peer = peer.map(ToString::to_string);
        self.trace.record(ev);
    }

    /// A destination's event about messages `first..=last`: which destination (with backups),
    /// which receiver, its answer, the error.
    pub(crate) fn trace_delivery(
        &self,
        kind: TraceKind,
        (first, last): (u64, u64),
        peer: Option<&str>,
        ack: Option<String>,
        err: Option<String>,
    ) {
        let mut ev = TraceEvent::new(kind, first, last);
        ev.peer = peer.map(ToString::to_string);
        ev.route = self.route.as_deref().map(ToString::to_string);
        ev.ack = ack;
        ev.err = err;
        self.trace.record(ev);
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

    /// A batch whose commit the source stopped waiting for (its session ended and the commit
    /// took longer than the wind-down): it was not acknowledged, yet if the commit still
    /// completes the messages are in the buffer and will be delivered — so they are counted
    /// as received then, or the pair's accounting would hold stored messages counted nowhere.
    /// They stay counted as refused too: that is what the sender was told.
    pub(crate) fn count_if_stored_later(
        &self,
        commit: impl std::future::Future<
            Output = iobp_log::Result<Option<std::ops::RangeInclusive<u64>>>,
        > + Send
        + 'static,
        count: u64,
        bytes: u64,
    ) {
        use std::sync::atomic::Ordering::Relaxed;
        let (stats, trace) = (self.stats.clone(), self.trace.clone());
        // A failed or closed buffer resolves the commit with an error, so this ends.
        tokio::spawn(async move {
            if let Ok(seqs) = commit.await {
                stats.received.fetch_add(count, Relaxed);
                stats.received_bytes.fetch_add(bytes, Relaxed);
                if let Some(seqs) = seqs {
                    let mut ev = TraceEvent::new(TraceKind::Stored, *seqs.start(), *seqs.end());
                    ev.err = Some(
                        "durable only after the source stopped waiting: the sender was told it \
                         was not stored"
                            .into(),
                    );
                    trace.record(ev);
                }
            }
        });
    }
}

/// The codec's framing for a configured one; `None` for the ASTM link protocol, which is a
/// dialog rather than a framing (its sessions are [`crate::source::astm`] and
/// [`crate::destination::astm`]).
pub(crate) fn framing_of(spec: &FramingSpec) -> Option<Framing> {
    Some(match spec {
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
        FramingSpec::Astm { .. } => return None,
    })
}

/// Sleeps until `at`; never resolves without one (a `select!` branch for an optional timer).
pub(crate) async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Sleeps for `d` unless cancelled first; returns false if cancelled.
pub(crate) async fn pause(cancel: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        () = cancel.cancelled() => false,
        () = tokio::time::sleep(d) => true,
    }
}
