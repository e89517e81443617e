//! The proof-of-compute challenge and the messages of one round:
//!
//! 1. orchestrator → worker: [`Challenge`] (fresh 32-byte seed, size n, deadline from the
//!    claimed class);
//! 2. worker → orchestrator: [`Commitment`] — the Merkle root over the hashes of the rows of
//!    C = A·B (int8 in, exact int32 out), before the deadline;
//! 3. orchestrator → worker: [`OpenRequest`] — k row indices from the orchestrator's own
//!    randomness, drawn only after the root arrived;
//! 4. worker → orchestrator: [`Opening`] — those rows with their Merkle paths.
//!
//! Soundness: a prover that skips or fakes a fraction f of the rows commits to a root in which
//! those leaves are wrong; each of the k distinct opened rows lands on one of them with
//! probability at least f, so it is caught with probability at least
//! 1 − (1 − f)^k ([`detection_probability`]); drawing without replacement only raises it.
//! With k = 32: f = 10 % is caught 96.6 % of the time, f = 25 % 99.99 %, and a prover skipping
//! the product (f = 1) always. Repeated challenges compound this.
//!
//! Messages carry a version the verifier checks, and nothing it must trust: the verifier keeps
//! its own copy of the challenge and times answers on its own clock (see `verify`).

use crate::gpu::GpuClass;
use crate::merkle::Digest;
use rand::CryptoRng;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Version of the challenge messages; bumped on any change to messages, generator or hashing.
pub const PROTOCOL_VERSION: u16 = 1;
/// Smallest and largest matrix size; n must be a multiple of [`N_MULTIPLE`] (cuBLASLt's int8
/// kernels want 16-aligned dimensions, the GPU generator writes 64-column tiles).
pub const MIN_N: u32 = 64;
pub const MAX_N: u32 = 65536;
pub const N_MULTIPLE: u32 = 64;
/// Most rows one challenge may open (bounds the opening message to ~64 MiB at n = 65536).
pub const MAX_K: u32 = 256;

/// Deadline slack over the datasheet time: a card must sustain at least 1/SLACK of its class's
/// dense int8 peak (cuBLASLt reaches well over half of it at n ≥ 8192 on Hopper), so an honest
/// card passes with margin and a card of less than 40 % of the class does not.
pub const DEADLINE_SLACK: f64 = 2.5;
/// Default fixed allowance for the network round trip, kernel launch and copies. The
/// orchestrator should pass the worker's measured round trip plus a margin instead; see
/// [`deadline_for`] on what the allowance does to class discrimination.
pub const DEFAULT_ALLOWANCE: Duration = Duration::from_millis(100);
/// The opening has a loose deadline: the root already binds the answer, this only stops a
/// worker from stalling. One second plus the rows at 10 MB/s, plus the allowance.
pub const OPEN_BASE: Duration = Duration::from_secs(1);

/// One challenge, as issued. The verifier keeps its own copy; the worker receives a copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    pub version: u16,
    /// Chosen by the orchestrator, unique per worker; answers name it.
    pub id: u64,
    /// The class the worker claims; the deadline derives from it.
    pub class: GpuClass,
    /// Fresh randomness for the matrices; unknown to the worker before the challenge.
    pub seed: [u8; 32],
    /// Matrix size: A, B are n × n int8, C is n × n int32.
    pub n: u32,
    /// Rows the verifier will open.
    pub k: u32,
    /// Time from sending the challenge to receiving the commitment.
    pub deadline: Duration,
    /// Time from sending the open request to receiving the opening.
    pub open_deadline: Duration,
}

/// Why a challenge could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    #[error(
        "matrix size {0} is not allowed: use a multiple of {N_MULTIPLE} between {MIN_N} and {MAX_N}"
    )]
    BadSize(u32),
    #[error("cannot open {k} rows of an {n}-row answer: use 1 ≤ k ≤ min(n, {MAX_K})")]
    BadRowCount { k: u32, n: u32 },
}

/// Checks a size the way both sides must agree on it.
pub fn check_size(n: u32) -> Result<(), ChallengeError> {
    if !(MIN_N..=MAX_N).contains(&n) || !n.is_multiple_of(N_MULTIPLE) {
        return Err(ChallengeError::BadSize(n));
    }
    Ok(())
}

