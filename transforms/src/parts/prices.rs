//! Prices as the observer needs them: `model_calls.sql`'s lookup of the
//! price in force, and its catalog cost, in exact integers.

use std::collections::HashMap;
use std::sync::Arc;

use agentledger_lake::Lake;
use agentledger_lake::log::Snapshot;
use agentledger_lake::parquet_io::read_all;
use agentledger_lake::schema::MODEL_PRICES;
use arrow::array::{Array, AsArray, Date32Array};
use arrow::datatypes::Decimal128Type;
use futures::StreamExt;

/// Prices as `model_calls.sql` uses them: per model, by `effective_from`,
/// at scale 6.
#[derive(Debug, Default)]
pub(super) struct Prices {
    by_model: HashMap<String, Vec<Price>>,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Price {
    /// `effective_from` as days since 1970-01-01.
    from: i32,
    input: i128,
    cached: i128,
    output: i128,
}

impl Prices {
    /// The current `model_prices` of a snapshot; `None` when a price has
    /// more than 6 fractional digits (the loader refuses those, so only a
    /// lake written by something else has them).
    pub(super) async fn load(
        lake: &Lake,
        snapshot: &Snapshot,
    ) -> agentledger_lake::Result<Option<Self>> {
        let mut prices = Prices::default();
        for file in snapshot.files(MODEL_PRICES) {
            let mut stream = read_all(lake, file).await?;
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                let col = |name: &str| batch.column_by_name(name).map(Arc::clone);
                let (Some(model), Some(from), Some(input), Some(cached), Some(output)) = (
                    col("model"),
                    col("effective_from"),
                    col("input_usd_per_mtok"),
                    col("cached_input_usd_per_mtok"),
                    col("output_usd_per_mtok"),
                ) else {
                    return Ok(None);
                };
                let model = model.as_string::<i32>();
                let from = from.as_any().downcast_ref::<Date32Array>();
                let input = input.as_primitive_opt::<Decimal128Type>();
                let cached = cached.as_primitive_opt::<Decimal128Type>();
                let output = output.as_primitive_opt::<Decimal128Type>();
                let (Some(from), Some(input), Some(cached), Some(output)) =
                    (from, input, cached, output)
                else {
                    return Ok(None);
                };
                for i in 0..batch.num_rows() {
                    let at_6 = |v: i128| (v % 1_000_000 == 0).then_some(v / 1_000_000);
                    let input_price = at_6(input.value(i));
                    let cached_price = if cached.is_null(i) {
                        input_price
                    } else {
                        at_6(cached.value(i))
                    };
                    let (Some(input), Some(cached), Some(output)) =
                        (input_price, cached_price, at_6(output.value(i)))
                    else {
                        return Ok(None);
                    };
                    prices
                        .by_model
                        .entry(model.value(i).to_string())
                        .or_default()
                        .push(Price {
                            from: from.value(i),
                            input,
                            cached,
                            output,
                        });
                }
            }
        }
        for list in prices.by_model.values_mut() {
            list.sort_by_key(|p| p.from);
        }
        Ok(Some(prices))
    }

    /// The price in force on `day` (the latest `effective_from` on or
    /// before it).
    pub(super) fn find(&self, model: &str, day: i32) -> Option<&Price> {
        let list = self.by_model.get(model)?;
        let after = list.partition_point(|p| p.from <= day);
        after.checked_sub(1).map(|i| &list[i])
    }
}

/// `model_calls.sql`'s catalog price: `((input - cached) × input price +
/// cached × cached price + output × output price) / 1e6`, with prices at
/// scale 6, which is the integer of the scale-12 result. `Some(None)` when a
/// token count is missing (SQL's NULL, which SUM skips); `None` on overflow.
pub(super) fn catalog_cost(
    p: &Price,
    input: Option<i64>,
    cached: Option<i64>,
    output: Option<i64>,
) -> Option<Option<i128>> {
    let (Some(input), Some(cached), Some(output)) = (input, cached, output) else {
        return Some(None);
    };
    let uncached = i128::from(input) - i128::from(cached);
    let cost = uncached
        .checked_mul(p.input)?
        .checked_add(i128::from(cached).checked_mul(p.cached)?)?
        .checked_add(i128::from(output).checked_mul(p.output)?)?;
    // DECIMAL(38, 12) holds at most 38 digits.
    (cost.unsigned_abs() < 10u128.pow(38)).then_some(Some(cost))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price(from: i32, input: i128) -> Price {
        Price {
            from,
            input,
            cached: input / 2,
            output: input * 4,
        }
    }

    #[test]
    fn the_price_in_force_is_the_latest_on_or_before_the_day() {
        let mut prices = Prices::default();
        prices
            .by_model
            .insert("m".into(), vec![price(10, 1), price(20, 2)]);
        assert!(prices.find("m", 9).is_none());
        assert_eq!(prices.find("m", 10).map(|p| p.input), Some(1));
        assert_eq!(prices.find("m", 19).map(|p| p.input), Some(1));
        assert_eq!(prices.find("m", 20).map(|p| p.input), Some(2));
        assert_eq!(prices.find("m", 10_000).map(|p| p.input), Some(2));
        assert!(prices.find("other", 20).is_none());
    }

    #[test]
    fn catalog_cost_is_exact_and_null_without_tokens() {
        // $3 / Mtok input, $1.5 cached, $15 output, at scale 6.
        let p = Price {
            from: 0,
            input: 3_000_000,
            cached: 1_500_000,
            output: 15_000_000,
        };
        // (1000 - 200) × 3 + 200 × 1.5 + 500 × 15 = 10,200 micro-dollars
        // per Mtok → $0.0102, i.e. 10_200_000_000 at scale 12.
        assert_eq!(
            catalog_cost(&p, Some(1000), Some(200), Some(500)),
            Some(Some(10_200_000_000))
        );
        assert_eq!(catalog_cost(&p, None, Some(0), Some(1)), Some(None));
        let huge = Price {
            input: i128::MAX / 2,
            ..p
        };
        assert_eq!(catalog_cost(&huge, Some(i64::MAX), Some(0), Some(0)), None);
    }
}
