//! Regression tests for seven ways money could be taken or frozen, one test each, through the
//! real runtime (and, for the first, the native glue itself):
//!
//! 1. writes to read-only accounts fail the transaction, and `settle` demands writable accounts;
//! 2. a buyer always gets its unspent escrow back within the exit window, whatever the
//!    orchestrator does;
//! 3. emission that elapsed unfunded is never paid as a lump when funding arrives;
//! 4. a receipt of one lease instance never settles on a later instance at the same address;
//! 5. a jailed worker cannot close its account and come back clean;
//! 6. nobody can create the operator's market before it does;
//! 7. the protocol fee is charged on cumulative payments, so small receipts pay it too.

mod common;

use anchor_lang::prelude::{AccountInfo, AccountMeta, Pubkey};
use common::*;
use gpumesh_client::ix::{self, LeaseRef};
use gpumesh_client::program::errors::GpumeshError as E;
use gpumesh_client::program::instructions::{InitMarketArgs, UpdateMarketArgs};
use gpumesh_client::program::state::*;
use gpumesh_client::*;
use gpumesh_migrations::deploy::{self, DeployError, Deployed, MarketConfig};
use gpumesh_svm::SvmChain;
use gpumesh_svm::fixtures::EmissionConfig;
use solana_instruction::Instruction;
use solana_instruction::error::InstructionError;
use solana_program_runtime::solana_sbpf::program::BuiltinFunctionDefinition;

// ---- 1. read-only accounts ----

/// A native test program that flips the first byte of its first account, whatever it is.
fn scribble<'info>(
    _program_id: &'info Pubkey,
    accounts: &'info [AccountInfo<'info>],
    _data: &'info [u8],
) -> solana_program_error::ProgramResult {
    let mut data = accounts[0].try_borrow_mut_data()?;
    data[0] ^= 1;
    Ok(())
}

gpumesh_svm::native_builtin!(Scribble, scribble);

#[test]
fn a_write_to_a_read_only_account_fails_the_transaction() {
    let mut chain = SvmChain::new();
    let program = Pubkey::new_unique();
    let payer = Keypair::new();
    let svm = chain.svm();
    svm.add_builtin(
        program,
        <Scribble as BuiltinFunctionDefinition<_>>::register,
    );
    svm.airdrop(&payer.pubkey(), 1_000_000_000).unwrap();
    let target = Pubkey::new_unique();
    let foreign = Pubkey::new_unique();
    for (key, owner) in [(target, program), (foreign, Pubkey::new_unique())] {
        svm.set_account(
            key,
            solana_account::Account {
                lamports: 1_000_000,
                data: vec![0; 8],
                owner,
                executable: false,
                rent_epoch: 0,
            },
        )
        .unwrap();
    }
    let call = |chain: &mut SvmChain, meta: AccountMeta| {
        let ix = Instruction {
            program_id: program,
            accounts: vec![meta],
            data: vec![],
        };
        chain.send(&[ix], &payer, &[])
    };
    let err =
        call(&mut chain, AccountMeta::new_readonly(target, false)).expect_err("read-only write");
    assert!(
        err.to_string()
            .contains(&InstructionError::ReadonlyDataModified.to_string()),
        "{err}"
    );
    assert_eq!(chain.account(&target).unwrap().unwrap().data[0], 0);
    let err =
        call(&mut chain, AccountMeta::new(foreign, false)).expect_err("write to another's account");
    assert!(
        err.to_string()
            .contains(&InstructionError::ExternalAccountDataModified.to_string()),
        "{err}"
    );
    call(&mut chain, AccountMeta::new(target, false)).expect("a writable account of its own");
    assert_eq!(chain.account(&target).unwrap().unwrap().data[0], 1);
}

#[test]
fn settle_refuses_receipt_accounts_passed_read_only() {
    let mut fx = Fx::new();
    let w = fx.worker();
    let (_, o) = fx.order(1, 100_000);
    let lease = fx.assign(&o, &w, 1).unwrap();
    let orch = fx.m.orchestrator.insecure_clone();
    fx.chain.warp(100).unwrap();
    let r = fx.receipt(&w, &lease, 100);
    let settle = ix::settle(&fx.m.addrs, &orch.pubkey(), std::slice::from_ref(&r));
    let fixed = settle[1].accounts.len() - 3;
    for slot in 0..3 {
        let mut ixs = settle.clone();
        ixs[1].accounts[fixed + slot].is_writable = false;
        fx.refuses(&ixs, &orch, E::ReceiptAccountNotWritable);
    }
    fx.settle(&[r]).expect("writable accounts settle");
    let l: Lease = fx.chain.fetch(&lease.lease).unwrap();
    assert_eq!(l.seconds_settled, 100);
}

