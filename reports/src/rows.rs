//! Query results as plain values, for code that lays them out.

use std::collections::HashMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float64Type, Int64Type, TimeUnit,
    TimestampMicrosecondType,
};

use crate::export::Result;

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

/// One row by column name.
#[derive(Debug, Clone, Default)]
pub struct Row(pub HashMap<String, Cell>);

impl Row {
    fn get(&self, name: &str) -> &Cell {
        self.0.get(name).unwrap_or(&Cell::Null)
    }

    /// The cell of a column (NULL when there is no such column).
    pub fn cell(&self, name: &str) -> &Cell {
        self.get(name)
    }

    /// Text of a column ("" when null).
    pub fn text(&self, name: &str) -> String {
        match self.get(name) {
            Cell::Text(s) => s.clone(),
            Cell::Int(i) => i.to_string(),
            _ => String::new(),
        }
    }

    /// A whole number (0 when null).
    pub fn int(&self, name: &str) -> i64 {
        match self.get(name) {
            Cell::Int(i) => *i,
            _ => 0,
        }
    }

    /// A fraction, `None` when null.
    pub fn float(&self, name: &str) -> Option<f64> {
        match self.get(name) {
            Cell::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// Money in 10^-12 USD units, `None` when null.
    pub fn money(&self, name: &str) -> Option<i128> {
        match self.get(name) {
            Cell::Money(m) => Some(*m),
            _ => None,
        }
    }
}

/// Converts batches to rows. Money must be `Decimal128(_, 12)`.
pub fn to_rows(batches: &[RecordBatch]) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for batch in batches {
        let schema = batch.schema();
        for r in 0..batch.num_rows() {
            let mut row = Row::default();
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
                            return Err(crate::export::Error::Io(std::io::Error::other(format!(
                                "column {} has type {other}, which the report does not read",
                                field.name()
                            ))));
                        }
                    }
                };
                row.0.insert(field.name().clone(), cell);
            }
            rows.push(row);
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
