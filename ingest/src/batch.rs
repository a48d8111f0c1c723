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
        for (column, value) in self.columns.iter_mut().zip(values) {
            append(column, value);
            n += 1;
        }
        debug_assert_eq!(n, self.columns.len(), "row width must match the schema");
        self.rows += 1;
    }

    /// The pending rows as a batch; the builder starts empty again.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
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

fn append(column: &mut Column, value: Option<Val<'_>>) {
    match (column, value) {
        (Column::Str(b), Some(Val::Str(s))) => b.append_value(&*s),
        (Column::Str(b), None) => b.append_null(),
        (Column::Int(b), Some(Val::Int(v))) => b.append_value(v),
        (Column::Int(b), None) => b.append_null(),
        (Column::Dec(b), Some(Val::Dec(v))) => b.append_value(v),
        (Column::Dec(b), None) => b.append_null(),
        (Column::Bool(b), Some(Val::Bool(v))) => b.append_value(v),
        (Column::Bool(b), None) => b.append_null(),
        (Column::Ts(b), Some(Val::Ts(v))) => b.append_value(v),
        (Column::Ts(b), None) => b.append_null(),
        (Column::Date(b), Some(Val::Int(v))) => {
            b.append_value(i32::try_from(v).expect("date in range"))
        }
        (Column::Date(b), None) => b.append_null(),
        (_, Some(v)) => unreachable!("value {v:?} does not fit its column"),
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
