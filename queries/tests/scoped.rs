//! A session scoped to tenants (the SQL server's `tenant` users, SPEC
//! section 9) answers, for every table and view with a `tenant_id`, exactly
//! what the unscoped session answers for those tenants: on generated data
//! with bad lines, repeats and events in two ingests with a rebuild of the
//! run parts between them (so `runs` merges stored parts with parts
//! computed from the newer events). Its scans keep the
//! user's predicates above the tenant filter, and the quarantine is
//! visible only to the scope that sees everything.

use agentledger_ingest::ingest::{IngestOptions, ingest};
use agentledger_ingest::reference::{ReferenceKind, load_reference};
use agentledger_ingest::sampler::{SampleOptions, generate};
use agentledger_lake::Lake;
use agentledger_lake::log::Snapshot;
use agentledger_queries::{Scope, Strings, open_session_scoped};
use datafusion::prelude::SessionContext;

async fn text(ctx: &SessionContext, sql: &str) -> String {
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string()
}

async fn names(ctx: &SessionContext, sql: &str) -> Vec<String> {
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    let mut out = Vec::new();
    for b in &batches {
        let col = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8).unwrap();
        let col = col
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap();
        out.extend(col.iter().map(|v| v.unwrap_or("").to_string()));
    }
    out
}

/// A table's columns that can be ordered by, as a comma list: every column
/// in a fixed order, so that texts of whole tables compare.
async fn sortable_columns(ctx: &SessionContext, table: &str) -> String {
    names(
        ctx,
        &format!(
            "SELECT column_name FROM information_schema.columns \
             WHERE table_name = '{table}' AND table_schema = 'public' \
             AND data_type NOT LIKE 'List%' AND data_type NOT LIKE 'Struct%' \
             AND data_type NOT LIKE 'Map%'"
        ),
    )
    .await
    .join(", ")
}

