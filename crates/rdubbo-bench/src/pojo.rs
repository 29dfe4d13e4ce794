//! `pojo-bench`: a typed POJO call over the Dubbo protocol, rdubbo and Java Dubbo side by side.
//!
//! Every call is `com.example.UserService.echoUser(User)` of the interop sample user (name,
//! age, `Date`, `BigDecimal`, `List<String>`, nested `Address`, enum `Level`,
//! `Map<String, Integer>`), between four pairs of peers, measured round-robin in each round:
//!
//! - `rdubbo→rdubbo`: rdubbo's typed stub (in this process) calling an rdubbo provider (a child
//!   process: `pojo-bench provider`);
//! - `java→rdubbo`: a Java Dubbo 2.7.23 consumer (`java/PojoBenchDriver.java`, one JVM) calling
//!   the same rdubbo provider;
//! - `rdubbo→java`: rdubbo's typed stub calling Java Dubbo's provider
//!   (`com.example.JavaProvider` of crates/rdubbo/tests/java);
//! - `java→java`: a Java consumer calling the Java provider.
//!
//! Per pair and round: a serial run (latency percentiles) and `--inflight` calls kept in
//! flight for `--seconds` (calls/s; CPU time of each side's process over the window divided
//! by the calls). Java peers come from `rdubbo_testkit::java` (jars in ../shared/java-dubbo),
//! run with `--jvm-flags` (default: the JVM's own defaults, C2 included, and a 1 GiB heap) and
//! are warmed up before the first round.
//!
//! ```sh
//! cargo build --release -p rdubbo-bench
//! ./target/release/pojo-bench run --rounds 5 --seconds 3
//! ```

mod procstats;
mod services;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use rdubbo::dubbo::DubboClient;
use rdubbo::Url;
use rdubbo_testkit::java::{interop_sources, target_tmp, DubboVersion, JavaDubbo, ADD_OPENS};
use services::user_service::{sample, UserServiceClient};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

#[derive(Parser)]
#[command(about = "Typed POJO echo over dubbo: rdubbo and Java Dubbo side by side")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve UserService (and EchoService) over dubbo (used by `run`).
    Provider {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
    /// Run the comparison and print a Markdown table.
    Run(RunArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// Rounds; each pair is measured once per round, and medians are reported.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seconds of the throughput phase per pair and round.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Calls kept in flight in the throughput phase.
    #[arg(long, default_value_t = 64)]
    inflight: usize,
    /// Serial calls per pair and round (after a tenth as many for warm-up).
    #[arg(long, default_value_t = 4000)]
    serial_calls: u64,
    /// Seconds of load on each pair before the first round (the JIT of the Java peers).
    #[arg(long, default_value_t = 15.0)]
    warmup: f64,
    /// Flags of every JVM started (space-separated).
    #[arg(long, default_value = "-Xms1g -Xmx1g")]
    jvm_flags: String,
    /// Pairs to measure.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "rdubbo-rdubbo,java-rdubbo,rdubbo-java,java-java"
    )]
    pairs: Vec<String>,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.cmd {
        Cmd::Provider { listen } => rt.block_on(async {
            let server = services::dubbo_provider(listen).await?;
            println!("LISTENING {}", server.local_addr());
            std::future::pending::<()>().await;
            Ok(())
        }),
        Cmd::Run(args) => rt.block_on(run(args)),
    }
}

// ---------------------------------------------------------------- processes

/// A child process, killed (by PID) when dropped; its standard output read line by line.
struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Option<Lines<BufReader<ChildStdout>>>,
    name: String,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// The next line starting with `prefix` (other lines are logged to stderr).
    async fn expect(&mut self, prefix: &str, timeout: Duration) -> Result<String> {
        let lines = self.lines.as_mut().context("no stdout")?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let line = tokio::time::timeout_at(deadline, lines.next_line())
                .await
                .with_context(|| format!("{}: no `{prefix}` line within {timeout:?}", self.name))??
                .with_context(|| format!("{} exited while we waited for `{prefix}`", self.name))?;
            if let Some(rest) = line.strip_prefix(prefix) {
                return Ok(rest.trim().to_string());
            }
            if line.starts_with("FAILED") || line.starts_with("ERROR") {
                bail!("{}: {line}", self.name);
            }
            eprintln!("  [{}] {line}", self.name);
        }
    }

    async fn send(&mut self, command: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().context("no stdin")?;
        stdin.write_all(format!("{command}\n").as_bytes()).await?;
        stdin.flush().await?;
        Ok(())
    }

    /// Keeps reading stdout in the background so that the process never blocks on it.
    fn drain(&mut self) {
        if let Some(mut lines) = self.lines.take() {
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        }
    }

    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

