//! The built-in filters see a streaming call over `tri` to its end, not to the hand-over of
//! its answer stream: `executes` (provider) and `actives` (consumer) hold the call's slot
//! until the stream ends (read to its end, failed, or dropped by its reader), the access
//! log writes the call's line at the end with how it ended, and least-active balancing
//! counts the call as active meanwhile. (Its own test binary: it installs a tracing
//! subscriber for the test's thread.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdubbo::app::{Application, Config, Format};
use rdubbo::error::codes;
use rdubbo::prelude::*;
use rdubbo::{Args, BoxFuture, MessageStream, Messages, MethodKind, Reply};

mod app_common;
use app_common::{eventually, registry, Captured};

const IFACE: &str = "limits.Ticker";

/// `limits.Ticker`: `Who` (unary) answers the provider's name; `Tick` (server-streaming;
/// the request names what to do): `hold` sends the name, waits for `release`, sends it
/// again and ends; `fail` sends it twice then fails; `endless` sends until its reader
/// goes.
struct Ticker {
    name: &'static str,
    release: Arc<tokio::sync::Notify>,
}

impl Invoker for Ticker {
    fn invoke(&self, inv: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        let release = self.release.clone();
        let name = Bytes::from_static(self.name.as_bytes());
        Box::pin(async move {
            let what = match inv.args {
                Args::Message(m) => m,
                Args::Stream(s) => s.take()?.next().await.transpose()?.unwrap_or_default(),
                other => return Err(RpcError::Invalid(format!("not a message: {other:?}"))),
            };
            if &*inv.method == "Who" {
                return Ok(Reply::Message(name));
            }
            let (sink, stream) = MessageStream::channel(1);
            tokio::spawn(async move {
                match &what[..] {
                    b"hold" => {
                        let _ = sink.send(name.clone()).await;
                        release.notified().await;
                        let _ = sink.send(name).await;
                        sink.finish();
                    }
                    b"fail" => {
                        let _ = sink.send(name.clone()).await;
                        let _ = sink.send(name).await;
                        sink.fail(RpcError::remote(codes::SERVICE_ERROR, "the ticker broke"))
                            .await;
                    }
                    _ => while sink.send(name.clone()).await.is_ok() {},
                }
            });
            Ok(Reply::Stream(stream))
        })
    }
}

fn info() -> ServiceInfo {
    ServiceInfo {
        interface: IFACE.into(),
        methods: vec!["Who".into(), "Tick".into()],
        idl: true,
        streams: vec![("Tick".into(), MethodKind::ServerStream)],
        ..Default::default()
    }
}

/// A tri provider of the ticker named `name`, with the service settings `service` and
/// the application settings `extra`.
async fn provider(
    name: &'static str,
    service: &str,
    extra: &str,
    release: &Arc<tokio::sync::Notify>,
) -> Application {
    let toml = format!(
        r#"
[application]
name = "{name}"
[protocols.tri]
port = 0
[provider.services.ticker]
interface = "{IFACE}"
{service}
[shutdown]
drain = "300ms"
unregister_wait = "0ms"
[qos]
enabled = false
[metrics]
listen = "127.0.0.1:0"
{extra}
"#
    );
    Application::builder(Config::from_str(&toml, Format::Toml, "provider.toml").unwrap())
        .service(
            "ticker",
            info(),
            Arc::new(Ticker {
                name,
                release: release.clone(),
            }),
        )
        .start()
        .await
        .unwrap()
}

/// The consumer application with its `ticker` reference: `registries` (a section, or
/// nothing) and `reference` (the reference's own lines besides its interface and a 10 s
/// timeout); metrics on, QoS off.
async fn consumer(registries: &str, reference: &str) -> Application {
    let toml = format!(
        r#"
[application]
name = "ticker-consumer"
{registries}
[consumer.references.ticker]
interface = "{IFACE}"
timeout = "10s"
{reference}
[qos]
enabled = false
[metrics]
listen = "127.0.0.1:0"
"#
    );
    Application::builder(Config::from_str(&toml, Format::Toml, "consumer.toml").unwrap())
        .start()
        .await
        .unwrap()
}

/// Opens `Tick` with `what` on `reference`, with a deadline of `timeout`.
async fn tick(
    reference: &Arc<dyn Invoker>,
    what: &'static str,
    timeout: Duration,
) -> RpcResult<Messages> {
    let args = Args::Stream(MessageStream::once(Bytes::from_static(what.as_bytes())));
    reference
        .invoke(Invocation::new(IFACE, "Tick", args).with_timeout(Some(timeout)))
        .await?
        .into_stream()?
        .take()
}

