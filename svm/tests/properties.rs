//! Random sequences of market instructions by several buyers and multi-GPU workers (several
//! leases per worker), with clock warps, run through the real runtime. After every step, whether
//! the program accepted or refused it: every vault holds exactly what the accounts say, no token
//! is created or destroyed, every worker's and order's GPU counts match their live leases, no
//! lease is paid beyond wall time, its price or the buyer's close request, emission paid never
//! exceeds what the schedule has unlocked, and a refused step changed nothing. Steps include
//! slashing (offline and fraud), expiry, jail, the price circuit breaker (reference resets and
//! worker re-pricing), reward claims, receipts of earlier lease instances (always refused), and
//! the buyer's exit: whatever came before, a buyer that asks to close gets every lease ended and
//! its unspent escrow back once the exit window is over.
//!
//! Four test functions with different seeds share the cases, so the harness runs them on every
//! core.

mod common;

use anchor_lang::prelude::Pubkey;
use common::*;
use gpumesh_client::ix::{self, LeaseRef};
use gpumesh_client::program::instructions::{UpdateMarketArgs, UpdateWorkerArgs};
use gpumesh_client::program::state::*;
use gpumesh_client::*;
use gpumesh_svm::fixtures::EmissionConfig;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Step {
    CreateOrder {
        buyer: usize,
        gpus: u16,
        deposit: u64,
        max_price: u64,
    },
    TopUp {
        order: usize,
        amount: u64,
    },
    Assign {
        order: usize,
        worker: usize,
        gpus: u16,
    },
    Settle {
        lease: usize,
        fraction: u8,
    },
    SettleBatch {
        fraction: u8,
    },
    CloseLease {
        lease: usize,
        reason: u8,
    },
    Cancel {
        order: usize,
    },
    Complete {
        order: usize,
    },
    Stake {
        worker: usize,
        amount: u64,
    },
    Unstake {
        worker: usize,
        amount: u64,
    },
    Withdraw {
        worker: usize,
    },
    Claim {
        worker: usize,
    },
    Warp {
        seconds: i64,
    },
    Offline {
        lease: usize,
    },
    Fraud {
        worker: usize,
        /// Also when it serves no lease (then the slash takes its free GPUs' share).
        idle: bool,
    },
    Expire {
        lease: usize,
    },
    Unjail {
        worker: usize,
    },
    ClaimRewards {
        worker: usize,
    },
    SetReference {
        price: u64,
    },
    Reprice {
        worker: usize,
        price: u64,
    },
    RequestClose {
        order: usize,
    },
    EndLease {
        lease: usize,
    },
    BuyerLeaves {
        order: usize,
    },
    ReplayOld {
        receipt: usize,
    },
    CreateReserved {
        buyer: usize,
        gpus: u16,
    },
    Preempt {
        lease: usize,
        order: usize,
    },
}

