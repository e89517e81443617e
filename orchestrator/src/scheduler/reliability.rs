//! A worker's reliability score from its on-chain record (the program's own `WorkerRecord`, in
//! its units), so reserved orders (which lock workers for a term) can prefer machines that have
//! served long and failed rarely.

pub use gpumesh_client::program::state::WorkerRecord;

/// GPU-hours of clean service a newcomer is credited with, and the same again as doubt, so a new
/// worker starts at exactly 5_000 bp: neither trusted nor distrusted.
const PRIOR_HOURS: u64 = 24;
/// One lease lost offline costs as much trust as a day of clean service earns.
const FAILURE_HOURS: u64 = 24;
/// Proven fraud is not bad luck: it weighs a week.
const FRAUD_HOURS: u64 = 168;

/// Reliability in basis points (0..=10_000):
///
/// `10_000 · (h + 24) / (h + 48 + 24·failures + 168·frauds)` where `h` is the GPU-hours served
/// (`served_gpu_seconds / 3600`), `failures` the leases lost offline and `frauds` the proven
/// frauds. Each event counts once: a slash is the money side of a failure or a fraud, not a
/// third penalty.
///
/// A newcomer scores 5_000; clean service moves the score towards 10_000 (1_000 clean GPU-hours:
/// 9_770); each failure pulls it down like a day of doubt, each fraud like a week (1_000
/// GPU-hours with one fraud: 8_421). Integer arithmetic in u128, so it is exact and never
/// overflows.
pub fn reliability(record: &WorkerRecord) -> u16 {
    let hours = u128::from(record.served_gpu_seconds / 3600);
    let good = hours + u128::from(PRIOR_HOURS);
    let total = hours
        + 2 * u128::from(PRIOR_HOURS)
        + u128::from(FAILURE_HOURS) * u128::from(record.failures)
        + u128::from(FRAUD_HOURS) * u128::from(record.frauds);
    // good <= total and total > 0, so the quotient is at most 10_000 and fits in u16.
    u16::try_from(10_000 * good / total).unwrap_or(10_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(hours: u64, failures: u32, frauds: u32) -> WorkerRecord {
        WorkerRecord {
            served_gpu_seconds: hours * 3600,
            failures,
            frauds,
            // Slashes are the money side of the same events: they never change the score.
            slashes: failures.saturating_add(frauds),
            ..WorkerRecord::default()
        }
    }

    #[test]
    fn newcomer_is_neutral() {
        assert_eq!(reliability(&WorkerRecord::default()), 5_000);
    }

    #[test]
    fn service_raises_failures_and_frauds_lower() {
        let clean = reliability(&rec(1_000, 0, 0));
        let failed = reliability(&rec(1_000, 1, 0));
        let fraud = reliability(&rec(1_000, 0, 1));
        assert_eq!(clean, 9_770);
        assert_eq!(fraud, 8_421);
        assert!(clean > failed && failed > fraud);
        assert!(reliability(&rec(10, 0, 0)) < clean);
        let mut counted_twice = rec(1_000, 1, 0);
        counted_twice.slashes = 7;
        assert_eq!(
            reliability(&counted_twice),
            failed,
            "slashes are not a third count"
        );
    }

    #[test]
    fn extremes_stay_in_range() {
        assert!(reliability(&rec(u64::MAX / 3600, 0, 0)) <= 10_000);
        assert_eq!(reliability(&rec(0, u32::MAX, u32::MAX)), 0);
    }
}
