//! Penalties through the real runtime: offline and fraud slashing paid to the buyer, jail and
//! unjail, permissionless expiry, the price circuit breaker, emission rewards and the treasury.

mod common;

use common::*;
use gpumesh_client::ix::{self, LeaseRef};
use gpumesh_client::program::errors::GpumeshError as E;
use gpumesh_client::program::events::SlashReason;
use gpumesh_client::program::instructions::UpdateMarketArgs;
use gpumesh_client::program::state::*;
use gpumesh_client::*;
use gpumesh_svm::fixtures::EmissionConfig;

fn penalty_params() -> MarketParams {
    MarketParams {
        offline_slash_bps: 500,
        fraud_slash_bps: 5_000,
        slash_treasury_share_bps: 0,
        max_receipt_age: 600,
        jail_period: 30 * 86_400,
        ..params()
    }
}

#[test]
fn offline_worker_compensates_the_buyer_and_a_second_worker_finishes() {
    let mut fx = Fx::with_params(penalty_params());
    let a = fx.m.addrs;
    let orch = fx.orch();
    let w1 = fx.worker_with(hardware(), PRICE, 10_001);
    let w2 = fx.worker_with(hardware(), 12, 2_000);
    let (buyer, o) = fx.order(1, 100_000);
    let start = fx.balance(&o.token);

    // Worker 1 serves 300 s, then misses heartbeats: final settlement and the offline close in one
    // transaction.
    let l1 = fx.assign(&o, &w1, 1).unwrap();
    fx.chain.warp(320).unwrap();
    let r = fx.receipt(&w1, &l1, 300);
    let mut ixs = ix::settle(&a, &orch, &[r]).to_vec();
    ixs.push(ix::close_lease_offline(&a, &orch, &l1, &o.token));
    let out = fx.send_orch(&ixs).unwrap();
    let compensation = 501; // ceil(10_001 × 5%)
    let slashed = out
        .events
        .iter()
        .find_map(|e| match e {
            GpumeshEvent::WorkerSlashed(s) => Some(s.clone()),
            _ => None,
        })
        .expect("WorkerSlashed");
    assert_eq!(slashed.reason, SlashReason::Offline);
    assert_eq!(
        (slashed.amount, slashed.to_buyer, slashed.to_treasury),
        (compensation, compensation, 0)
    );
    assert_eq!(
        (slashed.stake_before, slashed.stake_after),
        (10_001, 10_001 - compensation)
    );
    assert_eq!(slashed.buyer, Some(o.buyer));
    assert_eq!(
        fx.balance(&o.token),
        start + compensation,
        "the buyer got exactly the compensation"
    );
    let w = fx.worker_state(&w1);
    assert_eq!(
        (w.record.failures, w.record.slashes, w.record.slashed_total),
        (1, 1, compensation)
    );
    assert_eq!(
        (w.gpus_leased, w.active_leases),
        (0, 0),
        "its GPUs are free"
    );
    assert_eq!(slashed.lease, Some(l1.lease));
    assert_eq!((slashed.share_gpus, slashed.gpu_count), (1, 1));
    let order: Order = fx.chain.fetch(&o.order).unwrap();
    assert_eq!(
        (order.status, order.gpus_assigned, order.escrow_remaining),
        (OrderStatus::Open, 0, 100_000 - 300 * PRICE)
    );

    // Re-placed on worker 2, which finishes.
    let l2 = fx.assign(&o, &w2, 1).unwrap();
    fx.chain.warp(600).unwrap();
    let r = fx.receipt(&w2, &l2, 600);
    let mut ixs = ix::settle(&a, &orch, &[r]).to_vec();
    ixs.push(ix::close_lease(&a, &orch, &l2, CloseReason::Completed));
    fx.send_orch(&ixs).unwrap();
    fx.send(
        &[ix::complete_order(
            &a,
            &buyer.pubkey(),
            &o.buyer,
            &o.token,
            &o.order,
            [0; 32],
        )],
        &buyer,
    )
    .unwrap();

    let paid = 300 * PRICE + 600 * 12;
    assert_eq!(
        fx.balance(&o.token),
        start + 100_000 - paid + compensation,
        "buyer's final refund"
    );
    let fees = paid * 250 / 10_000;
    assert_eq!(fx.balance(&a.treasury_vault), fees);
    assert_eq!(
        fx.worker_state(&w1).earnings_claimable + fx.worker_state(&w2).earnings_claimable,
        paid - fees
    );
    fx.check_invariants();
}

