//! `rdubbo registry`: the embedded Nacos-compatible naming server as a process of its own.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rdubbo::nacos::server::{NamingServer, NamingServerConfig};

/// Arguments of `rdubbo registry`.
#[derive(clap::Args)]
pub struct RegistryArgs {
    /// HTTP address of the Open API (pushes leave from a UDP port on the same IP).
    #[arg(long, default_value = "127.0.0.1:8848")]
    listen: SocketAddr,
    /// Where persistent instances are stored (default ~/.rdubbo/registry).
    #[arg(long, conflicts_with = "in_memory")]
    data_dir: Option<PathBuf>,
    /// Keep everything in memory (persistent instances are lost on exit).
    #[arg(long)]
    in_memory: bool,
    /// Require a login: clients send this username and --password (or a token from
    /// /nacos/v1/auth/login).
    #[arg(long, requires = "password")]
    username: Option<String>,
    /// Password for --username.
    #[arg(long, requires = "username")]
    password: Option<String>,
    /// Seconds without beats before an ephemeral instance is unhealthy.
    #[arg(long, default_value_t = 15.0)]
    beat_timeout: f64,
    /// Seconds without beats before an ephemeral instance is removed.
    #[arg(long, default_value_t = 30.0)]
    delete_timeout: f64,
    /// Lifetime of login tokens in seconds.
    #[arg(long, default_value_t = 18000.0)]
    token_ttl: f64,
}

fn seconds(name: &str, v: f64) -> Result<Duration> {
    if !v.is_finite() || v <= 0.0 || v > 1e9 {
        bail!("--{name} must be a positive number of seconds");
    }
    Ok(Duration::from_secs_f64(v))
}

pub async fn run(args: RegistryArgs) -> Result<ExitCode> {
    let data_dir = if args.in_memory {
        None
    } else {
        Some(match args.data_dir {
            Some(d) => d,
            None => std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("."))
                .join(".rdubbo")
                .join("registry"),
        })
    };
    let config = NamingServerConfig {
        listen: args.listen,
        data_dir: data_dir.clone(),
        beat_timeout: seconds("beat-timeout", args.beat_timeout)?,
        delete_timeout: seconds("delete-timeout", args.delete_timeout)?,
        token_ttl: seconds("token-ttl", args.token_ttl)?,
        auth: args.username.zip(args.password),
        ..Default::default()
    };
    let signals = super::demo::StopSignals::install()?;
    let server = NamingServer::start(config)
        .await
        .context("cannot start the registry")?;
    let addr = server.local_addr();
    println!(
        "rdubbo registry: {} (Nacos Open API v1)",
        server.registry_url()
    );
    println!("console: http://{addr}/");
    match &data_dir {
        Some(d) => println!("data: {}", d.display()),
        None => println!("data: in memory"),
    }
    signals.wait().await;
    let stats = server.stats();
    server.stop().await;
    eprintln!(
        "stopped ({} services, {} instances, {} requests served)",
        stats.services, stats.instances, stats.requests
    );
    Ok(ExitCode::SUCCESS)
}
