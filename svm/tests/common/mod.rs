//! A market on the in-process chain with helpers for the tests: participants, orders, leases,
//! receipts, and the checks every test runs after a state change (conservation) or a refusal
//! (nothing moved). The orchestrator's moves go through `gpumesh_orchestrator::actions`, and
//! workers sign receipts from a real heartbeat chain (`gpumesh_protocol::LeaseService`), as the
//! service and the daemon will.

#![allow(dead_code)]

use anchor_lang::prelude::Pubkey;
use gpumesh_client::ix::{self, LeaseRef};
use gpumesh_client::program::errors::GpumeshError;
use gpumesh_client::program::instructions::*;
use gpumesh_client::program::state::*;
use gpumesh_client::*;
use gpumesh_orchestrator::actions::{ActionError, Orchestrator};
use gpumesh_protocol::LeaseService;
use gpumesh_svm::SvmChain;
use gpumesh_svm::fixtures::{EmissionConfig, LocalMarket};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

pub const PRICE: u64 = 10;
pub const H100: u8 = 1;
pub const EU: u8 = 2;
pub const US: u8 = 5;

/// The tests' market: a 2.5% fee, none of it burned (the burn has tests of its own), 1,000 base
/// units of stake per leased GPU.
pub fn params() -> MarketParams {
    MarketParams {
        protocol_fee_bps: 250,
        fee_burn_bps: 0,
        min_stake_per_gpu: 1_000,
        ..MarketParams::default()
    }
}

pub fn hardware() -> HardwareClaim {
    HardwareClaim {
        gpu_class: H100,
        gpu_count: 1,
        vram_mib: 81_920,
        bandwidth_gbps: 3_350,
        region: EU,
    }
}

pub fn requirements(gpus: u16) -> OrderRequirements {
    OrderRequirements {
        gpu_class: H100,
        gpu_count: gpus,
        min_vram_mib: 40_000,
        min_bandwidth_gbps: 1_000,
        regions: 1 << EU,
    }
}

pub struct WorkerKeys {
    pub owner: Keypair,
    pub node: Keypair,
    pub worker: Pubkey,
    pub token: Pubkey,
}

#[derive(Clone, Copy)]
pub struct OrderKeys {
    pub buyer: Pubkey,
    pub order: Pubkey,
    pub token: Pubkey,
    pub id: u64,
}

pub struct Fx {
    pub chain: SvmChain,
    pub m: LocalMarket,
    /// The market's orchestrator, acting through the shared library.
    pub orchestrator: Orchestrator,
    /// What each worker's daemon keeps per lease instance: its heartbeat chain.
    services: RefCell<HashMap<(Pubkey, u64), LeaseService>>,
    pub buyers: Vec<Keypair>,
    pub workers: Vec<Pubkey>,
    pub orders: Vec<Pubkey>,
    /// Every lease address ever assigned (closed ones read back as missing).
    pub leases: Vec<Pubkey>,
    /// Every token account that exists in the test, so totals can be checked.
    pub token_accounts: Vec<Pubkey>,
    pub minted: u64,
    next_order_id: u64,
}

impl Fx {
    pub fn new() -> Self {
        Self::with_params(params())
    }

    pub fn with_params(p: MarketParams) -> Self {
        Self::with_emission(p, EmissionConfig::default())
    }

    pub fn with_emission(p: MarketParams, emission: EmissionConfig) -> Self {
        let mut chain = SvmChain::new();
        let m = LocalMarket::create_with_emission(&mut chain, p, 6, emission).expect("market");
        let token_accounts = vec![
            m.addrs.stake_vault,
            m.addrs.escrow_vault,
            m.addrs.treasury_vault,
            m.addrs.rewards_vault,
        ];
        let orchestrator = Orchestrator::new(m.addrs, m.orchestrator.insecure_clone());
        Self {
            chain,
            m,
            orchestrator,
            services: RefCell::new(HashMap::new()),
            buyers: vec![],
            workers: vec![],
            orders: vec![],
            leases: vec![],
            token_accounts,
            minted: 0,
            next_order_id: 1,
        }
    }

    /// Gives the market authority `tokens` (for funding rewards) and tracks its token account.
    pub fn fund_authority(&mut self, tokens: u64) -> Pubkey {
        let authority = self.m.authority.insecure_clone();
        self.m
            .mint_to(&mut self.chain, &authority, tokens)
            .expect("mint to authority");
        let token = self.m.token_account(&authority.pubkey());
        if !self.token_accounts.contains(&token) {
            self.token_accounts.push(token);
        }
        self.minted += tokens;
        token
    }

    pub fn worker_state(&self, w: &WorkerKeys) -> Worker {
        self.chain.fetch(&w.worker).expect("worker")
    }

