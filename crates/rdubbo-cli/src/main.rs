//! The `rdubbo` command line: run a demo, serve the demo service, call and load-test any
//! provider directly or through a registry, list a registry's services.

mod bench;
mod call;
mod config;
mod demo;
mod ls;
mod registry;
mod show;
mod target;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "rdubbo",
    version,
    about = "rdubbo: Dubbo-compatible RPC for Rust"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run provider and consumer in one process: a few calls, then a latency summary.
    /// `rdubbo demo provider …` serves the demo service until SIGINT/SIGTERM.
    Demo(demo::DemoArgs),
    /// Call one method of a provider and print the JSON result.
    Call(call::CallArgs),
    /// Load-test a provider: progress bar, then an HDR-histogram latency summary.
    Bench(bench::BenchArgs),
    /// List the services of a registry with their providers and consumers.
    Ls(ls::LsArgs),
    /// Run the embedded Nacos-compatible naming server (single node) until SIGINT/SIGTERM.
    Registry(registry::RegistryArgs),
    /// Publish, read, delete or list Dubbo's dynamic configuration (governance rules) in a
    /// registry's config center.
    Config(config::ConfigArgs),
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RDUBBO_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Demo(args) => demo::run(args).await,
            Command::Call(args) => call::run(args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Ls(args) => ls::run(args).await,
            Command::Registry(args) => registry::run(args).await,
            Command::Config(args) => config::run(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
