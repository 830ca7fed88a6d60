//! The bronze step: new source files -> one Delta commit with lineage columns, the files'
//! cursors in the same commit, malformed lines failed or quarantined.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Int64Builder, RecordBatch, StringArray, StringBuilder, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use assay_engine::TableId;
use assay_engine::config::{
    BronzeConfig, CsvOptions, FileFormat, OnError, SchemaEvolution, SourceConfig,
};
use assay_engine::delta::{self, CommitInfo, FileWriter, NewFiles};
use assay_engine::step::{Step, StepContext, StepError, StepReport};
use async_trait::async_trait;
use futures::StreamExt;
use object_store::{GetResultPayload, ObjectStore, ObjectStoreExt};

use crate::discover::{Listing, SourceFile};
use crate::error::{BronzeError, Result};
use crate::formats::{self, Chunk, FileError, Reject};

/// Ingests one bronze table from its source.
#[derive(Debug)]
pub struct BronzeStep {
    table: TableId,
    config: BronzeConfig,
}

impl BronzeStep {
    /// A step for one `[[bronze]]` entry.
    pub fn new(config: BronzeConfig) -> Self {
        BronzeStep {
            table: TableId::new(assay_engine::Layer::Bronze, &config.name),
            config,
        }
    }
}

#[async_trait]
impl Step for BronzeStep {
    fn table(&self) -> &TableId {
        &self.table
    }

    fn upstreams(&self) -> &[TableId] {
        &[]
    }

    async fn run(&self, ctx: &StepContext) -> std::result::Result<StepReport, StepError> {
        Ok(self.ingest(ctx).await?)
    }
}

pub(crate) struct Lineage {
    pub(crate) batch_id: String,
    ingested_at: i64,
}

impl Lineage {
    fn extend(&self, batch: RecordBatch, file: &str) -> Result<RecordBatch> {
        let n = batch.num_rows();
        let mut fields: Vec<Field> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        fields.push(Field::new(
            "_ingested_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ));
        columns.push(Arc::new(
            TimestampMicrosecondArray::from(vec![self.ingested_at; n]).with_timezone("UTC"),
        ));
        fields.push(Field::new("_source_file", DataType::Utf8, false));
        columns.push(Arc::new(StringArray::from(vec![file; n])));
        fields.push(Field::new("_batch_id", DataType::Utf8, false));
        columns.push(Arc::new(StringArray::from(vec![self.batch_id.as_str(); n])));
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| {
            BronzeError::Write {
                table: file.to_string(),
                source: Box::new(e.into()),
            }
        })
    }

    fn rejects(&self, file: &str, rejects: &[Reject]) -> Result<RecordBatch> {
        let n = rejects.len();
        let mut line = Int64Builder::with_capacity(n);
        let mut raw = StringBuilder::new();
        let mut reason = StringBuilder::new();
        for r in rejects {
            line.append_option(r.line.map(|l| l as i64));
            raw.append_option(r.raw.as_deref());
            reason.append_value(&r.reason);
        }
        let schema = Schema::new(vec![
            Field::new("_source_file", DataType::Utf8, false),
            Field::new("_line", DataType::Int64, true),
            Field::new("_raw", DataType::Utf8, true),
            Field::new("_reason", DataType::Utf8, false),
            Field::new("_batch_id", DataType::Utf8, false),
            Field::new(
                "_ingested_at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
        ]);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![file; n])),
            Arc::new(line.finish()),
            Arc::new(raw.finish()),
            Arc::new(reason.finish()),
            Arc::new(StringArray::from(vec![self.batch_id.as_str(); n])),
            Arc::new(
                TimestampMicrosecondArray::from(vec![self.ingested_at; n]).with_timezone("UTC"),
            ),
        ];
        RecordBatch::try_new(Arc::new(schema), columns).map_err(|e| BronzeError::Write {
            table: file.to_string(),
            source: Box::new(e.into()),
        })
    }
}

/// Counts and writers of one ingest.
pub(crate) struct Sink<'a> {
    step: &'a BronzeStep,
    pub(crate) lineage: Lineage,
    main: FileWriter,
    rejected: FileWriter,
    pub(crate) report: StepReport,
}

