//! A connection flood at a portal (issue 11, item 3) against the real binary. The instance runs
//! with an open-file limit of 1024, so its portals may hold 256 connections each (half of the
//! descriptors for both portals together), 64 per source address. While a pair carries
//! traffic — its source accepting a new connection for every batch and its destination
//! reconnecting once to a restarted receiver, both of which need descriptors — thousands of
//! connections with a partial request line and a few slow-header clients hit the Operations
//! Portal, and SSE streams go past their per-user cap on the Management Dashboard.
//!
//! Asserted: the pair delivers everything, first arrivals in order, and keeps delivering during
//! the flood; `/healthz` answers on both portals during the flood; connections past the caps
//! are closed at once; those held are closed by the header-read timeout (slow-header clients
//! too), not before; the ninth SSE stream of a user gets 429; the process never holds more
//! descriptors than its budget allows; its resident memory comes back near the baseline;
//! SIGTERM still stops it cleanly with a live event stream open.
//!
//! Loopback only (source addresses 127.0.x.y for "other hosts"); stops by itself in ~30 s.

#![cfg(target_os = "linux")]

mod util;

use std::fmt::Write as _;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use iobp_testkit::ports;
use iobp_testkit::receiver::Receiver;
use util::{Instance, TEST_ADMIN_PASSWORD, connect};

/// The instance's open-file limit (soft and hard).
const NOFILE: u64 = 1024;
/// What each portal may hold with that limit (a quarter of the descriptors: both portals
/// together get half, the pairs keep the rest).
const PER_PORTAL: usize = 256;
/// What one source address may hold on a portal.
const PER_ADDRESS: usize = 64;
/// SSE streams one user may hold.
const SSE_PER_USER: usize = 8;
/// The portals' header-read timeout.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A little less: until then, held connections must stay open.
const BEFORE_HEADER_TIMEOUT: Duration = Duration::from_secs(8);

/// Flood sources: 40 addresses with 60 connections each (2,400), and one address with more
/// than its cap.
const FLOOD_ADDRESSES: u8 = 40;
const FLOOD_PER_ADDRESS: usize = 60;
const GREEDY: Ipv4Addr = Ipv4Addr::new(127, 0, 2, 1);
const GREEDY_CONNECTIONS: usize = 100;
const SLOW: Ipv4Addr = Ipv4Addr::new(127, 0, 3, 1);
const SLOW_CLIENTS: usize = 4;

/// A connection from `from` (a loopback address other than 127.0.0.1 stands for another host).
fn connect_from(from: Ipv4Addr, to: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    util::connect_from(from.into(), to, timeout)
}

