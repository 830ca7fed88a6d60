//! Delta snapshots as DataFusion tables.
//!
//! A snapshot that needs nothing but Parquet to be read — no partition columns, no reader
//! features (deletion vectors, column mapping), file paths inside the table — is served by
//! [`SnapshotTable`]: DataFusion's own Parquet scan (its pruning, file splitting and filter
//! pushdown) over the live files, each file carrying the statistics the log records for it:
//! rows, null counts, and bounds of numeric, decimal, date and timestamp columns. DataFusion
//! orders joins by those, as it does for Parquet files it reads itself; delta-rs' provider
//! keeps only the row counts (and the bounds of filtered columns), so TPC-H q18 built its hash
//! join on 6 million rows instead of 57. Every other snapshot is read by delta-rs' provider.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema as ArrowSchema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::stats::Precision;
use datafusion::common::{ColumnStatistics, ScalarValue, Statistics};
use datafusion::datasource::TableType;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::error::Result as DfResult;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::prelude::SessionConfig;
use deltalake::DeltaTable;
use object_store::ObjectStore;
use serde_json::Value;

use crate::error::{EngineError, Result};
use crate::table::TableId;

/// The provider for `table` (restricted to the data files `only`, when given): a
/// [`SnapshotTable`] when the snapshot allows it, else delta-rs' provider; both scan with
/// the Parquet settings of `config`.
///
/// # Errors
/// The snapshot is not loaded, or delta-rs cannot plan it.
pub async fn table_provider(
    id: &TableId,
    table: &DeltaTable,
    config: &SessionConfig,
    only: Option<&[String]>,
) -> Result<Arc<dyn TableProvider>> {
    if let Some(t) = SnapshotTable::try_new(id, table, config, only)? {
        return Ok(Arc::new(t));
    }
    let mut builder = super::provider_builder(table, config);
    if let Some(files) = only {
        builder = builder.with_file_paths(files.to_vec());
    }
    builder.await.map_err(|e| EngineError::query(id, e))
}

/// A Delta snapshot read as plain Parquet files with the log's statistics.
#[derive(Debug)]
pub struct SnapshotTable {
    /// The columns in the table's order.
    schema: SchemaRef,
    /// The columns stored in the files, then the partition columns: the scan's order.
    scan: TableSchema,
    /// Where each of `schema`'s columns is in the scan's order.
    order: Vec<usize>,
    /// The store to register under `url`; `None` when the reader has it (a cluster).
    store: Option<Arc<dyn ObjectStore>>,
    url: ObjectStoreUrl,
    /// The live files as the log records them (what a cluster is sent).
    records: Vec<FileRecord>,
    files: Vec<PartitionedFile>,
    /// Whether the paths are absolute in a store any process of the lake can open, so the
    /// table can be sent to a cluster ([`SnapshotTable::travels`]).
    travels: bool,
}

/// One live data file as the log records it: its path in the store, size, statistics (the
/// `add` action's JSON) and partition values (as the log writes them).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FileRecord {
    path: String,
    size: u64,
    stats: Option<String>,
    partition_values: Vec<Option<String>>,
}

/// What a cluster is sent of a [`SnapshotTable`]: the store URL, the partition columns and
/// the files (the schema travels beside it).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct TableFiles {
    url: String,
    partition_columns: Vec<String>,
    files: Vec<FileRecord>,
}

