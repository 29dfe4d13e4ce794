//! Errors of streams and connections.

use crate::frame::Reason;

/// Why a stream or a connection failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The stream was reset (RST_STREAM), by the peer (`remote`) or by this side.
    #[error("stream reset by {}: {reason}", if *remote { "the peer" } else { "this side" })]
    Reset {
        /// The RST_STREAM code.
        reason: Reason,
        /// Whether the peer sent it.
        remote: bool,
    },
    /// The connection ended with GOAWAY, sent by the peer (`remote`) or by this side.
    #[error("connection closed with GOAWAY {reason} by {}{}", if *remote { "the peer" } else { "this side" }, if message.is_empty() { String::new() } else { format!(": {message}") })]
    GoAway {
        /// The GOAWAY code.
        reason: Reason,
        /// Whether the peer sent it.
        remote: bool,
        /// Debug data (peer) or the reason (this side).
        message: String,
    },
    /// Reading or writing the connection failed, or the peer closed it.
    #[error("connection lost: {0}")]
    Io(String),
    /// A misuse or a local limit (sending after the end of the stream, a header list larger
    /// than the peer accepts, stream identifiers exhausted…).
    #[error("{0}")]
    User(String),
}

impl Error {
    /// Whether the request was certainly not processed by the peer, so that it can be sent
    /// again on another connection (REFUSED_STREAM, or a stream above a GOAWAY's last
    /// stream).
    pub fn is_refused(&self) -> bool {
        matches!(
            self,
            Error::Reset {
                reason: Reason::REFUSED_STREAM,
                ..
            }
        )
    }

    /// The HTTP/2 code of a reset or GOAWAY.
    pub fn reason(&self) -> Option<Reason> {
        match self {
            Error::Reset { reason, .. } | Error::GoAway { reason, .. } => Some(*reason),
            _ => None,
        }
    }
}
