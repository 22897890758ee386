//! The receiving end: appends what a sender relays, exactly once.
//!
//! 1. The sender's `Hello` names its stream; the answer is `Resume` with the last record of
//!    that stream that is durable here (everything queued is waited for first).
//! 2. Each `Data` frame is stored only if its `prev` is not above what is here (otherwise a
//!    frame before it was refused and the sender will resend from there); records already
//!    here are skipped; the rest are appended with their numbers as tags, one commit per
//!    frame, up to [`WINDOW`] commits in flight.
//! 3. `Ack` goes out when a frame's commit resolves (in order), so an acknowledged record is
//!    durable here. A full buffer answers `Busy`: the sender waits and resends.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use iobp_log::Commit;
use iobp_relay::Frame;
use tokio::time::Instant;

use super::sender::frame_name;
use super::{FrameReader, HANDSHAKE_TIMEOUT, RelayIo, fail, now_us, protocol, write_all};
use crate::connector::{Ended, Progress, Session};
use crate::side::{IntakeError, SideCtx, SideError};
use crate::stats::{RelayLag, Side};

/// Frames whose commit is awaited while reading continues.
const WINDOW: usize = 8;
/// How long a sender is asked to wait when the buffer is full.
const BUSY_RETRY_MS: u32 = 1000;

/// The receiving session on one relay connection.
pub(crate) struct RelayReceive;

impl Session<Box<dyn RelayIo>> for RelayReceive {
    fn about(&self, peer: &str) -> String {
        format!("relay from {peer}")
    }

    async fn run(
        &self,
        ctx: &SideCtx,
        io: Box<dyn RelayIo>,
        peer: &Arc<str>,
        _progress: &Progress,
    ) -> Result<Ended, SideError> {
        receive(ctx, io, peer).await
    }
}

struct Waiting {
    commit: Option<Commit>,
    /// The commit has resolved (it must not be awaited again).
    resolved: bool,
    /// Acknowledge through this once the commit resolved.
    through: u64,
    count: u64,
    bytes: u64,
    /// The last few records, for the Live View.
    shown: Vec<(u64, Bytes)>,
}

/// Receives a stream until the connection fails, the sender closes it or the pair stops.
async fn receive<S: RelayIo>(ctx: &SideCtx, io: S, peer: &Arc<str>) -> Result<Ended, SideError> {
    let (rd, mut wr) = tokio::io::split(io);
    let mut frames = FrameReader::new(rd);
    let mut out = Vec::with_capacity(64);
    let stream = tokio::select! {
        () = ctx.cancel.cancelled() => return Ok(Ended::Cancelled),
        r = tokio::time::timeout(HANDSHAKE_TIMEOUT, hello(&mut frames, &mut wr)) => match r {
            Err(_) => return Err(SideError::Peer("the sender did not say Hello".into())),
            Ok(Ok(Some(stream))) => stream,
            Ok(Ok(None)) => return Ok(Ended::PeerClosed),
            Ok(Err(e)) => return Err(e),
        },
    };
    let position = ctx
        .log
        .durable_producer_position(stream)
        .await
        .map_err(SideError::buffer("buffer unavailable"))?;
    iobp_relay::encode_resume(&mut out, position);
    write_all(&mut wr, &out).await?;
    let mut waiting: VecDeque<Waiting> = VecDeque::new();
    let result = session(ctx, stream, &mut frames, &mut wr, &mut out, &mut waiting, peer).await;
    // Whatever ended the session, what was appended is counted once durable; its
    // acknowledgement goes out if the connection still takes it (bounded wait). A sender that
    // missed it resumes from what is durable here. The count never waits on the connection:
    // a commit slower than the bound is counted when it resolves (the records are in the
    // buffer all the same), and `complete` counts before it writes.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while let Some(mut w) = waiting.pop_front() {
        let durable = w.resolved
            || match w.commit.as_mut() {
                None => true,
                Some(c) => matches!(tokio::time::timeout_at(deadline, c).await, Ok(Ok(_))),
            };
        if durable {
            w.resolved = true;
            // Polled once even past the deadline: the count comes before the first write.
            let _ =
                tokio::time::timeout_at(deadline, complete(ctx, w, &mut wr, &mut out, peer)).await;
        } else if let Some(c) = w.commit.take().filter(|_| w.count > 0) {
            ctx.count_if_stored_later(async move { c.await.map(Some) }, w.count, w.bytes);
        }
    }
    result
}