impl Sink<'_> {
    /// Writes one parsed chunk of `source` (a file or page URL): rows to the table, rejects
    /// to the rejected table (or the step fails, per `on_error`).
    pub(crate) async fn chunk(&mut self, source: &str, chunk: Chunk) -> Result<()> {
        self.report.rows_in += chunk.records;
        if let Some(first) = chunk.rejects.first()
            && self.step.config.on_error == OnError::Fail
        {
            return Err(BronzeError::Malformed {
                file: source.to_string(),
                line: first.line,
                reason: first.reason.clone(),
            });
        }
        if !chunk.rejects.is_empty() {
            self.report.rows_rejected += chunk.rejects.len() as u64;
            let batch = self.lineage.rejects(source, &chunk.rejects)?;
            self.rejected.write(batch).await?;
        }
        if let Some(batch) = chunk.batch {
            self.report.rows_written += batch.num_rows() as u64;
            let batch = self.lineage.extend(batch, source)?;
            self.main.write(batch).await?;
        }
        Ok(())
    }

    /// Streams a Parquet file batch by batch.
    async fn parquet(&mut self, store: Arc<dyn ObjectStore>, file: &SourceFile) -> Result<()> {
        let mut stream = match formats::parquet::open(store, file).await {
            Ok(stream) => stream,
            Err(e) => return self.file_error(file, e).await,
        };
        while let Some(next) = stream.next().await {
            match next {
                Ok(batch) => {
                    let records = batch.num_rows() as u64;
                    let rejects = Vec::new();
                    let batch = Some(batch);
                    self.chunk(
                        &file.url,
                        Chunk {
                            batch,
                            rejects,
                            records,
                        },
                    )
                    .await?;
                }
                // Rows before the damage are already written: the step must fail so that
                // nothing of this file is committed.
                Err(FileError::Io(msg) | FileError::Format(msg)) => {
                    return Err(BronzeError::Malformed {
                        file: file.url.clone(),
                        line: None,
                        reason: msg,
                    });
                }
            }
        }
        Ok(())
    }

    /// Streams a CSV or NDJSON file: parsing runs on a blocking thread and hands chunks
    /// over a bounded channel, so memory stays flat whatever the file size.
    async fn text(
        &mut self,
        store: Arc<dyn ObjectStore>,
        file: &SourceFile,
        fmt: FileFormat,
        csv: &CsvOptions,
    ) -> Result<()> {
        let get = store
            .get(&file.location)
            .await
            .map_err(|source| BronzeError::Store {
                url: file.url.clone(),
                source,
            })?;
        let range = get.range.clone();
        let payload = get.payload;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<std::result::Result<Chunk, FileError>>(2);
        let handle = tokio::runtime::Handle::current();
        let opts = csv.clone();
        let parser = tokio::task::spawn_blocking(move || {
            // A local file is read right here; a store's byte stream through the runtime
            // (a local file's stream would hop to another thread every 8 KiB).
            let reader: Box<dyn std::io::Read + Send> = match payload {
                GetResultPayload::File(mut f, _) => {
                    use std::io::{Read, Seek, SeekFrom};
                    if let Err(e) = f.seek(SeekFrom::Start(range.start)) {
                        let _ = tx.blocking_send(Err(FileError::Io(e.to_string())));
                        return;
                    }
                    Box::new(f.take(range.end - range.start))
                }
                GetResultPayload::Stream(bytes) => {
                    Box::new(formats::BlockingReader::new(handle, bytes))
                }
            };
            let send = |c: Chunk| tx.blocking_send(Ok(c)).is_ok();
            let result = if fmt == FileFormat::Ndjson {
                formats::ndjson::parse(reader, send)
            } else {
                formats::csv::parse(reader, &opts, send)
            };
            if let Err(e) = result {
                let _ = tx.blocking_send(Err(e));
            }
        });
        let mut outcome = Ok(());
        while let Some(msg) = rx.recv().await {
            outcome = match msg {
                Ok(chunk) => self.chunk(&file.url, chunk).await,
                Err(e) => self.file_error(file, e).await,
            };
            if outcome.is_err() {
                break;
            }
        }
        // Dropping the receiver stops the parser at its next send.
        drop(rx);
        let _ = parser.await;
        outcome
    }

    /// A whole file is malformed: fail, or quarantine it as one rejected record.
    async fn file_error(&mut self, file: &SourceFile, e: FileError) -> Result<()> {
        match e {
            FileError::Io(msg) => Err(BronzeError::Read {
                url: file.url.clone(),
                source: std::io::Error::other(msg),
            }),
            FileError::Format(reason) => {
                let chunk = Chunk {
                    batch: None,
                    rejects: vec![Reject {
                        line: None,
                        raw: None,
                        reason,
                    }],
                    records: 0,
                };
                self.chunk(&file.url, chunk).await
            }
        }
    }
}