// ---- 2. the buyer's exit ----

#[test]
fn a_buyer_gets_its_escrow_back_within_the_exit_window_whatever_the_orchestrator_does() {
    let mut fx = Fx::new();
    let a = fx.m.addrs;
    let orch = fx.m.orchestrator.insecure_clone();
    let window = params().buyer_exit_window;
    let w1 = fx.worker();
    let w2 = fx.worker();
    let (buyer, o) = fx.order(2, 100_000);
    let l1 = fx.assign(&o, &w1, 1).unwrap();
    fx.assign(&o, &w2, 1).unwrap();

    // The orchestrator keeps the lease alive with tiny receipts, well inside the expiry age.
    for s in 1..=3u64 {
        fx.chain.warp(60).unwrap();
        let r = fx.receipt(&w1, &l1, s);
        fx.settle(&[r]).unwrap();
    }
    // Only the buyer may ask to close, once.
    let stranger = fx.user(0);
    let mut by_stranger = ix::request_close(&a, &stranger.pubkey(), &o.order);
    by_stranger.accounts[0].is_signer = true;
    fx.refuses(&[by_stranger], &stranger, E::NotBuyer);
    let out = fx
        .send(&[ix::request_close(&a, &buyer.pubkey(), &o.order)], &buyer)
        .unwrap();
    let asked = fx.chain.unix_time().unwrap();
    let [GpumeshEvent::OrderCloseRequested(e)] = &out.events[..] else {
        panic!("{:?}", out.events)
    };
    assert_eq!(
        (e.close_requested_ts, e.buyer_exit_ts, e.active_leases),
        (asked, asked + window, 2)
    );
    fx.refuses(
        &[ix::request_close(&a, &buyer.pubkey(), &o.order)],
        &buyer,
        E::OrderClosing,
    );

    // The orchestrator can no longer re-place the order, nor pay for time after the request.
    let l2 = fx.lease_ref(&gpumesh_client::pda::lease(&o.order, &w2.worker).0);
    fx.send_orch(&[ix::close_lease(
        &a,
        &orch.pubkey(),
        &l2,
        CloseReason::Cancelled,
    )])
    .unwrap();
    fx.refuses(
        &[ix::assign(&a, &orch.pubkey(), &o.order, &w2.worker, 1)],
        &orch,
        E::OrderClosing,
    );
    fx.chain.warp(30).unwrap();
    let beyond = fx.receipt(&w1, &l1, 181);
    fx.refuses(
        &ix::settle(&a, &orch.pubkey(), &[beyond]),
        &orch,
        E::BeyondCloseRequest,
    );
    // Up to the moment of the request it may still settle (the final settlement).
    let last = fx.receipt(&w1, &l1, 180);
    fx.settle(&[last]).unwrap();
    fx.refuses(
        &[ix::cancel_order(&a, &buyer.pubkey(), &o.token, &o.order)],
        &buyer,
        E::OrderHasActiveLeases,
    );

    // The orchestrator never closes lease 1. Until the window ends the buyer must wait...
    let now = fx.chain.unix_time().unwrap();
    fx.chain.warp(asked + window - now - 1).unwrap();
    fx.refuses(
        &[ix::end_lease(&a, &buyer.pubkey(), &l1)],
        &buyer,
        E::ExitWindowOpen,
    );
    let mut by_stranger = ix::end_lease(&a, &stranger.pubkey(), &l1);
    by_stranger.accounts[0].is_signer = true;
    fx.refuses(&[by_stranger], &stranger, E::NotBuyer);
    // ...and then it ends the lease itself and takes the rest back, with the market paused.
    let authority = fx.m.authority.insecure_clone();
    fx.send(
        &[ix::update_market(
            &a,
            &authority.pubkey(),
            UpdateMarketArgs {
                paused: Some(true),
                ..Default::default()
            },
        )],
        &authority,
    )
    .unwrap();
    fx.chain.warp(1).unwrap();
    let waited = fx.chain.unix_time().unwrap() - asked;
    assert!(waited <= MAX_BUYER_EXIT_WINDOW);
    let before = fx.balance(&o.token);
    let orch_lamports = fx.chain.lamports(&orch.pubkey()).unwrap();
    let out = fx
        .send(
            &[
                ix::end_lease(&a, &buyer.pubkey(), &l1),
                ix::cancel_order(&a, &buyer.pubkey(), &o.token, &o.order),
            ],
            &buyer,
        )
        .unwrap();
    assert!(
        out.events.iter().any(
            |e| matches!(e, GpumeshEvent::LeaseClosed(c) if c.reason == CloseReason::BuyerExit)
        )
    );
    assert_eq!(fx.balance(&o.token), before + 100_000 - 180 * PRICE);
    assert!(
        fx.chain.lamports(&orch.pubkey()).unwrap() > orch_lamports,
        "the lease's rent goes back to the orchestrator that paid it"
    );
    assert_eq!(fx.worker_state(&w1).gpus_leased, 0);
    println!("buyer's exit: escrow back {waited} s after asking (window {window} s)");
}

