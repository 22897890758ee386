//! One byte-stream connection feeding the buffer (a TCP or TLS client of a `tcp_server` source,
//! the connection of a `tcp_client` source, an open serial port).
//!
//! Per read: deframe, queue the frames into the buffer as one batch, keep reading while up to
//! [`WINDOW`] batches ([`WINDOW_BYTES`] in all) wait for their fdatasync (pipelining), and
//! acknowledge each batch to the sender only once its commit resolved — never before the data
//! is durable.
//!
//! **Answers leave in the order of the messages.** Every batch the sender is owed an answer
//! for waits in one queue: a stored batch until its commit resolves (then ACK), a refused one
//! (buffer full) behind it (then NAK). A byte-ack sender cannot tell which message a 0x06 or
//! 0x15 answers, so a NAK may never overtake an ACK.
//!
//! Full buffer: with acknowledgements each frame is answered with a NAK (MLLP `AE`, or the
//! NAK byte) and counted as refused. **After such a NAK the connection refuses every later
//! frame until that frame is sent again** (the same bytes), or until the connection was quiet
//! — every answer given, nothing received — for [`RESUME_QUIET`]: a sender that pipelines
//! has already sent the frames behind the refused one, and if room came back and they were
//! stored, its retransmission of the refused frame would land after them (go-back-N, as the
//! sender sees it). A stop-and-wait sender sends the refused frame again next and resumes at
//! once. Without them, [`WhenFull::Hold`] keeps the frames, in
//! order, and stops reading until there is room again (TCP backpressure or serial flow control
//! reaches the sender); [`WhenFull::Refuse`] counts and alarms them (a serial line without flow
//! control, which cannot be held back).
//!
//! **Winding down** (the pair stops, is edited or deleted, the process shuts down, the buffer
//! failed): each waiting batch is given until [`WIND_DOWN`] for its commit. What became durable
//! is counted and acknowledged; what did not is never counted as received and is answered with
//! a NAK (or, without acknowledgements, counted as refused, with an error) — the sender sends it
//! again. Frames held for room are counted as refused, never dropped silently.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use iobp_codec::{Decoded, Deframer, FlushReason, Framing};
use iobp_config::{AckSpec, FramingSpec};
use iobp_log::Commit;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::connector::{Ended, Progress, Session};
use crate::side::{IntakeError, SideCtx, SideError, framing_of, sleep_until_opt};
use crate::stats::Side;

/// Batches per connection waiting for their fdatasync while reading continues. Measured
/// (`iobufferpro bench`, 2 cores): 8 gives 3.4–3.7 M msg/s at a peak RSS of 17–19 MB; 16 or
/// 32 (1–2 MiB) give 4.0–4.8 M msg/s — a commit round carries more data per fdatasync — but
/// 20.5–22 MB, over the 20 MB memory target. Memory won.
const WINDOW: usize = 8;
/// ... and at most this many bytes of them, so that large messages (up to
/// `max_message_bytes` each) cannot multiply the memory a connection holds.
const WINDOW_BYTES: u64 = 1024 * 1024;
/// Read buffer growth step.
const READ_CHUNK: usize = 64 * 1024;
/// How often held (buffer full) frames are offered to the buffer again.
const FULL_RETRY: Duration = Duration::from_millis(100);
/// How long a connection that is told to stop waits for the commits of its batches. Below the
/// supervisor's 5 s, after which the task is aborted.
pub(crate) const WIND_DOWN: Duration = Duration::from_secs(3);

/// What to do with frames when the buffer is full and the source does not acknowledge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WhenFull {
    /// Stop reading until there is room: the transport holds the sender back (TCP window,
    /// serial RTS/CTS or XON/XOFF once the driver's input buffer fills).
    Hold,
    /// Keep reading and refuse the frames, counted and alarmed: a serial line without flow
    /// control cannot be held back, and unread bytes would be lost silently in the driver.
    Refuse,
}

/// The session of a byte-stream source on one connection (see the module documentation).
#[derive(Debug, Clone)]
pub(crate) struct StreamIntake {
    pub framing: FramingSpec,
    pub ack: AckSpec,
    /// Close a connection on which nothing arrived for this long (`tcp_server`).
    pub idle_timeout: Option<Duration>,
    pub when_full: WhenFull,
}

