//! `gpumesh worker`: the supplier's commands. The owner wallet (`--keypair`) registers a machine
//! with a hardware claim and a node key (the hot key on the GPU machine), changes its price,
//! claim or node key, bonds stake, unbonds it, withdraws it after the unbonding period, claims
//! earnings and emission rewards, leaves jail, closes the record, and reads its status.

use crate::context::{Ctx, Env, MarketView, Signed};
use crate::error::CliError;
use crate::market::key_or_file;
use crate::output;
use crate::price::PriceArg;
use anchor_lang::prelude::Pubkey;
use gpumesh_client::chain::{Chain, ChainExt};
use gpumesh_client::program::instructions::{RegisterWorkerArgs, UpdateWorkerArgs};
use gpumesh_client::program::state::{HardwareClaim, Lease, Worker};
use gpumesh_client::{Keypair, Signer, filters, ix, token};
use gpumesh_protocol::{GpuClass, Region};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::str::FromStr;

/// Most GPUs one worker claims (the program's `HardwareClaim::validate`).
const MAX_WORKER_GPUS: u16 = 1_024;
const YEAR: u128 = gpumesh_client::stake_yield::YEAR_SECONDS as u128;

#[derive(clap::Subcommand)]
pub enum WorkerCommand {
    /// Register a machine: its hardware claim, node key and asking price.
    Register(RegisterArgs),
    /// Change the asking price (future leases), the hardware claim or the node key (only while
    /// no lease runs).
    Update(UpdateArgs),
    /// Bond stake from the wallet's token account.
    Stake {
        /// Tokens to bond, in whole tokens (e.g. 100 or 12.5).
        amount: String,
        #[command(flatten)]
        signed: Signed,
    },
    /// Start unbonding stake; it can be withdrawn after the market's unbonding period.
    Unstake {
        /// Tokens to unbond, in whole tokens; at most the bonded stake not locked by leases.
        amount: String,
        #[command(flatten)]
        signed: Signed,
    },
    /// Withdraw stake whose unbonding period has passed.
    Withdraw(Signed),
    /// Move settled earnings to the wallet's token account.
    Claim(Signed),
    /// Move emission rewards (earned by settled GPU-seconds) to the wallet's token account.
    ClaimRewards(Signed),
    /// Leave jail after the jail period, with stake back at the minimum for every GPU.
    Unjail(Signed),
    /// Close the worker record (its rent comes back): only with nothing leased, staked,
    /// unbonding or unclaimed, and not jailed.
    Close(Signed),
    /// Run this machine's worker daemon until Ctrl-C or SIGTERM: connect to the market's
    /// orchestrator, prove the machine's class, run leased jobs in containers, sign receipts.
    Run(RunArgs),
    /// A worker's status: stake (bonded, locked by leases, unbonding and when it unlocks),
    /// earnings, rewards, jail, its live leases and the return its stake earned.
    #[command(visible_alias = "show")]
    Status {
        /// The owner wallet's address [default: --keypair's].
        #[arg(long, value_name = "ADDRESS")]
        owner: Option<String>,
        #[command(flatten)]
        signed: Signed,
    },
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// The daemon's TOML file: state and work directories, the market's floor, the hardware
    /// claim, the container runtime (see the worker crate's README); without it, the defaults.
    #[arg(value_name = "CONFIG")]
    file: Option<PathBuf>,
    /// The orchestrator: its worker gateway (ws://…/v1/worker), or the service's http:// URL.
    #[arg(long, env = "GPUMESH_ORCHESTRATOR", value_name = "URL")]
    orchestrator: Option<String>,
    /// The node key file (the only key a worker machine needs).
    #[arg(long, value_name = "FILE")]
    node_key: Option<PathBuf>,
    /// The worker account [default: the wallet's in this market].
    #[arg(long, value_name = "ADDRESS")]
    worker: Option<String>,
    #[command(flatten)]
    signed: Signed,
}

/// The gateway URL from what a user may give: the service's http(s) URL becomes its
/// ws(s)://…/v1/worker endpoint; a ws(s) URL is taken as it is.
fn gateway_url(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    let base = if let Some(rest) = url.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if let Some(rest) = url.strip_prefix("https://") {
        format!("wss://{rest}")
    } else {
        return url.to_string();
    };
    format!("{base}/v1/worker")
}

