//! `gpumesh worker`: the supplier's commands. The owner wallet (`--keypair`) registers a machine
//! with a hardware claim and a node key (the hot key on the GPU machine), bonds stake, unbonds
//! it, withdraws it after the unbonding period, and claims earnings.

use crate::context::{Ctx, MarketView};
use crate::error::CliError;
use anchor_lang::prelude::Pubkey;
use gpumesh_client::chain::{Chain, ChainExt};
use gpumesh_client::program::instructions::RegisterWorkerArgs;
use gpumesh_client::program::state::{HardwareClaim, Worker};
use gpumesh_client::{Keypair, Signer, cluster, ix, token};
use gpumesh_protocol::{GpuClass, Region};
use serde_json::json;
use std::path::Path;
use std::str::FromStr;

#[derive(clap::Subcommand)]
pub enum WorkerCommand {
    /// Register a machine: its hardware claim, node key and asking price.
    Register(RegisterArgs),
    /// Bond stake (whole tokens) from the wallet's token account.
    Stake { amount: String },
    /// Start unbonding stake (whole tokens); it can be withdrawn after the unbonding period.
    Unstake { amount: String },
    /// Withdraw stake whose unbonding period has passed.
    Withdraw,
    /// Move settled earnings to the wallet's token account.
    Claim,
    /// Print a worker (default: the wallet's).
    Show {
        /// The owner wallet's address [default: --keypair's].
        #[arg(long)]
        owner: Option<String>,
    },
}

#[derive(clap::Args)]
pub struct RegisterArgs {
    /// GPU class by name (h100, a100-80gb, rtx4090, …; `cpu` for GPU-less test networks).
    #[arg(long)]
    class: String,
    /// Number of GPUs in the machine.
    #[arg(long, default_value_t = 1)]
    gpus: u16,
    /// VRAM per GPU in MiB [default: the class's datasheet figure].
    #[arg(long)]
    vram_mib: Option<u32>,
    /// Memory bandwidth in GB/s [default: the class's datasheet figure].
    #[arg(long)]
    bandwidth_gbps: Option<u32>,
    /// Region by name (us-east, eu-west, …).
    #[arg(long)]
    region: String,
    /// Asking price in whole tokens per GPU-second.
    #[arg(long)]
    price: String,
    /// The node key: an address, or a keypair file on the GPU machine; must not be the owner.
    #[arg(long, env = "GPUMESH_NODE_KEY")]
    node_key: String,
}

pub fn run(ctx: &mut Ctx, cmd: &WorkerCommand) -> Result<(), CliError> {
    match cmd {
        WorkerCommand::Register(args) => register(ctx, args),
        WorkerCommand::Stake { amount } => stake(ctx, amount),
        WorkerCommand::Unstake { amount } => unstake(ctx, amount),
        WorkerCommand::Withdraw => withdraw(ctx),
        WorkerCommand::Claim => claim(ctx),
        WorkerCommand::Show { owner } => show(ctx, owner.as_deref()),
    }
}

/// A key given as an address or as a keypair file.
fn key_or_file(flag: &str, text: &str) -> Result<Pubkey, CliError> {
    if let Ok(key) = Pubkey::from_str(text.trim()) {
        return Ok(key);
    }
    let path = Path::new(text);
    if path.exists() {
        return Ok(cluster::read_keypair(path)?.pubkey());
    }
    Err(CliError::Input(format!(
        "{flag} {text:?} is neither an address nor a keypair file"
    )))
}

