//! Accounts in `_system.users`, signup policies, our JWTs, API keys and an OIDC issuer whose
//! JWKS is served locally.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use assay_api::Cache;
use assay_engine::auth::store::UserStore;
use assay_engine::auth::{AccessPolicy, OidcSettings, Principal, Role, SignupPolicy};
use assay_engine::query::QueryLimits;
use reqwest::Method;
use serde_json::{Value, json};

use crate::kit::{ADMIN, READER, Server};

const SECRET: &[u8] = b"a test secret that is long enough for HS256";

async fn server(signup: SignupPolicy) -> Server {
    server_with(signup, None).await
}

async fn server_with(signup: SignupPolicy, oidc: Option<OidcSettings>) -> Server {
    Server::start_full(
        assay_testkit::Backend::Local,
        Cache::memory(100, Duration::from_secs(60)),
        QueryLimits::default(),
        move |p, lake| {
            let p = p
                .with_secret(SECRET)
                .with_store(UserStore::new(lake.clone()).unwrap(), signup);
            match oidc {
                Some(o) => p.with_oidc(o),
                None => p,
            }
        },
        |g| g,
    )
    .await
}

async fn login(s: &Server, user: &str, password: &str) -> (u16, Value) {
    s.json(
        Method::POST,
        "/api/v1/login",
        None,
        Some(json!({"username": user, "password": password})),
    )
    .await
}

#[tokio::test]
async fn approval_signup_admin_activation_roles_and_deactivation() {
    let s = server(SignupPolicy::Approval).await;
    // The bootstrap admin goes into the account store once.
    assert!(
        s.policy
            .bootstrap_admin("root", "root-password")
            .await
            .unwrap()
    );
    assert!(
        !s.policy
            .bootstrap_admin("root", "other-password")
            .await
            .unwrap()
    );
    let (status, body) = login(&s, "root", "root-password").await;
    assert_eq!((status, body["role"].as_str()), (200, Some("admin")));
    let root = body["token"].as_str().unwrap().to_string();

    let creds = json!({"username": "newbie", "password": "newbie-password"});
    let (status, body) = s
        .json(Method::POST, "/api/v1/signup", None, Some(creds.clone()))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["user"]["is_active"], false);
    assert_eq!(body["user"]["role"], "reader");
    assert!(!body.to_string().contains("argon2"), "{body}");
    let (status, body) = s
        .json(Method::POST, "/api/v1/signup", None, Some(creds))
        .await;
    assert_eq!((status, body["code"].as_str()), (409, Some("conflict")));
    let (status, body) = s
        .json(
            Method::POST,
            "/api/v1/signup",
            None,
            Some(json!({"username": "x", "password": "short"})),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["message"].as_str().unwrap().contains("password"),
        "{body}"
    );

    // Inactive: right password, 403; wrong password, 401 (nothing is revealed).
    let (status, body) = login(&s, "newbie", "newbie-password").await;
    assert_eq!(status, 403);
    assert!(
        body["message"].as_str().unwrap().contains("inactive"),
        "{body}"
    );
    assert_eq!(login(&s, "newbie", "wrong-password").await.0, 401);

    // Only admins manage accounts.
    let reader = s.token(READER).await;
    let (status, _) = s
        .json(Method::GET, "/api/v1/users", Some(&reader), None)
        .await;
    assert_eq!(status, 403);
    let (status, body) = s
        .json(Method::GET, "/api/v1/users", Some(&root), None)
        .await;
    assert_eq!(status, 200);
    let names: Vec<&str> = body["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["newbie", "root"]);
    assert!(!body.to_string().contains("password_hash"));

    let patch = |b: Value| s.json(Method::PATCH, "/api/v1/users/newbie", Some(&root), Some(b));
    let (status, body) = patch(json!({"is_active": true})).await;
    assert_eq!((status, body["is_active"].as_bool()), (200, Some(true)));
    let (status, body) = login(&s, "newbie", "newbie-password").await;
    assert_eq!(status, 200);
    let newbie = body["token"].as_str().unwrap().to_string();
    let silver = "/api/v1/tables/silver.orders/rows";
    assert_eq!(
        s.json(Method::GET, silver, Some(&newbie), None).await.0,
        404
    );

    // A role change applies to the token already issued.
    let (status, _) = patch(json!({"role": "engineer"})).await;
    assert_eq!(status, 200);
    assert_eq!(
        s.json(Method::GET, silver, Some(&newbie), None).await.0,
        200
    );

    // Deactivation stops the token at once.
    assert_eq!(patch(json!({"is_active": false})).await.0, 200);
    let (status, body) = s
        .json(Method::GET, "/api/v1/catalog", Some(&newbie), None)
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(body["message"].as_str().unwrap().contains("inactive"));

    // Bad patches name the problem; an admin cannot lock themselves out.
    let (status, body) = patch(json!({"role": "overlord"})).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = s
        .json(
            Method::PATCH,
            "/api/v1/users/nobody",
            Some(&root),
            Some(json!({"is_active": true})),
        )
        .await;
    assert_eq!(status, 404);
    let (status, body) = s
        .json(
            Method::PATCH,
            "/api/v1/users/root",
            Some(&root),
            Some(json!({"is_active": false})),
        )
        .await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("yourself"));

    // The credential tables exist only for the account store: not listed, served or queried.
    for path in [
        "/api/v1/tables/_system.users/rows",
        "/api/v1/tables/_system.api_keys",
    ] {
        assert_eq!(
            s.json(Method::GET, path, Some(&root), None).await.0,
            404,
            "{path}"
        );
    }
    let (status, body) = s
        .json(
            Method::POST,
            "/api/v1/query",
            Some(&root),
            Some(json!({"sql": "SELECT password_hash FROM _system.users"})),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    let (_, body) = s
        .json(
            Method::GET,
            "/api/v1/catalog?layer=_system",
            Some(&root),
            None,
        )
        .await;
    assert!(!body.to_string().contains("users"), "{body}");

    // Every change is a commit of the account table, kept under `<root>/_auth/`.
    let version = s
        .lake
        .child(assay_engine::auth::store::AUTH_DIR)
        .unwrap()
        .latest_version(&assay_engine::auth::store::users_table())
        .await
        .unwrap();
    assert_eq!(version, Some(4), "root, newbie, activate, role, deactivate");
}

