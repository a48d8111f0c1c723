//! The version of the definitions that stored run parts were made with.
//!
//! A `run_parts` file holds what `run_parts.sql` computed (with the pricing
//! of `model_calls.sql`, which it reads), merged as `merge_parts.sql` merges,
//! or what the Rust mirror of both in [`crate::parts`] computed. Every
//! commit that writes parts records [`definitions`] in its cover
//! (`"run_parts": {"definitions": "…"}`), and a binary whose definitions
//! differ treats those parts as stale, like parts made before a price load
//! (see `agentledger_lake::log::RunCoverage`): sessions compute the runs
//! they held from the events, and the next refresh rebuilds the parts. So a
//! corrected metric corrects past answers too, not only new ingests.
//!
//! The version is a hash of the text of those SQL files (whole-line `--`
//! comments, trailing blanks and blank lines left out, so a clearer header
//! rebuilds nothing) and of [`crate::parts::PARTS_CODE_VERSION`], which is
//! bumped by hand whenever the Rust mirror's arithmetic changes.

use std::sync::LazyLock;

use crate::parts::PARTS_CODE_VERSION;

/// The SQL that decides what a stored part holds, by file name: the parts
/// query, the merge of parts, and the pricing the parts query reads.
pub const DEFINITION_SQL: &[(&str, &str)] = &[
    ("run_parts.sql", crate::RUN_PARTS_SQL),
    ("merge_parts.sql", crate::MERGE_PARTS_SQL),
    ("model_calls.sql", crate::MODEL_CALLS_SQL),
];

/// Mixed into the hash when set: a binary "with other definitions" for
/// tests of an upgrade, without building one. Not for production use.
pub const SALT_VAR: &str = "AGENTLEDGER_DEFINITIONS_SALT";

static DEFINITIONS: LazyLock<String> =
    LazyLock::new(|| compute(std::env::var(SALT_VAR).ok().as_deref()));

/// The version of this binary's run-parts definitions: 32 hex digits,
/// computed once per process.
pub fn definitions() -> &'static str {
    &DEFINITIONS
}

/// The hash of [`DEFINITION_SQL`], [`PARTS_CODE_VERSION`] and `salt`.
fn compute(salt: Option<&str>) -> String {
    hash(DEFINITION_SQL, PARTS_CODE_VERSION, salt)
}

fn hash(sql: &[(&str, &str)], code: u32, salt: Option<&str>) -> String {
    let mut text = String::new();
    for (name, sql) in sql {
        text.push_str(name);
        text.push('\0');
        for line in sql.lines().map(str::trim_end) {
            if !line.is_empty() && !line.trim_start().starts_with("--") {
                text.push_str(line);
                text.push('\n');
            }
        }
        text.push('\0');
    }
    text.push_str(&format!("parts code {code}\0"));
    if let Some(salt) = salt {
        text.push_str(&format!("salt {salt}\0"));
    }
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_are_a_stable_hash_that_a_salt_changes() {
        let plain = compute(None);
        assert_eq!(plain.len(), 32);
        assert!(plain.bytes().all(|b| b.is_ascii_hexdigit()), "{plain}");
        assert_eq!(plain, compute(None), "the same text gives the same hash");
        assert_ne!(plain, compute(Some("x")));
        assert_ne!(compute(Some("x")), compute(Some("y")));
        if std::env::var_os(SALT_VAR).is_none() {
            assert_eq!(definitions(), plain);
        }
    }

    #[test]
    fn code_and_sql_change_the_hash_and_comments_do_not() {
        let sql = "-- name: x\nSELECT a\nFROM t\n";
        let base = hash(&[("x.sql", sql)], 1, None);
        let commented = "-- name: x, clearer\n\n  -- more words\nSELECT a   \r\nFROM t";
        assert_eq!(base, hash(&[("x.sql", commented)], 1, None));
        assert_ne!(base, hash(&[("x.sql", "SELECT a + 1\nFROM t")], 1, None));
        assert_ne!(base, hash(&[("x.sql", "SELECT a FROM t")], 1, None));
        assert_ne!(base, hash(&[("x.sql", sql)], 2, None), "PARTS_CODE_VERSION");
        assert_ne!(base, hash(&[("y.sql", sql)], 1, None));
    }

    /// Every view the parts SQL reads is part of the definitions: a change
    /// to how a model call is priced must rebuild the parts.
    #[test]
    fn the_hash_covers_every_view_the_parts_sql_reads() {
        let included: Vec<&str> = DEFINITION_SQL.iter().map(|(_, sql)| *sql).collect();
        for (name, sql) in crate::VIEWS {
            let read = [crate::RUN_PARTS_SQL, crate::MERGE_PARTS_SQL]
                .iter()
                .any(|q| {
                    q.contains(&format!("FROM {name}")) || q.contains(&format!("JOIN {name}"))
                });
            if read {
                assert!(included.contains(sql), "{name} is read but not hashed");
            }
        }
        assert!(included.contains(&crate::MODEL_CALLS_SQL));
    }
}
