//! The provider side: one task per connection reads frames, each request is served in its
//! own task (at most `max_pending` per connection: past that the connection is simply not
//! read, so TCP pushes back), one writer task per connection batches the responses.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdubbo_core::{
    error::codes, Attachments, Invocation, Invoker, Reply, ReplySink, RpcError, ServiceInfo,
};
use rdubbo_hessian::{Encoder, Throwable, Value as HValue};
use std::future::Future;
use std::task::{Context, Poll, Waker};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::wire::{FrameReader, Read, ReadError, Writer};

use crate::codec::{self, status, Header, ResponseBody, FLAG_EVENT, HEADER_LEN, HESSIAN2};

/// Limits and timings of a [`DubboServer`].
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Open connections at most; more are closed at once (default 4096).
    pub max_connections: usize,
    /// Requests in progress per connection; past it the connection is not read until one
    /// finishes (default 1024).
    pub max_pending: usize,
    /// Largest frame body accepted or sent (default 8 MiB).
    pub payload: usize,
    /// A connection with no traffic for three times this long is closed (default 60 s).
    pub heartbeat: Duration,
    /// Time given to a call when the request carries no `timeout` (default 30 s).
    pub default_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_connections: 4096,
            max_pending: 1024,
            payload: codec::DEFAULT_PAYLOAD,
            heartbeat: Duration::from_secs(60),
            default_timeout: Duration::from_secs(30),
        }
    }
}

struct Export {
    info: ServiceInfo,
    invoker: Arc<dyn Invoker>,
    names: Names,
}

/// The names of an export as an invocation carries them, made once (not per call).
struct Names {
    interface: Arc<str>,
    group: Option<Arc<str>>,
    version: Option<Arc<str>>,
    methods: std::collections::HashSet<Arc<str>>,
}

impl Names {
    fn of(info: &ServiceInfo) -> Names {
        Names {
            interface: Arc::from(info.interface.as_str()),
            group: info.group.as_deref().map(Arc::from),
            version: info.version.as_deref().map(Arc::from),
            methods: info.methods.iter().map(|m| Arc::from(m.as_str())).collect(),
        }
    }

    /// The method name `m`, shared when the service declares it.
    fn method(&self, m: &str) -> Arc<str> {
        self.methods.get(m).cloned().unwrap_or_else(|| Arc::from(m))
    }
}

struct Shared {
    exports: HashMap<String, Export>,
    local_addr: SocketAddr,
    config: ServerConfig,
    connections: AtomicUsize,
    in_flight: AtomicUsize,
    draining: AtomicBool,
    /// Writers of the open connections, to send the readonly event on shutdown.
    writers: Mutex<HashMap<u64, Arc<Writer>>>,
    next_conn: AtomicU64,
    bad_frames: AtomicU64,
}

/// Builds a [`DubboServer`].
#[derive(Default)]
pub struct ServerBuilder {
    config: ServerConfig,
    exports: Vec<(ServiceInfo, Arc<dyn Invoker>)>,
}

impl ServerBuilder {
    /// Sets limits and timings.
    pub fn config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }

    /// Serves `invoker` as the service `info` (matched by group, interface, version).
    pub fn export(mut self, info: ServiceInfo, invoker: Arc<dyn Invoker>) -> Self {
        self.exports.push((info, invoker));
        self
    }

    /// Binds and starts serving.
    pub async fn bind(self, addr: SocketAddr) -> std::io::Result<DubboServer> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let exports = self
            .exports
            .into_iter()
            .map(|(info, invoker)| {
                let names = Names::of(&info);
                (
                    info.service_key(),
                    Export {
                        info,
                        invoker,
                        names,
                    },
                )
            })
            .collect();
        let shared = Arc::new(Shared {
            exports,
            local_addr,
            config: self.config,
            connections: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            writers: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(0),
            bad_frames: AtomicU64::new(0),
        });
        let (stop_tx, stop_rx) = watch::channel(None);
        let task = tokio::spawn(accept_loop(listener, shared.clone(), stop_rx));
        Ok(DubboServer {
            local_addr,
            shared,
            stop_tx,
            task,
        })
    }
}

