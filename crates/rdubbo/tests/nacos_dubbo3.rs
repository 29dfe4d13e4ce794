//! Dubbo 3 application-level registration on the embedded registry (Nacos' model): an
//! rdubbo provider with `register-mode` instance or all writes what Java 3.3 writes on Nacos
//! (an instance of service `<app>` in `DEFAULT_GROUP` with Dubbo's metadata, the mapping
//! as config `dataId=<interface>`, `group=mapping`), checked over the Nacos naming and config
//! APIs with plain HTTP, as a user with curl would.
//!
//! No real Nacos server runs here (none is installable), and the Java 3.3.1 peer has no
//! Nacos client, so no Java consumer reads this layout in these tests.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdubbo::discovery::keys;
use rdubbo::provider::Provider;
use rdubbo::{RegisterMode, Registry};
use rdubbo_naming_server::{NamingServer, NamingServerConfig};
use serde_json::Value;

#[path = "../examples/java_interop/user_service.rs"]
#[allow(dead_code)]
mod user_service;
use user_service::{RustUsers, UserServiceServer};

const APP: &str = "rdubbo-users";
const INTERFACE: &str = "com.example.UserService";

fn http_get(addr: SocketAddr, target: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_owned())
}

fn hosts(addr: SocketAddr, service: &str) -> Vec<Value> {
    let name = service.replace('@', "%40");
    let (s, body) = http_get(
        addr,
        &format!("/nacos/v1/ns/instance/list?serviceName={name}"),
    );
    assert_eq!(s, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["hosts"].as_array().cloned().unwrap_or_default()
}

async fn provider(registry: &Arc<dyn Registry>, mode: RegisterMode) -> Provider {
    let mut info = UserServiceServer::<RustUsers>::info();
    info.version = Some("1.0.0".into());
    Provider::builder("127.0.0.1:0".parse().unwrap())
        .application(APP)
        .protocol("dubbo")
        .register_mode(mode)
        .unregister_wait(Duration::ZERO)
        .registry(registry.clone())
        .export(info, Arc::new(UserServiceServer::new(RustUsers)))
        .start()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_registers_its_application_instance_and_mapping_on_the_embedded_registry() {
    let server = NamingServer::start(NamingServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    })
    .await
    .unwrap();
    let addr = server.local_addr();
    let registry = rdubbo::registry::connect(&server.registry_url())
        .await
        .unwrap();
    assert!(registry.service_discovery().is_some());
    let interface_service = format!("DEFAULT_GROUP@@providers:{INTERFACE}:1.0.0:");

    for mode in [RegisterMode::Instance, RegisterMode::All] {
        let p = provider(&registry, mode).await;
        let port = p.local_addr().port();
        let instance = p.instance().expect("an application instance").clone();
        let revision = instance.revision().expect("a revision").to_owned();
        assert_ne!(revision, "0");

        // The instance, as the naming API shows it.
        let found = hosts(addr, &format!("DEFAULT_GROUP@@{APP}"));
        assert_eq!(found.len(), 1, "{mode}: {found:?}");
        let h = &found[0];
        assert_eq!(h["port"], port, "{h}");
        assert_eq!(h["ephemeral"], true);
        assert_eq!(h["healthy"], true);
        let meta = &h["metadata"];
        assert_eq!(meta[keys::REVISION], revision.as_str());
        assert_eq!(meta[keys::STORAGE_TYPE], "local");
        let endpoints: Value =
            serde_json::from_str(meta[keys::ENDPOINTS].as_str().unwrap()).unwrap();
        assert_eq!(endpoints[0]["port"], port);
        assert_eq!(endpoints[0]["protocol"], "dubbo");
        let params: Value =
            serde_json::from_str(meta[keys::METADATA_SERVICE_URL_PARAMS].as_str().unwrap())
                .unwrap();
        assert_eq!(params["port"], port.to_string());
        assert_eq!(params["protocol"], "dubbo");

        // The mapping, as the config API shows it.
        let (s, body) = http_get(
            addr,
            &format!("/nacos/v1/cs/configs?dataId={INTERFACE}&group=mapping"),
        );
        assert_eq!((s, body.as_str()), (200, APP));

        // Interface-level URLs only with `all`.
        let by_interface = hosts(addr, &interface_service);
        match mode {
            RegisterMode::Instance => assert!(by_interface.is_empty(), "{by_interface:?}"),
            _ => {
                assert_eq!(by_interface.len(), 1, "{by_interface:?}");
                assert_eq!(by_interface[0]["port"], port);
            }
        }

        // Stopping withdraws the instance; the mapping stays, as in Java.
        p.stop().await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !hosts(addr, &format!("DEFAULT_GROUP@@{APP}")).is_empty() {
            assert!(Instant::now() < deadline, "{mode}: the instance stayed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (s, body) = http_get(
            addr,
            &format!("/nacos/v1/cs/configs?dataId={INTERFACE}&group=mapping"),
        );
        assert_eq!((s, body.as_str()), (200, APP));
    }
    registry.destroy().await;
    server.stop().await;
}
