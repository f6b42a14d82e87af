//! A `direct-tcpip` channel as a byte stream that ends with the SSH close handshake: the host
//! closes the channel first, berth answers. It must not open channels; `SshTransport` does.
//!
//! Why not russh's `ChannelStream`: dropping it sends our CHANNEL_CLOSE at once. russh forgets
//! a channel it closed from its wire table at that moment, so the host's answering CLOSE is
//! ignored and the channel's entry in the connection's dispatch map (its message queue) is
//! never removed. A probe tunnel is opened per model per cycle on a connection that `watch`
//! keeps open for days: that entry, a few KB each, was the watcher's memory growth over SSH.
//! Here the caller's end is a local pipe; a pump owns the channel, sends EOF when the caller
//! is done and waits for the host's CLOSE, which russh handles in full.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use russh::client::{Handle, Msg};
use russh::{Channel, ChannelMsg};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, timeout_at};

use super::host_key::ClientHandler;

/// Bytes in flight between the caller and the pump, each way.
const PIPE_BYTES: usize = 64 * 1024;
/// How long a tunnel the caller is done with waits for the host to close the channel before
/// closing it from this side.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// The caller's end of a tunnel.
pub(crate) struct TunnelStream {
    pipe: DuplexStream,
}

impl TunnelStream {
    /// Starts the pump for `channel`; it holds the channel slot until the caller is done with
    /// the tunnel (or the host closed it), and the connection until the channel is closed.
    pub(crate) fn new(
        channel: Channel<Msg>,
        permit: OwnedSemaphorePermit,
        handle: Arc<Handle<ClientHandler>>,
    ) -> TunnelStream {
        let (pipe, far) = tokio::io::duplex(PIPE_BYTES);
        tokio::spawn(async move {
            pump(channel, far, permit).await;
            drop(handle);
        });
        TunnelStream { pipe }
    }
}

/// Copies between the pipe and the channel until the host closes the channel (or, once the
/// caller is done, until [`CLOSE_WAIT`] has passed). The slot goes back as soon as the caller
/// is done: waiting for the host's close costs the next probe nothing.
async fn pump(channel: Channel<Msg>, pipe: DuplexStream, permit: OwnedSemaphorePermit) {
    let mut permit = Some(permit);
    let (mut rx, tx) = channel.split();
    let (mut from_caller, mut to_caller) = tokio::io::split(pipe);
    let mut buf = vec![0u8; 16 * 1024];
    // Set once the caller has shut down its writing side or dropped its end.
    let mut done_at: Option<Instant> = None;
    let closed_by_host = loop {
        let give_up = done_at.map(|at| at + CLOSE_WAIT);
        tokio::select! {
            read = from_caller.read(&mut buf), if done_at.is_none() => match read {
                Ok(0) | Err(_) => {
                    done_at = Some(Instant::now());
                    drop(permit.take());
                    let _ = tx.eof().await;
                }
                Ok(n) => {
                    if tx.data(&buf[..n]).await.is_err() {
                        break false;
                    }
                }
            },
            msg = wait_until(&mut rx, give_up) => match msg {
                Waited::Msg(ChannelMsg::Data { data }) => {
                    // A caller that dropped its end reads nothing more: drop what comes.
                    let _ = to_caller.write_all(&data).await;
                }
                Waited::Msg(ChannelMsg::Eof) => {
                    let _ = to_caller.shutdown().await;
                }
                Waited::Msg(ChannelMsg::Close) | Waited::Ended => break true,
                Waited::Msg(_) => {}
                Waited::TimedOut => break false,
            },
        }
    };
    if !closed_by_host {
        tracing::debug!("SSH tunnel not closed by the host in time; closing it from this side");
        let _ = tx.close().await;
    }
}

enum Waited {
    Msg(ChannelMsg),
    /// The channel's queue ended: the channel or the connection is gone.
    Ended,
    TimedOut,
}

async fn wait_until(rx: &mut russh::ChannelReadHalf, deadline: Option<Instant>) -> Waited {
    let next = async {
        match rx.wait().await {
            Some(msg) => Waited::Msg(msg),
            None => Waited::Ended,
        }
    };
    match deadline {
        None => next.await,
        Some(at) => timeout_at(at, next).await.unwrap_or(Waited::TimedOut),
    }
}

impl AsyncRead for TunnelStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.pipe).poll_read(cx, buf)
    }
}

impl AsyncWrite for TunnelStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.pipe).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.pipe).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.pipe).poll_shutdown(cx)
    }
}
