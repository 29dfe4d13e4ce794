//! Dubbo's dynamic configuration (the config center) in ZooKeeper, as Java's
//! `ZookeeperDynamicConfiguration` keeps it:
//!
//! ```text
//! /dubbo/config/<group>/<key>      persistent: the document (UTF-8 text, usually YAML)
//! ```
//!
//! The root is `/` + the registry URL's `config.namespace`, else the registry root (its
//! `group`, default `dubbo`), then `/config` — Java's namespace defaults to the registry's
//! group when the registry doubles as config center. An empty node is no document (Java
//! treats empty data as deleted).
//!
//! Watches are data watches (or existence watches while the node is missing), re-armed
//! after every change, reconnect and new session; a listener is told the current content
//! first, then each change, never twice the same content in a row.
//!
//! The [`Hub`] and the node follower here also serve the mapping watches of
//! [`ZookeeperServiceDiscovery`](crate::ZookeeperServiceDiscovery).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use rdubbo_core::config_center::{ConfigChange, ConfigListener, DynamicConfiguration};
use rdubbo_core::{BoxFuture, RegistryResult, Url};
use tokio::sync::{oneshot, watch};
use zookeeper_client as zk;

use crate::backend::zk_error;
use crate::session::{conn_renewed, until_true, Conn, Shared};

/// How a hub calls one listener with one value.
type Call<L, T> = fn(&L, &str, &T);

/// Listeners by watched key, the last value each key was notified with, and the cancel
/// switch of the task following the key. Deliveries of one key are serialized, so that a
/// listener added while the key changes never sees an older value after a newer one.
pub(crate) struct Hub<L: ?Sized, T> {
    entries: Mutex<HashMap<String, Entry<L, T>>>,
    call: Call<L, T>,
}

struct Entry<L: ?Sized, T> {
    listeners: Vec<Arc<L>>,
    last: Option<T>,
    cancel: watch::Sender<bool>,
    /// Held while listeners of this key are called.
    delivery: Arc<Mutex<()>>,
}

/// What [`Hub::add`] found.
pub(crate) enum Added {
    /// The key was not followed: start following it (until the receiver turns true).
    Start(watch::Receiver<bool>),
    /// Followed already; the listener got the last value if there was one.
    Joined,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<L: ?Sized, T: Clone + PartialEq> Hub<L, T> {
    pub(crate) fn new(call: Call<L, T>) -> Hub<L, T> {
        Hub {
            entries: Mutex::new(HashMap::new()),
            call,
        }
    }

    /// Adds a listener of `key`; tells it the last value when the key is followed already.
    pub(crate) fn add(&self, key: &str, listener: Arc<L>) -> Added {
        let delivery = {
            let mut entries = lock(&self.entries);
            match entries.get_mut(key) {
                Some(entry) => entry.delivery.clone(),
                None => {
                    let (cancel, cancelled) = watch::channel(false);
                    entries.insert(
                        key.to_owned(),
                        Entry {
                            listeners: vec![listener],
                            last: None,
                            cancel,
                            delivery: Arc::new(Mutex::new(())),
                        },
                    );
                    return Added::Start(cancelled);
                }
            }
        };
        let _serial = lock(&delivery);
        let last = {
            let mut entries = lock(&self.entries);
            match entries.get_mut(key) {
                Some(entry) => {
                    entry.listeners.push(listener.clone());
                    entry.last.clone()
                }
                // Removed meanwhile by its last listener: follow it again.
                None => {
                    drop(entries);
                    drop(_serial);
                    return self.add(key, listener);
                }
            }
        };
        if let Some(last) = last {
            (self.call)(&listener, key, &last);
        }
        Added::Joined
    }

    /// Removes a listener (the same `Arc`); the last one stops the following task.
    pub(crate) fn remove(&self, key: &str, listener: &Arc<L>) {
        let mut entries = lock(&self.entries);
        let Some(entry) = entries.get_mut(key) else {
            return;
        };
        entry.listeners.retain(|l| !Arc::ptr_eq(l, listener));
        if entry.listeners.is_empty() {
            if let Some(entry) = entries.remove(key) {
                entry.cancel.send_replace(true);
            }
        }
    }

    /// Records `value` as `key`'s current value and tells every listener when it differs
    /// from the last one (or is the first).
    pub(crate) fn publish(&self, key: &str, value: T) {
        let Some(delivery) = lock(&self.entries).get(key).map(|e| e.delivery.clone()) else {
            return;
        };
        let _serial = lock(&delivery);
        let listeners = {
            let mut entries = lock(&self.entries);
            let Some(entry) = entries.get_mut(key) else {
                return;
            };
            if entry.last.as_ref() == Some(&value) {
                return;
            }
            entry.last = Some(value.clone());
            entry.listeners.clone()
        };
        for listener in &listeners {
            (self.call)(listener, key, &value);
        }
    }

    /// Whether some listener follows `key`.
    #[cfg(test)]
    pub(crate) fn is_followed(&self, key: &str) -> bool {
        lock(&self.entries).contains_key(key)
    }

    /// The keys followed now, sorted.
    pub(crate) fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = lock(&self.entries).keys().cloned().collect();
        keys.sort();
        keys
    }

