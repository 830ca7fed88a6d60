//! A run in progress: its `running` row in `_system.runs`, its heartbeat under
//! `<root>/_scheduler/live/`, and the runs it finds abandoned.
//!
//! Every run writes a heartbeat before its `running` row and deletes it only after its end
//! is recorded, so a `running` row without a live heartbeat belongs to a process that died.

use std::time::Duration;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, TimestampMicrosecondType};
use chrono::{DateTime, Utc};
use datafusion::prelude::{SessionContext, col, lit};

use super::{RunRow, batch_of, runs_table};
use crate::delta::{self, CommitInfo, Merge, WriteMode, write_frame};
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

fn heartbeat(run_id: &str, ttl: Duration) -> Heartbeat {
    let at = Utc::now();
    Heartbeat {
        run_id: run_id.to_string(),
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
    store.beat(&heartbeat(run_id, ttl)).await?;
    let task = {
        let store = store.clone();
        let run_id = run_id.to_string();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(ttl / 3).await;
                if let Err(e) = store.beat(&heartbeat(&run_id, ttl)).await {
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
    let abandoned = abandoned(lake, &store, run_id).await?;
    let id = runs_table();
    let info = CommitInfo::new(Vec::new(), run_id);
    let mut rows = abandoned.clone();
    rows.push(RunRow::running(run_id, started_at));
    let ctx = SessionContext::new();
    let source = ctx
        .read_batch(batch_of(&rows)?)
        .map_err(|e| EngineError::query(&id, e))?;
    match lake.open(&id).await? {
        Some(target) if !abandoned.is_empty() => {
            // A run that recorded its end meanwhile keeps its row: only `running` rows change.
            let keys = ["run_id".to_string(), "kind".to_string()];
            Merge::new(&id, target, source, &keys)
                .update_when("t.\"status\" = 'running'")
                .commit(&info)
                .await?;
        }
        _ => {
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

/// The `running` runs other than `own` whose process is gone, as `abandoned` rows.
async fn abandoned(lake: &Lake, store: &ScheduleStore, own: &str) -> Result<Vec<RunRow>> {
    let id = runs_table();
    let Some(table) = lake.open(&id).await? else {
        return Ok(Vec::new());
    };
    let ctx = SessionContext::new();
    let query = |e| EngineError::query(&id, e);
    let batches = delta::scan(&id, &table, &ctx, None)
        .await?
        .filter(
            col("kind")
                .eq(lit("run"))
                .and(col("status").eq(lit("running"))),
        )
        .and_then(|df| df.select_columns(&["run_id", "started_at"]))
        .map_err(query)?
        .collect()
        .await
        .map_err(query)?;
    let mut found = Vec::new();
    let now = Utc::now();
    for batch in &batches {
        let cast = |i: usize, to: &DataType| {
            arrow::compute::cast(batch.column(i), to).map_err(|e| query(e.into()))
        };
        let ids = cast(0, &DataType::Utf8)?;
        let ids = ids.as_string::<i32>();
        let starts = cast(1, &super::ts())?;
        let starts = starts.as_primitive::<TimestampMicrosecondType>();
        for i in 0..batch.num_rows() {
            let run_id = ids.value(i);
            if run_id == own || starts.is_null(i) {
                continue;
            }
            let started = DateTime::from_timestamp_micros(starts.value(i)).unwrap_or(now);
            let beat = store.heartbeat(run_id).await?;
            let dead = match &beat {
                None => true,
                Some(b) => b.expires_at <= now || (b.host == host_name() && !alive(b.pid)),
            };
            if !dead {
                continue;
            }
            let (ended, by) = match &beat {
                Some(b) => (b.at.max(started), format!("{} pid {}", b.host, b.pid)),
                None => (now, "unknown".to_string()),
            };
            found.push(RunRow {
                status: "abandoned".into(),
                ended_at: ended,
                error: Some(format!(
                    "abandoned: the process running it ({by}) stopped before recording its end; found by run {own}"
                )),
                ..RunRow::running(run_id, started)
            });
        }
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
