//! Dubbo's JSON-RPC 2.0 protocol over HTTP/1.1, interoperable with Java Dubbo's `jsonrpc`
//! protocol (jsonrpc4j) and dubbo-go.
//!
//! - [`JsonRpcServer`]: the provider side; exports [`Invoker`](rdubbo_core::Invoker)s by path,
//!   with limits (connections, body size, concurrent requests, header read timeout) and a
//!   graceful stop.
//! - [`JsonRpcClient`]: the consumer side; an invoker calling one provider over a keep-alive
//!   connection pool.
//! - [`codec`]: the pure request/response codec.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use rdubbo_core::{Invocation, Invoker, Url};
//! use rdubbo_protocol_jsonrpc::JsonRpcClient;
//!
//! let url: Url = "jsonrpc://127.0.0.1:30880/org.apache.dubbo.demo.DemoService".parse()?;
//! let client = JsonRpcClient::new(&url)?;
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
mod pool;
mod protocol;
mod server;
mod timeout;

pub use client::{ClientConfig, JsonRpcClient};
pub use protocol::JsonRpcProtocol;
/// TLS settings: [`ServerConfig::tls`] for a provider, [`ClientConfig::tls`] for a consumer.
pub use rdubbo_tls::{ClientTls, ServerTls, TlsError, SSL_ENABLED};
pub use server::{JsonRpcServer, ServerBuilder, ServerConfig};
pub use timeout::{parse_go_duration, parse_timeout_header};
