//! Login, tokens and their expiry, and the throttling of failed logins.

use super::*;

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
