//! ZooKeeper registry for rdubbo, with exactly Apache Dubbo's node layout.
//!
//! ```text
//! /dubbo                                   root: "/" + the registry URL's `group` (default dubbo)
//! /dubbo/<interface>                       persistent
//! /dubbo/<interface>/providers/<enc url>   ephemeral (persistent when dynamic=false)
//! /dubbo/<interface>/consumers/<enc url>   ephemeral
//! /dubbo/<interface>/routers/…             rules
//! /dubbo/<interface>/configurators/…       rules
//! ```
//!
//! Address: `zookeeper://[user:pass@]127.0.0.1:2181?backup=127.0.0.1:2182,127.0.0.1:2183`.
//! Parameters: `group` (root, default `dubbo`), `session` or `zk.session.expire` (session
//! timeout in ms, default 60000), `timeout` (connect timeout in ms, default 5000),
//! `retry.period` (ms between retries of failed operations, default 5000), `check` (fail
//! [`ZookeeperRegistry::connect`] when ZooKeeper cannot be reached, default `false`),
//! `file` / `file.cache=false` (the cache file, see [`RegistryCache::for_registry`]).
//!
//! Resilience, as Java Dubbo's `FailbackRegistry` and more:
//! - the client never uses a connection that is gone: while disconnected every operation
//!   fails at once with [`RegistryError::Unavailable`] and is queued for retry;
//! - failed registrations and unregistrations are retried every `retry.period`;
//! - after a reconnect every subscription re-reads its folders and notifies the full lists;
//! - after a session expiry a new session is opened, every registered node is re-created
//!   (a stale node left by the expired session is replaced) and every watch re-armed;
//! - subscribers are never told "no providers" because the registry went away: lists are
//!   only ever replaced by what ZooKeeper says;
//! - the last list of each service is written to a cache file; a subscription that cannot
//!   reach ZooKeeper is first answered from that file.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::select_all;
use rdubbo_core::registry::{empty_url, subscribed_categories, RegistryCache};
use rdubbo_core::url::{self as durl, keys};
use rdubbo_core::{BoxFuture, NotifyListener, Registry, RegistryError, RegistryResult, Url};
use tokio::sync::watch;
use zookeeper_client as zk;

/// Default session timeout, as Java Dubbo's `zk.session.expire`.
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_millis(60_000);
/// Default connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(5_000);
/// Default period between retries of failed operations.
pub const DEFAULT_RETRY_PERIOD: Duration = Duration::from_millis(5_000);

/// A registry client connected to one ZooKeeper ensemble.
///
/// Cheap to clone; all clones share one session. Dropping the last clone does not
/// unregister anything: call [`Registry::destroy`] for an orderly goodbye.
#[derive(Clone)]
pub struct ZookeeperRegistry {
    inner: Arc<Inner>,
}

/// Parsed registry settings.
#[derive(Debug, Clone)]
pub struct ZookeeperConfig {
    /// `host:port[,host:port…]`.
    pub connect_string: String,
    /// Root path, `/dubbo` by default.
    pub root: String,
    /// Requested session timeout.
    pub session_timeout: Duration,
    /// How long one connection attempt may take.
    pub connect_timeout: Duration,
    /// Period of the retry timer.
    pub retry_period: Duration,
    /// Digest credentials `user:pass`.
    pub auth: Option<String>,
    /// Fail at start when ZooKeeper cannot be reached.
    pub check: bool,
}

