//! The project file as written: serde types that reject unknown keys.

use indexmap::IndexMap;

use serde::Deserialize;
use toml::Spanned;

/// `assay.toml` as parsed, before validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProject {
    #[serde(default)]
    pub(crate) project: RawProjectSection,
    #[serde(default)]
    pub(crate) lake: RawLake,
    #[serde(default)]
    pub(crate) run: RawRun,
    #[serde(default)]
    pub(crate) serve: RawServe,
    #[serde(default)]
    pub(crate) query: RawQuery,
    #[serde(default)]
    pub(crate) cache: RawCache,
    #[serde(default)]
    pub(crate) auth: RawAuth,
    #[serde(default)]
    pub(crate) users: Vec<RawUser>,
    #[serde(default)]
    pub(crate) bronze: Vec<RawBronze>,
    #[serde(default)]
    pub(crate) silver: Vec<RawSilver>,
    #[serde(default)]
    pub(crate) gold: Vec<RawGold>,
    #[serde(default)]
    pub(crate) schedule: Vec<RawSchedule>,
    #[serde(default)]
    pub(crate) alert: Vec<RawAlert>,
    #[serde(default)]
    pub(crate) maintenance: super::maintenance::RawMaintenance,
    #[serde(default)]
    pub(crate) engine: super::engine::RawEngine,
}

/// An `[[alert]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAlert {
    pub(crate) name: Option<String>,
    pub(crate) url: Spanned<String>,
    pub(crate) on: Option<Vec<super::AlertEvent>>,
    #[serde(default)]
    pub(crate) headers: IndexMap<String, String>,
    #[serde(default)]
    pub(crate) headers_env: IndexMap<String, String>,
    pub(crate) retries: Option<u32>,
    pub(crate) backoff: Option<Spanned<String>>,
    pub(crate) timeout: Option<Spanned<String>>,
}

/// `tags`, `retries`, `retry_backoff` and `timeout` of a bronze, silver or gold entry.
#[derive(Debug)]
pub(crate) struct RawStepOptions {
    pub(crate) tags: Spanned<Vec<String>>,
    pub(crate) retries: Option<u32>,
    pub(crate) retry_backoff: Option<Spanned<String>>,
    pub(crate) timeout: Option<Spanned<String>>,
}

/// A `[[schedule]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSchedule {
    pub(crate) name: Spanned<String>,
    pub(crate) cron: Spanned<String>,
    pub(crate) timezone: Option<Spanned<String>>,
    pub(crate) select: Option<Spanned<String>>,
    pub(crate) exclude: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) full_refresh: bool,
    #[serde(default)]
    pub(crate) catch_up: super::CatchUp,
    #[serde(default)]
    pub(crate) task: super::schedule::Task,
}

