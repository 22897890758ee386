//! Idempotent producers: tagged appends are taken exactly once, whatever is resent, across
//! reopen, retention and simulated power cuts (where only synced data survives).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use iobp_log::sim::{SimFs, TornWrites};
use iobp_log::{Error, Log, LogOptions};

fn opts(fs: &SimFs) -> LogOptions {
    LogOptions {
        fs: Arc::new(fs.clone()),
        segment_bytes: 4096,
        checkpoint_interval: Duration::from_millis(5),
        group: super::group_for(fs),
        ..LogOptions::default()
    }
}

fn msg(producer: u64, pseq: u64) -> Vec<u8> {
    let mut p = format!("{producer}:{pseq}:").into_bytes();
    p.resize(p.len() + usize::try_from(pseq % 37).unwrap_or(0), b'.');
    p
}

fn batch(producer: u64, range: std::ops::RangeInclusive<u64>) -> Vec<(u64, Vec<u8>)> {
    range.map(|s| (s, msg(producer, s))).collect()
}

/// `(producer, pseq)` of every record in the log, in log order.
fn origins(log: &Log) -> Vec<(u64, u64)> {
    let all = log.read_range(1, usize::MAX, usize::MAX).expect("browse");
    all.iter()
        .filter_map(|r| {
            let (p, s) = r.origin?;
            assert_eq!(r.payload, msg(p, s).as_slice(), "payload of {p}:{s}");
            Some((p, s))
        })
        .collect()
}

#[test]
fn tagged_appends_skip_what_a_producer_already_sent() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = Log::open(dir.path(), LogOptions::default()).expect("open");
    assert_eq!(log.producer_position(7), 0);
    let a = log.try_append_tagged(7, &batch(7, 1..=5)).expect("append");
    assert_eq!(a.duplicates, 0);
    assert_eq!(a.commit.wait().expect("durable"), 1..=5);
    // A retry overlapping what is there: only 6..=8 are new.
    let a = log.try_append_tagged(7, &batch(7, 3..=8)).expect("append");
    assert_eq!(a.duplicates, 3);
    assert_eq!(a.commit.wait().expect("durable"), 6..=8);
    // Everything again: nothing appended; the commit covers the duplicates (durable already).
    let a = log.try_append_tagged(7, &batch(7, 1..=8)).expect("append");
    assert!(a.appended.is_none() && a.duplicates == 8);
    assert!(a.commit.is_durable());
    // Another producer, and untagged records, interleave freely.
    log.try_append(b"plain").expect("plain").wait().expect("durable");
    let a = log.try_append_tagged(9, &batch(9, 1..=2)).expect("append");
    a.commit.wait().expect("durable");
    // Gaps in a producer's numbers are fine (it may have skipped damaged records).
    log.try_append_tagged(7, &batch(7, 20..=20)).expect("gap").commit.wait().expect("d");
    assert_eq!(log.producer_position(7), 20);
    assert_eq!(log.producer_position(9), 2);
    let got = origins(&log);
    let want: Vec<(u64, u64)> = (1..=8).map(|s| (7, s)).chain([(9, 1), (9, 2), (7, 20)]).collect();
    assert_eq!(got, want);
    let plain = log.get(9).expect("read").expect("record 9");
    assert_eq!((plain.payload.as_slice(), plain.origin), (b"plain".as_slice(), None));
    // Numbers must increase within a call, from 1.
    for bad in [vec![(3, b"x".to_vec()), (3, b"y".to_vec())], vec![(0, b"z".to_vec())]] {
        assert!(matches!(log.try_append_tagged(7, &bad), Err(Error::InvalidTag(_))));
    }
    // Delivery sees payloads without tags, in order.
    let b = log.read_batch(100, 1 << 20).expect("read");
    assert_eq!(b.iter().next().map(|r| r.payload), Some(msg(7, 1).as_slice()));
    assert_eq!(b.len(), 12);
}

