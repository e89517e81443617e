//! How the command line speaks: text for people, one JSON document for scripts (`json` pretty,
//! `json-compact` on one line), and the units both use. Everything goes to stdout through
//! [`line`], which ends the process quietly when the reader has gone (`gpumesh demo | head`).
//!
//! The JSON conventions (cli/README.md): token amounts are exact decimal strings in whole tokens
//! (`"12.5"`) next to the mint's `decimals`; SOL amounts are decimal strings in SOL, in fields
//! whose name says `sol`; times are `*_ts` (unix seconds) with `*_at` (RFC 3339, UTC, `null`
//! when unset); durations are seconds; VRAM is `*_mib`, an exact count of MiB.

use serde_json::Value;
use std::io::Write;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// For people.
    Text,
    /// One pretty-printed JSON document on stdout, errors included.
    Json,
    /// The same JSON document on one line.
    JsonCompact,
}

impl Output {
    pub fn is_json(self) -> bool {
        self != Output::Text
    }

    /// A JSON document in this mode's layout.
    pub fn render(self, value: &Value) -> String {
        match self {
            Output::JsonCompact => value.to_string(),
            _ => serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string()),
        }
    }
}

/// Writes `text` and a newline to stdout. A reader that went away (EPIPE: `gpumesh … | head`)
/// ends the process with status 0, as it does for other Unix tools; any other write error ends
/// it with status 1 after saying so on stderr.
pub fn line(text: &str) {
    let mut out = std::io::stdout().lock();
    let written = writeln!(out, "{text}").and_then(|()| out.flush());
    if let Err(e) = written {
        quit_on_write_error(&e);
    }
}

fn quit_on_write_error(e: &std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    let _ = writeln!(std::io::stderr(), "error: cannot write to stdout: {e}");
    std::process::exit(1);
}

/// Libraries the demo runs (the program's host build) print some lines with `println!`, which
/// panics when stdout is a closed pipe. This hook turns exactly that panic into the same quiet
/// exit as [`line`]; every other panic is reported as before.
pub fn exit_quietly_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

/// While it lives, whatever writes to stdout directly (the program's host build logs refusals
/// with `println!`) goes to stderr, so stdout carries exactly one JSON document. Dropping it
/// points stdout back.
pub struct StdoutOnStderr {
    #[cfg(unix)]
    saved: Option<std::os::fd::OwnedFd>,
}

impl StdoutOnStderr {
    pub fn new() -> Self {
        let _ = std::io::stdout().flush();
        #[cfg(unix)]
        {
            use std::os::fd::AsFd;
            let saved = std::io::stdout().as_fd().try_clone_to_owned().ok();
            let moved =
                saved.is_some() && rustix::stdio::dup2_stdout(std::io::stderr().as_fd()).is_ok();
            StdoutOnStderr {
                saved: if moved { saved } else { None },
            }
        }
        #[cfg(not(unix))]
        StdoutOnStderr {}
    }
}

impl Drop for StdoutOnStderr {
    fn drop(&mut self) {
        let _ = std::io::stdout().flush();
        #[cfg(unix)]
        if let Some(saved) = &self.saved {
            let _ = rustix::stdio::dup2_stdout(saved);
        }
    }
}

