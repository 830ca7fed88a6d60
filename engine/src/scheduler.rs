//! The scheduler of `assay serve`: starts a run of each `[[schedule]]` on its cron ticks.
//!
//! Replicas serving one lake share the schedules through the lake, under
//! `<root>/_scheduler/` (outside the served namespace):
//! - `ticks/<schedule>/<tick>.json`: the claim of one tick, written with a conditional
//!   create (the primitive Delta commits use, on local disk, S3 and Azure alike). The
//!   replica whose create succeeds runs the tick; the others see it exists and do nothing,
//!   so each tick runs once however many replicas serve.
//! - `last/<schedule>.json`: what the last claimed tick did (the run it started, or why it
//!   started none).
//! - `state/<schedule>.json`: whether an admin paused the schedule.
//!
//! Ticks missed while no replica ran (the newest claim is older than the last due tick) are
//! run once (`catch_up = "once"`) or not at all (`"skip"`), never once per missed tick.

mod store;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use store::{Heartbeat, Lease, LeaseRecord, PauseState, ScheduleStore};

use crate::config::{CatchUp, ScheduleConfig};
use crate::error::Result;
use crate::launcher::{LaunchError, Launcher};

/// The namespace of the scheduler's objects, beside the layers.
pub const SCHEDULER_DIR: &str = "_scheduler";

/// A tick later than this after its time was missed (no replica ran it on time).
const ON_TIME: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// Ticks walked at most to find the newest due one after a long stop.
const MAX_WALK: usize = 1_000_000;

/// What one tick of a schedule did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TickOutcome {
    /// A run started.
    Started,
    /// Another run was still in progress, so this tick started none.
    SkippedOverlap,
    /// The schedule was paused.
    Paused,
    /// The run could not start (the error says why).
    Failed,
}

/// One claimed tick and what it did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TickRecord {
    /// The schedule.
    pub schedule: String,
    /// The tick's time.
    pub tick: DateTime<Utc>,
    /// When the tick was claimed.
    pub claimed_at: DateTime<Utc>,
    /// The server process that claimed it.
    pub claimed_by: String,
    /// Whether this tick was run late for ticks missed while no server ran.
    pub catch_up: bool,
    /// What it did.
    pub outcome: TickOutcome,
    /// The run it started, or the run in progress it skipped for.
    pub run_id: Option<String>,
    /// Why no run started, when none did.
    pub error: Option<String>,
}

/// The newest tick of `s` at or before `now` after `after`, and whether it was missed
/// (more than a minute old).
fn due(
    s: &ScheduleConfig,
    after: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<(DateTime<Utc>, bool)> {
    // After a long stop, start the forward walk just before the newest tick a backward
    // search finds, not at `after` (a per-second schedule down for a day is 86,400 ticks);
    // the forward search decides, so DST gaps and repeats count as they do for `next_after`.
    let mut at = s
        .previous_at_or_before(now)
        .map(|p| p - chrono::TimeDelta::seconds(1))
        .filter(|p| *p > after)
        .unwrap_or(after);
    let mut newest = None;
    for _ in 0..MAX_WALK {
        match s.next_after(at) {
            Some(t) if t <= now => {
                newest = Some(t);
                at = t;
            }
            _ => break,
        }
    }
    newest.map(|t| (t, now - t > ON_TIME))
}

/// A name for this server process in tick claims and leases: host, process id and a
/// UUID (unique even when a process id is reused).
pub fn instance_name() -> String {
    format!(
        "{}:{}:{}",
        host_name(),
        std::process::id(),
        uuid::Uuid::now_v7()
    )
}

/// This machine's host name (`HOSTNAME`, else the kernel's), `localhost` when unknown.
pub fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "localhost".into())
}

/// How long a run's lease lasts unless renewed (renewed every third of it): a server killed
/// mid-run holds back the other servers' runs this long at most.
pub const LEASE_TTL: Duration = Duration::from_secs(30);

/// Runs the project's schedules through a launcher.
#[derive(Debug, Clone)]
pub struct Scheduler {
    schedules: Vec<ScheduleConfig>,
    launcher: Launcher,
    store: ScheduleStore,
    instance: String,
}

impl Scheduler {
    /// A scheduler of `schedules` starting runs with `launcher`, sharing ticks with other
    /// processes through `store`.
    pub fn new(
        schedules: Vec<ScheduleConfig>,
        launcher: Launcher,
        store: ScheduleStore,
        instance: String,
    ) -> Self {
        Scheduler {
            schedules,
            launcher,
            store,
            instance,
        }
    }

