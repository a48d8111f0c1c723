//! Rows of typed values into Arrow record batches, for any stored schema.

use std::sync::Arc;

use agentledger_lake::schema::{MONEY_PRECISION, MONEY_SCALE};
use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Decimal128Builder, Int64Builder, RecordBatch,
    StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::error::ArrowError;

use crate::validate::Val;

enum Column {
    Str(StringBuilder),
    Int(Int64Builder),
    Dec(Decimal128Builder),
    Bool(BooleanBuilder),
    Ts(TimestampMicrosecondBuilder),
    Date(Date32Builder),
}

/// Accumulates rows for one schema.
pub struct RowBuilder {
    schema: SchemaRef,
    columns: Vec<Column>,
    /// Nulls owed to each column: appended in one go before its next value
    /// (most columns of an event row are null; one call per run of nulls
    /// instead of one per row).
    nulls: Vec<usize>,
    rows: usize,
}

impl std::fmt::Debug for RowBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowBuilder")
            .field("rows", &self.rows)
            .finish()
    }
}

impl RowBuilder {
    /// A builder for `schema`, whose column types must be Utf8, Int64,
    /// Decimal128, Boolean, Date32 or UTC microsecond timestamps.
    pub fn new(schema: SchemaRef) -> Self {
        let columns = schema
            .fields()
            .iter()
            .map(|f| new_column(f.data_type()))
            .collect();
        Self {
            nulls: vec![0; schema.fields().len()],
            schema,
            columns,
            rows: 0,
        }
    }

    /// Rows appended since the last [`RowBuilder::finish`].
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether no row is pending.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Appends one row; `values` follow the schema's column order.
    pub fn push<'a>(&mut self, values: impl IntoIterator<Item = Option<Val<'a>>>) {
        let mut n = 0;
        for ((column, nulls), value) in self.columns.iter_mut().zip(&mut self.nulls).zip(values) {
            match value {
                None => *nulls += 1,
                Some(value) => {
                    if *nulls > 0 {
                        append_nulls(column, std::mem::take(nulls));
                    }
                    append(column, value);
                }
            }
            n += 1;
        }
        debug_assert_eq!(n, self.columns.len(), "row width must match the schema");
        self.rows += 1;
    }

    /// The pending rows as a batch; the builder starts empty again.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        for (column, nulls) in self.columns.iter_mut().zip(&mut self.nulls) {
            append_nulls(column, std::mem::take(nulls));
        }
        let arrays: Vec<ArrayRef> = self.columns.iter_mut().map(finish_column).collect();
        self.rows = 0;
        RecordBatch::try_new(Arc::clone(&self.schema), arrays)
    }
}

fn new_column(t: &DataType) -> Column {
    match t {
        DataType::Utf8 => Column::Str(StringBuilder::new()),
        DataType::Int64 => Column::Int(Int64Builder::new()),
        DataType::Boolean => Column::Bool(BooleanBuilder::new()),
        DataType::Date32 => Column::Date(Date32Builder::new()),
        DataType::Decimal128(..) => Column::Dec(
            Decimal128Builder::new()
                .with_precision_and_scale(MONEY_PRECISION, MONEY_SCALE)
                .expect("valid decimal type"),
        ),
        DataType::Timestamp(_, _) => {
            Column::Ts(TimestampMicrosecondBuilder::new().with_timezone("UTC"))
        }
        other => unreachable!("no stored column has type {other}"),
    }
}

fn append(column: &mut Column, value: Val<'_>) {
    match (column, value) {
        (Column::Str(b), Val::Str(s)) => b.append_value(&*s),
        (Column::Int(b), Val::Int(v)) => b.append_value(v),
        (Column::Dec(b), Val::Dec(v)) => b.append_value(v),
        (Column::Bool(b), Val::Bool(v)) => b.append_value(v),
        (Column::Ts(b), Val::Ts(v)) => b.append_value(v),
        (Column::Date(b), Val::Int(v)) => b.append_value(i32::try_from(v).expect("date in range")),
        (_, v) => unreachable!("value {v:?} does not fit its column"),
    }
}

fn append_nulls(column: &mut Column, n: usize) {
    match column {
        Column::Str(b) => b.append_nulls(n),
        Column::Int(b) => b.append_nulls(n),
        Column::Dec(b) => b.append_nulls(n),
        Column::Bool(b) => b.append_nulls(n),
        Column::Ts(b) => b.append_nulls(n),
        Column::Date(b) => b.append_nulls(n),
    }
}

fn finish_column(column: &mut Column) -> ArrayRef {
    match column {
        Column::Str(b) => Arc::new(b.finish()),
        Column::Int(b) => Arc::new(b.finish()),
        Column::Dec(b) => Arc::new(b.finish()),
        Column::Bool(b) => Arc::new(b.finish()),
        Column::Ts(b) => Arc::new(b.finish()),
        Column::Date(b) => Arc::new(b.finish()),
    }
}
