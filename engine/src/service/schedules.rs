//! Schedules as the servers show them (`GET /schedules`) and pause them (`PATCH`).

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::error::{Result, ServiceError};
use crate::config::ScheduleConfig;
use crate::scheduler::{ScheduleStore, TickRecord};

/// A schedule, its pause state, its next tick and what its last tick did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScheduleInfo {
    /// Name.
    pub name: String,
    /// The cron expression.
    pub cron: String,
    /// The IANA time zone it is read in.
    pub timezone: String,
    /// The steps each run takes (`--select` syntax); the whole DAG when absent.
    pub select: Option<String>,
    /// The steps left out.
    pub exclude: Option<String>,
    /// `run` (the selected steps) or `maintain` (the selected tables' maintenance).
    pub task: String,
    /// Whether each run rebuilds the selected tables from scratch.
    pub full_refresh: bool,
    /// `once` or `skip`.
    pub catch_up: String,
    /// Paused by an admin: ticks start no run.
    pub paused: bool,
    /// Who last paused or resumed it.
    pub paused_by: Option<String>,
    /// When.
    pub paused_at: Option<DateTime<Utc>>,
    /// The next tick (UTC).
    pub next_fire_at: Option<DateTime<Utc>>,
    /// The next tick in the schedule's time zone (RFC 3339 with its offset).
    pub next_fire_local: Option<String>,
    /// What the newest claimed tick did.
    pub last: Option<TickRecord>,
}

/// The project's schedules and their records in the lake.
#[derive(Debug, Clone)]
pub struct Schedules {
    configs: Vec<ScheduleConfig>,
    store: ScheduleStore,
}

fn unreadable(e: crate::EngineError) -> ServiceError {
    ServiceError::unavailable("the schedules' records in the lake are unavailable", e)
}

impl Schedules {
    /// The schedules `configs`, their state kept in `store`.
    pub fn new(configs: Vec<ScheduleConfig>, store: ScheduleStore) -> Self {
        Schedules { configs, store }
    }

    /// Every schedule, in the project's order.
    pub(crate) async fn list(&self) -> Result<Vec<ScheduleInfo>> {
        let mut out = Vec::with_capacity(self.configs.len());
        for s in &self.configs {
            out.push(self.info(s).await?);
        }
        Ok(out)
    }

    fn config(&self, name: &str) -> Result<&ScheduleConfig> {
        self.configs
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| ServiceError::not_found(format!("schedule `{name}` not found")))
    }

    /// Pauses or resumes one schedule for every server of the lake.
    pub(crate) async fn set_paused(
        &self,
        name: &str,
        paused: bool,
        by: &str,
    ) -> Result<ScheduleInfo> {
        let s = self.config(name)?;
        self.store
            .set_paused(name, paused, by)
            .await
            .map_err(unreadable)?;
        tracing::info!(schedule = name, paused, by, "schedule paused or resumed");
        self.info(s).await
    }

    async fn info(&self, s: &ScheduleConfig) -> Result<ScheduleInfo> {
        let state = self.store.pause_state(&s.name).await.map_err(unreadable)?;
        let last = self.store.last(&s.name).await.map_err(unreadable)?;
        let next = s.next_after(Utc::now());
        Ok(ScheduleInfo {
            name: s.name.clone(),
            cron: s.cron.clone(),
            timezone: s.timezone.name().to_string(),
            select: s.select.clone(),
            exclude: s.exclude.clone(),
            task: s.task.as_str().to_string(),
            full_refresh: s.full_refresh,
            catch_up: s.catch_up.as_str().to_string(),
            paused: state.paused,
            paused_by: state.at.is_some().then(|| state.by.clone()),
            paused_at: state.at,
            next_fire_at: next,
            next_fire_local: next.map(|t| t.with_timezone(&s.timezone).to_rfc3339()),
            last,
        })
    }
}
