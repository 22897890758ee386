//! The one error type of the REST API: a status code and a JSON body
//! `{"error": "...", "problems": [{"path": "...", "message": "..."}]}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// A field-level validation problem.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProblemDto {
    /// JSON path of the field (`source.port`).
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

/// Error body of every failed API call.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for a person.
    pub error: String,
    /// For validation errors: each problem with the field it concerns.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<ProblemDto>,
}

/// An API error.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
    retry_after: Option<u64>,
}

impl ApiError {
    /// An error with a status and a message.
    pub fn new(status: StatusCode, error: impl Into<String>) -> Self {
        ApiError {
            status,
            body: ErrorBody { error: error.into(), problems: Vec::new() },
            retry_after: None,
        }
    }

    /// Names the request field this error is about (`problems[0].path`), so a form can show
    /// the message at the field.
    #[must_use]
    pub fn at(mut self, path: &str) -> Self {
        let message = self.body.error.clone();
        self.body.problems = vec![ProblemDto { path: path.into(), message }];
        self
    }

    /// 400.
    pub fn bad_request(error: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error)
    }

    /// 401.
    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "not logged in")
    }

    /// 403.
    pub fn forbidden(error: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, error)
    }

    /// 404.
    pub fn not_found(error: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, error)
    }

    /// 409.
    pub fn conflict(error: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, error)
    }

    /// 429 for a login the throttle refused.
    pub fn login_refused(r: crate::throttle::Refusal) -> Self {
        match r {
            crate::throttle::Refusal::Wait(s) => Self::too_many(s),
            crate::throttle::Refusal::Busy => {
                let mut e = Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "other logins from this address are being checked; try again in a moment",
                );
                e.retry_after = Some(1);
                e
            }
        }
    }

    /// 429 with a Retry-After in seconds.
    pub fn too_many(retry_after: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many failed logins; try again in {retry_after} s"),
        );
        e.retry_after = Some(retry_after);
        e
    }

    /// 429 with a Retry-After in seconds, for a limit other than login throttling.
    pub fn too_many_requests(error: impl Into<String>, retry_after: u64) -> Self {
        let mut e = Self::new(StatusCode::TOO_MANY_REQUESTS, error);
        e.retry_after = Some(retry_after);
        e
    }

    /// 500, logging the cause with a reference; the body gives only the reference (a cause
    /// can name paths, queries or peers that are none of the client's business).
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        let mut b = [0u8; 4];
        let reference = match getrandom::fill(&mut b) {
            Ok(()) => format!("{:08x}", u32::from_le_bytes(b)),
            Err(_) => "-".into(),
        };
        tracing::error!("internal error {reference} in the API: {cause}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal error (reference {reference} in the server's log)"),
        )
    }

    /// 422 with field problems.
    pub fn invalid(e: &iobp_config::ConfigError) -> Self {
        let problems = e
            .problems
            .iter()
            .map(|p| ProblemDto { path: p.path.clone(), message: p.message.clone() })
            .collect();
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: ErrorBody { error: e.to_string(), problems },
            retry_after: None,
        }
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body)).into_response();
        if let Some(s) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        r
    }
}

impl From<iobp_engine::EngineError> for ApiError {
    fn from(e: iobp_engine::EngineError) -> Self {
        use iobp_engine::EngineError as E;
        match e {
            E::Invalid(c) => ApiError::invalid(&c),
            E::NotFound(_) | E::MessageNotFound { .. } => ApiError::not_found(e.to_string()),
            E::AlreadyExists(_) | E::NotDelivered { .. } | E::BufferFull { .. } => {
                ApiError::conflict(e.to_string())
            }
            E::ShuttingDown => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            other => ApiError::internal(other),
        }
    }
}

impl From<iobp_store::StoreError> for ApiError {
    fn from(e: iobp_store::StoreError) -> Self {
        use iobp_store::StoreError as E;
        match e {
            E::NoSuchUser(_) => ApiError::not_found(e.to_string()),
            E::UserExists(_) => ApiError::conflict(e.to_string()),
            other => ApiError::internal(other),
        }
    }
}

/// Result of an API handler.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    #[test]
    fn an_internal_error_tells_the_client_nothing_of_its_cause() {
        let e = super::ApiError::internal("cannot open /var/lib/iobufferpro/iobufferpro.db: EIO");
        assert_eq!(e.status(), axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_string(&e.body).expect("json");
        assert!(!body.contains("/var/lib") && !body.contains("EIO"), "{body}");
        assert!(body.contains("reference"), "{body}");
    }
}
