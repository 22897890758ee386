//! `kill -9` of a real process appending to and delivering from a log, at many points.
//!
//! The test binary runs itself as the child (the `child` function below, selected by an
//! environment variable). The child runs four producer threads and one delivery thread and
//! prints a line for every append confirmed durable (`A first last producer counter`), every
//! delivered-and-acknowledged position (`D seq`) and every checkpoint it has seen written
//! (`C seq`). The parent kills it with SIGKILL after a random delay — sometimes during
//! recovery — 25 times on the same log, and after each kill reopens the log and checks:
//! - every confirmed record is present, with its exact bytes, in order;
//! - sequence numbers are contiguous and nothing is reported damaged;
//! - each producer's records appear in the order it appended them;
//! - delivery resumes after the last checkpoint the child saw, and not after anything it
//!   never delivered (nothing Done is delivered again beyond the checkpoint window).

#![cfg(unix)]

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use iobp_log::{Log, LogOptions};

const CHILD_ENV: &str = "IOBP_LOG_CRASH_CHILD_DIR";
const PRODUCERS: u64 = 4;
const PRODUCER_SLOTS: usize = 4;

fn child_opts() -> LogOptions {
    LogOptions {
        segment_bytes: 64 * 1024,
        checkpoint_interval: Duration::from_millis(20),
        ..LogOptions::default()
    }
}

/// Deterministic payload of a producer's `counter`-th record: verifiable and of varying size.
fn payload(producer: u64, counter: u64) -> Vec<u8> {
    let mut p = format!("p{producer}c{counter}:").into_bytes();
    let fill = usize::try_from((counter * 7919 + producer * 31) % 300).unwrap_or(0);
    p.extend((0..fill).map(|i| u8::try_from((i as u64 + counter) % 251).unwrap_or(0)));
    p
}

fn parse_payload(p: &[u8]) -> Option<(u64, u64)> {
    let s = std::str::from_utf8(p.split(|&b| b == b':').next()?).ok()?;
    let (a, b) = s.strip_prefix('p')?.split_once('c')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// The child workload. As the crash child it runs until killed (`run_for == None`); run
/// directly it stops after `run_for`, closes the log and returns how many appends it confirmed.
fn child(dir: &Path, run_for: Option<Duration>) -> u64 {
    let log = Log::open(dir, child_opts()).expect("child open");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let out = std::sync::Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let say = {
        let out = out.clone();
        move |line: String| {
            let mut o = out.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let _ = writeln!(o, "{line}");
            let _ = o.flush();
        }
    };
    // Each producer continues its counter from where the log says it got to.
    let mut next_counter = [0u64; PRODUCER_SLOTS];
    for r in log.read_range(1, usize::MAX, usize::MAX).expect("scan").iter() {
        if let Some((p, c)) = parse_payload(r.payload) {
            next_counter[usize::try_from(p).unwrap_or(0)] = c + 1;
        }
    }
    let mut threads = Vec::new();
    for producer in 0..PRODUCERS {
        let (log, say, stop) = (log.clone(), say.clone(), stop.clone());
        let mut counter = next_counter[usize::try_from(producer).unwrap_or(0)];
        threads.push(std::thread::spawn(move || {
            let mut confirmed = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let n = 1 + (counter % 17);
                let batch: Vec<Vec<u8>> =
                    (counter..counter + n).map(|c| payload(producer, c)).collect();
                let commit = match log.try_append_batch(&batch) {
                    Ok(c) => c,
                    Err(iobp_log::Error::Backlogged) => {
                        std::thread::yield_now();
                        continue;
                    }
                    Err(e) => panic!("append: {e}"),
                };
                let seqs = commit.wait().expect("durable");
                say(format!("A {} {} {producer} {counter}", seqs.start(), seqs.end()));
                counter += n;
                confirmed += n;
            }
            confirmed
        }));
    }
    let started = std::time::Instant::now();
    let mut last_ckpt = 0;
    while run_for.is_none_or(|d| started.elapsed() < d) {
        let b = log.read_batch(500, 1 << 20).expect("read");
        if let Some(last) = b.last_seq() {
            // Announce before acknowledging: a checkpoint can then never exceed what the
            // parent heard about, even if the kill lands between the two.
            say(format!("D {last}"));
            log.ack_through(last).expect("ack");
        } else {
            std::thread::sleep(Duration::from_millis(1));
        }
        let ck = log.stats().checkpoint_seq;
        if ck > last_ckpt {
            last_ckpt = ck;
            say(format!("C {ck}"));
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let confirmed = threads.into_iter().map(|t| t.join().expect("producer")).sum();
    log.close().expect("close");
    confirmed
}

#[test]
fn child_entry() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        // Started by `kill_9_at_random_points_loses_nothing`: run until killed.
        child(Path::new(&dir), None);
        return;
    }
    // Run directly: the same workload for a moment, then a clean shutdown keeps everything.
    let tmp = tempfile::tempdir().expect("tempdir");
    let confirmed = child(tmp.path(), Some(Duration::from_millis(300)));
    assert!(confirmed > 0);
    let log = Log::open(tmp.path(), LogOptions::default()).expect("reopen");
    let s = log.stats();
    assert!(s.next_seq > confirmed, "{confirmed} confirmed, log ends at {}", s.next_seq);
    assert_eq!(s.lost_records, 0);
    assert!(s.done_seq >= s.checkpoint_seq && s.checkpoint_seq > 0, "{s:?}");
}

