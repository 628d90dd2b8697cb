//! Command-line tests: every spelling of the run flags, the JSON schema, and bad input (one-line
//! error, exit code 2, nothing written).

use super::{bin, run, tempdir};
use std::process::{Command, Output};

const TINY: &[&str] = &["--d", "16", "--p", "8", "--n", "64", "--set", "eval.n_test=64"];

fn run_tiny(extra: &[&str]) -> Output {
    let mut a = vec!["run"];
    a.extend_from_slice(TINY);
    a.extend_from_slice(extra);
    run(&a)
}

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn json_schema_has_the_documented_fields() {
    let v = json(&run_tiny(&["--json", "--steps", "2"]));
    for key in [
        "config",
        "steps",
        "test_error",
        "train_error",
        "rf_test_error",
        "elapsed_s",
        "random_level",
        "initial",
    ] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    for key in [
        "t",
        "n",
        "eta",
        "mean_abs_cos",
        "max_abs_cos",
        "teacher_gram_eigenvalues",
        "teacher_gram_eigenvectors",
        "outside_mass",
        "grad_singular_values",
        "grad_cos",
        "grad_perp_cos",
    ] {
        assert!(steps[0].get(key).is_some(), "missing steps[].{key}");
    }
    assert_eq!(steps[0]["n"], 64);
    assert_eq!(steps[0]["mean_abs_cos"].as_array().unwrap().len(), 2);
    assert_eq!(steps[0]["grad_cos"].as_array().unwrap().len(), 8);
    assert_eq!(steps[0]["grad_singular_values"].as_array().unwrap().len(), 4);
    // Every default is explicit in the resolved config.
    let c = &v["config"];
    assert_eq!(c["network"]["d"], 16);
    assert_eq!(c["train"]["eta0"], 1.0);
    assert_eq!(c["readout"]["n"], 64);
    assert_eq!(c["target"]["expr"], "z1 + z1*z2");
    assert_eq!(c["target"]["r"], 2);
    assert!(c["threads"].as_u64().unwrap() >= 1);
}

#[test]
fn short_flags_and_set_agree() {
    let a = json(&run(&[
        "run",
        "--target",
        "z1*z2",
        "--d",
        "16",
        "--p",
        "8",
        "--n",
        "2d",
        "--steps",
        "2",
        "--activation",
        "tanh",
        "--eta0",
        "0.5",
        "--seed",
        "3",
        "--threads",
        "1",
        "--set",
        "eval.n_test=64",
        "--json",
    ]));
    let b = json(&run(&[
        "run",
        "--set",
        "target.expr=z1*z2",
        "--set",
        "network.d=16",
        "--set",
        "network.p=8",
        "--set",
        "train.n=2d",
        "--set",
        "train.steps=2",
        "--set",
        "network.activation=tanh",
        "--set",
        "train.eta0=0.5",
        "--set",
        "seed=3",
        "--set",
        "threads=1",
        "--set",
        "eval.n_test=64",
        "--json",
    ]));
    assert_eq!(a["test_error"], b["test_error"]);
    assert_eq!(a["config"], b["config"]);
    assert_eq!(a["steps"][0]["n"], 32);
    assert_eq!(a["steps"][0]["eta"], 0.5 * 8.0 * 2f64.sqrt());
}

#[test]
fn config_file_with_flags_overriding() {
    let dir = tempdir("config");
    let path = dir.join("c.toml");
    std::fs::write(
        &path,
        "seed = 4\n[network]\nd = 16\np = 8\n[train]\nn = 64\nsteps = 2\n[eval]\nn_test = 64\n",
    )
    .unwrap();
    let v = json(&run(&[
        "run",
        "--config",
        path.to_str().unwrap(),
        "--steps",
        "1",
        "--json",
    ]));
    assert_eq!(v["config"]["seed"], 4);
    assert_eq!(v["steps"].as_array().unwrap().len(), 1);
    // --target given as a preset replaces an expr from the file.
    std::fs::write(
        &path,
        "[target]\nexpr = \"z1\"\n[network]\nd = 16\np = 8\n[eval]\nn_test = 64\n",
    )
    .unwrap();
    let v = json(&run(&[
        "run",
        "--config",
        path.to_str().unwrap(),
        "--target",
        "parity2",
        "--json",
    ]));
    assert_eq!(v["config"]["target"]["preset"], "parity2");
    assert_eq!(v["config"]["target"]["expr"], "z1*z2");
}

