//! The consumer side: an [`Invoker`] calling one provider over `connections` multiplexed
//! TCP connections (default 1). Requests carry ids; any number may be in flight on one
//! connection up to `max_pending`. A connection with no traffic for `heartbeat` sends a
//! heartbeat; after three heartbeat periods without traffic it is closed. A failed connect
//! is retried on a later call after a back-off doubling from 100 ms to 5 s.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdubbo_core::{error::codes, BoxFuture, Invocation, Invoker, RpcError, RpcResult, Url};
use rdubbo_hessian::{Encoder, Throwable, Value as HValue};
use serde_json::Value as JValue;
use tokio::io::BufReader;
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::AbortHandle;

use crate::codec::{self, status, Header, ResponseBody, FLAG_REQUEST, FLAG_TWO_WAY, HESSIAN2};
use crate::wire::{read_frame, Read, ReadError, Writer};

/// Settings of a [`DubboClient`]; each can also come from the provider URL.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Connections per provider (`connections=`, default 1).
    pub connections: usize,
    /// Call timeout when the invocation has none (`timeout=` ms, default 1000).
    pub timeout: Duration,
    /// Connect timeout (`connect.timeout=` ms, default 3000).
    pub connect_timeout: Duration,
    /// Idle time before a heartbeat (`heartbeat=` ms, default 60000); three without an
    /// answer close the connection.
    pub heartbeat: Duration,
    /// Largest frame body sent or accepted (`payload=` bytes, default 8 MiB).
    pub payload: usize,
    /// Requests in flight per client at most (`pending=`, default 65536).
    pub max_pending: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connections: 1,
            timeout: Duration::from_millis(1000),
            connect_timeout: Duration::from_millis(3000),
            heartbeat: Duration::from_secs(60),
            payload: codec::DEFAULT_PAYLOAD,
            max_pending: 65536,
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
        if let Some(ms) = num("heartbeat").filter(|n| *n > 0) {
            self.heartbeat = Duration::from_millis(ms);
        }
        if let Some(b) = num("payload").filter(|n| *n > 0) {
            self.payload = b as usize;
        }
        if let Some(n) = num("pending").filter(|n| *n > 0) {
            self.max_pending = n as usize;
        }
        self
    }
}

type Reply = Result<(Header, Vec<u8>), RpcError>;

/// One connection: its writer queue and the calls waiting for an answer.
struct Conn {
    writer: Arc<Writer>,
    pending: Arc<Mutex<HashMap<i64, oneshot::Sender<Reply>>>>,
    closed: Arc<AtomicBool>,
    /// The provider sent the readonly event on this connection.
    readonly: Arc<AtomicBool>,
    tasks: Vec<AbortHandle>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

enum Slot {
    Empty,
    Up(Arc<Conn>),
    Backoff { until: Instant, failures: u32 },
}

struct Inner {
    url: Url,
    addr: String,
    config: ClientConfig,
    slots: Vec<tokio::sync::Mutex<Slot>>,
    next_slot: AtomicUsize,
    ids: Arc<AtomicI64>,
    in_flight: AtomicUsize,
    /// Set when the provider sent the readonly event (it is shutting down).
    readonly: Arc<AtomicBool>,
    failures: AtomicU64,
}

/// An invoker calling one provider over the Dubbo protocol.
#[derive(Clone)]
pub struct DubboClient {
    inner: Arc<Inner>,
}

impl DubboClient {
    /// A client of the provider at `url` (`dubbo://host:port/interface?…`), configured by
    /// the URL's parameters.
    pub fn new(url: &Url) -> RpcResult<DubboClient> {
        DubboClient::with_config(url, ClientConfig::default().from_url(url))
    }

    /// A client with explicit settings.
    pub fn with_config(url: &Url, config: ClientConfig) -> RpcResult<DubboClient> {
        let port = url
            .port()
            .ok_or_else(|| RpcError::Invalid(format!("provider URL without port: {url}")))?;
        let addr = if url.host().contains(':') {
            format!("[{}]:{port}", url.host())
        } else {
            format!("{}:{port}", url.host())
        };
        let slots = (0..config.connections.max(1))
            .map(|_| tokio::sync::Mutex::new(Slot::Empty))
            .collect();
        Ok(DubboClient {
            inner: Arc::new(Inner {
                url: url.clone(),
                addr,
                config,
                slots,
                next_slot: AtomicUsize::new(0),
                ids: Arc::new(AtomicI64::new(1)),
                in_flight: AtomicUsize::new(0),
                readonly: Arc::new(AtomicBool::new(false)),
                failures: AtomicU64::new(0),
            }),
        })
    }

    /// The provider URL.
    pub fn url(&self) -> &Url {
        &self.inner.url
    }