// ---- 3. emission funded late ----

#[test]
fn emission_that_elapsed_unfunded_is_never_paid_as_a_lump() {
    let emission = EmissionConfig {
        supply: 1_000_000_000,
        share_bps: 3_000,
        duration: 10_000,
    };
    let mut fx = Fx::with_emission(params(), emission);
    let a = fx.m.addrs;
    let total = fx.market().emission.total;
    let w = fx.worker();
    let (_, o) = fx.order(1, 1_000_000);
    let lease = fx.assign(&o, &w, 1).unwrap();
    // 1,000 s pass with the lease running and nothing in the rewards vault.
    fx.chain.warp(1_000).unwrap();
    let authority = fx.m.authority.insecure_clone();
    let auth_token = fx.fund_authority(total);
    // The schedule can no longer release what elapsed unfunded: funding it all is refused.
    fx.refuses(
        &[ix::fund_rewards(
            &a,
            &authority.pubkey(),
            &auth_token,
            total,
        )],
        &authority,
        E::EmissionOverfunded,
    );
    let fundable = total - total / 10;
    let out = fx
        .send(
            &[ix::fund_rewards(
                &a,
                &authority.pubkey(),
                &auth_token,
                fundable,
            )],
            &authority,
        )
        .unwrap();
    assert!(
        matches!(&out.events[..], [GpumeshEvent::RewardsFunded(f)] if f.unfunded == total / 10)
    );
    // 100 s later the lease proves all 1,100 s: it earns the release of the 100 funded seconds.
    fx.chain.warp(100).unwrap();
    let r = fx.receipt(&w, &lease, 1_100);
    let out = fx.settle(&[r]).unwrap();
    let [GpumeshEvent::ReceiptSettled(s)] = &out.events[..] else {
        panic!("{:?}", out.events)
    };
    assert_eq!(s.rewards, total / 100, "not the 11% a lump would pay");
    let e = fx.market().emission;
    assert_eq!((e.unfunded, e.distributed), (total / 10, total / 100));
}

#[test]
fn the_emission_start_is_bounded_around_the_markets_creation() {
    let mut chain = SvmChain::new();
    let authority = Keypair::new();
    chain.airdrop(&authority.pubkey(), 10_000_000_000).unwrap();
    let mint = Keypair::new();
    let rent = chain
        .rent_exempt_minimum(gpumesh_client::token::MINT_LEN)
        .unwrap();
    let create = gpumesh_client::token::create_mint(
        &authority.pubkey(),
        &mint.pubkey(),
        &authority.pubkey(),
        6,
        rent,
    )
    .unwrap();
    chain.send(&create, &authority, &[&mint]).unwrap();
    let addrs = MarketAddresses::new(mint.pubkey(), authority.pubkey());
    let now = chain.unix_time().unwrap();
    let args = |start| InitMarketArgs {
        orchestrator: Pubkey::new_unique(),
        params: params(),
        reference_prices: [0; GPU_CLASS_SLOTS],
        emission_supply: 1_000_000,
        emission_supplier_share_bps: 3_000,
        emission_start_ts: start,
        emission_duration: 1_000,
    };
    for start in [now - 2 * DAY, now + 400 * DAY] {
        let err = chain
            .send(
                &[ix::init_market(&addrs, &authority.pubkey(), args(start))],
                &authority,
                &[],
            )
            .expect_err("start out of range");
        assert_eq!(err.code(), Some(u32::from(E::EmissionStartOutOfRange)));
    }
    // Started an hour ago: the hour is unfunded from the start, nobody can earn it.
    chain
        .send(
            &[ix::init_market(
                &addrs,
                &authority.pubkey(),
                args(now - 3_600),
            )],
            &authority,
            &[],
        )
        .unwrap();
    let market: Market = chain.fetch(&addrs.market).unwrap();
    assert_eq!(market.emission.unfunded, market.emission.total);
}

// ---- 4. receipts bound to one lease instance ----

