//! The IDL peer of `transport-bench` (`tri-idl`): the `rdubbo.echo.Echo` service that
//! `rdubbo-build` generates from `crates/rdubbo-idl-tests/proto/echo.proto`, its server
//! over tri and its typed client, doing the unary echo of a protobuf message holding the
//! same string as the other transports (the same work as the `tonic` kind).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Result;
use rdubbo_idl_tests::echo::{EchoClient, EchoRequest, EchoServer};
use rdubbo_idl_tests::EchoService;

/// Serves the echo on `listen` over tri and prints `LISTENING <addr>`.
pub async fn serve(listen: SocketAddr) -> Result<()> {
    let server = rdubbo::triple::TripleServer::builder()
        .export(
            EchoServer::<EchoService>::info(),
            Arc::new(EchoServer::new(EchoService::default())),
        )
        .bind(listen)
        .await?;
    super::announce(server.local_addr());
    std::future::pending::<()>().await;
    Ok(())
}

/// The tri client every caller shares (one HTTP/2 connection, as the other rdubbo kinds).
pub fn client(addr: SocketAddr) -> Result<Arc<dyn rdubbo_core::Invoker>> {
    let url: rdubbo_core::Url = format!("tri://{addr}/rdubbo.echo.Echo?timeout=5000").parse()?;
    Ok(Arc::new(rdubbo::triple::TripleClient::new(&url)?))
}

/// One echo call through the generated client.
pub async fn call(client: &EchoClient) -> Result<()> {
    let reply = client
        .unary_echo(EchoRequest {
            message: String::from("hello, rdubbo"),
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    anyhow::ensure!(!reply.message.is_empty(), "empty echo");
    Ok(())
}
