//! Hostile peers against our server: floods, rapid reset, oversized frames, CONTINUATION
//! floods, garbage, limits. Each gets a clear GOAWAY (or RST_STREAM / 431) and the server
//! goes on serving others; a failed connection's socket closes at once. And servers
//! against our client: one ending the connection with an error, one resetting a stream
//! it answered in full.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{grpc, request, start};
use rdubbo_http2::frame::{self, kind, Frame, FrameHeader, Reason, HEADER_LEN};
use rdubbo_http2::hpack::Encoder;
use rdubbo_http2::{Client, Config, Headers};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A raw connection that has sent the preface and empty SETTINGS.
async fn raw(addr: std::net::SocketAddr) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut out = frame::PREFACE.to_vec();
    frame::put_settings(&mut out, &[]);
    tcp.write_all(&out).await.unwrap();
    tcp
}

/// Reads frames until the server's GOAWAY (or the end); returns every frame read.
async fn frames_until_goaway(tcp: &mut TcpStream) -> Vec<Frame> {
    let mut buf = Vec::new();
    let mut frames = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        while let Some(h) = FrameHeader::parse(&buf) {
            let end = HEADER_LEN + h.len as usize;
            if buf.len() < end {
                break;
            }
            let payload = Bytes::copy_from_slice(&buf[HEADER_LEN..end]);
            buf.drain(..end);
            let f = Frame::parse(h, payload).unwrap();
            let done = matches!(f, Frame::GoAway { .. });
            frames.push(f);
            if done {
                return frames;
            }
        }
        let mut chunk = [0u8; 65536];
        match tokio::time::timeout_at(deadline, tcp.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return frames,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => panic!("no GOAWAY within 10 s; frames: {frames:?}"),
        }
    }
}

fn goaway(frames: &[Frame]) -> (Reason, String) {
    match frames.last() {
        Some(Frame::GoAway { reason, debug, .. }) => {
            (*reason, String::from_utf8_lossy(debug).into_owned())
        }
        other => panic!("no GOAWAY: {other:?}"),
    }
}

/// A legitimate client still gets answers.
async fn still_serves(addr: std::net::SocketAddr) {
    let c = Client::new(TcpStream::connect(addr).await.unwrap(), Config::default());
    let (_, body, _) = c
        .unary(&request("/ok"), &grpc(b"still here"), 1024)
        .await
        .unwrap();
    assert_eq!(&body[..], &grpc(b"still here")[..]);
}

/// Sends a HEADERS frame whose block refers to a table entry that does not exist; the
/// server must answer GOAWAY(COMPRESSION_ERROR). Returns the connection.
async fn bad_hpack_gets_compression_error(addr: std::net::SocketAddr) -> TcpStream {
    let mut tcp = raw(addr).await;
    let mut out = Vec::new();
    frame::put_headers(&mut out, 1, &[0xff, 0x7f], true, 16_384);
    tcp.write_all(&out).await.unwrap();
    let (reason, _) = goaway(&frames_until_goaway(&mut tcp).await);
    assert_eq!(reason, Reason::COMPRESSION_ERROR);
    tcp
}

fn headers_frame(enc: &mut Encoder, stream: u32, end_stream: bool) -> Vec<u8> {
    let mut block = Vec::new();
    enc.encode(&request("/x"), &mut block);
    let mut out = Vec::new();
    frame::put_headers(&mut out, stream, &block, end_stream, 16_384);
    out
}

#[tokio::test]
async fn ping_flood_gets_enhance_your_calm() {
    let addr = start(Config::default()).await;
    let mut tcp = raw(addr).await;
    let mut out = Vec::new();
    for i in 0..5000u64 {
        frame::put_ping(&mut out, false, i.to_be_bytes());
    }
    tcp.write_all(&out).await.unwrap();
    let frames = frames_until_goaway(&mut tcp).await;
    let (reason, message) = goaway(&frames);
    assert_eq!(reason, Reason::ENHANCE_YOUR_CALM, "{message}");
    assert!(message.contains("control frames"), "{message}");
    still_serves(addr).await;
}

#[tokio::test]
async fn settings_flood_gets_enhance_your_calm() {
    let addr = start(Config::default()).await;
    let mut tcp = raw(addr).await;
    let mut out = Vec::new();
    for _ in 0..5000 {
        frame::put_settings(&mut out, &[(frame::setting::INITIAL_WINDOW_SIZE, 65_535)]);
    }
    tcp.write_all(&out).await.unwrap();
    let (reason, _) = goaway(&frames_until_goaway(&mut tcp).await);
    assert_eq!(reason, Reason::ENHANCE_YOUR_CALM);
    still_serves(addr).await;
}

