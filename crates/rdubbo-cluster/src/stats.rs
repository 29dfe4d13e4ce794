use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Per-provider call statistics used by the load balancers and shown by `rdubbo bench`.
#[derive(Debug, Default)]
pub struct CallStats {
    active: AtomicUsize,
    succeeded: AtomicU64,
    failed: AtomicU64,
    succeeded_us: AtomicU64,
    /// `succeeded_us / succeeded` as of the last success: balancers compare it across
    /// every provider on each pick, so it is divided once per call, not once per read.
    mean_us: AtomicU64,
}

/// A call in flight; counts as active until finished or dropped.
#[derive(Debug)]
pub struct ActiveCall<'a> {
    stats: &'a CallStats,
    done: bool,
}

impl CallStats {
    /// Marks a call as started.
    pub fn begin(&self) -> ActiveCall<'_> {
        self.active.fetch_add(1, Ordering::Relaxed);
        ActiveCall {
            stats: self,
            done: false,
        }
    }

    /// One more call in flight until the guard drops, with no outcome of its own: a call
    /// answered by a stream stays active while the stream is read, after its
    /// [`ActiveCall`] recorded the outcome at the hand-over.
    pub(crate) fn hold_active(self: &Arc<Self>) -> ActiveHold {
        self.active.fetch_add(1, Ordering::Relaxed);
        ActiveHold(self.clone())
    }

    /// Calls in flight.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Successful calls so far.
    pub fn succeeded(&self) -> u64 {
        self.succeeded.load(Ordering::Relaxed)
    }

    /// Failed calls so far.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Mean latency of successful calls in µs (0 before the first).
    pub fn mean_latency_us(&self) -> u64 {
        self.mean_us.load(Ordering::Relaxed)
    }
}

impl ActiveCall<'_> {
    /// Records the outcome.
    pub fn finish(mut self, elapsed: Duration, ok: bool) {
        if ok {
            let us = elapsed.as_micros() as u64;
            let n = self.stats.succeeded.fetch_add(1, Ordering::Relaxed) + 1;
            let sum = self
                .stats
                .succeeded_us
                .fetch_add(us, Ordering::Relaxed)
                .saturating_add(us);
            self.stats
                .mean_us
                .store(sum.checked_div(n).unwrap_or(0), Ordering::Relaxed);
        } else {
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
        }
        self.done = true;
    }
}

impl Drop for ActiveCall<'_> {
    fn drop(&mut self) {
        self.stats.active.fetch_sub(1, Ordering::Relaxed);
        if !self.done {
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// See [`CallStats::hold_active`].
#[derive(Debug)]
pub(crate) struct ActiveHold(Arc<CallStats>);

impl Drop for ActiveHold {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}