fn run_daemon(env: &Env, args: &RunArgs) -> Result<(), CliError> {
    use gpumesh_worker::daemon::{self, config};
    let file = match &args.file {
        Some(path) => config::FileConfig::read(path).map_err(|e| CliError::Input(e.to_string()))?,
        None => config::FileConfig::default(),
    };
    let worker = match (&args.worker, &file.worker) {
        (Some(w), _) => Some(w.clone()),
        (None, Some(_)) => None,
        (None, None) => {
            // Only where the owner's wallet is on this machine (a test network, one operator).
            let ctx = env
                .connect(&args.signed.cluster)?
                .with_wallet(&args.signed.wallet)
                .with_market(&args.signed.market);
            let owner = ctx.wallet()?.pubkey();
            Some(ctx.market()?.addrs.worker(&owner).to_string())
        }
    };
    // The deployment this CLI is built for, unless the file names another.
    let program_id = file
        .program_id
        .is_none()
        .then(|| gpumesh_client::program::ID.to_string());
    let config = config::Config::resolve(
        file,
        config::Overrides {
            orchestrator: args.orchestrator.as_deref().map(gateway_url),
            node_key: args.node_key.clone(),
            worker,
            program_id,
        },
    )
    .map_err(|e| CliError::Input(e.to_string()))?;
    crate::orchestrator::init_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Input(format!("cannot start the runtime: {e}")))?;
    runtime
        .block_on(daemon::run(config, crate::orchestrator::shutdown()))
        .map_err(|e| CliError::Input(e.to_string()))
}

#[derive(clap::Args)]
pub struct RegisterArgs {
    /// GPU class by name (h100, a100-80gb, rtx4090, …; `cpu` for GPU-less test networks).
    #[arg(long)]
    class: String,
    /// Number of GPUs in the machine (1 to 1024).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=i64::from(MAX_WORKER_GPUS)))]
    gpus: u16,
    /// VRAM per GPU with its unit, e.g. 80GiB or 81920MiB [default: the class's datasheet
    /// figure, its "GB" read as GiB: an H100's 80 GB is 80 GiB = 81920 MiB].
    #[arg(long, value_parser = parse_vram_arg)]
    vram: Option<u32>,
    /// Memory bandwidth in GB/s [default: the class's datasheet figure].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    bandwidth_gbps: Option<u32>,
    /// Region by name (us-east, eu-west, …).
    #[arg(long)]
    region: String,
    /// Asking price with its unit: whole tokens per GPU-hour (`1.08/h`) or per GPU-second
    /// (`0.0003/s`). The chain counts base units per GPU-second, so an hourly price must be a
    /// whole number of them (3,600 x the per-second price); an inexact one is refused with the
    /// nearest exact prices.
    #[arg(long, value_parser = crate::price::parse_price_arg, value_name = "PRICE/h|PRICE/s")]
    price: PriceArg,
    /// The node key: an address, or a keypair file on the GPU machine; must not be the owner.
    #[arg(long, env = "GPUMESH_NODE_KEY")]
    node_key: String,
    #[command(flatten)]
    signed: Signed,
}

#[derive(clap::Args)]
pub struct UpdateArgs {
    /// New asking price with its unit, `1.08/h` or `0.0003/s` (running leases keep theirs).
    #[arg(long, value_parser = crate::price::parse_price_arg, value_name = "PRICE/h|PRICE/s")]
    price: Option<PriceArg>,
    /// New node key (an address or a keypair file).
    #[arg(long)]
    node_key: Option<String>,
    /// New GPU class; VRAM and bandwidth then default to its datasheet unless given.
    #[arg(long)]
    class: Option<String>,
    /// New GPU count (1 to 1024).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=i64::from(MAX_WORKER_GPUS)))]
    gpus: Option<u16>,
    /// New VRAM per GPU with its unit (80GiB, 81920MiB).
    #[arg(long, value_parser = parse_vram_arg)]
    vram: Option<u32>,
    /// New memory bandwidth in GB/s.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    bandwidth_gbps: Option<u32>,
    /// New region.
    #[arg(long)]
    region: Option<String>,
    #[command(flatten)]
    signed: Signed,
}

pub fn parse_vram_arg(text: &str) -> Result<u32, String> {
    match output::parse_vram(text) {
        Ok(0) => Err("VRAM must be more than 0".into()),
        Ok(mib) => Ok(mib),
        Err(e) => Err(e.to_string()),
    }
}

/// The class's datasheet VRAM in MiB, its "GB" read as GiB (80 GB → 81,920 MiB): the unit
/// drivers and `nvidia-smi` report, so a buyer's 80GiB filter matches every H100.
pub fn datasheet_vram_mib(class: GpuClass) -> u32 {
    (class.spec().vram_gb.round() as u32).saturating_mul(1_024)
}

fn datasheet_bandwidth(class: GpuClass) -> u32 {
    class.spec().memory_bandwidth_gbs.round() as u32
}

pub fn run(env: &Env, cmd: &WorkerCommand) -> Result<(), CliError> {
    let connect = |s: &Signed| -> Result<Ctx, CliError> {
        Ok(env
            .connect(&s.cluster)?
            .with_wallet(&s.wallet)
            .with_market(&s.market))
    };
    match cmd {
        WorkerCommand::Register(args) => register(&mut connect(&args.signed)?, args),
        WorkerCommand::Update(args) => update(&mut connect(&args.signed)?, args),
        WorkerCommand::Stake { amount, signed } => stake(&mut connect(signed)?, amount),
        WorkerCommand::Unstake { amount, signed } => unstake(&mut connect(signed)?, amount),
        WorkerCommand::Withdraw(s) => withdraw(&mut connect(s)?),
        WorkerCommand::Claim(s) => claim(&mut connect(s)?),
        WorkerCommand::ClaimRewards(s) => claim_rewards(&mut connect(s)?),
        WorkerCommand::Unjail(s) => unjail(&mut connect(s)?),
        WorkerCommand::Close(s) => close(&mut connect(s)?),
        WorkerCommand::Status { owner, signed } => status(&mut connect(signed)?, owner.as_deref()),
        WorkerCommand::Run(args) => run_daemon(env, args),
    }
}