impl SnapshotTable {
    /// The table for `table`'s snapshot (its files `only`, when given); `None` when the
    /// snapshot needs more than Parquet to be read. A session marked for a cluster
    /// ([`crate::cluster::Bound`]) gets a table that can travel there: partitioned tables
    /// too, paths absolute in the lake's store.
    ///
    /// # Errors
    /// The snapshot is not loaded.
    pub fn try_new(
        id: &TableId,
        table: &DeltaTable,
        config: &SessionConfig,
        only: Option<&[String]>,
    ) -> Result<Option<SnapshotTable>> {
        let travels = crate::cluster::is_bound(config);
        let snapshot = table.snapshot().map_err(|e| EngineError::delta(id, e))?;
        let partition_columns = snapshot.metadata().partition_columns();
        // Paths in a change list are as the log writes them, maybe percent-encoded; the
        // snapshot's are decoded. Such lists go to delta-rs, which knows both, unless the
        // table goes to a cluster: then they are decoded here.
        let encoded = only.is_some_and(|o| o.iter().any(|p| p.contains('%')));
        let plain = snapshot.protocol().min_reader_version() <= 1
            && (travels || (partition_columns.is_empty() && !encoded));
        if !plain {
            return Ok(None);
        }
        let schema = super::arrow_schema(id, table)?;
        let views = config.options().execution.parquet.schema_force_view_types;
        let schema = Arc::new(ArrowSchema::new_with_metadata(
            schema
                .fields()
                .iter()
                .map(|f| view_field(f, views))
                .collect::<Vec<_>>(),
            schema.metadata().clone(),
        ));
        // Decoded as delta-rs decodes the snapshot's paths, so both compare as written.
        let wanted: Option<std::collections::HashSet<String>> = only.map(|o| {
            o.iter()
                .map(|p| match travels {
                    true => percent_encoding::percent_decode_str(p)
                        .decode_utf8_lossy()
                        .into_owned(),
                    false => p.clone(),
                })
                .collect()
        });
        // Where the files are: relative to the table's own store, or (for a cluster)
        // absolute in the store of the lake's bucket or directory.
        let (store, url, base) = if travels {
            let root = table.table_url();
            let url = ObjectStoreUrl::parse(&root[..url::Position::BeforePath])
                .map_err(|e| EngineError::query(id, e))?;
            let base = object_store::path::Path::from_url_path(root.path()).map_err(|e| {
                EngineError::query(
                    id,
                    datafusion::error::DataFusionError::External(Box::new(e)),
                )
            })?;
            (table.log_store().root_object_store(None), url, Some(base))
        } else {
            let url = table_store_url(table).map_err(|e| EngineError::query(id, e))?;
            (table.log_store().object_store(None), url, None)
        };
        let mut records = Vec::new();
        for file in snapshot.log_data().iter() {
            let path = file.path();
            if wanted.as_ref().is_some_and(|w| !w.contains(path.as_ref())) {
                continue;
            }
            if path.contains("://") || file.deletion_vector_descriptor().is_some() {
                if travels {
                    return Err(EngineError::query(
                        id,
                        datafusion::error::DataFusionError::NotImplemented(format!(
                            "the table cannot be read on a cluster: its file `{path}` is \
                             outside the table or has deletion vectors"
                        )),
                    ));
                }
                return Ok(None);
            }
            let location = file.object_store_path();
            let location = match &base {
                Some(b) => b.parts().chain(location.parts()).collect(),
                None => location,
            };
            let values = file.partition_values_map();
            records.push(FileRecord {
                path: location.to_string(),
                size: u64::try_from(file.size()).unwrap_or(0),
                stats: file.stats(),
                partition_values: partition_columns
                    .iter()
                    .map(|c| values.get(c).cloned().flatten())
                    .collect(),
            });
        }
        let files = TableFiles {
            url: url.as_str().to_string(),
            partition_columns: partition_columns.to_vec(),
            files: records,
        };
        let mut t =
            SnapshotTable::from_files(schema, files).map_err(|e| EngineError::query(id, e))?;
        t.store = Some(store);
        t.travels = travels;
        Ok(Some(t))
    }

