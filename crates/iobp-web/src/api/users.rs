//! Users and roles (Admin only).

use axum::extract::State;
use axum::http::StatusCode;
use iobp_store::{RelayDirection, RelayGrant, Role, UserRecord};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiJson, ApiPath};
use crate::WebState;
use crate::auth::{Admin, Auth, check_password, check_username, now_ms};
use crate::error::{ApiError, ApiResult, ErrorBody};

/// A user (never the password hash).
#[derive(Debug, Serialize, ToSchema)]
pub struct UserDto {
    /// Login name.
    pub username: String,
    /// `admin`, `operator`, `viewer` or `relay`.
    pub role: String,
    /// Must change the password at next login.
    pub must_change_password: bool,
    /// Created, seconds since the Unix epoch.
    pub created_at: i64,
    /// Last changed, seconds since the Unix epoch.
    pub updated_at: i64,
    /// The channels this user may relay, and which way (relay and admin users only).
    pub relay_grants: Vec<RelayGrantDto>,
}

/// Which way a relay grant allows messages to go, seen from this instance.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RelayDirectionDto {
    /// The other instance sends into this instance's channel.
    Push,
    /// The other instance receives from this instance's channel.
    Pull,
}

/// One channel a user may relay, in one direction.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RelayGrantDto {
    /// The `channel_id` of a `remote_icombuffer` side of this instance (exact; no wildcard).
    pub channel_id: String,
    /// `push` (into this instance) or `pull` (from it).
    pub direction: RelayDirectionDto,
}

impl From<&RelayGrant> for RelayGrantDto {
    fn from(g: &RelayGrant) -> Self {
        RelayGrantDto {
            channel_id: g.channel_id.clone(),
            direction: match g.direction {
                RelayDirection::Push => RelayDirectionDto::Push,
                RelayDirection::Pull => RelayDirectionDto::Pull,
            },
        }
    }
}

/// Most relay grants one user holds.
const MAX_RELAY_GRANTS: usize = 256;

/// Checks requested grants for a user of `role`.
fn relay_grants(role: Role, grants: &[RelayGrantDto]) -> ApiResult<Vec<RelayGrant>> {
    if !grants.is_empty() && !super::relay::may_relay(role) {
        return Err(ApiError::bad_request(format!(
            "only relay and admin users relay; a {} user holds no relay grants",
            role.as_str()
        ))
        .at("relay_grants"));
    }
    if grants.len() > MAX_RELAY_GRANTS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_RELAY_GRANTS} relay grants per user"
        ))
        .at("relay_grants"));
    }
    grants
        .iter()
        .enumerate()
        .map(|(i, g)| {
            iobp_config::check_id(&g.channel_id).map_err(|e| {
                ApiError::bad_request(format!("invalid channel id: {e}"))
                    .at(&format!("relay_grants[{i}].channel_id"))
            })?;
            Ok(RelayGrant {
                channel_id: g.channel_id.clone(),
                direction: match g.direction {
                    RelayDirectionDto::Push => RelayDirection::Push,
                    RelayDirectionDto::Pull => RelayDirection::Pull,
                },
            })
        })
        .collect()
}

fn user_dto(s: &WebState, u: &UserRecord) -> ApiResult<UserDto> {
    Ok(UserDto {
        username: u.username.clone(),
        role: u.role.as_str().into(),
        must_change_password: u.must_change_password,
        created_at: u.created_at,
        updated_at: u.updated_at,
        relay_grants: s.store.relay_grants(&u.username)?.iter().map(RelayGrantDto::from).collect(),
    })
}

fn describe(grants: &[RelayGrant]) -> String {
    if grants.is_empty() {
        return "relay grants: none".into();
    }
    let list: Vec<String> =
        grants.iter().map(|g| format!("{} {}", g.direction.as_str(), g.channel_id)).collect();
    format!("relay grants: {}", list.join(", "))
}

/// A new user.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUserRequest {
    /// Login name: 1-64 letters, digits, `.`, `_`, `-`, `@`.
    pub username: String,
    /// Initial password (at least 10 characters).
    pub password: String,
    /// `admin`, `operator`, `viewer` or `relay`.
    pub role: String,
    /// Must change the password at first login. Default true.
    pub must_change_password: Option<bool>,
    /// Channels the user may relay (relay and admin users). Default none.
    pub relay_grants: Option<Vec<RelayGrantDto>>,
}

/// Changes to a user; absent fields stay. Any change ends the user's sessions.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserUpdateRequest {
    /// New role.
    pub role: Option<String>,
    /// New password (a reset).
    pub password: Option<String>,
    /// Must change the password at next login (default true with a reset).
    pub must_change_password: Option<bool>,
    /// Replaces the channels the user may relay. A role change to operator or viewer removes
    /// them. Open relay connections of the user are cut and must reconnect under the new
    /// grants.
    pub relay_grants: Option<Vec<RelayGrantDto>>,
}

fn role(name: &str) -> ApiResult<Role> {
    Role::parse(name).ok_or_else(|| {
        ApiError::bad_request(format!(
            "role must be admin, operator, viewer or relay, not `{name}`"
        ))
    })
}

/// Refuses a change that would leave no admin.
fn keep_an_admin(s: &WebState, changing: &str, new_role: Option<Role>) -> ApiResult<()> {
    let users = s.store.list_users()?;
    let admins = users.iter().filter(|u| u.role == Role::Admin && u.username != changing).count();
    let stays_admin = new_role == Some(Role::Admin);
    let was_admin = users.iter().any(|u| u.username == changing && u.role == Role::Admin);
    if was_admin && !stays_admin && admins == 0 {
        return Err(ApiError::conflict("this is the last admin; make another user admin first"));
    }
    Ok(())
}