#[test]
fn offline_close_checks_its_accounts_and_signer() {
    let mut fx = Fx::with_params(penalty_params());
    let a = fx.m.addrs;
    let w = fx.worker();
    let (_, o) = fx.order(1, 10_000);
    let lease = fx.assign(&o, &w, 1).unwrap();
    let orch = fx.m.orchestrator.insecure_clone();
    let stranger = fx.user(0);
    let stranger_token = fx.m.token_account(&stranger.pubkey());
    fx.refuses(
        &[ix::close_lease_offline(
            &a,
            &orch.pubkey(),
            &lease,
            &stranger_token,
        )],
        &orch,
        E::WrongTokenOwner,
    );
    let mut by_stranger = ix::close_lease_offline(&a, &stranger.pubkey(), &lease, &o.token);
    by_stranger.accounts[0].is_signer = true;
    fx.refuses(&[by_stranger], &stranger, E::NotOrchestrator);
    let mut wrong_vault = ix::close_lease_offline(&a, &orch.pubkey(), &lease, &o.token);
    wrong_vault.accounts[7].pubkey = a.escrow_vault; // stake vault slot
    fx.refuses(&[wrong_vault], &orch, E::WrongVault);
}

#[test]
fn unbonding_stake_stays_slashable_and_a_slash_never_takes_more_than_there_is() {
    let mut fx = Fx::with_params(MarketParams {
        fraud_slash_bps: 10_000,
        ..penalty_params()
    });
    let a = fx.m.addrs;
    let w = fx.worker_with(hardware(), PRICE, 1_500);
    fx.send(
        &[ix::request_unstake(&a, &w.owner.pubkey(), &w.token, 500)],
        &w.owner,
    )
    .unwrap();
    let orch = fx.m.orchestrator.insecure_clone();
    let out = fx
        .send(
            &[ix::slash_fraud(
                &a,
                &orch.pubkey(),
                &w.worker,
                None,
                [7; 32],
            )],
            &orch,
        )
        .unwrap();
    let [
        GpumeshEvent::WorkerSlashed(s),
        GpumeshEvent::WorkerJailChanged(j),
    ] = &out.events[..]
    else {
        panic!("{:?}", out.events)
    };
    // 100% of bonded + unbonding, and no more; with no lease it all goes to the treasury.
    assert_eq!((s.amount, s.to_buyer, s.to_treasury), (1_500, 0, 1_500));
    assert_eq!((s.unbonding_before, s.unbonding_after), (500, 0));
    assert_eq!(s.evidence_hash, [7; 32]);
    assert!(j.jailed);
    assert_eq!(fx.balance(&a.treasury_vault), 1_500);
    // Nothing left: a second slash takes nothing.
    let out = fx
        .send(
            &[ix::slash_fraud(
                &a,
                &orch.pubkey(),
                &w.worker,
                None,
                [8; 32],
            )],
            &orch,
        )
        .unwrap();
    assert!(matches!(&out.events[0], GpumeshEvent::WorkerSlashed(s) if s.amount == 0));
}

