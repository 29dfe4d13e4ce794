//! QoS commands on a loopback port, after Dubbo's: a telnet-style line protocol (prompt
//! `dubbo>`) and plain HTTP (`curl http://127.0.0.1:22222/ls`) on the same port.
//!
//! Commands: `help`, `ls`, `ps`, `invoke <interface>.<method>(<json args>)`,
//! `online [pattern]`, `offline [pattern]`, `ready`, `live`, `quit`.
//! Over HTTP the command is the path and its argument the (URL-encoded) query:
//! `GET /ls`, `POST /offline?org.example.Greeter`,
//! `POST /invoke?org.example.Greeter.sayHello(%22x%22)`.
//! Over `tri`, `offline` and `online` also set the gRPC health (`grpc.health.v1.Health`)
//! of the matching services, and of the server as a whole (`""`: `NOT_SERVING` once none
//! of its services is online), so health probes and `Watch` streams follow them.
//! `ready` and `live` answer 200 or 503; an unknown command or a bad argument answers 400
//! (telnet: a line starting with `ERROR:`), and the connection and the application go on.
//!
//! Web pages cannot drive it: commands that change state (`online`, `offline`, `invoke`)
//! are taken over telnet, or over HTTP only as a `POST` that carries no foreign `Origin`
//! (a page's cross-site request does) and whose `Host` is loopback or the QoS address (a
//! DNS-rebound name is not); every HTTP request must name such a `Host`. Slots are
//! bounded: at most [`MAX_CONNECTIONS`] connections, of which at most [`MAX_SESSIONS`]
//! telnet sessions (closed after [`SESSION_IDLE`] without a line), and an HTTP request
//! must arrive whole within [`REQUEST_DEADLINE`], so idle sessions never keep `/live` and
//! `/ready` from being answered.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use super::slots::{Slot, Slots, Stage};

use super::{lock, AppState, StateRef};
use crate::Invocation;

const PROMPT: &str = "dubbo>";
const MAX_LINE: usize = 64 * 1024;
/// Connections served at once; more are closed at once.
pub const MAX_CONNECTIONS: usize = 64;
/// Telnet sessions at once (the rest of the slots stay free for HTTP probes).
pub const MAX_SESSIONS: usize = 16;
/// A telnet session with no line for this long is closed.
pub const SESSION_IDLE: Duration = Duration::from_secs(120);
/// An HTTP request (line and headers) must arrive within this.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// Commands that change the application's state.
const MUTATING: [&str; 3] = ["online", "offline", "invoke"];

pub(crate) async fn serve(
    listen: SocketAddr,
    state: StateRef,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let slots = Slots::new(MAX_CONNECTIONS);
    let sessions = Arc::new(tokio::sync::Semaphore::new(MAX_SESSIONS));
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            // At the limit the oldest connection that said nothing (else the oldest idle
            // one) makes room: idle connections cannot lock `/live` out.
            let Some(slot) = slots.acquire() else {
                tracing::warn!(%peer, "every QoS connection is busy; closing the new one");
                continue;
            };
            let (state, sessions) = (state.clone(), sessions.clone());
            tokio::spawn(async move {
                tokio::select! {
                    ended = connection(stream, state, sessions, &slot) => {
                        if let Err(e) = ended {
                            tracing::debug!(%peer, error = %e, "QoS connection ended");
                        }
                    }
                    _ = slot.evicted() => {
                        tracing::debug!(%peer, "idle QoS connection closed to make room");
                    }
                }
            });
        }
    });
    Ok((addr, task))
}

/// The outcome of a command: success (HTTP 200) or not (HTTP 400 / 503), and the text.
struct Answer {
    status: u16,
    text: String,
}

impl Answer {
    fn ok(text: impl Into<String>) -> Answer {
        Answer {
            status: 200,
            text: text.into(),
        }
    }
    fn bad(text: impl Into<String>) -> Answer {
        Answer {
            status: 400,
            text: format!("ERROR: {}", text.into()),
        }
    }
}

