//! The application-level addresses of one reference (Java's `ServiceDiscoveryRegistry`
//! with its `ServiceInstancesChangedListener`): interface → applications (the mapping, or
//! the reference's `provided-by`) → their instances → the metadata of each revision →
//! provider URLs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::metadata::metadata_of;
use crate::extension::Extensions;
use crate::metadata::MetadataInfo;
use crate::{InstancesListener, ServiceDiscovery, ServiceInstance, Url};

/// What the application level found: provider URLs and the applications they come from.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct AppAddresses {
    pub(crate) urls: Vec<Url>,
    pub(crate) apps: Vec<String>,
}

enum Event {
    Apps(Vec<String>),
    Instances(String, Vec<ServiceInstance>),
    Retry,
    /// The registry cannot be reached: what it has not told yet counts as nothing.
    Unreachable,
    Stop,
}

/// A listener of an interface's mapping.
type MappingListener = Arc<dyn Fn(Vec<String>) + Send + Sync>;

/// Follows the application-level addresses of one reference until stopped (or dropped):
/// then the mapping and instance watches it set are taken away.
pub(crate) struct AppLevel {
    events: mpsc::UnboundedSender<Event>,
}

impl Drop for AppLevel {
    fn drop(&mut self) {
        let _ = self.events.send(Event::Stop);
    }
}

/// The longest pause between two attempts at metadata that could not be fetched.
const MAX_RETRY: Duration = Duration::from_secs(30);

impl AppLevel {
    /// Starts following: `on_update` gets the complete addresses once the applications and
    /// all their instances are known, then after every change.
    pub(crate) fn start(
        discovery: Arc<dyn ServiceDiscovery>,
        consumer: Url,
        extensions: Arc<Extensions>,
        provided_by: Option<Vec<String>>,
        on_update: Box<dyn Fn(AppAddresses) + Send + Sync>,
    ) -> AppLevel {
        let (events, rx) = mpsc::unbounded_channel();
        let follower = Follower {
            discovery,
            consumer,
            extensions,
            events: events.downgrade(),
            on_update,
            apps: None,
            instances: BTreeMap::new(),
            last: None,
            retry: Duration::from_millis(500),
            not_before: HashMap::new(),
            retry_pending: false,
            unreachable: false,
            told_instances: Arc::default(),
        };
        tokio::spawn(follower.run(provided_by, rx));
        AppLevel { events }
    }
}

struct Follower {
    discovery: Arc<dyn ServiceDiscovery>,
    consumer: Url,
    extensions: Arc<Extensions>,
    events: mpsc::WeakUnboundedSender<Event>,
    on_update: Box<dyn Fn(AppAddresses) + Send + Sync>,
    /// The applications providing the interface, once known.
    apps: Option<BTreeSet<String>>,
    /// The instances of each watched application (`None`: not told yet).
    instances: BTreeMap<String, Option<Vec<ServiceInstance>>>,
    last: Option<AppAddresses>,
    retry: Duration,
    /// Revisions whose metadata could not be fetched: not tried again before then.
    not_before: HashMap<(String, String), Instant>,
    /// A [`Event::Retry`] is on its way.
    retry_pending: bool,
    /// The registry could not be reached when it was asked last: applications and
    /// instances not told yet count as none (APPLICATION_FIRST then decides with the
    /// interface level, e.g. a cache file's list, instead of waiting).
    unreachable: bool,
    /// How many instance lists the watches told so far.
    told_instances: Arc<AtomicU64>,
}

impl Follower {
    async fn run(
        mut self,
        provided_by: Option<Vec<String>>,
        mut rx: mpsc::UnboundedReceiver<Event>,
    ) {
        let Some(events) = self.events.upgrade() else {
            return;
        };
        let listener: Arc<dyn InstancesListener> = {
            let events = self.events.clone();
            let told = self.told_instances.clone();
            Arc::new(move |app: &str, list: Vec<ServiceInstance>| {
                told.fetch_add(1, Ordering::Relaxed);
                if let Some(events) = events.upgrade() {
                    let _ = events.send(Event::Instances(app.to_owned(), list));
                }
            })
        };
        let interface = self.consumer.interface().to_owned();
        let mut mapping_listener: Option<MappingListener> = None;
        match provided_by {
            Some(apps) => {
                let _ = events.send(Event::Apps(apps));
            }
            None => {
                let weak = self.events.clone();
                let told = Arc::new(AtomicBool::new(false));
                let on_mapping: MappingListener = {
                    let told = told.clone();
                    Arc::new(move |apps| {
                        told.store(true, Ordering::Relaxed);
                        if let Some(events) = weak.upgrade() {
                            let _ = events.send(Event::Apps(apps));
                        }
                    })
                };
                let mapped = self
                    .discovery
                    .watch_mapping(&interface, on_mapping.clone())
                    .await;
                mapping_listener = Some(on_mapping);
                if let Err(e) = mapped {
                    tracing::warn!(interface = %interface, error = %e, "cannot read the interface-application mapping");
                    let _ = events.send(Event::Apps(Vec::new()));
                } else if !told.load(Ordering::Relaxed)
                    && self.discovery.mapping(&interface).await.is_err()
                {
                    // Watched, but not told: the registry is down (a registry answers
                    // the first value before the watch returns when it can).
                    let _ = events.send(Event::Unreachable);
                }
            }
        }
        drop(events);
        self.follow(&mut rx, &listener).await;
        // Stopped (the reference closed, or it follows the interface level only now):
        // nothing of this reference stays watched.
        if let Some(on_mapping) = &mapping_listener {
            let _ = self.discovery.unwatch_mapping(&interface, on_mapping).await;
        }
        for app in self.instances.keys() {
            let _ = self.discovery.unwatch_instances(app, &listener).await;
        }
    }

