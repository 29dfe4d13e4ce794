//! JSON-RPC 2.0 as the server answers it and the client speaks it: results and errors,
//! every error code, notifications, batches and ids, versions at one path, attachments as
//! headers, HTTP methods.

use super::*;

#[tokio::test]
async fn calls_succeed_and_service_errors_travel() {
    let (server, _) = start(|b| b).await;
    let c = client(server.local_addr(), "timeout=2000");
    assert_eq!(
        c.invoke(call("echo", vec![json!({"a": [1, "x"]})]))
            .await
            .unwrap(),
        json!({"a": [1, "x"]})
    );
    assert_eq!(
        c.invoke(call("add", vec![json!(2), json!(40)]))
            .await
            .unwrap(),
        json!(42)
    );
    let e = c
        .invoke(call("fail", vec![json!("boom")]))
        .await
        .unwrap_err();
    assert_eq!(e, RpcError::service("boom"));
    assert_eq!(e.code(), codes::SERVICE_ERROR);
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn every_json_rpc_error_code() {
    let (server, _) = start(|b| b).await;
    let addr = server.local_addr();
    let code_of = |resp: &str| body_of(resp)["error"]["code"].as_i64();

    // -32700: not JSON.
    let r = rpc(addr, "{not json").await;
    assert_eq!(code_of(&r), Some(codes::PARSE_ERROR), "{r}");
    // -32600: JSON, but not a request.
    let r = rpc(addr, r#"{"jsonrpc":"2.0","id":7}"#).await;
    assert_eq!(code_of(&r), Some(codes::INVALID_REQUEST), "{r}");
    assert_eq!(body_of(&r)["id"], json!(7));
    let r = rpc(addr, "[]").await;
    assert_eq!(code_of(&r), Some(codes::INVALID_REQUEST), "{r}");
    // -32601: unknown method, and unknown service path.
    let r = rpc(
        addr,
        r#"{"jsonrpc":"2.0","method":"nope","params":[],"id":1}"#,
    )
    .await;
    assert_eq!(code_of(&r), Some(codes::METHOD_NOT_FOUND), "{r}");
    let r = raw_http(
        addr,
        &post(
            "com.example.Missing",
            r#"{"jsonrpc":"2.0","method":"echo","params":[],"id":1}"#,
            "",
        ),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
    assert_eq!(code_of(&r), Some(codes::METHOD_NOT_FOUND), "{r}");
    assert!(r.contains("com.example.Missing"), "{r}");
    // -32602: params not positional, and params the method rejects.
    let r = rpc(
        addr,
        r#"{"jsonrpc":"2.0","method":"echo","params":{"x":1},"id":1}"#,
    )
    .await;
    assert_eq!(code_of(&r), Some(codes::INVALID_PARAMS), "{r}");
    let r = rpc(
        addr,
        r#"{"jsonrpc":"2.0","method":"add","params":["a"],"id":1}"#,
    )
    .await;
    assert_eq!(code_of(&r), Some(codes::INVALID_PARAMS), "{r}");
    // -32603: internal error from the service.
    let r = rpc(
        addr,
        r#"{"jsonrpc":"2.0","method":"internal","params":[],"id":1}"#,
    )
    .await;
    assert_eq!(code_of(&r), Some(codes::INTERNAL_ERROR), "{r}");

    // The client surfaces remote codes as such.
    let c = client(addr, "");
    let e = c.invoke(call("nope", vec![])).await.unwrap_err();
    assert_eq!(e.code(), codes::METHOD_NOT_FOUND);
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn notifications_batches_and_ids() {
    let (server, started) = start(|b| b).await;
    let addr = server.local_addr();
    // A notification gets no body.
    let r = rpc(addr, r#"{"jsonrpc":"2.0","method":"echo","params":[1]}"#).await;
    assert!(r.starts_with("HTTP/1.1 204"), "{r}");
    assert_eq!(
        started.load(Ordering::SeqCst),
        1,
        "a notification is still executed"
    );
    // A string id is echoed as a string; a large id as sent.
    let r = rpc(
        addr,
        r#"{"jsonrpc":"2.0","method":"echo","params":[1],"id":"abc"}"#,
    )
    .await;
    assert_eq!(body_of(&r), json!({"jsonrpc":"2.0","id":"abc","result":1}));
    // A mixed batch: results in order, notifications left out, bad entries answered.
    let batch = r#"[{"jsonrpc":"2.0","method":"add","params":[1,2],"id":1},
                    {"jsonrpc":"2.0","method":"echo","params":["n"]},
                    42,
                    {"jsonrpc":"2.0","method":"nope","id":3}]"#;
    let r = rpc(addr, batch).await;
    let v = body_of(&r);
    let items = v.as_array().unwrap_or_else(|| panic!("{r}"));
    assert_eq!(items.len(), 3, "{v}");
    assert_eq!(items[0], json!({"jsonrpc":"2.0","id":1,"result":3}));
    assert_eq!(items[1]["error"]["code"], json!(codes::INVALID_REQUEST));
    assert_eq!(items[1]["id"], Value::Null);
    assert_eq!(items[2]["error"]["code"], json!(codes::METHOD_NOT_FOUND));
    assert_eq!(items[2]["id"], json!(3));
    // An all-notification batch: no content.
    let r = rpc(addr, r#"[{"jsonrpc":"2.0","method":"echo","params":[1]}]"#).await;
    assert!(r.starts_with("HTTP/1.1 204"), "{r}");
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn client_ids_stay_within_int32() {
    // The client's ids are masked to 31 bits; a server that checks would fail otherwise.
    let (server, _) = start(|b| b).await;
    let c = client(server.local_addr(), "");
    for i in 0..50 {
        assert_eq!(
            c.invoke(call("echo", vec![json!(i)])).await.unwrap(),
            json!(i)
        );
    }
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn versions_at_one_path_and_attachments_as_headers() {
    let (v1, _) = service("1.0.0");
    let (v0, _) = service("unversioned");
    let server = JsonRpcServer::builder()
        .export(IFACE, info(Some("1.0.0")), v1)
        .export(IFACE, info(None), v0)
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let c = client(server.local_addr(), "");
    let versioned = call("whoami", vec![]).with_version(Some("1.0.0"));
    assert_eq!(c.invoke(versioned).await.unwrap(), json!("1.0.0"));
    assert_eq!(
        c.invoke(call("whoami", vec![])).await.unwrap(),
        json!("unversioned")
    );
    let e = c
        .invoke(call("whoami", vec![]).with_version(Some("9.9")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), codes::METHOD_NOT_FOUND);
    let mut with_tag = call("attachment", vec![json!("dubbo.tag")]);
    with_tag.attachments.insert("dubbo.tag", "gray");
    assert_eq!(c.invoke(with_tag).await.unwrap(), json!("gray"));
    assert_eq!(server.exports().len(), 2);
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn options_and_other_http_methods() {
    let (server, _) = start(|b| b).await;
    let addr = server.local_addr();
    let r = raw_http(
        addr,
        format!("OPTIONS /{IFACE} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let r = raw_http(
        addr,
        format!("GET /{IFACE} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 405"), "{r}");
    server.shutdown(Duration::from_secs(1)).await;
}
