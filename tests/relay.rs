//! The relay between real instances (child processes of the binary) on loopback: push and
//! pull, over HTTP and HTTPS, credentials refused; and a three-site chain A → B → C that
//! carries a million messages exactly once and in order while every instance is `kill -9`ed
//! and restarted and the A–B link is cut and restored (through a proxy the test controls).

#![cfg(unix)]

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use iobp_testkit::receiver::Receiver;
use iobp_testkit::{ports, wait};
use serde_json::{Value, json};
use util::https::Https;
use util::site::{RELAY_PASSWORD, Site};
use util::{ChildGuard, bin, connect, send_lines};

fn remote(url: Option<&str>, channel: &str, user: &str, password: &str) -> Value {
    let mut r = json!({"type": "remote_icombuffer", "channel_id": channel});
    if let Some(u) = url {
        r["url"] = json!(u);
        r["auth"] = json!({"username": user, "password": password});
    }
    r
}

fn tcp_server(port: u16, framing: &'static str, ack: &'static str) -> Value {
    json!({"type": "tcp_server", "host": "127.0.0.1", "port": port,
           "framing": {"type": framing}, "ack": ack})
}

fn tcp_client(port: u16) -> Value {
    json!({"type": "tcp_client", "host": "127.0.0.1", "port": port, "framing": {"type": "line"}})
}

fn pair(id: &str, source: Value, destination: Value) -> Value {
    let mut p = json!({"id": id, "retry": {"initial_ms": 100, "max_ms": 1000}});
    p["source"] = source;
    p["destination"] = destination;
    p
}

/// Every line `receiver` got, once the pair whose `status` this is has delivered all it holds
/// (at least `n`) and the receiver has every line the pair wrote: nothing more can arrive
/// then, so the lines can be checked for exactly once without waiting a while for
/// duplicates that might come.
fn all_delivered(status: impl Fn() -> Value, receiver: &Receiver, n: u64) -> Vec<String> {
    let sent = wait::poll(60, "the receiving pair to deliver everything", || {
        let s = status();
        let count = |k: &str| s["counts"][k].as_u64().unwrap_or(0);
        if count("pending") + count("in_flight") == 0 && count("sent") >= n {
            Ok(count("sent"))
        } else {
            Err(format!("{s:#}"))
        }
    });
    receiver.wait_lines(usize::try_from(sent).expect("a count"), 30)
}

fn check_lines(lines: &[String], prefix: &str, n: usize) {
    assert_eq!(lines.len(), n, "exactly once: {} lines", lines.len());
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l, &format!("{prefix}{i:06}"), "line {i}");
    }
}