struct Xs(u64);
impl Xs {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn kill_9_at_random_points_loses_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("pair");
    let exe = std::env::current_exe().expect("test binary");
    let mut rng = Xs(0x9E37_79B9_7F4A_7C15);
    // seq -> (producer, counter) for every append the child reported durable.
    let mut confirmed: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    let mut total_delivered = 0u64;
    for round in 0..25 {
        let mut child = Command::new(&exe)
            .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        // Some kills land during start-up and recovery, most under load.
        let delay = if round % 5 == 0 { rng.next() % 15 } else { 50 + rng.next() % 400 };
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().expect("kill -9");
        let stdout = child.stdout.take().expect("stdout");
        let _ = child.wait();
        let mut last_checkpoint = 0;
        let mut last_delivered = 0;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let f: Vec<u64> = line.split(' ').skip(1).filter_map(|x| x.parse().ok()).collect();
            match (line.as_bytes().first(), f.as_slice()) {
                (Some(b'A'), [first, last, producer, counter]) => {
                    for (i, seq) in (*first..=*last).enumerate() {
                        confirmed.insert(seq, (*producer, counter + i as u64));
                    }
                }
                (Some(b'D'), [seq]) => last_delivered = *seq,
                (Some(b'C'), [seq]) => last_checkpoint = *seq,
                _ => {} // a line cut short by the kill
            }
        }
        let log = Log::open(&dir, LogOptions::default()).expect("reopen after kill -9");
        let report = log.open_report().clone();
        assert!(report.corruption.is_empty(), "round {round}: {report:?}");
        let resume = report.resume_seq;
        assert!(
            resume > last_checkpoint,
            "round {round}: resumed at {resume}, but checkpoint {last_checkpoint} was written"
        );
        if last_delivered > 0 {
            assert!(resume <= last_delivered + 1, "round {round}: resumed past what was delivered");
        }
        let all = log.read_range(1, usize::MAX, usize::MAX).expect("browse");
        let mut expected_seq = 1;
        let mut per_producer = [None::<u64>; PRODUCER_SLOTS];
        for r in all.iter() {
            assert_eq!(r.seq, expected_seq, "round {round}: sequence gap");
            expected_seq += 1;
            let (p, c) = parse_payload(r.payload).expect("our payload");
            assert_eq!(
                r.payload,
                payload(p, c).as_slice(),
                "round {round}: damaged record {}",
                r.seq
            );
            let last = &mut per_producer[usize::try_from(p).unwrap_or(0)];
            assert!(last.is_none_or(|l| c == l + 1), "round {round}: producer {p} out of order");
            *last = Some(c);
            if let Some(&want) = confirmed.get(&r.seq) {
                assert_eq!(
                    (p, c),
                    want,
                    "round {round}: record {} is not what was confirmed",
                    r.seq
                );
            }
        }
        let present = expected_seq - 1;
        if let Some((&max_confirmed, _)) = confirmed.last_key_value() {
            assert!(
                present >= max_confirmed,
                "round {round}: confirmed up to {max_confirmed}, only {present} present"
            );
        }
        assert_eq!(log.stats().lost_records, 0);
        total_delivered = total_delivered.max(last_delivered);
        log.close().expect("close");
    }
    eprintln!("{} appends confirmed across 25 kills", confirmed.len());
    assert!(confirmed.len() > 1000, "the child did real work: {} confirmed", confirmed.len());
    assert!(total_delivered > 0);
}
