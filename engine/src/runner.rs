//! Runs a pipeline once: topological order, independent steps in parallel, retries with
//! backoff, a timeout per step; a failed step skips its downstream steps only.

use std::collections::{BTreeSet, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use futures::FutureExt;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::config::RunConfig;
use crate::dag::Pipeline;
use crate::step::{ExpectationOutcome, Step, StepContext, StepReport};
use crate::table::TableId;

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// It committed a new version.
    Succeeded,
    /// It found nothing new and committed nothing.
    UpToDate,
    /// It failed (after retries).
    Failed,
    /// An upstream failed, so it did not run.
    Skipped,
}

impl StepStatus {
    /// The status as stored in `_system.runs`.
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Succeeded => "succeeded",
            StepStatus::UpToDate => "up_to_date",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
        }
    }
}

/// One step's outcome in a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepOutcome {
    /// The table the step writes.
    pub table: TableId,
    /// How it ended.
    pub status: StepStatus,
    /// Start time.
    pub started_at: DateTime<Utc>,
    /// End time.
    pub ended_at: DateTime<Utc>,
    /// Attempts made (1 without retries, 0 when skipped).
    pub attempts: u32,
    /// What the step did (zeros when it failed).
    pub report: StepReport,
    /// The error, when failed or skipped.
    pub error: Option<String>,
}

impl StepOutcome {
    /// An outcome decided without the step's own result (skipped, or its task lost), now.
    fn ended(table: TableId, status: StepStatus, attempts: u32, error: String) -> Self {
        let now = Utc::now();
        StepOutcome {
            table,
            status,
            started_at: now,
            ended_at: now,
            attempts,
            report: StepReport::default(),
            error: Some(error),
        }
    }
}

/// A whole run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunSummary {
    /// Run id (UUID v7, time-ordered).
    pub run_id: String,
    /// Start time.
    pub started_at: DateTime<Utc>,
    /// End time.
    pub ended_at: DateTime<Utc>,
    /// Steps in the order they finished.
    pub steps: Vec<StepOutcome>,
}

impl RunSummary {
    /// True when no step failed.
    pub fn succeeded(&self) -> bool {
        self.steps
            .iter()
            .all(|s| matches!(s.status, StepStatus::Succeeded | StepStatus::UpToDate))
    }

    /// Every expectation outcome of the run.
    pub fn expectations(&self) -> Vec<ExpectationOutcome> {
        self.steps
            .iter()
            .flat_map(|s| s.report.expectations.iter().cloned())
            .collect()
    }
}

/// Told about steps as they start and finish (progress display).
pub trait RunObserver: Send + Sync {
    /// A step started at `at` (the start its outcome will carry).
    fn started(&self, _table: &TableId, _at: DateTime<Utc>) {}
    /// A step finished.
    fn finished(&self, _outcome: &StepOutcome) {}
    /// The meter of a step that just started: rows and bytes written so far.
    fn metering(&self, _table: &TableId, _meter: Arc<crate::progress::Meter>) {}
}

/// An observer that does nothing.
#[derive(Debug, Default)]
pub struct Silent;

impl RunObserver for Silent {}