#[test]
fn fraud_slash_pays_the_buyer_jails_and_unjail_needs_time_and_stake() {
    let mut fx = Fx::with_params(penalty_params());
    let a = fx.m.addrs;
    let w = fx.worker_with(hardware(), PRICE, 2_000);
    let (_, o) = fx.order(1, 50_000);
    let lease = fx.assign(&o, &w, 1).unwrap();
    let orch = fx.m.orchestrator.insecure_clone();

    // A lease comes with its order, the buyer's token account and its rent payer, or not at all.
    let mut half = ix::slash_fraud(
        &a,
        &orch.pubkey(),
        &w.worker,
        Some((&lease, &o.token)),
        [1; 32],
    );
    half.accounts[8].pubkey = gpumesh_client::program::ID; // buyer token: "none"
    fx.refuses(&[half], &orch, E::MissingSlashAccounts);
    let stranger = fx.user(0);
    let mut by_stranger = ix::slash_fraud(
        &a,
        &stranger.pubkey(),
        &w.worker,
        Some((&lease, &o.token)),
        [1; 32],
    );
    by_stranger.accounts[0].is_signer = true;
    fx.refuses(&[by_stranger], &stranger, E::NotOrchestrator);

    let before = fx.balance(&o.token);
    let out = fx
        .send(
            &[ix::slash_fraud(
                &a,
                &orch.pubkey(),
                &w.worker,
                Some((&lease, &o.token)),
                [1; 32],
            )],
            &orch,
        )
        .unwrap();
    assert!(
        out.events
            .iter()
            .any(|e| matches!(e, GpumeshEvent::LeaseClosed(c) if c.reason == CloseReason::Fraud))
    );
    assert_eq!(
        fx.balance(&o.token),
        before + 1_000,
        "50% of 2,000 to the buyer"
    );
    assert!(fx.chain.account(&lease.lease).unwrap().is_none());
    let state = fx.worker_state(&w);
    assert!(state.jailed);
    assert_eq!((state.gpus_leased, state.active_leases), (0, 0));
    let order: Order = fx.chain.fetch(&o.order).unwrap();
    assert_eq!(order.status, OrderStatus::Open);

    // Jailed: not assignable, cannot withdraw, cannot unjail early.
    fx.refuses(
        &[ix::assign(&a, &orch.pubkey(), &o.order, &w.worker, 1)],
        &orch,
        E::WorkerJailed,
    );
    fx.send(
        &[ix::request_unstake(&a, &w.owner.pubkey(), &w.token, 500)],
        &w.owner,
    )
    .unwrap();
    fx.chain.warp(params().unbonding_period).unwrap();
    fx.refuses(
        &[ix::withdraw_unstaked(&a, &w.owner.pubkey(), &w.token)],
        &w.owner,
        E::WorkerJailed,
    );
    fx.refuses(
        &[ix::unjail(&a, &w.owner.pubkey())],
        &w.owner,
        E::WorkerJailed,
    );
    fx.chain.warp(penalty_params().jail_period).unwrap();
    // Jail over, but 500 bonded < 1,000 minimum.
    fx.refuses(
        &[ix::unjail(&a, &w.owner.pubkey())],
        &w.owner,
        E::StakeBelowMinimum,
    );
    fx.send(&[ix::stake(&a, &w.owner.pubkey(), &w.token, 500)], &w.owner)
        .unwrap();
    let stranger_ix = ix::unjail(&a, &stranger.pubkey());
    let mut stranger_ix = stranger_ix;
    stranger_ix.accounts[2].pubkey = w.worker;
    fx.refuses(&[stranger_ix], &stranger, E::NotWorkerOwner);
    fx.send(&[ix::unjail(&a, &w.owner.pubkey())], &w.owner)
        .unwrap();
    fx.refuses(&[ix::unjail(&a, &w.owner.pubkey())], &w.owner, E::NotJailed);
    fx.send(
        &[ix::withdraw_unstaked(&a, &w.owner.pubkey(), &w.token)],
        &w.owner,
    )
    .unwrap();
    fx.assign(&o, &w, 1).expect("assignable again");
}

