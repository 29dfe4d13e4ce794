//! Subscriptions: reading category folders, arming watches, following changes and
//! reconnects, and the `interface=*` subscription.

use std::collections::HashSet;
use std::sync::Arc;

use futures::future::select_all;
use rdubbo_core::registry::subscribed_categories;
use rdubbo_core::url::{self as durl, keys};
use rdubbo_core::{RegistryResult, Url};
use rdubbo_registry::Notifier;
use tokio::sync::watch;
use zookeeper_client as zk;

use crate::backend::zk_error;
use crate::session::{conn_renewed, until_true, wait_conn, Conn, Shared};

/// Decodes the URL-encoded node names of a category folder, keeping those that match the
/// subscriber. Names that are not URLs (written by something else) are skipped.
pub fn decode_children(subscriber: &Url, children: &[String]) -> Vec<Url> {
    let mut urls: Vec<Url> = Vec::with_capacity(children.len());
    for child in children {
        if !child.contains("%3A%2F%2F") {
            continue;
        }
        match Url::from_encoded(child) {
            Ok(url) if subscriber.matches_provider(&url) => urls.push(url),
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(node = %child, error = %e, "skipping a node that is not a URL")
            }
        }
    }
    urls.sort_by_cached_key(|u| u.to_string());
    urls
}

/// The lists of every category of a subscription, and the watches armed on their folders.
pub(crate) type Lists = (Vec<(String, Vec<Url>)>, Vec<zk::OneshotWatcher>);

/// Reads every category folder of `subscriber` (creating them as Java does) and arms a
/// watch on each.
pub(crate) async fn read_lists(
    shared: &Shared,
    client: &zk::Client,
    subscriber: &Url,
) -> RegistryResult<Lists> {
    let interface = subscriber.interface();
    let mut lists = Vec::new();
    let mut watchers = Vec::new();
    for category in subscribed_categories(subscriber) {
        let path = shared.config.category_path(interface, &category);
        client
            .mkdir(&path, &shared.dir_options())
            .await
            .map_err(|e| zk_error(&e, &path))?;
        let (children, watcher) = client
            .list_and_watch_children(&path)
            .await
            .map_err(|e| zk_error(&e, &path))?;
        lists.push((category, decode_children(subscriber, &children)));
        watchers.push(watcher);
    }
    Ok((lists, watchers))
}

/// Follows one interface's subscription until `cancel` becomes true: waits for a watch
/// to fire or the connection to be renewed, reads the lists again and notifies them
/// (forced after a reconnect). `armed` are the watches of a first read already notified.
pub(crate) async fn follow(
    shared: Arc<Shared>,
    notifier: Notifier,
    subscriber: Url,
    mut cancel: watch::Receiver<bool>,
    armed: Option<(Vec<zk::OneshotWatcher>, u64)>,
) {
    let mut conns = shared.conn.subscribe();
    if let Some((watchers, generation)) = armed {
        if !wait_change(watchers, &mut conns, generation, &mut cancel, &notifier).await {
            return;
        }
    }
    loop {
        let Some(conn) = wait_conn(&mut conns, &mut cancel).await else {
            return;
        };
        match read_lists(&shared, &conn.client, &subscriber).await {
            Ok((lists, watchers)) => {
                for (category, urls) in lists {
                    notifier.notify_as(&subscriber, &category, urls);
                }
                let generation = conn.generation;
                drop(conn);
                if !wait_change(watchers, &mut conns, generation, &mut cancel, &notifier).await {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(service = %subscriber.service_key(), error = %e, "subscription read failed; will retry");
                tokio::select! {
                    _ = tokio::time::sleep(shared.config.retry_period) => {}
                    _ = conn_renewed(&mut conns, conn.generation) => notifier.force_next(),
                    _ = until_true(&mut cancel) => return,
                }
            }
        }
    }
}

/// Waits for one of `watchers` to fire or the connection to be renewed (then the next
/// lists are notified even if unchanged). False when cancelled.
async fn wait_change(
    watchers: Vec<zk::OneshotWatcher>,
    conns: &mut watch::Receiver<Option<Conn>>,
    generation: u64,
    cancel: &mut watch::Receiver<bool>,
    notifier: &Notifier,
) -> bool {
    let fired = select_all(watchers.into_iter().map(|w| Box::pin(w.changed())));
    tokio::select! {
        _ = fired => true,
        _ = conn_renewed(conns, generation) => {
            notifier.force_next();
            true
        }
        _ = until_true(cancel) => false,
    }
}

/// Follows an `interface=*` subscription: watches the root for interfaces and follows each
/// one with the subscription URL narrowed to it.
pub(crate) async fn follow_any(
    shared: Arc<Shared>,
    notifier: Notifier,
    mut cancel: watch::Receiver<bool>,
) {
    let mut conns = shared.conn.subscribe();
    let mut children: HashSet<String> = HashSet::new();
    let root = shared.config.root.clone();
    loop {
        let Some(conn) = wait_conn(&mut conns, &mut cancel).await else {
            return;
        };
        let result = async {
            conn.client
                .mkdir(&root, &shared.dir_options())
                .await
                .map_err(|e| zk_error(&e, &root))?;
            conn.client
                .list_and_watch_children(&root)
                .await
                .map_err(|e| zk_error(&e, &root))
        }
        .await;
        match result {
            Ok((names, watcher)) => {
                for name in names {
                    let Ok(interface) = durl::decode(&name) else {
                        continue;
                    };
                    if crate::discovery::is_dubbo3_folder(&interface) {
                        continue;
                    }
                    if !children.insert(interface.clone()) {
                        continue;
                    }
                    let mut url = notifier.url().clone();
                    url.set_path(&interface);
                    url.set_param(keys::INTERFACE, interface);
                    url.set_param("check", "false");
                    tokio::spawn(follow(
                        shared.clone(),
                        notifier.clone(),
                        url,
                        cancel.clone(),
                        None,
                    ));
                }
                drop(conn.client);
                tokio::select! {
                    _ = watcher.changed() => {}
                    _ = conn_renewed(&mut conns, conn.generation) => {}
                    _ = until_true(&mut cancel) => return,
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "interface=* subscription read failed; will retry");
                tokio::select! {
                    _ = tokio::time::sleep(shared.config.retry_period) => {}
                    _ = conn_renewed(&mut conns, conn.generation) => {}
                    _ = until_true(&mut cancel) => return,
                }
            }
        }
    }
}