impl<S> Session<S> for StreamIntake
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn about(&self, peer: &str) -> String {
        format!("receiving from {peer}")
    }

    async fn run(
        &self,
        ctx: &SideCtx,
        io: S,
        peer: &Arc<str>,
        _progress: &Progress,
    ) -> Result<Ended, SideError> {
        let Some(framing) = framing_of(&self.framing) else {
            // The ASTM link protocol: a dialog with the instrument, not a framing.
            let max = self.framing.max_message_bytes() as usize;
            return super::astm::serve(ctx, io, peer, max, self.idle_timeout).await;
        };
        serve(ctx, io, peer, framing, self).await
    }
}

/// An answer the sender is owed, in the order of its messages.
enum Owed {
    /// Queued into the buffer: counted and acknowledged once its commit resolves.
    Stored {
        commit: Commit,
        /// All frames when acknowledging (the ACK needs them), else the last few for the feed.
        frames: Vec<Bytes>,
        count: u64,
        bytes: u64,
    },
    /// Refused (buffer full): answered with a NAK in turn (acknowledging sources only).
    Refused { frames: Vec<Bytes>, bytes: u64 },
}

impl Owed {
    fn bytes(&self) -> u64 {
        match self {
            Owed::Stored { bytes, .. } | Owed::Refused { bytes, .. } => *bytes,
        }
    }
}

/// A connection that refused a frame (buffer full) accepts again without seeing it again
/// once it was this quiet (the sender gave the frame up).
pub(crate) const RESUME_QUIET: Duration = Duration::from_secs(1);

/// Per-connection state of the intake side.
struct Intake {
    /// The first frame refused since the connection last accepted: later frames are refused
    /// until it comes again (see the module documentation).
    refusing: Option<Bytes>,
    /// The current read came after a quiet spell (every answer given, nothing received for
    /// [`RESUME_QUIET`]).
    quiet: bool,
    owed: VecDeque<Owed>,
    /// Frames waiting for room (`WhenFull::Hold`), oldest first; nothing is read meanwhile.
    held: Vec<Bytes>,
    /// When held frames are offered again.
    retry_at: Option<Instant>,
    /// Holding the sender back since the last successful intake (reported once).
    holding: bool,
    acks: AckWriter,
    when_full: WhenFull,
}

impl Intake {
    fn owed_bytes(&self) -> u64 {
        self.owed.iter().map(Owed::bytes).sum()
    }
}

/// Serves one connection until it ends. Errors are I/O errors and a broken buffer.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    ctx: &SideCtx,
    io: S,
    peer: &Arc<str>,
    framing: Framing,
    intake: &StreamIntake,
) -> Result<Ended, SideError> {
    let StreamIntake { framing: spec, ack, idle_timeout, when_full } = intake;
    let (idle_timeout, when_full) = (*idle_timeout, *when_full);
    let (mut rd, mut wr) = tokio::io::split(io);
    let mut deframer = Deframer::new(framing, spec.max_message_bytes() as usize);
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut st = Intake {
        refusing: None,
        quiet: false,
        owed: VecDeque::new(),
        held: Vec::new(),
        retry_at: None,
        holding: false,
        acks: AckWriter::new(ack),
        when_full,
    };
    let mut gap_deadline: Option<Instant> = None;
    let mut last_activity = Instant::now();
    let mut eof = false;
    loop {
        if eof && st.held.is_empty() && st.owed.is_empty() {
            return Ok(Ended::PeerClosed);
        }
        let can_read =
            !eof && st.held.is_empty() && st.owed.len() < WINDOW && st.owed_bytes() < WINDOW_BYTES;
        let idle_at = idle_timeout
            .filter(|_| st.owed.is_empty() && st.held.is_empty())
            .map(|t| last_activity + t);
        let step: Result<(), SideError> = tokio::select! {
            biased;
            () = ctx.cancel.cancelled() => {
                incomplete(ctx, &buf, "incomplete frame when the pair stopped", peer);
                wind_down(ctx, &mut st, &mut wr, peer, "the pair stopped").await;
                return Ok(Ended::Cancelled);
            }
            done = next_answer(&mut st.owed) => answer(ctx, &mut st, done, &mut wr, peer).await,
            () = sleep_until_opt(st.retry_at) => {
                st.retry_at = None;
                let frames = std::mem::take(&mut st.held);
                submit(ctx, frames, &mut st).await
            }
            () = sleep_until_opt(gap_deadline) => {
                gap_deadline = None;
                let frames = drain(ctx, &mut deframer, &mut buf, Some(FlushReason::Idle), peer);
                submit(ctx, frames, &mut st).await
            }
            () = sleep_until_opt(idle_at) => {
                incomplete(ctx, &buf, "incomplete frame when the idle connection was closed", peer);
                return Ok(Ended::IdleTimeout);
            }
            n = rd.read_buf(&mut buf), if can_read => {
                match n {
                    Err(e) => Err(SideError::Peer(format!("read: {e}"))),
                    Ok(n) => {
                        st.quiet = st.owed.is_empty() && last_activity.elapsed() >= RESUME_QUIET;
                        last_activity = Instant::now();
                        let reason = if n == 0 { eof = true; Some(FlushReason::Eof) } else { None };
                        let frames = drain(ctx, &mut deframer, &mut buf, reason, peer);
                        gap_deadline = match deframer.idle_gap() {
                            Some(gap) if !buf.is_empty() && !eof => Some(Instant::now() + gap),
                            _ => None,
                        };
                        let r = submit(ctx, frames, &mut st).await;
                        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
                            buf.reserve(READ_CHUNK);
                        }
                        r
                    }
                }
            }
        };
        if let Err(e) = step {
            // Whatever ended the connection, answer what can be answered, in order.
            wind_down(ctx, &mut st, &mut wr, peer, "the connection ended").await;
            return Err(e);
        }
    }
}

