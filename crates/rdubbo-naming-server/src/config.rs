//! The server's settings and counters.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use rdubbo_registry_nacos::model;

/// Settings of a [`NamingServer`](crate::NamingServer).
#[derive(Debug, Clone)]
pub struct NamingServerConfig {
    /// HTTP address; pushes leave from a UDP socket on the same IP. Default 127.0.0.1:8848.
    pub listen: SocketAddr,
    /// Where persistent instances are stored; `None` keeps everything in memory.
    pub data_dir: Option<PathBuf>,
    /// Time without beats after which an ephemeral instance is unhealthy. Default 15 s.
    pub beat_timeout: Duration,
    /// Time without beats after which an ephemeral instance is removed. Default 30 s.
    pub delete_timeout: Duration,
    /// How often beats are checked. Default 1 s.
    pub check_interval: Duration,
    /// How often persistent instances are checked with a TCP connect. Default 5 s.
    pub health_check_interval: Duration,
    /// Largest request body (and query string) in bytes. Default 64 KiB.
    pub max_body_size: usize,
    /// Largest `metadata` parameter in bytes. Default 16 KiB.
    pub max_metadata_size: usize,
    /// Open connections at once. Default 4096.
    pub max_connections: usize,
    /// Time for a whole request to arrive, headers and body, from its first byte; also the
    /// longest a write of an answer may wait for the peer to read. Default 10 s.
    pub request_timeout: Duration,
    /// Idle keep-alive connections are closed after this long. Default 20 s.
    pub idle_timeout: Duration,
    /// At the connection limit, close a connection to make room for the new one instead of
    /// refusing the new one: the slowest sender of a request (longest under way), else the
    /// longest-stuck write, else the connection idle for longest (at least 1/100 of the
    /// request timeout, at most 100 ms). Default true.
    pub evict_when_full: bool,
    /// Instances in all. Default 1,000,000.
    pub max_instances: usize,
    /// Instances of one service; registrations beyond are refused (HTTP 400). Default
    /// 100,000.
    pub max_instances_per_service: usize,
    /// Bytes of large list answers held at once (being written, or cached: at most half);
    /// a query that would need more is answered 503 until some are written. Default 256 MiB
    /// (a service of 100,000 instances with Dubbo's metadata answers about 80 MB).
    pub max_large_answer_bytes: usize,
    /// Push subscriptions in all. Default 100,000.
    pub max_subscribers: usize,
    /// Push subscriptions of one service from one IP address (its ports); queries from
    /// more ports are answered but not subscribed (those clients poll). Default 16.
    pub max_push_ports_per_ip: usize,
    /// A subscriber that has not queried for this long gets no more pushes. Default 30 s.
    pub subscriber_ttl: Duration,
    /// Time to wait for a push ack before sending again. Default 1 s.
    pub push_ack_timeout: Duration,
    /// Sends of one push in all (first + re-sends). Default 3.
    pub push_attempts: u32,
    /// Largest content of one config in bytes. Default 100 KiB.
    pub max_config_size: usize,
    /// Configs in all. Default 100,000.
    pub max_configs: usize,
    /// Bytes of config content in all. Default 256 MiB.
    pub max_config_bytes: usize,
    /// Largest request body (and query string) of the config API: a publish carries its
    /// content URL-encoded, a long poll its keys. Default 1 MiB.
    pub max_config_body_size: usize,
    /// Keys one long poll may listen to. Default 10,000.
    pub max_listen_keys: usize,
    /// Long polls parked at once; beyond, a poll that would wait is answered 503. Default
    /// 2,048 (half the default connection limit; at the connection limit parked polls also
    /// make room as idle connections do).
    pub max_long_polls: usize,
    /// The longest a long poll is parked, whatever its `Long-Pulling-Timeout` asks (it is
    /// parked that timeout less 500 ms, as Nacos does). Default 90 s.
    pub max_long_poll_timeout: Duration,
    /// Username and password; when set, every naming and config call needs a token from
    /// `/nacos/v1/auth/login` (or the credentials as parameters).
    pub auth: Option<(String, String)>,
    /// Lifetime of a login token. Default 5 h (as Nacos).
    pub token_ttl: Duration,
    /// Failed credential checks (login, or username/password parameters) one address may
    /// make at once; then [`login_failures_per_sec`](Self::login_failures_per_sec), the
    /// others answered 429. Default 10.
    pub login_failures_burst: u32,
    /// Failed credential checks per second one address may make after its burst. Default 1.
    pub login_failures_per_sec: f64,
}

impl Default for NamingServerConfig {
    fn default() -> Self {
        NamingServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8848)),
            data_dir: None,
            beat_timeout: Duration::from_millis(model::DEFAULT_BEAT_TIMEOUT_MS),
            delete_timeout: Duration::from_millis(model::DEFAULT_DELETE_TIMEOUT_MS),
            check_interval: Duration::from_secs(1),
            health_check_interval: Duration::from_secs(5),
            max_body_size: 64 * 1024,
            max_metadata_size: 16 * 1024,
            max_connections: 4096,
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(20),
            evict_when_full: true,
            max_instances: 1_000_000,
            max_instances_per_service: 100_000,
            max_large_answer_bytes: 256 * 1024 * 1024,
            max_subscribers: 100_000,
            max_push_ports_per_ip: 16,
            subscriber_ttl: Duration::from_secs(30),
            push_ack_timeout: Duration::from_secs(1),
            push_attempts: 3,
            max_config_size: 100 * 1024,
            max_configs: 100_000,
            max_config_bytes: 256 * 1024 * 1024,
            max_config_body_size: 1024 * 1024,
            max_listen_keys: 10_000,
            max_long_polls: 2_048,
            max_long_poll_timeout: Duration::from_secs(90),
            auth: None,
            token_ttl: Duration::from_secs(18_000),
            login_failures_burst: 10,
            login_failures_per_sec: 1.0,
        }
    }
}

/// Counters of a running server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Services with at least one instance.
    pub services: usize,
    /// Instances in all.
    pub instances: usize,
    /// Push subscriptions.
    pub subscribers: usize,
    /// HTTP requests answered.
    pub requests: u64,
    /// Beats received.
    pub beats: u64,
    /// Registrations received.
    pub registrations: u64,
    /// Pushes sent (first sends).
    pub pushes_sent: u64,
    /// Pushes acknowledged.
    pub pushes_acked: u64,
    /// Pushes sent again for want of an ack.
    pub pushes_resent: u64,
    /// Successful logins.
    pub logins: u64,
    /// Credential checks refused (429) because their address failed too often.
    pub logins_throttled: u64,
    /// Open connections.
    pub connections: usize,
    /// Connections refused at the connection limit (503), or that could not be accepted.
    pub connections_refused: u64,
    /// Connections closed to make room for a new one at the connection limit.
    pub connections_evicted: u64,
    /// Connections closed because a request, a write or an idle period took too long.
    pub connections_timed_out: u64,
    /// Push subscriptions refused because their address had its share of ports.
    pub push_subscriptions_limited: u64,
    /// Configs stored.
    pub configs: usize,
    /// Config long polls parked now.
    pub config_long_polls: usize,
    /// Config long polls refused at the limit (503).
    pub config_long_polls_refused: u64,
}
