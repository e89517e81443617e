//! The market's economics through the real runtime: the minimum hardware a worker may offer, the
//! share of every protocol fee that is burned, and spot leases preempted by reserved orders with
//! notice and paid for the seconds they served. Conservation (with the burn taken out of the
//! mint's supply) is checked after every step by the fixture.

mod common;

use common::*;
use gpumesh_client::ix;
use gpumesh_client::program::errors::GpumeshError as E;
use gpumesh_client::program::instructions::{RegisterWorkerArgs, UpdateWorkerArgs};
use gpumesh_client::program::state::*;
use gpumesh_client::*;
use gpumesh_orchestrator::actions::ActionError;

#[test]
fn a_machine_below_the_market_minimum_cannot_be_offered() {
    let mut fx = Fx::new();
    let a = fx.m.addrs;
    let owner = fx.user(0);
    let register = |hardware| {
        ix::register_worker(
            &a,
            &owner.pubkey(),
            RegisterWorkerArgs {
                node_key: Keypair::new().pubkey(),
                hardware,
                price_per_gpu_second: PRICE,
            },
        )
    };
    // The seed's floor: 8 GB of VRAM (7,629 MiB) and 144 GB/s.
    let p = fx.market().params;
    assert_eq!(
        (p.min_worker_vram_mib, p.min_worker_bandwidth_gbps),
        (7_629, 144)
    );
    for hw in [
        HardwareClaim {
            vram_mib: 100,
            ..hardware()
        },
        HardwareClaim {
            bandwidth_gbps: 1,
            ..hardware()
        },
    ] {
        fx.refuses(&[register(hw)], &owner, E::HardwareBelowMarketMinimum);
    }
    fx.send(
        &[register(HardwareClaim {
            vram_mib: 7_629,
            bandwidth_gbps: 144,
            ..hardware()
        })],
        &owner,
    )
    .expect("exactly at the floor");
    fx.workers.push(a.worker(&owner.pubkey()));
    // Updating to less than the floor is refused too.
    fx.refuses(
        &[ix::update_worker(
            &a,
            &owner.pubkey(),
            UpdateWorkerArgs {
                hardware: Some(HardwareClaim {
                    vram_mib: 4_096,
                    ..hardware()
                }),
                ..Default::default()
            },
        )],
        &owner,
        E::HardwareBelowMarketMinimum,
    );
}

#[test]
fn a_share_of_every_fee_is_burned_out_of_the_supply() {
    let mut fx = Fx::with_params(MarketParams {
        fee_burn_bps: 2_000,
        ..params()
    });
    let a = fx.m.addrs;
    let w = fx.worker();
    let (_, o) = fx.order(1, 100_000);
    let lease = fx.assign(&o, &w, 1).unwrap();
    let supply = |fx: &Fx| {
        fx.chain
            .fetch::<anchor_spl::token::Mint>(&a.mint)
            .unwrap()
            .supply
    };
    let before = supply(&fx);
    fx.chain.warp(1_000).unwrap();
    let r = fx.receipt(&w, &lease, 1_000);
    let out = fx.settle(&[r]).unwrap();
    // 1,000 s × 10 = 10,000 paid; 2.5% fee = 250; 20% of it burned = 50; 200 to the treasury.
    let settled = out
        .events
        .iter()
        .find_map(|e| match e {
            GpumeshEvent::ReceiptSettled(s) => Some(s.clone()),
            _ => None,
        })
        .expect("settled");
    assert_eq!(
        (settled.amount, settled.fee, settled.burned),
        (10_000, 250, 50)
    );
    assert!(out.events.iter().any(|e| matches!(
        e,
        GpumeshEvent::FeesBurned(b) if b.amount == 50 && b.total_burned_before == 0 && b.total_burned_after == 50
    )));
    assert_eq!(supply(&fx), before - 50, "burned out of the mint's supply");
    assert_eq!(fx.balance(&a.treasury_vault), 200);
    let m = fx.market();
    assert_eq!((m.total_burned, m.treasury_balance), (50, 200));
    // Small receipts burn their share too (cumulative, like the fee).
    for s in 1..=9 {
        fx.chain.warp(10).unwrap();
        let r = fx.receipt(&w, &lease, 1_000 + 10 * s);
        fx.settle(&[r]).unwrap();
    }
    let l: Lease = fx.chain.fetch(&lease.lease).unwrap();
    assert_eq!(l.fee_paid, (10_900 * 250) / 10_000);
    assert_eq!(l.fee_burned, l.fee_paid * 2_000 / 10_000);
    assert_eq!(supply(&fx), before - l.fee_burned);
}

