#!/usr/bin/env python3
"""Largest |predicted - simulated seed mean| of a committed stairway figure, per T and region.

    python3 bench/theory_vs_records.py docs/figures/stairway-he124 [--form mean-field] [--particles K]

Reads the simulated means from the figure's summary.md, predicts the same plan with
`giantstep theory --curve --plan PLAN --json` (the release binary, or $GIANTSTEP_BIN) and prints
the largest gap per T and for random features, on log n/log d in {1.5, ..., 2.25} and on
[1.0, 1.5). Standard library only.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time


def simulated(summary):
    """{kappa: [T1..T6 means] + [rf mean]} from summary.md's first table."""
    rows = {}
    for line in open(summary):
        if not re.match(r"^\| \d", line):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not all("±" in c for c in cells[1::2]):
            continue
        kappa = float(cells[0])
        sims = [float(c.split("±")[0]) for c in cells[1::2]]
        rows[kappa] = sims
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("figure")
    ap.add_argument("--form", default="finite-p")
    ap.add_argument("--particles", type=int, default=None)
    a = ap.parse_args()
    binary = os.environ.get("GIANTSTEP_BIN", "target/release/giantstep")
    cmd = [binary, "theory", "x", "--curve", "--plan", os.path.join(a.figure, "plan.toml"), "--json", "--form", a.form]
    if a.particles:
        cmd += ["--particles", str(a.particles)]
    t0 = time.time()
    out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    wall = time.time() - t0
    curve = out["curve"]
    sims = simulated(os.path.join(a.figure, "summary.md"))
    steps = len(curve["test_error"])
    regions = {"1.5-2.25": lambda k: k >= 1.5 - 1e-9, "1.0-1.5": lambda k: 1.0 - 1e-9 <= k < 1.5 - 1e-9}
    print(f"{a.figure}, form {a.form}: prediction took {wall:.1f} s ({' '.join(cmd[1:])})")
    print("region      " + " ".join(f"T={t + 1:<5}" for t in range(steps)) + " RF")
    for name, inside in regions.items():
        worst = [0.0] * (steps + 1)
        for j, k in enumerate(curve["kappa"]):
            key = min(sims, key=lambda s: abs(s - k))
            if abs(key - k) > 0.02 or not inside(k):
                continue
            pred = [curve["test_error"][t][j] for t in range(steps)] + [curve["rf_test_error"][j]]
            for i, (p, s) in enumerate(zip(pred, sims[key])):
                if p is not None:
                    worst[i] = max(worst[i], abs(p - s))
        print(f"{name:<11} " + " ".join(f"{w:<7.3f}" for w in worst))
    return 0


if __name__ == "__main__":
    sys.exit(main())
