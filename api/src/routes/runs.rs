//! `GET /runs`, `GET /runs/{id}` (engineers and admins) and `POST /runs` (admins).

use assay_engine::launcher::Running;
use assay_engine::service::{RunDetail, RunList, RunsFilter};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::{body, pairs};
use crate::error::{ApiError, ErrorBody, Result};
use crate::{Caller, Gateway};

/// Filters of `GET /runs`.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct RunsParams {
    /// Runs to return, 1 to 1,000 (default 20).
    limit: Option<u32>,
    /// Only runs that ended `succeeded` or `failed`.
    status: Option<String>,
}

/// Recent runs from `_system.runs`, newest first, and the run in progress.
#[utoipa::path(
    get,
    path = "/api/v1/runs",
    tag = "runs",
    params(RunsParams),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Recent runs", body = RunList),
        (status = 400, description = "A bad parameter", body = ErrorBody),
        (status = 401, description = "No or a bad token", body = ErrorBody),
        (status = 403, description = "Readers do not see runs", body = ErrorBody),
    )
)]
pub(crate) async fn list(
    State(gw): State<Gateway>,
    caller: Caller,
    RawQuery(qs): RawQuery,
) -> Result<Json<RunList>> {
    let mut filter = RunsFilter {
        limit: 20,
        status: None,
    };
    for (k, v) in pairs(qs.as_deref(), &["limit", "status"])? {
        match k.as_str() {
            "limit" => {
                filter.limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "`limit`: `{v}` is not a number from 1 to 1000"
                        ))
                    })?;
            }
            _ => filter.status = Some(v),
        }
    }
    Ok(Json(gw.core.runs(&caller.0, &filter).await?))
}

/// One run with its steps (`status: running` while in progress).
#[utoipa::path(
    get,
    path = "/api/v1/runs/{id}",
    tag = "runs",
    params(("id" = String, Path, description = "The run id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The run", body = RunDetail),
        (status = 401, description = "No or a bad token", body = ErrorBody),
        (status = 403, description = "Readers do not see runs", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
    )
)]
pub(crate) async fn get(
    State(gw): State<Gateway>,
    caller: Caller,
    Path(run_id): Path<String>,
) -> Result<Json<RunDetail>> {
    Ok(Json(gw.core.run(&caller.0, &run_id).await?))
}

/// The body of `POST /runs`.
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StartRun {
    /// A selection in the `--select` syntax (default: the whole DAG).
    select: Option<String>,
    /// Rebuild the selected tables from scratch, as `--full-refresh`.
    #[serde(default)]
    full_refresh: bool,
}

/// Admins: starts a run in the background.
#[utoipa::path(
    post,
    path = "/api/v1/runs",
    tag = "runs",
    request_body = StartRun,
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 202, description = "Started; `Location` names the run", body = Running),
        (status = 400, description = "A bad body or a selection that names no step", body = ErrorBody),
        (status = 401, description = "No or a bad token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 409, description = "Another run of this server is in progress", body = ErrorBody),
    )
)]
pub(crate) async fn start(
    State(gw): State<Gateway>,
    caller: Caller,
    b: std::result::Result<Json<StartRun>, JsonRejection>,
) -> Result<Response> {
    let s = body(b)?;
    let run = gw
        .core
        .start_run(&caller.0, s.select.as_deref(), s.full_refresh)
        .await?;
    let location = format!("/api/v1/runs/{}", run.run_id);
    let mut out = serde_json::to_value(&run).map_err(ApiError::internal)?;
    out["status"] = "running".into();
    Ok((
        StatusCode::ACCEPTED,
        [(axum::http::header::LOCATION, location)],
        Json(out),
    )
        .into_response())
}
