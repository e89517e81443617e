//! Worker receipts through the real runtime: one signature of a worker's node key settles every
//! lease it serves, as `settle` would settle each; a lease already paid up to its entry is
//! skipped; and every malformed, foreign, stale or misdirected receipt is refused with nothing
//! moved. The transaction fee the runtime charges is measured against per-lease receipts.

mod common;

use common::*;
use gpumesh_client::ix::{self, LeaseRef};
use gpumesh_client::program::errors::GpumeshError as E;
use gpumesh_client::program::state::*;
use gpumesh_client::*;
use gpumesh_protocol::{ReceiptEntry, SignedWorkerReceipt};

/// A worker with `gpus` H100s and enough stake for all of them.
fn big_worker(fx: &mut Fx, gpus: u16) -> WorkerKeys {
    fx.worker_with(
        HardwareClaim {
            gpu_count: gpus,
            ..hardware()
        },
        PRICE,
        1_000 * u64::from(gpus),
    )
}

/// The worker's receipt over `leases` at `seconds` each, heads from its heartbeat chains.
fn worker_receipt(fx: &Fx, w: &WorkerKeys, leases: &[(LeaseRef, u64)]) -> SignedWorkerReceipt {
    let entries: Vec<(LeaseRef, u64, [u8; 32])> = leases
        .iter()
        .map(|(l, s)| {
            let (_, r) = fx.receipt(w, l, *s);
            (*l, *s, r.chain_head)
        })
        .collect();
    receipt::sign_worker(&w.node, &w.worker, &entries).expect("sign")
}

fn settle_ixs(fx: &Fx, receipts: &[(&SignedWorkerReceipt, &[LeaseRef])]) -> [Instruction; 2] {
    ix::settle_worker_receipts(&fx.m.addrs, &fx.orch(), receipts).expect("every lease listed")
}

#[test]
fn one_signature_settles_every_lease_of_a_worker() {
    let mut fx = Fx::new();
    let w = big_worker(&mut fx, 4);
    let (_, o1) = fx.order(1, 100_000);
    let (_, o2) = fx.order(1, 100_000);
    let (_, o3) = fx.order(2, 100_000);
    let l1 = fx.assign(&o1, &w, 1).unwrap();
    let l2 = fx.assign(&o2, &w, 1).unwrap();
    let l3 = fx.assign(&o3, &w, 2).unwrap();
    fx.chain.warp(1_000).unwrap();

    let leases = [l1, l2, l3];
    let r = worker_receipt(&fx, &w, &[(l1, 600), (l2, 300), (l3, 900)]);
    let orch = fx.m.orchestrator.insecure_clone();
    let lamports_before = fx.chain.lamports(&orch.pubkey()).unwrap();
    let out = fx.send_orch(&settle_ixs(&fx, &[(&r, &leases)])).unwrap();
    let fee_one_signature = lamports_before - fx.chain.lamports(&orch.pubkey()).unwrap();
    fx.check_invariants();

    let paid = |o: &OrderKeys| fx.chain.fetch::<Order>(&o.order).unwrap().total_paid;
    assert_eq!(paid(&o1), 600 * PRICE);
    assert_eq!(paid(&o2), 300 * PRICE);
    assert_eq!(paid(&o3), 900 * 2 * PRICE);
    let settled = |l: &LeaseRef| fx.chain.fetch::<Lease>(&l.lease).unwrap().seconds_settled;
    assert_eq!((settled(&l1), settled(&l2), settled(&l3)), (600, 300, 900));
    let total = (600 + 300 + 1_800) * PRICE;
    let fee = total * 250 / 10_000;
    let worker = fx.worker_state(&w);
    assert_eq!(worker.earnings_claimable, total - fee);
    assert_eq!(worker.record.served_gpu_seconds, 600 + 300 + 1_800);
    let settled_events = out
        .events
        .iter()
        .filter(|e| matches!(e, GpumeshEvent::ReceiptSettled(_)))
        .count();
    assert_eq!(
        settled_events, 3,
        "one event per lease, amounts before and after"
    );

    // The same leases later with a receipt each: three signatures instead of one.
    fx.chain.warp(1_000).unwrap();
    let singles: Vec<(LeaseRef, SignedReceipt)> = [(l1, 1_200), (l2, 900), (l3, 1_500)]
        .iter()
        .map(|(l, s)| fx.receipt(&w, l, *s))
        .collect();
    let lamports_before = fx.chain.lamports(&orch.pubkey()).unwrap();
    fx.send_orch(&ix::settle(&fx.m.addrs, &fx.orch(), &singles))
        .unwrap();
    let fee_three_signatures = lamports_before - fx.chain.lamports(&orch.pubkey()).unwrap();
    fx.check_invariants();
    assert_eq!(
        fee_one_signature, 10_000,
        "the payer's and one receipt signature"
    );
    assert_eq!(
        fee_three_signatures, 20_000,
        "the payer's and three receipt signatures"
    );
}