/// Indices in steps are taken modulo what exists, so most steps act on something real.
fn pick<T>(items: &[T], i: usize) -> Option<&T> {
    if items.is_empty() {
        None
    } else {
        items.get(i % items.len())
    }
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0..3usize, 1..5u16, 1..40_000u64, 5..25u64).prop_map(|(buyer, gpus, deposit, max_price)| Step::CreateOrder { buyer, gpus, deposit, max_price }),
        1 => (0..8usize, 1..10_000u64).prop_map(|(order, amount)| Step::TopUp { order, amount }),
        10 => (0..8usize, 0..4usize, 0..4u16).prop_map(|(order, worker, gpus)| Step::Assign { order, worker, gpus }),
        10 => (0..8usize, prop_oneof![9 => 1..=100u8, 1 => 101..=120u8]).prop_map(|(lease, fraction)| Step::Settle { lease, fraction }),
        4 => prop_oneof![9 => 1..=100u8, 1 => 101..=110u8].prop_map(|fraction| Step::SettleBatch { fraction }),
        2 => (0..8usize, 0..3u8).prop_map(|(lease, reason)| Step::CloseLease { lease, reason }),
        1 => (0..8usize).prop_map(|order| Step::Cancel { order }),
        1 => (0..8usize).prop_map(|order| Step::Complete { order }),
        1 => (0..4usize, 1..3_000u64).prop_map(|(worker, amount)| Step::Stake { worker, amount }),
        1 => (0..4usize, 1..3_000u64).prop_map(|(worker, amount)| Step::Unstake { worker, amount }),
        1 => (0..4usize).prop_map(|worker| Step::Withdraw { worker }),
        1 => (0..4usize).prop_map(|worker| Step::Claim { worker }),
        8 => prop_oneof![9 => 0..600i64, 1 => Just(params().unbonding_period)].prop_map(|seconds| Step::Warp { seconds }),
        1 => (0..8usize).prop_map(|lease| Step::Offline { lease }),
        1 => (0..4usize, prop_oneof![3 => Just(false), 1 => Just(true)]).prop_map(|(worker, idle)| Step::Fraud { worker, idle }),
        1 => (0..8usize).prop_map(|lease| Step::Expire { lease }),
        1 => (0..4usize).prop_map(|worker| Step::Unjail { worker }),
        1 => (0..4usize).prop_map(|worker| Step::ClaimRewards { worker }),
        1 => (1..30u64).prop_map(|price| Step::SetReference { price }),
        1 => (0..4usize, 1..60u64).prop_map(|(worker, price)| Step::Reprice { worker, price }),
        1 => (0..8usize).prop_map(|order| Step::RequestClose { order }),
        1 => (0..8usize).prop_map(|lease| Step::EndLease { lease }),
        1 => (0..8usize).prop_map(|order| Step::BuyerLeaves { order }),
        1 => (0..64usize).prop_map(|receipt| Step::ReplayOld { receipt }),
        1 => (0..3usize, 1..3u16).prop_map(|(buyer, gpus)| Step::CreateReserved { buyer, gpus }),
        2 => (0..8usize, 0..8usize).prop_map(|(lease, order)| Step::Preempt { lease, order }),
    ]
}

struct Model {
    fx: Fx,
    buyers: Vec<Keypair>,
    workers: Vec<WorkerKeys>,
    orders: Vec<OrderKeys>,
    /// Every lease address assigned so far, with its worker's index.
    leases: Vec<(Pubkey, usize)>,
    /// Every receipt signed so far: a receipt of an earlier instance must never settle.
    signed: Vec<(LeaseRef, SignedReceipt)>,
}

impl Model {
    fn new() -> Self {
        let params = MarketParams {
            max_receipt_age: 600,
            jail_period: 900,
            fee_burn_bps: 2_000,
            slash_treasury_share_bps: 2_000,
            ..params()
        };
        let emission = EmissionConfig {
            supply: 1_000_000_000,
            share_bps: 3_000,
            duration: 100_000,
        };
        let mut fx = Fx::with_emission(params, emission);
        let authority = fx.m.authority.insecure_clone();
        let total = fx.market().emission.total;
        let auth_token = fx.fund_authority(total);
        fx.send(
            &[ix::fund_rewards(
                &fx.m.addrs,
                &authority.pubkey(),
                &auth_token,
                total,
            )],
            &authority,
        )
        .expect("fund rewards");
        let buyers = (0..3).map(|_| fx.user(200_000)).collect();
        let gpus = |gpu_count| HardwareClaim {
            gpu_count,
            ..hardware()
        };
        let workers = vec![
            fx.worker_with(hardware(), 5, 1_000),
            // Staked for 3 of its 4 GPUs: the fourth is assignable only after more stake.
            fx.worker_with(gpus(4), 12, 3_500),
            fx.worker_with(gpus(2), 8, 2_000),
            fx.worker_with(
                HardwareClaim {
                    region: US,
                    ..gpus(2)
                },
                6,
                2_000,
            ),
        ];
        Self {
            fx,
            buyers,
            workers,
            orders: vec![],
            leases: vec![],
            signed: vec![],
        }
    }

    /// The live lease at index `i` (modulo the live leases), if there is one.
    fn live_lease(&self, i: usize) -> Option<(LeaseRef, usize)> {
        let live: Vec<(LeaseRef, usize)> = self
            .leases
            .iter()
            .filter_map(|(key, w)| {
                let lease = self.fx.chain.fetch_opt::<Lease>(key).unwrap()?;
                Some((LeaseRef::of(&lease), *w))
            })
            .collect();
        pick(&live, i).copied()
    }

