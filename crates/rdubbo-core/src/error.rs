//! Errors of a call, and the codes that carry them across the wire.

use std::time::Duration;

use serde_json::Value;

/// The result of a call.
pub type RpcResult<T> = Result<T, RpcError>;

/// Error codes used on the wire (JSON-RPC 2.0 codes, plus rdubbo's server errors in the
/// implementation-defined range −32000..−32099).
pub mod codes {
    /// Invalid JSON was received.
    pub const PARSE_ERROR: i64 = -32700;
    /// The JSON sent is not a valid request object.
    pub const INVALID_REQUEST: i64 = -32600;
    /// The method (or service) does not exist.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// Invalid method parameters.
    pub const INVALID_PARAMS: i64 = -32602;
    /// Internal error.
    pub const INTERNAL_ERROR: i64 = -32603;
    /// The service raised an error (jsonrpc4j answers exceptions with this code).
    pub const SERVICE_ERROR: i64 = -32001;
    /// The provider's deadline for the call passed.
    pub const SERVER_TIMEOUT: i64 = -32002;
    /// The provider is at a limit (concurrent requests); retry elsewhere.
    pub const SERVER_BUSY: i64 = -32003;
    /// The provider is shutting down; retry elsewhere.
    pub const SHUTTING_DOWN: i64 = -32004;
}

/// What went wrong with a call.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RpcError {
    /// No answer within the deadline.
    #[error("call timed out after {0:?}")]
    Timeout(Duration),
    /// No provider is available for the service.
    #[error("no provider for {0}")]
    NoProvider(String),
    /// The provider could not be reached; the request was not sent, so retrying elsewhere
    /// is always safe.
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// The provider address.
        addr: String,
        /// What the OS or the transport said.
        reason: String,
    },
    /// The connection failed after the request may have been sent.
    #[error("transport error talking to {addr}: {reason}")]
    Transport {
        /// The provider address.
        addr: String,
        /// What happened.
        reason: String,
    },
    /// The provider answered with an error: a service error or a protocol error code.
    #[error("remote error {code}: {message}")]
    Remote {
        /// Error code (see [`codes`]).
        code: i64,
        /// Message from the provider.
        message: String,
        /// Extra data from the provider (e.g. the exception class).
        data: Option<Value>,
    },
    /// Arguments or results could not be encoded or decoded locally.
    #[error("codec error: {0}")]
    Codec(String),
    /// A local limit was hit (pending requests, body size …).
    #[error("limit exceeded: {0}")]
    Limit(String),
    /// The invocation is malformed (bad arguments for the method, bad URL …).
    #[error("invalid invocation: {0}")]
    Invalid(String),
}

impl RpcError {
    /// A service (business) error, as user code returns it; travels to the consumer as
    /// [`RpcError::Remote`] with code [`codes::SERVICE_ERROR`].
    pub fn service(message: impl Into<String>) -> RpcError {
        RpcError::Remote {
            code: codes::SERVICE_ERROR,
            message: message.into(),
            data: None,
        }
    }

    /// A service error that a Java caller receives as an exception of `class` (e.g.
    /// `com.example.UserNotFoundException`) with `message`; a Java provider's exceptions
    /// arrive in this form too (the class under `exception` in `data`).
    pub fn java(class: impl Into<String>, message: impl Into<String>) -> RpcError {
        RpcError::Remote {
            code: codes::SERVICE_ERROR,
            message: message.into(),
            data: Some(serde_json::json!({ "exception": class.into() })),
        }
    }

    /// The Java exception class of a service error, if it names one.
    pub fn java_class(&self) -> Option<&str> {
        match self {
            RpcError::Remote { data: Some(d), .. } => d.get("exception")?.as_str(),
            _ => None,
        }
    }

