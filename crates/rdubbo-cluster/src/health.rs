use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The current time on tokio's clock (the real one, or the paused one of a test), as a
/// `std` instant.
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Outlier detection for one provider: consecutive failures eject it for a back-off that
/// doubles from `base` up to `max`; a success clears it. Time is tokio's clock, so tests
/// can pause and advance it.
#[derive(Debug)]
pub struct Health {
    base: Duration,
    max: Duration,
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
            state: Mutex::new(HealthState::default()),
        }
    }

    /// Whether the provider is ejected at `now`.
    pub fn is_ejected(&self, now: Instant) -> bool {
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
        period
    }

    /// Records a success.
    pub fn success(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.consecutive_failures != 0 || state.ejected_until.is_some() {
            *state = HealthState::default();
        }
    }

    /// Consecutive failures so far.
    pub fn consecutive_failures(&self) -> u32 {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .consecutive_failures
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
