//! A user-defined filter: the provider refuses calls that do not carry the right `token`
//! attachment, and a consumer-side filter adds it.
//!
//! `cargo run -p rdubbo --example auth_filter`

use std::sync::Arc;

use rdubbo::cluster::Filter;
use rdubbo::consumer::Reference;
use rdubbo::provider::Provider;
use rdubbo::{BoxFuture, Invocation, Invoker, Reply, RpcError, RpcResult};

#[rdubbo::service(interface = "org.example.Greeter", version = "1.0.0")]
pub trait Greeter {
    /// Greets someone.
    async fn say_hello(&self, name: String) -> RpcResult<String>;
}

struct Hello;

impl Greeter for Hello {
    async fn say_hello(&self, name: String) -> RpcResult<String> {
        Ok(format!("Hello {name}"))
    }
}

/// Provider side: only calls with `token: <secret>` get through.
struct RequireToken(&'static str);

impl Filter for RequireToken {
    fn invoke(
        &self,
        next: Arc<dyn Invoker>,
        inv: Invocation,
    ) -> BoxFuture<'static, RpcResult<Reply>> {
        if inv.attachments.get("token") == Some(self.0) {
            next.invoke(inv)
        } else {
            Box::pin(async { Err(RpcError::service("unauthorized: missing or wrong token")) })
        }
    }
}

/// Consumer side: attaches the token to every call.
struct AddToken(&'static str);

impl Filter for AddToken {
    fn invoke(
        &self,
        next: Arc<dyn Invoker>,
        mut inv: Invocation,
    ) -> BoxFuture<'static, RpcResult<Reply>> {
        inv.attachments.insert("token", self.0);
        next.invoke(inv)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let provider = Provider::builder("127.0.0.1:0".parse()?)
        .filter(Arc::new(RequireToken("s3cret")))
        .export(
            GreeterServer::<Hello>::info(),
            Arc::new(GreeterServer::new(Hello)),
        )
        .start()
        .await?;
    let url = provider.urls()[0].clone();

    let without = Reference::builder("org.example.Greeter")
        .version("1.0.0")
        .url(url.clone())
        .build()
        .await?;
    let err = GreeterClient::new(Arc::new(without))
        .say_hello("mallory".into())
        .await
        .unwrap_err();
    println!("without a token: {err}");

    let with = Reference::builder("org.example.Greeter")
        .version("1.0.0")
        .url(url)
        .filter(Arc::new(AddToken("s3cret")))
        .build()
        .await?;
    println!(
        "with the token:  {}",
        GreeterClient::new(Arc::new(with))
            .say_hello("alice".into())
            .await?
    );
    provider.stop().await;
    Ok(())
}
