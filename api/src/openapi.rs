//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 description of every route, and a Postman
//! collection built from it (`docs/assay.postman_collection.json`).
//!
//! [`operations`] is the one list of documented routes; a test sends a request to each
//! and checks the router knows it.

use axum::Json;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// One documented operation.
#[derive(Debug, Clone)]
pub struct Operation {
    /// HTTP method, upper case.
    pub method: &'static str,
    /// Path with `{param}` placeholders, from the server root.
    pub path: &'static str,
    /// One-line summary.
    pub summary: &'static str,
    /// Group (tag).
    pub tag: &'static str,
    /// True when a bearer token (or API key) is required.
    pub auth: bool,
    /// Query parameters: name and description.
    pub query: &'static [(&'static str, &'static str)],
    /// An example JSON request body.
    pub body: Option<fn() -> Value>,
    /// Status codes besides 200 with their meaning.
    pub responses: &'static [(u16, &'static str)],
}

const ERRORS: &[(u16, &str)] = &[
    (
        400,
        "bad request: the message names the parameter, field or rule",
    ),
    (401, "missing, invalid or expired token"),
    (
        403,
        "the role does not allow it, or the account is inactive",
    ),
];

/// Every route of the gateway.
pub fn operations() -> Vec<Operation> {
    let op = |method, path, summary, tag| Operation {
        method,
        path,
        summary,
        tag,
        auth: true,
        query: &[],
        body: None,
        responses: ERRORS,
    };
    vec![
        Operation {
            auth: false,
            responses: &[],
            ..op("GET", "/health", "Liveness: the process answers", "health")
        },
        Operation {
            auth: false,
            responses: &[(503, "the lake is unreachable")],
            ..op(
                "GET",
                "/ready",
                "Readiness: the lake can be listed",
                "health",
            )
        },
        op(
            "GET",
            "/metrics",
            "Prometheus metrics (engineers and admins)",
            "health",
        ),
        Operation {
            auth: false,
            body: Some(|| json!({"username": "ana", "password": "a long password"})),
            responses: &[
                (
                    201,
                    "account created (inactive under the `approval` policy)",
                ),
                (400, "bad user name or password"),
                (403, "signup is closed"),
                (409, "the user name is taken"),
            ],
            ..op("POST", "/api/v1/signup", "Create an account", "accounts")
        },
        Operation {
            auth: false,
            body: Some(|| json!({"username": "ana", "password": "a long password"})),
            responses: &[
                (401, "invalid user name or password"),
                (403, "the account is inactive"),
            ],
            ..op(
                "POST",
                "/api/v1/login",
                "Exchange a user name and password for a JWT",
                "accounts",
            )
        },
        op("GET", "/api/v1/users", "List accounts (admins)", "accounts"),
        Operation {
            body: Some(
                || json!({"username": "bo", "password": "a long password", "role": "engineer"}),
            ),
            responses: &[(201, "created"), (409, "the user name is taken")],
            ..op(
                "POST",
                "/api/v1/users",
                "Create an active account with a role (admins)",
                "accounts",
            )
        },
        Operation {
            body: Some(|| json!({"is_active": true, "role": "engineer"})),
            responses: &[(404, "no such account")],
            ..op(
                "PATCH",
                "/api/v1/users/{name}",
                "Activate, deactivate or change the role of an account (admins)",
                "accounts",
            )
        },
        Operation {
            query: &[("all", "`true`: every user's keys (admins)")],
            ..op("GET", "/api/v1/api-keys", "List your API keys", "accounts")
        },
        Operation {
            body: Some(|| json!({"label": "nightly export"})),
            responses: &[(201, "created; `key` is shown only in this response")],
            ..op(
                "POST",
                "/api/v1/api-keys",
                "Create an API key that acts as you",
                "accounts",
            )
        },
        Operation {
            responses: &[(404, "no such key (or not yours)")],
            ..op(
                "DELETE",
                "/api/v1/api-keys/{id}",
                "Revoke an API key",
                "accounts",
            )
        },
        Operation {
            query: &[
                (
                    "layer",
                    "only tables of this layer (bronze, silver, gold, _system)",
                ),
                ("q", "only tables whose name contains this text"),
            ],
            ..op(
                "GET",
                "/api/v1/catalog",
                "Tables you may see, with schema, version, rows, size, partitions",
                "tables",
            )
        },
        Operation {
            responses: &[(404, "no such table, or not visible to your role")],
            ..op(
                "GET",
                "/api/v1/tables/{table}",
                "One table's detail and recent commits",
                "tables",
            )
        },
        Operation {
            query: &[
                ("{column}", "equality filter, e.g. `category=A`"),
                (
                    "{column}[op]",
                    "op: eq, ne, gt, gte, lt, lte, like, in (comma-separated)",
                ),
                ("columns", "comma-separated columns to return"),
                ("order_by", "comma-separated columns, `-col` for descending"),
                ("limit", "rows to return (default 100)"),
                ("offset", "rows to skip"),
            ],
            responses: &[
                (304, "not modified (If-None-Match)"),
                (400, "unknown column, bad value or operator"),
                (404, "no such table, or not visible to your role"),
                (406, "unsupported Accept"),
            ],
            ..op(
                "GET",
                "/api/v1/tables/{table}/rows",
                "Rows with filters pushed into the scan; JSON (cached), CSV, Arrow or Parquet",
                "tables",
            )
        },
        Operation {
            body: Some(|| json!([{"id": 7, "name": "lamp", "category": "C", "price": 19.5}])),
            responses: &[
                (201, "appended in one commit"),
                (400, "the message names the row and field"),
            ],
            ..op(
                "POST",
                "/api/v1/tables/{table}/rows",
                "Append JSON rows in one commit (admins)",
                "tables",
            )
        },
        Operation {
            body: Some(
                || json!({"sql": "SELECT category, count(*) FROM gold.products GROUP BY 1", "limit": 100}),
            ),
            responses: &[
                (400, "invalid SQL"),
                (403, "not read-only, or a schema your role cannot see"),
                (406, "unsupported Accept"),
                (422, "the result exceeds the row limit"),
                (504, "the query timed out"),
            ],
            ..op(
                "POST",
                "/api/v1/query",
                "Read-only SQL; JSON, CSV, Arrow or Parquet by Accept",
                "query",
            )
        },
        Operation {
            query: &[
                ("limit", "runs to return, 1 to 1000 (default 20)"),
                ("status", "succeeded or failed"),
            ],
            ..op(
                "GET",
                "/api/v1/runs",
                "Recent runs, newest first, and the one in progress (engineers and admins)",
                "runs",
            )
        },
        Operation {
            responses: &[(404, "no such run")],
            ..op(
                "GET",
                "/api/v1/runs/{id}",
                "One run with its steps (engineers and admins)",
                "runs",
            )
        },
        Operation {
            body: Some(|| json!({"select": "gold.sales_by_category+", "full_refresh": false})),
            responses: &[
                (202, "started; poll the Location"),
                (400, "the selection is invalid"),
                (409, "another run is in progress"),
            ],
            ..op(
                "POST",
                "/api/v1/runs",
                "Start a run of the DAG or a selection (admins)",
                "runs",
            )
        },
        Operation {
            auth: false,
            responses: &[],
            ..op("GET", "/api/v1/openapi.json", "This document", "health")
        },
    ]
}

