//! rdubbo and real Apache Dubbo (Java 2.7.23 and 3.3.1) calling each other with the types
//! a Java developer uses: POJOs (nested), lists, maps, enums, `Date`, `BigDecimal`,
//! `Long`/`long` overloads, exceptions and attachments both ways, directly and through
//! ZooKeeper; and every Java type of the value model sent Java → rdubbo → Java.
//!
//! The Java programs are in `tests/java` (built by `rdubbo_testkit::java`); a Java Dubbo
//! version whose jars, Debian classpath or JDK are missing is skipped LOUDLY
//! (`RDUBBO_REQUIRE_JAVA=1` fails instead).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdubbo::consumer::Reference;
use rdubbo::dubbo::{DubboClient, DubboServer};
use rdubbo::hessian::{BigDecimal, Date, List, Map};
use rdubbo::provider::Provider;
use rdubbo::{Attachments, Url, Value};
use rdubbo_testkit::java::{interop_sources, ConsumerOutput, DubboVersion, JavaDubbo};
use rdubbo_testkit::{free_port, ZkServer};

#[path = "../examples/java_interop/user_service.rs"]
#[allow(dead_code)]
mod user_service;
use user_service::{
    plain, sample, Address, Level, RustUsers, UserServiceClient, UserServiceServer, USER_NOT_FOUND,
};

const CONSUMER_TIMEOUT: Duration = Duration::from_secs(120);

fn show(title: &str, out: &ConsumerOutput) {
    println!("===== {title} (log {})\n{}", out.log.display(), out.stdout);
}