/// A running Dubbo protocol server.
pub struct DubboServer {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    stop_tx: watch::Sender<Option<Duration>>,
    task: tokio::task::JoinHandle<()>,
}

impl DubboServer {
    /// A builder.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// Frames refused as malformed since the start (each closed its connection).
    pub fn bad_frames(&self) -> u64 {
        self.shared.bad_frames.load(Ordering::Relaxed)
    }

    /// Stops gracefully: sends the readonly event to every consumer, stops accepting,
    /// answers requests that arrive meanwhile with a retryable "shutting down" status, lets
    /// in-flight calls finish for up to `drain`, then closes every connection.
    pub async fn shutdown(self, drain: Duration) {
        self.shared.draining.store(true, Ordering::SeqCst);
        let writers: Vec<_> = self
            .shared
            .writers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        let event = readonly_event();
        for w in writers {
            w.send(&event).await;
        }
        let _ = self.stop_tx.send(Some(drain));
        let _ = self.task.await;
    }
}

fn readonly_event() -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + 2);
    let start = codec::begin_frame(&mut out, codec::FLAG_REQUEST | FLAG_EVENT | HESSIAN2, 0, 0);
    let mut e = Encoder::with_buffer(out);
    e.write_str(codec::READONLY_EVENT);
    let mut out = e.into_bytes();
    codec::finish_frame(&mut out, start);
    out
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<Option<Duration>>,
) {
    let mut conns = JoinSet::new();
    let drain = loop {
        tokio::select! {
            changed = stop.changed() => match (changed, *stop.borrow()) {
                (Ok(()), Some(d)) => break d,
                (Err(_), _) => break Duration::ZERO,
                _ => continue,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    if shared.connections.load(Ordering::Relaxed) >= shared.config.max_connections {
                        tracing::warn!(%peer, limit = shared.config.max_connections, "too many connections; closing the new one");
                        drop(stream);
                        continue;
                    }
                    shared.connections.fetch_add(1, Ordering::Relaxed);
                    conns.spawn(serve_connection(stream, peer, shared.clone(), stop.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    };
    drop(listener);
    let deadline = tokio::time::Instant::now() + drain;
    while shared.in_flight.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if shared.in_flight.load(Ordering::SeqCst) > 0 {
        tracing::warn!(
            in_flight = shared.in_flight.load(Ordering::SeqCst),
            "drain deadline passed; closing connections"
        );
    }
    // Let the writers flush the last responses, then close.
    tokio::time::sleep(Duration::from_millis(20)).await;
    conns.abort_all();
    while conns.join_next().await.is_some() {}
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    _stop: watch::Receiver<Option<Duration>>,
) {
    let local = stream.local_addr().unwrap_or(shared.local_addr);
    let (read, write) = stream.into_split();
    let writer = Arc::new(Writer::new(write));
    let conn_id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    shared
        .writers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(conn_id, writer.clone());
    let reader = FrameReader::new(read, shared.config.payload);
    let conn = Conn { peer, local };
    if let Err(reason) = read_loop(reader, writer, shared.clone(), conn).await {
        tracing::warn!(%peer, %reason, "closing connection");
    }
    shared
        .writers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&conn_id);
    shared.connections.fetch_sub(1, Ordering::Relaxed);
}

/// The two ends of a connection, for error texts.
#[derive(Debug, Clone, Copy)]
struct Conn {
    peer: SocketAddr,
    local: SocketAddr,
}

async fn read_loop(
    mut reader: FrameReader,
    writer: Arc<Writer>,
    shared: Arc<Shared>,
    conn: Conn,
) -> Result<(), String> {
    let pending = Arc::new(Semaphore::new(shared.config.max_pending));
    let idle = shared.config.heartbeat * 3;
    // The idle timer is re-armed only when it fires, from the time of the last frame, so
    // reading a frame costs no timer work.
    let mut last_frame = tokio::time::Instant::now();
    let idle_timer = tokio::time::sleep(idle);
    tokio::pin!(idle_timer);
    loop {
        // Answers found ready are queued; they go out when no more input is buffered.
        if !reader.has_buffered() && !writer.flush().await {
            return Err("write failed".into());
        }
        let read = tokio::select! {
            biased;
            read = reader.next() => read,
            () = &mut idle_timer => {
                if last_frame.elapsed() >= idle {
                    return Err(format!("no traffic for {idle:?}"));
                }
                idle_timer.as_mut().reset(last_frame + idle);
                continue;
            }
        };
        last_frame = tokio::time::Instant::now();
        let (header, body) = match read {
            Ok(Read::Closed) => return Ok(()),
            Ok(Read::Frame(h, b)) => (h, b),
            Ok(Read::TooLarge(header)) => {
                if header.is_request() && header.is_two_way() {
                    let msg = format!(
                        "Data length too large: {}, max payload: {}",
                        header.len, shared.config.payload
                    );
                    writer.queue(&error_frame(header, status::BAD_REQUEST, &msg));
                }
                continue;
            }
            Err(ReadError::Bad(e)) => {
                shared.bad_frames.fetch_add(1, Ordering::Relaxed);
                return Err(format!("bad frame: {e}"));
            }
            Err(ReadError::Io(e)) => return Err(e.to_string()),
        };
        if !header.is_request() {
            // A response to our heartbeat, or to the readonly event: nothing to do.
            continue;
        }
        if header.is_event() {
            if header.is_two_way() {
                writer.queue(&codec::heartbeat_response(header.id));
            }
            continue;
        }
        if header.serialization() != HESSIAN2 {
            if header.is_two_way() {
                let msg = format!(
                    "serialization id {} is not supported, only hessian2 (2)",
                    header.serialization()
                );
                writer.queue(&error_frame(header, status::SERIALIZATION_ERROR, &msg));
            }
            continue;
        }
        // Back-pressure: at the limit, stop reading this connection until a call ends.
        let permit = match pending.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if !writer.flush().await {
                    return Err("write failed".into());
                }
                pending
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| "closed".to_string())?
            }
        };
        shared.in_flight.fetch_add(1, Ordering::SeqCst);
        let mut call = Box::pin(handle(shared.clone(), header, body, conn));
        // Calls that complete at once are answered from here, without a task of their own.
        let first_poll = call.as_mut().poll(&mut Context::from_waker(Waker::noop()));
        match first_poll {
            Poll::Ready(answer) => {
                if let Some(frame) = answer {
                    writer.queue(&frame);
                }
                shared.in_flight.fetch_sub(1, Ordering::SeqCst);
                drop(permit);
            }
            Poll::Pending => {
                let shared = shared.clone();
                let writer = writer.clone();
                tokio::spawn(async move {
                    if let Some(frame) = call.await {
                        writer.send(&frame).await;
                    }
                    shared.in_flight.fetch_sub(1, Ordering::SeqCst);
                    drop(permit);
                });
            }
        }
    }
}

