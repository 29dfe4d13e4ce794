//! Our client against our server: unary, streaming, flow control with a slow reader,
//! many concurrent calls, graceful shutdown.

mod common;

use std::time::Duration;

use common::{grpc, request, start};
use rdubbo_http2::{Client, Config, Headers};
use tokio::net::TcpStream;

async fn client(addr: std::net::SocketAddr, config: Config) -> Client {
    Client::new(TcpStream::connect(addr).await.unwrap(), config)
}

#[tokio::test]
async fn unary_echo() {
    let addr = start(Config::default()).await;
    let c = client(addr, Config::default()).await;
    for i in 0..50 {
        let msg = grpc(format!("hello {i}").as_bytes());
        let (h, body, trailers) = c
            .unary(&request("/echo.Echo/Echo"), &msg, 1 << 20)
            .await
            .unwrap();
        assert_eq!(h.get_str(":status"), Some("200"));
        assert_eq!(&body[..], &msg[..]);
        assert_eq!(trailers.unwrap().get_str("grpc-status"), Some("0"));
    }
}

#[tokio::test]
async fn request_headers_arrive_intact() {
    let addr = start(Config::default()).await;
    let c = client(addr, Config::default()).await;
    let mut h = request("/headers");
    h.push("x-custom", "v".repeat(3000));
    h.push_static("tri-service-version", "1.0.0");
    let (_, body, _) = c.unary(&h, b"", 1 << 20).await.unwrap();
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(text.contains(":path: /headers\n"));
    assert!(text.contains(&format!("x-custom: {}\n", "v".repeat(3000))));
    assert!(text.contains("tri-service-version: 1.0.0\n"));
}

#[tokio::test]
async fn bidi_streaming_message_by_message() {
    let addr = start(Config::default()).await;
    let c = client(addr, Config::default()).await;
    let (resp, mut send) = c
        .send_request(&request("/echo.Echo/Bidi"), false)
        .await
        .unwrap();
    send.send_data(&grpc(b"one"), false).await.unwrap();
    let mut resp = resp.await.unwrap();
    assert_eq!(resp.headers.get_str(":status"), Some("200"));
    assert_eq!(
        &resp.body.data().await.unwrap().unwrap()[..],
        &grpc(b"one")[..]
    );
    send.send_data(&grpc(b"two"), false).await.unwrap();
    assert_eq!(
        &resp.body.data().await.unwrap().unwrap()[..],
        &grpc(b"two")[..]
    );
    send.send_data(b"", true).await.unwrap();
    assert!(resp.body.data().await.is_none());
    let t = resp.body.trailers().await.unwrap().unwrap();
    assert_eq!(t.get_str("grpc-status"), Some("0"));
}

#[tokio::test]
async fn large_bodies_cross_many_windows() {
    let small = Config {
        initial_stream_window: 65_535,
        connection_window: 65_535,
        ..Config::default()
    };
    let addr = start(small.clone()).await;
    let c = client(addr, small).await;
    let body: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    // The server echoes as it reads: read while sending (the windows are smaller than the
    // body, so a client sending everything first would wait for itself).
    let (resp, mut send) = c.send_request(&request("/big"), false).await.unwrap();
    let sent = body.clone();
    let sender = tokio::spawn(async move { send.send_data(&sent, true).await });
    let mut resp = resp.await.unwrap();
    let (echoed, _) = resp.body.collect(8 << 20).await.unwrap();
    sender.await.unwrap().unwrap();
    assert_eq!(echoed.len(), body.len());
    assert!(echoed[..] == body[..]);
}

