//! Prometheus metrics the service exports on `/metrics`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

pub struct Metrics {
    registry: Registry,
    pub heartbeats: Counter,
    pub receipts: Counter,
    pub settlements: Counter,
    pub failovers: Counter,
    pub failed_transactions: Counter,
    pub protocol_errors: Counter,
    pub rpc_errors: Counter,
    pub challenges_passed: Counter,
    pub challenges_failed: Counter,
    /// Account changes heard over the websocket.
    pub chain_updates: Counter,
    /// Full listings of the market (at start, after a reconnect, on the resync cadence, and
    /// each placement round while the websocket is down).
    pub chain_loads: Counter,
    pub chain_reconnects: Counter,
    /// 1 while the websocket copy of the market is live.
    pub chain_following: Gauge,
    pub connected_workers: Gauge,
    pub leases: Gauge,
    pub settlement_backlog: Gauge,
    /// Seconds a placement round takes.
    pub placement_seconds: Histogram,
    /// Seconds from a down worker's last heartbeat to its replacement lease on chain.
    pub failover_seconds: Histogram,
    /// Seconds from a down worker's last heartbeat to its job running on the replacement.
    pub failover_restart_seconds: Histogram,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("gpumesh_orchestrator");
        let m = Self {
            heartbeats: Counter::default(),
            receipts: Counter::default(),
            settlements: Counter::default(),
            failovers: Counter::default(),
            failed_transactions: Counter::default(),
            protocol_errors: Counter::default(),
            rpc_errors: Counter::default(),
            challenges_passed: Counter::default(),
            challenges_failed: Counter::default(),
            chain_updates: Counter::default(),
            chain_loads: Counter::default(),
            chain_reconnects: Counter::default(),
            chain_following: Gauge::default(),
            connected_workers: Gauge::default(),
            leases: Gauge::default(),
            settlement_backlog: Gauge::default(),
            placement_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            failover_seconds: Histogram::new(exponential_buckets(0.05, 1.6, 14)),
            failover_restart_seconds: Histogram::new(exponential_buckets(0.05, 1.6, 14)),
            registry: Registry::default(),
        };
        registry.register("heartbeats", "Heartbeats received", m.heartbeats.clone());
        registry.register(
            "receipts",
            "Receipts verified and stored",
            m.receipts.clone(),
        );
        registry.register(
            "settlements",
            "Settlement transactions confirmed",
            m.settlements.clone(),
        );
        registry.register(
            "failovers",
            "Leases moved off workers declared down",
            m.failovers.clone(),
        );
        registry.register(
            "failed_transactions",
            "Transactions the chain refused or that did not confirm",
            m.failed_transactions.clone(),
        );
        registry.register(
            "protocol_errors",
            "Worker messages refused with an error frame",
            m.protocol_errors.clone(),
        );
        registry.register(
            "rpc_errors",
            "JSON-RPC calls that failed (unreachable node, timeouts, bad answers)",
            m.rpc_errors.clone(),
        );
        registry.register(
            "challenges_passed",
            "Compute challenges a worker passed",
            m.challenges_passed.clone(),
        );
        registry.register(
            "challenges_failed",
            "Compute challenges a worker failed (each slashed for fraud)",
            m.challenges_failed.clone(),
        );
        registry.register(
            "chain_updates",
            "Account changes heard over the websocket",
            m.chain_updates.clone(),
        );
        registry.register(
            "chain_loads",
            "Full listings of the market's accounts",
            m.chain_loads.clone(),
        );
        registry.register(
            "chain_reconnects",
            "Times the websocket was lost and the market listed again",
            m.chain_reconnects.clone(),
        );
        registry.register(
            "chain_following",
            "1 while the service's copy of the market follows the chain over the websocket",
            m.chain_following.clone(),
        );
        registry.register(
            "connected_workers",
            "Workers connected now",
            m.connected_workers.clone(),
        );
        registry.register(
            "leases",
            "Leases the service operates now",
            m.leases.clone(),
        );
        registry.register(
            "settlement_backlog",
            "Leases with receipts not yet settled",
            m.settlement_backlog.clone(),
        );
        registry.register(
            "placement_seconds",
            "Duration of a placement round",
            m.placement_seconds.clone(),
        );
        registry.register(
            "failover_seconds",
            "From a down worker's last heartbeat to the replacement lease on chain",
            m.failover_seconds.clone(),
        );
        registry.register(
            "failover_restart_seconds",
            "From a down worker's last heartbeat to its job running on the replacement",
            m.failover_restart_seconds.clone(),
        );
        Self { registry, ..m }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_metric_is_exported() {
        let m = super::Metrics::new();
        m.receipts.inc();
        let text = m.render();
        assert!(
            text.contains("gpumesh_orchestrator_receipts_total 1"),
            "{text}"
        );
        assert!(
            text.contains("gpumesh_orchestrator_failover_seconds_bucket"),
            "{text}"
        );
        assert!(
            text.contains("gpumesh_orchestrator_connected_workers 0"),
            "{text}"
        );
    }
}
