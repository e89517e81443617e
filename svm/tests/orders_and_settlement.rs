//! Orders, leases and receipt settlement through the real runtime: escrow in and out, assignment
//! checks, the Ed25519 receipt checks, and the settlement limits (wall time, duration, escrow,
//! replay), each refusal leaving every balance and account unchanged.

mod common;

use common::*;
use gpumesh_client::ix::{self, LeaseRef};
use gpumesh_client::program::errors::GpumeshError as E;
use gpumesh_client::program::instructions::*;
use gpumesh_client::program::receipt::ed25519::THIS_INSTRUCTION;
use gpumesh_client::program::state::*;
use gpumesh_client::receipt::ed25519_instruction;
use gpumesh_client::*;

const ACCOUNT_NOT_INITIALIZED: u32 = 3012;

#[test]
fn create_order_moves_the_deposit_into_escrow() {
    let mut fx = Fx::new();
    let buyer = fx.user(50_000);
    let args = fx.order_args(requirements(2), 20_000);
    let token = fx.m.token_account(&buyer.pubkey());
    fx.orders
        .push(fx.m.addrs.order(&buyer.pubkey(), args.order_id));
    let out = fx
        .send(
            &[ix::create_order(
                &fx.m.addrs,
                &buyer.pubkey(),
                &token,
                args.clone(),
            )],
            &buyer,
        )
        .unwrap();
    assert_eq!(fx.balance(&token), 30_000);
    assert_eq!(fx.balance(&fx.m.addrs.escrow_vault), 20_000);
    let order: Order = fx
        .chain
        .fetch(&fx.m.addrs.order(&buyer.pubkey(), args.order_id))
        .unwrap();
    assert_eq!(order.terms.requirements, requirements(2));
    assert_eq!(order.status, OrderStatus::Open);
    assert!(
        matches!(&out.events[..], [GpumeshEvent::OrderCreated(e)] if e.escrow_before == 0 && e.escrow_after == 20_000 && e.terms.job_spec_hash == [9; 32])
    );
}

#[test]
fn create_order_refuses_bad_requirements_and_underfunded_reservations() {
    let mut fx = Fx::new();
    let buyer = fx.user(1_000_000);
    let token = fx.m.token_account(&buyer.pubkey());
    let mut cases = vec![];
    let mut a = fx.order_args(requirements(0), 100);
    cases.push((a.clone(), E::InvalidOrder));
    a.terms.requirements = OrderRequirements {
        regions: 0,
        ..requirements(1)
    };
    cases.push((a.clone(), E::InvalidOrder));
    a.terms.requirements = requirements(1);
    a.terms.duration = 0;
    cases.push((a.clone(), E::InvalidOrder));
    a.terms.duration = 3_600;
    a.deposit = 0;
    cases.push((a.clone(), E::ZeroAmount));
    a.terms.max_price_per_gpu_second = 0;
    a.deposit = 10;
    cases.push((a.clone(), E::InvalidPrice));
    a.terms.max_price_per_gpu_second = 20;
    a.terms.mode = OrderMode::Reserved;
    a.deposit = 20 * 3_600 - 1;
    cases.push((a.clone(), E::ReservedUnderfunded));
    for (args, e) in cases {
        fx.refuses(
            &[ix::create_order(&fx.m.addrs, &buyer.pubkey(), &token, args)],
            &buyer,
            e,
        );
    }
    a.deposit = 20 * 3_600;
    fx.order_from(&buyer, a)
        .expect("a fully funded reservation is accepted");
}

#[test]
fn top_up_is_the_buyers_and_adds_to_escrow() {
    let mut fx = Fx::new();
    let (buyer, o) = fx.order(1, 1_000);
    let stranger = fx.user(5_000);
    let stranger_token = fx.m.token_account(&stranger.pubkey());
    fx.refuses(
        &[ix::top_up_order(
            &fx.m.addrs,
            &stranger.pubkey(),
            &stranger_token,
            &o.order,
            10,
        )],
        &stranger,
        E::NotBuyer,
    );
    let out = fx
        .send(
            &[ix::top_up_order(
                &fx.m.addrs,
                &buyer.pubkey(),
                &o.token,
                &o.order,
                500,
            )],
            &buyer,
        )
        .unwrap();
    assert!(
        matches!(&out.events[..], [GpumeshEvent::OrderToppedUp(e)] if e.escrow_before == 1_000 && e.escrow_after == 1_500)
    );
}