fn path_params(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .collect()
}

/// The OpenAPI 3.1 document.
pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for o in operations() {
        let mut params: Vec<Value> = path_params(o.path)
            .into_iter()
            .map(|p| json!({"name": p, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        params.extend(o.query.iter().map(|(name, description)| {
            json!({"name": name, "in": "query", "required": false,
                   "description": description, "schema": {"type": "string"}})
        }));
        let mut responses = serde_json::Map::new();
        if !o.responses.iter().any(|(c, _)| (200..300).contains(c)) {
            responses.insert("200".into(), json!({"description": "OK"}));
        }
        for (code, description) in o.responses {
            let mut r = json!({"description": description});
            if *code >= 400 {
                r["content"] =
                    json!({"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}});
            }
            responses.insert(code.to_string(), r);
        }
        let mut operation = json!({
            "summary": o.summary,
            "tags": [o.tag],
            "operationId": format!("{}{}", o.method.to_lowercase(), o.path.replace(['/', '{', '}', '.', '-'], "_")),
            "parameters": params,
            "responses": responses,
        });
        if !o.auth {
            operation["security"] = json!([]);
        }
        if let Some(example) = o.body {
            operation["requestBody"] = json!({
                "required": true,
                "content": {"application/json": {"example": example()}},
            });
        }
        let entry = paths.entry(o.path.to_string()).or_insert_with(|| json!({}));
        entry[o.method.to_lowercase()] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Assay REST gateway",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The lake's catalog, rows, SQL, runs and accounts.",
        },
        "servers": [{"url": "http://127.0.0.1:8080"}],
        "security": [{"bearer": []}, {"apiKey": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT or API key"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                },
            },
        },
    })
}

/// A Postman (v2.1) collection of every operation, with `{{base_url}}` and `{{token}}`.
pub fn postman_collection() -> Value {
    let items: Vec<Value> = operations()
        .into_iter()
        .map(|o| {
            let raw_path = o.path.replace('{', ":").replace('}', "");
            let mut headers = vec![json!({"key": "Content-Type", "value": "application/json"})];
            if o.auth {
                headers.push(json!({"key": "Authorization", "value": "Bearer {{token}}"}));
            }
            let mut request = json!({
                "method": o.method,
                "header": headers,
                "url": {
                    "raw": format!("{{{{base_url}}}}{raw_path}"),
                    "host": ["{{base_url}}"],
                    "path": raw_path.trim_start_matches('/').split('/').collect::<Vec<_>>(),
                },
                "description": o.summary,
            });
            if let Some(example) = o.body {
                request["body"] = json!({
                    "mode": "raw",
                    "raw": serde_json::to_string_pretty(&example()).unwrap_or_default(),
                    "options": {"raw": {"language": "json"}},
                });
            }
            json!({"name": format!("{} {}", o.method, o.path), "request": request})
        })
        .collect();
    json!({
        "info": {
            "name": "Assay REST gateway",
            "schema": "https://schema.getpostman.com/json/collection/v2.1.0/collection.json",
        },
        "variable": [
            {"key": "base_url", "value": "http://127.0.0.1:8080"},
            {"key": "token", "value": ""},
        ],
        "item": items,
    })
}

/// `GET /api/v1/openapi.json`.
pub(crate) async fn serve() -> Response {
    Json(document()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_is_documented_once() {
        let doc = document();
        let ops = operations();
        let mut seen = std::collections::HashSet::new();
        for o in &ops {
            assert!(
                seen.insert((o.method, o.path)),
                "{} {} twice",
                o.method,
                o.path
            );
            let entry = &doc["paths"][o.path][o.method.to_lowercase()];
            assert_eq!(entry["summary"], o.summary);
            for p in path_params(o.path) {
                assert!(
                    entry["parameters"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|x| x["name"] == p && x["in"] == "path")
                );
            }
        }
    }

    /// The collection in `docs/` is generated from the document; regenerate with
    /// `ASSAY_WRITE_POSTMAN=1 cargo test -p assay-api postman`.
    #[test]
    fn postman_collection_in_docs_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../docs/assay.postman_collection.json");
        let fresh = serde_json::to_string_pretty(&postman_collection()).unwrap() + "\n";
        if std::env::var_os("ASSAY_WRITE_POSTMAN").is_some() {
            std::fs::write(&path, &fresh).unwrap();
        }
        let stored = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            stored == fresh,
            "docs/assay.postman_collection.json is stale: run ASSAY_WRITE_POSTMAN=1 cargo test -p assay-api postman"
        );
    }
}
