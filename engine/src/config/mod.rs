//! The project file (`assay.toml`): parsed once, validated into typed config.
//!
//! Unknown keys, wrong types, missing SQL files and bad globs are errors that name the
//! key, the file and the line.

mod alert;
mod audit;
mod database;
mod engine;
mod http;
mod maintenance;
mod medallion;
mod raw;
mod schedule;
mod types;

use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

pub use alert::{AlertConfig, AlertEvent};
pub use audit::{Audit, Check};
pub use database::{DatabaseSource, DbIncremental, DbParallel};
pub use engine::{EngineConfig, EngineMode};
pub use http::{HttpAuth, HttpFormat, HttpIncremental, HttpSource, Pagination};
pub use maintenance::{MaintenanceConfig, TableMaintenance, delta_interval};
pub use medallion::{
    Action, BronzeConfig, ConfigExpr, CsvOptions, DatePart, DerivedColumn, Expectation, FileFormat,
    GoldConfig, History, Incremental, OnError, SCD2_COLUMNS, SchemaEvolution, SilverConfig,
    SilverInput, SourceConfig, Strategy, partition_columns,
};
pub use schedule::{CatchUp, ScheduleConfig, StepOptions, Task};
pub use types::{ColumnType, parse_column_type};

use crate::error::{EngineError, Result};
use crate::table::{Layer, TableId};
use raw::RawProject;

/// The project file's name inside a project directory.
pub const PROJECT_FILE: &str = "assay.toml";

/// A validated project: where it lives, its lake, its run options and its tables.
#[derive(Debug, Clone)]
pub struct Project {
    /// Project name (defaults to the directory name).
    pub name: String,
    /// The project directory; relative paths in the file are resolved against it.
    pub dir: PathBuf,
    /// The lake root as written (a URL or a path), before resolution.
    pub lake_root: String,
    /// How to reach the lake's store (and cloud file sources): `[lake]` besides `root`.
    pub storage: crate::storage::StorageSettings,
    /// Runner options.
    pub run: RunConfig,
    /// Server options (`assay serve`).
    pub serve: ServeConfig,
    /// Limits on every served query.
    pub query: crate::query::QueryLimits,
    /// The REST gateway's response cache.
    pub cache: CacheConfig,
    /// Accounts, tokens and external identity.
    pub auth: AuthConfig,
    /// Local users besides the bootstrap admin.
    pub users: Vec<UserConfig>,
    /// Bronze tables, one per source.
    pub bronze: Vec<BronzeConfig>,
    /// Silver tables.
    pub silver: Vec<SilverConfig>,
    /// Gold models.
    pub gold: Vec<GoldConfig>,
    /// `[[schedule]]` entries, run by `assay serve`.
    pub schedules: Vec<ScheduleConfig>,
    /// `[[alert]]` webhooks, told about runs.
    pub alerts: Vec<AlertConfig>,
    /// `[maintenance]` and the entries' overrides: compaction, vacuum, checkpoints.
    pub maintenance: MaintenanceConfig,
    /// `[engine]`: where gold models run (here, or on a Ballista cluster).
    pub engine: EngineConfig,
}

/// How the runner runs steps.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Steps run at the same time at most (default: 4).
    pub parallelism: usize,
    /// Retries of a step after a transient failure (default: 2).
    pub retries: u32,
    /// Wait before the first retry; doubles each time (default: 1s).
    pub retry_backoff: Duration,
    /// A step that takes longer fails (default: 30m).
    pub step_timeout: Duration,
    /// Once a step fails, start no other step (`--fail-fast`); the steps not started are
    /// `skipped`.
    pub fail_fast: bool,
    /// Per-table overrides of `retries`, `retry_backoff` and `step_timeout`, and tags.
    pub steps: std::collections::BTreeMap<TableId, StepOptions>,
}

impl RunConfig {
    /// Retries of `table`'s step: its entry's `retries`, else `[run] retries`.
    pub fn retries_of(&self, table: &TableId) -> u32 {
        self.steps
            .get(table)
            .and_then(|o| o.retries)
            .unwrap_or(self.retries)
    }

