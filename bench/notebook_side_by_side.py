#!/usr/bin/env python3
"""The notebook's work in numpy and in giantstep, side by side on this machine.

    python3 bench/notebook_side_by_side.py [--small] [--bin target/release/giantstep]

Runs bench/notebook_reference.py (numpy; OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset for it so
that OpenBLAS picks its best kernel) and then, on the same work, `giantstep run` once per
(n, seed) with eval.baseline = false, in f64 and in f32. Prints the wall times, peak RSS and
their ratios as a markdown table; the test errors of both (different random streams, so they
agree in distribution, not bit for bit). Beside each wall time, its ratio to the GEMM floor of the
work: its operations at this machine's bare GEMM rate. The rate of a shared machine drifts (by
tens of percent within minutes), so it is measured next to every run: `giantstep sweep --dry-run`
of the run's own configuration (which also counts its operations) just before numpy, between
numpy and giantstep, and after each of giantstep's runs; each run's floor is its operations at
the mean of the two rates measured on either side of it, and a precision's floor is the sum.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def measured(cmd, env=None):
    """Runs cmd; returns (stdout, wall seconds, peak RSS bytes of the child)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        sys.exit(f"{cmd[0]} failed with status {status}")
    return out, wall, usage.ru_maxrss * 1024


def gemm_floor(binary, sets, kappas, seeds):
    """(operations, bare GEMM rate in GFLOP/s): `giantstep sweep --dry-run` of the runs of `sets`
    at n = d^kappa for each of `kappas` and seeds 0..seeds (it measures the rate as it runs)."""
    base = "\n".join(f"{k} = {json.dumps(v) if isinstance(v, str) and v not in ('true', 'false') else v}"
                      for k, v in sets.items() if k not in ("seed", "train.n"))
    ns = ", ".join(f'"d^{k}"' for k in kappas)
    plan = f'name = "notebook"\n[base]\n{base}\n[axes]\n"train.n" = [{ns}]\nseed = "0..{seeds}"\n'
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "plan.toml")
        with open(path, "w") as f:
            f.write(plan)
        out = subprocess.run([binary, "sweep", path, "--dry-run", "-o", os.path.join(tmp, "r.jsonl")],
                             capture_output=True, text=True, check=True).stdout
    total = re.search(r"total ([0-9.]+) (T|G)FLOP", out)
    flops = float(total.group(1)) * (1e12 if total.group(2) == "T" else 1e9)
    rate = float(re.search(r"bare GEMM here: ([0-9.]+) GFLOP/s", out).group(1))
    return flops, rate


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--bin", default="target/release/giantstep")
    args = ap.parse_args()
    d, p, n_test = (256, 512, 20_000) if args.small else (512, 1024, 100_000)
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    rows = []
    floors = {}
    kappas = ("1.3", "1.65", "2")
    for precision in ("f64", "f32"):
        def run_sets(kappa, seed):
            return {
                "target.preset": "stairway-he124", "network.d": d, "network.p": p,
                "network.second_layer": "gaussian", "network.symmetric": "false",
                "train.n": f"d^{kappa}", "train.eta0": 10 * (d / p) ** 0.5, "train.preprocess": "linear",
                "readout.batch": "last", "readout.add_back": "test", "eval.n_test": n_test,
                "eval.baseline": "false", "eval.theory": "false", "precision": precision, "seed": seed,
            }
        flops, rate_before_np = gemm_floor(args.bin, run_sets("2", 0), kappas, args.seeds)
        cmd = [sys.executable, os.path.join(HERE, "notebook_reference.py"), "--precision", precision,
               "--seeds", str(args.seeds)] + (["--small"] if args.small else [])
        out, np_wall, np_rss = measured(cmd, env)
        np_errors = [r["test_error"] for r in json.loads(out)["runs"]]
        _, rate = gemm_floor(args.bin, run_sets("2", 0), kappas, args.seeds)
        np_floor = flops / ((rate_before_np + rate) / 2 * 1e9)
        rates = [rate_before_np, rate]
        gs_wall, gs_rss, gs_errors, gs_floor = 0.0, 0, [], 0.0
        for kappa in kappas:
            for seed in range(args.seeds):
                sets = run_sets(kappa, seed)
                cmd = [args.bin, "run", "--json", "-q"] + sum((["--set", f"{k}={v}"] for k, v in sets.items()), [])
                out, wall, rss = measured(cmd)
                gs_wall += wall
                gs_rss = max(gs_rss, rss)
                gs_errors.append(json.loads(out)["test_error"])
                run_flops, after = gemm_floor(args.bin, sets, (kappa,), 1)
                gs_floor += run_flops / ((rate + after) / 2 * 1e9)
                rate = after
                rates.append(after)
        floors[precision] = (flops, min(rates), max(rates), len(rates), np_floor, gs_floor)
        rows.append((precision, np_wall, np_rss, gs_wall, gs_rss, np_errors, gs_errors))
    print(f"notebook work: d = {d}, p = {p}, n = d^1.3, d^1.65, d^2, n_test = {n_test}, {args.seeds} seeds, one step\n")
    print("| precision | numpy wall | numpy peak RSS | giantstep wall | giantstep peak RSS | speed-up | memory |")
    print("|---|---|---|---|---|---|---|")
    for precision, nw, nr, gw, gr, _, _ in rows:
        print(f"| {precision} | {nw:.1f} s | {nr / 1e9:.2f} GB | {gw:.1f} s | {gr / 1e6:.0f} MB | "
              f"{nw / gw:.2f}× | 1/{nr / gr:.0f} |")
    print("\n| precision | operations | bare GEMM (lowest – highest of k) | numpy floor | giantstep floor | numpy / floor | giantstep / floor |")
    print("|---|---|---|---|---|---|---|")
    for precision, nw, _, gw, _, _, _ in rows:
        flops, low, high, k, np_floor, gs_floor = floors[precision]
        print(f"| {precision} | {flops:.3g} | {low:.1f} – {high:.1f} GFLOP/s of {k} | {np_floor:.1f} s | {gs_floor:.1f} s | "
              f"{nw / np_floor:.2f}× | {gw / gs_floor:.2f}× |")
    for precision, _, _, _, _, ne, ge in rows:
        print(f"\n{precision} test errors (numpy / giantstep), per n: "
              + ", ".join(f"{statistics.mean(ne[i:i + args.seeds]):.4f} / {statistics.mean(ge[i:i + args.seeds]):.4f}"
                          for i in range(0, len(ne), args.seeds)))


if __name__ == "__main__":
    main()