    /// Stops every following task (the registry closes).
    pub(crate) fn close(&self) {
        for (_, entry) in lock(&self.entries).drain() {
            entry.cancel.send_replace(true);
        }
    }
}

/// Waits for a usable connection; `None` when cancelled or the registry closed.
pub(crate) async fn next_conn(
    conns: &mut watch::Receiver<Option<Conn>>,
    cancel: &mut watch::Receiver<bool>,
    closed: &mut watch::Receiver<bool>,
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
        _ = until_true(closed) => None,
    }
}

/// Reads a node's data and arms a watch on it (an existence watch when it is missing).
async fn read_node(
    client: &zk::Client,
    path: &str,
) -> RegistryResult<(Option<Vec<u8>>, zk::OneshotWatcher)> {
    loop {
        match client.get_and_watch_data(path).await {
            Ok((data, _, watcher)) => return Ok((Some(data), watcher)),
            Err(zk::Error::NoNode) => {}
            Err(e) => return Err(zk_error(&e, path)),
        }
        match client.check_and_watch_stat(path).await {
            Ok((None, watcher)) => return Ok((None, watcher)),
            // Created in between: read it.
            Ok((Some(_), _)) => continue,
            Err(e) => return Err(zk_error(&e, path)),
        }
    }
}

/// Follows one node until cancelled: `on_value` gets its data (`None` while missing) after
/// the first read, every change, reconnect and new session. `first` learns how the first
/// read went.
pub(crate) async fn follow_node(
    shared: Arc<Shared>,
    path: String,
    mut cancel: watch::Receiver<bool>,
    mut first: Option<oneshot::Sender<RegistryResult<()>>>,
    on_value: impl Fn(Option<Vec<u8>>) + Send + 'static,
) {
    let mut conns = shared.conn.subscribe();
    let mut closed = shared.closed.subscribe();
    loop {
        let Some(conn) = next_conn(&mut conns, &mut cancel, &mut closed).await else {
            return;
        };
        match read_node(&conn.client, &path).await {
            Ok((data, watcher)) => {
                on_value(data);
                if let Some(first) = first.take() {
                    let _ = first.send(Ok(()));
                }
                let generation = conn.generation;
                drop(conn);
                tokio::select! {
                    _ = watcher.changed() => {}
                    _ = conn_renewed(&mut conns, generation) => {}
                    _ = until_true(&mut cancel) => return,
                    _ = until_true(&mut closed) => return,
                }
            }
            Err(e) => {
                tracing::warn!(node = %path, error = %e, "cannot read the node; will retry");
                if let Some(first) = first.take() {
                    let _ = first.send(Err(e));
                }
                tokio::select! {
                    _ = tokio::time::sleep(shared.config.retry_period) => {}
                    _ = conn_renewed(&mut conns, conn.generation) => {}
                    _ = until_true(&mut cancel) => return,
                    _ = until_true(&mut closed) => return,
                }
            }
        }
    }
}

