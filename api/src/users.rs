//! Accounts and keys: `POST /signup`, `POST /login`, the admin's `/users`, and `/api-keys`.

use assay_engine::access::Role;
use assay_engine::users::{ApiKeyRecord, UserRecord, UserStore};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::error::{ApiError, Result};
use crate::{Caller, Gateway};

/// A JSON body, or a 400 naming what is wrong with it.
pub(crate) fn body<T>(b: std::result::Result<Json<T>, JsonRejection>) -> Result<T> {
    b.map(|Json(v)| v)
        .map_err(|e| ApiError::BadRequest(format!("body: {}", e.body_text())))
}

fn store(gw: &Gateway) -> Result<&UserStore> {
    gw.policy
        .store()
        .ok_or_else(|| ApiError::NotFound("this server keeps no accounts".into()))
}

fn user_json(u: &UserRecord) -> serde_json::Value {
    json!({
        "name": u.name,
        "role": u.role,
        "is_active": u.is_active,
        "is_admin": u.is_admin,
        "created_at": u.created_at,
        "updated_at": u.updated_at,
        "updated_by": u.updated_by,
    })
}

fn key_json(k: &ApiKeyRecord) -> serde_json::Value {
    json!({
        "key_id": k.key_id,
        "user": k.user_name,
        "label": k.label,
        "revoked": k.revoked,
        "created_at": k.created_at,
        "updated_at": k.updated_at,
    })
}

/// Credentials of `signup`, `login` and an admin's `POST /users`.
#[derive(Deserialize)]
pub(crate) struct Credentials {
    username: String,
    password: String,
    #[serde(default)]
    role: Option<Role>,
}

/// `POST /api/v1/signup`: a new account by the server's signup policy.
pub(crate) async fn signup(
    State(gw): State<Gateway>,
    b: std::result::Result<Json<Credentials>, JsonRejection>,
) -> Result<Response> {
    let c = body(b)?;
    if c.role.is_some() {
        return Err(ApiError::BadRequest(
            "role: new accounts are readers; an admin changes roles".into(),
        ));
    }
    let user = gw.policy.signup(&c.username, &c.password).await?;
    let message = if user.is_active {
        "account created; log in with POST /api/v1/login"
    } else {
        "account created; an admin must activate it before you can log in"
    };
    Ok((
        StatusCode::CREATED,
        Json(json!({"user": user_json(&user), "message": message})),
    )
        .into_response())
}

/// `POST /api/v1/login`: a bearer token (JWT) for a user name and password.
pub(crate) async fn login(
    State(gw): State<Gateway>,
    b: std::result::Result<Json<Credentials>, JsonRejection>,
) -> Result<Response> {
    let c = body(b)?;
    let principal = gw.policy.authenticate(&c.username, &c.password).await?;
    let token = gw.policy.issue_token(&principal)?;
    Ok(Json(json!({
        "token": token,
        "token_type": "Bearer",
        "expires_in": gw.policy.token_ttl().as_secs(),
        "user": principal.name,
        "role": principal.role,
    }))
    .into_response())
}

/// `GET /api/v1/users` (admins): every account.
pub(crate) async fn list(State(gw): State<Gateway>, caller: Caller) -> Result<Response> {
    caller.require_admin()?;
    let users = store(&gw)?.users().await.map_err(ApiError::internal)?;
    let users: Vec<_> = users.iter().map(user_json).collect();
    Ok(Json(json!({ "users": users })).into_response())
}

/// `POST /api/v1/users` (admins): an active account with a role.
pub(crate) async fn create(
    State(gw): State<Gateway>,
    caller: Caller,
    b: std::result::Result<Json<Credentials>, JsonRejection>,
) -> Result<Response> {
    caller.require_admin()?;
    let c = body(b)?;
    let role = c.role.unwrap_or(Role::Reader);
    let user = gw
        .policy
        .create_user(&c.username, &c.password, role, &caller.0.name)
        .await?;
    Ok((StatusCode::CREATED, Json(user_json(&user))).into_response())
}

