//! `to_char` for a column of dates that repeat, as `date` does.
//!
//! Analysts group by `to_char(date, '%Y-%m')`. DataFusion's `to_char`
//! formats every row through chrono, parsing the format string again for
//! each value; over `date`, the partition column, a batch holds one or a few
//! distinct values, so nearly all of that work repeats. This wrapper gives
//! the same answers: for a `Date32` column with a constant format whose
//! values come in runs (at most one run per eight rows), it asks
//! DataFusion's own `to_char` once per run and repeats the result; for
//! anything else it hands the call to DataFusion's `to_char` as it is. Same
//! function, same name and alias (`date_format`), same errors; a test checks
//! the answers equal on generated columns.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{Array, AsArray, StringBuilder};
use arrow::datatypes::{DataType, Date32Type};
use datafusion::common::{Result, ScalarValue, internal_err};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};

/// DataFusion's `to_char`, computed once per run of equal dates.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ToCharRuns {
    inner: Arc<ScalarUDF>,
}

impl ToCharRuns {
    /// The function, ready to register in place of DataFusion's.
    pub fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(Self {
            inner: datafusion::functions::datetime::to_char(),
        })
    }
}

/// The runs of equal consecutive values of `dates` (nulls equal to each
/// other), as ranges of rows; `None` once there are more than `most`.
fn runs(dates: &arrow::array::Date32Array, most: usize) -> Option<Vec<Range<usize>>> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=dates.len() {
        let same = i < dates.len()
            && dates.is_valid(i) == dates.is_valid(start)
            && (dates.is_null(i) || dates.value(i) == dates.value(start));
        if !same {
            if out.len() == most {
                return None;
            }
            out.push(start..i);
            start = i;
        }
    }
    Some(out)
}

