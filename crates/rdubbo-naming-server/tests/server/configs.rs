//! The config API v1 as Nacos clients use it: publish, get, delete, compare-and-set,
//! search, listener long polling, persistence, limits and auth.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rdubbo_naming_server::NamingServerConfig;
use rdubbo_registry_nacos::config_wire::{content_md5, listening_configs, ListenEntry};
use serde_json::Value;

use super::{blocking, enc, exchange, http, start};

/// One exchange with extra headers (long polls wait up to 30 s); returns (status, headers,
/// body).
fn call(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    exchange(addr, method, target, headers, body, Duration::from_secs(60))
}

fn publish_body(data_id: &str, group: &str, content: &str) -> String {
    format!(
        "dataId={}&group={}&content={}",
        enc(data_id),
        enc(group),
        enc(content)
    )
}

fn probe(entries: &[(&str, &str, Option<&str>, &str)]) -> String {
    let entries: Vec<ListenEntry> = entries
        .iter()
        .map(|(d, g, content, t)| ListenEntry {
            data_id: (*d).into(),
            group: (*g).into(),
            md5: content_md5(*content),
            tenant: (*t).into(),
        })
        .collect();
    format!("Listening-Configs={}", enc(&listening_configs(&entries)))
}

const CS: &str = "/nacos/v1/cs/configs";
const LISTENER: &str = "/nacos/v1/cs/configs/listener";

/// `GET /nacos/v1/cs/configs?<query>`.
fn get(addr: SocketAddr, query: &str) -> (u16, String, String) {
    call(addr, "GET", &format!("{CS}?{query}"), &[], "")
}

/// `POST /nacos/v1/cs/configs` of `content` as `data_id` in `group`.
fn publish(addr: SocketAddr, data_id: &str, group: &str, content: &str) -> (u16, String, String) {
    call(
        addr,
        "POST",
        CS,
        &[],
        &publish_body(data_id, group, content),
    )
}

/// `DELETE /nacos/v1/cs/configs` of `data_id` in `group`.
fn delete(addr: SocketAddr, data_id: &str, group: &str) -> (u16, String, String) {
    call(
        addr,
        "DELETE",
        &format!("{CS}?dataId={data_id}&group={group}"),
        &[],
        "",
    )
}

/// A listener's long poll for `entries` with `Long-Pulling-Timeout: <timeout_ms>`.
fn long_poll(
    addr: SocketAddr,
    timeout_ms: &str,
    entries: &[(&str, &str, Option<&str>, &str)],
) -> (u16, String, String) {
    call(
        addr,
        "POST",
        LISTENER,
        &[("Long-Pulling-Timeout", timeout_ms)],
        &probe(entries),
    )
}

/// Waits until the console counts one parked long poll.
fn wait_until_parked(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, console) = http(addr, "GET", "/rdubbo/console/api", "");
        let console: Value = serde_json::from_str(&console).unwrap();
        if console["configs"]["listeners"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the poll was never parked");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn publish_get_delete_and_compare_and_set_answer_as_nacos() {
    let server = start(NamingServerConfig::default()).await;
    let addr = server.local_addr();
    blocking(move || {
        let rule = "configVersion: v3.0\nscope: application\nkey: demo\nconfigs:\n- side: provider\n  parameters: {weight: 200}\n";
        // Nothing yet: 404 with Nacos' text.
        let (s, _, b) = get(addr, "dataId=demo.configurators&group=dubbo");
        assert_eq!((s, b.trim()), (404, "config data not exist"));
        let (s, _, b) = call(addr, "POST", CS, &[], &(publish_body("demo.configurators", "dubbo", rule) + "&type=yaml"));
        assert_eq!((s, b.as_str()), (200, "true"));
        let (s, head, b) = get(addr, "dataId=demo.configurators&group=dubbo");
        assert_eq!((s, b.as_str()), (200, rule));
        assert!(head.contains(&format!("content-md5: {}", content_md5(Some(rule)))), "{head}");
        assert!(head.to_ascii_lowercase().contains("config-type: yaml"), "{head}");
        // Another tenant does not see it; the public namespace by name does.
        let (s, _, _) = get(addr, "dataId=demo.configurators&group=dubbo&tenant=dev");
        assert_eq!(s, 404);
        let (s, _, _) = get(addr, "dataId=demo.configurators&group=dubbo&tenant=public");
        assert_eq!(s, 200);

        // Compare-and-set as Dubbo's mapping does it: "0" creates, the old MD5 replaces,
        // a stale MD5 is refused and changes nothing.
        let m = "com.foo.Bar";
        let (s, _, b) = call(addr, "POST", CS, &[("casMd5", "0")], &publish_body(m, "mapping", "app1"));
        assert_eq!((s, b.as_str()), (200, "true"));
        let md5 = content_md5(Some("app1"));
        let (s, _, _) = call(addr, "POST", CS, &[("casMd5", &md5)], &publish_body(m, "mapping", "app1,app2"));
        assert_eq!(s, 200);
        let (s, _, b) = call(addr, "POST", CS, &[("casMd5", &md5)], &publish_body(m, "mapping", "app1,app3"));
        assert_eq!(s, 409, "{b}");
        assert!(b.contains("Cas publish fail"), "{b}");
        let (_, _, b) = get(addr, &format!("dataId={m}&group=mapping"));
        assert_eq!(b, "app1,app2");

        // Search: the keys of a group, as Java's NacosDynamicConfiguration lists them.
        let (s, _, b) = get(addr, "search=accurate&dataId=&group=mapping&pageNo=1&pageSize=10");
        assert_eq!(s, 200, "{b}");
        let page: Value = serde_json::from_str(&b).unwrap();
        assert_eq!(page["totalCount"], 1);
        assert_eq!(page["pageItems"][0]["dataId"], m);
        assert_eq!(page["pageItems"][0]["content"], "app1,app2");

        // Bad requests.
        let (s, _, b) = publish(addr, "x", "dubbo", "  ");
        assert_eq!(s, 400, "{b}");
        let (s, _, _) = publish(addr, "bad id", "dubbo", "c");
        assert_eq!(s, 400);
        let (s, _, _) = get(addr, "group=dubbo");
        assert_eq!(s, 400);

        // Delete: `true`, also for what is not there.
        for _ in 0..2 {
            let (s, _, b) = delete(addr, "demo.configurators", "dubbo");
            assert_eq!((s, b.as_str()), (200, "true"));
        }
        let (s, _, _) = get(addr, "dataId=demo.configurators&group=dubbo");
        assert_eq!(s, 404);
        assert_eq!(http(addr, "GET", "/rdubbo/console/api", "").0, 200);
        let (_, console) = http(addr, "GET", "/rdubbo/console/api", "");
        let console: Value = serde_json::from_str(&console).unwrap();
        assert_eq!(console["configs"]["count"], 1);
        assert_eq!(console["configs"]["items"][0]["dataId"], m);
    })
    .await;
    assert_eq!(server.stats().configs, 1);
    server.stop().await;
}

