//! The consumer side: an [`Invoker`] calling one provider over `connections` multiplexed
//! TCP connections (default 1). Requests carry ids; any number may be in flight on one
//! connection up to `max_pending`. A connection with no traffic for `heartbeat` sends a
//! heartbeat; after three heartbeat periods without traffic it is closed. A failed connect
//! is retried on a later call after a back-off doubling from 100 ms to 5 s.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdubbo_core::invocation::ParameterTypes;
use rdubbo_core::{error::codes, BoxFuture, Invocation, Invoker, RpcError, RpcResult, Url};
use rdubbo_core::{json, Args, Reply};
use rdubbo_hessian::{Encoder, Value as HValue};
use std::borrow::Cow;
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Notify};
use tokio::task::AbortHandle;
// tokio's clock: heartbeats and back-off follow a paused clock in tests.
use tokio::time::Instant;

use crate::codec::{self, Header, FLAG_REQUEST, FLAG_TWO_WAY, HESSIAN2};
use crate::tls::{ClientTls, SharedTcp};
use crate::wire::{FrameReader, ReadSocket, Readiness, WriteSocket, Writer};

mod conn;
mod reply;

use conn::{background_reader, flusher, heartbeat_loop, Turns, WRITE_FAILED};
use reply::decode_reply;
pub use reply::java_exception;

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
    /// The TLS settings (trusted CA, optional client certificate, server name) used to call
    /// a provider whose URL says `ssl-enabled=true` (default: none, and such a provider
    /// cannot be called). Providers without it are called over plain TCP.
    pub tls: Option<ClientTls>,
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

type Frame = Result<(Header, Vec<u8>), RpcError>;

/// One connection: its writer, its reading state and the calls waiting for an answer.
struct Conn {
    writer: Arc<Writer>,
    shared: Arc<ConnShared>,
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
    /// The provider's `token` (from its URL), sent with every call as Java's consumer does.
    token: Option<String>,
    config: ClientConfig,
    /// Each slot's connection while it is up: what a call reads, without a lock.
    live: Vec<arc_swap::ArcSwapOption<Conn>>,
    /// Each slot's state, locked to connect it (one connect at a time per slot).
    slots: Vec<tokio::sync::Mutex<Slot>>,
    next_slot: AtomicUsize,
    in_flight: AtomicUsize,
    /// Set when the provider sent the readonly event (it is shutting down).
    readonly: Arc<AtomicBool>,
    failures: AtomicU64,
    /// TLS, when the provider URL asks for it.
    tls: Option<ClientTls>,
}

/// A connected socket, before its reader and writer are made.
enum Transport {
    Tcp(TcpStream),
    Tls(Box<crate::tls::TlsStream>, Arc<TcpStream>),
}

/// An invoker calling one provider over the Dubbo protocol.
#[derive(Clone)]
pub struct DubboClient {
    inner: Arc<Inner>,
}

