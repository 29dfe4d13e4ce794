//! Any bytes a server answers with, to rdubbo's HTTP/2 client (what `tri://` consumers
//! call through) while two requests are in flight: frames, HPACK, stream states and flow
//! control from a hostile provider. Never a panic, and both calls end once the server's
//! bytes end, with an answer or an error, whatever the bytes were, and no task of the
//! connection outlives it.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use rdubbo_http2::{Client, Config, Headers};
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

fn request() -> Headers {
    let mut h = Headers::new();
    h.push_static(":method", "POST");
    h.push_static(":scheme", "http");
    h.push_static(":path", "/a/b");
    h.push_static(":authority", "127.0.0.1");
    h.push_static("content-type", "application/grpc");
    h.push_static("te", "trailers");
    h
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
        let (client_io, server_io) = tokio::io::duplex(64 << 10);
        let (read, write) = tokio::io::split(client_io);
        // Small windows and limits, so that short inputs reach them.
        let config = Config {
            initial_stream_window: 1024,
            connection_window: 4096,
            max_header_list_size: 2048,
            max_write_buffer: 16 << 10,
            max_continuation_frames: 4,
            ..Config::default()
        };
        let client = Client::with_io(read, write, config);
        let (mut from_client, mut to_client) = tokio::io::split(server_io);
        let drain = tokio::spawn(async move {
            let mut sink = [0u8; 8192];
            while matches!(from_client.read(&mut sink).await, Ok(n) if n > 0) {}
        });
        let head = request();
        let calls = async {
            let body = [0u8, 0, 0, 0, 5, b'h', b'e', b'l', b'l', b'o'];
            tokio::join!(
                client.unary(&head, &body, 1 << 16),
                client.unary(&head, &body, 1 << 16)
            )
        };
        let answer = async {
            let _ = to_client.write_all(data).await;
            let _ = to_client.shutdown().await;
        };
        let (ended, ()) =
            tokio::join!(tokio::time::timeout(Duration::from_secs(10), calls), answer);
        assert!(
            ended.is_ok(),
            "a call did not end within 10 s of the server's last byte"
        );
        drain.abort();
        drop(client);
        assert_no_task_left().await;
    })
});