    /// Whether the provider announced that it is shutting down.
    pub fn is_readonly(&self) -> bool {
        self.inner.readonly.load(Ordering::Relaxed)
    }
}

impl Invoker for DubboClient {
    fn invoke(&self, inv: Invocation) -> BoxFuture<'static, RpcResult<JValue>> {
        let inner = self.inner.clone();
        Box::pin(async move { inner.call(inv).await })
    }
}

struct InFlight<'a>(&'a AtomicUsize);
impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Inner {
    async fn call(&self, inv: Invocation) -> RpcResult<JValue> {
        if self.in_flight.fetch_add(1, Ordering::Relaxed) >= self.config.max_pending {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            return Err(RpcError::Limit(format!(
                "{} requests already pending to {}",
                self.config.max_pending, self.addr
            )));
        }
        let _guard = InFlight(&self.in_flight);
        let timeout = inv.timeout.unwrap_or(self.config.timeout);
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        let frame = self.encode(id, &inv, timeout)?;
        let deadline = tokio::time::Instant::now() + timeout;
        let conn = {
            // Usually ready at once (a live connection): no timer then.
            let mut connecting = std::pin::pin!(self.connection());
            let first = connecting
                .as_mut()
                .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()));
            match first {
                std::task::Poll::Ready(c) => c?,
                std::task::Poll::Pending => {
                    match tokio::time::timeout_at(deadline, connecting).await {
                        Ok(c) => c?,
                        Err(_) => return Err(RpcError::Timeout(timeout)),
                    }
                }
            }
        };
        let (reply_tx, reply_rx) = oneshot::channel();
        conn.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, reply_tx);
        if !conn.writer.send(&frame).await {
            conn.pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            conn.closed.store(true, Ordering::Relaxed);
            return Err(RpcError::Transport {
                addr: self.addr.clone(),
                reason: "writing the request failed".into(),
            });
        }
        let reply = match tokio::time::timeout_at(deadline, reply_rx).await {
            Ok(Ok(r)) => r?,
            Ok(Err(_)) => {
                return Err(RpcError::Transport {
                    addr: self.addr.clone(),
                    reason: "connection closed".into(),
                })
            }
            Err(_) => {
                conn.pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
                return Err(RpcError::Timeout(timeout));
            }
        };
        decode_reply(&self.addr, reply)
    }

    fn encode(&self, id: i64, inv: &Invocation, timeout: Duration) -> RpcResult<Vec<u8>> {
        let types: Vec<String> = if inv.parameter_types.len() == inv.args.len() {
            inv.parameter_types.clone()
        } else {
            inv.args.iter().map(codec::infer_descriptor).collect()
        };
        let generic = inv.attachments.get("generic").is_some_and(|g| g == "true");
        let args: Vec<HValue> = inv
            .args
            .iter()
            .zip(&types)
            .map(|(a, t)| codec::json_to_hessian(a, Some(t), generic))
            .collect();
        let timeout_ms = timeout.as_millis().to_string();
        let mut attachments: Vec<(&str, &str)> = vec![
            ("path", &inv.interface),
            ("interface", &inv.interface),
            ("timeout", &timeout_ms),
        ];
        if let Some(v) = &inv.version {
            attachments.push(("version", v));
        }
        if let Some(g) = &inv.group {
            attachments.push(("group", g));
        }
        for (k, v) in inv.attachments.iter() {
            attachments.push((k, v));
        }
        let mut out = Vec::with_capacity(256);
        let start = codec::begin_frame(&mut out, FLAG_REQUEST | FLAG_TWO_WAY | HESSIAN2, 0, id);
        let mut e = Encoder::with_buffer(out);
        codec::encode_request_body(
            &mut e,
            &inv.interface,
            inv.version.as_deref(),
            &inv.method,
            &types,
            &args,
            &attachments,
        );
        let mut out = e.into_bytes();
        let len = codec::finish_frame(&mut out, start);
        if len > self.config.payload {
            return Err(RpcError::Limit(format!(
                "Data length too large: {len}, max payload: {} (request not sent)",
                self.config.payload
            )));
        }
        Ok(out)
    }

    /// A live connection: the next slot's, connecting it if needed.
    async fn connection(&self) -> RpcResult<Arc<Conn>> {
        let i = self.next_slot.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let mut slot = self.slots[i].lock().await;
        let failures = match &*slot {
            Slot::Up(c) if !c.closed.load(Ordering::Relaxed) => {
                if c.readonly.load(Ordering::Relaxed) {
                    return Err(RpcError::remote(
                        codes::SHUTTING_DOWN,
                        format!("provider {} is shutting down (readonly)", self.addr),
                    ));
                }
                return Ok(c.clone());
            }
            Slot::Backoff { until, failures } => {
                if Instant::now() < *until {
                    return Err(RpcError::Connect {
                        addr: self.addr.clone(),
                        reason: format!(
                            "last connect failed; next attempt in {:?}",
                            *until - Instant::now()
                        ),
                    });
                }
                *failures
            }
            _ => 0,
        };
        match tokio::time::timeout(self.config.connect_timeout, TcpStream::connect(&self.addr))
            .await
        {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                let conn = Arc::new(self.start(stream));
                *slot = Slot::Up(conn.clone());
                self.readonly.store(false, Ordering::Relaxed);
                Ok(conn)
            }
            outcome => {
                let reason = match outcome {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("no answer within {:?}", self.config.connect_timeout),
                };
                self.failures.fetch_add(1, Ordering::Relaxed);
                let backoff =
                    Duration::from_millis(100u64 << failures.min(6)).min(Duration::from_secs(5));
                *slot = Slot::Backoff {
                    until: Instant::now() + backoff,
                    failures: failures + 1,
                };
                Err(RpcError::Connect {
                    addr: self.addr.clone(),
                    reason,
                })
            }
        }
    }

    fn start(&self, stream: TcpStream) -> Conn {
        let (read, write) = stream.into_split();
        let writer = Arc::new(Writer::new(write));
        let pending: Arc<Mutex<HashMap<i64, oneshot::Sender<Reply>>>> = Arc::default();
        let closed = Arc::new(AtomicBool::new(false));
        let readonly = Arc::new(AtomicBool::new(false));
        let last_read = Arc::new(AtomicU64::new(0));
        let born = Instant::now();
        let reader = tokio::spawn(read_loop(
            BufReader::with_capacity(64 * 1024, read),
            ReaderState {
                addr: self.addr.clone(),
                pending: pending.clone(),
                closed: closed.clone(),
                readonly: readonly.clone(),
                any_readonly: self.readonly.clone(),
                last_read: last_read.clone(),
                born,
                payload: self.config.payload,
                writer: writer.clone(),
            },
        ));
        let heartbeat = tokio::spawn(heartbeat_loop(
            self.addr.clone(),
            self.config.heartbeat,
            writer.clone(),
            self.ids.clone(),
            last_read,
            born,
            closed.clone(),
            pending.clone(),
        ));
        Conn {
            writer,
            pending,
            closed,
            readonly,
            tasks: vec![reader.abort_handle(), heartbeat.abort_handle()],
        }
    }
}

