//! Any parameters on any API call: an answer, never a panic.

use super::*;
use proptest::prelude::*;

const KEYS: &[&str] = &[
    "serviceName",
    "groupName",
    "namespaceId",
    "clusterName",
    "clusters",
    "ip",
    "port",
    "weight",
    "enabled",
    "enable",
    "healthy",
    "ephemeral",
    "metadata",
    "beat",
    "udpPort",
    "healthyOnly",
    "pageNo",
    "pageSize",
    "cluster",
    "accessToken",
];
const CALLS: &[(&str, &str)] = &[
    ("POST", "/nacos/v1/ns/instance"),
    ("DELETE", "/nacos/v1/ns/instance"),
    ("PUT", "/nacos/v1/ns/instance"),
    ("GET", "/nacos/v1/ns/instance"),
    ("PUT", "/nacos/v1/ns/instance/beat"),
    ("GET", "/nacos/v1/ns/instance/list"),
    ("GET", "/nacos/v1/ns/service/list"),
    ("GET", "/nacos/v1/ns/service"),
    ("POST", "/nacos/v1/auth/login"),
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
    /// Any parameters on any call: an answer with a clear status, never a dropped
    /// connection, and the server keeps serving.
    #[test]
    fn any_parameters_get_an_answer(
        call in 0..CALLS.len(),
        params in proptest::collection::vec((0..KEYS.len(), any::<String>()), 0..8),
    ) {
        static SERVER: std::sync::OnceLock<SocketAddr> = std::sync::OnceLock::new();
        let addr = *SERVER.get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Runtime::new().unwrap();
                rt.block_on(async move {
                    let server = start(NamingServerConfig::default()).await;
                    tx.send(server.local_addr()).unwrap();
                    std::future::pending::<()>().await;
                });
            });
            rx.recv().unwrap()
        });
        let query: String = params
            .iter()
            .map(|(k, v)| format!("{}={}", KEYS[*k], enc(v)))
            .collect::<Vec<_>>()
            .join("&");
        let (method, path) = CALLS[call];
        let (status, body) = http(addr, method, &format!("{path}?{query}"), "");
        prop_assert!(matches!(status, 200 | 400 | 403 | 404 | 413 | 414 | 503), "{status} {body}");
        if status == 400 {
            prop_assert!(body.starts_with("caused: "), "{body}");
        }
        let (status, _) = http(addr, "GET", "/nacos/v1/ns/operator/metrics", "");
        prop_assert_eq!(status, 200);
    }
}
