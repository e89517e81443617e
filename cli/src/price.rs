//! Prices and durations on the command line. The program counts prices in base units of the
//! market's mint per GPU-second; people compare GPU-hours (an A100 at 0.85 USDC an hour). A price
//! argument therefore names its unit: `0.8532/h` (whole tokens per GPU-hour) or `0.000237/s`
//! (whole tokens per GPU-second). A bare number is refused, as a bare VRAM size is: the two
//! readings differ by a factor of 3,600.
//!
//! The conversion is exact: per-second base units = per-hour base units / 3,600. An hourly
//! price that is not a whole number of base units per second is refused with the two nearest
//! prices that are, never rounded silently (with 6 decimals, hourly prices move in steps of
//! 0.0036).

use serde_json::Value;

/// Seconds in the hour that hourly prices are counted in.
pub const HOUR: u64 = 3_600;

/// The unit a price argument is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Per {
    GpuSecond,
    GpuHour,
}

impl Per {
    fn seconds(self) -> u128 {
        match self {
            Per::GpuSecond => 1,
            Per::GpuHour => u128::from(HOUR),
        }
    }
}

/// A price as written on the command line: a decimal number of whole tokens and its unit. Its
/// value in base units needs the mint's decimals ([`PriceArg::base_per_gpu_second`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PriceArg {
    /// What the user wrote, for messages.
    pub text: String,
    number: String,
    pub per: Per,
}

const PRICE_FORMAT: &str =
    "write whole tokens per GPU-hour like 0.8532/h, or per GPU-second like 0.000237/s";

/// clap's parser for `--price`, `--max-price`: the number and unit, checked before anything
/// is read from the chain (a bare number or a stray unit is a usage error).
pub fn parse_price_arg(text: &str) -> Result<PriceArg, String> {
    let trimmed = text.trim();
    let Some((number, unit)) = trimmed.rsplit_once('/') else {
        return Err(format!("{text:?} has no unit: {PRICE_FORMAT}"));
    };
    let per = match unit.trim().to_ascii_lowercase().as_str() {
        "h" | "hr" | "hour" => Per::GpuHour,
        "s" | "sec" | "second" => Per::GpuSecond,
        _ => {
            return Err(format!(
                "{text:?}: the unit is /h (per GPU-hour) or /s (per GPU-second); {PRICE_FORMAT}"
            ));
        }
    };
    let number = number.trim().replace('_', "");
    let (whole, frac) = number.split_once('.').unwrap_or((number.as_str(), ""));
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if (whole.is_empty() && frac.is_empty())
        || !digits(whole)
        || !digits(frac)
        || (number.contains('.') && frac.is_empty())
    {
        return Err(format!("{text:?} is not a price: {PRICE_FORMAT}"));
    }
    Ok(PriceArg {
        text: trimmed.to_string(),
        number,
        per,
    })
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PriceError {
    #[error("{flag} {text} is too large for a price")]
    TooLarge { flag: String, text: String },
    /// Not a whole number of base units per GPU-second; the nearest prices that are.
    #[error(
        "{flag} {text} is not a whole number of the mint's base units per GPU-second (the chain pays by the second; with {decimals} decimals an hourly price moves in steps of {step_per_hour}): use {}",
        nearest.join(" or ")
    )]
    NotExact {
        flag: String,
        text: String,
        decimals: u8,
        step_per_hour: String,
        nearest: Vec<String>,
    },
}

