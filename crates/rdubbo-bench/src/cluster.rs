//! `cluster-bench`: what the number of providers costs a consumer.
//!
//! - `run`: consumer CPU per call through a ZooKeeper registry (Debian package
//!   `zookeeper`, started on a loopback port of its own) with 10 and 1,000 registered
//!   providers (`--protocol jsonrpc`, the default: pooled HTTP/1.1 connections, one per
//!   call in flight; or `dubbo`: one multiplexed connection per provider). Every provider
//!   URL has an address of its own (`127.0.x.y`, one port): one echo server, in a child
//!   process, listens on all of them, so the consumer keeps connections per provider as it
//!   would with real ones. Calls are kept in flight for a fixed time per round, after a
//!   warm-up that reaches every provider; consumer CPU (this process: user + system) per
//!   call is the median over the rounds. Each round is measured twice, alternately: through
//!   the reference (cluster layer included), and straight on the same providers' protocol
//!   invokers picked at random (`transport only`: the same connections, no cluster code);
//!   the difference is what the cluster layer costs per call. A third measure, alternated
//!   with both, is the floor (`raw TCP`): the same number of connections, one per provider
//!   address, to a plain echo listener in the same child process; a call writes 32 bytes on
//!   a connection picked at random and reads them back. It is what any client with one
//!   connection per provider pays (syscalls, wake-ups, kernel socket state) with no
//!   protocol at all, so its growth from 10 to 1,000 providers is the growth no protocol
//!   can get under. With more calls in flight than connections, calls wait for one: read
//!   the serial figures (`--concurrency 1`) for the floor of the growth.
//! - `memory`: resident memory of a directory per provider (protocol invokers that hold
//!   nothing), with routes and balancer tables made.
//!
//! `cargo run --release -p rdubbo-bench --bin cluster-bench -- run`

