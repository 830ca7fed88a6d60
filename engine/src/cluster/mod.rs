//! Queries on an Apache DataFusion Ballista cluster.
//!
//! The client plans a query as usual over the lake's tables, opened for the cluster
//! ([`Bound`]): each is a [`SnapshotTable`], the Parquet files of one Delta version with their
//! partition values and statistics, paths absolute in the lake's store. [`LakeCodec`] sends
//! such a table to the scheduler as its file list (not its rows); the scheduler plans plain
//! Parquet scans over those files, and the executors read them from the lake with their own
//! store settings ([`runtime`]). The rows come back to the client ([`Cluster::fetched`]), which writes
//! them to the lake in one commit as in local mode.

use std::sync::Arc;

use ballista::prelude::SessionContextExt;
use ballista_core::extension::SessionConfigExt;
use ballista_core::serde::BallistaLogicalExtensionCodec;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::catalog::TableProvider;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::common::TableReference;
use datafusion::dataframe::DataFrame;
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::TaskContext;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::logical_expr::{Extension, LogicalPlan};
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use futures::{StreamExt, TryStreamExt};

use crate::delta::{SnapshotTable, TableFiles};
use crate::error::{EngineError, Result};
use crate::storage::Lake;

/// Marks a session whose lake tables are opened to be read on a cluster (a session config
/// extension): Delta tables become [`SnapshotTable`]s with absolute paths, partitioned ones
/// too, and a table that cannot be read that way is an error instead of a local scan.
#[derive(Debug, Default)]
pub struct Bound;

/// A new session config, marked for the cluster ([`bound`]) when `for_cluster`.
pub fn session_config(for_cluster: bool) -> SessionConfig {
    match for_cluster {
        true => bound(SessionConfig::new()),
        false => SessionConfig::new(),
    }
}

/// Whether tables opened with `config` are opened for the cluster ([`Bound`]).
pub fn is_bound(config: &SessionConfig) -> bool {
    config.get_extension::<Bound>().is_some()
}

/// A session config whose tables are opened for the cluster (see [`Bound`]): text columns
/// as `Utf8`, not views, as Ballista's executors read and ship them.
pub fn bound(config: SessionConfig) -> SessionConfig {
    let mut config = config.with_extension(Arc::new(Bound));
    config
        .options_mut()
        .execution
        .parquet
        .schema_force_view_types = false;
    config
}

/// A Ballista scheduler to send queries to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    scheduler: String,
}

impl Cluster {
    /// The cluster behind `scheduler` (`df://host:port`, as [`parse_scheduler`] accepts).
    pub fn new(scheduler: impl Into<String>) -> Cluster {
        Cluster {
            scheduler: scheduler.into(),
        }
    }

    /// The scheduler's address as configured.
    pub fn scheduler(&self) -> &str {
        &self.scheduler
    }

    /// A session that plans like `local` (same catalogs, tables and settings) but runs
    /// every query on the cluster. `local`'s tables must have been opened for the cluster
    /// (its config carries [`Bound`]).
    ///
    /// # Errors
    /// Nothing answers at the scheduler's address ([`EngineError::Cluster`]).
    pub async fn session(&self, local: &SessionContext) -> Result<SessionContext> {
        self.reachable().await?;
        let state = local.state();
        // Ballista's settings first (an upgraded config is not upgraded again): no dynamic
        // filters across stages, scalar subqueries as joins, no view types over Flight.
        let config = state
            .config()
            .clone()
            .upgrade_for_ballista()
            // The catalogs are `local`'s: building the state must not replace its default one.
            .with_create_default_catalog_and_schema(false)
            .with_ballista_logical_extension_codec(codec())
            .with_ballista_job_name("assay");
        let state = SessionStateBuilder::new_from_existing(state)
            .with_config(config)
            .build();
        SessionContext::remote_with_state(&self.scheduler, state)
            .await
            .map_err(|e| EngineError::query(format!("cluster {}", self.scheduler), e))
    }

    /// Fails clearly (and as a transient error a step retries) when nothing listens at
    /// the scheduler's address; Ballista's own error would surface later, inside the write.
    async fn reachable(&self) -> Result<()> {
        let unreachable = |message: String| EngineError::Cluster {
            scheduler: self.scheduler.clone(),
            message,
        };
        let (host, port) = scheduler_host_port(&self.scheduler).map_err(unreachable)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let connect = tokio::net::TcpStream::connect((host, port));
        match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(unreachable(format!("cannot connect: {e}"))),
            Err(_) => Err(unreachable(format!(
                "no answer within {}s",
                CONNECT_TIMEOUT.as_secs()
            ))),
        }
    }
}

/// How long a client waits for the scheduler to accept a connection.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The port a scheduler listens on unless told otherwise (Ballista's).
pub const SCHEDULER_PORT: u16 = 50050;

/// Checks a scheduler address, `df://host:port` or `host:port` (`df://host` means port
/// 50050), and returns it as `df://host:port`.
///
/// # Errors
/// Another scheme, no host, or a path.
pub fn parse_scheduler(text: &str) -> std::result::Result<String, String> {
    let (host, port) = scheduler_host_port(text)?;
    Ok(format!("df://{host}:{port}"))
}

