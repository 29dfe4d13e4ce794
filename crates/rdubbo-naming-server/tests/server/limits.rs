//! Hostile and heavy clients: slow and idle connections, refused beats, instance limits and
//! large answers, push ports per address.

use super::*;

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
