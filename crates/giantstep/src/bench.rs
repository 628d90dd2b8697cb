//! The benchmark of `giantstep bench`: wall time and achieved GFLOP/s of each phase of a run of a
//! standard workload, next to the GFLOP/s the same binary reaches on a bare GEMM of the chunk
//! shape on every thread at once.
//!
//! The workload is an ordinary configuration ([`Workload::config`]): its learning rate is
//! [`ValidConfig::eta_at`], its step is the run's step, and the flops of each phase are those of
//! the cost model of dry runs ([`crate::cost::run_flops`]), so that the benchmark measures what
//! runs do.
//!
//! ```no_run
//! use giantstep::bench::{bench, Workload};
//! let report = bench(&Workload::small())?;
//! println!("step + readout at {:.0}% of the bare GEMM rate", 100.0 * report.efficiency);
//! # Ok::<(), giantstep::Error>(())
//! ```

use crate::config::{BatchSize, Config, Precision, ValidConfig};
use crate::cost::run_flops;
use crate::data::{gaussian_rows_isa, Isa, Purpose, Stream, StreamKey};
use crate::engine::{self, Batch, Exec};
use crate::linalg::{gemm_isa, gemm_seconds, matmul, Op, Real};
use crate::model::{FirstLayerInit, SecondLayerInit};
use crate::network::Network;
use crate::target::Target;
use crate::Result;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// One timed phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    /// Name: gaussian (the inputs of the training batch alone), data (inputs and labels, the
    /// label-shift pass), step, readout, test.
    pub name: String,
    /// Wall time.
    pub seconds: f64,
    /// Useful floating-point operations (0 for data generation).
    pub flops: f64,
    /// Achieved GFLOP/s.
    pub gflops: f64,
    /// `gflops / bare_gemm_gflops`.
    pub efficiency: f64,
    /// Samples per second through the phase.
    pub samples_per_s: f64,
    /// Share of the phase's thread time spent outside GEMM calls (data generation, labels,
    /// σ and σ', reductions). A call counts its wall time once: in a pass of fewer chunks than
    /// threads, where the workers without a chunk take tiles of the others' products
    /// (`linalg::with_gemm_threads`), their time there counts as outside, so the share is an
    /// upper bound there.
    pub non_gemm_share: f64,
}

/// The report of `giantstep bench`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// Workload name.
    pub workload: String,
    /// Input dimension.
    pub d: usize,
    /// Width.
    pub p: usize,
    /// Batch size of the step and of the readout.
    pub n: usize,
    /// Test samples.
    pub n_test: usize,
    /// Precision.
    pub precision: Precision,
    /// Threads.
    pub threads: usize,
    /// Chunk size.
    pub chunk: usize,
    /// The phases.
    pub phases: Vec<Phase>,
    /// GFLOP/s of bare `chunk×d · d×p` GEMMs run on all threads at once.
    pub bare_gemm_gflops: f64,
    /// The instruction set of the GEMM kernels (`AVX-512`, `AVX2+FMA`, `baseline`).
    pub gemm_isa: String,
    /// (step + readout flops) / (step + readout time) / bare GEMM rate.
    pub efficiency: f64,
    /// Peak resident memory of the process (VmHWM).
    pub peak_rss_bytes: u64,
    /// The instruction set of the Gaussian generation kernels (`Avx512`, `Avx2`, `Scalar`).
    #[serde(default)]
    pub gaussian_isa: String,
    /// The stream version of the workload's samples (the configuration's `stream`).
    #[serde(default)]
    pub gaussian_stream: u32,
    /// Standard normals per second of one thread with those kernels and that stream version
    /// (`chunk` samples of `d`, in the blocks a step draws them in).
    #[serde(default)]
    pub gaussian_per_s: f64,
    /// The same numbers through the scalar path, per second, measured beside it.
    #[serde(default)]
    pub gaussian_scalar_per_s: f64,
    /// The other stream version with the detected kernels, per second, measured beside it.
    #[serde(default)]
    pub gaussian_other_per_s: f64,
    /// The rates of the GEMM shapes a run makes, one thread, measured beside the bare one
    /// ([`gemm_shapes`]).
    #[serde(default)]
    pub shapes: Vec<ShapeRate>,
    /// Total wall time of the phases.
    pub total_seconds: f64,
}

/// The rate of one GEMM shape of a run, against the bare GEMM's ([`gemm_shapes`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShapeRate {
    /// What the product is (`bare Z Wᵀ`, `features W Zᵀ`, `gradient Mᵀ Z`, `Gram XᵀX (lower)`,
    /// and where the panel kernel runs its `Z Wᵀ` and the readout chunk by it).
    pub name: String,
    /// Useful GFLOP/s of one thread: the flops the floor counts (`2·m·d·p`, or `m·p²` for the
    /// Gram's triangle) over the best time of the trials.
    pub gflops: f64,
    /// `gflops` over the bare shape's, measured in the same trials.
    pub of_bare: f64,
}

/// The GEMMs a run makes per chunk of `m` samples, on one thread, in alternation with the bare
/// shape of the floors (best of `trials` each): the readout's features `W Zᵀ` (`p×m`), the
/// step's second product `Mᵀ Z` (`p×d`, a sum over the `m` samples), and the lower triangle of
/// the readout's Gram matrix (`linalg::gram_lower`, useful flops `m·p²`), and where the panel
/// kernel runs (`linalg::panels`) the step's and test pass's `Z Wᵀ` by it. Their ratios to the
/// bare shape bound what a run can reach against the floor with these kernels before any work
/// outside the GEMMs (README, "Performance"). Where the readout runs in the kernel's panels
/// (`linalg::readout_in_panels`), its chunk as a run makes it without σ and `Xᵀỹ`: the panel
/// kernel's `Z Wᵀ` by blocks of rows, each stored in the Gram's panels, then the triangle
/// `linalg::gram_lower_from_panels` (useful flops `2·m·d·p + m·p²`). Where the readout runs on
/// the AVX-512 Gram kernel (`linalg::readout_in_rows`), its triangle from the features as rows
/// (`linalg::gram_lower_from_rows`) alone and after `linalg::features_rows`.
pub fn gemm_shapes(precision: Precision, m: usize, d: usize, p: usize, trials: usize) -> Vec<ShapeRate> {
    match precision {
        Precision::F64 => shapes_typed::<f64>(m, d, p, trials),
        Precision::F32 => shapes_typed::<f32>(m, d, p, trials),
    }
}

