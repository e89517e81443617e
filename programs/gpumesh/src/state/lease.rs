//! A lease: some of one worker's GPUs serving one order at an agreed price and fee, and what has
//! been settled on it. The account exists while the lease is active; every way a lease ends
//! closes it (the `LeaseClosed` event keeps the record).

use crate::errors::GpumeshError;
use anchor_lang::prelude::*;

#[derive(AnchorSerialize, AnchorDeserialize, Clone, Copy, Debug, PartialEq, Eq, InitSpace)]
pub enum CloseReason {
    /// The job finished.
    Completed,
    /// The buyer or the orchestrator stopped it.
    Cancelled,
    /// The worker missed heartbeats past the grace period (slashing rules apply).
    WorkerOffline,
    /// A compute challenge proved the worker dishonest (slashing and jail apply).
    Fraud,
    /// No receipt settled for the market's maximum receipt age; closed by anyone, no slash.
    Expired,
    /// The buyer ended it after its exit window (see `request_close`); no slash.
    BuyerExit,
    /// A reserved order preempted this spot lease after its notice (see `preempt_lease`); no
    /// slash.
    Preempted,
}

#[account]
#[derive(InitSpace, Debug)]
pub struct Lease {
    pub version: u8,
    pub bump: u8,
    pub market: Pubkey,
    pub order: Pubkey,
    pub worker: Pubkey,
    /// This instance's nonce (the market's lease count when it was assigned). Receipts sign it,
    /// so a receipt for an earlier lease at the same address never settles on this one.
    pub nonce: u64,
    /// Paid the account's rent; gets it back when the lease ends, whoever ends it.
    pub rent_payer: Pubkey,
    pub gpus: u16,
    pub price_per_gpu_second: u64,
    /// The protocol fee agreed at assignment, in bps; charged on cumulative payments.
    pub fee_bps: u16,
    pub start_ts: i64,
    /// Cumulative served seconds covered by settled receipts.
    pub seconds_settled: u64,
    /// Σ paid out of escrow for this lease (worker share + fee).
    pub amount_paid: u64,
    /// Σ fee: always `floor(amount_paid × fee_bps / 10⁴)`.
    pub fee_paid: u64,
    /// The share of the fee burned, agreed at assignment, in bps.
    pub burn_bps: u16,
    /// Σ fee burned: always `floor(fee_paid × burn_bps / 10⁴)`.
    pub fee_burned: u64,
    /// When a reserved order preempted this spot lease: it ends at this time and is paid up to
    /// it (0: not preempted).
    pub preempt_at: i64,
    /// When the last receipt was settled (the lease start before any).
    pub last_settle_ts: i64,
    /// Heartbeat-chain head of the last settled receipt.
    pub last_chain_head: [u8; 32],
    /// Emission accumulator when this lease's rewards were last brought up to date.
    pub reward_acc_snapshot: u128,
    pub reserved: [u8; 64],
}

impl Lease {
    /// Layout version of this account type.
    pub const VERSION: u8 = 1;
    pub const SPACE: usize = 8 + Self::INIT_SPACE;

    pub fn invariant(&self) -> Result<()> {
        require!(
            self.version == Self::VERSION,
            GpumeshError::AccountVersionMismatch
        );
        let fee = crate::math::bps_of(self.amount_paid, self.fee_bps)?;
        let burned = crate::math::bps_of(self.fee_paid, self.burn_bps)?;
        require!(
            self.fee_paid == fee && self.fee_burned == burned && self.gpus > 0,
            GpumeshError::InvariantLeaseFee
        );
        Ok(())
    }
}

const _: () = assert!(
    Lease::SPACE == 328,
    "Lease layout changed: that is a migration"
);
