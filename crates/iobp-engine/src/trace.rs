//! The per-message trace: what happened to each stored message, from receipt to confirmation
//! — stored (when, from which peer, when its commit resolved), every delivery attempt (where
//! to, what the receiver answered, why it failed), Done, parked, re-sent, replayed, and the
//! pair's restarts that took it up again.
//!
//! **Cost on the data path.** Events are per batch, not per message: a batch of 4,096 messages
//! delivered in one write is one `delivered` event covering sequence numbers `a..=b`. The data
//! path only builds a small event and hands it to a bounded queue without waiting
//! ([`PairTrace::record`]); one thread for the whole engine writes the events to disk, and
//! writes consecutive events alike (the same kind, peer, destination and answer, about
//! consecutive messages, within 100 ms) as one with a time span (`u`): at 10,000 msg/s in
//! batches of one a pair writes about 20 lines a second, not 20,000.
//! When the queue is full (the disk cannot keep up) an event is dropped rather than the data
//! path slowed, counted, and the trace says so with a `gap` event.
//!
//! **On disk.** `<data>/trace/<pair id>-<buffer id>/` (the buffer's id: a pair deleted and
//! created again under the same id never shows the old pair's trace): `current.trace`, being
//! appended, and sealed files `<n>-<lowest seq>-<highest seq>.trace` (`n` counts up, so names
//! sort oldest first; the sequence numbers let a lookup open only the files that can hold a
//! message's events). One JSON object per line ([`TraceEvent`]); a line that does not parse —
//! a write torn by a power cut — is skipped.
//!
//! **Durability.** Trace events describe messages; they are not messages. They are written
//! within about 100 ms (so a `kill -9` loses at most the events of that moment) and synced
//! every second (so a power cut loses at most about the last second of events, never a
//! message). A trace write that fails (a full disk) is logged and the events are lost; the
//! data path never waits for the trace and never fails because of it.
//!
//! **Bounds.** The queue holds [`QUEUE`] events. A pair's trace is kept as long as its
//! messages are retained (a sealed file goes when every message it describes was removed by
//! retention) and within a size limit (1/16 of the pair's storage limit, at most 64 MiB):
//! beyond it the oldest file goes and a `trimmed` event covering its sequence numbers says
//! so.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

/// Events waiting to be written, for the whole engine (each slot holds a pointer: 16,384 of
/// them are 256 KiB, allocated once).
pub const QUEUE: usize = 16_384;
/// Consecutive events alike (the same kind, peer, destination and answer, about consecutive
/// messages) within this span are written as one, from its first time to its last (`u`): at
/// 10,000 msg/s a pair writes a few lines a second, not 20,000.
const COALESCE_US: u64 = 100_000;
/// How often written events are synced.
const SYNC_EVERY: Duration = Duration::from_secs(1);
/// Most events one pass of the writer takes before writing.
const PASS: usize = 4096;
/// A pair's trace may use at most this much disk.
pub const MAX_TRACE_BYTES: u64 = 64 * 1024 * 1024;
/// ... and at least this much, whatever its storage limit.
const MIN_TRACE_BYTES: u64 = 256 * 1024;
/// Most events one lookup returns (a message retried all night has many attempts: the first
/// and the most recent ones are kept).
pub const MAX_EVENTS: usize = 1000;
const CURRENT: &str = "current.trace";

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceKind {
    /// Received and durable: `t` is when its commit resolved (the record's own time is when it
    /// was received); `peer` sent it.
    Stored,
    /// Delivered and confirmed (Done): to `route`/`peer`; `ack` is the receiver's answer
    /// where the destination acknowledges.
    Delivered,
    /// The receiver refused it explicitly (`ack`: the HL7 code and text, `NAK`); it is sent
    /// again after the backoff (or parked).
    Refused,
    /// A delivery attempt ended without confirmation (`err`): back to Pending, sent again.
    Returned,
    /// The destination cannot carry it (`err`): set aside, Done.
    Undeliverable,
    /// Parked by the dead-letter policy after `n` refusals (`err`: the last answer).
    Parked,
    /// A parked message re-sent by an operator: stored again as `seq`.
    ParkedResent,
    /// A parked message discarded by an operator.
    ParkedDiscarded,
    /// Copied by a replay or a re-send into pair `pair` as `seq` (the copy of `a`; the copies
    /// of `a..=b` are consecutive).
    Copied,
    /// A copy (replay or re-send, `err` says which) of pair `pair`'s message `seq`.
    CopyOf,
    /// The pair started (`err`: why) while these messages were not Done yet: delivery resumes
    /// with them.
    Started,
    /// Older trace events of these messages were removed to keep the trace within its size.
    Trimmed,
    /// `n` trace events were lost (the trace could not keep up); not tied to messages.
    Gap,
}

