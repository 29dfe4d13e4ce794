//! `rdubbo demo` and `rdubbo demo provider`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use rdubbo::consumer::Reference;
use rdubbo::nacos::server::{NamingServer, NamingServerConfig};
use rdubbo::provider::Provider;
use rdubbo::{Invoker, RpcResult, ServiceInfo, Value};

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
    /// Registry for provider and consumer (e.g. zookeeper://127.0.0.1:2181). Default: an
    /// embedded Nacos-compatible naming server started in this process on a free port.
    #[arg(long)]
    registry: Option<String>,
}

#[derive(clap::Subcommand)]
enum DemoCommand {
    /// Serve org.apache.dubbo.demo.DemoService (version 1.0.0 and unversioned) until
    /// SIGINT/SIGTERM, then stop gracefully.
    Provider(ProviderArgs),
}

#[derive(clap::Args)]
struct ProviderArgs {
    /// Wire protocol: jsonrpc (JSON-RPC 2.0 over HTTP), dubbo (Dubbo binary protocol,
    /// Hessian2) or tri (Triple, Dubbo 3's gRPC-compatible protocol).
    #[arg(long, default_value = "jsonrpc", value_parser = ["jsonrpc", "dubbo", "tri"])]
    protocol: String,
    /// Address to listen on (default 127.0.0.1:30880 for jsonrpc, 127.0.0.1:20880 for
    /// dubbo, 127.0.0.1:50051 for tri).
    #[arg(long)]
    listen: Option<SocketAddr>,
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
    /// Start the demo service as an application described by a TOML or YAML file
    /// (registries, protocols, services, shutdown, metrics, QoS; `RDUBBO_…` variables
    /// override its keys). Its services of org.apache.dubbo.demo.DemoService are served by
    /// the demo implementation.
    #[arg(long, conflicts_with_all = ["protocol", "listen", "registry", "drain_timeout", "unregister_wait"])]
    config: Option<std::path::PathBuf>,
}

pub async fn run(args: DemoArgs) -> Result<ExitCode> {
    match args.command {
        Some(DemoCommand::Provider(p)) => provider(p).await,
        None => demo(args.calls, args.registry).await,
    }
}

async fn provider(args: ProviderArgs) -> Result<ExitCode> {
    if let Some(path) = &args.config {
        return provider_from_config(path).await;
    }
    let listen = args.listen.unwrap_or_else(|| {
        let port = match args.protocol.as_str() {
            "dubbo" => 20880,
            "tri" => 50051,
            _ => 30880,
        };
        SocketAddr::from(([127, 0, 0, 1], port))
    });
    if !args.drain_timeout.is_finite() || args.drain_timeout < 0.0 {
        bail!("--drain-timeout must be a non-negative number of seconds");
    }
    if !args.unregister_wait.is_finite() || args.unregister_wait < 0.0 {
        bail!("--unregister-wait must be a non-negative number of seconds");
    }
    let signals = StopSignals::install()?;
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
    let mut builder = Provider::builder(listen)
        .protocol(&args.protocol)
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
        .with_context(|| format!("cannot listen on {listen}"))?;
    for url in provider.urls() {
        println!("serving {url}");
    }
    if let Some(registry) = &registry {
        println!("registered in {}", registry.url());
    }
    signals.wait().await;
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

/// SIGTERM and SIGINT watchers, installed before a process announces that it is ready, so
/// that a signal sent right after the announcement stops it gracefully.
/// `demo provider --config FILE`: the demo service as a configured application.
async fn provider_from_config(path: &std::path::Path) -> Result<ExitCode> {
    let builder = rdubbo::app::Application::from_file(path)?;
    let info = DemoServiceServer::<Demo>::info();
    let app = builder
        .service(DEMO_INTERFACE, info, Arc::new(DemoServiceServer::new(Demo)))
        .start()
        .await?;
    for url in app.exported_urls() {
        println!("serving {url}");
    }
    if let Some(addr) = app.metrics_addr() {
        println!("metrics on http://{addr}/metrics");
    }
    if let Some(addr) = app.qos_addr() {
        println!("qos on {addr}");
    }
    println!("ready");
    app.run_until_signal().await;
    eprintln!("stopped");
    Ok(ExitCode::SUCCESS)
}

pub struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Installs the watchers.
    pub fn install() -> Result<StopSignals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(StopSignals {
            term: signal(SignalKind::terminate()).context("cannot watch SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot watch SIGINT")?,
        })
    }

    /// Waits for the first of them.
    pub async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

