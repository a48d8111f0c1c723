//! Results out of agentledger.
//!
//! [`export`] writes query results as a terminal table, CSV, a JSON array of
//! objects or Parquet. Every command that prints rows goes through it, so the
//! four formats behave the same everywhere: money stays decimal text, times
//! are RFC 3339 UTC, and CSV cells a spreadsheet would run as a formula are
//! escaped.
//!
//! [`weekly`] reads one ISO week's figures, [`report`] writes them as the
//! weekly margin report (HTML, charts from [`charts`], `margin.csv`,
//! `alerts.json`, `summary.json`) and [`webhook`] delivers the alerts once.
//! [`publish`] does both, for the `report` command and the batch alike.
//! [`readiness`] lays out SPEC section 8's checklist with its offending
//! runs, and [`timeline`] writes one run's evidence as a page.

pub mod charts;
pub mod export;
pub mod publish;
pub mod readiness;
pub mod report;
pub mod rows;
pub mod timeline;
pub mod webhook;
pub mod weekly;
