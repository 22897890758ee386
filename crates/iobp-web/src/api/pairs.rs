//! Channel pairs: list, get, create, edit, start, stop, delete; live feed and rejections.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::responses::{Malformed, Session, SessionWrite, TooLarge};
use super::{
    ApiPath, ApiQuery, FeedEntryDto, PairDto, PairStatusDto, RejectionDto, pair_id, raw_body,
};
use crate::WebState;
use crate::auth::{Auth, Operator, Viewer, now_ms};
use crate::error::{ApiError, ApiResult, ErrorBody};

fn pair_dto(s: &WebState, id: &str) -> ApiResult<PairDto> {
    let spec = s
        .engine
        .get(id)
        .ok_or_else(|| ApiError::not_found(format!("no channel pair with id `{id}`")))?;
    let snap = s
        .engine
        .snapshot(id)
        .ok_or_else(|| ApiError::not_found(format!("no channel pair with id `{id}`")))?;
    // Passwords of remote instances never leave the server; an edit that sends the mask
    // back keeps the stored one.
    let mut spec_json = serde_json::to_value(&spec).map_err(ApiError::internal)?;
    mask_passwords(&mut spec_json);
    Ok(PairDto {
        id: spec.id.clone(),
        name: spec.display_name().to_string(),
        enabled: spec.enabled,
        spec: spec_json,
        status: PairStatusDto::from(&snap),
    })
}

/// What the API shows instead of a password.
pub(crate) use iobp_config::PASSWORD_MASK;

/// A password still masked after the stored ones were put back belongs to a link that is new
/// or changed: the user must type it (storing the mask as the password would lock the link out).
fn masked_password_left(spec: &iobp_config::ChannelPairSpec) -> Result<(), ApiError> {
    let problems = spec.masked_password_problems();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(&iobp_config::ConfigError { problems }))
    }
}

/// Every channel pair with its status.
#[utoipa::path(get, path = "/api/v1/pairs", tag = "pairs", operation_id = "list_pairs",
    responses(Session, (status = 200, body = Vec<PairDto>)))]
pub(crate) async fn list(
    State(s): State<WebState>,
    _auth: Auth<Viewer>,
) -> ApiResult<axum::Json<Vec<PairDto>>> {
    let ids: Vec<String> = s.engine.list().into_iter().map(|p| p.id).collect();
    // A pair deleted between listing and reading is simply left out.
    Ok(axum::Json(ids.iter().filter_map(|id| pair_dto(&s, id).ok()).collect()))
}

/// Creates a channel pair (started at once if enabled).
#[utoipa::path(post, path = "/api/v1/pairs", tag = "pairs", operation_id = "create_pair",
    request_body(content = super::spec_doc::ChannelPairSpec, description = "A channel pair in the configuration format"),
    responses(
        SessionWrite, Malformed, TooLarge,
        (status = 201, body = PairDto),
        (status = 409, description = "The id exists", body = ErrorBody),
        (status = 422, description = "Invalid: each problem names its field", body = ErrorBody),
    ))]
pub(crate) async fn create(
    State(s): State<WebState>,
    auth: Auth<Operator>,
    req: Request,
) -> ApiResult<Response> {
    let text = raw_body(req, &s).await?;
    let spec = iobp_config::parse_pair(&text).map_err(|e| ApiError::invalid(&e))?;
    masked_password_left(&spec)?;
    let id = spec.id.clone();
    s.engine.create(spec).await?;
    s.store.audit(&auth.audit("pair.create", Some(&id), Some(text_detail(&text))), now_ms())?;
    Ok((StatusCode::CREATED, axum::Json(pair_dto(&s, &id)?)).into_response())
}

/// The configuration as it was submitted, for the audit trail (passwords masked).
fn text_detail(text: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(mut v) => {
            mask_passwords(&mut v);
            v.to_string()
        }
        Err(_) => String::new(),
    }
}

fn mask_passwords(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                // `token`: a nats side's credential (iobp_config::secrets).
                if k == "password" || k == "token" {
                    *x = serde_json::Value::String(PASSWORD_MASK.into());
                } else {
                    mask_passwords(x);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(mask_passwords),
        _ => {}
    }
}

/// One channel pair with its status.
#[utoipa::path(get, path = "/api/v1/pairs/{id}", tag = "pairs", operation_id = "get_pair", params(("id" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")),
    responses(Session, Malformed, (status = 200, body = PairDto), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_one(
    State(s): State<WebState>,
    _auth: Auth<Viewer>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<axum::Json<PairDto>> {
    Ok(axum::Json(pair_dto(&s, pair_id(&id)?)?))
}

/// Replaces a pair's configuration; the pair restarts with it and keeps its buffer.
#[utoipa::path(put, path = "/api/v1/pairs/{id}", tag = "pairs", operation_id = "update_pair", params(("id" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")),
    request_body(content = super::spec_doc::ChannelPairSpec, description = "The whole channel pair; its id must match the path"),
    responses(
        SessionWrite, Malformed, TooLarge,
        (status = 200, body = PairDto),
        (status = 404, body = ErrorBody),
        (status = 422, description = "Invalid: each problem names its field", body = ErrorBody),
    ))]
