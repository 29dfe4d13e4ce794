//! Dubbo 3's application metadata: what a provider application exports, as Java's
//! `org.apache.dubbo.metadata.MetadataInfo`, and its revision.
//!
//! A Dubbo 3 provider registers one instance per process (see
//! [`discovery`](crate::discovery)); the instance names a *revision* of the application's
//! metadata, and consumers fetch the [`MetadataInfo`] of that revision from the provider's
//! `org.apache.dubbo.metadata.MetadataService` ([`METADATA_SERVICE`], group = application
//! name, version [`METADATA_SERVICE_VERSION`]) to learn which services the instance serves,
//! over which protocol and with which URL parameters.
//!
//! The revision is computed exactly as Java's `MetadataInfo.calAndGetRevision()`: the MD5
//! (lower-case hex) of the application name followed, for every service in the order of its
//! match key, by `matchKey + port + path + {k1=v1, k2=v2, …}` (the parameters sorted by key,
//! as Java's `TreeMap.toString()` prints them); `"0"` without services.
//!
//! ```
//! use rdubbo_core::metadata::{MetadataInfo, ServiceMetadata};
//!
//! let mut info = MetadataInfo::new("demo-provider");
//! let mut service = ServiceMetadata::new("org.apache.dubbo.demo.DemoService", "tri", 50051);
//! for (k, v) in [
//!     ("application", "demo-provider"),
//!     ("interface", "org.apache.dubbo.demo.DemoService"),
//!     ("methods", "sayHello"),
//!     ("side", "provider"),
//! ] {
//!     service.params.insert(k.into(), v.into());
//! }
//! info.add_service(service);
//! assert_eq!(info.revision(), "78356fdd66d7137f95e7fe30f687d3fd");
//! ```

use std::collections::BTreeMap;

use crate::url::{self as durl, keys};
use crate::value::{Map, Object, Value};
use crate::Url;

/// The interface of Dubbo's metadata service.
pub const METADATA_SERVICE: &str = "org.apache.dubbo.metadata.MetadataService";
/// The version of [`METADATA_SERVICE`] (V1, Hessian2 over dubbo or tri).
pub const METADATA_SERVICE_VERSION: &str = "1.0.0";
/// Java class of [`MetadataInfo`].
pub const METADATA_INFO_CLASS: &str = "org.apache.dubbo.metadata.MetadataInfo";
/// Java class of [`ServiceMetadata`].
pub const SERVICE_INFO_CLASS: &str = "org.apache.dubbo.metadata.MetadataInfo$ServiceInfo";
/// The revision of an application that exports nothing.
pub const EMPTY_REVISION: &str = "0";

/// Provider URL parameters that are not part of a service's metadata (Java's
/// `MetadataInfo.ServiceInfo` excludes them, also as a suffix `.<key>`): they change from
/// one start to the next or only concern the process.
pub const EXCLUDED_PARAMS: &[&str] = &[
    "monitor",
    "bind.ip",
    "bind.port",
    "qos.enable",
    "qos.host",
    "qos.port",
    "qos.accept.foreign.ip",
    "validation",
    "interfaces",
    "pid",
    "timestamp",
    "heartbeat",
    "ipv6",
];

/// One exported service in the application's metadata (Java's `MetadataInfo.ServiceInfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceMetadata {
    /// The interface name.
    pub name: String,
    /// The group, if any.
    pub group: Option<String>,
    /// The version, if any.
    pub version: Option<String>,
    /// The protocol it is served over (`dubbo`, `tri` …).
    pub protocol: String,
    /// The port it is served on (as registered).
    pub port: u16,
    /// The path it is served at (the interface name).
    pub path: String,
    /// The provider URL's parameters (decoded), less [`EXCLUDED_PARAMS`].
    pub params: BTreeMap<String, String>,
}

