//! Background work: pushes of changed services, the UDP socket (acks, re-sends), expiry
//! of silent instances and stale caches, and health checks of persistent instances.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdubbo_registry_nacos::model::{self, DEFAULT_GROUP};
use tokio::net::TcpStream;

use crate::encode;
use crate::store::{ServiceKey, Timing};
use crate::Shared;

/// A cached large answer nobody asked for this long is dropped (and its memory returned).
const ANSWER_CACHE_TTL: Duration = Duration::from_secs(30);
/// Services with more instances than this are never pushed (their answer cannot fit in a
/// datagram); their subscribers poll.
const PUSH_MAX_HOSTS: usize = 5_000;

pub(crate) async fn push_loop(shared: Arc<Shared>) {
    loop {
        shared.push_wake.notified().await;
        let keys: Vec<ServiceKey> = shared
            .pushes
            .dirty
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .collect();
        for key in keys {
            let subscribers = shared.pushes.subscribers(&key);
            if subscribers.is_empty() {
                continue;
            }
            let (group, _) = model::split_grouped(&key.grouped, DEFAULT_GROUP);
            // One encoding per cluster selection, and at most the per-address share of
            // ports of any one address per change.
            let mut data: HashMap<String, Option<String>> = HashMap::new();
            let mut per_ip: HashMap<std::net::IpAddr, usize> = HashMap::new();
            for (target, clusters) in subscribers {
                let n = per_ip.entry(target.ip()).or_default();
                if *n >= shared.config.max_push_ports_per_ip {
                    continue;
                }
                *n += 1;
                let payload = data.entry(clusters.clone()).or_insert_with(|| {
                    let snap = shared.store().snapshot(&key, &clusters, false);
                    if snap.host_count() > PUSH_MAX_HOSTS {
                        tracing::debug!(service = %key.grouped, hosts = snap.host_count(),
                            "service too large to push; clients poll");
                        return None;
                    }
                    let json = encode::service_json(&snap, &key, &group, &clusters, 10_000, None);
                    Some(String::from_utf8(json).unwrap_or_default())
                });
                let Some(payload) = payload else { continue };
                shared
                    .pushes
                    .send(
                        &shared.udp,
                        &key,
                        target,
                        payload,
                        shared.config.max_subscribers,
                    )
                    .await;
            }
        }
    }
}

pub(crate) async fn udp_loop(shared: Arc<Shared>) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut resend = tokio::time::interval(shared.config.push_ack_timeout / 2);
    loop {
        tokio::select! {
            r = shared.udp.recv_from(&mut buf) => match r {
                Ok((n, _from)) => shared.pushes.on_datagram(&buf[..n]),
                Err(e) => {
                    tracing::debug!(error = %e, "udp receive failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            _ = resend.tick() => {
                shared.pushes.resend(&shared.udp, shared.config.push_ack_timeout, shared.config.push_attempts).await;
            }
        }
    }
}

pub(crate) async fn expiry_loop(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(shared.config.check_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let timing = Timing {
        beat_timeout: shared.config.beat_timeout,
        delete_timeout: shared.config.delete_timeout,
    };
    loop {
        tick.tick().await;
        let refused_at = shared.refused_at();
        let changed = shared.store().expire(timing, Instant::now(), refused_at);
        for key in changed {
            shared.changed(key);
        }
        shared.pushes.expire_clients(shared.config.subscriber_ttl);
        shared
            .answers()
            .retain(|_, (_, _, used)| used.elapsed() < ANSWER_CACHE_TTL);
    }
}

pub(crate) async fn health_loop(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(shared.config.health_check_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let targets = shared.store().persistent();
        let checks = targets
            .into_iter()
            .map(|(key, cluster, ip, port)| async move {
                let ok = tokio::time::timeout(
                    Duration::from_secs(2),
                    TcpStream::connect((ip.as_str(), port)),
                )
                .await
                .map(|r| r.is_ok())
                .unwrap_or(false);
                (key, cluster, ip, port, ok)
            });
        for (key, cluster, ip, port, ok) in futures::future::join_all(checks).await {
            let changed = shared.store().set_health(&key, &cluster, &ip, port, ok);
            if changed {
                tracing::info!(service = %key.grouped, %ip, port, healthy = ok, "persistent instance health changed");
                shared.changed(key);
            }
        }
    }
}