#[tokio::test]
async fn open_and_closed_signup() {
    let open = server(SignupPolicy::Open).await;
    let creds = json!({"username": "walk-in", "password": "walk-in-password"});
    let (status, body) = open
        .json(Method::POST, "/api/v1/signup", None, Some(creds))
        .await;
    assert_eq!(
        (status, body["user"]["is_active"].as_bool()),
        (201, Some(true))
    );
    assert_eq!(login(&open, "walk-in", "walk-in-password").await.0, 200);

    let closed = server(SignupPolicy::Closed).await;
    let creds = json!({"username": "walk-in", "password": "walk-in-password"});
    let (status, body) = closed
        .json(Method::POST, "/api/v1/signup", None, Some(creds))
        .await;
    assert_eq!(status, 403);
    assert!(body["message"].as_str().unwrap().contains("closed"));
    // Admins still create accounts, active, with a role.
    let admin = closed.token(ADMIN).await;
    let (status, body) = closed
        .json(
            Method::POST,
            "/api/v1/users",
            Some(&admin),
            Some(json!({"username": "eng", "password": "engineer-password", "role": "engineer"})),
        )
        .await;
    assert_eq!((status, body["role"].as_str()), (201, Some("engineer")));
    assert_eq!(login(&closed, "eng", "engineer-password").await.0, 200);
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn forged_unsigned_and_expired_tokens_get_401() {
    let s = server(SignupPolicy::Approval).await;
    let admin = Principal::local(ADMIN.0, Role::Admin);
    let catalog = "/api/v1/catalog";
    let good = s.policy.issue_token(&admin).unwrap();
    assert_eq!(s.json(Method::GET, catalog, Some(&good), None).await.0, 200);

    let other = AccessPolicy::new(Vec::new(), Duration::from_secs(60))
        .with_secret(b"somebody else's secret, also long enough");
    let forged = other.issue_token(&admin).unwrap();
    let (status, body) = s.json(Method::GET, catalog, Some(&forged), None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("unauthenticated"))
    );

    // The same claims with the signature swapped for the forged one's.
    let mut parts: Vec<&str> = good.split('.').collect();
    let forged_sig = forged.split('.').nth(2).unwrap();
    parts[2] = forged_sig;
    assert_eq!(
        s.json(Method::GET, catalog, Some(&parts.join(".")), None)
            .await
            .0,
        401
    );

    let claims = format!(
        r#"{{"sub":"admin","role":"admin","iss":"assay","iat":{},"exp":{}}}"#,
        now(),
        now() + 600
    );
    let none = format!("{}.{}.", b64(r#"{"alg":"none","typ":"JWT"}"#), b64(&claims));
    assert_eq!(s.json(Method::GET, catalog, Some(&none), None).await.0, 401);

    let expired = s
        .policy
        .issue_token_with(&admin, now() - 7200, Duration::from_secs(3600))
        .unwrap();
    assert_eq!(
        s.json(Method::GET, catalog, Some(&expired), None).await.0,
        401
    );
}

#[tokio::test]
async fn api_keys_act_as_their_owner_until_revoked() {
    let s = server(SignupPolicy::Approval).await;
    let reader = s.token(READER).await;
    let (status, body) = s
        .json(
            Method::POST,
            "/api/v1/api-keys",
            Some(&reader),
            Some(json!({"label": "notebook"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let key = body["key"].as_str().unwrap().to_string();
    let id = body["key_id"].as_str().unwrap().to_string();
    assert!(key.starts_with(&format!("ak_{id}_")));

    let (status, body) = s
        .json(Method::GET, "/api/v1/catalog", Some(&key), None)
        .await;
    assert_eq!(status, 200);
    let layers: Vec<&str> = body["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["layer"].as_str().unwrap())
        .collect();
    assert!(layers.iter().all(|l| *l == "gold"), "{layers:?}");
    let res = reqwest::Client::new()
        .get(s.url("/api/v1/catalog"))
        .header("X-API-Key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // Listed without the secret; the stored hash is not the key.
    let (_, body) = s
        .json(Method::GET, "/api/v1/api-keys", Some(&reader), None)
        .await;
    assert_eq!(body["api_keys"][0]["key_id"], id.as_str());
    assert_eq!(body["api_keys"][0]["label"], "notebook");
    assert!(!body.to_string().contains(&key[3 + id.len() + 1..]));

    // A wrong secret for a real id, someone else's revoke, then the owner's.
    let wrong = format!("ak_{id}_{}", "0".repeat(64));
    assert_eq!(
        s.json(Method::GET, "/api/v1/catalog", Some(&wrong), None)
            .await
            .0,
        401
    );
    let engineer = s.token(crate::kit::ENGINEER).await;
    let revoke = format!("/api/v1/api-keys/{id}");
    assert_eq!(
        s.json(Method::DELETE, &revoke, Some(&engineer), None)
            .await
            .0,
        404
    );
    let (status, body) = s.json(Method::DELETE, &revoke, Some(&reader), None).await;
    assert_eq!((status, body["revoked"].as_bool()), (200, Some(true)));
    assert_eq!(
        s.json(Method::GET, "/api/v1/catalog", Some(&key), None)
            .await
            .0,
        401
    );
}

/// A JWKS endpoint on a free port that counts its fetches.
async fn jwks_server() -> (String, Arc<AtomicUsize>) {
    let jwks: Value = serde_json::from_str(include_str!("../fixtures/oidc_jwks.json")).unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let jwks = jwks.clone();
            counter.fetch_add(1, Ordering::SeqCst);
            async move { axum::Json(jwks) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, hits)
}

fn oidc_token(pem: &str, kid: &str, claims: Value) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(kid.into());
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

#[tokio::test]
async fn oidc_tokens_signed_by_the_issuers_jwks_work() {
    let (jwks_url, fetches) = jwks_server().await;
    let settings = OidcSettings {
        issuer: "https://id.example.test".into(),
        audience: "assay".into(),
        jwks_url,
        username_claim: "preferred_username".into(),
        role_claim: "assay_role".into(),
        default_role: Role::Reader,
        jwks_ttl: Duration::from_secs(600),
    };
    let s = server_with(SignupPolicy::Closed, Some(settings)).await;
    let key = include_str!("../fixtures/oidc_rsa.pem");
    let key_pem = key;
    let stranger = include_str!("../fixtures/oidc_rsa_other.pem");
    let claims = |aud: &str, role: Value, exp: u64| {
        json!({"iss": "https://id.example.test", "aud": aud, "sub": "u-123",
               "preferred_username": "olga", "assay_role": role, "exp": exp, "iat": now()})
    };
    let silver = "/api/v1/tables/silver.orders/rows";

    let engineer = oidc_token(
        key,
        "test-key",
        claims("assay", json!(["engineer"]), now() + 600),
    );
    let (status, body) = s.json(Method::GET, silver, Some(&engineer), None).await;
    assert_eq!(status, 200, "{body}");
    let reader = oidc_token(key, "test-key", claims("assay", Value::Null, now() + 600));
    assert_eq!(
        s.json(Method::GET, silver, Some(&reader), None).await.0,
        404
    );
    assert_eq!(
        s.json(Method::GET, "/api/v1/catalog", Some(&reader), None)
            .await
            .0,
        200
    );

    for (what, token) in [
        (
            "wrong audience",
            oidc_token(
                key,
                "test-key",
                claims("other", json!("admin"), now() + 600),
            ),
        ),
        (
            "expired",
            oidc_token(
                key,
                "test-key",
                claims("assay", json!("admin"), now() - 600),
            ),
        ),
        (
            "foreign key, same kid",
            oidc_token(
                stranger,
                "test-key",
                claims("assay", json!("admin"), now() + 600),
            ),
        ),
        (
            "unknown kid",
            oidc_token(key, "rotated", claims("assay", json!("admin"), now() + 600)),
        ),
    ] {
        let (status, _) = s
            .json(Method::GET, "/api/v1/catalog", Some(&token), None)
            .await;
        assert_eq!(status, 401, "{what}");
    }
    // A token naming a local admin's user name gets only its own role.
    let borrowed = json!({"iss": "https://id.example.test", "aud": "assay", "sub": "x",
        "preferred_username": ADMIN.0, "exp": now() + 600, "iat": now()});
    let borrowed = oidc_token(key, "test-key", borrowed);
    assert_eq!(
        s.json(Method::GET, silver, Some(&borrowed), None).await.0,
        404
    );
    // The OIDC user's API key acts as that OIDC user, never as the local admin.
    let (status, body) = s
        .json(
            Method::POST,
            "/api/v1/api-keys",
            Some(&borrowed),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let key = body["key"].as_str().unwrap().to_string();
    assert_eq!(s.json(Method::GET, silver, Some(&key), None).await.0, 404);
    assert_eq!(
        s.json(Method::GET, "/api/v1/users", Some(&key), None)
            .await
            .0,
        403
    );
    let admin = s.token(ADMIN).await;
    let (_, mine) = s
        .json(Method::GET, "/api/v1/api-keys", Some(&admin), None)
        .await;
    assert!(
        !mine.to_string().contains(body["key_id"].as_str().unwrap()),
        "the local admin does not own the OIDC user's key: {mine}"
    );
    // A local account of the same name (signup or admin-made) neither demotes nor locks
    // out the OIDC user: they are different identities.
    let (status, _) = s
        .json(
            Method::POST,
            "/api/v1/users",
            Some(&admin),
            Some(json!({"username": "olga", "password": "olga-password", "role": "reader"})),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(
        s.json(Method::GET, silver, Some(&engineer), None).await.0,
        200
    );
    let (status, _) = s
        .json(
            Method::PATCH,
            "/api/v1/users/olga",
            Some(&admin),
            Some(json!({"is_active": false})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        s.json(Method::GET, "/api/v1/catalog", Some(&engineer), None)
            .await
            .0,
        200
    );
    // A token that is not valid yet (`nbf` in the future) is refused.
    let early = json!({"iss": "https://id.example.test", "aud": "assay", "sub": "u-9",
        "preferred_username": "nina", "exp": now() + 1200, "nbf": now() + 600, "iat": now()});
    let early = oidc_token(key_pem, "test-key", early);
    assert_eq!(
        s.json(Method::GET, "/api/v1/catalog", Some(&early), None)
            .await
            .0,
        401
    );

    // Keys were fetched once and cached; the unknown kid refetches at most every 10 s.
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn bad_bodies_parameters_and_a_dead_issuer_get_clear_errors() {
    let dead = OidcSettings {
        issuer: "https://id.example.test".into(),
        audience: "assay".into(),
        // Nothing listens here.
        jwks_url: format!("http://127.0.0.1:{}/jwks", assay_testkit::free_port()),
        username_claim: "preferred_username".into(),
        role_claim: "assay_role".into(),
        default_role: Role::Reader,
        jwks_ttl: Duration::from_secs(600),
    };
    let s = server_with(SignupPolicy::Open, Some(dead)).await;
    let admin = s.token(ADMIN).await;
    let reader = s.token(READER).await;
    let raw = |method: Method, path: &str, body: &'static str| {
        let req = reqwest::Client::new()
            .request(method, s.url(path))
            .bearer_auth(&admin)
            .header("Content-Type", "application/json")
            .body(body);
        async move { req.send().await.unwrap() }
    };
    for (method, path) in [
        (Method::POST, "/api/v1/signup"),
        (Method::POST, "/api/v1/login"),
        (Method::POST, "/api/v1/users"),
        (Method::PATCH, "/api/v1/users/ana"),
        (Method::POST, "/api/v1/api-keys"),
        (Method::POST, "/api/v1/runs"),
    ] {
        let res = raw(method.clone(), path, "{not json").await;
        assert_eq!(res.status(), 400, "{method} {path}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["code"], "bad_request", "{method} {path}");
        assert!(
            body["message"].as_str().unwrap().starts_with("body:"),
            "{body}"
        );
    }
    let (status, body) = s
        .json(Method::GET, "/api/v1/runs?limit=many", Some(&admin), None)
        .await;
    assert_eq!(status, 400);
    assert!(
        body["message"].as_str().unwrap().contains("`limit`"),
        "{body}"
    );
    let (status, body) = s
        .json(Method::GET, "/api/v1/runs?colour=red", Some(&admin), None)
        .await;
    assert_eq!(status, 400);
    assert!(
        body["message"].as_str().unwrap().contains("colour"),
        "{body}"
    );
    assert_eq!(
        s.json(Method::GET, "/api/v1/runs", Some(&reader), None)
            .await
            .0,
        403
    );
    let (status, body) = s
        .json(Method::GET, "/api/v1/runs", Some(&admin), None)
        .await;
    assert_eq!(
        (status, body["runs"].as_array().map(Vec::len)),
        (200, Some(0))
    );
    // This gateway has no launcher: starting a run is a 404 that says so.
    let (status, body) = s
        .json(Method::POST, "/api/v1/runs", Some(&admin), Some(json!({})))
        .await;
    assert_eq!(status, 404, "{body}");

    // The issuer is down: its tokens get a 503 that leaks nothing; our own tokens still work.
    let claims = json!({"iss": "https://id.example.test", "aud": "assay", "sub": "u",
        "exp": now() + 600, "iat": now()});
    let token = oidc_token(include_str!("../fixtures/oidc_rsa.pem"), "test-key", claims);
    let (status, body) = s
        .json(Method::GET, "/api/v1/catalog", Some(&token), None)
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["message"], "authentication is unavailable");
    assert_eq!(
        s.json(Method::GET, "/api/v1/catalog", Some(&admin), None)
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn is_admin_false_demotes_only_admins() {
    let s = server(SignupPolicy::Closed).await;
    let admin = s.token(ADMIN).await;
    for (name, role) in [("rita", "reader"), ("adam", "admin")] {
        let (status, _) = s
            .json(
                Method::POST,
                "/api/v1/users",
                Some(&admin),
                Some(json!({"username": name, "password": "password-123", "role": role})),
            )
            .await;
        assert_eq!(status, 201);
    }
    let demote = json!({"is_admin": false});
    let (status, body) = s
        .json(
            Method::PATCH,
            "/api/v1/users/rita",
            Some(&admin),
            Some(demote.clone()),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["role"], "reader", "a reader is not promoted: {body}");
    let (status, body) = s
        .json(
            Method::PATCH,
            "/api/v1/users/adam",
            Some(&admin),
            Some(demote),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["role"], "engineer");
    assert_eq!(body["is_admin"], false);
}

#[tokio::test]
async fn signups_cannot_take_reserved_names() {
    let s = Server::start_full(
        assay_testkit::Backend::Local,
        Cache::memory(100, Duration::from_secs(60)),
        QueryLimits::default(),
        |p, lake| {
            p.with_secret(SECRET)
                .with_store(UserStore::new(lake.clone()).unwrap(), SignupPolicy::Open)
                .with_reserved_names(vec!["olga".into(), "*@corp.example".into()])
        },
        |g| g,
    )
    .await;
    for name in ["olga", "Ana@corp.example"] {
        let (status, body) = s
            .json(
                Method::POST,
                "/api/v1/signup",
                None,
                Some(json!({"username": name, "password": "password-123"})),
            )
            .await;
        assert_eq!(status, 403, "{name}: {body}");
        assert!(
            body["message"].as_str().unwrap().contains("reserved"),
            "{body}"
        );
    }
    let (status, _) = s
        .json(
            Method::POST,
            "/api/v1/signup",
            None,
            Some(json!({"username": "ana@else.example", "password": "password-123"})),
        )
        .await;
    assert_eq!(status, 201);
}
