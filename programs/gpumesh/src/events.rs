//! Events: one per state change, carrying the amounts before and after. On SBF they are logged
//! with `sol_log_data`; on the host they go through the runtime's syscall stubs (see
//! [`emit_event`]) so tests and the in-process chain can read them from the transaction's logs.

use crate::state::{CloseReason, HardwareClaim, MarketParams, OrderTerms};
use anchor_lang::prelude::*;

/// Log an event as `Program data: <base64(discriminator ‖ borsh)>`.
pub fn emit_event<E: anchor_lang::Event>(event: &E) {
    let data = event.data();
    #[cfg(target_os = "solana")]
    anchor_lang::solana_program::log::sol_log_data(&[&data]);
    #[cfg(not(target_os = "solana"))]
    solana_sysvar::program_stubs::sol_log_data(&[&data]);
}

#[event]
#[derive(Debug, Clone)]
pub struct MarketInitialized {
    pub market: Pubkey,
    pub mint: Pubkey,
    pub authority: Pubkey,
    pub orchestrator: Pubkey,
    pub params: MarketParams,
    pub emission_total: u64,
    pub emission_start_ts: i64,
    pub emission_duration: i64,
}

#[event]
#[derive(Debug, Clone)]
pub struct MarketUpdated {
    pub market: Pubkey,
    pub params_before: MarketParams,
    pub params_after: MarketParams,
    pub orchestrator_before: Pubkey,
    pub orchestrator_after: Pubkey,
    pub authority_after: Pubkey,
    pub paused_after: bool,
}

#[event]
#[derive(Debug, Clone)]
pub struct WorkerRegistered {
    pub market: Pubkey,
    pub worker: Pubkey,
    pub owner: Pubkey,
    pub node_key: Pubkey,
    pub hardware: HardwareClaim,
    pub price_per_gpu_second: u64,
}

#[event]
#[derive(Debug, Clone)]
pub struct WorkerUpdated {
    pub worker: Pubkey,
    pub price_before: u64,
    pub price_after: u64,
    pub hardware_after: HardwareClaim,
    pub node_key_after: Pubkey,
}

#[event]
#[derive(Debug, Clone)]
pub struct StakeChanged {
    pub worker: Pubkey,
    /// What happened: deposit, unstake request, or withdrawal.
    pub kind: StakeChangeKind,
    pub amount: u64,
    pub stake_before: u64,
    pub stake_after: u64,
    pub unbonding_before: u64,
    pub unbonding_after: u64,
    pub unlock_ts: i64,
    pub vault_total_before: u64,
    pub vault_total_after: u64,
}

#[derive(AnchorSerialize, AnchorDeserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StakeChangeKind {
    Deposit,
    UnstakeRequested,
    Withdrawn,
}

#[event]
#[derive(Debug, Clone)]
pub struct WorkerClosed {
    pub worker: Pubkey,
    pub owner: Pubkey,
}

#[event]
#[derive(Debug, Clone)]
pub struct EarningsClaimed {
    pub worker: Pubkey,
    pub amount: u64,
    pub claimable_before: u64,
    pub claimable_after: u64,
}

#[event]
#[derive(Debug, Clone)]
pub struct OrderCreated {
    pub order: Pubkey,
    pub buyer: Pubkey,
    pub order_id: u64,
    pub terms: OrderTerms,
    pub escrow_before: u64,
    pub escrow_after: u64,
}

/// The buyer asked to close an order: no new lease from now on, no receipt pays for a second
/// after `close_requested_ts`, and from `buyer_exit_ts` the buyer may end the leases itself.
#[event]
#[derive(Debug, Clone)]
pub struct OrderCloseRequested {
    pub order: Pubkey,
    pub buyer: Pubkey,
    pub close_requested_ts: i64,
    pub buyer_exit_ts: i64,
    pub active_leases: u16,
    pub escrow_remaining: u64,
}

#[event]
#[derive(Debug, Clone)]
pub struct OrderToppedUp {
    pub order: Pubkey,
    pub amount: u64,
    pub escrow_before: u64,
    pub escrow_after: u64,
}

#[event]
#[derive(Debug, Clone)]
pub struct OrderClosed {
    pub order: Pubkey,
    pub buyer: Pubkey,
    /// true = completed, false = cancelled.
    pub completed: bool,
    /// Content hash of the job's results, given with the completion (zero for a cancel).
    pub result_hash: [u8; 32],
    pub escrow_before: u64,
    pub refund: u64,
    pub escrow_after: u64,
    pub total_paid: u64,
}

