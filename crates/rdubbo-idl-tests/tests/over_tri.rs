//! The generated client against the generated server, in-process and over `tri`
//! (HTTP/2, gRPC framing): unary, each streaming kind, statuses, deadlines,
//! cancellation, health and reflection through their generated clients.

mod common;

use std::sync::Arc;
use std::time::Duration;

use rdubbo::grpc::proto::health::v1::{HealthCheckRequest, HealthClient};
use rdubbo::grpc::proto::reflection::v1::{
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    ServerReflectionClient, ServerReflectionRequest,
};
use rdubbo::grpc::ServingStatus;
use rdubbo::idl::Streaming;
use rdubbo::triple::codec::{grpc, status_of};
use rdubbo::triple::TripleClient;
use rdubbo::{Invoker, Url};
use rdubbo_idl_tests::echo::{EchoClient, EchoRequest, EchoServer};
use rdubbo_idl_tests::greeter::{GreeterClient, HelloRequest};
use rdubbo_idl_tests::EchoService;

fn tri(addr: std::net::SocketAddr, service: &str) -> Arc<dyn Invoker> {
    let url: Url = format!("tri://{addr}/{service}").parse().unwrap();
    Arc::new(TripleClient::new(&url).unwrap())
}

fn req(message: &str) -> EchoRequest {
    EchoRequest {
        message: message.into(),
        ..Default::default()
    }
}

/// Every kind of call through `client`.
async fn every_kind(client: &EchoClient) {
    assert_eq!(client.unary_echo(req("one")).await.unwrap().message, "one");

    let answers = client
        .server_streaming_echo(EchoRequest {
            count: 5,
            ..req("s")
        })
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap();
    let indexes: Vec<i32> = answers.iter().map(|a| a.index).collect();
    assert_eq!(indexes, vec![0, 1, 2, 3, 4]);

    let joined = client
        .client_streaming_echo(vec![req("a"), req("b"), req("c")])
        .await
        .unwrap();
    assert_eq!((joined.message.as_str(), joined.index), ("a,b,c", 3));

    // Bidirectional, one at a time: each answer comes before the next request is sent.
    let (tx, requests) = Streaming::channel(1);
    let mut answers = client.bidirectional_streaming_echo(requests).await.unwrap();
    for word in ["x", "y", "z"] {
        tx.send(&req(word)).await.unwrap();
        let answer = answers.message().await.unwrap().unwrap();
        assert_eq!(answer.message, word);
    }
    tx.finish();
    assert!(answers.message().await.unwrap().is_none());

    client.ping(()).await.unwrap();
}

/// Statuses: a service error, an error after streamed answers, in a client stream.
async fn statuses(client: &EchoClient) {
    let err = client
        .unary_echo(EchoRequest {
            fail: true,
            ..req("no")
        })
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), grpc::INVALID_ARGUMENT, "{err:?}");
    assert!(err.to_string().contains("refused: no"), "{err}");

    let mut answers = client
        .server_streaming_echo(EchoRequest {
            count: 2,
            fail: true,
            ..req("late")
        })
        .await
        .unwrap();
    assert_eq!(answers.message().await.unwrap().unwrap().index, 0);
    assert_eq!(answers.message().await.unwrap().unwrap().index, 1);
    let err = answers.message().await.unwrap_err();
    assert_eq!(status_of(&err), grpc::INVALID_ARGUMENT, "{err:?}");

    let err = client
        .client_streaming_echo(vec![
            req("a"),
            EchoRequest {
                fail: true,
                ..req("b")
            },
        ])
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), grpc::INVALID_ARGUMENT, "{err:?}");
}

#[tokio::test]
async fn in_process() {
    let echo = EchoService::default();
    let client = EchoClient::new(Arc::new(EchoServer::new(echo.clone())));
    every_kind(&client).await;
    statuses(&client).await;
}

#[tokio::test]
async fn over_tri_every_kind_and_statuses() {
    let running = common::start().await;
    let client = EchoClient::new(tri(running.addr, "rdubbo.echo.Echo"));
    every_kind(&client).await;
    statuses(&client).await;
    let greeter = GreeterClient::new(tri(running.addr, "helloworld.Greeter"));
    let hello = greeter
        .say_hello(HelloRequest { name: "tri".into() })
        .await
        .unwrap();
    assert_eq!(hello.message, "Hello tri");
    running.provider.stop().await;
}

