//! `[engine]`: where gold models run — in this process, or on a Ballista cluster.

use serde::Deserialize;
use toml::Spanned;

use super::{GoldConfig, Project, Validator};
use crate::cluster::Cluster;
use crate::error::{EngineError, Result};

/// Where queries run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineMode {
    /// In this process (DataFusion).
    #[default]
    Local,
    /// On the Ballista cluster of `[engine.ballista] scheduler`.
    Ballista,
}

impl EngineMode {
    /// Parses `local` or `ballista`.
    ///
    /// # Errors
    /// Any other word.
    pub fn parse(text: &str) -> std::result::Result<EngineMode, String> {
        match text {
            "local" => Ok(EngineMode::Local),
            "ballista" => Ok(EngineMode::Ballista),
            other => Err(format!("`{other}`: expected `local` or `ballista`")),
        }
    }
}

/// `[engine]` as validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineConfig {
    /// The mode of every gold model without its own `engine`.
    pub mode: EngineMode,
    /// `[engine.ballista] scheduler`: the cluster's scheduler, `df://host:port`.
    pub scheduler: Option<String>,
}

/// `[engine]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEngine {
    mode: Option<Spanned<EngineMode>>,
    ballista: Option<RawBallista>,
}

/// `[engine.ballista]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBallista {
    scheduler: Spanned<String>,
}

impl Validator<'_> {
    /// `[engine]`, and every gold model's `engine` checked against it.
    pub(super) fn engine(
        &self,
        raw: RawEngine,
        models: &[(String, Option<Spanned<EngineMode>>)],
    ) -> Result<EngineConfig> {
        let scheduler = match &raw.ballista {
            Some(b) => Some(
                crate::cluster::parse_scheduler(b.scheduler.get_ref())
                    .map_err(|e| self.err(&b.scheduler, "engine.ballista.scheduler", e))?,
            ),
            None => None,
        };
        let config = EngineConfig {
            mode: raw.mode.as_ref().map(|m| *m.get_ref()).unwrap_or_default(),
            scheduler,
        };
        if config.scheduler.is_none() {
            if let Some(m) = raw.mode.filter(|m| *m.get_ref() == EngineMode::Ballista) {
                return Err(self.err(&m, "engine.mode", NO_SCHEDULER));
            }
            for (i, (_, mode)) in models.iter().enumerate() {
                if let Some(m) = mode
                    .as_ref()
                    .filter(|m| *m.get_ref() == EngineMode::Ballista)
                {
                    return Err(self.err(m, &format!("gold[{i}].engine"), NO_SCHEDULER));
                }
            }
        }
        Ok(config)
    }
}

const NO_SCHEDULER: &str = "`ballista` needs `[engine.ballista] scheduler = \"df://host:50050\"`";

impl Project {
    /// The cluster `model` runs on, `None` when it runs here: its own `engine`, else
    /// `[engine] mode`.
    pub fn cluster_for(&self, model: &GoldConfig) -> Option<Cluster> {
        let mode = model.engine.unwrap_or(self.engine.mode);
        match (mode, &self.engine.scheduler) {
            (EngineMode::Ballista, Some(s)) => Some(Cluster::new(s.clone())),
            _ => None,
        }
    }

    /// Runs every gold model in `mode` (`assay run --engine`), whatever `[engine] mode` and
    /// the models' own `engine` say.
    ///
    /// # Errors
    /// `ballista` without `[engine.ballista] scheduler`.
    pub fn force_engine(&mut self, mode: EngineMode) -> Result<()> {
        if mode == EngineMode::Ballista && self.engine.scheduler.is_none() {
            return Err(EngineError::Config {
                file: self.dir.join(super::PROJECT_FILE).display().to_string(),
                message: format!("--engine ballista: {NO_SCHEDULER}"),
            });
        }
        self.engine.mode = mode;
        for g in &mut self.gold {
            g.engine = None;
        }
        Ok(())
    }
}
