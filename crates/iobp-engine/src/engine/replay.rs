//! Replay: a pair's retained messages, selected by sequence range or time range (and
//! optionally a search), stored again as new messages — in their original order, after
//! everything already buffered — for the same pair's destination or into another pair.
//!
//! **Contract.** A replayed copy is a new message of the target pair: it is stored durably
//! before it counts (received, Live View, shown as "replay of <pair>#<seq>"), then delivered
//! like any other. The originals are untouched. What the selection asks for but retention has
//! removed is reported ([`Retention`]), never guessed. A replay takes at most [`MAX_REPLAY`]
//! messages; a larger selection is refused before anything is stored. If the target's buffer
//! fills up mid-replay, the replay stops there and says how far it got — the copies stored so
//! far stay (they are durable and counted), in order, and the rest can be replayed from the
//! reported sequence number.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use super::browse::{MessageMatch, seq_at_time};
use super::{Engine, EngineError, blocking, read};
use crate::stats::Side;
use crate::trace::record_copies;

/// Most messages one replay takes.
pub const MAX_REPLAY: u64 = 100_000;
/// Messages a preview shows.
pub const REPLAY_PREVIEW: usize = 5;
/// Payload bytes per append batch of a replay.
const BATCH_BYTES: usize = 1 << 20;

/// Which messages a replay takes: every retained message in the range (sequence numbers,
/// both ends included, or store times, `until` excluded) that matches. Without a start the
/// range begins at the oldest retained message, without an end it runs to the newest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplaySelection {
    /// The first sequence number.
    pub from_seq: Option<u64>,
    /// The last sequence number.
    pub to_seq: Option<u64>,
    /// Stored at or after this time (µs since the Unix epoch).
    pub since_us: Option<u64>,
    /// Stored before this time (µs since the Unix epoch).
    pub until_us: Option<u64>,
    /// Only messages whose payload matches.
    pub matching: Option<MessageMatch>,
}

/// What part of a selection retention has removed already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// The oldest message still retained.
    pub oldest_seq: u64,
    /// When it was stored (µs), if any message is retained.
    pub oldest_us: Option<u64>,
    /// Messages the selection's range asked for that are gone (sequence numbers before
    /// `oldest_seq`; for a time range, everything removed is counted as possibly in it).
    pub removed: u64,
}

/// What a replay would take.
#[derive(Debug, Clone)]
pub struct ReplayPlan {
    /// Messages selected.
    pub count: u64,
    /// The first and last selected sequence numbers.
    pub seqs: Option<(u64, u64)>,
    /// The first few selected, payload start only.
    pub first: Vec<super::BufferedMessage>,
    /// What the selection asked for that is no longer retained (`None`: nothing).
    pub not_retained: Option<Retention>,
}

/// What a replay did.
#[derive(Debug, Clone)]
pub struct ReplayOutcome {
    /// What was selected.
    pub plan: ReplayPlan,
    /// The pair the copies went into.
    pub into: String,
    /// Copies stored (durable, counted).
    pub replayed: u64,
    /// The copies' first and last sequence numbers in the target pair.
    pub new_seqs: Option<(u64, u64)>,
    /// The replay stopped early (the target's buffer is full): why, and the first original
    /// sequence number not replayed.
    pub stopped: Option<(String, u64)>,
}

/// The selection's sequence range `[start, end)` and what retention removed of it.
fn range_of(log: &iobp_log::Log, sel: &ReplaySelection) -> (u64, u64, Option<Retention>) {
    let st = log.stats();
    let (first, next) = (st.first_seq, st.next_seq);
    let start = match (sel.from_seq, sel.since_us) {
        (Some(f), _) => f,
        (None, Some(t)) => seq_at_time(log, first, next, t),
        (None, None) => first,
    };
    let end = match (sel.to_seq, sel.until_us) {
        (Some(t), _) => t.saturating_add(1).min(next),
        (None, Some(t)) => seq_at_time(log, first, next, t),
        (None, None) => next,
    };
    let oldest_us = log.get(first).ok().flatten().map(|r| r.timestamp_us);
    // Removed messages the range asked for: by sequence number exactly; by time, every
    // removed message stored after `since` may have been in it (their times are gone).
    let removed = match (sel.from_seq, sel.since_us) {
        (Some(f), _) => first.saturating_sub(f).min(end.saturating_sub(f)),
        (None, Some(t)) if first > 0 && oldest_us.is_some_and(|o| t < o) => first,
        (None, None) if first > 0 => first,
        _ => 0,
    };
    let not_retained = (removed > 0).then_some(Retention { oldest_seq: first, oldest_us, removed });
    (start.max(first), end, not_retained)
}

