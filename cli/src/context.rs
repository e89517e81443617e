//! What the commands share: the options each group of commands takes (cluster, wallet, market),
//! the defaults behind them (flags, `GPUMESH_*` variables, then the Solana CLI's config file),
//! and sending a transaction with a spinner while it confirms.
//!
//! Each command takes only the options that apply to it: `keys show` has no `--keypair`,
//! `market show` no wallet, `market init` no `--market`. `--output` and `-C/--config` apply
//! everywhere.

use crate::config::SolanaConfig;
use crate::error::CliError;
use crate::output::{self, Output};
use anchor_lang::prelude::Pubkey;
use gpumesh_client::chain::{Chain, ChainExt};
use gpumesh_client::cluster;
use gpumesh_client::program::state::Market;
use gpumesh_client::rpc::{Commitment as CommitmentLevel, RpcConfig};
use gpumesh_client::token::{FEE_MARGIN_LAMPORTS, mint_decimals};
use gpumesh_client::{ChainError, Keypair, MarketAddresses, Outcome, RpcChain, Signer, amount};
use gpumesh_localnet::LocalState;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use solana_instruction::Instruction;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// Options of every command.
#[derive(clap::Args, Clone, Debug)]
pub struct GlobalArgs {
    /// `text` for people; `json` (pretty) or `json-compact` (one line) print one JSON document on
    /// stdout, errors included.
    #[arg(long, global = true, value_enum, env = "GPUMESH_OUTPUT", default_value_t = Output::Text)]
    pub output: Output,
    /// A Solana CLI config file; its json_rpc_url, keypair_path and commitment are the defaults
    /// [default: ~/.config/solana/cli/config.yml when it exists].
    #[arg(
        short = 'C',
        long,
        global = true,
        env = "GPUMESH_CONFIG",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Commitment {
    Processed,
    Confirmed,
    Finalized,
}

impl From<Commitment> for CommitmentLevel {
    fn from(c: Commitment) -> Self {
        match c {
            Commitment::Processed => CommitmentLevel::Processed,
            Commitment::Confirmed => CommitmentLevel::Confirmed,
            Commitment::Finalized => CommitmentLevel::Finalized,
        }
    }
}

/// Options of the commands that talk to a cluster.
#[derive(clap::Args, Clone, Debug)]
pub struct ClusterArgs {
    /// Cluster: localnet, devnet, testnet, mainnet-beta (or l, d, t, m) or a JSON-RPC URL
    /// [default: the config file's json_rpc_url, else localnet].
    #[arg(long, short = 'u', env = "GPUMESH_URL")]
    pub url: Option<String>,
    /// Commitment that reads see and sent transactions wait for [default: the config file's,
    /// else confirmed].
    #[arg(long, value_enum, env = "GPUMESH_COMMITMENT")]
    pub commitment: Option<Commitment>,
    /// Seconds one RPC request may take before the endpoint counts as not answering.
    #[arg(
        long,
        env = "GPUMESH_RPC_TIMEOUT",
        value_name = "SECONDS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..=3_600)
    )]
    pub rpc_timeout: u64,
}

/// The signing wallet.
#[derive(clap::Args, Clone, Debug)]
pub struct WalletArgs {
    /// The wallet that signs and pays [default: the config file's keypair_path, else
    /// ~/.config/solana/id.json].
    #[arg(long, short = 'k', env = "GPUMESH_KEYPAIR", value_name = "FILE")]
    pub keypair: Option<PathBuf>,
}

/// Where `gpumesh localnet` keeps its mint keys and its market's address.
#[derive(clap::Args, Clone, Debug)]
pub struct LocalDirArgs {
    /// Where `gpumesh localnet` keeps its mint keys (and the market `market init` created there).
    #[arg(
        long,
        env = "GPUMESH_LOCALNET_DIR",
        default_value = "~/.config/gpumesh/localnet",
        value_name = "DIR"
    )]
    pub localnet_dir: PathBuf,
}

/// Which market.
#[derive(clap::Args, Clone, Debug)]
pub struct MarketArgs {
    /// The market's address, as `gpumesh market init` printed it [default on a local chain: the
    /// market `gpumesh market init` created there].
    #[arg(long, env = "GPUMESH_MARKET", value_name = "ADDRESS")]
    pub market: Option<String>,
    #[command(flatten)]
    pub local: LocalDirArgs,
}

