//! Exact int8 × int8 → int32 matrix products on the CPU's dot-product instructions, shared by the
//! worker's GEMM and the verifier. The kernel is chosen at run time from what the CPU has:
//!
//! | kernel | instruction | per instruction | tile (rows × columns) |
//! | --- | --- | --- | --- |
//! | [`Kernel::Avx512Vnni`] | `vpdpbusd` zmm (AVX-512 VNNI) | 64 multiply-adds | 6 × 64 |
//! | [`Kernel::AvxVnni`] | `vpdpbusd` ymm (AVX-VNNI) | 32 multiply-adds | 6 × 16 |
//! | [`Kernel::Avx2`] | `vpmaddwd` ymm (AVX2) | 16 multiply-adds | 2 × 16 |
//! | [`Kernel::Portable`] | whatever the compiler makes of 32-bit loops | | 32 × 256 |
//!
//! `vpdpbusd` multiplies *unsigned* bytes by *signed* bytes and adds each group of four products
//! into a 32-bit lane. The challenge matrices are signed (every byte value occurs), so B is
//! stored biased, `b + 128` in `0..=255`, and A stays signed:
//! `Σ a·(b + 128) = Σ a·b + 128·Σ a`, so `C = C' − 128 · rowsum(A)`, one subtraction per
//! output. Bounds: each biased product is at most 128 · 255 in magnitude, so a 32-bit lane holds
//! `k · 32 640 < 2^31` for `k ≤ 65 536` (the protocol's largest n) without wrapping; past that,
//! all arithmetic wraps modulo 2^32 and the result is still exact whenever the true product
//! fits in an i32 (`k < 2^17`). `vpdpbusd` (not the saturating `vpdpbusds`) never saturates.
//! The AVX2 kernel widens the same biased bytes to 16 bits and uses `vpmaddwd`, whose pair sums
//! (at most 2 · 128 · 255) cannot saturate either. So every kernel returns the same bits.
//!
//! Packed operands (SIMD kernels): B in column panels of the kernel's width, four k per step,
//! each step `[column][4 bytes]`, zero-padded (stored as 128) past k and n; A in tiles of the
//! kernel's rows, `[step][row][4 values]` (i8, or i16 for AVX2), zero-padded, with its row sums.

use std::sync::OnceLock;

/// An int8 product kernel. [`Kernel::best`] picks the fastest this CPU runs.
/// The host CPU's model name as `/proc/cpuinfo` gives it (none elsewhere): what the worker's
/// CPU backend reports as its device and what every benchmark prints beside its figures.
pub fn cpu_model() -> Option<String> {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// AVX-512 VNNI `vpdpbusd` on 512-bit registers (Cascade Lake, Ice Lake, Sapphire Rapids,
    /// Zen 4 and later).
    Avx512Vnni,
    /// AVX-VNNI `vpdpbusd` on 256-bit registers (Alder Lake and later without AVX-512).
    AvxVnni,
    /// AVX2 `vpmaddwd` on bytes widened to 16 bits (Haswell and later, Zen 1–3).
    Avx2,
    /// Plain Rust widened to 32 bits; the compiler vectorizes it for the target. Every CPU.
    Portable,
}

/// Steps of four k the tile loops run before reloading the output tile: 64 steps of a 64-column
/// panel are 16 KiB of B, so the panel slice stays in L1 while every row tile of a block uses it.
const K_BLOCK_QUADS: usize = 64;

impl Kernel {
    /// All kernels, fastest first.
    pub const ALL: [Kernel; 4] = [
        Kernel::Avx512Vnni,
        Kernel::AvxVnni,
        Kernel::Avx2,
        Kernel::Portable,
    ];

    /// The fastest kernel this CPU runs (detected once).
    pub fn best() -> Kernel {
        static BEST: OnceLock<Kernel> = OnceLock::new();
        *BEST.get_or_init(|| {
            Kernel::ALL
                .into_iter()
                .find(|k| k.is_available())
                .unwrap_or(Kernel::Portable)
        })
    }

    /// The kernels this CPU runs, fastest first (always ends with [`Kernel::Portable`]).
    pub fn available() -> Vec<Kernel> {
        Kernel::ALL
            .into_iter()
            .filter(|k| k.is_available())
            .collect()
    }

    /// Whether this CPU has the instructions the kernel needs.
    pub fn is_available(self) -> bool {
        match self {
            Kernel::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Vnni => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::AvxVnni => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("avxvnni")
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kernel::Avx512Vnni => "avx512-vnni",
            Kernel::AvxVnni => "avx-vnni",
            Kernel::Avx2 => "avx2",
            Kernel::Portable => "portable",
        }
    }

    /// Rows and columns of C one micro-kernel call computes.
    pub fn tile(self) -> (usize, usize) {
        match self {
            Kernel::Avx512Vnni => (6, 64),
            Kernel::AvxVnni => (6, 16),
            Kernel::Avx2 => (2, 16),
            Kernel::Portable => (crate::exact::ROW_BLOCK, crate::exact::COL_BLOCK),
        }
    }

    /// Bytes one row of a packed A tile takes per step of four k.
    fn a_bytes(self) -> usize {
        match self {
            Kernel::Avx2 => 8,
            _ => 4,
        }
    }
}

impl std::fmt::Display for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Rows of A packed for a SIMD kernel: tiles of the kernel's rows, `[step][row][values]`, with
/// the row sums the bias correction needs.
#[derive(Clone, Debug)]
pub struct PackedA {
    kernel: Kernel,
    rows: usize,
    quads: usize,
    data: Vec<u8>,
    row_sums: Vec<i32>,
}

