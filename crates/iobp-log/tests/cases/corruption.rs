//! Damaged data on disk: torn tails at every byte offset, flipped bits, damaged headers and
//! checkpoints, garbage files and arbitrary directory contents. The log must open, never
//! deliver damaged bytes as data, report what it skipped, and stay usable.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use iobp_log::format::{SEGMENT_HEADER_LEN, segment_file_name};
use iobp_log::sim::SimFs;
use iobp_log::{Error, Log, LogOptions};
use proptest::prelude::*;

fn opts(fs: &SimFs) -> LogOptions {
    LogOptions { fs: Arc::new(fs.clone()), group: super::group_for(fs), ..LogOptions::default() }
}

fn payload(seq: u64) -> Vec<u8> {
    format!("record-{seq:04}-{}", "p".repeat(usize::try_from(seq % 9).unwrap_or(0))).into_bytes()
}

/// A closed log at `dir` holding `n` records, in segments of `segment_bytes`.
fn build(fs: &SimFs, dir: &str, n: u64, segment_bytes: u64) {
    let log = Log::open(dir, LogOptions { segment_bytes, ..opts(fs) }).expect("open");
    for seq in 1..=n {
        log.try_append(&payload(seq)).expect("queue").wait().expect("durable");
    }
    log.close().expect("close");
    // In a commit group: nothing left in the journal that would repair the damage the tests
    // inject (the journal is there to put acknowledged bytes back).
    if let Some(g) = super::group_for(fs) {
        g.retire_journal().expect("retire the journal");
    }
}

fn seg(dir: &str, first: u64) -> PathBuf {
    Path::new(dir).join(segment_file_name(first))
}

/// Reads everything deliverable, collecting corruption reports.
fn read_all(log: &Log) -> (Vec<(u64, Vec<u8>)>, Vec<iobp_log::Corruption>) {
    let mut records = Vec::new();
    let mut damage = Vec::new();
    loop {
        match log.read_batch(64, 1 << 20) {
            Ok(b) if b.is_empty() => return (records, damage),
            Ok(b) => records.extend(b.iter().map(|r| (r.seq, r.payload.to_vec()))),
            Err(Error::Corrupt(c)) => damage.push(c),
            Err(e) => panic!("unexpected error {e}"),
        }
    }
}

fn assert_intact(records: &[(u64, Vec<u8>)]) {
    for (seq, p) in records {
        assert_eq!(p, &payload(*seq), "record {seq} delivered with damaged bytes");
    }
}

#[test]
fn torn_tail_at_every_byte_offset_of_the_last_records() {
    let fs = SimFs::new();
    build(&fs, "/l", 12, 1 << 20);
    let path = seg("/l", 1);
    let full = fs.read_file(&path).expect("read");
    // Offsets where each record ends.
    let mut ends = vec![SEGMENT_HEADER_LEN];
    for seq in 1..=12u64 {
        ends.push(ends[ends.len() - 1] + 24 + payload(seq).len());
    }
    assert_eq!(*ends.last().expect("end"), full.len());
    let last_records_start = ends[8];
    for cut in last_records_start..full.len() {
        let fs2 = fs.power_cut(iobp_log::sim::TornWrites::LoseAll, 1);
        fs2.write_file(&path, &full[..cut]).expect("truncate");
        // A real torn tail was never durable, so no checkpoint counted it: the crash came
        // before one did. (A tail the checkpoint's high-water mark covers and that is gone is
        // damage: see `durable_records_that_vanished_are_reported_lost`.)
        iobp_log::fs::FileSystem::remove_file(&fs2, Path::new("/l/checkpoint")).expect("rm");
        let log = Log::open("/l", opts(&fs2)).expect("open after truncation");
        let whole = ends.iter().filter(|&&e| e <= cut).count() as u64 - 1;
        assert_eq!(
            log.open_report().truncated_bytes,
            (cut - ends[usize::try_from(whole).unwrap_or(0)]) as u64
        );
        let (records, damage) = read_all(&log);
        assert!(damage.is_empty(), "a torn tail is not corruption: {damage:?}");
        assert_eq!(records.len() as u64, whole, "cut at {cut}");
        assert_intact(&records);
        // The log continues right after the last whole record.
        let c = log.try_append(b"after").expect("append");
        assert_eq!(*c.wait().expect("durable").start(), whole + 1);
    }
}