impl TraceKind {
    /// The name used in the API.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            TraceKind::Stored => "stored",
            TraceKind::Delivered => "delivered",
            TraceKind::Refused => "refused",
            TraceKind::Returned => "returned",
            TraceKind::Undeliverable => "undeliverable",
            TraceKind::Parked => "parked",
            TraceKind::ParkedResent => "parked_resent",
            TraceKind::ParkedDiscarded => "parked_discarded",
            TraceKind::Copied => "copied",
            TraceKind::CopyOf => "copy_of",
            TraceKind::Started => "started",
            TraceKind::Trimmed => "trimmed",
            TraceKind::Gap => "gap",
        }
    }
}

/// One trace event as stored and as read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceEvent {
    /// When, µs since the Unix epoch.
    pub t: u64,
    /// What.
    pub k: TraceKind,
    /// The first sequence number it is about.
    pub a: u64,
    /// The last (the same as `a` for one message).
    pub b: u64,
    /// The peer (a source's sender, a destination's receiver).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// Which destination: the primary or a backup, and its type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// The receiver's answer (HL7 `AA`, `AE text`; `ACK`, `NAK`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack: Option<String>,
    /// Why (an error, a reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub err: Option<String>,
    /// The other pair of a copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pair: Option<String>,
    /// The other sequence number of a copy or re-send.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// A count (refusals before parking, events lost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u64>,
    /// Events alike were merged into this one: the time of the last, µs since the Unix
    /// epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub u: Option<u64>,
}

impl TraceEvent {
    /// An event about messages `a..=b`, now.
    #[must_use]
    pub(crate) fn new(k: TraceKind, a: u64, b: u64) -> TraceEvent {
        TraceEvent {
            t: now_us(),
            k,
            a,
            b,
            peer: None,
            route: None,
            ack: None,
            err: None,
            pair: None,
            seq: None,
            n: None,
            u: None,
        }
    }

    /// Takes `next` into this event if it continues it (see [`COALESCE_US`]).
    fn absorb(&mut self, next: &TraceEvent) -> bool {
        let mergeable = matches!(self.k, TraceKind::Stored | TraceKind::Delivered)
            && next.k == self.k
            && next.a == self.b + 1
            && next.t.saturating_sub(self.t) < COALESCE_US
            && next.peer == self.peer
            && next.route == self.route
            && next.ack == self.ack
            && next.err == self.err;
        if mergeable {
            self.b = next.b;
            self.u = Some(next.t.max(self.t));
        }
        mergeable
    }

    fn covers(&self, seq: u64) -> bool {
        self.a <= seq && seq <= self.b
    }

    /// Whether the event is about messages (a `gap` is about the trace itself).
    fn is_about_messages(&self) -> bool {
        self.k != TraceKind::Gap
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// A message's trace as read back.
#[derive(Debug, Clone, Default)]
pub struct MessageTrace {
    /// Its events, oldest first (at most [`MAX_EVENTS`]: the first and the latest).
    pub events: Vec<TraceEvent>,
    /// Events of this pair that were lost (not tied to any message), or left out of a trace
    /// longer than [`MAX_EVENTS`].
    pub events_lost: u64,
    /// Events left out because the trace had more than [`MAX_EVENTS`].
    pub events_omitted: u64,
}

/// Why a trace could not be read.
#[derive(Debug, thiserror::Error)]
#[error("reading the trace in {path}: {source}")]
pub struct TraceError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

struct PairShared {
    dir: PathBuf,
    max_bytes: u64,
    /// Events the queue could not take since the writer last noted it.
    dropped: AtomicU64,
}

enum Item {
    /// Boxed: a queue slot is a pointer, not a whole event.
    Event(Arc<PairShared>, Box<TraceEvent>),
    /// Write everything queued before this, then answer.
    Flush(std::sync::mpsc::Sender<()>),
    /// Remove sealed files whose every message is below this sequence number.
    Retain(Arc<PairShared>, u64),
    /// The pair was deleted: close and remove its trace.
    Forget(Arc<PairShared>),
}

/// The engine's trace writer: one thread, one queue.
pub(crate) struct Tracer {
    tx: SyncSender<Item>,
    root: PathBuf,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer").field("root", &self.root).finish_non_exhaustive()
    }
}

impl Tracer {
    /// Starts the writer for traces under `root` (`<data>/trace`).
    pub(crate) fn start(root: PathBuf) -> Arc<Tracer> {
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let thread = std::thread::Builder::new()
            .name("iobp-trace".into())
            .spawn(move || write_loop(&rx))
            .map_err(|e| tracing::error!("the trace writer could not start: {e}"))
            .ok();
        Arc::new(Tracer { tx, root, thread: Mutex::new(thread) })
    }

