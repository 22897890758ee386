//! What the portals may hold, so that a flood of connections can never take what the channel
//! pairs need (issue 11, item 3). Measured on an older release: 20,000 idle connections took
//! every descriptor of the process; both portals stopped answering and pair destinations
//! failed with "Too many open files".
//!
//! Contract:
//! - A portal holds at most [`PortalLimits::per_portal`] connections, and at most
//!   [`PortalLimits::per_address`] from one source address (an IPv6 client: its /64, which one
//!   host can fill with addresses). A connection past either is closed at once.
//! - A full portal still lets a lighter client in: a new connection replaces the oldest one
//!   that has not sent a complete request yet (a partial request line, a slow header, a TLS
//!   handshake) from the address holding the most, if that address holds at least two more
//!   than the newcomer's. A flood from many addresses cannot lock an operator's browser or a
//!   monitoring check out; connections that carry a request (API calls, SSE streams, relay
//!   links) are never replaced.
//! - A connection counts from its accept to its close: during a TLS handshake, while upgraded
//!   (a relay link) and while it carries an SSE stream ([`ConnectionPermit`] travels with it).
//! - Both portals together hold at most half of the process's open-file limit
//!   ([`PortalLimits::within_fd_limit`]); the other half is the pairs' (sockets, buffer
//!   segments, the store).
//! - SSE streams: at most [`PortalLimits::streams_per_user`] per user and
//!   [`PortalLimits::streams`] in the process ([`StreamSlots`]); each stream serialises every
//!   pair's status every second, so their number is a CPU bound as well.
//!
//! Counting is exact and cheap (one mutex per portal, taken at accept and at close); an
//! address's entry is removed with its last connection, so the table never outgrows the
//! connections held.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;

use crate::Portal;

/// Limits of the portals (both use the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortalLimits {
    /// Connections one portal holds at most.
    pub per_portal: usize,
    /// Connections one source address (IPv6: one /64) holds at most on one portal.
    pub per_address: usize,
    /// SSE streams one user holds at most (both portals together).
    pub streams_per_user: usize,
    /// SSE streams the process holds at most.
    pub streams: usize,
    /// Time a client has for a request's line and headers, including the wait for the next
    /// request on a kept-alive connection.
    pub header_read_timeout: Duration,
    /// A connection on which nothing is read or written for this long is closed (a stalled
    /// request body; a client that stopped reading its SSE stream). SSE streams send a comment
    /// every 15 s and relay links a ping well within this, so live ones never qualify.
    pub idle_timeout: Duration,
}

