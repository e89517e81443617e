//! `gpumesh demo`: buyers, suppliers, the operator and the orchestrator go through the whole
//! market on the in-process chain (the real runtime with the program loaded), and every step is
//! told with the balances it moved. Everything shown is read back from the chain, and after
//! every step the demo checks that each vault holds exactly what the accounts say it holds and
//! that no token was created or lost.
//!
//! The story: a spot order served and settled from signed receipts, with emission rewards; a
//! replayed and an over-claiming receipt refused; a supplier that goes offline and is slashed to
//! compensate the buyer; a supplier caught faking a compute challenge, slashed and jailed; a
//! reserved order that preempts a spot lease with notice and keeps its price for its term; the
//! scheduler explaining why an order waits; the circuit breaker refusing an ask above its cap;
//! unjail, claims, the stake's yield, unbonding, and the totals.

use crate::amount::format;
use crate::context::Env;
use crate::error::CliError;
use crate::output;
use crate::price;
use crate::worker::{StakeYield, stake_yield_text};
use anchor_lang::prelude::Pubkey;
use gpumesh_client::ix::{self, LeaseRef};
use gpumesh_client::program::instructions::{
    CreateOrderArgs, RegisterWorkerArgs, UpdateWorkerArgs, breaker_cap,
};
use gpumesh_client::program::state::{
    CloseReason, HardwareClaim, Lease, Market, MarketParams, Order, OrderMode, OrderRequirements,
    OrderTerms, Worker,
};
use gpumesh_client::{
    Chain, ChainError, ChainExt, GpumeshEvent, Keypair, SignedReceipt, Signer, filters, receipt,
};
use gpumesh_orchestrator::actions::Orchestrator;
use gpumesh_orchestrator::scheduler::{OrderId, Rejections, SchedulerConfig};
use gpumesh_orchestrator::sync::MarketView as ChainView;
use gpumesh_protocol::challenge::{DEFAULT_ALLOWANCE, PROTOCOL_VERSION, ProverTiming};
use gpumesh_protocol::hex;
use gpumesh_protocol::{
    AwaitingCommitment, Challenge, Commitment, GpuClass, LeaseService, MerkleTree, OpenedRow,
    Opening, Region, job_spec_hash, merkle,
};
use gpumesh_svm::SvmChain;
use gpumesh_svm::fixtures::{EmissionConfig, LocalMarket};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::error::Error;
use std::time::Instant;

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Decimals of the demo payment mint (6 to 9: the demo's prices are whole base units per
    /// GPU-second).
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u8).range(6..=9))]
    decimals: u8,
}

const DAY: i64 = 86_400;
type DemoResult<T = ()> = Result<T, Box<dyn Error>>;

struct Demo<'s> {
    chain: SvmChain,
    m: LocalMarket,
    orchestrator: Orchestrator,
    step: u32,
    /// The wallets the balances show, by name, with what each held at the start.
    wallets: Vec<(&'static str, Pubkey, u64)>,
    minted: u64,
    /// With `--output json`: the steps told so far, printed as one document at the end.
    steps: &'s mut Option<Vec<Value>>,
}