#[test]
fn the_producer_table_survives_reopen_and_the_deletion_of_old_segments() {
    let fs = SimFs::new();
    let log = Log::open("/l", opts(&fs)).expect("open");
    let id = log.id();
    log.try_append_tagged(1, &batch(1, 1..=100)).expect("a").commit.wait().expect("d");
    // Producer 2 fills many more segments; then everything is delivered and old segments go.
    for chunk in 0..40u64 {
        let b = batch(2, chunk * 50 + 1..=chunk * 50 + 50);
        log.try_append_tagged(2, &b).expect("b").commit.wait().expect("d");
    }
    loop {
        let b = log.read_batch(1000, 1 << 20).expect("read");
        let Some(last) = b.last_seq() else { break };
        log.ack_through(last).expect("ack");
    }
    log.checkpoint().expect("checkpoint");
    log.set_retention(Duration::ZERO);
    let r = log.enforce_retention(SystemTime::now() + Duration::from_secs(1)).expect("retention");
    assert!(r.segments > 10, "{r:?}");
    assert!(log.read_range(1, 1, 1 << 20).expect("browse").first_seq() > Some(100));
    log.close().expect("close");
    // Producer 1's records are gone from disk, but the table in the newest header keeps it.
    let log = Log::open("/l", opts(&fs)).expect("reopen");
    assert_eq!(log.id(), id, "a log keeps its identity");
    assert_eq!(log.producer_position(1), 100);
    assert_eq!(log.producer_position(2), 2000);
    let a = log.try_append_tagged(1, &batch(1, 1..=101)).expect("resend");
    assert_eq!(a.duplicates, 100, "only the new record is taken");
    a.commit.wait().expect("durable");
    drop(log);
    // A log made again in a fresh directory is a different log.
    let other = Log::open("/m", opts(&fs)).expect("open");
    assert_ne!(other.id(), id);
}

#[test]
fn the_producer_table_is_bounded() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = Log::open(dir.path(), LogOptions::default()).expect("open");
    let max = iobp_log::format::MAX_PRODUCERS as u64;
    for p in 1..=max + 1 {
        log.try_append_tagged(p, &[(1, b"x")]).expect("append");
    }
    assert_eq!(log.producer_count(), iobp_log::format::MAX_PRODUCERS);
    assert_eq!(log.producer_position(1), 0, "the longest-idle producer is forgotten");
    assert_eq!(log.producer_position(max + 1), 1);
}

/// A producer that resends part of what it sent (its acknowledgements got lost), resumes
/// from the log's durable position after every power cut, and checks that the log holds its
/// records exactly once, in order.
#[test]
fn exactly_once_across_power_cuts() {
    const PRODUCERS: u64 = 3;
    let mut fs = SimFs::new();
    let modes = [TornWrites::LoseAll, TornWrites::KeepPrefix, TornWrites::Garbage];
    let mut total_confirmed = 0u64;
    for round in 0..25u64 {
        let log = Log::open("/p", opts(&fs)).expect("open");
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for producer in 1..=PRODUCERS {
            let (log, stop) = (log.clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                // The power may already be gone when this thread gets to run.
                let Ok(position) = iobp_log::block_on(log.durable_producer_position(producer))
                else {
                    return 0;
                };
                let mut next = position + 1;
                let mut confirmed = 0u64;
                let mut k = round * 31 + producer;
                while !stop.load(Ordering::Relaxed) {
                    k = k.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    // Resend up to 3 records already sent, then up to 8 new ones.
                    let back = (k >> 33) % 4;
                    let from = next.saturating_sub(back).max(1);
                    let to = next + (k >> 40) % 8;
                    let a = match log.try_append_tagged(producer, &batch(producer, from..=to)) {
                        Ok(a) => a,
                        Err(Error::Backlogged) => continue,
                        Err(_) => break,
                    };
                    let appended = a.appended.map_or(0, |r| r.count() as u64);
                    match a.commit.wait() {
                        Ok(_) => confirmed += appended,
                        Err(_) => break, // the power went
                    }
                    next = to + 1;
                }
                confirmed
            }));
        }
        std::thread::sleep(Duration::from_millis(3 + (round * 7919) % 30));
        fs = fs.power_cut(modes[usize::try_from(round % 3).unwrap_or(0)], round + 1);
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            total_confirmed += t.join().expect("producer");
        }
        drop(log);

        let log = Log::open("/p", opts(&fs)).expect("reopen after power cut");
        let mut per: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for (p, s) in origins(&log) {
            per.entry(p).or_default().push(s);
        }
        for (p, seqs) in &per {
            let want: Vec<u64> = (1..=seqs.len() as u64).collect();
            assert_eq!(seqs, &want, "round {round}: producer {p} not exactly once and in order");
            assert_eq!(log.producer_position(*p), seqs.len() as u64, "round {round}");
        }
        log.close().expect("close");
    }
    assert!(total_confirmed > 300, "enough work was done: {total_confirmed}");
}