impl ServiceMetadata {
    /// A service `interface` served over `protocol` on `port`, at the path of its
    /// interface name, without group, version or parameters.
    pub fn new(interface: &str, protocol: &str, port: u16) -> ServiceMetadata {
        ServiceMetadata {
            name: interface.to_owned(),
            group: None,
            version: None,
            protocol: protocol.to_owned(),
            port,
            path: interface.to_owned(),
            params: BTreeMap::new(),
        }
    }

    /// The metadata of a provider URL (`dubbo://host:port/interface?…`): its protocol,
    /// port, path, interface, group, version and parameters (decoded, less
    /// [`EXCLUDED_PARAMS`]).
    pub fn from_url(url: &Url) -> ServiceMetadata {
        let mut params = BTreeMap::new();
        for (k, v) in url.params() {
            if excluded(k) {
                continue;
            }
            let v = durl::decode(v).unwrap_or_else(|_| v.to_owned());
            params.insert(k.to_owned(), v);
        }
        let path = url.path().trim_start_matches('/');
        ServiceMetadata {
            name: url.interface().to_owned(),
            group: url.group().map(str::to_owned),
            version: url.version().map(str::to_owned),
            protocol: url.protocol().to_owned(),
            port: url.port().unwrap_or(0),
            path: if path.is_empty() {
                url.interface().to_owned()
            } else {
                path.to_owned()
            },
            params,
        }
    }

    /// The service key `[group/]interface[:version]`.
    pub fn service_key(&self) -> String {
        durl::service_key(self.group.as_deref(), &self.name, self.version.as_deref())
    }

    /// The key of the service in [`MetadataInfo::services`]: `service key:protocol`
    /// (Java's `getMatchKey()`).
    pub fn match_key(&self) -> String {
        let key = self.service_key();
        if self.protocol.is_empty() {
            key
        } else {
            format!("{key}:{}", self.protocol)
        }
    }

    /// What the revision covers of this service: `matchKey + port + path + params` with
    /// the parameters printed as Java's `TreeMap.toString()` (`{a=1, b=2}`).
    pub fn desc_string(&self) -> String {
        let params = self
            .params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!("{}{}{}{{{params}}}", self.match_key(), self.port, self.path)
    }

    /// The Hessian form Java reads: an `org.apache.dubbo.metadata.MetadataInfo$ServiceInfo`
    /// with the fields `params, path, port, protocol, version, group, name` (in that order).
    pub fn to_value(&self) -> Value {
        let params = Map {
            type_name: None,
            entries: self
                .params
                .iter()
                .map(|(k, v)| (Value::String(k.clone()), Value::String(v.clone())))
                .collect(),
        };
        let opt = |s: &Option<String>| s.clone().map(Value::String).unwrap_or(Value::Null);
        Value::Object(Object::new(
            SERVICE_INFO_CLASS,
            vec![
                ("params".into(), Value::Map(params)),
                ("path".into(), Value::String(self.path.clone())),
                ("port".into(), Value::Int(i32::from(self.port))),
                ("protocol".into(), Value::String(self.protocol.clone())),
                ("version".into(), opt(&self.version)),
                ("group".into(), opt(&self.group)),
                ("name".into(), Value::String(self.name.clone())),
            ],
        ))
    }

    /// Reads the Hessian form (an object or a map with the fields of
    /// [`to_value`](Self::to_value)); `None` when it is not one.
    pub fn from_value(value: &Value) -> Option<ServiceMetadata> {
        let fields = fields_of(value)?;
        let text = |name: &str| -> Option<String> {
            match fields.iter().find(|(k, _)| k == name).map(|(_, v)| v) {
                Some(Value::String(s)) => Some(s.clone()),
                _ => None,
            }
        };
        let name = text("name")?;
        let port = match fields.iter().find(|(k, _)| k == "port").map(|(_, v)| v) {
            Some(Value::Int(p)) => u16::try_from(*p).unwrap_or(0),
            Some(Value::Long(p)) => u16::try_from(*p).unwrap_or(0),
            _ => 0,
        };
        let mut params = BTreeMap::new();
        if let Some(Value::Map(m)) = fields.iter().find(|(k, _)| k == "params").map(|(_, v)| v) {
            for (k, v) in &m.entries {
                if let (Value::String(k), Value::String(v)) = (k, v) {
                    params.insert(k.clone(), v.clone());
                }
            }
        }
        Some(ServiceMetadata {
            path: text("path").unwrap_or_else(|| name.clone()),
            group: text("group"),
            version: text("version"),
            protocol: text("protocol").unwrap_or_default(),
            port,
            name,
            params,
        })
    }
}

