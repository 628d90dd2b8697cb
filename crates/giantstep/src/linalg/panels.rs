//! Products of the hot loops by an explicit AVX2+FMA kernel that gives the `gemm` crate's numbers
//! bit for bit, faster, where that is provable: the features `C = B Aᵀ` (`B` is `nb×k`, `A` is
//! `na×k`, both row-major) with `A` packed once and reused ([`product_then`], or block by block
//! into one buffer: [`product_blocks_then`]), and the readout's Gram triangle `XᵀX`, from `Xᵀ`
//! ([`gram_lower_packed`]) or, with no packing at all, from the features stored block by block in
//! the kernel's panels while in cache ([`FeaturePanels`], [`gram_lower_panels`]), and the
//! gradient's `Mᵀ Z` over a chunk ([`transposed_product`], or one depth block at a time as the
//! step makes `M`: [`transposed_block`]).
//!
//! **Why the numbers are the same.** The `gemm` crate (0.19) sums each entry over the depth in
//! blocks of `kc` terms: each block's sum is one chain from zero (its microkernels add `a·b` with
//! one fused multiply-add per term), stored (`1·acc`, exact) for the first block and added to
//! the entry (`fma(1, acc, c)`: one rounding) for the next ones. Its block is `kc = max(512,
//! …)` capped at `k` (so `k ≤ 512` is one chain) for outputs larger than 64×64, where the `…`
//! comes from the processor's cache sizes (`gemm_common::cache::kernel_params`, [`gemm_depth_block`]),
//! and `min(k, 512)` for smaller outputs. These kernels make the same chains and additions
//! (`c ← fma(a_κ, b_κ, c)`, symmetric in its two factors). `gemm` takes other paths with other
//! orders for products of at most 16×16 entries, of one row or column or of depth ≤ 2, so
//! [`usable`] and [`gram_usable`] send those shapes, and Gram triangles whose products would sum
//! in blocks of different lengths, to `gemm` (tested bit for bit over shapes on both sides of
//! every limit).
//!
//! **Why it is faster.** `gemm` packs both operands on every call; here `A` (the layer's weights)
//! is packed once per pass into panels of `W` rows (`W = 16` in f32, 8 in f64: two vectors),
//! stored depth-major, and `B` is read in place: a tile of six rows of `B` times one panel keeps
//! twelve accumulators, two panel vectors and one broadcast in the sixteen AVX registers. Six
//! rows are reused across a panel, a panel (`k·W` numbers, 32 KB at `k = 512`) stays in the L1
//! cache across the 48 rows of a block, and the block's rows of `B` stay in the L2 cache across
//! all panels. Measured on one core of the 2-core AVX2 machine (scratch benchmark, `nb = 4080`,
//! `na = 1008`, `k = 512`, packing included): 47 vs 43 GFLOP/s (f64) and 95 vs 88 GFLOP/s (f32)
//! for `gemm`. The Gram triangle packs each depth block of `Xᵀ` once for all its rows and
//! computes only the panels that reach the lower triangle: 0.84–0.88 of the bare rate in useful
//! flops against 0.76 for `gram_lower`'s recursive `gemm` products (`giantstep bench`). From the
//! features' panels it packs only six rows at a time (cheap copies of neighbours) and skips the
//! tiles above the diagonal; with the output rows fetched ahead, one f32 chunk (4096 × 1024) of
//! the readout — features, σ, `Xᵀỹ`, Gram — takes 96 ms against 102 ms by `gemm`'s features,
//! a pass over `Xᵀ` and [`gram_lower_packed`] with the same prefetch (109 ms without it; scratch
//! benchmark, one core, alternating).
//!
//! The gradient's `Mᵀ Z` (`p×d`, depth `m`) copies each depth block of `Z` into panels and packs
//! six columns of `M` at a time, both cheap next to `gemm`'s generic packing of the two operands:
//! one chunk of 4096 samples at d = 512, p = 1024 in f32 runs at 1.02–1.04 of the bare rate
//! against 0.96–0.99 for `gemm` (`giantstep bench --precision f32`, "GEMM shapes", three runs).
//! The step makes `M` one depth block at a time and adds it to the gradient at once, so `M`
//! stays in the cache and its buffer holds `kc·p` numbers instead of a chunk's.
//!
//! Processors with AVX-512 keep `gemm` for the features and the gradient, whose 16-lane kernels
//! this 8-lane one does not beat (the numbers are the same either way); other processors keep
//! `gemm` too. A 16-lane version of these tiles (two 512-bit vectors per row, panels of 32 f32 or
//! 16 f64) did not beat it either: features 0.89 against 0.99 of the bare rate, gradient 0.74
//! against 0.91, on a 2-core AVX-512 Xeon (`giantstep bench --precision f32`; README,
//! "Performance", sixth session).
//!
//! **The Gram triangle on AVX-512 processors** ([`gram_lower_rows`]) has its own tile: six rows
//! times four 512-bit vectors (24 accumulators, `gemm`'s own 4 × 6 shape), reading the chunk's
//! features where the readout's product wrote them, as rows of `p` features at a stride one cache
//! line past whole panels ([`wide_row_stride`]), fetched 24 samples ahead. Nothing is packed: a
//! tile reads 64 (f32) or 32 (f64) neighbouring features of each sample and six others from the
//! same row, and four panels are taken together so that their samples stay in the L2 cache while
//! the rows below their diagonal stream past. On one thread of the 2-core AVX-512 Xeon (`giantstep
//! bench`, GEMM shapes, m = 4096, p = 1024): 0.85–0.93 of the bare rate in useful flops (f32) and
//! 0.84–0.91 (f64), against 0.60–0.68 and 0.74–0.78 for `gemm`'s recursion, which packs both
//! operands over the whole chunk for every product. Without the padding (rows 4 KB apart share
//! the L1 sets) and from a packed copy of `Xᵀ` (the copy took a fifth of the time), the same tile
//! ran at 0.7–0.75. The same tile on the gradient's `Mᵀ Z` (in place: 0.30–0.46; from padded
//! copies of each depth block: 0.64–0.81, against `gemm`'s 0.73–0.90) was not kept.
#![allow(unsafe_code)]

/// Rows of `B` per tile.
const ROWS: usize = 6;
/// Rows of `B` per block (a multiple of [`ROWS`]): `48·k` numbers stay in the L2 cache.
const BLOCK: usize = 48;
/// The widest panel ([`Kernel::WIDTH`]).
const MAX_WIDTH: usize = 16;
/// The deepest product the kernel takes: the `gemm` crate sums up to 512 terms in one chain.
pub const MAX_K: usize = 512;

/// Whether the kernel runs: by default where the processor has AVX2 and FMA but not AVX-512
/// (detected once); [`force`] overrides that.
pub fn enabled() -> bool {
    static DETECTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    match FORCED.load(std::sync::atomic::Ordering::Relaxed) {
        ON => runnable(),
        OFF => false,
        _ => *DETECTED.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                runnable() && !std::arch::is_x86_feature_detected!("avx512f")
            }
            #[cfg(not(target_arch = "x86_64"))]
            {
                false
            }
        }),
    }
}

const AUTO: u8 = 0;
const ON: u8 = 1;
const OFF: u8 = 2;
static FORCED: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(AUTO);

/// Overrides the choice of [`enabled`] for the whole process: `Some(true)` runs the kernel
/// wherever it can run (also beside AVX-512), `Some(false)` sends every product to `gemm`, `None`
/// restores the default. For benchmarks that time both in one process and for tests: the
/// numbers do not depend on it.
pub fn force(on: Option<bool>) {
    let v = match on {
        None => AUTO,
        Some(true) => ON,
        Some(false) => OFF,
    };
    FORCED.store(v, std::sync::atomic::Ordering::Relaxed);
}

