//! Dubbo's dynamic configuration on the Nacos config API v1 (Java's
//! `NacosDynamicConfiguration`): a document is the config `dataId = key`, `group = group`
//! in the registry's namespace (`tenant`; the public namespace is `""`).
//!
//! Watches are followed by one long poll per client (`Listening-Configs` with the MD5 of
//! what each listener last saw, `Long-Pulling-Timeout`): the server answers the keys that
//! changed, which are read again and handed to their listeners. A poll that fails is tried
//! again after a pause (at most `retry.period`); since it sends what the listeners have,
//! nothing is missed across a server restart or an outage. Adding a watch restarts the
//! poll with the new key. At most [`MAX_WATCHED_KEYS`] keys are watched per client.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use http::{Method, StatusCode};
use rdubbo_core::config_center::{ConfigChange, ConfigListener, DynamicConfiguration};
use rdubbo_core::{BoxFuture, RegistryError, RegistryResult, Url};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::api::{ApiError, CallOptions, Shared};
use crate::config_wire::{
    self, content_md5, ListenEntry, CAS_MD5, CONFIGS_PATH, LISTENER_PATH, LISTENING_CONFIGS,
    LONG_POLLING_TIMEOUT,
};

/// Keys one client watches at most (one long poll carries them all, as one task of Java's
/// Nacos client carries 3,000).
pub const MAX_WATCHED_KEYS: usize = 3_000;

/// The [`DynamicConfiguration`] of a [`NacosRegistry`](crate::NacosRegistry) (see
/// [`Registry::dynamic_configuration`](rdubbo_core::Registry::dynamic_configuration)).
///
/// Registry URL parameters it reads: `namespace` (the tenant), `config.long-poll-timeout`
/// (ms the server may hold a poll, default 30000, as Nacos clients).
pub struct NacosConfig {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for NacosConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NacosConfig")
            .field("servers", &self.inner.shared.servers)
            .field("tenant", &self.inner.tenant)
            .finish()
    }
}

struct Watch {
    /// The MD5 of what the listeners last got; `None` before the first read.
    md5: Option<String>,
    listeners: Vec<Arc<dyn ConfigListener>>,
}

struct Inner {
    shared: Arc<Shared>,
    tenant: String,
    poll_timeout: Duration,
    /// (group, key) → watch.
    watches: Mutex<BTreeMap<(String, String), Watch>>,
    /// Restarts the long poll (a watch was added, or the client stops).
    wake: Notify,
    poller: Mutex<Option<JoinHandle<()>>>,
}

/// Why a publish failed.
pub(crate) enum PublishFailure {
    /// The compare-and-set lost: the content changed since it was read.
    Conflict,
    Other(RegistryError),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn check_name(what: &str, name: &str) -> RegistryResult<()> {
    if name.is_empty() || name.len() > 256 || name.chars().any(|c| c.is_control() || c == ' ') {
        return Err(RegistryError::Invalid(format!(
            "invalid config {what}: {name:?}"
        )));
    }
    Ok(())
}

impl NacosConfig {
    pub(crate) fn new(url: &Url, shared: Arc<Shared>) -> NacosConfig {
        let tenant = config_wire::normalize_tenant(&shared.namespace).to_owned();
        let poll_timeout = Duration::from_millis(
            url.param_or("config.long-poll-timeout", 30_000u64)
                .max(1_000),
        );
        NacosConfig {
            inner: Arc::new(Inner {
                shared,
                tenant,
                poll_timeout,
                watches: Mutex::new(BTreeMap::new()),
                wake: Notify::new(),
                poller: Mutex::new(None),
            }),
        }
    }

    /// The tenant (namespace id) configs are read and written in; `""` for `public`.
    pub fn tenant(&self) -> &str {
        &self.inner.tenant
    }

    /// The keys watched now, as `(group, key)`.
    pub fn watched(&self) -> Vec<(String, String)> {
        lock(&self.inner.watches).keys().cloned().collect()
    }

