//! Markets, worker registration, staking, unbonding, earnings and closing, through the real
//! runtime: each success path, and each refusal leaving every balance and account unchanged.

mod common;

use common::*;
use gpumesh_client::ix;
use gpumesh_client::program::errors::GpumeshError as E;
use gpumesh_client::program::events::StakeChangeKind;
use gpumesh_client::program::instructions::*;
use gpumesh_client::program::state::*;
use gpumesh_client::*;
use gpumesh_svm::SvmChain;
use gpumesh_svm::fixtures::LocalMarket;

#[test]
fn init_market_creates_vaults_owned_by_the_market() {
    let fx = Fx::new();
    let market = fx.market();
    assert_eq!(market.version, Market::VERSION);
    assert_eq!(market.params, params());
    assert_eq!(market.mint, fx.m.addrs.mint);
    assert_eq!(market.creator, fx.m.authority.pubkey());
    assert_eq!(market.authority, fx.m.authority.pubkey());
    assert_eq!(
        gpumesh_client::pda::market(&market.mint, &market.creator).0,
        fx.m.addrs.market,
        "the market's address derives from its mint and creator"
    );
    for vault in [
        market.stake_vault,
        market.escrow_vault,
        market.treasury_vault,
        market.rewards_vault,
    ] {
        let t: anchor_spl::token::TokenAccount = fx.chain.fetch(&vault).unwrap();
        assert_eq!(
            t.owner, fx.m.addrs.market,
            "vault authority is the market PDA"
        );
        assert_eq!(t.mint, fx.m.addrs.mint);
    }
    fx.check_invariants();
}

#[test]
fn init_market_refuses_out_of_range_parameters() {
    let mut chain = SvmChain::new();
    let bad = MarketParams {
        protocol_fee_bps: 5_000,
        ..params()
    };
    let err = LocalMarket::create(&mut chain, bad, 6)
        .err()
        .expect("refused");
    assert_eq!(
        err.gpumesh_error().map(|e| e.name()),
        Some("InvalidMarketParams".into())
    );
    let bad = MarketParams {
        unbonding_period: 10,
        ..params()
    };
    assert!(LocalMarket::create(&mut chain, bad, 6).is_err());
}

#[test]
fn update_market_is_authority_only_and_bounded() {
    let mut fx = Fx::new();
    let authority = fx.m.authority.insecure_clone();
    let stranger = fx.user(0);
    let new_params = MarketParams {
        protocol_fee_bps: 100,
        ..params()
    };
    let upd = |p| UpdateMarketArgs {
        params: Some(p),
        ..Default::default()
    };
    fx.refuses(
        &[ix::update_market(
            &fx.m.addrs,
            &stranger.pubkey(),
            upd(new_params),
        )],
        &stranger,
        E::NotMarketAuthority,
    );
    let too_high = MarketParams {
        breaker_band_bps: 10,
        ..params()
    };
    fx.refuses(
        &[ix::update_market(
            &fx.m.addrs,
            &authority.pubkey(),
            upd(too_high),
        )],
        &authority,
        E::InvalidMarketParams,
    );
    let to_nobody = UpdateMarketArgs {
        new_authority: Some(anchor_lang::prelude::Pubkey::default()),
        ..Default::default()
    };
    fx.refuses(
        &[ix::update_market(
            &fx.m.addrs,
            &authority.pubkey(),
            to_nobody,
        )],
        &authority,
        E::InvalidMarketParams,
    );
    let out = fx
        .send(
            &[ix::update_market(
                &fx.m.addrs,
                &authority.pubkey(),
                upd(new_params),
            )],
            &authority,
        )
        .unwrap();
    assert_eq!(fx.market().params.protocol_fee_bps, 100);
    match &out.events[..] {
        [GpumeshEvent::MarketUpdated(e)] => {
            assert_eq!(e.params_before.protocol_fee_bps, 250);
            assert_eq!(e.params_after.protocol_fee_bps, 100);
        }
        other => panic!("unexpected events {other:?}"),
    }
}