fn class_name(code: u8) -> String {
    GpuClass::from_code(code)
        .map(|c| c.to_string())
        .unwrap_or_else(|_| format!("class {code}"))
}

fn region_name(code: u8) -> String {
    Region::from_code(code)
        .map(|r| r.name().to_string())
        .unwrap_or_else(|_| format!("region {code}"))
}

/// The program's own check of a hardware claim, before sending.
fn check_hardware(h: &HardwareClaim) -> Result<(), CliError> {
    h.validate().map_err(|_| {
        CliError::Input(format!(
            "the hardware claim is outside the program's bounds (1 to {MAX_WORKER_GPUS} GPUs, VRAM and bandwidth above 0)"
        ))
    })
}

fn register(ctx: &mut Ctx, args: &RegisterArgs) -> Result<(), CliError> {
    let class = GpuClass::from_str(&args.class).map_err(|e| CliError::Input(e.to_string()))?;
    let region = Region::from_str(&args.region).map_err(|e| CliError::Input(e.to_string()))?;
    let owner = ctx.wallet()?;
    let node_key = key_or_file("--node-key", &args.node_key)?;
    if node_key == owner.pubkey() {
        return Err(CliError::Input(
            "--node-key must differ from the owner wallet: keep the owner key off the GPU machine (create a node key with `gpumesh keys new -o ~/.config/gpumesh/node.json`)".into(),
        ));
    }
    let m = ctx.market()?;
    let price = m.price("--price", &args.price)?;
    if price == 0 {
        return Err(CliError::Input("--price must be more than 0".into()));
    }
    let hardware = HardwareClaim {
        gpu_class: class.code(),
        gpu_count: args.gpus,
        vram_mib: args.vram.unwrap_or_else(|| datasheet_vram_mib(class)),
        bandwidth_gbps: args
            .bandwidth_gbps
            .unwrap_or_else(|| datasheet_bandwidth(class)),
        region: region.code(),
    };
    check_hardware(&hardware)?;
    let worker = m.addrs.worker(&owner.pubkey());
    if ctx.chain.account(&worker)?.is_some() {
        return Err(CliError::Input(format!(
            "{} already has a worker in this market ({worker}); `gpumesh worker status` prints it, `gpumesh worker update` changes it",
            owner.pubkey()
        )));
    }
    ctx.require_sol(
        &owner.pubkey(),
        ctx.chain.rent_exempt_minimum(Worker::SPACE)?,
    )?;
    let outcome = ctx.send(
        "register worker",
        &[ix::register_worker(
            &m.addrs,
            &owner.pubkey(),
            RegisterWorkerArgs {
                node_key,
                hardware,
                price_per_gpu_second: price,
            },
        )],
        &owner,
        &[],
    )?;
    let min_stake = m
        .market
        .params
        .min_stake_per_gpu
        .saturating_mul(u64::from(args.gpus));
    ctx.report(
        "worker register",
        &outcome,
        m.with_units(json!({
            "worker": worker.to_string(),
            "node_key": node_key.to_string(),
            "hardware": hardware_json(&hardware),
            "price_per_gpu_second": m.amount(price),
            "price_per_gpu_hour": m.per_hour(price),
            "min_stake": m.amount(min_stake),
        })),
        format!(
            "registered worker {worker}: {} x {class} ({} each, {} GB/s) in {}, asking {}\nnext: stake at least {} with `gpumesh worker stake {}`",
            args.gpus,
            output::vram(hardware.vram_mib),
            hardware.bandwidth_gbps,
            region.name(),
            m.price_text(price),
            m.tokens(min_stake),
            m.tokens(min_stake)
        ),
    );
    Ok(())
}

fn hardware_json(h: &HardwareClaim) -> Value {
    json!({
        "class": class_name(h.gpu_class),
        "gpus": h.gpu_count,
        "vram_mib": h.vram_mib,
        "bandwidth_gbps": h.bandwidth_gbps,
        "region": region_name(h.region),
    })
}

/// The wallet, the market, and the wallet's worker (which must exist).
fn mine(ctx: &Ctx) -> Result<(Keypair, MarketView, Pubkey, Worker), CliError> {
    let owner = ctx.wallet()?;
    let m = ctx.market()?;
    let key = m.addrs.worker(&owner.pubkey());
    let worker = ctx
        .chain
        .fetch_opt::<Worker>(&key)?
        .ok_or_else(|| CliError::Missing {
            what: "worker",
            key,
            hint: format!(
                " (no worker for {} in this market): register one with `gpumesh worker register`",
                owner.pubkey()
            ),
        })?;
    Ok((owner, m, key, worker))
}

