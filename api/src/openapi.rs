//! The OpenAPI 3.1 document, made by [`utoipa`] from the typed handlers as they are routed
//! (one [`utoipa_axum`] router holds both), and a Postman collection made from the document
//! (`docs/assay.postman_collection.json`).

use std::sync::OnceLock;

use serde_json::{Value, json};

/// The document: every route the gateway serves, with its parameters, request body and
/// response schemas.
pub fn document() -> Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let (_, mut api) = crate::routes::all().split_for_parts();
        api.info.version = env!("CARGO_PKG_VERSION").to_string();
        serde_json::to_value(&api).unwrap_or_else(|_| json!({}))
    })
    .clone()
}

/// One operation of the document: its method, path, summary, whether it needs a token and
/// an example body when it takes one.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    /// HTTP method, upper case.
    pub method: String,
    /// Path with `{param}` placeholders, from the server root.
    pub path: String,
    /// One-line summary.
    pub summary: String,
    /// True when a bearer token (or API key) is required.
    pub auth: bool,
    /// True when it takes a JSON body.
    pub body: bool,
}

/// Every operation of the document, sorted by path and method.
pub fn operations() -> Vec<Operation> {
    let doc = document();
    let mut out = Vec::new();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            let Some(item) = item.as_object() else {
                continue;
            };
            for (method, op) in item {
                out.push(Operation {
                    method: method.to_uppercase(),
                    path: path.clone(),
                    summary: op["summary"].as_str().unwrap_or_default().to_string(),
                    auth: op["security"].as_array().is_some_and(|s| !s.is_empty()),
                    body: op.get("requestBody").is_some(),
                });
            }
        }
    }
    out.sort_by(|a, b| (&a.path, &a.method).cmp(&(&b.path, &b.method)));
    out
}

/// An example body for a documented request, by path.
fn example(path: &str) -> Value {
    match path {
        "/api/v1/signup" | "/api/v1/login" => {
            json!({"username": "ana", "password": "a long password"})
        }
        "/api/v1/users" => {
            json!({"username": "bo", "password": "a long password", "role": "engineer"})
        }
        "/api/v1/users/{name}" => json!({"is_active": true, "role": "engineer"}),
        "/api/v1/api-keys" => json!({"label": "ci"}),
        "/api/v1/tables/{table}/rows" => {
            json!([{"product_id": 7, "name": "Mug", "price": "10.50"}])
        }
        "/api/v1/query" => json!({"sql": "SELECT * FROM gold.products LIMIT 10", "limit": 10}),
        "/api/v1/runs" => json!({"select": "gold+", "full_refresh": false}),
        "/api/v1/schedules/{name}" => json!({"paused": true}),
        _ => json!({}),
    }
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
            if o.body {
                request["body"] = json!({
                    "mode": "raw",
                    "raw": serde_json::to_string_pretty(&example(&o.path)).unwrap_or_default(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_has_a_summary_typed_parameters_and_response_schemas() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        let ops = operations();
        assert!(ops.len() >= 20, "{}", ops.len());
        for o in &ops {
            let entry = &doc["paths"][&o.path][o.method.to_lowercase()];
            assert!(!o.summary.is_empty(), "{} {}: no summary", o.method, o.path);
            for p in o
                .path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            {
                assert!(
                    entry["parameters"]
                        .as_array()
                        .is_some_and(|ps| ps.iter().any(|x| x["name"] == p && x["in"] == "path")),
                    "{} {}: path parameter {p}",
                    o.method,
                    o.path
                );
            }
            let ok = entry["responses"]
                .as_object()
                .and_then(|r| r.iter().find(|(code, _)| code.starts_with('2')))
                .map(|(_, r)| r.clone());
            let content = ok.as_ref().and_then(|r| r.get("content"));
            assert!(
                content.is_some(),
                "{} {}: no 2xx response schema",
                o.method,
                o.path
            );
        }
        // Parameters are typed: limit is an integer, not a string.
        let limit = doc["paths"]["/api/v1/tables/{table}/rows"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "limit")
            .unwrap()
            .clone();
        assert_eq!(
            limit["schema"]["type"]
                .as_str()
                .or(limit["schema"]["type"][0].as_str()),
            Some("integer")
        );
    }

    /// The collection in `docs/` is generated from the document; regenerate with
    /// `ASSAY_WRITE_POSTMAN=1 cargo test -p assay-api postman`.
    #[test]
    fn postman_collection_in_docs_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../docs/assay.postman_collection.json");
        let fresh = serde_json::to_string_pretty(&postman_collection()).unwrap_or_default() + "\n";
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
