//! Dubbo 3 application-level registration of a provider: its [`MetadataInfo`], the
//! `org.apache.dubbo.metadata.MetadataService` that answers it, and its
//! [`ServiceInstance`] with the interface → application mapping in every registry that
//! supports [`ServiceDiscovery`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

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
/// [`MetadataInfo`] when the revision is the current one (else `null`),
/// `getMetadataInfos()` the list of it, `getExportedURLs(…)` the provider URLs (a
/// `java.util.TreeSet` of strings; the first argument, when given, selects an interface),
/// `serviceName()` the application name, `version()` `1.0.0`.
pub(crate) struct MetadataServiceInvoker {
    pub(crate) app: String,
    pub(crate) published: Arc<OnceLock<Published>>,
}

impl Invoker for MetadataServiceInvoker {
    fn invoke(&self, invocation: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        let result = self.answer(&invocation).map(Reply::Value);
        Box::pin(async move { result })
    }
}

impl MetadataServiceInvoker {
    fn answer(&self, invocation: &Invocation) -> RpcResult<Value> {
        let published = self.published.get();
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
/// once every server listens ([`publish`](Self::publish)).
#[derive(Clone)]
pub(crate) struct AppMetadata {
    app: String,
    published: Arc<OnceLock<Published>>,
}

impl AppMetadata {
    /// The metadata of application `app`, nothing published yet.
    pub(crate) fn new(app: &str) -> AppMetadata {
        AppMetadata {
            app: app.to_owned(),
            published: Arc::new(OnceLock::new()),
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
        self.published.get().map(|p| &p.info)
    }

    /// Publishes the metadata of `urls` (what the MetadataService answers from now on; a
    /// second call changes nothing) and builds the registration of the application's
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
        let _ = self.published.set(Published {
            info,
            revision,
            urls: urls.to_vec(),
        });
        InstanceRegistration::new(instance, interfaces, discoveries)
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

/// The instance of one provider in the registries that support application-level
/// discovery, with the mapping of each of its interfaces.
pub(crate) struct InstanceRegistration {
    pub(crate) instance: ServiceInstance,
    pub(crate) interfaces: Vec<String>,
    pub(crate) discoveries: Vec<Arc<dyn ServiceDiscovery>>,
    online: AtomicBool,
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
            instance,
            interfaces,
            discoveries,
            online: AtomicBool::new(false),
        }
    }

    /// Maps every interface to the application and registers the instance (`true`), or
    /// unregisters it; false when it already was so. Failures are logged: the discovery
    /// retries them in the background.
    pub(crate) async fn set_online(&self, online: bool) -> bool {
        if self.online.swap(online, Ordering::SeqCst) == online {
            return false;
        }
        for discovery in &self.discoveries {
            if online {
                for interface in &self.interfaces {
                    if let Err(e) = discovery.map(interface, &self.instance.service_name).await {
                        tracing::warn!(interface = %interface, error = %e, "interface-application mapping failed; retrying in the background");
                    }
                }
                if let Err(e) = discovery.register(&self.instance).await {
                    tracing::warn!(instance = %self.instance.id(), error = %e, "instance registration failed; retrying in the background");
                }
            } else if let Err(e) = discovery.unregister(&self.instance).await {
                tracing::warn!(instance = %self.instance.id(), error = %e, "instance unregistration failed");
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
        let published = Arc::new(OnceLock::new());
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
        let _ = published.set(Published {
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
}
