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
