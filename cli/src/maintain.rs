//! The table lifecycle commands: `optimize`, `vacuum`, `restore`, `clone`, `verify`.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use assay_engine::Lake;
use assay_engine::config::Project;
use assay_engine::dag::Pipeline;
use assay_engine::lifecycle::{self, At};
use assay_engine::table::TableId;

/// The tables a `--select` names (with their side tables), all of the lake without one.
async fn tables(lake: &Lake, pipeline: &Pipeline, select: Option<&str>) -> Result<Vec<TableId>> {
    let selection = pipeline.selection(select, None)?;
    let all = lifecycle::all_tables(lake)
        .await
        .with_context(|| format!("listing the tables of {}", lake.root()))?;
    Ok(lifecycle::selected(all, selection.as_ref()))
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// `assay optimize`.
pub(crate) async fn optimize(
    project: &Project,
    lake: &Lake,
    pipeline: &Pipeline,
    select: Option<&str>,
    zorder_by: Option<&str>,
) -> Result<ExitCode> {
    let zorder: Option<Vec<String>> = zorder_by.map(|z| {
        z.split(',')
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .collect()
    });
    let mut failed = false;
    for id in tables(lake, pipeline, select).await? {
        let mut settings = project.maintenance.for_table(&id);
        if let Some(z) = &zorder {
            settings.zorder_by = z.clone();
        }
        match lifecycle::optimize(lake, &id, &settings).await {
            Ok(o) => match o.version {
                Some(v) => println!(
                    "{id}: {} files ({}) -> {} files ({}){}, version {v}",
                    o.before.files,
                    mib(o.before.bytes),
                    o.after.files,
                    mib(o.after.bytes),
                    if o.zorder_by.is_empty() {
                        String::new()
                    } else {
                        format!(", Z-ordered by {}", o.zorder_by.join(", "))
                    }
                ),
                None => println!(
                    "{id}: {} files ({}), nothing to compact",
                    o.before.files,
                    mib(o.before.bytes)
                ),
            },
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
            }
        }
    }
    Ok(exit(failed))
}

/// `assay vacuum`.
pub(crate) async fn vacuum(
    project: &Project,
    lake: &Lake,
    pipeline: &Pipeline,
    select: Option<&str>,
    retain: Option<&str>,
    dry_run: bool,
    force: bool,
) -> Result<ExitCode> {
    let retain = retain
        .map(|r| {
            humantime::parse_duration(r)
                .with_context(|| format!("--retain `{r}`: not a duration (e.g. 168h, 7days)"))
        })
        .transpose()?;
    let min = project.maintenance.vacuum_min_retain;
    let targets = tables(lake, pipeline, select).await?;
    // Refuse before touching any table.
    for id in &targets {
        let r = retain.unwrap_or_else(|| project.maintenance.for_table(id).vacuum_retain);
        if !force {
            lifecycle::check_retention(r, min).map_err(|m| anyhow::anyhow!("{m}"))?;
        }
    }
    let mut failed = false;
    for id in targets {
        let r = retain.unwrap_or_else(|| project.maintenance.for_table(&id).vacuum_retain);
        match lifecycle::vacuum(lake, &id, r, min, force, dry_run).await {
            Ok(v) => {
                let verb = if dry_run { "would delete" } else { "deleted" };
                println!("{id}: {verb} {} files", v.files.len());
                if dry_run {
                    for f in &v.files {
                        println!("  {f}");
                    }
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
            }
        }
    }
    Ok(exit(failed))
}

/// `assay restore`.
pub(crate) async fn restore(
    lake: &Lake,
    table: &str,
    version: Option<i64>,
    timestamp: Option<&str>,
) -> Result<ExitCode> {
    let id = TableId::parse(table).map_err(|e| anyhow::anyhow!("table `{table}`: {e}"))?;
    let target = match (version, timestamp) {
        (Some(v), None) => At::Version(v),
        (None, Some(t)) => At::Timestamp(
            lifecycle::parse_timestamp(t).map_err(|e| anyhow::anyhow!("--timestamp: {e}"))?,
        ),
        _ => bail!("give exactly one of --version N and --timestamp T"),
    };
    let r = lifecycle::restore(lake, &id, target).await?;
    match r.version {
        Some(v) => println!(
            "{id}: restored version {} as version {v} (was at {}; {} files back, {} removed)",
            r.restored, r.from, r.files_restored, r.files_removed
        ),
        None => println!(
            "{id}: already at version {}; nothing to restore",
            r.restored
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// `assay clone`.
pub(crate) async fn clone(
    project: &Project,
    lake: &Lake,
    pipeline: &Pipeline,
    to: &str,
    select: Option<&str>,
) -> Result<ExitCode> {
    let options = project
        .storage
        .options(&assay_engine::storage::process_env());
    let target = Lake::resolve_with(to, &project.dir, &options)?;
    if target.root() == lake.root() {
        bail!("--to {to}: that is the lake itself");
    }
    let tables = tables(lake, pipeline, select).await?;
    lifecycle::claim_target(lake, &target).await?;
    for id in tables {
        let r = lifecycle::clone_table(lake, &target, &id).await?;
        println!(
            "{id}: version {} -> {}: {} files copied ({}), {} there already, {} log entries{}",
            r.version,
            target.table_url(&id),
            r.files_copied,
            mib(r.bytes_copied),
            r.files_present,
            r.log_entries_copied,
            if r.files_gone > 0 {
                format!(
                    ", {} files of old versions vacuumed at the source",
                    r.files_gone
                )
            } else {
                String::new()
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `assay verify`.
pub(crate) async fn verify(
    lake: &Lake,
    pipeline: &Pipeline,
    select: Option<&str>,
) -> Result<ExitCode> {
    let mut bad = false;
    for id in tables(lake, pipeline, select).await? {
        let r = lifecycle::verify(lake, &id).await?;
        if r.problems.is_empty() {
            println!("{id}: version {}, {} files ok", r.version, r.files);
        } else {
            bad = true;
            println!(
                "{id}: version {}, {} of {} files have problems",
                r.version,
                r.problems.len(),
                r.files
            );
            for p in &r.problems {
                eprintln!("error: table {id}: file {}: {}", p.file, p.message);
            }
        }
    }
    Ok(exit(bad))
}

fn exit(failed: bool) -> ExitCode {
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
