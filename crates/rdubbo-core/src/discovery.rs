//! Dubbo 3's application-level service discovery: one instance per provider process,
//! found by application name, and the interface → application mapping.
//!
//! A Dubbo 3 provider registers, besides (or instead of) one URL per interface
//! (see [`Registry`](crate::Registry)), a [`ServiceInstance`] of its application: its
//! address and a few metadata entries ([`keys`]) naming the revision of the application's
//! [`MetadataInfo`](crate::metadata::MetadataInfo) and where its MetadataService answers.
//! It also records, per interface, which applications provide it
//! ([`ServiceDiscovery::map`]), so that a consumer that knows only the interface finds the
//! applications, then their instances, then (through the MetadataService) the services.
//!
//! [`ServiceDiscovery`] is the extension point; a registry that supports it hands one out
//! through [`Registry::service_discovery`](crate::Registry::service_discovery) (the
//! ZooKeeper registry does: `/services/<app>/<ip:port>` and `/dubbo/mapping/<interface>`).
//! Registered instances and mappings are kept by the implementation and written again
//! after a reconnect or a new session, as registered URLs are.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::{BoxFuture, RegistryResult};

/// The metadata keys of a Dubbo 3 instance (Java's `ServiceInstanceMetadataUtils`).
pub mod keys {
    /// The revision of the application's metadata (`"0"`: no services).
    pub const REVISION: &str = "dubbo.metadata.revision";
    /// `local`: consumers fetch the metadata from the instance's MetadataService;
    /// `remote`: from the metadata report.
    pub const STORAGE_TYPE: &str = "dubbo.metadata.storage-type";
    /// JSON array of the instance's protocols and ports: `[{"port":20880,"protocol":"dubbo"}]`.
    pub const ENDPOINTS: &str = "dubbo.endpoints";
    /// JSON object of the MetadataService URL parameters (`protocol`, `port`, `version` …).
    pub const METADATA_SERVICE_URL_PARAMS: &str = "dubbo.metadata-service.url-params";
    /// Which MetadataService consumers call: `1.0.0` (Hessian2, the one rdubbo serves) or
    /// `2.0.0` (protobuf over Triple).
    pub const META_VERSION: &str = "meta-v";
    /// When the instance was built (ms since the epoch).
    pub const TIMESTAMP: &str = "timestamp";
    /// The storage type rdubbo uses: metadata served by the instance itself.
    pub const STORAGE_LOCAL: &str = "local";
}

/// Where a provider registers (Java's `dubbo.application.register-mode`); in
/// configuration files `"interface"`, `"instance"` or `"all"`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum RegisterMode {
    /// One URL per interface (Dubbo 2's model).
    Interface,
    /// One instance of the application (Dubbo 3's model).
    Instance,
    /// Both (Java 3's default).
    #[default]
    All,
}

impl RegisterMode {
    /// Whether interface-level URLs are registered.
    pub fn interface(self) -> bool {
        matches!(self, RegisterMode::Interface | RegisterMode::All)
    }

    /// Whether the application instance is registered.
    pub fn instance(self) -> bool {
        matches!(self, RegisterMode::Instance | RegisterMode::All)
    }

    /// `interface`, `instance` or `all`.
    pub fn as_str(self) -> &'static str {
        match self {
            RegisterMode::Interface => "interface",
            RegisterMode::Instance => "instance",
            RegisterMode::All => "all",
        }
    }
}

impl fmt::Display for RegisterMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RegisterMode {
    type Err = String;

    fn from_str(s: &str) -> Result<RegisterMode, String> {
        match s.trim() {
            "interface" => Ok(RegisterMode::Interface),
            "instance" => Ok(RegisterMode::Instance),
            "all" => Ok(RegisterMode::All),
            other => Err(format!(
                "unknown register-mode `{other}` (expected interface, instance or all)"
            )),
        }
    }
}

/// One running instance of an application (Java's `ServiceInstance`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInstance {
    /// The application name.
    pub service_name: String,
    /// The host consumers connect to.
    pub host: String,
    /// The port of the instance (that of its first protocol).
    pub port: u16,
    /// Dubbo's metadata of the instance (see [`keys`]).
    pub metadata: BTreeMap<String, String>,
}