fn shapes_typed<T: Real>(m: usize, d: usize, p: usize, trials: usize) -> Vec<ShapeRate> {
    use crate::linalg::gram_lower;
    let fill = |len: usize, mul: usize| -> Vec<T> {
        (0..len)
            .map(|i| T::from_f64(((i * mul) % 1000) as f64 / 1000.0 - 0.5))
            .collect()
    };
    let (z, w, h) = (fill(m * d, 7919), fill(p * d, 104_729), fill(m * p, 7907));
    let mut out_mp = vec![T::default(); m * p];
    let mut out_pd = vec![T::default(); p * d];
    let mut gram = vec![T::default(); p * p];
    let mut scratch = Vec::new();
    #[derive(Clone, Copy)]
    enum Shape {
        Bare,
        FeaturesWZ,
        GradientGemm,
        Gram,
        FeaturesPanel,
        GradientPanel,
        ReadoutPanels,
        GramRows,
        ReadoutRows,
    }
    let mut shapes = vec![
        ("bare Z Wᵀ", Shape::Bare),
        ("features W Zᵀ", Shape::FeaturesWZ),
        ("gradient Mᵀ Z", Shape::GradientGemm),
        ("Gram XᵀX (lower)", Shape::Gram),
    ];
    // The step's and the test pass's `Z Wᵀ` by the panel kernel where it runs (its packing of
    // `W`, once per pass, included), the step's `Mᵀ Z` likewise (its copies of `Z` included).
    if crate::linalg::panels::takes(d) && crate::linalg::panels::usable(m, p, d) {
        shapes.push(("features Z Wᵀ (panel kernel)", Shape::FeaturesPanel));
    }
    if crate::linalg::panels::transposed_usable::<T>(m, p, d) {
        shapes.push(("gradient Mᵀ Z (panel kernel)", Shape::GradientPanel));
    }
    if crate::linalg::readout_in_panels::<T>(m, p, d) {
        shapes.push(("readout chunk Z Wᵀ + Gram (panels)", Shape::ReadoutPanels));
    }
    // On AVX-512 processors: the triangle from the features as rows, alone and after the
    // features' product that writes them.
    if crate::linalg::readout_in_rows::<T>(m, p, d) {
        shapes.push(("Gram XᵀX (lower, rows)", Shape::GramRows));
        shapes.push(("readout chunk Z Wᵀ + Gram (rows)", Shape::ReadoutRows));
    }
    let mut rows_buf = Vec::new();
    if crate::linalg::readout_in_rows::<T>(m, p, d) {
        let ld = crate::linalg::panels::wide_row_stride::<T>(p);
        let rows = crate::linalg::features_rows(&mut rows_buf, &z, &w, [m, p, d]);
        for (row, v) in rows.chunks_exact_mut(ld).zip(h.chunks_exact(p)) {
            row[..p].copy_from_slice(v);
        }
    }
    // The readout packs `W` once per pass, outside its chunks.
    let readout_w = crate::linalg::packed_for_products(&w, p, d);
    let mut block = vec![T::default(); crate::linalg::panels::BLOCK_ROWS * p];
    let mut x = crate::linalg::panels::FeaturePanels::default();
    let mut transposed = crate::linalg::panels::TransposedScratch::default();
    let mut best = vec![f64::MAX; shapes.len()];
    for _ in 0..trials.max(1) + 1 {
        for (&(_, shape), b) in shapes.iter().zip(best.iter_mut()) {
            let t = Instant::now();
            match shape {
                Shape::Bare => matmul(&mut out_mp, [m, p, d], Op::Plain(&z), Op::Transposed(&w), false),
                Shape::FeaturesWZ => matmul(&mut out_mp, [p, m, d], Op::Plain(&w), Op::Transposed(&z), false),
                Shape::GradientGemm => matmul(&mut out_pd, [p, d, m], Op::Transposed(&h), Op::Plain(&z), false),
                Shape::Gram => gram_lower(&mut gram, &h, m, p, &mut scratch),
                Shape::FeaturesPanel => {
                    let packed = crate::linalg::packed_for_products(&w, p, d);
                    crate::linalg::times_transposed_then(&mut out_mp, &z, m, &w, [p, d], packed.as_ref(), |_, _| {});
                }
                Shape::GradientPanel => {
                    crate::linalg::transposed_times(&mut out_pd, &h, &z, [m, p, d], &mut transposed)
                }
                Shape::ReadoutPanels => {
                    let pk = readout_w.as_ref().expect("the panel kernel runs here");
                    x.reset(m, p);
                    crate::linalg::features_in_blocks_then(&mut block, &z, m, pk, |i0, rows| x.set_rows(i0, rows));
                    crate::linalg::gram_lower_from_panels(&mut gram, &x, &mut scratch);
                }
                Shape::GramRows => {
                    let ld = crate::linalg::panels::wide_row_stride::<T>(p);
                    let skip = rows_buf.as_ptr().align_offset(64).min(rows_buf.len());
                    crate::linalg::gram_lower_from_rows(&mut gram, &rows_buf[skip..skip + m * ld], m, p);
                }
                Shape::ReadoutRows => {
                    let mut buf = std::mem::take(&mut rows_buf);
                    let rows = crate::linalg::features_rows(&mut buf, &z, &w, [m, p, d]);
                    crate::linalg::gram_lower_from_rows(&mut gram, rows, m, p);
                    rows_buf = buf;
                }
            }
            *b = b.min(t.elapsed().as_secs_f64());
        }
    }
    let product = 2.0 * (m * d * p) as f64;
    let gram_flops = (m * p * p) as f64;
    let flops = |shape: Shape| match shape {
        Shape::Gram | Shape::GramRows => gram_flops,
        Shape::ReadoutPanels | Shape::ReadoutRows => product + gram_flops,
        _ => product,
    };
    let bare = product / best[0];
    shapes
        .iter()
        .zip(best)
        .map(|(&(name, shape), t)| ShapeRate {
            name: name.to_string(),
            gflops: flops(shape) / t / 1e9,
            of_bare: flops(shape) / t / bare,
        })
        .collect()
}

