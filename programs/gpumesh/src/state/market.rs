//! The market: one per payment mint and creating authority. It owns the four vaults (as their
//! token authority) and keeps, next to its parameters, running totals of what each vault must
//! hold, so that the conservation invariant can be checked from the market alone.

use super::{BPS_DENOMINATOR, GPU_CLASS_SLOTS};
use crate::errors::GpumeshError;
use anchor_lang::prelude::*;

pub const DAY: i64 = 86_400;

/// Everything the authority may tune, with the bounds enforced by [`MarketParams::validate`].
#[derive(AnchorSerialize, AnchorDeserialize, Clone, Copy, Debug, PartialEq, Eq, InitSpace)]
pub struct MarketParams {
    /// Protocol fee on every settled payment, in bps (bound: ≤ 2,000 = 20%).
    pub protocol_fee_bps: u16,
    /// Minimum bonded stake per claimed GPU for a worker to be assigned (base units, > 0).
    pub min_stake_per_gpu: u64,
    /// Seconds between an unstake request and the withdrawal (bound: 1 hour ..= 90 days).
    pub unbonding_period: i64,
    /// Most receipts one `settle` may carry (bound: 1 ..= 16, a transaction-size limit).
    pub max_receipts_per_settle: u8,
    /// Seconds without a settled receipt after which a lease counts as dead and anyone may
    /// expire it (bound: 60 s ..= 7 days; default a day, so an orchestrator can settle a 1-GPU
    /// lease every ten hours and keep its fees within 1,000 lamports per GPU-hour).
    pub max_receipt_age: i64,
    /// Off-chain grace period for a missed heartbeat before the orchestrator closes a lease as
    /// offline (bound: 1 ..= 600 s).
    pub heartbeat_grace: i64,
    /// Share of stake slashed when a worker goes offline mid-lease, in bps (≤ 5,000).
    pub offline_slash_bps: u16,
    /// Share of stake slashed for proven fraud, in bps (≤ 10,000).
    pub fraud_slash_bps: u16,
    /// Share of every slash that goes to the treasury instead of the buyer, in bps (≤ 10,000).
    pub slash_treasury_share_bps: u16,
    /// Seconds a worker stays jailed after fraud (bound: 0 ..= 365 days).
    pub jail_period: i64,
    /// Circuit breaker: a lease price may be at most reference × (1 + band), band in bps
    /// (bound: 1,000 ..= 100,000, i.e. 10% ..= 1,000%).
    pub breaker_band_bps: u32,
    /// Weight of a new lease price in the reference-price moving average, in bps (1 ..= 5,000).
    pub reference_smoothing_bps: u16,
    /// A class's reference price moves at most once per this many seconds (0 ..= 1 day).
    pub reference_update_interval: i64,
    /// The buyer's exit: seconds after a buyer asks to close an order during which the
    /// orchestrator may still settle the final receipts and close the leases; after it the buyer
    /// ends them itself and takes the unspent escrow back (bound: 10 ..= 3,600 s).
    pub buyer_exit_window: i64,
    /// The least VRAM per GPU a worker may register, MiB (default 7,629 MiB = 8 × 10⁹ bytes, the
    /// worker daemon's own floor; bound 1 ..= 1,048,576).
    pub min_worker_vram_mib: u32,
    /// The least memory bandwidth a worker may register, GB/s (default 144; bound 1 ..= 100,000).
    pub min_worker_bandwidth_gbps: u32,
    /// Share of every protocol fee burned (an SPL burn from the escrow vault), in bps; the rest
    /// goes to the treasury (default 2,000 = 20%; bound ≤ 10,000).
    pub fee_burn_bps: u16,
    /// Seconds of notice a spot lease gets when a reserved order preempts it; it is paid for the
    /// seconds it served up to the end of the notice (default 60; bound 0 ..= 3,600).
    pub preemption_notice: i64,
}

