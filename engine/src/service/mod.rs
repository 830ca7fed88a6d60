//! The serving core: everything a client can do with the lake, for every server.
//!
//! [`LakeService`] is the seam the servers depend on: Flight SQL, the REST gateway (and any
//! later face) decode a request, call one method with the caller's [`Principal`], encode the
//! answer and map the [`ServiceError`]'s kind to a status through one table of their own.
//! Each method asks [`authorize`] first; no server checks a role itself. [`Core`] is the
//! implementation over a lake; tests of a server may use it or a fake.

mod accounts;
mod catalog;
pub mod error;
mod rows;
mod runs;
mod schedules;
pub mod unity;
mod versions;

use datafusion::prelude::SessionConfig;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::dataframe::DataFrame;
use datafusion::execution::SendableRecordBatchStream;
use serde_json::{Map, Value};

pub use accounts::{Account, AccountChange, ApiKey, Login, NewApiKey};
pub use catalog::{
    ColumnInfo, Commit, HistoryPage, Lineage, LineageEdge, LineageNode, TableDetail, TableSummary,
};
pub use error::{Result, ServiceError};
pub use rows::{Filter, FilterOp, Order, RowsRequest, decode_rows};
pub use runs::{RunDetail, RunList, RunRecord, RunsFilter};
pub use schedules::{ScheduleInfo, Schedules};
pub use versions::Versions;

use crate::auth::{AccessPolicy, Action, Principal, Role, authorize};
use crate::delta::{self, CommitInfo, WriteMode};
use crate::launcher::{Launcher, Running};
use crate::query::QueryService;
use crate::table::{Layer, TableId};

/// Commits listed in a table's detail.
pub const HISTORY: i64 = 20;

/// A planned read-only query: its result schema, ready to execute.
#[derive(Debug)]
pub struct Query {
    frame: DataFrame,
}

impl Query {
    /// The schema of the result.
    pub fn schema(&self) -> SchemaRef {
        Arc::new(self.frame.schema().as_arrow().clone())
    }

    /// The parameters the SQL declares (`$1`, ...), with their inferred types when known.
    ///
    /// # Errors
    /// The plan's parameters cannot be inferred.
    pub fn parameters(&self) -> Result<Vec<(String, Option<arrow::datatypes::DataType>)>> {
        Ok(self
            .frame
            .logical_plan()
            .get_parameter_types()?
            .into_iter()
            .collect())
    }
}

/// Rows of one table at one version, streamed.
pub struct Rows {
    /// The version read.
    pub version: i64,
    /// The rows, batch by batch.
    pub stream: SendableRecordBatchStream,
}

impl std::fmt::Debug for Rows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rows")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// An append: the versions before and after, and the rows as the table typed them.
#[derive(Debug, Clone)]
pub struct Appended {
    /// The table's version before the commit.
    pub before: i64,
    /// The version the commit made.
    pub version: i64,
    /// The rows appended, typed by the table's schema.
    pub rows: RecordBatch,
}

