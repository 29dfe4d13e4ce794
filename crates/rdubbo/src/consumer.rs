//! Calling services: a [`Reference`] is an [`Invoker`] for one service, either bound to
//! one provider URL or fed by a registry, with failover across providers.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use rdubbo::consumer::Reference;
//! let registry = rdubbo::registry::connect("zookeeper://127.0.0.1:2181").await?;
//! let demo = Reference::builder("org.apache.dubbo.demo.DemoService")
//!     .version("1.0.0")
//!     .registry(registry)
//!     .build()
//!     .await?;
//! let client = rdubbo::generic::GenericClient::new(
//!     std::sync::Arc::new(demo),
//!     "org.apache.dubbo.demo.DemoService",
//! );
//! # Ok(()) }
//! ```
//!
//! Where a [`Layer`] goes decides what it sees: [`ReferenceBuilder::layer`] wraps the
//! reference outside the cluster (each call once, whatever the retries; metrics of what the
//! caller experienced, a rate limit per caller), [`ReferenceBuilder::attempt_layer`] wraps
//! each provider's invoker inside it (every attempt, with the provider chosen; per-provider
//! metrics, a per-attempt deadline). Protocols, the cluster strategy and the load balancer
//! come from the reference's [`Extensions`] table ([`ReferenceBuilder::extensions`], the
//! built-ins by default).
//!
//! When the registry also speaks Dubbo 3's application-level discovery (ZooKeeper does),
//! the reference follows the applications providing its interface too and calls
//! whichever addresses its migration step picks (`APPLICATION_FIRST` by default, as Java
//! 3): see [`discovery`](crate::discovery) and [`ReferenceBuilder::migration_step`].

use std::sync::Arc;
use std::time::Duration;

use rdubbo_cluster::filter::{self, Filter, Side};
use rdubbo_cluster::{ClusterInvoker, Directory};

use crate::discovery::{Decision, Migration, MigrationConfig, MigrationStatus, MigrationStep};
use crate::extension::Extensions;
use crate::registry::{now_millis, sorted_params};
use crate::{
    layered, BoxFuture, Invocation, Invoker, Layer, NotifyListener, Protocol, Registry, Reply,
    RpcResult, SetupError, Url,
};

/// Builds a [`Reference`].
pub struct ReferenceBuilder {
    interface: String,
    version: Option<String>,
    group: Option<String>,
    application: String,
    registry: Option<Arc<dyn Registry>>,
    direct: Option<Url>,
    extensions: Arc<Extensions>,
    protocols: Vec<Arc<dyn Protocol>>,
    retries: usize,
    check: bool,
    wait: Duration,
    params: Vec<(String, String)>,
    layers: Vec<Arc<dyn Layer>>,
    attempt_layers: Vec<Arc<dyn Layer>>,
    migration_step: Option<MigrationStep>,
}

/// A service reference: calls go to one of the live providers, with failover.
pub struct Reference {
    cluster: ClusterInvoker,
    invoker: Arc<dyn Invoker>,
    registry: Option<Arc<dyn Registry>>,
    consumer: Url,
    listener: Arc<dyn NotifyListener>,
    migration: Option<Arc<Migration>>,
}

impl Reference {
    /// A builder for `interface`.
    pub fn builder(interface: &str) -> ReferenceBuilder {
        ReferenceBuilder {
            interface: interface.to_owned(),
            version: None,
            group: None,
            application: "rdubbo-consumer".to_owned(),
            registry: None,
            direct: None,
            extensions: crate::extension::shared(),
            protocols: Vec::new(),
            retries: 2,
            check: true,
            wait: Duration::from_secs(3),
            params: Vec::new(),
            layers: Vec::new(),
            attempt_layers: Vec::new(),
            migration_step: None,
        }
    }

    /// The live provider list.
    pub fn directory(&self) -> &Arc<Directory> {
        self.cluster.directory()
    }

    /// The consumer URL (as registered in `consumers`).
    pub fn consumer_url(&self) -> &Url {
        &self.consumer
    }

