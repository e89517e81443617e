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
    gpumesh_protocol::kernels::cpu_model().unwrap_or_else(|| std::env::consts::ARCH.to_string())
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

    /// About 10 ms per run on one thread of a VNNI core.
    const ITERS: u64 = 5_000_000;

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

    /// The microbenchmark of the best instruction, run whenever a measurement needs the peak
    /// of the moment (the machine may be shared: each GEMM run is paired with a peak run right
    /// before it, and the fraction of peak is the median of those pairs).
    pub struct Probe {
        pub instruction: &'static str,
        macs: f64,
        run: Run,
    }

    impl Probe {
        pub fn new() -> Option<Probe> {
            let (instruction, macs, run) = best()?;
            Some(Probe {
                instruction,
                macs,
                run,
            })
        }

        fn ops(&self, threads: usize) -> f64 {
            2.0 * self.macs * 12.0 * ITERS as f64 * threads as f64
        }

        /// Gop/s of one thread, one run.
        pub fn one_thread(&self) -> f64 {
            let t = Instant::now();
            black_box((self.run)(ITERS, black_box(0x0102_0304)));
            gops(self.ops(1), t.elapsed())
        }

        /// Gop/s of every pool thread at once, one run.
        pub fn all_threads(&self) -> f64 {
            let run = self.run;
            let t = Instant::now();
            black_box(rayon::broadcast(|ctx| {
                run(ITERS, black_box(ctx.index() as i32 + 0x0102_0304))
            }));
            gops(self.ops(rayon::current_num_threads()), t.elapsed())
        }
    }
}