    pub fn orch(&self) -> Pubkey {
        self.m.orchestrator.pubkey()
    }

    pub fn user(&mut self, tokens: u64) -> Keypair {
        let k = self
            .m
            .funded_user(&mut self.chain, tokens)
            .expect("fund user");
        self.token_accounts.push(self.m.token_account(&k.pubkey()));
        self.minted += tokens;
        k
    }

    pub fn send(&mut self, ixs: &[Instruction], payer: &Keypair) -> Result<Outcome, ChainError> {
        let r = self.chain.send(ixs, payer, &[]);
        if r.is_ok() {
            self.check_invariants();
        }
        r
    }

    pub fn send_orch(&mut self, ixs: &[Instruction]) -> Result<Outcome, ChainError> {
        let orch = self.m.orchestrator.insecure_clone();
        self.send(ixs, &orch)
    }

    /// A registered worker with `stake` bonded.
    pub fn worker_with(&mut self, hw: HardwareClaim, price: u64, stake: u64) -> WorkerKeys {
        let owner = self.user(stake.max(1) * 2);
        let node = Keypair::new();
        let token = self.m.token_account(&owner.pubkey());
        let mut ixs = vec![ix::register_worker(
            &self.m.addrs,
            &owner.pubkey(),
            RegisterWorkerArgs {
                node_key: node.pubkey(),
                hardware: hw,
                price_per_gpu_second: price,
            },
        )];
        if stake > 0 {
            ixs.push(ix::stake(&self.m.addrs, &owner.pubkey(), &token, stake));
        }
        let worker = self.m.addrs.worker(&owner.pubkey());
        self.workers.push(worker);
        self.send(&ixs, &owner).expect("register worker");
        WorkerKeys {
            owner,
            node,
            worker,
            token,
        }
    }

    pub fn worker(&mut self) -> WorkerKeys {
        self.worker_with(hardware(), PRICE, 1_000)
    }

    pub fn order_args(&mut self, req: OrderRequirements, deposit: u64) -> CreateOrderArgs {
        let id = self.next_order_id;
        self.next_order_id += 1;
        CreateOrderArgs {
            order_id: id,
            terms: OrderTerms {
                requirements: req,
                max_price_per_gpu_second: 20,
                duration: 3_600,
                mode: OrderMode::Spot,
                job_spec_hash: [9; 32],
            },
            deposit,
        }
    }

    pub fn order_from(
        &mut self,
        buyer: &Keypair,
        args: CreateOrderArgs,
    ) -> Result<OrderKeys, ChainError> {
        let token = self.m.token_account(&buyer.pubkey());
        let id = args.order_id;
        let order = self.m.addrs.order(&buyer.pubkey(), id);
        self.orders.push(order);
        self.send(
            &[ix::create_order(
                &self.m.addrs,
                &buyer.pubkey(),
                &token,
                args,
            )],
            buyer,
        )?;
        Ok(OrderKeys {
            buyer: buyer.pubkey(),
            order,
            token,
            id,
        })
    }

    /// A new buyer with `deposit` in escrow on an order for `gpus` H100s in EU.
    pub fn order(&mut self, gpus: u16, deposit: u64) -> (Keypair, OrderKeys) {
        let buyer = self.user(deposit * 2);
        let args = self.order_args(requirements(gpus), deposit);
        let o = self.order_from(&buyer, args).expect("create order");
        self.buyers.push(buyer.insecure_clone());
        (buyer, o)
    }

    pub fn assign(
        &mut self,
        o: &OrderKeys,
        w: &WorkerKeys,
        gpus: u16,
    ) -> Result<LeaseRef, ActionError> {
        self.assign_to(&o.order, &w.worker, gpus)
    }

    /// Assigns `gpus` of `worker` to `order` through the orchestrator and returns the new lease
    /// instance.
    pub fn assign_to(
        &mut self,
        order: &Pubkey,
        worker: &Pubkey,
        gpus: u16,
    ) -> Result<LeaseRef, ActionError> {
        let key = gpumesh_client::pda::lease(order, worker).0;
        if !self.leases.contains(&key) {
            self.leases.push(key);
        }
        let (lease, _) = self
            .orchestrator
            .assign(&mut self.chain, order, worker, gpus)?;
        self.check_invariants();
        Ok(lease)
    }

    /// The reference to a live lease, read from the chain.
    pub fn lease_ref(&self, lease: &Pubkey) -> LeaseRef {
        LeaseRef::of(&self.chain.fetch::<Lease>(lease).expect("lease"))
    }

