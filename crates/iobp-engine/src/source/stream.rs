//! One byte-stream connection feeding the buffer (a TCP or TLS client of a `tcp_server` source,
//! the connection of a `tcp_client` source, an open serial port).
//!
//! Per read: deframe, queue the frames into the buffer as one batch, keep reading while up to
//! [`WINDOW`] batches ([`WINDOW_BYTES`] in all) wait for their fdatasync (pipelining), and
//! acknowledge each batch to the sender only once its commit resolved — never before the data
//! is durable.
//!
//! Full buffer: with acknowledgements each frame is answered with a NAK (MLLP `AE`, or the
//! NAK byte) and counted as refused. Without them, [`WhenFull::Hold`] keeps the frames and
//! stops reading until there is room again (TCP backpressure or serial flow control reaches
//! the sender); [`WhenFull::Refuse`] counts and alarms them (a serial line without flow
//! control, which cannot be held back).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use iobp_codec::{Decoded, Deframer, FlushReason};
use iobp_config::{AckSpec, FramingSpec};
use iobp_log::Commit;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::side::{IntakeError, SideCtx, framing_of};
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
/// How often a held (buffer full) batch is retried.
const FULL_RETRY: Duration = Duration::from_millis(250);

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

/// How the connection ended.
#[derive(Debug)]
pub(crate) enum Ended {
    /// The peer closed it.
    PeerClosed,
    /// The pair is stopping.
    Cancelled,
    /// It was idle for longer than the idle timeout.
    IdleTimeout,
}

struct Waiting {
    commit: Commit,
    /// All frames when acknowledging (the ACK needs them), else the last few for the feed.
    frames: Vec<Bytes>,
    count: u64,
    bytes: u64,
}

/// Serves one connection until it ends. Errors are I/O errors and a broken buffer.
pub(crate) async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    ctx: &SideCtx,
    io: S,
    peer: &Arc<str>,
    framing: &FramingSpec,
    ack: &AckSpec,
    idle_timeout: Option<Duration>,
    when_full: WhenFull,
) -> Result<Ended, String> {
    let (mut rd, mut wr) = tokio::io::split(io);
    let mut deframer = Deframer::new(framing_of(framing), framing.max_message_bytes() as usize);
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut waiting: VecDeque<Waiting> = VecDeque::new();
    let mut held: Option<Vec<Bytes>> = None;
    let mut gap_deadline: Option<Instant> = None;
    let mut last_activity = Instant::now();
    let mut eof = false;
    let mut acks = AckWriter::new(ack);
    loop {
        if eof && held.is_none() && waiting.is_empty() {
            return Ok(Ended::PeerClosed);
        }
        let can_read = !eof
            && held.is_none()
            && waiting.len() < WINDOW
            && waiting.iter().map(|w| w.bytes).sum::<u64>() < WINDOW_BYTES;
        let retry_at = held.as_ref().map(|_| Instant::now() + FULL_RETRY);
        let idle_at = idle_timeout
            .filter(|_| waiting.is_empty() && held.is_none())
            .map(|t| last_activity + t);
        tokio::select! {
            biased;
            () = ctx.cancel.cancelled() => {
                incomplete(ctx, &buf, "incomplete frame when the pair stopped", peer);
                // Let batches already queued finish, so their senders get their acks.
                let _ = tokio::time::timeout(Duration::from_secs(2), async {
                    while let Some(w) = waiting.pop_front() {
                        complete(ctx, w, &mut acks, &mut wr, peer).await?;
                    }
                    Ok::<(), String>(())
                }).await;
                return Ok(Ended::Cancelled);
            }
            done = first_commit(&mut waiting) => {
                let w = waiting.pop_front().expect("first_commit resolves only with a waiting batch");
                match done {
                    Ok(_) => complete(ctx, w, &mut acks, &mut wr, peer).await?,
                    Err(e) => return Err(format!("buffer failed: {e}")),
                }
            }
            () = sleep_until_opt(retry_at) => {
                if let Some(frames) = held.take() {
                    submit(ctx, frames, &mut waiting, &mut held, &mut acks, &mut wr, when_full).await?;
                }
            }
            () = sleep_until_opt(gap_deadline) => {
                gap_deadline = None;
                let frames = drain(ctx, &mut deframer, &mut buf, Some(FlushReason::Idle), peer);
                submit(ctx, frames, &mut waiting, &mut held, &mut acks, &mut wr, when_full).await?;
            }
            () = sleep_until_opt(idle_at) => {
                incomplete(ctx, &buf, "incomplete frame when the idle connection was closed", peer);
                return Ok(Ended::IdleTimeout);
            }
            n = rd.read_buf(&mut buf), if can_read => {
                let n = n.map_err(|e| format!("read: {e}"))?;
                last_activity = Instant::now();
                let reason = if n == 0 { eof = true; Some(FlushReason::Eof) } else { None };
                let frames = drain(ctx, &mut deframer, &mut buf, reason, peer);
                gap_deadline = match deframer.idle_gap() {
                    Some(gap) if !buf.is_empty() && !eof => Some(Instant::now() + gap),
                    _ => None,
                };
                submit(ctx, frames, &mut waiting, &mut held, &mut acks, &mut wr, when_full).await?;
                if buf.capacity() - buf.len() < READ_CHUNK / 4 {
                    buf.reserve(READ_CHUNK);
                }
            }
        }
    }
}

