//! What the connection targets share: one runtime, the peer that sends the input, and the
//! checks that a connection ends with its peer's bytes and leaves nothing behind.
// Each target uses the part it needs.
#![allow(dead_code)]

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

/// The runtime every input runs on (one thread: the target's tasks are its own).
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

/// The fuzzed peer: writes `data`, closes its sending side, and reads what comes until the
/// end, or until `stop` is notified (a client keeps its connection open for more calls).
pub async fn peer(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    data: &[u8],
    stop: &Notify,
) {
    let send = async {
        let _ = to.write_all(data).await;
        let _ = to.shutdown().await;
    };
    let receive = async {
        let mut sink = [0u8; 8192];
        loop {
            tokio::select! {
                read = from.read(&mut sink) => {
                    if !matches!(read, Ok(n) if n > 0) {
                        break;
                    }
                }
                () = stop.notified() => break,
            }
        }
    };
    tokio::join!(send, receive);
}

/// `f`'s output; panics when it takes over 10 s (`what` says what did not end).
pub async fn within_10s<F: Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(10), f).await {
        Ok(out) => out,
        Err(_) => panic!("{what} within 10 s of the peer's last byte"),
    }
}

/// Tasks alive on the runtime.
pub fn tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// Waits (2 s at most) until `left()` is 0: whatever it counts would otherwise hold a
/// socket and buffers forever. Panics naming `what` otherwise.
pub async fn assert_none_left(what: &str, left: impl Fn() -> usize) {
    for i in 0..464 {
        if left() == 0 {
            return;
        }
        // Ending tasks usually need only their turn to run; then wait in steps of 5 ms.
        if i < 64 {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    panic!("{} {what} left 2 s after the connection ended", left());
}

/// HTTP/2 limits and windows small enough for short inputs to reach them.
pub fn small_http2_config() -> rdubbo_http2::Config {
    rdubbo_http2::Config {
        max_concurrent_streams: 8,
        initial_stream_window: 1024,
        connection_window: 4096,
        max_header_list_size: 2048,
        max_write_buffer: 16 << 10,
        max_continuation_frames: 4,
        ..rdubbo_http2::Config::default()
    }
}
