//! Shared helpers: our echo server on 127.0.0.1 and request headers.
#![allow(dead_code)]

use std::net::SocketAddr;

use rdubbo_http2::{Config, Headers, Request};
use tokio::net::TcpListener;

/// Echoes every chunk as it arrives (gRPC-shaped: 200, application/grpc, then
/// `grpc-status: 0` trailers). `/headers` answers the request headers as the body.
pub async fn echo(mut req: Request) {
    let mut h = Headers::new();
    h.push_static(":status", "200");
    h.push_static("content-type", "application/grpc");
    if req.send.send_headers(&h, false).await.is_err() {
        return;
    }
    if req.headers.get_str(":path") == Some("/headers") {
        let mut text = String::new();
        for (n, v) in req.headers.iter() {
            text.push_str(&format!(
                "{}: {}\n",
                String::from_utf8_lossy(n),
                String::from_utf8_lossy(v)
            ));
        }
        let _ = req.body.trailers().await;
        let _ = req.send.send_data(text.as_bytes(), false).await;
    } else {
        while let Some(chunk) = req.body.data().await {
            let Ok(chunk) = chunk else { return };
            if req.send.send_data(&chunk, false).await.is_err() {
                return;
            }
        }
    }
    let mut t = Headers::new();
    t.push_static("grpc-status", "0");
    let _ = req.send.send_trailers(&t).await;
}

/// Starts our server with `config` and the echo handler; returns its address.
pub async fn start(config: Config) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (_handle, conn) = rdubbo_http2::serve(tcp, config.clone(), echo);
            tokio::spawn(conn);
        }
    });
    addr
}

/// Request headers of a gRPC call to `path`.
pub fn request(path: &str) -> Headers {
    let mut h = Headers::new();
    h.push_static(":method", "POST");
    h.push_static(":scheme", "http");
    h.push(":path", path.to_string());
    h.push_static(":authority", "127.0.0.1");
    h.push_static("content-type", "application/grpc");
    h.push_static("te", "trailers");
    h
}

/// A gRPC message frame.
pub fn grpc(msg: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8];
    out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    out.extend_from_slice(msg);
    out
}
