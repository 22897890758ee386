//! The relay between ioBufferPro instances (see the `iobp_relay` crate for the protocol): a
//! token for a user allowed to relay, and the HTTP upgrade to the relay protocol. Served on
//! both ports; remote instances use the Operations Portal's.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use iobp_engine::{RelayMode, RelayRefusal};
use iobp_store::{NewAuditEntry, RelayDirection, Role};
use serde::Serialize;
use utoipa::ToSchema;

use super::session::ClientAddr;
use super::{ApiJson, ApiPath, LoginRequest};
use crate::WebState;
use crate::auth::now_ms;
use crate::error::{ApiError, ApiResult, ErrorBody};

/// A relay token.
#[derive(Debug, Serialize, ToSchema)]
pub struct RelayTokenDto {
    /// Sent as `Authorization: Bearer <token>` when opening relay connections.
    pub token: String,
    /// The token lapses after this long without a relay connection (it is extended at each).
    pub expires_in_s: u64,
}

/// Roles that can hold relay grants: machine accounts, and admins an admin chose to grant.
pub(crate) fn may_relay(role: Role) -> bool {
    matches!(role, Role::Relay | Role::Admin)
}

/// Logs a relay user in and returns a token. The password is checked here, once; relay
/// connections then present the token.
#[utoipa::path(post, path = "/api/v1/relay/session", tag = "relay", operation_id = "relay_login", request_body = LoginRequest,
    responses(super::responses::Malformed, super::responses::TooLarge,
        (status = 200, body = RelayTokenDto),
        (status = 401, description = "Wrong user name or password", body = ErrorBody),
        (status = 403, description = "The user's role does not allow relaying, or it has no relay grant", body = ErrorBody),
        (status = 429, description = "Too many failed logins; see Retry-After", body = ErrorBody),
    ))]
pub(crate) async fn login(
    State(s): State<WebState>,
    ClientAddr(addr): ClientAddr,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<axum::Json<RelayTokenDto>> {
    let ip = addr.map(|a| a.ip());
    // A place in line first (a login turned away as busy counts as no attempt), then the
    // attempt, reserved (and counted as failed) before the hash so concurrent attempts see
    // each other; a success takes it back.
    let Some(_in_line) = s.passwords.line_up() else {
        return Err(ApiError::login_refused(crate::throttle::Refusal::Busy));
    };
    let attempt = s.throttle.reserve(&req.username, ip).map_err(ApiError::login_refused)?;
    let user = if req.username.len() <= 64 { s.store.get_user(&req.username)? } else { None };
    let ok =
        s.passwords.verify(&req.password, user.as_ref().map(|u| u.password_hash.as_str())).await;
    let entry = |action: &str, who: Option<String>, detail: Option<String>| NewAuditEntry {
        username: who,
        address: ip.map(|i| i.to_string()),
        action: action.to_string(),
        target: None,
        detail,
    };
    let Some(user) = user.filter(|_| ok) else {
        drop(attempt);
        let name: String = req.username.chars().take(64).collect();
        s.store.audit(
            &entry("relay.login.failed", None, Some(format!("user name `{name}`"))),
            now_ms(),
        )?;
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "wrong user name or password"));
    };
    attempt.succeeded();
    if !may_relay(user.role) {
        s.store.audit(
            &entry(
                "relay.login.refused",
                Some(user.username.clone()),
                Some(format!("role {}", user.role.as_str())),
            ),
            now_ms(),
        )?;
        return Err(ApiError::forbidden(format!(
            "user `{}` (role {}) may not relay: give it the relay role",
            user.username,
            user.role.as_str()
        )));
    }
    // Grants are checked again at every connection; a user with none has nothing to relay,
    // which is worth saying at login, where the other instance's operator sees it.
    if s.store.relay_grants(&user.username)?.is_empty() {
        s.store.audit(
            &entry(
                "relay.login.refused",
                Some(user.username.clone()),
                Some("no relay grants".into()),
            ),
            now_ms(),
        )?;
        return Err(ApiError::forbidden(format!(
            "user `{}` has no relay grants: an admin grants it channels on the Users page",
            user.username
        )));
    }
    let token = s.sessions.create_relay(&s.store, &user.username)?;
    s.store.audit(&entry("relay.login", Some(user.username), None), now_ms())?;
    Ok(axum::Json(RelayTokenDto { token, expires_in_s: crate::auth::IDLE_TIMEOUT.as_secs() }))
}

/// Opens a relay connection: `push` (the caller sends into this instance's channel) or `pull`
/// (the caller receives from it). Needs `Authorization: Bearer <token>`, `Connection:
/// Upgrade` and `Upgrade: iobp-relay/1`; answers 101 and speaks the relay protocol.
#[utoipa::path(get, path = "/api/v1/relay/channels/{channel_id}/{mode}", tag = "relay",
    params(
        ("channel_id" = String, Path, description = "The channel_id of a remote_icombuffer side without url here"),
        ("mode" = String, Path, description = "`push` or `pull`"),
    ),
    responses(
        (status = 101, description = "Switching to the relay protocol (iobp-relay/1)"),
        (status = 400, description = "Not an upgrade to iobp-relay/1", body = ErrorBody),
        (status = 401, description = "Missing, expired or revoked token: log in again", body = ErrorBody),
        (status = 403, description = "The user may not relay this channel in this direction", body = ErrorBody),
        (status = 404, description = "Unknown mode", body = ErrorBody),
        (status = 409, description = "No side here takes this channel in this direction", body = ErrorBody),
        (status = 429, description = "The channel already has its most relay sessions in this mode", body = ErrorBody),
        (status = 503, description = "The channel pair is stopped", body = ErrorBody),
    ))]