/// Everything a client can do, the Unity Catalog view ([`unity::UnityCatalog`]) included.
/// Every method authorizes the caller first.
#[async_trait]
pub trait LakeService: unity::UnityCatalog + Send + Sync + std::fmt::Debug {
    /// Checks a user name and password and issues a bearer token.
    async fn login(&self, user: &str, password: &str, client: Option<IpAddr>) -> Result<Login>;
    /// The caller a bearer token (JWT, API key or OIDC token) stands for.
    async fn principal(&self, token: &str) -> Result<Principal>;
    /// The layers the caller sees.
    fn layers(&self, p: &Principal) -> Vec<Layer>;
    /// The tables the caller sees in `layers` (all visible when empty), with versions, no IO
    /// beyond the in-memory versions.
    async fn table_versions(&self, p: &Principal, layers: &[Layer]) -> Result<Vec<(TableId, i64)>>;
    /// Summaries of tables (as listed by [`LakeService::table_versions`]).
    async fn describe(&self, p: &Principal, tables: &[TableId]) -> Result<Vec<TableSummary>>;
    /// One table's summary and recent commits.
    async fn table(&self, p: &Principal, id: &TableId) -> Result<TableDetail>;
    /// A page of a table's commits, newest first: `offset` commits skipped, `limit` given.
    async fn history(
        &self,
        p: &Principal,
        id: &TableId,
        limit: usize,
        offset: usize,
    ) -> Result<HistoryPage>;
    /// The project's DAG, only the tables the caller sees (empty when the server runs no
    /// pipeline).
    async fn lineage(&self, p: &Principal) -> Result<Lineage>;
    /// A table's columns as queries see them.
    async fn schema(&self, p: &Principal, id: &TableId) -> Result<SchemaRef>;
    /// A table's latest version, from memory (see [`Versions`]).
    async fn version(&self, p: &Principal, id: &TableId) -> Result<i64>;
    /// Filtered rows of a table, streamed.
    async fn rows(&self, p: &Principal, id: &TableId, req: &RowsRequest) -> Result<Rows>;
    /// Plans read-only SQL (with `$1`-style parameters).
    async fn plan(&self, p: &Principal, sql: &str, params: Option<ParamValues>) -> Result<Query>;
    /// Runs a planned query under the limits.
    async fn execute(&self, p: &Principal, query: Query) -> Result<SendableRecordBatchStream>;
    /// Appends JSON rows to a table in one commit.
    async fn append(
        &self,
        p: &Principal,
        id: &TableId,
        rows: &[Map<String, Value>],
    ) -> Result<Appended>;
    /// Recent runs.
    async fn runs(&self, p: &Principal, filter: &RunsFilter) -> Result<RunList>;
    /// One run with its steps.
    async fn run(&self, p: &Principal, run_id: &str) -> Result<RunDetail>;
    /// Starts a run in the background.
    async fn start_run(
        &self,
        p: &Principal,
        select: Option<&str>,
        full_refresh: bool,
    ) -> Result<Running>;
    /// The project's schedules with their state.
    async fn schedules(&self, p: &Principal) -> Result<Vec<ScheduleInfo>>;
    /// Pauses (`true`) or resumes a schedule, for every server of the lake.
    async fn pause_schedule(&self, p: &Principal, name: &str, paused: bool)
    -> Result<ScheduleInfo>;
    /// Creates an account by the signup policy.
    async fn signup(&self, user: &str, password: &str, client: Option<IpAddr>) -> Result<Account>;
    /// Every account.
    async fn accounts(&self, p: &Principal) -> Result<Vec<Account>>;
    /// Creates an active account.
    async fn create_account(
        &self,
        p: &Principal,
        user: &str,
        password: &str,
        role: Role,
    ) -> Result<Account>;
    /// Changes an account.
    async fn change_account(
        &self,
        p: &Principal,
        user: &str,
        change: &AccountChange,
    ) -> Result<Account>;
    /// The caller's API keys (`all`: everyone's).
    async fn api_keys(&self, p: &Principal, all: bool) -> Result<Vec<ApiKey>>;
    /// A new API key acting as the caller.
    async fn create_api_key(&self, p: &Principal, label: Option<String>) -> Result<NewApiKey>;
    /// Revokes a key.
    async fn revoke_api_key(&self, p: &Principal, key_id: &str) -> Result<ApiKey>;
    /// Whether the lake can be reached.
    async fn ready(&self) -> Result<()>;
    /// Records a commit heard of from elsewhere (another replica).
    fn observe(&self, _table: &TableId, _version: i64) {}
    /// Signs and checks the handles servers give out, with the JWT secret (so any replica
    /// sharing it takes them back).
    fn sealer(&self) -> &dyn crate::auth::Sealer;
}

/// The serving core over one lake.
#[derive(Debug, Clone)]
pub struct Core {
    query: QueryService,
    policy: Arc<AccessPolicy>,
    launcher: Option<Launcher>,
    schedules: Option<Schedules>,
    versions: Arc<Versions>,
    unity: Arc<unity::UnityConfig>,
}

impl Core {
    /// A core answering with `query` and `policy`; served tables' versions are re-read every
    /// `refresh` (must run inside a Tokio runtime).
    pub fn new(query: QueryService, policy: Arc<AccessPolicy>, refresh: Duration) -> Self {
        let versions = Arc::new(Versions::new(query.catalog().lake().clone(), refresh));
        Core {
            query,
            policy,
            launcher: None,
            schedules: None,
            versions,
            unity: Arc::new(unity::UnityConfig::default()),
        }
    }

    /// Serves the Unity Catalog API with `config` (catalog name, credentials).
    pub fn with_unity(mut self, config: unity::UnityConfig) -> Self {
        self.unity = Arc::new(config);
        self
    }

    /// Lets [`LakeService::start_run`] start runs with `launcher`.
    pub fn with_launcher(mut self, launcher: Launcher) -> Self {
        self.launcher = Some(launcher);
        self
    }

