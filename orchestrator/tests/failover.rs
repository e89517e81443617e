//! Failover as one move on the in-process chain: a down worker's final receipt settles, its
//! lease closes as offline with the slash paid to the buyer, and a spare takes the GPUs, all in
//! one transaction that fits a packet; what the program would refuse is not sent; and the
//! followed view frees the lease's GPUs before the chain says so.

use gpumesh_client::chain::{Chain, ChainExt};
use gpumesh_client::ix::{self, LeaseRef, PACKET_DATA_SIZE};
use gpumesh_client::program::errors::GpumeshError;
use gpumesh_client::program::instructions::{CreateOrderArgs, RegisterWorkerArgs};
use gpumesh_client::program::state::{
    HardwareClaim, Lease, Market, MarketParams, Order, OrderMode, OrderRequirements, OrderTerms,
    Worker,
};
use gpumesh_client::{Keypair, Pubkey, Signer, receipt, token};
use gpumesh_orchestrator::actions::{ActionError, Orchestrator, Spare};
use gpumesh_orchestrator::sync::MarketView;
use gpumesh_protocol::LeaseService;
use gpumesh_svm::SvmChain;
use gpumesh_svm::fixtures::LocalMarket;

const CLASS: u8 = 9;
const REGION: u8 = 5;
const PRICE: u64 = 1_000;

struct Fixture {
    chain: SvmChain,
    m: LocalMarket,
    buyer: Keypair,
    orchestrator: Orchestrator,
}

impl Fixture {
    fn new() -> Self {
        let mut chain = SvmChain::new();
        let m = LocalMarket::create(
            &mut chain,
            MarketParams {
                protocol_fee_bps: 250,
                min_stake_per_gpu: 100,
                fee_burn_bps: 0,
                ..MarketParams::default()
            },
            6,
        )
        .expect("market");
        let buyer = m.funded_user(&mut chain, 100_000_000).expect("buyer");
        let orchestrator = Orchestrator::new(m.addrs, m.orchestrator.insecure_clone());
        Self {
            chain,
            m,
            buyer,
            orchestrator,
        }
    }

    /// A staked worker with `gpus` GPUs at `price`, and its node key.
    fn worker(&mut self, gpus: u16, price: u64) -> (Pubkey, Keypair) {
        let owner = self.m.funded_user(&mut self.chain, 10_000).expect("owner");
        let node = Keypair::new();
        let a = self.m.addrs;
        let token = self.m.token_account(&owner.pubkey());
        self.chain
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
                                region: REGION,
                            },
                            price_per_gpu_second: price,
                        },
                    ),
                    ix::stake(&a, &owner.pubkey(), &token, 1_000),
                ],
                &owner,
                &[],
            )
            .expect("register and stake");
        (a.worker(&owner.pubkey()), node)
    }

    fn order(&mut self, id: u64, gpus: u16, deposit: u64) -> Pubkey {
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
                                regions: 1 << REGION,
                            },
                            max_price_per_gpu_second: 10 * PRICE,
                            duration: 3_600,
                            mode: OrderMode::Spot,
                            job_spec_hash: [0; 32],
                        },
                        deposit,
                    },
                )],
                &self.buyer,
                &[],
            )
            .expect("create order");
        a.order(&self.buyer.pubkey(), id)
    }

    fn buyer_tokens(&self) -> u64 {
        self.chain
            .token_balance(&token::ata(&self.buyer.pubkey(), &self.m.addrs.mint))
            .expect("balance")
    }

    /// `seconds` of service on `lease` by `node`: the heartbeats and the receipt it signs.
    fn serve(
        &mut self,
        lease: &LeaseRef,
        node: &Keypair,
        seconds: u64,
    ) -> gpumesh_client::SignedReceipt {
        self.chain.warp(seconds as i64).expect("warp");
        let mut service = LeaseService::new(
            receipt::key(&gpumesh_client::program::ID),
            receipt::key(&lease.lease),
            lease.nonce,
        );
        for s in 1..=seconds {
            service.heartbeat(s * 1_000, s, b"{}").expect("heartbeat");
        }
        service.receipt(&receipt::signing_key(node))
    }
}