/// Held by the tests that call [`force`] and by those that check which products [`enabled`]
/// sends where: the choice is process-wide and the tests run in parallel.
#[cfg(test)]
pub(crate) fn force_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether this processor has the kernel's instructions (AVX2 and FMA), whatever [`enabled`]
/// chooses: the tests run the kernel wherever it can run.
pub fn runnable() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether products of depth `k` go to the kernel on this processor ([`enabled`], and `k` within
/// the one chain: `3 ≤ k ≤ 512`): whether packing for it is worth doing.
pub fn takes(k: usize) -> bool {
    enabled() && (3..=MAX_K).contains(&k)
}

/// Whether `C = B Aᵀ` of this shape (`nb` rows of `B`, `na` rows of `A`, depth `k`) is summed by
/// the `gemm` crate in the one chain the kernel reproduces: `3 ≤ k ≤ 512`, both sides at least
/// two rows and more than 256 entries in `C` (smaller products take `gemm`'s vector-times-matrix
/// or 16×16 paths).
pub fn usable(nb: usize, na: usize, k: usize) -> bool {
    (3..=MAX_K).contains(&k) && nb >= 2 && na >= 2 && nb * na > 256
}

/// The number types of the kernel: the panel width and the tile of `rows` rows.
pub trait Kernel: Copy + Default {
    /// Rows of `A` per panel (two vectors).
    const WIDTH: usize;
    /// Columns per panel of the AVX-512 Gram triangle ([`gram_lower_rows`]): four 512-bit
    /// vectors.
    const WIDE: usize;
    /// `c[i·ldc + j] (+)= Σ_κ b[κ·bk + i]·a[κ·lda + j]` for `i < rows ≤ 6`, `j < WIDE`: the sum
    /// in one chain from zero, then stored (`first`) or added to `c` with one rounding, as
    /// [`Kernel::tile`]; 24 (or fewer) accumulators of four 512-bit vectors.
    ///
    /// # Safety
    /// The processor has AVX-512F; `b` is readable at `κ·bk + i` and `a` at `κ·lda + j` for
    /// `κ < k`, `i < rows`, `j < WIDE`; `c` readable and writable for `rows` rows of `WIDE` at
    /// stride `ldc`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn wide_tile(
        rows: usize,
        k: usize,
        b: *const Self,
        bk: usize,
        a: *const Self,
        lda: usize,
        c: *mut Self,
        ldc: usize,
        first: bool,
    );
    /// `c[i·ldc + j] (+)= Σ_κ b_iκ·a[κ·WIDTH + j]` for `i < rows ≤ 6`, `j < WIDTH`, where
    /// `b_iκ = b[i·ldb + κ]` (rows in place) or, with `PACKED`, `b[κ·6 + i]` (six rows packed
    /// depth-major, `ldb` unused): the sum in one chain from zero, then stored (`first`) or added
    /// to `c` with one rounding (as `gemm` adds each depth block's sum to its output).
    ///
    /// # Safety
    /// The processor has AVX2 and FMA; `b` is readable for `rows` rows of `k` at stride `ldb`
    /// (with `PACKED`: for `6·k` numbers), `a` for `k·WIDTH` numbers, `c` readable and writable
    /// for `rows` rows of `WIDTH` at stride `ldc`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile<const PACKED: bool>(
        rows: usize,
        k: usize,
        b: *const Self,
        ldb: usize,
        a: *const Self,
        c: *mut Self,
        ldc: usize,
        first: bool,
    );
}

/// `A` (`rows×k`, row-major) packed for [`product_then`]: panels of [`Kernel::WIDTH`] rows, each
/// stored depth-major (`panel[κ·WIDTH + j] = A[j, κ]`), the last one padded with zeros.
#[derive(Debug, Clone, Default)]
pub struct Panels<T> {
    data: Vec<T>,
    rows: usize,
    k: usize,
}

impl<T: Kernel> Panels<T> {
    /// An empty packing, to be filled by [`Panels::pack`].
    pub fn new() -> Self {
        Panels {
            data: Vec::new(),
            rows: 0,
            k: 0,
        }
    }

    /// Packs `a` (`rows×k`, row-major), reusing the storage.
    ///
    /// # Panics
    /// If `a` holds fewer than `rows·k` numbers.
    pub fn pack(&mut self, a: &[T], rows: usize, k: usize) {
        self.pack_columns(a, rows, k, 0, k);
    }

    /// Packs the columns `k0..k0 + k` of `a` (`rows` rows of stride `lda`, row-major), reusing
    /// the storage: the packing of that `rows×k` block.
    ///
    /// # Panics
    /// If `a` is too short for the block.
    pub fn pack_columns(&mut self, a: &[T], rows: usize, lda: usize, k0: usize, k: usize) {
        assert!(
            rows == 0 || (k0 + k <= lda && a.len() >= (rows - 1) * lda + k0 + k),
            "panels: a is too short for {rows} rows of stride {lda} up to column {}",
            k0 + k
        );
        let w = T::WIDTH;
        let panels = rows.div_ceil(w);
        self.data.clear();
        self.data.resize(panels * k * w, T::default());
        for (pi, panel) in self.data.chunks_exact_mut(k * w).enumerate() {
            let r0 = pi * w;
            for j in 0..w.min(rows - r0) {
                let row = &a[(r0 + j) * lda + k0..(r0 + j) * lda + k0 + k];
                for (kk, v) in row.iter().enumerate() {
                    panel[kk * w + j] = *v;
                }
            }
        }
        self.rows = rows;
        self.k = k;
    }

    /// A packing that reuses `storage`'s allocation (see [`Panels::into_storage`]).
    pub fn from_storage(storage: Vec<T>) -> Self {
        Panels {
            data: storage,
            rows: 0,
            k: 0,
        }
    }

    /// The allocation, for [`Panels::from_storage`] later.
    pub fn into_storage(self) -> Vec<T> {
        self.data
    }

    /// Rows of the packed matrix.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Depth (columns) of the packed matrix.
    pub fn depth(&self) -> usize {
        self.k
    }
}

/// `C = B Aᵀ`: `c[i·ldc + j] = Σ_κ b[i·k + κ]·A[j, κ]` for `i < nb`, `j < a.rows()`, with `A`
/// packed; the sum over `κ` is one fused chain in order (the `gemm` crate's for the shapes of
/// [`usable`]). Calls `then(i0, rows)` on each finished block of rows `i0..i0 + 48` of `C`
/// (`rows` is `c[i0·ldc..]` up to the block's last entry), in order, while the block is in the
/// L2 cache: a row-wise pass over `C` (the activation, a dot product) reads it there instead of
/// from memory.
///
/// # Panics
/// If the processor lacks AVX2 or FMA ([`runnable`]), or a slice is too short for the shape.
pub fn product_then<T: Kernel>(c: &mut [T], ldc: usize, b: &[T], nb: usize, a: &Panels<T>, then: impl FnMut(usize, &mut [T])) {
    assert!(nb == 0 || c.len() >= (nb - 1) * ldc + a.rows, "panels: c too short");
    product_into(c, ldc, false, b, nb, a, then);
}

/// [`product_then`] with each block of rows written to the start of `block` (at least
/// [`BLOCK_ROWS`] rows of `a.rows()` numbers) over the last one: the product's rows never
/// leave the cache, for passes that keep only what `then` makes of them.
///
/// # Panics
/// As [`product_then`], or if `block` is too short.
pub fn product_blocks_then<T: Kernel>(block: &mut [T], b: &[T], nb: usize, a: &Panels<T>, then: impl FnMut(usize, &mut [T])) {
    assert!(nb == 0 || block.len() >= BLOCK.min(nb) * a.rows, "panels: block too short");
    product_into(block, a.rows, true, b, nb, a, then);
}

/// Rows of `C` per block of [`product_then`] and [`product_blocks_then`].
pub const BLOCK_ROWS: usize = BLOCK;

/// [`product_then`] (`reuse` false) and [`product_blocks_then`] (`reuse` true: block `i0` at
/// row 0 of `c`).
fn product_into<T: Kernel>(
    c: &mut [T],
    ldc: usize,
    reuse: bool,
    b: &[T],
    nb: usize,
    a: &Panels<T>,
    mut then: impl FnMut(usize, &mut [T]),
) {
    let (na, k, w) = (a.rows, a.k, T::WIDTH);
    if nb == 0 || na == 0 {
        return;
    }
    assert!(runnable(), "panels: the kernel needs AVX2 and FMA");
    assert!(ldc >= na, "panels: row stride {ldc} < {na} columns");
    assert!(b.len() >= nb * k, "panels: b has {} < {}", b.len(), nb * k);
    for i0 in (0..nb).step_by(BLOCK) {
        let i1 = (i0 + BLOCK).min(nb);
        let r0 = if reuse { 0 } else { i0 };
        for (pi, panel) in a.data.chunks_exact(k * w).enumerate() {
            let j0 = pi * w;
            let cols = w.min(na - j0);
            let mut i = i0;
            while i < i1 {
                let rows = ROWS.min(i1 - i);
                let tile = Tile { rows, cols, k, first: true };
                tile.run(c, (i - i0 + r0) * ldc + j0, ldc, Left::InPlace(&b[i * k..], k), panel);
                i += rows;
            }
        }
        then(i0, &mut c[r0 * ldc..(i1 - i0 + r0 - 1) * ldc + na]);
    }
}

