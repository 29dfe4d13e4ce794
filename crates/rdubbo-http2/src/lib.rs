//! A lean HTTP/2 engine (RFC 9113, HPACK RFC 7541) sized for gRPC and Triple: a client and a
//! server over prior knowledge, with per-stream handles able to carry unary and streaming
//! calls (request headers, body chunks, trailers).
//!
//! Built for speed the way rdubbo's Dubbo transport is:
//! - a unary call on an idle connection is one write per side (HEADERS+DATA from the
//!   client; HEADERS+DATA+trailers from the server, whose handler is polled inline by the
//!   connection task);
//! - frames of concurrent calls are queued and written together (one write per flush);
//! - what is read is parsed in one batch and the streams concerned are woken after it, so a
//!   response reaches its caller with one wakeup; DATA payloads share the read buffer.
//!
//! And for hostile peers: flow control on both levels (large windows advertised, given
//! back only as the application reads), stream and header-list limits, bounded header
//! blocks and CONTINUATION chains, budgets on control frames and on resets (GOAWAY
//! ENHANCE_YOUR_CALM), a bounded write queue (a peer that does not read is not read).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use rdubbo_http2::{Client, Config, Headers};
//! let tcp = tokio::net::TcpStream::connect("127.0.0.1:50051").await?;
//! let client = Client::new(tcp, Config::default());
//! let mut req = Headers::new();
//! req.push_static(":method", "POST");
//! req.push_static(":scheme", "http");
//! req.push_static(":path", "/echo.Echo/Echo");
//! req.push_static(":authority", "localhost");
//! req.push_static("content-type", "application/grpc");
//! req.push_static("te", "trailers");
//! let (headers, body, trailers) = client.unary(&req, b"\0\0\0\0\x02hi", 4 << 20).await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod client;
mod conn;
mod error;
pub mod frame;
mod headers;
pub mod hpack;
mod server;
mod stream;

pub use client::Client;
pub use error::Error;
pub use frame::Reason;
pub use headers::Headers;
pub use server::{serve, serve_io, Request, ShutdownHandle};
pub use stream::{RecvStream, Response, ResponseFuture, SendStream};

/// Limits and windows of a connection (both sides).
#[derive(Debug, Clone)]
pub struct Config {
    /// Streams the peer may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS); more are
    /// refused with REFUSED_STREAM.
    pub max_concurrent_streams: u32,
    /// The receive window of each stream (SETTINGS_INITIAL_WINDOW_SIZE): what a stream may
    /// buffer unread.
    pub initial_stream_window: u32,
    /// The connection's receive window: what all streams together may buffer unread.
    pub connection_window: u32,
    /// The largest frame accepted (SETTINGS_MAX_FRAME_SIZE); a larger one is a
    /// FRAME_SIZE_ERROR.
    pub max_frame_size: u32,
    /// The largest header list accepted (SETTINGS_MAX_HEADER_LIST_SIZE); a larger request
    /// is answered 431, a larger response fails its stream.
    pub max_header_list_size: u32,
    /// The HPACK dynamic table the peer may use (SETTINGS_HEADER_TABLE_SIZE).
    pub header_table_size: u32,
    /// Bytes queued for writing past which senders wait and the peer is not read.
    pub max_write_buffer: usize,
    /// SETTINGS, PING, PRIORITY, empty and unknown frames accepted per second before
    /// GOAWAY ENHANCE_YOUR_CALM.
    pub max_control_frames_per_sec: u32,
    /// Streams reset by the peer (or refused) per second before GOAWAY
    /// ENHANCE_YOUR_CALM (rapid reset).
    pub max_resets_per_sec: u32,
    /// CONTINUATION frames accepted in one header block.
    pub max_continuation_frames: u32,
    /// A write the peer takes no byte of for this long fails the connection (a peer that
    /// never reads is not held forever); `None`: no bound.
    pub write_timeout: Option<std::time::Duration>,
    /// Server: time the client gets to send its connection preface; `None`: no bound.
    pub handshake_timeout: Option<std::time::Duration>,
    /// A connection with no stream open for this long is closed (GOAWAY NO_ERROR, then
    /// the close); `None`: never.
    pub idle_timeout: Option<std::time::Duration>,
    /// Sends a PING when nothing was read for this long, and closes the connection when
    /// nothing is read for as long again (a peer gone silently); `None`: no PING.
    pub keepalive: Option<std::time::Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_concurrent_streams: 1024,
            initial_stream_window: 1 << 20,
            connection_window: 8 << 20,
            max_frame_size: frame::DEFAULT_MAX_FRAME,
            max_header_list_size: 64 << 10,
            header_table_size: 4096,
            max_write_buffer: 1 << 20,
            max_control_frames_per_sec: 2000,
            max_resets_per_sec: 1000,
            max_continuation_frames: 32,
            write_timeout: Some(std::time::Duration::from_secs(30)),
            handshake_timeout: Some(std::time::Duration::from_secs(10)),
            idle_timeout: None,
            keepalive: None,
        }
    }
}
