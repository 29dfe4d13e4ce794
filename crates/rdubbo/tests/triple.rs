//! Triple (`tri://`) between rdubbo peers and against curl: typed calls with POJOs,
//! exceptions, attachments, versions and groups; the HTTP/1 JSON mode and gRPC over
//! `curl --http2-prior-knowledge`; the listener's limits (connections, idle time, message
//! size, HTTP/2 settings, deadlines).

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdubbo::triple::codec::{self, TripleRequestWrapper};
use rdubbo::triple::{ServerConfig, TripleClient, TripleServer};
use rdubbo::{Attachments, RpcError, RpcResult, Url, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "../examples/java_interop/user_service.rs"]
#[allow(dead_code)]
mod user_service;
use user_service::{
    plain, sample, Level, RustUsers, UserServiceClient, UserServiceServer, USER_NOT_FOUND,
};

/// A service whose calls take as long as asked.
#[rdubbo::service(interface = "test.Slow")]
pub trait Slow {
    /// Sleeps `ms` milliseconds, then answers `ms`.
    async fn sleep(&self, ms: i64) -> RpcResult<i64>;
    /// Answers the length of `s`.
    async fn len(&self, s: String) -> RpcResult<i64>;
}

struct SlowImpl;

impl Slow for SlowImpl {
    async fn sleep(&self, ms: i64) -> RpcResult<i64> {
        tokio::time::sleep(Duration::from_millis(ms as u64)).await;
        Ok(ms)
    }
    async fn len(&self, s: String) -> RpcResult<i64> {
        Ok(s.len() as i64)
    }
}

fn versioned(mut info: rdubbo::ServiceInfo, version: &str, group: &str) -> rdubbo::ServiceInfo {
    info.version = Some(version.into());
    info.group = Some(group.into());
    info
}

