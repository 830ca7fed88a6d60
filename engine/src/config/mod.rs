//! The project file (`assay.toml`): parsed once, validated into typed config.
//!
//! Unknown keys, wrong types, missing SQL files and bad globs are errors that name the
//! key, the file and the line.

mod raw;
mod types;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

pub use types::{ColumnType, parse_column_type};

use crate::error::{EngineError, Result};
use crate::table::{Layer, TableId};
use raw::{RawExpectation, RawProject, RawSource};

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
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            parallelism: 4,
            retries: 2,
            retry_backoff: Duration::from_secs(1),
            step_timeout: Duration::from_secs(30 * 60),
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
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            flight_addr: "127.0.0.1:50051".into(),
            http_addr: "127.0.0.1:8080".into(),
            keep_views: false,
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
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            url: None,
            ttl: Duration::from_secs(3600),
            capacity: 10_000,
        }
    }
}

/// `[auth]`: accounts, tokens and external identity.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Who may sign up (default `approval`).
    pub signup: crate::access::SignupPolicy,
    /// The variable holding the JWT signing secret (default `ASSAY_JWT_SECRET`).
    pub jwt_secret_env: String,
    /// How long issued tokens live (default 12h).
    pub token_ttl: Duration,
    /// An external OIDC issuer whose tokens are accepted.
    pub oidc: Option<crate::access::OidcSettings>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            signup: crate::access::SignupPolicy::default(),
            jwt_secret_env: "ASSAY_JWT_SECRET".into(),
            token_ttl: Duration::from_secs(12 * 3600),
            oidc: None,
        }
    }
}

/// A `[[users]]` entry; the password comes from the named environment variable.
#[derive(Debug, Clone)]
pub struct UserConfig {
    /// User name.
    pub name: String,
    /// Role.
    pub role: crate::access::Role,
    /// Environment variable holding the password.
    pub password_env: String,
}

/// What bronze does with a line it cannot parse.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Stop the step with file, line and reason (default).
    #[default]
    Fail,
    /// Write the raw line to `bronze.<name>__rejected` and go on.
    Quarantine,
}

/// File format of a files source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    /// Decide per file by extension: `.csv`/`.tsv`, `.ndjson`/`.jsonl`/`.json`, `.parquet`.
    #[default]
    Auto,
    /// Delimited text.
    Csv,
    /// One JSON object per line.
    Ndjson,
    /// Apache Parquet.
    Parquet,
}

/// CSV parsing options.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CsvOptions {
    /// The first line names the columns (default: true).
    pub header: bool,
    /// Field delimiter (default: `,`).
    pub delimiter: char,
    /// Quote character (default: `"`).
    pub quote: char,
    /// A field equal to this string is NULL (default: empty string).
    pub null: String,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            header: true,
            delimiter: ',',
            quote: '"',
            null: String::new(),
        }
    }
}

/// One bronze table and its source.
#[derive(Debug, Clone)]
pub struct BronzeConfig {
    /// Table name inside the bronze layer.
    pub name: String,
    /// Where rows come from.
    pub source: SourceConfig,
    /// What to do with malformed input.
    pub on_error: OnError,
}

/// A bronze source.
#[derive(Debug, Clone)]
pub enum SourceConfig {
    /// Files selected by a glob under the project directory or a lake-supported URL.
    Files {
        /// The glob, as a URL (`file:///…/*.csv`, `s3://…`) after resolution.
        pattern: String,
        /// File format.
        format: FileFormat,
        /// CSV options.
        csv: CsvOptions,
    },
}

/// What happens to a row that breaks an expectation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Keep the row, count the violation (default).
    #[default]
    Warn,
    /// Drop the row, count it.
    Drop,
    /// Move the row to `silver.<name>__quarantine` with the failed rule names.
    Quarantine,
    /// Fail the step; silver stays at its previous version.
    Fail,
}

impl Action {
    /// The action's name as written in the project file.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Warn => "warn",
            Action::Drop => "drop",
            Action::Quarantine => "quarantine",
            Action::Fail => "fail",
        }
    }
}

/// One expectation on a silver table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    /// Rule name.
    pub name: String,
    /// SQL boolean expression; a row passes only when it is true.
    pub rule: String,
    /// What to do with a row that fails.
    pub action: Action,
}

/// Where a silver table reads from.
#[derive(Debug, Clone)]
pub enum SilverInput {
    /// One bronze (or silver) table as it is.
    Table(TableId),
    /// A SQL query over bronze tables.
    Sql {
        /// Path of the SQL file, relative to the project.
        file: String,
        /// The query text.
        text: String,
    },
}