mod procstats;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use rdubbo::{BoxFuture, Invocation, Invoker, Reply, RpcError, RpcResult, ServiceInfo, Url, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

use procstats::{cpu_ms, process_cpu_seconds, rss_kib};

#[derive(Parser)]
#[command(
    name = "cluster-bench",
    about = "consumer cost per call against the number of providers"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Consumer CPU per call through a ZooKeeper registry, by number of providers.
    Run {
        /// Numbers of registered providers, comma-separated.
        #[arg(long, default_value = "10,1000", value_delimiter = ',')]
        providers: Vec<usize>,
        /// Calls kept in flight.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Seconds per round.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Rounds per size (medians are reported).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Load balancer of the reference.
        #[arg(long, default_value = "random")]
        loadbalance: String,
        /// Protocol of the providers: `jsonrpc` or `dubbo`.
        #[arg(long, default_value = "jsonrpc")]
        protocol: String,
        /// Also measure each size above this with a condition rule (in the registry's
        /// `routers`) that keeps this many providers: the cost of the providers a call
        /// does not go to. 0: no such rows.
        #[arg(long, default_value_t = 10)]
        route_to: usize,
        /// Take only this measure (`reference`, `transport` or `floor`), to profile it
        /// alone; the others' columns say NaN.
        #[arg(long)]
        only: Option<String>,
    },
    /// Resident memory of a directory per provider.
    Memory {
        #[arg(long, default_value_t = 10_000)]
        providers: usize,
    },
    /// (internal) the echo server of `run`.
    Server {
        /// Interfaces to export, comma-separated.
        #[arg(long, value_delimiter = ',')]
        interfaces: Vec<String>,
        /// `jsonrpc` or `dubbo`.
        #[arg(long, default_value = "jsonrpc")]
        protocol: String,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.cmd {
        Cmd::Server {
            interfaces,
            protocol,
        } => rt.block_on(serve(interfaces, &protocol)),
        Cmd::Memory { providers } => memory(providers),
        Cmd::Run {
            providers,
            concurrency,
            seconds,
            rounds,
            loadbalance,
            protocol,
            route_to,
            only,
        } => {
            if !["jsonrpc", "dubbo"].contains(&protocol.as_str()) {
                bail!("--protocol: jsonrpc or dubbo, not {protocol}");
            }
            if let Some(m) = only.as_deref() {
                if !["reference", "transport", "floor"].contains(&m) {
                    bail!("--only: reference, transport or floor, not {m}");
                }
            }
            if concurrency == 0 || rounds == 0 || !seconds.is_finite() || seconds <= 0.0 {
                bail!("--concurrency, --rounds and --seconds must be positive");
            }
            let zk = rdubbo_testkit::ZkServer::start();
            let result = rt.block_on(run(
                &zk.address(),
                &providers,
                concurrency,
                Duration::from_secs_f64(seconds),
                rounds,
                &loadbalance,
                &protocol,
                route_to,
                only.as_deref(),
            ));
            drop(zk);
            result
        }
    }
}

fn interface(n: usize, route_to: Option<usize>) -> String {
    match route_to {
        None => format!("org.apache.dubbo.bench.Cluster{n}"),
        Some(k) => format!("org.apache.dubbo.bench.Cluster{n}To{k}"),
    }
}

/// Answers the first argument.
struct Echo;

impl Invoker for Echo {
    fn invoke(&self, inv: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        let arg = inv
            .args
            .value(0)
            .ok_or_else(|| RpcError::Invalid("echo takes one argument".into()));
        Box::pin(std::future::ready(arg.map(Reply::Value)))
    }
}

async fn serve(interfaces: Vec<String>, protocol: &str) -> Result<()> {
    let exports = interfaces
        .into_iter()
        .map(|name| rdubbo::Export {
            info: ServiceInfo {
                interface: name,
                version: None,
                group: None,
                methods: vec!["echo".into()],
                ..Default::default()
            },
            invoker: Arc::new(Echo),
        })
        .collect();
    // The server stands for one provider per address, each with a connection limit of its
    // own: all of them together must not make the one process evict connections (JSON-RPC's
    // default limit, 1,024, is about the connections 1,000 providers get from one consumer).
    let max_connections = 1_000_000;
    let protocol: Box<dyn rdubbo::Protocol> = match protocol {
        "dubbo" => Box::new(rdubbo::dubbo::DubboProtocol::default().with_server_config(
            rdubbo::dubbo::ServerConfig {
                max_connections,
                ..Default::default()
            },
        )),
        _ => Box::new(
            rdubbo::jsonrpc::JsonRpcProtocol::default().with_server_config(
                rdubbo::jsonrpc::ServerConfig {
                    max_connections,
                    ..Default::default()
                },
            ),
        ),
    };
    // Every 127.0.0.0/8 address reaches a listener on 0.0.0.0.
    let server = protocol.serve("0.0.0.0:0".parse()?, exports).await?;
    let raw = tokio::net::TcpListener::bind("0.0.0.0:0").await?;
    println!("LISTENING {} {}", server.local_addr(), raw.local_addr()?);
    tokio::spawn(raw_echo(raw));
    // Served until the process is killed.
    std::future::pending::<()>().await;
    drop(server);
    Ok(())
}

/// The floor's listener: every connection gets back what it sends.
async fn raw_echo(listener: tokio::net::TcpListener) {
    while let Ok((mut conn, _)) = listener.accept().await {
        let _ = conn.set_nodelay(true);
        tokio::spawn(async move {
            let (mut rd, mut wr) = conn.split();
            let _ = tokio::io::copy(&mut rd, &mut wr).await;
        });
    }
}

/// The echo server as a child process.
struct ServerProcess {
    child: tokio::process::Child,
    port: u16,
    raw_port: u16,
}

impl ServerProcess {
    async fn spawn(interfaces: &[String], protocol: &str) -> Result<ServerProcess> {
        let mut child = tokio::process::Command::new(std::env::current_exe()?)
            .args(["server", "--protocol", protocol])
            .args(["--interfaces", &interfaces.join(",")])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().context("no stdout")?;
        let line = tokio::time::timeout(
            Duration::from_secs(30),
            BufReader::new(stdout).lines().next_line(),
        )
        .await
        .context("server did not start in 30 s")??
        .context("server exited")?;
        let (addr, raw) = line
            .strip_prefix("LISTENING ")
            .and_then(|rest| rest.split_once(' '))
            .context("unexpected server output")?;
        let (addr, raw): (SocketAddr, SocketAddr) = (addr.parse()?, raw.parse()?);
        Ok(ServerProcess {
            child,
            port: addr.port(),
            raw_port: raw.port(),
        })
    }