async fn connection(
    stream: TcpStream,
    state: StateRef,
    sessions: Arc<tokio::sync::Semaphore>,
    slot: &Slot,
) -> std::io::Result<()> {
    let local = stream.local_addr()?;
    // HTTP or telnet: look at the first bytes without consuming them (a client may send
    // its request line in pieces: "GET" then " /ls …").
    let is_http = match tokio::time::timeout(Duration::from_millis(500), sniff_http(&stream)).await
    {
        Ok(Ok(Some(is_http))) => is_http,
        Ok(Ok(None)) | Ok(Err(_)) => return Ok(()),
        Err(_) => false, // nothing (decisive) sent yet: a telnet user waiting for the prompt
    };
    let mut reader = BufReader::new(stream);
    slot.set(Stage::Idle);
    if is_http {
        return match tokio::time::timeout(REQUEST_DEADLINE, read_http(&mut reader, local)).await {
            Ok(Ok(request)) => {
                slot.set(Stage::Busy);
                answer_http(reader, &state, request).await
            }
            Ok(Err(e)) => Err(e),
            Err(_) => respond(reader, 408, "request not received in time\n".into()).await,
        };
    }
    let Ok(_session) = sessions.try_acquire_owned() else {
        reader
            .get_mut()
            .write_all(b"ERROR: too many QoS sessions\r\n")
            .await?;
        return Ok(());
    };
    reader.get_mut().write_all(PROMPT.as_bytes()).await?;
    let mut line = Vec::new();
    loop {
        line.clear();
        let mut limited = (&mut reader).take(MAX_LINE as u64 + 1);
        let read = limited.read_until(b'\n', &mut line);
        let Ok(n) = tokio::time::timeout(SESSION_IDLE, read).await else {
            reader
                .get_mut()
                .write_all(b"\r\nERROR: idle session closed\r\n")
                .await?;
            return Ok(());
        };
        let n = n?;
        if n == 0 {
            return Ok(());
        }
        if line.len() > MAX_LINE {
            reader
                .get_mut()
                .write_all(b"ERROR: line too long\r\n")
                .await?;
            close_after_answer(reader).await;
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line);
        // Telnet clients may send control sequences (IAC …); keep the printable text.
        let text: String = text
            .chars()
            .filter(|c| !c.is_control() || *c == ' ')
            .collect();
        let text = text.trim();
        if text.is_empty() {
            reader.get_mut().write_all(PROMPT.as_bytes()).await?;
            continue;
        }
        slot.set(Stage::Busy);
        let (cmd, args) = text.split_once(' ').unwrap_or((text, ""));
        if matches!(cmd, "quit" | "exit") {
            reader.get_mut().write_all(b"BYE!\r\n").await?;
            return Ok(());
        }
        let answer = run(&state, cmd, args.trim()).await;
        let mut out = answer.text.replace('\n', "\r\n");
        if !out.ends_with("\r\n") {
            out.push_str("\r\n");
        }
        out.push_str(PROMPT);
        reader.get_mut().write_all(out.as_bytes()).await?;
        slot.set(Stage::Idle);
    }
}