    /// Lets [`LakeService::schedules`] show and pause `schedules`.
    pub fn with_schedules(mut self, schedules: Schedules) -> Self {
        self.schedules = Some(schedules);
        self
    }

    fn schedule_book(&self) -> Result<&Schedules> {
        self.schedules
            .as_ref()
            .ok_or_else(|| ServiceError::not_found("this server runs no schedules"))
    }

    /// The query service (limits, catalog).
    pub fn query(&self) -> &QueryService {
        &self.query
    }

    /// The access policy.
    pub fn policy(&self) -> &Arc<AccessPolicy> {
        &self.policy
    }

    fn lake(&self) -> &crate::Lake {
        self.query.catalog().lake()
    }

    fn store(&self) -> Result<&crate::auth::store::UserStore> {
        self.policy
            .store()
            .ok_or_else(|| ServiceError::not_found("this server keeps no accounts"))
    }

    async fn open(&self, id: &TableId) -> Result<deltalake::DeltaTable> {
        self.lake()
            .open(id)
            .await?
            .ok_or_else(|| ServiceError::not_found(format!("table {id} not found")))
    }
}

fn store_failed(e: crate::EngineError) -> ServiceError {
    ServiceError::unavailable("the account store is unavailable", e)
}

#[async_trait]
impl LakeService for Core {
    async fn login(&self, user: &str, password: &str, client: Option<IpAddr>) -> Result<Login> {
        let principal = self.policy.authenticate(user, password, client).await?;
        tracing::Span::current().record("user", principal.name.as_str());
        let token = self.policy.issue_token(&principal)?;
        Ok(Login {
            token,
            token_type: "Bearer".into(),
            expires_in: self.policy.token_ttl().as_secs(),
            user: principal.name,
            role: principal.role,
        })
    }

    async fn principal(&self, token: &str) -> Result<Principal> {
        let principal = self.policy.verify_token(token).await?;
        // The request's span (HTTP or Flight) names who made it.
        tracing::Span::current().record("user", principal.name.as_str());
        Ok(principal)
    }

    fn layers(&self, p: &Principal) -> Vec<Layer> {
        p.role.layers()
    }

    async fn table_versions(&self, p: &Principal, layers: &[Layer]) -> Result<Vec<(TableId, i64)>> {
        let visible = p.role.layers();
        let wanted: Vec<Layer> = if layers.is_empty() {
            visible
        } else {
            layers
                .iter()
                .copied()
                .filter(|l| visible.contains(l))
                .collect()
        };
        let mut out = Vec::new();
        for layer in wanted {
            for name in self.versions.tables(layer).await? {
                let id = TableId::new(layer, name);
                if let Some(v) = self.versions.latest(&id).await? {
                    out.push((id, v));
                }
            }
        }
        Ok(out)
    }

    async fn describe(&self, p: &Principal, tables: &[TableId]) -> Result<Vec<TableSummary>> {
        let mut out = Vec::with_capacity(tables.len());
        for id in tables {
            authorize(p, Action::ReadTable(id))?;
            if let Some(t) = self.lake().open(id).await? {
                out.push(catalog::summary(id, &t).await?);
            }
        }
        Ok(out)
    }

    async fn table(&self, p: &Principal, id: &TableId) -> Result<TableDetail> {
        authorize(p, Action::ReadTable(id))?;
        let table = self.open(id).await?;
        catalog::detail(id, &table, HISTORY).await
    }

    async fn history(
        &self,
        p: &Principal,
        id: &TableId,
        limit: usize,
        offset: usize,
    ) -> Result<HistoryPage> {
        authorize(p, Action::ReadTable(id))?;
        let table = self.open(id).await?;
        let versions = crate::lifecycle::versions(self.lake(), id).await?;
        catalog::history(id, &table, &versions, limit, offset).await
    }

    async fn lineage(&self, p: &Principal) -> Result<Lineage> {
        let Some(launcher) = &self.launcher else {
            return Ok(Lineage::default());
        };
        let sees = |t: &TableId| authorize(p, Action::ReadTable(t)).is_ok();
        let mut lineage = Lineage::default();
        for (table, upstream) in launcher.lineage() {
            if !sees(&table) {
                continue;
            }
            lineage.nodes.push(LineageNode {
                table: table.to_string(),
                layer: table.layer.as_str().to_string(),
            });
            lineage
                .edges
                .extend(upstream.iter().filter(|u| sees(u)).map(|u| LineageEdge {
                    from: u.to_string(),
                    to: table.to_string(),
                }));
        }
        Ok(lineage)
    }

