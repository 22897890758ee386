//! The HTTP part of a relay connection (see the crate docs, *Connection*): the paths, the
//! headers and the JSON shapes both ends use. The engine's relay client builds its requests
//! from these and the web layer serves them; a test in the web layer checks that the
//! OpenAPI document and its answers match, so neither side hard-codes the other's URLs.

use serde::{Deserialize, Serialize};

/// `POST` here with a [`LoginRequest`] for a [`Token`].
pub const SESSION_PATH: &str = "/api/v1/relay/session";

/// The channel path as the OpenAPI document writes it.
pub const CHANNEL_PATH_TEMPLATE: &str = "/api/v1/relay/channels/{channel_id}/{mode}";

/// Which way records flow on a relay connection, seen from the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The caller sends records (a destination with a `url`).
    Push,
    /// The caller receives records (a source with a `url`).
    Pull,
}

impl Direction {
    /// `push` or `pull`: the last segment of the channel path.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Push => "push",
            Direction::Pull => "pull",
        }
    }

    /// The direction named by a path segment.
    pub fn parse(segment: &str) -> Option<Direction> {
        match segment {
            "push" => Some(Direction::Push),
            "pull" => Some(Direction::Pull),
            _ => None,
        }
    }
}

/// `GET` here (upgraded, with a bearer token) to relay one channel in one direction. The
/// channel id is a pair id (`[A-Za-z0-9._-]`), so it needs no escaping.
pub fn channel_path(channel_id: &str, direction: Direction) -> String {
    format!("/api/v1/relay/channels/{channel_id}/{}", direction.as_str())
}

/// The `Authorization` header value that presents `token`.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The token of an `Authorization` header value, if it presents one.
pub fn token_of(authorization: &str) -> Option<&str> {
    authorization.strip_prefix("Bearer ").filter(|t| !t.is_empty())
}

/// The body of a relay login.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginRequest {
    /// A user whose role allows relaying.
    pub username: String,
    /// Its password (checked once; the token is used afterwards).
    pub password: String,
}

/// The answer to a relay login.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Token {
    /// Presented as [`bearer`] when opening relay connections.
    pub token: String,
    /// The token lapses after this long without a relay connection (each extends it).
    pub expires_in_s: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_channel_path_fills_the_template() {
        for d in [Direction::Push, Direction::Pull] {
            let by_template = CHANNEL_PATH_TEMPLATE
                .replace("{channel_id}", "plant-7.in")
                .replace("{mode}", d.as_str());
            assert_eq!(channel_path("plant-7.in", d), by_template);
            assert_eq!(Direction::parse(d.as_str()), Some(d));
        }
        assert_eq!(Direction::parse("both"), None);
    }

    #[test]
    fn a_bearer_header_round_trips_and_nothing_else_passes() {
        assert_eq!(token_of(&bearer("abc")), Some("abc"));
        assert_eq!(token_of("Bearer "), None);
        assert_eq!(token_of("Basic abc"), None);
    }
}
