//! `gpumesh market`: the operator's commands. `init` creates a market from a TOML file (the same
//! file and code path as the migrations binary), `show` prints it, `update` tunes it (parameters,
//! reference prices, the orchestrator key, the authority, pause and resume), `fund-rewards` fills
//! the suppliers' emission vault and `withdraw-treasury` takes the protocol's fees out.

use crate::context::{
    ClusterArgs, Ctx, Env, LocalDirArgs, MarketView, Reading, Signed, WalletArgs,
};
use crate::error::CliError;
use crate::output;
use anchor_lang::prelude::Pubkey;
use gpumesh_client::Signer;
use gpumesh_client::chain::{Chain, ChainExt};
use gpumesh_client::program::instructions::UpdateMarketArgs;
use gpumesh_client::program::state::Market;
use gpumesh_client::{ix, token};
use gpumesh_migrations::deploy::{self, Deployed, MarketConfig, ParamsConfig};
use gpumesh_protocol::GpuClass;
use serde_json::json;
use std::path::PathBuf;
use std::str::FromStr;

#[derive(clap::Subcommand)]
pub enum MarketCommand {
    /// Create the market for a payment mint from a TOML file of parameters.
    Init(InitArgs),
    /// Print a market: parameters, reference prices, emission, totals and vault balances.
    Show(Reading),
    /// Check the market's books from the chain alone: each vault holds exactly what the
    /// accounts say it owes, and the market's totals agree with its workers, orders and leases.
    /// Exits 1 naming every rule that does not hold. Read one listing after another: audit a
    /// quiet market, or repeat.
    Audit(Reading),
    /// Change a market's parameters, reference prices, orchestrator key, authority or paused
    /// flag (authority only).
    Update(UpdateArgs),
    /// Put tokens (whole tokens) from the authority's token account into the rewards vault,
    /// which pays the suppliers' emission (authority only).
    FundRewards {
        /// Tokens to add, in whole tokens (e.g. 1000 or 12.5).
        amount: String,
        #[command(flatten)]
        signed: Signed,
    },
    /// Withdraw accrued protocol fees from the treasury vault (authority only).
    WithdrawTreasury {
        /// Tokens to withdraw, in whole tokens, or `all`.
        amount: String,
        /// The wallet whose token account receives them (created if missing) [default: the
        /// authority's].
        #[arg(long, value_name = "ADDRESS")]
        to: Option<String>,
        #[command(flatten)]
        signed: Signed,
    },
}

#[derive(clap::Args)]
pub struct InitArgs {
    /// The market's TOML file (mint, orchestrator, [params], [reference_prices], [emission]; see
    /// migrations/market.example.toml).
    #[arg(env = "GPUMESH_MARKET_CONFIG", value_name = "FILE")]
    file: PathBuf,
    /// Succeed without changes when the market exists (report it instead of failing).
    #[arg(long)]
    if_missing: bool,
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    wallet: WalletArgs,
    #[command(flatten)]
    local: LocalDirArgs,
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
    /// Set a class's reference price with its unit, per GPU-hour or per GPU-second (0/h =
    /// unknown, seeded by the next lease), e.g. `--reference-price h100=2.88/h` or
    /// `h100=0.0008/s`; repeat for several classes. The circuit breaker caps lease prices at the
    /// reference times (1 + band).
    #[arg(long, value_name = "CLASS=PRICE")]
    reference_price: Vec<String>,
    /// Rotate the orchestrator key: from now on only this key assigns, settles, closes leases and
    /// slashes in this market; the old key can do nothing more (an address or a keypair file).
    #[arg(long, value_name = "KEY")]
    orchestrator: Option<String>,
    /// Hand the market to another authority (an address or a keypair file): this wallet can do
    /// nothing more in it.
    #[arg(long, value_name = "KEY")]
    new_authority: Option<String>,
    /// Stop new orders and leases (running leases, settlement and every exit go on).
    #[arg(long, conflicts_with = "resume")]
    pause: bool,
    /// Take new orders and leases again.
    #[arg(long)]
    resume: bool,
    #[command(flatten)]
    signed: Signed,
}