async fn demo(calls: u64, registry_url: Option<String>) -> Result<ExitCode> {
    let embedded = match registry_url {
        Some(_) => None,
        None => Some(
            NamingServer::start(NamingServerConfig {
                listen: "127.0.0.1:0".parse()?,
                ..Default::default()
            })
            .await
            .context("cannot start the embedded registry")?,
        ),
    };
    let registry_url = match (&registry_url, &embedded) {
        (Some(url), _) => url.clone(),
        (None, Some(server)) => {
            println!(
                "registry: embedded naming server {} (console http://{}/)",
                server.registry_url(),
                server.local_addr()
            );
            server.registry_url()
        }
        (None, None) => unreachable!("an embedded registry is started when none is given"),
    };
    let registry = rdubbo::registry::connect(&registry_url)
        .await
        .with_context(|| format!("registry {registry_url}"))?;
    let invoker: Arc<dyn Invoker> = Arc::new(DemoServiceServer::new(Demo));
    let versioned = DemoServiceServer::<Demo>::info();
    let unversioned = ServiceInfo {
        version: None,
        ..versioned.clone()
    };
    let provider = Provider::builder("127.0.0.1:0".parse()?)
        .application("rdubbo-demo-provider")
        .export(versioned, invoker.clone())
        .export(unversioned, invoker)
        .registry(registry.clone())
        .unregister_wait(Duration::ZERO)
        .start()
        .await
        .context("cannot start the demo provider")?;
    for url in provider.urls() {
        println!("provider: {url}");
    }
    let reference = Reference::builder(DEMO_INTERFACE)
        .version("1.0.0")
        .application("rdubbo-demo-consumer")
        .registry(registry.clone())
        .wait(Duration::from_secs(10))
        .build()
        .await
        .context("the consumer found no provider in the registry")?;
    for p in reference.directory().providers().iter() {
        println!("consumer discovered {} through {registry_url}", p.url);
    }
    let reference = Arc::new(reference);
    let client = DemoServiceClient::new(reference.clone());

    let greeting = client.say_hello("rdubbo".to_owned()).await?;
    println!("sayHello(\"rdubbo\") -> {greeting:?}");
    for v in [
        Value::from("hello"),
        Value::Int(42),
        Value::map(vec![
            ("name".into(), "rdubbo".into()),
            (
                "tags".into(),
                Value::list(vec!["rust".into(), "dubbo".into()]),
            ),
            ("weight".into(), 1.5.into()),
        ]),
        // A POJO keeps its Java class across the call.
        Value::object(
            "org.apache.dubbo.demo.User",
            vec![("name", "rdubbo".into()), ("age", 3.into())],
        ),
    ] {
        let back = client.echo(v.clone()).await?;
        println!(
            "echo({}) -> {}",
            rdubbo::json::from_value(&v),
            rdubbo::json::from_value(&back)
        );
    }

    let mut hist = Histogram::<u64>::new(3)?;
    let payload = Value::from("ping");
    let start = Instant::now();
    for _ in 0..calls {
        let t = Instant::now();
        client.echo(payload.clone()).await?;
        hist.record(t.elapsed().as_nanos() as u64)?;
    }
    let secs = start.elapsed().as_secs_f64();
    let us = |q: f64| hist.value_at_quantile(q) as f64 / 1e3;
    println!(
        "{calls} serial echo calls over jsonrpc/HTTP on loopback, discovered through the registry: {:.0} calls/s",
        calls as f64 / secs.max(1e-9)
    );
    println!(
        "latency µs: p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}",
        us(0.5),
        us(0.9),
        us(0.99),
        hist.max() as f64 / 1e3
    );
    reference.close().await;
    provider.stop().await;
    registry.destroy().await;
    if let Some(server) = embedded {
        server.stop().await;
    }
    Ok(ExitCode::SUCCESS)
}
