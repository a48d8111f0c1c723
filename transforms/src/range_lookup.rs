//! Drops a left join to a table of ranges when nothing above reads it.
//!
//! `model_calls` prices each call with a LEFT JOIN to the price ranges built
//! from `model_prices` with `LEAD(effective_from) OVER (PARTITION BY model
//! ORDER BY effective_from)`. Analysts' queries over `model_calls` mostly
//! read tokens, latency or status, not cost; DataFusion still runs the join,
//! because in general a left join can repeat a left row once per match. For
//! this shape it cannot:
//!
//! - the join's equality puts each left row in one window partition (the
//!   prices of its model);
//! - inside a partition, the ranges `[X, LEAD(X))` over the rows ordered by
//!   `X` ascending are disjoint: each range ends where the next begins, a
//!   range between two equal values is empty, and the last one runs to
//!   infinity from the greatest value; a row whose `X` is NULL matches
//!   nothing, since `L >= NULL` is never true;
//! - the join's filter holds `L >= X AND (LEAD(X) IS NULL OR L < LEAD(X))`
//!   for one left expression `L` (not volatile, so the same value in both),
//!   so a left row meets at most one range; any other condition in the
//!   filter only removes matches.
//!
//! So each left row comes out exactly once, matched or not, and a projection
//! or aggregate that reads only left columns gives the same rows over the
//! left input alone. [`DropUnreadRangeLookup`] makes that replacement; it
//! proves the shape from the plan (the window's partition, order, function
//! and the join's conditions), not from table or column names, and leaves
//! every other join alone. This is the price join of every query over
//! `model_calls` that reads no cost column.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, Result};
use datafusion::functions_window::lead_lag::{WindowShift, WindowShiftKind};
use datafusion::logical_expr::expr::{Alias, WindowFunction};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    BinaryExpr, Expr, Join, JoinType, LogicalPlan, Operator, Window, WindowFunctionDefinition,
};
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
use datafusion::scalar::ScalarValue;

/// The logical optimizer rule (see the module). Runs after DataFusion's own
/// rules, bottom up: a projection or aggregate whose input is such a join
/// and which reads no column of the join's right side is put over the left
/// side instead.
#[derive(Debug, Default)]
pub struct DropUnreadRangeLookup;

impl OptimizerRule for DropUnreadRangeLookup {
    fn name(&self) -> &str {
        "drop_unread_range_lookup"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let join = match &plan {
            LogicalPlan::Projection(p) => match p.input.as_ref() {
                LogicalPlan::Join(join) => join,
                _ => return Ok(Transformed::no(plan)),
            },
            LogicalPlan::Aggregate(a) => match a.input.as_ref() {
                LogicalPlan::Join(join) => join,
                _ => return Ok(Transformed::no(plan)),
            },
            _ => return Ok(Transformed::no(plan)),
        };
        let exprs = plan.expressions();
        let reads_right = exprs.iter().any(|e| {
            e.column_refs()
                .into_iter()
                .any(|c| !join.left.schema().has_column(c))
        });
        if reads_right || !at_most_one_match(join) {
            return Ok(Transformed::no(plan));
        }
        let left = LogicalPlan::clone(&join.left);
        Ok(Transformed::yes(plan.with_new_exprs(exprs, vec![left])?))
    }
}

