//! The Unity Catalog REST API (`/api/2.1/unity-catalog`, read side and table credentials),
//! so DuckDB's `unity_catalog` extension, delta-rs' `uc://` tables and `unitycatalog-client`
//! attach to the lake with Assay's accounts. The serving core decides everything; this
//! module decodes requests and answers in the Unity Catalog's shapes, errors included
//! (`{"error_code", "message"}`, the status from the gateway's one table).

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use assay_engine::ErrorKind;
use assay_engine::auth::Principal;
use assay_engine::service::ServiceError;
use assay_engine::service::unity::{Operation, Page, PageRequest};

use crate::error::{ApiError, status_of};
use crate::{Caller, Gateway};

/// Where the API lives.
pub const BASE: &str = "/api/2.1/unity-catalog";

/// A failure, answered in the Unity Catalog's shape.
#[derive(Debug)]
pub struct UcError(ServiceError);

/// The Unity Catalog `error_code` of a failure: the core's own reason when it gave one
/// (`TABLE_DOES_NOT_EXIST`, ...), else one per kind.
fn error_code(e: &ServiceError) -> &'static str {
    e.reason().unwrap_or(match e.kind() {
        ErrorKind::Invalid => "INVALID_ARGUMENT",
        ErrorKind::Unauthenticated => "UNAUTHENTICATED",
        ErrorKind::Forbidden => "PERMISSION_DENIED",
        ErrorKind::NotFound => "NOT_FOUND",
        ErrorKind::Conflict => "ABORTED",
        ErrorKind::TooLarge | ErrorKind::Busy => "RESOURCE_EXHAUSTED",
        ErrorKind::Unavailable => "TEMPORARILY_UNAVAILABLE",
        ErrorKind::Timeout => "DEADLINE_EXCEEDED",
        ErrorKind::Internal => "INTERNAL_ERROR",
    })
}

impl IntoResponse for UcError {
    fn into_response(self) -> Response {
        let (status, _) = status_of(self.0.kind());
        self.0.log();
        let body = json!({"error_code": error_code(&self.0), "message": self.0.message()});
        (status, axum::Json(body)).into_response()
    }
}

impl From<ServiceError> for UcError {
    fn from(e: ServiceError) -> Self {
        UcError(e)
    }
}

impl From<ApiError> for UcError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Service(s) => UcError(s),
            other => UcError(ServiceError::invalid(other.to_string())),
        }
    }
}

type UcResult = Result<axum::Json<Value>, UcError>;

/// The caller, as for the rest of the gateway, refused in the Unity Catalog's shape.
struct UcCaller(Principal);

impl FromRequestParts<Gateway> for UcCaller {
    type Rejection = UcError;

    async fn from_request_parts(parts: &mut Parts, gw: &Gateway) -> Result<Self, UcError> {
        Ok(UcCaller(Caller::from_request_parts(parts, gw).await?.0))
    }
}

/// The query string's parameters; a parameter given twice is an error.
fn params(raw: Option<String>) -> Result<Vec<(String, String)>, UcError> {
    let pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    for (i, (k, _)) in pairs.iter().enumerate() {
        if pairs[..i].iter().any(|(j, _)| j == k) {
            return Err(ServiceError::invalid(format!("`{k}` is given twice")).into());
        }
    }
    Ok(pairs)
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

fn required<'a>(pairs: &'a [(String, String)], name: &str) -> Result<&'a str, UcError> {
    param(pairs, name).ok_or_else(|| ServiceError::invalid(format!("`{name}` is required")).into())
}

fn page(pairs: &[(String, String)]) -> Result<PageRequest, UcError> {
    let max_results = match param(pairs, "max_results") {
        None => None,
        Some(v) => Some(v.parse::<i64>().map_err(|_| {
            ServiceError::invalid(format!("`max_results`: `{v}` is not an integer"))
        })?),
    };
    Ok(PageRequest {
        max_results,
        page_token: param(pairs, "page_token").map(str::to_string),
    })
}

fn listed<T: serde::Serialize>(key: &str, page: Page<T>) -> UcResult {
    let mut body = json!({ key: page.items });
    if let Some(t) = page.next_page_token {
        body["next_page_token"] = Value::String(t);
    }
    Ok(axum::Json(body))
}

/// A listing that is never paged (one catalog, a few layers).
fn whole<T: serde::Serialize>(key: &str, items: Vec<T>) -> UcResult {
    listed(
        key,
        Page {
            items,
            next_page_token: None,
        },
    )
}

fn one<T: serde::Serialize>(item: T) -> UcResult {
    serde_json::to_value(item)
        .map(axum::Json)
        .map_err(|e| UcError(ServiceError::internal(e)))
}