/// Waits for the sender's `Hello`; `None` if it closed the connection first.
async fn hello<R, W>(frames: &mut FrameReader<R>, wr: &mut W) -> Result<Option<u64>, SideError>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let Some(bytes) = frames.next().await? else { return Ok(None) };
    match iobp_relay::decode(&bytes) {
        Ok(Some((Frame::Hello { version, stream }, _))) if version == iobp_relay::VERSION => {
            Ok(Some(stream))
        }
        Ok(Some((Frame::Hello { version, .. }, _))) => {
            let msg = SideError::Protocol(format!(
                "protocol version {version} is not supported (this instance speaks {})",
                iobp_relay::VERSION
            ));
            Err(fail(wr, msg).await)
        }
        Ok(Some((other, _))) => {
            let msg = protocol(format!("expected Hello, got {}", frame_name(&other)));
            Err(fail(wr, msg).await)
        }
        Ok(None) => Err(protocol("incomplete frame")),
        Err(e) => Err(fail(wr, protocol(e)).await),
    }
}

/// The frames after the opening exchange.
async fn session<R, W>(
    ctx: &SideCtx,
    stream: u64,
    frames: &mut FrameReader<R>,
    wr: &mut W,
    out: &mut Vec<u8>,
    waiting: &mut VecDeque<Waiting>,
    peer: &Arc<str>,
) -> Result<Ended, SideError>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut busy_at: Option<u64> = None;
    let mut last_heard = Instant::now();
    let every = Duration::from_secs(iobp_relay::PING_INTERVAL_S);
    let mut ping = tokio::time::interval_at(Instant::now() + every, every);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = ctx.cancel.cancelled() => return Ok(Ended::Cancelled),
            done = first_commit(waiting) => {
                done.map_err(SideError::buffer("buffer failed"))?;
                if let Some(mut w) = waiting.pop_front() {
                    w.resolved = true;
                    complete(ctx, w, wr, out, peer).await?;
                }
            }
            f = frames.next(), if waiting.len() < WINDOW => {
                let Some(bytes) = f? else { return Ok(Ended::PeerClosed) };
                last_heard = Instant::now();
                let frame = match iobp_relay::decode(&bytes) {
                    Ok(Some((frame, _))) => frame,
                    Ok(None) => return Err(protocol("incomplete frame")),
                    Err(e) => return Err(fail(wr, protocol(e)).await),
                };
                match frame {
                    Frame::Data(d) => {
                        data(ctx, stream, &d, &bytes, wr, out, waiting, &mut busy_at).await?;
                    }
                    Frame::Ping { nonce } => {
                        out.clear();
                        iobp_relay::encode_pong(out, nonce);
                        write_all(wr, out).await?;
                    }
                    Frame::Pong { .. } => {}
                    Frame::Error { message } => {
                        return Err(SideError::Peer(format!("the sender reported: {message}")));
                    }
                    other => {
                        let msg =
                            protocol(format!("unexpected {} from the sender", frame_name(&other)));
                        return Err(fail(wr, msg).await);
                    }
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > Duration::from_secs(iobp_relay::IDLE_TIMEOUT_S) {
                    return Err(SideError::Peer(format!(
                        "the sender has been silent for {} s",
                        iobp_relay::IDLE_TIMEOUT_S
                    )));
                }
                out.clear();
                iobp_relay::encode_ping(out, now_us());
                write_all(wr, out).await?;
            }
        }
    }
}

/// Payload bytes appended per commit: a frame larger than the buffer's free space is stored
/// in part, so a sender always makes progress as space frees up.
const CHUNK_BYTES: usize = 256 * 1024;