/// Peak resident set size of this process in bytes (0 where /proc is unavailable).
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
        })
        .map_or(0, |kb| kb * 1024)
}

/// GFLOP/s of a bare GEMM of the chunk shape (`chunk×d` by `d×p`) run on `threads` threads at
/// once, as the streaming kernels run it: a short calibration for cost estimates.
///
/// # Errors
/// If the thread count is not usable.
pub fn calibrate_gemm(precision: Precision, d: usize, p: usize, threads: usize, chunk: usize) -> Result<f64> {
    // The rate is flat beyond a thousand per dimension: a huge shape (a dry run of a plan no
    // machine could run) is calibrated at 1024 without allocating its matrices.
    let (d, p, chunk) = (d.min(CALIBRATION_MAX), p.min(CALIBRATION_MAX), chunk.min(4096));
    let exec = Exec::new(chunk, threads.min(crate::config::MAX_THREADS))?;
    Ok(match precision {
        Precision::F64 => bare_gemm::<f64>(&exec, d, p),
        Precision::F32 => bare_gemm::<f32>(&exec, d, p),
    })
}

fn bare_gemm<T: Real>(exec: &Exec, d: usize, p: usize) -> f64 {
    let m = exec.chunk;
    let z: Vec<T> = (0..m * d)
        .map(|i| T::from_f64(((i * 7919) % 1000) as f64 / 1000.0 - 0.5))
        .collect();
    let w: Vec<T> = (0..p * d)
        .map(|i| T::from_f64(((i * 104_729) % 1000) as f64 / 1000.0 - 0.5))
        .collect();
    let reps = 3;
    // Each thread's output is allocated and touched before the timing: the trials time the
    // products alone.
    let mut outputs: Vec<Vec<T>> = (0..exec.threads).map(|_| vec![T::default(); m * p]).collect();
    let run = |h: &mut Vec<T>| {
        for _ in 0..reps {
            matmul(h, [m, p, d], Op::Plain(&z), Op::Transposed(&w), false);
        }
    };
    run(&mut outputs[0]); // warm up
    let mut trial = || {
        std::thread::scope(|s| {
            for h in outputs.iter_mut() {
                s.spawn(|| run(h));
            }
        })
    };
    trial();
    // The median of several trials: one trial lasts ~0.1 s, short enough for a neighbour on a
    // shared machine to move it by 10%.
    let mut rates: Vec<f64> = (0..BARE_TRIALS)
        .map(|_| {
            let start = Instant::now();
            trial();
            let secs = start.elapsed().as_secs_f64();
            (exec.threads * reps) as f64 * 2.0 * (m * d * p) as f64 / secs / 1e9
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[BARE_TRIALS / 2]
}

/// Largest `d` and `p` of the calibration GEMM.
const CALIBRATION_MAX: usize = 1024;

/// Trials of each GEMM shape in [`bench()`]'s [`BenchReport::shapes`] (the best is reported).
pub const SHAPE_TRIALS: usize = 5;

/// Trials of the bare GEMM timing (the median is reported).
const BARE_TRIALS: usize = 7;

/// The workload of [`bench()`].
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// Name shown in the report (`standard`, `small`).
    pub name: String,
    /// Input dimension.
    pub d: usize,
    /// Width.
    pub p: usize,
    /// Batch size of the step and of the readout.
    pub n: usize,
    /// Test samples.
    pub n_test: usize,
    /// Precision of the GEMMs.
    pub precision: Precision,
    /// Worker threads (0: all cores).
    pub threads: usize,
    /// Samples per chunk.
    pub chunk: usize,
    /// Stream version of the samples (the configuration's `stream`).
    pub stream: u32,
}

impl Workload {
    /// The standard workload: `d = 512`, `p = 1024`, `n = d²`, 10 000 test samples, f64, all
    /// cores, chunks of 4096.
    pub fn standard() -> Workload {
        Workload::square("standard", 512, 1024)
    }

    /// The small workload: `d = 256`, `p = 512`, otherwise as [`Workload::standard`].
    pub fn small() -> Workload {
        Workload::square("small", 256, 512)
    }

    fn square(name: &str, d: usize, p: usize) -> Workload {
        Workload {
            name: name.into(),
            d,
            p,
            n: d * d,
            n_test: 10_000,
            precision: Precision::F64,
            threads: 0,
            chunk: 4096,
            stream: Stream::LATEST.number(),
        }
    }

    /// The run this workload times: one giant step on `z1 + z1*z2` (preset `staircase2`) with
    /// ReLU, the default learning rate `η = p·√(n/d)`, a fresh readout batch of `n` samples,
    /// seed 0.
    ///
    /// # Errors
    /// [`crate::Error::Invalid`] for sizes or a chunk a run would refuse.
    pub fn config(&self) -> Result<ValidConfig> {
        let mut c = Config {
            threads: self.threads,
            chunk: self.chunk,
            precision: self.precision,
            stream: self.stream,
            ..Config::default()
        };
        c.target.preset = Some("staircase2".into());
        c.network.d = self.d;
        c.network.p = self.p;
        c.network.activation = "relu".parse()?;
        c.network.first_layer = FirstLayerInit::Gaussian;
        c.network.second_layer = SecondLayerInit::Hypercube;
        c.network.symmetric = true;
        c.train.steps = 1;
        c.train.n = BatchSize::Count(self.n as u64);
        c.readout.n = Some(BatchSize::Count(self.n as u64));
        c.eval.n_test = self.n_test;
        c.eval.theory = false;
        c.resolve()
    }
}

/// With `true`, every product of this process goes to the `gemm` crate: the panel kernel (the
/// features' products, the gradient's and the readout's Gram triangle, used by default on
/// processors with AVX2 and FMA but not AVX-512) is off.
/// The numbers are the same either way; `giantstep bench --gemm-only` times the difference.
pub fn gemm_only(on: bool) {
    crate::linalg::panels::force(if on { Some(false) } else { None });
}

/// Runs the benchmark: one giant step, the readout of the trained and initial layers, the test
/// errors, and a data-generation-only pass, on the run of [`Workload::config`].
///
/// # Errors
/// As [`Workload::config`] and [`crate::run()`].
pub fn bench(w: &Workload) -> Result<BenchReport> {
    let cfg = w.config()?;
    match cfg.precision {
        Precision::F64 => bench_typed::<f64>(&w.name, &cfg),
        Precision::F32 => bench_typed::<f32>(&w.name, &cfg),
    }
}

fn bench_typed<T: Real>(name: &str, cfg: &ValidConfig) -> Result<BenchReport> {
    let (d, p) = (cfg.network.d, cfg.network.p);
    let (n, n_test, chunk) = (cfg.train_n(), cfg.eval.n_test, cfg.chunk);
    let exec = Exec::new(chunk, cfg.threads)?;
    let target = Target::new(
        cfg.expr().clone(),
        cfg.r(),
        d,
        cfg.target.teacher,
        cfg.target.noise,
        cfg.seed,
    )?;
    let mut net = Network::init(&cfg.network, cfg.seed);
    let w0 = net.w.clone();
    let flops = run_flops(cfg, 1);
    let bare = bare_gemm::<T>(&exec, d, p);
    let generation = generation_rates(
        Stream::from_number(cfg.stream).unwrap_or_default(),
        d,
        chunk.min(n),
        engine::fill_block_rows(d, target.r),
    );
    let shapes = shapes_typed::<T>(chunk.min(n), d, p, SHAPE_TRIALS);
    let mut phases = Vec::new();
    let workers = exec.threads.min(n.div_ceil(chunk)).max(1) as f64;
    let gemm_before = std::cell::Cell::new(gemm_seconds());
    let mut phase = |name: &str, seconds: f64, flops: f64, samples: usize| {
        let gflops = flops / seconds / 1e9;
        let in_gemm = gemm_seconds() - gemm_before.get();
        phases.push(Phase {
            name: name.into(),
            seconds,
            flops,
            gflops,
            efficiency: gflops / bare,
            samples_per_s: samples as f64 / seconds,
            non_gemm_share: (1.0 - in_gemm / (workers * seconds)).clamp(0.0, 1.0),
        });
    };
    let train = Batch {
        key: cfg.sample_key(Purpose::Train, 0),
        n,
    };
    gemm_before.set(gemm_seconds());
    let t = Instant::now();
    engine::gaussian_pass(&exec, &train.key, n, d, target.r);
    phase("gaussian", t.elapsed().as_secs_f64(), 0.0, n);
    gemm_before.set(gemm_seconds());
    let t = Instant::now();
    let _ = engine::label_shift(&exec, &target, &train, false);
    phase("data", t.elapsed().as_secs_f64(), 0.0, n);
    gemm_before.set(gemm_seconds());
    let t = Instant::now();
    let g = engine::gradient::<T>(&exec, &net, &target, &train, None, cfg.train.loss);
    phase("step", t.elapsed().as_secs_f64(), flops.step, n);
    engine::apply_step(&mut net.w, &g.g, cfg.eta_at(1), p, d, cfg.train.normalize);
    let readout = Batch {
        key: cfg.sample_key(Purpose::Readout, 0),
        n: cfg.readout_n(),
    };
    gemm_before.set(gemm_seconds());
    let t = Instant::now();
    let problem = engine::ReadoutProblem {
        d,
        p,
        activation: net.activation,
        custom: None,
        target: &target,
        batch: &readout,
        shift: None,
        lambda: cfg.readout.lambda,
    };
    let ro = engine::fit_readouts::<T>(&exec, &[&net.w, &w0], &problem)?;
    phase("readout", t.elapsed().as_secs_f64(), flops.readout, 2 * readout.n);
    let test = Batch {
        key: cfg.sample_key(Purpose::Test, 0),
        n: n_test,
    };
    gemm_before.set(gemm_seconds());
    let t = Instant::now();
    let problem = engine::TestProblem {
        d,
        p,
        activation: net.activation,
        custom: None,
        target: &target,
        batch: &test,
    };
    let _ = engine::test_errors::<T>(&exec, &[(&net.w, &ro[0]), (&w0, &ro[1])], &problem);
    phase("test", t.elapsed().as_secs_f64(), flops.test, 2 * n_test);
    let (sf, ss) = phases
        .iter()
        .filter(|ph| ph.name == "step" || ph.name == "readout")
        .fold((0.0, 0.0), |a, ph| (a.0 + ph.flops, a.1 + ph.seconds));
    Ok(BenchReport {
        workload: name.to_string(),
        d,
        p,
        n,
        n_test,
        precision: cfg.precision,
        threads: exec.threads,
        chunk,
        total_seconds: phases.iter().map(|ph| ph.seconds).sum(),
        efficiency: sf / ss / 1e9 / bare,
        phases,
        bare_gemm_gflops: bare,
        gemm_isa: gemm_isa().to_string(),
        peak_rss_bytes: peak_rss_bytes(),
        gaussian_isa: format!("{:?}", Isa::detected()),
        gaussian_stream: cfg.stream,
        gaussian_per_s: generation[0],
        gaussian_scalar_per_s: generation[1],
        gaussian_other_per_s: generation[2],
        shapes,
    })
}

/// Normals per second of one thread generating `rows` samples of `d` in blocks of `block` rows
/// (as a step draws them), alternately: stream `stream` with the detected kernels, the same
/// with the scalar path, and the other stream version with the detected kernels (the best of
/// five trials each).
fn generation_rates(stream: Stream, d: usize, rows: usize, block: usize) -> [f64; 3] {
    let other = match stream {
        Stream::V1 => Stream::V2,
        Stream::V2 => Stream::V1,
    };
    let key = StreamKey::new(0, Purpose::Train, 0);
    let block = block.clamp(1, rows.max(1));
    let mut z = vec![0.0; block * d];
    let mut best = [f64::MAX; 3];
    for _ in 0..5 {
        for (k, (isa, s)) in [
            (Isa::detected(), stream),
            (Isa::Scalar, stream),
            (Isa::detected(), other),
        ]
        .into_iter()
        .enumerate()
        {
            let key = key.with_stream(s);
            let t = Instant::now();
            for b0 in (0..rows).step_by(block) {
                let mb = block.min(rows - b0);
                gaussian_rows_isa(isa, &key, b0 as u64, d, &mut z[..mb * d], None);
            }
            best[k] = best[k].min(t.elapsed().as_secs_f64());
        }
    }
    let count = (rows * d) as f64;
    best.map(|b| count / b)
}

/// A workload of whole runs ([`bench_runs`]): the notebook's protocol or a group of the stairway
/// figure, run as `giantstep run` and `reproduce` run them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runs {
    /// The group's reference notebook (`bench/notebook_reference.py`): one giant step on
    /// `stairway-he124` at `n = d^1.3, d^1.65, d^2`, two seeds each, Gaussian second layer,
    /// `η = 10·√(d/p)`, linear label preprocessing, the readout on the step's batch with the test
    /// set's linear part added back; `d = 512, p = 1024`, 100 000 test samples (small:
    /// `d = 256, p = 512`, 20 000).
    Notebook,
    /// One training group of the paper-scale stairway (`docs/figures/stairway-he124/plan.toml`):
    /// `d = p = 512`, `n = d^2`, `T = 1 … 6` evaluated after every step, seed 0, the plan's
    /// learning rate and test set (small: `d = p = 256`).
    Stairway,
}

