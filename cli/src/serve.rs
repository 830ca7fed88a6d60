//! `assay serve`: the Flight SQL server and the REST gateway over the project's lake, one
//! access policy for both, and the scheduler of the project's `[[schedule]]` entries, all
//! stopped together by Ctrl-C or SIGTERM.

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use assay_api::{Cache, Gateway};
use assay_engine::Lake;
use assay_engine::auth::AccessPolicy;
use assay_engine::auth::store::UserStore;
use assay_engine::config::Project;
use assay_engine::launcher::Launcher;
use assay_engine::query::QueryService;
use assay_engine::scheduler::{ScheduleStore, Scheduler};
use assay_engine::service::{Core, LakeService, Schedules};
use assay_engine::session::LakeCatalog;
use assay_flight::AssayFlightSql;

/// Addresses and switches from the command line (each overrides `[serve]`).
pub(crate) struct ServeArgs {
    pub(crate) flight_addr: Option<String>,
    pub(crate) http_addr: Option<String>,
    pub(crate) keep_views: bool,
    pub(crate) access_log: Option<String>,
}

pub(crate) async fn serve(
    project: &Project,
    lake: Lake,
    pipeline: assay_engine::dag::Pipeline,
    args: ServeArgs,
) -> Result<()> {
    let ServeArgs {
        flight_addr,
        http_addr,
        keep_views,
        access_log,
    } = args;
    let access_log = match access_log.filter(|t| !t.is_empty()) {
        Some(t) => Some(assay_engine::config::AccessLog::parse(
            &t,
            &std::env::current_dir().unwrap_or_default(),
        )),
        None => project.serve.access_log.clone(),
    };
    if let Some(target) = &access_log {
        crate::access_log::start(target)
            .with_context(|| format!("opening the access log {target:?}"))?;
    }
    let policy = Arc::new(access_policy(project, &lake).await?);
    let catalog = LakeCatalog::load(lake.clone())
        .await
        .with_context(|| format!("opening lake {}", lake.root()))?;
    let query = QueryService::new(catalog, project.query.clone())?;
    let max_rows = query.limits().max_rows.unwrap_or(10_000);
    let (alerter, _delivery) =
        assay_engine::alerts::Alerter::start(project.alerts.clone(), &project.name);
    let tick_store = ScheduleStore::new(&lake)?;
    let instance = assay_engine::scheduler::instance_name();
    let launcher = Launcher::new(pipeline, project.run.clone(), lake.clone())
        .with_maintenance(project.maintenance.clone())
        .with_alerter(alerter)
        .with_lease(tick_store.clone(), &instance, project.serve.run_lease_ttl);
    let scheduler = Scheduler::new(
        project.schedules.clone(),
        launcher.clone(),
        tick_store.clone(),
        instance,
    );
    let core: Arc<dyn LakeService> = Arc::new(
        Core::new(query, Arc::clone(&policy), project.cache.refresh)
            .with_launcher(launcher)
            .with_schedules(Schedules::new(project.schedules.clone(), tick_store))
            .with_unity(project.serve.unity.clone()),
    );
    let keep_views = keep_views || project.serve.keep_views;
    let service = AssayFlightSql::new(Arc::clone(&core), keep_views)
        .map_err(|s| anyhow::anyhow!("starting Flight SQL: {}", s.message()))?;
    let addr = flight_addr.unwrap_or_else(|| project.serve.flight_addr.clone());
    let flight_listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("binding Flight SQL to {addr}"))?;
    let http = http_addr.unwrap_or_else(|| project.serve.http_addr.clone());
    let http_listener = tokio::net::TcpListener::bind(&http)
        .await
        .with_context(|| format!("binding the REST gateway to {http}"))?;
    let cache = match project
        .cache
        .url
        .clone()
        .or_else(|| std::env::var("REDIS_URL").ok().filter(|u| !u.is_empty()))
    {
        Some(url) => Cache::redis(&url, project.cache.ttl).map_err(anyhow::Error::msg)?,
        None => Cache::memory(project.cache.capacity, project.cache.ttl),
    }
    .with_prefix(
        project
            .cache
            .prefix
            .clone()
            .unwrap_or_else(|| assay_api::cache::lake_prefix(lake.root().as_str())),
    );
    let (flight_tls, http_tls) = match &project.serve.tls {
        Some(files) => (
            Some(assay_engine::tls::acceptor(files, &[b"h2"])?),
            Some(assay_engine::tls::acceptor(files, &[b"http/1.1"])?),
        ),
        None => (None, None),
    };
    let (grpc, http_scheme) = if flight_tls.is_some() {
        ("grpc+tls", "https")
    } else {
        ("grpc", "http")
    };
    announce(&format!(
        "Flight SQL listening on {grpc}://{}",
        flight_listener.local_addr()?
    ));
    announce(&format!(
        "REST gateway listening on {http_scheme}://{} (cache: {})",
        http_listener.local_addr()?,
        cache.kind()
    ));
    let gateway = Gateway::new(core, cache, max_rows).with_limits(project.serve.limits);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let flight = tokio::spawn(assay_flight::serve(
        flight_listener,
        service,
        project.serve.limits,
        flight_tls,
        stopped(stop_rx.clone()),
    ));
    let rest = tokio::spawn(assay_api::serve(
        http_listener,
        gateway,
        http_tls,
        stopped(stop_rx.clone()),
    ));
    if !project.schedules.is_empty() {
        announce(&format!(
            "running {} schedule(s) as {}",
            project.schedules.len(),
            scheduler.instance()
        ));
    }
    let ticker = tokio::spawn(scheduler.run(stopped(stop_rx)));
    shutdown_signal().await;
    // No new connection from here; requests and streams in flight finish, within the
    // drain timeout.
    let _ = stop_tx.send(true);
    let drain = project.serve.drain_timeout;
    let drained = tokio::time::timeout(drain, async {
        flight
            .await
            .context("Flight SQL server")?
            .context("Flight SQL server")?;
        rest.await
            .context("REST gateway")?
            .context("REST gateway")?;
        ticker.await.context("scheduler")?;
        anyhow::Ok(())
    })
    .await;
    match drained {
        Ok(done) => done?,
        Err(_) => tracing::warn!(
            drain_timeout = %humantime::format_duration(drain),
            "requests still in flight after the drain timeout are cut off"
        ),
    }
    let _ = std::io::Write::write_all(&mut std::io::stderr(), b"shut down\n");
    Ok(())
}

