//! The registry abstraction shared by every registry (ZooKeeper, Nacos …).
//!
//! A registry stores URLs by service and category and tells subscribers about changes:
//!
//! - providers [`register`](Registry::register) their `jsonrpc://…`/`dubbo://…` URLs;
//! - consumers register a `consumer://…` URL and [`subscribe`](Registry::subscribe) to the
//!   categories they need (`providers`, `configurators`, `routers`);
//! - every notification carries the **complete current list of one category**, as Java
//!   Dubbo's `NotifyListener` does; an empty category is announced by a single
//!   `empty://` URL with the category as a parameter (see [`empty_url`]).
//!
//! The [`RegistryCache`] keeps the last notified list of each service in a file so that a
//! consumer that starts while its registry is unreachable can still call.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::url::keys;
use crate::{BoxFuture, Url};

/// The URL scheme of the placeholder that announces an empty category.
pub const EMPTY_PROTOCOL: &str = "empty";

/// What went wrong talking to a registry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The registry cannot be reached right now. Registrations and subscriptions that failed
    /// this way are retried in the background.
    #[error("registry unavailable: {0}")]
    Unavailable(String),
    /// The registry URL or a URL handed to the registry is not usable.
    #[error("invalid registry request: {0}")]
    Invalid(String),
    /// The registry answered with an error.
    #[error("registry error: {0}")]
    Backend(String),
    /// The registry was destroyed.
    #[error("registry closed")]
    Closed,
}

/// Result of a registry operation.
pub type RegistryResult<T> = Result<T, RegistryError>;

/// Receives the complete current list of one category each time it may have changed.
pub trait NotifyListener: Send + Sync + 'static {
    /// `urls` is never empty: an empty category arrives as one `empty://` URL.
    fn notify(&self, urls: Vec<Url>);
}

impl<F: Fn(Vec<Url>) + Send + Sync + 'static> NotifyListener for F {
    fn notify(&self, urls: Vec<Url>) {
        self(urls)
    }
}

/// A service registry.
pub trait Registry: Send + Sync + 'static {
    /// The registry's own URL (`zookeeper://127.0.0.1:2181?…`).
    fn url(&self) -> &Url;

    /// Whether the registry is connected right now.
    fn is_available(&self) -> bool;

    /// Publishes `url` (a provider, a consumer, a rule). Kept and re-published after a
    /// reconnect or a session loss. On [`RegistryError::Unavailable`] the registration is
    /// retried in the background until it succeeds or is unregistered.
    fn register(&self, url: &Url) -> BoxFuture<'_, RegistryResult<()>>;

    /// Withdraws a URL published with [`register`](Registry::register).
    fn unregister(&self, url: &Url) -> BoxFuture<'_, RegistryResult<()>>;

    /// Watches the categories named by `url`'s `category` parameter (default `providers`)
    /// of its interface (`*` for every interface). The listener is notified with the
    /// current list of each category as soon as it is known, then on every change.
    fn subscribe(
        &self,
        url: &Url,
        listener: Arc<dyn NotifyListener>,
    ) -> BoxFuture<'_, RegistryResult<()>>;

    /// Stops notifying `listener` about `url`.
    fn unsubscribe(
        &self,
        url: &Url,
        listener: &Arc<dyn NotifyListener>,
    ) -> BoxFuture<'_, RegistryResult<()>>;

    /// The URLs currently registered that match `url` (one read, no watch).
    fn lookup(&self, url: &Url) -> BoxFuture<'_, RegistryResult<Vec<Url>>>;

    /// Unregisters everything this client registered, stops all subscriptions and closes
    /// the connection.
    fn destroy(&self) -> BoxFuture<'_, ()>;

    /// Application-level registration (Dubbo 3's instances and interface → application
    /// mapping) in the same registry, if it supports it. The default: none.
    fn service_discovery(&self) -> Option<Arc<dyn crate::ServiceDiscovery>> {
        None
    }

    /// Dubbo's dynamic configuration (governance rules as documents by key and group) in
    /// the same backend, if it has one. The default: none.
    fn dynamic_configuration(&self) -> Option<Arc<dyn crate::DynamicConfiguration>> {
        None
    }
}

