//! Prometheus metrics of an application, through the `prometheus-client` crate.
//!
//! | name | type | labels |
//! |---|---|---|
//! | `rdubbo_requests_total` | counter | `side`, `service`, `method` |
//! | `rdubbo_errors_total` | counter | `side`, `service`, `method`, `kind` |
//! | `rdubbo_request_duration_seconds` | histogram | `side`, `service`, `method` |
//! | `rdubbo_in_flight_requests` | gauge | `side`, `service`, `method` |
//! | `rdubbo_stream_messages_total` | counter | `side`, `service`, `method` |
//! | `rdubbo_server_connections` | gauge | `protocol`, `address` |
//! | `rdubbo_registry_up` | gauge | `registry`, `address` |
//! | `rdubbo_registry_notifications_total` | counter | `service` |
//! | `rdubbo_providers` | gauge | `service` |
//! | `rdubbo_service_online` | gauge | `service`, `protocol` |
//!
//! `side` is `consumer` or `provider`; `kind` is one of `timeout`, `no_provider`, `connect`,
//! `transport`, `busy`, `shutting_down`, `not_found`, `service`, `remote`, `codec`, `limit`,
//! `invalid`, `cancelled`.
//!
//! A call whose answer is a stream (server-streaming, bidirectional) is recorded until
//! that stream ends, not when it is handed over: it stays in flight meanwhile, its
//! duration runs to the end of the stream, each message of it counts in
//! `rdubbo_stream_messages_total`, and an error that ends it, or its reader dropping it
//! before the end (`cancelled`: the peer reset it, the caller went away), counts as the
//! call's error. Unary calls pay nothing for this.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::slots::{Slots, Stage};
use crate::cluster::filter::{Filter, Side};
use crate::error::codes;
use crate::stream::StreamEnd;
use crate::{BoxFuture, Invocation, Invoker, Reply, RpcError, RpcResult};

/// Labels of one method on one side.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    /// `consumer` or `provider`.
    pub side: String,
    /// Interface name.
    pub service: String,
    /// Method name.
    pub method: String,
}

/// [`CallLabels`] plus the kind of error.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// `consumer` or `provider`.
    pub side: String,
    /// Interface name.
    pub service: String,
    /// Method name.
    pub method: String,
    /// See [`error_kind`].
    pub kind: String,
}

/// Labels of a server.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabels {
    /// `dubbo` or `jsonrpc`.
    pub protocol: String,
    /// Listen address.
    pub address: String,
}

/// Labels of a registry.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RegistryLabels {
    /// Registry id in the configuration.
    pub registry: String,
    /// Registry address.
    pub address: String,
}

/// Labels naming a service.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    /// Service key (`group/interface:version`).
    pub service: String,
}

/// Labels of an exported service on one protocol.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExportLabels {
    /// Service key.
    pub service: String,
    /// Protocol.
    pub protocol: String,
}

type LatencyFamily = Family<CallLabels, Histogram, fn() -> Histogram>;

/// The metrics of one application.
pub struct Metrics {
    registry: Registry,
    requests: Family<CallLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    latency: LatencyFamily,
    in_flight: Family<CallLabels, Gauge>,
    stream_messages: Family<CallLabels, Counter>,
    /// Open connections per server (set at each scrape).
    pub(crate) connections: Family<ServerLabels, Gauge>,
    /// 1 when the registry is connected (set at each scrape).
    pub(crate) registry_up: Family<RegistryLabels, Gauge>,
    /// Provider-list notifications per reference.
    pub(crate) notifications: Family<ServiceLabels, Counter>,
    /// Known providers per reference (set at each scrape).
    pub(crate) providers: Family<ServiceLabels, Gauge>,
    /// 1 while an exported service is registered (set at each scrape).
    pub(crate) online: Family<ExportLabels, Gauge>,
    /// Last seen notification count per reference, to add only what is new.
    pub(crate) seen_updates: Mutex<std::collections::HashMap<String, u64>>,
}