/// One phase of [`bench_runs`], summed over the runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunPhase {
    /// `setup` (teacher, network, initial overlaps), `step` (label shift and gradient passes),
    /// `theory` (what remains of the run's theory once training ends: it is computed beside the
    /// steps, whose time includes its share of the cores), `readout`, `test`.
    pub name: String,
    /// Wall time.
    pub seconds: f64,
    /// Floating-point operations ([`crate::cost::run_flops`]).
    pub flops: f64,
    /// The phase's GEMM floor: `flops` at the bare GEMM rate measured in the same run.
    pub floor_seconds: f64,
}

/// One run of [`bench_runs`]: its phases beside their floors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunTimes {
    /// The run, as in [`RunsReport::runs`].
    pub run: String,
    /// Wall time of the run.
    pub wall_seconds: f64,
    /// Its GEMM floor: its operations at the mean of the bare rates measured just before and
    /// after it.
    pub floor_seconds: f64,
    /// Its phases (those with time or operations), as [`RunsReport::phases`] for this run alone.
    pub phases: Vec<RunPhase>,
}

/// The report of [`bench_runs`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunsReport {
    /// `notebook` or `stairway` (with ` (small)`).
    pub workload: String,
    /// The runs, as `key = value` summaries.
    pub runs: Vec<String>,
    /// Precision.
    pub precision: Precision,
    /// Threads.
    pub threads: usize,
    /// The effective GFLOP/s of the floor: all the runs' operations over [`RunsReport::floor_seconds`].
    pub bare_gemm_gflops: f64,
    /// GFLOP/s of the bare `chunk×d · d×p` GEMM on all threads, measured before the first run
    /// and after each run (one more than the runs).
    pub bare_gemm_rates: Vec<f64>,
    /// The instruction set of the GEMM kernels.
    pub gemm_isa: String,
    /// The phases, summed over the runs.
    pub phases: Vec<RunPhase>,
    /// Each run alone, in order: where the ratio comes from (a run of one chunk runs its passes
    /// on one thread; a small run's fixed costs, such as the gradient's singular values, weigh
    /// more against its floor).
    pub per_run: Vec<RunTimes>,
    /// Wall time of the runs.
    pub wall_seconds: f64,
    /// Their GEMM floor: all their operations at the bare rate.
    pub floor_seconds: f64,
    /// Peak resident memory of the process.
    pub peak_rss_bytes: u64,
}