fn update(ctx: &mut Ctx, args: &UpdateArgs) -> Result<(), CliError> {
    let (owner, m, key, w) = mine(ctx)?;
    let price = args
        .price
        .as_ref()
        .map(|p| m.price("--price", p))
        .transpose()?;
    if price == Some(0) {
        return Err(CliError::Input("--price must be more than 0".into()));
    }
    let node_key = args
        .node_key
        .as_deref()
        .map(|k| key_or_file("--node-key", k))
        .transpose()?;
    if node_key == Some(owner.pubkey()) {
        return Err(CliError::Input(
            "--node-key must differ from the owner wallet: keep the owner key off the GPU machine"
                .into(),
        ));
    }
    let mut hw = w.hardware;
    let class = args
        .class
        .as_deref()
        .map(|c| GpuClass::from_str(c).map_err(|e| CliError::Input(e.to_string())))
        .transpose()?;
    if let Some(class) = class {
        hw.gpu_class = class.code();
        hw.vram_mib = datasheet_vram_mib(class);
        hw.bandwidth_gbps = datasheet_bandwidth(class);
    }
    if let Some(g) = args.gpus {
        hw.gpu_count = g;
    }
    if let Some(v) = args.vram {
        hw.vram_mib = v;
    }
    if let Some(b) = args.bandwidth_gbps {
        hw.bandwidth_gbps = b;
    }
    if let Some(r) = &args.region {
        hw.region = Region::from_str(r)
            .map_err(|e| CliError::Input(e.to_string()))?
            .code();
    }
    let hardware = (hw != w.hardware).then_some(hw);
    let node_key = node_key.filter(|k| *k != w.node_key);
    let price = price.filter(|p| *p != w.price_per_gpu_second);
    if hardware.is_none() && node_key.is_none() && price.is_none() {
        return Err(CliError::Input(
            "nothing to change: pass --price, --node-key, --class, --gpus, --vram, --bandwidth-gbps or --region with a value other than the worker's".into(),
        ));
    }
    if let Some(h) = &hardware {
        check_hardware(h)?;
    }
    if (hardware.is_some() || node_key.is_some()) && w.active_leases > 0 {
        return Err(CliError::Input(format!(
            "the worker serves {} lease(s): its hardware claim and node key change only while no lease runs (receipts in flight are signed for them). Change the price alone now, or wait until its leases end (`gpumesh worker status` lists them)",
            w.active_leases
        )));
    }
    ctx.require_sol(&owner.pubkey(), 0)?;
    let outcome = ctx.send(
        "update worker",
        &[ix::update_worker(
            &m.addrs,
            &owner.pubkey(),
            UpdateWorkerArgs {
                node_key,
                hardware,
                price_per_gpu_second: price,
            },
        )],
        &owner,
        &[],
    )?;
    let after: Worker = ctx.chain.fetch(&key)?;
    ctx.report(
        "worker update",
        &outcome,
        m.with_units(json!({
            "worker": key.to_string(),
            "node_key": after.node_key.to_string(),
            "hardware": hardware_json(&after.hardware),
            "price_per_gpu_second": m.amount(after.price_per_gpu_second),
            "price_per_gpu_hour": m.per_hour(after.price_per_gpu_second),
        })),
        format!(
            "updated worker {key}: {} x {} ({} each, {} GB/s) in {}, asking {}, node key {}",
            after.hardware.gpu_count,
            class_name(after.hardware.gpu_class),
            output::vram(after.hardware.vram_mib),
            after.hardware.bandwidth_gbps,
            region_name(after.hardware.region),
            m.price_text(after.price_per_gpu_second),
            after.node_key
        ),
    );
    Ok(())
}

fn stake(ctx: &mut Ctx, amount: &str) -> Result<(), CliError> {
    let (owner, m, _, worker) = mine(ctx)?;
    let amount = m.parse("stake amount", amount)?;
    if amount == 0 {
        return Err(CliError::Input("stake more than 0 tokens".into()));
    }
    let token = ctx.require_tokens(&m, &owner.pubkey(), amount)?;
    ctx.require_sol(&owner.pubkey(), 0)?;
    let outcome = ctx.send(
        "stake",
        &[ix::stake(&m.addrs, &owner.pubkey(), &token, amount)],
        &owner,
        &[],
    )?;
    let after = worker.stake.saturating_add(amount);
    ctx.report(
        "worker stake",
        &outcome,
        m.with_units(json!({"stake": m.amount(after), "amount": m.amount(amount)})),
        format!(
            "staked {}; bonded stake now {}",
            m.tokens(amount),
            m.tokens(after)
        ),
    );
    Ok(())
}

/// Bonded stake the worker's leased GPUs hold in place.
fn locked_by_leases(m: &MarketView, w: &Worker) -> u64 {
    m.market
        .params
        .min_stake_per_gpu
        .saturating_mul(u64::from(w.gpus_leased))
        .min(w.stake)
}

