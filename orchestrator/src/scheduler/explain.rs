//! Why an order was not placed and why a worker sits idle: per-reason counts that the console and
//! the API show to buyers and suppliers. Diagnostics, so they may scan; placement never does.
//!
//! Each worker (for an order) or order (for a worker) is counted once, under the first check it
//! fails, in this order: class, region, status, VRAM, bandwidth, price, capacity. A worker that
//! passes all of them is `eligible`; an order can still stay unplaced when the eligible workers of
//! every allowed region together hold fewer free GPUs than it asks for (`best_region_gpus`).

use super::index::Index;
use super::types::{GPU_CLASSES, Order, REGIONS, Worker, WorkerId, WorkerStatus};

/// Counts of workers turned away for one order, by the first reason each failed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rejections {
    pub class: u32,
    pub region: u32,
    /// Draining, offline or jailed.
    pub status: u32,
    pub vram: u32,
    pub bandwidth: u32,
    pub price: u32,
    /// Passes everything but has no free GPU.
    pub capacity: u32,
    /// Passes everything and has free GPUs.
    pub eligible: u32,
    /// Most free GPUs the eligible workers of a single allowed region hold together; the order
    /// fits only if this reaches its GPU count (clusters stay inside one region).
    pub best_region_gpus: u32,
}

/// Counts of open orders a worker cannot serve, by the first reason each failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkerExplanation {
    pub worker: WorkerId,
    pub worker_status: WorkerStatus,
    pub gpus_free: u16,
    /// Every order, when the worker is draining, offline or jailed.
    pub status: u32,
    /// Every order, when the worker has no free GPU.
    pub capacity: u32,
    pub class: u32,
    pub region: u32,
    pub vram: u32,
    pub bandwidth: u32,
    pub price: u32,
    /// Open orders the worker could serve (alone or as part of a cluster).
    pub fits: u32,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum WorkerVerdict {
    Status,
    Vram,
    Bandwidth,
    Price,
    Capacity,
    Eligible,
}

/// The checks after class and region, for a worker already known to match both.
fn verdict(w: &Worker, order: &Order) -> WorkerVerdict {
    let s = &w.spec;
    if !s.status.is_placeable() {
        WorkerVerdict::Status
    } else if s.vram_mib < order.min_vram_mib {
        WorkerVerdict::Vram
    } else if s.bandwidth_gbps < order.min_bandwidth_gbps {
        WorkerVerdict::Bandwidth
    } else if s.price > order.max_price {
        WorkerVerdict::Price
    } else if w.gpus_free == 0 {
        WorkerVerdict::Capacity
    } else {
        WorkerVerdict::Eligible
    }
}

fn tally(r: &mut Rejections, w: &Worker, order: &Order, region_gpus: &mut [u32; REGIONS]) {
    match verdict(w, order) {
        WorkerVerdict::Status => r.status += 1,
        WorkerVerdict::Vram => r.vram += 1,
        WorkerVerdict::Bandwidth => r.bandwidth += 1,
        WorkerVerdict::Price => r.price += 1,
        WorkerVerdict::Capacity => r.capacity += 1,
        WorkerVerdict::Eligible => {
            r.eligible += 1;
            region_gpus[usize::from(w.spec.region.code())] += u32::from(w.gpus_free);
        }
    }
}

/// Explains an order by scanning every worker.
pub(crate) fn order_by_scan(workers: &[Option<Worker>], order: &Order) -> Rejections {
    let mut r = Rejections::default();
    let mut region_gpus = [0u32; REGIONS];
    for w in workers.iter().flatten() {
        if w.spec.class != order.class {
            r.class += 1;
        } else if !order.regions.contains(w.spec.region) {
            r.region += 1;
        } else {
            tally(&mut r, w, order, &mut region_gpus);
        }
    }
    r.best_region_gpus = region_gpus.into_iter().max().unwrap_or(0);
    r
}

/// Explains an order from the index: class and region rejections from counters, the rest by
/// scanning only the buckets the order could use. Same result as [`order_by_scan`].
pub(crate) fn order_by_index(index: &Index, order: &Order) -> Rejections {
    let class = usize::from(order.class.code());
    let mut r = Rejections::default();
    let in_class = index.class_workers[class.min(GPU_CLASSES - 1)];
    r.class = index.total_workers - in_class;
    let mut in_regions = 0;
    for region in order.regions.iter() {
        let members = &index.bucket(class, usize::from(region.code())).members;
        in_regions += members.len() as u32;
        let mut gpus = 0;
        for m in members {
            if !m.placeable_status {
                r.status += 1;
            } else if m.vram_mib < order.min_vram_mib {
                r.vram += 1;
            } else if m.bandwidth_gbps < order.min_bandwidth_gbps {
                r.bandwidth += 1;
            } else if m.price > order.max_price {
                r.price += 1;
            } else if m.free == 0 {
                r.capacity += 1;
            } else {
                r.eligible += 1;
                gpus += u32::from(m.free);
            }
        }
        r.best_region_gpus = r.best_region_gpus.max(gpus);
    }
    r.region = in_class - in_regions;
    r
}
/// Explains a worker by scanning the open orders.
pub(crate) fn worker_by_scan<'a>(
    w: &Worker,
    orders: impl Iterator<Item = &'a Order>,
) -> WorkerExplanation {
    let mut e = WorkerExplanation {
        worker: w.spec.id,
        worker_status: w.spec.status,
        gpus_free: w.gpus_free,
        status: 0,
        capacity: 0,
        class: 0,
        region: 0,
        vram: 0,
        bandwidth: 0,
        price: 0,
        fits: 0,
    };
    for order in orders {
        if !w.spec.status.is_placeable() {
            e.status += 1;
        } else if w.gpus_free == 0 {
            e.capacity += 1;
        } else if w.spec.class != order.class {
            e.class += 1;
        } else if !order.regions.contains(w.spec.region) {
            e.region += 1;
        } else {
            match verdict(w, order) {
                WorkerVerdict::Vram => e.vram += 1,
                WorkerVerdict::Bandwidth => e.bandwidth += 1,
                WorkerVerdict::Price => e.price += 1,
                _ => e.fits += 1,
            }
        }
    }
    e
}
