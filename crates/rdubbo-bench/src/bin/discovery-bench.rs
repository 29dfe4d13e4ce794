//! `discovery-bench`: one consumer following 1,000 applications × 10 instances through
//! Dubbo 3 application-level discovery (issue #18).
//!
//! Everything runs on loopback: a real ZooKeeper (Debian package `zookeeper`, started by
//! `rdubbo-testkit` on a port of its own); a child process (`providers`) with one real
//! rdubbo provider per application (`bench-app-<i>` exporting
//! `org.apache.dubbo.bench.App<i>Service` over dubbo, `register-mode` instance: it writes
//! its `/services/<app>/<ip:port>` instance, its `/dubbo/mapping/<interface>` and serves
//! its MetadataService). The same child then registers 9 more instances of every
//! application, as copies of the provider's own instance (same revision, as Java's
//! instances of one application with the same services share it) at other loopback
//! addresses `127.0.x.y` and the provider's port — its listener on `0.0.0.0` answers them
//! all. The consumer process (this one) builds one `Reference` per interface
//! (`FORCE_APPLICATION`) and waits until every directory holds its 10 providers; then the
//! child withdraws one instance of every application (1,000 changes) and the consumer
//! waits until every directory holds 9.
//!
//! Measured in the consumer process only: wall time, CPU (user + system) and resident
//! memory, and the CPU it spends in 10 s while nothing changes; the child's and
//! ZooKeeper's costs are not counted.
//!
//! `cargo run --release -p rdubbo-bench --bin discovery-bench -- run`

#[path = "../procstats.rs"]
mod procstats;