impl ServiceInstance {
    /// An instance of `app` at `host:port` without metadata.
    pub fn new(app: &str, host: &str, port: u16) -> ServiceInstance {
        ServiceInstance {
            service_name: app.to_owned(),
            host: host.to_owned(),
            port,
            metadata: BTreeMap::new(),
        }
    }

    /// The id registries know the instance by: `host:port`.
    pub fn id(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The revision of the application's metadata this instance serves
    /// ([`keys::REVISION`]).
    pub fn revision(&self) -> Option<&str> {
        self.metadata.get(keys::REVISION).map(String::as_str)
    }

    /// The `(protocol, port)` pairs of [`keys::ENDPOINTS`]; empty when absent or not JSON.
    pub fn endpoints(&self) -> Vec<(String, u16)> {
        let Some(text) = self.metadata.get(keys::ENDPOINTS) else {
            return Vec::new();
        };
        let Ok(serde_json::Value::Array(items)) = serde_json::from_str(text) else {
            return Vec::new();
        };
        items
            .iter()
            .filter_map(|e| {
                let protocol = e.get("protocol")?.as_str()?.to_owned();
                let port = u16::try_from(e.get("port")?.as_u64()?).ok()?;
                Some((protocol, port))
            })
            .collect()
    }

    /// The parameters of [`keys::METADATA_SERVICE_URL_PARAMS`]; empty when absent or not
    /// JSON.
    pub fn metadata_service_params(&self) -> BTreeMap<String, String> {
        let Some(text) = self.metadata.get(keys::METADATA_SERVICE_URL_PARAMS) else {
            return BTreeMap::new();
        };
        let Ok(serde_json::Value::Object(map)) = serde_json::from_str(text) else {
            return BTreeMap::new();
        };
        map.into_iter()
            .map(|(k, v)| {
                let v = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, v)
            })
            .collect()
    }
}

/// The JSON of [`keys::ENDPOINTS`]: `[{"port":P,"protocol":"name"},…]`, in the order given.
pub fn endpoints_json(endpoints: &[(String, u16)]) -> String {
    let items: Vec<serde_json::Value> = endpoints
        .iter()
        .map(|(protocol, port)| serde_json::json!({"port": port, "protocol": protocol}))
        .collect();
    serde_json::Value::Array(items).to_string()
}

/// The JSON of [`keys::METADATA_SERVICE_URL_PARAMS`]: an object of string values, in the
/// order given.
pub fn params_json(params: &[(String, String)]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = params
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    serde_json::Value::Object(map).to_string()
}

