//! `registry-bench`: figures of the ZooKeeper registry against a real ZooKeeper server
//! (Debian package `zookeeper`, started on a loopback port of its own):
//!
//! - `notify`: time from a provider's registration to the subscriber's notification;
//! - `recovery`: time to full recovery after a ZooKeeper restart and after a session
//!   expiry (restart with wiped data);
//! - `scale`: memory and CPU of one consumer process watching S services × P providers.
//!
//! `cargo run --release -p rdubbo-bench --bin registry-bench -- all`

use std::io::{BufRead, BufReader, Write as _};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod procstats;

use procstats::{cpu_ms, rss_kib};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use rdubbo_core::{NotifyListener, Registry, Url};
use rdubbo_registry_zookeeper::ZookeeperRegistry;
use rdubbo_testkit::ZkServer;
use tokio::sync::mpsc;

#[derive(Parser)]
#[command(name = "registry-bench", about = "ZooKeeper registry figures")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Registration → notification latency.
    Notify {
        #[arg(long, default_value_t = 300)]
        runs: usize,
    },
    /// Recovery after a ZooKeeper restart and after a session expiry.
    Recovery {
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// One consumer process watching services × providers.
    Scale {
        #[arg(long, default_value_t = 1000)]
        services: usize,
        #[arg(long, default_value_t = 10)]
        providers: usize,
    },
    /// Everything above with default sizes.
    All,
    /// (internal) the watching consumer of `scale`.
    Watcher {
        #[arg(long)]
        zk: String,
        #[arg(long)]
        services: usize,
        #[arg(long)]
        providers: usize,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match cli.cmd {
        Cmd::Notify { runs } => rt.block_on(notify(runs)),
        Cmd::Recovery { runs } => rt.block_on(recovery(runs)),
        Cmd::Scale {
            services,
            providers,
        } => rt.block_on(scale(services, providers)),
        Cmd::All => rt.block_on(async {
            notify(300).await?;
            recovery(5).await?;
            scale(1000, 10).await
        }),
        Cmd::Watcher {
            zk,
            services,
            providers,
        } => rt.block_on(watcher(zk, services, providers)),
    }
}

fn url(s: &str) -> Result<Url> {
    s.parse().with_context(|| format!("bad URL {s}"))
}

async fn connect(zk: &str, session_ms: u64) -> Result<ZookeeperRegistry> {
    let u = url(&format!(
        "zookeeper://{zk}?session={session_ms}&retry.period=500&file.cache=false"
    ))?;
    Ok(ZookeeperRegistry::connect(&u).await?)
}

fn provider(interface: &str, port: u16) -> Result<Url> {
    url(&format!(
        "jsonrpc://127.0.0.1:{port}/{interface}?application=bench&interface={interface}&methods=echo&side=provider"
    ))
}

fn consumer(interface: &str) -> Result<Url> {
    url(&format!(
        "consumer://127.0.0.1/{interface}?category=providers&interface={interface}&side=consumer"
    ))
}

/// Forwards each providers notification (count of real providers) with its arrival time.
struct Probe(mpsc::UnboundedSender<(Instant, Vec<Url>)>);

impl NotifyListener for Probe {
    fn notify(&self, urls: Vec<Url>) {
        let _ = self.0.send((Instant::now(), urls));
    }
}

fn real(urls: &[Url]) -> usize {
    urls.iter().filter(|u| u.protocol() != "empty").count()
}

fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() as f64 - 1.0) * q).round() as usize]
}

async fn wait_count(
    rx: &mut mpsc::UnboundedReceiver<(Instant, Vec<Url>)>,
    n: usize,
    timeout: Duration,
) -> Result<Instant> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some((t, urls))) if real(&urls) == n => return Ok(t),
            Ok(Some(_)) => continue,
            _ => bail!("no notification with {n} providers within {timeout:?}"),
        }
    }
}

