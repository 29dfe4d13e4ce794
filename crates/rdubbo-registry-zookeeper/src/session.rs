//! The ZooKeeper session: connecting, following the connection state, opening a new
//! session after an expiry, and telling the failback base about it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rdubbo_core::{RegistryError, RegistryResult};
use rdubbo_registry::BackendEvents;
use tokio::sync::watch;
use zookeeper_client as zk;

use crate::config::ZookeeperConfig;

/// A usable connection.
#[derive(Clone)]
pub(crate) struct Conn {
    pub(crate) client: zk::Client,
    /// Incremented for every new session and every reconnect.
    pub(crate) generation: u64,
}

/// What the session task, the subscription tasks and the backend share.
pub(crate) struct Shared {
    pub(crate) config: ZookeeperConfig,
    /// The usable connection, `None` while disconnected.
    pub(crate) conn: watch::Sender<Option<Conn>>,
    pub(crate) closed: watch::Sender<bool>,
    pub(crate) destroyed: AtomicBool,
    /// Cancels the task(s) of each followed subscription, by subscription URL.
    pub(crate) followers: Mutex<HashMap<String, watch::Sender<bool>>>,
    pub(crate) events: BackendEvents,
}

impl Shared {
    pub(crate) fn new(config: ZookeeperConfig, events: BackendEvents) -> Shared {
        Shared {
            config,
            conn: watch::channel(None).0,
            closed: watch::channel(false).0,
            destroyed: AtomicBool::new(false),
            followers: Mutex::new(HashMap::new()),
            events,
        }
    }

    pub(crate) fn followers(&self) -> MutexGuard<'_, HashMap<String, watch::Sender<bool>>> {
        self.followers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The connection, or why there is none. Never a connection that is gone.
    pub(crate) fn current(&self) -> RegistryResult<Conn> {
        if self.destroyed.load(Ordering::Acquire) {
            return Err(RegistryError::Closed);
        }
        self.conn.borrow().clone().ok_or_else(|| {
            RegistryError::Unavailable(format!(
                "not connected to zookeeper {}",
                self.config.connect_string
            ))
        })
    }

    pub(crate) fn dir_options(&self) -> zk::CreateOptions<'static> {
        self.node_options(false)
    }

    pub(crate) fn node_options(&self, ephemeral: bool) -> zk::CreateOptions<'static> {
        let mode = if ephemeral {
            zk::CreateMode::Ephemeral
        } else {
            zk::CreateMode::Persistent
        };
        if self.config.auth.is_some() {
            mode.with_acls(zk::Acls::creator_all())
        } else {
            mode.with_acls(zk::Acls::anyone_all())
        }
    }
}

/// Keeps a session open: connects, follows the session state, publishes the usable
/// connection (or none), and opens a new session after an expiry.
pub(crate) async fn run_session(shared: Arc<Shared>) {
    let mut closed = shared.closed.subscribe();
    let config = &shared.config;
    let mut generation = 0u64;
    let mut backoff = Duration::from_millis(100);
    let max_backoff = Duration::from_secs(2).min(config.retry_period);
    loop {
        if *closed.borrow() {
            return;
        }
        let mut connector = zk::Client::connector()
            .with_session_timeout(config.session_timeout)
            .with_fail_eagerly();
        if let Some(auth) = &config.auth {
            connector = connector.with_auth("digest", auth.as_bytes());
        }
        let attempt = tokio::time::timeout(
            config.connect_timeout,
            connector.connect(&config.connect_string),
        );
        let client = tokio::select! {
            r = attempt => r,
            _ = until_true(&mut closed) => return,
        };
        let client = match client {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => {
                tracing::debug!(zookeeper = %config.connect_string, error = %e, "connect failed");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = until_true(&mut closed) => return,
                }
                backoff = (backoff * 2).min(max_backoff);
                continue;
            }
            Err(_) => {
                tracing::debug!(zookeeper = %config.connect_string, "connect timed out");
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        generation += 1;
        tracing::info!(
            zookeeper = %config.connect_string,
            session = format_args!("{:#x}", client.session_id().0),
            timeout = ?client.session_timeout(),
            "zookeeper session established"
        );
        let mut states = client.state_watcher();
        shared.conn.send_replace(Some(Conn {
            client: client.clone(),
            generation,
        }));
        // Every node is created again (a stale one of the expired session replaced), every
        // subscription read again.
        shared.events.session_renewed();
        loop {
            let state = tokio::select! {
                s = states.changed() => s,
                _ = until_true(&mut closed) => {
                    shared.conn.send_replace(None);
                    return;
                }
            };
            match state {
                zk::SessionState::Disconnected => {
                    tracing::warn!(zookeeper = %config.connect_string, "zookeeper connection lost; keeping the last known lists");
                    shared.conn.send_replace(None);
                }
                zk::SessionState::SyncConnected | zk::SessionState::ConnectedReadOnly => {
                    generation += 1;
                    tracing::info!(zookeeper = %config.connect_string, "zookeeper connection restored");
                    shared.conn.send_replace(Some(Conn {
                        client: client.clone(),
                        generation,
                    }));
                    // Operations that failed while disconnected go again now.
                    shared.events.reconnected();
                }
                other => {
                    tracing::warn!(zookeeper = %config.connect_string, state = ?other, "zookeeper session ended; opening a new one");
                    shared.conn.send_replace(None);
                    break;
                }
            }
        }
    }
}

/// Waits for a usable connection; `None` when `cancel` becomes true.
pub(crate) async fn wait_conn(
    conns: &mut watch::Receiver<Option<Conn>>,
    cancel: &mut watch::Receiver<bool>,
) -> Option<Conn> {
    let conn = async {
        conns
            .wait_for(|c| c.is_some())
            .await
            .ok()
            .and_then(|c| c.clone())
    };
    tokio::select! {
        c = conn => c,
        _ = until_true(cancel) => None,
    }
}

/// Resolves when the flag becomes true (or its sender is gone).
pub(crate) async fn until_true(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|c| *c).await;
}

/// Resolves when the connection is usable again with another generation than `generation`
/// (a reconnect or a new session), so that lists are read again.
pub(crate) async fn conn_renewed(conns: &mut watch::Receiver<Option<Conn>>, generation: u64) {
    let _ = conns
        .wait_for(|c| matches!(c, Some(c) if c.generation != generation))
        .await;
}
