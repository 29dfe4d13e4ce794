//! `rdubbo demo` and `rdubbo demo provider`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use rdubbo::provider::Provider;
use rdubbo::{Invoker, RpcResult, ServiceInfo, Url, Value};
use rdubbo_protocol_jsonrpc::{JsonRpcClient, JsonRpcServer};

/// The interface every Dubbo quick-start serves.
pub const DEMO_INTERFACE: &str = "org.apache.dubbo.demo.DemoService";

/// The demo service of Apache Dubbo's samples.
#[rdubbo::service(interface = "org.apache.dubbo.demo.DemoService", version = "1.0.0")]
pub trait DemoService {
    /// Answers `"Hello " + name`.
    async fn say_hello(&self, name: String) -> RpcResult<String>;
    /// Answers its argument.
    #[rdubbo(name = "echo")]
    async fn echo(&self, value: Value) -> RpcResult<Value>;
}

/// The demo implementation.
pub struct Demo;

impl DemoService for Demo {
    async fn say_hello(&self, name: String) -> RpcResult<String> {
        Ok(format!("Hello {name}"))
    }
    async fn echo(&self, value: Value) -> RpcResult<Value> {
        Ok(value)
    }
}

/// Arguments of `rdubbo demo`.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DemoArgs {
    #[command(subcommand)]
    command: Option<DemoCommand>,
    /// Serial calls timed for the latency summary.
    #[arg(long, default_value_t = 2000)]
    calls: u64,
}

#[derive(clap::Subcommand)]
enum DemoCommand {
    /// Serve org.apache.dubbo.demo.DemoService (version 1.0.0 and unversioned) until
    /// SIGINT/SIGTERM, then stop gracefully.
    Provider(ProviderArgs),
}

#[derive(clap::Args)]
struct ProviderArgs {
    /// Wire protocol.
    #[arg(long, default_value = "jsonrpc")]
    protocol: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:30880")]
    listen: SocketAddr,
    /// Registry to register in, e.g. zookeeper://127.0.0.1:2181.
    #[arg(long)]
    registry: Option<String>,
    /// Longest time in-flight calls get to finish on shutdown, in seconds.
    #[arg(long, default_value_t = 10.0)]
    drain_timeout: f64,
    /// Seconds between unregistering and refusing calls on shutdown (consumers drop this
    /// provider meanwhile).
    #[arg(long, default_value_t = 1.0)]
    unregister_wait: f64,
}

pub async fn run(args: DemoArgs) -> Result<ExitCode> {
    match args.command {
        Some(DemoCommand::Provider(p)) => provider(p).await,
        None => demo(args.calls).await,
    }
}

/// Starts the demo provider (both versions at one path) on `listen`.
async fn start_provider(listen: SocketAddr) -> Result<JsonRpcServer> {
    let invoker: Arc<dyn Invoker> = Arc::new(DemoServiceServer::new(Demo));
    let versioned = DemoServiceServer::<Demo>::info();
    let unversioned = ServiceInfo {
        version: None,
        ..versioned.clone()
    };
    JsonRpcServer::builder()
        .export(DEMO_INTERFACE, versioned, invoker.clone())
        .export(DEMO_INTERFACE, unversioned, invoker)
        .bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))
}

async fn provider(args: ProviderArgs) -> Result<ExitCode> {
    if args.protocol != "jsonrpc" {
        bail!(
            "protocol {:?} is not supported by this build (supported: jsonrpc)",
            args.protocol
        );
    }
    if !args.drain_timeout.is_finite() || args.drain_timeout < 0.0 {
        bail!("--drain-timeout must be a non-negative number of seconds");
    }
    if !args.unregister_wait.is_finite() || args.unregister_wait < 0.0 {
        bail!("--unregister-wait must be a non-negative number of seconds");
    }
    let registry = match &args.registry {
        Some(url) => Some(
            rdubbo::registry::connect(url)
                .await
                .with_context(|| format!("registry {url}"))?,
        ),
        None => None,
    };
    let invoker: Arc<dyn Invoker> = Arc::new(DemoServiceServer::new(Demo));
    let versioned = DemoServiceServer::<Demo>::info();
    let unversioned = ServiceInfo {
        version: None,
        ..versioned.clone()
    };
    let mut builder = Provider::builder(args.listen)
        .application("rdubbo-demo-provider")
        .export(versioned, invoker.clone())
        .export(unversioned, invoker)
        .unregister_wait(Duration::from_secs_f64(args.unregister_wait))
        .drain(Duration::from_secs_f64(args.drain_timeout));
    if let Some(registry) = &registry {
        builder = builder.registry(registry.clone());
    }
    let provider = builder
        .start()
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    for url in provider.urls() {
        println!("serving {url}");
    }
    if let Some(registry) = &registry {
        println!("registered in {}", registry.url());
    }
    wait_for_stop_signal().await?;
    if registry.is_some() {
        eprintln!(
            "stopping: unregistered, waiting {} s for consumers, then draining in-flight calls (up to {} s)",
            args.unregister_wait, args.drain_timeout
        );
    } else {
        eprintln!(
            "stopping: draining in-flight calls (up to {} s)",
            args.drain_timeout
        );
    }
    provider.stop().await;
    if let Some(registry) = registry {
        registry.destroy().await;
    }
    eprintln!("stopped");
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_stop_signal() -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

async fn demo(calls: u64) -> Result<ExitCode> {
    let server = start_provider("127.0.0.1:0".parse()?).await?;
    let addr = server.local_addr();
    let url: Url =
        format!("jsonrpc://{addr}/{DEMO_INTERFACE}?version=1.0.0&timeout=3000").parse()?;
    println!("provider: {url}");
    let client = DemoServiceClient::new(Arc::new(JsonRpcClient::new(&url)?));

    let greeting = client.say_hello("rdubbo".to_owned()).await?;
    println!("sayHello(\"rdubbo\") -> {greeting:?}");
    for v in [
        serde_json::json!("hello"),
        serde_json::json!(42),
        serde_json::json!({"name": "rdubbo", "tags": ["rust", "dubbo"], "weight": 1.5}),
    ] {
        let back = client.echo(v.clone()).await?;
        println!("echo({v}) -> {back}");
    }

    let mut hist = Histogram::<u64>::new(3)?;
    let payload = serde_json::json!("ping");
    let start = Instant::now();
    for _ in 0..calls {
        let t = Instant::now();
        client.echo(payload.clone()).await?;
        hist.record(t.elapsed().as_nanos() as u64)?;
    }
    let secs = start.elapsed().as_secs_f64();
    let us = |q: f64| hist.value_at_quantile(q) as f64 / 1e3;
    println!(
        "{calls} serial echo calls over jsonrpc/HTTP on loopback: {:.0} calls/s",
        calls as f64 / secs.max(1e-9)
    );
    println!(
        "latency µs: p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}",
        us(0.5),
        us(0.9),
        us(0.99),
        hist.max() as f64 / 1e3
    );
    server.shutdown(Duration::from_secs(5)).await;
    Ok(ExitCode::SUCCESS)
}
