//! Futures completed by the writer thread: "this sequence number is durable" and "the append
//! queue has room". Plain `std::task` — no runtime dependency — so the log works under tokio,
//! under any other executor, and from blocking code through [`Commit::wait`].
//!
//! Waiters sit in a `BTreeMap` keyed by `(seq, id)`, so completing a group commit wakes exactly
//! the waiters it covers with one `split_off`, and a dropped future removes its own entry.

use std::collections::BTreeMap;
use std::future::Future;
use std::ops::RangeInclusive;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};

use crate::error::{Error, Result, SharedFail};

#[derive(Debug, Default)]
pub(crate) struct WaitList {
    next_id: u64,
    map: BTreeMap<(u64, u64), Waker>,
}

impl WaitList {
    /// Registers or refreshes the waker of the waiter `id` (allocated on first call).
    fn register(&mut self, seq: u64, id: &mut Option<u64>, waker: &Waker) {
        let key = if let Some(i) = id {
            (seq, *i)
        } else {
            self.next_id += 1;
            *id = Some(self.next_id);
            (seq, self.next_id)
        };
        match self.map.get_mut(&key) {
            Some(w) if w.will_wake(waker) => {}
            Some(w) => w.clone_from(waker),
            None => {
                self.map.insert(key, waker.clone());
            }
        }
    }

    fn remove(&mut self, seq: u64, id: u64) {
        self.map.remove(&(seq, id));
    }

    /// Removes and returns the wakers of every waiter with `seq <= upto`.
    fn take_upto(&mut self, upto: u64) -> Vec<Waker> {
        let rest = match upto.checked_add(1) {
            Some(next) => self.map.split_off(&(next, 0)),
            None => BTreeMap::new(),
        };
        std::mem::replace(&mut self.map, rest).into_values().collect()
    }

    fn take_all(&mut self) -> Vec<Waker> {
        std::mem::take(&mut self.map).into_values().collect()
    }
}

#[derive(Debug, Default)]
pub(crate) struct ProgressState {
    waiters: WaitList,
    space: WaitList,
    failed: Option<SharedFail>,
    closed: bool,
}

/// The durable position, the append queue's fill level and the failure/closed state, shared
/// by appenders, the writer thread and every future.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    durable_seq: AtomicU64,
    /// Bytes encoded into the append queue and not yet taken by the writer.
    queued: AtomicUsize,
    /// Appends are refused with `Backlogged` while `queued` is at or above this.
    queue_cap: usize,
    state: Mutex<ProgressState>,
}

impl Progress {
    pub(crate) fn new(durable_seq: u64, queue_cap: usize) -> Self {
        Progress {
            durable_seq: AtomicU64::new(durable_seq),
            queued: AtomicUsize::new(0),
            queue_cap,
            state: Mutex::default(),
        }
    }

    pub(crate) fn has_room(&self) -> bool {
        self.queued.load(Ordering::Acquire) < self.queue_cap
    }

    pub(crate) fn set_queued(&self, bytes: usize) {
        self.queued.store(bytes, Ordering::Release);
    }

    fn lock(&self) -> MutexGuard<'_, ProgressState> {
        // Poisoning means a thread panicked while holding the lock; the state (a map of wakers
        // and two flags) is consistent at every instruction, so carry on.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn durable_seq(&self) -> u64 {
        self.durable_seq.load(Ordering::Acquire)
    }

    /// Publishes a new durable position unless the log failed meanwhile (then nothing moves
    /// and `false` is returned). Decided under the same lock as [`Progress::fail`], so a round
    /// that completes while another thread fails the log is either published before the
    /// failure or not at all: a failed instance never trusts a later round.
    pub(crate) fn publish_unless_failed(&self, seq: u64) -> bool {
        let wakers = {
            let mut st = self.lock();
            if st.failed.is_some() {
                return false;
            }
            self.durable_seq.fetch_max(seq, Ordering::AcqRel);
            st.waiters.take_upto(seq)
        };
        wakers.into_iter().for_each(Waker::wake);
        true
    }

    /// Records the first failure and wakes every waiter.
    pub(crate) fn fail(&self, cause: SharedFail) {
        let (a, b) = {
            let mut st = self.lock();
            st.failed.get_or_insert(cause);
            (st.waiters.take_all(), st.space.take_all())
        };
        a.into_iter().chain(b).for_each(Waker::wake);
    }

    pub(crate) fn failure(&self) -> Option<SharedFail> {
        self.lock().failed.clone()
    }

    /// Marks the log closed (after the writer flushed everything) and wakes every waiter.
    pub(crate) fn close(&self) {
        let (a, b) = {
            let mut st = self.lock();
            st.closed = true;
            (st.waiters.take_all(), st.space.take_all())
        };
        a.into_iter().chain(b).for_each(Waker::wake);
    }

    /// Wakes everything waiting for room in the append queue.
    pub(crate) fn wake_space(&self) {
        let wakers = self.lock().space.take_all();
        wakers.into_iter().for_each(Waker::wake);
    }

    fn poll_durable(&self, seq: u64, id: &mut Option<u64>, cx: &Context<'_>) -> Poll<Result<u64>> {
        if self.durable_seq() >= seq {
            return Poll::Ready(Ok(seq));
        }
        let mut st = self.lock();
        // Re-check under the lock: `publish` stores before it locks, so no wake-up is lost.
        if self.durable_seq() >= seq {
            return Poll::Ready(Ok(seq));
        }
        if let Some(f) = &st.failed {
            return Poll::Ready(Err(Error::Failed((**f).clone())));
        }
        if st.closed {
            return Poll::Ready(Err(Error::Closed));
        }
        st.waiters.register(seq, id, cx.waker());
        Poll::Pending
    }

    fn forget(&self, seq: u64, id: u64) {
        self.lock().waiters.remove(seq, id);
    }
}

