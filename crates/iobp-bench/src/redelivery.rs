//! Re-delivery after a crash, with an instance of its own: `m` messages are buffered while the
//! destination is away; it comes, and halfway through the drain the instance is killed
//! (SIGKILL) and started again. What the receiver gets twice is what the last checkpoint did
//! not cover.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use tokio::net::TcpListener;

use crate::instance::{Binary, metric, pair_json, tcp_source};
use crate::load::{blast, connect};
use crate::receiver::{Shared, lock, receiver, wait_count};

pub(crate) async fn run(
    binary: &Binary,
    data: &Path,
    m: u64,
    size: usize,
    epoch: Instant,
) -> anyhow::Result<()> {
    let localhost = |port| SocketAddr::from(([127, 0, 0, 1], port));
    let (src, dst) = (iobp_testkit::ports::free_port()?, iobp_testkit::ports::free_port()?);
    let pair = pair_json("redeliver", &tcp_source(src, size), dst, "", size);
    let dir = data.join("redelivery");
    let inst = binary.start(&dir, std::slice::from_ref(&pair))?;
    let mut conn = connect(localhost(src)).await?;
    blast(&mut conn, 0, m, size, epoch).await?;
    let t = Instant::now();
    while metric(inst.ops, "iobp_messages_received_total{pair=\"redeliver\"}").await? < m {
        if t.elapsed() > Duration::from_secs(300) {
            bail!("the backlog was not stored within 300 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(conn);
    let got: Shared = Arc::default();
    let listener = TcpListener::bind(localhost(dst)).await?;
    let recv = tokio::spawn(receiver(listener, None, got.clone(), epoch));
    wait_count(&got, m / 2, Duration::from_secs(600)).await?;
    drop(inst); // SIGKILL
    let before = lock(&got).count;
    let inst = binary.start(&dir, &[pair])?;
    wait_count(&got, m, Duration::from_secs(600)).await?;
    // Let late duplicates in flight arrive.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (dups, gaps) = {
        let g = lock(&got);
        (g.duplicates, g.gaps)
    };
    println!(
        "re-delivery after kill -9 mid-drain: {dups} messages delivered twice ({before} of {m} delivered before the kill; target <= 20,000), {gaps} missing"
    );
    drop(inst);
    recv.abort();
    Ok(())
}