/// The placeholder Java Dubbo notifies for an empty category: the subscriber's URL with the
/// `empty` scheme and `category=<category>`.
pub fn empty_url(subscriber: &Url, category: &str) -> Url {
    let mut url = subscriber.clone();
    url.set_protocol(EMPTY_PROTOCOL);
    url.set_param(keys::CATEGORY, category);
    url
}

/// Whether `url` is an `empty://` placeholder.
pub fn is_empty_url(url: &Url) -> bool {
    url.protocol() == EMPTY_PROTOCOL
}

/// The categories a subscription URL asks for (`category` parameter, comma separated,
/// default `providers`).
pub fn subscribed_categories(url: &Url) -> Vec<String> {
    match url.param_non_empty(keys::CATEGORY) {
        None => vec![keys::PROVIDERS.to_owned()],
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty() && *c != keys::ANY && !c.starts_with('-'))
            .map(str::to_owned)
            .collect(),
    }
}

/// The last notified URLs of each service, kept in a file in the format Java Dubbo's
/// `AbstractRegistry` uses (a Java properties file: service key → the full URLs of all
/// categories, separated by spaces).
///
/// Updates are kept in memory at once and written to the file in batches by a background
/// thread (at most one write per 100 ms, none while nothing changed), so a burst of
/// notifications costs one write, never one per notification. [`flush`](Self::flush)
/// writes pending changes now; dropping the cache flushes too.
///
/// Several caches may share one file (registries of one URL in a process, a provider's and
/// a consumer's, or instances of one application on one host): a write replaces only the
/// categories this cache was told, on top of what the file holds then, so one never erases
/// another's lists. Writes take turns, in a process and across processes (an exclusive
/// `flock` of `<file>.lock`, as Java locks that file).
pub struct RegistryCache {
    path: Option<PathBuf>,
    shared: Arc<CacheShared>,
}

struct CacheShared {
    entries: Mutex<Entries>,
    dirty: AtomicBool,
    writer_running: AtomicBool,
}

#[derive(Default, Clone)]
struct Entries {
    /// Service key → the URLs of all its categories (as written).
    urls: BTreeMap<String, Vec<String>>,
    /// The categories of each service this cache was told (what its writes replace).
    told: BTreeMap<String, BTreeSet<String>>,
}

/// Writes of cache files in this process, one at a time (a read of the file, the merge and
/// the rename make one step).
static FILE_WRITES: Mutex<()> = Mutex::new(());

/// Delay that gathers a burst of updates into one write.
const CACHE_WRITE_DELAY: Duration = Duration::from_millis(100);

impl fmt::Debug for RegistryCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryCache")
            .field("path", &self.path)
            .finish()
    }
}

impl RegistryCache {
    /// A cache kept only in memory.
    pub fn in_memory() -> RegistryCache {
        RegistryCache::with(None, BTreeMap::new())
    }

    fn with(path: Option<PathBuf>, urls: BTreeMap<String, Vec<String>>) -> RegistryCache {
        RegistryCache {
            path,
            shared: Arc::new(CacheShared {
                entries: Mutex::new(Entries {
                    urls,
                    told: BTreeMap::new(),
                }),
                dirty: AtomicBool::new(false),
                writer_running: AtomicBool::new(false),
            }),
        }
    }

    /// A cache backed by `path`, loaded now if the file exists. A missing or unreadable file
    /// gives an empty cache (a cache is an optimisation, never a reason not to start).
    pub fn open(path: impl Into<PathBuf>) -> RegistryCache {
        let path = path.into();
        let entries = read_entries(&path);
        RegistryCache::with(Some(path), entries)
    }

    /// The cache file chosen by a registry URL: `file.cache=false` disables it, `file=PATH`
    /// names it, otherwise `~/.rdubbo/rdubbo-registry-[<application>-]<host>-<port>.cache`.
    pub fn for_registry(registry: &Url) -> RegistryCache {
        if !registry.param_bool("file.cache", true) {
            return RegistryCache::in_memory();
        }
        if let Some(file) = registry.param_non_empty("file") {
            return RegistryCache::open(file);
        }
        let Some(home) = std::env::var_os("HOME") else {
            return RegistryCache::in_memory();
        };
        let mut name = String::from("rdubbo-registry-");
        if let Some(app) = registry.param_non_empty(keys::APPLICATION) {
            name.push_str(app);
            name.push('-');
        }
        name.push_str(registry.host());
        name.push('-');
        name.push_str(&registry.port().unwrap_or(0).to_string());
        name.push_str(".cache");
        RegistryCache::open(Path::new(&home).join(".rdubbo").join(name))
    }

