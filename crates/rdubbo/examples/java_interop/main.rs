//! A typed Rust service that Java Dubbo calls with its POJOs, and a typed Rust consumer of
//! it (or of the same service in Java: see crates/rdubbo/tests/java).
//!
//! ```sh
//! cargo run -p rdubbo --example java_interop -- provider 20880      # serve until Ctrl-C
//! cargo run -p rdubbo --example java_interop -- consumer 127.0.0.1:20880
//! ```
//!
//! The Java side of the same service is `com.example.UserService`; a Java consumer calls
//! this provider with `ReferenceConfig.setUrl("dubbo://127.0.0.1:20880")`.

use std::sync::Arc;

use rdubbo::dubbo::{DubboClient, DubboServer};
use rdubbo::Url;

mod user_service;
use user_service::{sample, RustUsers, UserServiceClient, UserServiceServer};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("provider") => {
            let port: u16 = args.get(1).map_or(Ok(20880), |p| p.parse())?;
            let server = DubboServer::builder()
                .export(
                    UserServiceServer::<RustUsers>::info(),
                    Arc::new(UserServiceServer::new(RustUsers)),
                )
                .bind(([127, 0, 0, 1], port).into())
                .await?;
            println!(
                "serving com.example.UserService on dubbo://{}",
                server.local_addr()
            );
            tokio::signal::ctrl_c().await?;
            server.shutdown(std::time::Duration::from_secs(5)).await;
        }
        Some("consumer") => {
            let addr = args.get(1).map_or("127.0.0.1:20880", String::as_str);
            let url: Url = format!("dubbo://{addr}/com.example.UserService").parse()?;
            let users = UserServiceClient::new(Arc::new(DubboClient::new(&url)?));
            let ann = users.get_user(Some(7)).await?; // getUser(Ljava/lang/Long;)
            println!("getUser(7) -> {ann:?}");
            // java.util.Date and java.math.BigDecimal as chrono and bigdecimal values.
            let born = ann.born.and_then(|d| d.to_chrono());
            let balance = ann
                .balance
                .as_ref()
                .and_then(|b| bigdecimal::BigDecimal::try_from(b).ok());
            println!("born {born:?}, balance {balance:?}");
            println!("createUser -> {:?}", users.create_user(sample(30)).await?);
            println!("inc(5L) -> {}", users.inc(5).await?); // inc(J)
            println!("inc(Long 5) -> {:?}", users.inc_boxed(Some(5)).await?); // inc(Ljava/lang/Long;)
            match users.get_user(Some(-1)).await {
                Err(e) => println!("getUser(-1) -> {:?}: {}", e.java_class(), e.message()),
                Ok(u) => println!("getUser(-1) -> {u:?}"),
            }
        }
        _ => eprintln!("usage: java_interop provider [PORT] | consumer [HOST:PORT]"),
    }
    Ok(())
}
