//! Disk faults injected through the simulated file system: short writes are retried
//! transparently; EIO from fdatasync, EIO on write and a failing directory sync put the log
//! into a failed state that every caller sees, never "retried and assumed durable"; a full
//! file system (ENOSPC) holds appends back instead. A failed log heals by [`Log::reopen`],
//! which trusts nothing past the last position it knew durable. After reopening, every record
//! confirmed before the fault is there, and nothing confirmed later sits behind a hole.

use std::sync::Arc;
use std::time::{Duration, Instant};

use iobp_log::sim::{Faults, SimFs, TornWrites};
use iobp_log::{Error, Log, LogOptions};

fn opts(fs: &SimFs) -> LogOptions {
    LogOptions {
        fs: Arc::new(fs.clone()),
        segment_bytes: 300,
        group: super::group_for(fs),
        ..LogOptions::default()
    }
}

fn append(log: &Log, i: u64) -> Result<u64, Error> {
    log.try_append(format!("m{i}").as_bytes())?.wait().map(|r| *r.start())
}

fn read_seqs(log: &Log) -> Vec<u64> {
    let mut out = Vec::new();
    loop {
        let b = log.read_batch(100, 1 << 20).expect("read");
        if b.is_empty() {
            return out;
        }
        out.extend(b.iter().map(|r| r.seq));
    }
}

#[test]
fn short_writes_are_completed() {
    let fs = SimFs::new();
    fs.set_faults(Faults { short_writes: true, ..Faults::default() });
    let log = Log::open("/l", opts(&fs)).expect("open");
    for i in 1..=50 {
        assert_eq!(append(&log, i).expect("append"), i);
    }
    assert_eq!(read_seqs(&log), (1..=50).collect::<Vec<_>>());
    let after = fs.power_cut(TornWrites::LoseAll, 3);
    drop(log);
    let log = Log::open("/l", opts(&after)).expect("reopen");
    assert_eq!(read_seqs(&log), (1..=50).collect::<Vec<_>>());
}

/// Runs appends until the fault hits; checks the failed state and what survives a power cut.
fn fault_scenario(faults: Faults, expect_kind: Option<std::io::ErrorKind>) {
    let fs = SimFs::new();
    let log = Log::open("/l", opts(&fs)).expect("open");
    let mut confirmed = Vec::new();
    for i in 1..=10 {
        confirmed.push(append(&log, i).expect("before the fault"));
    }
    fs.set_faults(faults);
    let err = loop {
        match append(&log, 0) {
            Ok(seq) => confirmed.push(seq),
            Err(e) => break e,
        }
        assert!(confirmed.len() < 10_000, "fault never fired");
    };
    let Error::Failed(cause) = &err else { panic!("expected Failed, got {err}") };
    if let Some(kind) = expect_kind {
        assert_eq!(cause.kind, kind, "{cause}");
    }
    // The failure is sticky and visible to every caller.
    assert!(matches!(log.try_append(b"x"), Err(Error::Failed(_))));
    assert!(log.failure().is_some());
    assert!(log.stats().failed.is_some());
    // Reads of what is durable still work (delivery can drain while the disk is sick).
    let seqs = read_seqs(&log);
    assert!(seqs.len() >= 10);
    // After a power cut and reopen, every confirmed record is there, in order.
    let after = fs.power_cut(TornWrites::Garbage, 11);
    drop(log);
    let log = Log::open("/l", opts(&after)).expect("reopen");
    let seqs = read_seqs(&log);
    assert!(seqs.starts_with(&confirmed), "confirmed {confirmed:?} but found {seqs:?}");
    assert_eq!(append(&log, 99).expect("works again"), seqs.len() as u64 + 1);
}

#[test]
fn eio_on_fdatasync_fails_the_log() {
    fault_scenario(Faults { fail_sync_after: Some(3), ..Faults::default() }, None);
}

#[test]
fn eio_on_write_fails_the_log() {
    fault_scenario(Faults { fail_write_after: Some(5), ..Faults::default() }, None);
}

#[test]
fn enospc_on_fdatasync_fails_the_log() {
    // (ENOSPC from a write is backpressure, below; from fdatasync it is a failed write-back.)
    fault_scenario(Faults { fail_sync_after: Some(2), ..Faults::default() }, None);
}