/// Runs the selected steps of a pipeline (all when `selection` is `None`).
pub async fn run(
    pipeline: &Pipeline,
    selection: Option<&BTreeSet<TableId>>,
    config: &RunConfig,
    ctx: StepContext,
    observer: Arc<dyn RunObserver>,
) -> RunSummary {
    let started_at = Utc::now();
    let steps: Vec<Arc<dyn Step>> = pipeline
        .ordered()
        .filter(|s| selection.is_none_or(|sel| sel.contains(s.table())))
        .cloned()
        .collect();
    let selected: BTreeSet<TableId> = steps.iter().map(|s| s.table().clone()).collect();
    // Upstreams that are part of this run; others are read as they are in the lake.
    let mut waiting: HashMap<TableId, BTreeSet<TableId>> = steps
        .iter()
        .map(|s| {
            let ups = pipeline
                .upstream_steps(s.table())
                .into_iter()
                .filter(|u| selected.contains(u))
                .collect();
            (s.table().clone(), ups)
        })
        .collect();
    let mut pending: Vec<Arc<dyn Step>> = steps;
    let mut outcomes: Vec<StepOutcome> = Vec::new();
    let mut failed: BTreeSet<TableId> = BTreeSet::new();
    let mut tasks: JoinSet<StepOutcome> = JoinSet::new();
    let mut running: HashMap<tokio::task::Id, TableId> = HashMap::new();
    let ctx = Arc::new(ctx);
    let parallelism = config.parallelism.max(1);
    // With `fail_fast`, the first step that failed: no step starts after it.
    let mut first_failure: Option<TableId> = None;

    loop {
        // Skip steps whose upstream failed; start ready steps up to the parallelism.
        let mut i = 0;
        while i < pending.len() {
            let table = pending[i].table().clone();
            let ups = waiting.get(&table).cloned().unwrap_or_default();
            let skip = match (&first_failure, ups.iter().find(|u| failed.contains(*u))) {
                (Some(f), _) => Some(format!("not started: {f} failed (--fail-fast)")),
                (None, Some(bad)) => Some(format!("upstream {bad} failed")),
                (None, None) => None,
            };
            if let Some(reason) = skip {
                let outcome = StepOutcome::ended(table.clone(), StepStatus::Skipped, 0, reason);
                observer.finished(&outcome);
                outcomes.push(outcome);
                failed.insert(table);
                pending.remove(i);
                continue;
            }
            if ups.is_empty() && tasks.len() < parallelism {
                let step = pending.remove(i);
                let started_at = Utc::now();
                observer.started(step.table(), started_at);
                let ctx = Arc::clone(&ctx);
                let config = config.clone();
                // A child of the caller's `run` span (its context when this is polled).
                let span = tracing::info_span!(
                    "step",
                    table = %table,
                    layer = table.layer.as_str(),
                    run_id = %ctx.run_id
                );
                let meter = Arc::new(crate::progress::Meter::default());
                observer.metering(&table, Arc::clone(&meter));
                let run = async move { run_step(step, &ctx, &config, started_at).await };
                let handle = tasks.spawn(crate::progress::metered(meter, run).instrument(span));
                running.insert(handle.id(), table);
                continue;
            }
            i += 1;
        }
        let Some(joined) = tasks.join_next_with_id().await else {
            break;
        };
        let outcome = match joined {
            Ok((id, o)) => {
                running.remove(&id);
                o
            }
            Err(e) => {
                // Steps catch their own panics; this is a task cancelled from outside.
                let Some(table) = running.remove(&e.id()) else {
                    continue;
                };
                tracing::error!(error = %e, table = %table, "step task ended abnormally");
                let error = format!("the step's task ended abnormally: {e}");
                StepOutcome::ended(table, StepStatus::Failed, 1, error)
            }
        };
        observer.finished(&outcome);
        if outcome.status == StepStatus::Failed {
            failed.insert(outcome.table.clone());
            if config.fail_fast && first_failure.is_none() {
                first_failure = Some(outcome.table.clone());
            }
        }
        for ups in waiting.values_mut() {
            if outcome.status != StepStatus::Failed {
                ups.remove(&outcome.table);
            }
        }
        outcomes.push(outcome);
    }
    RunSummary {
        run_id: ctx.run_id.clone(),
        started_at,
        ended_at: Utc::now(),
        steps: outcomes,
    }
}

/// The text a panic was raised with (`panic!("...")` gives a `&str` or a `String`).
fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message")
}

