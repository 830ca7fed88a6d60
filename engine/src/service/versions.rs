//! The latest version of each served table, and the tables of each layer, kept in memory so
//! that answering from the cache costs no storage request.
//!
//! A table is watched from the first time it is asked for. A background task re-reads every
//! watched table's version (one listing of its `_delta_log` from the version seen last) and
//! every layer's table names once per `interval`; this process's own commits, and commits
//! other replicas announce, are applied at once ([`Versions::observe`]). A commit by another
//! writer is therefore seen within one `interval`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::storage::Lake;
use crate::table::{Layer, TableId};

#[derive(Debug, Clone, Copy)]
struct Known {
    version: Option<i64>,
    at: Instant,
}

#[derive(Debug, Default)]
struct State {
    tables: HashMap<TableId, Known>,
    layers: BTreeMap<Layer, (Vec<String>, Instant)>,
}

/// Versions and table names of a lake, refreshed in the background.
#[derive(Debug)]
pub struct Versions {
    lake: Lake,
    interval: Duration,
    state: Arc<RwLock<State>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Versions {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl Versions {
    /// Watches `lake`, refreshing every `interval`. Must be created inside a Tokio runtime;
    /// the refresh task ends when this value is dropped.
    pub fn new(lake: Lake, interval: Duration) -> Self {
        let state = Arc::new(RwLock::new(State::default()));
        let task = tokio::spawn(refresh_loop(lake.clone(), interval, Arc::clone(&state)));
        Versions {
            lake,
            interval,
            state,
            task: Some(task),
        }
    }

    /// How stale an answer may be for a commit by another writer.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// A value is used while younger than this (the refresh task renews it well before).
    fn fresh(&self) -> Duration {
        self.interval * 3
    }

    /// The latest version of a table (`None` when it has no commit).
    ///
    /// # Errors
    /// Listing the table's log failed (the first time, or when the refresh fell behind).
    pub async fn latest(&self, id: &TableId) -> Result<Option<i64>> {
        if let Some(k) = self.known(id)
            && k.at.elapsed() < self.fresh()
        {
            return Ok(k.version);
        }
        let version = self.lake.latest_version(id).await?;
        self.set(id, version);
        Ok(version)
    }

    fn known(&self, id: &TableId) -> Option<Known> {
        self.state.read().ok()?.tables.get(id).copied()
    }

    fn set(&self, id: &TableId, version: Option<i64>) {
        if let Ok(mut s) = self.state.write() {
            s.tables.insert(
                id.clone(),
                Known {
                    version,
                    at: Instant::now(),
                },
            );
        }
    }

    /// Records a commit this process made or heard of: the table is at least at `version`.
    pub fn observe(&self, id: &TableId, version: i64) {
        if let Ok(mut s) = self.state.write() {
            let entry = s.tables.entry(id.clone()).or_insert(Known {
                version: None,
                at: Instant::now(),
            });
            if entry.version.is_none_or(|v| v < version) {
                entry.version = Some(version);
            }
            entry.at = Instant::now();
            let layer = s.layers.get_mut(&id.layer);
            if let Some((names, _)) = layer
                && !names.contains(&id.name)
            {
                names.push(id.name.clone());
                names.sort();
            }
        }
    }

    /// The tables of a layer, sorted.
    ///
    /// # Errors
    /// Listing the layer failed.
    pub async fn tables(&self, layer: Layer) -> Result<Vec<String>> {
        let cached = self
            .state
            .read()
            .ok()
            .and_then(|s| s.layers.get(&layer).cloned());
        if let Some((names, at)) = cached
            && at.elapsed() < self.fresh()
        {
            return Ok(names);
        }
        let names = self.lake.table_names(layer).await?;
        if let Ok(mut s) = self.state.write() {
            s.layers.insert(layer, (names.clone(), Instant::now()));
        }
        Ok(names)
    }
}

/// Re-reads the watched tables and layers every `interval` until aborted.
async fn refresh_loop(lake: Lake, interval: Duration, state: Arc<RwLock<State>>) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (tables, layers): (Vec<TableId>, Vec<Layer>) = match state.read() {
            Ok(s) => (
                s.tables.keys().cloned().collect(),
                s.layers.keys().copied().collect(),
            ),
            Err(_) => return,
        };
        for layer in layers {
            match lake.table_names(layer).await {
                Ok(names) => {
                    if let Ok(mut s) = state.write() {
                        s.layers.insert(layer, (names, Instant::now()));
                    }
                }
                Err(e) => tracing::warn!(layer = %layer, error = %e, "listing a layer failed"),
            }
        }
        for id in tables {
            match lake.latest_version(&id).await {
                Ok(v) => {
                    if let Ok(mut s) = state.write() {
                        let k = s.tables.entry(id).or_insert(Known {
                            version: v,
                            at: Instant::now(),
                        });
                        // A commit observed while the listing ran is not undone by it.
                        k.version = match (v, k.version) {
                            (Some(a), Some(b)) => Some(a.max(b)),
                            (v, _) => v,
                        };
                        k.at = Instant::now();
                    }
                }
                Err(e) => {
                    tracing::warn!(table = %id, error = %e, "reading a table's version failed")
                }
            }
        }
    }
}
