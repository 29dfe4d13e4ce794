//! `hostile-bench`: the hostile-client soak of issue #16. For each attack of the issue it
//! starts a fresh target process (`rdubbo demo provider`, `rdubbo registry`, or the demo
//! provider as an application with QoS and metrics), runs the attack for a bounded time
//! while a legit client calls at a steady rate, and reports the peak RSS of the attacked
//! process, the legit calls that succeeded or failed, their p50/p99 latency, and whether
//! the process survived. Exits 1 if an attack breaks the bar of the issue (RSS over
//! `--max-rss-mib`, a legit call failing, the process dying, or the registry dropping a
//! healthy instance). Loopback only; every process started is stopped by PID.
//!
//! ```sh
//! cargo build --release -p rdubbo-cli -p rdubbo-bench --bin rdubbo --bin hostile-bench
//! target/release/hostile-bench            # smaller counts, ~3 minutes
//! target/release/hostile-bench --full     # the issue's sizes where descriptors allow
//! ```

#[path = "hostile/net.rs"]
mod net;
mod procstats;
#[path = "hostile/target.rs"]
mod target;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use rdubbo::prelude::GenericClient;
use rdubbo::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use net::{HttpConn, IFACE};
use target::{Kind, Legit, LegitStats, Op, RssWatch, Target};

/// The legit client's source address: another loopback address, so that limits per
/// source address (logins, UDP pushes) do not confuse it with the attacker (127.0.0.1).
const LEGIT_SRC: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

#[derive(Parser)]
#[command(
    about = "Hostile-client soak (issue #16): peak RSS and legit-call latency under each attack"
)]
struct Args {
    /// The `rdubbo` binary to attack (default: next to this binary).
    #[arg(long)]
    rdubbo: Option<PathBuf>,
    /// Seconds each attack lasts.
    #[arg(long, default_value_t = 8.0)]
    seconds: f64,
    /// The issue's full sizes (5,000 idle dubbo connections, 4,100 slow registry
    /// connections, 100,000 logins, 2,000 UDP ports, 100,000 instances in one list,
    /// 20,000 idle metrics connections) where the descriptor limit allows.
    #[arg(long)]
    full: bool,
    /// Only the attacks whose name contains one of these (comma-separated).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Milliseconds between two legit calls.
    #[arg(long, default_value_t = 50)]
    legit_period_ms: u64,
    /// Timeout of one legit call, ms.
    #[arg(long, default_value_t = 3000)]
    legit_timeout_ms: u64,
    /// The bar: peak RSS of the attacked process, MiB.
    #[arg(long, default_value_t = 300)]
    max_rss_mib: u64,
    /// Safety cap: the attacked process is killed past this RSS, MiB.
    #[arg(long, default_value_t = 2048)]
    kill_rss_mib: u64,
}

/// Sizes of the attacks.
struct Sizes {
    idle_dubbo: usize,
    slow_jsonrpc: usize,
    slow_registry: usize,
    logins: usize,
    udp_ports: usize,
    instances: usize,
    qos_idle: usize,
    metrics_idle: usize,
}

impl Sizes {
    fn new(full: bool, nofile: u64) -> Sizes {
        // Room for the legit clients, the UDP sockets and the process's own descriptors.
        let fit = |n: usize| n.min(nofile.saturating_sub(2_600) as usize);
        if full {
            Sizes {
                idle_dubbo: fit(5_000),
                slow_jsonrpc: fit(1_030),
                slow_registry: fit(4_100),
                logins: 100_000,
                udp_ports: fit(2_000),
                instances: 100_000,
                qos_idle: 64,
                metrics_idle: fit(20_000),
            }
        } else {
            Sizes {
                idle_dubbo: fit(2_000),
                slow_jsonrpc: fit(1_030),
                slow_registry: fit(1_100),
                logins: 20_000,
                udp_ports: fit(200),
                instances: 20_000,
                qos_idle: 64,
                metrics_idle: fit(2_000),
            }
        }
    }
}

/// One row of the table.
struct Outcome {
    name: &'static str,
    kind: Kind,
    peak_mib: f64,
    killed_at_cap: bool,
    legit: LegitStats,
    survived: bool,
    note: String,
    broken: Vec<String>,
    /// CPU time of the attacked process during the attack, s.
    cpu_s: f64,
}

struct Ctx {
    exe: PathBuf,
    scratch: PathBuf,
    seconds: Duration,
    sizes: Sizes,
    period: Duration,
    timeout: Duration,
    cap_kib: u64,
}

