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
        "no market at {0} on this cluster: create one with `gpumesh market init market.toml`, or check --market and --url"
    )]
    NoMarket(Pubkey),
    #[error("{what} {key} does not exist on this cluster{hint}")]
    Missing {
        what: &'static str,
        key: Pubkey,
        hint: String,
    },
    #[error(
        "{who}{} has {} SOL and needs about {} for fees and rent; {}",
        keypair_note(.keypair.as_deref()),
        sol(*.have),
        sol(*.need),
        fund_sol(*.local)
    )]
    NotEnoughSol {
        who: Pubkey,
        /// The keypair file, when `who` is the wallet signing this command.
        keypair: Option<String>,
        have: u64,
        need: u64,
        local: bool,
    },
    /// `gpumesh confirm` found a transaction failed, or found no record of it.
    #[error("{message}")]
    TxStatus {
        signature: String,
        status: &'static str,
        message: String,
    },
    #[error("{who} holds {have} tokens and this needs {need}; {}", fund_tokens(*.local))]
    NotEnoughTokens {
        who: Pubkey,
        have: String,
        need: String,
        local: bool,
    },
}

fn keypair_note(path: Option<&str>) -> String {
    match path {
        Some(p) => format!(" (the keypair {p})"),
        None => String::new(),
    }
}

fn sol(lamports: u64) -> String {
    gpumesh_client::amount::format(lamports, 9)
}

/// Exit status for an outcome nobody could learn (see [`CliError::exit_code`]).
pub const EXIT_UNKNOWN_OUTCOME: u8 = 3;

impl CliError {
    /// The chain error inside, wherever a library wrapped it.
    fn chain(&self) -> Option<&ChainError> {
        match self {
            CliError::Chain(e)
            | CliError::Deploy(DeployError::Chain(e))
            | CliError::Mint(MintError::Chain(e))
            | CliError::Setup(SetupError::Chain(e)) => Some(e),
            _ => None,
        }
    }

    /// 3 when a transaction was sent and its outcome is unknown (it may have landed: check
    /// before retrying), 1 for every other error. Usage errors (2) come from clap.
    pub fn exit_code(&self) -> u8 {
        match self.chain() {
            Some(ChainError::UnknownOutcome { .. }) => EXIT_UNKNOWN_OUTCOME,
            _ => 1,
        }
    }

    /// The error as one JSON object for `--output json`.
    pub fn to_json(&self) -> serde_json::Value {
        let kind = match (self, self.chain()) {
            (_, Some(ChainError::UnknownOutcome { .. })) => "unknown_outcome",
            (_, Some(ChainError::Expired { .. })) => "expired",
            (_, Some(ChainError::Program { .. })) => "program",
            (_, Some(ChainError::Transaction { .. })) => "transaction",
            (_, Some(ChainError::Rpc(_))) => "rpc",
            (_, Some(_)) => "chain",
            (CliError::NotEnoughSol { .. }, _) => "not_enough_sol",
            (CliError::NotEnoughTokens { .. }, _) => "not_enough_tokens",
            (CliError::NoMarket(_) | CliError::Missing { .. }, _) => "not_found",
            (CliError::TxStatus { .. }, _) => "transaction_status",
            _ => "input",
        };
        let mut error = serde_json::json!({
            "kind": kind,
            "message": self.to_string(),
            "exit_code": self.exit_code(),
        });
        match self.chain() {
            Some(
                ChainError::UnknownOutcome { signature, .. } | ChainError::Expired { signature },
            ) => {
                error["signature"] = signature.clone().into();
            }
            Some(ChainError::Program { name, code, .. }) => {
                error["program_error"] = serde_json::json!({"name": name, "code": code});
            }
            _ => {}
        }
        if let CliError::TxStatus {
            signature, status, ..
        } = self
        {
            error["signature"] = signature.clone().into();
            error["status"] = (*status).into();
        }
        serde_json::json!({ "error": error })
    }
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
            "StakeStillLocked" => Some("`gpumesh worker status` prints when the stake unlocks"),
            "OrderHasActiveLeases" => Some("wait until the orchestrator closes the order's leases"),
            "MarketPaused" => {
                Some("the market's authority paused it; wait for `market update --resume`")
            }
            "WorkerBusy" => {
                Some("wait until the worker's leases end (`gpumesh worker status` lists them)")
            }
            "EmissionOverfunded" => {
                Some("fund at most what the emission schedule can still release")
            }
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
