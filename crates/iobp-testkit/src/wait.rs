//! Waiting for a condition with a deadline, for tests: the one way a test waits until
//! something happened (a count reached, a line arrived, a status changed), instead of sleeping
//! for a period that is too short on a loaded machine and too long everywhere else.
//!
//! Each wait polls its check every [`POLL`] and panics with what it waited for, and the last
//! state the check described, when the deadline passes. [`until`] and [`poll`] block the
//! thread; [`until_async`] and [`poll_async`] are the same for async tests (they sleep on the
//! tokio timer, so a runtime worker is never blocked).

use std::time::{Duration, Instant};

/// How often a wait checks its condition.
pub const POLL: Duration = Duration::from_millis(20);

/// What a wait's check says: `Ok` with the result once the condition holds, else `Err` with
/// the state so far (for the message when the deadline passes).
pub type Check<T> = Result<T, String>;

fn timed_out(secs: u64, what: &str, last: &str) -> ! {
    let state = if last.is_empty() { String::new() } else { format!(": {last}") };
    panic!("timed out after {secs} s waiting for {what}{state}");
}

/// Polls `check` until it returns `Ok`, for at most `secs` seconds; returns its result.
///
/// # Panics
/// When the deadline passes, naming `what` and the last `Err` of `check`.
pub fn poll<T>(secs: u64, what: &str, mut check: impl FnMut() -> Check<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let last = match check() {
            Ok(t) => return t,
            Err(last) => last,
        };
        if Instant::now() >= deadline {
            timed_out(secs, what, &last);
        }
        std::thread::sleep(POLL);
    }
}

/// Polls `condition` until it holds, for at most `secs` seconds.
///
/// # Panics
/// When the deadline passes, naming `what`.
pub fn until(secs: u64, what: &str, mut condition: impl FnMut() -> bool) {
    poll(secs, what, || if condition() { Ok(()) } else { Err(String::new()) });
}

/// [`poll`] for async tests.
///
/// # Panics
/// When the deadline passes, naming `what` and the last `Err` of `check`.
pub async fn poll_async<T>(secs: u64, what: &str, mut check: impl FnMut() -> Check<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let last = match check() {
            Ok(t) => return t,
            Err(last) => last,
        };
        if Instant::now() >= deadline {
            timed_out(secs, what, &last);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// [`until`] for async tests.
///
/// # Panics
/// When the deadline passes, naming `what`.
pub async fn until_async(secs: u64, what: &str, mut condition: impl FnMut() -> bool) {
    poll_async(secs, what, || if condition() { Ok(()) } else { Err(String::new()) }).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_returns_once_its_condition_holds() {
        let mut n = 0;
        let got = poll(5, "three calls", || {
            n += 1;
            if n >= 3 { Ok(n) } else { Err(format!("{n} calls")) }
        });
        assert_eq!(got, 3);
    }

    #[test]
    #[should_panic(expected = "timed out after 0 s waiting for nothing: still nothing")]
    fn a_wait_that_times_out_names_what_and_the_last_state() {
        poll::<()>(0, "nothing", || Err("still nothing".into()));
    }
}
