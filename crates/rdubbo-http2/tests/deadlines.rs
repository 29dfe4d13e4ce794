//! Time bounds of a connection: the write deadline (a peer that never reads), the preface
//! deadline, the idle timeout, keepalive PINGs; a stream's reset seen while nothing is
//! sent; a served connection closed when its future is dropped.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::{echo, grpc, request};
use rdubbo_http2::frame::{self, Frame, FrameHeader, Reason, HEADER_LEN};
use rdubbo_http2::{Client, Config, Error, Headers, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Serves every connection with the echo handler; each connection's outcome is sent on
/// the returned channel when its future ends.
async fn serve_reporting(
    config: Config,
) -> (SocketAddr, mpsc::UnboundedReceiver<Result<(), Error>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (_handle, conn) = rdubbo_http2::serve(tcp, config.clone(), echo);
            let tx = tx.clone();
            tokio::spawn(async move {
                let _ = tx.send(conn.await);
            });
        }
    });
    (addr, rx)
}

/// Reads frames off a raw connection; `None` at the end of the connection.
struct Frames {
    tcp: TcpStream,
    buf: Vec<u8>,
}

impl Frames {
    async fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some(h) = FrameHeader::parse(&self.buf) {
                let end = HEADER_LEN + h.len as usize;
                if self.buf.len() >= end {
                    let payload = Bytes::copy_from_slice(&self.buf[HEADER_LEN..end]);
                    self.buf.drain(..end);
                    return Some(Frame::parse(h, payload).unwrap());
                }
            }
            let mut chunk = [0u8; 16384];
            match self.tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

/// A raw connection that has sent the preface and empty SETTINGS.
async fn raw(addr: SocketAddr) -> Frames {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut out = frame::PREFACE.to_vec();
    frame::put_settings(&mut out, &[]);
    tcp.write_all(&out).await.unwrap();
    Frames {
        tcp,
        buf: Vec::new(),
    }
}

#[tokio::test]
async fn a_peer_that_never_reads_is_closed_after_the_write_deadline() {
    let config = Config {
        max_control_frames_per_sec: u32::MAX,
        max_write_buffer: 64 * 1024,
        write_timeout: Some(Duration::from_millis(300)),
        ..Config::default()
    };
    let (addr, mut ended) = serve_reporting(config).await;
    let mut tcp = raw(addr).await.tcp;
    // PINGs whose ACKs are never read, until the server stops reading us.
    let mut out = Vec::new();
    for i in 0..1000u64 {
        frame::put_ping(&mut out, false, i.to_be_bytes());
    }
    while let Ok(Ok(())) =
        tokio::time::timeout(Duration::from_millis(500), tcp.write_all(&out)).await
    {}
    // The server's write made no progress for its deadline: the connection is failed…
    let outcome = tokio::time::timeout(Duration::from_secs(10), ended.recv())
        .await
        .expect("the connection ended within the write deadline and more")
        .unwrap();
    match outcome {
        Err(Error::Io(message)) => assert!(message.contains("took nothing"), "{message}"),
        other => panic!("expected a write timeout, got {other:?}"),
    }
    // …and closed: what was written before ends with the end of the connection.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the connection was left open");
}

#[tokio::test]
async fn a_client_that_sends_no_preface_is_closed_at_the_handshake_deadline() {
    let config = Config {
        handshake_timeout: Some(Duration::from_millis(200)),
        ..Config::default()
    };
    let (addr, mut ended) = serve_reporting(config).await;
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), silent.read_to_end(&mut all))
        .await
        .expect("closed, not left hanging")
        .unwrap();
    let outcome = ended.recv().await.unwrap();
    assert!(
        matches!(&outcome, Err(Error::GoAway { reason: Reason::PROTOCOL_ERROR, message, .. }) if message.contains("preface")),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn an_idle_connection_is_closed_with_goaway_and_a_busy_one_is_not() {
    let config = Config {
        idle_timeout: Some(Duration::from_millis(300)),
        ..Config::default()
    };
    let (addr, mut ended) = serve_reporting(config).await;
    // A stream left open keeps the connection: it is answered after three idle periods.
    let client = Client::new(TcpStream::connect(addr).await.unwrap(), Config::default());
    let (response, mut send) = client.send_request(&request("/echo"), false).await.unwrap();
    send.send_data(&grpc(b"one"), false).await.unwrap();
    let mut response = response.await.unwrap();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!client.is_closed(), "closed with a stream open");
    }
    send.send_data(&grpc(b"two"), true).await.unwrap();
    let (body, trailers) = response.body.collect(1024).await.unwrap();
    assert_eq!(body.len(), 2 * 8);
    assert!(trailers.is_some());
    // Once no stream is open, the server says GOAWAY and closes.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !client.is_closed() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "idle connection left open"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(ended.recv().await.unwrap(), Ok(()));
    // A raw peer sees GOAWAY NO_ERROR, then the end of the connection.
    let mut peer = raw(addr).await;
    let mut goaway = None;
    while let Some(f) = tokio::time::timeout(Duration::from_secs(5), peer.next())
        .await
        .expect("the idle connection closed in time")
    {
        if let Frame::GoAway { reason, .. } = f {
            goaway = Some(reason);
        }
    }
    assert_eq!(goaway, Some(Reason::NO_ERROR));
}