/// Resolves when the oldest owed answer can be given: a stored batch's commit resolved, or a
/// refused batch is at the front.
async fn next_answer(owed: &mut VecDeque<Owed>) -> iobp_log::Result<()> {
    match owed.front_mut() {
        Some(Owed::Stored { commit, .. }) => commit.await.map(|_| ()),
        Some(Owed::Refused { .. }) => Ok(()),
        None => std::future::pending().await,
    }
}

/// Gives the oldest owed answer.
async fn answer<W: AsyncWrite + Unpin>(
    ctx: &SideCtx,
    st: &mut Intake,
    done: iobp_log::Result<()>,
    wr: &mut W,
    peer: &Arc<str>,
) -> Result<(), SideError> {
    let Some(front) = st.owed.pop_front() else { return Ok(()) };
    match (front, done) {
        (Owed::Stored { commit, frames, count, bytes }, Ok(())) => {
            complete(ctx, &commit, &frames, count, bytes, &mut st.acks, peer);
        }
        (Owed::Stored { frames, count, .. }, Err(e)) => {
            not_stored(ctx, &frames, count, &mut st.acks, &format!("the buffer failed: {e}"));
            st.acks.flush(wr).await?;
            return Err(SideError::Buffer { doing: "buffer failed", source: e });
        }
        (Owed::Refused { frames, .. }, _) => {
            for f in &frames {
                st.acks.nak(f, "buffer full, retry later");
            }
        }
    }
    st.acks.flush(wr).await
}

/// The connection is ending: held frames are counted as refused; each waiting batch gets
/// until [`WIND_DOWN`] for its commit and is acknowledged only if it became durable.
async fn wind_down<W: AsyncWrite + Unpin>(
    ctx: &SideCtx,
    st: &mut Intake,
    wr: &mut W,
    peer: &Arc<str>,
    why: &str,
) {
    if !st.held.is_empty() {
        let n = st.held.len() as u64;
        ctx.stats.refused.fetch_add(n, Ordering::Relaxed);
        ctx.error(
            Side::Source,
            format!("{n} message(s) held while the buffer was full were not stored: {why}"),
        );
        st.held.clear();
    }
    let deadline = Instant::now() + WIND_DOWN;
    while let Some(o) = st.owed.pop_front() {
        match o {
            Owed::Stored { mut commit, frames, count, bytes } => {
                match tokio::time::timeout_at(deadline, &mut commit).await {
                    Ok(Ok(_)) => complete(ctx, &commit, &frames, count, bytes, &mut st.acks, peer),
                    Ok(Err(e)) => {
                        let reason = format!("not stored ({why}; the buffer failed: {e})");
                        not_stored(ctx, &frames, count, &mut st.acks, &reason);
                    }
                    Err(_) => {
                        let reason = format!(
                            "not confirmed durable within {} s ({why}); not acknowledged, it may \
                             still be delivered",
                            WIND_DOWN.as_secs()
                        );
                        not_stored(ctx, &frames, count, &mut st.acks, &reason);
                        ctx.count_if_stored_later(
                            async move { commit.await.map(Some) },
                            count,
                            bytes,
                        );
                    }
                }
            }
            Owed::Refused { frames, .. } => {
                for f in &frames {
                    st.acks.nak(f, "buffer full, retry later");
                }
            }
        }
        // A peer that does not read its answers cannot hold the pair's stop up.
        if tokio::time::timeout_at(deadline, st.acks.flush(wr)).await.is_err() {
            st.acks.discard();
        }
    }
}

