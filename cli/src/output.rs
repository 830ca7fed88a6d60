//! What the commands print: progress, the run summary, the DAG and run history.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use assay_engine::dag::Pipeline;
use assay_engine::progress::Meter;
use assay_engine::runner::{RunObserver, RunSummary, StepOutcome};
use assay_engine::session::LakeCatalog;
use assay_engine::{Lake, TableId};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use indicatif::{HumanBytes, HumanCount, MultiProgress, ProgressBar, ProgressStyle};

/// Progress on stderr. On a terminal: a live bar per running step (elapsed time, rows and
/// bytes written so far) with a line per finished step above them. Otherwise one plain
/// timestamped line per event (cron mail, CI logs).
pub(crate) struct Progress {
    start: Instant,
    bars: Option<Bars>,
}

/// The live bars of the running steps, redrawn by a ticker thread.
struct Bars {
    multi: MultiProgress,
    live: Arc<Mutex<HashMap<TableId, Live>>>,
    stop: Arc<AtomicBool>,
    ticker: Mutex<Option<std::thread::JoinHandle<()>>>,
}

struct Live {
    bar: ProgressBar,
    meter: Option<Arc<Meter>>,
}

/// How often the bars' rows and bytes are refreshed.
const REFRESH: Duration = Duration::from_millis(200);

impl Bars {
    fn new() -> Bars {
        let live: Arc<Mutex<HashMap<TableId, Live>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let (live, stop) = (Arc::clone(&live), Arc::clone(&stop));
            std::thread::Builder::new()
                .name("progress".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        if let Ok(live) = live.lock() {
                            for l in live.values() {
                                if let Some(m) = &l.meter {
                                    l.bar.set_message(format!(
                                        "{} rows  {}",
                                        HumanCount(m.rows()),
                                        HumanBytes(m.bytes())
                                    ));
                                }
                            }
                        }
                        std::thread::sleep(REFRESH);
                    }
                })
                .ok()
        };
        Bars {
            multi: MultiProgress::new(),
            live,
            stop,
            ticker: Mutex::new(ticker),
        }
    }
}

impl Progress {
    pub(crate) fn new() -> Self {
        Progress {
            start: Instant::now(),
            bars: std::io::stderr().is_terminal().then(Bars::new),
        }
    }

    pub(crate) fn done(&self) {
        if let Some(b) = &self.bars {
            b.stop.store(true, Ordering::Relaxed);
            if let Some(t) = b.ticker.lock().ok().and_then(|mut t| t.take()) {
                let _ = t.join();
            }
            let _ = b.multi.clear();
            eprintln!("[{:>6.1}s] done", self.start.elapsed().as_secs_f64());
        }
    }

    fn line(&self, text: std::fmt::Arguments<'_>) {
        use std::io::Write;
        match &self.bars {
            Some(b) => {
                let text = format!("[{:>6.1}s] {text}", self.start.elapsed().as_secs_f64());
                // Above the bars, which are redrawn below it.
                let _ = b.multi.println(text);
            }
            None => {
                let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
                let _ = writeln!(std::io::stderr().lock(), "{now} {text}");
            }
        }
    }
}

impl RunObserver for Progress {
    fn started(&self, table: &TableId, _at: chrono::DateTime<chrono::Utc>) {
        let Some(b) = &self.bars else {
            self.line(format_args!("started {table}"));
            return;
        };
        let style = ProgressStyle::with_template("{spinner} {prefix:<32} {elapsed:>4}  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let bar = b.multi.add(
            ProgressBar::new_spinner()
                .with_style(style)
                .with_prefix(table.to_string()),
        );
        bar.enable_steady_tick(Duration::from_millis(100));
        if let Ok(mut live) = b.live.lock() {
            live.insert(table.clone(), Live { bar, meter: None });
        }
    }

    fn metering(&self, table: &TableId, meter: Arc<Meter>) {
        if let Some(b) = &self.bars
            && let Ok(mut live) = b.live.lock()
            && let Some(l) = live.get_mut(table)
        {
            l.meter = Some(meter);
        }
    }

    fn finished(&self, o: &StepOutcome) {
        let ms = (o.ended_at - o.started_at).num_milliseconds();
        let Some(b) = &self.bars else {
            self.line(format_args!(
                "{} {} rows_in={} rows_written={} rows_rejected={} duration_ms={ms}",
                o.status.as_str(),
                o.table,
                o.report.rows_in,
                o.report.rows_written,
                o.report.rows_rejected
            ));
            return;
        };
        if let Some(l) = b
            .live
            .lock()
            .ok()
            .and_then(|mut live| live.remove(&o.table))
        {
            l.bar.finish_and_clear();
            b.multi.remove(&l.bar);
        }
        self.line(format_args!(
            "{:<6} {} ({} rows, {:.1}s)",
            short(o.status.as_str()),
            o.table,
            HumanCount(o.report.rows_written),
            ms as f64 / 1000.0
        ));
    }
}

fn short(status: &str) -> &str {
    match status {
        "succeeded" => "ok",
        "up_to_date" => "same",
        "failed" => "FAIL",
        other => other,
    }
}