async fn catalogs(State(gw): State<Gateway>, UcCaller(p): UcCaller) -> UcResult {
    whole("catalogs", gw.core.uc_catalogs(&p).await?)
}

async fn catalog(
    State(gw): State<Gateway>,
    UcCaller(p): UcCaller,
    Path(name): Path<String>,
) -> UcResult {
    one(gw.core.uc_catalog(&p, &name).await?)
}

async fn schemas(
    State(gw): State<Gateway>,
    UcCaller(p): UcCaller,
    RawQuery(q): RawQuery,
) -> UcResult {
    let q = params(q)?;
    let catalog = required(&q, "catalog_name")?;
    whole("schemas", gw.core.uc_schemas(&p, catalog).await?)
}

async fn schema(
    State(gw): State<Gateway>,
    UcCaller(p): UcCaller,
    Path(full_name): Path<String>,
) -> UcResult {
    one(gw.core.uc_schema(&p, &full_name).await?)
}

async fn tables(
    State(gw): State<Gateway>,
    UcCaller(p): UcCaller,
    RawQuery(q): RawQuery,
) -> UcResult {
    let q = params(q)?;
    let catalog = required(&q, "catalog_name")?;
    let schema = required(&q, "schema_name")?;
    listed(
        "tables",
        gw.core.uc_tables(&p, catalog, schema, &page(&q)?).await?,
    )
}

async fn table(
    State(gw): State<Gateway>,
    UcCaller(p): UcCaller,
    Path(full_name): Path<String>,
) -> UcResult {
    one(gw.core.uc_table(&p, &full_name).await?)
}

async fn summaries(
    State(gw): State<Gateway>,
    UcCaller(p): UcCaller,
    RawQuery(q): RawQuery,
) -> UcResult {
    let q = params(q)?;
    let catalog = required(&q, "catalog_name")?;
    let page = gw
        .core
        .uc_table_summaries(
            &p,
            catalog,
            param(&q, "schema_name_pattern"),
            param(&q, "table_name_pattern"),
            &page(&q)?,
        )
        .await?;
    listed("tables", page)
}

async fn credentials(State(gw): State<Gateway>, UcCaller(p): UcCaller, body: Bytes) -> UcResult {
    let req: Value = serde_json::from_slice(&body)
        .map_err(|e| ServiceError::invalid(format!("the body is not JSON: {e}")))?;
    let field = |name: &str| -> Result<&str, UcError> {
        match req.get(name) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s),
            Some(_) => Err(ServiceError::invalid(format!("`{name}` must be a string")).into()),
            None => Err(ServiceError::invalid(format!("`{name}` is required")).into()),
        }
    };
    let table_id = field("table_id")?;
    let op = Operation::parse(field("operation")?)?;
    one(gw.core.uc_credentials(&p, table_id, op).await?)
}

async fn unknown() -> UcError {
    UcError(ServiceError::not_found(
        "no such Unity Catalog endpoint: this server serves catalogs, schemas, tables, \
         table-summaries and temporary-table-credentials",
    ))
}

/// The Unity Catalog routes under [`BASE`].
pub(crate) fn routes() -> Router<Gateway> {
    let api = Router::new()
        .route("/catalogs", get(catalogs))
        .route("/catalogs/{name}", get(catalog))
        .route("/schemas", get(schemas))
        .route("/schemas/{full_name}", get(schema))
        .route("/tables", get(tables))
        .route("/tables/{full_name}", get(table))
        .route("/table-summaries", get(summaries))
        .route("/temporary-table-credentials", post(credentials))
        .fallback(unknown);
    Router::new().nest(BASE, api)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_reason_then_the_kind() {
        let e = ServiceError::not_found("x").with_reason("TABLE_DOES_NOT_EXIST");
        assert_eq!(error_code(&e), "TABLE_DOES_NOT_EXIST");
        assert_eq!(
            error_code(&ServiceError::forbidden("x")),
            "PERMISSION_DENIED"
        );
        assert_eq!(error_code(&ServiceError::invalid("x")), "INVALID_ARGUMENT");
    }

    #[test]
    fn a_parameter_given_twice_is_refused() {
        assert!(params(Some("a=1&a=2".into())).is_err());
        let q = params(Some("catalog_name=retail&max_results=2".into())).unwrap();
        assert_eq!(required(&q, "catalog_name").unwrap(), "retail");
        assert_eq!(page(&q).unwrap().max_results, Some(2));
        assert!(required(&q, "schema_name").is_err());
    }
}
