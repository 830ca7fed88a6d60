//! A fake serving core for the servers' tests: every call by a known token fails with one
//! chosen error kind, so each transport's one table from kind to status can be checked
//! without a lake.

use arrow::datatypes::SchemaRef;
use assay_engine::ErrorKind;
use assay_engine::auth::{Principal, Role, Sealer};
use assay_engine::launcher::Running;
use assay_engine::service::{
    Account, AccountChange, ApiKey, Appended, LakeService, Lineage, Login, NewApiKey, Query,
    Result, Rows, RowsRequest, RunDetail, RunList, RunsFilter, ScheduleInfo, ServiceError,
    TableDetail, TableSummary, unity,
};
use assay_engine::{Layer, TableId};
use datafusion::common::ParamValues;
use datafusion::execution::SendableRecordBatchStream;
use serde_json::{Map, Value};

/// The token [`Failing`] accepts (any other is unauthenticated).
pub const FAKE_TOKEN: &str = "fake-token";

/// A core whose every method (but `principal` and `layers`) fails with `kind`.
#[derive(Debug, Clone, Copy)]
pub struct Failing {
    /// The kind every call fails with.
    pub kind: ErrorKind,
}

impl Failing {
    fn fail<T>(&self) -> Result<T> {
        Err(match self.kind {
            ErrorKind::Internal => ServiceError::internal("a secret internal detail"),
            ErrorKind::Unavailable => {
                ServiceError::unavailable("the backend is unavailable", "a secret detail")
            }
            kind => ServiceError::new(kind, format!("fake {kind:?}")),
        })
    }
}

#[async_trait::async_trait]
impl LakeService for Failing {
    async fn login(&self, _: &str, _: &str, _: Option<std::net::IpAddr>) -> Result<Login> {
        if self.kind == ErrorKind::Internal {
            return self.fail();
        }
        Ok(Login {
            token: FAKE_TOKEN.into(),
            token_type: "Bearer".into(),
            expires_in: 60,
            user: "fake".into(),
            role: Role::Admin,
        })
    }
    async fn principal(&self, token: &str) -> Result<Principal> {
        if token != FAKE_TOKEN {
            return Err(ServiceError::new(ErrorKind::Unauthenticated, "bad token"));
        }
        Ok(Principal::local("fake", Role::Admin))
    }
    fn layers(&self, _: &Principal) -> Vec<Layer> {
        Layer::ALL.to_vec()
    }
    async fn table_versions(&self, _: &Principal, _: &[Layer]) -> Result<Vec<(TableId, i64)>> {
        self.fail()
    }
    async fn describe(&self, _: &Principal, _: &[TableId]) -> Result<Vec<TableSummary>> {
        self.fail()
    }
    async fn table(&self, _: &Principal, _: &TableId) -> Result<TableDetail> {
        self.fail()
    }
    async fn history(
        &self,
        _: &Principal,
        _: &TableId,
        _: usize,
        _: usize,
    ) -> Result<assay_engine::service::HistoryPage> {
        self.fail()
    }
    async fn schema(&self, _: &Principal, _: &TableId) -> Result<SchemaRef> {
        self.fail()
    }
    async fn version(&self, _: &Principal, _: &TableId) -> Result<i64> {
        self.fail()
    }
    async fn rows(&self, _: &Principal, _: &TableId, _: &RowsRequest) -> Result<Rows> {
        self.fail()
    }
    async fn plan(&self, _: &Principal, _: &str, _: Option<ParamValues>) -> Result<Query> {
        self.fail()
    }
    async fn execute(&self, _: &Principal, _: Query) -> Result<SendableRecordBatchStream> {
        self.fail()
    }
    async fn append(
        &self,
        _: &Principal,
        _: &TableId,
        _: &[Map<String, Value>],
    ) -> Result<Appended> {
        self.fail()
    }
    async fn runs(&self, _: &Principal, _: &RunsFilter) -> Result<RunList> {
        self.fail()
    }
    async fn run(&self, _: &Principal, _: &str) -> Result<RunDetail> {
        self.fail()
    }
    async fn start_run(&self, _: &Principal, _: Option<&str>, _: bool) -> Result<Running> {
        self.fail()
    }
    async fn schedules(&self, _: &Principal) -> Result<Vec<ScheduleInfo>> {
        self.fail()
    }
    async fn pause_schedule(&self, _: &Principal, _: &str, _: bool) -> Result<ScheduleInfo> {
        self.fail()
    }
    async fn signup(&self, _: &str, _: &str, _: Option<std::net::IpAddr>) -> Result<Account> {
        self.fail()
    }
    async fn accounts(&self, _: &Principal) -> Result<Vec<Account>> {
        self.fail()
    }
    async fn create_account(&self, _: &Principal, _: &str, _: &str, _: Role) -> Result<Account> {
        self.fail()
    }
    async fn change_account(&self, _: &Principal, _: &str, _: &AccountChange) -> Result<Account> {
        self.fail()
    }
    async fn api_keys(&self, _: &Principal, _: bool) -> Result<Vec<ApiKey>> {
        self.fail()
    }
    async fn create_api_key(&self, _: &Principal, _: Option<String>) -> Result<NewApiKey> {
        self.fail()
    }
    async fn revoke_api_key(&self, _: &Principal, _: &str) -> Result<ApiKey> {
        self.fail()
    }
    async fn ready(&self) -> Result<()> {
        self.fail()
    }
    async fn lineage(&self, _: &Principal) -> Result<Lineage> {
        self.fail()
    }
    fn sealer(&self) -> &dyn Sealer {
        self
    }
}