    fn cpu_seconds(&self) -> f64 {
        self.child.id().map(process_cpu_seconds).unwrap_or(0.0)
    }
}

/// The host of provider `i`.
fn host(i: usize) -> String {
    format!("127.0.{}.{}", 1 + i / 250, 1 + i % 250)
}

/// Provider `i` of `iface`, as a Dubbo provider registers itself (an hour ago: warmed up).
fn provider_url(
    protocol: &str,
    iface: &str,
    i: usize,
    port: u16,
    registered_ms: u64,
) -> Result<Url> {
    Ok(format!(
        "{protocol}://{}:{port}/{iface}?anyhost=true&application=bench-provider\
         &deprecated=false&dubbo=2.0.2&dynamic=true&generic=false&interface={iface}\
         &methods=echo&pid=1&release=3.2.0&service-name-mapping=true&side=provider\
         &timestamp={registered_ms}",
        host(i)
    )
    .parse()?)
}

struct Figures {
    calls_per_s: f64,
    consumer_cpu_us: f64,
    server_cpu_us: f64,
    /// Consumer CPU per call on the same invokers without the cluster layer.
    direct_cpu_us: f64,
    /// Consumer CPU per call of the raw TCP floor (NaN: not measured).
    floor_cpu_us: f64,
}

/// The protocol invokers of the providers a call may go to, one picked at random per
/// call (uniformly, as `random` does with equal weights): the transport without the
/// cluster layer.
struct Direct {
    invokers: Vec<Arc<dyn Invoker>>,
    seed: AtomicU64,
}

/// An index below `n`, uniform enough to spread calls: splitmix64 over a shared counter.
fn spread(seed: &AtomicU64, n: usize) -> usize {
    let mut z = seed
        .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z % n as u64) as usize
}

impl Invoker for Direct {
    fn invoke(&self, inv: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        self.invokers[spread(&self.seed, self.invokers.len())].invoke(inv)
    }
}

/// The floor: one plain TCP connection per provider address; a call takes a connection
/// picked at random (waiting while another call has it), writes 32 bytes and reads them
/// back.
struct Floor {
    conns: Vec<tokio::sync::Mutex<tokio::net::TcpStream>>,
    seed: AtomicU64,
}

impl Floor {
    async fn connect(n: usize, port: u16) -> Result<Floor> {
        let mut conns = Vec::with_capacity(n);
        for i in 0..n {
            let conn = tokio::net::TcpStream::connect((host(i).as_str(), port)).await?;
            conn.set_nodelay(true)?;
            conns.push(tokio::sync::Mutex::new(conn));
        }
        Ok(Floor {
            conns,
            seed: AtomicU64::new(0),
        })
    }

