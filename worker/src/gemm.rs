//! The CPU backend's exact int8 × int8 → int32 matrix product, on the fastest kernel the CPU has
//! (`gpumesh_protocol::kernels`: AVX-512 VNNI, AVX-VNNI, AVX2, or the portable loops), chosen at
//! run time. Every kernel returns the same bits.
//!
//! SIMD kernels: B is packed once (column panels of the kernel's width, biased to unsigned
//! bytes); threads take blocks of rows of C (at most 96, and small enough that each thread gets
//! several), pack their rows of A, and walk every panel with the kernel's register-tile
//! micro-kernel. A block's packed A and one panel stay in L2, and the slice of the panel the
//! tiles share stays in L1. Portable kernel: B packed into
//! i32 column panels, 32-row blocks, L1-sized accumulators, the shared vectorizing loop.

use gpumesh_protocol::exact::{COL_BLOCK, K_STEP, ROW_BLOCK, update4};
use gpumesh_protocol::kernels::{self, Kernel, PackedA, PackedB};
use rayon::prelude::*;

/// Most row tiles per task of the SIMD path: 16 tiles of 6 rows, 96 rows of A per task, whose
/// packed rows stay in L2 while every panel passes.
const MAX_TILES_PER_TASK: usize = 16;
/// Tasks per thread the SIMD path aims for, so that a partial last block does not leave one
/// thread idle for long on small products.
const TASKS_PER_THREAD: usize = 4;

/// C = A·B for row-major n × n int8 matrices on the fastest kernel this CPU has. Exact for
/// n < 2^17.
///
/// # Panics
/// If `a` or `b` does not hold n × n values.
pub fn gemm_i8(a: &[i8], b: &[i8], n: usize) -> Vec<i32> {
    gemm_i8_with(Kernel::best(), a, b, n, n, n)
}

/// C (m × n) = A (m × k) · B (k × n), row-major, on `kernel`. Any sizes; exact for k < 2^17.
///
/// # Panics
/// If the CPU does not run `kernel`, or `a` or `b` has the wrong length.
pub fn gemm_i8_with(kernel: Kernel, a: &[i8], b: &[i8], m: usize, k: usize, n: usize) -> Vec<i32> {
    assert!(
        kernel.is_available(),
        "this CPU does not run the {kernel} kernel"
    );
    assert!(
        a.len() == m * k && b.len() == k * n,
        "A must be m × k and B k × n"
    );
    if m == 0 || n == 0 {
        return Vec::new();
    }
    match kernel {
        Kernel::Portable => portable(a, b, m, k, n),
        _ => simd(kernel, a, b, m, k, n),
    }
}

fn simd(kernel: Kernel, a: &[i8], b: &[i8], m: usize, k: usize, n: usize) -> Vec<i32> {
    let packed_b = PackedB::new(kernel, b, k, n);
    let (mr, _) = kernel.tile();
    let tasks = TASKS_PER_THREAD * rayon::current_num_threads();
    let block = mr * m.div_ceil(mr).div_ceil(tasks).clamp(1, MAX_TILES_PER_TASK);
    let mut c = vec![0i32; m * n];
    c.par_chunks_mut(block * n)
        .enumerate()
        .for_each(|(i, c_rows)| {
            let rows = c_rows.len() / n;
            let packed_a = PackedA::new(kernel, &a[i * block * k..], rows, k, k);
            kernels::multiply(&packed_a, &packed_b, 0..packed_b.panels(), c_rows, n);
        });
    c
}

fn portable(a: &[i8], b: &[i8], m: usize, k: usize, n: usize) -> Vec<i32> {
    let panels = pack_b(b, k, n);
    let mut c = vec![0i32; m * n];
    c.par_chunks_mut(ROW_BLOCK * n)
        .enumerate()
        .for_each(|(block, c_rows)| {
            let rows = c_rows.len() / n;
            let a_rows = &a[block * ROW_BLOCK * k..(block * ROW_BLOCK + rows) * k];
            row_block(a_rows, &panels, k, n, c_rows);
        });
    c
}

/// B in column panels of width ≤ COL_BLOCK, widened to i32 and padded with zero rows to a
/// multiple of four; panel p is those rows × its width, contiguous, so the kernel reads it
/// sequentially.
fn pack_b(b: &[i8], k: usize, n: usize) -> Vec<Vec<i32>> {
    let rows = k.div_ceil(K_STEP) * K_STEP;
    (0..n)
        .step_by(COL_BLOCK)
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|j0| {
            let w = COL_BLOCK.min(n - j0);
            let mut panel = Vec::with_capacity(rows * w);
            for row in b.chunks_exact(n) {
                panel.extend(row[j0..j0 + w].iter().map(|&v| i32::from(v)));
            }
            panel.resize(rows * w, 0);
            panel
        })
        .collect()
}

