//! A supplier's machine: the owner's cold wallet, the hot node key that signs receipts on the
//! GPU machine, the hardware it claims, its asking price, its stake and its record.
//!
//! A worker with N GPUs serves several leases at once, up to N GPUs in all: it counts the GPUs
//! under lease and its active leases; each lease's GPUs need their share of stake bonded.

use crate::errors::GpumeshError;
use crate::math::SafeMath;
use anchor_lang::prelude::*;

/// What the worker says its machine has. Checked against orders on `assign`; checked against
/// reality off chain by the orchestrator's compute challenges.
#[derive(AnchorSerialize, AnchorDeserialize, Clone, Copy, Debug, PartialEq, Eq, InitSpace)]
pub struct HardwareClaim {
    /// GPU class code (`< 16`); names live in gpumesh-protocol.
    pub gpu_class: u8,
    pub gpu_count: u16,
    pub vram_mib: u32,
    pub bandwidth_gbps: u32,
    /// Region code (`< 64`), a bit position in an order's region set.
    pub region: u8,
}

impl HardwareClaim {
    pub fn validate(&self) -> Result<()> {
        let ok = (self.gpu_class as usize) < super::GPU_CLASS_SLOTS
            && (1..=1024).contains(&self.gpu_count)
            && self.vram_mib > 0
            && self.bandwidth_gbps > 0
            && self.region < super::REGION_SLOTS;
        require!(ok, GpumeshError::InvalidHardware);
        Ok(())
    }

    /// The market's floor for offering a machine: VRAM per GPU and memory bandwidth.
    pub fn meets(&self, params: &super::MarketParams) -> Result<()> {
        require!(
            self.vram_mib >= params.min_worker_vram_mib
                && self.bandwidth_gbps >= params.min_worker_bandwidth_gbps,
            GpumeshError::HardwareBelowMarketMinimum
        );
        Ok(())
    }
}

/// Served time and failures, which the scheduler turns into a reliability score. Each event is
/// counted once, in the one field that names it.
#[derive(
    AnchorSerialize, AnchorDeserialize, Clone, Copy, Debug, Default, PartialEq, Eq, InitSpace,
)]
pub struct WorkerRecord {
    /// GPU-seconds paid through settled receipts.
    pub served_gpu_seconds: u64,
    /// Leases assigned.
    pub leases: u32,
    /// Leases closed as completed.
    pub leases_completed: u32,
    /// Leases closed because the worker went offline.
    pub failures: u32,
    /// Proven frauds (failed compute challenges).
    pub frauds: u32,
    /// Slashes taken (for an offline lease or a fraud), and their total.
    pub slashes: u32,
    pub slashed_total: u64,
}

#[account]
#[derive(InitSpace, Debug)]
pub struct Worker {
    pub version: u8,
    pub bump: u8,
    pub market: Pubkey,
    pub owner: Pubkey,
    pub node_key: Pubkey,
    pub hardware: HardwareClaim,
    /// Asking price, base units per GPU-second.
    pub price_per_gpu_second: u64,
    /// GPUs under an active lease (at most `hardware.gpu_count`).
    pub gpus_leased: u16,
    /// Leases being served right now.
    pub active_leases: u16,
    /// Jailed for fraud: nothing new is assigned and no stake is withdrawn until the owner
    /// unjails it after `jailed_until`.
    pub jailed: bool,
    pub jailed_until: i64,
    pub stake: u64,
    pub unbonding: u64,
    pub unlock_ts: i64,
    /// Earnings settled and not yet claimed (held in the escrow vault).
    pub earnings_claimable: u64,
    pub earnings_total: u64,
    /// Emission rewards earned and not yet claimed (held in the rewards vault).
    pub rewards_claimable: u64,
    pub rewards_total: u64,
    pub record: WorkerRecord,
    pub registered_ts: i64,
    pub reserved: [u8; 64],
}

impl Worker {
    /// Layout version of this account type.
    pub const VERSION: u8 = 1;
    pub const SPACE: usize = 8 + Self::INIT_SPACE;

    /// GPUs not under any lease.
    pub fn free_gpus(&self) -> u16 {
        self.hardware.gpu_count.saturating_sub(self.gpus_leased)
    }

    /// Bonded stake the market requires behind `gpus` leased GPUs.
    pub fn stake_required_for(gpus: u16, min_stake_per_gpu: u64) -> Result<u64> {
        (gpus as u64).safe_mul(min_stake_per_gpu)
    }

    pub fn is_busy(&self) -> bool {
        self.active_leases > 0
    }

    /// Jailed until the owner unjails it, and in any case until `jailed_until`.
    pub fn is_jailed(&self, now: i64) -> bool {
        self.jailed || now < self.jailed_until
    }

    pub fn invariant(&self) -> Result<()> {
        require!(
            self.version == Self::VERSION,
            GpumeshError::AccountVersionMismatch
        );
        self.hardware.validate()?;
        require!(
            self.gpus_leased <= self.hardware.gpu_count
                && self.active_leases <= self.gpus_leased
                && (self.active_leases == 0) == (self.gpus_leased == 0),
            GpumeshError::InvariantWorkerLeases
        );
        require!(self.node_key != self.owner, GpumeshError::NodeKeyIsOwner);
        Ok(())
    }
}

const _: () = assert!(
    Worker::SPACE == 303,
    "Worker layout changed: that is a migration"
);