pub(crate) async fn connect(
    State(s): State<WebState>,
    ClientAddr(addr): ClientAddr,
    ApiPath((channel, mode)): ApiPath<(String, String)>,
    mut req: Request,
) -> ApiResult<Response> {
    let mode = RelayMode::parse(&mode)
        .ok_or_else(|| ApiError::not_found("the relay mode is `push` or `pull`"))?;
    let upgrade = req.headers().get(header::UPGRADE).and_then(|v| v.to_str().ok());
    if !upgrade.is_some_and(|u| u.eq_ignore_ascii_case(iobp_relay::PROTOCOL)) {
        return Err(ApiError::bad_request(format!(
            "expected `Connection: Upgrade` and `Upgrade: {}`",
            iobp_relay::PROTOCOL
        )));
    }
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(iobp_relay::http::token_of)
        .ok_or_else(ApiError::unauthorized)?;
    let (user, role) =
        s.sessions.lookup_relay(&s.store, token)?.ok_or_else(ApiError::unauthorized)?;
    if !may_relay(role) {
        return Err(ApiError::forbidden(format!("user `{user}` may not relay")));
    }
    // Before anything about the channel is revealed: a user learns nothing about channels
    // it was not granted, not even whether they exist.
    let direction = match mode {
        RelayMode::Push => RelayDirection::Push,
        RelayMode::Pull => RelayDirection::Pull,
    };
    if !s.store.has_relay_grant(&user, &channel, direction)? {
        let name: String = channel.chars().take(64).collect();
        s.store.audit(
            &NewAuditEntry {
                username: Some(user.clone()),
                address: addr.map(|a| a.ip().to_string()),
                action: "relay.refused".into(),
                target: Some(name.clone()),
                detail: Some(format!("not granted {}", direction.as_str())),
            },
            now_ms(),
        )?;
        return Err(ApiError::forbidden(format!(
            "user `{user}` is not granted to {} channel `{name}`",
            match direction {
                RelayDirection::Push => "push into",
                RelayDirection::Pull => "pull from",
            }
        )));
    }
    s.engine.relay_check(&channel, mode).map_err(refusal)?;
    // Asked before the upgrade so that a full channel is an HTTP answer the other instance
    // reports, not a connection closed after 101.
    s.engine
        .relay_room(&channel, mode)
        .map_err(|e| ApiError::too_many_requests(e.to_string(), 10))?;
    let on_upgrade = hyper::upgrade::on(&mut req);
    let engine = s.engine.clone();
    let peer = addr.map_or_else(|| format!("{user}@?"), |a| format!("{user}@{a}"));
    let links = s.sessions.relay_links.clone();
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                // Tracked by user, so that revoking the user cuts this connection at once.
                let io = Box::new(links.track(&user, TokioIo::new(upgraded)));
                if let Err(e) = engine.relay_hand_over(&channel, mode, io, peer.clone()) {
                    tracing::warn!(%channel, %peer, "relay connection dropped: {e}");
                }
            }
            Err(e) => tracing::warn!(%channel, %peer, "relay upgrade failed: {e}"),
        }
    });
    let mut r = StatusCode::SWITCHING_PROTOCOLS.into_response();
    r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    r.headers_mut().insert(header::UPGRADE, HeaderValue::from_static(iobp_relay::PROTOCOL));
    Ok(r)
}

#[allow(clippy::needless_pass_by_value)] // used as map_err(refusal)
fn refusal(e: RelayRefusal) -> ApiError {
    match e {
        RelayRefusal::NoSuchChannel(_) => ApiError::not_found(e.to_string()),
        RelayRefusal::WrongSide(_) => ApiError::conflict(e.to_string()),
        RelayRefusal::Stopped(_) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    /// The relay client (in the engine) builds its requests from `iobp_relay::http`; this is
    /// what keeps the served paths and the token's shape the same.
    #[test]
    fn the_served_relay_paths_and_token_are_the_protocol_crates() {
        let doc: serde_json::Value =
            serde_json::from_str(&crate::openapi_json()).expect("the OpenAPI document is JSON");
        let paths = doc["paths"].as_object().expect("paths");
        assert!(paths[iobp_relay::http::SESSION_PATH].get("post").is_some());
        assert!(paths[iobp_relay::http::CHANNEL_PATH_TEMPLATE].get("get").is_some());
        let served = super::RelayTokenDto { token: "t".into(), expires_in_s: 60 };
        let json = serde_json::to_string(&served).expect("json");
        let read: iobp_relay::http::Token = serde_json::from_str(&json).expect("the same shape");
        assert_eq!((read.token.as_str(), read.expires_in_s), ("t", 60));
        let login = iobp_relay::http::LoginRequest { username: "u".into(), password: "p".into() };
        let json = serde_json::to_string(&login).expect("json");
        let read: super::LoginRequest = serde_json::from_str(&json).expect("the same shape");
        assert_eq!(read.username, "u");
    }
}
