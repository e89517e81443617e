//! Speed of the proof-of-compute pieces on the CPU, each against a baseline in the same run:
//!
//! - the peak of the CPU's dot-product instruction (VNNI `vpdpbusd` when present), measured here
//!   by a microbenchmark on one thread and on every thread of the pool;
//! - the int8 GEMM on every kernel this CPU runs: time, Gop/s, fraction of that peak, ratio to
//!   the portable kernel, and whether all kernels returned the same bits;
//! - the verifier's recomputation of k = 32 opened rows on one thread, per kernel, with where its
//!   time goes (generating B from the seed, the dot products, hashing the rows);
//! - a whole CPU challenge (commit + open) by size.
//!
//! Run: `cargo bench -p gpumesh-worker --bench compute`
//! Options: `--sizes 512,1024,2048` (GEMM n), `--verify 4096,16384` (verifier n), `--reps 5`.
//! Prints the CPU model and features, the thread count and the parameters first.

use std::hint::black_box;
use std::time::{Duration, Instant};

use gpumesh_protocol::challenge::{DEFAULT_ALLOWANCE, PROTOCOL_VERSION};
use gpumesh_protocol::exact::rows_of_product_with;
use gpumesh_protocol::kernels::Kernel;
use gpumesh_protocol::merkle::leaf_hash;
use gpumesh_protocol::{Challenge, GpuClass, OpenRequest};
use gpumesh_worker::cpu::generate;
use gpumesh_worker::gemm::gemm_i8_with;
use gpumesh_worker::{ComputeBackend, CpuBackend};

struct Args {
    sizes: Vec<usize>,
    verify: Vec<usize>,
    reps: usize,
}

fn parse_list(v: &str) -> Result<Vec<usize>, String> {
    v.split(',')
        .map(|s| {
            s.trim()
                .parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or(format!("{s:?} is not a positive size"))
        })
        .collect()
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        sizes: vec![512, 1024, 2048],
        verify: vec![4096, 16384],
        reps: 5,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--sizes" => args.sizes = parse_list(&value()?)?,
            "--verify" => {
                args.verify = parse_list(&value()?)?;
                if let Some(n) = args.verify.iter().find(|n| !n.is_multiple_of(64)) {
                    return Err(format!("verifier size {n} is not a multiple of 64"));
                }
            }
            "--reps" => {
                args.reps = value()?
                    .parse::<usize>()
                    .ok()
                    .filter(|&r| r > 0)
                    .ok_or("--reps needs a positive number")?
            }
            // `cargo bench` passes --bench; harness flags do not apply to this binary.
            _ => {}
        }
    }
    Ok(args)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