/// Cluster, wallet and market: the options of a command that signs in a market.
#[derive(clap::Args, Clone, Debug)]
pub struct Signed {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub wallet: WalletArgs,
    #[command(flatten)]
    pub market: MarketArgs,
}

/// Cluster and market: a command that only reads a market.
#[derive(clap::Args, Clone, Debug)]
pub struct Reading {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub market: MarketArgs,
}

/// The output mode and the defaults every command starts from.
#[derive(Clone, Debug)]
pub struct Env {
    pub output: Output,
    pub defaults: SolanaConfig,
}

impl Env {
    pub fn new(args: &GlobalArgs) -> Result<Self, CliError> {
        let (defaults, _) = SolanaConfig::load(args.config.as_deref())?;
        Ok(Self {
            output: args.output,
            defaults,
        })
    }

    pub fn json(&self) -> bool {
        self.output.is_json()
    }

    /// The wallet file: `explicit` (`--keypair`), else `GPUMESH_KEYPAIR`, else the config
    /// file's keypair_path, else `~/.config/solana/id.json`.
    pub fn keypair_path(&self, explicit: Option<&Path>) -> Result<PathBuf, CliError> {
        if let Some(p) = explicit {
            return Ok(cluster::expand_home(p));
        }
        if let Some(p) = std::env::var_os("GPUMESH_KEYPAIR").filter(|p| !p.is_empty()) {
            return Ok(cluster::expand_home(Path::new(&p)));
        }
        if let Some(p) = &self.defaults.keypair_path {
            return Ok(cluster::expand_home(Path::new(p)));
        }
        Ok(cluster::default_keypair_path()?)
    }

    /// Prints `value` as JSON, or `text` for people.
    pub fn print(&self, value: Value, text: impl FnOnce() -> String) {
        if self.json() {
            output::line(&self.output.render(&value));
        } else {
            output::line(&text());
        }
    }

    /// A chain client for `args`, with the config file's URL and commitment as defaults.
    pub fn connect(&self, args: &ClusterArgs) -> Result<Ctx, CliError> {
        let moniker = args
            .url
            .clone()
            .or_else(|| self.defaults.json_rpc_url.clone())
            .unwrap_or_else(|| "localnet".into());
        let url = cluster::resolve_url(&moniker)?;
        let commitment = match (args.commitment, &self.defaults.commitment) {
            (Some(c), _) => c.into(),
            (None, Some(c)) => CommitmentLevel::from_str(c).map_err(|_| {
                CliError::Input(format!(
                    "the config file's commitment {c:?} is not processed, confirmed or finalized; fix it or pass --commitment"
                ))
            })?,
            (None, None) => CommitmentLevel::Confirmed,
        };
        let config = RpcConfig {
            commitment,
            request_timeout: Duration::from_secs(args.rpc_timeout),
            ..RpcConfig::default()
        };
        Ok(Ctx {
            env: self.clone(),
            chain: RpcChain::with_config(url.clone(), config),
            url,
            keypair: None,
            market: None,
            localnet_dir: None,
        })
    }
}

/// A market as read from the chain, with its mint's decimals.
pub struct MarketView {
    pub addrs: MarketAddresses,
    pub market: Market,
    pub decimals: u8,
}

impl MarketView {
    /// Whole tokens for people.
    pub fn tokens(&self, base: u64) -> String {
        amount::format(base, self.decimals)
    }

    /// A token amount for scripts: the exact decimal string in whole tokens.
    pub fn amount(&self, base: u64) -> Value {
        Value::String(amount::format(base, self.decimals))
    }

    /// `value` with the mint and its decimals, which its amounts are counted in.
    pub fn with_units(&self, mut value: Value) -> Value {
        if let Value::Object(map) = &mut value {
            map.insert("mint".into(), json!(self.addrs.mint.to_string()));
            map.insert("decimals".into(), json!(self.decimals));
        }
        value
    }

    /// A price argument in base units per GPU-second, exactly (an hourly price that is not a
    /// whole number of base units per second is refused with the nearest that are).
    pub fn price(&self, flag: &str, arg: &crate::price::PriceArg) -> Result<u64, CliError> {
        arg.base_per_gpu_second(flag, self.decimals)
            .map_err(|e| CliError::Input(e.to_string()))
    }

