//! The streaming kernels: the gradient and the giant step (docs/model.md §3), label preprocessing (§3.1), the ridge readout
//! and the test error (§3.2).
//!
//! Every pass streams the batch in chunks of `chunk` samples. A chunk is generated from its own
//! random streams, processed by one worker into that worker's partial sums (its GEMMs
//! single-threaded, except in a pass of fewer chunks than threads, whose `gemm` products the
//! workers without a chunk share without changing a number), and the partial sums are added to
//! the totals **in chunk order**. The result therefore depends on the chunk size (through the
//! order of floating-point additions) but never on the number of threads: 1 and N threads are
//! bit-identical. Memory is
//! `O(p·d + threads·(chunk·(d+p) + p·d + p²))`, independent of `n`.

use crate::activation::{Activation, CustomActivation};
use crate::data::{gaussian_rows, StreamKey};
use crate::error::{Error, Result};
use crate::linalg::panels::{self, FeaturePanels, Panels, TransposedScratch, BLOCK_ROWS};
use crate::linalg::{
    cholesky_solve, dot, dot_rows, features_rows, gram_lower, gram_lower_from_panels, gram_lower_from_rows, matmul,
    mirror_lower, norm, packed_for_products, features_in_blocks_then, kernel_times_transposed_then, readout_in_panels,
    readout_in_rows, times_transposed_then, transpose, with_gemm_threads,
    transposed_times, transposed_times_block, Op, Real,
};
use crate::model::{Loss, Normalize};
use crate::network::Network;
use crate::target::Target;
use std::sync::{Condvar, Mutex};

/// Where a pass's samples come from: the stream family and the number of samples.
#[derive(Debug, Clone, Copy)]
pub struct Batch {
    /// The stream family `(seed, purpose, step)`.
    pub key: StreamKey,
    /// Number of samples.
    pub n: usize,
}

/// How passes are executed: chunk size and thread pool.
pub struct Exec {
    /// Samples per chunk.
    pub chunk: usize,
    /// Number of workers (and of partial-sum workspaces).
    pub threads: usize,
    pool: Option<rayon::ThreadPool>,
    /// Set by the caller to stop: passes skip their remaining chunks (checked between chunks).
    cancel: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

impl Exec {
    /// An executor with `threads` workers (`1` runs on the calling thread).
    ///
    /// # Errors
    /// [`Error::Numerical`] if the thread pool cannot be built.
    pub fn new(chunk: usize, threads: usize) -> Result<Exec> {
        let threads = threads.max(1);
        let pool = if threads > 1 {
            Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .map_err(|e| Error::Numerical(format!("cannot start {threads} threads: {e}")))?,
            )
        } else {
            None
        };
        Ok(Exec {
            chunk: chunk.max(1),
            threads,
            pool,
            cancel: None,
        })
    }

    /// Stops the passes (between chunks) once `flag` is set; see [`Exec::cancelled`].
    pub fn with_cancel(mut self, flag: std::sync::Arc<std::sync::atomic::AtomicBool>) -> Exec {
        self.cancel = Some(flag);
        self
    }

    /// The cancel flag as a token for the computations outside the passes (the theory).
    pub fn cancel_token(&self) -> crate::error::Cancel {
        crate::error::Cancel::from_option(self.cancel.clone())
    }

    /// Whether the cancel flag is set (the last pass may then be incomplete).
    pub fn cancelled(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(|f| f.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Runs `compute(ws, start, len)` on the chunks of `0..n`, up to `work.len()` at a time in
    /// parallel, then `reduce(ws)` on each in chunk order.
    ///
    /// The workers take the chunks in order as they become free (no barrier between groups of
    /// chunks), and whichever worker completes the next chunk in order also reduces it while
    /// the others compute: a chunk's numbers depend only on the chunk and the reductions happen
    /// in chunk order, so the results are the same for any thread count and any timing.
    ///
    /// A pass of fewer chunks than threads (one chunk on two threads; 25 on 64) shares its
    /// chunks' `gemm` products with the workers that get no chunk
    /// ([`crate::linalg::with_gemm_threads`]: the same numbers): they wait in the pool and take
    /// tiles of the products running. Passes of more chunks keep one single-threaded product
    /// per chunk: sharing only the last chunks' products was not faster on two cores (the
    /// split runs `gemm`'s multi-threaded blocking on a worker whose partner is still busy).
    fn chunks<W: Send>(
        &self,
        n: usize,
        work: &mut [W],
        compute: impl Fn(&mut W, usize, usize) + Sync,
        reduce: impl FnMut(&mut W) + Send,
    ) {
        let chunk = self.chunk;
        let count = n.div_ceil(chunk);
        let range = |c: usize| (c * chunk, chunk.min(n - c * chunk));
        // Fewer chunks than threads: the chunks' products are shared with the idle workers.
        let share = count < self.threads;
        let pool = match &self.pool {
            Some(pool) if work.len() > 1 && count > 1 => pool,
            _ => {
                let (ws, mut reduce) = (&mut work[0], reduce);
                for c in 0..count {
                    if self.cancelled() {
                        return;
                    }
                    let (start, m) = range(c);
                    match &self.pool {
                        Some(pool) if share => {
                            pool.install(|| with_gemm_threads(self.threads, || compute(ws, start, m)))
                        }
                        _ => compute(ws, start, m),
                    }
                    reduce(ws);
                }
                return;
            }
        };
        let slots: Vec<Mutex<&mut W>> = work.iter_mut().map(Mutex::new).collect();
        let state = Mutex::new(Schedule {
            next: 0,
            free: (0..slots.len()).rev().collect(),
            done: std::collections::BTreeMap::new(),
            reduced: 0,
            reducing: false,
            stop: false,
        });
        let changed = Condvar::new();
        let reduce = Mutex::new(reduce);
        let worker = || loop {
            // The next chunk in order and a free workspace.
            let (c, k) = {
                let mut st = lock(&state);
                loop {
                    if st.stop || st.next == count || self.cancelled() {
                        return;
                    }
                    if let Some(k) = st.free.pop() {
                        st.next += 1;
                        break (st.next - 1, k);
                    }
                    st = changed.wait(st).unwrap_or_else(|e| e.into_inner());
                }
            };
            // A panic in `compute` stops the other workers instead of leaving them waiting for
            // this chunk.
            let guard = StopOnUnwind(&state, &changed);
            {
                let (start, m) = range(c);
                let mut ws = lock(&slots[k]);
                if share {
                    with_gemm_threads(self.threads, || compute(&mut ws, start, m));
                } else {
                    compute(&mut ws, start, m);
                }
            }
            let mut st = lock(&state);
            st.done.insert(c, k);
            if !st.reducing {
                st.reducing = true;
                loop {
                    let next = st.reduced;
                    let Some(k) = st.done.remove(&next) else { break };
                    drop(st);
                    {
                        let mut ws = lock(&slots[k]);
                        (lock(&reduce))(&mut ws);
                    }
                    st = lock(&state);
                    st.reduced += 1;
                    st.free.push(k);
                    changed.notify_all();
                }
                st.reducing = false;
            }
            changed.notify_all();
            drop(st);
            std::mem::forget(guard);
        };
        pool.broadcast(|_| worker());
    }

    /// The workspaces of a pass over `n` samples: one per thread and, with several threads, one
    /// spare, at most one per chunk.
    ///
    /// The spare keeps a worker computing while the chunk it finished waits for its turn to be
    /// reduced: with one workspace per thread, the worker that finished first waited for the
    /// other's chunk at every turn, as at a barrier (2 threads: 2–4% of each pass idle, ≤ 1% with
    /// the spare; `docs/architecture.md`, "Threads").
    fn workspaces<W>(&self, n: usize, make: impl Fn() -> W) -> Vec<W> {
        let wanted = if self.threads > 1 { self.threads + 1 } else { 1 };
        let needed = n.div_ceil(self.chunk).clamp(1, wanted);
        (0..needed).map(|_| make()).collect()
    }
}

/// The shared state of [`Exec::chunks`]'s workers.
struct Schedule {
    /// The next chunk to hand out.
    next: usize,
    /// Workspaces neither computing nor holding an unreduced chunk.
    free: Vec<usize>,
    /// Computed chunks waiting for their turn to be reduced, with their workspace.
    done: std::collections::BTreeMap<usize, usize>,
    /// Chunks reduced so far (the next one to reduce).
    reduced: usize,
    /// Whether a worker is reducing.
    reducing: bool,
    /// Set when a worker panicked: the others stop.
    stop: bool,
}

/// Locks `m`, also after a worker panicked while holding it (the panic is propagated anyway).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sets [`Schedule::stop`] and wakes the workers when dropped during a panic (forgotten
/// otherwise).
struct StopOnUnwind<'a>(&'a Mutex<Schedule>, &'a Condvar);

impl Drop for StopOnUnwind<'_> {
    fn drop(&mut self) {
        lock(self.0).stop = true;
        self.1.notify_all();
    }
}

/// Buffers for one chunk of samples and their labels; `zt` is `z` in the precision of the GEMMs.
///
/// Unless the GEMMs read the chunk's inputs in f64 (`whole`), `z` holds only the block of rows
/// being drawn (see [`Samples::fill_with`]): f32 GEMMs read `zt`, the label shift's pass needs
/// each block once, and a chunk-sized `z` cost `8·chunk·d` bytes per workspace (16 MiB at
/// d = 512) and a write to memory of every input.
struct Samples<T> {
    z: Vec<f64>,
    /// Whether `z` holds the whole chunk (the GEMMs' inputs in f64).
    whole: bool,
    zt: Vec<T>,
    xi: Vec<f64>,
    x: Vec<f64>,
    y: Vec<f64>,
    /// The label shift's `<b, z_i>` of a block, where the teacher's coordinates bring them.
    dots: Vec<f64>,
}

impl<T: Real> Samples<T> {
    /// Buffers for chunks of up to `chunk` samples; `gemm_inputs`: whether the pass's GEMMs
    /// read the chunk's inputs ([`Samples::zt`]).
    fn new(chunk: usize, d: usize, r: usize, gemm_inputs: bool) -> Self {
        // In f64 the GEMMs read `z` itself.
        let f64_gemms = T::same_as_f64(&[]).is_some();
        let zt = if gemm_inputs && !f64_gemms { vec![T::default(); chunk * d] } else { vec![] };
        let whole = gemm_inputs && f64_gemms;
        Samples {
            // Otherwise one block of rows at a time, allocated by the first fill.
            z: if whole { vec![0.0; chunk * d] } else { vec![] },
            whole,
            zt,
            xi: vec![0.0; chunk],
            x: vec![0.0; chunk * r],
            y: vec![0.0; chunk],
            dots: Vec::new(),
        }
    }

