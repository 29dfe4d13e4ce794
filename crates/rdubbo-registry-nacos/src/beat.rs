//! Beats: an ephemeral instance lives as long as its client beats for it.

use std::sync::Weak;

use rdubbo_core::RegistryError;

use crate::api::{ApiError, InstanceSpec, Shared};

/// Beats for one registered instance (a Dubbo URL's or an application's) at the interval the server asks for; registers the
/// instance again when the server no longer knows it (it restarted, or dropped the
/// instance after missed beats). Runs until aborted or the client is gone.
pub(crate) async fn keep_beating(shared: Weak<Shared>, spec: InstanceSpec) {
    let mut interval = spec.default_beat_interval();
    let url = spec.id();
    let mut light = false;
    let mut registered = true;
    loop {
        if !registered {
            let Some(s) = shared.upgrade() else { return };
            match s.register_instance(&spec).await {
                Ok(()) => {
                    tracing::info!(%url, "registered in nacos again");
                    registered = true;
                    light = false;
                }
                Err(e) => {
                    let e = RegistryError::from(e);
                    s.log_unreachable("register", &e.to_string());
                    let wait = s.retry_period;
                    drop(s);
                    tokio::time::sleep(wait).await;
                    continue;
                }
            }
        }
        tokio::time::sleep(interval).await;
        let Some(s) = shared.upgrade() else { return };
        match s.beat(&spec, light).await {
            Ok((next, known, light_ok)) => {
                interval = next;
                light = light_ok;
                if !known {
                    tracing::info!(%url, "nacos no longer knows this instance; registering again");
                    registered = false;
                }
            }
            Err(ApiError::Unreachable(e)) => s.log_unreachable("beat", &e),
            Err(e) => {
                tracing::warn!(%url, error = %RegistryError::from(e), "beat refused");
                light = false;
            }
        }
    }
}
