//! Any bytes a client sends after the connection preface, to rdubbo's HTTP/2 server (the
//! engine under `tri://`): frames, HPACK, stream states, flow control and the limits of a
//! hostile peer. Never a panic, and the connection always ends once the client's bytes
//! end, whatever they were, and no task of it outlives it (a connection or a handler left
//! hanging would hold its socket and buffers forever).
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use rdubbo_http2::{Config, Headers, Request};
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

/// Answers as a gRPC service does: headers, every chunk echoed, trailers.
async fn echo(mut req: Request) {
    let mut h = Headers::new();
    h.push_static(":status", "200");
    h.push_static("content-type", "application/grpc");
    if req.send.send_headers(&h, false).await.is_err() {
        return;
    }
    while let Some(chunk) = req.body.data().await {
        let Ok(chunk) = chunk else { return };
        if req.send.send_data(&chunk, false).await.is_err() {
            return;
        }
    }
    let _ = req.body.trailers().await;
    let mut t = Headers::new();
    t.push_static("grpc-status", "0");
    let _ = req.send.send_trailers(&t).await;
}

/// Waits (2 s at most) for every task of the connection to end: one left would hold its
/// socket and buffers forever.
async fn assert_no_task_left() {
    let tasks = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    for i in 0..464 {
        if tasks() == 0 {
            return;
        }
        // Ending tasks usually need only their turn to run; then wait in steps of 5 ms.
        if i < 64 {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    panic!("{} task(s) of the connection outlived it by 2 s", tasks());
}

fuzz_target!(|data: &[u8]| {
    runtime().block_on(async {
        let (client, server) = tokio::io::duplex(64 << 10);
        let (read, write) = tokio::io::split(server);
        // Small windows and limits, so that short inputs reach them.
        let config = Config {
            max_concurrent_streams: 8,
            initial_stream_window: 1024,
            connection_window: 4096,
            max_header_list_size: 2048,
            max_write_buffer: 16 << 10,
            max_continuation_frames: 4,
            ..Config::default()
        };
        let (_shutdown, conn) = rdubbo_http2::serve_io(read, write, config, echo);
        let conn = tokio::spawn(conn);
        let (mut from_server, mut to_server) = tokio::io::split(client);
        let drain = tokio::spawn(async move {
            let mut sink = [0u8; 8192];
            while matches!(from_server.read(&mut sink).await, Ok(n) if n > 0) {}
        });
        let _ = to_server.write_all(rdubbo_http2::frame::PREFACE).await;
        let _ = to_server.write_all(data).await;
        let _ = to_server.shutdown().await;
        let ended = tokio::time::timeout(Duration::from_secs(10), conn).await;
        assert!(
            ended.is_ok(),
            "the connection did not end within 10 s of the client's last byte"
        );
        drain.abort();
        assert_no_task_left().await;
    })
});
