//! Users, passwords, sessions, and the checks every API route makes.
//!
//! - **Passwords** are Argon2id with m = 7 MiB, t = 5, p = 1 — one of the OWASP-recommended
//!   settings of equal strength to the crate's default (m = 19 MiB, t = 2), at a third of the
//!   memory: a login is the process's largest allocation. Hashes made with other parameters
//!   (older versions) verify with their own. Hashed on the blocking pool with at most
//!   [`HASHING_AT_ONCE`] at a time so a burst of logins cannot exhaust memory. Unknown user
//!   names cost a hash too, so timing does not reveal them.
//! - **Sessions** are server-side: a 32-byte random token in an `HttpOnly; SameSite=Strict`
//!   cookie (a different cookie name per portal, because browsers share cookies between ports
//!   of one host), only its SHA-256 in the store. Sessions expire after [`IDLE_TIMEOUT`] idle
//!   and [`MAX_AGE`] in all; a password or role change or a deletion revokes every session of
//!   the user. Use is recorded lazily (at most once a minute per session) so reads do not
//!   write to disk.
//! - **Every state-changing request** (anything but GET/HEAD) must carry the session's CSRF
//!   token in `X-CSRF-Token`, and its `Origin` (or `Referer`) — when the client sends one, as
//!   browsers always do — must be exactly this portal's own origin, port included.
//! - **Failed logins** slow down per (user name, client address), reserved before the hash
//!   so concurrent attempts count; see [`crate::throttle`]. At most
//!   [`crate::throttle::MAX_WAITING`] logins wait for a hashing slot.
//! - **First start**: when there is no user, `admin` is created with a random password that
//!   must be changed at first login; see [`ensure_admin`].

use std::collections::HashMap;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use base64::Engine as _;
use iobp_store::{NewAuditEntry, Role, SessionRecord, Store};
use sha2::Digest;
use tokio::sync::Semaphore;

use crate::error::ApiError;
use crate::relay_links::RelayLinks;
use crate::{Portal, WebState};

/// Password hashes computed at the same time (each takes 7 MiB).
pub const HASHING_AT_ONCE: usize = 2;
/// A session unused this long ends.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(12 * 3600);
/// A session ends this long after login whatever happens.
pub const MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
pub use crate::throttle::FREE_FAILURES;
/// Shortest acceptable password.
pub const MIN_PASSWORD_LEN: usize = 10;
/// File holding the first-start admin password (removed once it is changed).
pub const INITIAL_PASSWORD_FILE: &str = "initial-admin-password.txt";
/// The header carrying the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

pub(crate) fn now_ms() -> i64 {
    let d = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn random_token() -> Result<String, ApiError> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| ApiError::internal(format!("no randomness: {e}")))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

fn token_hash(token: &str) -> Vec<u8> {
    sha2::Sha256::digest(token.as_bytes()).to_vec()
}

/// Constant-time comparison of two secrets.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Argon2id, m = 7 MiB (7168 KiB), t = 5, p = 1 (OWASP). Verification takes the parameters
/// from each stored hash.
fn hasher() -> Argon2<'static> {
    let params = argon2::Params::new(7 * 1024, 5, 1, None).unwrap_or_default();
    Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
}

/// Argon2id hashing with bounded concurrency.
#[derive(Debug)]
pub struct Passwords {
    permits: Semaphore,
    /// Logins in line for a hash (waiting or hashing); beyond, a login is refused as busy.
    line: Semaphore,
    /// A real hash of a fixed password, verified against when the user does not exist.
    /// Made at the first such login, not at start: hashing costs 7 MiB for a moment.
    decoy: tokio::sync::OnceCell<String>,
}

impl Default for Passwords {
    fn default() -> Self {
        Passwords::new()
    }
}

impl Passwords {
    /// A hasher with its own concurrency limit.
    pub fn new() -> Self {
        Passwords {
            permits: Semaphore::new(HASHING_AT_ONCE),
            line: Semaphore::new(HASHING_AT_ONCE + crate::throttle::MAX_WAITING),
            decoy: tokio::sync::OnceCell::new(),
        }
    }

    /// A place in line for a login's hash, if the line is not full (held until the login's
    /// check is done).
    pub fn line_up(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.line.try_acquire().ok()
    }