#[test]
fn a_reserved_order_preempts_a_spot_lease_after_notice_and_it_is_paid_for_what_it_served() {
    let mut fx = Fx::with_params(MarketParams {
        preemption_notice: 60,
        ..params()
    });
    let a = fx.m.addrs;
    let orch = fx.m.orchestrator.insecure_clone();
    let w = fx.worker_with(
        HardwareClaim {
            gpu_count: 2,
            ..hardware()
        },
        PRICE,
        2_000,
    );
    let (_, spot) = fx.order(2, 100_000);
    let lease = fx.assign(&spot, &w, 2).unwrap();
    let buyer = fx.user(1_000_000);
    let mut args = fx.order_args(requirements(2), 20 * 2 * 600);
    args.terms.mode = OrderMode::Reserved;
    args.terms.duration = 600;
    let reserved = fx.order_from(&buyer, args).unwrap();
    assert!(matches!(
        fx.assign(&reserved, &w, 2),
        Err(ActionError::Refused(E::NotEnoughFreeGpus))
    ));

    // Refusals first: not for a spot order, not by a stranger, not of a reserved lease.
    let (_, other_spot) = fx.order(1, 10_000);
    fx.refuses(
        &[ix::preempt_lease(
            &a,
            &orch.pubkey(),
            &lease,
            &other_spot.order,
        )],
        &orch,
        E::NotReservedOrder,
    );
    let stranger = fx.user(0);
    let mut by_stranger = ix::preempt_lease(&a, &stranger.pubkey(), &lease, &reserved.order);
    by_stranger.accounts[0].is_signer = true;
    fx.refuses(&[by_stranger], &stranger, E::NotOrchestrator);
    // A reserved order the freed GPUs could not serve (another class) is no reason.
    let mut other_class = fx.order_args(
        OrderRequirements {
            gpu_class: 3,
            ..requirements(1)
        },
        20 * 600,
    );
    other_class.terms.mode = OrderMode::Reserved;
    other_class.terms.duration = 600;
    let elsewhere = fx.order_from(&buyer, other_class).unwrap();
    fx.refuses(
        &[ix::preempt_lease(
            &a,
            &orch.pubkey(),
            &lease,
            &elsewhere.order,
        )],
        &orch,
        E::ClassMismatch,
    );

    fx.chain.warp(100).unwrap();
    let stake_before = fx.worker_state(&w).stake;
    let out = fx
        .orchestrator
        .preempt(&mut fx.chain, &lease, &reserved.order)
        .unwrap();
    let now = fx.chain.unix_time().unwrap();
    assert!(matches!(
        &out.events[..],
        [GpumeshEvent::LeasePreempted(p)] if p.preempt_at == now + 60 && p.reserved_order == reserved.order
    ));
    fx.refuses(
        &[ix::preempt_lease(
            &a,
            &orch.pubkey(),
            &lease,
            &reserved.order,
        )],
        &orch,
        E::AlreadyPreempted,
    );
    // The notice runs: the lease cannot be closed as preempted yet, and it keeps being paid.
    fx.refuses(
        &[ix::close_lease(
            &a,
            &orch.pubkey(),
            &lease,
            CloseReason::Preempted,
        )],
        &orch,
        E::PreemptionNoticeRunning,
    );
    fx.chain.warp(90).unwrap();
    // Served 190 s by now, but the notice ended at 160 s: that is what it is paid for.
    let greedy = fx.receipt(&w, &lease, 190);
    fx.refuses(
        &ix::settle(&a, &orch.pubkey(), &[greedy]),
        &orch,
        E::BeyondPreemption,
    );
    let last = fx.receipt(&w, &lease, 160);
    fx.orchestrator
        .end_lease(&mut fx.chain, &lease, Some(last.1), CloseReason::Preempted)
        .unwrap();
    fx.check_invariants();
    let order: Order = fx.chain.fetch(&spot.order).unwrap();
    assert_eq!(order.total_paid, 160 * 2 * PRICE);
    assert_eq!(
        order.status,
        OrderStatus::Open,
        "the spot order waits for GPUs again"
    );
    let state = fx.worker_state(&w);
    assert_eq!(state.stake, stake_before, "no slash");
    assert_eq!((state.record.failures, state.gpus_leased), (0, 0));
    // The reserved order takes the GPUs.
    fx.assign(&reserved, &w, 2).unwrap();
    // A reserved lease is never preempted.
    let reserved_lease = fx.lease_ref(&gpumesh_client::pda::lease(&reserved.order, &w.worker).0);
    let mut again = fx.order_args(requirements(2), 20 * 2 * 600);
    again.terms.mode = OrderMode::Reserved;
    again.terms.duration = 600;
    let another = fx.order_from(&buyer, again).unwrap();
    fx.refuses(
        &[ix::preempt_lease(
            &a,
            &orch.pubkey(),
            &reserved_lease,
            &another.order,
        )],
        &orch,
        E::NotSpotLease,
    );
}