    /// The inputs of the first `m` samples in the GEMMs' precision.
    fn zt(&self, m: usize, d: usize) -> &[T] {
        if self.whole {
            return T::same_as_f64(&self.z[..m * d]).expect("a whole `z` is read by f64 GEMMs");
        }
        assert!(!self.zt.is_empty() || m * d == 0, "a pass without GEMM inputs read them");
        &self.zt[..m * d]
    }

    /// Generates samples `start..start+m` with their labels, minus `shift` when given (and `zt`
    /// when it was allocated).
    ///
    /// The work is done in blocks of rows small enough to stay in the core's cache between the
    /// draw and the labels, the shift and the conversion, which each read the samples once (a
    /// pass over the whole chunk went to memory each time). Every step is per sample, so the
    /// numbers are those of whole-chunk passes (tested): the teacher's coordinates, a GEMM over
    /// `d`, keep their summation order because every block is past the `gemm` crate's
    /// small-product paths whenever the chunk is (see [`fill_blocks`]). A target function given
    /// at run time gets the whole chunk in one call, as documented.
    fn fill(&mut self, target: &Target, key: &StreamKey, start: usize, m: usize, shift: Option<&LabelShift>) {
        self.fill_with(target, key, start, m, shift, |_, _, _| {});
    }

    /// [`Samples::fill`], then `block(z, y, b0)` on each block of rows `b0..` while it is in cache
    /// (the inputs and the labels of the block, in order).
    fn fill_with(
        &mut self,
        target: &Target,
        key: &StreamKey,
        start: usize,
        m: usize,
        shift: Option<&LabelShift>,
        mut block: impl FnMut(&[f64], &[f64], usize),
    ) {
        let (d, r) = (target.d, target.r);
        let noisy = target.noise > 0.0;
        let whole = target.custom_target().is_some();
        let blocks = if whole { vec![(0, m)] } else { fill_blocks(m, d, r) };
        for &(b0, b1) in &blocks {
            let mb = b1 - b0;
            // Where `z` holds one block, the block's rows start at 0.
            let z0 = if self.whole { b0 * d } else { 0 };
            if self.z.len() < z0 + mb * d {
                self.z.resize(z0 + mb * d, 0.0);
            }
            let z = &mut self.z[z0..z0 + mb * d];
            gaussian_rows(
                key,
                (start + b0) as u64,
                d,
                z,
                if noisy { Some(&mut self.xi[b0..b1]) } else { None },
            );
            let z = &*z;
            let linear = shift.and_then(|sh| sh.linear.as_deref());
            if linear.is_some() && self.dots.len() < mb {
                self.dots.resize(mb, 0.0);
            }
            let dotted = target.labels_and_dots(
                z,
                mb,
                if noisy { Some(&self.xi[b0..b1]) } else { None },
                &mut self.x[b0 * r..b1 * r],
                &mut self.y[b0..b1],
                linear.map(|b| (b, &mut self.dots[..mb])),
            );
            if let Some(sh) = shift {
                let y = &mut self.y[b0..b1];
                if dotted {
                    // `at_rows`' numbers: `y_i − (mean + <b, z_i>)`.
                    y.iter_mut().zip(&self.dots).for_each(|(v, s)| *v -= sh.mean + s);
                } else {
                    sh.at_rows(z, d, |i, v| y[i] -= v);
                }
            }
            if !self.zt.is_empty() {
                self.zt[b0 * d..b1 * d].iter_mut().zip(z).for_each(|(t, v)| *t = T::from_f64(*v));
            }
            block(z, &self.y[b0..b1], b0);
        }
    }
}

/// Bytes of samples [`Samples::fill`] handles at a time (well inside a core's L2 cache).
const FILL_BLOCK_BYTES: usize = 1 << 19;

/// Rows of a full block of [`Samples::fill`] for samples of `d` coordinates and `r` teacher
/// directions: about [`FILL_BLOCK_BYTES`], and more than 64 and more than `256/r` rows (see
/// [`fill_blocks`]). `giantstep bench` draws its normals in blocks of this size.
pub fn fill_block_rows(d: usize, r: usize) -> usize {
    (FILL_BLOCK_BYTES / (8 * d.max(1))).max(fewest_rows(r))
}

/// The fewest rows of a block with `r` teacher directions: past both of `gemm`'s small-product
/// paths (see [`fill_blocks`]).
fn fewest_rows(r: usize) -> usize {
    65.max(256 / r.max(1) + 1)
}

/// The blocks of rows `[b0, b1)` of a chunk of `m` samples of dimension `d` with `r` teacher
/// directions that [`Samples::fill`] handles at a time: about [`FILL_BLOCK_BYTES`] each, and
/// each with more than 64 and more than `256/r` rows when the chunk has (a short last block joins
/// the one before). The `gemm` crate picks its summation blocks over `d` from the product's shape
/// only in its paths for small products (both sides at most 64, or at most 16×16 entries): with
/// every block past both, the coordinates `W* z` of a block are summed as in the whole chunk's
/// product.
fn fill_blocks(m: usize, d: usize, r: usize) -> Vec<(usize, usize)> {
    let fewest = fewest_rows(r);
    let rows = fill_block_rows(d, r);
    if m <= rows {
        return vec![(0, m)];
    }
    let mut blocks: Vec<(usize, usize)> = (0..m / rows).map(|b| (b * rows, (b + 1) * rows)).collect();
    let rest = m % rows;
    if rest >= fewest {
        blocks.push((m - rest, m));
    } else if rest > 0 {
        blocks.last_mut().expect("m > rows").1 = m;
    }
    blocks
}

/// The part of the labels removed by preprocessing: `mean + <b, z>` (docs/model.md §3.1).
#[derive(Debug, Clone, PartialEq)]
pub struct LabelShift {
    /// The subtracted mean.
    pub mean: f64,
    /// The subtracted linear coefficients `b = Zᵀy/n` (absent for `mean` preprocessing).
    pub linear: Option<Vec<f64>>,
}

impl LabelShift {
    /// `f(i, mean + <b, z_i>)` for each sample `z_i` of `z` (row-major, `d` coordinates), in
    /// order: [`crate::linalg::dot`]'s numbers, several samples' sums in lockstep
    /// ([`crate::linalg::dot_rows`]).
    pub fn at_rows(&self, z: &[f64], d: usize, mut f: impl FnMut(usize, f64)) {
        match &self.linear {
            Some(b) => {
                assert_eq!(b.len(), d, "label shift: {} coefficients for samples of dimension {d}", b.len());
                dot_rows(z, b, |i, v| f(i, self.mean + v));
            }
            None => (0..z.len().checked_div(d).unwrap_or(0)).for_each(|i| f(i, self.mean + 0.0)),
        }
    }
}

/// Draws the inputs `z` of a batch and nothing else, chunk by chunk on the executor's threads,
/// each chunk in the blocks of rows a step draws it in for a target of `r` directions (into one
/// block's memory, kept in cache as [`Samples::fill`] keeps it): `giantstep bench` times the
/// Gaussian generation alone with it.
pub fn gaussian_pass(exec: &Exec, key: &StreamKey, n: usize, d: usize, r: usize) {
    let mut work = exec.workspaces(n, || vec![0.0; exec.chunk * d]);
    exec.chunks(
        n,
        &mut work,
        |z, start, m| {
            for (b0, b1) in fill_blocks(m, d, r) {
                gaussian_rows(key, (start + b0) as u64, d, &mut z[..(b1 - b0) * d], None);
            }
        },
        |_| {},
    );
}

/// Estimates the label shift on a batch: the empirical mean and, if `linear`, `b = Zᵀy/n`.
pub fn label_shift(exec: &Exec, target: &Target, batch: &Batch, linear: bool) -> LabelShift {
    let d = target.d;
    struct W {
        s: Samples<f64>,
        sum: f64,
        zy: Vec<f64>,
    }
    let mut work = exec.workspaces(batch.n, || W {
        s: Samples::new(exec.chunk, d, target.r, false),
        sum: 0.0,
        zy: vec![0.0; d],
    });
    let mut sum = 0.0;
    let mut zy = vec![0.0; d];
    exec.chunks(
        batch.n,
        &mut work,
        |w, start, m| {
            // zy = Zᵀ y for this chunk, block by block while the block is in cache: the GEMM
            // over the samples is a sequence of axpys in sample order (`gemm`'s matrix-vector
            // path), which blocks continue exactly (tested).
            let zy = &mut w.zy;
            w.s.fill_with(target, &batch.key, start, m, None, |z, y, b0| {
                if linear {
                    matmul(zy, [d, 1, y.len()], Op::Transposed(z), Op::Plain(y), b0 > 0);
                }
            });
            w.sum = w.s.y[..m].iter().sum();
        },
        |w| {
            sum += w.sum;
            if linear {
                zy.iter_mut().zip(&w.zy).for_each(|(a, b)| *a += b);
            }
        },
    );
    let n = batch.n as f64;
    LabelShift {
        mean: sum / n,
        linear: linear.then(|| zy.iter().map(|v| v / n).collect()),
    }
}

/// The gradient of one step and the batch statistics.
#[derive(Debug, Clone)]
pub struct Gradient {
    /// `G = (1/n) Σ e_ν (a/√p ⊙ σ'(W z_ν)) z_νᵀ` (row-major `p×d`), i.e. `−∇_W` of
    /// `(1/2n) Σ (ỹ − f)²` for the residual signal.
    pub g: Vec<f64>,
    /// `(1/n) Σ (ỹ − f)²` before the step (preprocessed labels).
    pub batch_mse: f64,
}

/// Computes the gradient `G` of docs/model.md §3 on a batch, streaming, with the GEMMs in precision `T`
/// (`f64`, or `f32` with every sum across chunks in `f64`).
pub fn gradient<T: Real>(
    exec: &Exec,
    net: &Network,
    target: &Target,
    batch: &Batch,
    shift: Option<&LabelShift>,
    loss: Loss,
) -> Gradient {
    let (d, p) = (net.d, net.p);
    let act = net.activation;
    let custom = net.custom_activation.as_ref();
    let inv_sqrt_p = 1.0 / (p as f64).sqrt();
    let a_scaled: Vec<f64> = net.a.iter().map(|a| a * inv_sqrt_p).collect();
    let wt: Vec<T> = net.w.iter().map(|v| T::from_f64(*v)).collect();
    let packed = packed_for_products(&wt, p, d);
    struct W<T> {
        s: Samples<T>,
        h: Vec<T>,
        g: Vec<T>,
        scratch: TransposedScratch<T>,
        sse: f64,
    }
    // `h` is allocated by the first chunk: a depth block of rows where the step runs fused
    // (below), a whole chunk otherwise.
    let mut work = exec.workspaces(batch.n, || W {
        s: Samples::new(exec.chunk, d, target.r, true),
        h: Vec::new(),
        g: vec![T::default(); p * d],
        scratch: TransposedScratch::default(),
        sse: 0.0,
    });
    let mut g = vec![0.0; p * d];
    let mut sse = 0.0;
    exec.chunks(
        batch.n,
        &mut work,
        |w, start, m| {
            w.s.fill(target, &batch.key, start, m, shift);
            let z = w.s.zt(m, d);
            w.sse = 0.0;
            let (y, sse) = (&w.s.y, &mut w.sse);
            // Per sample: σ′ into the row of `H = Z Wᵀ`, the residual, the row times e·a: `M`.
            let mut finish = |nu: usize, row: &mut [T], f: f64| {
                let r = y[nu] - f;
                *sse += r * r;
                let e = match loss {
                    Loss::Residual => r,
                    Loss::Correlation => y[nu],
                };
                let done = crate::activation::simd::scale_row(row, e, &a_scaled).unwrap_or(0);
                for (hi, ai) in row[done..].iter_mut().zip(&a_scaled[done..]) {
                    *hi = T::from_f64(hi.to_f64() * e * ai);
                }
            };
            // Fused where both products run in the panel kernel: `M` is made one depth block of
            // the gradient's sum at a time (rows in blocks of 48 while in cache) and added to
            // `G_chunk = Mᵀ Z` at once, so `M` is never whole (it stays in the cache, and `h`
            // holds `kc·p` numbers instead of `chunk·p`). The same numbers: the features' sums
            // do not depend on the rows taken together, and the gradient's are `gemm`'s blocks.
            let fused = match packed.as_ref() {
                Some(pk) if custom.is_none() && panels::usable(m, p, d) && panels::transposed_usable::<T>(m, p, d) => {
                    Some(pk)
                }
                _ => None,
            };
            if let Some(pk) = fused {
                let kc = panels::transposed_depth_block::<T>(m, p, d);
                if w.h.len() < kc.min(m) * p {
                    w.h.resize(kc.min(m) * p, T::default());
                }
                for k0 in (0..m).step_by(kc) {
                    let kb = kc.min(m - k0);
                    let (h, zb) = (&mut w.h[..kb * p], &z[k0 * d..(k0 + kb) * d]);
                    kernel_times_transposed_then(h, zb, kb, pk, |i0, rows| {
                        for (i, row) in rows.chunks_exact_mut(p).enumerate() {
                            let f = act.forward_row(row, &a_scaled);
                            finish(k0 + i0 + i, row, f);
                        }
                    });
                    transposed_times_block(&mut w.g, h, zb, [kb, p, d], k0 == 0, &mut w.scratch);
                }
                return;
            }
            if w.h.len() < m * p {
                w.h.resize(m * p, T::default());
            }
            // H = Z Wᵀ (m×p), then M row by row (in blocks while in cache, with the panel kernel).
            match custom {
                None => times_transposed_then(&mut w.h[..m * p], z, m, &wt, [p, d], packed.as_ref(), |i0, rows| {
                    for (i, row) in rows.chunks_exact_mut(p).enumerate() {
                        let f = act.forward_row(row, &a_scaled);
                        finish(i0 + i, row, f);
                    }
                }),
                Some(c) => {
                    matmul(&mut w.h[..m * p], [m, p, d], Op::Plain(z), Op::Transposed(&wt), false);
                    let (s, ds) = c.block(&w.h[..m * p], true);
                    for (nu, row) in w.h[..m * p].chunks_exact_mut(p).enumerate() {
                        let o = nu * p;
                        row.iter_mut().zip(&ds[o..o + p]).for_each(|(h, v)| *h = T::from_f64(*v));
                        finish(nu, row, crate::activation::dot_lanes(&s[o..o + p], &a_scaled));
                    }
                }
            }
            // G_chunk = Mᵀ Z (p×d).
            transposed_times(&mut w.g, &w.h[..m * p], z, [m, p, d], &mut w.scratch);
        },
        |w| {
            g.iter_mut().zip(&w.g).for_each(|(a, b)| *a += b.to_f64());
            sse += w.sse;
        },
    );
    let inv_n = 1.0 / batch.n as f64;
    g.iter_mut().for_each(|v| *v *= inv_n);
    Gradient {
        g,
        batch_mse: sse * inv_n,
    }
}

/// `W ← W + η G`, with the optional row normalization of docs/model.md §3.
pub fn apply_step(w: &mut [f64], g: &[f64], eta: f64, p: usize, d: usize, normalize: Normalize) {
    for i in 0..p {
        let row = &mut w[i * d..(i + 1) * d];
        let gi = &g[i * d..(i + 1) * d];
        if normalize == Normalize::Spherical {
            let nrm2 = dot(row, row);
            let c = if nrm2 > 0.0 { dot(gi, row) / nrm2 } else { 0.0 };
            for k in 0..d {
                row[k] += eta * (gi[k] - c * row[k]);
            }
        } else {
            row.iter_mut().zip(gi).for_each(|(w, g)| *w += eta * g);
        }
        if normalize != Normalize::None {
            let nrm = norm(row);
            if nrm > 0.0 {
                row.iter_mut().for_each(|w| *w /= nrm);
            }
        }
    }
}

/// The batch loss `(1/2n) Σ (ỹ − f(z))²` (for checking the gradient by finite differences).
#[cfg(any(test, feature = "internals"))]
pub fn batch_loss(exec: &Exec, net: &Network, target: &Target, batch: &Batch, shift: Option<&LabelShift>) -> f64 {
    0.5 * gradient::<f64>(exec, net, target, batch, shift, Loss::Residual).batch_mse
}

/// A fitted ridge readout (docs/model.md §3.2).
#[derive(Debug, Clone)]
pub struct Readout {
    /// Second-layer coefficients `â`.
    pub coef: Vec<f64>,
    /// Part added back to predictions (when labels were preprocessed).
    pub shift: Option<LabelShift>,
    /// Train error `mean (y − ŷ)²` on the readout batch.
    pub train_error: f64,
}

/// What a readout fit needs besides the layers: the shapes, the activation, the samples and
/// their labels, the label shift and the ridge `λ`.
#[derive(Clone, Copy)]
pub struct ReadoutProblem<'a> {
    /// Input dimension.
    pub d: usize,
    /// Width.
    pub p: usize,
    /// `σ`.
    pub activation: Activation,
    /// An activation given at run time, used instead of `activation`.
    pub custom: Option<&'a CustomActivation>,
    /// The labels' teacher.
    pub target: &'a Target,
    /// The readout batch.
    pub batch: &'a Batch,
    /// The part removed from the labels before the fit (preprocessing), if any.
    pub shift: Option<&'a LabelShift>,
    /// Ridge `λ`.
    pub lambda: f64,
}

