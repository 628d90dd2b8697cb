//! Dense linear algebra: a safe GEMM wrapper over the `gemm` crate for the hot
//! products, kernels of our own that keep its numbers bit for bit where they are faster
//! ([`panels`]: the features `Z Wᵀ` and the Gram triangle, AVX2; [`lanes`]: the teacher's
//! coordinates and the label shift, AVX-512), and small factorizations
//! (Cholesky, symmetric eigenproblem, singular values) from `faer`.
//!
//! All matrices here are row-major slices. Parallelism is explicit at the caller: each worker runs
//! one single-threaded GEMM on its chunk of the batch (the measured fastest way on 2 cores; see
//! README "Performance"), except in a pass of fewer chunks than threads: there the chunks'
//! `gemm` products are split over the pool's threads ([`with_gemm_threads`], the same numbers). The
//! factorizations run with a fixed degree of parallelism ([`FACTOR_THREADS`]), so that their
//! numbers do not depend on the machine's core count.

use crate::error::{Error, Result};
use faer::{Mat, Side};

pub mod lanes;
pub mod panels;

/// Floating-point types of the hot loops (`f64`, and `f32` with `precision = "f32"`).
pub trait Real: panels::Kernel + Copy + Default + Send + Sync + PartialEq + std::fmt::Debug + 'static {
    /// Conversion from `f64` (rounding for `f32`).
    fn from_f64(x: f64) -> Self;
    /// Exact conversion to `f64`.
    fn to_f64(self) -> f64;
    /// `x` itself when `Self` is `f64` (no copy needed), `None` otherwise.
    fn same_as_f64(x: &[f64]) -> Option<&[Self]>;
}

impl Real for f64 {
    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        x
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    fn same_as_f64(x: &[f64]) -> Option<&[Self]> {
        Some(x)
    }
}

impl Real for f32 {
    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn same_as_f64(_: &[f64]) -> Option<&[Self]> {
        None
    }
}

/// A strided view of a matrix for [`matmul_strided`]: element `(i, j)` is at
/// `data[offset + i·row_stride + j·col_stride]`.
#[derive(Debug, Clone, Copy)]
pub struct View<'a, T> {
    /// The storage.
    pub data: &'a [T],
    /// Offset of element (0, 0).
    pub offset: usize,
    /// Stride between rows.
    pub row_stride: usize,
    /// Stride between columns.
    pub col_stride: usize,
}

impl<'a, T> View<'a, T> {
    /// Row-major `rows×cols` storage, optionally read transposed.
    pub fn row_major(data: &'a [T], cols: usize, transposed: bool) -> Self {
        if transposed {
            View {
                data,
                offset: 0,
                row_stride: 1,
                col_stride: cols,
            }
        } else {
            View {
                data,
                offset: 0,
                row_stride: cols,
                col_stride: 1,
            }
        }
    }

    fn last_index(&self, rows: usize, cols: usize) -> usize {
        self.offset + (rows - 1) * self.row_stride + (cols - 1) * self.col_stride
    }
}

/// Nanoseconds spent inside GEMM calls, summed over threads (for `giantstep bench`'s non-GEMM
/// share; two clock reads per call, a few per chunk).
static GEMM_NANOS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Adds time spent in a product (by `gemm` or the panel kernels) to [`gemm_seconds`].
fn count_gemm_time(t: std::time::Duration) {
    GEMM_NANOS.fetch_add(t.as_nanos() as u64, std::sync::atomic::Ordering::Relaxed);
}

/// Seconds spent inside GEMM calls so far by all threads of this process together.
pub fn gemm_seconds() -> f64 {
    GEMM_NANOS.load(std::sync::atomic::Ordering::Relaxed) as f64 * 1e-9
}

thread_local! {
    /// Threads of the current `rayon` pool that this thread's `gemm` calls share their tiles
    /// with ([`with_gemm_threads`]); 1: none.
    static GEMM_THREADS: std::cell::Cell<usize> = const { std::cell::Cell::new(1) };
}

/// Runs `f` with the `gemm` calls it makes on this thread ([`matmul_strided`], so [`matmul`]
/// and the passes' products that go to `gemm`) split over `threads` threads of the `rayon` pool
/// `f` runs in: the engine does this in passes of fewer chunks than threads, whose other
/// workers would otherwise stay idle. `gemm` splits the output's tiles between
/// the threads and keeps each entry's sum over the depth as one thread would (its blocks of `kc`
/// terms do not depend on the threads), so the numbers are the same (tested). Products by the
/// panel kernels stay on the calling thread.
pub fn with_gemm_threads<R>(threads: usize, f: impl FnOnce() -> R) -> R {
    struct Restore(usize);
    impl Drop for Restore {
        fn drop(&mut self) {
            GEMM_THREADS.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(GEMM_THREADS.with(|c| c.replace(threads.max(1))));
    f()
}

/// The instruction set of the GEMM kernels on this machine (the `gemm` crate picks its kernel at
/// run time): `"AVX-512"`, `"AVX2+FMA"` or `"baseline"`.
pub fn gemm_isa() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return "AVX-512";
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return "AVX2+FMA";
        }
    }
    "baseline"
}

/// Where [`matmul_strided`] writes `C`: element `(i, j)` at `data[offset + i·row_stride + j]`.
pub struct OutView<'a, T> {
    /// The storage.
    pub data: &'a mut [T],
    /// Index of `C[0, 0]`.
    pub offset: usize,
    /// Distance between rows.
    pub row_stride: usize,
}