/// The tables one ingest writes, as they were when it started.
pub(crate) struct Target {
    /// The bronze table, if it exists.
    pub(crate) table: Option<deltalake::DeltaTable>,
    /// `bronze.<name>__rejected`.
    pub(crate) rejected_id: TableId,
    /// The rejected table, if it exists.
    pub(crate) rejected_table: Option<deltalake::DeltaTable>,
    /// Append, or overwrite on a full refresh.
    pub(crate) mode: delta::WriteMode,
}

impl BronzeStep {
    async fn ingest(&self, ctx: &StepContext) -> Result<StepReport> {
        match &self.config.source {
            SourceConfig::Files {
                pattern,
                format,
                csv,
            } => self.ingest_files(ctx, pattern, *format, csv).await,
            SourceConfig::Http(source) => crate::http::ingest(self, ctx, source).await,
            SourceConfig::Postgres(source) => crate::postgres::ingest(self, ctx, source).await,
            SourceConfig::Mysql(source) => crate::mysql::ingest(self, ctx, source).await,
        }
    }

    /// The table's name.
    pub(crate) fn id(&self) -> &TableId {
        &self.table
    }

    /// Opens the tables of an ingest.
    pub(crate) async fn target(&self, ctx: &StepContext) -> Result<Target> {
        let rejected_id = self.table.side("rejected");
        Ok(Target {
            table: ctx.lake.open(&self.table).await?,
            rejected_table: ctx.lake.open(&rejected_id).await?,
            rejected_id,
            mode: if ctx.full_refresh {
                delta::WriteMode::Overwrite
            } else {
                delta::WriteMode::Append
            },
        })
    }

