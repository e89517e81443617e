//! The scheduler and the program describe the same lease model, and the chain sync keeps the
//! scheduler from proposing what the program refuses. A market on the in-process chain holds
//! the awkward cases (a worker staked for part of its GPUs, one already serving a lease, a jailed
//! one, one priced above the circuit breaker, an order whose buyer asked to close it, an order
//! already partly served); the view read from the chain feeds the scheduler, every proposal
//! goes through the program's own checks, and every assignment that passes them is accepted by
//! the real program.

use gpumesh_client::chain::{Chain, ChainExt};
use gpumesh_client::ix;
use gpumesh_client::program::instructions::{
    CreateOrderArgs, RegisterWorkerArgs, UpdateMarketArgs,
};
use gpumesh_client::program::state::{
    HardwareClaim, MarketParams, Order as ChainOrder, OrderMode as ChainMode, OrderRequirements,
    OrderTerms, Worker,
};
use gpumesh_client::{Keypair, Pubkey, Signer};
use gpumesh_orchestrator::actions::Orchestrator;
use gpumesh_orchestrator::scheduler::{
    Assignment, OrderId, Placement, Region, SchedulerConfig, WorkerId,
};
use gpumesh_orchestrator::sync::{MarketView, ProposalError};
use gpumesh_svm::SvmChain;
use gpumesh_svm::fixtures::LocalMarket;
use std::collections::BTreeMap;

const CLASS: u8 = 1;
const REGIONS: [u8; 2] = [2, 5];
const MIN_STAKE: u64 = 1_000;

/// A small deterministic generator, so a failure reproduces.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

struct Market {
    chain: SvmChain,
    m: LocalMarket,
    buyer: Keypair,
    next_order: u64,
}

impl Market {
    fn worker(&mut self, gpus: u16, region: u8, price: u64, stake: u64) -> Pubkey {
        let owner = self.m.funded_user(&mut self.chain, stake).expect("owner");
        let token = self.m.token_account(&owner.pubkey());
        let a = self.m.addrs;
        self.chain
            .send(
                &[
                    ix::register_worker(
                        &a,
                        &owner.pubkey(),
                        RegisterWorkerArgs {
                            node_key: Keypair::new().pubkey(),
                            hardware: HardwareClaim {
                                gpu_class: CLASS,
                                gpu_count: gpus,
                                vram_mib: 81_920,
                                bandwidth_gbps: 3_350,
                                region,
                            },
                            price_per_gpu_second: price,
                        },
                    ),
                    ix::stake(&a, &owner.pubkey(), &token, stake),
                ],
                &owner,
                &[],
            )
            .expect("register and stake");
        a.worker(&owner.pubkey())
    }

    fn order(&mut self, gpus: u16, regions: &[u8], max_price: u64) -> Pubkey {
        let id = self.next_order;
        self.next_order += 1;
        let a = self.m.addrs;
        let token = self.m.token_account(&self.buyer.pubkey());
        self.chain
            .send(
                &[ix::create_order(
                    &a,
                    &self.buyer.pubkey(),
                    &token,
                    CreateOrderArgs {
                        order_id: id,
                        terms: OrderTerms {
                            requirements: OrderRequirements {
                                gpu_class: CLASS,
                                gpu_count: gpus,
                                min_vram_mib: 40_000,
                                min_bandwidth_gbps: 1_000,
                                regions: regions.iter().fold(0, |set, r| set | 1 << r),
                            },
                            max_price_per_gpu_second: max_price,
                            duration: 3_600,
                            mode: ChainMode::Spot,
                            job_spec_hash: [0; 32],
                        },
                        deposit: 1_000_000,
                    },
                )],
                &self.buyer,
                &[],
            )
            .expect("create order");
        a.order(&self.buyer.pubkey(), id)
    }
}

