//! Shared fixtures: an engine in a temporary directory, unique loopback addresses, simple
//! senders and receivers on real sockets, and polling with a deadline.

#![allow(dead_code)] // each test binary uses a different subset

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use iobp_config::{ChannelPairSpec, NoRepository, Settings, parse_pair};
use iobp_engine::{Engine, EngineOptions, PairSnapshot};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A loopback address no other test uses: 127.<pid-derived>.<counter>.<counter>. Linux routes
/// all of 127.0.0.0/8 to the loopback interface.
pub fn loopback() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let p = std::process::id();
    format!("127.{}.{}.{}", 1 + p % 250, 1 + (n / 250) % 250, 1 + n % 250)
}

/// A free TCP port on `ip`.
pub fn free_port(ip: &str) -> u16 {
    let l = std::net::TcpListener::bind((ip, 0)).expect("bind probe");
    l.local_addr().expect("addr").port()
}

/// A free UDP port on `ip`.
pub fn free_udp_port(ip: &str) -> u16 {
    let s = std::net::UdpSocket::bind((ip, 0)).expect("bind probe");
    s.local_addr().expect("addr").port()
}

pub struct Harness {
    pub engine: Engine,
    pub dir: tempfile::TempDir,
}

impl Harness {
    pub async fn new() -> Harness {
        Self::with_settings(Settings::default()).await
    }

    pub async fn with_settings(settings: Settings) -> Harness {
        Self::start(settings, None).await
    }

    /// An engine whose buffers live on a simulated file system (faults, power cuts).
    pub async fn with_fs(fs: &iobp_log::sim::SimFs) -> Harness {
        Self::start(Settings::default(), Some(Arc::new(fs.clone()))).await
    }

    async fn start(
        settings: Settings,
        log_fs: Option<Arc<dyn iobp_log::fs::FileSystem>>,
    ) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let (engine, report) = Engine::start(
            EngineOptions {
                data_dir: dir.path().to_path_buf(),
                settings,
                repository: Arc::new(NoRepository),
                log_fs,
            },
            Vec::new(),
        )
        .await;
        assert!(report.skipped.is_empty());
        Harness { engine, dir }
    }

    /// The buffer directory of pair `id`.
    pub fn log_dir(&self, id: &str) -> std::path::PathBuf {
        self.dir.path().join("logs").join(id)
    }

    pub async fn add(&self, json: &str) -> ChannelPairSpec {
        let spec = parse_pair(json).unwrap_or_else(|e| panic!("{e}\n{json}"));
        self.engine.create(spec.clone()).await.unwrap_or_else(|e| panic!("create: {e}"));
        spec
    }

    pub fn snap(&self, id: &str) -> PairSnapshot {
        self.engine.snapshot(id).expect("pair exists")
    }

    /// Waits until `f(snapshot)` holds, or panics with the snapshot after `secs`.
    pub async fn wait_for(
        &self,
        id: &str,
        secs: u64,
        what: &str,
        f: impl Fn(&PairSnapshot) -> bool,
    ) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.snap(id);
            if f(&s) {
                return;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}: {s:#?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A JSON pair with a line-framed `tcp_server` source and a line-framed `tcp_client` destination.
pub fn line_pair(id: &str, src: (&str, u16), dst: (&str, u16)) -> String {
    format!(
        r#"{{"id": "{id}",
            "retry": {{"initial_ms": 50, "max_ms": 400}},
            "source": {{"type": "tcp_server", "host": "{}", "port": {}, "framing": {{"type": "line"}}}},
            "destination": {{"type": "tcp_client", "host": "{}", "port": {}, "framing": {{"type": "line"}}}}}}"#,
        src.0, src.1, dst.0, dst.1
    )
}

/// Connects to a source, retrying while it is still binding.
pub async fn connect(addr: (&str, u16)) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect(addr).await {
            Ok(s) => return s,
            Err(e) => {
                assert!(Instant::now() < deadline, "cannot connect to {addr:?}: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// A receiving application: accepts connections one after another and collects everything
/// they send.
#[derive(Clone, Default)]
pub struct Received(pub Arc<Mutex<Vec<u8>>>);

impl Received {
    pub fn bytes(&self) -> Vec<u8> {
        self.0.lock().expect("lock").clone()
    }

    pub fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.bytes()).lines().map(String::from).collect()
    }

    pub async fn wait_lines(&self, n: usize, secs: u64) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let l = self.lines();
            if l.len() >= n {
                return l;
            }
            assert!(Instant::now() < deadline, "only {} of {n} lines arrived", l.len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn wait_bytes(&self, n: usize, secs: u64) -> Vec<u8> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let b = self.bytes();
            if b.len() >= n {
                return b;
            }
            assert!(Instant::now() < deadline, "only {} of {n} bytes arrived", b.len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Starts a receiver on `addr`; returns what it receives and the listener task.
pub async fn receiver(addr: (&str, u16)) -> (Received, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind(addr).await.expect("bind receiver");
    let got = Received::default();
    let g = got.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { return };
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => g.0.lock().expect("lock").extend_from_slice(&buf[..n]),
                }
            }
        }
    });
    (got, task)
}

/// Sends `lines` (each followed by `\n`) over one connection and closes it.
pub async fn send_lines(addr: (&str, u16), lines: impl IntoIterator<Item = String>) {
    let mut s = connect(addr).await;
    let mut buf = Vec::new();
    for l in lines {
        buf.extend_from_slice(l.as_bytes());
        buf.push(b'\n');
    }
    s.write_all(&buf).await.expect("send");
    s.shutdown().await.expect("shutdown");
}

/// Every frame of `framing` in `bytes` (rejections skipped), flushed at the end.
pub fn decode_all(framing: iobp_codec::Framing, bytes: &[u8]) -> Vec<Vec<u8>> {
    use iobp_codec::{Decoded, Deframer, FlushReason};
    let mut d = Deframer::new(framing, 1 << 20);
    let mut buf = bytes::BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(x) = d.decode(&mut buf) {
        if let Decoded::Frame(f) = x {
            out.push(f.to_vec());
        }
    }
    while let Some(x) = d.flush(&mut buf, FlushReason::Eof) {
        if let Decoded::Frame(f) = x {
            out.push(f.to_vec());
        }
    }
    out
}

/// `msgs` framed with `framing`, back to back.
pub fn encode_all(framing: &iobp_codec::Framing, msgs: &[Vec<u8>]) -> Vec<u8> {
    let enc = iobp_codec::Encoder::new(framing.clone());
    let mut wire = Vec::new();
    for m in msgs {
        enc.encode(m, &mut wire).expect("encode");
    }
    wire
}

/// Every payload durable in the buffer of pair `id` on `fs` (a file system after a power cut).
pub fn payloads_on(fs: &iobp_log::sim::SimFs, dir: &std::path::Path) -> Vec<Vec<u8>> {
    let log = iobp_log::Log::open(
        dir,
        iobp_log::LogOptions { fs: Arc::new(fs.clone()), ..iobp_log::LogOptions::default() },
    )
    .expect("open the buffer after the power cut");
    let all = log.read_range(1, usize::MAX, usize::MAX).expect("browse");
    all.iter().map(|r| r.payload.to_vec()).collect()
}
