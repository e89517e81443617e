//! `gpumesh localnet`: a Solana node on this machine (surfpool in process, offline) with the
//! gpumesh program and SPL Token loaded, a payment mint, and funded wallets. Runs until Ctrl-C.

use crate::context::{Env, LocalDirArgs, WalletArgs};
use crate::error::CliError;
use anchor_lang::prelude::Pubkey;
use gpumesh_client::{RpcChain, Signer, amount, cluster};
use gpumesh_localnet::setup::{DEFAULT_DECIMALS, LAMPORTS_PER_SOL};
use gpumesh_localnet::{LocalState, Localnet, LocalnetConfig};
use serde_json::json;
use std::path::Path;
use std::str::FromStr;

#[derive(clap::Args)]
pub struct LocalnetArgs {
    /// Address to serve on.
    #[arg(long, default_value = "127.0.0.1")]
    bind: String,
    /// JSON-RPC port.
    #[arg(long, default_value_t = 8899, env = "GPUMESH_RPC_PORT")]
    rpc_port: u16,
    /// Websocket port.
    #[arg(long, default_value_t = 8900, env = "GPUMESH_WS_PORT")]
    ws_port: u16,
    /// Milliseconds per slot.
    #[arg(long, default_value_t = gpumesh_localnet::DEFAULT_SLOT_TIME_MS)]
    slot_time_ms: u64,
    /// Decimals of the payment mint.
    #[arg(long, default_value_t = DEFAULT_DECIMALS)]
    decimals: u8,
    /// Wallets to fund (addresses or keypair files) [default: --keypair, when the file exists].
    #[arg(long)]
    fund: Vec<String>,
    /// SOL each funded wallet gets.
    #[arg(long, default_value_t = 100)]
    sol: u64,
    /// Test tokens each funded wallet gets (whole tokens).
    #[arg(long, default_value = "1000000")]
    tokens: String,
    /// Print the node's log (transactions, errors) to stderr.
    #[arg(long)]
    verbose: bool,
    #[command(flatten)]
    wallet: WalletArgs,
    #[command(flatten)]
    local: LocalDirArgs,
}

fn wallet_key(text: &str) -> Result<Pubkey, CliError> {
    if let Ok(k) = Pubkey::from_str(text.trim()) {
        return Ok(k);
    }
    Ok(cluster::read_keypair(Path::new(text))?.pubkey())
}

pub fn run(env: &Env, args: &LocalnetArgs) -> Result<(), CliError> {
    let tokens = amount::parse(&args.tokens, args.decimals).map_err(|source| CliError::Amount {
        what: "--tokens".into(),
        source,
    })?;
    let mut wallets = args
        .fund
        .iter()
        .map(|w| wallet_key(w))
        .collect::<Result<Vec<_>, _>>()?;
    let default_wallet = env.keypair_path(args.wallet.keypair.as_deref())?;
    let mut hint = None;
    if args.fund.is_empty() {
        match cluster::read_keypair(&default_wallet) {
            Ok(k) => wallets.push(k.pubkey()),
            Err(_) => {
                hint = Some(format!(
                    "no wallet at {}: create one with `gpumesh keys new`, then `gpumesh airdrop --tokens 1000`",
                    default_wallet.display()
                ))
            }
        }
    }
    let state = LocalState::open_or_create(&args.local.localnet_dir)?;

    let node = Localnet::start(LocalnetConfig {
        bind_host: args.bind.clone(),
        rpc_port: args.rpc_port,
        ws_port: args.ws_port,
        slot_time_ms: args.slot_time_ms,
        verbose: args.verbose,
    })?;
    let mut chain = RpcChain::new(node.rpc_url());
    state.ensure_mint(&mut chain, args.decimals)?;
    for w in &wallets {
        state.fund(&mut chain, w, args.sol * LAMPORTS_PER_SOL, tokens)?;
    }
    env.print(
        json!({
            "rpc_url": node.rpc_url(),
            "ws_url": node.ws_url(),
            "program_id": gpumesh_client::program::ID.to_string(),
            "mint": state.mint().to_string(),
            "mint_authority": state.mint_authority.pubkey().to_string(),
            "decimals": args.decimals,
            "state_dir": state.dir.display().to_string(),
            "funded": wallets.iter().map(|w| w.to_string()).collect::<Vec<_>>(),
            "funded_sol": args.sol.to_string(),
            "funded_tokens": amount::format(tokens, args.decimals),
        }),
        || {
            let mut s = format!(
                "local chain ready\n  JSON-RPC      {}\n  websocket     {}\n  program       {}\n  payment mint  {} ({} decimals)\n  mint keys in  {}\n",
                node.rpc_url(),
                node.ws_url(),
                gpumesh_client::program::ID,
                state.mint(),
                args.decimals,
                state.dir.display()
            );
            for w in &wallets {
                s.push_str(&format!(
                    "  funded        {w}: {} SOL, {} tokens\n",
                    args.sol,
                    amount::format(tokens, args.decimals)
                ));
            }
            if let Some(h) = &hint {
                s.push_str(&format!("  {h}\n"));
            }
            s.push_str("state is in memory: a restart starts a fresh chain (same mint address). Ctrl-C stops.");
            s
        },
    );
    // The node logs program refusals to stdout; with JSON output, stdout keeps its one document.
    let _quiet = env.json().then(crate::output::StdoutOnStderr::new);
    wait_for_ctrl_c()?;
    drop(node);
    Ok(())
}

fn wait_for_ctrl_c() -> Result<(), CliError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Input(format!("cannot wait for Ctrl-C: {e}")))?;
    runtime
        .block_on(tokio::signal::ctrl_c())
        .map_err(|e| CliError::Input(format!("cannot wait for Ctrl-C: {e}")))
}
