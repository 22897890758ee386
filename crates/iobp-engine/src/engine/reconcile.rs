//! A pair's accounting: what this process counted, added up against what the buffer did.
//!
//! The counters ([`PairStats`]) live as long as the pair's entry in this process (they start
//! at 0 when the instance starts or the pair is created), while the buffer persists. So the
//! counters are reconciled against the buffer's movement *since they started*: a baseline
//! of the buffer is taken when the pair's entry is made, right after its buffer opened. When
//! the engine heals a failed buffer ([`iobp_log::Log::reopen`]) the old buffer's movement is
//! carried over and a new baseline is taken from the reopened one: the two handles count
//! separately (damage counters, Done marks a reopen did not keep), so only their deltas add.
//!
//! The identities (each difference must be 0; see [`Reconciliation`]):
//! - **stored**: messages counted as received = records made durable since the start;
//! - **done**: records marked Done since the start = delivered + parked + undeliverable +
//!   lost to damage;
//! - **buffer**: records ever stored = removed by retention + Done still retained + pending +
//!   in flight (retention removes only Done records);
//! - **pair**: received + backlog at start + returned by heals = delivered + parked +
//!   undeliverable + lost + pending + in flight.
//!
//! Refused messages (at the source, buffer full) were never accepted: the sender kept them,
//! so they are shown beside the sums, never inside.
//!
//! Counters move just after the buffer's state changes (a commit resolving, a Done mark), so
//! a reading under traffic can be off for a moment. A discrepancy is therefore only taken
//! from a *settled* reading: one the pair held unchanged for [`SETTLE`]; a moving pair
//! reports the last settled value.

use std::sync::Mutex;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use iobp_log::{Log, LogStats};

use super::{Engine, EngineError, read};
use crate::stats::PairStats;

/// How long a pair's readings must stay unchanged before their differences count.
pub const SETTLE: Duration = Duration::from_millis(500);

/// A pair's accounting at one moment (see the module documentation for the identities).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reconciliation {
    /// Messages counted as received (accepted: durably stored) since the counters started.
    pub received: u64,
    /// Messages delivered and confirmed since then.
    pub delivered: u64,
    /// Messages parked by the dead-letter policy since then.
    pub parked: u64,
    /// Messages this destination could not carry (marked Done without delivery) since then.
    pub undeliverable: u64,
    /// Records lost to buffer damage (skipped, marked Done) since then.
    pub lost: u64,
    /// Waiting for delivery now.
    pub pending: u64,
    /// Being delivered now.
    pub in_flight: u64,
    /// Messages already buffered (not Done) when the counters started: the backlog this
    /// process took over.
    pub backlog_at_start: u64,
    /// Records that healing a failed buffer returned from Done to pending (Done marks the
    /// reopened buffer did not keep): delivered, and counted, again.
    pub returned_by_heal: i64,
    /// Refused at the source (buffer full) since then: never accepted — the sender kept them —
    /// so beside the sums, not in them.
    pub refused: u64,
    /// Parked now (whatever this process or an earlier one parked, less re-sent and
    /// discarded ones).
    pub parked_now: u64,
    /// Records the buffer made durable since the counters started.
    pub stored: u64,
    /// Records the buffer marked Done since the counters started.
    pub done: u64,
    /// Records the buffer ever stored (its last durable sequence number).
    pub buffer_total: u64,
    /// Records retention removed (all of them Done).
    pub removed_by_retention: u64,
    /// Done records still in the buffer.
    pub done_retained: u64,
    /// `received - stored`.
    pub stored_difference: i64,
    /// `done - (delivered + parked + undeliverable + lost)`.
    pub done_difference: i64,
    /// `buffer_total - (removed_by_retention + done_retained + pending + in_flight)`.
    pub buffer_difference: i64,
    /// `(received + backlog_at_start + returned_by_heal) - (delivered + parked +
    /// undeliverable + lost + pending + in_flight)`.
    pub pair_difference: i64,
    /// Whether the figures above come from a settled reading (unchanged for [`SETTLE`]).
    pub settled: bool,
    /// The sum of the absolute differences of the last settled reading (0 before there was
    /// one): what `/metrics` shows and what must stay 0.
    pub discrepancy: u64,
}

/// What the buffer had done when a baseline was taken.
#[derive(Debug, Clone, Copy, Default)]
struct Mark {
    durable_seq: u64,
    done: u64,
    lost: u64,
    open: u64,
}

impl Mark {
    fn of(ls: &LogStats) -> Mark {
        Mark {
            durable_seq: ls.durable_seq,
            done: done_total(ls),
            lost: ls.lost_records,
            open: ls.pending + ls.in_flight,
        }
    }
}

/// Records Done since the buffer began: what retention removed (Done only) and what is
/// retained Done.
fn done_total(ls: &LogStats) -> u64 {
    ls.first_seq.saturating_sub(1) + ls.done
}

