//! The consumer side between "here are the providers" and "call one".
//!
//! - [`Directory`]: the live provider list of one service reference, fed by registry
//!   notifications ([`NotifyListener`](rdubbo_core::NotifyListener)). It keeps the last
//!   list while the registry is unreachable (registries only ever replace it with what the
//!   registry says), ignores provider URLs of protocols this consumer does not speak, and
//!   filters by group, version and `enabled`. Routing (tags, condition rules) is
//!   precomputed per version of the list, configurators and rules: a call reads a shared
//!   [`Routed`] list, and the built-in balancers keep their weights, warm-up, round-robin
//!   state and hash rings with it, so a pick costs the same with 10 or 10,000 providers
//!   (least-active and shortest-response scan counters).
//! - [`Health`]: per-provider outlier detection. A refused connection, a reset or a timeout
//!   ejects the provider for a back-off period that doubles with each consecutive failure,
//!   so a stale registry node costs at most one fast failed attempt.
//! - [`ClusterInvoker`]: a [`ClusterStrategy`] (`cluster=`: Dubbo's failover, failfast,
//!   failsafe, failback, forking, broadcast, or a user's own, see [`strategy`]) over the
//!   balancers of `loadbalance=` ([`loadbalance`]), both looked up by name in an
//!   [`Extensions`] table; failover never tries the same provider twice while another
//!   exists.
//! - [`filter`]: the built-in middleware as [`Layer`](rdubbo_core::Layer)s, and [`Filter`],
//!   the easy way to write one.

mod cluster;
pub mod configurator;
mod directory;
pub mod extension;
pub mod filter;
mod health;
pub mod loadbalance;
mod route;
pub mod router;
pub mod rules;
mod stats;
pub mod strategy;

pub use cluster::{
    Cluster, ClusterInvoker, Pool, DEFAULT_LOADBALANCE, FAILBACK_PERIOD, FAILBACK_QUEUE_LIMIT,
};
pub use directory::{Directory, Provider};
pub use extension::Extensions;
pub use filter::Filter;
pub use health::Health;
pub use loadbalance::{Candidates, LoadBalance};
pub use route::Routed;
pub use stats::{ActiveCall, CallStats};
pub use strategy::ClusterStrategy;