/// Frames that did not become durable: never counted as received; answered with a NAK when the source
/// acknowledges, else counted as refused. Never silent.
fn not_stored(ctx: &SideCtx, frames: &[Bytes], count: u64, acks: &mut AckWriter, why: &str) {
    ctx.stats.refused.fetch_add(count, Ordering::Relaxed);
    if acks.enabled() {
        for f in frames {
            acks.nak(f, "not stored, send again");
        }
        ctx.error(Side::Source, format!("{count} message(s) answered with a NAK: {why}"));
    } else {
        ctx.error(Side::Source, format!("{count} message(s) {why}"));
    }
}

/// Bytes of a frame that will never complete because we close the connection: reported as a
/// rejection, never dropped silently.
fn incomplete(ctx: &SideCtx, buf: &BytesMut, why: &'static str, peer: &Arc<str>) {
    if buf.is_empty() {
        return;
    }
    let r = iobp_codec::Rejection {
        kind: iobp_codec::RejectKind::Malformed(why),
        len: buf.len() as u64,
        preview: buf[..buf.len().min(iobp_codec::PREVIEW_BYTES)].to_vec(),
    };
    ctx.rejected_frame(&r, Some(peer));
}

/// Takes every complete frame out of `buf`; rejected frames are reported.
fn drain(
    ctx: &SideCtx,
    deframer: &mut Deframer,
    buf: &mut BytesMut,
    flush: Option<FlushReason>,
    peer: &Arc<str>,
) -> Vec<Bytes> {
    let mut frames = Vec::new();
    let mut take = |d: Decoded| match d {
        Decoded::Frame(f) => frames.push(f),
        Decoded::Rejected(r) => ctx.rejected_frame(&r, Some(peer)),
    };
    while let Some(d) = deframer.decode(buf) {
        take(d);
    }
    if let Some(reason) = flush {
        while let Some(d) = deframer.flush(buf, reason) {
            take(d);
        }
    }
    frames
}

/// Queues frames into the buffer, or handles a full buffer. Frames arriving while others are
/// held go behind them, so order is kept.
async fn submit(ctx: &SideCtx, frames: Vec<Bytes>, st: &mut Intake) -> Result<(), SideError> {
    if frames.is_empty() {
        return Ok(());
    }
    if !st.held.is_empty() {
        st.held.extend(frames);
        return Ok(());
    }
    let mut frames = frames;
    if let Some(first) = &st.refusing {
        // Refusing since a NAK: until the refused frame comes again, or after a quiet spell.
        let resume_at = if std::mem::take(&mut st.quiet) {
            Some(0)
        } else {
            frames.iter().position(|f| f == first)
        };
        let rest = match resume_at {
            Some(i) => frames.split_off(i),
            None => Vec::new(),
        };
        if !frames.is_empty() {
            let (count, bytes) = (frames.len() as u64, frames.iter().map(|f| f.len() as u64).sum());
            ctx.stats.refused.fetch_add(count, Ordering::Relaxed);
            st.owed.push_back(Owed::Refused { frames, bytes });
        }
        if resume_at.is_none() {
            return Ok(());
        }
        st.refusing = None;
        frames = rest;
        if frames.is_empty() {
            return Ok(());
        }
    }
    let count = frames.len() as u64;
    let bytes = frames.iter().map(|f| f.len() as u64).sum();
    match ctx.intake(&frames).await {
        Ok(commit) => {
            st.holding = false;
            let frames = if st.acks.enabled() { frames } else { tail(frames) };
            st.owed.push_back(Owed::Stored { commit, frames, count, bytes });
            Ok(())
        }
        Err(IntakeError::Full(why)) if st.acks.enabled() => {
            ctx.stats.refused.fetch_add(count, Ordering::Relaxed);
            ctx.error(Side::Source, format!("{why}: refused {count} message(s) with a NAK"));
            st.refusing = frames.first().cloned();
            st.owed.push_back(Owed::Refused { frames, bytes });
            Ok(())
        }
        Err(IntakeError::Full(why)) if st.when_full == WhenFull::Refuse => {
            ctx.stats.refused.fetch_add(count, Ordering::Relaxed);
            ctx.error(
                Side::Source,
                format!(
                    "{why}: refused {count} message(s); this source has no flow control to hold \
                     the sender back"
                ),
            );
            Ok(())
        }
        Err(IntakeError::Full(why)) => {
            if !std::mem::replace(&mut st.holding, true) {
                ctx.error(
                    Side::Source,
                    format!("{why}: holding the sender back until there is room"),
                );
            }
            st.held = frames;
            st.retry_at = Some(Instant::now() + FULL_RETRY);
            Ok(())
        }
        Err(IntakeError::Broken(e)) => {
            ctx.stats.refused.fetch_add(count, Ordering::Relaxed);
            if st.acks.enabled() {
                st.owed.push_back(Owed::Refused { frames, bytes });
            }
            ctx.error(
                Side::Source,
                format!("buffer unavailable, {count} message(s) not stored: {e}"),
            );
            Err(SideError::Buffer { doing: "buffer unavailable", source: e })
        }
    }
}

