//! What the command line tells a user when something fails, and what to do about it. Checks that
//! can run before sending do, so a refusal never leaves anything half-done on chain.

use anchor_lang::prelude::Pubkey;
use gpumesh_client::ChainError;
use gpumesh_client::amount::AmountError;
use gpumesh_client::cluster::ClusterError;
use gpumesh_client::token::MintError;
use gpumesh_localnet::{LocalnetError, SetupError};
use gpumesh_migrations::deploy::DeployError;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{what}: {source}")]
    Amount { what: String, source: AmountError },
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Deploy(#[from] DeployError),
    #[error(transparent)]
    Mint(#[from] MintError),
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Localnet(#[from] LocalnetError),
    #[error("{}", describe_chain(.0))]
    Chain(#[from] ChainError),
    #[error(
        "no market at {0} on this cluster: create one with `gpumesh market init --config market.toml`, or check --market and --url"
    )]
    NoMarket(Pubkey),
    #[error("{what} {key} does not exist on this cluster{hint}")]
    Missing {
        what: &'static str,
        key: Pubkey,
        hint: String,
    },
    #[error("{who} has {have} lamports of SOL and needs about {need} for fees and rent; {}", fund_sol(*.local))]
    NotEnoughSol {
        who: Pubkey,
        have: u64,
        need: u64,
        local: bool,
    },
    #[error("{who} holds {have} tokens and this needs {need}; {}", fund_tokens(*.local))]
    NotEnoughTokens {
        who: Pubkey,
        have: String,
        need: String,
        local: bool,
    },
}

fn fund_sol(local: bool) -> &'static str {
    if local {
        "get some with `gpumesh airdrop 10`"
    } else {
        "transfer SOL to it (on devnet: `gpumesh airdrop 1 -u devnet`)"
    }
}

fn fund_tokens(local: bool) -> &'static str {
    if local {
        "get test tokens with `gpumesh airdrop --tokens 1000`"
    } else {
        "transfer tokens of the market's mint to it"
    }
}

/// A chain error with the program's words and, where one helps, what to do next.
fn describe_chain(err: &ChainError) -> String {
    let hint = match err {
        ChainError::Program { name, .. } => match name.as_str() {
            "NotMarketAuthority" => Some("sign with the market authority's keypair (-k)"),
            "NotOrchestrator" => Some("sign with the market's orchestrator keypair (-k)"),
            "NotBuyer" | "ConstraintSeeds" => Some(
                "sign with the wallet that owns the account (-k); for an order, the buyer who created it",
            ),
            "StakeBelowMinimum" => Some("stake more with `gpumesh worker stake <amount>`"),
            "NothingUnbonding" => {
                Some("request an unstake first: `gpumesh worker unstake <amount>`")
            }
            "StakeStillLocked" => Some("`gpumesh worker show` prints when the stake unlocks"),
            "OrderHasActiveLeases" => Some("wait until the orchestrator closes the order's leases"),
            "AccountNotInitialized" => Some("check the address, --market and --url"),
            _ => None,
        },
        _ => None,
    };
    match hint {
        Some(h) => format!("{err}; {h}"),
        None => err.to_string(),
    }
}
