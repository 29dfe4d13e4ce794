//! The embedded naming server over its HTTP API, as any Nacos v1 client talks to it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use rdubbo_naming_server::{NamingServer, NamingServerConfig};
use rdubbo_registry_nacos::client::decode_push;
use rdubbo_registry_nacos::model::ServiceInfo;
use serde_json::Value;

/// One HTTP/1.1 exchange; returns (status, body).
fn http(addr: SocketAddr, method: &str, target: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let req = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A keep-alive HTTP/1.1 connection: many exchanges on one socket.
struct KeepAlive {
    s: TcpStream,
    buf: Vec<u8>,
}

impl KeepAlive {
    fn open(addr: SocketAddr) -> KeepAlive {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_nodelay(true).unwrap();
        KeepAlive { s, buf: Vec::new() }
    }

    /// Returns (status, body).
    fn call(&mut self, method: &str, target: &str, body: &str) -> (u16, String) {
        let req = format!(
            "{method} {target} HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.s.write_all(req.as_bytes()).unwrap();
        let mut chunk = [0u8; 65536];
        let end = loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            let n = self.s.read(&mut chunk).expect("an answer");
            assert!(n > 0, "connection closed");
            self.buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())
                    .flatten()
            })
            .expect("a content length");
        while self.buf.len() < end + 4 + len {
            let n = self.s.read(&mut chunk).expect("the body");
            assert!(n > 0, "connection closed");
            self.buf.extend_from_slice(&chunk[..n]);
        }
        let body = String::from_utf8_lossy(&self.buf[end + 4..end + 4 + len]).into_owned();
        self.buf.drain(..end + 4 + len);
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (status, body)
    }
}