/// The host and port of a scheduler address (see [`parse_scheduler`]).
///
/// # Errors
/// As [`parse_scheduler`].
pub fn scheduler_host_port(text: &str) -> std::result::Result<(String, u16), String> {
    let full = if text.contains("://") {
        text.to_string()
    } else {
        format!("df://{text}")
    };
    let url = url::Url::parse(&full).map_err(|e| format!("`{text}` is not an address: {e}"))?;
    if url.scheme() != "df" {
        return Err(format!("`{text}`: a scheduler's address is df://host:port"));
    }
    let host = match url.host() {
        Some(url::Host::Domain(d)) if !d.is_empty() => d.to_string(),
        Some(url::Host::Ipv4(a)) => a.to_string(),
        Some(url::Host::Ipv6(a)) => format!("[{a}]"),
        _ => return Err(format!("`{text}` names no host")),
    };
    if !matches!(url.path(), "" | "/") || url.query().is_some() || !url.username().is_empty() {
        return Err(format!("`{text}`: only df://host:port, no path or user"));
    }
    Ok((host, url.port().unwrap_or(SCHEDULER_PORT)))
}

/// The logical codec every process of a cluster uses: Ballista's, plus the lake's tables.
pub fn codec() -> Arc<dyn LogicalExtensionCodec> {
    Arc::new(LakeCodec::default())
}

/// The bytes a [`SnapshotTable`] travels as start with this tag, then its [`TableFiles`] as
/// JSON.
const TAG: &[u8] = b"assay.table.v1\n";

/// Ballista's logical codec plus the lake's tables ([`SnapshotTable`]s opened for the
/// cluster), sent as their file lists.
#[derive(Debug, Default)]
pub struct LakeCodec {
    ballista: BallistaLogicalExtensionCodec,
}

impl LogicalExtensionCodec for LakeCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> DfResult<Extension> {
        self.ballista.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> DfResult<()> {
        self.ballista.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> DfResult<Arc<dyn TableProvider>> {
        let Some(json) = buf.strip_prefix(TAG) else {
            return self
                .ballista
                .try_decode_table_provider(buf, table_ref, schema, ctx);
        };
        let files: TableFiles = serde_json::from_slice(json)
            .map_err(|e| DataFusionError::Plan(format!("table {table_ref}: {e}")))?;
        Ok(Arc::new(SnapshotTable::from_files(schema, files)?))
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> DfResult<()> {
        let Some(table) = node.downcast_ref::<SnapshotTable>() else {
            return self
                .ballista
                .try_encode_table_provider(table_ref, node, buf)
                .map_err(|_| {
                    DataFusionError::NotImplemented(format!(
                        "table {table_ref} cannot be read on a cluster (only the lake's Delta \
                         tables and views over them can)"
                    ))
                });
        };
        let files = table.files().ok_or_else(|| {
            DataFusionError::Internal(format!("table {table_ref} was not opened for the cluster"))
        })?;
        buf.extend_from_slice(TAG);
        serde_json::to_writer(buf, &files).map_err(|e| DataFusionError::External(Box::new(e)))
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> DfResult<Arc<dyn FileFormatFactory>> {
        self.ballista.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn FileFormatFactory>,
    ) -> DfResult<()> {
        self.ballista.try_encode_file_format(buf, node)
    }
}

impl Cluster {
    /// `frame` (planned in a [`Cluster::session`]) as a frame of this process: executing it
    /// runs the query on the cluster and streams its rows back here, so a local writer (the
    /// Delta write, an audit) can consume them. Each execution runs the query again.
    ///
    /// # Errors
    /// The frame's schema cannot be read.
    pub fn fetched(&self, frame: DataFrame) -> Result<DataFrame> {
        let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
        let remote = Arc::new(Remote {
            schema: Arc::clone(&schema),
            frame,
            scheduler: self.scheduler.clone(),
        });
        let table = StreamingTable::try_new(schema, vec![remote])
            .map_err(|e| EngineError::query("cluster", e))?;
        SessionContext::new()
            .read_table(Arc::new(table))
            .map_err(|e| EngineError::query("cluster", e))
    }
}

/// One query on the cluster, read as a stream.
#[derive(Debug)]
struct Remote {
    schema: SchemaRef,
    frame: DataFrame,
    scheduler: String,
}

impl PartitionStream for Remote {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let frame = self.frame.clone();
        let scheduler = self.scheduler.clone();
        let schema = Arc::clone(&self.schema);
        let rows = futures::stream::once(async move { frame.execute_stream().await })
            .try_flatten()
            .map_err(move |e| e.context(format!("on the Ballista cluster {scheduler}")))
            .map(move |batch| {
                // The cluster's batches carry its plan's schema (field metadata, nullability
                // may differ); the local plan expects the frame's, checked column by column.
                let batch = batch?;
                let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
                RecordBatch::try_new_with_options(
                    Arc::clone(&schema),
                    batch.columns().to_vec(),
                    &options,
                )
                .map_err(|e| DataFusionError::ArrowError(Box::new(e), None))
            });
        Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            rows,
        ))
    }
}

/// The runtimes of an executor: DataFusion's (spill files in `work_dir`), with the lake's
/// store registered under the URL of its bucket, container or file system, so scans of the
/// lake's files read them directly with the lake's settings.
///
/// # Errors
/// The lake root has no such URL.
pub fn runtime_producer(
    lake: &Lake,
    work_dir: Option<std::path::PathBuf>,
) -> Result<ballista_core::RuntimeProducer> {
    let (store, _) = lake.store()?;
    let root = lake.root();
    let url =
        url::Url::parse(&root[..url::Position::BeforePath]).map_err(|e| EngineError::LakeRoot {
            url: root.to_string(),
            message: e.to_string(),
        })?;
    Ok(Arc::new(move |_config: &SessionConfig| {
        let mut builder = RuntimeEnvBuilder::new();
        if let Some(dir) = &work_dir {
            builder = builder.with_temp_file_path(dir.clone());
        }
        let env: Arc<RuntimeEnv> = builder.build_arc()?;
        env.register_object_store(&url, Arc::clone(&store));
        Ok(env)
    }))
}

#[cfg(test)]
mod tests;
