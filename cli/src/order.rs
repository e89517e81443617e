//! `gpumesh order`: the buyer's commands. An order asks for GPUs (class, count, VRAM,
//! bandwidth, regions) at a max price for a duration, with escrow deposited up front and the hash
//! of a job-spec file on chain; it can be topped up, cancelled (unspent escrow back), shown and
//! listed. Cancelling an order that still has leases asks to close it first; after the market's
//! exit window the same command ends the leases and takes the escrow back, whatever the
//! orchestrator did.

use crate::context::{Ctx, Env, MarketView, Signed};
use crate::error::CliError;
use crate::output;
use crate::price::PriceArg;
use anchor_lang::prelude::Pubkey;
use gpumesh_client::chain::{Chain, ChainExt};
use gpumesh_client::ix::LeaseRef;
use gpumesh_client::program::instructions::CreateOrderArgs;
use gpumesh_client::program::state::{Lease, Order, OrderMode, OrderRequirements, OrderTerms};
use gpumesh_client::{Signer, filters, ix, token};
use gpumesh_protocol::hex;
use gpumesh_protocol::{GpuClass, Region};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::str::FromStr;

/// Most GPUs one order asks for (the program's `OrderRequirements::validate`).
const MAX_ORDER_GPUS: u16 = 4_096;

