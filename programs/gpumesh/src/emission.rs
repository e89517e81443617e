//! Emission rewards: the suppliers' allocation is released linearly over the schedule and shared,
//! second by second, among the GPUs under an active lease; a lease turns its share into rewards
//! only for the seconds its settled receipts prove.
//!
//! Rules, as implemented:
//! - `unlocked(t) = total × (t − start) / duration`, clamped to `[0, total]`, rounded down.
//! - Each update releases the seconds since the last one: `unlocked(now) − unlocked(last)`. The
//!   part the rewards vault can pay (what was funded and not yet released) is shared: with `G`
//!   GPUs leased the accumulator grows by `part × 2^64 / G` (rounded down); with none leased it
//!   is recorded as undistributed and stays in the vault. The part it cannot pay is recorded as
//!   unfunded and is gone: funding that arrives later pays only later seconds, never a lump for
//!   the seconds that went by unfunded. `fund_rewards` brings the accumulator up to date first.
//! - On settlement, a lease of `g` GPUs earns `g × Δacc / 2^64 × min(1, Δsettled / Δwall)`, where
//!   `Δacc` is the accumulator's growth since the lease's last update, `Δsettled` the newly proven
//!   seconds and `Δwall` the wall time since its last settlement: time it cannot prove earns
//!   nothing. Everything rounds down; the dust stays in the vault and is never paid.
//! - Hence at every clock: paid ≤ accrued ≤ distributed, distributed + undistributed ≤ funded,
//!   and distributed + undistributed + unfunded = unlocked(last update) ≤ total; a lease earns at
//!   most its GPUs' share of what was released while it ran.

use crate::errors::GpumeshError;
use crate::math::{SafeMath, to_u64};
use crate::state::{EmissionSchedule, Lease};
use anchor_lang::prelude::*;

const ONE: u128 = 1 << 64;

/// Base units unlocked by the linear schedule at `now`.
pub fn unlocked(e: &EmissionSchedule, now: i64) -> Result<u64> {
    if e.total == 0 || now <= e.start_ts {
        return Ok(0);
    }
    if e.duration <= 0 {
        return Err(error!(GpumeshError::InvalidEmission));
    }
    let elapsed = now.safe_sub(e.start_ts)?.min(e.duration) as u128;
    to_u64((e.total as u128).safe_mul(elapsed)? / e.duration as u128)
}

/// Brings the accumulator up to `now`; call before the leased-GPU weight or the funding changes.
pub fn update(e: &mut EmissionSchedule, leased_gpus: u64, now: i64) -> Result<()> {
    if now <= e.last_update_ts {
        return Ok(());
    }
    let released = unlocked(e, now)?.safe_sub(unlocked(e, e.last_update_ts)?)?;
    let unspent_funding = e
        .funded
        .safe_sub(e.distributed.safe_add(e.undistributed)?)?;
    let funded = released.min(unspent_funding);
    let unfunded = released.safe_sub(funded)?;
    if funded > 0 {
        if leased_gpus > 0 {
            let per_gpu = (funded as u128).safe_mul(ONE)? / leased_gpus as u128;
            e.acc_per_gpu = e.acc_per_gpu.safe_add(per_gpu)?;
            e.distributed = e.distributed.safe_add(funded)?;
        } else {
            e.undistributed = e.undistributed.safe_add(funded)?;
        }
    }
    e.unfunded = e.unfunded.safe_add(unfunded)?;
    e.last_update_ts = now;
    Ok(())
}

/// Most the rewards vault may still be funded with: the schedule's total less what was already
/// funded and what elapsed unfunded (that can never be paid).
pub fn fundable(e: &EmissionSchedule) -> Result<u64> {
    Ok(e.total.saturating_sub(e.unfunded).saturating_sub(e.funded))
}

