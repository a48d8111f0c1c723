//! A property test: `runs` is the same, column for column, however the
//! lake came to hold the events. Small event sets are generated (timestamp
//! ties and sub-microsecond digits, ids whose byte order differs from their
//! alphabetical order, late and repeated finishes, overrides, unpriced
//! calls, events of runs in two tenants) in a shuffled order, and `runs` is
//! read from three lakes:
//!
//! - every event in one ingest and no run parts: `runs` is computed by SQL
//!   from the events;
//! - one ingest that computes the parts of its own events while it stores
//!   them, holding two runs in memory (so runs are written out and met
//!   again), then a refresh;
//! - one ingest per event, each followed by a refresh that reads in buckets
//!   of three events, so runs are merged from many parts.
//!
//! `PROPTEST_CASES` sets the number of event sets (default 12).

use agentledger_ingest::ingest::{IngestOptions, ingest, ingest_observed};
use agentledger_ingest::reference::{ReferenceKind, load_reference};
use agentledger_lake::Lake;
use agentledger_queries::{PartsObserver, RefreshOptions, refresh_runs_with};
use proptest::prelude::*;

const PRICES: &str =
    "model,provider,effective_from,input_usd_per_mtok,cached_input_usd_per_mtok,output_usd_per_mtok
m1,acme,2026-03-01,3,0.3,15
m1,acme,2026-03-04,2.5,,10
";

/// One generated event, before it gets its id.
#[derive(Debug, Clone)]
struct Gen {
    tenant: usize,
    run: usize,
    /// Minutes after 2026-03-02T23:57Z (so runs cross a day and a week).
    minute: u32,
    /// Digits past the microsecond, truncated by ingest: ties.
    nanos: u32,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Started {
        workflow: usize,
        version: usize,
    },
    Model {
        priced: bool,
        input: u32,
        output: u32,
        cost: Option<u32>,
    },
    Tool {
        status: usize,
        cost: u32,
    },
    Finished {
        outcome: usize,
        cap: bool,
    },
    Override,
    Feedback,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        (0..3usize, 0..3usize).prop_map(|(workflow, version)| Kind::Started { workflow, version }),
        (
            any::<bool>(),
            0..2_000u32,
            0..500u32,
            proptest::option::of(0..90u32)
        )
            .prop_map(|(priced, input, output, cost)| Kind::Model {
                priced,
                input,
                output,
                cost
            }),
        (0..3usize, 0..20u32).prop_map(|(status, cost)| Kind::Tool { status, cost }),
        (0..4usize, any::<bool>()).prop_map(|(outcome, cap)| Kind::Finished { outcome, cap }),
        Just(Kind::Override),
        Just(Kind::Feedback),
    ]
}

fn event() -> impl Strategy<Value = Gen> {
    (
        0..2usize,
        0..4usize,
        0..8u32,
        prop_oneof![Just(0u32), Just(400u32), Just(999u32)],
        kind(),
    )
        .prop_map(|(tenant, run, minute, nanos, kind)| Gen {
            tenant,
            run,
            minute,
            nanos,
            kind,
        })
}

