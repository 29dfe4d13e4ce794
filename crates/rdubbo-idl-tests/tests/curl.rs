//! curl over HTTP/2 with prior knowledge (`--http2-prior-knowledge`) makes one unary gRPC
//! call of the generated server by hand: a length-prefixed protobuf message in, the
//! answer and `grpc-status: 0` (a trailer) out; a failing call ends with its status.

mod common;

use std::process::Command;

use rdubbo::idl::prost::Message;
use rdubbo::triple::codec::{self, Encoding};
use rdubbo_idl_tests::echo::{EchoRequest, EchoResponse};

/// `curl --http2-prior-knowledge` POSTing `body` to `url`: (headers and trailers, body).
async fn curl_grpc(url: String, body: Vec<u8>) -> (String, Vec<u8>) {
    tokio::task::spawn_blocking(move || {
        let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("idl-curl");
        std::fs::create_dir_all(&dir).unwrap();
        let tag = format!("{:?}", std::thread::current().id()).replace(['(', ')'], "");
        let (req, head, out) = (
            dir.join(format!("req-{tag}")),
            dir.join(format!("head-{tag}")),
            dir.join(format!("out-{tag}")),
        );
        std::fs::write(&req, body).unwrap();
        let status = Command::new("curl")
            .args(["-sS", "--max-time", "10", "--http2-prior-knowledge"])
            .args(["-H", "content-type: application/grpc", "-H", "te: trailers"])
            .arg("--data-binary")
            .arg(format!("@{}", req.display()))
            .arg("-D")
            .arg(&head)
            .arg("-o")
            .arg(&out)
            .arg(url)
            .status()
            .unwrap();
        assert!(status.success(), "curl failed");
        (
            std::fs::read_to_string(head).unwrap(),
            std::fs::read(out).unwrap(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_http2_prior_knowledge_unary_call() {
    if !Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        eprintln!("SKIPPED: curl is not installed (scripts/test-all.sh installs it)");
        return;
    }
    let running = common::start().await;
    let url = format!("http://{}/rdubbo.echo.Echo/UnaryEcho", running.addr);
    let request = EchoRequest {
        message: "from curl".into(),
        ..Default::default()
    };
    let frame = codec::encode_message(&request.encode_to_vec(), Encoding::Identity);
    let (head, body) = curl_grpc(url.clone(), frame.to_vec()).await;
    assert!(head.starts_with("HTTP/2 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/grpc"),
        "{head}"
    );
    assert!(head.contains("grpc-status: 0"), "trailer: {head}");
    let message = codec::decode_unary(&body.into(), Encoding::Identity, 1 << 20).unwrap();
    let answer = EchoResponse::decode(message).unwrap();
    assert_eq!(answer.message, "from curl");

    let failing = EchoRequest {
        message: "no".into(),
        fail: true,
        ..Default::default()
    };
    let frame = codec::encode_message(&failing.encode_to_vec(), Encoding::Identity);
    let (head, body) = curl_grpc(url, frame.to_vec()).await;
    assert!(head.contains("grpc-status: 3"), "{head}");
    assert!(head.contains("grpc-message: refused: no"), "{head}");
    assert!(body.is_empty());
    running.provider.stop().await;
}