/// `C = A·B` (or `C += A·B` with `accumulate`) for strided views, `[m, n, k]` the shape: `A` is
/// `m×k`, `B` is `k×n`, `C` is `m×n`. One GEMM of the `gemm` crate, single-threaded unless
/// called within [`with_gemm_threads`] (the same numbers either way).
///
/// # Panics
/// If a view or `c` is too short for its shape.
// The one unsafe call of the crate: gemm's raw-pointer interface, bounds checked below.
#[allow(unsafe_code)]
#[track_caller]
pub fn matmul_strided<T: Real>(
    out: OutView<'_, T>,
    [m, n, k]: [usize; 3],
    a: View<'_, T>,
    b: View<'_, T>,
    accumulate: bool,
) {
    let OutView {
        data: c,
        offset: c_offset,
        row_stride: c_row_stride,
    } = out;
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        c.len() > c_offset + (m - 1) * c_row_stride + (n - 1),
        "matmul: c too short"
    );
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                c[c_offset + i * c_row_stride..c_offset + i * c_row_stride + n].fill(T::default());
            }
        }
        return;
    }
    assert!(a.data.len() > a.last_index(m, k), "matmul: a too short");
    assert!(b.data.len() > b.last_index(k, n), "matmul: b too short");
    let started = std::time::Instant::now();
    let parallelism = match GEMM_THREADS.with(|c| c.get()) {
        1 => gemm::Parallelism::None,
        threads => gemm::Parallelism::Rayon(threads),
    };
    // SAFETY: the asserts above bound every index the strides reach; `c` is a distinct mutable
    // borrow, so it does not alias `a` or `b`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr().add(c_offset),
            1,
            c_row_stride as isize,
            accumulate,
            a.data.as_ptr().add(a.offset),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr().add(b.offset),
            b.col_stride as isize,
            b.row_stride as isize,
            T::from_f64(1.0),
            T::from_f64(1.0),
            false,
            false,
            false,
            parallelism,
        );
    }
    count_gemm_time(started.elapsed());
}

/// An operand of [`matmul`]: a row-major matrix used as stored or transposed.
#[derive(Clone, Copy)]
pub enum Op<'a, T> {
    /// `A` as stored.
    Plain(&'a [T]),
    /// `Aᵀ`: the slice holds the transpose.
    Transposed(&'a [T]),
}

/// `C (m×n) = op(A)·op(B)` with row-major storage, `[m, n, k]` the shape: `Op::Plain(a)` holds
/// `A` as `m×k`, `Op::Transposed(a)` as `k×m` (likewise `B`, `k×n`). With `accumulate`,
/// `C += ...`.
///
/// # Panics
/// If a slice is shorter than its shape requires.
#[track_caller]
pub fn matmul<T: Real>(c: &mut [T], [m, n, k]: [usize; 3], a: Op<'_, T>, b: Op<'_, T>, accumulate: bool) {
    let (a, trans_a) = match a {
        Op::Plain(a) => (a, false),
        Op::Transposed(a) => (a, true),
    };
    let (b, trans_b) = match b {
        Op::Plain(b) => (b, false),
        Op::Transposed(b) => (b, true),
    };
    assert!(c.len() >= m * n, "matmul: c has {} < {}", c.len(), m * n);
    assert!(a.len() >= m * k, "matmul: a has {} < {}", a.len(), m * k);
    assert!(b.len() >= k * n, "matmul: b has {} < {}", b.len(), k * n);
    let av = View::row_major(a, if trans_a { m } else { k }, trans_a);
    let bv = View::row_major(b, if trans_b { k } else { n }, trans_b);
    let out = OutView {
        data: c,
        offset: 0,
        row_stride: n,
    };
    matmul_strided(out, [m, n, k], av, bv, accumulate);
}

/// `C = B Aᵀ` (`nb×na`, row-major, `B` is `nb×k` and `A` is `na×k`, both row-major), then
/// `then(i0, rows)` on the rows of `C` from `i0` on, in order and together covering all `nb`
/// rows: a row-wise pass over `C` while the rows are in cache. The product is the panel kernel's
/// of [`panels`] when `packed` (the packing of `A`) is given and the shape is one where its
/// numbers are the `gemm` crate's ([`panels::usable`]), called back per block of rows
/// ([`panels::product_then`]); else [`matmul`]'s, called back once for all rows. The numbers are
/// the same either way.
///
/// # Panics
/// If a slice is shorter than its shape requires, or `packed` is not `A`'s shape.
#[track_caller]
pub fn times_transposed_then<T: Real>(
    c: &mut [T],
    b: &[T],
    nb: usize,
    a: &[T],
    [na, k]: [usize; 2],
    packed: Option<&panels::Panels<T>>,
    mut then: impl FnMut(usize, &mut [T]),
) {
    match packed {
        Some(pa) if panels::usable(nb, na, k) => {
            assert!(pa.rows() == na && pa.depth() == k, "times_transposed_then: packing of another shape");
            kernel_times_transposed_then(c, b, nb, pa, then);
        }
        _ => {
            matmul(c, [nb, na, k], Op::Plain(b), Op::Transposed(a), false);
            if nb > 0 {
                then(0, &mut c[..nb * na]);
            }
        }
    }
}

/// `C = B Aᵀ` by the panel kernel ([`panels::product_then`]), then `then(i0, rows)` on each block
/// of rows while in cache, timed as a product. Its numbers do not depend on `nb`: for some rows
/// of a chunk whose whole product is one where the kernel has `gemm`'s numbers
/// ([`panels::usable`]), they are [`times_transposed_then`]'s on the chunk.
///
/// # Panics
/// If the processor lacks AVX2 or FMA, or a slice is shorter than its shape requires.
pub fn kernel_times_transposed_then<T: Real>(
    c: &mut [T],
    b: &[T],
    nb: usize,
    packed: &panels::Panels<T>,
    then: impl FnMut(usize, &mut [T]),
) {
    timed_then(|t| panels::product_then(c, packed.rows(), b, nb, packed, t), then);
}

/// Runs `product(t)`, where `t` calls `then` on each block, and counts the product's time
/// without `then`'s as time in products ([`gemm_seconds`]).
fn timed_then<T>(product: impl FnOnce(&mut dyn FnMut(usize, &mut [T])), mut then: impl FnMut(usize, &mut [T])) {
    let mut in_gemm = std::time::Duration::ZERO;
    let mut started = std::time::Instant::now();
    product(&mut |i0, rows| {
        in_gemm += started.elapsed();
        then(i0, rows);
        started = std::time::Instant::now();
    });
    count_gemm_time(in_gemm);
}

/// Whether a readout chunk of `m` samples, `p` features of dimension `d` goes through the
/// panel kernel from end to end ([`features_in_blocks_then`], [`gram_lower_from_panels`]): the
/// kernel takes depth `d` ([`panels::takes`]: the layers are packed, [`packed_for_products`]),
/// the features' product is one where it has `gemm`'s numbers ([`panels::usable`]), and so is
/// the Gram triangle ([`panels::gram_usable`]).
pub fn readout_in_panels<T: Real>(m: usize, p: usize, d: usize) -> bool {
    panels::takes(d) && panels::usable(m, p, d) && panels::gram_usable::<T>(m, p)
}

/// The features `H = B Aᵀ` (`nb×na`) by the panel kernel, a block of rows at a time into `block`
/// (at least [`panels::BLOCK_ROWS`]` · na` numbers, each block over the last), with `then(i0,
/// rows)` on each block in order while it is in cache: the readout keeps `σ(H)`'s sums and its
/// panels ([`panels::FeaturePanels`]), the test pass each sample's output, never the whole
/// product. The numbers of [`times_transposed_then`]'s wherever [`panels::usable`] holds.
///
/// # Panics
/// If the processor lacks AVX2 or FMA, or a slice is shorter than its shape requires.
pub fn features_in_blocks_then<T: Real>(
    block: &mut [T],
    b: &[T],
    nb: usize,
    packed: &panels::Panels<T>,
    then: impl FnMut(usize, &mut [T]),
) {
    timed_then(|t| panels::product_blocks_then(block, b, nb, packed, t), then);
}

/// [`gram_lower`]'s triangle (the same numbers, where [`readout_in_panels`] holds) from the
/// features in panels ([`panels::gram_lower_panels`]): no packing; `scratch` holds six rows at a
/// time of one block of 48.
pub fn gram_lower_from_panels<T: Real>(c: &mut [T], x: &panels::FeaturePanels<T>, scratch: &mut Vec<T>) {
    let started = std::time::Instant::now();
    panels::gram_lower_panels(c, x, scratch);
    count_gemm_time(started.elapsed());
}

/// Whether a chunk of `m` samples' readout, `p` features of depth `d`, runs on the AVX-512 Gram
/// kernel ([`panels::gram_wide_usable`], and `d ≥ 3`: `gemm` sums products of depth 1 or 2 on
/// another path, whose order need not be the same in `Z Wᵀ` as in `W Zᵀ`): its features are
/// then made as rows ([`features_rows`]) and the triangle read from them in place
/// ([`gram_lower_from_rows`]).
pub fn readout_in_rows<T: Real>(m: usize, p: usize, d: usize) -> bool {
    d >= 3 && panels::gram_wide_usable::<T>(m, p)
}

/// The pre-activations `H = Z Wᵀ` of `m` samples (`z`: `m×d`, `w`: `p×d`, both row-major) into
/// the rows of the returned part of `buf` (row stride [`panels::wide_row_stride`], the first row
/// on a cache line; `buf` grows as needed), by `gemm`: each entry the same number as in
/// `W Zᵀ` (one chain over `d` per depth block, which depends on the depth only).
pub fn features_rows<'b, T: Real>(buf: &'b mut Vec<T>, z: &[T], w: &[T], [m, p, d]: [usize; 3]) -> &'b mut [T] {
    let ld = panels::wide_row_stride::<T>(p);
    let line = 64 / std::mem::size_of::<T>();
    if buf.len() < m * ld + line {
        buf.resize(m * ld + line, T::default());
    }
    let skip = buf.as_ptr().align_offset(64).min(line);
    let rows = &mut buf[skip..skip + m * ld];
    let out = OutView {
        data: &mut *rows,
        offset: 0,
        row_stride: ld,
    };
    matmul_strided(out, [m, p, d], View::row_major(z, d, false), View::row_major(w, d, true), false);
    rows
}