async fn server(config: ServerConfig) -> TripleServer {
    TripleServer::builder()
        .config(config)
        .export(
            UserServiceServer::<RustUsers>::info(),
            Arc::new(UserServiceServer::new(RustUsers)),
        )
        .export(
            versioned(UserServiceServer::<RustUsers>::info(), "2.0.0", "blue"),
            Arc::new(UserServiceServer::new(RustUsers)),
        )
        .export(
            SlowServer::<SlowImpl>::info(),
            Arc::new(SlowServer::new(SlowImpl)),
        )
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

fn client(server: &TripleServer, params: &str) -> Arc<TripleClient> {
    let url: Url = format!(
        "tri://{}/com.example.UserService{params}",
        server.local_addr()
    )
    .parse()
    .unwrap();
    Arc::new(TripleClient::new(&url).unwrap())
}

/// The checks a consumer of `com.example.UserService` makes.
pub async fn user_checks(users: &UserServiceClient, served_by: &str) {
    assert_eq!(users.get_user(Some(7)).await.unwrap(), sample(7));
    let e = users.get_user(Some(-1)).await.unwrap_err();
    assert_eq!(e.java_class(), Some(USER_NOT_FOUND), "{e:?}");
    assert_eq!(e.message(), "no user -1");
    assert_eq!(users.create_user(sample(7)).await.unwrap(), Some(3007));
    let full = sample(41);
    assert_eq!(users.echo_user(full.clone()).await.unwrap(), full);
    assert_eq!(
        users.list_users(3).await.unwrap(),
        vec![plain("user0", 0), plain("user1", 1), plain("user2", 2)]
    );
    assert_eq!(users.list_users(0).await.unwrap(), vec![]);
    // `long` and `Long` overloads, told apart by the wrapper's argTypes.
    assert_eq!(users.inc(5).await.unwrap(), 6);
    assert_eq!(users.inc_boxed(Some(5)).await.unwrap(), Some(7));
    assert_eq!(users.inc_boxed(None).await.unwrap(), Some(-1));
    // Attachments both ways (headers out, trailers back).
    let mut extra = Attachments::new();
    extra.insert("caller", "rust-consumer");
    let (who, reply) = rdubbo::context::capture_reply_attachments(
        rdubbo::context::with_attachments(extra, users.whoami()),
    )
    .await;
    assert_eq!(who.unwrap().as_deref(), Some("rust-consumer"));
    assert_eq!(reply.get("served-by"), Some(served_by));
    let by_name = users.by_name(vec![plain("a", 1), sample(2)]).await.unwrap();
    assert_eq!(by_name["ann"], sample(2));
    assert_eq!(users.level_of(sample(1)).await.unwrap(), Some(Level::Gold));
    assert_eq!(users.level_of(plain("x", 1)).await.unwrap(), None);
    let v = Value::list(vec![Value::from("x"), Value::Long(1)]);
    assert_eq!(users.echo(v.clone()).await.unwrap(), v);
}

#[tokio::test]
async fn rdubbo_consumer_calls_rdubbo_provider_over_tri() {
    let server = server(ServerConfig::default()).await;
    let users = UserServiceClient::new(client(&server, ""));
    user_checks(&users, "rdubbo").await;
    // Version and group travel as tri-service-version / tri-service-group.
    let blue = UserServiceClient::new(client(&server, ""))
        .with_version(Some("2.0.0"))
        .with_group(Some("blue"));
    assert_eq!(blue.inc(1).await.unwrap(), 2);
    let missing = UserServiceClient::new(client(&server, ""))
        .with_version(Some("9.9.9"))
        .with_group(Some("blue"));
    let e = missing.inc(1).await.unwrap_err();
    assert_eq!(e.code(), rdubbo::error::codes::METHOD_NOT_FOUND, "{e:?}");
    // gzip both ways.
    let zipped = UserServiceClient::new(client(&server, "?compression=gzip"));
    let mut big = sample(1);
    big.tags = Some(vec!["x".repeat(100_000)]);
    assert_eq!(zipped.echo_user(big.clone()).await.unwrap(), big);
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn tri_through_the_extension_table() {
    let table = rdubbo::extension::builtin();
    let tri = table.protocol("tri").expect("tri registered").clone();
    assert_eq!(tri.name(), "tri");
    let served = tri
        .serve(
            "127.0.0.1:0".parse().unwrap(),
            vec![rdubbo::Export {
                info: UserServiceServer::<RustUsers>::info(),
                invoker: Arc::new(UserServiceServer::new(RustUsers)),
            }],
        )
        .await
        .unwrap();
    let url: Url = format!("tri://{}/com.example.UserService", served.local_addr())
        .parse()
        .unwrap();
    let users = UserServiceClient::new(tri.refer(&url).unwrap());
    assert_eq!(users.get_user(Some(3)).await.unwrap(), sample(3));
    served.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn deadlines_sizes_and_shutdown() {
    let server = server(ServerConfig {
        default_timeout: Duration::from_millis(200),
        max_message_size: 16 * 1024,
        ..ServerConfig::default()
    })
    .await;
    let url: Url = format!(
        "tri://{}/test.Slow?timeout=5000&payload=10000000",
        server.local_addr()
    )
    .parse()
    .unwrap();
    let slow = SlowClient::new(Arc::new(TripleClient::new(&url).unwrap()));
    assert_eq!(slow.sleep(1).await.unwrap(), 1);
    // The server's cap on a call's time answers DEADLINE_EXCEEDED.
    let started = Instant::now();
    let e = slow.sleep(3_000).await.unwrap_err();
    assert_eq!(e.code(), rdubbo::error::codes::SERVER_TIMEOUT, "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // The caller's deadline travels as grpc-timeout.
    let quick = SlowClient::new(Arc::new(TripleClient::new(&url).unwrap()))
        .with_timeout(Duration::from_millis(100));
    let e = quick.sleep(3_000).await.unwrap_err();
    assert!(
        matches!(e, RpcError::Timeout(_) | RpcError::Remote { .. }),
        "{e:?}"
    );
    // A message over the limit: RESOURCE_EXHAUSTED, the connection stays usable.
    let e = slow.len("x".repeat(20_000)).await.unwrap_err();
    assert!(matches!(e, RpcError::Limit(_)), "{e:?}");
    // A small gzip message that would inflate past the limit, too.
    let zurl: Url = format!("{url}&compression=gzip").parse().unwrap();
    let zipped = SlowClient::new(Arc::new(TripleClient::new(&zurl).unwrap()));
    let e = zipped.len("x".repeat(1_000_000)).await.unwrap_err();
    assert!(matches!(e, RpcError::Limit(_)), "{e:?}");
    assert_eq!(zipped.len("x".repeat(10_000)).await.unwrap(), 10_000);
    assert_eq!(slow.len("abc".into()).await.unwrap(), 3);
    server.shutdown(Duration::from_secs(1)).await;
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The server's first SETTINGS frame, as (id, value) pairs.
async fn server_settings(addr: std::net::SocketAddr) -> Vec<(u16, u32)> {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(PREFACE).await.unwrap();
    s.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
    let mut head = [0u8; 9];
    s.read_exact(&mut head).await.unwrap();
    assert_eq!(head[3], 4, "first frame is SETTINGS");
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut body = vec![0; len];
    s.read_exact(&mut body).await.unwrap();
    body.chunks(6)
        .map(|c| {
            (
                u16::from_be_bytes([c[0], c[1]]),
                u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
            )
        })
        .collect()
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn listener_limits() {
    let server = server(ServerConfig {
        max_connections: 1,
        max_concurrent_streams: 7,
        max_header_list_size: 4096,
        idle_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    })
    .await;
    let addr = server.local_addr();
    // HTTP/2 settings as configured.
    let settings = server_settings(addr).await;
    assert!(settings.contains(&(3, 7)), "{settings:?}");
    assert!(settings.contains(&(6, 4096)), "{settings:?}");
    // That connection was closed (dropped); an idle one is closed by the server.
    wait_for("no connection", || server.connections() == 0).await;
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    idle.write_all(PREFACE).await.unwrap();
    idle.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
    wait_for("one connection", || server.connections() == 1).await;
    // At the limit a new connection is closed at once.
    let mut extra = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), extra.read(&mut buf))
        .await
        .expect("closed, not left hanging")
        .unwrap_or(0);
    assert_eq!(n, 0, "the connection over the limit is closed");
    // The idle one goes after its idle time (GOAWAY, then close).
    let started = Instant::now();
    let mut all = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut all)).await;
    assert!(started.elapsed() < Duration::from_secs(4));
    wait_for("idle connection closed", || server.connections() == 0).await;
    // Oversized headers are refused, the server stays up.
    let users = UserServiceClient::new(client(&server, ""));
    let mut big = Attachments::new();
    big.insert("huge", "y".repeat(10_000));
    let e = rdubbo::context::with_attachments(big, users.inc(1))
        .await
        .unwrap_err();
    println!("oversized headers: {e:?}");
    assert!(
        e.is_provider_failure() || matches!(e, RpcError::Remote { .. }),
        "{e:?}"
    );
    drop(users);
    // (The limit is one connection: the next client waits for that one to go.)
    wait_for("the first client's connection closed", || {
        server.connections() == 0
    })
    .await;
    let users = UserServiceClient::new(client(&server, ""));
    assert_eq!(users.inc(1).await.unwrap(), 2);
    server.shutdown(Duration::from_secs(1)).await;
}

fn curl_available() -> bool {
    let ok = Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIPPED: curl is not installed");
    }
    ok
}

/// Runs curl with `args`, returning (status line + headers + trailers, body).
async fn curl(args: Vec<String>) -> (String, Vec<u8>) {
    tokio::task::spawn_blocking(move || {
        let dir = std::env::temp_dir().join(format!("rdubbo-tri-curl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let tag = format!(
            "{:?}-{}",
            std::thread::current().id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let head = dir.join(format!("head-{tag}"));
        let body = dir.join(format!("body-{tag}"));
        let out = Command::new("curl")
            .arg("-sS")
            .arg("--max-time")
            .arg("10")
            .arg("-D")
            .arg(&head)
            .arg("-o")
            .arg(&body)
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "curl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let h = std::fs::read_to_string(&head).unwrap();
        let b = std::fs::read(&body).unwrap();
        let _ = std::fs::remove_file(head);
        let _ = std::fs::remove_file(body);
        (h.to_ascii_lowercase(), b)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn curl_over_http1_json_and_http2_grpc() {
    if !curl_available() {
        return;
    }
    let server = server(ServerConfig::default()).await;
    let base = format!("http://{}", server.local_addr());
    let json = |path: &str, body: &str| {
        vec![
            "-X".into(),
            "POST".into(),
            format!("{base}/{path}"),
            "-H".into(),
            "content-type: application/json".into(),
            "-d".into(),
            body.to_string(),
        ]
    };
    // HTTP/1.1 + JSON, as on Java.
    let (head, body) = curl(json("com.example.UserService/listUsers", "[2]")).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert!(
        head.contains(&format!("alt-svc: h2=\":{}\"", server.local_addr().port())),
        "{head}"
    );
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v[1]["name"], "user1");
    assert_eq!(v.as_array().unwrap().len(), 2);
    let (_, body) = curl(json("com.example.UserService/getUser", "[7]")).await;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["name"], "ann");
    assert_eq!(v["age"], 7);
    // A service error: 500 with Java's error body.
    let (head, body) = curl(json("com.example.UserService/getUser", "[-1]")).await;
    assert!(head.starts_with("http/1.1 500"), "{head}");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"status": "500", "message": "no user -1"})
    );
    // Unknown service: 404 "Invoker not found".
    let (head, body) = curl(json("com.example.Nope/x", "[]")).await;
    assert!(head.starts_with("http/1.1 404"), "{head}");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
        serde_json::json!({"status": "404", "message": "Invoker not found"})
    );
    // Version and group headers in JSON mode.
    let mut args = json("com.example.UserService/getUser", "[3]");
    args.extend([
        "-H".into(),
        "tri-service-version: 2.0.0".into(),
        "-H".into(),
        "tri-service-group: blue".into(),
    ]);
    let (head, _) = curl(args).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    // A body of many tiny values is refused (413), not expanded into memory.
    let many = std::env::temp_dir().join(format!("rdubbo-tri-many-{}", std::process::id()));
    std::fs::write(&many, format!("[[{}0]]", "0,".repeat(300_000))).unwrap();
    let (head, _) = curl(json(
        "com.example.UserService/echo",
        &format!("@{}", many.display()),
    ))
    .await;
    assert!(head.starts_with("http/1.1 413"), "{head}");
    let _ = std::fs::remove_file(many);
    // The same JSON over HTTP/2 with prior knowledge.
    let mut args = json("com.example.UserService/getUser", "[5]");
    args.insert(0, "--http2-prior-knowledge".into());
    let (head, body) = curl(args).await;
    assert!(head.starts_with("http/2 200"), "{head}");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["age"],
        5
    );

    // gRPC over HTTP/2: a hand-made frame holding Java's wrapper for inc(long 5).
    let wrapper = TripleRequestWrapper {
        serialize_type: "hessian4".into(),
        args: vec![rdubbo::hessian::to_bytes(&5_i64).unwrap().into()],
        arg_types: vec!["long".into()],
    };
    let frame = codec::encode_message(&prost_encode(&wrapper), codec::Encoding::Identity);
    let file = std::env::temp_dir().join(format!("rdubbo-tri-frame-{}", std::process::id()));
    std::fs::write(&file, &frame).unwrap();
    let grpc = |path: &str, extra: &[&str]| {
        let mut v: Vec<String> = vec![
            "--http2-prior-knowledge".into(),
            "-X".into(),
            "POST".into(),
            format!("{base}/{path}"),
            "-H".into(),
            "content-type: application/grpc".into(),
            "-H".into(),
            "te: trailers".into(),
            "--data-binary".into(),
            format!("@{}", file.display()),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let (head, body) = curl(grpc("com.example.UserService/inc", &["-H", "caller: curl"])).await;
    assert!(head.starts_with("http/2 200"), "{head}");
    assert!(head.contains("content-type: application/grpc"), "{head}");
    assert!(
        head.contains("grpc-status: 0"),
        "trailer grpc-status: {head}"
    );
    let message = codec::decode_unary(&body.into(), codec::Encoding::Identity, 1 << 20).unwrap();
    let reply: codec::TripleResponseWrapper =
        rdubbo::triple::prost::Message::decode(message).unwrap();
    assert_eq!(reply.serialize_type, "hessian4");
    assert_eq!(
        rdubbo::hessian::decode_value(&reply.data).unwrap(),
        Value::Long(6)
    );
    // No such service: UNIMPLEMENTED (12), trailers-only.
    let (head, body) = curl(grpc("com.example.Nope/inc", &[])).await;
    assert!(head.contains("grpc-status: 12"), "{head}");
    assert!(body.is_empty());
    // A business exception: HTTP 200, tri-exception-code, the exception in the body.
    let wrapper = TripleRequestWrapper {
        serialize_type: "hessian4".into(),
        args: vec![rdubbo::hessian::to_bytes(&-1_i64).unwrap().into()],
        arg_types: vec!["java.lang.Long".into()],
    };
    std::fs::write(
        &file,
        codec::encode_message(&prost_encode(&wrapper), codec::Encoding::Identity),
    )
    .unwrap();
    let (head, body) = curl(grpc("com.example.UserService/getUser", &[])).await;
    assert!(head.contains("tri-exception-code: 3"), "{head}");
    assert!(head.contains("grpc-status: 0"), "{head}");
    let message = codec::decode_unary(&body.into(), codec::Encoding::Identity, 1 << 20).unwrap();
    let reply: codec::TripleResponseWrapper =
        rdubbo::triple::prost::Message::decode(message).unwrap();
    let x = rdubbo::hessian::decode_value(&reply.data).unwrap();
    let t = rdubbo::hessian::Throwable::from_value(&x).unwrap();
    assert_eq!(t.class, USER_NOT_FOUND);
    assert_eq!(t.message.as_deref(), Some("no user -1"));
    // An unsupported grpc-encoding: UNIMPLEMENTED with the encodings served.
    let (head, _) = curl(grpc(
        "com.example.UserService/inc",
        &["-H", "grpc-encoding: snappy"],
    ))
    .await;
    assert!(head.contains("grpc-status: 12"), "{head}");
    assert!(head.contains("grpc-accept-encoding: gzip"), "{head}");
    let _ = std::fs::remove_file(file);
    server.shutdown(Duration::from_secs(1)).await;
}

fn prost_encode(m: &TripleRequestWrapper) -> Vec<u8> {
    rdubbo::triple::prost::Message::encode_to_vec(m)
}

#[tokio::test]
async fn graceful_shutdown_lets_calls_in_flight_finish() {
    let server = server(ServerConfig::default()).await;
    let url: Url = format!("tri://{}/test.Slow?timeout=5000", server.local_addr())
        .parse()
        .unwrap();
    let slow = SlowClient::new(Arc::new(TripleClient::new(&url).unwrap()));
    assert_eq!(slow.sleep(1).await.unwrap(), 1);
    let in_flight = tokio::spawn({
        let slow = slow.clone();
        async move { slow.sleep(300).await }
    });
    // Stop once the server is serving the call.
    wait_for("the call in flight", || server.calls_in_flight() == 1).await;
    server.shutdown(Duration::from_secs(5)).await;
    assert_eq!(in_flight.await.unwrap().unwrap(), 300);
    // Afterwards nothing listens: a retryable connect error.
    let e = slow.sleep(1).await.unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
}

/// One HTTP/2 frame.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HPACK for `POST /com.example.UserService/inc`, `content-type: application/grpc`
/// (literals, no Huffman, no dynamic table).
fn h2_request_headers() -> Vec<u8> {
    let mut b = vec![0x83, 0x86]; // :method POST, :scheme http
    let path = b"/com.example.UserService/inc";
    b.push(0x04); // :path, literal without indexing, indexed name 4
    b.push(path.len() as u8);
    b.extend_from_slice(path);
    let ct = b"application/grpc";
    b.extend_from_slice(&[0x0f, 0x10]); // content-type (static index 31)
    b.push(ct.len() as u8);
    b.extend_from_slice(ct);
    b
}

/// Reads frames until one matches, returning (type, flags, stream, payload).
async fn h2_read_until(
    s: &mut tokio::net::TcpStream,
    mut want: impl FnMut(u8, u32, &[u8]) -> bool,
) -> Option<(u8, u32, Vec<u8>)> {
    loop {
        let mut head = [0u8; 9];
        s.read_exact(&mut head).await.ok()?;
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0; len];
        s.read_exact(&mut payload).await.ok()?;
        if want(head[3], stream, &payload) {
            return Some((head[3], stream, payload));
        }
    }
}