struct ReaderState {
    addr: String,
    pending: Arc<Mutex<HashMap<i64, oneshot::Sender<Reply>>>>,
    closed: Arc<AtomicBool>,
    readonly: Arc<AtomicBool>,
    any_readonly: Arc<AtomicBool>,
    last_read: Arc<AtomicU64>,
    born: Instant,
    payload: usize,
    writer: Arc<Writer>,
}

fn fail_all(pending: &Mutex<HashMap<i64, oneshot::Sender<Reply>>>, addr: &str, reason: &str) {
    let waiting: Vec<_> = pending
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain()
        .collect();
    for (_, tx) in waiting {
        let _ = tx.send(Err(RpcError::Transport {
            addr: addr.to_string(),
            reason: reason.to_string(),
        }));
    }
}

async fn read_loop(mut read: BufReader<OwnedReadHalf>, st: ReaderState) {
    let reason = loop {
        let frame = read_frame(&mut read, st.payload).await;
        st.last_read
            .store(st.born.elapsed().as_millis() as u64, Ordering::Relaxed);
        let (header, body) = match frame {
            Ok(Read::Frame(h, b)) => (h, b),
            Ok(Read::Closed) => break "closed by the provider".to_string(),
            Ok(Read::TooLarge(header)) => {
                let waiting = st
                    .pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&header.id);
                if let Some(w) = waiting {
                    let _ = w.send(Err(RpcError::Limit(format!(
                        "Data length too large: {}, max payload: {} (response dropped)",
                        header.len, st.payload
                    ))));
                }
                continue;
            }
            Err(ReadError::Bad(e)) => break format!("bad frame from provider: {e}"),
            Err(ReadError::Io(e)) => break format!("connection lost: {e}"),
        };
        if header.is_request() {
            if header.is_event() {
                let readonly = rdubbo_hessian::decode_value(&body)
                    .ok()
                    .is_some_and(|v| v.as_str() == Some(codec::READONLY_EVENT));
                if readonly {
                    tracing::info!(provider = %st.addr, "provider is shutting down (readonly event)");
                    st.readonly.store(true, Ordering::Relaxed);
                    st.any_readonly.store(true, Ordering::Relaxed);
                }
                if header.is_two_way() {
                    st.writer.send(&codec::heartbeat_response(header.id)).await;
                }
            }
            continue;
        }
        if header.is_event() {
            continue; // heartbeat answer
        }
        let waiting = st
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&header.id);
        if let Some(w) = waiting {
            let _ = w.send(Ok((header, body)));
        }
    };
    st.closed.store(true, Ordering::Relaxed);
    tracing::debug!(provider = %st.addr, %reason, "connection closed");
    fail_all(&st.pending, &st.addr, &reason);
}