/// [`gram_lower`]'s triangle (the same numbers, where [`readout_in_rows`] holds) from the
/// features as rows of stride [`panels::wide_row_stride`] ([`panels::gram_lower_rows`]).
pub fn gram_lower_from_rows<T: Real>(c: &mut [T], x: &[T], m: usize, p: usize) {
    let started = std::time::Instant::now();
    panels::gram_lower_rows(c, x, panels::wide_row_stride::<T>(p), m, p);
    count_gemm_time(started.elapsed());
}

/// `C = Mᵀ Z` (`p×d`) for `M` (`m×p`) and `Z` (`m×d`), both row-major: the gradient's product
/// over a chunk. By the panel kernel where it has the `gemm` crate's numbers
/// ([`panels::transposed_usable`]: no packing of `M`, `Z` copied into panels once per depth
/// block), else [`matmul`]'s; the numbers are the same either way.
///
/// # Panics
/// If a slice is shorter than its shape requires.
pub fn transposed_times<T: Real>(
    c: &mut [T],
    mt: &[T],
    z: &[T],
    [m, p, d]: [usize; 3],
    scratch: &mut panels::TransposedScratch<T>,
) {
    if panels::transposed_usable::<T>(m, p, d) {
        let started = std::time::Instant::now();
        panels::transposed_product(c, mt, z, [m, p, d], scratch);
        count_gemm_time(started.elapsed());
    } else {
        matmul(c, [p, d, m], Op::Transposed(mt), Op::Plain(z), false);
    }
}

/// One depth block of [`transposed_times`]'s panel path ([`panels::transposed_block`]), timed as
/// a product: for a caller that makes `M` one depth block
/// ([`panels::transposed_depth_block`]) at a time where [`panels::transposed_usable`] holds.
///
/// # Panics
/// If the processor lacks AVX2 or FMA, or a slice is shorter than its shape requires.
pub fn transposed_times_block<T: Real>(
    c: &mut [T],
    mt: &[T],
    z: &[T],
    shape: [usize; 3],
    first: bool,
    scratch: &mut panels::TransposedScratch<T>,
) {
    let started = std::time::Instant::now();
    panels::transposed_block(c, mt, z, shape, first, scratch);
    count_gemm_time(started.elapsed());
}

/// The packing of `a` (`rows×k`) for [`times_transposed_then`] when the panel kernel runs here
/// ([`panels::enabled`]) and the depth is one it takes; `None` sends the products to `gemm`.
pub fn packed_for_products<T: Real>(a: &[T], rows: usize, k: usize) -> Option<panels::Panels<T>> {
    panels::takes(k).then(|| {
        let mut p = panels::Panels::new();
        p.pack(a, rows, k);
        p
    })
}

/// Width of the column panels of [`gram_lower`]'s small matrices and of its last diagonal block.
const GRAM_PANEL: usize = 64;
/// Largest diagonal block [`gram_lower`] computes whole (larger ones are halved).
const GRAM_LEAF: usize = 160;

