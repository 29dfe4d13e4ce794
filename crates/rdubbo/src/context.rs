//! The call context: what a provider knows about the call it is serving (attachments,
//! deadline), and attachments a consumer adds to the calls it makes.
//!
//! Provider side, inside a method of a `#[rdubbo::service]` implementation:
//!
//! ```
//! # async fn inside_a_service_method() {
//! if let Some(call) = rdubbo::context::current() {
//!     let tenant = call.attachments.get("tenant");
//!     let budget = call.remaining();
//! }
//! # }
//! ```
//!
//! Calls made while serving a call inherit its deadline: a stub call never gets more time
//! than the caller has left. Consumer side, attachments for every call made in a scope:
//!
//! ```no_run
//! # async fn run(client: std::sync::Arc<dyn rdubbo::Invoker>) {
//! let mut extra = rdubbo::Attachments::new();
//! extra.insert("tenant", "acme");
//! rdubbo::context::with_attachments(extra, async {
//!     // every stub call in here carries tenant=acme
//! })
//! .await;
//! # }
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{Attachments, Invocation, ReplySink};

/// What a provider knows about the call it serves.
#[derive(Debug, Clone)]
pub struct CallContext {
    /// Interface called.
    pub interface: Arc<str>,
    /// Method called.
    pub method: Arc<str>,
    /// Attachments that came with the call.
    pub attachments: Attachments,
    /// When the caller stops waiting, if it said.
    pub deadline: Option<Instant>,
    /// Attachments to answer with (see [`set_reply_attachment`]).
    pub reply: ReplySink,
}

impl CallContext {
    /// Time left until the deadline (zero when passed), if there is one.
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }
}

tokio::task_local! {
    static INCOMING: CallContext;
    static OUTGOING: Attachments;
    static CAPTURE: ReplySink;
}

/// Sets an attachment the provider answers the current call with (Java's
/// `RpcContext.getServerContext().setAttachment`); a no-op outside a served call or
/// over a protocol without reply attachments.
pub fn set_reply_attachment(key: impl Into<String>, value: impl Into<String>) {
    let (key, value) = (key.into(), value.into());
    let _ = INCOMING.try_with(|c| c.reply.insert(key, value));
}

/// Runs `fut` and returns, with its output, the attachments the providers answered the
/// stub calls made in it with (Java's `RpcContext.getServerContext()` on a consumer).
///
/// ```no_run
/// # async fn run(client: std::sync::Arc<dyn rdubbo::Invoker>) {
/// let ((), reply) = rdubbo::context::capture_reply_attachments(async {
///     // a stub call here
/// })
/// .await;
/// let served_by = reply.get("served-by");
/// # }
/// ```
pub async fn capture_reply_attachments<F: Future>(fut: F) -> (F::Output, Attachments) {
    let sink = ReplySink::new();
    let out = CAPTURE.scope(sink.clone(), fut).await;
    (out, sink.get())
}

/// The call being served by the current task, if any.
pub fn current() -> Option<CallContext> {
    INCOMING.try_with(Clone::clone).ok()
}

/// Runs `fut` with `attachments` added to every call a generated stub makes in it.
pub async fn with_attachments<F: Future>(attachments: Attachments, fut: F) -> F::Output {
    let merged = match OUTGOING.try_with(Clone::clone) {
        Ok(mut outer) => {
            for (k, v) in attachments.iter() {
                outer.insert(k, v);
            }
            outer
        }
        Err(_) => attachments,
    };
    OUTGOING.scope(merged, fut).await
}

#[doc(hidden)]
pub fn incoming(invocation: &Invocation) -> CallContext {
    CallContext {
        interface: invocation.interface.clone(),
        method: invocation.method.clone(),
        attachments: invocation.attachments.clone(),
        deadline: invocation.timeout.map(|t| Instant::now() + t),
        reply: invocation.reply_attachments.clone(),
    }
}

#[doc(hidden)]
pub async fn scoped<F: Future>(context: CallContext, fut: F) -> F::Output {
    INCOMING.scope(context, fut).await
}

/// Adds scoped attachments and caps the timeout at the served call's remaining budget.
#[doc(hidden)]
pub fn outgoing(invocation: &mut Invocation) {
    if let Ok(sink) = CAPTURE.try_with(Clone::clone) {
        invocation.reply_attachments = sink;
    }
    let _ = OUTGOING.try_with(|extra| {
        for (k, v) in extra.iter() {
            if invocation.attachments.get(k).is_none() {
                invocation.attachments.insert(k, v);
            }
        }
    });
    if let Some(left) = current().and_then(|c| c.remaining()) {
        invocation.timeout = Some(match invocation.timeout {
            Some(t) => t.min(left),
            None => left,
        });
    }
}
