//! Free ports and loopback addresses for instances, pairs and receivers that a test or the
//! benchmark starts, each port handed out at most once per process.
//!
//! Why a register: the system may hand out the same free port twice while neither caller has
//! bound it yet (two pairs, or a pair and a portal, would then share a port). Every port this
//! module returns — TCP or UDP, on any address — is remembered, and one the system offers
//! again is skipped.
//!
//! [`free_port`], [`free_port_on`], [`free_udp_port_on`] and [`hold_ports`] return errors (the
//! benchmark reports them); [`tcp`], [`tcp_on`] and [`udp_on`] are the same for tests, which
//! have nothing better to do with an error than to fail.

use std::collections::BTreeSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};

/// The ports handed out in this process.
static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// Probes ports with `probe` until it finds one never handed out before.
fn unique(probe: impl Fn() -> io::Result<u16>) -> io::Result<u16> {
    let mut given = GIVEN.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        let port = probe()?;
        if given.insert(port) {
            return Ok(port);
        }
    }
}

/// A free TCP port on 127.0.0.1, never one this process was handed before. Nothing holds it:
/// bind it soon.
pub fn free_port() -> io::Result<u16> {
    free_port_on(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// A free TCP port on `ip`, never one this process was handed before. Nothing holds it.
pub fn free_port_on(ip: IpAddr) -> io::Result<u16> {
    unique(|| Ok(TcpListener::bind((ip, 0))?.local_addr()?.port()))
}

/// A free UDP port on `ip`, never one this process was handed before. Nothing holds it.
pub fn free_udp_port_on(ip: IpAddr) -> io::Result<u16> {
    unique(|| Ok(UdpSocket::bind((ip, 0))?.local_addr()?.port()))
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

/// [`free_port`] for tests.
///
/// # Panics
/// If no port can be probed (a broken test machine).
pub fn tcp() -> u16 {
    free_port().unwrap_or_else(|e| panic!("no free TCP port on 127.0.0.1: {e}"))
}

/// [`free_port_on`] for tests, `ip` in text (as pair configurations hold it).
///
/// # Panics
/// If `ip` is not an IP address or no port can be probed on it.
pub fn tcp_on(ip: &str) -> u16 {
    free_port_on(parse(ip)).unwrap_or_else(|e| panic!("no free TCP port on {ip}: {e}"))
}

/// [`free_udp_port_on`] for tests.
///
/// # Panics
/// If `ip` is not an IP address or no port can be probed on it.
pub fn udp_on(ip: &str) -> u16 {
    free_udp_port_on(parse(ip)).unwrap_or_else(|e| panic!("no free UDP port on {ip}: {e}"))
}

/// `127.0.0.1:port`: where tests of the binary run their receivers and pairs.
pub fn localhost(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

fn parse(ip: &str) -> IpAddr {
    ip.parse().unwrap_or_else(|e| panic!("{ip:?} is not an IP address: {e}"))
}

/// A loopback address no other test uses: `127.<pid>.<n>.<n>`, from this process's id and a
/// counter, so that tests in parallel (threads or processes) never share an address, and
/// ports on it never collide with anyone's. Linux routes all of 127.0.0.0/8 to the loopback
/// interface (other systems may not: tests that use this are Linux tests).
pub fn loopback() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let p = std::process::id();
    format!("127.{}.{}.{}", 1 + p % 250, 1 + (n / 250) % 250, 1 + n % 250)
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
        let ip = loopback();
        for _ in 0..50 {
            assert!(seen.insert(tcp_on(&ip)), "TCP on {ip}");
            assert!(seen.insert(udp_on(&ip)), "UDP on {ip}");
        }
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn loopback_addresses_are_distinct_and_bindable() {
        let (a, b) = (loopback(), loopback());
        assert_ne!(a, b);
        for ip in [a, b] {
            let port = tcp_on(&ip);
            TcpListener::bind((ip.as_str(), port)).expect("bind on the loopback address");
        }
    }
}
