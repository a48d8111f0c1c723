//! SPEC sections 2 and 8: loading `model_prices`, `customer_plans` and
//! `workflow_policies`.
//!
//! A reference file is validated whole before anything is written: one bad
//! row refuses the file, naming the line and the reason, and the table in
//! force stays as it was. A good file becomes a new version of the table in
//! one commit that replaces it; earlier versions stay in the lake under
//! `<table>/version=N/` so that any past report can be replayed.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use agentledger_lake::Lake;
use agentledger_lake::lease::Lease;
use agentledger_lake::log::{Commit, CommitKind, Snapshot, new_id};
use agentledger_lake::schema::{
    CUSTOMER_PLANS, CUSTOMER_PLANS_SCHEMA, MODEL_PRICES, MODEL_PRICES_SCHEMA, WORKFLOW_POLICIES,
    WORKFLOW_POLICIES_SCHEMA,
};
use agentledger_lake::writer::write_file;
use serde::Serialize;

use crate::batch::RowBuilder;
use crate::decimal::{Decimal, FitError};
use crate::error::{Error, Result};
use crate::validate::{Val, valid_tenant_id};

/// Which reference table a file is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferenceKind {
    /// `model_prices.csv`.
    Prices,
    /// `customer_plans.csv`.
    Plans,
    /// `workflow_policies.csv` (SPEC section 8).
    Policies,
}

impl ReferenceKind {
    /// The table name.
    pub fn table(self) -> &'static str {
        match self {
            ReferenceKind::Prices => MODEL_PRICES,
            ReferenceKind::Plans => CUSTOMER_PLANS,
            ReferenceKind::Policies => WORKFLOW_POLICIES,
        }
    }

    /// What the command line calls it (`agentledger load NAME`), also the
    /// batch config's key.
    pub fn name(self) -> &'static str {
        match self {
            ReferenceKind::Prices => "prices",
            ReferenceKind::Plans => "plans",
            ReferenceKind::Policies => "policies",
        }
    }

    /// The commit kind of a load.
    pub fn commit_kind(self) -> CommitKind {
        match self {
            ReferenceKind::Prices => CommitKind::LoadPrices,
            ReferenceKind::Plans => CommitKind::LoadPlans,
            ReferenceKind::Policies => CommitKind::LoadPolicies,
        }
    }

    /// The schema of the table.
    pub fn schema(self) -> arrow::datatypes::SchemaRef {
        Arc::clone(match self {
            ReferenceKind::Prices => &MODEL_PRICES_SCHEMA,
            ReferenceKind::Plans => &CUSTOMER_PLANS_SCHEMA,
            ReferenceKind::Policies => &WORKFLOW_POLICIES_SCHEMA,
        })
    }

    /// The header the file must have.
    pub fn header(self) -> &'static [&'static str] {
        match self {
            ReferenceKind::Prices => &[
                "model",
                "provider",
                "effective_from",
                "input_usd_per_mtok",
                "cached_input_usd_per_mtok",
                "output_usd_per_mtok",
            ],
            ReferenceKind::Plans => &[
                "tenant_id",
                "effective_from",
                "price_per_success_usd",
                "monthly_fee_usd",
            ],
            ReferenceKind::Policies => &[
                "tenant_id",
                "workflow",
                "effective_from",
                "allowed_tools",
                "forbidden_tools",
                "approval_required_tools",
                "max_tool_calls_per_run",
                "max_cost_usd_per_run",
            ],
        }
    }
}

/// What a load did.
#[derive(Debug, Clone, Serialize)]
pub struct LoadSummary {
    /// The table replaced.
    pub table: String,
    /// Rows in the new version.
    pub rows: u64,
    /// The lake version committed.
    pub version: u64,
    /// The file loaded.
    pub file: String,
}

