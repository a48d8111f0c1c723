//! Query results as plain values, for code that lays them out.
//!
//! Each [`Row`] knows the query it came from and that query's columns, so
//! reading a column the query does not have (renamed or dropped in its SQL)
//! or one of another type is an error that names the column and the query,
//! never a silent 0, "" or `None`. A NULL in a column that exists reads as
//! the accessor documents.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float64Type, Int64Type, Schema, TimeUnit,
    TimestampMicrosecondType,
};

use crate::export::{Error, Result};

/// One cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// SQL NULL.
    Null,
    /// Text (and dates, as `YYYY-MM-DD`; times as RFC 3339 UTC with
    /// microseconds).
    Text(String),
    /// A whole number.
    Int(i64),
    /// A fraction (rates).
    Float(f64),
    /// Money: units of 10^-12 USD.
    Money(i128),
    /// A boolean.
    Bool(bool),
}

impl Cell {
    /// What the cell holds, for error messages.
    fn kind(&self) -> &'static str {
        match self {
            Cell::Null => "NULL",
            Cell::Text(_) => "text",
            Cell::Int(_) => "a whole number",
            Cell::Float(_) => "a fraction",
            Cell::Money(_) => "money",
            Cell::Bool(_) => "a boolean",
        }
    }
}

/// The query rows came from and its columns, shared by its rows.
#[derive(Debug)]
struct Columns {
    /// The query's name, as error messages give it.
    query: String,
    /// Column names in the query's order.
    names: Vec<String>,
    /// Position of each name in `names`.
    index: HashMap<String, usize>,
}

/// One row of a query's answer, by column name.
#[derive(Debug, Clone)]
pub struct Row {
    columns: Arc<Columns>,
    cells: Vec<Cell>,
}

impl Row {
    /// The name of the query the row came from.
    pub fn query(&self) -> &str {
        &self.columns.query
    }

    /// The row's columns and cells, in the query's order.
    pub fn cells(&self) -> impl Iterator<Item = (&str, &Cell)> {
        self.columns
            .names
            .iter()
            .map(String::as_str)
            .zip(&self.cells)
    }

    /// The cell of a column; an error when the query has no such column.
    pub fn cell(&self, name: &str) -> Result<&Cell> {
        match self.columns.index.get(name) {
            Some(&i) => Ok(&self.cells[i]),
            None => Err(Error::MissingColumn {
                query: self.columns.query.clone(),
                column: name.to_string(),
                columns: self.columns.names.join(", "),
            }),
        }
    }

    fn wrong_type(&self, name: &str, cell: &Cell, expected: &'static str) -> Error {
        Error::ColumnType {
            query: self.columns.query.clone(),
            column: name.to_string(),
            found: cell.kind(),
            expected,
        }
    }

    /// Text of a column (a whole number as its digits; "" when null).
    pub fn text(&self, name: &str) -> Result<String> {
        match self.cell(name)? {
            Cell::Text(s) => Ok(s.clone()),
            Cell::Int(i) => Ok(i.to_string()),
            Cell::Null => Ok(String::new()),
            other => Err(self.wrong_type(name, other, "text")),
        }
    }

    /// A whole number (0 when null).
    pub fn int(&self, name: &str) -> Result<i64> {
        match self.cell(name)? {
            Cell::Int(i) => Ok(*i),
            Cell::Null => Ok(0),
            other => Err(self.wrong_type(name, other, "a whole number")),
        }
    }

    /// A fraction, `None` when null.
    pub fn float(&self, name: &str) -> Result<Option<f64>> {
        match self.cell(name)? {
            Cell::Float(f) => Ok(Some(*f)),
            Cell::Null => Ok(None),
            other => Err(self.wrong_type(name, other, "a fraction")),
        }
    }

    /// Money in 10^-12 USD units, `None` when null.
    pub fn money(&self, name: &str) -> Result<Option<i128>> {
        match self.cell(name)? {
            Cell::Money(m) => Ok(Some(*m)),
            Cell::Null => Ok(None),
            other => Err(self.wrong_type(name, other, "money")),
        }
    }

    /// A boolean; false when null.
    pub fn flag(&self, name: &str) -> Result<bool> {
        match self.cell(name)? {
            Cell::Bool(b) => Ok(*b),
            Cell::Null => Ok(false),
            other => Err(self.wrong_type(name, other, "a boolean")),
        }
    }
}