impl PackedA {
    /// Packs `rows` rows of `k` values from `a` (row-major, row stride `lda`).
    ///
    /// # Panics
    /// If `kernel` is [`Kernel::Portable`] (it has its own layout) or this CPU does not run it,
    /// or `a` is too short.
    pub fn new(kernel: Kernel, a: &[i8], rows: usize, k: usize, lda: usize) -> Self {
        assert!(
            rows == 0 || a.len() >= (rows - 1) * lda + k,
            "A is too short"
        );
        let mut packed = PackedA::zeroed(kernel, rows, k);
        if packed.quads == 0 {
            return packed;
        }
        let (mr, _) = kernel.tile();
        let eb = kernel.a_bytes();
        let full = k / 4;
        let tile_len = packed.quads * mr * eb;
        // Tile by tile, step by step: the writes are sequential and each row is read in order.
        for (t, tile) in packed.data.chunks_exact_mut(tile_len).enumerate() {
            let r0 = t * mr;
            let tile_rows: Vec<&[i8]> = (r0..rows.min(r0 + mr))
                .map(|r| &a[r * lda..r * lda + k])
                .collect();
            for (q, step) in tile.chunks_exact_mut(mr * eb).enumerate().take(full) {
                for (row, dst) in tile_rows.iter().zip(step.chunks_exact_mut(eb)) {
                    if let Ok(v) = <[i8; 4]>::try_from(&row[4 * q..4 * q + 4]) {
                        put(dst, v);
                    }
                }
            }
            if full < packed.quads {
                let step = &mut tile[full * mr * eb..];
                for (row, dst) in tile_rows.iter().zip(step.chunks_exact_mut(eb)) {
                    let mut v = [0i8; 4];
                    for (d, &x) in v.iter_mut().zip(&row[4 * full..]) {
                        *d = x;
                    }
                    put(dst, v);
                }
            }
        }
        for (r, sum) in packed.row_sums.iter_mut().enumerate() {
            *sum = row_sum(&a[r * lda..r * lda + k]);
        }
        packed
    }

    fn zeroed(kernel: Kernel, rows: usize, k: usize) -> Self {
        assert!(
            kernel != Kernel::Portable,
            "the portable kernel packs its own A"
        );
        assert!(
            kernel.is_available(),
            "this CPU does not run the {kernel} kernel"
        );
        let (mr, _) = kernel.tile();
        let quads = k.div_ceil(4);
        let tiles = rows.div_ceil(mr);
        PackedA {
            kernel,
            rows,
            quads,
            data: vec![0; tiles * quads * mr * kernel.a_bytes()],
            row_sums: vec![0; rows],
        }
    }

    /// Writes row `r` (at most `4 · quads` values; the rest stay zero). For a few rows (the
    /// verifier's); [`PackedA::new`] packs whole tiles faster.
    fn set_row(&mut self, r: usize, row: &[i8]) {
        if self.quads == 0 {
            return;
        }
        let (mr, _) = self.kernel.tile();
        let eb = self.kernel.a_bytes();
        let stride = mr * eb;
        let base = (r / mr) * self.quads * stride + (r % mr) * eb;
        for (q, four) in row.chunks(4).enumerate() {
            let mut v = [0i8; 4];
            for (d, &x) in v.iter_mut().zip(four) {
                *d = x;
            }
            let at = base + q * stride;
            put(&mut self.data[at..at + eb], v);
        }
        self.row_sums[r] = row_sum(row);
    }

    pub fn rows(&self) -> usize {
        self.rows
    }
}

/// Four values of A into a packed step: as bytes (`dst` of 4) or as little-endian i16 (`dst` of
/// 8, the AVX2 kernel's). Fixed-size copies compile to single moves.
#[inline(always)]
fn put(dst: &mut [u8], v: [i8; 4]) {
    if let Ok(d) = <&mut [u8; 4]>::try_from(&mut *dst) {
        *d = v.map(|x| x as u8);
    } else if let Ok(d) = <&mut [u8; 8]>::try_from(dst) {
        let w = v.map(|x| i16::from(x).to_le_bytes());
        *d = [
            w[0][0], w[0][1], w[1][0], w[1][1], w[2][0], w[2][1], w[3][0], w[3][1],
        ];
    }
}

fn row_sum(row: &[i8]) -> i32 {
    row.iter()
        .fold(0i32, |sum, &v| sum.wrapping_add(i32::from(v)))
}

/// B packed for a SIMD kernel: column panels of the kernel's width, four k per step, each byte
/// `b + 128`.
#[derive(Clone, Debug)]
pub struct PackedB {
    kernel: Kernel,
    n: usize,
    quads: usize,
    data: Vec<u8>,
}

impl PackedB {
    /// Packs `b` (row-major `k × n`).
    ///
    /// # Panics
    /// If `kernel` is [`Kernel::Portable`] or this CPU does not run it, or `b` is shorter than
    /// `k · n`.
    pub fn new(kernel: Kernel, b: &[i8], k: usize, n: usize) -> Self {
        assert!(b.len() >= k * n, "B is too short");
        let mut packed = PackedB::zeroed(kernel, k, n);
        let (_, nr) = kernel.tile();
        let panel_len = packed.panel_len();
        if panel_len == 0 {
            return packed;
        }
        for (p, panel) in packed.data.chunks_exact_mut(panel_len).enumerate() {
            let col0 = p * nr;
            let width = nr.min(n - col0);
            for (q, step) in panel.chunks_exact_mut(nr * 4).enumerate() {
                #[cfg(target_arch = "x86_64")]
                if kernel == Kernel::Avx512Vnni && width == 64 && 4 * q + 4 <= k {
                    let row = |t: usize| &b[(4 * q + t) * n + col0..(4 * q + t) * n + col0 + 64];
                    // SAFETY: the kernel is available (AVX-512 F/BW); four rows of 64 bytes
                    // and a step of 256 bytes.
                    unsafe { x86::pack_step_64([row(0), row(1), row(2), row(3)], step) };
                    continue;
                }
                let rows: [Option<&[i8]>; 4] = std::array::from_fn(|t| {
                    let row = 4 * q + t;
                    (row < k).then(|| &b[row * n + col0..row * n + col0 + width])
                });
                pack_step(&rows, step);
            }
        }
        packed
    }

