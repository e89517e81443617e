//! `gpumesh-worker`: the worker daemon. Names come from the command line or the environment,
//! the rest from the config file (see the crate's README); Ctrl-C or SIGTERM stops it (container
//! jobs keep running and are picked up by the next start).

use clap::Parser;
use gpumesh_worker::daemon::{self, config};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(name = "gpumesh-worker", version, about = "The gpumesh worker daemon")]
struct Args {
    /// The orchestrator's worker gateway, ws:// or wss://.
    #[arg(long, env = "GPUMESH_ORCHESTRATOR")]
    orchestrator: Option<String>,
    /// The node key: a Solana keypair file (the only key on this machine).
    #[arg(long, env = "GPUMESH_NODE_KEY")]
    node_key: Option<PathBuf>,
    /// The worker account on chain (`gpumesh worker show` prints it).
    #[arg(long, env = "GPUMESH_WORKER")]
    worker: Option<String>,
    /// The gpumesh program the worker is registered with.
    #[arg(long, env = "GPUMESH_PROGRAM_ID")]
    program_id: Option<String>,
    /// The config file (TOML); without it, the defaults.
    #[arg(long, env = "GPUMESH_WORKER_CONFIG")]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let file = match &args.config {
        Some(path) => match config::FileConfig::read(path) {
            Ok(file) => file,
            Err(e) => return fail(e),
        },
        None => config::FileConfig::default(),
    };
    let config = match config::Config::resolve(
        file,
        config::Overrides {
            orchestrator: args.orchestrator,
            node_key: args.node_key,
            worker: args.worker,
            program_id: args.program_id,
        },
    ) {
        Ok(config) => config,
        Err(e) => return fail(e),
    };
    tracing::info!(?config, "starting");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(e),
    };
    match runtime.block_on(daemon::run(config, stop_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("stopping");
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("gpumesh-worker: {e}");
    ExitCode::FAILURE
}
