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

#[test]
fn users_sessions_and_audit() {
    use iobp_store::{NewAuditEntry, Role, SessionRecord};
    let tmp = tempfile::tempdir().expect("tmp");
    let s = Store::open(tmp.path()).expect("open");
    assert_eq!(s.count_users().expect("count"), 0);
    s.create_user("alice", "$argon2id$x", Role::Operator, true).expect("create");
    assert!(matches!(
        s.create_user("alice", "h", Role::Viewer, false),
        Err(StoreError::UserExists(_))
    ));
    let session = |user: &str, n: u8| SessionRecord {
        token_hash: vec![n; 32],
        username: user.into(),
        portal: "ops".into(),
        csrf_token: "c".into(),
        created_ms: 1,
        last_seen_ms: 1,
        expires_ms: 10,
    };
    s.insert_session(&session("alice", 1)).expect("session");
    assert!(s.get_session(&[1; 32]).expect("get").is_some());
    // A password change revokes every session of the user.
    s.set_password("alice", "$argon2id$y", false).expect("password");
    assert!(s.get_session(&[1; 32]).expect("get").is_none());
    let u = s.get_user("alice").expect("get").expect("exists");
    assert_eq!(
        (u.role, u.must_change_password, u.password_hash.as_str()),
        (Role::Operator, false, "$argon2id$y")
    );
    // So does a role change, and a deletion.
    s.insert_session(&session("alice", 2)).expect("session");
    s.set_role("alice", Role::Viewer).expect("role");
    assert!(s.get_session(&[2; 32]).expect("get").is_none());
    s.insert_session(&session("alice", 3)).expect("session");
    s.delete_user("alice").expect("delete");
    assert!(s.get_session(&[3; 32]).expect("get").is_none());
    assert!(matches!(s.delete_user("alice"), Err(StoreError::NoSuchUser(_))));
    // Expired sessions are purged.
    s.create_user("bob", "h", Role::Admin, false).expect("create");
    s.insert_session(&session("bob", 4)).expect("session");
    assert_eq!(s.purge_sessions(11).expect("purge"), 1);
    // Audit: newest first, paged.
    for i in 0..5 {
        s.audit(&NewAuditEntry { action: format!("a{i}"), ..NewAuditEntry::default() }, i)
            .expect("audit");
    }
    let page = s.list_audit(2, None).expect("audit");
    assert_eq!(page.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), ["a4", "a3"]);
    let next = s.list_audit(2, Some(page[1].id)).expect("audit");
    assert_eq!(next[0].action, "a2");
    assert!(Role::Admin.includes(Role::Operator) && !Role::Viewer.includes(Role::Operator));
    assert!(!Role::Relay.includes(Role::Viewer) && !Role::Admin.includes(Role::Relay));
}

/// Relay grants: per user, channel and direction; replaced as a whole; gone with the user;
/// and an upgrade from schema 2 keeps relay users but grants them nothing.
#[test]
fn relay_grants_are_per_channel_and_direction_and_an_upgrade_grants_nothing() {
    use iobp_store::{RelayDirection::*, RelayGrant, Role};
    let tmp = tempfile::tempdir().expect("tmp");
    {
        // A database as release 325539c left it: schema 2, one relay user.
        let conn = rusqlite_raw(tmp.path());
        drop(Store::open(tmp.path()).expect("open"));
        conn.execute_batch("DROP TABLE relay_grants; PRAGMA user_version = 2;").expect("downgrade");
        conn.execute(
            "INSERT INTO users (username, password_hash, role) VALUES ('site-b', 'h', 'relay')",
            [],
        )
        .expect("old relay user");
    }
    let s = Store::open(tmp.path()).expect("upgrade");
    assert_eq!(s.get_user("site-b").expect("get").map(|u| u.role), Some(Role::Relay));
    assert!(s.relay_grants("site-b").expect("grants").is_empty(), "nothing granted by the upgrade");
    assert!(!s.has_relay_grant("site-b", "plant-7", Push).expect("check"));
    let g = |c: &str, d| RelayGrant { channel_id: c.into(), direction: d };
    s.set_relay_grants("site-b", &[g("plant-7", Push), g("plant-7", Push), g("b-out", Pull)])
        .expect("grant");
    assert_eq!(s.relay_grants("site-b").expect("grants"), [g("b-out", Pull), g("plant-7", Push)]);
    assert!(s.has_relay_grant("site-b", "plant-7", Push).expect("check"));
    assert!(!s.has_relay_grant("site-b", "plant-7", Pull).expect("check"), "direction matters");
    assert!(!s.has_relay_grant("site-b", "b-out", Push).expect("check"));
    assert!(!s.has_relay_grant("site-b", "Plant-7", Push).expect("check"), "exact channel id");
    s.set_relay_grants("site-b", &[g("b-out", Pull)]).expect("replace");
    assert!(!s.has_relay_grant("site-b", "plant-7", Push).expect("check"), "replaced as a whole");
    assert!(matches!(s.set_relay_grants("nobody", &[]), Err(StoreError::NoSuchUser(_))));
    s.delete_user("site-b").expect("delete");
    s.create_user("site-b", "h", Role::Relay, false).expect("same name again");
    assert!(s.relay_grants("site-b").expect("grants").is_empty(), "grants went with the user");
}

/// The audit trail is bounded: by age, in all, and failed logins apart — a flood of them
/// cannot push the record of real changes out (on 325539c nothing was ever removed).
#[test]
fn the_audit_trail_is_bounded_and_failed_logins_cannot_push_changes_out() {
    use iobp_store::{AuditRetention, NewAuditEntry};
    let tmp = tempfile::tempdir().expect("tmp");
    let s = Store::open(tmp.path()).expect("open");
    let day = 86_400_000;
    let now = 1000 * day;
    let entry = |action: &str| NewAuditEntry { action: action.into(), ..NewAuditEntry::default() };
    s.audit(&entry("pair.create"), now - 500 * day).expect("ancient");
    s.audit(&entry("pair.delete"), now - 10 * day).expect("recent change");
    for i in 0..50 {
        let action = if i % 2 == 0 { "login.failed" } else { "relay.login.failed" };
        s.audit(&entry(action), now - day + i).expect("flood");
    }
    s.audit(&entry("user.update"), now).expect("newest change");
    let keep = AuditRetention { max_age_days: 400, max_failed_logins: 10, max_entries: 1000 };
    assert_eq!(s.prune_audit(now, keep).expect("prune"), 1 + 40);
    let left = s.list_audit(1000, None).expect("list");
    let actions: Vec<&str> = left.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions.iter().filter(|a| a.ends_with("login.failed")).count(), 10, "newest 10");
    assert!(actions.contains(&"pair.delete") && actions.contains(&"user.update"), "{actions:?}");
    assert!(!actions.contains(&"pair.create"), "older than 400 days");
    // The overall cap keeps the newest.
    let keep = AuditRetention { max_entries: 3, ..keep };
    assert_eq!(s.prune_audit(now, keep).expect("prune"), 9);
    let left = s.list_audit(1000, None).expect("list");
    assert_eq!(left.len(), 3);
    assert_eq!(left[0].action, "user.update");
    assert_eq!(s.prune_audit(now, keep).expect("idempotent"), 0);
}