/// Whether every left row of `join` meets at most one right row (the shape
/// the module describes).
fn at_most_one_match(join: &Join) -> bool {
    if join.join_type != JoinType::Left || join.null_aware {
        return false;
    }
    let Some(filter) = &join.filter else {
        return false;
    };
    let conjuncts = split_conjunction(filter);
    let left_only = |e: &Expr| {
        e.column_refs()
            .into_iter()
            .all(|c| join.left.schema().has_column(c))
    };
    // The join's right keys, each traced to the window it passes through.
    for (left_key, right_key) in &join.on {
        if !left_only(left_key) {
            continue;
        }
        let Some(right_key) = right_key.try_as_col() else {
            continue;
        };
        let Some(Source::Passed(window, key)) = source(&join.right, right_key) else {
            continue;
        };
        // A lower bound `L >= X` and an upper bound `U IS NULL OR L < U`,
        // X passed through that window and U its LEAD of X by the key.
        for lower in &conjuncts {
            let Some((bound, x)) = at_least(lower) else {
                continue;
            };
            // Evaluated once per bound: a volatile L (random()) could
            // differ between the two and meet two ranges.
            if !left_only(bound) || bound.is_volatile() {
                continue;
            }
            let Some(Source::Passed(w, x)) = source(&join.right, x) else {
                continue;
            };
            if !std::ptr::eq(w, window) {
                continue;
            }
            let upper_found = conjuncts.iter().any(|upper| {
                let Some(u) = below_or_open(upper, bound) else {
                    return false;
                };
                matches!(
                    source(&join.right, u),
                    Some(Source::Computed(w, f)) if std::ptr::eq(w, window) && is_next_of(f, &x, &key)
                )
            });
            if upper_found {
                return true;
            }
        }
    }
    false
}

/// Where a column of a plan's output comes from, followed down through
/// aliases, plain column projections and filters to the first window.
enum Source<'a> {
    /// The column of the window's input, passed through unchanged.
    Passed(&'a Window, Column),
    /// The value of one of the window's functions.
    Computed(&'a Window, &'a WindowFunction),
}

fn source<'a>(plan: &'a LogicalPlan, column: &Column) -> Option<Source<'a>> {
    let index = plan.schema().maybe_index_of_column(column)?;
    match plan {
        LogicalPlan::SubqueryAlias(alias) => {
            let below = Column::from(alias.input.schema().qualified_field(index));
            source(&alias.input, &below)
        }
        LogicalPlan::Projection(projection) => {
            let below = unaliased(projection.expr.get(index)?).try_as_col()?;
            source(&projection.input, below)
        }
        LogicalPlan::Filter(filter) => source(&filter.input, column),
        LogicalPlan::Window(window) => {
            let passed = window.input.schema().fields().len();
            if index < passed {
                let below = Column::from(window.input.schema().qualified_field(index));
                return Some(Source::Passed(window, below));
            }
            match unaliased(window.window_expr.get(index - passed)?) {
                Expr::WindowFunction(function) => Some(Source::Computed(window, function)),
                _ => None,
            }
        }
        _ => None,
    }
}

fn unaliased(expr: &Expr) -> &Expr {
    match expr {
        Expr::Alias(Alias { expr, .. }) => unaliased(expr),
        other => other,
    }
}

/// `L >= X` or `X <= L` with X a column: (L, X).
fn at_least(expr: &Expr) -> Option<(&Expr, &Column)> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = expr else {
        return None;
    };
    match op {
        Operator::GtEq => Some((left, right.try_as_col()?)),
        Operator::LtEq => Some((right, left.try_as_col()?)),
        _ => None,
    }
}

/// `U IS NULL OR bound < U` (either order of the two, `U > bound` too):
/// the column U.
fn below_or_open<'a>(expr: &'a Expr, bound: &Expr) -> Option<&'a Column> {
    let Expr::BinaryExpr(BinaryExpr {
        left,
        op: Operator::Or,
        right,
    }) = expr
    else {
        return None;
    };
    let (open, below) = match left.as_ref() {
        Expr::IsNull(_) => (left.as_ref(), right.as_ref()),
        _ => (right.as_ref(), left.as_ref()),
    };
    let Expr::IsNull(open) = open else {
        return None;
    };
    let u = open.try_as_col()?;
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = below else {
        return None;
    };
    let (lesser, greater) = match op {
        Operator::Lt => (left.as_ref(), right.as_ref()),
        Operator::Gt => (right.as_ref(), left.as_ref()),
        _ => return None,
    };
    (lesser == bound && greater.try_as_col() == Some(u)).then_some(u)
}

