//! Runs started by a server (`POST /runs`): one at a time per process, in the background,
//! recorded in `_system.runs` like a run of `assay run`.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tracing::Instrument;

use crate::config::RunConfig;
use crate::dag::Pipeline;
use crate::error::EngineError;
use crate::history;
use crate::runner;
use crate::scheduler::{LeaseRecord, ScheduleStore};
use crate::session::LakeCatalog;
use crate::step::{Faults, StepContext};
use crate::storage::Lake;
use crate::table::TableId;

mod watch;

pub use watch::Progress;
use watch::Watch;

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
    /// Another server of the lake holds the run lease.
    #[error("run {} is still in progress on {}", .0.run_id, .0.holder)]
    BusyElsewhere(LeaseRecord),
    /// The lease could not be read or written.
    #[error("the run lease is unavailable: {0}")]
    Lease(EngineError),
}

/// The lake-wide lease runs of this launcher take first.
#[derive(Debug, Clone)]
struct RunLease {
    store: ScheduleStore,
    holder: String,
    ttl: std::time::Duration,
}

/// Starts runs of one pipeline over one lake.
#[derive(Clone)]
pub struct Launcher {
    pipeline: Arc<Pipeline>,
    config: RunConfig,
    lake: Lake,
    running: Arc<Mutex<Option<Slot>>>,
    alerter: Option<crate::alerts::Alerter>,
    lease: Option<RunLease>,
    maintenance: crate::config::MaintenanceConfig,
}

impl std::fmt::Debug for Launcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Launcher")
            .field("lake", &self.lake)
            .field("running", &self.running())
            .finish_non_exhaustive()
    }
}

/// What a launcher starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    /// A run of the selected steps.
    Run {
        /// Rebuild the selected tables from scratch.
        full_refresh: bool,
    },
    /// Maintenance of the selected tables (see [`crate::lifecycle::maintain_tables`]).
    Maintain,
}