#[test]
fn assign_checks_every_requirement() {
    let mut fx = Fx::new();
    let (_, o) = fx.order(2, 100_000);
    let orch = fx.m.orchestrator.insecure_clone();
    let a = fx.m.addrs;
    let cases = [
        (
            HardwareClaim {
                gpu_class: 3,
                ..hardware()
            },
            PRICE,
            1_000,
            E::ClassMismatch,
        ),
        (
            HardwareClaim {
                vram_mib: 16_000,
                ..hardware()
            },
            PRICE,
            1_000,
            E::VramTooLow,
        ),
        (
            HardwareClaim {
                bandwidth_gbps: 500,
                ..hardware()
            },
            PRICE,
            1_000,
            E::BandwidthTooLow,
        ),
        (
            HardwareClaim {
                region: US,
                ..hardware()
            },
            PRICE,
            1_000,
            E::RegionNotAllowed,
        ),
        (hardware(), 21, 1_000, E::PriceAboveMax),
        (hardware(), PRICE, 999, E::StakeBelowMinimum),
    ];
    for (hw, price, stake, e) in cases {
        let w = fx.worker_with(hw, price, stake);
        fx.refuses(
            &[ix::assign(&a, &orch.pubkey(), &o.order, &w.worker, 1)],
            &orch,
            e,
        );
    }
    // Wrong signer.
    let w = fx.worker();
    let stranger = fx.user(0);
    let mut not_orch = ix::assign(&a, &stranger.pubkey(), &o.order, &w.worker, 1);
    not_orch.accounts[0].is_signer = true;
    fx.refuses(&[not_orch], &stranger, E::NotOrchestrator);
    // More GPUs than the worker has free.
    fx.refuses(
        &[ix::assign(&a, &orch.pubkey(), &o.order, &w.worker, 2)],
        &orch,
        E::NotEnoughFreeGpus,
    );
    // Stake scales with the GPUs under lease: a 2-GPU worker with the minimum for one may serve
    // one GPU, not two.
    let half_staked = fx.worker_with(
        HardwareClaim {
            gpu_count: 2,
            ..hardware()
        },
        PRICE,
        1_000,
    );
    fx.refuses(
        &[ix::assign(
            &a,
            &orch.pubkey(),
            &o.order,
            &half_staked.worker,
            2,
        )],
        &orch,
        E::StakeBelowMinimum,
    );
    fx.refuses(
        &[ix::assign(&a, &orch.pubkey(), &o.order, &w.worker, 0)],
        &orch,
        E::InvalidGpuCount,
    );

    fx.leases
        .push(gpumesh_client::pda::lease(&o.order, &w.worker).0);
    let out = fx
        .send(
            &[ix::assign(&a, &orch.pubkey(), &o.order, &w.worker, 1)],
            &orch,
        )
        .unwrap();
    assert!(
        matches!(&out.events[..], [GpumeshEvent::ReferencePriceUpdated(r), GpumeshEvent::LeaseAssigned(e)] if e.order_gpus_before == 0 && e.order_gpus_after == 1 && e.price_per_gpu_second == PRICE && r.reference_before == 0 && r.reference_after == PRICE)
    );
    let worker: Worker = fx.chain.fetch(&w.worker).unwrap();
    assert_eq!((worker.gpus_leased, worker.active_leases), (1, 1));

    // A worker with no free GPU cannot take a second order.
    let (_, o2) = fx.order(1, 100_000);
    fx.refuses(
        &[ix::assign(&a, &orch.pubkey(), &o2.order, &w.worker, 1)],
        &orch,
        E::NotEnoughFreeGpus,
    );

    // The second GPU fills the order; a third worker finds it full.
    let w2 = fx.worker();
    fx.assign(&o, &w2, 1).unwrap();
    let order: Order = fx.chain.fetch(&o.order).unwrap();
    assert_eq!(
        (order.gpus_assigned, order.status),
        (2, OrderStatus::Active)
    );
    let w3 = fx.worker();
    fx.refuses(
        &[ix::assign(&a, &orch.pubkey(), &o.order, &w3.worker, 1)],
        &orch,
        E::OrderFullyAssigned,
    );
}

