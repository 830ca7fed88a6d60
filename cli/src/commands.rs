//! The commands: `run`, `ls`, `schedule`, `runs`, `serve`; the lifecycle ones in `maintain`.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use assay_engine::config::Project;
use assay_engine::dag::Pipeline;
use assay_engine::session::LakeCatalog;
use assay_engine::step::{Faults, Step, StepContext};
use assay_engine::{Lake, history, runner};
use tracing::Instrument;

use crate::output;
use crate::{Cli, Command};

/// Loads the project and runs the command.
pub(crate) async fn dispatch(cli: Cli) -> Result<ExitCode> {
    // A scheduler serves any client: it needs no project.
    let cli = match cli.command {
        Command::Cluster {
            role: crate::ClusterRole::Scheduler(args),
        } => return crate::cluster::scheduler(args).await,
        _ => cli,
    };
    let mut project = Project::load(&cli.project)?;
    if let Command::Run {
        engine: Some(mode), ..
    } = &cli.command
    {
        project.force_engine(*mode)?;
    }
    let root = cli
        .lake
        .clone()
        .unwrap_or_else(|| project.lake_root.clone());
    let options = project
        .storage
        .options(&assay_engine::storage::process_env());
    let lake = Lake::resolve_with(&root, &project.dir, &options)?;
    let pipeline = build_pipeline(&project)?;
    match cli.command {
        Command::Run {
            select,
            exclude,
            fail_fast,
            output,
            full_refresh,
            inject_fault,
            engine: _,
        } => {
            let opts = RunOptions {
                select: select.as_deref(),
                exclude: exclude.as_deref(),
                fail_fast,
                json: output == crate::OutputFormat::Json,
                full_refresh,
                faults: inject_fault,
            };
            run(&project, lake, &pipeline, opts).await
        }
        Command::Schedule { count } => {
            println!(
                "{}",
                output::schedules_table(&project, chrono::Utc::now(), count)
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve {
            flight_addr,
            http_addr,
            keep_views,
            access_log,
        } => {
            let args = crate::serve::ServeArgs {
                flight_addr,
                http_addr,
                keep_views,
                access_log,
            };
            crate::serve::serve(&project, lake, pipeline, args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Ls => {
            println!("{}", output::dag_table(&pipeline));
            Ok(ExitCode::SUCCESS)
        }
        Command::Optimize { select, zorder_by } => {
            crate::maintain::optimize(
                &project,
                &lake,
                &pipeline,
                select.as_deref(),
                zorder_by.as_deref(),
            )
            .await
        }
        Command::Vacuum {
            select,
            retain,
            dry_run,
            force,
        } => {
            crate::maintain::vacuum(
                &project,
                &lake,
                &pipeline,
                select.as_deref(),
                retain.as_deref(),
                dry_run,
                force,
            )
            .await
        }
        Command::Restore {
            table,
            version,
            timestamp,
        } => crate::maintain::restore(&lake, &table, version, timestamp.as_deref()).await,
        Command::Clone { to, select } => {
            crate::maintain::clone(&project, &lake, &pipeline, &to, select.as_deref()).await
        }
        Command::Verify { select } => {
            crate::maintain::verify(&lake, &pipeline, select.as_deref()).await
        }
        Command::Cluster {
            role: crate::ClusterRole::Executor(args),
        } => crate::cluster::executor(&lake, args).await,
        Command::Cluster {
            role: crate::ClusterRole::Scheduler(args),
        } => crate::cluster::scheduler(args).await,
        Command::Runs { limit } => {
            println!("{}", output::runs_table(&lake, limit).await?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Every step of the project, in one validated DAG.
fn build_pipeline(project: &Project) -> Result<Pipeline> {
    let mut steps: Vec<Arc<dyn Step>> = assay_bronze::steps(project);
    steps.extend(assay_silver::steps(project)?);
    steps.extend(assay_gold::steps(project)?);
    let pipeline = Pipeline::new(steps)?.with_tags(project.run.tags());
    project.check_schedules(&pipeline)?;
    Ok(pipeline)
}

/// The longest `assay run` waits at its end for alerts still being sent.
const ALERT_FLUSH: std::time::Duration = std::time::Duration::from_secs(30);

/// What `assay run` was asked for.
struct RunOptions<'a> {
    select: Option<&'a str>,
    exclude: Option<&'a str>,
    fail_fast: bool,
    json: bool,
    full_refresh: bool,
    faults: Vec<String>,
}

async fn run(
    project: &Project,
    lake: Lake,
    pipeline: &Pipeline,
    opts: RunOptions<'_>,
) -> Result<ExitCode> {
    let run_id = uuid_v7();
    let span = tracing::info_span!("run", run_id = %run_id, user = "cli", full_refresh = opts.full_refresh);
    run_in_span(project, lake, pipeline, opts, run_id)
        .instrument(span)
        .await
}

async fn run_in_span(
    project: &Project,
    lake: Lake,
    pipeline: &Pipeline,
    opts: RunOptions<'_>,
    run_id: String,
) -> Result<ExitCode> {
    let selection = pipeline.selection(opts.select, opts.exclude)?;
    let config = assay_engine::config::RunConfig {
        fail_fast: opts.fail_fast,
        ..project.run.clone()
    };
    let catalog = LakeCatalog::load(lake.clone())
        .await
        .with_context(|| format!("opening lake {}", lake.root()))?;
    let ctx = StepContext {
        lake: lake.clone(),
        catalog,
        run_id,
        full_refresh: opts.full_refresh,
        faults: Faults::new(opts.faults),
    };
    let pulse = match history::begin(&lake, &ctx.run_id, chrono::Utc::now()).await {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::warn!(error = %e, "cannot record the run as running; its end is recorded all the same");
            None
        }
    };
    let observer = Arc::new(output::Progress::new());
    let summary = runner::run(pipeline, selection.as_ref(), &config, ctx, observer.clone()).await;
    observer.done();
    if opts.json {
        println!("{}", output::run_report(&summary));
    } else {
        println!("{}", output::summary_table(&summary));
    }
    for s in &summary.steps {
        if let Some(e) = &s.error {
            eprintln!("{} {}: {e}", s.status.as_str(), s.table);
        }
    }
    let (alerter, delivery) =
        assay_engine::alerts::Alerter::start(project.alerts.clone(), &project.name);
    alerter.notify(&summary, "cli");
    drop(alerter);
    let recorded = history::record(&lake, &summary).await;
    // Alerts go out while the run is recorded; a webhook that never answers holds the exit
    // back by its timeouts and retries, at most this long.
    delivery.flush(ALERT_FLUSH).await;
    if let Some(p) = pulse {
        p.stop().await;
    }
    recorded.context("recording the run in _system.runs")?;
    for line in assay_engine::lifecycle::after_run(&lake, &project.maintenance, &summary).await {
        eprintln!("maintenance: {line}");
    }
    Ok(if summary.succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn uuid_v7() -> String {
    uuid::Uuid::now_v7().to_string()
}