const ATTACKS: &[(&str, Kind)] = &[
    ("dubbo-stream-never-read", Kind::Dubbo),
    ("dubbo-heartbeat-flood", Kind::Dubbo),
    ("dubbo-idle-connections", Kind::Dubbo),
    ("dubbo-shared-refs", Kind::Dubbo),
    ("jsonrpc-slow-bodies", Kind::JsonRpc),
    ("jsonrpc-huge-batch", Kind::JsonRpc),
    ("jsonrpc-unread-answers", Kind::JsonRpc),
    ("registry-slow-connections", Kind::Registry),
    ("registry-logins", Kind::RegistryAuth),
    ("registry-udp-amplification", Kind::Registry),
    ("registry-big-list", Kind::RegistryDefault),
    ("qos-idle-sessions", Kind::App),
    ("metrics-idle-connections", Kind::App),
];

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hostile-bench: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("hostile-bench: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> Result<bool> {
    let nofile = net::raise_nofile();
    let exe = match args.rdubbo {
        Some(p) => p,
        None => std::env::current_exe()?
            .parent()
            .context("no directory")?
            .join("rdubbo"),
    };
    if !exe.exists() {
        bail!(
            "{} not found (cargo build --release -p rdubbo-cli, or --rdubbo PATH)",
            exe.display()
        );
    }
    let ctx = Ctx {
        exe,
        scratch: std::env::temp_dir(),
        seconds: Duration::from_secs_f64(args.seconds.clamp(1.0, 60.0)),
        sizes: Sizes::new(args.full, nofile),
        period: Duration::from_millis(args.legit_period_ms.max(1)),
        timeout: Duration::from_millis(args.legit_timeout_ms),
        cap_kib: args.kill_rss_mib << 10,
    };
    println!(
        "hostile-bench: target {}, {} s per attack, legit call every {} ms (timeout {} ms), RLIMIT_NOFILE {nofile}{}",
        ctx.exe.display(),
        ctx.seconds.as_secs_f64(),
        ctx.period.as_millis(),
        ctx.timeout.as_millis(),
        if args.full { ", full sizes" } else { "" }
    );
    let mut outcomes = Vec::new();
    for &(name, kind) in ATTACKS {
        if !args.only.is_empty() && !args.only.iter().any(|o| name.contains(o.as_str())) {
            continue;
        }
        println!("-- {name} against {}", kind.label());
        let mut o = match attack(&ctx, name, kind).await {
            Ok(o) => o,
            Err(e) => Outcome {
                name,
                kind,
                peak_mib: f64::NAN,
                killed_at_cap: false,
                legit: LegitStats::default(),
                survived: false,
                note: String::new(),
                broken: vec![format!("bench error: {e:#}")],
                cpu_s: f64::NAN,
            },
        };
        if o.peak_mib > args.max_rss_mib as f64 || o.killed_at_cap {
            o.broken.push(format!(
                "peak RSS {:.0} MiB > {} MiB{}",
                o.peak_mib,
                args.max_rss_mib,
                if o.killed_at_cap {
                    " (killed at the safety cap)"
                } else {
                    ""
                }
            ));
        }
        if o.legit.failed > 0 {
            let (a, b) = o.legit.failed_between.unwrap_or_default();
            o.broken.push(format!(
                "{} legit calls failed ({:?}), started {a:.1}–{b:.1} s into the attack (first: {})",
                o.legit.failed,
                o.legit.failed_by_step,
                o.legit.first_error.as_deref().unwrap_or("?")
            ));
        }
        if o.legit.ok == 0 && o.broken.is_empty() {
            o.broken.push("no legit call succeeded".into());
        }
        if !o.survived && !o.killed_at_cap {
            o.broken.push("the process died".into());
        }
        println!(
            "   peak RSS {:.1} MiB, legit {} ok / {} failed, p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms; {}",
            o.peak_mib, o.legit.ok, o.legit.failed, o.legit.p50_ms, o.legit.p99_ms, o.legit.max_ms, o.note
        );
        for b in &o.broken {
            println!("   BROKEN: {b}");
        }
        outcomes.push(o);
    }
    print_table(&outcomes);
    println!(
        "\n(bench process CPU {:.1} s in all)",
        procstats::cpu_ms() / 1e3
    );
    let broken: Vec<&Outcome> = outcomes.iter().filter(|o| !o.broken.is_empty()).collect();
    if broken.is_empty() {
        println!(
            "\nevery attack within the bar ({} MiB, no failed legit call)",
            args.max_rss_mib
        );
        Ok(true)
    } else {
        println!("\n{} attack(s) break the bar:", broken.len());
        for o in broken {
            println!("- {}: {}", o.name, o.broken.join("; "));
        }
        Ok(false)
    }
}