    /// Stops the long poll (the registry's destroy); watches are forgotten.
    pub(crate) fn close(&self) {
        lock(&self.inner.watches).clear();
        if let Some(t) = lock(&self.inner.poller).take() {
            t.abort();
        }
    }

    /// Publishes `content` only if the stored content's MD5 is `cas_md5` (`"0"` or any
    /// value when there is none), as Nacos' `publishConfigCas`.
    pub(crate) async fn publish_cas(
        &self,
        key: &str,
        group: &str,
        content: &str,
        cas_md5: &str,
    ) -> Result<(), PublishFailure> {
        match self.inner.publish(key, group, content, Some(cas_md5)).await {
            Ok(()) => Ok(()),
            Err(ApiError::Rejected(StatusCode::CONFLICT, _)) => Err(PublishFailure::Conflict),
            // Nacos itself answers a lost compare-and-set with a 500.
            Err(ApiError::Unreachable(m)) | Err(ApiError::Rejected(_, m))
                if m.contains("Cas publish fail") =>
            {
                Err(PublishFailure::Conflict)
            }
            Err(e) => Err(PublishFailure::Other(e.into())),
        }
    }

    fn ensure_poller(&self) {
        let mut poller = lock(&self.inner.poller);
        if poller.as_ref().is_none_or(|t| t.is_finished()) {
            *poller = Some(tokio::spawn(poll_loop(Arc::downgrade(&self.inner))));
        }
    }
}

impl Drop for NacosConfig {
    fn drop(&mut self) {
        if let Some(t) = lock(&self.inner.poller).take() {
            t.abort();
        }
    }
}

impl Inner {
    fn base_params(&self, key: &str, group: &str) -> Vec<(&'static str, String)> {
        let mut p = vec![("dataId", key.to_owned()), ("group", group.to_owned())];
        if !self.tenant.is_empty() {
            p.push(("tenant", self.tenant.clone()));
        }
        p
    }

    fn options() -> CallOptions {
        CallOptions {
            no_namespace: true,
            ..CallOptions::default()
        }
    }

