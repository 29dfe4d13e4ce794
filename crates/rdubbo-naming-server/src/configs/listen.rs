//! `POST /nacos/v1/cs/configs/listener`: the long polls of config listeners.

use std::sync::atomic::Ordering;
use std::time::Duration;

use http::header::HeaderValue;
use http::StatusCode;
use rdubbo_registry_nacos::config_wire::{
    self, ListenEntry, LISTENING_CONFIGS, LONG_POLLING_TIMEOUT,
};

use super::{no_cache, tenant_of, valid_config_name, ConfigHeaders, ConfigKey};
use crate::conn::ConnState;
use crate::http::{bad, text, HttpResponse, Params, Reject};
use crate::Shared;

/// The keys of `entries` whose content differs from what the client has.
fn changed(shared: &Shared, entries: &[(ConfigKey, String)]) -> Vec<usize> {
    let configs = shared.configs();
    entries
        .iter()
        .enumerate()
        .filter(|(_, (k, md5))| configs.md5(k) != md5)
        .map(|(i, _)| i)
        .collect()
}

fn changed_answer(entries: &[(ConfigKey, String)], which: &[usize]) -> HttpResponse {
    let body = config_wire::changed_keys_body(which.iter().map(|&i| {
        let k = &entries[i].0;
        (k.data_id.as_str(), k.group.as_str(), k.tenant.as_str())
    }));
    no_cache(text(StatusCode::OK, body))
}

/// Counts a parked long poll while it lives, and marks its connection parked.
struct Parked<'a>(&'a Shared, &'a ConnState);

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        self.0.config_polls.fetch_sub(1, Ordering::Relaxed);
        self.1.set_parked(0);
    }
}

/// `POST /nacos/v1/cs/configs/listener`: answers at once with the keys whose MD5 differs
/// from the client's; else (with `Long-Pulling-Timeout`) parks until one changes or the
/// timeout, then answers them (or an empty body).
pub(crate) async fn listen(
    shared: &Shared,
    state: &ConnState,
    p: &Params,
    headers: &ConfigHeaders,
) -> Result<HttpResponse, Reject> {
    let probe = p
        .get(LISTENING_CONFIGS)
        .ok_or_else(|| bad("invalid probeModify"))?;
    let parsed = config_wire::parse_listening_configs(probe, shared.config.max_listen_keys)
        .map_err(|e| bad(format!("invalid probeModify: {e}")))?;
    let mut entries = Vec::with_capacity(parsed.len());
    for ListenEntry {
        data_id,
        group,
        md5,
        tenant,
    } in parsed
    {
        if !valid_config_name(&data_id) || !valid_config_name(&group) {
            return Err(bad(format!("invalid probeModify: {data_id:?} {group:?}")));
        }
        let tenant = tenant_of(Some(&tenant))?;
        entries.push((
            ConfigKey {
                tenant,
                group,
                data_id,
            },
            md5,
        ));
    }
    // Subscribe before comparing, so that no change slips between.
    let mut rx = shared.config_version.subscribe();
    let now = changed(shared, &entries);
    let timeout = match &headers.long_polling_timeout {
        Some(t) => Some(
            t.parse::<u64>()
                .map_err(|_| bad(format!("invalid {LONG_POLLING_TIMEOUT}: {t:?}")))?,
        ),
        None => None,
    };
    let Some(timeout) = timeout.filter(|_| now.is_empty() && !headers.no_hangup) else {
        return Ok(changed_answer(&entries, &now));
    };
    let parked = shared.config_polls.fetch_add(1, Ordering::Relaxed) + 1;
    let _parked = Parked(shared, state);
    if parked > shared.config.max_long_polls {
        shared.config_polls_refused.fetch_add(1, Ordering::Relaxed);
        let mut r = text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "caused: too many long polls waiting (limit {}); retry later;",
                shared.config.max_long_polls
            ),
        );
        r.headers_mut()
            .insert("Retry-After", HeaderValue::from_static("1"));
        return Ok(r);
    }
    let wait = Duration::from_millis(timeout.saturating_sub(500)).clamp(
        Duration::from_millis(500),
        shared.config.max_long_poll_timeout,
    );
    let deadline = tokio::time::Instant::now() + wait;
    // At the connection limit, a parked poll makes room like an idle connection.
    state.set_parked(shared.clock.now());
    loop {
        tokio::select! {
            r = rx.changed() => {
                if r.is_err() {
                    return Ok(changed_answer(&entries, &[]));
                }
                let now = changed(shared, &entries);
                if !now.is_empty() {
                    return Ok(changed_answer(&entries, &now));
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                let now = changed(shared, &entries);
                return Ok(changed_answer(&entries, &now));
            }
        }
    }
}
