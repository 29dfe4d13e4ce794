//! The tonic peer of `transport-bench`: a tonic server and client doing a unary echo of a
//! protobuf message holding the same string as the rdubbo transports' `echo`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use anyhow::Result;
use tokio::net::TcpListener;
use tonic_prost::ProstCodec;

/// `message Echo { string text = 1; }`
#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoMsg {
    /// The text echoed.
    #[prost(string, tag = "1")]
    pub text: String,
}

/// What generated code would be for `service Echo { rpc Echo(Echo) returns (Echo); }`.
#[derive(Clone)]
struct EchoService;

impl tonic::server::NamedService for EchoService {
    const NAME: &'static str = "bench.Echo";
}

impl tower::Service<http::Request<tonic::body::Body>> for EchoService {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(async move {
            let echo = tower::service_fn(|r: tonic::Request<EchoMsg>| async move {
                Ok::<_, tonic::Status>(tonic::Response::new(r.into_inner()))
            });
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<EchoMsg, EchoMsg>::default());
            Ok(grpc.unary(echo, req).await)
        })
    }
}

/// Serves the echo on `listen` and prints `LISTENING <addr>`.
pub async fn serve(listen: SocketAddr) -> Result<()> {
    let listener = TcpListener::bind(listen).await?;
    super::announce(listener.local_addr()?);
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .add_service(EchoService)
        .serve_with_incoming(incoming)
        .await?;
    Ok(())
}

/// A tonic client: one HTTP/2 connection, cloned by every caller.
pub type Client = tonic::client::Grpc<tonic::transport::Channel>;

/// Connects to the server at `addr`.
pub async fn connect(addr: SocketAddr) -> Result<Client> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .tcp_nodelay(true)
        .connect()
        .await?;
    Ok(tonic::client::Grpc::new(channel))
}

/// One echo call.
pub async fn call(client: &mut Client) -> Result<()> {
    client.ready().await?;
    let reply = client
        .unary(
            tonic::Request::new(EchoMsg {
                text: String::from("hello, rdubbo"),
            }),
            http::uri::PathAndQuery::from_static("/bench.Echo/Echo"),
            ProstCodec::<EchoMsg, EchoMsg>::default(),
        )
        .await?;
    anyhow::ensure!(!reply.get_ref().text.is_empty(), "empty echo");
    Ok(())
}