    async fn get(&self, key: &str, group: &str) -> Result<Option<String>, ApiError> {
        match self
            .shared
            .request_with(
                Method::GET,
                CONFIGS_PATH,
                self.base_params(key, group),
                &Inner::options(),
            )
            .await
        {
            Ok(content) => Ok(Some(content)),
            Err(ApiError::Rejected(StatusCode::NOT_FOUND, _)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn publish(
        &self,
        key: &str,
        group: &str,
        content: &str,
        cas_md5: Option<&str>,
    ) -> Result<(), ApiError> {
        let mut params = self.base_params(key, group);
        params.push(("content", content.to_owned()));
        let mut options = Inner::options();
        if let Some(md5) = cas_md5 {
            options.headers.push((CAS_MD5, md5.to_owned()));
        }
        let body = self
            .shared
            .request_with(Method::POST, CONFIGS_PATH, params, &options)
            .await?;
        if body.trim() == "true" {
            Ok(())
        } else {
            Err(ApiError::Rejected(
                StatusCode::OK,
                format!("publish not accepted: {}", body.trim()),
            ))
        }
    }

    /// Reads `key` again and, when it differs from what its listeners have, hands it to
    /// them.
    async fn refresh(&self, group: &str, key: &str) -> Result<(), ApiError> {
        let content = self.get(key, group).await?;
        let md5 = content_md5(content.as_deref());
        let listeners = {
            let mut watches = lock(&self.watches);
            let Some(w) = watches.get_mut(&(group.to_owned(), key.to_owned())) else {
                return Ok(());
            };
            if w.md5.as_deref() == Some(md5.as_str()) {
                return Ok(());
            }
            w.md5 = Some(md5);
            w.listeners.clone()
        };
        let change = ConfigChange {
            key: key.to_owned(),
            group: group.to_owned(),
            content,
        };
        for l in listeners {
            l.on_change(change.clone());
        }
        Ok(())
    }
}

/// The long poll: reads the keys never read yet, then asks the server which keys differ
/// from what the listeners have, holding the request up to the poll timeout.
async fn poll_loop(inner: Weak<Inner>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let Some(me) = inner.upgrade() else { return };
        let (unread, entries): (Vec<(String, String)>, Vec<ListenEntry>) = {
            let watches = lock(&me.watches);
            let unread = watches
                .iter()
                .filter(|(_, w)| w.md5.is_none())
                .map(|(k, _)| k.clone())
                .collect();
            let entries = watches
                .iter()
                .map(|((group, key), w)| ListenEntry {
                    data_id: key.clone(),
                    group: group.clone(),
                    md5: w.md5.clone().unwrap_or_default(),
                    tenant: me.tenant.clone(),
                })
                .collect();
            (unread, entries)
        };
        let mut failed = None;
        for (group, key) in &unread {
            if let Err(e) = me.refresh(group, key).await {
                failed = Some(RegistryError::from(e));
                break;
            }
        }
        if failed.is_none() && unread.is_empty() && entries.is_empty() {
            // The task holds the client until it is aborted (its handle's drop or close).
            me.wake.notified().await;
            continue;
        }
        if failed.is_none() && unread.is_empty() {
            let mut params = vec![(LISTENING_CONFIGS, config_wire::listening_configs(&entries))];
            if !me.tenant.is_empty() {
                params.push(("tenant", me.tenant.clone()));
            }
            let options = CallOptions {
                headers: vec![(
                    LONG_POLLING_TIMEOUT,
                    me.poll_timeout.as_millis().to_string(),
                )],
                timeout: Some(me.poll_timeout + me.poll_timeout / 2),
                no_namespace: true,
            };
            let poll = me
                .shared
                .request_with(Method::POST, LISTENER_PATH, params, &options);
            let answer = tokio::select! {
                a = poll => Some(a),
                _ = me.wake.notified() => None,
            };
            match answer {
                // A watch was added: poll again with it.
                None => continue,
                Some(Ok(body)) => {
                    backoff = Duration::from_millis(200);
                    for (key, group, _tenant) in config_wire::parse_changed_keys(&body) {
                        if let Err(e) = me.refresh(&group, &key).await {
                            failed = Some(RegistryError::from(e));
                            break;
                        }
                    }
                }
                Some(Err(e)) => failed = Some(e.into()),
            }
        }
        if let Some(e) = failed {
            me.shared
                .log_unreachable("config long poll", &e.to_string());
            let wait = backoff.min(me.shared.retry_period);
            backoff = (backoff * 2).min(me.shared.retry_period);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = me.wake.notified() => {}
            }
        }
    }
}

impl DynamicConfiguration for NacosConfig {
    fn get(&self, key: &str, group: &str) -> BoxFuture<'_, RegistryResult<Option<String>>> {
        let (key, group) = (key.to_owned(), group.to_owned());
        Box::pin(async move {
            check_name("key", &key)?;
            check_name("group", &group)?;
            Ok(self.inner.get(&key, &group).await?)
        })
    }

    fn publish(&self, key: &str, group: &str, content: &str) -> BoxFuture<'_, RegistryResult<()>> {
        let (key, group, content) = (key.to_owned(), group.to_owned(), content.to_owned());
        Box::pin(async move {
            check_name("key", &key)?;
            check_name("group", &group)?;
            if content.trim().is_empty() {
                return Err(RegistryError::Invalid(
                    "nacos keeps no empty config: remove it instead".into(),
                ));
            }
            Ok(self.inner.publish(&key, &group, &content, None).await?)
        })
    }