#[async_trait::async_trait]
impl unity::UnityCatalog for Failing {
    async fn uc_catalogs(&self, _: &Principal) -> Result<Vec<unity::Catalog>> {
        self.fail()
    }
    async fn uc_catalog(&self, _: &Principal, _: &str) -> Result<unity::Catalog> {
        self.fail()
    }
    async fn uc_schemas(&self, _: &Principal, _: &str) -> Result<Vec<unity::Schema>> {
        self.fail()
    }
    async fn uc_schema(&self, _: &Principal, _: &str) -> Result<unity::Schema> {
        self.fail()
    }
    async fn uc_tables(
        &self,
        _: &Principal,
        _: &str,
        _: &str,
        _: &unity::PageRequest,
    ) -> Result<unity::Page<unity::Table>> {
        self.fail()
    }
    async fn uc_table(&self, _: &Principal, _: &str) -> Result<unity::Table> {
        self.fail()
    }
    async fn uc_table_summaries(
        &self,
        _: &Principal,
        _: &str,
        _: Option<&str>,
        _: Option<&str>,
        _: &unity::PageRequest,
    ) -> Result<unity::Page<unity::TableSummary>> {
        self.fail()
    }
    async fn uc_credentials(
        &self,
        _: &Principal,
        _: &str,
        _: unity::Operation,
    ) -> Result<unity::Credentials> {
        self.fail()
    }
}

/// Handles pass as they are: the fake has no secret, and its calls fail anyway.
impl Sealer for Failing {
    fn seal(&self, _: &str, payload: &[u8]) -> Vec<u8> {
        payload.to_vec()
    }
    fn unseal<'a>(&self, _: &str, sealed: &'a [u8]) -> Option<&'a [u8]> {
        Some(sealed)
    }
}

/// Every error kind.
pub const KINDS: [ErrorKind; 10] = [
    ErrorKind::NotFound,
    ErrorKind::Invalid,
    ErrorKind::Forbidden,
    ErrorKind::Unauthenticated,
    ErrorKind::Conflict,
    ErrorKind::Unavailable,
    ErrorKind::Timeout,
    ErrorKind::TooLarge,
    ErrorKind::Busy,
    ErrorKind::Internal,
];