/// Fits the ridge readout `â = argmin Σ (ỹ − <a, σ(W z)>/√p)² + λ|a|²` for each first layer in
/// `layers` (all with the same activation) on the same batch, streaming the `p×p` Gram matrix.
///
/// # Errors
/// [`Error::NotPositiveDefinite`] if `XᵀX/p + λI` is singular (only possible with `λ = 0`).
pub fn fit_readouts<T: Real>(exec: &Exec, layers: &[&[f64]], problem: &ReadoutProblem) -> Result<Vec<Readout>> {
    fit_readouts_each::<T>(exec, layers, problem).into_iter().collect()
}

/// [`fit_readouts`] with one outcome per layer: a layer whose features overflow or whose ridge
/// system is singular fails alone. Each layer's readout is bit-identical to fitting it alone.
pub fn fit_readouts_each<T: Real>(exec: &Exec, layers: &[&[f64]], problem: &ReadoutProblem) -> Vec<Result<Readout>> {
    let ReadoutProblem {
        d,
        p,
        activation: act,
        custom,
        target,
        batch,
        shift,
        ..
    } = *problem;
    let k = layers.len();
    let layers_t: Vec<Vec<T>> = layers
        .iter()
        .map(|l| l.iter().map(|v| T::from_f64(*v)).collect())
        .collect();
    // With a built-in activation, the layers packed for the panel kernel where it runs.
    let packed: Vec<Option<Panels<T>>> = layers_t
        .iter()
        .map(|l| if custom.is_none() { packed_for_products(l, p, d) } else { None })
        .collect();
    struct W<T> {
        s: Samples<T>,
        h: Vec<T>,
        ht: Vec<T>,
        x: FeaturePanels<T>,
        scratch: Vec<T>,
        gram: Vec<Vec<T>>,
        xty: Vec<Vec<f64>>,
        yy: f64,
    }
    // The buffers of either path are allocated by the first chunk that takes it.
    let mut work = exec.workspaces(batch.n, || W {
        s: Samples::new(exec.chunk, d, target.r, true),
        h: Vec::new(),
        ht: Vec::new(),
        x: FeaturePanels::default(),
        scratch: Vec::new(),
        gram: vec![vec![T::default(); p * p]; k],
        xty: vec![vec![0.0; p]; k],
        yy: 0.0,
    });
    let mut gram = vec![vec![0.0; p * p]; k];
    let mut xty = vec![vec![0.0; p]; k];
    let mut yy = 0.0;
    exec.chunks(
        batch.n,
        &mut work,
        |w, start, m| {
            w.s.fill(target, &batch.key, start, m, shift);
            let y = &w.s.y[..m];
            w.yy = y.iter().map(|v| v * v).sum();
            for (l, wl) in layers_t.iter().enumerate() {
                if let Some(pk) = packed[l].as_ref().filter(|_| readout_in_panels::<T>(m, p, d)) {
                    // The panel kernel end to end: each block of 48 rows of H = Z Wᵀ becomes
                    // σ(H), adds to Xᵀỹ (each entry summed over the samples in order, as below)
                    // and is stored in the Gram's panels, all while in cache.
                    let (xty, x) = (&mut w.xty[l], &mut w.x);
                    xty.iter_mut().for_each(|v| *v = 0.0);
                    x.reset(m, p);
                    w.h.resize(BLOCK_ROWS * p, T::default());
                    features_in_blocks_then(&mut w.h, w.s.zt(m, d), m, pk, |i0, rows| {
                        for (row, yv) in rows.chunks_exact_mut(p).zip(&y[i0..]) {
                            act.apply_and_add(row, *yv, xty);
                        }
                        x.set_rows(i0, rows);
                    });
                    gram_lower_from_panels(&mut w.gram[l], x, &mut w.scratch);
                    continue;
                }
                if custom.is_none() && readout_in_rows::<T>(m, p, d) {
                    // AVX-512: the features as rows, σ and Xᵀỹ row by row (each entry summed
                    // over the samples in order, as below), the triangle from the rows in place.
                    let xty = &mut w.xty[l];
                    xty.iter_mut().for_each(|v| *v = 0.0);
                    let x = features_rows(&mut w.h, w.s.zt(m, d), wl, [m, p, d]);
                    let ld = panels::wide_row_stride::<T>(p);
                    for (row, yv) in x.chunks_exact_mut(ld).zip(y) {
                        act.apply_and_add(&mut row[..p], *yv, xty);
                    }
                    gram_lower_from_rows(&mut w.gram[l], x, m, p);
                    continue;
                }
                // The features transposed, Xᵀ = σ(W Zᵀ) (p×m): the layout the Gram's GEMMs read
                // fastest. A function given at run time gets its chunk m×p as documented, and
                // the result is transposed.
                w.ht.resize(exec.chunk * p, T::default());
                let ht = &mut w.ht[..m * p];
                match custom {
                    None => {
                        matmul(ht, [p, m, d], Op::Plain(wl), Op::Transposed(w.s.zt(m, d)), false);
                        features_times_labels(ht, y, Some(&act), &mut w.xty[l]);
                    }
                    Some(c) => {
                        w.h.resize(exec.chunk * p, T::default());
                        let h = &mut w.h[..m * p];
                        matmul(h, [m, p, d], Op::Plain(w.s.zt(m, d)), Op::Transposed(wl), false);
                        c.apply(h);
                        transpose(ht, h, m, p);
                        features_times_labels(ht, y, None, &mut w.xty[l]);
                    }
                }
                // Lower triangle of XᵀX (mirrored after the reduction).
                gram_lower(&mut w.gram[l], ht, m, p, &mut w.scratch);
            }
        },
        |w| {
            yy += w.yy;
            for l in 0..k {
                // Only the lower triangle is meaningful.
                for i in 0..p {
                    let row = i * p;
                    gram[l][row..=row + i]
                        .iter_mut()
                        .zip(&w.gram[l][row..=row + i])
                        .for_each(|(a, b)| *a += b.to_f64());
                }
                xty[l].iter_mut().zip(&w.xty[l]).for_each(|(a, b)| *a += b);
            }
        },
    );
    for g in gram.iter_mut() {
        mirror_lower(g, p);
    }
    gram.iter()
        .zip(&xty)
        .map(|(g, q)| solve_ridge(g, q, yy, problem))
        .collect()
}

