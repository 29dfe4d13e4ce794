//! Following the instances of one application (`/services/<app>`), as Curator's
//! `ServiceCache` does.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::stream::{FuturesUnordered, StreamExt};
use rdubbo_core::discovery::{InstancesListener, ServiceInstance};
use rdubbo_core::RegistryResult;
use tokio::sync::{oneshot, watch};
use zookeeper_client as zk;

use super::nodes::parse_instance;
use crate::backend::zk_error;
use crate::config_center::{next_conn, Hub};
use crate::session::{conn_renewed, until_true, Conn, Shared};

/// A watched data read of one instance node: its name when the watch fires.
type DataWatch = std::pin::Pin<Box<dyn std::future::Future<Output = String> + Send>>;

/// The instances of one application as last read, with the watches armed on them.
struct AppView {
    dir: String,
    /// Child node name → the instance it holds (`None`: not an instance).
    children: BTreeMap<String, Option<ServiceInstance>>,
    data_watches: FuturesUnordered<DataWatch>,
}

impl AppView {
    fn list(&self) -> Vec<ServiceInstance> {
        let mut list: Vec<ServiceInstance> = self.children.values().flatten().cloned().collect();
        list.sort_by_key(ServiceInstance::id);
        list
    }

    /// Reads the folder's children (arming a children watch, or an existence watch while
    /// the folder is missing), reads the children not known yet and forgets those gone.
    async fn read_children(&mut self, client: &zk::Client) -> RegistryResult<zk::OneshotWatcher> {
        let (names, watcher) = loop {
            match client.list_and_watch_children(&self.dir).await {
                Ok(found) => break found,
                Err(zk::Error::NoNode) => {}
                Err(e) => return Err(zk_error(&e, &self.dir)),
            }
            match client.check_and_watch_stat(&self.dir).await {
                Ok((None, watcher)) => break (Vec::new(), watcher),
                Ok((Some(_), _)) => continue,
                Err(e) => return Err(zk_error(&e, &self.dir)),
            }
        };
        let names: BTreeSet<String> = names.into_iter().collect();
        self.children.retain(|name, _| names.contains(name));
        for name in names {
            if !self.children.contains_key(&name) {
                self.read_child(client, &name).await?;
            }
        }
        Ok(watcher)
    }

    /// Reads one child and arms a data watch on it.
    async fn read_child(&mut self, client: &zk::Client, name: &str) -> RegistryResult<()> {
        let path = format!("{}/{name}", self.dir);
        match client.get_and_watch_data(&path).await {
            Ok((data, _, watcher)) => {
                let instance = parse_instance(&data);
                if instance.is_none() {
                    tracing::debug!(node = %path, "not an instance; skipped");
                }
                self.children.insert(name.to_owned(), instance);
                let name = name.to_owned();
                self.data_watches.push(Box::pin(async move {
                    watcher.changed().await;
                    name
                }));
                Ok(())
            }
            Err(zk::Error::NoNode) => {
                self.children.remove(name);
                Ok(())
            }
            Err(e) => Err(zk_error(&e, &path)),
        }
    }
}

/// Follows the instances of one application (`dir` = `/services/<app>`) until cancelled,
/// as Curator's `ServiceCache` does: a children watch on the folder and a data watch on
/// each instance; only what changed is read again; the whole folder after a reconnect or a
/// new session. `hub` gets the complete list after each change.
pub(super) async fn follow_instances(
    shared: Arc<Shared>,
    hub: Arc<Hub<dyn InstancesListener, Vec<ServiceInstance>>>,
    dir: String,
    mut cancel: watch::Receiver<bool>,
    first: oneshot::Sender<RegistryResult<()>>,
) {
    let mut first = Some(first);
    let mut conns = shared.conn.subscribe();
    let mut closed = shared.closed.subscribe();
    loop {
        let Some(conn) = next_conn(&mut conns, &mut cancel, &mut closed).await else {
            return;
        };
        let mut view = AppView {
            dir: dir.clone(),
            children: BTreeMap::new(),
            data_watches: FuturesUnordered::new(),
        };
        let result = follow_view(
            &hub,
            &mut view,
            &conn,
            &mut conns,
            (&mut cancel, &mut closed),
            &mut first,
        )
        .await;
        match result {
            Ok(true) => continue,
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(folder = %dir, error = %e, "cannot read the instances; will retry");
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

/// Reads the folder over `conn` and follows its changes; `Ok(true)` when the connection
/// was renewed (read everything again), `Ok(false)` when cancelled.
async fn follow_view(
    hub: &Hub<dyn InstancesListener, Vec<ServiceInstance>>,
    view: &mut AppView,
    conn: &Conn,
    conns: &mut watch::Receiver<Option<Conn>>,
    stop: (&mut watch::Receiver<bool>, &mut watch::Receiver<bool>),
    first: &mut Option<oneshot::Sender<RegistryResult<()>>>,
) -> RegistryResult<bool> {
    enum Event {
        Children,
        Data(String),
        Renewed,
        Stop,
    }
    let (cancel, closed) = stop;
    let client = &conn.client;
    let watcher = view.read_children(client).await?;
    let mut children_fired: WatchFired = Box::pin(watcher.changed());
    loop {
        hub.publish(&view.dir, view.list());
        if let Some(first) = first.take() {
            let _ = first.send(Ok(()));
        }
        let event = loop {
            let event = tokio::select! {
                _ = &mut children_fired => Event::Children,
                Some(name) = view.data_watches.next(), if !view.data_watches.is_empty() => Event::Data(name),
                _ = conn_renewed(conns, conn.generation) => Event::Renewed,
                _ = until_true(cancel) => Event::Stop,
                _ = until_true(closed) => Event::Stop,
            };
            match event {
                // The watch of a child gone meanwhile.
                Event::Data(ref name) if !view.children.contains_key(name) => continue,
                event => break event,
            }
        };
        match event {
            Event::Children => {
                let watcher = view.read_children(client).await?;
                children_fired = Box::pin(watcher.changed());
            }
            // Either it changed, or it is gone (then the children watch fires too).
            Event::Data(name) => view.read_child(client, &name).await?,
            Event::Renewed => return Ok(true),
            Event::Stop => return Ok(false),
        }
    }
}

/// A fired children (or existence) watch.
type WatchFired = std::pin::Pin<Box<dyn std::future::Future<Output = zk::WatchedEvent> + Send>>;
