//! Users, sessions and the audit trail.

use rusqlite::{OptionalExtension, params};

use crate::{Store, StoreError};

/// What a user may do. Stored as lower-case text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything.
    Admin,
    /// Create, edit, start, stop and delete channel pairs; no users, no system settings.
    Operator,
    /// Read-only dashboards and logs.
    Viewer,
    /// Only the relay protocol between ioBufferPro instances.
    Relay,
}

impl Role {
    /// The stored and API name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
            Role::Relay => "relay",
        }
    }

    /// Parses a stored or API name.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "operator" => Some(Role::Operator),
            "viewer" => Some(Role::Viewer),
            "relay" => Some(Role::Relay),
            _ => None,
        }
    }

    /// Whether this role includes everything `other` may do (Admin ⊇ Operator ⊇ Viewer; Relay
    /// stands apart and includes only itself).
    pub fn includes(self, other: Role) -> bool {
        fn rank(r: Role) -> Option<u8> {
            match r {
                Role::Viewer => Some(1),
                Role::Operator => Some(2),
                Role::Admin => Some(3),
                Role::Relay => None,
            }
        }
        match (rank(self), rank(other)) {
            (Some(a), Some(b)) => a >= b,
            _ => self == other,
        }
    }
}

/// Which way a relay connection carries messages, seen from this instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RelayDirection {
    /// The remote instance sends into this instance's channel.
    Push,
    /// The remote instance receives from this instance's channel.
    Pull,
}

impl RelayDirection {
    /// The stored and API name.
    pub fn as_str(self) -> &'static str {
        match self {
            RelayDirection::Push => "push",
            RelayDirection::Pull => "pull",
        }
    }

    /// Parses a stored or API name.
    pub fn parse(s: &str) -> Option<RelayDirection> {
        match s {
            "push" => Some(RelayDirection::Push),
            "pull" => Some(RelayDirection::Pull),
            _ => None,
        }
    }
}

/// One channel a user may relay, in one direction.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelayGrant {
    /// The `channel_id` of a `remote_icombuffer` side of this instance.
    pub channel_id: String,
    /// Push into it, or pull from it.
    pub direction: RelayDirection,
}

/// A stored user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Login name.
    pub username: String,
    /// PHC string of the Argon2id hash.
    pub password_hash: String,
    /// Role.
    pub role: Role,
    /// The password must be changed before anything else is allowed.
    pub must_change_password: bool,
    /// Creation time, seconds since the Unix epoch.
    pub created_at: i64,
    /// Last change, seconds since the Unix epoch.
    pub updated_at: i64,
}

/// A stored session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// SHA-256 of the session token (the token itself is only in the user's cookie).
    pub token_hash: Vec<u8>,
    /// Its user.
    pub username: String,
    /// Which portal it belongs to (`ops` or `mgmt`).
    pub portal: String,
    /// The CSRF token for state-changing requests.
    pub csrf_token: String,
    /// Created, ms since the Unix epoch.
    pub created_ms: i64,
    /// Last used (written lazily), ms since the Unix epoch.
    pub last_seen_ms: i64,
    /// Expires, ms since the Unix epoch.
    pub expires_ms: i64,
}

/// An audit entry to record.
#[derive(Debug, Clone, Default)]
pub struct NewAuditEntry {
    /// Who (none for anonymous, e.g. a failed login of an unknown name).
    pub username: Option<String>,
    /// From where.
    pub address: Option<String>,
    /// What (`login`, `pair.create`, …).
    pub action: String,
    /// On what (a pair id, a user name).
    pub target: Option<String>,
    /// Details (outcome, changed fields).
    pub detail: Option<String>,
}

/// How much of the audit trail is kept.
#[derive(Debug, Clone, Copy)]
pub struct AuditRetention {
    /// Entries older than this many days are removed.
    pub max_age_days: u32,
    /// At most this many failed-login entries (`login.failed`, `relay.login.failed`) are
    /// kept, the newest — counted apart, so that a flood of failed logins can neither grow
    /// the database without bound nor push the record of real changes out.
    pub max_failed_logins: u32,
    /// At most this many entries in all, the newest.
    pub max_entries: u32,
}

impl Default for AuditRetention {
    fn default() -> Self {
        AuditRetention { max_age_days: 400, max_failed_logins: 10_000, max_entries: 1_000_000 }
    }
}

/// The actions of failed logins.
const FAILED_LOGINS: &str = "('login.failed', 'relay.login.failed')";

/// A recorded audit entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Increasing id.
    pub id: i64,
    /// When, ms since the Unix epoch.
    pub at_ms: i64,
    /// Who.
    pub username: Option<String>,
    /// From where.
    pub address: Option<String>,
    /// What.
    pub action: String,
    /// On what.
    pub target: Option<String>,
    /// Details.
    pub detail: Option<String>,
}

