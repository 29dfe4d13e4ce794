//! IDL calls over Triple, rdubbo client ↔ rdubbo server: unary protobuf messages and the
//! three streaming kinds, back-pressure, cancellation both ways, deadlines, error statuses
//! and the HTTP/2 stream limit.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rdubbo_core::stream::is_cancelled;
use rdubbo_core::{
    Args, BoxFuture, Invocation, Invoker, MessageStream, MethodKind, Reply, RpcError, RpcResult,
    ServiceInfo, Url,
};
use rdubbo_protocol_triple::codec::{grpc, grpc_error, status_of};
use rdubbo_protocol_triple::{ServerConfig, TripleClient, TripleServer};
use tokio::sync::Notify;

const SERVICE: &str = "test.stream.Streamer";

/// What the service's producers report.
#[derive(Default)]
struct Probe {
    /// Messages the `flood` producer has queued.
    produced: AtomicUsize,
    /// How many times a producer or reader saw that the peer went away.
    cancelled: AtomicUsize,
    cancelled_notify: Notify,
}

impl Probe {
    fn cancel(&self) {
        self.cancelled.fetch_add(1, Ordering::SeqCst);
        self.cancelled_notify.notify_waiters();
    }

    async fn wait_cancelled(&self) {
        self.wait_cancellations(1).await;
    }

