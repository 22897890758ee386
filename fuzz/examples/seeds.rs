//! Writes the committed seed corpora, `fuzz/seeds/<target>/`: small, valid inputs for every
//! fuzz target, made with the crates' own encoders (a log and a commit group on the simulated
//! file system, the codec's encoders, the relay protocol's encoders), laid out the way each
//! target reads its input. The fuzzer starts from them instead of from nothing, so it reaches
//! the checksummed paths (a record that verifies, a journal entry that replays) at once.
//!
//! ```sh
//! cd fuzz && cargo run --example seeds            # into fuzz/seeds
//! cd fuzz && cargo run --example seeds -- DIR     # elsewhere, to compare
//! ```
//!
//! Rewrites every seed (segment headers and records carry timestamps, so the bytes change from
//! run to run; what they exercise does not). See `fuzz/README.md`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use iobp_codec::hl7::{AckCode, build_ack};
use iobp_codec::{Encoder, Framing};
use iobp_log::fs::FileSystem;
use iobp_log::sim::SimFs;
use iobp_log::{CommitGroup, GroupOptions, Log, LogOptions};

/// An HL7 v2 ADT message, as an instrument or a hospital system sends it.
const ADT: &[u8] = b"MSH|^~\\&|LAB|HOSP|EHR|HOSP|20260101120000||ADT^A01|MSG00001|P|2.5\r\
PID|1||12345^^^HOSP||DOE^JOHN||19700101|M\r";

/// The segment size of the fuzz targets' logs: small, so that a few records fill several.
const SEGMENT_BYTES: u64 = 512;

type Error = Box<dyn std::error::Error>;

fn main() -> Result<(), Error> {
    let root = std::env::args_os()
        .nth(1)
        .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds"), PathBuf::from);
    let mut seeds = Seeds { root, written: 0 };
    segment_scan_and_log_open(&mut seeds)?;
    journal_replay(&mut seeds)?;
    deframe(&mut seeds)?;
    hl7(&mut seeds)?;
    astm(&mut seeds)?;
    relay_frames(&mut seeds)?;
    println!("{} seeds written under {}", seeds.written, seeds.root.display());
    Ok(())
}

struct Seeds {
    root: PathBuf,
    written: usize,
}

impl Seeds {
    fn write(&mut self, target: &str, name: &str, bytes: &[u8]) -> Result<(), Error> {
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(name), bytes)?;
        self.written += 1;
        Ok(())
    }
}

