//! TLS for rdubbo's transports (the Dubbo protocol and JSON-RPC), with rustls and its
//! `ring` provider.
//!
//! A provider serves TLS with a [`ServerTls`]: its certificate chain and private key (PEM),
//! and optionally a CA bundle its clients' certificates must chain to (mutual TLS: a client
//! without such a certificate is refused during the handshake). A consumer connects with a
//! [`ClientTls`]: the CA bundle it trusts (no system roots: a deployment names its own CA),
//! the name the server's certificate must carry (by default the host of the provider URL,
//! an IP address included) and optionally its own certificate for mutual TLS.
//!
//! A provider registers [`SSL_ENABLED`]`=true` in its URL, as Java Dubbo does, so that a
//! consumer knows to connect with TLS; the consumer's CA and certificate come from its own
//! configuration.
//!
//! ```
//! # fn main() -> Result<(), rdubbo_tls::TlsError> {
//! let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
//! let server = rdubbo_tls::ServerTls::from_pem(
//!     cert.cert.pem().as_bytes(),
//!     cert.key_pair.serialize_pem().as_bytes(),
//!     None,
//! )?;
//! let client = rdubbo_tls::ClientTls::from_pem(cert.cert.pem().as_bytes(), None)?;
//! assert!(!server.requires_client_cert());
//! assert_eq!(client.server_name(), None);
//! # Ok(()) }
//! ```

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use tokio::io::{AsyncRead, AsyncWrite};

pub use rustls;
pub use tokio_rustls;
pub use tokio_rustls::{client::TlsStream as ClientStream, server::TlsStream as ServerStream};

/// The URL parameter a provider registers when it serves TLS (`ssl-enabled=true`, Java
/// Dubbo's `CommonConstants.SSL_ENABLED_KEY`).
pub const SSL_ENABLED: &str = "ssl-enabled";

/// How long a TLS handshake may take by default, on either side.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the URL parameter value `v` of [`SSL_ENABLED`] turns TLS on.
pub fn is_enabled(v: Option<&str>) -> bool {
    matches!(v, Some(v) if v.eq_ignore_ascii_case("true"))
}

/// Why a TLS configuration could not be made.
#[derive(Debug)]
pub enum TlsError {
    /// A PEM file could not be read.
    Io {
        /// The file.
        path: String,
        /// The error.
        source: io::Error,
    },
    /// PEM text holds no usable item of the kind wanted (or is malformed).
    Pem {
        /// What was wanted ("certificate chain", "private key", "CA bundle"…).
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the configuration (a key not matching the certificate, …).
    Config(String),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Io { path, source } => write!(f, "cannot read {path}: {source}"),
            TlsError::Pem { what, reason } => write!(f, "bad PEM {what}: {reason}"),
            TlsError::Config(reason) => write!(f, "TLS configuration refused: {reason}"),
        }
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TlsError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<TlsError> for io::Error {
    fn from(e: TlsError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidInput, e.to_string())
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Io {
        path: path.display().to_string(),
        source,
    })
}

fn certs(pem: &[u8], what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what,
            reason: "no CERTIFICATE block".into(),
        });
    }
    Ok(certs)
}

fn key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsError::Pem {
        what: "private key",
        reason: e.to_string(),
    })
}

fn roots(pem: &[u8]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in certs(pem, "CA bundle")? {
        roots.add(c).map_err(|e| TlsError::Pem {
            what: "CA bundle",
            reason: e.to_string(),
        })?;
    }
    Ok(roots)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn config_error(e: rustls::Error) -> TlsError {
    TlsError::Config(e.to_string())
}

/// The server side of TLS: certificate chain, key, optional client verification.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<rustls::ServerConfig>,
    acceptor: tokio_rustls::TlsAcceptor,
    mutual: bool,
    handshake_timeout: Duration,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("mutual", &self.mutual)
            .field("alpn", &self.config.alpn_protocols)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish()
    }
}

