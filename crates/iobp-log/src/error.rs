//! The log's typed errors.
//!
//! Variants separate *environment* problems ([`Error::Io`], [`Error::Failed`]), *data*
//! problems ([`Error::Corrupt`]), *policy* outcomes the caller turns into backpressure
//! ([`Error::Full`], [`Error::Backlogged`], [`Error::TooLarge`]) and *usage* errors.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// The log's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a log stopped accepting writes. Cheap to clone: every waiter gets a copy.
#[derive(Debug, Clone)]
pub struct FailCause {
    /// The operation that failed (`"fdatasync"`, `"write"`, …).
    pub op: &'static str,
    /// The file or directory involved.
    pub path: PathBuf,
    /// The OS error kind.
    pub kind: io::ErrorKind,
    /// The OS error message.
    pub message: String,
}

impl std::fmt::Display for FailCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} on {} failed: {}", self.op, self.path.display(), self.message)
    }
}

/// A stretch of damaged data found while reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    /// The segment file.
    pub segment: PathBuf,
    /// Byte offset of the damage in that file.
    pub offset: u64,
    /// First sequence number that could not be read.
    pub first_lost_seq: u64,
    /// How many records were lost (skipped).
    pub lost: u64,
    /// What was wrong.
    pub reason: String,
}

impl std::fmt::Display for Corruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} at offset {} in {}: {} record(s) from seq {} lost",
            self.reason,
            self.offset,
            self.segment.display(),
            self.lost,
            self.first_lost_seq
        )
    }
}

/// Errors returned by the log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation failed outside the write path (opening, recovery, reading, retention).
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A write or sync failed earlier; the log accepts nothing more and must be reopened, which
    /// runs recovery. Records not yet confirmed durable when it failed were never accepted.
    #[error("log failed and must be reopened: {0}")]
    Failed(FailCause),
    /// Damaged records were found and skipped; the log stays usable and the next read continues
    /// after them. Counted in [`crate::LogStats::lost_records`].
    #[error("corrupt data: {0}")]
    Corrupt(Corruption),
    /// Storing the record would exceed a storage limit even after releasing Done segments.
    #[error("storage full: {needed} bytes needed, {used} of {limit} bytes used ({scope})")]
    Full {
        /// Which limit: `"log"` (per-log limit) or `"global"` (`max_storage_mb`).
        scope: &'static str,
        /// Bytes the append needed.
        needed: u64,
        /// Bytes in use under that limit.
        used: u64,
        /// The limit.
        limit: u64,
    },
    /// The in-memory queue of records waiting for the writer is full; wait for
    /// [`crate::Log::ready`] and retry.
    #[error("append queue is full; wait until the writer catches up")]
    Backlogged,
    /// A single record is larger than the configured maximum.
    #[error("record of {len} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// Payload length.
        len: usize,
        /// The maximum.
        max: u32,
    },
    /// The log was closed.
    #[error("log is closed")]
    Closed,
    /// Another process (or another handle in this process) has the log directory open.
    #[error("log directory {0} is in use by another process")]
    Locked(PathBuf),
    /// The requested record is not (or no longer) in the log.
    #[error("sequence number {0} is not retained in this log")]
    NotRetained(u64),
    /// A cursor operation named a record that is not in the required state.
    #[error("invalid delivery operation: {0}")]
    InvalidCursor(String),
    /// A tagged append's producer sequence numbers are not increasing from 1 up.
    #[error("invalid producer sequence: {0}")]
    InvalidTag(String),
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io { op, path: path.into(), source }
    }
}

/// Shared, clonable failure record.
pub(crate) type SharedFail = Arc<FailCause>;
