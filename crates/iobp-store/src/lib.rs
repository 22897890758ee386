//! # iobp-store: the embedded configuration store
//!
//! One `SQLite` database (`iobufferpro.db` in the data directory) holds the system settings and
//! the channel pairs, so that changes made at runtime survive restarts. It is the single
//! source of truth for configuration; JSON export/import is a view of it.
//!
//! Contract:
//! - Every write is one transaction with `synchronous=FULL` in WAL mode: once a call returns
//!   `Ok`, the change survives a crash or power cut.
//! - Channel pairs are stored as the JSON of [`ChannelPairSpec`] (the same shape users write),
//!   keyed by id, in creation order. A stored pair that no longer parses is reported by
//!   [`Store::load_pairs`] with its id and the reason, never silently dropped or deleted.
//! - The schema version is the database's `user_version`; [`Store::open`] migrates forward and
//!   refuses a database written by a newer version.
//! - Users (with Argon2 password hashes, never passwords), server-side sessions (only a
//!   hash of each session token is stored) and the audit trail live here too. Deleting a
//!   user deletes their sessions and relay grants in the same statement (foreign key
//!   cascade).
//! - **Relay grants** (schema 3) name the channel ids and directions (push into, pull from)
//!   a user may relay; there is no wildcard, and the upgrade to schema 3 grants nothing, so
//!   relay users that worked before an upgrade relay again only once an admin grants them.
//! - Only this crate opens the database file.

#![warn(missing_docs)]

mod accounts;

pub use crate::accounts::{
    AuditEntry, AuditRetention, NewAuditEntry, RelayDirection, RelayGrant, Role, SessionRecord,
    UserRecord,
};

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use iobp_config::{ChannelPairSpec, ConfigDocument, ConfigRepository, RepositoryError, Settings};
use rusqlite::{Connection, OptionalExtension, params};

/// File name of the database in the data directory.
pub const DB_FILE: &str = "iobufferpro.db";

/// Schema migrations; entry `i` upgrades `user_version` `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: settings and channel pairs.
    "CREATE TABLE settings (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        json TEXT NOT NULL
    );
    CREATE TABLE channel_pairs (
        id TEXT PRIMARY KEY NOT NULL,
        position INTEGER NOT NULL,
        spec TEXT NOT NULL,
        created_at INTEGER NOT NULL DEFAULT (unixepoch()),
        updated_at INTEGER NOT NULL DEFAULT (unixepoch())
    );",
    // 2: users, sessions, audit trail.
    "CREATE TABLE users (
        username TEXT PRIMARY KEY NOT NULL,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer', 'relay')),
        must_change_password INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL DEFAULT (unixepoch()),
        updated_at INTEGER NOT NULL DEFAULT (unixepoch())
    );
    CREATE TABLE sessions (
        token_hash BLOB PRIMARY KEY NOT NULL,
        username TEXT NOT NULL REFERENCES users (username) ON DELETE CASCADE ON UPDATE CASCADE,
        portal TEXT NOT NULL,
        csrf_token TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        last_seen_ms INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL
    );
    CREATE INDEX sessions_by_user ON sessions (username);
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at_ms INTEGER NOT NULL,
        username TEXT,
        address TEXT,
        action TEXT NOT NULL,
        target TEXT,
        detail TEXT
    );",
    // 3: relay grants. A relay user reaches only the channels (and directions) granted here;
    // none are created for existing users — an admin grants them after the upgrade.
    "CREATE TABLE relay_grants (
        username TEXT NOT NULL REFERENCES users (username) ON DELETE CASCADE ON UPDATE CASCADE,
        channel_id TEXT NOT NULL,
        direction TEXT NOT NULL CHECK (direction IN ('push', 'pull')),
        PRIMARY KEY (username, channel_id, direction)
    );",
];

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database could not be opened, read or written.
    #[error("configuration database {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The `SQLite` error.
        #[source]
        source: rusqlite::Error,
    },
    /// The data directory could not be created.
    #[error("data directory {path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The database was written by a newer ioBufferPro.
    #[error(
        "configuration database {path} has schema version {found}; this build understands up to {supported}"
    )]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// Its schema version.
        found: i64,
        /// The newest this build knows.
        supported: i64,
    },
    /// A user name that does not exist.
    #[error("no user named `{0}`")]
    NoSuchUser(String),
    /// A user name that exists already.
    #[error("a user named `{0}` exists already")]
    UserExists(String),
    /// Stored settings no longer parse.
    #[error("stored settings are invalid: {0}")]
    BadSettings(String),
}

