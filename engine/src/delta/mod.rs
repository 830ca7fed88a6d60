//! Delta IO shared by the layers: one commit per write, cursors in the same commit.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::Schema as ArrowSchema;
use datafusion::dataframe::DataFrame;
use datafusion::prelude::SessionContext;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::{Action, StructType, Transaction};
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableError};
use serde_json::Value;

use crate::error::{EngineError, Result};
use crate::storage::Lake;
use crate::table::TableId;

mod files;
mod merge;
mod provider;

pub use files::{FileWriter, NewFiles, Staged, commit_files};
pub use merge::{Merge, MergeCounts};
pub use provider::{FileRecord, SnapshotTable, TableFiles, table_provider};

/// Rows per Parquet row group in every data file Assay writes: small enough that a scan of
/// one large file splits across cores and min/max statistics prune within a file, large
/// enough to keep encodings efficient (parquet's default is 1 Mi rows).
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

/// Target size of a data file written by Assay (delta-rs' default is 100 MiB).
pub const TARGET_FILE_BYTES: u64 = 128 << 20;

/// The Parquet settings of every data file Assay writes: Snappy as delta-rs writes by
/// default, row groups of [`ROW_GROUP_ROWS`].
pub fn writer_properties() -> deltalake::parquet::file::properties::WriterProperties {
    properties_builder().build()
}

fn properties_builder() -> deltalake::parquet::file::properties::WriterPropertiesBuilder {
    deltalake::parquet::file::properties::WriterProperties::builder()
        .set_created_by(format!("assay {}", env!("CARGO_PKG_VERSION")))
        .set_compression(deltalake::parquet::basic::Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
}

/// Share of distinct values in a column's sample above which its files are written without
/// a dictionary.
const DICTIONARY_MAX_DISTINCT: f64 = 0.5;

/// Values a sample needs before its share of distinct values decides anything.
const DICTIONARY_MIN_SAMPLE: usize = 1024;

/// [`writer_properties`] for a stream whose first batch is `sample`: a column whose sampled
/// values are mostly distinct (comments, ids, amounts) is written without a dictionary.
/// Parquet would build its dictionary for every row group only to drop it once the page
/// fills; interning those values was a quarter of the CPU time of a CSV ingest.
///
/// With `raw_text`, text columns whose names do not start with `_` (bronze's raw values) get
/// no min/max statistics: comparing every value of every column was a tenth of an ingest's
/// CPU time, and bounds of raw text prune nothing a silver read asks for.
pub fn writer_properties_for(
    sample: &arrow::array::RecordBatch,
    raw_text: bool,
) -> deltalake::parquet::file::properties::WriterProperties {
    use deltalake::parquet::file::properties::EnabledStatistics;
    use deltalake::parquet::schema::types::ColumnPath;
    let mut builder = properties_builder();
    for (field, column) in sample.schema().fields().iter().zip(sample.columns()) {
        let path = || ColumnPath::from(field.name().as_str());
        if distinct_share(column.as_ref()).is_some_and(|s| s > DICTIONARY_MAX_DISTINCT) {
            builder = builder.set_column_dictionary_enabled(path(), false);
        }
        let text = matches!(
            field.data_type(),
            arrow::datatypes::DataType::Utf8
                | arrow::datatypes::DataType::LargeUtf8
                | arrow::datatypes::DataType::Utf8View
        );
        if raw_text && text && !field.name().starts_with('_') {
            builder = builder.set_column_statistics_enabled(path(), EnabledStatistics::None);
        }
    }
    builder.build()
}

/// The share of distinct values among the non-null values of a flat column (strings,
/// binaries, fixed-width values); `None` for other types or too few values.
fn distinct_share(column: &dyn arrow::array::Array) -> Option<f64> {
    use arrow::array::AsArray;
    use arrow::datatypes::DataType;
    let valid = |i: usize| column.is_valid(i);
    let (distinct, values) = match column.data_type() {
        DataType::Utf8 => count(
            (0..column.len())
                .filter(|&i| valid(i))
                .map(|i| column.as_string::<i32>().value(i).as_bytes()),
        ),
        DataType::LargeUtf8 => count(
            (0..column.len())
                .filter(|&i| valid(i))
                .map(|i| column.as_string::<i64>().value(i).as_bytes()),
        ),
        DataType::Utf8View => count(
            (0..column.len())
                .filter(|&i| valid(i))
                .map(|i| column.as_string_view().value(i).as_bytes()),
        ),
        DataType::Binary => count(
            (0..column.len())
                .filter(|&i| valid(i))
                .map(|i| column.as_binary::<i32>().value(i)),
        ),
        dt => {
            let width = dt.primitive_width()?;
            let data = column.to_data();
            let buffer = data.buffers().first()?;
            let bytes = &buffer.as_slice()[data.offset() * width..];
            count(
                (0..column.len())
                    .filter(|&i| valid(i))
                    .filter_map(|i| bytes.get(i * width..(i + 1) * width)),
            )
        }
    };
    // Too few values say nothing about the column: keep Parquet's default.
    (values >= DICTIONARY_MIN_SAMPLE).then(|| distinct as f64 / values as f64)
}

fn count<'a>(values: impl Iterator<Item = &'a [u8]>) -> (usize, usize) {
    let mut seen = std::collections::HashSet::new();
    let mut n = 0;
    for v in values {
        n += 1;
        seen.insert(v);
    }
    (seen.len(), n)
}