use std::io::Write;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use rdubbo::consumer::Reference;
use rdubbo::discovery::MigrationStep;
use rdubbo::provider::Provider;
use rdubbo::{
    BoxFuture, Invocation, Invoker, RegisterMode, Registry, Reply, RpcError, RpcResult,
    ServiceInfo, ServiceInstance,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use procstats::{cpu_ms, rss_kib};

#[derive(Parser)]
#[command(
    name = "discovery-bench",
    about = "one consumer following many applications by application-level discovery"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// The benchmark: ZooKeeper, the providers' child process, the consumer here.
    Run {
        /// Applications (one interface each).
        #[arg(long, default_value_t = 1000)]
        apps: usize,
        /// Instances per application.
        #[arg(long, default_value_t = 10)]
        instances: usize,
        /// Seconds to wait for convergence at most (each phase).
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// (internal) the providers and their instances.
    Providers {
        /// The ZooKeeper registry URL.
        #[arg(long)]
        registry: String,
        #[arg(long)]
        apps: usize,
        #[arg(long)]
        instances: usize,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.cmd {
        Cmd::Providers {
            registry,
            apps,
            instances,
        } => rt.block_on(providers(&registry, apps, instances)),
        Cmd::Run {
            apps,
            instances,
            timeout,
        } => {
            if apps == 0 || instances < 2 {
                bail!("--apps must be positive and --instances at least 2");
            }
            let zk = rdubbo_testkit::ZkServer::start();
            let url = zk.registry_url("session=30000&file.cache=false");
            let result = rt.block_on(run(&url, apps, instances, Duration::from_secs(timeout)));
            drop(zk);
            result
        }
    }
}

fn interface(i: usize) -> String {
    format!("org.apache.dubbo.bench.App{i}Service")
}

fn app(i: usize) -> String {
    format!("bench-app-{i}")
}

/// The host of copy `k` (1-based) of application `i`'s instance.
fn host(i: usize, k: usize, instances: usize) -> String {
    let n = i * instances + k;
    format!(
        "127.{}.{}.{}",
        1 + n / 62_500,
        1 + (n / 250) % 250,
        1 + n % 250
    )
}

/// Answers `echo` with its first argument.
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

/// The child: one provider per application, then `instances - 1` copies of each
/// instance; `READY` on stdout. A `change` line on stdin withdraws one copy per
/// application (`CHANGED` when written).
async fn providers(url: &str, apps: usize, instances: usize) -> Result<()> {
    let registry: Arc<dyn Registry> = rdubbo::registry::connect(url).await?;
    let discovery = registry
        .service_discovery()
        .context("the registry has no service discovery")?;
    let mut running = Vec::with_capacity(apps);
    for i in 0..apps {
        let info = ServiceInfo {
            interface: interface(i),
            version: None,
            group: None,
            methods: vec!["echo".into()],
            ..Default::default()
        };
        let p = Provider::builder("0.0.0.0:0".parse()?)
            .application(&app(i))
            .register_mode(RegisterMode::Instance)
            .unregister_wait(Duration::ZERO)
            .registry(registry.clone())
            .export(info, Arc::new(Echo))
            .start()
            .await?;
        running.push(p);
    }
    // The copies: the provider's own instance (its revision, its MetadataService port) at
    // other loopback addresses.
    let mut copies: Vec<Vec<ServiceInstance>> = Vec::with_capacity(apps);
    for i in 0..apps {
        let own = loop {
            let found = discovery.instances(&app(i)).await?;
            if let Some(own) = found.into_iter().next() {
                break own;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let mut mine = Vec::with_capacity(instances - 1);
        for k in 1..instances {
            let mut copy = own.clone();
            copy.host = host(i, k, instances);
            discovery.register(&copy).await?;
            mine.push(copy);
        }
        copies.push(mine);
    }
    println!("READY");
    std::io::stdout().flush()?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        if line.trim() == "change" {
            for mine in &mut copies {
                if let Some(gone) = mine.pop() {
                    discovery.unregister(&gone).await?;
                }
            }
            println!("CHANGED");
            std::io::stdout().flush()?;
        }
    }
    for p in running {
        p.stop().await;
    }
    registry.destroy().await;
    Ok(())
}

/// Waits until every reference lists `count` providers; how long that took.
async fn converge(refs: &[Reference], count: usize, timeout: Duration) -> Result<Duration> {
    let t0 = Instant::now();
    loop {
        let short = refs
            .iter()
            .filter(|r| r.directory().providers().len() != count)
            .count();
        if short == 0 {
            return Ok(t0.elapsed());
        }
        if t0.elapsed() > timeout {
            bail!("{short} references still without {count} providers after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

struct Phase {
    what: &'static str,
    wall: Duration,
    cpu_ms: f64,
    rss_mib: f64,
}

async fn run(url: &str, apps: usize, instances: usize, timeout: Duration) -> Result<()> {
    let exe = std::env::current_exe()?;
    let mut child = tokio::process::Command::new(exe)
        .args([
            "providers",
            "--registry",
            url,
            "--apps",
            &apps.to_string(),
            "--instances",
            &instances.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut child_out = BufReader::new(child.stdout.take().context("no stdout")?).lines();
    let mut child_in = child.stdin.take().context("no stdin")?;
    let t = Instant::now();
    let line = tokio::time::timeout(timeout, child_out.next_line())
        .await
        .context("providers not ready in time")??;
    if line.as_deref() != Some("READY") {
        bail!("providers: {line:?}");
    }
    eprintln!(
        "{apps} providers and {} instances registered in {:.1} s",
        apps * instances,
        t.elapsed().as_secs_f64()
    );

    let rss0 = rss_kib();
    let cpu0 = cpu_ms();
    let t0 = Instant::now();
    let registry = rdubbo::registry::connect(url).await?;
    // Built all at once (each reference reads its mapping, instances and metadata on its
    // own task), as a consumer that starts its references in parallel.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..apps {
        let registry = registry.clone();
        tasks.spawn(async move {
            let r = Reference::builder(&interface(i))
                .application("bench-consumer")
                .registry(registry)
                .migration_step(MigrationStep::ForceApplication)
                .check(false)
                .build()
                .await;
            (i, r)
        });
    }
    let mut slots: Vec<Option<Reference>> = (0..apps).map(|_| None).collect();
    while let Some(done) = tasks.join_next().await {
        let (i, r) = done?;
        slots[i] = Some(r?);
    }
    let refs: Vec<Reference> = slots.into_iter().flatten().collect();
    let built = t0.elapsed();
    converge(&refs, instances, timeout).await?;
    let mut phases = vec![Phase {
        what: "start: every instance seen",
        wall: t0.elapsed(),
        cpu_ms: cpu_ms() - cpu0,
        rss_mib: rss_kib() / 1024.0,
    }];
    eprintln!("references built in {:.2} s", built.as_secs_f64());
    // Every reference works: one call each through the first provider it picks.
    for (i, r) in refs.iter().enumerate().step_by((apps / 10).max(1)) {
        let v = r
            .invoke(Invocation::new(
                interface(i).as_str(),
                "echo",
                vec![rdubbo::Value::from(i as i64)],
            ))
            .await?;
        if v.decode::<i64>().map_err(anyhow::Error::msg)? != i as i64 {
            bail!("echo of reference {i}");
        }
    }
    let fetches = rdubbo::discovery::metadata_fetches();
    // Nothing changes for a while: what the consumer spends idle.
    let (cpu_idle, t_idle) = (cpu_ms(), Instant::now());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle_ms_per_s = (cpu_ms() - cpu_idle) / t_idle.elapsed().as_secs_f64();

    let cpu1 = cpu_ms();
    let t1 = Instant::now();
    child_in.write_all(b"change\n").await?;
    child_in.flush().await?;
    // When the child has written its last change (its own deletes take most of the time).
    let written = tokio::spawn(async move {
        let line = tokio::time::timeout(timeout, child_out.next_line()).await;
        (Instant::now(), line)
    });
    converge(&refs, instances - 1, timeout).await?;
    let converged = Instant::now();
    phases.push(Phase {
        what: "instance changes (one withdrawn per app)",
        wall: t1.elapsed(),
        cpu_ms: cpu_ms() - cpu1,
        rss_mib: rss_kib() / 1024.0,
    });
    let (written_at, line) = written.await?;
    if line??.as_deref() != Some("CHANGED") {
        bail!("providers did not confirm the changes");
    }
    let after_last = converged.saturating_duration_since(written_at);
    let fds = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0);

    println!(
        "{apps} applications x {instances} instances, ZooKeeper, FORCE_APPLICATION; consumer RSS before: {:.1} MiB; metadata fetches: {fetches}",
        rss0 / 1024.0
    );
    println!(
        "consumer file descriptors (connections included): {fds}; changes written by the child in {:.2} s, converged {:.0} ms after the last",
        (written_at - t1).as_secs_f64(),
        after_last.as_secs_f64() * 1000.0
    );
    println!("consumer CPU while nothing changes (10 s): {idle_ms_per_s:.2} ms/s");
    println!("| phase | wall s | consumer CPU s | consumer RSS MiB |\n|---|---:|---:|---:|");
    for p in &phases {
        println!(
            "| {} | {:.2} | {:.2} | {:.1} |",
            p.what
                .replace("instance changes", &format!("{apps} instance changes")),
            p.wall.as_secs_f64(),
            p.cpu_ms / 1000.0,
            p.rss_mib
        );
    }
    for r in &refs {
        r.close().await;
    }
    registry.destroy().await;
    drop(child_in);
    let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    Ok(())
}
