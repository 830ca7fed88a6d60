//! Accounts and API keys, kept in the lake but outside its served namespace: Delta tables
//! `_system.users` and `_system.api_keys` of the lake under `<root>/_auth/`, which no
//! catalog, listing or SQL session ever sees (the serving layers need no filter for them).
//!
//! Both tables are append-only change logs: every signup, activation, role change, key
//! creation or revocation appends one row (one Delta commit), and the row with the highest
//! `seq` per user / key is the current state. Appends never conflict, so two gateways on one
//! lake can both write; each reloads a table when its Delta version moves, checked at most
//! every [`REFRESH_EVERY`] on the request path and immediately before and after its own writes.
//!
//! Passwords are stored as argon2id PHC strings, API keys as the SHA-256 of their secret
//! part (they are 256-bit random values, so a slow hash adds nothing). Neither ever prints.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{SecondsFormat, Utc};
use datafusion::prelude::SessionContext;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::auth::Role;
use crate::delta::{self, CommitInfo, WriteMode};
use crate::error::{EngineError, Result};
use crate::storage::Lake;
use crate::table::{Layer, TableId};

/// How stale the in-memory copy may get before a request re-checks the tables' versions.
pub const REFRESH_EVERY: Duration = Duration::from_secs(2);

/// `_system.users`.
pub fn users_table() -> TableId {
    TableId::new(Layer::System, "users")
}

/// `_system.api_keys`.
pub fn api_keys_table() -> TableId {
    TableId::new(Layer::System, "api_keys")
}

/// The namespace (a directory under the lake root) that holds the credential tables.
pub const AUTH_DIR: &str = "_auth";

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn users_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("password_hash", DataType::Utf8, true),
        Field::new("role", DataType::Utf8, false),
        Field::new("is_active", DataType::Boolean, false),
        Field::new("is_admin", DataType::Boolean, false),
        Field::new("created_at", ts(), false),
        Field::new("updated_at", ts(), false),
        Field::new("updated_by", DataType::Utf8, false),
        Field::new("seq", DataType::Int64, false),
    ]))
}

fn api_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("key_id", DataType::Utf8, false),
        Field::new("user_name", DataType::Utf8, false),
        Field::new("key_hash", DataType::Utf8, false),
        Field::new("label", DataType::Utf8, true),
        Field::new("revoked", DataType::Boolean, false),
        Field::new("created_at", ts(), false),
        Field::new("updated_at", ts(), false),
        Field::new("seq", DataType::Int64, false),
    ]))
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// One account as stored (the latest row for its name).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// User name (unique).
    pub name: String,
    /// argon2id PHC string; `None` for accounts that only sign in through OIDC or API keys.
    pub password_hash: Option<String>,
    /// The role that decides which layers the user sees.
    pub role: Role,
    /// Inactive accounts cannot sign in, and their tokens and keys stop working.
    pub is_active: bool,
    /// Admins may write rows, trigger runs and manage users (implies role `admin`).
    pub is_admin: bool,
    /// When the account was created (RFC 3339).
    pub created_at: String,
    /// When the account last changed (RFC 3339).
    pub updated_at: String,
    /// Who made the last change (`signup`, `bootstrap` or an admin's name).
    pub updated_by: String,
    /// Position in the change log.
    pub seq: i64,
}

impl fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserRecord")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("is_active", &self.is_active)
            .field("is_admin", &self.is_admin)
            .finish_non_exhaustive()
    }
}

impl UserRecord {
    /// The role the account acts with: `admin` when `is_admin`, its role otherwise.
    pub fn effective_role(&self) -> Role {
        if self.is_admin {
            Role::Admin
        } else {
            self.role
        }
    }
}

/// One API key as stored (the latest row for its id).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    /// The key's public id (the part between `ak_` and the second `_`).
    pub key_id: String,
    /// The user the key acts as.
    pub user_name: String,
    /// Hex SHA-256 of the secret part.
    pub key_hash: String,
    /// A label chosen by its owner.
    pub label: Option<String>,
    /// Revoked keys stop working.
    pub revoked: bool,
    /// When the key was created (RFC 3339).
    pub created_at: String,
    /// When the key last changed (RFC 3339).
    pub updated_at: String,
    /// Position in the change log.
    pub seq: i64,
}

impl fmt::Debug for ApiKeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyRecord")
            .field("key_id", &self.key_id)
            .field("user_name", &self.user_name)
            .field("revoked", &self.revoked)
            .finish_non_exhaustive()
    }
}