/// Stores a `Data` frame's new records (in chunks), queueing their acknowledgement; asks the
/// sender to wait when the buffer is full.
#[allow(clippy::too_many_arguments)]
async fn data<W: tokio::io::AsyncWrite + Unpin>(
    ctx: &SideCtx,
    stream: u64,
    d: &iobp_relay::Data<'_>,
    frame: &Bytes,
    wr: &mut W,
    out: &mut Vec<u8>,
    waiting: &mut VecDeque<Waiting>,
    busy_at: &mut Option<u64>,
) -> Result<(), SideError> {
    let here = ctx.log.producer_position(stream);
    if d.prev > here {
        // A frame before this one was refused: the sender resends from there; this one is
        // dropped unseen.
        return Ok(());
    }
    #[allow(clippy::cast_precision_loss)]
    let lag = now_us().saturating_sub(d.last_ts_us) as f64 / 1e6;
    ctx.stats.source.set_lag(Some(RelayLag {
        messages: d.backlog,
        seconds: if d.backlog == 0 { 0.0 } else { lag },
    }));
    let records: Vec<(u64, &[u8])> = d.records().filter(|(p, _)| *p > here).collect();
    let dropped = d.len() - records.len();
    if dropped > 0 {
        ctx.stats.duplicates_dropped.fetch_add(dropped as u64, Ordering::Relaxed);
    }
    if records.is_empty() {
        // Everything is here already (perhaps queued by an earlier connection of the same
        // sender): acknowledged once everything queued is durable.
        waiting.push_back(Waiting {
            commit: ctx.log.queued_commit(),
            resolved: false,
            through: d.last_pseq(),
            count: 0,
            bytes: 0,
            shown: Vec::new(),
        });
        return Ok(());
    }
    let mut rest = &records[..];
    while !rest.is_empty() {
        let mut n = 0;
        let mut size = 0;
        while n < rest.len() && (n == 0 || size + rest[n].1.len() <= CHUNK_BYTES) {
            size += rest[n].1.len();
            n += 1;
        }
        let chunk = &rest[..n];
        match intake(ctx, stream, chunk).await {
            Ok((commit, appended)) => {
                *busy_at = None;
                let through = chunk.last().map_or(here, |(p, _)| *p);
                // Records another session of this sender queued a moment ago were skipped
                // (always a prefix: numbers increase); the commit covers them too.
                let new = &chunk[chunk.len() - appended..];
                let shown = new
                    .iter()
                    .skip(new.len().saturating_sub(8))
                    .map(|(p, b)| (*p, frame.slice_ref(b)))
                    .collect();
                waiting.push_back(Waiting {
                    commit: Some(commit),
                    resolved: false,
                    through,
                    count: appended as u64,
                    bytes: new.iter().map(|(_, b)| b.len() as u64).sum(),
                    shown,
                });
                rest = &rest[n..];
            }
            Err(IntakeError::Full(why)) => {
                let position = ctx.log.producer_position(stream);
                if *busy_at != Some(position) {
                    ctx.error(Side::Source, format!("{why}: the sender was asked to wait"));
                    *busy_at = Some(position);
                }
                out.clear();
                iobp_relay::encode_busy(out, position, BUSY_RETRY_MS, &why);
                return write_all(wr, out).await;
            }
            Err(IntakeError::Broken(e)) => {
                let e =
                    SideError::Buffer { doing: "the receiving buffer is unavailable", source: e };
                return Err(fail(wr, e).await);
            }
        }
    }
    Ok(())
}

/// Appends a frame's new records, waiting while the append queue is full. Returns the commit
/// that covers every record of `records` — the new ones and any another session of the same
/// sender queued a moment ago and may not have synced yet (they are acknowledged only once
/// durable, whoever appended them) — and how many were new.
async fn intake(
    ctx: &SideCtx,
    stream: u64,
    records: &[(u64, &[u8])],
) -> Result<(Commit, usize), IntakeError> {
    match ctx.log.append_tagged_queued(stream, records).await {
        Ok(a) => {
            ctx.stats.clear_full();
            if a.duplicates > 0 {
                ctx.stats.duplicates_dropped.fetch_add(a.duplicates as u64, Ordering::Relaxed);
            }
            let appended = a.appended.map_or(0, Iterator::count);
            Ok((a.commit, appended))
        }
        Err(iobp_log::Error::Full { scope, used, limit, needed }) => {
            ctx.stats.set_full(needed);
            Err(IntakeError::Full(format!(
                "buffer full ({scope} limit: {used} of {limit} bytes used)"
            )))
        }
        Err(e) => Err(IntakeError::Broken(e)),
    }
}

async fn first_commit(waiting: &mut VecDeque<Waiting>) -> iobp_log::Result<()> {
    match waiting.front_mut() {
        Some(Waiting { commit: Some(c), .. }) => c.await.map(|_| ()),
        Some(Waiting { commit: None, .. }) => Ok(()),
        None => std::future::pending().await,
    }
}

/// A frame is durable: count it, show it, acknowledge it.
async fn complete<W: tokio::io::AsyncWrite + Unpin>(
    ctx: &SideCtx,
    w: Waiting,
    wr: &mut W,
    out: &mut Vec<u8>,
    peer: &Arc<str>,
) -> Result<(), SideError> {
    let mut last_local = None;
    if let Some(mut c) = w.commit {
        if !w.resolved {
            (&mut c).await.map_err(SideError::buffer("buffer failed"))?;
        }
        last_local = Some(*c.seqs().end());
    }
    if w.count > 0 {
        ctx.stats.received.fetch_add(w.count, Ordering::Relaxed);
        ctx.stats.received_bytes.fetch_add(w.bytes, Ordering::Relaxed);
        if let Some(last) = last_local {
            ctx.trace_stored((last + 1).saturating_sub(w.count), last, Some(peer));
        }
        // The shown records are the frame's last ones: this buffer's last numbers.
        let first = last_local.map(|l| l + 1 - w.shown.len() as u64);
        let items =
            w.shown.iter().enumerate().map(|(i, (_, b))| (first.map(|f| f + i as u64), b.as_ref()));
        ctx.feed.record(Side::Source, Some(peer), items);
    }
    out.clear();
    iobp_relay::encode_ack(out, w.through);
    write_all(wr, out).await
}