#[event]
#[derive(Debug, Clone)]
pub struct LeaseAssigned {
    pub lease: Pubkey,
    pub order: Pubkey,
    pub worker: Pubkey,
    /// The instance nonce its receipts must sign.
    pub nonce: u64,
    pub gpus: u16,
    pub price_per_gpu_second: u64,
    pub fee_bps: u16,
    pub start_ts: i64,
    pub order_gpus_before: u16,
    pub order_gpus_after: u16,
    pub worker_gpus_leased_before: u16,
    pub worker_gpus_leased_after: u16,
}

#[event]
#[derive(Debug, Clone)]
pub struct ReceiptSettled {
    pub lease: Pubkey,
    pub order: Pubkey,
    pub worker: Pubkey,
    pub seconds_before: u64,
    pub seconds_after: u64,
    /// Taken from escrow: worker share + fee (may be less than the seconds' cost if the escrow
    /// ran dry).
    pub amount: u64,
    pub fee: u64,
    /// The part of the fee burned (the rest went to the treasury).
    pub burned: u64,
    pub escrow_before: u64,
    pub escrow_after: u64,
    pub claimable_before: u64,
    pub claimable_after: u64,
    /// Emission rewards the proven seconds earned.
    pub rewards: u64,
    pub chain_head: [u8; 32],
}

/// The burned share of a settlement batch's protocol fees left the mint's supply.
#[event]
#[derive(Debug, Clone)]
pub struct FeesBurned {
    pub amount: u64,
    pub total_burned_before: u64,
    pub total_burned_after: u64,
}

/// A reserved order preempted a spot lease: it ends at `preempt_at` and is paid up to it.
#[event]
#[derive(Debug, Clone)]
pub struct LeasePreempted {
    pub lease: Pubkey,
    pub order: Pubkey,
    pub worker: Pubkey,
    pub reserved_order: Pubkey,
    pub preempt_at: i64,
}

#[event]
#[derive(Debug, Clone)]
pub struct LeaseClosed {
    pub lease: Pubkey,
    pub order: Pubkey,
    pub worker: Pubkey,
    pub nonce: u64,
    pub reason: CloseReason,
    pub gpus: u16,
    pub seconds_settled: u64,
    pub amount_paid: u64,
    pub fee_paid: u64,
    pub order_gpus_before: u16,
    pub order_gpus_after: u16,
    pub worker_gpus_leased_before: u16,
    pub worker_gpus_leased_after: u16,
}

#[derive(AnchorSerialize, AnchorDeserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlashReason {
    /// Missed heartbeats past the grace period during a lease.
    Offline,
    /// Proven dishonest (e.g. a failed compute challenge).
    Fraud,
}

#[event]
#[derive(Debug, Clone)]
pub struct WorkerSlashed {
    pub worker: Pubkey,
    pub reason: SlashReason,
    /// Hash of the off-chain evidence (zero for an offline slash).
    pub evidence_hash: [u8; 32],
    /// The lease the slash is for, and its compensated buyer (none: the treasury takes it all).
    pub lease: Option<Pubkey>,
    pub buyer: Option<Pubkey>,
    /// The slash took `rate_bps` of the share `share_gpus / gpu_count` of the slashable stake.
    pub share_gpus: u16,
    pub gpu_count: u16,
    pub rate_bps: u16,
    pub amount: u64,
    pub to_buyer: u64,
    pub to_treasury: u64,
    pub stake_before: u64,
    pub stake_after: u64,
    pub unbonding_before: u64,
    pub unbonding_after: u64,
}

#[event]
#[derive(Debug, Clone)]
pub struct WorkerJailChanged {
    pub worker: Pubkey,
    pub jailed: bool,
    pub jailed_until: i64,
}

/// Logged by a refused `assign`: the transaction fails, its logs keep the record.
#[event]
#[derive(Debug, Clone)]
pub struct BreakerTripped {
    pub gpu_class: u8,
    pub price: u64,
    pub reference: u64,
    pub cap: u64,
}

#[event]
#[derive(Debug, Clone)]
pub struct ReferencePriceUpdated {
    pub gpu_class: u8,
    pub lease_price: u64,
    pub reference_before: u64,
    pub reference_after: u64,
}

#[event]
#[derive(Debug, Clone)]
pub struct RewardsFunded {
    pub amount: u64,
    pub funded_before: u64,
    pub funded_after: u64,
    /// Released while unfunded so far (never paid, never needs funding).
    pub unfunded: u64,
}

#[event]
#[derive(Debug, Clone)]
pub struct RewardsClaimed {
    pub worker: Pubkey,
    pub amount: u64,
    pub paid_before: u64,
    pub paid_after: u64,
}

#[event]
#[derive(Debug, Clone)]
pub struct TreasuryWithdrawn {
    pub amount: u64,
    pub to: Pubkey,
    pub treasury_before: u64,
    pub treasury_after: u64,
}