    /// A price for people: per GPU-hour, with the per-GPU-second price beside it.
    pub fn price_text(&self, base_per_gpu_second: u64) -> String {
        crate::price::text(base_per_gpu_second, self.decimals)
    }

    /// A price per GPU-hour for scripts (exact decimal string of whole tokens), beside the
    /// per-GPU-second field.
    pub fn per_hour(&self, base_per_gpu_second: u64) -> Value {
        crate::price::hour_json(base_per_gpu_second, self.decimals)
    }

    pub fn parse(&self, what: &str, text: &str) -> Result<u64, CliError> {
        amount::parse(text, self.decimals).map_err(|source| CliError::Amount {
            what: what.to_string(),
            source,
        })
    }
}

/// A command talking to a cluster.
pub struct Ctx {
    pub env: Env,
    pub url: String,
    pub chain: RpcChain,
    keypair: Option<PathBuf>,
    market: Option<String>,
    localnet_dir: Option<PathBuf>,
}

impl Ctx {
    pub fn with_wallet(mut self, args: &WalletArgs) -> Self {
        self.keypair = args.keypair.clone();
        self
    }

    pub fn with_market(mut self, args: &MarketArgs) -> Self {
        self.market = args.market.clone();
        self.localnet_dir = Some(args.local.localnet_dir.clone());
        self
    }

    pub fn with_local_dir(mut self, args: &LocalDirArgs) -> Self {
        self.localnet_dir = Some(args.localnet_dir.clone());
        self
    }

    pub fn json(&self) -> bool {
        self.env.json()
    }

    pub fn localnet_dir(&self) -> Result<PathBuf, CliError> {
        match &self.localnet_dir {
            Some(d) => Ok(d.clone()),
            None => Ok(LocalState::default_dir()?),
        }
    }

    pub fn keypair_path(&self) -> Result<PathBuf, CliError> {
        self.env.keypair_path(self.keypair.as_deref())
    }

    /// The wallet, read before anything is sent.
    pub fn wallet(&self) -> Result<Keypair, CliError> {
        Ok(cluster::read_keypair(&self.keypair_path()?)?)
    }

    /// The market's address: `--market`, or on a local chain the one `gpumesh market init`
    /// created there.
    pub fn market_key(&self) -> Result<Pubkey, CliError> {
        if let Some(m) = &self.market {
            return Pubkey::from_str(m.trim())
                .map_err(|_| CliError::Input(format!("--market {m:?} is not a base58 address")));
        }
        if cluster::is_local(&self.url) {
            let state = LocalState::open(&self.localnet_dir()?)?;
            return state.market().ok_or_else(|| {
                CliError::Input(
                    "no market on the local chain yet: create one with `gpumesh market init market.toml`, or pass --market".into(),
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

    /// The wallet file's path for messages about `who` (when `who` is the wallet).
    fn keypair_hint(&self, who: &Pubkey) -> Option<String> {
        let path = self.keypair_path().ok()?;
        let key = cluster::read_keypair(&path).ok()?;
        (key.pubkey() == *who).then(|| path.display().to_string())
    }

    /// Refuses before sending when `who` cannot pay fees plus `extra_lamports` (rent).
    pub fn require_sol(&self, who: &Pubkey, extra_lamports: u64) -> Result<(), CliError> {
        let have = self.chain.lamports(who)?;
        let need = extra_lamports + FEE_MARGIN_LAMPORTS;
        if have < need {
            return Err(CliError::NotEnoughSol {
                who: *who,
                keypair: self.keypair_hint(who),
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
        let ata = gpumesh_client::token::ata(owner, &m.addrs.mint);
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

    /// Sends one transaction with a spinner on stderr until it is confirmed. A fee payer the
    /// runtime finds without SOL is named with its keypair file.
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
        match result {
            Ok(outcome) => Ok(outcome),
            Err(ChainError::Transaction { error, .. })
                if error.contains("insufficient funds for fee")
                    || error.contains("no record of a prior credit") =>
            {
                Err(CliError::NotEnoughSol {
                    who: payer.pubkey(),
                    keypair: self.keypair_hint(&payer.pubkey()),
                    have: self.chain.lamports(&payer.pubkey()).unwrap_or(0),
                    need: FEE_MARGIN_LAMPORTS,
                    local: cluster::is_local(&self.url),
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Prints `value` as JSON, or `text` for people.
    pub fn print(&self, value: Value, text: impl FnOnce() -> String) {
        self.env.print(value, text);
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
