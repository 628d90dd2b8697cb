#!/usr/bin/env python3
"""The Python package against the command line on the same run, side by side.

    python bench/python_vs_cli.py [--small] [--repeats 3] [--bin target/release/giantstep]

Runs `giantstep run` (the binary) and `giantstep.run` (the package, in this interpreter)
alternately on the standard one-step workload of `giantstep bench` (d = 512, p = 1024,
n = d^2, n_test = 10^4; --small: d = 256, p = 512), checks that both give the same numbers, and
prints the median wall times and their ratio. The binary's time includes its start (a few ms).
"""

import argparse
import json
import statistics
import subprocess
import time

import giantstep


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="d = 256, p = 512")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--bin", default="target/release/giantstep")
    ap.add_argument("--precision", default="f64", choices=["f64", "f32"])
    args = ap.parse_args()
    d, p = (256, 512) if args.small else (512, 1024)
    config = {
        "network.d": d,
        "network.p": p,
        "train.n": "d^2",
        "eval.n_test": 10000,
        "precision": args.precision,
        "eval.theory": False,
    }
    sets = sum((["--set", f"{k}={str(v).lower() if isinstance(v, bool) else v}"] for k, v in config.items()), [])
    cli_times, py_times = [], []
    cli_result = py_result = None
    for _ in range(args.repeats):
        t = time.perf_counter()
        out = subprocess.run([args.bin, "run", "--json", "-q"] + sets, check=True, capture_output=True, text=True)
        cli_times.append(time.perf_counter() - t)
        cli_result = json.loads(out.stdout)
        t = time.perf_counter()
        py_result = giantstep.run(config)
        py_times.append(time.perf_counter() - t)
    same = cli_result["test_error"] == py_result.test_error and cli_result["steps"] == py_result.steps
    c, q = statistics.median(cli_times), statistics.median(py_times)
    print(f"workload: d = {d}, p = {p}, n = d^2 = {d * d}, one step, {args.precision}, {args.repeats} runs each")
    print(f"CLI    median {c:.2f} s  (runs: {', '.join(f'{x:.2f}' for x in cli_times)})")
    print(f"Python median {q:.2f} s  (runs: {', '.join(f'{x:.2f}' for x in py_times)})")
    print(f"Python / CLI = {q / c:.3f}; identical numbers: {same}")


if __name__ == "__main__":
    main()