/// Waits for the first read of a follower when connected now (a failure is logged: the
/// follower keeps trying); returns at once while disconnected.
pub(crate) async fn first_read(shared: &Shared, first: oneshot::Receiver<RegistryResult<()>>) {
    if shared.current().is_err() {
        return;
    }
    if let Ok(Err(e)) = first.await {
        tracing::warn!(error = %e, "first read failed; the watch keeps trying");
    }
}

/// The text of a document node: `None` when missing or empty.
fn content(data: Option<Vec<u8>>) -> Option<String> {
    data.filter(|d| !d.is_empty())
        .map(|d| String::from_utf8_lossy(&d).into_owned())
}

/// The [`DynamicConfiguration`] of a [`ZookeeperRegistry`](crate::ZookeeperRegistry),
/// sharing its session (see
/// [`Registry::dynamic_configuration`](rdubbo_core::Registry::dynamic_configuration)).
pub struct ZookeeperDynamicConfiguration {
    shared: Arc<Shared>,
    root: String,
    hub: Arc<Hub<dyn ConfigListener, ConfigChange>>,
}

impl std::fmt::Debug for ZookeeperDynamicConfiguration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZookeeperDynamicConfiguration")
            .field("root", &self.root)
            .finish()
    }
}

/// `/` + `config.namespace`, else the registry root, then `/config`.
fn config_root(url: &Url, registry_root: &str) -> String {
    let base = match url.param_non_empty("config.namespace") {
        Some(ns) => format!("/{}", ns.trim_matches('/')),
        None => registry_root.trim_end_matches('/').to_owned(),
    };
    format!("{base}/config")
}

impl ZookeeperDynamicConfiguration {
    pub(crate) fn new(url: &Url, shared: Arc<Shared>) -> ZookeeperDynamicConfiguration {
        let root = config_root(url, &shared.config.root);
        ZookeeperDynamicConfiguration {
            shared,
            root,
            hub: Arc::new(Hub::new(|l, _, change| l.on_change(change.clone()))),
        }
    }

    /// The root of the documents (`/dubbo/config`).
    pub fn root(&self) -> &str {
        &self.root
    }

    /// The node of a document: `/dubbo/config/<group>/<key>`.
    pub fn path(&self, key: &str, group: &str) -> String {
        format!("{}/{group}/{key}", self.root)
    }

    /// Stops every watch (the registry closes).
    pub(crate) fn close(&self) {
        self.hub.close();
    }
}