#[test]
fn push_and_pull_between_two_instances_and_credentials_checked() {
    let tmp = tempfile::tempdir().expect("tmp");
    let a = Site::start(tmp.path(), "a");
    let b = Site::start(tmp.path(), "b");
    for s in [&a, &b] {
        // Granted what this test relays, and a channel nobody takes (to reach B's own 409).
        let grants = [("inbound", "push"), ("outbound", "pull"), ("no-such-channel", "push")];
        s.add_user("relay", "relay", &grants);
        s.add_user("watcher", "viewer", &[]);
    }
    // Push: A's destination connects to B and sends into B's channel "inbound".
    let (src, rb) = (ports::tcp(), ports::tcp());
    let receiver_b = Receiver::start(ports::localhost(rb));
    b.add_pair(&pair("b-in", remote(None, "inbound", "", ""), tcp_client(rb)));
    let url_b = b.url();
    let push = remote(Some(&url_b), "inbound", "relay", RELAY_PASSWORD);
    a.add_pair(&pair("a-push", tcp_server(src, "line", "none"), push));
    send_lines(src, (0..5000).map(|i| format!("push-{i:06}")));
    let lines = all_delivered(|| b.status("b-in"), &receiver_b, 5000);
    check_lines(&lines, "push-", 5000);
    let s = a.status("a-push");
    assert_eq!(s["destination"]["status"], "green", "{s}");
    assert!(s["destination"]["peers"][0].as_str().is_some_and(|p| p.contains("inbound")), "{s}");
    // Pull: B's source connects to A and receives from A's channel "outbound".
    let (src2, rb2) = (ports::tcp(), ports::tcp());
    let receiver_b2 = Receiver::start(ports::localhost(rb2));
    a.add_pair(&pair(
        "a-serve",
        tcp_server(src2, "line", "none"),
        remote(None, "outbound", "", ""),
    ));
    let url_a = a.url();
    let pull = remote(Some(&url_a), "outbound", "relay", RELAY_PASSWORD);
    b.add_pair(&pair("b-pull", pull, tcp_client(rb2)));
    send_lines(src2, (0..5000).map(|i| format!("pull-{i:06}")));
    let lines = all_delivered(|| b.status("b-pull"), &receiver_b2, 5000);
    check_lines(&lines, "pull-", 5000);
    // The receiving side reports the lag (nothing waits at the sender now).
    let s = b.status("b-pull");
    assert_eq!(s["source"]["lag"]["messages"], 0, "{s}");
    // A wrong password, and a user without the relay role: refused with the reason.
    for (id, user, password, why) in [
        ("a-wrong", "relay", "not-the-password", "refused the login"),
        ("a-viewer", "watcher", RELAY_PASSWORD, "may not relay"),
    ] {
        let p = pair(
            id,
            tcp_server(ports::tcp(), "line", "none"),
            remote(Some(&url_b), "inbound", user, password),
        );
        a.add_pair(&p);
        a.inst().wait_for(id, 20, "refused", |s| {
            s["destination"]["status"] == "red"
                && s["destination"]["detail"].as_str().is_some_and(|d| d.contains(why))
        });
    }
    // A channel B takes but the relay user was not granted: refused with the reason, like a
    // channel nobody takes.
    let rb3 = ports::tcp();
    b.add_pair(&pair("b-in-other", remote(None, "other-site", "", ""), tcp_client(rb3)));
    let p = pair(
        "a-ungranted",
        tcp_server(ports::tcp(), "line", "none"),
        remote(Some(&url_b), "other-site", "relay", RELAY_PASSWORD),
    );
    a.add_pair(&p);
    a.inst().wait_for("a-ungranted", 20, "refused", |s| {
        s["destination"]["status"] == "red"
            && s["destination"]["detail"].as_str().is_some_and(|d| d.contains("not granted"))
    });
    // A channel nobody takes: refused with the reason.
    let p = pair(
        "a-nowhere",
        tcp_server(ports::tcp(), "line", "none"),
        remote(Some(&url_b), "no-such-channel", "relay", RELAY_PASSWORD),
    );
    a.add_pair(&p);
    a.inst().wait_for("a-nowhere", 20, "refused", |s| {
        s["destination"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("no-such-channel") && d.contains("409"))
    });
    // Deleting the relay user cuts the links its tokens opened at once — an idle relay link
    // would otherwise stay up (pinging) until it broke by itself — and the reconnects are
    // refused; what arrives meanwhile waits at A, Pending.
    for site in [&a, &b] {
        let deleted = site.inst().api("DELETE", "/api/v1/users/relay", None);
        assert_eq!(deleted.status, 204, "{}", deleted.body);
    }
    a.inst().wait_for("a-push", 20, "the push link cut", |st| st["destination"]["status"] == "red");
    b.inst().wait_for("b-pull", 20, "the pull link cut", |st| st["source"]["status"] == "red");
    send_lines(src, (5000..5100).map(|i| format!("push-{i:06}")));
    send_lines(src2, (5000..5100).map(|i| format!("pull-{i:06}")));
    a.inst().wait_for("a-push", 20, "100 pending", |st| st["counts"]["pending"] == 100);
    a.inst().wait_for("a-serve", 20, "100 pending", |st| st["counts"]["pending"] == 100);
    // Nothing must arrive for a while: a quiet period is what this checks.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(receiver_b.lines().len(), 5000, "nothing pushed after the revocation");
    assert_eq!(receiver_b2.lines().len(), 5000, "nothing pulled after the revocation");
    let st = a.status("a-push");
    assert_ne!(st["destination"]["status"], "green", "{st}");
}

