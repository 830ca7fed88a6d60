//! The response cache: Redis when configured, in-process otherwise.
//!
//! An entry holds the response body and the table version it was computed from. A lookup
//! is a hit only when that version is still the table's latest, so a commit by anyone (a
//! job run, another process) makes the table's entries misses before a stale answer can be
//! served, and the stale entries are deleted then. Each table keeps an index of its keys
//! (`assay:index:<table>`), so a write through the API can delete exactly the keys its rows
//! can affect and keep the others, re-stamped with the new version.
//!
//! Keys start with a namespace of the lake (`assay:<12 hex digits of the SHA-256 of the lake
//! root URL>` unless `[cache] prefix` names one), so gateways on different lakes can share a
//! Redis without ever serving each other's rows. With Redis, commits made through a gateway
//! are announced on `<prefix>:commits`, so every replica learns the new version at once.
//!
//! A Redis error never fails a request: the response is served uncached, a warning is logged
//! and `errors` is counted; for [`PAUSE_AFTER_ERROR`] after an error the cache does not call
//! Redis at all (requests do not wait on a Redis that is down), then tries again; the
//! connection manager reconnects in the background, and caching resumes when Redis is back.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use redis::AsyncCommands;

/// The default key namespace of a lake: `assay:` and 12 hex digits of the SHA-256 of its
/// root URL.
pub fn lake_prefix(root: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(root.as_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("assay:{hex}")
}

/// How long the cache leaves Redis alone after a Redis error.
pub const PAUSE_AFTER_ERROR: Duration = Duration::from_secs(1);

/// One cached response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The table version (or catalog fingerprint) the body was computed from.
    pub stamp: String,
    /// The `Content-Type` of the body.
    pub content_type: String,
    /// The `ETag` of the body (from its key and stamp).
    pub etag: String,
    /// The response body.
    pub body: Bytes,
}

/// The ETag of `key` at `stamp`.
pub fn etag(key: &str, stamp: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{key}\n{stamp}").as_bytes());
    let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

impl Entry {
    /// An entry for `key`, computed at `stamp`.
    pub fn new(key: &str, stamp: String, content_type: &str, body: impl Into<Bytes>) -> Entry {
        Entry {
            etag: etag(key, &stamp),
            stamp,
            content_type: content_type.to_string(),
            body: body.into(),
        }
    }

    /// The same body, stamped `stamp` (its ETag follows).
    fn restamped(&self, key: &str, stamp: &str) -> Entry {
        Entry {
            stamp: stamp.to_string(),
            etag: etag(key, stamp),
            content_type: self.content_type.clone(),
            body: self.body.clone(),
        }
    }

    /// The Redis value: three header lines (stamp, content type, ETag), then the body.
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 64);
        for h in [&self.stamp, &self.content_type, &self.etag] {
            out.extend_from_slice(h.as_bytes());
            out.push(b'\n');
        }
        out.extend_from_slice(&self.body);
        out
    }

    fn decode(value: Vec<u8>) -> Option<Entry> {
        let mut value = Bytes::from(value);
        let mut line = || -> Option<String> {
            let end = value.iter().position(|b| *b == b'\n')?;
            let head = value.split_to(end + 1);
            String::from_utf8(head[..end].to_vec()).ok()
        };
        let (stamp, content_type, etag) = (line()?, line()?, line()?);
        Some(Entry {
            stamp,
            content_type,
            etag,
            body: value,
        })
    }
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
    Redis {
        client: redis::Client,
        conn: redis::aio::ConnectionManager,
    },
    Memory {
        entries: moka::future::Cache<String, Arc<Entry>>,
        index: Mutex<HashMap<String, HashSet<String>>>,
    },
}

/// The response cache.
pub struct Cache {
    backend: Backend,
    /// Hit, miss and error counts.
    pub stats: Arc<CacheStats>,
    ttl: Duration,
    prefix: String,
    listener: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Redis is not called before this many milliseconds after `epoch` (0: no pause).
    paused_until_ms: AtomicU64,
    epoch: std::time::Instant,
}