/// One tile of `C`: `rows ≤ 6` rows times one panel, `k` terms, the first `cols ≤ W` columns
/// kept (a partial panel's tile goes through a buffer); stored (`first`) or added to `C`.
struct Tile {
    rows: usize,
    cols: usize,
    k: usize,
    first: bool,
}

/// The rows of a tile's left factor: in place (`rows` rows of `k` terms at stride `ldb`) or
/// packed by [`pack_six`] (`6·k` numbers, depth-major).
#[derive(Clone, Copy)]
enum Left<'a, T> {
    InPlace(&'a [T], usize),
    Packed(&'a [T]),
}

impl Tile {
    /// The tile at `c[o..]` (row stride `ldc`) from `left` and `panel` (`k·W` numbers).
    ///
    /// # Panics
    /// If a slice is too short for the tile (the kernel is only called within them), or the
    /// processor lacks AVX2 or FMA.
    fn run<T: Kernel>(&self, c: &mut [T], o: usize, ldc: usize, left: Left<'_, T>, panel: &[T]) {
        let Tile { rows, cols, k, first } = *self;
        let w = T::WIDTH;
        assert!((1..=ROWS).contains(&rows) && (1..=w).contains(&cols) && k >= 1, "panels: tile shape");
        let (b, ldb, packed) = match left {
            Left::InPlace(b, ldb) => {
                assert!(b.len() >= (rows - 1) * ldb + k, "panels: tile rows");
                (b, ldb, false)
            }
            Left::Packed(b) => {
                assert!(b.len() >= ROWS * k, "panels: packed tile rows");
                (b, 0, true)
            }
        };
        assert!(panel.len() >= k * w, "panels: tile panel");
        assert!(c.len() >= o + (rows - 1) * ldc + cols && runnable(), "panels: tile output");
        // SAFETY (both calls): AVX2 and FMA asserted; `b` holds the tile's rows in its layout
        // (`rows` rows of `k` at stride `ldb`, or `6·k` packed numbers), the panel `k·w`
        // numbers (asserted above); the output as stated at each call.
        let kernel = |out: *mut T, ldo: usize| unsafe {
            if packed {
                T::tile::<true>(rows, k, b.as_ptr(), ldb, panel.as_ptr(), out, ldo, first)
            } else {
                T::tile::<false>(rows, k, b.as_ptr(), ldb, panel.as_ptr(), out, ldo, first)
            }
        };
        if cols == w {
            // `out` holds the tile's `rows` rows of `w` at stride `ldc` (asserted, sliced here).
            let out = &mut c[o..o + (rows - 1) * ldc + w];
            kernel(out.as_mut_ptr(), ldc);
        } else {
            let mut tmp = [T::default(); ROWS * MAX_WIDTH];
            if !first {
                for r in 0..rows {
                    tmp[r * w..r * w + cols].copy_from_slice(&c[o + r * ldc..o + r * ldc + cols]);
                }
            }
            // The tile in `tmp` (`rows·w ≤ 6·16` numbers at stride `w`).
            kernel(tmp.as_mut_ptr(), w);
            for r in 0..rows {
                c[o + r * ldc..o + r * ldc + cols].copy_from_slice(&tmp[r * w..r * w + cols]);
            }
        }
    }
}

/// The depth block of the `gemm` crate's products of depth `k` with an output of more than
/// 64×64 entries (as `gemm` sees it): `gemm_common::cache::kernel_params` of the kernel shape
/// `gemm` picks on this processor (AVX-512: 4 vectors × 6, AVX2+FMA: 2 vectors × 6). It depends
/// on the processor's cache sizes. (Outputs of at most 64×64 take `min(k, 512)`.)
pub fn gemm_depth_block<T: Kernel>(k: usize) -> usize {
    let size = std::mem::size_of::<T>();
    #[cfg(target_arch = "x86_64")]
    let vector = if std::arch::is_x86_feature_detected!("avx512f") { 64 } else { 32 };
    #[cfg(not(target_arch = "x86_64"))]
    let vector = 32;
    let mr = if vector == 64 { 4 } else { 2 } * (vector / size);
    gemm_common::cache::kernel_params(65, 65, k, mr, 6, size).kc
}

/// Whether [`gram_lower_packed`] gives `linalg::gram_lower`'s numbers for `m` samples and `p`
/// features: the kernel runs here ([`enabled`]), every product `gram_lower` makes is past the
/// `gemm` crate's small-product paths (`p > 128` and a last column panel of more than 16), and
/// all of them sum over the samples in the same depth blocks (`gemm`'s block for large outputs,
/// [`gemm_depth_block`], equals the `min(m, 512)` of small ones on this processor).
pub fn gram_usable<T: Kernel>(m: usize, p: usize) -> bool {
    enabled() && gram_same_order::<T>(m, p)
}

/// [`gram_usable`] but for [`enabled`]: whether the kernel's Gram triangle has `gemm`'s numbers
/// here (the tests compare them wherever the kernel can run).
fn gram_same_order<T: Kernel>(m: usize, p: usize) -> bool {
    let q = 64 * (p.saturating_sub(1) / 64);
    m >= 3 && p > 128 && p - q > 16 && gemm_depth_block::<T>(m) == m.min(512)
}

/// The lower triangle of `XᵀX` (`p×p`, row-major; some entries just above the diagonal are
/// written too) from `xt = Xᵀ` (row-major `p×m`): blocks of `min(m, 512)` samples, each entry's
/// sum over a block one chain from zero, added to the entry in order. `packed` is scratch.
///
/// # Panics
/// If the processor lacks AVX2 or FMA, or a slice is too short.
pub fn gram_lower_packed<T: Kernel>(c: &mut [T], xt: &[T], m: usize, p: usize, packed: &mut Panels<T>) {
    let w = T::WIDTH;
    if m == 0 || p == 0 {
        return;
    }
    assert!(runnable(), "panels: the kernel needs AVX2 and FMA");
    assert!(c.len() >= p * p && xt.len() >= p * m, "panels: a slice is too short");
    let kc = m.min(512);
    for k0 in (0..m).step_by(kc) {
        let kb = kc.min(m - k0);
        let first = k0 == 0;
        // The block's samples of every row, packed (`p·kb` numbers: in the L3 cache, reused by
        // every block of rows).
        packed.pack_columns(xt, p, m, k0, kb);
        for i0 in (0..p).step_by(BLOCK) {
            let i1 = (i0 + BLOCK).min(p);
            // The panels that reach the block's lower triangle: columns below `i1`.
            for (pi, panel) in packed.data.chunks_exact(kb * w).enumerate().take(i1.div_ceil(w)) {
                let j0 = pi * w;
                let cols = w.min(p - j0);
                let mut i = i0;
                while i < i1 {
                    let rows = ROWS.min(i1 - i);
                    let tile = Tile { rows, cols, k: kb, first };
                    tile.run(c, i * p + j0, p, Left::InPlace(&xt[i * m + k0..], m), panel);
                    i += rows;
                }
            }
        }
    }
}

/// Whether this processor has AVX-512F, the instructions of [`gram_lower_rows`].
pub fn wide_runnable() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether [`gram_lower_rows`] computes `linalg::gram_lower`'s triangle here: the processor has
/// AVX-512F, the kernels are not forced off ([`force`]`(Some(false))`), and the shape is one whose
/// `gemm` products all sum in the same depth blocks (as for [`gram_usable`]).
pub fn gram_wide_usable<T: Kernel>(m: usize, p: usize) -> bool {
    FORCED.load(std::sync::atomic::Ordering::Relaxed) != OFF && wide_runnable() && gram_same_order::<T>(m, p)
}

/// Panels [`gram_lower_rows`] takes together: their samples (four times 128 KB per depth block)
/// stay in the L2 cache, and each six rows read from further away serve all four.
const GROUP: usize = 4;

/// Row stride for a chunk's features `X` (`m×p`) read in place by [`gram_lower_rows`]: whole
/// panels of [`Kernel::WIDE`] columns (the last one is read whole) and one cache line more, so
/// that rows do not start a multiple of 4 KB apart (the rows of a panel would share a few sets of
/// the L1 cache).
pub fn wide_row_stride<T: Kernel>(p: usize) -> usize {
    p.div_ceil(T::WIDE) * T::WIDE + 64 / std::mem::size_of::<T>()
}

/// The lower triangle of `XᵀX` (`p×p`, row-major; some entries just above the diagonal are
/// written too, with stale values) from `X` itself (`m` rows of `p` features at row stride
/// `ldx ≥` [`wide_row_stride`]) on AVX-512 processors: `linalg::gram_lower`'s numbers (blocks of
/// `min(m, 512)` samples, each entry's sum over a block one chain from zero, added to the entry
/// in order). No packing: a tile reads six features of each sample and 64 (f32) or 32 (f64)
/// neighbouring ones from the same row, fetched ahead. Panels outermost: a panel's samples stay
/// in the L2 cache for all the rows below its diagonal.
///
/// # Panics
/// If the processor lacks AVX-512F, `ldx` is below [`wide_row_stride`], or a slice is too short.
pub fn gram_lower_rows<T: Kernel>(c: &mut [T], x: &[T], ldx: usize, m: usize, p: usize) {
    let w = T::WIDE;
    if m == 0 || p == 0 {
        return;
    }
    assert!(wide_runnable(), "panels: the wide kernel needs AVX-512F");
    assert!(ldx >= p.div_ceil(w) * w, "panels: row stride {ldx} for {p} features");
    assert!(c.len() >= p * p && x.len() >= (m - 1) * ldx + p.div_ceil(w) * w, "panels: a slice is too short");
    let kc = m.min(MAX_K);
    for k0 in (0..m).step_by(kc) {
        let kb = kc.min(m - k0);
        let first = k0 == 0;
        let block = &x[k0 * ldx..];
        for g0 in (0..p).step_by(GROUP * w) {
            // The tiles of six rows from the one holding row `g0` (the diagonal) down, each
            // times the group's panels that reach the lower triangle.
            for i in (g0 / ROWS * ROWS..p).step_by(ROWS) {
                let rows = ROWS.min(p - i);
                for j0 in (g0..p.min(g0 + GROUP * w)).step_by(w) {
                    if i + rows > j0 {
                        let cols = w.min(p - j0);
                        wide_tile_run(c, i * p + j0, p, [rows, cols, kb], &block[i..], &block[j0..], ldx, first);
                    }
                }
            }
        }
    }
}

/// One tile of [`gram_lower_rows`] at `c[o..]` (row stride `ldc`): rows `b[κ·ld + s]` (`s <
/// rows ≤ 6`) times the panel `a[κ·ld + j]` (`j < WIDE`), `k` terms, the first `cols` columns kept
/// (a partial panel's tile goes through a buffer).
///
/// # Panics
/// If a slice is too short for the tile, or the processor lacks AVX-512F.
#[allow(clippy::too_many_arguments)]
fn wide_tile_run<T: Kernel>(
    c: &mut [T],
    o: usize,
    ldc: usize,
    [rows, cols, k]: [usize; 3],
    b: &[T],
    a: &[T],
    ld: usize,
    first: bool,
) {
    const MAX_WIDE: usize = 64;
    let w = T::WIDE;
    assert!((1..=ROWS).contains(&rows) && (1..=w).contains(&cols) && w <= MAX_WIDE && k >= 1, "panels: tile shape");
    assert!(b.len() >= (k - 1) * ld + rows && a.len() >= (k - 1) * ld + w, "panels: tile operands");
    assert!(c.len() >= o + (rows - 1) * ldc + cols && wide_runnable(), "panels: tile output");
    if cols == w {
        let out = &mut c[o..o + (rows - 1) * ldc + w];
        // SAFETY: AVX-512F asserted; `b` and `a` hold their `k` rows at stride `ld` (`rows` and
        // `w` numbers), `out` the tile's `rows` rows of `w` at stride `ldc` (asserted above).
        unsafe { T::wide_tile(rows, k, b.as_ptr(), ld, a.as_ptr(), ld, out.as_mut_ptr(), ldc, first) };
    } else {
        let mut tmp = [T::default(); ROWS * MAX_WIDE];
        if !first {
            for r in 0..rows {
                tmp[r * w..r * w + cols].copy_from_slice(&c[o + r * ldc..o + r * ldc + cols]);
            }
        }
        // SAFETY: as above, the tile written to `tmp` (`rows·w ≤ 6·64` numbers at stride `w`).
        unsafe { T::wide_tile(rows, k, b.as_ptr(), ld, a.as_ptr(), ld, tmp.as_mut_ptr(), w, first) };
        for r in 0..rows {
            c[o + r * ldc..o + r * ldc + cols].copy_from_slice(&tmp[r * w..r * w + cols]);
        }
    }
}

/// A chunk's features `X` (`m×p`) stored as the Gram triangle's panels: panels of
/// [`Kernel::WIDTH`] features, each depth-major over the samples (`x[(π·m + ν)·W + j] =
/// X[ν, π·W + j]`), written a block of sample rows at a time while the rows are in cache, so that
/// [`gram_lower_panels`] reads them without packing.
#[derive(Debug, Clone, Default)]
pub struct FeaturePanels<T> {
    data: Vec<T>,
    m: usize,
    p: usize,
}

impl<T: Kernel> FeaturePanels<T> {
    /// Room for `m` samples of `p` features (reusing the storage; the contents are stale until
    /// written).
    pub fn reset(&mut self, m: usize, p: usize) {
        self.m = m;
        self.p = p;
        self.data.resize(p.div_ceil(T::WIDTH) * m * T::WIDTH, T::default());
    }

    /// Stores the samples `i0..` from `rows` (whole rows of `p` features, row-major).
    ///
    /// # Panics
    /// If `rows` is not whole rows or reaches past sample `m`.
    pub fn set_rows(&mut self, i0: usize, rows: &[T]) {
        let (m, p, w) = (self.m, self.p, T::WIDTH);
        if p == 0 {
            return;
        }
        let n = rows.len() / p;
        assert!(rows.len() == n * p && i0 + n <= m, "panels: rows {i0}..{} of {m} samples", i0 + n);
        if n == 0 {
            return;
        }
        // Whole panels by copies of a length the compiler knows, the partial last one as a slice.
        match w {
            8 => set_whole::<T, 8>(&mut self.data, m, p, i0, rows),
            16 => set_whole::<T, 16>(&mut self.data, m, p, i0, rows),
            _ => unreachable!("panels of 8 or 16"),
        }
        if !p.is_multiple_of(w) {
            let j0 = p / w * w;
            let panel = &mut self.data[(p / w) * m * w..];
            for (nu, row) in rows.chunks_exact(p).enumerate() {
                panel[(i0 + nu) * w..(i0 + nu) * w + p - j0].copy_from_slice(&row[j0..]);
            }
        }
    }
}

/// The whole panels of width `W` of [`FeaturePanels::set_rows`].
fn set_whole<T: Copy, const W: usize>(data: &mut [T], m: usize, p: usize, i0: usize, rows: &[T]) {
    for (panel, pi) in data.chunks_exact_mut(m * W).zip(0..p / W) {
        let panel = &mut panel[i0 * W..];
        for (nu, row) in rows.chunks_exact(p).enumerate() {
            let from: &[T; W] = row[pi * W..pi * W + W].try_into().expect("W numbers");
            let to: &mut [T; W] = (&mut panel[nu * W..nu * W + W]).try_into().expect("W numbers");
            *to = *from;
        }
    }
}

/// Six rows `i0..i0 + rows` of the features, samples `k0..k0 + k`, packed depth-major for the
/// tile (`out[κ·6 + s]`, zeros past `rows`).
fn pack_six<T: Kernel>(x: &FeaturePanels<T>, i0: usize, rows: usize, k0: usize, k: usize, out: &mut [T]) {
    let (m, w) = (x.m, T::WIDTH);
    let out = &mut out[..ROWS * k];
    let (pi, off) = (i0 / w, i0 % w);
    if rows == ROWS && off + ROWS <= w {
        // Six neighbours in one panel (two groups of three in the f32 panels of 16, one in
        // two of the f64 panels of 8): copies of a length the compiler knows.
        let panel = &x.data[(pi * m + k0) * w..(pi * m + k0 + k) * w];
        for (o, src) in out.chunks_exact_mut(ROWS).zip(panel.chunks_exact(w)) {
            let from: &[T; ROWS] = src[off..off + ROWS].try_into().expect("six numbers");
            let to: &mut [T; ROWS] = o.try_into().expect("six numbers");
            *to = *from;
        }
        return;
    }
    for (kk, o) in out.chunks_exact_mut(ROWS).enumerate() {
        for (s, v) in o.iter_mut().enumerate() {
            *v = if s < rows {
                let i = i0 + s;
                x.data[((i / w) * m + k0 + kk) * w + i % w]
            } else {
                T::default()
            };
        }
    }
}

/// [`gram_lower_packed`]'s triangle (the same numbers) from the features in panels: blocks of
/// `min(m, 512)` samples, each entry's sum over a block one chain from zero, added to the entry
/// in order. The panels are read as they are (no packing); the rows of a block of 48 are packed
/// six at a time into `scratch` (`48·512` numbers at most). Tiles wholly above the diagonal are
/// skipped: entries `(i, j)` with `j > i` are partly written, with stale values.
///
/// # Panics
/// If the processor lacks AVX2 or FMA, or `c` is shorter than `p·p`.
pub fn gram_lower_panels<T: Kernel>(c: &mut [T], x: &FeaturePanels<T>, scratch: &mut Vec<T>) {
    let (m, p, w) = (x.m, x.p, T::WIDTH);
    if m == 0 || p == 0 {
        return;
    }
    assert!(runnable(), "panels: the kernel needs AVX2 and FMA");
    assert!(c.len() >= p * p, "panels: c too short");
    let kc = m.min(MAX_K);
    for k0 in (0..m).step_by(kc) {
        let kb = kc.min(m - k0);
        let first = k0 == 0;
        for i0 in (0..p).step_by(BLOCK) {
            let i1 = (i0 + BLOCK).min(p);
            let groups = (i1 - i0).div_ceil(ROWS);
            scratch.resize(groups * ROWS * kb, T::default());
            for g in 0..groups {
                let i = i0 + g * ROWS;
                pack_six(x, i, ROWS.min(i1 - i), k0, kb, &mut scratch[g * ROWS * kb..(g + 1) * ROWS * kb]);
            }
            // The panels that reach the block's lower triangle: columns below `i1`.
            for pj in 0..i1.div_ceil(w) {
                let j0 = pj * w;
                let panel = &x.data[(pj * m + k0) * w..(pj * m + k0 + kb) * w];
                let cols = w.min(p - j0);
                for g in 0..groups {
                    let i = i0 + g * ROWS;
                    let rows = ROWS.min(i1 - i);
                    if i + rows <= j0 {
                        continue; // every entry above the diagonal
                    }
                    let tile = Tile { rows, cols, k: kb, first };
                    tile.run(c, i * p + j0, p, Left::Packed(&scratch[g * ROWS * kb..(g + 1) * ROWS * kb]), panel);
                }
            }
        }
    }
}

/// The depth block in which the `gemm` crate sums a product with an output of `rows×cols`
/// entries and depth `k`: `min(k, 512)` for outputs of at most 64×64, else [`gemm_depth_block`]
/// (which is not always 512: `k = 1000` is summed in two blocks of 500).
fn gemm_block_for<T: Kernel>(rows: usize, cols: usize, k: usize) -> usize {
    if rows <= 64 && cols <= 64 {
        k.min(MAX_K)
    } else {
        gemm_depth_block::<T>(k)
    }
}

/// Whether [`transposed_product`] gives the `gemm` crate's numbers for `Mᵀ Z` with `m` samples,
/// `p` columns of `M` and `d` of `Z`: the kernel runs here ([`enabled`]) and the shape is one
/// of `gemm`'s blocked products ([`transposed_same_order`]).
pub fn transposed_usable<T: Kernel>(m: usize, p: usize, d: usize) -> bool {
    enabled() && transposed_same_order::<T>(m, p, d)
}

/// [`transposed_usable`] but for [`enabled`]: the product `p×d` is past `gemm`'s small paths
/// (more than 256 entries, two rows and two columns at least, depth 3 or more) and `gemm` sums
/// it in depth blocks the tile takes (at most 512 terms).
fn transposed_same_order<T: Kernel>(m: usize, p: usize, d: usize) -> bool {
    m >= 3 && p >= 2 && d >= 2 && p * d > 256 && gemm_block_for::<T>(p, d, m) <= MAX_K
}

/// Scratch of [`transposed_product`]: one depth block of `Z` in panels and the six-row packings
/// of one block of 48 rows of `Mᵀ`.
#[derive(Debug, Clone, Default)]
pub struct TransposedScratch<T> {
    z: FeaturePanels<T>,
    rows: Vec<T>,
}

/// `C = Mᵀ Z` (`p×d`, row-major) for `M` (`m×p`) and `Z` (`m×d`), both row-major: the
/// gradient's product over a chunk of samples. Each entry's sum runs over the samples in the
/// `gemm` crate's depth blocks ([`gemm_depth_block`]; `min(m, 512)` for outputs of at most
/// 64×64), one chain from zero per block, stored for the first block and added to the entry for
/// the next: `gemm`'s numbers wherever [`transposed_usable`] holds (tested). Per depth block,
/// `Z`'s rows are copied into panels (`kb·d` numbers, read by every block of rows), and the
/// columns of `M` are packed six at a time for each block of 48 rows of `C`.
///
/// # Panics
/// If the processor lacks AVX2 or FMA, or a slice is too short for the shape.
pub fn transposed_product<T: Kernel>(c: &mut [T], mt: &[T], z: &[T], [m, p, d]: [usize; 3], scratch: &mut TransposedScratch<T>) {
    if m == 0 || p == 0 || d == 0 {
        return;
    }
    assert!(
        mt.len() >= m * p && z.len() >= m * d,
        "panels: a slice is too short for {m} samples, {p}×{d}"
    );
    let kc = transposed_depth_block::<T>(m, p, d);
    for k0 in (0..m).step_by(kc) {
        let kb = kc.min(m - k0);
        transposed_block(c, &mt[k0 * p..(k0 + kb) * p], &z[k0 * d..(k0 + kb) * d], [kb, p, d], k0 == 0, scratch);
    }
}

/// The depth block of [`transposed_product`] for `m` samples: `gemm`'s (see
/// [`transposed_usable`]). A caller that makes `M` a block at a time hands each block to
/// [`transposed_block`] and needs only `kc` rows of `M`.
pub fn transposed_depth_block<T: Kernel>(m: usize, p: usize, d: usize) -> usize {
    gemm_block_for::<T>(p, d, m).max(1)
}

/// One depth block of [`transposed_product`]: `C = Mᵀ Z` (`first`) or `C += Mᵀ Z` (each entry's
/// block sum one chain from zero, added with one rounding) for the `kb` rows of `M` (`kb×p`) and
/// `Z` (`kb×d`) given.
///
/// # Panics
/// If the processor lacks AVX2 or FMA, or a slice is too short for the shape.
pub fn transposed_block<T: Kernel>(
    c: &mut [T],
    mt: &[T],
    z: &[T],
    [kb, p, d]: [usize; 3],
    first: bool,
    scratch: &mut TransposedScratch<T>,
) {
    let w = T::WIDTH;
    if kb == 0 || p == 0 || d == 0 {
        return;
    }
    assert!(runnable(), "panels: the kernel needs AVX2 and FMA");
    assert!(
        c.len() >= p * d && mt.len() >= kb * p && z.len() >= kb * d,
        "panels: a slice is too short for {kb} samples, {p}×{d}"
    );
    let TransposedScratch { z: zp, rows: packed } = scratch;
    zp.reset(kb, d);
    zp.set_rows(0, &z[..kb * d]);
    for i0 in (0..p).step_by(BLOCK) {
        let i1 = (i0 + BLOCK).min(p);
        let groups = (i1 - i0).div_ceil(ROWS);
        packed.resize(groups * ROWS * kb, T::default());
        pack_six_columns(mt, p, [i0, i1], kb, packed);
        for (pj, panel) in zp.data.chunks_exact(kb * w).enumerate() {
            let j0 = pj * w;
            let cols = w.min(d - j0);
            for (g, left) in packed.chunks_exact(ROWS * kb).enumerate() {
                let i = i0 + g * ROWS;
                let tile = Tile { rows: ROWS.min(i1 - i), cols, k: kb, first };
                tile.run(c, i * d + j0, d, Left::Packed(left), panel);
            }
        }
    }
}

/// Columns `i0..i1` (one block of at most 48) of the row-major `M` (`p` columns), its first `kb`
/// rows, packed six columns at a time, each group depth-major for the tile (`out[(γ·kb + κ)·6 +
/// s] = M[κ, i0 + 6γ + s]`, zeros past `i1`). Each row's columns are read once, in order (packing
/// each group on its own read every row once per group, 4 KiB apart: the step was 2–6% slower).
fn pack_six_columns<T: Kernel>(mt: &[T], p: usize, [i0, i1]: [usize; 2], kb: usize, out: &mut [T]) {
    let (full, rest) = ((i1 - i0) / ROWS, (i1 - i0) % ROWS);
    for kk in 0..kb {
        let row = &mt[kk * p + i0..kk * p + i1];
        for g in 0..full {
            let from: &[T; ROWS] = row[g * ROWS..(g + 1) * ROWS].try_into().expect("six numbers");
            let to: &mut [T; ROWS] = (&mut out[(g * kb + kk) * ROWS..(g * kb + kk + 1) * ROWS])
                .try_into()
                .expect("six numbers");
            *to = *from;
        }
        if rest > 0 {
            let o = &mut out[(full * kb + kk) * ROWS..(full * kb + kk + 1) * ROWS];
            o[..rest].copy_from_slice(&row[full * ROWS..]);
            o[rest..].fill(T::default());
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// One tile of `S` rows: twelve (or fewer) accumulators of two vectors per row.
    macro_rules! tile {
        ($name:ident, $t:ty, $v:ty, $lanes:expr, $zero:ident, $load:ident, $store:ident, $splat:ident, $fma:ident, $add:ident) => {
            /// # Safety
            /// AVX2 and FMA; the pointers as in [`super::Kernel::tile`].
            #[target_feature(enable = "avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            pub unsafe fn $name<const S: usize, const PACKED: bool>(
                k: usize,
                b: *const $t,
                ldb: usize,
                a: *const $t,
                c: *mut $t,
                ldc: usize,
                first: bool,
            ) {
                let mut acc: [[$v; 2]; S] = [[$zero(); 2]; S];
                if !first {
                    // The output is read at the end: fetched now, while the sums run (a tile
                    // of the Gram triangle otherwise waited on six rows from memory).
                    for s in 0..S {
                        _mm_prefetch::<_MM_HINT_T0>(c.add(s * ldc).cast());
                        _mm_prefetch::<_MM_HINT_T0>(c.add(s * ldc + 2 * $lanes - 1).cast());
                    }
                }
                for kk in 0..k {
                    // SAFETY (whole loop): `kk < k`, so the panel reads stay in its `k·2·lanes`
                    // numbers and the row reads in row `s < S` of `k` numbers (packed: in the
                    // `6·k` numbers, `s < S ≤ 6`).
                    let a0 = $load(a.add(kk * 2 * $lanes));
                    let a1 = $load(a.add(kk * 2 * $lanes + $lanes));
                    for (s, acc) in acc.iter_mut().enumerate() {
                        let bv = $splat(&*b.add(if PACKED { kk * super::ROWS + s } else { s * ldb + kk }));
                        acc[0] = $fma(a0, bv, acc[0]);
                        acc[1] = $fma(a1, bv, acc[1]);
                    }
                }
                for (s, acc) in acc.iter().enumerate() {
                    // SAFETY: row `s < S` of the tile, `2·lanes` numbers.
                    let (c0, c1) = (c.add(s * ldc), c.add(s * ldc + $lanes));
                    if first {
                        $store(c0, acc[0]);
                        $store(c1, acc[1]);
                    } else {
                        $store(c0, $add(acc[0], $load(c0)));
                        $store(c1, $add(acc[1], $load(c1)));
                    }
                }
            }
        };
    }
    tile!(tile_f64, f64, __m256d, 4, _mm256_setzero_pd, _mm256_loadu_pd, _mm256_storeu_pd, _mm256_broadcast_sd, _mm256_fmadd_pd, _mm256_add_pd);
    tile!(tile_f32, f32, __m256, 8, _mm256_setzero_ps, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_broadcast_ss, _mm256_fmadd_ps, _mm256_add_ps);

    /// How many depth steps ahead the wide tile fetches its panel.
    const PREFETCH: usize = 24;

    /// One tile of `S` rows times a panel of four 512-bit vectors: `4·S ≤ 24` accumulators,
    /// four panel vectors and one broadcast in the 32 AVX-512 registers.
    macro_rules! wide_tile {
        ($name:ident, $t:ty, $v:ty, $lanes:expr, $zero:ident, $load:ident, $store:ident, $splat:ident, $fma:ident, $add:ident) => {
            /// # Safety
            /// AVX-512F; the pointers as in [`super::Kernel::wide_tile`].
            #[target_feature(enable = "avx512f")]
            #[allow(clippy::too_many_arguments)]
            pub unsafe fn $name<const S: usize>(
                k: usize,
                b: *const $t,
                bk: usize,
                a: *const $t,
                lda: usize,
                c: *mut $t,
                ldc: usize,
                first: bool,
            ) {
                let mut acc: [[$v; 4]; S] = [[$zero(); 4]; S];
                if !first {
                    for s in 0..S {
                        for q in 0..4 {
                            _mm_prefetch::<_MM_HINT_T0>(c.add(s * ldc + q * $lanes).cast());
                        }
                    }
                }
                for kk in 0..k {
                    // SAFETY (whole loop): `kk < k`, so the reads stay in the panel's `k` rows of
                    // `4·lanes` numbers and in the `S` numbers of depth `kk` of `b`. The fetches
                    // ahead are hints (`wrapping_add`: no access, no fault).
                    let pa = a.add(kk * lda);
                    let ahead = pa.wrapping_add(PREFETCH * lda);
                    for q in 0..4 {
                        _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(q * $lanes).cast());
                    }
                    let pb = b.add(kk * bk);
                    _mm_prefetch::<_MM_HINT_T0>(pb.wrapping_add(PREFETCH * bk).cast());
                    let av = [$load(pa), $load(pa.add($lanes)), $load(pa.add(2 * $lanes)), $load(pa.add(3 * $lanes))];
                    for (s, acc) in acc.iter_mut().enumerate() {
                        let bv = $splat(*pb.add(s));
                        for q in 0..4 {
                            acc[q] = $fma(av[q], bv, acc[q]);
                        }
                    }
                }
                for (s, acc) in acc.iter().enumerate() {
                    for q in 0..4 {
                        // SAFETY: row `s < S` of the tile, `4·lanes` numbers.
                        let cq = c.add(s * ldc + q * $lanes);
                        if first {
                            $store(cq, acc[q]);
                        } else {
                            $store(cq, $add(acc[q], $load(cq)));
                        }
                    }
                }
            }
        };
    }
    wide_tile!(wide_f64, f64, __m512d, 8, _mm512_setzero_pd, _mm512_loadu_pd, _mm512_storeu_pd, _mm512_set1_pd, _mm512_fmadd_pd, _mm512_add_pd);
    wide_tile!(wide_f32, f32, __m512, 16, _mm512_setzero_ps, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps);
}

macro_rules! kernel_impl {
    ($t:ty, $width:expr, $tile:ident, $wide:ident) => {
        impl Kernel for $t {
            const WIDTH: usize = $width;
            const WIDE: usize = 4 * $width;
            #[allow(unused_variables)]
            unsafe fn wide_tile(
                rows: usize,
                k: usize,
                b: *const Self,
                bk: usize,
                a: *const Self,
                lda: usize,
                c: *mut Self,
                ldc: usize,
                first: bool,
            ) {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the caller's contract, passed on unchanged.
                unsafe {
                    match rows {
                        6 => x86::$wide::<6>(k, b, bk, a, lda, c, ldc, first),
                        5 => x86::$wide::<5>(k, b, bk, a, lda, c, ldc, first),
                        4 => x86::$wide::<4>(k, b, bk, a, lda, c, ldc, first),
                        3 => x86::$wide::<3>(k, b, bk, a, lda, c, ldc, first),
                        2 => x86::$wide::<2>(k, b, bk, a, lda, c, ldc, first),
                        1 => x86::$wide::<1>(k, b, bk, a, lda, c, ldc, first),
                        _ => unreachable!("a tile has 1 to 6 rows"),
                    }
                }
                #[cfg(not(target_arch = "x86_64"))]
                unreachable!("the kernel runs on x86-64 only");
            }
            #[allow(unused_variables)]
            unsafe fn tile<const PACKED: bool>(
                rows: usize,
                k: usize,
                b: *const Self,
                ldb: usize,
                a: *const Self,
                c: *mut Self,
                ldc: usize,
                first: bool,
            ) {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the caller's contract, passed on unchanged.
                unsafe {
                    match rows {
                        6 => x86::$tile::<6, PACKED>(k, b, ldb, a, c, ldc, first),
                        5 => x86::$tile::<5, PACKED>(k, b, ldb, a, c, ldc, first),
                        4 => x86::$tile::<4, PACKED>(k, b, ldb, a, c, ldc, first),
                        3 => x86::$tile::<3, PACKED>(k, b, ldb, a, c, ldc, first),
                        2 => x86::$tile::<2, PACKED>(k, b, ldb, a, c, ldc, first),
                        1 => x86::$tile::<1, PACKED>(k, b, ldb, a, c, ldc, first),
                        _ => unreachable!("a tile has 1 to 6 rows"),
                    }
                }
                #[cfg(not(target_arch = "x86_64"))]
                unreachable!("the kernel runs on x86-64 only");
            }
        }
    };
}
kernel_impl!(f64, 8, tile_f64, wide_f64);
kernel_impl!(f32, 16, tile_f32, wide_f32);

/// The constants the driver relies on: whole tiles per block, panels that fit its edge buffer.
const _: () = assert!(
    BLOCK.is_multiple_of(ROWS) && <f32 as Kernel>::WIDTH <= MAX_WIDTH && <f64 as Kernel>::WIDTH <= MAX_WIDTH
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::Real;
    use crate::linalg::{matmul, Op};

    fn numbers(n: usize, seed: u64) -> Vec<f64> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Mixed magnitudes, so that the order of the sum shows in the last bits.
                let u = (x >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
                u * if x.is_multiple_of(7) { 1e3 } else { 1.0 }
            })
            .collect()
    }

    /// `C = B Aᵀ` by the kernel and by `gemm` (as the engine calls it, both layouts) agree bit
    /// for bit; returns how many shapes ran.
    fn agrees<T: Real + Kernel>(nb: usize, na: usize, k: usize) {
        let b: Vec<T> = numbers(nb * k, 1 + nb as u64).into_iter().map(T::from_f64).collect();
        let a: Vec<T> = numbers(na * k, 2 + na as u64).into_iter().map(T::from_f64).collect();
        let mut want = vec![T::default(); nb * na];
        matmul(&mut want, [nb, na, k], Op::Plain(&b), Op::Transposed(&a), false);
        let mut got = vec![T::from_f64(f64::NAN); nb * na];
        let mut packed = Panels::new();
        packed.pack(&a, na, k);
        // The blocks come back in order, cover every row once, and hold the finished rows.
        let mut next = 0;
        product_then(&mut got, na, &b, nb, &packed, |i0, rows| {
            assert_eq!(i0, next, "blocks out of order");
            let n = rows.len() / na;
            assert_eq!(rows.len(), n * na, "a block holds whole rows");
            assert!(rows.iter().all(|v| !v.to_f64().is_nan()), "a block's rows are unfinished");
            next += n;
        });
        assert_eq!(next, nb, "the blocks cover every row");
        for (i, (x, y)) in got.iter().zip(&want).enumerate() {
            assert_eq!(
                x.to_f64().to_bits(),
                y.to_f64().to_bits(),
                "nb={nb} na={na} k={k} entry {i}: {x:?} vs gemm {y:?}"
            );
        }
        // The transposed layout the readout uses: gemm computes Cᵀ = A Bᵀ.
        let mut want_t = vec![T::default(); na * nb];
        matmul(&mut want_t, [na, nb, k], Op::Plain(&a), Op::Transposed(&b), false);
        for i in 0..nb {
            for j in 0..na {
                assert_eq!(
                    got[i * na + j].to_f64().to_bits(),
                    want_t[j * nb + i].to_f64().to_bits(),
                    "transposed: nb={nb} na={na} k={k} ({i}, {j})"
                );
            }
        }
    }

    #[test]
    fn products_are_bit_identical_to_gemm_where_usable() {
        if !runnable() {
            eprintln!("skipped: no AVX2+FMA on this processor");
            return;
        }
        let mut shapes = 0;
        for &k in &[3, 4, 7, 8, 17, 64, 100, 255, 256, 300, 511, 512] {
            for &(nb, na) in &[
                (2, 129),
                (129, 2),
                (17, 17),
                (16, 17),
                (6, 16),
                (7, 15),
                (48, 16),
                (49, 33),
                (65, 65),
                (100, 37),
                (301, 130),
            ] {
                if usable(nb, na, k) {
                    agrees::<f64>(nb, na, k);
                    agrees::<f32>(nb, na, k);
                    shapes += 1;
                }
            }
        }
        // The engine's shapes: a chunk of samples times the weights (d = 512, p = 1024).
        agrees::<f32>(300, 1024, 512);
        agrees::<f64>(97, 1000, 512);
        assert!(shapes > 100, "only {shapes} shapes ran");
    }

    /// The lower triangles of two `p×p` row-major matrices are the same bit for bit.
    fn assert_same_lower<T: Real>(got: &[T], want: &[T], p: usize, what: &str) {
        for i in 0..p {
            for j in 0..=i {
                assert_eq!(
                    got[i * p + j].to_f64().to_bits(),
                    want[i * p + j].to_f64().to_bits(),
                    "{what} p={p} ({i}, {j})"
                );
            }
        }
    }

    /// The Gram triangle by the kernel, from `Xᵀ` packed per depth block and from the features
    /// written block by block into its panels, equals `gram_lower`'s products by `gemm` wherever
    /// [`gram_usable`] holds (the lower triangle, bit for bit), over sample counts of one to
    /// many depth blocks and widths on both sides of the limits.
    #[test]
    fn gram_triangles_are_bit_identical_to_gemm_s() {
        fn check<T: Real + Kernel>(m: usize, p: usize, x: &mut FeaturePanels<T>) -> bool {
            if !gram_same_order::<T>(m, p) {
                return false;
            }
            let xt: Vec<T> = numbers(m * p, 9 + p as u64).into_iter().map(T::from_f64).collect();
            let mut want = vec![T::default(); p * p];
            crate::linalg::gram_lower_for_tests(&mut want, &xt, m, p);
            let mut packed = vec![T::from_f64(f64::NAN); p * p];
            gram_lower_packed(&mut packed, &xt, m, p, &mut Panels::new());
            // Row-major X written in blocks of uneven sizes, into storage used before.
            x.reset(m, p);
            let mut i0 = 0;
            while i0 < m {
                let n = (7 + 13 * i0 % 61).min(m - i0);
                let xt = &xt;
                let rows: Vec<T> = (i0..i0 + n).flat_map(|nu| (0..p).map(move |j| xt[j * m + nu])).collect();
                x.set_rows(i0, &rows);
                i0 += n;
            }
            let mut from_panels = vec![T::from_f64(f64::NAN); p * p];
            gram_lower_panels(&mut from_panels, x, &mut Vec::new());
            assert_same_lower(&packed, &want, p, &format!("packed: m={m}"));
            assert_same_lower(&from_panels, &want, p, &format!("from panels: m={m}"));
            true
        }
        if !runnable() {
            return;
        }
        let (mut x64, mut x32) = (FeaturePanels::default(), FeaturePanels::default());
        let mut ran = 0;
        for &m in &[3, 100, 512, 513, 1500, 4096] {
            for &p in &[129, 145, 150, 200, 300, 333, 512, 1024] {
                ran += usize::from(check::<f64>(m, p, &mut x64)) + usize::from(check::<f32>(m, p, &mut x32));
            }
        }
        assert!(!gram_same_order::<f64>(1000, 128) && !gram_same_order::<f64>(1000, 144), "limits");
        assert!(ran >= 30, "only {ran} Gram shapes compared");
    }

    /// The AVX-512 Gram triangle from the features as rows equals `gram_lower`'s products by
    /// `gemm` wherever [`gram_wide_usable`] holds (the lower triangle, bit for bit): one to
    /// eight depth blocks, widths with a partial last panel (f32 panels of 64, f64 of 32) and
    /// whole ones, stale numbers in the rows' padding. Runs where the processor has AVX-512F.
    #[test]
    fn wide_gram_triangles_are_bit_identical_to_gemm_s() {
        fn check<T: Real + Kernel>(m: usize, p: usize) -> bool {
            if !gram_same_order::<T>(m, p) {
                return false;
            }
            let xt: Vec<T> = numbers(m * p, 5 + p as u64).into_iter().map(T::from_f64).collect();
            let mut want = vec![T::default(); p * p];
            crate::linalg::gram_lower_for_tests(&mut want, &xt, m, p);
            let ld = wide_row_stride::<T>(p);
            let mut x = vec![T::from_f64(f64::NAN); m * ld];
            for nu in 0..m {
                for j in 0..p {
                    x[nu * ld + j] = xt[j * m + nu];
                }
            }
            let mut got = vec![T::from_f64(f64::NAN); p * p];
            gram_lower_rows(&mut got, &x, ld, m, p);
            assert_same_lower(&got, &want, p, &format!("rows: m={m}"));
            true
        }
        if !wide_runnable() {
            return;
        }
        let mut ran = 0;
        for &m in &[3, 100, 512, 513, 1500, 4096] {
            for &p in &[129, 150, 200, 256, 300, 333, 1024] {
                ran += usize::from(check::<f64>(m, p)) + usize::from(check::<f32>(m, p));
            }
        }
        assert!(ran >= 30, "only {ran} Gram shapes compared");
    }

    /// The gradient's product `Mᵀ Z` by the kernel equals `gemm`'s (as the engine calls it)
    /// bit for bit wherever [`transposed_same_order`] holds: sample counts of one to many depth
    /// blocks (`m = 1000`: two blocks of 500; `m = 1500`: three of 500), outputs on both sides of
    /// 16×16 and 64×64, partial panels and partial groups of six rows.
    #[test]
    fn transposed_products_are_bit_identical_to_gemm_s() {
        fn check<T: Real + Kernel>(m: usize, p: usize, d: usize, scratch: &mut TransposedScratch<T>) -> bool {
            if !transposed_same_order::<T>(m, p, d) {
                return false;
            }
            let mt: Vec<T> = numbers(m * p, 11 + p as u64).into_iter().map(T::from_f64).collect();
            let z: Vec<T> = numbers(m * d, 12 + d as u64).into_iter().map(T::from_f64).collect();
            let mut want = vec![T::default(); p * d];
            matmul(&mut want, [p, d, m], Op::Transposed(&mt), Op::Plain(&z), false);
            let mut got = vec![T::from_f64(f64::NAN); p * d];
            transposed_product(&mut got, &mt, &z, [m, p, d], scratch);
            for (i, (x, y)) in got.iter().zip(&want).enumerate() {
                assert_eq!(
                    x.to_f64().to_bits(),
                    y.to_f64().to_bits(),
                    "m={m} p={p} d={d} entry ({}, {}): {x:?} vs gemm {y:?}",
                    i / d,
                    i % d
                );
            }
            true
        }
        if !runnable() {
            return;
        }
        let (mut s64, mut s32) = (TransposedScratch::default(), TransposedScratch::default());
        let mut ran = 0;
        for &m in &[3, 4, 17, 100, 512, 513, 1000, 1500, 4096] {
            for &(p, d) in &[
                (2, 129),
                (129, 2),
                (16, 17),
                (17, 16),
                (64, 64),
                (65, 64),
                (64, 65),
                (100, 37),
                (37, 100),
                (150, 100),
                (301, 130),
                (1024, 512),
            ] {
                if (m, p, d) == (4096, 1024, 512) {
                    continue; // once below
                }
                ran += usize::from(check::<f64>(m, p, d, &mut s64)) + usize::from(check::<f32>(m, p, d, &mut s32));
            }
        }
        // The engine's chunk: 4096 samples, p = 1024, d = 512.
        assert!(check::<f32>(4096, 1024, 512, &mut s32) && check::<f64>(4096, 1024, 512, &mut s64));
        assert!(!transposed_same_order::<f32>(100, 16, 16), "256 entries: gemm's small path");
        assert!(!transposed_same_order::<f32>(2, 100, 100), "depth 2: gemm's outer-product path");
        assert!(!transposed_same_order::<f32>(100, 1, 1000), "one row: gemm's matrix-vector path");
        assert!(ran >= 150, "only {ran} shapes compared");
    }

    /// Blocks written over one buffer give the rows of the whole product, in order.
    #[test]
    fn product_blocks_are_the_product_s_rows() {
        if !runnable() {
            return;
        }
        for &(nb, na, k) in &[(2, 129, 3), (47, 20, 17), (48, 33, 64), (49, 100, 100), (301, 130, 512)] {
            let b = numbers(nb * k, 5);
            let a = numbers(na * k, 6);
            let mut packed = Panels::new();
            packed.pack(&a, na, k);
            let mut whole = vec![0.0; nb * na];
            product_then(&mut whole, na, &b, nb, &packed, |_, _| {});
            let mut block = vec![f64::NAN; BLOCK_ROWS * na];
            let mut next = 0;
            product_blocks_then(&mut block, &b, nb, &packed, |i0, rows| {
                assert_eq!(i0, next, "blocks out of order");
                let n = rows.len() / na;
                assert!(rows.len() == n * na && n <= BLOCK_ROWS);
                let want = &whole[i0 * na..(i0 + n) * na];
                assert!(rows.iter().zip(want).all(|(x, y)| x.to_bits() == y.to_bits()), "nb={nb} na={na} k={k} block {i0}");
                next += n;
            });
            assert_eq!(next, nb);
        }
    }

    #[test]
    fn usable_stops_at_gemm_s_other_paths() {
        assert!(usable(17, 16, 512));
        assert!(!usable(16, 16, 512), "256 entries: gemm's 16×16 path");
        assert!(!usable(1, 1000, 512), "one row: gemm's matrix-vector path");
        assert!(!usable(1000, 1, 512));
        assert!(!usable(100, 100, 2), "depth 2: gemm's outer-product path");
        assert!(!usable(100, 100, 513), "depth beyond one chain");
    }

    /// Past the kernel's limits the sums do differ from the one chain: the limits are needed.
    #[test]
    fn gemm_sums_deeper_products_in_blocks() {
        if !runnable() {
            return;
        }
        let (nb, na, k) = (64, 64, 2048);
        let b = numbers(nb * k, 3);
        let a = numbers(na * k, 4);
        let mut want = vec![0.0; nb * na];
        matmul(&mut want, [nb, na, k], Op::Plain(&b), Op::Transposed(&a), false);
        let mut got = vec![0.0; nb * na];
        let mut packed = Panels::new();
        packed.pack(&a, na, k);
        product_then(&mut got, na, &b, nb, &packed, |_, _| {});
        let differ = got.iter().zip(&want).filter(|(x, y)| x.to_bits() != y.to_bits()).count();
        let close = got.iter().zip(&want).all(|(x, y)| (x - y).abs() <= 1e-9 * (1.0 + y.abs()));
        assert!(close, "the chain and gemm's blocks agree to rounding");
        assert!(differ > 0, "k = {k}: gemm's blocks gave the one chain's numbers");
    }
}
