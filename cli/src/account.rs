//! `gpumesh balance` (SOL and the market's token for any address) and `gpumesh confirm` (what the
//! cluster knows of a transaction signature: the way to settle an unknown outcome before
//! retrying).

use crate::context::{ClusterArgs, Env, MarketArgs, WalletArgs};
use crate::error::CliError;
use crate::output;
use anchor_lang::prelude::Pubkey;
use gpumesh_client::chain::ChainExt;
use gpumesh_client::rpc::{Commitment, SignatureStatus};
use gpumesh_client::{ChainError, Signature, Signer, amount, token};
use serde_json::json;
use std::str::FromStr;

#[derive(clap::Args)]
pub struct BalanceArgs {
    /// The address to look at [default: the wallet's (--keypair)].
    address: Option<String>,
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    wallet: WalletArgs,
    #[command(flatten)]
    market: MarketArgs,
}

#[derive(clap::Args)]
pub struct ConfirmArgs {
    /// The transaction signature a command printed (after `signature:`, or in an "outcome
    /// unknown" message).
    signature: String,
    #[command(flatten)]
    cluster: ClusterArgs,
}

pub fn balance(env: &Env, args: &BalanceArgs) -> Result<(), CliError> {
    let ctx = env
        .connect(&args.cluster)?
        .with_wallet(&args.wallet)
        .with_market(&args.market);
    let address = match &args.address {
        Some(a) => Pubkey::from_str(a.trim()).map_err(|_| {
            CliError::Input(format!(
                "{a:?} is not a base58 address; pass a wallet address, or nothing for the wallet's own"
            ))
        })?,
        None => ctx.wallet()?.pubkey(),
    };
    let lamports = ctx.chain.lamports(&address)?;
    let sol = amount::format(lamports, 9);
    // The token side needs a market; without one (none on this cluster yet, or no --market) the
    // SOL balance is still worth printing.
    let market = match ctx.market_key() {
        Ok(_) => Some(ctx.market()?),
        Err(_) => None,
    };
    match market {
        Some(m) => {
            let tokens = ctx
                .chain
                .token_balance(&token::ata(&address, &m.addrs.mint))?;
            ctx.print(
                m.with_units(json!({
                    "address": address.to_string(),
                    "sol": sol,
                    "tokens": m.amount(tokens),
                    "market": m.addrs.market.to_string(),
                })),
                || {
                    format!(
                        "{address}\n  SOL     {sol}\n  tokens  {} (mint {})",
                        m.tokens(tokens),
                        m.addrs.mint
                    )
                },
            );
        }
        None => ctx.print(
            json!({"address": address.to_string(), "sol": sol, "tokens": null}),
            || {
                format!(
                    "{address}\n  SOL     {sol}\n  tokens  (no market: pass --market <address> to see the market's token)"
                )
            },
        ),
    }
    Ok(())
}

/// Status 0 when the transaction landed and took effect, 1 when it failed or the cluster has no
/// record of it, 3 when the cluster cannot be asked.
pub fn confirm(env: &Env, args: &ConfirmArgs) -> Result<(), CliError> {
    let ctx = env.connect(&args.cluster)?;
    let text = args.signature.trim();
    let signature = Signature::from_str(text).map_err(|_| {
        CliError::Input(format!(
            "{text:?} is not a transaction signature: pass the 88 base58 characters a command printed after `signature:`"
        ))
    })?;
    // A cluster that cannot be asked leaves the outcome as unknown as it was.
    let status = ctx
        .chain
        .signature_status(&signature)
        .map_err(|e| match e {
            ChainError::Rpc(reason) => CliError::Chain(ChainError::UnknownOutcome {
                signature: text.to_string(),
                reason,
            }),
            other => other.into(),
        })?;
    let (slot, commitment, result) = match status {
        SignatureStatus::Landed {
            slot,
            commitment,
            result,
        } => (slot, commitment, result),
        SignatureStatus::NotFound => {
            return Err(CliError::TxStatus {
                signature: text.to_string(),
                status: "not_found",
                message: format!(
                    "{} has no record of {text}: it has not landed. A transaction that has not landed within about {} of being signed never will (its blockhash expires); after that it is safe to run the command again",
                    ctx.url,
                    output::duration(90)
                ),
            });
        }
    };
    match result {
        Ok(()) => {
            ctx.print(
                json!({"signature": text, "status": "landed", "slot": slot, "commitment": commitment.to_string()}),
                || {
                    let note = if commitment == Commitment::Processed {
                        "; only processed so far: a fork can still drop it, check again in a few seconds"
                    } else {
                        ""
                    };
                    format!("{text}: landed in slot {slot} ({commitment}) and took effect{note}")
                },
            );
            Ok(())
        }
        Err(e) => Err(CliError::TxStatus {
            signature: text.to_string(),
            status: "failed",
            message: format!(
                "{text} landed in slot {slot} ({commitment}) and failed: {e}. Only its fee was taken"
            ),
        }),
    }
}
