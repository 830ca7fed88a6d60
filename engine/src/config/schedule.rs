//! `[[schedule]]` entries and the per-entry run options (`tags`, `retries`, `retry_backoff`,
//! `timeout`) of bronze, silver and gold entries.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use serde::{Deserialize, Serialize};

use super::Validator;
use super::raw::{RawSchedule, RawStepOptions};
use crate::error::Result;

/// What a schedule does about ticks that passed while no server ran it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// One run for all the missed ticks together, at once (default).
    #[default]
    Once,
    /// No run for missed ticks: the next run is the next tick.
    Skip,
}

impl CatchUp {
    /// The name as written in the project file.
    pub fn as_str(self) -> &'static str {
        match self {
            CatchUp::Once => "once",
            CatchUp::Skip => "skip",
        }
    }
}

/// What a schedule's tick does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// Runs the selected steps (default).
    #[default]
    Run,
    /// Maintains the selected tables: their settings, compaction past `small_files`, and a
    /// vacuum with their `vacuum_retain` (see `[maintenance]`).
    Maintain,
}

impl Task {
    /// The name as written in the project file.
    pub fn as_str(self) -> &'static str {
        match self {
            Task::Run => "run",
            Task::Maintain => "maintain",
        }
    }
}

/// A validated `[[schedule]]` entry.
#[derive(Debug, Clone)]
pub struct ScheduleConfig {
    /// Unique name.
    pub name: String,
    /// The cron expression as written (5 fields, or 6 with seconds first).
    pub cron: String,
    /// The IANA time zone the expression is read in (default `UTC`).
    pub timezone: chrono_tz::Tz,
    /// Steps to run, in the `--select` syntax (the whole DAG when unset).
    pub select: Option<String>,
    /// Steps left out, in the `--select` syntax.
    pub exclude: Option<String>,
    /// Whether each run rebuilds the selected tables from scratch.
    pub full_refresh: bool,
    /// Whether a tick runs the steps or maintains the tables.
    pub task: Task,
    /// What to do about missed ticks.
    pub catch_up: CatchUp,
    /// Line of the entry's `name` in the project file (for errors found later).
    pub line: usize,
    pattern: Cron,
}

impl ScheduleConfig {
    /// The first tick strictly after `t`, or `None` when the expression never fires again.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = t.with_timezone(&self.timezone);
        self.pattern
            .find_next_occurrence(&local, false)
            .ok()
            .map(|n| n.with_timezone(&Utc))
    }

    /// The newest tick at or before `t`, by a backward search.
    pub fn previous_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = t.with_timezone(&self.timezone);
        self.pattern
            .find_previous_occurrence(&local, true)
            .ok()
            .map(|p| p.with_timezone(&Utc))
    }

    /// The next `n` ticks strictly after `t`, in the schedule's time zone.
    pub fn ticks_after(&self, t: DateTime<Utc>, n: usize) -> Vec<DateTime<chrono_tz::Tz>> {
        let mut out = Vec::with_capacity(n);
        let mut at = t;
        while out.len() < n {
            let Some(next) = self.next_after(at) else {
                break;
            };
            out.push(next.with_timezone(&self.timezone));
            at = next;
        }
        out
    }
}

/// Per-entry run options: tags to select by, and overrides of `[run]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepOptions {
    /// Tags the entry can be selected by (`--select tag:x`).
    pub tags: BTreeSet<String>,
    /// Retries after a transient failure; `[run] retries` when unset.
    pub retries: Option<u32>,
    /// Wait before the first retry; `[run] retry_backoff` when unset.
    pub retry_backoff: Option<Duration>,
    /// A step taking longer fails; `[run] step_timeout` when unset.
    pub timeout: Option<Duration>,
}

