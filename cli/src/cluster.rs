//! `assay cluster scheduler|executor`: Ballista's scheduler and executor with the lake's
//! codec registered, so a cluster of Assay processes needs no other binary.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use assay_engine::Lake;
use assay_engine::cluster;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;

/// What `assay cluster scheduler` was asked for.
#[derive(Debug, clap::Args)]
pub(crate) struct SchedulerArgs {
    /// Address to listen on (gRPC, for clients and executors).
    #[arg(long, default_value = "127.0.0.1:50050")]
    bind: SocketAddr,
    /// An executor silent this long is lost: its tasks run again elsewhere.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    executor_timeout: Duration,
    /// Attempts of a task (and of a stage whose inputs were lost) before its job fails.
    #[arg(long, default_value_t = 4)]
    task_attempts: usize,
}

/// What `assay cluster executor` was asked for.
#[derive(Debug, clap::Args)]
pub(crate) struct ExecutorArgs {
    /// The scheduler, `df://host:port` or `host:port`.
    #[arg(long)]
    scheduler: String,
    /// Address to bind (the host is also what the scheduler and the other executors are
    /// told to connect to).
    #[arg(long, default_value = "127.0.0.1")]
    bind: String,
    /// Port of the Arrow Flight service that serves this executor's results.
    #[arg(long, default_value_t = 50051)]
    flight_port: u16,
    /// Port of the executor's gRPC service.
    #[arg(long, default_value_t = 50052)]
    grpc_port: u16,
    /// Tasks run at once (default: the machine's cores).
    #[arg(long)]
    concurrent_tasks: Option<usize>,
    /// Directory for shuffle and spill files (default: a temporary directory).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// How often the executor tells the scheduler it is alive.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    heartbeat: Duration,
}

/// Runs a Ballista scheduler until it stops.
pub(crate) async fn scheduler(args: SchedulerArgs) -> Result<ExitCode> {
    let timeout = args.executor_timeout.as_secs().max(1);
    let mut config = SchedulerConfig::default()
        .with_hostname(args.bind.ip().to_string())
        .with_port(args.bind.port())
        .with_no_executors_grace_period_seconds(timeout);
    config.bind_host = args.bind.ip().to_string();
    config.executor_timeout_seconds = timeout;
    config.expire_dead_executor_interval_seconds = (timeout / 3).max(1);
    config.task_max_failures = args.task_attempts.max(1);
    config.stage_max_failures = args.task_attempts.max(1);
    config.override_logical_codec = Some(cluster::codec());
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(|e| anyhow!("cannot start the scheduler: {e}"))?;
    tracing::info!(bind = %args.bind, "scheduler listening");
    start_server(cluster, args.bind, Arc::new(config))
        .await
        .map_err(|e| anyhow!("scheduler on {}: {e}", args.bind))?;
    Ok(ExitCode::SUCCESS)
}

/// Runs a Ballista executor for the project's lake until it stops.
pub(crate) async fn executor(lake: &Lake, args: ExecutorArgs) -> Result<ExitCode> {
    let (host, port) =
        cluster::scheduler_host_port(&args.scheduler).map_err(|e| anyhow!("--scheduler: {e}"))?;
    let runtime = cluster::runtime_producer(lake, args.work_dir.clone())
        .context("the lake's store for the executor")?;
    let defaults = ExecutorProcessConfig::default();
    let config = ExecutorProcessConfig {
        bind_host: args.bind.clone(),
        external_host: Some(args.bind.clone()),
        port: args.flight_port,
        grpc_port: args.grpc_port,
        scheduler_host: host,
        scheduler_port: port,
        scheduler_connect_timeout_seconds: 30,
        vcores: args.concurrent_tasks.unwrap_or(defaults.vcores).max(1),
        work_dir: args.work_dir.map(|d| d.display().to_string()),
        executor_heartbeat_interval_seconds: args.heartbeat.as_secs().max(1),
        override_runtime_producer: Some(runtime),
        override_logical_codec: Some(cluster::codec()),
        print_thread_info: false,
        ..defaults
    };
    tracing::info!(scheduler = %args.scheduler, lake = %lake.root(), "executor starting");
    start_executor_process(Arc::new(config))
        .await
        .map_err(|e| anyhow!("executor: {e}"))?;
    Ok(ExitCode::SUCCESS)
}
