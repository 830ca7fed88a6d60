//! `[[alert]]` webhooks: after a run, a JSON body POSTed to each alert whose events match,
//! in the background, with retries and backoff.
//!
//! Delivery never holds up a run or a schedule: [`Alerter::notify`] puts the alert on a
//! bounded queue (full: the alert is dropped with a warning) and one task per process sends
//! them, each with its timeout, retrying connection errors, timeouts, 429 and 5xx with
//! exponential backoff and jitter (honouring `Retry-After`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::config::{AlertConfig, AlertEvent};
use crate::runner::{RunSummary, StepStatus};

/// Alerts waiting to be sent at most; more are dropped with a warning.
pub const QUEUE: usize = 256;

/// A failed step in an alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedStep {
    /// `layer.name`.
    pub table: String,
    /// `failed` or `skipped`.
    pub status: String,
    /// Why.
    pub error: Option<String>,
}

/// A rule that failed rows in an alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedExpectation {
    /// `layer.name`.
    pub table: String,
    /// The rule's name.
    pub rule: String,
    /// What was done with failing rows.
    pub action: String,
    /// Rows that failed it.
    pub failed: u64,
}

/// The JSON body an alert POSTs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertBody {
    /// `failure`, `success` or `expectation_failed`.
    pub event: String,
    /// The alert's name.
    pub alert: String,
    /// The project.
    pub project: String,
    /// The run (`GET /api/v1/runs/{run_id}`).
    pub run_id: String,
    /// The schedule that started it, if one did.
    pub schedule: Option<String>,
    /// Who started it: `cli`, a user name or `schedule:<name>`.
    pub started_by: String,
    /// `succeeded` or `failed`.
    pub status: String,
    /// Start.
    pub started_at: DateTime<Utc>,
    /// End.
    pub ended_at: DateTime<Utc>,
    /// Steps that failed or were skipped.
    pub failed_steps: Vec<FailedStep>,
    /// Rules with failing rows.
    pub failed_expectations: Vec<FailedExpectation>,
}

/// The events a run raises.
fn events(summary: &RunSummary) -> Vec<AlertEvent> {
    let mut out = vec![if summary.succeeded() {
        AlertEvent::Success
    } else {
        AlertEvent::Failure
    }];
    if summary.expectations().iter().any(|e| e.failed > 0) {
        out.push(AlertEvent::ExpectationFailed);
    }
    out
}

/// The bodies `alerts` send for a run, one per alert and matching event.
pub fn bodies(
    alerts: &[AlertConfig],
    project: &str,
    summary: &RunSummary,
    started_by: &str,
) -> Vec<(AlertConfig, AlertBody)> {
    let raised = events(summary);
    let failed_steps: Vec<FailedStep> = summary
        .steps
        .iter()
        .filter(|s| matches!(s.status, StepStatus::Failed | StepStatus::Skipped))
        .map(|s| FailedStep {
            table: s.table.to_string(),
            status: s.status.as_str().to_string(),
            error: s.error.clone(),
        })
        .collect();
    let failed_expectations: Vec<FailedExpectation> = summary
        .expectations()
        .into_iter()
        .filter(|e| e.failed > 0)
        .map(|e| FailedExpectation {
            table: e.table,
            rule: e.rule,
            action: e.action.as_str().to_string(),
            failed: e.failed,
        })
        .collect();
    let mut out = Vec::new();
    for a in alerts {
        for event in raised.iter().filter(|e| a.on.contains(e)) {
            out.push((
                a.clone(),
                AlertBody {
                    event: event.as_str().to_string(),
                    alert: a.name.clone(),
                    project: project.to_string(),
                    run_id: summary.run_id.clone(),
                    schedule: started_by.strip_prefix("schedule:").map(str::to_string),
                    started_by: started_by.to_string(),
                    status: if summary.succeeded() {
                        "succeeded"
                    } else {
                        "failed"
                    }
                    .into(),
                    started_at: summary.started_at,
                    ended_at: summary.ended_at,
                    failed_steps: failed_steps.clone(),
                    failed_expectations: failed_expectations.clone(),
                },
            ));
        }
    }
    out
}