impl Runs {
    /// The configurations of the workload.
    ///
    /// # Errors
    /// [`crate::Error::Invalid`] for a precision or thread count a run refuses.
    pub fn configs(self, small: bool, precision: Precision, threads: usize, stream: u32) -> Result<Vec<ValidConfig>> {
        let mut out = Vec::new();
        match self {
            Runs::Notebook => {
                let (d, p, n_test) = if small {
                    (256, 512, 20_000)
                } else {
                    (512, 1024, 100_000)
                };
                for kappa in [1.3, 1.65, 2.0] {
                    for seed in 0..2 {
                        let text = format!(
                            "precision = \"{precision}\"\nthreads = {threads}\nseed = {seed}\nstream = {stream}\n\
                             [target]\npreset = \"stairway-he124\"\n\
                             [network]\nd = {d}\np = {p}\nsecond_layer = \"gaussian\"\nsymmetric = false\n\
                             [train]\nn = \"d^{kappa}\"\neta0 = {}\npreprocess = \"linear\"\n\
                             [readout]\nbatch = \"last\"\nadd_back = \"test\"\n\
                             [eval]\nn_test = {n_test}\nbaseline = false\ntheory = false\n",
                            10.0 * (d as f64 / p as f64).sqrt()
                        );
                        out.push(Config::from_toml(&text, "the notebook workload")?.resolve()?);
                    }
                }
            }
            Runs::Stairway => {
                let d = if small { 256 } else { 512 };
                let text = format!(
                    "precision = \"{precision}\"\nthreads = {threads}\nseed = 0\nstream = {stream}\n\
                     [target]\npreset = \"stairway-he124\"\n\
                     [network]\nd = {d}\np = {d}\n\
                     [train]\nn = \"d^2\"\nsteps = 6\neta_max0 = 5.0\n\
                     [eval]\nn_test = 100000\nevery_step = true\n"
                );
                out.push(Config::from_toml(&text, "the stairway workload")?.resolve()?);
            }
        }
        Ok(out)
    }
}

