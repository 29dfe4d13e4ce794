//! What `#[rdubbo::service]` generates, exercised in-process: the generated server is an
//! `Invoker`, so the generated client can call it directly.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdubbo::error::codes;
use rdubbo::generic::{GenericClient, GenericService};
use rdubbo::{BoxFuture, Invocation, Invoker, Reply, RpcError, RpcResult, ServiceInfo, Value};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, rdubbo::JavaType)]
#[serde(rename = "com.example.User")]
pub struct User {
    pub name: String,
    pub age: u32,
    pub tags: Vec<String>,
}

#[rdubbo::service(
    interface = "com.example.UserService",
    version = "2.0.0",
    group = "blue"
)]
pub trait UserService {
    /// No arguments.
    async fn ping(&self) -> RpcResult<String>;
    /// One struct argument.
    async fn greet(&self, user: User) -> RpcResult<String>;
    /// Three arguments of different kinds.
    async fn make_user(&self, name: String, age: u32, tags: Option<Vec<String>>)
        -> RpcResult<User>;
    /// A map in, a number out.
    async fn count(&self, scores: HashMap<String, i64>) -> RpcResult<i64>;
    /// A renamed method.
    #[rdubbo(name = "Echo")]
    async fn echo_value(&self, v: Value) -> RpcResult<Value>;
    /// Always fails with a service error.
    async fn fail(&self, why: String) -> RpcResult<()>;
}

struct Impl;

impl UserService for Impl {
    async fn ping(&self) -> RpcResult<String> {
        Ok("pong".into())
    }
    async fn greet(&self, user: User) -> RpcResult<String> {
        Ok(format!("hi {} ({})", user.name, user.age))
    }
    async fn make_user(
        &self,
        name: String,
        age: u32,
        tags: Option<Vec<String>>,
    ) -> RpcResult<User> {
        Ok(User {
            name,
            age,
            tags: tags.unwrap_or_default(),
        })
    }
    async fn count(&self, scores: HashMap<String, i64>) -> RpcResult<i64> {
        Ok(scores.values().sum())
    }
    async fn echo_value(&self, v: Value) -> RpcResult<Value> {
        Ok(v)
    }
    async fn fail(&self, why: String) -> RpcResult<()> {
        Err(RpcError::service(format!("refused: {why}")))
    }
}

fn client() -> UserServiceClient {
    UserServiceClient::new(Arc::new(UserServiceServer::new(Impl)))
}

fn server() -> Arc<dyn Invoker> {
    Arc::new(UserServiceServer::new(Impl))
}

/// A call with JSON arguments, as JSON-RPC hands them over.
fn raw(method: &str, args: Vec<serde_json::Value>) -> Invocation {
    Invocation::new("com.example.UserService", method, rdubbo::Args::Json(args))
}

fn v(j: serde_json::Value) -> Value {
    rdubbo::json::to_value(&j)
}

#[tokio::test]
async fn typed_calls_with_zero_one_and_many_arguments() {
    let c = client();
    assert_eq!(c.ping().await.unwrap(), "pong");
    let ann = User {
        name: "Ann".into(),
        age: 41,
        tags: vec!["x".into()],
    };
    assert_eq!(c.greet(ann.clone()).await.unwrap(), "hi Ann (41)");
    assert_eq!(
        c.make_user("Ann".into(), 41, Some(vec!["x".into()]))
            .await
            .unwrap(),
        ann
    );
    assert_eq!(
        c.make_user("Bo".into(), 3, None).await.unwrap().tags,
        Vec::<String>::new()
    );
    let scores = HashMap::from([("a".to_string(), 5), ("b".to_string(), -2)]);
    assert_eq!(c.count(scores).await.unwrap(), 3);
    assert_eq!(
        c.echo_value(v(json!([1, {"k": null}]))).await.unwrap(),
        v(json!([1, {"k": null}]))
    );
}

