//! A consumer application started from a configuration file (default
//! `examples/consumer.yaml`): calls the demo service ten times, then stops.
//!
//! ```sh
//! cargo run -p rdubbo --example config_consumer -- examples/consumer.yaml
//! ```

use rdubbo::app::Application;
use rdubbo::RpcResult;

/// The demo service, as the consumer sees it.
#[rdubbo::service(interface = "org.apache.dubbo.demo.DemoService", version = "1.0.0")]
pub trait DemoService {
    /// Greets someone.
    async fn say_hello(&self, name: String) -> RpcResult<String>;
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("warn").init();
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "examples/consumer.yaml".into());
    let app = Application::from_file(&path)?.start().await?;
    let demo = DemoServiceClient::new(app.reference("demo").ok_or("no reference `demo`")?);
    for i in 0..10 {
        println!("{}", demo.say_hello(format!("call {i}")).await?);
    }
    app.shutdown().await;
    Ok(())
}
