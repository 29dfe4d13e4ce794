//! Java's `TokenFilter`: a provider exported with `token=<value>` answers only calls that
//! carry that value in their `token` attachment (a consumer takes it from the provider URL
//! it found in the registry, or from its direct URL), and refuses the others with Java's
//! exception text, naming the consumer's and the provider's hosts.

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::Arc;

use rdubbo_core::{
    error::codes, BoxFuture, Invocation, Invoker, Layer, Reply, RpcError, RpcResult,
};

thread_local! {
    /// The connection whose call is being handed to its invoker on this thread (set only
    /// around `Invoker::invoke`, which checks the token before it returns).
    static SERVING: Cell<Option<(SocketAddr, SocketAddr)>> = const { Cell::new(None) };
}

/// Runs `f` (handing a call to its invoker) with the call's peer and local address known
/// to a [`TokenLayer`] inside it.
pub(crate) fn serving<R>(peer: SocketAddr, local: SocketAddr, f: impl FnOnce() -> R) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            SERVING.with(|s| s.set(None));
        }
    }
    SERVING.with(|s| s.set(Some((peer, local))));
    let _reset = Reset;
    f()
}

/// The key of the `data` of an error that the server answers as an error response with
/// this Dubbo status (and `exception: message` as its text), as Java answers an exception
/// thrown by a provider filter.
pub(crate) const STATUS_KEY: &str = "dubbo.status";

/// Java's `TokenFilter` as a provider [`Layer`]: calls whose `token` attachment is not the
/// token are refused with `org.apache.dubbo.rpc.RpcException: Invalid token! Forbid invoke
/// remote service interface <interface> method <method>() from consumer <host> to provider
/// <host>, consumer incorrect token is <token>` (status 70 over dubbo, as Java answers).
/// The check runs before the call is handed on, so put this layer outermost.
///
/// ```
/// use std::sync::Arc;
/// use rdubbo_core::{BoxFuture, Invocation, Invoker, Layer, Reply, RpcResult};
/// use rdubbo_protocol_dubbo::TokenLayer;
///
/// struct One;
/// impl Invoker for One {
///     fn invoke(&self, _: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
///         Box::pin(async { Ok(Reply::Json(1.into())) })
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let service: Arc<dyn Invoker> = Arc::new(One);
/// let guarded = TokenLayer::new("s3cret").layer(service);
/// let mut call = Invocation::new("org.example.Greeter", "hello", vec![]);
/// assert!(guarded.invoke(call.clone()).await.is_err());
/// call.attachments.insert("token", "s3cret");
/// assert!(guarded.invoke(call).await.is_ok());
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct TokenLayer {
    token: Arc<str>,
}

impl TokenLayer {
    /// Refuses calls without `token`.
    pub fn new(token: impl Into<Arc<str>>) -> TokenLayer {
        TokenLayer {
            token: token.into(),
        }
    }

    /// The token calls must carry.
    pub fn token(&self) -> &str {
        &self.token
    }
}

impl Layer for TokenLayer {
    fn layer(&self, inner: Arc<dyn Invoker>) -> Arc<dyn Invoker> {
        Arc::new(TokenCheck {
            token: self.token.clone(),
            inner,
        })
    }
}

struct TokenCheck {
    token: Arc<str>,
    inner: Arc<dyn Invoker>,
}

impl Invoker for TokenCheck {
    fn invoke(&self, inv: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
        let given = inv.attachments.get("token");
        if given == Some(&*self.token) {
            return self.inner.invoke(inv);
        }
        let (consumer, provider) = match SERVING.with(Cell::get) {
            Some((peer, local)) => (peer.ip().to_string(), local.ip().to_string()),
            None => ("null".to_string(), "null".to_string()),
        };
        let message = format!(
            "Invalid token! Forbid invoke remote service interface {} method {}() from \
             consumer {consumer} to provider {provider}, consumer incorrect token is {}",
            inv.interface,
            inv.method,
            given.unwrap_or("null")
        );
        tracing::warn!(interface = %inv.interface, method = %inv.method, %consumer, "call refused: invalid token");
        Box::pin(std::future::ready(Err(RpcError::Remote {
            code: codes::SERVICE_ERROR,
            message,
            data: Some(serde_json::json!({
                "exception": "org.apache.dubbo.rpc.RpcException",
                STATUS_KEY: crate::codec::status::SERVICE_ERROR,
            })),
        })))
    }
}

/// A random token as Java's `ServiceConfig` makes for `token=true`: a random (version 4)
/// UUID, from the operating system's random source.
pub fn random_token() -> String {
    let mut b = [0u8; 16];
    let from_os = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .is_ok();
    if !from_os {
        // No /dev/urandom: the standard library's per-process random hash keys.
        use std::hash::{BuildHasher, Hasher};
        for (i, chunk) in b.chunks_mut(8).enumerate() {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_usize(i);
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0),
            );
            chunk.copy_from_slice(&h.finish().to_le_bytes());
        }
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_tokens_are_uuids() {
        let a = random_token();
        let b = random_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(a
            .chars()
            .all(|c| c == '-' || c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    }

    struct One;
    impl Invoker for One {
        fn invoke(&self, _: Invocation) -> BoxFuture<'static, RpcResult<Reply>> {
            Box::pin(async { Ok(Reply::Json(1.into())) })
        }
    }

    #[tokio::test]
    async fn the_refusal_names_the_hosts_and_the_wrong_token() {
        let inner: Arc<dyn Invoker> = Arc::new(One);
        let guarded = TokenLayer::new("abc").layer(inner);
        let mut inv = Invocation::new("com.example.UserService", "inc", vec![]);
        inv.attachments.insert("token", "nope");
        let peer: SocketAddr = "10.0.0.7:50000".parse().unwrap();
        let local: SocketAddr = "10.0.0.8:20880".parse().unwrap();
        let call = serving(peer, local, || guarded.invoke(inv));
        let e = call.await.unwrap_err();
        assert_eq!(
            e.message(),
            "Invalid token! Forbid invoke remote service interface com.example.UserService \
             method inc() from consumer 10.0.0.7 to provider 10.0.0.8, consumer incorrect \
             token is nope"
        );
    }
}
