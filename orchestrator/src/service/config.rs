//! The service's configuration: a TOML file, every field with a default except what names the
//! market and the key.
//!
//! ```toml
//! rpc_url = "http://127.0.0.1:8899"
//! ws_url = "ws://127.0.0.1:8900"    # default: rpc_url's, port + 1
//! market = "…"                      # the market's address
//! keypair = "~/.config/gpumesh/orchestrator.json"   # relative: to this file's folder
//! listen = "127.0.0.1:8910"         # worker gateway (/v1/worker), API (/v1/…), /metrics
//! store = "sqlite://orchestrator.db?mode=rwc"   # or postgres://…
//! heartbeat_ms = 500
//! grace_ms = 1500
//! restart_grace_ms = 35000          # after a restart: time for workers to find the service again
//! receipt_every_s = 10
//! settle_every_s = 30               # how often settlement looks at what is owed
//! fee_budget_lamports_per_gpu_hour = 1000   # a worker is settled once its fees fit this (0: every look)
//! runway_floor_s = 600              # settle an order's leases once its escrow lasts less
//! placement_every_ms = 1000
//! resync_every_s = 60               # list the market again even while the websocket is live
//! challenge_every_s = 900           # an idle worker proves its GPU class again this often
//! spot_check_every_s = 3600         # a serving worker is spot-checked this often (0: never)
//! challenge_target_ms = 250         # the challenge's work at the class's datasheet rate
//! challenge_rows = 16               # rows opened and recomputed per challenge
//! confirm_poll_ms = 25              # between status lookups of a sent transaction
//! ```

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The cluster's JSON-RPC endpoint.
    pub rpc_url: String,
    /// The node's websocket, for following the market's accounts (default: derived from
    /// `rpc_url` as Solana nodes serve it, the next port).
    #[serde(default)]
    pub ws_url: Option<String>,
    /// The market this service operates (its address).
    pub market: String,
    /// The orchestrator key the market names.
    pub keypair: PathBuf,
    /// Address the gateway, the API and the metrics listen on.
    #[serde(default = "defaults::listen")]
    pub listen: String,
    /// sqlx URL of the store.
    #[serde(default = "defaults::store")]
    pub store: String,
    /// How often workers send heartbeats.
    #[serde(default = "defaults::heartbeat_ms")]
    pub heartbeat_ms: u32,
    /// A worker silent this long is down: its leases close as offline and move.
    #[serde(default = "defaults::grace_ms")]
    pub grace_ms: u64,
    /// After a restart of the service, how long the leases it takes over wait for their workers
    /// before a silent one is declared down: a daemon retries with a growing backoff (up to
    /// 30 s), so a short `grace_ms` would fail a whole fleet for the service's own restart.
    #[serde(default = "defaults::restart_grace_ms")]
    pub restart_grace_ms: u64,
    /// How often workers send a signed receipt per lease.
    #[serde(default = "defaults::receipt_every_s")]
    pub receipt_every_s: u32,
    /// How often receipts are settled on chain (also at every lease end).
    #[serde(default = "defaults::settle_every_s")]
    pub settle_every_s: u64,
    /// The longest between placement rounds (rounds also run on events).
    #[serde(default = "defaults::placement_every_ms")]
    pub placement_every_ms: u64,
    /// How often the market is listed again in full while the websocket follows it (catches
    /// accounts closed by others, which no notification reports).
    #[serde(default = "defaults::resync_every_s")]
    pub resync_every_s: u64,
    /// Transaction fees a settlement may cost per GPU-hour it pays for: a worker is settled
    /// (one signature over all its leases) once it has served enough, sooner when a lease
    /// ends, when an order's escrow runs low, or before the market's receipt age; 0 settles
    /// everything owed at every look (a test network).
    #[serde(default = "defaults::fee_budget_lamports_per_gpu_hour")]
    pub fee_budget_lamports_per_gpu_hour: u64,
    /// An order's leases are settled once its escrow lasts less than this at their spend.
    #[serde(default = "defaults::runway_floor_s")]
    pub runway_floor_s: u64,
    /// An idle worker is challenged again after this long (and once when it connects).
    #[serde(default = "defaults::challenge_every_s")]
    pub challenge_every_s: u64,
    /// A worker serving leases is challenged again after this long (0: never while it serves).
    /// A round costs its buyers about `challenge_target_ms` of the GPUs; a worker that fails
    /// one is slashed for fraud on each lease it serves, every buyer is paid a share, and the
    /// orders are placed again.
    #[serde(default = "defaults::spot_check_every_s")]
    pub spot_check_every_s: u64,
    /// A challenge's size keeps the claimed class busy about this long at its datasheet rate.
    #[serde(default = "defaults::challenge_target_ms")]
    pub challenge_target_ms: u64,
    /// Rows of the answer the service opens and recomputes per challenge.
    #[serde(default = "defaults::challenge_rows")]
    pub challenge_rows: u32,
    /// Grace a job gets after SIGTERM when its lease ends.
    #[serde(default = "defaults::stop_grace_ms")]
    pub stop_grace_ms: u32,
    /// How long to wait between status lookups of a sent transaction: a local node confirms at
    /// its next slot, and a failover's job restarts only once its transaction is confirmed.
    #[serde(default = "defaults::confirm_poll_ms")]
    pub confirm_poll_ms: u64,
    /// What keeping checkpoints costs, in base units of the market's mint per GiB-hour, as the
    /// results store's operator charges it: shown to buyers with each order's checkpoints (the
    /// chain does not settle it). 0: free.
    #[serde(default)]
    pub checkpoint_storage_price_per_gib_hour: u64,
    /// Fails over as the service did before one-transaction replacement: the lease closes
    /// alone, then the next placement round assigns a spare, with failover checked every 100 ms
    /// in the same task as placement and settlement. Kept as the failover benchmarks' baseline
    /// (the simulated one sets it in code, the one with real daemons in the file); slower in
    /// every way, never a setting for a market.
    #[serde(default)]
    pub sequential_failover: bool,
}