fn print_table(outcomes: &[Outcome]) {
    println!();
    println!("| attack | target | peak RSS MiB | target CPU s | legit ok / failed | legit p50 ms | legit p99 ms | survived | attack |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for o in outcomes {
        println!(
            "| {} | {} | {:.1} | {:.1} | {} / {} | {:.2} | {:.2} | {} | {} |",
            o.name,
            o.kind.label(),
            o.peak_mib,
            o.cpu_s,
            o.legit.ok,
            o.legit.failed,
            o.legit.p50_ms,
            o.legit.p99_ms,
            if o.survived { "yes" } else { "no" },
            o.note
        );
    }
}

// ---------------------------------------------------------------- one attack

async fn attack(ctx: &Ctx, name: &'static str, kind: Kind) -> Result<Outcome> {
    let mut target = Target::start(&ctx.exe, kind, &ctx.scratch).await?;
    let result = attack_on(ctx, name, kind, &mut target).await;
    let survived = target.alive();
    target.stop().await;
    let (peak_kib, killed_at_cap, legit, note, broken, cpu_s) = result?;
    Ok(Outcome {
        name,
        kind,
        peak_mib: peak_kib as f64 / 1024.0,
        killed_at_cap,
        legit,
        survived,
        note,
        broken,
        cpu_s,
    })
}

type Run = (u64, bool, LegitStats, String, Vec<String>, f64);