impl ToCharRuns {
    fn by_runs(
        &self,
        args: &ScalarFunctionArgs,
        dates: &arrow::array::Date32Array,
        runs: Vec<Range<usize>>,
        format: &ColumnarValue,
    ) -> Result<ColumnarValue> {
        let mut out = StringBuilder::with_capacity(dates.len(), dates.len() * 8);
        for run in runs {
            let text = if dates.is_valid(run.start) {
                let one = self.inner.invoke_with_args(ScalarFunctionArgs {
                    args: vec![
                        ColumnarValue::Scalar(ScalarValue::Date32(Some(dates.value(run.start)))),
                        format.clone(),
                    ],
                    arg_fields: args.arg_fields.clone(),
                    number_rows: 1,
                    return_field: Arc::clone(&args.return_field),
                    config_options: Arc::clone(&args.config_options),
                })?;
                match one {
                    ColumnarValue::Scalar(ScalarValue::Utf8(text)) => text,
                    other => {
                        return internal_err!(
                            "to_char of one date gave {other:?}, not one text value"
                        );
                    }
                }
            } else {
                None
            };
            for _ in run {
                out.append_option(text.as_deref());
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

impl ScalarUDFImpl for ToCharRuns {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if let [ColumnarValue::Array(dates), format] = args.args.as_slice()
            && matches!(format, ColumnarValue::Scalar(ScalarValue::Utf8(Some(_))))
            && let Some(dates) = dates.as_primitive_opt::<Date32Type>()
            && let Some(runs) = runs(dates, dates.len() / 8)
        {
            return self.by_runs(&args, dates, runs, format);
        }
        self.inner.invoke_with_args(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, Date32Array};
    use arrow::datatypes::Field;
    use datafusion::config::ConfigOptions;

    fn call(f: &ScalarUDF, dates: ArrayRef, format: ColumnarValue) -> Result<ColumnarValue> {
        let rows = dates.len();
        f.invoke_with_args(ScalarFunctionArgs {
            arg_fields: vec![
                Arc::new(Field::new("d", DataType::Date32, true)),
                Arc::new(Field::new("f", DataType::Utf8, true)),
            ],
            args: vec![ColumnarValue::Array(dates), format],
            number_rows: rows,
            return_field: Arc::new(Field::new("to_char", DataType::Utf8, true)),
            config_options: Arc::new(ConfigOptions::default()),
        })
    }

    fn text(v: Result<ColumnarValue>) -> std::result::Result<Vec<Option<String>>, String> {
        match v.map_err(|e| e.to_string())? {
            ColumnarValue::Array(a) => Ok(a
                .as_string::<i32>()
                .iter()
                .map(|s| s.map(str::to_string))
                .collect()),
            ColumnarValue::Scalar(s) => Err(format!("a scalar: {s:?}")),
        }
    }

    #[test]
    fn answers_as_datafusions_to_char_on_generated_columns() {
        let ours = ToCharRuns::udf();
        let theirs = datafusion::functions::datetime::to_char();
        assert_eq!(ours.name(), theirs.name());
        assert_eq!(ours.aliases(), theirs.aliases());
        let formats = [
            "%Y-%m",
            "%Y-%m-%d",
            "%G-W%V",
            "%A %e %B",
            "%Y-%m-%d %H:%M:%S",
            "%s",
            "plain text",
            "%Q",
            "",
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut by_runs = 0;
        for case in 0..300 {
            let len = (next() % 200) as usize;
            // Runs of a date, of nulls, or of changing dates; some columns
            // mostly changing (the wrapper hands those on).
            let change = [1, 4, 16, 64][case % 4];
            let mut values = Vec::with_capacity(len);
            let mut current: Option<i32> = Some(20_000);
            for _ in 0..len {
                if next() % change == 0 {
                    current = match next() % 5 {
                        0 => None,
                        // The next day, as a sorted column changes.
                        1 | 2 => Some(current.unwrap_or(19_999) + 1),
                        _ => Some((next() % 200_000) as i32 - 100_000),
                    };
                }
                values.push(current);
            }
            let dates: ArrayRef = Arc::new(Date32Array::from(values));
            if runs(dates.as_primitive::<Date32Type>(), len / 8).is_some() {
                by_runs += 1;
            }
            for format in formats {
                let format = ColumnarValue::Scalar(ScalarValue::Utf8(Some(format.into())));
                assert_eq!(
                    text(call(&ours, Arc::clone(&dates), format.clone())),
                    text(call(&theirs, Arc::clone(&dates), format.clone())),
                    "case {case}, {format:?}"
                );
            }
        }
        assert!(by_runs > 50, "only {by_runs} columns took the runs path");
        // A null format, and a format per row: handed on.
        let dates: ArrayRef = Arc::new(Date32Array::from(vec![Some(1); 16]));
        for format in [
            ColumnarValue::Scalar(ScalarValue::Utf8(None)),
            ColumnarValue::Array(Arc::new(arrow::array::StringArray::from(vec!["%Y"; 16]))),
        ] {
            let a = call(&ours, Arc::clone(&dates), format.clone()).map(|v| format!("{v:?}"));
            let b = call(&theirs, Arc::clone(&dates), format).map(|v| format!("{v:?}"));
            assert_eq!(a.map_err(|e| e.to_string()), b.map_err(|e| e.to_string()));
        }
    }

    #[test]
    fn counts_runs_of_equal_dates_and_of_nulls() {
        let a = Date32Array::from(vec![
            Some(1),
            Some(1),
            None,
            None,
            Some(1),
            Some(2),
            Some(2),
        ]);
        assert_eq!(runs(&a, 10), Some(vec![0..2, 2..4, 4..5, 5..7]));
        assert_eq!(runs(&a, 4).map(|r| r.len()), Some(4));
        assert_eq!(runs(&a, 3), None);
        assert_eq!(
            runs(&Date32Array::from(Vec::<Option<i32>>::new()), 0),
            Some(vec![])
        );
        assert_eq!(
            runs(&Date32Array::from(vec![None, None]), 1),
            Some(std::iter::once(0..2).collect())
        );
    }
}