    fn zeroed(kernel: Kernel, k: usize, n: usize) -> Self {
        assert!(
            kernel != Kernel::Portable,
            "the portable kernel packs its own B"
        );
        assert!(
            kernel.is_available(),
            "this CPU does not run the {kernel} kernel"
        );
        let (_, nr) = kernel.tile();
        let quads = k.div_ceil(4);
        let panels = n.div_ceil(nr);
        PackedB {
            kernel,
            n,
            quads,
            data: vec![0x80; panels * quads * nr * 4],
        }
    }

    fn panel_len(&self) -> usize {
        self.quads * self.kernel.tile().1 * 4
    }

    pub fn panels(&self) -> usize {
        self.n.div_ceil(self.kernel.tile().1)
    }

    fn panel(&self, p: usize) -> &[u8] {
        let len = self.panel_len();
        &self.data[p * len..(p + 1) * len]
    }
}

/// One step of a panel from four rows of B (`None` past k): `step[4j + t] = row_t[j] + 128`.
fn pack_step(rows: &[Option<&[i8]>; 4], step: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if let [Some(r0), Some(r1), Some(r2), Some(r3)] = rows
        && r0.len() == 16
        && [r1.len(), r2.len(), r3.len()] == [16; 3]
        && step.len() >= 64
    {
        // SSE2 is part of x86_64; the lengths are checked.
        x86::pack_step_16([r0, r1, r2, r3], step);
        return;
    }
    for (t, row) in rows.iter().enumerate() {
        if let Some(row) = row {
            for (j, &v) in row.iter().enumerate() {
                step[4 * j + t] = (v as u8) ^ 0x80;
            }
        }
    }
}

/// `c[i · ldc + j] = (A · B)[i][j]` for every row of `a` and the columns of panels `panels`
/// of `b`; `c` starts at column 0 of the first row.
///
/// # Panics
/// If the operands were packed for different kernels or different k, or `c` is too short.
pub fn multiply(
    a: &PackedA,
    b: &PackedB,
    panels: std::ops::Range<usize>,
    c: &mut [i32],
    ldc: usize,
) {
    assert_eq!(a.kernel, b.kernel, "operands packed for different kernels");
    assert_eq!(a.quads, b.quads, "operands packed for different k");
    let (_, nr) = a.kernel.tile();
    assert!(panels.end <= b.panels());
    assert!(a.rows == 0 || c.len() >= (a.rows - 1) * ldc + b.n.min(panels.end * nr));
    for p in panels {
        let col0 = p * nr;
        let cols = nr.min(b.n - col0);
        let panel = b.panel(p);
        for q0 in (0..a.quads).step_by(K_BLOCK_QUADS) {
            let quads = K_BLOCK_QUADS.min(a.quads - q0);
            let slice = &panel[q0 * nr * 4..(q0 + quads) * nr * 4];
            // SAFETY: the slice holds `quads` steps of the panel, `a` holds steps q0.. of
            // every row, and `c` holds every row's columns col0..col0 + cols (checked above).
            unsafe { panel_product(a, q0, slice, quads, &mut c[col0..], ldc, cols, q0 == 0) };
        }
    }
}

/// Every row tile of `a` against one panel slice: steps `q0 .. q0 + quads` of A with the
/// `quads` steps in `b`. `first` overwrites C with the bias-corrected sum; otherwise adds.
///
/// # Safety
/// `b` holds `quads` steps of the kernel's panel width; `c` holds `a.rows` rows of stride `ldc`
/// with at least `cols` columns each; the CPU runs `a.kernel`.
#[allow(clippy::too_many_arguments)]
unsafe fn panel_product(
    a: &PackedA,
    q0: usize,
    b: &[u8],
    quads: usize,
    c: &mut [i32],
    ldc: usize,
    cols: usize,
    first: bool,
) {
    let (mr, _) = a.kernel.tile();
    let eb = a.kernel.a_bytes();
    for t in 0..a.rows.div_ceil(mr) {
        let r0 = t * mr;
        let rows = mr.min(a.rows - r0);
        let at = t * a.quads * mr * eb + q0 * mr * eb;
        let tile = Tile {
            a: a.data[at..].as_ptr(),
            b: b.as_ptr(),
            quads,
            c: c[r0 * ldc..].as_mut_ptr(),
            ldc,
            cols,
            sums: a.row_sums[r0..].as_ptr(),
            first,
        };
        // SAFETY: forwarded from the caller; the tile's rows are within `a.rows`.
        unsafe { run_tile(a.kernel, rows, &tile) };
    }
}

/// One micro-kernel call: `rows` (≤ the kernel's) rows of A from `a`, one panel slice from `b`.
struct Tile {
    a: *const u8,
    b: *const u8,
    quads: usize,
    c: *mut i32,
    ldc: usize,
    cols: usize,
    sums: *const i32,
    first: bool,
}