/// Lower triangle of the Gram matrix `XᵀX` of an `m×p` matrix `X`, given as its transpose `xt`
/// (row-major `p×m`). Writes the entries `(i, j)`, `j ≤ i`, of the row-major `p×p` matrix `c`
/// (and some of the strict upper triangle: mirror with [`mirror_lower`] after summing, which
/// reads only `j ≤ i`). About half the flops of the full product. `scratch` holds a row-major
/// copy of at most 128 columns of `X` between calls.
///
/// The lower triangle is cut recursively into halves (two diagonal triangles and one square
/// below them) down to diagonal blocks of at most `GRAM_LEAF` rows: the GEMMs are square-ish, so
/// they run near the bare rate (the tall column panels of 64 used before spent as long as the
/// full product). They read `Xᵀ` row-major, the operand layout the kernels read fastest
/// (measured: 47 GFLOP/s of useful flops vs 38 from `X`, one thread, `m = 4096`, `p = 1024`, f64).
///
/// Bit-identical to the column panels of 64 it replaces (tested): the `gemm` crate sums over `m`
/// in blocks whose length depends only on `m`, except in products of at most 64×64 entries
/// (blocks of 512) and in products of one row or column or of at most 16×16 entries from this
/// layout (other kernels). The panels made one small product, the last diagonal block `[q, p)²`
/// with `q = 64·⌊(p−1)/64⌋`; it is made here as there, from a row-major copy of those columns
/// (with a row stride above one, as there, which keeps the kernels' choice), every other product
/// has a side longer than 64 (the halving stops at `GRAM_LEAF` > 2·64) and at least three rows,
/// and for `p ≤ 128` the panels are kept.
///
/// Where all those products sum in blocks of the same length and none takes a small-product
/// path ([`panels::gram_usable`]: on AVX2 processors without AVX-512, `p > 128`, a last panel of
/// more than 16), the panel kernel computes the triangle in one sweep with the same numbers
/// ([`panels::gram_lower_packed`], faster); `scratch` then holds one packed depth block.
pub fn gram_lower<T: Real>(c: &mut [T], xt: &[T], m: usize, p: usize, scratch: &mut Vec<T>) {
    if panels::gram_usable::<T>(m, p) {
        let mut packed = panels::Panels::from_storage(std::mem::take(scratch));
        let started = std::time::Instant::now();
        panels::gram_lower_packed(c, xt, m, p, &mut packed);
        count_gemm_time(started.elapsed());
        *scratch = packed.into_storage();
        return;
    }
    gram_lower_gemm(c, xt, m, p, scratch);
}

/// [`gram_lower`] by the `gemm` crate's products (its numbers are the panel kernel's wherever
/// [`panels::gram_usable`] holds).
fn gram_lower_gemm<T: Real>(c: &mut [T], xt: &[T], m: usize, p: usize, scratch: &mut Vec<T>) {
    let q = GRAM_PANEL * (p.saturating_sub(1) / GRAM_PANEL);
    // The columns the panels read from a row-major copy: all of them for p ≤ 128, else [q, p).
    let first = if p <= 2 * GRAM_PANEL { 0 } else { q };
    let stride = if first == 0 { p } else { p - first + 1 };
    scratch.clear();
    scratch.resize(m * stride, T::default());
    for j in first..p {
        for (nu, v) in xt[j * m..(j + 1) * m].iter().enumerate() {
            scratch[nu * stride + j - first] = *v;
        }
    }
    if first == 0 {
        for start in (0..q).step_by(GRAM_PANEL) {
            gram_panel(c, scratch, stride, m, p, start, 0);
        }
    } else {
        gram_halves(c, xt, m, p, 0, q);
        // The rows below [0, q)², at least three of them (see above).
        let below = q.min(p - 3);
        gram_block(c, xt, m, p, [below, p], [0, q]);
    }
    gram_panel(c, scratch, stride, m, p, q, first);
}

/// The column panel `[start, start + 64) ∩ [0, p)` of `XᵀX`, rows `start..p`, from the columns
/// `first..p` of `X` stored row-major with row stride `stride` in `x`.
fn gram_panel<T: Real>(c: &mut [T], x: &[T], stride: usize, m: usize, p: usize, start: usize, first: usize) {
    let cols = GRAM_PANEL.min(p - start);
    let a = View {
        data: x,
        offset: start - first,
        row_stride: 1,
        col_stride: stride,
    }; // (Xᵀ)[start.., :]
    let b = View {
        data: x,
        offset: start - first,
        row_stride: stride,
        col_stride: 1,
    }; // X[:, start..start + cols]
    let out = OutView {
        data: &mut *c,
        offset: start * p + start,
        row_stride: p,
    };
    matmul_strided(out, [p - start, cols, m], a, b, false);
}

/// The lower triangle of the diagonal block `[lo, hi)²` of `XᵀX` (see [`gram_lower`]); every
/// product has a side longer than 64 (`hi − lo > 64`).
fn gram_halves<T: Real>(c: &mut [T], xt: &[T], m: usize, p: usize, lo: usize, hi: usize) {
    if hi - lo <= GRAM_LEAF {
        gram_block(c, xt, m, p, [lo, hi], [lo, hi]);
        return;
    }
    let mid = lo + (hi - lo) / 2;
    gram_halves(c, xt, m, p, lo, mid);
    gram_block(c, xt, m, p, [mid, hi], [lo, mid]);
    gram_halves(c, xt, m, p, mid, hi);
}

/// `C[r0..r1, c0..c1] = (XᵀX)[r0..r1, c0..c1]` from `xt = Xᵀ` (row-major `p×m`).
fn gram_block<T: Real>(c: &mut [T], xt: &[T], m: usize, p: usize, [r0, r1]: [usize; 2], [c0, c1]: [usize; 2]) {
    let a = View {
        data: xt,
        offset: r0 * m,
        row_stride: m,
        col_stride: 1,
    }; // Xᵀ[r0..r1, :]
    let b = View {
        data: xt,
        offset: c0 * m,
        row_stride: 1,
        col_stride: m,
    }; // X[:, c0..c1]
    let out = OutView {
        data: &mut *c,
        offset: r0 * p + c0,
        row_stride: p,
    };
    matmul_strided(out, [r1 - r0, c1 - c0, m], a, b, false);
}

