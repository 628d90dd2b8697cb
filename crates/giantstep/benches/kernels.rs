//! Criterion benches of the kernels: the giant step, the readout accumulation, data generation and
//! target evaluation. `cargo bench -p giantstep --features internals`; the end-to-end numbers are `giantstep bench`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use giantstep::config::{FirstLayerInit, NetworkConfig, SecondLayerInit, TeacherKind};
use giantstep::data::{gaussian_rows, gaussian_rows_isa, Isa, Purpose, StreamKey};
use giantstep::engine::{self, Batch, Exec};
use giantstep::expr::Expr;
use giantstep::model::Loss;
use giantstep::network::Network;
use giantstep::target::Target;

const D: usize = 256;
const P: usize = 512;
const N: usize = 16_384;

fn setup() -> (Network, Target, Exec) {
    let expr = Expr::parse("z1 + z1*z2").unwrap();
    let target = Target::new(expr, 2, D, TeacherKind::Random, 0.0, 0).unwrap();
    let net = Network::init(
        &NetworkConfig {
            d: D,
            p: P,
            activation: "relu".parse().unwrap(),
            first_layer: FirstLayerInit::Gaussian,
            second_layer: SecondLayerInit::Hypercube,
            symmetric: true,
        },
        0,
    );
    (net, target, Exec::new(4096, 1).unwrap())
}

fn step(c: &mut Criterion) {
    let (net, target, exec) = setup();
    let batch = Batch {
        key: StreamKey::new(0, Purpose::Train, 0),
        n: N,
    };
    let mut g = c.benchmark_group("step");
    g.sample_size(10).throughput(Throughput::Elements(N as u64));
    g.bench_with_input(BenchmarkId::new(format!("f64-d{D}-p{P}"), N), &N, |b, _| {
        b.iter(|| engine::gradient::<f64>(&exec, &net, &target, &batch, None, Loss::Residual))
    });
    g.bench_with_input(BenchmarkId::new(format!("f32-d{D}-p{P}"), N), &N, |b, _| {
        b.iter(|| engine::gradient::<f32>(&exec, &net, &target, &batch, None, Loss::Residual))
    });
    g.finish();
}

fn readout(c: &mut Criterion) {
    let (net, target, exec) = setup();
    let batch = Batch {
        key: StreamKey::new(0, Purpose::Readout, 0),
        n: N,
    };
    let mut g = c.benchmark_group("readout");
    g.sample_size(10).throughput(Throughput::Elements(N as u64));
    let problem = engine::ReadoutProblem {
        d: D,
        p: P,
        activation: net.activation,
        custom: None,
        target: &target,
        batch: &batch,
        shift: None,
        lambda: 1.0,
    };
    g.bench_with_input(BenchmarkId::new(format!("f64-d{D}-p{P}"), N), &N, |b, _| {
        b.iter(|| engine::fit_readouts::<f64>(&exec, &[&net.w], &problem).unwrap())
    });
    g.finish();
}

fn data(c: &mut Criterion) {
    let key = StreamKey::new(0, Purpose::Train, 0);
    let m = 4096;
    let mut z = vec![0.0; m * D];
    let mut g = c.benchmark_group("data");
    g.throughput(Throughput::Elements((m * D) as u64));
    g.bench_function(BenchmarkId::new(format!("gaussian-d{D}"), m), |b| {
        b.iter(|| gaussian_rows(&key, 0, D, &mut z, None))
    });
    // The same numbers with each instruction set's kernels (data::Isa), side by side.
    for isa in Isa::available() {
        g.bench_function(BenchmarkId::new(format!("gaussian-d{D}-{isa:?}"), m), |b| {
            b.iter(|| gaussian_rows_isa(isa, &key, 0, D, &mut z, None))
        });
    }
    g.finish();
}

