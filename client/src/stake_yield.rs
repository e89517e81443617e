//! The yield a worker's stake earned, in exact integer arithmetic: one definition for the CLI's
//! `worker status` and the orchestrator's console.

use gpumesh::state::Worker;

/// Seconds in the year yields are annualized over (365 days).
pub const YEAR_SECONDS: u64 = 365 * 86_400;

/// The yield a worker's stake earned over the worker's life (registration to now): fee income
/// (what buyers paid for its served seconds, after the protocol fee) and emission rewards, each
/// relative to the stake bonded now and annualized over that window; slashes are the loss
/// beside them. The chain keeps totals, not a stake history, so the stake is today's bonded
/// stake. A past figure, not a forecast.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StakeYield {
    /// Seconds from registration to now.
    pub seconds: u64,
    /// Bonded stake now, base units.
    pub stake: u64,
    /// `earnings_total`: service income after the protocol fee, base units.
    pub fee_income: u64,
    /// `rewards_total`: emission rewards, base units.
    pub emission: u64,
    /// `record.slashed_total`: what slashes took, base units.
    pub slashed: u64,
}

impl StakeYield {
    /// The yield of `w` at `now`; `None` with no bonded stake or no time since registration.
    pub fn of(w: &Worker, now: i64) -> Option<Self> {
        let seconds = u64::try_from(now.checked_sub(w.registered_ts)?).ok()?;
        (w.stake > 0 && seconds > 0).then_some(Self {
            seconds,
            stake: w.stake,
            fee_income: w.earnings_total,
            emission: w.rewards_total,
            slashed: w.record.slashed_total,
        })
    }

    /// `amount / stake × YEAR / seconds` in millionths (ppm) per year, truncated toward zero:
    /// exact integer arithmetic (at most 2^64 · 2^25 · 10^6 < 2^110 in the numerator).
    pub fn annual_ppm(&self, amount: i128) -> i128 {
        let denominator = i128::from(self.stake) * i128::from(self.seconds);
        if denominator == 0 {
            return 0;
        }
        amount * i128::from(YEAR_SECONDS) * 1_000_000 / denominator
    }

    pub fn fees_ppm(&self) -> i128 {
        self.annual_ppm(i128::from(self.fee_income))
    }

    pub fn emission_ppm(&self) -> i128 {
        self.annual_ppm(i128::from(self.emission))
    }

    pub fn total_ppm(&self) -> i128 {
        self.annual_ppm(i128::from(self.fee_income) + i128::from(self.emission))
    }

    pub fn net_ppm(&self) -> i128 {
        self.annual_ppm(
            i128::from(self.fee_income) + i128::from(self.emission) - i128::from(self.slashed),
        )
    }
}

/// Millionths (signed) as a percentage with `places` decimals (1 to 4), truncated toward zero.
pub fn percent_of_ppm(ppm: i128, places: u32) -> String {
    let places = places.clamp(1, 4);
    let sign = if ppm < 0 { "-" } else { "" };
    let abs = ppm.unsigned_abs();
    let drop = 10u128.pow(4 - places);
    format!(
        "{sign}{}.{:0width$}",
        abs / 10_000,
        abs % 10_000 / drop,
        width = places as usize
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use anchor_lang::prelude::Pubkey;
    use gpumesh::state::{HardwareClaim, WorkerRecord};

    fn worker(stake: u64, earnings: u64, rewards: u64, slashed: u64, registered: i64) -> Worker {
        Worker {
            version: Worker::VERSION,
            bump: 0,
            market: Pubkey::default(),
            owner: Pubkey::new_unique(),
            node_key: Pubkey::new_unique(),
            hardware: HardwareClaim {
                gpu_class: 0,
                gpu_count: 1,
                vram_mib: 1,
                bandwidth_gbps: 1,
                region: 0,
            },
            price_per_gpu_second: 1,
            gpus_leased: 0,
            active_leases: 0,
            jailed: false,
            jailed_until: 0,
            stake,
            unbonding: 0,
            unlock_ts: 0,
            earnings_claimable: 0,
            earnings_total: earnings,
            rewards_claimable: 0,
            rewards_total: rewards,
            record: WorkerRecord {
                slashed_total: slashed,
                ..Default::default()
            },
            registered_ts: registered,
            reserved: [0; 64],
        }
    }

    #[test]
    fn stake_yield_is_annualized_exactly_over_the_workers_life() {
        // 1,000 staked for half a year earned 50 in fees and 25 in emission, lost 10 to a slash.
        let half_year = (YEAR_SECONDS / 2) as i64;
        let y = StakeYield::of(&worker(1_000, 50, 25, 10, 1_000), 1_000 + half_year).unwrap();
        assert_eq!(y.seconds, YEAR_SECONDS / 2);
        assert_eq!(y.fees_ppm(), 100_000); // 5% in half a year = 10% a year
        assert_eq!(y.emission_ppm(), 50_000);
        assert_eq!(y.total_ppm(), 150_000);
        assert_eq!(y.net_ppm(), 130_000);
        assert_eq!(percent_of_ppm(y.total_ppm(), 4), "15.0000");
        assert_eq!(percent_of_ppm(y.net_ppm(), 2), "13.00");
        // Truncated toward zero, also below zero: a slash larger than the income.
        let y = StakeYield::of(&worker(3, 0, 0, 1, 0), YEAR_SECONDS as i64).unwrap();
        assert_eq!(y.net_ppm(), -333_333);
        assert_eq!(percent_of_ppm(y.net_ppm(), 4), "-33.3333");
        assert_eq!(percent_of_ppm(y.net_ppm(), 2), "-33.33");
        // The largest inputs do not overflow.
        let y = StakeYield::of(&worker(1, u64::MAX, u64::MAX, 0, 0), 1).unwrap();
        assert_eq!(
            y.total_ppm(),
            2 * i128::from(u64::MAX) * i128::from(YEAR_SECONDS) * 1_000_000
        );
        // Nothing to show without stake or time.
        assert!(StakeYield::of(&worker(0, 5, 5, 0, 0), 100).is_none());
        assert!(StakeYield::of(&worker(5, 5, 5, 0, 100), 100).is_none());
        assert!(StakeYield::of(&worker(5, 5, 5, 0, 100), 50).is_none());
    }

    #[test]
    fn percentages_are_exact() {
        assert_eq!(percent_of_ppm(12_345, 2), "1.23");
        assert_eq!(percent_of_ppm(1_000_000, 2), "100.00");
        assert_eq!(percent_of_ppm(0, 4), "0.0000");
        assert_eq!(percent_of_ppm(-12_345, 4), "-1.2345");
    }
}