    /// A receipt from `w` for `seconds` served on `lease`. Going forward, the worker records a
    /// heartbeat at that point and signs from its chain; a claim below what it already recorded
    /// (a replay, an old receipt) is signed over its current head, as a misbehaving worker
    /// might.
    pub fn receipt(
        &self,
        w: &WorkerKeys,
        lease: &LeaseRef,
        seconds: u64,
    ) -> (LeaseRef, SignedReceipt) {
        let mut services = self.services.borrow_mut();
        let service = services
            .entry((lease.lease, lease.nonce))
            .or_insert_with(|| {
                LeaseService::new(
                    receipt::key(&gpumesh_client::program::ID),
                    receipt::key(&lease.lease),
                    lease.nonce,
                )
            });
        let node = receipt::signing_key(&w.node);
        if seconds >= service.served_seconds() {
            let now_ms = self.chain.unix_time().expect("clock") as u64 * 1_000;
            service
                .heartbeat(now_ms, seconds, &seconds.to_le_bytes())
                .expect("a heartbeat forward");
            (*lease, service.receipt(&node))
        } else {
            let r = receipt::sign(&w.node, &lease.lease, lease.nonce, seconds, service.head());
            (*lease, r)
        }
    }

    /// Settles receipts through the orchestrator (checked off chain, batched to fit a
    /// transaction); one outcome with every batch's events and logs.
    pub fn settle(
        &mut self,
        receipts: &[(LeaseRef, SignedReceipt)],
    ) -> Result<Outcome, ActionError> {
        let outcomes = self.orchestrator.settle(&mut self.chain, receipts)?;
        self.check_invariants();
        let mut all = Outcome {
            signature: String::new(),
            logs: vec![],
            events: vec![],
        };
        for o in outcomes {
            all.signature = o.signature;
            all.logs.extend(o.logs);
            all.events.extend(o.events);
        }
        Ok(all)
    }

    pub fn market(&self) -> Market {
        self.chain.fetch(&self.m.addrs.market).expect("market")
    }

    pub fn balance(&self, token: &Pubkey) -> u64 {
        self.chain.token_balance(token).expect("balance")
    }

    /// Every token balance and every program account's bytes: what a refusal must not change.
    pub fn snapshot(&self) -> BTreeMap<Pubkey, Option<RawAccount>> {
        let mut keys: Vec<Pubkey> = self.token_accounts.clone();
        keys.push(self.m.addrs.market);
        keys.extend(self.workers.iter().copied());
        keys.extend(self.orders.iter().copied());
        keys.extend(self.leases.iter().copied());
        keys.into_iter()
            .map(|k| (k, self.chain.account(&k).expect("account")))
            .collect()
    }

    /// Sends `ixs`, expects the program to refuse them with `expected`, and checks that no
    /// balance and no program account changed.
    pub fn refuses(&mut self, ixs: &[Instruction], payer: &Keypair, expected: GpumeshError) {
        self.refuses_code(ixs, payer, u32::from(expected));
    }

    pub fn refuses_code(&mut self, ixs: &[Instruction], payer: &Keypair, code: u32) {
        let before = self.snapshot();
        let err = self
            .chain
            .send(ixs, payer, &[])
            .expect_err("the program should refuse this");
        assert_eq!(err.code(), Some(code), "unexpected error: {err}");
        assert_eq!(
            before,
            self.snapshot(),
            "a refused transaction changed state"
        );
    }

    /// Like [`Fx::refuses`] for refusals that come from the runtime, not the program.
    pub fn refused_by_runtime(&mut self, ixs: &[Instruction], payer: &Keypair) -> ChainError {
        let before = self.snapshot();
        let err = self.chain.send(ixs, payer, &[]).expect_err("should fail");
        assert_eq!(
            before,
            self.snapshot(),
            "a refused transaction changed state"
        );
        err
    }

