//! The Nacos half of the registry: the operations the failback base calls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::Method;
use rdubbo_core::registry::subscribed_categories;
use rdubbo_core::url::keys;
use rdubbo_core::{BoxFuture, RegistryError, RegistryResult, Url};
use rdubbo_registry::{Notifier, RegistryBackend};
use tokio::task::JoinHandle;

use crate::api::{lock, InstanceSpec, Shared, LIST};
use crate::beat::keep_beating;
use crate::client::instance_url;
use crate::model::{self, ServiceInfo};
use crate::subscribe::{first_read, follow, names_for};

/// The [`RegistryBackend`] of [`NacosRegistry`](crate::NacosRegistry).
pub struct NacosBackend {
    pub(crate) shared: Arc<Shared>,
    /// The beat task of each registered ephemeral instance, by URL.
    beats: Mutex<HashMap<String, JoinHandle<()>>>,
    /// The tasks following each subscription, by URL.
    follows: Mutex<HashMap<String, Vec<JoinHandle<()>>>>,
    udp_task: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for NacosBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NacosBackend")
            .field("servers", &self.shared.servers)
            .field("namespace", &self.shared.namespace)
            .field("group", &self.shared.group)
            .finish()
    }
}

fn abort_all(tasks: impl IntoIterator<Item = JoinHandle<()>>) {
    for t in tasks {
        t.abort();
    }
}

impl NacosBackend {
    pub(crate) fn new(shared: Arc<Shared>, udp_task: Option<JoinHandle<()>>) -> NacosBackend {
        NacosBackend {
            shared,
            beats: Mutex::new(HashMap::new()),
            follows: Mutex::new(HashMap::new()),
            udp_task: Mutex::new(udp_task),
        }
    }

    async fn register(&self, url: &Url) -> RegistryResult<()> {
        if url.host().is_empty() {
            return Err(RegistryError::Invalid(format!("{url} has no host")));
        }
        let spec = InstanceSpec::of_url(&self.shared, url);
        self.shared.register_instance(&spec).await?;
        tracing::info!(%url, "registered in nacos");
        if spec.ephemeral {
            let task = tokio::spawn(keep_beating(Arc::downgrade(&self.shared), spec));
            if let Some(old) = lock(&self.beats).insert(url.to_string(), task) {
                old.abort();
            }
        }
        Ok(())
    }

    async fn unregister(&self, url: &Url) -> RegistryResult<()> {
        if let Some(task) = lock(&self.beats).remove(&url.to_string()) {
            task.abort();
        }
        let spec = InstanceSpec::of_url(&self.shared, url);
        Ok(self.shared.deregister_instance(&spec).await?)
    }

    async fn subscribe(&self, url: &Url, notifier: Notifier) -> RegistryResult<()> {
        if url.interface() == keys::ANY {
            return Err(RegistryError::Invalid(
                "the nacos registry does not watch interface=*; use lookup".into(),
            ));
        }
        let categories = subscribed_categories(url);
        let interval = first_read(&self.shared, url, &categories, &notifier).await?;
        let tasks = categories
            .into_iter()
            .map(|category| {
                tokio::spawn(follow(
                    Arc::downgrade(&self.shared),
                    notifier.clone(),
                    category,
                    interval,
                ))
            })
            .collect();
        if let Some(old) = lock(&self.follows).insert(url.to_string(), tasks) {
            abort_all(old);
        }
        Ok(())
    }

    async fn lookup(&self, url: &Url) -> RegistryResult<Vec<Url>> {
        let inner = &self.shared;
        let wanted = subscribed_categories(url);
        let all_categories = url.param("category") == Some(keys::ANY);
        let names: Vec<(String, String)> = if url.interface() == keys::ANY {
            inner
                .service_names()
                .await?
                .into_iter()
                .filter_map(|n| {
                    let (category, ..) = model::parse_dubbo_service_name(&n)?;
                    (all_categories || wanted.contains(&category)).then_some((category, n))
                })
                .collect()
        } else {
            let cats = if all_categories {
                vec![
                    keys::PROVIDERS.to_owned(),
                    "consumers".to_owned(),
                    "routers".to_owned(),
                    "configurators".to_owned(),
                ]
            } else {
                wanted
            };
            cats.into_iter()
                .flat_map(|c| names_for(url, &c).into_iter().map(move |n| (c.clone(), n)))
                .collect()
        };
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (_, name) in names {
            let mut params = vec![
                ("serviceName", model::grouped(&inner.group, &name)),
                ("groupName", inner.group.clone()),
                ("healthyOnly", "false".to_owned()),
            ];
            params.push(("clusters", String::new()));
            let body = inner.request(Method::GET, LIST, params).await?;
            let info: ServiceInfo = serde_json::from_str(&body)
                .map_err(|e| RegistryError::Backend(format!("unreadable instance list: {e}")))?;
            for host in info.hosts.iter().filter(|h| h.enabled && h.healthy) {
                let u = instance_url(host);
                if (url.interface() == keys::ANY
                    || url.matches_provider(&u)
                    || u.category() != keys::PROVIDERS)
                    && seen.insert(u.to_string())
                {
                    out.push(u);
                }
            }
        }
        Ok(out)
    }
}

impl RegistryBackend for NacosBackend {
    fn is_available(&self) -> bool {
        self.shared
            .available
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn do_register<'a>(&'a self, url: &'a Url) -> BoxFuture<'a, RegistryResult<()>> {
        Box::pin(self.register(url))
    }

    fn do_unregister<'a>(&'a self, url: &'a Url) -> BoxFuture<'a, RegistryResult<()>> {
        Box::pin(self.unregister(url))
    }

    fn do_subscribe<'a>(
        &'a self,
        url: &'a Url,
        notifier: Notifier,
    ) -> BoxFuture<'a, RegistryResult<()>> {
        Box::pin(self.subscribe(url, notifier))
    }

    fn do_unsubscribe<'a>(&'a self, url: &'a Url) -> BoxFuture<'a, RegistryResult<()>> {
        Box::pin(async move {
            if let Some(tasks) = lock(&self.follows).remove(&url.to_string()) {
                abort_all(tasks);
            }
            Ok(())
        })
    }

    fn lookup<'a>(&'a self, url: &'a Url) -> BoxFuture<'a, RegistryResult<Vec<Url>>> {
        Box::pin(NacosBackend::lookup(self, url))
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move { self.stop() })
    }
}

impl NacosBackend {
    fn stop(&self) {
        abort_all(lock(&self.follows).drain().flat_map(|(_, t)| t));
        abort_all(lock(&self.beats).drain().map(|(_, t)| t));
        abort_all(lock(&self.udp_task).take());
    }
}

impl Drop for NacosBackend {
    fn drop(&mut self) {
        self.stop();
    }
}