/// The changes `PATCH /users/{name}` accepts.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserPatch {
    is_active: Option<bool>,
    role: Option<Role>,
    is_admin: Option<bool>,
}

/// `PATCH /api/v1/users/{name}` (admins): activate, deactivate, change the role.
pub(crate) async fn update(
    State(gw): State<Gateway>,
    caller: Caller,
    Path(name): Path<String>,
    b: std::result::Result<Json<UserPatch>, JsonRejection>,
) -> Result<Response> {
    caller.require_admin()?;
    let p = body(b)?;
    let role = match (p.role, p.is_admin) {
        (Some(r), Some(a)) if (r == Role::Admin) != a => {
            return Err(ApiError::BadRequest(
                "role and is_admin disagree: is_admin is true exactly for role `admin`".into(),
            ));
        }
        (Some(r), _) => Some(r),
        (None, Some(true)) => Some(Role::Admin),
        (None, Some(false)) => Some(Role::Engineer),
        (None, None) => None,
    };
    if p.is_active.is_none() && role.is_none() {
        return Err(ApiError::BadRequest(
            "body: nothing to change (fields: is_active, role, is_admin)".into(),
        ));
    }
    if name == caller.0.name
        && (p.is_active == Some(false) || role.is_some_and(|r| r != Role::Admin))
    {
        return Err(ApiError::BadRequest(
            "you cannot deactivate or demote yourself; ask another admin".into(),
        ));
    }
    let user = store(&gw)?
        .update(&name, p.is_active, role, &caller.0.name)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::NotFound(format!("no account `{name}`")))?;
    tracing::info!(user = %name, by = %caller.0.name, active = user.is_active, role = ?user.role, "account changed");
    Ok(Json(user_json(&user)).into_response())
}

/// `?all=true` on `GET /api-keys`.
#[derive(Deserialize)]
pub(crate) struct KeysQuery {
    #[serde(default)]
    all: bool,
}

/// `GET /api/v1/api-keys`: the caller's keys (`?all=true`: everyone's, admins only).
pub(crate) async fn list_keys(
    State(gw): State<Gateway>,
    caller: Caller,
    q: std::result::Result<Query<KeysQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response> {
    let Query(q) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    if q.all {
        caller.require_admin()?;
    }
    let who = (!q.all).then_some(caller.0.name.as_str());
    let keys = store(&gw)?
        .api_keys(who)
        .await
        .map_err(ApiError::internal)?;
    let keys: Vec<_> = keys.iter().map(key_json).collect();
    Ok(Json(json!({ "api_keys": keys })).into_response())
}

/// The body of `POST /api-keys`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewKey {
    label: Option<String>,
}

/// `POST /api/v1/api-keys`: a new key acting as the caller; the key is shown only here.
pub(crate) async fn create_key(
    State(gw): State<Gateway>,
    caller: Caller,
    b: std::result::Result<Json<NewKey>, JsonRejection>,
) -> Result<Response> {
    let n = body(b)?;
    if n.label.as_ref().is_some_and(|l| l.len() > 200) {
        return Err(ApiError::BadRequest("label: at most 200 characters".into()));
    }
    let (record, key) = store(&gw)?
        .create_api_key(&caller.0.name, n.label)
        .await
        .map_err(ApiError::internal)?;
    let mut out = key_json(&record);
    out["key"] = json!(key);
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// `DELETE /api/v1/api-keys/{id}`: revokes a key (its owner or an admin).
pub(crate) async fn revoke_key(
    State(gw): State<Gateway>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response> {
    let s = store(&gw)?;
    let not_found = || ApiError::NotFound(format!("no API key `{id}`"));
    let key = s
        .api_key(&id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(not_found)?;
    if key.user_name != caller.0.name && caller.require_admin().is_err() {
        return Err(not_found());
    }
    let key = s
        .revoke_api_key(&id, &caller.0.name)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(not_found)?;
    Ok(Json(key_json(&key)).into_response())
}
