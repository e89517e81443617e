//! The naive baseline: the same hard constraints and the same score as the index, found by
//! scanning every worker for every order. It exists to measure what the index buys (see the
//! benchmark) and to check in tests that the index chooses exactly what a full scan would.

use super::index::{Cluster, is_placeable};
use super::score::{Pick, Rank, SchedulerConfig, cluster_score, rank};
use super::types::{Order, REGIONS, Region, RegionSet, Worker};

struct Candidate {
    rank: Rank,
    pick: Pick,
    id: u32,
}

/// Scans `workers` (indexed by slot; `None` is an empty slot) for the best cluster of `gpus`
/// GPUs for `order` in `regions`, skipping the slots in `exclude`.
pub(crate) fn best_cluster(
    cfg: &SchedulerConfig,
    workers: &[Option<Worker>],
    order: &Order,
    gpus: u32,
    regions: RegionSet,
    exclude: &[u32],
) -> Option<Cluster> {
    let mut by_region: Vec<Vec<Candidate>> = (0..REGIONS).map(|_| Vec::new()).collect();
    for (slot, w) in workers.iter().enumerate() {
        let Some(w) = w else { continue };
        let slot = slot as u32;
        let s = &w.spec;
        if s.class == order.class
            && regions.contains(s.region)
            && is_placeable(w)
            && s.vram_mib >= order.min_vram_mib
            && s.bandwidth_gbps >= order.min_bandwidth_gbps
            && s.price <= order.max_price
            && !exclude.contains(&slot)
        {
            by_region[usize::from(s.region.code())].push(Candidate {
                rank: rank(cfg, order.mode, s),
                id: s.id.0,
                pick: Pick {
                    slot,
                    gpus: 0,
                    free: w.gpus_free,
                    price: s.price,
                    latency_band: cfg.latency_band(s.latency_us),
                    unreliability: cfg.unreliability(s.reliability_bp),
                },
            });
        }
    }
    let mut best: Option<Cluster> = None;
    for (code, mut candidates) in by_region.into_iter().enumerate() {
        let Some(picks) = cluster_of(&mut candidates, gpus) else {
            continue;
        };
        let region = Region::from_code(code as u8).ok()?;
        let score = cluster_score(order.mode, region.code(), &picks);
        if best.as_ref().is_none_or(|b| score < b.score) {
            best = Some(Cluster {
                region,
                picks,
                score,
            });
        }
    }
    best
}

/// The same rule as the index: fewest machines, largest first, best fit for the rest.
fn cluster_of(candidates: &mut Vec<Candidate>, gpus: u32) -> Option<Vec<Pick>> {
    let mut picks = Vec::new();
    let mut rest = gpus;
    loop {
        let one = candidates
            .iter()
            .enumerate()
            .filter(|(_, c)| u32::from(c.pick.free) >= rest)
            .min_by_key(|(_, c)| (c.rank, u32::from(c.pick.free) - rest, c.id));
        if let Some((_, c)) = one {
            let mut p = c.pick;
            p.gpus = u16::try_from(rest).ok()?;
            picks.push(p);
            return Some(picks);
        }
        let (i, _) = candidates
            .iter()
            .enumerate()
            .min_by_key(|(_, c)| (std::cmp::Reverse(c.pick.free), c.rank, c.id))?;
        let c = candidates.swap_remove(i);
        let mut p = c.pick;
        p.gpus = p.free;
        rest -= u32::from(p.free);
        picks.push(p);
    }
}
