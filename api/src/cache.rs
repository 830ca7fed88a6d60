//! The response cache: Redis when configured, in-process otherwise.
//!
//! An entry holds the response body and the table version it was computed from. A lookup
//! is a hit only when that version is still the table's latest, so a commit by anyone (a
//! job run, another process) makes the table's entries misses before a stale answer can be
//! served, and the stale entries are deleted then. Each table keeps an index of its keys
//! (`assay:index:<table>`), so a write through the API can delete exactly the keys its rows
//! can affect and keep the others, re-stamped with the new version.
//!
//! A Redis error never fails a request: the response is served uncached, a warning is logged
//! and `errors` is counted; the connection manager reconnects in the background, and caching
//! resumes when Redis is back.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

/// Prefix of every key the gateway writes.
pub const PREFIX: &str = "assay";

/// One cached response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The table version (or catalog fingerprint) the body was computed from.
    pub stamp: String,
    /// The `Content-Type` of the body.
    pub content_type: String,
    /// The response body.
    pub body: String,
}

/// Counters, exported on `/metrics` and in tests.
#[derive(Debug, Default)]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: AtomicU64,
    /// Lookups that had to compute the response.
    pub misses: AtomicU64,
    /// Cache operations that failed (Redis down); the request was served uncached.
    pub errors: AtomicU64,
}

enum Backend {
    Redis(redis::aio::ConnectionManager),
    Memory {
        entries: moka::future::Cache<String, Entry>,
        index: Mutex<HashMap<String, HashSet<String>>>,
    },
}

/// The response cache.
pub struct Cache {
    backend: Backend,
    /// Hit, miss and error counts.
    pub stats: Arc<CacheStats>,
    ttl: Duration,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.backend {
            Backend::Redis(_) => "Cache(redis)",
            Backend::Memory { .. } => "Cache(memory)",
        })
    }
}

/// The key of a cached `rows` response: `assay:rows:<table>[:<normalized query>]`.
pub fn rows_key(table: &str, normalized: &str) -> String {
    if normalized.is_empty() {
        format!("{PREFIX}:rows:{table}")
    } else {
        format!("{PREFIX}:rows:{table}:{normalized}")
    }
}

/// The normalized query string of a rows key of `table` (`""` when unfiltered).
pub fn rows_query_of(key: &str, table: &str) -> Option<String> {
    let base = rows_key(table, "");
    let rest = key.strip_prefix(&base)?;
    if rest.is_empty() {
        return Some(String::new());
    }
    rest.strip_prefix(':').map(str::to_string)
}

fn index_key(table: &str) -> String {
    format!("{PREFIX}:index:{table}")
}

impl Cache {
    /// An in-process cache of at most `capacity` responses.
    pub fn memory(capacity: u64, ttl: Duration) -> Cache {
        Cache {
            backend: Backend::Memory {
                entries: moka::future::Cache::builder()
                    .max_capacity(capacity)
                    .time_to_live(ttl)
                    .build(),
                index: Mutex::new(HashMap::new()),
            },
            stats: Arc::default(),
            ttl,
        }
    }