#[test]
fn anyone_can_expire_a_dead_lease_without_slashing() {
    let mut fx = Fx::with_params(penalty_params());
    let a = fx.m.addrs;
    let w = fx.worker();
    let (buyer, o) = fx.order(1, 10_000);
    let lease = fx.assign(&o, &w, 1).unwrap();
    let cranker = fx.user(0);
    let orch = fx.orch();
    fx.chain.warp(599).unwrap();
    fx.refuses(
        &[ix::expire_lease(&a, &cranker.pubkey(), &lease)],
        &cranker,
        E::LeaseNotExpired,
    );
    fx.chain.warp(1).unwrap();
    let to_cranker = LeaseRef {
        rent_payer: cranker.pubkey(),
        ..lease
    };
    let wrong_rent = ix::expire_lease(&a, &cranker.pubkey(), &to_cranker);
    fx.refuses(&[wrong_rent], &cranker, E::WrongRentReceiver);
    let orch_lamports = fx.chain.lamports(&orch).unwrap();
    let out = fx
        .send(&[ix::expire_lease(&a, &cranker.pubkey(), &lease)], &cranker)
        .unwrap();
    assert!(
        matches!(&out.events[..], [GpumeshEvent::LeaseClosed(c)] if c.reason == CloseReason::Expired)
    );
    assert!(
        fx.chain.lamports(&orch).unwrap() > orch_lamports,
        "rent back to the orchestrator"
    );
    assert_eq!(fx.worker_state(&w).stake, 1_000, "no slash");
    // The buyer can now take the escrow back.
    fx.send(
        &[ix::cancel_order(&a, &buyer.pubkey(), &o.token, &o.order)],
        &buyer,
    )
    .unwrap();
    assert_eq!(fx.balance(&o.token), 20_000);

    // A lease with a recent receipt is not expired.
    let (_, o2) = fx.order(1, 10_000);
    let l2 = fx.assign(&o2, &w, 1).unwrap();
    fx.chain.warp(500).unwrap();
    let r = fx.receipt(&w, &l2, 500);
    fx.settle(&[r]).unwrap();
    fx.chain.warp(500).unwrap();
    fx.refuses(
        &[ix::expire_lease(&a, &cranker.pubkey(), &l2)],
        &cranker,
        E::LeaseNotExpired,
    );
}

#[test]
fn the_circuit_breaker_trips_above_the_band_and_the_reference_moves_slowly() {
    let mut fx = Fx::new();
    let a = fx.m.addrs;
    let authority = fx.m.authority.insecure_clone();
    let mut prices = [0u64; 16];
    prices[H100 as usize] = 10;
    let set_reference = |prices| UpdateMarketArgs {
        reference_prices: Some(prices),
        ..Default::default()
    };
    fx.send(
        &[ix::update_market(
            &a,
            &authority.pubkey(),
            set_reference(prices),
        )],
        &authority,
    )
    .unwrap();
    let orch = fx.m.orchestrator.insecure_clone();
    let buyer = fx.user(10_000_000);
    let order = |fx: &mut Fx| {
        let mut args = fx.order_args(requirements(1), 100_000);
        args.terms.max_price_per_gpu_second = 1_000;
        fx.order_from(&buyer, args).unwrap()
    };

    // Band 300%: the cap is 10 × 4 = 40.
    let greedy = fx.worker_with(hardware(), 100, 1_000);
    let o = order(&mut fx);
    let before = fx.snapshot();
    let err = fx
        .chain
        .send(
            &[ix::assign(&a, &orch.pubkey(), &o.order, &greedy.worker, 1)],
            &orch,
            &[],
        )
        .unwrap_err();
    assert_eq!(
        err.gpumesh_error().map(|e| e.name()),
        Some("PriceAboveBreaker".into())
    );
    let ChainError::Program { logs, .. } = &err else {
        panic!("{err}")
    };
    let tripped = gpumesh_client::events::parse_logs(logs);
    assert!(
        matches!(&tripped[..], [GpumeshEvent::BreakerTripped(t)] if t.price == 100 && t.reference == 10 && t.cap == 40)
    );
    assert_eq!(before, fx.snapshot());

    // At the cap it is accepted and the reference moves 10% of the gap: 10 + 3 = 13.
    let edge = fx.worker_with(hardware(), 40, 1_000);
    fx.assign(&o, &edge, 1).unwrap();
    assert_eq!(fx.market().reference_prices[H100 as usize], 13);

    // A burst inside one update interval moves it no further.
    for _ in 0..4 {
        let w = fx.worker_with(hardware(), 52, 1_000);
        let o = order(&mut fx);
        fx.assign(&o, &w, 1).unwrap();
    }
    assert_eq!(
        fx.market().reference_prices[H100 as usize],
        13,
        "one move per interval"
    );
    fx.chain.warp(params().reference_update_interval).unwrap();
    let w = fx.worker_with(hardware(), 52, 1_000);
    let o2 = order(&mut fx);
    fx.assign(&o2, &w, 1).unwrap();
    assert_eq!(fx.market().reference_prices[H100 as usize], 13 + 3);

    // The greedy worker's price (100, above the cap of 16 × 4 = 64) stays on its record but is
    // unmatched until the reference catches up or the authority resets it.
    let o_greedy = order(&mut fx);
    fx.refuses(
        &[ix::assign(
            &a,
            &orch.pubkey(),
            &o_greedy.order,
            &greedy.worker,
            1,
        )],
        &orch,
        E::PriceAboveBreaker,
    );
    prices[H100 as usize] = 30;
    fx.send(
        &[ix::update_market(
            &a,
            &authority.pubkey(),
            set_reference(prices),
        )],
        &authority,
    )
    .unwrap();
    let o3 = order(&mut fx);
    fx.assign(&o3, &greedy, 1)
        .expect("matchable after the reset");
}

