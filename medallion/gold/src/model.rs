//! A gold model: a SQL file over silver (or other gold) tables, materialized as a full
//! refresh in one commit, skipped when no upstream has a new version; or, when it declares
//! `incremental`, computed from its stream's changes only and applied by strategy.

use assay_engine::cluster::Cluster;
use assay_engine::config::GoldConfig;
use assay_engine::dag::sql_references;
use assay_engine::delta::{self, CommitInfo, Staged, WriteMode};
use assay_engine::step::{Step, StepContext, StepError, StepReport};
use assay_engine::stream::{self, Prepared};
use assay_engine::{EngineError, Layer, TableId};
use async_trait::async_trait;
use datafusion::dataframe::DataFrame;

use crate::error::{GoldError, Result};

/// Builds one gold table from its SQL model.
#[derive(Debug)]
pub struct GoldStep {
    pub(crate) table: TableId,
    pub(crate) config: GoldConfig,
    pub(crate) upstreams: Vec<TableId>,
    /// The Ballista cluster the model's query runs on; `None`: in this process.
    pub(crate) cluster: Option<Cluster>,
}

impl GoldStep {
    /// A step for one model, its query run on `cluster` when given.
    ///
    /// # Errors
    /// The SQL does not parse or names a table without a layer.
    pub fn new(
        config: GoldConfig,
        cluster: Option<Cluster>,
    ) -> std::result::Result<Self, EngineError> {
        let table = TableId::new(Layer::Gold, &config.name);
        let mut upstreams = sql_references(&table.to_string(), &config.file, &config.sql)?;
        // Tables the audits read run first too.
        for t in config.audit_tables() {
            if !upstreams.contains(&t) {
                upstreams.push(t);
            }
        }
        // The stream first, as the engine's input reader expects.
        if let Some(inc) = &config.incremental {
            upstreams.retain(|u| *u != inc.stream);
            upstreams.insert(0, inc.stream.clone());
        }
        Ok(GoldStep {
            table,
            config,
            upstreams,
            cluster,
        })
    }
}

#[async_trait]
impl Step for GoldStep {
    fn table(&self) -> &TableId {
        &self.table
    }

    fn upstreams(&self) -> &[TableId] {
        &self.upstreams
    }

    async fn run(&self, ctx: &StepContext) -> std::result::Result<StepReport, StepError> {
        // On a cluster, the inputs are opened so they can travel there.
        let bound;
        let ctx = match &self.cluster {
            Some(_) => {
                bound = StepContext {
                    catalog: ctx.catalog.for_cluster(),
                    ..ctx.clone()
                };
                &bound
            }
            None => ctx,
        };
        Ok(match &self.config.incremental {
            Some(_) => self.incremental(ctx).await?,
            None => self.build(ctx).await?,
        })
    }
}

/// The report of a build that committed `table` with `rows` rows written.
pub(crate) fn written(table: &deltalake::DeltaTable, rows: u64) -> StepReport {
    StepReport {
        rows_in: rows,
        rows_written: rows,
        rows_rejected: 0,
        version: Some(delta::version(table)),
        expectations: Vec::new(),
    }
}