/// Sends alerts in the background for one process.
#[derive(Debug, Clone)]
pub struct Alerter {
    alerts: Vec<AlertConfig>,
    project: String,
    queue: Option<mpsc::Sender<(AlertConfig, AlertBody)>>,
}

/// The sending task of an [`Alerter`]; await [`Delivery::flush`] before a process exits.
#[derive(Debug)]
pub struct Delivery {
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Delivery {
    /// Waits until the alerts queued so far are sent (or given up), at most `within`.
    /// Every [`Alerter`] clone must be dropped first, or this waits the whole `within`.
    pub async fn flush(mut self, within: Duration) {
        if let Some(task) = self.task.take()
            && tokio::time::timeout(within, task).await.is_err()
        {
            tracing::warn!("alerts still unsent after {within:?}; giving up on them");
        }
    }
}

impl Alerter {
    /// An alerter for `alerts` of `project`, with its sending task (must run inside a Tokio
    /// runtime). Without alerts, nothing is spawned.
    pub fn start(alerts: Vec<AlertConfig>, project: &str) -> (Alerter, Delivery) {
        if alerts.is_empty() {
            let none = Alerter {
                alerts,
                project: project.to_string(),
                queue: None,
            };
            return (none, Delivery { task: None });
        }
        let (tx, mut rx) = mpsc::channel::<(AlertConfig, AlertBody)>(QUEUE);
        let task = tokio::spawn(async move {
            let http = reqwest::Client::new();
            while let Some((alert, body)) = rx.recv().await {
                deliver(&http, &alert, &body, &|k| std::env::var(k).ok()).await;
            }
        });
        let alerter = Alerter {
            alerts,
            project: project.to_string(),
            queue: Some(tx),
        };
        (alerter, Delivery { task: Some(task) })
    }

    /// Queues the alerts a finished run raises; never waits.
    pub fn notify(&self, summary: &RunSummary, started_by: &str) {
        let Some(queue) = &self.queue else {
            return;
        };
        for (alert, body) in bodies(&self.alerts, &self.project, summary, started_by) {
            let name = alert.name.clone();
            if queue.try_send((alert, body)).is_err() {
                tracing::warn!(alert = %name, run_id = %summary.run_id, "alert queue full; alert dropped");
            }
        }
    }
}

/// POSTs one alert, retrying as configured; logs the outcome (never the header values).
/// Returns the attempts made and whether one was answered 2xx.
pub async fn deliver(
    http: &reqwest::Client,
    alert: &AlertConfig,
    body: &AlertBody,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> (u32, bool) {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut req = http.post(&alert.url).timeout(alert.timeout).json(body);
        for (name, value) in &alert.headers {
            req = req.header(name, value);
        }
        for (name, var) in &alert.headers_env {
            match env(var) {
                Some(v) => req = req.header(name, v),
                None => {
                    tracing::warn!(alert = %alert.name, header = %name, variable = %var, "alert header variable is not set")
                }
            }
        }
        let (retry, after) = match req.send().await {
            Ok(r) if r.status().is_success() => {
                tracing::info!(alert = %alert.name, run_id = %body.run_id, event = %body.event, attempt, "alert sent");
                return (attempt, true);
            }
            Ok(r) => {
                let status = r.status();
                let after = crate::retry::retry_after(r.headers());
                tracing::warn!(alert = %alert.name, %status, attempt, "alert refused");
                (crate::retry::retryable(status), after)
            }
            Err(e) => {
                // reqwest's error text names the URL, never the headers.
                tracing::warn!(alert = %alert.name, error = %e, attempt, "alert not delivered");
                (true, None)
            }
        };
        if !retry || attempt > alert.retries {
            tracing::error!(alert = %alert.name, run_id = %body.run_id, attempts = attempt, "alert given up");
            return (attempt, false);
        }
        tokio::time::sleep(
            after.unwrap_or_else(|| crate::retry::wait_before(alert.backoff, attempt)),
        )
        .await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests;