/// `Xᵀỹ` of a chunk in f64 from its features transposed `ht` (`p×m`), each entry summed over
/// the samples in order; with `act`, `ht` holds the pre-activations and becomes `σ(ht)` first.
/// Eight rows at a time, σ applied to them just before (while they are in cache): eight
/// independent sums keep the units busy where one sum's chain of additions left them waiting,
/// and each entry is still summed in sample order (the numbers of one row at a time).
fn features_times_labels<T: Real>(ht: &mut [T], y: &[f64], act: Option<&Activation>, xty: &mut [f64]) {
    const ROWS: usize = 8;
    let m = y.len();
    for (rows, out) in ht.chunks_mut(ROWS * m).zip(xty.chunks_mut(ROWS)) {
        if let Some(act) = act {
            act.apply(rows);
        }
        // A full group with its fixed count of sums, the last one row by row: one loop over a
        // variable count of sums took 2.9 ms per chunk and layer against 1.7 (p = 1024, m = 4096).
        if out.len() == ROWS {
            let mut acc = [0.0; ROWS];
            for (nu, yv) in y.iter().enumerate() {
                for (r, a) in acc.iter_mut().enumerate() {
                    *a += rows[r * m + nu].to_f64() * yv;
                }
            }
            out.copy_from_slice(&acc);
        } else {
            for (acc, row) in out.iter_mut().zip(rows.chunks_exact(m)) {
                *acc = 0.0;
                for (hv, yv) in row.iter().zip(y) {
                    *acc += hv.to_f64() * yv;
                }
            }
        }
    }
}

