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

#[doc(hidden)]
pub use rdubbo_core as __core;

/// Implements [`rdubbo_core::Registry`] for a type that wraps a [`FailbackRegistry`] in the
/// field `$field`, forwarding every call to it. Methods given in braces after the field
/// are added to the impl, and `destroy` is then left to them (a wrapper that closes more than
/// the base, or offers a `service_discovery`).
///
/// ```text
/// rdubbo_registry::forward_registry!(MyRegistry, inner);
/// rdubbo_registry::forward_registry!(MyRegistry, inner, {
///     fn destroy(&self) -> BoxFuture<'_, ()> { … }
/// });
/// ```
#[macro_export]
macro_rules! forward_registry {
    ($ty:ty, $field:ident) => {
        $crate::forward_registry!($ty, $field, {
            fn destroy(&self) -> $crate::__core::BoxFuture<'_, ()> {
                $crate::__core::Registry::destroy(&self.$field)
            }
        });
    };
    ($ty:ty, $field:ident, { $($extra:tt)* }) => {
        impl $crate::__core::Registry for $ty {
            fn url(&self) -> &$crate::__core::Url {
                $crate::__core::Registry::url(&self.$field)
            }

            fn is_available(&self) -> bool {
                $crate::__core::Registry::is_available(&self.$field)
            }

            fn register(
                &self,
                url: &$crate::__core::Url,
            ) -> $crate::__core::BoxFuture<'_, $crate::__core::RegistryResult<()>> {
                $crate::__core::Registry::register(&self.$field, url)
            }

            fn unregister(
                &self,
                url: &$crate::__core::Url,
            ) -> $crate::__core::BoxFuture<'_, $crate::__core::RegistryResult<()>> {
                $crate::__core::Registry::unregister(&self.$field, url)
            }

            fn subscribe(
                &self,
                url: &$crate::__core::Url,
                listener: ::std::sync::Arc<dyn $crate::__core::NotifyListener>,
            ) -> $crate::__core::BoxFuture<'_, $crate::__core::RegistryResult<()>> {
                $crate::__core::Registry::subscribe(&self.$field, url, listener)
            }

            fn unsubscribe(
                &self,
                url: &$crate::__core::Url,
                listener: &::std::sync::Arc<dyn $crate::__core::NotifyListener>,
            ) -> $crate::__core::BoxFuture<'_, $crate::__core::RegistryResult<()>> {
                $crate::__core::Registry::unsubscribe(&self.$field, url, listener)
            }

            fn lookup(
                &self,
                url: &$crate::__core::Url,
            ) -> $crate::__core::BoxFuture<'_, $crate::__core::RegistryResult<Vec<$crate::__core::Url>>>
            {
                $crate::__core::Registry::lookup(&self.$field, url)
            }

            $($extra)*
        }
    };
}