    /// A Redis cache at `url` (`redis://host:port/db`). The connection is made lazily and
    /// remade after failures, so a Redis that is down at start-up is not an error.
    ///
    /// # Errors
    /// The URL is not a Redis URL.
    pub fn redis(url: &str, ttl: Duration) -> Result<Cache, String> {
        let client = redis::Client::open(url).map_err(|e| format!("cache URL: {e}"))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(500)))
            .set_response_timeout(Some(Duration::from_millis(500)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let manager = redis::aio::ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| format!("cache: {e}"))?;
        Ok(Cache {
            backend: Backend::Redis(manager),
            stats: Arc::default(),
            ttl,
        })
    }

    /// `redis` or `memory`.
    pub fn kind(&self) -> &'static str {
        match self.backend {
            Backend::Redis(_) => "redis",
            Backend::Memory { .. } => "memory",
        }
    }

    fn failed(&self, op: &str, e: &redis::RedisError) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(operation = op, error = %e, "cache unavailable; serving uncached");
    }

    /// The entry under `key` whatever its stamp; `Err` when Redis failed (counted, logged).
    async fn fetch(&self, key: &str) -> Result<Option<Entry>, ()> {
        match &self.backend {
            Backend::Memory { entries, .. } => Ok(entries.get(key).await),
            Backend::Redis(conn) => {
                let mut conn = conn.clone();
                match conn.get::<_, Option<String>>(key).await {
                    Ok(v) => Ok(v.and_then(|s| serde_json::from_str(&s).ok())),
                    Err(e) => {
                        self.failed("get", &e);
                        Err(())
                    }
                }
            }
        }
    }

    /// The entry under `key` if its stamp is `stamp`; an entry with another stamp is stale
    /// and is deleted with the rest of its table's keys.
    pub async fn get(&self, table: &str, key: &str, stamp: &str) -> Option<Entry> {
        let found = self.fetch(key).await.ok().flatten();
        match found {
            Some(entry) if entry.stamp == stamp => {
                self.stats.hits.fetch_add(1, Ordering::Relaxed);
                Some(entry)
            }
            Some(_) => {
                self.stats.misses.fetch_add(1, Ordering::Relaxed);
                // Someone committed since: everything cached for the table is stale.
                let keys = self.keys(table).await;
                self.delete(table, &keys).await;
                None
            }
            None => {
                self.stats.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Stores an entry and records its key in the table's index.
    pub async fn put(&self, table: &str, key: &str, entry: Entry) {
        match &self.backend {
            Backend::Memory { entries, index } => {
                entries.insert(key.to_string(), entry).await;
                if let Ok(mut index) = index.lock() {
                    index
                        .entry(table.to_string())
                        .or_default()
                        .insert(key.to_string());
                }
            }
            Backend::Redis(conn) => {
                let Ok(value) = serde_json::to_string(&entry) else {
                    return;
                };
                let mut conn = conn.clone();
                let ttl = self.ttl.as_secs().max(1);
                let r: redis::RedisResult<()> = redis::pipe()
                    .atomic()
                    .set_ex(key, value, ttl)
                    .ignore()
                    .sadd(index_key(table), key)
                    .ignore()
                    .expire(index_key(table), ttl as i64)
                    .ignore()
                    .query_async(&mut conn)
                    .await;
                if let Err(e) = r {
                    self.failed("set", &e);
                }
            }
        }
    }

    /// The cached keys of a table.
    pub async fn keys(&self, table: &str) -> Vec<String> {
        match &self.backend {
            Backend::Memory { index, .. } => index
                .lock()
                .map(|i| i.get(table).map(|s| s.iter().cloned().collect()))
                .ok()
                .flatten()
                .unwrap_or_default(),
            Backend::Redis(conn) => {
                let mut conn = conn.clone();
                match conn.smembers::<_, Vec<String>>(index_key(table)).await {
                    Ok(keys) => keys,
                    Err(e) => {
                        self.failed("smembers", &e);
                        Vec::new()
                    }
                }
            }
        }
    }

    /// Deletes keys of a table (and drops them from its index).
    pub async fn delete(&self, table: &str, keys: &[String]) {
        if keys.is_empty() {
            return;
        }
        match &self.backend {
            Backend::Memory { entries, index } => {
                for k in keys {
                    entries.invalidate(k).await;
                }
                if let Ok(mut index) = index.lock()
                    && let Some(set) = index.get_mut(table)
                {
                    for k in keys {
                        set.remove(k);
                    }
                }
            }
            Backend::Redis(conn) => {
                let mut conn = conn.clone();
                let r: redis::RedisResult<()> = redis::pipe()
                    .atomic()
                    .del(keys)
                    .ignore()
                    .srem(index_key(table), keys)
                    .ignore()
                    .query_async(&mut conn)
                    .await;
                if let Err(e) = r {
                    self.failed("del", &e);
                }
            }
        }
    }

    /// Moves the entries under `keys` that were computed at stamp `from` to stamp `to`
    /// (they are known to be unaffected by the commit that made `to`); any other is deleted.
    pub async fn restamp(&self, table: &str, keys: &[String], from: &str, to: &str) {
        let mut stale = Vec::new();
        for key in keys {
            let Ok(current) = self.fetch(key).await else {
                return;
            };
            match current {
                Some(mut entry) if entry.stamp == from => {
                    entry.stamp = to.to_string();
                    self.put(table, key, entry).await;
                }
                Some(_) => stale.push(key.clone()),
                None => {}
            }
        }
        self.delete(table, &stale).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(stamp: &str) -> Entry {
        Entry {
            stamp: stamp.into(),
            content_type: "application/json".into(),
            body: "[]".into(),
        }
    }

    #[test]
    fn keys_carry_table_and_query() {
        assert_eq!(
            rows_key("gold.products", "category=C"),
            "assay:rows:gold.products:category=C"
        );
        assert_eq!(rows_key("gold.products", ""), "assay:rows:gold.products");
        assert_eq!(
            rows_query_of("assay:rows:gold.products:category=C", "gold.products"),
            Some("category=C".into())
        );
        assert_eq!(
            rows_query_of("assay:rows:gold.products", "gold.products"),
            Some(String::new())
        );
        assert_eq!(
            rows_query_of("assay:rows:gold.products2", "gold.products"),
            None
        );
    }

    #[tokio::test]
    async fn a_new_version_makes_entries_misses_and_restamping_keeps_them() {
        let c = Cache::memory(100, Duration::from_secs(60));
        let t = "gold.products";
        c.put(t, "k1", entry("3")).await;
        c.put(t, "k2", entry("3")).await;
        assert!(c.get(t, "k1", "3").await.is_some());
        c.restamp(t, &["k1".to_string()], "3", "4").await;
        assert!(c.get(t, "k1", "4").await.is_some());
        // k2 was not restamped: at version 4 it is stale, and the table's keys go.
        assert!(c.get(t, "k2", "4").await.is_none());
        assert!(c.keys(t).await.is_empty());
        assert_eq!(c.stats.hits.load(Ordering::Relaxed), 2);
        assert_eq!(c.stats.misses.load(Ordering::Relaxed), 1);
    }
}