/// One silver table.
#[derive(Debug, Clone)]
pub struct SilverConfig {
    /// Table name inside the silver layer.
    pub name: String,
    /// Input table or query.
    pub input: SilverInput,
    /// The streamed input: read incrementally, only the commits not yet consumed. Every
    /// other table the SQL references is read whole at its latest version.
    pub stream: TableId,
    /// Every table the input reads (the stream first).
    pub upstreams: Vec<TableId>,
    /// Declared column types in output order (empty: keep the input's columns).
    pub columns: Vec<(String, ColumnType)>,
    /// Dedup and MERGE keys (empty: append-only).
    pub keys: Vec<String>,
    /// Column that orders versions of a key; the latest wins.
    pub sequence_by: Option<String>,
    /// Expectations in declared order.
    pub expectations: Vec<Expectation>,
}

/// How an incremental gold model applies the rows computed from its stream's changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// MERGE by `unique_key`: new keys inserted, existing keys updated.
    Merge,
    /// Appended.
    Append,
    /// Only the partitions the new rows touch are recomputed and replaced.
    Partitions,
}

impl Strategy {
    /// The strategy's name as written in the project file.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Merge => "merge",
            Strategy::Append => "append",
            Strategy::Partitions => "partitions",
        }
    }
}

/// `[[gold]] incremental`: the model reads only its stream's changes since the last run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incremental {
    /// How the result is applied.
    pub strategy: Strategy,
    /// The MERGE key (`merge` only).
    pub unique_key: Vec<String>,
    /// The streamed input; every other table the SQL reads is read whole.
    pub stream: TableId,
}

