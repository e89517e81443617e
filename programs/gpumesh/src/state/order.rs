//! A buyer's order: what GPUs it needs, the most it pays, and the escrow that pays for them.

use crate::errors::GpumeshError;
use crate::math::SafeMath;
use anchor_lang::prelude::*;

#[derive(AnchorSerialize, AnchorDeserialize, Clone, Copy, Debug, PartialEq, Eq, InitSpace)]
pub enum OrderMode {
    /// Paid per second; the buyer may leave at any time.
    Spot,
    /// Funded up front for the whole term at the max price.
    Reserved,
}

#[derive(AnchorSerialize, AnchorDeserialize, Clone, Copy, Debug, PartialEq, Eq, InitSpace)]
pub enum OrderStatus {
    /// Waiting for (more) leases.
    Open,
    /// Every GPU it asked for is leased.
    Active,
    /// The buyer asked to close it: no new leases; its leases end by `buyer_exit_ts` at the
    /// latest (see `request_close`).
    Closing,
}

/// What a worker must offer to serve the order.
#[derive(AnchorSerialize, AnchorDeserialize, Clone, Copy, Debug, PartialEq, Eq, InitSpace)]
pub struct OrderRequirements {
    pub gpu_class: u8,
    pub gpu_count: u16,
    pub min_vram_mib: u32,
    pub min_bandwidth_gbps: u32,
    /// Bit r set = region r allowed.
    pub regions: u64,
}

impl OrderRequirements {
    pub fn validate(&self) -> Result<()> {
        let ok = (self.gpu_class as usize) < super::GPU_CLASS_SLOTS
            && (1..=4096).contains(&self.gpu_count)
            && self.regions != 0;
        require!(ok, GpumeshError::InvalidOrder);
        Ok(())
    }

    pub fn allows_region(&self, region: u8) -> bool {
        region < super::REGION_SLOTS && self.regions & (1u64 << region) != 0
    }
}

/// The terms a buyer sets when it opens an order; one struct shared by the instruction's
/// arguments, the account and the `OrderCreated` event.
#[derive(AnchorSerialize, AnchorDeserialize, Clone, Copy, Debug, PartialEq, Eq, InitSpace)]
pub struct OrderTerms {
    pub requirements: OrderRequirements,
    /// Most the buyer pays, base units per GPU-second.
    pub max_price_per_gpu_second: u64,
    /// Seconds of service per lease the order pays for at most.
    pub duration: u64,
    pub mode: OrderMode,
    /// Hash of the job specification kept off chain.
    pub job_spec_hash: [u8; 32],
}

impl OrderTerms {
    pub fn validate(&self) -> Result<()> {
        self.requirements.validate()?;
        require!(self.duration > 0, GpumeshError::InvalidOrder);
        require!(
            self.max_price_per_gpu_second > 0,
            GpumeshError::InvalidPrice
        );
        Ok(())
    }
}

#[account]
#[derive(InitSpace, Debug)]
pub struct Order {
    pub version: u8,
    pub bump: u8,
    pub market: Pubkey,
    pub buyer: Pubkey,
    pub order_id: u64,
    pub terms: OrderTerms,
    pub status: OrderStatus,
    /// Σ deposits (initial and top-ups).
    pub escrow_deposited: u64,
    /// Unspent escrow (held in the escrow vault).
    pub escrow_remaining: u64,
    /// Σ payments to workers and fees.
    pub total_paid: u64,
    pub gpus_assigned: u16,
    pub active_leases: u16,
    pub created_ts: i64,
    /// When the buyer asked to close the order (0: it has not). No receipt pays for a second
    /// after it.
    pub close_requested_ts: i64,
    /// From when the buyer may end the order's leases itself (0: no close requested).
    pub buyer_exit_ts: i64,
    pub reserved: [u8; 64],
}

impl Order {
    /// Layout version of this account type.
    pub const VERSION: u8 = 1;
    pub const SPACE: usize = 8 + Self::INIT_SPACE;

    pub fn is_closing(&self) -> bool {
        self.close_requested_ts != 0
    }

    pub fn refresh_status(&mut self) {
        self.status = if self.is_closing() {
            OrderStatus::Closing
        } else if self.gpus_assigned >= self.terms.requirements.gpu_count {
            OrderStatus::Active
        } else {
            OrderStatus::Open
        };
    }

    pub fn invariant(&self) -> Result<()> {
        require!(
            self.version == Self::VERSION,
            GpumeshError::AccountVersionMismatch
        );
        require!(
            self.gpus_assigned <= self.terms.requirements.gpu_count
                && self.active_leases <= self.gpus_assigned
                && (self.active_leases == 0) == (self.gpus_assigned == 0),
            GpumeshError::InvariantOrderState
        );
        // Conservation inside the order: deposited = remaining + paid.
        require!(
            self.escrow_remaining.safe_add(self.total_paid)? == self.escrow_deposited,
            GpumeshError::InvariantOrderEscrow
        );
        require!(
            self.is_closing() == (self.buyer_exit_ts != 0),
            GpumeshError::InvariantOrderState
        );
        Ok(())
    }
}

const _: () = assert!(
    Order::SPACE == 267,
    "Order layout changed: that is a migration"
);
