//! The seeded matrix generator both sides run: the worker (CPU, or on the GPU through the CUDA
//! twin in `generator.cu`) to build the challenge's A and B, the verifier to rebuild the rows it
//! checks. Values must be bit-identical everywhere, so the function is counter-based (no state,
//! no floating point): element (row, col) of a matrix is byte `col % 8` (little-endian) of
//! `word(key, matrix, row, col / 8)` read as `i8`.
//!
//! It is a SplitMix64-style mix, not a cryptographic PRF: the worker learns the seed with the
//! challenge anyway. What matters is that it is fixed, fast on both sides, and its output has
//! no structure (low rank, repeats) that would let a prover skip the multiplication. The
//! 32-byte seed comes from the orchestrator's CSPRNG, so the worker cannot precompute answers.

/// Matrix ids mixed into the counter.
pub const MATRIX_A: u32 = 0;
pub const MATRIX_B: u32 = 1;

/// The CUDA twin of [`word`]: `__device__ unsigned long long gpumesh_word(...)`. Keep the two in
/// step; the test vectors below pin both (the GPU check compares GPU output with them).
pub const CUDA_SOURCE: &str = include_str!("generator.cu");

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// The seed as four little-endian u64 key words.
pub fn key_from_seed(seed: &[u8; 32]) -> [u64; 4] {
    let mut key = [0u64; 4];
    for (word, bytes) in key.iter_mut().zip(seed.chunks_exact(8)) {
        let mut le = [0u8; 8];
        le.copy_from_slice(bytes);
        *word = u64::from_le_bytes(le);
    }
    key
}

#[inline(always)]
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Eight int8 values of `matrix`, row `row`, columns `8 * block .. 8 * block + 8`.
/// The counter packs (matrix, row, block) into disjoint bit ranges: matrix in bits 48..,
/// row in 24..48, block in 0..24, so every element of every challenge size has its own counter.
#[inline(always)]
pub fn word(key: &[u64; 4], matrix: u32, row: u32, block: u32) -> u64 {
    let counter = (u64::from(matrix) << 48)
        | (u64::from(row & 0xFF_FFFF) << 24)
        | u64::from(block & 0xFF_FFFF);
    let z =
        mix64((counter.wrapping_mul(GOLDEN) ^ key[0]).wrapping_add(GOLDEN)).wrapping_add(key[1]);
    mix64(z ^ key[2]) ^ key[3]
}

/// Fills `out` with `matrix[row][col0 .. col0 + out.len()]`; `col0` and `out.len()` are
/// multiples of 8.
#[inline(always)]
pub fn fill_row(key: &[u64; 4], matrix: u32, row: u32, col0: usize, out: &mut [i8]) {
    debug_assert!(col0.is_multiple_of(8) && out.len().is_multiple_of(8));
    let first_block = (col0 / 8) as u32;
    for (i, chunk) in out.chunks_exact_mut(8).enumerate() {
        let bytes = word(key, matrix, row, first_block + i as u32).to_le_bytes();
        for (dst, src) in chunk.iter_mut().zip(bytes) {
            *dst = src as i8;
        }
    }
}

/// Like [`fill_row`], widened to i32 for the exact accumulation kernels.
#[inline(always)]
pub fn fill_row_i32(key: &[u64; 4], matrix: u32, row: u32, col0: usize, out: &mut [i32]) {
    debug_assert!(col0.is_multiple_of(8) && out.len().is_multiple_of(8));
    let first_block = (col0 / 8) as u32;
    for (i, chunk) in out.chunks_exact_mut(8).enumerate() {
        let bytes = word(key, matrix, row, first_block + i as u32).to_le_bytes();
        for (dst, src) in chunk.iter_mut().zip(bytes) {
            *dst = i32::from(src as i8);
        }
    }
}

/// The whole `n x n` matrix, row-major.
pub fn matrix(seed: &[u8; 32], matrix: u32, n: usize) -> Vec<i8> {
    let key = key_from_seed(seed);
    let mut out = vec![0i8; n * n];
    for (row, dst) in out.chunks_exact_mut(n).enumerate() {
        fill_row(&key, matrix, row as u32, 0, dst);
    }
    out
}

/// Fixed generator outputs: `word` of (zero key, A, 0, 0), (zero key, B, 0, 0), then with the
/// key of seed bytes 0..32: (A, 0, 0), (A, 1, 0), (A, 0, 1), (B, 16383, 2047). The GPU check
/// compares the CUDA twin against these.
/// (computed by an independent Python transcription of the mix)
pub const TEST_VECTORS: [u64; 6] = [
    0x4821_8226_FF3C_D4BF,
    0xAD5E_F3F0_FC17_988E,
    0x78B1_5AE0_F02B_9C8F,
    0x70BA_3B1F_B864_6C5A,
    0x2C53_F143_FA46_98F3,
    0x3B68_22BD_57B9_5744,
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Fixed vectors: a change here changes every challenge answer; the CUDA twin must match.
    #[test]
    fn test_vectors() {
        let zero = key_from_seed(&[0u8; 32]);
        let mut seed = [0u8; 32];
        for (i, b) in seed.iter_mut().enumerate() {
            *b = i as u8;
        }
        let counting = key_from_seed(&seed);
        assert_eq!(counting[0], 0x0706_0504_0302_0100);
        let got = [
            word(&zero, MATRIX_A, 0, 0),
            word(&zero, MATRIX_B, 0, 0),
            word(&counting, MATRIX_A, 0, 0),
            word(&counting, MATRIX_A, 1, 0),
            word(&counting, MATRIX_A, 0, 1),
            word(&counting, MATRIX_B, 16383, 2047),
        ];
        assert_eq!(got, TEST_VECTORS);
    }

    #[test]
    fn fill_row_matches_word_bytes() {
        let key = key_from_seed(&[7u8; 32]);
        let mut row = [0i8; 24];
        fill_row(&key, MATRIX_B, 5, 16, &mut row);
        let w = word(&key, MATRIX_B, 5, 3).to_le_bytes();
        assert_eq!(row[8..16].iter().map(|&v| v as u8).collect::<Vec<_>>(), w);
        let mut wide = [0i32; 24];
        fill_row_i32(&key, MATRIX_B, 5, 16, &mut wide);
        assert!(row.iter().zip(wide).all(|(&a, b)| i32::from(a) == b));
    }

    #[test]
    fn values_look_uniform() {
        // A crude check that all 256 values occur about equally often: a broken mix shows
        // up here long before it shows up as a soundness problem.
        let m = matrix(&[42u8; 32], MATRIX_A, 256);
        let mut counts = [0u32; 256];
        for v in &m {
            counts[*v as u8 as usize] += 1;
        }
        let expected = (256 * 256 / 256) as f64;
        assert!(
            counts
                .iter()
                .all(|&c| (c as f64 - expected).abs() < expected * 0.4)
        );
        let b = matrix(&[42u8; 32], MATRIX_B, 256);
        assert_ne!(m, b);
    }
}
