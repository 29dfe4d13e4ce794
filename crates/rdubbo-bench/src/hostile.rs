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

#[path = "hostile/attacks.rs"]
mod attacks;
#[path = "hostile/legit.rs"]
mod legit;
#[path = "hostile/net.rs"]
mod net;
mod procstats;
#[path = "hostile/target.rs"]
mod target;

use attacks::*;
use legit::*;

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use tokio::time::Instant;

use net::IFACE;
use target::{Kind, Legit, LegitStats, RssWatch, Target};

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