/// The last few frames, for the Live View.
fn tail(mut frames: Vec<Bytes>) -> Vec<Bytes> {
    let n = frames.len();
    if n > 8 {
        frames.drain(..n - 8);
    }
    frames
}

/// A batch is durable: count it, show it, queue its acknowledgement.
fn complete(
    ctx: &SideCtx,
    commit: &Commit,
    frames: &[Bytes],
    count: u64,
    bytes: u64,
    acks: &mut AckWriter,
    peer: &Arc<str>,
) {
    let first_seq = *commit.seqs().start();
    let shown_from = first_seq + count - frames.len() as u64;
    ctx.accepted_counts(count, bytes, frames, shown_from, Some(peer));
    if acks.enabled() {
        for f in frames {
            acks.ack(f);
        }
    }
}

/// Builds acknowledgements into one buffer and writes them together.
pub(crate) struct AckWriter {
    mode: AckSpec,
    out: Vec<u8>,
    next_id: u64,
}

impl AckWriter {
    pub(crate) fn new(mode: &AckSpec) -> Self {
        AckWriter { mode: mode.clone(), out: Vec::new(), next_id: 0 }
    }

    pub(crate) fn enabled(&self) -> bool {
        !matches!(self.mode, AckSpec::None)
    }

    pub(crate) fn ack(&mut self, frame: &[u8]) {
        self.answer(frame, true, None);
    }

    pub(crate) fn nak(&mut self, frame: &[u8], why: &str) {
        self.answer(frame, false, Some(why));
    }

    /// Drops answers that could not be written.
    pub(crate) fn discard(&mut self) {
        self.out.clear();
    }

    fn answer(&mut self, frame: &[u8], ok: bool, why: Option<&str>) {
        match &self.mode {
            AckSpec::None => {}
            AckSpec::Byte { ack, nak, .. } => self.out.push(if ok { *ack } else { *nak }),
            AckSpec::Mllp { .. } => {
                use iobp_codec::hl7::{AckCode, build_ack};
                self.next_id += 1;
                let code = if ok { AckCode::AA } else { AckCode::AE };
                let id = format!("IOBP{}{:06}", hl7_time_compact(), self.next_id % 1_000_000);
                let msg = build_ack(frame, code, why, &hl7_timestamp(), &id);
                // `build_ack` escapes control bytes, so an ACK always frames; were it ever
                // refused, the sender would wait for an answer in vain: say so.
                if let Err(e) = iobp_codec::Encoder::new(iobp_codec::Framing::mllp())
                    .encode(&msg, &mut self.out)
                {
                    tracing::error!("an HL7 acknowledgement could not be framed: {e}");
                }
            }
        }
    }

    pub(crate) async fn flush<W: AsyncWrite + Unpin>(
        &mut self,
        wr: &mut W,
    ) -> Result<(), SideError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let failed = |e: std::io::Error| SideError::Peer(format!("sending acknowledgement: {e}"));
        wr.write_all(&self.out).await.map_err(failed)?;
        wr.flush().await.map_err(failed)?;
        self.out.clear();
        Ok(())
    }
}

/// HL7 timestamp (`YYYYMMDDHHMMSS`, UTC).
pub(crate) fn hl7_timestamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(i64::try_from(days).unwrap_or(0));
    format!("{y:04}{m:02}{d:02}{:02}{:02}{:02}", rem / 3600, rem / 60 % 60, rem % 60)
}

fn hl7_time_compact() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("{secs:x}")
}

/// Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn civil_dates() {
        assert_eq!(super::civil_from_days(0), (1970, 1, 1));
        assert_eq!(super::civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(super::civil_from_days(11_016), (2000, 2, 29));
    }
}