    /// Where the providers come from, when the registry supports application-level
    /// discovery: the migration step, the source and the providers of each side.
    pub fn migration(&self) -> Option<MigrationStatus> {
        self.migration.as_ref().map(|m| m.status())
    }

    /// Unsubscribes and unregisters the consumer.
    pub async fn close(&self) {
        if let Some(migration) = &self.migration {
            migration.stop().await;
        }
        self.directory().unwatch_rules().await;
        if let Some(registry) = &self.registry {
            let subscribe = subscription_url(&self.consumer);
            let _ = registry.unsubscribe(&subscribe, &self.listener).await;
            let _ = registry.unregister(&self.consumer).await;
        }
    }
}

impl Invoker for Reference {
    fn invoke(&self, mut invocation: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        if invocation.version.is_none() {
            invocation.version = self.consumer.version().map(Into::into);
        }
        if invocation.group.is_none() {
            invocation.group = self.consumer.group().map(Into::into);
        }
        self.invoker.invoke(invocation)
    }
}

fn subscription_url(consumer: &Url) -> Url {
    consumer
        .clone()
        .with_param("category", "providers,configurators,routers")
}

impl ReferenceBuilder {
    /// Service version.
    pub fn version(mut self, version: &str) -> Self {
        self.version = Some(version.to_owned()).filter(|v| !v.is_empty());
        self
    }
    /// Service group.
    pub fn group(mut self, group: &str) -> Self {
        self.group = Some(group.to_owned()).filter(|v| !v.is_empty());
        self
    }
    /// The `application` parameter of the consumer URL.
    pub fn application(mut self, name: &str) -> Self {
        self.application = name.to_owned();
        self
    }
    /// Discover providers through `registry`.
    pub fn registry(mut self, registry: Arc<dyn Registry>) -> Self {
        self.registry = Some(registry);
        self
    }
    /// Call this provider URL directly, no registry.
    pub fn url(mut self, url: Url) -> Self {
        self.direct = Some(url);
        self
    }
    /// Adds `protocols` to this reference's copy of its extension table, in place of
    /// the ones of the same names (by default it speaks every protocol of the table;
    /// [`extensions`](Self::extensions) sets the whole table).
    pub fn protocols(mut self, protocols: Vec<Arc<dyn Protocol>>) -> Self {
        self.protocols.extend(protocols);
        self
    }
    /// The extension table this reference takes its protocols, load balancers and cluster
    /// strategies from (default: [`extension::builtin`](crate::extension::builtin)).
    pub fn extensions(mut self, extensions: Arc<Extensions>) -> Self {
        self.extensions = extensions;
        self
    }
    /// Extra attempts on other providers after a retryable failure (default 2).
    pub fn retries(mut self, retries: usize) -> Self {
        self.retries = retries;
        self
    }
    /// With `check` (the default, as in Dubbo), [`build`](Self::build) fails when no
    /// provider is known within the wait; without it the reference starts empty and calls
    /// fail with "no provider" until one appears.
    pub fn check(mut self, check: bool) -> Self {
        self.check = check;
        self
    }
    /// The cluster strategy (`failover` by default, `failfast`, `failsafe`, `failback`,
    /// `forking`, `broadcast`).
    pub fn cluster(self, name: &str) -> Self {
        self.param("cluster", name)
    }
    /// The load balancer (`random` by default, `roundrobin`, `leastactive`,
    /// `shortestresponse`, `consistenthash`, `p2c`).
    pub fn loadbalance(self, name: &str) -> Self {
        self.param("loadbalance", name)
    }
    /// Any other consumer URL parameter (`forks`, `methods.<m>.retries`, `hash.arguments` …).
    pub fn param(mut self, key: &str, value: &str) -> Self {
        self.params.retain(|(k, _)| k != key);
        self.params
            .push((key.to_owned(), crate::url::encode(value)));
        self
    }
    /// Adds a layer around the calls of this reference, outside the cluster: it sees each
    /// call once, whatever the retries (the first added sees calls first). `actives` and
    /// `accesslog` parameters add built-in filters inside them.
    pub fn layer(mut self, layer: Arc<dyn Layer>) -> Self {
        self.layers.push(layer);
        self
    }
    /// Adds a layer around each attempt on one provider, inside the cluster: with
    /// failover it sees every attempt (the first added sees an attempt first).
    pub fn attempt_layer(mut self, layer: Arc<dyn Layer>) -> Self {
        self.attempt_layers.push(layer);
        self
    }
    /// Adds a filter around the calls of this reference: [`layer`](Self::layer) for a
    /// [`Filter`].
    pub fn filter(self, filter: Arc<dyn Filter>) -> Self {
        self.layer(filter::layer(filter))
    }
    /// The migration step when neither the reference's nor the registry URL's
    /// `migration.step` parameter sets one (the application's setting; default
    /// `APPLICATION_FIRST`); the config center's migration rule overrides them all. Only
    /// for registries with application-level discovery.
    pub fn migration_step(mut self, step: MigrationStep) -> Self {
        self.migration_step = Some(step);
        self
    }
    /// How long [`build`](Self::build) waits for the first provider list (default 3 s).
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// The reference's table: its extensions with the protocols added on the builder.
    fn table(&self) -> Arc<Extensions> {
        if self.protocols.is_empty() {
            return self.extensions.clone();
        }
        let mut table = (*self.extensions).clone();
        for protocol in &self.protocols {
            table.add_protocol(protocol.clone());
        }
        Arc::new(table)
    }