    async fn schema(&self, p: &Principal, id: &TableId) -> Result<SchemaRef> {
        authorize(p, Action::ReadTable(id))?;
        let table = self.open(id).await?;
        let provider = crate::delta::table_provider(id, &table, &SessionConfig::new(), None)
            .await
            .map_err(ServiceError::from)?;
        Ok(provider.schema())
    }

    async fn version(&self, p: &Principal, id: &TableId) -> Result<i64> {
        authorize(p, Action::ReadTable(id))?;
        self.versions
            .latest(id)
            .await?
            .ok_or_else(|| ServiceError::not_found(format!("table {id} not found")))
    }

    async fn rows(&self, p: &Principal, id: &TableId, req: &RowsRequest) -> Result<Rows> {
        authorize(p, Action::ReadTable(id))?;
        let table = match req.at {
            None => self.open(id).await?,
            Some(at) => crate::lifecycle::open_at(self.lake(), id, at).await?,
        };
        let version = delta::version(&table);
        self.query.check_filters(req.filters.len())?;
        let ctx = self.query.session(p)?;
        let df = req.apply(delta::scan(id, &table, &ctx, None).await?)?;
        let stream = self.query.execute(p, df).await?;
        Ok(Rows { version, stream })
    }

    async fn plan(&self, p: &Principal, sql: &str, params: Option<ParamValues>) -> Result<Query> {
        let frame = self.query.plan(p, sql, params).await?;
        Ok(Query { frame })
    }

    async fn execute(&self, p: &Principal, query: Query) -> Result<SendableRecordBatchStream> {
        Ok(self.query.execute(p, query.frame).await?)
    }

    async fn append(
        &self,
        p: &Principal,
        id: &TableId,
        rows: &[Map<String, Value>],
    ) -> Result<Appended> {
        authorize(p, Action::WriteRows(id))?;
        let table = self.open(id).await?;
        let before = delta::version(&table);
        let schema = delta::arrow_schema(id, &table)?;
        let batch = decode_rows(&schema, rows)?;
        let df = datafusion::prelude::SessionContext::new().read_batch(batch.clone())?;
        let info = CommitInfo::new(Vec::new(), &uuid::Uuid::now_v7().to_string())
            .with("assay.api.user", p.name.clone())
            .with("assay.api.rows", batch.num_rows());
        let written =
            delta::write_frame(self.lake(), id, df, WriteMode::Append, &[], &info).await?;
        let version = delta::version(&written);
        self.versions.observe(id, version);
        Ok(Appended {
            before,
            version,
            rows: batch,
        })
    }

    async fn runs(&self, p: &Principal, filter: &RunsFilter) -> Result<RunList> {
        authorize(p, Action::ReadRuns)?;
        let runs = runs::list(self.lake(), filter).await?;
        Ok(RunList {
            running: self.launcher.as_ref().and_then(Launcher::running),
            runs,
        })
    }

    async fn run(&self, p: &Principal, run_id: &str) -> Result<RunDetail> {
        authorize(p, Action::ReadRuns)?;
        if let Some((run, progress)) = self.launcher.as_ref().and_then(|l| l.progress(run_id)) {
            return runs::running(run, progress);
        }
        runs::detail(self.lake(), run_id).await
    }

    async fn start_run(
        &self,
        p: &Principal,
        select: Option<&str>,
        full_refresh: bool,
    ) -> Result<Running> {
        authorize(p, Action::StartRun)?;
        let launcher = self
            .launcher
            .as_ref()
            .ok_or_else(|| ServiceError::not_found("this server cannot start runs"))?;
        let run = launcher.start(select, full_refresh, &p.name).await?;
        tracing::info!(run_id = %run.run_id, by = %p.name, "run triggered");
        Ok(run)
    }

    async fn schedules(&self, p: &Principal) -> Result<Vec<ScheduleInfo>> {
        authorize(p, Action::ReadRuns)?;
        match &self.schedules {
            Some(s) => s.list().await,
            None => Ok(Vec::new()),
        }
    }

    async fn pause_schedule(
        &self,
        p: &Principal,
        name: &str,
        paused: bool,
    ) -> Result<ScheduleInfo> {
        authorize(p, Action::StartRun)?;
        self.schedule_book()?
            .set_paused(name, paused, &p.name)
            .await
    }

    async fn signup(&self, user: &str, password: &str, client: Option<IpAddr>) -> Result<Account> {
        Ok(Account::from(
            &self.policy.signup(user, password, client).await?,
        ))
    }

