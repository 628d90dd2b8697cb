//! Sweeps, merge, plots and reproduce (issue 4): resume after SIGKILL, shard union, figures, the
//! stairway's expected shape, and bad input.

use super::{bin, run, tempdir};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

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
    // Kill (SIGKILL) as soon as the file holds k records, for growing k, then finish: driven by
    // what is on disk, not by timing.
    let lines = |p: &std::path::Path| std::fs::read_to_string(p).map_or(0, |t| t.lines().count());
    let mut killed_at: Option<usize> = None;
    for k in [1, 4, 7, 10, 13, 16] {
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
        while lines(&out) < k && child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(1));
        }
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        if killed_at.is_none() {
            killed_at = Some(lines(&out));
        }
    }
    // The first kill interrupted the sweep: fewer records than points were on disk.
    let first = killed_at.unwrap();
    assert!(
        first < 18,
        "the first kill came after the sweep finished ({first} records)"
    );
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

/// A record file written before stream version 2 existed (its configurations without the key
/// `stream`) resumes with version 1: the missing points are drawn with version 1 and the file
/// ends as the same plan run with `stream = 1` throughout; a new file of the plan is version 2.
#[test]
fn a_record_file_of_version_1_resumes_with_version_1() {
    let dir = tempdir("stream1");
    let plan = write_plan(&dir, PLAN);
    let fresh = dir.join("fresh.jsonl");
    assert!(sweep(&plan, &fresh, &[]).status.success());
    let v2 = normalized(&fresh);
    assert!(v2.iter().all(|r| r["config"]["stream"] == 2));
    let id = v2[0]["plan"].as_str().unwrap().to_string();
    // The plan with `stream = 1` in its base: the numbers of version 1 (another plan id).
    let plan1 = write_plan(&dir, &PLAN.replace("[base]\n", "[base]\nstream = 1\n"));
    let full1 = dir.join("full1.jsonl");
    assert!(sweep(&plan1, &full1, &[]).status.success());
    let id1 = normalized(&full1)[0]["plan"].as_str().unwrap().to_string();
    // As the earlier binaries wrote them: the plan's id, no `stream` key; a partial file.
    let old_style = |text: &str| text.replace(&id1, &id).replace(",\"stream\":1,", ",");
    let text = std::fs::read_to_string(&full1).unwrap();
    let partial: String = text.lines().take(7).map(|l| format!("{}\n", old_style(l))).collect();
    assert!(!partial.contains("stream"));
    let out = dir.join("old.jsonl");
    std::fs::write(&out, &partial).unwrap();
    assert!(sweep(&plan, &out, &[]).status.success());
    let got = normalized(&out);
    assert_eq!(got.len(), 18);
    let want: Vec<serde_json::Value> = normalized(&full1)
        .into_iter()
        .map(|r| serde_json::from_str(&old_style(&r.to_string())).unwrap())
        .collect();
    // The points run now are written with `"stream":1`; the numbers are those of version 1.
    let without_key: Vec<serde_json::Value> = got
        .iter()
        .map(|r| serde_json::from_str(&old_style(&r.to_string())).unwrap())
        .collect();
    assert_eq!(without_key, want);
    assert_ne!(
        got.iter().map(|r| &r["result"]["test_error"]).collect::<Vec<_>>(),
        v2.iter().map(|r| &r["result"]["test_error"]).collect::<Vec<_>>()
    );
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

/// Mean test error (or random-features error) per (log n / log d rounded to 1/8, T).
fn stairway_means(records: &Path) -> std::collections::BTreeMap<(i64, u64), (f64, f64)> {
    let text = std::fs::read_to_string(records).unwrap();
    let mut acc: std::collections::BTreeMap<(i64, u64), (f64, f64, f64)> = Default::default();
    for line in text.lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        let n = r["result"]["steps"][0]["n"].as_f64().unwrap();
        let d = r["config"]["network"]["d"].as_f64().unwrap();
        let k = ((n.ln() / d.ln()) * 8.0).round() as i64;
        let t = r["config"]["train"]["steps"].as_u64().unwrap();
        let e = acc.entry((k, t)).or_default();
        e.0 += r["result"]["test_error"].as_f64().unwrap();
        e.1 += r["result"]["rf_test_error"].as_f64().unwrap();
        e.2 += 1.0;
    }
    acc.into_iter().map(|(k, (a, b, c))| (k, (a / c, b / c))).collect()
}