/// Validates `file` and, if every row is good, makes it the table in force.
pub async fn load_reference(lake: &Lake, kind: ReferenceKind, file: &Path) -> Result<LoadSummary> {
    let name = file.display().to_string();
    let bytes = std::fs::read(file).map_err(|e| Error::Source {
        source_name: name.clone(),
        reason: e.to_string(),
    })?;
    let rows = parse(kind, &name, &bytes)?;
    let mut builder = RowBuilder::new(kind.schema());
    let count = rows.len() as u64;
    for row in rows {
        builder.push(row);
    }
    let batch = builder.finish()?;

    let lock = Lease::writer(lake, kind.table()).await?;
    let result = async {
        let lake = &lock.fence(lake);
        let mut snapshot = Snapshot::load(lake).await?;
        let version = snapshot.version() + 1;
        let id = new_id();
        let relative = format!("{}/version={version}/part-{id}.parquet", kind.table());
        let entry = write_file(lake, kind.table(), &relative, &batch).await?;
        let mut commit = Commit::record(
            kind.commit_kind(),
            serde_json::json!({
                "file": name,
                "rows": count,
                "content_hash": content_hash(&bytes),
            }),
        );
        commit.id = id;
        commit.replaces = vec![kind.table().to_string()];
        commit.files = vec![entry];
        let version = snapshot.commit_over_ingests(lake, commit).await?;
        Ok::<_, Error>(version)
    }
    .await;
    lock.release().await?;
    Ok(LoadSummary {
        table: kind.table().to_string(),
        rows: count,
        version: result?,
        file: name,
    })
}

/// The xxh3-128 hash (hex) of a reference file's bytes, as recorded with
/// each load, so the batch reloads a file only when it changed.
pub fn content_hash(bytes: &[u8]) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(bytes))
}

/// The content hash recorded by the load that put `kind`'s table in force,
/// if any.
pub fn loaded_hash(snapshot: &Snapshot, kind: ReferenceKind) -> Option<String> {
    let wanted = match kind {
        ReferenceKind::Prices => "load_prices",
        ReferenceKind::Plans => "load_plans",
        ReferenceKind::Policies => "load_policies",
    };
    snapshot
        .state()
        .references
        .get(wanted)
        .map(|r| r.content_hash.clone())
}