async fn notify(runs: usize) -> Result<()> {
    let zk = ZkServer::start();
    let prov = connect(&zk.address(), 30_000).await?;
    let cons = connect(&zk.address(), 30_000).await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    cons.subscribe(&consumer("bench.Notify")?, Arc::new(Probe(tx)))
        .await?;
    wait_count(&mut rx, 0, Duration::from_secs(5)).await?;
    let mut add = Vec::with_capacity(runs);
    let mut remove = Vec::with_capacity(runs);
    for i in 0..runs {
        let p = provider("bench.Notify", 20_000 + (i % 10_000) as u16)?;
        let t = Instant::now();
        prov.register(&p).await?;
        let seen = wait_count(&mut rx, 1, Duration::from_secs(5)).await?;
        add.push(seen.duration_since(t).as_secs_f64() * 1e3);
        let t = Instant::now();
        prov.unregister(&p).await?;
        let seen = wait_count(&mut rx, 0, Duration::from_secs(5)).await?;
        remove.push(seen.duration_since(t).as_secs_f64() * 1e3);
    }
    println!("## registration → notification ({runs} runs, one ZooKeeper on loopback)\n");
    println!("| event | median ms | p90 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|");
    for (name, v) in [
        ("register → subscriber notified", &mut add),
        ("unregister → subscriber notified", &mut remove),
    ] {
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} | {:.2} |",
            quantile(v, 0.5),
            quantile(v, 0.9),
            quantile(v, 0.99),
            quantile(v, 1.0)
        );
    }
    println!();
    prov.destroy().await;
    cons.destroy().await;
    Ok(())
}