/// Times the runs of a workload phase by phase next to their GEMM floor: each run's operations
/// per phase ([`crate::cost::run_flops`]) at the bare GEMM rate of the runs' shape measured in the
/// same process just before and just after that run (their mean). On a shared machine the rate
/// drifts by tens of percent within a minute, so it is measured between every two runs, not only
/// around all of them; the measurements are not part of the timed wall.
///
/// # Errors
/// As [`Runs::configs`] and [`crate::run()`].
pub fn bench_runs(
    workload: Runs,
    small: bool,
    precision: Precision,
    threads: usize,
    stream: u32,
) -> Result<RunsReport> {
    let configs = workload.configs(small, precision, threads, stream)?;
    let first = &configs[0];
    let exec = Exec::new(first.chunk, first.threads)?;
    let bare_now = || match precision {
        Precision::F64 => bare_gemm::<f64>(&exec, first.network.d, first.network.p),
        Precision::F32 => bare_gemm::<f32>(&exec, first.network.d, first.network.p),
    };
    let mut rates = vec![bare_now()];
    let mut seconds = [0.0; 5];
    let mut flops = [0.0; 5];
    let mut floors = [0.0; 5];
    let mut runs = Vec::new();
    let mut per_run = Vec::new();
    let mut wall = 0.0;
    for cfg in &configs {
        let evaluated = if cfg.eval.every_step { cfg.train.steps } else { 1 };
        let f = run_flops(cfg, evaluated);
        let mut clock = PhaseClock::new();
        let options = crate::run::RunOptions {
            observer: Some(&mut clock),
            ..Default::default()
        };
        let started = Instant::now();
        crate::run::run_with(cfg, options)?;
        let run_wall = started.elapsed().as_secs_f64();
        wall += run_wall;
        clock.close();
        seconds.iter_mut().zip(clock.seconds).for_each(|(a, b)| *a += b);
        rates.push(bare_now());
        let rate = 0.5 * (rates[rates.len() - 2] + rates[rates.len() - 1]) * 1e9;
        let mut run_flops = [0.0; 5];
        for (k, ops) in [(1, f.step), (3, f.readout), (4, f.test)] {
            run_flops[k] = ops;
            flops[k] += ops;
            floors[k] += ops / rate;
        }
        let run = format!(
            "d = {}, p = {}, n = {}, T = {}, seed {}",
            cfg.network.d,
            cfg.network.p,
            cfg.train_n(),
            cfg.train.steps,
            cfg.seed
        );
        per_run.push(RunTimes {
            run: run.clone(),
            wall_seconds: run_wall,
            floor_seconds: run_flops.iter().sum::<f64>() / rate,
            phases: phase_list(&clock.seconds, &run_flops, &run_flops.map(|ops| ops / rate)),
        });
        runs.push(run);
    }
    let floor: f64 = floors.iter().sum();
    let phases = phase_list(&seconds, &flops, &floors);
    let name = match workload {
        Runs::Notebook => "notebook",
        Runs::Stairway => "stairway",
    };
    Ok(RunsReport {
        workload: format!("{name}{}", if small { " (small)" } else { "" }),
        runs,
        precision,
        threads: exec.threads,
        bare_gemm_gflops: flops.iter().sum::<f64>() / floor / 1e9,
        bare_gemm_rates: rates,
        gemm_isa: gemm_isa().to_string(),
        floor_seconds: floor,
        phases,
        per_run,
        wall_seconds: wall,
        peak_rss_bytes: peak_rss_bytes(),
    })
}

/// The kinds of run phase, in the order of [`PhaseClock::seconds`].
const PHASE_NAMES: [&str; 5] = ["setup", "step", "theory", "readout", "test"];