#[tokio::test]
async fn keepalive_pings_a_quiet_peer_and_closes_one_that_does_not_answer() {
    let config = Config {
        keepalive: Some(Duration::from_millis(150)),
        ..Config::default()
    };
    let (addr, mut ended) = serve_reporting(config).await;
    // A peer that answers every PING stays connected across several of them.
    let mut live = raw(addr).await;
    let mut pings = 0;
    while pings < 3 {
        match tokio::time::timeout(Duration::from_secs(5), live.next()).await {
            Ok(Some(Frame::Ping {
                ack: false,
                payload,
            })) => {
                pings += 1;
                let mut out = Vec::new();
                frame::put_ping(&mut out, true, payload);
                live.tcp.write_all(&out).await.unwrap();
            }
            Ok(Some(_)) => {}
            Ok(None) => panic!("a peer answering PINGs was closed after {pings}"),
            Err(_) => panic!("no keepalive PING in time"),
        }
    }
    // A peer that reads but never answers is closed after a PING goes unanswered.
    let mut deaf = raw(addr).await;
    let mut pinged = false;
    while let Some(f) = tokio::time::timeout(Duration::from_secs(5), deaf.next())
        .await
        .expect("the silent peer was closed in time")
    {
        pinged |= matches!(f, Frame::Ping { ack: false, .. });
    }
    assert!(pinged, "closed without a PING first");
    let outcome = ended.recv().await.unwrap();
    assert_eq!(
        outcome,
        Err(Error::Io("keepalive PING unanswered".into())),
        "{outcome:?}"
    );
    drop(live);
}

#[tokio::test]
async fn a_handler_waiting_on_poll_reset_sees_the_peers_cancel() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let handler = move |mut req: Request| {
            let seen_tx = seen_tx.clone();
            async move {
                let mut h = Headers::new();
                h.push_static(":status", "200");
                req.send.send_headers(&h, false).await.unwrap();
                req.send.flush().await.unwrap();
                let e = std::future::poll_fn(|cx| req.send.poll_reset(cx)).await;
                let _ = seen_tx.send(e);
            }
        };
        let (_handle, conn) = rdubbo_http2::serve(tcp, Config::default(), handler);
        let _ = conn.await;
    });
    let client = Client::new(TcpStream::connect(addr).await.unwrap(), Config::default());
    let (response, send) = client.send_request(&request("/wait"), false).await.unwrap();
    let mut send = send;
    send.flush().await.unwrap();
    let response = response.await.unwrap();
    drop(response);
    drop(send);
    let e = tokio::time::timeout(Duration::from_secs(5), seen.recv())
        .await
        .expect("the reset reached the handler")
        .unwrap();
    assert_eq!(
        e,
        Error::Reset {
            reason: Reason::CANCEL,
            remote: true
        }
    );
}

#[tokio::test]
async fn dropping_a_served_connection_closes_it() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let (_handle, conn) = rdubbo_http2::serve(tcp, Config::default(), echo);
        tokio::select! {
            _ = conn => {}
            _ = stop => {}
        }
    });
    let client = Client::new(TcpStream::connect(addr).await.unwrap(), Config::default());
    let (_, body, _) = client
        .unary(&request("/echo"), &grpc(b"hi"), 1024)
        .await
        .unwrap();
    assert_eq!(&body[..], &grpc(b"hi")[..]);
    // A call left open when the server drops the connection fails, and the client sees
    // the connection gone.
    let (response, mut send) = client.send_request(&request("/echo"), false).await.unwrap();
    send.send_data(&grpc(b"open"), false).await.unwrap();
    let mut response = response.await.unwrap();
    assert!(response.body.data().await.unwrap().is_ok());
    stop_tx.send(()).unwrap();
    let next = tokio::time::timeout(Duration::from_secs(5), response.body.data())
        .await
        .expect("the open call failed in time");
    assert!(matches!(next, Some(Err(_))), "{next:?}");
    assert!(client.is_closed());
}
