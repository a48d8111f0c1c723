//! `agentledger sample`: deterministic and ingestible.

use crate::common::Env;

#[test]
fn the_same_seed_gives_the_same_bytes_and_the_files_load() {
    let env = Env::new();
    let a = env.path("a");
    let b = env.path("b");
    env.ok(&[
        "sample",
        "--out",
        a.to_str().unwrap(),
        "--runs",
        "40",
        "--seed",
        "3",
    ]);
    env.ok(&[
        "sample",
        "--out",
        b.to_str().unwrap(),
        "--runs",
        "40",
        "--seed",
        "3",
    ]);
    for f in [
        "events.ndjson",
        "model_prices.csv",
        "customer_plans.csv",
        "workflow_policies.csv",
    ] {
        assert_eq!(
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
            "{f}"
        );
    }
    env.ok(&[
        "load",
        "prices",
        a.join("model_prices.csv").to_str().unwrap(),
    ]);
    env.ok(&[
        "load",
        "plans",
        a.join("customer_plans.csv").to_str().unwrap(),
    ]);
    env.ok(&[
        "load",
        "policies",
        a.join("workflow_policies.csv").to_str().unwrap(),
    ]);
    let s = env.ingest(&[&a.join("events.ndjson")]);
    assert!(s["stored"].as_u64().unwrap() > 200, "{s}");
    assert!(
        env.scalar("SELECT count(DISTINCT tenant_id) FROM events")
            .parse::<u64>()
            .unwrap()
            >= 4
    );
}

#[test]
fn sample_data_is_what_sample_writes_by_default() {
    let env = Env::new();
    let out = env.path("default");
    env.ok(&["sample", "--out", out.to_str().unwrap()]);
    for f in [
        "events.ndjson",
        "model_prices.csv",
        "customer_plans.csv",
        "workflow_policies.csv",
    ] {
        assert!(
            std::fs::read(out.join(f)).unwrap() == std::fs::read(crate::common::sample(f)).unwrap(),
            "sample-data/{f} is not what `agentledger sample --out sample-data` writes"
        );
    }
}
