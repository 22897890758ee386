//! Byte sequences in JSON: a string (`"\r\n"`, `"\u0002"`) or an array of numbers
//! (`[2]`, `[28, 13]`) for bytes a JSON string cannot hold (>= 0x80).

use serde::{Deserialize, Serialize};

/// Bytes given as a JSON string or an array of numbers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ByteString(pub Vec<u8>);

impl ByteString {
    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl From<&[u8]> for ByteString {
    fn from(b: &[u8]) -> Self {
        ByteString(b.to_vec())
    }
}

impl Serialize for ByteString {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // A string round-trips exactly only when every byte is ASCII (JSON encodes
        // code points, not bytes).
        if self.0.is_ascii() {
            s.serialize_str(std::str::from_utf8(&self.0).unwrap_or_default())
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for ByteString {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Text(String),
            Bytes(Vec<u8>),
        }
        match Repr::deserialize(d) {
            Ok(Repr::Text(s)) => Ok(ByteString(s.into_bytes())),
            Ok(Repr::Bytes(b)) => Ok(ByteString(b)),
            Err(_) => Err(serde::de::Error::custom(
                "expected a string or an array of byte values (0-255)",
            )),
        }
    }
}
