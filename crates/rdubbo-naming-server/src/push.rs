//! UDP pushes to subscribers, as Nacos 1.x sends them: `{"type":"dom","data":…,
//! "lastRefTime":…}`, gzip-compressed when large, acknowledged with `push-ack`, re-sent when
//! no ack comes.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
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

/// The subscribers of one service.
#[derive(Default)]
struct Subs {
    by_addr: HashMap<SocketAddr, PushClient>,
    /// Subscribed ports per address.
    per_ip: HashMap<IpAddr, usize>,
}

#[derive(Default)]
struct Table {
    services: HashMap<ServiceKey, Subs>,
    /// Subscriptions in all.
    total: usize,
}

impl Table {
    fn remove(&mut self, key: &ServiceKey, addr: SocketAddr) -> bool {
        let Some(subs) = self.services.get_mut(key) else {
            return false;
        };
        if subs.by_addr.remove(&addr).is_none() {
            return false;
        }
        self.total -= 1;
        if let Some(n) = subs.per_ip.get_mut(&addr.ip()) {
            *n -= 1;
            if *n == 0 {
                subs.per_ip.remove(&addr.ip());
            }
        }
        if subs.by_addr.is_empty() {
            self.services.remove(key);
        }
        true
    }
}

struct Pending {
    key: ServiceKey,
    target: SocketAddr,
    packet: Vec<u8>,
    sent_at: Instant,
    attempts: u32,
}

/// Subscribers and the pushes waiting for an ack.
pub(crate) struct Pushes {
    table: Mutex<Table>,
    pending: Mutex<HashMap<u64, Pending>>,
    pub dirty: Mutex<HashSet<ServiceKey>>,
    seq: AtomicU64,
    /// Pushes sent, acks received, re-sends, pushes given up.
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub resent: AtomicU64,
    pub dropped: AtomicU64,
    /// Subscriptions refused because their address had its share of ports already.
    pub limited: AtomicU64,
    /// When a refused subscription was last logged (ms since the epoch).
    last_limit_log: AtomicU64,
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
            table: Mutex::new(Table::default()),
            pending: Mutex::new(HashMap::new()),
            dirty: Mutex::new(HashSet::new()),
            // Microseconds since the epoch stay below 2^53, so JavaScript clients echo the
            // number back unchanged.
            seq: AtomicU64::new(start),
            sent: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            resent: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            limited: AtomicU64::new(0),
            last_limit_log: AtomicU64::new(0),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records (or refreshes) a subscriber. Returns false when the subscriber table is
    /// full, or when the address already has `max_per_ip` ports subscribed to this service
    /// (one query must not make one registration fan out to every port of a host).
    pub fn subscribe(
        &self,
        key: &ServiceKey,
        addr: SocketAddr,
        clusters: &str,
        max_clients: usize,
        max_per_ip: usize,
    ) -> bool {
        let mut table = self.table();
        let total = table.total;
        let subs = table.services.entry(key.clone()).or_default();
        if let Some(c) = subs.by_addr.get_mut(&addr) {
            if c.clusters != clusters {
                c.clusters = clusters.to_owned();
            }
            c.last_query = Instant::now();
            return true;
        }
        let per_ip = subs.per_ip.get(&addr.ip()).copied().unwrap_or(0);
        if total >= max_clients || per_ip >= max_per_ip {
            if subs.by_addr.is_empty() {
                table.services.remove(key);
            }
            if per_ip >= max_per_ip {
                self.limited.fetch_add(1, Ordering::Relaxed);
                let now = super::store::now_ms();
                let last = self.last_limit_log.load(Ordering::Relaxed);
                if now.saturating_sub(last) >= 10_000
                    && self
                        .last_limit_log
                        .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
                {
                    tracing::warn!(service = %key.grouped, ip = %addr.ip(), limit = max_per_ip,
                        refused = self.limited.load(Ordering::Relaxed),
                        "push subscription refused: the address has its share of ports; it polls instead");
                }
            }
            return false;
        }
        subs.by_addr.insert(
            addr,
            PushClient {
                clusters: clusters.to_owned(),
                last_query: Instant::now(),
            },
        );
        *subs.per_ip.entry(addr.ip()).or_default() += 1;
        table.total += 1;
        true
    }

    /// Subscribers of `key`.
    pub fn subscribers(&self, key: &ServiceKey) -> Vec<(SocketAddr, String)> {
        self.table()
            .services
            .get(key)
            .map(|m| {
                m.by_addr
                    .iter()
                    .map(|(a, c)| (*a, c.clusters.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Number of subscribers of `key`.
    pub fn subscriber_count_of(&self, key: &ServiceKey) -> usize {
        self.table()
            .services
            .get(key)
            .map_or(0, |m| m.by_addr.len())
    }

    /// Number of subscriptions.
    pub fn subscriber_count(&self) -> usize {
        self.table().total
    }

    /// Forgets subscribers that have not queried for `ttl`.
    pub fn expire_clients(&self, ttl: Duration) {
        let mut table = self.table();
        let mut gone = Vec::new();
        for (key, subs) in &table.services {
            for (addr, c) in &subs.by_addr {
                if c.last_query.elapsed() >= ttl {
                    gone.push((key.clone(), *addr));
                }
            }
        }
        for (key, addr) in gone {
            table.remove(&key, addr);
        }
    }

    /// Builds and sends one push of `data` (a service JSON) to `target`.
    pub async fn send(
        &self,
        socket: &UdpSocket,
        key: &ServiceKey,
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
                        key: key.clone(),
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

    /// Re-sends pushes without an ack after `timeout`, up to `max_attempts` in all. A
    /// subscriber that never acknowledges is dropped: it gets no more pushes until it
    /// queries again (a live client does, and polls meanwhile).
    pub async fn resend(&self, socket: &UdpSocket, timeout: Duration, max_attempts: u32) {
        let mut given_up = Vec::new();
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
                    given_up.push((p.key.clone(), p.target));
                    return false;
                }
                p.attempts += 1;
                p.sent_at = Instant::now();
                due.push((p.target, p.packet.clone()));
                true
            });
            due
        };
        if !given_up.is_empty() {
            let mut table = self.table();
            for (key, target) in given_up {
                table.remove(&key, target);
            }
        }
        for (target, packet) in due {
            self.resent.fetch_add(1, Ordering::Relaxed);
            let _ = socket.send_to(&packet, target).await;
        }
    }
}
