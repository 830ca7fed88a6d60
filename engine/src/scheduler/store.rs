//! The scheduler's records in the lake, under `<root>/_scheduler/`: tick claims, what the
//! last tick did, pause states and the run lease. Exclusive records are conditional creates;
//! the others plain overwrites.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use super::{SCHEDULER_DIR, TickRecord};
use crate::error::{EngineError, Result};
use crate::storage::Lake;

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

/// A run's sign of life: renewed while the run lasts, deleted when it is recorded. A run
/// whose `_system.runs` row says `running` and whose heartbeat lapsed (or whose process on
/// this host is gone) was abandoned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The run.
    pub run_id: String,
    /// When the run started.
    pub started_at: DateTime<Utc>,
    /// The host of the process running it.
    pub host: String,
    /// That process's id.
    pub pid: u32,
    /// When it was last renewed.
    pub at: DateTime<Utc>,
    /// When it lapses unless renewed.
    pub expires_at: DateTime<Utc>,
}

/// A lease this process holds: the number of its newest entry.
#[derive(Debug)]
pub struct Lease {
    seq: u64,
    record: LeaseRecord,
}

/// Lease entries kept; older ones are deleted.
const KEEP_LEASES: usize = 20;

/// Claims kept per schedule; older ones are deleted.
const KEEP_CLAIMS: usize = 50;

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

    /// The objects under `dir`.
    async fn list(&self, dir: &[&str]) -> Result<Vec<Path>> {
        let prefix = self.path(dir);
        self.store
            .list(Some(&prefix))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .map_err(|e| self.err(e))
    }

    /// The objects under `dir`, sorted by name, after deleting all but the last `keep`.
    async fn sorted_keeping(&self, dir: &[&str], keep: usize) -> Result<Vec<Path>> {
        let mut names = self.list(dir).await?;
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

    pub(super) async fn set_last(&self, record: &TickRecord) -> Result<()> {
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

    fn heartbeat_path(&self, run_id: &str) -> Path {
        self.path(&["live", &format!("{run_id}.json")])
    }

    /// Writes (or renews) a run's heartbeat.
    ///
    /// # Errors
    /// The store failed.
    pub async fn beat(&self, beat: &Heartbeat) -> Result<()> {
        self.write(&self.heartbeat_path(&beat.run_id), beat, PutMode::Overwrite)
            .await
            .map(|_| ())
    }

    /// A run's heartbeat, if it has one.
    ///
    /// # Errors
    /// The store failed.
    pub async fn heartbeat(&self, run_id: &str) -> Result<Option<Heartbeat>> {
        self.read(&self.heartbeat_path(run_id)).await
    }

    /// Every heartbeat in the lake: the runs in progress, and those that died.
    ///
    /// # Errors
    /// The store failed.
    pub async fn heartbeats(&self) -> Result<Vec<Heartbeat>> {
        let paths = self.list(&["live"]).await?;
        let mut beats = Vec::with_capacity(paths.len());
        for p in &paths {
            // A heartbeat deleted since the listing is a run that ended meanwhile.
            if let Some(b) = self.read(p).await? {
                beats.push(b);
            }
        }
        Ok(beats)
    }

    /// Deletes a run's heartbeat (the run is recorded, or was found abandoned).
    ///
    /// # Errors
    /// The store failed.
    pub async fn forget_heartbeat(&self, run_id: &str) -> Result<()> {
        match self.store.delete(&self.heartbeat_path(run_id)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(e)),
        }
    }
}