impl PriceArg {
    /// Base units per GPU-second, exactly, or the nearest exact prices in the error.
    pub fn base_per_gpu_second(&self, flag: &str, decimals: u8) -> Result<u64, PriceError> {
        let too_large = || PriceError::TooLarge {
            flag: flag.to_string(),
            text: self.text.clone(),
        };
        let (whole, frac) = self
            .number
            .split_once('.')
            .unwrap_or((self.number.as_str(), ""));
        let frac = frac.trim_end_matches('0');
        // Fractional digits beyond 30 cannot be exact for any mint a market takes (at most
        // 9 decimals is usual, 18 the most seen); refusing them keeps 10^k inside u128.
        let k = u32::try_from(frac.len())
            .ok()
            .filter(|k| *k <= 30)
            .ok_or_else(too_large)?;
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| too_large())?
        };
        let frac_value: u128 = if frac.is_empty() {
            0
        } else {
            frac.parse().map_err(|_| too_large())?
        };
        let scale = 10u128.checked_pow(k).ok_or_else(too_large)?;
        let mint_scale = 10u128
            .checked_pow(u32::from(decimals))
            .ok_or_else(too_large)?;
        // tokens = (whole·10^k + frac) / 10^k per unit;
        // base units per second = tokens · 10^decimals / seconds-per-unit.
        let numerator = whole
            .checked_mul(scale)
            .and_then(|w| w.checked_add(frac_value))
            .and_then(|n| n.checked_mul(mint_scale))
            .ok_or_else(too_large)?;
        let denominator = scale
            .checked_mul(self.per.seconds())
            .ok_or_else(too_large)?;
        let quotient = numerator / denominator;
        if numerator % denominator == 0 {
            return u64::try_from(quotient).map_err(|_| too_large());
        }
        let nearest = [quotient, quotient.saturating_add(1)]
            .into_iter()
            .filter(|q| *q > 0)
            .filter_map(|q| u64::try_from(q).ok())
            .map(|q| self.written_like_input(q, decimals))
            .collect();
        Err(PriceError::NotExact {
            flag: flag.to_string(),
            text: self.text.clone(),
            decimals,
            step_per_hour: format_u128(u128::from(HOUR), decimals),
            nearest,
        })
    }

    /// `base` (per GPU-second) in the unit this argument used, with the other in parentheses.
    fn written_like_input(&self, base: u64, decimals: u8) -> String {
        let hour = format!("{}/h", per_gpu_hour(base, decimals));
        let second = format!("{}/s", gpumesh_client::amount::format(base, decimals));
        match self.per {
            Per::GpuHour => format!("{hour} ({second})"),
            Per::GpuSecond => format!("{second} ({hour})"),
        }
    }
}

/// Base units (any size) in whole tokens: `amount::format` for u128.
pub fn format_u128(base_units: u128, decimals: u8) -> String {
    if decimals == 0 {
        return base_units.to_string();
    }
    let Some(scale) = 10u128.checked_pow(u32::from(decimals)) else {
        return base_units.to_string();
    };
    let whole = base_units / scale;
    let frac = format!(
        "{:0width$}",
        base_units % scale,
        width = usize::from(decimals)
    );
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        whole.to_string()
    } else {
        format!("{whole}.{frac}")
    }
}

/// A price of `base` base units per GPU-second, in whole tokens per GPU-hour (exact: 3,600 ×
/// the per-second price).
pub fn per_gpu_hour(base: u64, decimals: u8) -> String {
    format_u128(u128::from(base) * u128::from(HOUR), decimals)
}

/// The price for people: `1.08 per GPU-hour (0.0003 per GPU-second)`.
pub fn text(base: u64, decimals: u8) -> String {
    format!(
        "{} per GPU-hour ({} per GPU-second)",
        per_gpu_hour(base, decimals),
        gpumesh_client::amount::format(base, decimals)
    )
}

/// The per-GPU-hour price for scripts: an exact decimal string of whole tokens.
pub fn hour_json(base: u64, decimals: u8) -> Value {
    Value::String(per_gpu_hour(base, decimals))
}

