//! The TCP stream under an SSH connection, tuned for small request/response exchanges: Nagle's
//! algorithm off on our side, and every segment from the host acknowledged at once.
//!
//! Why acknowledge at once: sshd leaves Nagle's algorithm on for non-interactive sessions, so
//! when it sends two small packets in a row (a global request right after login, then the
//! answer to our channel open; an exit status, then the channel close) the second waits until
//! the first is acknowledged. Linux delays acknowledgements by up to 40 ms when it has nothing
//! to send back, so every such pair would cost 40 ms. `TCP_QUICKACK` is not sticky (the kernel
//! leaves quick-ack mode on its own), so it is set again after every read.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A [`TcpStream`] that acknowledges what it receives without delay.
pub(crate) struct QuickAckStream {
    inner: TcpStream,
}

impl QuickAckStream {
    pub(crate) fn new(inner: TcpStream) -> Self {
        let _ = inner.set_nodelay(true);
        let stream = Self { inner };
        stream.ack_now();
        stream
    }

    /// Best effort: a socket that refuses the option only costs latency.
    fn ack_now(&self) {
        let _ = SockRef::from(&self.inner).set_tcp_quickack(true);
    }
}

impl AsyncRead for QuickAckStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.ack_now();
        }
        polled
    }
}

impl AsyncWrite for QuickAckStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
