//! gpumesh-localnet: a real Solana node on one machine. surfpool-core runs in process and
//! offline (no remote RPC), serving the standard JSON-RPC (default 127.0.0.1:8899) and websocket
//! (8900) APIs, on a LiteSVM runtime with SPL Token and the gpumesh program loaded. The program
//! is registered through the same native glue as the in-process tests
//! ([`gpumesh_svm::register_program`]), so the node runs exactly the code the tests run.
//!
//! The node's clock follows wall time: surfpool advances it by one slot time per produced block,
//! which lags under load, so a small task moves it up to the wall clock (never backwards) before
//! each block.
//!
//! [`setup`] creates the payment mints (the work token and a 6-decimal USD-like stand-in for
//! USDC) and funds wallets on a fresh node.

pub mod setup;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, unbounded};
use std::net::TcpListener;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use surfpool_core::surfnet::locker::SurfnetSvmLocker;
use surfpool_core::surfnet::svm::{SurfnetSvm, SurfnetSvmConfig};
use surfpool_types::{
    BlockProductionMode, RpcConfig, SimnetCommand, SimnetConfig, SimnetEvent, SurfpoolConfig,
};

pub use setup::{LocalMint, LocalState, SetupError};

/// Milliseconds per slot, as on mainnet.
pub const DEFAULT_SLOT_TIME_MS: u64 = 400;
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct LocalnetConfig {
    pub bind_host: String,
    pub rpc_port: u16,
    pub ws_port: u16,
    pub slot_time_ms: u64,
    /// Print the node's own log lines (transactions received, errors) to stderr.
    pub verbose: bool,
}

impl Default for LocalnetConfig {
    fn default() -> Self {
        Self {
            bind_host: "127.0.0.1".into(),
            rpc_port: 8899,
            ws_port: 8900,
            slot_time_ms: DEFAULT_SLOT_TIME_MS,
            verbose: false,
        }
    }
}

impl LocalnetConfig {
    /// Two free ports on 127.0.0.1 (for tests and for running several nodes side by side).
    pub fn on_free_ports() -> Result<Self, LocalnetError> {
        Ok(Self {
            rpc_port: free_port()?,
            ws_port: free_port()?,
            ..Self::default()
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LocalnetError {
    #[error(
        "port {port} on {host} is taken ({reason}); is another local chain running? Stop it, or pick other ports with --rpc-port/--ws-port"
    )]
    PortTaken {
        host: String,
        port: u16,
        reason: String,
    },
    #[error("the local chain could not start: {0}")]
    Start(String),
    #[error("the local chain did not say it was ready within {0} s")]
    NotReady(u64),
}

/// A running node. Dropping it stops the node.
pub struct Localnet {
    rpc_url: String,
    ws_url: String,
    commands: Sender<SimnetCommand>,
    thread: Option<JoinHandle<()>>,
}

impl Localnet {
    /// Starts the node and returns once it serves JSON-RPC.
    pub fn start(config: LocalnetConfig) -> Result<Self, LocalnetError> {
        for port in [config.rpc_port, config.ws_port] {
            // A clear message now, rather than a bind failure inside the node's threads.
            TcpListener::bind((config.bind_host.as_str(), port)).map_err(|e| {
                LocalnetError::PortTaken {
                    host: config.bind_host.clone(),
                    port,
                    reason: e.to_string(),
                }
            })?;
        }

        let (mut svm, events, geyser_events) = SurfnetSvm::new(SurfnetSvmConfig {
            slot_time: config.slot_time_ms,
            // Profiling would run every transaction once more on a copy; nothing here reads it.
            instruction_profiling_enabled: false,
            log_bytes_limit: Some(1 << 20),
            ..SurfnetSvmConfig::default()
        })
        .map_err(|e| LocalnetError::Start(e.to_string()))?;
        gpumesh_svm::register_program(&mut svm.inner.svm);
        let locker = SurfnetSvmLocker::new(svm);

        let surfpool_config = SurfpoolConfig {
            simnets: vec![SimnetConfig {
                offline_mode: true,
                remote_rpc_url: None,
                slot_time: config.slot_time_ms,
                block_production_mode: BlockProductionMode::Clock,
                instruction_profiling_enabled: false,
                log_bytes_limit: Some(1 << 20),
                ..SimnetConfig::default()
            }],
            rpc: RpcConfig {
                bind_host: config.bind_host.clone(),
                bind_port: config.rpc_port,
                ws_port: config.ws_port,
                ..RpcConfig::default()
            },
            ..SurfpoolConfig::default()
        };

        let (ready_tx, ready_rx) = unbounded::<Result<(), String>>();
        drain_events(events, ready_tx.clone(), config.verbose);

        let (commands_tx, commands_rx) = unbounded();
        let runloop_commands = commands_tx.clone();
        let slot_time = config.slot_time_ms;
        let thread = std::thread::Builder::new()
            .name("gpumesh-localnet".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("no async runtime: {e}")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    tokio::spawn(follow_wall_clock(locker.clone(), slot_time));
                    // `start_local_surfnet` would wrap a new SVM in its own locker; the runloop
                    // takes ours, whose SVM has the program registered.
                    let outcome = surfpool_core::runloops::start_local_surfnet_runloop(
                        locker,
                        surfpool_config,
                        runloop_commands,
                        commands_rx,
                        geyser_events,
                    )
                    .await;
                    if let Err(e) = outcome {
                        let _ = ready_tx.send(Err(e.to_string()));
                    }
                });
                // The runtime may hold blocking RPC server threads; do not wait on them.
                runtime.shutdown_background();
            })
            .map_err(|e| LocalnetError::Start(e.to_string()))?;

