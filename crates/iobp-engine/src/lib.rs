//! # iobp-engine: channel pairs at work
//!
//! The engine runs every channel pair: its source task receives messages, frames them and
//! stores each batch durably in the pair's own [`iobp_log::Log`]; its destination task reads
//! the buffer in FIFO order, frames each message with the destination's own framing and
//! delivers it, marking it Done only when delivery is confirmed.
//!
//! Contract:
//! - **Store, then acknowledge.** A source acknowledges a message (MLLP ACK, ACK byte) and
//!   counts it as received only after the buffer's commit for it resolved (fdatasync done).
//! - **FIFO, at-least-once.** Destinations deliver in sequence order; anything not confirmed
//!   when a connection fails returns to Pending and is delivered again, first. A duplicate is
//!   possible only for a message in flight at that moment (counted in `retries`).
//! - **Isolation.** Each pair has its own tasks and its own buffer (its own segments; all
//!   buffers share one commit thread); a stalled or failing pair never blocks another.
//! - **Never silent.** Oversize or malformed frames, undeliverable messages, refused
//!   datagrams and refused (NAK) messages are counted, logged with a hex preview, and kept for
//!   operators ([`Engine::rejections`]).
//! - **Bounded.** Read buffers, batches, in-flight commits per connection, the live feed and
//!   the rejection list all have fixed upper bounds.
//!
//! Connectors live in [`source`] and [`destination`] modules, one per transport; the engine
//! API ([`Engine`]) is what the portals, the REST API and the command line call.

#![warn(missing_docs)]

mod backoff;
mod connector;
mod destination;
mod engine;
mod feed;
mod mqtt;
mod nats;
mod net;
mod parked;
mod relay;
pub mod serial;
mod side;
mod source;
mod stats;
mod tls;
mod trace;
mod write_behind;

pub use crate::engine::{
    BufferedMessage, Engine, EngineError, EngineOptions, MAX_PAGE, MessageMatch, MessagePage,
    MessageQuery, MessageState, SEARCH_SCAN, StartReport, StorageFigures,
};
pub use crate::engine::{
    MAX_REPLAY, RECONCILIATION_SETTLE, REPLAY_PREVIEW, Reconciliation, ReplayOutcome, ReplayPlan,
    ReplaySelection, Retention,
};
pub use crate::feed::FeedEntry;
pub use crate::parked::{MAX_PARKED, ParkedMessage};
pub use crate::relay::{HandOverError, MAX_SESSIONS_PER_CHANNEL, RelayIo, RelayMode, RelayRefusal};
pub use crate::stats::{
    Color, FailoverState, LineErrors, PairSnapshot, Rejected, RelayLag, Side, SideSnapshot,
};
pub use crate::trace::{MAX_EVENTS as MAX_TRACE_EVENTS, MessageTrace, TraceEvent, TraceKind};

/// Every `fdatasync`/`fsync` (files and directories) this process has asked the operating
/// system for on behalf of the buffers, successful or not: the load the buffers put on the
/// disk, for `/metrics` and the benchmark. Buffers opened on a substituted file system
/// ([`EngineOptions::log_fs`], tests) are not counted.
pub fn disk_syncs_total() -> u64 {
    iobp_log::fs::StdFs::syncs_total()
}
