//! Table identities: `layer.name`.

use std::fmt;

/// The layer a table lives in; also its schema name in SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Layer {
    /// Raw ingested data.
    Bronze,
    /// Validated, typed, deduplicated data.
    Silver,
    /// Business tables built from SQL models.
    Gold,
    /// Run history and expectation outcomes.
    System,
}

impl Layer {
    /// All layers, in pipeline order.
    pub const ALL: [Layer; 4] = [Layer::Bronze, Layer::Silver, Layer::Gold, Layer::System];

    /// The schema / directory name of the layer.
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::Bronze => "bronze",
            Layer::Silver => "silver",
            Layer::Gold => "gold",
            Layer::System => "_system",
        }
    }

    /// Parses a schema name.
    pub fn parse(s: &str) -> Option<Layer> {
        Layer::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A table in the lake: `layer.name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableId {
    /// The layer.
    pub layer: Layer,
    /// The name within the layer.
    pub name: String,
}

impl TableId {
    /// Builds an id.
    pub fn new(layer: Layer, name: impl Into<String>) -> Self {
        TableId {
            layer,
            name: name.into(),
        }
    }

    /// Parses `layer.name`.
    ///
    /// # Errors
    /// A message naming what is wrong.
    pub fn parse(s: &str) -> Result<TableId, String> {
        let (layer, name) = s
            .split_once('.')
            .ok_or_else(|| format!("`{s}` is not of the form layer.table"))?;
        let layer = Layer::parse(layer).ok_or_else(|| {
            format!("`{s}`: unknown layer `{layer}` (bronze, silver, gold, _system)")
        })?;
        if name.is_empty() || name.contains('.') {
            return Err(format!("`{s}` is not of the form layer.table"));
        }
        Ok(TableId::new(layer, name))
    }

    /// The side table next to this one, e.g. `bronze.orders__rejected`.
    pub fn side(&self, suffix: &str) -> TableId {
        TableId::new(self.layer, format!("{}__{suffix}", self.name))
    }
}

impl serde::Serialize for TableId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for TableId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.layer, self.name)
    }
}
