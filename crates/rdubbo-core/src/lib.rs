//! Core types shared by every rdubbo crate.
//!
//! - [`Url`]: Apache Dubbo's URL model (`protocol://user:pass@host:port/path?k=v`), parsed and
//!   formatted losslessly, with Java-compatible [`url::encode`]/[`url::decode`].
//! - [`Invocation`]: one call (service, method, arguments, attachments, deadline).
//! - [`Value`]: the lossless Java value model; [`Args`] and [`Reply`]: what a call carries,
//!   typed, dynamic or still encoded; [`JavaType`]: the Java type a Rust type is sent as.
//! - [`RpcError`]: what can go wrong with a call, with the codes that cross the wire.
//! - [`Invoker`]: the one abstraction for "something that answers an invocation", used on both
//!   sides: a protocol client is an invoker, and so is a provider-side service dispatcher.
//!
//! ```
//! use rdubbo_core::Url;
//!
//! let url: Url = "jsonrpc://127.0.0.1:30880/org.apache.dubbo.demo.DemoService?version=1.0.0"
//!     .parse()
//!     .unwrap();
//! assert_eq!(url.port(), Some(30880));
//! assert_eq!(url.service_key(), "org.apache.dubbo.demo.DemoService:1.0.0");
//! ```

pub mod config_center;
pub mod discovery;
pub mod error;
pub mod invocation;
pub mod invoker;
pub mod java;
pub mod json;
pub mod metadata;
pub mod payload;
pub mod registry;
pub mod stream;
pub mod url;
pub mod value;

pub use config_center::{ConfigChange, ConfigListener, DynamicConfiguration};
pub use discovery::{InstancesListener, RegisterMode, ServiceDiscovery, ServiceInstance};
pub use error::{RpcError, RpcResult, SetupError};
pub use invocation::{Attachments, Invocation, ReplySink};
pub use invoker::{
    layered, BoxFuture, Export, Invoker, Layer, MethodKind, Protocol, ServeResult, Server,
    ServiceInfo,
};
pub use java::JavaType;
pub use payload::{Args, ArgsDecoder, HessianArgs, Reply, TypedArgs, TypedValue};
pub use registry::{NotifyListener, Registry, RegistryError, RegistryFactory, RegistryResult};
pub use stream::{MessageSink, MessageStream, Messages};
pub use url::{Url, UrlError};
pub use value::Value;
