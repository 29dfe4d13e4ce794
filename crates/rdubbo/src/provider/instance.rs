//! Dubbo 3 application-level registration of a provider: its [`MetadataInfo`], the
//! `org.apache.dubbo.metadata.MetadataService` that answers it, and its
//! [`ServiceInstance`] with the interface → application mapping in every registry that
//! supports [`ServiceDiscovery`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::discovery::{self, keys as meta};
use crate::error::codes;
use crate::metadata::{self, MetadataInfo, ServiceMetadata};
use crate::{
    BoxFuture, Export, Invocation, Invoker, RegisterMode, Registry, Reply, RpcError, RpcResult,
    ServiceDiscovery, ServiceInfo, ServiceInstance, SetupError, Url, Value,
};

/// The registries that get interface-level URLs, and the discoveries that get the
/// application instance.
pub(crate) type Split = (Vec<Arc<dyn Registry>>, Vec<Arc<dyn ServiceDiscovery>>);

/// Where `registries` take a provider whose mode is `mode` (a registry URL's
/// `register-mode` parameter wins): the registries that get interface-level URLs (those
/// in `interface` or `all` mode, and those without application-level support), and the
/// discoveries that get the application instance.
pub(crate) fn split_by_mode(
    registries: &[Arc<dyn Registry>],
    mode: RegisterMode,
) -> Result<Split, SetupError> {
    let mut interface_level = Vec::new();
    let mut instance_level = Vec::new();
    for registry in registries {
        let mode = match registry.url().param_non_empty("register-mode") {
            Some(m) => m.parse::<RegisterMode>().map_err(SetupError::Invalid)?,
            None => mode,
        };
        let discovery = mode
            .instance()
            .then(|| registry.service_discovery())
            .flatten();
        if mode.interface() || discovery.is_none() {
            interface_level.push(registry.clone());
        }
        instance_level.extend(discovery);
    }
    Ok((interface_level, instance_level))
}

/// Versions of a value that only grows: a reference to any version lives as long as the
/// list (what [`Provider::metadata`](super::Provider::metadata) and
/// [`Provider::instance`](super::Provider::instance) lend out), the last one is current.
/// A version is added only when dynamic configuration changes a provider URL.
pub(crate) struct Versions<T> {
    first: OnceLock<Box<Node<T>>>,
    push: Mutex<()>,
}

struct Node<T> {
    value: T,
    next: OnceLock<Box<Node<T>>>,
}

impl<T> Default for Versions<T> {
    fn default() -> Self {
        Versions {
            first: OnceLock::new(),
            push: Mutex::new(()),
        }
    }
}

impl<T> Versions<T> {
    /// The current version.
    pub(crate) fn latest(&self) -> Option<&T> {
        let mut node = self.first.get()?;
        while let Some(next) = node.next.get() {
            node = next;
        }
        Some(&node.value)
    }

    /// Makes `value` the current version.
    pub(crate) fn push(&self, value: T) {
        let _order = self.push.lock().unwrap_or_else(|e| e.into_inner());
        let mut slot = &self.first;
        while let Some(node) = slot.get() {
            slot = &node.next;
        }
        let _ = slot.set(Box::new(Node {
            value,
            next: OnceLock::new(),
        }));
    }
}

/// What the MetadataService answers once the server listens.
pub(crate) struct Published {
    pub(crate) info: MetadataInfo,
    pub(crate) revision: String,
    pub(crate) urls: Vec<Url>,
}

/// The methods of `org.apache.dubbo.metadata.MetadataService` rdubbo answers.
const METHODS: &[&str] = &[
    "getMetadataInfo",
    "getMetadataInfos",
    "getExportedURLs",
    "serviceName",
    "version",
];

/// The identity the MetadataService of application `app` is exported with: group = the
/// application name, version 1.0.0.
pub(crate) fn metadata_service_info(app: &str) -> ServiceInfo {
    ServiceInfo {
        interface: metadata::METADATA_SERVICE.to_owned(),
        version: Some(metadata::METADATA_SERVICE_VERSION.to_owned()),
        group: Some(app.to_owned()),
        methods: METHODS.iter().map(|m| (*m).to_owned()).collect(),
        ..Default::default()
    }
}