impl ZookeeperConfig {
    /// Reads the settings from a `zookeeper://` URL.
    pub fn from_url(url: &Url) -> RegistryResult<ZookeeperConfig> {
        if url.protocol() != "zookeeper" && url.protocol() != "zk" {
            return Err(RegistryError::Invalid(format!(
                "not a zookeeper registry URL: {url}"
            )));
        }
        if url.host().is_empty() {
            return Err(RegistryError::Invalid(format!(
                "zookeeper registry URL without a host: {url}"
            )));
        }
        let mut hosts = vec![format!("{}:{}", url.host(), url.port().unwrap_or(2181))];
        if let Some(backup) = url.param_non_empty("backup") {
            for b in backup.split(',').map(str::trim).filter(|b| !b.is_empty()) {
                if b.contains(':') {
                    hosts.push(b.to_owned());
                } else {
                    hosts.push(format!("{b}:2181"));
                }
            }
        }
        let group = url.param_non_empty(keys::GROUP).unwrap_or("dubbo");
        let root = if group.starts_with('/') {
            group.to_owned()
        } else {
            format!("/{group}")
        };
        let ms = |key: &str| -> RegistryResult<Option<Duration>> {
            match url.param_non_empty(key) {
                None => Ok(None),
                Some(v) => v
                    .parse::<u64>()
                    .map(|n| Some(Duration::from_millis(n)))
                    .map_err(|_| {
                        RegistryError::Invalid(format!("{key}={v}: expected milliseconds"))
                    }),
            }
        };
        let session_timeout = ms("session")?
            .or(ms("zk.session.expire")?)
            .unwrap_or(DEFAULT_SESSION_TIMEOUT);
        let auth = match (url.username(), url.password()) {
            (Some(u), Some(p)) if !u.is_empty() => Some(format!("{u}:{p}")),
            (Some(u), None) if !u.is_empty() => Some(format!("{u}:")),
            _ => None,
        };
        Ok(ZookeeperConfig {
            connect_string: hosts.join(","),
            root: if root.len() > 1 {
                root.trim_end_matches('/').to_owned()
            } else {
                root
            },
            session_timeout,
            connect_timeout: ms(keys::TIMEOUT)?.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            retry_period: ms("retry.period")?.unwrap_or(DEFAULT_RETRY_PERIOD),
            auth,
            check: url.param_bool("check", false),
        })
    }

    fn root_dir(&self) -> String {
        if self.root == "/" {
            "/".to_owned()
        } else {
            format!("{}/", self.root)
        }
    }

    /// `/dubbo/<encoded interface>`.
    pub fn service_path(&self, interface: &str) -> String {
        format!("{}{}", self.root_dir(), durl::encode(interface))
    }

    /// `/dubbo/<interface>/<category>`.
    pub fn category_path(&self, interface: &str, category: &str) -> String {
        format!("{}/{}", self.service_path(interface), category)
    }

    /// The node of a URL: `/dubbo/<interface>/<category>/<encoded full URL>`.
    pub fn url_path(&self, url: &Url) -> String {
        format!(
            "{}/{}",
            self.category_path(url.interface(), url.category()),
            url.to_encoded()
        )
    }
}

#[derive(Clone)]
struct Conn {
    client: zk::Client,
    /// Incremented for every new session and every reconnect.
    generation: u64,
}

struct Subscription {
    url: Url,
    listeners: Mutex<Vec<Arc<dyn NotifyListener>>>,
    /// Last notified list per category (as strings), for de-duplication and late listeners.
    last: Mutex<HashMap<String, Vec<Url>>>,
    cancel: watch::Sender<bool>,
}