#[test]
fn a_duplicate_raced_in_by_another_session_is_confirmed_only_once_durable() {
    // Two sessions of one producer (a relay sender that reconnected): the second finds the
    // records already queued by the first, not yet synced. Its commit must not resolve before
    // they are durable; a power cut in between takes them, and the producer's durable position
    // says so — acknowledging the second session at once would have lost them.
    let fs = SimFs::new();
    let log = Log::open("/l", opts(&fs)).expect("open");
    fs.set_faults(iobp_log::sim::Faults {
        sync_delay: Some(Duration::from_millis(300)),
        ..iobp_log::sim::Faults::default()
    });
    let first = log.try_append_tagged(7, &batch(7, 1..=3)).expect("first session");
    let second = log.try_append_tagged(7, &batch(7, 1..=3)).expect("second session");
    assert_eq!((second.duplicates, second.appended.clone()), (3, None));
    assert!(!second.commit.is_durable(), "the duplicates are not on disk yet");
    let after = fs.power_cut(TornWrites::LoseAll, 1);
    assert!(second.commit.wait().is_err(), "never confirmed: the power went first");
    assert!(first.commit.wait().is_err());
    drop(log);
    let log = Log::open("/l", opts(&after)).expect("reopen");
    let pos = iobp_log::block_on(log.durable_producer_position(7)).expect("position");
    assert_eq!(pos, 0, "nothing of producer 7 survived");
}

#[test]
fn a_torn_write_with_a_surviving_later_page_is_cut_at_the_hole() {
    // Power cut during an unsynced round; the disk wrote a later page of it but not an
    // earlier one. Recovery must resume at the hole: a producer position past it would make
    // the sender skip records this log does not have.
    // (The simulation's generator takes `seed | 1`: distinct odd seeds.)
    for seed in (0..40).map(|k| 2 * k + 1) {
        let fs = SimFs::new();
        let log = Log::open("/l", opts(&fs)).expect("open");
        log.try_append_tagged(7, &batch(7, 1..=5)).expect("base").commit.wait().expect("durable");
        log.checkpoint().expect("checkpoint: records up to 5 are durable");
        fs.set_faults(iobp_log::sim::Faults {
            sync_delay: Some(Duration::from_millis(200)),
            ..iobp_log::sim::Faults::default()
        });
        let unsynced = log.try_append_tagged(7, &batch(7, 6..=40)).expect("unsynced round");
        // The writer has written the round and waits in its fdatasync.
        std::thread::sleep(Duration::from_millis(50));
        let after = fs.power_cut(TornWrites::Hole, seed);
        assert!(unsynced.commit.wait().is_err());
        drop(log);
        let log = Log::open("/l", opts(&after)).expect("reopen");
        assert!(log.open_report().corruption.is_empty(), "a torn write is not damage");
        let pos = iobp_log::block_on(log.durable_producer_position(7)).expect("position");
        let tags: Vec<u64> = origins(&log).iter().map(|(_, s)| *s).collect();
        assert_eq!(tags, (1..=pos).collect::<Vec<_>>(), "seed {seed}: contiguous up to {pos}");
        // The producer resumes after its position and the log holds everything once.
        let a = log.try_append_tagged(7, &batch(7, pos + 1..=45)).expect("resume");
        a.commit.wait().expect("durable");
        let tags: Vec<u64> = origins(&log).iter().map(|(_, s)| *s).collect();
        assert_eq!(tags, (1..=45).collect::<Vec<_>>(), "seed {seed}");
    }
}