    /// The open order at index `i` (modulo the orders not closed yet), if there is one.
    fn live_order(&self, i: usize) -> Option<OrderKeys> {
        let live: Vec<OrderKeys> = self
            .orders
            .iter()
            .filter(|o| self.fx.chain.account(&o.order).unwrap().is_some())
            .copied()
            .collect();
        pick(&live, i).copied()
    }

    /// Every live lease of `order`.
    fn leases_of(&self, order: &Pubkey) -> Vec<LeaseRef> {
        self.leases
            .iter()
            .filter_map(|(key, _)| self.fx.chain.fetch_opt::<Lease>(key).unwrap())
            .filter(|l| l.order == *order)
            .map(|l| LeaseRef::of(&l))
            .collect()
    }

    fn now(&self) -> i64 {
        self.fx.chain.unix_time().unwrap()
    }

    /// Receipt for what is settled plus `fraction`% of the wall time since then (over 100% claims
    /// more than wall time and must be refused).
    fn receipt_for(&mut self, i: usize, fraction: u8) -> Option<(LeaseRef, SignedReceipt)> {
        let (lref, w) = self.live_lease(i)?;
        let lease: Lease = self.fx.chain.fetch(&lref.lease).unwrap();
        let wall = (self.now() - lease.start_ts).max(0) as u64;
        let unsettled = wall.saturating_sub(lease.seconds_settled);
        let seconds = lease.seconds_settled + unsettled * fraction as u64 / 100;
        let r = self.fx.receipt(&self.workers[w], &lref, seconds);
        self.signed.push(r.clone());
        Some(r)
    }

