//! `transport-bench`: measures rdubbo's transports side by side with their floor and ceiling.
//!
//! One run starts every server as its own process (so server CPU can be read from
//! `/proc/<pid>/stat`), then, round after round, measures each transport with the same client
//! loop shapes: a serial echo (latency percentiles) and a fixed number of calls kept in flight
//! for a fixed time (calls/s, client and server CPU µs per call). Medians over the rounds are
//! printed as a Markdown table for BENCHMARKS.md.
//!
//! - `raw-tcp`: a raw TCP ping-pong of a request-sized message (the floor).
//! - `hyper`: a bare hyper HTTP/1.1 server answering a fixed JSON-RPC response body to a bare
//!   hyper client (the ceiling for HTTP/1.1).
//! - `jsonrpc`: rdubbo's JSON-RPC client calling rdubbo's JSON-RPC server (`echo`).
//! - `dubbo`, `tri`: rdubbo's Dubbo and Triple (HTTP/2, Java's Hessian2 wrapper) clients
//!   calling rdubbo's servers of the same protocol (`echo`).
//! - `dubbo-tls`, `jsonrpc-tls`: the same as `dubbo` and `jsonrpc` over TLS 1.3 (rustls,
//!   P-256 certificate; not in the default set).
//! - `tonic`: tonic's gRPC client calling a tonic server (unary echo of a protobuf message
//!   holding the same string), the HTTP/2 gRPC stack of the Rust ecosystem for comparison.

mod procstats;
mod tls_certs;
mod tonic_peer;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use clap::{Parser, Subcommand, ValueEnum};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const SERVICE: &str = "org.apache.dubbo.demo.DemoService";
const REQUEST_BODY: &[u8] =
    br#"{"jsonrpc":"2.0","method":"echo","params":["hello, rdubbo"],"id":1}"#;
const RESPONSE_BODY: &[u8] = br#"{"jsonrpc":"2.0","id":1,"result":"hello, rdubbo"}"#;

#[derive(Parser)]
#[command(about = "Side-by-side transport benchmark for rdubbo")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve one transport (used by `run`, which spawns these as child processes).
    Server {
        /// Which server.
        kind: Kind,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
    /// Run the comparison and print a Markdown table.
    Run(RunArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// Transports to compare.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "raw-tcp,hyper,jsonrpc,dubbo,tri"
    )]
    kinds: Vec<Kind>,
    /// Serial calls per round (after 10% warm-up).
    #[arg(long, default_value_t = 5000)]
    serial_calls: u64,
    /// Calls kept in flight in the throughput phase.
    #[arg(long, default_value_t = 64)]
    inflight: usize,
    /// Seconds of the throughput phase per round.
    #[arg(long, default_value_t = 4.0)]
    seconds: f64,
    /// Rounds; each kind is measured once per round, interleaved, and medians are reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Kind {
    RawTcp,
    Hyper,
    Jsonrpc,
    Dubbo,
    Tri,
    Tonic,
    DubboTls,
    JsonrpcTls,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::RawTcp => "raw-tcp",
            Kind::Hyper => "hyper",
            Kind::Jsonrpc => "jsonrpc",
            Kind::Dubbo => "dubbo",
            Kind::Tri => "tri",
            Kind::Tonic => "tonic",
            Kind::DubboTls => "dubbo-tls",
            Kind::JsonrpcTls => "jsonrpc-tls",
        }
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.cmd {
        Cmd::Server { kind, listen } => rt.block_on(serve(kind, listen)),
        Cmd::Run(args) => rt.block_on(run(args)),
    }
}

// ---------------------------------------------------------------- servers