    /// This process's name in tick claims.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Fires the schedules on their ticks until `stop` resolves.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) {
        if self.schedules.is_empty() {
            return;
        }
        tokio::pin!(stop);
        // The newest tick considered per schedule: the newest claim in the lake (so a
        // restart sees the ticks it missed), or now for a schedule never claimed.
        let mut cursor: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
        for s in &self.schedules {
            let newest = match self.store.newest_claim(&s.name).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!(schedule = %s.name, error = %e, "cannot read the schedule's claims");
                    None
                }
            };
            cursor.insert(s.name.clone(), newest.unwrap_or_else(Utc::now));
        }
        loop {
            let now = Utc::now();
            self.fire_due(&mut cursor, now).await;
            let next = self
                .schedules
                .iter()
                .filter_map(|s| s.next_after(cursor[&s.name]))
                .min();
            for s in &self.schedules {
                if let Some(t) = s.next_after(cursor[&s.name]) {
                    metrics::gauge!("assay_schedule_next_fire_timestamp_seconds", "schedule" => s.name.clone())
                        .set(t.timestamp() as f64);
                }
            }
            let Some(next) = next else {
                tracing::info!("no schedule fires again");
                return;
            };
            let wait = (next - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Fires every schedule with a tick due at `now`, moving its cursor past it.
    async fn fire_due(&self, cursor: &mut BTreeMap<String, DateTime<Utc>>, now: DateTime<Utc>) {
        for s in &self.schedules {
            let Some(after) = cursor.get(&s.name).copied() else {
                continue;
            };
            let Some((tick, missed)) = due(s, after, now) else {
                continue;
            };
            cursor.insert(s.name.clone(), tick);
            if missed && s.catch_up == CatchUp::Skip {
                tracing::info!(schedule = %s.name, %tick, "missed ticks skipped (catch_up = skip)");
                continue;
            }
            if let Err(e) = self.fire(s, tick, missed).await {
                tracing::error!(schedule = %s.name, %tick, error = %e, "schedule tick failed");
            }
        }
    }

    /// Claims one tick and, when this process won it, starts its run.
    ///
    /// # Errors
    /// The store failed.
    pub async fn fire(
        &self,
        s: &ScheduleConfig,
        tick: DateTime<Utc>,
        catch_up: bool,
    ) -> Result<Option<TickRecord>> {
        let paused = self.store.pause_state(&s.name).await?.paused;
        let mut record = TickRecord {
            schedule: s.name.clone(),
            tick,
            claimed_at: Utc::now(),
            claimed_by: self.instance.clone(),
            catch_up,
            outcome: if paused {
                TickOutcome::Paused
            } else {
                TickOutcome::Started
            },
            run_id: None,
            error: None,
        };
        if !self.store.claim(&record).await? {
            tracing::debug!(schedule = %s.name, %tick, "tick claimed by another server");
            return Ok(None);
        }
        if !paused {
            let by = format!("schedule:{}", s.name);
            let job = match s.task {
                crate::config::Task::Run => crate::launcher::Job::Run {
                    full_refresh: s.full_refresh,
                },
                crate::config::Task::Maintain => crate::launcher::Job::Maintain,
            };
            match self
                .launcher
                .start_job(s.select.as_deref(), s.exclude.as_deref(), job, &by)
                .await
            {
                Ok(run) => record.run_id = Some(run.run_id),
                Err(LaunchError::Busy(other)) => {
                    record.outcome = TickOutcome::SkippedOverlap;
                    record.error = Some(format!("run {} is still in progress", other.run_id));
                    record.run_id = Some(other.run_id);
                }
                Err(LaunchError::BusyElsewhere(other)) => {
                    record.outcome = TickOutcome::SkippedOverlap;
                    record.error = Some(format!(
                        "run {} is still in progress on {}",
                        other.run_id, other.holder
                    ));
                    record.run_id = Some(other.run_id);
                }
                Err(e) => {
                    record.outcome = TickOutcome::Failed;
                    record.error = Some(e.to_string());
                }
            }
        }
        let lag = (record.claimed_at - tick).as_seconds_f64().max(0.0);
        metrics::histogram!("assay_scheduler_lag_seconds", "schedule" => s.name.clone())
            .record(lag);
        let outcome = serde_json::to_value(&record.outcome)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        metrics::counter!("assay_schedule_ticks_total", "schedule" => s.name.clone(), "outcome" => outcome)
            .increment(1);
        tracing::info!(
            schedule = %s.name,
            %tick,
            lag_seconds = lag,
            outcome = ?record.outcome,
            run_id = record.run_id.as_deref().unwrap_or("-"),
            "schedule fired"
        );
        self.store.set_last(&record).await?;
        Ok(Some(record))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests;