/// The run a launcher is running and what it has done so far.
#[derive(Debug)]
struct Slot {
    run: Running,
    watch: Arc<Watch>,
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
            lease: None,
            maintenance: crate::config::MaintenanceConfig::default(),
        }
    }

    /// The pipeline's tables in run order, each with the upstream tables its step reads.
    pub fn lineage(&self) -> Vec<(TableId, Vec<TableId>)> {
        self.pipeline
            .ordered()
            .map(|step| {
                let table = step.table().clone();
                let upstream = self.pipeline.upstream_steps(&table);
                (table, upstream)
            })
            .collect()
    }

    /// Maintains the tables each run wrote by `config` once it is recorded (see
    /// [`crate::lifecycle::after_run`]).
    #[must_use]
    pub fn with_maintenance(mut self, config: crate::config::MaintenanceConfig) -> Self {
        self.maintenance = config;
        self
    }

    /// Makes every run take the lake-wide run lease in `store` first, as `holder`, held
    /// `ttl` at a time and renewed every third of it while the run lasts: one run at a time
    /// across every server of the lake, and a dead server's lease lapses after `ttl`.
    #[must_use]
    pub fn with_lease(
        mut self,
        store: ScheduleStore,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Self {
        self.lease = Some(RunLease {
            store,
            holder: holder.to_string(),
            ttl,
        });
        self
    }

    /// Tells `alerter` about every run this launcher finishes.
    #[must_use]
    pub fn with_alerter(mut self, alerter: crate::alerts::Alerter) -> Self {
        self.alerter = Some(alerter);
        self
    }

    /// The run in progress, if any.
    pub fn running(&self) -> Option<Running> {
        self.running
            .lock()
            .ok()
            .and_then(|r| r.as_ref().map(|s| s.run.clone()))
    }

    /// Run `run_id` as far as it got, while this launcher runs it.
    pub fn progress(&self, run_id: &str) -> Option<(Running, Progress)> {
        let watch = {
            let slot = self.running.lock().ok()?;
            let s = slot.as_ref().filter(|s| s.run.run_id == run_id)?;
            (s.run.clone(), Arc::clone(&s.watch))
        };
        Some((watch.0, watch.1.progress()))
    }

    /// Starts a run of the selection (the whole DAG when `None`) in the background, as a
    /// full refresh of the selected tables when `full_refresh`.
    ///
    /// # Errors
    /// A run is in progress, or the selection is invalid.
    pub async fn start(
        &self,
        select: Option<&str>,
        full_refresh: bool,
        by: &str,
    ) -> Result<Running, LaunchError> {
        self.start_excluding(select, None, full_refresh, by).await
    }

    /// [`Launcher::start`] with the steps `exclude` selects left out.
    ///
    /// # Errors
    /// A run is in progress, or the selection is invalid or leaves nothing to run.
    pub async fn start_excluding(
        &self,
        select: Option<&str>,
        exclude: Option<&str>,
        full_refresh: bool,
        by: &str,
    ) -> Result<Running, LaunchError> {
        self.start_job(select, exclude, Job::Run { full_refresh }, by)
            .await
    }

    /// Starts `job` on the selected tables in the background, in the same slot and under the
    /// same lease as runs: a maintenance never overlaps a run.
    ///
    /// # Errors
    /// A run is in progress, or the selection is invalid or leaves nothing to run.
    pub async fn start_job(
        &self,
        select: Option<&str>,
        exclude: Option<&str>,
        job: Job,
        by: &str,
    ) -> Result<Running, LaunchError> {
        let full_refresh = matches!(job, Job::Run { full_refresh: true });
        let selection = self
            .pipeline
            .selection(select, exclude)
            .map_err(LaunchError::Selection)?;
        let run_id = uuid::Uuid::now_v7().to_string();
        let planned = match job {
            Job::Run { .. } => self
                .pipeline
                .ordered()
                .map(|s| s.table())
                .filter(|t| selection.as_ref().is_none_or(|sel| sel.contains(*t)))
                .cloned()
                .collect(),
            Job::Maintain => Vec::new(),
        };
        let watch = Arc::new(Watch::new(&run_id, planned));
        let run = Running {
            run_id,
            select: select.map(str::to_string),
            exclude: exclude.map(str::to_string),
            full_refresh,
            started_by: by.to_string(),
            started_at: Utc::now(),
        };
        {
            // This process's slot first (no await while the lock is held), then the lease.
            let mut slot = self
                .running
                .lock()
                .map_err(|_| LaunchError::Selection(EngineError::Auth("lock poisoned".into())))?;
            if let Some(s) = slot.as_ref() {
                return Err(LaunchError::Busy(s.run.clone()));
            }
            *slot = Some(Slot {
                run: run.clone(),
                watch: Arc::clone(&watch),
            });
        }
        let lease = match &self.lease {
            None => None,
            Some(l) => {
                let taken = l.store.acquire(&l.holder, &run.run_id, l.ttl).await;
                match taken {
                    Ok(Ok(lease)) => {
                        metrics::gauge!("assay_run_lease_held", "holder" => l.holder.clone())
                            .set(1.0);
                        Some(lease)
                    }
                    Ok(Err(holder)) => {
                        self.clear();
                        return Err(LaunchError::BusyElsewhere(holder));
                    }
                    Err(e) => {
                        self.clear();
                        return Err(LaunchError::Lease(e));
                    }
                }
            }
        };
        let this = self.clone();
        let run_id = run.run_id.clone();
        let by = by.to_string();
        tokio::spawn(async move {
            let outcome = match (lease, &this.lease) {
                (Some(mut lease), Some(l)) => {
                    let run = this.execute(&run_id, selection, job, &by, watch);
                    tokio::pin!(run);
                    let outcome = loop {
                        tokio::select! {
                            outcome = &mut run => break outcome,
                            () = tokio::time::sleep(l.ttl / 3) => {
                                match l.store.renew(&mut lease, l.ttl).await {
                                    Ok(true) => {}
                                    Ok(false) => tracing::error!(run_id = %run_id, "the run lease lapsed and another server took it"),
                                    Err(e) => tracing::warn!(run_id = %run_id, error = %e, "cannot renew the run lease"),
                                }
                            }
                        }
                    };
                    if let Err(e) = l.store.release(lease).await {
                        tracing::warn!(run_id = %run_id, error = %e, "cannot release the run lease; it lapses by itself");
                    }
                    metrics::gauge!("assay_run_lease_held", "holder" => l.holder.clone()).set(0.0);
                    outcome
                }
                _ => this.execute(&run_id, selection, job, &by, watch).await,
            };
            if let Err(e) = outcome {
                tracing::error!(run_id = %run_id, error = %e, "run failed to start or record");
            }
            this.clear();
        });
        Ok(run)
    }

    /// Maintains the selected tables (all of the lake when `None`).
    async fn maintain(
        &self,
        run_id: &str,
        selection: Option<std::collections::BTreeSet<TableId>>,
    ) -> crate::Result<()> {
        tracing::info!(run_id, "maintenance started");
        let tables = crate::lifecycle::selected(
            crate::lifecycle::all_tables(&self.lake).await?,
            selection.as_ref(),
        );
        for line in
            crate::lifecycle::maintain_tables(&self.lake, &self.maintenance, &tables, true).await
        {
            tracing::info!(run_id, "{line}");
        }
        tracing::info!(run_id, "maintenance finished");
        Ok(())
    }

    /// Frees this launcher's slot.
    fn clear(&self) {
        if let Ok(mut slot) = self.running.lock() {
            *slot = None;
        }
    }

    async fn execute(
        &self,
        run_id: &str,
        selection: Option<std::collections::BTreeSet<TableId>>,
        job: Job,
        by: &str,
        watch: Arc<Watch>,
    ) -> crate::Result<()> {
        let full_refresh = match job {
            Job::Run { full_refresh } => full_refresh,
            Job::Maintain => {
                let span = tracing::info_span!("maintain", run_id, user = by);
                return self.maintain(run_id, selection).instrument(span).await;
            }
        };
        let span = tracing::info_span!("run", run_id, user = by, full_refresh);
        self.execute_in_span(run_id, selection, full_refresh, by, watch)
            .instrument(span)
            .await
    }

    async fn execute_in_span(
        &self,
        run_id: &str,
        selection: Option<std::collections::BTreeSet<TableId>>,
        full_refresh: bool,
        by: &str,
        watch: Arc<Watch>,
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
        let pulse = match history::begin(&self.lake, run_id, Utc::now()).await {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(run_id, error = %e, "cannot record the run as running; its end is recorded all the same");
                None
            }
        };
        let summary =
            runner::run(&self.pipeline, selection.as_ref(), &self.config, ctx, watch).await;
        tracing::info!(run_id, succeeded = summary.succeeded(), "run finished");
        let recorded = history::record(&self.lake, &summary).await;
        if let Some(p) = pulse {
            p.stop().await;
        }
        if let Some(alerter) = &self.alerter {
            alerter.notify(&summary, by);
        }
        for line in crate::lifecycle::after_run(&self.lake, &self.maintenance, &summary).await {
            tracing::info!(run_id, "{line}");
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
            launcher.start(Some("gold.nope"), false, "ana").await,
            Err(LaunchError::Selection(_))
        ));
        assert!(
            launcher.running().is_none(),
            "a bad selection starts nothing"
        );
        let run = launcher
            .start(Some("gold.slow"), false, "ana")
            .await
            .unwrap();
        assert_eq!(launcher.running().as_ref(), Some(&run));
        match launcher.start(None, false, "bo").await {
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
            Some(1),
            "the run is recorded in _system.runs: running at its start, then its end"
        );
        // Finished: the next run may start.
        gate.notify_one();
        assert!(launcher.start(None, false, "bo").await.is_ok());
    }
}
