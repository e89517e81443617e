//! Builders for scheduler tests: a worker or an order with sensible defaults, changed per test.

#![allow(dead_code)]

use gpumesh_orchestrator::scheduler::{
    GpuClass, Order, OrderId, OrderMode, Region, RegionSet, Scheduler, SchedulerConfig, WorkerId,
    WorkerSpec, WorkerStatus,
};

pub fn class(c: u8) -> GpuClass {
    GpuClass::from_code(c).expect("test class < 16")
}

pub fn region(r: u8) -> Region {
    Region::from_code(r).expect("test region < 64")
}

pub fn regions(rs: &[u8]) -> RegionSet {
    RegionSet::of(&rs.iter().map(|&r| region(r)).collect::<Vec<_>>())
}

pub fn worker(id: u32, gpus: u16, r: u8, price: u64) -> WorkerSpec {
    WorkerSpec {
        id: WorkerId(id),
        class: class(0),
        gpus,
        vram_mib: 81_920,
        bandwidth_gbps: 2_000,
        region: region(r),
        price,
        reliability_bp: 9_000,
        latency_us: 10_000,
        status: WorkerStatus::Idle,
    }
}

pub fn order(id: u64, gpus: u32, rs: &[u8], max_price: u64) -> Order {
    Order {
        id: OrderId(id),
        class: class(0),
        gpus,
        min_vram_mib: 40_960,
        min_bandwidth_gbps: 1_000,
        regions: regions(rs),
        max_price,
        mode: OrderMode::Spot,
        arrived_at: 0,
    }
}

pub fn scheduler(workers: &[WorkerSpec], orders: &[Order]) -> Scheduler {
    let mut s = Scheduler::new(SchedulerConfig::default()).expect("default config");
    for w in workers {
        s.add_worker(w.clone()).expect("valid worker");
    }
    for o in orders {
        s.submit_order(o.clone()).expect("valid order");
    }
    s
}

/// The workers and GPUs of a placement, as plain pairs.
pub fn picked(s: &Scheduler, order: u64) -> Vec<(u32, u16)> {
    s.lease(OrderId(order))
        .map(|l| {
            l.placement
                .assignments
                .iter()
                .map(|a| (a.worker.0, a.gpus))
                .collect()
        })
        .unwrap_or_default()
}