impl ServerTls {
    /// From PEM text: the certificate chain (leaf first), its private key (PKCS#8, PKCS#1 or
    /// SEC1), and, for mutual TLS, the CA bundle every client certificate must chain to
    /// (a client without one is refused).
    pub fn from_pem(
        cert_chain: &[u8],
        key_pem: &[u8],
        client_ca: Option<&[u8]>,
    ) -> Result<ServerTls, TlsError> {
        let chain = certs(cert_chain, "certificate chain")?;
        let key = key(key_pem)?;
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(config_error)?;
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
                        .build()
                        .map_err(|e| TlsError::Config(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder.with_single_cert(chain, key).map_err(config_error)?;
        let mut tls = ServerTls::from_rustls(Arc::new(config));
        tls.mutual = client_ca.is_some();
        Ok(tls)
    }

    /// From PEM files (see [`ServerTls::from_pem`]).
    pub fn from_pem_files(
        cert_chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
        client_ca: Option<&Path>,
    ) -> Result<ServerTls, TlsError> {
        let ca = client_ca.map(read).transpose()?;
        ServerTls::from_pem(
            &read(cert_chain.as_ref())?,
            &read(key.as_ref())?,
            ca.as_deref(),
        )
    }

    /// From a rustls configuration made elsewhere.
    pub fn from_rustls(config: Arc<rustls::ServerConfig>) -> ServerTls {
        ServerTls {
            acceptor: tokio_rustls::TlsAcceptor::from(config.clone()),
            config,
            mutual: false,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }

    /// The same, offering these ALPN protocols (e.g. `http/1.1`).
    pub fn with_alpn(self, protocols: &[&[u8]]) -> ServerTls {
        let mut config = (*self.config).clone();
        config.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
        ServerTls {
            mutual: self.mutual,
            handshake_timeout: self.handshake_timeout,
            ..ServerTls::from_rustls(Arc::new(config))
        }
    }

    /// The same with another handshake deadline (default 10 s): a client that has not
    /// finished its handshake by then is closed.
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> ServerTls {
        self.handshake_timeout = timeout;
        self
    }

    /// The handshake deadline.
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// Whether clients must present a certificate (mutual TLS).
    pub fn requires_client_cert(&self) -> bool {
        self.mutual
    }

    /// The rustls configuration.
    pub fn rustls_config(&self) -> &Arc<rustls::ServerConfig> {
        &self.config
    }

    /// Runs the server side of the handshake on `stream` within the handshake deadline.
    /// The error says what went wrong (a plaintext client, an unknown client certificate,
    /// the deadline).
    pub async fn accept<S>(&self, stream: S) -> io::Result<ServerStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        match tokio::time::timeout(self.handshake_timeout, self.acceptor.accept(stream)).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "TLS handshake not finished within {:?}",
                    self.handshake_timeout
                ),
            )),
        }
    }
}

/// The client side of TLS: the CA bundle trusted, the server name checked, an optional
/// client certificate.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<rustls::ClientConfig>,
    connector: tokio_rustls::TlsConnector,
    server_name: Option<String>,
    handshake_timeout: Duration,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("server_name", &self.server_name)
            .field(
                "client_cert",
                &self.config.client_auth_cert_resolver.has_certs(),
            )
            .field("handshake_timeout", &self.handshake_timeout)
            .finish()
    }
}

impl ClientTls {
    /// From PEM text: the CA bundle the server's certificate must chain to, and for mutual
    /// TLS this client's certificate chain and key.
    pub fn from_pem(ca: &[u8], identity: Option<(&[u8], &[u8])>) -> Result<ClientTls, TlsError> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(config_error)?
            .with_root_certificates(roots(ca)?);
        let config = match identity {
            None => builder.with_no_client_auth(),
            Some((chain, key_pem)) => builder
                .with_client_auth_cert(certs(chain, "client certificate chain")?, key(key_pem)?)
                .map_err(config_error)?,
        };
        Ok(ClientTls::from_rustls(Arc::new(config)))
    }

    /// From PEM files (see [`ClientTls::from_pem`]); `identity` is (certificate chain, key).
    pub fn from_pem_files(
        ca: impl AsRef<Path>,
        identity: Option<(&Path, &Path)>,
    ) -> Result<ClientTls, TlsError> {
        let identity = identity
            .map(|(c, k)| Ok::<_, TlsError>((read(c)?, read(k)?)))
            .transpose()?;
        ClientTls::from_pem(
            &read(ca.as_ref())?,
            identity.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice())),
        )
    }

    /// From a rustls configuration made elsewhere.
    pub fn from_rustls(config: Arc<rustls::ClientConfig>) -> ClientTls {
        ClientTls {
            connector: tokio_rustls::TlsConnector::from(config.clone()),
            config,
            server_name: None,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }

    /// The same, offering these ALPN protocols (e.g. `http/1.1`).
    pub fn with_alpn(self, protocols: &[&[u8]]) -> ClientTls {
        let mut config = (*self.config).clone();
        config.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
        ClientTls {
            server_name: self.server_name,
            handshake_timeout: self.handshake_timeout,
            ..ClientTls::from_rustls(Arc::new(config))
        }
    }

    /// The same, checking the server's certificate for `name` instead of the URL's host.
    pub fn with_server_name(mut self, name: impl Into<String>) -> ClientTls {
        self.server_name = Some(name.into());
        self
    }

    /// The name checked in the server's certificate when set (else the host connected to).
    pub fn server_name(&self) -> Option<&str> {
        self.server_name.as_deref()
    }

    /// The same with another handshake deadline (default 10 s).
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> ClientTls {
        self.handshake_timeout = timeout;
        self
    }

    /// The rustls configuration.
    pub fn rustls_config(&self) -> &Arc<rustls::ClientConfig> {
        &self.config
    }

    /// Runs the client side of the handshake on `stream`, checking the server's certificate
    /// for the configured server name or else `host` (a DNS name or an IP address, without
    /// brackets or port), within the handshake deadline.
    pub async fn connect<S>(&self, host: &str, stream: S) -> io::Result<ClientStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let name = self.server_name.as_deref().unwrap_or(host);
        let name = name.trim_start_matches('[').trim_end_matches(']');
        let server_name = ServerName::try_from(name.to_string()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad TLS server name {name:?}: {e}"),
            )
        })?;
        match tokio::time::timeout(
            self.handshake_timeout,
            self.connector.connect(server_name, stream),
        )
        .await
        {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => Err(io::Error::new(
                e.kind(),
                format!("TLS handshake with {name} failed: {e}"),
            )),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "TLS handshake with {name} not finished within {:?}",
                    self.handshake_timeout
                ),
            )),
        }
    }
}
