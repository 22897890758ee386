//! The error responses that many routes share, for their OpenAPI descriptions: every route
//! lists the ones its extractors can answer (`responses(Session, Malformed, ...)`), so the
//! document names every status code a client can get. A route's own description of a status
//! (listed after these) replaces the shared one.

use std::collections::BTreeMap;

use utoipa::IntoResponses;
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};

fn error(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build(),
        )
        .build()
        .into()
}

fn map(entries: &[(&str, &str)]) -> BTreeMap<String, RefOr<Response>> {
    entries
        .iter()
        .map(|(status, description)| ((*status).to_string(), error(description)))
        .collect()
}

const NOT_LOGGED_IN: &str = "Not logged in on this portal: no session cookie, or the session ended";

/// A read that needs a session (`Auth<_>` on GET): 401, 403.
pub(crate) enum Session {}

impl IntoResponses for Session {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        map(&[
            ("401", NOT_LOGGED_IN),
            (
                "403",
                "The user's role does not allow this, or the user must change the password first",
            ),
        ])
    }
}

/// A state change that needs a session (`Auth<_>` on anything but GET): 401, 403 (also for
/// the CSRF token and the origin).
pub(crate) enum SessionWrite {}

impl IntoResponses for SessionWrite {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        map(&[
            ("401", NOT_LOGGED_IN),
            (
                "403",
                "The user's role does not allow this, the user must change the password first, \
                 the X-CSRF-Token header is missing or wrong, or the request came from another \
                 origin",
            ),
        ])
    }
}

/// A route with path or query parameters or a body, which are parsed strictly: 400.
pub(crate) enum Malformed {}

impl IntoResponses for Malformed {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        map(&[(
            "400",
            "A path or query parameter or the body is malformed (the message says which)",
        )])
    }
}

/// A route with a request body: 413 past [`crate::MAX_BODY_BYTES`].
pub(crate) enum TooLarge {}

impl IntoResponses for TooLarge {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        map(&[("413", "The body is larger than 1 MiB")])
    }
}
