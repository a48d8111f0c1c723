//! Writing a query's rows where and how the user asked.

use std::io::Write;
use std::path::Path;

use agentledger_reports::export::{Format, write_parquet, write_stream};
use anyhow::{Context, bail};
use datafusion::prelude::DataFrame;

use crate::cli::OutputFormat;

/// The export format for `--format`, checking that parquet has `--out`.
pub fn output_format(format: OutputFormat, out: Option<&Path>) -> anyhow::Result<Format> {
    let format = match format {
        OutputFormat::Table => Format::Table,
        OutputFormat::Csv => Format::Csv,
        OutputFormat::Json => Format::Json,
        OutputFormat::Parquet => Format::Parquet,
    };
    if format == Format::Parquet && out.is_none() {
        bail!("--format parquet needs --out FILE");
    }
    Ok(format)
}

/// Runs `df` and writes its rows to `out` (or stdout).
pub async fn emit(df: DataFrame, format: Format, out: Option<&Path>) -> anyhow::Result<()> {
    let stream = df.execute_stream().await?;
    match (format, out) {
        (Format::Parquet, Some(path)) => {
            let rows = write_parquet(stream, path).await?;
            eprintln!("wrote {rows} rows to {}", path.display());
        }
        (_, Some(path)) => {
            let mut file = std::io::BufWriter::new(
                std::fs::File::create(path)
                    .with_context(|| format!("cannot create {}", path.display()))?,
            );
            write_stream(stream, format, &mut file).await?;
            file.flush()?;
        }
        (_, None) => {
            let mut stdout = std::io::stdout().lock();
            write_stream(stream, format, &mut stdout).await?;
        }
    }
    Ok(())
}