/// A relay over HTTPS: B's portals speak TLS only; A trusts B's lab CA.
#[test]
fn relay_over_https() {
    let tmp = tempfile::tempdir().expect("tmp");
    let pki = tmp.path().join("pki");
    let (code, out, err) = util::run_cli(&["tls", "lab-pki", "--out", pki.to_str().expect("utf8")]);
    assert_eq!(code, 0, "{out}{err}");
    // B: HTTPS portals, configured over HTTPS by this test.
    let doc = json!({"settings": {
        "tls_cert": pki.join("server.pem"), "tls_key": pki.join("server.key"),
        "ops_listen": "127.0.0.1:0", "mgmt_listen": "127.0.0.1:0"}});
    let config = tmp.path().join("b.json");
    std::fs::write(&config, doc.to_string()).expect("config");
    let data_b = tmp.path().join("b");
    let mut child = Command::new(bin())
        .args(["run", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(&data_b)
        .env("IOBP_LOG", "error")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let _b = ChildGuard(child);
    let mut banner = String::new();
    while !banner.contains("running") {
        banner.clear();
        assert!(out.read_line(&mut banner).expect("read") > 0, "B exited early");
    }
    let b_ops = util::banner_addr(&banner, "Operations Portal ");
    let tls = Https::new(&pki.join("ca.pem"));
    let admin = tls.admin_login(b_ops, &data_b);
    let rb = ports::tcp();
    let receiver = Receiver::start(ports::localhost(rb));
    let user = json!({"username": "relay", "password": RELAY_PASSWORD, "role": "relay",
                      "must_change_password": false,
                      "relay_grants": [{"channel_id": "secure", "direction": "push"}]});
    assert_eq!(tls.request(b_ops, "POST", "/api/v1/users", Some(&user), Some(&admin)).status, 201);
    let inbound = pair("b-in", remote(None, "secure", "", ""), tcp_client(rb));
    assert_eq!(
        tls.request(b_ops, "POST", "/api/v1/pairs", Some(&inbound), Some(&admin)).status,
        201
    );
    // A: plain portals; its destination pushes to https://B, trusting the lab CA.
    let a = Site::start(tmp.path(), "a");
    let src = ports::tcp();
    let mut push = remote(
        Some(&format!("https://localhost:{}", b_ops.port())),
        "secure",
        "relay",
        RELAY_PASSWORD,
    );
    push["tls"] = json!({"ca": pki.join("ca.pem")});
    a.add_pair(&pair("a-push", tcp_server(src, "line", "none"), push.clone()));
    send_lines(src, (0..3000).map(|i| format!("tls-{i:06}")));
    let status = || {
        let r = tls.request(b_ops, "GET", "/api/v1/pairs/b-in", None, Some(&admin));
        r.body["status"].clone()
    };
    let lines = all_delivered(status, &receiver, 3000);
    check_lines(&lines, "tls-", 3000);
    // Without the CA the certificate is not trusted: refused, with the reason.
    push["tls"] = json!({});
    a.add_pair(&pair("a-untrusted", tcp_server(ports::tcp(), "line", "none"), push));
    a.inst().wait_for("a-untrusted", 20, "refused", |s| {
        s["destination"]["status"] == "red"
            && s["destination"]["detail"].as_str().is_some_and(|d| d.contains("TLS"))
    });
}

/// A TCP proxy whose connections the test can cut, refusing new ones until restored.
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
    live: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let cut: Arc<AtomicBool> = Arc::default();
        let live: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (cut2, live2) = (cut.clone(), live.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { continue };
                if cut2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(target) else { continue };
                let mut l = live2.lock().expect("lock");
                for s in [&client, &server] {
                    if let Ok(c) = s.try_clone() {
                        l.push(c);
                    }
                }
                drop(l);
                for (mut from, mut to) in [
                    (client.try_clone().expect("clone"), server.try_clone().expect("clone")),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Proxy { port, cut, live }
    }

    /// Cuts every connection and refuses new ones.
    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for s in self.live.lock().expect("lock").drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

fn frame(seq: u64) -> Vec<u8> {
    format!("\x02{seq:08}\x03").into_bytes()
}

/// A → B → C: a million messages, every instance killed once, the A–B link cut once. C's
/// destination is never reachable, so C's buffer keeps what arrived: it must hold every
/// message exactly once, in order.
#[test]
fn a_three_site_chain_survives_kill_9_and_a_cut_link() {
    const N: u64 = 1_000_000;
    let tmp = tempfile::tempdir().expect("tmp");
    let mut a = Site::start(tmp.path(), "a");
    let mut b = Site::start(tmp.path(), "b");
    let mut c = Site::start(tmp.path(), "c");
    b.add_user("relay", "relay", &[("ab", "push")]);
    c.add_user("relay", "relay", &[("bc", "push")]);
    let proxy = Proxy::start(b.ops);
    let nowhere = ports::tcp();
    c.add_pair(&pair("c", remote(None, "bc", "", ""), tcp_client(nowhere)));
    let to_c = remote(Some(&c.url()), "bc", "relay", RELAY_PASSWORD);
    b.add_pair(&pair("b", remote(None, "ab", "", ""), to_c));
    let src = ports::tcp();
    let to_b =
        remote(Some(&format!("http://127.0.0.1:{}", proxy.port)), "ab", "relay", RELAY_PASSWORD);
    a.add_pair(&pair("a", tcp_server(src, "stx_etx", "byte"), to_b));

    // Phase 1: a million acknowledged messages into A while B and C die and the link is cut.
    let acked = Arc::new(AtomicU64::new(0));
    let mut conn = connect(src);
    let mut reader = conn.try_clone().expect("clone");
    let acks = acked.clone();
    let counter = std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while acks.load(Ordering::Relaxed) < N {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    assert!(buf[..n].iter().all(|b| *b == 6), "only ACKs expected");
                    acks.fetch_add(n as u64, Ordering::Relaxed);
                }
            }
        }
    });
    let writer = std::thread::spawn(move || {
        let mut batch = Vec::with_capacity(64 * 1024);
        for seq in 0..N {
            batch.extend_from_slice(&frame(seq));
            if batch.len() >= 60 * 1024 {
                conn.write_all(&batch).expect("send to A");
                batch.clear();
            }
        }
        conn.write_all(&batch).expect("send to A");
    });
    let progress = |what: &str, at: u64| {
        wait::until(300, what, || acked.load(Ordering::Relaxed) >= at);
    };
    progress("a fifth acknowledged", N / 5);
    b.kill9();
    std::thread::sleep(Duration::from_millis(500));
    b.restart();
    progress("two fifths acknowledged", 2 * N / 5);
    // The A-B link goes down; A keeps taking messages and builds a backlog.
    proxy.cut();
    progress("three fifths acknowledged", 3 * N / 5);
    c.kill9();
    std::thread::sleep(Duration::from_millis(500));
    c.restart();
    writer.join().expect("writer");
    counter.join().expect("counter");
    assert_eq!(acked.load(Ordering::Relaxed), N, "every message acknowledged by A");
    let at_c = |c: &Site| c.status("c")["counts"]["pending"].as_u64().unwrap_or(0);
    let count = |s: &Value, k: &str| s["counts"][k].as_u64().unwrap_or(0);
    let done_before = count(&a.status("a"), "done");
    assert!(done_before < N, "A holds a backlog while the link is down");
    proxy.restore();

    // Phase 2: A dies while it relays its backlog.
    let mut left;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = a.status("a");
        left = count(&s, "pending") + count(&s, "in_flight");
        if count(&s, "done") > done_before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the relay from A never resumed: {s:#}\nB: {:#}",
            b.status("b")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    a.kill9();
    eprintln!("A killed with {left} messages not yet confirmed by B; C had {}", at_c(&c));
    assert!(left > 0, "A was killed in the middle of relaying");
    std::thread::sleep(Duration::from_millis(500));
    a.restart();
    wait::until(600, "everything at C", || at_c(&c) >= N);
    let (sa, sb) = (a.status("a"), b.status("b"));
    assert_eq!(sa["counts"]["pending"], 0, "nothing left at A: {sa}");
    assert_eq!(sb["counts"]["pending"], 0, "nothing left at B: {sb}");
    // Stop C and read its buffer: every message once, in order.
    let inst = c.inst.take().expect("c");
    assert!(inst.terminate().success());
    let log = iobp_log::Log::open(c.data.join("logs").join("c"), iobp_log::LogOptions::default())
        .expect("open C's buffer");
    let all = log.read_range(1, usize::MAX, usize::MAX).expect("read");
    assert_eq!(all.len() as u64, N, "exactly once: {} records", all.len());
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r.payload, format!("{i:08}").as_bytes(), "record {i} in order");
    }
}