#[tokio::test]
async fn a_slow_reader_stops_the_sender_then_lets_it_finish() {
    let addr = start(Config::default()).await;
    let small = Config {
        initial_stream_window: 65_535,
        connection_window: 65_535,
        ..Config::default()
    };
    let c = client(addr, small).await;
    let (resp, mut send) = c.send_request(&request("/slow"), false).await.unwrap();
    // The server echoes; we do not read: once our 64 KiB window and the server's send
    // buffers are full, the server stops reading and our sends stop.
    let chunk = vec![7u8; 16 * 1024];
    let mut sent = 0usize;
    let mut blocked = false;
    for _ in 0..2000 {
        match tokio::time::timeout(Duration::from_millis(300), send.send_data(&chunk, false)).await
        {
            Ok(r) => {
                r.unwrap();
                sent += chunk.len();
            }
            Err(_) => {
                blocked = true;
                break;
            }
        }
    }
    assert!(blocked, "the sender was never stopped ({sent} bytes sent)");
    assert!(
        sent < 8 << 20,
        "{sent} bytes went out to a peer that does not read"
    );
    // Now read everything: the rest goes through.
    let mut resp = resp.await.unwrap();
    let reader = tokio::spawn(async move {
        let mut n = 0;
        while let Some(c) = resp.body.data().await {
            n += c.unwrap().len();
        }
        n
    });
    for _ in 0..20 {
        send.send_data(&chunk, false).await.unwrap();
        sent += chunk.len();
    }
    send.send_data(b"", true).await.unwrap();
    // (The send cut by the timeout may have queued part of its chunk.)
    let got = reader.await.unwrap();
    assert!(
        got >= sent && got <= sent + chunk.len(),
        "got {got}, sent {sent}"
    );
}

#[tokio::test]
async fn many_concurrent_calls_on_one_connection() {
    let addr = start(Config::default()).await;
    let c = client(addr, Config::default()).await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let msg = grpc(format!("call {i}").as_bytes());
            let (_, body, t) = c
                .unary(&request("/echo.Echo/Echo"), &msg, 1 << 20)
                .await
                .unwrap();
            assert_eq!(&body[..], &msg[..]);
            assert_eq!(t.unwrap().get_str("grpc-status"), Some("0"));
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(c.active_streams(), 0);
}

#[tokio::test]
async fn stream_limit_makes_the_client_wait() {
    let config = Config {
        max_concurrent_streams: 2,
        ..Config::default()
    };
    let addr = start(config).await;
    let c = client(addr, Config::default()).await;
    // Wait for the server's SETTINGS (the first call's answer comes after them).
    c.unary(&request("/x"), b"", 1024).await.unwrap();
    let mut open = Vec::new();
    for _ in 0..2 {
        let (r, mut s) = c.send_request(&request("/hold"), false).await.unwrap();
        s.flush().await.unwrap();
        open.push((r, s));
    }
    let third = tokio::time::timeout(
        Duration::from_millis(200),
        c.send_request(&request("/x"), true),
    )
    .await;
    assert!(
        third.is_err(),
        "a third stream opened past the server's limit of 2"
    );
    let (_, mut s) = open.pop().unwrap();
    s.send_data(b"", true).await.unwrap();
    let (r, _s) =
        tokio::time::timeout(Duration::from_secs(5), c.send_request(&request("/x"), true))
            .await
            .expect("a slot frees when a stream ends")
            .unwrap();
    assert_eq!(r.await.unwrap().headers.get_str(":status"), Some("200"));
}

