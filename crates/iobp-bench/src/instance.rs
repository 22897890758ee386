//! The instances the bench measures: the `iobufferpro` binary started as a child process on a
//! data directory with a configuration, and what can be read about it from outside — its
//! `/metrics`, and its CPU time, threads and memory from `/proc` (Linux; elsewhere `None`).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The `iobufferpro` binary under measurement.
#[derive(Debug, Clone)]
pub(crate) struct Binary(PathBuf);

/// The command that builds both binaries where [`Binary::locate`] looks by default.
pub(crate) const BUILD_COMMAND: &str = "cargo build --release --workspace";

impl Binary {
    /// `given`, or else `iobufferpro` next to this executable (the same target directory, so
    /// the same `cargo build`); an error naming the command that builds it when it is not
    /// there.
    pub(crate) fn locate(given: Option<PathBuf>) -> anyhow::Result<Binary> {
        if let Some(path) = given {
            return Self::at(path);
        }
        let me = std::env::current_exe().context("locating this executable")?;
        let dir = me.parent().context("this executable has no directory")?;
        Self::at(dir.join(format!("iobufferpro{}", std::env::consts::EXE_SUFFIX)))
    }

    fn at(path: PathBuf) -> anyhow::Result<Binary> {
        if !path.is_file() {
            bail!(
                "no iobufferpro binary at {}: build it with `{BUILD_COMMAND}` (it lands next to \
                 iobp-bench), or name one with --binary",
                path.display()
            );
        }
        Ok(Binary(path))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    /// Starts an instance on `data` with the given channel pairs (JSON objects).
    pub(crate) fn start(&self, data: &Path, pairs: &[String]) -> anyhow::Result<Instance> {
        let config = data.join("bench-config.json");
        std::fs::create_dir_all(data)?;
        std::fs::write(&config, format!(r#"{{"channel_pairs": [{}]}}"#, pairs.join(",")))?;
        self.spawn(data, Some(&config))
    }

    /// Starts an instance on `data`, applying the configuration document `config` if given
    /// (else it runs the pairs stored there); returns once the instance says it is running.
    pub(crate) fn spawn(&self, data: &Path, config: Option<&Path>) -> anyhow::Result<Instance> {
        let ops = SocketAddr::from(([127, 0, 0, 1], iobp_testkit::ports::free_port()?));
        let mgmt = SocketAddr::from(([127, 0, 0, 1], iobp_testkit::ports::free_port()?));
        let mut cmd = Command::new(&self.0);
        cmd.arg("run");
        if let Some(config) = config {
            cmd.arg("--config").arg(config);
        }
        let mut child = cmd
            .arg("--data-dir")
            .arg(data)
            .args(["--ops-listen", &ops.to_string(), "--mgmt-listen", &mgmt.to_string()])
            .env("IOBP_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting the instance ({})", self.0.display()))?;
        let stdout = child.stdout.take().context("instance stdout")?;
        // From here on the child is killed when this returns early.
        let inst = Instance { child, ops };
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        // Before the banner: the first-start password and what `--config` applies (a line
        // per pair).
        for _ in 0..100_000 {
            line.clear();
            reader.read_line(&mut line)?;
            if line.contains("running") || line.is_empty() {
                break;
            }
        }
        if !line.contains("running") {
            bail!("instance did not start: {line}");
        }
        Ok(inst)
    }
}

/// A running instance; killed (SIGKILL) and reaped when dropped.
pub(crate) struct Instance {
    pub(crate) child: Child,
    /// Its Operations Portal (`/metrics`, relay upgrades).
    pub(crate) ops: SocketAddr,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Stops an instance as a service manager would (SIGTERM) and waits until it exits.
pub(crate) async fn stop(mut inst: Instance) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &inst.child.id().to_string()])
        .status()
        .context("kill -TERM")?;
    if !status.success() {
        bail!("kill -TERM {} failed", inst.child.id());
    }
    while inst.child.try_wait()?.is_none() {
        if t.elapsed() > Duration::from_secs(120) {
            bail!("the instance did not stop within 120 s of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(t.elapsed())
}

/// A line-framed pair from `source` to a `tcp_client` destination.
pub(crate) fn pair_json(id: &str, source: &str, dst: u16, dst_tls: &str, size: usize) -> String {
    format!(
        r#"{{"id": "{id}", "retry": {{"initial_ms": 100, "max_ms": 500}},
            "source": {source},
            "destination": {{"type": "tcp_client", "host": "127.0.0.1", "port": {dst}, "framing": {{"type": "line", "max_message_bytes": {max}}}{dst_tls}}}}}"#,
        max = size.max(64)
    )
}

/// A line-framed `tcp_server` source on `port`.
pub(crate) fn tcp_source(port: u16, size: usize) -> String {
    format!(
        r#"{{"type": "tcp_server", "host": "127.0.0.1", "port": {port}, {}}}"#,
        line_framing(size)
    )
}

pub(crate) fn line_framing(size: usize) -> String {
    format!(r#""framing": {{"type": "line", "max_message_bytes": {}}}"#, size.max(64))
}

/// One value from the instance's `/metrics` (the bench has no HTTP client dependency, and
/// the public metrics need no login).
pub(crate) async fn metric(addr: SocketAddr, series: &str) -> anyhow::Result<u64> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await?;
    let text = String::from_utf8_lossy(&resp);
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse::<u64>().ok()))
        .with_context(|| format!("no {series} in /metrics"))
}

/// Peak and current resident memory of a process, in KiB (Linux).
pub(crate) fn rss_kib(pid: u32) -> (Option<u64>, Option<u64>) {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return (None, None);
    };
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// Resets a process's peak RSS (`VmHWM`) to its current RSS (Linux; ignored elsewhere).
pub(crate) fn reset_peak_rss(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

/// User + system CPU time of a process so far, all its threads, running and ended (Linux:
/// `/proc/<pid>/stat`, in clock ticks).
pub(crate) fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from the last `)`,
    // after which comes field 3; utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 1..)?.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_micros(ticks * 1_000_000 / clock_ticks()))
}

/// Clock ticks per second of `/proc/<pid>/stat` (`getconf CLK_TCK`; 100 on every common
/// Linux).
fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

/// Threads of a process (Linux: `/proc/<pid>/status`).
pub(crate) fn threads(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_binary_is_an_error_that_names_the_build_command() {
        let dir = std::env::temp_dir().join(format!("iobp-bench-no-binary-{}", std::process::id()));
        let err = Binary::locate(Some(dir.join("iobufferpro"))).expect_err("no such binary");
        let text = format!("{err:#}");
        assert!(text.contains(BUILD_COMMAND), "{text}");
        assert!(text.contains("--binary"), "{text}");
    }

    #[test]
    fn a_given_binary_is_taken_as_it_is() {
        let me = std::env::current_exe().expect("this test's executable");
        let binary = Binary::locate(Some(me.clone())).expect("an existing file");
        assert_eq!(binary.path(), me);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_threads_and_cpu_time() {
        let me = std::process::id();
        assert!(threads(me).is_some_and(|t| t >= 1));
        assert!(cpu_time(me).is_some());
    }
}
