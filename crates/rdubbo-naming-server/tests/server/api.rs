//! The Open API calls as Nacos v1 clients make them: instances, lists, beats and expiry,
//! UDP pushes, persistent instances.

use super::*;

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