    /// The trace of a pair whose buffer has id `log_id`, allowed `storage_limit` bytes of
    /// messages (its trace gets 1/16 of that, within bounds).
    pub(crate) fn pair(&self, pair: &str, log_id: u64, storage_limit: u64) -> Arc<PairTrace> {
        Arc::new(PairTrace {
            shared: Arc::new(PairShared {
                dir: self.root.join(format!("{pair}-{log_id:016x}")),
                max_bytes: (storage_limit / 16).clamp(MIN_TRACE_BYTES, MAX_TRACE_BYTES),
                dropped: AtomicU64::new(0),
            }),
            tx: self.tx.clone(),
        })
    }

    /// Removes trace directories left by pairs deleted (a deletion a crash interrupted) or
    /// buffers created anew: those of no `configured` pair, and those of an `open` pair
    /// (id, its trace directory) other than its own. A configured pair whose buffer could not
    /// be opened keeps its trace.
    pub(crate) fn remove_stale(&self, configured: &[String], open: &[(String, PathBuf)]) {
        let Ok(entries) = std::fs::read_dir(&self.root) else { return };
        for e in entries.flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            // `<pair id>-<16 hex digits>`; pair ids may contain `-` themselves.
            let Some(pair) = name.len().checked_sub(17).and_then(|i| name.get(..i)) else {
                continue;
            };
            let stale = !configured.iter().any(|c| c == pair)
                || open.iter().any(|(id, dir)| id == pair && *dir != path);
            if stale
                && path.is_dir()
                && let Err(err) = std::fs::remove_dir_all(&path)
            {
                tracing::warn!(dir = %path.display(), "removing an old trace: {err}");
            }
        }
    }

    /// Writes and syncs everything queued, and stops the writer.
    pub(crate) fn shutdown(&self) {
        let (tx, rx) = std::sync::mpsc::channel();
        if self.tx.send(Item::Flush(tx)).is_ok() {
            let _ = rx.recv_timeout(Duration::from_secs(5));
        }
        // The thread ends when every sender is gone; pairs may still hold some, so it is
        // left to end with the process once flushed.
        drop(crate::stats::lock(&self.thread).take());
    }
}

/// One pair's trace: what its tasks record into and what lookups read.
pub(crate) struct PairTrace {
    shared: Arc<PairShared>,
    tx: SyncSender<Item>,
}

impl std::fmt::Debug for PairTrace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PairTrace").field("dir", &self.shared.dir).finish_non_exhaustive()
    }
}