#[test]
fn torn_tail_on_the_real_file_system() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("l");
    {
        let log = Log::open(&dir, LogOptions::default()).expect("open");
        for seq in 1..=5 {
            log.try_append(&payload(seq)).expect("q").wait().expect("durable");
        }
        log.close().expect("close");
    }
    let path = dir.join(segment_file_name(1));
    let len = std::fs::metadata(&path).expect("stat").len();
    let f = std::fs::OpenOptions::new().write(true).open(&path).expect("open");
    f.set_len(len - 3).expect("truncate");
    drop(f);
    // Torn before any checkpoint counted it durable.
    std::fs::remove_file(dir.join("checkpoint")).expect("rm checkpoint");
    let log = Log::open(&dir, LogOptions::default()).expect("reopen");
    assert!(log.open_report().truncated_bytes > 0);
    let (records, damage) = read_all(&log);
    assert!(damage.is_empty());
    assert_eq!(records.len(), 4);
    assert_eq!(
        std::fs::metadata(&path).expect("stat").len(),
        len - 3 - log.open_report().truncated_bytes
    );
}

#[test]
fn flipped_bits_in_every_record_are_detected_and_skipped() {
    let fs = SimFs::new();
    build(&fs, "/l", 30, 400);
    // Flip one bit at every position of record 2's segment in turn; each time the damaged
    // record(s) are reported and never delivered.
    let path = seg("/l", 1);
    let clean = fs.read_file(&path).expect("read");
    for at in SEGMENT_HEADER_LEN..clean.len() {
        let fs2 = fs.power_cut(iobp_log::sim::TornWrites::LoseAll, 1);
        let mut bad = clean.clone();
        bad[at] ^= 1 << (at % 8);
        fs2.write_file(&path, &bad).expect("write");
        let log = Log::open("/l", opts(&fs2)).expect("open");
        let (records, damage) = read_all(&log);
        assert_intact(&records);
        let lost: u64 = damage.iter().map(|c| c.lost).sum();
        assert!(lost >= 1, "flip at {at} went unnoticed");
        assert_eq!(records.len() as u64 + lost, 30, "flip at {at}: {damage:?}");
        assert_eq!(log.stats().lost_records, lost);
        // Everything after the damage was delivered, in order.
        let seqs: Vec<u64> = records.iter().map(|r| r.0).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(seqs.last(), Some(&30));
    }
}

#[test]
fn damage_in_the_tail_segment_keeps_later_records() {
    let fs = SimFs::new();
    build(&fs, "/l", 20, 1 << 20);
    let path = seg("/l", 1);
    let mut bytes = fs.read_file(&path).expect("read");
    // Corrupt record 5's payload.
    let mut off = SEGMENT_HEADER_LEN;
    for seq in 1..5u64 {
        off += 24 + payload(seq).len();
    }
    bytes[off + 30] ^= 0xFF;
    fs.write_file(&path, &bytes).expect("write");
    let log = Log::open("/l", opts(&fs)).expect("open");
    assert_eq!(log.open_report().truncated_bytes, 0, "records after the damage are kept");
    assert_eq!(log.open_report().corruption.len(), 1);
    let (records, damage) = read_all(&log);
    assert_eq!(damage.len(), 1);
    assert_eq!((damage[0].first_lost_seq, damage[0].lost), (5, 1));
    assert_eq!(records.len(), 19);
    assert_intact(&records);
    // Lost records count as Done so the log can move on.
    log.ack_through(20).expect("ack");
    assert_eq!(log.stats().done_seq, 20);
}

#[test]
fn damaged_segment_header_quarantines_the_segment() {
    let fs = SimFs::new();
    build(&fs, "/l", 40, 300);
    let names: Vec<_> = iobp_log::fs::FileSystem::list_dir(&fs, Path::new("/l")).expect("ls");
    let mut segs: Vec<String> = names
        .iter()
        .filter_map(|n| n.to_str())
        .filter(|n| iobp_log::format::parse_segment_file_name(n).is_some())
        .map(String::from)
        .collect();
    segs.sort();
    assert!(segs.len() >= 4);
    let victim = Path::new("/l").join(&segs[1]);
    let mut bytes = fs.read_file(&victim).expect("read");
    bytes[3] ^= 0x40;
    fs.write_file(&victim, &bytes).expect("write");
    let log = Log::open("/l", opts(&fs)).expect("open");
    assert_eq!(log.open_report().quarantined.len(), 1);
    let (records, damage) = read_all(&log);
    assert_intact(&records);
    let lost: u64 = damage.iter().map(|c| c.lost).sum();
    assert!(lost > 0);
    assert_eq!(records.len() as u64 + lost, 40);
    // A second open leaves the quarantined file alone and reports it.
    drop(log);
    let log = Log::open("/l", opts(&fs)).expect("reopen");
    assert_eq!(log.open_report().quarantined.len(), 1);
}

