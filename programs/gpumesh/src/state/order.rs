//! A buyer's order: what GPUs it needs, the most it pays, and the escrow that pays for them.

use super::ACCOUNT_VERSION;
use crate::errors::GpumeshError;
use anchor_lang::prelude::*;

#[derive(AnchorSerialize, AnchorDeserialize, Clone, Copy, Debug, PartialEq, Eq, InitSpace)]
pub enum OrderMode {
    /// Paid per second; the buyer may cancel at any time once leases are closed.
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

#[account]
#[derive(InitSpace, Debug)]
pub struct Order {
    pub version: u8,
    pub bump: u8,
    pub market: Pubkey,
    pub buyer: Pubkey,
    pub order_id: u64,
    pub requirements: OrderRequirements,
    /// Most the buyer pays, base units per GPU-second.
    pub max_price_per_gpu_second: u64,
    /// Seconds of service per lease the order pays for at most.
    pub duration: u64,
    pub mode: OrderMode,
    /// Hash of the job specification kept off chain.
    pub job_spec_hash: [u8; 32],
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
    pub reserved: [u8; 64],
}

impl Order {
    pub const SPACE: usize = 8 + Self::INIT_SPACE;

    pub fn refresh_status(&mut self) {
        self.status = if self.gpus_assigned >= self.requirements.gpu_count {
            OrderStatus::Active
        } else {
            OrderStatus::Open
        };
    }

    pub fn invariant(&self) -> Result<()> {
        use crate::math::SafeMath;
        require!(self.version == ACCOUNT_VERSION, GpumeshError::InvalidOrder);
        require!(
            self.gpus_assigned <= self.requirements.gpu_count,
            GpumeshError::InvalidGpuCount
        );
        // Conservation inside the order: deposited = remaining + paid.
        require!(
            self.escrow_remaining.safe_add(self.total_paid)? == self.escrow_deposited,
            GpumeshError::MathOverflow
        );
        Ok(())
    }
}