#[tokio::test]
async fn rapid_reset_gets_enhance_your_calm() {
    let addr = start(Config::default()).await;
    let mut tcp = raw(addr).await;
    let mut enc = Encoder::new();
    let mut out = Vec::new();
    for i in 0..3000u32 {
        let id = 2 * i + 1;
        out.extend_from_slice(&headers_frame(&mut enc, id, false));
        frame::put_rst(&mut out, id, Reason::CANCEL);
    }
    // The server may close before reading everything.
    let _ = tcp.write_all(&out).await;
    let frames = frames_until_goaway(&mut tcp).await;
    let (reason, message) = goaway(&frames);
    assert_eq!(reason, Reason::ENHANCE_YOUR_CALM, "{message}");
    assert!(message.contains("rapid reset"), "{message}");
    still_serves(addr).await;
}

#[tokio::test]
async fn oversized_frame_gets_frame_size_error() {
    let addr = start(Config::default()).await;
    let mut tcp = raw(addr).await;
    let mut out = Vec::new();
    // Announces 1 MiB of DATA; only the header is sent: nothing is buffered for it.
    frame::put_header(&mut out, 1 << 20, kind::DATA, 0, 1);
    tcp.write_all(&out).await.unwrap();
    let (reason, message) = goaway(&frames_until_goaway(&mut tcp).await);
    assert_eq!(reason, Reason::FRAME_SIZE_ERROR, "{message}");
    still_serves(addr).await;
}

#[tokio::test]
async fn continuation_flood_gets_enhance_your_calm() {
    let addr = start(Config::default()).await;
    // Endless empty CONTINUATION frames.
    let mut tcp = raw(addr).await;
    let mut enc = Encoder::new();
    let mut block = Vec::new();
    enc.encode(&request("/x"), &mut block);
    let mut out = Vec::new();
    frame::put_header(&mut out, block.len(), kind::HEADERS, 0, 1);
    out.extend_from_slice(&block);
    for _ in 0..10_000 {
        frame::put_header(&mut out, 0, kind::CONTINUATION, 0, 1);
    }
    let _ = tcp.write_all(&out).await;
    let (reason, message) = goaway(&frames_until_goaway(&mut tcp).await);
    assert_eq!(reason, Reason::ENHANCE_YOUR_CALM, "{message}");
    // A header block growing past the limit over CONTINUATION frames.
    let mut tcp = raw(addr).await;
    let mut out = Vec::new();
    frame::put_header(&mut out, 0, kind::HEADERS, 0, 1);
    for _ in 0..20 {
        frame::put_header(&mut out, 16_000, kind::CONTINUATION, 0, 1);
        out.extend_from_slice(&[0x40; 16_000]);
    }
    let _ = tcp.write_all(&out).await;
    let (reason, message) = goaway(&frames_until_goaway(&mut tcp).await);
    assert_eq!(reason, Reason::ENHANCE_YOUR_CALM, "{message}");
    still_serves(addr).await;
}

#[tokio::test]
async fn garbage_and_bad_hpack_get_a_clear_goaway() {
    let addr = start(Config::default()).await;
    let _ = bad_hpack_gets_compression_error(addr).await;
    // Random bytes after the preface (a frame of an unknown type is ignored, so any
    // outcome but a panic or a hang is fine: GOAWAY or the connection left open).
    for seed in 0..20u64 {
        let mut tcp = raw(addr).await;
        let mut x = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let junk: Vec<u8> = (0..4096)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (x >> 33) as u8
            })
            .collect();
        let _ = tcp.write_all(&junk).await;
        let _ = tcp.shutdown().await;
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut sink)).await;
    }
    // Not HTTP/2 at all.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (reason, message) = goaway(&frames_until_goaway(&mut tcp).await);
    assert_eq!(reason, Reason::PROTOCOL_ERROR);
    assert!(message.contains("preface"), "{message}");
    still_serves(addr).await;
}