#[test]
fn emission_rewards_follow_settled_gpu_seconds_and_are_claimed_once() {
    let emission = EmissionConfig {
        supply: 1_000_000_000,
        share_bps: 3_000,
        duration: 10_000,
    };
    let mut fx = Fx::with_emission(params(), emission);
    let a = fx.m.addrs;
    let authority = fx.m.authority.insecure_clone();
    let total = 300_000_000;
    assert_eq!(fx.market().emission.total, total);
    let auth_token = fx.fund_authority(total + 1);
    let stranger = fx.user(10);
    let stranger_token = fx.m.token_account(&stranger.pubkey());
    let mut by_stranger = ix::fund_rewards(&a, &stranger.pubkey(), &stranger_token, 10);
    by_stranger.accounts[0].is_signer = true;
    fx.refuses(&[by_stranger], &stranger, E::NotMarketAuthority);
    fx.refuses(
        &[ix::fund_rewards(
            &a,
            &authority.pubkey(),
            &auth_token,
            total + 1,
        )],
        &authority,
        E::EmissionOverfunded,
    );
    fx.send(
        &[ix::fund_rewards(
            &a,
            &authority.pubkey(),
            &auth_token,
            total,
        )],
        &authority,
    )
    .unwrap();

    // One 2-GPU worker serving alone for 1,000 s earns 10% of the allocation; a receipt proving
    // only half of the time earns half of that.
    let w = fx.worker_with(
        HardwareClaim {
            gpu_count: 2,
            ..hardware()
        },
        PRICE,
        2_000,
    );
    let (_, o) = fx.order(2, 1_000_000);
    let lease = fx.assign(&o, &w, 2).unwrap();
    fx.chain.warp(1_000).unwrap();
    let r = fx.receipt(&w, &lease, 500);
    let out = fx.settle(&[r]).unwrap();
    let [GpumeshEvent::ReceiptSettled(s)] = &out.events[..] else {
        panic!("{:?}", out.events)
    };
    assert_eq!(s.rewards, total / 10 / 2);
    // A stranger has no worker to claim for.
    fx.refuses_code(
        &[ix::claim_rewards(&a, &stranger.pubkey(), &stranger_token)],
        &stranger,
        3012,
    );

    let before = fx.balance(&w.token);
    let out = fx
        .send(
            &[ix::claim_rewards(&a, &w.owner.pubkey(), &w.token)],
            &w.owner,
        )
        .unwrap();
    assert!(
        matches!(&out.events[..], [GpumeshEvent::RewardsClaimed(c)] if c.amount == total / 20 && c.paid_after == total / 20)
    );
    assert_eq!(fx.balance(&w.token), before + total / 20);
    fx.refuses(
        &[ix::claim_rewards(&a, &w.owner.pubkey(), &w.token)],
        &w.owner,
        E::NothingToClaim,
    );

    // Time with no GPU leased releases nothing to anyone: it stays in the vault.
    let orch = fx.orch();
    fx.send_orch(&[ix::close_lease(&a, &orch, &lease, CloseReason::Completed)])
        .unwrap();
    fx.chain.warp(1_000).unwrap();
    let lease = fx.assign(&o, &w, 2).unwrap();
    let e = fx.market().emission;
    assert_eq!(e.undistributed, total / 10);
    fx.chain.warp(100).unwrap();
    let r = fx.receipt(&w, &lease, 100);
    let out = fx.settle(&[r]).unwrap();
    assert!(
        matches!(&out.events[..], [GpumeshEvent::ReceiptSettled(s)] if s.rewards == total / 100)
    );
}

