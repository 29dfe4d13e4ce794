//! The Dubbo binary protocol (`dubbo://`, default port 20880) with Hessian2 bodies,
//! interoperable with Java Dubbo, dubbo-go and other Dubbo clients.
//!
//! - [`DubboServer`]: the provider side, exports [`Invoker`](rdubbo_core::Invoker)s by
//!   group/interface/version; limits on connections (the longest-idle one makes room),
//!   pending requests and answers waiting to be written per connection (back-pressure:
//!   past them the connection is not read), payload; heartbeats answered; readonly event
//!   and drain on shutdown.
//! - [`DubboClient`]: the consumer side, multiplexed connections, heartbeat, reconnect with
//!   back-off, payload limit; Java exceptions become [`RpcError::Remote`](rdubbo_core::RpcError)
//!   with the exception class in `data` ([`java_exception`]).
//! - [`TokenLayer`]: Java's `token` check on the provider side (the client sends the
//!   `token` of its provider URL).
//! - [`codec`]: frames and bodies.
//!
//! Arguments travel in an [`Invocation`](rdubbo_core::Invocation) as typed Rust values
//! (written straight to Hessian2), dynamic [`Value`](rdubbo_core::Value)s or bytes still in
//! Hessian2; their Java types come from `parameter_types` (JVM descriptors) or are the
//! values' own. Results come back undecoded ([`Reply`](rdubbo_core::Reply)) and are decoded
//! once, into what the caller asks for.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use rdubbo_core::{Invocation, Invoker, Url};
//! use rdubbo_protocol_dubbo::DubboClient;
//!
//! let url: Url = "dubbo://127.0.0.1:20880/org.apache.dubbo.demo.DemoService".parse()?;
//! let client = DubboClient::new(&url)?;
//! let answer = client
//!     .invoke(Invocation::new("org.apache.dubbo.demo.DemoService", "sayHello", vec!["world".into()]))
//!     .await?;
//! let answer: String = answer.decode()?; // decoded straight into the type asked for
//! println!("{answer}");
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod client;
pub mod codec;
mod protocol;
mod server;
mod tls;
mod wire;

pub use client::{java_exception, ClientConfig, DubboClient};
pub use protocol::DubboProtocol;
pub use server::{random_token, DubboServer, ServerBuilder, ServerConfig, TokenLayer};
pub use tls::{ClientTls, ServerTls, TlsError, SSL_ENABLED};