impl Subscription {
    fn listeners(&self) -> Vec<Arc<dyn NotifyListener>> {
        self.listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[derive(Default)]
struct State {
    registered: HashMap<String, Url>,
    failed_register: HashMap<String, Url>,
    failed_unregister: HashMap<String, Url>,
    subscriptions: HashMap<String, Arc<Subscription>>,
}

struct Inner {
    url: Url,
    config: ZookeeperConfig,
    conn: watch::Sender<Option<Conn>>,
    state: Mutex<State>,
    cache: RegistryCache,
    closed: watch::Sender<bool>,
    destroyed: AtomicBool,
}

impl ZookeeperRegistry {
    /// Creates the registry and starts connecting in the background. Waits up to the connect
    /// timeout for the first session; when none comes, fails if `check=true`, otherwise
    /// returns a registry that keeps trying (operations queue up and are retried).
    pub async fn connect(url: &Url) -> RegistryResult<ZookeeperRegistry> {
        let registry = ZookeeperRegistry::new(url)?;
        let config = registry.inner.config.clone();
        let connected = registry.wait_connected(config.connect_timeout).await;
        if !connected {
            if config.check {
                registry.destroy().await;
                return Err(RegistryError::Unavailable(format!(
                    "cannot connect to zookeeper {} within {:?}",
                    config.connect_string, config.connect_timeout
                )));
            }
            tracing::warn!(
                zookeeper = %config.connect_string,
                "zookeeper not reachable yet; registrations and subscriptions will be retried"
            );
        }
        Ok(registry)
    }

    /// Creates the registry without waiting for a connection. Must be called inside a Tokio
    /// runtime.
    pub fn new(url: &Url) -> RegistryResult<ZookeeperRegistry> {
        let config = ZookeeperConfig::from_url(url)?;
        let inner = Arc::new(Inner {
            url: url.clone(),
            cache: RegistryCache::for_registry(url),
            config,
            conn: watch::channel(None).0,
            state: Mutex::new(State::default()),
            closed: watch::channel(false).0,
            destroyed: AtomicBool::new(false),
        });
        tokio::spawn(run_session(inner.clone()));
        tokio::spawn(run_retry_timer(inner.clone()));
        Ok(ZookeeperRegistry { inner })
    }

    /// The parsed settings.
    pub fn config(&self) -> &ZookeeperConfig {
        &self.inner.config
    }

    /// Waits until a session is established (true) or `timeout` passes (false).
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let mut rx = self.inner.conn.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|c| c.is_some()))
            .await
            .map(|r| r.is_ok())
            .unwrap_or(false)
    }

    /// The ZooKeeper session id in use, if connected (for logs and tools).
    pub fn session_id(&self) -> Option<i64> {
        self.inner
            .conn
            .borrow()
            .as_ref()
            .map(|c| c.client.session_id().0)
    }

    /// URLs registered through this client whose registration has not succeeded yet.
    pub fn pending_registrations(&self) -> Vec<Url> {
        self.inner
            .lock_state()
            .failed_register
            .values()
            .cloned()
            .collect()
    }
}

impl Inner {
    fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn current(&self) -> RegistryResult<Conn> {
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

    fn dir_options(&self) -> zk::CreateOptions<'static> {
        if self.config.auth.is_some() {
            zk::CreateMode::Persistent.with_acls(zk::Acls::creator_all())
        } else {
            zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())
        }
    }

    fn node_options(&self, ephemeral: bool) -> zk::CreateOptions<'static> {
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

    async fn do_register(&self, url: &Url) -> RegistryResult<()> {
        let conn = self.current()?;
        let client = &conn.client;
        let path = self.config.url_path(url);
        let dir = &path[..path.rfind('/').unwrap_or(0)];
        client
            .mkdir(dir, &self.dir_options())
            .await
            .map_err(|e| zk_error(&e, dir))?;
        let ephemeral = url.param_bool(keys::DYNAMIC, true);
        let options = self.node_options(ephemeral);
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

    async fn do_unregister(&self, url: &Url) -> RegistryResult<()> {
        let conn = self.current()?;
        let path = self.config.url_path(url);
        match conn.client.delete(&path, None).await {
            Ok(()) | Err(zk::Error::NoNode) => Ok(()),
            Err(e) => Err(zk_error(&e, &path)),
        }
    }

    /// Reads the children of a category folder (creating it as Java does) and decodes the
    /// URLs that match `subscriber`.
    async fn read_category(
        &self,
        client: &zk::Client,
        subscriber: &Url,
        interface: &str,
        category: &str,
        watch: bool,
    ) -> RegistryResult<(Vec<Url>, Option<zk::OneshotWatcher>)> {
        let path = self.config.category_path(interface, category);
        client
            .mkdir(&path, &self.dir_options())
            .await
            .map_err(|e| zk_error(&e, &path))?;
        let (children, watcher) = if watch {
            let (c, w) = client
                .list_and_watch_children(&path)
                .await
                .map_err(|e| zk_error(&e, &path))?;
            (c, Some(w))
        } else {
            let c = client
                .list_children(&path)
                .await
                .map_err(|e| zk_error(&e, &path))?;
            (c, None)
        };
        Ok((decode_children(subscriber, &children), watcher))
    }

    /// Delivers one category list to the subscription's listeners if it changed.
    fn deliver(&self, sub: &Subscription, category: &str, urls: Vec<Url>, force: bool) {
        let urls = if urls.is_empty() {
            vec![empty_url(&sub.url, category)]
        } else {
            urls
        };
        {
            let mut last = sub.last.lock().unwrap_or_else(|e| e.into_inner());
            if !force && last.get(category) == Some(&urls) {
                return;
            }
            last.insert(category.to_owned(), urls.clone());
        }
        self.cache.put(&sub.url.service_key(), category, &urls);
        tracing::debug!(service = %sub.url.service_key(), category, count = urls.len(), "notify");
        for listener in sub.listeners() {
            listener.notify(urls.clone());
        }
    }
}

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