#[tokio::test]
async fn graceful_shutdown_lets_open_streams_finish() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (handle_tx, handle_rx) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let (handle, conn) = rdubbo_http2::serve(tcp, Config::default(), common::echo);
        handle_tx.send(handle).unwrap();
        conn.await
    });
    let c = client(addr, Config::default()).await;
    let (resp, mut send) = c.send_request(&request("/stream"), false).await.unwrap();
    send.send_data(&grpc(b"a"), false).await.unwrap();
    let mut resp = resp.await.unwrap();
    assert!(resp.body.data().await.is_some());
    let handle = handle_rx.await.unwrap();
    handle.graceful_shutdown();
    // New streams are refused (the GOAWAY arrives first or the stream is refused).
    let mut refused = false;
    for _ in 0..100 {
        match c.send_request(&request("/x"), true).await {
            Err(_) => refused = true,
            Ok((r, _s)) => refused = r.await.is_err(),
        }
        if refused {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(refused);
    // The open one finishes.
    send.send_data(&grpc(b"b"), true).await.unwrap();
    assert!(resp.body.data().await.is_some());
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
    assert!(server.await.unwrap().is_ok());
}

#[tokio::test]
async fn dropping_a_call_resets_it_and_the_connection_goes_on() {
    let addr = start(Config::default()).await;
    let c = client(addr, Config::default()).await;
    {
        let (_resp, mut send) = c.send_request(&request("/drop"), false).await.unwrap();
        send.send_data(b"partial", false).await.unwrap();
    }
    let mut h = Headers::new();
    h.push_static("x", "y");
    let (_, body, _) = c.unary(&request("/after"), b"ok", 1024).await.unwrap();
    assert_eq!(&body[..], b"ok");
    assert_eq!(c.active_streams(), 0);
}

/// Counts the writes made on a socket.
struct Counting<W> {
    inner: W,
    writes: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl<W: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Counting<W> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[tokio::test]
async fn data_and_trailers_from_a_spawned_handler_leave_in_one_write() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let writes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = writes.clone();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let (r, w) = tcp.into_split();
        let w = Counting {
            inner: w,
            writes: counted,
        };
        let handler = |mut req: rdubbo_http2::Request| async move {
            // Not ready at the first poll: the handler is spawned.
            tokio::task::yield_now().await;
            let (body, _) = req.body.collect(1024).await.unwrap();
            let mut h = Headers::new();
            h.push_static(":status", "200");
            req.send.send_headers(&h, false).await.unwrap();
            let mut t = Headers::new();
            t.push_static("grpc-status", "0");
            req.send.send_data_and_trailers(&body, &t).await.unwrap();
        };
        let (_h, conn) = rdubbo_http2::serve_io(r, w, Config::default(), handler);
        conn.await
    });
    let c = client(addr, Config::default()).await;
    c.unary(&request("/warm"), b"w", 1024).await.unwrap();
    let before = writes.load(std::sync::atomic::Ordering::SeqCst);
    let (_, body, t) = c.unary(&request("/x"), b"spawned", 1024).await.unwrap();
    assert_eq!(&body[..], b"spawned");
    assert_eq!(t.unwrap().get_str("grpc-status"), Some("0"));
    assert_eq!(writes.load(std::sync::atomic::Ordering::SeqCst) - before, 1);
}

#[tokio::test]
async fn a_unary_call_is_one_write_per_side() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server_writes = Arc::new(AtomicUsize::new(0));
    let counted = server_writes.clone();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let (r, w) = tcp.into_split();
        let w = Counting {
            inner: w,
            writes: counted,
        };
        let (_h, conn) = rdubbo_http2::serve_io(r, w, Config::default(), common::echo);
        conn.await
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let (r, w) = tcp.into_split();
    let client_writes = Arc::new(AtomicUsize::new(0));
    let c = Client::with_io(
        r,
        Counting {
            inner: w,
            writes: client_writes.clone(),
        },
        Config::default(),
    );
    // Warm up: SETTINGS both ways and their ACKs.
    for _ in 0..3 {
        c.unary(&request("/warm"), &grpc(b"w"), 1024).await.unwrap();
    }
    for _ in 0..20 {
        let (c0, s0) = (
            client_writes.load(Ordering::SeqCst),
            server_writes.load(Ordering::SeqCst),
        );
        let (_, body, trailers) = c
            .unary(&request("/echo.Echo/Echo"), &grpc(b"x"), 1024)
            .await
            .unwrap();
        assert_eq!(&body[..], &grpc(b"x")[..]);
        assert!(trailers.is_some());
        assert_eq!(
            client_writes.load(Ordering::SeqCst) - c0,
            1,
            "client writes per call"
        );
        assert_eq!(
            server_writes.load(Ordering::SeqCst) - s0,
            1,
            "server writes per call"
        );
    }
}
