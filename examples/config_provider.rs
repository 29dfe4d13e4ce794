//! A provider application started from a configuration file (default
//! `examples/provider.toml`). Stops gracefully on SIGINT/SIGTERM.
//!
//! ```sh
//! rdubbo registry --in-memory &
//! cargo run -p rdubbo --example config_provider -- examples/provider.toml
//! curl http://127.0.0.1:22222/ls
//! ```

use std::sync::Arc;

use rdubbo::app::Application;
use rdubbo::RpcResult;

/// The demo service.
#[rdubbo::service(interface = "org.apache.dubbo.demo.DemoService", version = "1.0.0")]
pub trait DemoService {
    /// Greets someone.
    async fn say_hello(&self, name: String) -> RpcResult<String>;
}

struct Demo;

impl DemoService for Demo {
    async fn say_hello(&self, name: String) -> RpcResult<String> {
        Ok(format!("Hello {name}"))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "examples/provider.toml".into());
    let app = Application::from_file(&path)?
        .service(
            "demo",
            DemoServiceServer::<Demo>::info(),
            Arc::new(DemoServiceServer::new(Demo)),
        )
        .start()
        .await?;
    for url in app.exported_urls() {
        println!("serving {url}");
    }
    app.run_until_signal().await;
    Ok(())
}
