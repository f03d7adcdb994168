//! [`Usd`]: exact money, in picodollars.

use std::fmt;
use std::iter::Sum;
use std::ops::Add;
use std::str::FromStr;

/// Picodollars per dollar.
const PICOS_PER_USD: u64 = 1_000_000_000_000;

/// An amount of US dollars, exact: an integer count of picodollars (10^-12 USD).
///
/// Fine enough that every published per-million-token price with up to six decimals is a
/// whole number of picodollars per token ($0.01875 per million is 18 750 per token), and xAI's
/// billing ticks (10^-10 USD) are exactly 100. A day of calls adds up without float drift;
/// `u64` holds up to about $18 million. Arithmetic saturates instead of wrapping.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Usd(u64);

impl Usd {
    /// Nothing.
    pub const ZERO: Self = Self(0);

    /// An amount in picodollars.
    pub const fn from_picos(picos: u64) -> Self {
        Self(picos)
    }

    /// An amount in xAI billing ticks (`usage.cost_in_usd_ticks`, 10^10 per dollar).
    pub const fn from_xai_ticks(ticks: u64) -> Self {
        Self(ticks.saturating_mul(100))
    }

    /// Whole dollars.
    pub const fn from_dollars(dollars: u64) -> Self {
        Self(dollars.saturating_mul(PICOS_PER_USD))
    }

    /// The amount in picodollars.
    pub const fn picos(self) -> u64 {
        self.0
    }

    /// The amount in dollars, as a float: for display and metrics only.
    pub fn as_f64(self) -> f64 {
        self.0 as f64 / PICOS_PER_USD as f64
    }

    /// `self + other`, saturating.
    pub const fn saturating_add(self, other: Self) -> Self {
        Self(self.0.saturating_add(other.0))
    }

    /// `self - other`, or zero.
    pub const fn saturating_sub(self, other: Self) -> Self {
        Self(self.0.saturating_sub(other.0))
    }

    /// The cost of `tokens` at `self` per million tokens, rounded up to the picodollar.
    pub fn per_million(self, tokens: u64) -> Self {
        // In 64 bits when the product fits (every real call): a division by a constant the
        // compiler turns into a multiplication, where the 128-bit one is a library call.
        if let Some(product) = tokens.checked_mul(self.0) {
            return Self(product.div_ceil(1_000_000));
        }
        let picos = (u128::from(tokens) * u128::from(self.0)).div_ceil(1_000_000);
        Self(u64::try_from(picos).unwrap_or(u64::MAX))
    }
}

impl Add for Usd {
    type Output = Self;

    fn add(self, other: Self) -> Self {
        self.saturating_add(other)
    }
}

impl Sum for Usd {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Self::ZERO, Add::add)
    }
}

impl fmt::Display for Usd {
    /// `$1.5`, `$0.000123`: every significant digit, no float rounding.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / PICOS_PER_USD;
        let fraction = self.0 % PICOS_PER_USD;
        if fraction == 0 {
            return write!(f, "${whole}");
        }
        let digits = format!("{fraction:012}");
        write!(f, "${whole}.{}", digits.trim_end_matches('0'))
    }
}

/// A dollar amount that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseUsdError {
    input: String,
}

impl fmt::Display for ParseUsdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not a dollar amount (expected digits with at most 12 decimals, such as 0.20)",
            self.input
        )
    }
}

impl std::error::Error for ParseUsdError {}

impl FromStr for Usd {
    type Err = ParseUsdError;

    /// Reads `"0.20"`, `"$1.5"`, `"50"` exactly (no float on the way).
    fn from_str(input: &str) -> Result<Self, ParseUsdError> {
        let error = || ParseUsdError {
            input: input.chars().take(40).collect(),
        };
        let text = input.trim();
        let text = text.strip_prefix('$').unwrap_or(text);
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if (whole.is_empty() && fraction.is_empty())
            || !digits(whole)
            || !digits(fraction)
            || fraction.len() > 12
        {
            return Err(error());
        }
        let whole: u64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| error())?
        };
        let fraction: u64 = format!("{fraction:0<12}").parse().map_err(|_| error())?;
        whole
            .checked_mul(PICOS_PER_USD)
            .and_then(|w| w.checked_add(fraction))
            .map(Self)
            .ok_or_else(error)
    }
}

impl serde::Serialize for Usd {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.to_string().trim_start_matches('$'))
    }
}

impl<'de> serde::Deserialize<'de> for Usd {
    /// From a string (`"0.20"`, exact) or a number (`0.2`, read through its decimal text).
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        let text = match &value {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            _ => return Err(serde::de::Error::custom("expected a dollar amount")),
        };
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn per_million_agrees_with_128_bit_arithmetic(price: u64, tokens: u64) {
            let want = (u128::from(tokens) * u128::from(price)).div_ceil(1_000_000);
            let want = u64::try_from(want).unwrap_or(u64::MAX);
            prop_assert_eq!(Usd::from_picos(price).per_million(tokens).picos(), want);
        }

        #[test]
        fn per_million_agrees_near_the_64_bit_edge(price in 1_000u64..100_000_000_000_000, tokens in 0u64..20_000_000) {
            let want = (u128::from(tokens) * u128::from(price)).div_ceil(1_000_000);
            let want = u64::try_from(want).unwrap_or(u64::MAX);
            prop_assert_eq!(Usd::from_picos(price).per_million(tokens).picos(), want);
        }
    }

    #[test]
    fn parses_exactly_and_prints_every_digit() {
        let cases = [
            ("0.20", 200_000_000_000),
            ("$1.5", 1_500_000_000_000),
            ("50", 50_000_000_000_000),
            (".01875", 18_750_000_000),
            ("0.000000000001", 1),
        ];
        for (text, picos) in cases {
            let usd: Usd = text.parse().unwrap();
            assert_eq!(usd.picos(), picos, "{text}");
        }
        assert_eq!(Usd::from_picos(18_750_000_000).to_string(), "$0.01875");
        assert_eq!(Usd::from_dollars(50).to_string(), "$50");
        for bad in [
            "",
            ".",
            "-1",
            "1e3",
            "0.0000000000001",
            "abc",
            "1.2.3",
            "99999999999999999999",
        ] {
            assert!(bad.parse::<Usd>().is_err(), "{bad}");
        }
    }

    #[test]
    fn per_million_is_exact_for_published_prices_and_rounds_up_otherwise() {
        let price: Usd = "0.20".parse().unwrap();
        assert_eq!(price.per_million(1).picos(), 200_000);
        assert_eq!(price.per_million(1_000_000), price);
        let odd = Usd::from_picos(1);
        assert_eq!(
            odd.per_million(1).picos(),
            1,
            "a fraction of a picodollar rounds up"
        );
        assert_eq!(Usd::from_xai_ticks(2000).picos(), 200_000);
    }

    #[test]
    fn a_day_of_calls_adds_up_exactly() {
        let per_call = "0.000123".parse::<Usd>().unwrap();
        let total: Usd = std::iter::repeat_n(per_call, 100_000).sum();
        assert_eq!(total.to_string(), "$12.3");
    }
}