/// Calls `each` for every selected message in order, until it returns `false`; the scan
/// is bounded by the range. Returns the number selected.
fn scan(
    log: &iobp_log::Log,
    sel: &ReplaySelection,
    start: u64,
    end: u64,
    mut each: impl FnMut(&iobp_log::RecordRef<'_>) -> bool,
) -> iobp_log::Result<u64> {
    let mut from = start;
    let mut count = 0;
    while from < end {
        let batch = log.read_range(from, 4096, BATCH_BYTES)?;
        if batch.is_empty() {
            break;
        }
        for r in batch.iter() {
            if r.seq >= end {
                return Ok(count);
            }
            from = r.seq + 1;
            if sel.until_us.is_some_and(|u| r.timestamp_us >= u)
                || sel.since_us.is_some_and(|s| r.timestamp_us < s)
                || sel.matching.as_ref().is_some_and(|m| !m.matches(r.payload))
            {
                continue;
            }
            count += 1;
            if !each(&r) {
                return Ok(count);
            }
        }
    }
    Ok(count)
}

fn plan(log: &iobp_log::Log, sel: &ReplaySelection) -> iobp_log::Result<ReplayPlan> {
    let (start, end, not_retained) = range_of(log, sel);
    let mut first = Vec::new();
    let mut seqs: Option<(u64, u64)> = None;
    let count = scan(log, sel, start, end, |r| {
        seqs = Some((seqs.map_or(r.seq, |s| s.0), r.seq));
        if first.len() < REPLAY_PREVIEW {
            first.push(super::BufferedMessage {
                seq: r.seq,
                timestamp_us: r.timestamp_us,
                state: super::MessageState::from(log.state_of(r.seq)),
                origin: r.origin,
                length: r.payload.len(),
                payload: r.payload[..r.payload.len().min(256)].to_vec(),
            });
        }
        true
    })?;
    Ok(ReplayPlan { count, seqs, first, not_retained })
}

impl Engine {
    /// What replaying `sel` of pair `id` would take: the count, the first few messages, and
    /// what is no longer retained. Changes nothing.
    pub async fn replay_plan(
        &self,
        id: &str,
        sel: ReplaySelection,
    ) -> Result<ReplayPlan, EngineError> {
        let log = self.log_of(id)?;
        blocking(move || plan(&log, &sel))
            .await
            .map_err(|source| EngineError::Buffer { id: id.to_string(), source })
    }

    /// Replays `sel` of pair `id` into pair `into` (the same pair when `None`): each selected
    /// message is stored again as a new message, in order, after everything already buffered
    /// (see the module documentation).
    pub async fn replay(
        &self,
        id: &str,
        sel: ReplaySelection,
        into: Option<&str>,
    ) -> Result<ReplayOutcome, EngineError> {
        let log = self.log_of(id)?;
        let into = into.unwrap_or(id).to_string();
        let (target, counters, feed, traces) = {
            let pairs = read(&self.inner.pairs);
            let e = pairs.get(&into).ok_or_else(|| EngineError::NotFound(into.clone()))?;
            let from = pairs.get(id).ok_or_else(|| EngineError::NotFound(id.to_string()))?;
            (e.log.clone(), e.stats.clone(), e.feed.clone(), (from.trace.clone(), e.trace.clone()))
        };
        let plan = self.replay_plan(id, sel.clone()).await?;
        if plan.count > MAX_REPLAY {
            return Err(EngineError::ReplayTooLarge { count: plan.count, max: MAX_REPLAY });
        }
        let mut outcome = ReplayOutcome { plan, into, replayed: 0, new_seqs: None, stopped: None };
        let Some((first_seq, last_seq)) = outcome.plan.seqs else { return Ok(outcome) };
        let origin_name: Arc<str> = Arc::from(id);
        let mut next = first_seq;
        // Batches of up to 1 MiB, read off the async workers, each stored and durable before
        // the next is read: memory stays bounded and order is kept.
        while next <= last_seq {
            let (l2, s2) = (log.clone(), sel.clone());
            let from = next;
            let batch = blocking(move || {
                let mut out: Vec<(u64, Vec<u8>)> = Vec::new();
                let mut bytes = 0;
                scan(&l2, &s2, from, last_seq + 1, |r| {
                    if bytes > 0 && bytes + r.payload.len() > BATCH_BYTES {
                        return false;
                    }
                    bytes += r.payload.len();
                    out.push((r.seq, r.payload.to_vec()));
                    true
                })?;
                Ok::<_, iobp_log::Error>(out)
            })
            .await
            .map_err(|source| EngineError::Buffer { id: id.to_string(), source })?;
            let records = batch;
            let Some(&(last_in_batch, _)) = records.last() else { break };
            let payloads: Vec<&[u8]> = records.iter().map(|(_, p)| p.as_slice()).collect();
            let committed = match target.append_queued(&payloads).await {
                Ok(commit) => commit.await,
                Err(e) => Err(e),
            };
            match committed {
                Ok(seqs) => {
                    let bytes: u64 = payloads.iter().map(|p| p.len() as u64).sum();
                    counters.received.fetch_add(payloads.len() as u64, Relaxed);
                    counters.received_bytes.fetch_add(bytes, Relaxed);
                    outcome.replayed += payloads.len() as u64;
                    outcome.new_seqs =
                        Some((outcome.new_seqs.map_or(*seqs.start(), |s| s.0), *seqs.end()));
                    let copies = records.iter().map(|(orig, _)| *orig).zip(seqs.clone());
                    let (from_trace, into_trace) = (traces.0.clone(), traces.1.clone());
                    let (from_id, into_id) = (id.to_string(), outcome.into.clone());
                    let pairs: Vec<(u64, u64)> = copies.collect();
                    // Waiting for room in the trace queue is blocking.
                    let _ = tokio::task::spawn_blocking(move || {
                        record_copies(
                            (&from_trace, &from_id),
                            (&into_trace, &into_id),
                            pairs,
                            "replay",
                        );
                    })
                    .await;
                    // The Live View shows the last few of each batch, as for any source.
                    let shown = records.len().saturating_sub(8);
                    for ((orig, payload), new) in records.iter().zip(seqs.clone()).skip(shown) {
                        let peer: Arc<str> = format!("replay of {origin_name}#{orig}").into();
                        feed.record(
                            Side::Source,
                            Some(&peer),
                            std::iter::once((Some(new), payload.as_slice())),
                        );
                    }
                    next = last_in_batch + 1;
                }
                Err(iobp_log::Error::Full { .. }) => {
                    let why = format!("the buffer of `{}` is full", outcome.into);
                    outcome.stopped = Some((why, records[0].0));
                    return Ok(outcome);
                }
                Err(source) => {
                    return Err(EngineError::Buffer { id: outcome.into.clone(), source });
                }
            }
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use iobp_log::{Batch, Log, LogOptions};

    use super::{ReplaySelection, plan};
    use crate::engine::MessageMatch;

    /// A log of 200 records of which retention removed the oldest segments.
    fn trimmed_log(dir: &std::path::Path) -> Log {
        let opts = LogOptions { segment_bytes: 4096, ..LogOptions::default() };
        let log = Log::open(dir, opts).expect("open");
        for i in 0..200u32 {
            iobp_log::block_on(log.append(format!("message {i:04} {}", "x".repeat(40)).as_bytes()))
                .expect("append");
        }
        let mut b = Batch::default();
        loop {
            log.read_batch_into(&mut b, 1000, 1 << 20).expect("read");
            let Some(last) = b.last_seq() else { break };
            log.ack_through(last).expect("ack");
        }
        log.checkpoint().expect("checkpoint");
        log.set_retention(Duration::ZERO);
        log.enforce_retention(SystemTime::now() + Duration::from_secs(60)).expect("retention");
        log
    }

    #[test]
    fn a_selection_reports_what_retention_removed_and_takes_the_rest_in_order() {
        let dir = tempfile::tempdir().expect("tmp");
        let log = trimmed_log(dir.path());
        let first = log.stats().first_seq;
        assert!(first > 1, "retention removed the oldest segments (first {first})");
        let sel =
            ReplaySelection { from_seq: Some(1), to_seq: Some(first + 9), ..Default::default() };
        let p = plan(&log, &sel).expect("plan");
        assert_eq!(p.count, 10, "the retained part of the range");
        assert_eq!(p.seqs, Some((first, first + 9)));
        let gone = p.not_retained.expect("reported");
        assert_eq!((gone.oldest_seq, gone.removed), (first, first - 1));
        assert_eq!(p.first.len(), 5);
        assert!(p.first.windows(2).all(|w| w[0].seq + 1 == w[1].seq), "in order");
        // A range wholly retained reports nothing removed; a search narrows it.
        let sel = ReplaySelection {
            from_seq: Some(first),
            matching: Some(MessageMatch::Contains(b"message 019".to_vec())),
            ..Default::default()
        };
        let p = plan(&log, &sel).expect("plan");
        assert!(p.not_retained.is_none());
        assert_eq!(p.count, 10, "message 0190 … 0199");
    }

    /// A time range across segment files and a reopen of the log (a restart): exactly the
    /// messages stored in it, in order.
    #[test]
    fn a_time_range_across_segments_and_a_restart_takes_exactly_its_messages() {
        let dir = tempfile::tempdir().expect("tmp");
        let opts = || LogOptions { segment_bytes: 4096, ..LogOptions::default() };
        let mut marks = Vec::new();
        {
            let log = Log::open(dir.path(), opts()).expect("open");
            for i in 0..300u32 {
                if i % 100 == 0 {
                    std::thread::sleep(Duration::from_millis(5));
                    marks.push(crate::engine::browse_now_us());
                    std::thread::sleep(Duration::from_millis(5));
                }
                iobp_log::block_on(log.append(format!("m{i:04} {}", "y".repeat(60)).as_bytes()))
                    .expect("append");
            }
        }
        // Reopened, as after a restart: messages 100 … 199 were stored between marks 1 and 2.
        let log = Log::open(dir.path(), opts()).expect("reopen");
        assert!(log.stats().next_seq > 200);
        let sel = ReplaySelection {
            since_us: Some(marks[1]),
            until_us: Some(marks[2]),
            ..Default::default()
        };
        let p = plan(&log, &sel).expect("plan");
        assert_eq!(p.count, 100);
        assert!(p.not_retained.is_none());
        let texts: Vec<String> =
            p.first.iter().map(|m| String::from_utf8_lossy(&m.payload[..5]).into_owned()).collect();
        assert_eq!(texts, ["m0100", "m0101", "m0102", "m0103", "m0104"]);
    }
}