fn spawn(mut cmd: Command, name: &str, log: Option<&Path>) -> Result<Proc> {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    match log {
        Some(path) => cmd.stderr(std::fs::File::create(path)?),
        None => cmd.stderr(Stdio::inherit()),
    };
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {name}"))?;
    let stdin = child.stdin.take();
    let lines = child.stdout.take().map(|o| BufReader::new(o).lines());
    Ok(Proc {
        child,
        stdin,
        lines,
        name: name.to_string(),
    })
}

struct Java {
    dubbo: JavaDubbo,
    /// Compiled interop classes and the benchmark driver.
    classpath: String,
    flags: Vec<String>,
    runs: PathBuf,
}

impl Java {
    fn prepare(flags: &str) -> Result<Java> {
        let dubbo = JavaDubbo::find(DubboVersion::V2_7)
            .ok_or_else(|| anyhow!("Java Dubbo 2.7.23 not found (see the SKIPPED line above)"))?;
        let classes = dubbo.compile(&interop_sources());
        let mut cp: Vec<String> = vec![classes.display().to_string()];
        cp.extend(dubbo.classpath().iter().map(|p| p.display().to_string()));
        let driver = target_tmp().join("pojo-bench-driver");
        std::fs::create_dir_all(&driver)?;
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("java/PojoBenchDriver.java");
        let status = std::process::Command::new("javac")
            .args(["-nowarn", "-proc:none", "-encoding", "UTF-8", "-d"])
            .arg(&driver)
            .arg("-cp")
            .arg(cp.join(":"))
            .arg(&src)
            .status()
            .context("javac")?;
        if !status.success() {
            bail!("javac failed for {}", src.display());
        }
        cp.insert(0, driver.display().to_string());
        let runs = target_tmp().join("pojo-bench-run");
        std::fs::create_dir_all(&runs)?;
        Ok(Java {
            dubbo,
            classpath: cp.join(":"),
            flags: flags.split_whitespace().map(str::to_string).collect(),
            runs,
        })
    }

    fn command(&self, main: &str, name: &str) -> Result<(Command, PathBuf)> {
        let dir = self.runs.join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let java = std::env::var_os("JAVA_HOME")
            .map(|h| PathBuf::from(h).join("bin/java"))
            .filter(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from("java"));
        let mut cmd = Command::new(java);
        cmd.args(&self.flags);
        for p in ADD_OPENS {
            cmd.arg("--add-opens")
                .arg(format!("java.base/{p}=ALL-UNNAMED"));
        }
        cmd.arg(format!(
            "-Dlog4j.configuration=file:{}",
            self.dubbo.dir().join("log4j.properties").display()
        ))
        .arg("-Ddubbo.application.logger=log4j")
        .arg(format!("-Duser.home={}", dir.display()))
        .arg("-cp")
        .arg(&self.classpath)
        .arg(main)
        .current_dir(&dir);
        let log = dir.join("stderr.log");
        Ok((cmd, log))
    }

    async fn provider(&self) -> Result<(Proc, SocketAddr)> {
        let port = rdubbo_testkit::free_port();
        let (mut cmd, log) = self.command("com.example.JavaProvider", "java-provider")?;
        cmd.args(["--port", &port.to_string(), "--exit-on-stdin-eof"]);
        let mut p = spawn(cmd, "java provider", Some(&log))?;
        p.expect("READY", Duration::from_secs(90)).await?;
        p.drain();
        Ok((p, SocketAddr::from(([127, 0, 0, 1], port))))
    }

    async fn driver(&self, target: SocketAddr, name: &str) -> Result<Proc> {
        let (mut cmd, log) = self.command("PojoBenchDriver", name)?;
        cmd.args([
            "--url",
            &format!("dubbo://{target}/com.example.UserService"),
        ]);
        let mut p = spawn(cmd, name, Some(&log))?;
        p.expect("READY", Duration::from_secs(90)).await?;
        Ok(p)
    }
}

async fn rdubbo_provider() -> Result<(Proc, SocketAddr)> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("provider");
    let mut p = spawn(cmd, "rdubbo provider", None)?;
    let addr = p
        .expect("LISTENING", Duration::from_secs(30))
        .await?
        .parse()?;
    p.drain();
    Ok((p, addr))
}

// ---------------------------------------------------------------- measurement

#[derive(Clone, Copy, Default)]
struct Sample {
    p50_us: f64,
    p90_us: f64,
    p99_us: f64,
    calls_per_sec: f64,
    consumer_cpu_us: f64,
    provider_cpu_us: f64,
    errors: u64,
}

/// A consumer: rdubbo's typed stub in this process, or a Java driver process.
enum Consumer {
    Rdubbo(UserServiceClient),
    Java(Box<Proc>),
}

