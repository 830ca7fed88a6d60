//! The SQL gate: the text's size, its nesting and its plan are checked before anything
//! runs. Read-only is an allow-list on the logical plan, not on the statement's keyword.

use std::ops::ControlFlow;

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::{DFParserBuilder, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{Expr, Query, SetExpr, Visit, Visitor};
use datafusion::sql::sqlparser::parser::ParserError;

use super::QueryError;

/// Limits on the SQL text, checked before it is planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqlLimits {
    /// Bytes of SQL text (`[query] max_sql_bytes`).
    pub max_bytes: usize,
    /// Nesting of expressions, subqueries and chained set operations (`[query] max_depth`).
    pub max_depth: usize,
}

impl Default for SqlLimits {
    fn default() -> Self {
        SqlLimits {
            max_bytes: 64 * 1024,
            max_depth: 256,
        }
    }
}

/// Refuses SQL text longer than `[query] max_sql_bytes`, before anything reads it.
///
/// # Errors
/// [`QueryError::Limit`] naming the limit.
pub fn check_size(sql: &str, limits: SqlLimits) -> Result<(), QueryError> {
    if sql.len() > limits.max_bytes {
        return Err(QueryError::Limit(format!(
            "the SQL text has {} bytes, more than `[query] max_sql_bytes` = {}",
            sql.len(),
            limits.max_bytes
        )));
    }
    Ok(())
}

/// Parses one statement within the limits.
///
/// # Errors
/// [`QueryError::Limit`] naming the limit, [`QueryError::InvalidSql`] for SQL that does not
/// parse or holds several statements.
pub fn parse(sql: &str, limits: SqlLimits) -> Result<DfStatement, QueryError> {
    check_size(sql, limits)?;
    let mut statements = DFParserBuilder::new(sql)
        .with_recursion_limit(limits.max_depth)
        .build()
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| {
            if matches!(
                e.find_root(),
                DataFusionError::SQL(err, _) if matches!(**err, ParserError::RecursionLimitExceeded)
            ) {
                QueryError::Limit(format!(
                    "the SQL nests deeper than `[query] max_depth` = {}",
                    limits.max_depth
                ))
            } else {
                QueryError::InvalidSql(e.to_string())
            }
        })?;
    let count = statements.len();
    let (Some(statement), 1) = (statements.pop_front(), count) else {
        return Err(QueryError::InvalidSql(format!(
            "expected one statement, found {count}"
        )));
    };
    check_depth(&statement, limits.max_depth)?;
    Ok(statement)
}

/// Refuses a statement whose expressions, subqueries or set operations nest deeper than
/// `max`; the walk stops at the limit, so it never recurses further than that.
fn check_depth(statement: &DfStatement, max: usize) -> Result<(), QueryError> {
    let inner = match statement {
        DfStatement::Statement(s) => s.as_ref(),
        DfStatement::Explain(e) => return check_depth(&e.statement, max),
        // Other statements (CREATE EXTERNAL TABLE, COPY, RESET) are refused by the plan check.
        _ => return Ok(()),
    };
    let mut meter = Depth {
        depth: 0,
        max,
        stack: Vec::new(),
    };
    match inner.visit(&mut meter) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(Refusal::TooDeep) => Err(QueryError::Limit(format!(
            "the SQL nests deeper than `[query] max_depth` = {max}"
        ))),
        ControlFlow::Break(Refusal::Writes) => Err(QueryError::ReadOnly(
            "only queries are allowed here (SELECT, WITH, VALUES, EXPLAIN); the statement \
             writes (INSERT, UPDATE, DELETE or MERGE inside a query)"
                .into(),
        )),
    }
}

/// Measures nesting while sqlparser walks the statement.
struct Depth {
    depth: usize,
    max: usize,
    /// What each query added on entry, taken back on exit.
    stack: Vec<usize>,
}

/// Why the walk stopped.
enum Refusal {
    /// Past `max_depth`.
    TooDeep,
    /// A query whose body writes (`WITH ... INSERT`), which the planner may not plan at
    /// all: refused as a write, not as unsupported SQL.
    Writes,
}

impl Depth {
    fn enter(&mut self, n: usize) -> ControlFlow<Refusal> {
        self.depth += n;
        if self.depth > self.max {
            ControlFlow::Break(Refusal::TooDeep)
        } else {
            ControlFlow::Continue(())
        }
    }
}

/// How many set operations are chained under a query body (`a UNION b UNION c` is 2),
/// counted by a loop down the left-deep chain.
fn chain_len(body: &SetExpr) -> usize {
    let mut n = 0;
    let mut at = body;
    while let SetExpr::SetOperation { left, .. } = at {
        n += 1;
        at = left;
    }
    n
}

impl Visitor for Depth {
    type Break = Refusal;

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<Refusal> {
        if matches!(
            *query.body,
            SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_)
        ) {
            return ControlFlow::Break(Refusal::Writes);
        }
        let n = 1 + chain_len(&query.body);
        self.stack.push(n);
        self.enter(n)
    }

    fn post_visit_query(&mut self, _query: &Query) -> ControlFlow<Refusal> {
        self.depth -= self.stack.pop().unwrap_or(0);
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<Refusal> {
        self.enter(1)
    }

    fn post_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<Refusal> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }
}