/// `reproduce NAME --scale quick` for both stairway presets: the paper's shape (issue 14). At the
/// largest n the curves are strictly ordered T = 1 > 2 > ... > 6 (seed means) within the given
/// levels; every curve is non-increasing in n from log n / log d = 1 on (within 0.01); the
/// smallest n predicts about E[y²]; random features saturate near the paper's level.
#[test]
#[ignore = "slow tier: .ci/run runs it with --ignored"]
fn reproduce_stairways_have_the_papers_shape() {
    // (name, E[y²], T = 1 range at the largest n, T = 6 at most, random features range)
    for (name, y2, t1, t6, rf) in [
        ("stairway-he124", 0.7708, (0.19, 0.25), 0.17, (0.55, 0.65)),
        ("stairway-pm", 1.5, (0.3, 0.45), 0.3, (1.25, 1.45)),
    ] {
        let dir = tempdir(name);
        let o = run(&["reproduce", name, "--out", dir.to_str().unwrap(), "-q"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        for f in [
            "records.jsonl",
            "stairway.svg",
            "stairway.png",
            "summary.md",
            "plan.toml",
        ] {
            assert!(dir.join(f).exists(), "{name}: {f} missing");
        }
        let means = stairway_means(&dir.join("records.jsonl"));
        let kmin = means.keys().map(|k| k.0).min().unwrap();
        let kmax = means.keys().map(|k| k.0).max().unwrap();
        let small = means[&(kmin, 1)].0;
        assert!(
            (small - y2).abs() < 0.1 * y2,
            "{name}: smallest n {small} vs E[y²] {y2}"
        );
        let last: Vec<f64> = (1..=6).map(|t| means[&(kmax, t)].0).collect();
        assert!(
            last.windows(2).all(|w| w[0] > w[1]),
            "{name}: not ordered at the largest n: {last:?}"
        );
        assert!(
            last[0] >= t1.0 && last[0] <= t1.1,
            "{name}: T = 1 at the largest n: {}",
            last[0]
        );
        assert!(last[5] <= t6, "{name}: T = 6 at the largest n: {}", last[5]);
        let rf_last = means[&(kmax, 1)].1;
        assert!(rf_last >= rf.0 && rf_last <= rf.1, "{name}: random features {rf_last}");
        for t in 1..=6u64 {
            let curve: Vec<(i64, f64)> = means
                .iter()
                .filter(|((k, tt), _)| *tt == t && *k >= 8)
                .map(|((k, _), v)| (*k, v.0))
                .collect();
            for w in curve.windows(2) {
                assert!(
                    w[1].1 <= w[0].1 + 0.01,
                    "{name}: T = {t} rises from {:?} to {:?}",
                    w[0],
                    w[1]
                );
            }
        }
        let summary = std::fs::read_to_string(dir.join("summary.md")).unwrap();
        assert!(
            summary.contains("paper"),
            "{name}: summary without the paper's values: {summary}"
        );
        // The invocation's wall time beside its GEMM floor, with their ratio.
        let timing = summary
            .split("## Wall time")
            .nth(1)
            .unwrap_or_else(|| panic!("{summary}"));
        let numbers: Vec<f64> = timing
            .split(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter_map(|w| w.trim_end_matches('.').parse().ok())
            .collect();
        // points, wall, rate, floor, ratio
        let (wall, floor, ratio) = (numbers[1], numbers[3], numbers[4]);
        assert!(wall > 0.0 && floor > 0.0, "{timing}");
        // Both printed to 0.01 s: the ratio agrees within their rounding.
        let slack = ratio * (0.005 / floor + 0.005 / wall) + 0.005;
        assert!((ratio - wall / floor).abs() <= slack, "{timing}");
    }
}

/// A plan over train.steps = 1..6 trains each group once; its records equal six separate
/// `giantstep run --json` results bit for bit (wall time aside), and the dry run reports less
/// than half the operations of running every point alone.
#[test]
fn steps_axis_runs_once_and_equals_separate_runs() {
    let dir = tempdir("steps");
    let text = r#"
name = "steps"
[base]
target = { preset = "stairway-he124" }
network = { d = 32, p = 32 }
train = { n = "d^2", eta_max0 = 5.0, eta_schedule = [1.0, 0.6] }
eval = { n_test = 500 }
[axes]
"train.steps" = "1..=6"
seed = [3]
"#;
    let plan = write_plan(&dir, text);
    let out = dir.join("r.jsonl");
    let o = sweep(&plan, &out, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let records = std::fs::read_to_string(&out).unwrap();
    assert_eq!(records.lines().count(), 6);
    for line in records.lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        let t = r["config"]["train"]["steps"].as_u64().unwrap().to_string();
        let o = run(&[
            "run",
            "--target",
            "stairway-he124",
            "--d",
            "32",
            "--p",
            "32",
            "--n",
            "d^2",
            "--steps",
            &t,
            "--seed",
            "3",
            "--set",
            "train.eta_max0=5",
            "--set",
            "train.eta_schedule=[1.0, 0.6]",
            "--set",
            "eval.n_test=500",
            "--json",
            "--threads",
            "1",
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let mut want: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let mut got = r["result"].clone();
        for v in [&mut want, &mut got] {
            let m = v.as_object_mut().unwrap();
            m.remove("elapsed_s");
            m["config"].as_object_mut().unwrap().insert("threads".into(), 0.into());
        }
        assert_eq!(got, want, "T = {t}");
    }
    let o = run(&[
        "sweep",
        plan.to_str().unwrap(),
        "--out",
        dir.join("none.jsonl").to_str().unwrap(),
        "--dry-run",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report = String::from_utf8_lossy(&o.stdout);
    assert!(report.contains("6 to run in 1 training groups"), "{report}");
    let ratio: f64 = report
        .split("ran alone: ")
        .nth(1)
        .and_then(|r| r.split('x').next())
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("{report}"));
    assert!(ratio > 2.0, "grouped work is {ratio}x less, expected > 2: {report}");
    // The GEMM floor is the operations at the bare rate printed beside it.
    let number_after = |key: &str| -> f64 {
        report
            .split(key)
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|x| x.parse().ok())
            .unwrap_or_else(|| panic!("no number after {key:?}: {report}"))
    };
    let gflop = number_after("; total ");
    assert!(report.contains(&format!("total {gflop:.2} GFLOP")), "{report}");
    let (rate, floor) = (number_after("bare GEMM here: "), number_after("GEMM floor "));
    assert!(report.contains(&format!("GEMM floor {floor:.1} s")), "{report}");
    assert!(
        (floor - gflop / rate).abs() <= 0.05 + 0.01 * floor,
        "floor {floor} s for {gflop} GFLOP at {rate} GFLOP/s"
    );
    assert!(!dir.join("none.jsonl").exists(), "--dry-run wrote records");
}

#[test]
fn sweep_bad_input_exit_2_nothing_overwritten() {
    let dir = tempdir("bad");
    let good = write_plan(&dir, PLAN);
    let out = dir.join("r.jsonl");
    assert!(sweep(&good, &out, &["--shard", "0/6"]).status.success());
    let before = std::fs::read(&out).unwrap();
    let user_dir = dir.join("users-own");
    std::fs::create_dir_all(&user_dir).unwrap();
    std::fs::write(user_dir.join("notes.txt"), "mine").unwrap();
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
        (
            vec![
                "reproduce".into(),
                "stairway-pm".into(),
                "--out".into(),
                user_dir.display().to_string(),
            ],
            "is not a giantstep reproduce directory",
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
    // The user's directory holds only the user's file.
    let names: Vec<_> = std::fs::read_dir(&user_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["notes.txt"]);
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
        String::from_utf8_lossy(&o.stderr).contains("the records cover 12 of 18 points (missing 2, 3, 8, 9, 14, 15)"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Shards hold whole groups of points that differ only in train.steps (the plan's fastest
    // axis, 1..=2): shard 1 holds groups 1, 4, 7, that is points 2-3, 8-9, 14-15.
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
    // A corrupt metadata file is named (issue 23).
    let corrupt = dir.join("corrupt");
    std::fs::create_dir_all(&corrupt).unwrap();
    std::fs::write(corrupt.join("slurm.json"), "garbage").unwrap();
    let o = run(&["sweep", "--status", corrupt.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("slurm.json is not a giantstep Slurm metadata file"));
    // An sbatch that prints no job id is not a submission (issue 23).
    let bin_dir = dir.join("fakebin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let fake = bin_dir.join("sbatch");
    std::fs::write(&fake, "#!/bin/sh\nexit 0\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = bin()
        .args([
            "sweep",
            plan.to_str().unwrap(),
            "--out",
            dir.join("silent").to_str().unwrap(),
            "--slurm",
            "--submit",
        ])
        .env("PATH", &bin_dir)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("sbatch reported no job id"));
}

/// Nothing a user types reaches a generated Slurm script as a command (issue 23): partitions and
/// times are checked against Slurm's syntax, a plan's name becomes a safe job name, and every
/// line of both scripts is a comment, an `#SBATCH` directive or one of the script's own commands.
#[test]
fn slurm_scripts_refuse_or_neutralize_injection() {
    let dir = tempdir("slurminject");
    let plan = write_plan(&dir, PLAN);
    let payloads = [
        "debug\necho INJECTED",
        "debug;echo INJECTED",
        "$(echo INJECTED)",
        "`echo INJECTED`",
        "debug' ; echo 'INJECTED",
        "a\"b",
    ];
    for (flag, good) in [("--partition", "debug,gpu_a-1.x"), ("--time", "1-02:30:00")] {
        for bad in payloads {
            let out = dir.join("refused");
            let o = run(&[
                "sweep",
                plan.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "--slurm",
                flag,
                bad,
            ]);
            assert_eq!(o.status.code(), Some(2), "{flag} {bad:?}");
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(
                err.contains(&format!("{flag} must be")) && err.trim().lines().count() == 1,
                "{err}"
            );
            assert!(!out.exists(), "{flag} {bad:?}: nothing written");
        }
        let out = dir.join(format!("ok{flag}"));
        let o = run(&[
            "sweep",
            plan.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--slurm",
            flag,
            good,
        ]);
        assert!(
            o.status.success(),
            "{flag} {good}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    for (i, name) in payloads.iter().enumerate() {
        let text = PLAN.replace(
            "name = \"tiny\"",
            &format!("name = {}", toml::Value::String(name.to_string())),
        );
        let plan = write_plan(&dir, &text);
        let out = dir.join(format!("named-{i}"));
        let o = run(&[
            "sweep",
            plan.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--slurm",
            "--time",
            "10",
        ]);
        assert!(o.status.success(), "{name:?}: {}", String::from_utf8_lossy(&o.stderr));
        let exe = std::fs::canonicalize(env!("CARGO_BIN_EXE_giantstep")).unwrap();
        let own = |l: &str| {
            l.starts_with('#')
                || l == "set -euo pipefail"
                || l.starts_with(&format!("exec '{}' sweep ", exe.display()))
                || l.starts_with(&format!("'{}' ", exe.display()))
                || l.trim_start()
                    .starts_with("--threads \"${SLURM_CPUS_PER_TASK:-1}\" --quiet")
        };
        for script in ["sweep.sbatch", "merge.sbatch"] {
            let body = std::fs::read_to_string(out.join(script)).unwrap();
            for line in body.lines() {
                assert!(own(line), "{name:?}: {script} has a foreign line: {line}");
                assert!(
                    !line.contains("INJECTED") || line.starts_with("#SBATCH --job-name=giantstep-"),
                    "{line}"
                );
                if line.starts_with("#SBATCH --job-name=") {
                    assert!(
                        line.chars().all(|c| c.is_ascii_alphanumeric() || "#=_.- ".contains(c)),
                        "{line}"
                    );
                }
            }
        }
    }
}

/// Two sweeps on one record file (issue 10): while another process holds the file's lock (here
/// the test itself, the way a running sweep holds it), a sweep exits 2 with a clear message and
/// changes nothing; once the lock is released it runs every point exactly once.
#[test]
fn second_sweep_on_the_same_file_is_refused() {
    let dir = tempdir("lock");
    let text = r#"
name = "lock"
[base]
network = { d = 32, p = 16 }
eval = { n_test = 500, theory = false }
[axes]
seed = "0..24"
"#;
    let plan = write_plan(&dir, text);
    let out = dir.join("r.jsonl");
    std::fs::write(&out, "").unwrap();
    let holder = std::fs::OpenOptions::new().append(true).open(&out).unwrap();
    holder.lock().unwrap();
    let second = sweep(&plan, &out, &[]);
    assert_eq!(
        second.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("is in use by another giantstep sweep"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), b"", "the refused sweep wrote");
    holder.unlock().unwrap();
    drop(holder);
    assert!(sweep(&plan, &out, &[]).status.success());
    let records = normalized(&out);
    assert_eq!(records.len(), 24);
    let hashes: std::collections::HashSet<_> = records.iter().map(|r| r["hash"].to_string()).collect();
    assert_eq!(hashes.len(), 24, "a point was written twice");
}

/// A file that is not a records file, ending without a newline (issue 10): the sweep refuses
/// and leaves it unchanged instead of cutting its "partial last line".
#[test]
fn sweep_refuses_a_foreign_file_without_final_newline() {
    let dir = tempdir("foreign");
    let plan = write_plan(&dir, PLAN);
    let out = dir.join("notes.json");
    std::fs::write(&out, "{\"a\": 1}").unwrap();
    let o = sweep(&plan, &out, &[]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("is not a giantstep records file"), "{err}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "{\"a\": 1}");
    // Records followed by a user's note without its newline (issue 23): refused, not cut.
    let records = dir.join("r.jsonl");
    assert!(sweep(&plan, &records, &["--shard", "0/6"]).status.success());
    let mut text = std::fs::read_to_string(&records).unwrap();
    text.push_str("my note: rerun with d = 512");
    std::fs::write(&records, &text).unwrap();
    let o = sweep(&plan, &records, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not a giantstep records file"));
    assert_eq!(std::fs::read_to_string(&records).unwrap(), text);
}

/// A failed point is not done (issue 10): a rerun retries it, the retried record replaces the
/// failed one in `merge`, and the summary and --status count points, not records.
#[test]
fn failed_points_are_retried() {
    let dir = tempdir("retry");
    let plan = write_plan(&dir, PLAN);
    let out = dir.join("r.jsonl");
    assert!(sweep(&plan, &out, &[]).status.success());
    // Turn the record of point 3 into a failure, as a crash of that point would have left it.
    let text = std::fs::read_to_string(&out).unwrap();
    let mut lines: Vec<String> = Vec::new();
    let mut want = None;
    for l in text.lines() {
        let mut r: serde_json::Value = serde_json::from_str(l).unwrap();
        if r["index"] == 3 {
            want = Some(r["result"].clone());
            let m = r.as_object_mut().unwrap();
            m.remove("result");
            m.insert("error".into(), "numerical failure: injected".into());
        }
        lines.push(r.to_string());
    }
    std::fs::write(&out, lines.join("\n") + "\n").unwrap();
    let o = sweep(&plan, &out, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let after = std::fs::read_to_string(&out).unwrap();
    assert_eq!(after.lines().count(), 19, "the retried point is appended");
    let merged = dir.join("m.jsonl");
    assert!(
        run(&["merge", out.to_str().unwrap(), "--out", merged.to_str().unwrap()])
            .status
            .success()
    );
    let recs: Vec<serde_json::Value> = std::fs::read_to_string(&merged)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(recs.len(), 18);
    let three = recs.iter().find(|r| r["index"] == 3).unwrap();
    let (mut got, mut want) = (three["result"].clone(), want.unwrap());
    for v in [&mut got, &mut want] {
        v.as_object_mut().unwrap().remove("elapsed_s");
    }
    assert_eq!(got, want, "the retried point equals its first run");
    // A rerun now runs nothing.
    let before = std::fs::read(&out).unwrap();
    assert!(sweep(&plan, &out, &[]).status.success());
    assert_eq!(std::fs::read(&out).unwrap(), before);
}

/// A refused reproduce (the directory holds another experiment) writes nothing (issue 10).
#[test]
fn refused_reproduce_writes_nothing() {
    let dir = tempdir("refused");
    let o = run(&["reproduce", "cosines-staircase", "--out", dir.to_str().unwrap(), "-q"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let plan_before = std::fs::read(dir.join("plan.toml")).unwrap();
    let records_before = std::fs::read(dir.join("records.jsonl")).unwrap();
    let o = run(&["reproduce", "cosines-stuck", "--out", dir.to_str().unwrap(), "-q"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("holds records of another experiment"));
    assert_eq!(std::fs::read(dir.join("plan.toml")).unwrap(), plan_before);
    assert_eq!(std::fs::read(dir.join("records.jsonl")).unwrap(), records_before);
}

/// A disk that fills up during a sweep with --jobs 2 (issue 10): the sweep stops with a clear
/// message, the file holds only complete records, and it resumes elsewhere. Needs root to mount
/// a small tmpfs: ignored by default, run by .ci/run (as root) with `--ignored`.
#[test]
#[ignore = "needs root (mounts a tmpfs); .ci/run runs it"]
fn full_disk_keeps_complete_records() {
    let dir = tempdir("full");
    let mnt = dir.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=40k", "tmpfs", mnt.to_str().unwrap()])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(mounted, "cannot mount a tmpfs: this test needs root");
    let plan = write_plan(&dir, PLAN);
    let out = mnt.join("r.jsonl");
    let o = sweep(&plan, &out, &["--jobs", "2"]);
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let _ = Command::new("umount").arg(&mnt).output();
    assert_eq!(o.status.code(), Some(2), "the records of 18 points do not fit in 40 kB");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("points kept, rerun to resume") && err.trim().lines().count() == 1,
        "{err}"
    );
    assert!(text.is_empty() || text.ends_with('\n'), "a partial record was left");
    let kept = text.lines().count();
    for l in text.lines() {
        let _: serde_json::Value = serde_json::from_str(l).expect("a complete record");
    }
    // Resume from the kept records on a disk with room: the result equals a clean sweep.
    let moved = dir.join("r.jsonl");
    std::fs::write(&moved, &text).unwrap();
    assert!(sweep(&plan, &moved, &[]).status.success());
    let clean = dir.join("clean.jsonl");
    assert!(sweep(&plan, &clean, &[]).status.success());
    assert_eq!(normalized(&moved), normalized(&clean), "after keeping {kept} records");
}

/// `plot overlaps` on records of different ranks and batch sizes (issues 10, 11): one panel per
/// experiment, no index panic.
#[test]
fn plot_overlaps_draws_one_panel_per_experiment() {
    let dir = tempdir("panels");
    let text = r#"
name = "panels"
[base]
network = { d = 24, p = 16 }
train = { steps = 2 }
eval = { n_test = 200 }
[axes]
"target.preset" = ["staircase3", "staircase2"]
"train.n" = ["4d", "8d"]
"#;
    let plan = write_plan(&dir, text);
    let out = dir.join("r.jsonl");
    assert!(sweep(&plan, &out, &[]).status.success());
    let svg = dir.join("o.svg");
    let o = run(&["plot", "overlaps", out.to_str().unwrap(), "-o", svg.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&svg).unwrap();
    for want in ["n = 96", "n = 192", "z1 + z1*z2 + z1*z2*z3"] {
        assert!(text.contains(want), "no panel for {want}");
    }
}

/// An output that is also an input is refused before anything is written, and so is a merge onto
/// a record file that a running sweep holds, or of files without records (issue 23).
#[test]
fn outputs_never_replace_inputs() {
    let dir = tempdir("alias");
    let cfg = dir.join("c.toml");
    let cfg_text = "[network]\nd = 16\np = 8\n";
    std::fs::write(&cfg, cfg_text).unwrap();
    let same = dir.join(".").join("c.toml");
    let o = run(&["run", "--config", cfg.to_str().unwrap(), "-o", same.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is also an input"));
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), cfg_text);
    // Records of a small sweep, then merge and plot onto them.
    let plan = write_plan(&dir, &PLAN.replace("seed = \"0..3\"", "seed = [0]"));
    let records = dir.join("r.jsonl");
    assert!(run(&[
        "sweep",
        plan.to_str().unwrap(),
        "--out",
        records.to_str().unwrap(),
        "-q"
    ])
    .status
    .success());
    let before = std::fs::read(&records).unwrap();
    for args in [
        vec!["merge", records.to_str().unwrap(), "-o", records.to_str().unwrap()],
        vec![
            "plot",
            "stairway",
            records.to_str().unwrap(),
            "-o",
            records.to_str().unwrap(),
        ],
    ] {
        let o = run(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("is also an input"),
            "{args:?}"
        );
        assert_eq!(std::fs::read(&records).unwrap(), before);
    }
    // merge -o onto a record file another sweep holds (the test holds its lock).
    let held = dir.join("held.jsonl");
    std::fs::write(&held, &before).unwrap();
    let holder = std::fs::OpenOptions::new().read(true).write(true).open(&held).unwrap();
    holder.lock().unwrap();
    let o = run(&["merge", records.to_str().unwrap(), "-o", held.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("in use by another giantstep sweep"));
    holder.unlock().unwrap();
    // A record claiming a plan of 10^9 points is refused, not counted point by point.
    let claim = dir.join("claim.jsonl");
    let line = std::fs::read_to_string(&records)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    let mut v: serde_json::Value = serde_json::from_str(&line).unwrap();
    v["points"] = serde_json::json!(1_000_000_000u64);
    std::fs::write(&claim, format!("{v}\n")).unwrap();
    let o = run(&[
        "merge",
        claim.to_str().unwrap(),
        "-o",
        dir.join("c.jsonl").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("inconsistent records"));
    // Files without records.
    let empty = dir.join("empty.jsonl");
    std::fs::write(&empty, "\n\n").unwrap();
    let merged = dir.join("m.jsonl");
    let o = run(&["merge", empty.to_str().unwrap(), "-o", merged.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("hold no records"));
    assert!(!merged.exists());
}

/// The dry run of a plan no machine could run costs it without allocating it (issue 23): under
/// an 8 GB address-space limit, d = p = 3·10⁶ is estimated, not aborted.
#[test]
#[ignore = "slow tier: .ci/run runs it with --ignored"]
fn dry_run_of_a_huge_plan_does_not_allocate_it() {
    let dir = tempdir("hugedry");
    let plan = write_plan(
        &dir,
        "[base]\nnetwork = { d = 3000000, p = 3000000 }\n[axes]\nseed = [0]\n",
    );
    let exe = env!("CARGO_BIN_EXE_giantstep");
    let o = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "ulimit -v 8000000 && exec '{exe}' sweep '{}' --out '{}' --dry-run",
            plan.display(),
            dir.join("r.jsonl").display()
        ))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("estimated wall time"));
}

/// A dry run that expands a large plan says so before the wait (issue 23).
#[test]
#[ignore = "slow tier: .ci/run runs it with --ignored"]
fn dry_run_of_a_large_plan_shows_progress() {
    let dir = tempdir("largedry");
    let plan = write_plan(
        &dir,
        "[base]\nnetwork = { d = 8, p = 4 }\n[axes]\nseed = \"0..150000\"\n",
    );
    let o = run(&[
        "sweep",
        plan.to_str().unwrap(),
        "--out",
        dir.join("r.jsonl").to_str().unwrap(),
        "--dry-run",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("expanding the plan's 150000 points"));
}
