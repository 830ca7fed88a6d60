//! Auth, filters, errors, SQL safety, catalog and table detail, and a fuzzed query string.

use reqwest::Method;
use serde_json::json;

use crate::kit::{ADMIN, ENGINEER, READER, Server, column};

#[tokio::test]
async fn health_is_open_and_everything_else_needs_a_token() {
    let s = Server::start().await;
    let (status, _) = s.json(Method::GET, "/health", None, None).await;
    assert_eq!(status, 200);
    let (status, body) = s.json(Method::GET, "/ready", None, None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ready")));
    for path in ["/api/v1/catalog", "/api/v1/tables/gold.products/rows"] {
        let (status, body) = s.json(Method::GET, path, None, None).await;
        assert_eq!(status, 401, "{path}");
        assert_eq!(body["code"], "unauthenticated");
        let (status, _) = s.json(Method::GET, path, Some("forged"), None).await;
        assert_eq!(status, 401, "{path}");
    }
    let (status, body) = s
        .json(
            Method::POST,
            "/api/v1/login",
            None,
            Some(json!({"username": "admin", "password": "nope"})),
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(body["message"], "invalid user name or password");
}

#[tokio::test]
async fn roles_decide_what_is_visible_and_who_writes() {
    let s = Server::start().await;
    let reader = s.token(READER).await;
    let engineer = s.token(ENGINEER).await;
    let (status, body) = s
        .json(
            Method::GET,
            "/api/v1/tables/silver.orders/rows",
            Some(&reader),
            None,
        )
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = s
        .json(
            Method::GET,
            "/api/v1/tables/silver.orders/rows",
            Some(&engineer),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["count"], 2);
    let (status, body) = s
        .json(
            Method::POST,
            "/api/v1/tables/gold.products/rows",
            Some(&reader),
            Some(json!([{"product_id": 1, "name": "x", "category": "A", "price": 1}])),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    let (_, body) = s
        .json(Method::GET, "/api/v1/catalog", Some(&reader), None)
        .await;
    let names: Vec<&str> = body["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["table"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["gold.products"]);
    let admin = s.token(ADMIN).await;
    let (_, body) = s
        .json(Method::GET, "/api/v1/catalog?q=orders", Some(&admin), None)
        .await;
    let t = &body["tables"][0];
    assert_eq!(t["table"], "silver.orders");
    assert_eq!(t["layer"], "silver");
    assert_eq!(t["rows"], 2);
    assert_eq!(t["columns"][0]["name"], "order_id");
    assert_eq!(t["columns"][0]["type"], "Int64");
}

#[tokio::test]
async fn filters_order_columns_and_paging() {
    let s = Server::start().await;
    let t = s.token(READER).await;
    let get = |q: &'static str| {
        let s = &s;
        let t = t.clone();
        async move {
            s.get(&format!("/api/v1/tables/gold.products/rows?{q}"), &t)
                .await
                .2
        }
    };
    assert_eq!(
        column(&get("price[gte]=19.90&order_by=-price").await, "product_id"),
        ["20", "10", "31"]
    );
    assert_eq!(
        column(
            &get("product_id[in]=10,30,99&order_by=product_id").await,
            "product_id"
        ),
        ["10", "30"]
    );
    assert_eq!(
        column(&get("name[like]=%25MUG%25").await, "name"),
        Vec::<String>::new()
    );
    assert_eq!(
        column(&get("name[like]=Ceramic%25").await, "name"),
        ["Ceramic mug"]
    );
    assert_eq!(
        column(
            &get("category[ne]=C&order_by=product_id").await,
            "product_id"
        ),
        ["10", "20"]
    );
    let body = get("order_by=product_id&limit=2&offset=1&columns=product_id,price").await;
    assert_eq!(column(&body, "product_id"), ["20", "30"]);
    assert_eq!(body["rows"][0].as_object().unwrap().len(), 2);
    assert_eq!(body["version"], 0);
}

#[tokio::test]
async fn bad_requests_are_400s_that_name_the_problem() {
    let s = Server::start().await;
    let t = s.token(ADMIN).await;
    for (path, want) in [
        (
            "/api/v1/tables/gold.products/rows?colour=red",
            "unknown column `colour`",
        ),
        (
            "/api/v1/tables/gold.products/rows?price[gte]=cheap",
            "`price[gte]`: `cheap` is not a valid",
        ),
        (
            "/api/v1/tables/gold.products/rows?price[between]=1",
            "unknown operator `between`",
        ),
        ("/api/v1/tables/gold.products/rows?limit=-1", "`limit`"),
        (
            "/api/v1/tables/gold.products/rows?price[like]=1%25",
            "`like` needs a text column",
        ),
        (
            "/api/v1/tables/gold.products/rows?order_by=nope",
            "unknown column `nope`",
        ),
        ("/api/v1/tables/nolayer/rows", "not of the form layer.table"),
        ("/api/v1/catalog?layer=platinum", "unknown layer `platinum`"),
    ] {
        let (status, body) = s.json(Method::GET, path, Some(&t), None).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["code"], "bad_request");
        assert!(
            body["message"].as_str().unwrap().contains(want),
            "{path}: {body}"
        );
    }
    let (status, body) = s
        .json(Method::GET, "/api/v1/tables/gold.nope/rows", Some(&t), None)
        .await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    let (status, body) = s.json(Method::GET, "/api/v1/nowhere", Some(&t), None).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));

    // Inserts: the offending row and field, and nothing committed.
    for (rows, want) in [
        (
            json!([{"product_id": 1, "name": "a", "category": "A", "price": 1}, {"product_id": "two", "name": "b", "category": "A", "price": 1}]),
            "row 1: field `product_id`",
        ),
        (
            json!([{"product_id": 1, "colour": "red"}]),
            "row 0: unknown field `colour`",
        ),
        (
            json!([{"product_id": 1, "name": "a", "category": "A", "price": "cheap"}]),
            "row 0: field `price`",
        ),
        (json!({"rows": []}), "no rows"),
        (json!("nope"), "expected a JSON array"),
    ] {
        let (status, body) = s
            .json(
                Method::POST,
                "/api/v1/tables/gold.products/rows",
                Some(&t),
                Some(rows),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        assert!(body["message"].as_str().unwrap().contains(want), "{body}");
    }
    let (_, body) = s
        .json(Method::GET, "/api/v1/tables/gold.products", Some(&t), None)
        .await;
    assert_eq!(body["version"], 0, "nothing was committed");
    assert_eq!(body["history"][0]["operation"], "WRITE");
}

#[tokio::test]
async fn sql_is_read_only_and_limited() {
    let s = Server::start().await;
    let t = s.token(ADMIN).await;
    let (status, body) = s.json(Method::POST,
        "/api/v1/query",
        Some(&t),
        Some(json!({"sql": "SELECT category, COUNT(*) AS n FROM gold.products GROUP BY category ORDER BY category", "limit": 2})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(column(&body, "category"), ["A", "B"]);
    assert_eq!(body["truncated"], true);
    for sql in [
        "CREATE EXTERNAL TABLE p STORED AS CSV LOCATION '/etc/passwd'",
        "COPY (SELECT 1) TO '/tmp/x.csv'",
        "INSERT INTO gold.products VALUES (1, 'a', 'A', 1)",
    ] {
        let (status, body) = s
            .json(
                Method::POST,
                "/api/v1/query",
                Some(&t),
                Some(json!({"sql": sql})),
            )
            .await;
        assert_eq!(status, 403, "{sql}: {body}");
        assert_eq!(body["code"], "forbidden");
    }
    let (status, body) = s
        .json(
            Method::POST,
            "/api/v1/query",
            Some(&t),
            Some(json!({"sql": "SELEC 1"})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = s
        .json(
            Method::POST,
            "/api/v1/query",
            Some(&t),
            Some(json!({"sql": "SELECT * FROM '/etc/passwd'"})),
        )
        .await;
    assert!(status == 400 || status == 404, "{status}");
    let reader = s.token(READER).await;
    let (status, _) = s
        .json(
            Method::POST,
            "/api/v1/query",
            Some(&reader),
            Some(json!({"sql": "SELECT * FROM silver.orders"})),
        )
        .await;
    assert_eq!(status, 404);
}

/// Random query strings from an alphabet of the parser's special characters: never a 5xx.
#[tokio::test]
async fn no_query_string_yields_a_5xx() {
    let s = Server::start().await;
    let t = s.token(ADMIN).await;
    let alphabet: Vec<&str> = vec![
        "price",
        "name",
        "category",
        "product_id",
        "limit",
        "offset",
        "order_by",
        "columns",
        "[",
        "]",
        "=",
        "&",
        "%",
        "%25",
        "%5B",
        "%00",
        "%ZZ",
        ",",
        "-",
        ".desc",
        "gte",
        "in",
        "like",
        "1",
        "-1",
        "99999999999999999999",
        "1e9",
        "NaN",
        "A",
        "'",
        "\"",
        ";",
        "é",
        "+",
        "::",
    ];
    for q in assay_engine::fuzz::cases(
        assay_engine::fuzz::runs(300),
        assay_engine::fuzz::pieces(&alphabet, 1..9, ""),
    ) {
        let (status, body) = s
            .json(
                Method::GET,
                &format!("/api/v1/tables/gold.products/rows?{q}"),
                Some(&t),
                None,
            )
            .await;
        assert!(status < 500, "?{q} -> {status} {body}");
        if status >= 400 {
            assert!(
                body["code"].is_string() && body["message"].is_string(),
                "?{q} -> {body}"
            );
        }
    }
}