/// The phases with time or operations, from per-kind sums in the order of [`PHASE_NAMES`].
fn phase_list(seconds: &[f64; 5], flops: &[f64; 5], floors: &[f64; 5]) -> Vec<RunPhase> {
    PHASE_NAMES
        .iter()
        .enumerate()
        .filter(|(k, _)| seconds[*k] > 0.0 || flops[*k] > 0.0)
        .map(|(k, name)| RunPhase {
            name: (*name).into(),
            seconds: seconds[k],
            flops: flops[k],
            floor_seconds: floors[k],
        })
        .collect()
}

/// Wall time per kind of run phase (setup, step, theory, readout, test), from the observer's
/// phase events.
struct PhaseClock {
    seconds: [f64; 5],
    current: usize,
    since: Instant,
}

impl PhaseClock {
    fn new() -> Self {
        PhaseClock {
            seconds: [0.0; 5],
            current: 0,
            since: Instant::now(),
        }
    }

    fn switch(&mut self, to: usize) {
        self.seconds[self.current] += self.since.elapsed().as_secs_f64();
        self.current = to;
        self.since = Instant::now();
    }

    fn close(&mut self) {
        self.switch(self.current);
    }
}

impl crate::run::Observer for PhaseClock {
    fn phase(&mut self, phase: crate::run::Phase) {
        use crate::run::Phase;
        self.switch(match phase {
            Phase::Step { .. } => 1,
            Phase::Theory => 2,
            Phase::Readout => 3,
            Phase::Test => 4,
        });
    }
}

