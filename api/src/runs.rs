//! `GET /runs`, `GET /runs/{id}` (engineers and admins) and `POST /runs` (admins).

use arrow::array::RecordBatch;
use assay_engine::access::Role;
use assay_engine::history::runs_table;
use assay_engine::launcher::LaunchError;
use assay_engine::query::QueryError;
use assay_engine::{EngineError, delta};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use datafusion::prelude::{SessionContext, col, lit};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{ApiError, Result};
use crate::rows::json_rows;
use crate::users::body;
use crate::{Caller, Gateway};

fn require_engineer(caller: &Caller) -> Result<()> {
    if caller.0.role >= Role::Engineer {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "user `{}` (reader) may not see run history: engineers and admins only",
            caller.0.name
        )))
    }
}

/// `_system.runs` rows matching `filter`, newest first, as JSON objects.
async fn runs_rows(
    gw: &Gateway,
    filter: datafusion::prelude::Expr,
    limit: Option<usize>,
) -> Result<Vec<Value>> {
    let id = runs_table();
    let Some(table) = gw.query.catalog().lake().open(&id).await? else {
        return Ok(Vec::new());
    };
    let ctx = SessionContext::new();
    let df_err = |e| ApiError::from(QueryError::from_datafusion(e));
    let df = delta::scan(&id, &table, &ctx, None)
        .await?
        .filter(filter)
        .map_err(df_err)?
        .sort(vec![
            col("started_at").sort(false, false),
            col("kind").sort(true, false),
        ])
        .map_err(df_err)?
        .limit(0, limit)
        .map_err(df_err)?;
    let batches: Vec<RecordBatch> = df
        .collect()
        .await
        .map_err(|e| ApiError::from(EngineError::query(&id, e)))?;
    serde_json::from_str(&json_rows(&batches)?).map_err(ApiError::internal)
}

/// `GET /api/v1/runs?limit=&status=`: recent runs, newest first, plus the one in progress.
pub(crate) async fn list(
    State(gw): State<Gateway>,
    caller: Caller,
    RawQuery(qs): RawQuery,
) -> Result<Response> {
    require_engineer(&caller)?;
    let (mut limit, mut status) = (20usize, None);
    for (k, v) in url::form_urlencoded::parse(qs.unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "limit" => {
                limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| {
                        ApiError::BadRequest(format!(
                            "`limit`: `{v}` is not a number from 1 to 1000"
                        ))
                    })?;
            }
            "status" => {
                if !matches!(v.as_ref(), "succeeded" | "failed") {
                    return Err(ApiError::BadRequest(format!(
                        "`status`: `{v}` is not one of succeeded, failed"
                    )));
                }
                status = Some(v.into_owned());
            }
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown parameter `{other}` (parameters: limit, status)"
                )));
            }
        }
    }
    let mut filter = col("kind").eq(lit("run"));
    if let Some(s) = status {
        filter = filter.and(col("status").eq(lit(s)));
    }
    let runs = runs_rows(&gw, filter, Some(limit)).await?;
    let running = gw.launcher.as_ref().and_then(|l| l.running());
    Ok(Json(json!({ "running": running, "runs": runs })).into_response())
}

/// `GET /api/v1/runs/{id}`: one run with its steps (`status: running` while in progress).
pub(crate) async fn get(
    State(gw): State<Gateway>,
    caller: Caller,
    Path(run_id): Path<String>,
) -> Result<Response> {
    require_engineer(&caller)?;
    if let Some(r) = gw.launcher.as_ref().and_then(|l| l.running())
        && r.run_id == run_id
    {
        return Ok(Json(json!({
            "run_id": r.run_id,
            "status": "running",
            "select": r.select,
            "full_refresh": r.full_refresh,
            "started_by": r.started_by,
            "started_at": r.started_at,
            "steps": [],
        }))
        .into_response());
    }
    let rows = runs_rows(&gw, col("run_id").eq(lit(run_id.clone())), None).await?;
    let (runs, steps): (Vec<Value>, Vec<Value>) =
        rows.into_iter().partition(|r| r["kind"] == "run");
    let mut run = runs
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::NotFound(format!("no run `{run_id}`")))?;
    run["steps"] = Value::Array(steps);
    Ok(Json(run).into_response())
}

/// The body of `POST /runs`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct StartRun {
    select: Option<String>,
    #[serde(default)]
    full_refresh: bool,
}

/// `POST /api/v1/runs` (admins) with `{"select": "gold.x+", "full_refresh": false}` or `{}`: starts a run in the
/// background; 202 with its id, 409 while another run is in progress.
pub(crate) async fn start(
    State(gw): State<Gateway>,
    caller: Caller,
    b: std::result::Result<Json<StartRun>, JsonRejection>,
) -> Result<Response> {
    caller.require_admin()?;
    let s = body(b)?;
    let launcher = gw
        .launcher
        .as_ref()
        .ok_or_else(|| ApiError::NotFound("this server cannot start runs".into()))?;
    let run = launcher
        .start(s.select.as_deref(), s.full_refresh, &caller.0.name)
        .map_err(|e| match e {
            LaunchError::Busy(_) => ApiError::Conflict(e.to_string()),
            LaunchError::Selection(_) => ApiError::BadRequest(e.to_string()),
        })?;
    tracing::info!(run_id = %run.run_id, by = %caller.0.name, "run triggered");
    let location = format!("/api/v1/runs/{}", run.run_id);
    Ok((
        StatusCode::ACCEPTED,
        [(axum::http::header::LOCATION, location)],
        Json(json!({
            "run_id": run.run_id,
            "status": "running",
            "select": run.select,
            "full_refresh": run.full_refresh,
            "started_by": run.started_by,
            "started_at": run.started_at,
        })),
    )
        .into_response())
}
