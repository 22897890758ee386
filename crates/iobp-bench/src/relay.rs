//! The relay between two instances: TCP → instance A → relay → instance B → TCP, durable on
//! both sides; throughput, then latency at 10,000 msg/s.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;

use crate::instance::{Binary, Instance, line_framing, pair_json};
use crate::load::{blast, connect, latency, throughput};
use crate::receiver::{Shared, receiver, verified, wait_count};
use crate::report::print_latency;

/// The receiving instance (B) with its receiver, and the port of the sending pair's source.
pub(crate) struct Phase {
    peer: Instance,
    password: String,
    got: Shared,
    _receiver: tokio::task::JoinHandle<()>,
    src: u16,
}

impl Phase {
    /// Starts the second instance under `data`: a relay source (channel `bench`) to a
    /// receiver of the bench.
    pub(crate) async fn start(
        binary: &Binary,
        data: &Path,
        size: usize,
        epoch: Instant,
    ) -> anyhow::Result<Phase> {
        let src = iobp_testkit::ports::free_port()?;
        let dst = iobp_testkit::ports::free_port()?;
        let dir = data.join("relay-receiver");
        let source = r#"{"type": "remote_icombuffer", "channel_id": "bench"}"#;
        // A relay user granted push into `bench`, stored before the instance starts (the
        // instance then creates no first-start admin; the bench needs none).
        let password = "bench-relay-password".to_string();
        {
            std::fs::create_dir_all(&dir)?;
            let store = iobp_store::Store::open(&dir)?;
            let hash = iobp_web::Passwords::new()
                .hash(&password)
                .await
                .map_err(|e| anyhow::anyhow!("hashing the relay password: {e:?}"))?;
            store.create_user("bench-relay", &hash, iobp_store::Role::Relay, false)?;
            let grant = iobp_store::RelayGrant {
                channel_id: "bench".into(),
                direction: iobp_store::RelayDirection::Push,
            };
            store.set_relay_grants("bench-relay", &[grant])?;
        }
        let peer = binary.start(&dir, &[pair_json("relay-in", source, dst, "", size)])?;
        let got: Shared = Arc::default();
        let listener = std::net::TcpListener::bind(("127.0.0.1", dst))?;
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener)?;
        let receiver = tokio::spawn(receiver(listener, None, got.clone(), epoch));
        Ok(Phase { peer, password, got, _receiver: receiver, src })
    }

    /// The sending instance's pair, `relay-out`: TCP in, relayed to instance B.
    pub(crate) fn pair(&self, size: usize) -> String {
        format!(
            r#"{{"id": "relay-out", "retry": {{"initial_ms": 100, "max_ms": 500}},
                "source": {{"type": "tcp_server", "host": "127.0.0.1", "port": {}, {}}},
                "destination": {{"type": "remote_icombuffer", "url": "http://{}", "channel_id": "bench",
                                 "auth": {{"username": "bench-relay", "password": "{}"}}}}}}"#,
            self.src,
            line_framing(size),
            self.peer.ops,
            self.password
        )
    }

    /// Throughput of `n` messages and latency at 10,000 msg/s for `latency_secs`; whether
    /// every message arrived exactly once and in order.
    #[allow(clippy::cast_precision_loss)] // figures for display
    pub(crate) async fn run(
        &self,
        n: u64,
        latency_secs: u64,
        size: usize,
        epoch: Instant,
    ) -> anyhow::Result<bool> {
        let got = &self.got;
        let mut conn = connect(SocketAddr::from(([127, 0, 0, 1], self.src))).await?;
        blast(&mut conn, 0, 10_000, size, epoch).await?;
        wait_count(got, 10_000, Duration::from_secs(60)).await?;
        let (rate, el) = throughput(&mut conn, got, 10_000, n, size, epoch).await?;
        println!(
            "relay throughput:       {rate:>12.0} msg/s  {:>8.1} MB/s   ({n} messages in {:.2} s: TCP -> instance A -> relay -> instance B -> TCP, durable in both)",
            rate * size as f64 / 1e6,
            el.as_secs_f64()
        );
        let (lat, sent) =
            latency(&mut conn, got, 10_000 + n, 10_000, latency_secs, size, epoch).await?;
        print_latency("relay latency", 10_000, &lat);
        Ok(verified("relay", got, 10_000 + n + sent))
    }
}
