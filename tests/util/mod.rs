//! Helpers for black-box tests of the `iobufferpro` binary: start it on a temporary data
//! directory and free ports, read its status over HTTP, stop it with a signal or `kill -9`;
//! [`site`]: an instance restarted where its peers expect it; [`https`]: a client for portals
//! that speak TLS. Fixtures that are not about the binary (ports, receivers, certificates,
//! waits) are `iobp_testkit`'s.

#![allow(dead_code)] // each test binary uses a different subset

pub mod https;
pub mod site;

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A small deterministic random generator (xorshift) for random kill points and pauses.
pub struct Xs(pub u64);

impl Xs {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_iobufferpro")
}

/// Loopback, any free port: the instance binds it and reports which in its banner.
pub const ANY_PORT: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// The address after `label` and a URL scheme in the "running" banner.
pub fn banner_addr(banner: &str, label: &str) -> SocketAddr {
    banner
        .split_once(label)
        .and_then(|(_, rest)| rest.split_once("://"))
        .and_then(|(_, rest)| rest.split([',', ' ', '\n']).next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no {label}address in the banner: {banner:?}"))
}

/// A running instance, with an admin session on its Operations Portal.
pub struct Instance {
    pub child: Child,
    pub ops: SocketAddr,
    pub mgmt: SocketAddr,
    pub data: PathBuf,
    pub cookie: String,
    pub csrf: String,
}

/// The password the tests give `admin` after the first login.
pub const TEST_ADMIN_PASSWORD: &str = "test-admin-password-1";

impl Instance {
    /// Starts `iobufferpro run` on `data`, with extra arguments; waits until it is ready.
    pub fn start(data: &Path, extra: &[&str]) -> Instance {
        Self::start_on(data, ANY_PORT, ANY_PORT, extra)
    }

    /// Like [`Instance::start`] on given portal addresses (an instance restarted where its
    /// peers expect it).
    pub fn start_on(data: &Path, ops: SocketAddr, mgmt: SocketAddr, extra: &[&str]) -> Instance {
        let mut inst = Self::spawn(data, ops, mgmt, extra, "error", Stdio::inherit(), None);
        inst.login_admin();
        inst
    }

    /// Like [`Instance::start`], with the instance's open-file limit (soft and hard) set to
    /// `nofile`: what the instance finds at start, as on a host with that limit.
    pub fn start_with_nofile(data: &Path, nofile: u64, extra: &[&str]) -> Instance {
        let mut inst =
            Self::spawn(data, ANY_PORT, ANY_PORT, extra, "error", Stdio::inherit(), Some(nofile));
        inst.login_admin();
        inst
    }

    /// Logs in as admin: the first time with the first-start password (then changed, as the
    /// portal requires), later with the changed one.
    fn login_admin(&mut self) {
        let first = self.data.join("initial-admin-password.txt");
        let password = match std::fs::read_to_string(&first) {
            Ok(text) => text
                .lines()
                .find_map(|l| l.strip_prefix("password: "))
                .expect("password line")
                .to_string(),
            Err(_) => TEST_ADMIN_PASSWORD.to_string(),
        };
        let body = format!(r#"{{"username": "admin", "password": "{password}"}}"#);
        let r = http(self.ops, "POST", "/api/v1/session", Some(&body), None, None);
        assert_eq!(r.status, 200, "login: {}", r.body);
        let session = r.json();
        let mut cookie = r.cookie.expect("session cookie");
        let mut csrf = session["csrf_token"].as_str().expect("csrf").to_string();
        if session["must_change_password"] == true {
            let body = format!(
                r#"{{"current_password": "{password}", "new_password": "{TEST_ADMIN_PASSWORD}"}}"#
            );
            let r = http(
                self.ops,
                "POST",
                "/api/v1/session/password",
                Some(&body),
                Some(&cookie),
                Some(&csrf),
            );
            assert_eq!(r.status, 200, "password change: {}", r.body);
            cookie = r.cookie.clone().expect("new session cookie");
            csrf = r.json()["csrf_token"].as_str().expect("csrf").to_string();
            assert!(!first.exists(), "the first-start password file is removed once changed");
        }
        self.cookie = cookie;
        self.csrf = csrf;
    }

    /// The status of one pair (`status` of the API's pair object).
    pub fn pair(&self, id: &str) -> serde_json::Value {
        let r =
            http(self.ops, "GET", &format!("/api/v1/pairs/{id}"), None, Some(&self.cookie), None);
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["status"].clone()
    }

    pub fn pairs(&self) -> serde_json::Value {
        http(self.ops, "GET", "/api/v1/pairs", None, Some(&self.cookie), None).json()
    }

    /// Waits until `f(status)` holds.
    pub fn wait_for(
        &self,
        id: &str,
        secs: u64,
        what: &str,
        f: impl Fn(&serde_json::Value) -> bool,
    ) {
        iobp_testkit::wait::poll(secs, what, || {
            let s = self.pair(id);
            if f(&s) { Ok(()) } else { Err(format!("{s:#}")) }
        });
    }

    /// SIGTERM, then wait for the exit.
    pub fn terminate(mut self) -> ExitStatus {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s;
            }
            assert!(Instant::now() < deadline, "did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL (`kill -9`).
    pub fn kill9(mut self) {
        self.child.kill().expect("kill -9");
        let _ = self.child.wait();
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child process killed (and reaped) when dropped, so that a failed assertion never leaves
/// an instance running.
pub struct ChildGuard(pub std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A response of [`http`].
pub struct Response {
    pub status: u16,
    pub body: String,
    /// `name=value` of a Set-Cookie header, if any.
    pub cookie: Option<String>,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// A minimal HTTP/1.1 client: one request per connection.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    cookie: Option<&str>,
    csrf: Option<&str>,
) -> Response {
    let s = TcpStream::connect(addr).expect("connect");
    http_on(s, addr, method, path, body, cookie, csrf)
}

/// A TCP connection to `addr` from the local address `from` (a loopback address other than
/// 127.0.0.1 stands for another host), within `timeout`.
#[allow(dead_code)] // not every test file uses it
pub fn connect_from(
    from: std::net::IpAddr,
    addr: SocketAddr,
    timeout: std::time::Duration,
) -> std::io::Result<TcpStream> {
    let s = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
    s.bind(&SocketAddr::new(from, 0).into())?;
    s.connect_timeout(&addr.into(), timeout)?;
    Ok(s.into())
}

/// Like [`http`] on a connection already open.
pub fn http_on(
    mut s: TcpStream,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    cookie: Option<&str>,
    csrf: Option<&str>,
) -> Response {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(c) = cookie {
        let _ = write!(req, "Cookie: {c}\r\n");
    }
    if let Some(t) = csrf {
        let _ = write!(req, "X-CSRF-Token: {t}\r\n");
    }
    let body = body.unwrap_or("");
    let _ = write!(
        req,
        "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("send");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read");
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let status = head.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let cookie = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase().starts_with("set-cookie:").then(|| l[11..].trim().to_string())
        })
        .and_then(|v| v.split(';').next().map(str::to_string))
        .filter(|c| !c.ends_with('='));
    Response { status, body: body.to_string(), cookie }
}

/// GET without a session: (status code, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let r = http(addr, "GET", path, None, None, None);
    (r.status, r.body)
}

/// Runs the binary to completion: (exit code, stdout, stderr).
pub fn run_cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin()).args(args).env("IOBP_LOG", "error").output().expect("run");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A document with one line-framed `tcp_server` -> `tcp_client` pair.
pub fn line_pair_doc(id: &str, src: u16, dst: u16, ack: &str) -> String {
    format!(
        r#"{{"channel_pairs": [{{"id": "{id}", "retry": {{"initial_ms": 50, "max_ms": 300}},
            "source": {{"type": "tcp_server", "host": "127.0.0.1", "port": {src}, "framing": {{"type": "stx_etx"}}, "ack": {ack}}},
            "destination": {{"type": "tcp_client", "host": "127.0.0.1", "port": {dst}, "framing": {{"type": "line"}}}}}}]}}"#
    )
}