/// Hashes a password with argon2id and a random salt (a PHC string).
///
/// # Errors
/// The hasher failed (no randomness).
pub fn hash_password(password: &str) -> Result<String> {
    use argon2::password_hash::PasswordHasher;
    argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| EngineError::Auth(format!("hashing a password: {e}")))
}

/// True when `password` matches the PHC string `hash`.
pub fn verify_password(password: &str, hash: &str) -> bool {
    use argon2::password_hash::PasswordVerifier;
    argon2::Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// A hash of a random password with the same parameters as real ones: checked for
/// unknown users, so they cost the same time as known ones.
pub(crate) fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password(&uuid::Uuid::new_v4().to_string()).unwrap_or_default())
}

/// Hex SHA-256 of an API key's secret part.
pub fn hash_key_secret(secret: &str) -> String {
    sha2::Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[derive(Debug)]
struct Log<T> {
    version: Option<i64>,
    current: HashMap<String, T>,
    max_seq: i64,
}

impl<T> Default for Log<T> {
    fn default() -> Self {
        Log {
            version: None,
            current: HashMap::new(),
            max_seq: 0,
        }
    }
}

#[derive(Debug)]
struct State {
    users: Log<UserRecord>,
    keys: Log<ApiKeyRecord>,
    checked: Option<Instant>,
}

/// The accounts and API keys of one lake, cached in memory.
#[derive(Debug, Clone)]
pub struct UserStore {
    /// The `_auth` namespace of the lake.
    lake: Lake,
    /// The lake itself, where older versions kept the credential tables (moved on first
    /// use).
    served: Lake,
    migrated: Arc<tokio::sync::OnceCell<()>>,
    state: Arc<RwLock<State>>,
    writes: Arc<tokio::sync::Mutex<()>>,
}

async fn load<T: DeserializeOwned>(lake: &Lake, id: &TableId) -> Result<Vec<T>> {
    let Some(table) = lake.open(id).await? else {
        return Ok(Vec::new());
    };
    let ctx = SessionContext::new();
    let batches = delta::scan(id, &table, &ctx, None)
        .await?
        .collect()
        .await
        .map_err(|e| EngineError::query(id.clone(), e))?;
    let mut w = arrow::json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, arrow::json::writer::JsonArray>(Vec::new());
    for b in &batches {
        w.write(b)
            .map_err(|e| EngineError::Auth(format!("{id}: {e}")))?;
    }
    w.finish()
        .map_err(|e| EngineError::Auth(format!("{id}: {e}")))?;
    let buf = w.into_inner();
    if buf.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&buf).map_err(|e| EngineError::Auth(format!("{id}: {e}")))
}

async fn append<T: Serialize>(
    lake: &Lake,
    id: &TableId,
    schema: SchemaRef,
    rows: &[T],
    actor: &str,
) -> Result<()> {
    let auth = |e: &dyn fmt::Display| EngineError::Auth(format!("{id}: {e}"));
    let mut decoder = arrow::json::ReaderBuilder::new(schema)
        .with_strict_mode(true)
        .build_decoder()
        .map_err(|e| auth(&e))?;
    decoder.serialize(rows).map_err(|e| auth(&e))?;
    let batch: RecordBatch = decoder
        .flush()
        .map_err(|e| auth(&e))?
        .ok_or_else(|| auth(&"no rows"))?;
    let df = SessionContext::new()
        .read_batch(batch)
        .map_err(|e| EngineError::query(id.clone(), e))?;
    let info = CommitInfo::new(Vec::new(), &uuid::Uuid::now_v7().to_string())
        .with("assay.auth.by", actor.to_string());
    crate::delta::write_secret_frame(lake, id, df, WriteMode::Append, &info).await?;
    Ok(())
}

fn latest<T>(rows: Vec<T>, key: impl Fn(&T) -> String, seq: impl Fn(&T) -> i64) -> Log<T> {
    let mut log = Log::default();
    for r in rows {
        let s = seq(&r);
        log.max_seq = log.max_seq.max(s);
        match log.current.get(&key(&r)) {
            Some(old) if seq(old) >= s => {}
            _ => {
                log.current.insert(key(&r), r);
            }
        }
    }
    log
}