impl Default for PortalLimits {
    fn default() -> Self {
        PortalLimits {
            // Far above what a site's operators and a few relay links use; a few MiB of
            // buffers at most.
            per_portal: 512,
            per_address: 64,
            // A browser tab holds one stream; eight allow several tabs and windows.
            streams_per_user: 8,
            streams: 256,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

impl PortalLimits {
    /// These limits, lowered where needed so that both portals together hold at most half of
    /// `nofile` descriptors (the process's open-file limit): a quarter for each portal, and
    /// a quarter of that per address.
    #[must_use]
    pub fn within_fd_limit(mut self, nofile: u64) -> Self {
        let quarter = usize::try_from(nofile / 4).unwrap_or(usize::MAX).max(1);
        self.per_portal = self.per_portal.clamp(1, quarter);
        self.per_address = self.per_address.clamp(1, self.per_portal.div_ceil(4));
        self
    }

    /// Descriptors both portals may hold together.
    pub fn portal_descriptors(&self) -> usize {
        self.per_portal.saturating_mul(2)
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The portal holds its maximum, none of them waiting for a first request from an
    /// address holding more than this one.
    #[error("the portal holds its maximum of {0} connections")]
    PortalFull(usize),
    /// The source address holds its maximum.
    #[error("the address holds its maximum of {0} connections")]
    AddressFull(usize),
}

/// A source address as counted: IPv4 as is (an IPv4-mapped IPv6 address too), IPv6 by /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct AddressKey(IpAddr);

impl AddressKey {
    fn of(ip: IpAddr) -> AddressKey {
        match ip {
            IpAddr::V4(_) => AddressKey(ip),
            IpAddr::V6(v6) => {
                if let Some(v4) = v6.to_ipv4_mapped() {
                    return AddressKey(IpAddr::V4(v4));
                }
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                AddressKey(IpAddr::V6(Ipv6Addr::from(prefix)))
            }
        }
    }
}

/// What the gate and a connection's task share.
#[derive(Debug, Default)]
pub struct ConnectionSignals {
    /// Set once a complete request head arrived: from then on the connection is never
    /// replaced (it may be an SSE stream, a relay link, a slow download).
    requested: AtomicBool,
    /// Notified when the gate replaced the connection: its task must close it.
    evicted: Notify,
}

impl ConnectionSignals {
    /// Notes that a complete request arrived on the connection.
    pub fn requested(&self) {
        self.requested.store(true, Ordering::Relaxed);
    }

    /// Resolves when the gate replaced the connection by a newer one.
    pub async fn evicted(&self) {
        self.evicted.notified().await;
    }
}

#[derive(Debug, Default)]
struct Held {
    total: usize,
    by_address: HashMap<AddressKey, usize>,
    /// Every connection held, oldest first (ids grow).
    conns: BTreeMap<u64, (AddressKey, Arc<ConnectionSignals>)>,
}

impl Held {
    fn remove(&mut self, id: u64) -> Option<Arc<ConnectionSignals>> {
        let (key, signals) = self.conns.remove(&id)?;
        self.total = self.total.saturating_sub(1);
        if let Some(n) = self.by_address.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                self.by_address.remove(&key);
            }
        }
        Some(signals)
    }

    /// The connection to replace for a newcomer whose address holds `newcomer` connections:
    /// the oldest one without a request yet from the address holding the most, if that address
    /// holds at least two more than the newcomer's (so that addresses that both flood only
    /// trade places with each other, never churn).
    fn victim(&self, newcomer: usize) -> Option<u64> {
        let mut best: Option<(usize, u64)> = None;
        for (&id, (key, signals)) in &self.conns {
            if signals.requested.load(Ordering::Relaxed) {
                continue;
            }
            let weight = self.by_address.get(key).copied().unwrap_or(0);
            if best.is_none_or(|(w, _)| weight > w) {
                best = Some((weight, id));
            }
        }
        best.filter(|&(w, _)| w >= newcomer + 2).map(|(_, id)| id)
    }
}

/// The connections one portal holds: admits, replaces or refuses each new one.
#[derive(Debug)]
pub struct ConnectionGate {
    portal: Portal,
    limits: PortalLimits,
    held: Mutex<Held>,
    next_id: AtomicU64,
    refused: AtomicU64,
    evicted: AtomicU64,
    closed: AtomicU64,
}

impl ConnectionGate {
    /// A gate for `portal` with `limits`.
    pub fn new(portal: Portal, limits: PortalLimits) -> Arc<ConnectionGate> {
        Arc::new(ConnectionGate {
            portal,
            limits,
            held: Mutex::default(),
            next_id: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            closed: AtomicU64::new(0),
        })
    }

    /// Admits a connection from `ip`, or says why not (and counts the refusal). When the
    /// portal is full, the newcomer replaces a connection that has not sent a request yet
    /// from an address holding more (see [`ConnectionSignals::evicted`]).
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionPermit, Refusal> {
        let key = AddressKey::of(ip);
        let mut held = self.lock();
        let of_address = held.by_address.get(&key).copied().unwrap_or(0);
        let refusal = if of_address >= self.limits.per_address {
            Some(Refusal::AddressFull(self.limits.per_address))
        } else if held.total >= self.limits.per_portal {
            match held.victim(of_address).and_then(|id| held.remove(id)) {
                Some(victim) => {
                    victim.evicted.notify_one();
                    self.evicted.fetch_add(1, Ordering::Relaxed);
                    None
                }
                None => Some(Refusal::PortalFull(self.limits.per_portal)),
            }
        } else {
            None
        };
        if let Some(r) = refusal {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(r);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let signals = Arc::new(ConnectionSignals::default());
        held.total += 1;
        *held.by_address.entry(key).or_insert(0) += 1;
        held.conns.insert(id, (key, signals.clone()));
        Ok(ConnectionPermit { gate: self.clone(), id, signals })
    }

    /// The portal.
    pub fn portal(&self) -> Portal {
        self.portal
    }

    /// The limits in force.
    pub fn limits(&self) -> PortalLimits {
        self.limits
    }

    /// Connections held now.
    pub fn open(&self) -> usize {
        self.lock().total
    }

    /// Source addresses (IPv6: /64 prefixes) with connections now.
    pub fn addresses(&self) -> usize {
        self.lock().by_address.len()
    }

    /// Connections refused since the start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Connections replaced by newer ones since the start.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Admitted connections closed since the start (replaced ones included).
    pub fn closed(&self) -> u64 {
        self.closed.load(Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One admitted connection; it leaves the count when dropped (or at once when replaced).
#[derive(Debug)]
pub struct ConnectionPermit {
    gate: Arc<ConnectionGate>,
    id: u64,
    signals: Arc<ConnectionSignals>,
}

impl ConnectionPermit {
    /// What the connection's task watches and reports.
    pub fn signals(&self) -> &Arc<ConnectionSignals> {
        &self.signals
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        // Nothing to do for a replaced connection: it left the count when replaced.
        let _ = self.gate.lock().remove(self.id);
        self.gate.closed.fetch_add(1, Ordering::Relaxed);
    }
}

/// Why an SSE stream was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamRefusal {
    /// The user holds the maximum.
    #[error(
        "user `{user}` already has {limit} live event streams open (close a browser tab or \
         window of the portal, or wait until a closed one is noticed)"
    )]
    User {
        /// The user.
        user: String,
        /// Streams per user.
        limit: usize,
    },
    /// The process holds the maximum.
    #[error("the server already serves {0} live event streams; try again later")]
    Process(usize),
}

#[derive(Debug, Default)]
struct Streams {
    total: usize,
    by_user: HashMap<String, usize>,
}

/// The SSE streams held, per user and in total.
#[derive(Debug)]
pub struct StreamSlots {
    per_user: usize,
    total: usize,
    held: Mutex<Streams>,
}

impl StreamSlots {
    /// Slots for `per_user` streams per user and `total` in the process.
    pub fn new(per_user: usize, total: usize) -> Arc<StreamSlots> {
        Arc::new(StreamSlots { per_user, total, held: Mutex::default() })
    }

    /// A slot for a stream of `user`, or why not.
    pub fn open(self: &Arc<Self>, user: &str) -> Result<StreamPermit, StreamRefusal> {
        let mut held = self.lock();
        if held.total >= self.total {
            return Err(StreamRefusal::Process(self.total));
        }
        let of_user = held.by_user.get(user).copied().unwrap_or(0);
        if of_user >= self.per_user {
            return Err(StreamRefusal::User { user: user.to_string(), limit: self.per_user });
        }
        held.total += 1;
        *held.by_user.entry(user.to_string()).or_insert(0) += 1;
        Ok(StreamPermit { slots: self.clone(), user: user.to_string() })
    }

    /// Streams held now.
    pub fn open_streams(&self) -> usize {
        self.lock().total
    }

    fn lock(&self) -> MutexGuard<'_, Streams> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One SSE stream's slot; freed when the stream ends (the client went away).
#[derive(Debug)]
pub struct StreamPermit {
    slots: Arc<StreamSlots>,
    user: String,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut held = self.slots.lock();
        held.total = held.total.saturating_sub(1);
        if let Some(n) = held.by_user.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                held.by_user.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use super::{ConnectionGate, PortalLimits, Refusal, StreamRefusal, StreamSlots};
    use crate::Portal;

    fn v4(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    fn limits(per_portal: usize, per_address: usize) -> PortalLimits {
        PortalLimits { per_portal, per_address, ..PortalLimits::default() }
    }

    #[test]
    fn an_address_holds_at_most_its_cap_and_gets_room_back_when_one_closes() {
        let gate = ConnectionGate::new(Portal::Ops, limits(100, 3));
        let mut held: Vec<_> = (0..3).map(|_| gate.admit(v4(1)).expect("admitted")).collect();
        assert_eq!(gate.admit(v4(1)).err(), Some(Refusal::AddressFull(3)));
        // Another address is not affected.
        let other = gate.admit(v4(2)).expect("another address");
        assert_eq!((gate.open(), gate.addresses(), gate.refused()), (4, 2, 1));
        drop(held.pop());
        let again = gate.admit(v4(1)).expect("room again");
        drop((again, other));
        assert_eq!((gate.open(), gate.addresses()), (2, 1));
    }

    fn is_evicted(p: &super::ConnectionPermit) -> bool {
        futures_util::FutureExt::now_or_never(p.signals().evicted()).is_some()
    }

    #[test]
    fn a_full_portal_replaces_a_waiting_connection_of_the_heaviest_address_for_a_lighter_one() {
        let gate = ConnectionGate::new(Portal::Mgmt, limits(8, 8));
        let heavy: Vec<_> = (0..6).map(|_| gate.admit(v4(1)).expect("heavy")).collect();
        let light: Vec<_> = (0..2).map(|_| gate.admit(v4(2)).expect("light")).collect();
        // Full. The oldest heavy connection carries a request: it is never replaced; the next
        // oldest makes room for a third address.
        heavy[0].signals().requested();
        let newcomer = gate.admit(v4(3)).expect("replaces a waiting connection");
        assert_eq!((gate.open(), gate.evicted()), (8, 1));
        assert!(!is_evicted(&heavy[0]) && is_evicted(&heavy[1]) && !is_evicted(&heavy[2]));
        // The light address gains while it holds two less than the heaviest...
        let light3 = gate.admit(v4(2)).expect("2 against 5");
        assert!(is_evicted(&heavy[2]));
        // ...and no further: flooding addresses trade places, they do not churn.
        assert_eq!(gate.admit(v4(2)).err(), Some(Refusal::PortalFull(8)));
        assert_eq!((gate.open(), gate.evicted(), gate.refused()), (8, 2, 1));
        // A replaced connection left the count when replaced, not again when it closes.
        drop(heavy);
        assert_eq!((gate.open(), gate.addresses(), gate.closed()), (4, 2, 6));
        drop((light, light3, newcomer));
        assert_eq!((gate.open(), gate.addresses()), (0, 0), "no entry outlives its connections");
    }

    #[test]
    fn connections_that_carry_a_request_are_never_replaced() {
        let gate = ConnectionGate::new(Portal::Ops, limits(4, 4));
        let held: Vec<_> = (0..4).map(|_| gate.admit(v4(1)).expect("held")).collect();
        for p in &held {
            p.signals().requested();
        }
        assert_eq!(gate.admit(v4(2)).err(), Some(Refusal::PortalFull(4)));
        assert!(held.iter().all(|p| !is_evicted(p)));
    }

    #[test]
    fn ipv6_clients_count_by_64_prefix_and_mapped_ipv4_as_ipv4() {
        let gate = ConnectionGate::new(Portal::Ops, limits(100, 2));
        let a: Ipv6Addr = "2001:db8:1:2::1".parse().expect("v6");
        let b: Ipv6Addr = "2001:db8:1:2:ffff::9".parse().expect("v6");
        let c: Ipv6Addr = "2001:db8:1:3::1".parse().expect("v6");
        let _p = (gate.admit(a.into()).expect("a"), gate.admit(b.into()).expect("b"));
        assert_eq!(gate.admit(a.into()).err(), Some(Refusal::AddressFull(2)), "same /64");
        let _q = gate.admit(c.into()).expect("another /64");
        let mapped = Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped();
        let _r = (gate.admit(mapped.into()).expect("mapped"), gate.admit(v4(1)).expect("v4"));
        assert_eq!(gate.admit(v4(1)).err(), Some(Refusal::AddressFull(2)), "same address");
    }

    #[test]
    fn the_portals_take_at_most_half_of_the_descriptors() {
        let d = PortalLimits::default();
        // A generous limit leaves the defaults alone.
        assert_eq!(d.within_fd_limit(1 << 20), d);
        let l = d.within_fd_limit(1024);
        assert_eq!((l.per_portal, l.per_address, l.portal_descriptors()), (256, 64, 512));
        let l = d.within_fd_limit(100);
        assert_eq!((l.per_portal, l.per_address), (25, 7));
        assert!(l.portal_descriptors() <= 50);
        // Even an absurd limit keeps a portal usable.
        let l = d.within_fd_limit(0);
        assert_eq!((l.per_portal, l.per_address), (1, 1));
    }

    #[test]
    fn sse_streams_are_bounded_per_user_and_per_process() {
        let slots = StreamSlots::new(2, 3);
        let a1 = slots.open("ann").expect("1");
        let _a2 = slots.open("ann").expect("2");
        assert!(matches!(slots.open("ann"), Err(StreamRefusal::User { limit: 2, .. })));
        let _b1 = slots.open("bob").expect("bob");
        assert_eq!(slots.open("cid").err(), Some(StreamRefusal::Process(3)));
        drop(a1);
        assert_eq!(slots.open_streams(), 2);
        let _c1 = slots.open("cid").expect("room again");
        let msg = slots.open("ann").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("live event streams"), "{msg}");
    }
}