/// Converts the batches of query `query` (a name for error messages) to
/// rows. Money must be `Decimal128(_, 12)`.
pub fn to_rows(query: &str, batches: &[RecordBatch]) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let mut columns: Option<(Arc<Schema>, Arc<Columns>)> = None;
    for batch in batches {
        let schema = batch.schema();
        let shared = match &columns {
            Some((seen, shared)) if *seen == schema => Arc::clone(shared),
            _ => {
                let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
                let index = names
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (n.clone(), i))
                    .collect();
                let shared = Arc::new(Columns {
                    query: query.to_string(),
                    names,
                    index,
                });
                columns = Some((Arc::clone(&schema), Arc::clone(&shared)));
                shared
            }
        };
        for r in 0..batch.num_rows() {
            let mut cells = Vec::with_capacity(batch.num_columns());
            for (field, column) in schema.fields().iter().zip(batch.columns()) {
                let cell = if column.is_null(r) {
                    Cell::Null
                } else {
                    match field.data_type() {
                        DataType::Utf8 => {
                            Cell::Text(column.as_string::<i32>().value(r).to_string())
                        }
                        DataType::Utf8View => {
                            Cell::Text(column.as_string_view().value(r).to_string())
                        }
                        DataType::LargeUtf8 => {
                            Cell::Text(column.as_string::<i64>().value(r).to_string())
                        }
                        DataType::Int64 => Cell::Int(column.as_primitive::<Int64Type>().value(r)),
                        DataType::Float64 => {
                            Cell::Float(column.as_primitive::<Float64Type>().value(r))
                        }
                        DataType::Boolean => Cell::Bool(column.as_boolean().value(r)),
                        DataType::Decimal128(_, 12) => {
                            Cell::Money(column.as_primitive::<Decimal128Type>().value(r))
                        }
                        DataType::Date32 => {
                            let days = column.as_primitive::<Date32Type>().value(r);
                            Cell::Text(
                                Date32Type::to_naive_date_opt(days)
                                    .map(|d| d.format("%Y-%m-%d").to_string())
                                    .unwrap_or_default(),
                            )
                        }
                        DataType::Timestamp(TimeUnit::Microsecond, _) => {
                            let micros = column.as_primitive::<TimestampMicrosecondType>().value(r);
                            Cell::Text(
                                chrono::DateTime::from_timestamp_micros(micros)
                                    .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
                                    .unwrap_or_default(),
                            )
                        }
                        other => {
                            return Err(Error::Io(std::io::Error::other(format!(
                                "column {} of query {query} has type {other}, which the report does not read",
                                field.name()
                            ))));
                        }
                    }
                };
                cells.push(cell);
            }
            rows.push(Row {
                columns: Arc::clone(&shared),
                cells,
            });
        }
    }
    Ok(rows)
}

/// Money as decimal text with 12 fractional digits.
pub use agentledger_queries::money_text;

