//! For comparison, where `socat` is installed: the plain throughput phase through
//! `socat TCP-LISTEN:a,fork TCP:127.0.0.1:b`, a relay that stores nothing.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpListener;

use crate::load::{blast, connect};
use crate::receiver::{Shared, receiver, wait_count};

/// Measures socat's throughput with `n` messages and prints it next to ioBufferPro's
/// `plain_rate`; says so when socat is not installed.
#[allow(clippy::cast_precision_loss)] // figures for display
pub(crate) async fn run(n: u64, size: usize, plain_rate: f64) -> anyhow::Result<()> {
    if !socat_available() {
        println!("socat comparison: skipped (socat is not installed; apt-get install socat)");
        return Ok(());
    }
    let socat_rate = throughput(n, size).await?;
    println!(
        "socat relay (no storage): {socat_rate:>10.0} msg/s  {:>8.1} MB/s   -> ioBufferPro reaches {:.0} % of socat",
        socat_rate * size as f64 / 1e6,
        100.0 * plain_rate / socat_rate
    );
    Ok(())
}

fn socat_available() -> bool {
    Command::new("socat")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[allow(clippy::cast_precision_loss)]
async fn throughput(n: u64, size: usize) -> anyhow::Result<f64> {
    let (a, b) = (iobp_testkit::ports::free_port()?, iobp_testkit::ports::free_port()?);
    let got: Shared = Arc::default();
    let listener = TcpListener::bind(("127.0.0.1", b)).await?;
    let epoch = Instant::now();
    let task = tokio::spawn(receiver(listener, None, got.clone(), epoch));
    let mut socat = Command::new("socat")
        .arg(format!("TCP-LISTEN:{a},bind=127.0.0.1,fork,reuseaddr"))
        .arg(format!("TCP:127.0.0.1:{b}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting socat")?;
    let result = async {
        let mut conn = connect(SocketAddr::from(([127, 0, 0, 1], a))).await?;
        blast(&mut conn, 0, 10_000, size, epoch).await?;
        wait_count(&got, 10_000, Duration::from_secs(30)).await?;
        let t = Instant::now();
        blast(&mut conn, 10_000, n, size, epoch).await?;
        wait_count(&got, 10_000 + n, Duration::from_secs(600)).await?;
        Ok::<f64, anyhow::Error>(n as f64 / t.elapsed().as_secs_f64())
    }
    .await;
    let _ = socat.kill();
    let _ = socat.wait();
    task.abort();
    result
}
