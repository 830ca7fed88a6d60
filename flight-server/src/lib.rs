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
mod prepared;
mod results;
mod service;

use std::future::Future;

use arrow_flight::flight_service_server::FlightServiceServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

pub use service::AssayFlightSql;

/// Serves Flight SQL on a bound listener until `shutdown` completes.
///
/// # Errors
/// The transport failed.
pub async fn serve(
    listener: TcpListener,
    service: AssayFlightSql,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(FlightServiceServer::new(service))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
}