/// A stored pair that could not be read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenPair {
    /// Its id.
    pub id: String,
    /// Why it does not parse.
    pub reason: String,
}

/// The pairs read back, and those that failed to.
#[derive(Debug, Clone, Default)]
pub struct LoadedPairs {
    /// Pairs in creation order.
    pub pairs: Vec<ChannelPairSpec>,
    /// Rows kept in the database but not usable by this build.
    pub broken: Vec<BrokenPair>,
}

/// The configuration database.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    // One connection: writes are rare and small, and one writer avoids SQLITE_BUSY entirely.
    conn: Mutex<Connection>,
}

impl Store {
    /// Opens (creating if needed) the database in `data_dir` and migrates it.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        let path = data_dir.join(DB_FILE);
        let err = |source| StoreError::Sqlite { path: path.clone(), source };
        std::fs::create_dir_all(data_dir)
            .map_err(|source| StoreError::Io { path: data_dir.to_path_buf(), source })?;
        let conn = Connection::open(&path).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(err)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(err)?;
        let store = Store { path, conn: Mutex::new(conn) };
        store.migrate()?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes a consistent copy of the database to `dest` (a new file) with `SQLite`'s online
    /// backup API: a running instance may go on writing meanwhile; the copy is one
    /// committed state. The copy is synced before this returns.
    pub fn backup_to(&self, dest: &Path) -> Result<(), StoreError> {
        let err = |source| StoreError::Sqlite { path: dest.to_path_buf(), source };
        if dest.exists() {
            return Err(StoreError::Io {
                path: dest.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "exists already"),
            });
        }
        let mut copy = Connection::open(dest).map_err(err)?;
        {
            let conn = self.conn();
            let backup = rusqlite::backup::Backup::new(&conn, &mut copy).map_err(err)?;
            // Pages in steps, pausing between them, so a writer is never shut out for long.
            backup
                .run_to_completion(256, std::time::Duration::from_millis(5), None)
                .map_err(err)?;
        }
        // The copy in one file (no WAL beside it), on disk before this returns.
        copy.pragma_update(None, "journal_mode", "DELETE").map_err(err)?;
        drop(copy);
        std::fs::File::open(dest)
            .and_then(|f| f.sync_all())
            .map_err(|source| StoreError::Io { path: dest.to_path_buf(), source })
    }

    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the connection leaves SQLite consistent (transactions roll
        // back on drop), so a poisoned lock is safe to reuse.
        self.conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn sql(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite { path: self.path.clone(), source }
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let version: i64 =
            conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(|e| self.sql(e))?;
        let supported = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
        if version > supported {
            return Err(StoreError::TooNew { path: self.path.clone(), found: version, supported });
        }
        let tx = conn.transaction().map_err(|e| self.sql(e))?;
        for (m, v) in MIGRATIONS.iter().zip(1i64..).skip(usize::try_from(version).unwrap_or(0)) {
            tx.execute_batch(m).map_err(|e| self.sql(e))?;
            tx.pragma_update(None, "user_version", v).map_err(|e| self.sql(e))?;
        }
        tx.commit().map_err(|e| self.sql(e))
    }

    /// The settings (defaults if none were saved).
    pub fn load_settings(&self) -> Result<Settings, StoreError> {
        let json: Option<String> = self
            .conn()
            .query_row("SELECT json FROM settings WHERE id = 1", [], |r| r.get(0))
            .optional()
            .map_err(|e| self.sql(e))?;
        match json {
            None => Ok(Settings::default()),
            Some(j) => serde_json::from_str(&j).map_err(|e| StoreError::BadSettings(e.to_string())),
        }
    }

    /// Saves the settings.
    pub fn save_settings(&self, s: &Settings) -> Result<(), StoreError> {
        let json = serde_json::to_string(s).map_err(|e| StoreError::BadSettings(e.to_string()))?;
        self.conn()
            .execute(
                "INSERT INTO settings (id, json) VALUES (1, ?1)
                 ON CONFLICT (id) DO UPDATE SET json = excluded.json",
                params![json],
            )
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    /// Every stored pair, in creation order.
    pub fn load_pairs(&self) -> Result<LoadedPairs, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT id, spec FROM channel_pairs ORDER BY position, id")
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(|e| self.sql(e))?;
        let mut out = LoadedPairs::default();
        for row in rows {
            let (id, json) = row.map_err(|e| self.sql(e))?;
            match serde_json::from_str::<ChannelPairSpec>(&json) {
                Ok(spec) if spec.id == id => out.pairs.push(spec),
                Ok(spec) => out
                    .broken
                    .push(BrokenPair { id, reason: format!("stored spec has id `{}`", spec.id) }),
                Err(e) => out.broken.push(BrokenPair { id, reason: e.to_string() }),
            }
        }
        Ok(out)
    }

    /// Creates or replaces a pair (a replaced pair keeps its position).
    pub fn save_pair(&self, spec: &ChannelPairSpec) -> Result<(), StoreError> {
        let json =
            serde_json::to_string(spec).map_err(|e| StoreError::BadSettings(e.to_string()))?;
        self.conn()
            .execute(
                "INSERT INTO channel_pairs (id, position, spec)
                 VALUES (?1, (SELECT COALESCE(MAX(position), 0) + 1 FROM channel_pairs), ?2)
                 ON CONFLICT (id) DO UPDATE SET spec = excluded.spec, updated_at = unixepoch()",
                params![spec.id, json],
            )
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    /// Removes a pair; removing an unknown id is not an error.
    pub fn delete_pair(&self, id: &str) -> Result<(), StoreError> {
        self.conn()
            .execute("DELETE FROM channel_pairs WHERE id = ?1", params![id])
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    /// The whole configuration as a document.
    pub fn export(&self) -> Result<ConfigDocument, StoreError> {
        Ok(ConfigDocument {
            settings: Some(self.load_settings()?),
            channel_pairs: self.load_pairs()?.pairs,
        })
    }

    /// Applies a document in one transaction: its settings (if any) replace the stored ones
    /// and its pairs are created or replaced by id. With `replace_all`, stored pairs the
    /// document does not mention are removed. The caller validates the document first.
    pub fn import(&self, doc: &ConfigDocument, replace_all: bool) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.sql(e))?;
        if let Some(s) = &doc.settings {
            let json =
                serde_json::to_string(s).map_err(|e| StoreError::BadSettings(e.to_string()))?;
            tx.execute(
                "INSERT INTO settings (id, json) VALUES (1, ?1)
                 ON CONFLICT (id) DO UPDATE SET json = excluded.json",
                params![json],
            )
            .map_err(|e| self.sql(e))?;
        }
        if replace_all {
            tx.execute("DELETE FROM channel_pairs", []).map_err(|e| self.sql(e))?;
        }
        for spec in &doc.channel_pairs {
            let json =
                serde_json::to_string(spec).map_err(|e| StoreError::BadSettings(e.to_string()))?;
            tx.execute(
                "INSERT INTO channel_pairs (id, position, spec)
                 VALUES (?1, (SELECT COALESCE(MAX(position), 0) + 1 FROM channel_pairs), ?2)
                 ON CONFLICT (id) DO UPDATE SET spec = excluded.spec, updated_at = unixepoch()",
                params![spec.id, json],
            )
            .map_err(|e| self.sql(e))?;
        }
        tx.commit().map_err(|e| self.sql(e))
    }
}

impl ConfigRepository for Store {
    fn save_pair(&self, spec: &ChannelPairSpec) -> Result<(), RepositoryError> {
        Store::save_pair(self, spec).map_err(|e| RepositoryError(e.to_string()))
    }

    fn delete_pair(&self, id: &str) -> Result<(), RepositoryError> {
        Store::delete_pair(self, id).map_err(|e| RepositoryError(e.to_string()))
    }
}