/// Closes a session that still has unread input: send FIN, then discard what the peer
/// is still sending (bounded in bytes and time), so the close is not a reset that could
/// drop the answer before the peer reads it.
async fn close_after_answer(mut reader: BufReader<TcpStream>) {
    let _ = reader.get_mut().shutdown().await;
    let mut sink = [0u8; 8192];
    let mut left: usize = 1 << 20;
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while left > 0 {
            match reader.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

const HTTP_METHODS: [&str; 3] = ["GET ", "POST ", "HEAD "];

/// Whether the connection starts with an HTTP request line, looking at (not consuming) the
/// first bytes until they decide it; `None` when the peer closed first.
async fn sniff_http(stream: &TcpStream) -> std::io::Result<Option<bool>> {
    let mut buf = [0u8; 8];
    loop {
        let n = stream.peek(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        let got = &buf[..n];
        if HTTP_METHODS.iter().any(|m| got.starts_with(m.as_bytes())) {
            return Ok(Some(true));
        }
        if !HTTP_METHODS.iter().any(|m| m.as_bytes().starts_with(got)) {
            return Ok(Some(false));
        }
        // A prefix of a method ("GET" without its space yet): the rest is on its way.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// What an HTTP request to the QoS port says.
struct HttpRequest {
    method: String,
    target: String,
    /// Whether `Host` names loopback or this port's address (`None`: no `Host`).
    host_ok: Option<bool>,
    /// Whether an `Origin` came that is not loopback.
    foreign_origin: bool,
}

/// Reads the request line and the headers (bounded).
async fn read_http(
    reader: &mut BufReader<TcpStream>,
    local: SocketAddr,
) -> std::io::Result<HttpRequest> {
    let mut request_line = Vec::new();
    reader
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut request_line)
        .await?;
    let line = String::from_utf8_lossy(&request_line);
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("GET").to_string();
    let target = parts.next().unwrap_or("/").to_string();
    let mut request = HttpRequest {
        method,
        target,
        host_ok: None,
        foreign_origin: false,
    };
    let mut total = 0usize;
    loop {
        let mut h = Vec::new();
        let n = reader
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut h)
            .await?;
        total += n;
        if n == 0 || h == b"\r\n" || h == b"\n" || total > MAX_LINE {
            break;
        }
        let h = String::from_utf8_lossy(&h);
        let Some((name, value)) = h.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("host") {
            request.host_ok = Some(is_local_host(value, local));
        } else if name.eq_ignore_ascii_case("origin") {
            let host = value
                .split_once("://")
                .map_or(value, |(_, rest)| rest)
                .trim_end_matches('/');
            request.foreign_origin = value == "null" || !is_local_host(host, local);
        }
    }
    Ok(request)
}

/// Whether `host[:port]` is loopback (`127.x`, `localhost`, `[::1]`) or the address the
/// QoS port listens on.
fn is_local_host(host: &str, local: SocketAddr) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split_once(']').map_or(rest, |(h, _)| h)
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match name.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback() || ip == local.ip(),
        Err(_) => false,
    }
}

async fn answer_http(
    reader: BufReader<TcpStream>,
    state: &StateRef,
    request: HttpRequest,
) -> std::io::Result<()> {
    let (path, query) = request
        .target
        .split_once('?')
        .unwrap_or((request.target.as_str(), ""));
    let cmd = path.trim_matches('/');
    if request.host_ok == Some(false) {
        return respond(reader, 403, "ERROR: Host is not this QoS address\n".into()).await;
    }
    if MUTATING.contains(&cmd) {
        if request.method != "POST" {
            return respond(
                reader,
                405,
                format!("ERROR: `{cmd}` changes the application: use POST (or telnet)\n"),
            )
            .await;
        }
        if request.foreign_origin {
            return respond(
                reader,
                403,
                format!("ERROR: `{cmd}` is refused from a web page of another origin\n"),
            )
            .await;
        }
    }
    let answer = match (cmd, percent_decode(query)) {
        (_, Err(e)) => Answer::bad(e),
        ("", Ok(_)) => run(state, "help", "").await,
        (cmd, Ok(args)) => run(state, cmd, args.trim()).await,
    };
    respond(reader, answer.status, answer.text).await
}

/// Writes a plain-text response and closes.
async fn respond(
    mut reader: BufReader<TcpStream>,
    status: u16,
    mut body: String,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        403 => "Forbidden",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        503 => "Service Unavailable",
        _ => "Bad Request",
    };
    if !body.ends_with('\n') {
        body.push('\n');
    }
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    reader.get_mut().write_all(response.as_bytes()).await?;
    reader.get_mut().shutdown().await
}

fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad percent-encoding at byte {i} of the query"))?;
                out.push(hex);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| "the query is not UTF-8".to_string())
}

const HELP: &str = "\
help                                   this list
ls                                     services provided and referenced, with their providers
ps                                     listening servers and their connections
invoke <interface>.<method>(<args>)    call a provided service here; args as JSON values
online [pattern]                       register provided services (all, or matching pattern)
offline [pattern]                      unregister provided services, keep serving
                                       (tri: their gRPC health turns NOT_SERVING)
ready                                  true when the application serves traffic
live                                   true while the process runs
quit                                   close this session (telnet)";

async fn run(state: &StateRef, cmd: &str, args: &str) -> Answer {
    let Some(state) = state.get() else {
        return match (cmd, state.started()) {
            ("live", _) => Answer::ok("true"),
            ("help", _) => Answer::ok(HELP),
            (_, false) => Answer {
                status: 503,
                text: "the application is starting".into(),
            },
            (_, true) => Answer {
                status: 503,
                text: "the application is stopping".into(),
            },
        };
    };
    match cmd {
        "help" => Answer::ok(HELP),
        "ls" => Answer::ok(ls(&state)),
        "ps" => Answer::ok(ps(&state)),
        "invoke" => invoke(&state, args).await,
        "online" | "offline" => {
            let n = state.set_online(args, cmd == "online").await;
            let matching = state
                .exports
                .iter()
                .filter(|e| args.is_empty() || e.url.service_key().contains(args) || e.id == args)
                .count();
            if matching == 0 {
                Answer::bad(format!("no provided service matches `{args}`"))
            } else {
                Answer::ok(format!("OK ({n} changed, {matching} matching)"))
            }
        }
        "ready" => {
            let ready = state.ready.load(Ordering::SeqCst)
                && state
                    .exports
                    .iter()
                    .all(|e| e.online.load(Ordering::SeqCst));
            Answer {
                status: if ready { 200 } else { 503 },
                text: ready.to_string(),
            }
        }
        "live" => Answer::ok("true"),
        other => Answer::bad(format!("unknown command `{other}`; try `help`")),
    }
}

fn table(title: &str, headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.len());
        }
    }
    let sep = format!(
        "+{}+",
        widths
            .iter()
            .map(|w| "-".repeat(w + 2))
            .collect::<Vec<_>>()
            .join("+")
    );
    let line = |cells: Vec<String>| {
        format!(
            "|{}|",
            cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!(" {c:<w$} "))
                .collect::<Vec<_>>()
                .join("|")
        )
    };
    let mut out = format!("{title}\n{sep}\n");
    out += &line(headers.iter().map(|h| h.to_string()).collect());
    out += &format!("\n{sep}\n");
    for r in rows {
        out += &line(r.clone());
        out.push('\n');
    }
    out += &sep;
    out
}

fn ls(state: &AppState) -> String {
    let provided: Vec<Vec<String>> = state
        .exports
        .iter()
        .map(|e| {
            vec![
                e.url.service_key(),
                e.protocol.clone(),
                e.url.address(),
                if e.online.load(Ordering::SeqCst) {
                    "Y"
                } else {
                    "N"
                }
                .into(),
            ]
        })
        .collect();
    let referenced: Vec<Vec<String>> = state
        .references
        .iter()
        .map(|(id, r)| {
            let dir = r.directory();
            let providers = dir.providers();
            let addrs: Vec<String> = providers
                .iter()
                .map(|p| format!("{}://{}", p.url.protocol(), p.url.address()))
                .collect();
            vec![
                id.clone(),
                dir.service_key(),
                providers.len().to_string(),
                addrs.join(", "),
            ]
        })
        .collect();
    format!(
        "{}\n{}",
        table(
            "As Provider side:",
            &["Provider Service Name", "Protocol", "Address", "PUB"],
            &provided
        ),
        table(
            "As Consumer side:",
            &["Reference", "Consumer Service Name", "NUM", "Providers"],
            &referenced
        )
    )
}

