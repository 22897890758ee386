//! Model-based test: the log against an in-memory model of what it must hold, across random
//! sequences of appends, deliveries, acknowledgements, requeues, checkpoints, retention
//! passes, clean reopens and power cuts (on the simulated file system, which keeps only what
//! was synced).
//!
//! After every step the model and the log must agree on every delivered record, on the
//! Pending/In-Flight/Done counts, and after a power cut on exactly where delivery resumes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use iobp_log::sim::{SimFs, TornWrites};
use iobp_log::{Commit, Log, LogOptions};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<Vec<u8>>),
    Read(usize),
    AckThrough(usize),
    AckOne(usize),
    Requeue(usize),
    Checkpoint,
    Retention,
    Reopen,
    PowerCut {
        torn: TornWrites,
        seed: u64,
    },
    /// Queue records without waiting for them, then cut the power at once.
    PowerCutDuringAppend {
        records: Vec<Vec<u8>>,
        torn: TornWrites,
        seed: u64,
    },
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..120)
}

fn torn() -> impl Strategy<Value = TornWrites> {
    prop_oneof![Just(TornWrites::LoseAll), Just(TornWrites::KeepPrefix), Just(TornWrites::Garbage)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec(payload(), 1..6).prop_map(Op::Append),
        5 => (1usize..8).prop_map(Op::Read),
        3 => any::<usize>().prop_map(Op::AckThrough),
        2 => any::<usize>().prop_map(Op::AckOne),
        2 => any::<usize>().prop_map(Op::Requeue),
        2 => Just(Op::Checkpoint),
        1 => Just(Op::Retention),
        1 => Just(Op::Reopen),
        1 => (torn(), any::<u64>()).prop_map(|(torn, seed)| Op::PowerCut { torn, seed }),
        1 => (prop::collection::vec(payload(), 1..20), torn(), any::<u64>())
            .prop_map(|(records, torn, seed)| Op::PowerCutDuringAppend { records, torn, seed }),
    ]
}

#[derive(Debug, Default)]
struct Model {
    /// Retained, durable records.
    records: BTreeMap<u64, Vec<u8>>,
    next_seq: u64,
    read_seq: u64,
    done_seq: u64,
    done_above: BTreeSet<u64>,
    checkpointed: u64,
}

impl Model {
    fn new() -> Self {
        Model { next_seq: 1, read_seq: 1, ..Model::default() }
    }

    fn in_flight(&self) -> Vec<u64> {
        (self.done_seq + 1..self.read_seq).filter(|s| !self.done_above.contains(s)).collect()
    }

    fn absorb(&mut self) {
        while self.done_above.remove(&(self.done_seq + 1)) {
            self.done_seq += 1;
        }
    }

    fn counts(&self) -> (u64, u64) {
        let pending = self
            .records
            .range(self.read_seq..)
            .filter(|(s, _)| !self.done_above.contains(s))
            .count();
        (pending as u64, self.in_flight().len() as u64)
    }

    /// After a restart: delivery resumes after the durable checkpoint.
    fn restart(&mut self) {
        self.done_seq = self.checkpointed;
        self.read_seq = self.done_seq + 1;
        self.done_above.clear();
    }
}

fn options(fs: &SimFs) -> LogOptions {
    LogOptions {
        fs: Arc::new(fs.clone()),
        segment_bytes: 400,
        // Only explicit checkpoints (and close) write one, so the model knows what is durable.
        checkpoint_interval: Duration::from_secs(3600),
        retention: Duration::from_secs(3600),
        group: super::group_for(fs),
        ..LogOptions::default()
    }
}

const DIR: &str = "/data/logs/pair";

