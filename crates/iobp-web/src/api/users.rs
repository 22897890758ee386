//! Users and roles (Admin only).

use axum::extract::State;
use axum::http::StatusCode;
use iobp_store::{Role, UserRecord};
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
}

impl From<&UserRecord> for UserDto {
    fn from(u: &UserRecord) -> Self {
        UserDto {
            username: u.username.clone(),
            role: u.role.as_str().into(),
            must_change_password: u.must_change_password,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
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
    Ok(axum::Json(s.store.list_users()?.iter().map(UserDto::from).collect()))
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
    let hash = s.passwords.hash(&req.password).await?;
    s.store.create_user(&req.username, &hash, role, req.must_change_password.unwrap_or(true))?;
    s.store.audit(
        &auth.audit("user.create", Some(&req.username), Some(format!("role {}", role.as_str()))),
        now_ms(),
    )?;
    let u = s.store.get_user(&req.username)?.ok_or_else(|| ApiError::internal("user vanished"))?;
    Ok((StatusCode::CREATED, axum::Json(UserDto::from(&u))))
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
    if let Some(r) = &req.role {
        let r = role(r).map_err(|e| e.at("role"))?;
        keep_an_admin(&s, &name, Some(r))?;
        s.store.set_role(&name, r)?;
        changes.push(format!("role {}", r.as_str()));
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
    Ok(axum::Json(UserDto::from(&u)))
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
