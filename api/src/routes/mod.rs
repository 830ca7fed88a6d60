//! Every route, one file per resource, registered through one [`OpenApiRouter`] so the
//! OpenAPI document is made from the handlers themselves.

mod accounts;
mod cached;
mod catalog;
mod query;
mod rows;
mod runs;
mod schedules;
mod system;

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::Gateway;
use crate::error::{ApiError, ErrorBody};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Assay REST gateway",
        description = "The lake's catalog, filtered rows, appends, read-only SQL, runs and accounts. \
                       Every endpoint but health, readiness, signup, login and this document needs \
                       `Authorization: Bearer <token>` (a JWT from /login or an OIDC issuer, or an API key; \
                       API keys also as `X-API-Key`). Errors are `{code, message}`."
    ),
    modifiers(&Security),
    components(schemas(ErrorBody)),
    tags(
        (name = "health", description = "Liveness, readiness, metrics, this document"),
        (name = "accounts", description = "Signup, login, accounts and API keys"),
        (name = "tables", description = "The catalog, table details, rows and appends"),
        (name = "sql", description = "Read-only SQL"),
        (name = "runs", description = "Run history, starting runs, schedules"),
    )
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
    }
}

/// Every route with its documentation.
pub(crate) fn all() -> OpenApiRouter<Gateway> {
    // Full paths, no nesting: a nested router costs a prefix strip per request.
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(system::health))
        .routes(routes!(system::ready))
        .routes(routes!(system::metrics))
        .routes(routes!(accounts::signup))
        .routes(routes!(accounts::login))
        .routes(routes!(accounts::list, accounts::create))
        .routes(routes!(accounts::change))
        .routes(routes!(accounts::list_keys, accounts::create_key))
        .routes(routes!(accounts::revoke_key))
        .routes(routes!(catalog::catalog))
        .routes(routes!(catalog::lineage))
        .routes(routes!(catalog::table))
        .routes(routes!(catalog::history))
        .routes(routes!(rows::get_rows, rows::post_rows))
        .routes(routes!(query::query))
        .routes(routes!(runs::list, runs::start))
        .routes(routes!(runs::get))
        .routes(routes!(schedules::list))
        .routes(routes!(schedules::change))
        .routes(routes!(system::openapi))
}

/// The answer for a path no route has.
pub(crate) async fn not_found() -> ApiError {
    ApiError::Service(assay_engine::service::ServiceError::not_found(
        "no such endpoint",
    ))
}

/// A JSON body, or a 400 naming what is wrong with it.
pub(crate) fn body<T>(
    b: std::result::Result<axum::Json<T>, axum::extract::rejection::JsonRejection>,
) -> crate::Result<T> {
    b.map(|axum::Json(v)| v)
        .map_err(|e| ApiError::bad_request(format!("body: {}", e.body_text())))
}

/// The `key=value` pairs of a raw query string, sorted; a key outside `known` is a 400.
pub(crate) fn pairs(raw: Option<&str>, known: &[&str]) -> crate::Result<Vec<(String, String)>> {
    let mut pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .filter(|(k, _)| !k.is_empty())
            .collect();
    pairs.sort();
    for (k, _) in &pairs {
        if !known.contains(&k.as_str()) {
            return Err(ApiError::bad_request(format!(
                "unknown parameter `{k}` ({})",
                known.join(", ")
            )));
        }
    }
    Ok(pairs)
}

/// A table id from the path, or a 400 naming what is wrong.
pub(crate) fn table_id(raw: &str) -> crate::Result<assay_engine::TableId> {
    assay_engine::TableId::parse(raw).map_err(ApiError::bad_request)
}