/// Whether the server still holds a (non-blocking) connection open.
fn is_open(mut s: &TcpStream) -> bool {
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

fn count_open(conns: &[TcpStream]) -> usize {
    conns.iter().filter(|c| is_open(c)).count()
}

/// Opens `n` connections from `from`, each sending a partial request line; returns those the
/// server did not refuse at once (still to be checked: it may close them a moment later).
fn flood_from(from: Ipv4Addr, to: SocketAddr, n: usize, deadline: Instant) -> Vec<TcpStream> {
    let mut held = Vec::new();
    for _ in 0..n {
        if Instant::now() > deadline {
            break;
        }
        let Ok(mut s) = connect_from(from, to, Duration::from_millis(300)) else { continue };
        if s.write_all(b"GET /healthz HT").is_ok() && s.set_nonblocking(true).is_ok() {
            held.push(s);
        }
    }
    held
}

/// GET `path` with timeouts: (status, body), or why not.
fn get(addr: SocketAddr, path: &str, cookie: Option<&str>) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(3))).map_err(|e| e.to_string())?;
    let cookie = cookie.map(|c| format!("Cookie: {c}\r\n")).unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{cookie}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).map_err(|e| format!("send: {e}"))?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).map_err(|e| format!("read: {e}"))?;
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let status =
        resp.get(9..12).and_then(|c| c.parse().ok()).ok_or(format!("no answer: {resp:?}"))?;
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// Opens an SSE stream: its status and, for 200, the open connection.
fn open_events(addr: SocketAddr, cookie: &str) -> (u16, String, Option<TcpStream>) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(3))).expect("timeout");
    let req = format!("GET /api/v1/events HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\n\r\n");
    s.write_all(req.as_bytes()).expect("send");
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => break,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status = head.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    if status == 200 {
        return (status, head, Some(s));
    }
    let mut body = vec![0u8; 4096];
    let n = s.read(&mut body).unwrap_or(0);
    (status, String::from_utf8_lossy(&body[..n]).into_owned(), None)
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// Sends numbered lines in batches of 50, each batch over a new connection to the pair's
/// source (every batch needs the instance to accept, i.e. a descriptor), until stopped.
struct Sender {
    sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sender {
    fn start(port: u16) -> Sender {
        let sent = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (sent2, stop2) = (sent.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut next = 0u64;
            while !stop2.load(Ordering::Relaxed) {
                let mut batch = String::new();
                for n in next..next + 50 {
                    let _ = writeln!(batch, "{n:08}");
                }
                let mut s = connect(port);
                s.write_all(batch.as_bytes()).expect("send a batch");
                s.shutdown(std::net::Shutdown::Write).expect("shutdown");
                // The source closes once it has read (and stored) everything.
                s.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
                let _ = s.read(&mut [0u8; 1]);
                next += 50;
                sent2.store(next, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Sender { sent, stop, thread: Some(thread) }
    }

    fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    fn stop(&mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("sender");
        }
        self.sent()
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Lines delivered to every receiver so far, in arrival order.
fn delivered(receivers: &Mutex<Vec<Receiver>>, earlier: &[String]) -> Vec<String> {
    let mut all = earlier.to_vec();
    for r in receivers.lock().expect("lock").iter() {
        all.extend(r.lines());
    }
    all
}

/// Every number below `n` arrived, and first arrivals are in order.
fn check_in_order(lines: &[String], n: u64) {
    let mut seen = std::collections::BTreeSet::new();
    let mut last: Option<u64> = None;
    for l in lines {
        let v: u64 = l.parse().unwrap_or_else(|_| panic!("not a number: {l:?}"));
        if seen.insert(v) {
            assert!(last.is_none_or(|p| v > p), "first arrivals out of order: {v} after {last:?}");
            last = Some(v);
        }
    }
    assert_eq!(
        seen.len() as u64,
        n,
        "every message delivered (first missing: {:?})",
        (0..n).find(|v| !seen.contains(v))
    );
}

fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A user's SSE streams up to the cap (on the Management Dashboard): the next is refused with
/// 429 and a JSON error; closing one makes room. Returns the open streams.
fn sse_streams_up_to_the_cap(inst: &Instance) -> Vec<TcpStream> {
    let body = format!(r#"{{"username": "admin", "password": "{TEST_ADMIN_PASSWORD}"}}"#);
    let login = util::http(inst.mgmt, "POST", "/api/v1/session", Some(&body), None, None);
    assert_eq!(login.status, 200, "{}", login.body);
    let cookie = login.cookie.expect("mgmt session cookie");
    let mut streams = Vec::new();
    for i in 0..SSE_PER_USER {
        let (status, head, stream) = open_events(inst.mgmt, &cookie);
        assert_eq!(status, 200, "stream {i}: {head}");
        streams.push(stream.expect("stream"));
    }
    let (status, body, _) = open_events(inst.mgmt, &cookie);
    assert_eq!(status, 429, "the ninth stream: {body}");
    assert!(body.contains("\"error\"") && body.contains("stream"), "{body}");
    // A stream closed by its client makes room (seen at the next event, within a second).
    drop(streams.pop());
    let mut reopened = None;
    wait_until(5, "a closed stream to make room", || {
        let (status, _, s) = open_events(inst.mgmt, &cookie);
        reopened = s;
        status == 200
    });
    streams.extend(reopened);
    streams
}

#[test]
#[allow(clippy::too_many_lines)] // one story: before, during and after the flood
fn a_connection_flood_never_starves_the_pairs_the_health_checks_or_memory() {
    // This process holds the flood's client ends.
    rlimit::increase_nofile_limit(u64::MAX).expect("raise the test's open-file limit");
    let dir = tempfile::tempdir().expect("tempdir");
    let (src, dst) = (ports::tcp(), ports::tcp());
    let config = dir.path().join("pair.json");
    let doc = serde_json::json!({"channel_pairs": [{
        "id": "flooded", "retry": {"initial_ms": 50, "max_ms": 300},
        "source": {"type": "tcp_server", "host": "127.0.0.1", "port": src,
                   "framing": {"type": "line"}, "ack": "none"},
        "destination": {"type": "tcp_client", "host": "127.0.0.1", "port": dst,
                        "framing": {"type": "line"}, "ack": "byte"}}]});
    std::fs::write(&config, doc.to_string()).expect("write config");
    let receivers = Mutex::new(vec![Receiver::on(ports::localhost(dst)).acking().start()]);
    let data = dir.path().join("data");
    let config_arg = config.display().to_string();
    let inst = Instance::start_with_nofile(&data, NOFILE, &["--config", &config_arg]);
    let pid = inst.pid();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let nofile_line = limits.lines().find(|l| l.starts_with("Max open files")).expect("limit");
    assert!(nofile_line.split_whitespace().filter(|w| *w == "1024").count() == 2, "{nofile_line}");

    // Warm up: traffic flows and the portals have answered a few requests.
    let mut sender = Sender::start(src);
    wait_until(20, "the first messages", || delivered(&receivers, &[]).len() >= 200);
    for _ in 0..20 {
        assert_eq!(get(inst.ops, "/healthz", None).map(|r| r.0), Ok(200));
    }
    std::thread::sleep(Duration::from_secs(1));
    let (rss_base, fds_base) = (status_kib(pid, "VmRSS:"), fd_count(pid));

    // The flood: slow-header clients (a header byte every 500 ms), one address past its cap,
    // then 40 addresses with 60 connections each, all holding a partial request line.
    let t0 = Instant::now();
    let stop_slow = Arc::new(AtomicBool::new(false));
    let slow: Vec<_> = (0..SLOW_CLIENTS)
        .map(|_| {
            let stop = stop_slow.clone();
            let mut s = connect_from(SLOW, inst.ops, Duration::from_secs(2)).expect("slow client");
            std::thread::spawn(move || {
                let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nX-Slow: ");
                while !stop.load(Ordering::Relaxed) {
                    if s.write_all(b"a").is_err() {
                        return Some(t0.elapsed());
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
                None
            })
        })
        .collect();
    let opening_deadline = t0 + Duration::from_secs(6);
    let greedy = flood_from(GREEDY, inst.ops, GREEDY_CONNECTIONS, opening_deadline);
    std::thread::sleep(Duration::from_millis(500));
    let greedy_open = count_open(&greedy);
    let ops = inst.ops;
    let openers: Vec<_> = (1..=FLOOD_ADDRESSES)
        .map(|i| {
            std::thread::spawn(move || {
                flood_from(Ipv4Addr::new(127, 0, 1, i), ops, FLOOD_PER_ADDRESS, opening_deadline)
            })
        })
        .collect();
    let flood: Vec<TcpStream> =
        openers.into_iter().flat_map(|t| t.join().expect("opener")).collect();
    let opened_in = t0.elapsed();
    std::thread::sleep(Duration::from_millis(1500));
    let (rss_during, fds_during) = (status_kib(pid, "VmRSS:"), fd_count(pid));

    // During the flood: both portals answer, and the pair keeps delivering (its source accepts
    // a new connection per batch; its destination reconnects to a restarted receiver).
    for portal in [inst.ops, inst.mgmt] {
        assert_eq!(get(portal, "/healthz", None).map(|r| r.0), Ok(200), "health of {portal}");
    }
    let sent_now = sender.sent();
    let earlier = {
        let mut rs = receivers.lock().expect("lock");
        let mut old = rs.pop().expect("receiver");
        old.stop();
        let lines = old.lines();
        rs.push(Receiver::on(ports::localhost(dst)).acking().start());
        lines
    };
    // New batches (new connections to the source) are accepted, stored and delivered.
    let more = sent_now + 500;
    wait_until(8, "the pair to take and deliver new batches during the flood", || {
        sender.sent() >= more && delivered(&receivers, &earlier).len() as u64 >= more
    });

    // Past the caps: closed at once.
    let flood_open = count_open(&flood);
    let greedy_left = count_open(&greedy);
    println!(
        "flood: {} + {} connections offered in {opened_in:?}; {greedy_open} held from {GREEDY} \
         before the others came, {greedy_left} after; {flood_open} held from the 40 others",
        GREEDY_CONNECTIONS,
        usize::from(FLOOD_ADDRESSES) * FLOOD_PER_ADDRESS
    );
    assert_eq!(greedy_open, PER_ADDRESS, "one address holds at most its cap");
    let held = greedy_left + flood_open + SLOW_CLIENTS;
    assert!(held <= PER_PORTAL, "the portal holds {held} > {PER_PORTAL}");
    assert!(held >= PER_PORTAL * 3 / 4, "the flood should have filled the portal: {held}");

    let streams = sse_streams_up_to_the_cap(&inst);

    // Held until the header-read timeout, not closed before it...
    while t0.elapsed() < BEFORE_HEADER_TIMEOUT {
        std::thread::sleep(Duration::from_millis(100));
    }
    let still = count_open(&greedy) + count_open(&flood);
    assert!(
        still + 8 >= greedy_left + flood_open,
        "idle connections closed before the header timeout: {still} of {}",
        greedy_left + flood_open
    );
    // ...and closed by it, slow-header clients included.
    wait_until(HEADER_TIMEOUT.as_secs() + 6, "the header timeout to close the flood", || {
        count_open(&greedy) + count_open(&flood) == 0
    });
    let closed_at = t0.elapsed();
    stop_slow.store(true, Ordering::Relaxed);
    for t in slow {
        let at = t.join().expect("slow client").expect("a slow-header client closed");
        assert!(at >= BEFORE_HEADER_TIMEOUT, "slow client closed at {at:?}");
    }
    for portal in [inst.ops, inst.mgmt] {
        assert_eq!(get(portal, "/healthz", None).map(|r| r.0), Ok(200), "health of {portal}");
    }

    // After: memory and descriptors come back.
    drop((greedy, flood, streams));
    std::thread::sleep(Duration::from_secs(3));
    let (rss_after, fds_after) = (status_kib(pid, "VmRSS:"), fd_count(pid));
    println!(
        "fds: {fds_base} before, {fds_during} during, {fds_after} after (limit {NOFILE}); \
         RSS: {rss_base} KiB before, {rss_during} KiB during, {rss_after} KiB after; \
         flood closed after {closed_at:?}"
    );
    assert!(
        fds_during <= fds_base + PER_PORTAL + SSE_PER_USER + 8,
        "descriptors during the flood: {fds_during} (before: {fds_base})"
    );
    assert!(
        fds_after <= fds_base + 8,
        "descriptors after the flood: {fds_after} (before: {fds_base})"
    );
    assert!(
        rss_after <= rss_base + 4 * 1024,
        "memory after the flood: {rss_after} KiB (before {rss_base}, during {rss_during})"
    );

    // Everything sent was delivered, in order.
    let total = sender.stop();
    wait_until(20, "everything to be delivered", || {
        delivered(&receivers, &earlier).iter().collect::<std::collections::BTreeSet<_>>().len()
            as u64
            >= total
    });
    check_in_order(&delivered(&receivers, &earlier), total);

    // SIGTERM still stops it cleanly, even with a live event stream open (a response that
    // never ends: closed after the shutdown grace).
    let (status, answer, _stream) = open_events(inst.ops, &inst.cookie);
    assert_eq!(status, 200, "{answer}");
    let stopping = Instant::now();
    assert_eq!(inst.terminate().code(), Some(0), "SIGTERM exits 0");
    println!("stopped {:?} after SIGTERM with a live event stream open", stopping.elapsed());
}
