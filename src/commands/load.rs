//! `agentledger load prices FILE`, `agentledger load plans FILE` and
//! `agentledger load policies FILE`.

use std::process::ExitCode;

use agentledger_ingest::ReferenceKind;
use agentledger_lake::Lake;

use crate::cli::{LoadArgs, LoadTable};

pub async fn run(lake: &Lake, args: LoadArgs) -> anyhow::Result<ExitCode> {
    let (kind, file) = match &args.table {
        LoadTable::Prices { file } => (ReferenceKind::Prices, file),
        LoadTable::Plans { file } => (ReferenceKind::Plans, file),
        LoadTable::Policies { file } => (ReferenceKind::Policies, file),
    };
    let s = agentledger_batch::ops::load(lake, kind, std::path::Path::new(file)).await?;
    println!(
        "loaded {} rows into {} from {} (lake version {})",
        s.rows, s.table, s.file, s.version
    );
    Ok(ExitCode::SUCCESS)
}
