//! Failover with default settings: the time from the primary destination's death to the first
//! message delivered by the backup, while 10,000 msg/s flow; and that everything sent reaches
//! one of the two.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::net::{TcpListener, TcpStream};

use crate::instance::line_framing;
use crate::load::{connect, now_ns, paced};
use crate::receiver::{Shared, ack_receiver, lock, wait_count};

/// The failover pair's ports: its source, the primary destination and the backup.
pub(crate) struct Phase {
    src: u16,
    primary: u16,
    backup: u16,
}

impl Phase {
    pub(crate) fn prepare() -> anyhow::Result<Phase> {
        let free = iobp_testkit::ports::free_port;
        Ok(Phase { src: free()?, primary: free()?, backup: free()? })
    }

    /// The pair, `ha`: TCP in; out to a primary destination with one backup, both
    /// acknowledging; everything else at its defaults (the failover target is for default
    /// settings).
    pub(crate) fn pair(&self, size: usize) -> String {
        let dest = |port: u16| {
            format!(
                r#"{{"type": "tcp_client", "host": "127.0.0.1", "port": {port}, "framing": {{"type": "line"}}, "ack": "byte"}}"#
            )
        };
        format!(
            // Its receivers come only when the phase starts, minutes later: a capped reconnect
            // backoff keeps the destination from sleeping through it. Failover settings:
            // default.
            r#"{{"id": "ha", "retry": {{"initial_ms": 100, "max_ms": 500}},
                "source": {{"type": "tcp_server", "host": "127.0.0.1", "port": {}, {}}},
                "destination": {}, "failover": [{}]}}"#,
            self.src,
            line_framing(size),
            dest(self.primary),
            dest(self.backup)
        )
    }

    #[allow(clippy::cast_precision_loss)] // figures for display
    pub(crate) async fn run(self, size: usize, epoch: Instant) -> anyhow::Result<()> {
        let (got_p, got_b): (Shared, Shared) = (Arc::default(), Arc::default());
        let p_task = tokio::spawn(ack_receiver(
            TcpListener::bind(("127.0.0.1", self.primary)).await?,
            got_p.clone(),
            epoch,
        ));
        let _b_task = tokio::spawn(ack_receiver(
            TcpListener::bind(("127.0.0.1", self.backup)).await?,
            got_b.clone(),
            epoch,
        ));
        let mut conn = connect(SocketAddr::from(([127, 0, 0, 1], self.src))).await?;
        let sender = tokio::spawn(async move {
            paced(&mut conn, 0, 10_000, 3, size, epoch).await?;
            Ok::<TcpStream, anyhow::Error>(conn)
        });
        wait_count(&got_p, 5_000, Duration::from_secs(30)).await?;
        // The primary dies: its listener and connection go away at once.
        p_task.abort();
        let died = now_ns(epoch);
        let deadline = Instant::now() + Duration::from_secs(30);
        let first = loop {
            if let Some(t) = lock(&got_b).first_at_ns {
                break t;
            }
            if Instant::now() > deadline {
                bail!("the backup received nothing within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        let _conn = sender.await.context("failover sender")??;
        // Everything sent reaches one of the two (the backup starts with what was in flight).
        let total = 30_000;
        let t = Instant::now();
        while lock(&got_p).count + lock(&got_b).count < total {
            if t.elapsed() > Duration::from_secs(60) {
                bail!(
                    "failover lost messages: {} + {} of {total}",
                    lock(&got_p).count,
                    lock(&got_b).count
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (p, b) = (lock(&got_p).count, lock(&got_b).count);
        println!(
            "failover:               first message on the backup {:.1} ms after the primary died (default settings; {p} messages to the primary, {b} to the backup, {} delivered twice)",
            first.saturating_sub(died) as f64 / 1e6,
            (p + b).saturating_sub(total)
        );
        Ok(())
    }
}
