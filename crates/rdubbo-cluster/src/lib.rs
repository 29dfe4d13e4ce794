//! The consumer side between "here are the providers" and "call one".
//!
//! - [`Directory`]: the live provider list of one service reference, fed by registry
//!   notifications ([`NotifyListener`](rdubbo_core::NotifyListener)). It keeps the last
//!   list while the registry is unreachable (registries only ever replace it with what the
//!   registry says), ignores provider URLs of protocols this consumer does not speak, and
//!   filters by group, version and `enabled`.
//! - [`Health`]: per-provider outlier detection. A refused connection, a reset or a timeout
//!   ejects the provider for a back-off period that doubles with each consecutive failure,
//!   so a stale registry node costs at most one fast failed attempt.
//! - [`ClusterInvoker`]: the strategies of Dubbo's `cluster=` (failover, failfast, failsafe,
//!   failback, forking, broadcast) over the balancers of `loadbalance=`
//!   ([`loadbalance`]); failover never tries the same provider twice while another exists.

mod cluster;
pub mod configurator;
mod directory;
pub mod extension;
pub mod filter;
mod health;
pub mod loadbalance;
pub mod router;
mod stats;

pub use cluster::{ClusterInvoker, Strategy};
pub use directory::{Directory, Provider};
pub use extension::Extensions;
pub use filter::Filter;
pub use health::Health;
pub use loadbalance::LoadBalance;
pub use stats::{ActiveCall, CallStats};
