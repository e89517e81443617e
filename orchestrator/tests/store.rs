//! The store's contract, run on both backends it supports: SQLite (a file) and PostgreSQL (a
//! fresh database on the server `scripts/postgres.sh` starts). Receipts are kept once, the
//! newest unsettled one per lease instance is what settlement sees, specs, jobs and log tails
//! read back as written, checkpoints come back newest first and a skipped one stays skipped, and
//! a store opened again holds all of it.

mod postgres;

use ed25519_dalek::SigningKey;
use gpumesh_orchestrator::service::store::{JobRecord, LOG_TAIL_CHUNKS, Store};
use gpumesh_protocol::SignedReceipt;
use gpumesh_protocol::keys::Key;
use gpumesh_protocol::wire::{CheckpointRef, LeaseId};

fn receipt(node: &SigningKey, lease: &LeaseId, served: u64) -> SignedReceipt {
    SignedReceipt::sign(
        node,
        Key([9; 32]),
        lease.lease,
        lease.nonce,
        served,
        [served as u8; 32],
    )
}

async fn contract(url: &str) {
    let store = Store::open(url).await.unwrap();
    let node = SigningKey::from_bytes(&[7; 32]);
    let a = LeaseId {
        lease: Key([1; 32]),
        nonce: 1,
    };
    // The same address, a later lease instance: kept apart.
    let a2 = LeaseId {
        lease: Key([1; 32]),
        nonce: 2,
    };
    let b = LeaseId {
        lease: Key([2; 32]),
        nonce: 1,
    };

    assert!(store.unsettled().await.unwrap().is_empty());
    for (lease, served) in [(&a, 10), (&a, 20), (&a, 20), (&a2, 5), (&b, 30), (&a, 15)] {
        store
            .put_receipt(&receipt(&node, lease, served))
            .await
            .unwrap();
    }
    let mut unsettled: Vec<(u64, u64)> = store
        .unsettled()
        .await
        .unwrap()
        .iter()
        .map(|r| (r.lease_nonce, r.served_seconds))
        .collect();
    unsettled.sort();
    assert_eq!(unsettled, vec![(1, 20), (1, 30), (2, 5)]);
    assert_eq!(
        store.latest_receipt(&a).await.unwrap(),
        Some(receipt(&node, &a, 20)),
        "a receipt reads back exactly, signature included"
    );

    // Settled up to 20: a's instance 1 leaves the backlog; a later receipt brings it back.
    store.mark_settled(&a, 20).await.unwrap();
    let left: Vec<u64> = store
        .unsettled()
        .await
        .unwrap()
        .iter()
        .map(|r| r.served_seconds)
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(!left.contains(&20));
    assert_eq!(
        store
            .latest_receipt(&a)
            .await
            .unwrap()
            .map(|r| r.served_seconds),
        Some(20),
        "settled receipts stay for the record"
    );
    store.put_receipt(&receipt(&node, &a, 25)).await.unwrap();
    assert!(
        store
            .unsettled()
            .await
            .unwrap()
            .iter()
            .any(|r| r.lease_nonce == 1 && r.lease == a.lease && r.served_seconds == 25)
    );

    // Settlements keep their transaction; a lease's receipts list oldest first with their state.
    store
        .record_settlement(&b, 30, "5sig", 1_700_000_000_000)
        .await
        .unwrap();
    store
        .record_settlement(&b, 30, "5sig", 1_700_000_000_001)
        .await
        .unwrap();
    let settlements = store.settlements(&b).await.unwrap();
    assert_eq!(settlements.len(), 1, "recorded once");
    assert_eq!(settlements[0].signature, "5sig");
    assert_eq!(settlements[0].served_seconds, 30);
    assert!(store.settlements(&a2).await.unwrap().is_empty());
    let listed: Vec<(u64, bool)> = store
        .receipts(&a, 10)
        .await
        .unwrap()
        .iter()
        .map(|(r, settled)| (r.served_seconds, *settled))
        .collect();
    assert_eq!(
        listed,
        vec![(10, true), (15, true), (20, true), (25, false)]
    );
    assert_eq!(store.receipts(&a, 2).await.unwrap().len(), 2, "the newest");

    // Specs: the newest upload wins.
    assert_eq!(store.spec("order-1").await.unwrap(), None);
    store
        .put_spec("order-1", "buyer-1", "image = \"a\"\n", &[1; 32])
        .await
        .unwrap();
    store
        .put_spec("order-1", "buyer-2", "image = \"b\"\n", &[2; 32])
        .await
        .unwrap();
    assert_eq!(
        store.spec("order-1").await.unwrap().as_deref(),
        Some("image = \"b\"\n")
    );
    assert_eq!(
        store.buyer_of("order-1").await.unwrap().as_deref(),
        Some("buyer-2")
    );
    assert_eq!(store.buyer_of("order-2").await.unwrap(), None);

    // Jobs: one row per lease instance, updated in place, newest first.
    let mut job = JobRecord {
        lease: a,
        order: "order-1".into(),
        worker: "worker-1".into(),
        status: "starting".into(),
        exit_code: None,
        result_hash: None,
        updated_ms: 1_000,
    };
    store.put_job(&job).await.unwrap();
    job.status = "exited".into();
    job.exit_code = Some(-1);
    job.result_hash = Some("ab".repeat(32));
    job.updated_ms = 2_000;
    store.put_job(&job).await.unwrap();
    let later = JobRecord {
        lease: a2,
        status: "running".into(),
        exit_code: None,
        result_hash: None,
        updated_ms: 3_000,
        ..job.clone()
    };
    store.put_job(&later).await.unwrap();
    assert_eq!(
        store.jobs_of("order-1").await.unwrap(),
        vec![later.clone(), job.clone()]
    );
    assert!(store.jobs_of("order-2").await.unwrap().is_empty());

    // Logs: a resent chunk is kept once; only the newest LOG_TAIL_CHUNKS stay.
    let total = LOG_TAIL_CHUNKS as u64 + 10;
    for seq in 1..=total {
        let stream = if seq % 2 == 0 { "stderr" } else { "stdout" };
        store
            .put_log(&a, seq, stream, &format!("line {seq} ü\n"))
            .await
            .unwrap();
    }
    store.put_log(&a, total, "stdout", "again\n").await.unwrap();
    let logs = store.logs(&a).await.unwrap();
    assert_eq!(logs.len() as i64, LOG_TAIL_CHUNKS);
    assert_eq!(logs.first().map(|c| c.seq), Some(11));
    assert_eq!(
        logs.last().map(|c| c.data.as_str()),
        Some(&*format!("line {total} ü\n"))
    );
    assert!(store.logs(&b).await.unwrap().is_empty());

    // Checkpoints: newest first per order, reported twice is one row, a skipped one keeps its
    // reason and is no longer restorable.
    let ckpt = |n: u8, unix_ms: u64| CheckpointRef {
        hash: [n; 32],
        size: 100 * u64::from(n),
        files: 2,
        unix_ms,
        lease: a,
    };
    for c in [
        ckpt(1, 1_000),
        ckpt(2, 2_000),
        ckpt(3, 3_000),
        ckpt(2, 2_000),
    ] {
        store
            .put_checkpoint("order-1", "worker-1", &c)
            .await
            .unwrap();
    }
    store
        .put_checkpoint("order-2", "worker-2", &ckpt(9, 500))
        .await
        .unwrap();
    let of = store.checkpoints_of("order-1").await.unwrap();
    assert_eq!(
        of.iter().map(|c| c.checkpoint.hash[0]).collect::<Vec<_>>(),
        vec![3, 2, 1]
    );
    assert_eq!(of[0].checkpoint, ckpt(3, 3_000));
    assert_eq!(
        (of[0].worker.as_str(), of[0].status.as_str()),
        ("worker-1", "stored")
    );
    store
        .skip_checkpoint("order-1", &[3; 32], "fails its hash check")
        .await
        .unwrap();
    // Reported again after it was skipped: it stays skipped.
    store
        .put_checkpoint("order-1", "worker-1", &ckpt(3, 3_000))
        .await
        .unwrap();
    let of = store.checkpoints_of("order-1").await.unwrap();
    assert_eq!(of[0].status, "skipped");
    assert_eq!(of[0].reason.as_deref(), Some("fails its hash check"));
    let restorable: Vec<(String, u8)> = store
        .restorable_checkpoints()
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.order, c.checkpoint.hash[0]))
        .collect();
    assert_eq!(
        restorable,
        vec![
            ("order-1".to_string(), 2),
            ("order-1".to_string(), 1),
            ("order-2".to_string(), 9)
        ]
    );

    // Opened again (a restarted service): everything is there, and migrating twice is a no-op.
    drop(store);
    let store = Store::open(url).await.unwrap();
    assert_eq!(store.unsettled().await.unwrap().len(), 2);
    assert_eq!(store.settlements(&b).await.unwrap().len(), 1);
    assert_eq!(store.jobs_of("order-1").await.unwrap().len(), 2);
    assert_eq!(store.logs(&a).await.unwrap().len() as i64, LOG_TAIL_CHUNKS);
    assert!(store.spec("order-1").await.unwrap().is_some());
    assert_eq!(store.checkpoints_of("order-1").await.unwrap().len(), 3);
}

#[tokio::test]
async fn the_store_keeps_its_contract_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    contract(&format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("store.db").display()
    ))
    .await;
}

#[tokio::test]
async fn the_store_keeps_its_contract_on_postgres() {
    let db = postgres::Database::create().await;
    contract(&db.url).await;
}

#[tokio::test]
async fn an_unreachable_store_says_what_to_check() {
    let e = Store::open("postgres://gpumesh:gpumesh@127.0.0.1:1/nothing")
        .await
        .err()
        .expect("nothing listens on port 1");
    let text = e.to_string();
    assert!(
        text.contains("127.0.0.1:1") && text.contains("store"),
        "{text}"
    );
    let dir = tempfile::tempdir().unwrap();
    let e = Store::open(&format!(
        "sqlite://{}?mode=ro",
        dir.path().join("missing.db").display()
    ))
    .await
    .err()
    .expect("a read-only open of a missing file fails");
    assert!(e.to_string().contains("sqlite://"), "{e}");
}