#[tokio::test]
async fn hostile_http2_streams_and_resets() {
    let server = server(ServerConfig {
        max_concurrent_streams: 4,
        ..ServerConfig::default()
    })
    .await;
    let addr = server.local_addr();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(PREFACE).await.unwrap();
    s.write_all(&h2_frame(4, 0, 0, &[])).await.unwrap();
    // Five requests left open (no END_STREAM) on a limit of four: the fifth is refused
    // with RST_STREAM(REFUSED_STREAM).
    let headers = h2_request_headers();
    for i in 0..5u32 {
        s.write_all(&h2_frame(1, 0x4, 1 + 2 * i, &headers))
            .await
            .unwrap();
    }
    let reset = tokio::time::timeout(
        Duration::from_secs(5),
        h2_read_until(&mut s, |kind, _, _| kind == 3),
    )
    .await
    .expect("a RST_STREAM in time")
    .expect("the connection stays open");
    assert_eq!(reset.1, 9, "the fifth stream is refused");
    assert_eq!(reset.2, 7u32.to_be_bytes(), "REFUSED_STREAM");
    wait_for("four calls waiting for their bodies", || {
        server.calls_in_flight() == 4
    })
    .await;
    drop(s);
    wait_for("the open calls gone with their connection", || {
        server.calls_in_flight() == 0
    })
    .await;

    // Rapid reset: requests cancelled as soon as they are sent, thousands of them: the
    // connection is refused with GOAWAY, and the server holds nothing afterwards.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(PREFACE).await.unwrap();
    s.write_all(&h2_frame(4, 0, 0, &[])).await.unwrap();
    let mut flood = Vec::new();
    for i in 0..5_000u32 {
        let id = 1 + 2 * i;
        flood.extend(h2_frame(1, 0x4, id, &headers));
        flood.extend(h2_frame(3, 0, id, &8u32.to_be_bytes())); // RST_STREAM(CANCEL)
    }
    let _ = s.write_all(&flood).await;
    let goaway = tokio::time::timeout(
        Duration::from_secs(10),
        h2_read_until(&mut s, |kind, _, _| kind == 7),
    )
    .await;
    // h2 sends GOAWAY(ENHANCE_YOUR_CALM) ("too_many_resets").
    let (_, _, payload) = goaway
        .expect("GOAWAY in time")
        .expect("GOAWAY before the close");
    assert_eq!(payload[4..8], 11u32.to_be_bytes(), "ENHANCE_YOUR_CALM");
    drop(s);
    wait_for("no call held", || server.calls_in_flight() == 0).await;
    wait_for("no connection held", || server.connections() == 0).await;
    // And the server still serves.
    let users = UserServiceClient::new(client(&server, ""));
    assert_eq!(users.inc(1).await.unwrap(), 2);
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_client_reconnects_after_the_server_closed_an_idle_connection() {
    let server = server(ServerConfig {
        idle_timeout: Duration::from_millis(200),
        ..ServerConfig::default()
    })
    .await;
    let users = UserServiceClient::new(client(&server, ""));
    assert_eq!(users.inc(1).await.unwrap(), 2);
    wait_for("one connection", || server.connections() == 1).await;
    wait_for("the idle connection closed", || server.connections() == 0).await;
    // The next call finds its connection gone and makes a new one, transparently.
    for _ in 0..3 {
        assert_eq!(users.inc(2).await.unwrap(), 3);
    }
    assert_eq!(server.connections(), 1);
    server.shutdown(Duration::from_secs(1)).await;
}

/// A provider closing a connection as a request leaves (idle time, shutdown) answers it
/// with GOAWAY and a last stream below it: the request was not processed, and the client
/// sends it again on a new connection, once. Deterministic here: a listener in front of
/// the server answers the first three connections' first request with GOAWAY(last
/// stream 0) and hands later connections to the server.
#[tokio::test]
async fn a_request_refused_by_goaway_is_sent_again_once() {
    let server = server(ServerConfig::default()).await;
    let backend = server.local_addr();
    let front = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let front_addr = front.local_addr().unwrap();
    let refusing = Arc::new(std::sync::atomic::AtomicUsize::new(3));
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (left, seen) = (refusing.clone(), accepted.clone());
    let front_task = tokio::spawn(async move {
        use std::sync::atomic::Ordering::SeqCst;
        loop {
            let (mut conn, _) = front.accept().await.unwrap();
            seen.fetch_add(1, SeqCst);
            let refuse = left
                .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
                .is_ok();
            tokio::spawn(async move {
                if refuse {
                    let mut preface = [0u8; 24];
                    conn.read_exact(&mut preface).await.unwrap();
                    conn.write_all(&h2_frame(4, 0, 0, &[])).await.unwrap();
                    let (_, stream, _) = h2_read_until(&mut conn, |kind, _, _| kind == 1)
                        .await
                        .expect("the request's HEADERS");
                    assert_eq!(stream, 1);
                    let goaway = [0u8; 8]; // last stream 0, NO_ERROR
                    conn.write_all(&h2_frame(7, 0, 0, &goaway)).await.unwrap();
                    // Closed when the client closes it.
                    let _ = h2_read_until(&mut conn, |_, _, _| false).await;
                } else {
                    let mut up = tokio::net::TcpStream::connect(backend).await.unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut conn, &mut up).await;
                }
            });
        }
    });
    let url: Url = format!("tri://{front_addr}/com.example.UserService")
        .parse()
        .unwrap();
    let users = UserServiceClient::new(Arc::new(TripleClient::new(&url).unwrap()));
    // Refused on two connections in a row: sent twice, then the error is the caller's.
    let e = users.inc(1).await.unwrap_err();
    assert!(e.to_string().contains("REFUSED_STREAM"), "{e}");
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
    // Refused once (the remaining refusing connection), served on the next.
    assert_eq!(users.inc(1).await.unwrap(), 2);
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 4);
    assert_eq!(users.inc(2).await.unwrap(), 3);
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 4);
    front_task.abort();
    server.shutdown(Duration::from_secs(1)).await;
}

