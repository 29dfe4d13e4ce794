//! The ZooKeeper half of the registry: the operations the failback base calls.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use rdubbo_core::registry::subscribed_categories;
use rdubbo_core::url::{self as durl, keys};
use rdubbo_core::{BoxFuture, RegistryError, RegistryResult, Url};
use rdubbo_registry::{Notifier, RegistryBackend};
use tokio::sync::watch;
use zookeeper_client as zk;

use crate::session::Shared;
use crate::watch::{decode_children, follow, follow_any, read_lists};

/// Maps a ZooKeeper error: connection troubles are [`RegistryError::Unavailable`] (retried),
/// the rest [`RegistryError::Backend`].
pub(crate) fn zk_error(e: &zk::Error, path: &str) -> RegistryError {
    match e {
        zk::Error::ConnectionLoss
        | zk::Error::SessionExpired
        | zk::Error::ClientClosed
        | zk::Error::Timeout
        | zk::Error::NoHosts => RegistryError::Unavailable(format!("{path}: {e}")),
        _ => RegistryError::Backend(format!("{path}: {e}")),
    }
}

/// The [`RegistryBackend`] of [`ZookeeperRegistry`](crate::ZookeeperRegistry).
pub struct ZookeeperBackend {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for ZookeeperBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZookeeperBackend")
            .field("zookeeper", &self.shared.config.connect_string)
            .finish()
    }
}

impl ZookeeperBackend {
    async fn register(&self, url: &Url) -> RegistryResult<()> {
        let shared = &self.shared;
        let conn = shared.current()?;
        let client = &conn.client;
        let path = shared.config.url_path(url);
        let dir = &path[..path.rfind('/').unwrap_or(0)];
        client
            .mkdir(dir, &shared.dir_options())
            .await
            .map_err(|e| zk_error(&e, dir))?;
        let ephemeral = url.param_bool(keys::DYNAMIC, true);
        let options = shared.node_options(ephemeral);
        match client.create(&path, &[], &options).await {
            Ok(_) => Ok(()),
            Err(zk::Error::NodeExists) => {
                if !ephemeral {
                    return Ok(());
                }
                // A node left by an expired session of ours lingers until the server
                // notices; replace it so that it dies with the current session.
                let stat = client
                    .check_stat(&path)
                    .await
                    .map_err(|e| zk_error(&e, &path))?;
                if let Some(stat) = stat {
                    if stat.ephemeral_owner == client.session_id().0 {
                        return Ok(());
                    }
                    match client.delete(&path, None).await {
                        Ok(()) | Err(zk::Error::NoNode) => {}
                        Err(e) => return Err(zk_error(&e, &path)),
                    }
                }
                match client.create(&path, &[], &options).await {
                    Ok(_) | Err(zk::Error::NodeExists) => Ok(()),
                    Err(e) => Err(zk_error(&e, &path)),
                }
            }
            Err(e) => Err(zk_error(&e, &path)),
        }
    }

    async fn unregister(&self, url: &Url) -> RegistryResult<()> {
        let conn = self.shared.current()?;
        let path = self.shared.config.url_path(url);
        match conn.client.delete(&path, None).await {
            Ok(()) | Err(zk::Error::NoNode) => Ok(()),
            Err(e) => Err(zk_error(&e, &path)),
        }
    }

    /// Starts following `url`, replacing what followed it before. For one interface the
    /// first read happens here (an error leaves the retry to the base).
    async fn subscribe(&self, url: &Url, notifier: Notifier) -> RegistryResult<()> {
        let shared = &self.shared;
        let conn = shared.current()?;
        let armed = if url.interface() == keys::ANY {
            None
        } else {
            let (lists, watchers) = read_lists(shared, &conn.client, url).await?;
            for (category, urls) in lists {
                notifier.notify(&category, urls);
            }
            Some((watchers, conn.generation))
        };
        let (cancel, cancelled) = watch::channel(false);
        if let Some(old) = shared.followers().insert(url.to_string(), cancel) {
            old.send_replace(true);
        }
        match armed {
            None => tokio::spawn(follow_any(shared.clone(), notifier, cancelled)),
            Some(armed) => tokio::spawn(follow(
                shared.clone(),
                notifier,
                url.clone(),
                cancelled,
                Some(armed),
            )),
        };
        Ok(())
    }

    async fn lookup(&self, url: &Url) -> RegistryResult<Vec<Url>> {
        let shared = &self.shared;
        let conn = shared.current()?;
        let interfaces = if url.interface() == keys::ANY {
            let root = &shared.config.root;
            match conn.client.list_children(root).await {
                Ok(names) => names
                    .iter()
                    .filter_map(|n| durl::decode(n).ok())
                    .filter(|n| !crate::discovery::is_dubbo3_folder(n))
                    .collect(),
                Err(zk::Error::NoNode) => Vec::new(),
                Err(e) => return Err(zk_error(&e, root)),
            }
        } else {
            vec![url.interface().to_owned()]
        };
        let categories = if url.param(keys::CATEGORY) == Some(keys::ANY) {
            [
                keys::PROVIDERS,
                keys::CONSUMERS,
                keys::ROUTERS,
                keys::CONFIGURATORS,
            ]
            .map(str::to_owned)
            .to_vec()
        } else {
            subscribed_categories(url)
        };
        let mut out = Vec::new();
        for interface in &interfaces {
            for category in &categories {
                let path = shared.config.category_path(interface, category);
                match conn.client.list_children(&path).await {
                    Ok(children) => out.extend(decode_children(url, &children)),
                    Err(zk::Error::NoNode) => {}
                    Err(e) => return Err(zk_error(&e, &path)),
                }
            }
        }
        Ok(out)
    }
}

impl RegistryBackend for ZookeeperBackend {
    fn is_available(&self) -> bool {
        self.shared.current().is_ok()
    }

    fn do_register<'a>(&'a self, url: &'a Url) -> BoxFuture<'a, RegistryResult<()>> {
        Box::pin(self.register(url))
    }

    fn do_unregister<'a>(&'a self, url: &'a Url) -> BoxFuture<'a, RegistryResult<()>> {
        Box::pin(self.unregister(url))
    }

    fn do_subscribe<'a>(
        &'a self,
        url: &'a Url,
        notifier: Notifier,
    ) -> BoxFuture<'a, RegistryResult<()>> {
        Box::pin(self.subscribe(url, notifier))
    }

    fn do_unsubscribe<'a>(&'a self, url: &'a Url) -> BoxFuture<'a, RegistryResult<()>> {
        Box::pin(async move {
            if let Some(cancel) = self.shared.followers().remove(&url.to_string()) {
                cancel.send_replace(true);
            }
            Ok(())
        })
    }

    fn lookup<'a>(&'a self, url: &'a Url) -> BoxFuture<'a, RegistryResult<Vec<Url>>> {
        Box::pin(ZookeeperBackend::lookup(self, url))
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let shared = &self.shared;
            for (_, cancel) in shared.followers().drain() {
                cancel.send_replace(true);
            }
            shared.destroyed.store(true, Ordering::Release);
            shared.closed.send_replace(true);
            shared.conn.send_replace(None);
        })
    }
}