/// Whether `function` is `LEAD(x)` (offset 1, no default) over the window
/// `PARTITION BY key ORDER BY x ASC`, with no filter and no DISTINCT.
fn is_next_of(function: &WindowFunction, x: &Column, key: &Column) -> bool {
    let WindowFunctionDefinition::WindowUDF(udf) = &function.fun else {
        return false;
    };
    let is_lead = udf
        .inner()
        .downcast_ref::<WindowShift>()
        .is_some_and(|shift| *shift.kind() == WindowShiftKind::Lead);
    let params = &function.params;
    let column = |e: &Expr, c: &Column| e.try_as_col() == Some(c);
    let literal_is = |e: Option<&Expr>, ok: &dyn Fn(&ScalarValue) -> bool| match e {
        None => true,
        Some(Expr::Literal(value, _)) => ok(value),
        Some(_) => false,
    };
    is_lead
        && params.args.first().is_some_and(|a| column(a, x))
        && params.args.len() <= 3
        && literal_is(params.args.get(1), &|v| {
            v.is_null() || matches!(v.cast_to(&DataType::Int64), Ok(ScalarValue::Int64(Some(1))))
        })
        && literal_is(params.args.get(2), &ScalarValue::is_null)
        && params.partition_by.len() == 1
        && column(&params.partition_by[0], key)
        && params.order_by.len() == 1
        && params.order_by[0].asc
        && column(&params.order_by[0].expr, x)
        && params.filter.is_none()
        && !params.distinct
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::common::tree_node::TreeNode;
    use datafusion::datasource::MemTable;
    use datafusion::execution::session_state::SessionStateBuilder;
    use datafusion::prelude::SessionContext;

    use super::*;

    /// Calls with a key and a day, ranges with a key, a start and a value:
    /// keys and starts with NULLs and repeats, from a fixed-seed generator.
    fn tables() -> (RecordBatch, RecordBatch) {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let key = |n: u64| (n < 4).then(|| format!("k{n}"));
        let (mut ids, mut call_keys, mut days) = (vec![], vec![], vec![]);
        for id in 0..600 {
            ids.push(id);
            call_keys.push(key(next(5)));
            days.push((next(10) > 0).then(|| next(40) as i64));
        }
        let (mut range_keys, mut starts, mut values) = (vec![], vec![], vec![]);
        for v in 0..40 {
            range_keys.push(key(next(5)));
            starts.push((next(8) > 0).then(|| next(30) as i64));
            values.push(v);
        }
        let batch = |columns: Vec<(&str, ArrayRef)>| RecordBatch::try_from_iter(columns).unwrap();
        let calls = batch(vec![
            ("id", Arc::new(Int64Array::from(ids))),
            ("k", Arc::new(StringArray::from(call_keys))),
            ("d", Arc::new(Int64Array::from(days))),
        ]);
        let ranges = batch(vec![
            ("k", Arc::new(StringArray::from(range_keys))),
            ("x", Arc::new(Int64Array::from(starts))),
            ("v", Arc::new(Int64Array::from(values))),
        ]);
        (calls, ranges)
    }

    fn session(with_rule: bool) -> SessionContext {
        let mut state = SessionStateBuilder::new().with_default_features();
        if with_rule {
            state = state.with_optimizer_rule(Arc::new(DropUnreadRangeLookup));
        }
        let ctx = SessionContext::new_with_state(state.build());
        let (calls, ranges) = tables();
        for (name, batch) in [("calls", calls), ("ranges", ranges)] {
            let table = MemTable::try_new(batch.schema(), vec![vec![batch]]).unwrap();
            ctx.register_table(name, Arc::new(table)).unwrap();
        }
        ctx
    }

    /// Whether the optimized plan still joins, and the answer as text.
    async fn run(ctx: &SessionContext, sql: &str) -> (bool, String) {
        let df = ctx.sql(sql).await.unwrap();
        let plan = df.clone().into_optimized_plan().unwrap();
        let joins = plan
            .exists(|p| Ok(matches!(p, LogicalPlan::Join(_))))
            .unwrap();
        let text = pretty_format_batches(&df.collect().await.unwrap())
            .unwrap()
            .to_string();
        (joins, text)
    }

    /// `ranges` as LEAD ranges by key, OVER clause and LEAD arguments
    /// given, joined to `calls` with the given ON clause; `select` is the
    /// select list, then after a `|` what follows the join.
    fn lookup(over: &str, lead: &str, on: &str, select: &str) -> String {
        let (columns, rest) = select.split_once('|').unwrap_or((select, ""));
        format!(
            "WITH r AS (SELECT k, x, v, LEAD({lead}) OVER ({over}) AS u FROM ranges) \
             SELECT {columns} FROM calls c LEFT JOIN r ON {on} {rest}"
        )
    }

    const OVER: &str = "PARTITION BY k ORDER BY x";
    const ON: &str = "r.k = c.k AND c.d >= r.x AND (r.u IS NULL OR c.d < r.u)";

    #[tokio::test]
    async fn a_range_lookup_no_one_reads_is_dropped_with_the_same_answer() {
        let (with, without) = (session(true), session(false));
        for select in [
            "c.id, c.k, c.d | ORDER BY c.id",
            "c.k, count(*) AS n, sum(c.d) AS days | GROUP BY c.k ORDER BY c.k",
            "count(*) AS n",
        ] {
            for on in [
                ON,
                // The same conditions spelled the other way round, and one
                // more condition, which only removes matches.
                "c.k = r.k AND r.x <= c.d AND (r.u > c.d OR r.u IS NULL)",
                "r.k = c.k AND c.d >= r.x AND (r.u IS NULL OR c.d < r.u) AND r.v > 3",
            ] {
                let sql = lookup(OVER, "x", on, select);
                let (joins, answer) = run(&with, &sql).await;
                assert!(!joins, "dropped: {sql}");
                assert_eq!((true, answer), run(&without, &sql).await, "{sql}");
            }
        }
        // The data has calls that meet a range, and keys with several.
        let matched = "SELECT count(*) FROM calls c JOIN \
            (SELECT k, x, LEAD(x) OVER (PARTITION BY k ORDER BY x) AS u FROM ranges) r \
            ON r.k = c.k AND c.d >= r.x AND (r.u IS NULL OR c.d < r.u)";
        let (_, n) = run(&without, matched).await;
        assert!(!n.contains("| 0 "), "{n}");
    }

    #[tokio::test]
    async fn a_join_that_can_repeat_rows_or_is_read_is_kept() {
        let ctx = session(true);
        let select = "count(*) AS n";
        for sql in [
            // A right column is read.
            lookup(OVER, "x", ON, "count(r.v) AS n"),
            // Partitions other than the join key overlap.
            lookup("PARTITION BY v ORDER BY x", "x", ON, select),
            lookup("ORDER BY x", "x", ON, select),
            // Not the next start: ranges overlap.
            lookup(OVER, "x, 2", ON, select),
            lookup(OVER, "v", ON, select),
            lookup("PARTITION BY k ORDER BY v", "x", ON, select),
            lookup(OVER, "x, 1, 100", ON, select),
            // No upper bound, or bounds on different left values.
            lookup(OVER, "x", "r.k = c.k AND c.d >= r.x", select),
            lookup(
                OVER,
                "x",
                "r.k = c.k AND c.d >= r.x AND (r.u IS NULL OR c.id < r.u)",
                select,
            ),
            lookup(
                OVER,
                "x",
                "r.k = c.k AND c.d >= r.x AND (r.u IS NULL OR c.d <= r.u)",
                select,
            ),
            // A bound that is not the same value twice.
            lookup(
                OVER,
                "x",
                "r.k = c.k AND c.d + CAST(random() * 3 AS BIGINT) >= r.x \
                 AND (r.u IS NULL OR c.d + CAST(random() * 3 AS BIGINT) < r.u)",
                select,
            ),
            // No equality on the partition key.
            lookup(
                OVER,
                "x",
                "c.d >= r.x AND (r.u IS NULL OR c.d < r.u)",
                select,
            ),
            // An inner join drops unmatched calls.
            lookup(OVER, "x", ON, select).replace("LEFT JOIN", "JOIN"),
        ] {
            let (joins, _) = run(&ctx, &sql).await;
            assert!(joins, "kept: {sql}");
        }
    }
}
