//! SPEC section 2: reference tables are validated whole, replaced
//! atomically, and earlier versions are kept.

use crate::common::{Env, data_files};

const HEADER: &str = "model,provider,effective_from,input_usd_per_mtok,cached_input_usd_per_mtok,output_usd_per_mtok\n";

#[test]
fn a_good_file_replaces_the_table_and_old_versions_stay() {
    let env = Env::new();
    let v1 = env.write(
        "p1.csv",
        &format!("{HEADER}gpt-4.1,openai,2026-10-01,2.00,0.50,8.00\n"),
    );
    let out = env.ok(&["load", "prices", v1.to_str().unwrap()]);
    assert!(out.contains("loaded 1 rows into model_prices"), "{out}");
    let v2 = env.write(
        "p2.csv",
        &format!(
            "{HEADER}gpt-4.1,openai,2026-10-01,2.00,,8.00\ngpt-4.1,openai,2026-10-07,1.750000,,7\n"
        ),
    );
    env.ok(&["load", "prices", v2.to_str().unwrap()]);
    let rows = env.query(
        "SELECT CAST(effective_from AS VARCHAR) AS d, input_usd_per_mtok AS i, cached_input_usd_per_mtok AS c \
         FROM model_prices ORDER BY effective_from",
    );
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1]["d"], "2026-10-07");
    assert_eq!(rows[1]["i"], "1.750000000000");
    assert!(rows[0]["c"].is_null());
    let files = data_files(&env.lake(), "model_prices");
    assert_eq!(files.len(), 2, "both versions kept: {files:?}");
    assert!(
        files[0].starts_with("model_prices/version=1/")
            && files[1].starts_with("model_prices/version=2/")
    );
}

#[test]
fn a_bad_file_is_refused_whole_and_the_table_in_force_stays() {
    let env = Env::new();
    let plans = "tenant_id,effective_from,price_per_success_usd,monthly_fee_usd\n";
    let good = env.write("c1.csv", &format!("{plans}acme,2026-10-01,0.45,199\n"));
    env.ok(&["load", "plans", good.to_str().unwrap()]);
    for (body, expect) in [
        (
            "acme,2026-11-01,0.50,199\nglobex,2026-10-01,-1,0\n",
            "line 3",
        ),
        (
            "acme,2026-11-01,0.50,199\nacme,2026-11-01,0.60,199\n",
            "second row for tenant 'acme'",
        ),
        (
            "acme,2026-11-01,0.1234567890123,199\n",
            "13 fractional digits",
        ),
        ("acme,01/11/2026,0.5,199\n", "not a date"),
    ] {
        let bad = env.write("c2.csv", &format!("{plans}{body}"));
        let err = env.fails(&["load", "plans", bad.to_str().unwrap()]);
        assert!(err.contains("c2.csv") && err.contains(expect), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert_eq!(env.scalar("SELECT count(*) FROM customer_plans"), "1");
        assert_eq!(
            env.scalar("SELECT price_per_success_usd FROM customer_plans"),
            "0.450000000000"
        );
    }
}