fn response_flags() -> u8 {
    HESSIAN2
}

/// A response with a non-OK status: the body is the message as one Hessian string.
pub(crate) fn error_frame(h: Header, st: u8, message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + message.len() + 3);
    let start = codec::begin_frame(&mut out, response_flags(), st, h.id);
    let mut e = Encoder::with_buffer(out);
    e.write_str(message);
    let mut out = e.into_bytes();
    codec::finish_frame(&mut out, start);
    out
}

async fn handle(shared: Arc<Shared>, header: Header, body: Vec<u8>, conn: Conn) -> Option<Vec<u8>> {
    let two_way = header.is_two_way();
    let body = bytes::Bytes::from(body);
    let mut req = match codec::decode_request_body(&body) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "bad request body");
            return two_way
                .then(|| error_frame(header, status::BAD_REQUEST, &format!("bad request: {e}")));
        }
    };
    if shared.draining.load(Ordering::SeqCst) {
        return two_way.then(|| {
            error_frame(
                header,
                status::SERVER_THREADPOOL_EXHAUSTED_ERROR,
                "provider is shutting down; retry on another provider",
            )
        });
    }
    let group = req.attachment("group").filter(|g| !g.is_empty());
    // (In a block: the key's buffer is not kept in the call's future.)
    let export = {
        let key = ServiceKey::new(group, req.service(), req.version.as_deref());
        let key = key.as_str();
        let Some(export) = shared.exports.get(key) else {
            return two_way.then(|| not_exported(&shared, header, &req, key, conn));
        };
        export
    };
    let timeout = req
        .attachment("timeout")
        .and_then(|t| t.parse::<u64>().ok())
        .filter(|t| *t > 0)
        .map(Duration::from_millis)
        .unwrap_or(shared.config.default_timeout);
    let generic = matches!(req.method.as_str(), "$invoke" | "$invokeAsync");
    let (method, args, parameter_types) = if generic {
        match generic_call(&req.args) {
            Ok(call) => call,
            Err(e) => {
                return two_way.then(|| {
                    error_frame(header, status::BAD_REQUEST, &format!("bad $invoke: {e}"))
                })
            }
        }
    } else {
        (
            std::mem::take(&mut req.method),
            std::mem::take(&mut req.args),
            req.parameter_types
                .iter()
                .map(|t| codec::static_descriptor(t))
                .collect(),
        )
    };
    let mut attachments = Attachments::new();
    for (k, v) in &req.attachments {
        if !matches!(
            k.as_str(),
            "path" | "interface" | "version" | "group" | "dubbo" | "timeout"
        ) {
            attachments.insert(k.clone(), v.clone());
        }
    }
    let inv = Invocation {
        interface: export.names.interface.clone(),
        group: export.names.group.clone(),
        version: export.names.version.clone(),
        method: export.names.method(&method),
        args,
        attachments,
        timeout: Some(timeout),
        parameter_types,
        reply_attachments: ReplySink::new(),
    };
    let reply_attachments = inv.reply_attachments.clone();
    // `$echo(Object)`: answered by the framework, as Java's EchoFilter does.
    let mut call = if &*inv.method == "$echo" && inv.args.len() == 1 {
        let echoed = inv
            .args
            .into_values()
            .map(|mut v| v.pop().unwrap_or_default());
        Box::pin(std::future::ready(
            echoed.map(Reply::Value).map_err(RpcError::Codec),
        ))
    } else {
        export.invoker.invoke(inv)
    };
    // Most calls finish on their first poll: only the others get a timer.
    let first = call.as_mut().poll(&mut Context::from_waker(Waker::noop()));
    let result = match first {
        Poll::Ready(r) => r,
        Poll::Pending => match tokio::time::timeout(timeout, call).await {
            Ok(r) => r,
            Err(_) => Err(RpcError::Timeout(timeout)),
        },
    };
    if !two_way {
        return None;
    }
    let attachments = codec::supports_response_attachments(&req.dubbo_version);
    let body = match result {
        Ok(reply) if generic => match reply.into_value() {
            Ok(v) => ResponseBody::Value(Reply::Value(codec::generalize(v))),
            Err(e) => ResponseBody::Exception(
                Throwable::new("org.apache.dubbo.rpc.RpcException", e).to_value(),
            ),
        },
        Ok(reply) => ResponseBody::Value(reply),
        Err(RpcError::Timeout(t)) => {
            return Some(error_frame(
                header,
                status::SERVER_TIMEOUT,
                &format!("Server side timeout: the call of {method} took longer than {t:?}"),
            ))
        }
        Err(RpcError::Remote { code, message, .. })
            if code == codes::SERVER_BUSY || code == codes::SHUTTING_DOWN =>
        {
            return Some(error_frame(
                header,
                status::SERVER_THREADPOOL_EXHAUSTED_ERROR,
                &message,
            ))
        }
        // No such method (or no overload with these descriptors). Java finds that out
        // while decoding the request and answers 40 BAD_REQUEST; a generic call finds it
        // in its GenericFilter, whose RpcException is answered 70 SERVICE_ERROR.
        Err(RpcError::Remote { code, message, .. }) if code == codes::METHOD_NOT_FOUND => {
            return Some(if generic {
                let names: Vec<String> = parameter_types_of_generic(&req.args)
                    .iter()
                    .map(|d| rdubbo_core::json::java_name(d))
                    .collect();
                error_frame(
                    header,
                    status::SERVICE_ERROR,
                    &format!(
                        "org.apache.dubbo.rpc.RpcException: {}.{method}({})",
                        export.info.interface,
                        names.join(",")
                    ),
                )
            } else {
                error_frame(
                    header,
                    status::BAD_REQUEST,
                    &format!("{}\n{message}", service_not_found(req.service(), &method)),
                )
            });
        }
        Err(e) => ResponseBody::Exception(exception_of(&e).to_value()),
    };
    let mut out = Vec::with_capacity(HEADER_LEN + 256);
    let start = codec::begin_frame(&mut out, response_flags(), status::OK, header.id);
    let mut e = Encoder::with_buffer(out);
    let pairs: Vec<(String, String)> = reply_attachments
        .get()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if let Err(msg) = codec::encode_response_body(&mut e, &body, attachments.then_some(&pairs[..]))
    {
        tracing::warn!(%msg, "cannot encode the response of {method}");
        return Some(error_frame(
            header,
            status::SERVICE_ERROR,
            &format!("cannot encode the result of {method}: {msg}"),
        ));
    }
    let mut out = e.into_bytes();
    let len = codec::finish_frame(&mut out, start);
    if len > shared.config.payload {
        let msg = format!(
            "Data length too large: {len}, max payload: {} (response of {method})",
            shared.config.payload
        );
        tracing::warn!(%msg, "response over the payload limit");
        return Some(error_frame(header, status::SERVICE_ERROR, &msg));
    }
    Some(out)
}

