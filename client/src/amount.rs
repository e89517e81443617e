//! Token amounts: base units on chain, whole tokens with the mint's decimals for people. Parsing
//! is exact (decimal digits, never floating point) and refuses what it cannot represent.

/// `1234500` with 6 decimals → `"1.2345"`; never loses a digit.
pub fn format(base_units: u64, decimals: u8) -> String {
    if decimals == 0 {
        return base_units.to_string();
    }
    let scale = 10u128.pow(decimals as u32);
    let whole = base_units as u128 / scale;
    let frac = base_units as u128 % scale;
    let frac = format!("{frac:0width$}", width = decimals as usize);
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        whole.to_string()
    } else {
        format!("{whole}.{frac}")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("{0:?} is not an amount: write whole tokens like 12 or 12.5")]
    NotANumber(String),
    #[error(
        "{amount:?} has more decimals than the token's {decimals}: the smallest amount is {smallest}"
    )]
    TooManyDecimals {
        amount: String,
        decimals: u8,
        smallest: String,
    },
    #[error("{0:?} is too large for a token amount")]
    TooLarge(String),
}

/// `"1.25"` with 6 decimals → `1_250_000`. Refuses signs, exponents, empty parts and more
/// fractional digits than the mint has.
pub fn parse(text: &str, decimals: u8) -> Result<u64, AmountError> {
    let s = text.trim().replace('_', "");
    let not_a_number = || AmountError::NotANumber(text.to_string());
    let (whole, frac) = match s.split_once('.') {
        Some((w, f)) => (w, f),
        None => (s.as_str(), ""),
    };
    if (whole.is_empty() && frac.is_empty())
        || !whole.chars().all(|c| c.is_ascii_digit())
        || !frac.chars().all(|c| c.is_ascii_digit())
        || (s.contains('.') && frac.is_empty())
    {
        return Err(not_a_number());
    }
    let frac_trimmed = frac.trim_end_matches('0');
    if frac_trimmed.len() > decimals as usize {
        return Err(AmountError::TooManyDecimals {
            amount: text.to_string(),
            decimals,
            smallest: format(1, decimals),
        });
    }
    let too_large = || AmountError::TooLarge(text.to_string());
    let scale = 10u128.checked_pow(decimals as u32).ok_or_else(too_large)?;
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| too_large())?
    };
    let frac_value: u128 = if frac_trimmed.is_empty() {
        0
    } else {
        let padded = format!("{frac_trimmed:0<width$}", width = decimals as usize);
        padded.parse().map_err(|_| not_a_number())?
    };
    let total = whole
        .checked_mul(scale)
        .and_then(|w| w.checked_add(frac_value))
        .ok_or_else(too_large)?;
    u64::try_from(total).map_err(|_| too_large())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_whole_and_fractional_amounts() {
        assert_eq!(format(1_234_500, 6), "1.2345");
        assert_eq!(format(1_000_000, 6), "1");
        assert_eq!(format(7, 6), "0.000007");
        assert_eq!(format(0, 6), "0");
        assert_eq!(format(42, 0), "42");
        assert_eq!(format(u64::MAX, 9), "18446744073.709551615");
    }

    #[test]
    fn parses_exactly_and_refuses_what_it_cannot_represent() {
        assert_eq!(parse("1.2345", 6), Ok(1_234_500));
        assert_eq!(parse("12", 6), Ok(12_000_000));
        assert_eq!(parse(".5", 6), Ok(500_000));
        assert_eq!(parse("0.000001", 6), Ok(1));
        assert_eq!(parse("1.500000000", 6), Ok(1_500_000));
        assert_eq!(parse("42", 0), Ok(42));
        assert_eq!(parse("18446744073.709551615", 9), Ok(u64::MAX));
        assert!(matches!(
            parse("0.0000001", 6),
            Err(AmountError::TooManyDecimals { .. })
        ));
        for bad in ["", "abc", "-1", "1e6", "1.", "1.2.3", " . "] {
            assert!(
                matches!(parse(bad, 6), Err(AmountError::NotANumber(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            parse("18446744073.709551616", 9),
            Err(AmountError::TooLarge(_))
        ));
        for (base, decimals) in [(1_234_500u64, 6u8), (7, 9), (u64::MAX, 0)] {
            assert_eq!(parse(&format(base, decimals), decimals), Ok(base));
        }
    }
}
