//! The retry timer and the recovery after a reconnect or a new session.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use rdubbo_core::RegistryError;

use crate::backend::{BackendEvent, BackendEventStream, RegistryBackend};
use crate::failback::Core;

/// Whether a failed operation is worth retrying.
pub(crate) fn retryable(e: &RegistryError) -> bool {
    !matches!(e, RegistryError::Invalid(_) | RegistryError::Closed)
}

/// Retries failed registrations, unregistrations and subscriptions once.
pub(crate) async fn retry_failed<B: RegistryBackend>(core: &Arc<Core>, backend: &B) {
    if core.is_closed() {
        return;
    }
    let (register, unregister, subscribe) = {
        let state = core.state();
        (
            state.failed_register.values().cloned().collect::<Vec<_>>(),
            state
                .failed_unregister
                .values()
                .cloned()
                .collect::<Vec<_>>(),
            state.failed_subscribe.values().cloned().collect::<Vec<_>>(),
        )
    };
    for url in register {
        let key = url.to_string();
        match backend.do_register(&url).await {
            Ok(()) => {
                tracing::info!(url = %url, "registration retried successfully");
                core.state().failed_register.remove(&key);
            }
            Err(e) if !retryable(&e) => {
                core.state().failed_register.remove(&key);
            }
            Err(e) => tracing::debug!(url = %url, error = %e, "registration retry failed"),
        }
    }
    for url in unregister {
        let key = url.to_string();
        match backend.do_unregister(&url).await {
            Err(e) if retryable(&e) => {
                tracing::debug!(url = %url, error = %e, "unregistration retry failed")
            }
            _ => {
                core.state().failed_unregister.remove(&key);
            }
        }
    }
    for sub in subscribe {
        if !sub.active.load(Ordering::Acquire) {
            continue;
        }
        let key = sub.url.to_string();
        match backend.do_subscribe(&sub.url, core.notifier(&sub)).await {
            Ok(()) => {
                tracing::info!(url = %sub.url, "subscription retried successfully");
                core.state().failed_subscribe.remove(&key);
            }
            Err(e) if !retryable(&e) => {
                core.state().failed_subscribe.remove(&key);
            }
            Err(e) => {
                tracing::debug!(url = %sub.url, error = %e, "subscription retry failed");
                core.notify_from_cache(&sub);
            }
        }
    }
}

/// After a new session: registers and subscribes everything again, then retries.
pub(crate) async fn recover<B: RegistryBackend>(core: &Arc<Core>, backend: &B) {
    core.force_all();
    let (registered, subs) = {
        let state = core.state();
        (
            state.registered.values().cloned().collect::<Vec<_>>(),
            state.subscriptions.values().cloned().collect::<Vec<_>>(),
        )
    };
    for url in registered {
        let key = url.to_string();
        let result = backend.do_register(&url).await;
        let mut state = core.state();
        match result {
            Ok(()) => {
                state.failed_register.remove(&key);
            }
            Err(e) => {
                tracing::warn!(url = %url, error = %e, "re-registration failed; will retry");
                if retryable(&e) && state.registered.contains_key(&key) {
                    state.failed_register.insert(key, url);
                }
            }
        }
    }
    for sub in subs {
        let key = sub.url.to_string();
        let result = backend.do_subscribe(&sub.url, core.notifier(&sub)).await;
        let mut state = core.state();
        match result {
            Ok(()) => {
                state.failed_subscribe.remove(&key);
            }
            Err(e) => {
                tracing::warn!(url = %sub.url, error = %e, "re-subscription failed; will retry");
                if retryable(&e) && sub.active.load(Ordering::Acquire) {
                    state.failed_subscribe.insert(key, sub);
                }
            }
        }
    }
    retry_failed(core, backend).await;
}

/// The retry timer and the reaction to backend events, until the registry is destroyed or
/// dropped.
pub(crate) async fn run_timer<B: RegistryBackend>(
    core: Weak<Core>,
    backend: Weak<B>,
    mut events: BackendEventStream,
) {
    let (period, mut closed) = match core.upgrade() {
        Some(c) => (c.retry_period, c.closed.subscribe()),
        None => return,
    };
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut events_open = true;
    loop {
        let event = tokio::select! {
            _ = tick.tick() => None,
            e = events.rx.recv(), if events_open => match e {
                Some(e) => Some(e),
                None => {
                    events_open = false;
                    continue;
                }
            },
            _ = closed.wait_for(|c| *c) => return,
        };
        let (Some(core), Some(backend)) = (core.upgrade(), backend.upgrade()) else {
            return;
        };
        match event {
            None => retry_failed(&core, &*backend).await,
            Some(BackendEvent::Reconnected) => {
                core.force_all();
                retry_failed(&core, &*backend).await;
            }
            Some(BackendEvent::SessionRenewed) => recover(&core, &*backend).await,
        }
    }
}