/// Unix seconds as an RFC 3339 date in UTC (`2025-03-01T12:00:00Z`).
pub fn rfc3339(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3_600,
        secs % 3_600 / 60,
        secs % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A time for people: the date, or "never" for an unset (zero) time.
pub fn date(unix: i64) -> String {
    if unix == 0 {
        "never".into()
    } else {
        rfc3339(unix)
    }
}

/// A time for scripts: the RFC 3339 string, `null` for an unset (zero) time. Its unix seconds
/// go in the `*_ts` field beside it.
pub fn date_json(unix: i64) -> Value {
    if unix == 0 {
        Value::Null
    } else {
        Value::String(rfc3339(unix))
    }
}

/// Seconds for people: `14d 0h`, `3h 5m`, `5m 3s`, `42s`.
pub fn duration(seconds: u64) -> String {
    let (d, h, m, s) = (
        seconds / 86_400,
        seconds % 86_400 / 3_600,
        seconds % 3_600 / 60,
        seconds % 60,
    );
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

/// A signed span (a time minus now) for people: `in 14d 0h` or `3h 5m ago`.
pub fn relative(seconds: i64) -> String {
    if seconds >= 0 {
        format!("in {}", duration(seconds.unsigned_abs()))
    } else {
        format!("{} ago", duration(seconds.unsigned_abs()))
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum VramError {
    #[error(
        "{0:?} is not a memory size: write it with its unit, e.g. 80GiB or 81920MiB (gpumesh reads a datasheet's \"80 GB\" as 80 GiB)"
    )]
    Unit(String),
    #[error("{0:?} is not a whole number of MiB")]
    Fraction(String),
    #[error("{0:?} is too large (at most 4194303 GiB)")]
    TooLarge(String),
}

/// `80GiB`, `80 GiB`, `0.5GiB` or `81920MiB` (units case-insensitive) → MiB. A bare number or
/// another unit is refused: GB and GiB differ by 7%, and a buyer's filter must mean one thing.
pub fn parse_vram(text: &str) -> Result<u32, VramError> {
    let s = text.trim().replace('_', "");
    let lower = s.to_ascii_lowercase();
    let (number, mib_per_unit) = if let Some(n) = lower.strip_suffix("gib") {
        (n.trim(), 1_024u64)
    } else if let Some(n) = lower.strip_suffix("mib") {
        (n.trim(), 1)
    } else {
        return Err(VramError::Unit(text.to_string()));
    };
    // Exact decimal arithmetic: up to 0.5 GiB steps and beyond, never floating point.
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    let digits_ok = !whole.is_empty()
        && whole.chars().all(|c| c.is_ascii_digit())
        && frac.chars().all(|c| c.is_ascii_digit())
        && frac.len() <= 9
        && !(number.contains('.') && frac.is_empty());
    if !digits_ok {
        return Err(VramError::Unit(text.to_string()));
    }
    let too_large = || VramError::TooLarge(text.to_string());
    let whole: u64 = whole.parse().map_err(|_| too_large())?;
    let scale = 10u64.pow(frac.len() as u32);
    let frac_value: u64 = if frac.is_empty() {
        0
    } else {
        frac.parse()
            .map_err(|_| VramError::Unit(text.to_string()))?
    };
    let scaled = whole
        .checked_mul(scale)
        .and_then(|w| w.checked_add(frac_value))
        .and_then(|n| n.checked_mul(mib_per_unit))
        .ok_or_else(too_large)?;
    if !scaled.is_multiple_of(scale) {
        return Err(VramError::Fraction(text.to_string()));
    }
    u32::try_from(scaled / scale).map_err(|_| too_large())
}

/// MiB for people, in GiB: `80 GiB`, or `74.51 GiB (76293 MiB)` when not a whole GiB.
pub fn vram(mib: u32) -> String {
    if mib.is_multiple_of(1_024) {
        format!("{} GiB", mib / 1_024)
    } else {
        let hundredths = u64::from(mib) * 100 / 1_024;
        format!(
            "{}.{:02} GiB ({mib} MiB)",
            hundredths / 100,
            hundredths % 100
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc3339_in_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(date(0), "never");
        assert_eq!(date_json(0), Value::Null);
    }

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(duration(14 * 86_400), "14d 0h");
        assert_eq!(duration(86_400 + 3 * 3_600 + 59), "1d 3h");
        assert_eq!(duration(3 * 3_600 + 5 * 60), "3h 5m");
        assert_eq!(duration(303), "5m 3s");
        assert_eq!(duration(42), "42s");
        assert_eq!(duration(0), "0s");
        assert_eq!(relative(-90), "1m 30s ago");
        assert_eq!(relative(3_600), "in 1h 0m");
    }

    #[test]
    fn vram_takes_units_and_refuses_ambiguity() {
        assert_eq!(parse_vram("80GiB"), Ok(81_920));
        assert_eq!(parse_vram("80 gib"), Ok(81_920));
        assert_eq!(parse_vram("81920MiB"), Ok(81_920));
        assert_eq!(parse_vram("0.5GiB"), Ok(512));
        assert_eq!(parse_vram("141GiB"), Ok(144_384));
        assert!(matches!(parse_vram("80"), Err(VramError::Unit(_))));
        assert!(matches!(parse_vram("80GB"), Err(VramError::Unit(_))));
        assert!(matches!(parse_vram("GiB"), Err(VramError::Unit(_))));
        assert!(matches!(parse_vram("-1GiB"), Err(VramError::Unit(_))));
        assert!(matches!(parse_vram("1.GiB"), Err(VramError::Unit(_))));
        assert!(matches!(
            parse_vram("0.0001GiB"),
            Err(VramError::Fraction(_))
        ));
        assert!(matches!(
            parse_vram("5000000GiB"),
            Err(VramError::TooLarge(_))
        ));
        assert_eq!(vram(81_920), "80 GiB");
        assert_eq!(vram(76_293), "74.50 GiB (76293 MiB)");
    }
}