/// The ridge solution from the streamed sums `XᵀX` (full, `p×p`), `Xᵀỹ` and `Σỹ²` over the
/// problem's batch: `â = (XᵀX/p + λI)⁻¹ Xᵀỹ/√p` by Cholesky, and its train error.
fn solve_ridge(gram: &[f64], xty: &[f64], yy: f64, problem: &ReadoutProblem) -> Result<Readout> {
    let ReadoutProblem {
        p,
        lambda,
        shift,
        batch,
        ..
    } = *problem;
    let (pf, n) = (p as f64, batch.n as f64);
    if gram.iter().chain(xty).any(|v| !v.is_finite()) {
        return Err(Error::Numerical(
            "the readout features σ(W z) overflowed (first-layer weights too large); try a smaller eta0".into(),
        ));
    }
    // A = XᵀX/p + λI, q = Xᵀỹ/√p.
    let mut a: Vec<f64> = gram.iter().map(|v| v / pf).collect();
    for i in 0..p {
        a[i * p + i] += lambda;
    }
    let q: Vec<f64> = xty.iter().map(|v| v / pf.sqrt()).collect();
    let Some(coef) = cholesky_solve(&a, p, &q) else {
        // With λ > 0 the system is positive definite in exact arithmetic: a failure means the
        // features are too large for double precision (a first layer of norm 1e150, say).
        let largest = (0..p).map(|i| a[i * p + i]).fold(0.0f64, f64::max);
        if lambda > 0.0 {
            return Err(Error::Numerical(format!(
                "the readout's features overflow: the ridge system XᵀX/p + λI cannot be solved in double precision (its largest diagonal entry is {largest:.1e}); the first layer's weights are too large"
            )));
        }
        return Err(Error::NotPositiveDefinite { lambda });
    };
    // Σ(ỹ − Xâ/√p)² = Σỹ² − 2âᵀq + âᵀ(XᵀX/p)â.
    let mut quad = 0.0;
    for i in 0..p {
        quad += coef[i] * (dot(&a[i * p..(i + 1) * p], &coef) - lambda * coef[i]);
    }
    let sse = yy - 2.0 * dot(&coef, &q) + quad;
    Ok(Readout {
        coef,
        shift: shift.cloned(),
        train_error: (sse / n).max(0.0),
    })
}

/// What a test pass needs besides the models: shapes, activation, the test samples.
#[derive(Clone, Copy)]
pub struct TestProblem<'a> {
    /// Input dimension.
    pub d: usize,
    /// Width.
    pub p: usize,
    /// `σ`.
    pub activation: Activation,
    /// An activation given at run time, used instead of `activation`.
    pub custom: Option<&'a CustomActivation>,
    /// The labels' teacher.
    pub target: &'a Target,
    /// The test batch.
    pub batch: &'a Batch,
}

