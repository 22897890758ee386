//! Free TCP ports on 127.0.0.1 for instances, pairs and receivers that a test or the benchmark
//! starts, each port handed out at most once per process.
//!
//! Why a register: the system may hand out the same free port twice while neither caller has
//! bound it yet (two pairs, or a pair and a portal, would then share a port). Every port
//! [`free_port`] and [`hold_ports`] return is remembered, and one the system offers again is
//! skipped.

use std::collections::BTreeSet;
use std::io;
use std::net::TcpListener;
use std::sync::{Mutex, PoisonError};

/// The ports handed out in this process.
static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A free port on 127.0.0.1, never one this process was handed before. Nothing holds it: bind
/// it soon.
pub fn free_port() -> io::Result<u16> {
    let mut given = GIVEN.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        if given.insert(port) {
            return Ok(port);
        }
    }
}

/// `n` distinct free ports on 127.0.0.1, each held (bound) until the caller drops its
/// listener: for more ports than can be picked one by one without the system handing one out
/// again meanwhile. Never a port this process was handed before.
pub fn hold_ports(n: usize) -> io::Result<Vec<(u16, TcpListener)>> {
    let mut given = GIVEN.lock().unwrap_or_else(PoisonError::into_inner);
    let mut held = Vec::with_capacity(n);
    // Ports handed out before stay bound here until the end, so that the system does not
    // offer them again in this loop.
    let mut skipped = Vec::new();
    while held.len() < n {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        if given.insert(port) {
            held.push((port, listener));
        } else {
            skipped.push(listener);
        }
    }
    Ok(held)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_never_handed_out_twice() {
        let mut seen = BTreeSet::new();
        for _ in 0..200 {
            assert!(seen.insert(free_port().expect("free port")));
        }
        let held = hold_ports(200).expect("held ports");
        for (port, listener) in &held {
            assert!(seen.insert(*port), "port {port} handed out twice");
            assert_eq!(listener.local_addr().expect("addr").port(), *port);
        }
    }
}
