//! Commit groups: many logs sharing one commit thread and one journal sync.
//!
//! Power cuts on [`SimFs`] in the middle of shared commits, journal and segment sync faults,
//! a stuck log beside flowing ones, deletion while others write, and what idle logs cost.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use iobp_log::sim::{Faults, SimFs, TornWrites};
use iobp_log::{CommitGroup, Error, GroupOptions, GroupStats, Log, LogOptions, StorageBudget};

const JOURNAL: &str = "/data/journal";
const LOGS: &str = "/data/logs";

fn group_opts(fs: &SimFs) -> GroupOptions {
    GroupOptions {
        fs: Arc::new(fs.clone()),
        flush_interval: Duration::from_millis(20),
        journal_file_bytes: 64 * 1024,
        ..GroupOptions::default()
    }
}

fn log_opts(fs: &SimFs, group: &CommitGroup, budget: &StorageBudget) -> LogOptions {
    LogOptions {
        fs: Arc::new(fs.clone()),
        segment_bytes: 16 * 1024,
        checkpoint_interval: Duration::from_millis(5),
        group: Some(group.clone()),
        budget: Some(budget.clone()),
        ..LogOptions::default()
    }
}

fn log_dir(i: usize) -> PathBuf {
    PathBuf::from(LOGS).join(format!("pair-{i}"))
}

fn payload(log: usize, counter: u64) -> Vec<u8> {
    let mut p = format!("{log}/{counter}/").into_bytes();
    p.resize(p.len() + usize::try_from(counter % 37).unwrap_or(0), b'#');
    p
}

type Confirmed = Arc<Mutex<Vec<BTreeMap<u64, Vec<u8>>>>>;

/// Appends from one thread per log until stopped or the log fails; records what was confirmed.
fn producer(
    i: usize,
    log: Log,
    stop: Arc<AtomicBool>,
    confirmed: Confirmed,
    mut counter: u64,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let n = 1 + counter % 3;
            let batch: Vec<Vec<u8>> = (counter..counter + n).map(|c| payload(i, c)).collect();
            let commit = match log.try_append_batch(&batch) {
                Ok(c) => c,
                Err(Error::Backlogged | Error::Full { .. }) => {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
                Err(_) => break,
            };
            counter += n;
            match commit.wait() {
                Ok(seqs) => {
                    let mut m = confirmed.lock().expect("lock");
                    for (seq, p) in seqs.zip(batch) {
                        m[i].insert(seq, p);
                    }
                }
                Err(_) => break,
            }
            // Slow pairs: a few records at a time, like instruments.
            std::thread::sleep(Duration::from_micros(200 + (counter % 5) * 100));
        }
        counter
    })
}

/// Delivers and acknowledges (every log but the stuck ones) until stopped.
fn consumer(log: Log, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match log.read_batch(50, 1 << 16) {
                Ok(b) => match b.iter().last().map(|r| r.seq) {
                    Some(last) => {
                        if log.ack_through(last).is_err() {
                            break;
                        }
                    }
                    None => std::thread::sleep(Duration::from_millis(1)),
                },
                Err(Error::Corrupt(_)) => {}
                Err(_) => break,
            }
        }
    })
}

/// Every confirmed record of every log is there with its bytes, in sequence order.
fn verify(fs: &SimFs, logs: usize, confirmed: &Confirmed) {
    let budget = StorageBudget::default();
    let (group, _) =
        CommitGroup::open(JOURNAL, &[PathBuf::from(LOGS)], group_opts(fs)).expect("open group");
    let m = confirmed.lock().expect("lock");
    for i in 0..logs {
        let log = Log::open(log_dir(i), log_opts(fs, &group, &budget)).expect("open log");
        let mut found = BTreeMap::new();
        let mut from = 1;
        loop {
            let b = log.read_range(from, 10_000, 1 << 24).expect("read");
            let Some(last) = b.iter().last().map(|r| r.seq) else { break };
            for r in b.iter() {
                found.insert(r.seq, r.payload.to_vec());
            }
            from = last + 1;
        }
        for (seq, p) in &m[i] {
            assert_eq!(found.get(seq), Some(p), "log {i}: confirmed record {seq} lost or changed");
        }
        let counters: Vec<u64> = found
            .values()
            .filter_map(|p| std::str::from_utf8(p).ok()?.split('/').nth(1)?.parse().ok())
            .collect();
        assert!(counters.windows(2).all(|w| w[0] < w[1]), "log {i}: order broken");
        log.close().expect("close");
    }
}

