//! Random sequences of market instructions by several buyers and workers, with clock warps, run
//! through the real runtime. After every step, whether the program accepted or refused it:
//! every vault holds exactly what the accounts say, no token is created or destroyed, no lease is
//! paid beyond wall time or its price, emission paid never exceeds what the schedule has unlocked,
//! and a refused step changed nothing. Steps include slashing (offline and fraud), expiry, jail,
//! the price circuit breaker (reference resets and worker re-pricing) and reward claims.

mod common;

use common::*;
use gpumesh_client::ix::{self, LeaseRef};
use gpumesh_client::local::EmissionConfig;
use gpumesh_client::program::instructions::{UpdateMarketArgs, UpdateWorkerArgs};
use gpumesh_client::program::state::*;
use gpumesh_client::*;
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
        completed: bool,
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
        3 => (0..3usize, 1..3u16, 1..40_000u64, 5..25u64).prop_map(|(buyer, gpus, deposit, max_price)| Step::CreateOrder { buyer, gpus, deposit, max_price }),
        1 => (0..8usize, 1..10_000u64).prop_map(|(order, amount)| Step::TopUp { order, amount }),
        5 => (0..8usize, 0..4usize).prop_map(|(order, worker)| Step::Assign { order, worker }),
        5 => (0..8usize, prop_oneof![9 => 1..=100u8, 1 => 101..=120u8]).prop_map(|(lease, fraction)| Step::Settle { lease, fraction }),
        2 => prop_oneof![9 => 1..=100u8, 1 => 101..=110u8].prop_map(|fraction| Step::SettleBatch { fraction }),
        2 => (0..8usize, any::<bool>()).prop_map(|(lease, completed)| Step::CloseLease { lease, completed }),
        1 => (0..8usize).prop_map(|order| Step::Cancel { order }),
        1 => (0..8usize).prop_map(|order| Step::Complete { order }),
        1 => (0..4usize, 1..3_000u64).prop_map(|(worker, amount)| Step::Stake { worker, amount }),
        1 => (0..4usize, 1..3_000u64).prop_map(|(worker, amount)| Step::Unstake { worker, amount }),
        1 => (0..4usize).prop_map(|worker| Step::Withdraw { worker }),
        1 => (0..4usize).prop_map(|worker| Step::Claim { worker }),
        4 => prop_oneof![9 => 0..600i64, 1 => Just(params().unbonding_period)].prop_map(|seconds| Step::Warp { seconds }),
        1 => (0..8usize).prop_map(|lease| Step::Offline { lease }),
        1 => (0..4usize).prop_map(|worker| Step::Fraud { worker }),
        1 => (0..8usize).prop_map(|lease| Step::Expire { lease }),
        1 => (0..4usize).prop_map(|worker| Step::Unjail { worker }),
        1 => (0..4usize).prop_map(|worker| Step::ClaimRewards { worker }),
        1 => (1..30u64).prop_map(|price| Step::SetReference { price }),
        1 => (0..4usize, 1..60u64).prop_map(|(worker, price)| Step::Reprice { worker, price }),
    ]
}

struct Model {
    fx: Fx,
    buyers: Vec<Keypair>,
    workers: Vec<WorkerKeys>,
    orders: Vec<OrderKeys>,
    leases: Vec<(LeaseRef, usize)>,
    /// Highest receipt each lease has been sent, so later receipts grow.
    sent: std::collections::HashMap<anchor_lang::prelude::Pubkey, u64>,
}

