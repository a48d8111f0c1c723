//! Realistic, deterministic sample data for `agentledger sample`.
//!
//! Five tenants, four workflows, two agent versions and four models over four
//! ISO weeks, with the cases the metrics must get right: a model price change
//! mid-week, a model with no price (unpriced calls), a plan change mid-month,
//! a tenant with no plan, a tenant whose costs outrun its revenue, tool
//! errors and timeouts, policy blocks, approvals, human overrides that arrive
//! days after the run finished, runs finished twice, open runs, feedback,
//! timestamps with offsets, unknown fields, and (unless turned off) bad lines
//! of every quarantine kind, exact repeats and conflicting repeats.
//!
//! `workflow_policies.csv` (SPEC section 8) and the events exercise every
//! readiness measure: support_reply keeps to its policy (ready), while the
//! others call unlisted and forbidden tools, write without idempotency keys
//! or approvals, leave out prompt versions or providers, run over their
//! tool-call maximum or cost cap, run with no cap, or with no policy at all;
//! a tenant's own row overrides the one for every tenant, and a cap changes
//! mid-week. These choices come from a second generator seeded per run, and
//! only change fields of events the first generator makes, so the events,
//! their ids, costs and every other metric are what they were before
//! policies existed.
//!
//! The design choice: generate run by run into a buffered writer with a
//! seeded splitmix64 generator, so the output is byte-identical for a seed and
//! memory does not grow with `runs`.

pub mod otlp;

use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// What to generate.
#[derive(Debug, Clone)]
pub struct SampleOptions {
    /// Number of agent runs.
    pub runs: u64,
    /// Seed: the same seed gives the same bytes.
    pub seed: u64,
    /// Whether to mix in bad lines, exact repeats and conflicting repeats.
    pub bad_lines: bool,
    /// The first day (a Monday) as (year, month, day), UTC.
    pub start_date: (i32, u32, u32),
    /// Write the events as OTLP/JSON spans (`traces.json`, see [`otlp`])
    /// instead of `events.ndjson`.
    pub otlp: bool,
}

impl Default for SampleOptions {
    fn default() -> Self {
        Self {
            runs: 400,
            seed: 42,
            bad_lines: true,
            start_date: (2026, 10, 5),
            otlp: false,
        }
    }
}

/// What was generated.
#[derive(Debug, Clone, Default)]
pub struct SampleSummary {
    /// Valid, distinct events (what an ingest stores).
    pub events: u64,
    /// Invalid lines (what an ingest quarantines, besides conflicting repeats).
    pub bad_lines: u64,
    /// Exact repeats of earlier events (counted as duplicates by ingest).
    pub duplicates: u64,
    /// Repeats of an earlier event_id with other content (quarantined).
    pub conflicting: u64,
    /// Runs generated.
    pub runs: u64,
    /// Files written.
    pub files: Vec<PathBuf>,
    /// Spans written, for an OTLP sample.
    pub spans: Option<u64>,
}

/// splitmix64: tiny, fast, and stable across platforms and versions (the
/// crate's tests draw from it too).
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// True with probability `per_mille / 1000`.
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
#[inline]
pub fn days_from_civil(y: i32, m: u32, d: u32) -> i64 {
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day number (inverse of [`days_from_civil`]).
pub fn civil_from_days(z: i64) -> (i32, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    ((yoe + era * 400 + i64::from(m <= 2)) as i32, m, d)
}

fn date_text(day: i64) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// RFC 3339 text of a UTC instant (microseconds), written in the given
/// offset (minutes east of UTC); `micros_shown` adds a fraction.
fn ts_text(micros: i64, offset_min: i64, micros_shown: bool) -> String {
    let local = micros + offset_min * 60_000_000;
    let secs = local.div_euclid(1_000_000);
    let frac = local.rem_euclid(1_000_000);
    let day = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let mut s = format!(
        "{}T{:02}:{:02}:{:02}",
        date_text(day),
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    );
    if micros_shown {
        let _ = write!(s, ".{frac:06}");
    }
    if offset_min == 0 {
        s.push('Z');
    } else {
        let sign = if offset_min < 0 { '-' } else { '+' };
        let a = offset_min.abs();
        let _ = write!(s, "{sign}{:02}:{:02}", a / 60, a % 60);
    }
    s
}

/// A JSON string literal.
fn js(s: &str) -> String {
    serde_json::to_string(s).expect("a string always serializes")
}

/// Decimal text of an amount in micro-dollars, e.g. 4500 -> "0.004500".
fn micro_usd(v: u64) -> String {
    format!("{}.{:06}", v / 1_000_000, v % 1_000_000)
}

struct Tenant {
    id: &'static str,
    /// Per-mille of model calls that go to the expensive model.
    premium: u64,
    workflows: &'static [&'static str],
}

