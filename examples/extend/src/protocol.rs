//! A wire protocol of our own: `jsonl://`, one JSON object per line over TCP.
//!
//! Request: `{"service":"org.example.Greeter","method":"sayHello","args":["Ann"]}`;
//! answer: `{"result":"Hello Ann"}` or `{"error":"…"}`. The client opens a connection per
//! call (simple, not fast); the server answers the lines of a connection in order, bounds
//! a line at 64 KiB, and on shutdown stops accepting, lets calls in flight finish within
//! the drain time, then closes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdubbo::{
    Args, BoxFuture, Export, Invocation, Invoker, Protocol, Reply, RpcError, RpcResult,
    ServeResult, Server, SetupError, Url,
};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const MAX_LINE: u64 = 64 * 1024;

/// The `jsonl` protocol.
pub struct JsonLines;

impl Protocol for JsonLines {
    fn name(&self) -> &'static str {
        "jsonl"
    }

    fn refer(&self, url: &Url) -> RpcResult<Arc<dyn Invoker>> {
        Ok(Arc::new(Client {
            addr: url.address(),
        }))
    }

    fn serve(&self, listen: SocketAddr, exports: Vec<Export>) -> BoxFuture<'static, ServeResult> {
        Box::pin(async move {
            let listener = TcpListener::bind(listen)
                .await
                .map_err(|e| SetupError::io(format!("bind {listen}"), e))?;
            let local = listener
                .local_addr()
                .map_err(|e| SetupError::io("local address", e))?;
            let services: Arc<HashMap<String, Arc<dyn Invoker>>> = Arc::new(
                exports
                    .into_iter()
                    .map(|e| (e.info.interface, e.invoker))
                    .collect(),
            );
            let (stop, stopped) = watch::channel(false);
            let connections = Arc::new(AtomicUsize::new(0));
            let accept = tokio::spawn(accept_loop(
                listener,
                services,
                stopped,
                connections.clone(),
            ));
            Ok(Box::new(JsonLinesServer {
                local,
                stop,
                accept,
                connections,
            }) as Box<dyn Server>)
        })
    }
}

struct Client {
    addr: String,
}

impl Invoker for Client {
    fn invoke(&self, invocation: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        let addr = self.addr.clone();
        Box::pin(async move {
            let mut args = Vec::new();
            invocation
                .args
                .write_json(&mut args)
                .map_err(RpcError::Codec)?;
            let args: Value = serde_json::from_slice(&args)?;
            let request = json!({
                "service": &*invocation.interface,
                "method": &*invocation.method,
                "args": args,
            });
            let mut stream = TcpStream::connect(&addr)
                .await
                .map_err(|e| RpcError::Connect {
                    addr: addr.clone(),
                    reason: e.to_string(),
                })?;
            let transport = |e: std::io::Error| RpcError::Transport {
                addr: addr.clone(),
                reason: e.to_string(),
            };
            let mut line = serde_json::to_vec(&request)?;
            line.push(b'\n');
            stream.write_all(&line).await.map_err(transport)?;
            let mut answer = String::new();
            BufReader::new(stream.take(MAX_LINE))
                .read_line(&mut answer)
                .await
                .map_err(transport)?;
            let answer: Value = serde_json::from_str(&answer)?;
            match (answer.get("result"), answer.get("error")) {
                (_, Some(Value::String(e))) => Err(RpcError::service(e.clone())),
                (Some(result), _) => Ok(Reply::Json(result.clone())),
                _ => Err(RpcError::Codec(format!("not an answer: {answer}"))),
            }
        })
    }
}

struct JsonLinesServer {
    local: SocketAddr,
    stop: watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
    connections: Arc<AtomicUsize>,
}

impl Server for JsonLinesServer {
    fn local_addr(&self) -> SocketAddr {
        self.local
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    fn shutdown(self: Box<Self>, drain: Duration) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            self.accept.abort();
            let _ = self.stop.send(true);
            // Connections finish the line they are answering, then close.
            let _ = tokio::time::timeout(drain, async {
                while self.connections.load(Ordering::Relaxed) > 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await;
        })
    }
}

async fn accept_loop(
    listener: TcpListener,
    services: Arc<HashMap<String, Arc<dyn Invoker>>>,
    stopped: watch::Receiver<bool>,
    connections: Arc<AtomicUsize>,
) {
    while let Ok((stream, _)) = listener.accept().await {
        connections.fetch_add(1, Ordering::Relaxed);
        let (services, stopped, connections) =
            (services.clone(), stopped.clone(), connections.clone());
        tokio::spawn(async move {
            serve_connection(stream, &services, stopped).await;
            connections.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

async fn serve_connection(
    stream: TcpStream,
    services: &HashMap<String, Arc<dyn Invoker>>,
    mut stopped: watch::Receiver<bool>,
) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read.take(u64::MAX));
    loop {
        let mut line = String::new();
        lines.get_mut().set_limit(MAX_LINE);
        let read = tokio::select! {
            read = lines.read_line(&mut line) => read,
            _ = stopped.wait_for(|s| *s) => return,
        };
        match read {
            Ok(0) | Err(_) => return,
            Ok(_) if !line.ends_with('\n') => {
                let _ = write.write_all(b"{\"error\":\"line too long\"}\n").await;
                return;
            }
            Ok(_) => {}
        }
        let mut answer = serde_json::to_vec(&answer(services, &line).await).unwrap_or_default();
        answer.push(b'\n');
        if write.write_all(&answer).await.is_err() {
            return;
        }
    }
}

async fn answer(services: &HashMap<String, Arc<dyn Invoker>>, line: &str) -> Value {
    let request: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => return json!({ "error": format!("bad request: {e}") }),
    };
    let (Some(service), Some(method)) = (
        request.get("service").and_then(Value::as_str),
        request.get("method").and_then(Value::as_str),
    ) else {
        return json!({ "error": "a request names its service and method" });
    };
    let Some(invoker) = services.get(service) else {
        return json!({ "error": format!("no service {service}") });
    };
    let args = match request.get("args") {
        Some(Value::Array(args)) => args.clone(),
        _ => Vec::new(),
    };
    let invocation = Invocation::new(service, method, Args::Json(args));
    match invoker.invoke(invocation).await {
        Ok(reply) => match reply.to_json() {
            Ok(result) => json!({ "result": result }),
            Err(e) => json!({ "error": e }),
        },
        Err(e) => json!({ "error": e.message() }),
    }
}