/// Reads until the peer closes; returns what came and how long it took.
fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (String, Duration) {
    let t = Instant::now();
    s.set_read_timeout(Some(limit)).unwrap();
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
        }
    }
    (String::from_utf8_lossy(&out).into_owned(), t.elapsed())
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn list(addr: SocketAddr, service: &str) -> ServiceInfo {
    let (status, body) = http(
        addr,
        "GET",
        &format!("/nacos/v1/ns/instance/list?serviceName={}", enc(service)),
        "",
    );
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

async fn start(config: NamingServerConfig) -> NamingServer {
    NamingServer::start(NamingServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..config
    })
    .await
    .unwrap()
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test]
async fn register_list_update_and_deregister_as_the_open_api_says() {
    let server = start(NamingServerConfig::default()).await;
    let addr = server.local_addr();
    blocking(move || {
        // The npm client's form: grouped serviceName plus groupName, `enable` not `enabled`.
        let meta = enc(r#"{"protocol":"jsonrpc","side":"provider"}"#);
        let (s, b) = http(addr, "POST", &format!("/nacos/v1/ns/instance?namespaceId=public&serviceName=DEFAULT_GROUP%40%40svc-a&groupName=DEFAULT_GROUP&clusterName=DEFAULT&ip=127.0.0.1&port=9001&weight=2&enable=true&healthy=true&ephemeral=true&metadata={meta}"), "");
        assert_eq!((s, b.as_str()), (200, "ok"));
        // The Java client's form: plain serviceName, parameters in a form body.
        let (s, b) = http(addr, "POST", "/nacos/v1/ns/instance", "serviceName=svc-a&ip=127.0.0.1&port=9002&metadata=k%3Dv");
        assert_eq!((s, b.as_str()), (200, "ok"));

        let info = list(addr, "DEFAULT_GROUP@@svc-a");
        assert_eq!(info.name, "DEFAULT_GROUP@@svc-a");
        assert_eq!(info.group_name, "DEFAULT_GROUP");
        assert_eq!(info.hosts.len(), 2);
        let h = &info.hosts[0];
        assert_eq!((h.ip.as_str(), h.port, h.weight), ("127.0.0.1", 9001, 2.0));
        assert!(h.healthy && h.enabled && h.ephemeral);
        assert_eq!(h.cluster_name, "DEFAULT");
        assert_eq!(h.service_name, "DEFAULT_GROUP@@svc-a");
        assert_eq!(h.instance_id, "127.0.0.1#9001#DEFAULT#DEFAULT_GROUP@@svc-a");
        assert_eq!(h.metadata["protocol"], "jsonrpc");
        assert_eq!(info.hosts[1].metadata["k"], "v");
        // The plain name lists the same service.
        assert_eq!(list(addr, "svc-a").hosts.len(), 2);

        let (s, b) = http(addr, "GET", "/nacos/v1/ns/instance?serviceName=svc-a&ip=127.0.0.1&port=9002", "");
        assert_eq!(s, 200, "{b}");
        let one: Value = serde_json::from_str(&b).unwrap();
        assert_eq!(one["port"], 9002);
        assert_eq!(one["service"], "DEFAULT_GROUP@@svc-a");

        let (s, b) = http(addr, "GET", "/nacos/v1/ns/service/list?pageNo=1&pageSize=10", "");
        assert_eq!(s, 200);
        let services: Value = serde_json::from_str(&b).unwrap();
        assert_eq!(services["count"], 1);
        assert_eq!(services["doms"][0], "svc-a");

        // Update: weight and disable; disabled instances leave the list.
        let (s, _) = http(addr, "PUT", "/nacos/v1/ns/instance", "serviceName=svc-a&ip=127.0.0.1&port=9002&weight=5&enabled=false");
        assert_eq!(s, 200);
        let info = list(addr, "svc-a");
        assert_eq!(info.hosts.len(), 1);
        assert_eq!(info.hosts[0].port, 9001);

        // Another group and another namespace are other services.
        let (s, _) = http(addr, "POST", "/nacos/v1/ns/instance", "serviceName=svc-a&groupName=G2&ip=127.0.0.1&port=9100");
        assert_eq!(s, 200);
        let (s, _) = http(addr, "POST", "/nacos/v1/ns/instance", "serviceName=svc-a&namespaceId=dev&ip=127.0.0.1&port=9200");
        assert_eq!(s, 200);
        assert_eq!(list(addr, "G2@@svc-a").hosts[0].port, 9100);
        assert_eq!(list(addr, "svc-a").hosts.len(), 1);

        let (s, b) = http(addr, "DELETE", "/nacos/v1/ns/instance?serviceName=DEFAULT_GROUP%40%40svc-a&ip=127.0.0.1&port=9001&ephemeral=true", "");
        assert_eq!((s, b.as_str()), (200, "ok"));
        assert!(list(addr, "svc-a").hosts.is_empty());

        let (s, b) = http(addr, "GET", "/nacos/v1/ns/operator/metrics", "");
        assert_eq!(s, 200);
        let m: Value = serde_json::from_str(&b).unwrap();
        assert_eq!(m["status"], "UP");
    })
    .await;
    server.stop().await;
}

#[tokio::test]
async fn malformed_requests_get_a_nacos_style_400_and_the_server_keeps_serving() {
    let server = start(NamingServerConfig {
        max_body_size: 4096,
        max_metadata_size: 512,
        ..Default::default()
    })
    .await;
    let addr = server.local_addr();
    blocking(move || {
        let cases = [
            ("POST", "/nacos/v1/ns/instance?ip=127.0.0.1&port=1", "Param 'serviceName' is required"),
            ("POST", "/nacos/v1/ns/instance?serviceName=s&port=1", "Param 'ip' is required"),
            ("POST", "/nacos/v1/ns/instance?serviceName=s&ip=127.0.0.1&port=99999", "Param 'port' must be a port number"),
            ("POST", "/nacos/v1/ns/instance?serviceName=s&ip=127.0.0.1&port=1&weight=heavy", "Param 'weight'"),
            ("POST", "/nacos/v1/ns/instance?serviceName=s&ip=127.0.0.1&port=1&weight=-1", "Param 'weight'"),
            ("POST", "/nacos/v1/ns/instance?serviceName=s&ip=127.0.0.1&port=1&healthy=maybe", "Param 'healthy'"),
            ("POST", "/nacos/v1/ns/instance?serviceName=s&ip=127.0.0.1&port=1&metadata=%7Bbroken", "metadata is not a JSON object"),
            ("POST", "/nacos/v1/ns/instance?serviceName=bad%20name&ip=127.0.0.1&port=1", "Param 'serviceName' is illegal"),
            ("POST", "/nacos/v1/ns/instance?serviceName=s&ip=127.0.0.1&port=1&clusterName=a%20b", "Param 'clusterName' is illegal"),
            ("POST", "/nacos/v1/ns/instance?serviceName=s&ip=not%20an%20ip&port=1", "Param 'ip' is illegal"),
            ("PUT", "/nacos/v1/ns/instance/beat?serviceName=s&beat=%7Bnope", "Param 'beat' is not a beat"),
            ("GET", "/nacos/v1/ns/instance/list?serviceName=s&udpPort=x", "Param 'udpPort'"),
            ("GET", "/nacos/v1/ns/service/list?pageNo=0", "Param 'pageNo'"),
            ("PUT", "/nacos/v1/ns/instance?serviceName=s&ip=127.0.0.1&port=1", "instance not found"),
        ];
        for (method, target, expected) in cases {
            let (s, b) = http(addr, method, target, "");
            assert_eq!(s, 400, "{method} {target}: {b}");
            assert!(b.starts_with("caused: ") && b.contains(expected), "{method} {target}: {b}");
        }
        let big = "x".repeat(600);
        let (s, b) = http(addr, "POST", &format!("/nacos/v1/ns/instance?serviceName=s&ip=127.0.0.1&port=1&metadata=%7B%22k%22%3A%22{big}%22%7D"), "");
        assert_eq!(s, 400);
        assert!(b.contains("metadata too large"), "{b}");
        let body = format!("serviceName=s&ip=127.0.0.1&port=1&pad={}", "y".repeat(5000));
        let (s, b) = http(addr, "POST", "/nacos/v1/ns/instance", &body);
        assert_eq!(s, 413, "{b}");
        let (s, _) = http(addr, "GET", "/nacos/v1/ns/nothing", "");
        assert_eq!(s, 404);
        // Still serving.
        let (s, b) = http(addr, "POST", "/nacos/v1/ns/instance", "serviceName=s&ip=127.0.0.1&port=1");
        assert_eq!((s, b.as_str()), (200, "ok"));
        assert_eq!(list(addr, "s").hosts.len(), 1);
    })
    .await;
    server.stop().await;
}

#[tokio::test]
async fn beats_keep_instances_and_silence_makes_them_unhealthy_then_gone() {
    let server = start(NamingServerConfig {
        check_interval: Duration::from_millis(100),
        ..Default::default()
    })
    .await;
    let addr = server.local_addr();
    blocking(move || {
        // Per-instance timing in metadata, as Nacos allows.
        let meta = enc(r#"{"preserved.heart.beat.interval":"200","preserved.heart.beat.timeout":"800","preserved.ip.delete.timeout":"1600"}"#);
        let (s, _) = http(addr, "POST", &format!("/nacos/v1/ns/instance?serviceName=beaty&ip=127.0.0.1&port=7000&metadata={meta}"), "");
        assert_eq!(s, 200);
        // Light beats for 1.5 s keep it healthy; the answer carries the instance's interval.
        let until = Instant::now() + Duration::from_millis(1500);
        while Instant::now() < until {
            let (s, b) = http(addr, "PUT", "/nacos/v1/ns/instance/beat?serviceName=beaty&ip=127.0.0.1&port=7000", "");
            assert_eq!(s, 200);
            let v: Value = serde_json::from_str(&b).unwrap();
            assert_eq!(v["code"], 10200);
            assert_eq!(v["clientBeatInterval"], 200);
            std::thread::sleep(Duration::from_millis(200));
        }
        assert!(list(addr, "beaty").hosts[0].healthy);
        // Silence: unhealthy first, then removed.
        let t0 = Instant::now();
        let mut unhealthy_at = None;
        loop {
            let info = list(addr, "beaty");
            match info.hosts.first() {
                Some(h) if !h.healthy && unhealthy_at.is_none() => unhealthy_at = Some(t0.elapsed()),
                Some(_) => {}
                None => break,
            }
            assert!(t0.elapsed() < Duration::from_secs(10), "never removed");
            std::thread::sleep(Duration::from_millis(50));
        }
        let unhealthy_at = unhealthy_at.expect("was never reported unhealthy before removal");
        assert!(unhealthy_at >= Duration::from_millis(500), "{unhealthy_at:?}");
        // A light beat for a removed instance: unknown, the client must register again.
        let (_, b) = http(addr, "PUT", "/nacos/v1/ns/instance/beat?serviceName=beaty&ip=127.0.0.1&port=7000", "");
        let v: Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v["code"], 20404);
        // A full beat re-creates it, as Nacos does.
        let beat = enc(r#"{"ip":"127.0.0.1","port":7000,"cluster":"DEFAULT","serviceName":"DEFAULT_GROUP@@beaty","metadata":{"a":"b"},"weight":1,"scheduled":false}"#);
        let (_, b) = http(addr, "PUT", &format!("/nacos/v1/ns/instance/beat?serviceName=DEFAULT_GROUP%40%40beaty&beat={beat}"), "");
        let v: Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v["code"], 10200);
        let info = list(addr, "beaty");
        assert_eq!(info.hosts.len(), 1);
        assert_eq!(info.hosts[0].metadata["a"], "b");
    })
    .await;
    server.stop().await;
}

#[tokio::test]
async fn pushes_go_to_the_query_source_are_acked_and_resent_when_not() {
    let server = start(NamingServerConfig {
        push_ack_timeout: Duration::from_millis(300),
        ..Default::default()
    })
    .await;
    let addr = server.local_addr();
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let port = sock.local_addr().unwrap().port();
    let (stats_after_ack, resent) = blocking(move || {
        // clientIP claims another host: the push must still come to the query's source.
        let (s, _) = http(
            addr,
            "GET",
            &format!(
                "/nacos/v1/ns/instance/list?serviceName=pushed&udpPort={port}&clientIP=10.1.2.3"
            ),
            "",
        );
        assert_eq!(s, 200);
        let t = Instant::now();
        let (s, _) = http(
            addr,
            "POST",
            "/nacos/v1/ns/instance",
            "serviceName=pushed&ip=127.0.0.1&port=8001",
        );
        assert_eq!(s, 200);
        let mut buf = [0u8; 65536];
        let (n, from) = sock.recv_from(&mut buf).expect("a push");
        let latency = t.elapsed();
        let push = decode_push(&buf[..n]).unwrap();
        assert_eq!(push.kind, "dom");
        let info: ServiceInfo = serde_json::from_str(&push.data).unwrap();
        assert_eq!(info.name, "DEFAULT_GROUP@@pushed");
        assert_eq!(info.hosts[0].port, 8001);
        eprintln!("push arrived {latency:?} after the registration");
        let ack = format!(
            r#"{{"type":"push-ack","lastRefTime":{},"data":""}}"#,
            push.last_ref_time
        );
        sock.send_to(ack.as_bytes(), from).unwrap();
        std::thread::sleep(Duration::from_millis(800));
        let acked = push.last_ref_time;
        // Not acknowledged this time: the same push comes again.
        let (s, _) = http(
            addr,
            "POST",
            "/nacos/v1/ns/instance",
            "serviceName=pushed&ip=127.0.0.1&port=8002",
        );
        assert_eq!(s, 200);
        let (n, _) = sock.recv_from(&mut buf).unwrap();
        let first = decode_push(&buf[..n]).unwrap();
        assert_ne!(first.last_ref_time, acked);
        let (n, _) = sock.recv_from(&mut buf).expect("a re-send");
        let again = decode_push(&buf[..n]).unwrap();
        assert_eq!(again.last_ref_time, first.last_ref_time);
        assert_eq!(again.data, first.data);
        (acked, true)
    })
    .await;
    assert!(resent);
    let _ = stats_after_ack;
    let stats = server.stats();
    assert!(stats.pushes_acked >= 1, "{stats:?}");
    assert!(stats.pushes_resent >= 1, "{stats:?}");
    assert_eq!(stats.subscribers, 1);
    server.stop().await;
}

#[tokio::test]
async fn persistent_instances_survive_a_restart_and_are_health_checked() {
    let dir = std::env::temp_dir().join(format!("rdubbo-naming-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let live_port = listener.local_addr().unwrap().port();
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = NamingServerConfig {
        data_dir: Some(dir.clone()),
        health_check_interval: Duration::from_millis(200),
        ..Default::default()
    };
    let server = start(config.clone()).await;
    let addr = server.local_addr();
    blocking(move || {
        for port in [live_port, dead_port] {
            let (s, b) = http(addr, "POST", "/nacos/v1/ns/instance", &format!("serviceName=stored&ip=127.0.0.1&port={port}&ephemeral=false&weight=3&metadata=%7B%22k%22%3A%22v%22%7D"));
            assert_eq!((s, b.as_str()), (200, "ok"));
        }
        let (s, _) = http(addr, "POST", "/nacos/v1/ns/instance", "serviceName=stored&ip=127.0.0.1&port=1&ephemeral=true");
        assert_eq!(s, 200);
    })
    .await;
    server.stop().await;

    let server = start(config).await;
    let addr = server.local_addr();
    blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let info = list(addr, "stored");
            let ports: Vec<(u16, bool)> = info.hosts.iter().map(|h| (h.port, h.healthy)).collect();
            // Only the persistent ones came back; nothing listens on dead_port.
            assert_eq!(info.hosts.len(), 2, "{ports:?}");
            assert!(info
                .hosts
                .iter()
                .all(|h| !h.ephemeral && h.weight == 3.0 && h.metadata["k"] == "v"));
            let dead = info.hosts.iter().find(|h| h.port == dead_port).unwrap();
            let live = info.hosts.iter().find(|h| h.port == live_port).unwrap();
            if !dead.healthy && live.healthy {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "health check never ran: {ports:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await;
    drop(listener);
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn auth_requires_a_token_and_tokens_expire() {
    let server = start(NamingServerConfig {
        auth: Some(("nacos".into(), "s3cret".into())),
        token_ttl: Duration::from_secs(1),
        ..Default::default()
    })
    .await;
    let addr = server.local_addr();
    blocking(move || {
        let (s, _) = http(addr, "GET", "/nacos/v1/ns/instance/list?serviceName=x", "");
        assert_eq!(s, 403);
        let (s, b) = http(
            addr,
            "POST",
            "/nacos/v1/auth/login",
            "username=nacos&password=wrong",
        );
        assert_eq!((s, b.as_str()), (403, "unknown user!"));
        let (s, b) = http(
            addr,
            "POST",
            "/nacos/v1/auth/login",
            "username=nacos&password=s3cret",
        );
        assert_eq!(s, 200);
        let v: Value = serde_json::from_str(&b).unwrap();
        let token = v["accessToken"].as_str().unwrap().to_owned();
        assert_eq!(v["tokenTtl"], 1);
        let (s, _) = http(
            addr,
            "GET",
            &format!("/nacos/v1/ns/instance/list?serviceName=x&accessToken={token}"),
            "",
        );
        assert_eq!(s, 200);
        // Credentials as parameters work too (the npm client sends them on every call).
        let (s, _) = http(
            addr,
            "GET",
            "/nacos/v1/ns/instance/list?serviceName=x&username=nacos&password=s3cret",
            "",
        );
        assert_eq!(s, 200);
        // The token's expiry is rounded up to a whole second.
        std::thread::sleep(Duration::from_millis(2100));
        let (s, b) = http(
            addr,
            "GET",
            &format!("/nacos/v1/ns/instance/list?serviceName=x&accessToken={token}"),
            "",
        );
        assert_eq!((s, b.as_str()), (403, "token expired!"));
    })
    .await;
    server.stop().await;
}

#[tokio::test]
async fn slow_and_idle_clients_are_cut_off_and_cannot_hold_the_slots() {
    let server = start(NamingServerConfig {
        request_timeout: Duration::from_millis(1000),
        idle_timeout: Duration::from_millis(1500),
        max_connections: 16,
        ..Default::default()
    })
    .await;
    let addr = server.local_addr();
    blocking(move || {
        // A body sent a byte at a time: one deadline for the whole request, then 408.
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"PUT /nacos/v1/ns/instance/beat?serviceName=x HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n").unwrap();
        let mut w = s.try_clone().unwrap();
        let drip = std::thread::spawn(move || {
            for _ in 0..50 {
                std::thread::sleep(Duration::from_millis(100));
                if w.write_all(b"a").is_err() {
                    break;
                }
            }
        });
        let (answer, took) = read_until_closed(&mut s, Duration::from_secs(5));
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("request not received within 1000 ms"), "{answer}");
        assert!(took < Duration::from_millis(2500), "{took:?}");
        drip.join().unwrap();

        // Headers sent a line at a time: closed at the deadline.
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /nacos/v1/ns/operator/metrics HTTP/1.1\r\n").unwrap();
        let mut w = s.try_clone().unwrap();
        let drip = std::thread::spawn(move || {
            for i in 0..50 {
                std::thread::sleep(Duration::from_millis(100));
                if w.write_all(format!("X-{i}: y\r\n").as_bytes()).is_err() {
                    break;
                }
            }
        });
        let (answer, took) = read_until_closed(&mut s, Duration::from_secs(5));
        assert!(!answer.contains("200 OK"), "{answer}");
        assert!(took < Duration::from_millis(2500), "{took:?}");
        drip.join().unwrap();

        // An idle keep-alive connection: closed after the idle timeout, not before.
        let mut k = KeepAlive::open(addr);
        assert_eq!(k.call("GET", "/nacos/v1/ns/operator/metrics", "").0, 200);
        let (_, took) = read_until_closed(&mut k.s, Duration::from_secs(5));
        assert!(
            took >= Duration::from_millis(1200) && took < Duration::from_millis(3000),
            "{took:?}"
        );

        // 40 slow senders against 16 slots (reconnecting when cut off) for 3 s, while an
        // instance beats every 100 ms on new connections: every beat is answered, because a
        // new connection takes the slot of the one that has waited longest on its peer.
        let (s, _) = http(addr, "POST", "/nacos/v1/ns/instance", "serviceName=held&ip=127.0.0.1&port=1");
        assert_eq!(s, 200);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let attacker = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut conns: Vec<Option<TcpStream>> = (0..40).map(|_| None).collect();
                let mut opened = 0;
                // Half send their headers slowly, half a body.
                let start: [&[u8]; 2] = [
                    b"PUT /nacos/v1/ns/instance/beat HTTP/1.1\r\n",
                    b"PUT /nacos/v1/ns/instance/beat HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n",
                ];
                let more: [&[u8]; 2] = [b"X-Slow: 1\r\n", b"a"];
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    for (i, c) in conns.iter_mut().enumerate() {
                        let alive = match c {
                            Some(s) => s.write_all(more[i % 2]).is_ok(),
                            None => false,
                        };
                        if !alive {
                            *c = TcpStream::connect(addr).ok().and_then(|mut s| {
                                opened += 1;
                                s.write_all(start[i % 2]).ok().map(|_| s)
                            });
                        }
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                opened
            })
        };
        std::thread::sleep(Duration::from_millis(300));
        let until = Instant::now() + Duration::from_secs(3);
        let mut answers = Vec::new();
        while Instant::now() < until {
            let (s, b) = http(addr, "PUT", "/nacos/v1/ns/instance/beat?serviceName=held&ip=127.0.0.1&port=1", "");
            answers.push((s, b));
            std::thread::sleep(Duration::from_millis(100));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let opened = attacker.join().unwrap();
        assert!(opened > 40, "the attackers were never cut off ({opened} connections)");
        let refused: Vec<_> = answers.iter().filter(|(s, _)| *s != 200).collect();
        assert!(refused.is_empty(), "{} of {} beats refused: {refused:?}", refused.len(), answers.len());
        assert!(answers.iter().all(|(_, b)| b.contains("10200")), "{answers:?}");
    })
    .await;
    let stats = server.stats();
    assert!(stats.connections_evicted > 0, "{stats:?}");
    assert!(stats.connections_timed_out > 0, "{stats:?}");
    assert!(stats.connections <= 17, "{stats:?}");
    server.stop().await;
}

#[tokio::test]
async fn instances_outlive_an_attack_that_makes_the_server_refuse_their_beats() {
    let server = start(NamingServerConfig {
        max_connections: 24,
        evict_when_full: false,
        request_timeout: Duration::from_secs(30),
        beat_timeout: Duration::from_millis(600),
        delete_timeout: Duration::from_millis(1200),
        check_interval: Duration::from_millis(100),
        ..Default::default()
    })
    .await;
    let addr = server.local_addr();
    blocking(move || {
        for port in [1, 2] {
            let (s, _) = http(
                addr,
                "POST",
                "/nacos/v1/ns/instance",
                &format!("serviceName=victim&ip=127.0.0.1&port={port}"),
            );
            assert_eq!(s, 200);
        }
    })
    .await;
    // Every slot taken by a connection that sends half a request and waits.
    let slow: Vec<TcpStream> = blocking(move || {
        (0..24)
            .map(|_| {
                let mut s = TcpStream::connect(addr).unwrap();
                s.write_all(b"PUT /nacos/v1/ns/instance/beat HTTP/1.1\r\n")
                    .unwrap();
                s
            })
            .collect()
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.stats().connections < 24 {
        assert!(Instant::now() < deadline, "{:?}", server.stats());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Port 1 keeps beating and is refused, for more than twice its delete timeout; port 2
    // is silent. Neither is removed while the server refuses requests.
    let refused = blocking(move || {
        let until = Instant::now() + Duration::from_millis(3000);
        let mut refused = 0;
        while Instant::now() < until {
            let (s, b) = http(
                addr,
                "PUT",
                "/nacos/v1/ns/instance/beat?serviceName=victim&ip=127.0.0.1&port=1",
                "",
            );
            assert_eq!(s, 503, "{b}");
            assert!(b.contains("too many connections"), "{b}");
            refused += 1;
            std::thread::sleep(Duration::from_millis(200));
        }
        refused
    })
    .await;
    assert!(refused >= 5, "{refused}");
    let stats = server.stats();
    assert_eq!(stats.instances, 2, "{stats:?}");
    assert!(stats.connections_refused >= 5, "{stats:?}");
    // The attack stops: the beats get through again (the instance was never forgotten), and
    // the silent instance goes its delete timeout after the last refusal.
    drop(slow);
    blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut first = None;
        let mut removed = false;
        while Instant::now() < deadline {
            let (s, b) = http(
                addr,
                "PUT",
                "/nacos/v1/ns/instance/beat?serviceName=victim&ip=127.0.0.1&port=1",
                "",
            );
            if s == 200 {
                assert!(b.contains("10200"), "the instance was forgotten: {b}");
                first.get_or_insert_with(Instant::now);
                let ports: Vec<u16> = list(addr, "victim").hosts.iter().map(|h| h.port).collect();
                assert!(ports.contains(&1), "{ports:?}");
                if ports == [1] {
                    removed = true;
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let first = first.expect("beats never got through after the attack");
        assert!(removed, "the silent instance was never removed");
        assert!(first.elapsed() < Duration::from_secs(4));
    })
    .await;
    server.stop().await;
}

#[tokio::test]
async fn services_have_an_instance_limit_and_large_answers_are_shared() {
    let server = start(NamingServerConfig {
        max_instances_per_service: 1_200,
        ..Default::default()
    })
    .await;
    let addr = server.local_addr();
    blocking(move || {
        let mut k = KeepAlive::open(addr);
        let meta = enc(r#"{"side":"provider","protocol":"dubbo"}"#);
        for n in 0..1_200u32 {
            let (s, b) = k.call(
                "POST",
                &format!(
                    "/nacos/v1/ns/instance?serviceName=big&ip=10.0.{}.{}&port=80&metadata={meta}",
                    n / 256,
                    n % 256
                ),
                "",
            );
            assert_eq!((s, b.as_str()), (200, "ok"));
        }
        // Registering again is fine; one more is refused, clearly; other services go on.
        let (s, _) = k.call(
            "POST",
            "/nacos/v1/ns/instance?serviceName=big&ip=10.0.0.0&port=80&weight=2",
            "",
        );
        assert_eq!(s, 200);
        let (s, b) = k.call(
            "POST",
            "/nacos/v1/ns/instance?serviceName=big&ip=10.9.9.9&port=80",
            "",
        );
        assert_eq!(s, 400);
        assert_eq!(
            b,
            "caused: too many instances in service DEFAULT_GROUP@@big (limit 1200);"
        );
        let (s, _) = k.call(
            "POST",
            "/nacos/v1/ns/instance?serviceName=small&ip=10.9.9.9&port=80",
            "",
        );
        assert_eq!(s, 200);
        // A full beat of a removed instance may not pass the limit either.
        let beat = enc(
            r#"{"ip":"10.9.9.8","port":80,"cluster":"DEFAULT","serviceName":"DEFAULT_GROUP@@big"}"#,
        );
        let (s, b) = k.call(
            "PUT",
            &format!("/nacos/v1/ns/instance/beat?serviceName=big&beat={beat}"),
            "",
        );
        assert_eq!(s, 200);
        assert!(b.contains("20404"), "{b}");

        // The large answer: whole and the same for every query until the service changes.
        let (s, first) = k.call("GET", "/nacos/v1/ns/instance/list?serviceName=big", "");
        assert_eq!(s, 200);
        let info: ServiceInfo = serde_json::from_str(&first).unwrap();
        assert_eq!(info.hosts.len(), 1_200);
        assert_eq!(info.hosts[1].metadata["protocol"], "dubbo");
        let again = std::thread::scope(|scope| {
            let lists: Vec<_> = (0..4).map(|_| scope.spawn(|| list(addr, "big"))).collect();
            lists
                .into_iter()
                .map(|l| l.join().unwrap())
                .collect::<Vec<_>>()
        });
        assert!(again.iter().all(|i| *i == info));
        let (s, _) = k.call(
            "DELETE",
            "/nacos/v1/ns/instance?serviceName=big&ip=10.0.0.1&port=80",
            "",
        );
        assert_eq!(s, 200);
        let changed = list(addr, "big");
        assert_eq!(changed.hosts.len(), 1_199);
        assert!(changed.last_ref_time > info.last_ref_time);
        let (_, healthy) = k.call(
            "GET",
            "/nacos/v1/ns/instance/list?serviceName=big&healthyOnly=true&clusters=DEFAULT",
            "",
        );
        assert_eq!(
            serde_json::from_str::<ServiceInfo>(&healthy)
                .unwrap()
                .hosts
                .len(),
            1_199
        );

        // Service names come a page at a time.
        for n in 0..25 {
            let (s, _) = k.call(
                "POST",
                &format!(
                    "/nacos/v1/ns/instance?serviceName=paged-{n:02}&groupName=P&ip=10.0.0.1&port=1"
                ),
                "",
            );
            assert_eq!(s, 200);
        }
        let (s, b) = k.call(
            "GET",
            "/nacos/v1/ns/service/list?groupName=P&pageNo=3&pageSize=10",
            "",
        );
        assert_eq!(s, 200);
        let page: Value = serde_json::from_str(&b).unwrap();
        assert_eq!(page["count"], 25);
        assert_eq!(
            page["doms"],
            serde_json::json!(["paged-20", "paged-21", "paged-22", "paged-23", "paged-24"])
        );
        let (_, b) = k.call("GET", "/nacos/v1/ns/service/list?pageNo=1&pageSize=10", "");
        let page: Value = serde_json::from_str(&b).unwrap();
        assert_eq!(page["count"], 2);
        assert_eq!(page["doms"], serde_json::json!(["big", "small"]));
    })
    .await;
    server.stop().await;
}

#[tokio::test]
async fn one_address_gets_pushes_on_a_bounded_number_of_ports() {
    let server = start(NamingServerConfig {
        push_ack_timeout: Duration::from_millis(200),
        push_attempts: 2,
        ..Default::default()
    })
    .await;
    let addr = server.local_addr();
    let received = blocking(move || {
        let socks: Vec<std::net::UdpSocket> = (0..40)
            .map(|_| {
                let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                s.set_nonblocking(true).unwrap();
                s
            })
            .collect();
        let mut k = KeepAlive::open(addr);
        let mut subscribed = 0;
        for s in &socks {
            let port = s.local_addr().unwrap().port();
            let (status, b) = k.call(
                "GET",
                &format!("/nacos/v1/ns/instance/list?serviceName=amp&udpPort={port}"),
                "",
            );
            assert_eq!(status, 200);
            // Subscribed ones may wait for pushes; the others are told to poll sooner.
            let info: ServiceInfo = serde_json::from_str(&b).unwrap();
            if info.cache_millis == 10_000 {
                subscribed += 1;
            } else {
                assert_eq!(info.cache_millis, 3_000);
            }
        }
        assert_eq!(subscribed, 16);
        let (s, _) = k.call(
            "POST",
            "/nacos/v1/ns/instance",
            "serviceName=amp&ip=127.0.0.1&port=1",
        );
        assert_eq!(s, 200);
        // Nobody acknowledges: each subscribed port gets the push twice, no other port any.
        let until = Instant::now() + Duration::from_millis(1500);
        let mut got = vec![0; socks.len()];
        let mut buf = [0u8; 65536];
        while Instant::now() < until {
            for (i, s) in socks.iter().enumerate() {
                while let Ok((n, _)) = s.recv_from(&mut buf) {
                    assert!(decode_push(&buf[..n]).is_ok());
                    got[i] += 1;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        got
    })
    .await;
    assert_eq!(
        received.iter().filter(|n| **n > 0).count(),
        16,
        "{received:?}"
    );
    assert!(received.iter().all(|n| *n <= 2), "{received:?}");
    let stats = server.stats();
    assert_eq!(stats.push_subscriptions_limited, 24, "{stats:?}");
    assert_eq!(stats.pushes_sent, 16, "{stats:?}");
    // Subscribers that never acknowledge are dropped until they query again.
    assert_eq!(stats.subscribers, 0, "{stats:?}");
    server.stop().await;
}

#[tokio::test]
async fn failed_logins_are_throttled_per_address_and_logins_fill_nothing() {
    let server = start(NamingServerConfig {
        auth: Some(("nacos".into(), "s3cret".into())),
        login_failures_burst: 5,
        login_failures_per_sec: 2.0,
        ..Default::default()
    })
    .await;
    let addr = server.local_addr();
    blocking(move || {
        let mut k = KeepAlive::open(addr);
        // Many logins: every one works, and so does every token; nothing is kept.
        let mut tokens = Vec::new();
        for _ in 0..5_000 {
            let (s, b) = k.call(
                "POST",
                "/nacos/v1/auth/login",
                "username=nacos&password=s3cret",
            );
            assert_eq!(s, 200, "{b}");
            let v: Value = serde_json::from_str(&b).unwrap();
            tokens.push(v["accessToken"].as_str().unwrap().to_owned());
        }
        for t in [&tokens[0], &tokens[4_999]] {
            let (s, b) = k.call(
                "GET",
                &format!("/nacos/v1/ns/instance/list?serviceName=x&accessToken={t}"),
                "",
            );
            assert_eq!(s, 200, "{b}");
        }
        // A token is a signed JWT: changing any part of it makes it invalid.
        let t = &tokens[0];
        let mut forged = t.clone();
        forged.pop();
        forged.push(if t.ends_with('A') { 'B' } else { 'A' });
        let (s, b) = k.call(
            "GET",
            &format!("/nacos/v1/ns/instance/list?serviceName=x&accessToken={forged}"),
            "",
        );
        assert_eq!((s, b.as_str()), (403, "token invalid!"));
        assert_eq!(t.split('.').count(), 3);

        // Guessing: five failures, then 429 for this address, even for the right password.
        for _ in 0..5 {
            let (s, b) = k.call(
                "POST",
                "/nacos/v1/auth/login",
                "username=nacos&password=guess",
            );
            assert_eq!((s, b.as_str()), (403, "unknown user!"));
        }
        let (s, b) = k.call(
            "POST",
            "/nacos/v1/auth/login",
            "username=nacos&password=guess",
        );
        assert_eq!(s, 429, "{b}");
        assert!(
            b.starts_with("caused: too many failed logins from 127.0.0.1; retry in "),
            "{b}"
        );
        let (s, _) = k.call(
            "POST",
            "/nacos/v1/auth/login",
            "username=nacos&password=s3cret",
        );
        assert_eq!(s, 429);
        // Credentials as parameters of a naming call are the same guess.
        let (s, _) = k.call(
            "GET",
            "/nacos/v1/ns/instance/list?serviceName=x&username=nacos&password=guess",
            "",
        );
        assert_eq!(s, 429);
        // Tokens still work; after a pause, so does the password.
        let (s, _) = k.call(
            "GET",
            &format!(
                "/nacos/v1/ns/instance/list?serviceName=x&accessToken={}",
                tokens[1]
            ),
            "",
        );
        assert_eq!(s, 200);
        std::thread::sleep(Duration::from_millis(600));
        let (s, b) = k.call(
            "POST",
            "/nacos/v1/auth/login",
            "username=nacos&password=s3cret",
        );
        assert_eq!(s, 200, "{b}");
    })
    .await;
    let stats = server.stats();
    assert_eq!(stats.logins, 5_001);
    assert!(stats.logins_throttled >= 3, "{stats:?}");
    server.stop().await;
}

mod garbage {
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
}
