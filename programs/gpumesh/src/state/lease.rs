//! A lease: one worker serving one order at an agreed price, and what has been settled on it.

use super::ACCOUNT_VERSION;
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
}

#[account]
#[derive(InitSpace, Debug)]
pub struct Lease {
    pub version: u8,
    pub bump: u8,
    pub market: Pubkey,
    pub order: Pubkey,
    pub worker: Pubkey,
    pub gpus: u16,
    pub price_per_gpu_second: u64,
    pub start_ts: i64,
    /// Cumulative served seconds covered by settled receipts.
    pub seconds_settled: u64,
    /// Σ paid out of escrow for this lease (worker share + fee).
    pub amount_paid: u64,
    pub fee_paid: u64,
    /// When the last receipt was settled (the lease start before any).
    pub last_settle_ts: i64,
    /// Heartbeat-chain head of the last settled receipt.
    pub last_chain_head: [u8; 32],
    /// Emission accumulator when this lease's rewards were last brought up to date.
    pub reward_acc_snapshot: u128,
    pub reserved: [u8; 64],
}

impl Lease {
    pub const SPACE: usize = 8 + Self::INIT_SPACE;

    pub fn invariant(&self) -> Result<()> {
        require!(
            self.version == ACCOUNT_VERSION,
            GpumeshError::LeaseNotActive
        );
        require!(
            self.fee_paid <= self.amount_paid,
            GpumeshError::MathOverflow
        );
        Ok(())
    }
}
