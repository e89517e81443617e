//! `gpumesh demo`: one buyer, one supplier and the orchestrator go through the whole market
//! flow on the in-process chain (the real runtime with the program loaded), and every step is
//! told with the balances it moved. Everything shown is read back from the chain.

use crate::amount::format;
use crate::context::Env;
use crate::error::CliError;
use crate::output;
use anchor_lang::prelude::Pubkey;
use gpumesh_client::ix::{self, LeaseRef};
use gpumesh_client::program::instructions::{CreateOrderArgs, RegisterWorkerArgs};
use gpumesh_client::program::state::{
    CloseReason, HardwareClaim, Market, MarketParams, Order, OrderMode, OrderRequirements,
    OrderTerms, Worker,
};
use gpumesh_client::{
    Chain, ChainError, ChainExt, GpumeshEvent, Keypair, SignedReceipt, Signer, receipt,
};
use gpumesh_orchestrator::actions::Orchestrator;
use gpumesh_protocol::{GpuClass, LeaseService, Region, job_spec_hash};
use gpumesh_svm::SvmChain;
use gpumesh_svm::fixtures::LocalMarket;
use serde_json::{Value, json};

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Decimals of the demo payment mint.
    #[arg(long, default_value_t = 6)]
    decimals: u8,
}

const DAY: i64 = 86_400;

struct Demo<'s> {
    chain: SvmChain,
    m: LocalMarket,
    step: u32,
    buyer: Keypair,
    owner: Keypair,
    node: Keypair,
    /// The second supplier, once it exists (the one that fails).
    owner2: Option<Keypair>,
    minted: u64,
    /// With `--output json`: the steps told so far, printed as one document at the end.
    steps: &'s mut Option<Vec<Value>>,
}

impl Demo<'_> {
    fn tokens(&self, base: u64) -> String {
        format(base, self.m.decimals)
    }

    fn say(&mut self, what: &str) {
        self.step += 1;
        match &mut *self.steps {
            Some(steps) => steps.push(json!({"step": self.step, "what": what, "details": []})),
            None => output::line(&format!("\n{:>2}. {what}", self.step)),
        }
    }

    fn detail(&mut self, line: impl AsRef<str>) {
        match self.steps.as_mut().and_then(|s| s.last_mut()) {
            Some(step) => {
                if let Some(details) = step["details"].as_array_mut() {
                    details.push(json!(line.as_ref()));
                }
            }
            None => output::line(&format!("    {}", line.as_ref())),
        }
    }

    fn balances(&mut self) -> Result<(), ChainError> {
        let a = &self.m.addrs;
        let market: Market = self.chain.fetch(&a.market)?;
        let mut rows = vec![
            (
                "buyer wallet",
                self.m.balance_of(&self.chain, &self.buyer.pubkey())?,
            ),
            (
                "supplier wallet",
                self.m.balance_of(&self.chain, &self.owner.pubkey())?,
            ),
        ];
        if let Some(owner2) = &self.owner2 {
            rows.push((
                "supplier 2 wallet",
                self.m.balance_of(&self.chain, &owner2.pubkey())?,
            ));
        }
        rows.extend([
            ("escrow vault", self.chain.token_balance(&a.escrow_vault)?),
            ("stake vault", self.chain.token_balance(&a.stake_vault)?),
            (
                "treasury vault",
                self.chain.token_balance(&a.treasury_vault)?,
            ),
        ]);
        let line = rows
            .iter()
            .map(|(k, v)| format!("{k} {}", self.tokens(*v)))
            .collect::<Vec<_>>()
            .join(" | ");
        self.detail(format!("balances: {line}"));
        self.detail(format!(
            "escrow vault = orders' escrow {} + workers' unclaimed earnings {}",
            self.tokens(market.total_escrow),
            self.tokens(market.total_claimable)
        ));
        Ok(())
    }

    fn events(&mut self, events: &[GpumeshEvent]) {
        for e in events {
            let line = match e {
                GpumeshEvent::ReceiptSettled(e) => format!(
                    "event ReceiptSettled: seconds {} -> {}, paid {} (fee {}), escrow {} -> {}, worker claimable {} -> {}",
                    e.seconds_before,
                    e.seconds_after,
                    self.tokens(e.amount),
                    self.tokens(e.fee),
                    self.tokens(e.escrow_before),
                    self.tokens(e.escrow_after),
                    self.tokens(e.claimable_before),
                    self.tokens(e.claimable_after)
                ),
                GpumeshEvent::StakeChanged(e) => format!(
                    "event StakeChanged ({:?}): stake {} -> {}, unbonding {} -> {}",
                    e.kind,
                    self.tokens(e.stake_before),
                    self.tokens(e.stake_after),
                    self.tokens(e.unbonding_before),
                    self.tokens(e.unbonding_after)
                ),
                GpumeshEvent::OrderClosed(e) => format!(
                    "event OrderClosed: paid {}, refund {}",
                    self.tokens(e.total_paid),
                    self.tokens(e.refund)
                ),
                GpumeshEvent::LeaseClosed(e) => format!(
                    "event LeaseClosed ({:?}): {} s settled, {} paid",
                    e.reason,
                    e.seconds_settled,
                    self.tokens(e.amount_paid)
                ),
                GpumeshEvent::WorkerSlashed(e) => format!(
                    "event WorkerSlashed ({:?}): {} taken, {} to the buyer, {} to the treasury; stake {} -> {}",
                    e.reason,
                    self.tokens(e.amount),
                    self.tokens(e.to_buyer),
                    self.tokens(e.to_treasury),
                    self.tokens(e.stake_before),
                    self.tokens(e.stake_after)
                ),
                other => format!("event {}", event_name(other)),
            };
            self.detail(line);
        }
    }
}

