//! `gpumesh market`: the operator's commands. `init` creates a market from a TOML file (the same
//! file and code path as the migrations binary), `show` prints it, `update` tunes it.

use crate::context::{Ctx, MarketView};
use crate::error::CliError;
use anchor_lang::prelude::Pubkey;
use gpumesh_client::Signer;
use gpumesh_client::chain::{Chain, ChainExt};
use gpumesh_client::ix;
use gpumesh_client::program::instructions::UpdateMarketArgs;
use gpumesh_client::program::state::Market;
use gpumesh_migrations::deploy::{self, Deployed, MarketConfig, ParamsConfig};
use serde_json::json;
use std::path::PathBuf;
use std::str::FromStr;

#[derive(clap::Subcommand)]
pub enum MarketCommand {
    /// Create the market for a payment mint from a TOML file of parameters.
    Init(InitArgs),
    /// Print a market: parameters, totals and vault balances.
    Show,
    /// Change a market's parameters, orchestrator, authority or paused flag (authority only).
    Update(UpdateArgs),
}

#[derive(clap::Args)]
pub struct InitArgs {
    /// The market's TOML file (mint, orchestrator, [params]; see migrations/market.example.toml).
    #[arg(long, short = 'c', env = "GPUMESH_MARKET_CONFIG")]
    config: PathBuf,
    /// Succeed without changes when the market exists (report it instead of failing).
    #[arg(long)]
    if_missing: bool,
}

#[derive(clap::Args)]
pub struct UpdateArgs {
    /// A TOML file of parameters to change (the keys of a market file's [params] table).
    #[arg(long)]
    params: Option<PathBuf>,
    /// Protocol fee in basis points.
    #[arg(long)]
    protocol_fee_bps: Option<u16>,
    /// Minimum stake per GPU, in whole tokens.
    #[arg(long)]
    min_stake_per_gpu: Option<String>,
    /// Hand order matching and settlement to another key.
    #[arg(long)]
    orchestrator: Option<String>,
    /// Hand the market to another authority.
    #[arg(long)]
    new_authority: Option<String>,
    /// Stop new orders and leases.
    #[arg(long, conflicts_with = "resume")]
    pause: bool,
    /// Take new orders and leases again.
    #[arg(long)]
    resume: bool,
}

pub fn run(ctx: &mut Ctx, cmd: &MarketCommand) -> Result<(), CliError> {
    match cmd {
        MarketCommand::Init(args) => init(ctx, args),
        MarketCommand::Show => show(ctx),
        MarketCommand::Update(args) => update(ctx, args),
    }
}

fn read_text(path: &PathBuf) -> Result<String, CliError> {
    std::fs::read_to_string(path)
        .map_err(|e| CliError::Input(format!("cannot read {}: {e}", path.display())))
}

fn init(ctx: &mut Ctx, args: &InitArgs) -> Result<(), CliError> {
    let config = MarketConfig::from_toml(&read_text(&args.config)?)?;
    let authority = ctx.wallet()?;
    ctx.chain.ping()?;
    let mint = config.mint()?;
    let market = gpumesh_client::MarketAddresses::new(mint, authority.pubkey()).market;
    if !args.if_missing && ctx.chain.account(&market)?.is_some() {
        return Err(CliError::Input(format!(
            "this wallet already created the market {market} for mint {mint}; `gpumesh market show --market {market}` prints it, `--if-missing` accepts it"
        )));
    }
    let spinner_ctx = ctx.json();
    let bar = (!spinner_ctx).then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_message(format!("creating the market on {}", ctx.url));
        bar.enable_steady_tick(std::time::Duration::from_millis(100));
        bar
    });
    let result = deploy::init_market_if_missing(&mut ctx.chain, &authority, &config);
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let deployed = result?;
    let addrs = match &deployed {
        Deployed::Created { addrs, .. } | Deployed::Existing { addrs, .. } => *addrs,
    };
    if gpumesh_client::cluster::is_local(&ctx.url)
        && let Ok(state) = gpumesh_localnet::LocalState::open(&ctx.args.localnet_dir)
    {
        // Later commands on the chain `gpumesh localnet` runs use this market without --market.
        state.remember_market(&addrs.market)?;
    }
    match deployed {
        Deployed::Created { addrs, signature } => ctx.print(
            json!({"created": true, "market": addrs.market.to_string(), "mint": addrs.mint.to_string(), "signature": signature}),
            || {
                format!(
                    "created market {}\n  mint {}\n  authority {}\n  stake vault {}\n  escrow vault {}\nsignature: {signature}",
                    addrs.market,
                    addrs.mint,
                    authority.pubkey(),
                    addrs.stake_vault,
                    addrs.escrow_vault
                )
            },
        ),
        Deployed::Existing {
            addrs,
            market,
            differences,
        } => ctx.print(
            json!({"created": false, "market": addrs.market.to_string(), "mint": addrs.mint.to_string(), "authority": market.authority.to_string(), "differences": differences}),
            || {
                let mut s = format!(
                    "market {} exists (authority {}); nothing changed",
                    addrs.market, market.authority
                );
                for d in &differences {
                    s.push_str(&format!(
                        "\n  differs from the config: {d} (use `gpumesh market update`)"
                    ));
                }
                s
            },
        ),
    }
    Ok(())
}

