//! Exact int8 × int8 → int32 arithmetic on the CPU: the verifier's recomputation of opened rows,
//! and the portable micro-kernel the worker's CPU GEMM falls back to.
//!
//! Every sum is exact: |a·b| ≤ 2^14 and n ≤ 2^16, so a dot product stays below 2^30. The
//! recomputation runs on the fastest kernel the CPU has ([`crate::kernels`]: VNNI `vpdpbusd`,
//! AVX2 `vpmaddwd`, or the portable loops here), and every kernel returns the same bits. The
//! portable loops use wrapping arithmetic only so release builds (which keep overflow checks on)
//! do not branch per element and lose vectorization; with these bounds nothing ever wraps.

use crate::generator::{self, MATRIX_A, MATRIX_B};
use crate::kernels::{self, Kernel};

/// Rows of C per block of the portable GEMM: 32 rows × [`COL_BLOCK`] i32 = 32 KiB (L1).
pub const ROW_BLOCK: usize = 32;
/// Columns per accumulator block: 32 rows × 256 i32 = 32 KiB, which fits in L1.
pub const COL_BLOCK: usize = 256;
/// k-values folded into one pass over the accumulators, so each accumulator load/store is
/// amortized over four multiply-adds.
pub const K_STEP: usize = 4;

/// `acc (rows × w) += a (rows × 4) · b (4 × w)`; `b` holds four rows of width `w` back to back.
#[inline(always)]
pub fn update4(acc: &mut [i32], w: usize, a: &[[i32; 4]], b: &[i32]) {
    let (b0, rest) = b.split_at(w);
    let (b1, rest) = rest.split_at(w);
    let (b2, b3) = rest.split_at(w);
    let b3 = &b3[..w];
    for (acc_row, a) in acc.chunks_exact_mut(w).zip(a) {
        let [a0, a1, a2, a3] = *a;
        for ((((c, &x0), &x1), &x2), &x3) in acc_row.iter_mut().zip(b0).zip(b1).zip(b2).zip(b3) {
            let sum = a0
                .wrapping_mul(x0)
                .wrapping_add(a1.wrapping_mul(x1))
                .wrapping_add(a2.wrapping_mul(x2).wrapping_add(a3.wrapping_mul(x3)));
            *c = c.wrapping_add(sum);
        }
    }
}

/// Rows `rows` of C = A·B for the challenge matrices of `seed`, each of length `n` (a multiple
/// of 64, as challenges are), concatenated in the order given, on the fastest kernel this CPU
/// has. B is generated from the seed a block at a time straight into the kernel's layout, so
/// memory stays at O(rows · n) however large n is.
pub fn rows_of_product(seed: &[u8; 32], n: usize, rows: &[u32]) -> Vec<i32> {
    rows_of_product_with(Kernel::best(), seed, n, rows)
}

/// Steps of four k generated per block: 64 steps × 64 columns is 16 KiB of B, which stays in
/// L1 while every row tile uses it.
const VERIFY_K_QUADS: usize = 64;

/// [`rows_of_product`] on a given kernel (tests and benchmarks compare them).
///
/// # Panics
/// If the CPU does not run `kernel`.
pub fn rows_of_product_with(kernel: Kernel, seed: &[u8; 32], n: usize, rows: &[u32]) -> Vec<i32> {
    assert!(
        kernel.is_available(),
        "this CPU does not run the {kernel} kernel"
    );
    if kernel == Kernel::Portable {
        return rows_of_product_portable(seed, n, rows);
    }
    debug_assert!(n.is_multiple_of(64));
    if rows.is_empty() || n == 0 {
        return Vec::new();
    }
    let key = generator::key_from_seed(seed);
    let a = kernels::pack_generated_rows(kernel, &key, rows, n);
    let (_, nr) = kernel.tile();
    let quads = n.div_ceil(4);
    let mut out = vec![0i32; rows.len() * n];
    let mut scratch = Vec::new();
    let mut block = kernels::GeneratedB::new(kernel, VERIFY_K_QUADS.min(quads));
    for col0 in (0..n).step_by(nr) {
        let cols = nr.min(n - col0);
        for q0 in (0..quads).step_by(VERIFY_K_QUADS) {
            block.resize(VERIFY_K_QUADS.min(quads - q0));
            block.fill(&key, MATRIX_B, q0, col0, cols, &mut scratch);
            block.multiply(&a, q0, &mut out[col0..], n, cols);
        }
    }
    out
}

/// The portable recomputation: B streamed in column blocks of four generated rows, widened to
/// i32, through [`update4`]; compiled for AVX-512 or AVX2 when the CPU has them.
fn rows_of_product_portable(seed: &[u8; 32], n: usize, rows: &[u32]) -> Vec<i32> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
        {
            // SAFETY: the CPU has the features this copy was compiled for.
            return unsafe { rows_of_product_avx512(seed, n, rows) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            return unsafe { rows_of_product_avx2(seed, n, rows) };
        }
    }
    rows_of_product_body(seed, n, rows)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx2")]