/// `[group/]interface[:version]`, as `rdubbo_core::url::service_key` writes it, on the
/// stack when it is short (every request looks its export up by it).
struct ServiceKey {
    buf: [u8; 192],
    len: usize,
    long: Option<String>,
}

impl ServiceKey {
    fn new(group: Option<&str>, interface: &str, version: Option<&str>) -> ServiceKey {
        let group = group.filter(|g| !g.is_empty());
        let version = version.filter(|v| !v.is_empty());
        let mut key = ServiceKey {
            buf: [0; 192],
            len: 0,
            long: None,
        };
        let parts = [
            group.unwrap_or(""),
            if group.is_some() { "/" } else { "" },
            interface,
            if version.is_some() { ":" } else { "" },
            version.unwrap_or(""),
        ];
        if parts.iter().map(|p| p.len()).sum::<usize>() > key.buf.len() {
            key.long = Some(rdubbo_core::url::service_key(group, interface, version));
            return key;
        }
        for p in parts {
            key.buf[key.len..key.len + p.len()].copy_from_slice(p.as_bytes());
            key.len += p.len();
        }
        key
    }

    fn as_str(&self) -> &str {
        match &self.long {
            Some(k) => k,
            // Whole strings one after the other: valid UTF-8.
            None => std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default(),
        }
    }
}

