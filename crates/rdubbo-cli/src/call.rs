//! `rdubbo call <provider-url> <method> '<json array of args>'`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use rdubbo::{Invoker, RpcError};

use crate::target::{parse_args, Discovery, Target};

/// Arguments of `rdubbo call`.
#[derive(clap::Args)]
pub struct CallArgs {
    /// Provider URL, e.g. jsonrpc://127.0.0.1:30880/org.apache.dubbo.demo.DemoService, or
    /// the interface name with --registry
    provider_url: String,
    /// Method name as the wire spells it, e.g. sayHello
    method: String,
    /// Arguments as a JSON array, e.g. '["world"]'
    #[arg(default_value = "[]")]
    args: String,
    /// Call timeout in milliseconds (default: the URL's timeout parameter, else 1000).
    #[arg(long)]
    timeout: Option<u64>,
    /// Attachment sent with the call, as key=value (repeatable).
    #[arg(long = "attachment", value_name = "KEY=VALUE")]
    attachments: Vec<String>,
    /// Java parameter types for dubbo://, comma-separated: JVM descriptors (`J`,
    /// `Ljava/lang/String;`) or Java names (`long`, `java.lang.String`, `int[]`); default:
    /// inferred from the arguments
    #[arg(long, value_name = "TYPES")]
    types: Option<String>,
    #[command(flatten)]
    discovery: Discovery,
}

pub async fn run(args: CallArgs) -> Result<ExitCode> {
    let target = Target::resolve(
        &args.provider_url,
        &args.discovery,
        args.timeout.map(Duration::from_millis),
    )
    .await?;
    let result = call(&target, &args).await;
    target.close().await;
    result
}

async fn call(target: &Target, args: &CallArgs) -> Result<ExitCode> {
    let mut invocation = target.invocation(&args.method, parse_args(&args.args)?);
    if let Some(types) = &args.types {
        let types: Vec<String> = types
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(java_descriptor)
            .collect();
        if types.len() != invocation.args.len() {
            anyhow::bail!(
                "--types names {} types for {} arguments",
                types.len(),
                invocation.args.len()
            );
        }
        invocation.parameter_types = types;
    }
    for kv in &args.attachments {
        let Some((k, v)) = kv.split_once('=') else {
            anyhow::bail!("attachment {kv:?} is not KEY=VALUE");
        };
        invocation.attachments.insert(k, v);
    }
    match target.invoker().invoke(invocation).await {
        Ok(value) => {
            println!("{value}");
            Ok(ExitCode::SUCCESS)
        }
        Err(RpcError::Remote {
            code,
            message,
            data,
        }) => {
            eprintln!("remote error {code}: {message}");
            if let Some(data) = data {
                eprintln!("data: {data}");
            }
            Ok(ExitCode::from(2))
        }
        Err(e) => {
            eprintln!("call failed: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// A JVM descriptor for a Java type name (`long` → `J`, `java.lang.String` →
/// `Ljava/lang/String;`, `int[]` → `[I`); descriptors pass through.
fn java_descriptor(name: &str) -> String {
    if let Some(element) = name.strip_suffix("[]") {
        return format!("[{}", java_descriptor(element));
    }
    match name {
        "int" => "I".into(),
        "long" => "J".into(),
        "double" => "D".into(),
        "float" => "F".into(),
        "boolean" => "Z".into(),
        "byte" => "B".into(),
        "short" => "S".into(),
        "char" => "C".into(),
        n if n.len() == 1 || n.starts_with('[') || (n.starts_with('L') && n.ends_with(';')) => {
            n.to_string()
        }
        n => format!("L{};", n.replace('.', "/")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn java_names_become_descriptors() {
        assert_eq!(super::java_descriptor("long"), "J");
        assert_eq!(
            super::java_descriptor("java.lang.String"),
            "Ljava/lang/String;"
        );
        assert_eq!(super::java_descriptor("int[]"), "[I");
        assert_eq!(super::java_descriptor("Ljava/util/Map;"), "Ljava/util/Map;");
    }
}