#[test]
fn paused_market_takes_no_new_orders_or_leases() {
    let mut fx = Fx::new();
    let w = fx.worker();
    let (_, o) = fx.order(1, 10_000);
    let authority = fx.m.authority.insecure_clone();
    fx.send(
        &[ix::update_market(
            &fx.m.addrs,
            &authority.pubkey(),
            UpdateMarketArgs {
                paused: Some(true),
                ..Default::default()
            },
        )],
        &authority,
    )
    .unwrap();
    let orch = fx.m.orchestrator.insecure_clone();
    fx.refuses(
        &[ix::assign(
            &fx.m.addrs,
            &orch.pubkey(),
            &o.order,
            &w.worker,
            1,
        )],
        &orch,
        E::MarketPaused,
    );
    let buyer = fx.user(1_000);
    let args = fx.order_args(requirements(1), 500);
    let token = fx.m.token_account(&buyer.pubkey());
    fx.refuses(
        &[ix::create_order(&fx.m.addrs, &buyer.pubkey(), &token, args)],
        &buyer,
        E::MarketPaused,
    );
}

#[test]
fn register_worker_validates_its_claim() {
    let mut fx = Fx::new();
    let owner = fx.user(0);
    let node = Keypair::new();
    let addrs = fx.m.addrs;
    let reg = |node_key, hardware, price| {
        ix::register_worker(
            &addrs,
            &owner.pubkey(),
            RegisterWorkerArgs {
                node_key,
                hardware,
                price_per_gpu_second: price,
            },
        )
    };
    let bad_class = HardwareClaim {
        gpu_class: 16,
        ..hardware()
    };
    let bad_region = HardwareClaim {
        region: 64,
        ..hardware()
    };
    let no_gpus = HardwareClaim {
        gpu_count: 0,
        ..hardware()
    };
    let ixs = [
        (reg(node.pubkey(), bad_class, 1), E::InvalidHardware),
        (reg(node.pubkey(), bad_region, 1), E::InvalidHardware),
        (reg(node.pubkey(), no_gpus, 1), E::InvalidHardware),
        (reg(node.pubkey(), hardware(), 0), E::InvalidPrice),
        (reg(owner.pubkey(), hardware(), 1), E::NodeKeyIsOwner),
    ];
    for (ix, e) in ixs {
        fx.refuses(&[ix], &owner, e);
    }
    let out = fx
        .send(&[reg(node.pubkey(), hardware(), 7)], &owner)
        .unwrap();
    let worker: Worker = fx.chain.fetch(&fx.m.addrs.worker(&owner.pubkey())).unwrap();
    assert_eq!(worker.node_key, node.pubkey());
    assert_eq!((worker.gpus_leased, worker.active_leases), (0, 0));
    assert!(!worker.jailed);
    assert!(
        matches!(&out.events[..], [GpumeshEvent::WorkerRegistered(e)] if e.price_per_gpu_second == 7)
    );
    assert_eq!(fx.market().workers, 1);
}

