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
//!
//! # Tasks
//!
//! The context lives in the task serving the call (a tokio task-local): a task started with
//! a plain `tokio::spawn` starts without it — no [`current`] call, so no deadline for the
//! calls it makes, and none of the attachments of [`with_attachments`]. Start such tasks
//! with [`spawn`] (or wrap their future in [`bind`]) to carry the context into them:
//!
//! ```
//! # async fn inside_a_service_method() {
//! let deadline = rdubbo::context::spawn(async {
//!     // still the served call: same deadline, same attachments
//!     rdubbo::context::current().and_then(|call| call.deadline)
//! })
//! .await;
//! # }
//! ```
//!
//! A context can also be handled explicitly: [`CallContext::from_invocation`] makes one,
//! [`CallContext::scope`] runs a future as serving it.

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
    /// The context of serving `invocation`: its interface, method and attachments, a
    /// deadline its `timeout` from now, and its reply attachments.
    pub fn from_invocation(invocation: &Invocation) -> CallContext {
        CallContext {
            interface: invocation.interface.clone(),
            method: invocation.method.clone(),
            attachments: invocation.attachments.clone(),
            deadline: invocation.timeout.map(|t| Instant::now() + t),
            reply: invocation.reply_attachments.clone(),
        }
    }

    /// Runs `fut` as serving this call: in it [`current`] answers this context, and the
    /// calls stubs make get at most its remaining time.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use rdubbo::context::{self, CallContext};
    ///
    /// let mut invocation = rdubbo::Invocation::new("org.example.Greeter", "sayHello", vec![]);
    /// invocation.timeout = Some(Duration::from_secs(5));
    /// let call = CallContext::from_invocation(&invocation);
    /// let method = call.scope(async { context::current().map(|c| c.method) }).await;
    /// assert_eq!(method.as_deref(), Some("sayHello"));
    /// # }
    /// ```
    pub async fn scope<F: Future>(self, fut: F) -> F::Output {
        INCOMING.scope(self, fut).await
    }

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

/// Spawns `fut` on the tokio runtime carrying the current context: the call being served
/// (its deadline, attachments and reply attachments), the attachments of the enclosing
/// [`with_attachments`] and the capture of [`capture_reply_attachments`]. A plain
/// `tokio::spawn` carries none of them.
pub fn spawn<F>(fut: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(bind(fut))
}

/// `fut`, made to run in the current context wherever it is polled (what [`spawn`] does
/// before spawning; for `JoinSet::spawn` and other executors).
pub fn bind<F: Future>(fut: F) -> impl Future<Output = F::Output> {
    let incoming = INCOMING.try_with(Clone::clone).ok();
    let outgoing = OUTGOING.try_with(Clone::clone).ok();
    let capture = CAPTURE.try_with(Clone::clone).ok();
    within(
        &INCOMING,
        incoming,
        within(&OUTGOING, outgoing, within(&CAPTURE, capture, fut)),
    )
}

/// `fut` in `key`'s scope with `value`, if there is one.
async fn within<T: 'static, F: Future>(
    key: &'static tokio::task::LocalKey<T>,
    value: Option<T>,
    fut: F,
) -> F::Output {
    match value {
        Some(value) => key.scope(value, fut).await,
        None => fut.await,
    }
}

#[doc(hidden)]
pub fn incoming(invocation: &Invocation) -> CallContext {
    CallContext::from_invocation(invocation)
}

#[doc(hidden)]
pub async fn scoped<F: Future>(context: CallContext, fut: F) -> F::Output {
    context.scope(fut).await
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