pub fn run(env: &Env, cmd: &MarketCommand) -> Result<(), CliError> {
    match cmd {
        MarketCommand::Init(args) => init(
            &mut env
                .connect(&args.cluster)?
                .with_wallet(&args.wallet)
                .with_local_dir(&args.local),
            args,
        ),
        MarketCommand::Show(r) => show(&mut env.connect(&r.cluster)?.with_market(&r.market)),
        MarketCommand::Audit(r) => audit(&mut env.connect(&r.cluster)?.with_market(&r.market)),
        MarketCommand::Update(args) => update(&mut signed(env, &args.signed)?, args),
        MarketCommand::FundRewards { amount, signed: s } => {
            fund_rewards(&mut signed(env, s)?, amount)
        }
        MarketCommand::WithdrawTreasury {
            amount,
            to,
            signed: s,
        } => withdraw_treasury(&mut signed(env, s)?, amount, to.as_deref()),
    }
}

fn signed(env: &Env, s: &Signed) -> Result<Ctx, CliError> {
    Ok(env
        .connect(&s.cluster)?
        .with_wallet(&s.wallet)
        .with_market(&s.market))
}

fn read_text(path: &PathBuf) -> Result<String, CliError> {
    std::fs::read_to_string(path)
        .map_err(|e| CliError::Input(format!("cannot read {}: {e}", path.display())))
}

