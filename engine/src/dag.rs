//! The pipeline DAG: steps, their upstream tables, topological order and selection.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use datafusion::sql::parser::DFParser;
use datafusion::sql::resolve::resolve_table_references;

use crate::error::{EngineError, Result};
use crate::step::Step;
use crate::table::{Layer, TableId};

/// The tables a SQL model reads, from DataFusion's parser (CTE names excluded).
///
/// Every reference must be qualified with a layer (`bronze.x`, `silver.y`, `gold.z`,
/// `_system.runs`).
///
/// # Errors
/// The SQL does not parse, holds no or several statements, or names a table without a layer.
pub fn sql_references(model: &str, file: &str, sql: &str) -> Result<Vec<TableId>> {
    let sql_err = |message: String| EngineError::Sql {
        file: file.to_string(),
        message,
    };
    let mut statements = DFParser::parse_sql(sql).map_err(|e| sql_err(e.to_string()))?;
    if statements.len() != 1 {
        return Err(sql_err(format!(
            "expected one statement, found {}",
            statements.len()
        )));
    }
    let statement = statements
        .pop_front()
        .ok_or_else(|| sql_err("empty SQL".into()))?;
    let (refs, _ctes) =
        resolve_table_references(&statement, true).map_err(|e| sql_err(e.to_string()))?;
    let mut out = BTreeSet::new();
    for r in refs {
        let id = match (r.schema(), Layer::parse(r.schema().unwrap_or_default())) {
            (Some(_), Some(layer)) => TableId::new(layer, r.table()),
            _ => {
                return Err(EngineError::UnknownTable {
                    model: model.to_string(),
                    table: format!("{r} (qualify it: bronze.x, silver.x or gold.x)"),
                });
            }
        };
        out.insert(id);
    }
    Ok(out.into_iter().collect())
}

/// The DAG of steps, validated: every upstream is produced by a step (or is a system
/// table) and there is no cycle.
#[derive(Debug, Clone)]
pub struct Pipeline {
    steps: Vec<Arc<dyn Step>>,
    index: HashMap<TableId, usize>,
    order: Vec<usize>,
    tags: HashMap<TableId, BTreeSet<String>>,
}