    async fn accounts(&self, p: &Principal) -> Result<Vec<Account>> {
        authorize(p, Action::ManageAccounts)?;
        let users = self.store()?.users().await.map_err(store_failed)?;
        Ok(users.iter().map(Account::from).collect())
    }

    async fn create_account(
        &self,
        p: &Principal,
        user: &str,
        password: &str,
        role: Role,
    ) -> Result<Account> {
        authorize(p, Action::ManageAccounts)?;
        let u = self
            .policy
            .create_user(user, password, role, &p.name)
            .await?;
        Ok(Account::from(&u))
    }

    async fn change_account(
        &self,
        p: &Principal,
        user: &str,
        change: &AccountChange,
    ) -> Result<Account> {
        authorize(p, Action::ManageAccounts)?;
        let role = match (change.role, change.is_admin) {
            (Some(r), Some(a)) if (r == Role::Admin) != a => {
                return Err(ServiceError::invalid(
                    "role and is_admin disagree: is_admin is true exactly for role `admin`",
                ));
            }
            (Some(r), _) => Some(r),
            (None, Some(true)) => Some(Role::Admin),
            // Only an admin is demoted (to engineer); a reader or engineer is not an admin
            // already and keeps its role.
            (None, Some(false)) => {
                let current = self.store()?.user(user).await.map_err(store_failed)?;
                let current = current
                    .ok_or_else(|| ServiceError::not_found(format!("no account `{user}`")))?;
                if current.effective_role() != Role::Admin {
                    if change.is_active.is_none() {
                        return Ok(Account::from(&current));
                    }
                    None
                } else {
                    Some(Role::Engineer)
                }
            }
            (None, None) => None,
        };
        if change.is_active.is_none() && role.is_none() {
            return Err(ServiceError::invalid(
                "body: nothing to change (fields: is_active, role, is_admin)",
            ));
        }
        if user == p.name
            && p.source == crate::auth::Source::Local
            && (change.is_active == Some(false) || role.is_some_and(|r| r != Role::Admin))
        {
            return Err(ServiceError::invalid(
                "you cannot deactivate or demote yourself; ask another admin",
            ));
        }
        let u = self
            .store()?
            .update(user, change.is_active, role, &p.name)
            .await
            .map_err(store_failed)?
            .ok_or_else(|| ServiceError::not_found(format!("no account `{user}`")))?;
        tracing::info!(user = %user, by = %p.name, active = u.is_active, role = %u.role, "account changed");
        Ok(Account::from(&u))
    }

    async fn api_keys(&self, p: &Principal, all: bool) -> Result<Vec<ApiKey>> {
        if all {
            authorize(p, Action::ListAllKeys)?;
        }
        let keys = self.store()?.api_keys(None).await.map_err(store_failed)?;
        let mine =
            |owner: &str| Principal::from_key_owner(owner).is_some_and(|o| o.same_identity(p));
        Ok(keys
            .iter()
            .filter(|k| all || mine(&k.user_name))
            .map(ApiKey::from)
            .collect())
    }

    async fn create_api_key(&self, p: &Principal, label: Option<String>) -> Result<NewApiKey> {
        if label.as_ref().is_some_and(|l| l.chars().count() > 200) {
            return Err(ServiceError::invalid("label: at most 200 characters"));
        }
        let (record, secret) = self
            .store()?
            .create_api_key(&p.key_owner(), label)
            .await
            .map_err(store_failed)?;
        Ok(NewApiKey {
            key: ApiKey::from(&record),
            secret,
        })
    }

    async fn revoke_api_key(&self, p: &Principal, key_id: &str) -> Result<ApiKey> {
        let store = self.store()?;
        let not_found = || ServiceError::not_found(format!("no API key `{key_id}`"));
        let key = store
            .api_key(key_id)
            .await
            .map_err(store_failed)?
            .ok_or_else(not_found)?;
        authorize(
            p,
            Action::RevokeKey {
                owner: &key.user_name,
            },
        )
        .map_err(|_| not_found())?;
        let key = store
            .revoke_api_key(key_id, &p.name)
            .await
            .map_err(store_failed)?
            .ok_or_else(not_found)?;
        Ok(ApiKey::from(&key))
    }

    async fn ready(&self) -> Result<()> {
        self.query
            .catalog()
            .refresh()
            .await
            .map_err(|e| ServiceError::unavailable("lake unreachable", e))
    }

    fn observe(&self, table: &TableId, version: i64) {
        self.versions.observe(table, version);
    }

    fn sealer(&self) -> &dyn crate::auth::Sealer {
        self.policy.as_ref()
    }
}
