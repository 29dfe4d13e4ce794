//! Writing instances and mappings, and writing them again after a reconnect, a new
//! session or a failure.

use std::sync::Weak;
use std::time::Duration;

use rdubbo_core::{RegistryError, RegistryResult};
use zookeeper_client as zk;

use super::nodes::{millis_now, parse_mapping};
use super::{Inner, MAPPING_ATTEMPTS};
use crate::backend::zk_error;
use crate::session::until_true;

impl Inner {
    /// Creates (or updates, or replaces when a dead session left it) one instance node.
    pub(super) async fn write_instance(&self, path: &str, data: &[u8]) -> RegistryResult<()> {
        let shared = &self.shared;
        let conn = shared.current()?;
        let client = &conn.client;
        let dir = &path[..path.rfind('/').unwrap_or(0)];
        if !dir.is_empty() {
            client
                .mkdir(dir, &shared.dir_options())
                .await
                .map_err(|e| zk_error(&e, dir))?;
        }
        let options = shared.node_options(true);
        for _ in 0..3 {
            match client.create(path, data, &options).await {
                Ok(_) => return Ok(()),
                Err(zk::Error::NodeExists) => {}
                Err(e) => return Err(zk_error(&e, path)),
            }
            let (current, stat) = match client.get_data(path).await {
                Ok(found) => found,
                Err(zk::Error::NoNode) => continue,
                Err(e) => return Err(zk_error(&e, path)),
            };
            if stat.ephemeral_owner == client.session_id().0 {
                if current == data {
                    return Ok(());
                }
                return match client.set_data(path, data, None).await {
                    Ok(_) => Ok(()),
                    Err(zk::Error::NoNode) => continue,
                    Err(e) => Err(zk_error(&e, path)),
                };
            }
            // Left by a session of ours that expired (or by another process at the same
            // address): it must die with the current session.
            match client.delete(path, Some(stat.version)).await {
                Ok(()) | Err(zk::Error::NoNode) | Err(zk::Error::BadVersion) => {}
                Err(e) => return Err(zk_error(&e, path)),
            }
        }
        Err(RegistryError::Backend(format!(
            "{path}: the node keeps changing under us"
        )))
    }

    /// Adds `app` to the mapping of `interface`, compare-and-set on the node's version.
    pub(super) async fn write_mapping(&self, interface: &str, app: &str) -> RegistryResult<()> {
        let shared = &self.shared;
        let conn = shared.current()?;
        let client = &conn.client;
        let path = format!("{}/{interface}", self.mapping_root);
        for attempt in 0..MAPPING_ATTEMPTS {
            if attempt > 0 {
                // Someone else wrote in between: back off a little, at random.
                let jitter = u64::from(std::process::id()).wrapping_add(millis_now()) % 50;
                tokio::time::sleep(Duration::from_millis(10 + jitter)).await;
            }
            match client.get_data(&path).await {
                Ok((data, stat)) => {
                    if parse_mapping(&data).iter().any(|a| a == app) {
                        return Ok(());
                    }
                    // Appended, as Java does (`old + "," + app`).
                    let old = String::from_utf8_lossy(&data);
                    let old = old.trim().trim_end_matches(',');
                    let new = if old.is_empty() {
                        app.to_owned()
                    } else {
                        format!("{old},{app}")
                    };
                    match client
                        .set_data(&path, new.as_bytes(), Some(stat.version))
                        .await
                    {
                        Ok(_) => return Ok(()),
                        Err(zk::Error::BadVersion) | Err(zk::Error::NoNode) => continue,
                        Err(e) => return Err(zk_error(&e, &path)),
                    }
                }
                Err(zk::Error::NoNode) => {
                    client
                        .mkdir(&self.mapping_root, &shared.dir_options())
                        .await
                        .map_err(|e| zk_error(&e, &self.mapping_root))?;
                    match client
                        .create(&path, app.as_bytes(), &shared.node_options(false))
                        .await
                    {
                        Ok(_) => return Ok(()),
                        Err(zk::Error::NodeExists) => continue,
                        Err(e) => return Err(zk_error(&e, &path)),
                    }
                }
                Err(e) => return Err(zk_error(&e, &path)),
            }
        }
        Err(RegistryError::Backend(format!(
            "{path}: gave up after {MAPPING_ATTEMPTS} concurrent updates"
        )))
    }

    /// Writes every instance and mapping; true when all succeeded.
    pub(super) async fn write_all(&self) -> bool {
        let (instances, mappings) = {
            let mut state = self.state();
            state.failed = false;
            (state.instances.clone(), state.mappings.clone())
        };
        let mut ok = true;
        for (path, data) in &instances {
            // Unregistered meanwhile: leave it alone.
            if self.state().instances.get(path) != Some(data) {
                continue;
            }
            if let Err(e) = self.write_instance(path, data).await {
                tracing::warn!(node = %path, error = %e, "instance registration failed; will retry");
                ok = false;
            } else if !self.state().instances.contains_key(path) {
                // Unregistered while it was being written: take it away again.
                if let Ok(conn) = self.shared.current() {
                    let _ = conn.client.delete(path, None).await;
                }
            }
        }
        for (interface, app) in &mappings {
            if let Err(e) = self.write_mapping(interface, app).await {
                tracing::warn!(interface = %interface, app = %app, error = %e, "mapping failed; will retry");
                ok = false;
            }
        }
        if !ok {
            self.state().failed = true;
        }
        ok
    }
}

/// Writes everything again on every new connection (a reconnect or a new session), and
/// every `retry.period` while something failed, until the registry closes.
pub(super) async fn keep(inner: Weak<Inner>) {
    let (mut conns, mut closed, period) = match inner.upgrade() {
        Some(i) => (
            i.shared.conn.subscribe(),
            i.shared.closed.subscribe(),
            i.shared.config.retry_period,
        ),
        None => return,
    };
    let mut generation = conns.borrow().as_ref().map(|c| c.generation);
    loop {
        let retry = async {
            match inner.upgrade() {
                Some(i) => {
                    i.retry.notified().await;
                    // Let a burst of failures gather.
                    tokio::time::sleep(period).await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            changed = conns.changed() => {
                if changed.is_err() {
                    return;
                }
                let now = conns.borrow_and_update().as_ref().map(|c| c.generation);
                if now.is_none() || now == generation {
                    continue;
                }
                generation = now;
            }
            _ = retry => {}
            _ = until_true(&mut closed) => return,
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let pending = {
            let state = inner.state();
            !state.instances.is_empty() || !state.mappings.is_empty()
        };
        if pending && !inner.write_all().await {
            inner.retry.notify_one();
        }
    }
}
