//! What a server-started run has done so far, step by step, for `GET /runs/{id}` while it
//! runs: the steps that finished (as they will be recorded), the steps running with the rows
//! their writers have taken so far, and the steps not started yet.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use crate::history::RunRow;
use crate::progress::Meter;
use crate::runner::{RunObserver, StepOutcome};
use crate::table::TableId;

/// One step of the run as far as it got.
#[derive(Debug)]
struct Live {
    table: TableId,
    started_at: DateTime<Utc>,
    meter: Option<Arc<Meter>>,
    outcome: Option<StepOutcome>,
}

/// A run in progress, seen through the runner's observer; also logs each step (a server has
/// no terminal to draw progress on).
#[derive(Debug)]
pub(super) struct Watch {
    run_id: String,
    /// The selected steps in run order.
    planned: Vec<TableId>,
    steps: Mutex<Vec<Live>>,
}

/// A run in progress as far as it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Steps started, in the order they started: finished ones as `_system.runs` will record
    /// them; running ones `running`, with the rows written so far and `ended_at` now.
    pub steps: Vec<RunRow>,
    /// Steps not started yet, in run order.
    pub pending: Vec<TableId>,
}

impl Watch {
    /// A watch of run `run_id` of the `planned` steps (in run order).
    pub(super) fn new(run_id: &str, planned: Vec<TableId>) -> Self {
        Watch {
            run_id: run_id.to_string(),
            planned,
            steps: Mutex::new(Vec::new()),
        }
    }

    /// The run as far as it got, now.
    pub(super) fn progress(&self) -> Progress {
        let now = Utc::now();
        let Ok(steps) = self.steps.lock() else {
            return Progress {
                steps: Vec::new(),
                pending: self.planned.clone(),
            };
        };
        let rows = steps
            .iter()
            .map(|l| match &l.outcome {
                Some(o) => RunRow::step(&self.run_id, o),
                None => RunRow {
                    kind: "step",
                    step: Some(l.table.to_string()),
                    layer: Some(l.table.layer.as_str().to_string()),
                    rows_written: l.meter.as_ref().map_or(0, |m| m.rows() as i64),
                    ended_at: now.max(l.started_at),
                    ..RunRow::running(&self.run_id, l.started_at)
                },
            })
            .collect();
        let pending = self
            .planned
            .iter()
            .filter(|t| !steps.iter().any(|l| &l.table == *t))
            .cloned()
            .collect();
        Progress {
            steps: rows,
            pending,
        }
    }

    fn with_step(&self, table: &TableId, f: impl FnOnce(&mut Live)) {
        let Ok(mut steps) = self.steps.lock() else {
            return;
        };
        if let Some(l) = steps.iter_mut().find(|l| &l.table == table) {
            f(l);
        } else {
            let mut l = Live {
                table: table.clone(),
                started_at: Utc::now(),
                meter: None,
                outcome: None,
            };
            f(&mut l);
            steps.push(l);
        }
    }
}

impl RunObserver for Watch {
    fn started(&self, table: &TableId, at: DateTime<Utc>) {
        tracing::info!(step = %table, "step started");
        self.with_step(table, |l| l.started_at = at);
    }

    fn metering(&self, table: &TableId, meter: Arc<Meter>) {
        self.with_step(table, |l| l.meter = Some(meter));
    }

    fn finished(&self, o: &StepOutcome) {
        tracing::info!(
            step = %o.table,
            status = o.status.as_str(),
            rows_written = o.report.rows_written,
            "step finished"
        );
        // A skipped step never started: it is recorded from its outcome alone.
        self.with_step(&o.table, |l| {
            l.started_at = o.started_at;
            l.outcome = Some(o.clone());
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::StepStatus;
    use crate::step::StepReport;

    fn id(s: &str) -> TableId {
        TableId::parse(s).unwrap()
    }

    #[tokio::test]
    async fn steps_show_as_finished_running_or_pending() {
        let (a, b, c) = (id("bronze.a"), id("silver.b"), id("gold.c"));
        let w = Watch::new("r1", vec![a.clone(), b.clone(), c.clone()]);
        assert_eq!(w.progress().steps, Vec::new());
        assert_eq!(w.progress().pending, vec![a.clone(), b.clone(), c.clone()]);

        w.started(&a, Utc::now());
        let meter = Arc::new(Meter::default());
        w.metering(&a, Arc::clone(&meter));
        crate::progress::metered(meter, async { crate::progress::add(4, 40) }).await;
        let p = w.progress();
        assert_eq!(p.steps.len(), 1);
        assert_eq!(
            (
                p.steps[0].status.as_str(),
                p.steps[0].kind,
                p.steps[0].rows_written
            ),
            ("running", "step", 4),
            "a running step shows the rows its writers took so far"
        );
        assert_eq!(p.steps[0].step.as_deref(), Some("bronze.a"));
        assert_eq!(p.pending, vec![b.clone(), c.clone()]);

        let started_at = p.steps[0].started_at;
        let outcome = StepOutcome {
            table: a.clone(),
            status: StepStatus::Succeeded,
            started_at,
            ended_at: started_at + chrono::Duration::milliseconds(5),
            attempts: 1,
            report: StepReport {
                rows_written: 7,
                version: Some(0),
                ..StepReport::default()
            },
            error: None,
        };
        w.finished(&outcome);
        w.started(&b, Utc::now());
        let p = w.progress();
        assert_eq!(
            p.steps[0],
            RunRow::step("r1", &outcome),
            "as it will be recorded"
        );
        assert_eq!(p.steps[1].status, "running");
        assert!(p.steps[1].ended_at >= p.steps[1].started_at);
        assert_eq!(p.pending, vec![c]);
    }
}