fn add(total: &mut GroupStats, s: &GroupStats) {
    total.rounds += s.rounds;
    total.journal_rounds += s.journal_rounds;
    total.journaled_log_rounds += s.journaled_log_rounds;
    total.flush_syncs += s.flush_syncs;
    total.files_deleted += s.files_deleted;
    total.journal_failures += s.journal_failures;
}

#[test]
fn every_confirmed_record_of_every_log_survives_power_cuts_in_shared_commits() {
    const LOGS_N: usize = 8;
    let mut fs = SimFs::new();
    let confirmed: Confirmed = Arc::new(Mutex::new(vec![BTreeMap::new(); LOGS_N]));
    let mut counters = [0u64; LOGS_N];
    let mut total = GroupStats::default();
    let modes =
        [TornWrites::LoseAll, TornWrites::KeepPrefix, TornWrites::Garbage, TornWrites::Hole];
    for round in 0..16u64 {
        // A slow disk makes rounds gather several logs, like a real one under many pairs.
        fs.set_faults(Faults { sync_delay: Some(Duration::from_micros(500)), ..Faults::default() });
        let budget = StorageBudget::default();
        let (group, _) = CommitGroup::open(JOURNAL, &[PathBuf::from(LOGS)], group_opts(&fs))
            .expect("open group");
        let stop = Arc::new(AtomicBool::new(false));
        let mut producers = Vec::new();
        let mut consumers = Vec::new();
        for (i, c) in counters.iter().enumerate() {
            let log = Log::open(log_dir(i), log_opts(&fs, &group, &budget)).expect("open");
            producers.push(producer(i, log.clone(), stop.clone(), confirmed.clone(), *c));
            // Log 0 is stuck: its destination never confirms.
            if i != 0 {
                consumers.push(consumer(log, stop.clone()));
            }
        }
        std::thread::sleep(Duration::from_millis(30 + round * 7 % 50));
        let survivor =
            fs.power_cut(modes[usize::try_from(round).unwrap_or(0) % modes.len()], round);
        stop.store(true, Ordering::Relaxed);
        for (i, p) in producers.into_iter().enumerate() {
            counters[i] = p.join().expect("producer") + 100;
        }
        for c in consumers {
            c.join().expect("consumer");
        }
        add(&mut total, &group.stats());
        drop(group);
        fs = survivor;
        verify(&fs, LOGS_N, &confirmed);
    }
    let n: usize = confirmed.lock().expect("lock").iter().map(BTreeMap::len).sum();
    assert!(n > 1000, "too little traffic to mean anything: {n}");
    assert!(total.journal_rounds > 0, "no round was journaled: {total:?}");
    assert!(
        total.journaled_log_rounds > total.journal_rounds,
        "no journal sync carried several logs: {total:?}"
    );
    assert!(
        total.flush_syncs > 0 && total.files_deleted > 0,
        "the journal never turned over: {total:?}"
    );
}

