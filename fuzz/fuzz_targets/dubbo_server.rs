//! Any bytes a client sends to rdubbo's Dubbo provider over loopback TCP (frames, events,
//! heartbeats, bodies, cut anywhere): never a panic, the provider closes the connection
//! once the client's bytes end (after answering what it accepted), and keeps no
//! connection of it afterwards.
#![no_main]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use rdubbo_core::{BoxFuture, Invocation, Invoker, Reply, RpcResult, ServiceInfo};
use rdubbo_protocol_dubbo::DubboServer;
use tokio::sync::Notify;

/// Answers every call with its first argument.
struct Echo;

impl Invoker for Echo {
    fn invoke(&self, inv: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        let arg = rdubbo_core::json::from_value(&inv.args.first().unwrap_or_default());
        Box::pin(async move { Ok(Reply::Json(arg)) })
    }
}

/// The provider every input is sent to (the one of the seed `request`).
fn server() -> &'static DubboServer {
    static SERVER: OnceLock<DubboServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let info = ServiceInfo {
            interface: "com.example.Echo".into(),
            version: Some("1.0.0".into()),
            group: None,
            methods: vec![],
            ..Default::default()
        };
        common::runtime().block_on(async {
            DubboServer::builder()
                .export(info, Arc::new(Echo))
                .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
                .await
                .expect("bind the provider on loopback")
        })
    })
}

fuzz_target!(|data: &[u8]| {
    let server = server();
    common::runtime().block_on(async {
        let mut tcp = tokio::net::TcpStream::connect(server.local_addr())
            .await
            .expect("connect to the provider");
        let (from_server, to_server) = tcp.split();
        let never = Notify::new();
        common::within_10s(
            "the provider did not close the connection",
            common::peer(from_server, to_server, data, &never),
        )
        .await;
        drop(tcp);
        common::assert_none_left("provider connection(s)", || server.connections()).await;
    })
});