    fn remove(&self, key: &str, group: &str) -> BoxFuture<'_, RegistryResult<()>> {
        let (key, group) = (key.to_owned(), group.to_owned());
        Box::pin(async move {
            check_name("key", &key)?;
            check_name("group", &group)?;
            self.inner
                .shared
                .request_with(
                    Method::DELETE,
                    CONFIGS_PATH,
                    self.inner.base_params(&key, &group),
                    &Inner::options(),
                )
                .await?;
            Ok(())
        })
    }

    fn watch(
        &self,
        key: &str,
        group: &str,
        listener: Arc<dyn ConfigListener>,
    ) -> BoxFuture<'_, RegistryResult<()>> {
        let (key, group) = (key.to_owned(), group.to_owned());
        Box::pin(async move {
            check_name("key", &key)?;
            check_name("group", &group)?;
            let id = (group.clone(), key.clone());
            {
                let mut watches = lock(&self.inner.watches);
                if !watches.contains_key(&id) && watches.len() >= MAX_WATCHED_KEYS {
                    return Err(RegistryError::Invalid(format!(
                        "too many watched configs (limit {MAX_WATCHED_KEYS})"
                    )));
                }
                watches
                    .entry(id.clone())
                    .or_insert_with(|| Watch {
                        md5: None,
                        listeners: Vec::new(),
                    })
                    .listeners
                    .push(listener.clone());
            }
            // The current content for the new listener now; the others get it from the
            // poll if it differs from theirs. When the server cannot be reached, the poll
            // reads it once it can.
            match self.inner.get(&key, &group).await {
                Ok(content) => {
                    let md5 = content_md5(content.as_deref());
                    {
                        let mut watches = lock(&self.inner.watches);
                        if let Some(w) = watches.get_mut(&id) {
                            if w.md5.is_none() {
                                w.md5 = Some(md5);
                            }
                        }
                    }
                    listener.on_change(ConfigChange {
                        key: key.clone(),
                        group: group.clone(),
                        content,
                    });
                }
                Err(e) => {
                    let e = RegistryError::from(e);
                    self.inner
                        .shared
                        .log_unreachable("config read", &e.to_string());
                }
            }
            self.ensure_poller();
            self.inner.wake.notify_one();
            Ok(())
        })
    }

    fn unwatch(
        &self,
        key: &str,
        group: &str,
        listener: &Arc<dyn ConfigListener>,
    ) -> BoxFuture<'_, RegistryResult<()>> {
        let id = (group.to_owned(), key.to_owned());
        let listener = listener.clone();
        Box::pin(async move {
            let mut watches = lock(&self.inner.watches);
            if let Some(w) = watches.get_mut(&id) {
                w.listeners.retain(|l| !Arc::ptr_eq(l, &listener));
                if w.listeners.is_empty() {
                    watches.remove(&id);
                }
            }
            Ok(())
        })
    }

    fn keys(&self, group: &str) -> BoxFuture<'_, RegistryResult<Vec<String>>> {
        let group = group.to_owned();
        Box::pin(async move {
            check_name("group", &group)?;
            let mut keys = Vec::new();
            let page_size = 500;
            for page in 1..=2_000usize {
                let mut params = vec![
                    ("search", "accurate".to_owned()),
                    ("dataId", String::new()),
                    ("group", group.clone()),
                    ("pageNo", page.to_string()),
                    ("pageSize", page_size.to_string()),
                ];
                if !self.inner.tenant.is_empty() {
                    params.push(("tenant", self.inner.tenant.clone()));
                }
                let body = self
                    .inner
                    .shared
                    .request_with(Method::GET, CONFIGS_PATH, params, &Inner::options())
                    .await?;
                #[derive(serde::Deserialize)]
                #[serde(rename_all = "camelCase")]
                struct Page {
                    #[serde(default)]
                    total_count: usize,
                    #[serde(default)]
                    page_items: Vec<Item>,
                }
                #[derive(serde::Deserialize)]
                #[serde(rename_all = "camelCase")]
                struct Item {
                    data_id: String,
                }
                let p: Page = serde_json::from_str(&body)
                    .map_err(|e| RegistryError::Backend(format!("unreadable config list: {e}")))?;
                let got = p.page_items.len();
                keys.extend(p.page_items.into_iter().map(|i| i.data_id));
                if got < page_size || keys.len() >= p.total_count {
                    break;
                }
            }
            keys.sort();
            keys.dedup();
            Ok(keys)
        })
    }
}
