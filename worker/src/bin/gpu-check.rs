//! One-shot check of the CUDA backend on an NVIDIA machine (see scripts/gpu-check.sh):
//! the CUDA generator matches the test vectors, GPU answers equal CPU answers for the same seeds,
//! the verifier accepts them and refuses a tampered row, then a timing table by n.

use gpumesh_protocol::challenge::{DEFAULT_ALLOWANCE, deadline_for};
use gpumesh_protocol::generator::TEST_VECTORS;
use gpumesh_protocol::{AwaitingCommitment, Challenge, GpuClass, Rejection};
use gpumesh_worker::cuda::{CudaBackend, detect};
use gpumesh_worker::{ComputeBackend, CpuBackend, RegistrationRule};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    match run() {
        Ok(()) => {
            println!("\nGPU CHECK PASSED");
            ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("\nGPU CHECK FAILED: {why}");
            ExitCode::FAILURE
        }
    }
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn run() -> Result<(), String> {
    let devices = detect().map_err(|e| e.to_string())?;
    for d in &devices {
        println!("device: {d:?}");
    }
    let mut gpu = CudaBackend::new(0).map_err(|e| e.to_string())?;
    let class = gpu.describe().class.unwrap_or(GpuClass::H200);
    println!("class: {class} (peak int8 {} TOPS)", class.spec().int8_tops);
    match gpu.telemetry() {
        Ok(t) => println!("telemetry: {t:?}"),
        Err(e) => println!("telemetry unavailable: {e}"),
    }

    let vectors = gpu.generator_vectors().map_err(|e| e.to_string())?;
    if vectors != TEST_VECTORS {
        return Err(format!(
            "CUDA generator {vectors:x?} != test vectors {TEST_VECTORS:x?}"
        ));
    }
    println!("generator: CUDA twin matches the test vectors");

    // Correctness at small n: same seeds, same roots, same rows; verifier accepts and rejects.
    let mut cpu = CpuBackend::new();
    let mut rng = StdRng::seed_from_u64(2026);
    for (i, n) in [64u32, 128, 256, 1024].into_iter().enumerate() {
        let ch = Challenge::new(
            i as u64,
            GpuClass::Cpu,
            n,
            32.min(n),
            DEFAULT_ALLOWANCE,
            &mut rng,
        )
        .map_err(|e| e.to_string())?;
        let t0 = Instant::now();
        let round = AwaitingCommitment::new(ch.clone(), t0);
        let g = gpu.commit(&ch).map_err(|e| e.to_string())?;
        let c = cpu.commit(&ch).map_err(|e| e.to_string())?;
        if g.root != c.root {
            return Err(format!(
                "n={n}: GPU root {:?} != CPU root {:?}",
                g.root, c.root
            ));
        }
        let awaiting = round
            .receive_commitment(&g, t0, &mut rng)
            .map_err(|e| e.to_string())?
            .sent(t0);
        let opened = gpu
            .open(awaiting.open_request())
            .map_err(|e| e.to_string())?;
        let cpu_opened = cpu
            .open(awaiting.open_request())
            .map_err(|e| e.to_string())?;
        if opened != cpu_opened {
            return Err(format!("n={n}: GPU opening differs from the CPU's"));
        }
        awaiting
            .clone()
            .receive_opening(&opened, t0)
            .map_err(|e| format!("n={n}: verifier refused the GPU answer: {e}"))?;
        let mut tampered = opened.clone();
        tampered.rows[0].values[0] = tampered.rows[0].values[0].wrapping_add(1);
        match awaiting.receive_opening(&tampered, t0) {
            Err(Rejection::NotCommitted { .. }) => {}
            other => return Err(format!("n={n}: tampered row not refused: {other:?}")),
        }
        println!("n={n:5}: GPU root == CPU root, openings equal, verifier accepts, tamper refused");
    }

    let m = gpu.measure().map_err(|e| e.to_string())?;
    println!(
        "measured: {:.0} GB/s copy bandwidth (class {} GB/s), {:.0} int8 TOPS at n={} ({:.0}% of peak)",
        m.memory_bandwidth_gbs,
        class.spec().memory_bandwidth_gbs,
        m.int8_tops,
        m.gemm_n,
        100.0 * m.int8_tops / class.spec().int8_tops
    );
    match RegistrationRule::default().check(gpu.describe(), &m) {
        Ok(()) => println!("registration rule: may be offered"),
        Err(why) => println!("registration rule: {why}"),
    }

    println!(
        "\n{:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>7} {:>10} {:>10}",
        "n",
        "gen ms",
        "gemm ms",
        "hash ms",
        "commit ms",
        "open ms",
        "TOPS",
        "% peak",
        "deadline",
        "verify ms"
    );
    for (i, n) in [4096u32, 8192, 16384].into_iter().enumerate() {
        let ch = Challenge::new(100 + i as u64, class, n, 32, DEFAULT_ALLOWANCE, &mut rng)
            .map_err(|e| e.to_string())?;
        // One untimed run so the cuBLASLt heuristic and allocations are warm.
        gpu.commit(&ch).map_err(|e| e.to_string())?;
        let t0 = Instant::now();
        let round = AwaitingCommitment::new(ch.clone(), t0);
        let commitment = gpu.commit(&ch).map_err(|e| e.to_string())?;
        let phases = gpu.last_phases();
        let t1 = Instant::now();
        let awaiting = round
            .receive_commitment(&commitment, t1, &mut rng)
            .map_err(|e| format!("n={n}: {e}"))?
            .sent(t1);
        let opening = gpu
            .open(awaiting.open_request())
            .map_err(|e| e.to_string())?;
        let t2 = Instant::now();
        awaiting
            .receive_opening(&opening, t2)
            .map_err(|e| format!("n={n}: verifier refused: {e}"))?;
        let verify = t2.elapsed();
        let tops = 2.0 * f64::from(n).powi(3) / phases.multiply.as_secs_f64() / 1e12;
        println!(
            "{n:>6} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>8.0} {:>6.0}% {:>8.1}ms {:>10.0}",
            ms(phases.generate),
            ms(phases.multiply),
            ms(phases.hash + phases.merkle),
            ms(t1 - t0),
            ms(t2 - t1),
            tops,
            100.0 * tops / class.spec().int8_tops,
            ms(deadline_for(class, n, DEFAULT_ALLOWANCE)),
            ms(verify),
        );
    }
    println!("(verify = the verifier's exact recomputation of k=32 rows on one CPU core)");
    Ok(())
}
