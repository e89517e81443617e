//! Token amounts: base units inside, whole tokens with the mint's decimals on screen.

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
}