fn unstake(ctx: &mut Ctx, amount: &str) -> Result<(), CliError> {
    let (owner, m, key, worker) = mine(ctx)?;
    let amount = m.parse("unstake amount", amount)?;
    let free = worker.stake - locked_by_leases(&m, &worker);
    if amount == 0 || amount > free {
        return Err(CliError::Input(format!(
            "the worker has {} bonded, {} of it locked by {} leased GPU(s); unstake more than 0 and at most {}",
            m.tokens(worker.stake),
            m.tokens(locked_by_leases(&m, &worker)),
            worker.gpus_leased,
            m.tokens(free)
        )));
    }
    ctx.require_sol(&owner.pubkey(), 0)?;
    let token = token::ata(&owner.pubkey(), &m.addrs.mint);
    let outcome = ctx.send(
        "unstake",
        &[ix::request_unstake(
            &m.addrs,
            &owner.pubkey(),
            &token,
            amount,
        )],
        &owner,
        &[],
    )?;
    let after: Worker = ctx.chain.fetch(&key)?;
    let unlock = after.unlock_ts;
    ctx.report(
        "worker unstake",
        &outcome,
        m.with_units(json!({
            "amount": m.amount(amount),
            "unbonding": m.amount(after.unbonding),
            "unlock_ts": unlock,
            "unlock_at": output::date_json(unlock),
        })),
        format!(
            "unbonding {} ({} in all); withdraw it with `gpumesh worker withdraw` from {} (the unbonding period is {})",
            m.tokens(amount),
            m.tokens(after.unbonding),
            output::date(unlock),
            output::duration(m.market.params.unbonding_period.max(0) as u64)
        ),
    );
    Ok(())
}

fn withdraw(ctx: &mut Ctx) -> Result<(), CliError> {
    let (owner, m, _, worker) = mine(ctx)?;
    if worker.unbonding == 0 {
        return Err(CliError::Input(
            "nothing is unbonding: request an unstake first with `gpumesh worker unstake <amount>`"
                .into(),
        ));
    }
    let now = ctx.chain.unix_time()?;
    if now < worker.unlock_ts {
        return Err(CliError::Input(format!(
            "{} is unbonding until {} ({}); withdraw after that",
            m.tokens(worker.unbonding),
            output::date(worker.unlock_ts),
            output::relative(worker.unlock_ts.saturating_sub(now))
        )));
    }
    if worker.is_jailed(now) {
        return Err(jailed(&worker, now));
    }
    ctx.require_sol(&owner.pubkey(), 0)?;
    let token = token::ata(&owner.pubkey(), &m.addrs.mint);
    let outcome = ctx.send(
        "withdraw",
        &[
            token::create_ata(&owner.pubkey(), &owner.pubkey(), &m.addrs.mint),
            ix::withdraw_unstaked(&m.addrs, &owner.pubkey(), &token),
        ],
        &owner,
        &[],
    )?;
    ctx.report(
        "worker withdraw",
        &outcome,
        m.with_units(json!({"amount": m.amount(worker.unbonding)})),
        format!("withdrew {}", m.tokens(worker.unbonding)),
    );
    Ok(())
}

fn jailed(w: &Worker, now: i64) -> CliError {
    if now < w.jailed_until {
        CliError::Input(format!(
            "the worker is jailed until {} ({}); then `gpumesh worker unjail`",
            output::date(w.jailed_until),
            output::relative(w.jailed_until.saturating_sub(now))
        ))
    } else {
        CliError::Input(
            "the worker is still jailed: its jail period is over, leave with `gpumesh worker unjail`"
                .into(),
        )
    }
}

fn claim(ctx: &mut Ctx) -> Result<(), CliError> {
    let (owner, m, _, worker) = mine(ctx)?;
    if worker.earnings_claimable == 0 {
        return Err(CliError::Input(
            "nothing to claim: earnings appear once the orchestrator settles receipts".into(),
        ));
    }
    ctx.require_sol(&owner.pubkey(), 0)?;
    let token = token::ata(&owner.pubkey(), &m.addrs.mint);
    let outcome = ctx.send(
        "claim",
        &[
            token::create_ata(&owner.pubkey(), &owner.pubkey(), &m.addrs.mint),
            ix::claim_earnings(&m.addrs, &owner.pubkey(), &token),
        ],
        &owner,
        &[],
    )?;
    ctx.report(
        "worker claim",
        &outcome,
        m.with_units(json!({"amount": m.amount(worker.earnings_claimable)})),
        format!("claimed {}", m.tokens(worker.earnings_claimable)),
    );
    Ok(())
}

