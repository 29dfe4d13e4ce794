//! Serves `org.example.Greeter` over JSON-RPC on 127.0.0.1:30880 until Ctrl-C.
//!
//! `cargo run -p rdubbo --example hello_provider`, then
//! `cargo run -p rdubbo --example hello_consumer` in another terminal.

use std::sync::Arc;
use std::time::Duration;

use rdubbo::jsonrpc::JsonRpcServer;
use rdubbo::RpcResult;

#[rdubbo::service(interface = "org.example.Greeter", version = "1.0.0")]
pub trait Greeter {
    /// Answers `"Hello " + name`.
    async fn say_hello(&self, name: String) -> RpcResult<String>;
}

struct Hello;

impl Greeter for Hello {
    async fn say_hello(&self, name: String) -> RpcResult<String> {
        Ok(format!("Hello {name}"))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = JsonRpcServer::builder()
        .export(
            "org.example.Greeter",
            GreeterServer::<Hello>::info(),
            Arc::new(GreeterServer::new(Hello)),
        )
        .bind("127.0.0.1:30880".parse()?)
        .await?;
    println!(
        "serving jsonrpc://{}/org.example.Greeter?version=1.0.0",
        server.local_addr()
    );
    tokio::signal::ctrl_c().await?;
    server.shutdown(Duration::from_secs(5)).await;
    Ok(())
}