async fn run_step(
    step: Arc<dyn Step>,
    ctx: &StepContext,
    config: &RunConfig,
    started_at: DateTime<Utc>,
) -> StepOutcome {
    let table = step.table().clone();
    let mut attempts = 0;
    let mut backoff = config.retry_backoff_of(&table);
    let retries = config.retries_of(&table);
    let timeout = config.timeout_of(&table);
    let clock = Instant::now();
    let (status, report, error) = loop {
        attempts += 1;
        // The rows a failed attempt wrote were never committed: progress starts over.
        crate::progress::restart();
        let span = tracing::info_span!("attempt", attempt = attempts);
        let attempt = AssertUnwindSafe(step.run(ctx).instrument(span)).catch_unwind();
        let result = tokio::time::timeout(timeout, attempt).await;
        match result {
            Ok(Err(panic)) => {
                // A bug, not bad input: the step fails (its downstream steps are skipped,
                // the run exits non-zero) and the process goes on.
                let msg = format!("the step panicked: {}", panic_message(panic.as_ref()));
                tracing::error!(table = %table, error = %msg, "step panicked");
                break (StepStatus::Failed, StepReport::default(), Some(msg));
            }
            Ok(Ok(Ok(report))) => {
                let status = if report.version.is_some() {
                    StepStatus::Succeeded
                } else {
                    StepStatus::UpToDate
                };
                break (status, report, None);
            }
            Ok(Ok(Err(e))) if e.transient && attempts <= retries => {
                tracing::warn!(attempt = attempts, error = %e, "step failed, retrying");
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2);
            }
            Ok(Ok(Err(e))) => {
                let report = StepReport {
                    expectations: e.expectations.clone(),
                    ..StepReport::default()
                };
                break (StepStatus::Failed, report, Some(e.to_string()));
            }
            Err(_) => {
                let msg = format!("timed out after {}", humantime::format_duration(timeout));
                break (StepStatus::Failed, StepReport::default(), Some(msg));
            }
        }
    };
    tracing::info!(
        status = status.as_str(),
        ms = clock.elapsed().as_millis() as u64,
        "step done"
    );
    StepOutcome {
        table,
        status,
        started_at,
        ended_at: Utc::now(),
        attempts,
        report,
        error,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::session::LakeCatalog;
    use crate::step::{Faults, StepError};
    use crate::storage::Lake;

    /// A step that panics or writes a version, after its upstreams.
    #[derive(Debug)]
    struct Fake {
        table: TableId,
        upstreams: Vec<TableId>,
        panics: bool,
        sleep: Duration,
    }

    #[async_trait::async_trait]
    impl Step for Fake {
        fn table(&self) -> &TableId {
            &self.table
        }
        fn upstreams(&self) -> &[TableId] {
            &self.upstreams
        }
        async fn run(&self, _: &StepContext) -> Result<StepReport, StepError> {
            tokio::time::sleep(self.sleep).await;
            if self.panics {
                panic!("index out of bounds in {}", self.table);
            }
            Ok(StepReport {
                version: Some(0),
                ..StepReport::default()
            })
        }
    }

    fn fake(table: &str, upstreams: &[&str], panics: bool) -> Arc<dyn Step> {
        Arc::new(Fake {
            table: TableId::parse(table).unwrap(),
            upstreams: upstreams
                .iter()
                .map(|u| TableId::parse(u).unwrap())
                .collect(),
            panics,
            sleep: Duration::ZERO,
        })
    }

    async fn context() -> (tempfile::TempDir, StepContext) {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::resolve("lake", dir.path()).unwrap();
        let ctx = StepContext {
            catalog: LakeCatalog::load(lake.clone()).await.unwrap(),
            lake,
            run_id: "r1".into(),
            full_refresh: false,
            faults: Faults::default(),
        };
        (dir, ctx)
    }

    fn outcome(summary: &RunSummary, table: &str) -> (StepStatus, String) {
        let s = summary.steps.iter().find(|s| s.table.to_string() == table);
        let s = s.unwrap_or_else(|| panic!("{table} is not in the summary"));
        (s.status, s.error.clone().unwrap_or_default())
    }

    /// Writes 5 rows, then fails transiently on its first attempt; writes 3 on its second.
    #[derive(Debug)]
    struct Retried(TableId, std::sync::atomic::AtomicU32);

    #[async_trait::async_trait]
    impl Step for Retried {
        fn table(&self) -> &TableId {
            &self.0
        }
        fn upstreams(&self) -> &[TableId] {
            &[]
        }
        async fn run(&self, _: &StepContext) -> Result<StepReport, StepError> {
            if self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                crate::progress::add(5, 50);
                return Err(StepError::transient("connection reset"));
            }
            crate::progress::add(3, 30);
            Ok(StepReport {
                rows_written: 3,
                version: Some(0),
                ..StepReport::default()
            })
        }
    }

    /// Keeps the meter the runner hands out.
    #[derive(Default)]
    struct Meters(std::sync::Mutex<Vec<Arc<crate::progress::Meter>>>);

    impl RunObserver for Meters {
        fn metering(&self, _: &TableId, meter: Arc<crate::progress::Meter>) {
            self.0.lock().unwrap().push(meter);
        }
    }

    #[tokio::test]
    async fn a_retried_step_counts_the_rows_of_its_last_attempt_only() {
        let step = Retried(TableId::parse("bronze.r").unwrap(), Default::default());
        let pipeline = Pipeline::new(vec![Arc::new(step) as Arc<dyn Step>]).unwrap();
        let config = RunConfig {
            retries: 1,
            retry_backoff: Duration::from_millis(1),
            ..RunConfig::default()
        };
        let (_dir, ctx) = context().await;
        let meters = Arc::new(Meters::default());
        let summary = run(&pipeline, None, &config, ctx, Arc::clone(&meters) as _).await;
        assert_eq!(summary.steps[0].attempts, 2);
        let meter = meters.0.lock().unwrap()[0].clone();
        assert_eq!(
            (meter.rows(), meter.bytes()),
            (3, 30),
            "not 8 rows: the failed attempt's 5 are gone"
        );
    }

    #[tokio::test]
    async fn fail_fast_starts_no_step_after_a_failure() {
        let pipeline = Pipeline::new(vec![
            fake("bronze.a", &[], true),
            fake("bronze.b", &[], false),
            fake("silver.b", &["bronze.b"], false),
        ])
        .unwrap();
        let config = RunConfig {
            parallelism: 1,
            fail_fast: true,
            ..RunConfig::default()
        };
        let (_dir, ctx) = context().await;
        let summary = run(&pipeline, None, &config, ctx, Arc::new(Silent)).await;
        assert_eq!(summary.steps.len(), 3, "every step is in the summary");
        assert_eq!(outcome(&summary, "bronze.a").0, StepStatus::Failed);
        for t in ["bronze.b", "silver.b"] {
            assert_eq!(
                outcome(&summary, t),
                (
                    StepStatus::Skipped,
                    "not started: bronze.a failed (--fail-fast)".to_string()
                )
            );
        }

        // Without it, the independent branch runs.
        let (_dir, ctx) = context().await;
        let config = RunConfig {
            parallelism: 1,
            ..RunConfig::default()
        };
        let summary = run(&pipeline, None, &config, ctx, Arc::new(Silent)).await;
        assert_eq!(outcome(&summary, "silver.b").0, StepStatus::Succeeded);
    }

    #[tokio::test]
    async fn an_entry_timeout_overrides_the_run_timeout() {
        let slow = |t: &str| -> Arc<dyn Step> {
            Arc::new(Fake {
                table: TableId::parse(t).unwrap(),
                upstreams: Vec::new(),
                panics: false,
                sleep: Duration::from_millis(300),
            })
        };
        let pipeline = Pipeline::new(vec![slow("bronze.a"), slow("bronze.b")]).unwrap();
        let mut config = RunConfig::default();
        config.steps.insert(
            TableId::parse("bronze.a").unwrap(),
            crate::config::StepOptions {
                timeout: Some(Duration::from_millis(20)),
                ..Default::default()
            },
        );
        let (_dir, ctx) = context().await;
        let summary = run(&pipeline, None, &config, ctx, Arc::new(Silent)).await;
        assert_eq!(
            outcome(&summary, "bronze.a"),
            (StepStatus::Failed, "timed out after 20ms".to_string())
        );
        assert_eq!(outcome(&summary, "bronze.b").0, StepStatus::Succeeded);
    }

    #[tokio::test]
    async fn a_panicking_step_fails_skips_its_downstream_and_fails_the_run() {
        let (_dir, ctx) = context().await;
        let pipeline = Pipeline::new(vec![
            fake("bronze.a", &[], true),
            fake("silver.a", &["bronze.a"], false),
            fake("bronze.b", &[], false),
        ])
        .unwrap();
        let summary = run(
            &pipeline,
            None,
            &RunConfig::default(),
            ctx,
            Arc::new(Silent),
        )
        .await;

        let status = |t: &str| {
            let s = summary.steps.iter().find(|s| s.table.to_string() == t);
            s.map(|s| (s.status, s.error.clone().unwrap_or_default()))
        };
        assert_eq!(summary.steps.len(), 3, "every step is in the summary");
        let (a, error) = status("bronze.a").unwrap();
        assert_eq!(a, StepStatus::Failed);
        assert!(
            error.contains("the step panicked: index out of bounds in bronze.a"),
            "{error}"
        );
        assert_eq!(
            status("silver.a").unwrap(),
            (StepStatus::Skipped, "upstream bronze.a failed".to_string())
        );
        assert_eq!(status("bronze.b").unwrap().0, StepStatus::Succeeded);
        assert!(!summary.succeeded(), "the run fails");
    }
}