fn ps(state: &AppState) -> String {
    let rows: Vec<Vec<String>> = lock(&state.providers)
        .iter()
        .map(|(id, p, addr)| {
            vec![
                id.clone(),
                addr.to_string(),
                p.as_ref().map_or(0, |p| p.connections()).to_string(),
            ]
        })
        .collect();
    table("Servers:", &["Protocol", "Address", "Connections"], &rows)
}

impl AppState {
    /// Makes the gRPC health of each `tri` server follow what is online (QoS `online` /
    /// `offline`, [`Application::online`](super::Application::online) / `offline`, the
    /// shutdown): a service is `SERVING` while one of its exports on that server is
    /// registered, `NOT_SERVING` once all are offline; the server as a whole (`""`) is
    /// `SERVING` while at least one of its services is, `NOT_SERVING` once none is (a
    /// probe then takes the whole port out, as the registries do with the application
    /// instance). `Watch` streams see each change.
    #[cfg(feature = "triple")]
    pub(crate) fn sync_health(&self) {
        use crate::grpc::ServingStatus;
        let status = |on: bool| {
            if on {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            }
        };
        for (_, provider, addr) in lock(&self.providers).iter() {
            let Some(health) = provider.as_ref().and_then(|p| p.health()) else {
                continue;
            };
            let mut services: std::collections::BTreeMap<&str, bool> = Default::default();
            for e in &self.exports {
                if e.url.port() == Some(addr.port()) && e.protocol == "tri" {
                    *services.entry(e.url.path()).or_default() |= e.online.load(Ordering::SeqCst);
                }
            }
            // Health before the server: a probe never sees `""` serving with none of its
            // services serving.
            let any = services.values().any(|on| *on);
            if !any {
                health.set("", ServingStatus::NotServing);
            }
            for (service, on) in &services {
                health.set(service, status(*on));
            }
            if any {
                health.set("", ServingStatus::Serving);
            }
        }
    }

    /// Without Triple there is no gRPC health to follow.
    #[cfg(not(feature = "triple"))]
    pub(crate) fn sync_health(&self) {}
}

/// `invoke org.example.Greeter.sayHello("world", 3)`.
async fn invoke(state: &AppState, args: &str) -> Answer {
    let Some(open) = args.find('(') else {
        return Answer::bad("usage: invoke <interface>.<method>(<args as JSON values>)");
    };
    if !args.ends_with(')') {
        return Answer::bad(
            "usage: invoke <interface>.<method>(<args as JSON values>) — missing `)`",
        );
    }
    let target = args[..open].trim();
    let Some((interface, method)) = target.rsplit_once('.') else {
        return Answer::bad(format!("`{target}` is not <interface>.<method>"));
    };
    let list = &args[open + 1..args.len() - 1];
    let values: Vec<serde_json::Value> = match serde_json::from_str(&format!("[{list}]")) {
        Ok(v) => v,
        Err(e) => return Answer::bad(format!("arguments are not JSON values: {e}")),
    };
    let Some(invoker) = state.local.get(interface) else {
        let known: Vec<&String> = state.local.keys().collect();
        return Answer::bad(format!(
            "no provided service `{interface}` (provided: {})",
            known
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    };
    let export = state.exports.iter().find(|e| e.url.path() == interface);
    let mut inv = Invocation::new(interface, method, crate::Args::Json(values))
        .with_timeout(Some(Duration::from_secs(10)));
    if let Some(e) = export {
        inv = inv.with_version(e.url.version()).with_group(e.url.group());
    }
    let started = Instant::now();
    match invoker
        .invoke(inv)
        .await
        .and_then(|r| r.to_json().map_err(crate::RpcError::Codec))
    {
        Ok(v) => Answer::ok(format!(
            "result: {v}\nelapsed: {} ms.",
            started.elapsed().as_millis()
        )),
        Err(e) => Answer::bad(format!("invoke failed: {e}")),
    }
}