impl PairTrace {
    /// Records an event without waiting: a full queue drops it (counted, and shown as a gap).
    pub(crate) fn record(&self, event: TraceEvent) {
        match self.tx.try_send(Item::Event(self.shared.clone(), Box::new(event))) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Records an event, waiting for room in the queue: for the operators' rare actions
    /// (replay, re-send, parking), whose trace must not be lost to a busy moment.
    pub(crate) fn record_surely(&self, event: TraceEvent) {
        if self.tx.send(Item::Event(self.shared.clone(), Box::new(event))).is_err() {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sealed files whose every message is below `first_seq` (removed by retention) go.
    pub(crate) fn retain(&self, first_seq: u64) {
        let _ = self.tx.try_send(Item::Retain(self.shared.clone(), first_seq));
    }

    /// The pair is deleted: its trace goes (after what is queued for it).
    pub(crate) fn forget(&self) {
        let _ = self.tx.send(Item::Forget(self.shared.clone()));
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Waits (at most 2 s) until everything recorded so far is written.
    fn flush(&self) {
        let (tx, rx) = std::sync::mpsc::channel();
        if self.tx.send(Item::Flush(tx)).is_ok() {
            let _ = rx.recv_timeout(Duration::from_secs(2));
        }
    }

    /// The events about message `seq`, oldest first. Blocking: reads files.
    pub(crate) fn lookup(&self, seq: u64) -> Result<MessageTrace, TraceError> {
        self.flush();
        let dir = &self.shared.dir;
        let mut files = match sealed_files(dir) {
            Ok(f) => f,
            Err(source) if source.kind() == std::io::ErrorKind::NotFound => {
                return Ok(MessageTrace::default());
            }
            Err(source) => return Err(TraceError { path: dir.clone(), source }),
        };
        files.retain(|f| f.min <= seq && seq <= f.max);
        let mut paths: Vec<PathBuf> = files.into_iter().map(|f| f.path).collect();
        paths.push(dir.join(CURRENT));
        let mut out = MessageTrace::default();
        let mut later: VecDeque<TraceEvent> = VecDeque::new();
        for path in paths {
            let file = match File::open(&path) {
                Ok(f) => f,
                // Sealed or removed meanwhile: its events are in a file already read or gone.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(TraceError { path, source }),
            };
            for line in BufReader::new(file).split(b'\n') {
                let line = line.map_err(|source| TraceError { path: path.clone(), source })?;
                let Ok(ev) = serde_json::from_slice::<TraceEvent>(&line) else { continue };
                if ev.k == TraceKind::Gap {
                    out.events_lost += ev.n.unwrap_or(0);
                    continue;
                }
                if !ev.covers(seq) {
                    continue;
                }
                // The first half of the limit keeps the oldest events, the rest the latest.
                if out.events.len() < MAX_EVENTS / 2 {
                    out.events.push(ev);
                } else {
                    later.push_back(ev);
                    if later.len() > MAX_EVENTS / 2 {
                        later.pop_front();
                        out.events_omitted += 1;
                    }
                }
            }
        }
        out.events.extend(later);
        // A destination can take a message the moment it is durable, before the source task
        // that stored it records so: what made a message exists comes first.
        out.events.sort_by_key(|e| !matches!(e.k, TraceKind::Stored | TraceKind::CopyOf));
        Ok(out)
    }
}

/// Messages of pair `from_id` were stored again in pair `into_id` (the same pair for a
/// re-send): `copies` maps each original sequence number to its copy's, in order. Both traces
/// get one event per run of consecutive numbers, waiting for room in the queue (operators'
/// actions are rare and their trace must not be lost).
pub(crate) fn record_copies(
    (from, from_id): (&PairTrace, &str),
    (into, into_id): (&PairTrace, &str),
    copies: impl IntoIterator<Item = (u64, u64)>,
    why: &str,
) {
    let emit = |(a, b, new_a): (u64, u64, u64)| {
        let mut on_original = TraceEvent::new(TraceKind::Copied, a, b);
        on_original.pair = Some(into_id.to_string());
        on_original.seq = Some(new_a);
        on_original.err = Some(why.to_string());
        from.record_surely(on_original);
        let mut on_copy = TraceEvent::new(TraceKind::CopyOf, new_a, new_a + (b - a));
        on_copy.pair = Some(from_id.to_string());
        on_copy.seq = Some(a);
        on_copy.err = Some(why.to_string());
        into.record_surely(on_copy);
    };
    let mut run: Option<(u64, u64, u64)> = None;
    for (orig, new) in copies {
        run = match run {
            Some((a, b, na)) if orig == b + 1 && new == na + (b + 1 - a) => Some((a, orig, na)),
            Some(done) => {
                emit(done);
                Some((orig, orig, new))
            }
            None => Some((orig, orig, new)),
        };
    }
    if let Some(done) = run {
        emit(done);
    }
}

struct Sealed {
    n: u64,
    min: u64,
    max: u64,
    bytes: u64,
    path: PathBuf,
}

/// The sealed files of a trace directory, oldest first.
fn sealed_files(dir: &Path) -> std::io::Result<Vec<Sealed>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".trace")) else { continue };
        let mut parts = stem.split('-').map(str::parse::<u64>);
        if let (Some(Ok(n)), Some(Ok(min)), Some(Ok(max)), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        {
            let bytes = e.metadata().map_or(0, |m| m.len());
            out.push(Sealed { n, min, max, bytes, path: e.path() });
        }
    }
    out.sort_by_key(|s| s.n);
    Ok(out)
}

/// What the writer holds for one pair's trace.
struct PairFile {
    shared: Arc<PairShared>,
    file: File,
    /// Bytes in `current.trace`.
    bytes: u64,
    /// Sequence numbers its events are about (`None`: none yet).
    range: Option<(u64, u64)>,
    sealed: VecDeque<Sealed>,
    next_n: u64,
    /// The newest event, which the next may continue (not formatted yet).
    open: Option<TraceEvent>,
    /// Lines formatted, not yet written.
    buf: Vec<u8>,
    /// Written since the last sync.
    dirty: bool,
    /// The file may end in a partial line (a torn or failed write): start a new line first.
    needs_newline: bool,
    /// A write failed: it is reported once until one succeeds again.
    failing: bool,
}

impl PairFile {
    fn open(shared: Arc<PairShared>) -> std::io::Result<PairFile> {
        let dir = &shared.dir;
        std::fs::create_dir_all(dir)?;
        let sealed: VecDeque<Sealed> = sealed_files(dir)?.into();
        let next_n = sealed.back().map_or(0, |s| s.n + 1);
        let path = dir.join(CURRENT);
        // What an existing current file is about, and whether it ends with a whole line.
        let mut range = None;
        let mut bytes = 0u64;
        let mut needs_newline = false;
        if let Ok(f) = File::open(&path) {
            for line in BufReader::new(f).split(b'\n') {
                let line = line?;
                bytes += line.len() as u64 + 1;
                if let Ok(ev) = serde_json::from_slice::<TraceEvent>(&line)
                    && ev.is_about_messages()
                {
                    range = Some(widen(range, ev.a, ev.b));
                }
            }
            let len = std::fs::metadata(&path).map_or(0, |m| m.len());
            needs_newline = len != bytes && len > 0;
            bytes = len;
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(PairFile {
            shared,
            file,
            bytes,
            range,
            sealed,
            next_n,
            open: None,
            buf: Vec::with_capacity(64 * 1024),
            dirty: false,
            needs_newline,
            failing: false,
        })
    }

    fn total_bytes(&self) -> u64 {
        self.bytes + self.buf.len() as u64 + self.sealed.iter().map(|s| s.bytes).sum::<u64>()
    }

    fn push(&mut self, ev: TraceEvent) {
        let lost = self.shared.dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            self.close_open();
            let mut gap = TraceEvent::new(TraceKind::Gap, 0, 0);
            gap.n = Some(lost);
            self.line(&gap);
        }
        if let Some(open) = &mut self.open
            && open.absorb(&ev)
        {
            return;
        }
        self.close_open();
        self.open = Some(ev);
    }