    fn consumer_url(&self) -> Url {
        let mut params: Vec<(String, String)> = vec![
            ("application".into(), crate::url::encode(&self.application)),
            ("category".into(), "consumers".into()),
            ("check".into(), self.check.to_string()),
            ("dubbo".into(), "2.0.2".into()),
            ("interface".into(), self.interface.clone()),
            ("pid".into(), std::process::id().to_string()),
            (
                "release".into(),
                format!("rdubbo-{}", env!("CARGO_PKG_VERSION")),
            ),
            ("retries".into(), self.retries.to_string()),
            ("side".into(), "consumer".into()),
            ("timestamp".into(), now_millis().to_string()),
        ];
        if let Some(v) = &self.version {
            params.push(("version".into(), v.clone()));
        }
        if let Some(g) = &self.group {
            params.push(("group".into(), g.clone()));
        }
        for (k, v) in &self.params {
            params.retain(|(key, _)| key != k);
            params.push((k.clone(), v.clone()));
        }
        let text = format!(
            "consumer://127.0.0.1/{}?{}",
            self.interface,
            sorted_params(&mut params)
        );
        Url::parse(&text)
            .unwrap_or_else(|_| Url::new("consumer", "127.0.0.1", None, &self.interface))
    }

    /// The configured migration settings: `migration.step` / `migration.threshold` of the
    /// reference, else of the registry URL, else the builder's step, else
    /// `APPLICATION_FIRST` with threshold 0 (any application-level provider wins).
    fn migration_decision(&self, consumer: &Url, registry: &Url) -> Result<Decision, SetupError> {
        let param = |key: &str| {
            consumer
                .param_non_empty(key)
                .or_else(|| registry.param_non_empty(key))
                .map(str::to_owned)
        };
        let step = match param("migration.step") {
            Some(s) => s.parse::<MigrationStep>().map_err(SetupError::Invalid)?,
            None => self.migration_step.unwrap_or_default(),
        };
        let threshold = match param("migration.threshold") {
            Some(t) => t.parse::<f64>().map_err(|_| {
                SetupError::Invalid(format!("migration.threshold={t}: expected a number"))
            })?,
            None => 0.0,
        };
        Ok(Decision {
            step,
            threshold,
            force: false,
        })
    }