impl DynamicConfiguration for ZookeeperDynamicConfiguration {
    fn get(&self, key: &str, group: &str) -> BoxFuture<'_, RegistryResult<Option<String>>> {
        let path = self.path(key, group);
        Box::pin(async move {
            let conn = self.shared.current()?;
            match conn.client.get_data(&path).await {
                Ok((data, _)) => Ok(content(Some(data))),
                Err(zk::Error::NoNode) => Ok(None),
                Err(e) => Err(zk_error(&e, &path)),
            }
        })
    }

    fn publish(&self, key: &str, group: &str, text: &str) -> BoxFuture<'_, RegistryResult<()>> {
        let path = self.path(key, group);
        let data = text.as_bytes().to_vec();
        Box::pin(async move {
            let shared = &self.shared;
            let conn = shared.current()?;
            let client = &conn.client;
            for _ in 0..3 {
                match client.set_data(&path, &data, None).await {
                    Ok(_) => return Ok(()),
                    Err(zk::Error::NoNode) => {}
                    Err(e) => return Err(zk_error(&e, &path)),
                }
                let dir = &path[..path.rfind('/').unwrap_or(0)];
                client
                    .mkdir(dir, &shared.dir_options())
                    .await
                    .map_err(|e| zk_error(&e, dir))?;
                match client
                    .create(&path, &data, &shared.node_options(false))
                    .await
                {
                    Ok(_) => return Ok(()),
                    Err(zk::Error::NodeExists) => continue,
                    Err(e) => return Err(zk_error(&e, &path)),
                }
            }
            Err(rdubbo_core::RegistryError::Backend(format!(
                "{path}: the node keeps changing under us"
            )))
        })
    }

    fn remove(&self, key: &str, group: &str) -> BoxFuture<'_, RegistryResult<()>> {
        let path = self.path(key, group);
        Box::pin(async move {
            let conn = self.shared.current()?;
            match conn.client.delete(&path, None).await {
                Ok(()) | Err(zk::Error::NoNode) => Ok(()),
                Err(e) => Err(zk_error(&e, &path)),
            }
        })
    }

    fn watch(
        &self,
        key: &str,
        group: &str,
        listener: Arc<dyn ConfigListener>,
    ) -> BoxFuture<'_, RegistryResult<()>> {
        let path = self.path(key, group);
        let (key, group) = (key.to_owned(), group.to_owned());
        Box::pin(async move {
            let Added::Start(cancel) = self.hub.add(&path, listener) else {
                return Ok(());
            };
            let (tx, rx) = oneshot::channel();
            let hub = self.hub.clone();
            let node = path.clone();
            tokio::spawn(follow_node(
                self.shared.clone(),
                path,
                cancel,
                Some(tx),
                move |data| {
                    hub.publish(
                        &node,
                        ConfigChange {
                            key: key.clone(),
                            group: group.clone(),
                            content: content(data),
                        },
                    )
                },
            ));
            first_read(&self.shared, rx).await;
            Ok(())
        })
    }

    fn unwatch(
        &self,
        key: &str,
        group: &str,
        listener: &Arc<dyn ConfigListener>,
    ) -> BoxFuture<'_, RegistryResult<()>> {
        self.hub.remove(&self.path(key, group), listener);
        Box::pin(async { Ok(()) })
    }

    fn keys(&self, group: &str) -> BoxFuture<'_, RegistryResult<Vec<String>>> {
        let dir = format!("{}/{group}", self.root);
        Box::pin(async move {
            let conn = self.shared.current()?;
            match conn.client.list_children(&dir).await {
                Ok(mut keys) => {
                    keys.sort();
                    Ok(keys)
                }
                Err(zk::Error::NoNode) => Ok(Vec::new()),
                Err(e) => Err(zk_error(&e, &dir)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_follows_the_registry_group_or_the_namespace() {
        let url: Url = "zookeeper://127.0.0.1:2181".parse().unwrap();
        assert_eq!(config_root(&url, "/dubbo"), "/dubbo/config");
        let url: Url = "zookeeper://127.0.0.1:2181?config.namespace=gov"
            .parse()
            .unwrap();
        assert_eq!(config_root(&url, "/dubbo"), "/gov/config");
        assert_eq!(content(Some(Vec::new())), None);
        assert_eq!(content(Some(b"a".to_vec())).as_deref(), Some("a"));
    }

    #[test]
    fn hub_tells_each_value_once_and_joiners_the_last() {
        type L = dyn Fn(u32) + Send + Sync;
        let hub: Hub<L, u32> = Hub::new(|l, _, v| l(*v));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let a: Arc<L> = Arc::new(move |v| lock(&s).push(("a", v)));
        assert!(matches!(hub.add("k", a.clone()), Added::Start(_)));
        hub.publish("k", 1);
        hub.publish("k", 1);
        let s = seen.clone();
        let b: Arc<L> = Arc::new(move |v| lock(&s).push(("b", v)));
        assert!(matches!(hub.add("k", b.clone()), Added::Joined));
        hub.publish("k", 2);
        hub.remove("k", &a);
        assert!(hub.is_followed("k"));
        hub.remove("k", &b);
        assert!(!hub.is_followed("k"));
        assert_eq!(*lock(&seen), vec![("a", 1), ("b", 1), ("a", 2), ("b", 2)]);
    }
}
