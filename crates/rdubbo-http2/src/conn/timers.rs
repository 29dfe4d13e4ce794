//! The idle timeout and the keepalive PING.

use super::*;

/// What a connection's timers decided.
pub(crate) enum Tick {
    /// Nothing to do (a PING may have been queued).
    Nothing,
    /// No stream open for the idle timeout: close gracefully.
    Idle,
    /// Nothing read for two keepalive periods, a PING unanswered: the peer is gone.
    Dead,
}

/// The idle timeout and the keepalive PING of a connection: one timer, re-armed lazily
/// (nothing is done per frame but noting that something was read).
pub(crate) struct Timers {
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    idle_at: Option<tokio::time::Instant>,
    ping_at: Option<tokio::time::Instant>,
    /// Something was read since the last keepalive tick.
    pub read: bool,
    ping_out: bool,
}

impl Timers {
    pub(crate) fn new(config: &Config) -> Timers {
        let now = tokio::time::Instant::now();
        let idle_at = config.idle_timeout.map(|d| now + d);
        let ping_at = config.keepalive.map(|d| now + d);
        let first = match (idle_at, ping_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Timers {
            sleep: first.map(|at| Box::pin(tokio::time::sleep_until(at))),
            idle_at,
            ping_at,
            read: false,
            ping_out: false,
        }
    }

    /// Resolves when a timer is due (never when none is set).
    pub(crate) async fn due(&mut self) {
        match self.sleep.as_mut() {
            Some(s) => s.as_mut().await,
            None => std::future::pending().await,
        }
    }

    /// Runs the timers that are due and re-arms.
    pub(crate) fn fire(&mut self, shared: &Shared) -> Tick {
        let now = tokio::time::Instant::now();
        let config = &shared.config;
        if let (Some(at), Some(period)) = (self.ping_at, config.keepalive) {
            if now >= at {
                if self.read {
                    self.read = false;
                    self.ping_out = false;
                } else if self.ping_out {
                    return Tick::Dead;
                } else {
                    self.ping_out = true;
                    frame::put_ping(&mut shared.state().wbuf, false, *b"rdubbo\0\0");
                    shared.flush_soon.notify_one();
                }
                self.ping_at = Some(now + period);
            }
        }
        if let (Some(at), Some(idle)) = (self.idle_at, config.idle_timeout) {
            if now >= at {
                let st = shared.state();
                let next = if st.active > 0 {
                    now + idle
                } else {
                    let since = st.idle_since;
                    if since + idle <= now {
                        return Tick::Idle;
                    }
                    since + idle
                };
                self.idle_at = Some(next);
            }
        }
        let next = match (self.idle_at, self.ping_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let (Some(s), Some(at)) = (self.sleep.as_mut(), next) {
            s.as_mut().reset(at);
        }
        Tick::Nothing
    }
}