#[test]
fn stake_unbond_and_withdraw_after_the_unlock_time() {
    let mut fx = Fx::new();
    let w = fx.worker_with(hardware(), PRICE, 3_000);
    let a = fx.m.addrs;
    let before = fx.balance(&w.token);
    let out = fx
        .send(
            &[ix::request_unstake(&a, &w.owner.pubkey(), &w.token, 2_000)],
            &w.owner,
        )
        .unwrap();
    let GpumeshEvent::StakeChanged(e) = &out.events[0] else {
        panic!("expected StakeChanged")
    };
    assert_eq!(e.kind, StakeChangeKind::UnstakeRequested);
    assert_eq!((e.stake_before, e.stake_after), (3_000, 1_000));
    assert_eq!((e.unbonding_before, e.unbonding_after), (0, 2_000));
    assert_eq!(
        e.vault_total_before, e.vault_total_after,
        "unbonding stays in the vault"
    );

    fx.refuses(
        &[ix::request_unstake(&a, &w.owner.pubkey(), &w.token, 5_000)],
        &w.owner,
        E::InsufficientStake,
    );
    fx.refuses(
        &[ix::withdraw_unstaked(&a, &w.owner.pubkey(), &w.token)],
        &w.owner,
        E::StakeStillLocked,
    );
    fx.chain.warp(params().unbonding_period - 10).unwrap();
    fx.refuses(
        &[ix::withdraw_unstaked(&a, &w.owner.pubkey(), &w.token)],
        &w.owner,
        E::StakeStillLocked,
    );
    fx.chain.warp(10).unwrap();
    fx.send(
        &[ix::withdraw_unstaked(&a, &w.owner.pubkey(), &w.token)],
        &w.owner,
    )
    .unwrap();
    assert_eq!(fx.balance(&w.token), before + 2_000);
    fx.refuses(
        &[ix::withdraw_unstaked(&a, &w.owner.pubkey(), &w.token)],
        &w.owner,
        E::NothingUnbonding,
    );
}

#[test]
fn staking_refuses_wrong_signer_mint_vault_and_market() {
    let mut fx = Fx::new();
    let w = fx.worker();
    let a = fx.m.addrs;
    let thief = fx.user(10_000);
    let thief_token = fx.m.token_account(&thief.pubkey());

    // Someone else signing for the worker: the worker PDA is derived from the signer, so the
    // thief's "worker" does not exist.
    let mut ix_thief = ix::request_unstake(&a, &thief.pubkey(), &thief_token, 1);
    ix_thief.accounts[2].pubkey = w.worker;
    fx.refuses(&[ix_thief], &thief, E::NotWorkerOwner);

    // Paying the stake from someone else's token account.
    fx.refuses(
        &[ix::stake(&a, &w.owner.pubkey(), &thief_token, 10)],
        &w.owner,
        E::WrongTokenOwner,
    );

    // A token account of another mint.
    let other_market = LocalMarket::create(&mut fx.chain, params(), 6).unwrap();
    other_market.mint_to(&mut fx.chain, &w.owner, 500).unwrap();
    let wrong_mint_token = other_market.token_account(&w.owner.pubkey());
    fx.token_accounts.push(wrong_mint_token);
    fx.minted += 500;
    fx.refuses(
        &[ix::stake(&a, &w.owner.pubkey(), &wrong_mint_token, 10)],
        &w.owner,
        E::WrongMint,
    );

    // The escrow vault passed as the stake vault.
    let mut wrong_vault = ix::stake(&a, &w.owner.pubkey(), &w.token, 10);
    wrong_vault.accounts[4].pubkey = a.escrow_vault;
    fx.refuses(&[wrong_vault], &w.owner, E::WrongVault);

    // The worker of this market used against another market.
    let mut cross = ix::stake(
        &other_market.addrs,
        &w.owner.pubkey(),
        &wrong_mint_token,
        10,
    );
    cross.accounts[2].pubkey = w.worker;
    fx.refuses(&[cross], &w.owner, E::WrongMarket);

    // Zero amounts.
    fx.refuses(
        &[ix::stake(&a, &w.owner.pubkey(), &w.token, 0)],
        &w.owner,
        E::ZeroAmount,
    );
}

