//! `@grpc/grpc-js` with `@grpc/proto-loader` (npm), loading the same `echo.proto` at run
//! time, calls the generated server over `tri`: unary, each streaming kind, error
//! statuses, deadline exceeded, cancellation. The npm packages are installed on first use
//! into the target directory; without npm (or the registry) the test says so and skips.

mod common;

use std::path::PathBuf;
use std::process::Command;

use serde_json::{json, Value};

/// The directory with the npm packages installed, or why not.
fn npm_dir() -> Result<PathBuf, String> {
    if !Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Err("node is not installed (scripts/test-all.sh installs nodejs and npm)".into());
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("npm-grpc-js");
    std::panic::catch_unwind(|| {
        rdubbo_testkit::npm_install(&dir, &["@grpc/grpc-js@1", "@grpc/proto-loader@0.8"])
    })
    .map_err(|_| {
        "npm install @grpc/grpc-js @grpc/proto-loader failed (registry unreachable?)".into()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_js_calls_every_kind() {
    let dir = match npm_dir() {
        Ok(d) => d,
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
    let running = common::start().await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/grpc_js_client.js");
    let proto = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("proto");
    let addr = running.addr.to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .arg(addr)
            .arg(proto)
            .env("NODE_PATH", dir.join("node_modules"))
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "grpc-js client failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["unary"], json!(["OK", "hi"]));
    assert_eq!(
        seen["server_stream"],
        json!([[["s", 0], ["s", 1], ["s", 2]], "OK", ""])
    );
    assert_eq!(seen["client_stream"], json!(["a,b,c", 3]));
    assert_eq!(seen["bidi"], json!(["x", "y", "z"]));
    assert_eq!(
        seen["unary_error"],
        json!(["ERR", "INVALID_ARGUMENT", "refused: no"])
    );
    assert_eq!(seen["unary_deadline"][1], "DEADLINE_EXCEEDED");
    assert_eq!(
        seen["stream_error"],
        json!([
            [["late", 0], ["late", 1]],
            "INVALID_ARGUMENT",
            "refused: late"
        ])
    );
    assert_eq!(seen["cancel"], json!([[0, 1], "CANCELLED"]));
    assert_eq!(seen["ping"], "OK");
    common::cancelled(&running.echo, 1).await;
    running.provider.stop().await;
}