/// Parses and validates a whole reference file into rows of the table.
pub fn parse(
    kind: ReferenceKind,
    name: &str,
    bytes: &[u8],
) -> Result<Vec<Vec<Option<Val<'static>>>>> {
    let fail = |line: u64, reason: String| Error::Reference {
        file: name.to_string(),
        line,
        reason,
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut records = reader.records();
    let header = match records.next() {
        Some(Ok(h)) => h,
        Some(Err(e)) => return Err(fail(1, format!("unreadable header: {e}"))),
        None => {
            return Err(fail(
                1,
                format!(
                    "empty file; expected the header {}",
                    kind.header().join(",")
                ),
            ));
        }
    };
    let got: Vec<&str> = header
        .iter()
        .map(|h| h.trim().trim_start_matches('\u{feff}'))
        .collect();
    if got != kind.header() {
        return Err(fail(
            1,
            format!(
                "header must be exactly {} (got {})",
                kind.header().join(","),
                got.join(",")
            ),
        ));
    }
    let mut seen = HashSet::new();
    let mut rows = Vec::new();
    for record in records {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            fail(line, format!("malformed CSV: {e}"))
        })?;
        let line = record.position().map_or(0, |p| p.line());
        if record.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        if record.len() != kind.header().len() {
            return Err(fail(
                line,
                format!(
                    "expected {} fields, got {}",
                    kind.header().len(),
                    record.len()
                ),
            ));
        }
        let cell = |i: usize| record.get(i).unwrap_or("").trim();
        let row_fail = |reason: String| fail(line, reason);
        let row = match kind {
            ReferenceKind::Prices => {
                let model = cell(0);
                if model.is_empty() {
                    return Err(row_fail("model is empty".into()));
                }
                let date = date(cell(2)).map_err(&row_fail)?;
                if !seen.insert((model.to_string(), date)) {
                    return Err(row_fail(format!(
                        "a second row for model '{model}' effective from {}",
                        cell(2)
                    )));
                }
                let cached = if cell(4).is_empty() {
                    None
                } else {
                    Some(Val::Dec(
                        money(cell(4), "cached_input_usd_per_mtok", 6).map_err(&row_fail)?,
                    ))
                };
                vec![
                    Some(Val::Str(model.to_string().into())),
                    (!cell(1).is_empty()).then(|| Val::Str(cell(1).to_string().into())),
                    Some(Val::Int(i64::from(date))),
                    Some(Val::Dec(
                        money(cell(3), "input_usd_per_mtok", 6).map_err(&row_fail)?,
                    )),
                    cached,
                    Some(Val::Dec(
                        money(cell(5), "output_usd_per_mtok", 6).map_err(&row_fail)?,
                    )),
                ]
            }
            ReferenceKind::Plans => {
                let tenant = cell(0);
                if !valid_tenant_id(tenant) {
                    return Err(row_fail(format!(
                        "tenant_id '{tenant}' must be 1-64 characters of A-Z a-z 0-9 . _ - and not '.' or '..'"
                    )));
                }
                let date = date(cell(1)).map_err(&row_fail)?;
                if !seen.insert((tenant.to_string(), date)) {
                    return Err(row_fail(format!(
                        "a second row for tenant '{tenant}' effective from {}",
                        cell(1)
                    )));
                }
                vec![
                    Some(Val::Str(tenant.to_string().into())),
                    Some(Val::Int(i64::from(date))),
                    Some(Val::Dec(
                        money(cell(2), "price_per_success_usd", 12).map_err(&row_fail)?,
                    )),
                    Some(Val::Dec(
                        money(cell(3), "monthly_fee_usd", 12).map_err(&row_fail)?,
                    )),
                ]
            }
            ReferenceKind::Policies => {
                let tenant = cell(0);
                if tenant != "*" && !valid_tenant_id(tenant) {
                    return Err(row_fail(format!(
                        "tenant_id '{tenant}' must be '*' (every tenant) or 1-64 characters of A-Z a-z 0-9 . _ - and not '.' or '..'"
                    )));
                }
                let workflow = cell(1);
                if workflow.is_empty() || workflow.chars().count() > 128 {
                    return Err(row_fail(format!(
                        "workflow '{workflow}' must be 1-128 characters"
                    )));
                }
                let date = date(cell(2)).map_err(&row_fail)?;
                if !seen.insert((format!("{tenant}\u{0}{workflow}"), date)) {
                    return Err(row_fail(format!(
                        "a second row for tenant '{tenant}' and workflow '{workflow}' effective from {}",
                        cell(2)
                    )));
                }
                let allowed = tool_list(cell(3), "allowed_tools").map_err(&row_fail)?;
                let forbidden = tool_list(cell(4), "forbidden_tools").map_err(&row_fail)?;
                let gated = tool_list(cell(5), "approval_required_tools").map_err(&row_fail)?;
                if let (Some(a), Some(f)) = (&allowed, &forbidden)
                    && let Some(both) = f.split('|').find(|t| a.split('|').any(|x| x == *t))
                {
                    return Err(row_fail(format!(
                        "tool '{both}' is in both allowed_tools and forbidden_tools"
                    )));
                }
                let max_calls = if cell(6).is_empty() {
                    None
                } else {
                    Some(Val::Int(
                        cell(6)
                            .parse::<u32>()
                            .map_err(|_| {
                                row_fail(format!(
                                    "max_tool_calls_per_run '{}' is not a whole number >= 0 (or empty for no maximum)",
                                    cell(6)
                                ))
                            })?
                            .into(),
                    ))
                };
                let max_cost = if cell(7).is_empty() {
                    None
                } else {
                    Some(Val::Dec(
                        money(cell(7), "max_cost_usd_per_run", 12).map_err(&row_fail)?,
                    ))
                };
                let text = |list: Option<String>| list.map(|l| Val::Str(l.into()));
                vec![
                    Some(Val::Str(tenant.to_string().into())),
                    Some(Val::Str(workflow.to_string().into())),
                    Some(Val::Int(i64::from(date))),
                    text(allowed),
                    text(forbidden),
                    text(gated),
                    max_calls,
                    max_cost,
                ]
            }
        };
        rows.push(row);
    }
    Ok(rows)
}