const TENANTS: &[Tenant] = &[
    Tenant {
        id: "acme",
        premium: 200,
        workflows: &["refund_request", "support_reply", "invoice_triage"],
    },
    Tenant {
        id: "globex",
        premium: 850,
        workflows: &["data_cleanup", "invoice_triage"],
    },
    Tenant {
        id: "initech",
        premium: 300,
        workflows: &["support_reply", "refund_request"],
    },
    Tenant {
        id: "umbrella",
        premium: 400,
        workflows: &["data_cleanup", "support_reply"],
    },
    Tenant {
        id: "hooli",
        premium: 150,
        workflows: &["support_reply", "invoice_triage", "refund_request"],
    },
];

const TOOLS: &[(&str, &str)] = &[
    ("crm.lookup", "read"),
    ("kb.search", "read"),
    ("refund.issue", "write"),
    ("email.send", "write"),
    ("ticket.update", "write"),
];

const OFFSETS: &[i64] = &[330, -480, 60, -300];

fn prices_csv(start: i64) -> String {
    let change = date_text(start + 2); // the Wednesday of the first week
    format!(
        "model,provider,effective_from,input_usd_per_mtok,cached_input_usd_per_mtok,output_usd_per_mtok\n\
         gpt-4.1,openai,2026-01-01,2.00,0.50,8.00\n\
         gpt-4.1,openai,{change},1.75,0.44,7.00\n\
         claude-sonnet-4,anthropic,2026-01-01,3.00,0.30,15.00\n\
         gemini-2.5-flash,google,2026-01-01,0.30,,2.50\n"
    )
}

/// Plans: acme, hooli and initech pay a fee and earn well; globex pays only
/// per success, about what its premium-model runs cost, so its margin goes
/// negative in some weeks and not others; umbrella has no plan at all (a
/// negative account every week it runs). initech's plan changes mid-month.
fn plans_csv(start: i64) -> String {
    let (y, m, _) = civil_from_days(start);
    let mid_month = format!("{y:04}-{m:02}-16");
    format!(
        "tenant_id,effective_from,price_per_success_usd,monthly_fee_usd\n\
         acme,2026-01-01,0.90,500.00\n\
         globex,2026-01-01,0.12,0\n\
         initech,2026-01-01,0.40,200.00\n\
         initech,{mid_month},0.60,200.00\n\
         hooli,2026-01-01,0.75,1000.00\n"
    )
}

/// Workflow policies: every tenant's support_reply allows what it uses and
/// forbids refunds; refund_request wants an approval before a refund;
/// invoice_triage sets no cost cap except hooli's own row; data_cleanup has
/// a row for globex only (umbrella's runs have no policy), whose cap goes
/// up from 0.10 to 0.30 USD on the second week's Wednesday.
fn policies_csv(start: i64) -> String {
    let change = date_text(start + 9);
    format!(
        "tenant_id,workflow,effective_from,allowed_tools,forbidden_tools,approval_required_tools,max_tool_calls_per_run,max_cost_usd_per_run\n\
         *,support_reply,2026-01-01,crm.lookup|kb.search|email.send|ticket.update,refund.issue,,4,1.00\n\
         *,refund_request,2026-01-01,crm.lookup|kb.search|refund.issue|email.send,,refund.issue,5,0.40\n\
         *,invoice_triage,2026-01-01,crm.lookup|kb.search|ticket.update|email.send,refund.issue,,5,\n\
         hooli,invoice_triage,2026-01-01,crm.lookup|kb.search|ticket.update|email.send,refund.issue,,5,0.50\n\
         globex,data_cleanup,2026-01-01,crm.lookup|kb.search|ticket.update,email.send|refund.issue,,3,0.10\n\
         globex,data_cleanup,{change},crm.lookup|kb.search|ticket.update,email.send|refund.issue,,3,0.30\n"
    )
}