    /// Wait before the first retry of `table`'s step.
    pub fn retry_backoff_of(&self, table: &TableId) -> Duration {
        self.steps
            .get(table)
            .and_then(|o| o.retry_backoff)
            .unwrap_or(self.retry_backoff)
    }

    /// How long `table`'s step may take.
    pub fn timeout_of(&self, table: &TableId) -> Duration {
        self.steps
            .get(table)
            .and_then(|o| o.timeout)
            .unwrap_or(self.step_timeout)
    }

    /// Each table's tags (tables without tags left out).
    pub fn tags(&self) -> std::collections::HashMap<TableId, std::collections::BTreeSet<String>> {
        self.steps
            .iter()
            .filter(|(_, o)| !o.tags.is_empty())
            .map(|(t, o)| (t.clone(), o.tags.clone()))
            .collect()
    }
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            parallelism: 4,
            retries: 2,
            retry_backoff: Duration::from_secs(1),
            step_timeout: Duration::from_secs(30 * 60),
            fail_fast: false,
            steps: std::collections::BTreeMap::new(),
        }
    }
}

/// `[serve]`: where the servers listen.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Flight SQL address (default `127.0.0.1:50051`).
    pub flight_addr: String,
    /// REST gateway address (default `127.0.0.1:8080`).
    pub http_addr: String,
    /// Send `Utf8View`/`BinaryView` columns as they are (default: as `Utf8`/`Binary`).
    pub keep_views: bool,
    /// Connection limits of both servers.
    pub limits: ServeLimits,
    /// How long the lake-wide run lease is held between renewals (`run_lease_ttl`, default
    /// `30s`, at least `1s`): a server killed mid-run holds back the others this long.
    pub run_lease_ttl: Duration,
    /// `[serve.tls]`: both servers speak TLS with these files (plain text when `None`).
    pub tls: Option<crate::tls::TlsFiles>,
    /// How long `assay serve` waits, after SIGTERM or Ctrl-C, for requests and streams in
    /// flight before it exits anyway (`drain_timeout`, default `30s`).
    pub drain_timeout: Duration,
    /// Where each request's JSON access line goes (`access_log`: `stdout`, `stderr` or a
    /// file path, relative to the project); `None`: no access log.
    pub access_log: Option<AccessLog>,
    /// The Unity Catalog API: the catalog's name (`catalog_name`, default the project's
    /// name) and how table credentials are made (`[serve.credentials]`).
    pub unity: crate::service::unity::UnityConfig,
}

/// Where the access log is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLog {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
    /// Appended to this file.
    File(std::path::PathBuf),
}

impl AccessLog {
    /// `stdout`, `stderr` or a file path (relative to `dir`).
    pub fn parse(value: &str, dir: &std::path::Path) -> Self {
        match value {
            "stdout" | "-" => AccessLog::Stdout,
            "stderr" => AccessLog::Stderr,
            path => AccessLog::File(dir.join(path)),
        }
    }
}

/// What one server accepts from its clients (`[serve]` keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// Open connections per server (`max_connections`, default 1024); more are closed at once.
    pub max_connections: usize,
    /// Time a client has to send a request's headers, and the longest a kept-alive
    /// connection may sit idle (`header_timeout`, default `10s`).
    pub header_timeout: Duration,
    /// Bytes of one request body (`max_body_mb`, default 16 MiB); more is 413.
    pub max_body_bytes: usize,
    /// Concurrent gRPC streams on one Flight connection (`max_streams`, default 64).
    pub max_streams: u32,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            max_body_bytes: 16 << 20,
            max_streams: 64,
        }
    }
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            flight_addr: "127.0.0.1:50051".into(),
            http_addr: "127.0.0.1:8080".into(),
            keep_views: false,
            limits: ServeLimits::default(),
            run_lease_ttl: crate::scheduler::LEASE_TTL,
            tls: None,
            drain_timeout: Duration::from_secs(30),
            access_log: None,
            unity: crate::service::unity::UnityConfig::default(),
        }
    }
}