fn show(ctx: &mut Ctx) -> Result<(), CliError> {
    let m = ctx.market()?;
    let a = &m.addrs;
    let k = &m.market;
    let balances = [
        ("stake_vault", ctx.chain.token_balance(&a.stake_vault)?),
        ("escrow_vault", ctx.chain.token_balance(&a.escrow_vault)?),
        (
            "treasury_vault",
            ctx.chain.token_balance(&a.treasury_vault)?,
        ),
        ("rewards_vault", ctx.chain.token_balance(&a.rewards_vault)?),
    ];
    let p = &k.params;
    ctx.print(
        json!({
            "market": a.market.to_string(),
            "mint": a.mint.to_string(),
            "decimals": m.decimals,
            "authority": k.authority.to_string(),
            "orchestrator": k.orchestrator.to_string(),
            "paused": k.paused,
            "params": {
                "protocol_fee_bps": p.protocol_fee_bps,
                "min_stake_per_gpu": p.min_stake_per_gpu,
                "unbonding_period": p.unbonding_period,
                "max_receipts_per_settle": p.max_receipts_per_settle,
                "max_receipt_age": p.max_receipt_age,
                "heartbeat_grace": p.heartbeat_grace,
                "offline_slash_bps": p.offline_slash_bps,
                "fraud_slash_bps": p.fraud_slash_bps,
                "breaker_band_bps": p.breaker_band_bps,
                "buyer_exit_window": p.buyer_exit_window,
            },
            "total_stake": k.total_stake,
            "total_unbonding": k.total_unbonding,
            "total_escrow": k.total_escrow,
            "total_claimable": k.total_claimable,
            "treasury_balance": k.treasury_balance,
            "workers": k.workers,
            "open_orders": k.open_orders,
            "active_leases": k.active_leases,
            "vaults": balances.iter().map(|(n, v)| (n.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        }),
        || market_text(&m, &balances),
    );
    Ok(())
}

fn market_text(m: &MarketView, balances: &[(&str, u64)]) -> String {
    let k: &Market = &m.market;
    let p = &k.params;
    let mut s = format!(
        "market {}\n  mint {} ({} decimals)\n  authority {}\n  orchestrator {}\n  paused {}\n",
        m.addrs.market, m.addrs.mint, m.decimals, k.authority, k.orchestrator, k.paused
    );
    s.push_str(&format!(
        "  protocol fee {} bps, min stake per GPU {}, unbonding {} s, heartbeat grace {} s, buyer's exit window {} s\n",
        p.protocol_fee_bps,
        m.tokens(p.min_stake_per_gpu),
        p.unbonding_period,
        p.heartbeat_grace,
        p.buyer_exit_window
    ));
    s.push_str(&format!(
        "  workers {}, open orders {}, active leases {}\n  stake {} (+{} unbonding), escrow {}, unclaimed earnings {}, treasury {}\n",
        k.workers,
        k.open_orders,
        k.active_leases,
        m.tokens(k.total_stake),
        m.tokens(k.total_unbonding),
        m.tokens(k.total_escrow),
        m.tokens(k.total_claimable),
        m.tokens(k.treasury_balance)
    ));
    s.push_str("  vaults:");
    for (name, v) in balances {
        s.push_str(&format!(" {name} {}", m.tokens(*v)));
    }
    s
}

fn parse_key(flag: &str, text: &str) -> Result<Pubkey, CliError> {
    Pubkey::from_str(text.trim())
        .map_err(|_| CliError::Input(format!("{flag} {text:?} is not a base58 address")))
}

fn update(ctx: &mut Ctx, args: &UpdateArgs) -> Result<(), CliError> {
    let authority = ctx.wallet()?;
    let m = ctx.market()?;
    let mut params_config = match &args.params {
        Some(path) => toml::from_str::<ParamsConfig>(&read_text(path)?)
            .map_err(|e| CliError::Input(format!("{}: {e}", path.display())))?,
        None => ParamsConfig::default(),
    };
    if args.protocol_fee_bps.is_some() {
        params_config.protocol_fee_bps = args.protocol_fee_bps;
    }
    if let Some(t) = &args.min_stake_per_gpu {
        m.parse("--min-stake-per-gpu", t)?;
        params_config.min_stake_per_gpu = Some(t.clone());
    }
    let params = params_config.apply(m.market.params, m.decimals)?;
    let update = UpdateMarketArgs {
        params: (params != m.market.params).then_some(params),
        orchestrator: args
            .orchestrator
            .as_deref()
            .map(|o| parse_key("--orchestrator", o))
            .transpose()?,
        new_authority: args
            .new_authority
            .as_deref()
            .map(|o| parse_key("--new-authority", o))
            .transpose()?,
        paused: if args.pause {
            Some(true)
        } else if args.resume {
            Some(false)
        } else {
            None
        },
        reference_prices: None,
    };
    if update.params.is_none()
        && update.orchestrator.is_none()
        && update.new_authority.is_none()
        && update.paused.is_none()
    {
        return Err(CliError::Input(
            "nothing to change: pass --params, --protocol-fee-bps, --min-stake-per-gpu, --orchestrator, --new-authority, --pause or --resume".into(),
        ));
    }
    if m.market.authority != authority.pubkey() {
        return Err(CliError::Input(format!(
            "{} is not this market's authority ({}); sign with the authority's keypair (-k)",
            authority.pubkey(),
            m.market.authority
        )));
    }
    ctx.require_sol(&authority.pubkey(), 0)?;
    let outcome = ctx.send(
        "update market",
        &[ix::update_market(&m.addrs, &authority.pubkey(), update)],
        &authority,
        &[],
    )?;
    ctx.report(
        "market update",
        &outcome,
        json!({"market": m.addrs.market.to_string()}),
        format!("updated market {}", m.addrs.market),
    );
    Ok(())
}