#[tokio::test]
async fn a_long_poll_answers_changed_keys_at_once_or_when_they_change() {
    let server = start(NamingServerConfig::default()).await;
    let addr = server.local_addr();
    blocking(move || {
        publish(addr, "a", "dubbo", "one");
        // The client has an old MD5 of `a`: answered at once, URL-encoded as Nacos does.
        let (s, head, b) = long_poll(
            addr,
            "30000",
            &[("a", "dubbo", Some("old"), ""), ("b", "dubbo", None, "")],
        );
        assert_eq!((s, b.as_str()), (200, "a%02dubbo%01"), "{head}");
        // Up to date: parked until `b` is published (by another connection), then `b`.
        let t = Instant::now();
        let waiter = std::thread::spawn(move || {
            long_poll(
                addr,
                "30000",
                &[
                    ("a", "dubbo", Some("one"), ""),
                    ("b", "dubbo", None, ""),
                    ("c", "dubbo", None, "dev"),
                ],
            )
        });
        // Wait until it is parked (the server counts it), then publish.
        wait_until_parked(addr);
        call(
            addr,
            "POST",
            CS,
            &[],
            &(publish_body("c", "dubbo", "x") + "&tenant=dev"),
        );
        let (s, _, b) = waiter.join().unwrap();
        assert_eq!((s, b.as_str()), (200, "c%02dubbo%02dev%01"));
        assert!(t.elapsed() < Duration::from_secs(10));
        // A deletion is a change too.
        let waiter = std::thread::spawn(move || {
            long_poll(addr, "30000", &[("a", "dubbo", Some("one"), "")])
        });
        wait_until_parked(addr);
        delete(addr, "a", "dubbo");
        let (s, _, b) = waiter.join().unwrap();
        assert_eq!((s, b.as_str()), (200, "a%02dubbo%01"));
        // Nothing changes: an empty answer after the timeout less 500 ms.
        let t = Instant::now();
        let (s, _, b) = long_poll(addr, "1500", &[("a", "dubbo", None, "")]);
        assert_eq!((s, b.as_str()), (200, ""));
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(5),
            "{took:?}"
        );
        // No hang-up asked, or no timeout at all: at once.
        let (s, _, b) = call(
            addr,
            "POST",
            LISTENER,
            &[
                ("Long-Pulling-Timeout", "30000"),
                ("Long-Pulling-Timeout-No-Hangup", "true"),
            ],
            &probe(&[("a", "dubbo", None, "")]),
        );
        assert_eq!((s, b.as_str()), (200, ""));
        let (s, _, _) = call(addr, "POST", LISTENER, &[], "Listening-Configs=");
        assert_eq!(s, 400);
    })
    .await;
    server.stop().await;
}