    /// Formats the open event (it can no longer be continued, or it is old enough).
    fn close_open(&mut self) {
        if let Some(ev) = self.open.take() {
            self.line(&ev);
        }
    }

    /// Closes the open event if nothing can continue it any more (`now`, µs).
    fn close_if_old(&mut self, now: u64) {
        if self.open.as_ref().is_some_and(|e| now.saturating_sub(e.t) >= COALESCE_US) {
            self.close_open();
        }
    }

    fn line(&mut self, ev: &TraceEvent) {
        if self.needs_newline {
            self.buf.push(b'\n');
            self.needs_newline = false;
        }
        if serde_json::to_writer(&mut self.buf, ev).is_ok() {
            self.buf.push(b'\n');
        }
        if ev.is_about_messages() {
            self.range = Some(widen(self.range, ev.a, ev.b));
        }
        // A file of 1/8 of the trace's size: trimming removes an eighth at a time.
        if self.bytes + self.buf.len() as u64 >= self.shared.max_bytes / 8 {
            self.write();
            self.seal();
        }
    }

    /// Writes the formatted lines.
    fn write(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        match self.file.write_all(&self.buf) {
            Ok(()) => {
                self.bytes += self.buf.len() as u64;
                self.dirty = true;
                self.failing = false;
            }
            Err(e) => {
                if !self.failing {
                    tracing::warn!(
                        dir = %self.shared.dir.display(),
                        "writing the trace failed (events lost, messages unaffected): {e}"
                    );
                }
                self.failing = true;
                // Part of it may be in the file.
                self.needs_newline = true;
                self.bytes = self.file.metadata().map_or(self.bytes, |m| m.len());
            }
        }
        self.buf.clear();
    }

    fn sync(&mut self) {
        if self.dirty {
            self.dirty = false;
            if let Err(e) = self.file.sync_data() {
                tracing::warn!(dir = %self.shared.dir.display(), "syncing the trace: {e}");
            }
        }
    }

