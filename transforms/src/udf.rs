//! SQL functions the metric definitions need and DataFusion lacks.
//!
//! `div_money(amount, n)`: an amount of money (Decimal128(38, 12)) divided by
//! a whole number, rounded half to even at 12 fractional digits, as SPEC
//! section 3 asks of a cost per success or a prorated fee. NULL when `n` is
//! 0 or either argument is NULL. DataFusion's own decimal division widens
//! the scale and truncates, which is neither exact nor the rounding the
//! contract fixes.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Decimal128Array};
use arrow::datatypes::{DataType, Decimal128Type, Int64Type};
use datafusion::common::{Result, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use agentledger_lake::schema::{MONEY_PRECISION, MONEY_SCALE, money};

/// `div_money(amount DECIMAL(38,12), n BIGINT) -> DECIMAL(38,12)`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct DivMoney {
    signature: Signature,
}

impl DivMoney {
    /// The function, ready to register.
    pub fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(Self {
            signature: Signature::user_defined(Volatility::Immutable),
        })
    }
}

impl ScalarUDFImpl for DivMoney {
    fn name(&self) -> &str {
        "div_money"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let [amount, n] = arg_types else {
            return plan_err!("div_money(amount, n) takes two arguments");
        };
        let amount_ok =
            amount.is_integer() || matches!(amount, DataType::Decimal128(..)) || amount.is_null();
        let n_ok = n.is_integer() || n.is_null();
        if !amount_ok || !n_ok {
            return plan_err!(
                "div_money(amount, n) takes a decimal amount and a whole number, not {amount} and {n}"
            );
        }
        Ok(vec![money(), DataType::Int64])
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(money())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let amount = arrays[0].as_primitive::<Decimal128Type>();
        let n = arrays[1].as_primitive::<Int64Type>();
        let out: Decimal128Array = (0..rows)
            .map(|i| {
                if amount.is_null(i) || n.is_null(i) {
                    None
                } else {
                    div_half_even(amount.value(i), i128::from(n.value(i)))
                }
            })
            .collect();
        let out = out.with_precision_and_scale(MONEY_PRECISION, MONEY_SCALE)?;
        let array: ArrayRef = Arc::new(out);
        Ok(ColumnarValue::Array(array))
    }
}

/// `value / n` rounded half to even; `None` when `n` is 0.
pub fn div_half_even(value: i128, n: i128) -> Option<i128> {
    if n == 0 {
        return None;
    }
    let negative = (value < 0) != (n < 0);
    let (v, d) = (value.unsigned_abs(), n.unsigned_abs());
    let (mut q, r) = (v / d, v % d);
    if r * 2 > d || (r * 2 == d && q % 2 == 1) {
        q += 1;
    }
    let q = i128::try_from(q).ok()?;
    Some(if negative { -q } else { q })
}

/// `run_bucket(tenant_id, run_id, n) -> BIGINT`: which of `n` buckets a run
/// falls in (xxh3 of the pair), so that a large set of events can be read
/// in slices that each hold every event of their runs.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct RunBucket {
    signature: Signature,
}

impl RunBucket {
    /// The function, ready to register.
    pub fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(Self {
            signature: Signature::exact(
                vec![DataType::Utf8, DataType::Utf8, DataType::Int64],
                Volatility::Immutable,
            ),
        })
    }
}

/// The bucket of one run; see [`RunBucket`].
pub fn run_bucket(tenant_id: &str, run_id: &str, n: u64) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(tenant_id.as_bytes());
    h.update(&[0]);
    h.update(run_id.as_bytes());
    h.digest() % n.max(1)
}

impl ScalarUDFImpl for RunBucket {
    fn name(&self) -> &str {
        "run_bucket"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let tenants = arrays[0].as_string::<i32>();
        let runs = arrays[1].as_string::<i32>();
        let n = arrays[2].as_primitive::<Int64Type>();
        let out: arrow::array::Int64Array = (0..rows)
            .map(|i| {
                if tenants.is_null(i) || runs.is_null(i) || n.is_null(i) {
                    None
                } else {
                    let b = run_bucket(tenants.value(i), runs.value(i), n.value(i).max(1) as u64);
                    Some(b as i64)
                }
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::div_half_even;

    #[test]
    fn rounds_half_to_even_in_both_signs() {
        assert_eq!(div_half_even(10, 4), Some(2)); // 2.5 -> 2
        assert_eq!(div_half_even(14, 4), Some(4)); // 3.5 -> 4
        assert_eq!(div_half_even(11, 4), Some(3)); // 2.75 -> 3
        assert_eq!(div_half_even(9, 4), Some(2)); // 2.25 -> 2
        assert_eq!(div_half_even(-10, 4), Some(-2));
        assert_eq!(div_half_even(-14, 4), Some(-4));
        assert_eq!(div_half_even(14, -4), Some(-4));
        assert_eq!(div_half_even(-11, 4), Some(-3));
        assert_eq!(div_half_even(7, 1), Some(7));
        assert_eq!(div_half_even(7, 0), None);
        assert_eq!(div_half_even(0, 3), Some(0));
    }
}
