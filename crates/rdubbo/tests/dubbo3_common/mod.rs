//! What the Dubbo 3 application-level discovery tests (`dubbo3_consumer`,
//! `dubbo3_discovery`) share: UserService 1.0.0 providers registered through a real
//! ZooKeeper, the registry client, waiting on a condition, and Java 3.3 providers
//! registered by instance only.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdubbo::provider::Provider;
use rdubbo::{RegisterMode, Registry, ServiceInfo};
use rdubbo_testkit::java::{interop_sources, JavaDubbo, JavaProcess};
use rdubbo_testkit::ZkServer;

#[path = "../../examples/java_interop/user_service.rs"]
pub mod user_service;
use user_service::{RustUsers, UserServiceServer};

/// The application of the rdubbo providers.
pub const APP: &str = "rdubbo-users";
/// The interface every provider serves.
pub const INTERFACE: &str = "com.example.UserService";

/// UserService with version 1.0.0 (what the Java peers ask for).
pub fn versioned() -> ServiceInfo {
    let mut info = UserServiceServer::<RustUsers>::info();
    info.version = Some("1.0.0".into());
    info
}

/// A registry client of `zk` with the URL parameters `params`.
pub async fn connect(zk: &ZkServer, params: &str) -> Arc<dyn Registry> {
    rdubbo::registry::connect(&zk.registry_url(params))
        .await
        .unwrap()
}

/// An rdubbo provider of application `app` exporting [`versioned`] UserService over
/// `protocol` on a port of its own, registered at `registry` in `mode`.
pub async fn provider(
    protocol: &str,
    registry: &Arc<dyn Registry>,
    app: &str,
    mode: RegisterMode,
) -> Provider {
    Provider::builder("127.0.0.1:0".parse().unwrap())
        .application(app)
        .protocol(protocol)
        .register_mode(mode)
        .unregister_wait(Duration::ZERO)
        .registry(registry.clone())
        .export(versioned(), Arc::new(UserServiceServer::new(RustUsers)))
        .start()
        .await
        .unwrap()
}

/// Waits until `check` holds (at most 20 s; ZooKeeper is written and watched
/// asynchronously).
pub async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < deadline, "not within 20 s: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The Java interop programs compiled for `java`, in a blocking thread.
pub async fn compile(java: &JavaDubbo) -> PathBuf {
    let java = java.clone();
    tokio::task::spawn_blocking(move || java.compile(&interop_sources()))
        .await
        .unwrap()
}

/// A Java provider on `port` registered at `registry` by instance only, over `protocol`
/// ([`JavaDubbo::spawn_instance_provider`]), started in a blocking thread.
pub async fn java_instance_provider(
    java: &JavaDubbo,
    classes: &Path,
    port: u16,
    registry: &str,
    protocol: &str,
) -> JavaProcess {
    let java = java.clone();
    let (classes, registry, protocol) =
        (classes.to_owned(), registry.to_owned(), protocol.to_owned());
    tokio::task::spawn_blocking(move || {
        java.spawn_instance_provider(&classes, port, &registry, &protocol)
    })
    .await
    .unwrap()
}