async fn attack_on(ctx: &Ctx, name: &str, kind: Kind, target: &mut Target) -> Result<Run> {
    let token = if kind == Kind::RegistryAuth {
        Some(login(target.addr("registry")?, None).await?)
    } else {
        None
    };
    let op = legit_op(name, kind, target, token.clone()).await?;
    // The legit client works before the attack.
    let mut warm = Err(anyhow!("not tried"));
    for _ in 0..20 {
        warm = tokio::time::timeout(ctx.timeout, op())
            .await
            .unwrap_or_else(|_| Err(anyhow!("timeout")));
        if warm.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    warm.context("the legit client fails before the attack")?;
    let cpu0 = procstats::process_cpu_seconds(target.pid);
    let watch = RssWatch::start(target.pid, ctx.cap_kib);
    let legit = Legit::start(op, ctx.period, ctx.timeout);
    let deadline = Instant::now() + ctx.seconds;
    let s = &ctx.sizes;
    let note = match name {
        "dubbo-stream-never-read" => {
            never_read(target.addr("dubbo")?, 2, deadline, |id| {
                net::echo_request(id, 4096)
            })
            .await
        }
        "dubbo-heartbeat-flood" => {
            never_read(target.addr("dubbo")?, 2, deadline, net::heartbeat).await
        }
        "dubbo-idle-connections" => idle(target.addr("dubbo")?, s.idle_dubbo, deadline).await,
        "dubbo-shared-refs" => shared_refs(target.addr("dubbo")?, deadline).await,
        "jsonrpc-slow-bodies" => {
            let path = format!("/{IFACE}");
            slow_bodies(target.addr("jsonrpc")?, s.slow_jsonrpc, &path, deadline).await
        }
        "jsonrpc-huge-batch" => huge_batch(target.addr("jsonrpc")?, deadline).await,
        "jsonrpc-unread-answers" => unread_batches(target.addr("jsonrpc")?, deadline).await,
        "registry-slow-connections" => {
            slow_bodies(
                target.addr("registry")?,
                s.slow_registry,
                "/nacos/v1/ns/instance",
                deadline,
            )
            .await
        }
        "registry-logins" => logins(target.addr("registry")?, s.logins, deadline).await,
        "registry-udp-amplification" => {
            udp_amplification(target.addr("registry")?, s.udp_ports, deadline).await
        }
        "registry-big-list" => big_list(target.addr("registry")?, s.instances, deadline).await,
        "qos-idle-sessions" => idle(target.addr("qos")?, s.qos_idle, deadline).await,
        "metrics-idle-connections" => idle(target.addr("metrics")?, s.metrics_idle, deadline).await,
        other => Err(anyhow!("unknown attack {other}")),
    };
    tokio::time::sleep_until(deadline).await;
    let legit = legit.finish().await;
    let (peak, capped) = watch.finish().await;
    let cpu_s = procstats::process_cpu_seconds(target.pid) - cpu0;
    let mut broken = Vec::new();
    let note = match note {
        Ok(n) => n,
        Err(e) => {
            broken.push(format!("attack error: {e:#}"));
            String::new()
        }
    };
    if matches!(
        kind,
        Kind::Registry | Kind::RegistryAuth | Kind::RegistryDefault
    ) && target.alive()
    {
        match healthy_legit_instances(target.addr("registry")?, token.as_deref()).await {
            Ok(n) if n == LEGIT_INSTANCES => {}
            Ok(n) => broken.push(format!(
                "{n} of the {LEGIT_INSTANCES} beating instances listed healthy after the attack"
            )),
            Err(e) => broken.push(format!("list after the attack: {e:#}")),
        }
    }
    Ok((peak, capped, legit, note, broken, cpu_s))
}

// ---------------------------------------------------------------- legit clients

const LEGIT_SERVICE: &str = "hostile-legit";
const LEGIT_INSTANCES: usize = 3;

fn boxed<F>(f: F) -> target::OpFuture
where
    F: std::future::Future<Output = Result<()>> + Send + 'static,
{
    Box::pin(f)
}

async fn legit_op(name: &str, kind: Kind, target: &Target, token: Option<String>) -> Result<Op> {
    Ok(match kind {
        Kind::Dubbo => dubbo_op(target.addr("dubbo")?)?,
        Kind::JsonRpc => {
            let addr = target.addr("jsonrpc")?;
            // A new connection per call, as a new consumer: it needs a free slot.
            Arc::new(move || {
                boxed(async move {
                    let mut c = HttpConn::connect(addr, Some(LEGIT_SRC)).await?;
                    let body =
                        br#"{"jsonrpc":"2.0","id":1,"method":"sayHello","params":["legit"]}"#;
                    let (status, answer) = c.request("POST", &format!("/{IFACE}"), body).await?;
                    let answer = String::from_utf8_lossy(&answer);
                    if status != 200 || !answer.contains("Hello legit") {
                        bail!(
                            "HTTP {status}: {}",
                            answer.chars().take(200).collect::<String>()
                        );
                    }
                    Ok(())
                })
            })
        }
        Kind::Registry | Kind::RegistryAuth | Kind::RegistryDefault => {
            let addr = target.addr("registry")?;
            let auth = token
                .map(|t| format!("&accessToken={t}"))
                .unwrap_or_default();
            for i in 0..LEGIT_INSTANCES {
                let path = format!(
                    "/nacos/v1/ns/instance?serviceName={LEGIT_SERVICE}&ip=10.0.0.{}&port=8080&ephemeral=true{auth}",
                    i + 1
                );
                let mut c = HttpConn::connect(addr, Some(LEGIT_SRC)).await?;
                let (status, body) = c.request("POST", &path, b"").await?;
                if status != 200 {
                    bail!(
                        "registering a legit instance: HTTP {status} {}",
                        String::from_utf8_lossy(&body)
                    );
                }
            }
            let next = Arc::new(AtomicU64::new(0));
            let login_too = kind == Kind::RegistryAuth;
            // Each call beats one of the instances (a new connection each time); with auth,
            // it also logs in afresh and lists the service with the new token.
            Arc::new(move || {
                let auth = auth.clone();
                let i = next.fetch_add(1, Ordering::Relaxed) as usize % LEGIT_INSTANCES;
                boxed(async move {
                    let auth = if login_too {
                        format!("&accessToken={}", login(addr, Some(LEGIT_SRC)).await?)
                    } else {
                        auth
                    };
                    let mut c = HttpConn::connect(addr, Some(LEGIT_SRC)).await?;
                    let path = format!(
                        "/nacos/v1/ns/instance/beat?serviceName={LEGIT_SERVICE}&ip=10.0.0.{}&port=8080{auth}",
                        i + 1
                    );
                    let (status, body) = c.request("PUT", &path, b"").await?;
                    let body = String::from_utf8_lossy(&body);
                    if status != 200 || body.contains("20404") {
                        bail!(
                            "beat: HTTP {status} {}",
                            body.chars().take(200).collect::<String>()
                        );
                    }
                    if login_too {
                        let path =
                            format!("/nacos/v1/ns/instance/list?serviceName={LEGIT_SERVICE}{auth}");
                        let (status, body) = c.request("GET", &path, b"").await?;
                        if status != 200 {
                            bail!("list: HTTP {status} {}", String::from_utf8_lossy(&body));
                        }
                    }
                    Ok(())
                })
            })
        }
        Kind::App => {
            let call = dubbo_op(target.addr("dubbo")?)?;
            // A dubbo call, then `GET /live` on the QoS port (QoS attack) or a scrape of
            // `/metrics` (metrics attack), on a new connection.
            let probe = if name.starts_with("qos") {
                (target.addr("qos")?, "/live")
            } else {
                (target.addr("metrics")?, "/metrics")
            };
            Arc::new(move || {
                let call = call();
                boxed(async move {
                    call.await.context("dubbo call")?;
                    let (addr, path) = probe;
                    let r = async {
                        let mut c = HttpConn::connect(addr, Some(LEGIT_SRC)).await?;
                        c.request("GET", path, b"").await
                    };
                    let (status, _) = r.await.with_context(|| format!("GET {path}"))?;
                    if status != 200 {
                        bail!("GET {path}: HTTP {status}");
                    }
                    Ok(())
                })
            })
        }
    })
}

fn dubbo_op(addr: SocketAddr) -> Result<Op> {
    let url: rdubbo::Url = format!("dubbo://{addr}/{IFACE}?timeout=3000").parse()?;
    let invoker = Arc::new(rdubbo::dubbo::DubboClient::new(&url).map_err(|e| anyhow!("{e}"))?);
    let client = GenericClient::new(invoker, IFACE)
        .version(Some("1.0.0"))
        .timeout(Duration::from_secs(3));
    Ok(Arc::new(move || {
        let client = client.clone();
        boxed(async move {
            let v = client
                .call("sayHello", vec![Value::from("legit")])
                .await
                .map_err(|e| anyhow!("{e}"))?;
            if v != Value::from("Hello legit") {
                bail!("unexpected answer {v:?}");
            }
            Ok(())
        })
    }))
}

async fn login(addr: SocketAddr, source: Option<IpAddr>) -> Result<String> {
    let mut c = HttpConn::connect(addr, source).await?;
    let body = format!("username={}&password={}", target::USER, target::PASSWORD);
    let (status, answer) = c
        .request("POST", "/nacos/v1/auth/login", body.as_bytes())
        .await?;
    if status != 200 {
        bail!("login: HTTP {status} {}", String::from_utf8_lossy(&answer));
    }
    let v: serde_json::Value = serde_json::from_slice(&answer)?;
    v.get("accessToken")
        .and_then(|t| t.as_str())
        .map(str::to_owned)
        .context("login: no accessToken")
}

async fn healthy_legit_instances(addr: SocketAddr, token: Option<&str>) -> Result<usize> {
    let token = match token {
        Some(_) => format!("&accessToken={}", login(addr, Some(LEGIT_SRC)).await?),
        None => String::new(),
    };
    let mut c = HttpConn::connect(addr, Some(LEGIT_SRC)).await?;
    let path = format!("/nacos/v1/ns/instance/list?serviceName={LEGIT_SERVICE}{token}");
    let (status, body) = c.request("GET", &path, b"").await?;
    if status != 200 {
        bail!("HTTP {status} {}", String::from_utf8_lossy(&body));
    }
    let v: serde_json::Value = serde_json::from_slice(&body)?;
    Ok(v.get("hosts")
        .and_then(|h| h.as_array())
        .map(|hosts| {
            hosts
                .iter()
                .filter(|h| h.get("healthy").and_then(|b| b.as_bool()) == Some(true))
                .count()
        })
        .unwrap_or(0))
}

// ---------------------------------------------------------------- attacks

fn mb(bytes: u64) -> String {
    if bytes < 1_000_000 {
        format!("{:.1} kB", bytes as f64 / 1e3)
    } else {
        format!("{:.1} MB", bytes as f64 / 1e6)
    }
}

/// `conns` connections write `frame`s in batches of 256 and never read; a batch that
/// cannot be written within 1 s counts as blocked (the server stopped reading).
async fn never_read(
    addr: SocketAddr,
    conns: usize,
    deadline: Instant,
    frame: fn(i64) -> Vec<u8>,
) -> Result<String> {
    let mut tasks = Vec::new();
    for _ in 0..conns {
        tasks.push(tokio::spawn(async move {
            let mut s = net::connect(addr, None, Some(16 * 1024)).await?;
            let (mut id, mut written, mut state) = (0i64, 0u64, "still read");
            while Instant::now() < deadline {
                let mut batch = Vec::new();
                for _ in 0..256 {
                    id += 1;
                    batch.extend(frame(id));
                }
                match tokio::time::timeout(Duration::from_secs(1), s.write_all(&batch)).await {
                    Ok(Ok(())) => written += batch.len() as u64,
                    Ok(Err(_)) => {
                        state = "closed";
                        break;
                    }
                    Err(_) => {
                        state = "blocked";
                        break;
                    }
                }
            }
            tokio::time::sleep_until(deadline).await;
            drop(s);
            anyhow::Ok((written, state))
        }));
    }
    let mut parts = Vec::new();
    for t in tasks {
        let (written, state) = t.await??;
        parts.push(format!("{} written, {state}", mb(written)));
    }
    Ok(format!("{conns} clients: {}", parts.join("; ")))
}

/// Opens up to `n` connections that send nothing and keeps them open until the deadline:
/// every 250 ms, a connection the server answered or closed is replaced by a new one.
async fn idle(addr: SocketAddr, n: usize, deadline: Instant) -> Result<String> {
    async fn open(addr: SocketAddr) -> std::result::Result<TcpStream, String> {
        match tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr)).await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("connect timeout".into()),
        }
    }
    let mut held: Vec<TcpStream> = Vec::with_capacity(n);
    let (mut failed, mut first_err) = (0usize, None);
    for _ in 0..n {
        if Instant::now() >= deadline {
            break;
        }
        match open(addr).await {
            Ok(s) => held.push(s),
            Err(e) => {
                failed += 1;
                first_err.get_or_insert(e);
            }
        }
    }
    let opened = held.len();
    let mut replaced = 0usize;
    let mut buf = [0u8; 512];
    while Instant::now() + Duration::from_millis(300) < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        for slot in held.iter_mut() {
            if Instant::now() >= deadline {
                break;
            }
            // Data (an error line, a 408) or EOF: the server is done with it.
            if slot.try_read(&mut buf).is_ok() {
                match open(addr).await {
                    Ok(s) => {
                        *slot = s;
                        replaced += 1;
                    }
                    Err(e) => {
                        failed += 1;
                        first_err.get_or_insert(e);
                    }
                }
            }
        }
    }
    let mut note = format!(
        "{opened} idle connections kept open ({replaced} reopened after the server answered or closed them)"
    );
    if failed > 0 {
        note.push_str(&format!(
            ", {failed} connects failed ({})",
            first_err.unwrap_or_default()
        ));
    }
    Ok(note)
}