    /// Handles events until [`Event::Stop`] (or every sender is gone).
    async fn follow(
        &mut self,
        rx: &mut mpsc::UnboundedReceiver<Event>,
        listener: &Arc<dyn InstancesListener>,
    ) {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while let Ok(more) = rx.try_recv() {
                batch.push(more);
            }
            for event in batch {
                match event {
                    Event::Apps(apps) => self.set_apps(apps, listener).await,
                    Event::Instances(app, list) => {
                        if let Some(slot) = self.instances.get_mut(&app) {
                            *slot = Some(list);
                        }
                    }
                    Event::Retry => self.retry_pending = false,
                    Event::Unreachable => {
                        tracing::info!(interface = %self.consumer.interface(), "registry unreachable: no application-level provider known for now");
                        self.unreachable = true;
                        if self.apps.is_none() {
                            self.apps = Some(BTreeSet::new());
                        }
                    }
                    Event::Stop => return,
                }
            }
            self.refresh().await;
        }
    }

    async fn set_apps(&mut self, apps: Vec<String>, listener: &Arc<dyn InstancesListener>) {
        let apps: BTreeSet<String> = apps.into_iter().filter(|a| !a.is_empty()).collect();
        let gone: Vec<String> = self
            .instances
            .keys()
            .filter(|a| !apps.contains(*a))
            .cloned()
            .collect();
        for app in gone {
            self.instances.remove(&app);
            let _ = self.discovery.unwatch_instances(&app, listener).await;
        }
        let (mut watched, told_before) = (0, self.told_instances.load(Ordering::Relaxed));
        for app in &apps {
            if self.instances.contains_key(app) {
                continue;
            }
            self.instances.insert(app.clone(), None);
            if let Err(e) = self.discovery.watch_instances(app, listener.clone()).await {
                tracing::warn!(app = %app, error = %e, "cannot watch the instances of the application");
                self.instances.insert(app.clone(), Some(Vec::new()));
            } else {
                watched += 1;
            }
        }
        let told = self.told_instances.load(Ordering::Relaxed) - told_before;
        if self.apps.as_ref() != Some(&apps) {
            tracing::info!(interface = %self.consumer.interface(), apps = ?apps, "applications providing the interface");
        }
        self.apps = Some(apps);
        // Instances not told while watched: either on their way, or the registry is down.
        self.unreachable = told < watched
            && self
                .discovery
                .mapping(self.consumer.interface())
                .await
                .is_err();
    }

    /// Builds the addresses from what is known and tells them when they changed.
    async fn refresh(&mut self) {
        if self.apps.is_none()
            || (!self.unreachable && self.instances.values().any(Option::is_none))
        {
            return;
        }
        // Instances by (application, revision).
        let mut by_revision: HashMap<(String, String), Vec<&ServiceInstance>> = HashMap::new();
        for (app, list) in &self.instances {
            for instance in list.iter().flatten() {
                match instance.revision() {
                    Some(r) if !r.is_empty() && r != crate::metadata::EMPTY_REVISION => by_revision
                        .entry((app.clone(), r.to_owned()))
                        .or_default()
                        .push(instance),
                    _ => {}
                }
            }
        }
        // The metadata of every revision, fetched concurrently (a slow instance of one
        // application does not hold up the others); a revision that failed is not tried
        // again before its back-off ends.
        let now = Instant::now();
        self.not_before
            .retain(|key, _| by_revision.contains_key(key));
        let mut infos: HashMap<(String, String), Arc<MetadataInfo>> = HashMap::new();
        let mut failed = false;
        let mut fetches = tokio::task::JoinSet::new();
        for ((app, revision), instances) in &by_revision {
            let key = (app.clone(), revision.clone());
            if self.not_before.get(&key).is_some_and(|t| now < *t) {
                failed = true;
                continue;
            }
            let extensions = self.extensions.clone();
            let instances: Vec<ServiceInstance> = instances.iter().map(|i| (*i).clone()).collect();
            fetches.spawn(async move {
                let refs: Vec<&ServiceInstance> = instances.iter().collect();
                let result = metadata_of(&extensions, &key.0, &key.1, &refs).await;
                (key, result)
            });
        }
        while let Some(done) = fetches.join_next().await {
            let Ok((key, result)) = done else {
                failed = true;
                continue;
            };
            match result {
                Ok(info) => {
                    self.not_before.remove(&key);
                    infos.insert(key, info);
                }
                Err(e) => {
                    tracing::warn!(app = %key.0, revision = %key.1, error = %e, "no metadata; its instances are left out for now");
                    self.not_before.insert(key, now + self.retry);
                    failed = true;
                }
            }
        }
        let mut urls = Vec::new();
        for ((app, revision), instances) in &by_revision {
            let Some(info) = infos.get(&(app.clone(), revision.clone())) else {
                continue;
            };
            for instance in instances {
                urls.extend(provider_urls(&self.consumer, instance, info));
            }
        }
        urls.sort_by_cached_key(Url::to_string);
        urls.dedup_by(|a, b| a.to_string() == b.to_string());
        let addresses = AppAddresses {
            urls,
            apps: self.instances.keys().cloned().collect(),
        };
        if failed {
            self.schedule_retry();
        } else {
            self.retry = Duration::from_millis(500);
        }
        tracing::debug!(interface = %self.consumer.interface(), urls = ?addresses.urls.iter().map(Url::to_string).collect::<Vec<_>>(), "application-level addresses");
        if self.last.as_ref() != Some(&addresses) {
            self.last = Some(addresses.clone());
            (self.on_update)(addresses);
        }
    }

    fn schedule_retry(&mut self) {
        if self.retry_pending {
            return;
        }
        self.retry_pending = true;
        let delay = self.retry;
        self.retry = (self.retry * 2).min(MAX_RETRY);
        let events = self.events.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Some(events) = events.upgrade() {
                let _ = events.send(Event::Retry);
            }
        });
    }
}

