//! What a backend implements and how it reports connection changes.

use std::time::Duration;

use rdubbo_core::registry::RegistryCache;
use rdubbo_core::{BoxFuture, RegistryResult, Url};
use tokio::sync::mpsc;

use crate::notifier::Notifier;

/// Default period between retries of failed operations, as Java Dubbo's `retry.period`.
pub const DEFAULT_RETRY_PERIOD: Duration = Duration::from_millis(5_000);

/// The registry-specific half of a registry: talks to one kind of server.
///
/// [`FailbackRegistry`](crate::FailbackRegistry) calls these operations and keeps everything else: which URLs are
/// registered, which subscriptions exist and who listens, what to retry, the cache file.
/// A backend reports connection changes through the [`BackendEvents`] it was built with.
pub trait RegistryBackend: Send + Sync + 'static {
    /// Whether the server is reachable right now.
    fn is_available(&self) -> bool;

    /// Publishes `url`. An error puts the URL on the retry list (unless it is
    /// [`RegistryError::Invalid`](rdubbo_core::RegistryError::Invalid) or [`RegistryError::Closed`](rdubbo_core::RegistryError::Closed)).
    fn do_register<'a>(&'a self, url: &'a Url) -> BoxFuture<'a, RegistryResult<()>>;

    /// Withdraws `url`. An error puts the URL on the retry list (unless it is
    /// [`RegistryError::Invalid`](rdubbo_core::RegistryError::Invalid) or [`RegistryError::Closed`](rdubbo_core::RegistryError::Closed)).
    fn do_unregister<'a>(&'a self, url: &'a Url) -> BoxFuture<'a, RegistryResult<()>>;

    /// Starts following the subscription `url`: delivers the current list of each category
    /// through `notifier`, then every change, until
    /// [`do_unsubscribe`](Self::do_unsubscribe). Returns an error when the first read
    /// fails; the base then answers from the cache file and calls `do_subscribe` again
    /// later. Called again for a URL already followed (after a new session), the backend
    /// replaces what it had for that URL.
    fn do_subscribe<'a>(
        &'a self,
        url: &'a Url,
        notifier: Notifier,
    ) -> BoxFuture<'a, RegistryResult<()>>;

    /// Stops following the subscription `url`.
    fn do_unsubscribe<'a>(&'a self, url: &'a Url) -> BoxFuture<'a, RegistryResult<()>>;

    /// The URLs currently registered that match `url` (one read).
    fn lookup<'a>(&'a self, url: &'a Url) -> BoxFuture<'a, RegistryResult<Vec<Url>>>;

    /// Closes the connection; called last by [`Registry::destroy`](rdubbo_core::Registry::destroy).
    fn close(&self) -> BoxFuture<'_, ()>;
}

/// What a backend tells its [`FailbackRegistry`](crate::FailbackRegistry) about its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BackendEvent {
    Reconnected,
    SessionRenewed,
}

/// The sending half a backend keeps to report connection changes (cheap to clone).
#[derive(Debug, Clone)]
pub struct BackendEvents {
    tx: mpsc::UnboundedSender<BackendEvent>,
}

/// The receiving half of [`BackendEvents`], handed to [`FailbackRegistry::new`](crate::FailbackRegistry::new).
#[derive(Debug)]
pub struct BackendEventStream {
    pub(crate) rx: mpsc::UnboundedReceiver<BackendEvent>,
}

/// A connected pair: the backend keeps the [`BackendEvents`], the registry takes the
/// [`BackendEventStream`].
pub fn backend_events() -> (BackendEvents, BackendEventStream) {
    let (tx, rx) = mpsc::unbounded_channel();
    (BackendEvents { tx }, BackendEventStream { rx })
}

impl BackendEvents {
    /// The connection is back within the same session (what was registered is still
    /// there): failed operations are retried now and the next list of every subscription
    /// is notified even if it did not change.
    pub fn reconnected(&self) {
        let _ = self.tx.send(BackendEvent::Reconnected);
    }

    /// A new session replaced one that was lost (what was registered may be gone): every
    /// registered URL is registered again, every subscription subscribed again and its
    /// lists notified again.
    pub fn session_renewed(&self) {
        let _ = self.tx.send(BackendEvent::SessionRenewed);
    }
}

/// Settings of the base.
#[derive(Debug)]
pub struct FailbackOptions {
    /// Period of the retry timer.
    pub retry_period: Duration,
    /// Where the last notified lists are kept.
    pub cache: RegistryCache,
}

impl FailbackOptions {
    /// From a registry URL: `retry.period` (ms, default 5000) and the cache file of
    /// [`RegistryCache::for_registry`].
    pub fn from_url(url: &Url) -> FailbackOptions {
        let retry_period = url
            .param_non_empty("retry.period")
            .and_then(|v| v.parse::<u64>().ok())
            .map(|ms| Duration::from_millis(ms.max(1)))
            .unwrap_or(DEFAULT_RETRY_PERIOD);
        FailbackOptions {
            retry_period,
            cache: RegistryCache::for_registry(url),
        }
    }

    /// `retry_period` with a cache kept only in memory.
    pub fn in_memory(retry_period: Duration) -> FailbackOptions {
        FailbackOptions {
            retry_period,
            cache: RegistryCache::in_memory(),
        }
    }
}