fn user_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UserRecord> {
    let role: String = r.get(2)?;
    Ok(UserRecord {
        username: r.get(0)?,
        password_hash: r.get(1)?,
        // The CHECK constraint admits only known roles.
        role: Role::parse(&role).unwrap_or(Role::Viewer),
        must_change_password: r.get::<_, i64>(3)? != 0,
        created_at: r.get(4)?,
        updated_at: r.get(5)?,
    })
}

const USER_COLS: &str =
    "username, password_hash, role, must_change_password, created_at, updated_at";

impl Store {
    /// Number of users.
    pub fn count_users(&self) -> Result<u64, StoreError> {
        let n: i64 = self
            .conn()
            .query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))
            .map_err(|e| self.sql(e))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// One user.
    pub fn get_user(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        self.conn()
            .query_row(
                &format!("SELECT {USER_COLS} FROM users WHERE username = ?1"),
                params![username],
                user_from_row,
            )
            .optional()
            .map_err(|e| self.sql(e))
    }

    /// All users, by name.
    pub fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!("SELECT {USER_COLS} FROM users ORDER BY username"))
            .map_err(|e| self.sql(e))?;
        let rows = stmt.query_map([], user_from_row).map_err(|e| self.sql(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.sql(e))
    }

    /// Creates a user.
    pub fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        role: Role,
        must_change: bool,
    ) -> Result<(), StoreError> {
        let r = self.conn().execute(
            "INSERT INTO users (username, password_hash, role, must_change_password) VALUES (?1, ?2, ?3, ?4)",
            params![username, password_hash, role.as_str(), i64::from(must_change)],
        );
        match r {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(StoreError::UserExists(username.to_string()))
            }
            Err(e) => Err(self.sql(e)),
        }
    }

    /// Changes a user's role and revokes their sessions (in one transaction).
    pub fn set_role(&self, username: &str, role: Role) -> Result<(), StoreError> {
        self.change_user(username, "role = ?2", params![username, role.as_str()])
    }

    /// Sets a user's password hash and revokes their sessions (in one transaction).
    pub fn set_password(
        &self,
        username: &str,
        password_hash: &str,
        must_change: bool,
    ) -> Result<(), StoreError> {
        self.change_user(
            username,
            "password_hash = ?2, must_change_password = ?3",
            params![username, password_hash, i64::from(must_change)],
        )
    }

    fn change_user(
        &self,
        username: &str,
        set: &str,
        p: &[&dyn rusqlite::ToSql],
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.sql(e))?;
        let n = tx
            .execute(
                &format!("UPDATE users SET {set}, updated_at = unixepoch() WHERE username = ?1"),
                p,
            )
            .map_err(|e| self.sql(e))?;
        if n == 0 {
            return Err(StoreError::NoSuchUser(username.to_string()));
        }
        tx.execute("DELETE FROM sessions WHERE username = ?1", params![username])
            .map_err(|e| self.sql(e))?;
        tx.commit().map_err(|e| self.sql(e))
    }

    /// Deletes a user and their sessions.
    pub fn delete_user(&self, username: &str) -> Result<(), StoreError> {
        let n = self
            .conn()
            .execute("DELETE FROM users WHERE username = ?1", params![username])
            .map_err(|e| self.sql(e))?;
        if n == 0 {
            return Err(StoreError::NoSuchUser(username.to_string()));
        }
        Ok(())
    }

    /// The relay grants of a user, by channel then direction.
    pub fn relay_grants(&self, username: &str) -> Result<Vec<RelayGrant>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT channel_id, direction FROM relay_grants WHERE username = ?1
                 ORDER BY channel_id, direction DESC",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map(params![username], |r| {
                let direction: String = r.get(1)?;
                Ok(RelayGrant {
                    channel_id: r.get(0)?,
                    // The CHECK constraint admits only the two directions.
                    direction: RelayDirection::parse(&direction).unwrap_or(RelayDirection::Push),
                })
            })
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.sql(e))
    }

    /// Whether `username` may relay `channel_id` in `direction` (looked up at every relay
    /// connection, so a change applies to the next one).
    pub fn has_relay_grant(
        &self,
        username: &str,
        channel_id: &str,
        direction: RelayDirection,
    ) -> Result<bool, StoreError> {
        self.conn()
            .query_row(
                "SELECT 1 FROM relay_grants WHERE username = ?1 AND channel_id = ?2 AND direction = ?3",
                params![username, channel_id, direction.as_str()],
                |_| Ok(()),
            )
            .optional()
            .map(|r| r.is_some())
            .map_err(|e| self.sql(e))
    }

    /// Replaces the relay grants of a user (one transaction).
    pub fn set_relay_grants(
        &self,
        username: &str,
        grants: &[RelayGrant],
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.sql(e))?;
        let exists = tx
            .query_row("SELECT 1 FROM users WHERE username = ?1", params![username], |_| Ok(()))
            .optional()
            .map_err(|e| self.sql(e))?
            .is_some();
        if !exists {
            return Err(StoreError::NoSuchUser(username.to_string()));
        }
        tx.execute("DELETE FROM relay_grants WHERE username = ?1", params![username])
            .map_err(|e| self.sql(e))?;
        for g in grants {
            tx.execute(
                "INSERT OR IGNORE INTO relay_grants (username, channel_id, direction) VALUES (?1, ?2, ?3)",
                params![username, g.channel_id, g.direction.as_str()],
            )
            .map_err(|e| self.sql(e))?;
        }
        tx.commit().map_err(|e| self.sql(e))
    }

    /// Stores a new session.
    pub fn insert_session(&self, s: &SessionRecord) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT INTO sessions (token_hash, username, portal, csrf_token, created_ms, last_seen_ms, expires_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![s.token_hash, s.username, s.portal, s.csrf_token, s.created_ms, s.last_seen_ms, s.expires_ms],
            )
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    /// A session by token hash.
    pub fn get_session(&self, token_hash: &[u8]) -> Result<Option<SessionRecord>, StoreError> {
        self.conn()
            .query_row(
                "SELECT token_hash, username, portal, csrf_token, created_ms, last_seen_ms, expires_ms
                 FROM sessions WHERE token_hash = ?1",
                params![token_hash],
                |r| {
                    Ok(SessionRecord {
                        token_hash: r.get(0)?,
                        username: r.get(1)?,
                        portal: r.get(2)?,
                        csrf_token: r.get(3)?,
                        created_ms: r.get(4)?,
                        last_seen_ms: r.get(5)?,
                        expires_ms: r.get(6)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.sql(e))
    }

    /// Records that a session was used and extends its expiry.
    pub fn touch_session(
        &self,
        token_hash: &[u8],
        last_seen_ms: i64,
        expires_ms: i64,
    ) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "UPDATE sessions SET last_seen_ms = ?2, expires_ms = MIN(expires_ms, ?3) WHERE token_hash = ?1",
                params![token_hash, last_seen_ms, expires_ms],
            )
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    /// Ends a session.
    pub fn delete_session(&self, token_hash: &[u8]) -> Result<(), StoreError> {
        self.conn()
            .execute("DELETE FROM sessions WHERE token_hash = ?1", params![token_hash])
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    /// Removes sessions that expired before `now_ms`; returns how many.
    pub fn purge_sessions(&self, now_ms: i64) -> Result<usize, StoreError> {
        self.conn()
            .execute("DELETE FROM sessions WHERE expires_ms < ?1", params![now_ms])
            .map_err(|e| self.sql(e))
    }

    /// Appends to the audit trail.
    pub fn audit(&self, e: &NewAuditEntry, at_ms: i64) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT INTO audit (at_ms, username, address, action, target, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![at_ms, e.username, e.address, e.action, e.target, e.detail],
            )
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    /// Applies `keep` to the audit trail; returns how many entries were removed.
    pub fn prune_audit(&self, now_ms: i64, keep: AuditRetention) -> Result<usize, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.sql(e))?;
        let cutoff = now_ms.saturating_sub(i64::from(keep.max_age_days) * 86_400_000);
        let mut removed = tx
            .execute("DELETE FROM audit WHERE at_ms < ?1", params![cutoff])
            .map_err(|e| self.sql(e))?;
        removed += tx
            .execute(
                &format!(
                    "DELETE FROM audit WHERE action IN {FAILED_LOGINS} AND id <= (
                         SELECT id FROM audit WHERE action IN {FAILED_LOGINS}
                         ORDER BY id DESC LIMIT 1 OFFSET ?1)"
                ),
                params![keep.max_failed_logins],
            )
            .map_err(|e| self.sql(e))?;
        removed += tx
            .execute(
                "DELETE FROM audit WHERE id <= (SELECT id FROM audit ORDER BY id DESC LIMIT 1 OFFSET ?1)",
                params![keep.max_entries],
            )
            .map_err(|e| self.sql(e))?;
        tx.commit().map_err(|e| self.sql(e))?;
        Ok(removed)
    }

    /// The newest audit entries (before `before_id` if given), newest first.
    pub fn list_audit(
        &self,
        limit: u32,
        before_id: Option<i64>,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT id, at_ms, username, address, action, target, detail FROM audit
                 WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map(params![before_id.unwrap_or(i64::MAX), limit], |r| {
                Ok(AuditEntry {
                    id: r.get(0)?,
                    at_ms: r.get(1)?,
                    username: r.get(2)?,
                    address: r.get(3)?,
                    action: r.get(4)?,
                    target: r.get(5)?,
                    detail: r.get(6)?,
                })
            })
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.sql(e))
    }
}
