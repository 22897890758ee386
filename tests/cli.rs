//! The command line: `config check/export/import`, `run` with and without `--config`,
//! persistence across restarts, SIGTERM, one instance per data directory, `replay` through the
//! API of a running instance.

mod util;

use std::io::Write;
use std::time::Duration;

use iobp_testkit::ports;
use iobp_testkit::receiver::Receiver;
use util::*;

#[test]
fn config_check_accepts_valid_documents_and_names_the_field_of_invalid_ones() {
    let tmp = tempfile::tempdir().expect("tmp");
    let good = tmp.path().join("good.json");
    std::fs::write(&good, line_pair_doc("a", 5000, 6000, r#""none""#)).expect("write");
    let (code, out, _) = run_cli(&["config", "check", good.to_str().expect("utf8")]);
    assert_eq!(code, 0);
    assert!(out.contains("valid (1 channel pair"), "{out}");

    let bad = tmp.path().join("bad.json");
    std::fs::write(&bad, line_pair_doc("a", 0, 6000, r#""none""#)).expect("write");
    let (code, _, err) = run_cli(&["config", "check", bad.to_str().expect("utf8")]);
    assert_ne!(code, 0);
    assert!(err.contains("channel_pairs[0].source.port"), "{err}");

    let (code, _, err) = run_cli(&["config", "check", "/no/such/file.json"]);
    assert_ne!(code, 0);
    assert!(err.contains("cannot read"), "{err}");

    // Without a document: the stored configuration (the systemd unit's ExecStartPre).
    let data = tmp.path().join("data");
    let d = data.to_str().expect("utf8");
    let (code, out, _) = run_cli(&["config", "check", "--data-dir", d]);
    assert_eq!(code, 0);
    assert!(out.contains("nothing stored yet"), "{out}");
    let (code, _, err) =
        run_cli(&["config", "import", good.to_str().expect("utf8"), "--data-dir", d]);
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = run_cli(&["config", "check", "--data-dir", d]);
    assert_eq!(code, 0);
    assert!(out.contains("valid (1 channel pair(s))"), "{out}");
}

#[test]
fn run_with_config_persists_and_export_import_round_trip() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let (src, dst) = (ports::tcp(), ports::tcp());
    let config = tmp.path().join("c.json");
    std::fs::write(&config, line_pair_doc("kept", src, dst, r#""none""#)).expect("write");
    let inst = Instance::start(&data, &["--config", config.to_str().expect("utf8")]);
    assert_eq!(inst.pair("kept")["source"]["type"], "tcp_server");
    // Messages stored while the destination is down survive a restart without --config.
    let mut s = connect(src);
    s.write_all(b"\x0200000000\x03\x0200000001\x03").expect("send");
    inst.wait_for("kept", 10, "stored", |p| p["counts"]["received"] == 2);
    assert_eq!(inst.terminate().code(), Some(0), "SIGTERM exits 0");

    // Import is refused while an instance runs on the directory.
    let inst = Instance::start(&data, &[]);
    assert_eq!(inst.pairs().as_array().map(Vec::len), Some(1), "the pair was stored");
    let (code, _, err) = run_cli(&[
        "config",
        "import",
        config.to_str().expect("utf8"),
        "--data-dir",
        data.to_str().expect("utf8"),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("another ioBufferPro is running"), "{err}");
    let receiver = Receiver::start(ports::localhost(dst));
    inst.wait_for("kept", 10, "delivered after restart", |p| p["counts"]["sent"] == 2);
    // "sent" means written to the connection; the receiver's thread may not have read it yet.
    assert_eq!(receiver.wait_lines(2, 10), vec!["00000000", "00000001"]);
    assert_eq!(inst.terminate().code(), Some(0));

    let (code, out, err) =
        run_cli(&["config", "export", "--data-dir", data.to_str().expect("utf8")]);
    assert_eq!(code, 0, "{err}");
    let exported = tmp.path().join("exported.json");
    std::fs::write(&exported, &out).expect("write");
    let other = tmp.path().join("other");
    let (code, _, err) = run_cli(&[
        "config",
        "import",
        exported.to_str().expect("utf8"),
        "--data-dir",
        other.to_str().expect("utf8"),
    ]);
    assert_eq!(code, 0, "{err}");
    let (_, again, _) = run_cli(&["config", "export", "--data-dir", other.to_str().expect("utf8")]);
    assert_eq!(again, out, "export -> import -> export is stable");
}

#[test]
fn a_second_instance_on_the_same_data_directory_is_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let _first = Instance::start(tmp.path(), &[]);
    let (code, _, err) = run_cli(&[
        "run",
        "--data-dir",
        tmp.path().to_str().expect("utf8"),
        "--ops-listen",
        &format!("127.0.0.1:{}", ports::tcp()),
        "--mgmt-listen",
        &format!("127.0.0.1:{}", ports::tcp()),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("another ioBufferPro is running"), "{err}");
}

#[test]
fn without_a_command_it_runs_and_serves_health_on_both_ports() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (ops, mgmt) = (ports::tcp(), ports::tcp());
    let child = std::process::Command::new(bin())
        .env("IOBP_DATA_DIR", tmp.path())
        .env("IOBP_OPS_LISTEN", format!("127.0.0.1:{ops}"))
        .env("IOBP_MGMT_LISTEN", format!("127.0.0.1:{mgmt}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let mut child = ChildGuard(child);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let addr = |p: u16| std::net::SocketAddr::from(([127, 0, 0, 1], p));
    while std::net::TcpStream::connect(addr(mgmt)).is_err() {
        assert!(std::time::Instant::now() < deadline, "never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    for port in [ops, mgmt] {
        assert_eq!(http_get(addr(port), "/healthz"), (200, "ok\n".to_string()));
        // Readiness follows listening by a moment.
        while http_get(addr(port), "/readyz").0 != 200 {
            assert!(std::time::Instant::now() < deadline, "never ready");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = std::process::Command::new("kill").arg("-TERM").arg(child.0.id().to_string()).status();
    let status = child.0.wait().expect("wait");
    assert_eq!(status.code(), Some(0));
    assert!(tmp.path().join(iobp_store::DB_FILE).exists());
}

/// Modes of the data directory and everything below it (symbolic links left out).
#[cfg(unix)]
fn modes_below(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        out.push((d.clone(), std::fs::metadata(&d).expect("stat").permissions().mode() & 0o777));
        for e in std::fs::read_dir(&d).expect("list") {
            let e = e.expect("entry");
            let m = e.metadata().expect("stat");
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() {
                out.push((e.path(), m.permissions().mode() & 0o777));
            }
        }
    }
    out
}

#[cfg(unix)]
#[test]
fn the_data_directory_and_its_files_are_private_to_the_user() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let (src, dst) = (ports::tcp(), ports::tcp());
    let config = tmp.path().join("c.json");
    std::fs::write(&config, line_pair_doc("p", src, dst, r#""none""#)).expect("write");
    let inst = Instance::start(&data, &["--config", config.to_str().expect("utf8")]);
    let mut s = connect(src);
    s.write_all(b"\x02secret payload\x03").expect("send");
    inst.wait_for("p", 10, "stored", |p| p["counts"]["received"] == 1);
    assert_eq!(inst.terminate().code(), Some(0));
    let modes = modes_below(&data);
    assert!(modes.len() > 8, "the store, a buffer's segment, checkpoint, lock: {modes:?}");
    let open: Vec<_> = modes.iter().filter(|(_, m)| m & 0o077 != 0).collect();
    assert!(open.is_empty(), "readable by other users: {open:?}");
    // A data directory from an earlier version (0755 and 0644): private again at start.
    for (path, _) in &modes {
        let m = if path.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(m)).expect("chmod");
    }
    let inst = Instance::start(&data, &[]);
    assert_eq!(inst.terminate().code(), Some(0));
    let open: Vec<_> = modes_below(&data).into_iter().filter(|(_, m)| m & 0o077 != 0).collect();
    assert!(open.is_empty(), "still readable by other users after a start: {open:?}");
}

#[test]
fn config_export_redacts_relay_passwords_unless_asked() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let src = ports::tcp();
    let config = tmp.path().join("c.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"channel_pairs": [{{"id": "up", "source": {{"type": "tcp_server", "host": "127.0.0.1", "port": {src}}},
                "destination": {{"type": "remote_icombuffer", "url": "http://127.0.0.1:9", "channel_id": "c",
                                 "auth": {{"username": "relay", "password": "correct-horse-battery"}}}}}}]}}"#
        ),
    )
    .expect("write");
    let inst = Instance::start(&data, &["--config", config.to_str().expect("utf8")]);
    assert_eq!(inst.terminate().code(), Some(0));
    let d = data.to_str().expect("utf8");
    let (code, out, err) = run_cli(&["config", "export", "--data-dir", d]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("correct-horse-battery"), "{out}");
    assert!(out.contains("********") && err.contains("--include-secrets"), "{out}\n{err}");
    let (code, full, err) = run_cli(&["config", "export", "--data-dir", d, "--include-secrets"]);
    assert_eq!(code, 0, "{err}");
    assert!(full.contains("correct-horse-battery") && err.contains("clear text"), "{err}");
    // The redacted export imported on the same data directory keeps the stored password ...
    let redacted = tmp.path().join("redacted.json");
    std::fs::write(&redacted, &out).expect("write");
    let r = redacted.to_str().expect("utf8");
    let (code, _, err) = run_cli(&["config", "import", r, "--data-dir", d]);
    assert_eq!(code, 0, "{err}");
    let (_, again, _) = run_cli(&["config", "export", "--data-dir", d, "--include-secrets"]);
    assert_eq!(again, full, "the stored password is kept, not replaced by the mask");
    // ... elsewhere it is refused, naming the field.
    let other = tmp.path().join("other");
    let (code, _, err) =
        run_cli(&["config", "import", r, "--data-dir", other.to_str().expect("utf8")]);
    assert_ne!(code, 0);
    assert!(err.contains("channel_pairs[0].destination.auth.password"), "{err}");
}

/// `replay` on a running instance: a dry run shows the selection and stores nothing; the
/// replay stores the copies in order; a wrong password is refused with the reason.
#[test]
fn replay_from_the_command_line_through_the_api() {
    let data = tempfile::tempdir().expect("tempdir");
    let inst = util::Instance::start(data.path(), &[]);
    let (src, dst) = (ports::tcp(), ports::tcp());
    let body = format!(
        r#"{{"id": "lines", "source": {{"type": "tcp_server", "host": "127.0.0.1", "port": {src}, "framing": {{"type": "line"}}}},
            "destination": {{"type": "tcp_client", "host": "127.0.0.1", "port": {dst}, "framing": {{"type": "line"}}}}}}"#
    );
    assert_eq!(inst.api("POST", "/api/v1/pairs", Some(&body)).status, 201);
    util::send_lines(src, (1..=30).map(|i| format!("line {i}")));
    inst.wait_for("lines", 10, "30 stored", |s| s["counts"]["received"] == 30);
    let url = format!("http://{}", inst.ops);
    let run = |extra: &[&str], password: &str| {
        let out = std::process::Command::new(util::bin())
            .args(["replay", "lines", "--url", &url, "--from-seq", "5", "--to-seq", "9"])
            .args(extra)
            .env("IOBP_PASSWORD", password)
            .output()
            .expect("run replay");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = run(&["--dry-run"], util::TEST_ADMIN_PASSWORD);
    assert!(ok, "{out}{err}");
    assert!(out.contains("selected 5 message(s), #5–#9"), "{out}");
    assert!(out.contains("#5 line 5"), "{out}");
    assert!(out.contains("dry run: nothing stored"), "{out}");
    assert_eq!(inst.pair("lines")["counts"]["received"], 30);
    let (ok, out, err) = run(&[], util::TEST_ADMIN_PASSWORD);
    assert!(ok, "{out}{err}");
    assert!(out.contains("replayed 5 message(s) into lines as #31–#35"), "{out}");
    let page = inst.api("GET", "/api/v1/pairs/lines/messages?from_seq=31", None).json();
    let texts: Vec<&str> = page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["text"].as_str())
        .collect();
    assert_eq!(texts, ["line 5", "line 6", "line 7", "line 8", "line 9"]);
    let (ok, _, err) = run(&[], "not the password");
    assert!(!ok);
    assert!(err.contains("login as admin: 401"), "{err}");
}

