//! Recovery when a log is opened.
//!
//! 0. When a failed instance of this log is reopened in the same process
//!    ([`crate::Log::reopen`]): remove segment files created after its last published
//!    segment, and truncate that segment to its last known durable end. Those bytes were
//!    never acknowledged, and after a failed `fdatasync` the page cache may still show them
//!    although the disk does not hold them.
//! 1. Lock the directory; remove a leftover `checkpoint.tmp`.
//! 2. Read each segment's header. A segment whose header is damaged is renamed to
//!    `<name>.corrupt` (quarantined: set aside for an operator, never read as data) — except a
//!    last segment shorter than a header, which is a creation the crash interrupted; it cannot
//!    hold an acknowledged record (its header is synced before any record in it is), so it is
//!    removed.
//! 3. Scan the last segment record by record. A torn or partial tail is truncated (and the
//!    truncation synced). Damage followed by valid records is a torn write (a later page of an
//!    unsynced round reached the disk, an earlier one did not) when it lies beyond the
//!    checkpoint's high-water mark: nothing from the damage on was acknowledged, and it is
//!    truncated there, so no later record sits behind the hole and no producer position
//!    counts past it. Within the high-water mark it is damage to durable data: reported and
//!    left for the reader to skip. Sealed segments are not scanned: they were synced before the next
//!    segment was created, and the reader verifies every record's checksum anyway. This keeps
//!    open time independent of how many records are buffered.
//! 4. Read the checkpoint (either slot, or a version 1 file); delivery resumes just after its
//!    Done position. A version 1, missing or damaged file is replaced by a version 2 file
//!    (temp file, fsync, rename, directory fsync), once; from then on checkpoints are written
//!    in place.
//! 5. Sequence numbers never go backwards: the next one is above the checkpoint's
//!    high-water mark and above every record found in a newest segment set aside for a
//!    damaged header; if that leaves a gap after the last segment, a new segment starts
//!    above it.
//! 6. The producer table is the last segment header's, updated by the tagged records of the
//!    last segment (step 3 reads them anyway): exactly the tags that survived.
//! 7. Read the log's identity from `id`, or create it (a new log, or one from a version
//!    that had none).
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
use crate::writer::{ActiveSegment, Producers};

/// Name of the checkpoint file.
pub const CHECKPOINT_FILE: &str = "checkpoint";
/// Name of the checkpoint file while it is being written.
pub const CHECKPOINT_TMP: &str = "checkpoint.tmp";
/// Suffix given to quarantined segment files.
pub const QUARANTINE_SUFFIX: &str = ".corrupt";
/// Name of the file holding the log's identity.
pub const ID_FILE: &str = "id";
/// Name of the identity file while it is being written.
pub const ID_TMP: &str = "id.tmp";
const ID_MAGIC: [u8; 8] = *b"IOBPLID\0";
const ID_LEN: usize = 20;

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
    /// A damaged or unreadable identity file (a new identity was created).
    pub id_problem: Option<String>,
    /// Damage found in the last segment, followed by valid records.
    pub corruption: Vec<Corruption>,
    /// Where delivery resumes.
    pub resume_seq: u64,
    /// The sequence number the next append gets.
    pub next_seq: u64,
    /// Bytes past the last durable position of a failed instance, removed on reopen.
    pub untrusted_bytes: u64,
    /// Sequence numbers skipped so that none is used twice (records lost with a damaged
    /// newest segment).
    pub skipped_seqs: u64,
    /// Time spent in recovery.
    pub duration: Duration,
}

/// What a reopened log carries over from its failed instance.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Resume {
    /// The last segment the failed instance published and its durable end: nothing past it is
    /// trusted.
    pub trusted: Option<(u64, u64)>,
    /// The Done position the old instance reached (0: none).
    pub done_seq: u64,
}