/// The first message of a `Tick` with `what` (the provider's name), and the stream.
async fn first(reference: &Arc<dyn Invoker>, what: &'static str) -> RpcResult<(String, Messages)> {
    let mut messages = tick(reference, what, Duration::from_secs(10)).await?;
    let name = messages.next().await.expect("a first item")?;
    Ok((String::from_utf8(name.to_vec()).unwrap(), messages))
}

/// Reads `messages` to their end: how many, and the error that ended them if one did.
async fn drain(mut messages: Messages) -> (usize, Option<RpcError>) {
    let mut n = 0;
    while let Some(m) = messages.next().await {
        match m {
            Ok(_) => n += 1,
            Err(e) => return (n, Some(e)),
        }
    }
    (n, None)
}

/// The access-log lines (target `rdubbo::access`, then the message: `ok`, `error`,
/// `cancelled`, then the fields) of `side` for `Tick` so far.
fn access_lines(captured: &Captured, side: &str) -> Vec<String> {
    captured
        .text()
        .lines()
        .filter(|l| l.contains("rdubbo::access") && l.contains(&format!("side={side}")))
        .filter(|l| l.contains("method=Tick"))
        .map(str::to_owned)
        .collect()
}

/// The value of `field=` in an access-log line.
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!(" {name}="))? + name.len() + 2;
    line[start..].split_whitespace().next()
}

