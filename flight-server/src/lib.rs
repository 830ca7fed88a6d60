//! # assay-flight
//!
//! Arrow Flight SQL over the lake, for notebooks (ADBC, pyarrow) and BI tools (JDBC).
//! `AssayFlightSql` implements arrow-flight's `FlightSqlService`: a Basic handshake gives a
//! bearer token; every call then names a principal whose role (from the engine's
//! `AccessPolicy`) decides which schemas exist for it; statements and prepared statements
//! are planned and streamed by the engine's read-only `QueryService`, batch by batch.

mod auth;
mod error;
mod metadata;
mod observe;
mod prepared;
mod results;
mod service;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arrow_flight::flight_service_server::FlightServiceServer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::transport::server::{Connected, TcpConnectInfo};

pub use service::AssayFlightSql;

/// Serves Flight SQL on a bound listener until `shutdown` completes, with at most
/// `limits.max_connections` connections (more are closed at once) and
/// `limits.max_streams` concurrent streams per connection; dead peers are found by
/// HTTP/2 keep-alive pings. With `tls`, every connection is TLS: handshakes run on their own
/// tasks within `limits.header_timeout`, so a slow or plain-text client holds up no other.
///
/// # Errors
/// The transport failed.
pub async fn serve(
    listener: TcpListener,
    service: AssayFlightSql,
    limits: assay_engine::config::ServeLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    // Accepted (and, with TLS, shaken-hands) connections, in the order they are ready.
    let (ready, incoming) = tokio::sync::mpsc::channel::<Slotted>(64);
    let accept = tokio::spawn(async move {
        loop {
            let (io, peer) = match listener.accept().await {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                drop(io);
                continue;
            };
            // gRPC writes small frames (headers, trailers); with Nagle each waits for the
            // peer's delayed ACK (~40 ms on Linux).
            let _ = io.set_nodelay(true);
            match &tls {
                None => {
                    let conn = Slotted {
                        io: Stream::Plain(io),
                        _slot: slot,
                    };
                    if ready.send(conn).await.is_err() {
                        return;
                    }
                }
                Some(acceptor) => {
                    let (acceptor, ready) = (acceptor.clone(), ready.clone());
                    tokio::spawn(async move {
                        let handshake = acceptor.accept(io);
                        match tokio::time::timeout(limits.header_timeout, handshake).await {
                            Ok(Ok(tls)) => {
                                let conn = Slotted {
                                    io: Stream::Tls(Box::new(tls)),
                                    _slot: slot,
                                };
                                let _ = ready.send(conn).await;
                            }
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed")
                            }
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        }
                    });
                }
            }
        }
    });
    let incoming = tokio_stream_of(incoming);
    let served = tonic::transport::Server::builder()
        .max_concurrent_streams(Some(limits.max_streams))
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(limits.header_timeout))
        .add_service(observe::Observed::new(FlightServiceServer::new(service)))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    accept.abort();
    served
}

/// The receiver as a stream of ready connections.
fn tokio_stream_of(
    mut rx: tokio::sync::mpsc::Receiver<Slotted>,
) -> impl futures::Stream<Item = std::io::Result<Slotted>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|c| c.map(Ok)))
}

/// A connection, plain or TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref().0,
        }
    }
}

/// A connection holding one of the server's connection slots until it closes.
struct Slotted {
    io: Stream,
    _slot: OwnedSemaphorePermit,
}

impl Connected for Slotted {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.tcp().connect_info()
    }
}

/// Calls the same method on whichever stream a [`Stream`] holds.
macro_rules! either {
    ($self:expr, $s:ident => $call:expr) => {
        match &mut $self.io {
            Stream::Plain($s) => {
                let $s = Pin::new($s);
                $call
            }
            Stream::Tls($s) => {
                let $s = Pin::new($s.as_mut());
                $call
            }
        }
    };
}

impl AsyncRead for Slotted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        either!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Slotted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        either!(self, s => s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        either!(self, s => s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        either!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        either!(self, s => s.poll_shutdown(cx))
    }
}
