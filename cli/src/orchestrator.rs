//! `gpumesh orchestrator run`: the orchestrator service for one market (the operator runs it with
//! the key the market names), until Ctrl-C or SIGTERM; then it stops taking work, settles what
//! is due and exits. The service itself is `gpumesh_orchestrator::service`.

use crate::context::Env;
use crate::error::CliError;
use gpumesh_orchestrator::service::{self, Config};
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum OrchestratorCommand {
    /// Run the service: worker gateway, placement, settlement, failover, API and metrics.
    Run {
        /// The service's TOML file (rpc_url, market, keypair, listen, store, timings; see the
        /// orchestrator's README).
        #[arg(value_name = "CONFIG")]
        file: PathBuf,
    },
}

/// Resolves on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// Logs to stderr at `RUST_LOG`'s level (default `info`).
pub(crate) fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
}

pub fn run(_env: &Env, cmd: &OrchestratorCommand) -> Result<(), CliError> {
    match cmd {
        OrchestratorCommand::Run { file } => {
            let cfg = Config::read(file).map_err(|e| CliError::Input(e.to_string()))?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| CliError::Input(format!("cannot start the runtime: {e}")))?;
            init_tracing();
            runtime
                .block_on(service::serve(cfg, shutdown()))
                .map_err(|e| CliError::Input(e.to_string()))
        }
    }
}