/// `[kind or generation u8][len u16 LE][bytes]`: one file as `log_open` and `journal_replay`
/// read them.
fn file_entry(out: &mut Vec<u8>, kind: u8, bytes: &[u8]) -> Result<(), Error> {
    let len = u16::try_from(bytes.len()).map_err(|_| "a seed file must fit in 64 KiB")?;
    out.push(kind);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

/// A log with a few plain and tagged records over several segments, some acknowledged:
/// its segments and checkpoint file, whole (segment_scan) and as a log directory (log_open).
fn segment_scan_and_log_open(seeds: &mut Seeds) -> Result<(), Error> {
    let fs = SimFs::new();
    fs.create_dir_all(Path::new("/l"))?;
    let opts = LogOptions {
        fs: Arc::new(fs.clone()),
        segment_bytes: SEGMENT_BYTES,
        ..LogOptions::default()
    };
    let log = Log::open("/l", opts)?;
    for i in 0..12 {
        log.try_append(format!("record {i}: MSH|^~\\&|LAB").as_bytes())?.wait()?;
    }
    // An idempotent producer (the relay's): tagged records and a producer table in the
    // segment headers that follow.
    let tagged: Vec<(u64, Vec<u8>)> =
        (1..=4).map(|p| (p, format!("relayed {p}").into_bytes())).collect();
    log.try_append_tagged(7, &tagged)?.commit.wait()?;
    for i in 12..20 {
        log.try_append(format!("record {i}").as_bytes())?.wait()?;
    }
    let batch = log.read_batch(10, 1 << 16)?;
    let last = batch.iter().last().map(|r| r.seq).ok_or("no records read back")?;
    log.ack_through(last)?;
    log.checkpoint()?;
    log.close()?;

    let mut names: Vec<String> = fs
        .list_dir(Path::new("/l"))?
        .into_iter()
        .filter_map(|n| n.into_string().ok())
        .filter(|n| iobp_log::format::parse_segment_file_name(n).is_some())
        .collect();
    names.sort();
    let checkpoint = fs.read_file(Path::new("/l/checkpoint"))?;
    let segments: Vec<(u64, Vec<u8>)> = names
        .iter()
        .map(|n| {
            let first = iobp_log::format::parse_segment_file_name(n).expect("a segment name");
            Ok::<_, Error>((first, fs.read_file(&Path::new("/l").join(n))?))
        })
        .collect::<Result<_, _>>()?;
    if segments.len() < 3 {
        return Err(format!("expected several segments, got {names:?}").into());
    }

    seeds.write("segment_scan", "segment-first", &segments[0].1)?;
    seeds.write("segment_scan", "segment-with-producers", &segments[segments.len() - 1].1)?;
    seeds.write("segment_scan", "checkpoint", &checkpoint)?;
    // The target's second reading: 8 bytes of first sequence number, then bare records.
    let (first, bytes) = &segments[0];
    let (_, header_len) = iobp_log::format::SegmentHeader::decode(bytes)
        .map_err(iobp_log::format::HeaderError::describe)?;
    let mut raw = first.to_le_bytes().to_vec();
    raw.extend_from_slice(&bytes[header_len..]);
    seeds.write("segment_scan", "records-after-a-sequence-number", &raw)?;

    // log_open: kind % 4 == 0 is the checkpoint, kind 4n + 2 the segment starting at n.
    let segment_kind = |first: u64| u8::try_from(first * 4 + 2).ok();
    let mut one = Vec::new();
    file_entry(
        &mut one,
        segment_kind(segments[0].0).ok_or("first segment number")?,
        &segments[0].1,
    )?;
    seeds.write("log_open", "one-segment", &one)?;
    let mut all = Vec::new();
    for (first, bytes) in &segments {
        if let Some(kind) = segment_kind(*first) {
            file_entry(&mut all, kind, bytes)?;
        }
    }
    file_entry(&mut all, 0, &checkpoint)?;
    seeds.write("log_open", "segments-and-checkpoint", &all)?;
    Ok(())
}

/// A commit group that journals every round (two logs, records and a checkpoint): its
/// journal file as `journal_replay` reads it. The target's own log gets a new identity every
/// run, so these entries name logs it does not have (replay skips them); the fuzzer mutates
/// the identity and the rest from a file whose framing and checksums are right.
fn journal_replay(seeds: &mut Seeds) -> Result<(), Error> {
    let fs = SimFs::new();
    fs.create_dir_all(Path::new("/journal"))?;
    let roots = [PathBuf::from("/logs")];
    let gopts = GroupOptions {
        fs: Arc::new(fs.clone()),
        journal_from_logs: 1,
        // No turnover while the seed is made: the file must still be there to be read.
        flush_interval: Duration::from_secs(3600),
        ..GroupOptions::default()
    };
    let (group, _) = CommitGroup::open("/journal", &roots, gopts)?;
    let opts = || LogOptions {
        fs: Arc::new(fs.clone()),
        segment_bytes: SEGMENT_BYTES,
        group: Some(group.clone()),
        ..LogOptions::default()
    };
    let (a, b) = (Log::open("/logs/a", opts())?, Log::open("/logs/b", opts())?);
    for i in 0..3 {
        let (ca, cb) = (
            a.try_append(format!("a {i}").as_bytes())?,
            b.try_append(format!("b {i}").as_bytes())?,
        );
        ca.wait()?;
        cb.wait()?;
    }
    a.read_batch(2, 1 << 16)?;
    a.ack_through(2)?;
    a.checkpoint()?;
    b.try_append(b"after the checkpoint")?.wait()?;

    let mut journals: Vec<String> = fs
        .list_dir(Path::new("/journal"))?
        .into_iter()
        .filter_map(|n| n.into_string().ok())
        .filter(|n| n.ends_with(".jnl"))
        .collect();
    journals.sort();
    let mut input = Vec::new();
    for name in &journals {
        let bytes = fs.read_file(&Path::new("/journal").join(name))?;
        if bytes.len() <= iobp_log::group::JOURNAL_HEADER_LEN {
            continue;
        }
        let generation: u64 = name.trim_end_matches(".jnl").parse()?;
        file_entry(&mut input, u8::try_from(generation)?, &bytes)?;
    }
    if input.is_empty() {
        return Err(format!("no journal entries were written: {journals:?}").into());
    }
    seeds.write("journal_replay", "two-logs-and-a-checkpoint", &input)?;
    a.close()?;
    b.close()?;
    Ok(())
}

/// `[seed u8][lens u8][custom start][custom end][stream]`: a stream of messages framed with
/// each framing, the custom delimiters set to that framing's where it has them.
fn deframe(seeds: &mut Seeds) -> Result<(), Error> {
    let messages: [&[u8]; 3] = [b"MSH|^~\\&|LAB|1", b"temperature=21.5", b"OBX|1|NM|GLU||5.4"];
    let hl7_short: [&[u8]; 2] = [b"MSH|^~\\&|A|B|C|D|1||ADT^A01|7|P|2.5\r", b"MSH|^~\\&|A|B|||2\r"];
    let cases: [(&str, Framing, &[&[u8]]); 6] = [
        ("line", Framing::line(b"\n"), &messages),
        ("crlf", Framing::line(b"\r\n"), &messages),
        ("mllp", Framing::mllp(), &hl7_short),
        ("stx-etx", Framing::stx_etx(), &messages),
        ("length-prefixed-2", Framing::LengthPrefixed { width: 2 }, &messages),
        ("length-prefixed-4", Framing::LengthPrefixed { width: 4 }, &messages),
    ];
    for (i, (name, framing, msgs)) in cases.into_iter().enumerate() {
        let (start, end) = match &framing {
            Framing::Delimited { start, end } => (start.clone(), end.clone()),
            _ => (Vec::new(), b"\n".to_vec()),
        };
        // lens: bits 0-1 the start's length, bits 2-3 the end's length minus one.
        let lens = u8::try_from(start.len() | ((end.len() - 1) << 2))?;
        let mut input = vec![u8::try_from(i)?, lens];
        input.extend_from_slice(&start);
        input.extend_from_slice(&end);
        let encoder = Encoder::new(framing);
        for m in msgs {
            encoder.encode(m, &mut input)?;
        }
        seeds.write("deframe", name, &input)?;
    }
    Ok(())
}

/// `[selector u8][text length u8][text][message]`: an HL7 message to acknowledge, and an ACK.
fn hl7(seeds: &mut Seeds) -> Result<(), Error> {
    let mut input = vec![0x80, 2];
    input.extend_from_slice(b"ok");
    input.extend_from_slice(ADT);
    seeds.write("hl7", "adt-a01", &input)?;

    let ack = build_ack(ADT, AckCode::AE, Some("field 3 | missing"), "20260101120001", "ACK|1^\r");
    let mut input = vec![1, 0];
    input.extend_from_slice(&ack);
    seeds.write("hl7", "ack-ae", &input)?;
    Ok(())
}

/// `[control u8][len u8][bytes]` chunks: an analyzer's transmission of one E1394 message,
/// stored at its terminator, then EOT.
fn astm(seeds: &mut Seeds) -> Result<(), Error> {
    use iobp_codec::astm::{ENQ, EOT, frames_of};
    let mut input = vec![3, 1, ENQ];
    for f in frames_of(b"H|\\^&|||Analyzer\rP|1\rO|1|S-100||^^^GLU\rR|1|^^^GLU|5.4|mmol/L\rL|1|N\r")
    {
        input.extend_from_slice(&[0, u8::try_from(f.len())?]);
        input.extend_from_slice(&f);
    }
    input.extend_from_slice(&[3, 1, EOT]);
    seeds.write("astm", "one-message", &input)?;
    Ok(())
}

/// Relay frames back to back: a session's exchange, and a data frame alone.
fn relay_frames(seeds: &mut Seeds) -> Result<(), Error> {
    let mut data = Vec::new();
    let mut w = iobp_relay::DataWriter::begin(&mut data, 41, 3, 1_767_225_600_000_000);
    for (pseq, payload) in [(42, &b"MSH|^~\\&|LAB|1"[..]), (43, b"temperature=21.5"), (44, b"")] {
        w.push(&mut data, pseq, payload).map_err(|e| format!("{e:?}"))?;
    }
    w.finish(&mut data);
    seeds.write("relay_frames", "data", &data)?;

    let mut session = Vec::new();
    iobp_relay::encode_hello(&mut session, 0x1234_5678_9abc_def0);
    iobp_relay::encode_resume(&mut session, 41);
    session.extend_from_slice(&data);
    iobp_relay::encode_ack(&mut session, 44);
    iobp_relay::encode_ping(&mut session, 7);
    iobp_relay::encode_pong(&mut session, 7);
    iobp_relay::encode_busy(&mut session, 44, 500, "channel full");
    iobp_relay::encode_error(&mut session, "bye");
    seeds.write("relay_frames", "session", &session)?;
    Ok(())
}
