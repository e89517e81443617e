//! The scheduler and the program describe the same lease model: every assignment a matching round
//! proposes (several orders sharing a multi-GPU worker included) is accepted by the real program
//! running in process, and the chain's GPU counts end up where the scheduler's are.

use gpumesh_client::chain::{Chain, ChainExt};
use gpumesh_client::ix;
use gpumesh_client::program::instructions::{CreateOrderArgs, RegisterWorkerArgs};
use gpumesh_client::program::state::{
    HardwareClaim, MarketParams, OrderMode as ChainMode, OrderRequirements, OrderTerms, Worker,
};
use gpumesh_client::{Keypair, Signer};
use gpumesh_orchestrator::actions::Orchestrator;
use gpumesh_orchestrator::scheduler::{
    GpuClass, Order, OrderId, OrderMode, Region, RegionSet, Scheduler, SchedulerConfig, WorkerId,
    WorkerSpec, WorkerStatus,
};
use gpumesh_svm::SvmChain;
use gpumesh_svm::fixtures::LocalMarket;

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

#[test]
fn every_assignment_of_a_round_is_accepted_by_the_program() {
    let mut chain = SvmChain::new();
    let params = MarketParams {
        min_stake_per_gpu: MIN_STAKE,
        ..MarketParams::default()
    };
    let m = LocalMarket::create(&mut chain, params, 6).expect("market");
    let a = m.addrs;
    let orchestrator = Orchestrator::new(a, m.orchestrator.insecure_clone());
    let mut s = Scheduler::new(SchedulerConfig::default()).expect("config");
    let mut rng = Lcg(7);

    let mut workers = vec![];
    for id in 0..12u32 {
        let gpus = [1u16, 2, 4, 8][rng.next(4) as usize];
        let region = REGIONS[rng.next(2) as usize];
        let price = 5 + rng.next(10);
        let stake = MIN_STAKE * gpus as u64;
        let owner = m.funded_user(&mut chain, stake).expect("owner");
        let node = Keypair::new();
        let token = m.token_account(&owner.pubkey());
        chain
            .send(
                &[
                    ix::register_worker(
                        &a,
                        &owner.pubkey(),
                        RegisterWorkerArgs {
                            node_key: node.pubkey(),
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
        workers.push(a.worker(&owner.pubkey()));
        s.add_worker(WorkerSpec {
            id: WorkerId(id),
            class: GpuClass::new(CLASS).expect("class"),
            gpus,
            vram_mib: 81_920,
            bandwidth_gbps: 3_350,
            region: Region::new(region).expect("region"),
            price,
            reliability_bp: 5_000,
            latency_us: 10_000,
            status: WorkerStatus::Idle,
        })
        .expect("scheduler worker");
    }

    let buyer = m.funded_user(&mut chain, 100_000_000).expect("buyer");
    let buyer_token = m.token_account(&buyer.pubkey());
    let mut orders = vec![];
    for id in 1..=24u64 {
        let gpus = 1 + rng.next(4) as u16;
        let allowed: Vec<u8> = match rng.next(3) {
            0 => vec![REGIONS[0]],
            1 => vec![REGIONS[1]],
            _ => REGIONS.to_vec(),
        };
        let max_price = 8 + rng.next(10);
        chain
            .send(
                &[ix::create_order(
                    &a,
                    &buyer.pubkey(),
                    &buyer_token,
                    CreateOrderArgs {
                        order_id: id,
                        terms: OrderTerms {
                            requirements: OrderRequirements {
                                gpu_class: CLASS,
                                gpu_count: gpus,
                                min_vram_mib: 40_000,
                                min_bandwidth_gbps: 1_000,
                                regions: allowed.iter().fold(0, |set, r| set | 1 << r),
                            },
                            max_price_per_gpu_second: max_price,
                            duration: 3_600,
                            mode: ChainMode::Spot,
                            job_spec_hash: [0; 32],
                        },
                        deposit: 1_000_000,
                    },
                )],
                &buyer,
                &[],
            )
            .expect("create order");
        orders.push(a.order(&buyer.pubkey(), id));
        let regions: Vec<Region> = allowed
            .iter()
            .map(|r| Region::new(*r).expect("region"))
            .collect();
        s.submit_order(Order {
            id: OrderId(id),
            class: GpuClass::new(CLASS).expect("class"),
            gpus: gpus as u32,
            min_vram_mib: 40_000,
            min_bandwidth_gbps: 1_000,
            regions: RegionSet::of(&regions),
            max_price,
            mode: OrderMode::Spot,
            arrived_at: 0,
        })
        .expect("scheduler order");
    }

    let round = s.match_round(0);
    let mut assignments = 0;
    for p in &round.placements {
        let order = orders[(p.order.0 - 1) as usize];
        for asg in &p.assignments {
            let worker = workers[asg.worker.0 as usize];
            orchestrator
                .assign(&mut chain, &order, &worker, asg.gpus)
                .unwrap_or_else(|e| panic!("refused {asg:?} for {:?}: {e}", p.order));
            assignments += 1;
        }
    }
    let mut shared = 0;
    for (id, key) in workers.iter().enumerate() {
        let on_chain: Worker = chain.fetch(key).expect("worker");
        let tracked = s.worker(WorkerId(id as u32)).expect("tracked");
        assert_eq!(
            on_chain.free_gpus(),
            tracked.gpus_free,
            "worker {id}: free GPUs on chain and in the scheduler"
        );
        assert_eq!(on_chain.active_leases as usize, tracked.leases.len());
        if on_chain.active_leases > 1 {
            shared += 1;
        }
    }
    println!(
        "{} orders placed with {assignments} assignments, all accepted; {shared} workers serve several orders",
        round.placements.len()
    );
    assert!(
        assignments > 10,
        "the round placed too little to mean anything"
    );
    assert!(
        shared > 0,
        "no worker serves several orders: the test lost its point"
    );
}
