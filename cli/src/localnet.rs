//! `gpumesh localnet`: a Solana node on this machine (surfpool in process, offline) with the
//! gpumesh program and SPL Token loaded, two payment mints (the work token and a 6-decimal
//! USD-like stand-in for USDC), and funded wallets. Runs until Ctrl-C.

use crate::context::{Env, LocalDirArgs, WalletArgs};
use crate::error::CliError;
use anchor_lang::prelude::Pubkey;
use gpumesh_client::{RpcChain, Signer, amount, cluster};
use gpumesh_localnet::setup::{DEFAULT_DECIMALS, LAMPORTS_PER_SOL, USD_DECIMALS};
use gpumesh_localnet::{LocalMint, LocalState, Localnet, LocalnetConfig};
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
    /// Decimals of the work token (the USD-like mint always has 6).
    #[arg(long, default_value_t = DEFAULT_DECIMALS)]
    decimals: u8,
    /// Wallets to fund (addresses or keypair files) [default: --keypair, when the file exists].
    #[arg(long)]
    fund: Vec<String>,
    /// SOL each funded wallet gets.
    #[arg(long, default_value_t = 100)]
    sol: u64,
    /// Work tokens each funded wallet gets (whole tokens).
    #[arg(long, default_value = "1000000")]
    tokens: String,
    /// USD-like tokens each funded wallet gets (whole tokens).
    #[arg(long, default_value = "1000000")]
    usd_tokens: String,
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
    let usd_tokens =
        amount::parse(&args.usd_tokens, USD_DECIMALS).map_err(|source| CliError::Amount {
            what: "--usd-tokens".into(),
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
                    "no wallet at {}: create one with `gpumesh keys new`, then `gpumesh airdrop --tokens 1000` (and `--mint usd` for the USD-like mint)",
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
    state.ensure_usd_mint(&mut chain)?;
    let usd_mint = state.usd_mint()?;
    for w in &wallets {
        state.fund(&mut chain, w, args.sol * LAMPORTS_PER_SOL, tokens)?;
        state.mint_to_of(&mut chain, LocalMint::Usd, w, usd_tokens)?;
    }
    let key_file = |which: LocalMint| state.dir.join(which.file()).display().to_string();
    env.print(
        json!({
            "rpc_url": node.rpc_url(),
            "ws_url": node.ws_url(),
            "program_id": gpumesh_client::program::ID.to_string(),
            "mint": state.mint().to_string(),
            "decimals": args.decimals,
            "usd_mint": usd_mint.to_string(),
            "usd_decimals": USD_DECIMALS,
            "mints": [
                {"name": "work", "mint": state.mint().to_string(), "decimals": args.decimals, "keypair": key_file(LocalMint::Work), "what": LocalMint::Work.describe()},
                {"name": "usd", "mint": usd_mint.to_string(), "decimals": USD_DECIMALS, "keypair": key_file(LocalMint::Usd), "what": LocalMint::Usd.describe()},
            ],
            "mint_authority": state.mint_authority.pubkey().to_string(),
            "state_dir": state.dir.display().to_string(),
            "funded": wallets.iter().map(|w| w.to_string()).collect::<Vec<_>>(),
            "funded_sol": args.sol.to_string(),
            "funded_tokens": amount::format(tokens, args.decimals),
            "funded_usd_tokens": amount::format(usd_tokens, USD_DECIMALS),
        }),
        || {
            let mut s = format!(
                "local chain ready\n  JSON-RPC      {}\n  websocket     {}\n  program       {}\n  work token    {} ({} decimals; keys {})\n  USD-like mint {} ({USD_DECIMALS} decimals; keys {}): a local stand-in for USDC, not a real stablecoin\n",
                node.rpc_url(),
                node.ws_url(),
                gpumesh_client::program::ID,
                state.mint(),
                args.decimals,
                key_file(LocalMint::Work),
                usd_mint,
                key_file(LocalMint::Usd),
            );
            for w in &wallets {
                s.push_str(&format!(
                    "  funded        {w}: {} SOL, {} work tokens, {} USD-like\n",
                    args.sol,
                    amount::format(tokens, args.decimals),
                    amount::format(usd_tokens, USD_DECIMALS)
                ));
            }
            if let Some(h) = &hint {
                s.push_str(&format!("  {h}\n"));
            }
            s.push_str("state is in memory: a restart starts a fresh chain (both mints come back at the same addresses). Ctrl-C stops.");
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
