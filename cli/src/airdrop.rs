//! `gpumesh airdrop`: SOL for fees (requestAirdrop: localnet and devnet) and, on a local chain,
//! test tokens of the local mint.

use crate::context::{ClusterArgs, Env, LocalDirArgs, WalletArgs};
use crate::error::CliError;
use anchor_lang::prelude::Pubkey;
use gpumesh_client::chain::{Chain, ChainExt};
use gpumesh_client::token::mint_decimals;
use gpumesh_client::{Signer, amount, cluster};
use gpumesh_localnet::LocalState;
use serde_json::json;
use std::str::FromStr;

#[derive(clap::Args)]
pub struct AirdropArgs {
    /// SOL to request (whole SOL, e.g. 10 or 0.5).
    #[arg(default_value = "10")]
    sol: String,
    /// Also mint this many test tokens of the local mint (local chain only).
    #[arg(long)]
    tokens: Option<String>,
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
            let decimals = mint_decimals(&ctx.chain, &state.mint())?;
            let base = amount::parse(t, decimals).map_err(|source| CliError::Amount {
                what: "--tokens".into(),
                source,
            })?;
            Some((state, base, decimals))
        }
    };
    if lamports > 0 {
        ctx.chain.airdrop(&to, lamports)?;
    }
    let mut token_balance = None;
    let mut decimals = None;
    if let Some((state, base, mint_decimals)) = tokens {
        decimals = Some(mint_decimals);
        let ata = state.mint_to(&mut ctx.chain, &to, base)?;
        token_balance = Some(amount::format(
            ctx.chain.token_balance(&ata)?,
            mint_decimals,
        ));
    }
    let sol = amount::format(ctx.chain.lamports(&to)?, 9);
    ctx.print(
        json!({"to": to.to_string(), "sol": sol, "tokens": token_balance, "decimals": token_balance.as_ref().and(decimals)}),
        || match &token_balance {
            Some(t) => format!("{to}: {sol} SOL, {t} tokens"),
            None => format!("{to}: {sol} SOL"),
        },
    );
    Ok(())
}