    /// Writers for an ingest into `target`, with a new batch id.
    pub(crate) fn sink(&self, ctx: &StepContext, target: &Target) -> Result<Sink<'_>> {
        Ok(Sink {
            step: self,
            lineage: Lineage {
                batch_id: uuid::Uuid::now_v7().to_string(),
                ingested_at: chrono::Utc::now().timestamp_micros(),
            },
            // A full refresh starts from the sources' own schema.
            main: FileWriter::new(
                &ctx.lake,
                &self.table,
                target.table.as_ref().filter(|_| !ctx.full_refresh),
            )?
            .merge_schema()
            .partitioned(&self.config.partition_by)
            .raw_text(),
            rejected: FileWriter::new(
                &ctx.lake,
                &target.rejected_id,
                target.rejected_table.as_ref().filter(|_| !ctx.full_refresh),
            )?
            .merge_schema(),
            report: StepReport::default(),
        })
    }

    /// Commits what `sink` wrote: the rejects first (unless `rejects_done`: a rerun after a
    /// crash between the two commits), then the rows; both carry `info`'s cursors.
    pub(crate) async fn commit(
        &self,
        ctx: &StepContext,
        mut sink: Sink<'_>,
        target: &Target,
        info: &CommitInfo,
        rejects_done: bool,
    ) -> Result<StepReport> {
        let main = sink.main.finish().await?;
        let rejected = sink.rejected.finish().await?;
        if let (Some(files), Some(table), SchemaEvolution::Fail) = (
            &main,
            target.table.as_ref().filter(|_| !ctx.full_refresh),
            self.config.schema_evolution,
        ) {
            let current = delta::arrow_schema(&self.table, table)?;
            let new: Vec<&str> = files
                .schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .filter(|n| current.field_with_name(n).is_err())
                .collect();
            if !new.is_empty() {
                return Err(BronzeError::SchemaChanged {
                    table: self.table.to_string(),
                    columns: new.join(", "),
                });
            }
        }
        ctx.faults.before_commit(&self.table)?;
        let rejected = match (rejected, &target.rejected_table) {
            // A full refresh empties the rejects when no line is malformed any more.
            (None, Some(t)) if ctx.full_refresh => Some(NewFiles {
                schema: delta::arrow_schema(&target.rejected_id, t)?,
                adds: Vec::new(),
                partition_by: Vec::new(),
            }),
            (r, _) => r,
        };
        if let Some(files) = rejected
            && !rejects_done
        {
            delta::commit_files(
                &ctx.lake,
                &target.rejected_id,
                target.rejected_table.as_ref(),
                files,
                info,
                target.mode,
            )
            .await?;
        }
        let files = match main {
            Some(m) => m,
            None => {
                // Every record was rejected: commit the cursors with no data, keeping the
                // schema.
                let schema = match &target.table {
                    Some(t) => delta::arrow_schema(&self.table, t)?,
                    None => {
                        // Nothing to create a table from; the rejected table holds the record.
                        return Ok(sink.report);
                    }
                };
                NewFiles {
                    schema,
                    adds: Vec::new(),
                    partition_by: self.config.partition_by.clone(),
                }
            }
        };
        let version = delta::commit_files(
            &ctx.lake,
            &self.table,
            target.table.as_ref(),
            files,
            info,
            target.mode,
        )
        .await?;
        sink.report.version = Some(version);
        tracing::info!(table = %self.table, version, rows = sink.report.rows_written, "committed");
        Ok(sink.report)
    }

    async fn ingest_files(
        &self,
        ctx: &StepContext,
        pattern: &str,
        format: FileFormat,
        csv: &CsvOptions,
    ) -> Result<StepReport> {
        let listing = Listing::new(pattern, ctx.lake.options())?;
        let files = listing.files().await?;
        let target = self.target(ctx).await?;
        let mut new = Vec::new();
        for f in files {
            let done = match target.table.as_ref().filter(|_| !ctx.full_refresh) {
                Some(t) => {
                    delta::txn_version(&self.table, t, &f.app_id()).await? == Some(f.modified_ms)
                }
                None => false,
            };
            if !done {
                new.push(f);
            }
        }
        if new.is_empty() && !(ctx.full_refresh && target.table.is_some()) {
            tracing::info!(table = %self.table, "no new files");
            return Ok(StepReport::default());
        }
        let mut sink = self.sink(ctx, &target)?;
        for file in &new {
            tracing::info!(file = %file.url, bytes = file.size, "ingesting");
            let fmt = resolve_format(format, file)?;
            let store = Arc::clone(listing.store());
            match fmt {
                FileFormat::Parquet => sink.parquet(store, file).await?,
                FileFormat::Csv | FileFormat::Ndjson | FileFormat::Auto => {
                    sink.text(store, file, fmt, csv).await?
                }
            }
        }
        let cursors = new.iter().map(|f| (f.app_id(), f.modified_ms)).collect();
        let info = CommitInfo::new(cursors, &ctx.run_id)
            .with("assay.batch_id", sink.lineage.batch_id.clone());
        // Rejects are recorded with the same cursors, so a crash between the two commits
        // does not quarantine the same lines twice on the rerun.
        let rejects_done = match target.rejected_table.as_ref().filter(|_| !ctx.full_refresh) {
            Some(t) => {
                let mut all = true;
                for f in &new {
                    all &= delta::txn_version(&target.rejected_id, t, &f.app_id()).await?
                        == Some(f.modified_ms);
                }
                all
            }
            None => false,
        };
        self.commit(ctx, sink, &target, &info, rejects_done).await
    }
}

fn resolve_format(format: FileFormat, file: &SourceFile) -> Result<FileFormat> {
    if format != FileFormat::Auto {
        return Ok(format);
    }
    let lower = file.url.to_ascii_lowercase();
    let ext = lower.rsplit('.').next().unwrap_or_default();
    match ext {
        "csv" | "tsv" | "txt" => Ok(FileFormat::Csv),
        "ndjson" | "jsonl" | "json" => Ok(FileFormat::Ndjson),
        "parquet" | "pq" => Ok(FileFormat::Parquet),
        _ => Err(BronzeError::UnknownFormat {
            file: file.url.clone(),
        }),
    }
}