/// The run summary: step, layer, status, rows in / written / rejected, duration, version.
pub(crate) fn summary_table(summary: &RunSummary) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
        "step",
        "layer",
        "status",
        "rows in",
        "rows written",
        "rows rejected",
        "duration",
        "version",
    ]);
    let mut steps: Vec<&StepOutcome> = summary.steps.iter().collect();
    steps.sort_by(|a, b| a.table.cmp(&b.table));
    for s in steps {
        let ms = (s.ended_at - s.started_at).num_milliseconds();
        t.add_row(vec![
            s.table.to_string(),
            s.table.layer.to_string(),
            s.status.as_str().to_string(),
            s.report.rows_in.to_string(),
            s.report.rows_written.to_string(),
            s.report.rows_rejected.to_string(),
            format!("{:.2}s", ms as f64 / 1000.0),
            s.report
                .version
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    t
}

/// The run report of `assay run --output json`: the run, then each step in the order
/// steps finished.
pub(crate) fn run_report(summary: &RunSummary) -> serde_json::Value {
    let ms = |a: chrono::DateTime<chrono::Utc>, b: chrono::DateTime<chrono::Utc>| {
        (b - a).num_milliseconds()
    };
    let steps: Vec<serde_json::Value> = summary
        .steps
        .iter()
        .map(|s| {
            serde_json::json!({
                "table": s.table.to_string(),
                "layer": s.table.layer.to_string(),
                "status": s.status.as_str(),
                "started_at": s.started_at.to_rfc3339(),
                "ended_at": s.ended_at.to_rfc3339(),
                "duration_ms": ms(s.started_at, s.ended_at),
                "attempts": s.attempts,
                "rows_in": s.report.rows_in,
                "rows_written": s.report.rows_written,
                "rows_rejected": s.report.rows_rejected,
                "version": s.report.version,
                "error": s.error,
                "expectations": s.report.expectations,
            })
        })
        .collect();
    serde_json::json!({
        "run_id": summary.run_id,
        "status": if summary.succeeded() { "succeeded" } else { "failed" },
        "started_at": summary.started_at.to_rfc3339(),
        "ended_at": summary.ended_at.to_rfc3339(),
        "duration_ms": ms(summary.started_at, summary.ended_at),
        "steps": steps,
    })
}

/// The DAG: table, layer, upstream tables, in run order.
pub(crate) fn dag_table(pipeline: &Pipeline) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_header(vec!["table", "layer", "upstream"]);
    for step in pipeline.ordered() {
        let ups: Vec<String> = step.upstreams().iter().map(|u| u.to_string()).collect();
        t.add_row(vec![
            step.table().to_string(),
            step.table().layer.to_string(),
            if ups.is_empty() {
                "-".into()
            } else {
                ups.join(", ")
            },
        ]);
    }
    t
}

/// The newest runs and their steps, from `_system.runs`.
pub(crate) async fn runs_table(lake: &Lake, limit: usize) -> Result<Table> {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    let header = vec![
        "run_id",
        "kind",
        "step",
        "status",
        "started_at",
        "duration_ms",
        "rows_written",
        "rows_rejected",
        "version",
        "error",
    ];
    t.set_header(header.clone());
    if lake
        .open(&assay_engine::history::runs_table())
        .await?
        .is_none()
    {
        return Ok(t);
    }
    let catalog = LakeCatalog::load(lake.clone()).await?;
    let ctx = catalog.session();
    let sql = format!(
        "SELECT {} FROM _system.runs WHERE run_id IN \
         (SELECT run_id FROM _system.runs WHERE kind = 'run' ORDER BY started_at DESC LIMIT {limit}) \
         ORDER BY run_id DESC, kind, step",
        header.join(", ")
    );
    let batches = ctx
        .sql(&sql)
        .await
        .context("reading _system.runs")?
        .collect()
        .await
        .context("reading _system.runs")?;
    let options = FormatOptions::default().with_null("");
    for b in &batches {
        let formatters: Vec<ArrayFormatter> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<_, _>>()?;
        for row in 0..b.num_rows() {
            t.add_row(
                formatters
                    .iter()
                    .map(|f| f.value(row).to_string())
                    .collect::<Vec<_>>(),
            );
        }
    }
    Ok(t)
}

/// The project's schedules, each with its next `count` fire times after `now` (in the
/// schedule's time zone, with the offset).
pub(crate) fn schedules_table(
    project: &assay_engine::config::Project,
    now: chrono::DateTime<chrono::Utc>,
    count: usize,
) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
        "schedule",
        "cron",
        "timezone",
        "select",
        "exclude",
        "task",
        "full_refresh",
        "catch_up",
        "next fire times",
    ]);
    for s in &project.schedules {
        let next: Vec<String> = s
            .ticks_after(now, count)
            .iter()
            .map(|at| at.format("%Y-%m-%dT%H:%M:%S%:z").to_string())
            .collect();
        t.add_row(vec![
            s.name.clone(),
            s.cron.clone(),
            s.timezone.name().to_string(),
            s.select.clone().unwrap_or_else(|| "(all)".into()),
            s.exclude.clone().unwrap_or_else(|| "-".into()),
            s.task.as_str().to_string(),
            s.full_refresh.to_string(),
            s.catch_up.as_str().to_string(),
            next.join("\n"),
        ]);
    }
    t
}