#[tokio::test(flavor = "current_thread")]
async fn executes_and_the_access_log_count_a_stream_to_its_end() {
    let (captured, _guard) = Captured::install();
    let release = Arc::new(tokio::sync::Notify::new());
    let provider = provider(
        "ticker-a",
        "executes = 1\nparams = { accesslog = \"true\" }",
        "",
        &release,
    )
    .await;
    let addr = provider.server_addrs()[0].1;
    let consumer = consumer(
        "",
        &format!("url = \"tri://{addr}/{IFACE}\"\nparams = {{ accesslog = \"true\" }}"),
    )
    .await;
    let ticker = consumer.reference("ticker").unwrap();

    // A stream held open takes the one slot: a second is refused (busy) until it ends,
    // and neither side has logged it yet.
    let started = Instant::now();
    let (_, held) = first(&ticker, "hold").await.unwrap();
    let refused = first(&ticker, "hold").await.unwrap_err();
    assert_eq!(refused.code(), codes::SERVER_BUSY, "{refused}");
    assert!(refused.to_string().contains("executes=1"), "{refused}");
    for side in ["Provider", "Consumer"] {
        let open: Vec<_> = access_lines(&captured, side)
            .into_iter()
            .filter(|l| l.contains("stream=\"finished\""))
            .collect();
        assert!(open.is_empty(), "{side}: logged before the end: {open:?}");
    }
    tokio::time::sleep(Duration::from_millis(200)).await; // a duration worth measuring
    release.notify_one();
    assert_eq!(drain(held).await, (1, None));
    let held_us = started.elapsed().as_micros() as u64;
    // Ended: logged on both sides with the time to the end, and the slot is back.
    for side in ["Provider", "Consumer"] {
        eventually("the end of the held stream in the access log", || {
            access_lines(&captured, side)
                .iter()
                .any(|l| l.contains("stream=\"finished\""))
        })
        .await;
        let lines = access_lines(&captured, side);
        let line = lines
            .iter()
            .find(|l| l.contains("stream=\"finished\""))
            .unwrap();
        assert!(line.contains("rdubbo::access: ok "), "{line}");
        assert_eq!(field(line, "messages"), Some("2"), "{line}");
        let elapsed: u64 = field(line, "elapsed_us").unwrap().parse().unwrap();
        assert!(
            (200_000..=held_us).contains(&elapsed),
            "{side}: {elapsed} µs logged, the stream lasted {held_us} µs: {line}"
        );
    }

    // A stream the service fails: logged as failed, with the error; the slot is back.
    let (_, failing) = first(&ticker, "fail").await.unwrap();
    let (n, error) = drain(failing).await;
    assert_eq!(n, 1);
    assert!(error.unwrap().to_string().contains("the ticker broke"));
    for side in ["Provider", "Consumer"] {
        let broke = |l: &String| l.contains("the ticker broke");
        eventually("the failed stream in the access log", || {
            access_lines(&captured, side).iter().any(broke)
        })
        .await;
        let lines = access_lines(&captured, side);
        let line = lines.iter().find(|l| broke(l)).unwrap();
        assert!(
            line.contains("rdubbo::access: error ") && line.contains("stream=\"failed\""),
            "{line}"
        );
        assert_eq!(field(line, "messages"), Some("2"), "{line}");
    }

    // A stream its reader drops early holds the slot until the provider learns it (the
    // reset), then gives it back; both sides log it as cancelled.
    let (_, endless) = first(&ticker, "endless").await.unwrap();
    let refused = first(&ticker, "hold").await.unwrap_err();
    assert_eq!(refused.code(), codes::SERVER_BUSY, "{refused}");
    drop(endless);
    for side in ["Consumer", "Provider"] {
        eventually("the cancelled stream in the access log", || {
            access_lines(&captured, side).iter().any(|l| {
                l.contains("rdubbo::access: cancelled ") && l.contains("stream=\"cancelled\"")
            })
        })
        .await;
    }
    let (_, again) = first(&ticker, "fail").await.unwrap();
    drain(again).await;

    consumer.shutdown().await;
    provider.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn actives_waits_for_a_stream_to_end() {
    let release = Arc::new(tokio::sync::Notify::new());
    let provider = provider("ticker-a", "", "", &release).await;
    let addr = provider.server_addrs()[0].1;
    let consumer = consumer("", &format!("url = \"tri://{addr}/{IFACE}\"\nactives = 1")).await;
    let ticker = consumer.reference("ticker").unwrap();

    let (_, held) = first(&ticker, "hold").await.unwrap();
    // While it is open a second call waits for the slot, until its deadline.
    let waited = Instant::now();
    let timed_out = tick(&ticker, "fail", Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(timed_out, RpcError::Timeout(_)), "{timed_out}");
    assert!(waited.elapsed() >= Duration::from_millis(300));
    // Once it ends the slot is back; a stream its reader drops gives it back too.
    release.notify_one();
    assert_eq!(drain(held).await, (1, None));
    let (_, endless) = first(&ticker, "endless").await.unwrap();
    assert!(tick(&ticker, "fail", Duration::from_millis(300))
        .await
        .is_err());
    drop(endless);
    let (name, rest) = first(&ticker, "fail").await.unwrap();
    assert_eq!(name, "ticker-a");
    drain(rest).await;

    consumer.shutdown().await;
    provider.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn least_active_counts_an_open_stream() {
    let server = registry().await;
    let reg = server.registry_url();
    let release = Arc::new(tokio::sync::Notify::new());
    let registries = format!("[registries.main]\naddress = \"{reg}\"");
    let a = provider("ticker-a", "", &registries, &release).await;
    let b = provider("ticker-b", "", &registries, &release).await;
    let consumer = consumer(&registries, "loadbalance = \"leastactive\"").await;
    let ticker = consumer.reference("ticker").unwrap();
    let who = || {
        let ticker = ticker.clone();
        async move {
            let reply = ticker
                .invoke(
                    Invocation::new(IFACE, "Who", Args::Message(Bytes::new()))
                        .with_timeout(Some(Duration::from_secs(10))),
                )
                .await
                .unwrap();
            String::from_utf8(reply.into_message().await.unwrap().to_vec()).unwrap()
        }
    };
    // Both providers known (idle ones are picked at random).
    let mut seen = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.len() < 2 {
        assert!(Instant::now() < deadline, "both providers answer: {seen:?}");
        seen.insert(who().await);
    }

    // The provider holding an open stream is busier than the other: every call goes to
    // the other one while the stream lasts.
    let (busy, held) = first(&ticker, "hold").await.unwrap();
    for _ in 0..20 {
        assert_ne!(
            who().await,
            busy,
            "a provider with an open stream is not least active"
        );
    }
    release.notify_one();
    assert_eq!(drain(held).await, (1, None));
    // Ended: it is picked again.
    let deadline = Instant::now() + Duration::from_secs(10);
    while who().await != busy {
        assert!(
            Instant::now() < deadline,
            "{busy} picked again after the stream"
        );
    }

    consumer.shutdown().await;
    a.shutdown().await;
    b.shutdown().await;
}