    /// `current.trace` becomes a sealed file named by what it is about; a new one starts.
    /// Then the oldest files go while the trace is over its size.
    fn seal(&mut self) {
        self.sync();
        let dir = self.shared.dir.clone();
        let (min, max) = self.range.unwrap_or((0, 0));
        let name = format!("{:08}-{min}-{max}.trace", self.next_n);
        let sealed_path = dir.join(&name);
        let current = dir.join(CURRENT);
        let reopened = std::fs::rename(&current, &sealed_path)
            .and_then(|()| OpenOptions::new().create(true).append(true).open(&current));
        match reopened {
            Ok(f) => {
                self.sealed.push_back(Sealed {
                    n: self.next_n,
                    min,
                    max,
                    bytes: self.bytes,
                    path: sealed_path,
                });
                self.next_n += 1;
                self.file = f;
                self.bytes = 0;
                self.range = None;
            }
            Err(e) => {
                tracing::warn!(dir = %dir.display(), "sealing a trace file: {e}");
                return;
            }
        }
        while self.total_bytes() > self.shared.max_bytes && self.sealed.len() > 1 {
            let Some(old) = self.sealed.pop_front() else { break };
            if std::fs::remove_file(&old.path).is_ok() {
                self.line(&TraceEvent::new(TraceKind::Trimmed, old.min, old.max));
            }
        }
    }

    /// Sealed files about messages all below `first_seq` go (retention removed them).
    fn retain(&mut self, first_seq: u64) {
        let (gone, kept): (Vec<Sealed>, Vec<Sealed>) =
            self.sealed.drain(..).partition(|s| s.max < first_seq);
        self.sealed = kept.into();
        for s in gone {
            if let Err(e) = std::fs::remove_file(&s.path) {
                tracing::debug!(path = %s.path.display(), "removing a trace file: {e}");
            }
        }
    }
}

fn widen(r: Option<(u64, u64)>, a: u64, b: u64) -> (u64, u64) {
    r.map_or((a, b), |(lo, hi)| (lo.min(a), hi.max(b)))
}

/// The writer thread: takes what is queued, writes it per pair, syncs every second.
fn write_loop(rx: &Receiver<Item>) {
    let mut files: HashMap<PathBuf, PairFile> = HashMap::new();
    let mut last_sync = Instant::now();
    let mut items = Vec::with_capacity(PASS);
    loop {
        let open = files.values().any(|f| f.open.is_some());
        let wait = if open { Duration::from_micros(COALESCE_US) } else { SYNC_EVERY };
        match rx.recv_timeout(wait) {
            Ok(i) => items.push(i),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        while items.len() < PASS {
            match rx.try_recv() {
                Ok(i) => items.push(i),
                Err(_) => break,
            }
        }
        let mut waiting = Vec::new();
        for item in items.drain(..) {
            match item {
                Item::Event(pair, ev) => {
                    if let Some(f) = file_of(&mut files, &pair) {
                        f.push(*ev);
                    }
                }
                Item::Flush(done) => {
                    for f in files.values_mut() {
                        f.close_open();
                    }
                    waiting.push(done);
                }
                Item::Retain(pair, first_seq) => {
                    if let Some(f) = file_of(&mut files, &pair) {
                        f.retain(first_seq);
                    }
                }
                Item::Forget(pair) => {
                    files.remove(&pair.dir);
                    if let Err(e) = std::fs::remove_dir_all(&pair.dir)
                        && e.kind() != std::io::ErrorKind::NotFound
                    {
                        tracing::warn!(dir = %pair.dir.display(), "removing a trace: {e}");
                    }
                }
            }
        }
        let now = now_us();
        for f in files.values_mut() {
            f.close_if_old(now);
            f.write();
        }
        if last_sync.elapsed() >= SYNC_EVERY || !waiting.is_empty() {
            last_sync = Instant::now();
            for f in files.values_mut() {
                f.sync();
            }
        }
        for w in waiting {
            let _ = w.send(());
        }
    }
    for f in files.values_mut() {
        f.close_open();
        f.write();
        f.sync();
    }
}

fn file_of<'a>(
    files: &'a mut HashMap<PathBuf, PairFile>,
    pair: &Arc<PairShared>,
) -> Option<&'a mut PairFile> {
    if !files.contains_key(&pair.dir) {
        match PairFile::open(pair.clone()) {
            Ok(f) => {
                files.insert(pair.dir.clone(), f);
            }
            Err(e) => {
                tracing::warn!(dir = %pair.dir.display(), "opening the trace: {e}");
                return None;
            }
        }
    }
    files.get_mut(&pair.dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracer() -> (tempfile::TempDir, Arc<Tracer>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = Tracer::start(dir.path().join("trace"));
        (dir, t)
    }

    #[test]
    fn events_come_back_for_the_messages_they_cover_in_order() {
        let (_d, t) = tracer();
        let p = t.pair("p", 7, 1 << 30);
        p.record(TraceEvent::new(TraceKind::Stored, 1, 100));
        let mut d = TraceEvent::new(TraceKind::Delivered, 1, 50);
        d.ack = Some("AA".into());
        p.record(d);
        p.record(TraceEvent::new(TraceKind::Returned, 51, 100));
        p.record(TraceEvent::new(TraceKind::Delivered, 51, 100));
        let kinds = |seq| -> Vec<TraceKind> {
            p.lookup(seq).expect("lookup").events.iter().map(|e| e.k).collect()
        };
        assert_eq!(kinds(10), [TraceKind::Stored, TraceKind::Delivered]);
        assert_eq!(kinds(60), [TraceKind::Stored, TraceKind::Returned, TraceKind::Delivered]);
        assert!(kinds(101).is_empty());
        assert_eq!(p.lookup(10).expect("lookup").events[1].ack.as_deref(), Some("AA"));
    }

    #[test]
    fn a_trace_survives_a_new_writer_and_a_torn_last_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("trace");
        {
            let t = Tracer::start(root.clone());
            let p = t.pair("p", 1, 1 << 30);
            p.record(TraceEvent::new(TraceKind::Stored, 1, 1));
            p.flush();
        }
        // A power cut tore the last line.
        let current = root.join(format!("p-{:016x}", 1)).join(CURRENT);
        let mut f = OpenOptions::new().append(true).open(&current).expect("open");
        f.write_all(b"{\"t\":1,\"k\":\"deliv").expect("write");
        drop(f);
        let t = Tracer::start(root);
        let p = t.pair("p", 1, 1 << 30);
        p.record(TraceEvent::new(TraceKind::Delivered, 1, 1));
        let kinds: Vec<TraceKind> =
            p.lookup(1).expect("lookup").events.iter().map(|e| e.k).collect();
        assert_eq!(kinds, [TraceKind::Stored, TraceKind::Delivered]);
    }

