//! `[maintenance]` and the per-entry `maintenance = { ... }`, `zorder_by` keys: how Assay keeps
//! a table's files and log (compaction, clustering, vacuum, checkpoints, log cleanup).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::Validator;
use crate::error::Result;
use crate::table::TableId;

/// How one table is maintained: `[maintenance]` with its entry's overrides applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableMaintenance {
    /// Commits between two checkpoints (`delta.checkpointInterval`; Delta's default 100).
    pub checkpoint_interval: u64,
    /// How long commit files stay in the log once a later checkpoint covers them
    /// (`delta.logRetentionDuration`; Delta's default 30 days). Time travel reaches this far.
    pub log_retention: Duration,
    /// How long files a commit removed stay on storage before `assay vacuum` deletes them
    /// (the default `--retain`, and `delta.deletedFileRetentionDuration`; default 7 days).
    pub vacuum_retain: Duration,
    /// Size `assay optimize` compacts files to.
    pub target_file_bytes: u64,
    /// Whether `assay run` compacts (and vacuums) the tables it wrote once they hold more
    /// than `small_files` files smaller than the target.
    pub auto: bool,
    /// Small files a table may hold before automatic maintenance compacts it.
    pub small_files: usize,
    /// Columns `assay optimize` Z-orders the table's files by (none: plain compaction).
    pub zorder_by: Vec<String>,
}

impl Default for TableMaintenance {
    fn default() -> Self {
        TableMaintenance {
            checkpoint_interval: 100,
            log_retention: Duration::from_secs(30 * 86_400),
            vacuum_retain: Duration::from_secs(7 * 86_400),
            target_file_bytes: crate::delta::TARGET_FILE_BYTES,
            auto: false,
            small_files: 32,
            zorder_by: Vec::new(),
        }
    }
}

/// The project's maintenance settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintenanceConfig {
    /// `[maintenance]`: the settings of every table without overrides.
    pub defaults: TableMaintenance,
    /// The shortest retention `assay vacuum` accepts without `--force` (default 168h).
    pub vacuum_min_retain: Duration,
    /// Tables whose entry overrides a setting or names `zorder_by`.
    pub tables: BTreeMap<TableId, TableMaintenance>,
    /// Whether the project sets anything (`[maintenance]` or an entry's `maintenance`):
    /// without, runs leave the tables' properties alone and cost no extra read.
    pub configured: bool,
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        MaintenanceConfig {
            defaults: TableMaintenance::default(),
            vacuum_min_retain: Duration::from_secs(7 * 86_400),
            tables: BTreeMap::new(),
            configured: false,
        }
    }
}

impl MaintenanceConfig {
    /// The settings of a table; a side table (`silver.x__quarantine`) has its base table's.
    pub fn for_table(&self, id: &TableId) -> TableMaintenance {
        let base = match id.name.split_once("__") {
            Some((base, _)) => TableId::new(id.layer, base),
            None => id.clone(),
        };
        let mut m = self
            .tables
            .get(&base)
            .cloned()
            .unwrap_or_else(|| self.defaults.clone());
        if base != *id {
            // The base table's clustering columns need not exist in its side tables.
            m.zorder_by.clear();
        }
        m
    }
}

/// `[maintenance]` or an entry's `maintenance = { ... }` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMaintenance {
    pub(crate) checkpoint_interval: Option<Spanned<u64>>,
    pub(crate) log_retention: Option<Spanned<String>>,
    pub(crate) vacuum_retain: Option<Spanned<String>>,
    pub(crate) vacuum_min_retain: Option<Spanned<String>>,
    pub(crate) target_file_mb: Option<Spanned<u64>>,
    pub(crate) auto: Option<bool>,
    pub(crate) small_files: Option<Spanned<usize>>,
}

