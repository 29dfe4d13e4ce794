//! What `call` and `bench` talk to: a provider URL today, a registry + interface later.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rdubbo::{Invocation, Invoker, Url, Value};

/// A resolved call target: an invoker plus the service identity to put in invocations.
#[derive(Clone)]
pub struct Target {
    invoker: Arc<dyn Invoker>,
    interface: String,
    version: Option<String>,
    group: Option<String>,
    timeout: Duration,
}

impl Target {
    /// A target for one provider URL (`jsonrpc://host:port/interface?version=…`).
    pub fn from_provider_url(url: &str, timeout: Option<Duration>) -> Result<Target> {
        let url: Url = url
            .parse()
            .with_context(|| format!("invalid provider URL {url:?}"))?;
        let invoker: Arc<dyn Invoker> = match url.protocol() {
            "jsonrpc" | "http" => Arc::new(
                rdubbo_protocol_jsonrpc::JsonRpcClient::new(&url)
                    .with_context(|| format!("cannot refer {url}"))?,
            ),
            "" => {
                bail!("provider URL {url} has no protocol (expected jsonrpc://host:port/interface)")
            }
            other => {
                bail!("protocol {other:?} is not supported by this build (supported: jsonrpc)")
            }
        };
        if url.port().is_none() {
            bail!("provider URL {url} has no port");
        }
        let timeout =
            timeout.unwrap_or_else(|| Duration::from_millis(url.param_or("timeout", 1000u64)));
        Ok(Target {
            invoker,
            interface: url.interface().to_owned(),
            version: url.version().map(str::to_owned),
            group: url.group().map(str::to_owned),
            timeout,
        })
    }

    /// An invocation of `method` with `args` on this target.
    pub fn invocation(&self, method: &str, args: Vec<Value>) -> Invocation {
        Invocation::new(self.interface.as_str(), method, args)
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
