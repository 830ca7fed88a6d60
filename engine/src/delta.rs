//! Delta IO shared by the layers: one commit per write, cursors in the same commit.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::Schema as ArrowSchema;
use datafusion::dataframe::DataFrame;
use datafusion::prelude::SessionContext;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties, TableReference};
use deltalake::kernel::{Action, Add, MetadataExt, StructType, Transaction, new_metadata};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::{DeltaTable, DeltaTableError};
use serde_json::Value;

use crate::error::{EngineError, Result};
use crate::storage::Lake;
use crate::table::TableId;

/// What a commit records besides its data: cursors (Delta `txn` actions) and free-form facts.
#[derive(Debug, Default, Clone)]
pub struct CommitInfo {
    /// Application transactions (`appId` -> version) written atomically with the data.
    pub transactions: Vec<(String, i64)>,
    /// Extra commit metadata (run id, step, metrics).
    pub metadata: HashMap<String, Value>,
}

impl CommitInfo {
    /// Cursors to record, tagged with the run that writes them (`assay.run_id`).
    pub fn new(transactions: Vec<(String, i64)>, run_id: &str) -> Self {
        let mut metadata = HashMap::new();
        metadata.insert("assay.run_id".to_string(), Value::from(run_id));
        CommitInfo {
            transactions,
            metadata,
        }
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

/// Commits data files written by a streaming writer as one append, creating the table in
/// the same commit when it does not exist and widening its schema when `schema` adds columns.
///
/// # Errors
/// Conflicts that survive delta-rs' retries, storage errors, or an incompatible schema.
pub async fn commit_append(
    lake: &Lake,
    id: &TableId,
    existing: Option<&DeltaTable>,
    schema: &ArrowSchema,
    adds: Vec<Add>,
    info: &CommitInfo,
) -> Result<i64> {
    let err = |e: DeltaTableError| EngineError::delta(id, e);
    let kernel_schema: StructType = schema
        .try_into_kernel()
        .map_err(|e: arrow::error::ArrowError| err(e.into()))?;
    let mut actions: Vec<Action> = Vec::with_capacity(adds.len() + 2);
    let snapshot = match existing {
        Some(table) => {
            let snap = table.snapshot().map_err(err)?;
            let current: ArrowSchema = snap.schema().as_ref().try_into_kernel_arrow(id)?;
            if current.fields().len() != schema.fields().len() {
                let metadata = snap
                    .metadata()
                    .clone()
                    .with_schema(&kernel_schema)
                    .map_err(|e| err(e.into()))?;
                actions.push(Action::Metadata(metadata));
            }
            Some(snap)
        }
        None => {
            let protocol: deltalake::kernel::Protocol = serde_json::from_value(
                serde_json::json!({"minReaderVersion": 1, "minWriterVersion": 2}),
            )
            .map_err(|e| err(DeltaTableError::Generic(e.to_string())))?;
            actions.push(Action::Protocol(protocol));
            let metadata = new_metadata(
                &kernel_schema,
                Vec::<String>::new(),
                Vec::<(String, String)>::new(),
            )
            .map_err(|e| err(e.into()))?
            .with_name(id.to_string())
            .map_err(|e| err(e.into()))?;
            actions.push(Action::Metadata(metadata));
            None
        }
    };
    actions.extend(adds.into_iter().map(Action::Add));
    let log_store = match existing {
        Some(t) => t.log_store(),
        None => lake.handle(id)?.log_store(),
    };
    let operation = DeltaOperation::Write {
        mode: SaveMode::Append,
        partition_by: None,
        predicate: None,
    };
    let commit = CommitBuilder::from(info.properties())
        .with_actions(actions)
        .build(
            snapshot.map(|s| s as &dyn TableReference),
            log_store,
            operation,
        )
        .await
        .map_err(err)?;
    Ok(commit.version() as i64)
}

trait IntoArrow {
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

/// Paths (relative to the table root) of data files added with `dataChange` by the commits
/// after `since` up to the loaded version; all live files when `since` is `None`.
///
/// Files rewritten by compaction (`dataChange = false`) are not new data and are skipped.
///
/// # Errors
/// A commit file is missing or unreadable.
pub async fn added_since(
    id: &TableId,
    table: &DeltaTable,
    since: Option<i64>,
) -> Result<Vec<String>> {
    let err = |e: DeltaTableError| EngineError::delta(id, e);
    let latest = version(table);
    let Some(since) = since else {
        let snap = table.snapshot().map_err(err)?;
        return Ok(snap
            .log_data()
            .iter()
            .map(|f| f.path().to_string())
            .collect());
    };
    let log_store = table.log_store();
    let mut removed = std::collections::HashSet::new();
    let mut paths = Vec::new();
    for v in (since + 1)..=latest {
        let Some(bytes) = log_store.read_commit_entry(v as u64).await.map_err(err)? else {
            return Err(err(DeltaTableError::Generic(format!(
                "commit {v} is missing from the log (was it cleaned up?); reprocess from scratch"
            ))));
        };
        for action in deltalake::logstore::get_actions(v as u64, &bytes).map_err(err)? {
            match action {
                Action::Add(add) if add.data_change => paths.push(add.path),
                Action::Remove(r) if r.data_change => {
                    removed.insert(r.path);
                }
                _ => {}
            }
        }
    }
    paths.retain(|p| !removed.contains(p));
    Ok(paths)
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
    let mut builder = table.table_provider();
    if let Some(files) = files {
        builder = builder.with_file_paths(files);
    }
    let provider = builder.await.map_err(|e| EngineError::query(id, e))?;
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
        .with_commit_properties(info.properties())
        .with_table_name(id.to_string());
    builder = match mode {
        WriteMode::Append => builder.with_save_mode(SaveMode::Append),
        WriteMode::Overwrite => builder
            .with_save_mode(SaveMode::Overwrite)
            .with_schema_mode(deltalake::operations::write::SchemaMode::Overwrite),
    };
    if !partition_by.is_empty() {
        builder = builder.with_partition_columns(partition_by.to_vec());
    }
    builder.await.map_err(|e| EngineError::delta(id, e))
}
