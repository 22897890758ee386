//! The `model` cases with every log in a commit group that journals every round, even of a
//! single log (see `cases/group_mode.rs`).

#[path = "cases/model.rs"]
mod cases;
#[path = "cases/group_mode.rs"]
mod group_mode;

#[allow(clippy::unnecessary_wraps)] // the cases take the per-log runs' signature
fn group_for(fs: &iobp_log::sim::SimFs) -> Option<iobp_log::CommitGroup> {
    Some(group_mode::group_for(fs))
}