    /// The table a cluster rebuilds from what [`SnapshotTable::files`] sent: `schema` in the
    /// table's column order; the store is the reader's.
    ///
    /// # Errors
    /// A partition column is not in the schema, or a partition value does not parse as its
    /// column's type.
    pub fn from_files(schema: SchemaRef, files: TableFiles) -> DfResult<SnapshotTable> {
        let url = ObjectStoreUrl::parse(&files.url)?;
        let mut partitions = Vec::new();
        for name in &files.partition_columns {
            partitions.push(Arc::new(schema.field_with_name(name)?.clone()));
        }
        let stored = ArrowSchema::new(
            schema
                .fields()
                .iter()
                .filter(|f| !files.partition_columns.contains(f.name()))
                .cloned()
                .collect::<Vec<_>>(),
        );
        let scan = TableSchema::builder(Arc::new(stored))
            .with_table_partition_cols(partitions)
            .build();
        let order = schema
            .fields()
            .iter()
            .map(|f| scan.table_schema().index_of(f.name()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let mut parts = Vec::with_capacity(files.files.len());
        for record in &files.files {
            // The path as the store writes it (percent-encoded parts stay encoded).
            let location = object_store::path::Path::parse(&record.path)
                .unwrap_or_else(|_| object_store::path::Path::from(record.path.as_str()));
            let mut file = PartitionedFile::new(location.to_string(), record.size);
            file.object_meta.location = location;
            file.partition_values = scan
                .table_partition_cols()
                .iter()
                .zip(&record.partition_values)
                .map(|(f, v)| partition_value(f.data_type(), v.as_deref()))
                .collect::<DfResult<Vec<_>>>()?;
            let stats = file_statistics(scan.file_schema(), record.stats.as_deref(), record.size);
            parts.push(file.with_statistics(Arc::new(stats)));
        }
        Ok(SnapshotTable {
            schema,
            scan,
            order,
            store: None,
            url,
            records: files.files,
            files: parts,
            travels: true,
        })
    }

    /// What a cluster is sent of this table; `None` when its files are only readable
    /// through this process's own store (a table not opened for a cluster).
    pub fn files(&self) -> Option<TableFiles> {
        self.travels.then(|| TableFiles {
            url: self.url.as_str().to_string(),
            partition_columns: self
                .scan
                .table_partition_cols()
                .iter()
                .map(|f| f.name().clone())
                .collect(),
            files: self.records.clone(),
        })
    }
}

/// A partition value as the log writes it, as a value of the column's type (`None` is null).
fn partition_value(ty: &DataType, value: Option<&str>) -> DfResult<ScalarValue> {
    match value {
        Some(v) => ScalarValue::try_from_string(v.to_string(), ty),
        None => ScalarValue::try_from(ty),
    }
}

/// The URL the table's store is registered under in a session: one per table location.
fn table_store_url(table: &DeltaTable) -> DfResult<ObjectStoreUrl> {
    let mut hasher = DefaultHasher::new();
    table.table_url().as_str().hash(&mut hasher);
    ObjectStoreUrl::parse(format!("assay-table://{:016x}", hasher.finish()))
}

fn view_field(f: &Arc<Field>, views: bool) -> Field {
    let ty = match f.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 if views => DataType::Utf8View,
        DataType::Binary | DataType::LargeBinary if views => DataType::BinaryView,
        other => other.clone(),
    };
    f.as_ref().clone().with_data_type(ty)
}

/// A file's statistics from its `add` action's JSON: rows, null counts, and the bounds of
/// columns whose bounds the log keeps exactly (text is truncated there, so it has none).
fn file_statistics(schema: &ArrowSchema, stats: Option<&str>, size: u64) -> Statistics {
    let parsed: Option<Value> = stats.and_then(|s| serde_json::from_str(s).ok());
    let section = |name: &str| parsed.as_ref().and_then(|p| p.get(name));
    let rows = section("numRecords")
        .and_then(Value::as_u64)
        .and_then(|n| usize::try_from(n).ok());
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            let value = |s: &str| section(s).and_then(|v| v.get(f.name()));
            let null_count = value("nullCount")
                .and_then(Value::as_u64)
                .and_then(|n| usize::try_from(n).ok())
                .map_or(Precision::Absent, Precision::Exact);
            let min = bound(f.data_type(), value("minValues"), false);
            let max = bound(f.data_type(), value("maxValues"), true);
            ColumnStatistics {
                null_count,
                min_value: min,
                max_value: max,
                ..ColumnStatistics::new_unknown()
            }
        })
        .collect();
    Statistics {
        num_rows: rows.map_or(Precision::Absent, Precision::Exact),
        total_byte_size: usize::try_from(size).map_or(Precision::Absent, Precision::Inexact),
        column_statistics: columns,
    }
}

