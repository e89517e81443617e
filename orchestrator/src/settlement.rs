//! When to settle a worker, so that transaction fees stay within a budget per GPU-hour served
//! while no worker is ever owed more than the escrow holds and no lease nears the market's
//! receipt age.
//!
//! A settlement of one worker costs one receipt signature (its worker receipt covers all its
//! leases) plus its share of the fee payer's signature, both at the cluster's lamports per
//! signature. Settling when the worker has accrued enough GPU-seconds makes that cost at most
//! the budget per GPU-hour: an 8-GPU worker settles about hourly, a 1-GPU worker every few
//! hours. Sooner when a lease ends, when an order's escrow runs low (what the escrow cannot
//! cover is lost to the worker), and before the market's `max_receipt_age` (a lease without a
//! settlement that long may be expired by anyone).

use gpumesh_client::program::state::MarketParams;

/// What the cluster charges per signature (the fee payer's and each Ed25519 receipt's).
pub const LAMPORTS_PER_SIGNATURE: u64 = 5_000;

/// The settlement cadence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Transaction fees a settlement may cost per GPU-hour it pays for.
    pub lamports_per_gpu_hour: u64,
    /// Worker receipts a settlement transaction carries when several are due together (they
    /// share the fee payer's signature).
    pub receipts_per_transaction: u64,
    /// The longest a lease goes without a settlement.
    pub max_interval_s: u64,
    /// Settle an order's leases when its escrow lasts less than this at their spend.
    pub runway_floor_s: u64,
}

impl Policy {
    /// The default budget: 1,000 lamports per GPU-hour.
    pub const DEFAULT_LAMPORTS_PER_GPU_HOUR: u64 = 1_000;

    /// The cadence for a market: at most three quarters of its receipt age between
    /// settlements, and an escrow floor of `runway_floor_s`.
    pub fn for_market(
        params: &MarketParams,
        lamports_per_gpu_hour: u64,
        runway_floor_s: u64,
    ) -> Self {
        Self {
            lamports_per_gpu_hour: lamports_per_gpu_hour.max(1),
            // A lone worker's receipt pays the fee payer's signature alone: budget for that.
            receipts_per_transaction: 1,
            max_interval_s: (params.max_receipt_age.max(60) as u64) / 4 * 3,
            runway_floor_s,
        }
    }

    /// Lamports one worker's settlement costs: its receipt's signature and its share of the
    /// fee payer's.
    pub fn cost_per_settlement(&self) -> u64 {
        LAMPORTS_PER_SIGNATURE + LAMPORTS_PER_SIGNATURE / self.receipts_per_transaction.max(1)
    }

    /// The GPU-seconds a settlement must pay for to cost at most the budget per GPU-hour.
    pub fn value_threshold_gpu_seconds(&self) -> u64 {
        let cost = u128::from(self.cost_per_settlement()) * 3_600;
        cost.div_ceil(u128::from(self.lamports_per_gpu_hour.max(1))) as u64
    }
}

/// One lease of a worker, as the settlement loop sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LeaseBacklog {
    pub gpus: u16,
    /// Seconds the newest stored receipt claims beyond what the chain has paid.
    pub unsettled_seconds: u64,
    /// Seconds since the lease was last settled (or began).
    pub since_settled_s: u64,
    /// Seconds the order's escrow lasts at the spend of its leases (none: nothing spends).
    pub order_runway_s: Option<u64>,
    /// The lease is ending (its job exited, its buyer asked to close, its worker is stopping).
    pub ending: bool,
}

/// Why a worker is settled now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// A lease ends: its final seconds are paid before it closes.
    Ending,
    /// An order's escrow runs low: pay what it covers while it covers it.
    Runway,
    /// A lease nears the market's receipt age.
    Age,
    /// Enough GPU-seconds accrued that the fees stay within budget.
    Value,
}

/// Whether a worker with these leases is due for settlement, and why (the most urgent reason).
pub fn due(policy: &Policy, leases: &[LeaseBacklog]) -> Option<Due> {
    let owed: Vec<&LeaseBacklog> = leases.iter().filter(|l| l.unsettled_seconds > 0).collect();
    if owed.is_empty() {
        return None;
    }
    if owed.iter().any(|l| l.ending) {
        return Some(Due::Ending);
    }
    if owed
        .iter()
        .any(|l| l.order_runway_s.is_some_and(|r| r <= policy.runway_floor_s))
    {
        return Some(Due::Runway);
    }
    if owed
        .iter()
        .any(|l| l.since_settled_s >= policy.max_interval_s)
    {
        return Some(Due::Age);
    }
    let value: u64 = owed
        .iter()
        .map(|l| l.unsettled_seconds.saturating_mul(u64::from(l.gpus)))
        .fold(0u64, u64::saturating_add);
    (value >= policy.value_threshold_gpu_seconds()).then_some(Due::Value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy::for_market(
            &MarketParams {
                max_receipt_age: 86_400,
                ..MarketParams::default()
            },
            1_000,
            600,
        )
    }

    #[test]
    fn the_value_threshold_keeps_fees_within_the_budget() {
        let p = policy();
        assert_eq!(p.cost_per_settlement(), 10_000);
        assert_eq!(p.value_threshold_gpu_seconds(), 36_000, "10 GPU-hours");
        // At the threshold the fee per GPU-hour is the budget.
        let per_gpu_hour = p.cost_per_settlement() * 3_600 / p.value_threshold_gpu_seconds();
        assert!(per_gpu_hour <= 1_000);
        assert_eq!(p.max_interval_s, 64_800);
    }

    #[test]
    fn the_most_urgent_reason_wins_and_nothing_owed_is_never_due() {
        let p = policy();
        let lease = |gpus, unsettled, since, runway, ending| LeaseBacklog {
            gpus,
            unsettled_seconds: unsettled,
            since_settled_s: since,
            order_runway_s: runway,
            ending,
        };
        assert_eq!(due(&p, &[]), None);
        assert_eq!(due(&p, &[lease(8, 0, 40_000, Some(0), true)]), None);
        // An 8-GPU worker: due after 4,500 s; a 1-GPU worker: after 36,000 s.
        assert_eq!(due(&p, &[lease(8, 4_499, 4_499, None, false)]), None);
        assert_eq!(
            due(&p, &[lease(8, 4_500, 4_500, None, false)]),
            Some(Due::Value)
        );
        assert_eq!(due(&p, &[lease(1, 35_999, 35_999, None, false)]), None);
        assert_eq!(
            due(&p, &[lease(1, 36_000, 36_000, None, false)]),
            Some(Due::Value)
        );
        // Several small leases add up.
        let small = lease(1, 12_000, 12_000, None, false);
        assert_eq!(due(&p, &[small, small, small]), Some(Due::Value));
        assert_eq!(
            due(&p, &[lease(1, 10, 64_800, None, false)]),
            Some(Due::Age)
        );
        assert_eq!(
            due(&p, &[lease(1, 10, 10, Some(600), false)]),
            Some(Due::Runway)
        );
        assert_eq!(due(&p, &[lease(1, 10, 10, Some(601), false)]), None);
        assert_eq!(
            due(&p, &[lease(1, 10, 64_800, Some(5), true)]),
            Some(Due::Ending)
        );
    }
}
