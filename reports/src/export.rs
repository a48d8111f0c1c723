//! Writing record batch streams in the formats analysts use.

use std::io::Write;

use arrow::array::{Array, ArrayRef};
use arrow::datatypes::{DataType, Field};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::physical_plan::SendableRecordBatchStream;
use futures::StreamExt;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

/// Result with this module's error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can fail while writing results.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The query failed while producing rows.
    #[error("{0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    /// Formatting rows failed.
    #[error("cannot format results: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// Writing Parquet failed.
    #[error("cannot write parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// Writing to the output failed.
    #[error("cannot write output: {0}")]
    Io(#[from] std::io::Error),
    /// The code reads a column that a query's answer does not have: the
    /// column was renamed or dropped in the query's SQL.
    #[error(
        "query {query} has no column {column} (its columns: {columns}); the SQL and the code that reads it disagree"
    )]
    MissingColumn {
        /// The query.
        query: String,
        /// The column the code reads.
        column: String,
        /// The columns the query has, comma-separated.
        columns: String,
    },
    /// A query's column holds another type than the code reads.
    #[error("column {column} of query {query} holds {found}, not {expected}")]
    ColumnType {
        /// The query.
        query: String,
        /// The column.
        column: String,
        /// What it holds.
        found: &'static str,
        /// What the code reads.
        expected: &'static str,
    },
}

/// The output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// An aligned table for a terminal.
    Table,
    /// CSV with a header row.
    Csv,
    /// One JSON array of objects, keys named as the columns.
    Json,
    /// A Parquet file (zstd).
    Parquet,
}

const TIMESTAMP_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6fZ";

fn format_options() -> FormatOptions<'static> {
    FormatOptions::default()
        .with_null("")
        .with_timestamp_tz_format(Some(TIMESTAMP_FORMAT))
}

/// Renders every column as text (how CSV and JSON see values). Decimals keep
/// all their digits; timestamps are RFC 3339 UTC.
fn cell_text(array: &ArrayRef) -> Result<Vec<Option<String>>> {
    let options = format_options();
    let formatter = ArrayFormatter::try_new(array.as_ref(), &options)?;
    Ok((0..array.len())
        .map(|i| array.is_valid(i).then(|| formatter.value(i).to_string()))
        .collect())
}

/// Every column of a batch as text, column by column.
fn batch_text(batch: &arrow::array::RecordBatch) -> Result<Vec<Vec<Option<String>>>> {
    batch.columns().iter().map(cell_text).collect()
}

/// Prefixes a cell that a spreadsheet would evaluate (`= + - @`, tab, CR)
/// with a single quote, as OWASP recommends for CSV injection. Plain
/// numbers such as `-1.5` are left alone so the data stays numeric.
pub fn escape_csv_formula(cell: &str) -> std::borrow::Cow<'_, str> {
    let risky = cell.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let numeric = cell.parse::<f64>().is_ok() && !cell.starts_with(['=', '@', '\t', '\r']);
    if risky && !numeric {
        std::borrow::Cow::Owned(format!("'{cell}"))
    } else {
        std::borrow::Cow::Borrowed(cell)
    }
}

/// Writes a stream of batches to `out` in `format` (not Parquet: use
/// [`write_parquet`]). Returns the number of rows written.
pub async fn write_stream(
    mut stream: SendableRecordBatchStream,
    format: Format,
    out: &mut dyn Write,
) -> Result<u64> {
    let schema = stream.schema();
    let mut rows = 0u64;
    match format {
        Format::Table => {
            let mut batches = Vec::new();
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                rows += batch.num_rows() as u64;
                batches.push(batch);
            }
            let table = arrow::util::pretty::pretty_format_batches_with_options(
                &batches,
                &format_options(),
            )?;
            if batches.is_empty() {
                let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                writeln!(out, "{}", names.join(" | "))?;
            } else {
                writeln!(out, "{table}")?;
            }
            writeln!(out, "{rows} row{}", if rows == 1 { "" } else { "s" })?;
        }
        Format::Csv => {
            let mut writer = csv::Writer::from_writer(&mut *out);
            let header: Vec<String> = schema
                .fields()
                .iter()
                .map(|f| escape_csv_formula(f.name()).into_owned())
                .collect();
            writer.write_record(&header).map_err(csv_err)?;
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                rows += batch.num_rows() as u64;
                let columns = batch_text(&batch)?;
                for r in 0..batch.num_rows() {
                    let record = columns.iter().map(|c| match &c[r] {
                        Some(v) => escape_csv_formula(v).into_owned(),
                        None => String::new(),
                    });
                    writer.write_record(record).map_err(csv_err)?;
                }
            }
            writer.flush()?;
            drop(writer);
        }
        Format::Json => {
            write!(out, "[")?;
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                let columns = batch_text(&batch)?;
                for r in 0..batch.num_rows() {
                    write!(out, "{}\n  {{", if rows == 0 { "" } else { "," })?;
                    for (c, (field, column)) in schema.fields().iter().zip(&columns).enumerate() {
                        if c > 0 {
                            write!(out, ", ")?;
                        }
                        write!(
                            out,
                            "{}: {}",
                            json_string(field.name()),
                            json_value(field, column[r].as_deref())
                        )?;
                    }
                    write!(out, "}}")?;
                    rows += 1;
                }
            }
            writeln!(out, "{}]", if rows == 0 { "" } else { "\n" })?;
        }
        Format::Parquet => unreachable!("parquet output goes through write_parquet"),
    }
    out.flush()?;
    Ok(rows)
}

fn csv_err(e: csv::Error) -> Error {
    match e.into_kind() {
        csv::ErrorKind::Io(io) => Error::Io(io),
        other => Error::Io(std::io::Error::other(format!("{other:?}"))),
    }
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string always serializes")
}

/// JSON for one cell: integers, floats and booleans as JSON values; money
/// (decimals), text, dates and times as strings, so no digit is lost to a
/// reader's binary floats.
fn json_value(field: &Field, text: Option<&str>) -> String {
    let Some(text) = text else {
        return "null".into();
    };
    match field.data_type() {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Boolean => text.to_string(),
        DataType::Float16 | DataType::Float32 | DataType::Float64 => {
            if text.parse::<f64>().is_ok_and(f64::is_finite) {
                text.to_string()
            } else {
                "null".into()
            }
        }
        _ => json_string(text),
    }
}

/// Writes a stream of batches as one Parquet file at `path`.
pub async fn write_parquet(
    mut stream: SendableRecordBatchStream,
    path: &std::path::Path,
) -> Result<u64> {
    let file = std::fs::File::create(path)?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
        .build();
    let mut writer = ArrowWriter::try_new(file, stream.schema(), Some(props))?;
    let mut rows = 0u64;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        rows += batch.num_rows() as u64;
        writer.write(&batch)?;
    }
    writer.close()?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_escaped_and_numbers_are_not() {
        assert_eq!(escape_csv_formula("=SUM(A1:A9)"), "'=SUM(A1:A9)");
        assert_eq!(escape_csv_formula("+cmd"), "'+cmd");
        assert_eq!(escape_csv_formula("@foo"), "'@foo");
        assert_eq!(escape_csv_formula("-2+3"), "'-2+3");
        assert_eq!(escape_csv_formula("-1.5"), "-1.5");
        assert_eq!(escape_csv_formula("acme"), "acme");
    }

    #[test]
    fn json_strings_escape_control_characters() {
        assert_eq!(json_string("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
    }
}