/// # Safety
/// As [`panel_product`]; `rows` is at most the kernel's tile rows.
unsafe fn run_tile(kernel: Kernel, rows: usize, t: &Tile) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the caller checked that the CPU runs `kernel` and that the pointers cover the tile.
    unsafe {
        match (kernel, rows) {
            (Kernel::Avx512Vnni, 1) => x86::tile_avx512::<1>(t),
            (Kernel::Avx512Vnni, 2) => x86::tile_avx512::<2>(t),
            (Kernel::Avx512Vnni, 3) => x86::tile_avx512::<3>(t),
            (Kernel::Avx512Vnni, 4) => x86::tile_avx512::<4>(t),
            (Kernel::Avx512Vnni, 5) => x86::tile_avx512::<5>(t),
            (Kernel::Avx512Vnni, _) => x86::tile_avx512::<6>(t),
            (Kernel::AvxVnni, 1) => x86::tile_avxvnni::<1>(t),
            (Kernel::AvxVnni, 2) => x86::tile_avxvnni::<2>(t),
            (Kernel::AvxVnni, 3) => x86::tile_avxvnni::<3>(t),
            (Kernel::AvxVnni, 4) => x86::tile_avxvnni::<4>(t),
            (Kernel::AvxVnni, 5) => x86::tile_avxvnni::<5>(t),
            (Kernel::AvxVnni, _) => x86::tile_avxvnni::<6>(t),
            (Kernel::Avx2, 1) => x86::tile_avx2::<1>(t),
            (Kernel::Avx2, _) => x86::tile_avx2::<2>(t),
            (Kernel::Portable, _) => unreachable!("the portable kernel has no tiles here"),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (kernel, rows, t);
        unreachable!("SIMD kernels exist only on x86_64");
    }
}

/// One panel of the verifier's B, generated from the seed straight into the kernel's layout:
/// `rows_of_product` fills it for each block of steps and columns and multiplies at once, while
/// it is in L1, so the n × n matrix never exists in memory.
pub(crate) struct GeneratedB {
    kernel: Kernel,
    quads: usize,
    data: Vec<u8>,
}

impl GeneratedB {
    /// Room for one panel of `quads` steps.
    ///
    /// # Panics
    /// If the CPU does not run `kernel`, or it is [`Kernel::Portable`].
    pub fn new(kernel: Kernel, quads: usize) -> Self {
        assert!(kernel != Kernel::Portable && kernel.is_available());
        let mut b = GeneratedB {
            kernel,
            quads: 0,
            data: Vec::new(),
        };
        b.resize(quads);
        b
    }

    /// Makes the panel `quads` steps long.
    pub fn resize(&mut self, quads: usize) {
        let (_, nr) = self.kernel.tile();
        self.quads = quads;
        self.data.resize(quads * nr * 4, 0x80);
    }

    /// Fills the panel with B rows `4 · q0 ..` (its steps) and columns `col0 .. col0 + width`
    /// (width ≤ the panel width, a multiple of 8) of `matrix`.
    pub fn fill(
        &mut self,
        key: &[u64; 4],
        matrix: u32,
        q0: usize,
        col0: usize,
        width: usize,
        scratch: &mut Vec<i8>,
    ) {
        let (_, nr) = self.kernel.tile();
        assert!(width <= nr && width.is_multiple_of(8) && col0.is_multiple_of(8));
        #[cfg(target_arch = "x86_64")]
        {
            if self.kernel == Kernel::Avx512Vnni && width == 64 && x86::has_avx512_generator() {
                // SAFETY: checked the CPU features; the panel holds `quads` steps of 64 columns.
                unsafe { x86::generate_panel(key, matrix, q0, self.quads, col0, &mut self.data) };
                return;
            }
            if nr == 16 && width == 16 {
                // SAFETY: the 16-wide kernels need AVX2, checked when this buffer was made; the
                // panel holds `quads` steps of 16 columns.
                unsafe {
                    x86::generate_panel_16(key, matrix, q0, self.quads, col0, &mut self.data)
                };
                return;
            }
        }
        if width < nr {
            self.data.fill(0x80);
        }
        scratch.resize(4 * width, 0);
        for (q, step) in self.data.chunks_exact_mut(nr * 4).enumerate() {
            for (t, row) in scratch.chunks_exact_mut(width).enumerate() {
                let r = (4 * (q0 + q) + t) as u32;
                crate::generator::fill_row(key, matrix, r, col0, row);
            }
            let rows: [Option<&[i8]>; 4] =
                std::array::from_fn(|t| Some(&scratch[t * width..(t + 1) * width]));
            pack_step(&rows, step);
        }
    }

    /// Every row of `a` times the panel, into `c` (stride `ldc`, starting at the panel's first
    /// column, `cols` columns): steps q0.. of A; the first block (q0 = 0) overwrites, later
    /// blocks add.
    pub fn multiply(&self, a: &PackedA, q0: usize, c: &mut [i32], ldc: usize, cols: usize) {
        assert_eq!(a.kernel, self.kernel);
        assert!(q0 + self.quads <= a.quads);
        let (_, nr) = self.kernel.tile();
        assert!(cols <= nr && (a.rows == 0 || c.len() >= (a.rows - 1) * ldc + cols));
        // SAFETY: the panel holds `quads` steps; `a` has steps q0..q0 + quads; `c` is checked.
        unsafe { panel_product(a, q0, &self.data, self.quads, c, ldc, cols, q0 == 0) };
    }
}