/// Commitment deadline for `class` at size `n`:
/// `DEADLINE_SLACK × (2n³ / int8 peak + 10n² bytes / memory bandwidth) + allowance`.
/// The memory term covers writing A and B (2n² bytes), writing C (4n²) and reading it back to
/// hash (4n²). Class discrimination: a slower card Y passes a claim of class X when its real time
/// fits the deadline, so separating X from Y needs 2n³ · (1/Y − SLACK/X) well above the
/// allowance; with a 100 ms allowance that takes n ≈ 32768 between H100 and A100, so the
/// orchestrator should use the measured round trip as allowance and large n for top classes.
pub fn deadline_for(class: GpuClass, n: u32, allowance: Duration) -> Duration {
    let spec = class.spec();
    let n = f64::from(n);
    let compute = 2.0 * n * n * n / (spec.int8_tops * 1e12);
    let memory = 10.0 * n * n / (spec.memory_bandwidth_gbs * 1e9);
    Duration::from_secs_f64(DEADLINE_SLACK * (compute + memory)) + allowance
}

/// The matrix size that keeps a card of `class` busy for about `target` at its datasheet int8
/// rate: `n = ∛(target · peak / 2)`, a multiple of [`N_MULTIPLE`] within [`MIN_N`]..=[`MAX_N`],
/// and small enough that A, B (int8) and C (int32), 6n² bytes, take at most half the class's
/// memory. Longer targets separate neighbouring classes better (see [`deadline_for`]).
pub fn size_for(class: GpuClass, target: Duration) -> u32 {
    let spec = class.spec();
    let by_time = (target.as_secs_f64() * spec.int8_tops * 1e12 / 2.0).cbrt();
    let by_memory = (spec.vram_gb * 1e9 / 2.0 / 6.0).sqrt();
    let n = by_time.min(by_memory).max(0.0) as u64;
    let n = (n / u64::from(N_MULTIPLE)) * u64::from(N_MULTIPLE);
    n.clamp(u64::from(MIN_N), u64::from(MAX_N)) as u32
}

/// Opening deadline for k rows of n values.
pub fn open_deadline_for(n: u32, k: u32, allowance: Duration) -> Duration {
    let bytes = f64::from(n) * f64::from(k) * 4.0;
    OPEN_BASE + Duration::from_secs_f64(bytes / 10e6) + allowance
}

/// Lower bound on the chance that opening k random rows catches a prover that faked a
/// fraction `cheated_fraction` of the rows: 1 − (1 − f)^k.
pub fn detection_probability(cheated_fraction: f64, k: u32) -> f64 {
    let f = cheated_fraction.clamp(0.0, 1.0);
    1.0 - (1.0 - f).powi(k.min(i32::MAX as u32) as i32)
}

impl Challenge {
    /// A challenge with a fresh seed from `rng` (use a CSPRNG such as `rand::rng()`).
    pub fn new<R: CryptoRng + ?Sized>(
        id: u64,
        class: GpuClass,
        n: u32,
        k: u32,
        allowance: Duration,
        rng: &mut R,
    ) -> Result<Self, ChallengeError> {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        Self::with_seed(id, class, seed, n, k, allowance)
    }

    /// A challenge with a given seed (tests, replays of recorded challenges).
    pub fn with_seed(
        id: u64,
        class: GpuClass,
        seed: [u8; 32],
        n: u32,
        k: u32,
        allowance: Duration,
    ) -> Result<Self, ChallengeError> {
        check_size(n)?;
        if k == 0 || k > n || k > MAX_K {
            return Err(ChallengeError::BadRowCount { k, n });
        }
        Ok(Challenge {
            version: PROTOCOL_VERSION,
            id,
            class,
            seed,
            n,
            k,
            deadline: deadline_for(class, n, allowance),
            open_deadline: open_deadline_for(n, k, allowance),
        })
    }

    /// Integer operations the prover performs (one multiply-add = 2).
    pub fn prover_ops(&self) -> f64 {
        2.0 * f64::from(self.n).powi(3)
    }

    /// Integer operations the verifier performs for the opened rows.
    pub fn verifier_ops(&self) -> f64 {
        2.0 * f64::from(self.k) * f64::from(self.n).powi(2)
    }
}

/// Where the prover's time went, as the worker reports it. Informational only: the verifier
/// judges the deadline on its own clock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProverTiming {
    pub generate: Duration,
    pub multiply: Duration,
    pub hash: Duration,
    pub total: Duration,
}