/// Writes the sample into `out` (created if missing).
pub fn generate(out: &Path, opts: &SampleOptions) -> std::io::Result<SampleSummary> {
    std::fs::create_dir_all(out)?;
    let (y, m, d) = opts.start_date;
    let start = days_from_civil(y, m, d);
    let prices = out.join("model_prices.csv");
    let plans = out.join("customer_plans.csv");
    let policies = out.join("workflow_policies.csv");
    let events_path = out.join("events.ndjson");
    std::fs::write(&prices, prices_csv(start))?;
    std::fs::write(&plans, plans_csv(start))?;
    std::fs::write(&policies, policies_csv(start))?;

    let mut g = Generator {
        out: BufWriter::with_capacity(1 << 20, std::fs::File::create(&events_path)?),
        rng: Rng(opts.seed ^ 0xA5A5_5A5A_0123_4567),
        opts: opts.clone(),
        summary: SampleSummary::default(),
        seq: 0,
        last_valid: None,
        bad_kind: 0,
        lines_since_bad: 0,
    };
    let span = 28 * 86_400_000_000i64;
    for run in 0..opts.runs {
        let base = start * 86_400_000_000
            + span * i64::try_from(run).unwrap_or(i64::MAX)
                / i64::try_from(opts.runs.max(1)).unwrap_or(1);
        let jitter = g.rng.below(600_000_000) as i64;
        g.run(run, base + jitter)?;
    }
    g.out.flush()?;
    drop(g.out);
    let mut summary = g.summary;
    summary.runs = opts.runs;
    let events_path = if opts.otlp {
        let traces = out.join("traces.json");
        summary.spans = Some(otlp::write_otlp(&events_path, &traces)?);
        std::fs::remove_file(&events_path)?;
        traces
    } else {
        events_path
    };
    summary.files = vec![events_path, prices, plans, policies];
    Ok(summary)
}

struct Generator {
    out: BufWriter<std::fs::File>,
    rng: Rng,
    opts: SampleOptions,
    summary: SampleSummary,
    seq: u64,
    /// The last valid line written and its id, to repeat.
    last_valid: Option<String>,
    bad_kind: u32,
    lines_since_bad: u32,
}