#[test]
fn assign_refuses_a_worker_of_another_market() {
    let mut fx = Fx::new();
    let (_, o) = fx.order(1, 10_000);
    let other = gpumesh_svm::fixtures::LocalMarket::create(&mut fx.chain, params(), 6).unwrap();
    let owner = other.funded_user(&mut fx.chain, 5_000).unwrap();
    let node = Keypair::new();
    fx.chain
        .send(
            &[
                ix::register_worker(
                    &other.addrs,
                    &owner.pubkey(),
                    RegisterWorkerArgs {
                        node_key: node.pubkey(),
                        hardware: hardware(),
                        price_per_gpu_second: PRICE,
                    },
                ),
                ix::stake(
                    &other.addrs,
                    &owner.pubkey(),
                    &other.token_account(&owner.pubkey()),
                    2_000,
                ),
            ],
            &owner,
            &[],
        )
        .unwrap();
    let foreign = other.addrs.worker(&owner.pubkey());
    let orch = fx.m.orchestrator.insecure_clone();
    fx.refuses(
        &[ix::assign(
            &fx.m.addrs,
            &orch.pubkey(),
            &o.order,
            &foreign,
            1,
        )],
        &orch,
        E::WrongMarket,
    );
}

#[test]
fn settle_pays_seconds_times_price_with_the_fee_to_the_treasury() {
    let mut fx = Fx::new();
    let w = fx.worker();
    let (_, o) = fx.order(1, 100_000);
    let lease = fx.assign(&o, &w, 1).unwrap();
    fx.chain.warp(1_000).unwrap();
    let r = fx.receipt(&w, &lease, 400);
    let out = fx.settle(&[r]).unwrap();
    let cost = 400 * PRICE;
    let fee = cost * 250 / 10_000;
    let [GpumeshEvent::ReceiptSettled(e)] = &out.events[..] else {
        panic!("expected one ReceiptSettled, got {:?}", out.events)
    };
    assert_eq!((e.seconds_before, e.seconds_after), (0, 400));
    assert_eq!((e.amount, e.fee), (cost, fee));
    assert_eq!((e.escrow_before, e.escrow_after), (100_000, 100_000 - cost));
    assert_eq!((e.claimable_before, e.claimable_after), (0, cost - fee));
    assert_eq!(fx.balance(&fx.m.addrs.treasury_vault), fee);

    // A later receipt pays only the new seconds.
    let r = fx.receipt(&w, &lease, 1_000);
    let out = fx.settle(&[r]).unwrap();
    assert!(
        matches!(&out.events[..], [GpumeshEvent::ReceiptSettled(e)] if e.amount == 600 * PRICE && e.seconds_before == 400)
    );
    let l: Lease = fx.chain.fetch(&lease.lease).unwrap();
    assert_eq!((l.seconds_settled, l.amount_paid), (1_000, 1_000 * PRICE));
}

#[test]
fn settle_refuses_beyond_wall_time_duration_and_replays() {
    let mut fx = Fx::new();
    let w = fx.worker();
    let (_, o) = fx.order(1, 1_000_000);
    let lease = fx.assign(&o, &w, 1).unwrap();
    let orch = fx.m.orchestrator.insecure_clone();
    let a = fx.m.addrs;
    fx.chain.warp(100).unwrap();
    let early = fx.receipt(&w, &lease, 101);
    fx.refuses(
        &ix::settle(&a, &orch.pubkey(), &[early]),
        &orch,
        E::BeyondWallTime,
    );

    let r50 = fx.receipt(&w, &lease, 50);
    fx.settle(std::slice::from_ref(&r50)).unwrap();
    // The same receipt again, and an older one.
    fx.refuses(
        &ix::settle(&a, &orch.pubkey(), &[r50]),
        &orch,
        E::StaleReceipt,
    );
    let r40 = fx.receipt(&w, &lease, 40);
    fx.refuses(
        &ix::settle(&a, &orch.pubkey(), &[r40]),
        &orch,
        E::StaleReceipt,
    );

    // Past the order's duration (3,600 s) even when wall time allows it.
    fx.chain.warp(10_000).unwrap();
    let long = fx.receipt(&w, &lease, 3_601);
    fx.refuses(
        &ix::settle(&a, &orch.pubkey(), &[long]),
        &orch,
        E::BeyondDuration,
    );
    let full = fx.receipt(&w, &lease, 3_600);
    fx.settle(&[full]).unwrap();
}