/// The Java exception a provider-side error travels as.
fn exception_of(e: &RpcError) -> Throwable {
    match e {
        RpcError::Remote {
            code,
            message,
            data,
        } => {
            let class = data
                .as_ref()
                .and_then(|d| d.get("exception").or_else(|| d.get("class")))
                .and_then(serde_json::Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| {
                    if *code == codes::SERVICE_ERROR {
                        "java.lang.RuntimeException".into()
                    } else {
                        "org.apache.dubbo.rpc.RpcException".into()
                    }
                });
            Throwable::new(class, message.clone())
        }
        other => Throwable::new("org.apache.dubbo.rpc.RpcException", other.to_string()),
    }
}

/// The method, arguments and descriptors a generic call (`$invoke(String method,
/// String[] types, Object[] args)`) stands for, its arguments realized from their generic
/// form.
fn generic_call(
    args: &rdubbo_core::Args,
) -> Result<
    (
        String,
        rdubbo_core::Args,
        rdubbo_core::invocation::ParameterTypes,
    ),
    String,
> {
    let mut values = args.to_values()?.into_iter();
    let method = match values.next() {
        Some(HValue::String(m)) => m,
        other => return Err(format!("method name expected, got {other:?}")),
    };
    let types: Vec<std::borrow::Cow<'static, str>> = match values.next() {
        Some(HValue::List(l)) => l
            .items
            .iter()
            .filter_map(HValue::as_str)
            .map(|t| std::borrow::Cow::Owned(rdubbo_core::json::descriptor_from_name(t)))
            .collect(),
        _ => Vec::new(),
    };
    let args = match values.next() {
        Some(HValue::List(l)) => l.items.into_iter().map(codec::realize).collect(),
        _ => Vec::new(),
    };
    Ok((method, rdubbo_core::Args::Values(args), types.into()))
}