/// Four connections send `echo(list)` requests of about 4 MB each made of one small list
/// and two million references to it (11 MB/s in all), and read (and discard) the answers.
async fn shared_refs(addr: SocketAddr, deadline: Instant) -> Result<String> {
    let frame = Arc::new(net::shared_ref_request(1, 2_000_000, 64));
    let sent = Arc::new(AtomicU64::new(0));
    let answered = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (frame, sent, answered) = (frame.clone(), sent.clone(), answered.clone());
        tasks.push(tokio::spawn(async move {
            let s = net::connect(addr, None, None).await?;
            let (mut r, mut w) = s.into_split();
            let reader = tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = tokio::io::AsyncReadExt::read(&mut r, &mut buf).await {
                    if n == 0 {
                        break;
                    }
                    answered.fetch_add(n as u64, Ordering::Relaxed);
                }
            });
            // One request per connection every 1.45 s: 11 MB/s over the four, the rate of
            // the issue.
            let mut pace = tokio::time::interval(Duration::from_millis(1450));
            while Instant::now() < deadline {
                pace.tick().await;
                match tokio::time::timeout_at(deadline, w.write_all(&frame)).await {
                    Ok(Ok(())) => {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => break,
                }
            }
            reader.abort();
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(format!(
        "4 clients sent {} requests of {} (2M references to a 64-string list, 11 MB/s); {} answered",
        sent.load(Ordering::Relaxed),
        mb(frame.len() as u64),
        mb(answered.load(Ordering::Relaxed))
    ))
}

/// `n` connections send the headers of a 100 kB body, then one byte a second.
async fn slow_bodies(addr: SocketAddr, n: usize, path: &str, deadline: Instant) -> Result<String> {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    );
    let mut held = Vec::with_capacity(n);
    let mut failed = 0;
    for _ in 0..n {
        if Instant::now() >= deadline {
            break;
        }
        match tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr)).await {
            Ok(Ok(mut s)) => {
                if s.write_all(head.as_bytes()).await.is_ok() {
                    held.push(Some(s));
                } else {
                    failed += 1;
                }
            }
            _ => failed += 1,
        }
    }
    let opened = held.len();
    let mut closed = 0;
    while Instant::now() + Duration::from_secs(1) < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        for slot in held.iter_mut() {
            if let Some(s) = slot {
                if s.try_write(b" ").is_err() {
                    closed += 1;
                    *slot = None;
                }
            }
        }
    }
    let mut buf = [0u8; 512];
    for s in held.iter().flatten() {
        if s.try_read(&mut buf).is_ok() {
            closed += 1; // answered (e.g. 408) or closed
        }
    }
    let mut note = format!("{opened} slow connections, {closed} answered or closed by the server");
    if failed > 0 {
        note.push_str(&format!(", {failed} could not connect"));
    }
    Ok(note)
}

