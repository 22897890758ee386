//! The REST API under `/api/v1`. Every handler is registered together with its OpenAPI
//! description (`utoipa-axum`), so the served document lists exactly the routes that exist.

mod dto;
mod events;
mod messages;
mod pairs;
mod reconciliation;
mod relay;
mod responses;
mod session;
mod settings;
mod spec_doc;
mod system;
mod users;

pub use dto::*;

use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::WebState;
use crate::error::ApiError;

// OpenAPI 3.2: the first version that can describe the events of a `text/event-stream`
// (`itemSchema`), which GET /api/v1/events answers.
#[derive(OpenApi)]
#[openapi(
    version = "3.2.0",
    components(schemas(crate::error::ErrorBody, events::StreamEvent, spec_doc::ChannelPairSpec)),
    info(
        title = "ioBufferPro REST API",
        description = "Everything the Operations Portal and the Management Dashboard do. \
            Log in with POST /api/v1/session; the session is a cookie (iobp_ops_session_<port> on the \
            Operations Portal, iobp_mgmt_session_<port> on the Management Dashboard, <port> being the \
            port in the Host header; without one, no suffix). Every \
            state-changing request needs the session's CSRF token in the X-CSRF-Token header. \
            Roles: admin ⊇ operator ⊇ viewer. Channel pair bodies use the configuration format \
            of the manual (`/docs/channel-pairs`: `{\"id\", \"name\", \"source\", \"destination\", ...}`).",
    ),
    tags(
        (name = "session", description = "Login, logout, password change"),
        (name = "pairs", description = "Channel pairs and their live status"),
        (name = "messages", description = "Buffered messages: browse, inspect, re-send"),
        (name = "system", description = "Settings, health, logs, audit trail"),
        (name = "users", description = "Users and roles (admin)"),
        (name = "relay", description = "The relay between ioBufferPro instances (relay role)"),
    )
)]
struct ApiDoc;

/// The API routes with their OpenAPI descriptions.
pub(crate) fn router() -> OpenApiRouter<WebState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(session::login, session::current, session::logout))
        .routes(routes!(session::change_password))
        .routes(routes!(pairs::list, pairs::create))
        .routes(routes!(pairs::get_one, pairs::update, pairs::delete))
        .routes(routes!(pairs::start))
        .routes(routes!(pairs::stop))
        .routes(routes!(pairs::live))
        .routes(routes!(pairs::rejections))
        .routes(routes!(reconciliation::reconciliation))
        .routes(routes!(messages::list))
        .routes(routes!(messages::get_one))
        .routes(routes!(messages::trace))
        .routes(routes!(messages::resend))
        .routes(routes!(messages::replay))
        .routes(routes!(messages::parked))
        .routes(routes!(messages::resend_parked))
        .routes(routes!(messages::discard_parked))
        .routes(routes!(events::events))
        .routes(routes!(settings::get_settings, settings::put_settings))
        .routes(routes!(users::list, users::create))
        .routes(routes!(users::update, users::delete))
        .routes(routes!(system::health))
        .routes(routes!(system::logs))
        .routes(routes!(system::audit))
        .routes(routes!(system::serial_ports))
        .routes(routes!(relay::login))
        .routes(routes!(relay::connect))
}

/// Query parameters; a malformed query is a JSON 400, not a plain-text rejection.
pub(crate) struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }
}

/// Path parameters, with JSON errors.
pub(crate) struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }
}

/// A JSON body parsed strictly, with the path of the first problem in the error.
pub(crate) struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let text = raw_body(req, state).await?;
        let mut de = serde_json::Deserializer::from_str(&text);
        let v = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let msg = e.into_inner().to_string();
            if path == "." {
                ApiError::bad_request(msg)
            } else {
                ApiError::bad_request(format!("{path}: {msg}"))
            }
        })?;
        de.end().map_err(|e| ApiError::bad_request(e.to_string()))?;
        Ok(ApiJson(v))
    }
}

/// The body as UTF-8 text (bounded by the router's body limit).
pub(crate) async fn raw_body<S: Send + Sync>(req: Request, state: &S) -> Result<String, ApiError> {
    String::from_request(req, state).await.map_err(|e| ApiError::new(e.status(), e.body_text()))
}

/// A pair id from the path, checked (so that nothing like `../` ever reaches the disk).
pub(crate) fn pair_id(id: &str) -> Result<&str, ApiError> {
    iobp_config::check_id(id)
        .map_err(|e| ApiError::bad_request(format!("invalid channel pair id: {e}")))?;
    Ok(id)
}