/// Prints one line on stdout. A reader that went away (a closed pipe) costs the line, never
/// the server: `println!` would panic.
fn announce(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// Config users, the lake's accounts (with the bootstrap admin created on first start), the
/// JWT secret and the OIDC issuer: one policy for Flight SQL and REST.
async fn access_policy(project: &Project, lake: &Lake) -> Result<AccessPolicy> {
    let env = |k: &str| std::env::var(k).ok();
    let users = project.local_users(env)?;
    let has_config_users = !users.is_empty();
    let auth = &project.auth;
    let mut policy = AccessPolicy::new(users, auth.token_ttl)
        .with_store(UserStore::new(lake.clone())?, auth.signup)
        .with_throttle(auth.throttle)
        .with_reserved_names(auth.reserved_names.clone());
    match project.jwt_secret(env)? {
        Some(secret) => policy = policy.with_secret(secret.expose().as_bytes()),
        None => tracing::warn!(
            variable = %auth.jwt_secret_env,
            "no JWT secret set: tokens are signed with a random key and end with this process"
        ),
    }
    if let Some(oidc) = &auth.oidc {
        policy = policy.with_oidc(oidc.clone());
    }
    let store = policy.store().cloned();
    if let Some((name, password)) = project.bootstrap_admin(env) {
        if policy
            .bootstrap_admin(&name, password.expose())
            .await
            .map_err(|e| anyhow::anyhow!("creating the bootstrap admin `{name}`: {e}"))?
        {
            eprintln!("created admin account `{name}`");
        }
    } else if !has_config_users
        && let Some(store) = store
        && store
            .is_empty()
            .await
            .with_context(|| format!("reading the accounts of {}", lake.root()))?
    {
        bail!(
            "no users: set ASSAY_ADMIN_USER and ASSAY_ADMIN_PASSWORD (the bootstrap admin) \
             or add [[users]] to assay.toml"
        );
    }
    Ok(policy)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