#[test]
fn one_transaction_settles_the_last_receipt_pays_the_buyer_the_slash_and_leases_the_spare() {
    let mut f = Fixture::new();
    let (down, down_node) = f.worker(1, PRICE);
    let (spare, _) = f.worker(1, 2 * PRICE);
    let order = f.order(1, 1, 5_000_000);
    let (lease, _) = f
        .orchestrator
        .assign(&mut f.chain, &order, &down, 1)
        .expect("assign");
    let last = f.serve(&lease, &down_node, 7);

    // The whole move fits one packet: receipt, close and assignment.
    let buyer_token = token::ata(&f.buyer.pubkey(), &f.m.addrs.mint);
    let me = f.orchestrator.pubkey();
    let mut ixs = ix::settle(&f.m.addrs, &me, &[(lease, last.clone())]).to_vec();
    ixs.push(ix::close_lease_offline(
        &f.m.addrs,
        &me,
        &lease,
        &buyer_token,
    ));
    ixs.push(ix::assign(&f.m.addrs, &me, &order, &spare, 1));
    let size = ix::transaction_size(&ixs, &me, 1);
    println!("failover transaction: {size} of {PACKET_DATA_SIZE} bytes");
    assert!(size <= PACKET_DATA_SIZE, "{size} bytes");

    let stake_before = f.chain.fetch::<Worker>(&down).unwrap().stake;
    let buyer_before = f.buyer_tokens();
    let done = f
        .orchestrator
        .fail_over(
            &mut f.chain,
            &lease,
            Some(last),
            &[Spare {
                worker: spare,
                gpus: 1,
            }],
        )
        .expect("fail over");
    assert_eq!(
        done.settled_in.as_deref(),
        Some(done.outcome.signature.as_str()),
        "the receipt settled in the closing transaction"
    );
    assert!(done.left_out.is_empty());
    assert_eq!(done.leases.len(), 1);
    let new = done.leases[0];
    assert_eq!((new.order, new.worker), (order, spare));

    // The dead worker: paid its 7 s, slashed, a failure on its record, its GPU free.
    let w: Worker = f.chain.fetch(&down).unwrap();
    assert_eq!(w.record.served_gpu_seconds, 7);
    assert_eq!(w.record.failures, 1);
    assert_eq!((w.gpus_leased, w.active_leases), (0, 0));
    assert!(w.stake < stake_before);
    // The buyer: the slash (less the treasury's share) in its wallet.
    let market: Market = f.chain.fetch(&f.m.addrs.market).unwrap();
    let slash = stake_before - w.stake;
    let to_treasury = slash * u64::from(market.params.slash_treasury_share_bps) / 10_000;
    assert_eq!(f.buyer_tokens(), buyer_before + slash - to_treasury);
    // The spare: the order's GPU, under a lease whose nonce the transaction's event gave.
    assert!(f.chain.fetch_opt::<Lease>(&lease.lease).unwrap().is_none());
    let l: Lease = f.chain.fetch(&new.lease).unwrap();
    assert_eq!((l.worker, l.nonce, l.gpus), (spare, new.nonce, 1));
    let o: Order = f.chain.fetch(&order).unwrap();
    assert_eq!((o.gpus_assigned, o.active_leases), (1, 1));
    assert_eq!(o.total_paid, 7 * PRICE);
}

#[test]
fn a_spare_the_program_would_refuse_is_not_sent_and_the_lease_stays() {
    let mut f = Fixture::new();
    let (down, _) = f.worker(1, PRICE);
    let (pricey, _) = f.worker(1, 20 * PRICE);
    let order = f.order(1, 1, 5_000_000);
    let (lease, _) = f
        .orchestrator
        .assign(&mut f.chain, &order, &down, 1)
        .expect("assign");
    let err = f
        .orchestrator
        .fail_over(
            &mut f.chain,
            &lease,
            None,
            &[Spare {
                worker: pricey,
                gpus: 1,
            }],
        )
        .expect_err("above the order's price");
    assert!(
        matches!(err, ActionError::Refused(GpumeshError::PriceAboveMax)),
        "{err}"
    );
    assert!(f.chain.fetch_opt::<Lease>(&lease.lease).unwrap().is_some());
    // Without a spare it closes alone: the order is open again.
    let done = f
        .orchestrator
        .fail_over(&mut f.chain, &lease, None, &[])
        .expect("close");
    assert!(done.leases.is_empty() && done.settled_in.is_none());
    let o: Order = f.chain.fetch(&order).unwrap();
    assert_eq!((o.gpus_assigned, o.active_leases), (0, 0));
}

#[test]
fn a_released_lease_frees_its_gpus_in_the_view_and_the_pair_can_lease_again() {
    let mut f = Fixture::new();
    let (worker, _) = f.worker(2, PRICE);
    let order = f.order(1, 2, 5_000_000);
    f.orchestrator
        .assign(&mut f.chain, &order, &worker, 2)
        .expect("assign");
    let mut view = MarketView::load(&f.chain, &f.m.addrs.market).expect("view");
    let oi = view.order_index(&order).unwrap();
    assert!(view.order(oi).is_none(), "served in full");
    assert_eq!(view.workers_of(&order), vec![worker]);
    view.assume_released(&order, &worker, 2);
    assert_eq!(view.order(oi).map(|o| o.gpus), Some(2));
    assert!(view.workers_of(&order).is_empty());
    let (_, w) = view.workers.iter().find(|(k, _)| *k == worker).unwrap();
    assert_eq!(w.gpus_leased, 0);
    // Released twice counts once.
    view.assume_released(&order, &worker, 2);
    let o = &view.orders[oi].1;
    assert_eq!((o.gpus_assigned, o.active_leases), (0, 0));
    // And assumed assigned again, it is full again.
    view.assume_assigned(&order, &worker, 2);
    assert!(view.order(oi).is_none());
}