#[test]
fn a_receipt_never_settles_on_a_later_lease_at_the_same_address() {
    let mut fx = Fx::new();
    let a = fx.m.addrs;
    let orch = fx.m.orchestrator.insecure_clone();
    let w = fx.worker();
    let (_, o) = fx.order(1, 100_000);
    let first = fx.assign(&o, &w, 1).unwrap();
    fx.chain.warp(200).unwrap();
    // The worker signed a receipt for 200 s; only 100 were settled before the lease ended.
    let unsettled = fx.receipt(&w, &first, 200);
    let settled = fx.receipt(&w, &first, 100);
    fx.settle(&[settled]).unwrap();
    fx.send_orch(&[ix::close_lease(
        &a,
        &orch.pubkey(),
        &first,
        CloseReason::Cancelled,
    )])
    .unwrap();
    // Same order, same worker, same address: a new instance.
    let second = fx.assign(&o, &w, 1).unwrap();
    assert_eq!(second.lease, first.lease);
    assert_ne!(second.nonce, first.nonce);
    fx.chain.warp(300).unwrap();
    let replay = (second, unsettled.1.clone());
    fx.refuses(
        &ix::settle(&a, &orch.pubkey(), &[replay]),
        &orch,
        E::ReceiptMessageMismatch,
    );
    let order: Order = fx.chain.fetch(&o.order).unwrap();
    assert_eq!(
        order.total_paid,
        100 * PRICE,
        "the old receipt paid nothing"
    );
    // The new instance's own receipts settle.
    let r = fx.receipt(&w, &second, 200);
    fx.settle(&[r]).unwrap();
}

// ---- 5. jail ----

#[test]
fn a_jailed_worker_cannot_close_and_come_back_clean() {
    let mut fx = Fx::with_params(MarketParams {
        fraud_slash_bps: 10_000,
        jail_period: 86_400,
        ..params()
    });
    let a = fx.m.addrs;
    let orch = fx.m.orchestrator.insecure_clone();
    let w = fx.worker();
    fx.send(
        &[ix::slash_fraud(
            &a,
            &orch.pubkey(),
            &w.worker,
            None::<(&LeaseRef, &Pubkey)>,
            [9; 32],
        )],
        &orch,
    )
    .unwrap();
    let state = fx.worker_state(&w);
    assert_eq!((state.stake, state.unbonding, state.jailed), (0, 0, true));
    // Slashed to zero, nothing left to withdraw: closing would erase the jail. Refused.
    fx.refuses(
        &[ix::close_worker(&a, &w.owner.pubkey())],
        &w.owner,
        E::WorkerJailed,
    );
    // Still refused after the period while not unjailed (unjailing needs the stake back).
    fx.chain.warp(86_400).unwrap();
    fx.refuses(
        &[ix::close_worker(&a, &w.owner.pubkey())],
        &w.owner,
        E::WorkerJailed,
    );
    let record = fx.worker_state(&w).record;
    assert_eq!(
        (record.frauds, record.slashes, record.failures),
        (1, 1, 0),
        "the record stays"
    );
}

// ---- 6. market creation ----

#[test]
fn nobody_can_create_the_operators_market_first() {
    let mut fx = Fx::new();
    let mint = fx.m.addrs.mint;
    let operator = Keypair::new();
    let attacker = Keypair::new();
    for k in [&operator, &attacker] {
        fx.chain.airdrop(&k.pubkey(), 10_000_000_000).unwrap();
    }
    let published_orchestrator = Pubkey::new_unique();
    let config = MarketConfig::from_toml(&format!(
        "mint = \"{mint}\"\norchestrator = \"{published_orchestrator}\"\n[params]\nprotocol_fee_bps = 100\n"
    ))
    .unwrap();

    // The attacker copies the operator's published config, with itself as authority.
    let attacker_addrs = MarketAddresses::new(mint, attacker.pubkey());
    let args = config.init_args(6, fx.chain.unix_time().unwrap()).unwrap();
    fx.chain
        .send(
            &[ix::init_market(&attacker_addrs, &attacker.pubkey(), args)],
            &attacker,
            &[],
        )
        .unwrap();

    // The operator's market lives at its own address, which the attacker could not take.
    let Deployed::Created { addrs, .. } =
        deploy::init_market_if_missing(&mut fx.chain, &operator, &config).unwrap()
    else {
        panic!("the operator's market should be created")
    };
    assert_ne!(addrs.market, attacker_addrs.market);
    let market: Market = fx.chain.fetch(&addrs.market).unwrap();
    assert_eq!(market.authority, operator.pubkey());
    let Deployed::Existing { differences, .. } =
        deploy::init_market_if_missing(&mut fx.chain, &operator, &config).unwrap()
    else {
        panic!("a second run finds it")
    };
    assert!(differences.is_empty(), "{differences:?}");

    // A config whose emission differs is reported, not silently accepted.
    let with_emission = MarketConfig::from_toml(&format!(
        "mint = \"{mint}\"\norchestrator = \"{published_orchestrator}\"\n[params]\nprotocol_fee_bps = 100\n[emission]\nsupply = \"1000\"\nsupplier_share_bps = 3000\nduration = 1000\n"
    ))
    .unwrap();
    let Deployed::Existing { differences, .. } =
        deploy::init_market_if_missing(&mut fx.chain, &operator, &with_emission).unwrap()
    else {
        panic!("existing")
    };
    assert!(
        differences.iter().any(|d| d.starts_with("emission")),
        "{differences:?}"
    );

    // Once its authority has moved to another key, this wallet no longer controls it: refused.
    let successor = Pubkey::new_unique();
    fx.chain
        .send(
            &[ix::update_market(
                &addrs,
                &operator.pubkey(),
                UpdateMarketArgs {
                    new_authority: Some(successor),
                    ..Default::default()
                },
            )],
            &operator,
            &[],
        )
        .unwrap();
    let err = deploy::init_market_if_missing(&mut fx.chain, &operator, &config)
        .err()
        .expect("refused");
    assert!(
        matches!(err, DeployError::NotControlled { authority, .. } if authority == successor),
        "{err}"
    );
}