impl Demo<'_> {
    /// What the worker's daemon keeps for one lease instance: its heartbeat chain.
    fn lease_service(&self, lease: &LeaseRef) -> LeaseService {
        LeaseService::new(
            receipt::key(&gpumesh_client::program::ID),
            receipt::key(&lease.lease),
            lease.nonce,
        )
    }

    /// The worker records a heartbeat at `served_seconds` (with its telemetry) and signs a
    /// receipt for it from its chain.
    fn serve(
        &self,
        service: &mut LeaseService,
        node: &Keypair,
        served_seconds: u64,
    ) -> Result<SignedReceipt, Box<dyn std::error::Error>> {
        let now_ms = self.chain.unix_time()? as u64 * 1_000;
        let telemetry = format!("8 x H100: 64 C, 97% busy, {served_seconds} s served");
        service.heartbeat(now_ms, served_seconds, telemetry.as_bytes())?;
        Ok(service.receipt(&receipt::signing_key(node)))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn event_name(e: &GpumeshEvent) -> String {
    let debug = format!("{e:?}");
    debug.split('(').next().unwrap_or_default().to_string()
}

fn short(k: &Pubkey) -> String {
    let s = k.to_string();
    format!("{}…{}", &s[..4], &s[s.len() - 4..])
}

const ABOUT: &str = "gpumesh demo: the market flow in an in-process Solana runtime (LiteSVM), with the gpumesh program loaded and SPL Token running as its real program.";

/// Tells the demo: narrated in text, or one JSON document of its steps and whether every token
/// is accounted for.
pub fn run(env: &Env, args: &DemoArgs) -> Result<(), CliError> {
    let mut steps = env.json().then(Vec::new);
    let result = if env.json() {
        let _quiet = output::StdoutOnStderr::new();
        narrate(args, &mut steps)
    } else {
        narrate(args, &mut steps)
    };
    result.map_err(|e| CliError::Input(format!("the demo stopped: {e}")))?;
    if let Some(steps) = steps {
        env.print(
            json!({"about": ABOUT, "steps": steps, "balanced": true}),
            String::new,
        );
    }
    Ok(())
}

fn narrate(
    args: &DemoArgs,
    steps: &mut Option<Vec<Value>>,
) -> Result<(), Box<dyn std::error::Error>> {
    let one = 10u64.pow(args.decimals as u32);
    if steps.is_none() {
        output::line("gpumesh demo: the market flow in an in-process Solana runtime (LiteSVM),");
        output::line("with the gpumesh program loaded and SPL Token running as its real program.");
    }

    let mut chain = SvmChain::new();
    let params = MarketParams {
        protocol_fee_bps: 250,
        min_stake_per_gpu: 100 * one,
        ..MarketParams::default()
    };
    let m = LocalMarket::create(&mut chain, params, args.decimals)?;
    let buyer = m.funded_user(&mut chain, 100 * one)?;
    let owner = m.funded_user(&mut chain, 1_000 * one)?;
    let mut d = Demo {
        chain,
        m,
        step: 0,
        buyer,
        owner,
        node: Keypair::new(),
        owner2: None,
        minted: 1_100 * one,
        steps,
    };
    let a = d.m.addrs;
    let orchestrator = Orchestrator::new(a, d.m.orchestrator.insecure_clone());

    d.say("The operator creates a market for a payment mint");
    d.detail(format!(
        "market {} for mint {} ({} decimals)",
        short(&a.market),
        short(&a.mint),
        args.decimals
    ));
    d.detail(format!(
        "protocol fee {:.2}%, minimum stake {} per GPU, unbonding {} days, vaults owned by the market",
        params.protocol_fee_bps as f64 / 100.0,
        d.tokens(params.min_stake_per_gpu),
        params.unbonding_period / DAY
    ));
    d.detail(format!(
        "buyer {} holds {}; supplier {} holds {}",
        short(&d.buyer.pubkey()),
        d.tokens(100 * one),
        short(&d.owner.pubkey()),
        d.tokens(1_000 * one)
    ));

    let class: GpuClass = "h100".parse()?;
    let region: Region = "eu-west".parse()?;
    let price = 300; // base units per GPU-second
    let hardware = HardwareClaim {
        gpu_class: class.code(),
        gpu_count: 8,
        vram_mib: 81_920,
        bandwidth_gbps: 3_350,
        region: region.code(),
    };
    d.say("A supplier registers an 8 x H100 machine and stakes");
    let owner_token = d.m.token_account(&d.owner.pubkey());
    let worker = a.worker(&d.owner.pubkey());
    let out = d.chain.send(
        &[
            ix::register_worker(
                &a,
                &d.owner.pubkey(),
                RegisterWorkerArgs {
                    node_key: d.node.pubkey(),
                    hardware,
                    price_per_gpu_second: price,
                },
            ),
            ix::stake(&a, &d.owner.pubkey(), &owner_token, 1_000 * one),
        ],
        &d.owner,
        &[],
    )?;
    d.detail(format!(
        "worker {}: 8 x {class}, 80 GiB, 3350 GB/s, {region}, asking {} per GPU-second; node key {} signs receipts",
        short(&worker),
        d.tokens(price),
        short(&d.node.pubkey())
    ));
    d.detail(format!("tx {}", short_sig(&out.signature)));
    d.events(&out.events);
    d.balances()?;

    d.say("A buyer orders 8 x H100 in eu-west and puts 60 tokens in escrow");
    let requirements = OrderRequirements {
        gpu_class: class.code(),
        gpu_count: 8,
        min_vram_mib: 40_000,
        min_bandwidth_gbps: 2_000,
        regions: Region::set(&[region]),
    };
    let buyer_token = d.m.token_account(&d.buyer.pubkey());
    let order_id = 1;
    let order = a.order(&d.buyer.pubkey(), order_id);
    d.chain.send(
        &[ix::create_order(
            &a,
            &d.buyer.pubkey(),
            &buyer_token,
            CreateOrderArgs {
                order_id,
                terms: OrderTerms {
                    requirements,
                    max_price_per_gpu_second: 400,
                    duration: 2 * 3_600,
                    mode: OrderMode::Spot,
                    job_spec_hash: job_spec_hash(b"image = \"pytorch/pytorch\"\n"),
                },
                deposit: 60 * one,
            },
        )],
        &d.buyer,
        &[],
    )?;
    d.detail(format!(
        "order {}: max {} per GPU-second, 2 hours, spot",
        short(&order),
        d.tokens(400)
    ));
    d.balances()?;

    d.say("The orchestrator assigns the worker to the order (the program checks class, VRAM, bandwidth, region, price, free GPUs, stake)");
    let (lease, out) = orchestrator.assign(&mut d.chain, &order, &worker, 8)?;
    d.events(&out.events);
    d.detail(format!(
        "lease {} (instance {}): 8 GPUs at {} per GPU-second = {} per hour",
        short(&lease.lease),
        lease.nonce,
        d.tokens(price),
        d.tokens(price * 8 * 3_600)
    ));

    d.say("10 minutes pass; the worker's heartbeats chain by hash, it signs a receipt for 600 s and the orchestrator settles it");
    d.chain.warp(600)?;
    let mut service = d.lease_service(&lease);
    let r1 = d.serve(&mut service, &d.node, 600)?;
    d.detail(format!(
        "receipt: 600 s on instance {}, heartbeat chain head {}…, verifies off chain: {}; on chain through the Ed25519 precompile",
        r1.lease_nonce,
        hex(&r1.chain_head[..6]),
        r1.verify(Some(&receipt::key(&d.node.pubkey()))).is_ok()
    ));
    let outs = orchestrator.settle(&mut d.chain, &[(lease, r1.clone())])?;
    for out in &outs {
        d.events(&out.events);
    }
    d.balances()?;

    d.say("The same receipt sent again is refused: the same seconds are never paid twice");
    match orchestrator.settle(&mut d.chain, &[(lease, r1)]) {
        Err(e) => d.detail(format!("refused: {e}")),
        Ok(_) => return Err("a replayed receipt was accepted".into()),
    }
    d.say("A receipt claiming more seconds than have passed is refused");
    let greedy = d.serve(&mut service, &d.node, 700)?;
    match orchestrator.settle(&mut d.chain, &[(lease, greedy)]) {
        Err(e) => d.detail(format!("refused: {e}")),
        Ok(_) => return Err("a receipt beyond wall time was accepted".into()),
    }

    d.say("20 more minutes; the job ends: final receipt, settlement and lease close in one transaction");
    d.chain.warp(1_200)?;
    let r2 = d.serve(&mut service, &d.node, 1_800)?;
    let out = orchestrator.end_lease(&mut d.chain, &lease, Some(r2), CloseReason::Completed)?;
    d.events(&out.events);
    let w: Worker = d.chain.fetch(&worker)?;
    d.detail(format!(
        "worker has {} of {} GPUs leased again; served {} GPU-seconds",
        w.gpus_leased, w.hardware.gpu_count, w.record.served_gpu_seconds
    ));
    d.balances()?;

    d.say("The buyer completes the order and gets the unspent escrow back");
    let o: Order = d.chain.fetch(&order)?;
    d.detail(format!(
        "escrow left {}, paid {}",
        d.tokens(o.escrow_remaining),
        d.tokens(o.total_paid)
    ));
    let out = d.chain.send(
        &[ix::complete_order(
            &a,
            &d.buyer.pubkey(),
            &d.buyer.pubkey(),
            &buyer_token,
            &order,
            [0; 32],
        )],
        &d.buyer,
        &[],
    )?;
    d.events(&out.events);
    d.balances()?;

    d.say("The supplier claims its earnings");
    let out = d.chain.send(
        &[ix::claim_earnings(&a, &d.owner.pubkey(), &owner_token)],
        &d.owner,
        &[],
    )?;
    if let [GpumeshEvent::EarningsClaimed(e)] = &out.events[..] {
        d.detail(format!("claimed {}", d.tokens(e.amount)));
    }
    d.balances()?;

    d.say("A second, cheaper supplier registers an 8 x H100 machine and stakes 1000; the buyer orders again");
    let owner2 = d.m.funded_user(&mut d.chain, 1_000 * one)?;
    d.minted += 1_000 * one;
    let node2 = Keypair::new();
    let owner2_token = d.m.token_account(&owner2.pubkey());
    let worker2 = a.worker(&owner2.pubkey());
    d.chain.send(
        &[
            ix::register_worker(
                &a,
                &owner2.pubkey(),
                RegisterWorkerArgs {
                    node_key: node2.pubkey(),
                    hardware,
                    price_per_gpu_second: 250,
                },
            ),
            ix::stake(&a, &owner2.pubkey(), &owner2_token, 1_000 * one),
        ],
        &owner2,
        &[],
    )?;
    d.owner2 = Some(owner2.insecure_clone());
    let order2 = a.order(&d.buyer.pubkey(), 2);
    d.chain.send(
        &[ix::create_order(
            &a,
            &d.buyer.pubkey(),
            &buyer_token,
            CreateOrderArgs {
                order_id: 2,
                terms: OrderTerms {
                    requirements,
                    max_price_per_gpu_second: 400,
                    duration: 3_600,
                    mode: OrderMode::Spot,
                    job_spec_hash: job_spec_hash(b"image = \"render\"\n"),
                },
                deposit: 10 * one,
            },
        )],
        &d.buyer,
        &[],
    )?;
    d.detail(format!(
        "worker {} asks {} per GPU-second; order {} holds 10 in escrow",
        short(&worker2),
        d.tokens(250),
        short(&order2)
    ));
    d.balances()?;

    d.say("Order 2 goes to the cheaper supplier; it serves 5 minutes, then its heartbeats stop");
    let (lease2, _) = orchestrator.assign(&mut d.chain, &order2, &worker2, 8)?;
    d.chain.warp(300)?;
    let mut service2 = d.lease_service(&lease2);
    let last = d.serve(&mut service2, &node2, 300)?;
    d.chain.warp(20)?;
    d.say("Past the grace period the orchestrator settles the last receipt and closes the lease as offline");
    let out = orchestrator.end_lease(
        &mut d.chain,
        &lease2,
        Some(last),
        CloseReason::WorkerOffline,
    )?;
    d.events(&out.events);
    let o2: Order = d.chain.fetch(&order2)?;
    d.detail(format!(
        "order 2 is {:?} again with {} of escrow left; the buyer was paid the slash",
        o2.status,
        d.tokens(o2.escrow_remaining)
    ));
    d.balances()?;

    d.say("The order is re-placed on the first supplier, which finishes it (10 minutes)");
    let (lease3, _) = orchestrator.assign(&mut d.chain, &order2, &worker, 8)?;
    d.chain.warp(600)?;
    let mut service3 = d.lease_service(&lease3);
    let r = d.serve(&mut service3, &d.node, 600)?;
    let out = orchestrator.end_lease(&mut d.chain, &lease3, Some(r), CloseReason::Completed)?;
    d.events(&out.events);
    let out = orchestrator.complete_order(
        &mut d.chain,
        &order2,
        *blake3::hash(b"rendered frames").as_bytes(),
    )?;
    d.events(&out.events);
    d.chain.send(
        &[ix::claim_earnings(&a, &d.owner.pubkey(), &owner_token)],
        &d.owner,
        &[],
    )?;
    d.chain.send(
        &[ix::claim_earnings(&a, &owner2.pubkey(), &owner2_token)],
        &owner2,
        &[],
    )?;
    d.detail("both suppliers claim their earnings");
    d.balances()?;

    d.say("The supplier unstakes: the stake unbonds for 14 days, then comes back");
    let out = d.chain.send(
        &[ix::request_unstake(
            &a,
            &d.owner.pubkey(),
            &owner_token,
            1_000 * one,
        )],
        &d.owner,
        &[],
    )?;
    d.events(&out.events);
    match d.chain.send(
        &[ix::withdraw_unstaked(&a, &d.owner.pubkey(), &owner_token)],
        &d.owner,
        &[],
    ) {
        Err(e) => d.detail(format!("withdrawing at once is refused: {e}")),
        Ok(_) => return Err("an early withdrawal was accepted".into()),
    }
    d.chain.warp(14 * DAY)?;
    let out = d.chain.send(
        &[ix::withdraw_unstaked(&a, &d.owner.pubkey(), &owner_token)],
        &d.owner,
        &[],
    )?;
    d.detail("14 days later:");
    d.events(&out.events);
    d.balances()?;

    d.say("Totals");
    let wallets = [d.buyer.pubkey(), d.owner.pubkey(), owner2.pubkey()]
        .iter()
        .map(|k| d.m.balance_of(&d.chain, k))
        .sum::<Result<u64, _>>()?;
    let vaults = [
        a.escrow_vault,
        a.stake_vault,
        a.treasury_vault,
        a.rewards_vault,
    ]
    .iter()
    .map(|k| d.chain.token_balance(k))
    .sum::<Result<u64, _>>()?;
    let total = wallets + vaults;
    let signed = |v: u64| v as i128;
    let buyer_change = signed(d.m.balance_of(&d.chain, &d.buyer.pubkey())?) - signed(100 * one);
    let supplier_change =
        signed(d.m.balance_of(&d.chain, &d.owner.pubkey())?) - signed(1_000 * one);
    let w1: Worker = d.chain.fetch(&worker)?;
    let w2: Worker = d.chain.fetch(&worker2)?;
    // Supplier 2 still has its remaining stake bonded: count it as what it holds.
    let supplier2_change =
        signed(d.m.balance_of(&d.chain, &owner2.pubkey())? + w2.stake) - signed(1_000 * one);
    let fees = d.chain.token_balance(&a.treasury_vault)?;
    let burned = d.chain.fetch::<Market>(&a.market)?.total_burned;
    let o = |v: i128| {
        let sign = if v < 0 { "-" } else { "+" };
        format!("{sign}{}", d.tokens(v.unsigned_abs() as u64))
    };
    d.detail(format!(
        "buyer {} (paid for 8 GPUs x 2700 s, received a {} slash); supplier {} (earned {}); supplier 2 {} (earned {}, slashed {}); protocol fees {} to the treasury and {} burned",
        o(buyer_change),
        d.tokens(w2.record.slashed_total),
        o(supplier_change),
        d.tokens(w1.earnings_total),
        o(supplier2_change),
        d.tokens(w2.earnings_total),
        d.tokens(w2.record.slashed_total),
        d.tokens(fees),
        d.tokens(burned)
    ));
    d.detail(format!(
        "tokens in existence {} + burned {} = minted {}: {}",
        d.tokens(total),
        d.tokens(burned),
        d.tokens(d.minted),
        if total + burned == d.minted {
            "conserved"
        } else {
            "MISMATCH"
        }
    ));
    let adds_up =
        buyer_change + supplier_change + supplier2_change + signed(fees) + signed(burned) == 0;
    if total + burned != d.minted || !adds_up {
        return Err("balances do not add up".into());
    }
    Ok(())
}

fn short_sig(sig: &str) -> String {
    if sig.len() > 16 {
        format!("{}…", &sig[..16])
    } else {
        sig.to_string()
    }
}
