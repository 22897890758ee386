//! Per-pair counters and status: one struct of atomics that connectors update and that the
//! portals, the REST API and `/metrics` all read (so they always show the same numbers).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// The status colours of the product documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Color {
    /// Connected and healthy / flowing / running.
    Green,
    /// Connecting or reconnecting / backlog / degraded.
    Yellow,
    /// Disconnected or error / full / error.
    Red,
    /// Stopped or inactive / empty.
    White,
}

impl Color {
    /// Lower-case name, as used by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Color::Green => "green",
            Color::Yellow => "yellow",
            Color::Red => "red",
            Color::White => "white",
        }
    }

    fn from_u8(v: u8) -> Color {
        match v {
            1 => Color::Green,
            2 => Color::Yellow,
            3 => Color::Red,
            _ => Color::White,
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            Color::White => 0,
            Color::Green => 1,
            Color::Yellow => 2,
            Color::Red => 3,
        }
    }
}

/// Which side of a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The source.
    Source,
    /// The destination.
    Destination,
}

impl Side {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Source => "source",
            Side::Destination => "destination",
        }
    }
}

/// Most peer addresses remembered per side (a server may have hundreds of clients).
const MAX_PEERS_SHOWN: usize = 16;

/// How far a relay receiver is behind its sender, as the sender last reported it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RelayLag {
    /// Records waiting at the sender.
    pub messages: u64,
    /// Age of the newest record received (0 when the sender has nothing more waiting).
    pub seconds: f64,
}

/// Live status of one side.
#[derive(Debug, Default)]
pub struct SideStatus {
    color: AtomicU8,
    detail: Mutex<String>,
    peers: Mutex<Vec<String>>,
    connections: AtomicU64,
    lag: Mutex<Option<RelayLag>>,
    /// A serial side whose driver counts line errors: the errors since the pair started.
    line_errors: Mutex<Option<LineErrors>>,
    /// Woken whenever the colour or detail changes (failover watches the destination).
    changed: tokio::sync::Notify,
}

impl SideStatus {
    /// Sets the colour and a one-line description ("listening on 0.0.0.0:5000").
    pub fn set(&self, color: Color, detail: impl Into<String>) {
        self.color.store(color.to_u8(), Ordering::Release);
        *lock(&self.detail) = detail.into();
        self.changed.notify_waiters();
    }

    /// Resolves at the next [`SideStatus::set`].
    pub(crate) async fn changed(&self) {
        self.changed.notified().await;
    }

    /// The colour.
    pub fn color(&self) -> Color {
        Color::from_u8(self.color.load(Ordering::Acquire))
    }

    /// A peer connected.
    pub fn peer_up(&self, peer: &str) {
        self.connections.fetch_add(1, Ordering::AcqRel);
        let mut p = lock(&self.peers);
        if p.len() < MAX_PEERS_SHOWN {
            p.push(peer.to_string());
        }
    }

    /// A peer went away.
    pub fn peer_down(&self, peer: &str) {
        let _ = self
            .connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| c.checked_sub(1));
        let mut p = lock(&self.peers);
        if let Some(i) = p.iter().position(|x| x == peer) {
            p.remove(i);
        }
    }

    /// Connected peers right now.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Acquire)
    }

    /// Records the relay lag (a relay receiver; `None` when not relaying).
    pub fn set_lag(&self, lag: Option<RelayLag>) {
        *lock(&self.lag) = lag;
    }

    /// A serial port's driver counts line errors: adds those it counted since the last call
    /// (all zero the first time, which shows the counters as available).
    pub(crate) fn add_line_errors(&self, more: LineErrors) {
        let mut l = lock(&self.line_errors);
        *l = Some(l.unwrap_or_default().plus(more));
    }

    /// What the side is doing, as shown.
    pub(crate) fn detail(&self) -> String {
        lock(&self.detail).clone()
    }

    fn snapshot(&self) -> SideSnapshot {
        SideSnapshot {
            color: self.color(),
            detail: lock(&self.detail).clone(),
            peers: lock(&self.peers).clone(),
            connections: self.connections(),
            lag: *lock(&self.lag),
            line_errors: *lock(&self.line_errors),
        }
    }

    fn clear(&self) {
        self.connections.store(0, Ordering::Release);
        lock(&self.peers).clear();
        *lock(&self.lag) = None;
    }
}

