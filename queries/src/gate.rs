//! The release gate of SPEC section 3, with a confidence interval so a
//! reviewer can tell a real drop from noise.

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::Int64Type;
use datafusion::prelude::SessionContext;
use serde::Serialize;

use crate::MetricsQuery;

/// z for a two-sided 95% interval.
const Z95: f64 = 1.959_963_984_540_054;

/// One version's finished runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VersionRate {
    /// The `agent_version`.
    pub agent_version: String,
    /// Finished runs in the period.
    pub runs: u64,
    /// Succeeded runs.
    pub successes: u64,
    /// successes / runs.
    pub success_rate: f64,
    /// 95% Wilson score interval of the rate, low end.
    pub ci_low: f64,
    /// 95% Wilson score interval of the rate, high end.
    pub ci_high: f64,
}

/// The gate's verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateResult {
    /// The version released now.
    pub baseline: VersionRate,
    /// The version asking to be released.
    pub candidate: VersionRate,
    /// (baseline rate − candidate rate) × 100: positive when the candidate is worse.
    pub drop_pp: f64,
    /// 95% interval of the drop (Newcombe's hybrid score method), low end, in points.
    pub drop_ci_low_pp: f64,
    /// 95% interval of the drop, high end, in points.
    pub drop_ci_high_pp: f64,
    /// The allowed drop in percentage points.
    pub threshold_pp: f64,
    /// `pass` or `fail`.
    pub verdict: &'static str,
}

impl GateResult {
    /// Whether the candidate passes.
    pub fn passed(&self) -> bool {
        self.verdict == "pass"
    }
}

/// Why the gate could not decide.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// A version has no finished run in the period.
    #[error("agent_version `{0}` has no finished runs{1}; the gate cannot compare it")]
    NoRuns(String, String),
    /// The query failed.
    #[error(transparent)]
    Query(#[from] crate::Error),
}

/// Wilson score interval for `successes` out of `runs` (runs > 0).
pub fn wilson(successes: u64, runs: u64) -> (f64, f64) {
    let n = runs as f64;
    let p = successes as f64 / n;
    let z2 = Z95 * Z95;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = Z95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Newcombe's interval (method 10) for p1 − p2 from the two Wilson intervals.
pub fn newcombe(p1: f64, (l1, u1): (f64, f64), p2: f64, (l2, u2): (f64, f64)) -> (f64, f64) {
    let d = p1 - p2;
    let low = d - ((p1 - l1).powi(2) + (u2 - p2).powi(2)).sqrt();
    let high = d + ((u1 - p1).powi(2) + (p2 - l2).powi(2)).sqrt();
    (low, high)
}

fn rate(version: &str, runs: u64, successes: u64) -> VersionRate {
    let (ci_low, ci_high) = wilson(successes, runs);
    VersionRate {
        agent_version: version.to_string(),
        runs,
        successes,
        success_rate: successes as f64 / runs as f64,
        ci_low,
        ci_high,
    }
}

/// Decides the gate from two versions' counts.
pub fn decide(baseline: VersionRate, candidate: VersionRate, threshold_pp: f64) -> GateResult {
    let (low, high) = newcombe(
        baseline.success_rate,
        (baseline.ci_low, baseline.ci_high),
        candidate.success_rate,
        (candidate.ci_low, candidate.ci_high),
    );
    let drop_pp = (baseline.success_rate - candidate.success_rate) * 100.0;
    // The rule compares exactly: successes and runs are integers, so the
    // drop is compared as a fraction to avoid a float rounding a tie over.
    let fails = {
        let lhs = (i128::from(baseline.successes) * i128::from(candidate.runs)
            - i128::from(candidate.successes) * i128::from(baseline.runs))
            * 100;
        let denom = i128::from(baseline.runs) * i128::from(candidate.runs);
        (lhs as f64) > threshold_pp * denom as f64
    };
    GateResult {
        baseline,
        candidate,
        drop_pp,
        drop_ci_low_pp: low * 100.0,
        drop_ci_high_pp: high * 100.0,
        threshold_pp,
        verdict: if fails { "fail" } else { "pass" },
    }
}

/// Runs the gate for `baseline` and `candidate` over the dates of `period`.
pub async fn gate(
    ctx: &SessionContext,
    baseline: &str,
    candidate: &str,
    threshold_pp: f64,
    period: &MetricsQuery,
) -> std::result::Result<GateResult, GateError> {
    let batches = ctx
        .sql(&period.gate_sql())
        .await
        .map_err(crate::Error::from)?
        .collect()
        .await
        .map_err(crate::Error::from)?;
    let mut found = std::collections::HashMap::new();
    for batch in &batches {
        let versions = batch.column(0).as_string::<i32>();
        let runs = batch.column(1).as_primitive::<Int64Type>();
        let successes = batch.column(2).as_primitive::<Int64Type>();
        for i in 0..batch.num_rows() {
            if versions.is_valid(i) {
                found.insert(
                    versions.value(i).to_string(),
                    (runs.value(i) as u64, successes.value(i) as u64),
                );
            }
        }
    }
    let span = match (period.from, period.to) {
        (None, None) => String::new(),
        (from, to) => format!(
            " in [{}, {})",
            from.map_or("…".into(), |d| d.to_string()),
            to.map_or("…".into(), |d| d.to_string())
        ),
    };
    let get = |v: &str| {
        found
            .get(v)
            .copied()
            .filter(|(runs, _)| *runs > 0)
            .map(|(runs, successes)| rate(v, runs, successes))
            .ok_or_else(|| GateError::NoRuns(v.to_string(), span.clone()))
    };
    Ok(decide(get(baseline)?, get(candidate)?, threshold_pp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_the_published_example() {
        // Newcombe (1998), table II: 81/263 → 0.2553 to 0.3662.
        let (l, u) = wilson(81, 263);
        assert!((l - 0.2553).abs() < 5e-4, "{l}");
        assert!((u - 0.3662).abs() < 5e-4, "{u}");
        // 0/10 → 0 to 0.2775.
        let (l, u) = wilson(0, 10);
        assert_eq!(l, 0.0);
        assert!((u - 0.2775).abs() < 5e-4, "{u}");
    }

    #[test]
    fn newcombe_matches_the_published_example() {
        // Newcombe (1998), example (a): 56/70 vs 48/80 → 0.0524 to 0.3339.
        let p1 = 56.0 / 70.0;
        let p2 = 48.0 / 80.0;
        let (l, u) = newcombe(p1, wilson(56, 70), p2, wilson(48, 80));
        assert!((l - 0.0524).abs() < 5e-4, "{l}");
        assert!((u - 0.3339).abs() < 5e-4, "{u}");
    }

    #[test]
    fn the_rule_is_a_strict_drop_above_the_threshold() {
        let v = |name: &str, runs, successes| rate(name, runs, successes);
        // 90% → 88%: a drop of exactly 2 points is not more than 2.
        let r = decide(v("a", 100, 90), v("b", 100, 88), 2.0);
        assert_eq!(r.verdict, "pass");
        assert!((r.drop_pp - 2.0).abs() < 1e-9);
        let r = decide(v("a", 100, 90), v("b", 100, 87), 2.0);
        assert_eq!(r.verdict, "fail");
        // A better candidate passes at threshold 0.
        assert!(decide(v("a", 10, 5), v("b", 10, 6), 0.0).passed());
        assert!(!decide(v("a", 10, 6), v("b", 10, 5), 0.0).passed());
        // The interval holds the point estimate.
        assert!(r.drop_ci_low_pp < r.drop_pp && r.drop_pp < r.drop_ci_high_pp);
    }
}