fn latency_histogram() -> Histogram {
    // 50 µs … ~26 s.
    Histogram::new(exponential_buckets(0.00005, 2.0, 20))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Empty metrics, registered under the `rdubbo` prefix.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("rdubbo");
        let requests = Family::<CallLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let latency: LatencyFamily = Family::new_with_constructor(latency_histogram);
        let in_flight = Family::<CallLabels, Gauge>::default();
        let stream_messages = Family::<CallLabels, Counter>::default();
        let connections = Family::<ServerLabels, Gauge>::default();
        let registry_up = Family::<RegistryLabels, Gauge>::default();
        let notifications = Family::<ServiceLabels, Counter>::default();
        let providers = Family::<ServiceLabels, Gauge>::default();
        let online = Family::<ExportLabels, Gauge>::default();
        registry.register("requests", "Calls started", requests.clone());
        registry.register("errors", "Calls that failed, by kind", errors.clone());
        registry.register("request_duration_seconds", "Call latency", latency.clone());
        registry.register("in_flight_requests", "Calls in flight", in_flight.clone());
        registry.register(
            "stream_messages",
            "Messages of streamed answers",
            stream_messages.clone(),
        );
        registry.register(
            "server_connections",
            "Open connections of each server",
            connections.clone(),
        );
        registry.register(
            "registry_up",
            "1 when the registry is connected",
            registry_up.clone(),
        );
        registry.register(
            "registry_notifications",
            "Provider-list notifications received per reference",
            notifications.clone(),
        );
        registry.register(
            "providers",
            "Providers known per reference",
            providers.clone(),
        );
        registry.register(
            "service_online",
            "1 while an exported service is registered",
            online.clone(),
        );
        Metrics {
            registry,
            requests,
            errors,
            latency,
            in_flight,
            stream_messages,
            connections,
            registry_up,
            notifications,
            providers,
            online,
            seen_updates: Mutex::default(),
        }
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// A filter recording every call through it on `side`.
    pub fn filter(self: &Arc<Self>, side: Side) -> Arc<dyn Filter> {
        Arc::new(MetricsFilter {
            metrics: self.clone(),
            side: match side {
                Side::Consumer => "consumer",
                Side::Provider => "provider",
            },
        })
    }
}

/// The `kind` label of an error.
pub fn error_kind(e: &RpcError) -> &'static str {
    if crate::stream::is_cancelled(e) {
        return "cancelled";
    }
    match e {
        RpcError::Timeout(_) => "timeout",
        RpcError::NoProvider(_) => "no_provider",
        RpcError::Connect { .. } => "connect",
        RpcError::Transport { .. } => "transport",
        RpcError::Remote { code, .. } => match *code {
            codes::SERVER_BUSY => "busy",
            codes::SHUTTING_DOWN => "shutting_down",
            codes::METHOD_NOT_FOUND => "not_found",
            codes::SERVICE_ERROR => "service",
            codes::SERVER_TIMEOUT => "timeout",
            _ => "remote",
        },
        RpcError::Codec(_) => "codec",
        RpcError::Limit(_) => "limit",
        RpcError::Invalid(_) => "invalid",
        _ => "other",
    }
}

struct MetricsFilter {
    metrics: Arc<Metrics>,
    side: &'static str,
}