    /// The file behind this cache, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The cached URLs of a service key (all categories), unparsable entries skipped.
    pub fn get(&self, service_key: &str) -> Vec<Url> {
        let entries = self.shared.lock();
        entries
            .urls
            .get(service_key)
            .map(|urls| urls.iter().filter_map(|u| Url::parse(u).ok()).collect())
            .unwrap_or_default()
    }

    /// Replaces the URLs of one category of a service; the file is written soon after.
    pub fn put(&self, service_key: &str, category: &str, urls: &[Url]) {
        {
            let mut entries = self.shared.lock();
            let list = entries.urls.entry(service_key.to_owned()).or_default();
            replace_category(list, category, urls.iter().map(|u| u.to_string()));
            entries
                .told
                .entry(service_key.to_owned())
                .or_default()
                .insert(category.to_owned());
        }
        let Some(path) = self.path.clone() else {
            return;
        };
        self.shared.dirty.store(true, Ordering::Release);
        if self.shared.writer_running.swap(true, Ordering::AcqRel) {
            return;
        }
        let shared = self.shared.clone();
        let spawned = std::thread::Builder::new()
            .name("rdubbo-registry-cache".into())
            .spawn(move || loop {
                std::thread::sleep(CACHE_WRITE_DELAY);
                if shared.dirty.swap(false, Ordering::AcqRel) {
                    shared.write(&path);
                    continue;
                }
                shared.writer_running.store(false, Ordering::Release);
                // A put may have slipped in between the check and the store.
                if !shared.dirty.load(Ordering::Acquire)
                    || shared.writer_running.swap(true, Ordering::AcqRel)
                {
                    return;
                }
            });
        if spawned.is_err() {
            self.shared.writer_running.store(false, Ordering::Release);
            self.flush();
        }
    }

    /// Writes pending changes to the file now.
    pub fn flush(&self) {
        if let Some(path) = &self.path {
            if self.shared.dirty.swap(false, Ordering::AcqRel) {
                self.shared.write(path);
            }
        }
    }
}

impl Drop for RegistryCache {
    fn drop(&mut self) {
        self.flush();
    }
}

impl CacheShared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes what this cache was told over what the file holds now.
    fn write(&self, path: &Path) {
        let _one_at_a_time = FILE_WRITES.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _other_processes_wait = lock_file(path);
        let mut merged = read_entries(path);
        {
            let entries = self.lock();
            for (key, categories) in &entries.told {
                let ours = entries.urls.get(key).map(Vec::as_slice).unwrap_or_default();
                let list = merged.entry(key.clone()).or_default();
                list.retain(|u| category_of(u).is_some_and(|c| !categories.contains(&c)));
                list.extend(
                    ours.iter()
                        .filter(|u| category_of(u).is_some_and(|c| categories.contains(&c)))
                        .cloned(),
                );
            }
        }
        merged.retain(|_, urls| !urls.is_empty());
        if let Err(e) = write_properties(path, &merged) {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the registry cache file");
        }
    }
}

/// How long a write waits for another process to let go of the cache file.
const FILE_LOCK_WAIT: Duration = Duration::from_secs(2);