/// Sends `lines` (each followed by `\n`) to a line-framed TCP source on 127.0.0.1 over one
/// connection, then closes it.
pub fn send_lines<L: AsRef<str>>(port: u16, lines: impl IntoIterator<Item = L>) {
    let mut s = connect(port);
    let mut buf = Vec::new();
    for l in lines {
        buf.extend_from_slice(l.as_ref().as_bytes());
        buf.push(b'\n');
    }
    s.write_all(&buf).expect("send");
    s.shutdown(std::net::Shutdown::Write).expect("shutdown");
}

/// Connects, retrying for a while.
pub fn connect(port: u16) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => return s,
            Err(e) => {
                assert!(Instant::now() < deadline, "cannot connect to {port}: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

// ---- For the browser tests (tests/browser/).

impl Instance {
    /// Starts `iobufferpro run` like [`Instance::start`] but does not log in: `admin` keeps
    /// the first-start password (see [`Instance::initial_password`]), for tests that do the
    /// first login themselves. `log` is the `IOBP_LOG` filter (e.g. `info`; empty: none, the
    /// stored `log_level` applies).
    pub fn start_fresh(data: &Path, extra: &[&str], log: &str) -> Instance {
        Self::spawn(data, ANY_PORT, ANY_PORT, extra, log, Stdio::null(), None)
    }

    /// Runs the binary on `data` and waits for its "running" banner (a first start prints the
    /// admin password before it); its stdout is drained in the background from then on, so
    /// it never writes into a closed pipe. Not logged in.
    fn spawn(
        data: &Path,
        ops: SocketAddr,
        mgmt: SocketAddr,
        extra: &[&str],
        log: &str,
        stderr: Stdio,
        nofile: Option<u64>,
    ) -> Instance {
        // `prlimit` sets the limit and then runs the binary in its place (same process id).
        let mut cmd = match nofile {
            Some(n) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}")).arg("--").arg(bin());
                c
            }
            None => Command::new(bin()),
        };
        // An empty `log`: no IOBP_LOG, so the stored `log_level` setting is in force.
        if log.is_empty() {
            cmd.env_remove("IOBP_LOG");
        } else {
            cmd.env("IOBP_LOG", log);
        }
        let mut child = cmd
            .arg("run")
            .arg("--data-dir")
            .arg(data)
            .args(["--ops-listen", &ops.to_string(), "--mgmt-listen", &mgmt.to_string()])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn iobufferpro");
        let stdout = child.stdout.take().expect("stdout");
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        // Before the banner: the first-start password, and with `--config` what it applies
        // (a line per pair).
        for _ in 0..10_000 {
            line.clear();
            reader.read_line(&mut line).expect("read banner");
            if line.contains("running") || line.is_empty() {
                break;
            }
        }
        assert!(line.contains("running"), "instance did not start: {line:?}");
        // The portals bound port 0 where asked: the banner says where they listen (no probe
        // of a free port that another test could take before the instance binds it).
        let ops = banner_addr(&line, "Operations Portal ");
        let mgmt = banner_addr(&line, "Management Dashboard ");
        std::thread::spawn(move || {
            let mut sink = String::new();
            while reader.read_line(&mut sink).is_ok_and(|n| n > 0) {
                sink.clear();
            }
        });
        Instance {
            child,
            ops,
            mgmt,
            data: data.to_path_buf(),
            cookie: String::new(),
            csrf: String::new(),
        }
    }

    /// The first-start password of `admin`, while it has not been changed.
    pub fn initial_password(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.data.join("initial-admin-password.txt")).ok()?;
        text.lines().find_map(|l| l.strip_prefix("password: ")).map(str::to_string)
    }

    /// Logs in as admin over the API, as [`Instance::start`] does (changing the first-start
    /// password to [`TEST_ADMIN_PASSWORD`] if it is still in force).
    pub fn login_api(&mut self) {
        self.login_admin();
    }

    /// The process id of the instance.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An API call with the admin session: (status, body).
    pub fn api(&self, method: &str, path: &str, body: Option<&str>) -> Response {
        http(self.ops, method, path, body, Some(&self.cookie), Some(&self.csrf))
    }
}

