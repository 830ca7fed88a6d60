//! Runs a pipeline once: topological order, independent steps in parallel, retries with
//! backoff, a timeout per step; a failed step skips its downstream steps only.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
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
    /// A step started.
    fn started(&self, _table: &TableId) {}
    /// A step finished.
    fn finished(&self, _outcome: &StepOutcome) {}
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
    let ctx = Arc::new(ctx);
    let parallelism = config.parallelism.max(1);

    loop {
        // Skip steps whose upstream failed; start ready steps up to the parallelism.
        let mut i = 0;
        while i < pending.len() {
            let table = pending[i].table().clone();
            let ups = waiting.get(&table).cloned().unwrap_or_default();
            if let Some(bad) = ups.iter().find(|u| failed.contains(*u)) {
                let now = Utc::now();
                let outcome = StepOutcome {
                    table: table.clone(),
                    status: StepStatus::Skipped,
                    started_at: now,
                    ended_at: now,
                    attempts: 0,
                    report: StepReport::default(),
                    error: Some(format!("upstream {bad} failed")),
                };
                observer.finished(&outcome);
                outcomes.push(outcome);
                failed.insert(table);
                pending.remove(i);
                continue;
            }
            if ups.is_empty() && tasks.len() < parallelism {
                let step = pending.remove(i);
                observer.started(step.table());
                let ctx = Arc::clone(&ctx);
                let config = config.clone();
                tasks.spawn(async move { run_step(step, &ctx, &config).await });
                continue;
            }
            i += 1;
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        let outcome = match joined {
            Ok(o) => o,
            Err(e) => {
                // A panicking step is a bug; it fails the run but not the process.
                tracing::error!(error = %e, "step task ended abnormally");
                continue;
            }
        };
        observer.finished(&outcome);
        if outcome.status == StepStatus::Failed {
            failed.insert(outcome.table.clone());
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

async fn run_step(step: Arc<dyn Step>, ctx: &StepContext, config: &RunConfig) -> StepOutcome {
    let started_at = Utc::now();
    let table = step.table().clone();
    let mut attempts = 0;
    let mut backoff = config.retry_backoff;
    let clock = Instant::now();
    let (status, report, error) = loop {
        attempts += 1;
        let span =
            tracing::info_span!("step", table = %table, run_id = %ctx.run_id, attempt = attempts);
        let result =
            tokio::time::timeout(config.step_timeout, step.run(ctx).instrument(span)).await;
        match result {
            Ok(Ok(report)) => {
                let status = if report.version.is_some() {
                    StepStatus::Succeeded
                } else {
                    StepStatus::UpToDate
                };
                break (status, report, None);
            }
            Ok(Err(e)) if e.transient && attempts <= config.retries => {
                tracing::warn!(attempt = attempts, error = %e, "step failed, retrying");
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2);
            }
            Ok(Err(e)) => {
                let report = StepReport {
                    expectations: e.expectations.clone(),
                    ..StepReport::default()
                };
                break (StepStatus::Failed, report, Some(e.to_string()));
            }
            Err(_) => {
                let msg = format!(
                    "timed out after {}",
                    humantime::format_duration(config.step_timeout)
                );
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