impl Validator<'_> {
    /// `[maintenance]`.
    pub(crate) fn maintenance(&self, raw: RawMaintenance) -> Result<MaintenanceConfig> {
        let mut config = MaintenanceConfig::default();
        if let Some(v) = &raw.vacuum_min_retain {
            let key = "maintenance.vacuum_min_retain";
            config.vacuum_min_retain =
                humantime::parse_duration(v.get_ref()).map_err(|e| self.err(v, key, e))?;
        }
        config.defaults =
            self.table_maintenance(&TableMaintenance::default(), &raw, "maintenance")?;
        config.configured = raw.checkpoint_interval.is_some()
            || raw.log_retention.is_some()
            || raw.vacuum_retain.is_some()
            || raw.target_file_mb.is_some()
            || raw.auto.is_some()
            || raw.small_files.is_some();
        Ok(config)
    }

    /// An entry's overrides (`key` names the entry, e.g. `gold[2]`) on top of `base`.
    pub(crate) fn table_maintenance(
        &self,
        base: &TableMaintenance,
        raw: &RawMaintenance,
        key: &str,
    ) -> Result<TableMaintenance> {
        let mut m = base.clone();
        if let Some(v) = &raw.vacuum_min_retain
            && key != "maintenance"
        {
            return Err(self.err(
                v,
                &format!("{key}.vacuum_min_retain"),
                "set it in `[maintenance]`: it is a limit of the whole lake",
            ));
        }
        if let Some(v) = &raw.checkpoint_interval {
            if *v.get_ref() == 0 {
                return Err(self.err(v, &format!("{key}.checkpoint_interval"), "at least 1"));
            }
            m.checkpoint_interval = *v.get_ref();
        }
        let duration = |v: &Spanned<String>, k: &str| -> Result<Duration> {
            let key = format!("{key}.{k}");
            let d = humantime::parse_duration(v.get_ref()).map_err(|e| self.err(v, &key, e))?;
            if d < Duration::from_secs(1) {
                return Err(self.err(v, &key, "at least 1s"));
            }
            Ok(d)
        };
        if let Some(v) = &raw.log_retention {
            m.log_retention = duration(v, "log_retention")?;
        }
        if let Some(v) = &raw.vacuum_retain {
            m.vacuum_retain = humantime::parse_duration(v.get_ref())
                .map_err(|e| self.err(v, &format!("{key}.vacuum_retain"), e))?;
        }
        if let Some(v) = &raw.target_file_mb {
            if *v.get_ref() == 0 {
                return Err(self.err(v, &format!("{key}.target_file_mb"), "at least 1"));
            }
            m.target_file_bytes = v.get_ref().saturating_mul(1 << 20);
        }
        if let Some(a) = raw.auto {
            m.auto = a;
        }
        if let Some(v) = &raw.small_files {
            if *v.get_ref() < 2 {
                return Err(self.err(v, &format!("{key}.small_files"), "at least 2"));
            }
            m.small_files = *v.get_ref();
        }
        Ok(m)
    }
}

/// Delta's interval format (`interval 30 days`) for a duration, in the largest whole unit.
pub fn delta_interval(d: Duration) -> String {
    let secs = d.as_secs();
    if secs > 0 && secs.is_multiple_of(86_400) {
        format!("interval {} days", secs / 86_400)
    } else if secs > 0 && secs.is_multiple_of(3_600) {
        format!("interval {} hours", secs / 3_600)
    } else if secs > 0 && secs.is_multiple_of(60) {
        format!("interval {} minutes", secs / 60)
    } else if d.subsec_millis() == 0 {
        format!("interval {secs} seconds")
    } else {
        format!("interval {} milliseconds", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::delta_interval;
    use std::time::Duration;

    #[test]
    fn intervals_use_the_largest_whole_unit() {
        assert_eq!(
            delta_interval(Duration::from_secs(30 * 86_400)),
            "interval 30 days"
        );
        assert_eq!(
            delta_interval(Duration::from_secs(7_200)),
            "interval 2 hours"
        );
        assert_eq!(
            delta_interval(Duration::from_secs(90)),
            "interval 90 seconds"
        );
        assert_eq!(
            delta_interval(Duration::from_secs(120)),
            "interval 2 minutes"
        );
        assert_eq!(
            delta_interval(Duration::from_millis(1500)),
            "interval 1500 milliseconds"
        );
    }
}
