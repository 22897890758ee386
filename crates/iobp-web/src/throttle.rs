//! Login throttling that holds under concurrency and cannot be turned against the users it
//! protects.
//!
//! Contract:
//! - **An attempt is reserved before its password is hashed** ([`LoginThrottle::reserve`])
//!   and counted as a failure from that moment; a success takes the count back. So a burst
//!   of simultaneous attempts sees its own earlier members: no more than [`FREE_FAILURES`]
//!   attempts of one user name from one address reach the hash before the delays start,
//!   however many arrive at once, and at most [`IN_FLIGHT_PER_ADDRESS`] of an address's
//!   attempts are being hashed at any moment.
//! - **Delays are per (user name, address)**: after the free failures, each further attempt
//!   must wait twice as long as the previous one (1 s, 2 s, 4 s … up to [`MAX_DELAY`]). A
//!   correct password from an address that has not failed is never delayed by failures
//!   elsewhere — there is no per-user lockout that an attacker could trigger from afar.
//! - **An address that sprays many user names** slows down as a whole after
//!   [`FREE_ADDRESS_FAILURES`] failures — except for (user, address) pairs that logged in
//!   successfully within [`TRUST_PERIOD`]: a relay site behind a shared NAT keeps getting
//!   its tokens while someone else behind the same NAT guesses.
//! - IPv6 addresses count per /64 (one subscriber's whole prefix), IPv4 per address.
//! - Memory is bounded: at most [`MAX_KEYS`] records of each kind; stale ones are dropped
//!   first, then the oldest.
//! - The hash itself is bounded separately (`auth::Passwords`): at most
//!   `HASHING_AT_ONCE` at a time and [`MAX_WAITING`] waiting in line, first come first
//!   served, so a flood from many addresses delays a legitimate login by a bounded amount
//!   rather than starving it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Failures of one user name from one address before attempts slow down.
pub const FREE_FAILURES: u32 = 5;
/// Failures of one address (all user names) before the address slows down.
pub const FREE_ADDRESS_FAILURES: u32 = 30;
/// Failures older than this are forgotten.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Longest delay between attempts.
pub const MAX_DELAY: Duration = Duration::from_secs(300);
/// Attempts of one address being checked at the same moment.
pub const IN_FLIGHT_PER_ADDRESS: u32 = 2;
/// Attempts waiting for a hashing slot, all addresses together; more are refused (busy).
pub const MAX_WAITING: usize = 64;
/// How long a successful login of a user from an address exempts it from that address's
/// failures.
pub const TRUST_PERIOD: Duration = Duration::from_secs(24 * 3600);
/// Most records kept per kind.
const MAX_KEYS: usize = 10_000;

/// The address key: IPv4 as is, IPv6 by its /64 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    V4([u8; 4]),
    V6([u8; 8]),
    Unknown,
}

fn source(ip: Option<IpAddr>) -> Source {
    match ip.map(|ip| ip.to_canonical()) {
        Some(IpAddr::V4(v4)) => Source::V4(v4.octets()),
        Some(IpAddr::V6(v6)) => {
            let o = v6.octets();
            let mut p = [0u8; 8];
            p.copy_from_slice(&o[..8]);
            Source::V6(p)
        }
        None => Source::Unknown,
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    /// No attempt before this.
    next: Option<Instant>,
}

impl Failures {
    fn new(now: Instant) -> Failures {
        Failures { count: 0, last: now, next: None }
    }

    fn waiting(&self, now: Instant) -> Option<Duration> {
        self.next.filter(|&t| t > now).map(|t| t - now)
    }

    /// Counts one more failure, starting the delay once `free` are used up.
    fn add(&mut self, now: Instant, free: u32) {
        if now.duration_since(self.last) > FAILURE_WINDOW {
            *self = Failures::new(now);
        }
        self.count += 1;
        self.last = now;
        if self.count >= free {
            let exp = (self.count - free).min(16);
            self.next = Some(now + Duration::from_secs(1u64 << exp).min(MAX_DELAY));
        }
    }

    /// Takes one failure back (a reserved attempt that succeeded).
    fn remove(&mut self, free: u32) {
        self.count = self.count.saturating_sub(1);
        if self.count < free {
            self.next = None;
        }
    }
}

#[derive(Debug, Default)]
struct State {
    pairs: HashMap<(String, Source), Failures>,
    addresses: HashMap<Source, Failures>,
    in_flight: HashMap<Source, u32>,
    trusted: HashMap<(String, Source), Instant>,
}

/// Why an attempt may not go ahead now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Too many failures: retry after this many seconds.
    Wait(u64),
    /// This address has attempts being checked already, or too many logins wait for a
    /// hashing slot: retry in a moment.
    Busy,
}