/// An exclusive lock on `<file>.lock`, held (until dropped) while this process reads the
/// file, merges and replaces it, as Java's `AbstractRegistry` locks `<file>.lock`:
/// processes sharing the file (instances of one application on one host share the default
/// one) take turns instead of writing over each other's lists. After
/// [`FILE_LOCK_WAIT`] or where the lock cannot be taken the write goes ahead without it
/// (a process stuck with the lock must not stop this one's cache).
#[cfg(unix)]
fn lock_file(path: &Path) -> Option<std::fs::File> {
    use rustix::fs::{flock, FlockOperation};
    use rustix::io::Errno;
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let file = match std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&name)
    {
        Ok(file) => file,
        Err(e) => {
            tracing::debug!(path = ?name, error = %e, "cannot open the registry cache lock");
            return None;
        }
    };
    let deadline = std::time::Instant::now() + FILE_LOCK_WAIT;
    loop {
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Some(file),
            Err(Errno::WOULDBLOCK | Errno::INTR) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => {
                tracing::warn!(path = ?name, error = %e, "registry cache file not locked; writing it anyway");
                return None;
            }
        }
    }
}

#[cfg(not(unix))]
fn lock_file(_path: &Path) -> Option<std::fs::File> {
    None
}

/// The entries of a cache file (none when it is missing or unreadable).
fn read_entries(path: &Path) -> BTreeMap<String, Vec<String>> {
    std::fs::read_to_string(path)
        .map(|text| parse_properties(&text))
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| {
            (
                k,
                v.split(' ')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
            )
        })
        .collect()
}

/// The category of a cached URL (an unparsable one has none: it is dropped by the next
/// change or write of its service).
fn category_of(url: &str) -> Option<String> {
    Url::parse(url).ok().map(|u| u.category().to_owned())
}

/// Replaces the URLs of `category` in `list` (unparsable entries go too).
fn replace_category(list: &mut Vec<String>, category: &str, urls: impl Iterator<Item = String>) {
    list.retain(|u| category_of(u).is_some_and(|c| c != category));
    list.extend(urls);
}

fn write_properties(path: &Path, entries: &BTreeMap<String, Vec<String>>) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut text = String::from("#rdubbo registry cache\n");
    for (key, urls) in entries {
        text.push_str(&escape_property(key, true));
        text.push('=');
        text.push_str(&escape_property(&urls.join(" "), false));
        text.push('\n');
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_data().ok();
    std::fs::rename(&tmp, path)
}

/// Escapes as `java.util.Properties.store` does.
fn escape_property(s: &str, is_key: bool) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for (i, c) in s.chars().enumerate() {
        match c {
            ' ' if i == 0 || is_key => out.push_str("\\ "),
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\x0c' => out.push_str("\\f"),
            '=' | ':' | '#' | '!' => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{:04X}", unit));
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// Parses the subset of the Java properties format that `Properties.store` writes (one
/// logical line per entry, backslash escapes, `#`/`!` comments).
fn parse_properties(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let mut key = String::new();
        let mut value = String::new();
        let mut in_value = false;
        let mut chars = line.chars().peekable();
        let mut units: Vec<u16> = Vec::new();
        while let Some(c) = chars.next() {
            let target = if in_value { &mut value } else { &mut key };
            if c == '\\' {
                match chars.next() {
                    Some('t') => target.push('\t'),
                    Some('n') => target.push('\n'),
                    Some('r') => target.push('\r'),
                    Some('f') => target.push('\x0c'),
                    Some('u') => {
                        let hex: String = chars.by_ref().take(4).collect();
                        if let Ok(unit) = u16::from_str_radix(&hex, 16) {
                            units.push(unit);
                            if let Some(Ok(c)) = char::decode_utf16(units.iter().copied()).next() {
                                target.push(c);
                                units.clear();
                            } else if units.len() > 1 {
                                units.clear();
                            }
                        }
                    }
                    Some(other) => target.push(other),
                    None => {}
                }
            } else if !in_value && (c == '=' || c == ':') {
                in_value = true;
            } else {
                target.push(c);
            }
        }
        out.push((key, value));
    }
    out
}

/// Opens registries of one scheme (`zookeeper`, `nacos`, or a user's own): what an
/// extension table holds under that scheme.
pub trait RegistryFactory: Send + Sync + 'static {
    /// Connects to the registry at `url`, as [`Registry`] documents (a registry that is
    /// down is not an error unless the URL says `check=true`).
    fn connect(
        &self,
        url: &Url,
    ) -> BoxFuture<'static, RegistryResult<std::sync::Arc<dyn Registry>>>;
}