impl Demo<'_> {
    fn tokens(&self, base: u64) -> String {
        format(base, self.m.decimals)
    }

    /// A price for people: per GPU-hour, with the per-GPU-second price the chain stores.
    fn price(&self, base: u64) -> String {
        price::text(base, self.m.decimals)
    }

    fn hourly(&self, base: u64) -> String {
        format!("{}/h", price::per_gpu_hour(base, self.m.decimals))
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

    /// A new wallet with SOL and `tokens` base units, shown in the balances as `name`.
    fn wallet(&mut self, name: &'static str, tokens: u64) -> DemoResult<Keypair> {
        let k = self.m.funded_user(&mut self.chain, tokens)?;
        self.minted += tokens;
        self.wallets.push((name, k.pubkey(), tokens));
        Ok(k)
    }

    fn token_account(&self, owner: &Pubkey) -> Pubkey {
        self.m.token_account(owner)
    }

    /// The balances, and the checks the program's invariants promise: each vault holds exactly
    /// the sum of what the accounts say it holds (listed from the chain, not the market's
    /// totals alone), the totals agree, and wallets + vaults + burned = minted.
    fn balances(&mut self) -> DemoResult {
        let a = self.m.addrs;
        let market: Market = self.chain.fetch(&a.market)?;
        let in_market = filters::in_market(&a.market);
        let workers = self.chain.list_decoded::<Worker>(&in_market)?;
        let orders = self.chain.list_decoded::<Order>(&in_market)?;
        let sum = |values: &mut dyn Iterator<Item = u64>| values.map(u128::from).sum::<u128>();
        let escrow = sum(&mut orders.iter().map(|(_, o)| o.escrow_remaining));
        let claimable = sum(&mut workers.iter().map(|(_, w)| w.earnings_claimable));
        let stake = sum(&mut workers.iter().map(|(_, w)| w.stake));
        let unbonding = sum(&mut workers.iter().map(|(_, w)| w.unbonding));
        let rewards_owed = sum(&mut workers.iter().map(|(_, w)| w.rewards_claimable));
        let escrow_vault = self.chain.token_balance(&a.escrow_vault)?;
        let stake_vault = self.chain.token_balance(&a.stake_vault)?;
        let treasury_vault = self.chain.token_balance(&a.treasury_vault)?;
        let rewards_vault = self.chain.token_balance(&a.rewards_vault)?;
        let mut rows = Vec::new();
        let mut wallets = 0u128;
        for (name, key, _) in &self.wallets {
            let held = self.m.balance_of(&self.chain, key)?;
            wallets += u128::from(held);
            rows.push(format!("{name} {}", self.tokens(held)));
        }
        for (name, v) in [
            ("escrow vault", escrow_vault),
            ("stake vault", stake_vault),
            ("treasury", treasury_vault),
            ("rewards vault", rewards_vault),
        ] {
            rows.push(format!("{name} {}", self.tokens(v)));
        }
        self.detail(format!("balances: {}", rows.join(" | ")));
        let e = &market.emission;
        let checks = [
            (
                "escrow vault = orders' escrow + workers' unclaimed earnings",
                u128::from(escrow_vault) == escrow + claimable
                    && u128::from(market.total_escrow) == escrow
                    && u128::from(market.total_claimable) == claimable,
            ),
            (
                "stake vault = workers' bonded + unbonding stake",
                u128::from(stake_vault) == stake + unbonding
                    && u128::from(market.total_stake) == stake
                    && u128::from(market.total_unbonding) == unbonding,
            ),
            (
                "treasury vault = fees accrued",
                treasury_vault == market.treasury_balance,
            ),
            (
                "rewards vault = funded - paid, covering what workers are owed",
                e.funded.checked_sub(e.paid) == Some(rewards_vault)
                    && u128::from(rewards_vault) >= rewards_owed,
            ),
            (
                "wallets + vaults + burned = minted",
                wallets
                    + u128::from(escrow_vault)
                    + u128::from(stake_vault)
                    + u128::from(treasury_vault)
                    + u128::from(rewards_vault)
                    + u128::from(market.total_burned)
                    == u128::from(self.minted),
            ),
        ];
        if let Some((broken, _)) = checks.iter().find(|(_, ok)| !ok) {
            return Err(format!("invariant broken: {broken}").into());
        }
        self.detail(format!(
            "checked: escrow vault {} = orders' escrow {} + unclaimed earnings {}; stake vault {} = bonded {} + unbonding {}; rewards vault {} = funded {} - paid {}; every token accounted for ({} burned)",
            self.tokens(escrow_vault),
            self.tokens(market.total_escrow),
            self.tokens(market.total_claimable),
            self.tokens(stake_vault),
            self.tokens(market.total_stake),
            self.tokens(market.total_unbonding),
            self.tokens(rewards_vault),
            self.tokens(e.funded),
            self.tokens(e.paid),
            self.tokens(market.total_burned)
        ));
        Ok(())
    }

    fn events(&mut self, events: &[GpumeshEvent]) {
        for e in events {
            let line = match e {
                // A lease inside the update interval leaves the reference where it was.
                GpumeshEvent::ReferencePriceUpdated(e)
                    if e.reference_before == e.reference_after =>
                {
                    continue;
                }
                GpumeshEvent::ReceiptSettled(e) => format!(
                    "event ReceiptSettled: seconds {} -> {}, paid {} (fee {}, of it burned {}), escrow {} -> {}, worker claimable {} -> {}, emission rewards {}",
                    e.seconds_before,
                    e.seconds_after,
                    self.tokens(e.amount),
                    self.tokens(e.fee),
                    self.tokens(e.burned),
                    self.tokens(e.escrow_before),
                    self.tokens(e.escrow_after),
                    self.tokens(e.claimable_before),
                    self.tokens(e.claimable_after),
                    self.tokens(e.rewards)
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
                GpumeshEvent::LeaseAssigned(e) => format!(
                    "event LeaseAssigned: {} GPU(s) at {}, instance {}",
                    e.gpus,
                    self.price(e.price_per_gpu_second),
                    e.nonce
                ),
                GpumeshEvent::LeaseClosed(e) => format!(
                    "event LeaseClosed ({:?}): {} s settled, {} paid",
                    e.reason,
                    e.seconds_settled,
                    self.tokens(e.amount_paid)
                ),
                GpumeshEvent::LeasePreempted(e) => format!(
                    "event LeasePreempted: for reserved order {}, ends at {} (paid up to then, no slash)",
                    short(&e.reserved_order),
                    output::rfc3339(e.preempt_at)
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
                GpumeshEvent::WorkerJailChanged(e) => {
                    if e.jailed {
                        format!(
                            "event WorkerJailChanged: jailed until {}",
                            output::rfc3339(e.jailed_until)
                        )
                    } else {
                        "event WorkerJailChanged: out of jail".to_string()
                    }
                }
                GpumeshEvent::ReferencePriceUpdated(e) => format!(
                    "event ReferencePriceUpdated: {} reference {} -> {} after a lease at {}",
                    GpuClass::from_code(e.gpu_class)
                        .map(|c| c.to_string())
                        .unwrap_or_else(|_| format!("class {}", e.gpu_class)),
                    self.hourly(e.reference_before),
                    self.hourly(e.reference_after),
                    self.hourly(e.lease_price)
                ),
                GpumeshEvent::BreakerTripped(e) => format!(
                    "event BreakerTripped: ask {} above the cap {} (reference {})",
                    self.hourly(e.price),
                    self.hourly(e.cap),
                    self.hourly(e.reference)
                ),
                GpumeshEvent::RewardsFunded(e) => format!(
                    "event RewardsFunded: {} in, funded {} -> {}",
                    self.tokens(e.amount),
                    self.tokens(e.funded_before),
                    self.tokens(e.funded_after)
                ),
                GpumeshEvent::RewardsClaimed(e) => format!(
                    "event RewardsClaimed: {} paid from the rewards vault",
                    self.tokens(e.amount)
                ),
                GpumeshEvent::EarningsClaimed(e) => {
                    format!("event EarningsClaimed: {}", self.tokens(e.amount))
                }
                GpumeshEvent::FeesBurned(e) => format!(
                    "event FeesBurned: {} burned ({} in all)",
                    self.tokens(e.amount),
                    self.tokens(e.total_burned_after)
                ),
                other => format!("event {}", event_name(other)),
            };
            self.detail(line);
        }
    }

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
    ) -> DemoResult<SignedReceipt> {
        let now_ms = self.chain.unix_time()? as u64 * 1_000;
        let telemetry = format!("8 x H100: 64 C, 97% busy, {served_seconds} s served");
        service.heartbeat(now_ms, served_seconds, telemetry.as_bytes())?;
        Ok(service.receipt(&receipt::signing_key(node)))
    }

    /// Sends what must be refused and tells why; an acceptance stops the demo.
    fn refused<T>(&mut self, what: &str, result: Result<T, impl std::fmt::Display>) -> DemoResult {
        match result {
            Err(e) => {
                self.detail(format!("{what}: refused: {e}"));
                Ok(())
            }
            Ok(_) => Err(format!("{what} was accepted").into()),
        }
    }

    /// The h100 reference price and the breaker's cap, as the program computes them.
    fn breaker(&self, class: GpuClass) -> DemoResult<(u64, u64)> {
        let market: Market = self.chain.fetch(&self.m.addrs.market)?;
        let reference = market.reference_prices[usize::from(class.code())];
        let cap = breaker_cap(&market, class.code())
            .map_err(|e| format!("breaker cap: {e}"))?
            .ok_or("no reference price yet")?;
        Ok((reference, cap))
    }

    fn claim_all(&mut self, owner: &Keypair) -> DemoResult {
        let w: Worker = self.chain.fetch(&self.m.addrs.worker(&owner.pubkey()))?;
        let token = self.token_account(&owner.pubkey());
        let a = self.m.addrs;
        let mut ixs = vec![];
        if w.earnings_claimable > 0 {
            ixs.push(ix::claim_earnings(&a, &owner.pubkey(), &token));
        }
        if w.rewards_claimable > 0 {
            ixs.push(ix::claim_rewards(&a, &owner.pubkey(), &token));
        }
        if !ixs.is_empty() {
            let out = self.chain.send(&ixs, owner, &[])?;
            self.events(&out.events);
        }
        Ok(())
    }

    /// The scheduler, fed from the chain as the orchestrator's service feeds it, on why `order`
    /// is not placed.
    fn explain(&mut self, order: &Pubkey, needed: u16) -> DemoResult {
        let view = ChainView::load(&self.chain, &self.m.addrs.market)?;
        let index = view
            .orders
            .iter()
            .position(|(k, _)| k == order)
            .ok_or("the order is not in the market")?;
        let scheduler = view.scheduler(SchedulerConfig::default(), &BTreeMap::new())?;
        let id = OrderId(index as u64);
        if scheduler.preview_order(id)?.is_some() {
            return Err("the scheduler would place an order the demo expects to wait".into());
        }
        let r = scheduler.explain_order(id)?;
        self.detail(format!(
            "scheduler.explain_order: {}",
            rejections_text(&r, needed)
        ));
        Ok(())
    }
}

/// A scheduler explanation for people: the nonzero counts, each worker under the first check
/// it failed.
fn rejections_text(r: &Rejections, needed: u16) -> String {
    let mut parts = vec![];
    for (count, why) in [
        (r.class, "of another class"),
        (r.region, "outside the order's regions"),
        (r.status, "jailed, draining or offline"),
        (r.vram, "with too little VRAM"),
        (r.bandwidth, "with too little bandwidth"),
        (r.price, "asking more than the order's max price"),
        (r.capacity, "with no free GPU"),
        (r.eligible, "eligible"),
    ] {
        if count > 0 {
            parts.push(format!("{count} worker(s) {why}"));
        }
    }
    format!(
        "{}; the eligible ones hold at most {} free GPU(s) in one allowed region and the order needs {needed} there (a multi-GPU order is placed in one region), so it waits",
        if parts.is_empty() {
            "no worker offers this class".to_string()
        } else {
            parts.join(", ")
        },
        r.best_region_gpus
    )
}

fn event_name(e: &GpumeshEvent) -> String {
    let debug = format!("{e:?}");
    debug.split('(').next().unwrap_or_default().to_string()
}

fn short(k: &Pubkey) -> String {
    let s = k.to_string();
    format!("{}…{}", &s[..4], &s[s.len() - 4..])
}

fn short_sig(sig: &str) -> String {
    if sig.len() > 16 {
        format!("{}…", &sig[..16])
    } else {
        sig.to_string()
    }
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

/// A supplier caught by the proof-of-compute challenge: it commits to a product it did not
/// compute (zeros), the orchestrator opens rows it draws after the commitment, and the real
/// verifier finds them wrong. Returns the rejection and the evidence hash that goes on chain.
fn failed_challenge(class: GpuClass) -> DemoResult<(String, [u8; 32])> {
    let n = 64u32;
    let seed = *blake3::hash(b"gpumesh demo challenge").as_bytes();
    let challenge = Challenge::with_seed(7, class, seed, n, 8, DEFAULT_ALLOWANCE)?;
    // The cheat: rows of zeros instead of A·B, committed in a proper Merkle tree.
    let rows = vec![vec![0i32; n as usize]; n as usize];
    let tree = MerkleTree::from_leaves(rows.iter().map(|r| merkle::leaf_hash(r)).collect());
    let commitment = Commitment {
        version: PROTOCOL_VERSION,
        challenge_id: challenge.id,
        rows: n,
        root: tree.root(),
        timing: ProverTiming::default(),
    };
    let sent = Instant::now();
    let waiting = AwaitingCommitment::new(challenge.clone(), sent).receive_commitment(
        &commitment,
        Instant::now(),
        &mut rand::rng(),
    )?;
    let request = waiting.open_request().clone();
    let opening = Opening {
        version: PROTOCOL_VERSION,
        challenge_id: challenge.id,
        rows: request
            .rows
            .iter()
            .map(|&i| OpenedRow {
                index: i,
                values: rows[i as usize].clone(),
                path: tree.path(i as usize).unwrap_or_default(),
            })
            .collect(),
    };
    match waiting
        .sent(Instant::now())
        .receive_opening(&opening, Instant::now())
    {
        Ok(_) => Err("a faked product passed the challenge".into()),
        Err(rejection) => {
            let mut evidence = blake3::Hasher::new();
            evidence.update(&seed);
            evidence.update(&tree.root().0);
            evidence.update(rejection.to_string().as_bytes());
            Ok((rejection.to_string(), *evidence.finalize().as_bytes()))
        }
    }
}

fn narrate(args: &DemoArgs, steps: &mut Option<Vec<Value>>) -> DemoResult {
    let one = 10u64.pow(u32::from(args.decimals));
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
    // The seed's emission shape (30% of a supply, released linearly over 12 years), on a
    // 1,000,000-token supply so that rewards and fees are of one size here.
    let emission = EmissionConfig {
        supply: 1_000_000 * one,
        share_bps: 3_000,
        duration: 12 * 365 * DAY,
    };
    let m = LocalMarket::create_with_emission(&mut chain, params, args.decimals, emission)?;
    let orchestrator = Orchestrator::new(m.addrs, m.orchestrator.insecure_clone());
    let mut d = Demo {
        chain,
        m,
        orchestrator,
        step: 0,
        wallets: vec![],
        minted: 0,
        steps,
    };
    let a = d.m.addrs;
    let operator = d.m.authority.insecure_clone();
    let buyer = d.wallet("buyer", 100 * one)?;
    let owner = d.wallet("supplier A", 1_000 * one)?;
    let node = Keypair::new();

    d.say("The operator creates a market for a payment mint and funds the suppliers' emission");
    d.detail(format!(
        "market {} for mint {} ({} decimals)",
        short(&a.market),
        short(&a.mint),
        args.decimals
    ));
    d.detail(format!(
        "protocol fee {}.{:02}% (a fifth of it burned), minimum stake {} per GPU, unbonding {} days, fraud slash {}%, jail {} days, circuit breaker at {}% above the reference price; vaults owned by the market",
        params.protocol_fee_bps / 100,
        params.protocol_fee_bps % 100,
        d.tokens(params.min_stake_per_gpu),
        params.unbonding_period / DAY,
        params.fraud_slash_bps / 100,
        params.jail_period / DAY,
        params.breaker_band_bps / 100
    ));
    d.detail(format!(
        "emission: {}% of a {}-token supply, released second by second over 12 years to leased GPUs whose receipts prove their seconds",
        emission.share_bps / 100,
        d.tokens(emission.supply)
    ));
    let funding = 1_000 * one;
    d.m.mint_to(&mut d.chain, &operator, funding)?;
    d.minted += funding;
    d.wallets
        .insert(0, ("operator", operator.pubkey(), funding));
    let out = d.chain.send(
        &[ix::fund_rewards(
            &a,
            &operator.pubkey(),
            &d.token_account(&operator.pubkey()),
            funding,
        )],
        &operator,
        &[],
    )?;
    d.events(&out.events);
    d.balances()?;

    let class: GpuClass = "h100".parse()?;
    let region: Region = "eu-west".parse()?;
    let price = 300; // base units per GPU-second: 1.08 per GPU-hour with 6 decimals
    let hardware = HardwareClaim {
        gpu_class: class.code(),
        gpu_count: 8,
        vram_mib: 81_920,
        bandwidth_gbps: 3_350,
        region: region.code(),
    };
    d.say("Supplier A registers an 8 x H100 machine and stakes");
    let owner_token = d.token_account(&owner.pubkey());
    let worker = a.worker(&owner.pubkey());
    let out = d.chain.send(
        &[
            ix::register_worker(
                &a,
                &owner.pubkey(),
                RegisterWorkerArgs {
                    node_key: node.pubkey(),
                    hardware,
                    price_per_gpu_second: price,
                },
            ),
            ix::stake(&a, &owner.pubkey(), &owner_token, 1_000 * one),
        ],
        &owner,
        &[],
    )?;
    d.detail(format!(
        "worker {}: 8 x {class}, 80 GiB, 3350 GB/s, {region}, asking {}; node key {} signs receipts",
        short(&worker),
        d.price(price),
        short(&node.pubkey())
    ));
    d.detail(format!("tx {}", short_sig(&out.signature)));
    d.events(&out.events);
    d.balances()?;

    d.say("A buyer orders 8 x H100 in eu-west (spot) and puts 60 tokens in escrow");
    let requirements = OrderRequirements {
        gpu_class: class.code(),
        gpu_count: 8,
        min_vram_mib: 40_000,
        min_bandwidth_gbps: 2_000,
        regions: Region::set(&[region]),
    };
    let buyer_token = d.token_account(&buyer.pubkey());
    let spot_order = |id: u64, requirements, max: u64, duration: u64, deposit: u64| {
        ix::create_order(
            &a,
            &buyer.pubkey(),
            &buyer_token,
            CreateOrderArgs {
                order_id: id,
                terms: OrderTerms {
                    requirements,
                    max_price_per_gpu_second: max,
                    duration,
                    mode: OrderMode::Spot,
                    job_spec_hash: job_spec_hash(format!("image = \"job-{id}\"\n").as_bytes()),
                },
                deposit,
            },
        )
    };
    let order = a.order(&buyer.pubkey(), 1);
    d.chain.send(
        &[spot_order(1, requirements, 400, 2 * 3_600, 60 * one)],
        &buyer,
        &[],
    )?;
    d.detail(format!(
        "order {}: up to {} for 2 hours, spot (pays per second, may leave any time)",
        short(&order),
        d.price(400)
    ));
    d.balances()?;

    d.say("The orchestrator assigns the worker to the order (the program checks class, VRAM, bandwidth, region, price, free GPUs, stake, the circuit breaker)");
    let (lease, out) = d.orchestrator.assign(&mut d.chain, &order, &worker, 8)?;
    d.events(&out.events);
    let (reference, cap) = d.breaker(class)?;
    d.detail(format!(
        "lease {} (instance {}): 8 GPUs at {} = {} per hour; the first h100 lease seeds the reference price ({}), so the breaker now caps h100 asks at {}",
        short(&lease.lease),
        lease.nonce,
        d.price(price),
        d.tokens(price * 8 * 3_600),
        d.hourly(reference),
        d.hourly(cap)
    ));

    d.say("10 minutes pass; the worker's heartbeats chain by hash, it signs a receipt for 600 s and the orchestrator settles it; the proven seconds earn emission rewards");
    d.chain.warp(600)?;
    let mut service = d.lease_service(&lease);
    let r1 = d.serve(&mut service, &node, 600)?;
    d.detail(format!(
        "receipt: 600 s on instance {}, heartbeat chain head {}…, verifies off chain: {}; on chain through the Ed25519 precompile",
        r1.lease_nonce,
        hex(&r1.chain_head[..6]),
        r1.verify(Some(&receipt::key(&node.pubkey()))).is_ok()
    ));
    let outs = d
        .orchestrator
        .settle(&mut d.chain, &[(lease, r1.clone())])?;
    for out in &outs {
        d.events(&out.events);
    }
    d.balances()?;

    d.say("The same receipt sent again is refused: the same seconds are never paid twice");
    let replay = d.orchestrator.settle(&mut d.chain, &[(lease, r1)]);
    d.refused("a replayed receipt", replay)?;
    d.say("A receipt claiming more seconds than have passed is refused");
    let greedy = d.serve(&mut service, &node, 700)?;
    let greedy = d.orchestrator.settle(&mut d.chain, &[(lease, greedy)]);
    d.refused("700 s after 600 s of wall time", greedy)?;

    d.say("20 more minutes; the job ends: final receipt, settlement and lease close in one transaction");
    d.chain.warp(1_200)?;
    let r2 = d.serve(&mut service, &node, 1_800)?;
    let out = d
        .orchestrator
        .end_lease(&mut d.chain, &lease, Some(r2), CloseReason::Completed)?;
    d.events(&out.events);
    let w: Worker = d.chain.fetch(&worker)?;
    d.detail(format!(
        "worker has {} of {} GPUs leased again; served {} GPU-seconds; {} of emission rewards to claim",
        w.gpus_leased,
        w.hardware.gpu_count,
        w.record.served_gpu_seconds,
        d.tokens(w.rewards_claimable)
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
            &buyer.pubkey(),
            &buyer.pubkey(),
            &buyer_token,
            &order,
            [0; 32],
        )],
        &buyer,
        &[],
    )?;
    d.events(&out.events);
    d.balances()?;

    d.say("Supplier A claims its earnings and its emission rewards");
    d.claim_all(&owner)?;
    d.balances()?;

    // ----- An offline supplier: slashed, the buyer compensated, the order moves ------------
    d.say(
        "Supplier B registers a cheaper 8 x H100 machine and stakes 1000; the buyer orders again",
    );
    let owner2 = d.wallet("supplier B", 1_400 * one)?;
    let node2 = Keypair::new();
    let owner2_token = d.token_account(&owner2.pubkey());
    let worker2 = a.worker(&owner2.pubkey());
    let price2 = 250;
    d.chain.send(
        &[
            ix::register_worker(
                &a,
                &owner2.pubkey(),
                RegisterWorkerArgs {
                    node_key: node2.pubkey(),
                    hardware,
                    price_per_gpu_second: price2,
                },
            ),
            ix::stake(&a, &owner2.pubkey(), &owner2_token, 1_000 * one),
        ],
        &owner2,
        &[],
    )?;
    let order2 = a.order(&buyer.pubkey(), 2);
    d.chain.send(
        &[spot_order(2, requirements, 400, 3_600, 10 * one)],
        &buyer,
        &[],
    )?;
    d.detail(format!(
        "worker {} asks {}; order {} holds 10 in escrow",
        short(&worker2),
        d.price(price2),
        short(&order2)
    ));
    d.balances()?;

    d.say("Order 2 goes to the cheaper supplier B; it serves 5 minutes, then its heartbeats stop");
    let (lease2, out) = d.orchestrator.assign(&mut d.chain, &order2, &worker2, 8)?;
    d.events(&out.events);
    d.chain.warp(300)?;
    let mut service2 = d.lease_service(&lease2);
    let last = d.serve(&mut service2, &node2, 300)?;
    d.chain.warp(20)?;
    d.say("Past the grace period the orchestrator settles B's last receipt and closes the lease as offline: B is slashed and the buyer gets the slash");
    let out = d.orchestrator.end_lease(
        &mut d.chain,
        &lease2,
        Some(last),
        CloseReason::WorkerOffline,
    )?;
    d.events(&out.events);
    let compensation2 = slashed_to_buyer(&out.events);
    let o2: Order = d.chain.fetch(&order2)?;
    d.detail(format!(
        "order 2 is {:?} again with {} of escrow left",
        o2.status,
        d.tokens(o2.escrow_remaining)
    ));
    d.balances()?;

    d.say(
        "Order 2 is re-placed on supplier A, which finishes it (10 minutes); both suppliers claim",
    );
    let (lease3, _) = d.orchestrator.assign(&mut d.chain, &order2, &worker, 8)?;
    d.chain.warp(600)?;
    let mut service3 = d.lease_service(&lease3);
    let r = d.serve(&mut service3, &node, 600)?;
    let out = d
        .orchestrator
        .end_lease(&mut d.chain, &lease3, Some(r), CloseReason::Completed)?;
    d.events(&out.events);
    let out = d.orchestrator.complete_order(
        &mut d.chain,
        &order2,
        *blake3::hash(b"rendered frames").as_bytes(),
    )?;
    d.events(&out.events);
    let paid2 = closed_paid(&out.events);
    d.claim_all(&owner)?;
    d.claim_all(&owner2)?;
    let ahead = buyer_ahead("order 2", paid2, compensation2, |v| d.tokens(v));
    d.detail(ahead);
    d.balances()?;

    // ----- Fraud: a failed compute challenge, slash and jail ----------------------------------
    d.say("Order 3 (8 x H100, spot) goes to supplier B; 5 minutes in, the orchestrator sends B a proof-of-compute challenge");
    let order3 = a.order(&buyer.pubkey(), 3);
    d.chain.send(
        &[spot_order(3, requirements, 400, 2 * 3_600, 20 * one)],
        &buyer,
        &[],
    )?;
    let (lease4, out) = d.orchestrator.assign(&mut d.chain, &order3, &worker2, 8)?;
    d.events(&out.events);
    d.chain.warp(300)?;
    let (rejection, evidence) = failed_challenge(class)?;
    d.detail(format!(
        "challenge: a seeded 64 x 64 int8 matrix product; B commits to a Merkle root over rows it did not compute, the orchestrator opens 8 rows drawn after the commitment and recomputes them exactly: {rejection}"
    ));
    d.say("The orchestrator slashes B for fraud (the evidence's hash goes on chain): the lease closes, its buyer gets the slash, B is jailed");
    let out = d
        .orchestrator
        .slash_fraud(&mut d.chain, &worker2, Some(&lease4), evidence)?;
    d.events(&out.events);
    let compensation3 = slashed_to_buyer(&out.events);
    d.detail(format!(
        "evidence hash {}…; B's receipts for this lease are never settled: it faked its compute",
        hex(&evidence[..6])
    ));
    let jailed = d.orchestrator.assign(&mut d.chain, &order3, &worker2, 8);
    d.refused("assigning the jailed B", jailed)?;
    let early = d
        .chain
        .send(&[ix::unjail(&a, &owner2.pubkey())], &owner2, &[]);
    d.refused("B's unjail before the jail period ends", early)?;
    d.balances()?;

    d.say("Order 3 is re-placed on supplier A (a spot lease of all 8 GPUs)");
    let (lease5, out) = d.orchestrator.assign(&mut d.chain, &order3, &worker, 8)?;
    d.events(&out.events);
    d.chain.warp(600)?;
    d.detail("10 minutes of service follow");

    // ----- A reserved order: preemption with notice, a locked price ------------------------
    d.say("A lab reserves 4 x H100 for the CLI's default term, 7 days, at up to 1.08/h: a reserved order is funded for its whole term up front");
    let lab = d.wallet("lab", 800 * one)?;
    let lab_token = d.token_account(&lab.pubkey());
    let term = crate::order::RESERVED_TERM;
    let reserved_requirements = OrderRequirements {
        gpu_count: 4,
        ..requirements
    };
    let reserved = |deposit: u64| {
        ix::create_order(
            &a,
            &lab.pubkey(),
            &lab_token,
            CreateOrderArgs {
                order_id: 1,
                terms: OrderTerms {
                    requirements: reserved_requirements,
                    max_price_per_gpu_second: price,
                    duration: term,
                    mode: OrderMode::Reserved,
                    job_spec_hash: job_spec_hash(b"image = \"training\"\n"),
                },
                deposit,
            },
        )
    };
    let term_cost = u64::try_from(u128::from(price) * 4 * u128::from(term))?;
    let short_deposit = d.chain.send(&[reserved(term_cost - 1)], &lab, &[]);
    d.refused(
        &format!("a deposit one base unit short of {}", d.tokens(term_cost)),
        short_deposit,
    )?;
    let order4 = a.order(&lab.pubkey(), 1);
    d.chain.send(&[reserved(term_cost)], &lab, &[])?;
    d.detail(format!(
        "reserved order {}: {} x 4 GPUs x {} s = {} in escrow",
        short(&order4),
        d.price(price),
        term,
        d.tokens(term_cost)
    ));
    let full = d.orchestrator.assign(&mut d.chain, &order4, &worker, 4);
    d.refused(
        "assigning it now (A's 8 GPUs serve the spot order 3, B is jailed)",
        full,
    )?;
    d.balances()?;

    d.say("The orchestrator preempts A's spot lease for the reserved order: the spot lease gets the market's notice (60 s) and is paid for the seconds it serves until then");
    let out = d.orchestrator.preempt(&mut d.chain, &lease5, &order4)?;
    d.events(&out.events);
    d.chain.warp(params.preemption_notice)?;
    let mut service5 = d.lease_service(&lease5);
    let served5 = 600 + params.preemption_notice as u64;
    let r5 = d.serve(&mut service5, &node, served5)?;
    let out = d
        .orchestrator
        .end_lease(&mut d.chain, &lease5, Some(r5), CloseReason::Preempted)?;
    d.events(&out.events);
    d.detail(format!(
        "spot order 3 paid {} s x 8 GPUs x {} = {}, the seconds it used, and no more; no slash",
        served5,
        d.tokens(price),
        d.tokens(served5 * 8 * price)
    ));
    let (lease6, out) = d.orchestrator.assign(&mut d.chain, &order4, &worker, 4)?;
    d.events(&out.events);
    d.detail(format!(
        "the reserved order leases 4 of A's GPUs at {}, locked for its 7-day term",
        d.price(price)
    ));
    d.balances()?;

    d.say("Order 3 waits again; the scheduler explains why it is not placed");
    d.explain(&order3, 8)?;

    d.say("Supplier A raises its ask; the reserved lease keeps its price");
    let (reference, cap) = d.breaker(class)?;
    let high = reference.checked_mul(5).ok_or("reference price overflow")?;
    let out = d.chain.send(
        &[ix::update_worker(
            &a,
            &owner.pubkey(),
            UpdateWorkerArgs {
                node_key: None,
                hardware: None,
                price_per_gpu_second: Some(high),
            },
        )],
        &owner,
        &[],
    )?;
    d.events(&out.events);
    let locked: Lease = d.chain.fetch(&lease6.lease)?;
    d.detail(format!(
        "A now asks {}; the reserved lease still pays {}",
        d.price(high),
        d.price(locked.price_per_gpu_second)
    ));

    d.say("The circuit breaker: a buyer bids up to A's new ask for 4 GPUs, but the ask is above the cap (reference x 4), so no lease is struck");
    let order5 = a.order(&buyer.pubkey(), 4);
    d.chain.send(
        &[spot_order(4, reserved_requirements, high, 3_600, 10 * one)],
        &buyer,
        &[],
    )?;
    d.detail(format!(
        "reference {}, cap {}, ask {}",
        d.hourly(reference),
        d.hourly(cap),
        d.hourly(high)
    ));
    let off_chain = d.orchestrator.assign(&mut d.chain, &order5, &worker, 4);
    d.refused("the orchestrator's own check", off_chain)?;
    let sent = d.chain.send(
        &[ix::assign(
            &a,
            &d.m.orchestrator.pubkey(),
            &order5,
            &worker,
            4,
        )],
        &d.m.orchestrator,
        &[],
    );
    match sent {
        Err(ChainError::Program { name, logs, .. }) => {
            d.detail(format!(
                "the assign sent anyway: refused by the program ({name})"
            ));
            let tripped: Vec<_> = gpumesh_client::events::parse_logs(&logs)
                .into_iter()
                .filter(|e| matches!(e, GpumeshEvent::BreakerTripped(_)))
                .collect();
            d.events(&tripped);
        }
        Err(e) => return Err(format!("the breaker's refusal came back as {e}").into()),
        Ok(_) => return Err("an ask above the breaker's cap was leased".into()),
    }
    let out = d.chain.send(
        &[ix::cancel_order(&a, &buyer.pubkey(), &buyer_token, &order5)],
        &buyer,
        &[],
    )?;
    d.detail("the buyer cancels that order:");
    d.events(&out.events);
    d.balances()?;

    d.say("7 days pass: the reserved term is served and settled at its locked price, and the order completes");
    d.chain.warp(term as i64)?;
    let mut service6 = d.lease_service(&lease6);
    let r6 = d.serve(&mut service6, &node, term)?;
    let out = d
        .orchestrator
        .end_lease(&mut d.chain, &lease6, Some(r6), CloseReason::Completed)?;
    d.events(&out.events);
    let out = d.orchestrator.complete_order(
        &mut d.chain,
        &order4,
        *blake3::hash(b"trained weights").as_bytes(),
    )?;
    d.events(&out.events);
    d.detail(format!(
        "paid at the locked {} though A asks {} now",
        d.hourly(price),
        d.hourly(high)
    ));
    d.balances()?;

    // ----- Unjail -------------------------------------------------------------------------
    d.say("B's jail period is over; leaving jail needs stake back at the minimum for all 8 GPUs");
    let w2: Worker = d.chain.fetch(&worker2)?;
    let required = params.min_stake_per_gpu * u64::from(w2.hardware.gpu_count);
    let short_stake = d
        .chain
        .send(&[ix::unjail(&a, &owner2.pubkey())], &owner2, &[]);
    d.refused(
        &format!(
            "unjail with {} bonded of the {} required",
            d.tokens(w2.stake),
            d.tokens(required)
        ),
        short_stake,
    )?;
    let top_up = required.saturating_sub(w2.stake);
    let out = d.chain.send(
        &[
            ix::stake(&a, &owner2.pubkey(), &owner2_token, top_up),
            ix::unjail(&a, &owner2.pubkey()),
        ],
        &owner2,
        &[],
    )?;
    d.events(&out.events);
    d.balances()?;

    d.say("The buyer cancels order 3 and takes its unspent escrow back");
    let out = d.chain.send(
        &[ix::cancel_order(&a, &buyer.pubkey(), &buyer_token, &order3)],
        &buyer,
        &[],
    )?;
    d.events(&out.events);
    let paid3 = closed_paid(&out.events);
    let ahead = buyer_ahead("order 3", paid3, compensation3, |v| d.tokens(v));
    d.detail(ahead);
    d.balances()?;

    d.say("Both suppliers claim; supplier A's stake yield");
    d.claim_all(&owner)?;
    d.claim_all(&owner2)?;
    let w: Worker = d.chain.fetch(&worker)?;
    let now = d.chain.unix_time()?;
    if let Some(y) = StakeYield::of(&w, now) {
        let text = stake_yield_text(&y, |v| d.tokens(v));
        for line in text.lines() {
            d.detail(line.trim());
        }
        d.detail(
            "(a week of near-full use on the market's minimum stake for 8 GPUs, with the emission shared by few GPUs: the record annualizes to a large figure; `gpumesh worker status` shows the same)",
        );
    }
    d.balances()?;

    d.say("Supplier A unstakes: the stake unbonds for 14 days, then comes back");
    let out = d.chain.send(
        &[ix::request_unstake(
            &a,
            &owner.pubkey(),
            &owner_token,
            w.stake,
        )],
        &owner,
        &[],
    )?;
    d.events(&out.events);
    let early = d.chain.send(
        &[ix::withdraw_unstaked(&a, &owner.pubkey(), &owner_token)],
        &owner,
        &[],
    );
    d.refused("withdrawing at once", early)?;
    d.chain.warp(params.unbonding_period)?;
    let out = d.chain.send(
        &[ix::withdraw_unstaked(&a, &owner.pubkey(), &owner_token)],
        &owner,
        &[],
    )?;
    d.detail("14 days later:");
    d.events(&out.events);
    d.balances()?;

    totals(&mut d)
}

/// What a slash paid the buyer, from its event.
fn slashed_to_buyer(events: &[GpumeshEvent]) -> u64 {
    events
        .iter()
        .filter_map(|e| match e {
            GpumeshEvent::WorkerSlashed(s) => Some(s.to_buyer),
            _ => None,
        })
        .sum()
}

/// What a closed order paid for service, from its event.
fn closed_paid(events: &[GpumeshEvent]) -> u64 {
    events
        .iter()
        .find_map(|e| match e {
            GpumeshEvent::OrderClosed(c) => Some(c.total_paid),
            _ => None,
        })
        .unwrap_or(0)
}

/// The plain sentence for a buyer whose compensation outweighs what it paid.
fn buyer_ahead(
    order: &str,
    paid: u64,
    compensation: u64,
    tokens: impl Fn(u64) -> String,
) -> String {
    if compensation > paid {
        format!(
            "{order}: the buyer got back more than it paid: {} paid for service, {} compensation from the supplier's slash ({} ahead)",
            tokens(paid),
            tokens(compensation),
            tokens(compensation - paid)
        )
    } else {
        format!(
            "{order}: the buyer paid {} for service and got {} compensation from the supplier's slash",
            tokens(paid),
            tokens(compensation)
        )
    }
}

/// Each party's gain or loss (wallet plus what the market holds for it), which with the fees,
/// the burn and the rewards not yet earned sum to zero; and every token minted accounted for.
fn totals(d: &mut Demo) -> DemoResult {
    d.say("Totals");
    let a = d.m.addrs;
    let market: Market = d.chain.fetch(&a.market)?;
    let in_market = filters::in_market(&a.market);
    let workers = d.chain.list_decoded::<Worker>(&in_market)?;
    let orders = d.chain.list_decoded::<Order>(&in_market)?;
    let mut changes = vec![];
    let mut sum = 0i128;
    for (name, key, start) in d.wallets.clone() {
        let mut held = i128::from(d.m.balance_of(&d.chain, &key)?);
        for (_, w) in workers.iter().filter(|(_, w)| w.owner == key) {
            held += i128::from(w.stake)
                + i128::from(w.unbonding)
                + i128::from(w.earnings_claimable)
                + i128::from(w.rewards_claimable);
        }
        for (_, o) in orders.iter().filter(|(_, o)| o.buyer == key) {
            held += i128::from(o.escrow_remaining);
        }
        let change = held - i128::from(start);
        sum += change;
        let sign = if change < 0 { "-" } else { "+" };
        changes.push(format!(
            "{name} {sign}{}",
            d.tokens(u64::try_from(change.unsigned_abs())?)
        ));
    }
    let treasury = d.chain.token_balance(&a.treasury_vault)?;
    let rewards_vault = d.chain.token_balance(&a.rewards_vault)?;
    let owed: u64 = workers.iter().map(|(_, w)| w.rewards_claimable).sum();
    let unearned = rewards_vault.saturating_sub(owed);
    let burned = market.total_burned;
    d.detail(format!("gains and losses: {}", changes.join(", ")));
    d.detail(format!(
        "protocol fees {} in the treasury and {} burned; {} of the operator's rewards funding not yet earned by anyone",
        d.tokens(treasury),
        d.tokens(burned),
        d.tokens(unearned)
    ));
    let vaults = [
        a.escrow_vault,
        a.stake_vault,
        a.treasury_vault,
        a.rewards_vault,
    ]
    .iter()
    .map(|k| d.chain.token_balance(k))
    .sum::<Result<u64, _>>()?;
    let wallets = d
        .wallets
        .iter()
        .map(|(_, k, _)| d.m.balance_of(&d.chain, k))
        .sum::<Result<u64, _>>()?;
    let total = wallets + vaults;
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
    let adds_up = sum + i128::from(treasury) + i128::from(burned) + i128::from(unearned) == 0;
    d.detail(format!(
        "gains and losses + fees + burned + unearned rewards = {}",
        if adds_up { "0" } else { "NOT ZERO" }
    ));
    if total + burned != d.minted || !adds_up {
        return Err("balances do not add up".into());
    }
    Ok(())
}
