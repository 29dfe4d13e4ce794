//! `stream-bench`: messages per second of a server-streaming gRPC call, rdubbo's tri
//! (the `rdubbo.echo.Echo/ServerStreamingEcho` that `rdubbo-build` generates, client and
//! server) against tonic (client and server, the same messages and the same shape of
//! producer: a task feeding a channel of 8).
//!
//! Each server runs as its own process (its CPU read from `/proc/<pid>/stat`); per round
//! and kind, `streams` calls run at once, each asking for `messages` answers of
//! `"hello, rdubbo"`, over one HTTP/2 connection. Medians over the rounds are printed as a
//! Markdown table: messages/s, client and server CPU µs per message.

mod procstats;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use rdubbo_idl_tests::echo::{EchoClient, EchoRequest, EchoResponse, EchoServer};
use rdubbo_idl_tests::EchoService;
use tokio::io::{AsyncBufReadExt, BufReader};

const PATH: &str = "/rdubbo.echo.Echo/ServerStreamingEcho";

#[derive(Parser)]
#[command(about = "Server-streaming messages/s: rdubbo tri vs tonic")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve one kind (used by `run`, which spawns these as child processes).
    Server {
        /// Which server.
        kind: Kind,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
    /// Run the comparison and print a Markdown table.
    Run {
        /// Messages per stream.
        #[arg(long, default_value_t = 200_000)]
        messages: i32,
        /// Streams at once (over one connection).
        #[arg(long, default_value_t = 4)]
        streams: usize,
        /// Rounds; kinds are interleaved and medians reported.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Kind {
    Tri,
    Tonic,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Tri => "rdubbo tri (IDL)",
            Kind::Tonic => "tonic 0.14",
        }
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.cmd {
        Cmd::Server { kind, listen } => rt.block_on(serve(kind, listen)),
        Cmd::Run {
            messages,
            streams,
            rounds,
        } => rt.block_on(run(messages, streams, rounds)),
    }
}

fn announce(addr: SocketAddr) {
    println!("LISTENING {addr}");
}

async fn serve(kind: Kind, listen: SocketAddr) -> Result<()> {
    match kind {
        Kind::Tri => {
            let server = rdubbo::triple::TripleServer::builder()
                .export(
                    EchoServer::<EchoService>::info(),
                    Arc::new(EchoServer::new(EchoService::default())),
                )
                .bind(listen)
                .await?;
            announce(server.local_addr());
            std::future::pending::<()>().await;
            Ok(())
        }
        Kind::Tonic => tonic_stream::serve(listen).await,
    }
}

/// The tonic side: what tonic's generated code would be for the one method.
mod tonic_stream {
    use std::convert::Infallible;
    use std::future::Future;
    use std::net::SocketAddr;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use anyhow::Result;
    use rdubbo_idl_tests::echo::{EchoRequest, EchoResponse};
    use tokio::net::TcpListener;
    use tokio_stream::wrappers::ReceiverStream;
    use tonic_prost::ProstCodec;

    #[derive(Clone)]
    struct Echo;

    impl tonic::server::NamedService for Echo {
        const NAME: &'static str = "rdubbo.echo.Echo";
    }

    struct Streaming;

    impl tonic::server::ServerStreamingService<EchoRequest> for Streaming {
        type Response = EchoResponse;
        type ResponseStream = ReceiverStream<Result<EchoResponse, tonic::Status>>;
        type Future = Pin<
            Box<
                dyn Future<Output = Result<tonic::Response<Self::ResponseStream>, tonic::Status>>
                    + Send,
            >,
        >;

        fn call(&mut self, request: tonic::Request<EchoRequest>) -> Self::Future {
            let request = request.into_inner();
            Box::pin(async move {
                let (tx, rx) = tokio::sync::mpsc::channel(8);
                tokio::spawn(async move {
                    for index in 0..request.count {
                        let answer = EchoResponse {
                            message: request.message.clone(),
                            index,
                        };
                        if tx.send(Ok(answer)).await.is_err() {
                            return;
                        }
                    }
                });
                Ok(tonic::Response::new(ReceiverStream::new(rx)))
            })
        }
    }

    impl tower::Service<http::Request<tonic::body::Body>> for Echo {
        type Response = http::Response<tonic::body::Body>;
        type Error = Infallible;
        type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
            Box::pin(async move {
                let mut grpc =
                    tonic::server::Grpc::new(ProstCodec::<EchoResponse, EchoRequest>::default());
                Ok(grpc.server_streaming(Streaming, req).await)
            })
        }
    }

    /// Serves on `listen` and prints `LISTENING <addr>`.
    pub async fn serve(listen: SocketAddr) -> Result<()> {
        let listener = TcpListener::bind(listen).await?;
        super::announce(listener.local_addr()?);
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        tonic::transport::Server::builder()
            .add_service(Echo)
            .serve_with_incoming(incoming)
            .await?;
        Ok(())
    }
}