fn no_tags() -> Spanned<Vec<String>> {
    Spanned::new(0..0, Vec::new())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProjectSection {
    pub(crate) name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLake {
    pub(crate) root: Option<Spanned<String>>,
    pub(crate) timeout: Option<Spanned<String>>,
    pub(crate) connect_timeout: Option<Spanned<String>>,
    pub(crate) max_retries: Option<u32>,
    pub(crate) retry_timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) s3: RawS3,
    #[serde(default)]
    pub(crate) azure: RawAzure,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawS3 {
    pub(crate) region: Option<String>,
    pub(crate) endpoint: Option<String>,
    pub(crate) allow_http: Option<bool>,
    pub(crate) access_key_id: Option<String>,
    pub(crate) secret_access_key: Option<String>,
    pub(crate) session_token: Option<String>,
    pub(crate) virtual_hosted_style: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAzure {
    pub(crate) account: Option<String>,
    pub(crate) access_key: Option<String>,
    pub(crate) sas_token: Option<String>,
    pub(crate) endpoint: Option<String>,
    pub(crate) use_emulator: Option<bool>,
    pub(crate) allow_http: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRun {
    pub(crate) parallelism: Option<usize>,
    pub(crate) retries: Option<u32>,
    pub(crate) retry_backoff: Option<Spanned<String>>,
    pub(crate) step_timeout: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBronze {
    pub(crate) name: Spanned<String>,
    pub(crate) source: RawSource,
    #[serde(default)]
    pub(crate) on_error: super::OnError,
    #[serde(default)]
    pub(crate) schema_evolution: super::SchemaEvolution,
    #[serde(default)]
    pub(crate) partition_by: Vec<String>,
    #[serde(default, alias = "cluster_by")]
    pub(crate) zorder_by: Vec<String>,
    pub(crate) maintenance: Option<super::maintenance::RawMaintenance>,
    #[serde(default = "no_tags")]
    pub(crate) tags: Spanned<Vec<String>>,
    pub(crate) retries: Option<u32>,
    pub(crate) retry_backoff: Option<Spanned<String>>,
    pub(crate) timeout: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum RawSource {
    Files {
        path: String,
        #[serde(default)]
        format: super::FileFormat,
        #[serde(default)]
        csv: super::CsvOptions,
    },
    Http(Box<super::http::RawHttp>),
    Postgres(Box<super::database::RawDatabase>),
    Mysql(Box<super::database::RawDatabase>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSilver {
    pub(crate) name: Spanned<String>,
    pub(crate) from: Option<Spanned<String>>,
    pub(crate) sql: Option<Spanned<String>>,
    pub(crate) stream: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) columns: IndexMap<String, Spanned<String>>,
    #[serde(default)]
    pub(crate) keys: Vec<String>,
    pub(crate) sequence_by: Option<String>,
    #[serde(default)]
    pub(crate) expect: IndexMap<String, RawExpectation>,
    #[serde(default)]
    pub(crate) on_violation: super::Action,
    pub(crate) apply_as_deletes: Option<Spanned<String>>,
    pub(crate) history: Option<Spanned<super::History>>,
    #[serde(default)]
    pub(crate) partition_by: Vec<String>,
    #[serde(default, alias = "cluster_by")]
    pub(crate) zorder_by: Vec<String>,
    pub(crate) maintenance: Option<super::maintenance::RawMaintenance>,
    #[serde(default = "no_tags")]
    pub(crate) tags: Spanned<Vec<String>>,
    pub(crate) retries: Option<u32>,
    pub(crate) retry_backoff: Option<Spanned<String>>,
    pub(crate) timeout: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawExpectation {
    Rule(String),
    Full(RawExpectationFull),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawExpectationFull {
    pub(crate) rule: String,
    pub(crate) action: super::Action,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGold {
    pub(crate) name: Spanned<String>,
    pub(crate) sql: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) partition_by: Vec<String>,
    #[serde(default, alias = "cluster_by")]
    pub(crate) zorder_by: Vec<String>,
    pub(crate) maintenance: Option<super::maintenance::RawMaintenance>,
    pub(crate) stream: Option<Spanned<String>>,
    pub(crate) incremental: Option<Spanned<RawIncremental>>,
    // Audits, checked on the new version before it is published.
    #[serde(default)]
    pub(crate) expect: IndexMap<String, Spanned<RawExpectation>>,
    pub(crate) on_violation: Option<Spanned<super::Action>>,
    pub(crate) unique: Option<Spanned<Vec<toml::Value>>>,
    pub(crate) not_null: Option<Spanned<Vec<String>>>,
    pub(crate) accepted_values: Option<Spanned<IndexMap<String, Vec<toml::Value>>>>,
    pub(crate) relationships: Option<Spanned<IndexMap<String, String>>>,
    pub(crate) row_count: Option<Spanned<RawRowCount>>,
    pub(crate) freshness: Option<Spanned<toml::Value>>,
    #[serde(default = "no_tags")]
    pub(crate) tags: Spanned<Vec<String>>,
    pub(crate) retries: Option<u32>,
    pub(crate) retry_backoff: Option<Spanned<String>>,
    pub(crate) timeout: Option<Spanned<String>>,
    pub(crate) engine: Option<Spanned<super::EngineMode>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRowCount {
    pub(crate) min: Option<u64>,
    pub(crate) max: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFreshness {
    pub(crate) table: String,
    pub(crate) max_age: String,
    pub(crate) column: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIncremental {
    pub(crate) strategy: super::Strategy,
    #[serde(default)]
    pub(crate) unique_key: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServe {
    pub(crate) flight_addr: Option<String>,
    pub(crate) http_addr: Option<String>,
    pub(crate) keep_views: Option<bool>,
    pub(crate) max_connections: Option<usize>,
    pub(crate) header_timeout: Option<Spanned<String>>,
    pub(crate) max_body_mb: Option<usize>,
    pub(crate) max_streams: Option<u32>,
    pub(crate) run_lease_ttl: Option<Spanned<String>>,
    pub(crate) tls: Option<RawTls>,
    pub(crate) drain_timeout: Option<Spanned<String>>,
    pub(crate) access_log: Option<String>,
    pub(crate) catalog_name: Option<Spanned<String>>,
    pub(crate) credentials: Option<RawCredentials>,
}

/// `[serve.credentials]`: Unity Catalog table credentials.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCredentials {
    pub(crate) ttl: Option<Spanned<String>>,
    pub(crate) s3_role_arn: Option<String>,
    pub(crate) s3_sts_endpoint: Option<String>,
    #[serde(default)]
    pub(crate) share_lake_keys: bool,
}

/// `[serve.tls]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    pub(crate) cert: Spanned<String>,
    pub(crate) key: Spanned<String>,
    pub(crate) client_ca: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawQuery {
    pub(crate) memory_mb: Option<usize>,
    pub(crate) server_memory_mb: Option<usize>,
    pub(crate) timeout: Option<Spanned<String>>,
    pub(crate) max_rows: Option<usize>,
    pub(crate) max_result_mb: Option<usize>,
    pub(crate) max_sql_bytes: Option<usize>,
    pub(crate) max_depth: Option<usize>,
    pub(crate) max_filters: Option<usize>,
    pub(crate) max_concurrent: Option<usize>,
    pub(crate) max_concurrent_per_user: Option<usize>,
    pub(crate) spill_mb: Option<u64>,
    pub(crate) threads: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUser {
    pub(crate) name: String,
    pub(crate) role: crate::identity::Role,
    pub(crate) password_env: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCache {
    pub(crate) url: Option<String>,
    pub(crate) ttl: Option<Spanned<String>>,
    pub(crate) capacity: Option<u64>,
    pub(crate) refresh: Option<Spanned<String>>,
    pub(crate) prefix: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuth {
    pub(crate) signup: Option<crate::config::SignupPolicy>,
    pub(crate) jwt_secret_env: Option<String>,
    pub(crate) token_ttl: Option<Spanned<String>>,
    pub(crate) oidc: Option<RawOidc>,
    pub(crate) logins_per_minute: Option<u32>,
    pub(crate) signups_per_hour: Option<u32>,
    pub(crate) lockout_after: Option<u32>,
    pub(crate) max_lockout: Option<Spanned<String>>,
    pub(crate) concurrent_logins: Option<usize>,
    pub(crate) reserved_names: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOidc {
    pub(crate) issuer: String,
    pub(crate) audience: String,
    pub(crate) jwks_url: String,
    pub(crate) username_claim: Option<String>,
    pub(crate) role_claim: Option<String>,
    pub(crate) default_role: Option<crate::identity::Role>,
    pub(crate) jwks_ttl: Option<Spanned<String>>,
}

/// `zorder_by` and `maintenance` of a bronze, silver or gold entry.
#[derive(Debug)]
pub(crate) struct RawLayout {
    pub(crate) zorder_by: Vec<String>,
    pub(crate) maintenance: Option<super::maintenance::RawMaintenance>,
}

macro_rules! step_options {
    ($($raw:ty),*) => {$(
        impl $raw {
            /// Moves the entry's maintenance keys out.
            pub(crate) fn take_layout(&mut self) -> RawLayout {
                RawLayout {
                    zorder_by: std::mem::take(&mut self.zorder_by),
                    maintenance: self.maintenance.take(),
                }
            }

            /// Moves the entry's run options out.
            pub(crate) fn take_options(&mut self) -> RawStepOptions {
                RawStepOptions {
                    tags: std::mem::replace(&mut self.tags, no_tags()),
                    retries: self.retries.take(),
                    retry_backoff: self.retry_backoff.take(),
                    timeout: self.timeout.take(),
                }
            }
        }
    )*};
}

step_options!(RawBronze, RawSilver, RawGold);