async fn first_commit(
    waiting: &mut VecDeque<Waiting>,
) -> iobp_log::Result<std::ops::RangeInclusive<u64>> {
    match waiting.front_mut() {
        Some(w) => (&mut w.commit).await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
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

/// Queues frames into the buffer, or handles a full buffer.
async fn submit<W: AsyncWrite + Unpin>(
    ctx: &SideCtx,
    frames: Vec<Bytes>,
    waiting: &mut VecDeque<Waiting>,
    held: &mut Option<Vec<Bytes>>,
    acks: &mut AckWriter,
    wr: &mut W,
    when_full: WhenFull,
) -> Result<(), String> {
    if frames.is_empty() {
        return Ok(());
    }
    match ctx.intake(&frames).await {
        Ok(commit) => {
            let count = frames.len() as u64;
            let bytes = frames.iter().map(|f| f.len() as u64).sum();
            let keep = if acks.enabled() { frames } else { tail(frames) };
            waiting.push_back(Waiting { commit, frames: keep, count, bytes });
            Ok(())
        }
        Err(IntakeError::Full(why)) if acks.enabled() => {
            ctx.stats.refused.fetch_add(frames.len() as u64, Ordering::Relaxed);
            ctx.error(
                Side::Source,
                format!("{why}: refused {} message(s) with a NAK", frames.len()),
            );
            for f in &frames {
                acks.nak(f, "buffer full, retry later");
            }
            acks.flush(wr).await
        }
        Err(IntakeError::Full(why)) if when_full == WhenFull::Refuse => {
            ctx.stats.refused.fetch_add(frames.len() as u64, Ordering::Relaxed);
            ctx.error(
                Side::Source,
                format!(
                    "{why}: refused {} message(s); this source has no flow control to hold \
                     the sender back",
                    frames.len()
                ),
            );
            Ok(())
        }
        Err(IntakeError::Full(why)) => {
            if held.is_none() {
                ctx.error(
                    Side::Source,
                    format!("{why}: holding the sender back until there is room"),
                );
            }
            *held = Some(frames);
            Ok(())
        }
        Err(IntakeError::Broken(e)) => Err(format!("buffer unavailable: {e}")),
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

/// A batch is durable: count it, show it, acknowledge it.
async fn complete<W: AsyncWrite + Unpin>(
    ctx: &SideCtx,
    w: Waiting,
    acks: &mut AckWriter,
    wr: &mut W,
    peer: &Arc<str>,
) -> Result<(), String> {
    let first_seq = *w.commit.seqs().start();
    let shown_from = first_seq + w.count - w.frames.len() as u64;
    ctx.accepted_counts(w.count, w.bytes, &w.frames, shown_from, Some(peer));
    if acks.enabled() {
        for f in &w.frames {
            acks.ack(f);
        }
        acks.flush(wr).await?;
    }
    Ok(())
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
                // An ACK never contains the MLLP trailer, so framing cannot fail.
                let _ = iobp_codec::Encoder::new(iobp_codec::Framing::mllp())
                    .encode(&msg, &mut self.out);
            }
        }
    }

    pub(crate) async fn flush<W: AsyncWrite + Unpin>(&mut self, wr: &mut W) -> Result<(), String> {
        if self.out.is_empty() {
            return Ok(());
        }
        wr.write_all(&self.out).await.map_err(|e| format!("sending acknowledgement: {e}"))?;
        wr.flush().await.map_err(|e| format!("sending acknowledgement: {e}"))?;
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
fn civil_from_days(z: i64) -> (i64, u32, u32) {
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
