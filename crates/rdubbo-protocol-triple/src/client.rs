//! The consumer side: HTTP/2 connections to one provider (cleartext with prior knowledge,
//! or TLS with ALPN `h2` when its URL says `ssl-enabled=true`), calls multiplexed on them, Java's wrapper around the Hessian2 arguments and result.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use h2::client::SendRequest;
use http::{HeaderMap, HeaderValue, Request, StatusCode};
use prost::Message;
use rdubbo_core::{
    error::codes, Args, BoxFuture, Invocation, Invoker, MessageStream, Reply, RpcError, RpcResult,
    Url,
};

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
    config: ClientConfig,
    slots: Vec<Slot>,
    next: AtomicUsize,
    application: Option<HeaderValue>,
    /// The TLS the provider is called with (its URL says `ssl-enabled=true`).
    tls: Option<crate::ClientTls>,
    /// `http` or `https`, as the request URIs say.
    scheme: &'static str,
}

/// A live connection: its sender, and whether its driver task has ended.
#[derive(Clone)]
struct Up {
    sender: SendRequest<Bytes>,
    closed: Arc<std::sync::atomic::AtomicBool>,
}

struct Slot {
    up: Mutex<Option<Up>>,
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
            .and_then(|a| HeaderValue::from_str(a).ok());
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
                addr,
                config,
                slots,
                next: AtomicUsize::new(0),
                application,
                scheme: if tls.is_some() { "https" } else { "http" },
                tls,
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