struct InFlight(Gauge);
impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Filter for MetricsFilter {
    fn invoke(
        &self,
        next: Arc<dyn Invoker>,
        invocation: Invocation,
    ) -> BoxFuture<'static, RpcResult<Reply>> {
        let labels = CallLabels {
            side: self.side.to_owned(),
            service: invocation.interface.to_string(),
            method: invocation.method.to_string(),
        };
        let m = self.metrics.clone();
        m.requests.get_or_create(&labels).inc();
        let gauge = m.in_flight.get_or_create_owned(&labels);
        gauge.inc();
        let guard = InFlight(gauge);
        let started = Instant::now();
        let call = next.invoke(invocation);
        Box::pin(async move {
            match call.await {
                Ok(Reply::Stream(stream)) => {
                    // Recorded when the stream ends: the guard and the labels go with it.
                    let counter = m.stream_messages.get_or_create_owned(&labels);
                    let observed = stream.observe(
                        move |_| {
                            counter.inc();
                        },
                        move |end| {
                            drop(guard);
                            let error = match &end {
                                StreamEnd::Finished { .. } => None,
                                StreamEnd::Failed { error, .. } => Some(error_kind(error)),
                                StreamEnd::Cancelled { .. } => Some("cancelled"),
                            };
                            m.record(labels, started, error);
                        },
                    );
                    Ok(Reply::Stream(observed))
                }
                result => {
                    drop(guard);
                    m.record(labels, started, result.as_ref().err().map(error_kind));
                    result
                }
            }
        })
    }
}

impl Metrics {
    /// The end of a call: its duration, and its error's kind.
    fn record(&self, labels: CallLabels, started: Instant, error: Option<&'static str>) {
        self.latency
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        if let Some(kind) = error {
            self.errors
                .get_or_create(&ErrorLabels {
                    side: labels.side,
                    service: labels.service,
                    method: labels.method,
                    kind: kind.to_owned(),
                })
                .inc();
        }
    }
}

/// Connections the metrics port keeps at once; at the limit the oldest one without a
/// request in progress is closed to make room (a newcomer is refused only when every one
/// is being answered).
pub const MAX_CONNECTIONS: usize = 32;
/// How long one metrics connection may stay open (a scraper reconnects after).
pub const CONNECTION_LIFETIME: std::time::Duration = std::time::Duration::from_secs(60);
/// A request's headers must arrive within this.
pub const HEADER_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);

/// Serves `GET /metrics` on `listen` until the returned handle is dropped or aborted.
/// Bounded: [`MAX_CONNECTIONS`] at once, each for at most [`CONNECTION_LIFETIME`], headers
/// within [`HEADER_DEADLINE`], so idle or slow clients cannot take the process's file
/// descriptors or the port.
pub(crate) async fn serve(
    listen: SocketAddr,
    render: Arc<dyn Fn() -> String + Send + Sync>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let slots = Slots::new(MAX_CONNECTIONS);
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            };
            // At the limit the oldest connection that has not sent a request (else the
            // oldest between requests) makes room: idle connections cannot lock a scraper out.
            let Some(slot) = slots.acquire() else {
                tracing::debug!(%peer, "every metrics connection is busy; closing the new one");
                continue;
            };
            let render = render.clone();
            tokio::spawn(async move {
                let stage = slot.stage_handle();
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let render = render.clone();
                        let stage = stage.clone();
                        async move {
                            stage.set(Stage::Busy);
                            let (status, ctype, body) = if req.uri().path() == "/metrics" {
                                (
                                    http::StatusCode::OK,
                                    "text/plain; version=0.0.4; charset=utf-8",
                                    render(),
                                )
                            } else {
                                (
                                    http::StatusCode::NOT_FOUND,
                                    "text/plain; charset=utf-8",
                                    "only /metrics is served here\n".to_owned(),
                                )
                            };
                            let mut resp = hyper::Response::new(http_body_util::Full::new(
                                bytes::Bytes::from(body),
                            ));
                            *resp.status_mut() = status;
                            resp.headers_mut().insert(
                                http::header::CONTENT_TYPE,
                                http::HeaderValue::from_static(ctype),
                            );
                            stage.set(Stage::Idle);
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    },
                );
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_DEADLINE)
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                tokio::select! {
                    _ = tokio::time::timeout(CONNECTION_LIFETIME, conn) => {}
                    _ = slot.evicted() => {}
                }
            });
        }
    });
    Ok((addr, task))
}