        let node = Self {
            rpc_url: format!("http://{}:{}", config.bind_host, config.rpc_port),
            ws_url: format!("ws://{}:{}", config.bind_host, config.ws_port),
            commands: commands_tx,
            thread: Some(thread),
        };
        match ready_rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(Ok(())) => Ok(node),
            Ok(Err(e)) => Err(LocalnetError::Start(e)),
            Err(RecvTimeoutError::Timeout) => {
                Err(LocalnetError::NotReady(STARTUP_TIMEOUT.as_secs()))
            }
            Err(RecvTimeoutError::Disconnected) => Err(LocalnetError::Start(
                "the node stopped during startup".into(),
            )),
        }
    }

    pub fn rpc_url(&self) -> &str {
        &self.rpc_url
    }

    pub fn ws_url(&self) -> &str {
        &self.ws_url
    }

    /// Blocks until the node stops (it stops when this handle is dropped elsewhere, or on error).
    pub fn wait(mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    fn stop(&mut self) {
        let _ = self.commands.send(SimnetCommand::Terminate(None));
        if let Some(thread) = self.thread.take() {
            let deadline = Instant::now() + STOP_TIMEOUT;
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}

impl Drop for Localnet {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Reads the node's events so its bounded channel never blocks it; reports readiness.
fn drain_events(events: Receiver<SimnetEvent>, ready: Sender<Result<(), String>>, verbose: bool) {
    let _ = std::thread::Builder::new()
        .name("gpumesh-localnet-events".into())
        .spawn(move || {
            for event in events {
                match event {
                    SimnetEvent::CoreStarted(_) => {
                        let _ = ready.send(Ok(()));
                    }
                    SimnetEvent::Aborted(why) => {
                        let _ = ready.send(Err(why));
                    }
                    SimnetEvent::ErrorLog(_, line) if verbose => {
                        eprintln!("localnet error: {line}")
                    }
                    SimnetEvent::WarnLog(_, line) if verbose => eprintln!("localnet: {line}"),
                    SimnetEvent::InfoLog(_, line) if verbose => eprintln!("localnet: {line}"),
                    SimnetEvent::TransactionProcessed(_, meta, err) if verbose => match err {
                        None => eprintln!("localnet: {} confirmed", meta.signature),
                        Some(e) => eprintln!("localnet: {} failed: {e}", meta.signature),
                    },
                    _ => {}
                }
            }
        });
}

/// Keeps the node's clock on wall time. surfpool adds one slot time to its clock per block;
/// when blocks come late (a busy machine) the clock falls behind. Before each block, move the
/// clock's base up so the next block lands on the wall clock; never move it back.
async fn follow_wall_clock(locker: SurfnetSvmLocker, slot_time_ms: u64) {
    let period = Duration::from_millis((slot_time_ms / 2).max(10));
    loop {
        tokio::time::sleep(period).await;
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut svm = locker.0.write().await;
        let target = now_ms.saturating_sub(svm.slot_time);
        if svm.updated_at < target {
            svm.updated_at = target;
        }
    }
}

/// A free TCP port on 127.0.0.1, as the OS hands it out.
pub fn free_port() -> Result<u16, LocalnetError> {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| LocalnetError::Start(format!("no free port: {e}")))
}
