//! Data files written before they are committed: a streaming writer, the one commit that
//! publishes them, and [`Staged`] writes that can be read (audited) before they are.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema as ArrowSchema, SchemaRef};
use datafusion::dataframe::DataFrame;
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::logical_expr::{Expr, cast, ident, lit};
use datafusion::prelude::SessionContext;
use deltalake::DeltaTable;
use deltalake::DeltaTableError;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::transaction::{CommitBuilder, TableReference};
use deltalake::kernel::{Action, Add, MetadataExt, StructType, new_metadata};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use futures::StreamExt;
use object_store::ObjectStoreExt;

use super::{CommitInfo, IntoArrow, WriteMode};
use crate::error::{EngineError, Result};
use crate::storage::Lake;
use crate::table::TableId;

/// Streams record batches into new data files of a table without committing them.
pub struct FileWriter {
    id: TableId,
    url: String,
    options: HashMap<String, String>,
    schema: Option<SchemaRef>,
    /// The schema was given, so finishing without a batch still yields (empty) files.
    given: bool,
    partition_by: Vec<String>,
    merge_schema: bool,
    raw_text: bool,
    writer: Option<RecordBatchWriter>,
}

impl std::fmt::Debug for FileWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileWriter")
            .field("id", &self.id)
            .field("partition_by", &self.partition_by)
            .finish_non_exhaustive()
    }
}

impl FileWriter {
    /// A writer for `id`'s directory; its schema is the existing table's, else the first
    /// batch's (see [`FileWriter::schema`]).
    ///
    /// # Errors
    /// The existing table's schema cannot be read.
    pub fn new(lake: &Lake, id: &TableId, existing: Option<&DeltaTable>) -> Result<Self> {
        let schema = existing.map(|t| super::arrow_schema(id, t)).transpose()?;
        Ok(FileWriter {
            id: id.clone(),
            url: lake.table_url(id).to_string(),
            options: lake.options().as_map().clone(),
            schema,
            given: false,
            partition_by: Vec::new(),
            merge_schema: false,
            raw_text: false,
            writer: None,
        })
    }

    /// Writes under this schema (its view types stored as their plain types).
    pub fn schema(mut self, schema: &ArrowSchema) -> Self {
        self.schema = Some(Arc::new(storable(schema)));
        self.given = true;
        self
    }

    /// Writes Hive-style partitions of these columns.
    pub fn partitioned(mut self, columns: &[String]) -> Self {
        self.partition_by = columns.to_vec();
        self
    }

    /// Writes no min/max statistics for text columns not named `_...` (raw values; see
    /// [`super::writer_properties_for`]).
    pub fn raw_text(mut self) -> Self {
        self.raw_text = true;
        self
    }

    /// Lets new columns of later batches widen the schema (unpartitioned writers only).
    pub fn merge_schema(mut self) -> Self {
        self.merge_schema = true;
        self
    }

    fn err(&self, e: DeltaTableError) -> EngineError {
        EngineError::delta(&self.id, e)
    }

