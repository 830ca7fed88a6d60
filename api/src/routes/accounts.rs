//! Accounts and keys: `POST /signup`, `POST /login`, the admins' `/users`, and `/api-keys`.

use assay_engine::auth::Role;
use assay_engine::service::{Account, AccountChange, ApiKey, Login, NewApiKey};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::{body, pairs};
use crate::error::{ApiError, ErrorBody, Result};
use crate::{Caller, Gateway};

/// A user name and password (and, for an admin creating an account, a role).
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
pub(crate) struct Credentials {
    /// 1-64 of letters, digits, `.`, `_`, `-`, `@`.
    username: String,
    /// At least 8 characters.
    password: String,
    /// `POST /users` only: `reader` (default), `engineer` or `admin`.
    #[serde(default)]
    role: Option<Role>,
}

/// A new account.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct SignedUp {
    /// The account.
    user: Account,
    /// What to do next.
    message: String,
}

/// Creates an account by the server's signup policy: inactive until an admin activates it
/// (`approval`), active at once (`open`), or refused (`closed`). New accounts are readers.
#[utoipa::path(
    post,
    path = "/api/v1/signup",
    tag = "accounts",
    request_body = Credentials,
    responses(
        (status = 201, description = "Created", body = SignedUp),
        (status = 400, description = "A bad name, password or body", body = ErrorBody),
        (status = 403, description = "Signup is closed", body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
        (status = 429, description = "Too many signups from this address", body = ErrorBody),
    )
)]
pub(crate) async fn signup(
    State(gw): State<Gateway>,
    ext: axum::http::Extensions,
    b: std::result::Result<Json<Credentials>, JsonRejection>,
) -> Result<Response> {
    let c = body(b)?;
    if c.role.is_some() {
        return Err(ApiError::bad_request(
            "role: new accounts are readers; an admin changes roles",
        ));
    }
    let user = gw
        .core
        .signup(&c.username, &c.password, crate::client_ip(&ext))
        .await?;
    let message = if user.is_active {
        "account created; log in with POST /api/v1/login"
    } else {
        "account created; an admin must activate it before you can log in"
    };
    Ok((
        StatusCode::CREATED,
        Json(SignedUp {
            user,
            message: message.into(),
        }),
    )
        .into_response())
}

/// A bearer token (JWT) for a user name and password.
#[utoipa::path(
    post,
    path = "/api/v1/login",
    tag = "accounts",
    request_body = Credentials,
    responses(
        (status = 200, description = "Signed in", body = Login),
        (status = 400, description = "A bad body", body = ErrorBody),
        (status = 401, description = "Unknown user or wrong password", body = ErrorBody),
        (status = 403, description = "The account is inactive", body = ErrorBody),
        (status = 429, description = "Too many logins from this address or for this account", body = ErrorBody),
    )
)]
pub(crate) async fn login(
    State(gw): State<Gateway>,
    ext: axum::http::Extensions,
    b: std::result::Result<Json<Credentials>, JsonRejection>,
) -> Result<Json<Login>> {
    let c = body(b)?;
    let client = crate::client_ip(&ext);
    Ok(Json(gw.core.login(&c.username, &c.password, client).await?))
}

/// Every account.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Accounts {
    /// Sorted by name.
    users: Vec<Account>,
}

/// Admins: every account (never a hash).
#[utoipa::path(
    get,
    path = "/api/v1/users",
    tag = "accounts",
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The accounts", body = Accounts),
        (status = 401, description = "No or a bad token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 503, description = "The account store is unavailable", body = ErrorBody),
    )
)]
pub(crate) async fn list(State(gw): State<Gateway>, caller: Caller) -> Result<Json<Accounts>> {
    Ok(Json(Accounts {
        users: gw.core.accounts(&caller.0).await?,
    }))
}

