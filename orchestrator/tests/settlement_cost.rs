//! What settlement costs in transaction fees per GPU-hour served, measured on the real runtime:
//! workers of 1, 4 (four 1-GPU leases) and 8 GPUs serve for two days with the market's
//! default parameters; every minute each worker's daemon extends its heartbeat chains; the
//! settlement policy decides who is due, and the orchestrator settles their worker receipts.
//! The fees are what the runtime took from the orchestrator's account. Each worker type runs
//! alone in its own market (no other receipt shares its transactions: the worst case), and the
//! old way (a receipt per lease every hour, the cadence the old default receipt age forced) runs
//! beside it for comparison.

use gpumesh_client::chain::{Chain, ChainExt};
use gpumesh_client::ix::{self, LeaseRef};
use gpumesh_client::program::instructions::{CreateOrderArgs, RegisterWorkerArgs};
use gpumesh_client::program::state::{
    HardwareClaim, Lease, MarketParams, Order, OrderMode, OrderRequirements, OrderTerms, Worker,
};
use gpumesh_client::{Keypair, Pubkey, Signer, receipt};
use gpumesh_orchestrator::actions::Orchestrator;
use gpumesh_orchestrator::settlement::{LeaseBacklog, Policy, due};
use gpumesh_protocol::LeaseService;
use gpumesh_svm::SvmChain;
use gpumesh_svm::fixtures::LocalMarket;

const PRICE: u64 = 10;
const STEP_S: i64 = 60;
const HOURS: i64 = 48;

struct Run {
    chain: SvmChain,
    m: LocalMarket,
    orch: Orchestrator,
    node: Keypair,
    worker: Pubkey,
    leases: Vec<(LeaseRef, LeaseService, u16)>,
}

/// A market with default parameters and one worker of `gpus` GPUs serving `leases` leases
/// (the GPUs split evenly), each funded for longer than the run.
fn run_with(gpus: u16, leases: u16) -> Run {
    let mut chain = SvmChain::new();
    let params = MarketParams::default();
    let m = LocalMarket::create(&mut chain, params, 6).expect("market");
    let orch = Orchestrator::new(m.addrs, m.orchestrator.insecure_clone());
    let owner = m.funded_user(&mut chain, 1_000_000).expect("owner");
    let node = Keypair::new();
    let a = m.addrs;
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
                            gpu_class: 9,
                            gpu_count: gpus,
                            vram_mib: 81_920,
                            bandwidth_gbps: 3_350,
                            region: 1,
                        },
                        price_per_gpu_second: PRICE,
                    },
                ),
                ix::stake(&a, &owner.pubkey(), &token, 1_000_000),
            ],
            &owner,
            &[],
        )
        .expect("worker");
    let worker = a.worker(&owner.pubkey());
    let per_lease = gpus / leases;
    let deposit = u64::from(per_lease) * PRICE * (HOURS as u64 + 2) * 3_600;
    let mut out = vec![];
    for id in 0..u64::from(leases) {
        let buyer = m.funded_user(&mut chain, deposit).expect("buyer");
        let buyer_token = m.token_account(&buyer.pubkey());
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
                                gpu_class: 9,
                                gpu_count: per_lease,
                                min_vram_mib: 40_000,
                                min_bandwidth_gbps: 1_000,
                                regions: 1 << 1,
                            },
                            max_price_per_gpu_second: PRICE,
                            duration: (HOURS as u64 + 2) * 3_600,
                            mode: OrderMode::Spot,
                            job_spec_hash: [0; 32],
                        },
                        deposit,
                    },
                )],
                &buyer,
                &[],
            )
            .expect("order");
        let order = a.order(&buyer.pubkey(), id);
        let (lease, _) = orch
            .assign(&mut chain, &order, &worker, per_lease)
            .expect("assign");
        let service = LeaseService::new(
            receipt::key(&gpumesh_client::program::ID),
            receipt::key(&lease.lease),
            lease.nonce,
        );
        out.push((lease, service, per_lease));
    }
    Run {
        chain,
        m,
        orch,
        node,
        worker,
        leases: out,
    }
}

struct Measured {
    lamports: u64,
    gpu_hours: f64,
    settlements: usize,
}

impl Measured {
    fn per_gpu_hour(&self) -> f64 {
        self.lamports as f64 / self.gpu_hours
    }
}

