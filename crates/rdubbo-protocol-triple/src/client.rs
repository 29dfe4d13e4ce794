//! The consumer side: HTTP/2 connections to one provider (cleartext with prior knowledge,
//! or TLS with ALPN `h2` when its URL says `ssl-enabled=true`), calls multiplexed on them, Java's wrapper around the Hessian2 arguments and result.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, StatusCode};
use prost::Message;
use rdubbo_core::{
    error::codes, Args, BoxFuture, Invocation, Invoker, MessageStream, Reply, RpcError, RpcResult,
    Url,
};
use rdubbo_http2::{Client, Headers, Response, ResponseFuture, SendStream};

use crate::codec::{self, grpc, Encoding, TripleResponseWrapper};
use crate::headers;
use crate::stream;

/// Settings of a [`TripleClient`]; URL parameters override them.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// HTTP/2 connections to the provider, calls spread over them (`connections=`,
    /// default 1).
    pub connections: usize,
    /// Call timeout when the invocation has none (`timeout=` ms, default 1000); sent as
    /// `grpc-timeout`.
    pub timeout: Duration,
    /// Connect timeout (`connect.timeout=` ms, default 3000).
    pub connect_timeout: Duration,
    /// Largest message sent or accepted (`payload=` bytes, default 8 MiB).
    pub max_message_size: usize,
    /// Compress requests with gzip (`compression=gzip`, default off).
    pub gzip: bool,
    /// The consumer's application name, sent as `tri-consumer-appname` (`application=`).
    pub application: Option<String>,
    /// TLS for providers whose URL says [`SSL_ENABLED`](crate::SSL_ENABLED)`=true` (the CA
    /// bundle trusted, an optional client certificate); offered ALPN `h2`. A client of such
    /// a provider without it cannot be made. Providers without the parameter are called in
    /// cleartext.
    pub tls: Option<crate::ClientTls>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connections: 1,
            timeout: Duration::from_millis(1000),
            connect_timeout: Duration::from_millis(3000),
            max_message_size: codec::DEFAULT_MAX_MESSAGE,
            gzip: false,
            application: None,
            tls: None,
        }
    }
}

impl ClientConfig {
    /// This configuration with the URL's parameters applied.
    pub fn from_url(mut self, url: &Url) -> Self {
        let num = |k: &str| url.param(k).and_then(|v| v.parse::<u64>().ok());
        if let Some(n) = num("connections").filter(|n| *n > 0) {
            self.connections = n.min(64) as usize;
        }
        if let Some(ms) = num("timeout").filter(|n| *n > 0) {
            self.timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = num("connect.timeout").filter(|n| *n > 0) {
            self.connect_timeout = Duration::from_millis(ms);
        }
        if let Some(b) = num("payload").filter(|n| *n > 0) {
            self.max_message_size = b as usize;
        }
        if let Some(c) = url.param("compression") {
            self.gzip = c.eq_ignore_ascii_case("gzip");
        }
        if let Some(app) = url.param_non_empty("application") {
            self.application = Some(app.to_string());
        }
        self
    }
}

struct Inner {
    url: Url,
    addr: String,
    /// `:authority` of the requests.
    authority: Bytes,
    config: ClientConfig,
    slots: Vec<Slot>,
    next: AtomicUsize,
    application: Option<Bytes>,
    /// The TLS the provider is called with (its URL says `ssl-enabled=true`).
    tls: Option<crate::ClientTls>,
    /// `http` or `https`, as the requests say.
    scheme: &'static str,
    /// Request heads already built, without attachments: one per (service, method,
    /// deadline) called, up to [`MAX_HEADS`], reused rather than built per call.
    heads: Mutex<Vec<CachedHead>>,
}

/// How many request heads a client keeps built (past it, further heads are built per call).
const MAX_HEADS: usize = 64;

/// A request head without its attachments, and what it was built for.
struct CachedHead {
    interface: Arc<str>,
    method: Arc<str>,
    version: Option<Arc<str>>,
    group: Option<Arc<str>>,
    timeout: Duration,
    fields: Arc<Headers>,
}

impl CachedHead {
    fn is_for(&self, inv: &Invocation, timeout: Duration) -> bool {
        self.timeout == timeout
            && self.method == inv.method
            && self.interface == inv.interface
            && self.version == inv.version
            && self.group == inv.group
    }
}

/// One connection to the provider (rdubbo-http2), made when first needed and again after
/// it closed.
struct Slot {
    up: Mutex<Option<Client>>,
    connecting: tokio::sync::Mutex<()>,
}

/// An invoker calling one provider over Triple (`tri://host:port/interface`).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use rdubbo_core::{Invocation, Invoker, Url};
/// use rdubbo_protocol_triple::TripleClient;
///
/// let url: Url = "tri://127.0.0.1:50051/org.apache.dubbo.demo.DemoService".parse()?;
/// let client = TripleClient::new(&url)?;
/// let inv = Invocation::new("org.apache.dubbo.demo.DemoService", "sayHello", vec!["world".into()]);
/// let answer: String = client.invoke(inv).await?.decode()?;
/// println!("{answer}");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TripleClient {
    inner: Arc<Inner>,
}

