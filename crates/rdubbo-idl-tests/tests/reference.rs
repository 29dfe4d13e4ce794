//! The generated client over a `Reference` (registry, directory, cluster): two tri
//! providers registered in `memory://`, found by the consumer through it; unary and
//! streaming calls go through the cluster, and keep working when one provider stops.

use std::sync::Arc;
use std::time::Duration;

use rdubbo::consumer::Reference;
use rdubbo::provider::Provider;
use rdubbo_idl_tests::echo::{EchoClient, EchoRequest, EchoServer};
use rdubbo_idl_tests::EchoService;

async fn provider(registry: &str) -> Provider {
    let registry = rdubbo::registry::connect(registry).await.unwrap();
    Provider::builder("127.0.0.1:0".parse().unwrap())
        .protocol("tri")
        .unregister_wait(Duration::from_millis(50))
        .drain(Duration::from_millis(200))
        .registry(registry)
        .export(
            EchoServer::<EchoService>::info(),
            Arc::new(EchoServer::new(EchoService::default())),
        )
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn generated_client_over_a_reference_with_two_providers() {
    const REGISTRY: &str = "memory://idl-reference";
    let first = provider(REGISTRY).await;
    let second = provider(REGISTRY).await;
    let reference = Reference::builder("rdubbo.echo.Echo")
        .registry(rdubbo::registry::connect(REGISTRY).await.unwrap())
        .build()
        .await
        .unwrap();
    let client = EchoClient::new(Arc::new(reference)).with_timeout(Duration::from_secs(5));
    let request = |message: &str| EchoRequest {
        message: message.into(),
        count: 3,
        ..Default::default()
    };
    for i in 0..10 {
        let answer = client.unary_echo(request(&format!("n{i}"))).await.unwrap();
        assert_eq!(answer.message, format!("n{i}"));
    }
    let streamed = client
        .server_streaming_echo(request("s"))
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap();
    assert_eq!(streamed.len(), 3);
    let joined = client
        .client_streaming_echo(vec![request("a"), request("b")])
        .await
        .unwrap();
    assert_eq!(joined.message, "a,b");

    // One provider leaves (unregisters, then stops): calls go to the other.
    first.stop().await;
    for i in 0..10 {
        let answer = client.unary_echo(request(&format!("m{i}"))).await.unwrap();
        assert_eq!(answer.message, format!("m{i}"));
    }
    let bidi = client
        .bidirectional_streaming_echo(vec![request("x"), request("y")])
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap();
    assert_eq!(bidi.len(), 2);
    second.stop().await;
}