/// Resolves once every record of an append is durable (covered by a completed fdatasync), or
/// with [`Error::Failed`] if the log failed first.
///
/// Dropping a `Commit` does not cancel the append; it only stops waiting for it.
#[derive(Debug)]
#[must_use = "an append is accepted only once its Commit resolves Ok"]
pub struct Commit {
    progress: Arc<Progress>,
    first: u64,
    last: u64,
    id: Option<u64>,
}

impl Commit {
    pub(crate) fn new(progress: Arc<Progress>, first: u64, last: u64) -> Self {
        Commit { progress, first, last, id: None }
    }

    /// The sequence numbers assigned to the appended records.
    pub fn seqs(&self) -> RangeInclusive<u64> {
        self.first..=self.last
    }

    /// Whether the records are already durable.
    pub fn is_durable(&self) -> bool {
        self.progress.durable_seq() >= self.last
    }

    /// Blocks the calling thread until the commit resolves.
    pub fn wait(self) -> Result<RangeInclusive<u64>> {
        block_on(self)
    }
}

impl Future for Commit {
    type Output = Result<RangeInclusive<u64>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let (first, last) = (this.first, this.last);
        this.progress.poll_durable(last, &mut this.id, cx).map_ok(|_| first..=last)
    }
}

impl Drop for Commit {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.progress.forget(self.last, id);
        }
    }
}

/// Resolves once records up to `seq` are durable: the reader's "new data" signal.
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct Durable {
    progress: Arc<Progress>,
    seq: u64,
    id: Option<u64>,
}

impl Durable {
    pub(crate) fn new(progress: Arc<Progress>, seq: u64) -> Self {
        Durable { progress, seq, id: None }
    }
}

impl Future for Durable {
    type Output = Result<u64>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        this.progress.poll_durable(this.seq, &mut this.id, cx)
    }
}

impl Drop for Durable {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.progress.forget(self.seq, id);
        }
    }
}

/// Resolves once the append queue has room (or the log failed or closed).
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct Ready {
    progress: Arc<Progress>,
    id: Option<u64>,
}

impl Ready {
    pub(crate) fn new(progress: Arc<Progress>) -> Self {
        Ready { progress, id: None }
    }
}

impl Future for Ready {
    type Output = Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.progress.has_room() {
            return Poll::Ready(Ok(()));
        }
        let mut st = this.progress.lock();
        if let Some(f) = &st.failed {
            return Poll::Ready(Err(Error::Failed((**f).clone())));
        }
        if st.closed {
            return Poll::Ready(Err(Error::Closed));
        }
        st.space.register(0, &mut this.id, cx.waker());
        drop(st);
        // The writer empties the queue before it wakes `space`; check again after registering.
        if this.progress.has_room() {
            return Poll::Ready(Ok(()));
        }
        Poll::Pending
    }
}

impl Drop for Ready {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.progress.lock().space.remove(0, id);
        }
    }
}

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs a future to completion on the calling thread.
pub fn block_on<F: Future>(fut: F) -> F::Output {
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_list_takes_exactly_covered_waiters() {
        let mut wl = WaitList::default();
        let w = Waker::noop();
        let mut ids = [None, None, None];
        wl.register(5, &mut ids[0], w);
        wl.register(7, &mut ids[1], w);
        wl.register(9, &mut ids[2], w);
        // Re-registering does not duplicate.
        wl.register(5, &mut ids[0], w);
        assert_eq!(wl.take_upto(7).len(), 2);
        assert_eq!(wl.take_upto(8).len(), 0);
        assert_eq!(wl.take_upto(u64::MAX).len(), 1);
    }

    #[test]
    fn commit_resolves_on_publish_and_fails_on_failure() {
        let p = Arc::new(Progress::new(0, 1024));
        let c = Commit::new(p.clone(), 1, 3);
        let t = std::thread::spawn(move || c.wait());
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(p.publish_unless_failed(2));
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(p.publish_unless_failed(3));
        assert_eq!(t.join().expect("join").expect("ok"), 1..=3);

        let c = Commit::new(p.clone(), 4, 4);
        p.fail(Arc::new(crate::error::FailCause {
            op: "fdatasync",
            path: "x".into(),
            kind: std::io::ErrorKind::Other,
            message: "EIO".into(),
        }));
        assert!(matches!(c.wait(), Err(Error::Failed(_))));
        // Already-durable records stay Ok after a later failure.
        assert!(Commit::new(p, 1, 3).wait().is_ok());
    }
}
