//! The attacked processes (`rdubbo demo provider`, `rdubbo registry`, the demo provider as
//! an application with QoS and metrics), each started fresh, watched by PID and stopped by
//! PID; and the legit clients that call them at a steady rate.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::net;

/// Which process an attack hits.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// `rdubbo demo provider --protocol dubbo`.
    Dubbo,
    /// `rdubbo demo provider --protocol jsonrpc`.
    JsonRpc,
    /// `rdubbo registry --in-memory` (short beat and delete timeouts).
    Registry,
    /// `rdubbo registry --in-memory --username … --password …`.
    RegistryAuth,
    /// `rdubbo registry --in-memory` with its default beat and delete timeouts (instances
    /// registered by the attack stay for the whole attack).
    RegistryDefault,
    /// `rdubbo demo provider --config` with dubbo, QoS and metrics.
    App,
}

impl Kind {
    /// Short name for the table.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Dubbo => "provider (dubbo)",
            Kind::JsonRpc => "provider (jsonrpc)",
            Kind::Registry => "registry",
            Kind::RegistryAuth => "registry (auth)",
            Kind::RegistryDefault => "registry",
            Kind::App => "application",
        }
    }
}

/// Credentials of the registry started with auth.
pub const USER: &str = "nacos";
/// Password of [`USER`].
pub const PASSWORD: &str = "hostile-bench-pw";

/// A started process: its PID and the addresses it announced (`dubbo`, `jsonrpc`,
/// `registry`, `qos`, `metrics`). Killed on drop (by PID) if not stopped before.
pub struct Target {
    child: Child,
    /// Its process id.
    pub pid: u32,
    /// Announced addresses by name.
    pub addrs: HashMap<&'static str, SocketAddr>,
    config_file: Option<PathBuf>,
}

fn addr_after(line: &str, marker: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(marker)? + marker.len()..];
    let end = rest.find(['/', ' ', '?']).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

impl Target {
    /// Starts a fresh `kind` process from the `rdubbo` binary at `exe`; waits for its
    /// addresses.
    pub async fn start(exe: &Path, kind: Kind, scratch: &Path) -> Result<Target> {
        let mut cmd = Command::new(exe);
        let mut config_file = None;
        let mut wanted: Vec<&'static str> = Vec::new();
        match kind {
            Kind::Dubbo | Kind::JsonRpc => {
                let proto = if kind == Kind::Dubbo {
                    "dubbo"
                } else {
                    "jsonrpc"
                };
                cmd.args([
                    "demo",
                    "provider",
                    "--protocol",
                    proto,
                    "--listen",
                    "127.0.0.1:0",
                ]);
                wanted.push(if kind == Kind::Dubbo {
                    "dubbo"
                } else {
                    "jsonrpc"
                });
            }
            Kind::Registry | Kind::RegistryAuth | Kind::RegistryDefault => {
                cmd.args(["registry", "--in-memory", "--listen", "127.0.0.1:0"]);
                if kind != Kind::RegistryDefault {
                    // Short timeouts: an instance whose beats are refused is unhealthy
                    // after 2 s and would be deleted after 4 s, well within one attack.
                    cmd.args(["--beat-timeout", "2", "--delete-timeout", "4"]);
                }
                if kind == Kind::RegistryAuth {
                    cmd.args(["--username", USER, "--password", PASSWORD]);
                }
                wanted.push("registry");
            }
            Kind::App => {
                let path = scratch.join(format!("hostile-app-{}.toml", std::process::id()));
                std::fs::write(
                    &path,
                    "[application]\nname = \"hostile-bench-app\"\n\n\
                     [protocols.dubbo]\nport = 0\n\n\
                     [provider.services.demo]\ninterface = \"org.apache.dubbo.demo.DemoService\"\n\
                     version = \"1.0.0\"\n\n\
                     [metrics]\nlisten = \"127.0.0.1:0\"\n\n[qos]\nport = 0\n",
                )?;
                cmd.arg("demo").arg("provider").arg("--config").arg(&path);
                config_file = Some(path);
                wanted.extend(["dubbo", "qos", "metrics"]);
            }
        }
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::null())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", exe.display()))?;
        let pid = child.id().context("no pid")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut addrs = HashMap::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !wanted.iter().all(|w| addrs.contains_key(w)) {
            let line = match tokio::time::timeout_at(deadline, lines.next_line()).await {
                Ok(Ok(Some(l))) => l,
                Ok(_) => {
                    signal_and_reap(&mut child).await;
                    bail!("{} exited before announcing its addresses", kind.label());
                }
                Err(_) => {
                    signal_and_reap(&mut child).await;
                    bail!("{}: no addresses within 20 s", kind.label());
                }
            };
            for (name, marker) in [
                ("dubbo", "dubbo://"),
                ("jsonrpc", "jsonrpc://"),
                ("registry", "nacos://"),
                ("metrics", "metrics on http://"),
                ("qos", "qos on "),
            ] {
                if wanted.contains(&name) && !addrs.contains_key(name) {
                    if let Some(a) = addr_after(&line, marker) {
                        addrs.insert(name, a);
                    }
                }
            }
        }
        // Keep reading so that the process never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Target {
            child,
            pid,
            addrs,
            config_file,
        })
    }

    /// The announced address `name`.
    pub fn addr(&self, name: &str) -> Result<SocketAddr> {
        self.addrs
            .get(name)
            .copied()
            .with_context(|| format!("no {name} address"))
    }

    /// Whether the process still runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, up to 5 s to exit, then SIGKILL; by PID.
    pub async fn stop(mut self) {
        signal_and_reap(&mut self.child).await;
        if let Some(p) = self.config_file.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(p) = self.config_file.take() {
            let _ = std::fs::remove_file(p);
        }
        // kill_on_drop sends SIGKILL to this PID if it still runs.
    }
}