fn row_block(a_rows: &[i8], panels: &[Vec<i32>], k: usize, n: usize, c_rows: &mut [i32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
        {
            // SAFETY: the CPU has the features this copy was compiled for.
            return unsafe { row_block_avx512(a_rows, panels, k, n, c_rows) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            return unsafe { row_block_avx2(a_rows, panels, k, n, c_rows) };
        }
    }
    row_block_body(a_rows, panels, k, n, c_rows)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx2")]
fn row_block_avx512(a_rows: &[i8], panels: &[Vec<i32>], k: usize, n: usize, c_rows: &mut [i32]) {
    row_block_body(a_rows, panels, k, n, c_rows)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn row_block_avx2(a_rows: &[i8], panels: &[Vec<i32>], k: usize, n: usize, c_rows: &mut [i32]) {
    row_block_body(a_rows, panels, k, n, c_rows)
}

#[inline(always)]
fn row_block_body(a_rows: &[i8], panels: &[Vec<i32>], k: usize, n: usize, c_rows: &mut [i32]) {
    let rows = c_rows.len() / n;
    let quads = k.div_ceil(K_STEP);
    // A's rows regrouped as [k/4][row] of four consecutive k (zero past k), so each step
    // reads one slice.
    let mut a_packed = vec![[0i32; 4]; quads * rows];
    if k > 0 {
        for (r, row) in a_rows.chunks_exact(k).enumerate() {
            for (q, four) in row.chunks(K_STEP).enumerate() {
                for (dst, &v) in a_packed[q * rows + r].iter_mut().zip(four) {
                    *dst = i32::from(v);
                }
            }
        }
    }
    let mut acc = vec![0i32; rows * COL_BLOCK];
    for (p, panel) in panels.iter().enumerate() {
        let j0 = p * COL_BLOCK;
        let w = COL_BLOCK.min(n - j0);
        let acc = &mut acc[..rows * w];
        acc.fill(0);
        for (q, b4) in panel.chunks_exact(K_STEP * w).enumerate() {
            update4(acc, w, &a_packed[q * rows..(q + 1) * rows], b4);
        }
        for (r, src) in acc.chunks_exact(w).enumerate() {
            c_rows[r * n + j0..r * n + j0 + w].copy_from_slice(src);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpumesh_protocol::exact::naive_product;
    use gpumesh_protocol::generator::{MATRIX_A, MATRIX_B, matrix};

    /// Row-major `rows × cols` values cut from a generated matrix (the generator makes square
    /// matrices with sides a multiple of 8).
    fn cut(seed: &[u8; 32], which: u32, rows: usize, cols: usize) -> Vec<i8> {
        let side = rows.max(cols).div_ceil(8) * 8;
        matrix(seed, which, side)
            .chunks_exact(side)
            .take(rows)
            .flat_map(|r| r[..cols].to_vec())
            .collect()
    }

    fn naive(a: &[i8], b: &[i8], m: usize, k: usize, n: usize) -> Vec<i32> {
        let mut c = vec![0i32; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k)
                    .map(|l| i32::from(a[i * k + l]) * i32::from(b[l * n + j]))
                    .sum();
            }
        }
        c
    }

    #[test]
    fn matches_the_naive_product() {
        for n in [4usize, 64, 100, 300] {
            let seed = [n as u8; 32];
            let a = cut(&seed, MATRIX_A, n, n);
            let b = cut(&seed, MATRIX_B, n, n);
            assert_eq!(gemm_i8(&a, &b, n), naive_product(&a, &b, n), "n = {n}");
        }
    }

    #[test]
    fn every_kernel_matches_the_naive_product_on_odd_sizes() {
        let sizes = [
            (1, 1, 1),
            (1, 3, 2),
            (5, 7, 3),
            (7, 1, 9),
            (13, 33, 17),
            (31, 65, 67),
            (97, 130, 129),
            (193, 67, 300),
        ];
        for (m, k, n) in sizes {
            let seed = [(m + k + n) as u8; 32];
            let a = cut(&seed, MATRIX_A, m, k);
            let b = cut(&seed, MATRIX_B, k, n);
            let want = naive(&a, &b, m, k, n);
            for kernel in Kernel::available() {
                assert_eq!(
                    gemm_i8_with(kernel, &a, &b, m, k, n),
                    want,
                    "{kernel} {m}×{k}×{n}"
                );
            }
        }
    }

    #[test]
    fn every_kernel_gives_the_same_bits_at_a_larger_size() {
        // Several K blocks, row tasks and panels, with partial ones at every edge.
        let (m, k, n) = (301, 700, 333);
        let seed = [77u8; 32];
        let a = cut(&seed, MATRIX_A, m, k);
        let b = cut(&seed, MATRIX_B, k, n);
        let reference = gemm_i8_with(Kernel::Portable, &a, &b, m, k, n);
        for kernel in Kernel::available() {
            assert_eq!(gemm_i8_with(kernel, &a, &b, m, k, n), reference, "{kernel}");
        }
    }

    #[test]
    fn empty_sizes_give_empty_products() {
        for kernel in Kernel::available() {
            assert!(gemm_i8_with(kernel, &[], &[], 0, 0, 0).is_empty());
            assert_eq!(
                gemm_i8_with(kernel, &[], &[], 2, 0, 3),
                vec![0; 6],
                "{kernel}"
            );
        }
    }

    #[test]
    fn extreme_values() {
        let n = 256;
        for kernel in Kernel::available() {
            let a = vec![-128i8; n * n];
            let b = vec![-128i8; n * n];
            let c = gemm_i8_with(kernel, &a, &b, n, n, n);
            assert!(c.iter().all(|&v| v == 256 * 16384), "{kernel}");
            let b: Vec<i8> = vec![127; n * n];
            let c = gemm_i8_with(kernel, &a, &b, n, n, n);
            assert!(c.iter().all(|&v| v == -256 * 128 * 127), "{kernel}");
        }
    }
}