    /// Waits until `n` cancellations were seen in all.
    async fn wait_cancellations(&self, n: usize) {
        let wait = async {
            loop {
                let notified = self.cancelled_notify.notified();
                if self.cancelled.load(Ordering::SeqCst) >= n {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), wait)
            .await
            .expect("the service saw the cancellation");
    }
}

/// An IDL service whose messages are plain bytes (no protobuf needed to test the runtime).
struct Streamer(Arc<Probe>);

fn info() -> ServiceInfo {
    ServiceInfo {
        interface: SERVICE.into(),
        methods: [
            "echo", "count", "sum", "chat", "fail", "crash", "forever", "flood", "drain", "size",
        ]
        .iter()
        .map(|m| m.to_string())
        .collect(),
        idl: true,
        streams: vec![
            ("count".into(), MethodKind::ServerStream),
            ("fail".into(), MethodKind::ServerStream),
            ("crash".into(), MethodKind::ServerStream),
            ("forever".into(), MethodKind::ServerStream),
            ("flood".into(), MethodKind::ServerStream),
            ("sum".into(), MethodKind::ClientStream),
            ("drain".into(), MethodKind::ClientStream),
            ("size".into(), MethodKind::ClientStream),
            ("chat".into(), MethodKind::BidiStream),
        ],
        ..Default::default()
    }
}

fn number(m: &[u8]) -> usize {
    std::str::from_utf8(m).unwrap().parse().unwrap()
}

impl Invoker for Streamer {
    fn invoke(&self, inv: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        let probe = self.0.clone();
        Box::pin(async move {
            match &*inv.method {
                "echo" => {
                    let m = inv.args.into_message()?;
                    if &m[..] == b"missing" {
                        return Err(grpc_error(grpc::NOT_FOUND, "no such thing"));
                    }
                    Ok(Reply::Message(m))
                }
                "count" => {
                    let n = number(&inv.args.into_message()?);
                    Ok(Reply::Stream(MessageStream::iter(
                        (0..n).map(|i| Bytes::from(i.to_string())),
                    )))
                }
                "sum" => {
                    let mut input = inv.args.into_stream()?.take()?;
                    let mut total = 0;
                    while let Some(m) = input.next().await {
                        total += number(&m?);
                    }
                    Ok(Reply::Message(Bytes::from(total.to_string())))
                }
                "size" => {
                    let mut input = inv.args.into_stream()?.take()?;
                    let mut total = 0;
                    while let Some(m) = input.next().await {
                        total += m?.len();
                    }
                    Ok(Reply::Message(Bytes::from(total.to_string())))
                }
                "drain" => {
                    // Reads, in a task of its own (a reset drops the handler's future;
                    // a reader elsewhere sees the reset as an error), until the caller
                    // goes away.
                    let mut input = inv.args.into_stream()?.take()?;
                    let reader = tokio::spawn(async move {
                        while let Some(m) = input.next().await {
                            if let Err(e) = m {
                                assert!(is_cancelled(&e), "{e:?}");
                                probe.cancel();
                                return Err(e);
                            }
                        }
                        Ok(Reply::Message(Bytes::from_static(b"done")))
                    });
                    reader.await.unwrap()
                }
                "chat" => {
                    let mut input = inv.args.into_stream()?.take()?;
                    let (sink, out) = MessageStream::channel(4);
                    tokio::spawn(async move {
                        while let Some(m) = input.next().await {
                            let Ok(m) = m else { return };
                            let mut reply = b"re:".to_vec();
                            reply.extend_from_slice(&m);
                            if sink.send(Bytes::from(reply)).await.is_err() {
                                return;
                            }
                        }
                        sink.finish();
                    });
                    Ok(Reply::Stream(out))
                }
                "fail" => {
                    let (sink, out) = MessageStream::channel(4);
                    tokio::spawn(async move {
                        for m in ["one", "two"] {
                            let _ = sink.send(Bytes::from(m)).await;
                        }
                        sink.fail(RpcError::service("boom in the middle")).await;
                    });
                    Ok(Reply::Stream(out))
                }
                "crash" => {
                    let (sink, out) = MessageStream::channel(4);
                    tokio::spawn(async move {
                        let _ = sink.send(Bytes::from_static(b"first")).await;
                        // The producer ends without finishing: as if it had panicked.
                        drop(sink);
                    });
                    Ok(Reply::Stream(out))
                }
                "forever" => {
                    let (sink, out) = MessageStream::channel(4);
                    tokio::spawn(async move {
                        let _ = sink.send(Bytes::from_static(b"hello")).await;
                        sink.closed().await;
                        probe.cancel();
                    });
                    Ok(Reply::Stream(out))
                }
                "flood" => {
                    let n = number(&inv.args.into_message()?);
                    let (sink, out) = MessageStream::channel(2);
                    tokio::spawn(async move {
                        for _ in 0..n {
                            if sink.send(Bytes::from(vec![7u8; 16 * 1024])).await.is_err() {
                                probe.cancel();
                                return;
                            }
                            probe.produced.fetch_add(1, Ordering::SeqCst);
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

struct Fixture {
    server: TripleServer,
    client: TripleClient,
    probe: Arc<Probe>,
}

async fn start(config: ServerConfig) -> Fixture {
    let probe = Arc::new(Probe::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = TripleServer::builder()
        .config(config)
        .export(info(), Arc::new(Streamer(probe.clone())))
        .serve(listener)
        .unwrap();
    let url: Url = format!("tri://{}/{SERVICE}?timeout=5000", server.local_addr())
        .parse()
        .unwrap();
    let client = TripleClient::new(&url).unwrap();
    Fixture {
        server,
        client,
        probe,
    }
}

fn call(method: &str, args: Args) -> Invocation {
    let mut inv = Invocation::new(SERVICE, method, Vec::new());
    inv.args = args;
    inv
}

fn msg(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn collect(reply: Reply) -> (Vec<String>, Option<RpcError>) {
    let mut m = reply.into_stream().unwrap().take().unwrap();
    let mut out = Vec::new();
    while let Some(x) = m.next().await {
        match x {
            Ok(b) => out.push(String::from_utf8(b.to_vec()).unwrap()),
            Err(e) => return (out, Some(e)),
        }
    }
    (out, None)
}

#[tokio::test]
async fn unary_message_passes_through_untouched() {
    let f = start(ServerConfig::default()).await;
    let reply = f
        .client
        .invoke(call(
            "echo",
            Args::Message(Bytes::from_static(b"\x08\x96\x01")),
        ))
        .await
        .unwrap();
    assert!(matches!(&reply, Reply::Message(m) if &m[..] == b"\x08\x96\x01"));
    // An explicit gRPC status reaches the caller.
    let err = f
        .client
        .invoke(call("echo", Args::Message(msg("missing"))))
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), grpc::NOT_FOUND);
    assert_eq!(err.message(), "no such thing");
    f.server.shutdown(Duration::ZERO).await;
}

#[tokio::test]
async fn each_streaming_kind() {
    let f = start(ServerConfig::default()).await;
    // Server streaming: one request in a stream of one.
    let reply = f
        .client
        .invoke(call("count", Args::Stream(MessageStream::once(msg("3")))))
        .await
        .unwrap();
    assert_eq!(
        collect(reply).await,
        (vec!["0".into(), "1".into(), "2".into()], None)
    );
    // Client streaming: the answer is a stream of one message.
    let input = MessageStream::iter(["1", "2", "39"].map(msg));
    let reply = f
        .client
        .invoke(call("sum", Args::Stream(input)))
        .await
        .unwrap();
    assert_eq!(reply.into_message().await.unwrap(), "42");
    // Bidirectional, interleaved: each answer arrives before the next request is sent.
    let (sink, input) = MessageStream::channel(1);
    let reply = f
        .client
        .invoke(call("chat", Args::Stream(input)))
        .await
        .unwrap();
    let mut answers = reply.into_stream().unwrap().take().unwrap();
    for word in ["a", "b", "c"] {
        sink.send(msg(word)).await.unwrap();
        let answer = answers.next().await.unwrap().unwrap();
        assert_eq!(answer, format!("re:{word}"));
    }
    sink.finish();
    assert!(
        answers.next().await.is_none(),
        "the stream ends with status OK"
    );
    // Zero messages either way.
    let reply = f
        .client
        .invoke(call("chat", Args::Stream(MessageStream::iter([]))))
        .await
        .unwrap();
    assert_eq!(collect(reply).await, (vec![], None));
    f.server.shutdown(Duration::ZERO).await;
}

#[tokio::test]
async fn a_failing_or_dropped_producer_is_an_error_status_after_the_messages_sent() {
    let f = start(ServerConfig::default()).await;
    let reply = f
        .client
        .invoke(call("fail", Args::Stream(MessageStream::once(msg("")))))
        .await
        .unwrap();
    let (got, err) = collect(reply).await;
    assert_eq!(got, vec!["one", "two"]);
    let err = err.expect("an error status in the trailers");
    assert_eq!(status_of(&err), grpc::UNKNOWN);
    assert_eq!(err.message(), "boom in the middle");

    let reply = f
        .client
        .invoke(call("crash", Args::Stream(MessageStream::once(msg("")))))
        .await
        .unwrap();
    let (got, err) = collect(reply).await;
    assert_eq!(got, vec!["first"]);
    let err = err.expect("a dropped producer is not a clean end");
    assert_eq!(status_of(&err), grpc::CANCELLED, "{err}");
    f.server.shutdown(Duration::ZERO).await;
}

#[tokio::test]
async fn the_client_dropping_the_answer_cancels_the_server_side() {
    let f = start(ServerConfig::default()).await;
    let reply = f
        .client
        .invoke(call("forever", Args::Stream(MessageStream::once(msg("")))))
        .await
        .unwrap();
    let mut answers = reply.into_stream().unwrap().take().unwrap();
    assert_eq!(answers.next().await.unwrap().unwrap(), "hello");
    assert_eq!(f.probe.cancelled.load(Ordering::SeqCst), 0);
    drop(answers);
    f.probe.wait_cancelled().await;
    f.server.shutdown(Duration::ZERO).await;
}

#[tokio::test]
async fn the_client_dropping_its_requests_midway_cancels_the_server_reader() {
    let f = start(ServerConfig::default()).await;
    let (sink, input) = MessageStream::channel(1);
    let call_task = {
        let client = f.client.clone();
        tokio::spawn(async move { client.invoke(call("drain", Args::Stream(input))).await })
    };
    sink.send(msg("1")).await.unwrap();
    // The caller's producer fails: the call is reset, the service's reader sees it.
    sink.fail(RpcError::Invalid("changed my mind".into())).await;
    f.probe.wait_cancelled().await;
    let reply = call_task.await.unwrap();
    if let Ok(reply) = reply {
        let (_, err) = collect(reply).await;
        assert!(err.is_some(), "a cancelled call does not end cleanly");
    }
    f.server.shutdown(Duration::ZERO).await;
}

#[tokio::test]
async fn a_stream_past_its_deadline_ends_with_deadline_exceeded_and_cancels_the_service() {
    let f = start(ServerConfig::default()).await;
    let mut inv = call("forever", Args::Stream(MessageStream::once(msg(""))));
    inv.timeout = Some(Duration::from_millis(300));
    let reply = f.client.invoke(inv).await.unwrap();
    let (got, err) = collect(reply).await;
    assert_eq!(got, vec!["hello"]);
    let err = err.expect("the deadline ends the stream");
    assert!(
        matches!(err, RpcError::Timeout(_)) || status_of(&err) == grpc::DEADLINE_EXCEEDED,
        "{err:?}"
    );
    f.probe.wait_cancelled().await;
    f.server.shutdown(Duration::ZERO).await;
}

/// Waits until `count` stops growing (the producer is held back), returning it.
async fn settled(count: &AtomicUsize) -> usize {
    let mut last = count.load(Ordering::SeqCst);
    let mut same = 0;
    for _ in 0..500 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = count.load(Ordering::SeqCst);
        if now == last {
            same += 1;
            if same == 10 {
                return now;
            }
        } else {
            same = 0;
            last = now;
        }
    }
    panic!("the producer never settled (at {last})");
}

#[tokio::test]
async fn a_slow_reader_holds_the_producer_back() {
    let f = start(ServerConfig::default()).await;
    let total = 2000; // 16 KiB each: 31 MiB if nothing held the producer back
    let reply = f
        .client
        .invoke(call(
            "flood",
            Args::Stream(MessageStream::once(msg(&total.to_string()))),
        ))
        .await
        .unwrap();
    let mut answers = reply.into_stream().unwrap().take().unwrap();
    assert_eq!(answers.next().await.unwrap().unwrap().len(), 16 * 1024);
    let held = settled(&f.probe.produced).await;
    // The client's window (1 MiB) and the server's send buffer (1 MiB) hold about 128
    // messages, the channel 2: the producer is stopped well before the end.
    assert!(held < 300, "producer ran ahead to {held} of {total}");
    let mut read = 1;
    while let Some(m) = answers.next().await {
        m.unwrap();
        read += 1;
    }
    assert_eq!(read, total);
    assert_eq!(f.probe.produced.load(Ordering::SeqCst), total);
    f.server.shutdown(Duration::ZERO).await;
}

#[tokio::test]
async fn streams_over_the_limit_wait_for_a_free_slot() {
    let config = ServerConfig {
        max_concurrent_streams: 2,
        ..ServerConfig::default()
    };
    let f = start(config).await;
    let mut open = Vec::new();
    for _ in 0..2 {
        let reply = f
            .client
            .invoke(call("forever", Args::Stream(MessageStream::once(msg("")))))
            .await
            .unwrap();
        let mut answers = reply.into_stream().unwrap().take().unwrap();
        assert_eq!(answers.next().await.unwrap().unwrap(), "hello");
        open.push(answers);
    }
    // A third stream does not get a slot while two are open: it waits, here past its
    // deadline.
    let mut third = call("count", Args::Stream(MessageStream::once(msg("1"))));
    third.timeout = Some(Duration::from_millis(300));
    let reply = f.client.invoke(third).await.unwrap();
    let (got, err) = collect(reply).await;
    assert!(got.is_empty());
    assert!(matches!(err, Some(RpcError::Timeout(_))), "{err:?}");
    // One closes: the next stream goes through.
    drop(open.pop());
    f.probe.wait_cancelled().await;
    let reply = f
        .client
        .invoke(call("count", Args::Stream(MessageStream::once(msg("2")))))
        .await
        .unwrap();
    assert_eq!(collect(reply).await.0, vec!["0", "1"]);
    f.server.shutdown(Duration::ZERO).await;
}

fn has_grpcio() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import grpc"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!(
            "{0}\n!! SKIPPED: python3 with grpcio is not installed (pip install grpcio)\n{0}",
            "!".repeat(78)
        );
    }
    ok
}

/// A stock gRPC client (grpcio, raw bytes in and out: no generated code) calling every
/// kind of method of the rdubbo server.
const GRPCIO_CLIENT: &str = r#"
import sys, json, queue, grpc
ch = grpc.insecure_channel(sys.argv[1])
P = '/test.stream.Streamer/'
out = {}
echo = ch.unary_unary(P + 'echo')
out['echo'] = echo(b'\x08\x96\x01', timeout=5).hex()
try:
    echo(b'missing', timeout=5)
except grpc.RpcError as e:
    out['missing'] = [e.code().name, e.details()]
count = ch.unary_stream(P + 'count')
out['count'] = [m.decode() for m in count(b'5', timeout=5)]
out['gzip'] = [m.decode() for m in count(b'3', timeout=5, compression=grpc.Compression.Gzip)]
out['sum'] = ch.stream_unary(P + 'sum')(iter([b'1', b'2', b'39']), timeout=5).decode()
q = queue.Queue()
def requests():
    while True:
        x = q.get()
        if x is None:
            return
        yield x
chat = ch.stream_stream(P + 'chat')(requests(), timeout=5)
got = []
for w in [b'a', b'b', b'c']:
    q.put(w)
    got.append(next(chat).decode())
q.put(None)
got += [m.decode() for m in chat]
out['chat'] = got
msgs = []
try:
    for m in ch.unary_stream(P + 'fail')(b'', timeout=5):
        msgs.append(m.decode())
except grpc.RpcError as e:
    out['fail'] = [msgs, e.code().name, e.details()]
forever = ch.unary_stream(P + 'forever')
msgs = []
try:
    for m in forever(b'', timeout=0.5):
        msgs.append(m.decode())
except grpc.RpcError as e:
    out['deadline'] = [msgs, e.code().name]
call = forever(b'', timeout=5)
out['cancel'] = next(call).decode()
call.cancel()
print(json.dumps(out))
"#;

#[tokio::test]
async fn grpcio_client_calls_every_kind() {
    if !has_grpcio() {
        return;
    }
    let f = start(ServerConfig::default()).await;
    let addr = f.server.local_addr().to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg("-c")
            .arg(GRPCIO_CLIENT)
            .arg(addr)
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
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["echo"], "089601");
    assert_eq!(
        v["missing"],
        serde_json::json!(["NOT_FOUND", "no such thing"])
    );
    assert_eq!(v["count"], serde_json::json!(["0", "1", "2", "3", "4"]));
    assert_eq!(v["gzip"], serde_json::json!(["0", "1", "2"]));
    assert_eq!(v["sum"], "42");
    assert_eq!(v["chat"], serde_json::json!(["re:a", "re:b", "re:c"]));
    assert_eq!(
        v["fail"],
        serde_json::json!([["one", "two"], "UNKNOWN", "boom in the middle"])
    );
    assert_eq!(
        v["deadline"],
        serde_json::json!([["hello"], "DEADLINE_EXCEEDED"])
    );
    assert_eq!(v["cancel"], "hello");
    // The deadline and the cancel each reached the service's producer.
    f.probe.wait_cancellations(2).await;
    f.server.shutdown(Duration::ZERO).await;
}

/// A grpcio server (generic handlers on raw bytes) with every kind of method; prints its
/// port, then "CANCELLED" when a call of `forever` is cancelled; stops when stdin closes.
const GRPCIO_SERVER: &str = r#"
import sys, threading, grpc
from concurrent import futures
def echo(req, ctx):
    if req == b'missing':
        ctx.abort(grpc.StatusCode.NOT_FOUND, 'nope')
    return req
def count(req, ctx):
    for i in range(int(req)):
        yield str(i).encode()
def fail(req, ctx):
    yield b'one'
    ctx.abort(grpc.StatusCode.PERMISSION_DENIED, 'after one')
def total(reqs, ctx):
    return str(sum(int(r) for r in reqs)).encode()
def chat(reqs, ctx):
    for r in reqs:
        yield b're:' + r
def forever(req, ctx):
    done = threading.Event()
    ctx.add_callback(done.set)
    def watch():
        # (Here, not after the yield: a cancelled call's generator is not resumed.)
        done.wait(20)
        print('CANCELLED' if not ctx.is_active() else 'ACTIVE', flush=True)
    threading.Thread(target=watch, daemon=True).start()
    yield b'hello'
    done.wait(20)
h = grpc.method_handlers_generic_handler('test.py.Streamer', {
    'echo': grpc.unary_unary_rpc_method_handler(echo),
    'count': grpc.unary_stream_rpc_method_handler(count),
    'fail': grpc.unary_stream_rpc_method_handler(fail),
    'sum': grpc.stream_unary_rpc_method_handler(total),
    'chat': grpc.stream_stream_rpc_method_handler(chat),
    'forever': grpc.unary_stream_rpc_method_handler(forever),
})
server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
server.add_generic_rpc_handlers((h,))
port = server.add_insecure_port('127.0.0.1:0')
server.start()
print(port, flush=True)
sys.stdin.read()
server.stop(0)
"#;

/// The next line the grpcio server printed.
async fn next_line(lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(20), lines.recv())
        .await
        .expect("a line from the grpcio server")
        .expect("the grpcio server is running")
}

/// The grpcio server process, killed when dropped.
struct PyServer(std::process::Child);

impl Drop for PyServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_client_calls_every_kind_of_a_grpcio_server() {
    if !has_grpcio() {
        return;
    }
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(GRPCIO_SERVER)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _server = PyServer(child);
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let port = next_line(&mut lines).await;
    let url: Url = format!(
        "tri://127.0.0.1:{}/test.py.Streamer?timeout=5000",
        port.trim()
    )
    .parse()
    .unwrap();
    let client = TripleClient::new(&url).unwrap();
    let py = |method: &str, args: Args| {
        let mut inv = Invocation::new("test.py.Streamer", method, Vec::new());
        inv.args = args;
        inv
    };
    let reply = client
        .invoke(py("echo", Args::Message(msg("ping"))))
        .await
        .unwrap();
    assert_eq!(reply.into_message().await.unwrap(), "ping");
    let err = client
        .invoke(py("echo", Args::Message(msg("missing"))))
        .await
        .unwrap_err();
    assert_eq!(
        (status_of(&err), err.message()),
        (grpc::NOT_FOUND, "nope".into())
    );
    let reply = client
        .invoke(py("count", Args::Stream(MessageStream::once(msg("4")))))
        .await
        .unwrap();
    assert_eq!(
        collect(reply).await,
        (vec!["0".into(), "1".into(), "2".into(), "3".into()], None)
    );
    let input = MessageStream::iter(["1", "2", "39"].map(msg));
    let reply = client.invoke(py("sum", Args::Stream(input))).await.unwrap();
    assert_eq!(reply.into_message().await.unwrap(), "42");
    let (sink, input) = MessageStream::channel(1);
    let reply = client
        .invoke(py("chat", Args::Stream(input)))
        .await
        .unwrap();
    let mut answers = reply.into_stream().unwrap().take().unwrap();
    for word in ["a", "b", "c"] {
        sink.send(msg(word)).await.unwrap();
        assert_eq!(answers.next().await.unwrap().unwrap(), format!("re:{word}"));
    }
    sink.finish();
    assert!(answers.next().await.is_none());
    let reply = client
        .invoke(py("fail", Args::Stream(MessageStream::once(msg("")))))
        .await
        .unwrap();
    let (got, err) = collect(reply).await;
    assert_eq!(got, vec!["one"]);
    let err = err.unwrap();
    assert_eq!(
        (status_of(&err), err.message()),
        (grpc::PERMISSION_DENIED, "after one".into())
    );
    // Dropping the answer cancels the call on the grpcio side.
    let reply = client
        .invoke(py("forever", Args::Stream(MessageStream::once(msg("")))))
        .await
        .unwrap();
    let mut answers = reply.into_stream().unwrap().take().unwrap();
    assert_eq!(answers.next().await.unwrap().unwrap(), "hello");
    drop(answers);
    assert_eq!(next_line(&mut lines).await, "CANCELLED");
}

/// An interface service (no IDL) with Java's `StreamObserver` methods: each message is
/// one Hessian2 value, wrapped per message as Java 3.3 wraps it.
struct Greeter;

const GREETER: &str = "test.stream.Greeter";

fn greeter_info() -> ServiceInfo {
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

fn hessian(s: &str) -> Bytes {
    Bytes::from(rdubbo_hessian::to_bytes(&s.to_string()).unwrap())
}

fn text(b: &[u8]) -> String {
    rdubbo_hessian::from_slice(b).unwrap()
}

impl Invoker for Greeter {
    fn invoke(&self, inv: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        Box::pin(async move {
            match &*inv.method {
                // void greetStream(String name, StreamObserver<String> answers)
                "greetStream" => {
                    let name: String = inv.args.decoder().read().map_err(RpcError::Codec)?;
                    Ok(Reply::Stream(MessageStream::iter(
                        ["hello", "bonjour"].map(|g| hessian(&format!("{g} {name}"))),
                    )))
                }
                // StreamObserver<String> chat(StreamObserver<String> answers)
                "chat" => {
                    let mut input = inv.args.into_stream()?.take()?;
                    let (sink, out) = MessageStream::channel(4);
                    tokio::spawn(async move {
                        while let Some(Ok(m)) = input.next().await {
                            let up = text(&m).to_uppercase();
                            if sink.send(hessian(&up)).await.is_err() {
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

#[tokio::test]
async fn interface_streams_carry_one_wrapped_hessian_value_per_message() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = TripleServer::builder()
        .export(greeter_info(), Arc::new(Greeter))
        .serve(listener)
        .unwrap();
    let url: Url = format!("tri://{}/{GREETER}", server.local_addr())
        .parse()
        .unwrap();
    let client = TripleClient::new(&url).unwrap();
    let string = std::borrow::Cow::Borrowed("Ljava/lang/String;");
    let mut inv = Invocation::new(GREETER, "greetStream", Vec::new());
    inv.args = Args::Stream(MessageStream::once(hessian("ann")));
    inv.parameter_types = vec![string.clone()].into();
    let reply = client.invoke(inv).await.unwrap();
    let mut answers = reply.into_stream().unwrap().take().unwrap();
    let mut got = Vec::new();
    while let Some(m) = answers.next().await {
        got.push(text(&m.unwrap()));
    }
    assert_eq!(got, vec!["hello ann", "bonjour ann"]);

    let mut inv = Invocation::new(GREETER, "chat", Vec::new());
    inv.args = Args::Stream(MessageStream::iter(["a", "b"].map(hessian)));
    inv.parameter_types = vec![string].into();
    let reply = client.invoke(inv).await.unwrap();
    let mut answers = reply.into_stream().unwrap().take().unwrap();
    let mut got = Vec::new();
    while let Some(m) = answers.next().await {
        got.push(text(&m.unwrap()));
    }
    assert_eq!(got, vec!["A", "B"]);
    server.shutdown(Duration::ZERO).await;
}

#[tokio::test]
async fn large_stream_messages_share_the_server_budget() {
    // Room for one 40 KiB message at a time past the HTTP/2 window: sixteen streams sending
    // one each are read one after the other, and every one is served.
    let f = start(ServerConfig {
        max_message_size: 48 * 1024,
        max_buffered_bytes: 64 * 1024,
        ..ServerConfig::default()
    })
    .await;
    let calls: Vec<_> = (0..16)
        .map(|_| {
            let client = f.client.clone();
            tokio::spawn(async move {
                let input = MessageStream::once(Bytes::from(vec![1u8; 40 * 1024]));
                let reply = client.invoke(call("size", Args::Stream(input))).await?;
                reply.into_message().await
            })
        })
        .collect();
    for c in calls {
        assert_eq!(c.await.unwrap().unwrap(), (40 * 1024).to_string());
    }
    // Over the message limit: refused with RESOURCE_EXHAUSTED.
    let input = MessageStream::once(Bytes::from(vec![1u8; 49 * 1024]));
    let reply = f
        .client
        .invoke(call("size", Args::Stream(input)))
        .await
        .unwrap();
    let err = reply.into_message().await.unwrap_err();
    assert_eq!(status_of(&err), grpc::RESOURCE_EXHAUSTED, "{err:?}");
    f.server.shutdown(Duration::ZERO).await;
}

#[tokio::test]
async fn the_json_mode_refuses_idl_and_streaming_methods_clearly() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let f = start(ServerConfig::default()).await;
    let mut s = tokio::net::TcpStream::connect(f.server.local_addr())
        .await
        .unwrap();
    let req = format!(
        "POST /{SERVICE}/count HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n[]"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 415"), "{answer}");
    assert!(answer.contains("call it over gRPC"), "{answer}");
    f.server.shutdown(Duration::ZERO).await;
}