    /// A ready sender on one of the connections, connecting when needed.
    /// A sender ready for a new stream. A connection the provider closed (idle time,
    /// GOAWAY) is replaced once: the request was not sent, so that is always safe.
    async fn ready_sender(&self) -> RpcResult<SendRequest<Bytes>> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let sender = self.sender(i).await?;
        match sender.ready().await {
            Ok(s) => Ok(s),
            Err(_) => {
                *self.slots[i].up.lock().unwrap_or_else(|p| p.into_inner()) = None;
                let sender = self.sender(i).await?;
                sender.ready().await.map_err(|e| self.connect_error(e))
            }
        }
    }

    async fn sender(&self, i: usize) -> RpcResult<SendRequest<Bytes>> {
        let slot = &self.slots[i];
        if let Some(s) = self.live(slot) {
            return Ok(s);
        }
        let _one = slot.connecting.lock().await;
        if let Some(s) = self.live(slot) {
            return Ok(s);
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
        let _ = stream.set_nodelay(true);
        let closed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sender = match &self.tls {
            None => self.handshake(stream, closed.clone()).await?,
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
                self.handshake(session, closed.clone()).await?
            }
        };
        *slot.up.lock().unwrap_or_else(|p| p.into_inner()) = Some(Up {
            sender: sender.clone(),
            closed,
        });
        Ok(sender)
    }

    /// The HTTP/2 handshake on a connected stream; its driver task marks `closed` when the
    /// connection ends.
    async fn handshake<S>(
        &self,
        stream: S,
        closed: Arc<std::sync::atomic::AtomicBool>,
    ) -> RpcResult<SendRequest<Bytes>>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        // h2 directly (not hyper's client): a call sends its request from its own task,
        // with no dispatch channel and task in between.
        let (sender, conn) = h2::client::Builder::new()
            .initial_window_size(1 << 20)
            .initial_connection_window_size(16 << 20)
            .max_send_buffer_size(1 << 20)
            .handshake::<_, Bytes>(stream)
            .await
            .map_err(|e| self.connect_error(e))?;
        let addr = self.addr.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%addr, error = %e, "triple connection ended");
            }
            closed.store(true, Ordering::SeqCst);
        });
        Ok(sender)
    }

    fn live(&self, slot: &Slot) -> Option<SendRequest<Bytes>> {
        let mut up = slot.up.lock().unwrap_or_else(|p| p.into_inner());
        match &*up {
            Some(u) if !u.closed.load(Ordering::SeqCst) => Some(u.sender.clone()),
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

    fn request(&self, inv: &Invocation, timeout: Duration) -> RpcResult<(Request<()>, Bytes)> {
        let message = match &inv.args {
            Args::Message(m) => m.to_vec(),
            args => codec::encode_args(args, &inv.parameter_types)
                .map_err(RpcError::Codec)?
                .encode_to_vec(),
        };
        if message.len() > self.config.max_message_size {
            return Err(RpcError::Limit(format!(
                "request of {} bytes is over the limit of {} bytes",
                message.len(),
                self.config.max_message_size
            )));
        }
        let frame = codec::encode_message(&message, self.encoding());
        Ok((self.head(inv, timeout)?, frame))
    }

    /// The request head of a call (path, content type, deadline, identity, attachments).
    fn head(&self, inv: &Invocation, timeout: Duration) -> RpcResult<Request<()>> {
        let uri = format!(
            "{}://{}/{}/{}",
            self.scheme, self.addr, inv.interface, inv.method
        );
        let mut req = Request::post(uri)
            .body(())
            .map_err(|e| RpcError::Invalid(format!("bad request for {}: {e}", inv.interface)))?;
        let h = req.headers_mut();
        h.insert(
            "content-type",
            HeaderValue::from_static("application/grpc+proto"),
        );
        h.insert("te", HeaderValue::from_static("trailers"));
        if let Ok(v) = HeaderValue::from_str(&codec::format_timeout(timeout)) {
            h.insert(headers::GRPC_TIMEOUT, v);
        }
        for (name, value) in [
            (headers::SERVICE_VERSION, inv.version.as_deref()),
            (headers::SERVICE_GROUP, inv.group.as_deref()),
        ] {
            if let Some(v) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
                h.insert(name, v);
            }
        }
        if let Some(app) = &self.application {
            h.insert(headers::CONSUMER_APPNAME, app.clone());
        }
        h.insert(
            headers::GRPC_ACCEPT_ENCODING,
            HeaderValue::from_static("gzip"),
        );
        if self.config.gzip {
            h.insert(headers::GRPC_ENCODING, HeaderValue::from_static("gzip"));
        }
        headers::put_attachments(h, inv.attachments.iter());
        Ok(req)
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
        let req = self.head(inv, timeout)?;
        let mut sender = tokio::time::timeout_at(deadline, self.ready_sender())
            .await
            .map_err(|_| RpcError::Timeout(timeout))??;
        // Taken only now: a call that could not reach the provider may go elsewhere.
        let mut input = input.take()?;
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
        let (response, mut send) = sender
            .send_request(req, false)
            .map_err(|e| self.transport_error(e))?;
        let encoding = self.encoding();
        let max = self.config.max_message_size;
        let pump = tokio::spawn(async move {
            let mut sleep = Box::pin(tokio::time::sleep_until(deadline));
            match stream::pump(&mut input, &mut send, &mut sleep, encoding, max, usize::MAX).await {
                stream::Pumped::Done => {
                    let _ = send.send_data(Bytes::new(), true);
                }
                // An input the caller failed (or one over the limit): the call is cancelled.
                stream::Pumped::Failed(_) | stream::Pumped::TooLarge => {
                    send.send_reset(h2::Reason::CANCEL);
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

    async fn exchange(&self, inv: &Invocation, timeout: Duration) -> RpcResult<Reply> {
        let (req, frame) = self.request(inv, timeout)?;
        let mut sender = self.ready_sender().await?;
        let (response, mut send) = sender
            .send_request(req, false)
            .map_err(|e| self.transport_error(e))?;
        send.send_data(frame, true)
            .map_err(|e| self.transport_error(e))?;
        let resp = response.await.map_err(|e| self.transport_error(e))?;
        let (parts, mut body) = resp.into_parts();
        let h = &parts.headers;
        // Trailers-only: the status is in the headers.
        if let Some(status) = headers::text(h, headers::GRPC_STATUS) {
            let status = status.trim().parse::<u32>().unwrap_or(grpc::UNKNOWN);
            if status != grpc::OK {
                return Err(status_error(status, h));
            }
        }
        if parts.status != StatusCode::OK {
            let code = match parts.status {
                StatusCode::NOT_FOUND | StatusCode::NOT_IMPLEMENTED => codes::METHOD_NOT_FOUND,
                StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {
                    codes::SERVER_BUSY
                }
                _ => codes::INTERNAL_ERROR,
            };
            return Err(RpcError::Remote {
                code,
                message: format!("HTTP status {} from {}", parts.status, self.addr),
                data: Some(serde_json::json!({ "http-status": parts.status.as_u16() })),
            });
        }
        let encoding =
            Encoding::parse(headers::text(h, headers::GRPC_ENCODING)).ok_or_else(|| {
                RpcError::Codec(format!(
                    "provider {} answered with an unsupported grpc-encoding",
                    self.addr
                ))
            })?;
        let max = self.config.max_message_size;
        let mut data = BytesMut::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(|e| self.transport_error(e))?;
            let _ = body.flow_control().release_capacity(chunk.len());
            if data.len() + chunk.len() > max + codec::PREFIX_LEN {
                return Err(RpcError::Limit(format!(
                    "response from {} larger than {max} bytes",
                    self.addr
                )));
            }
            if data.is_empty() {
                data = BytesMut::from(chunk);
            } else {
                data.extend_from_slice(&chunk);
            }
        }
        let trailers = body
            .trailers()
            .await
            .map_err(|e| self.transport_error(e))?
            .unwrap_or_default();
        let data = data.freeze();
        let status = headers::text(&trailers, headers::GRPC_STATUS)
            .map(|s| s.trim().parse::<u32>().unwrap_or(grpc::UNKNOWN));
        match status {
            Some(grpc::OK) => {}
            Some(s) => return Err(status_error(s, &trailers)),
            None => {
                return Err(self.transport_error("the response ended without grpc-status"));
            }
        }
        if inv.reply_attachments.is_set() {
            let mut a = rdubbo_core::Attachments::new();
            headers::read_attachments(h, &mut a);
            headers::read_attachments(&trailers, &mut a);
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
        let exception = headers::text(h, headers::EXCEPTION_CODE).is_some_and(|c| c.trim() != "0");
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
        response: h2::client::ResponseFuture,
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
        resp: http::Response<h2::RecvStream>,
        guard: stream::AbortOnDrop,
        deadline: tokio::time::Instant,
        timeout: Duration,
        max: usize,
        addr: String,
        reply_attachments: &rdubbo_core::ReplySink,
    ) -> RpcResult<stream::Incoming> {
        let (parts, body) = resp.into_parts();
        let h = &parts.headers;
        if let Some(status) = headers::text(h, headers::GRPC_STATUS) {
            let status = status.trim().parse::<u32>().unwrap_or(grpc::UNKNOWN);
            if status != grpc::OK {
                return Err(stream::status_error(status, h));
            }
        }
        if parts.status != StatusCode::OK {
            return Err(RpcError::Remote {
                code: codes::INTERNAL_ERROR,
                message: format!("HTTP status {} from {addr}", parts.status),
                data: Some(serde_json::json!({ "http-status": parts.status.as_u16() })),
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
