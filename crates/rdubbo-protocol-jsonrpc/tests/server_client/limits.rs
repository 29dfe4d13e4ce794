//! Timeouts and limits: the client's and the provider's deadlines, connections, idle and
//! slow clients, batches, answers, bodies, concurrent requests.
//!
//! These run on tokio's paused clock (`start_paused`): when every task waits, the runtime
//! jumps to the next timer, so seconds of deadlines cost no real time and fire exactly;
//! loopback I/O is ready before the clock moves on.

use super::*;

#[tokio::test(start_paused = true)]
async fn timeouts_on_both_sides() {
    let (server, _) = start(|b| b.default_timeout(Duration::from_millis(300))).await;
    let addr = server.local_addr();
    // Client side: the consumer gives up first.
    let c = client(addr, "timeout=100");
    let e = c
        .invoke(call("sleep", vec![json!(2000)]))
        .await
        .unwrap_err();
    assert_eq!(e, RpcError::Timeout(Duration::from_millis(100)));
    // Provider side: the provider's cap ends the call and says so.
    let c = client(addr, "timeout=5000");
    let e = c
        .invoke(call("sleep", vec![json!(3000)]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), codes::SERVER_TIMEOUT, "{e}");
    // The Timeout header (nanoseconds, or a Go duration) bounds the call on the provider.
    for header in ["Timeout: 50000000\r\n", "Timeout: 50ms\r\n"] {
        let r = rpc_with_header(
            addr,
            r#"{"jsonrpc":"2.0","method":"sleep","params":[2000],"id":1}"#,
            header,
        )
        .await;
        assert_eq!(
            body_of(&r)["error"]["code"],
            json!(codes::SERVER_TIMEOUT),
            "{header}: {r}"
        );
    }
    let r = rpc_with_header(
        addr,
        r#"{"jsonrpc":"2.0","method":"sleep","params":[10],"id":1}"#,
        "Timeout: 2s\r\n",
    )
    .await;
    assert_eq!(body_of(&r)["result"], json!(10), "{r}");
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn connection_limit_is_answered_with_503_when_every_connection_serves_a_call() {
    let (server, started) = start(|b| b.max_connections(2)).await;
    let addr = server.local_addr();
    // Two connections each serving a slow call.
    let mut slow = Vec::new();
    for _ in 0..2 {
        let request = post(
            IFACE,
            r#"{"jsonrpc":"2.0","method":"sleep","params":[1500],"id":1}"#,
            "",
        );
        slow.push(tokio::spawn(async move { raw_http(addr, &request).await }));
    }
    wait_until("both slow calls in the service", || {
        started.load(Ordering::SeqCst) == 2
    })
    .await;
    assert_eq!(server.connections(), 2);
    let r = rpc(
        addr,
        r#"{"jsonrpc":"2.0","method":"echo","params":[1],"id":1}"#,
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 503"), "{r}");
    assert_eq!(body_of(&r)["error"]["code"], json!(codes::SERVER_BUSY));
    assert!(r.contains("too many connections (limit 2)"), "{r}");
    for s in slow {
        assert!(s.await.unwrap().starts_with("HTTP/1.1 200"));
    }
    // Once they are done, calls work again.
    let c = client(addr, "timeout=2000");
    assert!(c.invoke(call("echo", vec![json!(1)])).await.is_ok());
    server.shutdown(Duration::from_secs(1)).await;
}

/// Idle keep-alive connections and clients sending their body a byte at a time cannot keep
/// callers out: at the limit the longest-idle or slowest connection makes room, and a body
/// not sent within the deadline is answered 408.
#[tokio::test(start_paused = true)]
async fn idle_and_slow_connections_make_room_for_callers() {
    let (server, _) = start(|b| {
        b.max_connections(8)
            .config_with(|c| c.body_read_timeout = Duration::from_secs(1))
    })
    .await;
    let addr = server.local_addr();
    let mut hostile = Vec::new();
    // 4 idle connections and 20 slow bodies (more than the limit).
    for i in 0..24 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        if i >= 4 {
            let head = format!(
                "POST /{IFACE} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"jsonrpc\""
            );
            let _ = s.write_all(head.as_bytes()).await;
        }
        hostile.push(s);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Callers keep getting through.
    let c = client(addr, "timeout=2000");
    for i in 0..20 {
        let r = c.invoke(call("echo", vec![json!(i)])).await;
        assert!(r.is_ok(), "call {i}: {r:?}");
    }
    assert!(server.connections() <= 10, "{}", server.connections());
    // A slow body past the deadline: 408.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("POST /{IFACE} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{{").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    drop(hostile);
    server.shutdown(Duration::from_secs(1)).await;
}

/// Batches and answers are bounded, and errors never echo a large request back.
#[tokio::test]
async fn batch_and_response_limits_and_short_errors() {
    let (server, _) = start(|b| {
        b.config_with(|c| {
            c.max_batch = 4;
            c.max_response_size = 2_000;
        })
    })
    .await;
    let addr = server.local_addr();
    let entry =
        |i: usize| format!(r#"{{"jsonrpc":"2.0","method":"echo","params":[{i}],"id":{i}}}"#);
    let five: Vec<String> = (0..5).map(entry).collect();
    let r = rpc(addr, &format!("[{}]", five.join(","))).await;
    let v = body_of(&r);
    assert_eq!(v["error"]["code"], json!(codes::INVALID_REQUEST), "{r}");
    assert!(
        r.contains("batch of 5 requests exceeds the limit of 4"),
        "{r}"
    );
    // The big result is replaced by an error; the small ones are answered.
    let big = "x".repeat(3_000);
    let batch = format!(
        r#"[{},{{"jsonrpc":"2.0","method":"echo","params":["{big}"],"id":9}},{}]"#,
        entry(1),
        entry(2)
    );
    let r = rpc(addr, &batch).await;
    let v = body_of(&r);
    assert_eq!(v[0]["result"], json!(1), "{r}");
    assert_eq!(v[1]["id"], json!(9), "{r}");
    assert_eq!(v[1]["error"]["code"], json!(codes::INTERNAL_ERROR), "{r}");
    assert_eq!(v[2]["result"], json!(2), "{r}");
    // A 200 KB bad field is not echoed.
    let junk = "y".repeat(200_000);
    let r = rpc(
        addr,
        &format!(r#"{{"jsonrpc":"{junk}","method":"echo","params":[],"id":1}}"#),
    )
    .await;
    assert!(r.len() < 1_000, "answer of {} bytes", r.len());
    assert_eq!(body_of(&r)["error"]["code"], json!(codes::INVALID_REQUEST));
    let r = rpc(
        addr,
        &format!(r#"{{"jsonrpc":"2.0","method":"{junk}","params":[],"id":1}}"#),
    )
    .await;
    assert!(r.len() < 1_000, "answer of {} bytes", r.len());
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn body_size_limit_with_content_length_and_chunked() {
    let (server, started) = start(|b| b.max_body_size(1024)).await;
    let addr = server.local_addr();
    let big = format!(
        r#"{{"jsonrpc":"2.0","method":"echo","params":["{}"],"id":1}}"#,
        "x".repeat(2000)
    );
    let r = rpc(addr, &big).await;
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");
    assert!(r.contains("exceeds the limit of 1024 bytes"), "{r}");
    // Chunked: no Content-Length up front, the limit is enforced while reading.
    let mut chunked = format!("POST /{IFACE} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n");
    for piece in big.as_bytes().chunks(500) {
        chunked.push_str(&format!(
            "{:x}\r\n{}\r\n",
            piece.len(),
            std::str::from_utf8(piece).unwrap()
        ));
    }
    chunked.push_str("0\r\n\r\n");
    let r = raw_http(addr, chunked.as_bytes()).await;
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");
    assert_eq!(
        started.load(Ordering::SeqCst),
        0,
        "oversized requests never reach the service"
    );
    // A body under the limit works.
    let c = client(addr, "");
    assert_eq!(
        c.invoke(call("echo", vec![json!("small")])).await.unwrap(),
        json!("small")
    );
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn concurrent_request_limit_is_answered_busy() {
    let (server, started) = start(|b| b.max_concurrent_requests(2)).await;
    let addr = server.local_addr();
    let c = client(addr, "timeout=5000");
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.invoke(call("sleep", vec![json!(800)])).await })
        })
        .collect();
    wait_until("both slow calls in the service", || {
        started.load(Ordering::SeqCst) == 2
    })
    .await;
    let e = c.invoke(call("echo", vec![json!(1)])).await.unwrap_err();
    assert_eq!(e.code(), codes::SERVER_BUSY, "{e}");
    assert!(e.is_retryable());
    assert!(e.to_string().contains("limit 2"), "{e}");
    for s in slow {
        assert_eq!(s.await.unwrap().unwrap(), json!(800));
    }
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn slowloris_connection_is_dropped_while_others_are_served() {
    let (server, _) = start(|b| b.header_read_timeout(Duration::from_millis(300))).await;
    let addr = server.local_addr();
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"POST /x HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let c = client(addr, "");
    assert_eq!(
        c.invoke(call("echo", vec![json!(1)])).await.unwrap(),
        json!(1)
    );
    // The half-sent request never completes; the server closes the connection.
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "slow connection was not closed");
    assert_eq!(
        c.invoke(call("echo", vec![json!(2)])).await.unwrap(),
        json!(2)
    );
    server.shutdown(Duration::from_secs(1)).await;
}