impl Generator {
    fn run(&mut self, run: u64, t0: i64) -> std::io::Result<()> {
        let tenant = &TENANTS[self.rng.below(TENANTS.len() as u64) as usize];
        let workflow = *self.rng.pick(tenant.workflows);
        let version = if self.rng.chance(450) {
            "v1.5.0"
        } else {
            "v1.4.0"
        };
        let run_id = format!("run-{run:06}");
        let mut t = t0;
        let step = |rng: &mut Rng| rng.range(200_000, 20_000_000) as i64;
        // Readiness faults: a generator of their own, so the main one (and
        // with it every event, id and cost) is unchanged.
        let mut side = Rng(self.opts.seed ^ 0x0DD5_EED5_1DE5_0000 ^ run.wrapping_mul(0x9E37_79B9));
        let disciplined = workflow == "support_reply";

        let with_prompt = self.rng.chance(500);
        let prompt = if with_prompt || disciplined {
            format!(",\"prompt_version\":\"p{}\"", 1 + run % 3)
        } else {
            String::new()
        };
        self.event(
            tenant.id,
            &run_id,
            "run_started",
            t,
            &format!(
                "\"workflow\":{},\"agent_version\":\"{version}\"{prompt}",
                js(workflow)
            ),
        )?;

        let calls = self.rng.range(1, 6);
        let mut trouble = 0;
        for _ in 0..calls {
            t += step(&mut self.rng);
            let (model, provider) = if self.rng.chance(15) {
                ("local-llama-70b", "self-hosted")
            } else if self.rng.chance(tenant.premium) {
                if self.rng.chance(500) {
                    ("claude-sonnet-4", "anthropic")
                } else {
                    ("gpt-4.1", "openai")
                }
            } else {
                ("gemini-2.5-flash", "google")
            };
            let input = self.rng.range(200, 20_000);
            let output = self.rng.range(50, 2_000);
            // Now and then a call that does not name its provider: the run
            // cannot be replayed.
            let provider = if !disciplined && side.chance(40) {
                String::new()
            } else {
                format!("\"provider\":\"{provider}\",")
            };
            let mut f = format!(
                "\"model\":\"{model}\",{provider}\"input_tokens\":{input},\"output_tokens\":{output},\"latency_ms\":{}",
                self.rng.range(300, 9_000)
            );
            if self.rng.chance(400) {
                let _ = write!(f, ",\"cached_input_tokens\":{}", self.rng.below(input + 1));
            }
            if self.rng.chance(300) {
                let _ = write!(f, ",\"reasoning_tokens\":{}", self.rng.below(output + 1));
            }
            if self.rng.chance(100) {
                let cost = self.rng.range(100, 90_000);
                if self.rng.chance(500) {
                    let _ = write!(f, ",\"cost_usd\":{}", micro_usd(cost));
                } else {
                    let _ = write!(f, ",\"cost_usd\":\"{}\"", micro_usd(cost));
                }
            }
            if self.rng.chance(30) {
                f.push_str(",\"status\":\"error\"");
                trouble += 1;
            }
            if self.rng.chance(40) {
                f.push_str(",\"cache_hit\":true");
            }
            self.event(tenant.id, &run_id, "model_call", t, &f)?;
        }

        for _ in 0..self.rng.below(6) {
            t += step(&mut self.rng);
            let (tool, access) = *self.rng.pick(TOOLS);
            if access == "write" && self.rng.chance(80) {
                let rule = if tool == "refund.issue" {
                    "no_refund_over_500"
                } else {
                    "no_external_email"
                };
                self.event(
                    tenant.id,
                    &run_id,
                    "policy_block",
                    t,
                    &format!("\"tool\":\"{tool}\",\"rule\":\"{rule}\",\"access\":\"write\""),
                )?;
                trouble += 1;
                continue;
            }
            if access == "write" && self.rng.chance(150) {
                self.event(
                    tenant.id,
                    &run_id,
                    "approval",
                    t,
                    &format!("\"decision\":\"requested\",\"tool\":\"{tool}\""),
                )?;
                t += step(&mut self.rng);
                let decision = if self.rng.chance(200) {
                    "rejected"
                } else {
                    "approved"
                };
                self.event(tenant.id, &run_id, "approval", t, &format!(
                    "\"decision\":\"{decision}\",\"tool\":\"{tool}\",\"approver\":\"ops@{}.example\"",
                    tenant.id
                ))?;
            }
            let status = if self.rng.chance(60) {
                trouble += 1;
                "error"
            } else if self.rng.chance(20) {
                trouble += 1;
                "timeout"
            } else {
                "ok"
            };
            // support_reply never issues refunds itself: it updates the ticket.
            let tool = if disciplined && tool == "refund.issue" {
                "ticket.update"
            } else {
                tool
            };
            let mut f = format!(
                "\"tool\":\"{tool}\",\"access\":\"{access}\",\"status\":\"{status}\",\"latency_ms\":{}",
                self.rng.range(20, 3_000)
            );
            // Now and then a write without an idempotency key.
            if access == "write" && (disciplined || !side.chance(120)) {
                let _ = write!(f, ",\"idempotency_key\":\"{run_id}-{tool}\"");
            }
            if self.rng.chance(200) {
                let _ = write!(
                    f,
                    ",\"cost_usd\":\"{}\"",
                    micro_usd(self.rng.range(100, 5_000))
                );
            }
            self.event(tenant.id, &run_id, "tool_call", t, &f)?;
        }

        if self.rng.chance(30) {
            return Ok(()); // an open run: never finished
        }
        t += step(&mut self.rng);
        let fail_rate = 120 + if version == "v1.5.0" { 40 } else { 0 } + trouble * 80;
        let outcome = if self.rng.chance(fail_rate.min(900)) {
            *self
                .rng
                .pick(&["failure", "failure", "escalated", "abandoned"])
        } else {
            "success"
        };
        let cap = if self.rng.chance(40) {
            format!(
                ",\"cap_hit\":\"{}\"",
                self.rng.pick(&["tokens", "cost", "tool_calls"])
            )
        } else {
            String::new()
        };
        self.event(
            tenant.id,
            &run_id,
            "run_finished",
            t,
            &format!("\"outcome\":\"{outcome}\"{cap}"),
        )?;
        if self.rng.chance(15) {
            // Finished again later: the latest run_finished wins.
            let later = t + self.rng.range(3_600, 3 * 86_400) as i64 * 1_000_000;
            self.event(
                tenant.id,
                &run_id,
                "run_finished",
                later,
                "\"outcome\":\"success\"",
            )?;
        }
        if self.rng.chance(30) {
            let later = t + self.rng.range(86_400, 3 * 86_400) as i64 * 1_000_000;
            let kind = if self.rng.chance(700) {
                "override"
            } else {
                "rollback"
            };
            self.event(tenant.id, &run_id, "human_override", later, &format!(
                "\"kind\":\"{kind}\",\"actor\":\"supervisor@{}.example\",\"reason\":\"customer complaint\"",
                tenant.id
            ))?;
        }
        if self.rng.chance(20) {
            let later = t + self.rng.range(60, 86_400) as i64 * 1_000_000;
            let kind = *self
                .rng
                .pick(&["bad_run_report", "thumbs_up", "thumbs_down"]);
            self.event(
                tenant.id,
                &run_id,
                "feedback",
                later,
                &format!("\"kind\":\"{kind}\",\"note\":\"from the sample\""),
            )?;
        }
        Ok(())
    }