/// Answer 1: the root over the row hashes of C.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commitment {
    pub version: u16,
    pub challenge_id: u64,
    /// Rows the tree covers; must equal the challenge's n.
    pub rows: u32,
    pub root: Digest,
    pub timing: ProverTiming,
}

/// The rows the verifier wants to see, drawn after the commitment arrived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenRequest {
    pub version: u16,
    pub challenge_id: u64,
    pub rows: Vec<u32>,
}

/// One opened row of C with the sibling hashes from its leaf to the root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenedRow {
    pub index: u32,
    pub values: Vec<i32>,
    pub path: Vec<Digest>,
}

/// Answer 2: the requested rows, in the requested order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Opening {
    pub version: u16,
    pub challenge_id: u64,
    pub rows: Vec<OpenedRow>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn sizes_fit_the_class_time_and_memory() {
        let quarter = Duration::from_millis(250);
        for class in GpuClass::ALL {
            let n = size_for(class, quarter);
            assert!(check_size(n).is_ok(), "{class}: {n}");
            let bytes = 6.0 * f64::from(n) * f64::from(n);
            assert!(bytes <= class.spec().vram_gb * 1e9 / 2.0, "{class}: {n}");
        }
        // An H100 gets a far larger problem than a CPU for the same time.
        assert!(size_for(GpuClass::H100, quarter) > 16 * size_for(GpuClass::Cpu, quarter));
        // Time-bound: the compute at the datasheet rate stays within the target.
        let n = f64::from(size_for(GpuClass::Rtx3070, quarter));
        assert!(2.0 * n * n * n / (GpuClass::Rtx3070.spec().int8_tops * 1e12) <= 0.25);
        assert_eq!(size_for(GpuClass::H100, Duration::ZERO), MIN_N);
        assert_eq!(size_for(GpuClass::H200, Duration::from_secs(3600)), MAX_N);
    }

    #[test]
    fn sizes_and_row_counts_are_checked() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let ok = Challenge::new(1, GpuClass::Cpu, 128, 8, DEFAULT_ALLOWANCE, &mut rng).unwrap();
        assert_eq!(ok.version, PROTOCOL_VERSION);
        for bad in [0, 32, 100, MAX_N + 64] {
            assert_eq!(
                Challenge::new(1, GpuClass::Cpu, bad, 8, DEFAULT_ALLOWANCE, &mut rng),
                Err(ChallengeError::BadSize(bad))
            );
        }
        assert!(Challenge::new(1, GpuClass::Cpu, 64, 0, DEFAULT_ALLOWANCE, &mut rng).is_err());
        assert!(Challenge::new(1, GpuClass::Cpu, 64, 65, DEFAULT_ALLOWANCE, &mut rng).is_err());
        let other = Challenge::new(2, GpuClass::Cpu, 128, 8, DEFAULT_ALLOWANCE, &mut rng).unwrap();
        assert_ne!(ok.seed, other.seed);
    }

    #[test]
    fn deadlines_follow_the_class() {
        let a = Duration::ZERO;
        let h100 = deadline_for(GpuClass::H100, 16384, a);
        let a100 = deadline_for(GpuClass::A100_80gb, 16384, a);
        let t4 = deadline_for(GpuClass::T4, 16384, a);
        assert!(h100 < a100 && a100 < t4);
        // 2.5 × (8.8e12 / 1979e12 + 2.68e9 / 3.35e12) ≈ 13.1 ms
        assert!((h100.as_secs_f64() - 0.0131).abs() < 0.0005, "{h100:?}");
        assert_eq!(
            deadline_for(GpuClass::H100, 16384, DEFAULT_ALLOWANCE),
            h100 + DEFAULT_ALLOWANCE
        );
    }

    #[test]
    fn detection_bound() {
        assert!((detection_probability(0.1, 32) - 0.9655).abs() < 1e-3);
        assert_eq!(detection_probability(1.0, 1), 1.0);
        assert_eq!(detection_probability(0.0, 32), 0.0);
    }

    #[test]
    fn messages_round_trip_through_json() {
        let c =
            Challenge::with_seed(9, GpuClass::H200, [5; 32], 4096, 32, DEFAULT_ALLOWANCE).unwrap();
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Challenge>(&json).unwrap(), c);
    }
}
