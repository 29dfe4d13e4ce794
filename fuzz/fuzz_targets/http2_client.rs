//! Any bytes a server answers with, to rdubbo's HTTP/2 client (what `tri://` consumers
//! call through) while two requests are in flight: frames, HPACK, stream states and flow
//! control from a hostile provider. Never a panic, both calls end once the server's bytes
//! end, with an answer or an error, whatever the bytes were, and no task of the
//! connection outlives the client.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use rdubbo_http2::{Client, Headers};
use tokio::sync::Notify;

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

fuzz_target!(|data: &[u8]| {
    common::runtime().block_on(async {
        let (client_io, server_io) = tokio::io::duplex(64 << 10);
        let (read, write) = tokio::io::split(client_io);
        let config = common::small_http2_config();
        let client = Client::with_io(read, write, config);
        let (from_client, to_client) = tokio::io::split(server_io);
        let head = request();
        let done = Notify::new();
        let calls = async {
            let body = [0u8, 0, 0, 0, 5, b'h', b'e', b'l', b'l', b'o'];
            let _ = tokio::join!(
                client.unary(&head, &body, 1 << 16),
                client.unary(&head, &body, 1 << 16)
            );
            done.notify_one();
        };
        common::within_10s("a call did not end", async {
            tokio::join!(calls, common::peer(from_client, to_client, data, &done))
        })
        .await;
        drop(client);
        common::assert_none_left("task(s)", common::tasks).await;
    })
});