    /// Writes one valid event, now and then with an offset timestamp,
    /// attributes or an unknown field; then maybe a bad line or a repeat.
    fn event(
        &mut self,
        tenant: &str,
        run_id: &str,
        event_type: &str,
        micros: i64,
        fields: &str,
    ) -> std::io::Result<()> {
        self.seq += 1;
        let id = format!("evt-{:x}-{}", self.opts.seed, self.seq);
        let offset = if self.rng.chance(100) {
            *self.rng.pick(OFFSETS)
        } else {
            0
        };
        let ts = ts_text(micros - micros % 1000, offset, self.rng.chance(300));
        let mut extra = String::new();
        if self.rng.chance(80) {
            let region = self.rng.pick(&["eu-west-1", "us-east-1", "ap-south-1"]);
            let _ = write!(
                extra,
                ",\"attributes\":{{\"region\":\"{region}\",\"channel\":\"email\"}}"
            );
        }
        if self.rng.chance(20) {
            let _ = write!(extra, ",\"trace_id\":\"tr-{:016x}\"", self.rng.next());
        }
        let line = if self.rng.chance(50) {
            // Other key order and spacing: still one valid event.
            format!(
                "{{ \"run_id\": {}, \"tenant_id\": \"{tenant}\", {fields}, \"ts\": \"{ts}\", \"event_type\": \"{event_type}\", \"event_id\": \"{id}\"{extra} }}",
                js(run_id)
            )
        } else {
            format!(
                "{{\"event_id\":\"{id}\",\"event_type\":\"{event_type}\",\"ts\":\"{ts}\",\"tenant_id\":\"{tenant}\",\"run_id\":{},{fields}{extra}}}",
                js(run_id)
            )
        };
        writeln!(self.out, "{line}")?;
        self.summary.events += 1;
        if self.opts.bad_lines {
            self.lines_since_bad += 1;
            if self.lines_since_bad >= 80 + (self.rng.below(40) as u32) {
                self.lines_since_bad = 0;
                self.bad_line(tenant, run_id, &ts)?;
            }
            self.last_valid = Some(line);
        }
        Ok(())
    }

