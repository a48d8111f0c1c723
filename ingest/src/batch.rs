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

/// What a builder held: its rows and the text bytes of each column, so
/// that the next builder of the same kind of input can be sized like it
/// ([`RowBuilder::with_capacity`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sizes {
    rows: usize,
    /// Per column: bytes of text (0 for a column that is not text).
    bytes: Vec<usize>,
}

impl RowBuilder {
    /// A builder for `schema`, whose column types must be Utf8, Int64,
    /// Decimal128, Boolean, Date32 or UTC microsecond timestamps.
    pub fn new(schema: SchemaRef) -> Self {
        Self::with_capacity(schema, 0, &Sizes::default())
    }

    /// A builder with room for `rows` rows, and for as much text per row
    /// in each column as `like` held (a little more, so that a like block
    /// does not grow its buffers). Only speed depends on the guess: a
    /// builder grows past it as needed.
    pub fn with_capacity(schema: SchemaRef, rows: usize, like: &Sizes) -> Self {
        let columns = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let bytes = match (like.rows, like.bytes.get(i)) {
                    (0, _) | (_, None) => 0,
                    (held, Some(&b)) => {
                        let per_row = b.div_ceil(held);
                        (per_row * rows).saturating_add(per_row * rows / 8)
                    }
                };
                new_column(f.data_type(), rows, bytes)
            })
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

    /// What the pending rows take: rows, and text bytes per column.
    pub fn sizes(&self) -> Sizes {
        let bytes = self
            .columns
            .iter()
            .map(|c| match c {
                Column::Str(b) => b.values_slice().len(),
                _ => 0,
            })
            .collect();
        Sizes {
            rows: self.rows,
            bytes,
        }
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

/// A column builder with room for `rows` values and, for text, `bytes`.
fn new_column(t: &DataType, rows: usize, bytes: usize) -> Column {
    match t {
        DataType::Utf8 => Column::Str(StringBuilder::with_capacity(rows, bytes)),
        DataType::Int64 => Column::Int(Int64Builder::with_capacity(rows)),
        DataType::Boolean => Column::Bool(BooleanBuilder::with_capacity(rows)),
        DataType::Date32 => Column::Date(Date32Builder::with_capacity(rows)),
        DataType::Decimal128(..) => Column::Dec(
            Decimal128Builder::with_capacity(rows)
                .with_precision_and_scale(MONEY_PRECISION, MONEY_SCALE)
                .expect("valid decimal type"),
        ),
        DataType::Timestamp(_, _) => {
            Column::Ts(TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC"))
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

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use arrow::datatypes::{Field, Schema};

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("n", DataType::Int64, true),
            Field::new("note", DataType::Utf8, true),
        ]))
    }

    fn fill(builder: &mut RowBuilder, rows: usize) {
        for i in 0..rows {
            let note = (i % 3 == 0).then(|| Val::Str(Cow::Owned(format!("note {i}"))));
            builder.push([
                Some(Val::Str(Cow::Owned(format!("id-{i:04}")))),
                (i % 2 == 0).then_some(Val::Int(i as i64)),
                note,
            ]);
        }
    }

    #[test]
    fn sizes_count_rows_and_text_bytes_per_column() {
        let mut builder = RowBuilder::new(schema());
        fill(&mut builder, 10);
        let sizes = builder.sizes();
        assert_eq!(sizes.rows, 10);
        // "id-0000".. are 7 bytes each; notes on rows 0, 3, 6, 9.
        assert_eq!(sizes.bytes, [70, 0, 4 * 6]);
    }

    #[test]
    fn a_builder_sized_like_another_builds_the_same_batch() {
        let mut first = RowBuilder::new(schema());
        fill(&mut first, 100);
        let like = first.sizes();
        let expected = first.finish().unwrap();
        // Sized for fewer and for more rows than it gets: the same rows.
        for rows in [1, 100, 1000] {
            let mut sized = RowBuilder::with_capacity(schema(), rows, &like);
            fill(&mut sized, 100);
            assert_eq!(sized.finish().unwrap(), expected, "sized for {rows}");
        }
    }
}
