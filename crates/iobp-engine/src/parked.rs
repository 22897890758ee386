//! Parked (dead-letter) messages of a pair: the messages its destination refused
//! `dead_letter.after_rejections` times, set aside so that delivery goes on with the next.
//!
//! **On disk.** A log of its own per pair (`parked/<id>/`), append-only events, each durable
//! before it counts:
//! - `P` + the original sequence number (8 bytes, big endian) + the payload: a message parked;
//! - `R` + the parked record's sequence number (8 bytes): it was resolved (re-sent into the
//!   pair's buffer, or discarded by an operator).
//!
//! A message is parked while its `P` record has no `R` record. The log's own Done marks are
//! not used for this (they persist only as a contiguous prefix); once nothing is parked any
//! more, the whole log is marked Done so that retention removes it.
//!
//! **Order of the steps.** Parking appends `P` (durable) and only then marks the message Done
//! in the pair's buffer: a crash between leaves it in both places (delivered again, and
//! parked again after its refusals — never lost). Re-sending appends the payload to the
//! pair's buffer (durable) and only then appends `R`: a crash between re-sends it twice at
//! worst.

use std::collections::BTreeMap;

use iobp_log::{Batch, Log};

/// Most messages a pair keeps parked: beyond this a refused message is retried (held, strict
/// FIFO) and the operator is told, rather than the parked log growing without bound.
pub const MAX_PARKED: usize = 10_000;

const PARK: u8 = b'P';
const RESOLVE: u8 = b'R';

/// A parked message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedMessage {
    /// Its id among the pair's parked messages (the parked log's sequence number).
    pub id: u64,
    /// Its sequence number in the pair's buffer when it was parked.
    pub original_seq: u64,
    /// When it was parked (µs since the Unix epoch).
    pub parked_us: u64,
    /// The message.
    pub payload: Vec<u8>,
}

/// The `P` record of a message.
pub(crate) fn park_record(original_seq: u64, payload: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(9 + payload.len());
    r.push(PARK);
    r.extend_from_slice(&original_seq.to_be_bytes());
    r.extend_from_slice(payload);
    r
}

/// The `R` record of parked message `id`.
pub(crate) fn resolve_record(id: u64) -> Vec<u8> {
    let mut r = Vec::with_capacity(9);
    r.push(RESOLVE);
    r.extend_from_slice(&id.to_be_bytes());
    r
}

fn number(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?))
}

/// Every message still parked, oldest first (reads the whole parked log, which
/// [`MAX_PARKED`] keeps small).
pub(crate) fn list(log: &Log) -> iobp_log::Result<Vec<ParkedMessage>> {
    let st = log.stats();
    let mut open: BTreeMap<u64, ParkedMessage> = BTreeMap::new();
    let mut from = st.first_seq;
    while from < st.next_seq {
        let batch = log.read_range(from, 4096, 4 << 20)?;
        if batch.is_empty() {
            break;
        }
        for r in batch.iter() {
            from = r.seq + 1;
            match r.payload.split_first() {
                Some((&PARK, rest)) => {
                    if let Some(original_seq) = number(rest) {
                        open.insert(
                            r.seq,
                            ParkedMessage {
                                id: r.seq,
                                original_seq,
                                parked_us: r.timestamp_us,
                                payload: rest[8..].to_vec(),
                            },
                        );
                    }
                }
                Some((&RESOLVE, rest)) => {
                    if let Some(id) = number(rest) {
                        open.remove(&id);
                    }
                }
                // Not ours (damage is skipped by the reader): ignored.
                _ => {}
            }
        }
    }
    Ok(open.into_values().collect())
}

/// Nothing is parked any more: every record is marked Done, so retention removes them.
pub(crate) fn release_all(log: &Log) -> iobp_log::Result<()> {
    let mut b = Batch::default();
    loop {
        log.read_batch_into(&mut b, 4096, 4 << 20)?;
        let Some(last) = b.last_seq() else { return Ok(()) };
        log.ack_through(last)?;
    }
}

#[cfg(test)]
mod tests {
    use iobp_log::{LogOptions, block_on};

    use super::*;

    #[test]
    fn parked_messages_are_those_without_a_resolution_and_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("tmp");
        {
            let log = Log::open(dir.path(), LogOptions::default()).expect("open");
            let a = block_on(log.append(&park_record(7, b"poison one"))).expect("park");
            let b = block_on(log.append(&park_record(9, b"poison two"))).expect("park");
            block_on(log.append(&resolve_record(a))).expect("resolve");
            let l = list(&log).expect("list");
            assert_eq!(l.len(), 1);
            assert_eq!(
                (l[0].id, l[0].original_seq, l[0].payload.as_slice()),
                (b, 9, &b"poison two"[..])
            );
        }
        let log = Log::open(dir.path(), LogOptions::default()).expect("reopen");
        let l = list(&log).expect("list");
        assert_eq!(l.iter().map(|m| m.original_seq).collect::<Vec<_>>(), [9], "as after a restart");
        block_on(log.append(&resolve_record(l[0].id))).expect("resolve");
        assert!(list(&log).expect("list").is_empty());
        release_all(&log).expect("release");
        let st = log.stats();
        assert_eq!(st.done_seq + 1, st.next_seq, "everything Done: retention may remove it");
    }
}
