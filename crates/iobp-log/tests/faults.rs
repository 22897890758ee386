//! Disk faults injected through the simulated file system: short writes are retried
//! transparently; EIO from fdatasync, EIO on write, ENOSPC and a failing directory sync put the
//! log into a failed state that every caller sees, never "retried and assumed durable". After
//! reopening, every record confirmed before the fault is there.

use std::sync::Arc;

use iobp_log::sim::{Faults, SimFs, TornWrites};
use iobp_log::{Error, Log, LogOptions};

fn opts(fs: &SimFs) -> LogOptions {
    LogOptions { fs: Arc::new(fs.clone()), segment_bytes: 300, ..LogOptions::default() }
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
fn enospc_fails_the_log_with_storage_full() {
    fault_scenario(
        Faults { enospc_after_bytes: Some(1000), ..Faults::default() },
        Some(std::io::ErrorKind::StorageFull),
    );
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
