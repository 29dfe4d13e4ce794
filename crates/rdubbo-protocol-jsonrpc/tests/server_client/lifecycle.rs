//! Stopping: calls in flight finish, calls racing the stop are answered, and a closed port
//! is a connect error.

use super::*;

#[tokio::test(start_paused = true)]
async fn graceful_stop_loses_no_call_in_flight() {
    let (server, started) = start(|b| b).await;
    let addr = server.local_addr();
    let c = client(addr, "timeout=10000");
    let calls: Vec<_> = (0..50)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move { c.invoke(call("sleep", vec![json!(300 + i)])).await })
        })
        .collect();
    wait_until("50 calls in the service", || {
        started.load(Ordering::SeqCst) == 50
    })
    .await;
    server.shutdown(Duration::from_secs(10)).await;
    for (i, h) in calls.into_iter().enumerate() {
        assert_eq!(h.await.unwrap().unwrap(), json!(300 + i), "call {i} lost");
    }
    // After the stop, nothing listens.
    let e = client(addr, "timeout=1000")
        .invoke(call("echo", vec![json!(1)]))
        .await
        .unwrap_err();
    assert!(matches!(e, RpcError::Connect { .. }), "{e}");
}

/// Calls racing a stop, over kept-alive connections: each gets a result or the retryable
/// "shutting down" answer (or, once the port is closed, a refused connection), never a
/// connection cut under a request it sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_racing_a_stop_are_answered() {
    let (server, _) = start(|b| b).await;
    let addr = server.local_addr();
    let c = client(addr, "timeout=3000");
    let stop_at = std::time::Instant::now() + Duration::from_millis(300);
    let workers: Vec<_> = (0..32)
        .map(|w| {
            let c = c.clone();
            tokio::spawn(async move {
                let (mut ok, mut refused, mut cut) = (0, 0, Vec::new());
                let end = stop_at + Duration::from_millis(700);
                let mut i = 0;
                while std::time::Instant::now() < end && i < 20_000 {
                    i += 1;
                    match c.invoke(call("echo", vec![json!(w)])).await {
                        Ok(_) => ok += 1,
                        Err(e) if e.code() == codes::SHUTTING_DOWN => refused += 1,
                        Err(RpcError::Connect { .. }) => {
                            refused += 1;
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        Err(e) => cut.push(e.to_string()),
                    }
                }
                (ok, refused, cut)
            })
        })
        .collect();
    tokio::time::sleep_until(stop_at.into()).await;
    server.shutdown(Duration::from_secs(2)).await;
    let (mut ok, mut refused, mut cut) = (0, 0, Vec::new());
    for w in workers {
        let (o, r, c) = w.await.unwrap();
        ok += o;
        refused += r;
        cut.extend(c);
    }
    assert!(ok > 0 && refused > 0, "ok {ok}, refused {refused}");
    assert!(
        cut.is_empty(),
        "{} calls cut: {:?}",
        cut.len(),
        &cut[..cut.len().min(3)]
    );
}

#[tokio::test]
async fn connection_refused_is_a_connect_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let e = client(port, "timeout=1000")
        .invoke(call("echo", vec![]))
        .await
        .unwrap_err();
    assert!(matches!(e, RpcError::Connect { .. }), "{e}");
    assert!(e.is_retryable() && e.is_provider_failure());
}
