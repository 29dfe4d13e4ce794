//! The extension table: every pluggable part of rdubbo by name — wire protocols (consumer
//! and provider side), registries, load balancers and cluster strategies.
//!
//! A table is a value, not a global: a reference, a provider or an application uses the
//! table it is given (the built-ins by default), so two parts of one program can speak
//! different sets. Built-ins register exactly as user plugins do; registering a name again
//! replaces the earlier entry.
//!
//! ```
//! use std::sync::Arc;
//! use rdubbo_cluster::{Extensions, LoadBalance, Provider};
//! use rdubbo_core::Invocation;
//!
//! /// Always the first provider.
//! struct First;
//! impl LoadBalance for First {
//!     fn select(&self, providers: &[Arc<Provider>], _: &Invocation) -> Arc<Provider> {
//!         providers[0].clone()
//!     }
//! }
//!
//! let mut table = Extensions::with_cluster_builtins();
//! table.add_balancer("first", || Arc::new(First));
//! assert!(table.balancer("first").is_some());
//! assert!(table.balancer("random").is_some());
//! assert!(table.check_balancer("nope").is_err());
//! assert!(table.cluster("failover").is_some());
//! ```
//!
//! A cluster strategy is written against [`Cluster`](crate::Cluster) (see the
//! [`strategy`] module) and registered with [`Extensions::add_cluster`].

use std::collections::BTreeMap;
use std::sync::Arc;

use rdubbo_core::{Protocol, RegistryFactory, SetupError};

use crate::loadbalance::{self, LoadBalance};
use crate::strategy::{self, ClusterStrategy};

/// Makes a fresh balancer (balancers may keep per-reference state, as round-robin does).
pub type BalancerFactory = Arc<dyn Fn() -> Arc<dyn LoadBalance> + Send + Sync>;

/// Protocols, registries, balancers and cluster strategies by name.
#[derive(Clone, Default)]
pub struct Extensions {
    protocols: BTreeMap<String, Arc<dyn Protocol>>,
    registries: BTreeMap<String, Arc<dyn RegistryFactory>>,
    balancers: BTreeMap<String, BalancerFactory>,
    clusters: BTreeMap<String, Arc<dyn ClusterStrategy>>,
}

impl std::fmt::Debug for Extensions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Extensions")
            .field("protocols", &self.protocol_names())
            .field("registries", &self.registry_names())
            .field("balancers", &self.balancer_names())
            .field("clusters", &self.cluster_names())
            .finish()
    }
}

fn unknown(kind: &'static str, name: &str, known: Vec<&str>) -> SetupError {
    SetupError::Unknown {
        kind,
        name: name.to_owned(),
        known: known.join(", "),
    }
}

impl Extensions {
    /// An empty table.
    pub fn new() -> Extensions {
        Extensions::default()
    }

    /// A table with the balancers (`random`, `roundrobin`, `leastactive`,
    /// `shortestresponse`, `consistenthash`, `p2c`) and cluster strategies (`failover`,
    /// `failfast`, `failsafe`, `failback`, `forking`, `broadcast`) of this crate.
    pub fn with_cluster_builtins() -> Extensions {
        let mut table = Extensions::new();
        loadbalance::register_builtins(&mut table);
        strategy::register_builtins(&mut table);
        table
    }

    /// Registers `protocol` under its [`name`](Protocol::name) (its URL scheme).
    pub fn add_protocol(&mut self, protocol: Arc<dyn Protocol>) -> &mut Self {
        self.protocols.insert(protocol.name().to_owned(), protocol);
        self
    }

    /// The protocol of scheme `name`.
    pub fn protocol(&self, name: &str) -> Option<&Arc<dyn Protocol>> {
        self.protocols.get(name)
    }

    /// The protocol of scheme `name`, or an error naming the known ones.
    pub fn check_protocol(&self, name: &str) -> Result<&Arc<dyn Protocol>, SetupError> {
        self.protocol(name)
            .ok_or_else(|| unknown("protocol", name, self.protocol_names()))
    }

    /// Every protocol, by name.
    pub fn protocols(&self) -> impl Iterator<Item = &Arc<dyn Protocol>> {
        self.protocols.values()
    }

    /// Names of the protocols.
    pub fn protocol_names(&self) -> Vec<&str> {
        self.protocols.keys().map(String::as_str).collect()
    }

    /// Registers a registry factory under URL scheme `scheme` (`zookeeper`).
    pub fn add_registry(&mut self, scheme: &str, factory: impl RegistryFactory) -> &mut Self {
        self.registries.insert(scheme.to_owned(), Arc::new(factory));
        self
    }

    /// The registry factory of scheme `scheme`.
    pub fn registry(&self, scheme: &str) -> Option<&Arc<dyn RegistryFactory>> {
        self.registries.get(scheme)
    }

    /// The registry factory of scheme `scheme`, or an error naming the known ones.
    pub fn check_registry(&self, scheme: &str) -> Result<&Arc<dyn RegistryFactory>, SetupError> {
        self.registry(scheme)
            .ok_or_else(|| unknown("registry", scheme, self.registry_names()))
    }

    /// Names (schemes) of the registries.
    pub fn registry_names(&self) -> Vec<&str> {
        self.registries.keys().map(String::as_str).collect()
    }

    /// Registers a balancer under `name` (`loadbalance=<name>`).
    pub fn add_balancer(
        &mut self,
        name: &str,
        make: impl Fn() -> Arc<dyn LoadBalance> + Send + Sync + 'static,
    ) -> &mut Self {
        self.balancers.insert(name.to_owned(), Arc::new(make));
        self
    }

    /// A fresh balancer named `name`.
    pub fn balancer(&self, name: &str) -> Option<Arc<dyn LoadBalance>> {
        self.balancers.get(name).map(|make| make())
    }

    /// Whether balancer `name` exists, or an error naming the known ones.
    pub fn check_balancer(&self, name: &str) -> Result<(), SetupError> {
        if self.balancers.contains_key(name) {
            Ok(())
        } else {
            Err(unknown("loadbalance", name, self.balancer_names()))
        }
    }

    /// Names of the balancers.
    pub fn balancer_names(&self) -> Vec<&str> {
        self.balancers.keys().map(String::as_str).collect()
    }

    /// Every balancer factory, by name.
    pub(crate) fn balancer_factories(&self) -> &BTreeMap<String, BalancerFactory> {
        &self.balancers
    }

    /// Registers a cluster strategy under `name` (`cluster=<name>`).
    pub fn add_cluster(&mut self, name: &str, strategy: impl ClusterStrategy) -> &mut Self {
        self.clusters.insert(name.to_owned(), Arc::new(strategy));
        self
    }

    /// The cluster strategy named `name`.
    pub fn cluster(&self, name: &str) -> Option<&Arc<dyn ClusterStrategy>> {
        self.clusters.get(name)
    }

    /// The cluster strategy named `name`, or an error naming the known ones.
    pub fn check_cluster(&self, name: &str) -> Result<&Arc<dyn ClusterStrategy>, SetupError> {
        self.cluster(name)
            .ok_or_else(|| unknown("cluster", name, self.cluster_names()))
    }

    /// Names of the cluster strategies.
    pub fn cluster_names(&self) -> Vec<&str> {
        self.clusters.keys().map(String::as_str).collect()
    }
}
