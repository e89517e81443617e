//! GPU-granular leases through the real program: a worker with N GPUs serves several leases at
//! once, up to N GPUs in all; the stake behind its leases scales with their GPUs; a slash for one
//! lease takes the share of stake that lease's GPUs stand for and pays that lease's buyer; ending
//! a lease frees its GPUs. Conservation and the per-worker and per-order lease counts are checked
//! after every step by the fixture.

mod common;

use common::*;
use gpumesh_client::ix::{self, LeaseRef};
use gpumesh_client::program::errors::GpumeshError as E;
use gpumesh_client::program::state::*;
use gpumesh_client::*;

fn gpus(n: u16) -> HardwareClaim {
    HardwareClaim {
        gpu_count: n,
        ..hardware()
    }
}

fn slashed(out: &Outcome) -> gpumesh_client::program::events::WorkerSlashed {
    out.events
        .iter()
        .find_map(|e| match e {
            GpumeshEvent::WorkerSlashed(s) => Some(s.clone()),
            _ => None,
        })
        .expect("WorkerSlashed")
}

#[test]
fn an_eight_gpu_worker_serves_four_two_gpu_orders_at_once() {
    let mut fx = Fx::new();
    let a = fx.m.addrs;
    let orch = fx.m.orchestrator.insecure_clone();
    let w = fx.worker_with(gpus(8), PRICE, 8_000);
    let mut leases = vec![];
    let mut orders = vec![];
    for _ in 0..4 {
        let (_, o) = fx.order(2, 100_000);
        let lease = fx.assign(&o, &w, 2).unwrap();
        leases.push(lease);
        orders.push(o);
    }
    let state = fx.worker_state(&w);
    assert_eq!((state.gpus_leased, state.active_leases), (8, 4));
    assert_eq!(fx.market().leased_gpus, 8);
    let nonces: Vec<u64> = leases.iter().map(|l| l.nonce).collect();
    assert_eq!(nonces, vec![0, 1, 2, 3], "each lease is its own instance");

    // A fifth order finds no free GPU on it.
    let (_, fifth) = fx.order(1, 100_000);
    fx.refuses(
        &[ix::assign(&a, &orch.pubkey(), &fifth.order, &w.worker, 1)],
        &orch,
        E::NotEnoughFreeGpus,
    );

    // One batch settles all four leases of the one worker, each from its own order.
    fx.chain.warp(100).unwrap();
    let receipts: Vec<_> = leases
        .iter()
        .enumerate()
        .map(|(i, l)| fx.receipt(&w, l, 100 - 10 * i as u64))
        .collect();
    let out = fx.settle(&receipts).unwrap();
    assert_eq!(out.events.len(), 4);
    let served: u64 = (0..4).map(|i| 2 * (100 - 10 * i)).sum();
    assert_eq!(fx.worker_state(&w).record.served_gpu_seconds, served);
    for (i, o) in orders.iter().enumerate() {
        let order: Order = fx.chain.fetch(&o.order).unwrap();
        assert_eq!(order.total_paid, 2 * (100 - 10 * i as u64) * PRICE);
    }

    // Ending one lease frees its two GPUs, and the fifth order fits.
    let out = fx
        .send_orch(&[ix::close_lease(
            &a,
            &orch.pubkey(),
            &leases[1],
            CloseReason::Completed,
        )])
        .unwrap();
    assert!(matches!(
        &out.events[..],
        [GpumeshEvent::LeaseClosed(c)]
            if c.gpus == 2 && c.worker_gpus_leased_before == 8 && c.worker_gpus_leased_after == 6
    ));
    let extra = fx.assign(&fifth, &w, 1).unwrap();
    assert_eq!(extra.nonce, 4);
    let state = fx.worker_state(&w);
    assert_eq!((state.gpus_leased, state.active_leases), (7, 4));
    fx.check_invariants();
}

#[test]
fn stake_behind_leases_scales_with_their_gpus() {
    let mut fx = Fx::new();
    let a = fx.m.addrs;
    let orch = fx.m.orchestrator.insecure_clone();
    // Minimum 1,000 per leased GPU; 2,000 bonded backs two of its four GPUs.
    let w = fx.worker_with(gpus(4), PRICE, 2_000);
    let (_, o) = fx.order(4, 100_000);
    fx.assign(&o, &w, 2).unwrap();
    let (_, o2) = fx.order(1, 100_000);
    fx.refuses(
        &[ix::assign(&a, &orch.pubkey(), &o2.order, &w.worker, 1)],
        &orch,
        E::StakeBelowMinimum,
    );
    fx.send(
        &[ix::stake(&a, &w.owner.pubkey(), &w.token, 1_000)],
        &w.owner,
    )
    .unwrap();
    fx.assign(&o2, &w, 1).unwrap();
    // Three GPUs leased: 3,000 stays bonded, the rest may unbond.
    fx.refuses(
        &[ix::request_unstake(&a, &w.owner.pubkey(), &w.token, 1)],
        &w.owner,
        E::StakeLockedByLease,
    );
    let lease2 = fx.lease_ref(&gpumesh_client::pda::lease(&o2.order, &w.worker).0);
    fx.send_orch(&[ix::close_lease(
        &a,
        &orch.pubkey(),
        &lease2,
        CloseReason::Cancelled,
    )])
    .unwrap();
    fx.send(
        &[ix::request_unstake(&a, &w.owner.pubkey(), &w.token, 1_000)],
        &w.owner,
    )
    .unwrap();
    fx.refuses(
        &[ix::request_unstake(&a, &w.owner.pubkey(), &w.token, 1)],
        &w.owner,
        E::StakeLockedByLease,
    );
}