    /// An error with an explicit wire code.
    pub fn remote(code: i64, message: impl Into<String>) -> RpcError {
        RpcError::Remote {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// The wire code of this error: the remote code, or the JSON-RPC code that describes a
    /// local failure best.
    pub fn code(&self) -> i64 {
        match self {
            RpcError::Remote { code, .. } => *code,
            RpcError::Timeout(_) => codes::SERVER_TIMEOUT,
            RpcError::Limit(_) => codes::SERVER_BUSY,
            RpcError::Invalid(_) => codes::INVALID_PARAMS,
            RpcError::Codec(_) => codes::INVALID_PARAMS,
            _ => codes::INTERNAL_ERROR,
        }
    }

    /// The message without the kind prefix.
    pub fn message(&self) -> String {
        match self {
            RpcError::Remote { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }

    /// Whether trying the same call on another provider may succeed: the provider was not
    /// reached, was busy or shutting down, or did not answer in time. Service errors and bad
    /// arguments are final.
    pub fn is_retryable(&self) -> bool {
        match self {
            RpcError::Connect { .. } | RpcError::Transport { .. } | RpcError::Timeout(_) => true,
            RpcError::Remote { code, .. } => {
                matches!(*code, codes::SERVER_BUSY | codes::SHUTTING_DOWN)
            }
            _ => false,
        }
    }

    /// Whether the provider itself looks unhealthy (could not be reached or dropped the
    /// connection), as opposed to answering with an error.
    pub fn is_provider_failure(&self) -> bool {
        matches!(self, RpcError::Connect { .. } | RpcError::Transport { .. })
    }
}

/// Why something could not be set up: a reference built, a server bound, a registry
/// connected, an application started. Separate from [`RpcError`], which is what a call
/// answers; the cause, when there is one, is kept as [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// An operating-system operation failed (binding a port, reading a file).
    #[error("{what}: {source}")]
    Io {
        /// What was being done (`bind 0.0.0.0:20880`).
        what: String,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A name that no extension of the table answers to (`loadbalance=foo`).
    #[error("unknown {kind} `{name}` (known: {known})")]
    Unknown {
        /// What kind of extension (`protocol`, `registry`, `loadbalance`, `cluster`).
        kind: &'static str,
        /// The name asked for.
        name: String,
        /// The names the table knows, comma-separated.
        known: String,
    },
    /// The configuration or builder input is not usable.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// An extension exists but cannot do what was asked (a consumer-only protocol asked
    /// to serve).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The registry refused or could not be reached (with `check=true`).
    #[error(transparent)]
    Registry(#[from] crate::RegistryError),
    /// No provider of a checked reference appeared within its wait.
    #[error("no provider for {0}")]
    NoProvider(String),
    /// Anything else, with its cause.
    #[error("{message}: {source}")]
    Other {
        /// What was being done.
        message: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

impl SetupError {
    /// An [`Io`](SetupError::Io) error for `what`.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> SetupError {
        SetupError::Io {
            what: what.into(),
            source,
        }
    }

    /// An [`Other`](SetupError::Other) error: `message`, caused by `source`.
    pub fn other(
        message: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> SetupError {
        SetupError::Other {
            message: message.into(),
            source: source.into(),
        }
    }
}

/// Lets code that answers with [`RpcResult`] use `?` on setup steps: the setup error
/// becomes [`RpcError::NoProvider`] or [`RpcError::Invalid`] with its text.
impl From<SetupError> for RpcError {
    fn from(e: SetupError) -> RpcError {
        match e {
            SetupError::NoProvider(service) => RpcError::NoProvider(service),
            other => RpcError::Invalid(other.to_string()),
        }
    }
}

/// Lets code that answers with `io::Result` use `?` on setup steps: an I/O error comes
/// back as itself, anything else as [`std::io::ErrorKind::Other`] carrying the setup error.
impl From<SetupError> for std::io::Error {
    fn from(e: SetupError) -> std::io::Error {
        match e {
            SetupError::Io { source, .. } => source,
            SetupError::Invalid(_) | SetupError::Unknown { .. } => {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, e)
            }
            other => std::io::Error::other(other),
        }
    }
}

impl From<serde_json::Error> for RpcError {
    fn from(e: serde_json::Error) -> RpcError {
        RpcError::Codec(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_errors() {
        assert!(RpcError::Connect {
            addr: "a".into(),
            reason: "refused".into()
        }
        .is_retryable());
        assert!(RpcError::remote(codes::SHUTTING_DOWN, "bye").is_retryable());
        assert!(!RpcError::service("boom").is_retryable());
        assert_eq!(RpcError::service("boom").code(), codes::SERVICE_ERROR);
        assert_eq!(RpcError::service("boom").message(), "boom");
        assert_eq!(
            RpcError::NoProvider("com.Foo".into()).to_string(),
            "no provider for com.Foo"
        );
    }
}