/// A `|`-separated tool list: entries trimmed, empty entries dropped, the
/// same tool twice refused; `None` for an empty list (no list).
fn tool_list(text: &str, column: &str) -> std::result::Result<Option<String>, String> {
    let mut tools: Vec<&str> = Vec::new();
    for tool in text.split('|').map(str::trim).filter(|t| !t.is_empty()) {
        if tools.contains(&tool) {
            return Err(format!("{column} names '{tool}' twice"));
        }
        tools.push(tool);
    }
    Ok((!tools.is_empty()).then(|| tools.join("|")))
}

/// A `YYYY-MM-DD` date as days since the Unix epoch.
fn date(text: &str) -> std::result::Result<i32, String> {
    let parsed = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .filter(|_| text.len() == 10)
        .ok_or_else(|| format!("effective_from '{text}' is not a date like 2026-01-31"))?;
    Ok((parsed - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as i32)
}

/// A non-negative money value with at most `max_fraction` fractional digits,
/// scaled to the money column's 12 digits.
fn money(text: &str, column: &str, max_fraction: u32) -> std::result::Result<i128, String> {
    let d = Decimal::from_plain(text)
        .ok_or_else(|| format!("{column} '{text}' is not a decimal number like 2.50"))?;
    if d.is_negative() {
        return Err(format!("{column} '{text}' is negative"));
    }
    match d.to_scaled(max_fraction, 38) {
        Err(FitError::TooManyFractionalDigits { needed }) => {
            return Err(format!(
                "{column} '{text}' has {needed} fractional digits; at most {max_fraction} are allowed"
            ));
        }
        Err(FitError::TooLarge) => return Err(format!("{column} '{text}' is too large")),
        Ok(_) => {}
    }
    d.to_scaled(12, 38)
        .map_err(|_| format!("{column} '{text}' is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRICES: &str = "model,provider,effective_from,input_usd_per_mtok,cached_input_usd_per_mtok,output_usd_per_mtok\n";
    const PLANS: &str = "tenant_id,effective_from,price_per_success_usd,monthly_fee_usd\n";

    fn prices(body: &str) -> Result<Vec<Vec<Option<Val<'static>>>>> {
        parse(
            ReferenceKind::Prices,
            "p.csv",
            format!("{PRICES}{body}").as_bytes(),
        )
    }

    fn err_of(r: Result<Vec<Vec<Option<Val>>>>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn good_prices_parse_with_empty_cached_as_null() {
        let rows =
            prices("m,openai,2026-10-01,2.50,,10\nm,openai,2026-10-07,2.000001,0.5,8\n").unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0][4], None);
        assert_eq!(rows[0][3], Some(Val::Dec(2_500_000_000_000)));
        assert_eq!(rows[1][3], Some(Val::Dec(2_000_001_000_000)));
    }

    #[test]
    fn bad_price_files_name_the_line_and_reason() {
        let e = err_of(prices(
            "m,openai,2026-10-01,2.50,,10\nm,openai,2026-10-01,3,,10\n",
        ));
        assert!(
            e.contains("p.csv line 3") && e.contains("second row for model 'm'"),
            "{e}"
        );
        let e = err_of(prices("m,openai,2026-10-01,-2.50,,10\n"));
        assert!(e.contains("line 2") && e.contains("negative"), "{e}");
        let e = err_of(prices("m,openai,2026-10-01,2.1234567,,10\n"));
        assert!(e.contains("7 fractional digits"), "{e}");
        let e = err_of(prices("m,openai,2026-13-01,2,,10\n"));
        assert!(e.contains("not a date"), "{e}");
        let e = err_of(prices("m,openai,2026-10-01,2,10\n"));
        assert!(e.contains("expected 6 fields, got 5"), "{e}");
        let e = err_of(prices("m,openai,2026-10-01,abc,,10\n"));
        assert!(e.contains("not a decimal"), "{e}");
        let e = err_of(parse(
            ReferenceKind::Prices,
            "p.csv",
            b"model,effective_from\n",
        ));
        assert!(e.contains("line 1") && e.contains("header"), "{e}");
    }

    const POLICIES: &str = "tenant_id,workflow,effective_from,allowed_tools,forbidden_tools,approval_required_tools,max_tool_calls_per_run,max_cost_usd_per_run\n";

    fn policies(body: &str) -> Result<Vec<Vec<Option<Val<'static>>>>> {
        parse(
            ReferenceKind::Policies,
            "w.csv",
            format!("{POLICIES}{body}").as_bytes(),
        )
    }

    #[test]
    fn policies_parse_star_lists_and_empty_maxima() {
        let rows = policies(
            "*,support,2026-10-01, kb.search | crm.lookup ,shell,refund.issue,8,0.25\n\
             acme,support,2026-10-01,,,,,\n\
             acme,support,2026-10-08,kb.search,,,0,0.000000000001\n",
        )
        .unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0][0], Some(Val::Str("*".into())));
        assert_eq!(rows[0][3], Some(Val::Str("kb.search|crm.lookup".into())));
        assert_eq!(rows[0][6], Some(Val::Int(8)));
        assert_eq!(rows[0][7], Some(Val::Dec(250_000_000_000)));
        assert_eq!(&rows[1][3..], &[None, None, None, None, None]);
        assert_eq!(rows[2][6], Some(Val::Int(0)));
        assert_eq!(rows[2][7], Some(Val::Dec(1)));
    }

    #[test]
    fn bad_policy_rows_name_the_line_and_reason() {
        for (body, expect) in [
            ("*,support,2026-10-01,,,,3,-1\n", "line 2"),
            (
                "*,support,2026-10-01,,,,3,-1\n",
                "max_cost_usd_per_run '-1' is negative",
            ),
            ("*,s,2026-10-01,,,,,\n*,s,2026-10-01,,,,,\n", "line 3"),
            (
                "*,s,2026-10-01,,,,,\n*,s,2026-10-01,,,,,\n",
                "second row for tenant '*' and workflow 's'",
            ),
            ("*,s,2026-10-01,,,,2.5,\n", "max_tool_calls_per_run '2.5'"),
            ("*,s,2026-10-01,,,,-1,\n", "max_tool_calls_per_run '-1'"),
            (
                "*,s,2026-10-01,,,,,1.0000000000001\n",
                "13 fractional digits",
            ),
            ("*,s,2026-10-01,,,,,1e3\n", "not a decimal"),
            ("../x,s,2026-10-01,,,,,\n", "tenant_id '../x'"),
            ("*,,2026-10-01,,,,,\n", "workflow '' must be"),
            (
                "*,s,2026-10-01,a|b|a,,,,\n",
                "allowed_tools names 'a' twice",
            ),
            ("*,s,2026-10-01,a|b,b,,,\n", "'b' is in both"),
            ("*,s,01/10/2026,,,,,\n", "not a date"),
            ("*,s,2026-10-01,,,\n", "expected 8 fields, got 6"),
        ] {
            let e = err_of(policies(body));
            assert!(
                e.contains("w.csv line") && e.contains(expect),
                "{body}: {e}"
            );
        }
        // A tenant row and a `*` row for the same workflow and date are two keys.
        assert_eq!(
            policies("*,s,2026-10-01,,,,,\nacme,s,2026-10-01,,,,,\n")
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn plans_allow_twelve_digits_and_check_tenants() {
        let ok = parse(
            ReferenceKind::Plans,
            "c.csv",
            format!("{PLANS}acme,2026-10-01,0.123456789012,199\n").as_bytes(),
        )
        .unwrap();
        assert_eq!(ok[0][2], Some(Val::Dec(123_456_789_012)));
        let e = parse(
            ReferenceKind::Plans,
            "c.csv",
            format!("{PLANS}../x,2026-10-01,1,1\n").as_bytes(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("tenant_id '../x'"), "{e}");
        let e = parse(
            ReferenceKind::Plans,
            "c.csv",
            format!("{PLANS}a,2026-10-01,1,1\na,2026-10-01,2,2\n").as_bytes(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("line 3"), "{e}");
    }
}