/// A one-line warning, with the estimated time, when a run would take more than ten minutes on
/// this machine: its operations ([`crate::cost::run_flops`]) over a short calibration GEMM of the
/// run's shape, timed only for runs above 10¹³ operations (under ten minutes at 17 GFLOP/s, the
/// slowest machine measured). `None` for shorter runs.
pub fn long_run_warning(resolved: &ValidConfig) -> Option<String> {
    let evaluated = if resolved.eval.every_step {
        resolved.train.steps
    } else {
        1
    };
    let flops = crate::cost::run_flops(resolved, evaluated).total();
    if flops < 1e13 {
        return None;
    }
    // The rate of a chunk-shaped GEMM no longer depends on the shape beyond a few hundred; capped
    // so that the calibration never allocates more than a few MB (the run checks its memory).
    let (d, p) = (resolved.network.d.min(1024), resolved.network.p.min(1024));
    let rate = calibrate_gemm(resolved.precision, d, p, resolved.threads, resolved.chunk).ok()?;
    let secs = flops / (rate * 1e9 * 0.85);
    (secs > 600.0).then(|| {
        format!(
            "this run does {:.1e} floating-point operations, about {:.0} min here ({rate:.0} GFLOP/s bare GEMM)",
            flops,
            secs / 60.0
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemm_shapes_time_the_readout_chunk_where_it_runs_in_panels() {
        // Chunks of 512 and 300 sum the Gram in one block (the panel readout's condition, with
        // p > 128); where the kernel does not run, only the four `gemm` shapes are listed (the
        // gradient's `Mᵀ Z` by the kernel beside `gemm`'s where it runs).
        let _forced = crate::linalg::panels::force_lock();
        for (m, d, p) in [(512, 64, 160), (300, 40, 130)] {
            for precision in [Precision::F64, Precision::F32] {
                let shapes = gemm_shapes(precision, m, d, p, 1);
                let names: Vec<&str> = shapes.iter().map(|s| s.name.as_str()).collect();
                let in_panels = match precision {
                    Precision::F64 => crate::linalg::readout_in_panels::<f64>(m, p, d),
                    Precision::F32 => crate::linalg::readout_in_panels::<f32>(m, p, d),
                };
                let panel = crate::linalg::panels::takes(d) && crate::linalg::panels::usable(m, p, d);
                let gradient = match precision {
                    Precision::F64 => crate::linalg::panels::transposed_usable::<f64>(m, p, d),
                    Precision::F32 => crate::linalg::panels::transposed_usable::<f32>(m, p, d),
                };
                let in_rows = match precision {
                    Precision::F64 => crate::linalg::readout_in_rows::<f64>(m, p, d),
                    Precision::F32 => crate::linalg::readout_in_rows::<f32>(m, p, d),
                };
                assert_eq!(
                    names.len(),
                    4 + usize::from(panel) + usize::from(gradient) + usize::from(in_panels) + 2 * usize::from(in_rows),
                    "{names:?}"
                );
                assert_eq!(names.contains(&"Gram XᵀX (lower, rows)"), in_rows);
                assert_eq!(names.contains(&"gradient Mᵀ Z (panel kernel)"), gradient);
                assert_eq!(names.contains(&"readout chunk Z Wᵀ + Gram (panels)"), in_panels);
                for s in &shapes {
                    assert!(s.gflops.is_finite() && s.gflops > 0.0 && s.of_bare > 0.0, "{s:?}");
                }
                assert!((shapes[0].of_bare - 1.0).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn phases_carry_the_cost_model_flops_of_the_workload_run() {
        let w = Workload {
            name: "tiny".into(),
            d: 16,
            p: 8,
            n: 256,
            n_test: 100,
            precision: Precision::F64,
            threads: 2,
            chunk: 64,
            stream: Stream::LATEST.number(),
        };
        let r = bench(&w).unwrap();
        let names: Vec<&str> = r.phases.iter().map(|ph| ph.name.as_str()).collect();
        assert_eq!(names, ["gaussian", "data", "step", "readout", "test"]);
        // One step 4·n·d·p; readouts of W and W0 (2·n·d·p + n·p² each); tests of both.
        let (n, d, p, t) = (256.0, 16.0, 8.0, 100.0);
        assert_eq!(r.phases[2].flops, 4.0 * n * d * p);
        assert_eq!(r.phases[3].flops, 2.0 * (2.0 * n * d * p + n * p * p));
        assert_eq!(r.phases[4].flops, 2.0 * 2.0 * t * d * p);
        assert_eq!((r.threads, r.n, r.chunk), (2, 256, 64));
        assert!(r.bare_gemm_gflops > 0.0 && r.phases.iter().all(|ph| ph.seconds > 0.0));
        let shapes: Vec<&str> = r.shapes.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            shapes[..4],
            ["bare Z Wᵀ", "features W Zᵀ", "gradient Mᵀ Z", "Gram XᵀX (lower)"]
        );
        // The panel kernel's shape where it runs (m = 64, p = 8, d = 16 is past gemm's 16×16 path).
        let panel = crate::linalg::panels::takes(16);
        assert_eq!(shapes.len(), if panel { 5 } else { 4 });
        assert_eq!(r.shapes[0].of_bare, 1.0);
        assert!(r.shapes.iter().all(|s| s.gflops > 0.0 && s.of_bare > 0.0));
    }

    #[test]
    fn run_workloads_time_every_phase_against_the_cost_model_floor() {
        let r = bench_runs(Runs::Notebook, true, Precision::F64, 2, 2).unwrap();
        let configs = Runs::Notebook.configs(true, Precision::F64, 2, 2).unwrap();
        assert_eq!(r.runs.len(), 6);
        // One step, one readout of the trained layer on the step's batch, one test, per run.
        let (d, p, n_test) = (256.0, 512.0, 20_000.0);
        let ns: Vec<f64> = configs.iter().map(|c| c.train_n() as f64).collect();
        assert_eq!(ns[0], (256f64).powf(1.3).floor());
        let ops = |name: &str, n: f64| match name {
            "step" => 4.0 * n * d * p,
            "readout" => 2.0 * n * d * p + n * p * p,
            _ => 2.0 * n_test * d * p,
        };
        let want = |name: &str| -> f64 { ns.iter().map(|n| ops(name, *n)).sum() };
        // Each run's operations at the mean of the rates measured on either side of it.
        assert_eq!(r.bare_gemm_rates.len(), 7);
        assert!(r.bare_gemm_rates.iter().all(|g| *g > 0.0));
        let rate = |i: usize| 0.5 * (r.bare_gemm_rates[i] + r.bare_gemm_rates[i + 1]) * 1e9;
        for name in ["step", "readout", "test"] {
            let ph = r.phases.iter().find(|ph| ph.name == name).unwrap();
            assert_eq!(ph.flops, want(name), "{name}");
            let floor: f64 = ns.iter().enumerate().map(|(i, n)| ops(name, *n) / rate(i)).sum();
            assert!(
                (ph.floor_seconds - floor).abs() < 1e-12 * floor,
                "{name}: {} vs {floor}",
                ph.floor_seconds
            );
            assert!(ph.seconds > 0.0);
        }
        let all: f64 = r.phases.iter().map(|ph| ph.flops).sum();
        assert!((r.bare_gemm_gflops * 1e9 * r.floor_seconds - all).abs() < 1e-9 * all);
        // The phases cover the runs' wall time (the gaps are the loop between runs).
        let covered: f64 = r.phases.iter().map(|ph| ph.seconds).sum();
        assert!(
            covered <= r.wall_seconds && covered > 0.95 * r.wall_seconds,
            "{covered} of {}",
            r.wall_seconds
        );
        let floor: f64 = r.phases.iter().map(|ph| ph.floor_seconds).sum();
        assert!((floor - r.floor_seconds).abs() < 1e-9 * floor);
        // Each run alone: its own operations at its own rate, and the runs add up to the sums.
        assert_eq!(r.per_run.len(), 6);
        for (i, run) in r.per_run.iter().enumerate() {
            assert_eq!(run.run, r.runs[i]);
            for ph in &run.phases {
                let ops = if ph.name == "setup" { 0.0 } else { ops(&ph.name, ns[i]) };
                assert_eq!(ph.flops, ops, "run {i} {}", ph.name);
                assert!(
                    (ph.floor_seconds - ops / rate(i)).abs() <= 1e-12 * ph.floor_seconds,
                    "run {i} {}",
                    ph.name
                );
            }
            let floor: f64 = run.phases.iter().map(|ph| ph.floor_seconds).sum();
            assert!((run.floor_seconds - floor).abs() <= 1e-12 * floor, "run {i}");
            let covered: f64 = run.phases.iter().map(|ph| ph.seconds).sum();
            assert!(covered <= run.wall_seconds && covered > 0.0, "run {i}");
        }
        for ph in &r.phases {
            let of = |k: fn(&RunPhase) -> f64| -> f64 {
                r.per_run
                    .iter()
                    .flat_map(|run| run.phases.iter().filter(|x| x.name == ph.name))
                    .map(k)
                    .sum()
            };
            assert!(
                (of(|x| x.seconds) - ph.seconds).abs() <= 1e-9 * ph.seconds,
                "{}",
                ph.name
            );
            assert!(
                (of(|x| x.flops) - ph.flops).abs() <= 1e-9 * ph.flops.max(1.0),
                "{}",
                ph.name
            );
        }
        let walls: f64 = r.per_run.iter().map(|run| run.wall_seconds).sum();
        assert!((walls - r.wall_seconds).abs() <= 1e-9 * walls);
        let floors: f64 = r.per_run.iter().map(|run| run.floor_seconds).sum();
        assert!((floors - r.floor_seconds).abs() <= 1e-9 * floors);
    }

    #[test]
    fn a_workload_a_run_would_refuse_is_refused() {
        let w = Workload {
            chunk: 0,
            ..Workload::small()
        };
        assert!(matches!(bench(&w), Err(crate::Error::Invalid { .. })));
    }
}