impl TripleClient {
    /// A client of the provider at `url`, configured by the URL's parameters.
    pub fn new(url: &Url) -> RpcResult<TripleClient> {
        TripleClient::with_config(url, ClientConfig::default().from_url(url))
    }

    /// A client with explicit settings.
    pub fn with_config(url: &Url, config: ClientConfig) -> RpcResult<TripleClient> {
        let port = url
            .port()
            .ok_or_else(|| RpcError::Invalid(format!("provider URL without port: {url}")))?;
        let addr = if url.host().contains(':') {
            format!("[{}]:{port}", url.host())
        } else {
            format!("{}:{port}", url.host())
        };
        let application = config
            .application
            .as_deref()
            .filter(|a| HeaderValue::from_str(a).is_ok())
            .map(|a| Bytes::copy_from_slice(a.as_bytes()));
        let tls = if rdubbo_tls::is_enabled(url.param(crate::SSL_ENABLED)) {
            let tls = config.tls.clone().ok_or_else(|| {
                RpcError::Invalid(format!(
                    "provider {addr} serves TLS ({}=true) but this consumer has no TLS \
                     configuration (ClientConfig::tls: a CA bundle to trust)",
                    crate::SSL_ENABLED
                ))
            })?;
            Some(tls.with_alpn(&[b"h2"]))
        } else {
            None
        };
        let slots = (0..config.connections.max(1))
            .map(|_| Slot {
                up: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
            })
            .collect();
        Ok(TripleClient {
            inner: Arc::new(Inner {
                url: url.clone(),
                authority: Bytes::from(addr.clone()),
                addr,
                config,
                slots,
                next: AtomicUsize::new(0),
                application,
                scheme: if tls.is_some() { "https" } else { "http" },
                tls,
                heads: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The provider URL.
    pub fn url(&self) -> &Url {
        &self.inner.url
    }
}

impl Invoker for TripleClient {
    fn invoke(&self, inv: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        let inner = self.inner.clone();
        Box::pin(async move { inner.call(inv).await })
    }
}

impl Inner {
    fn connect_error(&self, reason: impl std::fmt::Display) -> RpcError {
        RpcError::Connect {
            addr: self.addr.clone(),
            reason: reason.to_string(),
        }
    }

    fn transport_error(&self, reason: impl std::fmt::Display) -> RpcError {
        RpcError::Transport {
            addr: self.addr.clone(),
            reason: reason.to_string(),
        }
    }

    /// Opens a stream on one of the connections, connecting when needed. A connection
    /// the provider closed (idle time, GOAWAY) is replaced once: the request was not
    /// sent, so that is always safe.
    async fn open(
        &self,
        head: &Headers,
        end_stream: bool,
    ) -> RpcResult<(ResponseFuture, SendStream)> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let client = self.client_now(i).await?;
        match client.send_request(head, end_stream).await {
            Ok(s) => Ok(s),
            Err(rdubbo_http2::Error::User(m)) => Err(self.transport_error(m)),
            Err(_) => {
                *self.slots[i].up.lock().unwrap_or_else(|p| p.into_inner()) = None;
                let client = self.client_now(i).await?;
                client
                    .send_request(head, end_stream)
                    .await
                    .map_err(|e| self.connect_error(e))
            }
        }
    }

    /// The connection of slot `i`: the live one at once, else a new one from a boxed
    /// future (connecting and the TLS handshake are rare: the future of every call stays
    /// small without them).
    async fn client_now(&self, i: usize) -> RpcResult<Client> {
        if let Some(c) = self.live(&self.slots[i]) {
            return Ok(c);
        }
        Box::pin(self.client(i)).await
    }

    async fn client(&self, i: usize) -> RpcResult<Client> {
        let slot = &self.slots[i];
        if let Some(c) = self.live(slot) {
            return Ok(c);
        }
        let _one = slot.connecting.lock().await;
        if let Some(c) = self.live(slot) {
            return Ok(c);
        }
        let stream = tokio::time::timeout(
            self.config.connect_timeout,
            tokio::net::TcpStream::connect(&self.addr),
        )
        .await
        .map_err(|_| {
            self.connect_error(format!(
                "no connection within {:?}",
                self.config.connect_timeout
            ))
        })?
        .map_err(|e| self.connect_error(e))?;
        let config = rdubbo_http2::Config {
            initial_stream_window: 1 << 20,
            connection_window: 16 << 20,
            max_write_buffer: 1 << 20,
            ..rdubbo_http2::Config::default()
        };
        let client = match &self.tls {
            None => Client::new(stream, config),
            Some(tls) => {
                let session = tls
                    .connect(self.url.host(), stream)
                    .await
                    .map_err(|e| self.connect_error(e))?;
                if session.get_ref().1.alpn_protocol() != Some(b"h2") {
                    return Err(self.connect_error(
                        "the provider did not agree to HTTP/2 (ALPN h2) in the TLS handshake",
                    ));
                }
                let (read, write) = tokio::io::split(session);
                Client::with_io(read, write, config)
            }
        };
        *slot.up.lock().unwrap_or_else(|p| p.into_inner()) = Some(client.clone());
        Ok(client)
    }

    fn live(&self, slot: &Slot) -> Option<Client> {
        let mut up = slot.up.lock().unwrap_or_else(|p| p.into_inner());
        match &*up {
            Some(c) if !c.is_closed() => Some(c.clone()),
            Some(_) => {
                *up = None;
                None
            }
            None => None,
        }
    }

    async fn call(&self, inv: Invocation) -> RpcResult<Reply> {
        let timeout = inv.timeout.unwrap_or(self.config.timeout);
        if let Args::Stream(input) = &inv.args {
            return self.open_stream(&inv, input, timeout).await;
        }
        match tokio::time::timeout(timeout, self.exchange(&inv, timeout)).await {
            Ok(r) => r,
            Err(_) => Err(RpcError::Timeout(timeout)),
        }
    }

    fn request(&self, inv: &Invocation, timeout: Duration) -> RpcResult<(Arc<Headers>, Bytes)> {
        let frame = match &inv.args {
            Args::Message(m) => {
                self.check_size(m.len())?;
                codec::encode_message(m, self.encoding())
            }
            args => {
                let message =
                    codec::encode_args(args, &inv.parameter_types).map_err(RpcError::Codec)?;
                self.check_size(message.encoded_len())?;
                codec::encode_framed(&message, self.encoding())
            }
        };
        Ok((self.head(inv, timeout), frame))
    }

    fn check_size(&self, len: usize) -> RpcResult<()> {
        if len > self.config.max_message_size {
            return Err(RpcError::Limit(format!(
                "request of {len} bytes is over the limit of {} bytes",
                self.config.max_message_size
            )));
        }
        Ok(())
    }

    /// The request head of a call (path, content type, deadline, identity, attachments):
    /// the part without attachments built once per (service, method, deadline) and shared
    /// as it is by the calls without attachments.
    fn head(&self, inv: &Invocation, timeout: Duration) -> Arc<Headers> {
        let cached = self.cached_head(inv, timeout);
        if inv.attachments.is_empty() {
            return cached;
        }
        let mut h = Headers::clone(&cached);
        let mut map = HeaderMap::new();
        headers::put_attachments(&mut map, inv.attachments.iter());
        headers::append_fields(&mut h, &map);
        Arc::new(h)
    }

    /// The head of a call without its attachments, from the cache when it was built before.
    fn cached_head(&self, inv: &Invocation, timeout: Duration) -> Arc<Headers> {
        let mut heads = self.heads.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = heads.iter().find(|c| c.is_for(inv, timeout)) {
            return c.fields.clone();
        }
        let h = Arc::new(self.build_head(inv, timeout));
        if heads.len() < MAX_HEADS {
            heads.push(CachedHead {
                interface: inv.interface.clone(),
                method: inv.method.clone(),
                version: inv.version.clone(),
                group: inv.group.clone(),
                timeout,
                fields: h.clone(),
            });
        }
        h
    }

    /// Builds the head of a call without its attachments.
    fn build_head(&self, inv: &Invocation, timeout: Duration) -> Headers {
        let mut h = Headers::with_capacity(12);
        h.push_static(":method", "POST");
        h.push_static(":scheme", self.scheme);
        h.push(
            Bytes::from_static(b":path"),
            Bytes::from(format!("/{}/{}", inv.interface, inv.method)),
        );
        h.push(Bytes::from_static(b":authority"), self.authority.clone());
        h.push_static("content-type", "application/grpc+proto");
        h.push_static("te", "trailers");
        h.push(
            Bytes::from_static(headers::GRPC_TIMEOUT.as_bytes()),
            Bytes::from(codec::format_timeout(timeout)),
        );
        for (name, value) in [
            (headers::SERVICE_VERSION, inv.version.as_deref()),
            (headers::SERVICE_GROUP, inv.group.as_deref()),
        ] {
            if let Some(v) = value.filter(|v| HeaderValue::from_str(v).is_ok()) {
                h.push(
                    Bytes::from_static(name.as_bytes()),
                    Bytes::copy_from_slice(v.as_bytes()),
                );
            }
        }
        if let Some(app) = &self.application {
            h.push(
                Bytes::from_static(headers::CONSUMER_APPNAME.as_bytes()),
                app.clone(),
            );
        }
        h.push_static(headers::GRPC_ACCEPT_ENCODING, "gzip");
        if self.config.gzip {
            h.push_static(headers::GRPC_ENCODING, "gzip");
        }
        h
    }

    fn encoding(&self) -> Encoding {
        if self.config.gzip {
            Encoding::Gzip
        } else {
            Encoding::Identity
        }
    }

    /// A streaming call: the request messages sent from a task of their own as the
    /// provider's window allows, the answer a stream read as the caller pulls it. The
    /// deadline covers the whole call; dropping the answer cancels it (RST_STREAM).
    async fn open_stream(
        &self,
        inv: &Invocation,
        input: &MessageStream,
        timeout: Duration,
    ) -> RpcResult<Reply> {
        let deadline = tokio::time::Instant::now() + timeout;
        let head = self.head(inv, timeout);
        let Ok(opened) = tokio::time::timeout_at(deadline, self.open(&head, false)).await else {
            // Still waiting for a free stream slot at the deadline: as a stream that was
            // opened, the answer is a stream whose one item is the timeout.
            return Ok(Reply::Stream(MessageStream::failed(RpcError::Timeout(
                timeout,
            ))));
        };
        let (response, mut send) = opened?;
        // Taken only now: a call that could not reach the provider may go elsewhere.
        let mut input = input.take()?;
        // The request headers go at once (a peer may answer before any request message).
        send.flush().await.map_err(|e| self.transport_error(e))?;
        // An interface service's stream (Java's `StreamObserver`): the call names the
        // element type; each message is one Hessian2 value, wrapped as Java wraps it.
        let class = inv
            .parameter_types
            .first()
            .map(|d| codec::class_name(d.as_ref()));
        if let Some(class) = class.clone() {
            let wrapped = stream::Map::new(input, move |v| Ok(stream::wrap_request(v, &class)));
            input = MessageStream::new(wrapped).take()?;
        }
        let encoding = self.encoding();
        let max = self.config.max_message_size;
        let pump = tokio::spawn(async move {
            let mut sleep = Box::pin(tokio::time::sleep_until(deadline));
            match stream::pump(&mut input, &mut send, &mut sleep, encoding, max, usize::MAX).await {
                stream::Pumped::Done => {
                    let _ = send.send_data(&[], true).await;
                }
                // An input the caller failed (or one over the limit): the call is cancelled.
                stream::Pumped::Failed(_) | stream::Pumped::TooLarge => {
                    send.reset(rdubbo_http2::Reason::CANCEL);
                }
                stream::Pumped::Reset | stream::Pumped::Deadline => {}
            }
        });
        let guard = stream::AbortOnDrop(pump);
        // The answer is handed back at once: a bidirectional peer may send its headers
        // only with its first answer, after reading requests the caller has yet to send.
        let answer = Answer::Waiting {
            response,
            guard,
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
            timeout,
            max,
            addr: self.addr.clone(),
            reply_attachments: inv.reply_attachments.clone(),
        };
        Ok(Reply::Stream(if class.is_some() {
            MessageStream::new(stream::Map::new(answer, stream::unwrap_response))
        } else {
            MessageStream::new(answer)
        }))
    }

    /// Sends a unary request and waits for the response head. A stream the provider
    /// refused (REFUSED_STREAM, or above the last stream of its GOAWAY: a connection it
    /// was closing, idle, as the request left) was certainly not processed, so it is sent
    /// once more, on a connection still open (gRPC's transparent retry does the same).
    async fn round_trip(&self, head: &Headers, frame: &[u8]) -> RpcResult<Response> {
        let mut retried = false;
        loop {
            let (response, mut send) = self.open(head, false).await?;
            let sent = send.send_data(frame, true).await;
            drop(send);
            let answer = match sent {
                Ok(()) => response.await,
                Err(e) => Err(e),
            };
            match answer {
                Ok(resp) => return Ok(resp),
                Err(e) if e.is_refused() && !retried => retried = true,
                Err(e) => return Err(self.transport_error(e)),
            }
        }
    }

    async fn exchange(&self, inv: &Invocation, timeout: Duration) -> RpcResult<Reply> {
        let (head, frame) = self.request(inv, timeout)?;
        let mut resp = self.round_trip(&head, &frame).await?;
        let h = &resp.headers;
        // Trailers-only: the status is in the headers.
        if let Some(status) = h.get_str(headers::GRPC_STATUS) {
            let status = status.trim().parse::<u32>().unwrap_or(grpc::UNKNOWN);
            if status != grpc::OK {
                return Err(status_error(status, &headers::to_map(h)));
            }
        }
        let http_status = h
            .get_str(":status")
            .and_then(|s| StatusCode::from_bytes(s.as_bytes()).ok())
            .unwrap_or(StatusCode::BAD_GATEWAY);
        if http_status != StatusCode::OK {
            let code = match http_status {
                StatusCode::NOT_FOUND | StatusCode::NOT_IMPLEMENTED => codes::METHOD_NOT_FOUND,
                StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {
                    codes::SERVER_BUSY
                }
                _ => codes::INTERNAL_ERROR,
            };
            return Err(RpcError::Remote {
                code,
                message: format!("HTTP status {} from {}", http_status, self.addr),
                data: Some(serde_json::json!({ "http-status": http_status.as_u16() })),
            });
        }
        let encoding = Encoding::parse(h.get_str(headers::GRPC_ENCODING)).ok_or_else(|| {
            RpcError::Codec(format!(
                "provider {} answered with an unsupported grpc-encoding",
                self.addr
            ))
        })?;
        let max = self.config.max_message_size;
        let body = &mut resp.body;
        let mut data = BytesMut::new();
        let mut first: Option<Bytes> = None;
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(|e| self.transport_error(e))?;
            let have = first.as_ref().map_or(0, Bytes::len) + data.len();
            if have + chunk.len() > max + codec::PREFIX_LEN {
                return Err(RpcError::Limit(format!(
                    "response from {} larger than {max} bytes",
                    self.addr
                )));
            }
            match first.take() {
                None if data.is_empty() => first = Some(chunk),
                None => data.extend_from_slice(&chunk),
                Some(f) => {
                    data.reserve(f.len() + chunk.len());
                    data.extend_from_slice(&f);
                    data.extend_from_slice(&chunk);
                }
            }
        }
        let trailers = body
            .trailers()
            .await
            .map_err(|e| self.transport_error(e))?
            .unwrap_or_default();
        let data = first.unwrap_or_else(|| data.freeze());
        let status = trailers
            .get_str(headers::GRPC_STATUS)
            .map(|s| s.trim().parse::<u32>().unwrap_or(grpc::UNKNOWN));
        match status {
            Some(grpc::OK) => {}
            Some(s) => return Err(status_error(s, &headers::to_map(&trailers))),
            None => {
                return Err(self.transport_error("the response ended without grpc-status"));
            }
        }
        let h = &resp.headers;
        if inv.reply_attachments.is_set() {
            let mut a = rdubbo_core::Attachments::new();
            headers::read_attachments(&headers::to_map(h), &mut a);
            headers::read_attachments(&headers::to_map(&trailers), &mut a);
            for (k, v) in a.iter() {
                inv.reply_attachments.insert(k, v);
            }
        }
        let message = codec::decode_unary(&data, encoding, max).map_err(|e| match e {
            codec::FrameError::TooLarge(n) => {
                RpcError::Limit(format!("response from {} larger than {n} bytes", self.addr))
            }
            e => RpcError::Codec(format!("bad response from {}: {e}", self.addr)),
        })?;
        if matches!(inv.args, Args::Message(_)) {
            return Ok(Reply::Message(message));
        }
        let wrapper = TripleResponseWrapper::decode(message).map_err(|e| {
            RpcError::Codec(format!("bad TripleResponseWrapper from {}: {e}", self.addr))
        })?;
        let exception = h
            .get_str(headers::EXCEPTION_CODE)
            .is_some_and(|c| c.trim() != "0");
        if exception {
            let value = rdubbo_hessian::decode_value(&wrapper.data)
                .map_err(|e| RpcError::Codec(format!("bad exception from {}: {e}", self.addr)))?;
            return Err(codec::exception_error(&value));
        }
        Ok(Reply::Hessian {
            body: wrapper.data,
            start: 0,
        })
    }
}

/// The answer of a streaming call: waiting for the provider's headers, then its messages.
enum Answer {
    Waiting {
        response: ResponseFuture,
        guard: stream::AbortOnDrop,
        sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
        timeout: Duration,
        max: usize,
        addr: String,
        reply_attachments: rdubbo_core::ReplySink,
    },
    Reading(stream::Incoming),
    Over,
}

impl Answer {
    /// The messages that follow `resp`'s headers, or the error they stand for.
    #[allow(clippy::too_many_arguments)]
    fn start(
        resp: rdubbo_http2::Response,
        guard: stream::AbortOnDrop,
        deadline: tokio::time::Instant,
        timeout: Duration,
        max: usize,
        addr: String,
        reply_attachments: &rdubbo_core::ReplySink,
    ) -> RpcResult<stream::Incoming> {
        let rdubbo_http2::Response {
            headers: fields,
            body,
        } = resp;
        let http_status = fields
            .get_str(":status")
            .and_then(|s| StatusCode::from_bytes(s.as_bytes()).ok())
            .unwrap_or(StatusCode::BAD_GATEWAY);
        let h = &headers::to_map(&fields);
        if let Some(status) = headers::text(h, headers::GRPC_STATUS) {
            let status = status.trim().parse::<u32>().unwrap_or(grpc::UNKNOWN);
            if status != grpc::OK {
                return Err(stream::status_error(status, h));
            }
        }
        if http_status != StatusCode::OK {
            return Err(RpcError::Remote {
                code: codes::INTERNAL_ERROR,
                message: format!("HTTP status {http_status} from {addr}"),
                data: Some(serde_json::json!({ "http-status": http_status.as_u16() })),
            });
        }
        let encoding =
            Encoding::parse(headers::text(h, headers::GRPC_ENCODING)).ok_or_else(|| {
                RpcError::Codec(format!(
                    "provider {addr} answered with an unsupported grpc-encoding"
                ))
            })?;
        if reply_attachments.is_set() {
            let mut a = rdubbo_core::Attachments::new();
            headers::read_attachments(h, &mut a);
            for (k, v) in a.iter() {
                reply_attachments.insert(k, v);
            }
        }
        // Trailers-only OK (an empty answer): no trailers to wait for.
        let end = if h.contains_key(headers::GRPC_STATUS) {
            stream::End::Plain
        } else {
            stream::End::Trailers
        };
        Ok(stream::Incoming::new(body, encoding, max, end, addr)
            .with_deadline(deadline, RpcError::Timeout(timeout))
            .with_guard(guard))
    }
}

impl futures_core::Stream for Answer {
    type Item = RpcResult<Bytes>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::future::Future;
        use std::task::Poll;
        let this = &mut *self;
        loop {
            match this {
                Answer::Reading(incoming) => {
                    return std::pin::Pin::new(incoming).poll_next(cx);
                }
                Answer::Over => return Poll::Ready(None),
                Answer::Waiting {
                    response,
                    sleep,
                    timeout,
                    addr,
                    ..
                } => {
                    let resp = if sleep.as_mut().poll(cx).is_ready() {
                        Err(RpcError::Timeout(*timeout))
                    } else {
                        match std::pin::Pin::new(response).poll(cx) {
                            Poll::Pending => return Poll::Pending,
                            Poll::Ready(Ok(resp)) => Ok(resp),
                            Poll::Ready(Err(e)) => Err(RpcError::Transport {
                                addr: addr.clone(),
                                reason: e.to_string(),
                            }),
                        }
                    };
                    let Answer::Waiting {
                        guard,
                        sleep,
                        timeout,
                        max,
                        addr,
                        reply_attachments,
                        ..
                    } = std::mem::replace(this, Answer::Over)
                    else {
                        return Poll::Ready(None);
                    };
                    let started = resp.and_then(|resp| {
                        Answer::start(
                            resp,
                            guard,
                            sleep.deadline(),
                            timeout,
                            max,
                            addr,
                            &reply_attachments,
                        )
                    });
                    match started {
                        Ok(incoming) => *this = Answer::Reading(incoming),
                        Err(e) => return Poll::Ready(Some(Err(e))),
                    }
                }
            }
        }
    }
}

fn status_error(status: u32, h: &HeaderMap) -> RpcError {
    let message = headers::text(h, headers::GRPC_MESSAGE)
        .map(codec::decode_grpc_message)
        .unwrap_or_else(|| format!("grpc-status {status}"));
    codec::error_of_status(status, message)
}
