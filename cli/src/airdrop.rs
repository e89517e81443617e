//! `gpumesh airdrop`: SOL for fees (requestAirdrop: localnet and devnet) and, on a local chain,
//! test tokens of either local mint (the work token or the USD-like stand-in for USDC).

use crate::context::{ClusterArgs, Env, LocalDirArgs, WalletArgs};
use crate::error::CliError;
use anchor_lang::prelude::Pubkey;
use gpumesh_client::chain::{Chain, ChainExt};
use gpumesh_client::token::mint_decimals;
use gpumesh_client::{Signer, amount, cluster};
use gpumesh_localnet::{LocalMint, LocalState};
use serde_json::json;
use std::str::FromStr;

#[derive(clap::Args)]
pub struct AirdropArgs {
    /// SOL to request (whole SOL, e.g. 10 or 0.5).
    #[arg(default_value = "10")]
    sol: String,
    /// Also mint this many test tokens (whole tokens) of a local mint (local chain only).
    #[arg(long)]
    tokens: Option<String>,
    /// Which local mint `--tokens` are of: `work` (the work token), `usd` (the 6-decimal
    /// USD-like stand-in for USDC), or either's address.
    #[arg(long, default_value = "work", value_name = "work|usd|ADDRESS")]
    mint: String,
    /// The address to fund [default: --keypair's].
    #[arg(long, value_name = "ADDRESS")]
    to: Option<String>,
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    wallet: WalletArgs,
    #[command(flatten)]
    local: LocalDirArgs,
}

pub fn run(env: &Env, args: &AirdropArgs) -> Result<(), CliError> {
    let mut ctx = env
        .connect(&args.cluster)?
        .with_wallet(&args.wallet)
        .with_local_dir(&args.local);
    let lamports = amount::parse(&args.sol, 9).map_err(|source| CliError::Amount {
        what: "SOL amount".into(),
        source,
    })?;
    let to = match &args.to {
        Some(t) => Pubkey::from_str(t.trim())
            .map_err(|_| CliError::Input(format!("--to {t:?} is not a base58 address")))?,
        None => ctx.wallet()?.pubkey(),
    };
    let local = cluster::is_local(&ctx.url);
    // Read everything that can refuse before anything is sent.
    let tokens = match &args.tokens {
        None => None,
        Some(_) if !local => {
            return Err(CliError::Input(
                "--tokens works on a local chain only, where gpumesh holds the mint's keys".into(),
            ));
        }
        Some(t) => {
            let state = LocalState::open(&ctx.localnet_dir()?)?;
            let which = match Pubkey::from_str(args.mint.trim()) {
                Ok(address) => state.which(&address).ok_or_else(|| {
                    CliError::Input(format!(
                        "--mint {address} is not one of the local chain's mints ({} and {}): airdrop mints only what gpumesh holds the keys of",
                        state.mint(),
                        state
                            .usd_mint()
                            .map(|k| k.to_string())
                            .unwrap_or_else(|_| "no USD-like mint yet".into())
                    ))
                })?,
                Err(_) => LocalMint::from_str(&args.mint).map_err(CliError::Input)?,
            };
            let mint = state.mint_of(which)?;
            let decimals = mint_decimals(&ctx.chain, &mint)?;
            let base = amount::parse(t, decimals).map_err(|source| CliError::Amount {
                what: "--tokens".into(),
                source,
            })?;
            Some((state, which, mint, base, decimals))
        }
    };
    if lamports > 0 {
        ctx.chain.airdrop(&to, lamports)?;
    }
    let mut token_balance = None;
    let mut decimals = None;
    let mut minted = None;
    if let Some((state, which, mint, base, mint_decimals)) = tokens {
        decimals = Some(mint_decimals);
        minted = Some((which, mint));
        let ata = state.mint_to_of(&mut ctx.chain, which, &to, base)?;
        token_balance = Some(amount::format(
            ctx.chain.token_balance(&ata)?,
            mint_decimals,
        ));
    }
    let sol = amount::format(ctx.chain.lamports(&to)?, 9);
    ctx.print(
        json!({
            "to": to.to_string(),
            "sol": sol,
            "tokens": token_balance,
            "decimals": token_balance.as_ref().and(decimals),
            "mint": minted.map(|(_, m)| m.to_string()),
            "mint_name": minted.map(|(w, _)| w.name()),
        }),
        || match (&token_balance, minted) {
            (Some(t), Some((which, mint))) => {
                format!("{to}: {sol} SOL, {t} {} (mint {mint})", which.tokens())
            }
            _ => format!("{to}: {sol} SOL"),
        },
    );
    Ok(())
}