#[test]
fn damaged_checkpoint_restarts_delivery_from_the_oldest_record() {
    let fs = SimFs::new();
    {
        let log = Log::open("/l", opts(&fs)).expect("open");
        for seq in 1..=10 {
            log.try_append(&payload(seq)).expect("q").wait().expect("durable");
        }
        let _ = log.read_batch(10, 1 << 20).expect("read");
        log.ack_through(7).expect("ack");
        log.close().expect("close");
    }
    let mut ck = fs.read_file(Path::new("/l/checkpoint")).expect("checkpoint");
    // Both slots.
    ck[14] ^= 1;
    ck[4096 + 14] ^= 1;
    fs.write_file(Path::new("/l/checkpoint"), &ck).expect("write");
    let log = Log::open("/l", opts(&fs)).expect("open");
    assert!(log.open_report().checkpoint_problem.is_some());
    // At-least-once: everything is delivered again rather than anything skipped.
    assert_eq!(read_all(&log).0.len(), 10);
}

#[test]
fn a_torn_newer_checkpoint_slot_falls_back_to_the_older_one() {
    let fs = SimFs::new();
    let log = Log::open("/l", opts(&fs)).expect("open");
    for seq in 1..=10 {
        log.try_append(&payload(seq)).expect("q").wait().expect("durable");
    }
    let _ = log.read_batch(10, 1 << 20).expect("read");
    log.ack_through(4).expect("ack");
    log.checkpoint().expect("checkpoint at 4");
    log.ack_through(8).expect("ack");
    log.checkpoint().expect("checkpoint at 8");
    let ck = fs.read_file(Path::new("/l/checkpoint")).expect("checkpoint");
    assert_eq!(ck.len(), 8192, "two slots, written in place");
    let generation = |at: usize| u64::from_le_bytes(ck[at + 12..at + 20].try_into().expect("8"));
    let newer = if generation(0) > generation(4096) { 0 } else { 4096 };
    let after = fs.power_cut(iobp_log::sim::TornWrites::LoseAll, 1);
    drop(log);
    let mut torn = after.read_file(Path::new("/l/checkpoint")).expect("checkpoint");
    torn[newer + 22] ^= 0x55;
    after.write_file(Path::new("/l/checkpoint"), &torn).expect("write");
    let log = Log::open("/l", opts(&after)).expect("open");
    assert!(log.open_report().checkpoint_problem.is_none());
    assert_eq!(log.open_report().resume_seq, 5, "the older slot: at-least-once, never skipped");
}

#[test]
fn sequence_numbers_are_never_reused_after_the_newest_segment_header_is_damaged() {
    let fs = SimFs::new();
    build(&fs, "/l", 40, 300);
    let mut segs: Vec<u64> = iobp_log::fs::FileSystem::list_dir(&fs, Path::new("/l"))
        .expect("ls")
        .iter()
        .filter_map(|n| n.to_str().and_then(iobp_log::format::parse_segment_file_name))
        .collect();
    segs.sort_unstable();
    let newest = seg("/l", *segs.last().expect("segments"));
    let mut bytes = fs.read_file(&newest).expect("read");
    bytes[3] ^= 0x40;
    fs.write_file(&newest, &bytes).expect("write");
    // Also without the checkpoint's high-water mark: the set-aside segment's own records
    // tell how far the numbers went.
    for keep_checkpoint in [true, false] {
        let fs2 = fs.power_cut(iobp_log::sim::TornWrites::LoseAll, 1);
        if !keep_checkpoint {
            iobp_log::fs::FileSystem::remove_file(&fs2, Path::new("/l/checkpoint")).expect("rm");
        }
        let log = Log::open("/l", opts(&fs2)).expect("open");
        assert_eq!(log.open_report().quarantined.len(), 1);
        let seq = *log.try_append(b"new").expect("q").wait().expect("durable").start();
        assert_eq!(seq, 41, "numbers 1..=40 were handed out before (checkpoint {keep_checkpoint})");
        assert_eq!(log.get(41).expect("get").map(|r| r.payload), Some(b"new".to_vec()));
    }
}