// ---- For the pair form tests (tests/browser/pair_form.rs).

impl Instance {
    /// One pair as stored, passwords included: `config export --include-secrets` on the
    /// instance's data directory (readable while the instance runs).
    pub fn exported_pair(&self, id: &str) -> serde_json::Value {
        let data = self.data.display().to_string();
        let (code, out, err) =
            run_cli(&["config", "export", "--data-dir", &data, "--include-secrets"]);
        assert_eq!(code, 0, "config export: {err}");
        let doc: serde_json::Value = serde_json::from_str(&out).expect("exported JSON");
        doc["channel_pairs"]
            .as_array()
            .and_then(|pairs| pairs.iter().find(|p| p["id"] == id))
            .cloned()
            .unwrap_or_else(|| panic!("no pair {id} in the export: {out}"))
    }
}

// ---- For the kill -9 suites (crash.rs, fleet.rs): numbered messages, an acknowledged
// sender, and the check of what arrived.

/// An STX/ETX frame carrying message number `seq` (8 digits).
pub fn frame(seq: u64) -> Vec<u8> {
    format!("\x02{seq:08}\x03").into_bytes()
}

/// Streams [`frame`]s numbered from `start` into an ack-byte `stx_etx` source on 127.0.0.1:`port`
/// until `inst` is killed with SIGKILL after `after`; returns the number of the first message
/// not acknowledged (ACK bytes come in order, so `start..returned` were acknowledged).
pub fn stream_until_kill9(port: u16, start: u64, after: Duration, inst: Instance) -> u64 {
    use std::io::Read as _;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let mut conn = connect(port);
    let mut reader = conn.try_clone().expect("clone");
    let acks = Arc::new(AtomicU64::new(0));
    let (a2, stop) = (acks.clone(), Arc::new(AtomicBool::new(false)));
    let stop2 = stop.clone();
    let counter = std::thread::spawn(move || {
        let mut b = [0u8; 4096];
        while let Ok(n) = reader.read(&mut b) {
            if n == 0 {
                break;
            }
            assert!(b[..n].iter().all(|&x| x == 0x06), "only ACKs expected");
            a2.fetch_add(n as u64, Ordering::SeqCst);
        }
    });
    let writer = std::thread::spawn(move || {
        let mut seq = start;
        while !stop2.load(Ordering::Relaxed) {
            let mut batch = Vec::new();
            for s in seq..seq + 50 {
                batch.extend(frame(s));
            }
            if conn.write_all(&batch).is_err() {
                break;
            }
            seq += 50;
            std::thread::sleep(Duration::from_micros(200));
        }
    });
    std::thread::sleep(after);
    inst.kill9();
    stop.store(true, Ordering::Relaxed);
    let _ = writer.join();
    let _ = counter.join();
    let acked = start + acks.load(Ordering::SeqCst);
    assert!(acked > start, "nothing was acknowledged in {after:?}");
    acked
}