/// Most seconds a buyer ever waits, after asking to close an order, before it can end the
/// order's leases and take its unspent escrow back (the bound on `buyer_exit_window`).
pub const MAX_BUYER_EXIT_WINDOW: i64 = 3_600;

impl MarketParams {
    pub fn validate(&self) -> Result<()> {
        let ok = self.protocol_fee_bps <= 2_000
            && self.min_stake_per_gpu > 0
            && (3_600..=90 * DAY).contains(&self.unbonding_period)
            && (1..=16).contains(&self.max_receipts_per_settle)
            && (60..=7 * DAY).contains(&self.max_receipt_age)
            && (1..=600).contains(&self.heartbeat_grace)
            && self.offline_slash_bps <= 5_000
            && self.fraud_slash_bps as u64 <= BPS_DENOMINATOR
            && self.slash_treasury_share_bps as u64 <= BPS_DENOMINATOR
            && (0..=365 * DAY).contains(&self.jail_period)
            && (1_000..=100_000).contains(&self.breaker_band_bps)
            && (1..=5_000).contains(&self.reference_smoothing_bps)
            && (0..=DAY).contains(&self.reference_update_interval)
            && (10..=MAX_BUYER_EXIT_WINDOW).contains(&self.buyer_exit_window)
            && (1..=1_048_576).contains(&self.min_worker_vram_mib)
            && (1..=100_000).contains(&self.min_worker_bandwidth_gbps)
            && self.fee_burn_bps as u64 <= BPS_DENOMINATOR
            && (0..=3_600).contains(&self.preemption_notice);
        require!(ok, GpumeshError::InvalidMarketParams);
        Ok(())
    }
}

impl Default for MarketParams {
    fn default() -> Self {
        Self {
            protocol_fee_bps: 250,
            min_stake_per_gpu: 1,
            unbonding_period: 14 * DAY,
            max_receipts_per_settle: 8,
            max_receipt_age: 86_400,
            heartbeat_grace: 15,
            offline_slash_bps: 500,
            fraud_slash_bps: 5_000,
            slash_treasury_share_bps: 0,
            jail_period: 7 * DAY,
            breaker_band_bps: 30_000,
            reference_smoothing_bps: 1_000,
            reference_update_interval: 300,
            buyer_exit_window: 600,
            min_worker_vram_mib: 7_629,
            min_worker_bandwidth_gbps: 144,
            fee_burn_bps: 2_000,
            preemption_notice: 60,
        }
    }
}

/// The suppliers' emission allocation, released linearly from `start_ts` over `duration` and
/// shared among leased GPUs second by second (see `crate::emission`).
#[derive(
    AnchorSerialize, AnchorDeserialize, Clone, Copy, Debug, Default, PartialEq, Eq, InitSpace,
)]
pub struct EmissionSchedule {
    /// Base units allocated to suppliers over the whole schedule (supply × share).
    pub total: u64,
    /// Unix time the linear release begins.
    pub start_ts: i64,
    /// Seconds over which `total` is released (e.g. 12 years).
    pub duration: i64,
    /// Base units put into the rewards vault so far (release never outruns funding).
    pub funded: u64,
    /// Base units released into the accumulator (shared among leased GPUs) so far.
    pub distributed: u64,
    /// Funded base units released while no GPU was leased: nobody earned them; they stay in the
    /// vault.
    pub undistributed: u64,
    /// Base units the schedule released while the vault held too little to pay them: nobody
    /// earned them and they never need funding. So released = distributed + undistributed +
    /// unfunded, and a late funding never pays for seconds that already went by.
    pub unfunded: u64,
    /// Base units owed to workers (settled, not yet claimed) plus already paid.
    pub accrued: u64,
    /// Base units paid out to workers.
    pub paid: u64,
    /// Reward per leased GPU since the start, scaled by 2^64.
    pub acc_per_gpu: u128,
    /// Time up to which release has been accounted.
    pub last_update_ts: i64,
}