async fn serve(kind: Kind, listen: SocketAddr) -> Result<()> {
    match kind {
        Kind::RawTcp => {
            let listener = TcpListener::bind(listen).await?;
            announce(listener.local_addr()?);
            loop {
                let (mut stream, _) = listener.accept().await?;
                stream.set_nodelay(true)?;
                tokio::spawn(async move {
                    let mut buf = vec![0u8; REQUEST_BODY.len()];
                    while stream.read_exact(&mut buf).await.is_ok() {
                        if stream.write_all(&buf).await.is_err() {
                            break;
                        }
                    }
                });
            }
        }
        Kind::Hyper => {
            let listener = TcpListener::bind(listen).await?;
            announce(listener.local_addr()?);
            loop {
                let (stream, _) = listener.accept().await?;
                stream.set_nodelay(true)?;
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        |req: hyper::Request<hyper::body::Incoming>| async move {
                            let _body = req.into_body().collect().await?.to_bytes();
                            let mut resp =
                                hyper::Response::new(Full::new(Bytes::from_static(RESPONSE_BODY)));
                            resp.headers_mut().insert(
                                http::header::CONTENT_TYPE,
                                http::HeaderValue::from_static("application/json"),
                            );
                            Ok::<_, hyper::Error>(resp)
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        }
        Kind::DubboTls => {
            let (info, echo) = echo_service();
            let server = rdubbo_protocol_dubbo::DubboServer::builder()
                .config(rdubbo_protocol_dubbo::ServerConfig {
                    tls: Some(bench_server_tls()?),
                    ..Default::default()
                })
                .export(info, echo)
                .bind(listen)
                .await?;
            announce(server.local_addr());
            std::future::pending::<()>().await;
            Ok(())
        }
        Kind::JsonrpcTls => {
            let (info, echo) = echo_service();
            let server = rdubbo_protocol_jsonrpc::JsonRpcServer::builder()
                .config_with(|c| c.tls = bench_server_tls().ok())
                .export(SERVICE, info, echo)
                .bind(listen)
                .await?;
            announce(server.local_addr());
            std::future::pending::<()>().await;
            Ok(())
        }
        Kind::Jsonrpc => {
            let server = jsonrpc_server(listen).await?;
            announce(server.local_addr());
            std::future::pending::<()>().await;
            Ok(())
        }
        Kind::Dubbo => {
            let (info, echo) = echo_service();
            let server = rdubbo_protocol_dubbo::DubboServer::builder()
                .export(info, echo)
                .bind(listen)
                .await?;
            announce(server.local_addr());
            std::future::pending::<()>().await;
            Ok(())
        }
        Kind::Tonic => tonic_peer::serve(listen).await,
        Kind::Tri => {
            let (info, echo) = echo_service();
            let server = rdubbo::triple::TripleServer::builder()
                .export(info, echo)
                .bind(listen)
                .await?;
            announce(server.local_addr());
            std::future::pending::<()>().await;
            Ok(())
        }
    }
}

async fn jsonrpc_server(listen: SocketAddr) -> Result<rdubbo_protocol_jsonrpc::JsonRpcServer> {
    let (info, echo) = echo_service();
    Ok(rdubbo_protocol_jsonrpc::JsonRpcServer::builder()
        .export(SERVICE, info, echo)
        .bind(listen)
        .await?)
}

/// The echo service every rdubbo transport serves.
fn echo_service() -> (rdubbo_core::ServiceInfo, Arc<dyn rdubbo_core::Invoker>) {
    use rdubbo_core::{BoxFuture, Invocation, Invoker, Reply, RpcError, RpcResult, ServiceInfo};
    /// What a typed service does: decodes its `String` argument, answers it typed.
    struct Echo;
    impl Invoker for Echo {
        fn invoke(&self, inv: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
            let bad = || {
                RpcError::remote(
                    rdubbo_core::error::codes::INVALID_PARAMS,
                    "echo takes one string",
                )
            };
            let arg = if inv.args.len() == 1 {
                inv.args.decoder().read::<String>().map_err(|_| bad())
            } else {
                Err(bad())
            };
            Box::pin(std::future::ready(arg.map(Reply::typed)))
        }
    }
    let info = ServiceInfo {
        interface: SERVICE.into(),
        version: None,
        group: None,
        methods: vec!["echo".into()],
        ..Default::default()
    };
    (info, Arc::new(Echo))
}

fn announce(addr: SocketAddr) {
    println!("LISTENING {addr}");
}

// ---------------------------------------------------------------- clients

/// One connection or client able to make one call at a time.
enum Caller {
    Raw(TcpStream, Vec<u8>),
    Hyper(
        hyper::client::conn::http1::SendRequest<Full<Bytes>>,
        http::Uri,
    ),
    Jsonrpc(Arc<dyn rdubbo_core::Invoker>),
    Tonic(tonic_peer::Client),
}

impl Caller {
    async fn connect(
        kind: Kind,
        addr: SocketAddr,
        shared: &Option<Arc<dyn rdubbo_core::Invoker>>,
        tonic: &Option<tonic_peer::Client>,
    ) -> Result<Caller> {
        Ok(match kind {
            Kind::RawTcp => {
                let s = TcpStream::connect(addr).await?;
                s.set_nodelay(true)?;
                Caller::Raw(s, vec![0u8; REQUEST_BODY.len()])
            }
            Kind::Hyper => {
                let s = TcpStream::connect(addr).await?;
                s.set_nodelay(true)?;
                let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s)).await?;
                tokio::spawn(conn);
                let uri: http::Uri = format!("http://{addr}/{SERVICE}").parse()?;
                Caller::Hyper(sender, uri)
            }
            Kind::Jsonrpc | Kind::Dubbo | Kind::Tri | Kind::DubboTls | Kind::JsonrpcTls => {
                Caller::Jsonrpc(shared.clone().ok_or_else(|| anyhow!("no client"))?)
            }
            Kind::Tonic => Caller::Tonic(tonic.clone().ok_or_else(|| anyhow!("no client"))?),
        })
    }

    async fn call(&mut self) -> Result<()> {
        match self {
            Caller::Raw(s, buf) => {
                s.write_all(REQUEST_BODY).await?;
                s.read_exact(buf).await?;
            }
            Caller::Hyper(sender, uri) => {
                sender.ready().await?;
                let req = hyper::Request::post(uri.clone())
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .header(http::header::HOST, "127.0.0.1")
                    .body(Full::new(Bytes::from_static(REQUEST_BODY)))?;
                let resp = sender.send_request(req).await?;
                let body = resp.into_body().collect().await?.to_bytes();
                if body.is_empty() {
                    bail!("empty body");
                }
            }
            Caller::Jsonrpc(client) => {
                const TYPES: &[std::borrow::Cow<'static, str>] =
                    &[std::borrow::Cow::Borrowed("Ljava/lang/String;")];
                let mut inv = rdubbo_core::Invocation::new(
                    SERVICE,
                    "echo",
                    rdubbo_core::Args::typed((String::from("hello, rdubbo"),)),
                );
                inv.parameter_types = std::borrow::Cow::Borrowed(TYPES);
                client.invoke(inv).await.map_err(|e| anyhow!("{e}"))?;
            }
            Caller::Tonic(client) => tonic_peer::call(client).await?,
        }
        Ok(())
    }
}

fn dubbo_client(addr: SocketAddr) -> Result<Arc<dyn rdubbo_core::Invoker>> {
    let url: rdubbo_core::Url = format!("dubbo://{addr}/{SERVICE}?timeout=5000").parse()?;
    Ok(Arc::new(rdubbo_protocol_dubbo::DubboClient::new(&url)?))
}

fn tri_client(addr: SocketAddr) -> Result<Arc<dyn rdubbo_core::Invoker>> {
    let url: rdubbo_core::Url = format!("tri://{addr}/{SERVICE}?timeout=5000").parse()?;
    Ok(Arc::new(rdubbo::triple::TripleClient::new(&url)?))
}

fn bench_server_tls() -> Result<rdubbo_tls::ServerTls> {
    let chain = format!("{}{}", tls_certs::SERVER_CERT, tls_certs::CA);
    Ok(rdubbo_tls::ServerTls::from_pem(
        chain.as_bytes(),
        tls_certs::SERVER_KEY.as_bytes(),
        None,
    )?)
}

fn bench_client_tls() -> Result<rdubbo_tls::ClientTls> {
    Ok(rdubbo_tls::ClientTls::from_pem(
        tls_certs::CA.as_bytes(),
        None,
    )?)
}

fn dubbo_tls_client(addr: SocketAddr) -> Result<Arc<dyn rdubbo_core::Invoker>> {
    let url: rdubbo_core::Url =
        format!("dubbo://{addr}/{SERVICE}?timeout=5000&ssl-enabled=true").parse()?;
    let config = rdubbo_protocol_dubbo::ClientConfig {
        tls: Some(bench_client_tls()?),
        ..Default::default()
    }
    .from_url(&url);
    Ok(Arc::new(rdubbo_protocol_dubbo::DubboClient::with_config(
        &url, config,
    )?))
}

fn jsonrpc_tls_client(addr: SocketAddr) -> Result<Arc<dyn rdubbo_core::Invoker>> {
    let url: rdubbo_core::Url =
        format!("jsonrpc://{addr}/{SERVICE}?timeout=5000&ssl-enabled=true").parse()?;
    let config = rdubbo_protocol_jsonrpc::ClientConfig {
        tls: Some(bench_client_tls()?),
        ..Default::default()
    };
    Ok(Arc::new(
        rdubbo_protocol_jsonrpc::JsonRpcClient::with_config(&url, config)?,
    ))
}

fn jsonrpc_client(addr: SocketAddr) -> Result<Arc<dyn rdubbo_core::Invoker>> {
    let url: rdubbo_core::Url = format!("jsonrpc://{addr}/{SERVICE}?timeout=5000").parse()?;
    Ok(Arc::new(rdubbo_protocol_jsonrpc::JsonRpcClient::new(&url)?))
}

// ---------------------------------------------------------------- measurement

struct ServerProcess {
    child: tokio::process::Child,
    addr: SocketAddr,
}

impl ServerProcess {
    async fn spawn(kind: Kind) -> Result<ServerProcess> {
        let exe = std::env::current_exe()?;
        let mut child = tokio::process::Command::new(exe)
            .args(["server", kind.name()])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .context("server did not start in 30 s")??
            .context("server exited")?;
        let addr = line
            .strip_prefix("LISTENING ")
            .context("unexpected server output")?
            .parse()?;
        Ok(ServerProcess { child, addr })
    }

    fn cpu_seconds(&self) -> f64 {
        self.child.id().map(process_cpu_seconds).unwrap_or(0.0)
    }
}

/// utime + stime of a process, in seconds.
fn process_cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SAFETY: sysconf has no preconditions.
    #[allow(unsafe_code)]
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

fn self_cpu_seconds() -> f64 {
    procstats::cpu_ms() / 1e3
}

#[derive(Clone, Copy, Default)]
struct Sample {
    p50_us: f64,
    p90_us: f64,
    p99_us: f64,
    calls_per_sec: f64,
    client_cpu_us: f64,
    server_cpu_us: f64,
    errors: u64,
}

async fn measure(kind: Kind, server: &ServerProcess, args: &RunArgs) -> Result<Sample> {
    let shared = match kind {
        Kind::Jsonrpc => Some(jsonrpc_client(server.addr)?),
        Kind::Dubbo => Some(dubbo_client(server.addr)?),
        Kind::DubboTls => Some(dubbo_tls_client(server.addr)?),
        Kind::JsonrpcTls => Some(jsonrpc_tls_client(server.addr)?),
        Kind::Tri => Some(tri_client(server.addr)?),
        _ => None,
    };
    // One tonic channel (one HTTP/2 connection) for every caller, as the rdubbo clients.
    let tonic = match kind {
        Kind::Tonic => Some(tonic_peer::connect(server.addr).await?),
        _ => None,
    };
    // Serial latency.
    let mut caller = Caller::connect(kind, server.addr, &shared, &tonic).await?;
    for _ in 0..args.serial_calls / 10 {
        caller.call().await?;
    }
    let mut hist = Histogram::<u64>::new(3)?;
    for _ in 0..args.serial_calls {
        let t = Instant::now();
        caller.call().await?;
        hist.record(t.elapsed().as_nanos() as u64)?;
    }
    drop(caller);

    // Throughput with N in flight.
    let calls = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut callers = Vec::with_capacity(args.inflight);
    for _ in 0..args.inflight {
        let mut c = Caller::connect(kind, server.addr, &shared, &tonic).await?;
        c.call().await?; // connect and warm every connection
        callers.push(c);
    }
    let cpu_client0 = self_cpu_seconds();
    let cpu_server0 = server.cpu_seconds();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.seconds);
    let mut tasks = Vec::new();
    for mut c in callers {
        let (calls, errors, stop) = (calls.clone(), errors.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match c.call().await {
                    Ok(()) => calls.fetch_add(1, Ordering::Relaxed),
                    Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                };
                if Instant::now() >= deadline {
                    break;
                }
            }
        }));
    }
    tokio::time::sleep_until(deadline.into()).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let n = calls.load(Ordering::Relaxed).max(1) as f64;
    let cpu_client = self_cpu_seconds() - cpu_client0;
    let cpu_server = server.cpu_seconds() - cpu_server0;
    Ok(Sample {
        p50_us: hist.value_at_quantile(0.50) as f64 / 1e3,
        p90_us: hist.value_at_quantile(0.90) as f64 / 1e3,
        p99_us: hist.value_at_quantile(0.99) as f64 / 1e3,
        calls_per_sec: n / elapsed,
        client_cpu_us: cpu_client / n * 1e6,
        server_cpu_us: cpu_server / n * 1e6,
        errors: errors.load(Ordering::Relaxed),
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

async fn run(args: RunArgs) -> Result<()> {
    let mut servers = Vec::new();
    for &kind in &args.kinds {
        servers.push((kind, ServerProcess::spawn(kind).await?));
    }
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); servers.len()];
    for round in 0..args.rounds {
        for (i, (kind, server)) in servers.iter().enumerate() {
            let s = measure(*kind, server, &args).await?;
            eprintln!(
                "round {} {:>8}: p50 {:>7.1} µs  p99 {:>7.1} µs  {:>9.0} calls/s  cpu client {:>5.1} µs/call server {:>5.1} µs/call  errors {}",
                round + 1,
                kind.name(),
                s.p50_us,
                s.p99_us,
                s.calls_per_sec,
                s.client_cpu_us,
                s.server_cpu_us,
                s.errors
            );
            samples[i].push(s);
        }
    }
    let floor = median(samples[0].iter().map(|s| s.p50_us).collect());
    let jsonrpc_tput = servers
        .iter()
        .position(|(k, _)| *k == Kind::Jsonrpc)
        .map(|i| median(samples[i].iter().map(|s| s.calls_per_sec).collect()));
    let hyper_tput = servers
        .iter()
        .position(|(k, _)| *k == Kind::Hyper)
        .map(|i| median(samples[i].iter().map(|s| s.calls_per_sec).collect()));
    println!(
        "\nMedians of {} rounds; serial: {} calls; throughput: {} in flight for {} s.\n",
        args.rounds, args.serial_calls, args.inflight, args.seconds
    );
    println!("| transport | serial p50 µs | p90 µs | p99 µs | p50 / {} | calls/s ({} in flight) | vs hyper | vs jsonrpc | client CPU µs/call | server CPU µs/call | errors |", servers[0].0.name(), args.inflight);
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for (i, (kind, _)) in servers.iter().enumerate() {
        let m = |f: fn(&Sample) -> f64| median(samples[i].iter().map(f).collect());
        let tput = m(|s| s.calls_per_sec);
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.2}× | {:.0} | {} | {} | {:.1} | {:.1} | {} |",
            kind.name(),
            m(|s| s.p50_us),
            m(|s| s.p90_us),
            m(|s| s.p99_us),
            m(|s| s.p50_us) / floor,
            tput,
            hyper_tput
                .map(|h| format!("{:.0}%", tput / h * 100.0))
                .unwrap_or_else(|| "–".into()),
            jsonrpc_tput
                .map(|j| format!("{:.2}×", tput / j))
                .unwrap_or_else(|| "–".into()),
            m(|s| s.client_cpu_us),
            m(|s| s.server_cpu_us),
            samples[i].iter().map(|s| s.errors).sum::<u64>(),
        );
    }
    Ok(())
}