#[test]
fn summary_explains_the_run() {
    let out = run_tiny(&[]);
    assert!(out.status.success());
    let s = String::from_utf8(out.stdout).unwrap();
    for want in [
        "target  y = z1 + z1*z2",
        "random features",
        "learned after 1 step",
        "test error",
        "sqrt(2/(pi d))",
    ] {
        assert!(s.contains(want), "summary lacks '{want}':\n{s}");
    }
}

#[test]
fn out_file_is_written_atomically() {
    let dir = tempdir("out");
    let path = dir.join("r.json");
    let out = run_tiny(&["-o", path.to_str().unwrap(), "--quiet"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(v["test_error"].is_number());
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        1,
        "temporary files left behind"
    );
}

/// Bad input: one line on stderr naming the problem, exit code 2, nothing on stdout, no file.
#[test]
fn bad_input_is_one_line_exit_2_nothing_written() {
    let dir = tempdir("bad");
    let toml_path = dir.join("bad.toml");
    std::fs::write(&toml_path, "seed = 1\n[network\nd = 16\n").unwrap();
    let unknown_path = dir.join("unknown.toml");
    std::fs::write(&unknown_path, "[train]\nrate = 3\n").unwrap();
    let out_path = dir.join("result.json");
    let out_s = out_path.to_str().unwrap().to_string();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--target".into(), "z1 + foo(z2)".into()], "unknown function 'foo'"),
        (vec!["--target".into(), "z1 + y2".into()], "unknown variable 'y2'"),
        (
            vec!["--target".into(), "z1 + z3".into(), "--set".into(), "target.r=2".into()],
            "target.r must be >= 3 (the target uses z3), but is 2",
        ),
        (vec!["--target".into(), "z1 + (z2".into()], "at column 9"),
        (vec!["--target".into(), "z1 ** z2".into()], "at column 5"),
        (
            vec!["--set".into(), "target.r=17".into()],
            "target.r must be <= network.d = 16",
        ),
        (vec!["--p".into(), "7".into()], "network.p must be even"),
        (vec!["--n".into(), "0".into()], "train.n must be > 0"),
        (vec!["--d".into(), "0".into()], "network.d must be > 0"),
        (vec!["--p".into(), "0".into()], "network.p must be > 0"),
        (
            vec!["--set".into(), "readout.lambda=-1".into()],
            "readout.lambda must be >= 0",
        ),
        (
            vec!["--set".into(), "target.noise=-0.5".into()],
            "target.noise must be >= 0",
        ),
        (
            vec!["--set".into(), "train.etta=1".into()],
            "unknown configuration key 'train.etta'",
        ),
        (
            vec!["--config".into(), unknown_path.to_str().unwrap().into()],
            "unknown configuration key 'train.rate'",
        ),
        (vec!["--config".into(), toml_path.to_str().unwrap().into()], "at line 2"),
        (
            vec!["--config".into(), dir.join("missing.toml").to_str().unwrap().into()],
            "cannot read configuration file",
        ),
        (vec!["--eta0".into(), "1e308".into()], "non-finite after step 1"),
        (
            vec!["--eta0".into(), "1e300".into(), "--activation".into(), "he4".into()],
            "readout features σ(W z) overflowed",
        ),
        (
            vec!["--n".into(), "d^x".into()],
            "train.n must be an integer or of the form",
        ),
        (vec!["--activation".into(), "sigmoid".into()], "activation must be"),
        (vec!["--activation".into(), "relu:1e6".into()], "(|shift| <= 10)"),
        (vec!["--d".into(), "abc".into()], "network.d"),
    ];
    for (extra, want) in cases {
        let mut args: Vec<String> = vec!["run".into()];
        args.extend(TINY.iter().map(|s| s.to_string()));
        args.extend(extra.iter().cloned());
        args.push("-o".into());
        args.push(out_s.clone());
        let out = bin().args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {stderr}");
        assert!(stderr.contains(want), "{extra:?}: expected '{want}' in: {stderr}");
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{extra:?}: not one line: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{extra:?}: wrote to stdout");
        assert!(!out_path.exists(), "{extra:?}: wrote the output file");
    }
    // An unwritable output path is refused before the run.
    let out = run_tiny(&["-o", "/nonexistent-dir/r.json"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot write output /nonexistent-dir/r.json"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
    let out = run_tiny(&["-o", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is a directory"));
}

#[test]
fn unknown_subcommand_and_flag_exit_2() {
    assert_eq!(run(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(run(&["run", "--nope"]).status.code(), Some(2));
    assert_eq!(run(&["--help"]).status.code(), Some(0));
}

#[test]
fn theory_json_has_the_documented_fields() {
    let v = json(&run(&["theory", "staircase3", "--json"]));
    for key in [
        "r",
        "mean",
        "second_moment",
        "mu1",
        "hermite",
        "leap_index",
        "staircase",
        "generic_subspaces",
        "activation_subspaces",
        "predicted_abs_cos",
        "blocked",
        "one_step_cosine",
        "linear_kernel_error",
        "floors",
    ] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    assert_eq!(v["r"], 3);
    assert_eq!(v["leap_index"], 1);
    assert_eq!(v["staircase"], true);
    assert_eq!(v["generic_subspaces"][2]["dim"], 3);
    assert_eq!(v["activation_subspaces"][2]["dim"], 2);
    assert_eq!(v["blocked"][0]["direction"], "e3");
    assert_eq!(v["blocked"][0]["missing"][0], 3);
    assert_eq!(v["hermite"].as_array().unwrap().len(), 3);
    let text = String::from_utf8(run(&["theory", "z1 + z1*z2", "--activation", "tanh"]).stdout).unwrap();
    assert!(
        text.contains("e2 is blocked at step 2: needs c2, tanh has c2 = 0"),
        "{text}"
    );
    assert!(text.contains("leap index 1"), "{text}");
}

#[test]
fn theory_run_section_in_json() {
    let v = json(&run_tiny(&["--json", "--steps", "2"]));
    let t = &v["theory"];
    assert_eq!(t["predicted_mean_abs_cos"].as_array().unwrap().len(), 2);
    assert!(t["linear_kernel_error"].as_f64().unwrap() > 0.99);
    assert!(t["principal_angles_deg"].is_array());
}

#[test]
#[ignore = "slow tier: .ci/run runs it with --ignored"]
fn theory_bad_input_is_one_line_exit_2() {
    for (args, want) in [
        (vec!["theory", "exp(z1^2)"], "not square-integrable"),
        (vec!["theory", "1/z1"], "not square-integrable"),
        (vec!["theory", "z1 + foo(z2)"], "unknown function 'foo'"),
        (
            vec!["theory", "z1", "--preprocess", "cubic"],
            "--preprocess must be none, mean or linear",
        ),
        (
            vec!["theory", "z1", "--alpha", "0"],
            "--alpha must be in (0, 1e9], but is 0",
        ),
        (
            vec!["theory", "z1", "--gamma", "1e300"],
            "--gamma must be in [0, 1e6], but is 1e300",
        ),
        (vec!["theory", "z1", "--eta0", "1e300"], "--eta0 must be in [0, 1e6]"),
        (vec!["theory", "z1", "--activation", "softplus"], "--activation must be"),
        (vec!["theory", "z1", "--activation", "relu:1e300"], "(|shift| <= 10)"),
        (
            vec!["theory", "z1*z17", "--degree", "2"],
            "the theory handles 1 <= r <= 16",
        ),
        (vec!["theory", "z1+z12"], "giantstep theory handles r <= 7"),
        (vec!["theory", "z1", "--kappa", "1000"], "--kappa must be in (0, 8]"),
        (
            vec!["theory", "z1", "--steps", "100000"],
            "--steps must be between 1 and 100",
        ),
        (
            vec!["bench", "--workload", "notbook"],
            "--workload must be standard, notebook or stairway, but is 'notbook'",
        ),
        (
            vec!["bench", "--workload", "stairway", "--chunk", "512"],
            "--chunk applies to the standard workload",
        ),
    ] {
        let out = run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(out.stdout.is_empty());
    }
    // Monte Carlo fallback is announced.
    let out = run(&["theory", "z1*z9 + z2", "--steps", "1", "--degree", "2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("Monte Carlo"), "{text}");
}

/// Outputs onto special files (issue 10): `-o /dev/null` and a FIFO are written through, never
/// replaced by a regular file; a record file must be a regular file.
#[test]
fn special_files_are_written_through_or_refused() {
    use std::os::unix::fs::FileTypeExt;
    let o = run_tiny(&["-o", "/dev/null", "-q"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::metadata("/dev/null").unwrap().file_type().is_char_device());
    // A FIFO: the run's JSON arrives at its reader.
    let dir = tempdir("fifo");
    let fifo = dir.join("out.fifo");
    let made = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if made {
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
        };
        let o = run_tiny(&["--json", "-o", fifo.to_str().unwrap()]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let got = reader.join().unwrap();
        assert_eq!(got.trim(), String::from_utf8_lossy(&o.stdout).trim());
        assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
    } else {
        eprintln!("special_files_are_written_through_or_refused: no mkfifo, FIFO case skipped");
    }
    // A record file cannot be a device.
    let plan = dir.join("plan.toml");
    std::fs::write(&plan, "[base]\nnetwork = { d = 8, p = 4 }\n").unwrap();
    let o = run(&["sweep", plan.to_str().unwrap(), "--out", "/dev/null"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("must be a regular file") && err.trim().lines().count() == 1,
        "{err}"
    );
    assert!(std::fs::metadata("/dev/null").unwrap().file_type().is_char_device());
}

/// Bad input to `run` found by a hostile-user sweep (issue 10): targets that are not finite or not
/// square-integrable are refused before any simulation; he(k, x) with a non-literal degree, a
/// negative learning rate, absurd steps, n_test and memory get one clear line and exit 2.
#[test]
fn run_refuses_nonsense_before_simulating() {
    for (extra, want) in [
        (vec!["--target", "z1/0"], "target 'z1/0': the target is not finite"),
        (vec!["--target", "exp(z1^2)"], "not square-integrable"),
        (vec!["--target", "1/z1"], "not square-integrable"),
        (vec!["--target", "sqrt(-1-z1^2)"], "not finite"),
        (vec!["--target", "he(z1)"], "needs a literal integer degree k"),
        (vec!["--target", "he(-1, z1)"], "needs a literal integer degree k"),
        (vec!["--target", "he(21, z1)"], "degrees above 20 are not supported"),
        (vec!["--target", "z1^11 * z1^10"], "degrees above 20 are not supported"),
        (vec!["--target", "1e200*z1 + 1e200*z2"], "the target's values overflow"),
        (
            vec!["--target", "staircase4"],
            "must be a preset (staircase2, staircase3,",
        ),
        (vec!["--set", "train.eta0=-1"], "train.eta0 must be >= 0"),
        (vec!["--steps", "5000"], "train.steps must be <= 1000"),
        (
            vec!["--set", "eval.n_test=10000000000000"],
            "eval.n_test must be <= 1e12",
        ),
        (vec!["--d", "300000", "--p", "100000"], "of memory"),
        (vec!["--set", "chunk=100000000000"], "chunk must be between 1 and"),
        (
            vec!["--set", "train.n=true"],
            "expected a number of samples (e.g. 1000) or a power of d",
        ),
    ] {
        let mut args = vec!["run", "--d", "16", "--p", "8"];
        args.extend(extra.iter().copied());
        let out = run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(out.stdout.is_empty());
    }
}

/// Messages stay short and say things once (issue 10): a 60 kB expression is quoted in at most
/// ~80 characters, and an OS error appears once.
#[test]
fn messages_are_short_and_say_things_once() {
    let long = "z1+".repeat(20_000) + "z1x";
    let out = run(&["run", "--target", &long]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err.len() < 300 && err.contains("unknown variable 'z1x'"),
        "{} bytes: {err}",
        err.len()
    );
    let out = run(&["plot", "stairway", "/nonexistent/records.jsonl", "-o", "/tmp/x.svg"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
}

#[test]
fn theory_curve_json_and_plan() {
    let v = json(&run(&[
        "theory",
        "stairway-he124",
        "--curve",
        "--steps",
        "2",
        "--d",
        "64",
        "--p",
        "32",
        "--eta-max0",
        "5",
        "--kappa-from",
        "0.5",
        "--kappa-to",
        "1.5",
        "--kappa-step",
        "0.5",
        "--json",
    ]));
    let c = &v["curve"];
    assert_eq!(c["kappa"].as_array().unwrap().len(), 3);
    assert_eq!(c["n"][0], 8); // floor(64^0.5)
    let te = c["test_error"].as_array().unwrap();
    assert_eq!(te.len(), 2);
    // Below log n / log d = 1: not reported; above: an error between 0 and E[y²] ≈ 0.77.
    assert!(te[0][0].is_null() && c["rf_test_error"][0].is_null());
    for t in 0..2 {
        for j in 1..3 {
            let e = te[t][j].as_f64().unwrap();
            assert!(e > 0.05 && e < 0.8, "T = {}, j = {j}: {e}", t + 1);
        }
    }
    assert!(te[1][2].as_f64().unwrap() < c["rf_test_error"][2].as_f64().unwrap());
    // A plan with another varying axis is refused in one line.
    let dir = tempdir("theory-curve-plan");
    let plan = dir.0.join("plan.toml");
    std::fs::write(
        &plan,
        "[base]\nnetwork = { d = 32, p = 16 }\n[axes]\n\"train.n\" = [\"d^1.5\"]\n\"train.eta0\" = [1.0, 2.0]\n",
    )
    .unwrap();
    let out = run(&["theory", "z1", "--curve", "--plan", plan.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("also varies train.eta0") && stderr.lines().count() == 1,
        "{stderr}"
    );
    // --kappa-step 0 is refused.
    let out = run(&["theory", "z1", "--curve", "--kappa-step", "0"]);
    assert_eq!(out.status.code(), Some(2));
}

/// `--form mean-field`: the JSON names the form and its particles, random features equal the
/// finite-p form's (the same features), the steps' errors are close to it; a wrong form or too
/// few particles is one line, exit 2.
#[test]
fn theory_curve_mean_field_form() {
    let base = [
        "theory",
        "stairway-he124",
        "--curve",
        "--steps",
        "2",
        "--d",
        "64",
        "--p",
        "64",
        "--eta-max0",
        "5",
        "--kappa-from",
        "1.75",
        "--kappa-to",
        "1.75",
        "--json",
    ];
    let fp = json(&run(&base));
    let mut args = base.to_vec();
    args.extend(["--form", "mean-field", "--particles", "256"]);
    let mf = json(&run(&args));
    assert_eq!(mf["form"]["name"], "mean-field");
    assert_eq!(mf["form"]["particles"], 256);
    assert!(fp.get("form").is_none());
    let (a, b) = (&fp["curve"], &mf["curve"]);
    let rf = |c: &serde_json::Value| c["rf_test_error"][0].as_f64().unwrap();
    assert!((rf(a) - rf(b)).abs() < 1e-12, "{} vs {}", rf(a), rf(b));
    for t in 0..2 {
        let (x, y) = (
            a["test_error"][t][0].as_f64().unwrap(),
            b["test_error"][t][0].as_f64().unwrap(),
        );
        assert!((x - y).abs() < 0.05 && y < rf(b), "T = {}: {x} vs {y}", t + 1);
    }
    for (flags, says) in [
        (
            vec!["--form", "meanfield"],
            "--form must be \"finite-p\" or \"mean-field\"",
        ),
        (
            vec!["--form", "mean-field", "--particles", "1"],
            "--particles must be at least 2",
        ),
    ] {
        let mut args = base.to_vec();
        args.extend(flags);
        let out = run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(says) && err.lines().count() == 1, "{err}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn run_json_carries_the_predicted_test_error() {
    let v = json(&run(&[
        "run",
        "--json",
        "-q",
        "--target",
        "stairway-he124",
        "--d",
        "32",
        "--p",
        "16",
        "--n",
        "d^1.5",
        "--steps",
        "2",
    ]));
    let t = &v["theory"];
    let (pred, rf) = (t["test_error"].as_f64().unwrap(), t["rf_test_error"].as_f64().unwrap());
    assert!(pred > 0.0 && pred < rf, "{pred} {rf}");
    // Below log n / log d = 1 it is not attached.
    let v = json(&run(&["run", "--json", "-q", "--d", "32", "--p", "16", "--n", "8"]));
    assert!(v["theory"]["test_error"].is_null());
}

/// Output that cannot be written (stdout on a full device) is one line and exit 1, never a panic
/// (issue 23); a closed pipe ends quietly with exit 0.
#[test]
fn unwritable_stdout_is_one_line_exit_1() {
    let dir = tempdir("devfull");
    let plan = dir.join("plan.toml");
    std::fs::write(&plan, "[base]\nnetwork = { d = 8, p = 4 }\n[axes]\nseed = [0, 1]\n").unwrap();
    let out = dir.join("r.jsonl");
    let cases: Vec<Vec<&str>> = vec![
        vec!["run", "--d", "16", "--p", "8", "--json"],
        vec!["run", "--d", "16", "--p", "8"],
        vec!["theory", "z1"],
        vec![
            "sweep",
            plan.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--dry-run",
        ],
    ];
    if let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") {
        for args in &cases {
            let o = bin().args(args).stdout(full.try_clone().unwrap()).output().unwrap();
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
            assert!(
                err.contains("cannot write to stdout") && err.trim().lines().count() == 1,
                "{err}"
            );
            assert!(!err.contains("panicked"), "{err}");
        }
    } else {
        eprintln!("unwritable_stdout_is_one_line_exit_1: no /dev/full, skipped");
    }
    // A reader that stops after the first line.
    let mut child = bin()
        .args(["theory", "z1 + z1*z2"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(o.stderr.is_empty(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// A huge `RAYON_NUM_THREADS` does not start that many threads (issue 23): the run finishes.
#[test]
fn huge_rayon_num_threads_is_capped() {
    let mut child = bin()
        .args(["run", "--d", "16", "--p", "8", "-q", "--json"])
        .env("RAYON_NUM_THREADS", "100000")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if start.elapsed() > std::time::Duration::from_secs(60) {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}

/// Files that never end (`/dev/zero`) as a configuration, plan or record file are refused after
/// a bounded read, never read until memory runs out (issue 23).
#[test]
fn endless_input_files_are_refused() {
    if !std::path::Path::new("/dev/zero").exists() {
        eprintln!("endless_input_files_are_refused: no /dev/zero, skipped");
        return;
    }
    let dir = tempdir("devzero");
    let out = dir.join("o.jsonl");
    for (args, want) in [
        (vec!["run", "--config", "/dev/zero"], "larger than 16 MiB"),
        (
            vec!["sweep", "/dev/zero", "--out", out.to_str().unwrap()],
            "larger than 16 MiB",
        ),
        (
            vec!["theory", "z1", "--curve", "--plan", "/dev/zero"],
            "larger than 16 MiB",
        ),
        (
            vec!["merge", "/dev/zero", "-o", out.to_str().unwrap()],
            "longer than 64 MiB",
        ),
    ] {
        let o = run(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want) && err.trim().lines().count() == 1, "{args:?}: {err}");
        assert!(!out.exists());
    }
}

/// Polynomials up to the supported degree are not refused as "not square-integrable" (issue 23).
#[test]
fn high_degree_polynomials_run() {
    for target in ["he(20, z1)", "z1^20 * z2^20", "he(20, z1 + z2)"] {
        let o = run(&[
            "run",
            "--d",
            "16",
            "--p",
            "8",
            "--target",
            target,
            "-q",
            "--set",
            "eval.theory=false",
        ]);
        assert!(o.status.success(), "{target}: {}", String::from_utf8_lossy(&o.stderr));
    }
}

/// Under an address-space limit (`ulimit -v`, as Slurm or a notebook server may set) a run that
/// fits the machine but not the limit is refused with the memory message, not killed by an
/// allocation abort (issue 23).
#[test]
fn memory_check_respects_ulimit_v() {
    let exe = env!("CARGO_BIN_EXE_giantstep");
    let o = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "ulimit -v 6000000 && exec '{exe}' run --d 2 --p 20000 --target z1 --n 100 --set eval.n_test=1000"
        ))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("its address-space limit (ulimit -v) leaves"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

/// `-o /dev/stdout` with stdout redirected to a file writes through to that file; it never
/// replaces `/dev/stdout` or the file (issue 23).
#[test]
fn output_to_dev_stdout_is_written_through() {
    if !std::path::Path::new("/dev/stdout").exists() {
        return;
    }
    let before = std::fs::symlink_metadata("/dev/stdout").unwrap().file_type();
    let dir = tempdir("devstdout");
    let file = dir.join("out.json");
    let o = bin()
        .args(["run", "--d", "16", "--p", "8", "-q", "-o", "/dev/stdout"])
        .stdout(std::fs::File::create(&file).unwrap())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::symlink_metadata("/dev/stdout").unwrap().file_type(), before);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("\"test_error\""), "{text}");
    assert!(std::fs::read_dir("/dev")
        .unwrap()
        .all(|e| !e.unwrap().file_name().to_string_lossy().contains(".tmp-")));
}

/// Huge values in bad input are echoed cut short: one line of at most a few hundred characters
/// (issue 23).
#[test]
fn huge_bad_values_are_echoed_cut_short() {
    let dir = tempdir("hugeecho");
    let long = "x".repeat(100_000);
    let key_file = dir.join("k.toml");
    std::fs::write(&key_file, format!("[network]\n{long} = 1\n")).unwrap();
    let value_file = dir.join("v.toml");
    std::fs::write(&value_file, format!("[network]\nactivation = \"{long}\"\n")).unwrap();
    let cases: Vec<Vec<String>> = vec![
        vec!["run".into(), "--config".into(), key_file.display().to_string()],
        vec!["run".into(), "--config".into(), value_file.display().to_string()],
        vec!["run".into(), "--set".into(), format!("{long}=3")],
        vec!["run".into(), "--set".into(), format!("train.loss={long}")],
        vec!["run".into(), "--target".into(), format!("z1 + {long}")],
        vec!["theory".into(), long.clone()],
    ];
    for args in cases {
        let o = bin().args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{}", &err[..err.len().min(300)]);
        assert!(
            err.len() < 600 && err.trim().lines().count() == 1,
            "{} chars: {}",
            err.len(),
            &err[..300]
        );
    }
}