fn zk_error(e: &zk::Error, path: &str) -> RegistryError {
    match e {
        zk::Error::ConnectionLoss
        | zk::Error::SessionExpired
        | zk::Error::ClientClosed
        | zk::Error::Timeout
        | zk::Error::NoHosts => RegistryError::Unavailable(format!("{path}: {e}")),
        _ => RegistryError::Backend(format!("{path}: {e}")),
    }
}

/// Keeps a session open: connects, follows the session state, publishes the usable
/// connection (or none), and opens a new session after an expiry.
async fn run_session(inner: Arc<Inner>) {
    let mut closed = inner.closed.subscribe();
    let mut generation = 0u64;
    let mut backoff = Duration::from_millis(100);
    let max_backoff = Duration::from_secs(2).min(inner.config.retry_period);
    loop {
        if *closed.borrow() {
            return;
        }
        let mut connector = zk::Client::connector()
            .with_session_timeout(inner.config.session_timeout)
            .with_fail_eagerly();
        if let Some(auth) = &inner.config.auth {
            connector = connector.with_auth("digest", auth.as_bytes());
        }
        let attempt = tokio::time::timeout(
            inner.config.connect_timeout,
            connector.connect(&inner.config.connect_string),
        );
        let client = tokio::select! {
            r = attempt => r,
            _ = until_true(&mut closed) => return,
        };
        let client = match client {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => {
                tracing::debug!(zookeeper = %inner.config.connect_string, error = %e, "connect failed");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = until_true(&mut closed) => return,
                }
                backoff = (backoff * 2).min(max_backoff);
                continue;
            }
            Err(_) => {
                tracing::debug!(zookeeper = %inner.config.connect_string, "connect timed out");
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        generation += 1;
        tracing::info!(
            zookeeper = %inner.config.connect_string,
            session = format_args!("{:#x}", client.session_id().0),
            timeout = ?client.session_timeout(),
            "zookeeper session established"
        );
        let mut states = client.state_watcher();
        inner.conn.send_replace(Some(Conn {
            client: client.clone(),
            generation,
        }));
        tokio::spawn(recover(inner.clone()));
        loop {
            let state = tokio::select! {
                s = states.changed() => s,
                _ = until_true(&mut closed) => {
                    inner.conn.send_replace(None);
                    return;
                }
            };
            match state {
                zk::SessionState::Disconnected => {
                    tracing::warn!(zookeeper = %inner.config.connect_string, "zookeeper connection lost; keeping the last known lists");
                    inner.conn.send_replace(None);
                }
                zk::SessionState::SyncConnected | zk::SessionState::ConnectedReadOnly => {
                    generation += 1;
                    tracing::info!(zookeeper = %inner.config.connect_string, "zookeeper connection restored");
                    inner.conn.send_replace(Some(Conn {
                        client: client.clone(),
                        generation,
                    }));
                    // Operations that failed while disconnected go again now.
                    tokio::spawn(retry_failed(inner.clone()));
                }
                other => {
                    tracing::warn!(zookeeper = %inner.config.connect_string, state = ?other, "zookeeper session ended; opening a new one");
                    inner.conn.send_replace(None);
                    break;
                }
            }
        }
    }
}

/// After a new session: re-creates every registered node.
async fn recover(inner: Arc<Inner>) {
    let registered: Vec<Url> = inner.lock_state().registered.values().cloned().collect();
    for url in registered {
        let key = url.to_string();
        match inner.do_register(&url).await {
            Ok(()) => {
                inner.lock_state().failed_register.remove(&key);
            }
            Err(e) => {
                tracing::warn!(url = %url, error = %e, "re-registration failed; will retry");
                let mut state = inner.lock_state();
                if state.registered.contains_key(&key) {
                    state.failed_register.insert(key, url);
                }
            }
        }
    }
    retry_failed(inner).await;
}

/// One round of retries of failed registrations and unregistrations.
async fn retry_failed(inner: Arc<Inner>) {
    if inner.current().is_err() {
        return;
    }
    let (register, unregister): (Vec<Url>, Vec<Url>) = {
        let state = inner.lock_state();
        (
            state.failed_register.values().cloned().collect(),
            state.failed_unregister.values().cloned().collect(),
        )
    };
    for url in register {
        let key = url.to_string();
        if inner.do_register(&url).await.is_ok() {
            tracing::info!(url = %url, "registration retried successfully");
            inner.lock_state().failed_register.remove(&key);
        }
    }
    for url in unregister {
        let key = url.to_string();
        if inner.do_unregister(&url).await.is_ok() {
            inner.lock_state().failed_unregister.remove(&key);
        }
    }
}

async fn run_retry_timer(inner: Arc<Inner>) {
    let mut closed = inner.closed.subscribe();
    let mut tick = tokio::time::interval(inner.config.retry_period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => retry_failed(inner.clone()).await,
            _ = until_true(&mut closed) => return,
        }
    }
}