/// `[cache]`: the REST gateway's response cache.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Redis URL (`redis://host:port/db`); `REDIS_URL` when unset; in-process without either.
    pub url: Option<String>,
    /// How long an entry lives at most (default 1h); commits invalidate sooner.
    pub ttl: Duration,
    /// Entries the in-process cache holds at most (default 10,000).
    pub capacity: u64,
    /// How often served tables' versions are re-read (default 1s): the most a cached answer
    /// can lag a commit by another process that no gateway announced.
    pub refresh: Duration,
    /// The namespace of every key (default `assay:` and 12 hex digits of the SHA-256 of the
    /// lake root URL).
    pub prefix: Option<String>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            url: None,
            ttl: Duration::from_secs(3600),
            capacity: 10_000,
            refresh: Duration::from_secs(1),
            prefix: None,
        }
    }
}

/// `[auth]`: accounts, tokens and external identity.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Who may sign up (default `approval`).
    pub signup: SignupPolicy,
    /// The variable holding the JWT signing secret (default `ASSAY_JWT_SECRET`).
    pub jwt_secret_env: String,
    /// How long issued tokens live (default 12h).
    pub token_ttl: Duration,
    /// An external OIDC issuer whose tokens are accepted.
    pub oidc: Option<OidcSettings>,
    /// Login and signup throttling.
    pub throttle: ThrottleLimits,
    /// Names sign-ups may not take (`*` matches any run of characters), e.g. the names an
    /// issuer hands out.
    pub reserved_names: Vec<String>,
}

/// How many attempts a client or an account gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleLimits {
    /// Password logins per client address per minute (`[auth] logins_per_minute`).
    pub logins_per_minute: u32,
    /// Signups per client address per hour (`[auth] signups_per_hour`).
    pub signups_per_hour: u32,
    /// Failed logins of one account before it waits (`[auth] lockout_after`); the wait
    /// doubles with each further failure, from 1 s up to `max_lockout`.
    pub lockout_after: u32,
    /// The longest wait an account's failures can cause (`[auth] max_lockout`), so nobody
    /// can lock an account out for good by failing on purpose.
    pub max_lockout: Duration,
    /// Password checks (argon2) running at once (`[auth] concurrent_logins`); more wait
    /// their turn, up to 10 s.
    pub concurrent_checks: usize,
}

impl Default for ThrottleLimits {
    fn default() -> Self {
        ThrottleLimits {
            logins_per_minute: 30,
            signups_per_hour: 10,
            lockout_after: 5,
            max_lockout: Duration::from_secs(60),
            concurrent_checks: 4,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            signup: SignupPolicy::default(),
            jwt_secret_env: "ASSAY_JWT_SECRET".into(),
            token_ttl: Duration::from_secs(12 * 3600),
            oidc: None,
            throttle: ThrottleLimits::default(),
            reserved_names: Vec::new(),
        }
    }
}

/// Who may create an account with `POST /signup`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignupPolicy {
    /// Anyone; the account is inactive until an admin activates it.
    #[default]
    Approval,
    /// Anyone; the account is active at once (role `reader`).
    Open,
    /// Nobody; admins create accounts.
    Closed,
}

/// An external OIDC issuer whose tokens are accepted (`[auth.oidc]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcSettings {
    /// The `iss` the tokens must carry.
    pub issuer: String,
    /// The `aud` the tokens must carry.
    pub audience: String,
    /// Where the issuer publishes its signing keys.
    pub jwks_url: String,
    /// The claim that names the user (falls back to `sub`).
    pub username_claim: String,
    /// The claim holding the role (a string or a list); `default_role` when absent.
    pub role_claim: String,
    /// The role of OIDC users whose token names none.
    pub default_role: crate::identity::Role,
    /// How long fetched keys are trusted before they are fetched again.
    pub jwks_ttl: Duration,
}

/// A `[[users]]` entry; the password comes from the named environment variable.
#[derive(Debug, Clone)]
pub struct UserConfig {
    /// User name.
    pub name: String,
    /// Role.
    pub role: crate::identity::Role,
    /// Environment variable holding the password.
    pub password_env: String,
}