/// Money for people: dollars with cents and thousands separators
/// (`-1,234.57`); amounts under a cent keep up to 6 digits.
pub fn money_display(units: i128) -> String {
    let sign = if units < 0 { "-" } else { "" };
    let abs = units.unsigned_abs();
    if abs != 0 && abs < 10_000_000_000 {
        // Under a cent: show what there is, to the micro-dollar.
        let micros = (abs + 500_000) / 1_000_000;
        return format!("{sign}0.{micros:06}");
    }
    let cents = (abs + 5_000_000_000) / 10_000_000_000;
    let dollars = (cents / 100).to_string();
    let mut grouped = String::new();
    for (i, ch) in dollars.chars().enumerate() {
        if i > 0 && (dollars.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    format!("{sign}{grouped}.{:02}", cents % 100)
}

/// Units of 10^-12 as a float (for charts only).
pub fn money_f64(units: i128) -> f64 {
    units as f64 / 1e12
}

#[cfg(test)]
mod tests {
    use super::*;

    use arrow::array::{
        ArrayRef, BooleanArray, Date32Array, Decimal128Array, Float64Array, Int64Array, StringArray,
    };
    use arrow::datatypes::Field;

    /// Two rows of every type `to_rows` reads, the second all NULL, with
    /// the money column named `margin`.
    fn batch(margin: &str) -> RecordBatch {
        let money = Decimal128Array::from(vec![Some(-2_500_000_000_000), None])
            .with_precision_and_scale(38, 12)
            .unwrap();
        let columns: Vec<(&str, ArrayRef)> = vec![
            (
                "week",
                Arc::new(Date32Array::from(vec![Some(20_514), None])),
            ),
            (
                "tenant_id",
                Arc::new(StringArray::from(vec![Some("t1"), None])),
            ),
            ("runs", Arc::new(Int64Array::from(vec![Some(3), None]))),
            (margin, Arc::new(money)),
            (
                "gross_margin",
                Arc::new(Float64Array::from(vec![Some(0.5), None])),
            ),
            (
                "ready",
                Arc::new(BooleanArray::from(vec![Some(true), None])),
            ),
        ];
        let fields: Vec<Field> = columns
            .iter()
            .map(|(name, a)| Field::new(*name, a.data_type().clone(), true))
            .collect();
        RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns.into_iter().map(|(_, a)| a).collect(),
        )
        .unwrap()
    }

    #[test]
    fn a_renamed_column_is_an_error_naming_the_column_and_the_query() {
        // The query calls margin_usd `margin` now.
        let rows = to_rows("weekly_totals", &[batch("margin")]).unwrap();
        let row = &rows[0];
        assert_eq!(row.query(), "weekly_totals");
        let text = row.money("margin_usd").unwrap_err().to_string();
        assert_eq!(
            text,
            "query weekly_totals has no column margin_usd (its columns: week, tenant_id, \
             runs, margin, gross_margin, ready); the SQL and the code that reads it disagree"
        );
        // Every accessor, on a row with values and on a row of NULLs.
        for row in &rows {
            let errors = [
                row.cell("margin_usd").map(|_| ()),
                row.text("margin_usd").map(|_| ()),
                row.int("margin_usd").map(|_| ()),
                row.float("margin_usd").map(|_| ()),
                row.money("margin_usd").map(|_| ()),
                row.flag("margin_usd").map(|_| ()),
            ];
            for e in errors {
                let e = e.unwrap_err();
                assert!(
                    matches!(&e, Error::MissingColumn { query, column, .. }
                        if query == "weekly_totals" && column == "margin_usd"),
                    "{e}"
                );
            }
        }
        // Named as the code reads it, the same column reads.
        let rows = to_rows("weekly_totals", &[batch("margin_usd")]).unwrap();
        assert_eq!(
            rows[0].money("margin_usd").unwrap(),
            Some(-2_500_000_000_000)
        );
    }

    #[test]
    fn values_read_nulls_read_as_empty_and_a_wrong_type_is_an_error() {
        let rows = to_rows("q", &[batch("margin_usd")]).unwrap();
        let (full, null) = (&rows[0], &rows[1]);
        assert_eq!(full.text("week").unwrap(), "2026-03-02");
        assert_eq!(full.text("tenant_id").unwrap(), "t1");
        assert_eq!(full.text("runs").unwrap(), "3");
        assert_eq!(full.int("runs").unwrap(), 3);
        assert_eq!(full.float("gross_margin").unwrap(), Some(0.5));
        assert!(full.flag("ready").unwrap());
        assert_eq!(null.text("week").unwrap(), "");
        assert_eq!(null.text("tenant_id").unwrap(), "");
        assert_eq!(null.int("runs").unwrap(), 0);
        assert_eq!(null.money("margin_usd").unwrap(), None);
        assert_eq!(null.float("gross_margin").unwrap(), None);
        assert!(!null.flag("ready").unwrap());
        assert_eq!(null.cell("runs").unwrap(), &Cell::Null);
        let names: Vec<&str> = full.cells().map(|(name, _)| name).collect();
        assert_eq!(
            names,
            [
                "week",
                "tenant_id",
                "runs",
                "margin_usd",
                "gross_margin",
                "ready"
            ]
        );
        assert_eq!(
            full.int("margin_usd").unwrap_err().to_string(),
            "column margin_usd of query q holds money, not a whole number"
        );
        assert!(full.money("gross_margin").is_err());
        assert!(full.float("margin_usd").is_err());
        assert!(full.text("ready").is_err());
        assert!(full.flag("runs").is_err());
    }

    #[test]
    fn money_prints_exactly_for_files_and_rounded_for_people() {
        assert_eq!(money_text(-1_500_000_000_000), "-1.500000000000");
        assert_eq!(money_text(4), "0.000000000004");
        assert_eq!(money_display(1_234_567_890_000_000), "1,234.57");
        assert_eq!(money_display(-5_000_000_000_000), "-5.00");
        assert_eq!(money_display(0), "0.00");
        assert_eq!(money_display(4_000_000), "0.000004");
        assert_eq!(money_display(999_999_999_999_999), "1,000.00");
    }
}