/// The provider URLs of `consumer`'s interface that `instance` serves according to its
/// metadata: the instance's host, the port of the service's protocol among the instance's
/// endpoints (else the instance port), the service's path and parameters.
pub(crate) fn provider_urls(
    consumer: &Url,
    instance: &ServiceInstance,
    info: &MetadataInfo,
) -> Vec<Url> {
    let wanted_protocol = consumer.param_non_empty("protocol");
    let endpoints = instance.endpoints();
    let mut urls = Vec::new();
    for service in info.services.values() {
        if service.name != consumer.interface() {
            continue;
        }
        if wanted_protocol.is_some_and(|p| p != service.protocol) {
            continue;
        }
        let port = endpoints
            .iter()
            .find(|(p, _)| *p == service.protocol)
            .map_or(instance.port, |(_, port)| *port);
        let mut url = Url::new(&service.protocol, &instance.host, Some(port), &service.path);
        for (k, v) in &service.params {
            url.set_param(k, crate::url::encode(v));
        }
        if url.param_non_empty("interface").is_none() {
            url.set_param("interface", crate::url::encode(&service.name));
        }
        if let Some(g) = &service.group {
            if url.param_non_empty("group").is_none() {
                url.set_param("group", crate::url::encode(g));
            }
        }
        if let Some(v) = &service.version {
            if url.param_non_empty("version").is_none() {
                url.set_param("version", crate::url::encode(v));
            }
        }
        urls.push(url);
    }
    urls
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::{endpoints_json, keys};
    use crate::metadata::ServiceMetadata;

    #[test]
    fn urls_take_the_instance_host_and_the_protocols_endpoint() {
        let mut info = MetadataInfo::new("shop");
        for (protocol, port) in [("dubbo", 20880), ("tri", 50051)] {
            let mut s = ServiceMetadata::new("demo.Api", protocol, port);
            s.version = Some("1.0.0".into());
            s.params.insert("interface".into(), "demo.Api".into());
            s.params.insert("version".into(), "1.0.0".into());
            s.params.insert("methods".into(), "a,b".into());
            info.add_service(s);
        }
        info.add_service(ServiceMetadata::new("other.Api", "dubbo", 20880));
        let mut instance = ServiceInstance::new("shop", "10.0.0.7", 20880);
        instance.metadata.insert(
            keys::ENDPOINTS.into(),
            endpoints_json(&[("dubbo".into(), 20880), ("tri".into(), 50051)]),
        );
        let consumer: Url = "consumer://127.0.0.1/demo.Api?interface=demo.Api&version=1.0.0"
            .parse()
            .unwrap();
        let urls = provider_urls(&consumer, &instance, &info);
        let mut shown: Vec<String> = urls.iter().map(Url::to_string).collect();
        shown.sort();
        assert_eq!(
            shown,
            [
                "dubbo://10.0.0.7:20880/demo.Api?interface=demo.Api&methods=a%2Cb&version=1.0.0",
                "tri://10.0.0.7:50051/demo.Api?interface=demo.Api&methods=a%2Cb&version=1.0.0",
            ]
        );
        assert!(urls.iter().all(|u| consumer.matches_provider(u)));
        let tri_only = consumer.clone().with_param("protocol", "tri");
        assert_eq!(provider_urls(&tri_only, &instance, &info).len(), 1);
    }
}