/// The first line of Java 2.7's answer (status 40 BAD_REQUEST) to a call whose service
/// path, method or parameter descriptors the provider does not have
/// (`DecodeableRpcInvocation.decode` throws, `HeaderExchangeHandler` answers).
fn service_not_found(path: &str, method: &str) -> String {
    format!(
        "Fail to decode request due to: java.lang.IllegalArgumentException: \
         Service not found:{path}, {method}"
    )
}

/// Java's `serviceKey(port, path, version, group)`: `[group/]path[:version]:port`.
fn java_service_key(info_key: &str, port: u16) -> String {
    format!("{info_key}:{port}")
}

/// How Java 2.7 answers a request for a service it does not export:
/// - an unknown path (no version of it is exported), or a method none of its exported
///   versions has, fails while decoding: 40 BAD_REQUEST, `Service not found:<path>,
///   <method>` (generic `$invoke` and `$echo` calls pass decoding);
/// - a known path with another version or group: 70 SERVICE_ERROR,
///   `RemotingException: Not found exported service: …, may be version or group mismatch`.
fn not_exported(
    shared: &Shared,
    header: Header,
    req: &codec::RequestBody,
    key: &str,
    conn: Conn,
) -> Vec<u8> {
    let path = req.service();
    let special = matches!(req.method.as_str(), "$invoke" | "$invokeAsync" | "$echo");
    let same_path: Vec<&Export> = shared
        .exports
        .values()
        .filter(|e| e.info.interface == path)
        .collect();
    let methods_known = same_path.iter().any(|e| !e.info.methods.is_empty());
    let has_method = same_path
        .iter()
        .any(|e| e.info.methods.contains(&req.method));
    if !special && (same_path.is_empty() || (methods_known && !has_method)) {
        return error_frame(
            header,
            status::BAD_REQUEST,
            &service_not_found(path, &req.method),
        );
    }
    let port = conn.local.port();
    let mut known: Vec<String> = shared
        .exports
        .keys()
        .map(|k| java_service_key(k, port))
        .collect();
    known.sort();
    let types: Vec<String> = req
        .parameter_types
        .iter()
        .map(|d| java_class_text(d))
        .collect();
    error_frame(
        header,
        status::SERVICE_ERROR,
        &format!(
            "org.apache.dubbo.remoting.RemotingException: Not found exported service: {} in [{}], \
             may be version or group mismatch , channel: consumer: /{} --> provider: /{}, \
             message:RpcInvocation [methodName={}, parameterTypes=[{}]]",
            java_service_key(key, port),
            known.join(", "),
            conn.peer,
            conn.local,
            req.method,
            types.join(", ")
        ),
    )
}

/// A parameter type as Java's `Class.toString` prints it (`long`, `class
/// java.lang.String`, `class [J`; an interface type reads `class` here too).
fn java_class_text(descriptor: &str) -> String {
    match descriptor {
        "Z" | "B" | "S" | "I" | "J" | "F" | "D" | "C" | "V" => {
            rdubbo_core::json::java_name(descriptor)
        }
        d => format!("class {}", rdubbo_core::json::java_name(d)),
    }
}

/// The descriptors a generic call names (its second argument), for error texts.
fn parameter_types_of_generic(args: &rdubbo_core::Args) -> Vec<String> {
    match args.to_values() {
        Ok(values) => match values.into_iter().nth(1) {
            Some(HValue::List(l)) => l
                .items
                .iter()
                .filter_map(HValue::as_str)
                .map(rdubbo_core::json::descriptor_from_name)
                .collect(),
            _ => Vec::new(),
        },
        Err(_) => Vec::new(),
    }
}
