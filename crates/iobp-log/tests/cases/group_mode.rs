//! One commit group per simulated file system, shared by every log a test opens on it; a
//! file system that survived a power cut gets a new group, which replays the journal.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use iobp_log::sim::SimFs;
use iobp_log::{CommitGroup, GroupOptions};

pub fn group_for(fs: &SimFs) -> CommitGroup {
    static GROUPS: Mutex<Vec<(SimFs, CommitGroup)>> = Mutex::new(Vec::new());
    let mut groups = GROUPS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, g)) = groups.iter().find(|(f, _)| f.same_as(fs)) {
        return g.clone();
    }
    let opts = GroupOptions {
        fs: Arc::new(fs.clone()),
        // Every round through the journal, and the journal turning over often.
        journal_from_logs: 1,
        flush_interval: Duration::from_millis(20),
        journal_file_bytes: 16 * 1024,
    };
    let roots: Vec<PathBuf> = ["/", "/data", "/data/logs"].iter().map(PathBuf::from).collect();
    let (g, _) = CommitGroup::open("/journal", &roots, opts).expect("open commit group");
    groups.push((fs.clone(), g.clone()));
    g
}