#[test]
fn durable_records_that_vanished_are_reported_lost() {
    // The checkpoint's high-water mark says records up to 12 were durable; the tail that held
    // 9..=12 is gone (damage, not a torn write): reported, and their numbers not reused.
    let fs = SimFs::new();
    build(&fs, "/l", 12, 1 << 20);
    let path = seg("/l", 1);
    let full = fs.read_file(&path).expect("read");
    let mut end = SEGMENT_HEADER_LEN;
    for seq in 1..=8u64 {
        end += 24 + payload(seq).len();
    }
    fs.write_file(&path, &full[..end]).expect("truncate");
    let log = Log::open("/l", opts(&fs)).expect("open");
    assert_eq!(log.open_report().skipped_seqs, 4);
    let (records, damage) = read_all(&log);
    assert_eq!(records.len(), 8);
    assert_eq!(damage.iter().map(|c| c.lost).sum::<u64>(), 4);
    assert_eq!(*log.try_append(b"x").expect("q").wait().expect("durable").start(), 13);
}

#[test]
fn garbage_files_in_the_directory_are_reported_and_left_alone() {
    let fs = SimFs::new();
    build(&fs, "/l", 5, 1 << 20);
    fs.write_file(Path::new("/l/notes.txt"), b"hello").expect("w");
    fs.write_file(Path::new("/l/checkpoint.tmp"), b"half a checkpoint").expect("w");
    // A segment whose creation a crash interrupted: named after the next number.
    fs.write_file(Path::new("/l/00000000000000000006.seg"), b"").expect("w");
    fs.write_file(Path::new("/l/0000000000000000009.seg"), b"short name").expect("w");
    iobp_log::fs::FileSystem::create_dir_all(&fs, Path::new("/l/subdir")).expect("mkdir");
    let log = Log::open("/l", opts(&fs)).expect("open");
    let r = log.open_report();
    assert!(r.foreign_files.len() >= 3, "{r:?}");
    // The empty highest segment was an interrupted creation: removed, nothing lost.
    let (records, damage) = read_all(&log);
    assert_eq!(records.len(), 5);
    assert!(damage.is_empty());
    assert_intact(&records);
    assert!(fs.read_file(Path::new("/l/notes.txt")).is_ok());
    assert!(fs.read_file(Path::new("/l/checkpoint.tmp")).is_err(), "stale temp checkpoint removed");
}

#[cfg(unix)]
#[test]
fn non_utf8_file_names_do_not_break_open() {
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(tmp.path().join(std::ffi::OsStr::from_bytes(b"bad\xff.seg")), b"x").expect("w");
    let log = Log::open(tmp.path(), LogOptions::default()).expect("open");
    assert_eq!(log.open_report().foreign_files.len(), 1);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    /// Any bytes in any segment-named files, and any checkpoint content: open and reads
    /// never panic, and the log accepts new records afterwards.
    #[test]
    fn arbitrary_directory_contents_never_panic(
        files in prop::collection::vec((1u64..200, prop::collection::vec(any::<u8>(), 0..600)), 0..4),
        checkpoint in prop::option::of(prop::collection::vec(any::<u8>(), 0..40)),
        valid_prefix in any::<bool>(),
    ) {
        let fs = SimFs::new();
        if valid_prefix {
            build(&fs, "/l", 5, 200);
        } else {
            iobp_log::fs::FileSystem::create_dir_all(&fs, Path::new("/l")).expect("mkdir");
        }
        for (first, mut bytes) in files {
            // Half the time give the garbage a valid header (sometimes with a producer table)
            // so the record scanner is reached.
            if first % 2 == 0 {
                let producers = if first % 4 == 0 { vec![(first, 3), (first + 1, 9)] } else { vec![] };
                let h = iobp_log::format::SegmentHeader { first_seq: first, created_us: 1, producers }
                    .encode();
                bytes.splice(0..0, h);
            }
            fs.write_file(&seg("/l", first), &bytes).expect("write");
        }
        if let Some(c) = checkpoint {
            fs.write_file(Path::new("/l/checkpoint"), &c).expect("write");
        }
        let log = Log::open("/l", opts(&fs)).expect("open never fails on content");
        let _ = read_all(&log);
        let _ = log.read_range(0, 1000, 1 << 20).expect("browse");
        let _ = log.stats();
        let next = log.stats().next_seq;
        let c = log.try_append(b"still works").expect("append");
        prop_assert_eq!(*c.wait().expect("durable").start(), next);
    }
}
