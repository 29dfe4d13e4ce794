//! Any bytes a provider answers with, to rdubbo's Dubbo consumer over loopback TCP while
//! two calls are in flight (frames, events, heartbeats, bodies, cut anywhere): never a
//! panic, both calls end once the provider's bytes end (with an answer or an error), and
//! no task of the connection outlives the client.
//!
//! The provider reads the two requests first and writes their ids into the frame headers
//! it finds walking the input (magic, then the body length), alternately, so that inputs
//! reach the answers' decoding and routing, not only unknown ids.
#![no_main]

mod common;

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rdubbo_core::{Args, Invocation, Invoker, Url};
use rdubbo_protocol_dubbo::codec::HEADER_LEN;
use rdubbo_protocol_dubbo::DubboClient;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// The provider's port: every input is one connection to it.
fn listener() -> &'static TcpListener {
    static LISTENER: OnceLock<TcpListener> = OnceLock::new();
    LISTENER.get_or_init(|| {
        common::runtime().block_on(async {
            TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind on loopback")
        })
    })
}

/// The ids of the first two requests the client sends (fewer if it stops first).
async fn request_ids(from_client: &mut (impl AsyncReadExt + Unpin)) -> Vec<[u8; 8]> {
    let mut ids = Vec::new();
    let mut head = [0u8; HEADER_LEN];
    while ids.len() < 2 {
        if from_client.read_exact(&mut head).await.is_err() {
            break;
        }
        ids.push(head[4..12].try_into().expect("8 bytes"));
        let len = u32::from_be_bytes(head[12..16].try_into().expect("4 bytes"));
        let mut body = vec![0u8; len.min(1 << 20) as usize];
        if from_client.read_exact(&mut body).await.is_err() {
            break;
        }
    }
    ids
}

/// `data` with `ids` written, in turn, into each frame header found by walking it.
fn with_ids(data: &[u8], ids: &[[u8; 8]]) -> Vec<u8> {
    let mut out = data.to_vec();
    let (mut at, mut n) = (0usize, 0usize);
    while !ids.is_empty() && at + HEADER_LEN <= out.len() && out[at..at + 2] == [0xda, 0xbb] {
        out[at + 4..at + 12].copy_from_slice(&ids[n % ids.len()]);
        let len = u32::from_be_bytes(out[at + 12..at + 16].try_into().expect("4 bytes"));
        at = at.saturating_add(HEADER_LEN).saturating_add(len as usize);
        n += 1;
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let listener = listener();
    common::runtime().block_on(async {
        let addr = listener.local_addr().expect("the listener's address");
        // The calls' own timeout (20 s) is far off: they must end because the bytes did.
        let url: Url = format!("dubbo://{addr}/com.example.Echo?version=1.0.0&timeout=20000")
            .parse()
            .expect("a URL");
        let client = DubboClient::new(&url).expect("a client");
        let call = || {
            let inv = Invocation::new("com.example.Echo", "echo", Args::Json(vec!["hi".into()]));
            client.invoke(inv)
        };
        let done = Notify::new();
        let calls = async {
            let _ = tokio::join!(call(), call());
            done.notify_one();
        };
        let provider = async {
            let (mut tcp, _) = listener.accept().await.expect("the client's connection");
            let (mut from_client, to_client) = tcp.split();
            let ids = request_ids(&mut from_client).await;
            let answer = with_ids(data, &ids);
            common::peer(from_client, to_client, &answer, &done).await;
        };
        common::within_10s("a call did not end", async {
            tokio::join!(calls, provider)
        })
        .await;
        drop(client);
        common::assert_none_left("task(s)", common::tasks).await;
    })
});
