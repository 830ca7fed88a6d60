//! A lake with a few tables and a Flight SQL server on 127.0.0.1:0.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow_flight::sql::client::FlightSqlServiceClient;
use assay_engine::Lake;
use assay_engine::auth::{AccessPolicy, LocalUser, Role, Secret};
use assay_engine::query::{QueryLimits, QueryService};
use assay_engine::session::LakeCatalog;
use assay_flight::AssayFlightSql;
use futures::TryStreamExt;
use tonic::transport::Channel;

pub(crate) const ADMIN: (&str, &str) = ("admin", "admin-pw");
pub(crate) const READER: (&str, &str) = ("ana", "reader-pw");

pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    pub(crate) lake: Lake,
    _dir: tempfile::TempDir,
    _backend: assay_testkit::Backend,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub(crate) use assay_testkit::{append, products};

impl Server {
    pub(crate) async fn start(limits: QueryLimits) -> Server {
        Self::start_on(assay_testkit::Backend::Local, limits).await
    }

    /// A server whose lake lives on `backend` (local disk, a moto S3 bucket, an Azurite
    /// container).
    pub(crate) async fn start_on(backend: assay_testkit::Backend, limits: QueryLimits) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let lake = assay_testkit::seeded_lake(&backend, dir.path()).await;
        let policy = Arc::new(AccessPolicy::new(
            vec![
                LocalUser {
                    name: ADMIN.0.into(),
                    password: Secret::new(ADMIN.1),
                    role: Role::Admin,
                },
                LocalUser {
                    name: READER.0.into(),
                    password: Secret::new(READER.1),
                    role: Role::Reader,
                },
            ],
            Duration::from_secs(3600),
        ));
        let catalog = LakeCatalog::load(lake.clone()).await.unwrap();
        let core = assay_engine::service::Core::new(
            QueryService::new(catalog, limits).unwrap(),
            policy,
            Duration::from_millis(200),
        );
        let service = AssayFlightSql::new(std::sync::Arc::new(core), false).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(assay_flight::serve(
            listener,
            service,
            Default::default(),
            None,
            async {
                let _ = stopped.await;
            },
        ));
        Server {
            addr,
            lake,
            _dir: dir,
            _backend: backend,
            stop: Some(stop),
        }
    }

    pub(crate) async fn client(&self) -> FlightSqlServiceClient<Channel> {
        let channel = Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        FlightSqlServiceClient::new(channel)
    }

    pub(crate) async fn login(&self, user: (&str, &str)) -> FlightSqlServiceClient<Channel> {
        let mut c = self.client().await;
        c.handshake(user.0, user.1).await.unwrap();
        c
    }
}

/// Runs a statement and collects its batches.
pub(crate) async fn query(
    client: &mut FlightSqlServiceClient<Channel>,
    sql: &str,
) -> Result<Vec<RecordBatch>, arrow_flight::error::FlightError> {
    let info = client.execute(sql.to_string(), None).await?;
    fetch(client, info).await
}

pub(crate) async fn fetch(
    client: &mut FlightSqlServiceClient<Channel>,
    info: arrow_flight::FlightInfo,
) -> Result<Vec<RecordBatch>, arrow_flight::error::FlightError> {
    let mut out = Vec::new();
    for endpoint in info.endpoint {
        let ticket = endpoint.ticket.unwrap();
        let stream = client.do_get(ticket).await?;
        let batches: Vec<RecordBatch> = stream.try_collect().await?;
        out.extend(batches);
    }
    Ok(out)
}

pub(crate) fn pretty(batches: &[RecordBatch]) -> String {
    arrow::util::pretty::pretty_format_batches(batches)
        .unwrap()
        .to_string()
}