    /// Subscribes (or binds the direct URL) and returns the reference.
    ///
    /// Fails with [`SetupError::Unknown`] for a cluster strategy, load balancer or (direct
    /// URL) protocol its table lacks, [`SetupError::Registry`] when the subscription fails,
    /// [`SetupError::NoProvider`] when `check` is on and no provider appeared in time.
    pub async fn build(self) -> Result<Reference, SetupError> {
        let consumer = self.consumer_url();
        let table = self.table();
        let directory = Directory::with_extensions(
            consumer.clone().with_param("category", "providers"),
            table.clone(),
            self.attempt_layers.clone(),
        );
        let listener: Arc<dyn NotifyListener> = directory.clone();
        let cluster = ClusterInvoker::with_extensions(directory.clone(), &table)?;
        // User layers outside the built-in ones the URL asks for (`actives`, `accesslog`).
        let mut layers = self.layers.clone();
        layers.extend(filter::from_url(&consumer, Side::Consumer));
        let invoker = layered(Arc::new(cluster.clone()), &layers);
        if let Some(mut url) = self.direct.clone() {
            // A direct URL stands for a provider of exactly this reference.
            url.set_param("interface", self.interface.clone());
            if let Some(v) = &self.version {
                url.set_param("version", v.clone());
            }
            if let Some(g) = &self.group {
                url.set_param("group", g.clone());
            }
            directory.update(&[url.clone()]);
            if directory.providers().is_empty() {
                table.check_protocol(url.protocol())?;
                return Err(SetupError::Invalid(format!(
                    "protocol `{}` cannot call {url}",
                    url.protocol()
                )));
            }
            return Ok(Reference {
                cluster,
                invoker,
                registry: None,
                consumer,
                listener,
                migration: None,
            });
        }
        let Some(registry) = self.registry.clone() else {
            return Err(SetupError::Invalid(
                "a reference needs a registry or a provider URL".into(),
            ));
        };
        let migration = match registry.service_discovery() {
            Some(discovery) => {
                let configured = self.migration_decision(&consumer, registry.url())?;
                let provided_by = consumer.param_non_empty("provided-by").map(|apps| {
                    crate::url::decode(apps)
                        .unwrap_or_else(|_| apps.to_owned())
                        .split(',')
                        .map(|a| a.trim().to_owned())
                        .filter(|a| !a.is_empty())
                        .collect()
                });
                Some(
                    Migration::start(MigrationConfig {
                        consumer: consumer.clone().with_param("category", "providers"),
                        directory: directory.clone(),
                        discovery,
                        config_center: registry.dynamic_configuration(),
                        extensions: table.clone(),
                        configured,
                        provided_by,
                        grace: self.wait / 2,
                        attempt_layers: self.attempt_layers.clone(),
                    })
                    .await,
                )
            }
            None => None,
        };
        let listener = match &migration {
            Some(m) => m.interface_listener(),
            None => listener,
        };
        // A migration rule's `proportion` may send a share of the calls elsewhere.
        let invoker = match &migration {
            Some(m) => layered(m.calls(Arc::new(cluster.clone())), &layers),
            None => invoker,
        };
        if let Err(e) = registry.register(&consumer).await {
            tracing::warn!(error = %e, "consumer registration failed; retrying in the background");
        }
        if let Err(e) = registry
            .subscribe(&subscription_url(&consumer), listener.clone())
            .await
        {
            if let Some(m) = &migration {
                m.stop().await;
            }
            return Err(e.into());
        }
        let ready = directory.wait_ready(self.wait).await;
        if self.check && (!ready || directory.providers().is_empty()) {
            if let Some(m) = &migration {
                m.stop().await;
            }
            let _ = registry
                .unsubscribe(&subscription_url(&consumer), &listener)
                .await;
            let _ = registry.unregister(&consumer).await;
            return Err(SetupError::NoProvider(consumer.service_key()));
        }
        // Governance rules of the config center (configurators, condition and tag routers).
        directory
            .watch_rules(registry.dynamic_configuration())
            .await;
        Ok(Reference {
            cluster,
            invoker,
            registry: Some(registry),
            consumer,
            listener,
            migration,
        })
    }
}