/// A frame or message that was not passed on: kept (bounded) for operators.
#[derive(Debug, Clone)]
pub struct Rejected {
    /// When.
    pub at: SystemTime,
    /// Where.
    pub side: Side,
    /// Why (e.g. "oversize", "malformed: bytes outside a frame", "undeliverable: …").
    pub reason: String,
    /// Its full size in bytes.
    pub len: u64,
    /// Hex preview of its first bytes.
    pub preview: String,
    /// Sequence number, for an undeliverable buffered message.
    pub seq: Option<u64>,
    /// The peer that sent it.
    pub peer: Option<String>,
}

/// How many rejections are kept per pair.
pub const MAX_REJECTED_KEPT: usize = 64;

/// Counters and status of one pair.
#[derive(Debug, Default)]
pub struct PairStats {
    /// Messages accepted (durably stored).
    pub received: AtomicU64,
    /// Payload bytes accepted.
    pub received_bytes: AtomicU64,
    /// Messages delivered and confirmed (Done).
    pub sent: AtomicU64,
    /// Payload bytes delivered.
    pub sent_bytes: AtomicU64,
    /// Messages refused because the buffer was full (answered with a NAK, or UDP datagrams).
    pub refused: AtomicU64,
    /// Frames rejected by framing (oversize, malformed) and undeliverable messages.
    pub rejected: AtomicU64,
    /// Errors: failed connections, deliveries, acknowledgements.
    pub errors: AtomicU64,
    /// Deliveries repeated after a failure (possible duplicates at the receiver).
    pub retries: AtomicU64,
    /// Connections refused because of the connection limit.
    pub connections_refused: AtomicU64,
    /// Relayed records received again and dropped (the buffer had them already).
    pub duplicates_dropped: AtomicU64,
    /// `modbus` sources: polls that failed (an exception, no answer, a transport error); none
    /// of them stored anything. Also counted in `errors`.
    pub modbus_poll_errors: AtomicU64,
    /// The buffer refused data recently (storage full).
    pub full: AtomicBool,
    /// Bytes the last refused append needed: storage counts as full while that much does not
    /// fit (see `storage_alarm`), so the alarm clears as delivery frees space.
    pub full_need: AtomicU64,
    /// Times the buffer failed (write or sync error) and was reopened.
    pub heals: AtomicU64,
    /// Messages parked now (dead-letter policy): refused too often, set aside.
    pub parked: AtomicU64,
    /// Source side status.
    pub source: SideStatus,
    /// Destination side status.
    pub destination: SideStatus,
    /// Which destination delivers (pairs with backup destinations only).
    pub failover: Mutex<Option<FailoverState>>,
    last_error: Mutex<Option<(SystemTime, Side, String)>>,
    rejected_log: Mutex<VecDeque<Rejected>>,
    /// Messages marked Done without delivery because this destination cannot carry them
    /// (see `destination::stream::undeliverable`), since the pair's counters started. Also
    /// counted in `rejected`, which mixes them with the source's framing rejections; the
    /// pair's accounting needs them apart.
    pub undeliverable: AtomicU64,
    /// Messages parked (dead-letter policy) since the pair's counters started: `parked` is
    /// how many are parked *now*, which re-sends and discards lower, so the accounting needs
    /// this one.
    pub parked_total: AtomicU64,
}

/// Which destination delivers, for a pair with backup destinations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailoverState {
    /// 0: the primary destination; `n`: the `n`-th backup (`failover[n - 1]`).
    pub active: usize,
    /// Destinations in all (the primary and its backups).
    pub destinations: usize,
    /// The active destination's type (`tcp_client`, …).
    pub active_type: &'static str,
    /// Since when the active destination is in use.
    pub since: SystemTime,
    /// Switches since the pair started.
    pub switches: u64,
    /// Why the last switch happened.
    pub reason: Option<String>,
}

/// A copy of a pair's failover state.
pub(crate) fn lock_failover(stats: &PairStats) -> Option<FailoverState> {
    lock(&stats.failover).clone()
}

/// Locks one of the stats' mutexes (a poisoned lock still holds valid data).
pub(crate) fn lock_mutex<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    lock(m)
}

