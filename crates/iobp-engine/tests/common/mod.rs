//! The engine's own fixtures: an engine in a temporary directory, pair documents, senders on
//! real sockets, and framing helpers. Ports, loopback addresses, receivers, the pty device and
//! waits are `iobp_testkit`'s.

#![allow(dead_code)] // each test binary uses a different subset

use std::sync::Arc;
use std::time::{Duration, Instant};

use iobp_config::{ChannelPairSpec, NoRepository, Settings, parse_pair};
use iobp_engine::{Engine, EngineOptions, PairSnapshot};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

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

    /// Shuts the engine down and starts a new one on the same data directory with the same
    /// pairs (as a restart of the process would, from the store).
    pub async fn restart(self) -> Harness {
        let pairs = self.engine.list();
        self.engine.shutdown().await;
        let (engine, report) = Engine::start(
            EngineOptions {
                data_dir: self.dir.path().to_path_buf(),
                settings: Settings::default(),
                repository: Arc::new(NoRepository),
                log_fs: None,
            },
            pairs,
        )
        .await;
        assert!(report.skipped.is_empty(), "{:?}", report.skipped);
        Harness { engine, dir: self.dir }
    }

    /// A new engine on the file system `fs` (what survived a power cut of this harness's
    /// simulated file system), on the same data directory and with the same pairs. The old
    /// engine is left as a crash leaves a process: its file system is dead.
    pub async fn restart_after_power_cut(self, fs: &iobp_log::sim::SimFs) -> Harness {
        let pairs = self.engine.list();
        let (engine, report) = Engine::start(
            EngineOptions {
                data_dir: self.dir.path().to_path_buf(),
                settings: Settings::default(),
                repository: Arc::new(NoRepository),
                log_fs: Some(Arc::new(fs.clone())),
            },
            pairs,
        )
        .await;
        assert!(report.skipped.is_empty(), "{:?}", report.skipped);
        Harness { engine, dir: self.dir }
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
        iobp_testkit::wait::poll_async(secs, what, || {
            let s = self.snap(id);
            if f(&s) { Ok(()) } else { Err(format!("{s:#?}")) }
        })
        .await;
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

/// Waits for a settled reading of pair `id`'s accounting (`Engine::reconciliation`) and checks
/// that every identity holds in it exactly; returns it for the terms a test expects.
pub async fn reconciled(engine: &Engine, id: &str) -> iobp_engine::Reconciliation {
    let r = iobp_testkit::wait::poll_async(20, "a settled reading of the accounting", || {
        let r = engine.reconciliation(id).expect("pair");
        if r.settled { Ok(r) } else { Err(format!("{r:#?}")) }
    })
    .await;
    assert_eq!(
        (r.stored_difference, r.done_difference, r.buffer_difference, r.pair_difference),
        (0, 0, 0, 0),
        "{id}: every identity holds: {r:#?}"
    );
    assert_eq!(r.discrepancy, 0, "{id}: {r:#?}");
    r
}

/// An HL7 v2 result message with control id `n`; `poison` marks one a receiver may refuse.
pub fn hl7_message(n: u32, poison: bool) -> Vec<u8> {
    let kind = if poison { "POISON" } else { "OK" };
    format!("MSH|^~\\&|LAB|A|HIS|B|20261204||ORU^R01|{n}|P|2.5\rOBX|1|ST|{kind}\r").into_bytes()
}

/// What an [`hl7_receiver`] does with one message.
pub enum Hl7Answer {
    /// `AA`: the control id is kept.
    Accept,
    /// `AE` with this text.
    Refuse(&'static str),
    /// No answer at all.
    Silent,
}

/// An MLLP receiver on `(ip, port)` that asks `answer(control id, message)` what to do with
/// each HL7 message it reads, on every connection; returns the control ids it accepted, in
/// order.
pub async fn hl7_receiver(
    ip: &str,
    port: u16,
    answer: impl Fn(&str, &[u8]) -> Hl7Answer + Send + Sync + 'static,
) -> Arc<std::sync::Mutex<Vec<String>>> {
    use iobp_codec::hl7::{AckCode, build_ack, parse_msh};
    use iobp_codec::{Decoded, Deframer, Encoder, Framing};
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind((ip, port)).await.expect("bind");
    let got: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let (into, answer) = (got.clone(), Arc::new(answer));
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { return };
            let (into, answer) = (into.clone(), answer.clone());
            tokio::spawn(async move {
                let mut d = Deframer::new(Framing::mllp(), 1 << 20);
                let enc = Encoder::new(Framing::mllp());
                let mut buf = bytes::BytesMut::new();
                while s.read_buf(&mut buf).await.is_ok_and(|n| n > 0) {
                    while let Some(Decoded::Frame(f)) = d.decode(&mut buf) {
                        let id = parse_msh(&f).map(|m| m.control_id).unwrap_or_default();
                        let (code, text) = match answer(&id, &f) {
                            Hl7Answer::Silent => continue,
                            Hl7Answer::Accept => (AckCode::AA, None),
                            Hl7Answer::Refuse(text) => (AckCode::AE, Some(text)),
                        };
                        let ack = build_ack(&f, code, text, "20261204", "A1");
                        let mut out = Vec::new();
                        enc.encode(&ack, &mut out).expect("encode");
                        if code == AckCode::AA {
                            into.lock().expect("lock").push(id);
                        }
                        if s.write_all(&out).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    got
}