/// A JSON-RPC batch of `entries` `echo` calls of 64 characters (about 100 bytes each).
fn batch_body(entries: usize) -> Vec<u8> {
    let arg = "y".repeat(64);
    let mut body = String::from("[");
    for i in 0..entries {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&format!(
            r#"{{"jsonrpc":"2.0","id":{i},"method":"echo","params":["{arg}"]}}"#
        ));
    }
    body.push(']');
    body.into_bytes()
}

/// Two clients post batches of 20,000 calls (1.9 MB) in a loop and read the answers.
async fn huge_batch(addr: SocketAddr, deadline: Instant) -> Result<String> {
    let body = Arc::new(batch_body(20_000));
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let (mut n, mut largest, mut statuses) =
                (0u64, 0u64, std::collections::BTreeSet::new());
            while Instant::now() < deadline {
                let r = tokio::time::timeout_at(deadline, async {
                    let mut c = HttpConn::connect(addr, None).await?;
                    c.request_discard("POST", &format!("/{IFACE}"), &body).await
                })
                .await;
                match r {
                    Ok(Ok((status, len))) => {
                        n += 1;
                        largest = largest.max(len);
                        statuses.insert(status);
                    }
                    Ok(Err(_)) => {
                        statuses.insert(0);
                    }
                    Err(_) => break,
                }
            }
            (n, largest, statuses)
        }));
    }
    let (mut n, mut largest, mut statuses) = (0, 0, std::collections::BTreeSet::new());
    for t in tasks {
        let (a, b, c) = t.await?;
        n += a;
        largest = largest.max(b);
        statuses.extend(c);
    }
    Ok(format!(
        "{n} batches of 20,000 calls ({}) answered, largest answer {}, HTTP status {statuses:?}",
        mb(body.len() as u64),
        mb(largest)
    ))
}

