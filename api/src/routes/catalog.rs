//! `GET /catalog` and `GET /tables/{table}`: what the caller may see.

use assay_engine::Layer;
use assay_engine::service::{HistoryPage, Lineage, TableDetail, TableSummary};
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;

use super::cached::cached_or;
use super::{pairs, table_id};
use crate::cache::Entry;
use crate::error::{ApiError, ErrorBody, Result};
use crate::{Caller, Gateway};

/// The tables the caller sees.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct CatalogPage {
    /// One entry per table, by layer and name.
    tables: Vec<TableSummary>,
}

/// Filters of `GET /catalog`.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct CatalogParams {
    /// Only this layer (`bronze`, `silver`, `gold`, `_system`), among those the role sees.
    layer: Option<String>,
    /// Only tables whose `layer.name` contains this text.
    q: Option<String>,
}

/// The tables the caller's role sees, with columns, version, rows, size, files, partition
/// columns and last commit time; cached until one of them commits.
#[utoipa::path(
    get,
    path = "/api/v1/catalog",
    tag = "tables",
    params(CatalogParams),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The visible tables", body = CatalogPage),
        (status = 400, description = "An unknown parameter or layer", body = ErrorBody),
        (status = 401, description = "No or a bad token", body = ErrorBody),
    )
)]
pub(crate) async fn catalog(
    State(gw): State<Gateway>,
    caller: Caller,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response> {
    let pairs = pairs(raw.as_deref(), &["layer", "q"])?;
    let mut layers = Vec::new();
    let mut q = None;
    for (k, v) in &pairs {
        match k.as_str() {
            "layer" => layers.push(Layer::parse(v).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "`layer`: unknown layer `{v}` (bronze, silver, gold, _system)"
                ))
            })?),
            _ => q = Some(v.as_str()),
        }
    }
    let visible = gw.core.layers(&caller.0);
    if layers.iter().any(|l| !visible.contains(l)) {
        // A layer outside the role lists nothing.
        return Ok(axum::response::IntoResponse::into_response(Json(
            CatalogPage { tables: Vec::new() },
        )));
    }
    let mut tables = gw.core.table_versions(&caller.0, &layers).await?;
    tables.retain(|(id, _)| q.is_none_or(|q| id.to_string().contains(q)));
    // The stamp changes with any commit to a listed table, and with new tables.
    let stamp = tables
        .iter()
        .map(|(id, v)| format!("{id}@{v}"))
        .collect::<Vec<_>>()
        .join(",");
    let normalized = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let key = gw.cache.catalog_key(caller.0.role, &normalized);
    cached_or(&gw, "_catalog", &key, &stamp, &headers, || async {
        let ids: Vec<_> = tables.iter().map(|(id, _)| id.clone()).collect();
        let tables = gw.core.describe(&caller.0, &ids).await?;
        let body = serde_json::to_string(&CatalogPage { tables }).map_err(ApiError::internal)?;
        Ok(Entry::new(&key, stamp.clone(), "application/json", body))
    })
    .await
}

/// The project's DAG (bronze -> silver -> gold), only the tables the caller's role sees:
/// nodes in run order, an edge from each table to the tables written from it.
#[utoipa::path(
    get,
    path = "/api/v1/lineage",
    tag = "tables",
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The visible part of the DAG", body = Lineage),
        (status = 401, description = "No or a bad token", body = ErrorBody),
    )
)]
pub(crate) async fn lineage(State(gw): State<Gateway>, caller: Caller) -> Result<Json<Lineage>> {
    Ok(Json(gw.core.lineage(&caller.0).await?))
}

/// One table's detail and its last 20 commits.
#[utoipa::path(
    get,
    path = "/api/v1/tables/{table}",
    tag = "tables",
    params(("table" = String, Path, description = "`layer.name`, e.g. `gold.products`")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The table", body = TableDetail),
        (status = 400, description = "Not a `layer.name`", body = ErrorBody),
        (status = 401, description = "No or a bad token", body = ErrorBody),
        (status = 404, description = "No such table, or outside the caller's role", body = ErrorBody),
    )
)]
pub(crate) async fn table(
    State(gw): State<Gateway>,
    caller: Caller,
    Path(raw): Path<String>,
) -> Result<Json<TableDetail>> {
    let id = table_id(&raw)?;
    Ok(Json(gw.core.table(&caller.0, &id).await?))
}

/// Commits listed per history page when `limit` is not given.
const HISTORY_LIMIT: usize = 100;

/// Commits listed per history page at most.
const HISTORY_MAX: usize = 1000;

/// Paging of `GET /tables/{table}/history`.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct HistoryParams {
    /// Commits to return (default 100, at most 1000).
    limit: Option<u64>,
    /// Commits to skip, newest first (the `next_offset` of the previous page).
    offset: Option<u64>,
}

/// Every commit of a table still in its log, newest first, a page at a time: version, time,
/// operation, files and rows added, whether it changed data, the run that made it.
#[utoipa::path(
    get,
    path = "/api/v1/tables/{table}/history",
    tag = "tables",
    params(("table" = String, Path, description = "`layer.name`, e.g. `gold.products`"), HistoryParams),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "A page of commits", body = HistoryPage),
        (status = 400, description = "A bad `limit` or `offset`, or not a `layer.name`", body = ErrorBody),
        (status = 401, description = "No or a bad token", body = ErrorBody),
        (status = 404, description = "No such table, or outside the caller's role", body = ErrorBody),
    )
)]
pub(crate) async fn history(
    State(gw): State<Gateway>,
    caller: Caller,
    Path(raw): Path<String>,
    RawQuery(qs): RawQuery,
) -> Result<Json<HistoryPage>> {
    let id = table_id(&raw)?;
    let (mut limit, mut offset) = (HISTORY_LIMIT, 0usize);
    for (k, v) in pairs(qs.as_deref(), &["limit", "offset"])? {
        let n: usize = v
            .parse()
            .map_err(|_| ApiError::bad_request(format!("`{k}`: `{v}` is not a whole number")))?;
        if k == "limit" {
            if n == 0 || n > HISTORY_MAX {
                return Err(ApiError::bad_request(format!(
                    "`limit`: between 1 and {HISTORY_MAX}"
                )));
            }
            limit = n;
        } else {
            offset = n;
        }
    }
    Ok(Json(gw.core.history(&caller.0, &id, limit, offset).await?))
}
