//! The Live View feed: the most recent messages of each side, bounded, plus a broadcast for
//! subscribers (the portals' live stream).
//!
//! At low rates every message appears. At high rates each batch contributes only its last few
//! messages: no person reads a million messages a second, and recording them all would cost
//! the throughput the buffer exists for. Memory is bounded: [`FEED_LEN`] entries per side with
//! at most [`PREVIEW_BYTES`] of payload each.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use tokio::sync::broadcast;

use crate::stats::{Side, lock};

/// Entries kept per side.
pub const FEED_LEN: usize = 64;
/// Payload bytes kept per entry.
pub const PREVIEW_BYTES: usize = 256;
/// Messages recorded per batch.
const PER_BATCH: usize = 8;

/// One message as the Live View shows it.
#[derive(Debug, Clone)]
pub struct FeedEntry {
    /// When it was received (source) or delivered (destination).
    pub at: SystemTime,
    /// Which side.
    pub side: Side,
    /// Its sequence number in the buffer, when known.
    pub seq: Option<u64>,
    /// Full payload length.
    pub len: usize,
    /// The first bytes of the payload.
    pub preview: Bytes,
    /// The peer it came from or went to.
    pub peer: Option<Arc<str>>,
    /// What the message is at a glance, for protocols the feed knows (an ASTM E1394
    /// message: its record types and sample id).
    pub summary: Option<Arc<str>>,
}

/// The feed of one pair.
#[derive(Debug)]
pub struct LiveFeed {
    source: Mutex<VecDeque<FeedEntry>>,
    destination: Mutex<VecDeque<FeedEntry>>,
    tx: broadcast::Sender<FeedEntry>,
}

impl Default for LiveFeed {
    fn default() -> Self {
        LiveFeed {
            source: Mutex::new(VecDeque::with_capacity(FEED_LEN)),
            destination: Mutex::new(VecDeque::with_capacity(FEED_LEN)),
            tx: broadcast::channel(256).0,
        }
    }
}

impl LiveFeed {
    /// Records (the tail of) a batch of messages. `items` yields `(seq, payload)`.
    pub fn record<'a>(
        &self,
        side: Side,
        peer: Option<&Arc<str>>,
        items: impl ExactSizeIterator<Item = (Option<u64>, &'a [u8])>,
    ) {
        let skip = items.len().saturating_sub(PER_BATCH);
        let at = SystemTime::now();
        let mut q = lock(self.queue(side));
        for (seq, payload) in items.skip(skip) {
            let entry = FeedEntry {
                at,
                side,
                seq,
                len: payload.len(),
                preview: Bytes::copy_from_slice(&payload[..payload.len().min(PREVIEW_BYTES)]),
                peer: peer.cloned(),
                summary: iobp_codec::astm::summary(payload).map(Arc::from),
            };
            if self.tx.receiver_count() > 0 {
                let _ = self.tx.send(entry.clone());
            }
            if q.len() == FEED_LEN {
                q.pop_front();
            }
            q.push_back(entry);
        }
    }

    fn queue(&self, side: Side) -> &Mutex<VecDeque<FeedEntry>> {
        match side {
            Side::Source => &self.source,
            Side::Destination => &self.destination,
        }
    }

    /// The recent messages of a side, newest first.
    pub fn recent(&self, side: Side) -> Vec<FeedEntry> {
        lock(self.queue(side)).iter().rev().cloned().collect()
    }

    /// Subscribes to messages as they are recorded. A slow subscriber misses messages
    /// (`RecvError::Lagged`) rather than holding memory.
    pub fn subscribe(&self) -> broadcast::Receiver<FeedEntry> {
        self.tx.subscribe()
    }
}
