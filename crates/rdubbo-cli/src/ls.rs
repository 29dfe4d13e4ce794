//! `rdubbo ls <registry-url>`: the services of a registry with their providers and
//! consumers, like dubbo-admin's service list; with a ZooKeeper or Nacos registry (also
//! `rdubbo registry`) also the Dubbo 3 applications (ZooKeeper: `/services/<app>`; Nacos:
//! services whose instances carry Dubbo's metadata) with their instances, revisions and the
//! interfaces mapped to them (ZooKeeper: `/dubbo/mapping`; Nacos: config group `mapping`).

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
    /// Print only the Dubbo 3 applications, their instances and revisions.
    #[arg(long, short)]
    applications: bool,
}

/// One Dubbo 3 application: its instances and the interfaces mapped to it.
struct Application {
    name: String,
    instances: Vec<rdubbo::ServiceInstance>,
    interfaces: Vec<String>,
}

/// The applications of a ZooKeeper or Nacos registry (none for other registries).
async fn applications(registry: &str) -> Result<Vec<Application>> {
    let url: Url = registry
        .parse()
        .map_err(|e| anyhow::anyhow!("registry URL {registry}: {e}"))?;
    use rdubbo::Registry;
    let listed = match url.protocol() {
        "zookeeper" | "zk" => {
            let zk = rdubbo_registry_zookeeper::ZookeeperRegistry::connect(&url)
                .await
                .with_context(|| format!("registry {registry}"))?;
            let discovery = zk.discovery().clone();
            let listed = async {
                let names = discovery.applications().await?;
                let interfaces = discovery.mapped_interfaces().await?;
                gather(&*discovery, names, interfaces).await
            }
            .await;
            zk.destroy().await;
            listed
        }
        "nacos" => {
            let nacos = rdubbo::nacos::NacosRegistry::connect(&url)
                .await
                .with_context(|| format!("registry {registry}"))?;
            let discovery = nacos.discovery().clone();
            let listed = async {
                let names = discovery.applications().await?;
                let interfaces = discovery.mapped_interfaces().await?;
                gather(&*discovery, names, interfaces).await
            }
            .await;
            nacos.destroy().await;
            listed
        }
        _ => return Ok(Vec::new()),
    };
    listed.with_context(|| format!("listing the applications of {registry}"))
}

/// The instances of each application `names`, and the applications each of `interfaces`
/// is mapped to.
async fn gather(
    discovery: &dyn rdubbo::ServiceDiscovery,
    names: Vec<String>,
    interfaces: Vec<String>,
) -> Result<Vec<Application>, rdubbo::RegistryError> {
    let mut by_app: BTreeMap<String, Application> = BTreeMap::new();
    for name in names {
        let instances = discovery.instances(&name).await?;
        by_app.insert(
            name.clone(),
            Application {
                name,
                instances,
                interfaces: Vec::new(),
            },
        );
    }
    for interface in interfaces {
        for app in discovery.mapping(&interface).await? {
            by_app
                .entry(app.clone())
                .or_insert_with(|| Application {
                    name: app,
                    instances: Vec::new(),
                    interfaces: Vec::new(),
                })
                .interfaces
                .push(interface.clone());
        }
    }
    Ok(by_app.into_values().collect())
}

fn applications_json(apps: &[Application]) -> Value {
    let list: Vec<Value> = apps
        .iter()
        .map(|a| {
            serde_json::json!({
                "application": a.name,
                "interfaces": a.interfaces,
                "instances": a.instances.iter().map(|i| serde_json::json!({
                    "address": i.id(),
                    "revision": i.revision(),
                    "endpoints": i.endpoints().iter().map(|(p, port)| format!("{p}:{port}")).collect::<Vec<_>>(),
                    "metadata": i.metadata,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    Value::Array(list)
}

fn print_applications(apps: &[Application], verbose: bool) {
    let width = apps
        .iter()
        .map(|a| a.name.len())
        .max()
        .unwrap_or(11)
        .max(11);
    println!("{:<width$}  {:>9}  REVISIONS", "APPLICATION", "INSTANCES");
    for a in apps {
        let mut revisions: Vec<&str> = a.instances.iter().filter_map(|i| i.revision()).collect();
        revisions.sort();
        revisions.dedup();
        println!(
            "{:<width$}  {:>9}  {}",
            a.name,
            a.instances.len(),
            if revisions.is_empty() {
                "-".to_owned()
            } else {
                revisions.join(",")
            }
        );
        for i in &a.instances {
            let endpoints: Vec<String> = i
                .endpoints()
                .iter()
                .map(|(p, port)| format!("{p}:{port}"))
                .collect();
            println!(
                "  instance  {}  revision={}  endpoints={}",
                i.id(),
                i.revision().unwrap_or("-"),
                if endpoints.is_empty() {
                    "-".to_owned()
                } else {
                    endpoints.join(",")
                }
            );
            if verbose {
                for (k, v) in &i.metadata {
                    println!("    {k}={v}");
                }
            }
        }
        for interface in &a.interfaces {
            println!("  maps      {interface}");
        }
    }
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
    let apps = applications(&args.registry).await?;
    if args.applications {
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&applications_json(&apps))?
            );
        } else if apps.is_empty() {
            println!("no applications in {}", args.registry);
        } else {
            print_applications(&apps, args.verbose);
        }
        return Ok(ExitCode::SUCCESS);
    }

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
        if !apps.is_empty() {
            println!();
            print_applications(&apps, args.verbose);
        }
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
    if !apps.is_empty() {
        println!();
        print_applications(&apps, args.verbose);
    }
    Ok(ExitCode::SUCCESS)
}