/// Application-level registration in one registry: instances and the interface →
/// application mapping (Java's `ServiceDiscovery` with its `ServiceNameMapping`).
///
/// What is registered or mapped here is kept and written again after a reconnect or a new
/// session (an instance is ephemeral: it lives as long as the registry session), and
/// retried in the background when the registry cannot be reached; an error tells the
/// caller the first attempt failed.
pub trait ServiceDiscovery: Send + Sync + 'static {
    /// Registers `instance`, or updates it when an instance with the same application and
    /// id is registered already (a new revision).
    fn register(&self, instance: &ServiceInstance) -> BoxFuture<'_, RegistryResult<()>>;

    /// Withdraws an instance registered with [`register`](Self::register).
    fn unregister(&self, instance: &ServiceInstance) -> BoxFuture<'_, RegistryResult<()>>;

    /// The instances of application `app` registered now (one read).
    fn instances(&self, app: &str) -> BoxFuture<'_, RegistryResult<Vec<ServiceInstance>>>;

    /// Records that application `app` provides `interface` (added to the applications
    /// already recorded; mappings outlive the process, as in Java).
    fn map(&self, interface: &str, app: &str) -> BoxFuture<'_, RegistryResult<()>>;

    /// The applications recorded as providing `interface` (one read).
    fn mapping(&self, interface: &str) -> BoxFuture<'_, RegistryResult<Vec<String>>>;

    /// Watches the instances of application `app`: `listener` gets the complete current
    /// list as soon as it is known (possibly empty), then after every change, until
    /// [`unwatch_instances`](Self::unwatch_instances). The default answers
    /// [`RegistryError::Invalid`](crate::RegistryError::Invalid) ("not supported").
    fn watch_instances(
        &self,
        app: &str,
        listener: Arc<dyn InstancesListener>,
    ) -> BoxFuture<'_, RegistryResult<()>> {
        let _ = listener;
        let app = app.to_owned();
        Box::pin(async move {
            Err(crate::RegistryError::Invalid(format!(
                "watching the instances of `{app}` is not supported by this registry"
            )))
        })
    }

    /// Stops notifying `listener` about `app`'s instances.
    fn unwatch_instances(
        &self,
        app: &str,
        listener: &Arc<dyn InstancesListener>,
    ) -> BoxFuture<'_, RegistryResult<()>> {
        let _ = (app, listener);
        Box::pin(async { Ok(()) })
    }

    /// Watches the interface → application mapping of `interface`: `listener` gets the
    /// applications recorded now, then again whenever the record changes. The default
    /// reads once and never calls again.
    fn watch_mapping(
        &self,
        interface: &str,
        listener: Arc<dyn Fn(Vec<String>) + Send + Sync>,
    ) -> BoxFuture<'_, RegistryResult<()>> {
        let interface = interface.to_owned();
        Box::pin(async move {
            let apps = self.mapping(&interface).await?;
            listener(apps);
            Ok(())
        })
    }

    /// Stops notifying `listener` (the same `Arc` given to
    /// [`watch_mapping`](Self::watch_mapping)) about `interface`'s mapping; the registry
    /// stops following the record once no listener is left. The default does nothing
    /// (the default `watch_mapping` never calls again).
    fn unwatch_mapping(
        &self,
        interface: &str,
        listener: &Arc<dyn Fn(Vec<String>) + Send + Sync>,
    ) -> BoxFuture<'_, RegistryResult<()>> {
        let _ = (interface, listener);
        Box::pin(async { Ok(()) })
    }
}

/// Receives the complete current list of an application's instances each time it may
/// have changed (the list may be empty).
pub trait InstancesListener: Send + Sync + 'static {
    /// `app`'s instances now.
    fn on_instances(&self, app: &str, instances: Vec<ServiceInstance>);
}

impl<F: Fn(&str, Vec<ServiceInstance>) + Send + Sync + 'static> InstancesListener for F {
    fn on_instances(&self, app: &str, instances: Vec<ServiceInstance>) {
        self(app, instances)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_mode_parses_and_answers() {
        assert_eq!("all".parse::<RegisterMode>(), Ok(RegisterMode::All));
        assert_eq!(RegisterMode::default(), RegisterMode::All);
        let i: RegisterMode = "instance".parse().unwrap();
        assert!(i.instance() && !i.interface());
        let i: RegisterMode = "interface".parse().unwrap();
        assert!(!i.instance() && i.interface());
        let e = "both".parse::<RegisterMode>().unwrap_err();
        assert!(e.contains("both"), "{e}");
        let m: RegisterMode = serde_json::from_str("\"instance\"").unwrap();
        assert_eq!(m, RegisterMode::Instance);
        assert_eq!(
            serde_json::to_string(&RegisterMode::All).unwrap(),
            "\"all\""
        );
    }

    #[test]
    fn instance_metadata_json_as_java_writes_it() {
        let mut inst = ServiceInstance::new("app", "127.0.0.1", 20880);
        inst.metadata.insert(
            keys::ENDPOINTS.into(),
            endpoints_json(&[("dubbo".into(), 20880)]),
        );
        assert_eq!(
            inst.metadata[keys::ENDPOINTS],
            r#"[{"port":20880,"protocol":"dubbo"}]"#
        );
        assert_eq!(inst.endpoints(), vec![("dubbo".to_owned(), 20880)]);
        let params = params_json(&[
            ("version".into(), "1.0.0".into()),
            ("port".into(), "20880".into()),
            ("protocol".into(), "dubbo".into()),
        ]);
        assert_eq!(
            params,
            r#"{"version":"1.0.0","port":"20880","protocol":"dubbo"}"#
        );
        inst.metadata
            .insert(keys::METADATA_SERVICE_URL_PARAMS.into(), params);
        assert_eq!(inst.metadata_service_params()["port"], "20880");
        assert_eq!(inst.id(), "127.0.0.1:20880");
    }
}