impl Project {
    /// Loads and validates `assay.toml` in `dir`.
    ///
    /// # Errors
    /// A missing or unreadable file, a TOML error, an unknown key, a wrong type, a missing
    /// SQL file, a bad glob or an invalid name: each names the file, key and line.
    pub fn load(dir: &Path) -> Result<Project> {
        let path = dir.join(PROJECT_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| EngineError::Config {
            file: path.display().to_string(),
            message: format!("cannot read project file: {e}"),
        })?;
        Self::from_toml(dir, &text)
    }

    /// Validates project text as if read from `dir/assay.toml`.
    ///
    /// # Errors
    /// See [`Project::load`].
    pub fn from_toml(dir: &Path, text: &str) -> Result<Project> {
        let file = dir.join(PROJECT_FILE).display().to_string();
        let raw: RawProject = toml::from_str(text).map_err(|e| EngineError::Config {
            file: file.clone(),
            message: e.to_string().trim_end().to_string(),
        })?;
        Validator {
            dir,
            file: &file,
            text,
        }
        .project(raw)
    }

    /// The bootstrap admin from `ASSAY_ADMIN_USER` / `ASSAY_ADMIN_PASSWORD` (looked up with
    /// `env`), when both are set.
    pub fn bootstrap_admin(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Option<(String, crate::identity::Secret)> {
        let name = env("ASSAY_ADMIN_USER").filter(|n| !n.is_empty())?;
        let password = env("ASSAY_ADMIN_PASSWORD").filter(|p| !p.is_empty())?;
        Some((name, crate::identity::Secret::new(password)))
    }

    /// The secret our JWTs are signed with: the variable `[auth] jwt_secret_env` names
    /// (default `ASSAY_JWT_SECRET`), looked up with `env`.
    ///
    /// # Errors
    /// The secret is set but shorter than 32 bytes.
    pub fn jwt_secret(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<crate::identity::Secret>> {
        let Some(secret) = env(&self.auth.jwt_secret_env).filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        if secret.len() < 32 {
            return Err(EngineError::Config {
                file: self.dir.join(PROJECT_FILE).display().to_string(),
                message: format!(
                    "auth.jwt_secret_env: `{}` must hold at least 32 bytes",
                    self.auth.jwt_secret_env
                ),
            });
        }
        Ok(Some(crate::identity::Secret::new(secret)))
    }

    /// The `[[users]]` entries, passwords looked up with `env`.
    ///
    /// # Errors
    /// A `[[users]]` entry whose password variable is unset or empty.
    pub fn local_users(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Vec<crate::identity::LocalUser>> {
        use crate::identity::{LocalUser, Secret};
        let mut out = Vec::new();
        for u in &self.users {
            let password = env(&u.password_env)
                .filter(|p| !p.is_empty())
                .ok_or_else(|| EngineError::Config {
                    file: self.dir.join(PROJECT_FILE).display().to_string(),
                    message: format!(
                        "user `{}`: environment variable `{}` (its password) is not set",
                        u.name, u.password_env
                    ),
                })?;
            out.push(LocalUser {
                name: u.name.clone(),
                password: Secret::new(password),
                role: u.role,
            });
        }
        Ok(out)
    }
}

struct Validator<'a> {
    dir: &'a Path,
    file: &'a str,
    text: &'a str,
}

impl Validator<'_> {
    fn line_of<T>(&self, s: &Spanned<T>) -> usize {
        let end = s.span().start.min(self.text.len());
        self.text[..end].matches('\n').count() + 1
    }

    fn err<T>(&self, at: &Spanned<T>, key: &str, message: impl std::fmt::Display) -> EngineError {
        EngineError::Config {
            file: self.file.to_string(),
            message: format!("line {}: `{key}`: {message}", self.line_of(at)),
        }
    }

    fn project(&self, raw: RawProject) -> Result<Project> {
        let name = raw.project.name.unwrap_or_else(|| {
            self.dir
                .canonicalize()
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "assay".into())
        });
        let mut run = self.run(raw.run)?;
        let mut serve = ServeConfig::default();
        if let Some(addr) = raw.serve.flight_addr {
            serve.flight_addr = addr;
        }
        serve.keep_views = raw.serve.keep_views.unwrap_or(false);
        if let Some(n) = raw.serve.max_connections.filter(|n| *n > 0) {
            serve.limits.max_connections = n;
        }
        if let Some(t) = raw.serve.header_timeout {
            serve.limits.header_timeout = humantime::parse_duration(t.get_ref())
                .map_err(|e| self.err(&t, "serve.header_timeout", e))?;
        }
        if let Some(v) = &raw.serve.run_lease_ttl {
            let key = "serve.run_lease_ttl";
            let ttl = humantime::parse_duration(v.get_ref()).map_err(|e| self.err(v, key, e))?;
            if ttl < Duration::from_secs(1) {
                return Err(self.err(v, key, "at least 1s"));
            }
            serve.run_lease_ttl = ttl;
        }
        if let Some(mb) = raw.serve.max_body_mb.filter(|n| *n > 0) {
            serve.limits.max_body_bytes = mb.saturating_mul(1 << 20);
        }
        if let Some(n) = raw.serve.max_streams.filter(|n| *n > 0) {
            serve.limits.max_streams = n;
        }
        if let Some(addr) = raw.serve.http_addr {
            serve.http_addr = addr;
        }
        if let Some(d) = self.duration(&raw.serve.drain_timeout, "serve.drain_timeout")? {
            serve.drain_timeout = d;
        }
        if let Some(target) = raw.serve.access_log.as_deref().filter(|t| !t.is_empty()) {
            serve.access_log = Some(AccessLog::parse(target, self.dir));
        }
        serve.unity.catalog_name = match &raw.serve.catalog_name {
            Some(n) => {
                let ok = !n.get_ref().is_empty()
                    && n.get_ref().len() <= 255
                    && n.get_ref()
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if !ok {
                    return Err(self.err(
                        n,
                        "serve.catalog_name",
                        "letters, digits, `_` and `-` only (1 to 255)",
                    ));
                }
                n.get_ref().clone()
            }
            None => name.clone(),
        };
        if let Some(c) = &raw.serve.credentials {
            let vend = &mut serve.unity.vend;
            if let (Some(v), Some(ttl)) = (&c.ttl, self.duration(&c.ttl, "serve.credentials.ttl")?)
            {
                if !(Duration::from_secs(900)..=Duration::from_secs(43_200)).contains(&ttl) {
                    return Err(self.err(v, "serve.credentials.ttl", "from 15m to 12h"));
                }
                vend.ttl = ttl;
            }
            vend.s3_role_arn = c.s3_role_arn.clone().filter(|s| !s.is_empty());
            vend.s3_sts_endpoint = c.s3_sts_endpoint.clone().filter(|s| !s.is_empty());
            vend.share_lake_keys = c.share_lake_keys;
        }
        if let Some(t) = &raw.serve.tls {
            let path = |v: &Spanned<String>| self.dir.join(v.get_ref());
            serve.tls = Some(crate::tls::TlsFiles {
                cert: path(&t.cert),
                key: path(&t.key),
                client_ca: t.client_ca.as_ref().map(path),
            });
        }
        let mut cache = CacheConfig {
            url: raw.cache.url,
            ..CacheConfig::default()
        };
        if let Some(ttl) = self.duration(&raw.cache.ttl, "cache.ttl")? {
            cache.ttl = ttl;
        }
        if let Some(c) = raw.cache.capacity {
            cache.capacity = c;
        }
        if let Some(r) = self.duration(&raw.cache.refresh, "cache.refresh")? {
            if r.is_zero() || r > Duration::from_secs(60) {
                return Err(EngineError::Config {
                    file: self.file.to_string(),
                    message: "`cache.refresh`: between 1ms and 60s".into(),
                });
            }
            cache.refresh = r;
        }
        if let Some(p) = raw.cache.prefix {
            if p.is_empty() || p.chars().any(|c| c.is_whitespace()) {
                return Err(EngineError::Config {
                    file: self.file.to_string(),
                    message: "`cache.prefix`: a non-empty name without spaces".into(),
                });
            }
            cache.prefix = Some(p);
        }
        let auth = self.auth(raw.auth)?;
        let query = self.query(raw.query)?;
        let users = raw
            .users
            .into_iter()
            .map(|u| UserConfig {
                name: u.name,
                role: u.role,
                password_env: u.password_env,
            })
            .collect();
        let storage = self.storage(&raw.lake)?;
        let lake_root = raw
            .lake
            .root
            .map(Spanned::into_inner)
            .unwrap_or_else(|| "./lakehouse".into());
        let mut seen = std::collections::HashSet::new();
        let mut options = |layer: Layer, name: &str, opts: StepOptions| {
            if opts != StepOptions::default() {
                run.steps.insert(TableId::new(layer, name), opts);
            }
        };
        let mut maintenance = self.maintenance(raw.maintenance)?;
        let mut layout = |layer: Layer, name: &str, l: raw::RawLayout, key: &str| -> Result<()> {
            if l.zorder_by.is_empty() && l.maintenance.is_none() {
                return Ok(());
            }
            maintenance.configured |= l.maintenance.is_some();
            let mut m = match &l.maintenance {
                Some(r) => {
                    self.table_maintenance(&maintenance.defaults, r, &format!("{key}.maintenance"))?
                }
                None => maintenance.defaults.clone(),
            };
            m.zorder_by = l.zorder_by;
            maintenance.tables.insert(TableId::new(layer, name), m);
            Ok(())
        };
        let mut bronze = Vec::new();
        for (i, mut b) in raw.bronze.into_iter().enumerate() {
            let opts = self.step_options(b.take_options(), &format!("bronze[{i}]"))?;
            options(Layer::Bronze, b.name.get_ref(), opts);
            let l = b.take_layout();
            layout(Layer::Bronze, b.name.get_ref(), l, &format!("bronze[{i}]"))?;
            bronze.push(self.bronze(i, b, &mut seen)?);
        }
        let mut silver = Vec::new();
        for (i, mut s) in raw.silver.into_iter().enumerate() {
            let opts = self.step_options(s.take_options(), &format!("silver[{i}]"))?;
            options(Layer::Silver, s.name.get_ref(), opts);
            let l = s.take_layout();
            layout(Layer::Silver, s.name.get_ref(), l, &format!("silver[{i}]"))?;
            silver.push(self.silver(i, s, &mut seen)?);
        }
        let mut raw_gold = raw.gold;
        for (i, g) in raw_gold.iter_mut().enumerate() {
            let opts = self.step_options(g.take_options(), &format!("gold[{i}]"))?;
            options(Layer::Gold, g.name.get_ref(), opts);
            let l = g.take_layout();
            layout(Layer::Gold, g.name.get_ref(), l, &format!("gold[{i}]"))?;
        }
        let modes: Vec<_> = raw_gold
            .iter()
            .map(|g| (g.name.get_ref().clone(), g.engine.clone()))
            .collect();
        let engine = self.engine(raw.engine, &modes)?;
        let gold = self.gold(raw_gold, &mut seen)?;
        let schedules = self.schedules(raw.schedule)?;
        let alerts = self.alerts(raw.alert)?;
        Ok(Project {
            name,
            dir: self.dir.to_path_buf(),
            lake_root,
            storage,
            run,
            serve,
            query,
            cache,
            auth,
            users,
            bronze,
            silver,
            gold,
            schedules,
            alerts,
            maintenance,
            engine,
        })
    }

