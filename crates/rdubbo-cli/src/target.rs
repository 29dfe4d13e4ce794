//! What `call` and `bench` talk to: one provider URL, or an interface discovered through a
//! registry (`--registry zookeeper://… <interface>`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rdubbo::{Args, Invocation, Invoker, Url};
use serde_json::Value;

/// Where `call` and `bench` find the service.
#[derive(clap::Args, Clone, Debug)]
pub struct Discovery {
    /// Discover providers through this registry (zookeeper://127.0.0.1:2181); the first
    /// argument is then the interface name instead of a provider URL.
    #[arg(long)]
    pub registry: Option<String>,
    /// Service version (with --registry).
    #[arg(long = "service-version", value_name = "VERSION")]
    pub version: Option<String>,
    /// Service group (with --registry).
    #[arg(long)]
    pub group: Option<String>,
}

/// A resolved call target: an invoker plus the service identity to put in invocations.
#[derive(Clone)]
pub struct Target {
    invoker: Arc<dyn Invoker>,
    reference: Option<(Arc<rdubbo::consumer::Reference>, Arc<dyn rdubbo::Registry>)>,
    interface: String,
    version: Option<String>,
    group: Option<String>,
    timeout: Duration,
}

impl Target {
    /// A target for one provider URL (`jsonrpc://`, `dubbo://` or `tri://host:port/interface?version=…`).
    pub fn from_provider_url(url: &str, timeout: Option<Duration>) -> Result<Target> {
        let url: Url = url
            .parse()
            .with_context(|| format!("invalid provider URL {url:?}"))?;
        let invoker: Arc<dyn Invoker> = match url.protocol() {
            "jsonrpc" | "http" => Arc::new(
                rdubbo_protocol_jsonrpc::JsonRpcClient::new(&url)
                    .with_context(|| format!("cannot refer {url}"))?,
            ),
            "dubbo" => Arc::new(
                rdubbo::dubbo::DubboClient::new(&url)
                    .with_context(|| format!("cannot refer {url}"))?,
            ),
            "tri" => Arc::new(
                rdubbo::triple::TripleClient::new(&url)
                    .with_context(|| format!("cannot refer {url}"))?,
            ),
            "" => {
                bail!("provider URL {url} has no protocol (expected jsonrpc://, dubbo:// or tri://host:port/interface)")
            }
            other => {
                bail!(
                    "protocol {other:?} is not supported by this build (supported: jsonrpc, dubbo, tri)"
                )
            }
        };
        if url.port().is_none() {
            bail!("provider URL {url} has no port");
        }
        let timeout =
            timeout.unwrap_or_else(|| Duration::from_millis(url.param_or("timeout", 1000u64)));
        Ok(Target {
            invoker,
            reference: None,
            interface: url.interface().to_owned(),
            version: url.version().map(str::to_owned),
            group: url.group().map(str::to_owned),
            timeout,
        })
    }

    /// A target for `target`: a provider URL, or with `--registry` an interface name.
    pub async fn resolve(
        target: &str,
        discovery: &Discovery,
        timeout: Option<Duration>,
    ) -> Result<Target> {
        let Some(registry_url) = &discovery.registry else {
            if discovery.version.is_some() || discovery.group.is_some() {
                bail!("--service-version and --group go with --registry; put them in the provider URL instead");
            }
            return Target::from_provider_url(target, timeout);
        };
        if target.contains("://") {
            bail!("with --registry, give the interface name, not a URL (got {target:?})");
        }
        let registry = rdubbo::registry::connect(registry_url)
            .await
            .with_context(|| format!("registry {registry_url}"))?;
        if !registry.is_available() {
            bail!("registry {registry_url} is not reachable");
        }
        let mut builder = rdubbo::consumer::Reference::builder(target)
            .application("rdubbo-cli")
            .registry(registry.clone())
            .check(false);
        if let Some(v) = &discovery.version {
            builder = builder.version(v);
        }
        if let Some(g) = &discovery.group {
            builder = builder.group(g);
        }
        let reference = Arc::new(builder.build().await?);
        Ok(Target {
            invoker: reference.clone(),
            reference: Some((reference, registry)),
            interface: target.to_owned(),
            version: discovery.version.clone().filter(|v| !v.is_empty()),
            group: discovery.group.clone().filter(|g| !g.is_empty()),
            timeout: timeout.unwrap_or(Duration::from_millis(1000)),
        })
    }

    /// Providers known for this target, when discovered through a registry.
    pub fn providers(&self) -> Option<Vec<String>> {
        self.reference.as_ref().map(|(r, _)| {
            r.directory()
                .providers()
                .iter()
                .map(|p| p.url.address())
                .collect()
        })
    }

