//! Against peers nobody here wrote: the `h2` crate (client and server), curl
//! (`--http2-prior-knowledge`) and Python grpcio.

mod common;

use bytes::Bytes;
use common::{grpc, request, start};
use rdubbo_http2::{Client, Config};
use tokio::net::{TcpListener, TcpStream};

/// An h2 server echoing every chunk, with `grpc-status: 0` trailers.
async fn h2_server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut conn = h2::server::handshake(tcp).await.unwrap();
                while let Some(Ok((req, mut respond))) = conn.accept().await {
                    tokio::spawn(async move {
                        let mut body = req.into_body();
                        let resp = http::Response::builder()
                            .status(200)
                            .header("content-type", "application/grpc")
                            .body(())
                            .unwrap();
                        let mut send = respond.send_response(resp, false).unwrap();
                        while let Some(chunk) = body.data().await {
                            let chunk = chunk.unwrap();
                            let _ = body.flow_control().release_capacity(chunk.len());
                            send.send_data(chunk, false).unwrap();
                        }
                        let mut trailers = http::HeaderMap::new();
                        trailers.insert("grpc-status", "0".parse().unwrap());
                        send.send_trailers(trailers).unwrap();
                    });
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn our_client_to_h2_server_unary_streaming_and_large() {
    let addr = h2_server().await;
    let c = Client::new(TcpStream::connect(addr).await.unwrap(), Config::default());
    for i in 0..20 {
        let msg = grpc(format!("unary {i}").as_bytes());
        let (h, body, t) = c
            .unary(&request("/echo.Echo/Echo"), &msg, 1 << 20)
            .await
            .unwrap();
        assert_eq!(h.get_str(":status"), Some("200"));
        assert_eq!(&body[..], &msg[..]);
        assert_eq!(t.unwrap().get_str("grpc-status"), Some("0"));
    }
    // Bidirectional, message by message.
    let (resp, mut send) = c
        .send_request(&request("/echo.Echo/Bidi"), false)
        .await
        .unwrap();
    send.send_data(&grpc(b"ping"), false).await.unwrap();
    let mut resp = resp.await.unwrap();
    assert_eq!(
        &resp.body.data().await.unwrap().unwrap()[..],
        &grpc(b"ping")[..]
    );
    send.send_data(&grpc(b"pong"), true).await.unwrap();
    assert_eq!(
        &resp.body.data().await.unwrap().unwrap()[..],
        &grpc(b"pong")[..]
    );
    assert!(resp.body.data().await.is_none());
    assert_eq!(
        resp.body
            .trailers()
            .await
            .unwrap()
            .unwrap()
            .get_str("grpc-status"),
        Some("0")
    );
    // 2 MB each way through h2's 64 KiB windows.
    let big: Vec<u8> = (0..2_000_000u32).map(|i| (i % 253) as u8).collect();
    let (resp, mut send) = c.send_request(&request("/big"), false).await.unwrap();
    let sent = big.clone();
    let sender = tokio::spawn(async move { send.send_data(&sent, true).await });
    let mut resp = resp.await.unwrap();
    let (echoed, _) = resp.body.collect(4 << 20).await.unwrap();
    sender.await.unwrap().unwrap();
    assert!(echoed[..] == big[..]);
}

#[tokio::test]
async fn h2_client_to_our_server() {
    let addr = start(Config::default()).await;
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let mut tasks = Vec::new();
    for i in 0..50usize {
        let mut client = client.clone();
        tasks.push(tokio::spawn(async move {
            client = client.ready().await.unwrap();
            let req = http::Request::builder()
                .method("POST")
                .uri(format!("http://{addr}/echo.Echo/Echo"))
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .body(())
                .unwrap();
            let (resp, mut send) = client.send_request(req, false).unwrap();
            // Every tenth call is large: 300 KB through our windows and h2's.
            let msg = if i % 10 == 0 {
                Bytes::from(vec![(i % 256) as u8; 300_000])
            } else {
                Bytes::from(grpc(format!("h2 {i}").as_bytes()))
            };
            send.send_data(msg.clone(), true).unwrap();
            let resp = resp.await.unwrap();
            assert_eq!(resp.status(), 200);
            let mut body = resp.into_body();
            let mut got = Vec::new();
            while let Some(chunk) = body.data().await {
                let chunk = chunk.unwrap();
                let _ = body.flow_control().release_capacity(chunk.len());
                got.extend_from_slice(&chunk);
            }
            assert!(got[..] == msg[..]);
            let trailers = body.trailers().await.unwrap().unwrap();
            assert_eq!(trailers["grpc-status"], "0");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn curl_prior_knowledge_to_our_server() {
    let addr = start(Config::default()).await;
    let out = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "--http2-prior-knowledge",
            "-D",
            "-",
            "--data-binary",
            "hello from curl",
            &format!("http://{addr}/echo.Echo/Echo"),
        ])
        .output()
        .await
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "curl failed: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("HTTP/2 200"), "{text}");
    assert!(text.contains("content-type: application/grpc"), "{text}");
    // curl prints the trailers after the body.
    assert!(text.contains("\r\n\r\nhello from curl"), "{text}");
    assert!(text.ends_with("grpc-status: 0\r\n"), "{text:?}");
}

const GRPCIO_CLIENT: &str = r#"
import sys, grpc
ch = grpc.insecure_channel(sys.argv[1])
grpc.channel_ready_future(ch).result(timeout=10)
unary = ch.unary_unary('/echo.Echo/Echo')
for i in range(20):
    msg = ('hello %d' % i).encode()
    assert unary(msg, timeout=10) == msg
big = bytes(range(256)) * 12000
assert unary(big, timeout=10) == big
bidi = ch.stream_stream('/echo.Echo/Bidi')
out = list(bidi(iter([b'a', b'bb', b'ccc']), timeout=10))
assert out == [b'a', b'bb', b'ccc'], out
client_stream = ch.stream_unary('/echo.Echo/Collect')
# The echo answers each message: a client-streaming call of one message gets it back.
assert client_stream(iter([b'only']), timeout=10) == b'only'
server_stream = ch.unary_stream('/echo.Echo/Watch')
assert list(server_stream(b'x', timeout=10)) == [b'x']
print('OK')
"#;

#[tokio::test]
async fn grpcio_client_unary_and_streaming() {
    let addr = start(Config::default()).await;
    let out = tokio::process::Command::new("python3")
        .args(["-c", GRPCIO_CLIENT, &addr.to_string()])
        .output()
        .await
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("OK"),
        "{stdout}\n{stderr}"
    );
}
