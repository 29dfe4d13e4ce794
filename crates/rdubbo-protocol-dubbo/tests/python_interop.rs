//! Interop with a Dubbo client nobody here wrote: the PyPI package `python3-dubbo` (Dubbo
//! protocol + its own Hessian2 encoder), installed by this test into the target dir, calls
//! an rdubbo provider; and rdubbo decodes the exact request bytes it sends.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rdubbo_core::error::codes;
use rdubbo_core::{BoxFuture, Invocation, Invoker, Reply, RpcError, RpcResult, ServiceInfo};
use rdubbo_hessian::{Encoder, Value as HValue};
use rdubbo_protocol_dubbo::codec::{self, Header, HEADER_LEN};
use rdubbo_protocol_dubbo::DubboServer;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

const PACKAGE: &str = "python3-dubbo==0.0.8";

/// Installs the client package (once) and returns the directory to put on PYTHONPATH.
fn install_client() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("python3-dubbo");
    rdubbo_testkit::pip_install(&dir, PACKAGE, "dubbo/client.py")
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/client.py")
}

struct Interop;

impl Invoker for Interop {
    fn invoke(&self, inv: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        Box::pin(async move {
            let arg =
                |i: usize| rdubbo_core::json::from_value(&inv.args.value(i).unwrap_or_default());
            match &*inv.method {
                "echo" => Ok(arg(0)),
                "sum" => Ok(json!(arg(0)
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_i64).sum::<i64>())
                    .unwrap_or(0))),
                "userMap" => Ok(json!({"name": arg(0), "roles": ["a", "b"], "level": 3})),
                "makeUser" => {
                    Ok(json!({"class": "com.example.User", "name": arg(0), "age": arg(1)}))
                }
                "fail" => Err(RpcError::Remote {
                    code: codes::SERVICE_ERROR,
                    message: format!("failed on purpose: {}", arg(0).as_str().unwrap_or("")),
                    data: Some(json!({"exception": "java.lang.IllegalStateException"})),
                }),
                other => Err(RpcError::remote(
                    codes::METHOD_NOT_FOUND,
                    format!("no method {other}"),
                )),
            }
            .map(Reply::Json)
        })
    }
}

fn run_client(pythonpath: &Path, host: &str) -> Vec<Value> {
    let out = Command::new("python3")
        .arg(script())
        .arg(host)
        .env("PYTHONPATH", pythonpath)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_dubbo_client_calls_an_rdubbo_provider() {
    let pythonpath = tokio::task::spawn_blocking(install_client).await.unwrap();
    let server = DubboServer::builder()
        .export(
            ServiceInfo {
                interface: "com.example.InteropService".into(),
                version: Some("1.0.0".into()),
                group: None,
                methods: vec![],
                ..Default::default()
            },
            Arc::new(Interop),
        )
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let host = server.local_addr().to_string();
    let lines = tokio::task::spawn_blocking(move || run_client(&pythonpath, &host))
        .await
        .unwrap();
    let by_case = |name: &str| -> Value {
        lines
            .iter()
            .find(|l| l["case"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no line for {name}: {lines:?}"))
    };
    let ok = |name: &str| -> Value {
        let l = by_case(name);
        assert!(l.get("err").is_none(), "{name}: {l}");
        l["ok"].clone()
    };
    assert_eq!(ok("string"), json!("h\u{e9}llo \u{4e2d}\u{6587}"));
    assert_eq!(ok("int"), json!(-7));
    assert_eq!(ok("long"), json!(5000000000i64));
    assert_eq!(ok("double"), json!(2.5));
    assert_eq!(ok("bool"), json!(true));
    assert_eq!(ok("int list"), json!([1, 2, 300000]));
    assert_eq!(ok("string list"), json!(["x", "y"]));
    assert_eq!(
        ok("object"),
        json!({"name": "ann", "age": 42, "tags": ["admin", "ops"]})
    );
    assert_eq!(ok("sum"), json!(10));
    assert_eq!(
        ok("user map"),
        json!({"name": "ann", "roles": ["a", "b"], "level": 3})
    );
    assert_eq!(ok("make user"), json!({"name": "bob", "age": 7}));
    let fail = by_case("fail");
    let err = fail["err"].as_str().unwrap_or_default();
    assert!(
        err.contains("failed on purpose: boom"),
        "the exception message reaches the client: {fail}"
    );
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdubbo_decodes_the_python_request_byte_for_byte() {
    let pythonpath = tokio::task::spawn_blocking(install_client).await.unwrap();
    // A bare listener records the first request frame; the client then times out or
    // fails, which is fine: only its bytes matter here.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let capture = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut head = [0u8; HEADER_LEN];
        s.read_exact(&mut head).await.unwrap();
        let header = Header::parse(&head).unwrap();
        let mut body = vec![0u8; header.len];
        s.read_exact(&mut body).await.unwrap();
        (header, body)
    });
    let client = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg("-c")
            .arg(
                "import sys\nfrom dubbo.client import DubboClient\n\
                 c = DubboClient('com.example.InteropService', host=sys.argv[1], version='1.0.0')\n\
                 try:\n    c.call('sum', [[1, 2, 3]], timeout=2)\nexcept Exception:\n    pass\n",
            )
            .arg(host)
            .env("PYTHONPATH", pythonpath)
            .output()
            .expect("python3")
    });
    let (header, body) = tokio::time::timeout(Duration::from_secs(30), capture)
        .await
        .expect("the client sent a request")
        .unwrap();
    let _ = client.await;
    assert!(header.is_request() && header.is_two_way() && !header.is_event());
    assert_eq!(header.serialization(), codec::HESSIAN2);
    let bytes = bytes::Bytes::from(body.clone());
    let req = codec::decode_request_body(&bytes).unwrap();
    assert_eq!(req.dubbo_version, "2.4.10");
    assert_eq!(req.path, "com.example.InteropService");
    assert_eq!(req.version.as_deref(), Some("1.0.0"));
    assert_eq!(req.method, "sum");
    assert_eq!(req.parameter_types, vec!["[I"]);
    let args = req.args.to_values().unwrap();
    assert_eq!(rdubbo_core::json::from_value(&args[0]), json!([1, 2, 3]));
    assert_eq!(req.attachment("path"), Some("com.example.InteropService"));
    assert_eq!(req.attachment("version"), Some("1.0.0"));
    // Every byte is accounted for: writing the decoded fields back gives the same body.
    let mut e = Encoder::new();
    e.write_str(&req.dubbo_version);
    e.write_str(&req.path);
    e.write_str(req.version.as_deref().unwrap_or(""));
    e.write_str(&req.method);
    e.write_str(&req.parameter_types.concat());
    for a in &args {
        e.write_value(a);
    }
    e.write_value(&HValue::map(
        req.attachments
            .iter()
            .map(|(k, v)| (HValue::from(k.as_str()), HValue::from(v.as_str())))
            .collect(),
    ));
    assert_eq!(
        e.as_bytes(),
        body.as_slice(),
        "re-encoded request differs from the client's bytes"
    );
}