impl Consumer {
    fn rdubbo(target: SocketAddr) -> Result<Consumer> {
        let url: Url = format!("dubbo://{target}/com.example.UserService?timeout=10000").parse()?;
        Ok(Consumer::Rdubbo(UserServiceClient::new(Arc::new(
            DubboClient::new(&url)?,
        ))))
    }

    async fn load(&mut self, inflight: usize, seconds: f64, provider_pid: u32) -> Result<Sample> {
        match self {
            Consumer::Rdubbo(client) => rdubbo_load(client, inflight, seconds, provider_pid).await,
            Consumer::Java(p) => {
                p.send(&format!(
                    "load {inflight} {seconds} {provider_pid} {}",
                    procstats::clock_ticks_per_second()
                ))
                .await?;
                let line = p
                    .expect("LOAD", Duration::from_secs_f64(seconds + 120.0))
                    .await?;
                let f = fields(&line);
                let calls = f("calls")?.max(1.0);
                let hz = procstats::clock_ticks_per_second();
                Ok(Sample {
                    calls_per_sec: calls / f("seconds")?,
                    consumer_cpu_us: f("cpu_ns")? / 1e3 / calls,
                    provider_cpu_us: f("peer_cpu_ticks")? / hz * 1e6 / calls,
                    errors: f("errors")? as u64,
                    ..Sample::default()
                })
            }
        }
    }

    async fn serial(&mut self, calls: u64) -> Result<(f64, f64, f64)> {
        match self {
            Consumer::Rdubbo(client) => {
                let user = sample(7);
                for _ in 0..calls / 10 {
                    client.echo_user(user.clone()).await?;
                }
                let mut hist = Histogram::<u64>::new(3)?;
                for _ in 0..calls {
                    let t = Instant::now();
                    let back = client.echo_user(user.clone()).await?;
                    hist.record(t.elapsed().as_nanos() as u64)?;
                    if back.age != 7 {
                        bail!("echoUser answered another user");
                    }
                }
                let q = |p| hist.value_at_quantile(p) as f64 / 1e3;
                Ok((q(0.5), q(0.9), q(0.99)))
            }
            Consumer::Java(p) => {
                p.send(&format!("serial {calls}")).await?;
                let line = p.expect("SERIAL", Duration::from_secs(300)).await?;
                let f = fields(&line);
                Ok((f("p50_us")?, f("p90_us")?, f("p99_us")?))
            }
        }
    }

    async fn warm(&mut self, seconds: f64, inflight: usize, provider_pid: u32) -> Result<()> {
        match self {
            Consumer::Rdubbo(_) => {
                self.load(inflight, seconds, provider_pid).await?;
            }
            Consumer::Java(p) => {
                p.send(&format!("warm {seconds} {inflight}")).await?;
                p.expect("WARMED", Duration::from_secs_f64(seconds + 120.0))
                    .await?;
            }
        }
        Ok(())
    }
}

/// `key=value` fields of a line.
fn fields(line: &str) -> impl Fn(&str) -> Result<f64> + '_ {
    move |key: &str| {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
            .with_context(|| format!("no {key}= in `{line}`"))?
            .parse::<f64>()
            .with_context(|| format!("bad {key}= in `{line}`"))
    }
}