impl Pipeline {
    /// Validates and orders the steps.
    ///
    /// # Errors
    /// A reference to a table no step writes, or a cycle (named step by step).
    pub fn new(steps: Vec<Arc<dyn Step>>) -> Result<Pipeline> {
        let index: HashMap<TableId, usize> = steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.table().clone(), i))
            .collect();
        for s in &steps {
            for up in s.upstreams() {
                if up.layer != Layer::System && !index.contains_key(up) {
                    return Err(EngineError::UnknownTable {
                        model: s.table().to_string(),
                        table: up.to_string(),
                    });
                }
            }
        }
        let order = topo_order(&steps, &index)?;
        Ok(Pipeline {
            steps,
            index,
            order,
            tags: HashMap::new(),
        })
    }

    /// The pipeline with each table's tags (`--select tag:x`).
    #[must_use]
    pub fn with_tags(mut self, tags: HashMap<TableId, BTreeSet<String>>) -> Pipeline {
        self.tags = tags;
        self
    }

    /// The tags of `table`'s entry.
    pub fn tags(&self, table: &TableId) -> Option<&BTreeSet<String>> {
        self.tags.get(table)
    }

    /// The tables a run selects: `select` (all steps when `None`) less `exclude`, both in
    /// the `--select` syntax; `None` when neither is given (the whole DAG).
    ///
    /// # Errors
    /// An item of either that matches no step, or nothing left to run.
    pub fn selection(
        &self,
        select: Option<&str>,
        exclude: Option<&str>,
    ) -> Result<Option<BTreeSet<TableId>>> {
        if select.is_none() && exclude.is_none() {
            return Ok(None);
        }
        let mut chosen = match select {
            Some(s) => self.select(s)?,
            None => self.index.keys().cloned().collect(),
        };
        if let Some(x) = exclude {
            let out = self.select(x)?;
            chosen.retain(|t| !out.contains(t));
        }
        if chosen.is_empty() {
            let expr = match (select, exclude) {
                (Some(s), Some(x)) => format!("{s} --exclude {x}"),
                (None, Some(x)) => format!("--exclude {x}"),
                (Some(s), None) => s.to_string(),
                (None, None) => String::new(),
            };
            return Err(EngineError::EmptySelection(expr));
        }
        Ok(Some(chosen))
    }

    /// Steps in a topological order (upstreams first, ties by layer then name).
    pub fn ordered(&self) -> impl Iterator<Item = &Arc<dyn Step>> {
        self.order.iter().map(|&i| &self.steps[i])
    }

    /// The step that writes `table`.
    pub fn step(&self, table: &TableId) -> Option<&Arc<dyn Step>> {
        self.index.get(table).map(|&i| &self.steps[i])
    }

    /// Upstream tables of `table` that steps of this pipeline write.
    pub fn upstream_steps(&self, table: &TableId) -> Vec<TableId> {
        self.step(table)
            .map(|s| {
                s.upstreams()
                    .iter()
                    .filter(|u| self.index.contains_key(*u))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Tables selected by a `--select` expression: space- or comma-separated items, each a
    /// layer (`silver`), a table (`gold.daily_revenue`), a tag (`tag:nightly`: the entries
    /// with that tag), or any of them with `+` before (add upstreams) and/or after (add
    /// downstreams).
    ///
    /// # Errors
    /// An item that matches no step.
    pub fn select(&self, expr: &str) -> Result<BTreeSet<TableId>> {
        let mut out = BTreeSet::new();
        for item in expr.split([',', ' ']).filter(|s| !s.is_empty()) {
            let ups = item.starts_with('+');
            let downs = item.ends_with('+');
            let core = item.trim_matches('+');
            let matched: Vec<TableId> = if let Some(tag) = core.strip_prefix("tag:") {
                self.tags
                    .iter()
                    .filter(|(t, tags)| tags.contains(tag) && self.index.contains_key(*t))
                    .map(|(t, _)| t.clone())
                    .collect()
            } else if let Some(layer) = Layer::parse(core) {
                self.index
                    .keys()
                    .filter(|t| t.layer == layer)
                    .cloned()
                    .collect()
            } else {
                TableId::parse(core)
                    .ok()
                    .filter(|t| self.index.contains_key(t))
                    .into_iter()
                    .collect()
            };
            if matched.is_empty() {
                return Err(EngineError::EmptySelection(item.to_string()));
            }
            for t in matched {
                if ups {
                    self.walk(&t, true, &mut out);
                }
                if downs {
                    self.walk(&t, false, &mut out);
                }
                out.insert(t);
            }
        }
        Ok(out)
    }

    fn walk(&self, from: &TableId, up: bool, out: &mut BTreeSet<TableId>) {
        let next: Vec<TableId> = if up {
            self.upstream_steps(from)
        } else {
            self.steps
                .iter()
                .filter(|s| s.upstreams().contains(from))
                .map(|s| s.table().clone())
                .collect()
        };
        for t in next {
            if out.insert(t.clone()) {
                self.walk(&t, up, out);
            }
        }
    }
}

fn topo_order(steps: &[Arc<dyn Step>], index: &HashMap<TableId, usize>) -> Result<Vec<usize>> {
    // 0 = unvisited, 1 = on the stack, 2 = done
    let mut state = vec![0u8; steps.len()];
    let mut order = Vec::with_capacity(steps.len());
    let mut roots: Vec<usize> = (0..steps.len()).collect();
    roots.sort_by(|&a, &b| steps[a].table().cmp(steps[b].table()));
    for root in roots {
        let mut path = Vec::new();
        visit(root, steps, index, &mut state, &mut order, &mut path)?;
    }
    Ok(order)
}

fn visit(
    i: usize,
    steps: &[Arc<dyn Step>],
    index: &HashMap<TableId, usize>,
    state: &mut [u8],
    order: &mut Vec<usize>,
    path: &mut Vec<usize>,
) -> Result<()> {
    match state[i] {
        2 => return Ok(()),
        1 => {
            let start = path.iter().position(|&p| p == i).unwrap_or(0);
            let mut names: Vec<String> = path[start..]
                .iter()
                .map(|&p| steps[p].table().to_string())
                .collect();
            names.push(steps[i].table().to_string());
            return Err(EngineError::Cycle(names.join(" -> ")));
        }
        _ => {}
    }
    state[i] = 1;
    path.push(i);
    let mut ups: Vec<usize> = steps[i]
        .upstreams()
        .iter()
        .filter_map(|u| index.get(u).copied())
        .collect();
    ups.sort_by(|&a, &b| steps[a].table().cmp(steps[b].table()));
    for u in ups {
        visit(u, steps, index, state, order, path)?;
    }
    path.pop();
    state[i] = 2;
    order.push(i);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::step::{StepContext, StepError, StepReport};
    use async_trait::async_trait;

    #[derive(Debug)]
    struct Fake(TableId, Vec<TableId>);

    #[async_trait]
    impl Step for Fake {
        fn table(&self) -> &TableId {
            &self.0
        }
        fn upstreams(&self) -> &[TableId] {
            &self.1
        }
        async fn run(&self, _: &StepContext) -> Result<StepReport, StepError> {
            Ok(StepReport::default())
        }
    }

    fn id(s: &str) -> TableId {
        TableId::parse(s).unwrap()
    }

    fn step(t: &str, ups: &[&str]) -> Arc<dyn Step> {
        Arc::new(Fake(id(t), ups.iter().map(|u| id(u)).collect()))
    }

    #[test]
    fn references_come_from_the_parser_and_skip_ctes() {
        let refs = sql_references(
            "gold.x",
            "x.sql",
            "WITH o AS (SELECT * FROM silver.orders) \
             SELECT * FROM o JOIN silver.products p ON o.pid = p.id",
        )
        .unwrap();
        assert_eq!(refs, vec![id("silver.orders"), id("silver.products")]);
        let err = sql_references("gold.x", "x.sql", "SELECT * FROM orders").unwrap_err();
        assert!(
            err.to_string().contains("gold.x references unknown table"),
            "{err}"
        );
        let err = sql_references("gold.x", "x.sql", "SELEC 1").unwrap_err();
        assert!(err.to_string().starts_with("x.sql: invalid SQL"), "{err}");
    }

    #[test]
    fn orders_topologically_and_names_cycles() {
        let p = Pipeline::new(vec![
            step("gold.g", &["silver.s"]),
            step("silver.s", &["bronze.b"]),
            step("bronze.b", &[]),
        ])
        .unwrap();
        let order: Vec<String> = p.ordered().map(|s| s.table().to_string()).collect();
        assert_eq!(order, ["bronze.b", "silver.s", "gold.g"]);

        let err = Pipeline::new(vec![
            step("gold.a", &["gold.b"]),
            step("gold.b", &["gold.a"]),
        ])
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "dependency cycle: gold.a -> gold.b -> gold.a"
        );

        let err = Pipeline::new(vec![step("gold.a", &["silver.nope"])]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "gold.a references unknown table `silver.nope`"
        );
    }

    #[test]
    fn selects_with_upstreams_and_downstreams() {
        let p = Pipeline::new(vec![
            step("bronze.b", &[]),
            step("silver.s", &["bronze.b"]),
            step("gold.g", &["silver.s"]),
            step("gold.h", &[]),
        ])
        .unwrap();
        let names = |e: &str| -> Vec<String> {
            p.select(e)
                .unwrap()
                .into_iter()
                .map(|t| t.to_string())
                .collect()
        };
        assert_eq!(names("+gold.g"), ["bronze.b", "silver.s", "gold.g"]);
        assert_eq!(names("silver.s+"), ["silver.s", "gold.g"]);
        assert_eq!(names("gold"), ["gold.g", "gold.h"]);
        assert!(p.select("gold.zzz").is_err());
    }

    #[test]
    fn selects_by_tag_and_excludes() {
        let tags = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        let p = Pipeline::new(vec![
            step("bronze.b", &[]),
            step("silver.s", &["bronze.b"]),
            step("gold.g", &["silver.s"]),
            step("gold.h", &[]),
        ])
        .unwrap()
        .with_tags(HashMap::from([
            (
                TableId::parse("gold.g").unwrap(),
                tags(&["nightly", "finance"]),
            ),
            (TableId::parse("gold.h").unwrap(), tags(&["nightly"])),
        ]));
        let names = |select: Option<&str>, exclude: Option<&str>| -> Vec<String> {
            p.selection(select, exclude)
                .unwrap()
                .unwrap()
                .into_iter()
                .map(|t| t.to_string())
                .collect()
        };
        assert_eq!(names(Some("tag:nightly"), None), ["gold.g", "gold.h"]);
        assert_eq!(
            names(Some("+tag:finance"), None),
            ["bronze.b", "silver.s", "gold.g"]
        );
        assert_eq!(names(Some("silver+"), Some("tag:finance")), ["silver.s"]);
        assert_eq!(names(None, Some("gold")), ["bronze.b", "silver.s"]);
        assert!(p.selection(None, None).unwrap().is_none());
        let err = p.selection(Some("tag:weekly"), None).unwrap_err();
        assert_eq!(err.to_string(), "selection `tag:weekly` matches no step");
        let err = p.selection(Some("gold"), Some("gold")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "selection `gold --exclude gold` matches no step"
        );
    }
}