// ---- 7. the fee on small receipts ----

#[test]
fn the_fee_is_charged_on_cumulative_payments() {
    let mut fx = Fx::new();
    let w = fx.worker_with(hardware(), 1, 1_000);
    let (_, o) = fx.order(1, 100_000);
    let lease = fx.assign(&o, &w, 1).unwrap();
    fx.chain.warp(1_000).unwrap();
    // 40 receipts of 10 s at 1 base unit per second: 10 units each, a fee of 0.25 each.
    let mut fees = 0;
    for batch in 0..5u64 {
        let receipts: Vec<_> = (1..=8u64)
            .map(|i| fx.receipt(&w, &lease, (batch * 8 + i) * 10))
            .collect();
        let out = fx.settle(&receipts).unwrap();
        fees += out
            .events
            .iter()
            .map(|e| match e {
                GpumeshEvent::ReceiptSettled(s) => s.fee,
                _ => 0,
            })
            .sum::<u64>();
    }
    // 2.5% of the 400 paid, as one payment of 400 would have been charged.
    assert_eq!(fees, 10);
    assert_eq!(fx.market().treasury_balance, 10);
    let l: Lease = fx.chain.fetch(&lease.lease).unwrap();
    assert_eq!((l.amount_paid, l.fee_paid), (400, 10));
}

// ---- the audit anyone can run ----

/// `gpumesh_client::audit` (behind `gpumesh market audit`) finds a token the books do not owe:
/// a worker account that says it holds one more unit of stake than the vault has.
#[test]
fn the_audit_names_a_vault_the_accounts_do_not_add_up_to() {
    let mut fx = Fx::new();
    let w = fx.worker();
    let (_buyer, _o) = fx.order(1, 10_000_000);
    fx.check_invariants();
    let audit = gpumesh_client::audit::audit(&fx.chain, &fx.m.addrs.market).unwrap();
    assert!(audit.is_sound(), "{:?}", audit.violations);
    assert_eq!((audit.workers, audit.orders, audit.leases), (1, 1, 0));
    assert_eq!(audit.escrow_vault as u128, audit.escrow_owed);

    // Tamper with the worker's account in the runtime (no instruction can do this).
    let raw = fx.chain.account(&w.worker).unwrap().unwrap();
    let mut worker: Worker = fx.chain.fetch(&w.worker).unwrap();
    worker.stake += 1;
    let mut data = Vec::new();
    anchor_lang::AccountSerialize::try_serialize(&worker, &mut data).unwrap();
    data.resize(raw.data.len(), 0);
    fx.chain
        .svm()
        .set_account(
            w.worker,
            solana_account::Account {
                lamports: raw.lamports,
                data,
                owner: raw.owner,
                executable: false,
                rent_epoch: 0,
            },
        )
        .unwrap();
    let audit = gpumesh_client::audit::audit(&fx.chain, &fx.m.addrs.market).unwrap();
    assert!(!audit.is_sound());
    let text = audit.violations.join("\n");
    assert!(
        text.contains("stake vault") && text.contains("market total stake"),
        "{text}"
    );
}