    fn bad_line(&mut self, tenant: &str, run_id: &str, ts: &str) -> std::io::Result<()> {
        let kind = (self.bad_kind + 13) % 14; // repeats come first
        self.bad_kind = (self.bad_kind + 1) % 14;
        let id = format!("bad-{:x}-{}", self.opts.seed, self.seq);
        let head = format!(
            "\"event_id\":\"{id}\",\"tenant_id\":\"{tenant}\",\"run_id\":{},\"ts\":\"{ts}\"",
            js(run_id)
        );
        let line = match kind {
            0 => {
                format!("{{{head},\"event_type\":\"model_call\",\"model\":\"gpt-4.1\",\"input_tok")
            }
            1 => format!("[{{{head},\"event_type\":\"feedback\",\"kind\":\"thumbs_up\"}}]"),
            2 => format!(
                "{{\"event_id\": NaN, \"event_type\":\"feedback\",\"kind\":\"thumbs_up\",\"ts\":\"{ts}\"}}"
            ),
            3 => format!(
                "{{\"event_id\":\"{id}\",\"event_type\":\"feedback\",\"kind\":\"thumbs_up\",\"tenant_id\":\"{tenant}\",\"run_id\":\"r\"}}"
            ),
            4 => format!(
                "{{{head},\"event_type\":\"model_call\",\"model\":\"gpt-4.1\",\"input_tokens\":\"800\",\"output_tokens\":10}}"
            ),
            5 => format!(
                "{{{head},\"event_type\":\"model_call\",\"model\":\"gpt-4.1\",\"input_tokens\":800.0,\"output_tokens\":10}}"
            ),
            6 => format!(
                "{{{head},\"event_type\":\"model_call\",\"model\":\"gpt-4.1\",\"input_tokens\":800,\"output_tokens\":-5}}"
            ),
            7 => format!(
                "{{{head},\"event_type\":\"model_call\",\"model\":\"gpt-4.1\",\"input_tokens\":80,\"output_tokens\":5,\"cached_input_tokens\":90}}"
            ),
            8 => format!("{{{head},\"event_type\":\"model_cal\",\"model\":\"gpt-4.1\"}}"),
            9 => format!(
                "{{\"event_id\":\"{id}\",\"event_type\":\"feedback\",\"kind\":\"thumbs_down\",\"tenant_id\":\"{}\",\"run_id\":\"r\",\"ts\":\"{ts}\"}}",
                self.rng.pick(&["../etc", "acme corp"])
            ),
            10 => format!(
                "{{\"event_id\":\"{id}\",\"event_type\":\"feedback\",\"kind\":\"thumbs_up\",\"tenant_id\":\"{tenant}\",\"run_id\":\"r\",\"ts\":\"2026-13-45T99:00:00Z\"}}"
            ),
            11 => format!(
                "{{{head},\"event_type\":\"tool_call\",\"tool\":\"kb.search\",\"access\":\"read\",\"status\":\"ok\",\"cost_usd\":\"0.0000000000001\"}}"
            ),
            12 => format!(
                "{{{head},\"event_type\":\"run_started\",\"workflow\":\"x\",\"attributes\":{{\"trace_id\":\"a\"}},\"trace_id\":\"b\"}}"
            ),
            _ => {
                // Repeats of the previous valid line: an exact one with other
                // spacing, then a conflicting one with a changed value.
                if let Some(prev) = self.last_valid.clone() {
                    writeln!(self.out, "{}", prev.replacen(':', ": ", 1))?;
                    self.summary.duplicates += 1;
                    let conflicting = prev.replacen('}', ",\"note_conflict\":\"changed\"}", 1);
                    writeln!(self.out, "{conflicting}")?;
                    self.summary.conflicting += 1;
                }
                writeln!(self.out)?; // a blank line: skipped, not counted
                return Ok(());
            }
        };
        writeln!(self.out, "{line}")?;
        self.summary.bad_lines += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let p =
            std::env::temp_dir().join(format!("agentledger-sample-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        p
    }

    #[test]
    fn day_math_round_trips() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2026, 10, 5), 20_731);
        for day in -1000..40_000 {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
        }
    }

    #[test]
    fn timestamps_keep_the_instant_in_any_offset() {
        let t = days_from_civil(2026, 10, 5) * 86_400_000_000 + 30 * 60_000_000;
        assert_eq!(ts_text(t, 0, false), "2026-10-05T00:30:00Z");
        assert_eq!(ts_text(t, -60, true), "2026-10-04T23:30:00.000000-01:00");
        assert_eq!(ts_text(t, 330, false), "2026-10-05T06:00:00+05:30");
    }

    #[test]
    fn same_seed_same_bytes_and_counts_add_up() {
        let (a, b, c) = (tmp("a"), tmp("b"), tmp("c"));
        let opts = SampleOptions {
            runs: 200,
            ..SampleOptions::default()
        };
        let sa = generate(&a, &opts).unwrap();
        generate(&b, &opts).unwrap();
        generate(
            &c,
            &SampleOptions {
                seed: 43,
                ..opts.clone()
            },
        )
        .unwrap();
        let ea = std::fs::read_to_string(a.join("events.ndjson")).unwrap();
        assert_eq!(
            ea,
            std::fs::read_to_string(b.join("events.ndjson")).unwrap()
        );
        assert_ne!(
            ea,
            std::fs::read_to_string(c.join("events.ndjson")).unwrap()
        );
        let non_blank = ea.lines().filter(|l| !l.trim().is_empty()).count() as u64;
        assert_eq!(
            non_blank,
            sa.events + sa.bad_lines + sa.duplicates + sa.conflicting
        );
        assert!(
            sa.bad_lines >= 14 && sa.duplicates > 0 && sa.conflicting > 0,
            "{sa:?}"
        );
        assert!(ea.contains("local-llama-70b"));
        let policies = std::fs::read_to_string(a.join("workflow_policies.csv")).unwrap();
        assert!(policies.starts_with("tenant_id,workflow,effective_from,allowed_tools,forbidden_tools,approval_required_tools,max_tool_calls_per_run,max_cost_usd_per_run\n"));
        assert!(
            ea.contains("\"access\":\"write\"")
                && !ea
                    .lines()
                    .all(|l| !l.contains("\"access\":\"write\"") || l.contains("idempotency_key"))
        );
        let prices = std::fs::read_to_string(a.join("model_prices.csv")).unwrap();
        assert!(prices.starts_with("model,provider,effective_from,input_usd_per_mtok,cached_input_usd_per_mtok,output_usd_per_mtok\n"));
        assert!(!prices.contains("local-llama-70b"));
        for d in [a, b, c] {
            let _ = std::fs::remove_dir_all(d);
        }
    }

    #[test]
    fn clean_samples_have_only_valid_distinct_events() {
        let dir = tmp("clean");
        let s = generate(
            &dir,
            &SampleOptions {
                runs: 100,
                bad_lines: false,
                ..SampleOptions::default()
            },
        )
        .unwrap();
        let text = std::fs::read_to_string(dir.join("events.ndjson")).unwrap();
        assert_eq!(text.lines().count() as u64, s.events);
        assert_eq!(s.bad_lines + s.duplicates + s.conflicting, 0);
        let _ = std::fs::remove_dir_all(dir);
    }
}
