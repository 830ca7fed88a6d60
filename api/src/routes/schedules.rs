//! `GET /schedules` (engineers and admins) and `PATCH /schedules/{name}` (admins).

use assay_engine::service::ScheduleInfo;
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};

use super::body;
use crate::error::{ErrorBody, Result};
use crate::{Caller, Gateway};

/// The project's schedules: cron, time zone, selection, pause state, next fire time and
/// what the last tick did.
#[utoipa::path(
    get,
    path = "/api/v1/schedules",
    tag = "runs",
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Every schedule of the project", body = Vec<ScheduleInfo>),
        (status = 401, description = "No or a bad token", body = ErrorBody),
        (status = 403, description = "Readers do not see runs", body = ErrorBody),
    )
)]
pub(crate) async fn list(
    State(gw): State<Gateway>,
    caller: Caller,
) -> Result<Json<Vec<ScheduleInfo>>> {
    Ok(Json(gw.core.schedules(&caller.0).await?))
}

/// The body of `PATCH /schedules/{name}`.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChangeSchedule {
    /// `true` pauses the schedule (its ticks start no run), `false` resumes it.
    paused: bool,
}

/// Admins: pauses or resumes a schedule for every server of the lake (kept in the lake, so
/// it survives restarts).
#[utoipa::path(
    patch,
    path = "/api/v1/schedules/{name}",
    tag = "runs",
    params(("name" = String, Path, description = "The schedule's name")),
    request_body = ChangeSchedule,
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The schedule as changed", body = ScheduleInfo),
        (status = 400, description = "A bad body", body = ErrorBody),
        (status = 401, description = "No or a bad token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such schedule", body = ErrorBody),
    )
)]
pub(crate) async fn change(
    State(gw): State<Gateway>,
    caller: Caller,
    Path(name): Path<String>,
    b: std::result::Result<Json<ChangeSchedule>, JsonRejection>,
) -> Result<Json<ScheduleInfo>> {
    let c = body(b)?;
    Ok(Json(
        gw.core.pause_schedule(&caller.0, &name, c.paused).await?,
    ))
}
