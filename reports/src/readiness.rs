//! SPEC section 8's readiness of groups of finished runs, with the runs
//! that break each failed condition, as `agentledger readiness` prints it
//! and the weekly report shows it.
//!
//! Every measure and verdict comes from `readiness.sql` and every offending
//! run from `readiness_offenders.sql`; this module only puts the two
//! together (each offending run under its group) and lays them out, so the
//! definitions stay in one place.

use agentledger_queries::MetricsQuery;
use datafusion::prelude::SessionContext;
use serde_json::{Map, Value, json};

use crate::export::{Error, Result, escape_csv_formula};
use crate::rows::{Cell, Row, money_text, to_rows};

/// The three conditions of the checklist, in SPEC order.
pub const CONDITIONS: [&str; 3] = ["writes_gated", "runs_replayable", "cost_bounded"];

/// One run that breaks a condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Offender {
    /// The run's tenant.
    pub tenant_id: String,
    /// The run.
    pub run_id: String,
    /// The run's workflow.
    pub workflow: String,
    /// What the run did.
    pub reason: String,
    /// The offending tool, where a tool call breaks the condition.
    pub tool: Option<String>,
    /// The run's cost, 10^-12 USD.
    pub cost_usd: Option<i128>,
    /// The cap of its policy, 10^-12 USD.
    pub max_cost_usd_per_run: Option<i128>,
    /// How far the cost went over the cap, 10^-12 USD.
    pub excess_usd: Option<i128>,
}

impl Offender {
    /// The evidence in a few words: the tool, or the cost against the cap.
    pub fn evidence(&self) -> String {
        match (
            &self.tool,
            self.excess_usd,
            self.cost_usd,
            self.max_cost_usd_per_run,
        ) {
            (Some(tool), ..) => format!("{}: {tool}", self.reason),
            (None, Some(_), Some(cost), Some(cap)) => format!(
                "{}: {} USD against {} USD",
                self.reason,
                money_text(cost),
                money_text(cap)
            ),
            (None, None, Some(cost), None)
                if self.max_cost_usd_per_run.is_none() && self.is_uncapped() =>
            {
                format!("{} (cost {} USD)", self.reason, money_text(cost))
            }
            _ => self.reason.clone(),
        }
    }

    /// Whether the run breaks cost_bounded for want of a cap.
    fn is_uncapped(&self) -> bool {
        self.reason == "no policy in force" || self.reason == "policy sets no max_cost_usd_per_run"
    }

    /// The command that explains the run.
    pub fn timeline_command(&self) -> String {
        format!(
            "agentledger timeline --tenant {} --run {}",
            shell_word(&self.tenant_id),
            shell_word(&self.run_id)
        )
    }

    fn json(&self) -> Value {
        json!({
            "tenant_id": self.tenant_id,
            "run_id": self.run_id,
            "reason": self.reason,
            "tool": self.tool,
            "cost_usd": self.cost_usd.map(money_text),
            "max_cost_usd_per_run": self.max_cost_usd_per_run.map(money_text),
        })
    }
}