    /// The `[query]` limits: every one positive, the server's memory at least a query's.
    fn query(&self, raw: raw::RawQuery) -> Result<crate::query::QueryLimits> {
        let mut q = crate::query::QueryLimits::default();
        let positive = |key: &str, v: Option<usize>| -> Result<Option<usize>, EngineError> {
            match v {
                Some(0) => Err(EngineError::Config {
                    file: self.file.to_string(),
                    message: format!("`query.{key}`: must be at least 1"),
                }),
                other => Ok(other),
            }
        };
        const MIB: usize = 1 << 20;
        if let Some(mb) = positive("memory_mb", raw.memory_mb)? {
            q.memory_bytes = mb.saturating_mul(MIB);
            q.server_memory_bytes = q.server_memory_bytes.max(q.memory_bytes);
        }
        if let Some(mb) = positive("server_memory_mb", raw.server_memory_mb)? {
            q.server_memory_bytes = mb.saturating_mul(MIB);
            if q.server_memory_bytes < q.memory_bytes {
                return Err(EngineError::Config {
                    file: self.file.to_string(),
                    message: format!(
                        "`query.server_memory_mb` = {mb} is less than `query.memory_mb` = {}",
                        q.memory_bytes / MIB
                    ),
                });
            }
        }
        if let Some(t) = raw.timeout {
            q.timeout = humantime::parse_duration(t.get_ref())
                .map_err(|e| self.err(&t, "query.timeout", e))?;
        }
        q.max_rows = positive("max_rows", raw.max_rows)?;
        q.max_result_bytes =
            positive("max_result_mb", raw.max_result_mb)?.map(|m| m.saturating_mul(MIB));
        if let Some(n) = positive("max_sql_bytes", raw.max_sql_bytes)? {
            q.sql.max_bytes = n;
        }
        if let Some(n) = positive("max_depth", raw.max_depth)? {
            q.sql.max_depth = n;
        }
        if let Some(n) = positive("max_filters", raw.max_filters)? {
            q.max_filters = n;
        }
        if let Some(n) = positive("max_concurrent", raw.max_concurrent)? {
            q.max_concurrent = n;
        }
        if let Some(n) = positive("max_concurrent_per_user", raw.max_concurrent_per_user)? {
            q.max_concurrent_per_user = n;
        }
        if let Some(mb) = raw.spill_mb {
            q.spill_bytes = mb.saturating_mul(MIB as u64);
        }
        if let Some(n) = positive("threads", raw.threads)? {
            q.threads = n;
        }
        Ok(q)
    }