    #[test]
    fn files_roll_and_the_trace_stays_within_its_size_saying_what_it_trimmed() {
        let (_d, t) = tracer();
        // The smallest trace: 256 KiB, files of 32 KiB.
        let p = t.pair("p", 1, 0);
        for seq in 1..=20_000u64 {
            // A sender each (a connection per message): nothing to merge.
            let mut e = TraceEvent::new(TraceKind::Stored, seq, seq);
            e.peer = Some(format!("127.0.0.1:{}", 20_000 + seq));
            p.record_surely(e);
        }
        p.flush();
        let total: u64 = std::fs::read_dir(p.dir())
            .expect("dir")
            .map(|e| e.expect("entry").metadata().expect("meta").len())
            .sum();
        assert!(total <= MIN_TRACE_BYTES + 64 * 1024, "trace uses {total} bytes");
        let old = p.lookup(1).expect("lookup");
        assert_eq!(old.events.len(), 1);
        assert_eq!(old.events[0].k, TraceKind::Trimmed, "{old:?}");
        let recent = p.lookup(20_000).expect("lookup");
        assert_eq!(recent.events.iter().map(|e| e.k).collect::<Vec<_>>(), [TraceKind::Stored]);
        // Only the files that can hold a message's events are read: sealed names say which.
        let sealed = sealed_files(p.dir()).expect("sealed");
        assert!(sealed.len() >= 4);
        assert!(sealed.iter().all(|s| s.min <= s.max && s.bytes > 0));
        assert!(sealed.windows(2).all(|w| w[0].n < w[1].n));
    }

    #[test]
    fn retention_removes_files_about_removed_messages_only() {
        let (_d, t) = tracer();
        let p = t.pair("p", 1, 0);
        for seq in 1..=5_000u64 {
            let mut e = TraceEvent::new(TraceKind::Stored, seq, seq);
            e.peer = Some(format!("127.0.0.1:{}", 20_000 + seq));
            p.record_surely(e);
        }
        p.flush();
        let before = sealed_files(p.dir()).expect("sealed");
        let cut = before[1].max + 1;
        p.retain(cut);
        p.flush();
        let after = sealed_files(p.dir()).expect("sealed");
        assert!(after.iter().all(|s| s.max >= cut));
        assert_eq!(after.len(), before.len() - 2);
        assert_eq!(p.lookup(cut).expect("lookup").events.len(), 1);
    }