/// A server child process, killed on drop.
struct Child {
    child: tokio::process::Child,
    addr: SocketAddr,
}

impl Child {
    async fn spawn(kind: Kind) -> Result<Child> {
        let exe = std::env::current_exe()?;
        let mut child = tokio::process::Command::new(exe)
            .arg("server")
            .arg(format!("{kind:?}").to_lowercase())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .context("server start timed out")??
            .context("server exited")?;
        let addr = line
            .strip_prefix("LISTENING ")
            .ok_or_else(|| anyhow!("unexpected server output: {line}"))?
            .parse()?;
        Ok(Child { child, addr })
    }

    fn cpu_seconds(&self) -> f64 {
        self.child.id().map_or(0.0, procstats::process_cpu_seconds)
    }
}

/// One measurement: messages/s, client and server CPU µs per message.
struct Sample {
    rate: f64,
    client_us: f64,
    server_us: f64,
}

async fn measure(kind: Kind, server: &Child, messages: i32, streams: usize) -> Result<Sample> {
    let request = EchoRequest {
        message: "hello, rdubbo".into(),
        count: messages,
        ..Default::default()
    };
    let (c0, s0, t0);
    let mut tasks = tokio::task::JoinSet::new();
    match kind {
        Kind::Tri => {
            let url: rdubbo::Url = format!("tri://{}/rdubbo.echo.Echo", server.addr).parse()?;
            // The deadline covers the whole stream (Dubbo's default is 1 s).
            let client = EchoClient::new(Arc::new(rdubbo::triple::TripleClient::new(&url)?))
                .with_timeout(Duration::from_secs(600));
            // Warm the connection up.
            client.unary_echo(request.clone()).await?;
            (c0, s0, t0) = (procstats::cpu_ms(), server.cpu_seconds(), Instant::now());
            for _ in 0..streams {
                let (client, request) = (client.clone(), request.clone());
                tasks.spawn(async move {
                    let mut answers = client.server_streaming_echo(request).await?;
                    let mut n = 0u64;
                    while answers.message().await?.is_some() {
                        n += 1;
                    }
                    Ok::<u64, anyhow::Error>(n)
                });
            }
        }
        Kind::Tonic => {
            let channel =
                tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))?
                    .tcp_nodelay(true)
                    .connect()
                    .await?;
            let client = tonic::client::Grpc::new(channel);
            (c0, s0, t0) = (procstats::cpu_ms(), server.cpu_seconds(), Instant::now());
            for _ in 0..streams {
                let (mut client, request) = (client.clone(), request.clone());
                tasks.spawn(async move {
                    client.ready().await?;
                    let mut answers = client
                        .server_streaming(
                            tonic::Request::new(request),
                            http::uri::PathAndQuery::from_static(PATH),
                            tonic_prost::ProstCodec::<EchoRequest, EchoResponse>::default(),
                        )
                        .await?
                        .into_inner();
                    let mut n = 0u64;
                    while answers.message().await?.is_some() {
                        n += 1;
                    }
                    Ok::<u64, anyhow::Error>(n)
                });
            }
        }
    }
    let mut total = 0;
    while let Some(r) = tasks.join_next().await {
        total += r??;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let expected = messages as u64 * streams as u64;
    anyhow::ensure!(total == expected, "{total} messages, expected {expected}");
    let n = total as f64;
    Ok(Sample {
        rate: n / elapsed,
        client_us: (procstats::cpu_ms() - c0) * 1e3 / n,
        server_us: (server.cpu_seconds() - s0) * 1e6 / n,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

async fn run(messages: i32, streams: usize, rounds: usize) -> Result<()> {
    let kinds = [Kind::Tri, Kind::Tonic];
    let mut servers = Vec::new();
    for k in kinds {
        servers.push(Child::spawn(k).await?);
    }
    let mut samples: Vec<Vec<Sample>> = kinds.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds.max(1) {
        for (i, k) in kinds.iter().enumerate() {
            let s = measure(*k, &servers[i], messages, streams).await?;
            eprintln!(
                "round {round} {}: {:.0} msg/s, CPU µs/msg client {:.2} server {:.2}",
                k.name(),
                s.rate,
                s.client_us,
                s.server_us
            );
            samples[i].push(s);
        }
    }
    println!(
        "server streaming, {streams} streams × {messages} messages over one connection, median of {rounds} rounds"
    );
    println!();
    println!("| | messages/s | CPU µs/message client | CPU µs/message server |");
    println!("|---|---|---|---|");
    for (i, k) in kinds.iter().enumerate() {
        let s = &samples[i];
        println!(
            "| {} | {:.0}k | {:.2} | {:.2} |",
            k.name(),
            median(s.iter().map(|x| x.rate).collect()) / 1e3,
            median(s.iter().map(|x| x.client_us).collect()),
            median(s.iter().map(|x| x.server_us).collect()),
        );
    }
    Ok(())
}
