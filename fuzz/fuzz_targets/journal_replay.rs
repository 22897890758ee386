//! Opening a commit group whose journal holds arbitrary files, beside a log with records
//! (on the simulated file system): never panics, never allocates beyond a file's size, and
//! the log opens and takes a record afterwards.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use iobp_log::sim::SimFs;
use iobp_log::{CommitGroup, GroupOptions, Log, LogOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let fs = SimFs::new();
    iobp_log::fs::FileSystem::create_dir_all(&fs, Path::new("/journal")).expect("mkdir");
    let roots = [PathBuf::from("/logs")];
    let log_opts = |g: &CommitGroup| LogOptions {
        fs: Arc::new(fs.clone()),
        segment_bytes: 512,
        group: Some(g.clone()),
        ..LogOptions::default()
    };
    // A log with a few records, so that entries can name it (its id is in the input's reach
    // only by chance; the fuzzer finds the checksummed paths through the corpus).
    {
        let gopts = GroupOptions { fs: Arc::new(fs.clone()), ..GroupOptions::default() };
        let (g, _) = CommitGroup::open("/journal", &roots, gopts).expect("empty journal");
        let log = Log::open("/logs/a", log_opts(&g)).expect("open");
        log.try_append(b"before").expect("append").wait().expect("durable");
        log.close().expect("close");
    }
    // Layout: repeated [generation u8][len u16][bytes]: journal files.
    let mut rest = data;
    while rest.len() >= 3 {
        let generation = u64::from(rest[0]);
        let len = usize::from(u16::from_le_bytes([rest[1], rest[2]])).min(rest.len() - 3);
        let path = PathBuf::from(format!("/journal/{generation:020}.jnl"));
        fs.write_file(&path, &rest[3..3 + len]).expect("write");
        rest = &rest[3 + len..];
    }
    let gopts = GroupOptions { fs: Arc::new(fs.clone()), ..GroupOptions::default() };
    let (g, _) = CommitGroup::open("/journal", &roots, gopts).expect("open never fails on content");
    let log = Log::open("/logs/a", log_opts(&g)).expect("the log opens");
    log.try_append(b"after").expect("append").wait().expect("durable");
});