#[test]
fn stake_is_locked_while_serving_and_hardware_cannot_change() {
    let mut fx = Fx::new();
    let w = fx.worker_with(hardware(), PRICE, 1_500);
    let (_, o) = fx.order(1, 100_000);
    fx.assign(&o, &w, 1).unwrap();
    let a = fx.m.addrs;
    // Dropping below the 1,000 minimum while busy is refused; down to it is fine.
    fx.refuses(
        &[ix::request_unstake(&a, &w.owner.pubkey(), &w.token, 501)],
        &w.owner,
        E::StakeLockedByLease,
    );
    fx.send(
        &[ix::request_unstake(&a, &w.owner.pubkey(), &w.token, 500)],
        &w.owner,
    )
    .unwrap();
    let hw = HardwareClaim {
        vram_mib: 1,
        ..hardware()
    };
    fx.refuses(
        &[ix::update_worker(
            &a,
            &w.owner.pubkey(),
            UpdateWorkerArgs {
                hardware: Some(hw),
                ..Default::default()
            },
        )],
        &w.owner,
        E::WorkerBusy,
    );
    // A new price is accepted but the running lease keeps its agreed price.
    fx.send(
        &[ix::update_worker(
            &a,
            &w.owner.pubkey(),
            UpdateWorkerArgs {
                price_per_gpu_second: Some(15),
                ..Default::default()
            },
        )],
        &w.owner,
    )
    .unwrap();
    let lease: Lease = fx
        .chain
        .fetch(&gpumesh_client::pda::lease(&o.order, &w.worker).0)
        .unwrap();
    assert_eq!(lease.price_per_gpu_second, PRICE);
    fx.refuses(
        &[ix::close_worker(&a, &w.owner.pubkey())],
        &w.owner,
        E::WorkerBusy,
    );
}

#[test]
fn earnings_claim_once_and_close_worker_when_empty() {
    let mut fx = Fx::new();
    let w = fx.worker();
    let (_, o) = fx.order(1, 100_000);
    let lease = fx.assign(&o, &w, 1).unwrap();
    let a = fx.m.addrs;
    fx.refuses(
        &[ix::claim_earnings(&a, &w.owner.pubkey(), &w.token)],
        &w.owner,
        E::NothingToClaim,
    );
    fx.chain.warp(600).unwrap();
    let r = fx.receipt(&w, &lease, 600);
    fx.settle(&[r]).unwrap();
    let orch = fx.orch();
    fx.send_orch(&[ix::close_lease(&a, &orch, &lease, CloseReason::Completed)])
        .unwrap();
    let worker: Worker = fx.chain.fetch(&w.worker).unwrap();
    let expected = 600 * PRICE - 600 * PRICE * 250 / 10_000;
    assert_eq!(worker.earnings_claimable, expected);
    assert_eq!(worker.record.served_gpu_seconds, 600);
    assert_eq!(worker.record.leases_completed, 1);

    let before = fx.balance(&w.token);
    let out = fx
        .send(
            &[ix::claim_earnings(&a, &w.owner.pubkey(), &w.token)],
            &w.owner,
        )
        .unwrap();
    assert_eq!(fx.balance(&w.token), before + expected);
    assert!(
        matches!(&out.events[..], [GpumeshEvent::EarningsClaimed(e)] if e.amount == expected && e.claimable_after == 0)
    );
    fx.refuses(
        &[ix::claim_earnings(&a, &w.owner.pubkey(), &w.token)],
        &w.owner,
        E::NothingToClaim,
    );

    fx.refuses(
        &[ix::close_worker(&a, &w.owner.pubkey())],
        &w.owner,
        E::WorkerNotEmpty,
    );
    fx.send(
        &[ix::request_unstake(&a, &w.owner.pubkey(), &w.token, 1_000)],
        &w.owner,
    )
    .unwrap();
    fx.refuses(
        &[ix::close_worker(&a, &w.owner.pubkey())],
        &w.owner,
        E::WorkerNotEmpty,
    );
    fx.chain.warp(params().unbonding_period).unwrap();
    let lamports_before = fx.chain.lamports(&w.owner.pubkey()).unwrap();
    fx.send(
        &[
            ix::withdraw_unstaked(&a, &w.owner.pubkey(), &w.token),
            ix::close_worker(&a, &w.owner.pubkey()),
        ],
        &w.owner,
    )
    .unwrap();
    assert!(fx.chain.account(&w.worker).unwrap().is_none());
    assert!(
        fx.chain.lamports(&w.owner.pubkey()).unwrap() > lamports_before,
        "rent returned"
    );
    assert_eq!(fx.market().workers, 0);
}
