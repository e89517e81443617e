//! The market's vocabulary as the scheduler sees it: workers, orders, placements, and the compact
//! codes the on-chain program uses for GPU classes and regions, so chain data feeds straight in.

use super::error::SchedulerError;

/// Number of GPU class codes the program allows (`code < 16`).
pub const GPU_CLASSES: usize = 16;
/// Number of region codes the program allows (`code < 64`, one bit each in a [`RegionSet`]).
pub const REGIONS: usize = 64;

/// A GPU class code as stored on chain (e.g. "h100" maps to one code in another crate).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GpuClass(u8);

impl GpuClass {
    /// Checks the code against the program's limit.
    pub fn new(code: u8) -> Result<Self, SchedulerError> {
        if usize::from(code) < GPU_CLASSES {
            Ok(Self(code))
        } else {
            Err(SchedulerError::GpuClassOutOfRange { code })
        }
    }

    pub fn code(self) -> u8 {
        self.0
    }
}

/// A region code as stored on chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Region(u8);

impl Region {
    /// Checks the code against the program's limit.
    pub fn new(code: u8) -> Result<Self, SchedulerError> {
        if usize::from(code) < REGIONS {
            Ok(Self(code))
        } else {
            Err(SchedulerError::RegionOutOfRange { code })
        }
    }

    pub fn code(self) -> u8 {
        self.0
    }
}

/// The regions an order accepts: bit `r` set means region `r` is allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RegionSet(pub u64);

impl RegionSet {
    pub const ALL: RegionSet = RegionSet(u64::MAX);

    pub fn of(regions: &[Region]) -> Self {
        Self(regions.iter().fold(0, |bits, r| bits | 1u64 << r.0))
    }

    pub fn contains(self, region: Region) -> bool {
        self.0 & (1u64 << region.0) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Allowed regions in ascending code order.
    pub fn iter(self) -> impl Iterator<Item = Region> {
        let mut bits = self.0;
        std::iter::from_fn(move || {
            if bits == 0 {
                return None;
            }
            let r = bits.trailing_zeros() as u8;
            bits &= bits - 1;
            Some(Region(r))
        })
    }
}

/// Opaque worker id; the orchestrator maps it to the worker's on-chain account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkerId(pub u32);

/// Opaque order id; the orchestrator maps it to the order's on-chain account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OrderId(pub u64);

/// Where a worker stands. Only `Idle` and `Busy` workers with free GPUs can take new work;
/// `Draining` finishes its leases but takes nothing new; `Offline` and `Jailed` take nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WorkerStatus {
    Idle,
    Busy,
    Draining,
    Offline,
    Jailed,
}

impl WorkerStatus {
    pub fn is_placeable(self) -> bool {
        matches!(self, WorkerStatus::Idle | WorkerStatus::Busy)
    }
}

/// Spot orders pay per second and can be cancelled any time, so the scheduler optimises price;
/// reserved orders lock price and workers for a term, so it optimises reliability.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OrderMode {
    Spot,
    Reserved,
}

/// A supplier's machine as registered (chain) plus what the orchestrator measures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerSpec {
    pub id: WorkerId,
    pub class: GpuClass,
    /// GPUs in the machine; all of them are free when it joins.
    pub gpus: u16,
    pub vram_mib: u32,
    pub bandwidth_gbps: u32,
    pub region: Region,
    /// Asking price, token base units per GPU-second.
    pub price: u64,
    /// From [`super::reliability`], 0..=10_000 basis points.
    pub reliability_bp: u16,
    /// Measured round-trip latency to the orchestrator.
    pub latency_us: u32,
    /// Initial status; `Busy` is managed by the scheduler from leases, so `Busy` here means `Idle`.
    pub status: WorkerStatus,
}

/// A worker as the scheduler tracks it: the spec plus free GPUs and the orders it serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Worker {
    pub spec: WorkerSpec,
    pub gpus_free: u16,
    /// Orders holding GPUs on this worker, ascending.
    pub leases: Vec<OrderId>,
}

/// A buyer's request as created on chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Order {
    pub id: OrderId,
    pub class: GpuClass,
    /// GPUs wanted; more than one makes a cluster inside one region.
    pub gpus: u32,
    pub min_vram_mib: u32,
    pub min_bandwidth_gbps: u32,
    pub regions: RegionSet,
    /// Highest acceptable ask, token base units per GPU-second.
    pub max_price: u64,
    pub mode: OrderMode,
    /// Arrival time on the caller's clock (same unit as `now` in rounds); drives aging.
    pub arrived_at: u64,
}

/// GPUs on one worker given to one order; on chain this becomes one lease at `price`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Assignment {
    pub worker: WorkerId,
    pub gpus: u16,
    /// The worker's ask when placed: the lease's agreed price per GPU-second.
    pub price: u64,
}

/// Where an order runs: one region, one or more workers whose GPUs sum to the order's count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    pub order: OrderId,
    pub region: Region,
    /// In the order they were chosen (largest machines first for clusters).
    pub assignments: Vec<Assignment>,
}

impl Placement {
    pub fn gpus(&self) -> u32 {
        self.assignments.iter().map(|a| u32::from(a.gpus)).sum()
    }
}
