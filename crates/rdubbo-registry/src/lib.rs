//! What every rdubbo registry shares, and a registry that lives in memory.
//!
//! - [`FailbackRegistry`] implements [`rdubbo_core::Registry`] on top of a small
//!   [`RegistryBackend`] (ZooKeeper, Nacos, [`MemoryBackend`] or a user's own). It owns
//!   what Java Dubbo's `FailbackRegistry` owns: the set of registered URLs, the
//!   subscriptions with their listeners and last notified lists, the retry timer for
//!   failed operations, the recovery after a reconnect or a new session, the cache file
//!   and the orderly goodbye.
//! - [`MemoryRegistry`] is a complete registry inside the process, for tests and examples;
//!   clients of one [`MemoryStore`] see each other's registrations, and a client can be
//!   made unreachable to exercise the failback logic.

mod backend;
mod failback;
mod memory;
mod notifier;
mod retry;

pub use backend::{
    backend_events, BackendEventStream, BackendEvents, FailbackOptions, RegistryBackend,
    DEFAULT_RETRY_PERIOD,
};
pub use failback::FailbackRegistry;
pub use memory::{MemoryBackend, MemoryRegistry, MemoryStore};
pub use notifier::Notifier;
pub use rdubbo_core::registry::RegistryCache;