#[test]
fn proposals_checked_by_the_chain_sync_are_all_accepted_by_the_program() {
    let mut chain = SvmChain::new();
    let params = MarketParams {
        min_stake_per_gpu: MIN_STAKE,
        ..MarketParams::default()
    };
    let m = LocalMarket::create(&mut chain, params, 6).expect("market");
    let buyer = m.funded_user(&mut chain, 100_000_000).expect("buyer");
    let orchestrator = Orchestrator::new(m.addrs, m.orchestrator.insecure_clone());
    let mut mk = Market {
        chain,
        m,
        buyer,
        next_order: 1,
    };
    let a = mk.m.addrs;
    // A reference price for the class: the breaker caps asks at 6 × (1 + 300%) = 24.
    let authority = mk.m.authority.insecure_clone();
    let mut prices = [0u64; 16];
    prices[CLASS as usize] = 6;
    mk.chain
        .send(
            &[ix::update_market(
                &a,
                &authority.pubkey(),
                UpdateMarketArgs {
                    reference_prices: Some(prices),
                    ..Default::default()
                },
            )],
            &authority,
            &[],
        )
        .expect("reference price");

    let mut rng = Lcg(7);
    for _ in 0..12 {
        let gpus = [1u16, 2, 4, 8][rng.next(4) as usize];
        let region = REGIONS[rng.next(2) as usize];
        mk.worker(gpus, region, 5 + rng.next(10), MIN_STAKE * gpus as u64);
    }
    // The awkward workers.
    let half_staked = mk.worker(4, REGIONS[0], 5, 2 * MIN_STAKE);
    let busy = mk.worker(8, REGIONS[0], 5, 8 * MIN_STAKE);
    let jailed = mk.worker(8, REGIONS[0], 5, 8 * MIN_STAKE);
    let greedy = mk.worker(8, REGIONS[0], 30, 8 * MIN_STAKE);
    orchestrator
        .slash_fraud(&mut mk.chain, &jailed, None, [1; 32])
        .expect("jail");
    // `busy` already serves 3 GPUs of an order that wants 5: a partly served order.
    let partly = mk.order(5, &[REGIONS[0]], 40);
    orchestrator
        .assign(&mut mk.chain, &partly, &busy, 3)
        .expect("existing lease");
    // An order for four GPUs (more than the half-staked worker's stake backs).
    let wide = mk.order(4, &[REGIONS[0]], 40);
    // An order whose buyer asked to close it takes nothing new.
    let closing = mk.order(1, &REGIONS, 20);
    let buyer = mk.buyer.insecure_clone();
    mk.chain
        .send(
            &[ix::request_close(&a, &buyer.pubkey(), &closing)],
            &buyer,
            &[],
        )
        .expect("request close");
    for _ in 0..24 {
        let gpus = 1 + rng.next(4) as u16;
        let regions: Vec<u8> = match rng.next(3) {
            0 => vec![REGIONS[0]],
            1 => vec![REGIONS[1]],
            _ => REGIONS.to_vec(),
        };
        mk.order(gpus, &regions, 8 + rng.next(25));
    }

    let mut view = MarketView::load(&mk.chain, &a.market).expect("view");
    let index = |key: &Pubkey| {
        view.workers
            .iter()
            .position(|(k, _)| k == key)
            .expect("worker in view")
    };
    let (hs, bi, ji, gi) = (
        index(&half_staked),
        index(&busy),
        index(&jailed),
        index(&greedy),
    );
    assert_eq!(
        view.worker_spec(hs, 0).map(|s| s.gpus),
        Some(2),
        "stake backs two"
    );
    assert_eq!(
        view.worker_spec(bi, 0).map(|s| s.gpus),
        Some(5),
        "three are leased"
    );
    assert!(!view.worker_spec(ji, 0).expect("kept").status.is_placeable());
    assert!(!view.worker_spec(gi, 0).expect("kept").status.is_placeable());
    assert!(
        view.orders
            .iter()
            .enumerate()
            .all(|(i, (k, _))| *k != closing || view.order(i).is_none()),
        "a closing order is not submitted"
    );

    // The gate itself: what the program would refuse never passes it.
    let order_index = |key: &Pubkey| {
        view.orders
            .iter()
            .position(|(k, _)| k == key)
            .expect("order in view") as u64
    };
    let one = |order: u64, worker: usize, gpus: u16| Placement {
        order: OrderId(order),
        region: Region::from_code(REGIONS[0]).expect("region"),
        assignments: vec![Assignment {
            worker: WorkerId(worker as u32),
            gpus,
            price: 5,
        }],
    };
    let partly_i = order_index(&partly);
    let refusal = |p: &Placement| view.clone().propose(p).err().map(|e| e.to_string());
    assert!(matches!(
        view.clone().propose(&one(partly_i, bi, 1)),
        Err(ProposalError::LeaseExists { .. })
    ));
    for (placement, expected) in [
        (one(partly_i, ji, 1), "jailed"),
        (one(partly_i, gi, 1), "circuit breaker"),
        (one(order_index(&wide), hs, 3), "below the market minimum"),
        (one(order_index(&closing), hs, 1), "asked to close"),
    ] {
        let why = refusal(&placement).expect("refused");
        assert!(why.contains(expected), "{why}");
    }
    assert!(view.clone().propose(&one(partly_i, hs, 1)).is_ok());

    let mut s = view
        .scheduler(SchedulerConfig::default(), &BTreeMap::new())
        .expect("scheduler");
    // What each worker offered and already had leased when the view was read.
    let before: Vec<(u16, u16)> = (0..view.workers.len())
        .map(|i| {
            (
                view.worker_spec(i, 0).map_or(0, |s| s.gpus),
                view.workers[i].1.gpus_leased,
            )
        })
        .collect();
    let round = s.match_round(view.now as u64);
    let (mut sent, mut caught) = (0, 0);
    for p in &round.placements {
        match view.propose(p) {
            Ok(assignments) => {
                for c in assignments {
                    orchestrator
                        .assign(&mut mk.chain, &c.order, &c.worker, c.gpus)
                        .unwrap_or_else(|e| panic!("the program refused a checked {c:?}: {e}"));
                    sent += 1;
                }
            }
            // Only the planted conflict: the partly served order placed on the worker that
            // already serves it.
            Err(ProposalError::LeaseExists { assignment }) => {
                assert_eq!(assignment.worker, WorkerId(bi as u32));
                caught += 1;
            }
            Err(e) => panic!("the scheduler proposed what the chain sync refuses: {e}"),
        }
    }
    println!(
        "{} placements, {sent} assignments sent and accepted, {caught} caught before sending",
        round.placements.len()
    );
    assert!(sent > 10, "the round placed too little to mean anything");

    // What the chain now says agrees with the scheduler and with the rules.
    let mut shared = 0;
    for (i, (key, _)) in view.workers.iter().enumerate() {
        let w: Worker = mk.chain.fetch(key).expect("worker");
        assert!(
            w.stake >= u64::from(w.gpus_leased) * MIN_STAKE,
            "stake behind every lease"
        );
        if let Some(tracked) = s.worker(WorkerId(i as u32))
            && tracked.spec.status.is_placeable()
        {
            let (offered, leased) = before[i];
            assert_eq!(
                offered - tracked.gpus_free,
                w.gpus_leased - leased,
                "worker {i}: the GPUs the round leased, on chain and in the scheduler"
            );
        }
        if w.active_leases > 1 {
            shared += 1;
        }
    }
    assert_eq!(
        mk.chain
            .fetch::<Worker>(&jailed)
            .expect("jailed")
            .gpus_leased,
        0
    );
    assert_eq!(
        mk.chain
            .fetch::<Worker>(&greedy)
            .expect("greedy")
            .gpus_leased,
        0
    );
    assert_eq!(
        mk.chain
            .fetch::<ChainOrder>(&closing)
            .expect("closing")
            .gpus_assigned,
        0
    );
    assert!(
        shared > 0,
        "no worker serves several orders: the test lost its point"
    );
}

