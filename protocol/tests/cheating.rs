//! Honest and cheating provers against the verifier: every cheat is refused with its own reason,
//! and partial cheating is caught at the rate the soundness bound promises.

use gpumesh_protocol::challenge::{DEFAULT_ALLOWANCE, PROTOCOL_VERSION, detection_probability};
use gpumesh_protocol::generator::{self, MATRIX_A, MATRIX_B};
use gpumesh_protocol::merkle::{self, MerkleTree};
use gpumesh_protocol::{
    AwaitingCommitment, AwaitingOpening, Challenge, Commitment, Digest, GpuClass, OpenRequest,
    OpenedRow, Opening, Rejection,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::time::{Duration, Instant};

const N: u32 = 64;
const K: u32 = 8;

/// A prover holding a full answer (possibly doctored) and its tree.
struct Prover {
    c: Vec<i32>,
    tree: MerkleTree,
}

impl Prover {
    fn from_product(c: Vec<i32>) -> Self {
        let n = N as usize;
        let tree = MerkleTree::from_leaves(c.chunks_exact(n).map(merkle::leaf_hash).collect());
        Prover { c, tree }
    }

    fn honest(challenge: &Challenge) -> Self {
        let n = challenge.n as usize;
        let a = generator::matrix(&challenge.seed, MATRIX_A, n);
        let b = generator::matrix(&challenge.seed, MATRIX_B, n);
        Self::from_product(gpumesh_protocol::exact::naive_product(&a, &b, n))
    }

    fn commitment(&self, challenge: &Challenge) -> Commitment {
        Commitment {
            version: PROTOCOL_VERSION,
            challenge_id: challenge.id,
            rows: challenge.n,
            root: self.tree.root(),
            timing: Default::default(),
        }
    }

    fn open(&self, request: &OpenRequest) -> Opening {
        let n = N as usize;
        Opening {
            version: PROTOCOL_VERSION,
            challenge_id: request.challenge_id,
            rows: request
                .rows
                .iter()
                .map(|&i| OpenedRow {
                    index: i,
                    values: self.c[i as usize * n..(i as usize + 1) * n].to_vec(),
                    path: self.tree.path(i as usize).unwrap(),
                })
                .collect(),
        }
    }
}

fn challenge(id: u64) -> Challenge {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&id.to_le_bytes());
    Challenge::with_seed(id, GpuClass::Cpu, seed, N, K, DEFAULT_ALLOWANCE).unwrap()
}

/// Runs a round up to the open request; the commitment arrives `after` the challenge was sent.
fn commit(
    challenge: &Challenge,
    commitment: &Commitment,
    after: Duration,
    rng: &mut StdRng,
) -> (Result<AwaitingOpening, Rejection>, Instant) {
    let t0 = Instant::now();
    let round = AwaitingCommitment::new(challenge.clone(), t0);
    (
        round.receive_commitment(commitment, t0 + after, rng),
        t0 + after,
    )
}

fn full_round(
    challenge: &Challenge,
    prover: &Prover,
    doctor: impl FnOnce(&mut Opening),
    rng: &mut StdRng,
) -> Result<gpumesh_protocol::Verified, Rejection> {
    let (awaiting, t) = commit(
        challenge,
        &prover.commitment(challenge),
        Duration::from_millis(5),
        rng,
    );
    let awaiting = awaiting?.sent(t);
    let mut opening = prover.open(awaiting.open_request());
    doctor(&mut opening);
    awaiting.receive_opening(&opening, t + Duration::from_millis(5))
}

#[test]
fn honest_prover_is_accepted() {
    let mut rng = StdRng::seed_from_u64(1);
    let c = challenge(1);
    let verified = full_round(&c, &Prover::honest(&c), |_| {}, &mut rng).unwrap();
    assert_eq!(verified.rows_checked, K as usize);
    assert_eq!(verified.commit_elapsed, Duration::from_millis(5));
}

#[test]
fn commitment_checks() {
    let mut rng = StdRng::seed_from_u64(2);
    let c = challenge(2);
    let honest = Prover::honest(&c).commitment(&c);
    let ms = Duration::from_millis(1);

    let mut wrong_version = honest.clone();
    wrong_version.version = PROTOCOL_VERSION + 1;
    assert!(matches!(
        commit(&c, &wrong_version, ms, &mut rng).0,
        Err(Rejection::UnsupportedVersion { .. })
    ));

    let mut wrong_id = honest.clone();
    wrong_id.challenge_id = 99;
    assert!(matches!(
        commit(&c, &wrong_id, ms, &mut rng).0,
        Err(Rejection::WrongChallenge {
            got: 99,
            expected: 2
        })
    ));

    let mut wrong_rows = honest.clone();
    wrong_rows.rows = N / 2;
    assert!(matches!(
        commit(&c, &wrong_rows, ms, &mut rng).0,
        Err(Rejection::WrongRowCount { .. })
    ));

    let late = c.deadline + ms;
    assert!(matches!(
        commit(&c, &honest, late, &mut rng).0,
        Err(Rejection::LateCommitment { .. })
    ));
    // Exactly on the deadline is still in time.
    assert!(commit(&c, &honest, c.deadline, &mut rng).0.is_ok());
}

