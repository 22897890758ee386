//! # iobp-log: the durable buffers of the channel pairs
//!
//! A crash-safe, group-committed, segmented FIFO log. Each channel pair of ioBufferPro owns
//! one [`Log`] in its own directory; the logs of an instance share one [`CommitGroup`] (one
//! commit thread, one flusher thread and one commit journal: see [`group`]). The crate knows nothing of networks, HTTP or the engine;
//! it depends on `std`, `crc32c`, `thiserror` and, on Unix, `rustix` (for `statvfs`).
//!
//! ## The contract
//!
//! - **Accepted means durable.** [`Log::try_append`] queues a record and returns a [`Commit`]
//!   future. The commit resolves `Ok` only after a completed `fdatasync` covers the record —
//!   and, if the record opened a new segment file, after the directory holding it was synced
//!   too. Callers acknowledge a message to its sender only then.
//! - **Adaptive group commit, shared across logs.** The commit thread of the log's
//!   [`CommitGroup`] writes everything queued since its last round with one write per log; a
//!   round of one log ends with one `fdatasync` of its segment, a round of several logs with
//!   one `fdatasync` of the commit journal that holds a copy of all their bytes ([`group`]
//!   describes the design, the journal format and its recovery). A log opened without a group
//!   has a writer thread of its own and syncs its segments itself. No timer: a round starts as soon as the
//!   previous one ends, so the batch size follows the disk's speed. [`Log::try_append_batch`]
//!   queues many records under one lock.
//! - **FIFO delivery, Pending → In-Flight → Done.** [`Log::read_batch`] hands out durable
//!   Pending records in sequence order and marks them In-Flight; the reader never sees a record
//!   that is not durable. [`Log::ack_through`] / [`Log::ack`] mark them Done;
//!   [`Log::requeue_from`] returns them to Pending, to be handed out again first.
//! - **At-least-once across crashes, bounded re-delivery.** The Done position is checkpointed
//!   every `checkpoint_interval` (100 ms) and at the latest every `checkpoint_records` (10,000)
//!   Done records, by the housekeeping thread of the [`StorageBudget`], never on the writer's
//!   data path: one slot of a preallocated two-slot file is overwritten in place and synced
//!   with one `fdatasync` (no rename, no directory sync, so no journal commit for the next
//!   data sync to wait for). After a crash, delivery resumes after the last checkpoint: at
//!   most about `checkpoint_records` messages are delivered again; none is ever skipped.
//! - **Retention.** Whole segments whose records are all Done (as checkpointed) are deleted
//!   once older than `retention` (default 24 h), or earlier when a storage limit needs the
//!   space. Pending and In-Flight records are never deleted. A [`StorageBudget`] shared by all
//!   logs enforces the global limit **and the file system's free space** (less a margin); a
//!   log may have its own. When Pending data fills the space, appends fail at once with
//!   [`Error::Full`], which callers turn into backpressure, and the housekeeper releases Done
//!   segments; appenders never do disk work beyond queueing.
//! - **A full disk is backpressure.** If a write or a file creation still meets `ENOSPC`
//!   (another program took the space), the writer undoes the round — nothing of it was synced
//!   or published — refuses appends as `Full`, and writes the same round again once there is
//!   room. Commits waiting for it resolve late, never wrongly.
//! - **Recovery.** Opening a log truncates a torn tail, sets damaged segments aside, and
//!   resumes. A record whose checksum fails is never delivered as data: it is skipped, counted,
//!   and reported once as [`Error::Corrupt`]; the log stays usable. No byte content of the
//!   directory makes `open` or a read panic.
//! - **Failure is final for an instance; the log heals by reopening.** A failed write (other
//!   than no space), `fdatasync` or directory sync puts the log into a failed state
//!   ([`Error::Failed`]); nothing is retried and assumed durable (after a failed `fdatasync`
//!   the kernel may have dropped the dirty pages while still showing them to readers).
//!   [`Log::reopen`] closes the instance — releasing its directory even while clones exist —
//!   truncates everything past the last position it knew durable, and runs recovery.
//! - **Sequence numbers never go backwards.** The checkpoint also carries a durable
//!   high-water mark; recovery never hands out a number at or below it, nor one found in a
//!   damaged newest segment. Damage after the high-water mark in the last segment is a torn
//!   write and is truncated; damage before it is reported and skipped.
//!
//! - **Idempotent producers.** [`Log::try_append_tagged`] takes records that carry their
//!   producer's own sequence number (another log's, when the relay forwards it) and skips
//!   those the producer already appended, so retries after lost acknowledgements are taken
//!   once. The tags live in the records and the producer table in every segment header; after
//!   any crash [`Log::durable_producer_position`] is exactly what survived, and a producer
//!   resuming after it gets every record in exactly once.
//!
//! ## On-disk format: segments version 2, checkpoint version 2
//!
//! A log directory holds:
//!
//! | file | content |
//! |---|---|
//! | `<first_seq:020>.seg` | a segment: a header, then records |
//! | `checkpoint` | the Done position and high-water mark, two slots |
//! | `checkpoint.tmp` | a checkpoint file being created (once per open at most); removed at open |
//! | `id` | the log's identity (see [`Log::id`]) |
//! | `id.tmp` | an identity being written; removed at open |
//! | `LOCK` | held with an exclusive OS lock while the log is open |
//! | `*.seg.corrupt` | a segment set aside by recovery; never read again |
//!
//! A commit group's journal lives in a directory of its own (the engine uses
//! `<data>/journal/`): files `<generation:020>.jnl`, format in [`group`]. Segments and
//! checkpoints are the same with or without a group, so a directory written before groups
//! existed opens unchanged.
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
//! **Checkpoint** (8192 bytes): two 48-byte slots at offsets 0 and 4096 (one page and sector
//! each), the rest zeros. A slot: magic `"IOBPCKP\0"`, version `u16` (`2`), reserved `u16`,
//! `generation` `u64`, `done_seq` `u64`, `high_water` `u64`, `written_us` `u64`, CRC-32C of
//! bytes 0..44. Generation `g` is written to slot `g % 2`; the valid slot with the higher
//! generation is current. A version 1 file (32 bytes: magic, version `1`, reserved, `done_seq`,
//! `written_us`, CRC-32C of bytes 0..28) is read and replaced by a version 2 file at open.
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
pub mod group;
mod housekeeper;
mod log;
mod ranges;
mod reader;
mod recovery;
mod retention;
pub mod retire;
pub mod scan;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
mod wait;
mod writer;

pub use crate::error::{Corruption, Error, FailCause, Result};
pub use crate::group::{CommitGroup, GroupOptions, GroupStats, ReplayReport};
pub use crate::log::{Log, LogOptions, LogStats, MessageState};
pub use crate::reader::{Batch, Record, RecordRef};
pub use crate::recovery::OpenReport;
pub use crate::retention::{RetentionReport, StorageBudget, WARNING_RATIO};
pub use crate::retire::{Retired, remove_retired, retire_closed};
pub use crate::wait::{Commit, Durable, Ready, block_on};
pub use crate::writer::TaggedAppend;

/// Name of the lock file in a log directory.
pub const LOCK_FILE: &str = "LOCK";