#[tokio::test]
async fn header_list_over_the_limit_is_answered_431() {
    let config = Config {
        max_header_list_size: 1024,
        ..Config::default()
    };
    let addr = start(config).await;
    let mut tcp = raw(addr).await;
    let mut h = request("/x");
    h.push("x-big", "v".repeat(4000));
    let mut block = Vec::new();
    Encoder::new().encode(&h, &mut block);
    let mut out = Vec::new();
    frame::put_headers(&mut out, 1, &block, true, 16_384);
    frame::put_ping(&mut out, false, [9; 8]);
    tcp.write_all(&out).await.unwrap();
    // Frames up to the PING's answer: a HEADERS with 431 on stream 1.
    let mut buf = Vec::new();
    let mut saw_headers = false;
    loop {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        buf.extend_from_slice(&chunk[..n]);
        let mut done = false;
        while let Some(fh) = FrameHeader::parse(&buf) {
            let end = HEADER_LEN + fh.len as usize;
            if buf.len() < end {
                break;
            }
            let payload = Bytes::copy_from_slice(&buf[HEADER_LEN..end]);
            buf.drain(..end);
            match Frame::parse(fh, payload).unwrap() {
                Frame::Headers {
                    stream: 1,
                    block,
                    end_stream,
                    ..
                } => {
                    let mut got = Headers::new();
                    rdubbo_http2::hpack::Decoder::new(4096)
                        .decode(&block, 1 << 20, &mut got)
                        .unwrap();
                    assert_eq!(got.get_str(":status"), Some("431"));
                    assert!(end_stream);
                    saw_headers = true;
                }
                Frame::Ping { ack: true, .. } => done = true,
                _ => {}
            }
        }
        if done {
            break;
        }
    }
    assert!(saw_headers);
}

#[tokio::test]
async fn streams_over_the_limit_are_refused() {
    let config = Config {
        max_concurrent_streams: 3,
        ..Config::default()
    };
    let addr = start(config).await;
    let mut tcp = raw(addr).await;
    let mut enc = Encoder::new();
    let mut out = Vec::new();
    for i in 0..5u32 {
        out.extend_from_slice(&headers_frame(&mut enc, 2 * i + 1, false));
    }
    frame::put_ping(&mut out, false, [1; 8]);
    tcp.write_all(&out).await.unwrap();
    let mut buf = Vec::new();
    let mut refused = Vec::new();
    loop {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        buf.extend_from_slice(&chunk[..n]);
        let mut done = false;
        while let Some(fh) = FrameHeader::parse(&buf) {
            let end = HEADER_LEN + fh.len as usize;
            if buf.len() < end {
                break;
            }
            let payload = Bytes::copy_from_slice(&buf[HEADER_LEN..end]);
            buf.drain(..end);
            match Frame::parse(fh, payload).unwrap() {
                Frame::RstStream { stream, reason } => {
                    assert_eq!(reason, Reason::REFUSED_STREAM);
                    refused.push(stream);
                }
                Frame::Ping { ack: true, .. } => done = true,
                _ => {}
            }
        }
        if done {
            break;
        }
    }
    assert_eq!(refused, [7, 9]);
}

#[tokio::test]
async fn a_peer_that_never_reads_is_stopped_with_bounded_memory() {
    // PINGs under the budget, never reading the ACKs: once the server's write queue is
    // over its limit it stops reading this peer (TCP pushes back), so our writes stall.
    let config = Config {
        max_control_frames_per_sec: u32::MAX,
        max_write_buffer: 64 * 1024,
        ..Config::default()
    };
    let addr = start(config).await;
    let mut tcp = raw(addr).await;
    let mut out = Vec::new();
    for i in 0..1000u64 {
        frame::put_ping(&mut out, false, i.to_be_bytes());
    }
    let mut written = 0usize;
    let stalled = loop {
        match tokio::time::timeout(Duration::from_millis(500), tcp.write_all(&out)).await {
            Ok(Ok(())) => written += out.len(),
            Ok(Err(e)) => panic!("{e}"),
            Err(_) => break true,
        }
        if written > 512 << 20 {
            break false;
        }
    };
    assert!(
        stalled,
        "{written} bytes of PINGs taken from a peer that reads nothing"
    );
    still_serves(addr).await;
}

#[tokio::test]
async fn malformed_requests_are_reset() {
    let addr = start(Config::default()).await;
    let mut tcp = raw(addr).await;
    let mut enc = Encoder::new();
    let mut out = Vec::new();
    let mut bad = Vec::new();
    let mut upper = Headers::new();
    upper.push_static(":method", "POST");
    upper.push_static(":path", "/x");
    upper.push_static("X-Upper", "1");
    bad.push(upper);
    let mut no_path = Headers::new();
    no_path.push_static(":method", "POST");
    bad.push(no_path);
    let mut connection = request("/x");
    connection.push_static("connection", "keep-alive");
    bad.push(connection);
    for (i, h) in bad.iter().enumerate() {
        let mut block = Vec::new();
        enc.encode(h, &mut block);
        frame::put_headers(&mut out, 2 * i as u32 + 1, &block, true, 16_384);
    }
    frame::put_ping(&mut out, false, [3; 8]);
    tcp.write_all(&out).await.unwrap();
    let mut buf = Vec::new();
    let mut reset = Vec::new();
    'read: loop {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        buf.extend_from_slice(&chunk[..n]);
        while let Some(fh) = FrameHeader::parse(&buf) {
            let end = HEADER_LEN + fh.len as usize;
            if buf.len() < end {
                break;
            }
            let payload = Bytes::copy_from_slice(&buf[HEADER_LEN..end]);
            buf.drain(..end);
            match Frame::parse(fh, payload).unwrap() {
                Frame::RstStream { stream, reason } => reset.push((stream, reason)),
                Frame::Ping { ack: true, .. } => break 'read,
                _ => {}
            }
        }
    }
    assert_eq!(
        reset,
        [
            (1, Reason::PROTOCOL_ERROR),
            (3, Reason::PROTOCOL_ERROR),
            (5, Reason::PROTOCOL_ERROR)
        ]
    );
    still_serves(addr).await;
}

