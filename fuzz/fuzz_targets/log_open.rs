//! Opening a log whose directory holds arbitrary files (on the simulated file system), reading
//! everything and appending: never panics, and the log accepts a new record afterwards.
#![no_main]

use std::path::Path;
use std::sync::Arc;

use iobp_log::format::segment_file_name;
use iobp_log::sim::SimFs;
use iobp_log::{Log, LogOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let fs = SimFs::new();
    iobp_log::fs::FileSystem::create_dir_all(&fs, Path::new("/l")).expect("mkdir");
    // Layout: repeated [kind u8][len u16][bytes]; kind selects the file name.
    let mut rest = data;
    while rest.len() >= 3 {
        let kind = rest[0];
        let len = usize::from(u16::from_le_bytes([rest[1], rest[2]])).min(rest.len() - 3);
        let bytes = &rest[3..3 + len];
        rest = &rest[3 + len..];
        let name = match kind % 4 {
            0 => "checkpoint".to_string(),
            1 => "junk".to_string(),
            _ => segment_file_name(u64::from(kind / 4)),
        };
        fs.write_file(&Path::new("/l").join(name), bytes).expect("write");
    }
    let opts = LogOptions { fs: Arc::new(fs), segment_bytes: 512, ..LogOptions::default() };
    let log = Log::open("/l", opts).expect("open never fails on content");
    for _ in 0..10_000 {
        match log.read_batch(64, 1 << 16) {
            Ok(b) if b.is_empty() => break,
            _ => {}
        }
    }
    let _ = log.read_range(0, 100, 1 << 16);
    let next = log.stats().next_seq;
    let seqs = log.try_append(b"x").expect("append").wait().expect("durable");
    assert_eq!(*seqs.start(), next);
});
