//! Serial → tcp throughput through a pseudo-terminal standing in for a serial instrument
//! (Linux; elsewhere the phase is skipped). A pseudo-terminal has no baud rate: this measures
//! the instance's serial path, not a line.

#[cfg(target_os = "linux")]
pub(crate) use linux::Phase;

/// Elsewhere there is no pseudo-terminal phase.
#[cfg(not(target_os = "linux"))]
pub(crate) enum Phase {}

// The Linux phase's signatures, so that the callers are the same everywhere.
#[cfg(not(target_os = "linux"))]
#[allow(clippy::unnecessary_wraps, clippy::unused_async)]
impl Phase {
    pub(crate) fn prepare() -> anyhow::Result<Option<Phase>> {
        Ok(None)
    }

    pub(crate) fn pair(&self, _size: usize) -> String {
        match *self {}
    }

    pub(crate) async fn run(
        self,
        _k: u64,
        _size: usize,
        _epoch: std::time::Instant,
    ) -> anyhow::Result<bool> {
        match self {}
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::net::SocketAddr;
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use anyhow::Context;
    use tokio::net::TcpListener;

    use crate::instance::{line_framing, pair_json};
    use crate::load::{now_ns, put_message};
    use crate::receiver::{Shared, receiver, verified, wait_count};

    /// A pseudo-terminal pair: the instance opens the slave as its serial port, the bench
    /// writes into the master.
    struct Pty {
        master: std::fs::File,
        _slave: std::os::fd::OwnedFd,
        path: PathBuf,
    }

    impl Pty {
        fn open() -> anyhow::Result<Pty> {
            use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
            let pty = nix::pty::openpty(None, None).context("openpty")?;
            for fd in [&pty.master, &pty.slave] {
                let mut t = tcgetattr(fd)?;
                cfmakeraw(&mut t);
                tcsetattr(fd, SetArg::TCSANOW, &t)?;
            }
            let path = nix::unistd::ttyname(std::os::fd::AsFd::as_fd(&pty.slave))?;
            Ok(Pty { master: std::fs::File::from(pty.master), _slave: pty.slave, path })
        }
    }

    /// The serial pair's pseudo-terminal and destination port.
    pub(crate) struct Phase {
        pty: Pty,
        dst: u16,
    }

    impl Phase {
        pub(crate) fn prepare() -> anyhow::Result<Option<Phase>> {
            Ok(Some(Phase { pty: Pty::open()?, dst: iobp_testkit::ports::free_port()? }))
        }

        /// The pair, `serial`: the pseudo-terminal's slave at 115200 baud with RTS/CTS.
        pub(crate) fn pair(&self, size: usize) -> String {
            pair_json(
                "serial",
                &format!(
                    r#"{{"type": "serial", "port": "{}", "baud_rate": 115200, "flow_control": "RTS/CTS", {}}}"#,
                    self.pty.path.display(),
                    line_framing(size)
                ),
                self.dst,
                "",
                size,
            )
        }

        /// `k` messages after a warm-up of 10,000, written into the pseudo-terminal by a
        /// thread; whether every message arrived exactly once and in order.
        #[allow(clippy::cast_precision_loss)] // figures for display
        pub(crate) async fn run(self, k: u64, size: usize, epoch: Instant) -> anyhow::Result<bool> {
            let Phase { mut pty, dst } = self;
            let got: Shared = Arc::default();
            let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], dst))).await?;
            let _serial_recv = tokio::spawn(receiver(listener, None, got.clone(), epoch));
            let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
            let writer = std::thread::spawn(move || {
                write_serial(&mut pty.master, 0, 10_000, size, epoch)?;
                // The measured part starts once the warm-up has arrived.
                go_rx.recv().context("bench stopped")?;
                write_serial(&mut pty.master, 10_000, k, size, epoch)?;
                Ok::<Pty, anyhow::Error>(pty)
            });
            wait_count(&got, 10_000, Duration::from_secs(30)).await?;
            let t = Instant::now();
            go_tx.send(()).context("pty writer stopped")?;
            wait_count(&got, 10_000 + k, Duration::from_secs(600)).await?;
            let el = t.elapsed();
            let _pty = writer.join().map_err(|_| anyhow::anyhow!("pty writer panicked"))??;
            println!(
                "serial (pty) -> tcp:    {:>12.0} msg/s  {:>8.1} MB/s   ({k} messages in {:.2} s; a pseudo-terminal has no baud rate, a real line is far slower)",
                k as f64 / el.as_secs_f64(),
                k as f64 * size as f64 / 1e6 / el.as_secs_f64(),
                el.as_secs_f64()
            );
            Ok(verified("serial", &got, 10_000 + k))
        }
    }

    /// Writes `count` messages from `first` into the pseudo-terminal (the "instrument").
    fn write_serial(
        master: &mut std::fs::File,
        first: u64,
        count: u64,
        size: usize,
        epoch: Instant,
    ) -> anyhow::Result<()> {
        use std::io::Write;
        let per_write = (64 * 1024 / size).max(1) as u64;
        let mut buf = Vec::with_capacity(64 * 1024 + size);
        let mut seq = first;
        while seq < first + count {
            buf.clear();
            let ts = now_ns(epoch);
            let end = (seq + per_write).min(first + count);
            for s in seq..end {
                put_message(&mut buf, s, ts, size);
            }
            seq = end;
            master.write_all(&buf).context("writing to the pseudo-terminal")?;
        }
        Ok(())
    }
}