#[test]
fn settle_never_pays_more_than_the_escrow() {
    let mut fx = Fx::new();
    let w = fx.worker();
    let (_, o) = fx.order(1, 1_234);
    let lease = fx.assign(&o, &w, 1).unwrap();
    fx.chain.warp(1_000).unwrap();
    let r = fx.receipt(&w, &lease, 1_000);
    let out = fx.settle(&[r]).unwrap();
    assert!(
        matches!(&out.events[..], [GpumeshEvent::ReceiptSettled(e)] if e.amount == 1_234 && e.escrow_after == 0)
    );
    let order: Order = fx.chain.fetch(&o.order).unwrap();
    assert_eq!((order.escrow_remaining, order.total_paid), (0, 1_234));
    // Nothing is left to pay; a newer receipt settles its seconds for nothing.
    fx.chain.warp(100).unwrap();
    let r = fx.receipt(&w, &lease, 1_100);
    let out = fx.settle(&[r]).unwrap();
    assert!(matches!(&out.events[..], [GpumeshEvent::ReceiptSettled(e)] if e.amount == 0));
    // And no new lease can start on an empty escrow.
    let w2 = fx.worker();
    let orch = fx.m.orchestrator.insecure_clone();
    let (_, o2) = fx.order(2, 10);
    let l2 = fx.assign(&o2, &w2, 1).unwrap();
    fx.chain.warp(10).unwrap();
    let r = fx.receipt(&w2, &l2, 10);
    fx.settle(&[r]).unwrap();
    let w3 = fx.worker();
    fx.refuses(
        &[ix::assign(
            &fx.m.addrs,
            &orch.pubkey(),
            &o2.order,
            &w3.worker,
            1,
        )],
        &orch,
        E::EscrowEmpty,
    );
}

#[test]
fn a_batch_settles_several_leases_of_one_order() {
    let mut fx = Fx::new();
    let w1 = fx.worker();
    let w2 = fx.worker();
    let (_, o) = fx.order(2, 100_000);
    let l1 = fx.assign(&o, &w1, 1).unwrap();
    let l2 = fx.assign(&o, &w2, 1).unwrap();
    fx.chain.warp(300).unwrap();
    let r1 = fx.receipt(&w1, &l1, 300);
    let r2 = fx.receipt(&w2, &l2, 200);
    let out = fx.settle(&[r1, r2]).unwrap();
    assert_eq!(out.events.len(), 2);
    let order: Order = fx.chain.fetch(&o.order).unwrap();
    assert_eq!(
        order.total_paid,
        500 * PRICE,
        "both receipts paid from the shared order"
    );
    assert_eq!(order.escrow_remaining, 100_000 - 500 * PRICE);
}