impl Drop for Cache {
    fn drop(&mut self) {
        if let Ok(mut l) = self.listener.lock()
            && let Some(task) = l.take()
        {
            task.abort();
        }
    }
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.backend {
            Backend::Redis { .. } => "Cache(redis)",
            Backend::Memory { .. } => "Cache(memory)",
        })
    }
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
            prefix: "assay".into(),
            listener: Mutex::new(None),
            paused_until_ms: AtomicU64::new(0),
            epoch: std::time::Instant::now(),
        }
    }

    /// Keys start with `prefix` (see [`lake_prefix`]).
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The namespace of every key.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The key of a cached `rows` response: `<prefix>:rows:<table>[:<normalized query>]`.
    pub fn rows_key(&self, table: &str, normalized: &str) -> String {
        if normalized.is_empty() {
            format!("{}:rows:{table}", self.prefix)
        } else {
            format!("{}:rows:{table}:{normalized}", self.prefix)
        }
    }

    /// The normalized query string of a rows key of `table` (`""` when unfiltered).
    pub fn rows_query_of(&self, key: &str, table: &str) -> Option<String> {
        let base = self.rows_key(table, "");
        let rest = key.strip_prefix(&base)?;
        if rest.is_empty() {
            return Some(String::new());
        }
        rest.strip_prefix(':').map(str::to_string)
    }

    /// The key of a cached catalog: `<prefix>:catalog:<role>[:<normalized query>]`.
    pub fn catalog_key(&self, role: assay_engine::auth::Role, normalized: &str) -> String {
        if normalized.is_empty() {
            format!("{}:catalog:{role}", self.prefix)
        } else {
            format!("{}:catalog:{role}:{normalized}", self.prefix)
        }
    }

    fn index_key(&self, table: &str) -> String {
        format!("{}:index:{table}", self.prefix)
    }

    fn commits_channel(&self) -> String {
        format!("{}:commits", self.prefix)
    }

    /// Tells the other gateways sharing this Redis that `table` is at `version` (nothing
    /// without Redis).
    pub async fn announce(&self, table: &str, version: i64) {
        if let Some(mut conn) = self.connection() {
            let r: redis::RedisResult<()> = conn
                .publish(self.commits_channel(), format!("{table} {version}"))
                .await;
            if let Err(e) = r {
                self.failed("publish", &e);
            }
        }
    }

    /// Hears commits other gateways announce and hands each (`layer.table`, version) to
    /// `on_commit`, resubscribing after Redis failures, until the cache is dropped.
    pub fn listen(&self, on_commit: impl Fn(&str, i64) + Send + Sync + 'static) {
        let Backend::Redis { client, .. } = &self.backend else {
            return;
        };
        let client = client.clone();
        let channel = self.commits_channel();
        let task = tokio::spawn(async move {
            use futures::StreamExt;
            loop {
                match client.get_async_pubsub().await {
                    Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                        Ok(()) => {
                            let mut messages = pubsub.on_message();
                            while let Some(msg) = messages.next().await {
                                let Ok(text) = msg.get_payload::<String>() else {
                                    continue;
                                };
                                if let Some((table, v)) = text.split_once(' ')
                                    && let Ok(v) = v.parse::<i64>()
                                {
                                    on_commit(table, v);
                                }
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "cache: subscribing to commits failed")
                        }
                    },
                    Err(e) => {
                        tracing::debug!(error = %e, "cache: no Redis for commit announcements")
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        if let Ok(mut l) = self.listener.lock()
            && let Some(old) = l.replace(task)
        {
            old.abort();
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
        let manager = redis::aio::ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(|e| format!("cache: {e}"))?;
        Ok(Cache {
            backend: Backend::Redis {
                client,
                conn: manager,
            },
            stats: Arc::default(),
            ttl,
            prefix: "assay".into(),
            listener: Mutex::new(None),
            paused_until_ms: AtomicU64::new(0),
            epoch: std::time::Instant::now(),
        })
    }

    /// `redis` or `memory`.
    pub fn kind(&self) -> &'static str {
        match self.backend {
            Backend::Redis { .. } => "redis",
            Backend::Memory { .. } => "memory",
        }
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn failed(&self, op: &str, e: &redis::RedisError) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        let until = self.elapsed_ms() + PAUSE_AFTER_ERROR.as_millis() as u64;
        let before = self.paused_until_ms.swap(until, Ordering::Relaxed);
        if before <= self.elapsed_ms() {
            // Once per pause, not once per request.
            tracing::warn!(operation = op, error = %e, "cache unavailable; serving uncached");
        }
    }

    /// Redis, unless the cache pauses it after an error (then every operation is skipped and
    /// counted as an error: the request is served uncached).
    fn connection(&self) -> Option<redis::aio::ConnectionManager> {
        let Backend::Redis { conn, .. } = &self.backend else {
            return None;
        };
        if self.paused_until_ms.load(Ordering::Relaxed) > self.elapsed_ms() {
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(conn.clone())
    }

    /// The entry under `key` whatever its stamp; `Err` when Redis failed (counted, logged).
    async fn fetch(&self, key: &str) -> Result<Option<Arc<Entry>>, ()> {
        match &self.backend {
            Backend::Memory { entries, .. } => Ok(entries.get(key).await),
            Backend::Redis { .. } => {
                let Some(mut conn) = self.connection() else {
                    return Err(());
                };
                match conn.get::<_, Option<Vec<u8>>>(key).await {
                    Ok(v) => Ok(v.and_then(Entry::decode).map(Arc::new)),
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
    pub async fn get(&self, table: &str, key: &str, stamp: &str) -> Option<Arc<Entry>> {
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
    pub async fn put(&self, table: &str, key: &str, entry: Arc<Entry>) {
        match &self.backend {
            Backend::Memory { entries, index } => {
                entries.insert(key.to_string(), entry).await;
                // Evicted and expired entries leave their keys behind: past twice the
                // cache's capacity, keep only keys that still have an entry.
                let capacity = entries.policy().max_capacity().unwrap_or(u64::MAX);
                let over = index.lock().is_ok_and(|mut index| {
                    let keys = index.entry(table.to_string()).or_default();
                    keys.insert(key.to_string());
                    keys.len() as u64 > capacity.saturating_mul(2)
                });
                if over {
                    entries.run_pending_tasks().await;
                    if let Ok(mut index) = index.lock()
                        && let Some(keys) = index.get_mut(table)
                    {
                        keys.retain(|k| entries.contains_key(k));
                    }
                }
            }
            Backend::Redis { .. } => {
                let Some(mut conn) = self.connection() else {
                    return;
                };
                let value = entry.encode();
                let ttl = self.ttl.as_secs().max(1);
                let r: redis::RedisResult<()> = redis::pipe()
                    .atomic()
                    .set_ex(key, value, ttl)
                    .ignore()
                    .sadd(self.index_key(table), key)
                    .ignore()
                    .expire(self.index_key(table), ttl as i64)
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
            Backend::Redis { .. } => {
                let Some(mut conn) = self.connection() else {
                    return Vec::new();
                };
                match conn.smembers::<_, Vec<String>>(self.index_key(table)).await {
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
            Backend::Redis { .. } => {
                let Some(mut conn) = self.connection() else {
                    return;
                };
                let r: redis::RedisResult<()> = redis::pipe()
                    .atomic()
                    .del(keys)
                    .ignore()
                    .srem(self.index_key(table), keys)
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
                Some(entry) if entry.stamp == from => {
                    self.put(table, key, Arc::new(entry.restamped(key, to)))
                        .await;
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

    fn entry(stamp: &str) -> Arc<Entry> {
        Arc::new(Entry::new("k", stamp.into(), "application/json", "[]"))
    }

    #[test]
    fn redis_values_keep_stamp_type_etag_and_body() {
        let e = Entry::new("k", "7".into(), "text/csv; charset=utf-8", "a\nb\n");
        assert_eq!(Entry::decode(e.encode()), Some(e.clone()));
        assert_eq!(e.restamped("k", "8").etag, etag("k", "8"));
        assert_eq!(Entry::decode(b"broken".to_vec()), None);
    }

    #[test]
    fn keys_carry_the_lake_the_table_and_the_query() {
        let p = lake_prefix("file:///lake/");
        assert!(p.starts_with("assay:") && p.len() == 6 + 12, "{p}");
        assert_ne!(p, lake_prefix("file:///other/"));
        let c = Cache::memory(10, Duration::from_secs(1)).with_prefix(p.clone());
        assert_eq!(
            c.rows_key("gold.products", "category=C"),
            format!("{p}:rows:gold.products:category=C")
        );
        assert_eq!(
            c.rows_query_of(&c.rows_key("gold.products", "category=C"), "gold.products"),
            Some("category=C".into())
        );
        assert_eq!(
            c.rows_query_of(&c.rows_key("gold.products", ""), "gold.products"),
            Some(String::new())
        );
        assert_eq!(
            c.rows_query_of(&c.rows_key("gold.products2", ""), "gold.products"),
            None
        );
        assert_eq!(
            c.catalog_key(assay_engine::auth::Role::Reader, "layer=gold"),
            format!("{p}:catalog:reader:layer=gold")
        );
    }

    #[tokio::test]
    async fn the_key_index_stays_bounded_by_the_capacity() {
        let c = Cache::memory(10, Duration::from_secs(60));
        for i in 0..1000 {
            let key = c.rows_key("gold.t", &format!("id={i}"));
            c.put("gold.t", &key, entry("1")).await;
        }
        let Backend::Memory { entries, index } = &c.backend else {
            unreachable!()
        };
        entries.run_pending_tasks().await;
        let n = index.lock().unwrap()["gold.t"].len();
        assert!(n <= 21, "{n} keys indexed for a cache of 10");
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