// One match arm per operation keeps each model rule next to the call it checks.
#[allow(clippy::too_many_lines)]
fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut fs = SimFs::new();
    let mut log = Log::open(DIR, options(&fs)).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut m = Model::new();
    for op in ops {
        match op {
            Op::Append(ps) => {
                let seqs = log.try_append_batch(&ps).and_then(Commit::wait).expect("append");
                prop_assert_eq!(*seqs.start(), m.next_seq);
                for p in ps {
                    m.records.insert(m.next_seq, p);
                    m.next_seq += 1;
                }
            }
            Op::Read(max) => {
                let batch = log.read_batch(max, usize::MAX).expect("read");
                let expected: Vec<(u64, Vec<u8>)> = m
                    .records
                    .range(m.read_seq..)
                    .filter(|(s, _)| !m.done_above.contains(s))
                    .take(max)
                    .map(|(s, p)| (*s, p.clone()))
                    .collect();
                let got: Vec<(u64, Vec<u8>)> =
                    batch.iter().map(|r| (r.seq, r.payload.to_vec())).collect();
                prop_assert_eq!(&got, &expected);
                // A short batch means the reader also stepped over the individually Done
                // records after the last one it returned.
                if expected.len() < max {
                    m.read_seq = m.next_seq;
                } else if let Some((last, _)) = expected.last() {
                    m.read_seq = last + 1;
                }
            }
            Op::AckThrough(k) => {
                let inflight = m.in_flight();
                if inflight.is_empty() {
                    continue;
                }
                let seq = inflight[k % inflight.len()];
                log.ack_through(seq).expect("ack_through");
                m.done_seq = seq;
                m.done_above.retain(|&s| s > seq);
                m.absorb();
            }
            Op::AckOne(k) => {
                let inflight = m.in_flight();
                if inflight.is_empty() {
                    continue;
                }
                let seq = inflight[k % inflight.len()];
                log.ack(seq).expect("ack");
                m.done_above.insert(seq);
                m.absorb();
            }
            Op::Requeue(k) => {
                let inflight = m.in_flight();
                if inflight.is_empty() {
                    continue;
                }
                let seq = inflight[k % inflight.len()];
                log.requeue_from(seq).expect("requeue");
                m.read_seq = seq;
            }
            Op::Checkpoint => {
                log.checkpoint().expect("checkpoint");
                m.checkpointed = m.done_seq;
            }
            Op::Retention => {
                let later = SystemTime::now() + Duration::from_secs(7200);
                log.enforce_retention(later).expect("retention");
                let first = log.stats().first_seq;
                prop_assert!(
                    first <= m.checkpointed + 1,
                    "deleted {} > checkpoint {}",
                    first,
                    m.checkpointed
                );
                m.records.retain(|&s, _| s >= first);
            }
            Op::Reopen => {
                log.close().expect("close");
                m.checkpointed = m.done_seq;
                m.restart();
                log = Log::open(DIR, options(&fs)).expect("reopen");
            }
            Op::PowerCut { torn, seed } => {
                let after = fs.power_cut(torn, seed);
                drop(log);
                fs = after;
                m.restart();
                log = Log::open(DIR, options(&fs)).expect("reopen after power cut");
                prop_assert_eq!(log.open_report().resume_seq, m.checkpointed + 1);
            }
            Op::PowerCutDuringAppend { records, torn, seed } => {
                let commit = log.try_append_batch(&records).expect("queue");
                let after = fs.power_cut(torn, seed);
                let acked = commit.wait().is_ok();
                drop(log);
                fs = after;
                m.restart();
                log = Log::open(DIR, options(&fs)).expect("reopen after power cut");
                // Unconfirmed records may or may not survive, but only as a prefix, intact;
                // confirmed ones must.
                let next = log.stats().next_seq;
                prop_assert!(next >= m.next_seq && next <= m.next_seq + records.len() as u64);
                if acked {
                    prop_assert_eq!(next, m.next_seq + records.len() as u64);
                }
                for p in records.into_iter().take(usize::try_from(next - m.next_seq).unwrap_or(0)) {
                    m.records.insert(m.next_seq, p);
                    m.next_seq += 1;
                }
                let got: Vec<Vec<u8>> = log
                    .read_range(1, usize::MAX, usize::MAX)
                    .expect("browse")
                    .iter()
                    .map(|r| r.payload.to_vec())
                    .collect();
                let want: Vec<Vec<u8>> = m.records.values().cloned().collect();
                prop_assert_eq!(got, want);
            }
        }
        let s = log.stats();
        let (pending, in_flight) = m.counts();
        prop_assert_eq!(s.next_seq, m.next_seq);
        prop_assert_eq!(s.done_seq, m.done_seq);
        prop_assert_eq!((s.pending, s.in_flight), (pending, in_flight), "{:?}", s);
        prop_assert_eq!(s.lost_records, 0);
    }
    // Finally everything retained and not Done is delivered, in order, exactly once more.
    let rest: Vec<u64> = std::iter::from_fn(|| {
        let b = log.read_batch(1000, usize::MAX).expect("read");
        (!b.is_empty()).then(|| b.iter().map(|r| r.seq).collect::<Vec<_>>())
    })
    .flatten()
    .collect();
    let want: Vec<u64> = m
        .records
        .range(m.read_seq..)
        .map(|(s, _)| *s)
        .filter(|s| !m.done_above.contains(s))
        .collect();
    prop_assert_eq!(rest, want);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, .. ProptestConfig::default() })]

    #[test]
    fn log_matches_model(ops in prop::collection::vec(op(), 1..60)) {
        run(ops)?;
    }
}
