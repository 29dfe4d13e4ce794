//! Any bytes a client sends after the connection preface, to rdubbo's HTTP/2 server (the
//! engine under `tri://`): frames, HPACK, stream states, flow control and the limits of a
//! hostile peer. Never a panic, the connection always ends once the client's bytes end,
//! whatever they were, and no task of it outlives it (a connection or a handler left
//! hanging would hold its socket and buffers forever).
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use rdubbo_http2::{Headers, Request};
use tokio::sync::Notify;

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

fuzz_target!(|data: &[u8]| {
    common::runtime().block_on(async {
        let (client, server) = tokio::io::duplex(64 << 10);
        let (read, write) = tokio::io::split(server);
        let config = common::small_http2_config();
        let (_shutdown, conn) = rdubbo_http2::serve_io(read, write, config, echo);
        let input = [&rdubbo_http2::frame::PREFACE[..], data].concat();
        let (from_server, to_server) = tokio::io::split(client);
        let never = Notify::new();
        // The connection's own result is an error for most inputs: what matters is that it ends.
        let _ = common::within_10s("the connection did not end", async {
            tokio::join!(conn, common::peer(from_server, to_server, &input, &never))
        })
        .await;
        common::assert_none_left("task(s)", common::tasks).await;
    })
});
