//! What every wallet-signed command shares: which cluster (`--url`), which wallet
//! (`--keypair`), which market (`--market`), how to print (`--output`), and sending a transaction
//! with a spinner while it confirms.

use crate::error::CliError;
use anchor_lang::prelude::Pubkey;
use gpumesh_client::chain::{Chain, ChainExt};
use gpumesh_client::cluster;
use gpumesh_client::program::state::Market;
use gpumesh_client::token::{FEE_MARGIN_LAMPORTS, mint_decimals};
use gpumesh_client::{Keypair, MarketAddresses, Outcome, RpcChain, amount, token};
use gpumesh_localnet::LocalState;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use solana_instruction::Instruction;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

#[derive(clap::Args, Clone, Debug)]
pub struct GlobalArgs {
    /// Cluster: localnet, devnet, testnet, mainnet-beta (or l, d, t, m) or a JSON-RPC URL.
    #[arg(
        long,
        short = 'u',
        global = true,
        env = "GPUMESH_URL",
        default_value = "localnet"
    )]
    pub url: String,
    /// The wallet that signs and pays [default: ~/.config/solana/id.json].
    #[arg(long, short = 'k', global = true, env = "GPUMESH_KEYPAIR")]
    pub keypair: Option<PathBuf>,
    /// The market's address, as `gpumesh market init` printed it [default on a local chain: the
    /// market `gpumesh market init` created there].
    #[arg(long, global = true, env = "GPUMESH_MARKET")]
    pub market: Option<String>,
    /// Where `gpumesh localnet` keeps its mint keys.
    #[arg(
        long,
        global = true,
        env = "GPUMESH_LOCALNET_DIR",
        default_value = "~/.config/gpumesh/localnet"
    )]
    pub localnet_dir: PathBuf,
    /// `text` for people, `json` for scripts (one JSON object on stdout).
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}

/// A market as read from the chain, with its mint's decimals.
pub struct MarketView {
    pub addrs: MarketAddresses,
    pub market: Market,
    pub decimals: u8,
}

impl MarketView {
    pub fn tokens(&self, base: u64) -> String {
        amount::format(base, self.decimals)
    }

    pub fn parse(&self, what: &str, text: &str) -> Result<u64, CliError> {
        amount::parse(text, self.decimals).map_err(|source| CliError::Amount {
            what: what.to_string(),
            source,
        })
    }
}

pub struct Ctx {
    pub args: GlobalArgs,
    pub url: String,
    pub chain: RpcChain,
}

impl Ctx {
    pub fn new(args: &GlobalArgs) -> Result<Self, CliError> {
        let url = cluster::resolve_url(&args.url)?;
        Ok(Self {
            args: args.clone(),
            chain: RpcChain::new(url.clone()),
            url,
        })
    }

    pub fn json(&self) -> bool {
        self.args.output == Output::Json
    }

    pub fn keypair_path(&self) -> Result<PathBuf, CliError> {
        match &self.args.keypair {
            Some(p) => Ok(p.clone()),
            None => Ok(cluster::default_keypair_path()?),
        }
    }

    /// The wallet, read before anything is sent.
    pub fn wallet(&self) -> Result<Keypair, CliError> {
        Ok(cluster::read_keypair(&self.keypair_path()?)?)
    }

    /// The market's address: `--market`, or on a local chain the one `gpumesh market init`
    /// created there.
    pub fn market_key(&self) -> Result<Pubkey, CliError> {
        if let Some(m) = &self.args.market {
            return Pubkey::from_str(m.trim())
                .map_err(|_| CliError::Input(format!("--market {m:?} is not a base58 address")));
        }
        if cluster::is_local(&self.url) {
            let state = LocalState::open(&self.args.localnet_dir)?;
            return state.market().ok_or_else(|| {
                CliError::Input(
                    "no market on the local chain yet: create one with `gpumesh market init --config market.toml`, or pass --market".into(),
                )
            });
        }
        Err(CliError::Input(
            "which market? pass --market <address> (or set GPUMESH_MARKET); `gpumesh market init` prints it".into(),
        ))
    }

    /// The market named by [`Ctx::market_key`], read from the chain.
    pub fn market(&self) -> Result<MarketView, CliError> {
        let key = self.market_key()?;
        let market = self
            .chain
            .fetch_opt::<Market>(&key)?
            .ok_or(CliError::NoMarket(key))?;
        let addrs = MarketAddresses::of(&market);
        let decimals = mint_decimals(&self.chain, &addrs.mint)?;
        Ok(MarketView {
            addrs,
            market,
            decimals,
        })
    }

    /// Refuses before sending when `who` cannot pay fees plus `extra_lamports` (rent).
    pub fn require_sol(&self, who: &Pubkey, extra_lamports: u64) -> Result<(), CliError> {
        let have = self.chain.lamports(who)?;
        let need = extra_lamports + FEE_MARGIN_LAMPORTS;
        if have < need {
            return Err(CliError::NotEnoughSol {
                who: *who,
                have,
                need,
                local: cluster::is_local(&self.url),
            });
        }
        Ok(())
    }

    /// Refuses before sending when `owner`'s token account holds less than `amount`.
    pub fn require_tokens(
        &self,
        m: &MarketView,
        owner: &Pubkey,
        amount: u64,
    ) -> Result<Pubkey, CliError> {
        let ata = token::ata(owner, &m.addrs.mint);
        let have = self.chain.token_balance(&ata)?;
        if have < amount {
            return Err(CliError::NotEnoughTokens {
                who: *owner,
                have: m.tokens(have),
                need: m.tokens(amount),
                local: cluster::is_local(&self.url),
            });
        }
        Ok(ata)
    }

    /// Sends one transaction with a spinner on stderr until it is confirmed.
    pub fn send(
        &mut self,
        what: &str,
        instructions: &[Instruction],
        payer: &Keypair,
        signers: &[&Keypair],
    ) -> Result<Outcome, CliError> {
        let spinner = if self.json() {
            ProgressBar::hidden()
        } else {
            let bar = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
                bar.set_style(style);
            }
            bar.set_message(format!("{what}: sending to {}", self.url));
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        };
        let result = self.chain.send(instructions, payer, signers);
        spinner.finish_and_clear();
        Ok(result?)
    }

    /// Prints `value` as JSON, or `text` for people.
    pub fn print(&self, value: Value, text: impl FnOnce() -> String) {
        if self.json() {
            println!("{value}");
        } else {
            println!("{}", text());
        }
    }

    /// The usual report of a sent transaction.
    pub fn report(&self, what: &str, outcome: &Outcome, mut extra: Value, text: String) {
        if let Value::Object(map) = &mut extra {
            map.insert("signature".into(), json!(outcome.signature));
            map.insert("action".into(), json!(what));
        }
        self.print(extra, || {
            format!("{text}\nsignature: {}", outcome.signature)
        });
    }
}