    /// Hashes a password (PHC string).
    pub async fn hash(&self, password: &str) -> Result<String, ApiError> {
        let _permit = self.permits.acquire().await.map_err(ApiError::internal)?;
        let pw = password.as_bytes().to_vec();
        tokio::task::spawn_blocking(move || hasher().hash_password(&pw).map(|h| h.to_string()))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)
    }

    /// Checks a password against a PHC string (or against the decoy when `phc` is `None`, and
    /// then always fails).
    pub async fn verify(&self, password: &str, phc: Option<&str>) -> bool {
        let real = phc.is_some();
        let hash = match phc {
            Some(h) => h.to_string(),
            None => match self
                .decoy
                .get_or_try_init(|| {
                    self.hash("no user has this password: only timing is equalised")
                })
                .await
            {
                Ok(d) => d.clone(),
                Err(_) => return false,
            },
        };
        let Ok(_permit) = self.permits.acquire().await else { return false };
        let pw = password.as_bytes().to_vec();
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash).is_ok_and(|h| hasher().verify_password(&pw, &h).is_ok())
        })
        .await
        .unwrap_or(false);
        ok && real
    }
}

/// Checks a new password against the policy.
pub fn check_password(username: &str, password: &str) -> Result<(), ApiError> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(ApiError::bad_request(format!(
            "the password must have at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    if password.len() > 1024 {
        return Err(ApiError::bad_request("the password must have at most 1024 bytes"));
    }
    if password.eq_ignore_ascii_case(username) {
        return Err(ApiError::bad_request("the password must differ from the user name"));
    }
    Ok(())
}

/// Checks a user name: 1–64 of letters, digits, `.`, `_`, `-`, `@`.
pub fn check_username(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request("user names are 1-64 letters, digits, '.', '_', '-' or '@'"))
    }
}

/// A session as the API sees it (cached).
#[derive(Debug, Clone)]
pub struct Session {
    /// The user.
    pub username: String,
    /// The user's role when the session was loaded.
    pub role: Role,
    /// The user must change the password before anything else.
    pub must_change_password: bool,
    /// CSRF token.
    pub csrf_token: String,
    /// Which portal.
    pub portal: Portal,
    pub(crate) token_hash: Vec<u8>,
    expires_ms: i64,
    created_ms: i64,
    last_written_ms: i64,
}

/// Sessions, cached in memory in front of the store.
#[derive(Debug, Default)]
pub struct Sessions {
    cache: Mutex<HashMap<Vec<u8>, Session>>,
    /// Bumped (under the cache lock) whenever sessions are ended or revoked: a lookup that
    /// read a session before a revocation must not write it back into the cache after it.
    revocations: std::sync::atomic::AtomicU64,
    /// The relay connections opened with relay tokens, cut when their user is revoked.
    pub(crate) relay_links: Arc<RelayLinks>,
}

/// What one session lookup found.
enum Lookup {
    Found(Session),
    /// No such live session.
    Gone,
    /// A revocation ran while the session was being read: look again.
    Raced,
}

/// The `portal` of relay tokens in the sessions table.
const RELAY_SESSION: &str = "relay";