/// All users.
#[utoipa::path(get, path = "/api/v1/users", tag = "users", operation_id = "list_users",
    responses(super::responses::Session, (status = 200, body = Vec<UserDto>)))]
pub(crate) async fn list(
    State(s): State<WebState>,
    _auth: Auth<Admin>,
) -> ApiResult<axum::Json<Vec<UserDto>>> {
    let users = s.store.list_users()?;
    Ok(axum::Json(users.iter().map(|u| user_dto(&s, u)).collect::<ApiResult<_>>()?))
}

/// Creates a user.
#[utoipa::path(post, path = "/api/v1/users", tag = "users", operation_id = "create_user", request_body = NewUserRequest,
    responses(super::responses::SessionWrite, super::responses::TooLarge,
        (status = 201, body = UserDto), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn create(
    State(s): State<WebState>,
    auth: Auth<Admin>,
    ApiJson(req): ApiJson<NewUserRequest>,
) -> ApiResult<(StatusCode, axum::Json<UserDto>)> {
    check_username(&req.username).map_err(|e| e.at("username"))?;
    let role = role(&req.role).map_err(|e| e.at("role"))?;
    check_password(&req.username, &req.password).map_err(|e| e.at("password"))?;
    let grants = relay_grants(role, req.relay_grants.as_deref().unwrap_or_default())?;
    let hash = s.passwords.hash(&req.password).await?;
    s.store.create_user(&req.username, &hash, role, req.must_change_password.unwrap_or(true))?;
    let mut detail = format!("role {}", role.as_str());
    if !grants.is_empty() {
        s.store.set_relay_grants(&req.username, &grants)?;
        detail = format!("{detail}, {}", describe(&grants));
    }
    s.store.audit(&auth.audit("user.create", Some(&req.username), Some(detail)), now_ms())?;
    let u = s.store.get_user(&req.username)?.ok_or_else(|| ApiError::internal("user vanished"))?;
    Ok((StatusCode::CREATED, axum::Json(user_dto(&s, &u)?)))
}

/// Changes a user's role or resets the password; the user's sessions end.
#[utoipa::path(put, path = "/api/v1/users/{username}", tag = "users", operation_id = "update_user", params(("username" = String, Path)),
    request_body = UserUpdateRequest,
    responses(super::responses::SessionWrite, super::responses::Malformed, super::responses::TooLarge,
        (status = 200, body = UserDto), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn update(
    State(s): State<WebState>,
    auth: Auth<Admin>,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<UserUpdateRequest>,
) -> ApiResult<axum::Json<UserDto>> {
    check_username(&name)?;
    let user = s
        .store
        .get_user(&name)?
        .ok_or_else(|| ApiError::not_found(format!("no user named `{name}`")))?;
    let mut changes = Vec::new();
    let new_role = req.role.as_deref().map(role).transpose().map_err(|e| e.at("role"))?;
    let effective_role = new_role.unwrap_or(user.role);
    // Checked before anything changes, so a refused request changes nothing.
    let grants = match &req.relay_grants {
        Some(g) => Some(relay_grants(effective_role, g)?),
        None if !super::relay::may_relay(effective_role) => Some(Vec::new()),
        None => None,
    };
    if let Some(r) = new_role {
        keep_an_admin(&s, &name, Some(r))?;
        s.store.set_role(&name, r)?;
        changes.push(format!("role {}", r.as_str()));
    }
    if let Some(g) = &grants {
        let before = s.store.relay_grants(&name)?;
        let mut after = g.clone();
        after.sort();
        after.dedup();
        if before != after || req.relay_grants.is_some() {
            s.store.set_relay_grants(&name, &after)?;
            if before != after {
                changes.push(describe(&after));
            }
        }
    }
    if let Some(pw) = &req.password {
        check_password(&name, pw).map_err(|e| e.at("password"))?;
        let hash = s.passwords.hash(pw).await?;
        let must = req.must_change_password.unwrap_or(true);
        s.store.set_password(&name, &hash, must)?;
        changes.push("password reset".into());
    } else if let Some(must) = req.must_change_password {
        s.store.set_password(&name, &user.password_hash, must)?;
        changes.push(format!("must_change_password {must}"));
    }
    s.sessions.revoke_user(&name);
    s.store.audit(&auth.audit("user.update", Some(&name), Some(changes.join(", "))), now_ms())?;
    let u = s
        .store
        .get_user(&name)?
        .ok_or_else(|| ApiError::not_found(format!("no user named `{name}`")))?;
    Ok(axum::Json(user_dto(&s, &u)?))
}

/// Deletes a user and ends their sessions.
#[utoipa::path(delete, path = "/api/v1/users/{username}", tag = "users", operation_id = "delete_user", params(("username" = String, Path)),
    responses(super::responses::SessionWrite, super::responses::Malformed,
        (status = 204, description = "Deleted"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn delete(
    State(s): State<WebState>,
    auth: Auth<Admin>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<StatusCode> {
    check_username(&name)?;
    if name == auth.user() {
        return Err(ApiError::conflict("you cannot delete yourself"));
    }
    keep_an_admin(&s, &name, None)?;
    s.store.delete_user(&name)?;
    s.sessions.revoke_user(&name);
    s.store.audit(&auth.audit("user.delete", Some(&name), None), now_ms())?;
    Ok(StatusCode::NO_CONTENT)
}