pub(crate) struct Recovered {
    pub lock: Box<dyn DirLock>,
    /// The checkpoint as it is in the file now.
    pub checkpoint: format::Checkpoint,
    /// The checkpoint file, open for in-place writes.
    pub checkpoint_file: Box<dyn crate::fs::FileHandle>,
    pub id: u64,
    pub producers: Producers,
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

pub(crate) fn recover(
    fs: &dyn FileSystem,
    dir: &Path,
    opts: &LogOptions,
    resume: Resume,
) -> Result<Recovered> {
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
    let mut dir_dirty = false;
    let mut listing = list(fs, dir, &mut report, &mut dir_dirty)?;
    if let Some(trusted) = resume.trusted {
        report.untrusted_bytes = drop_untrusted(fs, dir, &mut listing, trusted, &mut dir_dirty)?;
    }
    let (mut segments, table, quarantined_top) =
        check_headers(fs, dir, &listing.segments, opts, &mut report, &mut dir_dirty)?;
    let mut producers = Producers::from_entries(&table);
    let id = read_or_create_id(fs, dir, listing.have_id, &mut report)?;
    let mut checkpoint = None;
    let mut checkpoint_is_v2 = false;
    if listing.have_checkpoint {
        match read_checkpoint(fs, &dir.join(CHECKPOINT_FILE)) {
            Ok((c, v2)) => {
                checkpoint = Some(c);
                checkpoint_is_v2 = v2;
            }
            Err(why) => report.checkpoint_problem = Some(why),
        }
    }
    let high_water = checkpoint.map_or(0, |c| c.high_water);
    // Never reuse a number that a durable record, a checkpoint or a set-aside segment had.
    let floor = high_water
        .max(checkpoint.map_or(0, |c| c.done_seq))
        .max(quarantined_top)
        .saturating_add(1)
        .max(listing.highest_seen)
        .max(1);
    let (mut active, mut next_seq) = if let Some(last) = segments.last().copied() {
        recover_tail(fs, dir, last, opts, high_water, &mut report, &mut producers)?
    } else {
        let (active, info) = create_segment(fs, dir, floor, &producers)?;
        segments.push(info);
        dir_dirty = true;
        (active, floor)
    };
    if let Some(last) = segments.last_mut() {
        last.bytes = active.len;
    }
    if floor > next_seq {
        // Records numbered up to `floor - 1` existed; the next segment starts above them.
        report.skipped_seqs = floor - next_seq;
        let (a, info) = create_segment(fs, dir, floor, &producers)?;
        segments.push(info);
        dir_dirty = true;
        active = a;
        next_seq = floor;
    }
    if dir_dirty {
        fs.sync_dir(dir).map_err(io_err("sync log directory", dir))?;
    }
    let first_seq = segments.first().map_or(next_seq, |s| s.first_seq);
    let found = checkpoint.map_or(first_seq - 1, |c| c.done_seq);
    let done_seq = found.max(resume.done_seq).clamp(first_seq - 1, next_seq - 1);
    let (checkpoint, checkpoint_file) = if let Some(c) = checkpoint.filter(|_| checkpoint_is_v2) {
        let path = dir.join(CHECKPOINT_FILE);
        (c, fs.open_rw(&path).map_err(io_err("open checkpoint", &path))?)
    } else {
        let c = format::Checkpoint {
            generation: checkpoint.map_or(0, |c| c.generation) + 1,
            done_seq,
            high_water: next_seq - 1,
            written_us: now_us(),
        };
        (c, create_checkpoint_file(fs, dir, &c)?)
    };
    let bytes = segments.iter().map(|s| s.bytes).sum();
    report.segments = segments.len();
    report.resume_seq = done_seq + 1;
    report.next_seq = next_seq;
    report.duration = started.elapsed();
    Ok(Recovered {
        lock,
        checkpoint,
        checkpoint_file,
        id,
        producers,
        segments,
        active,
        next_seq,
        done_seq,
        bytes,
        report,
    })
}

/// Step 0: removes segments created after the trusted one and truncates the trusted one to
/// its durable end. Returns the bytes removed.
fn drop_untrusted(
    fs: &dyn FileSystem,
    dir: &Path,
    listing: &mut Listing,
    (segment, end): (u64, u64),
    dirty: &mut bool,
) -> Result<u64> {
    let mut removed = 0;
    for &seq in listing.segments.iter().filter(|&&s| s > segment) {
        let path = dir.join(format::segment_file_name(seq));
        let len = fs.open_read(&path).and_then(|f| f.size()).unwrap_or(0);
        fs.remove_file(&path).map_err(io_err("remove untrusted segment", &path))?;
        removed += len;
        *dirty = true;
    }
    listing.segments.retain(|&s| s <= segment);
    let path = dir.join(format::segment_file_name(segment));
    if listing.segments.contains(&segment) {
        let file = fs.open_rw(&path).map_err(io_err("open segment", &path))?;
        let len = file.size().map_err(io_err("stat segment", &path))?;
        if len > end {
            file.set_len(end).map_err(io_err("truncate untrusted tail of", &path))?;
            file.sync_data().map_err(io_err("sync segment", &path))?;
            removed += len - end;
        }
    }
    if *dirty {
        // The removals must be durable before anything is appended after them.
        fs.sync_dir(dir).map_err(io_err("sync log directory", dir))?;
        *dirty = false;
    }
    Ok(removed)
}

/// Writes a new checkpoint file holding `c` (temp file, fsync, rename, directory fsync) and
/// opens it for in-place writes.
fn create_checkpoint_file(
    fs: &dyn FileSystem,
    dir: &Path,
    c: &format::Checkpoint,
) -> Result<Box<dyn crate::fs::FileHandle>> {
    let tmp = dir.join(CHECKPOINT_TMP);
    let path = dir.join(CHECKPOINT_FILE);
    let file = fs.create_truncate(&tmp).map_err(io_err("create", &tmp))?;
    crate::fs::write_all_at(&*file, &format::encode_checkpoint_file(c), 0)
        .map_err(io_err("write", &tmp))?;
    file.sync_data().map_err(io_err("sync", &tmp))?;
    fs.rename(&tmp, &path).map_err(io_err("rename", &tmp))?;
    fs.sync_dir(dir).map_err(io_err("sync log directory", dir))?;
    Ok(file)
}

struct Listing {
    /// Segment first sequence numbers, ascending.
    segments: Vec<u64>,
    /// The highest first sequence number of any segment file, quarantined ones included.
    highest_seen: u64,
    have_checkpoint: bool,
    have_id: bool,
}

/// Sorts the directory's entries into segments, the checkpoint and everything else; removes
/// a leftover temporary checkpoint.
fn list(
    fs: &dyn FileSystem,
    dir: &Path,
    report: &mut OpenReport,
    dirty: &mut bool,
) -> Result<Listing> {
    let mut l =
        Listing { segments: Vec::new(), highest_seen: 0, have_checkpoint: false, have_id: false };
    for name in fs.list_dir(dir).map_err(io_err("list log directory", dir))? {
        let Some(s) = name.to_str() else {
            report.foreign_files.push(name);
            continue;
        };
        if let Some(seq) = format::parse_segment_file_name(s) {
            l.segments.push(seq);
            l.highest_seen = l.highest_seen.max(seq);
        } else if s == CHECKPOINT_FILE {
            l.have_checkpoint = true;
        } else if s == ID_FILE {
            l.have_id = true;
        } else if s == CHECKPOINT_TMP || s == ID_TMP {
            let p = dir.join(s);
            fs.remove_file(&p).map_err(io_err("remove stale checkpoint", &p))?;
            *dirty = true;
        } else if let Some(q) = s.strip_suffix(QUARANTINE_SUFFIX) {
            if let Some(seq) = format::parse_segment_file_name(q) {
                l.highest_seen = l.highest_seen.max(seq);
            }
            report.quarantined.push(dir.join(s));
        } else if s != crate::LOCK_FILE {
            report.foreign_files.push(name);
        }
    }
    l.segments.sort_unstable();
    Ok(l)
}

/// The segments found, the producer table of the last one, and the highest sequence number
/// found in a newest segment set aside (0: none).
type Headers = (Vec<SegmentInfo>, Vec<(u64, u64)>, u64);

/// Reads every segment header; sets aside segments whose header is damaged. Returns the
/// segments and the producer table of the last one.
fn check_headers(
    fs: &dyn FileSystem,
    dir: &Path,
    seqs: &[u64],
    opts: &LogOptions,
    report: &mut OpenReport,
    dirty: &mut bool,
) -> Result<Headers> {
    let mut segments = Vec::with_capacity(seqs.len());
    let mut table = Vec::new();
    let mut quarantined_top = 0;
    for (i, &seq) in seqs.iter().enumerate() {
        let path = dir.join(format::segment_file_name(seq));
        let file = fs.open_read(&path).map_err(io_err("open segment", &path))?;
        let len = file.size().map_err(io_err("stat segment", &path))?;
        let mut hdr = vec![0u8; SEGMENT_HEADER_LEN];
        let n = read_full_at(&*file, &mut hdr, 0).map_err(io_err("read segment header", &path))?;
        hdr.truncate(n);
        // The fixed part announces the full length (bounded by the producer limit).
        if let Ok(full) = SegmentHeader::encoded_len(&hdr)
            && full > n
            && n == SEGMENT_HEADER_LEN
        {
            hdr.resize(full, 0);
            let m = read_full_at(&*file, &mut hdr[n..], n as u64)
                .map_err(io_err("read segment header", &path))?;
            hdr.truncate(n + m);
        }
        drop(file);
        let why = match SegmentHeader::decode(&hdr) {
            Ok((h, data_start)) if h.first_seq == seq => {
                segments.push(SegmentInfo {
                    first_seq: seq,
                    bytes: len,
                    created_us: h.created_us,
                    data_start: data_start as u64,
                });
                table = h.producers;
                continue;
            }
            // A creation the crash interrupted: it cannot hold an acknowledged record. (A
            // last segment whose longer header is cut short is set aside instead: its length
            // field could itself be the damage, and setting aside loses nothing.)
            _ if i + 1 == seqs.len() && len < SEGMENT_HEADER_LEN as u64 => {
                fs.remove_file(&path).map_err(io_err("remove unfinished segment", &path))?;
                *dirty = true;
                continue;
            }
            Ok((h, _)) => format!("header says first seq {} but the name says {seq}", h.first_seq),
            Err(e) => e.describe(),
        };
        if i + 1 == seqs.len() {
            // The newest segment: its records may be the newest numbers handed out; find the
            // highest so that none is used again.
            quarantined_top = highest_seq_in(fs, &path, seq, opts).unwrap_or(seq);
        }
        let q = dir.join(format!("{}{QUARANTINE_SUFFIX}", format::segment_file_name(seq)));
        fs.rename(&path, &q).map_err(io_err("quarantine segment", &path))?;
        *dirty = true;
        report.corruption.push(Corruption {
            segment: q.clone(),
            offset: 0,
            first_lost_seq: seq,
            lost: 0,
            reason: format!("segment set aside: {why}"),
        });
        report.quarantined.push(q);
    }
    Ok((segments, table, quarantined_top))
}

/// The highest sequence number of a valid record in a segment whose header is damaged: the
/// scan starts at the file's beginning and resynchronises onto the first record.
fn highest_seq_in(
    fs: &dyn FileSystem,
    path: &Path,
    first_seq: u64,
    opts: &LogOptions,
) -> Option<u64> {
    let file = fs.open_read(path).ok()?;
    let len = file.size().ok()?;
    let mut scanner =
        Scanner::new(file, 0, first_seq.saturating_sub(1), len, opts.max_record_bytes);
    let mut top = None;
    loop {
        match scanner.next_item().ok()? {
            ScanItem::Record(m) => top = Some(m.seq),
            ScanItem::Corrupt { .. } => {}
            ScanItem::End { .. } => return top,
        }
    }
}

/// The log's identity: read from [`ID_FILE`], or created (temp file, fsync, rename,
/// directory fsync) when missing or damaged.
fn read_or_create_id(
    fs: &dyn FileSystem,
    dir: &Path,
    exists: bool,
    report: &mut OpenReport,
) -> Result<u64> {
    let path = dir.join(ID_FILE);
    if exists {
        let mut buf = [0u8; ID_LEN + 1];
        let read = fs
            .open_read(&path)
            .and_then(|f| read_full_at(&*f, &mut buf, 0))
            .map_err(|e| format!("cannot read the log identity: {e}"));
        match read.and_then(|n| decode_id(&buf[..n])) {
            Ok(id) => return Ok(id),
            Err(why) => report.id_problem = Some(why),
        }
    }
    let id = new_id(dir);
    let mut b = [0u8; ID_LEN];
    b[0..8].copy_from_slice(&ID_MAGIC);
    b[8..16].copy_from_slice(&id.to_le_bytes());
    let crc = crc32c::crc32c(&b[0..16]);
    b[16..20].copy_from_slice(&crc.to_le_bytes());
    let tmp = dir.join(ID_TMP);
    let file = fs.create_truncate(&tmp).map_err(io_err("create", &tmp))?;
    crate::fs::write_all_at(&*file, &b, 0).map_err(io_err("write", &tmp))?;
    file.sync_data().map_err(io_err("sync", &tmp))?;
    drop(file);
    fs.rename(&tmp, &path).map_err(io_err("rename", &tmp))?;
    fs.sync_dir(dir).map_err(io_err("sync log directory", dir))?;
    Ok(id)
}

/// Raises the checkpoint in `dir` to a Done position and high-water mark a commit journal
/// recorded (never lowers it): the next slot is written and synced. A missing, damaged or
/// version 1 file is left for recovery (which then delivers again from an older position:
/// never a loss).
pub(crate) fn raise_checkpoint(
    fs: &dyn FileSystem,
    dir: &Path,
    done: u64,
    high_water: u64,
) -> Result<()> {
    let path = dir.join(CHECKPOINT_FILE);
    let Ok((c, in_place)) = read_checkpoint(fs, &path) else { return Ok(()) };
    if !in_place || (done <= c.done_seq && high_water <= c.high_water) {
        return Ok(());
    }
    let n = format::Checkpoint {
        generation: c.generation + 1,
        done_seq: done.max(c.done_seq),
        high_water: high_water.max(c.high_water),
        written_us: now_us(),
    };
    let file = fs.open_rw(&path).map_err(io_err("open", &path))?;
    let at = format::checkpoint_slot_offset(n.generation) as u64;
    crate::fs::write_all_at(&*file, &format::encode_checkpoint_slot(&n), at)
        .map_err(io_err("write", &path))?;
    file.sync_data().map_err(io_err("sync", &path))?;
    Ok(())
}

/// The identity of the log in `dir`, if it has a valid identity file (no side effects).
pub(crate) fn peek_id(fs: &dyn FileSystem, dir: &Path) -> Option<u64> {
    let mut buf = [0u8; ID_LEN + 1];
    let f = fs.open_read(&dir.join(ID_FILE)).ok()?;
    let n = read_full_at(&*f, &mut buf, 0).ok()?;
    decode_id(&buf[..n]).ok()
}

fn decode_id(b: &[u8]) -> std::result::Result<u64, String> {
    if b.len() != ID_LEN || b[0..8] != ID_MAGIC {
        return Err("damaged log identity file".into());
    }
    if crc32c::crc32c(&b[0..16]).to_le_bytes() != b[16..20] {
        return Err("log identity checksum mismatch".into());
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&b[8..16]);
    Ok(u64::from_le_bytes(id))
}

/// A random 64-bit identity, from the standard library's per-process random hash keys mixed
/// with the time and the directory (no extra dependency for one number per log).
fn new_id(dir: &Path) -> u64 {
    use std::hash::{BuildHasher, Hash, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    now_us().hash(&mut h);
    std::process::id().hash(&mut h);
    dir.hash(&mut h);
    Instant::now().hash(&mut h);
    // 0 is kept free to mean "no producer".
    h.finish().max(1)
}

/// Creates a new last segment starting at `first` (the caller syncs the directory).
fn create_segment(
    fs: &dyn FileSystem,
    dir: &Path,
    first: u64,
    producers: &Producers,
) -> Result<(ActiveSegment, SegmentInfo)> {
    let path = dir.join(format::segment_file_name(first));
    let created_us = now_us();
    let file = fs.create_new(&path).map_err(io_err("create segment", &path))?;
    let header =
        SegmentHeader { first_seq: first, created_us, producers: producers.entries() }.encode();
    crate::fs::write_all_at(&*file, &header, 0).map_err(io_err("write segment header", &path))?;
    file.sync_data().map_err(io_err("sync segment", &path))?;
    let len = header.len() as u64;
    Ok((
        ActiveSegment { first_seq: first, file: file.into(), len },
        SegmentInfo { first_seq: first, bytes: len, created_us, data_start: len },
    ))
}

/// Creates `dir` and any missing parents, then syncs the parent of each directory created, so
/// that a power cut cannot lose the log's directory (and every segment in it) with it.
pub(crate) fn create_dir_durably(fs: &dyn FileSystem, dir: &Path) -> Result<()> {
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

/// The checkpoint, and whether the file is a version 2 file that can be written in place.
fn read_checkpoint(
    fs: &dyn FileSystem,
    path: &Path,
) -> std::result::Result<(format::Checkpoint, bool), String> {
    let file = fs.open_read(path).map_err(|e| format!("cannot open checkpoint: {e}"))?;
    let mut buf = vec![0u8; format::CHECKPOINT_FILE_LEN + 1];
    let n =
        read_full_at(&*file, &mut buf, 0).map_err(|e| format!("cannot read checkpoint: {e}"))?;
    let c = format::decode_checkpoint_file(&buf[..n])
        .map_err(|e| format!("damaged checkpoint: {}", e.describe()))?;
    Ok((c, n == format::CHECKPOINT_FILE_LEN))
}

fn recover_tail(
    fs: &dyn FileSystem,
    dir: &Path,
    seg: SegmentInfo,
    opts: &LogOptions,
    high_water: u64,
    report: &mut OpenReport,
    producers: &mut Producers,
) -> Result<(ActiveSegment, u64)> {
    let path = dir.join(format::segment_file_name(seg.first_seq));
    let file = fs.open_rw(&path).map_err(io_err("open segment", &path))?;
    let len = file.size().map_err(io_err("stat segment", &path))?;
    let mut scanner = Scanner::new(file, seg.data_start, seg.first_seq, len, opts.max_record_bytes);
    let (valid_end, next_seq) = loop {
        match scanner.next_item().map_err(io_err("scan segment", &path))? {
            ScanItem::Record(m) => {
                if let Some((producer, pseq)) = m.tag {
                    producers.set(producer, pseq, m.seq);
                }
            }
            ScanItem::Corrupt { offset, expected_seq, .. } if expected_seq > high_water => {
                // A torn write: truncated below; the next number is the first one it lost.
                break (offset, expected_seq);
            }
            ScanItem::Corrupt { offset, problem, expected_seq, resume_seq, .. } => {
                report.corruption.push(Corruption {
                    segment: path.clone(),
                    offset,
                    first_lost_seq: expected_seq,
                    lost: resume_seq - expected_seq,
                    reason: problem.describe().to_string(),
                });
            }
            ScanItem::End { offset, .. } => break (offset, scanner.expected_seq()),
        }
    };
    let file = scanner.into_source();
    if valid_end < len {
        file.set_len(valid_end).map_err(io_err("truncate torn tail of", &path))?;
        report.truncated_bytes = len - valid_end;
    }
    // Whatever the crash left in the page cache becomes durable now, so that everything the
    // reader can see from here on is on disk.
    file.sync_data().map_err(io_err("sync segment", &path))?;
    Ok((ActiveSegment { first_seq: seg.first_seq, file: file.into(), len: valid_end }, next_seq))
}
