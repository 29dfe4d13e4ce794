//! Tracing of calls: a `tracing` span per call on each side, and W3C trace context carried
//! in the `traceparent` attachment so that a call chain can be followed across services.
//!
//! - Consumer side (span `rpc.client`, fields `service`, `method`, `trace_id`, `span_id`,
//!   `parent_id`): the trace continues the one of the call being served (or of a
//!   `traceparent` the caller attached), or starts a new one; a new span id is sent.
//!   Each attempt on a provider is a child span `rpc.attempt` (fields `provider`,
//!   `attempt`), made by the cluster.
//! - Provider side (span `rpc.server`, same fields): the incoming `traceparent` names the
//!   parent; the call proceeds with the server span's own id, so calls it makes are its
//!   children.
//!
//! A call whose answer is a stream keeps its span open until the stream ends (a
//! subscriber sees the span's duration run to the end of the stream) and records on it
//! `stream` (`finished`, `failed` or `cancelled`: dropped by its reader before the end),
//! `messages` (how many went through) and, for `failed`, `error`. Unary calls pay nothing
//! for this.

use std::sync::Arc;

use tracing::Instrument;

use crate::cluster::filter::{Filter, Side};
use crate::{BoxFuture, Invocation, Invoker, Reply, RpcResult};

/// The attachment key.
pub const TRACEPARENT: &str = "traceparent";

/// A parsed `traceparent`: `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// Trace id (not zero).
    pub trace_id: u128,
    /// Span id of the sender (not zero).
    pub span_id: u64,
    /// Flags (`01` = sampled).
    pub flags: u8,
}

impl TraceParent {
    /// Parses the header value; `None` for anything malformed (as W3C asks: then a new
    /// trace starts).
    pub fn parse(text: &str) -> Option<TraceParent> {
        let parts: Vec<&str> = text.trim().split('-').collect();
        let [version, trace, span, flags] = parts.as_slice() else {
            return None;
        };
        let hex = |s: &str, n: usize| {
            s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        };
        if !hex(version, 2)
            || *version == "ff"
            || !hex(trace, 32)
            || !hex(span, 16)
            || !hex(flags, 2)
        {
            return None;
        }
        let tp = TraceParent {
            trace_id: u128::from_str_radix(trace, 16).ok()?,
            span_id: u64::from_str_radix(span, 16).ok()?,
            flags: u8::from_str_radix(flags, 16).ok()?,
        };
        (tp.trace_id != 0 && tp.span_id != 0).then_some(tp)
    }

    /// A new trace with a new span.
    pub fn new_root() -> TraceParent {
        TraceParent {
            trace_id: fastrand::u128(1..),
            span_id: fastrand::u64(1..),
            flags: 1,
        }
    }

    /// The same trace, a new span id.
    pub fn child(&self) -> TraceParent {
        TraceParent {
            span_id: fastrand::u64(1..),
            ..*self
        }
    }
}

impl std::fmt::Display for TraceParent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
    }
}

/// The filter of one side.
pub fn filter(side: Side) -> Arc<dyn Filter> {
    Arc::new(TraceFilter { side })
}

struct TraceFilter {
    side: Side,
}

impl Filter for TraceFilter {
    fn invoke(
        &self,
        next: Arc<dyn Invoker>,
        mut invocation: Invocation,
    ) -> BoxFuture<'static, RpcResult<Reply>> {
        let sent = invocation
            .attachments
            .get(TRACEPARENT)
            .and_then(TraceParent::parse);
        let (parent, own) = match self.side {
            Side::Consumer => {
                // A traceparent already on the call (attached by the caller), else the one
                // of the call being served.
                let parent = sent.or_else(|| {
                    crate::context::current()
                        .and_then(|c| c.attachments.get(TRACEPARENT).and_then(TraceParent::parse))
                });
                let own = parent.map_or_else(TraceParent::new_root, |p| p.child());
                (parent, own)
            }
            Side::Provider => (sent, sent.map_or_else(TraceParent::new_root, |p| p.child())),
        };
        invocation.attachments.insert(TRACEPARENT, own.to_string());
        let parent_id = parent.map(|p| format!("{:016x}", p.span_id));
        let span = match self.side {
            Side::Consumer => tracing::info_span!(
                "rpc.client",
                service = %invocation.interface,
                method = %invocation.method,
                trace_id = %format_args!("{:032x}", own.trace_id),
                span_id = %format_args!("{:016x}", own.span_id),
                parent_id = parent_id.as_deref().unwrap_or(""),
                stream = tracing::field::Empty,
                messages = tracing::field::Empty,
                error = tracing::field::Empty,
            ),
            Side::Provider => tracing::info_span!(
                "rpc.server",
                service = %invocation.interface,
                method = %invocation.method,
                trace_id = %format_args!("{:032x}", own.trace_id),
                span_id = %format_args!("{:016x}", own.span_id),
                parent_id = parent_id.as_deref().unwrap_or(""),
                stream = tracing::field::Empty,
                messages = tracing::field::Empty,
                error = tracing::field::Empty,
            ),
        };
        let call = next.invoke(invocation);
        let call = async move {
            let result = call.await;
            let Ok(Reply::Stream(stream)) = result else {
                return result;
            };
            // The span lives on with the stream, and learns how it ended.
            let span = tracing::Span::current();
            Ok(Reply::Stream(stream.on_end(move |end| {
                span.record("stream", end.outcome());
                span.record("messages", end.messages());
                if let Some(e) = end.error() {
                    span.record("error", tracing::field::display(e));
                }
            })))
        };
        Box::pin(call.instrument(span))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_the_w3c_example() {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let tp = TraceParent::parse(text).unwrap();
        assert_eq!(tp.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(tp.span_id, 0x00f067aa0ba902b7);
        assert_eq!(tp.to_string(), text);
        let child = tp.child();
        assert_eq!(child.trace_id, tp.trace_id);
        assert_ne!(child.span_id, tp.span_id);
    }

    #[test]
    fn rejects_malformed_values() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "garbage-with-four-parts",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
    }
}
