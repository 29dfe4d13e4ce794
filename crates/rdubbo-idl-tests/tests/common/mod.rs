//! A Triple provider exporting the echo and greeter IDL services on a free loopback port.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rdubbo::provider::Provider;
use rdubbo_idl_tests::echo::EchoServer;
use rdubbo_idl_tests::greeter::GreeterServer;
use rdubbo_idl_tests::{EchoService, GreeterService};

/// A running provider and the echo service it serves.
pub struct Running {
    pub provider: Provider,
    pub echo: EchoService,
    pub addr: SocketAddr,
}

/// Starts a tri provider with `rdubbo.echo.Echo` and `helloworld.Greeter`.
pub async fn start() -> Running {
    let echo = EchoService::default();
    let provider = Provider::builder("127.0.0.1:0".parse().unwrap())
        .protocol("tri")
        .drain(Duration::from_millis(200))
        .export(
            EchoServer::<EchoService>::info(),
            Arc::new(EchoServer::new(echo.clone())),
        )
        .export(
            GreeterServer::<GreeterService>::info(),
            Arc::new(GreeterServer::new(GreeterService)),
        )
        .start()
        .await
        .expect("the tri provider starts");
    let addr = provider.local_addr();
    Running {
        provider,
        echo,
        addr,
    }
}

/// Waits (bounded) until the echo service has seen `n` cancelled streams.
pub async fn cancelled(echo: &EchoService, n: usize) {
    let mut seen = echo.cancellations();
    tokio::time::timeout(Duration::from_secs(10), seen.wait_for(|c| *c >= n))
        .await
        .expect("the service saw the cancellation within 10 s")
        .expect("the counter lives");
}