#[test]
fn failing_syncs_fail_logs_that_heal_by_reopening_and_lose_nothing_confirmed() {
    const LOGS_N: usize = 6;
    let fs = SimFs::new();
    let confirmed: Confirmed = Arc::new(Mutex::new(vec![BTreeMap::new(); LOGS_N]));
    let budget = StorageBudget::default();
    let (group, _) =
        CommitGroup::open(JOURNAL, &[PathBuf::from(LOGS)], group_opts(&fs)).expect("open group");
    fs.set_faults(Faults { sync_delay: Some(Duration::from_micros(300)), ..Faults::default() });
    let mut logs: Vec<Log> = (0..LOGS_N)
        .map(|i| Log::open(log_dir(i), log_opts(&fs, &group, &budget)).expect("open"))
        .collect();
    let mut counters = [0u64; LOGS_N];
    for phase in 0..4u64 {
        let stop = Arc::new(AtomicBool::new(false));
        let producers: Vec<_> = logs
            .iter()
            .enumerate()
            .map(|(i, l)| producer(i, l.clone(), stop.clone(), confirmed.clone(), counters[i]))
            .collect();
        std::thread::sleep(Duration::from_millis(40));
        // Every sync from now on fails: journal syncs, segment syncs and flushes alike.
        fs.set_faults(Faults { fail_sync_after: Some(phase * 3), ..Faults::default() });
        std::thread::sleep(Duration::from_millis(40));
        stop.store(true, Ordering::Relaxed);
        for (i, p) in producers.into_iter().enumerate() {
            counters[i] = p.join().expect("producer") + 100;
        }
        fs.set_faults(Faults::default());
        let failed = logs.iter().filter(|l| l.failure().is_some()).count();
        assert!(failed > 0, "phase {phase}: failing syncs failed no log");
        // The pairs heal: every failed log is reopened, again while another failed log still
        // needs journal files (as the engine retries with backoff).
        for attempt in 0.. {
            let mut pending = 0;
            for l in &mut logs {
                if l.failure().is_some() || l.stats().failed.is_some() {
                    match l.reopen() {
                        Ok(new) => *l = new,
                        Err(_) => pending += 1,
                    }
                }
            }
            if pending == 0 {
                break;
            }
            assert!(attempt < 10, "phase {phase}: {pending} logs do not heal");
        }
    }
    assert!(group.stats().journal_failures > 0, "{:?}", group.stats());
    drop(logs);
    drop(group);
    let survivor = fs.power_cut(TornWrites::Garbage, 7);
    verify(&survivor, LOGS_N, &confirmed);
}

#[test]
fn a_stuck_log_never_holds_the_journal_back_and_deleting_a_log_leaves_the_others_alone() {
    const LOGS_N: usize = 6;
    let fs = SimFs::new();
    fs.set_faults(Faults { sync_delay: Some(Duration::from_micros(300)), ..Faults::default() });
    let confirmed: Confirmed = Arc::new(Mutex::new(vec![BTreeMap::new(); LOGS_N]));
    let budget = StorageBudget::default();
    let (group, _) =
        CommitGroup::open(JOURNAL, &[PathBuf::from(LOGS)], group_opts(&fs)).expect("open group");
    let logs: Vec<Log> = (0..LOGS_N)
        .map(|i| Log::open(log_dir(i), log_opts(&fs, &group, &budget)).expect("open"))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let mut producers = Vec::new();
    let mut consumers = Vec::new();
    for (i, l) in logs.iter().enumerate() {
        producers.push(producer(i, l.clone(), stop.clone(), confirmed.clone(), 0));
        if i != 0 {
            consumers.push(consumer(l.clone(), stop.clone()));
        }
    }
    std::thread::sleep(Duration::from_millis(150));
    // One pair deleted while the others write.
    let deleted = logs[LOGS_N - 1].clone();
    deleted.delete().expect("delete");
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(300) {
        // Log 0 is stuck (nothing confirmed) yet journal files keep being deleted.
        assert!(group.journal_files() <= 4, "journal files pile up: {}", group.journal_files());
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    for p in producers {
        p.join().expect("producer");
    }
    for c in consumers {
        c.join().expect("consumer");
    }
    let stats = group.stats();
    assert!(stats.files_deleted >= 5, "{stats:?}");
    assert!(logs[0].stats().pending > 0, "log 0 was meant to be stuck");
    for l in &logs[..LOGS_N - 1] {
        assert!(l.failure().is_none());
    }
    drop(logs);
    drop(group);
    let survivor = fs.power_cut(TornWrites::KeepPrefix, 3);
    confirmed.lock().expect("lock")[LOGS_N - 1].clear();
    verify(&survivor, LOGS_N - 1, &confirmed);
}

fn threads() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("Threads:").and_then(|v| v.trim().parse().ok()))
        })
        .unwrap_or(0)
}