    fn auth(&self, raw: raw::RawAuth) -> Result<AuthConfig> {
        let mut auth = AuthConfig::default();
        if let Some(s) = raw.signup {
            auth.signup = s;
        }
        if let Some(v) = raw.jwt_secret_env {
            auth.jwt_secret_env = v;
        }
        if let Some(t) = self.duration(&raw.token_ttl, "auth.token_ttl")? {
            auth.token_ttl = t;
        }
        let t = &mut auth.throttle;
        if let Some(n) = raw.logins_per_minute.filter(|n| *n > 0) {
            t.logins_per_minute = n;
        }
        if let Some(n) = raw.signups_per_hour.filter(|n| *n > 0) {
            t.signups_per_hour = n;
        }
        if let Some(n) = raw.lockout_after.filter(|n| *n > 0) {
            t.lockout_after = n;
        }
        if let Some(d) = self.duration(&raw.max_lockout, "auth.max_lockout")? {
            t.max_lockout = d;
        }
        if let Some(n) = raw.concurrent_logins.filter(|n| *n > 0) {
            t.concurrent_checks = n;
        }
        auth.reserved_names = raw.reserved_names.unwrap_or_default();
        if let Some(o) = raw.oidc {
            let jwks_ttl = self
                .duration(&o.jwks_ttl, "auth.oidc.jwks_ttl")?
                .unwrap_or(Duration::from_secs(600));
            auth.oidc = Some(OidcSettings {
                issuer: o.issuer,
                audience: o.audience,
                jwks_url: o.jwks_url,
                username_claim: o
                    .username_claim
                    .unwrap_or_else(|| "preferred_username".into()),
                role_claim: o.role_claim.unwrap_or_else(|| "assay_role".into()),
                default_role: o.default_role.unwrap_or(crate::identity::Role::Reader),
                jwks_ttl,
            });
        }
        Ok(auth)
    }

