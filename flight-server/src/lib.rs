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
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::transport::server::{Connected, TcpConnectInfo};

pub use service::AssayFlightSql;

/// Serves Flight SQL on a bound listener until `shutdown` completes, with at most
/// `limits.max_connections` connections (more are closed at once) and
/// `limits.max_streams` concurrent streams per connection; dead peers are found by
/// HTTP/2 keep-alive pings.
///
/// # Errors
/// The transport failed.
pub async fn serve(
    listener: TcpListener,
    service: AssayFlightSql,
    limits: assay_engine::config::ServeLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let incoming = futures::stream::unfold(listener, move |listener| {
        let slots = Arc::clone(&slots);
        async move {
            loop {
                match listener.accept().await {
                    Ok((io, _)) => match Arc::clone(&slots).try_acquire_owned() {
                        Ok(slot) => {
                            // gRPC writes small frames (headers, trailers); with Nagle
                            // each waits for the peer's delayed ACK (~40 ms on Linux).
                            let _ = io.set_nodelay(true);
                            return Some((Ok(Slotted { io, _slot: slot }), listener));
                        }
                        Err(_) => drop(io),
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                }
            }
        }
    });
    tonic::transport::Server::builder()
        .max_concurrent_streams(Some(limits.max_streams))
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(limits.header_timeout))
        .add_service(observe::Observed::new(FlightServiceServer::new(service)))
        .serve_with_incoming_shutdown(incoming.map(|r: std::io::Result<Slotted>| r), shutdown)
        .await
}

/// A connection holding one of the server's connection slots until it closes.
struct Slotted {
    io: TcpStream,
    _slot: OwnedSemaphorePermit,
}

impl Connected for Slotted {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

impl AsyncRead for Slotted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Slotted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