mod defaults {
    pub fn listen() -> String {
        "127.0.0.1:8910".into()
    }
    pub fn store() -> String {
        "sqlite://orchestrator.db?mode=rwc".into()
    }
    pub fn heartbeat_ms() -> u32 {
        500
    }
    pub fn grace_ms() -> u64 {
        1_500
    }
    pub fn restart_grace_ms() -> u64 {
        35_000
    }
    pub fn receipt_every_s() -> u32 {
        10
    }
    pub fn settle_every_s() -> u64 {
        30
    }
    pub fn placement_every_ms() -> u64 {
        1_000
    }
    pub fn resync_every_s() -> u64 {
        60
    }
    pub fn challenge_every_s() -> u64 {
        900
    }
    pub fn fee_budget_lamports_per_gpu_hour() -> u64 {
        crate::settlement::Policy::DEFAULT_LAMPORTS_PER_GPU_HOUR
    }
    pub fn runway_floor_s() -> u64 {
        600
    }
    pub fn spot_check_every_s() -> u64 {
        3_600
    }
    pub fn challenge_target_ms() -> u64 {
        250
    }
    pub fn challenge_rows() -> u32 {
        16
    }
    pub fn stop_grace_ms() -> u32 {
        10_000
    }
    pub fn confirm_poll_ms() -> u64 {
        25
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    pub fn from_toml(text: &str, path: &str) -> Result<Self, ConfigError> {
        let c: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_string(),
            message: e.to_string(),
        })?;
        c.validate()?;
        Ok(c)
    }

    pub fn read(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let mut cfg = Self::from_toml(&text, &path.display().to_string())?;
        // A relative key path is relative to the config file, not to where the service starts.
        if let Some(dir) = path.parent()
            && cfg.keypair.is_relative()
            && !cfg.keypair.starts_with("~")
        {
            cfg.keypair = dir.join(&cfg.keypair);
        }
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if !(50..=60_000).contains(&self.heartbeat_ms) {
            return bad("heartbeat_ms must be 50 ..= 60000");
        }
        if self.grace_ms < 2 * u64::from(self.heartbeat_ms) {
            return bad("grace_ms must be at least two heartbeats (2 × heartbeat_ms)");
        }
        if self.receipt_every_s == 0
            || self.settle_every_s == 0
            || self.placement_every_ms == 0
            || self.resync_every_s == 0
        {
            return bad(
                "receipt_every_s, settle_every_s, placement_every_ms and resync_every_s must be above 0",
            );
        }
        if self.challenge_every_s == 0 {
            return bad("challenge_every_s must be above 0");
        }
        if !(1..=gpumesh_protocol::challenge::MAX_K).contains(&self.challenge_rows) {
            return bad("challenge_rows must be 1 ..= 256");
        }
        if self.challenge_target_ms > 60_000 {
            return bad("challenge_target_ms must be at most 60000");
        }
        if !(1..=1_000).contains(&self.confirm_poll_ms) {
            return bad("confirm_poll_ms must be 1 ..= 1000");
        }
        self.websocket_url()?;
        Ok(())
    }

    /// The websocket the service follows the chain on.
    pub fn websocket_url(&self) -> Result<String, ConfigError> {
        match &self.ws_url {
            Some(url) => Ok(url.clone()),
            None => gpumesh_client::pubsub::websocket_url(&self.rpc_url).map_err(|e| {
                ConfigError::Invalid(format!("rpc_url is not a URL ({e}); set ws_url as well"))
            }),
        }
    }

    pub fn grace(&self) -> Duration {
        Duration::from_millis(self.grace_ms)
    }

    pub fn restart_grace(&self) -> Duration {
        Duration::from_millis(self.restart_grace_ms.max(self.grace_ms))
    }

    /// How the service's JSON-RPC connections talk to the node.
    pub fn rpc_config(&self) -> gpumesh_client::rpc::RpcConfig {
        gpumesh_client::rpc::RpcConfig {
            poll_interval: Duration::from_millis(self.confirm_poll_ms),
            ..gpumesh_client::rpc::RpcConfig::default()
        }
    }
}