/// Slows down failed logins; see the module documentation.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    state: Arc<Mutex<State>>,
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn bound<K: Clone + Eq + std::hash::Hash, V>(
    map: &mut HashMap<K, V>,
    now: Instant,
    age: impl Fn(&V) -> Instant,
    keep: Duration,
) {
    if map.len() < MAX_KEYS {
        return;
    }
    map.retain(|_, v| now.duration_since(age(v)) < keep);
    if map.len() >= MAX_KEYS {
        // Still full of live records (a flood of distinct keys): drop the oldest half.
        let mut ages: Vec<Instant> = map.values().map(&age).collect();
        ages.sort_unstable();
        let cut = ages[ages.len() / 2];
        map.retain(|_, v| age(v) > cut);
    }
}

impl LoginThrottle {
    /// Reserves an attempt of `user` from `ip`, counted as failed until
    /// [`Attempt::succeeded`] says otherwise.
    pub fn reserve(&self, user: &str, ip: Option<IpAddr>) -> Result<Attempt, Refusal> {
        let now = Instant::now();
        let src = source(ip);
        let user = user.to_lowercase();
        let key = (user, src);
        let mut st = lock(&self.state);
        let pair_wait = st.pairs.get(&key).and_then(|f| f.waiting(now));
        let trusted = st.trusted.get(&key).is_some_and(|&t| now.duration_since(t) < TRUST_PERIOD);
        let address_wait =
            if trusted { None } else { st.addresses.get(&src).and_then(|f| f.waiting(now)) };
        if let Some(wait) = pair_wait.max(address_wait) {
            return Err(Refusal::Wait(wait.as_secs().max(1)));
        }
        if st.in_flight.get(&src).copied().unwrap_or(0) >= IN_FLIGHT_PER_ADDRESS {
            return Err(Refusal::Busy);
        }
        bound(&mut st.pairs, now, |f| f.last, FAILURE_WINDOW);
        bound(&mut st.addresses, now, |f| f.last, FAILURE_WINDOW);
        bound(&mut st.trusted, now, |t| *t, TRUST_PERIOD);
        st.pairs.entry(key.clone()).or_insert_with(|| Failures::new(now)).add(now, FREE_FAILURES);
        st.addresses
            .entry(src)
            .or_insert_with(|| Failures::new(now))
            .add(now, FREE_ADDRESS_FAILURES);
        *st.in_flight.entry(src).or_insert(0) += 1;
        Ok(Attempt { state: self.state.clone(), key, done: false })
    }
}

/// A reserved login attempt. Dropped without [`Attempt::succeeded`], it stays a failure.
#[derive(Debug)]
pub struct Attempt {
    state: Arc<Mutex<State>>,
    key: (String, Source),
    done: bool,
}

impl Attempt {
    /// The password was right: the reserved failure is taken back, the user's failures from
    /// this address are forgotten, and the pair is trusted at this address.
    pub fn succeeded(mut self) {
        let mut st = lock(&self.state);
        st.pairs.remove(&self.key);
        if let Some(f) = st.addresses.get_mut(&self.key.1) {
            f.remove(FREE_ADDRESS_FAILURES);
        }
        st.trusted.insert(self.key.clone(), Instant::now());
        Self::leave(&mut st, self.key.1);
        self.done = true;
    }