#[test]
fn settle_checks_the_ed25519_instruction() {
    let mut fx = Fx::new();
    let w = fx.worker();
    let (_, o) = fx.order(1, 100_000);
    let lease = fx.assign(&o, &w, 1).unwrap();
    let orch = fx.m.orchestrator.insecure_clone();
    let a = fx.m.addrs;
    fx.chain.warp(500).unwrap();
    let good = fx.receipt(&w, &lease, 100);

    // Signed by another key (a valid signature, but not the worker's node key).
    let impostor = Keypair::new();
    let forged = (
        lease,
        gpumesh_client::receipt::sign(&impostor, &lease.lease, lease.nonce, 100, [0; 32]),
    );
    fx.refuses(
        &ix::settle(&a, &orch.pubkey(), &[forged]),
        &orch,
        E::WrongReceiptSigner,
    );

    // No Ed25519 instruction at all.
    let [_, settle_only] = ix::settle(&a, &orch.pubkey(), std::slice::from_ref(&good));
    fx.refuses(
        std::slice::from_ref(&settle_only),
        &orch,
        E::MissingEd25519Instruction,
    );

    // A valid signature over a different receipt than the one settled.
    let other = fx.receipt(&w, &lease, 90);
    let [ed_other, _] = ix::settle(&a, &orch.pubkey(), &[other]);
    fx.refuses(
        &[ed_other, settle_only.clone()],
        &orch,
        E::ReceiptMessageMismatch,
    );

    // Offsets that point at another instruction's data (here instruction 0, itself: the
    // precompile accepts it, the program must not).
    let mut pointing = ed25519_instruction(std::slice::from_ref(&good.1));
    for field in [4usize, 8, 14] {
        pointing.data[field..field + 2].copy_from_slice(&0u16.to_le_bytes());
    }
    assert_ne!(
        u16::from_le_bytes([pointing.data[4], pointing.data[5]]),
        THIS_INSTRUCTION
    );
    fx.refuses(
        &[pointing, settle_only.clone()],
        &orch,
        E::MalformedEd25519Instruction,
    );

    // One signature for two receipts.
    let r2 = fx.receipt(&w, &lease, 120);
    let [_, settle_two] = ix::settle(&a, &orch.pubkey(), &[good.clone(), r2]);
    let ed_one = ed25519_instruction(std::slice::from_ref(&good.1));
    fx.refuses(&[ed_one, settle_two], &orch, E::Ed25519CountMismatch);

    // A tampered signature: the precompile itself fails the transaction.
    let mut bad = good.clone();
    bad.1.signature.0[0] ^= 1;
    let err = fx.refused_by_runtime(&ix::settle(&a, &orch.pubkey(), &[bad]), &orch);
    assert!(
        err.gpumesh_error().is_none(),
        "refused by the precompile: {err}"
    );

    // Accounts that do not match the receipt's lease.
    let (_, o2) = fx.order(1, 100_000);
    let mut wrong = good.clone();
    wrong.0 = LeaseRef {
        order: o2.order,
        ..lease
    };
    fx.refuses(
        &ix::settle(&a, &orch.pubkey(), &[wrong]),
        &orch,
        E::ReceiptAccountsMismatch,
    );

    // Someone other than the orchestrator.
    let stranger = fx.user(0);
    let mut by_stranger = ix::settle(&a, &stranger.pubkey(), std::slice::from_ref(&good));
    by_stranger[1].accounts[0].is_signer = true;
    fx.refuses(&by_stranger, &stranger, E::NotOrchestrator);

    fx.settle(&[good]).unwrap();
}

