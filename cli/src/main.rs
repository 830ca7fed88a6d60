//! `assay`: the command-line binary and composition root. It parses the project, asks each
//! layer crate for its steps, puts them in one pipeline and runs it.

mod access_log;
mod cluster;
mod commands;
mod maintain;
mod output;
mod serve;
mod telemetry;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Assay: a lakehouse batch engine (bronze -> silver -> gold on Delta tables).
#[derive(Debug, Parser)]
#[command(name = "assay", version, about)]
pub(crate) struct Cli {
    /// Project directory (holds assay.toml and sql/).
    #[arg(long, global = true, default_value = ".")]
    pub(crate) project: PathBuf,
    /// Lake root URL or path; overrides `[lake] root` of the project.
    #[arg(long, global = true, env = "ASSAY_LAKE")]
    pub(crate) lake: Option<String>,
    /// Log lines on stderr as text or as one JSON object each.
    #[arg(long, global = true, env = "ASSAY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (timestamp, level, target, fields, spans).
    Json,
}

/// How `assay run` reports the run on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum OutputFormat {
    /// A summary table.
    Table,
    /// The run report as one JSON document.
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the pipeline once (all steps, or a selection).
    Run {
        /// Steps to run: `layer`, `layer.table`, `tag:x`; `+x` adds upstreams, `x+` downstreams.
        #[arg(long, short)]
        select: Option<String>,
        /// Steps to leave out, in the `--select` syntax.
        #[arg(long)]
        exclude: Option<String>,
        /// Once a step fails, start no other step.
        #[arg(long)]
        fail_fast: bool,
        /// The report on stdout: a summary table, or one JSON document.
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
        /// Rebuild the selected tables from scratch, each replaced in one commit.
        #[arg(long)]
        full_refresh: bool,
        /// Test only: fail at this fault point (e.g. `before_commit:bronze.orders`).
        #[arg(long, hide = true)]
        inject_fault: Vec<String>,
        /// Run every gold model `local`ly or on the `ballista` cluster of
        /// `[engine.ballista] scheduler`; overrides `[engine] mode` and the models' `engine`.
        #[arg(long, value_parser = assay_engine::config::EngineMode::parse)]
        engine: Option<assay_engine::config::EngineMode>,
    },
    /// Print the DAG: table, layer, upstream tables.
    Ls,
    /// Serve the lake: Arrow Flight SQL and the REST gateway (until Ctrl-C or SIGTERM).
    Serve {
        /// Flight SQL address; overrides `[serve] flight_addr` (default 127.0.0.1:50051).
        #[arg(long)]
        flight_addr: Option<String>,
        /// REST gateway address; overrides `[serve] http_addr` (default 127.0.0.1:8080).
        #[arg(long)]
        http_addr: Option<String>,
        /// Send Utf8View/BinaryView columns as they are instead of as Utf8/Binary.
        #[arg(long)]
        keep_views: bool,
        /// Write one JSON line per request to `stdout`, `stderr` or a file; overrides
        /// `[serve] access_log`.
        #[arg(long, value_name = "TARGET")]
        access_log: Option<String>,
    },
    /// Print the schedules of the project and their next fire times.
    Schedule {
        /// How many fire times to show per schedule.
        #[arg(long, default_value_t = 3)]
        count: usize,
    },
    /// Compact small files (and Z-order them) in one commit per table; data unchanged.
    Optimize {
        /// Tables to compact, in the `--select` syntax (default: every table of the lake).
        #[arg(long, short)]
        select: Option<String>,
        /// Z-order the files by these columns (comma-separated); overrides `zorder_by`.
        #[arg(long)]
        zorder_by: Option<String>,
    },
    /// Delete files no version within the retention needs.
    Vacuum {
        /// Tables to vacuum, in the `--select` syntax (default: every table of the lake).
        #[arg(long, short)]
        select: Option<String>,
        /// Keep the files removed less than this long ago (default: `vacuum_retain`, 168h).
        #[arg(long)]
        retain: Option<String>,
        /// List the files that would be deleted; delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Accept a retention below `[maintenance] vacuum_min_retain`.
        #[arg(long)]
        force: bool,
    },
    /// Bring a table back to an earlier version, in one new commit.
    Restore {
        /// The table, `layer.name`.
        table: String,
        /// The version to bring back.
        #[arg(long, conflicts_with = "timestamp")]
        version: Option<i64>,
        /// The version current at this time (RFC 3339, e.g. 2026-11-30T10:00:00Z).
        #[arg(long)]
        timestamp: Option<String>,
    },
    /// Copy tables (log and files of every version) to a second lake root; incremental.
    Clone {
        /// The target lake root (a path, file://, s3://, az://, abfss:// URL).
        #[arg(long)]
        to: String,
        /// Tables to copy, in the `--select` syntax (default: every table of the lake).
        #[arg(long, short)]
        select: Option<String>,
    },
    /// Check that every file the latest versions reference exists and reads.
    Verify {
        /// Tables to check, in the `--select` syntax (default: every table of the lake).
        #[arg(long, short)]
        select: Option<String>,
    },
    /// Run a process of a Ballista cluster: its scheduler, or an executor of the lake.
    Cluster {
        #[command(subcommand)]
        role: ClusterRole,
    },
    /// Print recent runs from `_system.runs`.
    Runs {
        /// How many runs to show.
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
}

/// The processes of a Ballista cluster.
#[derive(Debug, Subcommand)]
pub(crate) enum ClusterRole {
    /// The scheduler: plans the queries clients send and hands their tasks to executors.
    Scheduler(cluster::SchedulerArgs),
    /// An executor: runs tasks, reading the lake's files with the project's `[lake]`
    /// settings.
    Executor(cluster::ExecutorArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let telemetry = {
        let _inside = runtime.enter();
        telemetry::Telemetry::init(cli.log_format)
    };
    let code = match runtime.block_on(commands::dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", render_error(&e));
            ExitCode::FAILURE
        }
    };
    telemetry.shutdown();
    code
}

/// The error and its causes, `: `-separated, leaving out a cause whose text the message
/// before it already contains (object_store and delta-rs repeat their sources' text).
fn render_error(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if parts.last().is_some_and(|p| p.contains(&text)) {
            continue;
        }
        parts.push(text);
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn repeated_causes_print_once() {
        let inner = std::io::Error::other("disk on fire");
        let e = anyhow::Error::new(inner)
            .context("s3://b/p: disk on fire")
            .context("opening lake s3://b/p");
        assert_eq!(
            super::render_error(&e),
            "opening lake s3://b/p: s3://b/p: disk on fire"
        );
    }
}