/// Most sessions kept in the cache (more are read from the store as needed).
const MAX_CACHED_SESSIONS: usize = 10_000;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Sessions {
    /// Creates a session for `username`; returns (cookie token, session).
    pub fn create(
        &self,
        store: &Store,
        username: &str,
        role: Role,
        must_change: bool,
        portal: Portal,
    ) -> Result<(String, Session), ApiError> {
        let token = random_token()?;
        let csrf = random_token()?;
        let now = now_ms();
        let rec = SessionRecord {
            token_hash: token_hash(&token),
            username: username.to_string(),
            portal: portal.as_str().to_string(),
            csrf_token: csrf.clone(),
            created_ms: now,
            last_seen_ms: now,
            expires_ms: now + duration_ms(IDLE_TIMEOUT),
        };
        store.insert_session(&rec)?;
        let s = Session {
            username: username.to_string(),
            role,
            must_change_password: must_change,
            csrf_token: csrf,
            portal,
            token_hash: rec.token_hash.clone(),
            expires_ms: rec.expires_ms,
            created_ms: now,
            last_written_ms: now,
        };
        let mut cache = lock(&self.cache);
        if cache.len() >= MAX_CACHED_SESSIONS {
            cache.clear();
        }
        cache.insert(rec.token_hash, s.clone());
        Ok((token, s))
    }

    /// The live session for a cookie token of `portal`, extending it.
    pub fn lookup(
        &self,
        store: &Store,
        token: &str,
        portal: Portal,
    ) -> Result<Option<Session>, ApiError> {
        // A revocation that races with the lookup makes it look again (the store is
        // changed before the cache is cleared); a session revoked that often is refused.
        for _ in 0..3 {
            match self.lookup_once(store, token, portal, &|| {})? {
                Lookup::Found(s) => return Ok(Some(s)),
                Lookup::Gone => return Ok(None),
                Lookup::Raced => {}
            }
        }
        Ok(None)
    }

    /// One lookup; [`Lookup::Raced`] when a revocation ran meanwhile. `between` runs after
    /// the session was read and before it is cached (tests put a revocation there).
    fn lookup_once(
        &self,
        store: &Store,
        token: &str,
        portal: Portal,
        between: &dyn Fn(),
    ) -> Result<Lookup, ApiError> {
        use std::sync::atomic::Ordering;
        let hash = token_hash(token);
        let now = now_ms();
        let (cached, generation) = {
            let cache = lock(&self.cache);
            (cache.get(&hash).cloned(), self.revocations.load(Ordering::SeqCst))
        };
        let mut s = if let Some(s) = cached {
            s
        } else {
            let Some(rec) = store.get_session(&hash)? else { return Ok(Lookup::Gone) };
            let Some(user) = store.get_user(&rec.username)? else { return Ok(Lookup::Gone) };
            if !same_secret(rec.portal.as_bytes(), portal.as_str().as_bytes()) {
                return Ok(Lookup::Gone);
            }
            Session {
                username: user.username,
                role: user.role,
                must_change_password: user.must_change_password,
                csrf_token: rec.csrf_token,
                portal,
                token_hash: hash.clone(),
                expires_ms: rec.expires_ms,
                created_ms: rec.created_ms,
                last_written_ms: rec.last_seen_ms,
            }
        };
        if s.portal != portal {
            return Ok(Lookup::Gone);
        }
        if now > s.expires_ms || now > s.created_ms + duration_ms(MAX_AGE) {
            self.end(store, &hash);
            return Ok(Lookup::Gone);
        }
        s.expires_ms = (now + duration_ms(IDLE_TIMEOUT)).min(s.created_ms + duration_ms(MAX_AGE));
        if now - s.last_written_ms > 60_000 {
            s.last_written_ms = now;
            store.touch_session(&hash, now, s.expires_ms)?;
        }
        between();
        let mut cache = lock(&self.cache);
        if self.revocations.load(Ordering::SeqCst) != generation {
            return Ok(Lookup::Raced);
        }
        if cache.len() >= MAX_CACHED_SESSIONS {
            cache.clear();
        }
        cache.insert(hash, s.clone());
        Ok(Lookup::Found(s))
    }

    /// Creates a relay token for `username` (a session of its own kind: it is not a portal
    /// cookie and a portal cookie is not a relay token).
    // A method although it needs no state yet: sessions are created, looked up and revoked
    // through one owner, whose cache a later change may need here.
    #[allow(clippy::unused_self)]
    pub fn create_relay(&self, store: &Store, username: &str) -> Result<String, ApiError> {
        let token = random_token()?;
        let now = now_ms();
        store.insert_session(&SessionRecord {
            token_hash: token_hash(&token),
            username: username.to_string(),
            portal: RELAY_SESSION.to_string(),
            csrf_token: String::new(),
            created_ms: now,
            last_seen_ms: now,
            expires_ms: now + duration_ms(IDLE_TIMEOUT),
        })?;
        Ok(token)
    }

    /// The user and role of a live relay token, extending it. Looked up in the store (once
    /// per relay connection, not per message).
    pub fn lookup_relay(
        &self,
        store: &Store,
        token: &str,
    ) -> Result<Option<(String, Role)>, ApiError> {
        let hash = token_hash(token);
        let Some(rec) = store.get_session(&hash)? else { return Ok(None) };
        if !same_secret(rec.portal.as_bytes(), RELAY_SESSION.as_bytes()) {
            return Ok(None);
        }
        let now = now_ms();
        if now > rec.expires_ms || now > rec.created_ms + duration_ms(MAX_AGE) {
            self.end(store, &hash);
            return Ok(None);
        }
        let Some(user) = store.get_user(&rec.username)? else { return Ok(None) };
        let expires = (now + duration_ms(IDLE_TIMEOUT)).min(rec.created_ms + duration_ms(MAX_AGE));
        store.touch_session(&hash, now, expires)?;
        Ok(Some((user.username, user.role)))
    }

    /// Ends one session.
    pub fn end(&self, store: &Store, token_hash: &[u8]) {
        {
            let mut cache = lock(&self.cache);
            cache.remove(token_hash);
            self.revocations.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        if let Err(e) = store.delete_session(token_hash) {
            tracing::warn!("could not delete a session: {e}");
        }
    }

    /// Forgets the cached sessions of a user (the store deleted them) and cuts the relay
    /// connections their relay tokens opened.
    pub fn revoke_user(&self, username: &str) {
        {
            let mut cache = lock(&self.cache);
            cache.retain(|_, s| s.username != username);
            self.revocations.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        let cut = self.relay_links.revoke_user(username);
        if cut > 0 {
            tracing::info!(user = username, "revoked: cut {cut} open relay connection(s)");
        }
    }
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The minimum role a route needs.
pub trait Need {
    /// The role.
    const ROLE: Role;
    /// Whether the route is allowed while the user still has to change the password.
    const BEFORE_PASSWORD_CHANGE: bool = false;
}

/// Any logged-in user, even one who still has to change the password.
#[derive(Debug)]
pub struct AnyUser;
impl Need for AnyUser {
    const ROLE: Role = Role::Viewer;
    const BEFORE_PASSWORD_CHANGE: bool = true;
}

/// Viewer or higher.
#[derive(Debug)]
pub struct Viewer;
impl Need for Viewer {
    const ROLE: Role = Role::Viewer;
}

/// Operator or higher.
#[derive(Debug)]
pub struct Operator;
impl Need for Operator {
    const ROLE: Role = Role::Operator;
}

/// Admin only.
#[derive(Debug)]
pub struct Admin;
impl Need for Admin {
    const ROLE: Role = Role::Admin;
}

/// An authenticated request whose user has at least role `N::ROLE`. Extracting it performs
/// every check: session, expiry, password-change requirement, role, and for state changes
/// CSRF token and origin.
#[derive(Debug)]
pub struct Auth<N: Need> {
    /// The session.
    pub session: Session,
    /// The client's address.
    pub address: Option<SocketAddr>,
    _need: PhantomData<N>,
}

impl<N: Need> Auth<N> {
    /// The user name.
    pub fn user(&self) -> &str {
        &self.session.username
    }

    /// An audit entry for this user and address.
    pub fn audit(
        &self,
        action: &str,
        target: Option<&str>,
        detail: Option<String>,
    ) -> NewAuditEntry {
        NewAuditEntry {
            username: Some(self.session.username.clone()),
            address: self.address.map(|a| a.ip().to_string()),
            action: action.to_string(),
            target: target.map(str::to_string),
            detail,
        }
    }
}

/// The value of a cookie.
/// Whether the request carries a live session of this portal (any role).
pub(crate) fn has_session(state: &WebState, headers: &HeaderMap) -> bool {
    let name = state.portal.cookie_name_for(headers);
    cookie(headers, &name).is_some_and(|t| {
        state.sessions.lookup(&state.store, t, state.portal).ok().flatten().is_some()
    })
}

pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The origin this portal is reached at, from the request's Host header.
fn own_origin(headers: &HeaderMap, tls: bool) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    Some(format!("{}://{host}", if tls { "https" } else { "http" }))
}

/// The origin of a Referer URL (`scheme://host[:port]`).
fn origin_of_url(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split(['/', '?', '#']).next()?;
    Some(format!("{scheme}://{host}"))
}

/// Refuses a state-changing request whose Origin/Referer names another site or port.
pub(crate) fn check_origin(headers: &HeaderMap, tls: bool) -> Result<(), ApiError> {
    let claimed =
        headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()).map(str::to_string).or_else(
            || headers.get(header::REFERER).and_then(|v| v.to_str().ok()).and_then(origin_of_url),
        );
    match claimed {
        // Non-browser clients send neither; the CSRF token still protects them.
        None => Ok(()),
        Some(o) if Some(&o) == own_origin(headers, tls).as_ref() => Ok(()),
        Some(o) => Err(ApiError::forbidden(format!("cross-origin request from {o} refused"))),
    }
}

impl<N: Need> FromRequestParts<WebState> for Auth<N> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &WebState) -> Result<Self, ApiError> {
        let name = state.portal.cookie_name_for(&parts.headers);
        let token = cookie(&parts.headers, &name).ok_or_else(ApiError::unauthorized)?;
        let session = state
            .sessions
            .lookup(&state.store, token, state.portal)?
            .ok_or_else(ApiError::unauthorized)?;
        if session.must_change_password && !N::BEFORE_PASSWORD_CHANGE {
            return Err(ApiError::forbidden("the password must be changed first"));
        }
        if !session.role.includes(N::ROLE) {
            return Err(ApiError::forbidden(format!(
                "this needs the {} role; {} is {}",
                N::ROLE.as_str(),
                session.username,
                session.role.as_str()
            )));
        }
        if !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
            let sent = parts
                .headers
                .get(CSRF_HEADER)
                .map(axum::http::HeaderValue::as_bytes)
                .unwrap_or_default();
            if !same_secret(sent, session.csrf_token.as_bytes()) {
                return Err(ApiError::forbidden(format!("missing or wrong {CSRF_HEADER} header")));
            }
            check_origin(&parts.headers, state.tls)?;
        }
        let address = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
        Ok(Auth { session, address, _need: PhantomData })
    }
}

