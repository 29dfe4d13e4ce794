//! Triple (`tri://`, default port 50051), Dubbo 3's gRPC-compatible protocol,
//! interoperable with Java Dubbo 3.3 for interface services (the `#[rdubbo::service]`
//! traits, no IDL).
//!
//! - [`TripleServer`]: HTTP/2 cleartext (prior knowledge) and HTTP/1.1 on one port. gRPC
//!   calls carry Java's `TripleRequestWrapper` (the arguments, each one Hessian2 value,
//!   serialization `hessian4`) and are answered with a `TripleResponseWrapper`; a service
//!   error travels as Java sends it (HTTP 200, header `tri-exception-code: 3`, the
//!   exception as the message, `grpc-status: 0`); other errors as gRPC statuses mapped from
//!   Dubbo's codes as Java maps them. Deadlines from `grpc-timeout`, attachments as headers
//!   (`*-bin` base64), `tri-service-version`/`tri-service-group`, gzip. The JSON mode
//!   answers `POST /<interface>/<method>` with a JSON array of arguments (curl). Limits on
//!   connections, idle time, message size, HTTP/2 streams and header list size.
//! - [`TripleClient`]: the consumer side over HTTP/2 connections with calls multiplexed.
//! - [`TripleProtocol`]: both behind [`rdubbo_core::Protocol`] (`name() == "tri"`).
//! - [`codec`]: framing, wrapper messages, status mapping (no I/O).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use rdubbo_core::{Invocation, Invoker, Url};
//! use rdubbo_protocol_triple::TripleClient;
//!
//! let url: Url = "tri://127.0.0.1:50051/org.apache.dubbo.demo.DemoService?version=1.0.0".parse()?;
//! let client = TripleClient::new(&url)?;
//! let inv = Invocation::new("org.apache.dubbo.demo.DemoService", "sayHello", vec!["world".into()])
//!     .with_version(Some("1.0.0"));
//! let answer: String = client.invoke(inv).await?.decode()?;
//! println!("{answer}");
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod client;
pub mod codec;
pub mod headers;
mod protocol;
mod server;
mod stream;

pub use client::{ClientConfig, TripleClient};
/// The protobuf runtime the wrapper messages use (to encode or decode them by hand).
pub use prost;
pub use protocol::TripleProtocol;
pub use server::{ServerBuilder, ServerConfig, TripleServer};