impl GoldStep {
    /// Wraps a DataFusion error with the model and its file.
    pub(crate) fn q(&self) -> impl Fn(datafusion::error::DataFusionError) -> GoldError + '_ {
        move |e| GoldError::Query {
            model: self.table.to_string(),
            file: self.config.file.clone(),
            source: Box::new(e),
        }
    }

    /// The model's SQL as a frame, with the partition columns derived from date parts:
    /// planned in `session`, run on the cluster when the model has one (its rows streamed
    /// back here to be written).
    pub(crate) async fn frame(
        &self,
        session: &datafusion::prelude::SessionContext,
    ) -> Result<DataFrame> {
        let remote;
        let session = match &self.cluster {
            Some(c) => {
                remote = c.session(session).await?;
                &remote
            }
            None => session,
        };
        let mut frame = session.sql(&self.config.sql).await.map_err(self.q())?;
        for d in &self.config.derived {
            frame = frame.with_column(&d.name, d.expr()).map_err(self.q())?;
        }
        match &self.cluster {
            Some(c) => Ok(c.fetched(frame)?),
            None => Ok(frame),
        }
    }

    /// Fails when a partition column is not in the model's output.
    pub(crate) fn check_partitions(&self, frame: &DataFrame) -> Result<()> {
        for p in &self.config.partition_by {
            if frame.schema().field_with_unqualified_name(p).is_err() {
                return Err(GoldError::PartitionColumn {
                    model: self.table.to_string(),
                    column: p.clone(),
                });
            }
        }
        Ok(())
    }

    /// The commit's metadata: cursors and the model file.
    pub(crate) fn info(&self, ctx: &StepContext, versions: Vec<(String, i64)>) -> CommitInfo {
        CommitInfo::new(versions, &ctx.run_id).with("assay.model", self.config.file.clone())
    }

    /// Runs the audits over `version` (the table as it would be once published): the
    /// outcomes, or the error that keeps the previous version.
    pub(crate) async fn audited(
        &self,
        ctx: &StepContext,
        version: DataFrame,
    ) -> Result<Vec<assay_engine::step::ExpectationOutcome>> {
        if self.config.audits.is_empty() {
            return Ok(Vec::new());
        }
        crate::audit::audit(self, ctx, version)
            .await?
            .into_error(&self.table.to_string())
    }

    /// Audits the staged files (`version`: the table they would make), then publishes them
    /// in one commit, or deletes them when a `fail` audit fails.
    pub(crate) async fn publish(
        &self,
        ctx: &StepContext,
        staged: Staged,
        version: DataFrame,
        info: &CommitInfo,
        mode: WriteMode,
    ) -> Result<StepReport> {
        let outcomes = match self.audited(ctx, version).await {
            Ok(o) => o,
            Err(e) => {
                staged.abandon(&ctx.lake).await;
                return Err(e);
            }
        };
        ctx.faults.before_commit(&self.table)?;
        let existing = ctx.lake.open(&self.table).await?;
        let rows = staged.rows();
        let table = staged
            .commit(&ctx.lake, existing.as_ref(), info, mode)
            .await?;
        let mut report = written(&table, rows);
        report.expectations = outcomes;
        Ok(report)
    }

    /// Replaces the whole table with `frame` in one commit (written, audited, then
    /// published when the model has audits).
    pub(crate) async fn overwrite(
        &self,
        ctx: &StepContext,
        frame: DataFrame,
        info: &CommitInfo,
    ) -> Result<StepReport> {
        self.check_partitions(&frame)?;
        if !self.config.audits.is_empty() {
            let staged =
                Staged::write(&ctx.lake, &self.table, frame, &self.config.partition_by).await?;
            let version = staged.frame(&ctx.lake, &ctx.catalog.session()).await?;
            return self
                .publish(ctx, staged, version, info, WriteMode::Overwrite)
                .await;
        }
        ctx.faults.before_commit(&self.table)?;
        let table = delta::write_frame(
            &ctx.lake,
            &self.table,
            frame,
            WriteMode::Overwrite,
            &self.config.partition_by,
            info,
        )
        .await?;
        let rows = delta::last_commit_added_rows(&table).await;
        Ok(written(&table, rows))
    }

    /// A full rebuild over the lake catalog, skipped when every upstream is at the version
    /// the last build recorded (unless this is a full refresh).
    async fn build(&self, ctx: &StepContext) -> Result<StepReport> {
        // Versions are read before planning: if a commit lands in between, the model is
        // rebuilt next time, never skipped wrongly.
        let mut versions = Vec::new();
        for up in &self.upstreams {
            let version = match ctx.lake.open(up).await? {
                Some(t) => delta::version(&t),
                None => -1,
            };
            versions.push((delta::consumed_app_id(up), version));
        }
        let existing = ctx.lake.open(&self.table).await?;
        if let Some(t) = existing.as_ref().filter(|_| !ctx.full_refresh) {
            let mut fresh = true;
            for (app, v) in &versions {
                fresh &= delta::txn_version(&self.table, t, app).await? == Some(*v);
            }
            if fresh {
                return Ok(StepReport::default());
            }
        }
        let frame = self.frame(&ctx.catalog.session()).await?;
        let info = self.info(ctx, versions);
        self.overwrite(ctx, frame, &info).await
    }

    /// An incremental model: the first run and a full refresh build everything from the
    /// stream as read; later runs compute the model over the stream's changes only.
    async fn incremental(&self, ctx: &StepContext) -> Result<StepReport> {
        let Some(inc) = &self.config.incremental else {
            return self.build(ctx).await;
        };
        let existing = ctx.lake.open(&self.table).await?;
        let inputs = match stream::prepare(
            ctx,
            &self.table,
            existing.as_ref(),
            &inc.stream,
            &self.upstreams,
        )
        .await?
        {
            Prepared::Ready(inputs) => *inputs,
            Prepared::UpToDate => return Ok(StepReport::default()),
            Prepared::Waiting(up) => {
                tracing::info!(upstream = %up, "upstream has no table yet; nothing to build");
                return Ok(StepReport::default());
            }
        };
        let info = self.info(ctx, inputs.versions.clone());
        match existing {
            Some(target) if inputs.is_incremental() => {
                crate::incremental::apply(self, ctx, inc, target, inputs, &info).await
            }
            _ => {
                let frame = self.frame(&inputs.session).await?;
                self.overwrite(ctx, frame, &info).await
            }
        }
    }
}