#[test]
fn two_hundred_logs_take_three_threads_and_idle_logs_cost_no_syncs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let before = threads();
    let budget = StorageBudget::default();
    let gopts =
        GroupOptions { flush_interval: Duration::from_millis(50), ..GroupOptions::default() };
    let (group, _) =
        CommitGroup::open(tmp.path().join("journal"), &[tmp.path().join("logs")], gopts)
            .expect("group");
    let opts =
        LogOptions { group: Some(group.clone()), budget: Some(budget), ..LogOptions::default() };
    let logs: Vec<Log> = (0..200)
        .map(|i| {
            Log::open(tmp.path().join("logs").join(format!("p{i}")), opts.clone()).expect("open")
        })
        .collect();
    let grown = threads() - before;
    assert!(grown <= 3, "{grown} threads for 200 logs (commit, flush, housekeeping expected)");
    for l in &logs {
        l.append_queued(&[b"one".as_slice()]).now_or_wait();
    }
    // Let the flusher and the checkpoints settle, then nothing may touch the disk.
    std::thread::sleep(Duration::from_millis(400));
    let syncs = iobp_log::fs::StdFs::syncs_total();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(iobp_log::fs::StdFs::syncs_total(), syncs, "idle logs issued syncs");
    for l in logs {
        l.close().expect("close");
    }
}

trait NowOrWait {
    fn now_or_wait(self);
}

impl<F: std::future::Future<Output = Result<iobp_log::Commit, Error>>> NowOrWait for F {
    fn now_or_wait(self) {
        iobp_log::block_on(self).expect("queue").wait().expect("durable");
    }
}

/// Loads the fixture written by the release before commit groups into `fs` under `/data/logs`.
fn load_pre_group_fixture(fs: &SimFs) {
    use iobp_log::fs::FileSystem;
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pre-group");
    for pair in std::fs::read_dir(&src).expect("fixture") {
        let pair = pair.expect("entry");
        let dir = PathBuf::from(LOGS).join(pair.file_name());
        fs.create_dir_all(&dir).expect("mkdir");
        for p in [PathBuf::from("/"), PathBuf::from("/data"), PathBuf::from(LOGS), dir.clone()] {
            fs.sync_dir(&p).expect("sync dir");
        }
        for f in std::fs::read_dir(pair.path()).expect("pair dir") {
            let f = f.expect("file");
            let bytes = std::fs::read(f.path()).expect("read fixture file");
            fs.write_file(&dir.join(f.file_name()), &bytes).expect("write");
        }
    }
}

fn fixture_payload(pair: usize, k: u64) -> Vec<u8> {
    format!("pair-{pair} message {k:05} {}", "x".repeat(usize::try_from(k % 23).unwrap_or(0)))
        .into_bytes()
}