/// On first start (no user at all): creates `admin` with a random password that must be
/// changed at first login, writes it to [`INITIAL_PASSWORD_FILE`] (readable by the owner
/// only) and returns it so the caller can print it once.
pub async fn ensure_admin(
    store: &Store,
    passwords: &Passwords,
    data_dir: &Path,
) -> Result<Option<String>, ApiError> {
    if store.count_users()? > 0 {
        return Ok(None);
    }
    let password = random_password()?;
    let hash = passwords.hash(&password).await?;
    store.create_user("admin", &hash, Role::Admin, true)?;
    let file = data_dir.join(INITIAL_PASSWORD_FILE);
    write_private(&file, format!("user: admin\npassword: {password}\n(change it at first login; this file is removed then)\n").as_bytes())
        .map_err(|e| ApiError::internal(format!("writing {}: {e}", file.display())))?;
    store.audit(
        &NewAuditEntry {
            action: "user.create".into(),
            target: Some("admin".into()),
            detail: Some("first start".into()),
            ..NewAuditEntry::default()
        },
        now_ms(),
    )?;
    Ok(Some(password))
}

/// Why a password could not be reset.
#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    /// No such user.
    #[error("no user `{0}`")]
    NoUser(String),
    /// A relay account (its password is held by a remote instance).
    #[error(
        "`{0}` is a relay account: a remote instance holds its password; give it a new one on the \
         Users page and on that instance"
    )]
    RelayAccount(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] iobp_store::StoreError),
    /// No randomness or no hash.
    #[error("cannot make a new password: {0}")]
    Password(String),
}