/// The buffer's movement under handles that were replaced (heals).
#[derive(Debug, Clone, Copy, Default)]
struct Carry {
    stored: u64,
    done: u64,
    lost: u64,
    returned: i64,
}

/// Everything the evaluation compares between two readings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reading {
    counters: [u64; 5],
    buffer: [u64; 8],
}

/// One pair's baseline and the state of its evaluation; kept in the engine's entry for the
/// pair, as long as its counters.
#[derive(Debug)]
pub(crate) struct Books {
    base: Mark,
    backlog_at_start: u64,
    carry: Carry,
    /// The last reading and since when it has not changed.
    still: Option<(Instant, Reading)>,
    last_settled: u64,
}

impl Books {
    /// The baseline of a pair whose counters start now, on `log` as it is.
    pub(crate) fn new(log: &Log) -> Books {
        let base = Mark::of(&log.stats());
        Books {
            base,
            backlog_at_start: base.open,
            carry: Carry::default(),
            still: None,
            last_settled: 0,
        }
    }

    /// The engine replaced the pair's failed buffer handle (`before`, read once its sides
    /// stopped) with a reopened one (`after`): the old one's movement is carried over and the
    /// new one's state is the baseline from now on.
    pub(crate) fn reopened(&mut self, before: &LogStats, after: &LogStats) {
        let b = Mark::of(before);
        self.carry.stored += b.durable_seq.saturating_sub(self.base.durable_seq);
        self.carry.done += b.done.saturating_sub(self.base.done);
        self.carry.lost += b.lost.saturating_sub(self.base.lost);
        let a = Mark::of(after);
        self.carry.returned += signed(a.open) - signed(b.open);
        self.base = a;
        self.still = None;
    }

    /// Reads the pair now and updates whether it is settled.
    pub(crate) fn evaluate(
        &mut self,
        stats: &PairStats,
        log: &Log,
        now: Instant,
    ) -> Reconciliation {
        // Counters on both sides of the buffer's reading: if they moved meanwhile, the reading
        // differs from the previous one and cannot count as settled.
        let before = counters(stats);
        let ls = log.stats();
        let after = counters(stats);
        let reading = Reading {
            counters: after,
            buffer: [
                ls.first_seq,
                ls.durable_seq,
                ls.done_seq,
                ls.done,
                ls.pending,
                ls.in_flight,
                ls.lost_records,
                ls.next_seq,
            ],
        };
        let settled = before == after
            && match self.still {
                Some((since, r)) if r == reading => now.duration_since(since) >= SETTLE,
                _ => {
                    self.still = Some((now, reading));
                    false
                }
            };
        let mut r = self.figures(stats, &ls);
        if settled {
            self.last_settled = [r.stored_difference, r.done_difference, r.buffer_difference]
                .into_iter()
                .chain([r.pair_difference])
                .map(i64::unsigned_abs)
                .sum();
        }
        r.settled = settled;
        r.discrepancy = self.last_settled;
        r
    }

    fn figures(&self, stats: &PairStats, ls: &LogStats) -> Reconciliation {
        let now = Mark::of(ls);
        let stored = self.carry.stored + now.durable_seq.saturating_sub(self.base.durable_seq);
        let done = self.carry.done + now.done.saturating_sub(self.base.done);
        let lost = self.carry.lost + now.lost.saturating_sub(self.base.lost);
        let received = stats.received.load(Relaxed);
        let delivered = stats.sent.load(Relaxed);
        let parked = stats.parked_total.load(Relaxed);
        let undeliverable = stats.undeliverable.load(Relaxed);
        let removed_by_retention = ls.first_seq.saturating_sub(1);
        let outcomes = delivered + parked + undeliverable + lost;
        Reconciliation {
            received,
            delivered,
            parked,
            undeliverable,
            lost,
            pending: ls.pending,
            in_flight: ls.in_flight,
            backlog_at_start: self.backlog_at_start,
            returned_by_heal: self.carry.returned,
            refused: stats.refused.load(Relaxed),
            parked_now: stats.parked.load(Relaxed),
            stored,
            done,
            buffer_total: ls.durable_seq,
            removed_by_retention,
            done_retained: ls.done,
            stored_difference: signed(received) - signed(stored),
            done_difference: signed(done) - signed(outcomes),
            buffer_difference: signed(ls.durable_seq)
                - signed(removed_by_retention + ls.done + ls.pending + ls.in_flight),
            pair_difference: signed(received) + signed(self.backlog_at_start) + self.carry.returned
                - signed(outcomes + ls.pending + ls.in_flight),
            settled: false,
            discrepancy: 0,
        }
    }
}

fn counters(s: &PairStats) -> [u64; 5] {
    [
        s.received.load(Relaxed),
        s.sent.load(Relaxed),
        s.parked_total.load(Relaxed),
        s.undeliverable.load(Relaxed),
        s.refused.load(Relaxed),
    ]
}