impl<F, Fut> RegistryFactory for F
where
    F: Fn(Url) -> Fut + Send + Sync + 'static,
    Fut:
        std::future::Future<Output = RegistryResult<std::sync::Arc<dyn Registry>>> + Send + 'static,
{
    fn connect(
        &self,
        url: &Url,
    ) -> BoxFuture<'static, RegistryResult<std::sync::Arc<dyn Registry>>> {
        Box::pin(self(url.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_url_keeps_the_subscriber_and_names_the_category() {
        let consumer: Url =
            "consumer://127.0.0.1/demo.Api?interface=demo.Api&category=providers,routers"
                .parse()
                .unwrap();
        let empty = empty_url(&consumer, "routers");
        assert!(is_empty_url(&empty));
        assert_eq!(empty.category(), "routers");
        assert_eq!(empty.interface(), "demo.Api");
    }

    #[test]
    fn categories_of_a_subscription() {
        let u: Url = "consumer://h/x?category=providers,configurators,routers"
            .parse()
            .unwrap();
        assert_eq!(
            subscribed_categories(&u),
            vec!["providers", "configurators", "routers"]
        );
        let u: Url = "consumer://h/x".parse().unwrap();
        assert_eq!(subscribed_categories(&u), vec!["providers"]);
    }

    /// A scratch folder of this test process, emptied, and the cache file in it.
    fn scratch(tag: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("rdubbo-cache-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("registry.cache");
        (dir, path)
    }

    fn url(text: &str) -> Url {
        text.parse().unwrap()
    }

    #[test]
    fn cache_file_round_trips_in_java_properties_format() {
        let (dir, path) = scratch("test");
        let p1 = url("jsonrpc://127.0.0.1:30880/demo.Api?interface=demo.Api&side=provider");
        let cfg = url("empty://127.0.0.1/demo.Api?category=configurators");
        {
            let cache = RegistryCache::open(&path);
            cache.put("g/demo.Api:1.0", "providers", std::slice::from_ref(&p1));
            cache.put(
                "g/demo.Api:1.0",
                "configurators",
                std::slice::from_ref(&cfg),
            );
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("g/demo.Api\\:1.0=jsonrpc\\://127.0.0.1\\:30880/demo.Api?interface\\=demo.Api&side\\=provider empty\\://"),
            "{text}"
        );
        let cache = RegistryCache::open(&path);
        let urls = cache.get("g/demo.Api:1.0");
        assert_eq!(urls.len(), 2);
        assert_eq!(urls[0], p1);
        // Replacing one category keeps the other.
        cache.put("g/demo.Api:1.0", "providers", &[]);
        cache.flush();
        let urls = RegistryCache::open(&path).get("g/demo.Api:1.0");
        assert_eq!(urls, vec![cfg]);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn caches_sharing_a_file_keep_each_others_lists() {
        let (dir, path) = scratch("shared");
        let provider_side = RegistryCache::open(&path);
        let consumer_side = RegistryCache::open(&path);
        let p1 = url("jsonrpc://127.0.0.1:30880/demo.Api?interface=demo.Api");
        let cfg = url("empty://127.0.0.1/demo.Api?category=configurators");
        let other = url("jsonrpc://127.0.0.1:30881/demo.Other?interface=demo.Other");
        // The provider's registry hears of its configurators, the consumer's of providers
        // and another service; the provider's writes last, from what it opened (nothing).
        provider_side.put("demo.Api", "configurators", std::slice::from_ref(&cfg));
        consumer_side.put("demo.Api", "providers", std::slice::from_ref(&p1));
        consumer_side.put("demo.Other", "providers", std::slice::from_ref(&other));
        consumer_side.flush();
        provider_side.flush();
        let reopened = RegistryCache::open(&path);
        let mut api = reopened.get("demo.Api");
        api.sort_by_key(|u| u.to_string());
        assert_eq!(api, vec![cfg.clone(), p1.clone()]);
        assert_eq!(reopened.get("demo.Other"), vec![other]);
        // A category told empty later is replaced, not kept from the file.
        consumer_side.put("demo.Api", "providers", &[]);
        consumer_side.flush();
        assert_eq!(RegistryCache::open(&path).get("demo.Api"), vec![cfg]);
        std::fs::remove_dir_all(&dir).ok();
    }

    /// Writes done by each process of [`processes_sharing_a_file_keep_each_others_lists`].
    const CHILD_WRITES: u16 = 150;

    /// Not a test of its own: the body of the processes that
    /// [`processes_sharing_a_file_keep_each_others_lists`] starts (it does nothing without
    /// their environment).
    #[test]
    #[ignore = "run by processes_sharing_a_file_keep_each_others_lists"]
    fn cache_writer_process() {
        let (Ok(path), Ok(key)) = (
            std::env::var("RDUBBO_CACHE_TEST_FILE"),
            std::env::var("RDUBBO_CACHE_TEST_KEY"),
        ) else {
            return;
        };
        let cache = RegistryCache::open(&path);
        for port in 1..=CHILD_WRITES {
            let u = url(&format!("jsonrpc://127.0.0.1:{port}/{key}?interface={key}"));
            cache.put(&key, "providers", &[u]);
            cache.flush();
        }
    }

    #[test]
    fn processes_sharing_a_file_keep_each_others_lists() {
        // Instances of one application on one host share the default cache file; each
        // writes its lists over what the file holds, and none may erase another's.
        let (dir, path) = scratch("processes");
        let exe = std::env::current_exe().unwrap();
        let keys: Vec<String> = (0..4).map(|i| format!("demo.Api{i}")).collect();
        let children: Vec<_> = keys
            .iter()
            .map(|key| {
                std::process::Command::new(&exe)
                    .args([
                        "--ignored",
                        "--exact",
                        "registry::tests::cache_writer_process",
                    ])
                    .args(["--test-threads=1", "--quiet"])
                    .env("RDUBBO_CACHE_TEST_FILE", &path)
                    .env("RDUBBO_CACHE_TEST_KEY", key)
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut child in children {
            assert!(child.wait().unwrap().success());
        }
        let cache = RegistryCache::open(&path);
        for key in &keys {
            let last = CHILD_WRITES;
            assert_eq!(
                cache.get(key),
                vec![url(&format!(
                    "jsonrpc://127.0.0.1:{last}/{key}?interface={key}"
                ))],
                "{key}: {}",
                std::fs::read_to_string(&path).unwrap_or_default()
            );
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_burst_of_updates_reaches_the_file_without_a_flush() {
        let (dir, path) = scratch("burst");
        let cache = RegistryCache::open(&path);
        for port in 1..=200u16 {
            let u = url(&format!(
                "jsonrpc://127.0.0.1:{port}/demo.Api?interface=demo.Api"
            ));
            cache.put("demo.Api", "providers", &[u]);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.contains("127.0.0.1\\:200/") {
                assert!(
                    !text.contains("127.0.0.1\\:199/"),
                    "only the last list is kept: {text}"
                );
                break;
            }
            assert!(std::time::Instant::now() < deadline, "not written: {text}");
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(cache);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn properties_escapes_round_trip() {
        for s in [
            "a=b:c#d!e",
            " lead",
            "tab\tnew\nline",
            "unicodé ✓ 𝄞",
            "back\\slash",
        ] {
            let line = format!("{}={}", escape_property(s, true), escape_property(s, false));
            let parsed = parse_properties(&line);
            assert_eq!(parsed, vec![(s.to_owned(), s.to_owned())], "{line}");
        }
    }

    #[test]
    fn garbage_cache_file_gives_an_empty_cache() {
        let parsed = parse_properties("\\u12\n=\n\\\n:::\n");
        let _ = parsed; // must not panic
        let cache = RegistryCache::in_memory();
        assert!(cache.get("nothing").is_empty());
    }

    proptest::proptest! {
        #[test]
        fn properties_round_trip_any_text(key in "\\PC*", value in "\\PC*") {
            let line = format!("{}={}", escape_property(&key, true), escape_property(&value, false));
            let parsed = parse_properties(&line);
            proptest::prop_assert_eq!(parsed, vec![(key, value)]);
        }

        #[test]
        fn any_cache_file_text_parses_without_panic(text in "\\PC*(\n\\PC*){0,5}") {
            let _ = parse_properties(&text);
        }
    }
}