#[test]
fn a_data_directory_of_the_release_before_groups_opens_with_nothing_lost_or_reordered() {
    // Written by the log as of e476300 (the last commit before commit groups; the log is that
    // of release 9346e8e), segments of 16 KiB:
    // (pair, records, delivered) — pair 2 delivered nothing, pairs 1 and 3 part of theirs,
    // across segment boundaries.
    let pairs = [(1usize, 300u64, 120u64), (2, 50, 0), (3, 1200, 700)];
    let fs = SimFs::new();
    load_pre_group_fixture(&fs);
    let budget = StorageBudget::default();
    let (group, replay) =
        CommitGroup::open(JOURNAL, &[PathBuf::from(LOGS)], group_opts(&fs)).expect("group");
    assert_eq!(replay.files, 0, "no journal before groups");
    let logs: Vec<Log> = pairs
        .iter()
        .map(|(i, _, _)| Log::open(log_dir(*i), log_opts(&fs, &group, &budget)).expect("open"))
        .collect();
    // Delivery resumes right after what was delivered, in order, with the old bytes.
    for (log, (i, n, done)) in logs.iter().zip(pairs) {
        let stats = log.stats();
        assert_eq!((stats.done_seq, stats.next_seq, stats.pending), (done, n + 1, n - done));
        let mut next = done + 1;
        loop {
            let b = log.read_batch(500, 1 << 24).expect("read");
            if b.is_empty() {
                break;
            }
            for r in b.iter() {
                assert_eq!((r.seq, r.payload), (next, fixture_payload(i, next).as_slice()));
                next += 1;
            }
        }
        assert_eq!(next, n + 1);
        log.requeue_all();
    }
    // New records from all three pairs at once (rounds the journal carries), then a power cut:
    // old and new records survive in one order.
    let stop = Arc::new(AtomicBool::new(false));
    let confirmed: Confirmed = Arc::new(Mutex::new(vec![BTreeMap::new(); 4]));
    let producers: Vec<_> = logs
        .iter()
        .zip(pairs)
        .map(|(l, (i, _, _))| producer(i, l.clone(), stop.clone(), confirmed.clone(), 100_000))
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    for p in producers {
        p.join().expect("producer");
    }
    let survivor = fs.power_cut(TornWrites::Garbage, 11);
    drop(logs);
    drop(group);
    let (group, _) =
        CommitGroup::open(JOURNAL, &[PathBuf::from(LOGS)], group_opts(&survivor)).expect("group");
    let m = confirmed.lock().expect("lock");
    for (i, n, _) in pairs {
        let log = Log::open(log_dir(i), log_opts(&survivor, &group, &budget)).expect("reopen");
        let b = log.read_range(1, 100_000, 1 << 26).expect("read all");
        let got: BTreeMap<u64, Vec<u8>> = b.iter().map(|r| (r.seq, r.payload.to_vec())).collect();
        for k in 1..=n {
            assert_eq!(got.get(&k), Some(&fixture_payload(i, k)), "pair {i}: old record {k}");
        }
        assert!(!m[i].is_empty(), "pair {i} took no new record");
        for (seq, p) in &m[i] {
            assert!(*seq > n, "pair {i}: new record numbered {seq}, inside the old ones");
            assert_eq!(got.get(seq), Some(p), "pair {i}: new record {seq} lost");
        }
    }
}

#[test]
fn checkpoints_share_the_journal_sync_and_survive_a_power_cut_before_their_file_is_written() {
    let fs = SimFs::new();
    // The flusher would write checkpoint files only after a minute: a power cut comes first.
    let gopts = GroupOptions { flush_interval: Duration::from_secs(60), ..group_opts(&fs) };
    let budget = StorageBudget::default();
    let (group, _) = CommitGroup::open(JOURNAL, &[PathBuf::from(LOGS)], gopts.clone()).expect("g");
    let logs: Vec<Log> = (0..3)
        .map(|i| Log::open(log_dir(i), log_opts(&fs, &group, &budget)).expect("open"))
        .collect();
    for l in &logs {
        let batch: Vec<Vec<u8>> = (0..100).map(|c| payload(0, c)).collect();
        l.try_append_batch(&batch).expect("queue").wait().expect("durable");
        let b = l.read_batch(60, 1 << 20).expect("read");
        l.ack_through(b.last_seq().expect("records")).expect("ack");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while logs.iter().any(|l| l.stats().checkpoint_seq != 60) {
        assert!(Instant::now() < deadline, "checkpoints never written");
        std::thread::sleep(Duration::from_millis(2));
    }
    let in_file: Vec<u64> = (0..3)
        .map(|i| {
            let f = fs.read_file(&log_dir(i).join("checkpoint")).expect("checkpoint file");
            iobp_log::format::decode_checkpoint_file(&f).expect("valid").done_seq
        })
        .collect();
    assert_eq!(in_file, [0, 0, 0], "checkpoints went to their files, not the journal");
    let survivor = fs.power_cut(TornWrites::LoseAll, 5);
    drop(logs);
    drop(group);
    let gopts = GroupOptions { fs: Arc::new(survivor.clone()), ..gopts };
    let (group, replay) = CommitGroup::open(JOURNAL, &[PathBuf::from(LOGS)], gopts).expect("g");
    assert!(replay.entries >= 3, "{replay:?}");
    for i in 0..3 {
        let log = Log::open(log_dir(i), log_opts(&survivor, &group, &budget)).expect("reopen");
        assert_eq!(
            log.open_report().resume_seq,
            61,
            "log {i}: delivery resumes after the journaled checkpoint"
        );
    }
}
