//! Time travel over the servers: older versions through REST rows (`?version=`,
//! `?as_of=`), the history pages, SQL (`VERSION AS OF`, `TIMESTAMP AS OF`, `name@v3`) over
//! REST and Flight SQL (ADBC), with the role rules and the response cache.

use crate::kit::Backend;
use crate::lifecycle::project;

/// A request with the root token (a JSON body when `body` is given); status and JSON body.
async fn call(
    base: &str,
    bearer: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let client = reqwest::Client::new();
    let request = match body {
        Some(b) => client.post(format!("{base}{path}")).json(&b),
        None => client.get(format!("{base}{path}")),
    };
    let r = request
        .header("Authorization", bearer)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

async fn get(base: &str, bearer: &str, path: &str) -> (u16, serde_json::Value) {
    call(base, bearer, path, None).await
}

async fn sql(base: &str, bearer: &str, sql: &str) -> (u16, serde_json::Value) {
    call(
        base,
        bearer,
        "/api/v1/query",
        Some(serde_json::json!({ "sql": sql })),
    )
    .await
}

#[tokio::test]
async fn older_versions_are_served_over_rest_sql_and_flight() {
    let f = project(&Backend::Local, "", 3);
    // Between the first and the second commit of bronze.events.
    let first = f.digest("bronze.events", Some(0));
    assert_eq!(first["rows"], 10);
    let served = f.serve_as_root(std::process::Stdio::null());
    let bearer = crate::kit::root_bearer(served.port);
    let base = served.rest.clone();

    let (status, page) = get(
        &base,
        &bearer,
        "/api/v1/tables/bronze.events/rows?version=0&limit=1000",
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["version"], 0);
    assert_eq!(page["count"], 10);
    let (_, latest) = get(
        &base,
        &bearer,
        "/api/v1/tables/bronze.events/rows?limit=1000",
    )
    .await;
    assert_eq!(latest["version"], 2);
    assert_eq!(latest["count"], 32);
    // By time: the commits' own times decide.
    let (_, history) = get(&base, &bearer, "/api/v1/tables/bronze.events/history").await;
    let commits = history["commits"].as_array().unwrap();
    assert_eq!(commits.len(), 3, "{history}");
    assert_eq!(commits[0]["version"], 2);
    assert_eq!(commits[2]["version"], 0);
    assert_eq!(commits[2]["rows_added"], 10, "{history}");
    assert_eq!(commits[2]["data_change"], true);
    let t1 = commits[1]["timestamp"].as_str().unwrap().to_string();
    let (status, at) = get(
        &base,
        &bearer,
        &format!(
            "/api/v1/tables/bronze.events/rows?as_of={}&limit=1000",
            t1.replace('+', "%2B")
        ),
    )
    .await;
    assert_eq!(status, 200, "{at}");
    assert_eq!(at["version"], 1);
    assert_eq!(at["count"], 21);
    // An old version is cached like the latest, and reading it leaves the other entries of
    // the table cached.
    let client = reqwest::Client::new();
    let cache_of = |path: &'static str| {
        let request = client
            .get(format!("{base}/api/v1/tables/bronze.events/rows?{path}"))
            .header("Authorization", &bearer);
        async move {
            let r = request.send().await.unwrap();
            r.headers()["x-cache"].to_str().unwrap().to_string()
        }
    };
    assert_eq!(cache_of("limit=5").await, "miss");
    assert_eq!(cache_of("limit=5").await, "hit");
    assert_eq!(cache_of("version=0&limit=5").await, "miss");
    assert_eq!(cache_of("version=0&limit=5").await, "hit");
    assert_eq!(cache_of("limit=5").await, "hit");
    // Filters apply to the old version as to the latest.
    let (_, filtered) = get(
        &base,
        &bearer,
        "/api/v1/tables/bronze.events/rows?version=0&kind=a",
    )
    .await;
    assert_eq!(filtered["count"], 4, "{filtered}");

    // Bad requests name what is wrong.
    let (status, e) = get(
        &base,
        &bearer,
        "/api/v1/tables/bronze.events/rows?version=99",
    )
    .await;
    assert_eq!(status, 404, "{e}");
    assert!(e.to_string().contains("there is no version 99"), "{e}");
    let (status, e) = get(
        &base,
        &bearer,
        "/api/v1/tables/bronze.events/rows?version=x",
    )
    .await;
    assert_eq!(status, 400, "{e}");
    let (status, e) = get(
        &base,
        &bearer,
        "/api/v1/tables/bronze.events/rows?version=1&as_of=2026-01-01",
    )
    .await;
    assert_eq!(status, 400, "{e}");
    let (status, e) = get(
        &base,
        &bearer,
        "/api/v1/tables/bronze.events/rows?as_of=2001-01-01",
    )
    .await;
    assert_eq!(status, 404, "{e}");
    assert!(e.to_string().contains("no version was committed"), "{e}");

    // History pages.
    let (_, p1) = get(
        &base,
        &bearer,
        "/api/v1/tables/bronze.events/history?limit=2",
    )
    .await;
    assert_eq!(p1["commits"].as_array().unwrap().len(), 2);
    assert_eq!(p1["next_offset"], 2);
    let (_, p2) = get(
        &base,
        &bearer,
        "/api/v1/tables/bronze.events/history?limit=2&offset=2",
    )
    .await;
    assert_eq!(p2["commits"][0]["version"], 0);
    assert_eq!(p2["next_offset"], serde_json::Value::Null);
    let (status, _) = get(
        &base,
        &bearer,
        "/api/v1/tables/bronze.events/history?limit=0",
    )
    .await;
    assert_eq!(status, 400);

    // SQL: Delta's clauses, and the `@` form.
    let (status, r) = sql(
        &base,
        &bearer,
        "SELECT COUNT(*) AS n FROM bronze.events VERSION AS OF 0",
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert!(r.to_string().contains("\"n\":10"), "{r}");
    let (_, r) = sql(
        &base,
        &bearer,
        &format!("SELECT COUNT(*) AS n FROM bronze.events TIMESTAMP AS OF '{t1}'"),
    )
    .await;
    assert!(r.to_string().contains("\"n\":21"), "{r}");
    let (_, r) = sql(
        &base,
        &bearer,
        "SELECT (SELECT COUNT(*) FROM bronze.\"events@v2\") - (SELECT COUNT(*) FROM bronze.events VERSION AS OF 1) AS d",
    )
    .await;
    assert!(r.to_string().contains("\"d\":11"), "{r}");
    let (status, r) = sql(
        &base,
        &bearer,
        "SELECT * FROM bronze.events VERSION AS OF 7",
    )
    .await;
    assert_eq!(status, 404, "{r}");
    // The role rules stay the same: a reader sees no old version of a silver table either.
    let (status, r) = call(
        &base,
        &bearer,
        "/api/v1/users",
        Some(serde_json::json!({"username": "rita", "password": "reader-pw-1", "role": "reader"})),
    )
    .await;
    assert_eq!(status, 201, "{r}");
    let (status, login) = call(
        &base,
        "",
        "/api/v1/login",
        Some(serde_json::json!({"username": "rita", "password": "reader-pw-1"})),
    )
    .await;
    assert_eq!(status, 200, "{login}");
    let reader = format!("Bearer {}", login["token"].as_str().unwrap());
    let (status, _) = get(
        &base,
        &reader,
        "/api/v1/tables/silver.events/rows?version=0",
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = get(&base, &reader, "/api/v1/tables/silver.events/history").await;
    assert_eq!(status, 404);
    let (status, _) = sql(
        &base,
        &reader,
        "SELECT * FROM silver.events VERSION AS OF 0",
    )
    .await;
    assert_eq!(status, 404);
    let (status, r) = sql(
        &base,
        &reader,
        "SELECT COUNT(*) AS n FROM gold.kinds VERSION AS OF 0",
    )
    .await;
    assert_eq!(status, 200, "{r}");
    let n = crate::kit::adbc_scalar(
        &served.flight,
        "SELECT COUNT(*) FROM bronze.events VERSION AS OF 1",
    );
    assert_eq!(n, "21");
    served.stop();
}