/// One gold model.
#[derive(Debug, Clone)]
pub struct GoldConfig {
    /// Table name inside the gold layer.
    pub name: String,
    /// Path of the SQL file, relative to the project.
    pub file: String,
    /// The query text.
    pub sql: String,
    /// Partition columns.
    pub partition_by: Vec<String>,
    /// Incremental materialization; `None`: a full rebuild whenever an upstream changed.
    pub incremental: Option<Incremental>,
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
    ) -> Option<(String, crate::access::Secret)> {
        let name = env("ASSAY_ADMIN_USER").filter(|n| !n.is_empty())?;
        let password = env("ASSAY_ADMIN_PASSWORD").filter(|p| !p.is_empty())?;
        Some((name, crate::access::Secret::new(password)))
    }

    /// The secret our JWTs are signed with: the variable `[auth] jwt_secret_env` names
    /// (default `ASSAY_JWT_SECRET`), looked up with `env`.
    ///
    /// # Errors
    /// The secret is set but shorter than 32 bytes.
    pub fn jwt_secret(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<crate::access::Secret>> {
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
        Ok(Some(crate::access::Secret::new(secret)))
    }

    /// The `[[users]]` entries, passwords looked up with `env`.
    ///
    /// # Errors
    /// A `[[users]]` entry whose password variable is unset or empty.
    pub fn local_users(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Vec<crate::access::LocalUser>> {
        use crate::access::{LocalUser, Secret};
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
        let run = self.run(raw.run)?;
        let mut serve = ServeConfig::default();
        if let Some(addr) = raw.serve.flight_addr {
            serve.flight_addr = addr;
        }
        serve.keep_views = raw.serve.keep_views.unwrap_or(false);
        if let Some(addr) = raw.serve.http_addr {
            serve.http_addr = addr;
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
        let auth = self.auth(raw.auth)?;
        let mut query = crate::query::QueryLimits::default();
        if let Some(mb) = raw.query.memory_mb {
            query.memory_bytes = mb.saturating_mul(1 << 20);
        }
        if let Some(t) = raw.query.timeout {
            query.timeout = humantime::parse_duration(t.get_ref())
                .map_err(|e| self.err(&t, "query.timeout", e))?;
        }
        query.max_rows = raw.query.max_rows;
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
        let mut bronze = Vec::new();
        for (i, b) in raw.bronze.into_iter().enumerate() {
            let key = format!("bronze[{i}]");
            self.name(&b.name, &key, &mut seen, Layer::Bronze)?;
            let source = match b.source {
                RawSource::Files { path, format, csv } => {
                    // Values inside the tagged `source` table carry no span: report the
                    // line of the table's name.
                    let path = Spanned::new(b.name.span(), path);
                    let pattern = self.glob(&path, &format!("{key}.source.path"))?;
                    SourceConfig::Files {
                        pattern,
                        format,
                        csv,
                    }
                }
            };
            bronze.push(BronzeConfig {
                name: b.name.into_inner(),
                source,
                on_error: b.on_error,
            });
        }
        let mut silver = Vec::new();
        for (i, s) in raw.silver.into_iter().enumerate() {
            silver.push(self.silver(i, s, &mut seen)?);
        }
        let gold = self.gold(raw.gold, &mut seen)?;
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
        })
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
        if let Some(o) = raw.oidc {
            let jwks_ttl = self
                .duration(&o.jwks_ttl, "auth.oidc.jwks_ttl")?
                .unwrap_or(Duration::from_secs(600));
            auth.oidc = Some(crate::access::OidcSettings {
                issuer: o.issuer,
                audience: o.audience,
                jwks_url: o.jwks_url,
                username_claim: o
                    .username_claim
                    .unwrap_or_else(|| "preferred_username".into()),
                role_claim: o.role_claim.unwrap_or_else(|| "assay_role".into()),
                default_role: o.default_role.unwrap_or(crate::access::Role::Reader),
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
        use crate::access::Secret;
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

    fn silver(
        &self,
        i: usize,
        s: raw::RawSilver,
        seen: &mut std::collections::HashSet<TableId>,
    ) -> Result<SilverConfig> {
        let key = format!("silver[{i}]");
        self.name(&s.name, &key, seen, Layer::Silver)?;
        let input = match (&s.from, &s.sql) {
            (Some(from), None) => {
                let id = TableId::parse(from.get_ref())
                    .map_err(|m| self.err(from, &format!("{key}.from"), m))?;
                SilverInput::Table(id)
            }
            (None, Some(sql)) => SilverInput::Sql {
                file: sql.get_ref().clone(),
                text: self.sql_file(sql, &format!("{key}.sql"))?,
            },
            (Some(from), Some(_)) => {
                return Err(self.err(from, &key, "set either `from` or `sql`, not both"));
            }
            (None, None) => {
                let default = format!("sql/silver/{}.sql", s.name.get_ref());
                if !self.dir.join(&default).is_file() {
                    return Err(self.err(
                        &s.name,
                        &key,
                        format!("needs `from = \"bronze.<table>\"`, `sql = \"...\"` or a file `{default}`"),
                    ));
                }
                let text = self.sql_file(&Spanned::new(s.name.span(), default.clone()), &key)?;
                SilverInput::Sql {
                    file: default,
                    text,
                }
            }
        };
        let model = format!("silver.{}", s.name.get_ref());
        let (refs, source) = match &input {
            SilverInput::Table(id) => (vec![id.clone()], "`from`".to_string()),
            SilverInput::Sql { file, text } => (
                crate::dag::sql_references(&model, file, text)?,
                format!("the SQL of `{file}`"),
            ),
        };
        let (stream, upstreams) =
            self.stream(&key, &model, &s.name, s.stream.as_ref(), refs, &source)?;
        let mut columns = Vec::new();
        for (col, ty) in s.columns {
            let parsed = parse_column_type(ty.get_ref())
                .map_err(|m| self.err(&ty, &format!("{key}.columns.{col}"), m))?;
            columns.push((col, parsed));
        }
        if s.sequence_by.is_some() && s.keys.is_empty() {
            return Err(self.err(&s.name, &key, "`sequence_by` needs `keys`"));
        }
        let expectations = s
            .expect
            .into_iter()
            .map(|(name, e)| match e {
                RawExpectation::Rule(rule) => Expectation {
                    name,
                    rule,
                    action: s.on_violation,
                },
                RawExpectation::Full(f) => Expectation {
                    name,
                    rule: f.rule,
                    action: f.action,
                },
            })
            .collect();
        Ok(SilverConfig {
            name: s.name.into_inner(),
            input,
            stream,
            upstreams,
            columns,
            keys: s.keys,
            sequence_by: s.sequence_by,
            expectations,
        })
    }

    /// The streamed input of an entry and all its upstreams (the stream first): the `stream`
    /// key, which may be left out when the entry reads one table. `refs` are the tables the
    /// entry reads, `source` says where they come from (for messages).
    fn stream(
        &self,
        key: &str,
        model: &str,
        name: &Spanned<String>,
        stream: Option<&Spanned<String>>,
        refs: Vec<TableId>,
        source: &str,
    ) -> Result<(TableId, Vec<TableId>)> {
        let names = || {
            refs.iter()
                .map(|r| format!("`{r}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let stream = match stream {
            Some(st) => {
                let id = TableId::parse(st.get_ref())
                    .map_err(|m| self.err(st, &format!("{key}.stream"), m))?;
                if !refs.contains(&id) {
                    return Err(self.err(
                        st,
                        &format!("{key}.stream"),
                        format!("`{id}` is not read by {source} (it reads: {})", names()),
                    ));
                }
                id
            }
            None => match refs.as_slice() {
                [one] => one.clone(),
                [] => {
                    return Err(self.err(
                        name,
                        key,
                        format!("{model} reads no table, so it has no input to stream"),
                    ));
                }
                _ => {
                    return Err(self.err(
                        name,
                        &format!("{key}.stream"),
                        format!(
                            "{model} reads several tables ({}): set `stream` to the one read incrementally; the others are read whole",
                            names()
                        ),
                    ));
                }
            },
        };
        let mut upstreams = vec![stream.clone()];
        upstreams.extend(refs.into_iter().filter(|r| *r != stream));
        Ok((stream, upstreams))
    }

    /// A gold entry's `incremental` table, validated against its SQL and `partition_by`.
    fn incremental(
        &self,
        key: &str,
        g: &raw::RawGold,
        file: &str,
        sql: &str,
    ) -> Result<Option<Incremental>> {
        let model = format!("gold.{}", g.name.get_ref());
        let Some(inc) = &g.incremental else {
            if let Some(st) = &g.stream {
                return Err(self.err(
                    st,
                    &format!("{key}.stream"),
                    "only an `incremental` model has a streamed input",
                ));
            }
            return Ok(None);
        };
        let ikey = format!("{key}.incremental");
        let raw = inc.get_ref();
        match raw.strategy {
            Strategy::Merge if raw.unique_key.is_empty() => {
                return Err(self.err(
                    inc,
                    &format!("{ikey}.unique_key"),
                    "strategy `merge` needs `unique_key`, the columns that identify a row",
                ));
            }
            Strategy::Append | Strategy::Partitions if !raw.unique_key.is_empty() => {
                return Err(self.err(
                    inc,
                    &format!("{ikey}.unique_key"),
                    format!(
                        "only strategy `merge` takes `unique_key` (this is `{}`)",
                        raw.strategy.as_str()
                    ),
                ));
            }
            Strategy::Partitions if g.partition_by.is_empty() => {
                return Err(self.err(
                    inc,
                    &format!("{ikey}.strategy"),
                    "strategy `partitions` needs `partition_by`: the partitions it recomputes",
                ));
            }
            _ => {}
        }
        let refs = crate::dag::sql_references(&model, file, sql)?;
        let source = format!("the SQL of `{file}`");
        let (stream, _) = self.stream(key, &model, &g.name, g.stream.as_ref(), refs, &source)?;
        Ok(Some(Incremental {
            strategy: raw.strategy,
            unique_key: raw.unique_key.clone(),
            stream,
        }))
    }

    /// `[[gold]]` entries plus every `sql/gold/*.sql` not named by one.
    fn gold(
        &self,
        raw: Vec<raw::RawGold>,
        seen: &mut std::collections::HashSet<TableId>,
    ) -> Result<Vec<GoldConfig>> {
        let mut gold = Vec::new();
        for (i, g) in raw.into_iter().enumerate() {
            let key = format!("gold[{i}]");
            self.name(&g.name, &key, seen, Layer::Gold)?;
            let rel = g.sql.clone().unwrap_or_else(|| {
                Spanned::new(g.name.span(), format!("sql/gold/{}.sql", g.name.get_ref()))
            });
            let sql = self.sql_file(&rel, &format!("{key}.sql"))?;
            let incremental = self.incremental(&key, &g, rel.get_ref(), &sql)?;
            gold.push(GoldConfig {
                name: g.name.into_inner(),
                file: rel.into_inner(),
                sql,
                partition_by: g.partition_by,
                incremental,
            });
        }
        let named: std::collections::HashSet<String> = gold
            .iter()
            .map(|g| g.file.trim_start_matches("./").to_string())
            .collect();
        let mut discovered = Vec::new();
        if let Ok(entries) = std::fs::read_dir(self.dir.join("sql/gold")) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().and_then(|e| e.to_str()) != Some("sql") {
                    continue;
                }
                let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
                    continue;
                };
                let rel = format!("sql/gold/{stem}.sql");
                if named.contains(&rel) || seen.contains(&TableId::new(Layer::Gold, stem)) {
                    continue;
                }
                discovered.push((stem.to_string(), rel));
            }
        }
        discovered.sort();
        for (stem, rel) in discovered {
            let spanned = Spanned::new(0..0, stem.clone());
            self.name(&spanned, &rel, seen, Layer::Gold)
                .map_err(|_| EngineError::Config {
                    file: rel.clone(),
                    message: format!("`{stem}` is not a valid gold table name"),
                })?;
            let sql =
                std::fs::read_to_string(self.dir.join(&rel)).map_err(|e| EngineError::Config {
                    file: rel.clone(),
                    message: format!("cannot read: {e}"),
                })?;
            gold.push(GoldConfig {
                name: stem,
                file: rel,
                sql,
                partition_by: Vec::new(),
                incremental: None,
            });
        }
        Ok(gold)
    }
}

#[cfg(test)]
mod tests;
