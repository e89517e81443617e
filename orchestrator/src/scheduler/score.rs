//! The score and the fairness rule: how workers rank for an order, how candidate clusters in
//! different regions compare, and in which order pending orders are served.
//!
//! Worker rank (lower is better), compared field by field:
//! - spot: ask price, latency band, then higher reliability tier;
//! - reserved: higher reliability tier, latency band, then ask price.
//!
//! Latency and reliability are compared in bands/tiers (see [`SchedulerConfig`]) so that jitter
//! of a few microseconds does not override the later keys: best fit and worker id.
//!
//! Cluster score across regions (lower is better):
//! - spot: total cost (sum of ask × GPUs), machines used, worst latency band, GPUs left
//!   stranded on the machines used (fragmentation), region code;
//! - reserved: lowest reliability tier in the cluster (higher is better), machines used, worst
//!   latency band, total cost, stranded GPUs, region code.

use std::cmp::Reverse;

use super::error::SchedulerError;
use super::types::{Order, OrderId, OrderMode, WorkerSpec};

/// Knobs of the score and of aging. The defaults suit a market with second-level clocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Latencies inside one band count as equal (default 5 ms).
    pub latency_band_us: u32,
    /// Reliability scores inside one tier count as equal (default 100 bp, i.e. 1 %).
    pub reliability_tier_bp: u16,
    /// Every `aging_step` time units an order waits promote it one price tier (default 60).
    pub aging_step: u64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            latency_band_us: 5_000,
            reliability_tier_bp: 100,
            aging_step: 60,
        }
    }
}

impl SchedulerConfig {
    pub fn validate(&self) -> Result<(), SchedulerError> {
        if self.aging_step == 0 {
            return Err(SchedulerError::ZeroAgingStep);
        }
        Ok(())
    }

    pub(crate) fn latency_band(&self, latency_us: u32) -> u64 {
        u64::from(latency_us / self.latency_band_us.max(1))
    }

    /// Reliability tier turned into "lower is better", so every rank field sorts ascending.
    pub(crate) fn unreliability(&self, reliability_bp: u16) -> u64 {
        let tier = reliability_bp / self.reliability_tier_bp.max(1);
        u64::from(u16::MAX - tier)
    }
}

/// A worker's rank for one order mode; lower ranks are chosen first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rank(pub u64, pub u64, pub u64);

pub fn rank(cfg: &SchedulerConfig, mode: OrderMode, w: &WorkerSpec) -> Rank {
    let latency = cfg.latency_band(w.latency_us);
    let unreliability = cfg.unreliability(w.reliability_bp);
    match mode {
        OrderMode::Spot => Rank(w.price, latency, unreliability),
        OrderMode::Reserved => Rank(unreliability, latency, w.price),
    }
}

/// One worker's share of a candidate cluster, with what the cluster score needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pick {
    pub slot: u32,
    pub gpus: u16,
    pub free: u16,
    pub price: u64,
    pub latency_band: u64,
    pub unreliability: u64,
}

/// Lower is better; see the module docs for the fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ClusterScore(u128, u64, u64, u128, u64, u8);

impl ClusterScore {
    /// The key compared first: total cost (spot) or worst reliability tier (reserved).
    pub(crate) fn first(&self) -> u128 {
        self.0
    }
}

pub(crate) fn cluster_score(mode: OrderMode, region: u8, picks: &[Pick]) -> ClusterScore {
    let cost: u128 = picks
        .iter()
        .map(|p| u128::from(p.price) * u128::from(p.gpus))
        .sum();
    let machines = picks.len() as u64;
    let worst_latency = picks.iter().map(|p| p.latency_band).max().unwrap_or(0);
    let stranded: u64 = picks.iter().map(|p| u64::from(p.free - p.gpus)).sum();
    match mode {
        OrderMode::Spot => ClusterScore(cost, machines, worst_latency, 0, stranded, region),
        OrderMode::Reserved => {
            let worst_reliability = picks.iter().map(|p| p.unreliability).max().unwrap_or(0);
            ClusterScore(
                u128::from(worst_reliability),
                machines,
                worst_latency,
                cost,
                stranded,
                region,
            )
        }
    }
}

/// Price tier of an order: `floor(log2(max_price)) + 1` (0 for a zero max price), so orders
/// whose max prices are within a factor of two compete by age alone.
pub fn price_tier(max_price: u64) -> u32 {
    64 - max_price.leading_zeros()
}

/// The highest tier there is; aging stops here, which bounds how far an order can be promoted.
pub const TOP_TIER: u32 = 64;

/// Price tier plus one tier per `aging_step` waited, capped at [`TOP_TIER`].
///
/// Why this prevents starvation: an order of tier `t` reaches the top tier after
/// `(TOP_TIER - t) · aging_step` (in practice after `(highest competing tier - t) · aging_step`),
/// and from then on only orders that arrived before it rank above it.
pub fn effective_tier(cfg: &SchedulerConfig, order: &Order, now: u64) -> u32 {
    let waited = now.saturating_sub(order.arrived_at);
    let boost = waited / cfg.aging_step.max(1);
    let boost = u32::try_from(boost).unwrap_or(TOP_TIER);
    price_tier(order.max_price)
        .saturating_add(boost)
        .min(TOP_TIER)
}

/// Sort key for serving pending orders: higher effective tier first, then older, then id.
pub(crate) type Priority = (Reverse<u32>, u64, OrderId);

pub(crate) fn priority(cfg: &SchedulerConfig, order: &Order, now: u64) -> Priority {
    (
        Reverse(effective_tier(cfg, order, now)),
        order.arrived_at,
        order.id,
    )
}
