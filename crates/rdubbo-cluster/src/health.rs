use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The current time on tokio's clock (the real one, or the paused one of a test), as a
/// `std` instant.
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Outlier detection for one provider: consecutive failures eject it for a back-off that
/// doubles from `base` up to `max`; a success clears it. Time is tokio's clock, so tests
/// can pause and advance it.
///
/// A provider that never failed is checked without a lock (one atomic load), and the
/// providers of a [`Directory`](crate::Directory) share a count of those that failed, so
/// that a call in a healthy cluster does not look at every provider's health.
#[derive(Debug)]
pub struct Health {
    base: Duration,
    max: Duration,
    /// Set while `state` is not the default (failures counted or an ejection recorded).
    marked: AtomicBool,
    /// Marked providers of the directory this one belongs to.
    shared: Option<Arc<AtomicUsize>>,
    state: Mutex<HealthState>,
}

#[derive(Debug, Default)]
struct HealthState {
    consecutive_failures: u32,
    ejected_until: Option<Instant>,
}

impl Default for Health {
    fn default() -> Health {
        Health::new(Duration::from_secs(1), Duration::from_secs(30))
    }
}

impl Health {
    /// Back-off from `base`, doubling, at most `max`.
    pub fn new(base: Duration, max: Duration) -> Health {
        Health {
            base,
            max,
            marked: AtomicBool::new(false),
            shared: None,
            state: Mutex::new(HealthState::default()),
        }
    }

    /// The default back-off, counted in `marked` while the provider has failures on
    /// record.
    pub(crate) fn counted(marked: Arc<AtomicUsize>) -> Health {
        let mut health = Health::default();
        health.shared = Some(marked);
        health
    }

    /// Whether the provider is ejected at `now`.
    pub fn is_ejected(&self, now: Instant) -> bool {
        if !self.marked.load(Ordering::Acquire) {
            return false;
        }
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.ejected_until.is_some_and(|t| t > now)
    }

    /// Records a provider failure and ejects it; returns the ejection period.
    pub fn failure(&self) -> Duration {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.consecutive_failures = state.consecutive_failures.saturating_add(1);
        let exp = state.consecutive_failures.saturating_sub(1).min(16);
        let period = self.base.saturating_mul(1u32 << exp).min(self.max);
        state.ejected_until = Some(now() + period);
        if !self.marked.swap(true, Ordering::AcqRel) {
            if let Some(shared) = &self.shared {
                shared.fetch_add(1, Ordering::AcqRel);
            }
        }
        period
    }

    /// Records a success.
    pub fn success(&self) {
        if !self.marked.load(Ordering::Acquire) {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        *state = HealthState::default();
        if self.marked.swap(false, Ordering::AcqRel) {
            if let Some(shared) = &self.shared {
                shared.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    /// Consecutive failures so far.
    pub fn consecutive_failures(&self) -> u32 {
        if !self.marked.load(Ordering::Acquire) {
            return 0;
        }
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .consecutive_failures
    }
}

impl Drop for Health {
    fn drop(&mut self) {
        if *self.marked.get_mut() {
            if let Some(shared) = &self.shared {
                shared.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_up_to_the_cap_and_success_clears() {
        let h = Health::new(Duration::from_millis(100), Duration::from_millis(350));
        assert!(!h.is_ejected(Instant::now()));
        assert_eq!(h.failure(), Duration::from_millis(100));
        assert!(h.is_ejected(Instant::now()));
        assert_eq!(h.failure(), Duration::from_millis(200));
        assert_eq!(h.failure(), Duration::from_millis(350));
        assert_eq!(h.failure(), Duration::from_millis(350));
        assert!(!h.is_ejected(Instant::now() + Duration::from_secs(1)));
        h.success();
        assert!(!h.is_ejected(Instant::now()));
        assert_eq!(h.consecutive_failures(), 0);
    }
}