    fn duration(&self, value: &Option<Spanned<String>>, key: &str) -> Result<Option<Duration>> {
        value
            .as_ref()
            .map(|v| humantime::parse_duration(v.get_ref()).map_err(|e| self.err(v, key, e)))
            .transpose()
    }

    fn storage(&self, raw: &raw::RawLake) -> Result<crate::storage::StorageSettings> {
        use crate::identity::Secret;
        use crate::storage::{AzureSettings, S3Settings, StorageSettings};
        let s3 = &raw.s3;
        let az = &raw.azure;
        Ok(StorageSettings {
            s3: S3Settings {
                region: s3.region.clone(),
                endpoint: s3.endpoint.clone(),
                allow_http: s3.allow_http,
                access_key_id: s3.access_key_id.clone(),
                secret_access_key: s3.secret_access_key.clone().map(Secret::new),
                session_token: s3.session_token.clone().map(Secret::new),
                virtual_hosted_style: s3.virtual_hosted_style,
            },
            azure: AzureSettings {
                account: az.account.clone(),
                access_key: az.access_key.clone().map(Secret::new),
                sas_token: az.sas_token.clone().map(Secret::new),
                endpoint: az.endpoint.clone(),
                use_emulator: az.use_emulator,
                allow_http: az.allow_http,
            },
            timeout: self.duration(&raw.timeout, "lake.timeout")?,
            connect_timeout: self.duration(&raw.connect_timeout, "lake.connect_timeout")?,
            max_retries: raw.max_retries,
            retry_timeout: self.duration(&raw.retry_timeout, "lake.retry_timeout")?,
        })
    }