fn claim_rewards(ctx: &mut Ctx) -> Result<(), CliError> {
    let (owner, m, _, worker) = mine(ctx)?;
    if worker.rewards_claimable == 0 {
        return Err(CliError::Input(
            "no rewards to claim: emission rewards accrue to leased GPUs as their receipts settle (and only while the market's rewards vault is funded)".into(),
        ));
    }
    ctx.require_sol(&owner.pubkey(), 0)?;
    let token = token::ata(&owner.pubkey(), &m.addrs.mint);
    let outcome = ctx.send(
        "claim rewards",
        &[
            token::create_ata(&owner.pubkey(), &owner.pubkey(), &m.addrs.mint),
            ix::claim_rewards(&m.addrs, &owner.pubkey(), &token),
        ],
        &owner,
        &[],
    )?;
    ctx.report(
        "worker claim-rewards",
        &outcome,
        m.with_units(json!({"amount": m.amount(worker.rewards_claimable)})),
        format!("claimed {} of rewards", m.tokens(worker.rewards_claimable)),
    );
    Ok(())
}

fn unjail(ctx: &mut Ctx) -> Result<(), CliError> {
    let (owner, m, _, w) = mine(ctx)?;
    if !w.jailed {
        return Err(CliError::Input("the worker is not jailed".into()));
    }
    let now = ctx.chain.unix_time()?;
    if now < w.jailed_until {
        return Err(CliError::Input(format!(
            "the jail period ends at {} ({}); unjail after that",
            output::date(w.jailed_until),
            output::relative(w.jailed_until.saturating_sub(now))
        )));
    }
    let required = m
        .market
        .params
        .min_stake_per_gpu
        .saturating_mul(u64::from(w.hardware.gpu_count));
    if w.stake < required {
        return Err(CliError::Input(format!(
            "leaving jail needs {} bonded ({} per GPU x {} GPUs) and the worker has {}: stake {} more with `gpumesh worker stake {}`",
            m.tokens(required),
            m.tokens(m.market.params.min_stake_per_gpu),
            w.hardware.gpu_count,
            m.tokens(w.stake),
            m.tokens(required - w.stake),
            m.tokens(required - w.stake)
        )));
    }
    ctx.require_sol(&owner.pubkey(), 0)?;
    let outcome = ctx.send(
        "unjail",
        &[ix::unjail(&m.addrs, &owner.pubkey())],
        &owner,
        &[],
    )?;
    ctx.report(
        "worker unjail",
        &outcome,
        json!({"jailed": false}),
        "the worker is out of jail and can be assigned again".into(),
    );
    Ok(())
}

fn close(ctx: &mut Ctx) -> Result<(), CliError> {
    let (owner, m, key, w) = mine(ctx)?;
    let now = ctx.chain.unix_time()?;
    let mut blockers = Vec::new();
    if w.active_leases > 0 {
        blockers.push(format!(
            "it serves {} lease(s): wait until they end",
            w.active_leases
        ));
    }
    if w.is_jailed(now) {
        blockers.push(format!(
            "it is jailed (until {}): `gpumesh worker unjail` first",
            output::date(w.jailed_until)
        ));
    }
    if w.stake > 0 {
        blockers.push(format!(
            "{} is bonded: `gpumesh worker unstake {}`, then withdraw after the unbonding period",
            m.tokens(w.stake),
            m.tokens(w.stake)
        ));
    }
    if w.unbonding > 0 {
        blockers.push(format!(
            "{} is unbonding: `gpumesh worker withdraw` from {}",
            m.tokens(w.unbonding),
            output::date(w.unlock_ts)
        ));
    }
    if w.earnings_claimable > 0 {
        blockers.push(format!(
            "{} of earnings is unclaimed: `gpumesh worker claim`",
            m.tokens(w.earnings_claimable)
        ));
    }
    if w.rewards_claimable > 0 {
        blockers.push(format!(
            "{} of rewards is unclaimed: `gpumesh worker claim-rewards`",
            m.tokens(w.rewards_claimable)
        ));
    }
    if !blockers.is_empty() {
        return Err(CliError::Input(format!(
            "the worker cannot close yet: {}",
            blockers.join("; ")
        )));
    }
    ctx.require_sol(&owner.pubkey(), 0)?;
    let rent = ctx.chain.lamports(&key)?;
    let outcome = ctx.send(
        "close worker",
        &[ix::close_worker(&m.addrs, &owner.pubkey())],
        &owner,
        &[],
    )?;
    let rent_sol = gpumesh_client::amount::format(rent, 9);
    ctx.report(
        "worker close",
        &outcome,
        json!({"worker": key.to_string(), "rent_returned_sol": rent_sol}),
        format!(
            "closed worker {key}; {rent_sol} SOL of rent back to {}",
            owner.pubkey()
        ),
    );
    Ok(())
}

/// The return a worker's stake earned: earnings and rewards over the bonded stake, since
/// registration, in millionths, and that rate over a year. `None` without stake or time.
fn stake_return(w: &Worker, now: i64) -> Option<(u128, u128, u64)> {
    let elapsed = u64::try_from(now.checked_sub(w.registered_ts)?).ok()?;
    if w.stake == 0 || elapsed == 0 {
        return None;
    }
    let earned = u128::from(w.earnings_total) + u128::from(w.rewards_total);
    let ppm = earned * 1_000_000 / u128::from(w.stake);
    let yearly_ppm = ppm * YEAR / u128::from(elapsed);
    Some((ppm, yearly_ppm, elapsed))
}

