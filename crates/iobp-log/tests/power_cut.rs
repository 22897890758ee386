//! The `power_cut` cases with every log writing its own segments on its own thread.
//! (`power_cut_group` runs the same cases in a commit group.)

#[path = "cases/power_cut.rs"]
mod cases;

fn group_for(_fs: &iobp_log::sim::SimFs) -> Option<iobp_log::CommitGroup> {
    None
}