#[tokio::test]
async fn over_tri_deadlines_and_cancellation() {
    let running = common::start().await;
    let client = EchoClient::new(tri(running.addr, "rdubbo.echo.Echo"))
        .with_timeout(Duration::from_millis(300));
    let slow = EchoRequest {
        delay_ms: 5_000,
        ..req("slow")
    };
    let err = client.unary_echo(slow.clone()).await.unwrap_err();
    assert_eq!(status_of(&err), grpc::DEADLINE_EXCEEDED, "{err:?}");

    // The deadline covers a whole stream: 2 answers 100 ms apart fit, 50 do not.
    let mut answers = client
        .server_streaming_echo(EchoRequest {
            count: 50,
            delay_ms: 100,
            ..req("tick")
        })
        .await
        .unwrap();
    let mut got = 0;
    let err = loop {
        match answers.message().await {
            Ok(Some(_)) => got += 1,
            Ok(None) => panic!("the stream ended cleanly after {got} answers"),
            Err(e) => break e,
        }
    };
    assert!((1..50).contains(&got), "{got} answers before the deadline");
    assert_eq!(status_of(&err), grpc::DEADLINE_EXCEEDED, "{err:?}");
    common::cancelled(&running.echo, 1).await;

    // The caller drops the stream after two answers: the service sees it go.
    let client = EchoClient::new(tri(running.addr, "rdubbo.echo.Echo"));
    let mut answers = client
        .server_streaming_echo(EchoRequest {
            count: 1_000,
            delay_ms: 20,
            ..req("tick")
        })
        .await
        .unwrap();
    answers.message().await.unwrap().unwrap();
    answers.message().await.unwrap().unwrap();
    drop(answers);
    common::cancelled(&running.echo, 2).await;
    running.provider.stop().await;
}

#[tokio::test]
async fn health_follows_the_provider_and_reflection_lists_the_idl_services() {
    let running = common::start().await;
    let health = HealthClient::new(tri(running.addr, "grpc.health.v1.Health"));
    let ask = |s: &str| HealthCheckRequest { service: s.into() };
    for service in ["", "rdubbo.echo.Echo", "helloworld.Greeter"] {
        let status = health.check(ask(service)).await.unwrap().status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }
    let err = health.check(ask("no.Such")).await.unwrap_err();
    assert_eq!(status_of(&err), grpc::NOT_FOUND, "{err:?}");
    let mut watch = health.watch(ask("rdubbo.echo.Echo")).await.unwrap();
    assert_eq!(
        watch.message().await.unwrap().unwrap().status,
        ServingStatus::Serving as i32
    );
    running.provider.unregister().await;
    assert_eq!(
        watch.message().await.unwrap().unwrap().status,
        ServingStatus::NotServing as i32
    );
    assert_eq!(
        health.check(ask("")).await.unwrap().status,
        ServingStatus::NotServing as i32
    );

    let reflection =
        ServerReflectionClient::new(tri(running.addr, "grpc.reflection.v1.ServerReflection"));
    let asks = vec![
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        },
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol(
                "rdubbo.echo.Echo".into(),
            )),
        },
    ];
    let answers = reflection
        .server_reflection_info(asks)
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = &answers[0].message_response else {
        panic!("{:?}", answers[0])
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
            "helloworld.Greeter",
            "rdubbo.echo.Echo",
        ]
    );
    let Some(MessageResponse::FileDescriptorResponse(files)) = &answers[1].message_response else {
        panic!("{:?}", answers[1])
    };
    // echo.proto and the google/protobuf/empty.proto it imports.
    assert_eq!(files.file_descriptor_proto.len(), 2);
    running.provider.stop().await;
}

#[tokio::test]
async fn without_grpc_builtins_there_is_no_health_service() {
    let provider = rdubbo::provider::Provider::builder("127.0.0.1:0".parse().unwrap())
        .protocol("tri")
        .grpc_builtins(false)
        .export(
            EchoServer::<EchoService>::info(),
            Arc::new(EchoServer::new(EchoService::default())),
        )
        .start()
        .await
        .unwrap();
    assert!(provider.health().is_none());
    let health = HealthClient::new(tri(provider.local_addr(), "grpc.health.v1.Health"));
    let err = health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), grpc::UNIMPLEMENTED, "{err:?}");
    let echo = EchoClient::new(tri(provider.local_addr(), "rdubbo.echo.Echo"));
    assert_eq!(
        echo.unary_echo(req("still")).await.unwrap().message,
        "still"
    );
    provider.stop().await;
}