#[test]
fn opening_checks() {
    let mut rng = StdRng::seed_from_u64(3);
    let c = challenge(3);
    let honest = Prover::honest(&c);
    let n = N as usize;

    let err = full_round(&c, &honest, |o| o.version = 7, &mut rng).unwrap_err();
    assert!(matches!(err, Rejection::UnsupportedVersion { got: 7, .. }));

    let err = full_round(&c, &honest, |o| o.challenge_id = 4, &mut rng).unwrap_err();
    assert!(matches!(err, Rejection::WrongChallenge { .. }));

    // A row left out, a row swapped for an unrequested one, the order changed.
    let err = full_round(&c, &honest, |o| drop(o.rows.pop()), &mut rng).unwrap_err();
    assert_eq!(err, Rejection::WrongOpenedRows);
    let err = full_round(
        &c,
        &honest,
        |o| {
            let requested: Vec<u32> = o.rows.iter().map(|r| r.index).collect();
            let other = (0..N).find(|i| !requested.contains(i)).unwrap();
            o.rows[0] = OpenedRow {
                index: other,
                values: honest.c[other as usize * n..(other as usize + 1) * n].to_vec(),
                path: honest.tree.path(other as usize).unwrap(),
            };
        },
        &mut rng,
    )
    .unwrap_err();
    assert_eq!(err, Rejection::WrongOpenedRows);
    let err = full_round(&c, &honest, |o| o.rows.swap(0, 1), &mut rng).unwrap_err();
    assert_eq!(err, Rejection::WrongOpenedRows);

    let err = full_round(
        &c,
        &honest,
        |o| {
            o.rows[0].values.pop();
        },
        &mut rng,
    )
    .unwrap_err();
    assert!(matches!(
        err,
        Rejection::WrongRowLength {
            got: 63,
            expected: 64,
            ..
        }
    ));

    // A row changed after committing: its path no longer reaches the root.
    let err = full_round(&c, &honest, |o| o.rows[2].values[5] += 1, &mut rng).unwrap_err();
    assert!(matches!(err, Rejection::NotCommitted { .. }));

    // A broken path.
    let err = full_round(
        &c,
        &honest,
        |o| o.rows[1].path[0] = Digest([0; 32]),
        &mut rng,
    )
    .unwrap_err();
    assert!(matches!(err, Rejection::NotCommitted { .. }));

    // Late opening.
    let (awaiting, t) = commit(
        &c,
        &honest.commitment(&c),
        Duration::from_millis(1),
        &mut rng,
    );
    let awaiting = awaiting.unwrap().sent(t);
    let opening = honest.open(awaiting.open_request());
    let deadline = c.open_deadline;
    assert!(matches!(
        awaiting.receive_opening(&opening, t + deadline + Duration::from_millis(1)),
        Err(Rejection::LateOpening { .. })
    ));
}

#[test]
fn root_of_another_answer_is_refused() {
    // The prover commits to the answer of another seed (e.g. a cached one), then opens
    // honestly computed rows: they are not in the tree it committed to.
    let mut rng = StdRng::seed_from_u64(4);
    let c = challenge(5);
    let stale = Prover::honest(&challenge(6));
    let honest = Prover::honest(&c);
    let (awaiting, t) = commit(
        &c,
        &stale.commitment(&c),
        Duration::from_millis(1),
        &mut rng,
    );
    let awaiting = awaiting.unwrap().sent(t);
    let opening = honest.open(awaiting.open_request());
    assert!(matches!(
        awaiting.receive_opening(&opening, t),
        Err(Rejection::NotCommitted { .. })
    ));
    // Opening the stale rows with their own (valid) paths fails on the values instead.
    let (awaiting, t) = commit(
        &c,
        &stale.commitment(&c),
        Duration::from_millis(1),
        &mut rng,
    );
    let awaiting = awaiting.unwrap().sent(t);
    let opening = stale.open(awaiting.open_request());
    assert!(matches!(
        awaiting.receive_opening(&opening, t),
        Err(Rejection::WrongRow { .. })
    ));
}

#[test]
fn skipping_the_work_is_always_caught() {
    let mut rng = StdRng::seed_from_u64(5);
    let c = challenge(7);
    let zeros = Prover::from_product(vec![0; (N * N) as usize]);
    assert!(matches!(
        full_round(&c, &zeros, |_| {}, &mut rng),
        Err(Rejection::WrongRow { .. })
    ));
}

/// A prover that skips (zeros) or fakes (adds one) a fraction f of the rows is caught at least
/// at the rate 1 − (1 − f)^k.
#[test]
fn partial_cheating_is_caught_at_the_promised_rate() {
    let c = challenge(8);
    let honest = Prover::honest(&c);
    let n = N as usize;
    for (faked, skip) in [(8usize, true), (4, false)] {
        let f = faked as f64 / N as f64;
        let mut c_bad = honest.c.clone();
        for row in 0..faked {
            let r = (row * 7 + 3) % n; // spread over the matrix
            for v in &mut c_bad[r * n..(r + 1) * n] {
                *v = if skip { 0 } else { *v + 1 };
            }
        }
        let cheat = Prover::from_product(c_bad);
        let trials = 400;
        let mut rng = StdRng::seed_from_u64(faked as u64);
        let mut caught = 0;
        for _ in 0..trials {
            match full_round(&c, &cheat, |_| {}, &mut rng) {
                Err(Rejection::WrongRow { .. }) => caught += 1,
                Err(other) => panic!("unexpected rejection {other}"),
                Ok(_) => {}
            }
        }
        let rate = f64::from(caught) / f64::from(trials);
        let bound = detection_probability(f, K);
        // 400 trials: allow four standard deviations below the bound.
        let sigma = (bound * (1.0 - bound) / f64::from(trials)).sqrt();
        assert!(
            rate >= bound - 4.0 * sigma,
            "f={f}: caught {rate}, bound {bound}"
        );
        assert!(
            rate < 1.0,
            "f={f}: a partial cheat should sometimes slip through at k={K}"
        );
    }
}
