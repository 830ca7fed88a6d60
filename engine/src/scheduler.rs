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

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::config::{CatchUp, ScheduleConfig};
use crate::error::{EngineError, Result};
use crate::launcher::{LaunchError, Launcher};
use crate::storage::Lake;

/// The namespace of the scheduler's objects, beside the layers.
pub const SCHEDULER_DIR: &str = "_scheduler";

/// A tick later than this after its time was missed (no replica ran it on time).
const ON_TIME: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// Claims kept per schedule; older ones are deleted.
const KEEP_CLAIMS: usize = 50;

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

/// Whether a schedule is paused, as an admin last set it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseState {
    /// Paused: ticks start no run.
    pub paused: bool,
    /// Who set it.
    pub by: String,
    /// When.
    pub at: Option<DateTime<Utc>>,
}

/// One entry of the lake-wide run lease: who runs, which run, until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// The server process holding it.
    pub holder: String,
    /// The run it is held for.
    pub run_id: String,
    /// When it lapses unless renewed.
    pub expires_at: DateTime<Utc>,
    /// Given back at the end of the run.
    pub released: bool,
}

impl LeaseRecord {
    /// True while it binds other processes.
    fn live(&self, now: DateTime<Utc>) -> bool {
        !self.released && self.expires_at > now
    }
}

/// A lease this process holds: the number of its newest entry.
#[derive(Debug)]
pub struct Lease {
    seq: u64,
    record: LeaseRecord,
}

/// Lease entries kept; older ones are deleted.
const KEEP_LEASES: usize = 20;

/// The scheduler's objects in the lake.
#[derive(Debug, Clone)]
pub struct ScheduleStore {
    store: Arc<dyn ObjectStore>,
    root: Path,
    url: String,
}

impl ScheduleStore {
    /// The store under `<root>/_scheduler/` of `lake`.
    ///
    /// # Errors
    /// The namespace cannot be addressed on this store.
    pub fn new(lake: &Lake) -> Result<Self> {
        let child = lake.child(SCHEDULER_DIR)?;
        let (store, root) = child.store()?;
        Ok(ScheduleStore {
            store,
            root,
            url: child.root().to_string(),
        })
    }

    fn err(&self, e: object_store::Error) -> EngineError {
        EngineError::object_store(&self.url, e)
    }

    fn path(&self, parts: &[&str]) -> Path {
        parts
            .iter()
            .fold(self.root.clone(), |p, part| p.join(*part))
    }