/// Waits for a usable connection; `None` when the subscription is cancelled.
async fn wait_conn(
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
async fn until_true(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|c| *c).await;
}

/// Resolves when the connection is usable again with another generation than `generation`
/// (a reconnect or a new session), so that lists are re-read.
async fn conn_renewed(conns: &mut watch::Receiver<Option<Conn>>, generation: u64) {
    let _ = conns
        .wait_for(|c| matches!(c, Some(c) if c.generation != generation))
        .await;
}

/// Runs one subscription of one interface until it is cancelled.
async fn run_subscription(inner: Arc<Inner>, sub: Arc<Subscription>) {
    let mut conns = inner.conn.subscribe();
    let mut cancel = sub.cancel.subscribe();
    let categories = subscribed_categories(&sub.url);
    let interface = sub.url.interface().to_owned();
    let mut notified_once = false;
    // After a reconnect or a new session the full lists are notified again, changed or not.
    let mut force = false;
    loop {
        let Some(conn) = ({
            // While not connected and nothing was notified yet, answer from the cache.
            if !notified_once && conns.borrow().is_none() {
                notify_from_cache(&inner, &sub, &categories);
                notified_once = true;
            }
            wait_conn(&mut conns, &mut cancel).await
        }) else {
            return;
        };
        let mut watchers = Vec::with_capacity(categories.len());
        let mut lists = Vec::with_capacity(categories.len());
        let mut failure = None;
        for category in &categories {
            match inner
                .read_category(&conn.client, &sub.url, &interface, category, true)
                .await
            {
                Ok((urls, watcher)) => {
                    lists.push((category.clone(), urls));
                    watchers.extend(watcher);
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failure {
            tracing::warn!(service = %sub.url.service_key(), error = %e, "subscription read failed; will retry");
            if !notified_once {
                notify_from_cache(&inner, &sub, &categories);
                notified_once = true;
            }
            tokio::select! {
                _ = tokio::time::sleep(inner.config.retry_period) => {}
                _ = conn_renewed(&mut conns, conn.generation) => force = true,
                _ = until_true(&mut cancel) => return,
            }
            continue;
        }
        for (category, urls) in lists {
            inner.deliver(&sub, &category, urls, force);
        }
        notified_once = true;
        force = false;
        drop(conn.client);
        let fired = select_all(watchers.into_iter().map(|w| Box::pin(w.changed())));
        tokio::select! {
            _ = fired => {}
            _ = conn_renewed(&mut conns, conn.generation) => force = true,
            _ = until_true(&mut cancel) => return,
        }
    }
}

fn notify_from_cache(inner: &Inner, sub: &Subscription, categories: &[String]) {
    let cached = inner.cache.get(&sub.url.service_key());
    if cached.is_empty() {
        return;
    }
    tracing::info!(service = %sub.url.service_key(), count = cached.len(), "zookeeper unreachable; using the cached list");
    for category in categories {
        let urls: Vec<Url> = cached
            .iter()
            .filter(|u| u.category() == category)
            .filter(|u| rdubbo_core::registry::is_empty_url(u) || sub.url.matches_provider(u))
            .cloned()
            .collect();
        if urls.is_empty() {
            continue;
        }
        let urls = urls
            .into_iter()
            .filter(|u| !rdubbo_core::registry::is_empty_url(u))
            .collect();
        inner.deliver(sub, category, urls, false);
    }
}

/// Runs an `interface=*` subscription: watches the root for interfaces and keeps one
/// per-interface subscription for each, sharing the listeners.
async fn run_any_subscription(inner: Arc<Inner>, sub: Arc<Subscription>) {
    let mut conns = inner.conn.subscribe();
    let mut cancel = sub.cancel.subscribe();
    let mut children: HashMap<String, Arc<Subscription>> = HashMap::new();
    let root = inner.config.root.clone();
    loop {
        let Some(conn) = wait_conn(&mut conns, &mut cancel).await else {
            break;
        };
        let result = async {
            conn.client
                .mkdir(&root, &inner.dir_options())
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
                    if children.contains_key(&interface) {
                        continue;
                    }
                    let mut url = sub.url.clone();
                    url.set_path(&interface);
                    url.set_param(keys::INTERFACE, interface.clone());
                    url.set_param("check", "false");
                    let child = Arc::new(Subscription {
                        url,
                        listeners: Mutex::new(sub.listeners()),
                        last: Mutex::new(HashMap::new()),
                        cancel: watch::channel(false).0,
                    });
                    tokio::spawn(run_subscription(inner.clone(), child.clone()));
                    children.insert(interface, child);
                }
                // Late listeners of the `*` subscription reach the children too.
                let listeners = sub.listeners();
                for child in children.values() {
                    *child.listeners.lock().unwrap_or_else(|e| e.into_inner()) = listeners.clone();
                }
                drop(conn.client);
                tokio::select! {
                    _ = watcher.changed() => {}
                    _ = conn_renewed(&mut conns, conn.generation) => {}
                    _ = until_true(&mut cancel) => break,
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "interface=* subscription read failed; will retry");
                tokio::select! {
                    _ = tokio::time::sleep(inner.config.retry_period) => {}
                    _ = conn_renewed(&mut conns, conn.generation) => {}
                    _ = until_true(&mut cancel) => break,
                }
            }
        }
    }
    for child in children.values() {
        child.cancel.send_replace(true);
    }
}

impl Registry for ZookeeperRegistry {
    fn url(&self) -> &Url {
        &self.inner.url
    }

    fn is_available(&self) -> bool {
        self.inner.current().is_ok()
    }

    fn register(&self, url: &Url) -> BoxFuture<'_, RegistryResult<()>> {
        let url = url.clone();
        Box::pin(async move {
            let inner = &self.inner;
            if inner.destroyed.load(Ordering::Acquire) {
                return Err(RegistryError::Closed);
            }
            let key = url.to_string();
            {
                let mut state = inner.lock_state();
                state.registered.insert(key.clone(), url.clone());
                state.failed_unregister.remove(&key);
            }
            match inner.do_register(&url).await {
                Ok(()) => {
                    inner.lock_state().failed_register.remove(&key);
                    tracing::info!(url = %url, "registered");
                    Ok(())
                }
                Err(e) => {
                    tracing::warn!(url = %url, error = %e, "registration failed; will retry");
                    let mut state = inner.lock_state();
                    if state.registered.contains_key(&key) {
                        state.failed_register.insert(key, url);
                    }
                    Err(e)
                }
            }
        })
    }

    fn unregister(&self, url: &Url) -> BoxFuture<'_, RegistryResult<()>> {
        let url = url.clone();
        Box::pin(async move {
            let inner = &self.inner;
            let key = url.to_string();
            {
                let mut state = inner.lock_state();
                state.registered.remove(&key);
                state.failed_register.remove(&key);
            }
            match inner.do_unregister(&url).await {
                Ok(()) => {
                    inner.lock_state().failed_unregister.remove(&key);
                    tracing::info!(url = %url, "unregistered");
                    Ok(())
                }
                Err(RegistryError::Closed) => Err(RegistryError::Closed),
                Err(e) => {
                    tracing::warn!(url = %url, error = %e, "unregistration failed; will retry");
                    inner.lock_state().failed_unregister.insert(key, url);
                    Err(e)
                }
            }
        })
    }

    fn subscribe(
        &self,
        url: &Url,
        listener: Arc<dyn NotifyListener>,
    ) -> BoxFuture<'_, RegistryResult<()>> {
        let url = url.clone();
        Box::pin(async move {
            let inner = &self.inner;
            if inner.destroyed.load(Ordering::Acquire) {
                return Err(RegistryError::Closed);
            }
            let key = url.to_string();
            let existing = inner.lock_state().subscriptions.get(&key).cloned();
            if let Some(sub) = existing {
                sub.listeners
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(listener.clone());
                let last: Vec<Vec<Url>> = sub
                    .last
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .values()
                    .cloned()
                    .collect();
                for urls in last {
                    listener.notify(urls);
                }
                return Ok(());
            }
            let sub = Arc::new(Subscription {
                url: url.clone(),
                listeners: Mutex::new(vec![listener]),
                last: Mutex::new(HashMap::new()),
                cancel: watch::channel(false).0,
            });
            inner.lock_state().subscriptions.insert(key, sub.clone());
            if url.interface() == keys::ANY {
                tokio::spawn(run_any_subscription(inner.clone(), sub));
            } else {
                tokio::spawn(run_subscription(inner.clone(), sub));
            }
            Ok(())
        })
    }

    fn unsubscribe(
        &self,
        url: &Url,
        listener: &Arc<dyn NotifyListener>,
    ) -> BoxFuture<'_, RegistryResult<()>> {
        let key = url.to_string();
        let listener = listener.clone();
        Box::pin(async move {
            let mut state = self.inner.lock_state();
            if let Some(sub) = state.subscriptions.get(&key).cloned() {
                let mut listeners = sub.listeners.lock().unwrap_or_else(|e| e.into_inner());
                listeners.retain(|l| !Arc::ptr_eq(l, &listener));
                if listeners.is_empty() {
                    sub.cancel.send_replace(true);
                    state.subscriptions.remove(&key);
                }
            }
            Ok(())
        })
    }

    fn lookup(&self, url: &Url) -> BoxFuture<'_, RegistryResult<Vec<Url>>> {
        let url = url.clone();
        Box::pin(async move {
            let inner = &self.inner;
            let conn = inner.current()?;
            let interfaces = if url.interface() == keys::ANY {
                let root = &inner.config.root;
                match conn.client.list_children(root).await {
                    Ok(names) => names.iter().filter_map(|n| durl::decode(n).ok()).collect(),
                    Err(zk::Error::NoNode) => Vec::new(),
                    Err(e) => return Err(zk_error(&e, root)),
                }
            } else {
                vec![url.interface().to_owned()]
            };
            let mut categories = subscribed_categories(&url);
            if url.param(keys::CATEGORY) == Some(keys::ANY) {
                categories = [
                    keys::PROVIDERS,
                    keys::CONSUMERS,
                    keys::ROUTERS,
                    keys::CONFIGURATORS,
                ]
                .map(str::to_owned)
                .to_vec();
            }
            let mut out = Vec::new();
            for interface in &interfaces {
                for category in &categories {
                    let path = inner.config.category_path(interface, category);
                    match conn.client.list_children(&path).await {
                        Ok(children) => out.extend(decode_children(&url, &children)),
                        Err(zk::Error::NoNode) => {}
                        Err(e) => return Err(zk_error(&e, &path)),
                    }
                }
            }
            Ok(out)
        })
    }

    fn destroy(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let inner = &self.inner;
            let (registered, subs): (Vec<Url>, Vec<Arc<Subscription>>) = {
                let mut state = inner.lock_state();
                state.failed_register.clear();
                state.failed_unregister.clear();
                (
                    state.registered.drain().map(|(_, u)| u).collect(),
                    state.subscriptions.drain().map(|(_, s)| s).collect(),
                )
            };
            for sub in subs {
                sub.cancel.send_replace(true);
            }
            for url in registered {
                if let Err(e) = inner.do_unregister(&url).await {
                    tracing::debug!(url = %url, error = %e, "unregister at destroy failed");
                }
            }
            inner.cache.flush();
            inner.destroyed.store(true, Ordering::Release);
            inner.closed.send_replace(true);
            inner.conn.send_replace(None);
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_from_url() {
        let url: Url = "zookeeper://admin:secret@127.0.0.1:2181?backup=127.0.0.1:2182,127.0.0.1:2183&group=shop&session=4000&retry.period=1000"
            .parse()
            .unwrap();
        let c = ZookeeperConfig::from_url(&url).unwrap();
        assert_eq!(
            c.connect_string,
            "127.0.0.1:2181,127.0.0.1:2182,127.0.0.1:2183"
        );
        assert_eq!(c.root, "/shop");
        assert_eq!(c.session_timeout, Duration::from_millis(4000));
        assert_eq!(c.retry_period, Duration::from_millis(1000));
        assert_eq!(c.auth.as_deref(), Some("admin:secret"));
        let bad: Url = "zookeeper://127.0.0.1:2181?session=soon".parse().unwrap();
        let err = ZookeeperConfig::from_url(&bad).unwrap_err();
        assert!(err.to_string().contains("session=soon"), "{err}");
        let nacos: Url = "nacos://127.0.0.1:8848".parse().unwrap();
        assert!(ZookeeperConfig::from_url(&nacos).is_err());
    }

    #[test]
    fn node_paths_follow_java_dubbo() {
        let url: Url = "zookeeper://127.0.0.1:2181".parse().unwrap();
        let c = ZookeeperConfig::from_url(&url).unwrap();
        let provider: Url = "jsonrpc://116.211.15.192:30880/im.youni.iccs.status.api.StatusUpdateService2?anyhost=true&interface=im.youni.iccs.status.api.StatusUpdateService&side=provider"
            .parse()
            .unwrap();
        assert_eq!(
            c.url_path(&provider),
            "/dubbo/im.youni.iccs.status.api.StatusUpdateService/providers/jsonrpc%3A%2F%2F116.211.15.192%3A30880%2Fim.youni.iccs.status.api.StatusUpdateService2%3Fanyhost%3Dtrue%26interface%3Dim.youni.iccs.status.api.StatusUpdateService%26side%3Dprovider"
        );
        let consumer = provider
            .clone()
            .with_param("category", "consumers")
            .with_param("side", "consumer");
        assert!(c
            .url_path(&consumer)
            .contains("/consumers/jsonrpc%3A%2F%2F"));
        let url: Url = "zookeeper://127.0.0.1:2181?group=/".parse().unwrap();
        let c = ZookeeperConfig::from_url(&url).unwrap();
        assert_eq!(c.service_path("a.B"), "/a.B");
    }

    #[test]
    fn children_are_decoded_and_filtered() {
        let consumer: Url = "consumer://127.0.0.1/demo.Api?interface=demo.Api&version=1.0.0"
            .parse()
            .unwrap();
        let good: Url = "jsonrpc://127.0.0.1:1/demo.Api?interface=demo.Api&version=1.0.0"
            .parse()
            .unwrap();
        let other_version = good.clone().with_param("version", "2.0.0");
        let disabled = good
            .clone()
            .with_param("enabled", "false")
            .with_param("x", "1");
        let children = vec![
            good.to_encoded(),
            other_version.to_encoded(),
            disabled.to_encoded(),
            "not-a-url".to_owned(),
            "bad%3A%2F%2F%ZZ".to_owned(),
        ];
        assert_eq!(decode_children(&consumer, &children), vec![good]);
    }

    proptest::proptest! {
        #[test]
        fn any_node_names_decode_without_panic(names in proptest::collection::vec("\\PC*", 0..8), tail in "[%0-9A-Za-z.=&]*") {
            let consumer: Url = "consumer://h/x?interface=*&group=*&version=*&category=*".parse().unwrap();
            let mut children = names;
            children.push(format!("jsonrpc%3A%2F%2F{tail}"));
            let _ = decode_children(&consumer, &children);
        }
    }
}
