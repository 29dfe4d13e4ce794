//! `rdubbo ls <registry-url>`: the services of a registry with their providers and
//! consumers, like dubbo-admin's service list.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use rdubbo::Url;
use serde_json::Value;

/// Arguments of `rdubbo ls`.
#[derive(clap::Args)]
pub struct LsArgs {
    /// Registry URL, e.g. zookeeper://127.0.0.1:2181
    registry: String,
    /// Print every provider and consumer URL in full.
    #[arg(long, short)]
    verbose: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Default)]
struct Service {
    providers: Vec<Url>,
    consumers: Vec<Url>,
    rules: usize,
}

pub async fn run(args: LsArgs) -> Result<ExitCode> {
    let registry = rdubbo::registry::connect(&args.registry)
        .await
        .with_context(|| format!("registry {}", args.registry))?;
    if !registry.is_available() {
        registry.destroy().await;
        bail!("registry {} is not reachable", args.registry);
    }
    let all: Url = "consumer://0.0.0.0/*?interface=*&category=*&group=*&version=*&enabled=*"
        .parse()
        .context("listing URL")?;
    let urls = registry.lookup(&all).await;
    registry.destroy().await;
    let urls = urls.with_context(|| format!("listing {}", args.registry))?;

    let mut services: BTreeMap<String, Service> = BTreeMap::new();
    for url in urls {
        let entry = services.entry(url.interface().to_owned()).or_default();
        match url.category() {
            "providers" => entry.providers.push(url),
            "consumers" => entry.consumers.push(url),
            _ => entry.rules += 1,
        }
    }
    if args.json {
        let json: Vec<Value> = services
            .iter()
            .map(|(name, s)| {
                serde_json::json!({
                    "service": name,
                    "providers": s.providers.iter().map(|u| u.to_string()).collect::<Vec<_>>(),
                    "consumers": s.consumers.iter().map(|u| u.to_string()).collect::<Vec<_>>(),
                    "rules": s.rules,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(ExitCode::SUCCESS);
    }
    if services.is_empty() {
        println!("no services in {}", args.registry);
        return Ok(ExitCode::SUCCESS);
    }
    let width = services.keys().map(|k| k.len()).max().unwrap_or(7).max(7);
    println!(
        "{:<width$}  {:<12}  {:>9}  {:>9}  APPLICATION",
        "SERVICE", "VERSIONS", "PROVIDERS", "CONSUMERS"
    );
    for (name, s) in &services {
        let mut versions: Vec<&str> = s
            .providers
            .iter()
            .map(|u| u.version().unwrap_or("-"))
            .collect();
        versions.sort();
        versions.dedup();
        let mut apps: Vec<&str> = s
            .providers
            .iter()
            .filter_map(|u| u.param_non_empty("application"))
            .collect();
        apps.sort();
        apps.dedup();
        println!(
            "{:<width$}  {:<12}  {:>9}  {:>9}  {}",
            name,
            if versions.is_empty() {
                "-".to_owned()
            } else {
                versions.join(",")
            },
            s.providers.len(),
            s.consumers.len(),
            if apps.is_empty() {
                "-".to_owned()
            } else {
                apps.join(",")
            }
        );
        for p in &s.providers {
            if args.verbose {
                println!("  provider  {p}");
            } else {
                println!(
                    "  provider  {}://{}  version={}{}",
                    p.protocol(),
                    p.address(),
                    p.version().unwrap_or("-"),
                    p.group().map(|g| format!(" group={g}")).unwrap_or_default()
                );
            }
        }
        for c in &s.consumers {
            if args.verbose {
                println!("  consumer  {c}");
            } else {
                println!(
                    "  consumer  {}  application={}",
                    c.host(),
                    c.param_non_empty("application").unwrap_or("-")
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