/// Rewards a lease earns for proving `settled_delta` of the `wall_delta` seconds since its last
/// settlement; moves its snapshot to the current accumulator.
pub fn lease_rewards(
    e: &mut EmissionSchedule,
    lease: &mut Lease,
    settled_delta: u64,
    wall_delta: u64,
) -> Result<u64> {
    let acc_delta = e.acc_per_gpu.safe_sub(lease.reward_acc_snapshot)?;
    lease.reward_acc_snapshot = e.acc_per_gpu;
    if acc_delta == 0 || settled_delta == 0 {
        return Ok(0);
    }
    let share = acc_delta.safe_mul(lease.gpus as u128)? / ONE;
    let earned = if settled_delta >= wall_delta {
        share
    } else {
        share.safe_mul(settled_delta as u128)? / wall_delta as u128
    };
    // The accumulator cannot promise more than was distributed; rounding keeps it below, and
    // this cap keeps it so even if it did not.
    let earned = to_u64(earned)?.min(e.distributed.safe_sub(e.accrued)?);
    e.accrued = e.accrued.safe_add(earned)?;
    Ok(earned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(total: u64, duration: i64) -> EmissionSchedule {
        EmissionSchedule {
            total,
            start_ts: 1_000,
            duration,
            funded: total,
            last_update_ts: 1_000,
            ..Default::default()
        }
    }

    #[test]
    fn unlock_is_linear_and_clamped() {
        let e = schedule(1_000, 100);
        assert_eq!(unlocked(&e, 0).unwrap(), 0);
        assert_eq!(unlocked(&e, 1_050).unwrap(), 500);
        assert_eq!(unlocked(&e, 1_033).unwrap(), 330);
        assert_eq!(unlocked(&e, 9_999).unwrap(), 1_000);
        let max = schedule(u64::MAX, 12 * 365 * 86_400);
        assert_eq!(unlocked(&max, i64::MAX).unwrap(), u64::MAX);
    }

    #[test]
    fn release_goes_to_leased_gpus_or_stays_undistributed() {
        let mut e = schedule(1_000, 100);
        update(&mut e, 0, 1_010).unwrap();
        assert_eq!((e.distributed, e.undistributed), (0, 100));
        update(&mut e, 4, 1_030).unwrap();
        assert_eq!((e.distributed, e.undistributed), (200, 100));
        assert_eq!(e.acc_per_gpu, 50 * ONE);
        // Funding caps release: what it cannot pay is unfunded, not owed.
        e.funded = 350;
        update(&mut e, 4, 1_090).unwrap();
        assert_eq!(e.distributed + e.undistributed, 350);
        assert_eq!(e.unfunded, 900 - 350);
    }

    #[test]
    fn late_funding_pays_no_lump_for_seconds_gone_by() {
        let mut e = schedule(1_000, 100);
        e.funded = 0;
        // 50 s unfunded with 2 GPUs leased: nothing distributed, 500 unfunded.
        update(&mut e, 2, 1_050).unwrap();
        assert_eq!((e.distributed, e.unfunded, e.acc_per_gpu), (0, 500, 0));
        assert_eq!(fundable(&e).unwrap(), 500);
        // Funding arrives; the next 10 s release 100, and only that is shared.
        e.funded = 500;
        update(&mut e, 2, 1_060).unwrap();
        assert_eq!(e.distributed, 100);
        assert_eq!(e.acc_per_gpu, 50 * ONE);
        assert_eq!(fundable(&e).unwrap(), 0);
    }

    #[test]
    fn a_lease_earns_only_its_proven_share() {
        let mut e = schedule(1_000, 100);
        let mut lease = Lease {
            version: 1,
            bump: 0,
            market: Pubkey::default(),
            order: Pubkey::default(),
            worker: Pubkey::default(),
            nonce: 0,
            rent_payer: Pubkey::default(),
            gpus: 2,
            price_per_gpu_second: 1,
            fee_bps: 0,
            start_ts: 1_000,
            seconds_settled: 0,
            amount_paid: 0,
            fee_paid: 0,
            burn_bps: 0,
            fee_burned: 0,
            preempt_at: 0,
            last_settle_ts: 1_000,
            last_chain_head: [0; 32],
            reward_acc_snapshot: 0,
            reserved: [0; 64],
        };
        update(&mut e, 4, 1_040).unwrap(); // 400 released over 4 GPUs
        assert_eq!(lease_rewards(&mut e, &mut lease, 40, 40).unwrap(), 200);
        update(&mut e, 4, 1_080).unwrap();
        // Only half of the 40 s proven: half of the 200 share.
        assert_eq!(lease_rewards(&mut e, &mut lease, 20, 40).unwrap(), 100);
        assert!(e.accrued <= e.distributed);
    }
}