    /// Keeps `concurrency` calls going until `duration` is up; returns the number of calls.
    async fn load(self: &Arc<Self>, concurrency: usize, duration: Duration) -> Result<u64> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let deadline = Instant::now() + duration;
        let mut tasks = Vec::with_capacity(concurrency);
        for _ in 0..concurrency {
            let floor = self.clone();
            tasks.push(tokio::spawn(async move {
                let (request, mut answer) = ([7u8; 32], [0u8; 32]);
                let mut done = 0u64;
                while Instant::now() < deadline {
                    let mut conn = floor.conns[spread(&floor.seed, floor.conns.len())]
                        .lock()
                        .await;
                    conn.write_all(&request).await?;
                    conn.read_exact(&mut answer).await?;
                    done += 1;
                }
                Ok::<u64, std::io::Error>(done)
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await??;
        }
        Ok(total)
    }
}

/// Consumer CPU µs, server CPU µs and calls per second of one measured round.
async fn round(
    invoker: &Arc<dyn Invoker>,
    iface: &str,
    concurrency: usize,
    seconds: Duration,
    server: &ServerProcess,
) -> Result<(f64, f64, f64)> {
    let (cpu0, server0, t0) = (cpu_ms(), server.cpu_seconds(), Instant::now());
    let calls = load(invoker, iface, concurrency, seconds, u64::MAX).await?;
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = (cpu_ms() - cpu0) * 1e3;
    let server_cpu = (server.cpu_seconds() - server0) * 1e6;
    Ok((
        cpu / calls as f64,
        server_cpu / calls as f64,
        calls as f64 / elapsed,
    ))
}

#[allow(clippy::too_many_arguments)]
async fn run(
    zk: &str,
    sizes: &[usize],
    concurrency: usize,
    seconds: Duration,
    rounds: usize,
    loadbalance: &str,
    protocol: &str,
    route_to: usize,
    only: Option<&str>,
) -> Result<()> {
    let measure = |m: &str| only.is_none_or(|o| o == m);
    let mut cases: Vec<(usize, Option<usize>)> = sizes.iter().map(|n| (*n, None)).collect();
    if route_to > 0 {
        cases.extend(
            sizes
                .iter()
                .filter(|n| **n > route_to)
                .map(|n| (*n, Some(route_to))),
        );
    }
    let interfaces: Vec<String> = cases.iter().map(|(n, k)| interface(*n, *k)).collect();
    let server = ServerProcess::spawn(&interfaces, protocol).await?;
    let registry = rdubbo::registry::connect(&format!("zookeeper://{zk}")).await?;
    let hour_ago = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64 - 3_600_000;
    let mut rows = Vec::new();
    for &(n, route) in &cases {
        let iface = interface(n, route);
        for i in 0..n {
            registry
                .register(&provider_url(protocol, &iface, i, server.port, hour_ago)?)
                .await?;
        }
        if let Some(k) = route {
            let hosts: Vec<String> = (0..k).map(host).collect();
            let rule = rdubbo::url::encode(&format!("=> host = {}", hosts.join(",")));
            registry
                .register(
                    &format!(
                        "condition://0.0.0.0/{iface}?category=routers&dynamic=false\
                         &enabled=true&force=true&rule={rule}"
                    )
                    .parse()?,
                )
                .await?;
        }
        let reference = rdubbo::consumer::Reference::builder(&iface)
            .application("cluster-bench")
            .registry(registry.clone())
            .loadbalance(loadbalance)
            .check(false)
            .build()
            .await?;
        let probe = Invocation::new(iface.as_str(), "echo", vec![Value::from("x")]);
        let started = Instant::now();
        while reference.directory().providers().len() < n
            || reference.directory().list(&probe).len() != route.unwrap_or(n)
        {
            if started.elapsed() > Duration::from_secs(60) {
                bail!(
                    "{} of {n} providers ({} routed) after 60 s",
                    reference.directory().providers().len(),
                    reference.directory().list(&probe).len()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let reference = Arc::new(reference);
        let invoker: Arc<dyn Invoker> = reference.clone();
        // Warm-up: every provider gets its connections.
        let warm = (route.unwrap_or(n) * 20).max(20_000) as u64;
        load(&invoker, &iface, concurrency, Duration::from_secs(60), warm).await?;
        let failing = reference
            .directory()
            .providers()
            .iter()
            .filter(|p| p.health.consecutive_failures() > 0)
            .count();
        if failing > 0 {
            eprintln!("{iface}: {failing} providers with failures on record after the warm-up");
        }
        let direct: Arc<dyn Invoker> = Arc::new(Direct {
            invokers: reference
                .directory()
                .list(&probe)
                .iter()
                .map(|p| p.invoker.clone())
                .collect(),
            seed: AtomicU64::new(0),
        });
        // The floor, for the sizes without a rule (with one, calls go to `route_to`).
        let floor = match route {
            None if measure("floor") => {
                let floor = Arc::new(Floor::connect(n, server.raw_port).await?);
                floor.load(concurrency, Duration::from_millis(200)).await?;
                Some(floor)
            }
            _ => None,
        };
        eprintln!("{iface}: warmed up, measuring");
        let mut samples = Vec::new();
        for _ in 0..rounds {
            let nan = (f64::NAN, f64::NAN, f64::NAN);
            let (consumer_cpu_us, server_cpu_us, calls_per_s) = match measure("reference") {
                true => round(&invoker, &iface, concurrency, seconds, &server).await?,
                false => nan,
            };
            let (direct_cpu_us, _, _) = match measure("transport") {
                true => round(&direct, &iface, concurrency, seconds, &server).await?,
                false => nan,
            };
            let floor_cpu_us = match &floor {
                Some(floor) => {
                    let cpu0 = cpu_ms();
                    let calls = floor.load(concurrency, seconds).await?;
                    (cpu_ms() - cpu0) * 1e3 / calls as f64
                }
                None => f64::NAN,
            };
            samples.push(Figures {
                calls_per_s,
                consumer_cpu_us,
                server_cpu_us,
                direct_cpu_us,
                floor_cpu_us,
            });
        }
        drop(floor);
        let median = |f: fn(&Figures) -> f64| {
            let mut v: Vec<f64> = samples.iter().map(f).collect();
            v.sort_by(|a, b| a.total_cmp(b));
            v[v.len() / 2]
        };
        // Unsubscribe: the registry lets go of the directory and its connections.
        reference.close().await;
        drop((invoker, direct, reference));
        let label = match route {
            None => n.to_string(),
            Some(k) => format!("{n}, rule keeps {k}"),
        };
        rows.push((
            label,
            median(|f| f.calls_per_s),
            median(|f| f.consumer_cpu_us),
            median(|f| f.server_cpu_us),
            median(|f| f.direct_cpu_us),
            median(|f| f.consumer_cpu_us - f.direct_cpu_us),
            median(|f| f.floor_cpu_us),
            rss_kib(),
        ));
    }
    println!(
        "{protocol} echo through ZooKeeper, loadbalance={loadbalance}, {concurrency} calls in flight, \
         {rounds} × {:.1} s per row (medians)\n",
        seconds.as_secs_f64()
    );
    println!(
        "| providers | calls/s | consumer CPU µs/call | vs first | server CPU µs/call \
         | transport only: consumer CPU µs/call | vs first | cluster's share µs/call \
         | raw TCP floor: CPU µs/call | vs first | consumer RSS MiB |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let base = rows.first().map(|r| r.2).unwrap_or(1.0);
    let direct_base = rows.first().map(|r| r.4).unwrap_or(1.0);
    let floor_base = rows.first().map(|r| r.6).unwrap_or(1.0);
    for (label, rate, cpu, server_cpu, direct, share, floor, rss) in &rows {
        let floor = if floor.is_nan() {
            "– | –".to_string()
        } else {
            format!("{floor:.1} | {:.2}×", floor / floor_base)
        };
        println!(
            "| {label} | {rate:.0} | {cpu:.1} | {:.2}× | {server_cpu:.1} | {direct:.1} | {:.2}× \
             | {share:.1} | {floor} | {:.1} |",
            cpu / base,
            direct / direct_base,
            rss / 1024.0
        );
    }
    Ok(())
}

/// Calls `echo` with `concurrency` calls in flight until `limit` calls or `duration`;
/// returns the number of calls. A failed call fails the run.
async fn load(
    invoker: &Arc<dyn Invoker>,
    iface: &str,
    concurrency: usize,
    duration: Duration,
    limit: u64,
) -> Result<u64> {
    let claimed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (invoker, claimed) = (invoker.clone(), claimed.clone());
        let iface: Arc<str> = iface.into();
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            while Instant::now() < deadline && claimed.fetch_add(1, Ordering::Relaxed) < limit {
                let inv =
                    Invocation::new(iface.clone(), "echo", vec![Value::from("hello, rdubbo")]);
                invoker.invoke(inv).await?;
                done += 1;
            }
            Ok::<u64, RpcError>(done)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok(total)
}

/// A protocol whose invokers hold nothing: the directory's own memory.
struct Nothing;

impl rdubbo::Protocol for Nothing {
    fn name(&self) -> &'static str {
        "jsonrpc"
    }
    fn refer(&self, _: &Url) -> RpcResult<Arc<dyn Invoker>> {
        Ok(Arc::new(Echo))
    }
}

fn memory(n: usize) -> Result<()> {
    let iface = interface(n, None);
    let urls: Vec<Url> = (0..n)
        .map(|i| provider_url("jsonrpc", &iface, i, 20880, 1))
        .collect::<Result<_>>()?;
    let consumer: Url =
        format!("consumer://127.0.0.1/{iface}?interface={iface}&application=bench").parse()?;
    let before = rss_kib();
    let dir = rdubbo::cluster::Directory::new(consumer, vec![Arc::new(Nothing)]);
    dir.update(&urls);
    drop(urls);
    let listed = rss_kib();
    let cluster = rdubbo::cluster::ClusterInvoker::new(dir.clone())?;
    let inv = Invocation::new(iface.as_str(), "echo", vec![Value::from("x")]);
    for balancer in [
        "random",
        "roundrobin",
        "leastactive",
        "p2c",
        "consistenthash",
    ] {
        let mut call = inv.clone();
        call.method = balancer.into();
        let routed = cluster.cluster().list(&call);
        let table = rdubbo::cluster::loadbalance::by_name(balancer).context("balancer")?;
        table.pick(&rdubbo::cluster::Candidates::new(&routed), &call);
    }
    let routed = rss_kib();
    println!(
        "| providers | directory KiB/provider | + routes and tables of 5 balancers KiB/provider |"
    );
    println!("|---:|---:|---:|");
    println!(
        "| {n} | {:.2} | {:.2} |",
        (listed - before) / n as f64,
        (routed - listed) / n as f64
    );
    drop(cluster);
    Ok(())
}