/// Sixteen connections each post a batch of 20,000 calls and never read the answer.
async fn unread_batches(addr: SocketAddr, deadline: Instant) -> Result<String> {
    let body = batch_body(20_000);
    let mut req = format!(
        "POST /{IFACE} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend(body);
    let req = Arc::new(req);
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let req = req.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = net::connect(addr, None, Some(16 * 1024)).await?;
            let done = matches!(
                tokio::time::timeout_at(deadline, s.write_all(&req)).await,
                Ok(Ok(()))
            );
            tokio::time::sleep_until(deadline).await;
            drop(s);
            anyhow::Ok(done)
        }));
    }
    let mut whole = 0;
    for t in tasks {
        if t.await?? {
            whole += 1;
        }
    }
    Ok(format!(
        "16 clients posted a batch of 20,000 calls ({}), {whole} sent whole; no answer read",
        mb(req.len() as u64)
    ))
}

/// Eight keep-alive connections log in `n` times with the right credentials.
async fn logins(addr: SocketAddr, n: usize, deadline: Instant) -> Result<String> {
    let left = Arc::new(AtomicU64::new(n as u64));
    let ok = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let body = format!("username={}&password={}", target::USER, target::PASSWORD);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (left, ok, refused, body) = (left.clone(), ok.clone(), refused.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn: Option<HttpConn> = None;
            while Instant::now() < deadline
                && left
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| l.checked_sub(1))
                    .is_ok()
            {
                if conn.is_none() {
                    conn = HttpConn::connect(addr, None).await.ok();
                }
                let Some(c) = conn.as_mut() else { continue };
                match tokio::time::timeout_at(
                    deadline,
                    c.request("POST", "/nacos/v1/auth/login", body.as_bytes()),
                )
                .await
                {
                    Ok(Ok((200, _))) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Ok(_)) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Err(_)) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                        conn = None;
                    }
                    Err(_) => break,
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    Ok(format!(
        "{} logins answered 200, {} refused or failed (of {n} planned)",
        ok.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed)
    ))
}