#[test]
fn receipts_of_several_workers_settle_together_and_an_unchanged_lease_is_skipped() {
    let mut fx = Fx::new();
    let a = big_worker(&mut fx, 2);
    let b = big_worker(&mut fx, 2);
    let (_, o1) = fx.order(2, 100_000);
    let (_, o2) = fx.order(2, 100_000);
    let la = fx.assign(&o1, &a, 1).unwrap();
    let lb1 = fx.assign(&o1, &b, 1).unwrap();
    let lb2 = fx.assign(&o2, &b, 1).unwrap();
    fx.chain.warp(500).unwrap();
    let ra = worker_receipt(&fx, &a, &[(la, 100)]);
    let rb = worker_receipt(&fx, &b, &[(lb1, 200), (lb2, 300)]);
    fx.send_orch(&settle_ixs(&fx, &[(&ra, &[la]), (&rb, &[lb1, lb2])]))
        .unwrap();
    fx.check_invariants();
    assert_eq!(
        fx.chain.fetch::<Order>(&o1.order).unwrap().total_paid,
        300 * PRICE,
        "one order served by two workers, paid by both receipts"
    );

    // b's next receipt: lb1 has not served since; lb2 has. Only lb2 pays.
    fx.chain.warp(100).unwrap();
    let rb = worker_receipt(&fx, &b, &[(lb1, 200), (lb2, 350)]);
    let out = fx
        .send_orch(&settle_ixs(&fx, &[(&rb, &[lb1, lb2])]))
        .unwrap();
    fx.check_invariants();
    let settled: Vec<_> = out
        .events
        .iter()
        .filter_map(|e| match e {
            GpumeshEvent::ReceiptSettled(s) => Some((s.lease, s.seconds_before, s.seconds_after)),
            _ => None,
        })
        .collect();
    assert_eq!(settled, vec![(lb2.lease, 300, 350)]);

    // The same receipt again pays nothing, and says so.
    fx.refuses(
        &settle_ixs(&fx, &[(&rb, &[lb1, lb2])]),
        &fx.m.orchestrator.insecure_clone(),
        E::NothingToSettle,
    );
}

