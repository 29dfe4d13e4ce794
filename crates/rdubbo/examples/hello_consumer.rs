//! Calls `org.example.Greeter.sayHello` on the provider of `hello_provider`.

use std::sync::Arc;

use rdubbo::jsonrpc::JsonRpcClient;
use rdubbo::{RpcResult, Url};

#[rdubbo::service(interface = "org.example.Greeter", version = "1.0.0")]
pub trait Greeter {
    /// Answers `"Hello " + name`.
    async fn say_hello(&self, name: String) -> RpcResult<String>;
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url: Url =
        "jsonrpc://127.0.0.1:30880/org.example.Greeter?version=1.0.0&timeout=3000".parse()?;
    let client = GreeterClient::new(Arc::new(JsonRpcClient::new(&url)?));
    println!("{}", client.say_hello("world".into()).await?);
    Ok(())
}
