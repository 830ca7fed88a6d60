//! `GET /catalog` and `GET /tables/{table}`: what the caller may see, with schema, version,
//! size, partitions and history.

use assay_engine::{Lake, Layer, TableId, delta};
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use deltalake::DeltaTable;
use deltalake::kernel::Action;
use serde_json::{Value, json};

use crate::cache::{Entry, PREFIX};
use crate::error::{ApiError, Result};
use crate::rows::cached_or;
use crate::{Caller, Gateway};

/// Commits listed in a table's detail.
const HISTORY: i64 = 20;

/// A table id from the path, visible to the caller, or 400 / 404.
pub(crate) fn visible_table(caller: &Caller, raw: &str) -> Result<TableId> {
    let id = TableId::parse(raw).map_err(ApiError::BadRequest)?;
    if !caller.0.role.can_read(id.layer) || assay_engine::users::is_private(&id) {
        // A layer outside the role does not exist for the caller.
        return Err(ApiError::NotFound(format!("table {id} not found")));
    }
    Ok(id)
}

fn commit_info(version: i64, bytes: &axum::body::Bytes) -> Option<Value> {
    let actions = deltalake::logstore::get_actions(version as u64, bytes).ok()?;
    let (mut added, mut removed) = (0u64, 0u64);
    let mut info = None;
    for a in actions {
        match a {
            Action::CommitInfo(c) => info = Some(c),
            Action::Add(_) => added += 1,
            Action::Remove(_) => removed += 1,
            _ => {}
        }
    }
    let info = info?;
    Some(json!({
        "version": version,
        "timestamp": info.timestamp.and_then(millis_to_rfc3339),
        "operation": info.operation,
        "files_added": added,
        "files_removed": removed,
        "run_id": info.info.get("assay.run_id"),
    }))
}

fn millis_to_rfc3339(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// Schema, version, size, partitions and the last commit of a loaded table.
async fn describe(id: &TableId, table: &DeltaTable) -> Result<Value> {
    let schema = delta::arrow_schema(id, table)?;
    let snap = table
        .snapshot()
        .map_err(|e| ApiError::internal(format!("{id}: {e}")))?;
    let (mut rows, mut size, mut files) = (Some(0u64), 0i64, 0u64);
    for f in snap.log_data().iter() {
        files += 1;
        size += f.size();
        rows = match (rows, f.num_records()) {
            (Some(r), Some(n)) => Some(r + n as u64),
            _ => None,
        };
    }
    let version = delta::version(table);
    let last = match table.log_store().read_commit_entry(version as u64).await {
        Ok(Some(bytes)) => commit_info(version, &bytes),
        _ => None,
    };
    let columns: Vec<Value> = schema
        .fields()
        .iter()
        .map(|f| json!({"name": f.name(), "type": f.data_type().to_string(), "nullable": f.is_nullable()}))
        .collect();
    Ok(json!({
        "table": id.to_string(),
        "layer": id.layer.as_str(),
        "name": id.name,
        "version": version,
        "columns": columns,
        "rows": rows,
        "size_bytes": size,
        "files": files,
        "partition_columns": snap.metadata().partition_columns(),
        "last_commit": last.as_ref().and_then(|c| c.get("timestamp").cloned()),
    }))
}

/// The layers the query string asks for, among those the caller sees.
fn layers(caller: &Caller, wanted: Option<&str>) -> Result<Vec<Layer>> {
    let visible = caller.0.role.layers();
    match wanted {
        None => Ok(visible),
        Some(w) => {
            let layer = Layer::parse(w).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "`layer`: unknown layer `{w}` (bronze, silver, gold, _system)"
                ))
            })?;
            Ok(visible.into_iter().filter(|l| *l == layer).collect())
        }
    }
}

/// The visible tables matching the filters, with their latest versions.
async fn listing(lake: &Lake, layers: &[Layer], q: Option<&str>) -> Result<Vec<(TableId, i64)>> {
    let mut out = Vec::new();
    for layer in layers {
        for name in lake.table_names(*layer).await? {
            let id = TableId::new(*layer, name);
            if q.is_some_and(|q| !id.to_string().contains(q)) {
                continue;
            }
            if let Some(v) = lake.latest_version(&id).await? {
                out.push((id, v));
            }
        }
    }
    Ok(out)
}

/// `GET /api/v1/catalog?layer=gold&q=prod`.
pub(crate) async fn catalog(
    State(gw): State<Gateway>,
    caller: Caller,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response> {
    let raw = raw.unwrap_or_default();
    let mut pairs: Vec<(String, String)> = url::form_urlencoded::parse(raw.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    pairs.sort();
    let mut layer = None;
    let mut q = None;
    for (k, v) in &pairs {
        match k.as_str() {
            "layer" => layer = Some(v.as_str()),
            "q" => q = Some(v.as_str()),
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown parameter `{other}` (layer, q)"
                )));
            }
        }
    }
    let layers = layers(&caller, layer)?;
    let lake = gw.query.catalog().lake().clone();
    let tables = listing(&lake, &layers, q).await?;
    // The stamp changes with any commit to any listed table, and with new tables.
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
    let role = format!("{:?}", caller.0.role).to_ascii_lowercase();
    let key = if normalized.is_empty() {
        format!("{PREFIX}:catalog:{role}")
    } else {
        format!("{PREFIX}:catalog:{role}:{normalized}")
    };
    cached_or(&gw, "_catalog", &key, &stamp, &headers, || async {
        let mut out = Vec::new();
        for (id, _) in &tables {
            if let Some(table) = lake.open(id).await? {
                out.push(describe(id, &table).await?);
            }
        }
        let body = json!({ "tables": out }).to_string();
        Ok(Entry {
            stamp: stamp.clone(),
            content_type: "application/json".into(),
            body,
        })
    })
    .await
}

/// `GET /api/v1/tables/{table}`: the table's detail and its last commits.
pub(crate) async fn table(
    State(gw): State<Gateway>,
    caller: Caller,
    Path(raw): Path<String>,
) -> Result<Response> {
    let id = visible_table(&caller, &raw)?;
    let lake = gw.query.catalog().lake();
    let table = lake
        .open(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("table {id} not found")))?;
    let mut detail = describe(&id, &table).await?;
    let latest = delta::version(&table);
    let mut history = Vec::new();
    for v in (0.max(latest - HISTORY + 1)..=latest).rev() {
        if let Ok(Some(bytes)) = table.log_store().read_commit_entry(v as u64).await
            && let Some(c) = commit_info(v, &bytes)
        {
            history.push(c);
        }
    }
    if let Some(obj) = detail.as_object_mut() {
        obj.insert("history".into(), Value::Array(history));
    }
    Ok(axum::response::IntoResponse::into_response(axum::Json(
        detail,
    )))
}