#[tokio::test]
async fn a_client_told_goaway_with_an_error_closes_its_socket() {
    // A server that answers the first request with GOAWAY(PROTOCOL_ERROR) and keeps its
    // end open: the client's calls fail, and once the client is dropped its socket closes
    // (its flusher used to wait forever, holding the socket).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut preface = [0u8; 24];
        tcp.read_exact(&mut preface).await.unwrap();
        assert_eq!(&preface, frame::PREFACE);
        let mut out = Vec::new();
        frame::put_settings(&mut out, &[]);
        frame::put_goaway(&mut out, 0, Reason::PROTOCOL_ERROR, b"go away");
        tcp.write_all(&out).await.unwrap();
        // Read until the client closes its end (EOF), for 10 s at most.
        let mut sink = [0u8; 4096];
        tokio::time::timeout(Duration::from_secs(10), async {
            while tcp.read(&mut sink).await.is_ok_and(|n| n > 0) {}
        })
        .await
        .is_ok()
    });
    let c = Client::new(TcpStream::connect(addr).await.unwrap(), Config::default());
    let failed = c.unary(&request("/x"), &grpc(b"hi"), 1024).await;
    assert!(failed.is_err(), "{failed:?}");
    assert!(c.is_closed());
    drop(c);
    assert!(
        server.await.unwrap(),
        "the client's socket stayed open 10 s after the client was dropped"
    );
}

#[tokio::test]
async fn a_failed_connection_closes_its_socket_while_its_handle_is_held() {
    // A server that keeps its connections' shutdown handles (to drain them later) must
    // not keep the socket of one that failed: the peer sees the end after the GOAWAY.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let (handle, conn) = rdubbo_http2::serve(tcp, Config::default(), common::echo);
        let _ = conn.await;
        tokio::time::sleep(Duration::from_secs(60)).await;
        drop(handle);
    });
    let mut tcp = bad_hpack_gets_compression_error(addr).await;
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "the socket stayed open 10 s after the GOAWAY while the handle was held"
    );
    server.abort();
}

#[tokio::test]
async fn a_complete_response_then_rst_stream_no_error_is_the_answer() {
    // A server that answered in full before the request ended may reset the stream with
    // NO_ERROR to stop the request (RFC 9113 §8.1; gRPC servers do it): the client keeps
    // the answer, data and trailers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut preface = [0u8; 24];
        tcp.read_exact(&mut preface).await.unwrap();
        let mut enc = Encoder::new();
        let mut head = Headers::new();
        head.push_static(":status", "200");
        head.push_static("content-type", "application/grpc");
        let mut trailers = Headers::new();
        trailers.push_static("grpc-status", "0");
        let (mut head_block, mut trailer_block) = (Vec::new(), Vec::new());
        enc.encode(&head, &mut head_block);
        enc.encode(&trailers, &mut trailer_block);
        let mut out = Vec::new();
        frame::put_settings(&mut out, &[]);
        frame::put_headers(&mut out, 1, &head_block, false, 16_384);
        frame::put_data(&mut out, 1, &grpc(b"answer"), false, 16_384);
        frame::put_headers(&mut out, 1, &trailer_block, true, 16_384);
        frame::put_rst(&mut out, 1, Reason::NO_ERROR);
        tcp.write_all(&out).await.unwrap();
        // Keep the connection until the client is done.
        let mut sink = [0u8; 4096];
        while tcp.read(&mut sink).await.is_ok_and(|n| n > 0) {}
    });
    let c = Client::new(TcpStream::connect(addr).await.unwrap(), Config::default());
    // The request's body never ends: the server answers without waiting for it.
    let (response, _send) = c.send_request(&request("/x"), false).await.unwrap();
    let mut response = response.await.unwrap();
    // Read once the whole answer and the reset are in (the stream no longer active).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while c.active_streams() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stream never ended"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (body, trailers) = response.body.collect(1024).await.unwrap();
    assert_eq!(&body[..], &grpc(b"answer")[..]);
    assert_eq!(trailers.unwrap().get_str("grpc-status"), Some("0"));
    drop(c);
    server.abort();
}