/// Answers `org.apache.dubbo.metadata.MetadataService` (V1) for one application, as a
/// Java 3.3 provider does: `getMetadataInfo(revision)` gives the application's
/// [`MetadataInfo`] when the revision is the current one (else `null`, as Java: a consumer
/// that asks for a revision replaced meanwhile reads the instance again),
/// `getMetadataInfos()` the list of it, `getExportedURLs(…)` the provider URLs (a
/// `java.util.TreeSet` of strings; the first argument, when given, selects an interface),
/// `serviceName()` the application name, `version()` `1.0.0`.
pub(crate) struct MetadataServiceInvoker {
    pub(crate) app: String,
    pub(crate) published: Arc<Versions<Published>>,
}

impl Invoker for MetadataServiceInvoker {
    fn invoke(&self, invocation: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        let result = self.answer(&invocation).map(Reply::Value);
        Box::pin(async move { result })
    }
}

impl MetadataServiceInvoker {
    fn answer(&self, invocation: &Invocation) -> RpcResult<Value> {
        let published = self.published.latest();
        match &*invocation.method {
            "getMetadataInfo" => {
                let revision = match invocation.args.first() {
                    Some(Value::String(r)) => r,
                    _ => return Ok(Value::Null),
                };
                Ok(published
                    .filter(|p| p.revision == revision)
                    .map_or(Value::Null, |p| p.info.to_value()))
            }
            "getMetadataInfos" => Ok(Value::List(crate::value::List {
                type_name: None,
                items: published.map(|p| p.info.to_value()).into_iter().collect(),
            })),
            "getExportedURLs" => {
                let interface = match invocation.args.first() {
                    Some(Value::String(i)) if i != "*" => Some(i),
                    _ => None,
                };
                let mut urls: Vec<String> = published
                    .map(|p| {
                        p.urls
                            .iter()
                            .filter(|u| interface.as_deref().is_none_or(|i| u.interface() == i))
                            .map(Url::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                urls.sort();
                Ok(Value::List(crate::value::List {
                    type_name: Some("java.util.TreeSet".into()),
                    items: urls.into_iter().map(Value::String).collect(),
                }))
            }
            "serviceName" => Ok(Value::String(self.app.clone())),
            "version" => Ok(Value::String(metadata::METADATA_SERVICE_VERSION.to_owned())),
            other => Err(RpcError::Remote {
                code: codes::METHOD_NOT_FOUND,
                message: format!("no method {other} in {}", metadata::METADATA_SERVICE),
                data: None,
            }),
        }
    }
}

/// The metadata side of one application: the MetadataService export, and what it answers
/// once every server listens ([`publish`](Self::publish)), and again when the provider
/// URLs change ([`InstanceRegistration::refresh`]).
#[derive(Clone)]
pub(crate) struct AppMetadata {
    app: String,
    published: Arc<Versions<Published>>,
}

impl AppMetadata {
    /// The metadata of application `app`, nothing published yet.
    pub(crate) fn new(app: &str) -> AppMetadata {
        AppMetadata {
            app: app.to_owned(),
            published: Arc::new(Versions::default()),
        }
    }

    /// The MetadataService to serve (group = application, version 1.0.0). Not wrapped in
    /// a provider's layers: consumers must reach it to find anything.
    pub(crate) fn export(&self) -> Export {
        Export {
            info: metadata_service_info(&self.app),
            invoker: Arc::new(MetadataServiceInvoker {
                app: self.app.clone(),
                published: self.published.clone(),
            }),
        }
    }

    /// What the MetadataService answers, once published.
    pub(crate) fn info(&self) -> Option<&MetadataInfo> {
        self.published.latest().map(|p| &p.info)
    }

    /// Publishes the metadata of `urls` (what the MetadataService answers from now on) and
    /// builds the registration of the application's
    /// instance at `host` on the port of `endpoints[0]`, the protocol and port its
    /// MetadataService is served on; nothing is registered yet.
    pub(crate) fn publish(
        &self,
        host: &str,
        endpoints: &[(String, u16)],
        urls: &[Url],
        timestamp: &str,
        discoveries: Vec<Arc<dyn ServiceDiscovery>>,
    ) -> InstanceRegistration {
        let info = metadata_info(&self.app, urls);
        let revision = info.revision();
        let instance = service_instance(&self.app, host, endpoints, &revision, timestamp);
        let interfaces = urls.iter().map(|u| u.interface().to_owned()).collect();
        self.published.push(Published {
            info,
            revision,
            urls: urls.to_vec(),
        });
        InstanceRegistration::new(instance, interfaces, discoveries)
    }

    /// Publishes the metadata of `urls` when its revision differs from the current one;
    /// the new revision then.
    fn republish(&self, urls: &[Url]) -> Option<String> {
        let info = metadata_info(&self.app, urls);
        let revision = info.revision();
        if self.published.latest().map(|p| &p.revision) == Some(&revision) {
            return None;
        }
        self.published.push(Published {
            info,
            revision: revision.clone(),
            urls: urls.to_vec(),
        });
        Some(revision)
    }
}

/// The application's metadata: one service per provider URL, on the registered port.
pub(crate) fn metadata_info(app: &str, urls: &[Url]) -> MetadataInfo {
    let mut info = MetadataInfo::new(app);
    for url in urls {
        info.add_service(ServiceMetadata::from_url(url));
    }
    info
}

/// The instance a provider registers: its address with the port of the first endpoint,
/// the revision of its metadata, its endpoints (protocol, port), the first of which serves
/// the MetadataService (`local` storage: the instance answers its metadata itself).
pub(crate) fn service_instance(
    app: &str,
    host: &str,
    endpoints: &[(String, u16)],
    revision: &str,
    timestamp: &str,
) -> ServiceInstance {
    let (protocol, port) = endpoints
        .first()
        .map(|(p, port)| (p.as_str(), *port))
        .unwrap_or(("dubbo", 0));
    let mut instance = ServiceInstance::new(app, host, port);
    let release = format!("rdubbo-{}", env!("CARGO_PKG_VERSION"));
    let params = metadata::metadata_service_url_params(protocol, port, &release);
    for (k, v) in [
        (meta::ENDPOINTS, discovery::endpoints_json(endpoints)),
        (
            meta::METADATA_SERVICE_URL_PARAMS,
            discovery::params_json(&params),
        ),
        (meta::REVISION, revision.to_owned()),
        (meta::STORAGE_TYPE, meta::STORAGE_LOCAL.to_owned()),
        (
            meta::META_VERSION,
            metadata::METADATA_SERVICE_VERSION.to_owned(),
        ),
        (meta::TIMESTAMP, timestamp.to_owned()),
    ] {
        instance.metadata.insert(k.to_owned(), v);
    }
    instance
}

/// Makes every change of the configured URLs of `registrations` (a configurator document,
/// an override rule) republish `metadata` and update `instance`'s revision, and applies
/// what changed before this was set. The callbacks hold no strong reference: once the
/// instance or a registration is dropped they do nothing.
pub(crate) async fn follow_configured(
    instance: &Arc<InstanceRegistration>,
    metadata: &AppMetadata,
    registrations: &[Arc<super::registration::Registration>],
) {
    let runtime = tokio::runtime::Handle::current();
    let weak: Vec<std::sync::Weak<super::registration::Registration>> =
        registrations.iter().map(Arc::downgrade).collect();
    for r in registrations {
        let (runtime, weak) = (runtime.clone(), weak.clone());
        let (instance, metadata) = (Arc::downgrade(instance), metadata.clone());
        r.on_change(Arc::new(move || {
            let (weak, instance, metadata) = (weak.clone(), instance.clone(), metadata.clone());
            runtime.spawn(async move {
                let Some(instance) = instance.upgrade() else {
                    return;
                };
                let Some(registrations) = weak
                    .iter()
                    .map(std::sync::Weak::upgrade)
                    .collect::<Option<Vec<_>>>()
                else {
                    return;
                };
                instance
                    .refresh(&metadata, || {
                        registrations.iter().map(|r| r.configured()).collect()
                    })
                    .await;
            });
        }));
    }
    if !registrations.is_empty() {
        instance
            .refresh(metadata, || {
                registrations.iter().map(|r| r.configured()).collect()
            })
            .await;
    }
}

/// The instance of one provider in the registries that support application-level
/// discovery, with the mapping of each of its interfaces.
pub(crate) struct InstanceRegistration {
    /// The instance as first registered, and its updates.
    first: ServiceInstance,
    updates: Versions<ServiceInstance>,
    pub(crate) interfaces: Vec<String>,
    pub(crate) discoveries: Vec<Arc<dyn ServiceDiscovery>>,
    online: AtomicBool,
    /// Orders the registrations, unregistrations and updates of the instance.
    changes: tokio::sync::Mutex<()>,
}

impl InstanceRegistration {
    pub(crate) fn new(
        instance: ServiceInstance,
        mut interfaces: Vec<String>,
        discoveries: Vec<Arc<dyn ServiceDiscovery>>,
    ) -> InstanceRegistration {
        interfaces.sort();
        interfaces.dedup();
        InstanceRegistration {
            first: instance,
            updates: Versions::default(),
            interfaces,
            discoveries,
            online: AtomicBool::new(false),
            changes: tokio::sync::Mutex::new(()),
        }
    }

    /// The instance as registered now (its revision follows the metadata).
    pub(crate) fn instance(&self) -> &ServiceInstance {
        self.updates.latest().unwrap_or(&self.first)
    }

    /// Publishes the metadata of the provider URLs as `urls` gives them now (the URLs
    /// with their dynamic configuration) when they changed it, and updates the instance
    /// with the new revision in every discovery (in place), as a Java 3 provider does
    /// when its exported URLs change; consumers then fetch the new metadata.
    pub(crate) async fn refresh(&self, metadata: &AppMetadata, urls: impl FnOnce() -> Vec<Url>) {
        let _order = self.changes.lock().await;
        let Some(revision) = metadata.republish(&urls()) else {
            return;
        };
        let mut instance = self.instance().clone();
        instance
            .metadata
            .insert(meta::REVISION.to_owned(), revision.clone());
        self.updates.push(instance);
        tracing::info!(
            revision,
            "the application metadata changed; updating the instance"
        );
        if !self.online.load(Ordering::SeqCst) {
            return;
        }
        let instance = self.instance();
        for discovery in &self.discoveries {
            if let Err(e) = discovery.register(instance).await {
                tracing::warn!(instance = %instance.id(), error = %e, "instance update failed; retrying in the background");
            }
        }
    }

    /// Maps every interface to the application and registers the instance (`true`), or
    /// unregisters it; false when it already was so. Failures are logged: the discovery
    /// retries them in the background.
    pub(crate) async fn set_online(&self, online: bool) -> bool {
        let _order = self.changes.lock().await;
        if self.online.swap(online, Ordering::SeqCst) == online {
            return false;
        }
        let instance = self.instance();
        for discovery in &self.discoveries {
            if online {
                for interface in &self.interfaces {
                    if let Err(e) = discovery.map(interface, &instance.service_name).await {
                        tracing::warn!(interface = %interface, error = %e, "interface-application mapping failed; retrying in the background");
                    }
                }
                if let Err(e) = discovery.register(instance).await {
                    tracing::warn!(instance = %instance.id(), error = %e, "instance registration failed; retrying in the background");
                }
            } else if let Err(e) = discovery.unregister(instance).await {
                tracing::warn!(instance = %instance.id(), error = %e, "instance unregistration failed");
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_metadata_names_the_revision_and_the_metadata_service() {
        let endpoints = [("dubbo".to_owned(), 20880), ("tri".to_owned(), 50051)];
        let i = service_instance("app", "127.0.0.1", &endpoints, "abc", "17");
        assert_eq!(i.port, 20880);
        assert_eq!(i.revision(), Some("abc"));
        assert_eq!(i.endpoints(), endpoints);
        let params = i.metadata_service_params();
        assert_eq!(params["protocol"], "dubbo");
        assert_eq!(params["port"], "20880");
        assert_eq!(params["version"], "1.0.0");
        assert_eq!(params["prefer.serialization"], "hessian2");
        assert_eq!(i.metadata[meta::STORAGE_TYPE], "local");
        assert_eq!(i.metadata[meta::META_VERSION], "1.0.0");
    }

    #[tokio::test]
    async fn metadata_service_answers_the_current_revision_only() {
        let url: Url = "dubbo://127.0.0.1:20880/a.B?interface=a.B&methods=x&pid=1&side=provider"
            .parse()
            .unwrap();
        let info = metadata_info("app", std::slice::from_ref(&url));
        let revision = info.revision();
        let published = Arc::new(Versions::default());
        let invoker = MetadataServiceInvoker {
            app: "app".into(),
            published: published.clone(),
        };
        let call = |method: &str, args: Vec<Value>| {
            invoker.invoke(Invocation::new(metadata::METADATA_SERVICE, method, args))
        };
        // Before the server listens nothing is published.
        let r = call("getMetadataInfo", vec![Value::String(revision.clone())]).await;
        assert_eq!(r.unwrap().into_value().unwrap(), Value::Null);
        published.push(Published {
            info: info.clone(),
            revision: revision.clone(),
            urls: vec![url],
        });
        let r = call("getMetadataInfo", vec![Value::String(revision.clone())]).await;
        let (back, rev) = MetadataInfo::from_value(&r.unwrap().into_value().unwrap()).unwrap();
        assert_eq!((back, rev), (info, revision));
        let r = call("getMetadataInfo", vec![Value::String("other".into())]).await;
        assert_eq!(r.unwrap().into_value().unwrap(), Value::Null);
        let r = call("serviceName", vec![]).await;
        assert_eq!(
            r.unwrap().into_value().unwrap(),
            Value::String("app".into())
        );
        let r = call("getExportedURLs", vec![])
            .await
            .unwrap()
            .into_value()
            .unwrap();
        let Value::List(l) = r else { panic!("{r:?}") };
        assert_eq!(l.items.len(), 1);
        let e = call("nope", vec![]).await.err().unwrap();
        assert!(e.to_string().contains("no method nope"), "{e}");
    }

    #[tokio::test]
    async fn changed_urls_publish_a_new_revision_and_update_the_instance() {
        let url: Url = "dubbo://127.0.0.1:20880/a.B?interface=a.B&methods=x&side=provider"
            .parse()
            .unwrap();
        let metadata = AppMetadata::new("app");
        let endpoints = [("dubbo".to_owned(), 20880)];
        let urls = vec![url.clone()];
        let registration = metadata.publish("127.0.0.1", &endpoints, &urls, "1", Vec::new());
        let first = registration.instance().revision().unwrap().to_owned();
        let held = metadata.info().unwrap();
        // The same URLs: nothing changes.
        registration.refresh(&metadata, || urls.clone()).await;
        assert_eq!(registration.instance().revision(), Some(first.as_str()));
        let configured = vec![url.with_param("weight", "900")];
        registration.refresh(&metadata, || configured.clone()).await;
        let second = registration.instance().revision().unwrap().to_owned();
        assert_ne!(second, first);
        assert_eq!(metadata.info().unwrap().revision(), second);
        assert_eq!(held.revision(), first, "what was lent out stays valid");
        let invoker = metadata.export().invoker;
        let ask = |revision: &str| {
            invoker.invoke(Invocation::new(
                metadata::METADATA_SERVICE,
                "getMetadataInfo",
                vec![Value::String(revision.to_owned())],
            ))
        };
        let answer = ask(&second).await.unwrap().into_value().unwrap();
        let (info, revision) = MetadataInfo::from_value(&answer).unwrap();
        assert_eq!(revision, second);
        assert_eq!(
            info.services.values().next().unwrap().params["weight"],
            "900"
        );
        let old = ask(&first).await.unwrap().into_value().unwrap();
        assert_eq!(old, Value::Null);
    }
}