/// A copy of one side's status.
#[derive(Debug, Clone, PartialEq)]
pub struct SideSnapshot {
    /// Connection colour.
    pub color: Color,
    /// What it is doing.
    pub detail: String,
    /// Connected peers (at most 16 shown).
    pub peers: Vec<String>,
    /// Number of connected peers.
    pub connections: u64,
    /// A relay receiver: how far behind its sender it is.
    pub lag: Option<RelayLag>,
    /// A serial side whose driver counts them (Linux `TIOCGICOUNT`): line errors since the
    /// pair started. `None` for other sides and drivers without counters.
    pub line_errors: Option<LineErrors>,
}

/// Errors a serial port's UART counted: what a wrong baud rate, parity or a noisy RS-485 bus
/// leave behind. Without them such faults arrive as silent garbage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LineErrors {
    /// Characters lost because the UART's receive register was not read in time.
    pub overrun: u64,
    /// Characters with a wrong parity bit.
    pub parity: u64,
    /// Characters without a valid stop bit (typically a wrong baud rate).
    pub framing: u64,
    /// Break conditions (the line held low longer than a character).
    pub breaks: u64,
    /// Characters lost because the driver's buffer was full.
    pub buffer_overrun: u64,
}

impl LineErrors {
    /// Every error counted.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.overrun + self.parity + self.framing + self.breaks + self.buffer_overrun
    }

    /// Each kind with its count, in Prometheus label order.
    #[must_use]
    pub fn kinds(&self) -> [(&'static str, u64); 5] {
        [
            ("overrun", self.overrun),
            ("parity", self.parity),
            ("framing", self.framing),
            ("break", self.breaks),
            ("buffer_overrun", self.buffer_overrun),
        ]
    }

    #[must_use]
    pub(crate) fn plus(self, o: LineErrors) -> LineErrors {
        LineErrors {
            overrun: self.overrun + o.overrun,
            parity: self.parity + o.parity,
            framing: self.framing + o.framing,
            breaks: self.breaks + o.breaks,
            buffer_overrun: self.buffer_overrun + o.buffer_overrun,
        }
    }

    /// What was counted since `earlier` (a counter that went back — a driver reset — counts
    /// from zero).
    #[must_use]
    pub(crate) fn since(self, earlier: LineErrors) -> LineErrors {
        let d = |now: u64, then: u64| if now >= then { now - then } else { now };
        LineErrors {
            overrun: d(self.overrun, earlier.overrun),
            parity: d(self.parity, earlier.parity),
            framing: d(self.framing, earlier.framing),
            breaks: d(self.breaks, earlier.breaks),
            buffer_overrun: d(self.buffer_overrun, earlier.buffer_overrun),
        }
    }

    /// "3 framing, 1 parity": the kinds counted, for operators.
    #[must_use]
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self
            .kinds()
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| format!("{n} {}", k.replace('_', " ")))
            .collect();
        parts.join(", ")
    }
}

impl PairStats {
    /// The buffer refused an append of `needed` bytes (storage full).
    pub(crate) fn set_full(&self, needed: u64) {
        self.full_need.store(needed, Ordering::Relaxed);
        self.full.store(true, Ordering::Relaxed);
    }

    /// The buffer took an append.
    pub(crate) fn clear_full(&self) {
        self.full.store(false, Ordering::Relaxed);
    }

    /// The status of one side.
    pub fn side(&self, side: Side) -> &SideStatus {
        match side {
            Side::Source => &self.source,
            Side::Destination => &self.destination,
        }
    }

    /// Records an error: counted, remembered as the last error, logged.
    ///
    /// The log gets a warning when the error differs from the side's previous one; the same
    /// error again (a reconnect failing the same way every backoff step) is logged at debug
    /// level and only counted, so an outage does not flood the log.
    pub fn error(&self, pair: &str, side: Side, message: impl Into<String>) {
        let message = message.into();
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut last = lock(&self.last_error);
        let repeat = last.as_ref().is_some_and(|(_, s, m)| *s == side && *m == message);
        if repeat {
            tracing::debug!(pair, side = side.as_str(), "again: {message}");
        } else {
            tracing::warn!(pair, side = side.as_str(), "{message}");
        }
        *last = Some((SystemTime::now(), side, message));
    }

