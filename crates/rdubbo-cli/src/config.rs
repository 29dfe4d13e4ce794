//! `rdubbo config set|get|rm|ls`: Dubbo's dynamic configuration (governance rules,
//! migration rules, the interface → application mapping) in any registry that has a config
//! center: ZooKeeper (`/dubbo/config/<group>/<key>`), Nacos and the embedded registry (the
//! config API, `dataId = <key>`).

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use rdubbo::{DynamicConfiguration, Registry};

/// Arguments of `rdubbo config`.
#[derive(clap::Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
}

/// Where and which document.
#[derive(clap::Args)]
struct Target {
    /// Registry URL, e.g. nacos://127.0.0.1:8848 or zookeeper://127.0.0.1:2181
    #[arg(long)]
    registry: String,
    /// The group (Dubbo's rules: `dubbo`; migration rules: DUBBO_SERVICEDISCOVERY_MIGRATION;
    /// the interface → application mapping: `mapping`).
    #[arg(long, default_value = "dubbo")]
    group: String,
    /// Seconds the whole operation may take.
    #[arg(long, default_value_t = 15.0)]
    timeout: f64,
}

#[derive(clap::Subcommand)]
enum ConfigCommand {
    /// Publish (create or replace) a document: the content as an argument, or from a file
    /// with -f (`-f -` reads standard input).
    Set {
        #[command(flatten)]
        target: Target,
        /// The key, e.g. demo-provider.configurators
        key: String,
        /// The content (YAML for Dubbo's rules).
        #[arg(conflicts_with = "file", required_unless_present = "file")]
        content: Option<String>,
        /// Read the content from this file (`-` for standard input).
        #[arg(short = 'f', long = "file")]
        file: Option<PathBuf>,
    },
    /// Print a document's content (exit status 1 when there is none).
    Get {
        #[command(flatten)]
        target: Target,
        /// The key.
        key: String,
    },
    /// Delete a document (deleting one that does not exist is not an error).
    Rm {
        #[command(flatten)]
        target: Target,
        /// The key.
        key: String,
    },
    /// List the keys of the group.
    Ls {
        #[command(flatten)]
        target: Target,
    },
}

fn read_content(content: Option<String>, file: Option<PathBuf>) -> Result<String> {
    if let Some(c) = content {
        return Ok(c);
    }
    let Some(path) = file else {
        bail!("give the content or -f <file>");
    };
    let mut text = String::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading standard input")?;
    } else {
        text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
    }
    Ok(text)
}

async fn open(target: &Target) -> Result<(Arc<dyn Registry>, Arc<dyn DynamicConfiguration>)> {
    let registry = rdubbo::registry::connect(&target.registry)
        .await
        .with_context(|| format!("registry {}", target.registry))?;
    let Some(config) = registry.dynamic_configuration() else {
        registry.destroy().await;
        bail!(
            "registry {} has no config center (nacos:// and zookeeper:// have one)",
            target.registry
        );
    };
    Ok((registry, config))
}

pub async fn run(args: ConfigArgs) -> Result<ExitCode> {
    let target = match &args.command {
        ConfigCommand::Set { target, .. }
        | ConfigCommand::Get { target, .. }
        | ConfigCommand::Rm { target, .. }
        | ConfigCommand::Ls { target } => target,
    };
    if !target.timeout.is_finite() || target.timeout <= 0.0 || target.timeout > 1e6 {
        bail!("--timeout must be a positive number of seconds");
    }
    let limit = Duration::from_secs_f64(target.timeout);
    let registry_url = target.registry.clone();
    tokio::time::timeout(limit, run_command(args))
        .await
        .map_err(|_| anyhow!("registry {registry_url} did not answer within {limit:?}"))?
}

async fn run_command(args: ConfigArgs) -> Result<ExitCode> {
    match args.command {
        ConfigCommand::Set {
            target,
            key,
            content,
            file,
        } => {
            let content = read_content(content, file)?;
            let (registry, config) = open(&target).await?;
            let result = config.publish(&key, &target.group, &content).await;
            registry.destroy().await;
            result.with_context(|| format!("publishing {}/{key}", target.group))?;
            eprintln!("published {}/{key} ({} bytes)", target.group, content.len());
            Ok(ExitCode::SUCCESS)
        }
        ConfigCommand::Get { target, key } => {
            let (registry, config) = open(&target).await?;
            let result = config.get(&key, &target.group).await;
            registry.destroy().await;
            match result.with_context(|| format!("reading {}/{key}", target.group))? {
                Some(content) => {
                    print!("{content}");
                    if !content.ends_with('\n') {
                        println!();
                    }
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    eprintln!("no config {}/{key} in {}", target.group, target.registry);
                    Ok(ExitCode::from(1))
                }
            }
        }
        ConfigCommand::Rm { target, key } => {
            let (registry, config) = open(&target).await?;
            let result = config.remove(&key, &target.group).await;
            registry.destroy().await;
            result.with_context(|| format!("deleting {}/{key}", target.group))?;
            eprintln!("deleted {}/{key}", target.group);
            Ok(ExitCode::SUCCESS)
        }
        ConfigCommand::Ls { target } => {
            let (registry, config) = open(&target).await?;
            let result = config.keys(&target.group).await;
            registry.destroy().await;
            let keys = result.with_context(|| format!("listing group {}", target.group))?;
            for k in keys {
                println!("{k}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
