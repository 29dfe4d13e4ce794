//! The HTTP/2 engine peers of `transport-bench`: a gRPC unary echo (the tonic peer's
//! protobuf message, gRPC-framed, decoded and re-encoded by the server) over
//! rdubbo's own HTTP/2 engine (`rdubbo-http2`, kind `http2`) and over the `h2` crate
//! (kind `h2`), client and server each. No framework above them: these show what the
//! engine itself costs, before the Triple protocol is moved onto it.

use std::net::SocketAddr;

use anyhow::{anyhow, ensure, Result};
use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;
use tokio::net::{TcpListener, TcpStream};

use crate::tonic_peer::EchoMsg;

const PATH: &str = "/bench.Echo/Echo";

/// A gRPC message frame of `msg`.
fn grpc_frame(msg: &EchoMsg) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + msg.encoded_len());
    out.put_u8(0);
    out.put_u32(msg.encoded_len() as u32);
    // Cannot fail: the buffer has room.
    let _ = msg.encode(&mut out);
    out.freeze()
}

/// The message of a gRPC frame.
fn grpc_message(frame: &[u8]) -> Result<EchoMsg> {
    ensure!(frame.len() >= 5 && frame[0] == 0, "bad gRPC frame");
    let len = u32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]) as usize;
    ensure!(frame.len() == 5 + len, "bad gRPC frame length");
    Ok(EchoMsg::decode(&frame[5..])?)
}

fn request() -> EchoMsg {
    EchoMsg {
        text: String::from("hello, rdubbo"),
    }
}

// ---------------------------------------------------------------- rdubbo-http2

async fn ours_echo(mut req: rdubbo_http2::Request) {
    let reply = match req.body.collect(4 << 20).await {
        Ok((body, _)) => grpc_message(&body).map(|m| grpc_frame(&m)),
        Err(e) => Err(anyhow!("{e}")),
    };
    let mut headers = rdubbo_http2::Headers::with_capacity(2);
    headers.push_static(":status", "200");
    headers.push_static("content-type", "application/grpc");
    let mut trailers = rdubbo_http2::Headers::with_capacity(1);
    let Ok(reply) = reply else {
        trailers.push_static(":status", "200");
        trailers.push_static("content-type", "application/grpc");
        trailers.push_static("grpc-status", "13");
        let _ = req.send.send_headers(&trailers, true).await;
        return;
    };
    trailers.push_static("grpc-status", "0");
    if req.send.send_headers(&headers, false).await.is_ok()
        && req.send.send_data(&reply, false).await.is_ok()
    {
        let _ = req.send.send_trailers(&trailers).await;
    }
}

/// Serves the echo over rdubbo-http2 and prints `LISTENING <addr>`.
pub async fn serve_ours(listen: SocketAddr) -> Result<()> {
    let listener = TcpListener::bind(listen).await?;
    super::announce(listener.local_addr()?);
    loop {
        let (tcp, _) = listener.accept().await?;
        let (_shutdown, conn) =
            rdubbo_http2::serve(tcp, rdubbo_http2::Config::default(), ours_echo);
        tokio::spawn(conn);
    }
}

// ---------------------------------------------------------------- h2

/// Serves the echo over the h2 crate and prints `LISTENING <addr>`.
pub async fn serve_h2(listen: SocketAddr) -> Result<()> {
    let listener = TcpListener::bind(listen).await?;
    super::announce(listener.local_addr()?);
    loop {
        let (tcp, _) = listener.accept().await?;
        tcp.set_nodelay(true)?;
        tokio::spawn(async move {
            let Ok(mut conn) = h2::server::handshake(tcp).await else {
                return;
            };
            while let Some(Ok((req, mut respond))) = conn.accept().await {
                tokio::spawn(async move {
                    let mut body = req.into_body();
                    let mut buf = BytesMut::new();
                    while let Some(Ok(chunk)) = body.data().await {
                        let _ = body.flow_control().release_capacity(chunk.len());
                        buf.extend_from_slice(&chunk);
                    }
                    let Ok(msg) = grpc_message(&buf) else {
                        return;
                    };
                    let resp = http::Response::builder()
                        .status(200)
                        .header("content-type", "application/grpc")
                        .body(())
                        .unwrap_or_default();
                    let Ok(mut send) = respond.send_response(resp, false) else {
                        return;
                    };
                    let _ = send.send_data(grpc_frame(&msg), false);
                    let mut trailers = http::HeaderMap::new();
                    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                    let _ = send.send_trailers(trailers);
                });
            }
        });
    }
}

// ---------------------------------------------------------------- clients

/// One HTTP/2 connection shared by every caller (as the tonic peer and rdubbo clients).
#[derive(Clone)]
pub enum Client {
    /// rdubbo-http2.
    Ours(rdubbo_http2::Client, rdubbo_http2::Headers),
    /// h2.
    H2(h2::client::SendRequest<Bytes>, http::Uri),
}

/// Connects to `addr` with rdubbo-http2 (`ours`) or h2.
pub async fn connect(addr: SocketAddr, ours: bool) -> Result<Client> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    if ours {
        let client = rdubbo_http2::Client::new(tcp, rdubbo_http2::Config::default());
        let mut h = rdubbo_http2::Headers::with_capacity(6);
        h.push_static(":method", "POST");
        h.push_static(":scheme", "http");
        h.push_static(":path", PATH);
        h.push(":authority", addr.to_string());
        h.push_static("content-type", "application/grpc");
        h.push_static("te", "trailers");
        return Ok(Client::Ours(client, h));
    }
    let (send, conn) = h2::client::handshake(tcp).await?;
    tokio::spawn(conn);
    Ok(Client::H2(send, format!("http://{addr}{PATH}").parse()?))
}

/// One echo call.
pub async fn call(client: &mut Client) -> Result<()> {
    let frame = grpc_frame(&request());
    match client {
        Client::Ours(c, headers) => {
            let (_, body, trailers) = c
                .unary(headers, &frame, 4 << 20)
                .await
                .map_err(|e| anyhow!("{e}"))?;
            ensure!(
                trailers.as_ref().and_then(|t| t.get_str("grpc-status")) == Some("0"),
                "no grpc-status 0"
            );
            ensure!(!grpc_message(&body)?.text.is_empty(), "empty echo");
        }
        Client::H2(send, uri) => {
            let req = http::Request::builder()
                .method("POST")
                .uri(uri.clone())
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .body(())?;
            let mut ready = send.clone().ready().await?;
            let (resp, mut body_tx) = ready.send_request(req, false)?;
            body_tx.send_data(frame, true)?;
            let resp = resp.await?;
            let mut body = resp.into_body();
            let mut buf = BytesMut::new();
            while let Some(chunk) = body.data().await {
                let chunk = chunk?;
                let _ = body.flow_control().release_capacity(chunk.len());
                buf.extend_from_slice(&chunk);
            }
            let trailers = body.trailers().await?;
            ensure!(
                trailers
                    .as_ref()
                    .and_then(|t| t.get("grpc-status"))
                    .map(|v| v.as_bytes())
                    == Some(b"0"),
                "no grpc-status 0"
            );
            ensure!(!grpc_message(&buf)?.text.is_empty(), "empty echo");
        }
    }
    Ok(())
}
