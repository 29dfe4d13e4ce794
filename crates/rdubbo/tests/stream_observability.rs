//! An application's metrics and tracing see a streaming call to its end: a server-streaming
//! call over `tri` between two applications stays in flight until its answer stream ends,
//! its duration runs to that end, its messages are counted, an error that ends it or a
//! reader that drops it counts as the call's error, and its spans close with the stream
//! and say how it ended. (Its own test binary: it installs a tracing subscriber for the
//! test's thread.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdubbo::app::{Application, Config, Format};
use rdubbo::prelude::*;
use rdubbo::{Args, BoxFuture, MessageStream, MethodKind, Reply};

mod app_common;
use app_common::{eventually, Captured};

const IFACE: &str = "obs.Ticker";

/// `obs.Ticker/Tick` (server-streaming; the request is one message naming what to do):
/// `hold` sends one message, waits for `release`, sends another and ends; `fail` sends
/// two then fails; `endless` sends until its reader goes.
struct Ticker {
    release: Arc<tokio::sync::Notify>,
}

impl Invoker for Ticker {
    fn invoke(&self, inv: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        let release = self.release.clone();
        Box::pin(async move {
            let what = match inv.args {
                Args::Message(m) => m,
                Args::Stream(s) => s.take()?.next().await.transpose()?.unwrap_or_default(),
                other => return Err(RpcError::Invalid(format!("not a message: {other:?}"))),
            };
            let (sink, stream) = MessageStream::channel(1);
            tokio::spawn(async move {
                let tick = |n: u8| Bytes::from(vec![n]);
                match &what[..] {
                    b"hold" => {
                        let _ = sink.send(tick(1)).await;
                        release.notified().await;
                        let _ = sink.send(tick(2)).await;
                        sink.finish();
                    }
                    b"fail" => {
                        let _ = sink.send(tick(1)).await;
                        let _ = sink.send(tick(2)).await;
                        sink.fail(RpcError::remote(
                            rdubbo::error::codes::SERVICE_ERROR,
                            "the ticker broke",
                        ))
                        .await;
                    }
                    _ => {
                        let mut n = 0u8;
                        while sink.send(tick(n)).await.is_ok() {
                            n = n.wrapping_add(1);
                        }
                    }
                }
            });
            Ok(Reply::Stream(stream))
        })
    }
}

/// The value of the sample `name{labels…}` (labels in the order rendered), if present.
fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().parse().unwrap())
}