    fn apply(&mut self, s: &Step) {
        let a = self.fx.m.addrs;
        let orch = self.fx.m.orchestrator.insecure_clone();
        let (ixs, payer): (Vec<_>, Keypair) = match s.clone() {
            Step::CreateOrder {
                buyer,
                gpus,
                deposit,
                max_price,
            } => {
                let b = self.buyers[buyer].insecure_clone();
                let mut args = self.fx.order_args(requirements(gpus), deposit);
                args.terms.max_price_per_gpu_second = max_price;
                let token = self.fx.m.token_account(&b.pubkey());
                let order = a.order(&b.pubkey(), args.order_id);
                self.fx.orders.push(order);
                self.orders.push(OrderKeys {
                    buyer: b.pubkey(),
                    order,
                    token,
                    id: args.order_id,
                });
                (vec![ix::create_order(&a, &b.pubkey(), &token, args)], b)
            }
            Step::TopUp { order, amount } => {
                let Some(o) = self.live_order(order) else {
                    return;
                };
                let b = self.buyer_of(o.buyer);
                (
                    vec![ix::top_up_order(
                        &a,
                        &b.pubkey(),
                        &o.token,
                        &o.order,
                        amount,
                    )],
                    b,
                )
            }
            Step::Assign {
                order,
                worker,
                gpus,
            } => {
                let Some(o) = self.live_order(order) else {
                    return;
                };
                let w = &self.workers[worker];
                // gpus 0 asks for what fits (the worker's free GPUs, the order's need); others
                // are sent as they are and may be refused.
                let gpus = match (gpus, self.fx.chain.fetch_opt::<Order>(&o.order).unwrap()) {
                    (0, Some(order)) => {
                        let state: Worker = self.fx.chain.fetch(&w.worker).unwrap();
                        let need = order
                            .terms
                            .requirements
                            .gpu_count
                            .saturating_sub(order.gpus_assigned);
                        need.min(state.free_gpus()).max(1)
                    }
                    (0, None) => 1,
                    (g, _) => g,
                };
                let key = gpumesh_client::pda::lease(&o.order, &w.worker).0;
                if !self.leases.iter().any(|(l, _)| *l == key) {
                    self.leases.push((key, worker));
                    self.fx.leases.push(key);
                }
                (
                    vec![ix::assign(&a, &orch.pubkey(), &o.order, &w.worker, gpus)],
                    orch,
                )
            }
            Step::Settle { lease, fraction } => {
                let Some(r) = self.receipt_for(lease, fraction) else {
                    return;
                };
                (ix::settle(&a, &orch.pubkey(), &[r]).to_vec(), orch)
            }
            Step::SettleBatch { fraction } => {
                let rs: Vec<_> = (0..self.leases.len())
                    .filter_map(|i| self.receipt_for(i, fraction))
                    .take(4)
                    .collect();
                if rs.is_empty() {
                    return;
                }
                (ix::settle(&a, &orch.pubkey(), &rs).to_vec(), orch)
            }
            Step::CloseLease { lease, reason } => {
                let Some((lref, _)) = self.live_lease(lease) else {
                    return;
                };
                let reason = match reason {
                    0 => CloseReason::Completed,
                    1 => CloseReason::Cancelled,
                    _ => CloseReason::Preempted,
                };
                (
                    vec![ix::close_lease(&a, &orch.pubkey(), &lref, reason)],
                    orch,
                )
            }
            Step::Cancel { order } => {
                let Some(o) = self.live_order(order) else {
                    return;
                };
                let b = self.buyer_of(o.buyer);
                (
                    vec![ix::cancel_order(&a, &b.pubkey(), &o.token, &o.order)],
                    b,
                )
            }
            Step::Complete { order } => {
                let Some(o) = self.live_order(order) else {
                    return;
                };
                (
                    vec![ix::complete_order(
                        &a,
                        &orch.pubkey(),
                        &o.buyer,
                        &o.token,
                        &o.order,
                        [0; 32],
                    )],
                    orch,
                )
            }
            Step::Stake { worker, amount } => {
                let w = &self.workers[worker];
                (
                    vec![ix::stake(&a, &w.owner.pubkey(), &w.token, amount)],
                    w.owner.insecure_clone(),
                )
            }
            Step::Unstake { worker, amount } => {
                let w = &self.workers[worker];
                (
                    vec![ix::request_unstake(&a, &w.owner.pubkey(), &w.token, amount)],
                    w.owner.insecure_clone(),
                )
            }
            Step::Withdraw { worker } => {
                let w = &self.workers[worker];
                (
                    vec![ix::withdraw_unstaked(&a, &w.owner.pubkey(), &w.token)],
                    w.owner.insecure_clone(),
                )
            }
            Step::Claim { worker } => {
                let w = &self.workers[worker];
                (
                    vec![ix::claim_earnings(&a, &w.owner.pubkey(), &w.token)],
                    w.owner.insecure_clone(),
                )
            }
            Step::Warp { seconds } => {
                self.fx.chain.warp(seconds).unwrap();
                return;
            }
            Step::Offline { lease } => {
                let Some((lref, _)) = self.live_lease(lease) else {
                    return;
                };
                let Some(o) = self.orders.iter().find(|o| o.order == lref.order) else {
                    return;
                };
                (
                    vec![ix::close_lease_offline(&a, &orch.pubkey(), &lref, &o.token)],
                    orch,
                )
            }
            Step::Fraud { worker, idle } => {
                let w = &self.workers[worker];
                // The fraud is found on one of its leases (the first live one), or while idle.
                let serving = self
                    .leases
                    .iter()
                    .filter(|(_, i)| *i == worker)
                    .filter_map(|(key, _)| self.fx.chain.fetch_opt::<Lease>(key).unwrap())
                    .find_map(|l| {
                        let o = self.orders.iter().find(|o| o.order == l.order)?;
                        Some((LeaseRef::of(&l), o.token))
                    });
                if serving.is_none() && !idle {
                    return;
                }
                let ix = ix::slash_fraud(
                    &a,
                    &orch.pubkey(),
                    &w.worker,
                    serving.as_ref().map(|(l, t)| (l, t)),
                    [3; 32],
                );
                (vec![ix], orch)
            }
            Step::Expire { lease } => {
                let Some((lref, _)) = self.live_lease(lease) else {
                    return;
                };
                let caller = self.buyers[0].insecure_clone();
                (vec![ix::expire_lease(&a, &caller.pubkey(), &lref)], caller)
            }
            Step::CreateReserved { buyer, gpus } => {
                let b = self.buyers[buyer].insecure_clone();
                let mut args = self
                    .fx
                    .order_args(requirements(gpus), 20 * gpus as u64 * 600);
                args.terms.mode = OrderMode::Reserved;
                args.terms.duration = 600;
                let token = self.fx.m.token_account(&b.pubkey());
                let order = a.order(&b.pubkey(), args.order_id);
                self.fx.orders.push(order);
                self.orders.push(OrderKeys {
                    buyer: b.pubkey(),
                    order,
                    token,
                    id: args.order_id,
                });
                (vec![ix::create_order(&a, &b.pubkey(), &token, args)], b)
            }
            Step::Preempt { lease, order } => {
                let (Some((lref, _)), Some(o)) = (self.live_lease(lease), self.live_order(order))
                else {
                    return;
                };
                (
                    vec![ix::preempt_lease(&a, &orch.pubkey(), &lref, &o.order)],
                    orch,
                )
            }
            Step::RequestClose { order } => {
                let Some(o) = self.live_order(order) else {
                    return;
                };
                let b = self.buyer_of(o.buyer);
                (vec![ix::request_close(&a, &b.pubkey(), &o.order)], b)
            }
            Step::EndLease { lease } => {
                let Some((lref, _)) = self.live_lease(lease) else {
                    return;
                };
                let Some(o) = self.orders.iter().find(|o| o.order == lref.order) else {
                    return;
                };
                let b = self.buyer_of(o.buyer);
                (vec![ix::end_lease(&a, &b.pubkey(), &lref)], b)
            }
            Step::BuyerLeaves { order } => {
                let Some(o) = self.live_order(order) else {
                    return;
                };
                self.buyer_leaves(&o);
                self.check_leases();
                return;
            }
            Step::ReplayOld { receipt } => {
                // A receipt whose lease instance is gone (closed, or replaced by a later one at
                // the same address) must never settle.
                let Some((lref, r)) = pick(&self.signed, receipt).cloned() else {
                    return;
                };
                let current = self.fx.chain.fetch_opt::<Lease>(&lref.lease).unwrap();
                if current.as_ref().is_some_and(|l| l.nonce == lref.nonce) {
                    return;
                }
                let live = current.map(|l| LeaseRef::of(&l)).unwrap_or(lref);
                let before = self.fx.snapshot();
                let sent =
                    self.fx
                        .chain
                        .send(&ix::settle(&a, &orch.pubkey(), &[(live, r)]), &orch, &[]);
                assert!(
                    sent.is_err(),
                    "a receipt of an earlier lease instance settled"
                );
                assert_eq!(before, self.fx.snapshot(), "a refused replay changed state");
                return;
            }
            Step::Unjail { worker } => {
                let w = &self.workers[worker];
                (
                    vec![ix::unjail(&a, &w.owner.pubkey())],
                    w.owner.insecure_clone(),
                )
            }
            Step::ClaimRewards { worker } => {
                let w = &self.workers[worker];
                (
                    vec![ix::claim_rewards(&a, &w.owner.pubkey(), &w.token)],
                    w.owner.insecure_clone(),
                )
            }
            Step::SetReference { price } => {
                let authority = self.fx.m.authority.insecure_clone();
                let mut prices = [0u64; 16];
                prices[H100 as usize] = price;
                let args = UpdateMarketArgs {
                    reference_prices: Some(prices),
                    ..Default::default()
                };
                (
                    vec![ix::update_market(&a, &authority.pubkey(), args)],
                    authority,
                )
            }
            Step::Reprice { worker, price } => {
                let w = &self.workers[worker];
                let args = UpdateWorkerArgs {
                    price_per_gpu_second: Some(price),
                    ..Default::default()
                };
                (
                    vec![ix::update_worker(&a, &w.owner.pubkey(), args)],
                    w.owner.insecure_clone(),
                )
            }
        };
        let before = self.fx.snapshot();
        match self.fx.chain.send(&ixs, &payer, &[]) {
            Ok(_) => {
                if std::env::var("GPUMESH_TRACE").is_ok() {
                    eprintln!("accepted {s:?}");
                }
                self.fx.check_invariants()
            }
            Err(e) => {
                if std::env::var("GPUMESH_TRACE").is_ok() {
                    eprintln!("refused {s:?}: {e}");
                }
                assert_eq!(
                    before,
                    self.fx.snapshot(),
                    "refused step {s:?} changed state"
                )
            }
        }
        self.check_leases();
    }