#[tokio::test]
async fn wire_names_and_service_info() {
    let info = UserServiceServer::<Impl>::info();
    assert_eq!(
        info,
        ServiceInfo {
            interface: "com.example.UserService".into(),
            version: Some("2.0.0".into()),
            group: Some("blue".into()),
            methods: ["ping", "greet", "makeUser", "count", "Echo", "fail"]
                .map(String::from)
                .to_vec(),
            ..Default::default()
        }
    );
    assert_eq!(UserServiceClient::INTERFACE, "com.example.UserService");
    assert_eq!(UserServiceClient::VERSION, Some("2.0.0"));
    assert_eq!(UserServiceClient::GROUP, Some("blue"));
    // The dispatcher answers the wire names, not the Rust names.
    let s = server();
    let made = s
        .invoke(raw("makeUser", vec![json!("Cy"), json!(7), json!(null)]))
        .await
        .unwrap();
    assert_eq!(made, json!({"name": "Cy", "age": 7, "tags": []}));
    let e = s.invoke(raw("make_user", vec![])).await.unwrap_err();
    assert_eq!(e.code(), codes::METHOD_NOT_FOUND);
    assert!(
        e.to_string().contains("make_user") && e.to_string().contains("com.example.UserService"),
        "{e}"
    );
    assert_eq!(
        s.invoke(raw("Echo", vec![json!(1)])).await.unwrap(),
        json!(1)
    );
}

#[tokio::test]
async fn bad_arguments_are_invalid_params_with_a_useful_message() {
    let s = server();
    let e = s.invoke(raw("greet", vec![])).await.unwrap_err();
    assert_eq!(e.code(), codes::INVALID_PARAMS);
    assert!(e.message().contains("takes 1 argument(s), got 0"), "{e}");
    let e = s
        .invoke(raw("greet", vec![json!({"name": 5})]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), codes::INVALID_PARAMS);
    assert!(
        e.message()
            .contains("argument 0 (user) of com.example.UserService.greet"),
        "{e}"
    );
    let e = s
        .invoke(raw("makeUser", vec![json!("a"), json!(-1), json!(null)]))
        .await
        .unwrap_err();
    assert!(e.message().contains("argument 1 (age)"), "{e}");
}

#[tokio::test]
async fn user_errors_travel_with_code_and_message() {
    let e = client().fail("no".into()).await.unwrap_err();
    assert_eq!(e, RpcError::service("refused: no"));
}

/// An invoker that records what it was asked, to see what the stub puts in an invocation.
struct Recorder(std::sync::Mutex<Vec<Invocation>>);

impl Invoker for Recorder {
    fn invoke(&self, inv: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        self.0.lock().unwrap().push(inv);
        Box::pin(async { Ok(Reply::Json(json!("recorded"))) })
    }
}

#[tokio::test]
async fn the_stub_fills_identity_and_timeout() {
    let rec = Arc::new(Recorder(Default::default()));
    let c = UserServiceClient::new(rec.clone())
        .with_timeout(Duration::from_millis(250))
        .with_version(Some("3.0"))
        .with_group(None);
    assert_eq!(c.ping().await.unwrap(), "recorded");
    // A result of the wrong type is a codec error on the consumer.
    let e = c.count(HashMap::new()).await.unwrap_err();
    assert!(matches!(e, RpcError::Codec(_)), "{e}");
    let calls = rec.0.lock().unwrap();
    assert_eq!(&*calls[0].interface, "com.example.UserService");
    assert_eq!(&*calls[0].method, "ping");
    assert_eq!(calls[0].version.as_deref(), Some("3.0"));
    assert_eq!(calls[0].group, None);
    assert_eq!(calls[0].timeout, Some(Duration::from_millis(250)));
    assert_eq!(calls[1].args.to_values().unwrap(), vec![Value::map(vec![])]);
    // The stub names the Java types of the parameters, as Java Dubbo needs them.
    assert_eq!(&*calls[1].parameter_types, ["Ljava/util/Map;"]);
}

#[tokio::test]
async fn generic_client_and_generic_service_meet_generated_code() {
    // Generic client → generated server.
    let g = GenericClient::new(server(), "com.example.UserService");
    assert_eq!(g.call("ping", vec![]).await.unwrap(), Value::from("pong"));
    assert_eq!(
        g.call(
            "greet",
            vec![v(json!({"name": "Di", "age": 9, "tags": []}))]
        )
        .await
        .unwrap(),
        Value::from("hi Di (9)")
    );
    // Generated client → generic service.
    let info = UserServiceServer::<Impl>::info();
    let svc = GenericService::new(info, |inv: Invocation| async move {
        match &*inv.method {
            "ping" => Ok(Value::from(format!(
                "generic {}",
                inv.version.as_deref().unwrap_or("-")
            ))),
            _ => Err(RpcError::service("unsupported")),
        }
    });
    let c = UserServiceClient::new(Arc::new(svc));
    assert_eq!(c.ping().await.unwrap(), "generic 2.0.0");
    assert_eq!(
        c.fail("x".into()).await.unwrap_err(),
        RpcError::service("unsupported")
    );
    // Names outside the service's method list never reach the handler.
    let e = GenericClient::new(
        Arc::new(GenericService::new(
            UserServiceServer::<Impl>::info(),
            |_inv: Invocation| async { Ok(Value::Null) },
        )),
        "com.example.UserService",
    )
    .call("other", vec![])
    .await
    .unwrap_err();
    assert_eq!(e.code(), codes::METHOD_NOT_FOUND);
}