#[derive(clap::Subcommand)]
pub enum OrderCommand {
    /// Put escrow down and ask for GPUs.
    Create(CreateArgs),
    /// Add escrow to an order.
    TopUp {
        /// The order's id (`gpumesh order list` shows them).
        id: u64,
        /// Tokens to add, in whole tokens (e.g. 10 or 2.5).
        amount: String,
        #[command(flatten)]
        signed: Signed,
    },
    /// Cancel an order; its unspent escrow comes back. With active leases it first asks to close
    /// the order (no new lease, no pay for later seconds); run it again once the exit window is
    /// over to end the leases yourself.
    Cancel {
        /// The order's id (`gpumesh order list` shows them).
        id: u64,
        #[command(flatten)]
        signed: Signed,
    },
    /// Print an order.
    Show {
        /// The order's id (`gpumesh order list` shows them).
        id: u64,
        /// The buyer's address [default: --keypair's].
        #[arg(long, value_name = "ADDRESS")]
        buyer: Option<String>,
        #[command(flatten)]
        signed: Signed,
    },
    /// Upload an order's job spec to the market's orchestrator, signed with the wallet: the
    /// service starts the job only from the file whose hash the order carries.
    UploadSpec {
        /// The order's id (`gpumesh order list` shows them).
        id: u64,
        /// The job-spec file the order was created with.
        #[arg(value_name = "SPEC")]
        spec: PathBuf,
        /// The orchestrator service's URL (e.g. http://127.0.0.1:8910) [default on the local
        /// chain: the one `gpumesh up` runs].
        #[arg(long, env = "GPUMESH_ORCHESTRATOR", value_name = "URL")]
        orchestrator: Option<String>,
        #[command(flatten)]
        signed: Signed,
    },
    /// Follow an order live until it closes: placement, leases, the job, seconds served and
    /// settled, escrow runway, spend per second; then what it paid, what came back and the
    /// result's hash.
    Watch {
        /// The order's id (`gpumesh order list` shows them).
        id: u64,
        /// The orchestrator service's URL [default on the local chain: the one `gpumesh up`
        /// runs].
        #[arg(long, env = "GPUMESH_ORCHESTRATOR", value_name = "URL")]
        orchestrator: Option<String>,
        /// Give up (exit status 1) when the order has not closed after this many seconds; the
        /// order goes on.
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<u64>,
        #[command(flatten)]
        signed: Signed,
    },
    /// The job's output, from the orchestrator, in a request signed by the buyer's wallet.
    Logs {
        /// The order's id (`gpumesh order list` shows them).
        id: u64,
        /// Keep printing new output until the order closes (with --output json: one JSON object
        /// per chunk and line).
        #[arg(long, short = 'f')]
        follow: bool,
        /// The orchestrator service's URL [default on the local chain: the one `gpumesh up`
        /// runs].
        #[arg(long, env = "GPUMESH_ORCHESTRATOR", value_name = "URL")]
        orchestrator: Option<String>,
        #[command(flatten)]
        signed: Signed,
    },
    /// Turn an order's checkpoints off (no more snapshots are stored, and a job moved to another
    /// worker starts over) or on again (as its job spec says), in a request signed by the
    /// buyer's wallet.
    Checkpoints {
        /// The order's id (`gpumesh order list` shows them).
        id: u64,
        #[arg(value_enum)]
        switch: Switch,
        /// The orchestrator service's URL [default on the local chain: the one `gpumesh up`
        /// runs].
        #[arg(long, env = "GPUMESH_ORCHESTRATOR", value_name = "URL")]
        orchestrator: Option<String>,
        #[command(flatten)]
        signed: Signed,
    },
    /// List a buyer's orders in this market.
    List {
        /// The buyer's address [default: --keypair's].
        #[arg(long, value_name = "ADDRESS")]
        buyer: Option<String>,
        #[command(flatten)]
        signed: Signed,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Switch {
    On,
    Off,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Mode {
    /// Pay per second; leave any time (within the market's exit window); may be preempted by a
    /// reserved order with notice, paid for the seconds used.
    Spot,
    /// A term (default 7 days), funded up front at the max price; each lease's price is locked
    /// for the term and it is never preempted.
    Reserved,
}

/// A reserved order's term when `--duration` is not given: 7 days.
pub const RESERVED_TERM: u64 = 7 * 86_400;

#[derive(clap::Args)]
pub struct CreateArgs {
    /// GPU class by name (h100, a100-80gb, rtx4090, …).
    #[arg(long)]
    class: String,
    /// GPUs wanted (1 to 4096).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=i64::from(MAX_ORDER_GPUS)))]
    gpus: u16,
    /// Least VRAM per GPU with its unit, e.g. 80GiB or 81920MiB [default: any].
    #[arg(long, value_parser = crate::worker::parse_vram_arg)]
    min_vram: Option<u32>,
    /// Least memory bandwidth, GB/s.
    #[arg(long, default_value_t = 0)]
    min_bandwidth_gbps: u32,
    /// Allowed regions, comma-separated (us-east,eu-west,…).
    #[arg(long, value_delimiter = ',', required = true)]
    regions: Vec<String>,
    /// Most you pay, with its unit: whole tokens per GPU-hour (`1.44/h`) or per GPU-second
    /// (`0.0004/s`). An hourly price must be a whole number of base units per GPU-second; an
    /// inexact one is refused with the nearest exact prices.
    #[arg(long, value_parser = crate::price::parse_price_arg, value_name = "PRICE/h|PRICE/s")]
    max_price: PriceArg,
    /// Service per lease: seconds, or with a unit (90m, 12h, 7d). Reserved: the term, default 7d
    /// (604800 s). Spot: required, the job's time limit (a spot order has no term; it pays per
    /// second and leaves any time).
    #[arg(long, value_parser = crate::price::parse_duration_arg)]
    duration: Option<u64>,
    /// Escrow to deposit now, whole tokens.
    #[arg(long)]
    deposit: String,
    /// The job-spec file; its hash goes on chain (gpumesh's one job-spec hash: keyed BLAKE3 of
    /// the file's bytes), the file stays with you and the orchestrator.
    #[arg(long)]
    spec: PathBuf,
    /// Spot pays per second and may leave any time; reserved is funded for its whole term.
    #[arg(long, value_enum, default_value_t = Mode::Spot)]
    mode: Mode,
    /// The order's id [default: one above the wallet's highest in this market].
    #[arg(long)]
    id: Option<u64>,
    /// Upload the spec to this orchestrator once the order is created [default on the local
    /// chain: the one `gpumesh up` runs; elsewhere none: use `gpumesh order upload-spec`].
    #[arg(long, env = "GPUMESH_ORCHESTRATOR", value_name = "URL")]
    orchestrator: Option<String>,
    #[command(flatten)]
    signed: Signed,
}

pub fn run(env: &Env, cmd: &OrderCommand) -> Result<(), CliError> {
    let connect = |s: &Signed| -> Result<Ctx, CliError> {
        Ok(env
            .connect(&s.cluster)?
            .with_wallet(&s.wallet)
            .with_market(&s.market))
    };
    match cmd {
        OrderCommand::Create(args) => create(&mut connect(&args.signed)?, args),
        OrderCommand::TopUp { id, amount, signed } => top_up(&mut connect(signed)?, *id, amount),
        OrderCommand::Cancel { id, signed } => cancel(&mut connect(signed)?, *id),
        OrderCommand::Show { id, buyer, signed } => {
            show(&mut connect(signed)?, *id, buyer.as_deref())
        }
        OrderCommand::List { buyer, signed } => list(&mut connect(signed)?, buyer.as_deref()),
        OrderCommand::UploadSpec {
            id,
            spec,
            orchestrator,
            signed,
        } => upload_spec(&mut connect(signed)?, *id, spec, orchestrator.as_deref()),
        OrderCommand::Watch {
            id,
            orchestrator,
            timeout,
            signed,
        } => crate::watch::watch(
            &mut connect(signed)?,
            *id,
            orchestrator.as_deref(),
            *timeout,
        ),
        OrderCommand::Logs {
            id,
            follow,
            orchestrator,
            signed,
        } => crate::watch::logs(&mut connect(signed)?, *id, *follow, orchestrator.as_deref()),
        OrderCommand::Checkpoints {
            id,
            switch,
            orchestrator,
            signed,
        } => checkpoints(
            &mut connect(signed)?,
            *id,
            *switch == Switch::On,
            orchestrator.as_deref(),
        ),
    }
}

/// PUTs the spec to the orchestrator with the buyer's signature over
/// `gpumesh_protocol::jobspec::upload_message`.
fn upload_spec(
    ctx: &mut Ctx,
    id: u64,
    path: &PathBuf,
    orchestrator: Option<&str>,
) -> Result<(), CliError> {
    let buyer = ctx.wallet()?;
    let m = ctx.market()?;
    let orchestrator = crate::watch::orchestrator_url(ctx, orchestrator)?;
    let (key, order) = my_order(ctx, &m, &buyer.pubkey(), id)?;
    let spec = std::fs::read(path).map_err(|e| {
        CliError::Input(format!("cannot read the job spec {}: {e}", path.display()))
    })?;
    if gpumesh_protocol::job_spec_hash(&spec) != order.terms.job_spec_hash {
        return Err(CliError::Input(format!(
            "{} is not the spec order {id} was created with (its hash differs): upload that exact file",
            path.display()
        )));
    }
    send_spec(&buyer, &key, spec, &orchestrator)?;
    ctx.print(
        json!({"order": key.to_string(), "id": id, "uploaded": true, "orchestrator": orchestrator}),
        || format!("order {id}: job spec uploaded to {orchestrator}; the job starts when a worker is placed"),
    );
    Ok(())
}

/// Turns an order's checkpoints on or off with the buyer's signature over
/// `gpumesh_protocol::jobspec::checkpoints_message`.
fn checkpoints(
    ctx: &mut Ctx,
    id: u64,
    enabled: bool,
    orchestrator: Option<&str>,
) -> Result<(), CliError> {
    let buyer = ctx.wallet()?;
    let m = ctx.market()?;
    let orchestrator = crate::watch::orchestrator_url(ctx, orchestrator)?;
    let (key, _) = my_order(ctx, &m, &buyer.pubkey(), id)?;
    let unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let message = gpumesh_protocol::jobspec::checkpoints_message(&key.to_bytes(), enabled, unix_ms);
    let signature = gpumesh_client::Signer::sign_message(&buyer, &message);
    let request = reqwest::blocking::Client::new()
        .put(order_url(&orchestrator, &key, "checkpoints"))
        .header("x-gpumesh-signature", signature.to_string())
        .header("x-gpumesh-unix-ms", unix_ms.to_string())
        .header("content-type", "application/json")
        .body(json!({ "enabled": enabled }).to_string());
    let (status, body) = send_to(&orchestrator, request)?;
    if !status.is_success() {
        return Err(CliError::Input(format!(
            "the orchestrator refused to turn order {id}'s checkpoints {} ({status}): {body}",
            if enabled { "on" } else { "off" }
        )));
    }
    let info: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    ctx.print(
        json!({"order": key.to_string(), "id": id, "checkpoints": info}),
        || {
            let kept = format!(
                "{} checkpoint(s), {} bytes kept",
                info["stored"].as_u64().unwrap_or(0),
                info["stored_bytes"].as_u64().unwrap_or(0)
            );
            if enabled {
                format!("order {id}: checkpoints on (as its job spec says); {kept}")
            } else {
                format!("order {id}: checkpoints off: no more snapshots, a moved job starts over; {kept}")
            }
        },
    );
    Ok(())
}

/// The signed PUT of a job spec.
fn send_spec(
    buyer: &gpumesh_client::Keypair,
    key: &Pubkey,
    spec: Vec<u8>,
    orchestrator: &str,
) -> Result<(), CliError> {
    let message = gpumesh_protocol::jobspec::upload_message(&key.to_bytes(), &spec);
    let signature = gpumesh_client::Signer::sign_message(buyer, &message);
    let request = reqwest::blocking::Client::new()
        .put(order_url(orchestrator, key, "spec"))
        .header("x-gpumesh-signature", signature.to_string())
        .body(spec);
    let (status, body) = send_to(orchestrator, request)?;
    if !status.is_success() {
        return Err(CliError::Input(format!(
            "the orchestrator refused the spec ({status}): {body}"
        )));
    }
    Ok(())
}

/// `{orchestrator}/v1/orders/{order}/{what}`.
fn order_url(orchestrator: &str, order: &Pubkey, what: &str) -> String {
    format!(
        "{}/v1/orders/{order}/{what}",
        orchestrator.trim_end_matches('/')
    )
}

/// Sends a request to the orchestrator: its status and body, or an error that says where the
/// orchestrator should be when it does not answer.
fn send_to(
    orchestrator: &str,
    request: reqwest::blocking::RequestBuilder,
) -> Result<(reqwest::StatusCode, String), CliError> {
    let response = request.send().map_err(|e| {
        CliError::Input(format!(
            "the orchestrator at {orchestrator} did not answer ({e}): check --orchestrator and that `gpumesh up` or `gpumesh orchestrator run` is up"
        ))
    })?;
    let status = response.status();
    Ok((status, response.text().unwrap_or_default()))
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
    // The orchestrator starts a job only from a spec it can run: refuse one it would refuse
    // before its hash goes on chain with the escrow.
    let parsed = std::str::from_utf8(&spec)
        .map_err(|_| "the file is not UTF-8 text".to_string())
        .and_then(|text| {
            gpumesh_protocol::wire::JobSpec::from_toml(text).map_err(|e| e.to_string())
        })
        .map_err(|e| {
            CliError::Input(format!(
                "{} is not a job spec the orchestrator can run ({e}): examples/hello.toml shows the format",
                args.spec.display()
            ))
        })?;
    if parsed.gpus > args.gpus {
        return Err(CliError::Input(format!(
            "the job spec asks for {} GPUs but the order rents {}: raise --gpus or lower `gpus` in {}",
            parsed.gpus,
            args.gpus,
            args.spec.display()
        )));
    }
    let job_spec_hash = gpumesh_protocol::job_spec_hash(&spec);
    let buyer = ctx.wallet()?;
    let m = ctx.market()?;
    let max_price = m.price("--max-price", &args.max_price)?;
    let deposit = m.parse("--deposit", &args.deposit)?;
    if max_price == 0 {
        return Err(CliError::Input("--max-price must be more than 0".into()));
    }
    let duration = match (args.duration, args.mode) {
        (Some(d), _) => d,
        (None, Mode::Reserved) => RESERVED_TERM,
        (None, Mode::Spot) => {
            return Err(CliError::Input(
                "a spot order needs --duration, the most service one lease may bill (e.g. --duration 2h); spot has no term: it pays per second and you can cancel any time. A reserved order's term defaults to 7d".into(),
            ));
        }
    };
    if deposit == 0 {
        return Err(CliError::Input(
            "--deposit must be more than 0 tokens: the escrow pays for every second served".into(),
        ));
    }
    if m.market.paused {
        return Err(CliError::Input(format!(
            "market {} is paused: it takes no new orders until its authority resumes it (`gpumesh market update --resume`)",
            m.addrs.market
        )));
    }
    if matches!(args.mode, Mode::Reserved) {
        // The program's rule: a reserved order is funded for its whole term up front.
        // u64 × u16 × u64 can pass u128: checked, and anything past u64 cannot be deposited.
        let term = u128::from(max_price)
            .checked_mul(u128::from(args.gpus))
            .and_then(|t| t.checked_mul(u128::from(duration)));
        if term.is_none_or(|t| u128::from(deposit) < t) {
            let Some(need) = term
                .and_then(|t| u64::try_from(t).ok())
                .map(|t| m.tokens(t))
            else {
                return Err(CliError::Input(format!(
                    "a reserved order must be funded for its whole term, and {} GPU(s) x {} at {} cost more than a token account can hold: lower --gpus, --duration or --max-price",
                    args.gpus,
                    output::duration(duration),
                    m.price_text(max_price)
                )));
            };
            return Err(CliError::Input(format!(
                "a reserved order must be funded for its whole term: max price {} x {} GPU(s) x {} s = {need} tokens ({}/h per GPU for {}), and --deposit is {}. Deposit at least {need} (--deposit {need}), shorten the term with --duration (default 7d), or use --mode spot",
                m.tokens(max_price),
                args.gpus,
                duration,
                crate::price::per_gpu_hour(max_price, m.decimals),
                output::duration(duration),
                m.tokens(deposit)
            )));
        }
    }
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
                        min_vram_mib: args.min_vram.unwrap_or(0),
                        min_bandwidth_gbps: args.min_bandwidth_gbps,
                        regions: Region::set(&regions),
                    },
                    max_price_per_gpu_second: max_price,
                    duration,
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
    // Where a service is known, it gets the spec now (the order stands whatever it answers).
    let upload = crate::watch::known_orchestrator(ctx, args.orchestrator.as_deref())
        .map(|url| (send_spec(&buyer, &order, spec.clone(), &url), url));
    let (upload_json, upload_text) = match &upload {
        None => (
            json!(null),
            format!(
                "upload the spec to the market's orchestrator: `gpumesh order upload-spec {id} {} --orchestrator URL`",
                args.spec.display()
            ),
        ),
        Some((Ok(()), url)) => (
            json!({"orchestrator": url, "uploaded": true}),
            format!("job spec uploaded to {url}; watch it with `gpumesh order watch {id}`"),
        ),
        Some((Err(e), url)) => (
            json!({"orchestrator": url, "uploaded": false, "error": e.to_string()}),
            format!(
                "the order stands, but the spec did not reach {url} ({e}): run `gpumesh order upload-spec {id} {}`",
                args.spec.display()
            ),
        ),
    };
    let vram = match args.min_vram {
        Some(v) => format!(" with at least {} each", output::vram(v)),
        None => String::new(),
    };
    ctx.report(
        "order create",
        &outcome,
        m.with_units(json!({
            "order": order.to_string(),
            "id": id,
            "mode": format!("{mode:?}"),
            "duration": duration,
            "max_price_per_gpu_second": m.amount(max_price),
            "max_price_per_gpu_hour": m.per_hour(max_price),
            "deposit": m.amount(deposit),
            "job_spec_hash": hash_hex,
            "spec_upload": upload_json,
        })),
        format!(
            "created order {id} ({order}): {} x {class}{vram}, up to {} for {}{}, {} in escrow\njob spec hash {hash_hex}\n{upload_text}",
            args.gpus,
            m.price_text(max_price),
            output::duration(duration),
            match mode {
                OrderMode::Reserved => " (reserved: each lease's price is locked for the term)",
                OrderMode::Spot => " (spot)",
            },
            m.tokens(deposit)
        ),
    );
    Ok(())
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
    if amount == 0 {
        return Err(CliError::Input("top up more than 0 tokens".into()));
    }
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
        m.with_units(json!({"order": key.to_string(), "id": id, "amount": m.amount(amount), "escrow_remaining": m.amount(after)})),
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
        let exit_ts = ctx
            .chain
            .fetch_opt::<Order>(&key)?
            .map(|o| o.buyer_exit_ts)
            .unwrap_or(now + m.market.params.buyer_exit_window);
        ctx.report(
            "order close requested",
            &outcome,
            json!({"order": key.to_string(), "id": id, "active_leases": order.active_leases, "buyer_exit_ts": exit_ts, "buyer_exit_at": output::date_json(exit_ts)}),
            format!(
                "order {id}: close requested. It takes no new lease and pays for no second after now; the orchestrator settles and closes its {} lease(s). Run `gpumesh order cancel {id}` again once they are closed, or from {} at the latest (the market's exit window, {}) to end them yourself.",
                order.active_leases,
                output::date(exit_ts),
                output::duration(m.market.params.buyer_exit_window.max(0) as u64)
            ),
        );
        return Ok(());
    }
    let mut ixs = vec![];
    if order.active_leases > 0 {
        if now < order.buyer_exit_ts {
            return Err(CliError::Input(format!(
                "order {id} still has {} active lease(s) and the orchestrator may settle and close them for {} more (until {}); run this again then",
                order.active_leases,
                output::duration(order.buyer_exit_ts.saturating_sub(now).max(0) as u64),
                output::date(order.buyer_exit_ts)
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
        m.with_units(json!({"order": key.to_string(), "id": id, "refund": m.amount(refund.0), "paid": m.amount(refund.1), "leases_ended": order.active_leases})),
        format!(
            "cancelled order {id}: {} back to {token}, {} paid for service",
            m.tokens(refund.0),
            m.tokens(refund.1)
        ),
    );
    Ok(())
}

fn order_json(m: &MarketView, key: &Pubkey, o: &Order) -> Value {
    let r = &o.terms.requirements;
    json!({
        "order": key.to_string(),
        "id": o.order_id,
        "buyer": o.buyer.to_string(),
        "class": GpuClass::from_code(r.gpu_class).map(|c| c.to_string()).unwrap_or_default(),
        "gpus": r.gpu_count,
        "min_vram_mib": r.min_vram_mib,
        "min_bandwidth_gbps": r.min_bandwidth_gbps,
        "regions": Region::from_set(r.regions).iter().map(|r| r.name()).collect::<Vec<_>>(),
        "max_price_per_gpu_second": m.amount(o.terms.max_price_per_gpu_second),
        "max_price_per_gpu_hour": m.per_hour(o.terms.max_price_per_gpu_second),
        "duration": o.terms.duration,
        "mode": format!("{:?}", o.terms.mode),
        "status": format!("{:?}", o.status),
        "escrow_deposited": m.amount(o.escrow_deposited),
        "escrow_remaining": m.amount(o.escrow_remaining),
        "total_paid": m.amount(o.total_paid),
        "gpus_assigned": o.gpus_assigned,
        "active_leases": o.active_leases,
        "job_spec_hash": hex(&o.terms.job_spec_hash),
        "created_ts": o.created_ts,
        "created_at": output::date_json(o.created_ts),
        "close_requested_ts": o.close_requested_ts,
        "close_requested_at": output::date_json(o.close_requested_ts),
        "buyer_exit_ts": o.buyer_exit_ts,
        "buyer_exit_at": output::date_json(o.buyer_exit_ts),
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
            output::date(o.close_requested_ts),
            output::date(o.buyer_exit_ts)
        )
    } else {
        String::new()
    };
    let vram = if t.requirements.min_vram_mib > 0 {
        format!(
            " (at least {} each)",
            output::vram(t.requirements.min_vram_mib)
        )
    } else {
        String::new()
    };
    format!(
        "order {} ({key}): {:?} {:?}, {}/{} x {class}{vram} assigned, {} active lease(s); escrow {} of {} left, {} paid; up to {} for {}; created {}{closing}",
        o.order_id,
        t.mode,
        o.status,
        o.gpus_assigned,
        t.requirements.gpu_count,
        o.active_leases,
        m.tokens(o.escrow_remaining),
        m.tokens(o.escrow_deposited),
        m.tokens(o.total_paid),
        m.price_text(t.max_price_per_gpu_second),
        output::duration(t.duration),
        output::date(o.created_ts)
    )
}

fn show(ctx: &mut Ctx, id: u64, buyer: Option<&str>) -> Result<(), CliError> {
    let buyer = buyer_key(ctx, buyer)?;
    let m = ctx.market()?;
    let (key, order) = my_order(ctx, &m, &buyer, id)?;
    ctx.print(m.with_units(order_json(&m, &key, &order)), || {
        order_line(&m, &key, &order)
    });
    Ok(())
}

fn list(ctx: &mut Ctx, buyer: Option<&str>) -> Result<(), CliError> {
    let buyer = buyer_key(ctx, buyer)?;
    let m = ctx.market()?;
    let orders = orders_of(ctx, &m, &buyer)?;
    ctx.print(
        m.with_units(json!({"buyer": buyer.to_string(), "orders": orders.iter().map(|(k, o)| order_json(&m, k, o)).collect::<Vec<_>>()})),
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
