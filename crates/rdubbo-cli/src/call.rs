//! `rdubbo call <provider-url> <method> '<json array of args>'`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use rdubbo::{Invoker, RpcError};

use crate::target::{call_args, Discovery, Target};

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
    /// Show the result with its Java types (`42L`, `Date(…)`, `com.example.User{…}`)
    /// instead of as JSON
    #[arg(long)]
    java: bool,
    /// Call as Java's GenericService does (`$invoke`): POJOs travel as maps with a `class`
    /// entry and the provider converts them by its own field types (a date field from
    /// milliseconds, …); dubbo:// only
    #[arg(long)]
    generic: bool,
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
    let mut call = call_args(&args.args, args.types.as_deref())?;
    let mut method = args.method.as_str();
    if args.generic {
        call = generic_call(&args.method, call)?;
        method = "$invoke";
    }
    let mut invocation = target.invocation(method, &call);
    if args.generic {
        invocation.attachments.insert("generic", "true");
    }
    for kv in &args.attachments {
        let Some((k, v)) = kv.split_once('=') else {
            anyhow::bail!("attachment {kv:?} is not KEY=VALUE");
        };
        invocation.attachments.insert(k, v);
    }
    match target.invoker().invoke(invocation).await {
        Ok(reply) => {
            if args.java {
                let value = reply.into_value().map_err(anyhow::Error::msg)?;
                println!("{}", crate::show::java(&value));
            } else {
                println!("{}", reply.to_json().map_err(anyhow::Error::msg)?);
            }
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

/// `$invoke(String method, String[] types, Object[] args)` for a call: type names in Java
/// form, arguments in generic form.
fn generic_call(method: &str, call: crate::target::CallArgs) -> Result<crate::target::CallArgs> {
    use rdubbo::hessian::List;
    use rdubbo::Value;
    let values = call.args.to_values().map_err(anyhow::Error::msg)?;
    let descriptors: Vec<String> = if call.types.is_empty() {
        values.iter().map(rdubbo::json::descriptor_of).collect()
    } else {
        call.types.clone()
    };
    let names = descriptors
        .iter()
        .map(|d| Value::from(rdubbo::json::java_name(d)))
        .collect();
    let args = values
        .into_iter()
        .map(rdubbo::dubbo::codec::generalize)
        .collect();
    Ok(crate::target::CallArgs {
        args: rdubbo::Args::Values(vec![
            Value::from(method),
            Value::List(List {
                type_name: Some("[string".into()),
                items: names,
            }),
            Value::List(List {
                type_name: Some("[object".into()),
                items: args,
            }),
        ]),
        types: vec![
            "Ljava/lang/String;".into(),
            "[Ljava/lang/String;".into(),
            "[Ljava/lang/Object;".into(),
        ],
    })
}

#[cfg(test)]
mod tests {
    use crate::target::call_args;
    use rdubbo::Value;

    #[test]
    fn named_types_make_java_values() {
        let c = call_args(
            r#"[5, 1700000000000, {"name": "ann"}]"#,
            Some("java.lang.Long,java.util.Date,com.example.User"),
        )
        .unwrap();
        assert_eq!(
            c.types,
            vec!["Ljava/lang/Long;", "Ljava/util/Date;", "Lcom/example/User;"]
        );
        assert_eq!(
            c.args.to_values().unwrap(),
            vec![
                Value::Long(5),
                Value::Date(1700000000000),
                Value::object("com.example.User", vec![("name", "ann".into())])
            ]
        );
        let generic = call_args(
            r#"[{"a": 1}]"#,
            Some("java.util.Map<java.lang.String,java.lang.Integer>"),
        )
        .unwrap();
        assert_eq!(generic.types, vec!["Ljava/util/Map;"]);
        assert!(call_args("[1, 2]", Some("long")).is_err());
    }
}
