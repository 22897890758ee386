//! The store keeps settings and pairs across reopen, in order, and reports rows it cannot
//! read instead of dropping them.

use iobp_config::{ConfigDocument, Settings, parse_document};
use iobp_store::{Store, StoreError};

fn doc(ids: &[&str]) -> ConfigDocument {
    let pairs: Vec<String> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            format!(
                r#"{{"id": "{id}", "source": {{"type": "udp", "host": "0.0.0.0", "port": {}}},
                    "destination": {{"type": "tcp_client", "host": "10.0.0.1", "port": 7000}}}}"#,
                5000 + i
            )
        })
        .collect();
    parse_document(&format!(r#"{{"channel_pairs": [{}]}}"#, pairs.join(","))).expect("valid")
}

#[test]
fn settings_and_pairs_survive_reopen_in_order() {
    let tmp = tempfile::tempdir().expect("tmp");
    {
        let s = Store::open(tmp.path()).expect("open");
        assert_eq!(s.load_settings().expect("settings"), Settings::default());
        let settings = Settings { max_storage_mb: 42, ..Settings::default() };
        s.save_settings(&settings).expect("save");
        for p in doc(&["c", "a", "b"]).channel_pairs {
            s.save_pair(&p).expect("save pair");
        }
        let mut replaced = doc(&["a"]).channel_pairs.remove(0);
        replaced.name = "renamed".into();
        s.save_pair(&replaced).expect("replace");
        s.delete_pair("b").expect("delete");
        s.delete_pair("never-existed").expect("idempotent");
    }
    let s = Store::open(tmp.path()).expect("reopen");
    assert_eq!(s.load_settings().expect("settings").max_storage_mb, 42);
    let loaded = s.load_pairs().expect("pairs");
    let ids: Vec<&str> = loaded.pairs.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["c", "a"], "creation order; a replace keeps its place");
    assert_eq!(loaded.pairs[1].name, "renamed");
    assert!(loaded.broken.is_empty());
}

#[test]
fn import_and_export_round_trip() {
    let tmp = tempfile::tempdir().expect("tmp");
    let s = Store::open(tmp.path()).expect("open");
    let mut d = doc(&["x", "y"]);
    d.settings = Some(Settings { retention_hours: 5, ..Settings::default() });
    s.import(&d, true).expect("import");
    assert_eq!(s.export().expect("export"), d);
    // Merge keeps pairs the document does not mention; replace_all removes them.
    s.import(&doc(&["z"]), false).expect("merge");
    assert_eq!(s.load_pairs().expect("pairs").pairs.len(), 3);
    s.import(&doc(&["z"]), true).expect("replace");
    assert_eq!(s.load_pairs().expect("pairs").pairs.len(), 1);
    assert_eq!(s.load_settings().expect("kept").retention_hours, 5, "no settings in doc: kept");
}

#[test]
fn unreadable_rows_are_reported_not_dropped() {
    let tmp = tempfile::tempdir().expect("tmp");
    {
        let s = Store::open(tmp.path()).expect("open");
        s.save_pair(&doc(&["good"]).channel_pairs[0]).expect("save");
    }
    let conn = rusqlite_raw(tmp.path());
    conn.execute(
        "INSERT INTO channel_pairs (id, position, spec) VALUES ('bad', 9, '{\"nope\": 1}')",
        [],
    )
    .expect("insert");
    drop(conn);
    let s = Store::open(tmp.path()).expect("open");
    let loaded = s.load_pairs().expect("pairs");
    assert_eq!(loaded.pairs.len(), 1);
    assert_eq!(loaded.broken.len(), 1);
    assert_eq!(loaded.broken[0].id, "bad");
}

#[test]
fn a_newer_schema_is_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    drop(Store::open(tmp.path()).expect("open"));
    let conn = rusqlite_raw(tmp.path());
    conn.pragma_update(None, "user_version", 99).expect("bump");
    drop(conn);
    assert!(matches!(Store::open(tmp.path()), Err(StoreError::TooNew { found: 99, .. })));
}

fn rusqlite_raw(dir: &std::path::Path) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.join(iobp_store::DB_FILE)).expect("raw open")
}