/// What `grpcio` (Python, PyPI `grpcio`) does against the tri server, one line per call.
const GRPCIO_SCRIPT: &str = r#"
import sys, grpc
target, inc_req, user_req, slow_req = sys.argv[1:5]
ch = grpc.insecure_channel(target)
ident = lambda b: b
def method(path):
    return ch.unary_unary(path, request_serializer=ident, response_deserializer=ident)
resp, call = method('/com.example.UserService/inc').with_call(
    bytes.fromhex(inc_req), metadata=[('caller', 'grpcio')], timeout=5)
print('OK', resp.hex())
resp, call = method('/com.example.UserService/inc').with_call(
    bytes.fromhex(inc_req), timeout=5, compression=grpc.Compression.Gzip)
print('GZIP', resp.hex())
try:
    method('/com.example.Nope/inc')(bytes.fromhex(inc_req), timeout=5)
except grpc.RpcError as e:
    print('ERR', e.code().name)
resp, call = method('/com.example.UserService/getUser').with_call(bytes.fromhex(user_req), timeout=5)
print('EXC', dict(call.initial_metadata()).get('tri-exception-code'), resp.hex())
try:
    method('/test.Slow/sleep')(bytes.fromhex(slow_req), timeout=0.3)
except grpc.RpcError as e:
    print('ERR', e.code().name)
