//! A worker's reliability score from its on-chain record, so reserved orders (which lock workers
//! for a term) can prefer machines that have served long and failed rarely.

/// What the chain records about a worker's history.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerRecord {
    /// Seconds of service paid out through receipts.
    pub served_secs: u64,
    /// Leases closed because the worker went offline (missed heartbeats past the grace period).
    pub failures: u32,
    /// Slashes for fraud (a failed proof of compute).
    pub slashes: u32,
}

/// Hours of clean service a newcomer is credited with, and the same again as doubt, so a new
/// worker starts at exactly 5_000 bp: neither trusted nor distrusted.
const PRIOR_HOURS: u64 = 24;
/// One failure costs as much trust as a day of clean service earns.
const FAILURE_HOURS: u64 = 24;
/// A slash is fraud, not bad luck: it weighs a week.
const SLASH_HOURS: u64 = 168;

/// Reliability in basis points (0..=10_000):
///
/// `10_000 · (h + 24) / (h + 48 + 24·failures + 168·slashes)` where `h` is served hours.
///
/// A newcomer scores 5_000; clean service moves the score towards 10_000 (1_000 clean hours:
/// 9_770); each failure pulls it down like a day of doubt, each slash like a week (1_000 hours
/// with one slash: 8_421). Integer arithmetic in u128, so it is exact and never overflows.
pub fn reliability(record: &WorkerRecord) -> u16 {
    let hours = u128::from(record.served_secs / 3600);
    let good = hours + u128::from(PRIOR_HOURS);
    let total = hours
        + 2 * u128::from(PRIOR_HOURS)
        + u128::from(FAILURE_HOURS) * u128::from(record.failures)
        + u128::from(SLASH_HOURS) * u128::from(record.slashes);
    // good <= total and total > 0, so the quotient is at most 10_000 and fits in u16.
    u16::try_from(10_000 * good / total).unwrap_or(10_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(hours: u64, failures: u32, slashes: u32) -> WorkerRecord {
        WorkerRecord {
            served_secs: hours * 3600,
            failures,
            slashes,
        }
    }

    #[test]
    fn newcomer_is_neutral() {
        assert_eq!(reliability(&WorkerRecord::default()), 5_000);
    }

    #[test]
    fn service_raises_failures_and_slashes_lower() {
        let clean = reliability(&rec(1_000, 0, 0));
        let failed = reliability(&rec(1_000, 1, 0));
        let slashed = reliability(&rec(1_000, 0, 1));
        assert_eq!(clean, 9_770);
        assert!(clean > failed && failed > slashed);
        assert!(reliability(&rec(10, 0, 0)) < clean);
        assert!(slashed < clean);
    }

    #[test]
    fn extremes_stay_in_range() {
        assert!(reliability(&rec(u64::MAX / 3600, 0, 0)) <= 10_000);
        assert_eq!(reliability(&rec(0, u32::MAX, u32::MAX)), 0);
    }
}