/// A relay destination with a relay backup: the primary instance is `kill -9`ed mid-stream,
/// the backup instance gets the rest; the primary comes back and traffic returns to it.
#[test]
fn failover_between_relay_destinations() {
    const N: usize = 4000;
    let tmp = tempfile::tempdir().expect("tmp");
    let a = Site::start(tmp.path(), "a");
    let mut b = Site::start(tmp.path(), "b");
    let c = Site::start(tmp.path(), "c");
    let (rb, rc) = (ports::tcp(), ports::tcp());
    let (at_b, at_c) =
        (Receiver::start(ports::localhost(rb)), Receiver::start(ports::localhost(rc)));
    for (s, port) in [(&b, rb), (&c, rc)] {
        s.add_user("relay", "relay", &[("ha", "push")]);
        s.add_pair(&pair("in", remote(None, "ha", "", ""), tcp_client(port)));
    }
    let src = ports::tcp();
    let mut out = pair(
        "out",
        tcp_server(src, "line", "none"),
        remote(Some(&b.url()), "ha", "relay", RELAY_PASSWORD),
    );
    out["failover"] = json!([remote(Some(&c.url()), "ha", "relay", RELAY_PASSWORD)]);
    out["failover_policy"] = json!({"probe_interval_ms": 300});
    a.add_pair(&out);
    let sender = std::thread::spawn(move || {
        let mut s = connect(src);
        for i in 0..N {
            s.write_all(format!("ha-{i:06}\n").as_bytes()).expect("send");
            std::thread::sleep(Duration::from_micros(500));
        }
    });
    wait::until(30, "the primary delivering", || at_b.lines().len() >= 500);
    b.kill9();
    a.inst().wait_for("out", 10, "on the backup", |s| s["failover"]["active"] == 1);
    assert_eq!(a.status("out")["channel"], "yellow", "degraded while on the backup");
    wait::until(30, "the backup delivering", || at_c.lines().len() >= 500);
    b.restart();
    a.inst().wait_for("out", 20, "failed back", |s| s["failover"]["active"] == 0);
    let back_at = at_b.lines().len();
    sender.join().expect("sender");
    a.inst().wait_for("out", 30, "all relayed", |s| {
        s["counts"]["pending"] == 0 && s["counts"]["in_flight"] == 0
    });
    wait::until(30, "everything received", || {
        let all: std::collections::BTreeSet<String> =
            at_b.lines().into_iter().chain(at_c.lines()).collect();
        all.len() >= N
    });
    assert!(at_b.lines().len() > back_at, "the primary delivers again after failback");
    let all: std::collections::BTreeSet<String> =
        at_b.lines().into_iter().chain(at_c.lines()).collect();
    let want: std::collections::BTreeSet<String> = (0..N).map(|i| format!("ha-{i:06}")).collect();
    assert_eq!(all, want, "every message reached one of the destinations");
    let s = a.status("out");
    assert_eq!(s["failover"]["switches"], 2, "{s}");
    let total = at_b.lines().len() + at_c.lines().len();
    eprintln!(
        "{} deliveries for {N} messages; the sender counted {} retries",
        total, s["counts"]["retries"]
    );
}