    /// Keeps a rejection for operators (the oldest goes when the list is full) and logs it.
    pub fn reject(&self, pair: &str, r: Rejected) {
        tracing::warn!(
            pair,
            side = r.side.as_str(),
            len = r.len,
            seq = r.seq,
            peer = r.peer.as_deref(),
            "rejected: {}; first bytes: {}",
            r.reason,
            r.preview
        );
        self.rejected.fetch_add(1, Ordering::Relaxed);
        let mut log = lock(&self.rejected_log);
        if log.len() == MAX_REJECTED_KEPT {
            log.pop_front();
        }
        log.push_back(r);
    }

    /// The kept rejections, oldest first.
    pub fn rejections(&self) -> Vec<Rejected> {
        lock(&self.rejected_log).iter().cloned().collect()
    }

    /// The last error, with when and where.
    pub fn last_error(&self) -> Option<(SystemTime, Side, String)> {
        lock(&self.last_error).clone()
    }

    /// Both sides stopped.
    pub fn mark_stopped(&self) {
        for s in [&self.source, &self.destination] {
            s.set(Color::White, "stopped");
            s.clear();
        }
    }

    pub(crate) fn side_snapshots(&self) -> (SideSnapshot, SideSnapshot) {
        (self.source.snapshot(), self.destination.snapshot())
    }
}

/// Everything the portals show about one pair.
#[derive(Debug, Clone)]
pub struct PairSnapshot {
    /// Pair id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Configured to run.
    pub enabled: bool,
    /// Source type (`tcp_server`, …).
    pub source_type: &'static str,
    /// Destination type.
    pub destination_type: &'static str,
    /// Source side status.
    pub source: SideSnapshot,
    /// Destination side status.
    pub destination: SideSnapshot,
    /// Buffer state colour: white empty, green flowing, yellow backlog or above 80 %, red full
    /// or unable to store.
    pub buffer: Color,
    /// Channel colour: green running, yellow degraded, red error, white stopped.
    pub channel: Color,
    /// Messages accepted.
    pub received: u64,
    /// Bytes accepted.
    pub received_bytes: u64,
    /// Messages delivered (Done).
    pub sent: u64,
    /// Bytes delivered.
    pub sent_bytes: u64,
    /// Stored, waiting for delivery.
    pub pending: u64,
    /// Being delivered.
    pub in_flight: u64,
    /// Delivered and still retained.
    pub done: u64,
    /// Buffer bytes on disk.
    pub buffer_bytes: u64,
    /// Refused because the buffer was full.
    pub refused: u64,
    /// Rejected by framing or undeliverable.
    pub rejected: u64,
    /// Errors.
    pub errors: u64,
    /// Repeated deliveries.
    pub retries: u64,
    /// Connections refused by the connection limit.
    pub connections_refused: u64,
    /// Relayed records received again and dropped.
    pub duplicates_dropped: u64,
    /// Messages parked now (the dead-letter policy set them aside).
    pub parked: u64,
    /// `modbus` sources: failed polls (exceptions, timeouts, transport errors).
    pub modbus_poll_errors: u64,
    /// Which destination delivers (pairs with backup destinations only).
    pub failover: Option<FailoverState>,
    /// Age of the oldest message not yet delivered.
    pub oldest_pending_age: Option<Duration>,
    /// The last error: when, which side, what.
    pub last_error: Option<(SystemTime, Side, String)>,
    /// Why the buffer failed, if it did.
    pub buffer_failure: Option<String>,
    /// Times the buffer failed and was reopened (healed).
    pub buffer_heals: u64,
    /// Storage is full and the source refuses or holds back data: why (the pair's own limit,
    /// `max_storage_mb`, or the disk). Clears by itself as delivery frees space.
    pub storage_alarm: Option<String>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Status strings and lists stay consistent at every step; a panic elsewhere must not
    // take the status display down with it.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Hex preview of the first bytes: `"0b 4d 53 48 | .MSH"` style, at most 32 bytes shown.
pub fn hex_preview(bytes: &[u8]) -> String {
    const SHOW: usize = 32;
    let shown = &bytes[..bytes.len().min(SHOW)];
    let hex: Vec<String> = shown.iter().map(|b| format!("{b:02x}")).collect();
    let text: String = shown
        .iter()
        .map(|&b| if b.is_ascii_graphic() || b == b' ' { b as char } else { '.' })
        .collect();
    let more = if bytes.len() > SHOW { " …" } else { "" };
    format!("{}{more} | {text}", hex.join(" "))
}
