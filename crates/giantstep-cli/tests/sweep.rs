//! Sweeps, merge, plots and reproduce (issue 4): resume after SIGKILL, shard union, figures, the
//! stairway's expected shape, and bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_giantstep"))
}

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("giantstep-sweep-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

const PLAN: &str = r#"
name = "tiny"
figure = "stairway"
[base]
target = { preset = "staircase2" }
network = { d = 24, p = 16 }
eval = { n_test = 300 }
chunk = 64
[axes]
"train.n" = { from = 1.0, to = 2.0, step = 0.5, power_of_d = true }
"train.steps" = "1..=2"
seed = "0..3"
"#;

fn write_plan(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join(format!("plan-{}.toml", giantstep::sweep::fnv_hex(text)));
    std::fs::write(&p, text).unwrap();
    p
}

/// Records as comparable JSON values: without wall times, sorted by hash.
fn normalized(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut v: Vec<serde_json::Value> = text
        .lines()
        .map(|l| {
            let mut r: serde_json::Value = serde_json::from_str(l).unwrap();
            r.as_object_mut().unwrap().remove("wall_s");
            if let Some(res) = r.get_mut("result") {
                res.as_object_mut().unwrap().remove("elapsed_s");
            }
            r
        })
        .collect();
    v.sort_by(|a, b| a["hash"].as_str().cmp(&b["hash"].as_str()));
    v
}

fn sweep(plan: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["sweep", plan.to_str().unwrap(), "--out", out.to_str().unwrap(), "-q"];
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn resume_after_sigkill_equals_uninterrupted() {
    let dir = tempdir("kill");
    let plan = write_plan(&dir, PLAN);
    let full = dir.join("full.jsonl");
    assert!(sweep(&plan, &full, &["--jobs", "2"]).status.success());
    let want = normalized(&full);
    assert_eq!(want.len(), 18);

    let out = dir.join("killed.jsonl");
    // Kill at several pseudo-random moments, then finish.
    let mut state = 12345u64;
    for _ in 0..6 {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let delay = 20 + (state >> 33) % 250;
        let mut child = bin()
            .args([
                "sweep",
                plan.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "-q",
                "--jobs",
                "2",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
    }
    assert!(sweep(&plan, &out, &[]).status.success());
    let got = normalized(&out);
    let hashes: std::collections::HashSet<_> = got.iter().map(|r| r["hash"].as_str().unwrap().to_string()).collect();
    assert_eq!(hashes.len(), got.len(), "a point appears twice");
    assert_eq!(got, want);
    // A rerun of a finished sweep runs nothing.
    let before = std::fs::read(&out).unwrap();
    assert!(sweep(&plan, &out, &[]).status.success());
    assert_eq!(std::fs::read(&out).unwrap(), before);
}

#[test]
fn truncated_last_line_is_redone() {
    let dir = tempdir("trunc");
    let plan = write_plan(&dir, PLAN);
    let out = dir.join("r.jsonl");
    assert!(sweep(&plan, &out, &[]).status.success());
    let want = normalized(&out);
    let text = std::fs::read_to_string(&out).unwrap();
    // Cut the file in the middle of its last line.
    std::fs::write(&out, &text[..text.len() - 40]).unwrap();
    assert!(sweep(&plan, &out, &[]).status.success());
    assert_eq!(normalized(&out), want);
}

#[test]
fn shards_merge_to_the_full_sweep() {
    let dir = tempdir("shard");
    let plan = write_plan(&dir, PLAN);
    let full = dir.join("full.jsonl");
    assert!(sweep(&plan, &full, &[]).status.success());
    let mut parts = Vec::new();
    for i in 0..3 {
        let p = dir.join(format!("shard-{i}.jsonl"));
        assert!(sweep(&plan, &p, &["--shard", &format!("{i}/3")]).status.success());
        parts.push(p);
    }
    let merged = dir.join("merged.jsonl");
    let mut args = vec!["merge"];
    args.extend(parts.iter().map(|p| p.to_str().unwrap()));
    args.extend(["--out", merged.to_str().unwrap()]);
    // Duplicates (a shard given twice) are dropped.
    args.insert(1, parts[0].to_str().unwrap());
    let out = run(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(normalized(&merged), normalized(&full));
    // A point run alone (giantstep run) gives the same result as in the sweep.
    let rec: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&merged).unwrap().lines().nth(4).unwrap()).unwrap();
    let cfg = dir.join("point.toml");
    let config: toml::Value = serde_json::from_value(rec["config"].clone()).unwrap();
    std::fs::write(&cfg, toml::to_string(&config).unwrap()).unwrap();
    let alone = run(&["run", "--config", cfg.to_str().unwrap(), "--json"]);
    let alone: serde_json::Value = serde_json::from_slice(&alone.stdout).unwrap();
    assert_eq!(alone["test_error"], rec["result"]["test_error"]);
    assert_eq!(alone["steps"], rec["result"]["steps"]);
}

#[test]
fn plots_are_valid_svg_and_png() {
    let dir = tempdir("plot");
    let plan = write_plan(&dir, PLAN);
    let out = dir.join("r.jsonl");
    assert!(sweep(&plan, &out, &[]).status.success());
    for fig in ["stairway", "cosines", "overlaps"] {
        for ext in ["svg", "png"] {
            let path = dir.join(format!("{fig}.{ext}"));
            let o = run(&["plot", fig, out.to_str().unwrap(), "-o", path.to_str().unwrap()]);
            assert!(
                o.status.success(),
                "{fig}.{ext}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            let bytes = std::fs::read(&path).unwrap();
            assert!(bytes.len() > 1000, "{fig}.{ext} is {} bytes", bytes.len());
            if ext == "svg" {
                let text = String::from_utf8(bytes).unwrap();
                assert!(text.starts_with("<svg") && text.trim_end().ends_with("</svg>"));
                assert!(text.contains("<text"), "{fig}.svg has no text");
            } else {
                assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
            }
        }
    }
    let o = run(&[
        "plot",
        "stairway",
        out.to_str().unwrap(),
        "-o",
        dir.join("x.pdf").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("must end in .svg or .png"));
}

/// `reproduce stairway-he124 --scale quick`: at the smallest n the error is within 10% of
/// E[y²] = 0.7708; at the largest n every trained curve is below the linear-kernel line 0.2708 and
/// below the random-features curve.
#[test]
fn reproduce_stairway_has_the_expected_shape() {
    let dir = tempdir("repro");
    let o = run(&["reproduce", "stairway-he124", "--out", dir.to_str().unwrap(), "-q"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for f in [
        "records.jsonl",
        "stairway.svg",
        "stairway.png",
        "summary.md",
        "plan.toml",
    ] {
        assert!(dir.join(f).exists(), "{f} missing");
    }
    let text = std::fs::read_to_string(dir.join("records.jsonl")).unwrap();
    let recs: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let kappa = |r: &serde_json::Value| {
        let n = r["result"]["steps"][0]["n"].as_f64().unwrap();
        let d = r["config"]["network"]["d"].as_f64().unwrap();
        n.ln() / d.ln()
    };
    let kmin = recs.iter().map(kappa).fold(f64::INFINITY, f64::min);
    let kmax = recs.iter().map(kappa).fold(f64::NEG_INFINITY, f64::max);
    let mean = |pred: &dyn Fn(&serde_json::Value) -> bool, field: &str| {
        let v: Vec<f64> = recs
            .iter()
            .filter(|r| pred(r))
            .map(|r| r["result"][field].as_f64().unwrap())
            .collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    let small = mean(&|r| (kappa(r) - kmin).abs() < 1e-9, "test_error");
    assert!((small - 0.7708).abs() < 0.1 * 0.7708, "smallest n: {small}");
    let rf = mean(&|r| (kappa(r) - kmax).abs() < 1e-9, "rf_test_error");
    for steps in 1..=3 {
        let e = mean(
            &|r| (kappa(r) - kmax).abs() < 1e-9 && r["config"]["train"]["steps"] == steps,
            "test_error",
        );
        assert!(
            e < 0.2708 && e < rf,
            "T = {steps}: {e} vs linear kernel 0.2708, random features {rf}"
        );
    }
    let summary = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(summary.contains("linear-kernel error 0.2708"), "{summary}");
}

#[test]
fn sweep_bad_input_exit_2_nothing_overwritten() {
    let dir = tempdir("bad");
    let good = write_plan(&dir, PLAN);
    let out = dir.join("r.jsonl");
    assert!(sweep(&good, &out, &["--shard", "0/6"]).status.success());
    let before = std::fs::read(&out).unwrap();
    let other = dir.join("other.toml");
    std::fs::write(&other, PLAN.replace("d = 24", "d = 20")).unwrap();
    let not_json = dir.join("bad.jsonl");
    std::fs::write(&not_json, "{\"a\": 1}\nhello\n").unwrap();
    let other_out = dir.join("other.jsonl");
    assert!(sweep(&other, &other_out, &["--shard", "0/6"]).status.success());
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "sweep".into(),
                write_plan(&dir, "colour = 1").display().to_string(),
                "--out".into(),
                out.display().to_string(),
            ],
            "unknown configuration key 'colour'",
        ),
        (
            vec![
                "sweep".into(),
                write_plan(&dir, "[axes]\nseed = []").display().to_string(),
                "--out".into(),
                out.display().to_string(),
            ],
            "the axis has no values",
        ),
        (
            vec![
                "sweep".into(),
                write_plan(&dir, "[axes]\n\"network.q\" = [1]").display().to_string(),
                "--out".into(),
                out.display().to_string(),
            ],
            "unknown configuration key 'network.q'",
        ),
        (
            vec![
                "sweep".into(),
                write_plan(&dir, PLAN).display().to_string(),
                "--out".into(),
                out.display().to_string(),
                "--shard".into(),
                "3/3".into(),
            ],
            "--shard must be i/N",
        ),
        (
            vec![
                "sweep".into(),
                other.display().to_string(),
                "--out".into(),
                out.display().to_string(),
            ],
            "different plan",
        ),
        (
            vec![
                "sweep".into(),
                write_plan(&dir, PLAN).display().to_string(),
                "--out".into(),
                not_json.display().to_string(),
            ],
            "line 1 is not a giantstep JSON record",
        ),
        (
            vec![
                "merge".into(),
                out.display().to_string(),
                other_out.display().to_string(),
                "--out".into(),
                dir.join("m.jsonl").display().to_string(),
            ],
            "refusing to merge different plans",
        ),
        (
            vec![
                "merge".into(),
                not_json.display().to_string(),
                "--out".into(),
                dir.join("m.jsonl").display().to_string(),
            ],
            "is not a giantstep JSON record",
        ),
        (
            vec![
                "reproduce".into(),
                "nonsense".into(),
                "--out".into(),
                dir.join("rep").display().to_string(),
            ],
            "unknown experiment 'nonsense'",
        ),
    ];
    for (args, want) in cases {
        let o = bin().args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: expected '{want}' in {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    }
    assert_eq!(std::fs::read(&out).unwrap(), before, "the record file changed");
    assert_eq!(std::fs::read_to_string(&not_json).unwrap(), "{\"a\": 1}\nhello\n");
    assert!(!dir.join("m.jsonl").exists());
}

// ---------------------------------------------------------------------------------------------
// Slurm (issue 6). The real-Slurm test is .ci/slurm-test.sh; these check the scripts and errors.

#[test]
fn slurm_scripts_status_and_partial_merge() {
    let dir = tempdir("slurm");
    let plan = write_plan(&dir, PLAN);
    let out = dir.join("run");
    let o = run(&[
        "sweep",
        plan.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--slurm",
        "--array-size",
        "3",
        "--partition",
        "debug",
        "--time",
        "00:10:00",
        "--cpus-per-task",
        "2",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let script = std::fs::read_to_string(out.join("sweep.sbatch")).unwrap();
    for want in [
        "#SBATCH --array=0-2",
        "#SBATCH --cpus-per-task=2",
        "#SBATCH --partition=debug",
        "#SBATCH --time=00:10:00",
        "#SBATCH --requeue",
        "--shard \"${SLURM_ARRAY_TASK_ID}/3\"",
        "shard-${SLURM_ARRAY_TASK_ID}.jsonl",
    ] {
        assert!(script.contains(want), "sweep.sbatch lacks {want}:\n{script}");
    }
    let merge = std::fs::read_to_string(out.join("merge.sbatch")).unwrap();
    assert!(
        merge.contains(" merge ") && merge.contains("records.jsonl") && merge.contains(" plot stairway "),
        "{merge}"
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("sbatch --dependency=afterok:$jid"));

    // Run the array tasks by hand through the Slurm environment variables (no --shard).
    let shards = out.join("shards");
    for i in 0..3 {
        if i == 1 {
            continue; // task 1 "has not run yet"
        }
        let o = bin()
            .args([
                "sweep",
                out.join("plan.toml").to_str().unwrap(),
                "--out",
                shards.join(format!("shard-{i}.jsonl")).to_str().unwrap(),
                "-q",
            ])
            .env("SLURM_ARRAY_TASK_ID", i.to_string())
            .env("SLURM_ARRAY_TASK_COUNT", "3")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let status = run(&["sweep", "--status", out.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("12 of 18 points done; incomplete"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["1", "6", "0", "6", "0"]),
        "{text}"
    );
    // merge refuses while points are missing, unless --partial.
    let files: Vec<String> = [0, 2]
        .iter()
        .map(|i| shards.join(format!("shard-{i}.jsonl")).display().to_string())
        .collect();
    let merged = out.join("records.jsonl");
    let o = run(&["merge", &files[0], &files[1], "--out", merged.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("the records cover 12 of 18 points (missing 1, 4, 7"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!merged.exists());
    let o = run(&[
        "merge",
        &files[0],
        &files[1],
        "--out",
        merged.to_str().unwrap(),
        "--partial",
    ]);
    assert!(o.status.success());
    assert_eq!(std::fs::read_to_string(&merged).unwrap().lines().count(), 12);
}

#[test]
fn slurm_bad_input() {
    let dir = tempdir("slurmbad");
    let plan = write_plan(&dir, PLAN);
    let out = dir.join("run");
    // --submit without sbatch on PATH: error, nothing written.
    let o = bin()
        .args([
            "sweep",
            plan.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--slurm",
            "--submit",
        ])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--submit needs sbatch on PATH"));
    assert!(!out.exists());
    // An array larger than the plan.
    let o = run(&[
        "sweep",
        plan.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--slurm",
        "--array-size",
        "19",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr)
        .contains("--array-size must be between 1 and the plan's 18 points, but is 19"));
    assert!(!out.exists());
    // A directory that holds another plan's shards.
    assert!(run(&[
        "sweep",
        plan.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--slurm",
        "--array-size",
        "3"
    ])
    .status
    .success());
    let before = std::fs::read(out.join("sweep.sbatch")).unwrap();
    let other = write_plan(&dir, &PLAN.replace("d = 24", "d = 20"));
    let o = run(&[
        "sweep",
        other.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--slurm",
        "--array-size",
        "3",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("holds shards of a different plan"));
    assert_eq!(std::fs::read(out.join("sweep.sbatch")).unwrap(), before);
    // --status on a directory that is not a Slurm sweep.
    let o = run(&["sweep", "--status", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not a giantstep Slurm sweep directory"));
}