/// A word as a POSIX shell reads it: quoted unless plainly safe.
pub fn shell_word(text: &str) -> String {
    let safe = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/:@%+=,".contains(c));
    if safe {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// A failed condition of a group: how many runs break it, and the worst.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// `writes_gated`, `runs_replayable` or `cost_bounded`.
    pub condition: String,
    /// Every run of the group that breaks it.
    pub failing_runs: i64,
    /// The worst of them, worst first, at most the limit asked for.
    pub runs: Vec<Offender>,
}

/// One group's readiness.
#[derive(Debug, Clone)]
pub struct Group {
    /// The grouping keys and their values, in `--by` order.
    pub keys: Vec<(String, String)>,
    /// Column names of `row`, in `readiness.sql` order.
    pub columns: Vec<String>,
    /// The `readiness.sql` row.
    pub row: Row,
    /// The failed conditions, in SPEC order.
    pub failures: Vec<Failure>,
    /// Whether each of [`CONDITIONS`] holds, in that order (`readiness.sql`'s
    /// columns of the same names; NULL counts as not holding).
    passed: [bool; 3],
    /// `readiness.sql`'s `ready`.
    ready: bool,
}

impl Group {
    /// Whether the group passes all three conditions.
    pub fn ready(&self) -> bool {
        self.ready
    }

    /// Whether a condition of [`CONDITIONS`] holds (false for another name).
    pub fn passes(&self, condition: &str) -> bool {
        CONDITIONS
            .iter()
            .position(|c| *c == condition)
            .is_some_and(|i| self.passed[i])
    }

    /// The value of a key.
    pub fn key(&self, name: &str) -> &str {
        self.keys
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// The group as `workflow=support, tenant_id=acme` (or `all runs`).
    pub fn label(&self) -> String {
        if self.keys.is_empty() {
            "all runs".into()
        } else {
            self.keys
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    }

    /// The failure of a condition, if it failed.
    pub fn failure(&self, condition: &str) -> Option<&Failure> {
        self.failures.iter().find(|f| f.condition == condition)
    }
}

/// Reads the readiness of `query`'s groups, with at most `limit` offending
/// runs per group and failed condition.
pub async fn readiness(
    ctx: &SessionContext,
    query: &MetricsQuery,
    limit: u64,
) -> Result<Vec<Group>> {
    let df = agentledger_queries::readiness(ctx, query)
        .await
        .map_err(query_error)?;
    let batches = df.collect().await?;
    let columns: Vec<String> = batches
        .first()
        .map(|b| {
            b.schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect()
        })
        .unwrap_or_default();
    let key_names: Vec<&str> = query.keys.iter().map(|k| k.name()).collect();
    let mut groups: Vec<Group> = Vec::new();
    for row in to_rows("readiness", &batches)? {
        let keys = key_names
            .iter()
            .map(|k| Ok((k.to_string(), row.text(k)?)))
            .collect::<Result<_>>()?;
        let passed = [
            row.flag(CONDITIONS[0])?,
            row.flag(CONDITIONS[1])?,
            row.flag(CONDITIONS[2])?,
        ];
        groups.push(Group {
            keys,
            columns: columns.clone(),
            ready: row.flag("ready")?,
            passed,
            row,
            failures: Vec::new(),
        });
    }
    let offenders = agentledger_queries::readiness_offenders(ctx, query, limit)
        .await
        .map_err(query_error)?
        .collect()
        .await?;
    for row in to_rows("readiness_offenders", &offenders)? {
        let values = key_names
            .iter()
            .map(|k| row.text(k))
            .collect::<Result<Vec<_>>>()?;
        let Some(group) = groups
            .iter_mut()
            .find(|g| g.keys.iter().map(|(_, v)| v).eq(values.iter()))
        else {
            continue;
        };
        let condition = row.text("condition")?;
        let offender = Offender {
            tenant_id: row.text("tenant_id")?,
            run_id: row.text("run_id")?,
            workflow: row.text("workflow")?,
            reason: row.text("reason")?,
            tool: Some(row.text("tool")?).filter(|t| !t.is_empty()),
            cost_usd: row.money("cost_usd")?,
            max_cost_usd_per_run: row.money("max_cost_usd_per_run")?,
            excess_usd: row.money("excess_usd")?,
        };
        match group.failures.iter_mut().find(|f| f.condition == condition) {
            Some(f) => f.runs.push(offender),
            None => group.failures.push(Failure {
                condition,
                failing_runs: row.int("failing_runs")?,
                runs: vec![offender],
            }),
        }
    }
    for g in &mut groups {
        g.failures.sort_by_key(|f| {
            CONDITIONS
                .iter()
                .position(|c| *c == f.condition)
                .unwrap_or(CONDITIONS.len())
        });
    }
    Ok(groups)
}

fn query_error(e: agentledger_queries::Error) -> Error {
    match e {
        agentledger_queries::Error::DataFusion(e) => Error::DataFusion(e),
        other => Error::Io(std::io::Error::other(other.to_string())),
    }
}

fn cell_json(cell: &Cell) -> Value {
    match cell {
        Cell::Null => Value::Null,
        Cell::Text(t) => json!(t),
        Cell::Int(i) => json!(i),
        Cell::Float(f) if f.is_finite() => json!(f),
        Cell::Float(_) => Value::Null,
        Cell::Money(m) => json!(money_text(*m)),
        Cell::Bool(b) => json!(b),
    }
}

fn cell_text(cell: &Cell) -> String {
    match cell {
        Cell::Null => String::new(),
        Cell::Text(t) => t.clone(),
        Cell::Int(i) => i.to_string(),
        Cell::Float(f) => format!("{f:?}"),
        Cell::Money(m) => money_text(*m),
        Cell::Bool(b) => b.to_string(),
    }
}

/// The groups as a JSON array: each object has the keys and every
/// `readiness.sql` column by its SPEC section 8 name (money as decimal
/// text), and `offending_runs`: for each failed condition, the runs listed.
pub fn to_json(groups: &[Group]) -> Value {
    Value::Array(
        groups
            .iter()
            .map(|g| {
                let mut obj = Map::new();
                for (name, cell) in g.row.cells() {
                    obj.insert(name.to_string(), cell_json(cell));
                }
                let offending: Map<String, Value> = g
                    .failures
                    .iter()
                    .map(|f| {
                        (
                            f.condition.clone(),
                            Value::Array(f.runs.iter().map(Offender::json).collect()),
                        )
                    })
                    .collect();
                obj.insert("offending_runs".into(), Value::Object(offending));
                Value::Object(obj)
            })
            .collect(),
    )
}

/// The groups as CSV: the `readiness.sql` columns, then `offending_runs`,
/// the listed runs as `condition tenant_id/run_id: evidence`, `; `-separated.
/// A column the groups' rows lack is an error.
pub fn to_csv(groups: &[Group], columns: &[String]) -> Result<Vec<u8>> {
    let mut out = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<String> = columns.to_vec();
    header.push("offending_runs".into());
    // Writing to a Vec cannot fail.
    let _ = out.write_record(&header);
    for g in groups {
        let mut record: Vec<String> = columns
            .iter()
            .map(|c| Ok(escape_csv_formula(&cell_text(g.row.cell(c)?)).into_owned()))
            .collect::<Result<_>>()?;
        let listed: Vec<String> = g
            .failures
            .iter()
            .flat_map(|f| {
                f.runs.iter().map(move |o| {
                    format!(
                        "{} {}/{}: {}",
                        f.condition,
                        o.tenant_id,
                        o.run_id,
                        o.evidence()
                    )
                })
            })
            .collect();
        record.push(escape_csv_formula(&listed.join("; ")).into_owned());
        let _ = out.write_record(&record);
    }
    Ok(out.into_inner().unwrap_or_default())
}

/// The groups for a terminal: one aligned table of every measure, then,
/// for each group that is not ready, each failed condition with its runs.
/// A column the groups' rows lack is an error.
pub fn to_table(groups: &[Group], columns: &[String]) -> Result<String> {
    let mut rows: Vec<Vec<String>> = vec![columns.to_vec()];
    for g in groups {
        rows.push(
            columns
                .iter()
                .map(|c| Ok(cell_text(g.row.cell(c)?)))
                .collect::<Result<_>>()?,
        );
    }
    let widths: Vec<usize> = (0..columns.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let rule: String = widths
        .iter()
        .map(|w| "-".repeat(w + 2))
        .collect::<Vec<_>>()
        .join("+");
    let mut out = format!("+{rule}+\n");
    for (i, r) in rows.iter().enumerate() {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!(" {c:<w$} "))
            .collect();
        out.push_str(&format!("|{}|\n", cells.join("|")));
        if i == 0 {
            out.push_str(&format!("+{rule}+\n"));
        }
    }
    out.push_str(&format!("+{rule}+\n"));
    let ready = groups.iter().filter(|g| g.ready()).count();
    out.push_str(&format!(
        "{} group{}, {ready} ready\n",
        groups.len(),
        if groups.len() == 1 { "" } else { "s" }
    ));
    for g in groups.iter().filter(|g| !g.ready()) {
        out.push_str(&format!("\nNOT READY {}\n", g.label()));
        for f in &g.failures {
            out.push_str(&format!(
                "  {} fails: {} run{} break{} it{}\n",
                f.condition,
                f.failing_runs,
                if f.failing_runs == 1 { "" } else { "s" },
                if f.failing_runs == 1 { "s" } else { "" },
                if (f.runs.len() as i64) < f.failing_runs {
                    format!(", the worst {}:", f.runs.len())
                } else {
                    ":".into()
                }
            ));
            for o in &f.runs {
                out.push_str(&format!(
                    "    {} {}  {}\n      {}\n",
                    o.tenant_id,
                    o.run_id,
                    o.evidence(),
                    o.timeline_command()
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(shell_word("run-0001"), "run-0001");
        assert_eq!(shell_word("r'1"), r"'r'\''1'");
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word(""), "''");
    }

    #[test]
    fn evidence_names_the_tool_or_the_cost_against_the_cap() {
        let mut o = Offender {
            tenant_id: "t".into(),
            run_id: "r".into(),
            workflow: "w".into(),
            reason: "forbidden tool executed".into(),
            tool: Some("shell".into()),
            cost_usd: Some(0),
            max_cost_usd_per_run: None,
            excess_usd: None,
        };
        assert_eq!(o.evidence(), "forbidden tool executed: shell");
        o.tool = None;
        o.reason = "cost over max_cost_usd_per_run".into();
        o.cost_usd = Some(1_500_000_000_000);
        o.max_cost_usd_per_run = Some(1_000_000_000_000);
        o.excess_usd = Some(500_000_000_000);
        assert_eq!(
            o.evidence(),
            "cost over max_cost_usd_per_run: 1.500000000000 USD against 1.000000000000 USD"
        );
        assert_eq!(
            o.timeline_command(),
            "agentledger timeline --tenant t --run r"
        );
        o.reason = "no policy in force".into();
        o.excess_usd = None;
        o.max_cost_usd_per_run = None;
        assert_eq!(o.evidence(), "no policy in force (cost 1.500000000000 USD)");
        o.reason = "a model_call names no provider".into();
        assert_eq!(o.evidence(), "a model_call names no provider");
    }
}