#[tokio::test]
async fn configs_survive_a_restart_and_limits_hold() {
    let dir = std::env::temp_dir().join(format!("rdubbo-configs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = NamingServerConfig {
        data_dir: Some(dir.clone()),
        max_config_size: 1000,
        max_configs: 3,
        max_long_polls: 1,
        ..Default::default()
    };
    let server = start(config.clone()).await;
    let addr = server.local_addr();
    blocking(move || {
        for k in ["k1", "k2"] {
            let (s, _, _) = publish(addr, k, "dubbo", &format!("content of {k}"));
            assert_eq!(s, 200);
        }
        delete(addr, "k2", "dubbo");
        let (s, _, b) = publish(addr, "big", "dubbo", &"x".repeat(1001));
        assert_eq!(s, 400, "{b}");
        assert!(b.contains("too long"), "{b}");
        for k in ["k3", "k4"] {
            assert_eq!(publish(addr, k, "dubbo", "v").0, 200);
        }
        let (s, _, b) = publish(addr, "k5", "dubbo", "v");
        assert_eq!(s, 400, "{b}");
        // One parked poll at most: a second waiting one is refused, one that need not wait
        // is answered.
        let first = std::thread::spawn(move || {
            long_poll(addr, "3000", &[("k1", "dubbo", Some("content of k1"), "")])
        });
        wait_until_parked(addr);
        let (s, _, _) = long_poll(addr, "3000", &[("k1", "dubbo", Some("content of k1"), "")]);
        assert_eq!(s, 503);
        let (s, _, b) = long_poll(addr, "3000", &[("k1", "dubbo", None, "")]);
        assert_eq!((s, b.as_str()), (200, "k1%02dubbo%01"));
        assert_eq!(first.join().unwrap().0, 200);
    })
    .await;
    assert_eq!(server.stats().config_long_polls_refused, 1);
    server.stop().await;

    let server = start(config).await;
    let addr = server.local_addr();
    blocking(move || {
        let (s, _, b) = get(addr, "dataId=k1&group=dubbo");
        assert_eq!((s, b.as_str()), (200, "content of k1"));
        let (s, _, _) = get(addr, "dataId=k2&group=dubbo");
        assert_eq!(s, 404);
    })
    .await;
    assert_eq!(server.stats().configs, 3);
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_config_api_needs_a_login_when_the_naming_api_does() {
    let server = start(NamingServerConfig {
        auth: Some(("nacos".into(), "secret".into())),
        ..Default::default()
    })
    .await;
    let addr = server.local_addr();
    blocking(move || {
        let (s, _, _) = publish(addr, "a", "dubbo", "x");
        assert_eq!(s, 403);
        let (s, _, b) = call(
            addr,
            "POST",
            "/nacos/v1/auth/login",
            &[],
            "username=nacos&password=secret",
        );
        assert_eq!(s, 200, "{b}");
        let token = serde_json::from_str::<Value>(&b).unwrap()["accessToken"]
            .as_str()
            .unwrap()
            .to_owned();
        let (s, _, _) = call(
            addr,
            "POST",
            CS,
            &[],
            &(publish_body("a", "dubbo", "x") + "&accessToken=" + &token),
        );
        assert_eq!(s, 200);
        let (s, _, b) = get(addr, &format!("dataId=a&group=dubbo&accessToken={token}"));
        assert_eq!((s, b.as_str()), (200, "x"));
    })
    .await;
    server.stop().await;
}

#[tokio::test]
async fn parked_long_polls_make_room_at_the_connection_limit() {
    let server = start(NamingServerConfig {
        max_connections: 3,
        ..Default::default()
    })
    .await;
    let addr = server.local_addr();
    blocking(move || {
        // Three polls take every slot and wait for a change that does not come.
        let pollers: Vec<_> = (0..3)
            .map(|_| {
                std::thread::spawn(move || long_poll(addr, "20000", &[("a", "dubbo", None, "")]))
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // Each look takes a slot too: it may itself evict a poll once all three wait.
            let (s, _, b) = get(addr, "dataId=a&group=dubbo");
            assert_eq!(s, 404, "{b}");
            let stats_polls = http(addr, "GET", "/rdubbo/console/api", "").1;
            let v: Value = serde_json::from_str(&stats_polls).unwrap_or(Value::Null);
            if v["configs"]["listeners"].as_u64().unwrap_or(0) >= 2 {
                break;
            }
            assert!(Instant::now() < deadline, "the polls were never parked");
            std::thread::sleep(Duration::from_millis(20));
        }
        // Slots are all parked polls now: newcomers are served, and once a poll has waited
        // a moment it gives way (its client sees the connection close).
        let deadline = Instant::now() + Duration::from_secs(10);
        while !pollers.iter().any(|p| p.is_finished()) {
            let (s, _, _) = get(addr, "dataId=a&group=dubbo");
            assert_eq!(s, 404);
            assert!(Instant::now() < deadline, "no parked poll gave way");
            std::thread::sleep(Duration::from_millis(20));
        }
        // The evicted polls end without an answer (their clients poll again); a change
        // answers the ones still parked.
        publish(addr, "a", "dubbo", "x");
        for p in pollers {
            let (s, _, b) = p.join().unwrap();
            assert!(s == 0 || (s == 200 && b == "a%02dubbo%01"), "{s} {b}");
        }
    })
    .await;
    assert!(
        server.stats().connections_evicted >= 1,
        "{:?}",
        server.stats()
    );
    assert_eq!(
        server.stats().connections_refused,
        0,
        "{:?}",
        server.stats()
    );
    server.stop().await;
}
