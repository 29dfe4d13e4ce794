//! A load balancer of our own: `zone` keeps a caller in its zone.
//!
//! A call that carries a `zone` attachment goes to a provider registered with the same
//! `zone` parameter when one is in the list (round-robin among them), else to any provider.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rdubbo::cluster::{LoadBalance, Provider};
use rdubbo::Invocation;

/// Zone affinity with round-robin inside the zone.
#[derive(Default)]
pub struct ZoneAffinity {
    next: AtomicUsize,
}

impl LoadBalance for ZoneAffinity {
    fn select(&self, providers: &[Arc<Provider>], invocation: &Invocation) -> Arc<Provider> {
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        if let Some(zone) = invocation.attachments.get("zone") {
            let local: Vec<&Arc<Provider>> = providers
                .iter()
                .filter(|p| p.url.param("zone") == Some(zone))
                .collect();
            if !local.is_empty() {
                return local[turn % local.len()].clone();
            }
        }
        providers[turn % providers.len()].clone()
    }
}
