//! `gpumesh order`: the buyer's commands. An order asks for GPUs (class, count, VRAM,
//! bandwidth, regions) at a max price for a duration, with escrow deposited up front and the hash
//! of a job-spec file on chain; it can be topped up, cancelled (unspent escrow back), shown and
//! listed. Cancelling an order that still has leases asks to close it first; after the market's
//! exit window the same command ends the leases and takes the escrow back, whatever the
//! orchestrator did.

use crate::context::{Ctx, MarketView};
use crate::error::CliError;
use anchor_lang::prelude::Pubkey;
use gpumesh_client::chain::{Chain, ChainExt};
use gpumesh_client::ix::LeaseRef;
use gpumesh_client::program::instructions::CreateOrderArgs;
use gpumesh_client::program::state::{Lease, Order, OrderMode, OrderRequirements, OrderTerms};
use gpumesh_client::{Signer, filters, ix, token};
use gpumesh_protocol::{GpuClass, Region};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::str::FromStr;

#[derive(clap::Subcommand)]
pub enum OrderCommand {
    /// Put escrow down and ask for GPUs.
    Create(CreateArgs),
    /// Add escrow (whole tokens) to an order.
    TopUp { id: u64, amount: String },
    /// Cancel an order; its unspent escrow comes back. With active leases it first asks to close
    /// the order (no new lease, no pay for later seconds); run it again once the exit window is
    /// over to end the leases yourself.
    Cancel { id: u64 },
    /// Print an order.
    Show {
        id: u64,
        /// The buyer's address [default: --keypair's].
        #[arg(long)]
        buyer: Option<String>,
    },
    /// List a buyer's orders in this market.
    List {
        /// The buyer's address [default: --keypair's].
        #[arg(long)]
        buyer: Option<String>,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Mode {
    /// Pay per second; leave any time (within the market's exit window).
    Spot,
    /// Funded for the whole term at the max price.
    Reserved,
}

#[derive(clap::Args)]
pub struct CreateArgs {
    /// GPU class by name (h100, a100-80gb, rtx4090, …).
    #[arg(long)]
    class: String,
    /// GPUs wanted.
    #[arg(long, default_value_t = 1)]
    gpus: u16,
    /// Least VRAM per GPU, MiB.
    #[arg(long, default_value_t = 0)]
    min_vram_mib: u32,
    /// Least memory bandwidth, GB/s.
    #[arg(long, default_value_t = 0)]
    min_bandwidth_gbps: u32,
    /// Allowed regions, comma-separated (us-east,eu-west,…).
    #[arg(long, value_delimiter = ',', required = true)]
    regions: Vec<String>,
    /// Most you pay, whole tokens per GPU-second.
    #[arg(long)]
    max_price: String,
    /// Seconds of service per lease.
    #[arg(long)]
    duration: u64,
    /// Escrow to deposit now, whole tokens.
    #[arg(long)]
    deposit: String,
    /// The job-spec file; its hash goes on chain (gpumesh's one job-spec hash: keyed BLAKE3 of
    /// the file's bytes), the file stays with you and the orchestrator.
    #[arg(long)]
    spec: PathBuf,
    #[arg(long, value_enum, default_value_t = Mode::Spot)]
    mode: Mode,
    /// The order's id [default: one above the wallet's highest in this market].
    #[arg(long)]
    id: Option<u64>,
}

pub fn run(ctx: &mut Ctx, cmd: &OrderCommand) -> Result<(), CliError> {
    match cmd {
        OrderCommand::Create(args) => create(ctx, args),
        OrderCommand::TopUp { id, amount } => top_up(ctx, *id, amount),
        OrderCommand::Cancel { id } => cancel(ctx, *id),
        OrderCommand::Show { id, buyer } => show(ctx, *id, buyer.as_deref()),
        OrderCommand::List { buyer } => list(ctx, buyer.as_deref()),
    }
}

fn buyer_key(ctx: &Ctx, buyer: Option<&str>) -> Result<Pubkey, CliError> {
    match buyer {
        Some(b) => Pubkey::from_str(b.trim())
            .map_err(|_| CliError::Input(format!("--buyer {b:?} is not a base58 address"))),
        None => Ok(ctx.wallet()?.pubkey()),
    }
}

fn orders_of(ctx: &Ctx, m: &MarketView, buyer: &Pubkey) -> Result<Vec<(Pubkey, Order)>, CliError> {
    let mut orders = ctx
        .chain
        .list_decoded::<Order>(&filters::orders_of(&m.addrs.market, buyer))?;
    orders.sort_by_key(|(_, o)| o.order_id);
    Ok(orders)
}

fn create(ctx: &mut Ctx, args: &CreateArgs) -> Result<(), CliError> {
    let class = GpuClass::from_str(&args.class).map_err(|e| CliError::Input(e.to_string()))?;
    let regions = args
        .regions
        .iter()
        .map(|r| Region::from_str(r).map_err(|e| CliError::Input(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let spec = std::fs::read(&args.spec).map_err(|e| {
        CliError::Input(format!(
            "cannot read the job spec {}: {e}",
            args.spec.display()
        ))
    })?;
    let job_spec_hash = gpumesh_protocol::job_spec_hash(&spec);
    let buyer = ctx.wallet()?;
    let m = ctx.market()?;
    let max_price = m.parse("--max-price", &args.max_price)?;
    let deposit = m.parse("--deposit", &args.deposit)?;
    let id = match args.id {
        Some(id) => id,
        None => orders_of(ctx, &m, &buyer.pubkey())?
            .last()
            .map(|(_, o)| o.order_id + 1)
            .unwrap_or(1),
    };
    let order = m.addrs.order(&buyer.pubkey(), id);
    if ctx.chain.account(&order)?.is_some() {
        return Err(CliError::Input(format!(
            "order {id} exists already ({order}); pick another --id"
        )));
    }
    let token = ctx.require_tokens(&m, &buyer.pubkey(), deposit)?;
    ctx.require_sol(
        &buyer.pubkey(),
        ctx.chain.rent_exempt_minimum(Order::SPACE)?,
    )?;
    let mode = match args.mode {
        Mode::Spot => OrderMode::Spot,
        Mode::Reserved => OrderMode::Reserved,
    };
    let outcome = ctx.send(
        "create order",
        &[ix::create_order(
            &m.addrs,
            &buyer.pubkey(),
            &token,
            CreateOrderArgs {
                order_id: id,
                terms: OrderTerms {
                    requirements: OrderRequirements {
                        gpu_class: class.code(),
                        gpu_count: args.gpus,
                        min_vram_mib: args.min_vram_mib,
                        min_bandwidth_gbps: args.min_bandwidth_gbps,
                        regions: Region::set(&regions),
                    },
                    max_price_per_gpu_second: max_price,
                    duration: args.duration,
                    mode,
                    job_spec_hash,
                },
                deposit,
            },
        )],
        &buyer,
        &[],
    )?;
    let hash_hex = hex(&job_spec_hash);
    ctx.report(
        "order create",
        &outcome,
        json!({"order": order.to_string(), "id": id, "deposit": deposit, "job_spec_hash": hash_hex}),
        format!(
            "created order {id} ({order}): {} x {class}, up to {} per GPU-second for {} s, {} in escrow\njob spec hash {hash_hex}\nwatch it with `gpumesh order show {id}`",
            args.gpus,
            m.tokens(max_price),
            args.duration,
            m.tokens(deposit)
        ),
    );
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn my_order(
    ctx: &Ctx,
    m: &MarketView,
    buyer: &Pubkey,
    id: u64,
) -> Result<(Pubkey, Order), CliError> {
    let key = m.addrs.order(buyer, id);
    let order = ctx
        .chain
        .fetch_opt::<Order>(&key)?
        .ok_or_else(|| CliError::Missing {
            what: "order",
            key,
            hint: format!(
                " (no order {id} of {buyer} in this market); `gpumesh order list` shows the wallet's orders"
            ),
        })?;
    Ok((key, order))
}

fn top_up(ctx: &mut Ctx, id: u64, amount: &str) -> Result<(), CliError> {
    let buyer = ctx.wallet()?;
    let m = ctx.market()?;
    let amount = m.parse("top-up amount", amount)?;
    let (key, order) = my_order(ctx, &m, &buyer.pubkey(), id)?;
    let token = ctx.require_tokens(&m, &buyer.pubkey(), amount)?;
    ctx.require_sol(&buyer.pubkey(), 0)?;
    let outcome = ctx.send(
        "top up order",
        &[ix::top_up_order(
            &m.addrs,
            &buyer.pubkey(),
            &token,
            &key,
            amount,
        )],
        &buyer,
        &[],
    )?;
    let after = order.escrow_remaining + amount;
    ctx.report(
        "order top-up",
        &outcome,
        json!({"order": key.to_string(), "id": id, "escrow_remaining": after}),
        format!("order {id}: escrow now {}", m.tokens(after)),
    );
    Ok(())
}

/// The live leases of `order`.
fn leases_of(ctx: &Ctx, order: &Pubkey) -> Result<Vec<LeaseRef>, CliError> {
    Ok(ctx
        .chain
        .list_decoded::<Lease>(&filters::leases_of_order(order))?
        .iter()
        .map(|(_, l)| LeaseRef::of(l))
        .collect())
}

/// Leases a buyer ends per transaction (each names six accounts).
const END_LEASES_PER_TX: usize = 6;

fn cancel(ctx: &mut Ctx, id: u64) -> Result<(), CliError> {
    let buyer = ctx.wallet()?;
    let m = ctx.market()?;
    let (key, order) = my_order(ctx, &m, &buyer.pubkey(), id)?;
    ctx.require_sol(&buyer.pubkey(), 0)?;
    let now = ctx.chain.unix_time()?;
    if order.active_leases > 0 && !order.is_closing() {
        let outcome = ctx.send(
            "ask to close the order",
            &[ix::request_close(&m.addrs, &buyer.pubkey(), &key)],
            &buyer,
            &[],
        )?;
        let exit_ts = now + m.market.params.buyer_exit_window;
        ctx.report(
            "order close requested",
            &outcome,
            json!({"order": key.to_string(), "id": id, "active_leases": order.active_leases, "buyer_exit_ts": exit_ts}),
            format!(
                "order {id}: close requested. It takes no new lease and pays for no second after now; the orchestrator settles and closes its {} lease(s). Run `gpumesh order cancel {id}` again once they are closed, or after {} s at the latest (the market's exit window) to end them yourself.",
                order.active_leases, m.market.params.buyer_exit_window
            ),
        );
        return Ok(());
    }
    let mut ixs = vec![];
    if order.active_leases > 0 {
        if now < order.buyer_exit_ts {
            return Err(CliError::Input(format!(
                "order {id} still has {} active lease(s) and the orchestrator may settle and close them for {} more s (until unix time {}); run this again then",
                order.active_leases,
                order.buyer_exit_ts - now,
                order.buyer_exit_ts
            )));
        }
        let leases = leases_of(ctx, &key)?;
        let mut ends: Vec<_> = leases
            .iter()
            .map(|l| ix::end_lease(&m.addrs, &buyer.pubkey(), l))
            .collect();
        // All but the last few go in their own transactions; the rest ride with the cancel.
        while ends.len() > END_LEASES_PER_TX {
            let rest = ends.split_off(END_LEASES_PER_TX);
            ctx.send("end leases", &ends, &buyer, &[])?;
            ends = rest;
        }
        ixs.extend(ends);
    }
    let token = token::ata(&buyer.pubkey(), &m.addrs.mint);
    ixs.push(ix::cancel_order(&m.addrs, &buyer.pubkey(), &token, &key));
    let outcome = ctx.send("cancel order", &ixs, &buyer, &[])?;
    // What the order held when the cancel landed (receipts may have settled since it was read).
    let refund = outcome
        .events
        .iter()
        .find_map(|e| match e {
            gpumesh_client::GpumeshEvent::OrderClosed(c) => Some((c.refund, c.total_paid)),
            _ => None,
        })
        .unwrap_or((order.escrow_remaining, order.total_paid));
    ctx.report(
        "order cancel",
        &outcome,
        json!({"order": key.to_string(), "id": id, "refund": refund.0, "paid": refund.1, "leases_ended": order.active_leases}),
        format!(
            "cancelled order {id}: {} back to {token}, {} paid for service",
            m.tokens(refund.0),
            m.tokens(refund.1)
        ),
    );
    Ok(())
}

fn order_json(m: &MarketView, key: &Pubkey, o: &Order) -> Value {
    json!({
        "order": key.to_string(),
        "id": o.order_id,
        "buyer": o.buyer.to_string(),
        "class": GpuClass::from_code(o.terms.requirements.gpu_class).map(|c| c.to_string()).unwrap_or_default(),
        "gpus": o.terms.requirements.gpu_count,
        "regions": Region::from_set(o.terms.requirements.regions).iter().map(|r| r.name()).collect::<Vec<_>>(),
        "max_price_per_gpu_second": o.terms.max_price_per_gpu_second,
        "duration": o.terms.duration,
        "mode": format!("{:?}", o.terms.mode),
        "status": format!("{:?}", o.status),
        "escrow_deposited": o.escrow_deposited,
        "escrow_remaining": o.escrow_remaining,
        "total_paid": o.total_paid,
        "gpus_assigned": o.gpus_assigned,
        "active_leases": o.active_leases,
        "job_spec_hash": hex(&o.terms.job_spec_hash),
        "close_requested_ts": o.close_requested_ts,
        "buyer_exit_ts": o.buyer_exit_ts,
        "decimals": m.decimals,
    })
}

fn order_line(m: &MarketView, key: &Pubkey, o: &Order) -> String {
    let t = &o.terms;
    let class = GpuClass::from_code(t.requirements.gpu_class)
        .map(|c| c.to_string())
        .unwrap_or_else(|_| format!("class {}", t.requirements.gpu_class));
    let closing = if o.is_closing() {
        format!(
            "; close requested at {}, the buyer may end its leases from {}",
            o.close_requested_ts, o.buyer_exit_ts
        )
    } else {
        String::new()
    };
    format!(
        "order {} ({key}): {:?} {:?}, {}/{} x {class} assigned, {} active lease(s); escrow {} of {} left, {} paid; up to {} per GPU-second for {} s{closing}",
        o.order_id,
        t.mode,
        o.status,
        o.gpus_assigned,
        t.requirements.gpu_count,
        o.active_leases,
        m.tokens(o.escrow_remaining),
        m.tokens(o.escrow_deposited),
        m.tokens(o.total_paid),
        m.tokens(t.max_price_per_gpu_second),
        t.duration
    )
}

fn show(ctx: &mut Ctx, id: u64, buyer: Option<&str>) -> Result<(), CliError> {
    let buyer = buyer_key(ctx, buyer)?;
    let m = ctx.market()?;
    let (key, order) = my_order(ctx, &m, &buyer, id)?;
    ctx.print(order_json(&m, &key, &order), || {
        order_line(&m, &key, &order)
    });
    Ok(())
}

fn list(ctx: &mut Ctx, buyer: Option<&str>) -> Result<(), CliError> {
    let buyer = buyer_key(ctx, buyer)?;
    let m = ctx.market()?;
    let orders = orders_of(ctx, &m, &buyer)?;
    ctx.print(
        json!({"buyer": buyer.to_string(), "orders": orders.iter().map(|(k, o)| order_json(&m, k, o)).collect::<Vec<_>>()}),
        || {
            if orders.is_empty() {
                format!("no orders of {buyer} in this market")
            } else {
                orders
                    .iter()
                    .map(|(k, o)| order_line(&m, k, o))
                    .collect::<Vec<_>>()
                    .join("\n")
            }
        },
    );
    Ok(())
}
