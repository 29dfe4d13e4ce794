//! Any bytes a client sends to rdubbo's Dubbo provider over loopback TCP (frames, events,
//! heartbeats, bodies, cut anywhere): never a panic, the provider closes the connection
//! once the client's bytes end (after answering what it accepted), and keeps no
//! connection of it afterwards.
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use rdubbo_core::{BoxFuture, Invocation, Invoker, Reply, RpcResult, ServiceInfo};
use rdubbo_protocol_dubbo::DubboServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

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
        runtime().block_on(async {
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
    runtime().block_on(async {
        let mut tcp = tokio::net::TcpStream::connect(server.local_addr())
            .await
            .expect("connect to the provider");
        let (mut from_server, mut to_server) = tcp.split();
        let send = async {
            let _ = to_server.write_all(data).await;
            let _ = to_server.shutdown().await;
        };
        let receive = async {
            let mut sink = [0u8; 8192];
            while matches!(from_server.read(&mut sink).await, Ok(n) if n > 0) {}
        };
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            tokio::join!(send, receive)
        })
        .await;
        assert!(
            closed.is_ok(),
            "the provider kept the connection open 10 s after the client's last byte"
        );
        drop(tcp);
        for i in 0..464 {
            if server.connections() == 0 {
                return;
            }
            if i < 64 {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        panic!(
            "the provider still counts {} connection(s) 2 s after the client closed",
            server.connections()
        );
    })
});
