//! `grpc.health.v1.Health`: the status of the server and of each service, asked once
//! (`Check`, `List`) or followed (`Watch`).
//!
//! When the server stops, [`HealthReporter::shutdown`] (called by
//! [`Provider::stop`](crate::provider::Provider::stop) before the drain) turns every status
//! to `NOT_SERVING` for good, as grpc-java's `enterTerminalState`, and ends each `Watch`
//! with `UNAVAILABLE` once it has sent that: watches, which never end on their own, do not
//! hold the drain of in-flight calls up.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rdubbo_protocol_triple::codec::{grpc, grpc_error};
use tokio::sync::watch;

use super::proto::health::v1::{
    health_check_response, Health, HealthCheckRequest, HealthCheckResponse, HealthListRequest,
    HealthListResponse,
};
use crate::idl::Streaming;
use crate::RpcResult;

/// The status of a service.
pub use health_check_response::ServingStatus;

/// The statuses a health service answers with; clones share them. Setting a status
/// wakes every `Watch` of that service.
#[derive(Clone)]
pub struct HealthReporter {
    state: Arc<State>,
}

struct State {
    statuses: Mutex<BTreeMap<String, ServingStatus>>,
    changed: watch::Sender<u64>,
    /// Set by `shutdown`: statuses no longer change, watches end.
    terminal: AtomicBool,
}

impl Default for HealthReporter {
    fn default() -> Self {
        HealthReporter::new()
    }
}

impl std::fmt::Debug for HealthReporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.statuses()).finish()
    }
}

