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

    /// 422 with field problems, each naming its field (see [`plain_problem`]): the portals
    /// show them at the form field of that path.
    pub fn invalid(e: &iobp_config::ConfigError) -> Self {
        let plain = iobp_config::ConfigError {
            problems: e.problems.iter().map(|p| plain_problem(&p.path, &p.message)).collect(),
        };
        let problems = plain
            .problems
            .iter()
            .map(|p| ProblemDto { path: p.path.clone(), message: p.message.clone() })
            .collect();
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: ErrorBody { error: plain.to_string(), problems },
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
            E::NotFound(_) | E::MessageNotFound { .. } | E::ParkedNotFound { .. } => {
                ApiError::not_found(e.to_string())
            }
            E::AlreadyExists(_) | E::NotDelivered { .. } | E::BufferFull { .. } => {
                ApiError::conflict(e.to_string())
            }
            E::ReplayTooLarge { .. } => ApiError::bad_request(e.to_string()),
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

/// A configuration problem as a person reads it, at the field it is about. Validation
/// problems are worded so already and pass unchanged; a problem found while parsing the JSON
/// comes in serde's words, which name Rust types, and for a missing field the object that
/// lacks it. Those are reworded:
/// - ``missing field `port` `` at `destination` → at `destination.port`: `is required`;
/// - ``invalid value: integer `70000`, expected u16`` → `must be at most 65535` (below the
///   type's range: `must not be negative`);
/// - `invalid type: …, expected u16` (a string, a fraction) → `must be a whole number`.
fn plain_problem(path: &str, message: &str) -> iobp_config::Problem {
    let problem = |path: String, message: String| iobp_config::Problem { path, message };
    let original = message;
    // serde_json adds where in the text it was; the path says it better.
    let message = match message.rsplit_once(" at line ") {
        Some((m, at))
            if at.split_once(" column ").is_some_and(|(l, c)| is_number(l) && is_number(c)) =>
        {
            m
        }
        _ => message,
    };
    if let Some(field) = message.strip_prefix("missing field `").and_then(|r| r.strip_suffix('`')) {
        let at = if path.is_empty() { field.to_string() } else { format!("{path}.{field}") };
        return problem(at, "is required".into());
    }
    if let Some((what, ty)) = message.rsplit_once(", expected ")
        && let Some((min, max)) = integer_range(ty)
    {
        let value = what
            .strip_prefix("invalid value: integer `")
            .and_then(|r| r.strip_suffix('`'))
            .and_then(|n| n.parse::<i128>().ok());
        match value {
            Some(n) if n < min && min == 0 => {
                return problem(path.into(), "must not be negative".into());
            }
            Some(n) if n < min => return problem(path.into(), format!("must be at least {min}")),
            Some(_) => return problem(path.into(), format!("must be at most {max}")),
            None if what.starts_with("invalid type: ") => {
                return problem(path.into(), "must be a whole number".into());
            }
            None => {}
        }
    }
    problem(path.into(), original.into())
}

fn is_number(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// The range of a Rust integer type serde names (`u16`).
fn integer_range(ty: &str) -> Option<(i128, i128)> {
    Some(match ty {
        "u8" => (0, u8::MAX.into()),
        "u16" => (0, u16::MAX.into()),
        "u32" => (0, u32::MAX.into()),
        "u64" => (0, u64::MAX.into()),
        "i8" => (i8::MIN.into(), i8::MAX.into()),
        "i16" => (i16::MIN.into(), i16::MAX.into()),
        "i32" => (i32::MIN.into(), i32::MAX.into()),
        "i64" => (i64::MIN.into(), i64::MAX.into()),
        _ => return None,
    })
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

    #[test]
    fn parse_problems_are_reworded_to_name_the_field_and_what_it_takes() {
        let plain = |path: &str, message: &str| {
            let p = super::plain_problem(path, message);
            (p.path, p.message)
        };
        assert_eq!(
            plain("destination", "missing field `port`"),
            ("destination.port".into(), "is required".into())
        );
        assert_eq!(plain("", "missing field `source`"), ("source".into(), "is required".into()));
        assert_eq!(
            plain("source.port", "invalid value: integer `70000`, expected u16"),
            ("source.port".into(), "must be at most 65535".into())
        );
        assert_eq!(
            plain("destination", "missing field `port` at line 1 column 114"),
            ("destination.port".into(), "is required".into())
        );
        assert_eq!(
            plain("retry.max_ms", "invalid value: integer `-1`, expected u64"),
            ("retry.max_ms".into(), "must not be negative".into())
        );
        assert_eq!(
            plain("source.port", "invalid type: string \"x\", expected u16"),
            ("source.port".into(), "must be a whole number".into())
        );
        assert_eq!(
            plain("source.port", "invalid type: floating point `1.5`, expected u16"),
            ("source.port".into(), "must be a whole number".into())
        );
        // Validation problems, and parse problems of other kinds, pass unchanged.
        for (path, message) in [
            ("source.port", "must be between 1 and 65535"),
            ("source", "unknown variant `tcp`, expected one of `tcp_server`, `tcp_client`"),
            ("retry.jitter", "unknown field `jitter`, expected `initial_ms`"),
            ("", "expected value at line 1 column 2"),
        ] {
            assert_eq!(plain(path, message), (path.into(), message.into()));
        }
        let e = super::ApiError::invalid(&iobp_config::ConfigError {
            problems: vec![iobp_config::Problem {
                path: "destination".into(),
                message: "missing field `port`".into(),
            }],
        });
        assert_eq!(e.body.error, "invalid configuration: destination.port: is required");
    }
}