impl UserStore {
    /// A store over the credential tables under `<root>/_auth/` (created on first write).
    ///
    /// # Errors
    /// The namespace cannot be addressed on this store.
    pub fn new(lake: Lake) -> Result<Self> {
        Ok(UserStore {
            lake: lake.child(AUTH_DIR)?,
            served: lake,
            migrated: Arc::default(),
            state: Arc::new(RwLock::new(State {
                users: Log::default(),
                keys: Log::default(),
                checked: None,
            })),
            writes: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    /// Moves credential tables an older version kept among the served tables
    /// (`<root>/_system/users`, `<root>/_system/api_keys`) into `_auth`, once: their rows
    /// are copied, then the old tables deleted.
    async fn migrate(&self) -> Result<()> {
        for id in [users_table(), api_keys_table()] {
            let Some(old) = self.served.open(&id).await? else {
                continue;
            };
            if self.lake.latest_version(&id).await?.is_none() {
                let ctx = SessionContext::new();
                let rows = delta::scan(&id, &old, &ctx, None).await?;
                let info = CommitInfo::new(Vec::new(), &uuid::Uuid::now_v7().to_string())
                    .with("assay.auth.by", "migration");
                delta::write_secret_frame(&self.lake, &id, rows, WriteMode::Append, &info).await?;
            }
            let (store, root) = self.served.store()?;
            let prefix = root.join(id.layer.as_str()).join(id.name.as_str());
            let paths: Vec<object_store::path::Path> = {
                use futures::TryStreamExt;
                store
                    .list(Some(&prefix))
                    .map_ok(|m| m.location)
                    .try_collect()
                    .await
                    .map_err(|e| EngineError::object_store(self.served.table_url(&id), e))?
            };
            for path in paths {
                use object_store::ObjectStoreExt;
                if let Err(e) = store.delete(&path).await {
                    tracing::warn!(path = %path, error = %e, "could not delete a moved credential file");
                }
            }
            tracing::info!(table = %id, to = %self.lake.root(), "credential table moved out of the served lake");
        }
        Ok(())
    }

    fn read<R>(&self, f: impl FnOnce(&State) -> R) -> Result<R> {
        let state = self
            .state
            .read()
            .map_err(|_| EngineError::Auth("user store lock poisoned".into()))?;
        Ok(f(&state))
    }

    fn write_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> Result<R> {
        let mut state = self
            .state
            .write()
            .map_err(|_| EngineError::Auth("user store lock poisoned".into()))?;
        Ok(f(&mut state))
    }

    /// Reloads the tables whose Delta version moved; unless `force`, at most every
    /// [`REFRESH_EVERY`].
    ///
    /// # Errors
    /// The lake could not be read.
    pub async fn refresh(&self, force: bool) -> Result<()> {
        self.migrated.get_or_try_init(|| self.migrate()).await?;
        let fresh = self.read(|s| s.checked.is_some_and(|t| t.elapsed() < REFRESH_EVERY))?;
        if fresh && !force {
            return Ok(());
        }
        let (users_v, keys_v) = (
            self.lake.latest_version(&users_table()).await?,
            self.lake.latest_version(&api_keys_table()).await?,
        );
        let (old_users, old_keys) = self.read(|s| (s.users.version, s.keys.version))?;
        if users_v != old_users {
            let rows: Vec<UserRecord> = load(&self.lake, &users_table()).await?;
            let mut log = latest(rows, |r| r.name.clone(), |r| r.seq);
            log.version = users_v;
            self.write_state(|s| s.users = log)?;
        }
        if keys_v != old_keys {
            let rows: Vec<ApiKeyRecord> = load(&self.lake, &api_keys_table()).await?;
            let mut log = latest(rows, |r| r.key_id.clone(), |r| r.seq);
            log.version = keys_v;
            self.write_state(|s| s.keys = log)?;
        }
        self.write_state(|s| s.checked = Some(Instant::now()))
    }

    /// One account, as of the last refresh.
    ///
    /// # Errors
    /// The lake could not be read.
    pub async fn user(&self, name: &str) -> Result<Option<UserRecord>> {
        self.refresh(false).await?;
        self.read(|s| s.users.current.get(name).cloned())
    }

    /// Every account, sorted by name.
    ///
    /// # Errors
    /// The lake could not be read.
    pub async fn users(&self) -> Result<Vec<UserRecord>> {
        self.refresh(true).await?;
        let mut all = self.read(|s| s.users.current.values().cloned().collect::<Vec<_>>())?;
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(all)
    }

    /// True when no account exists yet.
    ///
    /// # Errors
    /// The lake could not be read.
    pub async fn is_empty(&self) -> Result<bool> {
        self.refresh(true).await?;
        self.read(|s| s.users.current.is_empty())
    }

    /// Creates an account; `Ok(None)` when the name is taken.
    ///
    /// # Errors
    /// Hashing or the commit failed.
    pub async fn create(
        &self,
        name: &str,
        password: &str,
        role: Role,
        is_active: bool,
        by: &str,
    ) -> Result<Option<UserRecord>> {
        let password = password.to_string();
        let hash = tokio::task::spawn_blocking(move || hash_password(&password))
            .await
            .map_err(|e| EngineError::Auth(format!("hashing a password: {e}")))??;
        self.change(&users_table(), users_schema(), by, |s, seq| {
            if s.users.current.contains_key(name) {
                return None;
            }
            let at = now();
            Some(UserRecord {
                name: name.to_string(),
                password_hash: Some(hash),
                role,
                is_active,
                is_admin: role == Role::Admin,
                created_at: at.clone(),
                updated_at: at,
                updated_by: by.to_string(),
                seq,
            })
        })
        .await
    }

    /// Changes an account's activity and/or role; `Ok(None)` when there is no such account.
    ///
    /// # Errors
    /// The commit failed.
    pub async fn update(
        &self,
        name: &str,
        is_active: Option<bool>,
        role: Option<Role>,
        by: &str,
    ) -> Result<Option<UserRecord>> {
        self.change(&users_table(), users_schema(), by, |s, seq| {
            let mut record = s.users.current.get(name).cloned()?;
            if let Some(a) = is_active {
                record.is_active = a;
            }
            if let Some(r) = role {
                record.role = r;
                record.is_admin = r == Role::Admin;
            }
            record.updated_at = now();
            record.updated_by = by.to_string();
            record.seq = seq;
            Some(record)
        })
        .await
    }

    /// One API key by id, as of the last refresh.
    ///
    /// # Errors
    /// The lake could not be read.
    pub async fn api_key(&self, key_id: &str) -> Result<Option<ApiKeyRecord>> {
        self.refresh(false).await?;
        self.read(|s| s.keys.current.get(key_id).cloned())
    }

    /// The keys of one user (every key when `user` is `None`), newest first.
    ///
    /// # Errors
    /// The lake could not be read.
    pub async fn api_keys(&self, user: Option<&str>) -> Result<Vec<ApiKeyRecord>> {
        self.refresh(true).await?;
        let mut keys = self.read(|s| {
            s.keys
                .current
                .values()
                .filter(|k| user.is_none_or(|u| k.user_name == u))
                .cloned()
                .collect::<Vec<_>>()
        })?;
        keys.sort_by(|a, b| b.created_at.cmp(&a.created_at));
        Ok(keys)
    }

    /// Creates an API key for `user`: returns its record and the full key, shown only once.
    ///
    /// # Errors
    /// The commit failed.
    pub async fn create_api_key(
        &self,
        user: &str,
        label: Option<String>,
    ) -> Result<(ApiKeyRecord, String)> {
        let key_id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        let secret = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let record = self
            .change(&api_keys_table(), api_keys_schema(), user, |_, seq| {
                let at = now();
                Some(ApiKeyRecord {
                    key_id: key_id.clone(),
                    user_name: user.to_string(),
                    key_hash: hash_key_secret(&secret),
                    label,
                    revoked: false,
                    created_at: at.clone(),
                    updated_at: at,
                    seq,
                })
            })
            .await?
            .ok_or_else(|| EngineError::Auth("creating an API key".into()))?;
        Ok((record, format!("ak_{key_id}_{secret}")))
    }

    /// Revokes a key; `Ok(None)` when there is no such key.
    ///
    /// # Errors
    /// The commit failed.
    pub async fn revoke_api_key(&self, key_id: &str, by: &str) -> Result<Option<ApiKeyRecord>> {
        self.change(&api_keys_table(), api_keys_schema(), by, |s, seq| {
            let mut record = s.keys.current.get(key_id).cloned()?;
            record.revoked = true;
            record.updated_at = now();
            record.seq = seq;
            Some(record)
        })
        .await
    }

    /// Appends the row `make` builds from the fresh state and the next `seq` (nothing when
    /// it returns `None`), one writer at a time in this process, then reloads.
    async fn change<T: Serialize>(
        &self,
        id: &TableId,
        schema: SchemaRef,
        by: &str,
        make: impl FnOnce(&State, i64) -> Option<T>,
    ) -> Result<Option<T>> {
        let _guard = self.writes.lock().await;
        self.refresh(true).await?;
        let record = self.read(|s| make(s, s.users.max_seq.max(s.keys.max_seq) + 1))?;
        let Some(record) = record else {
            return Ok(None);
        };
        append(&self.lake, id, schema, std::slice::from_ref(&record), by).await?;
        self.refresh(true).await?;
        Ok(Some(record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse", &h));
        assert!(!verify_password("correct horse", "not a hash"));
    }

    #[test]
    fn latest_row_per_key_wins() {
        let rec = |name: &str, seq: i64, active: bool| UserRecord {
            name: name.into(),
            password_hash: None,
            role: Role::Reader,
            is_active: active,
            is_admin: false,
            created_at: String::new(),
            updated_at: String::new(),
            updated_by: String::new(),
            seq,
        };
        let log = latest(
            vec![rec("a", 3, true), rec("a", 1, false), rec("b", 2, false)],
            |r| r.name.clone(),
            |r| r.seq,
        );
        assert_eq!(log.max_seq, 3);
        assert!(log.current["a"].is_active);
        assert!(!log.current["b"].is_active);
        assert!(!format!("{:?}", log.current["a"]).contains("password"));
    }

    fn walkdir(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walkdir(&p));
            } else {
                out.push(p);
            }
        }
        out
    }

    #[tokio::test]
    async fn accounts_and_keys_live_in_the_lake() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::resolve(dir.path().to_str().unwrap(), dir.path()).unwrap();
        let store = UserStore::new(lake.clone()).unwrap();
        assert!(store.is_empty().await.unwrap());
        let ana = store
            .create("ana", "pw-123456", Role::Reader, false, "signup")
            .await
            .unwrap()
            .unwrap();
        assert!(!ana.is_active);
        assert!(
            store
                .create("ana", "other-pass", Role::Admin, true, "signup")
                .await
                .unwrap()
                .is_none()
        );
        store
            .update("ana", Some(true), Some(Role::Engineer), "root")
            .await
            .unwrap()
            .unwrap();
        let (rec, key) = store
            .create_api_key("ana", Some("ci".into()))
            .await
            .unwrap();
        assert!(key.starts_with(&format!("ak_{}_", rec.key_id)));
        // No column statistics in the log: no min/max of a hash or salt for any reader.
        for entry in walkdir(&dir.path().join("_auth")) {
            let text = std::fs::read_to_string(&entry).unwrap_or_default();
            if entry.extension().is_some_and(|e| e == "json") {
                assert!(!text.contains("$argon2"), "{}: {text}", entry.display());
                assert!(!text.contains(&rec.key_hash), "{}", entry.display());
            }
        }

        // A second store on the same lake (another process) sees the current state.
        let other = UserStore::new(lake.clone()).unwrap();
        let ana = other.user("ana").await.unwrap().unwrap();
        assert!(ana.is_active);
        assert_eq!(ana.effective_role(), Role::Engineer);
        let stored = other.api_key(&rec.key_id).await.unwrap().unwrap();
        assert_eq!(
            stored.key_hash,
            hash_key_secret(key.rsplit('_').next().unwrap())
        );
        other.revoke_api_key(&rec.key_id, "ana").await.unwrap();
        store.refresh(true).await.unwrap();
        assert!(store.api_key(&rec.key_id).await.unwrap().unwrap().revoked);
        assert_eq!(store.users().await.unwrap().len(), 1);
        // The served lake holds no credential table: nothing to list, filter or serve.
        assert!(lake.table_names(Layer::System).await.unwrap().is_empty());
        assert!(dir.path().join("_auth/_system/users/_delta_log").is_dir());

        // Credential tables an older version kept in `_system` (here: the `_system` of the
        // lake at `_auth`) move into that lake's own `_auth` on first use.
        let legacy =
            Lake::resolve(dir.path().join(AUTH_DIR).to_str().unwrap(), dir.path()).unwrap();
        let moved = UserStore::new(legacy.clone()).unwrap();
        assert!(moved.user("ana").await.unwrap().unwrap().is_active);
        assert!(moved.api_key(&rec.key_id).await.unwrap().unwrap().revoked);
        assert!(legacy.table_names(Layer::System).await.unwrap().is_empty());
        assert_eq!(legacy.latest_version(&users_table()).await.unwrap(), None);
    }
}