/// clap's parser for `--duration`: seconds, or a number with a unit: `90s`, `30m`, `12h`, `7d`.
pub fn parse_duration_arg(text: &str) -> Result<u64, String> {
    let t = text.trim().to_ascii_lowercase();
    let (number, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t.as_str(), "s"),
    };
    let seconds_per = match unit.trim() {
        "s" => 1u64,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "{text:?} is not a duration: write seconds (3600) or a whole number with s, m, h or d (90m, 12h, 7d)"
            ));
        }
    };
    if number.is_empty() {
        return Err(format!(
            "{text:?} is not a duration: write seconds (3600) or a whole number with s, m, h or d (90m, 12h, 7d)"
        ));
    }
    let seconds = number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(seconds_per))
        .ok_or_else(|| format!("{text:?} is too long a duration"))?;
    if seconds == 0 {
        return Err("a duration must be at least 1 second".into());
    }
    Ok(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(text: &str, decimals: u8) -> Result<u64, PriceError> {
        parse_price_arg(text)
            .expect("parses")
            .base_per_gpu_second("--price", decimals)
    }

    #[test]
    fn hourly_prices_convert_exactly() {
        // 0.0036 per hour with 6 decimals is 1 base unit per second.
        assert_eq!(base("0.0036/h", 6), Ok(1));
        assert_eq!(base("1.08/h", 6), Ok(300));
        assert_eq!(base("0.8532/h", 6), Ok(237));
        assert_eq!(base("0.000237/s", 6), Ok(237));
        assert_eq!(base("3.6/hour", 6), Ok(1_000));
        assert_eq!(base("3.600000000000/h", 6), Ok(1_000));
        assert!(matches!(base("36/h", 0), Err(PriceError::NotExact { .. })));
        assert_eq!(base("7200/h", 0), Ok(2));
        assert_eq!(base("1/s", 9), Ok(1_000_000_000));
        // Round trip through the display.
        for b in [1u64, 237, 300, 1_000_000, u64::MAX / 3_600] {
            let shown = format!("{}/h", per_gpu_hour(b, 6));
            assert_eq!(base(&shown, 6), Ok(b), "{shown}");
        }
    }

    #[test]
    fn inexact_prices_are_refused_with_the_nearest_exact_ones() {
        match base("0.85/h", 6) {
            Err(PriceError::NotExact {
                nearest,
                step_per_hour,
                ..
            }) => {
                assert_eq!(step_per_hour, "0.0036");
                assert_eq!(
                    nearest,
                    vec![
                        "0.8496/h (0.000236/s)".to_string(),
                        "0.8532/h (0.000237/s)".to_string()
                    ]
                );
            }
            other => panic!("{other:?}"),
        }
        // Below one base unit per second: only the price above is offered.
        match base("0.001/h", 6) {
            Err(PriceError::NotExact { nearest, .. }) => {
                assert_eq!(nearest, vec!["0.0036/h (0.000001/s)".to_string()]);
            }
            other => panic!("{other:?}"),
        }
        // Per second with more decimals than the mint has.
        match base("0.0000015/s", 6) {
            Err(PriceError::NotExact { nearest, .. }) => {
                assert_eq!(
                    nearest,
                    vec![
                        "0.000001/s (0.0036/h)".to_string(),
                        "0.000002/s (0.0072/h)".to_string()
                    ]
                );
            }
            other => panic!("{other:?}"),
        }
        let message = base("0.85/h", 6).unwrap_err().to_string();
        assert!(
            message.contains("--price 0.85/h is not a whole number")
                && message.contains("use 0.8496/h (0.000236/s) or 0.8532/h (0.000237/s)"),
            "{message}"
        );
        assert!(matches!(
            base("99999999999999999999999/s", 6),
            Err(PriceError::TooLarge { .. })
        ));
    }

    #[test]
    fn a_price_names_its_unit() {
        for bad in [
            "0.85", "1", "0.85/min", "/h", "abc/h", "1./h", "-1/h", "1e3/s", "",
        ] {
            assert!(parse_price_arg(bad).is_err(), "{bad:?}");
        }
        let ok = parse_price_arg(" 0.85 / H ").expect("parses");
        assert_eq!((ok.per, ok.text.as_str()), (Per::GpuHour, "0.85 / H"));
        assert_eq!(base(" 0.8532 / H ", 6), Ok(237));
        assert!(parse_price_arg("0.85").unwrap_err().contains("has no unit"));
    }

    #[test]
    fn prices_show_per_hour_and_per_second() {
        assert_eq!(text(300, 6), "1.08 per GPU-hour (0.0003 per GPU-second)");
        assert_eq!(
            per_gpu_hour(u64::MAX, 0),
            (u128::from(u64::MAX) * 3_600).to_string()
        );
        assert_eq!(format_u128(1_234_500, 6), "1.2345");
        assert_eq!(format_u128(0, 6), "0");
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration_arg("3600"), Ok(3_600));
        assert_eq!(parse_duration_arg("90m"), Ok(5_400));
        assert_eq!(parse_duration_arg("12h"), Ok(43_200));
        assert_eq!(parse_duration_arg("7d"), Ok(604_800));
        assert_eq!(parse_duration_arg("42s"), Ok(42));
        for bad in [
            "0",
            "0h",
            "h",
            "1.5h",
            "-1",
            "7w",
            "",
            "99999999999999999999d",
        ] {
            assert!(parse_duration_arg(bad).is_err(), "{bad:?}");
        }
    }
}
