//! A lake with a few tables and the gateway on 127.0.0.1:0, with a real `redis-server` or
//! the in-process cache.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use assay_api::{Cache, Gateway};
use assay_engine::Lake;
use assay_engine::auth::{AccessPolicy, LocalUser, Role, Secret};
use assay_engine::config::ServeLimits;
use assay_engine::query::{QueryLimits, QueryService};
use assay_engine::service::{Core, LakeService};
use assay_engine::session::LakeCatalog;
use reqwest::{Method, Response};

pub(crate) const ADMIN: (&str, &str) = ("admin", "admin-pw");
pub(crate) const READER: (&str, &str) = ("ana", "reader-pw");
pub(crate) const ENGINEER: (&str, &str) = ("eve", "engineer-pw");

pub(crate) use assay_testkit::{append, products};

/// How often the test gateways re-read served tables' versions.
pub(crate) const REFRESH: Duration = Duration::from_millis(200);

pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    pub(crate) lake: Lake,
    pub(crate) gateway: Gateway,
    pub(crate) policy: Arc<AccessPolicy>,
    pub(crate) client: reqwest::Client,
    _dir: tempfile::TempDir,
    _backend: assay_testkit::Backend,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Server {
    /// A gateway with the in-process cache.
    pub(crate) async fn start() -> Server {
        Self::start_with(
            Cache::memory(1000, Duration::from_secs(600)),
            QueryLimits::default(),
        )
        .await
    }

    /// A gateway with a Redis cache at `url`.
    pub(crate) async fn with_redis(url: &str) -> Server {
        Self::start_with(
            Cache::redis(url, Duration::from_secs(600)).unwrap(),
            QueryLimits::default(),
        )
        .await
    }

    pub(crate) async fn start_with(cache: Cache, limits: QueryLimits) -> Server {
        Self::start_on(assay_testkit::Backend::Local, cache, limits).await
    }

    /// A gateway over a lake on `backend` (local disk, a moto S3 bucket, an Azurite
    /// container).
    pub(crate) async fn start_on(
        backend: assay_testkit::Backend,
        cache: Cache,
        limits: QueryLimits,
    ) -> Server {
        Self::start_full(backend, cache, limits, |p, _| p, |g| g).await
    }

    /// A gateway whose policy (built with the config users, on the lake) and serving core
    /// pass through `policy` and `core` first.
    pub(crate) async fn start_full(
        backend: assay_testkit::Backend,
        cache: Cache,
        limits: QueryLimits,
        policy: impl FnOnce(AccessPolicy, &Lake) -> AccessPolicy,
        core: impl FnOnce(Core) -> Core,
    ) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let lake = assay_testkit::seeded_lake(&backend, dir.path()).await;
        let serve = ServeLimits::default();
        Self::on_lake(
            lake, dir, backend, cache, limits, serve, REFRESH, policy, core,
        )
        .await
    }

    /// A gateway with these connection limits.
    pub(crate) async fn serving(serve: ServeLimits) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let backend = assay_testkit::Backend::Local;
        let lake = assay_testkit::seeded_lake(&backend, dir.path()).await;
        let cache = Cache::memory(100, Duration::from_secs(60));
        let limits = QueryLimits::default();
        Self::on_lake(
            lake,
            dir,
            backend,
            cache,
            limits,
            serve,
            REFRESH,
            |p, _| p,
            |c| c,
        )
        .await
    }

    /// Another gateway on `other`'s lake with a Redis cache at `url` that re-reads versions
    /// only every `refresh` (a replica behind the same load balancer).
    pub(crate) async fn replica_of(other: &Server, url: &str, refresh: Duration) -> Server {
        let dir = tempfile::tempdir().unwrap();
        Self::on_lake(
            other.lake.clone(),
            dir,
            assay_testkit::Backend::Local,
            Cache::redis(url, Duration::from_secs(600)).unwrap(),
            QueryLimits::default(),
            ServeLimits::default(),
            refresh,
            |p, _| p,
            |c| c,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn on_lake(
        lake: Lake,
        dir: tempfile::TempDir,
        backend: assay_testkit::Backend,
        cache: Cache,
        limits: QueryLimits,
        serve: ServeLimits,
        refresh: Duration,
        policy: impl FnOnce(AccessPolicy, &Lake) -> AccessPolicy,
        core: impl FnOnce(Core) -> Core,
    ) -> Server {
        let user = |(name, pw): (&str, &str), role| LocalUser {
            name: name.into(),
            password: Secret::new(pw),
            role,
        };
        let base = AccessPolicy::new(
            vec![
                user(ADMIN, Role::Admin),
                user(READER, Role::Reader),
                user(ENGINEER, Role::Engineer),
            ],
            Duration::from_secs(3600),
        );
        let policy = Arc::new(policy(base, &lake));
        let catalog = LakeCatalog::load(lake.clone()).await.unwrap();
        let query = QueryService::new(catalog, limits).unwrap();
        let max_rows = query.limits().max_rows.unwrap_or(10_000);
        let core = core(Core::new(query, Arc::clone(&policy), refresh));
        let cache = cache.with_prefix(assay_api::cache::lake_prefix(lake.root().as_str()));
        let core: std::sync::Arc<dyn LakeService> = std::sync::Arc::new(core);
        let gateway = Gateway::new(core, cache, max_rows).with_limits(serve);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(assay_api::serve(listener, gateway.clone(), None, async {
            let _ = stopped.await;
        }));
        Server {
            addr,
            lake,
            gateway,
            policy,
            client: reqwest::Client::new(),
            _dir: dir,
            _backend: backend,
            stop: Some(stop),
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Logs in and returns the bearer token.
    pub(crate) async fn token(&self, user: (&str, &str)) -> String {
        let res = self
            .client
            .post(self.url("/api/v1/login"))
            .json(&serde_json::json!({"username": user.0, "password": user.1}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let body: serde_json::Value = res.json().await.unwrap();
        body["token"].as_str().unwrap().to_string()
    }

    /// A request with an optional bearer token and JSON body.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> Response {
        let mut req = self.client.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.unwrap()
    }

    /// A request's status and its body as JSON (a JSON string when the body is not JSON).
    pub(crate) async fn json(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let res = self.call(method, path, token, body).await;
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        )
    }

    /// `GET` with a token and extra headers (`Accept`, `If-None-Match`).
    pub(crate) async fn get_with(
        &self,
        path: &str,
        token: &str,
        headers: &[(&str, &str)],
    ) -> Response {
        let mut req = self.client.get(self.url(path)).bearer_auth(token);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.unwrap()
    }

    /// `GET` with a token: status, `X-Cache` and the JSON body.
    pub(crate) async fn get(&self, path: &str, token: &str) -> (u16, String, serde_json::Value) {
        let res = self.call(Method::GET, path, Some(token), None).await;
        let status = res.status().as_u16();
        let cache = res
            .headers()
            .get("x-cache")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let text = res.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (status, cache, body)
    }
}

/// The values of one column of a rows response, as strings.
pub(crate) fn column(body: &serde_json::Value, name: &str) -> Vec<String> {
    body["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("no rows in {body}"))
        .iter()
        .map(|r| match &r[name] {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}