fn median_f64(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// `reps` runs of `f`, each right after one run of `peak`: the median time, the median fraction
/// of the peak measured just before, the median peak, and the last result.
fn timed_against<T>(
    reps: usize,
    ops: f64,
    peak: Option<&dyn Fn() -> f64>,
    mut f: impl FnMut() -> T,
) -> (Duration, Option<(f64, f64)>, T) {
    let mut last = f();
    let mut times = Vec::with_capacity(reps);
    let mut fractions = Vec::with_capacity(reps);
    let mut peaks = Vec::with_capacity(reps);
    for _ in 0..reps {
        let p = peak.map(|p| p());
        let t = Instant::now();
        last = black_box(f());
        let t = t.elapsed();
        times.push(t);
        if let Some(p) = p {
            fractions.push(gops(ops, t) / p);
            peaks.push(p);
        }
    }
    let against = (!peaks.is_empty()).then(|| (median_f64(fractions), median_f64(peaks)));
    (median(times), against, last)
}

fn gemm_section(args: &Args, probe: Option<&peak::Probe>) {
    println!(
        "\n== int8 GEMM (C = A·B, n × n, exact i32), all {} threads; each run paired with a \
         peak run just before it",
        rayon::current_num_threads()
    );
    let peak = probe.map(|p| move || p.all_threads());
    let peak = peak.as_ref().map(|p| p as &dyn Fn() -> f64);
    for &n in &args.sizes {
        let (a, b) = generate(&[1; 32], n);
        let ops = 2.0 * (n as f64).powi(3);
        let mut reference: Option<(Duration, Vec<i32>)> = None;
        let mut rows = Vec::new();
        // Portable first, so its time is the baseline the ratios use.
        let mut kernels = Kernel::available();
        kernels.reverse();
        for kernel in kernels {
            let (t, against, c) = timed_against(args.reps, ops, peak, || {
                gemm_i8_with(kernel, &a, &b, n, n, n)
            });
            let same = reference.as_ref().is_none_or(|(_, r)| *r == c);
            if reference.is_none() {
                reference = Some((t, c));
            }
            rows.push((kernel, t, against, same));
        }
        let base = reference.map_or(Duration::ZERO, |(t, _)| t);
        for (kernel, t, against, same) in rows.into_iter().rev() {
            let of_peak = against.map_or(String::new(), |(f, p)| {
                format!(", {:.0} % of peak ({p:.0} Gop/s)", 100.0 * f)
            });
            println!(
                "n = {n:>5}  {:<12} {:>10}  {:>5.0} Gop/s{of_peak}, {:.1}x portable{}",
                kernel.name(),
                ms(t),
                gops(ops, t),
                base.as_secs_f64() / t.as_secs_f64().max(1e-12),
                if same { "" } else { "  (DIFFERENT RESULT)" },
            );
        }
    }
}

fn verifier_section(args: &Args, probe: Option<&peak::Probe>) {
    println!(
        "\n== verifier: recompute k = 32 opened rows of A·B from the seed, one thread; dot \
         products against the one-thread peak"
    );
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
                // Each rep: the peak, one row, all 32 rows, back to back, so that the split into
                // generating B (the same for any row count) and the dot products (32 of them
                // against 1) compares runs made under the same load.
                let mut out = rows_of_product_with(kernel, &seed, n, &rows);
                let (mut totals, mut products, mut generation, mut fractions) =
                    (Vec::new(), Vec::new(), Vec::new(), Vec::new());
                for _ in 0..reps {
                    let peak = probe.map(|p| p.one_thread());
                    let t = Instant::now();
                    black_box(rows_of_product_with(kernel, &seed, n, &rows[..1]));
                    let one = t.elapsed();
                    let t = Instant::now();
                    out = black_box(rows_of_product_with(kernel, &seed, n, &rows));
                    let all = t.elapsed();
                    let product = all.saturating_sub(one) * 32 / 31;
                    totals.push(all);
                    products.push(product);
                    generation.push(all.saturating_sub(product));
                    if let Some(p) = peak {
                        fractions.push((gops(ops, product) / p, p));
                    }
                }
                let t = median(totals);
                let of_peak = (!fractions.is_empty()).then(|| {
                    let f = median_f64(fractions.iter().map(|x| x.0).collect());
                    let p = median_f64(fractions.iter().map(|x| x.1).collect());
                    (f, p)
                });
                let same = reference.as_ref().is_none_or(|(_, r)| *r == out);
                if reference.is_none() {
                    reference = Some((t, out));
                }
                results.push((
                    kernel,
                    t,
                    median(generation),
                    median(products),
                    of_peak,
                    same,
                ));
            }
            let base = reference.as_ref().map_or(Duration::ZERO, |(t, _)| *t);
            let hashing = reference.as_ref().map(|(_, out)| {
                timed(args.reps, || {
                    out.chunks_exact(n).map(leaf_hash).collect::<Vec<_>>()
                })
                .0
            });
            for (kernel, t, generation, product, of_peak, same) in results.into_iter().rev() {
                let of_peak = of_peak.map_or(String::new(), |(f, p)| {
                    format!(" ({:.0} % of {p:.0} Gop/s)", 100.0 * f)
                });
                println!(
                    "n = {n:>5}  {:<12} {:>10}, {:.1}x portable{}; generating B ≈ {}, dot \
                     products ≈ {}{of_peak}",
                    kernel.name(),
                    ms(t),
                    base.as_secs_f64() / t.as_secs_f64().max(1e-12),
                    if same { "" } else { "  (DIFFERENT RESULT)" },
                    ms(generation),
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
    let probe = peak::Probe::new();
    match &probe {
        Some(p) => {
            let one = median_f64((0..args.reps).map(|_| p.one_thread()).collect());
            let all = median_f64((0..args.reps).map(|_| p.all_threads()).collect());
            println!(
                "peak ({} microbenchmark, 12 independent chains): {one:.0} Gop/s on one thread, \
                 {all:.0} Gop/s on {} threads",
                p.instruction,
                rayon::current_num_threads()
            );
        }
        None => println!("peak: no dot-product instruction to measure on this CPU"),
    }
    gemm_section(&args, probe.as_ref());
    verifier_section(&args, probe.as_ref());
    challenge_section(&args);
}