/// Test errors `mean (y − ŷ)²` of several (first layer, readout) pairs on one fresh test set,
/// and the label second moment `mean y²` of that set (the error of the zero predictor).
pub fn test_errors<T: Real>(exec: &Exec, models: &[(&[f64], &Readout)], problem: &TestProblem) -> (Vec<f64>, f64) {
    let TestProblem {
        d,
        p,
        activation: act,
        custom,
        target,
        batch,
    } = *problem;
    let k = models.len();
    let inv_sqrt_p = 1.0 / (p as f64).sqrt();
    let layers_t: Vec<Vec<T>> = models
        .iter()
        .map(|(l, _)| l.iter().map(|v| T::from_f64(*v)).collect())
        .collect();
    let packed: Vec<Option<Panels<T>>> = layers_t.iter().map(|l| packed_for_products(l, p, d)).collect();
    // The distinct shifts added back (usually one for all models): each is evaluated once per
    // sample, while the sample is in cache.
    let mut shifts: Vec<&LabelShift> = Vec::new();
    let shift_of: Vec<Option<usize>> = models
        .iter()
        .map(|(_, ro)| {
            ro.shift.as_ref().map(|sh| match shifts.iter().position(|s| *s == sh) {
                Some(i) => i,
                None => {
                    shifts.push(sh);
                    shifts.len() - 1
                }
            })
        })
        .collect();
    struct W<T> {
        s: Samples<T>,
        h: Vec<T>,
        at: Vec<Vec<f64>>,
        sse: Vec<f64>,
        yy: f64,
    }
    // `h` grows to what the chunks need: a block of rows with the panel kernel, else the chunk.
    let mut work = exec.workspaces(batch.n, || W {
        s: Samples::new(exec.chunk, d, target.r, true),
        h: Vec::new(),
        at: vec![vec![0.0; exec.chunk]; shifts.len()],
        sse: vec![0.0; k],
        yy: 0.0,
    });
    let mut sse = vec![0.0; k];
    let mut yy = 0.0;
    exec.chunks(
        batch.n,
        &mut work,
        |w, start, m| {
            let at = &mut w.at;
            w.s.fill_with(target, &batch.key, start, m, None, |z, y, b0| {
                for (sh, at) in shifts.iter().zip(at.iter_mut()) {
                    sh.at_rows(&z[..y.len() * d], d, |i, v| at[b0 + i] = v);
                }
            });
            w.yy = w.s.y[..m].iter().map(|v| v * v).sum();
            for (l, (_, ro)) in models.iter().enumerate() {
                let in_panels = custom.is_none() && packed[l].is_some() && crate::linalg::panels::usable(m, p, d);
                let rows = if in_panels { BLOCK_ROWS.min(m) } else { m };
                if w.h.len() < rows * p {
                    w.h.resize(rows * p, T::default());
                }
                let h = &mut w.h[..rows * p];
                let (y, at) = (&w.s.y, &w.at);
                let mut s = 0.0;
                let mut add = |nu: usize, f: f64| {
                    let mut pred = f * inv_sqrt_p;
                    if let Some(j) = shift_of[l] {
                        pred += at[j][nu];
                    }
                    let e = y[nu] - pred;
                    s += e * e;
                };
                match custom {
                    // Each row's output while the rows are in cache: with the panel kernel, each
                    // block of rows over the last (the product never leaves the cache).
                    None => match packed[l].as_ref().filter(|_| in_panels) {
                        Some(pk) => features_in_blocks_then(h, w.s.zt(m, d), m, pk, |i0, rows| {
                            for (i, row) in rows.chunks_exact(p).enumerate() {
                                add(i0 + i, act.output_row(row, &ro.coef));
                            }
                        }),
                        None => times_transposed_then(h, w.s.zt(m, d), m, &layers_t[l], [p, d], None, |i0, rows| {
                            for (i, row) in rows.chunks_exact(p).enumerate() {
                                add(i0 + i, act.output_row(row, &ro.coef));
                            }
                        }),
                    },
                    Some(c) => {
                        matmul(h, [m, p, d], Op::Plain(w.s.zt(m, d)), Op::Transposed(&layers_t[l]), false);
                        let sig = c.block(h, false).0;
                        for nu in 0..m {
                            add(nu, crate::activation::dot_lanes(&sig[nu * p..(nu + 1) * p], &ro.coef));
                        }
                    }
                }
                w.sse[l] = s;
            }
        },
        |w| {
            yy += w.yy;
            sse.iter_mut().zip(&w.sse).for_each(|(a, b)| *a += b);
        },
    );
    let n = batch.n as f64;
    (sse.iter().map(|s| s / n).collect(), yy / n)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn spherical_step_keeps_unit_rows_and_moves_orthogonally() {
        let d = 3;
        let mut w = vec![1.0, 0.0, 0.0];
        let g = vec![5.0, 1.0, 0.0];
        apply_step(&mut w, &g, 1.0, 1, d, Normalize::Spherical);
        // The radial part (5) is removed: w = (1, 1, 0)/√2.
        let s = 1.0 / 2f64.sqrt();
        assert!((w[0] - s).abs() < 1e-15 && (w[1] - s).abs() < 1e-15);
        let mut w = vec![1.0, 0.0, 0.0];
        apply_step(&mut w, &g, 1.0, 1, d, Normalize::Project);
        assert!((norm(&w) - 1.0).abs() < 1e-15 && (w[0] - 6.0 / 37f64.sqrt()).abs() < 1e-15);
    }

    #[test]
    fn a_pass_has_a_spare_workspace_with_several_threads() {
        let count = |threads: usize, n: usize| Exec::new(10, threads).unwrap().workspaces(n, || ()).len();
        assert_eq!(count(1, 1000), 1);
        assert_eq!(count(2, 1000), 3);
        assert_eq!(count(7, 1000), 8);
        // Never more than the chunks.
        assert_eq!(count(2, 20), 2);
        assert_eq!(count(7, 35), 4);
        assert_eq!(count(3, 0), 1);
    }

    /// The workers of `Exec::chunks` finish their chunks in an order set by each chunk's own
    /// delay (later chunks often first), yet every chunk is computed once, into a workspace
    /// of its own at the time, and reduced in chunk order, for any thread count.
    #[test]
    fn chunks_are_reduced_in_order_whatever_finishes_first() {
        for threads in [1, 2, 3, 7] {
            for n in [1usize, 5, 16, 47] {
                let exec = Exec::new(3, threads).unwrap();
                let count = n.div_ceil(3);
                let mut work = exec.workspaces(n, || (usize::MAX, 0));
                let mut seen = Vec::new();
                exec.chunks(
                    n,
                    &mut work,
                    |ws, start, m| {
                        // Chunk c sleeps (7c mod 5) ms: its neighbours overtake it.
                        std::thread::sleep(std::time::Duration::from_millis((7 * start / 3 % 5) as u64));
                        *ws = (start, m);
                    },
                    |ws| {
                        seen.push(*ws);
                        *ws = (usize::MAX, 0);
                    },
                );
                let want: Vec<(usize, usize)> = (0..count).map(|c| (3 * c, 3.min(n - 3 * c))).collect();
                assert_eq!(seen, want, "threads {threads}, n {n}");
            }
        }
    }

    /// A panic in one chunk reaches the caller, and the other workers stop instead of waiting
    /// for it.
    #[test]
    fn a_panicking_chunk_stops_the_pass() {
        let exec = Exec::new(1, 3).unwrap();
        let mut work = exec.workspaces(40, || 0usize);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            exec.chunks(
                40,
                &mut work,
                |ws, start, _| {
                    assert!(start != 5, "chunk 5 fails");
                    *ws = start;
                },
                |_| {},
            );
        }));
        assert!(outcome.is_err());
    }

    /// The blocked [`Samples::fill`] gives the numbers of whole-chunk passes: the draw, the
    /// labels (the teacher's coordinates by one GEMM over the chunk), the shift subtracted
    /// sample by sample, the conversion and the label shift's `Zᵀy` summed block by block, bit
    /// for bit, for chunks with and without a short last
    /// block, `d` on both sides of the GEMM's summation block (512), one to five teacher
    /// directions, noise, and both precisions.
    #[test]
    fn blocked_fill_matches_whole_chunk_passes() {
        fn check<T: Real>(d: usize, r: usize, m: usize, noise: f64, linear: bool, gemm_inputs: bool) {
            let vars: Vec<String> = (1..=r).map(|k| format!("z{k}")).collect();
            let expr = Expr::parse(&format!("{} + z1*z{r}", vars.join(" + "))).unwrap();
            let target = Target::new(expr, r, d, TeacherKind::Random, noise, 5).unwrap();
            let key = StreamKey::new(9, Purpose::Train, 1);
            let shift = LabelShift {
                mean: 0.25,
                linear: linear.then(|| (0..d).map(|j| ((j * 37) % 11) as f64 / 11.0 - 0.5).collect()),
            };
            let start = 12_345;
            let mut s = Samples::<T>::new(m, d, r, gemm_inputs);
            // Only f64 GEMM inputs keep the whole chunk's f64 inputs.
            assert_eq!(s.whole, gemm_inputs && std::mem::size_of::<T>() == 8);
            let mut zy = vec![f64::NAN; d];
            let mut blocks_z = Vec::new();
            s.fill_with(&target, &key, start, m, Some(&shift), |z, y, b0| {
                assert_eq!(blocks_z.len(), b0 * d, "blocks in order");
                blocks_z.extend_from_slice(z);
                matmul(&mut zy, [d, 1, y.len()], Op::Transposed(z), Op::Plain(y), b0 > 0);
            });
            // The whole-chunk passes.
            let mut z = vec![0.0; m * d];
            let mut xi = vec![0.0; m];
            gaussian_rows(&key, start as u64, d, &mut z, (noise > 0.0).then_some(&mut xi[..]));
            let (mut x, mut y) = (vec![0.0; m * r], vec![0.0; m]);
            target.labels(&z, m, (noise > 0.0).then_some(&xi[..]), &mut x, &mut y);
            for i in 0..m {
                y[i] -= shift.mean + shift.linear.as_ref().map_or(0.0, |b| dot(b, &z[i * d..(i + 1) * d]));
            }
            let what = format!("d = {d}, r = {r}, m = {m}, noise {noise}, linear {linear}, GEMM inputs {gemm_inputs}");
            assert_eq!(fill_blocks(m, d, r).last().map(|b| b.1), Some(m), "{what}");
            assert_eq!(blocks_z.len(), m * d, "{what}");
            assert!(z.iter().zip(&blocks_z).all(|(a, b)| a.to_bits() == b.to_bits()), "z: {what}");
            assert!(y.iter().zip(&s.y).all(|(a, b)| a.to_bits() == b.to_bits()), "y: {what}");
            if gemm_inputs {
                let zt = s.zt(m, d);
                assert!(z.iter().zip(zt).all(|(a, b)| T::from_f64(*a) == *b), "zt: {what}");
            } else {
                assert!(s.z.len() < m * d || fill_blocks(m, d, r).len() == 1, "one block's rows: {what}");
            }
            let mut whole = vec![0.0; d];
            matmul(&mut whole, [d, 1, m], Op::Transposed(&z), Op::Plain(&y), false);
            assert!(whole.iter().zip(&zy).all(|(a, b)| a.to_bits() == b.to_bits()), "Zᵀy: {what}");
        }
        for (d, r, m) in [
            (512, 3, 4096),
            (513, 2, 1000),
            (1000, 4, 300),
            (1500, 1, 200),
            (1500, 5, 129),
            (64, 2, 4096),
            (64, 1, 8192 + 64),
            (64, 3, 8192 + 65),
            (513, 1, 700),
            (1000, 2, 260),
            (700, 3, 64),
            (2, 2, 300),
            (1, 1, 100),
        ] {
            check::<f64>(d, r, m, 0.0, true, true);
        }
        check::<f64>(600, 2, 333, 0.5, true, true);
        check::<f64>(600, 2, 333, 0.0, false, true);
        check::<f32>(513, 3, 1111, 0.1, true, true);
        check::<f32>(512, 3, 4096, 0.0, true, true);
        // The label shift's pass (no GEMM reads the chunk): one block of `z` at a time.
        check::<f64>(512, 3, 4096, 0.0, true, false);
        check::<f64>(600, 2, 333, 0.5, true, false);
        // The blocks: past both small-product paths once the chunk is, covering it in order.
        for (m, d, r) in [(4096, 512, 3), (1000, 64, 1), (8192 + 64, 64, 2), (8192 + 65, 64, 4), (100, 5000, 1), (65, 1, 8)] {
            let b = fill_blocks(m, d, r);
            assert!(b.windows(2).all(|w| w[0].1 == w[1].0) && b[0].0 == 0, "{b:?}");
            let small = |rows: usize| rows <= 64 || rows * r <= 256;
            assert!(b.len() == 1 || b.iter().all(|(b0, b1)| !small(b1 - b0)), "{b:?}");
        }
        assert!(fill_blocks(4096, 512, 3).len() > 1);
    }

    use crate::data::Purpose;
    use crate::expr::Expr;
    use crate::model::{FirstLayerInit, NetworkConfig, SecondLayerInit};
    use crate::target::TeacherKind;

    fn problem<'a>(net: &Network, target: &'a Target, batch: &'a Batch, lambda: f64) -> ReadoutProblem<'a> {
        ReadoutProblem {
            d: net.d,
            p: net.p,
            activation: net.activation,
            custom: None,
            target,
            batch,
            shift: None,
            lambda,
        }
    }

    fn setup(d: usize, p: usize, act: &str, expr: &str) -> (Network, Target) {
        let e = Expr::parse(expr).unwrap();
        let r = e.max_var();
        let t = Target::new(e, r, d, TeacherKind::Random, 0.0, 1).unwrap();
        let net = Network::init(
            &NetworkConfig {
                d,
                p,
                activation: act.parse().unwrap(),
                first_layer: FirstLayerInit::Gaussian,
                second_layer: SecondLayerInit::Gaussian,
                symmetric: false,
            },
            2,
        );
        (net, t)
    }

    /// The analytic gradient equals a central finite difference of the batch loss (d=7, p=5).
    #[test]
    fn gradient_matches_finite_differences() {
        for act in ["tanh", "erf", "he3", "relu:0.3"] {
            let (mut net, target) = setup(7, 5, act, "z1 + z1*z2 + tanh(z3)");
            let exec = Exec::new(16, 1).unwrap();
            let batch = Batch {
                key: StreamKey::new(0, Purpose::Train, 0),
                n: 40,
            };
            // Perturb W so that f ≠ 0 and the residual depends on W.
            for (i, w) in net.w.iter_mut().enumerate() {
                *w += 0.1 * ((i as f64) * 0.7).sin();
            }
            let shift = label_shift(&exec, &target, &batch, true);
            for sh in [None, Some(&shift)] {
                let g = gradient::<f64>(&exec, &net, &target, &batch, sh, Loss::Residual).g;
                let h = 1e-6;
                for idx in 0..net.w.len() {
                    let mut plus = net.clone();
                    plus.w[idx] += h;
                    let mut minus = net.clone();
                    minus.w[idx] -= h;
                    let fd = (batch_loss(&exec, &plus, &target, &batch, sh)
                        - batch_loss(&exec, &minus, &target, &batch, sh))
                        / (2.0 * h);
                    // G = −∇L.
                    assert!(
                        (fd + g[idx]).abs() < 1e-7 * (1.0 + g[idx].abs()),
                        "{act} [{idx}]: fd {fd} vs −G {}",
                        -g[idx]
                    );
                }
            }
        }
    }

    /// The three passes give the same numbers with the panel kernels as with `gemm` alone, in
    /// both precisions, at depths where the features' kernel runs (`d ≤ 512`, a last chunk too
    /// small for it) and past it (`d = 600`), and with the readout in panels end to end (`p =
    /// 150` and 210, a partial last panel; chunks of 97 samples, one depth block, and of 1024,
    /// two blocks, then 152); the gradient's `Mᵀ Z` by the kernel everywhere (chunks of 1000:
    /// `gemm`'s depth blocks of 500).
    #[test]
    fn passes_are_bit_identical_with_and_without_the_panel_kernel() {
        fn passes<T: Real>(d: usize, p: usize, n: usize, chunk: usize) -> Vec<u64> {
            let (net, target) = setup(d, p, "erf", "z1 + z1*z2");
            let exec = Exec::new(chunk, 2).unwrap();
            let batch = Batch {
                key: StreamKey::new(3, Purpose::Train, 0),
                n,
            };
            let g = gradient::<T>(&exec, &net, &target, &batch, None, Loss::Residual);
            let mut w2 = net.w.clone();
            apply_step(&mut w2, &g.g, 0.5, p, d, Normalize::None);
            let ros = fit_readouts::<T>(&exec, &[&net.w, &w2], &problem(&net, &target, &batch, 0.01)).unwrap();
            let test = Batch {
                key: StreamKey::new(3, Purpose::Test, 0),
                n,
            };
            let tp = TestProblem {
                d,
                p,
                activation: net.activation,
                custom: None,
                target: &target,
                batch: &test,
            };
            let (errs, _) = test_errors::<T>(&exec, &[(&net.w, &ros[0]), (&w2, &ros[1])], &tp);
            let mut out: Vec<u64> = g.g.iter().map(|v| v.to_bits()).collect();
            out.push(g.batch_mse.to_bits());
            for ro in &ros {
                out.extend(ro.coef.iter().map(|v| v.to_bits()));
            }
            out.extend(errs.iter().map(|v| v.to_bits()));
            out
        }
        if !crate::linalg::panels::runnable() {
            return;
        }
        let _forced = crate::linalg::panels::force_lock();
        for (d, p, n, chunk) in [
            (40, 24, 200, 97),
            (512, 40, 200, 97),
            (600, 20, 100, 97),
            (40, 150, 700, 97),
            (30, 210, 2200, 1024),
            (30, 70, 2100, 1000),
        ] {
            crate::linalg::panels::force(Some(false));
            let gemm = (passes::<f64>(d, p, n, chunk), passes::<f32>(d, p, n, chunk));
            crate::linalg::panels::force(Some(true));
            // The gradient's product `Mᵀ Z` by the kernel (chunks of 1000: two depth blocks of 500).
            assert!(crate::linalg::panels::transposed_usable::<f32>(chunk, p, d), "d = {d}, p = {p}: the gradient in gemm");
            if p > 128 {
                let ends = crate::linalg::panels::usable(chunk, p, d) && crate::linalg::panels::gram_usable::<f64>(chunk, p);
                assert!(ends, "d = {d}, p = {p}, chunk {chunk}: the readout does not run in panels");
            }
            let kernel = (passes::<f64>(d, p, n, chunk), passes::<f32>(d, p, n, chunk));
            crate::linalg::panels::force(None);
            assert!(gemm == kernel, "d = {d}, p = {p}: the panel kernel changed a number");
            // The default: on AVX-512 processors the readout's features as rows and the wide
            // Gram kernel (p > 128), elsewhere the panel kernel again.
            if p > 128 && crate::linalg::panels::wide_runnable() {
                assert!(crate::linalg::readout_in_rows::<f32>(chunk, p, d), "d = {d}, p = {p}: the readout not in rows");
            }
            let default = (passes::<f64>(d, p, n, chunk), passes::<f32>(d, p, n, chunk));
            assert!(gemm == default, "d = {d}, p = {p}: the default kernels changed a number");
        }
    }

    /// Streaming ridge equals a dense direct solve of the normal equations.
    #[test]
    fn streaming_ridge_equals_dense_solve() {
        let (d, p, n) = (6, 4, 37);
        let (net, target) = setup(d, p, "tanh", "z1^2 + z2");
        let batch = Batch {
            key: StreamKey::new(5, Purpose::Readout, 0),
            n,
        };
        let exec = Exec::new(5, 2).unwrap();
        let lambda = 0.3;
        let ro = &fit_readouts::<f64>(&exec, &[&net.w], &problem(&net, &target, &batch, lambda)).unwrap()[0];
        // Dense reference: materialize X and y.
        let mut z = vec![0.0; n * d];
        gaussian_rows(&batch.key, 0, d, &mut z, None);
        let mut x = vec![0.0; n * target.r];
        let mut y = vec![0.0; n];
        target.labels(&z, n, None, &mut x, &mut y);
        let feats: Vec<f64> = (0..n)
            .flat_map(|nu| {
                let zr = z[nu * d..(nu + 1) * d].to_vec();
                let net = &net;
                (0..p).map(move |i| net.activation.f(dot(&net.w[i * d..(i + 1) * d], &zr)) / (p as f64).sqrt())
            })
            .collect();
        // Solve (FᵀF + λI) a = Fᵀy by Gaussian elimination.
        let mut m = vec![0.0; p * (p + 1)];
        for i in 0..p {
            for j in 0..p {
                m[i * (p + 1) + j] = (0..n).map(|nu| feats[nu * p + i] * feats[nu * p + j]).sum::<f64>()
                    + if i == j { lambda } else { 0.0 };
            }
            m[i * (p + 1) + p] = (0..n).map(|nu| feats[nu * p + i] * y[nu]).sum();
        }
        for c in 0..p {
            for r in 0..p {
                if r != c {
                    let f = m[r * (p + 1) + c] / m[c * (p + 1) + c];
                    for k in 0..=p {
                        m[r * (p + 1) + k] -= f * m[c * (p + 1) + k];
                    }
                }
            }
        }
        let a: Vec<f64> = (0..p).map(|i| m[i * (p + 1) + p] / m[i * (p + 1) + i]).collect();
        for i in 0..p {
            assert!(
                (a[i] - ro.coef[i]).abs() < 1e-10 * (1.0 + a[i].abs()),
                "{i}: {} vs {}",
                a[i],
                ro.coef[i]
            );
        }
        let train: f64 = (0..n)
            .map(|nu| {
                let pred: f64 = (0..p).map(|i| feats[nu * p + i] * a[i]).sum();
                (y[nu] - pred).powi(2)
            })
            .sum::<f64>()
            / n as f64;
        assert!((train - ro.train_error).abs() < 1e-10, "{train} vs {}", ro.train_error);
    }

    /// λ → 0 with more samples than features is least squares: the residual is orthogonal to
    /// the features.
    #[test]
    fn small_lambda_is_least_squares() {
        let (d, p, n) = (5, 3, 200);
        let (net, target) = setup(d, p, "erf", "z1 + z1*z2");
        let exec = Exec::new(64, 1).unwrap();
        let batch = Batch {
            key: StreamKey::new(9, Purpose::Readout, 0),
            n,
        };
        let ro = &fit_readouts::<f64>(&exec, &[&net.w], &problem(&net, &target, &batch, 1e-12)).unwrap()[0];
        let mut z = vec![0.0; n * d];
        gaussian_rows(&batch.key, 0, d, &mut z, None);
        let mut x = vec![0.0; n * 2];
        let mut y = vec![0.0; n];
        target.labels(&z, n, None, &mut x, &mut y);
        for i in 0..p {
            let mut s = 0.0;
            for nu in 0..n {
                let zr = &z[nu * d..(nu + 1) * d];
                let pred = (0..p)
                    .map(|j| ro.coef[j] * net.activation.f(dot(&net.w[j * d..(j + 1) * d], zr)))
                    .sum::<f64>()
                    / (p as f64).sqrt();
                s += (y[nu] - pred) * net.activation.f(dot(&net.w[i * d..(i + 1) * d], zr));
            }
            assert!(s.abs() < 1e-8, "feature {i}: {s}");
        }
    }

    #[test]
    fn label_shift_removes_mean_and_linear_part() {
        let (d, n) = (4, 500);
        let (_, target) = setup(d, 2, "relu", "1 + 2*z1 + z1*z2");
        let exec = Exec::new(33, 2).unwrap();
        let batch = Batch {
            key: StreamKey::new(2, Purpose::Train, 1),
            n,
        };
        let sh = label_shift(&exec, &target, &batch, true);
        let mut z = vec![0.0; n * d];
        gaussian_rows(&batch.key, 0, d, &mut z, None);
        let mut x = vec![0.0; n * 2];
        let mut y = vec![0.0; n];
        target.labels(&z, n, None, &mut x, &mut y);
        let mean = y.iter().sum::<f64>() / n as f64;
        assert!((mean - sh.mean).abs() < 1e-12);
        let b = sh.linear.as_ref().unwrap();
        for k in 0..d {
            let bk = (0..n).map(|nu| z[nu * d + k] * y[nu]).sum::<f64>() / n as f64;
            assert!((bk - b[k]).abs() < 1e-12);
        }
        // b ≈ 2·w*_1 (the linear part of the target).
        let proj = dot(b, &target.w_star[..d]);
        assert!((proj - 2.0).abs() < 0.4, "{proj}");
    }
}
