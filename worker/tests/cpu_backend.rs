//! The CPU backend against a naive reference prover and the real verifier, and GPU detection on a
//! machine without one.

use gpumesh_protocol::challenge::{DEFAULT_ALLOWANCE, PROTOCOL_VERSION};
use gpumesh_protocol::exact::naive_product;
use gpumesh_protocol::generator::{MATRIX_A, MATRIX_B, matrix};
use gpumesh_protocol::merkle::{MerkleTree, leaf_hash};
use gpumesh_protocol::{AwaitingCommitment, Challenge, GpuClass, OpenRequest, Rejection};
use gpumesh_worker::{BackendError, ComputeBackend, CpuBackend, DeviceKind};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::time::{Duration, Instant};

fn challenge(id: u64, n: u32, k: u32) -> Challenge {
    let mut rng = StdRng::seed_from_u64(id);
    Challenge::new(id, GpuClass::Cpu, n, k, DEFAULT_ALLOWANCE, &mut rng).unwrap()
}

#[test]
fn commitment_equals_the_naive_reference() {
    let mut cpu = CpuBackend::new();
    for n in [64u32, 128, 256] {
        let c = challenge(u64::from(n), n, 16);
        let nn = n as usize;
        let reference = naive_product(
            &matrix(&c.seed, MATRIX_A, nn),
            &matrix(&c.seed, MATRIX_B, nn),
            nn,
        );
        let root =
            MerkleTree::from_leaves(reference.chunks_exact(nn).map(leaf_hash).collect()).root();
        let commitment = cpu.commit(&c).unwrap();
        assert_eq!(commitment.root, root, "n = {n}");
        assert_eq!(commitment.rows, n);
        assert_eq!(commitment.challenge_id, c.id);
    }
}

#[test]
fn verifier_accepts_the_cpu_backend_and_rejects_a_tampered_row() {
    let mut cpu = CpuBackend::new();
    let mut rng = StdRng::seed_from_u64(7);
    let c = challenge(42, 256, 32);
    let t0 = Instant::now();
    let round = AwaitingCommitment::new(c.clone(), t0);
    let commitment = cpu.commit(&c).unwrap();
    let t1 = t0 + Duration::from_millis(20);
    let awaiting = round
        .receive_commitment(&commitment, t1, &mut rng)
        .unwrap()
        .sent(t1);
    let opening = cpu.open(awaiting.open_request()).unwrap();
    let verified = awaiting
        .clone()
        .receive_opening(&opening, t1 + Duration::from_millis(5))
        .unwrap();
    assert_eq!(verified.rows_checked, 32);

    let mut tampered = opening.clone();
    tampered.rows[3].values[17] ^= 1;
    assert!(matches!(
        awaiting.receive_opening(&tampered, t1),
        Err(Rejection::NotCommitted { .. })
    ));
}

#[test]
fn open_requests_are_checked() {
    let mut cpu = CpuBackend::new();
    let request = OpenRequest {
        version: PROTOCOL_VERSION,
        challenge_id: 5,
        rows: vec![1],
    };
    assert!(matches!(
        cpu.open(&request),
        Err(BackendError::NotCommitted {
            committed: None,
            ..
        })
    ));
    let c = challenge(5, 64, 4);
    cpu.commit(&c).unwrap();
    assert!(cpu.open(&request).is_ok());
    let out_of_range = OpenRequest {
        rows: vec![64],
        ..request.clone()
    };
    assert!(matches!(
        cpu.open(&out_of_range),
        Err(BackendError::RowOutOfRange { row: 64, n: 64 })
    ));
    let other = OpenRequest {
        challenge_id: 6,
        ..request.clone()
    };
    assert!(matches!(
        cpu.open(&other),
        Err(BackendError::NotCommitted {
            committed: Some(5),
            ..
        })
    ));
    let old = OpenRequest {
        version: 0,
        ..request
    };
    assert!(matches!(
        cpu.open(&old),
        Err(BackendError::UnsupportedVersion { got: 0 })
    ));
    let mut bad = c.clone();
    bad.version = 9;
    assert!(matches!(
        cpu.commit(&bad),
        Err(BackendError::UnsupportedVersion { got: 9 })
    ));
}

#[test]
fn cpu_backend_describes_and_measures_itself() {
    let mut cpu = CpuBackend::new();
    assert_eq!(cpu.describe().kind, DeviceKind::Cpu);
    assert_eq!(cpu.describe().class, Some(GpuClass::Cpu));
    let m = cpu.measure().unwrap();
    assert!(m.memory_bandwidth_gbs > 0.0 && m.int8_tops > 0.0);
    assert!(matches!(cpu.telemetry(), Err(BackendError::NoTelemetry(_))));
}

/// On this machine (no NVIDIA driver) detection answers plainly instead of panicking, and the
/// daemon falls back to the CPU.
#[test]
fn detection_without_a_gpu_says_so() {
    let err = gpumesh_worker::cuda::detect().unwrap_err();
    if cfg!(feature = "cuda") {
        // Runs the real detection path; a machine with a GPU would list it instead.
        if std::path::Path::new("/proc/driver/nvidia").exists() {
            return;
        }
        assert!(matches!(err, BackendError::NoDriver), "{err}");
        assert!(err.to_string().contains("no NVIDIA driver found"));
    } else {
        assert!(matches!(err, BackendError::CudaNotCompiled));
        assert_eq!(
            err.to_string(),
            "built without CUDA support; rebuild with --features cuda"
        );
    }
    let (backend, why) = gpumesh_worker::best_backend();
    assert_eq!(backend.describe().kind, DeviceKind::Cpu);
    assert!(why.is_some());
}
