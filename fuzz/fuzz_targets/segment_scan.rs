//! The record decoder and segment scanner on arbitrary bytes: never panics, never returns a
//! record that fails its checks, never loops forever.
#![no_main]

use iobp_log::format::{self, RecordHeader, SegmentHeader};
use iobp_log::scan::{ScanItem, Scanner, scan_segment_bytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // As a whole segment file.
    let (records, _events) = scan_segment_bytes(data, 1 << 20);
    let mut prev = None;
    for r in &records {
        assert!(r.end() <= data.len() as u64);
        let start = usize::try_from(r.offset).unwrap_or(usize::MAX);
        let rec = &data[start..usize::try_from(r.end()).unwrap_or(usize::MAX)];
        let h = RecordHeader::parse(rec).expect("header");
        assert_eq!(format::record_crc(rec), h.crc, "scanner returned a record with a bad CRC");
        if let Some(p) = prev {
            assert!(r.seq > p, "sequence numbers go forward");
        }
        prev = Some(r.seq);
    }
    // As raw records after a header the scanner did not check, from an arbitrary seq.
    if data.len() >= 8 {
        let first = u64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
        let body = &data[8..];
        let mut s = Scanner::new(body, 0, first, body.len() as u64, 4096);
        for _ in 0..=body.len() {
            match s.next_item() {
                Ok(ScanItem::End { .. }) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
    let _ = SegmentHeader::decode(data);
    let _ = format::decode_checkpoint_file(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = format::parse_segment_file_name(s);
    }
});