/// Java types: derived from the Rust types, overridden per parameter, overloads by
/// descriptor.
#[rdubbo::service(interface = "com.example.Typed")]
pub trait Typed {
    /// `void put(long id, Long boxed, String name, List tags, byte[] data, User u)`
    async fn put(
        &self,
        id: i64,
        boxed: Option<i64>,
        name: String,
        tags: Vec<String>,
        data: rdubbo::hessian::Bytes,
        u: User,
    ) -> RpcResult<()>;
    /// `find(java.util.Date since, int[] ids)`: Java types named per parameter.
    async fn find(
        &self,
        #[rdubbo(java = "java.util.Date")] since: i64,
        #[rdubbo(java = "int[]")] ids: Vec<i32>,
    ) -> RpcResult<String>;
    /// `inc(int)` and `inc(long)`: one wire name, told apart by descriptor.
    async fn inc(&self, x: i32) -> RpcResult<String>;
    /// The `long` overload.
    #[rdubbo(name = "inc")]
    async fn inc_long(&self, x: i64) -> RpcResult<String>;
}

struct TypedImpl;
impl Typed for TypedImpl {
    async fn put(
        &self,
        _: i64,
        _: Option<i64>,
        _: String,
        _: Vec<String>,
        _: rdubbo::hessian::Bytes,
        _: User,
    ) -> RpcResult<()> {
        Ok(())
    }
    async fn find(&self, since: i64, ids: Vec<i32>) -> RpcResult<String> {
        Ok(format!("{since} {ids:?}"))
    }
    async fn inc(&self, x: i32) -> RpcResult<String> {
        Ok(format!("int {x}"))
    }
    async fn inc_long(&self, x: i64) -> RpcResult<String> {
        Ok(format!("long {x}"))
    }
}

#[tokio::test]
async fn stubs_name_java_types_and_dispatchers_pick_overloads() {
    let rec = Arc::new(Recorder(Default::default()));
    let c = TypedClient::new(rec.clone());
    let user = User {
        name: "a".into(),
        age: 1,
        tags: vec![],
    };
    let _ = c
        .put(
            1,
            None,
            "n".into(),
            vec![],
            rdubbo::hessian::Bytes(vec![1]),
            user,
        )
        .await;
    let _ = c.find(5, vec![1]).await;
    {
        let calls = rec.0.lock().unwrap();
        assert_eq!(
            &*calls[0].parameter_types,
            [
                "J",
                "Ljava/lang/Long;",
                "Ljava/lang/String;",
                "Ljava/util/List;",
                "[B",
                "Lcom/example/User;"
            ]
        );
        assert_eq!(&*calls[1].parameter_types, ["Ljava/util/Date;", "[I"]);
    }

    // In-process the stub names the overload it means.
    let c = TypedClient::new(Arc::new(TypedServer::new(TypedImpl)));
    assert_eq!(c.inc(1).await.unwrap(), "int 1");
    assert_eq!(c.inc_long(1).await.unwrap(), "long 1");
    assert_eq!(
        TypedServer::<TypedImpl>::info().methods,
        ["put", "find", "inc"]
    );
    // A caller without descriptors (JSON-RPC) gets the first overload of that arity; one
    // naming descriptors nobody has gets "method not found".
    let s = TypedServer::new(TypedImpl);
    let inv = |types: &[&str]| {
        Invocation::new("com.example.Typed", "inc", vec![Value::Int(3)])
            .with_parameter_types(types.iter().map(|t| t.to_string()).collect())
    };
    assert_eq!(s.invoke(inv(&[])).await.unwrap(), "int 3");
    assert_eq!(s.invoke(inv(&["J"])).await.unwrap(), "long 3");
    let e = s.invoke(inv(&["D"])).await.unwrap_err();
    assert_eq!(e.code(), codes::METHOD_NOT_FOUND, "{e}");
}