/// The one read-only rule: every node of the logical plan, subqueries included, is a
/// read operator. DDL (also `SELECT ... INTO`, planned as a memory table), DML, `COPY`,
/// `SET` and extension nodes are refused whatever keyword the statement starts with.
///
/// # Errors
/// [`QueryError::ReadOnly`] naming the operator.
pub fn check_plan(plan: &LogicalPlan) -> Result<(), QueryError> {
    let mut refused: Option<String> = None;
    plan.apply_with_subqueries(|node| {
        if is_read(node) {
            Ok(TreeNodeRecursion::Continue)
        } else {
            refused = Some(operator(node));
            Ok(TreeNodeRecursion::Stop)
        }
    })
    .map_err(QueryError::from_datafusion)?;
    match refused {
        None => Ok(()),
        Some(op) => Err(QueryError::ReadOnly(format!(
            "only queries are allowed here (SELECT, WITH, VALUES, EXPLAIN); the statement \
             would {op}"
        ))),
    }
}

/// Whether a plan node only reads.
fn is_read(node: &LogicalPlan) -> bool {
    matches!(
        node,
        LogicalPlan::Projection(_)
            | LogicalPlan::Filter(_)
            | LogicalPlan::Window(_)
            | LogicalPlan::Aggregate(_)
            | LogicalPlan::Sort(_)
            | LogicalPlan::Join(_)
            | LogicalPlan::Repartition(_)
            | LogicalPlan::Union(_)
            | LogicalPlan::TableScan(_)
            | LogicalPlan::EmptyRelation(_)
            | LogicalPlan::Subquery(_)
            | LogicalPlan::SubqueryAlias(_)
            | LogicalPlan::Limit(_)
            | LogicalPlan::Values(_)
            | LogicalPlan::Explain(_)
            | LogicalPlan::Analyze(_)
            | LogicalPlan::Distinct(_)
            | LogicalPlan::Unnest(_)
            | LogicalPlan::RecursiveQuery(_)
            | LogicalPlan::DescribeTable(_)
    )
}

/// What a refused node would do, for the error.
fn operator(node: &LogicalPlan) -> String {
    match node {
        LogicalPlan::Ddl(d) => format!("change the catalog ({})", d.name()),
        LogicalPlan::Dml(d) => format!("write to {} ({})", d.table_name, d.op),
        LogicalPlan::Copy(_) => "write files (COPY)".to_string(),
        LogicalPlan::Statement(s) => format!("change the session ({})", s.name()),
        LogicalPlan::Extension(e) => format!("run the extension node {}", e.node.name()),
        other => format!("run {}", other.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(terms: usize) -> String {
        format!("SELECT {}", vec!["1"; terms].join("+"))
    }

    #[test]
    fn long_or_deep_sql_is_refused_naming_the_limit() {
        let limits = SqlLimits::default();
        assert!(parse(&sum(200), limits).is_ok());
        let deep = parse(&sum(2000), limits).unwrap_err();
        assert!(matches!(deep, QueryError::Limit(_)), "{deep}");
        assert!(deep.to_string().contains("[query] max_depth"), "{deep}");
        let nested = format!("SELECT {}1{}", "(".repeat(500), ")".repeat(500));
        let err = parse(&nested, limits).unwrap_err();
        assert!(err.to_string().contains("[query] max_depth"), "{err}");
        let unions = vec!["SELECT 1"; 300].join(" UNION ALL ");
        let err = parse(&unions, limits).unwrap_err();
        assert!(err.to_string().contains("[query] max_depth"), "{err}");
        let long = format!("SELECT '{}'", "x".repeat(70_000));
        let err = parse(&long, limits).unwrap_err();
        assert!(err.to_string().contains("[query] max_sql_bytes"), "{err}");
        assert!(matches!(
            parse("SELECT 1; SELECT 2", limits),
            Err(QueryError::InvalidSql(_))
        ));
        assert!(matches!(
            parse("SELEC 1", limits),
            Err(QueryError::InvalidSql(_))
        ));
    }

    #[test]
    fn a_wide_but_shallow_query_passes() {
        let cols: Vec<String> = (0..2000).map(|i| format!("{i} AS c{i}")).collect();
        assert!(parse(&format!("SELECT {}", cols.join(", ")), SqlLimits::default()).is_ok());
    }

    /// Random statements from SQL's special tokens: the gate answers every one with a
    /// result (never a panic or a stack overflow), within a bounded run.
    #[test]
    fn random_sql_never_panics_the_gate() {
        let alphabet = [
            "SELECT", "1", "+", "(", ")", "WITH", "a", "AS", "INSERT", "INTO", "t", "VALUES",
            "UNION", "ALL", "FROM", "WHERE", "NOT", "-", "*", ",", "'x'", "CASE", "WHEN", "THEN",
            "END", "[", "]", "::", "int", ";", "EXPLAIN", "SET", "=", "OR", "AND", "IN", "EXISTS",
            "\"q\"", "$1", "?", "/*", "*/", "--", "\n",
        ];
        let limits = SqlLimits::default();
        // Mostly short statements, one in ten long enough to meet the depth and size limits.
        let sql = proptest::prop_oneof![
            9 => crate::fuzz::pieces(&alphabet, 1..41, " "),
            1 => crate::fuzz::pieces(&alphabet, 1..3001, " "),
        ];
        crate::fuzz::check(3000, sql, |sql| {
            let _ = parse(&sql, limits);
            Ok(())
        })
        .unwrap();
    }
}
