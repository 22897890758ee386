//! The systemd service: the shipped unit passes `systemd-analyze verify` with a low exposure
//! score, and the instance speaks the notify protocol — `READY=1` with a `STATUS=` line once
//! it runs, watchdog pings when asked for, `STOPPING=1` at SIGTERM — over a real datagram
//! socket, as systemd would receive it.

#![cfg(target_os = "linux")]

mod util;

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn unit_for_this_build(dir: &std::path::Path) -> std::path::PathBuf {
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/iobufferpro.service"),
    )
    .expect("the unit");
    // Verification checks that the executables exist: this build's, not an installed one.
    let path = dir.join("iobufferpro.service");
    std::fs::write(&path, unit.replace("/usr/bin/iobufferpro", util::bin())).expect("write");
    path
}

#[test]
fn the_unit_passes_systemd_analyze_verify_with_a_low_exposure() {
    let tmp = tempfile::tempdir().expect("tmp");
    let unit = unit_for_this_build(tmp.path());
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze (provisioned by xtask)");
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.trim().is_empty(), "verify: {text}");
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze security");
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for iobufferpro.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure score in:\n{text}"));
    assert!(score <= 2.0, "exposure {score}:\n{text}");
}

/// Reads datagrams until one holds `line` (each datagram is lines of `KEY=value`).
fn wait_for(sock: &UnixDatagram, line: &str, seen: &mut Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut buf = [0u8; 4096];
    while !seen.iter().any(|s| s.lines().any(|l| l.starts_with(line))) {
        assert!(Instant::now() < deadline, "no {line} among {seen:?}");
        if let Ok(n) = sock.recv(&mut buf) {
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
}

#[test]
fn the_instance_tells_systemd_ready_status_watchdog_and_stopping() {
    let tmp = tempfile::tempdir().expect("tmp");
    let socket = tmp.path().join("notify.sock");
    let sock = UnixDatagram::bind(&socket).expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
    let config = tmp.path().join("c.json");
    let (src, dst) = (iobp_testkit::ports::tcp(), iobp_testkit::ports::tcp());
    std::fs::write(&config, util::line_pair_doc("p", src, dst, r#""none""#)).expect("config");
    let data = tmp.path().join("data");
    let mut child = Command::new(util::bin())
        .args(["run", "--ops-listen", "127.0.0.1:0", "--mgmt-listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(&data)
        .arg("--config")
        .arg(&config)
        .env("NOTIFY_SOCKET", &socket)
        .env("WATCHDOG_USEC", "1000000")
        .env("IOBP_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start");
    let mut seen = Vec::new();
    wait_for(&sock, "READY=1", &mut seen);
    let ready = seen.iter().find(|s| s.contains("READY=1")).expect("ready");
    assert!(ready.contains("STATUS=1 pair(s) running, "), "{ready}");
    // Pings at half of WATCHDOG_USEC.
    let before = seen.len();
    wait_for(&sock, "WATCHDOG=1", &mut seen);
    assert!(seen.len() > before);
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    wait_for(&sock, "STOPPING=1", &mut seen);
    assert!(child.wait().expect("exit").success());
}
