//! Accepting connections: the connection limit (the longest-idle connection makes room),
//! refusals answered with a clear status, TLS handshakes under a deadline.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch, Semaphore};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;

use crate::tls::{ServerTls, SharedTcp};
use crate::wire::{FrameReader, Read, ReadSocket, WriteSocket, Writer};

use crate::codec::status;

use super::*;

pub(super) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<Option<Duration>>,
) {
    let mut conns = JoinSet::new();
    let drain = loop {
        tokio::select! {
            changed = stop.changed() => match (changed, *stop.borrow()) {
                (Ok(()), Some(d)) => break d,
                (Err(_), _) => break Duration::ZERO,
                _ => continue,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let open = shared.connections.load(Ordering::Relaxed);
                    let limit = shared.config.max_connections;
                    // At the limit the connection idle the longest makes room; a little
                    // slack covers the ones still closing.
                    if open >= limit && (open > limit + limit / 8 || !shared.evict_one()) {
                        if shared.refusing.fetch_add(1, Ordering::Relaxed) < MAX_REFUSING {
                            tracing::debug!(%peer, limit, "connection limit; refusing the new connection");
                            conns.spawn(refuse(stream, shared.clone()));
                        } else {
                            shared.refusing.fetch_sub(1, Ordering::Relaxed);
                            drop(stream);
                        }
                        continue;
                    }
                    shared.connections.fetch_add(1, Ordering::Relaxed);
                    if let Some(tls) = &shared.config.tls {
                        // Counted from now on; the handshake runs in the connection's task.
                        let (abort_tx, abort_rx) = oneshot::channel();
                        let abort = conns.spawn(tls_connection(stream, peer, shared.clone(), tls.clone(), abort_rx));
                        let _ = abort_tx.send(abort);
                        continue;
                    }
                    let local = stream.local_addr().unwrap_or(shared.local_addr);
                    let (read, write) = stream.into_split();
                    let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
                    let state = Arc::new(ConnState {
                        writer: Arc::new(Writer::new(write, shared.config.heartbeat * 3)),
                        pending: Arc::new(Semaphore::new(shared.config.max_pending)),
                        last_ms: AtomicU64::new(shared.epoch.elapsed().as_millis() as u64),
                        requested: AtomicBool::new(false),
                        abort: OnceLock::new(),
                    });
                    shared.open().insert(id, state.clone());
                    let registered = Registered { shared: shared.clone(), id };
                    let conn = Conn { peer, local };
                    let abort = conns.spawn(serve_connection(read.into(), state.clone(), conn, registered));
                    let _ = state.abort.set(abort);
                }
                Err(e) => {
                    // EMFILE and friends: keep serving the connections we have, try again soon.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    };
    drop(listener);
    let deadline = Instant::now() + drain;
    let in_flight = || shared.in_flight.load(Ordering::SeqCst);
    let settle = |deadline: Instant| async move {
        while in_flight() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    settle(deadline).await;
    // Requests already on their way when the readonly event went out are still answered.
    let linger = (Instant::now() + SHUTDOWN_LINGER).min(deadline);
    tokio::time::sleep_until(linger).await;
    settle(deadline).await;
    if in_flight() > 0 {
        tracing::warn!(
            in_flight = in_flight(),
            "drain deadline passed; closing connections"
        );
    }
    // Each connection stops reading once its socket is free, gets what is queued for it
    // written, and is closed.
    let open: Vec<Arc<ConnState>> = shared.open().values().cloned().collect();
    let mut closing = JoinSet::new();
    for c in open {
        closing.spawn(async move {
            let stopped = c.clone();
            c.writer
                .finish(move || stopped.stop(), Duration::from_secs(1))
                .await;
        });
    }
    while closing.join_next().await.is_some() {}
    conns.abort_all();
    while conns.join_next().await.is_some() {}
}

/// Answers the requests of a connection over the limit with a clear refusal (status 100,
/// which clients treat as "busy, try another provider"), then closes it.
pub(super) async fn refuse(stream: TcpStream, shared: Arc<Shared>) {
    struct Refusing(Arc<Shared>);
    impl Drop for Refusing {
        fn drop(&mut self) {
            self.0.refusing.fetch_sub(1, Ordering::Relaxed);
        }
    }
    let _refusing = Refusing(shared.clone());
    let limit = shared.config.max_connections;
    let message = format!(
        "provider refused the connection: connection limit ({limit}) reached; \
         retry on another provider"
    );
    // On a TLS port the refusal goes over TLS (the handshake within the refusal time).
    let (read, write): (ReadSocket, WriteSocket) = match &shared.config.tls {
        None => {
            let (read, write) = stream.into_split();
            (read.into(), write.into())
        }
        Some(tls) => {
            let tcp = Arc::new(stream);
            let handshake = tls.accept(SharedTcp(tcp.clone()));
            let Ok(Ok(session)) = tokio::time::timeout(REFUSAL_TIME, handshake).await else {
                return;
            };
            let (read, write) = crate::tls::split(session.into(), tcp);
            (read, WriteSocket::Tls(write))
        }
    };
    let writer = Writer::new(write, REFUSAL_TIME);
    let mut reader = FrameReader::new(read, 64 * 1024);
    let _ = tokio::time::timeout(REFUSAL_TIME, async {
        loop {
            match reader.next().await {
                Ok(Read::Frame(h, _)) | Ok(Read::TooLarge(h))
                    if h.is_request() && h.is_two_way() && !h.is_event() =>
                {
                    if !writer
                        .send(&error_frame(
                            h,
                            status::SERVER_THREADPOOL_EXHAUSTED_ERROR,
                            &message,
                        ))
                        .await
                    {
                        return;
                    }
                }
                Ok(Read::Frame(..)) | Ok(Read::TooLarge(_)) => {}
                Ok(Read::Closed) | Err(_) => return,
            }
        }
    })
    .await;
    writer.finish(|| {}, Duration::from_millis(100)).await;
}

/// A TLS connection, counted since its accept: the handshake (within its deadline), then
/// the same serving as a plain connection.
pub(super) async fn tls_connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    tls: ServerTls,
    abort: oneshot::Receiver<AbortHandle>,
) {
    let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    // Uncounts the connection however this task ends, the handshake included.
    let registered = Registered {
        shared: shared.clone(),
        id,
    };
    let local = stream.local_addr().unwrap_or(shared.local_addr);
    let tcp = Arc::new(stream);
    let session = match tls.accept(SharedTcp(tcp.clone())).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed; closing");
            return;
        }
    };
    let (read, write) = crate::tls::split(session.into(), tcp);
    let state = Arc::new(ConnState {
        writer: Arc::new(Writer::new(
            WriteSocket::Tls(write),
            shared.config.heartbeat * 3,
        )),
        pending: Arc::new(Semaphore::new(shared.config.max_pending)),
        last_ms: AtomicU64::new(shared.epoch.elapsed().as_millis() as u64),
        requested: AtomicBool::new(false),
        abort: OnceLock::new(),
    });
    if let Ok(abort) = abort.await {
        let _ = state.abort.set(abort);
    }
    if shared.draining.load(Ordering::SeqCst) {
        return;
    }
    shared.open().insert(id, state.clone());
    serve_connection(read, state, Conn { peer, local }, registered).await;
}
