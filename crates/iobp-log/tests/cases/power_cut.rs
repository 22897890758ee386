//! Simulated power cuts under concurrent load. `kill -9` leaves the page cache intact and so
//! cannot catch a missing fsync; a power cut on [`SimFs`] keeps only synced data and synced
//! directory entries, so it does. Producers append concurrently (single appends and batches),
//! a delivery thread reads and acknowledges, and the power is cut at a random moment; after
//! reopening, every confirmed record must be there with its bytes, in sequence order, and
//! delivery must resume no earlier than the last checkpoint that was confirmed written.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

fn payload(producer: u64, counter: u64) -> Vec<u8> {
    let mut p = format!("{producer}/{counter}/").into_bytes();
    p.resize(p.len() + usize::try_from(counter % 61).unwrap_or(0), b'#');
    p
}

#[test]
fn every_confirmed_record_survives_power_cuts_under_load() {
    let mut fs = SimFs::new();
    let confirmed: Arc<Mutex<BTreeMap<u64, Vec<u8>>>> = Arc::default();
    let mut counters = [0u64; 4];
    let modes = [TornWrites::LoseAll, TornWrites::KeepPrefix, TornWrites::Garbage];
    for round in 0..30u64 {
        let log = Log::open("/data/pair", opts(&fs)).expect("open");
        let resume = log.open_report().resume_seq;
        let stop = Arc::new(AtomicBool::new(false));
        let checkpoint_seen = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::new();
        for producer in 0..4u64 {
            let (log, stop, confirmed) = (log.clone(), stop.clone(), confirmed.clone());
            let mut counter = counters[usize::try_from(producer).unwrap_or(0)];
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let n = if producer % 2 == 0 { 1 } else { 1 + counter % 9 };
                    let batch: Vec<Vec<u8>> =
                        (counter..counter + n).map(|c| payload(producer, c)).collect();
                    let commit = match log.try_append_batch(&batch) {
                        Ok(c) => c,
                        Err(Error::Backlogged) => continue,
                        Err(_) => break,
                    };
                    counter += n;
                    match commit.wait() {
                        Ok(seqs) => {
                            let mut m = confirmed.lock().expect("lock");
                            for (seq, p) in seqs.zip(batch) {
                                m.insert(seq, p);
                            }
                        }
                        Err(_) => break, // the power went
                    }
                }
                counter
            }));
        }
        let delivery = {
            let (log, stop, seen) = (log.clone(), stop.clone(), checkpoint_seen.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match log.read_batch(50, 1 << 16) {
                        Ok(b) => {
                            if let Some(last) = b.last_seq() {
                                let _ = log.ack_through(last);
                            }
                        }
                        Err(_) => break,
                    }
                    seen.fetch_max(log.stats().checkpoint_seq, Ordering::Relaxed);
                }
            })
        };
        std::thread::sleep(Duration::from_millis(5 + (round * 7919) % 40));
        let seen_before_cut = checkpoint_seen.load(Ordering::Relaxed);
        fs = fs.power_cut(modes[usize::try_from(round % 3).unwrap_or(0)], round + 1);
        stop.store(true, Ordering::Relaxed);
        for (i, t) in threads.into_iter().enumerate() {
            counters[i] = t.join().expect("producer");
        }
        delivery.join().expect("delivery");
        drop(log);

        let log = Log::open("/data/pair", opts(&fs)).expect("reopen after power cut");
        assert!(
            log.open_report().resume_seq > seen_before_cut,
            "round {round}: checkpoint went backwards"
        );
        assert!(
            log.open_report().resume_seq >= resume,
            "round {round}: delivery position went backwards"
        );
        let all = log.read_range(1, usize::MAX, usize::MAX).expect("browse");
        let present: BTreeMap<u64, Vec<u8>> =
            all.iter().map(|r| (r.seq, r.payload.to_vec())).collect();
        let confirmed = confirmed.lock().expect("lock");
        for (seq, p) in confirmed.iter() {
            assert_eq!(
                present.get(seq),
                Some(p),
                "round {round}: confirmed record {seq} lost or changed"
            );
        }
        let seqs: Vec<u64> = present.keys().copied().collect();
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "round {round}: gap in sequence numbers"
        );
        // Producers restart their counters after what survived (unconfirmed tails may be gone).
        for r in all.iter() {
            let s = std::str::from_utf8(r.payload).expect("utf8");
            let mut it = s.split('/');
            let p: usize = it.next().and_then(|x| x.parse().ok()).expect("producer");
            let c: u64 = it.next().and_then(|x| x.parse().ok()).expect("counter");
            counters[p] = counters[p].max(c + 1);
        }
        assert_eq!(log.stats().lost_records, 0);
        log.close().expect("close");
    }
    assert!(confirmed.lock().expect("lock").len() > 500, "enough work was done");
}
