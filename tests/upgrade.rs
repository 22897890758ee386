//! Upgrade-safe data: a data directory written by the previous release (the committed fixture
//! `tests/fixtures/datadir-format-1`, made by `make-datadir-format-1.py` with that release's
//! binary) is opened by this one — its pair, its buffered messages and its admin intact — and
//! recorded in the current format; a directory in a newer format is refused with a clear
//! message and left exactly as it was; `backup` copies the store of a running instance.

#![cfg(unix)]

mod util;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use iobp_testkit::ports;
use iobp_testkit::receiver::Receiver;
use util::*;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/datadir-format-1")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read fixture") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}

/// Every file and directory under `dir` with its size, time of change and mode.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u64, SystemTime, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let meta = std::fs::metadata(&d).expect("meta");
        out.insert(d.clone(), (0, meta.modified().expect("mtime"), meta.permissions().mode()));
        for e in std::fs::read_dir(&d).expect("read") {
            let e = e.expect("entry");
            let m = e.metadata().expect("meta");
            if m.is_dir() {
                stack.push(e.path());
            } else {
                out.insert(
                    e.path(),
                    (m.len(), m.modified().expect("mtime"), m.permissions().mode()),
                );
            }
        }
    }
    out
}

#[test]
fn a_data_directory_of_the_previous_release_is_upgraded_with_its_messages() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    copy_dir(&fixture(), &data);
    assert!(!data.join("FORMAT").exists());
    // The fixture's admin password is the tests' one: Instance logs in with it.
    let inst = Instance::start(&data, &[]);
    let text = std::fs::read_to_string(data.join("FORMAT")).expect("the format is recorded");
    assert_eq!(text.trim(), "iobufferpro data format 2");
    let pair = inst.api("GET", "/api/v1/pairs/legacy", None).json();
    assert_eq!(pair["enabled"], false, "{pair:#}");
    assert_eq!(pair["status"]["counts"]["pending"], 5, "{pair:#}");
    // Its messages, written by the previous release, are delivered by this one.
    let dst = ports::tcp();
    let receiver = Receiver::start(ports::localhost(dst));
    let mut spec = pair["spec"].clone();
    spec["enabled"] = true.into();
    spec["source"]["port"] = ports::tcp().into();
    spec["destination"]["port"] = dst.into();
    let r = inst.api("PUT", "/api/v1/pairs/legacy", Some(&spec.to_string()));
    assert_eq!(r.status, 200, "{}", r.body);
    wait_distinct(&receiver, 5, 20);
    let want: Vec<String> = (1..=5).map(|n| format!("legacy {n}")).collect();
    assert_eq!(receiver.lines(), want);
    assert_eq!(inst.terminate().code(), Some(0));
    // Started again: already in the current format, nothing to upgrade.
    let inst = Instance::start(&data, &[]);
    assert_eq!(inst.pair("legacy")["counts"]["pending"], 0);
}

#[test]
fn a_newer_format_is_refused_and_nothing_is_touched() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    copy_dir(&fixture(), &data);
    std::fs::write(data.join("FORMAT"), "iobufferpro data format 99\n").expect("write");
    let before = snapshot(&data);
    let d = data.to_str().expect("utf8");
    let out = tmp.path().join("backup");
    let o = out.to_str().expect("utf8");
    for args in [
        vec!["run", "--data-dir", d, "--ops-listen", "127.0.0.1:0", "--mgmt-listen", "127.0.0.1:0"],
        vec!["config", "export", "--data-dir", d],
        vec!["backup", o, "--data-dir", d],
    ] {
        let (code, _, err) = run_cli(&args);
        assert_ne!(code, 0, "{args:?} must fail");
        assert!(err.contains("has format 99") && err.contains("Nothing was changed"), "{err}");
    }
    assert_eq!(snapshot(&data), before, "not a byte, time or mode changed");
    assert!(!out.exists());
}

/// `config import` into a new data directory makes it in this binary's format: its first
/// start is no upgrade (the .deb's test saw "upgraded from format 1 to 2" on a directory an
/// import had just created).
#[test]
fn an_import_into_a_new_data_directory_records_the_current_format() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let doc = tmp.path().join("pairs.json");
    std::fs::write(&doc, r#"{"channel_pairs": []}"#).expect("write");
    let (code, out, err) = run_cli(&[
        "config",
        "import",
        doc.to_str().expect("utf8"),
        "--data-dir",
        data.to_str().expect("utf8"),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let format = std::fs::read_to_string(data.join("FORMAT")).expect("FORMAT written");
    assert_eq!(format.trim(), "iobufferpro data format 2");
}

#[test]
fn backup_copies_the_store_of_a_running_instance() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    copy_dir(&fixture(), &data);
    let inst = Instance::start(&data, &[]);
    let out = tmp.path().join("backup");
    let (code, text, err) = run_cli(&[
        "backup",
        out.to_str().expect("utf8"),
        "--data-dir",
        data.to_str().expect("utf8"),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(text.contains("backed up 1 channel pair(s) and 1 user(s)"), "{text}");
    // The copy is a data directory of its own: its configuration is the instance's.
    let (code, exported, err) =
        run_cli(&["config", "export", "--data-dir", out.to_str().expect("utf8")]);
    assert_eq!(code, 0, "{err}");
    let exported: serde_json::Value = serde_json::from_str(&exported).expect("json");
    assert_eq!(exported["channel_pairs"][0]["id"], "legacy");
    assert_eq!(
        exported["channel_pairs"][0],
        inst.api("GET", "/api/v1/pairs/legacy", None).json()["spec"]
    );
    // A second backup into the same directory is refused.
    let (code, _, err) = run_cli(&[
        "backup",
        out.to_str().expect("utf8"),
        "--data-dir",
        data.to_str().expect("utf8"),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("not empty"), "{err}");
}
