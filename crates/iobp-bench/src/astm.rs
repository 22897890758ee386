//! ASTM E1381 through the instance: the analyzer simulator → `astm` source → buffer → `astm`
//! destination → the LIS simulator, over TCP and over a pseudo-terminal standing in for the
//! analyzer's serial port (Linux). The link protocol is stop-and-wait — every frame waits for
//! its answer, and a message's last frame for the message's fdatasync — so what is measured
//! is the round trips and one sync per message, not bandwidth.
//!
//! Printed: messages per second end to end (the LIS has every message, verified in order,
//! once) unpaced over TCP and the pty, and over the pty paced like a 115,200 baud line (10
//! bit times per byte written), beside what such a line could carry at most.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use iobp_simulate::astm::{AnalyzerOptions, LisOptions, result_message, sample_number};
use iobp_simulate::{Endpoint, Link};

use crate::instance::Binary;

/// Message sample numbers the LIS got, in arrival order.
type Got = Arc<Mutex<Vec<u64>>>;

/// A LIS simulator on a free loopback port, collecting sample numbers (forever).
async fn lis() -> anyhow::Result<(u16, Got)> {
    let port = iobp_testkit::ports::free_port()?;
    let endpoint = Endpoint::new(Link::Listen(format!("127.0.0.1:{port}"))).await?;
    let got: Got = Arc::default();
    let into = got.clone();
    tokio::spawn(async move {
        let _ = iobp_simulate::astm::run_lis(&endpoint, &LisOptions::default(), move |m| {
            if let Ok(mut g) = into.lock() {
                g.push(sample_number(&m).unwrap_or(0));
            }
            true
        })
        .await;
    });
    Ok((port, got))
}

/// Waits until the LIS has `n` more messages than `before`; checks they are `first ..` in
/// order, once.
async fn delivered(
    got: &Got,
    before: usize,
    first: u64,
    n: u64,
    limit: Duration,
) -> anyhow::Result<bool> {
    let t = Instant::now();
    loop {
        let have = got.lock().map_or(0, |g| g.len().saturating_sub(before) as u64);
        if have >= n {
            break;
        }
        if t.elapsed() > limit {
            bail!("the LIS has {have} of {n} messages after {} s", limit.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let g = got.lock().map_err(|_| anyhow::anyhow!("lock"))?;
    let ok = g[before..].iter().copied().eq(first..first + n);
    if !ok {
        println!("astm: NOT exactly once in order at the LIS");
    }
    Ok(ok)
}

/// The pair: `source` (with ASTM framing) → ASTM `tcp_client` to the LIS at `lis`.
fn pair(id: &str, source: &str, lis: u16) -> String {
    format!(
        r#"{{"id": "{id}", "retry": {{"initial_ms": 100, "max_ms": 500}}, "source": {source},
            "destination": {{"type": "tcp_client", "host": "127.0.0.1", "port": {lis}, "framing": {{"type": "astm"}}}}}}"#
    )
}

/// One run: `n` messages from `first`, the analyzer on `io`; messages per second end to end.
#[allow(clippy::cast_precision_loss)] // figures for display
async fn run_once<S>(
    io: &mut S,
    got: &Got,
    first: u64,
    n: u64,
    line_baud: Option<u32>,
) -> anyhow::Result<(f64, bool)>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let opts = AnalyzerOptions { count: n, first, line_baud, ..AnalyzerOptions::default() };
    let mut report = iobp_simulate::astm::AnalyzerReport::default();
    let before = got.lock().map_or(0, |g| g.len());
    let t = Instant::now();
    iobp_simulate::astm::analyzer_on(io, &opts, &mut report, &mut |_| {}).await?;
    let ok = delivered(got, before, first, n, Duration::from_secs(600)).await?;
    Ok((n as f64 / t.elapsed().as_secs_f64(), ok))
}

/// Runs the phase with an instance under `data`; whether every message arrived exactly once
/// and in order.
#[allow(clippy::cast_precision_loss)] // figures for display
pub(crate) async fn run(binary: &Binary, data: &std::path::Path, n: u64) -> anyhow::Result<bool> {
    let (tcp_lis, tcp_got) = lis().await?;
    let (pty_lis, pty_got) = lis().await?;
    let src = iobp_testkit::ports::free_port()?;
    std::fs::create_dir_all(data)?;
    let port_link = data.join("astm-analyzer-port");
    #[cfg(target_os = "linux")]
    let mut device = iobp_testkit::pty::Device::plug(&port_link);
    let pairs = [
        pair(
            "astm-tcp",
            &format!(
                r#"{{"type": "tcp_server", "host": "127.0.0.1", "port": {src}, "framing": {{"type": "astm"}}}}"#
            ),
            tcp_lis,
        ),
        pair(
            "astm-pty",
            &format!(
                r#"{{"type": "serial", "port": "{}", "baud_rate": 115200, "framing": {{"type": "astm"}}}}"#,
                port_link.display()
            ),
            pty_lis,
        ),
    ];
    let _inst = binary.start(&data.join("astm"), &pairs)?;
    let bytes = result_message(1, false).len();
    let mut tcp = connect(src).await?;
    let mut ok = true;
    // Warm-up, then the measured run.
    ok &= run_once(&mut tcp, &tcp_got, 1, 200, None).await?.1;
    let (rate, o) = run_once(&mut tcp, &tcp_got, 201, n, None).await?;
    ok &= o;
    println!(
        "astm over tcp:          {rate:>12.0} msg/s  ({n} E1394 messages of {bytes} bytes, 6 frames each, analyzer → instance → LIS, one fdatasync per message)"
    );
    #[cfg(target_os = "linux")]
    {
        ok &= run_once(&mut device.master, &pty_got, 1, 200, None).await?.1;
        let (rate, o) = run_once(&mut device.master, &pty_got, 201, n, None).await?;
        ok &= o;
        println!(
            "astm over a pty:        {rate:>12.0} msg/s  (unpaced: a pseudo-terminal has no baud rate)"
        );
        let paced = (n / 10).max(50);
        let (rate, o) =
            run_once(&mut device.master, &pty_got, 201 + n, paced, Some(115_200)).await?;
        ok &= o;
        // What the line carries at most: the message's frames and ENQ/EOT, 10 bits a byte.
        let wire: usize = iobp_codec::astm::frames_of(&result_message(1, false))
            .iter()
            .map(Vec::len)
            .sum::<usize>()
            + 2;
        let line_max = 11_520.0 / wire as f64;
        println!(
            "astm at 115,200 baud:   {rate:>12.1} msg/s  ({paced} messages paced as the line would; the line alone carries at most {line_max:.1} msg/s of these)"
        );
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (&pty_got, port_link);
    Ok(ok)
}

async fn connect(port: u16) -> anyhow::Result<tokio::net::TcpStream> {
    let t = Instant::now();
    loop {
        match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            Ok(s) => {
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Err(e) if t.elapsed() > Duration::from_secs(10) => {
                return Err(e).context("connecting to the astm source");
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}
