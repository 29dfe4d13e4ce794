//! Connections: accepting within the connection limit (evicting the slowest sender, or
//! waiting for a slot, or a 503), the reaper of slow and idle connections, and one HTTP/1.1
//! connection's service.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::conn::{Admit, ConnState, Watched};
use crate::routes::handle;
use crate::Shared;

/// Connections waiting for a slot or being refused (503) at once; beyond, new connections
/// found at the limit are just closed.
const MAX_REJECTING: usize = 1_024;
/// How long a connection found at the limit waits for a slot before its 503.
const SLOT_WAIT: Duration = Duration::from_millis(200);

pub(crate) async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut conns = JoinSet::new();
    let config = &shared.config;
    // An idle connection (or a new one that has sent nothing yet) must have waited at least
    // this long to lose its slot; slow senders go first anyway.
    let evict_after = config.evict_when_full.then(|| {
        (config.request_timeout / 100)
            .min(Duration::from_millis(100))
            .as_millis() as u64
    });
    loop {
        tokio::select! {
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let now = shared.clock.now();
                    match shared.conns.admit(now, config.max_connections, evict_after) {
                        Admit::Yes(id, state, evicted) => {
                            if evicted.is_some() {
                                // Even an idle connection may have had a request on its
                                // way: a refusal, as far as expiry goes.
                                shared.evicted.fetch_add(1, Ordering::Relaxed);
                                shared.refusal();
                            }
                            conns.spawn(serve_connection(stream, peer, id, state, shared.clone()));
                        }
                        Admit::Full => {
                            // No victim right now (every connection busy or just opened): wait
                            // a moment for a slot, then refuse.
                            if shared.rejecting.load(Ordering::Relaxed) < MAX_REJECTING {
                                shared.rejecting.fetch_add(1, Ordering::Relaxed);
                                conns.spawn(wait_for_slot(stream, peer, evict_after, shared.clone()));
                            } else {
                                shared.refusal();
                                shared.refused.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
                Err(e) => {
                    // Out of descriptors, most likely: clients are refused.
                    shared.refusal();
                    shared.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// A connection that found every slot taken: it gets the first slot that frees up within
/// [`SLOT_WAIT`], or a 503.
async fn wait_for_slot(
    stream: TcpStream,
    peer: SocketAddr,
    evict_after: Option<u64>,
    shared: Arc<Shared>,
) {
    let until = Instant::now() + SLOT_WAIT;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let now = shared.clock.now();
        if let Admit::Yes(id, state, evicted) =
            shared
                .conns
                .admit(now, shared.config.max_connections, evict_after)
        {
            shared.rejecting.fetch_sub(1, Ordering::Relaxed);
            if evicted.is_some() {
                shared.evicted.fetch_add(1, Ordering::Relaxed);
                shared.refusal();
            }
            serve_connection(stream, peer, id, state, shared).await;
            return;
        }
    }
    shared.refusal();
    shared.refused.fetch_add(1, Ordering::Relaxed);
    reject_connection(stream, &shared).await;
    shared.rejecting.fetch_sub(1, Ordering::Relaxed);
}

async fn reject_connection(mut stream: TcpStream, shared: &Shared) {
    let body = format!(
        "caused: too many connections (limit {});",
        shared.config.max_connections
    );
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
}

/// Closes connections past their deadline (see [`crate::conn`]).
pub(crate) async fn reaper_loop(shared: Arc<Shared>) {
    let config = &shared.config;
    let request = config.request_timeout.as_millis() as u64;
    let idle = config.idle_timeout.as_millis() as u64;
    let period = (config.request_timeout.min(config.idle_timeout) / 4)
        .clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let n = shared.conns.reap(shared.clock.now(), request, idle);
        if n > 0 {
            shared.timed_out.fetch_add(n as u64, Ordering::Relaxed);
            tracing::debug!(connections = n, "closed slow or idle connections");
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    id: u64,
    state: Arc<ConnState>,
    shared: Arc<Shared>,
) {
    let svc_shared = shared.clone();
    let svc_state = state.clone();
    let service = hyper::service::service_fn(move |req| {
        let shared = svc_shared.clone();
        let state = svc_state.clone();
        async move {
            let start = state.begin_request(shared.clock.now());
            let response = handle(&shared, &state, start, peer, req).await;
            state.end_request(shared.clock.now());
            Ok::<_, Infallible>(response)
        }
    });
    let io = TokioIo::new(Watched::new(stream, state.clone(), shared.clock));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        // Deadlines are the reaper's (hyper's header timer would also close idle
        // keep-alive connections early).
        .header_read_timeout(None)
        .max_buf_size(shared.config.max_body_size.max(8192) + 8192)
        .keep_alive(true)
        .serve_connection(io, service);
    tokio::select! {
        res = conn => {
            if let Err(e) = res {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        _ = state.killed() => {}
    }
    shared.conns.remove(id);
}