fn excluded(key: &str) -> bool {
    EXCLUDED_PARAMS
        .iter()
        .any(|x| key == *x || key.strip_suffix(x).is_some_and(|p| p.ends_with('.')))
}

fn fields_of(value: &Value) -> Option<Vec<(String, Value)>> {
    match value {
        Value::Object(o) => Some(o.fields.clone()),
        Value::Map(m) => Some(
            m.entries
                .iter()
                .filter_map(|(k, v)| match k {
                    Value::String(k) => Some((k.clone(), v.clone())),
                    _ => None,
                })
                .collect(),
        ),
        _ => None,
    }
}

/// The metadata of one application: every service it exports (Java's `MetadataInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetadataInfo {
    /// The application name.
    pub app: String,
    /// The services by [`match key`](ServiceMetadata::match_key).
    pub services: BTreeMap<String, ServiceMetadata>,
}

impl MetadataInfo {
    /// The metadata of application `app`, without services yet.
    pub fn new(app: &str) -> MetadataInfo {
        MetadataInfo {
            app: app.to_owned(),
            services: BTreeMap::new(),
        }
    }

    /// Adds (or replaces) a service, under its match key.
    pub fn add_service(&mut self, service: ServiceMetadata) {
        self.services.insert(service.match_key(), service);
    }

    /// The revision, as Java's `calAndGetRevision()`: [`EMPTY_REVISION`] without
    /// services, else the lower-case hex MD5 of the application name followed by the
    /// [`desc_string`](ServiceMetadata::desc_string) of every service in match-key order.
    pub fn revision(&self) -> String {
        if self.services.is_empty() {
            return EMPTY_REVISION.to_owned();
        }
        let mut text = self.app.clone();
        for service in self.services.values() {
            text.push_str(&service.desc_string());
        }
        md5_hex(text.as_bytes())
    }

    /// The Hessian form Java reads: an `org.apache.dubbo.metadata.MetadataInfo` with the
    /// fields `services` (a `java.util.concurrent.ConcurrentHashMap` by match key),
    /// `revision`, `app` (in that order), as a Java 3.3 provider answers
    /// `getMetadataInfo`.
    pub fn to_value(&self) -> Value {
        let services = Map {
            type_name: Some("java.util.concurrent.ConcurrentHashMap".into()),
            entries: self
                .services
                .iter()
                .map(|(k, s)| (Value::String(k.clone()), s.to_value()))
                .collect(),
        };
        Value::Object(Object::new(
            METADATA_INFO_CLASS,
            vec![
                ("services".into(), Value::Map(services)),
                ("revision".into(), Value::String(self.revision())),
                ("app".into(), Value::String(self.app.clone())),
            ],
        ))
    }

    /// Reads the Hessian form (see [`to_value`](Self::to_value)) with the revision it
    /// names; `None` when it is not one.
    pub fn from_value(value: &Value) -> Option<(MetadataInfo, String)> {
        let fields = fields_of(value)?;
        let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v);
        let app = match field("app") {
            Some(Value::String(s)) => s.clone(),
            _ => return None,
        };
        let revision = match field("revision") {
            Some(Value::String(s)) => s.clone(),
            _ => String::new(),
        };
        let mut info = MetadataInfo::new(&app);
        if let Some(Value::Map(m)) = field("services") {
            for (k, v) in &m.entries {
                if let (Value::String(k), Some(s)) = (k, ServiceMetadata::from_value(v)) {
                    info.services.insert(k.clone(), s);
                }
            }
        }
        Some((info, revision))
    }
}