"#;

fn wrapper_hex(arg: &[u8], arg_type: &str) -> String {
    let w = TripleRequestWrapper {
        serialize_type: "hessian4".into(),
        args: vec![arg.to_vec().into()],
        arg_types: vec![arg_type.into()],
    };
    prost_encode(&w)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn response_value(hex: &str) -> Value {
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let reply: codec::TripleResponseWrapper =
        rdubbo::triple::prost::Message::decode(&bytes[..]).unwrap();
    rdubbo::hessian::decode_value(&reply.data).unwrap()
}

#[tokio::test]
async fn python_grpcio_calls_the_tri_server() {
    let has_grpcio = Command::new("python3")
        .args(["-c", "import grpc"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_grpcio {
        eprintln!(
            "{0}\n!! SKIPPED: python3 with grpcio is not installed (pip install grpcio)\n{0}",
            "!".repeat(78)
        );
        return;
    }
    let server = server(ServerConfig::default()).await;
    let args = vec![
        server.local_addr().to_string(),
        wrapper_hex(&rdubbo::hessian::to_bytes(&5_i64).unwrap(), "long"),
        wrapper_hex(
            &rdubbo::hessian::to_bytes(&-1_i64).unwrap(),
            "java.lang.Long",
        ),
        wrapper_hex(&rdubbo::hessian::to_bytes(&5_000_i64).unwrap(), "long"),
    ];
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg("-c")
            .arg(GRPCIO_SCRIPT)
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{stdout}");
    let lines: Vec<Vec<&str>> = stdout.lines().map(|l| l.split(' ').collect()).collect();
    assert_eq!(lines[0][0], "OK");
    assert_eq!(response_value(lines[0][1]), Value::Long(6));
    assert_eq!(lines[1][0], "GZIP");
    assert_eq!(response_value(lines[1][1]), Value::Long(6));
    assert_eq!(lines[2], ["ERR", "UNIMPLEMENTED"]);
    assert_eq!(lines[3][..2], ["EXC", "3"]);
    let t = rdubbo::hessian::Throwable::from_value(&response_value(lines[3][2])).unwrap();
    assert_eq!(t.class, USER_NOT_FOUND);
    assert_eq!(lines[4], ["ERR", "DEADLINE_EXCEEDED"]);
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn request_bodies_share_a_bounded_budget() {
    // Room for one 40 KiB body at a time: sixteen sent at once are read one after the
    // other, and every one is served.
    let server = server(ServerConfig {
        max_message_size: 48 * 1024,
        max_buffered_bytes: 64 * 1024,
        ..ServerConfig::default()
    })
    .await;
    let url: Url = format!("tri://{}/test.Slow?timeout=10000", server.local_addr())
        .parse()
        .unwrap();
    let slow = SlowClient::new(Arc::new(TripleClient::new(&url).unwrap()));
    let calls: Vec<_> = (0..16)
        .map(|_| {
            let slow = slow.clone();
            tokio::spawn(async move { slow.len("x".repeat(40 * 1024)).await })
        })
        .collect();
    for c in calls {
        assert_eq!(c.await.unwrap().unwrap(), 40 * 1024);
    }
    server.shutdown(Duration::from_secs(1)).await;
}