#[allow(clippy::too_many_arguments)]
async fn heartbeat_loop(
    addr: String,
    period: Duration,
    writer: Arc<Writer>,
    ids: Arc<AtomicI64>,
    last_read: Arc<AtomicU64>,
    born: Instant,
    closed: Arc<AtomicBool>,
    pending: Arc<Mutex<HashMap<i64, oneshot::Sender<Reply>>>>,
) {
    let tick = (period / 4).max(Duration::from_millis(10));
    let mut last_sent = Duration::ZERO;
    loop {
        tokio::time::sleep(tick).await;
        if closed.load(Ordering::Relaxed) {
            return;
        }
        let now = born.elapsed();
        let idle = now.saturating_sub(Duration::from_millis(last_read.load(Ordering::Relaxed)));
        if idle >= period * 3 {
            tracing::warn!(provider = %addr, ?idle, "no answer to three heartbeats; closing");
            closed.store(true, Ordering::Relaxed);
            fail_all(&pending, &addr, "heartbeat timeout");
            return;
        }
        if idle >= period && now.saturating_sub(last_sent) >= period {
            let id = ids.fetch_add(1, Ordering::Relaxed);
            writer.send(&codec::heartbeat_request(id)).await;
            last_sent = now;
        }
    }
}

/// Turns a response frame into the call's result.
fn decode_reply(addr: &str, (header, body): (Header, Vec<u8>)) -> RpcResult<JValue> {
    if header.status != status::OK {
        let message = rdubbo_hessian::decode_value(&body)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        let code = match header.status {
            status::CLIENT_TIMEOUT | status::SERVER_TIMEOUT => codes::SERVER_TIMEOUT,
            status::SERVER_THREADPOOL_EXHAUSTED_ERROR => {
                if message.contains("shutting down") {
                    codes::SHUTTING_DOWN
                } else {
                    codes::SERVER_BUSY
                }
            }
            status::SERVICE_NOT_FOUND => codes::METHOD_NOT_FOUND,
            status::BAD_REQUEST | status::SERIALIZATION_ERROR => codes::INVALID_REQUEST,
            status::SERVICE_ERROR => codes::SERVICE_ERROR,
            status::CHANNEL_INACTIVE => {
                return Err(RpcError::Transport {
                    addr: addr.to_string(),
                    reason: message,
                })
            }
            _ => codes::INTERNAL_ERROR,
        };
        return Err(RpcError::Remote {
            code,
            message,
            data: Some(serde_json::json!({"status": header.status})),
        });
    }
    let (result, _attachments) = codec::decode_response_body(&body)
        .map_err(|e| RpcError::Codec(format!("bad response from {addr}: {e}")))?;
    match result {
        ResponseBody::Value(v) => Ok(codec::hessian_to_json(&v)),
        ResponseBody::Exception(x) => Err(exception_error(&x)),
    }
}

/// The error a Java exception object becomes: a service error whose `data` names the
/// exception class and carries its stack (see [`java_exception`]).
fn exception_error(x: &HValue) -> RpcError {
    match Throwable::from_value(x) {
        Some(t) => RpcError::Remote {
            code: codes::SERVICE_ERROR,
            message: t.message.clone().unwrap_or_else(|| t.class.clone()),
            data: Some(serde_json::json!({
                "exception": t.class,
                "stackTrace": t.stack_trace.iter().map(|f| format!(
                    "{}.{}({}:{})",
                    f.declaring_class,
                    f.method_name,
                    f.file_name.as_deref().unwrap_or("Unknown Source"),
                    f.line_number
                )).collect::<Vec<_>>(),
            })),
        },
        None => RpcError::Remote {
            code: codes::SERVICE_ERROR,
            message: format!(
                "provider answered with an exception: {}",
                codec::hessian_to_json(x)
            ),
            data: None,
        },
    }
}

/// The Java exception class and stack of an error a Dubbo provider raised, if it was one.
pub fn java_exception(e: &RpcError) -> Option<(String, Vec<String>)> {
    let RpcError::Remote { data: Some(d), .. } = e else {
        return None;
    };
    let class = d.get("exception")?.as_str()?.to_string();
    let stack = d
        .get("stackTrace")
        .and_then(JValue::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Some((class, stack))
}