async fn recovery(runs: usize) -> Result<()> {
    let mut zk = ZkServer::start();
    let session_ms = 4_000;
    let prov = connect(&zk.address(), session_ms).await?;
    let cons = connect(&zk.address(), session_ms).await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    cons.subscribe(&consumer("bench.Recovery")?, Arc::new(Probe(tx)))
        .await?;
    let base = provider("bench.Recovery", 20_001)?;
    prov.register(&base).await?;
    wait_count(&mut rx, 1, Duration::from_secs(5)).await?;
    let mut restart = Vec::new();
    let mut restart_watch = Vec::new();
    let mut expiry = Vec::new();
    let mut expiry_watch = Vec::new();
    for i in 0..runs * 2 {
        let wipe = i % 2 == 1;
        zk.stop();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        if wipe {
            zk.wipe_data();
        }
        let old_session = prov.session_id();
        zk.restart();
        let t0 = Instant::now();
        // Full recovery: the provider's node exists (re-created after an expiry) and the
        // consumer's watch is armed again (a new registration is notified).
        loop {
            let session_ok =
                !wipe || (prov.session_id().is_some() && prov.session_id() != old_session);
            if session_ok && cons.is_available() && prov.is_available() {
                let found = cons
                    .lookup(&consumer("bench.Recovery")?)
                    .await
                    .unwrap_or_default();
                if found.contains(&base) {
                    break;
                }
            }
            if t0.elapsed() > Duration::from_secs(60) {
                bail!("no recovery within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let nodes_back = t0.elapsed().as_secs_f64() * 1e3;
        while rx.try_recv().is_ok() {}
        let probe = provider("bench.Recovery", 21_000 + i as u16)?;
        prov.register(&probe).await?;
        wait_count(&mut rx, 2, Duration::from_secs(30)).await?;
        let watch_back = t0.elapsed().as_secs_f64() * 1e3;
        prov.unregister(&probe).await?;
        wait_count(&mut rx, 1, Duration::from_secs(30)).await?;
        if wipe {
            expiry.push(nodes_back);
            expiry_watch.push(watch_back);
        } else {
            restart.push(nodes_back);
            restart_watch.push(watch_back);
        }
    }
    println!(
        "## recovery ({runs} runs each, session timeout {session_ms} ms, ZooKeeper down 1.5 s)\n"
    );
    println!("Measured from the moment the restarted ZooKeeper serves requests.\n");
    println!("| event | nodes back, median ms | max ms | watches re-armed (new registration seen), median ms | max ms |");
    println!("|---|---:|---:|---:|---:|");
    for (name, a, b) in [
        (
            "restart (sessions survive)",
            &mut restart,
            &mut restart_watch,
        ),
        (
            "restart with wiped data (session expiry)",
            &mut expiry,
            &mut expiry_watch,
        ),
    ] {
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} | {:.0} |",
            quantile(a, 0.5),
            quantile(a, 1.0),
            quantile(b, 0.5),
            quantile(b, 1.0)
        );
    }
    println!();
    prov.destroy().await;
    cons.destroy().await;
    Ok(())
}

fn rusage() -> (f64, f64) {
    (cpu_ms(), rss_kib())
}

/// The watching consumer: subscribes to every service, reports when all lists are
/// complete, idles, then follows a change storm.
async fn watcher(zk: String, services: usize, providers: usize) -> Result<()> {
    let (cpu0, rss0) = rusage();
    let reg = connect(&zk, 30_000).await?;
    let counts: Arc<Vec<Mutex<usize>>> = Arc::new((0..services).map(|_| Mutex::new(0)).collect());
    let notifications = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let t0 = Instant::now();
    for i in 0..services {
        let counts = counts.clone();
        let n = notifications.clone();
        let listener = move |urls: Vec<Url>| {
            n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            *counts[i].lock().unwrap() = real(&urls);
        };
        reg.subscribe(&consumer(&format!("bench.S{i}"))?, Arc::new(listener))
            .await?;
    }
    let all = |n: usize| counts.iter().all(|c| *c.lock().unwrap() == n);
    while !all(providers) {
        if t0.elapsed() > Duration::from_secs(120) {
            bail!("lists incomplete after 120 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let ready_ms = t0.elapsed().as_secs_f64() * 1e3;
    let (cpu1, rss1) = rusage();
    println!(
        "ready {ready_ms:.0} {:.0} {:.0} {:.0}",
        cpu1 - cpu0,
        rss0,
        rss1
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (cpu2, _) = rusage();
    println!("idle {:.1}", cpu2 - cpu1);
    let t1 = Instant::now();
    while !all(providers - 1) {
        if t1.elapsed() > Duration::from_secs(120) {
            bail!("storm not followed after 120 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (cpu3, rss3) = rusage();
    println!(
        "storm {:.0} {:.0} {:.0} {}",
        t1.elapsed().as_secs_f64() * 1e3,
        cpu3 - cpu2,
        rss3,
        notifications.load(std::sync::atomic::Ordering::Relaxed)
    );
    std::io::stdout().flush()?;
    reg.destroy().await;
    Ok(())
}

async fn scale(services: usize, providers: usize) -> Result<()> {
    let zk = ZkServer::start();
    // P provider processes' worth of sessions, each registering one node per service.
    let mut regs = Vec::new();
    for _ in 0..providers {
        regs.push(Arc::new(connect(&zk.address(), 30_000).await?));
    }
    let t = Instant::now();
    let mut tasks = Vec::new();
    for (p, reg) in regs.iter().enumerate() {
        let reg = reg.clone();
        tasks.push(tokio::spawn(async move {
            for s in 0..services {
                let u = provider(&format!("bench.S{s}"), 20_000 + p as u16)?;
                reg.register(&u).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let register_ms = t.elapsed().as_secs_f64() * 1e3;
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args(["watcher", "--zk", &zk.address()])
        .args([
            "--services",
            &services.to_string(),
            "--providers",
            &providers.to_string(),
        ])
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let ready = lines.next().context("watcher ended")??;
    let idle = lines.next().context("watcher ended")??;
    // The storm: the last provider leaves every service.
    let last = regs.last().context("no provider")?.clone();
    let t = Instant::now();
    for s in 0..services {
        last.unregister(&provider(
            &format!("bench.S{s}"),
            20_000 + providers as u16 - 1,
        )?)
        .await?;
    }
    let unregister_ms = t.elapsed().as_secs_f64() * 1e3;
    let storm = lines.next().context("watcher ended")??;
    let _ = child.wait();
    let r: Vec<f64> = ready
        .split(' ')
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let i: Vec<f64> = idle
        .split(' ')
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let s: Vec<f64> = storm
        .split(' ')
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if r.len() < 4 || i.is_empty() || s.len() < 4 {
        bail!("unexpected watcher output: {ready} / {idle} / {storm}");
    }
    println!("## one consumer watching {services} services × {providers} providers\n");
    println!(
        "{} ephemeral provider nodes registered by {providers} sessions in {register_ms:.0} ms.\n",
        services * providers
    );
    println!("| measure | value |");
    println!("|---|---:|");
    println!("| subscribe all + every list complete | {:.0} ms |", r[0]);
    println!("| CPU for that (user+sys) | {:.0} ms |", r[1]);
    println!(
        "| resident memory before connecting → with all lists | {:.1} → {:.1} MiB |",
        r[2] / 1024.0,
        r[3] / 1024.0
    );
    println!("| CPU while idle, 5 s | {:.1} ms |", i[0]);
    println!("| change storm: 1 provider leaves every service ({unregister_ms:.0} ms to unregister) → all lists updated | {:.0} ms |", s[0]);
    println!("| CPU for the storm | {:.0} ms |", s[1]);
    println!(
        "| resident memory after the storm | {:.1} MiB |",
        s[2] / 1024.0
    );
    println!("| notifications delivered in all | {:.0} |", s[3]);
    println!();
    for reg in regs {
        reg.destroy().await;
    }
    Ok(())
}