impl HealthReporter {
    /// No service known.
    pub fn new() -> Self {
        HealthReporter {
            state: Arc::new(State {
                statuses: Mutex::new(BTreeMap::new()),
                changed: watch::channel(0).0,
                terminal: AtomicBool::new(false),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, ServingStatus>> {
        self.state
            .statuses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the status of `service` (`""`: the server as a whole); ignored after
    /// [`shutdown`](Self::shutdown).
    pub fn set(&self, service: &str, status: ServingStatus) {
        if self.is_terminal() {
            return;
        }
        let changed = self.lock().insert(service.to_owned(), status) != Some(status);
        if changed {
            self.state.changed.send_modify(|n| *n += 1);
        }
    }

    /// Sets the status of every known service and of the server; ignored after
    /// [`shutdown`](Self::shutdown).
    pub fn set_all(&self, status: ServingStatus) {
        if self.is_terminal() {
            return;
        }
        self.set_all_now(status);
    }

    fn set_all_now(&self, status: ServingStatus) {
        let mut changed = false;
        {
            let mut statuses = self.lock();
            statuses.entry(String::new()).or_insert(status);
            for s in statuses.values_mut() {
                changed |= *s != status;
                *s = status;
            }
        }
        if changed {
            self.state.changed.send_modify(|n| *n += 1);
        }
    }

    /// The server stops: every status turns `NOT_SERVING` and stays so (later changes
    /// are ignored), and each `Watch` ends with `UNAVAILABLE` after sending it.
    pub fn shutdown(&self) {
        self.set_all_now(ServingStatus::NotServing);
        self.state.terminal.store(true, Ordering::SeqCst);
        self.state.changed.send_modify(|n| *n += 1);
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    pub fn is_terminal(&self) -> bool {
        self.state.terminal.load(Ordering::SeqCst)
    }

    /// Forgets `service` (a check answers NOT_FOUND, a watch SERVICE_UNKNOWN); ignored
    /// after [`shutdown`](Self::shutdown).
    pub fn remove(&self, service: &str) {
        if self.is_terminal() {
            return;
        }
        if self.lock().remove(service).is_some() {
            self.state.changed.send_modify(|n| *n += 1);
        }
    }

    /// The status of `service`, if known.
    pub fn status(&self, service: &str) -> Option<ServingStatus> {
        self.lock().get(service).copied()
    }

    /// Every known service with its status.
    pub fn statuses(&self) -> Vec<(String, ServingStatus)> {
        self.lock().iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

/// The `grpc.health.v1.Health` service over a [`HealthReporter`].
#[derive(Debug, Clone)]
pub struct HealthService {
    reporter: HealthReporter,
}

impl HealthService {
    /// Answers with the statuses of `reporter`.
    pub fn new(reporter: HealthReporter) -> Self {
        HealthService { reporter }
    }
}

fn response(status: ServingStatus) -> HealthCheckResponse {
    HealthCheckResponse {
        status: status as i32,
    }
}

impl Health for HealthService {
    async fn check(&self, request: HealthCheckRequest) -> RpcResult<HealthCheckResponse> {
        match self.reporter.status(&request.service) {
            Some(s) => Ok(response(s)),
            None => Err(grpc_error(
                grpc::NOT_FOUND,
                format!("unknown service {}", request.service),
            )),
        }
    }

    async fn list(&self, _: HealthListRequest) -> RpcResult<HealthListResponse> {
        Ok(HealthListResponse {
            statuses: self
                .reporter
                .statuses()
                .into_iter()
                .map(|(k, v)| (k, response(v)))
                .collect(),
        })
    }

    async fn watch(
        &self,
        request: HealthCheckRequest,
    ) -> RpcResult<Streaming<HealthCheckResponse>> {
        let reporter = self.reporter.clone();
        let mut changes = reporter.state.changed.subscribe();
        let (tx, out) = Streaming::channel(4);
        tokio::spawn(async move {
            let mut last = None;
            loop {
                // Marked seen before reading, so a change in between wakes the loop.
                changes.borrow_and_update();
                let now = reporter
                    .status(&request.service)
                    .unwrap_or(ServingStatus::ServiceUnknown);
                if last != Some(now) {
                    if tx.send(&response(now)).await.is_err() {
                        return;
                    }
                    last = Some(now);
                }
                if reporter.is_terminal() {
                    let stopping = grpc_error(grpc::UNAVAILABLE, "the server is shutting down");
                    tx.fail(stopping).await;
                    return;
                }
                tokio::select! {
                    r = changes.changed() => if r.is_err() {
                        tx.finish();
                        return;
                    },
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn check_list_and_watch_follow_the_reporter() {
        let reporter = HealthReporter::new();
        reporter.set("", ServingStatus::Serving);
        reporter.set("a.B", ServingStatus::Serving);
        let service = HealthService::new(reporter.clone());
        let ask = |s: &str| HealthCheckRequest { service: s.into() };
        assert_eq!(
            service.check(ask("a.B")).await.unwrap().status,
            ServingStatus::Serving as i32
        );
        let err = service.check(ask("x.Y")).await.unwrap_err();
        assert_eq!(
            rdubbo_protocol_triple::codec::status_of(&err),
            grpc::NOT_FOUND
        );
        assert_eq!(
            service
                .list(HealthListRequest {})
                .await
                .unwrap()
                .statuses
                .len(),
            2
        );

        let mut watch = service.watch(ask("a.B")).await.unwrap();
        let first = watch.message().await.unwrap().unwrap();
        assert_eq!(first.status, ServingStatus::Serving as i32);
        reporter.set("other", ServingStatus::NotServing); // not this service: no message
        reporter.set_all(ServingStatus::NotServing);
        let next = watch.message().await.unwrap().unwrap();
        assert_eq!(next.status, ServingStatus::NotServing as i32);

        let mut unknown = service.watch(ask("later.Svc")).await.unwrap();
        let first = unknown.message().await.unwrap().unwrap();
        assert_eq!(first.status, ServingStatus::ServiceUnknown as i32);
        reporter.set("later.Svc", ServingStatus::Serving);
        let next = unknown.message().await.unwrap().unwrap();
        assert_eq!(next.status, ServingStatus::Serving as i32);

        // The server stops: NOT_SERVING for good, then the watch ends.
        reporter.shutdown();
        let last = unknown.message().await.unwrap().unwrap();
        assert_eq!(last.status, ServingStatus::NotServing as i32);
        let end = unknown.message().await.unwrap_err();
        assert_eq!(
            rdubbo_protocol_triple::codec::status_of(&end),
            grpc::UNAVAILABLE
        );
        reporter.set("a.B", ServingStatus::Serving);
        assert_eq!(reporter.status("a.B"), Some(ServingStatus::NotServing));
        let mut late = service.watch(ask("a.B")).await.unwrap();
        let only = late.message().await.unwrap().unwrap();
        assert_eq!(only.status, ServingStatus::NotServing as i32);
        assert!(late.message().await.is_err());
    }
}