/// A packed for the verifier: its rows generated from the seed.
pub(crate) fn pack_generated_rows(
    kernel: Kernel,
    key: &[u64; 4],
    rows: &[u32],
    n: usize,
) -> PackedA {
    let mut packed = PackedA::zeroed(kernel, rows.len(), n);
    let mut row = vec![0i8; n];
    for (i, &r) in rows.iter().enumerate() {
        crate::generator::fill_row(key, crate::generator::MATRIX_A, r, 0, &mut row);
        packed.set_row(i, &row);
    }
    packed
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The micro-kernels and the vectorized generator. Each `#[target_feature]` function is
    //! only called after `Kernel::is_available` (or `has_avx512_generator`) said yes.

    use super::Tile;
    use std::arch::x86_64::*;

    const VNNI_ROWS: usize = 6;
    const AVX2_ROWS: usize = 2;

    /// Mask of the first `n` (≤ 16) 32-bit lanes.
    fn mask16(n: usize) -> __mmask16 {
        if n >= 16 {
            0xFFFF
        } else {
            ((1u32 << n) - 1) as u16
        }
    }

    /// # Safety
    /// AVX-512 F/BW/VNNI present; `t` covers R rows × `t.quads` steps and `t.cols` columns.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn tile_avx512<const R: usize>(t: &Tile) {
        let mut acc = [[_mm512_setzero_si512(); 4]; R];
        let (mut ap, mut bp) = (t.a, t.b);
        for _ in 0..t.quads {
            // SAFETY: 256 bytes of B and R · 4 bytes of A per step are in bounds (caller).
            unsafe {
                let b0 = _mm512_loadu_si512(bp.cast());
                let b1 = _mm512_loadu_si512(bp.add(64).cast());
                let b2 = _mm512_loadu_si512(bp.add(128).cast());
                let b3 = _mm512_loadu_si512(bp.add(192).cast());
                for (r, acc) in acc.iter_mut().enumerate() {
                    let a = _mm512_set1_epi32(ap.add(4 * r).cast::<i32>().read_unaligned());
                    acc[0] = _mm512_dpbusd_epi32(acc[0], b0, a);
                    acc[1] = _mm512_dpbusd_epi32(acc[1], b1, a);
                    acc[2] = _mm512_dpbusd_epi32(acc[2], b2, a);
                    acc[3] = _mm512_dpbusd_epi32(acc[3], b3, a);
                }
                ap = ap.add(4 * VNNI_ROWS);
                bp = bp.add(256);
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            // SAFETY: row r < R of the tile; columns below t.cols (masked).
            unsafe {
                let row = t.c.add(r * t.ldc);
                let bias = _mm512_set1_epi32(t.sums.add(r).read().wrapping_mul(128));
                for (v, &sum) in acc.iter().enumerate() {
                    if 16 * v >= t.cols {
                        break;
                    }
                    let m = mask16(t.cols - 16 * v);
                    let at = row.add(16 * v);
                    let value = if t.first {
                        _mm512_sub_epi32(sum, bias)
                    } else {
                        _mm512_add_epi32(_mm512_maskz_loadu_epi32(m, at), sum)
                    };
                    _mm512_mask_storeu_epi32(at, m, value);
                }
            }
        }
    }

    /// Lane mask for `_mm256_maskstore_epi32`: the first `n` (≤ 8) lanes.
    #[target_feature(enable = "avx2")]
    fn mask8(n: usize) -> __m256i {
        let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        _mm256_cmpgt_epi32(_mm256_set1_epi32(n.min(8) as i32), lanes)
    }

    /// Stores (first) or adds (later) eight columns of one row.
    ///
    /// # Safety
    /// AVX2 present; `at` points at `cols` (≥ 1) writable columns.
    #[target_feature(enable = "avx2")]
    unsafe fn store8(at: *mut i32, cols: usize, sum: __m256i, bias: __m256i, first: bool) {
        // SAFETY: the mask covers only the columns the caller vouched for.
        unsafe {
            let m = mask8(cols);
            let value = if first {
                _mm256_sub_epi32(sum, bias)
            } else {
                _mm256_add_epi32(_mm256_maskload_epi32(at, m), sum)
            };
            _mm256_maskstore_epi32(at, m, value);
        }
    }

    /// # Safety
    /// AVX2 and AVX-VNNI present; `t` covers R rows × `t.quads` steps and `t.cols` columns.
    #[target_feature(enable = "avx2,avxvnni")]
    pub(super) unsafe fn tile_avxvnni<const R: usize>(t: &Tile) {
        let mut acc = [[_mm256_setzero_si256(); 2]; R];
        let (mut ap, mut bp) = (t.a, t.b);
        for _ in 0..t.quads {
            // SAFETY: 64 bytes of B and R · 4 bytes of A per step are in bounds (caller).
            unsafe {
                let b0 = _mm256_loadu_si256(bp.cast());
                let b1 = _mm256_loadu_si256(bp.add(32).cast());
                for (r, acc) in acc.iter_mut().enumerate() {
                    let a = _mm256_set1_epi32(ap.add(4 * r).cast::<i32>().read_unaligned());
                    acc[0] = _mm256_dpbusd_avx_epi32(acc[0], b0, a);
                    acc[1] = _mm256_dpbusd_avx_epi32(acc[1], b1, a);
                }
                ap = ap.add(4 * VNNI_ROWS);
                bp = bp.add(64);
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            // SAFETY: row r < R; columns below t.cols.
            unsafe {
                let row = t.c.add(r * t.ldc);
                let bias = _mm256_set1_epi32(t.sums.add(r).read().wrapping_mul(128));
                for (v, &sum) in acc.iter().enumerate() {
                    if 8 * v < t.cols {
                        store8(row.add(8 * v), t.cols - 8 * v, sum, bias, t.first);
                    }
                }
            }
        }
    }

    /// # Safety
    /// AVX2 present; `t` covers R rows × `t.quads` steps and `t.cols` columns.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn tile_avx2<const R: usize>(t: &Tile) {
        // Lane 2j + h of acc[r][v] sums the products of k pair h for column 4v + j.
        let mut acc = [[_mm256_setzero_si256(); 4]; R];
        let (mut ap, mut bp) = (t.a, t.b);
        for _ in 0..t.quads {
            // SAFETY: 64 bytes of B and R · 8 bytes of A per step are in bounds (caller).
            unsafe {
                let b: [__m256i; 4] = std::array::from_fn(|v| {
                    _mm256_cvtepu8_epi16(_mm_loadu_si128(bp.add(16 * v).cast()))
                });
                for (r, acc) in acc.iter_mut().enumerate() {
                    let a = _mm256_set1_epi64x(ap.add(8 * r).cast::<i64>().read_unaligned());
                    for (acc, &b) in acc.iter_mut().zip(&b) {
                        *acc = _mm256_add_epi32(*acc, _mm256_madd_epi16(b, a));
                    }
                }
                ap = ap.add(8 * AVX2_ROWS);
                bp = bp.add(64);
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            // Pairwise sums give columns 0, 1, 4, 5 | 2, 3, 6, 7; the permute puts them in order.
            let lo = _mm256_permute4x64_epi64::<0xD8>(_mm256_hadd_epi32(acc[0], acc[1]));
            let hi = _mm256_permute4x64_epi64::<0xD8>(_mm256_hadd_epi32(acc[2], acc[3]));
            // SAFETY: row r < R; columns below t.cols.
            unsafe {
                let row = t.c.add(r * t.ldc);
                let bias = _mm256_set1_epi32(t.sums.add(r).read().wrapping_mul(128));
                store8(row, t.cols, lo, bias, t.first);
                if t.cols > 8 {
                    store8(row.add(8), t.cols - 8, hi, bias, t.first);
                }
            }
        }
    }

    /// Whether the vectorized generator can run (64-bit lane multiplies need AVX-512 DQ).
    pub(super) fn has_avx512_generator() -> bool {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512dq")
    }

    #[target_feature(enable = "avx512f,avx512dq")]
    fn mix64(z: __m512i) -> __m512i {
        let z = _mm512_mullo_epi64(
            _mm512_xor_si512(z, _mm512_srli_epi64::<30>(z)),
            _mm512_set1_epi64(0xBF58_476D_1CE4_E5B9_u64 as i64),
        );
        let z = _mm512_mullo_epi64(
            _mm512_xor_si512(z, _mm512_srli_epi64::<27>(z)),
            _mm512_set1_epi64(0x94D0_49BB_1331_11EB_u64 as i64),
        );
        _mm512_xor_si512(z, _mm512_srli_epi64::<31>(z))
    }

    /// Eight words of `generator::word` for one row, blocks `block .. block + 8`.
    #[target_feature(enable = "avx512f,avx512dq")]
    fn words(key: &[u64; 4], matrix: u32, row: u32, block: u32) -> __m512i {
        const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
        let base = (u64::from(matrix) << 48)
            | (u64::from(row & 0xFF_FFFF) << 24)
            | u64::from(block & 0xFF_FFFF);
        // counter · GOLDEN for eight consecutive counters (blocks stay below 2^24 here).
        let start = base.wrapping_mul(GOLDEN);
        let steps = _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7);
        let c = _mm512_add_epi64(
            _mm512_set1_epi64(start as i64),
            _mm512_mullo_epi64(steps, _mm512_set1_epi64(GOLDEN as i64)),
        );
        let x = _mm512_add_epi64(
            _mm512_xor_si512(c, _mm512_set1_epi64(key[0] as i64)),
            _mm512_set1_epi64(GOLDEN as i64),
        );
        let z = _mm512_add_epi64(mix64(x), _mm512_set1_epi64(key[1] as i64));
        _mm512_xor_si512(
            mix64(_mm512_xor_si512(z, _mm512_set1_epi64(key[2] as i64))),
            _mm512_set1_epi64(key[3] as i64),
        )
    }

    /// Rows 4 · q0 .. 4 · (q0 + quads), columns col0 .. col0 + 64 of `matrix`, packed into a
    /// 64-wide panel: four rows at a time, bytes interleaved by two rounds of unpacks, the
    /// 128-bit lanes put back in column order, biased by 128.
    ///
    /// # Safety
    /// AVX-512 F/BW/DQ present; `panel` holds `quads` steps of 256 bytes.
    #[target_feature(enable = "avx512f,avx512bw,avx512dq")]
    pub(super) unsafe fn generate_panel(
        key: &[u64; 4],
        matrix: u32,
        q0: usize,
        quads: usize,
        col0: usize,
        panel: &mut [u8],
    ) {
        assert!(panel.len() >= quads * 256 && col0.is_multiple_of(8));
        let block = (col0 / 8) as u32;
        let bias = _mm512_set1_epi8(-128);
        // Two steps (eight rows) per round: eight independent multiply chains keep the 64-bit
        // multiplier busy where four would leave it waiting on their latency.
        let mut q = 0;
        while q < quads {
            let pair = (quads - q).min(2);
            let r = (4 * (q0 + q)) as u32;
            let w: [__m512i; 8] = std::array::from_fn(|i| {
                words(key, matrix, r + (i as u32).min(4 * pair as u32 - 1), block)
            });
            for s in 0..pair {
                let v = interleave4(w[4 * s], w[4 * s + 1], w[4 * s + 2], w[4 * s + 3]);
                let out = panel[(q + s) * 256..(q + s + 1) * 256].as_mut_ptr();
                for (i, v) in v.into_iter().enumerate() {
                    // SAFETY: 64 bytes at out + 64 i are inside the step.
                    unsafe {
                        _mm512_storeu_si512(out.add(64 * i).cast(), _mm512_xor_si512(v, bias))
                    };
                }
            }
            q += pair;
        }
    }

    /// One 16-column step from four rows of B: interleaved and biased (SSE2, always there).
    pub(super) fn pack_step_16(rows: [&[i8]; 4], step: &mut [u8]) {
        assert!(rows.iter().all(|r| r.len() >= 16) && step.len() >= 64);
        // SAFETY: SSE2 is part of the x86_64 baseline; lengths checked above.
        unsafe {
            let load = |r: &[i8]| _mm_loadu_si128(r.as_ptr().cast());
            let (r0, r1, r2, r3) = (load(rows[0]), load(rows[1]), load(rows[2]), load(rows[3]));
            let t0 = _mm_unpacklo_epi8(r0, r1);
            let t1 = _mm_unpackhi_epi8(r0, r1);
            let t2 = _mm_unpacklo_epi8(r2, r3);
            let t3 = _mm_unpackhi_epi8(r2, r3);
            let bias = _mm_set1_epi8(-128);
            let out = [
                _mm_unpacklo_epi16(t0, t2),
                _mm_unpackhi_epi16(t0, t2),
                _mm_unpacklo_epi16(t1, t3),
                _mm_unpackhi_epi16(t1, t3),
            ];
            for (i, v) in out.into_iter().enumerate() {
                _mm_storeu_si128(step.as_mut_ptr().add(16 * i).cast(), _mm_xor_si128(v, bias));
            }
        }
    }

    /// One 64-column step from four rows of B: interleaved and biased.
    ///
    /// # Safety
    /// AVX-512 F/BW present; each row holds 64 bytes and `step` 256.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn pack_step_64(rows: [&[i8]; 4], step: &mut [u8]) {
        assert!(rows.iter().all(|r| r.len() >= 64) && step.len() >= 256);
        // SAFETY: lengths checked above.
        unsafe {
            let load = |r: &[i8]| _mm512_loadu_si512(r.as_ptr().cast());
            let v = interleave4(load(rows[0]), load(rows[1]), load(rows[2]), load(rows[3]));
            let bias = _mm512_set1_epi8(-128);
            for (i, v) in v.into_iter().enumerate() {
                _mm512_storeu_si512(
                    step.as_mut_ptr().add(64 * i).cast(),
                    _mm512_xor_si512(v, bias),
                );
            }
        }
    }

    /// `x · c` modulo 2^64 in each 64-bit lane, from three 32-bit multiplies (AVX2 has no
    /// 64-bit one): `lo·lo + ((hi·lo + lo·hi) << 32)`.
    #[target_feature(enable = "avx2")]
    fn mul64(x: __m256i, c: u64) -> __m256i {
        let c_lo = _mm256_set1_epi64x((c & 0xFFFF_FFFF) as i64);
        let c_hi = _mm256_set1_epi64x((c >> 32) as i64);
        let low = _mm256_mul_epu32(x, c_lo);
        let cross = _mm256_add_epi64(
            _mm256_mul_epu32(_mm256_srli_epi64::<32>(x), c_lo),
            _mm256_mul_epu32(x, c_hi),
        );
        _mm256_add_epi64(low, _mm256_slli_epi64::<32>(cross))
    }

    #[target_feature(enable = "avx2")]
    fn mix64_avx2(z: __m256i) -> __m256i {
        let z = mul64(
            _mm256_xor_si256(z, _mm256_srli_epi64::<30>(z)),
            0xBF58_476D_1CE4_E5B9,
        );
        let z = mul64(
            _mm256_xor_si256(z, _mm256_srli_epi64::<27>(z)),
            0x94D0_49BB_1331_11EB,
        );
        _mm256_xor_si256(z, _mm256_srli_epi64::<31>(z))
    }

    /// `generator::word` for two rows × two blocks: lanes (row, block), (row, block + 1),
    /// (row + 1, block), (row + 1, block + 1).
    #[target_feature(enable = "avx2")]
    fn words_2x2(key: &[u64; 4], matrix: u32, row: u32, block: u32) -> __m256i {
        const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
        let counter = |r: u32, b: u32| {
            ((u64::from(matrix) << 48)
                | (u64::from(r & 0xFF_FFFF) << 24)
                | u64::from(b & 0xFF_FFFF))
            .wrapping_mul(GOLDEN) as i64
        };
        let c = _mm256_setr_epi64x(
            counter(row, block),
            counter(row, block + 1),
            counter(row + 1, block),
            counter(row + 1, block + 1),
        );
        let x = _mm256_add_epi64(
            _mm256_xor_si256(c, _mm256_set1_epi64x(key[0] as i64)),
            _mm256_set1_epi64x(GOLDEN as i64),
        );
        let z = _mm256_add_epi64(mix64_avx2(x), _mm256_set1_epi64x(key[1] as i64));
        _mm256_xor_si256(
            mix64_avx2(_mm256_xor_si256(z, _mm256_set1_epi64x(key[2] as i64))),
            _mm256_set1_epi64x(key[3] as i64),
        )
    }

    /// As [`generate_panel`] for a 16-wide panel, with AVX2.
    ///
    /// # Safety
    /// AVX2 present; `panel` holds `quads` steps of 64 bytes.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn generate_panel_16(
        key: &[u64; 4],
        matrix: u32,
        q0: usize,
        quads: usize,
        col0: usize,
        panel: &mut [u8],
    ) {
        assert!(panel.len() >= quads * 64 && col0.is_multiple_of(8));
        let block = (col0 / 8) as u32;
        for (q, step) in panel.chunks_exact_mut(64).take(quads).enumerate() {
            let r = (4 * (q0 + q)) as u32;
            let w01 = words_2x2(key, matrix, r, block);
            let w23 = words_2x2(key, matrix, r + 2, block);
            let mut rows = [[0i8; 16]; 4];
            // SAFETY: each row buffer holds 16 bytes, the halves of the two vectors.
            unsafe {
                _mm_storeu_si128(rows[0].as_mut_ptr().cast(), _mm256_castsi256_si128(w01));
                _mm_storeu_si128(
                    rows[1].as_mut_ptr().cast(),
                    _mm256_extracti128_si256::<1>(w01),
                );
                _mm_storeu_si128(rows[2].as_mut_ptr().cast(), _mm256_castsi256_si128(w23));
                _mm_storeu_si128(
                    rows[3].as_mut_ptr().cast(),
                    _mm256_extracti128_si256::<1>(w23),
                );
            }
            pack_step_16([&rows[0], &rows[1], &rows[2], &rows[3]], step);
        }
    }

    /// Four rows of 64 bytes → four vectors of 16 columns × 4 bytes, columns in order.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) fn interleave4(r0: __m512i, r1: __m512i, r2: __m512i, r3: __m512i) -> [__m512i; 4] {
        let t0 = _mm512_unpacklo_epi8(r0, r1);
        let t1 = _mm512_unpackhi_epi8(r0, r1);
        let t2 = _mm512_unpacklo_epi8(r2, r3);
        let t3 = _mm512_unpackhi_epi8(r2, r3);
        // Lane L of u_i holds columns 16 L + 4 i .. 16 L + 4 i + 4.
        let u0 = _mm512_unpacklo_epi16(t0, t2);
        let u1 = _mm512_unpackhi_epi16(t0, t2);
        let u2 = _mm512_unpacklo_epi16(t1, t3);
        let u3 = _mm512_unpackhi_epi16(t1, t3);
        // Transpose the 4 × 4 grid of 128-bit lanes.
        let s0 = _mm512_shuffle_i64x2::<0x44>(u0, u1);
        let s1 = _mm512_shuffle_i64x2::<0xEE>(u0, u1);
        let s2 = _mm512_shuffle_i64x2::<0x44>(u2, u3);
        let s3 = _mm512_shuffle_i64x2::<0xEE>(u2, u3);
        [
            _mm512_shuffle_i64x2::<0x88>(s0, s2),
            _mm512_shuffle_i64x2::<0xDD>(s0, s2),
            _mm512_shuffle_i64x2::<0x88>(s1, s3),
            _mm512_shuffle_i64x2::<0xDD>(s1, s3),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generator::{self, MATRIX_B};
    use proptest::prelude::Strategy;

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

    fn simd_kernels() -> Vec<Kernel> {
        Kernel::available()
            .into_iter()
            .filter(|&k| k != Kernel::Portable)
            .collect()
    }

    #[test]
    fn every_simd_kernel_matches_the_naive_product_on_odd_sizes() {
        let seed = [5u8; 32];
        let key = generator::key_from_seed(&seed);
        for (m, k, n) in [
            (1, 1, 1),
            (3, 5, 7),
            (7, 13, 17),
            (13, 67, 65),
            (25, 130, 129),
            (6, 4, 64),
        ] {
            let bytes = |matrix, rows: usize, cols: usize| -> Vec<i8> {
                let width = cols.div_ceil(8) * 8;
                let mut row = vec![0i8; width];
                (0..rows)
                    .flat_map(|r| {
                        generator::fill_row(&key, matrix, r as u32, 0, &mut row);
                        row[..cols].to_vec()
                    })
                    .collect()
            };
            let a = bytes(0, m, k);
            let b = bytes(1, k, n);
            let want = naive(&a, &b, m, k, n);
            for kernel in simd_kernels() {
                let pa = PackedA::new(kernel, &a, m, k, k);
                let pb = PackedB::new(kernel, &b, k, n);
                let mut c = vec![0i32; m * n];
                multiply(&pa, &pb, 0..pb.panels(), &mut c, n);
                assert_eq!(c, want, "{kernel} on {m}×{k}×{n}");
            }
        }
    }

    #[test]
    fn extreme_values_are_exact_in_every_kernel() {
        // All -128 against all -128 and all 127: the largest magnitudes there are.
        let (m, k, n) = (7, 1024, 40);
        for (x, y) in [(-128i8, -128i8), (-128, 127), (127, -128), (127, 127)] {
            let a = vec![x; m * k];
            let b = vec![y; k * n];
            let want = i32::from(x) * i32::from(y) * k as i32;
            for kernel in simd_kernels() {
                let pa = PackedA::new(kernel, &a, m, k, k);
                let pb = PackedB::new(kernel, &b, k, n);
                let mut c = vec![0i32; m * n];
                multiply(&pa, &pb, 0..pb.panels(), &mut c, n);
                assert!(c.iter().all(|&v| v == want), "{kernel} on {x}·{y}");
            }
        }
    }

    #[test]
    fn generated_panels_equal_packed_generator_rows() {
        let key = generator::key_from_seed(&[9u8; 32]);
        for kernel in simd_kernels() {
            let (_, nr) = kernel.tile();
            let (q0, quads, col0) = (3, 5, 2 * nr);
            let mut g = GeneratedB::new(kernel, quads);
            let mut scratch = Vec::new();
            g.fill(&key, MATRIX_B, q0, col0, nr, &mut scratch);
            // The same block through the generic path: rows generated, then packed.
            let k = 4 * (q0 + quads);
            let n = col0 + nr;
            let mut b = vec![0i8; k * n];
            for (r, row) in b.chunks_exact_mut(n).enumerate() {
                generator::fill_row(&key, MATRIX_B, r as u32, 0, row);
            }
            let full = PackedB::new(kernel, &b, k, n);
            let panel = full.panel(2);
            assert_eq!(
                &g.data[..],
                &panel[q0 * nr * 4..(q0 + quads) * nr * 4],
                "{kernel}"
            );
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Random sizes and random bytes (extremes included): every SIMD kernel equals the naive
        /// product, so all of them equal each other.
        #[test]
        fn every_simd_kernel_equals_the_naive_product_on_random_matrices(
            (m, k, n, a, b) in (1usize..20, 0usize..150, 1usize..140).prop_flat_map(|(m, k, n)| (
                proptest::prelude::Just(m),
                proptest::prelude::Just(k),
                proptest::prelude::Just(n),
                proptest::collection::vec(proptest::prelude::any::<i8>(), m * k),
                proptest::collection::vec(proptest::prelude::any::<i8>(), k * n),
            )),
        ) {
            let want = naive(&a, &b, m, k, n);
            for kernel in simd_kernels() {
                let pa = PackedA::new(kernel, &a, m, k, k);
                let pb = PackedB::new(kernel, &b, k, n);
                let mut c = vec![0i32; m * n];
                multiply(&pa, &pb, 0..pb.panels(), &mut c, n);
                proptest::prop_assert_eq!(&c, &want, "{} on {}×{}×{}", kernel, m, k, n);
            }
        }
    }

    #[test]
    fn kernels_are_listed_best_first() {
        let available = Kernel::available();
        assert_eq!(available.last(), Some(&Kernel::Portable));
        assert_eq!(available.first().copied(), Some(Kernel::best()));
        assert_eq!(Kernel::Avx512Vnni.to_string(), "avx512-vnni");
    }
}