fn signed(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Engine {
    /// Pair `id`'s accounting now (see [`Reconciliation`]). `discrepancy` is that of the last
    /// settled reading, so a pair under traffic never raises a false alarm; once the pair is
    /// still for [`SETTLE`], a reading is settled and its differences count.
    pub fn reconciliation(&self, id: &str) -> Result<Reconciliation, EngineError> {
        let (books, stats, log) = {
            let pairs = read(&self.inner.pairs);
            let e = pairs.get(id).ok_or_else(|| EngineError::NotFound(id.to_string()))?;
            (e.books.clone(), e.stats.clone(), e.log.clone())
        };
        // Read outside the pairs' lock: the buffer's figures may take a read from disk. A heal
        // replacing the buffer meanwhile makes this one reading odd, never settled: the next
        // one differs from it.
        Ok(lock(&books).evaluate(&stats, &log, Instant::now()))
    }

    /// Every pair's accounting, in id order.
    pub fn reconciliations(&self) -> Vec<(String, Reconciliation)> {
        let ids: Vec<String> = read(&self.inner.pairs).keys().cloned().collect();
        ids.into_iter()
            .filter_map(|id| Some((id.clone(), self.reconciliation(&id).ok()?)))
            .collect()
    }
}

pub(crate) fn lock(b: &Mutex<Books>) -> std::sync::MutexGuard<'_, Books> {
    // A reading is computed and stored in one step; a panic elsewhere leaves valid books.
    b.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::Relaxed;
    use std::time::{Duration, Instant, SystemTime};

    use iobp_log::{Batch, Log, LogOptions, block_on};

    use super::{Books, SETTLE};
    use crate::stats::PairStats;

    fn deliver_all(log: &Log, stats: &PairStats) {
        let mut b = Batch::default();
        loop {
            log.read_batch_into(&mut b, 1000, 1 << 20).expect("read");
            let Some(last) = b.last_seq() else { return };
            log.ack_through(last).expect("ack");
            stats.sent.fetch_add(b.len() as u64, Relaxed);
        }
    }

    #[test]
    fn retention_removes_only_done_records_and_the_books_still_add_up() {
        let dir = tempfile::tempdir().expect("tmp");
        let opts = LogOptions { segment_bytes: 4096, ..LogOptions::default() };
        let log = Log::open(dir.path(), opts).expect("open");
        let stats = PairStats::default();
        let mut books = Books::new(&log);
        for i in 0..300u32 {
            block_on(log.append(format!("message {i:04} {}", "x".repeat(40)).as_bytes()))
                .expect("append");
            stats.received.fetch_add(1, Relaxed);
        }
        deliver_all(&log, &stats);
        log.checkpoint().expect("checkpoint");
        log.set_retention(Duration::ZERO);
        log.enforce_retention(SystemTime::now() + Duration::from_secs(60)).expect("retention");
        let t = Instant::now();
        books.evaluate(&stats, &log, t);
        let r = books.evaluate(&stats, &log, t + SETTLE);
        assert!(r.settled, "unchanged for SETTLE: {r:#?}");
        assert!(r.removed_by_retention > 0, "retention removed segments: {r:#?}");
        assert_eq!(r.removed_by_retention + r.done_retained, 300, "{r:#?}");
        assert_eq!((r.received, r.delivered, r.stored, r.done), (300, 300, 300, 300));
        assert_eq!(r.discrepancy, 0, "{r:#?}");
    }

    #[test]
    fn a_discrepancy_counts_only_once_settled_and_stays_until_a_settled_reading_clears_it() {
        let dir = tempfile::tempdir().expect("tmp");
        let log = Log::open(dir.path(), LogOptions::default()).expect("open");
        let stats = PairStats::default();
        let mut books = Books::new(&log);
        // Stored and not (yet) counted: under traffic this is a moment between a commit and
        // its count; if it stays, a message is unaccounted for.
        block_on(log.append(b"one")).expect("append");
        let t = Instant::now();
        let r = books.evaluate(&stats, &log, t);
        assert_eq!((r.stored_difference, r.settled, r.discrepancy), (-1, false, 0), "{r:#?}");
        let r = books.evaluate(&stats, &log, t + SETTLE / 2);
        assert_eq!((r.settled, r.discrepancy), (false, 0), "not still for long enough");
        let r = books.evaluate(&stats, &log, t + SETTLE);
        assert_eq!((r.settled, r.discrepancy), (true, 2), "stored and pair identities: {r:#?}");
        // Moving again: the last settled discrepancy is what is reported.
        stats.received.fetch_add(1, Relaxed);
        let r = books.evaluate(&stats, &log, t + SETTLE * 2);
        assert_eq!((r.stored_difference, r.settled, r.discrepancy), (0, false, 2), "{r:#?}");
        let r = books.evaluate(&stats, &log, t + SETTLE * 3);
        assert_eq!((r.settled, r.discrepancy), (true, 0), "{r:#?}");
    }
}
