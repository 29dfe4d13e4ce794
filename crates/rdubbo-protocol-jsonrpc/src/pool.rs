//! A keep-alive pool of HTTP/1.1 connections to one provider.
//!
//! HTTP/1.1 carries one request at a time per connection, so calls in flight each hold a
//! connection; idle ones wait in a stack (the most recently used first, as its socket is
//! warmest). A connection is taken out for a call and put back once the response body has
//! been read; a call dropped midway (a timeout) drops its connection with it, which closes it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Why a request got no response.
pub(crate) enum SendError {
    /// No connection could be made: the request was not sent.
    Connect(String),
    /// The connection failed after the request may have been sent.
    Transport(String),
}

pub(crate) struct Pool {
    host: String,
    port: u16,
    connect_timeout: Duration,
    idle_timeout: Duration,
    max_idle: usize,
    /// TLS for an `ssl-enabled` provider.
    tls: Option<rdubbo_tls::ClientTls>,
    idle: Mutex<Vec<(SendRequest<Full<Bytes>>, Instant)>>,
}

/// A connection lent to one call.
pub(crate) struct Lease<'a> {
    pool: &'a Pool,
    sender: SendRequest<Full<Bytes>>,
}

impl Pool {
    pub(crate) fn new(
        host: &str,
        port: u16,
        connect_timeout: Duration,
        idle_timeout: Duration,
        max_idle: usize,
        tls: Option<rdubbo_tls::ClientTls>,
    ) -> Pool {
        Pool {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
            connect_timeout,
            idle_timeout,
            max_idle,
            tls,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// The most recently used idle connection, with how long it has been idle.
    fn pop_idle(&self) -> Option<(SendRequest<Full<Bytes>>, Duration)> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((sender, since)) = idle.pop() {
            let idle_for = since.elapsed();
            if !sender.is_closed() && idle_for < self.idle_timeout {
                return Some((sender, idle_for));
            }
        }
        None
    }

    /// An idle connection that is ready for a request. Right after a response the connection
    /// may still be finishing the previous exchange: wait for it rather than open another.
    async fn take_idle(&self) -> Option<(SendRequest<Full<Bytes>>, Duration)> {
        while let Some((mut sender, idle_for)) = self.pop_idle() {
            if sender.is_ready() || sender.ready().await.is_ok() {
                return Some((sender, idle_for));
            }
        }
        None
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, SendError> {
        let connect = TcpStream::connect((self.host.as_str(), self.port));
        let stream = match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(SendError::Connect(e.to_string())),
            Err(_) => {
                return Err(SendError::Connect(format!(
                    "no connection within {:?}",
                    self.connect_timeout
                )))
            }
        };
        let _ = stream.set_nodelay(true);
        match &self.tls {
            None => handshake(stream).await,
            Some(tls) => {
                let session = tls
                    .connect(&self.host, stream)
                    .await
                    .map_err(|e| SendError::Connect(e.to_string()))?;
                handshake(session).await
            }
        }
    }

    /// Sends `req` on an idle connection or a new one. A request that an idle connection
    /// could not take (it was closing) is sent again on a new connection.
    pub(crate) async fn send(
        &self,
        req: Request<Full<Bytes>>,
    ) -> Result<(Response<Incoming>, Lease<'_>), SendError> {
        let mut req = req;
        if let Some((mut sender, idle_for)) = self.take_idle().await {
            // A connection idle for a while may be closing on the server's side (its idle
            // timeout) just as the request goes out: keep a copy to send again on a new
            // connection if it is closed without an answer. Busy connections skip the copy.
            let copy = (idle_for >= STALE_RISK).then(|| copy_of(&req));
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok((resp, Lease { pool: self, sender })),
                Err(mut e) => match (e.take_message(), copy) {
                    (Some(unsent), _) => req = unsent,
                    (None, Some(copy)) if e.error().is_incomplete_message() => req = copy,
                    (None, _) => return Err(SendError::Transport(error_chain(e.error()))),
                },
            }
        }
        let mut sender = self.connect().await?;
        match sender.send_request(req).await {
            Ok(resp) => Ok((resp, Lease { pool: self, sender })),
            Err(e) => Err(SendError::Transport(error_chain(&e))),
        }
    }
}

/// HTTP/1.1 on a connected stream; the connection is driven by a task of its own.
async fn handshake<S>(stream: S) -> Result<SendRequest<Full<Bytes>>, SendError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| SendError::Connect(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "provider connection closed");
        }
    });
    Ok(sender)
}

impl Lease<'_> {
    /// Gives the connection back once its response has been read completely.
    pub(crate) fn release(self) {
        if self.sender.is_closed() {
            return;
        }
        let mut idle = self.pool.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.pool.max_idle {
            idle.push((self.sender, Instant::now()));
        }
    }
}

/// Idle time past which a connection might be closed by the server as it is reused.
const STALE_RISK: Duration = Duration::from_millis(200);

fn copy_of(req: &Request<Full<Bytes>>) -> Request<Full<Bytes>> {
    let mut copy = Request::new(req.body().clone());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    copy
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
