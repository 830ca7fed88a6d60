//! A gold model: a SQL file over silver (or other gold) tables, materialized as a full
//! refresh in one commit, skipped when no upstream has a new version.

use assay_engine::config::GoldConfig;
use assay_engine::dag::sql_references;
use assay_engine::delta::{self, CommitInfo, WriteMode};
use assay_engine::step::{Step, StepContext, StepError, StepReport};
use assay_engine::{EngineError, Layer, TableId};
use async_trait::async_trait;
use futures::TryStreamExt;

use crate::error::{GoldError, Result};

/// Builds one gold table from its SQL model.
#[derive(Debug)]
pub struct GoldStep {
    table: TableId,
    config: GoldConfig,
    upstreams: Vec<TableId>,
}

impl GoldStep {
    /// A step for one model.
    ///
    /// # Errors
    /// The SQL does not parse or names a table without a layer.
    pub fn new(config: GoldConfig) -> std::result::Result<Self, EngineError> {
        let table = TableId::new(Layer::Gold, &config.name);
        let upstreams = sql_references(&table.to_string(), &config.file, &config.sql)?;
        Ok(GoldStep {
            table,
            config,
            upstreams,
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
        Ok(self.build(ctx).await?)
    }
}

impl GoldStep {
    async fn build(&self, ctx: &StepContext) -> Result<StepReport> {
        let q = |e| GoldError::Query {
            model: self.table.to_string(),
            file: self.config.file.clone(),
            source: Box::new(e),
        };
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
        if let Some(t) = &existing {
            let mut fresh = true;
            for (app, v) in &versions {
                fresh &= delta::txn_version(&self.table, t, app).await? == Some(*v);
            }
            if fresh {
                return Ok(StepReport::default());
            }
        }
        let session = ctx.catalog.session();
        let frame = session.sql(&self.config.sql).await.map_err(q)?;
        for p in &self.config.partition_by {
            if frame.schema().field_with_unqualified_name(p).is_err() {
                return Err(GoldError::PartitionColumn {
                    model: self.table.to_string(),
                    column: p.clone(),
                });
            }
        }
        let info =
            CommitInfo::new(versions, &ctx.run_id).with("assay.model", self.config.file.clone());
        ctx.faults.before_commit(&self.table)?;
        let table = delta::write_frame(
            &ctx.lake,
            &self.table,
            frame,
            WriteMode::Overwrite,
            &self.config.partition_by,
            &info,
        )
        .await?;
        let rows = added_rows(&table).await;
        Ok(StepReport {
            rows_in: rows,
            rows_written: rows,
            rows_rejected: 0,
            version: Some(delta::version(&table)),
            expectations: Vec::new(),
        })
    }
}

/// `num_added_rows` of the table's latest commit (0 when not recorded).
async fn added_rows(table: &deltalake::DeltaTable) -> u64 {
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