    #[test]
    fn events_alike_about_consecutive_messages_within_100_ms_are_one() {
        let (_d, t) = tracer();
        let p = t.pair("p", 1, 1 << 30);
        let peer = |e: &mut TraceEvent, to: &str| e.peer = Some(to.to_string());
        let t0 = now_us();
        let at = |k, a, b, dt, to: &str| {
            let mut e = TraceEvent::new(k, a, b);
            e.t = t0 + dt;
            peer(&mut e, to);
            e
        };
        // 1 … 300 stored by one sender in 3 batches within 50 ms: one event, with a span.
        p.record(at(TraceKind::Stored, 1, 100, 0, "s"));
        p.record(at(TraceKind::Stored, 101, 200, 20_000, "s"));
        p.record(at(TraceKind::Stored, 201, 300, 50_000, "s"));
        // Another sender, a gap in the numbers, and a batch 100 ms later: each its own.
        p.record(at(TraceKind::Stored, 301, 310, 60_000, "other"));
        p.record(at(TraceKind::Stored, 320, 330, 61_000, "other"));
        p.record(at(TraceKind::Stored, 331, 340, 161_000, "other"));
        // A refusal between two deliveries keeps them apart and in order.
        p.record(at(TraceKind::Delivered, 1, 10, 170_000, "r"));
        p.record(at(TraceKind::Refused, 11, 11, 171_000, "r"));
        p.record(at(TraceKind::Delivered, 11, 20, 172_000, "r"));
        let t5 = p.lookup(5).expect("lookup").events;
        assert_eq!((t5[0].a, t5[0].b, t5[0].u), (1, 300, Some(t0 + 50_000)));
        assert_eq!((t5[1].k, t5[1].a, t5[1].b), (TraceKind::Delivered, 1, 10));
        let ranges: Vec<(u64, u64)> = [305, 325, 335]
            .iter()
            .map(|s| {
                let e = &p.lookup(*s).expect("lookup").events[0];
                (e.a, e.b)
            })
            .collect();
        assert_eq!(ranges, [(301, 310), (320, 330), (331, 340)]);
        let kinds: Vec<TraceKind> =
            p.lookup(11).expect("lookup").events.iter().map(|e| e.k).collect();
        assert_eq!(kinds, [TraceKind::Stored, TraceKind::Refused, TraceKind::Delivered]);
    }

    #[test]
    fn an_event_the_queue_cannot_take_is_counted_and_shown_as_a_gap() {
        let (_d, t) = tracer();
        let p = t.pair("p", 1, 1 << 30);
        p.shared.dropped.store(3, Ordering::Relaxed);
        p.record(TraceEvent::new(TraceKind::Stored, 1, 1));
        let tr = p.lookup(1).expect("lookup");
        assert_eq!(tr.events_lost, 3);
        assert_eq!(tr.events.len(), 1);
    }

    #[test]
    fn stale_traces_go_and_a_configured_pair_keeps_its_own() {
        let (_d, t) = tracer();
        let dirs: Vec<PathBuf> = [("a-b", 1), ("a-b", 2), ("gone", 3), ("unopened", 4)]
            .iter()
            .map(|(id, log)| {
                let p = t.pair(id, *log, 1 << 30);
                p.record(TraceEvent::new(TraceKind::Stored, 1, 1));
                p.flush();
                p.dir().to_path_buf()
            })
            .collect();
        let configured = ["a-b".to_string(), "unopened".to_string()];
        t.remove_stale(&configured, &[("a-b".to_string(), dirs[1].clone())]);
        let left: Vec<bool> = dirs.iter().map(|d| d.exists()).collect();
        assert_eq!(left, [false, true, false, true]);
    }

    #[test]
    fn a_forgotten_pair_leaves_no_trace() {
        let (_d, t) = tracer();
        let p = t.pair("p", 1, 1 << 30);
        p.record(TraceEvent::new(TraceKind::Stored, 1, 1));
        p.flush();
        assert!(p.dir().exists());
        p.forget();
        p.flush();
        assert!(!p.dir().exists());
    }
}