fn rows_of_product_avx512(seed: &[u8; 32], n: usize, rows: &[u32]) -> Vec<i32> {
    rows_of_product_body(seed, n, rows)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn rows_of_product_avx2(seed: &[u8; 32], n: usize, rows: &[u32]) -> Vec<i32> {
    rows_of_product_body(seed, n, rows)
}

#[inline(always)]
fn rows_of_product_body(seed: &[u8; 32], n: usize, rows: &[u32]) -> Vec<i32> {
    debug_assert!(n.is_multiple_of(64));
    let key = generator::key_from_seed(seed);
    let r = rows.len();
    let quads = n / K_STEP;
    // A's selected rows, grouped by four consecutive k.
    let mut a = vec![[0i32; 4]; r * quads];
    let mut scratch = vec![0i32; n];
    for (i, &row) in rows.iter().enumerate() {
        generator::fill_row_i32(&key, MATRIX_A, row, 0, &mut scratch);
        for (dst, src) in a[i * quads..(i + 1) * quads]
            .iter_mut()
            .zip(scratch.chunks_exact(K_STEP))
        {
            *dst = [src[0], src[1], src[2], src[3]];
        }
    }
    let mut out = vec![0i32; r * n];
    let mut acc = vec![0i32; r * COL_BLOCK];
    let mut b = vec![0i32; K_STEP * COL_BLOCK];
    let mut a_step = vec![[0i32; 4]; r];
    for j0 in (0..n).step_by(COL_BLOCK) {
        let w = COL_BLOCK.min(n - j0);
        let acc = &mut acc[..r * w];
        acc.fill(0);
        for q in 0..quads {
            let k0 = q * K_STEP;
            for (t, dst) in b[..K_STEP * w].chunks_exact_mut(w).enumerate() {
                generator::fill_row_i32(&key, MATRIX_B, (k0 + t) as u32, j0, dst);
            }
            for (i, dst) in a_step.iter_mut().enumerate() {
                *dst = a[i * quads + q];
            }
            update4(acc, w, &a_step, &b[..K_STEP * w]);
        }
        for (i, src) in acc.chunks_exact(w).enumerate() {
            out[i * n + j0..i * n + j0 + w].copy_from_slice(src);
        }
    }
    out
}

/// The whole product by the textbook triple loop: the reference the fast paths are tested
/// against (and the baseline the benchmark compares with).
pub fn naive_product(a: &[i8], b: &[i8], n: usize) -> Vec<i32> {
    let mut c = vec![0i32; n * n];
    for i in 0..n {
        for j in 0..n {
            let mut sum = 0i32;
            for k in 0..n {
                sum += i32::from(a[i * n + k]) * i32::from(b[k * n + j]);
            }
            c[i * n + j] = sum;
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_of_product_matches_naive_on_every_kernel() {
        let seed = [3u8; 32];
        for n in [64usize, 320] {
            let a = generator::matrix(&seed, MATRIX_A, n);
            let b = generator::matrix(&seed, MATRIX_B, n);
            let c = naive_product(&a, &b, n);
            let rows = [0u32, 5, (n - 1) as u32, 17, 5];
            for kernel in Kernel::available() {
                let got = rows_of_product_with(kernel, &seed, n, &rows);
                for (i, &row) in rows.iter().enumerate() {
                    let row = row as usize;
                    assert_eq!(
                        &got[i * n..(i + 1) * n],
                        &c[row * n..(row + 1) * n],
                        "{kernel}, row {row}"
                    );
                }
            }
            assert_eq!(
                rows_of_product_body(&seed, n, &rows),
                rows_of_product(&seed, n, &rows)
            );
        }
    }

    #[test]
    fn every_kernel_recomputes_the_same_rows_at_a_larger_size() {
        // Several blocks of k and of columns, and an odd number of rows (a partial row tile).
        let (seed, n) = ([11u8; 32], 1024);
        let rows: Vec<u32> = (0..13).map(|i| i * 71 % n as u32).collect();
        let reference = rows_of_product_with(Kernel::Portable, &seed, n, &rows);
        for kernel in Kernel::available() {
            assert_eq!(
                rows_of_product_with(kernel, &seed, n, &rows),
                reference,
                "{kernel}"
            );
        }
    }

    #[test]
    fn extreme_values_stay_exact() {
        // All -128: every dot product is n · 2^14, the largest magnitude the protocol allows.
        let n = 64;
        let mut acc = vec![0i32; n];
        let a = vec![[-128i32; 4]; 1];
        let b = vec![-128i32; 4 * n];
        for _ in 0..(65536 / 4) {
            update4(&mut acc, n, &a, &b);
        }
        assert!(acc.iter().all(|&v| v == 65536 * 16384));
    }
}
