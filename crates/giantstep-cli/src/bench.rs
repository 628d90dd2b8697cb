//! `giantstep bench`: wall time and achieved GFLOP/s of each phase of a standard workload, next to
//! the GFLOP/s the same binary reaches on a bare GEMM of the chunk shape on every thread at once.

use giantstep::config::{FirstLayerInit, NetworkConfig, Precision, SecondLayerInit, TeacherKind};
use giantstep::data::{Purpose, StreamKey};
use giantstep::engine::{self, Batch, Exec};
use giantstep::expr::Expr;
use giantstep::linalg::{gemm_isa, gemm_seconds, matmul, Op, Real};
use giantstep::model::Loss;
use giantstep::network::Network;
use giantstep::target::{preset_expr, Target};
use giantstep::Result;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// One timed phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    /// Name: data, step, readout, test.
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
    /// σ and σ', reductions).
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
    /// Total wall time of the phases.
    pub total_seconds: f64,
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
    let exec = Exec::new(chunk, threads)?;
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
    let run = || {
        let mut h = vec![T::default(); m * p];
        for _ in 0..reps {
            matmul(&mut h, [m, p, d], Op::Plain(&z), Op::Transposed(&w), false);
        }
    };
    run(); // warm up
           // The median of several trials: one trial lasts ~0.1 s, short enough for a neighbour on a
           // shared machine to move it by 10%.
    let mut rates: Vec<f64> = (0..BARE_TRIALS)
        .map(|_| {
            let start = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..exec.threads {
                    s.spawn(run);
                }
            });
            let secs = start.elapsed().as_secs_f64();
            (exec.threads * reps) as f64 * 2.0 * (m * d * p) as f64 / secs / 1e9
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[BARE_TRIALS / 2]
}

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
    /// Worker threads.
    pub threads: usize,
    /// Samples per chunk.
    pub chunk: usize,
}

/// Runs the benchmark: one giant step, the readout of the trained and initial layers, the test
/// errors, and a data-generation-only pass, on `z1 + z1*z2` with ReLU.
///
/// # Errors
/// As [`giantstep::run()`].
pub fn bench(w: &Workload) -> Result<BenchReport> {
    match w.precision {
        Precision::F64 => bench_typed::<f64>(w),
        Precision::F32 => bench_typed::<f32>(w),
    }
}

fn bench_typed<T: Real>(w: &Workload) -> Result<BenchReport> {
    let Workload {
        ref name,
        d,
        p,
        n,
        n_test,
        precision,
        threads,
        chunk,
    } = *w;
    let exec = Exec::new(chunk, threads)?;
    let expr = Expr::parse(preset_expr("staircase2")?)?;
    let target = Target::new(expr, 2, d, TeacherKind::Random, 0.0, 0)?;
    let mut net = Network::init(
        &NetworkConfig {
            d,
            p,
            activation: "relu".parse()?,
            first_layer: FirstLayerInit::Gaussian,
            second_layer: SecondLayerInit::Hypercube,
            symmetric: true,
        },
        0,
    );
    let w0 = net.w.clone();
    let bare = bare_gemm::<T>(&exec, d, p);
    let (df, pf, nf, tf) = (d as f64, p as f64, n as f64, n_test as f64);
    let mut phases = Vec::new();
    let workers = exec.threads.min(n.div_ceil(chunk)).max(1) as f64;
    let gemm_before = std::cell::Cell::new(gemm_seconds());
    let mut phase = |name: &str, seconds: f64, flops: f64, samples: f64| {
        let gflops = flops / seconds / 1e9;
        let in_gemm = gemm_seconds() - gemm_before.get();
        phases.push(Phase {
            name: name.into(),
            seconds,
            flops,
            gflops,
            efficiency: gflops / bare,
            samples_per_s: samples / seconds,
            non_gemm_share: (1.0 - in_gemm / (workers * seconds)).clamp(0.0, 1.0),
        });
    };
    let train = Batch {
        key: StreamKey::new(0, Purpose::Train, 0),
        n,
    };
    gemm_before.set(gemm_seconds());
    let t = Instant::now();
    let _ = engine::label_shift(&exec, &target, &train, false);
    phase("data", t.elapsed().as_secs_f64(), 0.0, nf);
    gemm_before.set(gemm_seconds());
    let t = Instant::now();
    let g = engine::gradient::<T>(&exec, &net, &target, &train, None, Loss::Residual);
    phase("step", t.elapsed().as_secs_f64(), 4.0 * nf * df * pf, nf);
    let eta = pf * (nf / df).sqrt();
    net.w.iter_mut().zip(&g.g).for_each(|(w, gv)| *w += eta * gv);
    let readout = Batch {
        key: StreamKey::new(0, Purpose::Readout, 0),
        n,
    };
    gemm_before.set(gemm_seconds());
    let t = Instant::now();
    let problem = engine::ReadoutProblem {
        d,
        p,
        activation: net.activation,
        target: &target,
        batch: &readout,
        shift: None,
        lambda: 1.0,
    };
    let ro = engine::fit_readouts::<T>(&exec, &[&net.w, &w0], &problem)?;
    phase(
        "readout",
        t.elapsed().as_secs_f64(),
        2.0 * (2.0 * nf * df * pf + nf * pf * pf),
        2.0 * nf,
    );
    let test = Batch {
        key: StreamKey::new(0, Purpose::Test, 0),
        n: n_test,
    };
    gemm_before.set(gemm_seconds());
    let t = Instant::now();
    let problem = engine::TestProblem {
        d,
        p,
        activation: net.activation,
        target: &target,
        batch: &test,
    };
    let _ = engine::test_errors::<T>(&exec, &[(&net.w, &ro[0]), (&w0, &ro[1])], &problem);
    phase("test", t.elapsed().as_secs_f64(), 2.0 * 2.0 * tf * df * pf, 2.0 * tf);
    let (sf, ss) = phases
        .iter()
        .filter(|ph| ph.name == "step" || ph.name == "readout")
        .fold((0.0, 0.0), |a, ph| (a.0 + ph.flops, a.1 + ph.seconds));
    Ok(BenchReport {
        workload: name.clone(),
        d,
        p,
        n,
        n_test,
        precision,
        threads: exec.threads,
        chunk,
        total_seconds: phases.iter().map(|ph| ph.seconds).sum(),
        efficiency: sf / ss / 1e9 / bare,
        phases,
        bare_gemm_gflops: bare,
        gemm_isa: gemm_isa().to_string(),
        peak_rss_bytes: peak_rss_bytes(),
    })
}
