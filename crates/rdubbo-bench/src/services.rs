//! The typed services `pojo-bench` and `alloc-bench` call: the interop `UserService`
//! (crates/rdubbo/examples/java_interop/user_service.rs, the same file the example and the
//! Java interop tests use) and a typed string echo.

use rdubbo::RpcResult;

#[allow(dead_code)] // the benchmarks call only echoUser
#[path = "../../rdubbo/examples/java_interop/user_service.rs"]
pub mod user_service;

/// A typed string echo, the smallest typed call.
#[rdubbo::service(interface = "org.apache.dubbo.demo.EchoService")]
pub trait EchoService {
    /// `String echo(String s)`
    async fn echo(&self, s: String) -> RpcResult<String>;
}

/// Answers what it is sent.
pub struct Echo;

impl EchoService for Echo {
    async fn echo(&self, s: String) -> RpcResult<String> {
        Ok(s)
    }
}

/// A provider serving both services on the Dubbo protocol.
pub async fn dubbo_provider(
    listen: std::net::SocketAddr,
) -> std::io::Result<rdubbo::dubbo::DubboServer> {
    use std::sync::Arc;
    use user_service::{RustUsers, UserServiceServer};
    rdubbo::dubbo::DubboServer::builder()
        .export(
            UserServiceServer::<RustUsers>::info(),
            Arc::new(UserServiceServer::new(RustUsers)),
        )
        .export(
            EchoServiceServer::<Echo>::info(),
            Arc::new(EchoServiceServer::new(Echo)),
        )
        .bind(listen)
        .await
}