/// Checks what a receiver saw of numbered messages: every number in `0..must` present; the
/// distinct numbers form a gap-free range; first appearances in increasing order. Returns
/// (distinct, duplicates).
pub fn check_delivery(lines: &[String], must: u64) -> (u64, u64) {
    let nums: Vec<u64> = lines.iter().map(|l| l.parse().expect("number")).collect();
    let mut seen = std::collections::BTreeSet::new();
    let mut last_new = None;
    let mut dups = 0;
    for n in &nums {
        if seen.insert(*n) {
            assert!(
                last_new.is_none_or(|l| *n > l),
                "message {n} first delivered after a later one"
            );
            last_new = Some(*n);
        } else {
            dups += 1;
        }
    }
    let distinct = seen.len() as u64;
    if let (Some(&first), Some(&last)) = (seen.first(), seen.last()) {
        assert_eq!(first, 0);
        assert_eq!(last + 1, distinct, "a hole in the delivered messages");
    }
    assert!(distinct >= must, "only {distinct} delivered, {must} were acknowledged");
    (distinct, dups)
}

/// Waits until `receiver` has seen at least `n` distinct lines.
pub fn wait_distinct(receiver: &iobp_testkit::receiver::Receiver, n: u64, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let lines = receiver.lines();
        let distinct: std::collections::BTreeSet<&String> = lines.iter().collect();
        if distinct.len() as u64 >= n {
            return;
        }
        assert!(Instant::now() < deadline, "only {} of {n} delivered", distinct.len());
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---- The pair's accounting (tests/crash.rs, tests/faults.rs).

impl Instance {
    /// Waits (up to `secs`) for a settled reading of pair `id`'s accounting through the API
    /// and checks that every identity holds in it exactly; returns the reading. The counters
    /// of this process start at its start; the buffer it opened is its baseline.
    pub fn reconciled(&self, id: &str, secs: u64) -> serde_json::Value {
        let r = iobp_testkit::wait::poll(secs, "a settled reading of the accounting", || {
            let r = self.api("GET", &format!("/api/v1/pairs/{id}/reconciliation"), None);
            let v = r.json();
            if r.status == 200 && v["settled"] == true { Ok(v) } else { Err(r.body) }
        });
        for f in ["stored_difference", "done_difference", "buffer_difference", "pair_difference"] {
            assert_eq!(r[f], 0, "{id}: {f} in {r:#}");
        }
        assert_eq!(r["discrepancy"], 0, "{id}: {r:#}");
        let metrics = http_get(self.ops, "/metrics").1;
        let gauge = format!("iobp_reconciliation_discrepancy{{pair=\"{id}\"}} 0\n");
        assert!(metrics.contains(&gauge), "{id}: {metrics}");
        r
    }
}