#[account]
#[derive(InitSpace, Debug)]
pub struct Market {
    pub version: u8,
    pub bump: u8,
    pub paused: bool,
    /// The authority that created the market; part of its address, never changes.
    pub creator: Pubkey,
    pub authority: Pubkey,
    pub orchestrator: Pubkey,
    pub mint: Pubkey,
    pub stake_vault: Pubkey,
    pub escrow_vault: Pubkey,
    pub treasury_vault: Pubkey,
    pub rewards_vault: Pubkey,
    pub params: MarketParams,
    /// Reference price per GPU class (base units per GPU-second); 0 = not yet known.
    pub reference_prices: [u64; GPU_CLASS_SLOTS],
    /// When each class's reference price last moved.
    pub reference_updated_ts: [i64; GPU_CLASS_SLOTS],
    pub emission: EmissionSchedule,
    /// Σ workers' bonded stake (held in the stake vault).
    pub total_stake: u64,
    /// Σ workers' unbonding stake (held in the stake vault).
    pub total_unbonding: u64,
    /// Σ orders' unspent escrow (held in the escrow vault).
    pub total_escrow: u64,
    /// Σ workers' unclaimed earnings (held in the escrow vault).
    pub total_claimable: u64,
    /// Protocol fees accrued and not withdrawn (the treasury vault's balance).
    pub treasury_balance: u64,
    /// Base units of protocol fees burned over the market's life (gone from the mint's supply).
    pub total_burned: u64,
    /// Settled GPU-seconds over the market's life.
    pub total_gpu_seconds: u64,
    /// GPUs under an active lease right now: the weight emission is shared by.
    pub leased_gpus: u64,
    /// Leases ever assigned. Each lease takes the next count as its instance nonce, which its
    /// receipts sign, so a receipt never settles on a later lease at the same address.
    pub leases_assigned: u64,
    /// Counters for dashboards and sanity checks.
    pub workers: u32,
    pub open_orders: u32,
    pub active_leases: u32,
    pub reserved: [u8; 128],
}

impl Market {
    /// Layout version of this account type.
    pub const VERSION: u8 = 1;
    pub const SPACE: usize = 8 + Self::INIT_SPACE;

    /// What the stake vault must hold.
    pub fn stake_vault_expected(&self) -> Result<u64> {
        use crate::math::SafeMath;
        self.total_stake.safe_add(self.total_unbonding)
    }

    /// What the rewards vault must hold.
    pub fn rewards_vault_expected(&self) -> Result<u64> {
        use crate::math::SafeMath;
        self.emission.funded.safe_sub(self.emission.paid)
    }

    /// What the escrow vault must hold.
    pub fn escrow_vault_expected(&self) -> Result<u64> {
        use crate::math::SafeMath;
        self.total_escrow.safe_add(self.total_claimable)
    }

    pub fn invariant(&self) -> Result<()> {
        require!(
            self.version == Self::VERSION,
            GpumeshError::AccountVersionMismatch
        );
        self.params.validate()?;
        self.stake_vault_expected()?;
        self.escrow_vault_expected()?;
        let e = &self.emission;
        // Never owed more than released; never released more than funded; never accounted
        // more than the schedule's total.
        let funded_release = e.distributed.checked_add(e.undistributed);
        let accounted = funded_release.and_then(|r| r.checked_add(e.unfunded));
        require!(
            e.paid <= e.accrued
                && e.accrued <= e.distributed
                && e.funded <= e.total
                && funded_release.is_some_and(|r| r <= e.funded)
                && accounted.is_some_and(|a| a <= e.total),
            GpumeshError::InvariantEmission
        );
        Ok(())
    }

    /// Signer seeds of the market PDA, which owns the vaults.
    pub fn signer_seeds(&self) -> [&[u8]; 4] {
        [
            super::seeds::MARKET,
            self.mint.as_ref(),
            self.creator.as_ref(),
            std::slice::from_ref(&self.bump),
        ]
    }
}

const _: () = assert!(
    Market::SPACE == 920,
    "Market layout changed: that is a migration"
);