    /// The buyer's exit, whatever state the order is in: ask to close (unless asked already), wait
    /// out the exit window, end every remaining lease and cancel. Every step must be accepted and
    /// the buyer must get exactly the unspent escrow back.
    fn buyer_leaves(&mut self, o: &OrderKeys) {
        let a = self.fx.m.addrs;
        let Some(order) = self.fx.chain.fetch_opt::<Order>(&o.order).unwrap() else {
            return;
        };
        let b = self.buyer_of(o.buyer);
        let trace = std::env::var("GPUMESH_TRACE").is_ok();
        let exit_ts = if order.is_closing() {
            order.buyer_exit_ts
        } else {
            self.fx
                .send(&[ix::request_close(&a, &b.pubkey(), &o.order)], &b)
                .expect("a buyer can always ask to close");
            let order: Order = self.fx.chain.fetch(&o.order).unwrap();
            assert!(
                order.buyer_exit_ts - order.close_requested_ts <= MAX_BUYER_EXIT_WINDOW,
                "exit window beyond its bound"
            );
            order.buyer_exit_ts
        };
        let wait = (exit_ts - self.now()).max(0);
        self.fx.chain.warp(wait).unwrap();
        let mut ixs: Vec<_> = self
            .leases_of(&o.order)
            .iter()
            .map(|l| ix::end_lease(&a, &b.pubkey(), l))
            .collect();
        ixs.push(ix::cancel_order(&a, &b.pubkey(), &o.token, &o.order));
        let escrow: Order = self.fx.chain.fetch(&o.order).unwrap();
        let before = self.fx.balance(&o.token);
        self.fx
            .send(&ixs, &b)
            .expect("after the exit window the buyer ends every lease and cancels");
        assert_eq!(
            self.fx.balance(&o.token),
            before + escrow.escrow_remaining,
            "the buyer gets its unspent escrow back"
        );
        if trace {
            eprintln!("buyer left order {} after waiting {wait} s", o.order);
        }
    }

