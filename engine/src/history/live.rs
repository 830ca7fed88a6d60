//! A run in progress: its `running` row in `_system.runs`, its heartbeat under
//! `<root>/_scheduler/live/`, and the runs it finds abandoned.
//!
//! Every run writes a heartbeat before its `running` row and deletes it only after its end
//! is recorded, so a `running` row without a live heartbeat belongs to a process that died.

use std::time::Duration;

use chrono::{DateTime, Utc};
use datafusion::prelude::SessionContext;

use super::{RunRow, batch_of, runs_table};
use crate::delta::{CommitInfo, Merge, WriteMode, write_frame};
use crate::error::{EngineError, Result};
use crate::scheduler::{Heartbeat, ScheduleStore, host_name};
use crate::storage::Lake;

/// How long a heartbeat lasts unless renewed (renewed every third of it): a run whose
/// process died on another host shows as `running` this long before the next run marks it
/// `abandoned`. On the same host a dead process is noticed at once.
pub const HEARTBEAT_TTL: Duration = Duration::from_secs(30);

/// A run's heartbeat, renewed in the background until [`Pulse::stop`].
#[derive(Debug)]
pub struct Pulse {
    run_id: String,
    store: ScheduleStore,
    task: tokio::task::JoinHandle<()>,
}

impl Pulse {
    /// Stops the heartbeat and deletes it; call after the run's end is recorded.
    pub async fn stop(self) {
        self.task.abort();
        if let Err(e) = self.store.forget_heartbeat(&self.run_id).await {
            tracing::warn!(run_id = %self.run_id, error = %e, "cannot delete the run's heartbeat; it lapses by itself");
        }
    }
}

impl Drop for Pulse {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn heartbeat(run_id: &str, started_at: DateTime<Utc>, ttl: Duration) -> Heartbeat {
    let at = Utc::now();
    Heartbeat {
        run_id: run_id.to_string(),
        started_at,
        host: host_name(),
        pid: std::process::id(),
        at,
        expires_at: at + ttl,
    }
}

/// Records `run_id` as `running` in `_system.runs` and starts its heartbeat; in the same
/// commit, marks `abandoned` every other `running` run whose process is gone.
///
/// # Errors
/// The heartbeat or the commit failed (the run may still go ahead; its end is recorded
/// all the same).
pub async fn begin(lake: &Lake, run_id: &str, started_at: DateTime<Utc>) -> Result<Pulse> {
    begin_with(lake, run_id, started_at, HEARTBEAT_TTL).await
}

pub(crate) async fn begin_with(
    lake: &Lake,
    run_id: &str,
    started_at: DateTime<Utc>,
    ttl: Duration,
) -> Result<Pulse> {
    let store = ScheduleStore::new(lake)?;
    store.beat(&heartbeat(run_id, started_at, ttl)).await?;
    let task = {
        let store = store.clone();
        let run_id = run_id.to_string();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(ttl / 3).await;
                if let Err(e) = store.beat(&heartbeat(&run_id, started_at, ttl)).await {
                    tracing::warn!(run_id = %run_id, error = %e, "cannot renew the run's heartbeat");
                }
            }
        })
    };
    let pulse = Pulse {
        run_id: run_id.to_string(),
        store: store.clone(),
        task,
    };
    let abandoned = abandoned(&store, run_id).await?;
    let id = runs_table();
    let info = CommitInfo::new(Vec::new(), run_id);
    let mut rows = abandoned.clone();
    rows.push(RunRow::running(run_id, started_at));
    let ctx = SessionContext::new();
    let source = ctx
        .read_batch(batch_of(&rows)?)
        .map_err(|e| EngineError::query(&id, e))?;
    let target = if abandoned.is_empty() {
        None
    } else {
        lake.open(&id).await?
    };
    match target {
        Some(target) => {
            // A run that recorded its end meanwhile keeps its row: only `running` rows change.
            let keys = ["run_id".to_string(), "kind".to_string()];
            Merge::new(&id, target, source, &keys)
                .update_when("t.\"status\" = 'running'")
                .commit(&info)
                .await?;
        }
        None => {
            write_frame(lake, &id, source, WriteMode::Append, &[], &info).await?;
        }
    }
    for row in &abandoned {
        tracing::warn!(run_id = %row.run_id, found_by = run_id, "run marked abandoned");
        metrics::counter!("assay_runs_total", "status" => "abandoned").increment(1);
        if let Err(e) = store.forget_heartbeat(&row.run_id).await {
            tracing::warn!(run_id = %row.run_id, error = %e, "cannot delete a dead run's heartbeat");
        }
    }
    Ok(pulse)
}

/// The runs other than `own` whose heartbeat lapsed or whose process on this host is gone,
/// as `abandoned` rows. (A run writes its heartbeat before its `running` row and deletes it
/// after its end, so the heartbeats are the runs that may still be `running`; one whose row
/// already ended keeps that row, see the MERGE.)
async fn abandoned(store: &ScheduleStore, own: &str) -> Result<Vec<RunRow>> {
    let now = Utc::now();
    let here = host_name();
    let mut found = Vec::new();
    for b in store.heartbeats().await? {
        let dead = b.expires_at <= now || (b.host == here && !alive(b.pid));
        if b.run_id == own || !dead {
            continue;
        }
        found.push(RunRow {
            status: "abandoned".into(),
            ended_at: b.at.max(b.started_at),
            error: Some(format!(
                "abandoned: the process running it ({} pid {}) stopped before recording its end; found by run {own}",
                b.host, b.pid
            )),
            ..RunRow::running(&b.run_id, b.started_at)
        });
    }
    Ok(found)
}

/// Whether process `pid` of this host still runs (a zombie does not). Without `/proc`, a
/// process is taken as alive and its heartbeat decides.
fn alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    let proc = std::path::Path::new("/proc");
    if !proc.is_dir() {
        return true;
    }
    match std::fs::read_to_string(proc.join(pid.to_string()).join("stat")) {
        // The state follows the command name in parentheses: `pid (comm) S ...`.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| !matches!(state, 'Z' | 'X')),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests;
