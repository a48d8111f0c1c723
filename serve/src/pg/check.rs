//! What the SQL server runs: queries and the session statements clients
//! send on their own (SET, SHOW, transactions, cursors). Everything else is
//! refused before anything runs, in two steps:
//!
//! 1. by the statement's kind, as parsed ([`statement`]): DDL, DML, COPY,
//!    grants and every other kind not listed here;
//! 2. by its plan ([`plan`]): a query that would create or change
//!    anything once planned (`SELECT ... INTO`, a data-modifying `WITH`)
//!    is refused with DataFusion's own read-only check.

use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::sqlparser::ast::{Set, Statement};

/// A refused statement: the SQLSTATE and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `25006` (read-only) or `42501` (not allowed for the role).
    pub code: &'static str,
    /// What was refused and why.
    pub message: String,
}

fn read_only(what: &str) -> Refusal {
    Refusal {
        code: "25006",
        message: format!(
            "refused: this server is read-only and {what} is not a query; change the lake with agentledger ingest / load"
        ),
    }
}

/// The statement's kind, for messages and the audit log: its first words
/// as written (`CREATE TABLE`, `COPY`), never its values.
pub fn kind(statement: &Statement) -> String {
    let text = statement.to_string();
    let words: Vec<&str> = text
        .split_whitespace()
        .take_while(|w| w.chars().all(|c| c.is_ascii_alphabetic()))
        .take(2)
        .collect();
    if words.is_empty() {
        "statement".to_string()
    } else {
        words.join(" ").to_uppercase()
    }
}

/// Step 1: whether a statement of this kind may run for a user who is
/// (`tenant_scoped`) or is not limited to tenants.
pub fn statement(statement: &Statement, tenant_scoped: bool) -> Result<(), Refusal> {
    match statement {
        Statement::Query(_) => Ok(()),
        Statement::Explain { .. } | Statement::ExplainTable { .. } if tenant_scoped => {
            Err(Refusal {
                code: "42501",
                message: "refused: EXPLAIN is not available to a tenant user: a plan names the lake's files, which hold every tenant's rows".into(),
            })
        }
        Statement::Explain { statement, .. } => match statement.as_ref() {
            Statement::Query(_) => Ok(()),
            other => Err(read_only(&format!("EXPLAIN of {}", kind(other)))),
        },
        Statement::ExplainTable { .. }
        | Statement::ShowVariable { .. }
        | Statement::ShowVariables { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. }
        | Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. }
        | Statement::Fetch { .. }
        | Statement::Close { .. }
        | Statement::Discard { .. } => Ok(()),
        Statement::Declare { stmts } => {
            if stmts.iter().all(|d| d.for_query.is_some()) {
                Ok(())
            } else {
                Err(read_only("a DECLARE without a query"))
            }
        }
        Statement::Set(set) => set_statement(set),
        other => Err(read_only(&kind(other))),
    }
}

/// `SET` of a session's PostgreSQL settings; not of the query engine's
/// (`datafusion.*`: memory, spilling, partitions are the server's).
fn set_statement(set: &Set) -> Result<(), Refusal> {
    let engine = |name: &str| name.to_ascii_lowercase().starts_with("datafusion.");
    let refused = |name: &str| Refusal {
        code: "42501",
        message: format!(
            "refused: {name} is a setting of the server's query engine, not of a session"
        ),
    };
    match set {
        Set::SingleAssignment { variable, .. } => {
            let name = variable.to_string();
            if engine(&name) {
                return Err(refused(&name));
            }
            Ok(())
        }
        Set::ParenthesizedAssignments { variables, .. } => {
            for v in variables {
                let name = v.to_string();
                if engine(&name) {
                    return Err(refused(&name));
                }
            }
            Ok(())
        }
        Set::MultipleAssignments { assignments } => {
            for a in assignments {
                let name = a.name.to_string();
                if engine(&name) {
                    return Err(refused(&name));
                }
            }
            Ok(())
        }
        Set::SetTimeZone { .. }
        | Set::SetNames { .. }
        | Set::SetNamesDefault {}
        | Set::SetTransaction { .. } => Ok(()),
        _ => Err(read_only("this SET")),
    }
}

/// Step 2: a planned statement that would create, change or delete
/// anything is refused.
pub fn plan(plan: &LogicalPlan) -> Result<(), Refusal> {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(plan)
        .map_err(|e| {
            read_only(&format!(
                "the statement ({})",
                e.to_string()
                    .trim_start_matches("Error during planning: ")
                    .trim_end_matches(" not supported")
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser;

    fn parse(sql: &str) -> Vec<Statement> {
        PostgresCompatibilityParser::new().parse(sql).unwrap()
    }

    #[test]
    fn only_queries_and_session_statements_pass() {
        for ok in [
            "SELECT 1",
            "WITH a AS (SELECT 1) SELECT * FROM a",
            "EXPLAIN SELECT 1",
            "SHOW TimeZone",
            "SET application_name = 'x'",
            "SET TIME ZONE 'UTC'",
            "BEGIN",
            "COMMIT",
            "ROLLBACK",
            "DECLARE c CURSOR FOR SELECT 1",
        ] {
            for s in parse(ok) {
                assert_eq!(statement(&s, false), Ok(()), "{ok}");
            }
        }
        for bad in [
            "INSERT INTO events VALUES (1)",
            "UPDATE events SET tenant_id = 'x'",
            "DELETE FROM events",
            "CREATE TABLE t (a INT)",
            "CREATE VIEW v AS SELECT 1",
            "DROP TABLE events",
            "COPY events TO '/tmp/x'",
            "ALTER TABLE events ADD COLUMN x INT",
            "GRANT SELECT ON events TO bob",
            "ALTER ROLE bob PASSWORD 'hunter2'",
            "SET datafusion.runtime.memory_limit = '100G'",
            "EXPLAIN DELETE FROM events",
            "TRUNCATE events",
        ] {
            let statements = parse(bad);
            let refusal = statements
                .iter()
                .find_map(|s| statement(s, false).err())
                .unwrap_or_else(|| panic!("{bad} passed"));
            assert!(
                !refusal.message.contains("hunter2"),
                "the message must not echo values: {}",
                refusal.message
            );
        }
    }

    #[test]
    fn a_tenant_user_may_not_explain() {
        let s = &parse("EXPLAIN SELECT * FROM events")[0];
        assert_eq!(statement(s, true).unwrap_err().code, "42501");
        assert!(statement(&parse("SELECT 1")[0], true).is_ok());
    }

    #[tokio::test]
    async fn plans_that_write_are_refused() {
        let ctx = datafusion::prelude::SessionContext::new();
        for (sql, refused) in [
            ("SELECT 1 AS a", false),
            ("SELECT 1 AS a INTO made_here", true),
        ] {
            let s = parse(sql).remove(0);
            let p = ctx
                .state()
                .statement_to_plan(datafusion::sql::parser::Statement::Statement(Box::new(s)))
                .await
                .unwrap();
            assert_eq!(plan(&p).is_err(), refused, "{sql}");
        }
        assert!(ctx.table("made_here").await.is_err(), "nothing was created");
    }
}
