//! The orchestrator service: the long-running process that operates one market. It follows the
//! chain, authenticates worker daemons on its gateway, places orders on connected workers
//! (the scheduler fed by the chain sync, every proposal checked with the program's rules), starts
//! the jobs, verifies and stores heartbeats and receipts, settles them in batches, fails over in
//! the grace period, ends leases whose job finished and completes their orders, and serves an API
//! and metrics. [`run`] takes its listener and its shutdown, so tests start and stop it on free
//! ports.

pub mod api;
pub mod challenge;
pub mod config;
pub mod console;
pub mod feed;
pub mod follow;
pub mod gateway;
pub mod history;
pub mod metrics;
pub mod state;
pub mod store;
pub mod tasks;
pub mod views;

pub use config::Config;

use crate::actions::Orchestrator;
use axum::Router;
use axum::extract::{State, WebSocketUpgrade};
use axum::routing::{get, put};
use gpumesh_client::program::state::Market;
use gpumesh_client::{Chain, ChainExt, Keypair, MarketAddresses, Pubkey, receipt};
use gpumesh_protocol::wire::MAX_FRAME_BYTES;
use state::{ChainHandle, Live, Shared};
use std::future::Future;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::sync::Notify;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("{0}")]
    Chain(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the service stopped with an error: {0}")]
    Serve(std::io::Error),
}

/// What the service needs besides its config: the chain it talks to and the orchestrator key.
pub struct Parts {
    pub chain: Box<dyn Chain + Send>,
    pub keypair: Keypair,
    /// A second connection to the same chain, for failover alone, so that it never waits
    /// behind another task's confirmation (`None`: failover shares `chain`).
    pub failover_chain: Option<Box<dyn Chain + Send>>,
}

impl Parts {
    /// Two connections over JSON-RPC at the config's URL and the keypair from its file.
    pub fn from_config(cfg: &Config) -> Result<Self, ServiceError> {
        let keypair = gpumesh_client::cluster::read_keypair(&cfg.keypair)
            .map_err(|e| ServiceError::Chain(e.to_string()))?;
        let rpc = || {
            Box::new(gpumesh_client::RpcChain::with_config(
                cfg.rpc_url.clone(),
                cfg.rpc_config(),
            )) as Box<dyn Chain + Send>
        };
        Ok(Self {
            chain: rpc(),
            keypair,
            failover_chain: Some(rpc()),
        })
    }
}