/// What a commit records besides its data: cursors (Delta `txn` actions) and free-form facts.
#[derive(Debug, Default, Clone)]
pub struct CommitInfo {
    /// Application transactions (`appId` -> version) written atomically with the data.
    pub transactions: Vec<(String, i64)>,
    /// Extra commit metadata (run id, step, metrics).
    pub metadata: HashMap<String, Value>,
    /// Table properties set in the same commit (a source's cursor): kept in the table's
    /// metadata, so checkpoints and log cleanup never lose them.
    pub table_properties: Vec<(String, String)>,
}

impl CommitInfo {
    /// Cursors to record, tagged with the run that writes them (`assay.run_id`).
    pub fn new(transactions: Vec<(String, i64)>, run_id: &str) -> Self {
        let mut metadata = HashMap::new();
        metadata.insert("assay.run_id".to_string(), Value::from(run_id));
        CommitInfo {
            transactions,
            metadata,
            table_properties: Vec::new(),
        }
    }

    /// Sets a table property in the same commit (see [`table_property`]).
    pub fn with_table_property(mut self, key: &str, value: impl Into<String>) -> Self {
        self.table_properties.push((key.to_string(), value.into()));
        self
    }

    /// Adds a fact to the commit metadata.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.metadata.insert(key.to_string(), value.into());
        self
    }

    /// Converts to delta-rs commit properties.
    pub fn properties(&self) -> CommitProperties {
        let txns = self
            .transactions
            .iter()
            .map(|(app, v)| Transaction::new(app, *v))
            .collect();
        CommitProperties::default()
            .with_application_transactions(txns)
            .with_metadata(self.metadata.clone())
    }
}

pub(crate) trait IntoArrow {
    fn try_into_kernel_arrow(&self, id: &TableId) -> Result<ArrowSchema>;
}

impl IntoArrow for StructType {
    fn try_into_kernel_arrow(&self, id: &TableId) -> Result<ArrowSchema> {
        use deltalake::kernel::engine::arrow_conversion::TryIntoArrow;
        self.try_into_arrow()
            .map_err(|e: arrow::error::ArrowError| EngineError::delta(id, e.into()))
    }
}

/// The arrow schema of a table's latest snapshot.
///
/// # Errors
/// The table has no loaded state.
pub fn arrow_schema(id: &TableId, table: &DeltaTable) -> Result<Arc<ArrowSchema>> {
    let snap = table.snapshot().map_err(|e| EngineError::delta(id, e))?;
    Ok(Arc::new(snap.schema().as_ref().try_into_kernel_arrow(id)?))
}

/// The version recorded for `app_id` in the table's `txn` actions.
///
/// # Errors
/// Reading the log failed.
pub async fn txn_version(id: &TableId, table: &DeltaTable, app_id: &str) -> Result<Option<i64>> {
    let snap = table.snapshot().map_err(|e| EngineError::delta(id, e))?;
    snap.transaction_version(table.log_store().as_ref(), app_id)
        .await
        .map_err(|e| EngineError::delta(id, e))
}

/// The `txn` application id under which a table records the version of `upstream` it has
/// consumed (silver increments, gold rebuild checks).
pub fn consumed_app_id(upstream: &TableId) -> String {
    format!("assay.consumed:{upstream}")
}

/// The latest version of a table (`-1` when it has none).
pub fn version(table: &DeltaTable) -> i64 {
    table.version().map_or(-1, |v| v as i64)
}