    /// Conservation: each vault holds exactly what the accounts say it holds, the market's
    /// totals match the sums over workers and orders, and no token was created or destroyed.
    pub fn check_invariants(&self) {
        let market = self.market();
        // Live leases, and what each worker and order must say about them.
        let mut leased = 0u64;
        let mut by_worker: BTreeMap<Pubkey, (u16, u16)> = BTreeMap::new();
        let mut by_order: BTreeMap<Pubkey, (u16, u16)> = BTreeMap::new();
        let mut live = 0u32;
        for key in &self.leases {
            let Some(lease) = self.chain.fetch_opt::<Lease>(key).expect("lease") else {
                continue;
            };
            live += 1;
            leased += lease.gpus as u64;
            let w = by_worker.entry(lease.worker).or_default();
            *w = (w.0 + lease.gpus, w.1 + 1);
            let o = by_order.entry(lease.order).or_default();
            *o = (o.0 + lease.gpus, o.1 + 1);
            assert_eq!(
                lease.fee_paid,
                lease.amount_paid * lease.fee_bps as u64 / 10_000,
                "lease fee is not the agreed share of its cumulative payments"
            );
            assert_eq!(
                lease.fee_burned,
                lease.fee_paid * lease.burn_bps as u64 / 10_000,
                "lease burn is not the agreed share of its fees"
            );
            assert!(lease.nonce < market.leases_assigned, "lease nonce");
        }
        assert_eq!(market.active_leases, live, "market.active_leases");
        let mut stake = 0u128;
        let mut unbonding = 0u128;
        let mut claimable = 0u128;
        let mut rewards_owed = 0u128;
        for key in &self.workers {
            if let Some(w) = self.chain.fetch_opt::<Worker>(key).expect("worker") {
                stake += w.stake as u128;
                unbonding += w.unbonding as u128;
                claimable += w.earnings_claimable as u128;
                rewards_owed += w.rewards_claimable as u128;
                let (gpus, count) = by_worker.get(key).copied().unwrap_or_default();
                assert_eq!(
                    (w.gpus_leased, w.active_leases),
                    (gpus, count),
                    "worker's leased GPUs and leases"
                );
                assert!(w.gpus_leased <= w.hardware.gpu_count, "worker over-leased");
            }
        }
        let mut escrow = 0u128;
        for o in &self.orders {
            if let Some(order) = self.chain.fetch_opt::<Order>(o).expect("order") {
                escrow += order.escrow_remaining as u128;
                assert_eq!(
                    order.escrow_deposited,
                    order.escrow_remaining + order.total_paid
                );
                let (gpus, count) = by_order.get(o).copied().unwrap_or_default();
                assert_eq!(
                    (order.gpus_assigned, order.active_leases),
                    (gpus, count),
                    "order's assigned GPUs and leases"
                );
            }
        }
        assert_eq!(market.total_stake as u128, stake, "market.total_stake");
        assert_eq!(
            market.total_unbonding as u128, unbonding,
            "market.total_unbonding"
        );
        assert_eq!(
            market.total_claimable as u128, claimable,
            "market.total_claimable"
        );
        assert_eq!(market.total_escrow as u128, escrow, "market.total_escrow");
        let a = &self.m.addrs;
        assert_eq!(
            self.balance(&a.stake_vault) as u128,
            stake + unbonding,
            "stake vault"
        );
        assert_eq!(
            self.balance(&a.escrow_vault) as u128,
            escrow + claimable,
            "escrow vault"
        );
        assert_eq!(
            self.balance(&a.treasury_vault),
            market.treasury_balance,
            "treasury"
        );
        // Emission: paid ≤ owed ≤ released ≤ funded; everything released, funded or not, ≤ what
        // the schedule has unlocked; the vault holds funded − paid.
        let e = &market.emission;
        assert_eq!(
            self.balance(&a.rewards_vault),
            e.funded - e.paid,
            "rewards vault"
        );
        assert_eq!(
            rewards_owed + e.paid as u128,
            e.accrued as u128,
            "rewards owed"
        );
        assert!(e.accrued <= e.distributed, "owed more than released");
        let now = self.chain.unix_time().expect("clock");
        let unlocked = gpumesh_client::program::emission::unlocked(e, now).expect("unlocked");
        assert!(
            e.distributed + e.undistributed <= e.funded,
            "released more than funded"
        );
        assert_eq!(
            e.distributed + e.undistributed + e.unfunded,
            gpumesh_client::program::emission::unlocked(e, e.last_update_ts).expect("unlocked"),
            "every released unit is accounted once"
        );
        assert!(
            e.distributed + e.undistributed + e.unfunded <= unlocked,
            "released more than unlocked"
        );
        assert_eq!(market.leased_gpus, leased, "leased GPUs");
        // Tokens are created only by minting and destroyed only by the fee burn, and the mint's
        // supply agrees.
        let total: u128 = self
            .token_accounts
            .iter()
            .map(|k| self.balance(k) as u128)
            .sum();
        assert_eq!(
            total + market.total_burned as u128,
            self.minted as u128,
            "tokens created or destroyed"
        );
        let mint: anchor_spl::token::Mint = self.chain.fetch(&a.mint).expect("mint");
        let ours: u128 = self
            .token_accounts
            .iter()
            .filter_map(|k| {
                let t: anchor_spl::token::TokenAccount = self.chain.fetch_opt(k).expect("token")?;
                (t.mint == a.mint).then_some(t.amount as u128)
            })
            .sum();
        assert_eq!(mint.supply as u128, ours, "mint supply");
        // The SDK's audit (what `gpumesh market audit` runs) agrees that the books hold.
        let audit = gpumesh_client::audit::audit(&self.chain, &a.market).expect("audit");
        assert!(audit.is_sound(), "audit: {:?}", audit.violations);
    }
}