pub use gpumesh_client::stake_yield::{StakeYield, percent_of_ppm};

fn stake_yield_json(m: &MarketView, y: &StakeYield, registered: i64, now: i64) -> Value {
    json!({
        "window": "registration to now",
        "from_ts": registered,
        "from_at": output::date_json(registered),
        "to_ts": now,
        "to_at": output::date_json(now),
        "seconds": y.seconds,
        "stake": m.amount(y.stake),
        "fee_income": m.amount(y.fee_income),
        "emission_rewards": m.amount(y.emission),
        "slashed": m.amount(y.slashed),
        "year_seconds": YEAR as u64,
        "fees_percent_per_year": percent_of_ppm(y.fees_ppm(), 4),
        "emission_percent_per_year": percent_of_ppm(y.emission_ppm(), 4),
        "total_percent_per_year": percent_of_ppm(y.total_ppm(), 4),
        "net_percent_per_year": percent_of_ppm(y.net_ppm(), 4),
        "rule": "amount / stake x year_seconds / seconds, in percent truncated toward zero to 0.0001; stake is the bonded stake now; net = fee income + emission rewards - slashed",
    })
}

/// The yield for people, with the figures it comes from.
pub fn stake_yield_text(y: &StakeYield, tokens: impl Fn(u64) -> String) -> String {
    format!(
        "stake yield over the worker's life ({} since registration, on the {} bonded now; past, not a forecast):\n    fee income {} = {}% a year; emission rewards {} = {}% a year; together {}% a year\n    slashes took {}: net {}% a year",
        output::duration(y.seconds),
        tokens(y.stake),
        tokens(y.fee_income),
        percent_of_ppm(y.fees_ppm(), 2),
        tokens(y.emission),
        percent_of_ppm(y.emission_ppm(), 2),
        percent_of_ppm(y.total_ppm(), 2),
        tokens(y.slashed),
        percent_of_ppm(y.net_ppm(), 2)
    )
}