/// What the commits of a streamed input after a consumed version changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Data files (relative to the table root) added with `dataChange` and still live.
    pub added: Vec<String>,
    /// Data files that were live at the consumed version and were removed with
    /// `dataChange` since (rows deleted or rewritten: a MERGE, an overwrite, a delete).
    pub removed: Vec<String>,
    /// The first commit after the consumed version that removed data, if any.
    pub first_rewrite: Option<i64>,
    /// The first such commit that may have deleted rows rather than only rewritten them
    /// (anything but a MERGE that deleted nothing, or an UPDATE): an overwrite, a delete.
    pub first_delete: Option<i64>,
}

/// The data files added and removed by the commits of `table` (the streamed input of
/// `consumer`) after version `since` up to its loaded version; all live files, as added,
/// when `since` is `None`.
///
/// Files rewritten by compaction (`dataChange = false`) are not new data and are skipped.
///
/// # Errors
/// [`EngineError::NeedsFullRefresh`] naming `consumer` when a commit it needs is no longer
/// in the log (log cleanup) or the input is older than what was consumed (recreated);
/// other errors when the log is unreadable.
pub async fn changes_since(
    consumer: &TableId,
    id: &TableId,
    table: &DeltaTable,
    since: Option<i64>,
) -> Result<Changes> {
    let err = |e: DeltaTableError| EngineError::delta(id, e);
    let gap = |reason: String| EngineError::NeedsFullRefresh {
        table: consumer.to_string(),
        upstream: id.to_string(),
        reason,
    };
    let latest = version(table);
    let Some(since) = since else {
        let snap = table.snapshot().map_err(err)?;
        return Ok(Changes {
            added: snap
                .log_data()
                .iter()
                .map(|f| f.path().to_string())
                .collect(),
            ..Changes::default()
        });
    };
    if since > latest {
        return Err(gap(format!(
            "it is at version {latest} but version {since} was consumed (was the table recreated?)"
        )));
    }
    let log_store = table.log_store();
    let mut added = Vec::new();
    let mut added_set = std::collections::HashSet::new();
    let mut removed = Vec::new();
    let mut first_rewrite = None;
    let mut first_delete = None;
    for v in (since + 1)..=latest {
        let Some(bytes) = log_store.read_commit_entry(v as u64).await.map_err(err)? else {
            return Err(gap(format!(
                "commit {v} is no longer in its log (log cleanup?)"
            )));
        };
        let mut removes = false;
        let mut keeps_rows = false;
        for action in deltalake::logstore::get_actions(v as u64, &bytes).map_err(err)? {
            match action {
                Action::Add(add) if add.data_change => {
                    added_set.insert(add.path.clone());
                    added.push(add.path);
                }
                Action::Remove(r) if r.data_change => {
                    removes = true;
                    if !added_set.remove(&r.path) {
                        removed.push(r.path);
                    }
                }
                Action::CommitInfo(ci) => keeps_rows = rewrites_without_deleting(&ci),
                _ => {}
            }
        }
        if removes {
            first_rewrite.get_or_insert(v);
            if !keeps_rows {
                first_delete.get_or_insert(v);
            }
        }
    }
    added.retain(|p| added_set.contains(p));
    Ok(Changes {
        added,
        removed,
        first_rewrite,
        first_delete,
    })
}

/// True for a commit that rewrites files but keeps every row it removes (with its new
/// values) in the files it adds: an UPDATE, or a MERGE that deleted no row.
fn rewrites_without_deleting(ci: &deltalake::kernel::CommitInfo) -> bool {
    let deleted = ci
        .info
        .get("operationMetrics")
        .and_then(|m| m.get("num_target_rows_deleted"))
        .and_then(Value::as_u64);
    match ci.operation.as_deref() {
        Some("UPDATE") => true,
        Some("MERGE") => deleted == Some(0),
        _ => false,
    }
}

/// Registers the table's storage with a DataFusion session so its files can be scanned.
///
/// # Errors
/// The object store cannot be registered.
pub fn register_store(id: &TableId, table: &DeltaTable, ctx: &SessionContext) -> Result<()> {
    table
        .update_datafusion_session(&ctx.state())
        .map_err(|e| EngineError::delta(id, e))
}

