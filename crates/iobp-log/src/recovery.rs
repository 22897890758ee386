//! Recovery when a log is opened.
//!
//! 1. Lock the directory; remove a leftover `checkpoint.tmp`.
//! 2. Read each segment's header. A segment whose header is damaged is renamed to
//!    `<name>.corrupt` (quarantined: set aside for an operator, never read as data) — except a
//!    last segment shorter than a header, which is a creation the crash interrupted; it cannot
//!    hold an acknowledged record (its header is synced before any record in it is), so it is
//!    removed.
//! 3. Scan the last segment record by record. A torn or partial tail is truncated (and the
//!    truncation synced); damage followed by valid records is reported and left for the
//!    reader to skip. Sealed segments are not scanned: they were synced before the next
//!    segment was created, and the reader verifies every record's checksum anyway. This keeps
//!    open time independent of how many records are buffered.
//! 4. Read the checkpoint; delivery resumes just after it.
//!
//! Nothing here panics on any content of the directory: unknown files are reported and left
//! alone, every length read from disk is bounded before use.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Corruption, Error, Result};
use crate::format::{self, SEGMENT_HEADER_LEN, SegmentHeader};
use crate::fs::{DirLock, FileSystem, read_full_at};
use crate::log::{LogOptions, SegmentInfo, now_us};
use crate::scan::{ScanItem, Scanner};
use crate::writer::ActiveSegment;

/// Name of the checkpoint file.
pub const CHECKPOINT_FILE: &str = "checkpoint";
/// Name of the checkpoint file while it is being written.
pub const CHECKPOINT_TMP: &str = "checkpoint.tmp";
/// Suffix given to quarantined segment files.
pub const QUARANTINE_SUFFIX: &str = ".corrupt";

/// What recovery found and did.
#[derive(Debug, Clone, Default)]
pub struct OpenReport {
    /// Segment files in use.
    pub segments: usize,
    /// Bytes removed from a torn tail.
    pub truncated_bytes: u64,
    /// Segment files set aside because their header was damaged.
    pub quarantined: Vec<PathBuf>,
    /// Files in the directory the log does not know; left alone.
    pub foreign_files: Vec<OsString>,
    /// A damaged or unreadable checkpoint (delivery then restarts from the oldest record).
    pub checkpoint_problem: Option<String>,
    /// Damage found in the last segment, followed by valid records.
    pub corruption: Vec<Corruption>,
    /// Where delivery resumes.
    pub resume_seq: u64,
    /// The sequence number the next append gets.
    pub next_seq: u64,
    /// Time spent in recovery.
    pub duration: Duration,
}

pub(crate) struct Recovered {
    pub lock: Box<dyn DirLock>,
    pub segments: Vec<SegmentInfo>,
    pub active: ActiveSegment,
    pub next_seq: u64,
    pub done_seq: u64,
    pub bytes: u64,
    pub report: OpenReport,
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |e| Error::io(op, path, e)
}

pub(crate) fn recover(fs: &dyn FileSystem, dir: &Path, opts: &LogOptions) -> Result<Recovered> {
    let started = Instant::now();
    create_dir_durably(fs, dir)?;
    let lock = fs.lock_dir(dir).map_err(|e| {
        if e.kind() == std::io::ErrorKind::WouldBlock {
            Error::Locked(dir.to_path_buf())
        } else {
            Error::io("lock log directory", dir, e)
        }
    })?;
    let mut report = OpenReport::default();
    let mut seg_seqs = Vec::new();
    let mut highest_seen = 0u64;
    let mut have_checkpoint = false;
    let mut dir_dirty = false;
    for name in fs.list_dir(dir).map_err(io_err("list log directory", dir))? {
        let Some(s) = name.to_str() else {
            report.foreign_files.push(name);
            continue;
        };
        if let Some(seq) = format::parse_segment_file_name(s) {
            seg_seqs.push(seq);
            highest_seen = highest_seen.max(seq);
        } else if s == CHECKPOINT_FILE {
            have_checkpoint = true;
        } else if s == CHECKPOINT_TMP {
            let p = dir.join(s);
            fs.remove_file(&p).map_err(io_err("remove stale checkpoint", &p))?;
            dir_dirty = true;
        } else if s == crate::LOCK_FILE {
        } else if let Some(q) = s.strip_suffix(QUARANTINE_SUFFIX) {
            if let Some(seq) = format::parse_segment_file_name(q) {
                highest_seen = highest_seen.max(seq);
            }
            report.quarantined.push(dir.join(s));
        } else {
            report.foreign_files.push(name);
        }
    }
    seg_seqs.sort_unstable();

    // Headers.
    let mut segments: Vec<SegmentInfo> = Vec::new();
    let count = seg_seqs.len();
    for (i, &seq) in seg_seqs.iter().enumerate() {
        let path = dir.join(format::segment_file_name(seq));
        let file = fs.open_read(&path).map_err(io_err("open segment", &path))?;
        let len = file.len().map_err(io_err("stat segment", &path))?;
        let mut hdr = [0u8; SEGMENT_HEADER_LEN];
        let n = read_full_at(&*file, &mut hdr, 0).map_err(io_err("read segment header", &path))?;
        drop(file);
        let decoded = SegmentHeader::decode(&hdr[..n]);
        match decoded {
            Ok(h) if h.first_seq == seq => segments.push(SegmentInfo { first_seq: seq, bytes: len, created_us: h.created_us }),
            _ if i + 1 == count && len < SEGMENT_HEADER_LEN as u64 => {
                fs.remove_file(&path).map_err(io_err("remove unfinished segment", &path))?;
                dir_dirty = true;
            }
            other => {
                let why = match other {
                    Ok(h) => format!("header says first seq {} but the name says {seq}", h.first_seq),
                    Err(e) => e.describe(),
                };
                let q = dir.join(format!("{}{QUARANTINE_SUFFIX}", format::segment_file_name(seq)));
                fs.rename(&path, &q).map_err(io_err("quarantine segment", &path))?;
                dir_dirty = true;
                report.corruption.push(Corruption {
                    segment: q.clone(),
                    offset: 0,
                    first_lost_seq: seq,
                    lost: 0,
                    reason: format!("segment set aside: {why}"),
                });
                report.quarantined.push(q);
            }
        }
    }

    // Checkpoint.
    let mut checkpoint = None;
    if have_checkpoint {
        let path = dir.join(CHECKPOINT_FILE);
        match read_checkpoint(fs, &path) {
            Ok(done) => checkpoint = Some(done),
            Err(why) => report.checkpoint_problem = Some(why),
        }
    }

    // The active (last) segment: scan it and cut off a torn tail.
    let (active, next_seq) = match segments.last().copied() {
        Some(last) => recover_tail(fs, dir, last, opts, &mut report)?,
        None => {
            // Never reuse sequence numbers a checkpoint or a set-aside segment has seen.
            let first = checkpoint.map_or(1, |d| d + 1).max(highest_seen).max(1);
            let path = dir.join(format::segment_file_name(first));
            let created_us = now_us();
            let file = fs.create_new(&path).map_err(io_err("create segment", &path))?;
            let header = SegmentHeader { first_seq: first, created_us }.encode();
            crate::fs::write_all_at(&*file, &header, 0).map_err(io_err("write segment header", &path))?;
            file.sync_data().map_err(io_err("sync segment", &path))?;
            dir_dirty = true;
            segments.push(SegmentInfo { first_seq: first, bytes: SEGMENT_HEADER_LEN as u64, created_us });
            (ActiveSegment { first_seq: first, file, len: SEGMENT_HEADER_LEN as u64 }, first)
        }
    };
    if let Some(last) = segments.last_mut() {
        last.bytes = active.len;
    }
    if dir_dirty {
        fs.sync_dir(dir).map_err(io_err("sync log directory", dir))?;
    }
    let first_seq = segments.first().map_or(next_seq, |s| s.first_seq);
    let done_seq = checkpoint.unwrap_or(first_seq - 1).clamp(first_seq - 1, next_seq - 1);
    let bytes = segments.iter().map(|s| s.bytes).sum();
    report.segments = segments.len();
    report.resume_seq = done_seq + 1;
    report.next_seq = next_seq;
    report.duration = started.elapsed();
    Ok(Recovered { lock, segments, active, next_seq, done_seq, bytes, report })
}