#[test]
fn failing_directory_sync_on_segment_roll_fails_the_log() {
    fault_scenario(Faults { fail_sync_dir: true, ..Faults::default() }, None);
}

#[test]
fn pending_commits_fail_when_the_log_fails() {
    let fs = SimFs::new();
    let log = Log::open("/l", opts(&fs)).expect("open");
    fs.set_faults(Faults { fail_sync_after: Some(0), ..Faults::default() });
    let commits: Vec<_> =
        (0..20).filter_map(|i| log.try_append(format!("{i}").as_bytes()).ok()).collect();
    assert!(!commits.is_empty());
    for c in commits {
        assert!(matches!(c.wait(), Err(Error::Failed(_))));
    }
}

#[test]
fn failing_checkpoint_fails_the_log_and_is_reported() {
    let fs = SimFs::new();
    let log = Log::open("/l", opts(&fs)).expect("open");
    for i in 1..=3 {
        append(&log, i).expect("append");
    }
    let _ = read_seqs(&log);
    log.ack_through(3).expect("ack");
    fs.set_faults(Faults { fail_sync_after: Some(0), ..Faults::default() });
    assert!(matches!(log.checkpoint(), Err(Error::Failed(_))));
    assert!(matches!(log.try_append(b"x"), Err(Error::Failed(_))));
}

/// Waits until `f` holds, or panics after 10 s.
fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_failed_log_heals_by_reopening_even_while_clones_are_alive() {
    let fs = SimFs::new();
    let log = Log::open("/l", opts(&fs)).expect("open");
    // Handles held elsewhere (the delivery side, the message browser) while the log fails.
    let elsewhere = log.clone();
    for i in 1..=5 {
        append(&log, i).expect("before");
    }
    fs.set_faults(Faults { fail_sync_after: Some(0), ..Faults::default() });
    assert!(matches!(append(&log, 6), Err(Error::Failed(_))));
    fs.set_faults(Faults::default());
    let healed = log.reopen().expect("reopen while clones are alive");
    assert!(healed.failure().is_none());
    assert!(matches!(elsewhere.try_append(b"x"), Err(Error::Closed)));
    assert!(matches!(elsewhere.read_batch(10, 1 << 20), Err(Error::Closed)));
    assert_eq!(append(&healed, 7).expect("appends again"), 6);
    assert_eq!(read_seqs(&healed), (1..=6).collect::<Vec<_>>());
    // Closing releases the directory at once, clones or not.
    healed.clone().close().expect("close");
    drop(Log::open("/l", opts(&fs)).expect("the directory is free again"));
    drop(healed);
}

#[test]
fn bytes_whose_fdatasync_failed_are_never_trusted_after_reopen() {
    // Linux keeps the bytes of a failed write-back readable in the page cache but no longer
    // dirty: a later fdatasync does not write them. A log that reopened on top of them would
    // acknowledge new records behind a hole that only a power cut reveals.
    let fs = SimFs::new();
    let log = Log::open("/l", opts(&fs)).expect("open");
    for i in 1..=3 {
        append(&log, i).expect("before");
    }
    fs.set_faults(Faults { fail_sync_after: Some(0), ..Faults::default() });
    assert!(matches!(append(&log, 4), Err(Error::Failed(_))));
    fs.set_faults(Faults::default());
    let log = log.reopen().expect("heal");
    assert!(log.open_report().untrusted_bytes > 0, "{:?}", log.open_report());
    let mut confirmed = Vec::new();
    for i in 5..=8 {
        confirmed.push(append(&log, i).expect("after"));
    }
    let after = fs.power_cut(TornWrites::LoseAll, 5);
    drop(log);
    let log = Log::open("/l", opts(&after)).expect("reopen after the power cut");
    // Trusting the page cache, the reopened log counted record 4 (whose sync failed) as
    // present and appended behind it: after the power cut it is a hole, reported as damage.
    assert!(log.open_report().corruption.is_empty(), "{:?}", log.open_report());
    let seqs = read_seqs(&log);
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "no hole");
    for seq in &confirmed {
        assert!(seqs.contains(seq), "confirmed {seq} lost: found {seqs:?}");
    }
    assert_eq!(log.stats().lost_records, 0);
}