/// Serves for `HOURS`, settling as `policy` says (or, with `None`, a receipt per lease every
/// hour); returns the fees the orchestrator paid for settlements and the GPU-hours they paid
/// for. The seconds still unsettled at the end are not counted either way.
fn serve(mut r: Run, policy: Option<Policy>) -> Measured {
    let payer = r.m.orchestrator.pubkey();
    let before = r.chain.lamports(&payer).expect("lamports");
    let signing = receipt::signing_key(&r.node);
    let mut served = 0u64;
    let mut settlements = 0;
    for step in 1..=(HOURS * 3_600 / STEP_S) {
        r.chain.warp(STEP_S).expect("warp");
        served += STEP_S as u64;
        let now = r.chain.unix_time().expect("clock");
        for (_, service, _) in r.leases.iter_mut() {
            service
                .heartbeat(now as u64 * 1_000, served, b"telemetry")
                .expect("heartbeat");
        }
        match policy {
            Some(p) => {
                let backlog: Vec<LeaseBacklog> = r
                    .leases
                    .iter()
                    .map(|(l, _, gpus)| {
                        let lease: Lease = r.chain.fetch(&l.lease).expect("lease");
                        let order: Order = r.chain.fetch(&l.order).expect("order");
                        let spend = u64::from(*gpus) * PRICE;
                        LeaseBacklog {
                            gpus: *gpus,
                            unsettled_seconds: served - lease.seconds_settled,
                            since_settled_s: (now - lease.last_settle_ts) as u64,
                            order_runway_s: order.escrow_remaining.checked_div(spend),
                            ending: false,
                        }
                    })
                    .collect();
                if due(&p, &backlog).is_some() {
                    let entries: Vec<gpumesh_protocol::ReceiptEntry> = r
                        .leases
                        .iter()
                        .map(|(l, s, _)| gpumesh_protocol::ReceiptEntry {
                            lease: receipt::key(&l.lease),
                            lease_nonce: l.nonce,
                            served_seconds: s.served_seconds(),
                            chain_head: s.head(),
                        })
                        .collect();
                    let signed = gpumesh_protocol::SignedWorkerReceipt::sign(
                        &signing,
                        receipt::key(&gpumesh_client::program::ID),
                        receipt::key(&r.worker),
                        entries,
                    )
                    .expect("sign");
                    let refs: Vec<LeaseRef> = r.leases.iter().map(|(l, _, _)| *l).collect();
                    let outcomes = r
                        .orch
                        .settle_worker_receipts(&mut r.chain, &[(signed, refs)])
                        .expect("settle");
                    settlements += outcomes.len();
                }
            }
            None if step % (3_600 / STEP_S) == 0 => {
                let receipts: Vec<_> = r
                    .leases
                    .iter()
                    .map(|(l, s, _)| (*l, s.receipt(&signing)))
                    .collect();
                settlements += r
                    .orch
                    .settle(&mut r.chain, &receipts)
                    .expect("settle")
                    .len();
            }
            None => {}
        }
    }
    let w: Worker = r.chain.fetch(&r.worker).expect("worker");
    Measured {
        lamports: before - r.chain.lamports(&payer).expect("lamports"),
        gpu_hours: w.record.served_gpu_seconds as f64 / 3_600.0,
        settlements,
    }
}

#[test]
fn settlement_fees_stay_within_1000_lamports_per_gpu_hour_at_default_settings() {
    let policy = Policy::for_market(
        &MarketParams::default(),
        Policy::DEFAULT_LAMPORTS_PER_GPU_HOUR,
        600,
    );
    println!(
        "policy: {} lamports per settlement, due at {} GPU-seconds, at least every {} s; {} h in {} s steps",
        policy.cost_per_settlement(),
        policy.value_threshold_gpu_seconds(),
        policy.max_interval_s,
        HOURS,
        STEP_S
    );
    println!(
        "worker               | policy: lamports/GPU-h (settlements) | hourly receipts per lease | ratio"
    );
    for (name, gpus, leases) in [
        ("1 GPU, 1 lease", 1, 1),
        ("4 GPUs, 4 leases", 4, 4),
        ("8 GPUs, 1 lease", 8, 1),
    ] {
        let new = serve(run_with(gpus, leases), Some(policy));
        let old = serve(run_with(gpus, leases), None);
        println!(
            "{name:20} | {:8.0} ({:3}) | {:8.0} ({:3}) | {:.1}x",
            new.per_gpu_hour(),
            new.settlements,
            old.per_gpu_hour(),
            old.settlements,
            old.per_gpu_hour() / new.per_gpu_hour()
        );
        assert!(
            new.per_gpu_hour() <= 1_000.0,
            "{name}: {:.0} lamports per GPU-hour",
            new.per_gpu_hour()
        );
        assert!(new.gpu_hours >= f64::from(gpus) * (HOURS as f64 - 10.0));
        assert!(old.per_gpu_hour() > new.per_gpu_hour());
    }
}