/// A table provider builder for `table` that scans with the Parquet settings of `config`
/// (DataFusion's defaults unless a session changed them) instead of delta-rs' own, which
/// push every filter into the Parquet decoder: with them TPC-H q6 over Flight took 0.23 s
/// against DataFusion's 0.13 s on the same files.
pub fn provider_builder(
    table: &DeltaTable,
    config: &datafusion::prelude::SessionConfig,
) -> deltalake::delta_datafusion::TableProviderBuilder {
    let state = datafusion::execution::SessionStateBuilder::new()
        .with_config(config.clone())
        .build();
    table.table_provider().with_session(Arc::new(state))
}

/// A DataFrame over a table restricted to the given data files (all when `files` is `None`).
///
/// # Errors
/// Planning the scan failed.
pub async fn scan(
    id: &TableId,
    table: &DeltaTable,
    ctx: &SessionContext,
    files: Option<Vec<String>>,
) -> Result<DataFrame> {
    register_store(id, table, ctx)?;
    let config = ctx.state().config().clone();
    let provider = table_provider(id, table, &config, files.as_deref()).await?;
    ctx.read_table(provider)
        .map_err(|e| EngineError::query(id, e))
}

/// How [`write_frame`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Add rows.
    Append,
    /// Replace all rows (and the schema) in one commit.
    Overwrite,
}

/// Streams a DataFrame into a table as one commit, creating the table if needed.
///
/// # Errors
/// Planning, execution or the commit failed.
pub async fn write_frame(
    lake: &Lake,
    id: &TableId,
    df: DataFrame,
    mode: WriteMode,
    partition_by: &[String],
    info: &CommitInfo,
) -> Result<DeltaTable> {
    write(lake, id, df, mode, None, partition_by, info, &[]).await
}

/// [`write_frame`] for tables of secrets (the credential store): created with no column
/// statistics, so no log line, checkpoint or reader of the `_delta_log` sees a min or max
/// of a hash or salt.
///
/// # Errors
/// As [`write_frame`].
pub async fn write_secret_frame(
    lake: &Lake,
    id: &TableId,
    df: DataFrame,
    mode: WriteMode,
    info: &CommitInfo,
) -> Result<DeltaTable> {
    let no_stats = [("delta.dataSkippingNumIndexedCols", "0")];
    write(lake, id, df, mode, None, &[], info, &no_stats).await
}

/// Streams a DataFrame into a table as one commit that replaces exactly the rows matching
/// `predicate` (Delta's `replaceWhere`); every row of `df` must match it.
///
/// # Errors
/// Planning, execution or the commit failed, or a row of `df` does not match.
pub async fn replace_where(
    lake: &Lake,
    id: &TableId,
    df: DataFrame,
    predicate: datafusion::prelude::Expr,
    partition_by: &[String],
    info: &CommitInfo,
) -> Result<DeltaTable> {
    let mode = WriteMode::Overwrite;
    write(lake, id, df, mode, Some(predicate), partition_by, info, &[]).await
}

#[allow(clippy::too_many_arguments)]
async fn write(
    lake: &Lake,
    id: &TableId,
    df: DataFrame,
    mode: WriteMode,
    predicate: Option<datafusion::prelude::Expr>,
    partition_by: &[String],
    info: &CommitInfo,
    configuration: &[(&str, &str)],
) -> Result<DeltaTable> {
    let table = match lake.open(id).await? {
        Some(t) => t,
        None => lake.handle(id)?,
    };
    // The plan carries its own table providers; delta-rs plans the write in its own session
    // (which has the Delta planner its write node needs).
    let (_state, plan) = df.into_parts();
    let mut builder = table
        .write(Vec::new())
        .with_input_plan(plan)
        .with_writer_properties(writer_properties())
        .with_target_file_size(std::num::NonZeroU64::new(TARGET_FILE_BYTES))
        .with_commit_properties(info.properties())
        .with_table_name(id.to_string());
    if !configuration.is_empty() {
        builder = builder.with_configuration(configuration.iter().map(|(k, v)| (*k, Some(*v))));
    }
    builder = match (mode, predicate) {
        (WriteMode::Append, _) => builder.with_save_mode(SaveMode::Append),
        (WriteMode::Overwrite, Some(p)) => builder
            .with_save_mode(SaveMode::Overwrite)
            .with_replace_where(p),
        (WriteMode::Overwrite, None) => builder
            .with_save_mode(SaveMode::Overwrite)
            .with_schema_mode(deltalake::operations::write::SchemaMode::Overwrite),
    };
    if !partition_by.is_empty() {
        builder = builder.with_partition_columns(partition_by.to_vec());
    }
    builder.await.map_err(|e| EngineError::delta(id, e))
}