/// Gives `username` a new random password, to be changed at the next login, revokes their
/// sessions and records it in the audit trail: for an operator locked out of every admin
/// account (`iobufferpro user reset-password`, run on the data directory while no instance
/// runs on it — the same trust as reading its files). Returns the password, to be shown once.
pub async fn reset_password(
    store: &Store,
    passwords: &Passwords,
    username: &str,
) -> Result<String, ResetError> {
    let user = store.get_user(username)?.ok_or_else(|| ResetError::NoUser(username.into()))?;
    if user.role == Role::Relay {
        return Err(ResetError::RelayAccount(username.into()));
    }
    let password = random_password().map_err(|e| ResetError::Password(format!("{e:?}")))?;
    let hash =
        passwords.hash(&password).await.map_err(|e| ResetError::Password(format!("{e:?}")))?;
    store.set_password(username, &hash, true)?;
    store.audit(
        &NewAuditEntry {
            action: "user.password_reset".into(),
            target: Some(username.into()),
            detail: Some("on the command line (iobufferpro user reset-password)".into()),
            ..NewAuditEntry::default()
        },
        now_ms(),
    )?;
    Ok(password)
}

/// 20 characters from an alphabet without look-alikes (about 110 bits).
fn random_password() -> Result<String, ApiError> {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut b = [0u8; 20];
    getrandom::fill(&mut b).map_err(|e| ApiError::internal(format!("no randomness: {e}")))?;
    // 256 % 56 != 0, so reject bytes of the incomplete last block to keep it uniform.
    let mut out = String::new();
    let mut extra = [0u8; 64];
    getrandom::fill(&mut extra).map_err(|e| ApiError::internal(format!("no randomness: {e}")))?;
    let limit = 256 - 256 % ALPHABET.len();
    for x in b.iter().chain(extra.iter()) {
        if out.len() == 20 {
            break;
        }
        if usize::from(*x) < limit {
            out.push(char::from(ALPHABET[usize::from(*x) % ALPHABET.len()]));
        }
    }
    if out.len() < 20 {
        return random_password();
    }
    Ok(out)
}