/// [`gram_lower`] by `gemm`'s products alone, for the panel kernel's tests.
#[cfg(test)]
pub(crate) fn gram_lower_for_tests<T: Real>(c: &mut [T], xt: &[T], m: usize, p: usize) {
    gram_lower_gemm(c, xt, m, p, &mut Vec::new());
}

/// `out = xᵀ` for a row-major `m×p` matrix `x` (`out` row-major `p×m`), in cache-sized tiles.
pub fn transpose<T: Copy>(out: &mut [T], x: &[T], m: usize, p: usize) {
    const TILE: usize = 32;
    assert!(x.len() >= m * p && out.len() >= m * p, "transpose: slices too short");
    for i0 in (0..m).step_by(TILE) {
        for j0 in (0..p).step_by(TILE) {
            for i in i0..(i0 + TILE).min(m) {
                for j in j0..(j0 + TILE).min(p) {
                    out[j * m + i] = x[i * p + j];
                }
            }
        }
    }
}

/// Copies the lower triangle of a row-major `p×p` matrix onto its upper triangle.
pub fn mirror_lower(c: &mut [f64], p: usize) {
    for i in 0..p {
        for j in i + 1..p {
            c[i * p + j] = c[j * p + i];
        }
    }
}

/// The degree of parallelism of `faer`'s factorizations here ([`cholesky_solve`],
/// [`symmetric_eigen`], [`singular_values`]). `faer` splits a factorization's work by its degree
/// (by default the machine's core count), and the split shows in the last bits from `n = 512`
/// on (the readout's Cholesky, the gradient's singular values): fixed, a result depends on the
/// configuration alone, as the engine's passes do. Two is the degree of the 2-core machines every
/// record so far was made on, so their numbers stay as they were.
pub const FACTOR_THREADS: usize = 2;

/// Sets `faer`'s process-wide parallelism to [`FACTOR_THREADS`] (before each factorization: a
/// caller of `faer` elsewhere in the process may have changed it).
fn fixed_factor_parallelism() {
    faer::set_global_parallelism(faer::Par::rayon(FACTOR_THREADS));
}

/// Smallest order of a matrix whose factorization [`factorize`] runs on the calling thread's
/// own one-thread pool (below it `faer` does not split the work and the pool would only cost
/// a hand-over).
const FACTOR_POOL_MIN: usize = 64;

thread_local! {
    /// The one-thread pool of [`factorize`] for this thread, built at its first large
    /// factorization (`None` if the thread could not be started).
    static FACTOR_POOL: Option<rayon::ThreadPool> =
        rayon::ThreadPoolBuilder::new().num_threads(1).build().ok();
}

/// Runs `f`, a `faer` factorization of a matrix of order `order`, at the fixed degree
/// [`FACTOR_THREADS`] but on one thread: `faer` splits the work as it would for two threads (so
/// the numbers are those of two threads, tested) and the pieces run one after the other. On
/// two cores this was 1.5–1.7× faster than two threads for the 1024×512 gradient's singular
/// values (0.08 against 0.12–0.15 s: its bidiagonalization is a chain of matrix-vector
/// products too short to share) and no slower for a 1024² Cholesky solve or eigen-decomposition;
/// the other core is left to whatever runs beside it. Each calling thread has its own pool, so
/// factorizations called side by side (the theory's) still run side by side.
fn factorize<R: Send>(order: usize, f: impl FnOnce() -> R + Send) -> R {
    fixed_factor_parallelism();
    if order < FACTOR_POOL_MIN {
        return f();
    }
    FACTOR_POOL.with(|pool| match pool {
        Some(pool) => pool.install(f),
        None => f(),
    })
}

/// Solves `A x = b` for a symmetric positive definite `A` (row-major `n×n`) by Cholesky, with
/// `faer`'s parallelism fixed ([`FACTOR_THREADS`]).
///
/// # Errors
/// `None` if `A` is not numerically positive definite.
pub fn cholesky_solve(a: &[f64], n: usize, b: &[f64]) -> Option<Vec<f64>> {
    factorize(n, || {
        let m = Mat::<f64>::from_fn(n, n, |i, j| a[i * n + j]);
        let llt = m.llt(Side::Lower).ok()?;
        let rhs = Mat::<f64>::from_fn(n, 1, |i, _| b[i]);
        use faer::linalg::solvers::Solve;
        let x = llt.solve(&rhs);
        Some((0..n).map(|i| x[(i, 0)]).collect())
    })
}

/// Eigen-decomposition of a symmetric `n×n` matrix (row-major): eigenvalues in non-increasing
/// order and the matching unit eigenvectors (`vectors[j]` belongs to `values[j]`), each signed so
/// that its largest-magnitude component is positive (a deterministic convention); `faer`'s
/// parallelism fixed ([`FACTOR_THREADS`]).
///
/// # Errors
/// [`Error::Numerical`] if the solver does not converge.
pub fn symmetric_eigen(a: &[f64], n: usize) -> Result<(Vec<f64>, Vec<Vec<f64>>)> {
    if n == 0 {
        return Ok((vec![], vec![]));
    }
    let evd = factorize(n, || {
        Mat::<f64>::from_fn(n, n, |i, j| 0.5 * (a[i * n + j] + a[j * n + i])).self_adjoint_eigen(Side::Lower)
    })
    .map_err(|e| Error::Numerical(format!("symmetric eigensolver failed: {e:?}")))?;
    let s = evd.S();
    let u = evd.U();
    let mut values = Vec::with_capacity(n);
    let mut vectors = Vec::with_capacity(n);
    for j in (0..n).rev() {
        values.push(s[j]);
        let mut v: Vec<f64> = (0..n).map(|i| u[(i, j)]).collect();
        let big = v
            .iter()
            .cloned()
            .fold(0.0f64, |acc, x| if x.abs() > acc.abs() { x } else { acc });
        if big < 0.0 {
            v.iter_mut().for_each(|x| *x = -*x);
        }
        vectors.push(v);
    }
    Ok((values, vectors))
}