async fn sample_lake(dir: &std::path::Path) -> Lake {
    let sample = dir.join("sample");
    let summary = generate(
        &sample,
        &SampleOptions {
            runs: 600,
            ..SampleOptions::default()
        },
    )
    .unwrap();
    let lake = Lake::open(dir.join("lake").to_str().unwrap()).unwrap();
    for (kind, file) in [
        (ReferenceKind::Prices, "model_prices.csv"),
        (ReferenceKind::Plans, "customer_plans.csv"),
        (ReferenceKind::Policies, "workflow_policies.csv"),
    ] {
        load_reference(&lake, kind, &sample.join(file))
            .await
            .unwrap();
    }
    // Two ingests: the first half of the lines, then the rest.
    let events = summary
        .files
        .iter()
        .find(|f| f.extension().is_some_and(|e| e == "ndjson"))
        .unwrap();
    let lines: Vec<String> = std::fs::read_to_string(events)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let (first, second) = lines.split_at(lines.len() / 2);
    for (i, part) in [first, second].iter().enumerate() {
        let path = dir.join(format!("part-{i}.ndjson"));
        std::fs::write(&path, part.join("\n")).unwrap();
        ingest(
            &lake,
            &[path.display().to_string()],
            &IngestOptions::default(),
            None,
        )
        .await
        .unwrap();
        if i == 0 {
            agentledger_queries::refresh_runs(&lake).await.unwrap();
        }
    }
    let snapshot = Snapshot::load(&lake).await.unwrap();
    let coverage = snapshot.run_coverage(agentledger_transforms::definitions());
    assert!(
        !coverage.parts.is_empty() && !coverage.uncovered_events.is_empty(),
        "stored parts, and events no part covers yet"
    );
    lake
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_scope_sees_exactly_its_rows_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let lake = sample_lake(dir.path()).await;
    let snapshot = Snapshot::load(&lake).await.unwrap();
    let all = open_session_scoped(&lake, &snapshot, &Scope::everything(), Strings::Utf8)
        .await
        .unwrap();
    let tenants = names(&all, "SELECT DISTINCT tenant_id FROM events ORDER BY 1").await;
    assert!(tenants.len() >= 3, "{tenants:?}");
    let tables = names(
        &all,
        "SELECT DISTINCT table_name FROM information_schema.columns \
         WHERE column_name = 'tenant_id' AND table_schema = 'public' ORDER BY 1",
    )
    .await;
    for expected in [
        "events",
        "runs",
        "metrics",
        "margin",
        "readiness_runs",
        "customer_plans",
    ] {
        assert!(
            tables.iter().any(|t| t == expected),
            "{expected} in {tables:?}"
        );
    }
    // Two tenants at once, and one alone.
    for scope_tenants in [
        vec![tenants[0].clone(), tenants[2].clone()],
        vec![tenants[1].clone()],
    ] {
        let scope = Scope::tenants(scope_tenants.clone());
        // As the SQL server opens it: string columns as views, compared
        // with the Utf8 session's text.
        let scoped = open_session_scoped(&lake, &snapshot, &scope, Strings::Views)
            .await
            .unwrap();
        let list = scope_tenants
            .iter()
            .map(|t| format!("'{t}'"))
            .collect::<Vec<_>>()
            .join(", ");
        for table in &tables {
            if table == "quarantine" {
                continue;
            }
            let columns = sortable_columns(&all, table).await;
            let wildcard = if table == "workflow_policies" {
                ", '*'"
            } else {
                ""
            };
            let want = text(
                &all,
                &format!(
                    "SELECT {columns} FROM {table} WHERE tenant_id IN ({list}{wildcard}) ORDER BY {columns}"
                ),
            )
            .await;
            let got = text(
                &scoped,
                &format!("SELECT {columns} FROM {table} ORDER BY {columns}"),
            )
            .await;
            assert_eq!(got, want, "{table} for {scope_tenants:?}");
        }
        let count = |ctx: SessionContext, sql: String| async move { names(&ctx, &sql).await };
        assert_eq!(
            count(scoped.clone(), "SELECT count(*) FROM events".into()).await,
            count(
                all.clone(),
                format!("SELECT count(*) FROM events WHERE tenant_id IN ({list})")
            )
            .await,
            "a count is not answered from file statistics"
        );
        assert!(scoped.table("quarantine").await.is_err());
    }
    assert!(all.table("quarantine").await.is_ok());
    let analyst = open_session_scoped(&lake, &snapshot, &Scope::all_tenants(), Strings::Utf8)
        .await
        .unwrap();
    assert!(analyst.table("quarantine").await.is_err());
    assert_eq!(
        text(&analyst, "SELECT count(*) FROM runs").await,
        text(&all, "SELECT count(*) FROM runs").await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_predicate_runs_only_on_the_scopes_rows() {
    let dir = tempfile::tempdir().unwrap();
    let lake = sample_lake(dir.path()).await;
    let snapshot = Snapshot::load(&lake).await.unwrap();
    let scoped = open_session_scoped(
        &lake,
        &snapshot,
        &Scope::tenants(["acme".to_string()]),
        Strings::Utf8,
    )
    .await
    .unwrap();
    // Pushed into the Parquet reader beside the tenant filter, this cast
    // could run first on another tenant's run id and quote it in its error.
    let plan = text(
        &scoped,
        "EXPLAIN SELECT * FROM events WHERE CAST(run_id AS INT) = 1",
    )
    .await;
    let scans: Vec<&str> = plan
        .lines()
        .filter(|l| l.contains("DataSourceExec"))
        .collect();
    assert!(!scans.is_empty(), "{plan}");
    for scan in scans {
        assert!(
            !scan.contains("run_id@"),
            "the user's predicate reached the scan: {scan}"
        );
    }
    assert!(plan.contains("ScopeBarrierExec"), "{plan}");
}

/// Every table and view, and queries analysts run (group-bys on strings,
/// `to_char`, a join of `runs` to `model_calls`, filters on a tenant and a
/// run), give the same text whether the stored tables' strings are Arrow
/// `Utf8` or string views (`agentledger sql` and the SQL server use views).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn string_views_answer_exactly_what_utf8_answers() {
    let dir = tempfile::tempdir().unwrap();
    let lake = sample_lake(dir.path()).await;
    let snapshot = Snapshot::load(&lake).await.unwrap();
    let plain = open_session_scoped(&lake, &snapshot, &Scope::everything(), Strings::Utf8)
        .await
        .unwrap();
    let views = agentledger_queries::open_analyst_session(&lake)
        .await
        .unwrap();
    let types = "SELECT data_type FROM information_schema.columns \
                 WHERE table_name = 'events' AND column_name = 'tenant_id'";
    assert_eq!(names(&plain, types).await, ["Utf8"]);
    assert_eq!(names(&views, types).await, ["Utf8View"]);

    let tables = names(
        &plain,
        "SELECT DISTINCT table_name FROM information_schema.columns \
         WHERE table_schema = 'public' ORDER BY 1",
    )
    .await;
    assert!(tables.len() >= 15, "{tables:?}");
    for table in &tables {
        let columns = sortable_columns(&plain, table).await;
        let sql = format!("SELECT {columns} FROM {table} ORDER BY {columns}");
        assert_eq!(
            text(&views, &sql).await,
            text(&plain, &sql).await,
            "{table}"
        );
    }
    let tenant = names(
        &plain,
        "SELECT tenant_id FROM events GROUP BY tenant_id ORDER BY count(*) DESC, tenant_id LIMIT 1",
    )
    .await
    .remove(0);
    let run = names(
        &plain,
        &format!(
            "SELECT run_id FROM events WHERE tenant_id = '{tenant}' \
             GROUP BY run_id ORDER BY count(*) DESC, run_id LIMIT 1"
        ),
    )
    .await
    .remove(0);
    for sql in [
        "SELECT tenant_id, date, count(*) AS n FROM events GROUP BY tenant_id, date ORDER BY 1, 2".to_string(),
        "SELECT tenant_id, to_char(date, '%Y-%m') AS month, count(*), sum(input_tokens), sum(cost_usd) \
         FROM model_calls GROUP BY 1, 2 ORDER BY 1, 2"
            .to_string(),
        "SELECT model, cost_source, count(*), max(latency_ms), sum(CASE WHEN cache_hit THEN 1 ELSE 0 END) \
         FROM model_calls GROUP BY 1, 2 ORDER BY 1, 2"
            .to_string(),
        "SELECT tool, status, count(*), sum(latency_ms) FROM tool_calls GROUP BY 1, 2 ORDER BY 1, 2".to_string(),
        format!(
            "SELECT run_id, count(*) AS n FROM events WHERE tenant_id = '{tenant}' \
             GROUP BY run_id ORDER BY n DESC, run_id LIMIT 20"
        ),
        format!(
            "SELECT event_type, count(*) FROM events WHERE tenant_id = '{tenant}' AND run_id = '{run}' \
             GROUP BY 1 ORDER BY 1"
        ),
        "SELECT workflow, outcome, count(*) FROM runs GROUP BY 1, 2 ORDER BY 1, 2 NULLS FIRST".to_string(),
        "SELECT r.tenant_id, r.run_id, r.workflow, sum(m.input_tokens + m.output_tokens) AS tokens \
         FROM runs r JOIN model_calls m ON m.tenant_id = r.tenant_id AND m.run_id = r.run_id \
         GROUP BY 1, 2, 3 ORDER BY tokens DESC, 1, 2 LIMIT 25"
            .to_string(),
        "SELECT e.tenant_id, p.effective_from, count(*) FROM events e JOIN customer_plans p ON p.tenant_id = e.tenant_id \
         GROUP BY 1, 2 ORDER BY 1, 2"
            .to_string(),
        "SELECT upper(tenant_id) || '/' || substr(run_id, 1, 4) AS k, count(*) FROM events \
         WHERE event_type LIKE 'tool%' GROUP BY 1 ORDER BY 1"
            .to_string(),
    ] {
        assert_eq!(text(&views, &sql).await, text(&plain, &sql).await, "{sql}");
    }
}

/// The joins in a query's optimized plan.
async fn joins(ctx: &SessionContext, sql: &str) -> usize {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::LogicalPlan;
    let plan = ctx.sql(sql).await.unwrap().into_optimized_plan().unwrap();
    let mut joins = 0;
    plan.apply(|p| {
        joins += usize::from(matches!(p, LogicalPlan::Join(_)));
        Ok(TreeNodeRecursion::Continue)
    })
    .unwrap();
    joins
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_calls_read_without_cost_skip_the_price_join_with_the_same_answers() {
    let dir = tempfile::tempdir().unwrap();
    let lake = sample_lake(dir.path()).await;
    let snapshot = Snapshot::load(&lake).await.unwrap();
    let everything = Scope::everything();
    let open = || open_session_scoped(&lake, &snapshot, &everything, Strings::Utf8);
    let (with, without) = (open().await.unwrap(), open().await.unwrap());
    assert!(without.remove_optimizer_rule("drop_unread_range_lookup"));
    // The sample prices some calls from the catalog, over several prices
    // of one model, and leaves some unpriced.
    let sources = text(
        &with,
        "SELECT cost_source, count(DISTINCT price_effective_from) > 0 FROM model_calls \
         GROUP BY 1 ORDER BY 1",
    )
    .await;
    for source in ["catalog", "event", "unpriced"] {
        assert!(sources.contains(source), "{sources}");
    }
    let several = text(
        &with,
        "SELECT count(*) FROM (SELECT model FROM model_prices GROUP BY model HAVING count(*) > 1)",
    )
    .await;
    assert!(!several.contains("| 0 "), "{several}");

    // (query, whether the price join is dropped)
    for (sql, dropped) in [
        (
            "SELECT tenant_id, to_char(date, '%Y-%m') AS month, count(*) AS calls, \
             sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens \
             FROM model_calls GROUP BY 1, 2 ORDER BY 1, 2",
            true,
        ),
        (
            "SELECT model, count(*), avg(latency_ms), max(latency_ms) FROM model_calls \
             GROUP BY 1 ORDER BY 1",
            true,
        ),
        ("SELECT count(*) FROM model_calls", true),
        (
            "SELECT event_id, ts, model, status FROM model_calls ORDER BY event_id",
            true,
        ),
        (
            "SELECT r.tenant_id, r.run_id, sum(m.input_tokens + m.output_tokens) AS tokens \
             FROM runs r JOIN model_calls m ON m.tenant_id = r.tenant_id AND m.run_id = r.run_id \
             GROUP BY 1, 2 ORDER BY tokens DESC, 1, 2 LIMIT 25",
            true,
        ),
        // Cost is read: the prices are joined.
        (
            "SELECT tenant_id, sum(cost_usd) FROM model_calls GROUP BY 1 ORDER BY 1",
            false,
        ),
        (
            "SELECT cost_source, count(*) FROM model_calls GROUP BY 1 ORDER BY 1",
            false,
        ),
        (
            "SELECT model, max(price_effective_from) FROM model_calls GROUP BY 1 ORDER BY 1",
            false,
        ),
    ] {
        assert_eq!(text(&with, sql).await, text(&without, sql).await, "{sql}");
        let before = joins(&without, sql).await;
        assert!(before >= 1, "{sql}");
        assert_eq!(
            joins(&with, sql).await,
            before - usize::from(dropped),
            "{sql}"
        );
    }
}