/// Warps across the whole (12-year) schedule with one lease always active, settling every
/// year: the total released equals the configured share within rounding, and at no clock was
/// more paid than unlocked (checked after every step by the fixture).
#[test]
fn the_whole_emission_period_releases_the_configured_share() {
    let year = 365 * 86_400;
    let emission = EmissionConfig {
        supply: 1_000_000_000_000_000, // 1e9 tokens of 6 decimals
        share_bps: 3_000,
        duration: 12 * year,
    };
    let mut fx = Fx::with_emission(params(), emission);
    let a = fx.m.addrs;
    let authority = fx.m.authority.insecure_clone();
    let total = fx.market().emission.total;
    assert_eq!(total, 300_000_000_000_000);
    let auth_token = fx.fund_authority(total);
    fx.send(
        &[ix::fund_rewards(
            &a,
            &authority.pubkey(),
            &auth_token,
            total,
        )],
        &authority,
    )
    .unwrap();

    let w = fx.worker_with(
        HardwareClaim {
            gpu_count: 8,
            ..hardware()
        },
        1,
        8_000,
    );
    let buyer = fx.user(13 * year as u64 * 8);
    let mut args = fx.order_args(requirements(8), 13 * year as u64 * 8);
    args.terms.duration = 13 * year as u64;
    let o = fx.order_from(&buyer, args).unwrap();
    let lease = fx.assign(&o, &w, 8).unwrap();
    let mut rewards = 0u64;
    for y in 1..=13u64 {
        fx.chain.warp(year).unwrap();
        let r = fx.receipt(&w, &lease, y * year as u64);
        let out = fx.settle(&[r]).unwrap();
        let [GpumeshEvent::ReceiptSettled(s)] = &out.events[..] else {
            panic!()
        };
        rewards += s.rewards;
        let e = fx.market().emission;
        let now = fx.chain.unix_time().unwrap();
        let unlocked = gpumesh_client::program::emission::unlocked(&e, now).unwrap();
        assert!(
            e.accrued <= unlocked,
            "year {y}: accrued {} > unlocked {unlocked}",
            e.accrued
        );
    }
    let e = fx.market().emission;
    assert_eq!(e.distributed, total, "everything released");
    assert!(
        total - rewards <= 8,
        "paid {rewards} of {total}: only rounding dust stays"
    );
    fx.send(
        &[ix::claim_rewards(&a, &w.owner.pubkey(), &w.token)],
        &w.owner,
    )
    .unwrap();
    assert_eq!(fx.balance(&a.rewards_vault), total - rewards);
}

#[test]
fn only_the_authority_withdraws_fees_and_only_what_accrued() {
    let mut fx = Fx::new();
    let a = fx.m.addrs;
    let w = fx.worker();
    let (_, o) = fx.order(1, 100_000);
    let lease = fx.assign(&o, &w, 1).unwrap();
    fx.chain.warp(1_000).unwrap();
    let r = fx.receipt(&w, &lease, 1_000);
    fx.settle(&[r]).unwrap();
    let fees = 1_000 * PRICE * 250 / 10_000;
    assert_eq!(fx.market().treasury_balance, fees);
    let authority = fx.m.authority.insecure_clone();
    let to = fx.fund_authority(0);
    let stranger = fx.user(0);
    let stranger_token = fx.m.token_account(&stranger.pubkey());
    let mut by_stranger = ix::withdraw_treasury(&a, &stranger.pubkey(), &stranger_token, 1);
    by_stranger.accounts[0].is_signer = true;
    fx.refuses(&[by_stranger], &stranger, E::NotMarketAuthority);
    fx.refuses(
        &[ix::withdraw_treasury(
            &a,
            &authority.pubkey(),
            &to,
            fees + 1,
        )],
        &authority,
        E::TreasuryInsufficient,
    );
    let mut wrong_vault = ix::withdraw_treasury(&a, &authority.pubkey(), &to, 1);
    wrong_vault.accounts[3].pubkey = a.escrow_vault;
    fx.refuses(&[wrong_vault], &authority, E::WrongVault);
    let out = fx
        .send(
            &[ix::withdraw_treasury(&a, &authority.pubkey(), &to, fees)],
            &authority,
        )
        .unwrap();
    assert!(
        matches!(&out.events[..], [GpumeshEvent::TreasuryWithdrawn(t)] if t.treasury_before == fees && t.treasury_after == 0)
    );
    assert_eq!(fx.balance(&to), fees);
}