    fn buyer_of(&self, key: anchor_lang::prelude::Pubkey) -> Keypair {
        self.buyers
            .iter()
            .find(|b| b.pubkey() == key)
            .unwrap()
            .insecure_clone()
    }

    fn check_leases(&self) {
        let now = self.now();
        for (key, _) in &self.leases {
            let Some(lease) = self.fx.chain.fetch_opt::<Lease>(key).unwrap() else {
                continue;
            };
            let wall = (now - lease.start_ts).max(0) as u64;
            assert!(lease.seconds_settled <= wall, "paid beyond wall time");
            let cost = lease.seconds_settled as u128
                * lease.gpus as u128
                * lease.price_per_gpu_second as u128;
            assert!(
                lease.amount_paid as u128 <= cost,
                "paid beyond price x seconds"
            );
            if let Some(order) = self.fx.chain.fetch_opt::<Order>(&lease.order).unwrap() {
                assert!(
                    lease.amount_paid <= order.total_paid,
                    "paid beyond the escrow"
                );
                assert!(lease.seconds_settled <= order.terms.duration);
                if order.is_closing() {
                    assert!(
                        lease.seconds_settled as i64
                            <= (order.close_requested_ts - lease.start_ts).max(0),
                        "paid for seconds after the buyer asked to close"
                    );
                }
                if lease.preempt_at != 0 {
                    assert_eq!(order.terms.mode, OrderMode::Spot, "only spot is preempted");
                    assert!(
                        lease.seconds_settled as i64 <= (lease.preempt_at - lease.start_ts).max(0),
                        "paid for seconds after the preemption took effect"
                    );
                }
            }
        }
    }
}

fn run(steps: &[Step]) {
    let mut model = Model::new();
    for s in steps {
        model.apply(s);
    }
    // However the sequence ended, every buyer gets out.
    let orders: Vec<OrderKeys> = model.orders.clone();
    for o in &orders {
        model.buyer_leaves(o);
    }
    model.fx.check_invariants();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, max_shrink_iters: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_sequences_keep_every_invariant_a(steps in prop::collection::vec(step(), 1..80)) {
        run(&steps);
    }

    #[test]
    fn random_sequences_keep_every_invariant_b(steps in prop::collection::vec(step(), 1..80)) {
        run(&steps);
    }

    #[test]
    fn random_sequences_keep_every_invariant_c(steps in prop::collection::vec(step(), 1..80)) {
        run(&steps);
    }

    #[test]
    fn random_sequences_keep_every_invariant_d(steps in prop::collection::vec(step(), 1..80)) {
        run(&steps);
    }
}