fn register(ctx: &mut Ctx, args: &RegisterArgs) -> Result<(), CliError> {
    let class = GpuClass::from_str(&args.class).map_err(|e| CliError::Input(e.to_string()))?;
    let region = Region::from_str(&args.region).map_err(|e| CliError::Input(e.to_string()))?;
    let owner = ctx.wallet()?;
    let node_key = key_or_file("--node-key", &args.node_key)?;
    if node_key == owner.pubkey() {
        return Err(CliError::Input(
            "--node-key must differ from the owner wallet: keep the owner key off the GPU machine (create a node key with `gpumesh keys new -o node.json`)".into(),
        ));
    }
    let m = ctx.market()?;
    let price = m.parse("--price", &args.price)?;
    let spec = class.spec();
    let hardware = HardwareClaim {
        gpu_class: class.code(),
        gpu_count: args.gpus,
        vram_mib: args
            .vram_mib
            .unwrap_or((spec.vram_gb * 1e9 / 1_048_576.0) as u32),
        bandwidth_gbps: args
            .bandwidth_gbps
            .unwrap_or(spec.memory_bandwidth_gbs as u32),
        region: region.code(),
    };
    let worker = m.addrs.worker(&owner.pubkey());
    if ctx.chain.account(&worker)?.is_some() {
        return Err(CliError::Input(format!(
            "{} already has a worker in this market ({worker}); `gpumesh worker show` prints it",
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
    let min_stake = m.market.params.min_stake_per_gpu * args.gpus as u64;
    ctx.report(
        "worker register",
        &outcome,
        json!({"worker": worker.to_string(), "node_key": node_key.to_string(), "min_stake": min_stake}),
        format!(
            "registered worker {worker}: {} x {} in {}, {} per GPU-second\nnext: stake at least {} with `gpumesh worker stake {}`",
            args.gpus,
            class,
            region.name(),
            m.tokens(price),
            m.tokens(min_stake),
            m.tokens(min_stake)
        ),
    );
    Ok(())
}

/// The wallet, the market, and the wallet's worker (which must exist).
fn mine(ctx: &Ctx) -> Result<(Keypair, MarketView, Worker), CliError> {
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
    Ok((owner, m, worker))
}

fn stake(ctx: &mut Ctx, amount: &str) -> Result<(), CliError> {
    let (owner, m, worker) = mine(ctx)?;
    let amount = m.parse("stake amount", amount)?;
    let token = ctx.require_tokens(&m, &owner.pubkey(), amount)?;
    ctx.require_sol(&owner.pubkey(), 0)?;
    let outcome = ctx.send(
        "stake",
        &[ix::stake(&m.addrs, &owner.pubkey(), &token, amount)],
        &owner,
        &[],
    )?;
    let after = worker.stake + amount;
    ctx.report(
        "worker stake",
        &outcome,
        json!({"stake": after, "amount": amount}),
        format!(
            "staked {}; bonded stake now {}",
            m.tokens(amount),
            m.tokens(after)
        ),
    );
    Ok(())
}

fn unstake(ctx: &mut Ctx, amount: &str) -> Result<(), CliError> {
    let (owner, m, worker) = mine(ctx)?;
    let amount = m.parse("unstake amount", amount)?;
    if amount > worker.stake {
        return Err(CliError::Input(format!(
            "the worker has {} bonded; unstake at most that",
            m.tokens(worker.stake)
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
    let unlock = worker_after(ctx, &m, &owner.pubkey())?.unlock_ts;
    ctx.report(
        "worker unstake",
        &outcome,
        json!({"amount": amount, "unlock_ts": unlock}),
        format!(
            "unbonding {}; withdraw it with `gpumesh worker withdraw` after unix time {unlock}",
            m.tokens(amount)
        ),
    );
    Ok(())
}

fn worker_after(ctx: &Ctx, m: &MarketView, owner: &Pubkey) -> Result<Worker, CliError> {
    Ok(ctx.chain.fetch::<Worker>(&m.addrs.worker(owner))?)
}

fn withdraw(ctx: &mut Ctx) -> Result<(), CliError> {
    let (owner, m, worker) = mine(ctx)?;
    if worker.unbonding == 0 {
        return Err(CliError::Input(
            "nothing is unbonding: request an unstake first with `gpumesh worker unstake <amount>`"
                .into(),
        ));
    }
    let now = ctx.chain.unix_time()?;
    if now < worker.unlock_ts {
        return Err(CliError::Input(format!(
            "{} is unbonding until unix time {} ({} s from now); withdraw after that",
            m.tokens(worker.unbonding),
            worker.unlock_ts,
            worker.unlock_ts - now
        )));
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
        json!({"amount": worker.unbonding}),
        format!("withdrew {}", m.tokens(worker.unbonding)),
    );
    Ok(())
}

fn claim(ctx: &mut Ctx) -> Result<(), CliError> {
    let (owner, m, worker) = mine(ctx)?;
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
        json!({"amount": worker.earnings_claimable}),
        format!("claimed {}", m.tokens(worker.earnings_claimable)),
    );
    Ok(())
}

fn show(ctx: &mut Ctx, owner: Option<&str>) -> Result<(), CliError> {
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
    let class = GpuClass::from_code(w.hardware.gpu_class)
        .map(|c| c.to_string())
        .unwrap_or_else(|_| format!("class {}", w.hardware.gpu_class));
    let region = Region::from_code(w.hardware.region)
        .map(|r| r.name().to_string())
        .unwrap_or_else(|_| format!("region {}", w.hardware.region));
    ctx.print(
        json!({
            "worker": key.to_string(),
            "owner": w.owner.to_string(),
            "node_key": w.node_key.to_string(),
            "class": class,
            "gpus": w.hardware.gpu_count,
            "vram_mib": w.hardware.vram_mib,
            "bandwidth_gbps": w.hardware.bandwidth_gbps,
            "region": region,
            "price_per_gpu_second": w.price_per_gpu_second,
            "gpus_leased": w.gpus_leased,
            "active_leases": w.active_leases,
            "jailed": w.jailed,
            "jailed_until": w.jailed_until,
            "stake": w.stake,
            "unbonding": w.unbonding,
            "unlock_ts": w.unlock_ts,
            "earnings_claimable": w.earnings_claimable,
            "earnings_total": w.earnings_total,
            "served_gpu_seconds": w.record.served_gpu_seconds,
        }),
        || {
            format!(
                "worker {key}\n  owner {}\n  node key {}\n  {} x {class}, {} MiB, {} GB/s, {region}\n  price {} per GPU-second; {} of {} GPUs under {} lease(s){}\n  stake {} (+{} unbonding, unlocks at {})\n  earnings: {} to claim, {} in total; {} GPU-seconds served",
                w.owner,
                w.node_key,
                w.hardware.gpu_count,
                w.hardware.vram_mib,
                w.hardware.bandwidth_gbps,
                m.tokens(w.price_per_gpu_second),
                w.gpus_leased,
                w.hardware.gpu_count,
                w.active_leases,
                if w.jailed {
                    format!("; jailed until {}", w.jailed_until)
                } else {
                    String::new()
                },
                m.tokens(w.stake),
                m.tokens(w.unbonding),
                w.unlock_ts,
                m.tokens(w.earnings_claimable),
                m.tokens(w.earnings_total),
                w.record.served_gpu_seconds
            )
        },
    );
    Ok(())
}
