//! # iobp-config: the configuration model
//!
//! The persisted, user-facing configuration of ioBufferPro — system [`Settings`] and
//! [`ChannelPairSpec`]s — as JSON-serialisable types, and their validation. No I/O: the
//! store persists these types, the engine runs them, the web layer edits them.
//!
//! Contract:
//! - Field names are the product documents' (`host`, `port`, `tls`, `baud_rate`, `parity`,
//!   `channel_id`, `auth`, …) and every example in the documents parses as written.
//! - Parsing is strict: an unknown field, a wrong type or a missing required field is an error
//!   that names the field's JSON path; so is every validation problem
//!   ([`ConfigError`] lists them all).
//! - Validation checks each pair alone ([`ChannelPairSpec::validate`]) and against the others
//!   ([`check_pair_among`], [`ConfigDocument::validate`]): unique ids, no two listeners on the
//!   same port (portals included), no serial port used twice.
//! - Checks that need the machine (certificate files exist, a port is free) belong to the
//!   engine, which reports them on the running pair.
//!
//! ```
//! let doc = iobp_config::parse_document(r#"{"channel_pairs": [{
//!     "id": "lab-1", "name": "Lab analyzer",
//!     "source": {"type": "tcp_server", "host": "127.0.0.1", "port": 5000, "framing": {"type": "line"}},
//!     "destination": {"type": "tcp_client", "host": "127.0.0.1", "port": 6000, "framing": {"type": "line"}}
//! }]}"#).expect("valid");
//! assert_eq!(doc.channel_pairs[0].source.type_name(), "tcp_server");
//!
//! let err = iobp_config::parse_document(r#"{"channel_pairs": [{"id": "x",
//!     "source": {"type": "udp", "host": "0.0.0.0", "port": 0},
//!     "destination": {"type": "udp", "host": "10.0.0.1", "port": 514}}]}"#).unwrap_err();
//! assert_eq!(err.problems[0].path, "channel_pairs[0].source.port");
//! ```

#![warn(missing_docs)]

mod bytes;
mod diff;
mod modbus;
mod secrets;
mod spec;
mod validate;

pub use crate::bytes::ByteString;
pub use crate::diff::{ApplyMode, ConfigDiff, FieldChange, PairChange};
pub use crate::modbus::*;
pub use crate::secrets::PASSWORD_MASK;
pub use crate::spec::*;
pub use crate::validate::{
    ConfigError, Problem, Side, check_id, check_pair_among, check_pairs_in_order, check_url,
    parse_mqtt_url,
};

use serde::de::DeserializeOwned;

/// Parses JSON into `T`, reporting the JSON path of the first problem.
fn parse<T: DeserializeOwned>(text: &str) -> Result<T, ConfigError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let outer = e.path().to_string();
        let (path, msg) = join_marked(&outer, &e.into_inner().to_string());
        ConfigError::single(path, msg)
    })?;
    de.end().map_err(|e| ConfigError::single("", e.to_string()))?;
    Ok(value)
}

/// Joins an outer path with the inner path an error message may carry (see `at_path`).
pub(crate) fn join_marked(outer: &str, msg: &str) -> (String, String) {
    let outer = if outer == "." { "" } else { outer };
    let mark = spec::PATH_MARK;
    if let Some(rest) = msg.strip_prefix(mark)
        && let Some((inner, text)) = rest.split_once(mark)
    {
        let path = match (outer.is_empty(), inner.is_empty()) {
            (true, _) => inner.to_string(),
            (_, true) => outer.to_string(),
            _ if inner.starts_with('[') => format!("{outer}{inner}"),
            _ => format!("{outer}.{inner}"),
        };
        return (path, text.to_string());
    }
    (outer.to_string(), msg.to_string())
}

/// Parses and validates a whole configuration document
/// (`{"settings": {...}, "channel_pairs": [...]}`), with default settings for the checks
/// that involve them.
pub fn parse_document(text: &str) -> Result<ConfigDocument, ConfigError> {
    let doc: ConfigDocument = parse(text)?;
    doc.validate(&Settings::default())?;
    Ok(doc)
}

/// Parses and validates one channel pair on its own.
pub fn parse_pair(text: &str) -> Result<ChannelPairSpec, ConfigError> {
    let pair: ChannelPairSpec = parse(text)?;
    pair.validate()?;
    Ok(pair)
}

/// Parses and validates settings.
pub fn parse_settings(text: &str) -> Result<Settings, ConfigError> {
    let s: Settings = parse(text)?;
    s.validate()?;
    Ok(s)
}

/// Parses one source or destination (schema only).
pub fn parse_endpoint(text: &str) -> Result<EndpointSpec, ConfigError> {
    parse(text)
}

/// Where the engine persists configuration changes it applies. Implemented by the store;
/// defined here so the engine and the store need not know each other.
pub trait ConfigRepository: Send + Sync + 'static {
    /// Creates or replaces a pair.
    fn save_pair(&self, spec: &ChannelPairSpec) -> Result<(), RepositoryError>;
    /// Removes a pair.
    fn delete_pair(&self, id: &str) -> Result<(), RepositoryError>;
}

/// A repository could not persist a change.
#[derive(Debug, Clone, thiserror::Error)]
#[error("could not save the configuration: {0}")]
pub struct RepositoryError(pub String);

/// A repository that keeps nothing (tests, and engines run without a store).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoRepository;

impl ConfigRepository for NoRepository {
    fn save_pair(&self, _: &ChannelPairSpec) -> Result<(), RepositoryError> {
        Ok(())
    }

    fn delete_pair(&self, _: &str) -> Result<(), RepositoryError> {
        Ok(())
    }
}
