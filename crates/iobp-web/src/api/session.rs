//! Login, the current session, logout, password change.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use iobp_store::NewAuditEntry;

use super::responses::{Malformed, Session as SessionErrors, SessionWrite, TooLarge};
use super::{ApiJson, LoginRequest, PasswordChangeRequest, SessionDto};
use crate::auth::{
    AnyUser, Auth, Session, check_origin, check_password, now_ms, remove_initial_password,
};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::{Portal, WebState};

fn session_dto(s: &Session) -> SessionDto {
    SessionDto {
        username: s.username.clone(),
        role: s.role.as_str().into(),
        must_change_password: s.must_change_password,
        csrf_token: s.csrf_token.clone(),
        portal: s.portal.as_str().into(),
    }
}

fn set_cookie(portal: Portal, headers: &HeaderMap, token: &str, tls: bool) -> HeaderValue {
    let secure = if tls { "; Secure" } else { "" };
    let v = format!(
        "{}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        portal.cookie_name_for(headers),
        crate::auth::MAX_AGE.as_secs()
    );
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn clear_cookie(portal: Portal, headers: &HeaderMap) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
        portal.cookie_name_for(headers)
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn with_cookie(dto: SessionDto, cookie: HeaderValue) -> Response {
    let mut r = axum::Json(dto).into_response();
    r.headers_mut().insert(SET_COOKIE, cookie);
    r
}

/// The client's address when the server records it (it always does outside unit tests).
pub(crate) struct ClientAddr(pub Option<SocketAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0)))
    }
}

/// Logs in; sets the portal's session cookie.
#[utoipa::path(post, path = "/api/v1/session", tag = "session", request_body = LoginRequest,
    responses(
        Malformed, TooLarge,
        (status = 200, description = "Logged in", body = SessionDto),
        (status = 401, description = "Wrong user name or password", body = ErrorBody),
        (status = 403, description = "The request came from another origin, or the user is a relay account (which cannot use the portals)", body = ErrorBody),
        (status = 429, description = "Too many failed logins; see Retry-After", body = ErrorBody),
    ))]
pub(crate) async fn login(
    State(s): State<WebState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<Response> {
    // Login CSRF: a foreign page must not log a browser into an account of its choosing.
    check_origin(&headers, s.tls)?;
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
    let audit = |action: &str, who: Option<String>| NewAuditEntry {
        username: who,
        address: ip.map(|i| i.to_string()),
        action: action.to_string(),
        target: None,
        detail: None,
    };
    let Some(user) = user.filter(|_| ok) else {
        drop(attempt);
        let name: String = req.username.chars().take(64).collect();
        s.store.audit(
            &NewAuditEntry {
                detail: Some(format!("user name `{name}`")),
                ..audit("login.failed", None)
            },
            now_ms(),
        )?;
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "wrong user name or password"));
    };
    attempt.succeeded();
    // A relay account is another instance's credential: it gets no portal session, which
    // would be good for nothing but a 403 on every page.
    if user.role == iobp_store::Role::Relay {
        s.store.audit(
            &NewAuditEntry {
                detail: Some("relay accounts cannot use the portals".into()),
                ..audit("login.refused", Some(user.username.clone()))
            },
            now_ms(),
        )?;
        return Err(ApiError::forbidden(format!(
            "`{}` is a relay account: it relays between instances and cannot use the portals",
            user.username
        )));
    }
    let (token, session) = s.sessions.create(
        &s.store,
        &user.username,
        user.role,
        user.must_change_password,
        s.portal,
    )?;
    s.store.audit(&audit("login", Some(user.username.clone())), now_ms())?;
    Ok(with_cookie(session_dto(&session), set_cookie(s.portal, &headers, &token, s.tls)))
}

/// The current session (including its CSRF token).
#[utoipa::path(get, path = "/api/v1/session", tag = "session",
    responses(SessionErrors, (status = 200, body = SessionDto)))]
pub(crate) async fn current(auth: Auth<AnyUser>) -> axum::Json<SessionDto> {
    axum::Json(session_dto(&auth.session))
}

/// Logs out.
#[utoipa::path(delete, path = "/api/v1/session", tag = "session",
    responses(SessionWrite, (status = 204, description = "Logged out")))]
pub(crate) async fn logout(
    State(s): State<WebState>,
    headers: HeaderMap,
    auth: Auth<AnyUser>,
) -> ApiResult<Response> {
    s.sessions.end(&s.store, &auth.session.token_hash);
    s.store.audit(&auth.audit("logout", None, None), now_ms())?;
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(SET_COOKIE, clear_cookie(s.portal, &headers));
    Ok(r)
}

/// Changes the logged-in user's password. Every session of the user ends; a new one is
/// returned for this portal.
#[utoipa::path(post, path = "/api/v1/session/password", tag = "session", request_body = PasswordChangeRequest,
    responses(
        SessionWrite, TooLarge,
        (status = 200, description = "Changed; a new session", body = SessionDto),
        (status = 400, description = "Wrong current password, the new one does not meet the policy, or a malformed body", body = ErrorBody),
    ))]
pub(crate) async fn change_password(
    State(s): State<WebState>,
    headers: HeaderMap,
    auth: Auth<AnyUser>,
    ApiJson(req): ApiJson<PasswordChangeRequest>,
) -> ApiResult<Response> {
    let user = s.store.get_user(auth.user())?.ok_or_else(ApiError::unauthorized)?;
    if !s.passwords.verify(&req.current_password, Some(&user.password_hash)).await {
        s.store.audit(
            &auth.audit(
                "password.change",
                Some(auth.user()),
                Some("wrong current password".into()),
            ),
            now_ms(),
        )?;
        return Err(ApiError::bad_request("the current password is wrong").at("current_password"));
    }
    check_password(&user.username, &req.new_password).map_err(|e| e.at("new_password"))?;
    if req.new_password == req.current_password {
        return Err(ApiError::bad_request("the new password must differ from the current one")
            .at("new_password"));
    }
    let hash = s.passwords.hash(&req.new_password).await?;
    s.store.set_password(&user.username, &hash, false)?;
    s.sessions.revoke_user(&user.username);
    if user.username == "admin" {
        remove_initial_password(&s.data_dir);
    }
    s.store.audit(&auth.audit("password.change", Some(auth.user()), None), now_ms())?;
    let (token, session) =
        s.sessions.create(&s.store, &user.username, user.role, false, s.portal)?;
    Ok(with_cookie(session_dto(&session), set_cookie(s.portal, &headers, &token, s.tls)))
}