/// Subscribes `ports` UDP ports of 127.0.0.1 to a service (list queries with `udpPort`),
/// then registers an instance in it every 250 ms; counts the UDP bytes those ports receive
/// (never acked) against the bytes of the registrations.
async fn udp_amplification(addr: SocketAddr, ports: usize, deadline: Instant) -> Result<String> {
    let received = Arc::new(AtomicU64::new(0));
    let mut sockets = Vec::new();
    for _ in 0..ports {
        let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
        let port = s.local_addr()?.port();
        let received = received.clone();
        sockets.push((
            port,
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                while let Ok(n) = s.recv(&mut buf).await {
                    received.fetch_add(n as u64, Ordering::Relaxed);
                }
            }),
        ));
    }
    let mut c = HttpConn::connect(addr, None).await?;
    let mut subscribed = 0;
    for (port, _) in &sockets {
        let path = format!(
            "/nacos/v1/ns/instance/list?serviceName=hostile-amp&udpPort={port}&clientIP=127.0.0.1"
        );
        if let Ok((200, _)) = c.request("GET", &path, b"").await {
            subscribed += 1;
        }
    }
    let (mut sent, mut registrations) = (0u64, 0u32);
    while Instant::now() + Duration::from_millis(1500) < deadline {
        let path = format!(
            "/nacos/v1/ns/instance?serviceName=hostile-amp&ip=10.9.{}.{}&port=9000&ephemeral=true",
            registrations / 250,
            registrations % 250 + 1
        );
        sent += (path.len() + 60) as u64; // request line and headers, roughly
        c.request("POST", &path, b"").await?;
        registrations += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Pushes (and their re-sends) still on the way.
    tokio::time::sleep_until(deadline).await;
    for (_, t) in sockets {
        t.abort();
    }
    let got = received.load(Ordering::Relaxed);
    Ok(format!(
        "{ports} UDP ports subscribed ({subscribed} queries answered 200); {registrations} registrations ({}) → {} of UDP pushes received ({:.0}×)",
        mb(sent),
        mb(got),
        got as f64 / sent.max(1) as f64
    ))
}

/// Registers `n` instances in one service (eight keep-alive connections, at most half the
/// attack's time), then four clients fetch the whole list in a loop.
async fn big_list(addr: SocketAddr, n: usize, deadline: Instant) -> Result<String> {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let register_until = start + (deadline - start) / 2;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = HttpConn::connect(addr, None).await?;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= n || Instant::now() >= register_until {
                    return anyhow::Ok(());
                }
                let path = format!(
                    "/nacos/v1/ns/instance?serviceName=hostile-big&ip=10.{}.{}.{}&port=7000&ephemeral=true&metadata=%7B%22app%22%3A%22hostile%22%7D",
                    i >> 16,
                    (i >> 8) & 255,
                    i & 255
                );
                let (status, body) = c.request("POST", &path, b"").await?;
                if status != 200 {
                    bail!("registration {i}: HTTP {status} {}", String::from_utf8_lossy(&body));
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let registered = (next.load(Ordering::Relaxed) as usize).min(n) as u64;
    let reg_secs = start.elapsed().as_secs_f64();
    let lists = Arc::new(AtomicU64::new(0));
    let largest = Arc::new(AtomicU64::new(0));
    let smallest = Arc::new(AtomicU64::new(u64::MAX));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (lists, largest, smallest) = (lists.clone(), largest.clone(), smallest.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let r = tokio::time::timeout_at(deadline, async {
                    let mut c = HttpConn::connect(addr, None).await?;
                    c.request_discard(
                        "GET",
                        "/nacos/v1/ns/instance/list?serviceName=hostile-big",
                        b"",
                    )
                    .await
                })
                .await;
                match r {
                    Ok(Ok((200, len))) => {
                        lists.fetch_add(1, Ordering::Relaxed);
                        largest.fetch_max(len, Ordering::Relaxed);
                        smallest.fetch_min(len, Ordering::Relaxed);
                    }
                    Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    Err(_) => break,
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    Ok(format!(
        "{registered} instances registered in {reg_secs:.1} s; {} whole lists of {}–{} fetched by 4 clients",
        lists.load(Ordering::Relaxed),
        mb(smallest.load(Ordering::Relaxed).min(largest.load(Ordering::Relaxed))),
        mb(largest.load(Ordering::Relaxed))
    ))
}