/// The follower's copy applies account changes as the websocket carries them. A lease closed by
/// someone else is never reported (its owner is no longer the program); the changed counts on its
/// order and worker are, and they make the copy read that lease again. An assignment the chain
/// took counts in the copy's view before the copy hears of the lease.
#[test]
fn the_followers_copy_notices_what_no_notification_reports() {
    use gpumesh_client::program::state::CloseReason;
    use gpumesh_client::pubsub::Update;
    use gpumesh_orchestrator::service::follow::Mirror;
    use gpumesh_orchestrator::sync::MarketAccounts;

    let mut chain = SvmChain::new();
    let params = MarketParams {
        min_stake_per_gpu: MIN_STAKE,
        ..MarketParams::default()
    };
    let m = LocalMarket::create(&mut chain, params, 6).expect("market");
    let buyer = m.funded_user(&mut chain, 100_000_000).expect("buyer");
    let orchestrator = Orchestrator::new(m.addrs, m.orchestrator.insecure_clone());
    let mut mk = Market {
        chain,
        m,
        buyer,
        next_order: 1,
    };
    let a = mk.m.addrs;
    let worker = mk.worker(4, REGIONS[0], 5, 4 * MIN_STAKE);
    let order = mk.order(2, &[REGIONS[0]], 40);
    let update = |chain: &SvmChain, key: &Pubkey| Update {
        key: *key,
        account: chain
            .account(key)
            .expect("read")
            .unwrap_or(gpumesh_client::RawAccount {
                lamports: 0,
                owner: Pubkey::default(),
                data: vec![],
            }),
    };

    let mut mirror = Mirror::new(MarketAccounts::load(&mk.chain, &a.market).expect("load"));
    let now = mk.chain.unix_time().expect("clock");
    // Assigned on chain; the copy has heard nothing yet, but its view counts the assignment.
    let (lease, _) = orchestrator
        .assign(&mut mk.chain, &order, &worker, 2)
        .expect("assign");
    mirror.assigned(order, worker, 2);
    let view = mirror.view(now);
    let w = view.workers.iter().find(|(k, _)| *k == worker).expect("w");
    assert_eq!(w.1.gpus_leased, 2, "the pending assignment is counted");
    assert!(
        matches!(
            view.clone().propose(&Placement {
                order: OrderId(view.orders.iter().position(|(k, _)| *k == order).unwrap() as u64),
                assignments: vec![Assignment {
                    worker: WorkerId(
                        view.workers.iter().position(|(k, _)| *k == worker).unwrap() as u32
                    ),
                    gpus: 1,
                    price: 5,
                }],
                region: Region::from_code(REGIONS[0]).expect("region"),
            }),
            Err(ProposalError::LeaseExists { .. })
        ),
        "nothing is proposed twice for the pair"
    );
    // The notifications arrive: the lease, then its order and worker; the counts agree.
    for key in [lease.lease, order, worker] {
        let applied = mirror.apply(&a.market, &update(&mk.chain, &key));
        assert!(applied.relevant);
        assert!(applied.check.is_empty(), "{applied:?}");
    }
    assert_eq!(mirror.leases.len(), 1);
    let view = mirror.view(now);
    let w = view.workers.iter().find(|(k, _)| *k == worker).expect("w");
    assert_eq!(w.1.gpus_leased, 2, "counted once, not twice");

    // Closed on chain without the copy being told (as the buyer's exit closes a lease): the lease
    // itself is never reported; its order's and worker's new counts put it in doubt.
    orchestrator
        .end_lease(&mut mk.chain, &lease, None, CloseReason::Cancelled)
        .expect("close");
    let applied = mirror.apply(&a.market, &update(&mk.chain, &order));
    assert_eq!(applied.check, vec![lease.lease]);
    let applied = mirror.apply(&a.market, &update(&mk.chain, &worker));
    assert_eq!(applied.check, vec![lease.lease]);
    // An account of another market, or not the program's, changes nothing.
    let other = update(&mk.chain, &mk.buyer.pubkey());
    assert!(!mirror.apply(&a.market, &other).relevant);
    assert_eq!(
        mirror.leases.len(),
        1,
        "removed only once the lease is read again"
    );
    mirror.closed(&lease.lease);
    let view = mirror.view(now);
    let w = view.workers.iter().find(|(k, _)| *k == worker).expect("w");
    assert_eq!(w.1.gpus_leased, 0);
}