#[test]
fn close_lease_frees_the_worker_and_cancel_refunds_the_rest() {
    let mut fx = Fx::new();
    let w = fx.worker();
    let (buyer, o) = fx.order(1, 100_000);
    let lease = fx.assign(&o, &w, 1).unwrap();
    let orch = fx.m.orchestrator.insecure_clone();
    let a = fx.m.addrs;
    fx.refuses(
        &[ix::cancel_order(&a, &buyer.pubkey(), &o.token, &o.order)],
        &buyer,
        E::OrderHasActiveLeases,
    );
    fx.refuses(
        &[ix::close_lease(
            &a,
            &orch.pubkey(),
            &lease,
            CloseReason::Fraud,
        )],
        &orch,
        E::InvalidCloseReason,
    );
    fx.refuses(
        &[ix::close_lease(
            &a,
            &orch.pubkey(),
            &lease,
            CloseReason::WorkerOffline,
        )],
        &orch,
        E::MissingSlashAccounts,
    );
    let stranger = fx.user(0);
    let mut by_stranger = ix::close_lease(&a, &stranger.pubkey(), &lease, CloseReason::Completed);
    by_stranger.accounts[0].is_signer = true;
    fx.refuses(&[by_stranger], &stranger, E::NotOrchestrator);

    fx.chain.warp(120).unwrap();
    let r = fx.receipt(&w, &lease, 120);
    // Final settlement and close in one transaction.
    let mut ixs = ix::settle(&a, &orch.pubkey(), &[r]).to_vec();
    ixs.push(ix::close_lease(
        &a,
        &orch.pubkey(),
        &lease,
        CloseReason::Cancelled,
    ));
    let out = fx.send_orch(&ixs).unwrap();
    assert!(
        matches!(&out.events[..], [GpumeshEvent::ReceiptSettled(_), GpumeshEvent::LeaseClosed(e)] if e.seconds_settled == 120 && e.amount_paid == 120 * PRICE)
    );
    assert!(fx.chain.account(&lease.lease).unwrap().is_none());
    let worker: Worker = fx.chain.fetch(&w.worker).unwrap();
    assert_eq!((worker.gpus_leased, worker.active_leases), (0, 0));

    // Closing twice, and settling a closed lease, are refused.
    fx.refuses_code(
        &[ix::close_lease(
            &a,
            &orch.pubkey(),
            &lease,
            CloseReason::Completed,
        )],
        &orch,
        ACCOUNT_NOT_INITIALIZED,
    );
    fx.chain.warp(10).unwrap();
    let late = fx.receipt(&w, &lease, 125);
    let before = fx.snapshot();
    assert!(
        fx.chain
            .send(&ix::settle(&a, &orch.pubkey(), &[late]), &orch, &[])
            .is_err()
    );
    assert_eq!(before, fx.snapshot());

    // Cancel: the unspent escrow goes back, the order account closes.
    let mut not_buyer = ix::cancel_order(&a, &stranger.pubkey(), &o.token, &o.order);
    not_buyer.accounts[1].pubkey = o.buyer;
    fx.refuses(&[not_buyer], &stranger, E::NotBuyer);
    let before = fx.balance(&o.token);
    let out = fx
        .send(
            &[ix::cancel_order(&a, &buyer.pubkey(), &o.token, &o.order)],
            &buyer,
        )
        .unwrap();
    let refund = 100_000 - 120 * PRICE;
    assert_eq!(fx.balance(&o.token), before + refund);
    let [GpumeshEvent::OrderClosed(e)] = &out.events[..] else {
        panic!("{:?}", out.events)
    };
    assert_eq!(
        (
            e.completed,
            e.escrow_before,
            e.refund,
            e.escrow_after,
            e.total_paid
        ),
        (false, refund, refund, 0, 120 * PRICE)
    );
    assert!(fx.chain.account(&o.order).unwrap().is_none());
    fx.refuses_code(
        &[ix::cancel_order(&a, &buyer.pubkey(), &o.token, &o.order)],
        &buyer,
        ACCOUNT_NOT_INITIALIZED,
    );
}

#[test]
fn complete_order_needs_service_and_the_buyer_or_orchestrator() {
    let mut fx = Fx::new();
    let w = fx.worker();
    let (buyer, o) = fx.order(1, 50_000);
    let orch = fx.m.orchestrator.insecure_clone();
    let a = fx.m.addrs;
    fx.refuses(
        &[ix::complete_order(
            &a,
            &orch.pubkey(),
            &o.buyer,
            &o.token,
            &o.order,
            [0; 32],
        )],
        &orch,
        E::NothingServed,
    );
    let lease = fx.assign(&o, &w, 1).unwrap();
    fx.chain.warp(60).unwrap();
    let r = fx.receipt(&w, &lease, 60);
    fx.settle(&[r]).unwrap();
    fx.send_orch(&[ix::close_lease(
        &a,
        &orch.pubkey(),
        &lease,
        CloseReason::Completed,
    )])
    .unwrap();
    let stranger = fx.user(0);
    fx.refuses(
        &[ix::complete_order(
            &a,
            &stranger.pubkey(),
            &o.buyer,
            &o.token,
            &o.order,
            [0; 32],
        )],
        &stranger,
        E::NotBuyer,
    );
    let before = fx.balance(&o.token);
    let out = fx
        .send_orch(&[ix::complete_order(
            &a,
            &orch.pubkey(),
            &o.buyer,
            &o.token,
            &o.order,
            [7; 32],
        )])
        .unwrap();
    assert!(
        matches!(&out.events[..], [GpumeshEvent::OrderClosed(e)] if e.completed && e.result_hash == [7; 32])
    );
    assert_eq!(fx.balance(&o.token), before + 50_000 - 60 * PRICE);
    let _ = buyer;
}
