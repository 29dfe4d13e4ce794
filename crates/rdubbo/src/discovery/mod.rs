//! Dubbo 3 application-level discovery: the core types ([`ServiceDiscovery`],
//! [`ServiceInstance`], [`keys`] …, re-exported from `rdubbo-core`) and the consumer
//! side, as Java's `ServiceDiscoveryRegistry` and `MigrationInvoker` do it.
//!
//! A [`Reference`](crate::consumer::Reference) whose registry supports application-level
//! discovery (ZooKeeper does) follows, besides the interface-level URLs, the applications
//! that provide its interface: the mapping `/dubbo/mapping/<interface>` (or the
//! reference's `provided-by` parameter, a comma-separated list of applications), their
//! instances, and for each revision of their metadata the `MetadataInfo` fetched once from
//! one instance's MetadataService (over dubbo or tri, as the instance advertises). The
//! provider URLs are the instance's host with the port of the service's protocol and the
//! service's parameters.
//!
//! Which of the two lists the reference calls is the migration step ([`MigrationStep`]):
//! from the reference's `migration.step` parameter, else the registry URL's, else
//! [`ReferenceBuilder::migration_step`](crate::consumer::ReferenceBuilder::migration_step)
//! (the application's), else `APPLICATION_FIRST`; and above them all the rule
//! `<application>.migration` (group `DUBBO_SERVICEDISCOVERY_MIGRATION`) of the config
//! center ([`MigrationRule`], Java's YAML), followed live. A switch happens once the new
//! source has providers, without a failed call. The rule's `proportion` and `delay` apply
//! as in Java 3.3 (see [`StepSettings`]).
//!
//! [`build`](crate::consumer::ReferenceBuilder::build) returns once the step has chosen
//! its first list (or after the reference's `wait`): FORCE_INTERFACE with the
//! interface-level list, FORCE_APPLICATION with the application level's, and
//! APPLICATION_FIRST once both levels have answered — or at once with the interface level
//! (a cache file's list, say) when the registry cannot be reached to read the
//! application level, or after half of `wait` when the application level is slow to
//! answer. So a consumer starting while its registry is down calls the providers of its
//! cache file as soon as `build()` returns, and moves to the application level once the
//! registry is back (if that level wins then).
//!
//! ```yaml
//! # zkCli.sh create /dubbo/config/DUBBO_SERVICEDISCOVERY_MIGRATION/shop-web.migration "…"
//! key: shop-web
//! step: FORCE_APPLICATION
//! interfaces:
//!   - serviceKey: com.example.UserService:1.0.0
//!     step: APPLICATION_FIRST
//!     threshold: 0.5
//! ```

pub use rdubbo_core::discovery::*;

mod app_level;
mod metadata;
mod migration;
mod rule;

pub use metadata::metadata_fetches;
pub use migration::{AddressSource, MigrationStatus};
pub use rule::{
    ApplicationStep, Decision, MigrationRule, MigrationStep, ServiceStep, StepSettings,
};

pub(crate) use migration::{Migration, MigrationConfig};