/// `config diff` shows what a document would change — on a data directory and on the running
/// instance, through its API — and changes nothing; `config import` prints the same summary.
#[test]
fn config_diff_shows_the_changes_and_changes_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let d = data.to_str().expect("utf8");
    let pair = |id: &str, src: u16, dst: u16| {
        format!(
            r#"{{"id": "{id}", "source": {{"type": "tcp_server", "host": "127.0.0.1", "port": {src}, "framing": {{"type": "line"}}}},
                "destination": {{"type": "tcp_client", "host": "127.0.0.1", "port": {dst}, "framing": {{"type": "line"}}}}}}"#
        )
    };
    let (a, b, c) = (ports::tcp(), ports::tcp(), ports::tcp());
    let write = |name: &str, pairs: &[String]| {
        let path = tmp.path().join(name);
        std::fs::write(&path, format!(r#"{{"channel_pairs": [{}]}}"#, pairs.join(",")))
            .expect("write");
        path.to_str().expect("utf8").to_string()
    };
    let first = write("first.json", &[pair("a", a, 7001), pair("b", b, 7002)]);
    let (code, out, err) = run_cli(&["config", "import", &first, "--data-dir", d]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("+ a: added") && out.contains("+ b: added"), "{out}");
    let (_, exported, _) = run_cli(&["config", "export", "--data-dir", d]);

    // a unchanged, b's destination port changed, c new.
    let second =
        write("second.json", &[pair("a", a, 7001), pair("b", b, 7003), pair("c", c, 7004)]);
    let (code, out, err) = run_cli(&["config", "diff", &second, "--data-dir", d]);
    assert_eq!(code, 0, "{err}");
    let want = [
        "= a: unchanged, keeps running",
        "~ b: changed, restarts\n    destination.port: 7002 → 7003",
        "+ c: added",
        "1 added, 1 changed (1 restart), 0 removed, 1 unchanged",
    ];
    for w in want {
        assert!(out.contains(w), "{w:?} in:\n{out}");
    }
    // As `config import` would apply it (replacing), a pair not in the document goes.
    let only_c = write("only-c.json", &[pair("c", c, 7004)]);
    let (_, out, _) = run_cli(&["config", "diff", &only_c, "--data-dir", d, "--replace"]);
    assert!(out.contains("- a: removed, with every message in its buffer"), "{out}");
    let (_, out, _) = run_cli(&["config", "diff", &only_c, "--data-dir", d]);
    assert!(out.contains("  a: not in the document, kept"), "{out}");
    // An invalid document is refused with its problem.
    let clash = write("clash.json", &[pair("x", a, 7009)]);
    let (code, _, err) = run_cli(&["config", "diff", &clash, "--data-dir", d]);
    assert_ne!(code, 0);
    assert!(err.contains("port"), "{err}");
    // Nothing changed.
    let (_, after, _) = run_cli(&["config", "export", "--data-dir", d]);
    assert_eq!(after, exported);

    // The same through the API of the running instance.
    let inst = Instance::start(&data, &[]);
    let url = format!("http://{}", inst.ops);
    let out = std::process::Command::new(util::bin())
        .args(["config", "diff", &second, "--url", &url, "--user", "admin"])
        .env("IOBP_PASSWORD", util::TEST_ADMIN_PASSWORD)
        .output()
        .expect("run diff");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    for w in want {
        assert!(text.contains(w), "{w:?} in:\n{text}");
    }
    assert_eq!(inst.pairs().as_array().map(Vec::len), Some(2), "nothing applied");
}

/// The log level of the settings applies at once, as the settings page says: a debug event
/// reaches the log viewer right after `log_level: debug` is saved, and no longer once `info`
/// is saved again (it used to apply only at the next start).
#[test]
fn the_log_level_of_the_settings_applies_at_once() {
    use std::io::{Read as _, Write as _};
    let tmp = tempfile::tempdir().expect("tmp");
    // No IOBP_LOG: the stored setting is in force.
    let mut inst = Instance::start_fresh(tmp.path(), &[], "");
    inst.login_api();
    // A request hyper cannot parse: the portal logs its end at debug level.
    let garbage = |inst: &Instance| {
        let mut s = std::net::TcpStream::connect(inst.ops).expect("connect");
        s.write_all(b"\x16\x03\x01 not http\r\n\r\n").expect("write");
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
    };
    let debug_lines = |inst: &Instance| {
        let r = inst.api("GET", "/api/v1/logs?level=debug&limit=2000", None);
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()
            .as_array()
            .expect("lines")
            .iter()
            .filter(|l| {
                l["level"] == "DEBUG"
                    && l["message"].as_str().is_some_and(|m| m.contains("portal connection ended"))
            })
            .count()
    };
    let set_level = |inst: &Instance, level: &str| {
        let mut settings = inst.api("GET", "/api/v1/settings", None).json()["settings"].clone();
        settings["log_level"] = level.into();
        let r = inst.api("PUT", "/api/v1/settings", Some(&settings.to_string()));
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["restart_required"], serde_json::json!([]), "{}", r.body);
    };
    garbage(&inst);
    assert_eq!(debug_lines(&inst), 0, "info: no debug lines");
    set_level(&inst, "debug");
    garbage(&inst);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while debug_lines(&inst) == 0 {
        assert!(std::time::Instant::now() < deadline, "no debug line after log_level debug");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    set_level(&inst, "info");
    let before = debug_lines(&inst);
    garbage(&inst);
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(debug_lines(&inst), before, "back to info: no more debug lines");
}

/// A pair that `config import` removes goes with its buffer, as the import's summary says: a
/// pair created later under the same id starts empty, and never delivers the old pair's
/// messages to its own destination (they stayed behind, and came back with the id).
#[test]
fn a_pair_removed_by_an_import_takes_its_buffer_with_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let d = data.to_str().expect("utf8").to_string();
    let (src, dst) = (ports::tcp(), ports::tcp());
    let config = tmp.path().join("c.json");
    std::fs::write(&config, line_pair_doc("reused", src, dst, r#""none""#)).expect("write");
    let inst = Instance::start(&data, &["--config", config.to_str().expect("utf8")]);
    // Destination down: three messages wait in the buffer.
    let mut s = connect(src);
    s.write_all(b"\x02old-0\x03\x02old-1\x03\x02old-2\x03").expect("send");
    inst.wait_for("reused", 10, "stored", |p| p["counts"]["received"] == 3);
    assert_eq!(inst.terminate().code(), Some(0));

    let empty = tmp.path().join("empty.json");
    std::fs::write(&empty, r#"{"channel_pairs": []}"#).expect("write");
    let (code, out, err) =
        run_cli(&["config", "import", empty.to_str().expect("utf8"), "--data-dir", &d]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("reused"), "the summary names the removed pair: {out}");
    assert!(!data.join("logs").join("reused").exists(), "its buffer is gone");

    // The same id again, now with a receiver: nothing old arrives.
    let (code, out, err) =
        run_cli(&["config", "import", config.to_str().expect("utf8"), "--data-dir", &d]);
    assert_eq!(code, 0, "{out}{err}");
    let receiver = Receiver::start(ports::localhost(dst));
    let inst = Instance::start(&data, &[]);
    let mut s = connect(src);
    s.write_all(b"\x02new-0\x03").expect("send");
    assert_eq!(receiver.wait_lines(1, 10), vec!["new-0"]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(receiver.lines(), vec!["new-0"], "none of the removed pair's messages");
    assert_eq!(inst.pair("reused")["counts"]["pending"], 0);
    assert_eq!(inst.terminate().code(), Some(0));
}

/// An operator locked out of every admin account resets one from the command line, with the
/// instance stopped (the same trust as reading the data directory): a new random password,
/// to be changed at the next login, the old one refused, audited — and nothing else changed,
/// buffered messages included.
#[test]
fn a_locked_out_admin_is_reset_from_the_command_line() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let d = data.to_str().expect("utf8").to_string();
    let inst = Instance::start(&data, &[]);
    // Refused while the instance runs on the directory.
    let (code, _, err) = run_cli(&["user", "reset-password", "admin", "--data-dir", &d]);
    assert_ne!(code, 0);
    assert!(err.contains("another ioBufferPro is running"), "{err}");
    assert_eq!(inst.terminate().code(), Some(0));

    let (code, _, err) = run_cli(&["user", "reset-password", "nobody", "--data-dir", &d]);
    assert_ne!(code, 0);
    assert!(err.contains("no user `nobody`"), "{err}");

    let (code, out, err) = run_cli(&["user", "reset-password", "--data-dir", &d]);
    assert_eq!(code, 0, "{out}{err}");
    let password = out
        .lines()
        .find_map(|l| l.strip_prefix("new password for admin: "))
        .unwrap_or_else(|| panic!("the new password is printed: {out}"))
        .trim()
        .to_string();
    assert_eq!(password.len(), 20, "{password}");

    let inst = Instance::start_fresh(&data, &[], "error");
    let login = |pw: &str| {
        let body = format!(r#"{{"username": "admin", "password": "{pw}"}}"#);
        http(inst.ops, "POST", "/api/v1/session", Some(&body), None, None)
    };
    assert_eq!(login(TEST_ADMIN_PASSWORD).status, 401, "the old password no longer works");
    let r = login(&password);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["must_change_password"], true, "to be changed at the next login");
    let (cookie, csrf) = (r.cookie.clone().expect("cookie"), r.json()["csrf_token"].clone());
    let body =
        format!(r#"{{"current_password": "{password}", "new_password": "{TEST_ADMIN_PASSWORD}"}}"#);
    let changed = http(
        inst.ops,
        "POST",
        "/api/v1/session/password",
        Some(&body),
        Some(&cookie),
        csrf.as_str(),
    );
    assert_eq!(changed.status, 200, "{}", changed.body);
    let mut inst = inst;
    inst.login_api();
    let audit = inst.api("GET", "/api/v1/audit", None).json();
    assert!(
        audit.as_array().expect("entries").iter().any(|e| e["action"] == "user.password_reset"
            && e["target"] == "admin"
            && e["detail"].as_str().is_some_and(|d| d.contains("command line"))),
        "{audit:#}"
    );
    assert_eq!(inst.terminate().code(), Some(0));
}
