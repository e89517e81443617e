//! The CPU backend: always present. It answers challenges with the multithreaded GEMM in
//! `gemm`, hashes rows in parallel, and is what tests, CI and GPU-less local networks use.

use crate::backend::{
    BackendError, ComputeBackend, DeviceInfo, DeviceKind, Measurement, Telemetry, check_challenge,
    check_open_request,
};
use crate::gemm::gemm_i8;
use gpumesh_protocol::challenge::{PROTOCOL_VERSION, ProverTiming};
use gpumesh_protocol::generator::{self, MATRIX_A, MATRIX_B};
use gpumesh_protocol::merkle::{self, MerkleTree};
use gpumesh_protocol::{Challenge, Commitment, GpuClass, OpenRequest, OpenedRow, Opening};
use rayon::prelude::*;
use std::time::Instant;

/// The answer to the last committed challenge, kept until the rows are opened.
struct Answer {
    challenge_id: u64,
    n: usize,
    c: Vec<i32>,
    tree: MerkleTree,
}

pub struct CpuBackend {
    info: DeviceInfo,
    answer: Option<Answer>,
}

impl Default for CpuBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuBackend {
    pub fn new() -> Self {
        CpuBackend {
            info: DeviceInfo {
                kind: DeviceKind::Cpu,
                name: cpu_name(),
                uuid: None,
                pci_vendor_id: None,
                pci_device_id: None,
                pci_bus_id: None,
                vram_bytes: 0,
                multiprocessors: rayon::current_num_threads() as u32,
                compute_capability: None,
                class: Some(GpuClass::Cpu),
            },
            answer: None,
        }
    }
}

fn cpu_name() -> String {
    gpumesh_protocol::kernels::cpu_model().unwrap_or_else(|| "CPU".to_string())
}

/// Generates A and B of a challenge in parallel, row by row.
pub fn generate(seed: &[u8; 32], n: usize) -> (Vec<i8>, Vec<i8>) {
    let key = generator::key_from_seed(seed);
    let make = |matrix| {
        let mut m = vec![0i8; n * n];
        m.par_chunks_mut(n)
            .enumerate()
            .for_each(|(row, dst)| generator::fill_row(&key, matrix, row as u32, 0, dst));
        m
    };
    (make(MATRIX_A), make(MATRIX_B))
}

impl ComputeBackend for CpuBackend {
    fn describe(&self) -> &DeviceInfo {
        &self.info
    }

    fn measure(&mut self) -> Result<Measurement, BackendError> {
        // Bandwidth: copy 64 MiB eight times, count bytes read + written by the fastest copy
        // (the machine's, not the scheduler's: on a busy host a single timed run measures the
        // other processes' time slices too).
        let len = 64 << 20;
        let src = vec![1u8; len];
        let mut dst = vec![0u8; len];
        dst.copy_from_slice(&src);
        let mut best = f64::INFINITY;
        for _ in 0..8 {
            let t = Instant::now();
            dst.copy_from_slice(std::hint::black_box(&src));
            std::hint::black_box(&dst);
            best = best.min(t.elapsed().as_secs_f64());
        }
        let bandwidth = (2 * len) as f64 / best.max(1e-9) / 1e9;
        // Throughput: one product at n = 512.
        let n = 512;
        let (a, b) = generate(&[0x5A; 32], n);
        let t = Instant::now();
        std::hint::black_box(gemm_i8(&a, &b, n));
        let tops = 2.0 * (n as f64).powi(3) / t.elapsed().as_secs_f64() / 1e12;
        Ok(Measurement {
            memory_bandwidth_gbs: bandwidth,
            int8_tops: tops,
            gemm_n: n as u32,
        })
    }

    fn telemetry(&self) -> Result<Telemetry, BackendError> {
        Err(BackendError::NoTelemetry("CPU"))
    }

    fn commit(&mut self, challenge: &Challenge) -> Result<Commitment, BackendError> {
        check_challenge(challenge)?;
        self.answer = None;
        let n = challenge.n as usize;
        let start = Instant::now();
        let (a, b) = generate(&challenge.seed, n);
        let generated = Instant::now();
        let c = gemm_i8(&a, &b, n);
        let multiplied = Instant::now();
        let leaves = c.par_chunks(n).map(merkle::leaf_hash).collect();
        let tree = MerkleTree::from_leaves(leaves);
        let hashed = Instant::now();
        let commitment = Commitment {
            version: PROTOCOL_VERSION,
            challenge_id: challenge.id,
            rows: challenge.n,
            root: tree.root(),
            timing: ProverTiming {
                generate: generated - start,
                multiply: multiplied - generated,
                hash: hashed - multiplied,
                total: hashed - start,
            },
        };
        self.answer = Some(Answer {
            challenge_id: challenge.id,
            n,
            c,
            tree,
        });
        Ok(commitment)
    }

    fn open(&mut self, request: &OpenRequest) -> Result<Opening, BackendError> {
        let committed = self.answer.as_ref().map(|a| (a.challenge_id, a.n as u32));
        check_open_request(request, committed)?;
        let Some(answer) = self.answer.as_ref() else {
            return Err(BackendError::NotCommitted {
                requested: request.challenge_id,
                committed: None,
            });
        };
        let n = answer.n;
        let mut rows = Vec::with_capacity(request.rows.len());
        for &index in &request.rows {
            let i = index as usize;
            let path = answer.tree.path(i).ok_or(BackendError::RowOutOfRange {
                row: index,
                n: n as u32,
            })?;
            rows.push(OpenedRow {
                index,
                values: answer.c[i * n..(i + 1) * n].to_vec(),
                path,
            });
        }
        Ok(Opening {
            version: PROTOCOL_VERSION,
            challenge_id: request.challenge_id,
            rows,
        })
    }
}