/// Singular values (non-increasing) of a row-major `m×n` matrix, `faer`'s parallelism fixed
/// ([`FACTOR_THREADS`]).
///
/// # Errors
/// [`Error::Numerical`] if the SVD does not converge.
pub fn singular_values(a: &[f64], m: usize, n: usize) -> Result<Vec<f64>> {
    if m == 0 || n == 0 {
        return Ok(vec![]);
    }
    factorize(m.max(n), || Mat::<f64>::from_fn(m, n, |i, j| a[i * n + j]).singular_values())
        .map_err(|e| Error::Numerical(format!("singular value decomposition failed: {e:?}")))
}

/// Dot product.
#[inline]
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `f(i, dot(row_i, b))` for each row `i` of `rows` (row-major, `b.len()` columns), in order,
/// with [`dot`]'s numbers bit for bit: each row's sum is its own chain of additions in order,
/// [`DOT_ROWS`] rows in lockstep. One chain waits for each addition before the next (about three
/// cycles per term); eight independent chains keep the units busy, which makes a row of 512 terms
/// about five times faster (the label shift `<b, z>` of every sample). With AVX-512, sixteen rows
/// at a time in the vector lanes ([`lanes::coordinates_and_dots`]).
pub fn dot_rows(rows: &[f64], b: &[f64], mut f: impl FnMut(usize, f64)) {
    let d = b.len();
    if d == 0 {
        (0..rows.len()).for_each(|i| f(i, dot(&[], b)));
        return;
    }
    // AVX-512: sixteen rows at a time, one per vector lane (`lanes`), a piece at a time.
    if lanes::usable() {
        const PIECE: usize = 256;
        let mut out = [0.0; PIECE];
        for (p, piece) in rows.chunks(PIECE * d).enumerate() {
            let n = piece.len() / d;
            let ran = lanes::coordinates_and_dots(piece, d, None, &mut [], Some((b, &mut out[..n])));
            assert!(ran, "the lanes kernel runs where it is usable");
            out[..n].iter().enumerate().for_each(|(i, v)| f(p * PIECE + i, *v));
        }
        return;
    }
    // The start of `dot`'s sum (that of an empty sum: the standard library's choice of zero).
    let zero: f64 = std::iter::empty::<f64>().sum();
    let groups = rows.chunks_exact(DOT_ROWS * d);
    let rest = groups.remainder();
    for (g, group) in groups.enumerate() {
        let mut acc = [zero; DOT_ROWS];
        for (k, bk) in b.iter().enumerate() {
            for (r, a) in acc.iter_mut().enumerate() {
                *a += group[r * d + k] * bk;
            }
        }
        acc.iter().enumerate().for_each(|(r, a)| f(g * DOT_ROWS + r, *a));
    }
    let done = rows.len() / d - rest.len() / d;
    for (r, row) in rest.chunks_exact(d).enumerate() {
        f(done + r, dot(row, b));
    }
}

/// Rows [`dot_rows`] sums in lockstep.
pub const DOT_ROWS: usize = 8;

/// Euclidean norm.
#[inline]
pub fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