pub(crate) async fn update(
    State(s): State<WebState>,
    auth: Auth<Operator>,
    ApiPath(id): ApiPath<String>,
    req: Request,
) -> ApiResult<axum::Json<PairDto>> {
    let id = pair_id(&id)?.to_string();
    let text = raw_body(req, &s).await?;
    let mut spec = iobp_config::parse_pair(&text).map_err(|e| ApiError::invalid(&e))?;
    if let Some(old) = s.engine.get(&id) {
        spec.restore_masked_passwords(&old);
    }
    masked_password_left(&spec)?;
    if spec.id != id {
        let e = iobp_config::ConfigError {
            problems: vec![iobp_config::Problem {
                path: "id".into(),
                message: format!("must be `{id}` (the id in the URL)"),
            }],
        };
        return Err(ApiError::invalid(&e));
    }
    s.engine.update(spec).await?;
    s.store.audit(&auth.audit("pair.update", Some(&id), Some(text_detail(&text))), now_ms())?;
    Ok(axum::Json(pair_dto(&s, &id)?))
}

/// Confirmation of a deletion.
#[derive(Debug, Deserialize, IntoParams, ToSchema)]
#[into_params(parameter_in = Query)]
pub(crate) struct DeleteConfirm {
    /// Must repeat the pair's id: deleting removes its configuration and every buffered
    /// message, for good.
    confirm: Option<String>,
}

/// Deletes a pair with every buffered message. Needs `?confirm=<id>`.
#[utoipa::path(delete, path = "/api/v1/pairs/{id}", tag = "pairs", operation_id = "delete_pair", params(("id" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$"), DeleteConfirm),
    responses(
        SessionWrite,
        (status = 204, description = "Deleted"),
        (status = 400, description = "Missing or wrong confirmation, or a malformed id", body = ErrorBody),
        (status = 404, body = ErrorBody),
    ))]
pub(crate) async fn delete(
    State(s): State<WebState>,
    auth: Auth<Operator>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<DeleteConfirm>,
) -> ApiResult<StatusCode> {
    let id = pair_id(&id)?;
    if q.confirm.as_deref() != Some(id) {
        return Err(ApiError::bad_request(format!(
            "deleting removes the pair and all its buffered messages for good; confirm with ?confirm={id}"
        )));
    }
    let pending = s.engine.snapshot(id).map(|p| p.pending + p.in_flight);
    s.engine.delete(id).await?;
    let detail = pending.map(|n| format!("{n} undelivered message(s) removed"));
    s.store.audit(&auth.audit("pair.delete", Some(id), detail), now_ms())?;
    Ok(StatusCode::NO_CONTENT)
}

/// Starts (plays) a pair.
#[utoipa::path(post, path = "/api/v1/pairs/{id}/start", tag = "pairs", params(("id" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")),
    responses(SessionWrite, Malformed, (status = 200, body = PairDto), (status = 404, body = ErrorBody)))]
pub(crate) async fn start(
    State(s): State<WebState>,
    auth: Auth<Operator>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<axum::Json<PairDto>> {
    let id = pair_id(&id)?;
    s.engine.start_pair(id).await?;
    s.store.audit(&auth.audit("pair.start", Some(id), None), now_ms())?;
    Ok(axum::Json(pair_dto(&s, id)?))
}

/// Stops (pauses) a pair; its buffered messages are kept.
#[utoipa::path(post, path = "/api/v1/pairs/{id}/stop", tag = "pairs", params(("id" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")),
    responses(SessionWrite, Malformed, (status = 200, body = PairDto), (status = 404, body = ErrorBody)))]
pub(crate) async fn stop(
    State(s): State<WebState>,
    auth: Auth<Operator>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<axum::Json<PairDto>> {
    let id = pair_id(&id)?;
    s.engine.stop_pair(id).await?;
    s.store.audit(&auth.audit("pair.stop", Some(id), None), now_ms())?;
    Ok(axum::Json(pair_dto(&s, id)?))
}

/// Which side's messages.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SideQuery {
    /// `source` (as received) or `destination` (as delivered). Default `source`.
    #[param(pattern = "^(source|destination)$")]
    side: Option<String>,
}

/// The most recent messages of one side, newest first (the Live View).
#[utoipa::path(get, path = "/api/v1/pairs/{id}/live", tag = "pairs", params(("id" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$"), SideQuery),
    responses(Session, Malformed, (status = 200, body = Vec<FeedEntryDto>), (status = 404, body = ErrorBody)))]
pub(crate) async fn live(
    State(s): State<WebState>,
    _auth: Auth<Viewer>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<SideQuery>,
) -> ApiResult<axum::Json<Vec<FeedEntryDto>>> {
    let id = pair_id(&id)?;
    let side = match q.side.as_deref() {
        None | Some("source") => iobp_engine::Side::Source,
        Some("destination") => iobp_engine::Side::Destination,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "side must be `source` or `destination`, not `{other}`"
            )));
        }
    };
    let recent = s
        .engine
        .recent(id, side)
        .ok_or_else(|| ApiError::not_found(format!("no channel pair with id `{id}`")))?;
    Ok(axum::Json(recent.iter().map(FeedEntryDto::from).collect()))
}

/// Frames and messages that were rejected (oversize, malformed, undeliverable), oldest first.
#[utoipa::path(get, path = "/api/v1/pairs/{id}/rejections", tag = "pairs", params(("id" = String, Path, pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")),
    responses(Session, Malformed, (status = 200, body = Vec<RejectionDto>), (status = 404, body = ErrorBody)))]
pub(crate) async fn rejections(
    State(s): State<WebState>,
    _auth: Auth<Viewer>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<axum::Json<Vec<RejectionDto>>> {
    let id = pair_id(&id)?;
    let rejections = s
        .engine
        .rejections(id)
        .ok_or_else(|| ApiError::not_found(format!("no channel pair with id `{id}`")))?;
    Ok(axum::Json(rejections.iter().map(RejectionDto::from).collect()))
}