/// The NDJSON line of `g`, the `i`th event. Id prefixes sort differently
/// byte-wise ("B" < "a") than alphabetically.
fn line(i: usize, g: &Gen) -> String {
    let prefix = ["a", "B", "0", "z", "é"][i % 5];
    let start = chrono::DateTime::parse_from_rfc3339("2026-03-02T23:57:00Z").unwrap();
    let ts = start + chrono::Duration::minutes(i64::from(g.minute));
    let ts = format!("{}{:03}Z", ts.format("%Y-%m-%dT%H:%M:%S%.6f"), g.nanos);
    let common = format!(
        r#""event_id":"{prefix}{i}","ts":"{ts}","tenant_id":"t{}","run_id":"r{}""#,
        g.tenant, g.run
    );
    let own = match &g.kind {
        Kind::Started { workflow, version } => format!(
            r#""event_type":"run_started","workflow":"wf{workflow}","agent_version":"v{version}""#
        ),
        Kind::Model {
            priced,
            input,
            output,
            cost,
        } => {
            let model = if *priced { "m1" } else { "unpriced" };
            let cost = cost
                .map(|c| format!(r#","cost_usd":"0.{c:02}""#))
                .unwrap_or_default();
            format!(
                r#""event_type":"model_call","model":"{model}","input_tokens":{input},"output_tokens":{output},"cached_input_tokens":{}{cost}"#,
                input / 3
            )
        }
        Kind::Tool { status, cost } => format!(
            r#""event_type":"tool_call","tool":"crm","access":"write","status":"{}","cost_usd":"0.0{cost:02}""#,
            ["ok", "error", "timeout"][*status]
        ),
        Kind::Finished { outcome, cap } => format!(
            r#""event_type":"run_finished","outcome":"{}"{}"#,
            ["success", "failure", "escalated", "abandoned"][*outcome],
            if *cap { r#","cap_hit":"cost""# } else { "" }
        ),
        Kind::Override => r#""event_type":"human_override","kind":"rollback""#.to_string(),
        Kind::Feedback => r#""event_type":"feedback","kind":"bad_run_report""#.to_string(),
    };
    format!("{{{common},{own}}}")
}

async fn lake(dir: &std::path::Path, name: &str) -> Lake {
    let lake = Lake::open(dir.join(name).to_str().unwrap()).unwrap();
    let prices = dir.join("prices.csv");
    std::fs::write(&prices, PRICES).unwrap();
    load_reference(&lake, ReferenceKind::Prices, &prices)
        .await
        .unwrap();
    lake
}

fn write(dir: &std::path::Path, name: &str, lines: &[String]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path.display().to_string()
}

async fn runs(lake: &Lake) -> Vec<String> {
    let ctx = agentledger_queries::open_session(lake).await.unwrap();
    let batches = ctx
        .sql("SELECT * FROM runs ORDER BY tenant_id, run_id")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string()
        .lines()
        .map(str::to_string)
        .collect()
}

async fn refresh(lake: &Lake, chunk_rows: u64) {
    let options = RefreshOptions {
        chunk_rows,
        force: false,
        lease_wait: None,
    };
    refresh_runs_with(lake, options).await.unwrap();
}

async fn three_ways(lines: Vec<String>) -> [Vec<String>; 3] {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let all = write(d, "all.ndjson", &lines);
    let options = IngestOptions::default();

    // From the events, by SQL.
    let events = lake(d, "events").await;
    ingest(&events, std::slice::from_ref(&all), &options, None)
        .await
        .unwrap();

    // Parts computed by the ingest, two runs held at a time.
    let observed = lake(d, "observed").await;
    let (_, observer) = ingest_observed(
        &observed,
        std::slice::from_ref(&all),
        &options,
        None,
        PartsObserver::new(2),
    )
    .await
    .unwrap();
    assert!(observer.gave_up().is_none(), "{:?}", observer.gave_up());
    refresh(&observed, agentledger_transforms::runs::CHUNK_ROWS).await;

    // One ingest per event, parts merged from many.
    let split = lake(d, "split").await;
    for (i, l) in lines.iter().enumerate() {
        let one = write(d, &format!("one-{i}.ndjson"), std::slice::from_ref(l));
        ingest(&split, &[one], &options, None).await.unwrap();
        refresh(&split, 3).await;
    }
    [
        runs(&events).await,
        runs(&observed).await,
        runs(&split).await,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(12),
        ..ProptestConfig::default()
    })]

    #[test]
    fn runs_are_the_same_however_the_events_were_ingested(
        events in proptest::collection::vec(event(), 1..14).prop_shuffle()
    ) {
        let lines: Vec<String> = events.iter().enumerate().map(|(i, g)| line(i, g)).collect();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let [from_events, observed, split] = runtime.block_on(three_ways(lines.clone()));
        prop_assert!(from_events.len() > 3, "no runs: {from_events:?}\n{lines:#?}");
        prop_assert_eq!(&observed, &from_events, "observed parts\n{:#?}", lines);
        prop_assert_eq!(&split, &from_events, "split ingests\n{:#?}", lines);
    }
}