/// Orthonormalizes the rows of a row-major `r×d` matrix in place by modified Gram–Schmidt with one
/// re-orthogonalization pass (equal to the Q factor of a QR with positive diagonal).
///
/// # Errors
/// [`Error::Numerical`] if the rows are linearly dependent.
pub fn orthonormalize_rows(a: &mut [f64], r: usize, d: usize) -> Result<()> {
    for k in 0..r {
        for _pass in 0..2 {
            for j in 0..k {
                let (done, rest) = a.split_at_mut(k * d);
                let qj = &done[j * d..(j + 1) * d];
                let row = &mut rest[..d];
                let c = dot(qj, row);
                row.iter_mut().zip(qj).for_each(|(x, q)| *x -= c * q);
            }
        }
        let row = &mut a[k * d..(k + 1) * d];
        let nrm = norm(row);
        if nrm.is_nan() || nrm <= 1e-12 {
            return Err(Error::Numerical(format!(
                "teacher rows are linearly dependent at row {}",
                k + 1
            )));
        }
        row.iter_mut().for_each(|x| *x /= nrm);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn naive(m: usize, n: usize, k: usize, a: &[f64], ta: bool, b: &[f64], tb: bool) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0;
                for l in 0..k {
                    let x = if ta { a[l * m + i] } else { a[i * k + l] };
                    let y = if tb { b[j * k + l] } else { b[l * n + j] };
                    s += x * y;
                }
                c[i * n + j] = s;
            }
        }
        c
    }

    fn op(x: &[f64], transposed: bool) -> Op<'_, f64> {
        if transposed {
            Op::Transposed(x)
        } else {
            Op::Plain(x)
        }
    }

    /// `gemm` split over 2, 3 or 4 threads of a pool ([`with_gemm_threads`]) gives one thread's
    /// numbers bit for bit: outputs large enough for `gemm` to split (past its threading
    /// threshold of 48·48·256 multiply-adds per depth block), depths of one to four of its
    /// blocks (`kc ≤ 512`) with a short last one, edges that are not whole tiles, every layout
    /// of the operands, `C =` and `C +=` onto random values, terms of mixed magnitudes (where
    /// the order of a sum shows), both precisions.
    #[test]
    fn gemm_over_threads_is_one_thread_bit_for_bit() {
        fn check<T: Real>(rng: &mut rand_chacha::ChaCha8Rng, pools: &[rayon::ThreadPool]) -> usize {
            let mut value = || T::from_f64(rng.random_range(-1.0..1.0) * if rng.random_bool(0.05) { 1e6 } else { 1.0 });
            let mut checked = 0;
            for [m, n, k] in [[300, 257, 700], [97, 1030, 513], [513, 130, 1100], [1000, 61, 2047]] {
                let a: Vec<T> = (0..m * k).map(|_| value()).collect();
                let b: Vec<T> = (0..k * n).map(|_| value()).collect();
                let c0: Vec<T> = (0..m * n).map(|_| value()).collect();
                let layouts = [(false, true, false), (false, false, true), (true, false, false), (true, true, true)];
                for (ta, tb, accumulate) in layouts {
                    let mut one = c0.clone();
                    matmul(&mut one, [m, n, k], op(&a, ta), op(&b, tb), accumulate);
                    for pool in pools {
                        let threads = pool.current_num_threads();
                        let mut split = c0.clone();
                        pool.install(|| {
                            with_gemm_threads(threads, || matmul(&mut split, [m, n, k], op(&a, ta), op(&b, tb), accumulate))
                        });
                        let same = one.iter().zip(&split).all(|(x, y)| x.to_f64().to_bits() == y.to_f64().to_bits());
                        assert!(same, "{m}×{n}×{k}, a transposed {ta}, b transposed {tb}, accumulate {accumulate}, {threads} threads");
                        checked += 1;
                    }
                    // The thread's setting is restored.
                    assert_eq!(GEMM_THREADS.with(|c| c.get()), 1);
                }
            }
            checked
        }
        fn op<T>(x: &[T], transposed: bool) -> Op<'_, T> {
            if transposed {
                Op::Transposed(x)
            } else {
                Op::Plain(x)
            }
        }
        let pools: Vec<rayon::ThreadPool> = [2, 3, 4]
            .iter()
            .map(|t| rayon::ThreadPoolBuilder::new().num_threads(*t).build().unwrap())
            .collect();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        assert_eq!(check::<f64>(&mut rng, &pools) + check::<f32>(&mut rng, &pools), 2 * 4 * 4 * 3);
    }

    /// The lockstep sums give `dot`'s numbers bit for bit, whole groups and the rest, including
    /// sums of negative zeros (where the start of the sum shows) and mixed magnitudes (where the
    /// order shows).
    #[test]
    fn dot_rows_is_dot_bit_for_bit() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut checked = 0;
        for d in [0, 1, 2, 5, 8, 31, 512] {
            for rows in [0, 1, 7, 8, 9, 16, 17, 25] {
                let mut z: Vec<f64> = (0..rows * d)
                    .map(|_| rng.random_range(-1.0..1.0) * if rng.random_bool(0.1) { 1e8 } else { 1.0 })
                    .collect();
                let b: Vec<f64> = (0..d).map(|_| rng.random_range(-1.0..1.0)).collect();
                // A row whose products are all −0: its sum is −0 or +0 depending on the start.
                if rows > 3 && d > 0 {
                    for k in 0..d {
                        z[3 * d + k] = if b[k] > 0.0 { -0.0 } else { 0.0 };
                    }
                }
                let mut seen = vec![false; rows];
                dot_rows(&z, &b, |i, v| {
                    assert!(!seen[i], "row {i} twice");
                    seen[i] = true;
                    let want = dot(&z[i * d..(i + 1) * d], &b);
                    assert_eq!(v.to_bits(), want.to_bits(), "d = {d}, rows = {rows}, row {i}: {v} vs {want}");
                    checked += 1;
                });
                assert!(d == 0 || seen.iter().all(|s| *s), "d = {d}, rows = {rows}: a row was skipped");
            }
        }
        assert_eq!(checked, 6 * 83);
    }

    #[test]
    fn matmul_matches_naive_across_block_boundaries() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        for &(m, n, k) in &[(1, 1, 1), (15, 16, 17), (127, 129, 128), (33, 7, 65), (3, 200, 1)] {
            for &ta in &[false, true] {
                for &tb in &[false, true] {
                    let a: Vec<f64> = (0..m * k).map(|_| rng.random::<f64>() - 0.5).collect();
                    let b: Vec<f64> = (0..k * n).map(|_| rng.random::<f64>() - 0.5).collect();
                    let want = naive(m, n, k, &a, ta, &b, tb);
                    let mut c = vec![1.0; m * n];
                    matmul(&mut c, [m, n, k], op(&a, ta), op(&b, tb), false);
                    for (x, y) in c.iter().zip(&want) {
                        assert!((x - y).abs() < 1e-12 * (k as f64), "{m} {n} {k} {ta} {tb}");
                    }
                    matmul(&mut c, [m, n, k], op(&a, ta), op(&b, tb), true);
                    for (x, y) in c.iter().zip(&want) {
                        assert!((x - 2.0 * y).abs() < 1e-12 * (k as f64));
                    }
                }
            }
        }
    }

    /// The column panels of 64 that computed every stored readout before the halving scheme.
    fn gram_panels<T: Real>(c: &mut [T], x: &[T], m: usize, p: usize) {
        let mut start = 0;
        while start < p {
            let cols = 64.min(p - start);
            let a = View { data: x, offset: start, row_stride: 1, col_stride: p };
            let b = View { data: x, offset: start, row_stride: p, col_stride: 1 };
            let out = OutView { data: &mut *c, offset: start * p + start, row_stride: p };
            matmul_strided(out, [p - start, cols, m], a, b, false);
            start += cols;
        }
    }

    #[test]
    fn gram_lower_is_bit_identical_to_the_panels_it_replaced() {
        // Sums over m longer than 512 and not a multiple of it are where the gemm crate's
        // blocking of the sum differs between small and large products.
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        for &(m, p) in &[(513, 129), (1100, 200), (700, 333), (1030, 64), (600, 128), (2, 400), (530, 5), (520, 16), (515, 145), (1500, 193), (3, 1), (700, 257), (600, 130)] {
            let x: Vec<f64> = (0..m * p).map(|_| rng.random::<f64>() - 0.5).collect();
            let mut xt = vec![0.0; m * p];
            transpose(&mut xt, &x, m, p);
            let (mut old, mut new) = (vec![0.0; p * p], vec![0.0; p * p]);
            gram_panels(&mut old, &x, m, p);
            gram_lower(&mut new, &xt, m, p, &mut Vec::new());
            let (xf, xtf): (Vec<f32>, Vec<f32>) = (x.iter().map(|v| *v as f32).collect(), xt.iter().map(|v| *v as f32).collect());
            let (mut oldf, mut newf) = (vec![0f32; p * p], vec![0f32; p * p]);
            gram_panels(&mut oldf, &xf, m, p);
            gram_lower(&mut newf, &xtf, m, p, &mut Vec::new());
            for i in 0..p {
                for j in 0..=i {
                    assert_eq!(old[i * p + j].to_bits(), new[i * p + j].to_bits(), "m {m}, p {p}, ({i}, {j})");
                    assert_eq!(oldf[i * p + j].to_bits(), newf[i * p + j].to_bits(), "f32, m {m}, p {p}, ({i}, {j})");
                }
            }
        }
    }

    #[test]
    fn gram_lower_matches_full_product() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for &(m, p) in &[(7, 5), (33, 17), (65, 129), (10, 3), (40, 300), (9, 700)] {
            let x: Vec<f64> = (0..m * p).map(|_| rng.random::<f64>() - 0.5).collect();
            let full = naive(p, p, m, &x, true, &x, false);
            let mut xt = vec![0.0; m * p];
            transpose(&mut xt, &x, m, p);
            let mut c = vec![0.0; p * p];
            gram_lower(&mut c, &xt, m, p, &mut Vec::new());
            mirror_lower(&mut c, p);
            for (a, b) in c.iter().zip(&full) {
                assert!((a - b).abs() < 1e-12 * m as f64);
            }
            let xtf: Vec<f32> = xt.iter().map(|v| *v as f32).collect();
            let mut cf = vec![0f32; p * p];
            gram_lower(&mut cf, &xtf, m, p, &mut Vec::new());
            for i in 0..p {
                for j in 0..=i {
                    assert!((cf[i * p + j] as f64 - full[i * p + j]).abs() < 1e-5 * m as f64);
                }
            }
        }
    }

    /// The factorizations give the same numbers whatever `faer`'s parallelism was set to
    /// before them (by default the machine's core count): without [`FACTOR_THREADS`] fixed, the
    /// Cholesky solve, the eigenvalues and the singular values of these 600×600 matrices differ
    /// in their last bits between one, two and five threads.
    #[test]
    fn factorizations_do_not_depend_on_faer_s_parallelism() {
        let n = 600;
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        let g: Vec<f64> = (0..2 * n * n).map(|_| next()).collect();
        let mut a = vec![0.0; n * n];
        matmul(&mut a, [n, n, 2 * n], Op::Transposed(&g), Op::Plain(&g), false);
        let b: Vec<f64> = (0..n).map(|i| (i as f64).sin()).collect();
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let all = |par: faer::Par| {
            faer::set_global_parallelism(par);
            let mut out = bits(&cholesky_solve(&a, n, &b).expect("positive definite"));
            faer::set_global_parallelism(par);
            out.extend(bits(&symmetric_eigen(&a, n).unwrap().0));
            faer::set_global_parallelism(par);
            out.extend(bits(&singular_values(&g, 2 * n, n).unwrap()));
            out
        };
        let reference = all(faer::Par::rayon(FACTOR_THREADS));
        for par in [faer::Par::Seq, faer::Par::rayon(5), faer::Par::rayon(0)] {
            assert!(all(par) == reference, "{par:?} changed a factorization's numbers");
        }
        // `factorize` runs the two threads' split on one thread: the numbers of `faer` itself at
        // two threads on two real threads.
        let two = rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("two threads");
        let direct = two.install(|| {
            faer::set_global_parallelism(faer::Par::rayon(2));
            let m = Mat::<f64>::from_fn(n, n, |i, j| a[i * n + j]);
            let x = {
                use faer::linalg::solvers::Solve;
                m.llt(Side::Lower).expect("positive definite").solve(Mat::<f64>::from_fn(n, 1, |i, _| b[i]))
            };
            let mut out: Vec<u64> = (0..n).map(|i| x[(i, 0)].to_bits()).collect();
            let sym = Mat::<f64>::from_fn(n, n, |i, j| 0.5 * (a[i * n + j] + a[j * n + i]));
            let s = sym.self_adjoint_eigen(Side::Lower).expect("converges");
            let mut values: Vec<f64> = (0..n).map(|i| s.S()[i]).collect();
            values.reverse();
            out.extend(bits(&values));
            let g = Mat::<f64>::from_fn(2 * n, n, |i, j| g[i * n + j]);
            out.extend(bits(&g.singular_values().expect("converges")));
            out
        });
        assert!(direct == reference, "one thread gave other numbers than two");
    }

    #[test]
    fn cholesky_solves_spd_system() {
        let a = [4.0, 1.0, 0.5, 1.0, 3.0, 0.2, 0.5, 0.2, 2.0];
        let x_true = [1.0, -2.0, 0.5];
        let b: Vec<f64> = (0..3).map(|i| (0..3).map(|j| a[i * 3 + j] * x_true[j]).sum()).collect();
        let x = cholesky_solve(&a, 3, &b).unwrap();
        for i in 0..3 {
            assert!((x[i] - x_true[i]).abs() < 1e-14);
        }
        assert!(cholesky_solve(&[1.0, 2.0, 2.0, 1.0], 2, &[1.0, 1.0]).is_none());
    }

    #[test]
    fn eigen_of_known_matrix() {
        // [[2,1],[1,2]]: eigenvalues 3 (1,1)/√2 and 1 (1,-1)/√2.
        let (vals, vecs) = symmetric_eigen(&[2.0, 1.0, 1.0, 2.0], 2).unwrap();
        assert!((vals[0] - 3.0).abs() < 1e-14 && (vals[1] - 1.0).abs() < 1e-14);
        assert!((vecs[0][0] - vecs[0][1]).abs() < 1e-14 && vecs[0][0] > 0.0);
        assert!((vecs[1][0] + vecs[1][1]).abs() < 1e-14);
    }

    #[test]
    fn singular_values_of_rank_one() {
        let u = [1.0, 2.0, 2.0];
        let v = [0.6, 0.8];
        let a: Vec<f64> = (0..3).flat_map(|i| (0..2).map(move |j| u[i] * v[j])).collect();
        let s = singular_values(&a, 3, 2).unwrap();
        assert!((s[0] - 3.0).abs() < 1e-13 && s[1].abs() < 1e-13);
    }

    #[test]
    fn gram_schmidt_gives_orthonormal_rows() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let (r, d) = (4, 9);
        let mut a: Vec<f64> = (0..r * d).map(|_| rng.random::<f64>() - 0.5).collect();
        orthonormalize_rows(&mut a, r, d).unwrap();
        for i in 0..r {
            for j in 0..r {
                let g = dot(&a[i * d..(i + 1) * d], &a[j * d..(j + 1) * d]);
                assert!((g - if i == j { 1.0 } else { 0.0 }).abs() < 1e-14);
            }
        }
        let mut dep = vec![1.0, 2.0, 2.0, 4.0];
        assert!(orthonormalize_rows(&mut dep, 2, 2).is_err());
    }
}