/// A table property of the table's loaded snapshot (e.g. a cursor a commit set with
/// [`CommitInfo::with_table_property`]).
pub fn table_property(table: &DeltaTable, key: &str) -> Option<String> {
    let snap = table.snapshot().ok()?;
    snap.metadata().configuration().get(key).cloned()
}

/// When the table's latest commit was made, in microseconds since the epoch.
pub async fn last_commit_time(table: &DeltaTable) -> Option<i64> {
    use futures::TryStreamExt;
    let commits: Vec<_> = table.history(Some(1)).try_collect().await.ok()?;
    commits.first()?.timestamp.map(|ms| ms.saturating_mul(1000))
}

/// `num_added_rows` of the table's latest commit (0 when not recorded).
pub async fn last_commit_added_rows(table: &DeltaTable) -> u64 {
    use futures::TryStreamExt;
    let commits: Vec<_> = table
        .history(Some(1))
        .try_collect()
        .await
        .unwrap_or_default();
    commits
        .first()
        .and_then(|c| c.info.get("operationMetrics"))
        .and_then(|m| m.get("num_added_rows"))
        .and_then(|v| v.as_u64())
        .unwrap_or(0)
}

/// Quotes an identifier for SQL text (`"a ""b"""`).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// How `schema` (a query's output) differs from the table's columns, by name and Delta
/// type (nullability aside); `None` when they agree.
///
/// # Errors
/// A type has no Delta equivalent, or the table has no loaded state.
pub fn schema_change(
    id: &TableId,
    table: &DeltaTable,
    schema: &ArrowSchema,
) -> Result<Option<String>> {
    let snap = table.snapshot().map_err(|e| EngineError::delta(id, e))?;
    let current = snap.schema();
    let new: StructType = schema
        .try_into_kernel()
        .map_err(|e: arrow::error::ArrowError| EngineError::delta(id, e.into()))?;
    let mut changes = Vec::new();
    for f in new.fields() {
        match current.field(f.name()) {
            None => changes.push(format!("column `{}` is new", f.name())),
            Some(old) if old.data_type() != f.data_type() => changes.push(format!(
                "column `{}` was {}, now {}",
                f.name(),
                old.data_type(),
                f.data_type()
            )),
            Some(_) => {}
        }
    }
    for f in current.fields() {
        if new.field(f.name()).is_none() {
            changes.push(format!("column `{}` is gone", f.name()));
        }
    }
    Ok((!changes.is_empty()).then(|| changes.join(", ")))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    use deltalake::parquet::file::properties::EnabledStatistics;
    use deltalake::parquet::schema::types::ColumnPath;

    use super::writer_properties_for;

    #[test]
    fn mostly_distinct_columns_are_written_without_a_dictionary() {
        let n = 4096;
        let unique: ArrayRef = Arc::new(StringArray::from_iter_values(
            (0..n).map(|i| format!("comment {i}")),
        ));
        let flags: ArrayRef = Arc::new(StringArray::from_iter_values(
            (0..n).map(|i| ["A", "N", "R"][i % 3]),
        ));
        let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(0..n as i64));
        let orders: ArrayRef = Arc::new(Int64Array::from_iter_values((0..n as i64).map(|i| i / 4)));
        let batch = RecordBatch::try_from_iter([
            ("comment", unique),
            ("flag", flags),
            ("id", ids),
            ("order", orders),
        ])
        .unwrap();
        let props = writer_properties_for(&batch, false);
        let dict = |c: &str| props.dictionary_enabled(&ColumnPath::from(c));
        assert!(!dict("comment"));
        assert!(dict("flag"));
        assert!(!dict("id"));
        assert!(dict("order"));

        // A handful of rows decides nothing.
        let small = batch.slice(0, 10);
        let props = writer_properties_for(&small, false);
        assert!(props.dictionary_enabled(&ColumnPath::from("comment")));
        assert_ne!(
            props.statistics_enabled(&ColumnPath::from("comment")),
            EnabledStatistics::None
        );

        // Raw text keeps no bounds; other columns and lineage (`_`) columns do.
        let props = writer_properties_for(&batch, true);
        let stats = |c: &str| props.statistics_enabled(&ColumnPath::from(c));
        assert_eq!(stats("comment"), EnabledStatistics::None);
        assert_ne!(stats("id"), EnabledStatistics::None);
    }
}