/// Creates `dir` and any missing parents, then syncs the parent of each directory created, so
/// that a power cut cannot lose the log's directory (and every segment in it) with it.
fn create_dir_durably(fs: &dyn FileSystem, dir: &Path) -> Result<()> {
    let mut created = Vec::new();
    let mut p = Some(dir);
    while let Some(d) = p.filter(|d| !d.as_os_str().is_empty() && !fs.dir_exists(d)) {
        created.push(d);
        p = d.parent();
    }
    if created.is_empty() {
        return Ok(());
    }
    fs.create_dir_all(dir).map_err(io_err("create log directory", dir))?;
    for d in created.iter().rev() {
        if let Some(parent) = d.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs.sync_dir(parent).map_err(io_err("sync directory", parent))?;
        }
    }
    Ok(())
}

fn read_checkpoint(fs: &dyn FileSystem, path: &Path) -> std::result::Result<u64, String> {
    let file = fs.open_read(path).map_err(|e| format!("cannot open checkpoint: {e}"))?;
    let mut buf = [0u8; format::CHECKPOINT_LEN + 1];
    let n = read_full_at(&*file, &mut buf, 0).map_err(|e| format!("cannot read checkpoint: {e}"))?;
    format::decode_checkpoint(&buf[..n]).map_err(|e| format!("damaged checkpoint: {}", e.describe()))
}

fn recover_tail(
    fs: &dyn FileSystem,
    dir: &Path,
    seg: SegmentInfo,
    opts: &LogOptions,
    report: &mut OpenReport,
) -> Result<(ActiveSegment, u64)> {
    let path = dir.join(format::segment_file_name(seg.first_seq));
    let file = fs.open_rw(&path).map_err(io_err("open segment", &path))?;
    let len = file.len().map_err(io_err("stat segment", &path))?;
    let mut scanner = Scanner::new(file, SEGMENT_HEADER_LEN as u64, seg.first_seq, len, opts.max_record_bytes);
    let valid_end = loop {
        match scanner.next_item().map_err(io_err("scan segment", &path))? {
            ScanItem::Record(_) => {}
            ScanItem::Corrupt { offset, problem, expected_seq, resume_seq, .. } => {
                report.corruption.push(Corruption {
                    segment: path.clone(),
                    offset,
                    first_lost_seq: expected_seq,
                    lost: resume_seq - expected_seq,
                    reason: problem.describe().to_string(),
                });
            }
            ScanItem::End { offset, .. } => break offset,
        }
    };
    let next_seq = scanner.expected_seq();
    let file = scanner.into_source();
    if valid_end < len {
        file.set_len(valid_end).map_err(io_err("truncate torn tail of", &path))?;
        report.truncated_bytes = len - valid_end;
    }
    // Whatever the crash left in the page cache becomes durable now, so that everything the
    // reader can see from here on is on disk.
    file.sync_data().map_err(io_err("sync segment", &path))?;
    Ok((ActiveSegment { first_seq: seg.first_seq, file, len: valid_end }, next_seq))
}
