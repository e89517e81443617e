//! A synthetic market from a fixed seed, for benchmarks and load tests: a realistic mix of
//! machines (1, 2, 4 and 8 GPUs; several classes with VRAM variants; a dozen regions) and of
//! orders (mostly single GPUs, some 8-GPU nodes, a few 64-GPU clusters). Same seed, same market.

use super::reliability::{WorkerRecord, reliability};
use super::types::{
    GpuClass, Order, OrderId, OrderMode, Region, RegionSet, WorkerId, WorkerSpec, WorkerStatus,
};

/// SplitMix64: tiny, fast and fully determined by its seed (no external RNG crate).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Number of regions and classes the synthetic market uses.
pub const MARKET_REGIONS: u8 = 12;
pub const MARKET_CLASSES: u8 = 6;

/// Per class: (VRAM MiB of the large variant, of the small variant, bandwidth GB/s, base price).
const CLASSES: [(u32, u32, u32, u64); MARKET_CLASSES as usize] = [
    (24_576, 16_384, 1_008, 400),   // consumer card
    (49_152, 24_576, 960, 700),     // workstation card
    (81_920, 40_960, 2_039, 1_500), // A100 80/40 GB
    (81_920, 81_920, 3_350, 2_800), // H100
    (144_384, 144_384, 4_800, 4_000),
    (192_512, 192_512, 8_000, 6_000),
];

pub struct Market {
    pub workers: Vec<WorkerSpec>,
    pub orders: Vec<Order>,
}

/// `workers` machines and `orders` pending orders, from `seed`.
pub fn market(seed: u64, workers: usize, orders: usize) -> Market {
    let mut rng = Rng::new(seed);
    let workers = (0..workers).map(|i| worker(&mut rng, i as u32)).collect();
    let orders = (0..orders).map(|i| order(&mut rng, i as u64)).collect();
    Market { workers, orders }
}

fn class(rng: &mut Rng) -> u8 {
    // Cheaper classes are more common.
    const WEIGHTS: [u64; MARKET_CLASSES as usize] = [30, 20, 20, 15, 10, 5];
    let mut roll = rng.below(100);
    for (c, w) in WEIGHTS.iter().enumerate() {
        if roll < *w {
            return c as u8;
        }
        roll -= w;
    }
    0
}

pub fn worker(rng: &mut Rng, id: u32) -> WorkerSpec {
    let c = class(rng);
    let (big, small, bandwidth, base) = CLASSES[usize::from(c)];
    let gpus = match rng.below(10) {
        0..=2 => 1,
        3..=4 => 2,
        5..=6 => 4,
        _ => 8,
    };
    let failures = rng.below(4) as u32;
    let frauds = u32::from(rng.chance(3));
    let record = WorkerRecord {
        served_gpu_seconds: rng.below(5_000) * 3600,
        failures,
        frauds,
        slashes: failures + frauds,
        ..WorkerRecord::default()
    };
    let status = match rng.below(100) {
        0 => WorkerStatus::Draining,
        1 => WorkerStatus::Offline,
        2 => WorkerStatus::Jailed,
        _ => WorkerStatus::Idle,
    };
    WorkerSpec {
        id: WorkerId(id),
        class: GpuClass::from_code(c).expect("market classes < 16"),
        gpus,
        vram_mib: if rng.chance(25) { small } else { big },
        bandwidth_gbps: bandwidth - rng.below(u64::from(bandwidth) / 10) as u32,
        region: region(rng),
        price: base * (80 + rng.below(70)) / 100,
        reliability_bp: reliability(&record),
        latency_us: 1_000 + rng.below(80_000) as u32,
        status,
    }
}

fn region(rng: &mut Rng) -> Region {
    Region::from_code(rng.below(u64::from(MARKET_REGIONS)) as u8).expect("below 12 < 64")
}

pub fn order(rng: &mut Rng, id: u64) -> Order {
    let c = class(rng);
    let (big, small, bandwidth, base) = CLASSES[usize::from(c)];
    let gpus = match rng.below(100) {
        0..=69 => 1,
        70..=94 => 8,
        _ => 64,
    };
    let regions = match rng.below(10) {
        0..=4 => RegionSet::of(&[region(rng)]),
        5..=7 => RegionSet::of(&[region(rng), region(rng), region(rng)]),
        _ => RegionSet::ALL,
    };
    Order {
        id: OrderId(id),
        class: GpuClass::from_code(c).expect("market classes < 16"),
        gpus,
        min_vram_mib: if rng.chance(30) { big } else { small },
        min_bandwidth_gbps: bandwidth * 8 / 10,
        regions,
        // Some buyers bid below every ask and wait: the round explains why.
        max_price: base * (60 + rng.below(120)) / 100,
        mode: if rng.chance(80) {
            OrderMode::Spot
        } else {
            OrderMode::Reserved
        },
        arrived_at: id,
    }
}
