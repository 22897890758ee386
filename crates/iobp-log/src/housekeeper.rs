//! The housekeeping thread of a [`StorageBudget`]: one per budget (one per ioBufferPro
//! instance), shared by all its logs, so that no disk work other than appending happens on the
//! writers' data path or on an appender's (async) thread.
//!
//! Each pass:
//! - writes the checkpoint of every log whose Done position or durable end moved, once its
//!   `checkpoint_interval` has passed since the last one — or at once when
//!   `checkpoint_records` records became Done since (which bounds re-delivery after a crash
//!   whatever the throughput);
//! - releases Done segments of logs over their own limit, and, oldest first across all logs,
//!   of the budget when an append was refused or usage is above 95 % of the limit in force.
//!
//! It sleeps until the next checkpoint is due, or until woken (a log became dirty, a
//! checkpoint is overdue, an append wants space). Idle logs cost it nothing. It ends when its
//! budget is dropped.

use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::log::lock;
use crate::retention::{BudgetInner, StorageBudget, release_for_own_limit, write_checkpoint};

/// After a pass that could not free what was asked, look again this soon: sealing an active
/// segment needs the writer and a checkpoint before the segment can go.
const RETRY_RECLAIM: Duration = Duration::from_millis(10);

pub(crate) fn run(budget: &Weak<BudgetInner>) {
    loop {
        let Some(inner) = budget.upgrade() else { return };
        let budget = StorageBudget::from_inner(inner);
        let wait = pass(&budget);
        drop(budget);
        match wait {
            Some(d) => std::thread::park_timeout(d),
            None => std::thread::park(),
        }
    }
}

/// One pass; returns how long to sleep (`None`: until woken).
fn pass(budget: &StorageBudget) -> Option<Duration> {
    let logs = budget.logs();
    if let Some(l) = logs.first() {
        budget.sample_space(l);
    }
    let mut wait: Option<Duration> = None;
    let mut sooner = |d: Duration| wait = Some(wait.map_or(d, |w| w.min(d)));
    for l in &logs {
        if l.progress.failure().is_some() {
            continue;
        }
        if l.checkpoint_dirty.load(Ordering::Acquire) {
            let since = lock(&l.checkpoint).written_at.elapsed();
            let interval = l.opts.checkpoint_interval;
            if since >= interval || l.checkpoint_overdue() {
                match &l.group {
                    // In a commit group the checkpoints of all logs share the journal's sync.
                    Some(g) => g.request_checkpoint(l),
                    // A failure is recorded in the log's state by `write_checkpoint` itself.
                    None => {
                        let _ = write_checkpoint(l);
                    }
                }
            } else {
                sooner(interval.saturating_sub(since));
            }
        }
        if l.need.load(Ordering::Acquire) > 0 {
            release_for_own_limit(l);
        }
    }
    let need = budget.take_need();
    budget.reclaim(&logs, need);
    if need > 0 {
        sooner(RETRY_RECLAIM);
    }
    wait
}
