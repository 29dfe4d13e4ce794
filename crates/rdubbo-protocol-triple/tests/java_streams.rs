//! Streaming methods of an interface service (Java's `StreamObserver`, no IDL) between
//! rdubbo and the real Apache Dubbo 3.3.1 over Triple, both ways: server streaming and
//! bidirectional. The Java program is `tests/java/com/example/stream/StreamPeer.java`;
//! without Java 3.3.1 the tests are skipped LOUDLY (`RDUBBO_REQUIRE_JAVA=1` fails instead).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdubbo_core::{
    Args, BoxFuture, Invocation, Invoker, MessageStream, MethodKind, Reply, RpcError, RpcResult,
    ServiceInfo, Url,
};
use rdubbo_protocol_triple::{TripleClient, TripleServer};
use rdubbo_testkit::java::{target_tmp, DubboVersion, JavaDubbo};
use rdubbo_testkit::{free_port, ChildGuard};

const GREETER: &str = "com.example.stream.Greeter";

fn sources() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("java")
}

fn hessian(s: &str) -> Bytes {
    Bytes::from(rdubbo_hessian::to_bytes(&s.to_string()).unwrap())
}

fn text(b: &[u8]) -> String {
    rdubbo_hessian::from_slice(b).unwrap()
}

/// `Greeter` in Rust: greets twice, upper-cases what it is sent.
struct Greeter;

impl Invoker for Greeter {
    fn invoke(&self, inv: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        Box::pin(async move {
            match &*inv.method {
                "greetStream" => {
                    let name: String = inv.args.decoder().read().map_err(RpcError::Codec)?;
                    Ok(Reply::Stream(MessageStream::iter(
                        ["hello", "bonjour"].map(|g| hessian(&format!("{g} {name} from rust"))),
                    )))
                }
                "chat" => {
                    let mut input = inv.args.into_stream()?.take()?;
                    let (sink, out) = MessageStream::channel(4);
                    tokio::spawn(async move {
                        while let Some(m) = input.next().await {
                            let Ok(m) = m else { return };
                            if sink.send(hessian(&text(&m).to_uppercase())).await.is_err() {
                                return;
                            }
                        }
                        sink.finish();
                    });
                    Ok(Reply::Stream(out))
                }
                other => Err(RpcError::Invalid(format!("no method {other}"))),
            }
        })
    }
}

fn info() -> ServiceInfo {
    ServiceInfo {
        interface: GREETER.into(),
        methods: vec!["greetStream".into(), "chat".into()],
        streams: vec![
            ("greetStream".into(), MethodKind::ServerStream),
            ("chat".into(), MethodKind::BidiStream),
        ],
        ..Default::default()
    }
}

fn log_file(name: &str) -> PathBuf {
    let dir = target_tmp().join("triple-java-streams");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{name}-{}.log", std::process::id()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_3_3_consumer_streams_from_rdubbo() {
    let Some(java) = JavaDubbo::find(DubboVersion::V3_3) else {
        return;
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = TripleServer::builder()
        .export(info(), Arc::new(Greeter))
        .serve(listener)
        .unwrap();
    let url = format!("tri://{}/{GREETER}", server.local_addr());
    let out = tokio::task::spawn_blocking(move || {
        let classes = java.compile(&sources());
        let log = log_file("consumer");
        let out = java
            .command(&classes, "com.example.stream.StreamPeer")
            .args(["consumer", &url])
            .stderr(std::fs::File::create(&log).unwrap())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        println!("{stdout}\n(stderr: {})", log.display());
        stdout
    })
    .await
    .unwrap();
    assert!(
        out.contains("greetStream hello ann from rust,bonjour ann from rust null"),
        "{out}"
    );
    assert!(out.contains("chat A,B null"), "{out}");
    assert!(out.contains("DONE"), "{out}");
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdubbo_streams_from_java_3_3_provider() {
    let Some(java) = JavaDubbo::find(DubboVersion::V3_3) else {
        return;
    };
    let port = free_port();
    let (child, lines) = {
        let java = java.clone();
        tokio::task::spawn_blocking(move || {
            let classes = java.compile(&sources());
            let mut cmd = java.command(&classes, "com.example.stream.StreamPeer");
            cmd.args(["provider", &port.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(std::fs::File::create(log_file("provider")).unwrap());
            let mut child = ChildGuard::spawn(&mut cmd).unwrap();
            let stdout = child.0.stdout.take().unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    println!("[StreamPeer] {line}");
                    let _ = tx.send(line);
                }
            });
            let deadline = Instant::now() + Duration::from_secs(90);
            loop {
                match rx.recv_timeout(Duration::from_millis(200)) {
                    Ok(line) if line.trim() == format!("READY {port}") => break,
                    Ok(line) if line.starts_with("FAILED") => panic!("StreamPeer: {line}"),
                    Ok(_) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                        assert!(Instant::now() < deadline, "StreamPeer provider not READY")
                    }
                    Err(e) => panic!("StreamPeer provider exited: {e}"),
                }
            }
            (child, rx)
        })
        .await
        .unwrap()
    };
    let url: Url = format!("tri://127.0.0.1:{port}/{GREETER}?timeout=10000")
        .parse()
        .unwrap();
    let client = TripleClient::new(&url).unwrap();
    let string = std::borrow::Cow::Borrowed("Ljava/lang/String;");
    let collect = |reply: Reply| async move {
        let mut answers = reply.into_stream().unwrap().take().unwrap();
        let mut got = Vec::new();
        while let Some(m) = answers.next().await {
            got.push(text(&m.unwrap()));
        }
        got
    };
    let mut inv = Invocation::new(GREETER, "greetStream", Vec::new());
    inv.args = Args::Stream(MessageStream::once(hessian("ann")));
    inv.parameter_types = vec![string.clone()].into();
    let reply = client.invoke(inv).await.unwrap();
    assert_eq!(collect(reply).await, vec!["hello ann", "bonjour ann"]);

    let (sink, input) = MessageStream::channel(1);
    let mut inv = Invocation::new(GREETER, "chat", Vec::new());
    inv.args = Args::Stream(input);
    inv.parameter_types = vec![string].into();
    let reply = client.invoke(inv).await.unwrap();
    let mut answers = reply.into_stream().unwrap().take().unwrap();
    for word in ["a", "b"] {
        sink.send(hessian(word)).await.unwrap();
        let answer = answers.next().await.unwrap().unwrap();
        assert_eq!(text(&answer), word.to_uppercase());
    }
    sink.finish();
    assert!(answers.next().await.is_none(), "the Java side completes");
    drop((child, lines));
}