fn init(ctx: &mut Ctx, args: &InitArgs) -> Result<(), CliError> {
    let config = MarketConfig::from_toml(&read_text(&args.file)?)?;
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
    // On the chain `gpumesh localnet` runs, later commands use a default market without
    // --market: the first one created there. A second market (another mint) does not take
    // over while the first is on chain; after a restart the first re-created becomes it.
    let mut default_market = None;
    if gpumesh_client::cluster::is_local(&ctx.url)
        && let Ok(state) = gpumesh_localnet::LocalState::open(&ctx.localnet_dir()?)
    {
        let keep = match state.market() {
            Some(current) if current != addrs.market => ctx.chain.account(&current)?.is_some(),
            _ => false,
        };
        if !keep {
            state.remember_market(&addrs.market)?;
        }
        default_market = state.market();
    }
    let default_note = match default_market {
        Some(d) if d == addrs.market => {
            "\nlater commands on this local chain use it without --market".to_string()
        }
        Some(d) => format!(
            "\nthe local chain's default market stays {d}: pass --market {} (or set GPUMESH_MARKET) to use this one",
            addrs.market
        ),
        None => String::new(),
    };
    let is_default = default_market.map(|d| d == addrs.market);
    match deployed {
        Deployed::Created { addrs, signature } => ctx.print(
            json!({"created": true, "market": addrs.market.to_string(), "mint": addrs.mint.to_string(), "signature": signature, "local_default": is_default}),
            || {
                format!(
                    "created market {}\n  mint {}\n  authority {}\n  stake vault {}\n  escrow vault {}\nsignature: {signature}{default_note}",
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
            json!({"created": false, "market": addrs.market.to_string(), "mint": addrs.mint.to_string(), "authority": market.authority.to_string(), "differences": differences, "local_default": is_default}),
            || {
                let mut s = format!(
                    "market {} exists (authority {}); nothing changed{default_note}",
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
    let e = &k.emission;
    let references = reference_prices(k);
    ctx.print(
        m.with_units(json!({
            "market": a.market.to_string(),
            "authority": k.authority.to_string(),
            "orchestrator": k.orchestrator.to_string(),
            "paused": k.paused,
            "params": {
                "protocol_fee_bps": p.protocol_fee_bps,
                "min_stake_per_gpu": m.amount(p.min_stake_per_gpu),
                "unbonding_period": p.unbonding_period,
                "max_receipts_per_settle": p.max_receipts_per_settle,
                "max_receipt_age": p.max_receipt_age,
                "heartbeat_grace": p.heartbeat_grace,
                "offline_slash_bps": p.offline_slash_bps,
                "fraud_slash_bps": p.fraud_slash_bps,
                "slash_treasury_share_bps": p.slash_treasury_share_bps,
                "jail_period": p.jail_period,
                "breaker_band_bps": p.breaker_band_bps,
                "reference_smoothing_bps": p.reference_smoothing_bps,
                "reference_update_interval": p.reference_update_interval,
                "buyer_exit_window": p.buyer_exit_window,
            },
            "reference_prices": references.iter().map(|(class, price, updated)| json!({
                "class": class.name(),
                "price_per_gpu_second": m.amount(*price),
                "price_per_gpu_hour": m.per_hour(*price),
                "breaker_cap_per_gpu_second": cap_of(k, *class).map(|c| m.amount(c)),
                "breaker_cap_per_gpu_hour": cap_of(k, *class).map(|c| m.per_hour(c)),
                "updated_ts": updated,
                "updated_at": output::date_json(*updated),
            })).collect::<Vec<_>>(),
            "emission": {
                "total": m.amount(e.total),
                "start_ts": e.start_ts,
                "start_at": output::date_json(e.start_ts),
                "duration": e.duration,
                "funded": m.amount(e.funded),
                "distributed": m.amount(e.distributed),
                "undistributed": m.amount(e.undistributed),
                "unfunded": m.amount(e.unfunded),
                "paid": m.amount(e.paid),
            },
            "total_stake": m.amount(k.total_stake),
            "total_unbonding": m.amount(k.total_unbonding),
            "total_escrow": m.amount(k.total_escrow),
            "total_claimable": m.amount(k.total_claimable),
            "treasury_balance": m.amount(k.treasury_balance),
            "workers": k.workers,
            "open_orders": k.open_orders,
            "active_leases": k.active_leases,
            "vaults": balances.iter().map(|(n, v)| (n.to_string(), m.amount(*v))).collect::<serde_json::Map<_, _>>(),
        })),
        || market_text(&m, &balances),
    );
    Ok(())
}

fn audit(ctx: &mut Ctx) -> Result<(), CliError> {
    let m = ctx.market()?;
    let a = gpumesh_client::audit::audit(&ctx.chain, &m.addrs.market)?;
    if !a.is_sound() {
        return Err(CliError::Input(format!(
            "the books of market {} do not add up (base units):\n  {}",
            a.market,
            a.violations.join("\n  ")
        )));
    }
    let owed = |v: u128| u64::try_from(v).map_or_else(|_| json!(v.to_string()), |v| m.amount(v));
    ctx.print(
        m.with_units(json!({
            "market": a.market,
            "sound": true,
            "workers": a.workers,
            "orders": a.orders,
            "leases": a.leases,
            "vaults": {
                "stake": {"holds": m.amount(a.stake_vault), "owed": owed(a.stake_owed)},
                "escrow": {"holds": m.amount(a.escrow_vault), "owed": owed(a.escrow_owed)},
                "treasury": {"holds": m.amount(a.treasury_vault), "owed": owed(a.treasury_owed)},
                "rewards": {"holds": m.amount(a.rewards_vault), "owed": owed(a.rewards_owed)},
            },
        })),
        || {
            let d = m.decimals;
            let f = |v: u64| gpumesh_client::amount::format(v, d);
            format!(
                "market {}: the books add up ({} workers, {} orders, {} live leases)\n  stake vault {} = stake + unbonding\n  escrow vault {} = escrow + unclaimed earnings\n  treasury vault {} = the treasury\n  rewards vault {} = emission funded - paid",
                a.market,
                a.workers,
                a.orders,
                a.leases,
                f(a.stake_vault),
                f(a.escrow_vault),
                f(a.treasury_vault),
                f(a.rewards_vault)
            )
        },
    );
    Ok(())
}

/// The circuit breaker's cap for `class` (reference × (1 + band)), the program's own rule.
fn cap_of(k: &Market, class: GpuClass) -> Option<u64> {
    gpumesh_client::program::instructions::breaker_cap(k, class.code())
        .ok()
        .flatten()
}

/// The classes with a known reference price: (class, base units per GPU-second, last moved).
fn reference_prices(k: &Market) -> Vec<(GpuClass, u64, i64)> {
    GpuClass::ALL
        .iter()
        .filter_map(|c| {
            let i = usize::from(c.code());
            let price = *k.reference_prices.get(i)?;
            let updated = k.reference_updated_ts.get(i).copied().unwrap_or(0);
            (price > 0).then_some((*c, price, updated))
        })
        .collect()
}

fn market_text(m: &MarketView, balances: &[(&str, u64)]) -> String {
    let k: &Market = &m.market;
    let p = &k.params;
    let mut s = format!(
        "market {}\n  mint {} ({} decimals)\n  authority {}\n  orchestrator {}\n  {}\n",
        m.addrs.market,
        m.addrs.mint,
        m.decimals,
        k.authority,
        k.orchestrator,
        if k.paused {
            "PAUSED: no new orders or leases"
        } else {
            "open for orders"
        }
    );
    s.push_str(&format!(
        "  protocol fee {} bps, min stake per GPU {}, unbonding {}, heartbeat grace {}, buyer's exit window {}\n",
        p.protocol_fee_bps,
        m.tokens(p.min_stake_per_gpu),
        output::duration(p.unbonding_period.max(0) as u64),
        output::duration(p.heartbeat_grace.max(0) as u64),
        output::duration(p.buyer_exit_window.max(0) as u64)
    ));
    s.push_str(&format!(
        "  slashes: offline {} bps, fraud {} bps ({} bps of each to the treasury), jail {}; breaker band {} bps\n",
        p.offline_slash_bps,
        p.fraud_slash_bps,
        p.slash_treasury_share_bps,
        output::duration(p.jail_period.max(0) as u64),
        p.breaker_band_bps
    ));
    let references = reference_prices(k);
    if references.is_empty() {
        s.push_str("  reference prices: none yet (the first lease of a class seeds it)\n");
    } else {
        s.push_str("  reference prices (the circuit breaker refuses a lease above its cap):\n");
        for (class, price, _) in &references {
            let cap = match cap_of(k, *class) {
                Some(c) => format!("; cap {}/h", crate::price::per_gpu_hour(c, m.decimals)),
                None => String::new(),
            };
            s.push_str(&format!("    {class} {}{cap}\n", m.price_text(*price)));
        }
    }
    let e = &k.emission;
    if e.total > 0 {
        s.push_str(&format!(
            "  emission: {} over {} from {}; funded {}, paid {}\n",
            m.tokens(e.total),
            output::duration(e.duration.max(0) as u64),
            output::date(e.start_ts),
            m.tokens(e.funded),
            m.tokens(e.paid)
        ));
    }
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

/// A key given as an address or as a keypair file.
pub fn key_or_file(flag: &str, text: &str) -> Result<Pubkey, CliError> {
    if let Ok(key) = Pubkey::from_str(text.trim()) {
        return Ok(key);
    }
    let path = std::path::Path::new(text);
    if path.exists() {
        return Ok(gpumesh_client::cluster::read_keypair(path)?.pubkey());
    }
    Err(CliError::Input(format!(
        "{flag} {text:?} is neither an address nor a keypair file"
    )))
}

/// The wallet, which must be the market's authority (checked before sending).
fn authority_of(ctx: &Ctx, m: &MarketView) -> Result<gpumesh_client::Keypair, CliError> {
    let authority = ctx.wallet()?;
    if m.market.authority != authority.pubkey() {
        return Err(CliError::Input(format!(
            "{} is not this market's authority ({}); sign with the authority's keypair (-k)",
            authority.pubkey(),
            m.market.authority
        )));
    }
    Ok(authority)
}

/// `CLASS=PRICE` pairs over the market's current reference-price table.
fn reference_table(m: &MarketView, pairs: &[String]) -> Result<Option<[u64; 16]>, CliError> {
    if pairs.is_empty() {
        return Ok(None);
    }
    let mut table = m.market.reference_prices;
    for pair in pairs {
        let (class, price) = pair.split_once('=').ok_or_else(|| {
            CliError::Input(format!(
                "--reference-price {pair:?}: write CLASS=PRICE with the price's unit, e.g. h100=2.88/h (whole tokens per GPU-hour) or h100=0.0008/s"
            ))
        })?;
        let class = GpuClass::from_str(class)
            .map_err(|e| CliError::Input(format!("--reference-price {pair:?}: {e}")))?;
        let price = crate::price::parse_price_arg(price)
            .map_err(|e| CliError::Input(format!("--reference-price {class}: {e}")))?;
        let slot = table
            .get_mut(usize::from(class.code()))
            .ok_or_else(|| CliError::Input(format!("class {class} has no price slot")))?;
        *slot = m.price(&format!("--reference-price {class}"), &price)?;
    }
    Ok(Some(table))
}

fn update(ctx: &mut Ctx, args: &UpdateArgs) -> Result<(), CliError> {
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
    let reference_prices = reference_table(&m, &args.reference_price)?;
    let update = UpdateMarketArgs {
        params: (params != m.market.params).then_some(params),
        orchestrator: args
            .orchestrator
            .as_deref()
            .map(|o| key_or_file("--orchestrator", o))
            .transpose()?,
        new_authority: args
            .new_authority
            .as_deref()
            .map(|o| key_or_file("--new-authority", o))
            .transpose()?,
        paused: if args.pause {
            Some(true)
        } else if args.resume {
            Some(false)
        } else {
            None
        },
        reference_prices: reference_prices.filter(|t| *t != m.market.reference_prices),
    };
    if update.params.is_none()
        && update.orchestrator.is_none()
        && update.new_authority.is_none()
        && update.paused.is_none()
        && update.reference_prices.is_none()
    {
        return Err(CliError::Input(
            "nothing to change: pass --params, --protocol-fee-bps, --min-stake-per-gpu, --reference-price, --orchestrator, --new-authority, --pause or --resume (values equal to the market's change nothing)".into(),
        ));
    }
    if let Some(params) = &update.params {
        // The program's own bounds, checked before sending.
        params.validate().map_err(|_| {
            CliError::Input(
                "these parameters are outside the program's bounds (fee <= 2000 bps, unbonding 1 h to 90 d, receipt age 60 s to 7 d, heartbeat grace 1 to 600 s, offline slash <= 5000 bps, breaker band 1000 to 100000 bps, smoothing 1 to 5000 bps, exit window 10 to 3600 s; see docs/ARCHITECTURE.md)".into(),
            )
        })?;
    }
    for (flag, key) in [
        ("--orchestrator", update.orchestrator),
        ("--new-authority", update.new_authority),
    ] {
        if key == Some(Pubkey::default()) {
            return Err(CliError::Input(format!(
                "{flag} {}: the all-zero key has no private key; nobody could ever use it",
                Pubkey::default()
            )));
        }
    }
    let authority = authority_of(ctx, &m)?;
    ctx.require_sol(&authority.pubkey(), 0)?;
    let outcome = ctx.send(
        "update market",
        &[ix::update_market(
            &m.addrs,
            &authority.pubkey(),
            update.clone(),
        )],
        &authority,
        &[],
    )?;
    let after: Market = ctx.chain.fetch(&m.addrs.market)?;
    let mut changed = Vec::new();
    if update.params.is_some() {
        changed.push("parameters".to_string());
    }
    if let Some(o) = update.orchestrator {
        changed.push(format!("orchestrator {} -> {o}", m.market.orchestrator));
    }
    if let Some(a) = update.new_authority {
        changed.push(format!("authority {} -> {a}", m.market.authority));
    }
    if let Some(p) = update.paused {
        changed.push(if p { "paused" } else { "resumed" }.to_string());
    }
    if update.reference_prices.is_some() {
        changed.push("reference prices".to_string());
    }
    ctx.report(
        "market update",
        &outcome,
        json!({
            "market": m.addrs.market.to_string(),
            "changed": changed,
            "orchestrator": after.orchestrator.to_string(),
            "authority": after.authority.to_string(),
            "paused": after.paused,
        }),
        format!("updated market {}: {}", m.addrs.market, changed.join(", ")),
    );
    Ok(())
}

fn fund_rewards(ctx: &mut Ctx, amount: &str) -> Result<(), CliError> {
    let m = ctx.market()?;
    let amount = m.parse("rewards amount", amount)?;
    if amount == 0 {
        return Err(CliError::Input("fund more than 0 tokens".into()));
    }
    let e = &m.market.emission;
    if e.total == 0 {
        return Err(CliError::Input(format!(
            "market {} has no emission schedule (its [emission] was not set at creation), so there are no rewards to fund",
            m.addrs.market
        )));
    }
    let room = e.total.saturating_sub(e.unfunded).saturating_sub(e.funded);
    if amount > room {
        return Err(CliError::Input(format!(
            "the emission schedule can take at most {} more (total {}, funded {}, unfunded {}); fund at most that",
            m.tokens(room),
            m.tokens(e.total),
            m.tokens(e.funded),
            m.tokens(e.unfunded)
        )));
    }
    let authority = authority_of(ctx, &m)?;
    let from = ctx.require_tokens(&m, &authority.pubkey(), amount)?;
    ctx.require_sol(&authority.pubkey(), 0)?;
    let outcome = ctx.send(
        "fund rewards",
        &[ix::fund_rewards(
            &m.addrs,
            &authority.pubkey(),
            &from,
            amount,
        )],
        &authority,
        &[],
    )?;
    let after: Market = ctx.chain.fetch(&m.addrs.market)?;
    let vault = ctx.chain.token_balance(&m.addrs.rewards_vault)?;
    ctx.report(
        "market fund-rewards",
        &outcome,
        m.with_units(json!({
            "market": m.addrs.market.to_string(),
            "amount": m.amount(amount),
            "funded": m.amount(after.emission.funded),
            "rewards_vault": m.amount(vault),
        })),
        format!(
            "funded {} of rewards; {} funded in all, rewards vault {}",
            m.tokens(amount),
            m.tokens(after.emission.funded),
            m.tokens(vault)
        ),
    );
    Ok(())
}

fn withdraw_treasury(ctx: &mut Ctx, amount: &str, to: Option<&str>) -> Result<(), CliError> {
    let m = ctx.market()?;
    let available = m.market.treasury_balance;
    let amount = if amount.trim() == "all" {
        available
    } else {
        m.parse("withdraw amount", amount)?
    };
    if amount == 0 || amount > available {
        return Err(CliError::Input(format!(
            "the treasury holds {} of fees; withdraw more than 0 and at most that (or `all`)",
            m.tokens(available)
        )));
    }
    let authority = authority_of(ctx, &m)?;
    let owner = match to {
        Some(t) => key_or_file("--to", t)?,
        None => authority.pubkey(),
    };
    let account = token::ata(&owner, &m.addrs.mint);
    ctx.require_sol(&authority.pubkey(), 0)?;
    let outcome = ctx.send(
        "withdraw treasury",
        &[
            token::create_ata(&authority.pubkey(), &owner, &m.addrs.mint),
            ix::withdraw_treasury(&m.addrs, &authority.pubkey(), &account, amount),
        ],
        &authority,
        &[],
    )?;
    let left = ctx.chain.fetch::<Market>(&m.addrs.market)?.treasury_balance;
    ctx.report(
        "market withdraw-treasury",
        &outcome,
        m.with_units(json!({
            "market": m.addrs.market.to_string(),
            "amount": m.amount(amount),
            "to": owner.to_string(),
            "token_account": account.to_string(),
            "treasury_balance": m.amount(left),
        })),
        format!(
            "withdrew {} of fees to {owner} (token account {account}); {} left in the treasury",
            m.tokens(amount),
            m.tokens(left)
        ),
    );
    Ok(())
}
