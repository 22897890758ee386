//! # iobp-log: the durable buffer of one channel pair
//!
//! A crash-safe, group-committed, segmented FIFO log. Each channel pair of ioBufferPro owns
//! one [`Log`] in its own directory. The crate knows nothing of networks, HTTP or the engine;
//! it depends on `std`, `crc32c` and `thiserror` only.
//!
//! ## The contract
//!
//! - **Accepted means durable.** [`Log::try_append`] queues a record and returns a [`Commit`]
//!   future. The commit resolves `Ok` only after a completed `fdatasync` covers the record —
//!   and, if the record opened a new segment file, after the directory holding it was synced
//!   too. Callers acknowledge a message to its sender only then.
//! - **Adaptive group commit.** One writer thread per log writes everything queued since its
//!   last round with one write and one `fdatasync`. No timer: a round starts as soon as the
//!   previous one ends, so the batch size follows the disk's speed. [`Log::try_append_batch`]
//!   queues many records under one lock.
//! - **FIFO delivery, Pending → In-Flight → Done.** [`Log::read_batch`] hands out durable
//!   Pending records in sequence order and marks them In-Flight; the reader never sees a record
//!   that is not durable. [`Log::ack_through`] / [`Log::ack`] mark them Done;
//!   [`Log::requeue_from`] returns them to Pending, to be handed out again first.
//! - **At-least-once across crashes.** The Done position is checkpointed crash-safely
//!   (temp file, fsync, rename, directory fsync) every `checkpoint_interval`. After a crash,
//!   delivery resumes after the last checkpoint: a message Done within that window may be
//!   delivered again; no accepted message is ever skipped.
//! - **Retention.** Whole segments whose records are all Done (as checkpointed) are deleted
//!   once older than `retention` (default 24 h), or earlier when a storage limit needs the
//!   space. Pending and In-Flight records are never deleted. A [`StorageBudget`] shared by all
//!   logs enforces the global limit; a log may have its own. When Pending data alone fills the
//!   space, appends fail with [`Error::Full`], which callers turn into backpressure.
//! - **Recovery.** Opening a log truncates a torn tail, sets damaged segments aside, and
//!   resumes. A record whose checksum fails is never delivered as data: it is skipped, counted,
//!   and reported once as [`Error::Corrupt`]; the log stays usable. No byte content of the
//!   directory makes `open` or a read panic.
//! - **Failure is final.** A failed write or `fdatasync` puts the log into a failed state
//!   ([`Error::Failed`]); nothing is retried and assumed durable (after a failed `fdatasync`
//!   the kernel may have dropped the dirty pages). Reopening runs recovery.
//!
//! - **Idempotent producers.** [`Log::try_append_tagged`] takes records that carry their
//!   producer's own sequence number (another log's, when the relay forwards it) and skips
//!   those the producer already appended, so retries after lost acknowledgements are taken
//!   once. The tags live in the records and the producer table in every segment header; after
//!   any crash [`Log::durable_producer_position`] is exactly what survived, and a producer
//!   resuming after it gets every record in exactly once.
//!
//! ## On-disk format: segments version 2, checkpoint version 1
//!
//! A log directory holds:
//!
//! | file | content |
//! |---|---|
//! | `<first_seq:020>.seg` | a segment: a header, then records |
//! | `checkpoint` | the Done position |
//! | `checkpoint.tmp` | a checkpoint being written; removed at open |
//! | `id` | the log's identity (see [`Log::id`]) |
//! | `id.tmp` | an identity being written; removed at open |
//! | `LOCK` | held with an exclusive OS lock while the log is open |
//! | `*.seg.corrupt` | a segment set aside by recovery; never read again |
//!
//! All integers are little-endian. All checksums are CRC-32C (Castagnoli polynomial
//! `0x1EDC6F41`, reflected `0x82F63B78`; check value `crc32c("123456789") = 0xE3069283`).
//!
//! **Segment header** (32 bytes plus 16 per producer, at offset 0):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `"IOBPSEG\0"` |
//! | 8 | 2 | format version, `2` (version `1` segments are read too: no producers) |
//! | 10 | 2 | `N`: producer entries (at most 4096; version 1: flags, `0`) |
//! | 12 | 8 | `first_seq`: sequence number of the first record (also the file name) |
//! | 20 | 8 | `created_us`: creation time, µs since the Unix epoch |
//! | 28 | 4 | CRC-32C of bytes 0..28 followed by the `N` entries |
//! | 32 | 16·N | entries: producer id `u64`, its last sequence number `u64`; ascending ids |
//!
//! The entries are the producer table as of every record before the segment.
//!
//! **Record** (24-byte header, then the data), records back to back after the header:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | `len`: data length in bits 0..31; bit 31 set: a tagged record |
//! | 4 | 4 | CRC-32C of bytes 0..4 followed by bytes 8..24+len (everything except itself) |
//! | 8 | 8 | `seq`: sequence number; consecutive, starting at 1, never reused |
//! | 16 | 8 | `timestamp_us`: append time, µs since the Unix epoch |
//! | 24 | len | data: the payload; for a tagged record, producer id `u64` and producer sequence number `u64`, then the payload |
//!
//! A record never spans segments. The records of a segment have consecutive sequence numbers
//! from `first_seq`; the next segment starts with the next one.
//!
//! **Checkpoint** (32 bytes): magic `"IOBPCKP\0"`, version `u16` (`1`), reserved `u16`,
//! `done_seq` `u64`, `written_us` `u64`, CRC-32C of bytes 0..28.
//!
//! **Identity** (20 bytes): magic `"IOBPLID\0"`, id `u64`, CRC-32C of bytes 0..16.
//!
//! The golden-bytes tests in `format.rs` pin every byte of this table.
//!
//! ## Example
//!
//! ```
//! # fn main() -> Result<(), iobp_log::Error> {
//! # let tmp = tempfile::tempdir().expect("tempdir");
//! use iobp_log::{Log, LogOptions};
//!
//! let log = Log::open(tmp.path().join("pair-1"), LogOptions::default())?;
//! let seqs = log.try_append_batch(&[b"first".as_slice(), b"second"])?.wait()?; // durable now
//! assert_eq!(seqs, 1..=2);
//!
//! let batch = log.read_batch(100, 1 << 20)?; // Pending -> In-Flight
//! let payloads: Vec<&[u8]> = batch.iter().map(|r| r.payload).collect();
//! assert_eq!(payloads, [b"first".as_slice(), b"second"]);
//! log.ack_through(2)?; // In-Flight -> Done
//! log.close()?; // flushes and writes a final checkpoint
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod error;
pub mod format;
pub mod fs;
mod log;
mod ranges;
mod reader;
mod recovery;
mod retention;
pub mod scan;
pub mod sim;
mod wait;
mod writer;

pub use crate::error::{Corruption, Error, FailCause, Result};
pub use crate::log::{Log, LogOptions, LogStats, MessageState};
pub use crate::reader::{Batch, Record, RecordRef};
pub use crate::recovery::OpenReport;
pub use crate::retention::{RetentionReport, StorageBudget, WARNING_RATIO};
pub use crate::wait::{Commit, Durable, Ready, block_on};
pub use crate::writer::TaggedAppend;

/// Name of the lock file in a log directory.
pub const LOCK_FILE: &str = "LOCK";
