//! The CPU backend's exact int8 × int8 → int32 matrix product: B is packed once into column
//! panels widened to i32, then threads take blocks of 32 rows of C and run the shared
//! vectorizing micro-kernel (`gpumesh_protocol::exact::update4`) over L1-sized accumulators.

use gpumesh_protocol::exact::{COL_BLOCK, K_STEP, update4};
use rayon::prelude::*;

/// Rows of C per task: 32 rows × COL_BLOCK columns of i32 accumulators = 32 KiB (L1).
const ROW_BLOCK: usize = 32;

/// C = A·B for row-major n × n int8 matrices; n must be a multiple of 4 (challenges use
/// multiples of 64). Exact for n ≤ 2^17.
pub fn gemm_i8(a: &[i8], b: &[i8], n: usize) -> Vec<i32> {
    assert!(n.is_multiple_of(K_STEP) && a.len() == n * n && b.len() == n * n);
    let panels = pack_b(b, n);
    let mut c = vec![0i32; n * n];
    c.par_chunks_mut(ROW_BLOCK * n)
        .enumerate()
        .for_each(|(block, c_rows)| {
            let rows = c_rows.len() / n;
            let a_rows = &a[block * ROW_BLOCK * n..(block * ROW_BLOCK + rows) * n];
            row_block(a_rows, &panels, n, c_rows);
        });
    c
}

/// B in column panels of width ≤ COL_BLOCK; panel p is n rows × its width, contiguous, so the
/// kernel reads it sequentially.
fn pack_b(b: &[i8], n: usize) -> Vec<Vec<i32>> {
    (0..n)
        .step_by(COL_BLOCK)
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|j0| {
            let w = COL_BLOCK.min(n - j0);
            let mut panel = Vec::with_capacity(n * w);
            for row in b.chunks_exact(n) {
                panel.extend(row[j0..j0 + w].iter().map(|&v| i32::from(v)));
            }
            panel
        })
        .collect()
}

fn row_block(a_rows: &[i8], panels: &[Vec<i32>], n: usize, c_rows: &mut [i32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
        {
            // SAFETY: the CPU has the features this copy was compiled for.
            return unsafe { row_block_avx512(a_rows, panels, n, c_rows) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            return unsafe { row_block_avx2(a_rows, panels, n, c_rows) };
        }
    }
    row_block_body(a_rows, panels, n, c_rows)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx2")]
fn row_block_avx512(a_rows: &[i8], panels: &[Vec<i32>], n: usize, c_rows: &mut [i32]) {
    row_block_body(a_rows, panels, n, c_rows)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn row_block_avx2(a_rows: &[i8], panels: &[Vec<i32>], n: usize, c_rows: &mut [i32]) {
    row_block_body(a_rows, panels, n, c_rows)
}

#[inline(always)]
fn row_block_body(a_rows: &[i8], panels: &[Vec<i32>], n: usize, c_rows: &mut [i32]) {
    let rows = a_rows.len() / n;
    let quads = n / K_STEP;
    // A's rows regrouped as [k/4][row] of four consecutive k, so each step reads one slice.
    let mut a_packed = vec![[0i32; 4]; quads * rows];
    for (r, row) in a_rows.chunks_exact(n).enumerate() {
        for (q, four) in row.chunks_exact(K_STEP).enumerate() {
            a_packed[q * rows + r] = [
                i32::from(four[0]),
                i32::from(four[1]),
                i32::from(four[2]),
                i32::from(four[3]),
            ];
        }
    }
    let mut acc = vec![0i32; rows * COL_BLOCK];
    for (p, panel) in panels.iter().enumerate() {
        let j0 = p * COL_BLOCK;
        let w = panel.len() / n;
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

    #[test]
    fn matches_the_naive_product() {
        for n in [4usize, 64, 100, 300] {
            let seed = [n as u8; 32];
            // The generator needs multiples of 8; build odd sizes from a larger matrix.
            let m = n.div_ceil(8) * 8;
            let crop = |full: Vec<i8>| -> Vec<i8> {
                full.chunks_exact(m)
                    .take(n)
                    .flat_map(|r| r[..n].to_vec())
                    .collect()
            };
            let a = crop(matrix(&seed, MATRIX_A, m));
            let b = crop(matrix(&seed, MATRIX_B, m));
            assert_eq!(gemm_i8(&a, &b, n), naive_product(&a, &b, n), "n = {n}");
        }
    }

    #[test]
    fn extreme_values() {
        let n = 256;
        let a = vec![-128i8; n * n];
        let b = vec![-128i8; n * n];
        assert!(gemm_i8(&a, &b, n).iter().all(|&v| v == 256 * 16384));
        let b: Vec<i8> = vec![127; n * n];
        assert!(gemm_i8(&a, &b, n).iter().all(|&v| v == -256 * 128 * 127));
    }
}