    async fn read<T: for<'de> Deserialize<'de>>(&self, path: &Path) -> Result<Option<T>> {
        match self.store.get(path).await {
            Ok(got) => {
                let bytes = got.bytes().await.map_err(|e| self.err(e))?;
                serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                    EngineError::Schedule(format!("{}{path}: not a valid record: {e}", self.url))
                })
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err(e)),
        }
    }

    async fn write<T: Serialize>(&self, path: &Path, value: &T, mode: PutMode) -> Result<bool> {
        let body = serde_json::to_vec(value)
            .map_err(|e| EngineError::Schedule(format!("encoding a record: {e}")))?;
        let opts = PutOptions {
            mode,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(path, PutPayload::from(body), opts)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(self.err(e)),
        }
    }

    /// The objects under `dir`, sorted by name, after deleting all but the last `keep`.
    async fn sorted_keeping(&self, dir: &[&str], keep: usize) -> Result<Vec<Path>> {
        let prefix = self.path(dir);
        let mut names: Vec<Path> = self
            .store
            .list(Some(&prefix))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .map_err(|e| self.err(e))?;
        names.sort();
        if names.len() > keep {
            for old in names.drain(..names.len() - keep) {
                if let Err(e) = self.store.delete(&old).await {
                    tracing::warn!(path = %old, error = %e, "cannot delete an old scheduler record");
                }
            }
        }
        Ok(names)
    }

    fn lease_path(&self, seq: u64) -> Path {
        self.path(&["lease", &format!("{seq:020}.json")])
    }

    /// The newest lease entry and its number; deletes entries beyond the newest
    /// [`KEEP_LEASES`].
    async fn newest_lease(&self) -> Result<Option<(u64, LeaseRecord)>> {
        let names = self.sorted_keeping(&["lease"], KEEP_LEASES).await?;
        let Some(newest) = names.last() else {
            return Ok(None);
        };
        let seq = newest
            .filename()
            .and_then(|n| n.strip_suffix(".json"))
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or_else(|| {
                EngineError::Schedule(format!("{}{newest}: not a lease entry", self.url))
            })?;
        Ok(self.read(newest).await?.map(|r| (seq, r)))
    }

    /// Takes the lake-wide run lease for `run_id` until `ttl` from now: `Ok(Err(holder))`
    /// when another process holds a live one (or won the race for it).
    ///
    /// # Errors
    /// The store failed.
    pub async fn acquire(
        &self,
        holder: &str,
        run_id: &str,
        ttl: Duration,
    ) -> Result<std::result::Result<Lease, LeaseRecord>> {
        let now = Utc::now();
        let seq = match self.newest_lease().await? {
            Some((_, current)) if current.live(now) && current.holder != holder => {
                return Ok(Err(current));
            }
            Some((seq, _)) => seq + 1,
            None => 0,
        };
        let record = LeaseRecord {
            holder: holder.to_string(),
            run_id: run_id.to_string(),
            expires_at: now + ttl,
            released: false,
        };
        if self
            .write(&self.lease_path(seq), &record, PutMode::Create)
            .await?
        {
            return Ok(Ok(Lease { seq, record }));
        }
        // Another process created this entry first: it holds the lease.
        match self.read::<LeaseRecord>(&self.lease_path(seq)).await? {
            Some(winner) => Ok(Err(winner)),
            None => Err(EngineError::Schedule(format!(
                "{}lease entry {seq} exists but cannot be read",
                self.url
            ))),
        }
    }

    /// Extends a held lease by `ttl` from now; false when it lapsed and another process took
    /// it meanwhile.
    ///
    /// # Errors
    /// The store failed.
    pub async fn renew(&self, lease: &mut Lease, ttl: Duration) -> Result<bool> {
        let record = LeaseRecord {
            expires_at: Utc::now() + ttl,
            ..lease.record.clone()
        };
        if self
            .write(&self.lease_path(lease.seq + 1), &record, PutMode::Create)
            .await?
        {
            lease.seq += 1;
            lease.record = record;
            return Ok(true);
        }
        Ok(false)
    }

    /// Gives a lease back, so the next run anywhere may start at once.
    ///
    /// # Errors
    /// The store failed.
    pub async fn release(&self, lease: Lease) -> Result<()> {
        let record = LeaseRecord {
            released: true,
            expires_at: Utc::now(),
            ..lease.record
        };
        self.write(&self.lease_path(lease.seq + 1), &record, PutMode::Create)
            .await
            .map(|_| ())
    }

    /// The file name of a tick: its UTC time, sortable as text.
    fn tick_name(tick: DateTime<Utc>) -> String {
        format!("{}.json", tick.format("%Y%m%dT%H%M%SZ"))
    }

    /// Claims `record.tick` for this process: true when this create made the claim, false
    /// when another process (or an earlier call) already holds it.
    ///
    /// # Errors
    /// The store failed.
    pub async fn claim(&self, record: &TickRecord) -> Result<bool> {
        let path = self.path(&["ticks", &record.schedule, &Self::tick_name(record.tick)]);
        self.write(&path, record, PutMode::Create).await
    }

    /// The newest claimed tick of a schedule, if any; deletes claims beyond the newest
    /// [`KEEP_CLAIMS`].
    ///
    /// # Errors
    /// The store failed.
    pub async fn newest_claim(&self, schedule: &str) -> Result<Option<DateTime<Utc>>> {
        let names = self
            .sorted_keeping(&["ticks", schedule], KEEP_CLAIMS)
            .await?;
        Ok(names.last().and_then(|p| {
            let name = p.filename()?.strip_suffix(".json")?;
            chrono::NaiveDateTime::parse_from_str(name, "%Y%m%dT%H%M%SZ")
                .ok()
                .map(|t| t.and_utc())
        }))
    }

    /// What the newest claimed tick of a schedule did.
    ///
    /// # Errors
    /// The store failed.
    pub async fn last(&self, schedule: &str) -> Result<Option<TickRecord>> {
        let name = format!("{schedule}.json");
        self.read(&self.path(&["last", &name])).await
    }

    async fn set_last(&self, record: &TickRecord) -> Result<()> {
        let name = format!("{}.json", record.schedule);
        self.write(&self.path(&["last", &name]), record, PutMode::Overwrite)
            .await
            .map(|_| ())
    }

    /// Whether a schedule is paused.
    ///
    /// # Errors
    /// The store failed.
    pub async fn pause_state(&self, schedule: &str) -> Result<PauseState> {
        let name = format!("{schedule}.json");
        Ok(self
            .read(&self.path(&["state", &name]))
            .await?
            .unwrap_or_default())
    }

    /// Pauses or resumes a schedule for every replica.
    ///
    /// # Errors
    /// The store failed.
    pub async fn set_paused(&self, schedule: &str, paused: bool, by: &str) -> Result<PauseState> {
        let state = PauseState {
            paused,
            by: by.to_string(),
            at: Some(Utc::now()),
        };
        let name = format!("{schedule}.json");
        self.write(&self.path(&["state", &name]), &state, PutMode::Overwrite)
            .await?;
        Ok(state)
    }
}

/// The newest tick of `s` at or before `now` after `after`, and whether it was missed
/// (more than a minute old).
fn due(
    s: &ScheduleConfig,
    after: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<(DateTime<Utc>, bool)> {
    let mut newest = None;
    let mut at = after;
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
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
    format!("{host}:{}:{}", std::process::id(), uuid::Uuid::now_v7())
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
            match self
                .launcher
                .start_excluding(
                    s.select.as_deref(),
                    s.exclude.as_deref(),
                    s.full_refresh,
                    &by,
                )
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
        tracing::info!(
            schedule = %s.name,
            %tick,
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