fn features() -> String {
    #[cfg(target_arch = "x86_64")]
    {
        let mut have = Vec::new();
        macro_rules! check {
            ($($f:tt),*) => {$(
                if std::arch::is_x86_feature_detected!($f) {
                    have.push($f);
                }
            )*};
        }
        check!(
            "avx2",
            "avx512f",
            "avx512bw",
            "avx512dq",
            "avx512vnni",
            "avxvnni"
        );
        have.join(" ")
    }
    #[cfg(not(target_arch = "x86_64"))]
    String::from("(not x86_64)")
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

/// Median time of `reps` runs of `f` after one warm-up run, and the last run's result.
fn timed<T>(reps: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut last = f();
    let times = (0..reps)
        .map(|_| {
            let t = Instant::now();
            last = black_box(f());
            t.elapsed()
        })
        .collect();
    (median(times), last)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn gops(ops: f64, d: Duration) -> f64 {
    ops / d.as_secs_f64().max(1e-12) / 1e9
}

/// Peak of the best dot-product instruction the CPU has, in Gop/s (multiply-add = 2 ops), on
/// one thread and on every thread of the pool at once; and which instruction it was.
mod peak {
    use super::*;

    const ITERS: u64 = 20_000_000;

    #[cfg(target_arch = "x86_64")]
    mod x86 {
        use std::arch::x86_64::*;

        /// 12 independent `vpdpbusd` chains: enough to cover its latency at two per cycle.
        #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
        pub fn vnni512(iters: u64, seed: i32) -> i32 {
            let a = _mm512_set1_epi32(seed);
            let b = _mm512_set1_epi32(seed.rotate_left(8));
            let mut acc = [_mm512_setzero_si512(); 12];
            for _ in 0..iters {
                for x in acc.iter_mut() {
                    *x = _mm512_dpbusd_epi32(*x, a, b);
                }
            }
            let sum = acc
                .iter()
                .fold(_mm512_setzero_si512(), |s, &x| _mm512_add_epi32(s, x));
            _mm512_reduce_add_epi32(sum)
        }

        #[target_feature(enable = "avx2,avxvnni")]
        pub fn vnni256(iters: u64, seed: i32) -> i32 {
            let a = _mm256_set1_epi32(seed);
            let b = _mm256_set1_epi32(seed.rotate_left(8));
            let mut acc = [_mm256_setzero_si256(); 12];
            for _ in 0..iters {
                for x in acc.iter_mut() {
                    *x = _mm256_dpbusd_avx_epi32(*x, a, b);
                }
            }
            let sum = acc
                .iter()
                .fold(_mm256_setzero_si256(), |s, &x| _mm256_add_epi32(s, x));
            _mm256_extract_epi32::<0>(sum)
        }

        /// `vpmaddwd` + `vpaddd`, as the AVX2 kernel runs them.
        #[target_feature(enable = "avx2")]
        pub fn madd256(iters: u64, seed: i32) -> i32 {
            let a = _mm256_set1_epi32(seed);
            let b = _mm256_set1_epi32(seed.rotate_left(8));
            let mut acc = [_mm256_setzero_si256(); 12];
            for _ in 0..iters {
                for x in acc.iter_mut() {
                    *x = _mm256_add_epi32(*x, _mm256_madd_epi16(a, b));
                }
            }
            let sum = acc
                .iter()
                .fold(_mm256_setzero_si256(), |s, &x| _mm256_add_epi32(s, x));
            _mm256_extract_epi32::<0>(sum)
        }
    }

    /// A microbenchmark: iterations and a seed in, a checksum out.
    type Run = fn(u64, i32) -> i32;

    /// (instruction, multiply-adds per instruction, run).
    fn best() -> Option<(&'static str, f64, Run)> {
        #[cfg(target_arch = "x86_64")]
        {
            if Kernel::Avx512Vnni.is_available() {
                // SAFETY: the features were detected.
                return Some(("vpdpbusd zmm", 64.0, |i, s| unsafe { x86::vnni512(i, s) }));
            }
            if Kernel::AvxVnni.is_available() {
                // SAFETY: as above.
                return Some(("vpdpbusd ymm", 32.0, |i, s| unsafe { x86::vnni256(i, s) }));
            }
            if Kernel::Avx2.is_available() {
                // SAFETY: as above.
                return Some(("vpmaddwd ymm", 16.0, |i, s| unsafe { x86::madd256(i, s) }));
            }
        }
        None
    }

    pub struct Peak {
        pub instruction: &'static str,
        pub one_thread: f64,
        pub all_threads: f64,
    }

    pub fn measure(reps: usize) -> Option<Peak> {
        let (instruction, macs, run) = best()?;
        let ops = |threads: usize| 2.0 * macs * 12.0 * ITERS as f64 * threads as f64;
        let (one, _) = timed(reps, || run(ITERS, black_box(0x0102_0304)));
        let threads = rayon::current_num_threads();
        let (all, _) = timed(reps, || {
            rayon::broadcast(|ctx| run(ITERS, black_box(ctx.index() as i32 + 0x0102_0304)))
        });
        Some(Peak {
            instruction,
            one_thread: gops(ops(1), one),
            all_threads: gops(ops(threads), all),
        })
    }
}

fn gemm_section(args: &Args, peak: Option<&peak::Peak>) {
    println!(
        "\n== int8 GEMM (C = A·B, n × n, exact i32), all {} threads",
        rayon::current_num_threads()
    );
    for &n in &args.sizes {
        let (a, b) = generate(&[1; 32], n);
        let ops = 2.0 * (n as f64).powi(3);
        let mut reference: Option<(Duration, Vec<i32>)> = None;
        let mut rows = Vec::new();
        // Portable last, so its time is the baseline the ratios use.
        let mut kernels = Kernel::available();
        kernels.reverse();
        for kernel in kernels {
            let (t, c) = timed(args.reps, || gemm_i8_with(kernel, &a, &b, n, n, n));
            let same = reference.as_ref().is_none_or(|(_, r)| *r == c);
            if reference.is_none() {
                reference = Some((t, c));
            }
            rows.push((kernel, t, same));
        }
        let base = reference.map_or(Duration::ZERO, |(t, _)| t);
        for (kernel, t, same) in rows.into_iter().rev() {
            let rate = gops(ops, t);
            let of_peak = peak.map_or(String::new(), |p| {
                format!(", {:.0} % of peak", 100.0 * rate / p.all_threads)
            });
            println!(
                "n = {n:>5}  {:<12} {:>10}  {rate:>7.0} Gop/s{of_peak}, {:.1}x portable{}",
                kernel.name(),
                ms(t),
                base.as_secs_f64() / t.as_secs_f64().max(1e-12),
                if same { "" } else { "  (DIFFERENT RESULT)" },
            );
        }
    }
}

fn verifier_section(args: &Args, peak: Option<&peak::Peak>) {
    println!("\n== verifier: recompute k = 32 opened rows of A·B from the seed, one thread");
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build();
    let Ok(pool) = pool else {
        println!("(could not build a one-thread pool)");
        return;
    };
    pool.install(|| {
        let seed = [9u8; 32];
        for &n in &args.verify {
            let rows: Vec<u32> = (0..32).map(|i| (i * 997 % n) as u32).collect();
            let ops = 2.0 * 32.0 * (n as f64) * (n as f64);
            let mut kernels = Kernel::available();
            kernels.reverse();
            let mut reference: Option<(Duration, Vec<i32>)> = None;
            let mut results = Vec::new();
            for kernel in kernels {
                // The portable kernel is the slow baseline: fewer runs at large n.
                let reps = if kernel == Kernel::Portable && n > 4096 {
                    1
                } else {
                    args.reps
                };
                let (t, out) = timed(reps, || rows_of_product_with(kernel, &seed, n, &rows));
                let (one_row, _) =
                    timed(reps, || rows_of_product_with(kernel, &seed, n, &rows[..1]));
                let same = reference.as_ref().is_none_or(|(_, r)| *r == out);
                if reference.is_none() {
                    reference = Some((t, out));
                }
                results.push((kernel, t, one_row, same));
            }
            let base = reference.as_ref().map_or(Duration::ZERO, |(t, _)| *t);
            let hashing = reference.as_ref().map(|(_, out)| {
                timed(args.reps, || {
                    out.chunks_exact(n).map(leaf_hash).collect::<Vec<_>>()
                })
                .0
            });
            for (kernel, t, one_row, same) in results.into_iter().rev() {
                let product = t.saturating_sub(one_row) * 32 / 31;
                let of_peak = peak.map_or(String::new(), |p| {
                    format!(
                        " ({:.0} % of the one-thread peak)",
                        100.0 * gops(ops, product) / p.one_thread
                    )
                });
                println!(
                    "n = {n:>5}  {:<12} {:>10}, {:.1}x portable{}; generating B ≈ {} (one row), \
                     dot products ≈ {}{of_peak}",
                    kernel.name(),
                    ms(t),
                    base.as_secs_f64() / t.as_secs_f64().max(1e-12),
                    if same { "" } else { "  (DIFFERENT RESULT)" },
                    ms(one_row.saturating_sub(product / 32)),
                    ms(product),
                );
            }
            if let Some(h) = hashing {
                println!(
                    "n = {n:>5}  hashing the 32 opened rows (BLAKE3 leaves): {}",
                    ms(h)
                );
            }
        }
    });
}

fn challenge_section(args: &Args) {
    println!("\n== CPU backend: a whole challenge (generate, multiply, hash, commit, open k = 32)");
    let mut cpu = CpuBackend::new();
    for n in [256u32, 512, 1024] {
        let ch =
            match Challenge::with_seed(1, GpuClass::Cpu, [n as u8; 32], n, 32, DEFAULT_ALLOWANCE) {
                Ok(ch) => ch,
                Err(e) => {
                    println!("n = {n}: {e}");
                    continue;
                }
            };
        let request = OpenRequest {
            version: PROTOCOL_VERSION,
            challenge_id: 1,
            rows: (0..32).map(|i| i * (n / 32)).collect(),
        };
        let (t, timing) = timed(args.reps, || {
            let c = cpu.commit(&ch).map(|c| c.timing);
            black_box(cpu.open(&request).ok());
            c
        });
        let detail = timing.map_or_else(
            |e| format!("failed: {e}"),
            |p| {
                format!(
                    "generate {}, multiply {}, hash {}",
                    ms(p.generate),
                    ms(p.multiply),
                    ms(p.hash)
                )
            },
        );
        println!("n = {n:>5}  {}  ({detail})", ms(t));
    }
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("compute bench: {e}");
            std::process::exit(2);
        }
    };
    println!("gpumesh compute benchmark on {}", cpu_model());
    println!(
        "features: {}; kernels: {} (best: {}); {} threads; GEMM n = {:?}, verifier n = {:?}, \
         median of {} runs",
        features(),
        Kernel::available()
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", "),
        Kernel::best(),
        rayon::current_num_threads(),
        args.sizes,
        args.verify,
        args.reps,
    );
    let peak = peak::measure(args.reps);
    match &peak {
        Some(p) => println!(
            "peak ({} microbenchmark): {:.0} Gop/s on one thread, {:.0} Gop/s on {} threads",
            p.instruction,
            p.one_thread,
            p.all_threads,
            rayon::current_num_threads()
        ),
        None => println!("peak: no dot-product instruction to measure on this CPU"),
    }
    gemm_section(&args, peak.as_ref());
    verifier_section(&args, peak.as_ref());
    challenge_section(&args);
}