/// The parameters of the MetadataService URL a consumer needs (instance metadata
/// `dubbo.metadata-service.url-params`, as Java writes them): `prefer.serialization` (for
/// dubbo and tri), `version`, `dubbo`, `release`, `side`, `port`, `protocol`.
pub fn metadata_service_url_params(
    protocol: &str,
    port: u16,
    release: &str,
) -> Vec<(String, String)> {
    let mut params = Vec::new();
    if matches!(protocol, "dubbo" | "tri") {
        params.push(("prefer.serialization".to_owned(), "hessian2".to_owned()));
    }
    params.extend([
        (
            keys::VERSION.to_owned(),
            METADATA_SERVICE_VERSION.to_owned(),
        ),
        ("dubbo".to_owned(), "2.0.2".to_owned()),
        ("release".to_owned(), release.to_owned()),
        ("side".to_owned(), "provider".to_owned()),
        ("port".to_owned(), port.to_string()),
        ("protocol".to_owned(), protocol.to_owned()),
    ]);
    params
}

/// MD5 (RFC 1321) of `data`, lower-case hex.
pub fn md5_hex(data: &[u8]) -> String {
    md5(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// MD5 (RFC 1321) of `data`.
pub fn md5(data: &[u8]) -> [u8; 16] {
    const S: [u32; 64] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5,
        9, 14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10,
        15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
    ];
    let k: [u32; 64] = std::array::from_fn(|i| {
        // floor(abs(sin(i + 1)) * 2^32), as the RFC defines the table.
        ((i as f64 + 1.0).sin().abs() * 4_294_967_296.0) as u32
    });
    let mut state: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];
    let mut message = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    message.push(0x80);
    while message.len() % 64 != 56 {
        message.push(0);
    }
    message.extend_from_slice(&bit_len.to_le_bytes());
    for chunk in message.chunks_exact(64) {
        let m: [u32; 16] = std::array::from_fn(|i| {
            u32::from_le_bytes([
                chunk[4 * i],
                chunk[4 * i + 1],
                chunk[4 * i + 2],
                chunk[4 * i + 3],
            ])
        });
        let [mut a, mut b, mut c, mut d] = state;
        for i in 0..64 {
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let f = f.wrapping_add(a).wrapping_add(k[i]).wrapping_add(m[g]);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(f.rotate_left(S[i]));
        }
        state[0] = state[0].wrapping_add(a);
        state[1] = state[1].wrapping_add(b);
        state[2] = state[2].wrapping_add(c);
        state[3] = state[3].wrapping_add(d);
    }
    let mut out = [0u8; 16];
    for (i, word) in state.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&word.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_matches_the_rfc_1321_vectors() {
        for (input, hex) in [
            ("", "d41d8cd98f00b204e9800998ecf8427e"),
            ("a", "0cc175b9c0f1b6a831c399e269772661"),
            ("abc", "900150983cd24fb0d6963f7d28e17f72"),
            ("message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
            (
                "abcdefghijklmnopqrstuvwxyz",
                "c3fcd3d76192e4007dfb496cca67e13b",
            ),
            (
                "12345678901234567890123456789012345678901234567890123456789012345678901234567890",
                "57edf4a22be3c955ac49da2e2107b67a",
            ),
        ] {
            assert_eq!(md5_hex(input.as_bytes()), hex, "{input:?}");
        }
    }

    /// The two services of the Java 3.3.1 provider whose `getMetadataInfo` answer is
    /// captured in the research notes (dubbo3-metadata-service.md), registered on port 27931.
    fn captured(port: u16) -> MetadataInfo {
        let mut info = MetadataInfo::new("java3-peer-provider");
        for (iface, methods) in [
            ("com.example.UserService", "createUser,fail,getUser,list"),
            ("org.apache.dubbo.demo.DemoService", "echo,sayHello"),
        ] {
            let mut s = ServiceMetadata::new(iface, "dubbo", port);
            s.version = Some("1.0.0".into());
            for (k, v) in [
                ("side", "provider"),
                ("release", "3.3.1"),
                ("methods", methods),
                ("logger", "log4j"),
                ("deprecated", "false"),
                ("dubbo", "2.0.2"),
                ("interface", iface),
                ("service-name-mapping", "true"),
                ("version", "1.0.0"),
                ("generic", "false"),
                ("revision", "1.0.0"),
                ("application", "java3-peer-provider"),
                ("prefer.serialization", "hessian2"),
                ("dynamic", "true"),
                ("REGISTRY_CLUSTER", "default"),
            ] {
                s.params.insert(k.into(), v.into());
            }
            info.add_service(s);
        }
        info
    }

    #[test]
    fn revision_equals_the_java_providers() {
        let info = captured(27931);
        assert_eq!(
            info.services.keys().collect::<Vec<_>>(),
            [
                "com.example.UserService:1.0.0:dubbo",
                "org.apache.dubbo.demo.DemoService:1.0.0:dubbo"
            ]
        );
        assert_eq!(info.revision(), "d140584873171d3429408831c0a8231b");
        // The port is part of it: the bound port 27930 gives another revision.
        assert_eq!(
            captured(27930).revision(),
            "02f8bdbf8bf303a841f9fd3b90096c9a"
        );
        assert_eq!(MetadataInfo::new("x").revision(), EMPTY_REVISION);
    }

    #[test]
    fn hessian_form_has_javas_classes_and_field_order() {
        let info = captured(27931);
        let Value::Object(o) = info.to_value() else {
            panic!("not an object");
        };
        assert_eq!(o.class, METADATA_INFO_CLASS);
        let names: Vec<&str> = o.fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["services", "revision", "app"]);
        let Value::Map(services) = &o.fields[0].1 else {
            panic!("services not a map");
        };
        assert_eq!(
            services.type_name.as_deref(),
            Some("java.util.concurrent.ConcurrentHashMap")
        );
        let Value::Object(s) = &services.entries[0].1 else {
            panic!("service not an object");
        };
        assert_eq!(s.class, SERVICE_INFO_CLASS);
        let names: Vec<&str> = s.fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            ["params", "path", "port", "protocol", "version", "group", "name"]
        );
        let (back, revision) = MetadataInfo::from_value(&info.to_value()).unwrap();
        assert_eq!(back, info);
        assert_eq!(revision, "d140584873171d3429408831c0a8231b");
    }

    #[test]
    fn metadata_of_a_provider_url_leaves_out_what_changes_per_start() {
        let url: Url = "dubbo://127.0.0.1:20880/com.example.Greeter?anyhost=true&application=my%20app&bind.port=1&dubbo=2.0.2&group=g&interface=com.example.Greeter&methods=a,b&pid=42&qos.port=2&timestamp=17&version=1.0.0"
            .parse()
            .unwrap();
        let s = ServiceMetadata::from_url(&url);
        assert_eq!(s.match_key(), "g/com.example.Greeter:1.0.0:dubbo");
        assert_eq!(s.port, 20880);
        assert_eq!(s.path, "com.example.Greeter");
        assert_eq!(
            s.params.keys().collect::<Vec<_>>(),
            [
                "anyhost",
                "application",
                "dubbo",
                "group",
                "interface",
                "methods",
                "version"
            ]
        );
        assert_eq!(s.params["application"], "my app");
        let mut plain = ServiceMetadata::new("a.B", "tri", 1);
        assert_eq!(plain.match_key(), "a.B:tri");
        plain.protocol.clear();
        assert_eq!(plain.match_key(), "a.B");
    }
}