fn call_labels(side: &str) -> String {
    format!(r#"side="{side}",service="{IFACE}",method="Tick""#)
}

#[tokio::test(flavor = "current_thread")]
async fn metrics_and_spans_of_a_streaming_call_cover_the_whole_stream() {
    let (captured, _guard) = Captured::install();

    let provider_toml = format!(
        r#"
[application]
name = "ticker-app"
[protocols.tri]
port = 0
[provider.services.ticker]
interface = "{IFACE}"
[shutdown]
drain = "300ms"
[metrics]
listen = "127.0.0.1:0"
[qos]
enabled = false
"#
    );
    let release = Arc::new(tokio::sync::Notify::new());
    let info = ServiceInfo {
        interface: IFACE.into(),
        methods: vec!["Tick".into()],
        idl: true,
        streams: vec![("Tick".into(), MethodKind::ServerStream)],
        ..Default::default()
    };
    let provider = Application::builder(
        Config::from_str(&provider_toml, Format::Toml, "provider.toml").unwrap(),
    )
    .service(
        "ticker",
        info,
        Arc::new(Ticker {
            release: release.clone(),
        }),
    )
    .start()
    .await
    .unwrap();
    let addr = provider.server_addrs()[0].1;
    let consumer_toml = format!(
        r#"
[application]
name = "ticker-consumer"
[consumer.references.ticker]
interface = "{IFACE}"
url = "tri://{addr}/{IFACE}"
timeout = "10s"
[metrics]
listen = "127.0.0.1:0"
[qos]
enabled = false
"#
    );
    let consumer = Application::builder(
        Config::from_str(&consumer_toml, Format::Toml, "consumer.toml").unwrap(),
    )
    .start()
    .await
    .unwrap();
    let ticker = consumer.reference("ticker").unwrap();
    let tick = |what: &'static str| {
        let ticker = ticker.clone();
        async move {
            let args = Args::Stream(MessageStream::once(Bytes::from_static(what.as_bytes())));
            let reply = ticker
                .invoke(
                    Invocation::new(IFACE, "Tick", args)
                        .with_timeout(Some(Duration::from_secs(10))),
                )
                .await
                .unwrap();
            reply.into_stream().unwrap().take().unwrap()
        }
    };
    let metrics = |app: &Application| app.metrics().render();
    let both = [("provider", &provider), ("consumer", &consumer)];

    // A stream held open: in flight on both sides, no duration recorded yet.
    let started = Instant::now();
    let mut messages = tick("hold").await;
    assert_eq!(&messages.next().await.unwrap().unwrap()[..], [1]);
    for (side, app) in both {
        let text = metrics(app);
        let labels = call_labels(side);
        assert_eq!(
            sample(&text, "rdubbo_requests_total", &labels),
            Some(1.0),
            "{side}"
        );
        assert_eq!(
            sample(&text, "rdubbo_in_flight_requests", &labels),
            Some(1.0),
            "{side}: in flight until the stream ends\n{text}"
        );
        assert_eq!(
            sample(&text, "rdubbo_request_duration_seconds_count", &labels),
            None,
            "{side}: no duration before the end\n{text}"
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await; // a duration worth measuring
    release.notify_one();
    assert_eq!(&messages.next().await.unwrap().unwrap()[..], [2]);
    assert!(messages.next().await.is_none());
    let held = started.elapsed().as_secs_f64();
    // The provider's end is recorded before its trailers go; the consumer's as it read it.
    eventually("the provider's record of the end", || {
        sample(
            &metrics(&provider),
            "rdubbo_request_duration_seconds_count",
            &call_labels("provider"),
        ) == Some(1.0)
    })
    .await;
    for (side, app) in both {
        let text = metrics(app);
        let labels = call_labels(side);
        assert_eq!(
            sample(&text, "rdubbo_in_flight_requests", &labels),
            Some(0.0),
            "{side}"
        );
        assert_eq!(
            sample(&text, "rdubbo_request_duration_seconds_count", &labels),
            Some(1.0),
            "{side}\n{text}"
        );
        let sum = sample(&text, "rdubbo_request_duration_seconds_sum", &labels).unwrap();
        assert!(
            sum >= 0.2 && sum <= held + 0.05,
            "{side}: duration {sum} s, the stream lasted {held} s"
        );
        assert_eq!(
            sample(&text, "rdubbo_stream_messages_total", &labels),
            Some(2.0),
            "{side}"
        );
        assert!(
            !text.contains("rdubbo_errors_total{"),
            "{side}: no error\n{text}"
        );
    }

    // A stream ended by the service's error: the call's error, on both sides.
    let mut messages = tick("fail").await;
    let mut got = 0;
    let err = loop {
        match messages.next().await.unwrap() {
            Ok(_) => got += 1,
            Err(e) => break e,
        }
    };
    assert_eq!(got, 2);
    assert!(err.to_string().contains("the ticker broke"), "{err}");
    drop(messages);
    let service_error = |side: &str, text: &str| {
        text.lines()
            .filter(|l| l.starts_with(&format!("rdubbo_errors_total{{{}", call_labels(side))))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    eventually("the provider's record of the failure", || {
        !service_error("provider", &metrics(&provider)).is_empty()
    })
    .await;
    for (side, app) in both {
        let text = metrics(app);
        let errors = service_error(side, &text);
        assert_eq!(errors.len(), 1, "{side}: {errors:?}");
        assert!(
            errors[0].ends_with(" 1") && !errors[0].contains("cancelled"),
            "{side}: {errors:?}"
        );
        assert_eq!(
            sample(&text, "rdubbo_stream_messages_total", &call_labels(side)),
            Some(4.0),
            "{side}"
        );
        assert_eq!(
            sample(&text, "rdubbo_in_flight_requests", &call_labels(side)),
            Some(0.0),
            "{side}"
        );
    }

    // A reader that drops the stream midway: cancelled on both sides (the provider learns
    // it from the reset).
    let mut messages = tick("endless").await;
    messages.next().await.unwrap().unwrap();
    drop(messages);
    let cancelled = |side: &str| {
        format!(
            r#"rdubbo_errors_total{{{},kind="cancelled"}} 1"#,
            call_labels(side)
        )
    };
    assert!(
        metrics(&consumer).contains(&cancelled("consumer")),
        "{}",
        metrics(&consumer)
    );
    eventually("the provider to see the cancellation", || {
        metrics(&provider).contains(&cancelled("provider"))
    })
    .await;
    for (side, app) in both {
        let text = metrics(app);
        assert_eq!(
            sample(&text, "rdubbo_in_flight_requests", &call_labels(side)),
            Some(0.0),
            "{side}\n{text}"
        );
        assert_eq!(
            sample(
                &text,
                "rdubbo_request_duration_seconds_count",
                &call_labels(side)
            ),
            Some(3.0),
            "{side}"
        );
    }

    // The spans closed with their streams, saying how each ended.
    let log = captured.text();
    for span in ["rpc.client", "rpc.server"] {
        for outcome in [
            r#"stream="finished" messages=2}"#,
            r#"stream="failed" messages=2 error="#,
            r#"stream="cancelled""#,
        ] {
            assert!(
                log.lines().any(|l| l.contains(span)
                    && l.contains("method=Tick")
                    && l.contains(outcome)
                    && l.contains("close")),
                "no {span} closing with `{outcome}` in:\n{log}"
            );
        }
    }
    consumer.shutdown().await;
    provider.shutdown().await;
}
