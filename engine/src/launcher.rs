//! Runs started by a server (`POST /runs`): one at a time per process, in the background,
//! recorded in `_system.runs` like a run of `assay run`.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::RunConfig;
use crate::dag::Pipeline;
use crate::error::EngineError;
use crate::history;
use crate::runner::{self, RunObserver, StepOutcome};
use crate::session::LakeCatalog;
use crate::step::{Faults, StepContext};
use crate::storage::Lake;
use crate::table::TableId;

/// A run that has started and not yet been recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Running {
    /// Run id (UUID v7), the same `_system.runs` will hold.
    pub run_id: String,
    /// The selection expression, when not the whole DAG.
    pub select: Option<String>,
    /// The steps left out (`--exclude` syntax), when any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exclude: Option<String>,
    /// Whether the selected tables are rebuilt from scratch.
    pub full_refresh: bool,
    /// Who started it.
    pub started_by: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// Another run of this process has not finished.
    #[error("run {} is still in progress (started by {})", .0.run_id, .0.started_by)]
    Busy(Running),
    /// The selection names no step, or is malformed.
    #[error("select: {0}")]
    Selection(EngineError),
}

/// Starts runs of one pipeline over one lake.
#[derive(Clone)]
pub struct Launcher {
    pipeline: Arc<Pipeline>,
    config: RunConfig,
    lake: Lake,
    running: Arc<Mutex<Option<Running>>>,
    alerter: Option<crate::alerts::Alerter>,
}

impl std::fmt::Debug for Launcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Launcher")
            .field("lake", &self.lake)
            .field("running", &self.running())
            .finish_non_exhaustive()
    }
}

/// Logs each step's outcome (a server has no terminal to draw progress on).
struct Logged;

impl RunObserver for Logged {
    fn started(&self, table: &TableId) {
        tracing::info!(step = %table, "step started");
    }

    fn finished(&self, o: &StepOutcome) {
        tracing::info!(
            step = %o.table,
            status = o.status.as_str(),
            rows_written = o.report.rows_written,
            "step finished"
        );
    }
}

impl Launcher {
    /// A launcher for `pipeline` over `lake`.
    pub fn new(pipeline: Pipeline, config: RunConfig, lake: Lake) -> Self {
        Launcher {
            pipeline: Arc::new(pipeline),
            config,
            lake,
            running: Arc::new(Mutex::new(None)),
            alerter: None,
        }
    }

    /// Tells `alerter` about every run this launcher finishes.
    #[must_use]
    pub fn with_alerter(mut self, alerter: crate::alerts::Alerter) -> Self {
        self.alerter = Some(alerter);
        self
    }

    /// The run in progress, if any.
    pub fn running(&self) -> Option<Running> {
        self.running.lock().ok().and_then(|r| r.clone())
    }

    /// Starts a run of the selection (the whole DAG when `None`) in the background, as a
    /// full refresh of the selected tables when `full_refresh`.
    ///
    /// # Errors
    /// A run is in progress, or the selection is invalid.
    pub fn start(
        &self,
        select: Option<&str>,
        full_refresh: bool,
        by: &str,
    ) -> Result<Running, LaunchError> {
        self.start_excluding(select, None, full_refresh, by)
    }

