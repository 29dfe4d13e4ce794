//! One call: which service and method, with which arguments.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::borrow::Cow;

use crate::payload::Args;

/// Per-call key/value pairs carried on the wire next to the arguments (Dubbo's
/// "attachments"). Kept in insertion order; small, so a vector beats a map.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attachments(Vec<(String, String)>);

impl Attachments {
    /// No attachments.
    pub fn new() -> Attachments {
        Attachments(Vec::new())
    }
    /// The value of a key.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }
    /// Sets a key, replacing an existing one.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        let value = value.into();
        match self
            .0
            .iter_mut()
            .find(|(k, _)| k.eq_ignore_ascii_case(&key))
        {
            Some(slot) => slot.1 = value,
            None => self.0.push((key, value)),
        }
    }
    /// Removes a key.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        let i = self
            .0
            .iter()
            .position(|(k, _)| k.eq_ignore_ascii_case(key))?;
        Some(self.0.remove(i).1)
    }
    /// All pairs in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Where the attachments a provider sends back with its answer go (Dubbo's server-side
/// `RpcContext` attachments): a provider-side server gives each call a sink and sends
/// what the service put in it; a consumer that wants them gives its call a sink and the
/// protocol client fills it. Cloning shares the sink; an unset sink drops what is put in.
#[derive(Clone, Default)]
pub struct ReplySink(Option<Arc<Mutex<Attachments>>>);

impl ReplySink {
    /// A sink that keeps what is put in it.
    pub fn new() -> ReplySink {
        ReplySink(Some(Arc::new(Mutex::new(Attachments::new()))))
    }
    /// Whether someone listens.
    pub fn is_set(&self) -> bool {
        self.0.is_some()
    }
    /// Sets a reply attachment.
    pub fn insert(&self, key: impl Into<String>, value: impl Into<String>) {
        if let Some(m) = &self.0 {
            m.lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key, value);
        }
    }
    /// The attachments put in so far.
    pub fn get(&self) -> Attachments {
        match &self.0 {
            Some(m) => m.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            None => Attachments::new(),
        }
    }
}

impl std::fmt::Debug for ReplySink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(_) => write!(f, "ReplySink({:?})", self.get()),
            None => f.write_str("ReplySink(unset)"),
        }
    }
}

impl PartialEq for ReplySink {
    /// Sinks do not take part in comparing invocations.
    fn eq(&self, _: &ReplySink) -> bool {
        true
    }
}

/// One call of a method of a service.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    /// The service interface, e.g. `org.apache.dubbo.demo.DemoService`.
    pub interface: Arc<str>,
    /// Service group, if any.
    pub group: Option<Arc<str>>,
    /// Service version, if any.
    pub version: Option<Arc<str>>,
    /// The method name as the wire spells it (`sayHello`).
    pub method: Arc<str>,
    /// Positional arguments: typed, dynamic or still encoded.
    pub args: Args,
    /// Attachments sent with the call.
    pub attachments: Attachments,
    /// Time the caller still grants this call, if bounded.
    pub timeout: Option<Duration>,
    /// Java parameter types in JVM descriptor form (`Ljava/lang/String;`, `J`, `[B` …),
    /// one per argument, for protocols that select the method by its signature (`dubbo`).
    /// Empty: inferred from the arguments.
    pub parameter_types: ParameterTypes,
    /// Where attachments the provider answers with go.
    pub reply_attachments: ReplySink,
}

/// JVM descriptors of a method's parameters: static for generated stubs (no allocation per
/// call), owned for generic callers.
pub type ParameterTypes = Cow<'static, [Cow<'static, str>]>;

impl Invocation {
    /// A call of `method` on `interface` with positional `args`.
    pub fn new(
        interface: impl Into<Arc<str>>,
        method: impl Into<Arc<str>>,
        args: impl Into<Args>,
    ) -> Self {
        Invocation {
            interface: interface.into(),
            group: None,
            version: None,
            method: method.into(),
            args: args.into(),
            attachments: Attachments::new(),
            timeout: None,
            parameter_types: Cow::Borrowed(&[]),
            reply_attachments: ReplySink::default(),
        }
    }
    /// Sets the Java parameter types (JVM descriptors, one per argument).
    pub fn with_parameter_types(mut self, types: Vec<String>) -> Self {
        self.parameter_types = types.into_iter().map(Cow::Owned).collect();
        self
    }
    /// Sets the version.
    pub fn with_version(mut self, version: Option<&str>) -> Self {
        self.version = version.filter(|v| !v.is_empty()).map(Arc::from);
        self
    }
    /// Sets the group.
    pub fn with_group(mut self, group: Option<&str>) -> Self {
        self.group = group.filter(|g| !g.is_empty()).map(Arc::from);
        self
    }
    /// Sets the timeout.
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }
    /// The service key `[group/]interface[:version]`.
    pub fn service_key(&self) -> String {
        crate::url::service_key(
            self.group.as_deref(),
            &self.interface,
            self.version.as_deref(),
        )
    }
}