    fn run(&self, raw: raw::RawRun) -> Result<RunConfig> {
        let mut run = RunConfig::default();
        if let Some(p) = raw.parallelism {
            run.parallelism = p.max(1);
        }
        if let Some(r) = raw.retries {
            run.retries = r;
        }
        if let Some(b) = raw.retry_backoff {
            run.retry_backoff = humantime::parse_duration(b.get_ref())
                .map_err(|e| self.err(&b, "run.retry_backoff", e))?;
        }
        if let Some(t) = raw.step_timeout {
            run.step_timeout = humantime::parse_duration(t.get_ref())
                .map_err(|e| self.err(&t, "run.step_timeout", e))?;
        }
        Ok(run)
    }

    fn name(
        &self,
        name: &Spanned<String>,
        key: &str,
        seen: &mut std::collections::HashSet<TableId>,
        layer: Layer,
    ) -> Result<()> {
        let n = name.get_ref();
        let valid = !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && !n.contains("__");
        if !valid {
            return Err(self.err(
                name,
                &format!("{key}.name"),
                format!("`{n}` is not a valid table name (use a-z, 0-9 and single `_`)"),
            ));
        }
        if !seen.insert(TableId::new(layer, n)) {
            return Err(self.err(
                name,
                &format!("{key}.name"),
                format!("table {layer}.{n} is defined twice"),
            ));
        }
        Ok(())
    }

    /// Resolves a source glob to a URL glob; local paths become `file://` URLs.
    fn glob(&self, path: &Spanned<String>, key: &str) -> Result<String> {
        let p = path.get_ref();
        let url = if p.contains("://") {
            p.clone()
        } else {
            let abs = if Path::new(p).is_absolute() {
                PathBuf::from(p)
            } else {
                let dir = self
                    .dir
                    .canonicalize()
                    .map_err(|e| self.err(path, key, format!("project directory: {e}")))?;
                dir.join(p)
            };
            format!("file://{}", abs.display())
        };
        globset::Glob::new(&url).map_err(|e| self.err(path, key, format!("bad glob: {e}")))?;
        Ok(url)
    }

    fn sql_file(&self, rel: &Spanned<String>, key: &str) -> Result<String> {
        let path = self.dir.join(rel.get_ref());
        std::fs::read_to_string(&path).map_err(|e| {
            self.err(
                rel,
                key,
                format!("cannot read SQL file `{}`: {e}", rel.get_ref()),
            )
        })
    }
}

#[cfg(test)]
mod tests;
