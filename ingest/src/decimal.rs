//! Exact decimal numbers from their text.
//!
//! Money is read from the digits the producer wrote, never through a binary
//! float, and JSON numbers are compared by value ("number spelling does not
//! matter": `1.50`, `1.5` and `15e-1` are one value). Both need the same
//! thing: a number's text reduced to sign, significant digits and exponent.

/// A decimal value: `(-1)^negative × digits × 10^exponent`, with `digits`
/// free of leading and trailing zeros (empty for zero).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decimal {
    negative: bool,
    digits: String,
    exponent: i64,
}

/// Why a decimal does not fit a column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FitError {
    /// More fractional digits than the scale allows.
    TooManyFractionalDigits {
        /// Digits the value needs.
        needed: i64,
    },
    /// More integer digits than the precision leaves.
    TooLarge,
}

impl Decimal {
    /// Parses JSON number text (`-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`).
    pub fn from_json_number(text: &str) -> Option<Self> {
        let (mantissa, exp) = match text.find(['e', 'E']) {
            Some(i) => {
                let e = &text[i + 1..];
                let e = e.strip_prefix('+').unwrap_or(e);
                if e.is_empty()
                    || !e
                        .trim_start_matches('-')
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                {
                    return None;
                }
                // Exponents beyond i64 saturate: such a value is out of any
                // money column's range anyway.
                let v = e.parse::<i64>().unwrap_or(if e.starts_with('-') {
                    i64::MIN / 2
                } else {
                    i64::MAX / 2
                });
                (&text[..i], v)
            }
            None => (text, 0),
        };
        Self::from_plain(mantissa).map(|mut d| {
            d.exponent = d.exponent.saturating_add(exp);
            d.normalize();
            d
        })
    }

    /// Parses plain decimal text `-?digits(.digits)?` (the string form of
    /// `cost_usd` and of CSV money).
    pub fn from_plain(text: &str) -> Option<Self> {
        let (negative, body) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (int, frac) = match body.split_once('.') {
            Some((i, f)) => (i, f),
            None => (body, ""),
        };
        let digits_ok = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty()
            || !digits_ok(int)
            || !digits_ok(frac)
            || (body.contains('.') && frac.is_empty())
        {
            return None;
        }
        let mut d = Self {
            negative,
            digits: format!("{int}{frac}"),
            exponent: -(frac.len() as i64),
        };
        d.normalize();
        Some(d)
    }

    fn normalize(&mut self) {
        let trimmed = self.digits.trim_start_matches('0');
        let trailing = trimmed.len() - trimmed.trim_end_matches('0').len();
        self.digits = trimmed.trim_end_matches('0').to_string();
        self.exponent = self.exponent.saturating_add(trailing as i64);
        if self.digits.is_empty() {
            self.negative = false;
            self.exponent = 0;
        }
    }

    /// Whether the value is below zero.
    pub fn is_negative(&self) -> bool {
        self.negative
    }

    /// A canonical spelling: equal values, equal text.
    pub fn canonical(&self) -> String {
        if self.digits.is_empty() {
            return "0".into();
        }
        format!(
            "{}{}e{}",
            if self.negative { "-" } else { "" },
            self.digits,
            self.exponent
        )
    }

    /// The value scaled by `10^scale` as an integer, if it has at most
    /// `scale` fractional digits and at most `precision` digits in all.
    pub fn to_scaled(&self, scale: u32, precision: u32) -> Result<i128, FitError> {
        if self.digits.is_empty() {
            return Ok(0);
        }
        let fractional = -self.exponent;
        if fractional > i64::from(scale) {
            return Err(FitError::TooManyFractionalDigits { needed: fractional });
        }
        let zeros = self.exponent + i64::from(scale);
        let total = self.digits.len() as i64 + zeros;
        if total > i64::from(precision) {
            return Err(FitError::TooLarge);
        }
        let mut v: i128 = self.digits.parse().map_err(|_| FitError::TooLarge)?;
        for _ in 0..zeros {
            v = v.checked_mul(10).ok_or(FitError::TooLarge)?;
        }
        Ok(if self.negative { -v } else { v })
    }
}

/// Formats a scaled integer as decimal text with exactly `scale` fractional
/// digits (`1500, 3` -> `1.500`).
pub fn format_scaled(value: i128, scale: u32) -> String {
    let digits = value.unsigned_abs().to_string();
    let scale = scale as usize;
    let padded = if digits.len() <= scale {
        format!("{}{digits}", "0".repeat(scale + 1 - digits.len()))
    } else {
        digits
    };
    let (int, frac) = padded.split_at(padded.len() - scale);
    let sign = if value < 0 { "-" } else { "" };
    if scale == 0 {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scaled(text: &str) -> Result<i128, FitError> {
        Decimal::from_json_number(text).unwrap().to_scaled(12, 38)
    }

    #[test]
    fn spellings_of_one_value_are_one_canonical_text() {
        let a = Decimal::from_json_number("1.50").unwrap();
        let b = Decimal::from_json_number("15e-1").unwrap();
        let c = Decimal::from_json_number("0.15E+1").unwrap();
        assert_eq!(a.canonical(), b.canonical());
        assert_eq!(a.canonical(), c.canonical());
        assert_eq!(Decimal::from_json_number("-0.0").unwrap().canonical(), "0");
        assert_ne!(
            a.canonical(),
            Decimal::from_json_number("1.5000001").unwrap().canonical()
        );
    }

    #[test]
    fn money_is_exact_at_twelve_digits() {
        assert_eq!(scaled("0.1"), Ok(100_000_000_000));
        assert_eq!(scaled("1e-12"), Ok(1));
        assert_eq!(scaled("0.000000000001000"), Ok(1));
        assert_eq!(
            scaled("1e-13"),
            Err(FitError::TooManyFractionalDigits { needed: 13 })
        );
        assert_eq!(
            scaled("12345678901234567890123456"),
            Ok(12345678901234567890123456 * 10i128.pow(12))
        );
        assert_eq!(
            scaled("123456789012345678901234567"),
            Err(FitError::TooLarge)
        );
        assert_eq!(scaled("1e400"), Err(FitError::TooLarge));
    }

    #[test]
    fn plain_text_rejects_what_is_not_a_decimal() {
        for bad in ["", "-", "1.", ".5", "1e3", "+1", "1,5", " 1"] {
            assert!(Decimal::from_plain(bad).is_none(), "{bad:?}");
        }
        assert_eq!(
            Decimal::from_plain("-2.50").unwrap().to_scaled(2, 38),
            Ok(-250)
        );
    }

    #[test]
    fn formatting_pads_and_signs() {
        assert_eq!(format_scaled(1500, 3), "1.500");
        assert_eq!(format_scaled(-5, 3), "-0.005");
        assert_eq!(format_scaled(0, 2), "0.00");
        assert_eq!(format_scaled(42, 0), "42");
    }
}
