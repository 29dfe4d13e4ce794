//! Subscriptions: the Nacos names of a Dubbo subscription, the first read, and following
//! each category by pushes and polls.

use std::sync::Weak;
use std::time::Duration;

use rdubbo_core::{RegistryError, RegistryResult, Url};
use rdubbo_registry::Notifier;
use tokio::sync::watch;

use crate::api::Shared;
use crate::client::instance_url;
use crate::model::{self, ServiceInfo};

/// Names a subscription reads for one category: the full Dubbo name and, when it differs,
/// the older one without empty trailing parts.
pub(crate) fn names_for(url: &Url, category: &str) -> Vec<String> {
    let version = url.version().filter(|v| *v != "*").unwrap_or("");
    let group = url.group().filter(|g| *g != "*").unwrap_or("");
    let full = model::dubbo_service_name(category, url.interface(), version, group);
    let legacy = model::legacy_dubbo_service_name(category, url.interface(), version, group);
    if legacy == full {
        vec![full]
    } else {
        vec![full, legacy]
    }
}

/// Dubbo URLs of a subscription from the answers of its names.
fn urls_of(subscriber: &Url, infos: &[Option<ServiceInfo>]) -> Vec<Url> {
    let mut seen = std::collections::HashSet::new();
    let mut urls = Vec::new();
    for info in infos.iter().flatten() {
        for host in &info.hosts {
            if !host.enabled || !host.healthy || host.weight <= 0.0 {
                continue;
            }
            let url = instance_url(host);
            if !subscriber.matches_provider(&url) && subscriber.category() != "consumers" {
                continue;
            }
            if seen.insert(url.to_string()) {
                urls.push(url);
            }
        }
    }
    urls.sort_by_key(|u| u.to_string());
    urls
}

/// The watch receivers of a category's names.
fn receivers(shared: &Shared, names: &[String]) -> Vec<watch::Receiver<Option<ServiceInfo>>> {
    names
        .iter()
        .map(|n| shared.watch(&model::grouped(&shared.group, n)))
        .collect()
}

/// Reads every name of every category once (subscribing to pushes) and notifies the
/// lists. Fails when a server cannot be reached; the base then retries.
pub(crate) async fn first_read(
    shared: &Shared,
    url: &Url,
    categories: &[String],
    notifier: &Notifier,
) -> RegistryResult<Duration> {
    let mut interval = Duration::from_secs(10);
    let mut lists = Vec::with_capacity(categories.len());
    for category in categories {
        let names = names_for(url, category);
        let mut rx = receivers(shared, &names);
        for name in &names {
            let info = shared.query(name).await.map_err(RegistryError::from)?;
            if info.cache_millis > 0 {
                interval = Duration::from_millis(info.cache_millis.clamp(500, 60_000));
            }
            shared.update(info);
        }
        let infos: Vec<Option<ServiceInfo>> = rx
            .iter_mut()
            .map(|r| r.borrow_and_update().clone())
            .collect();
        lists.push((category, urls_of(url, &infos)));
    }
    for (category, urls) in lists {
        notifier.notify(category, urls);
    }
    Ok(shared.poll.unwrap_or(interval))
}

/// Follows one category of a subscription: notifies its list when a push or a poll
/// brings new data, polls every `interval` (the server's `cacheMillis`, or `poll`).
pub(crate) async fn follow(
    shared: Weak<Shared>,
    notifier: Notifier,
    category: String,
    mut interval: Duration,
) {
    let sub_url = notifier.url().clone();
    let names = names_for(&sub_url, &category);
    let mut receivers: Vec<_> = {
        let Some(s) = shared.upgrade() else { return };
        receivers(&s, &names)
    };
    let mut next_poll = tokio::time::Instant::now() + interval;
    loop {
        if tokio::time::Instant::now() >= next_poll {
            let Some(s) = shared.upgrade() else { return };
            let mut ok = true;
            for name in &names {
                match s.query(name).await {
                    Ok(info) => {
                        if info.cache_millis > 0 {
                            interval = Duration::from_millis(info.cache_millis.clamp(500, 60_000));
                        }
                        s.update(info);
                    }
                    Err(e) => {
                        ok = false;
                        let e = RegistryError::from(e);
                        s.log_unreachable("subscribe", &e.to_string());
                    }
                }
            }
            if let Some(p) = s.poll {
                interval = p;
            }
            next_poll = tokio::time::Instant::now()
                + if ok {
                    interval
                } else {
                    s.retry_period.min(interval)
                };
        }
        let infos: Vec<Option<ServiceInfo>> = receivers
            .iter_mut()
            .map(|r| r.borrow_and_update().clone())
            .collect();
        if infos.iter().any(Option::is_some) {
            notifier.notify(&category, urls_of(&sub_url, &infos));
        }
        let changed =
            futures::future::select_all(receivers.iter_mut().map(|r| Box::pin(r.changed())));
        tokio::select! {
            (res, _, _) = changed => {
                if res.is_err() {
                    return;
                }
            }
            _ = tokio::time::sleep_until(next_poll) => {}
        }
    }
}
