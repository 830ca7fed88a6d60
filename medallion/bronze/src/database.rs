//! What the database sources share: the cursor (watermark and the keys seen at it), kept
//! as a table property in the same commit as the rows, and how a run ends.

use std::collections::BTreeSet;

use assay_engine::delta::{self, CommitInfo};
use assay_engine::step::{StepContext, StepReport};
use serde::{Deserialize, Serialize};

use assay_engine::config::DatabaseSource;

use crate::error::{BronzeError, Result};
use crate::http::CURSOR_PROPERTY;
use crate::ingest::{BronzeStep, Sink, Target};

/// Where the last run stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Cursor {
    /// The largest watermark read, as the server prints it.
    pub(crate) watermark: Option<String>,
    /// The keys (or row hashes) read at exactly that watermark.
    #[serde(default)]
    pub(crate) seen: BTreeSet<String>,
}

impl Cursor {
    /// The cursor the last run committed (none on a full refresh).
    pub(crate) fn last(ctx: &StepContext, target: &Target) -> Cursor {
        if ctx.full_refresh {
            return Cursor::default();
        }
        target
            .table
            .as_ref()
            .and_then(|t| delta::table_property(t, CURSOR_PROPERTY))
            .and_then(|c| serde_json::from_str(&c).ok())
            .unwrap_or_default()
    }

    /// The cursor after a run whose rows reached `watermark`, with `keys` at it (the keys
    /// of the last cursor carry over when the watermark did not move).
    pub(crate) fn after(&self, watermark: Option<String>, keys: Vec<String>) -> Cursor {
        if watermark.is_none() {
            return self.clone();
        }
        let mut seen: BTreeSet<String> = keys.into_iter().collect();
        if watermark == self.watermark {
            seen.extend(self.seen.iter().cloned());
        }
        Cursor { watermark, seen }
    }
}

/// Ends a database run: commits what `sink` wrote with the `next` cursor, or nothing when
/// there was nothing new.
pub(crate) async fn finish(
    step: &BronzeStep,
    ctx: &StepContext,
    sink: Sink<'_>,
    target: &Target,
    old: &Cursor,
    next: &Cursor,
) -> Result<StepReport> {
    let rows = sink.report.rows_written;
    if rows == 0 && next == old && !ctx.full_refresh {
        tracing::info!(table = %step.id(), "no new rows");
        return Ok(StepReport::default());
    }
    let cursor = serde_json::to_string(next).unwrap_or_default();
    let info = CommitInfo::new(Vec::new(), &ctx.run_id)
        .with("assay.batch_id", sink.lineage.batch_id.clone())
        .with_table_property(CURSOR_PROPERTY, cursor);
    let mut report = step.commit(ctx, sink, target, &info, false).await?;
    report.rows_in = rows;
    Ok(report)
}

/// An error of a database source, naming the system and the table (or `query`).
pub(crate) fn error(
    system: &'static str,
    source: &DatabaseSource,
    message: impl Into<String>,
) -> BronzeError {
    BronzeError::Database {
        system,
        what: match &source.table {
            Some(t) => format!("table `{t}`"),
            None => "query".into(),
        },
        message: message.into(),
    }
}

/// The connection URL from the source's environment variable.
pub(crate) fn url(system: &'static str, source: &DatabaseSource) -> Result<String> {
    std::env::var(&source.url_env).map_err(|_| {
        error(
            system,
            source,
            format!("environment variable `{}` is not set", source.url_env),
        )
    })
}

/// `text` with the URL's password replaced by `***` (drivers do not print it; this makes
/// sure).
pub(crate) fn masked(mut text: String, url: &str) -> String {
    if let Ok(u) = url::Url::parse(url)
        && let Some(p) = u.password()
        && !p.is_empty()
    {
        text = text.replace(p, "***");
    }
    text
}

/// The source as a relation in SQL: the table (each part quoted by `quote`) or the query
/// as a subquery.
pub(crate) fn relation(source: &DatabaseSource, quote: fn(&str) -> String) -> String {
    match (&source.table, &source.query) {
        (Some(t), _) => t.split('.').map(quote).collect::<Vec<_>>().join("."),
        // The config holds a table or a query.
        (None, q) => format!(
            "({}) AS src",
            q.as_deref()
                .unwrap_or_default()
                .trim()
                .trim_end_matches(';')
        ),
    }
}
