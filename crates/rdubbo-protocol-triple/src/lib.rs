//! Triple (`tri://`, default port 50051), Dubbo 3's gRPC-compatible protocol,
//! interoperable with Java Dubbo 3.3 for interface services (the `#[rdubbo::service]`
//! traits, no IDL) and with gRPC for IDL (protobuf) services, streaming included.
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
//! - **IDL services** (`ServiceInfo::idl`): a protobuf message is the gRPC body itself
//!   (`Args::Message` / `Reply::Message`, no wrapper), errors are gRPC statuses
//!   ([`codec::grpc_error`] picks one); stock gRPC clients call them.
//! - **Streaming** (`ServiceInfo::streams`, over HTTP/2): server-, client- and
//!   bidirectional streaming as [`rdubbo_core::MessageStream`]s. Received messages hand
//!   their HTTP/2 window back only as the service reads them, answers are sent only as the
//!   peer's window allows (back-pressure both ways); the deadline covers the whole stream;
//!   a reset, a dropped answer or a passed deadline cancels the other side; a failed or
//!   dropped producer ends the stream with an error status in the trailers. Interface
//!   services stream as Java 3.3's `StreamObserver` methods do (one wrapped Hessian2 value
//!   per message).
//! - [`TripleClient`]: the consumer side over HTTP/2 connections with calls multiplexed.
//! - **TLS** ([`ServerConfig::tls`], [`ClientConfig::tls`]): the server offers ALPN `h2`
//!   and `http/1.1` and serves what the handshake picked (sniffing the first bytes when the
//!   client named none); a client connects with TLS (ALPN `h2`) to providers whose URL says
//!   [`SSL_ENABLED`]`=true`.
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
/// TLS settings: [`ServerConfig::tls`] for a provider, [`ClientConfig::tls`] for a consumer.
pub use rdubbo_tls::{ClientTls, ServerTls, TlsError, SSL_ENABLED};
pub use server::{ServerBuilder, ServerConfig, TripleServer};