/// Writes a new file only this user can read. Never through a link: whatever is at `path`
/// (a file left by an interrupted first start, a symbolic link someone placed) is removed —
/// the link itself, not its target — and the file is created exclusively (`O_EXCL`, which
/// does not follow a link either), so a link placed in between makes this fail, never write
/// elsewhere.
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

/// Removes the first-start password file (after the admin changed the password).
pub(crate) fn remove_initial_password(data_dir: &Path) {
    let p: PathBuf = data_dir.join(INITIAL_PASSWORD_FILE);
    if p.exists() {
        let _ = std::fs::remove_file(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn the_first_start_password_is_never_written_through_a_link() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tmp");
        let target = dir.path().join("somebody-elses-file");
        std::fs::write(&target, b"precious").expect("write");
        let path = dir.path().join(INITIAL_PASSWORD_FILE);
        std::os::unix::fs::symlink(&target, &path).expect("symlink");
        write_private(&path, b"password: x\n").expect("write");
        assert_eq!(std::fs::read(&target).expect("read"), b"precious", "the link's target");
        let meta = std::fs::symlink_metadata(&path).expect("stat");
        assert!(meta.is_file(), "a file of its own, not the link");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }

    /// A lookup that read a session just before its user was revoked must not put it back
    /// into the cache (on 325539c it did: the revoked session stayed usable from the cache
    /// until the process restarted or the cache filled up).
    #[test]
    fn a_lookup_racing_a_revocation_does_not_bring_the_session_back() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(dir.path()).expect("store");
        store.create_user("eve", "h", Role::Operator, false).expect("user");
        let sessions = Sessions::default();
        for cached in [false, true] {
            let (token, _) =
                sessions.create(&store, "eve", Role::Operator, false, Portal::Ops).expect("create");
            if !cached {
                lock(&sessions.cache).clear();
            }
            let revoke = || {
                store.set_role("eve", Role::Viewer).expect("role change revokes in the store");
                sessions.revoke_user("eve");
            };
            let raced = sessions.lookup_once(&store, &token, Portal::Ops, &revoke).expect("lookup");
            assert!(
                matches!(raced, Lookup::Raced),
                "the racing lookup starts over (cached: {cached})"
            );
            assert!(
                sessions.lookup(&store, &token, Portal::Ops).expect("lookup").is_none(),
                "revoked for good (cached: {cached})"
            );
            store.set_role("eve", Role::Operator).expect("back");
        }
    }

    #[tokio::test]
    async fn new_hashes_use_7_mib_and_old_ones_still_verify() {
        let p = Passwords::new();
        let h = p.hash("correct horse battery").await.expect("hash");
        assert!(h.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"), "{h}");
        assert!(p.verify("correct horse battery", Some(&h)).await);
        assert!(!p.verify("wrong", Some(&h)).await);
        // A hash an earlier build made with the crate's defaults (19 MiB, t = 2).
        let old = Argon2::default().hash_password(b"old password").expect("old").to_string();
        assert!(old.contains("m=19456,t=2"), "{old}");
        assert!(p.verify("old password", Some(&old)).await);
    }

    #[test]
    fn random_passwords_are_long_and_different() {
        let a = random_password().expect("pw");
        let b = random_password().expect("pw");
        assert_eq!(a.len(), 20);
        assert_ne!(a, b);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() && !"0O1lI".contains(c)));
    }

    #[test]
    fn origins() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "box:8080".parse().expect("v"));
        assert!(check_origin(&h, false).is_ok(), "no origin: token alone");
        h.insert(header::ORIGIN, "http://box:8080".parse().expect("v"));
        assert!(check_origin(&h, false).is_ok());
        h.insert(header::ORIGIN, "http://box:8081".parse().expect("v"));
        assert!(check_origin(&h, false).is_err(), "the other portal's port is another origin");
        h.insert(header::ORIGIN, "https://box:8080".parse().expect("v"));
        assert!(check_origin(&h, false).is_err(), "scheme matters");
        h.remove(header::ORIGIN);
        h.insert(header::REFERER, "http://evil:8080/x".parse().expect("v"));
        assert!(check_origin(&h, false).is_err());
    }
}