/// A bound from the log as a value of the column's type. Timestamps are kept to the
/// millisecond there, so an upper bound is widened by 999 microseconds.
fn bound(ty: &DataType, value: Option<&Value>, upper: bool) -> Precision<ScalarValue> {
    let text = match value {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        _ => return Precision::Absent,
    };
    let exact = match ty {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::Float32
        | DataType::Float64
        | DataType::Date32
        | DataType::Decimal128(_, _) => true,
        DataType::Timestamp(TimeUnit::Microsecond, _) => false,
        _ => return Precision::Absent,
    };
    let Ok(scalar) = ScalarValue::try_from_string(text, ty) else {
        return Precision::Absent;
    };
    if exact {
        return Precision::Exact(scalar);
    }
    match (scalar, upper) {
        (ScalarValue::TimestampMicrosecond(Some(v), tz), true) => Precision::Inexact(
            ScalarValue::TimestampMicrosecond(Some(v.saturating_add(999)), tz),
        ),
        (scalar, _) => Precision::Inexact(scalar),
    }
}

#[async_trait]
impl TableProvider for SnapshotTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if self.files.is_empty() {
            let schema = match projection {
                Some(p) => Arc::new(self.schema.project(p)?),
                None => Arc::clone(&self.schema),
            };
            return Ok(Arc::new(EmptyExec::new(schema)));
        }
        if let Some(store) = &self.store {
            state
                .runtime_env()
                .register_object_store(self.url.as_ref(), Arc::clone(store));
        }
        let groups =
            FileGroup::new(self.files.clone()).split_files(state.config().target_partitions());
        let statistics = Statistics::try_merge_iter(
            self.files.iter().filter_map(|f| f.statistics.as_deref()),
            self.scan.table_schema(),
        )?;
        let options = state.table_options().parquet.clone();
        let source =
            ParquetSource::new(self.scan.clone()).with_table_parquet_options(options.clone());
        // The scan's columns are the files' then the partitions'; the projection asks for
        // the table's in its own order.
        let wanted: Vec<usize> = match projection {
            Some(p) => p.iter().map(|i| self.order[*i]).collect(),
            None => self.order.clone(),
        };
        let config = FileScanConfigBuilder::new(self.url.clone(), Arc::new(source))
            .with_file_groups(groups)
            .with_statistics(statistics)
            .with_projection_indices(Some(wanted))?
            .with_limit(limit)
            .build();
        if self.store.is_none() {
            // Planned where the lake's store may not be (a cluster's scheduler): the
            // executors that run the scan bring their own.
            return Ok(DataSourceExec::from_data_source(config));
        }
        ParquetFormat::default()
            .with_options(options)
            .create_physical_plan(state, config)
            .await
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // Files and row groups are pruned by the filters; rows are still filtered above.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delta::{CommitInfo, WriteMode, write_frame};
    use crate::storage::Lake;
    use arrow::array::AsArray;
    use datafusion::physical_plan::statistics::{StatisticsArgs, StatisticsContext};
    use datafusion::prelude::SessionContext;

    async fn table(lake: &Lake, name: &str, sql: &str, partition_by: &[String]) -> DeltaTable {
        let id = TableId::parse(name).unwrap();
        for part in sql.split(';') {
            let df = SessionContext::new().sql(part).await.unwrap();
            let info = CommitInfo::new(vec![], "t");
            write_frame(lake, &id, df, WriteMode::Append, partition_by, &info)
                .await
                .unwrap();
        }
        lake.open_existing(&id).await.unwrap()
    }

    /// The first value of the first column of `sql`'s answer, as a count.
    async fn count(ctx: &SessionContext, sql: &str) -> i64 {
        let rows = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        rows[0]
            .column(0)
            .as_primitive::<arrow::datatypes::Int64Type>()
            .value(0)
    }

    const ROWS: &str = "SELECT * FROM (VALUES (1, CAST(2.50 AS DECIMAL(10,2)), DATE '2026-01-02', 'a'), \
                        (7, CAST(-1.25 AS DECIMAL(10,2)), NULL, NULL)) AS t(id, amount, day, note); \
                        SELECT * FROM (VALUES (3, CAST(9.00 AS DECIMAL(10,2)), DATE '2026-03-04', 'b')) AS t(id, amount, day, note)";

    #[tokio::test]
    async fn plain_tables_scan_as_parquet_with_the_logs_statistics() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::resolve("lake", dir.path()).unwrap();
        let t = table(&lake, "silver.t", ROWS, &[]).await;
        let id = TableId::parse("silver.t").unwrap();
        let config = SessionConfig::new();
        assert!(
            SnapshotTable::try_new(&id, &t, &config, None)
                .unwrap()
                .is_some()
        );
        let ctx = SessionContext::new();
        ctx.register_table("t", table_provider(&id, &t, &config, None).await.unwrap())
            .unwrap();
        let df = ctx
            .sql("SELECT id, amount, day, note FROM t")
            .await
            .unwrap();
        let plan = df.create_physical_plan().await.unwrap();
        let stats = StatisticsContext::new()
            .compute(plan.as_ref(), &StatisticsArgs::new())
            .unwrap();
        assert_eq!(stats.num_rows, Precision::Exact(3));
        let col = |i: usize| &stats.column_statistics[i];
        assert_eq!(
            col(0).min_value,
            Precision::Exact(ScalarValue::Int64(Some(1)))
        );
        assert_eq!(
            col(0).max_value,
            Precision::Exact(ScalarValue::Int64(Some(7)))
        );
        assert_eq!(
            col(1).min_value,
            Precision::Exact(ScalarValue::Decimal128(Some(-125), 10, 2))
        );
        assert_eq!(col(2).null_count, Precision::Exact(1));
        assert_eq!(
            col(3).min_value,
            Precision::Absent,
            "text bounds are not kept"
        );

        // Pruned by file bounds and filtered above: the rows are right either way.
        let n = count(
            &ctx,
            "SELECT count(*) AS n, sum(id) AS s FROM t WHERE id > 2",
        )
        .await;
        assert_eq!(n, 2);

        // A restricted read sees only the named files.
        let first = t
            .snapshot()
            .unwrap()
            .log_data()
            .iter()
            .next()
            .unwrap()
            .path()
            .to_string();
        let only = table_provider(&id, &t, &config, Some(&[first]))
            .await
            .unwrap();
        let ctx = SessionContext::new();
        ctx.register_table("t", only).unwrap();
        let n = count(&ctx, "SELECT count(*) FROM t").await;
        assert!(n == 2 || n == 1);
    }

    #[tokio::test]
    async fn partitioned_tables_are_read_by_delta_rs() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::resolve("lake", dir.path()).unwrap();
        let t = table(&lake, "gold.p", ROWS, &["note".to_string()]).await;
        let id = TableId::parse("gold.p").unwrap();
        let config = SessionConfig::new();
        assert!(
            SnapshotTable::try_new(&id, &t, &config, None)
                .unwrap()
                .is_none()
        );
        let ctx = SessionContext::new();
        ctx.register_table("p", table_provider(&id, &t, &config, None).await.unwrap())
            .unwrap();
        let n = count(&ctx, "SELECT count(*) FROM p WHERE note = 'b'").await;
        assert_eq!(n, 1);
    }
}