async fn rdubbo_load(
    client: &UserServiceClient,
    inflight: usize,
    seconds: f64,
    provider_pid: u32,
) -> Result<Sample> {
    let calls = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let cpu_self0 = procstats::cpu_ms() / 1e3;
    let cpu_peer0 = procstats::process_cpu_seconds(provider_pid);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for _ in 0..inflight {
        let (client, calls, errors, stop) =
            (client.clone(), calls.clone(), errors.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let user = sample(7);
            while !stop.load(Ordering::Relaxed) {
                match client.echo_user(user.clone()).await {
                    Ok(_) => calls.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        if errors.fetch_add(1, Ordering::Relaxed) == 0 {
                            eprintln!("  error: {e}");
                        }
                        0
                    }
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
    let cpu_self = procstats::cpu_ms() / 1e3 - cpu_self0;
    let cpu_peer = procstats::process_cpu_seconds(provider_pid) - cpu_peer0;
    Ok(Sample {
        calls_per_sec: n / elapsed,
        consumer_cpu_us: cpu_self / n * 1e6,
        provider_cpu_us: cpu_peer / n * 1e6,
        errors: errors.load(Ordering::Relaxed),
        ..Sample::default()
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

struct Pair {
    name: &'static str,
    consumer: Consumer,
    provider_pid: u32,
}

async fn run(args: RunArgs) -> Result<()> {
    let wants = |p: &str| args.pairs.iter().any(|x| x == p);
    let need_java = ["java-rdubbo", "rdubbo-java", "java-java"]
        .iter()
        .any(|p| wants(p));
    let need_rdubbo_provider = wants("rdubbo-rdubbo") || wants("java-rdubbo");
    let java = if need_java {
        Some(Java::prepare(&args.jvm_flags)?)
    } else {
        None
    };
    let mut procs = Vec::new();
    let rdubbo = match need_rdubbo_provider {
        true => {
            let (p, addr) = rdubbo_provider().await?;
            let pid = p.pid();
            procs.push(p);
            Some((addr, pid))
        }
        false => None,
    };
    let java_provider = match (&java, wants("rdubbo-java") || wants("java-java")) {
        (Some(j), true) => {
            let (p, addr) = j.provider().await?;
            let pid = p.pid();
            procs.push(p);
            Some((addr, pid))
        }
        _ => None,
    };
    let mut pairs = Vec::new();
    for name in ["rdubbo-rdubbo", "java-rdubbo", "rdubbo-java", "java-java"] {
        if !wants(name) {
            continue;
        }
        let (java_consumer, target) = match name {
            "rdubbo-rdubbo" => (false, rdubbo),
            "java-rdubbo" => (true, rdubbo),
            "rdubbo-java" => (false, java_provider),
            _ => (true, java_provider),
        };
        let (addr, provider_pid) = target.context("provider missing")?;
        let consumer = if java_consumer {
            let j = java.as_ref().context("no Java")?;
            Consumer::Java(Box::new(j.driver(addr, &format!("driver-{name}")).await?))
        } else {
            Consumer::rdubbo(addr)?
        };
        pairs.push(Pair {
            name: match name {
                "rdubbo-rdubbo" => "rdubbo → rdubbo",
                "java-rdubbo" => "Java → rdubbo",
                "rdubbo-java" => "rdubbo → Java",
                _ => "Java → Java",
            },
            consumer,
            provider_pid,
        });
    }
    if pairs.is_empty() {
        bail!("no pairs to measure");
    }

    for p in &mut pairs {
        eprintln!("warming up {} for {} s…", p.name, args.warmup);
        p.consumer
            .warm(args.warmup, args.inflight, p.provider_pid)
            .await?;
    }
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); pairs.len()];
    for round in 0..args.rounds {
        for (i, p) in pairs.iter_mut().enumerate() {
            let (p50, p90, p99) = p.consumer.serial(args.serial_calls).await?;
            let mut s = p
                .consumer
                .load(args.inflight, args.seconds, p.provider_pid)
                .await?;
            (s.p50_us, s.p90_us, s.p99_us) = (p50, p90, p99);
            eprintln!(
                "round {} {:>16}: p50 {:>7.1} µs  p99 {:>7.1} µs  {:>8.0} calls/s  cpu consumer {:>6.1} µs/call provider {:>6.1} µs/call  errors {}",
                round + 1,
                p.name,
                s.p50_us,
                s.p99_us,
                s.calls_per_sec,
                s.consumer_cpu_us,
                s.provider_cpu_us,
                s.errors
            );
            samples[i].push(s);
        }
    }
    let java_java = pairs
        .iter()
        .position(|p| p.name == "Java → Java")
        .map(|i| median(samples[i].iter().map(|s| s.calls_per_sec).collect()));
    println!(
        "\nMedians of {} rounds; serial: {} calls; throughput: {} in flight for {} s; JVM flags `{}`.\n",
        args.rounds, args.serial_calls, args.inflight, args.seconds, args.jvm_flags
    );
    println!("| consumer → provider | serial p50 µs | p90 µs | p99 µs | calls/s ({} in flight) | vs Java → Java | consumer CPU µs/call | provider CPU µs/call | errors |", args.inflight);
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (i, p) in pairs.iter().enumerate() {
        let m = |f: fn(&Sample) -> f64| median(samples[i].iter().map(f).collect());
        let tput = m(|s| s.calls_per_sec);
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.0} | {} | {:.1} | {:.1} | {} |",
            p.name,
            m(|s| s.p50_us),
            m(|s| s.p90_us),
            m(|s| s.p99_us),
            tput,
            java_java
                .map(|j| format!("{:.2}×", tput / j))
                .unwrap_or_else(|| "–".into()),
            m(|s| s.consumer_cpu_us),
            m(|s| s.provider_cpu_us),
            samples[i].iter().map(|s| s.errors).sum::<u64>(),
        );
    }
    for p in pairs {
        if let Consumer::Java(proc) = p.consumer {
            let mut proc = *proc;
            let _ = proc.send("quit").await;
            proc.stop().await;
        }
    }
    for p in procs {
        p.stop().await;
    }
    Ok(())
}
