//! Speed of the proof-of-compute pieces on the CPU: the blocked GEMM against the naive triple
//! loop, a whole challenge (commit + open) by size, and the verifier's cost per challenge.
//! Sample counts are small so `cargo bench -p gpumesh-worker` finishes in a few minutes.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gpumesh_protocol::challenge::{DEFAULT_ALLOWANCE, PROTOCOL_VERSION};
use gpumesh_protocol::exact::{naive_product, rows_of_product};
use gpumesh_protocol::{Challenge, GpuClass, OpenRequest};
use gpumesh_worker::cpu::generate;
use gpumesh_worker::gemm::gemm_i8;
use gpumesh_worker::{ComputeBackend, CpuBackend};
use std::hint::black_box;
use std::time::Duration;

fn gemm(c: &mut Criterion) {
    let mut group = c.benchmark_group("int8_gemm");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for n in [256usize, 512] {
        let (a, b) = generate(&[1; 32], n);
        group.throughput(Throughput::Elements(2 * (n as u64).pow(3)));
        group.bench_with_input(BenchmarkId::new("blocked", n), &n, |bench, &n| {
            bench.iter(|| black_box(gemm_i8(&a, &b, n)))
        });
        group.bench_with_input(BenchmarkId::new("naive", n), &n, |bench, &n| {
            bench.iter(|| black_box(naive_product(&a, &b, n)))
        });
    }
    group.finish();
}

fn challenge(c: &mut Criterion) {
    let mut group = c.benchmark_group("cpu_challenge_commit_open");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    let mut cpu = CpuBackend::new();
    for n in [128u32, 256, 512] {
        let ch = Challenge::with_seed(1, GpuClass::Cpu, [n as u8; 32], n, 32, DEFAULT_ALLOWANCE)
            .expect("valid size");
        let request = OpenRequest {
            version: PROTOCOL_VERSION,
            challenge_id: 1,
            rows: (0..32).map(|i| i * (n / 32)).collect(),
        };
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |bench, _| {
            bench.iter(|| {
                black_box(cpu.commit(&ch).expect("commit"));
                black_box(cpu.open(&request).expect("open"))
            })
        });
    }
    group.finish();
}

fn verifier(c: &mut Criterion) {
    let mut group = c.benchmark_group("verifier_rows_k32");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));
    for n in [4096usize, 16384] {
        let rows: Vec<u32> = (0..32).map(|i| (i * 997 % n) as u32).collect();
        // Elements = the prover's operation count, so criterion's "elem/s" divided by the
        // verifier's own rate gives the prover/verifier work ratio (n / k).
        group.throughput(Throughput::Elements(2 * (n as u64).pow(3)));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |bench, &n| {
            bench.iter(|| black_box(rows_of_product(&[9; 32], n, &rows)))
        });
    }
    group.finish();
}

criterion_group!(benches, gemm, challenge, verifier);
criterion_main!(benches);