    /// Streams one batch into the open files.
    ///
    /// # Errors
    /// The batch does not fit the schema, or storage failed.
    pub async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        if self.writer.is_none() {
            let schema = self.schema.clone().unwrap_or_else(|| batch.schema());
            let partitions = (!self.partition_by.is_empty()).then(|| self.partition_by.clone());
            let w = RecordBatchWriter::try_new(
                &self.url,
                schema,
                partitions,
                Some(self.options.clone()),
            )
            .map_err(|e| self.err(e))?
            .with_target_file_size(super::TARGET_FILE_BYTES)
            .with_writer_properties(super::writer_properties_for(&batch, self.raw_text));
            self.writer = Some(w);
        }
        // delta-rs widens no partitioned schema: a partitioned table keeps its columns.
        let merge = self.merge_schema && self.partition_by.is_empty();
        let mode = if merge {
            deltalake::writer::WriteMode::MergeSchema
        } else {
            deltalake::writer::WriteMode::Default
        };
        if !merge
            && !self.partition_by.is_empty()
            && let Some(schema) = &self.schema
            && let Some(new) = batch
                .schema()
                .fields()
                .iter()
                .find(|f| schema.field_with_name(f.name()).is_err())
        {
            return Err(EngineError::SchemaChange {
                table: self.id.to_string(),
                message: format!(
                    "column `{}` is new, and a partitioned table keeps the columns it was created with \
                     (rebuild it with --full-refresh to take the new column)",
                    new.name()
                ),
            });
        }
        let batch = match (&self.schema, merge) {
            (Some(schema), false) => conform(batch, schema).map_err(|e| self.err(e.into()))?,
            _ => batch,
        };
        let Some(w) = self.writer.as_mut() else {
            return Ok(());
        };
        crate::progress::add(
            batch.num_rows() as u64,
            batch.get_array_memory_size() as u64,
        );
        let r = w.write_with_mode(batch, mode).await;
        r.map_err(|e| self.err(e))
    }

    /// Closes the files; returns their add actions and the schema they were written under
    /// (`None` when no batch was written and no schema was given).
    ///
    /// # Errors
    /// Storage failed.
    pub async fn finish(&mut self) -> Result<Option<NewFiles>> {
        let partition_by = self.partition_by.clone();
        let Some(w) = self.writer.as_mut() else {
            if !self.given {
                return Ok(None);
            }
            return Ok(self.schema.clone().map(|schema| NewFiles {
                schema,
                adds: Vec::new(),
                partition_by,
            }));
        };
        let adds = w.flush().await;
        let schema = w.arrow_schema();
        adds.map(|adds| {
            Some(NewFiles {
                schema,
                adds,
                partition_by,
            })
        })
        .map_err(|e| self.err(e))
    }
}

/// `batch` with the types of `schema` (by column name; view types become plain ones).
fn conform(
    batch: RecordBatch,
    schema: &SchemaRef,
) -> std::result::Result<RecordBatch, arrow::error::ArrowError> {
    if batch.schema().fields() == schema.fields() {
        return Ok(batch);
    }
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            let c = batch.column_by_name(f.name()).ok_or_else(|| {
                arrow::error::ArrowError::SchemaError(format!("column `{}` is missing", f.name()))
            })?;
            if c.data_type() == f.data_type() {
                Ok(Arc::clone(c))
            } else {
                arrow::compute::cast(c, f.data_type())
            }
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    RecordBatch::try_new(Arc::clone(schema), columns)
}

/// `schema` with view types as the plain types Delta stores.
fn storable(schema: &ArrowSchema) -> ArrowSchema {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let ty = match f.data_type() {
                DataType::Utf8View => DataType::Utf8,
                DataType::BinaryView => DataType::Binary,
                other => other.clone(),
            };
            f.as_ref().clone().with_data_type(ty)
        })
        .collect();
    ArrowSchema::new(fields)
}

/// Data files written for a table and not committed yet.
#[derive(Debug, Clone)]
pub struct NewFiles {
    /// The table schema they were written under (partition columns included).
    pub schema: SchemaRef,
    /// One add action per file.
    pub adds: Vec<Add>,
    /// The partition columns.
    pub partition_by: Vec<String>,
}

impl NewFiles {
    /// Adds the files another writer of the same table wrote; the schema becomes the union
    /// of both (a writer that saw a new column widens it; files without it read it as NULL).
    ///
    /// # Errors
    /// A column has different types in the two schemas.
    pub fn absorb(&mut self, other: NewFiles) -> std::result::Result<(), arrow::error::ArrowError> {
        if self.schema.fields() != other.schema.fields() {
            let merged = ArrowSchema::try_merge([
                self.schema.as_ref().clone(),
                other.schema.as_ref().clone(),
            ])?;
            self.schema = Arc::new(merged);
        }
        self.adds.extend(other.adds);
        Ok(())
    }

    /// Rows in the files (from their statistics).
    pub fn rows(&self) -> u64 {
        self.adds
            .iter()
            .filter_map(|a| a.get_stats().ok().flatten())
            .map(|s| s.num_records.max(0) as u64)
            .sum()
    }
}