#[test]
fn a_wrong_foreign_or_misdirected_worker_receipt_moves_nothing() {
    let mut fx = Fx::new();
    let w = big_worker(&mut fx, 2);
    let other = big_worker(&mut fx, 1);
    let (_, o1) = fx.order(1, 100_000);
    let (_, o2) = fx.order(1, 100_000);
    let l1 = fx.assign(&o1, &w, 1).unwrap();
    let l2 = fx.assign(&o2, &w, 1).unwrap();
    let (_, o3) = fx.order(1, 100_000);
    let lo = fx.assign(&o3, &other, 1).unwrap();
    fx.chain.warp(1_000).unwrap();
    let orch = fx.m.orchestrator.insecure_clone();
    let good = worker_receipt(&fx, &w, &[(l1, 100), (l2, 100)]);

    // Signed by another key than the worker's node key.
    let forged = receipt::sign_worker(&other.node, &w.worker, &[(l1, 100, [0; 32])]).unwrap();
    fx.refuses(
        &settle_ixs(&fx, &[(&forged, &[l1])]),
        &orch,
        E::WrongReceiptSigner,
    );
    // The other worker's own receipt, naming this worker's lease: not its lease.
    let misdirected =
        receipt::sign_worker(&other.node, &other.worker, &[(l1, 100, [0; 32])]).unwrap();
    fx.refuses(
        &settle_ixs(&fx, &[(&misdirected, &[l1])]),
        &orch,
        E::ReceiptAccountsMismatch,
    );
    // A receipt for another worker account than the one passed.
    let mut ixs = settle_ixs(&fx, &[(&good, &[l1, l2])]);
    ixs[1].accounts[7].pubkey = other.worker;
    fx.refuses(&ixs, &orch, E::WorkerReceiptMismatch);
    // Another deployment's receipt.
    let foreign = SignedWorkerReceipt::sign(
        &receipt::signing_key(&w.node),
        gpumesh_protocol::Key([9; 32]),
        receipt::key(&w.worker),
        good.entries.clone(),
    )
    .unwrap();
    fx.refuses(
        &settle_ixs(&fx, &[(&foreign, &[l1, l2])]),
        &orch,
        E::WorkerReceiptMismatch,
    );
    // A lease named twice (signed as such: the protocol would not build it).
    let mut twice = good.clone();
    twice.entries[1] = ReceiptEntry {
        served_seconds: 200,
        ..twice.entries[0]
    };
    let signed = w.node.sign_message(&twice.message());
    twice.signature = gpumesh_protocol::Signature(signed.as_ref().try_into().unwrap());
    fx.refuses(
        &settle_ixs(&fx, &[(&twice, &[l1, l2])]),
        &orch,
        E::DuplicateLeaseInReceipt,
    );
    // An earlier instance of a lease at the same address.
    let old_nonce = receipt::sign_worker(
        &w.node,
        &w.worker,
        &[(
            LeaseRef {
                nonce: l1.nonce.wrapping_sub(1),
                ..l1
            },
            100,
            [0; 32],
        )],
    )
    .unwrap();
    fx.refuses(
        &settle_ixs(&fx, &[(&old_nonce, &[l1])]),
        &orch,
        E::ReceiptMessageMismatch,
    );
    // More seconds than the lease has existed.
    let greedy = worker_receipt(&fx, &w, &[(l1, 100), (l2, 5_000)]);
    fx.refuses(
        &settle_ixs(&fx, &[(&greedy, &[l1, l2])]),
        &orch,
        E::BeyondWallTime,
    );
    // Accounts: one missing, one read-only, no signature instruction at all.
    let mut short = settle_ixs(&fx, &[(&good, &[l1, l2])]);
    short[1].accounts.pop();
    fx.refuses(&short, &orch, E::ReceiptAccountsMismatch);
    let mut readonly = settle_ixs(&fx, &[(&good, &[l1, l2])]);
    let last = readonly[1].accounts.len() - 1;
    readonly[1].accounts[last].is_writable = false;
    fx.refuses(&readonly, &orch, E::ReceiptAccountNotWritable);
    let unsigned = settle_ixs(&fx, &[(&good, &[l1, l2])]);
    fx.refuses(&[unsigned[1].clone()], &orch, E::MissingEd25519Instruction);
    // Only the orchestrator settles.
    let stranger = fx.user(0);
    let mut usurped = settle_ixs(&fx, &[(&good, &[l1, l2])]);
    usurped[1].accounts[0].pubkey = stranger.pubkey();
    fx.refuses(&usurped, &stranger, E::NotOrchestrator);
    // Nothing of all that moved anything; the honest receipt still pays, once.
    let _ = lo;
    fx.send_orch(&settle_ixs(&fx, &[(&good, &[l1, l2])]))
        .unwrap();
    fx.check_invariants();
    assert_eq!(
        fx.chain.fetch::<Order>(&o1.order).unwrap().total_paid,
        100 * PRICE
    );
}
