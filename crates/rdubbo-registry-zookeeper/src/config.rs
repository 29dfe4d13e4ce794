//! Settings of a `zookeeper://` URL and Apache Dubbo's node layout.

use std::time::Duration;

use rdubbo_core::url::{self as durl, keys};
use rdubbo_core::{RegistryError, RegistryResult, Url};

use crate::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_RETRY_PERIOD, DEFAULT_SESSION_TIMEOUT};

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

    pub(crate) fn root_dir(&self) -> String {
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
}