/// Commits data files written by a streaming writer in one commit: appended, or replacing
/// every live file of the table (`Overwrite`: readers see the old rows until this commit,
/// then only the new ones, under the files' schema and partition columns). Creates the
/// table in the same commit when it does not exist.
///
/// # Errors
/// Conflicts that survive delta-rs' retries, storage errors, or an incompatible schema.
pub async fn commit_files(
    lake: &Lake,
    id: &TableId,
    existing: Option<&DeltaTable>,
    files: NewFiles,
    info: &CommitInfo,
    mode: WriteMode,
) -> Result<i64> {
    let err = |e: DeltaTableError| EngineError::delta(id, e);
    let schema = files.schema.as_ref();
    let kernel_schema: StructType = schema
        .try_into_kernel()
        .map_err(|e: arrow::error::ArrowError| err(e.into()))?;
    let mut actions: Vec<Action> = Vec::with_capacity(files.adds.len() + 2);
    let snapshot = match existing {
        Some(table) => {
            let snap = table.snapshot().map_err(err)?;
            let current: ArrowSchema = snap.schema().as_ref().try_into_kernel_arrow(id)?;
            let partitions_differ = snap.metadata().partition_columns() != files.partition_by;
            if mode == WriteMode::Append && partitions_differ {
                return Err(EngineError::SchemaChange {
                    table: id.to_string(),
                    message: format!(
                        "partition_by is [{}] but the table is partitioned by [{}]: rebuild it with --full-refresh",
                        files.partition_by.join(", "),
                        snap.metadata().partition_columns().join(", ")
                    ),
                });
            }
            let partitions_changed = mode == WriteMode::Overwrite && partitions_differ;
            let changed = match mode {
                WriteMode::Append => current.fields().len() != schema.fields().len(),
                WriteMode::Overwrite => current.fields() != schema.fields(),
            };
            if changed || partitions_changed || !info.table_properties.is_empty() {
                let metadata = snap
                    .metadata()
                    .clone()
                    .with_schema(&kernel_schema)
                    .map_err(|e| err(e.into()))?;
                let metadata =
                    with_partition_columns(metadata, &files.partition_by).map_err(err)?;
                let metadata = with_properties(metadata, &info.table_properties).map_err(err)?;
                actions.push(Action::Metadata(metadata));
            }
            let had_ntz = has_ntz(&current);
            if has_ntz(schema) && !had_ntz {
                let protocol = serde_json::to_value(snap.protocol())
                    .map_err(|e| err(DeltaTableError::Generic(e.to_string())))?;
                actions.push(Action::Protocol(with_ntz(protocol).map_err(err)?));
            }
            if mode == WriteMode::Overwrite {
                actions.extend(
                    snap.log_data()
                        .iter()
                        .map(|f| Action::Remove(f.remove_action(true))),
                );
            }
            Some(snap)
        }
        None => {
            let legacy = serde_json::json!({"minReaderVersion": 1, "minWriterVersion": 2});
            let protocol = if has_ntz(schema) {
                with_ntz(legacy).map_err(err)?
            } else {
                serde_json::from_value(legacy)
                    .map_err(|e| err(DeltaTableError::Generic(e.to_string())))?
            };
            actions.push(Action::Protocol(protocol));
            let metadata = new_metadata(
                &kernel_schema,
                files.partition_by.clone(),
                info.table_properties.clone(),
            )
            .map_err(|e| err(e.into()))?
            .with_name(id.to_string())
            .map_err(|e| err(e.into()))?;
            actions.push(Action::Metadata(metadata));
            None
        }
    };
    actions.extend(files.adds.into_iter().map(Action::Add));
    let log_store = match existing {
        Some(t) => t.log_store(),
        None => lake.handle(id)?.log_store(),
    };
    let operation = DeltaOperation::Write {
        mode: match mode {
            WriteMode::Append => SaveMode::Append,
            WriteMode::Overwrite => SaveMode::Overwrite,
        },
        partition_by: (!files.partition_by.is_empty()).then(|| files.partition_by.clone()),
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

/// `metadata` with other partition columns.
fn with_partition_columns(
    metadata: deltalake::kernel::Metadata,
    columns: &[String],
) -> deltalake::DeltaResult<deltalake::kernel::Metadata> {
    if metadata.partition_columns() == columns {
        return Ok(metadata);
    }
    let mut value = serde_json::to_value(&metadata)?;
    value["partitionColumns"] = serde_json::json!(columns);
    Ok(serde_json::from_value(value)?)
}

/// Whether a schema has a timestamp without time zone (Delta's `timestamp_ntz`), anywhere.
fn has_ntz(schema: &ArrowSchema) -> bool {
    fn ntz(t: &DataType) -> bool {
        match t {
            DataType::Timestamp(_, None) => true,
            DataType::Struct(fields) => fields.iter().any(|f| ntz(f.data_type())),
            DataType::List(f) | DataType::LargeList(f) | DataType::Map(f, _) => ntz(f.data_type()),
            _ => false,
        }
    }
    schema.fields().iter().any(|f| ntz(f.data_type()))
}

/// `protocol` (as JSON) raised to reader 3 / writer 7 with the `timestampNtz` feature,
/// which a table with a `timestamp_ntz` column needs.
fn with_ntz(
    mut protocol: serde_json::Value,
) -> deltalake::DeltaResult<deltalake::kernel::Protocol> {
    let legacy = protocol["minReaderVersion"].as_i64().unwrap_or(1) < 3;
    protocol["minReaderVersion"] = serde_json::json!(3);
    protocol["minWriterVersion"] = serde_json::json!(7);
    for key in ["readerFeatures", "writerFeatures"] {
        let mut features: Vec<serde_json::Value> = if legacy {
            Vec::new()
        } else {
            protocol[key].as_array().cloned().unwrap_or_default()
        };
        if !features.iter().any(|f| f == "timestampNtz") {
            features.push(serde_json::json!("timestampNtz"));
        }
        protocol[key] = serde_json::Value::Array(features);
    }
    Ok(serde_json::from_value(protocol)?)
}

/// `metadata` with `properties` set in its configuration.
fn with_properties(
    metadata: deltalake::kernel::Metadata,
    properties: &[(String, String)],
) -> deltalake::DeltaResult<deltalake::kernel::Metadata> {
    if properties.is_empty() {
        return Ok(metadata);
    }
    let mut value = serde_json::to_value(&metadata)?;
    for (k, v) in properties {
        value["configuration"][k] = serde_json::Value::from(v.clone());
    }
    Ok(serde_json::from_value(value)?)
}

/// A write whose files exist but belong to no version yet: it can be read (to audit it),
/// then published in one commit or abandoned (its files are deleted).
#[derive(Debug)]
pub struct Staged {
    id: TableId,
    files: NewFiles,
}

impl Staged {
    /// Files already written for `id` (e.g. by several [`FileWriter`]s in parallel), not
    /// committed yet.
    pub fn from_files(id: &TableId, files: NewFiles) -> Staged {
        Staged {
            id: id.clone(),
            files,
        }
    }

    /// Streams `frame` into new files of `id` (partitioned by `partition_by`), under the
    /// frame's schema; nothing is committed.
    ///
    /// # Errors
    /// Executing the frame or writing failed.
    pub async fn write(
        lake: &Lake,
        id: &TableId,
        frame: DataFrame,
        partition_by: &[String],
    ) -> Result<Staged> {
        let schema = frame.schema().as_arrow().clone();
        let mut writer = FileWriter::new(lake, id, None)?
            .schema(&schema)
            .partitioned(partition_by);
        let mut stream = frame
            .execute_stream()
            .await
            .map_err(|e| EngineError::query(id, e))?;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(|e| EngineError::query(id, e))?;
            if batch.num_rows() > 0 {
                writer.write(batch).await?;
            }
        }
        let files = writer.finish().await?.ok_or_else(|| {
            EngineError::delta(id, DeltaTableError::Generic("no schema to write".into()))
        })?;
        Ok(Staged {
            id: id.clone(),
            files,
        })
    }

    /// Rows written.
    pub fn rows(&self) -> u64 {
        self.files.rows()
    }

    /// The written rows, read back from exactly the staged files (partition values from
    /// their add actions), with the table's columns in order.
    ///
    /// # Errors
    /// The files cannot be planned as a scan.
    pub async fn frame(&self, lake: &Lake, session: &SessionContext) -> Result<DataFrame> {
        let q = |e| EngineError::query(&self.id, e);
        let schema = self.files.schema.clone();
        if self.files.adds.is_empty() {
            let empty = MemTable::try_new(schema, vec![vec![]]).map_err(q)?;
            return session.read_table(Arc::new(empty)).map_err(q);
        }
        super::register_store(&self.id, &lake.handle(&self.id)?, session)?;
        let partition_by = &self.files.partition_by;
        let file_schema = Arc::new(ArrowSchema::new(
            schema
                .fields()
                .iter()
                .filter(|f| !partition_by.contains(f.name()))
                .map(|f| f.as_ref().clone())
                .collect::<Vec<_>>(),
        ));
        // One scan per partition, its values added as literals.
        let mut groups: BTreeMap<Vec<Option<String>>, Vec<&Add>> = BTreeMap::new();
        for add in &self.files.adds {
            let key = partition_by
                .iter()
                .map(|p| add.partition_values.get(p).cloned().flatten())
                .collect();
            groups.entry(key).or_default().push(add);
        }
        let root = lake.table_url(&self.id);
        let mut frame: Option<DataFrame> = None;
        for (values, adds) in groups {
            let urls = adds
                .iter()
                .map(|a| {
                    let url = root.join(&a.path).map_err(|e| {
                        EngineError::delta(&self.id, DeltaTableError::Generic(e.to_string()))
                    })?;
                    ListingTableUrl::parse(url.as_str()).map_err(q)
                })
                .collect::<Result<Vec<_>>>()?;
            let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
                .with_file_extension(".parquet");
            let config = ListingTableConfig::new_with_multi_paths(urls)
                .with_listing_options(options)
                .with_schema(file_schema.clone());
            let table = ListingTable::try_new(config).map_err(q)?;
            let scan = session.read_table(Arc::new(table)).map_err(q)?;
            let columns: Vec<Expr> = schema
                .fields()
                .iter()
                .map(|f| {
                    let name = f.name();
                    match partition_by.iter().position(|p| p == name) {
                        Some(i) => cast(
                            lit(datafusion::common::ScalarValue::Utf8(values[i].clone())),
                            f.data_type().clone(),
                        )
                        .alias(name),
                        None => ident(name),
                    }
                })
                .collect();
            let part = scan.select(columns).map_err(q)?;
            frame = Some(match frame {
                Some(f) => f.union(part).map_err(q)?,
                None => part,
            });
        }
        frame.ok_or_else(|| q(datafusion::error::DataFusionError::Plan("no files".into())))
    }

    /// Publishes the files in one commit (appended, or replacing every live file).
    ///
    /// # Errors
    /// See [`commit_files`].
    pub async fn commit(
        self,
        lake: &Lake,
        existing: Option<&DeltaTable>,
        info: &CommitInfo,
        mode: WriteMode,
    ) -> Result<DeltaTable> {
        commit_files(lake, &self.id, existing, self.files, info, mode).await?;
        lake.open_existing(&self.id).await
    }

    /// Deletes the files (best effort: any left belong to no version).
    pub async fn abandon(self, lake: &Lake) {
        let store = match lake.handle(&self.id) {
            Ok(t) => t.log_store().object_store(None),
            Err(_) => return,
        };
        for add in &self.files.adds {
            let path = object_store::path::Path::from(add.path.as_str());
            if let Err(e) = store.delete(&path).await {
                tracing::warn!(table = %self.id, file = %add.path, error = %e, "could not delete an abandoned file");
            }
        }
    }
}