/// A name of schedules and tags: a-z, 0-9, `_` and `-`, starting with a letter or digit.
fn valid_name(n: &str) -> bool {
    n.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

impl Validator<'_> {
    pub(super) fn step_options(&self, raw: RawStepOptions, key: &str) -> Result<StepOptions> {
        let mut tags = BTreeSet::new();
        for t in raw.tags.get_ref() {
            if !valid_name(t) {
                return Err(self.err(
                    &raw.tags,
                    &format!("{key}.tags"),
                    format!("`{t}` is not a valid tag (use a-z, 0-9, `_` and `-`)"),
                ));
            }
            tags.insert(t.clone());
        }
        let timeout = self.duration(&raw.timeout, &format!("{key}.timeout"))?;
        if let (Some(t), Some(at)) = (timeout, &raw.timeout)
            && t.is_zero()
        {
            return Err(self.err(at, &format!("{key}.timeout"), "must be longer than 0s"));
        }
        Ok(StepOptions {
            tags,
            retries: raw.retries,
            retry_backoff: self.duration(&raw.retry_backoff, &format!("{key}.retry_backoff"))?,
            timeout,
        })
    }

    pub(super) fn schedules(&self, raw: Vec<RawSchedule>) -> Result<Vec<ScheduleConfig>> {
        let parser = CronParser::builder().seconds(Seconds::Optional).build();
        let mut seen = BTreeSet::new();
        let mut out = Vec::with_capacity(raw.len());
        for s in raw {
            let name = s.name.get_ref();
            if !valid_name(name) {
                return Err(self.err(
                    &s.name,
                    "schedule.name",
                    format!("`{name}` is not a valid schedule name (use a-z, 0-9, `_` and `-`)"),
                ));
            }
            if !seen.insert(name.clone()) {
                return Err(self.err(
                    &s.name,
                    "schedule.name",
                    format!("schedule `{name}` is defined twice"),
                ));
            }
            let cron = s.cron.get_ref().trim();
            let fields = cron.split_whitespace().count();
            if !cron.starts_with('@') && !(5..=6).contains(&fields) {
                return Err(self.err(
                    &s.cron,
                    "schedule.cron",
                    format!(
                        "`{cron}` has {fields} fields; a cron expression has 5 (minute hour \
                         day-of-month month day-of-week) or 6 (seconds first)"
                    ),
                ));
            }
            let pattern = parser
                .parse(cron)
                .map_err(|e| self.err(&s.cron, "schedule.cron", format!("`{cron}`: {e}")))?;
            let timezone = match &s.timezone {
                None => chrono_tz::UTC,
                Some(tz) => chrono_tz::Tz::from_str(tz.get_ref()).map_err(|_| {
                    self.err(
                        tz,
                        "schedule.timezone",
                        format!(
                            "`{}` is not an IANA time zone name (e.g. `Europe/Madrid`, `UTC`)",
                            tz.get_ref()
                        ),
                    )
                })?,
            };
            if s.full_refresh && s.task == Task::Maintain {
                return Err(self.err(
                    &s.name,
                    "schedule.full_refresh",
                    "a `task = \"maintain\"` schedule rebuilds nothing; leave `full_refresh` out",
                ));
            }
            let schedule = ScheduleConfig {
                name: name.clone(),
                cron: cron.to_string(),
                timezone,
                select: s.select.map(toml::Spanned::into_inner),
                exclude: s.exclude.map(toml::Spanned::into_inner),
                full_refresh: s.full_refresh,
                task: s.task,
                catch_up: s.catch_up,
                line: self.line_of(&s.name),
                pattern,
            };
            if schedule.next_after(Utc::now()).is_none() {
                return Err(self.err(
                    &s.cron,
                    "schedule.cron",
                    format!("`{cron}` never fires again"),
                ));
            }
            out.push(schedule);
        }
        Ok(out)
    }
}

impl super::Project {
    /// Checks each schedule's `select` and `exclude` against the pipeline.
    ///
    /// # Errors
    /// A selection that names no step, as a config error with the schedule's line.
    pub fn check_schedules(&self, pipeline: &crate::dag::Pipeline) -> Result<()> {
        for s in &self.schedules {
            pipeline
                .selection(s.select.as_deref(), s.exclude.as_deref())
                .map_err(|e| crate::error::EngineError::Config {
                    file: self.dir.join(super::PROJECT_FILE).display().to_string(),
                    message: format!("line {}: schedule `{}`: {e}", s.line, s.name),
                })?;
        }
        Ok(())
    }
}