fn status(ctx: &mut Ctx, owner: Option<&str>) -> Result<(), CliError> {
    let owner = match owner {
        Some(o) => key_or_file("--owner", o)?,
        None => ctx.wallet()?.pubkey(),
    };
    let m = ctx.market()?;
    let key = m.addrs.worker(&owner);
    let w = ctx
        .chain
        .fetch_opt::<Worker>(&key)?
        .ok_or_else(|| CliError::Missing {
            what: "worker",
            key,
            hint: format!(" (no worker for {owner} in this market)"),
        })?;
    let now = ctx.chain.unix_time()?;
    let mut leases = ctx
        .chain
        .list_decoded::<Lease>(&filters::leases_of_worker(&key))?;
    leases.sort_by_key(|(_, l)| l.nonce);
    let locked = locked_by_leases(&m, &w);
    let h = &w.hardware;
    let jail_state = if w.is_jailed(now) {
        Some(w.jailed_until)
    } else {
        None
    };
    let returns = stake_return(&w, now);
    let yields = StakeYield::of(&w, now);
    let lease_json: Vec<Value> = leases
        .iter()
        .map(|(k, l)| {
            json!({
                "lease": k.to_string(),
                "order": l.order.to_string(),
                "gpus": l.gpus,
                "price_per_gpu_second": m.amount(l.price_per_gpu_second),
                "price_per_gpu_hour": m.per_hour(l.price_per_gpu_second),
                "start_ts": l.start_ts,
                "start_at": output::date_json(l.start_ts),
                "seconds_settled": l.seconds_settled,
                "amount_paid": m.amount(l.amount_paid),
                "last_settle_ts": l.last_settle_ts,
                "last_settle_at": output::date_json(l.last_settle_ts),
            })
        })
        .collect();
    ctx.print(
        m.with_units(json!({
            "worker": key.to_string(),
            "owner": w.owner.to_string(),
            "node_key": w.node_key.to_string(),
            "class": class_name(h.gpu_class),
            "gpus": h.gpu_count,
            "vram_mib": h.vram_mib,
            "bandwidth_gbps": h.bandwidth_gbps,
            "region": region_name(h.region),
            "price_per_gpu_second": m.amount(w.price_per_gpu_second),
            "price_per_gpu_hour": m.per_hour(w.price_per_gpu_second),
            "gpus_leased": w.gpus_leased,
            "active_leases": w.active_leases,
            "stake": m.amount(w.stake),
            "stake_locked_by_leases": m.amount(locked),
            "stake_free": m.amount(w.stake - locked),
            "unbonding": m.amount(w.unbonding),
            "unlock_ts": w.unlock_ts,
            "unlock_at": output::date_json(w.unlock_ts),
            "earnings_claimable": m.amount(w.earnings_claimable),
            "earnings_total": m.amount(w.earnings_total),
            "rewards_claimable": m.amount(w.rewards_claimable),
            "rewards_total": m.amount(w.rewards_total),
            "jailed": w.jailed,
            "jailed_until_ts": w.jailed_until,
            "jailed_until_at": output::date_json(w.jailed_until),
            "registered_ts": w.registered_ts,
            "registered_at": output::date_json(w.registered_ts),
            "record": {
                "served_gpu_seconds": w.record.served_gpu_seconds,
                "leases": w.record.leases,
                "leases_completed": w.record.leases_completed,
                "failures": w.record.failures,
                "frauds": w.record.frauds,
                "slashes": w.record.slashes,
                "slashed_total": m.amount(w.record.slashed_total),
            },
            "leases": lease_json,
            "stake_return": returns.map(|(ppm, yearly, elapsed)| json!({
                "what": "(earnings_total + rewards_total) / current bonded stake, since registration",
                "ppm": u64::try_from(ppm).unwrap_or(u64::MAX),
                "yearly_ppm": u64::try_from(yearly).unwrap_or(u64::MAX),
                "seconds": elapsed,
            })),
            "stake_yield": yields.map(|y| stake_yield_json(&m, &y, w.registered_ts, now)),
        })),
        || {
            let mut s = format!(
                "worker {key}\n  owner {}\n  node key {}\n  {} x {}, {} each, {} GB/s, {}\n  asking {}; {} of {} GPUs under {} lease(s)\n  registered {}\n",
                w.owner,
                w.node_key,
                h.gpu_count,
                class_name(h.gpu_class),
                output::vram(h.vram_mib),
                h.bandwidth_gbps,
                region_name(h.region),
                m.price_text(w.price_per_gpu_second),
                w.gpus_leased,
                h.gpu_count,
                w.active_leases,
                output::date(w.registered_ts)
            );
            s.push_str(&format!(
                "  stake: {} bonded ({} locked by leased GPUs, {} free to unstake)",
                m.tokens(w.stake),
                m.tokens(locked),
                m.tokens(w.stake - locked)
            ));
            if w.unbonding > 0 {
                let when = if now >= w.unlock_ts {
                    "withdrawable now".to_string()
                } else {
                    format!(
                        "unlocks {} ({})",
                        output::date(w.unlock_ts),
                        output::relative(w.unlock_ts.saturating_sub(now))
                    )
                };
                s.push_str(&format!("; {} unbonding, {when}", m.tokens(w.unbonding)));
            }
            s.push('\n');
            s.push_str(&format!(
                "  earnings: {} to claim, {} in all; rewards: {} to claim, {} in all\n",
                m.tokens(w.earnings_claimable),
                m.tokens(w.earnings_total),
                m.tokens(w.rewards_claimable),
                m.tokens(w.rewards_total)
            ));
            s.push_str(&match (jail_state, w.jailed) {
                (Some(until), _) if now < until => format!(
                    "  JAILED until {} ({}): nothing new is assigned\n",
                    output::date(until),
                    output::relative(until.saturating_sub(now))
                ),
                (_, true) => "  JAILED: the period is over; leave with `gpumesh worker unjail`\n".into(),
                _ => "  not jailed\n".into(),
            });
            s.push_str(&format!(
                "  record: {} GPU-seconds served, {} lease(s), {} completed, {} failure(s), {} slash(es) taking {}\n",
                w.record.served_gpu_seconds,
                w.record.leases,
                w.record.leases_completed,
                w.record.failures,
                w.record.slashes,
                m.tokens(w.record.slashed_total)
            ));
            if leases.is_empty() {
                s.push_str("  live leases: none\n");
            } else {
                s.push_str("  live leases:\n");
                for (k, l) in &leases {
                    s.push_str(&format!(
                        "    {k}: {} GPU(s) at {} for order {}, since {} ({} settled, {} paid)\n",
                        l.gpus,
                        m.price_text(l.price_per_gpu_second),
                        l.order,
                        output::date(l.start_ts),
                        output::duration(l.seconds_settled),
                        m.tokens(l.amount_paid)
                    ));
                }
            }
            s.push_str(&match &yields {
                Some(y) => format!("  {}", stake_yield_text(y, |v| m.tokens(v))),
                None => "  stake yield: none to show (no bonded stake)".into(),
            });
            s
        },
    );
    Ok(())
}

#[cfg(test)]
mod run_tests {
    use super::gateway_url;

    #[test]
    fn the_gateway_comes_from_the_service_url() {
        assert_eq!(
            gateway_url("http://127.0.0.1:8910"),
            "ws://127.0.0.1:8910/v1/worker"
        );
        assert_eq!(
            gateway_url("https://o.example/"),
            "wss://o.example/v1/worker"
        );
        assert_eq!(gateway_url("ws://h:1/v1/worker"), "ws://h:1/v1/worker");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datasheet_gb_is_read_as_gib() {
        assert_eq!(datasheet_vram_mib(GpuClass::H100), 81_920);
        assert_eq!(datasheet_vram_mib(GpuClass::A100_40gb), 40_960);
        assert_eq!(datasheet_vram_mib(GpuClass::H200), 144_384);
        assert_eq!(datasheet_vram_mib(GpuClass::Rtx4090), 24_576);
    }
}