    /// [`Launcher::start`] with the steps `exclude` selects left out.
    ///
    /// # Errors
    /// A run is in progress, or the selection is invalid or leaves nothing to run.
    pub fn start_excluding(
        &self,
        select: Option<&str>,
        exclude: Option<&str>,
        full_refresh: bool,
        by: &str,
    ) -> Result<Running, LaunchError> {
        let selection = self
            .pipeline
            .selection(select, exclude)
            .map_err(LaunchError::Selection)?;
        let mut slot = self
            .running
            .lock()
            .map_err(|_| LaunchError::Selection(EngineError::Auth("lock poisoned".into())))?;
        if let Some(r) = slot.as_ref() {
            return Err(LaunchError::Busy(r.clone()));
        }
        let run = Running {
            run_id: uuid::Uuid::now_v7().to_string(),
            select: select.map(str::to_string),
            exclude: exclude.map(str::to_string),
            full_refresh,
            started_by: by.to_string(),
            started_at: Utc::now(),
        };
        *slot = Some(run.clone());
        drop(slot);
        let this = self.clone();
        let run_id = run.run_id.clone();
        let by = by.to_string();
        tokio::spawn(async move {
            let outcome = this.execute(&run_id, selection, full_refresh, &by).await;
            if let Err(e) = outcome {
                tracing::error!(run_id = %run_id, error = %e, "run failed to start or record");
            }
            if let Ok(mut slot) = this.running.lock() {
                *slot = None;
            }
        });
        Ok(run)
    }

    async fn execute(
        &self,
        run_id: &str,
        selection: Option<std::collections::BTreeSet<TableId>>,
        full_refresh: bool,
        by: &str,
    ) -> crate::Result<()> {
        let catalog = LakeCatalog::load(self.lake.clone()).await?;
        let ctx = StepContext {
            lake: self.lake.clone(),
            catalog,
            run_id: run_id.to_string(),
            full_refresh,
            faults: Faults::new(Vec::new()),
        };
        tracing::info!(run_id, "run started");
        let summary = runner::run(
            &self.pipeline,
            selection.as_ref(),
            &self.config,
            ctx,
            Arc::new(Logged),
        )
        .await;
        tracing::info!(run_id, succeeded = summary.succeeded(), "run finished");
        let recorded = history::record(&self.lake, &summary).await;
        if let Some(alerter) = &self.alerter {
            alerter.notify(&summary, by);
        }
        recorded
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::step::{Step, StepError, StepReport};

    /// A step that waits until the test opens its gate.
    #[derive(Debug)]
    struct Gated(TableId, Arc<tokio::sync::Notify>);

    #[async_trait::async_trait]
    impl Step for Gated {
        fn table(&self) -> &TableId {
            &self.0
        }
        fn upstreams(&self) -> &[TableId] {
            &[]
        }
        async fn run(&self, _: &StepContext) -> Result<StepReport, StepError> {
            self.1.notified().await;
            Ok(StepReport {
                rows_written: 3,
                ..StepReport::default()
            })
        }
    }

    #[tokio::test]
    async fn one_run_at_a_time_recorded_like_assay_run() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::resolve("lake", dir.path()).unwrap();
        let gate = Arc::new(tokio::sync::Notify::new());
        let id = TableId::parse("gold.slow").unwrap();
        let pipeline =
            Pipeline::new(vec![Arc::new(Gated(id, Arc::clone(&gate))) as Arc<dyn Step>]).unwrap();
        let launcher = Launcher::new(pipeline, RunConfig::default(), lake.clone());

        assert!(matches!(
            launcher.start(Some("gold.nope"), false, "ana"),
            Err(LaunchError::Selection(_))
        ));
        assert!(
            launcher.running().is_none(),
            "a bad selection starts nothing"
        );
        let run = launcher.start(Some("gold.slow"), false, "ana").unwrap();
        assert_eq!(launcher.running().as_ref(), Some(&run));
        match launcher.start(None, false, "bo") {
            Err(e @ LaunchError::Busy(_)) => assert!(e.to_string().contains(&run.run_id)),
            other => panic!("expected busy, got {other:?}"),
        }
        gate.notify_one();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while launcher.running().is_some() {
            assert!(std::time::Instant::now() < deadline, "run did not finish");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(
            lake.latest_version(&history::runs_table()).await.unwrap(),
            Some(0),
            "the run is recorded in _system.runs"
        );
        // Finished: the next run may start.
        gate.notify_one();
        assert!(launcher.start(None, false, "bo").is_ok());
    }
}
