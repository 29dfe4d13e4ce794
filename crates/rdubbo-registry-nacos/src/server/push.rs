//! UDP pushes to subscribers, as Nacos 1.x sends them: `{"type":"dom","data":…,
//! "lastRefTime":…}`, gzip-compressed when large, acknowledged with `push-ack`, re-sent when
//! no ack comes.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::net::UdpSocket;

use super::store::ServiceKey;

/// Packets larger than this are gzip-compressed (as Nacos does).
const COMPRESS_ABOVE: usize = 1024;
/// Largest datagram sent; larger services are left to polling.
const MAX_DATAGRAM: usize = 60 * 1024;

/// One subscriber of one service.
#[derive(Debug, Clone)]
pub(crate) struct PushClient {
    pub clusters: String,
    pub last_query: Instant,
}

struct Pending {
    target: SocketAddr,
    packet: Vec<u8>,
    sent_at: Instant,
    attempts: u32,
}

/// Subscribers and the pushes waiting for an ack.
pub(crate) struct Pushes {
    pub clients: Mutex<HashMap<ServiceKey, HashMap<SocketAddr, PushClient>>>,
    pending: Mutex<HashMap<u64, Pending>>,
    pub dirty: Mutex<HashSet<ServiceKey>>,
    seq: AtomicU64,
    /// Pushes sent, acks received, re-sends, pushes given up.
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub resent: AtomicU64,
    pub dropped: AtomicU64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Ack {
    #[serde(rename = "type")]
    kind: String,
    last_ref_time: u64,
}

impl Pushes {
    pub fn new() -> Pushes {
        let start = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(1);
        Pushes {
            clients: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            dirty: Mutex::new(HashSet::new()),
            // Microseconds since the epoch stay below 2^53, so JavaScript clients echo the
            // number back unchanged.
            seq: AtomicU64::new(start),
            sent: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            resent: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// Records (or refreshes) a subscriber. Returns false when the subscriber table is full.
    pub fn subscribe(
        &self,
        key: &ServiceKey,
        addr: SocketAddr,
        clusters: &str,
        max_clients: usize,
    ) -> bool {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let total: usize = clients.values().map(HashMap::len).sum();
        let entry = clients.entry(key.clone()).or_default();
        if !entry.contains_key(&addr) && total >= max_clients {
            return false;
        }
        entry.insert(
            addr,
            PushClient {
                clusters: clusters.to_owned(),
                last_query: Instant::now(),
            },
        );
        true
    }

    /// Subscribers of `key`.
    pub fn subscribers(&self, key: &ServiceKey) -> Vec<(SocketAddr, String)> {
        let clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients
            .get(key)
            .map(|m| m.iter().map(|(a, c)| (*a, c.clusters.clone())).collect())
            .unwrap_or_default()
    }

    /// Number of subscriptions.
    pub fn subscriber_count(&self) -> usize {
        let clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients.values().map(HashMap::len).sum()
    }

    /// Forgets subscribers that have not queried for `ttl`.
    pub fn expire_clients(&self, ttl: Duration) {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        for m in clients.values_mut() {
            m.retain(|_, c| c.last_query.elapsed() < ttl);
        }
        clients.retain(|_, m| !m.is_empty());
    }

    /// Builds and sends one push of `data` (a service JSON) to `target`.
    pub async fn send(
        &self,
        socket: &UdpSocket,
        target: SocketAddr,
        data: &str,
        max_pending: usize,
    ) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let packet = serde_json::json!({"type": "dom", "data": data, "lastRefTime": seq});
        let mut bytes = packet.to_string().into_bytes();
        if bytes.len() > COMPRESS_ABOVE {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            if enc.write_all(&bytes).is_ok() {
                if let Ok(z) = enc.finish() {
                    bytes = z;
                }
            }
        }
        if bytes.len() > MAX_DATAGRAM {
            tracing::debug!(%target, size = bytes.len(), "service too large to push; client polls");
            return;
        }
        // Recorded before sending: on loopback the ack can come back before send_to returns.
        {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            if pending.len() >= max_pending {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            } else {
                pending.insert(
                    seq,
                    Pending {
                        target,
                        packet: bytes.clone(),
                        sent_at: Instant::now(),
                        attempts: 1,
                    },
                );
            }
        }
        if let Err(e) = socket.send_to(&bytes, target).await {
            tracing::debug!(%target, error = %e, "push failed");
        }
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    /// Handles a datagram from a client: a `push-ack` clears its push.
    pub fn on_datagram(&self, data: &[u8]) {
        let Ok(ack) = serde_json::from_slice::<Ack>(data) else {
            return;
        };
        if ack.kind.ends_with("-ack")
            && self
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&ack.last_ref_time)
                .is_some()
        {
            self.acked.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Re-sends pushes without an ack after `timeout`, up to `max_attempts` in all.
    pub async fn resend(&self, socket: &UdpSocket, timeout: Duration, max_attempts: u32) {
        let due: Vec<(SocketAddr, Vec<u8>)> = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            let mut due = Vec::new();
            pending.retain(|_, p| {
                if p.sent_at.elapsed() < timeout {
                    return true;
                }
                if p.attempts >= max_attempts {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(target = %p.target, "push not acknowledged; giving up");
                    return false;
                }
                p.attempts += 1;
                p.sent_at = Instant::now();
                due.push((p.target, p.packet.clone()));
                true
            });
            due
        };
        for (target, packet) in due {
            self.resent.fetch_add(1, Ordering::Relaxed);
            let _ = socket.send_to(&packet, target).await;
        }
    }
}