/// σ applied after the whole chunk's GEMM (what the passes do) against σ applied to each block of
/// 256 rows right after its own GEMM, while the block is still in cache ("fused"): the same
/// numbers (the sum over d is blocked the same way), different memory traffic.
fn fused(c: &mut Criterion) {
    use giantstep::linalg::{matmul, Op};
    let (net, _, _) = setup();
    let m = 4096;
    let mut z = vec![0.0; m * D];
    gaussian_rows(&StreamKey::new(0, Purpose::Train, 0), 0, D, &mut z, None);
    let mut h = vec![0.0; m * P];
    let act = net.activation;
    let mut g = c.benchmark_group("features");
    g.sample_size(20).throughput(Throughput::Elements(m as u64));
    g.bench_function(BenchmarkId::new(format!("gemm-then-sigma-d{D}-p{P}"), m), |b| {
        b.iter(|| {
            matmul(&mut h, [m, P, D], Op::Plain(&z), Op::Transposed(&net.w), false);
            act.apply(&mut h);
        })
    });
    for rows in [256usize, 1024] {
        g.bench_function(BenchmarkId::new(format!("fused-blocks-of-{rows}-d{D}-p{P}"), m), |b| {
            b.iter(|| {
                for start in (0..m).step_by(rows) {
                    let r = rows.min(m - start);
                    let hb = &mut h[start * P..(start + r) * P];
                    matmul(
                        hb,
                        [r, P, D],
                        Op::Plain(&z[start * D..(start + r) * D]),
                        Op::Transposed(&net.w),
                        false,
                    );
                    act.apply(hb);
                }
            })
        });
    }
    g.finish();
}

fn target_eval(c: &mut Criterion) {
    let m = 4096;
    let mut z = vec![0.0; m * D];
    gaussian_rows(&StreamKey::new(0, Purpose::Test, 0), 0, D, &mut z, None);
    let mut g = c.benchmark_group("target");
    g.throughput(Throughput::Elements(m as u64));
    for (name, expr) in [
        ("staircase3", "z1 + z1*z2 + z1*z2*z3"),
        (
            "stairway-he124",
            "(he1(z1) + he2(z1)/2 + he4(z1)/24 + he1(z2) + he2(z2)/2 + he4(z2)/24)/2",
        ),
    ] {
        let e = Expr::parse(expr).unwrap();
        let r = e.max_var();
        let t = Target::new(e, r, D, TeacherKind::Random, 0.0, 0).unwrap();
        let mut x = vec![0.0; m * r];
        let mut y = vec![0.0; m];
        g.bench_function(BenchmarkId::new(name, m), |b| {
            b.iter(|| t.labels(&z, m, None, &mut x, &mut y))
        });
    }
    g.finish();
}

/// The predicted stairway (docs/theory.md §6): one batch size, T = 1..6 and random features
/// (p = 128 and the paper's p = 512); the whole figure is 11 such predictions per seed.
fn theory_curve(c: &mut Criterion) {
    let mut g = c.benchmark_group("theory");
    g.sample_size(10);
    for p in [128usize, 512] {
        let mut cfg = giantstep::Config::default();
        cfg.target.preset = Some("stairway-pm".into());
        cfg.target.expr = None;
        cfg.network.d = p;
        cfg.network.p = p;
        cfg.train.eta_max0 = Some(5.0);
        cfg.train.eta_schedule = Some(vec![1.0, 0.6]);
        cfg.train.n = "d^2".parse().unwrap();
        cfg.train.steps = 6;
        let valid = cfg.resolve().unwrap();
        g.bench_function(BenchmarkId::new("predict_T6", p), |b| {
            b.iter(|| giantstep::prediction::predict(&valid, 6).unwrap())
        });
    }
    g.finish();
}

/// The whole predicted figure of docs/figures/stairway-pm (d = p = 512, 17 batch sizes
/// n = d^0.25 … d^2.25 of which the 11 from d^1 on are computed, T = 1..6, random features; one
/// seed) in both forms of the state evolution. The budget: 10 s on 2 cores.
fn theory_figure(c: &mut Criterion) {
    use giantstep::error::Cancel;
    use giantstep::prediction::{curve_form_with, CurveQuery, Form};
    let mut g = c.benchmark_group("theory_figure");
    g.sample_size(10);
    let mut cfg = giantstep::Config::default();
    cfg.target.preset = Some("stairway-pm".into());
    cfg.target.expr = None;
    cfg.network.d = 512;
    cfg.network.p = 512;
    cfg.network.second_layer = giantstep::model::SecondLayerInit::Uniform;
    cfg.train.eta_max0 = Some(8.0);
    cfg.train.eta_max0_later = Some(1.0);
    cfg.train.preprocess = giantstep::config::Preprocess::Linear;
    cfg.train.preprocess_from = Some(2);
    let kappas = CurveQuery::default().kappas().unwrap();
    for form in [
        Form::FiniteP,
        Form::MeanField {
            particles: Form::PARTICLES,
        },
    ] {
        g.bench_function(form.name(), |b| {
            b.iter(|| curve_form_with(&cfg, &kappas, 6, &[0], form, &Cancel::default()).unwrap())
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    step,
    readout,
    data,
    fused,
    target_eval,
    theory_curve,
    theory_figure
);
criterion_main!(benches);