#[test]
fn a_full_file_system_holds_appends_back_and_they_resume_when_space_returns() {
    let fs = SimFs::new();
    let log = Log::open("/l", LogOptions { segment_bytes: 4096, ..opts(&fs) }).expect("open");
    let p = vec![3u8; 200];
    let mut confirmed = 0u64;
    for _ in 0..40 {
        log.try_append(&p).expect("room").wait().expect("durable");
        confirmed += 1;
    }
    // The disk fills up under the log (another program took the space, or the budget's
    // free-space sample is stale): the next round fails with ENOSPC.
    let usage = fs.read_file(std::path::Path::new("/l/00000000000000000001.seg")).expect("r").len();
    fs.set_faults(Faults { capacity_bytes: Some(8192 + usage as u64 + 1500), ..Faults::default() });
    let mut held = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let full = loop {
        match log.try_append(&p) {
            Ok(c) => held.push(c),
            Err(e) => break e,
        }
        assert!(Instant::now() < deadline, "never full");
        std::thread::sleep(Duration::from_millis(1));
    };
    assert!(matches!(full, Error::Full { .. }), "held back, not failed: {full}");
    assert!(log.failure().is_none(), "a full disk does not fail the log");
    // Delivery goes on from what is stored; Done segments are released and the held round is
    // written once there is room. Every held commit resolves Ok, in order.
    let mut delivered = 0u64;
    wait_until("the held records to become durable", || {
        loop {
            let b = log.read_batch(100, 1 << 20).expect("read while full");
            let Some(last) = b.last_seq() else { break };
            delivered += b.len() as u64;
            log.ack_through(last).expect("ack");
        }
        held.iter().all(iobp_log::Commit::is_durable)
    });
    for c in held {
        c.wait().expect("held commit becomes durable, not failed");
    }
    wait_until("appends accepted again", || log.try_append(&p).is_ok());
    assert!(delivered >= confirmed);
    assert!(log.failure().is_none());
}

#[test]
fn appends_never_wait_for_disk_work_when_storage_is_full() {
    // Reclaiming space (checkpoint, deleting segments, directory sync) is the housekeeper's;
    // an appender that hits the limit gets `Full` at once even when the disk is slow.
    let fs = SimFs::new();
    let budget = iobp_log::StorageBudget::new(6000);
    let log =
        Log::open("/l", LogOptions { segment_bytes: 1024, budget: Some(budget), ..opts(&fs) })
            .expect("open");
    let p = vec![1u8; 200];
    let mut n = 0;
    while let Ok(c) = log.try_append(&p) {
        c.wait().expect("durable");
        n += 1;
    }
    loop {
        let b = log.read_batch(100, 1 << 20).expect("read");
        if b.is_empty() {
            break;
        }
    }
    log.ack_through(n).expect("ack");
    fs.set_faults(Faults { sync_delay: Some(Duration::from_millis(300)), ..Faults::default() });
    let started = Instant::now();
    let r = log.try_append(&p);
    let took = started.elapsed();
    assert!(took < Duration::from_millis(100), "the appender waited {took:?} for disk work");
    assert!(matches!(r, Err(Error::Full { .. })) || r.is_ok());
}

#[test]
fn a_transient_read_error_never_turns_records_into_damage() {
    // The reader's window was grown with zeros before the read; a failed read left them in
    // place, and the next read took them for damaged records and skipped them as lost.
    let fs = SimFs::new();
    let log = Log::open("/l", opts(&fs)).expect("open");
    for i in 1..=10 {
        append(&log, i).expect("append");
    }
    fs.set_faults(Faults { fail_reads: true, ..Faults::default() });
    assert!(matches!(log.read_batch(100, 1 << 20), Err(Error::Io { .. })));
    assert!(matches!(log.read_batch(100, 1 << 20), Err(Error::Io { .. })));
    fs.set_faults(Faults::default());
    assert_eq!(read_seqs(&log), (1..=10).collect::<Vec<_>>());
    assert_eq!(log.stats().lost_records, 0);
}
