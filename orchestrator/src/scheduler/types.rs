//! The market's vocabulary as the scheduler sees it: workers, orders, placements, and the compact
//! codes the on-chain program uses for GPU classes and regions, so chain data feeds straight in.

/// GPU classes, regions and region sets are the protocol's (the codes the chain stores), not a
/// copy of them.
pub use gpumesh_protocol::{GpuClass, Region, RegionSet};

/// Slots for GPU class codes (`code < 16`), from the one place the program reads them too.
pub const GPU_CLASSES: usize = gpumesh_protocol::gpu::GPU_CLASS_SLOTS;
/// Slots for region codes (`code < 64`, one bit each in a [`RegionSet`]).
pub const REGIONS: usize = gpumesh_protocol::region::REGION_SLOTS as usize;

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