#[test]
fn an_offline_slash_takes_the_leases_share_and_pays_its_buyer() {
    let mut fx = Fx::with_params(MarketParams {
        offline_slash_bps: 500,
        slash_treasury_share_bps: 0,
        ..params()
    });
    let a = fx.m.addrs;
    let orch = fx.orch();
    let w = fx.worker_with(gpus(4), PRICE, 8_000);
    let (_, small) = fx.order(1, 100_000);
    let (_, big) = fx.order(3, 100_000);
    let l_small = fx.assign(&small, &w, 1).unwrap();
    let l_big = fx.assign(&big, &w, 3).unwrap();
    fx.chain.warp(60).unwrap();

    // The 1-GPU lease: 5% of a quarter of 8,000 = 100, to its buyer only.
    let small_before = fx.balance(&small.token);
    let big_before = fx.balance(&big.token);
    let out = fx
        .send_orch(&[ix::close_lease_offline(&a, &orch, &l_small, &small.token)])
        .unwrap();
    let s = slashed(&out);
    assert_eq!(
        (s.amount, s.to_buyer, s.share_gpus, s.gpu_count, s.lease),
        (100, 100, 1, 4, Some(l_small.lease))
    );
    assert_eq!(fx.balance(&small.token), small_before + 100);
    assert_eq!(fx.balance(&big.token), big_before);
    let state = fx.worker_state(&w);
    assert_eq!((state.gpus_leased, state.active_leases), (3, 1));
    assert_eq!(state.stake, 7_900);

    // The other lease runs on; its receipts still settle.
    let r = fx.receipt(&w, &l_big, 60);
    fx.settle(&[r]).unwrap();

    // The 3-GPU lease: 5% of three quarters of 7,900 = 296.25, rounded up for the buyer.
    let out = fx
        .send_orch(&[ix::close_lease_offline(&a, &orch, &l_big, &big.token)])
        .unwrap();
    assert_eq!(slashed(&out).amount, 297);
    assert_eq!(fx.balance(&big.token), big_before + 297);
    let state = fx.worker_state(&w);
    assert_eq!((state.gpus_leased, state.active_leases), (0, 0));
    assert_eq!(state.record.failures, 2);
}

#[test]
fn fraud_on_one_lease_pays_its_buyer_and_jails_the_whole_worker() {
    let mut fx = Fx::with_params(MarketParams {
        fraud_slash_bps: 5_000,
        slash_treasury_share_bps: 0,
        jail_period: 86_400,
        ..params()
    });
    let a = fx.m.addrs;
    let orch = fx.m.orchestrator.insecure_clone();
    let w = fx.worker_with(gpus(4), PRICE, 4_000);
    let (_, oa) = fx.order(2, 100_000);
    let (_, ob) = fx.order(1, 100_000);
    let la = fx.assign(&oa, &w, 2).unwrap();
    let lb = fx.assign(&ob, &w, 1).unwrap();

    // Caught on lease A: half of A's half of the stake goes to A's buyer; A ends.
    let before_a = fx.balance(&oa.token);
    let out = fx
        .send(
            &[ix::slash_fraud(
                &a,
                &orch.pubkey(),
                &w.worker,
                Some((&la, &oa.token)),
                [5; 32],
            )],
            &orch,
        )
        .unwrap();
    assert_eq!(slashed(&out).amount, 1_000);
    assert_eq!(fx.balance(&oa.token), before_a + 1_000);
    assert!(fx.chain.account(&la.lease).unwrap().is_none());
    let state = fx.worker_state(&w);
    assert!(state.jailed);
    assert_eq!((state.gpus_leased, state.active_leases), (1, 1));

    // Jailed: nothing new on any of its GPUs.
    let (_, oc) = fx.order(1, 100_000);
    fx.refuses(
        &[ix::assign(&a, &orch.pubkey(), &oc.order, &w.worker, 1)],
        &orch,
        E::WorkerJailed,
    );

    // Lease B's buyer is compensated for B's share: half of a quarter of 3,000 = 375.
    let before_b = fx.balance(&ob.token);
    let out = fx
        .send(
            &[ix::slash_fraud(
                &a,
                &orch.pubkey(),
                &w.worker,
                Some((&lb, &ob.token)),
                [5; 32],
            )],
            &orch,
        )
        .unwrap();
    assert_eq!(slashed(&out).amount, 375);
    assert_eq!(fx.balance(&ob.token), before_b + 375);

    // With no lease, the slash takes its free GPUs' share (all four now) for the treasury.
    let treasury = fx.balance(&a.treasury_vault);
    let out = fx
        .send(
            &[ix::slash_fraud(
                &a,
                &orch.pubkey(),
                &w.worker,
                None::<(&LeaseRef, &anchor_lang::prelude::Pubkey)>,
                [5; 32],
            )],
            &orch,
        )
        .unwrap();
    let s = slashed(&out);
    assert_eq!((s.amount, s.to_treasury, s.share_gpus), (1_313, 1_313, 4));
    assert_eq!(fx.balance(&a.treasury_vault), treasury + 1_313);
}
