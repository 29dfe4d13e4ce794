//! TLS on Dubbo connections: the TLS session runs over a TCP socket shared (through an
//! `Arc`) with the frame reader, which waits on the socket's readiness without holding the
//! reading lock, exactly as it does on a plain connection.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

pub use rdubbo_tls::{ClientTls, ServerTls, TlsError, SSL_ENABLED};

/// A TCP socket shared between a TLS session and the reader waiting for its readiness.
#[derive(Clone)]
pub(crate) struct SharedTcp(pub(crate) Arc<TcpStream>);

impl AsyncRead for SharedTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.0.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match self.0.try_read(unfilled) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // Readiness was cleared: the next poll registers the waker.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for SharedTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write_vectored(bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = socket2::SockRef::from(&*self.0).shutdown(std::net::Shutdown::Write);
        Poll::Ready(match r {
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            r => r,
        })
    }
}

/// A TLS session (either side) over a shared TCP socket.
pub(crate) type TlsStream = rdubbo_tls::tokio_rustls::TlsStream<SharedTcp>;

/// The read half of a TLS session.
pub(crate) type TlsRead = tokio::io::ReadHalf<TlsStream>;

/// The write half of a TLS session.
pub(crate) type TlsWrite = tokio::io::WriteHalf<TlsStream>;

/// Splits a finished TLS session into the halves the reader and the writer take, with the
/// socket the reader waits on.
pub(crate) fn split(tls: TlsStream, tcp: Arc<TcpStream>) -> (crate::wire::ReadSocket, TlsWrite) {
    let (read, write) = tokio::io::split(tls);
    (crate::wire::ReadSocket::Tls { tls: read, tcp }, write)
}