/// Binds the config's address and runs until `shutdown` resolves.
pub async fn serve(
    cfg: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServiceError> {
    let listener = TcpListener::bind(&cfg.listen)
        .await
        .map_err(|source| ServiceError::Listen {
            addr: cfg.listen.clone(),
            source,
        })?;
    let parts = Parts::from_config(&cfg)?;
    run(cfg, parts, listener, shutdown).await
}

/// Runs the service on `listener` until `shutdown` resolves; then it stops taking work, settles
/// what is due and returns.
pub async fn run(
    cfg: Config,
    parts: Parts,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServiceError> {
    cfg.validate()?;
    let market_key = Pubkey::from_str(cfg.market.trim()).map_err(|_| {
        ServiceError::Chain(format!("market {:?} is not a base58 address", cfg.market))
    })?;
    let chain = ChainHandle::new(parts.chain);
    let failover_chain = parts
        .failover_chain
        .map_or_else(|| chain.clone(), ChainHandle::new);
    let market: Market = chain
        .call(move |c| c.fetch_opt::<Market>(&market_key))
        .await
        .map_err(|e| ServiceError::Chain(format!("cannot read the market {market_key}: {e}")))?
        .ok_or_else(|| {
            ServiceError::Chain(format!(
                "no market at {market_key}: check `market` and `rpc_url`"
            ))
        })?;
    if market.orchestrator != gpumesh_client::Signer::pubkey(&parts.keypair) {
        return Err(ServiceError::Chain(format!(
            "the market's orchestrator is {}, not this key ({}): run the service with the key the market names",
            market.orchestrator,
            gpumesh_client::Signer::pubkey(&parts.keypair)
        )));
    }
    let addrs = MarketAddresses::of(&market);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let store = store::Store::open(&cfg.store).await?;
    let mut live = Live::default();
    for c in store.restorable_checkpoints().await? {
        if let Ok(order) = c.order.parse::<Pubkey>() {
            live.add_checkpoint(order, c.checkpoint);
        }
    }
    for order in store.checkpoints_off().await? {
        if let Ok(order) = order.parse::<Pubkey>() {
            live.checkpoints_off.insert(order);
        }
    }
    let shared = Arc::new(Shared {
        program_id: receipt::key(&gpumesh_client::program::ID),
        orchestrator: Arc::new(Orchestrator::new(addrs, parts.keypair)),
        addrs,
        chain,
        failover_chain,
        store,
        live: Mutex::new(live),
        mirror: Mutex::new(None),
        placement: Notify::new(),
        settlement: Notify::new(),
        metrics: metrics::Metrics::new(),
        feed: feed::Feed::new(),
        history: history::History::default(),
        stopping: stop_rx.clone(),
        cfg,
    });
    let restored = tasks::restore(&shared).await.map_err(ServiceError::Chain)?;
    tracing::info!(market = %market_key, restored, "orchestrator service starting");

    let app = Router::new()
        .route("/v1/worker", get(worker_socket))
        .route("/v1/health", get(api::health))
        .route("/v1/market", get(api::market))
        .route("/v1/workers", get(api::workers))
        .route("/v1/market/workers", get(api::chain_workers))
        .route("/v1/workers/{worker}/challenges", get(api::challenges))
        .route("/v1/orders/{order}", get(api::order))
        .route("/v1/orders/{order}/logs", get(api::logs))
        .route("/v1/orders/{order}/spec", put(api::put_spec))
        .route("/v1/orders/{order}/checkpoints", put(api::put_checkpoints))
        .route("/v1/leases/{lease}", get(api::lease))
        .route("/v1/feed", get(api::feed))
        .route("/v1/openapi.json", get(api::openapi))
        .route("/metrics", get(api::metrics))
        .route("/v1/console", get(views::console))
        .route("/v1/market/overview", get(views::overview))
        .route("/v1/workers/{worker}", get(views::worker))
        .route("/v1/suppliers/{owner}", get(views::supplier))
        .route("/v1/orders/{order}/activity", get(views::order_activity))
        .route("/v1/operator", get(views::operator))
        .route("/v1/lookup/{address}", get(views::lookup))
        .merge(console::routes())
        .with_state(shared.clone());

    let loops = tokio::spawn(tasks::run_loops(shared.clone(), stop_rx.clone()));
    let follower = tokio::spawn(follow::run(shared.clone(), stop_rx.clone()));
    let history = tokio::spawn(history::run(shared.clone(), stop_rx.clone()));
    let mut server_stop = stop_rx;
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = server_stop.changed().await;
    });
    let server = tokio::spawn(async move { server.await });
    shutdown.await;
    tracing::info!("shutting down: no new work; settling what is due");
    let _ = stop_tx.send(true);
    let _ = loops.await;
    let _ = follower.await;
    let _ = history.await;
    tasks::settle(&shared).await;
    match server.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(ServiceError::Serve(e)),
        Err(e) => Err(ServiceError::Serve(std::io::Error::other(e.to_string()))),
    }
}

async fn worker_socket(
    State(shared): State<Arc<Shared>>,
    upgrade: WebSocketUpgrade,
) -> axum::response::Response {
    upgrade
        .max_frame_size(MAX_FRAME_BYTES)
        .max_message_size(MAX_FRAME_BYTES)
        .on_upgrade(move |socket| gateway::serve(shared, socket))
}