    /// Adds the providers the directory holds now to `seen` (by registered URL), so that
    /// calls to providers that leave during a run are still counted.
    pub fn record_providers(&self, seen: &ProvidersSeen) {
        if let Some((r, _)) = &self.reference {
            let mut seen = seen.0.lock().unwrap_or_else(|p| p.into_inner());
            for p in r.directory().providers().iter() {
                seen.entry(p.key.clone())
                    .or_insert_with(|| (p.url.address(), p.stats.clone()));
            }
        }
    }

    /// Calls per provider address (address, succeeded, failed, still listed), over every
    /// provider recorded in `seen`, when discovered through a registry.
    pub fn provider_stats(&self, seen: &ProvidersSeen) -> Option<Vec<(String, u64, u64, bool)>> {
        let (r, _) = self.reference.as_ref()?;
        self.record_providers(seen);
        let listed: Vec<String> = r
            .directory()
            .providers()
            .iter()
            .map(|p| p.url.address())
            .collect();
        let seen = seen.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut by_addr: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
        for (addr, stats) in seen.values() {
            let e = by_addr.entry(addr.clone()).or_default();
            e.0 += stats.succeeded();
            e.1 += stats.failed();
        }
        Some(
            by_addr
                .into_iter()
                .map(|(addr, (ok, failed))| {
                    let present = listed.contains(&addr);
                    (addr, ok, failed, present)
                })
                .collect(),
        )
    }

    /// Unregisters the consumer and closes the registry session, if any.
    pub async fn close(&self) {
        if let Some((reference, registry)) = &self.reference {
            reference.close().await;
            registry.destroy().await;
        }
    }

    /// An invocation of `method` with `args` on this target.
    pub fn invocation(&self, method: &str, args: &CallArgs) -> Invocation {
        Invocation::new(self.interface.as_str(), method, args.args.clone())
            .with_parameter_types(args.types.clone())
            .with_version(self.version.as_deref())
            .with_group(self.group.as_deref())
            .with_timeout(Some(self.timeout))
    }

    /// The invoker calls go through.
    pub fn invoker(&self) -> &Arc<dyn Invoker> {
        &self.invoker
    }
}

/// Parses the `'<json array of args>'` argument.
pub fn parse_args(text: &str) -> Result<Vec<Value>> {
    let value: Value = serde_json::from_str(text)
        .with_context(|| format!("arguments must be a JSON array, got {text:?}"))?;
    match value {
        Value::Array(items) => Ok(items),
        other => bail!("arguments must be a JSON array like '[\"world\"]', got {other}"),
    }
}

/// Every provider a run has seen, by registered URL, with its call counters.
#[derive(Default)]
pub struct ProvidersSeen(
    std::sync::Mutex<std::collections::BTreeMap<String, (String, Arc<rdubbo::cluster::CallStats>)>>,
);

/// A call's arguments as the command line gives them: JSON values, and Java types if named.
#[derive(Clone)]
pub struct CallArgs {
    /// The arguments: JSON as it is, or brought to the named Java types.
    pub args: Args,
    /// JVM descriptors, one per argument; empty when not named.
    pub types: Vec<String>,
}

/// Parses `'<json array>'` and `--types` (Java names or descriptors, comma-separated):
/// with types, each JSON value is read as that Java type (`"J"` → a long,
/// `java.util.Date` → a date from milliseconds, `com.example.User` → an object of that
/// class …), as `rdubbo::json::to_value_as` documents.
pub fn call_args(text: &str, types: Option<&str>) -> Result<CallArgs> {
    let json = parse_args(text)?;
    let Some(types) = types else {
        return Ok(CallArgs {
            args: Args::Json(json),
            types: Vec::new(),
        });
    };
    let types: Vec<String> = split_types(types)
        .into_iter()
        .map(|t| rdubbo::json::descriptor_from_name(&t))
        .collect();
    if types.len() != json.len() {
        bail!(
            "--types names {} types for {} arguments",
            types.len(),
            json.len()
        );
    }
    let values = json
        .iter()
        .zip(&types)
        .map(|(j, t)| rdubbo::json::to_value_as(j, t))
        .collect();
    Ok(CallArgs {
        args: Args::Values(values),
        types,
    })
}

/// Splits a type list at top-level commas (`java.util.Map<K,V>` is not split; generics
/// are dropped, as Java erases them).
fn split_types(types: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in types.chars() {
        match c {
            '<' => depth += 1,
            '>' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur).trim().to_string());
                continue;
            }
            _ if depth > 0 => continue,
            _ => {}
        }
        if depth == 0 && c != '>' {
            cur.push(c);
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out.retain(|t| !t.is_empty());
    out
}
