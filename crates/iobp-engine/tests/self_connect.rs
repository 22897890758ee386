//! A `tcp_client` destination whose port has no listener can be connected to itself: when the
//! system picks that same port as the connection's own (local) port, TCP's simultaneous open
//! joins the socket to itself. Every write then comes back to it, and without an ack mode each
//! message would count as delivered — lost. It happens on loopback with a port in the
//! ephemeral range (a CI run lost 10 messages that way). Here it is forced: a network namespace
//! of the test's own whose only ephemeral port is the destination's.
//!
//! Needs root (a network namespace, its port range); CI runs as root.

#![cfg(target_os = "linux")]

mod common;

use std::time::Duration;

use common::*;
use iobp_engine::Color;
use tokio::io::AsyncWriteExt;

const DESTINATION_PORT: u16 = 40_000;
const SOURCE_PORT: u16 = 41_000;
/// Where the test's own sender binds: outside the one-port ephemeral range.
const SENDER_PORT: u16 = 42_000;

/// Moves the calling thread into a new network namespace with its loopback up and
/// [`DESTINATION_PORT`] as the only ephemeral port. Threads it starts afterwards (the runtime's
/// workers, the log's threads) inherit the namespace.
#[allow(unsafe_code)]
fn isolate_with_one_ephemeral_port() {
    // SAFETY: unshare only changes this thread's namespaces; nothing else runs on it.
    let r = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "unshare(CLONE_NEWNET) (root needed): {}", std::io::Error::last_os_error());
    // SAFETY: a plain datagram socket, closed below; `ifr` is a zeroed ifreq naming `lo`,
    // which SIOCGIFFLAGS fills and SIOCSIFFLAGS reads.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = libc::c_char::from_ne_bytes([*src]);
        }
        assert_eq!(libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr), 0, "SIOCGIFFLAGS");
        ifr.ifr_ifru.ifru_flags |= libc::c_short::try_from(libc::IFF_UP).expect("IFF_UP fits");
        assert_eq!(libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr), 0, "SIOCSIFFLAGS");
        libc::close(fd);
    }
    // The sysctl file answers for the namespace of the thread that opens it.
    std::fs::write(
        "/proc/sys/net/ipv4/ip_local_port_range",
        format!("{DESTINATION_PORT} {DESTINATION_PORT}"),
    )
    .expect("set the ephemeral port range");
}

#[test]
fn a_destination_never_delivers_into_a_connection_to_itself() {
    let outcome = std::thread::spawn(|| {
        isolate_with_one_ephemeral_port();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let h = Harness::new().await;
            let ip = "127.0.0.1";
            h.add(&line_pair("p", (ip, SOURCE_PORT), (ip, DESTINATION_PORT))).await;
            // The sender binds its own port: the one ephemeral port is the destination's.
            let mut s = loop {
                let socket = tokio::net::TcpSocket::new_v4().expect("socket");
                socket.set_reuseaddr(true).expect("reuseaddr");
                socket.bind(format!("{ip}:{SENDER_PORT}").parse().expect("addr")).expect("bind");
                match socket.connect(format!("{ip}:{SOURCE_PORT}").parse().expect("addr")).await {
                    Ok(s) => break s,
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            };
            let lines: Vec<String> = (0..10).map(|i| format!("message {i}\n")).collect();
            let lines = lines.concat();
            s.write_all(lines.as_bytes()).await.expect("send");
            s.shutdown().await.expect("shutdown");
            h.wait_for("p", 10, "10 stored", |p| p.received == 10).await;
            // Many connection attempts, each of which could join itself: none delivers. (Once
            // one did, the port lingers in TIME_WAIT and later attempts find no port at all.)
            let mut details = Vec::new();
            for _ in 0..30 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                details.push(h.snap("p").destination.detail);
            }
            (h.snap("p"), details)
        })
    })
    .join()
    .expect("the test thread");
    let (outcome, details) = outcome;
    assert_eq!(outcome.sent, 0, "nothing written into a connection to itself: {outcome:#?}");
    assert_eq!(outcome.pending, 10, "{outcome:#?}");
    assert_ne!(outcome.destination.color, Color::Green, "{outcome:#?}");
    assert!(
        details.iter().any(|d| d.contains("connected to itself")),
        "the reason is shown: {details:#?}"
    );
}