async fn signal_and_reap(child: &mut Child) {
    if let Some(pid) = child.id() {
        net::signal(pid, libc::SIGTERM);
        if tokio::time::timeout(Duration::from_secs(5), child.wait())
            .await
            .is_ok()
        {
            return;
        }
        net::signal(pid, libc::SIGKILL);
    }
    let _ = child.wait().await;
}

/// Peak RSS of a PID, sampled every 50 ms until stopped; kills the process (SIGKILL, by
/// PID) past `cap_kib` so that a regression cannot take the machine down.
pub struct RssWatch {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(u64, bool)>,
}

impl RssWatch {
    /// Starts watching `pid`.
    pub fn start(pid: u32, cap_kib: u64) -> RssWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let task = tokio::spawn(async move {
            let mut peak = 0u64;
            let mut capped = false;
            while !s.load(Ordering::Relaxed) {
                let Some(kib) = net::rss_kib(pid) else { break };
                peak = peak.max(kib);
                if kib > cap_kib && !capped {
                    capped = true;
                    net::signal(pid, libc::SIGKILL);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (peak, capped)
        });
        RssWatch { stop, task }
    }

    /// Stops watching: (peak KiB, killed at the cap).
    pub async fn finish(self) -> (u64, bool) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or((0, false))
    }
}

/// The future of one legit operation.
pub type OpFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send>>;

/// One legit operation (a call, a beat, a `/live`…).
pub type Op = Arc<dyn Fn() -> OpFuture + Send + Sync>;

/// What the legit client saw.
#[derive(Default)]
pub struct LegitStats {
    /// Operations that succeeded within the timeout.
    pub ok: u64,
    /// Operations that failed or timed out.
    pub failed: u64,
    /// Latency of the successful operations, ms.
    pub p50_ms: f64,
    /// Latency of the successful operations, ms.
    pub p99_ms: f64,
    /// Slowest successful operation, ms.
    pub max_ms: f64,
    /// The first failure.
    pub first_error: Option<String>,
    /// When the first and the last failed operation started, seconds after the start.
    pub failed_between: Option<(f64, f64)>,
    /// Failures by the step that failed (the error text up to its first `:`).
    pub failed_by_step: std::collections::BTreeMap<String, u64>,
}

/// A legit client: starts `op` every `period` (each in its own task, so a slow one does not
/// delay the next), each bounded by `timeout`, until [`Legit::finish`].
pub struct Legit {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<LegitStats>,
}

impl Legit {
    /// Starts calling.
    pub fn start(op: Op, period: Duration, timeout: Duration) -> Legit {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let task = tokio::spawn(async move {
            let (tx, mut rx) =
                tokio::sync::mpsc::unbounded_channel::<(Duration, Duration, Result<()>)>();
            let t0 = Instant::now();
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut running = Vec::new();
            while !s.load(Ordering::Relaxed) {
                tick.tick().await;
                let (op, tx) = (op.clone(), tx.clone());
                running.push(tokio::spawn(async move {
                    let t = Instant::now();
                    let at = t - t0;
                    let r = match tokio::time::timeout(timeout, op()).await {
                        Ok(r) => r,
                        Err(_) => Err(anyhow::anyhow!("no answer within {timeout:?}")),
                    };
                    let _ = tx.send((at, t.elapsed(), r));
                }));
            }
            drop(tx);
            for t in running {
                let _ = t.await;
            }
            let mut hist = Histogram::<u64>::new(3).expect("histogram");
            let mut stats = LegitStats::default();
            while let Some((at, lat, r)) = rx.recv().await {
                match r {
                    Ok(()) => {
                        stats.ok += 1;
                        let _ = hist.record(lat.as_micros() as u64);
                    }
                    Err(e) => {
                        stats.failed += 1;
                        let text = format!("{e:#}");
                        let step = text.split(':').next().unwrap_or("").to_owned();
                        *stats.failed_by_step.entry(step).or_default() += 1;
                        stats.first_error.get_or_insert(text);
                        let at = at.as_secs_f64();
                        let (a, b) = stats.failed_between.get_or_insert((at, at));
                        *a = a.min(at);
                        *b = b.max(at);
                    }
                }
            }
            if stats.ok > 0 {
                stats.p50_ms = hist.value_at_quantile(0.5) as f64 / 1e3;
                stats.p99_ms = hist.value_at_quantile(0.99) as f64 / 1e3;
                stats.max_ms = hist.max() as f64 / 1e3;
            }
            stats
        });
        Legit { stop, task }
    }

    /// Stops starting operations, waits for those running, returns the figures.
    pub async fn finish(self) -> LegitStats {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or_default()
    }
}
