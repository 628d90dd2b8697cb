//! Per-step protocol keys (docs/model.md §3): `train.eta_max0_later` and `train.preprocess_from`.

use giantstep::Config;

fn base() -> Config {
    let mut c = Config::default();
    c.target.preset = Some("stairway-pm".into());
    c.target.expr = None;
    c.network.d = 48;
    c.network.p = 32;
    c.train.n = "d^1.75".parse().unwrap();
    c.eval.n_test = 4000;
    c.eval.theory = false;
    c
}

#[test]
fn later_cap_applies_from_step_two() {
    let mut c = base();
    c.train.n = "d^2".parse().unwrap();
    c.train.steps = 3;
    c.train.eta_max0 = Some(5.0);
    c.train.eta_max0_later = Some(3.0);
    c.train.eta_schedule = Some(vec![1.0, 0.5]);
    let v = c.resolve().unwrap();
    let p = 32.0;
    let raw = p * (v.train_n() as f64 / 48.0).sqrt(); // eta0 = 1, eta_exp = 0.5: √48 p ≈ 6.9 p
    assert!(raw > 5.0 * p);
    assert_eq!(v.eta_at(1), 5.0 * p);
    assert_eq!(v.eta_at(2), 3.0 * p * 0.5);
    assert_eq!(v.eta_at(3), 3.0 * p * 0.5);
    // Without eta_max0 the later cap still caps steps 2, 3, … only.
    c.train.eta_max0 = None;
    let v = c.resolve().unwrap();
    assert_eq!(v.eta_at(1), raw);
    assert_eq!(v.eta_at(2), 3.0 * p * 0.5);
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        c.train.eta_max0_later = Some(bad);
        let e = c.resolve().unwrap_err();
        assert!(
            matches!(&e, giantstep::Error::Invalid { key, .. } if key == "train.eta_max0_later"),
            "{e:?}"
        );
    }
}

#[test]
fn preprocess_from_two_leaves_step_one_and_the_readout_on_raw_labels() {
    // T = 1: preprocessing from step 2 is no preprocessing at all, bit for bit.
    let mut raw = base();
    raw.train.steps = 1;
    let mut late = raw.clone();
    late.train.preprocess = giantstep::config::Preprocess::Linear;
    late.train.preprocess_from = Some(2);
    let a = giantstep::run(&raw.resolve().unwrap()).unwrap();
    let b = giantstep::run(&late.resolve().unwrap()).unwrap();
    assert_eq!(a.test_error, b.test_error);
    assert_eq!(a.steps[0].overlaps.mean_abs_cos, b.steps[0].overlaps.mean_abs_cos);
    // T = 2: step 1 unchanged, step 2 sees preprocessed labels (its gradient differs).
    raw.train.steps = 2;
    late.train.steps = 2;
    let mut every = late.clone();
    every.train.preprocess_from = None;
    let a = giantstep::run(&raw.resolve().unwrap()).unwrap();
    let b = giantstep::run(&late.resolve().unwrap()).unwrap();
    let c = giantstep::run(&every.resolve().unwrap()).unwrap();
    assert_eq!(a.steps[0].batch_mse, b.steps[0].batch_mse);
    assert_ne!(
        a.steps[1].gradient.grad_singular_values,
        b.steps[1].gradient.grad_singular_values
    );
    assert_ne!(b.steps[0].overlaps.mean_abs_cos, c.steps[0].overlaps.mean_abs_cos);
    // Validation.
    late.train.preprocess_from = Some(0);
    let e = late.resolve().unwrap_err();
    assert!(
        matches!(&e, giantstep::Error::Invalid { key, actual, .. } if key == "train.preprocess_from" && actual == "0"),
        "{e:?}"
    );
}

#[test]
fn per_step_keys_are_absent_from_the_resolved_config_when_unset() {
    // Records of earlier versions keep their hashes: unset keys are not serialized.
    let v = serde_json::to_value(base().resolve().unwrap()).unwrap();
    assert!(v["train"].get("eta_max0_later").is_none());
    assert!(v["train"].get("preprocess_from").is_none());
}