    fn leave(st: &mut State, src: Source) {
        if let Some(n) = st.in_flight.get_mut(&src) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                st.in_flight.remove(&src);
            }
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.done {
            Self::leave(&mut lock(&self.state), self.key.1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::unnecessary_wraps)] // reserve() takes an Option
    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().expect("ip"))
    }

    #[test]
    fn a_concurrent_burst_sees_its_own_reservations() {
        let t = LoginThrottle::default();
        let a = ip("10.0.0.1");
        let first = t.reserve("admin", a).expect("first");
        let second = t.reserve("admin", a).expect("second");
        assert_eq!(t.reserve("admin", a).err(), Some(Refusal::Busy), "two in flight per address");
        drop((first, second));
        // Sequential failures: the free ones, then delays.
        for _ in 2..FREE_FAILURES {
            drop(t.reserve("admin", a).expect("free"));
        }
        assert!(matches!(t.reserve("admin", a), Err(Refusal::Wait(1))));
        // Another address is not affected, nor another user name at this address.
        assert!(t.reserve("admin", ip("10.0.0.2")).is_ok());
        assert!(t.reserve("bob", a).is_ok());
    }

    #[test]
    fn a_success_takes_its_reservation_back_and_is_trusted_at_a_busy_address() {
        let t = LoginThrottle::default();
        let nat = ip("192.0.2.1");
        t.reserve("site-b", nat).expect("relay login").succeeded();
        for i in 0..FREE_ADDRESS_FAILURES {
            drop(t.reserve(&format!("guess-{i}"), nat).expect("spray"));
        }
        assert!(matches!(t.reserve("someone", nat), Err(Refusal::Wait(_))), "address slowed");
        let again = t.reserve("SITE-B", nat).expect("trusted pair passes");
        again.succeeded();
        assert!(t.reserve("site-b", nat).is_ok(), "a success leaves no failure behind");
    }

    #[test]
    fn ipv6_counts_per_64() {
        let t = LoginThrottle::default();
        for i in 0..FREE_FAILURES {
            drop(t.reserve("admin", ip(&format!("2001:db8:1:2::{i:x}"))).expect("free"));
        }
        assert!(t.reserve("admin", ip("2001:db8:1:2::ffff")).is_err(), "same /64");
        assert!(t.reserve("admin", ip("2001:db8:1:3::1")).is_ok(), "another /64");
        // IPv4-mapped addresses are the IPv4 address.
        for _ in 0..FREE_FAILURES {
            drop(t.reserve("x", ip("::ffff:10.9.9.9")).expect("free"));
        }
        assert!(t.reserve("x", ip("10.9.9.9")).is_err());
    }

    #[test]
    fn delays_double_and_are_capped() {
        let now = Instant::now();
        let mut f = Failures::new(now);
        let waits: Vec<u64> = (0..FREE_FAILURES + 12)
            .map(|_| {
                f.add(now, FREE_FAILURES);
                f.waiting(now).map_or(0, |d| d.as_secs())
            })
            .collect();
        assert_eq!(&waits[..8], &[0, 0, 0, 0, 1, 2, 4, 8]);
        assert_eq!(*waits.last().expect("last"), MAX_DELAY.as_secs());
    }

    #[test]
    fn memory_is_bounded_under_a_flood_of_distinct_names() {
        let t = LoginThrottle::default();
        for i in 0..u32::try_from(3 * MAX_KEYS).expect("small") {
            let a = Some(IpAddr::from((10u32 << 24 | i).to_be_bytes()));
            drop(t.reserve(&format!("u{i}"), a));
        }
        let st = lock(&t.state);
        assert!(st.pairs.len() <= MAX_KEYS && st.addresses.len() <= MAX_KEYS);
        assert!(st.in_flight.is_empty(), "dropped attempts leave nothing in flight");
    }
}