impl Model {
    fn new() -> Self {
        let params = MarketParams {
            max_receipt_age: 600,
            jail_period: 3_600,
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
        let workers = vec![
            fx.worker_with(hardware(), 5, 1_000),
            fx.worker_with(hardware(), 12, 2_500),
            fx.worker_with(
                HardwareClaim {
                    gpu_count: 2,
                    ..hardware()
                },
                8,
                2_000,
            ),
            fx.worker_with(
                HardwareClaim {
                    region: US,
                    ..hardware()
                },
                6,
                1_000,
            ),
        ];
        Self {
            fx,
            buyers,
            workers,
            orders: vec![],
            leases: vec![],
            sent: Default::default(),
        }
    }

    fn now(&self) -> i64 {
        self.fx.chain.unix_time().unwrap()
    }

    /// Receipt for `fraction`% of the wall time since the lease began (over 100% must be refused).
    fn receipt_for(&mut self, i: usize, fraction: u8) -> Option<(LeaseRef, SignedReceipt)> {
        let (lref, w) = *pick(&self.leases, i)?;
        let lease: Lease = self.fx.chain.fetch_opt(&lref.lease).unwrap()?;
        let wall = (self.now() - lease.start_ts).max(0) as u64;
        let seconds = wall * fraction as u64 / 100;
        self.sent.insert(lref.lease, seconds);
        Some(self.fx.receipt(&self.workers[w], &lref, seconds))
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
                args.max_price_per_gpu_second = max_price;
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
                let Some(o) = pick(&self.orders, order) else {
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
            Step::Assign { order, worker } => {
                let Some(o) = pick(&self.orders, order) else {
                    return;
                };
                let w = &self.workers[worker];
                let lref = LeaseRef::new(o.order, w.worker);
                if !self.leases.iter().any(|(l, _)| l.lease == lref.lease) {
                    self.leases.push((lref, worker));
                }
                (
                    vec![ix::assign(&a, &orch.pubkey(), &o.order, &w.worker, 1)],
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
            Step::CloseLease { lease, completed } => {
                let Some((lref, _)) = pick(&self.leases, lease) else {
                    return;
                };
                let reason = if completed {
                    CloseReason::Completed
                } else {
                    CloseReason::Cancelled
                };
                (
                    vec![ix::close_lease(&a, &orch.pubkey(), lref, reason)],
                    orch,
                )
            }
            Step::Cancel { order } => {
                let Some(o) = pick(&self.orders, order) else {
                    return;
                };
                let b = self.buyer_of(o.buyer);
                (
                    vec![ix::cancel_order(&a, &b.pubkey(), &o.token, &o.order)],
                    b,
                )
            }
            Step::Complete { order } => {
                let Some(o) = pick(&self.orders, order) else {
                    return;
                };
                (
                    vec![ix::complete_order(
                        &a,
                        &orch.pubkey(),
                        &o.buyer,
                        &o.token,
                        &o.order,
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
                let Some((lref, _)) = pick(&self.leases, lease) else {
                    return;
                };
                let Some(o) = self.orders.iter().find(|o| o.order == lref.order) else {
                    return;
                };
                (
                    vec![ix::close_lease_offline(&a, &orch.pubkey(), lref, &o.token)],
                    orch,
                )
            }
            Step::Fraud { worker } => {
                let w = &self.workers[worker];
                let state: Worker = self.fx.chain.fetch(&w.worker).unwrap();
                let serving = state.active_lease.and_then(|l| {
                    let (lref, _) = self.leases.iter().find(|(r, _)| r.lease == l)?;
                    let o = self.orders.iter().find(|o| o.order == lref.order)?;
                    Some((*lref, o.token))
                });
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
                let Some((lref, _)) = pick(&self.leases, lease) else {
                    return;
                };
                let caller = self.buyers[0].insecure_clone();
                (
                    vec![ix::expire_lease(&a, &caller.pubkey(), &orch.pubkey(), lref)],
                    caller,
                )
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

    fn buyer_of(&self, key: anchor_lang::prelude::Pubkey) -> Keypair {
        self.buyers
            .iter()
            .find(|b| b.pubkey() == key)
            .unwrap()
            .insecure_clone()
    }

    fn check_leases(&self) {
        let now = self.now();
        for (lref, _) in &self.leases {
            let Some(lease) = self.fx.chain.fetch_opt::<Lease>(&lref.lease).unwrap() else {
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
            if let Some(order) = self.fx.chain.fetch_opt::<Order>(&lref.order).unwrap() {
                assert!(
                    lease.amount_paid <= order.total_paid,
                    "paid beyond the escrow"
                );
                assert!(lease.seconds_settled <= order.duration);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, max_shrink_iters: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_sequences_keep_every_invariant(steps in prop::collection::vec(step(), 1..60)) {
        let mut model = Model::new();
        for s in &steps {
            model.apply(s);
        }
    }
}