async fn rdubbo_provider() -> DubboServer {
    DubboServer::builder()
        .export(
            UserServiceServer::<RustUsers>::info(),
            Arc::new(UserServiceServer::new(RustUsers)),
        )
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// The Java consumer's checks against an rdubbo provider, in a blocking thread.
async fn java_checks(java: &JavaDubbo, args: Vec<String>, title: String) -> ConsumerOutput {
    let java = java.clone();
    tokio::task::spawn_blocking(move || {
        let classes = java.compile(&interop_sources());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = java.run_consumer(&classes, &args, CONSUMER_TIMEOUT);
        show(&title, &out);
        out
    })
    .await
    .unwrap()
}

async fn java_consumer_calls_rdubbo(version: DubboVersion) {
    let Some(java) = JavaDubbo::find(version) else {
        return;
    };
    let server = rdubbo_provider().await;
    let url = format!(
        "dubbo://127.0.0.1:{}/com.example.UserService",
        server.local_addr().port()
    );
    for mode in ["check", "echo-types"] {
        let title = format!("{version} consumer -> rdubbo provider, {mode}");
        let out = java_checks(
            &java,
            vec!["--url".into(), url.clone(), mode.into()],
            title.clone(),
        )
        .await;
        out.assert_ok(&title);
        assert!(out.stdout.contains("DONE "), "{title}: no DONE line");
        // The rdubbo provider's reply attachment reached the Java consumer.
        if mode == "check" {
            assert!(
                out.stdout.contains("served-by=rdubbo"),
                "{title}: {}",
                out.stdout
            );
        }
    }
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_2_7_consumer_calls_rdubbo_provider() {
    java_consumer_calls_rdubbo(DubboVersion::V2_7).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_3_3_consumer_calls_rdubbo_provider() {
    java_consumer_calls_rdubbo(DubboVersion::V3_3).await;
}

/// The same checks as the Java consumer's, made by a typed rdubbo consumer.
async fn rust_checks(users: &UserServiceClient, served_by: &str) {
    // POJO out, `Long` in (getUser(Ljava/lang/Long;)).
    assert_eq!(users.get_user(Some(7)).await.unwrap(), sample(7));
    // A declared Java exception arrives with its class and message.
    let e = users.get_user(Some(-1)).await.unwrap_err();
    assert_eq!(e.java_class(), Some(USER_NOT_FOUND), "{e:?}");
    assert_eq!(e.message(), "no user -1");
    // POJO in, `Long` out.
    assert_eq!(users.create_user(sample(7)).await.unwrap(), Some(3007));
    // Nested POJOs, Date, BigDecimal, enum, list and map fields, all null fields.
    let mut full = sample(41);
    full.address = Some(Address {
        city: Some("Shanghai".into()),
        street: None,
    });
    full.level = Some(Level::Silver);
    full.scores = Some(HashMap::from([("math".into(), 1), ("art".into(), -7)]));
    assert_eq!(users.echo_user(full.clone()).await.unwrap(), full);
    let nulls = plain("nil", 0);
    let mut no_name = nulls.clone();
    no_name.name = None;
    assert_eq!(users.echo_user(nulls.clone()).await.unwrap(), nulls);
    assert_eq!(users.echo_user(no_name.clone()).await.unwrap(), no_name);
    assert_eq!(
        users.list_users(3).await.unwrap(),
        vec![plain("user0", 0), plain("user1", 1), plain("user2", 2)]
    );
    // `long` and `Long` overloads, told apart by descriptor.
    assert_eq!(users.inc(5).await.unwrap(), 6);
    assert_eq!(users.inc_boxed(Some(5)).await.unwrap(), Some(7));
    assert_eq!(users.inc_boxed(None).await.unwrap(), Some(-1));
    // Attachments both ways.
    let mut extra = Attachments::new();
    extra.insert("caller", "rust-consumer");
    let (who, reply) = rdubbo::context::capture_reply_attachments(
        rdubbo::context::with_attachments(extra, users.whoami()),
    )
    .await;
    assert_eq!(who.unwrap().as_deref(), Some("rust-consumer"));
    assert_eq!(reply.get("served-by"), Some(served_by));
    // A map of POJOs, an enum result, a null enum.
    let by_name = users.by_name(vec![plain("a", 1), sample(2)]).await.unwrap();
    assert_eq!(by_name.len(), 2);
    assert_eq!(by_name["ann"], sample(2));
    assert_eq!(users.level_of(sample(1)).await.unwrap(), Some(Level::Gold));
    assert_eq!(users.level_of(plain("x", 1)).await.unwrap(), None);
    // Dynamic values of every Java type through `Object echo(Object)`, unchanged.
    for v in java_values() {
        let back = users.echo(v.clone()).await.unwrap();
        assert_eq!(normal(back), normal(v.clone()), "echo of {v:?}");
    }
}

/// A value as Java means it: Java writes a POJO's fields in its own order (hessian-lite
/// reverses the declaration order) and names an `ArrayList`'s type, where rdubbo writes
/// declaration order and an untyped list; both read back as the same Java object.
fn normal(v: Value) -> Value {
    match v {
        Value::Object(mut o) => {
            o.fields.sort_by(|a, b| a.0.cmp(&b.0));
            o.fields = o.fields.into_iter().map(|(k, v)| (k, normal(v))).collect();
            Value::Object(o)
        }
        Value::List(mut l) => {
            if l.type_name.as_deref() == Some("java.util.ArrayList") {
                l.type_name = None;
            }
            l.items = l.items.into_iter().map(normal).collect();
            Value::List(l)
        }
        Value::Map(mut m) => {
            m.entries = m
                .entries
                .into_iter()
                .map(|(k, v)| (normal(k), normal(v)))
                .collect();
            Value::Map(m)
        }
        other => other,
    }
}

/// Values whose Java form is exact in the value model.
fn java_values() -> Vec<Value> {
    let user = rdubbo::hessian::to_value(&sample(3)).unwrap();
    vec![
        Value::Int(42),
        Value::Long(42),
        Value::Long(i64::MAX),
        Value::Double(1.5),
        Value::Double(f64::INFINITY),
        Value::Bool(true),
        Value::from("a😀b"),
        Value::Binary(vec![1, 2, 3]),
        Value::Date(1_700_000_000_123),
        rdubbo::hessian::to_value(&BigDecimal::new("1234.5678")).unwrap(),
        Value::List(List {
            type_name: Some("[int".into()),
            items: vec![1.into(), 2.into(), 3.into()],
        }),
        Value::List(List {
            type_name: Some("[string".into()),
            items: vec!["x".into(), "y".into()],
        }),
        Value::Map(Map {
            type_name: Some("java.util.TreeMap".into()),
            entries: vec![("a".into(), 1.into()), ("b".into(), 2.into())],
        }),
        Value::map(vec![
            (Value::Int(1), "a".into()),
            (Value::Int(2), "b".into()),
        ]),
        Value::object("com.example.Level", vec![("name", "GOLD".into())]),
        user.clone(),
        // The same POJO twice: shared, as Java sends it.
        Value::list(vec![user, Value::Ref(1)]),
        // A list holding itself.
        Value::list(vec![Value::Ref(0)]),
        Value::Null,
    ]
}

#[tokio::test]
async fn rdubbo_consumer_calls_rdubbo_provider() {
    let server = rdubbo_provider().await;
    let url: Url = format!("dubbo://{}/com.example.UserService", server.local_addr())
        .parse()
        .unwrap();
    let users = UserServiceClient::new(Arc::new(DubboClient::new(&url).unwrap()));
    rust_checks(&users, "rdubbo").await;
    server.shutdown(Duration::from_secs(1)).await;
}

async fn rdubbo_consumer_calls_java(version: DubboVersion) {
    let Some(java) = JavaDubbo::find(version) else {
        return;
    };
    let provider = tokio::task::spawn_blocking(move || {
        let classes = java.compile(&interop_sources());
        java.spawn_provider(&classes, free_port(), &[])
    })
    .await
    .unwrap();
    let url: Url = format!(
        "dubbo://127.0.0.1:{}/com.example.UserService",
        provider.port()
    )
    .parse()
    .unwrap();
    let users = UserServiceClient::new(Arc::new(DubboClient::new(&url).unwrap()));
    rust_checks(&users, "java").await;
    // A Java `Date` and `BigDecimal` arrive as the Rust types.
    let ann = users.get_user(Some(1)).await.unwrap();
    assert_eq!(ann.born, Some(Date(1_700_000_000_000)));
    assert_eq!(ann.balance, Some(BigDecimal::new("1234.50")));
    drop(provider);
}

#[tokio::test]
async fn rdubbo_consumer_calls_java_2_7_provider() {
    rdubbo_consumer_calls_java(DubboVersion::V2_7).await;
}

#[tokio::test]
async fn rdubbo_consumer_calls_java_3_3_provider() {
    rdubbo_consumer_calls_java(DubboVersion::V3_3).await;
}

/// Through a real ZooKeeper, with a service version: a Java consumer finds an rdubbo
/// provider, and an rdubbo consumer finds a Java provider.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_and_rdubbo_find_each_other_through_zookeeper() {
    let Some(java) = JavaDubbo::find(DubboVersion::V2_7) else {
        return;
    };
    let zk = ZkServer::start();
    let registry_url = zk.registry_url("");
    let registry = rdubbo::registry::connect(&registry_url).await.unwrap();

    // Java consumer → rdubbo provider, discovered in ZooKeeper.
    let provider = Provider::builder("127.0.0.1:0".parse().unwrap())
        .protocol("dubbo")
        .registry(registry.clone())
        .export(
            versioned(UserServiceServer::<RustUsers>::info()),
            Arc::new(UserServiceServer::new(RustUsers)),
        )
        .start()
        .await
        .unwrap();
    let title = "Java 2.7 consumer -> rdubbo provider through ZooKeeper".to_string();
    let out = java_checks(
        &java,
        vec![
            "--registry".into(),
            registry_url.clone(),
            "--version".into(),
            "1.0.0".into(),
            "check".into(),
        ],
        title.clone(),
    )
    .await;
    out.assert_ok(&title);
    provider.stop().await;

    // rdubbo consumer → Java provider, discovered in ZooKeeper.
    let java_provider = {
        let (java, registry_url) = (java.clone(), registry_url.clone());
        tokio::task::spawn_blocking(move || {
            let classes = java.compile(&interop_sources());
            java.spawn_provider(
                &classes,
                free_port(),
                &["--registry", &registry_url, "--version", "1.0.0"],
            )
        })
        .await
        .unwrap()
    };
    let reference = Reference::builder("com.example.UserService")
        .version("1.0.0")
        .registry(registry.clone())
        .build()
        .await
        .unwrap();
    let users = UserServiceClient::new(Arc::new(reference)).with_version(Some("1.0.0"));
    // The Java provider registers a moment after it listens.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while users.inc(1).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "no Java provider found"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    rust_checks(&users, "java").await;
    drop(java_provider);
}

fn versioned(mut info: rdubbo::ServiceInfo) -> rdubbo::ServiceInfo {
    info.version = Some("1.0.0".into());
    info
}