impl DubboClient {
    /// A client of the provider at `url` (`dubbo://host:port/interface?…`), configured by
    /// the URL's parameters. A `token` parameter (a provider exported with Java's token
    /// auth registers one) goes with every call as its `token` attachment.
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
        let tls = if rdubbo_tls::is_enabled(url.param(crate::SSL_ENABLED)) {
            Some(config.tls.clone().ok_or_else(|| {
                RpcError::Invalid(format!(
                    "provider {addr} serves TLS ({}=true) but this consumer has no TLS \
                     configuration (ClientConfig::tls: a CA bundle to trust)",
                    crate::SSL_ENABLED
                ))
            })?)
        } else {
            None
        };
        let slots: Vec<_> = (0..config.connections.max(1))
            .map(|_| tokio::sync::Mutex::new(Slot::Empty))
            .collect();
        Ok(DubboClient {
            inner: Arc::new(Inner {
                url: url.clone(),
                addr,
                token: url.param_non_empty("token").map(str::to_string),
                live: (0..slots.len())
                    .map(|_| arc_swap::ArcSwapOption::const_empty())
                    .collect(),
                config,
                slots,
                next_slot: AtomicUsize::new(0),
                in_flight: AtomicUsize::new(0),
                readonly: Arc::new(AtomicBool::new(false)),
                failures: AtomicU64::new(0),
                tls,
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
    fn invoke(&self, inv: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
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
    async fn call(&self, inv: Invocation) -> RpcResult<Reply> {
        if self.in_flight.fetch_add(1, Ordering::Relaxed) >= self.config.max_pending {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            return Err(RpcError::Limit(format!(
                "{} requests already pending to {}",
                self.config.max_pending, self.addr
            )));
        }
        let _guard = InFlight(&self.in_flight);
        let timeout = inv.timeout.unwrap_or(self.config.timeout);
        let id = next_id();
        let frame = self.encode(id, &inv, timeout)?;
        let sink = inv.reply_attachments;
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
        let st = &conn.shared;
        let alone = {
            let mut pending = st.pending();
            pending.insert(id, reply_tx);
            pending.len() == 1
        };
        if alone {
            if !conn.writer.send(&frame).await {
                st.pending().remove(&id);
                st.closed.store(true, Ordering::Relaxed);
                return Err(RpcError::Transport {
                    addr: self.addr.clone(),
                    reason: WRITE_FAILED.into(),
                });
            }
        } else {
            // Other calls are in flight: their callers are about to send too (the reader
            // just woke them). Queue the request; the connection's flusher writes what
            // they all queued in one go, one system call instead of one each.
            conn.writer.queue(&frame);
            st.flush_soon.notify_one();
        }
        let reply = match tokio::time::timeout_at(deadline, st.wait_reply(reply_rx, alone)).await {
            Ok(Some(r)) => r?,
            Ok(None) => {
                return Err(RpcError::Transport {
                    addr: self.addr.clone(),
                    reason: "connection closed".into(),
                })
            }
            Err(_) => {
                st.pending().remove(&id);
                return Err(RpcError::Timeout(timeout));
            }
        };
        decode_reply(&self.addr, reply, &sink)
    }

    fn encode(&self, id: i64, inv: &Invocation, timeout: Duration) -> RpcResult<Vec<u8>> {
        let (types, args) = wire_args(inv)?;
        let mut digits = [0u8; 40];
        let timeout_ms = decimal(timeout.as_millis(), &mut digits);
        let attachments = [
            ("path", &*inv.interface),
            ("interface", &*inv.interface),
            ("timeout", timeout_ms),
        ]
        .into_iter()
        .chain(inv.version.as_deref().map(|v| ("version", v)))
        .chain(inv.group.as_deref().map(|g| ("group", g)))
        .chain(
            self.token
                .as_deref()
                .filter(|_| inv.attachments.get("token").is_none())
                .map(|t| ("token", t)),
        )
        .chain(inv.attachments.iter());
        let mut out = Vec::with_capacity(256);
        let start = codec::begin_frame(&mut out, FLAG_REQUEST | FLAG_TWO_WAY | HESSIAN2, 0, id);
        let mut e = Encoder::with_buffer(out);
        codec::encode_request(
            &mut e,
            &inv.interface,
            inv.version.as_deref(),
            &inv.method,
            &types,
            &args,
            attachments,
        )
        .map_err(|e| {
            RpcError::Codec(format!(
                "cannot encode the arguments of {}: {e}",
                inv.method
            ))
        })?;
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
        // One connection (the default): no turn to take.
        let i = match self.slots.len() {
            1 => 0,
            n => self.next_slot.fetch_add(1, Ordering::Relaxed) % n,
        };
        if let Some(c) = &*self.live[i].load() {
            if !c.shared.closed.load(Ordering::Relaxed) {
                return self.usable(c);
            }
        }
        let mut slot = self.slots[i].lock().await;
        let failures = match &*slot {
            Slot::Up(c) if !c.shared.closed.load(Ordering::Relaxed) => return self.usable(c),
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
        let connect = async {
            let stream = TcpStream::connect(&self.addr).await?;
            let _ = stream.set_nodelay(true);
            match &self.tls {
                None => Ok(Transport::Tcp(stream)),
                Some(tls) => {
                    let tcp = Arc::new(stream);
                    let session = tls.connect(self.url.host(), SharedTcp(tcp.clone())).await?;
                    Ok::<_, std::io::Error>(Transport::Tls(Box::new(session.into()), tcp))
                }
            }
        };
        match tokio::time::timeout(self.config.connect_timeout, connect).await {
            Ok(Ok(stream)) => {
                let conn = Arc::new(self.start(stream));
                *slot = Slot::Up(conn.clone());
                self.live[i].store(Some(conn.clone()));
                self.readonly.store(false, Ordering::Relaxed);
                Ok(conn)
            }
            outcome => {
                let reason = match outcome {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("no answer within {:?}", self.config.connect_timeout),
                };
                self.failures.fetch_add(1, Ordering::Relaxed);
                self.live[i].store(None);
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

    /// `c`, unless its provider said it is shutting down.
    fn usable(&self, c: &Arc<Conn>) -> RpcResult<Arc<Conn>> {
        if c.shared.readonly.load(Ordering::Relaxed) {
            return Err(RpcError::remote(
                codes::SHUTTING_DOWN,
                format!("provider {} is shutting down (readonly)", self.addr),
            ));
        }
        Ok(c.clone())
    }

    fn start(&self, stream: Transport) -> Conn {
        let (read, write): (ReadSocket, WriteSocket) = match stream {
            Transport::Tcp(stream) => {
                let (read, write) = stream.into_split();
                (read.into(), write.into())
            }
            Transport::Tls(session, tcp) => {
                let (read, write) = crate::tls::split(*session, tcp);
                (read, WriteSocket::Tls(write))
            }
        };
        let reader = FrameReader::new(read, self.config.payload);
        let socket = reader.socket();
        let writer = Arc::new(Writer::new(write, self.config.heartbeat * 3));
        let shared = Arc::new(ConnShared {
            addr: self.addr.clone(),
            socket,
            reader: tokio::sync::Mutex::new(reader),
            turns: Mutex::default(),
            leader_done: Notify::new(),
            pending: Mutex::default(),
            closed: AtomicBool::new(false),
            readonly: AtomicBool::new(false),
            any_readonly: self.readonly.clone(),
            last_read: AtomicU64::new(0),
            answered: AtomicBool::new(false),
            born: Instant::now(),
            payload: self.config.payload,
            writer: writer.clone(),
            flush_soon: Notify::new(),
        });
        let reader = tokio::spawn(background_reader(shared.clone()));
        let flusher = tokio::spawn(flusher(shared.clone()));
        let heartbeat = tokio::spawn(heartbeat_loop(self.config.heartbeat, shared.clone()));
        Conn {
            writer,
            shared,
            tasks: vec![
                reader.abort_handle(),
                heartbeat.abort_handle(),
                flusher.abort_handle(),
            ],
        }
    }
}

/// What the callers and the tasks of one connection share.
///
/// Reading is done by whoever holds `reader`. A call made while no other call is in flight
/// reads the connection itself (and hands every other answer it reads to its caller), so
/// one call at a time has no hand-off between tasks. Otherwise a background task reads
/// whenever the socket is readable and no caller is reading: for the calls in flight, to
/// answer heartbeats, and to notice the readonly event or a close. It never holds the
/// reader while waiting, so a lone caller finds it free. On plain TCP only one of them
/// waits in the socket's read slot at a time: while a caller reads, the background reader
/// is not woken by the answers (the caller puts its waker back when it lets go), so a
/// call alone on its connection wakes no other task.
struct ConnShared {
    addr: String,
    /// The socket read, to wait for it without holding `reader` (on plain TCP the readers
    /// take turns in its read slot).
    socket: Readiness,
    reader: tokio::sync::Mutex<FrameReader>,
    /// Whether a caller reads, and the background reader's waker.
    turns: Mutex<Turns>,
    /// Signalled when a reading caller lets go (TLS: the background reader waits for it).
    leader_done: Notify,
    pending: Mutex<HashMap<i64, oneshot::Sender<Frame>>>,
    closed: AtomicBool,
    /// The provider sent the readonly event on this connection.
    readonly: AtomicBool,
    any_readonly: Arc<AtomicBool>,
    last_read: AtomicU64,
    /// Whether any frame came from the provider on this connection.
    answered: AtomicBool,
    born: Instant,
    payload: usize,
    writer: Arc<Writer>,
    /// Signalled when a request was queued for the flusher (see [`flusher`]).
    flush_soon: Notify,
}

/// A request id unique in this process (Java's consumer numbers all its requests from one
/// counter too). Each thread takes ids in blocks from the shared counter, so a call reads
/// and writes only its thread's own: no line of the provider's state to fetch for it.
fn next_id() -> i64 {
    const BLOCK: i64 = 1024;
    static NEXT_BLOCK: AtomicI64 = AtomicI64::new(1);
    thread_local!(static IDS: std::cell::Cell<(i64, i64)> = const { std::cell::Cell::new((0, 0)) });
    IDS.with(|ids| {
        let (mut next, mut end) = ids.get();
        if next == end {
            next = NEXT_BLOCK.fetch_add(BLOCK, Ordering::Relaxed);
            end = next + BLOCK;
        }
        ids.set((next + 1, end));
        next
    })
}

/// `n` in decimal, written into `buf`.
fn decimal(mut n: u128, buf: &mut [u8; 40]) -> &str {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // ASCII digits.
    std::str::from_utf8(&buf[at..]).unwrap_or("0")
}

/// The descriptors and arguments a call goes out with. Typed and encoded arguments go as
/// they are; dynamic ones are brought to the Java type each descriptor names (an `Int`
/// for a `long` parameter is sent as a long), and without descriptors each value's own
/// Java type is named.
fn wire_args(inv: &Invocation) -> RpcResult<(ParameterTypes, Args)> {
    let n = inv.args.len();
    let named = inv.parameter_types.len() == n;
    match &inv.args {
        Args::Message(_) | Args::Stream(_) => Err(RpcError::Invalid(format!(
            "{}.{}: a protobuf message or message stream (an IDL or streaming call) cannot be sent over dubbo; use tri://",
            inv.interface, inv.method
        ))),
        Args::Values(values) => {
            let types: ParameterTypes = if named {
                inv.parameter_types.clone()
            } else {
                values
                    .iter()
                    .map(|v| Cow::Owned(json::descriptor_of(v)))
                    .collect()
            };
            let args = values
                .iter()
                .zip(types.iter())
                .map(|(v, t)| coerce(v, t))
                .collect();
            Ok((types, Args::Values(args)))
        }
        Args::Json(items) => {
            let values: Vec<HValue> = if named {
                items
                    .iter()
                    .zip(inv.parameter_types.iter())
                    .map(|(j, t)| json::to_value_as(j, t))
                    .collect()
            } else {
                items.iter().map(json::to_value).collect()
            };
            let types: ParameterTypes = if named {
                inv.parameter_types.clone()
            } else {
                values
                    .iter()
                    .map(|v| Cow::Owned(json::descriptor_of(v)))
                    .collect()
            };
            Ok((types, Args::Values(values)))
        }
        other if named || n == 0 => Ok((inv.parameter_types.clone(), other.clone())),
        other => {
            let values = other.to_values().map_err(RpcError::Codec)?;
            let types = values
                .iter()
                .map(|v| Cow::Owned(json::descriptor_of(v)))
                .collect();
            Ok((types, other.clone()))
        }
    }
}

/// A dynamic value as the Java type a descriptor names, where a number or text converts
/// without loss of meaning.
fn coerce(v: &HValue, desc: &str) -> HValue {
    match (desc, v) {
        ("J" | "Ljava/lang/Long;", HValue::Int(i)) => HValue::Long(i64::from(*i)),
        (
            "I" | "S" | "B" | "Ljava/lang/Integer;" | "Ljava/lang/Short;" | "Ljava/lang/Byte;",
            HValue::Long(l),
        ) if i32::try_from(*l).is_ok() => HValue::Int(*l as i32),
        ("D" | "F" | "Ljava/lang/Double;" | "Ljava/lang/Float;", HValue::Int(i)) => {
            HValue::Double(f64::from(*i))
        }
        ("D" | "F" | "Ljava/lang/Double;" | "Ljava/lang/Float;", HValue::Long(l)) => {
            HValue::Double(*l as f64)
        }
        ("Ljava/util/Date;", HValue::Int(i)) => HValue::Date(i64::from(*i)),
        ("Ljava/util/Date;", HValue::Long(l)) => HValue::Date(*l),
        (
            "Ljava/math/BigDecimal;",
            HValue::String(_) | HValue::Int(_) | HValue::Long(_) | HValue::Double(_),
        ) => json::to_value_as(&json::from_value(v), desc),
        _ => v.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::next_id;

    #[test]
    fn request_ids_are_unique_across_threads() {
        // More than a block per thread, so every thread comes back to the shared counter.
        let threads: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| (0..5_000).map(|_| next_id()).collect::<Vec<_>>()))
            .collect();
        let mut all: Vec<i64> = threads
            .into_iter()
            .flat_map(|t| t.join().expect("thread"))
            .collect();
        assert!(all.iter().all(|id| *id > 0));
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n, "an id was handed out twice");
    }
}
