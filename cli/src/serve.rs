//! `assay serve`: the Flight SQL server over the project's lake, stopped by Ctrl-C or
//! SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use assay_engine::Lake;
use assay_engine::access::AccessPolicy;
use assay_engine::config::Project;
use assay_engine::query::QueryService;
use assay_engine::session::LakeCatalog;
use assay_flight::AssayFlightSql;

/// Bearer tokens issued by the handshake live this long.
const TOKEN_TTL: Duration = Duration::from_secs(12 * 3600);

pub(crate) async fn serve(
    project: &Project,
    lake: Lake,
    flight_addr: Option<String>,
    keep_views: bool,
) -> Result<()> {
    let users = project.local_users(|k| std::env::var(k).ok())?;
    if users.is_empty() {
        bail!(
            "no users: set ASSAY_ADMIN_USER and ASSAY_ADMIN_PASSWORD (the bootstrap admin) \
             or add [[users]] to assay.toml"
        );
    }
    let policy = Arc::new(AccessPolicy::new(users, TOKEN_TTL));
    let catalog = LakeCatalog::load(lake.clone())
        .await
        .with_context(|| format!("opening lake {}", lake.root()))?;
    let query = QueryService::new(catalog, project.query.clone());
    let keep_views = keep_views || project.serve.keep_views;
    let service = AssayFlightSql::new(query, policy, keep_views)
        .map_err(|s| anyhow::anyhow!("starting Flight SQL: {}", s.message()))?;
    let addr = flight_addr.unwrap_or_else(|| project.serve.flight_addr.clone());
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("binding Flight SQL to {addr}"))?;
    let bound = listener.local_addr()?;
    println!("Flight SQL listening on grpc://{bound}");
    assay_flight::serve(listener, service, shutdown_signal())
        .await
        .context("Flight SQL server")?;
    eprintln!("shut down");
    Ok(())
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