/// Admins: an active account with a role.
#[utoipa::path(
    post,
    path = "/api/v1/users",
    tag = "accounts",
    request_body = Credentials,
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 201, description = "Created", body = Account),
        (status = 400, description = "A bad name, password or body", body = ErrorBody),
        (status = 401, description = "No or a bad token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
        (status = 429, description = "Too many signups from this address", body = ErrorBody),
    )
)]
pub(crate) async fn create(
    State(gw): State<Gateway>,
    caller: Caller,
    b: std::result::Result<Json<Credentials>, JsonRejection>,
) -> Result<Response> {
    let c = body(b)?;
    let role = c.role.unwrap_or(Role::Reader);
    let user = gw
        .core
        .create_account(&caller.0, &c.username, &c.password, role)
        .await?;
    Ok((StatusCode::CREATED, Json(user)).into_response())
}

/// Admins: activate, deactivate, change the role (not their own).
#[utoipa::path(
    patch,
    path = "/api/v1/users/{name}",
    tag = "accounts",
    params(("name" = String, Path, description = "The account")),
    request_body = AccountChange,
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Changed", body = Account),
        (status = 400, description = "A bad body, or a change to oneself", body = ErrorBody),
        (status = 401, description = "No or a bad token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such account", body = ErrorBody),
    )
)]
pub(crate) async fn change(
    State(gw): State<Gateway>,
    caller: Caller,
    Path(name): Path<String>,
    b: std::result::Result<Json<AccountChange>, JsonRejection>,
) -> Result<Json<Account>> {
    let change = body(b)?;
    Ok(Json(
        gw.core.change_account(&caller.0, &name, &change).await?,
    ))
}

/// API keys.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Keys {
    /// The keys.
    api_keys: Vec<ApiKey>,
}

/// `?all=true` on `GET /api-keys`.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct KeysParams {
    /// Everyone's keys (admins only).
    all: Option<bool>,
}

/// The caller's keys (`?all=true`: everyone's, admins only).
#[utoipa::path(
    get,
    path = "/api/v1/api-keys",
    tag = "accounts",
    params(KeysParams),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The keys", body = Keys),
        (status = 400, description = "A bad parameter", body = ErrorBody),
        (status = 401, description = "No or a bad token", body = ErrorBody),
        (status = 403, description = "`all` for a non-admin", body = ErrorBody),
    )
)]
pub(crate) async fn list_keys(
    State(gw): State<Gateway>,
    caller: Caller,
    RawQuery(qs): RawQuery,
) -> Result<Json<Keys>> {
    let mut all = false;
    for (_, v) in pairs(qs.as_deref(), &["all"])? {
        all = match v.as_str() {
            "true" => true,
            "false" => false,
            other => {
                return Err(ApiError::bad_request(format!(
                    "`all`: `{other}` is not true or false"
                )));
            }
        };
    }
    Ok(Json(Keys {
        api_keys: gw.core.api_keys(&caller.0, all).await?,
    }))
}

/// The body of `POST /api-keys`.
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewKey {
    /// A label (at most 200 characters).
    label: Option<String>,
}

/// A new key acting as the caller; the key is shown only in this response.
#[utoipa::path(
    post,
    path = "/api/v1/api-keys",
    tag = "accounts",
    request_body = NewKey,
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 201, description = "Created; `key` is shown only here", body = NewApiKey),
        (status = 400, description = "A bad body or label", body = ErrorBody),
        (status = 401, description = "No or a bad token", body = ErrorBody),
    )
)]
pub(crate) async fn create_key(
    State(gw): State<Gateway>,
    caller: Caller,
    b: std::result::Result<Json<NewKey>, JsonRejection>,
) -> Result<Response> {
    let n = body(b)?;
    let key = gw.core.create_api_key(&caller.0, n.label).await?;
    Ok((StatusCode::CREATED, Json(key)).into_response())
}

/// Revokes a key (its owner or an admin).
#[utoipa::path(
    delete,
    path = "/api/v1/api-keys/{id}",
    tag = "accounts",
    params(("id" = String, Path, description = "The key id")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Revoked", body = ApiKey),
        (status = 401, description = "No or a bad token", body = ErrorBody),
        (status = 404, description = "No such key (or not the caller's)", body = ErrorBody),
    )
)]
pub(crate) async fn revoke_key(
    State(gw): State<Gateway>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ApiKey>> {
    Ok(Json(gw.core.revoke_api_key(&caller.0, &id).await?))
}
