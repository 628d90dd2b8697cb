#!/usr/bin/env python3
"""Scores stairway protocols against the paper's figure (docs/stairway.md, "Protocol search").

For each target and protocol (a set of `train` keys), runs a sweep at d = p = D over
log n / log d in {1.0, 1.25, 1.5, 1.75, 2.0, 2.25}, T = 1..6 and S seeds with `giantstep sweep`
(resumable: records stay in OUT/), and scores the seed means by their RMS gap to the digitized
paper values (bench/paper_stairway.json) over T = 1..6, per region: "large n" (1.5-2.25, the
issue's score) and "small n" (1.0-1.25). With --theory it also scores the predicted curve of
`giantstep theory --curve` (seconds instead of minutes). Standard library only.

    python3 bench/protocol_search.py --d 128 --seeds 2 --out target/protocol-search
    python3 bench/protocol_search.py --grid stairway-pm --d 512 --seeds 1   # theory only, ~12 min
"""
import argparse
import json
import math
import pathlib
import subprocess
import sys

KAPPAS = [1.0, 1.25, 1.5, 1.75, 2.0, 2.25]
REGIONS = {"large n (1.5-2.25)": (1.5, 2.25), "small n (1.0-1.25)": (1.0, 1.25)}

# Protocols: name -> (train keys as TOML, which targets). "today" is each target's reproduce plan.
PROTOCOLS = {
    "today (he124: cap 5; pm: cap 5, later x0.6)": {
        "stairway-he124": "eta_max0 = 5.0",
        "stairway-pm": "eta_max0 = 5.0, eta_schedule = [1.0, 0.6]",
    },
    "cap 5, later cap 3": "eta_max0 = 5.0, eta_max0_later = 3.0",
    "uncapped first, later cap 3": "eta_max0_later = 3.0",
    "uncapped first, later cap 5": "eta_max0_later = 5.0",
    "linear from step 2, cap 5, later x0.6": (
        'eta_max0 = 5.0, eta_schedule = [1.0, 0.6], preprocess = "linear", preprocess_from = 2'
    ),
    "linear from step 2, cap 5, later cap 3": (
        'eta_max0 = 5.0, eta_max0_later = 3.0, preprocess = "linear", preprocess_from = 2'
    ),
    "linear from step 2, uncapped first, later cap 3": (
        'eta_max0_later = 3.0, preprocess = "linear", preprocess_from = 2'
    ),
    # The stability analysis (docs/stairway.md): later steps are stable for gamma below about 8,
    # and the residual step's contraction 1 - gamma/4 is fastest near gamma = 4.
    "cap 5, later cap 4 (theory: fastest stable contraction)": "eta_max0 = 5.0, eta_max0_later = 4.0",
    # Found by the predicted curve (--grid): a second layer with spread |a_i| spreads the
    # neurons' step sizes, so the features do not collapse onto two lines and the readout's floor
    # drops (pm at T = 6: 0.24 with +-1/sqrt(p), 0.10-0.15 with a uniform or Gaussian law).
    "gaussian second layer, cap 6, later cap 0.75": ("eta_max0 = 6.0, eta_max0_later = 0.75", 'second_layer = "gaussian"'),
    "uniform second layer, cap 8, later cap 1": ("eta_max0 = 8.0, eta_max0_later = 1.0", 'second_layer = "uniform"'),
    "uniform second layer, linear from step 2, cap 8, later cap 1": (
        'eta_max0 = 8.0, eta_max0_later = 1.0, preprocess = "linear", preprocess_from = 2',
        'second_layer = "uniform"',
    ),
}


def train_keys(protocol, target):
    """The protocol's (train keys, extra network keys) for a target."""
    keys = PROTOCOLS[protocol]
    keys = keys[target] if isinstance(keys, dict) else keys
    return keys if isinstance(keys, tuple) else (keys, "")


def plan_text(target, keys, d, seeds, network=""):
    axis = ", ".join(f'"d^{k}"' for k in KAPPAS)
    network = f", {network}" if network else ""
    return (
        f'name = "{target}"\nfigure = "stairway"\n[base]\n'
        f'target = {{ preset = "{target}" }}\nnetwork = {{ d = {d}, p = {d}{network} }}\n'
        f"train = {{ {keys} }}\neval = {{ n_test = 50000 }}\n[axes]\n"
        f'"train.n" = [{axis}]\n"train.steps" = "1..=6"\nseed = "0..{seeds}"\n'
    )


def simulated_means(records_path, d):
    sums = {}
    for line in records_path.read_text().splitlines():
        rec = json.loads(line)
        res = rec.get("result")
        if not res:
            continue
        kappa = round(math.log(res["steps"][0]["n"]) / math.log(d) * 8) / 8
        t = len(res["steps"])
        sums.setdefault((kappa, t), []).append(res["test_error"])
        if res.get("rf_test_error") is not None:
            sums.setdefault((kappa, 0), []).append(res["rf_test_error"])
    return {k: sum(v) / len(v) for k, v in sums.items()}


def predicted(bin_path, plan_path):
    out = subprocess.run(
        [bin_path, "theory", "x", "--curve", "--plan", str(plan_path), "--json"],
        check=True, capture_output=True, text=True,
    ).stdout
    c = json.loads(out)["curve"]
    means = {}
    for j, k in enumerate(c["kappa"]):
        for t, row in enumerate(c["test_error"]):
            if row[j] is not None:
                means[(round(k * 8) / 8, t + 1)] = row[j]
        if c["rf_test_error"][j] is not None:
            means[(round(k * 8) / 8, 0)] = c["rf_test_error"][j]
    return means


def score(means, paper, lo, hi):
    gaps = []
    for k_text, row in paper.items():
        k = float(k_text)
        if not lo <= k <= hi:
            continue
        for t in range(1, 7):
            want = row[t - 1]
            got = means.get((k, t))
            if want is not None and got is not None:
                gaps.append((got - want) ** 2)
    return math.sqrt(sum(gaps) / len(gaps)) if gaps else float("nan")


def monotone(means, lo=1.5):
    """Whether the test error does not rise with T (0.005 of slack) at every log n / log d >= lo."""
    for k in KAPPAS:
        if k < lo:
            continue
        errs = [means.get((k, t)) for t in range(1, 7)]
        if any(e is None for e in errs):
            return False
        if any(b > a + 0.005 for a, b in zip(errs, errs[1:])):
            return False
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--out", default="target/protocol-search")
    ap.add_argument("--bin", default="target/release/giantstep")
    ap.add_argument("--theory", action="store_true", help="also score the predicted curves")
    ap.add_argument("--only-theory", action="store_true", help="score the predicted curves only")
    ap.add_argument(
        "--grid",
        metavar="TARGET",
        help="score a grid of protocols for TARGET by the predicted curve only (second-layer law x "
        "first-step cap x later cap x linear preprocessing from step 2) and print the best",
    )
    ap.add_argument("--top", type=int, default=15, help="rows --grid prints")
    args = ap.parse_args()
    if args.grid:
        return grid(args)
    root = pathlib.Path(__file__).resolve().parent
    paper = json.loads((root / "paper_stairway.json").read_text())
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"d = p = {args.d}, seeds 0..{args.seeds}; RMS gap to the paper over T = 1..6\n")
    header = "| target | protocol | " + " | ".join(REGIONS) + " | monotone in T (>= 1.5) |"
    if args.theory or args.only_theory:
        header += " theory: " + " | theory: ".join(REGIONS) + " |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for target in ("stairway-he124", "stairway-pm"):
        for protocol in PROTOCOLS:
            keys, network = train_keys(protocol, target)
            slug = "".join(ch if ch.isalnum() else "-" for ch in f"{target}-{protocol}")[:80]
            plan = out / f"{slug}.toml"
            plan.write_text(plan_text(target, keys, args.d, args.seeds, network))
            cells = []
            if not args.only_theory:
                records = out / f"{slug}.jsonl"
                subprocess.run([args.bin, "sweep", str(plan), "--out", str(records), "-q"], check=True)
                sim = simulated_means(records, args.d)
                cells += [f"{score(sim, paper[target], lo, hi):.3f}" for lo, hi in REGIONS.values()]
                cells.append("yes" if monotone(sim) else "no")
            else:
                cells += ["-"] * (len(REGIONS) + 1)
            if args.theory or args.only_theory:
                th = predicted(args.bin, plan)
                cells += [f"{score(th, paper[target], lo, hi):.3f}" for lo, hi in REGIONS.values()]
            print(f"| {target} | {protocol} | " + " | ".join(cells) + " |", flush=True)


def grid(args):
    """The theory-only search of docs/stairway.md: every combination, scored at large n."""
    root = pathlib.Path(__file__).resolve().parent
    paper = json.loads((root / "paper_stairway.json").read_text())[args.grid]
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    kappas = KAPPAS[:]
    KAPPAS[:] = [k for k in kappas if k >= 1.5]
    rows = []
    for law in ("hypercube", "gaussian", "uniform"):
        for first in (4.0, 5.0, 6.0, 8.0, 10.0):
            for later in (0.75, 1.0, 1.5, 2.0, 3.0, 4.0):
                for pre in (False, True):
                    keys = f"eta_max0 = {first}, eta_max0_later = {later}"
                    if pre:
                        keys += ', preprocess = "linear", preprocess_from = 2'
                    network = f'second_layer = "{law}"'
                    plan = out / "grid.toml"
                    plan.write_text(plan_text(args.grid, keys, args.d, args.seeds, network))
                    th = predicted(args.bin, plan)
                    rows.append((score(th, paper, 1.5, 2.25), monotone(th), law, keys))
                    print(f"{len(rows)} scored", end="\r", file=sys.stderr, flush=True)
    KAPPAS[:] = kappas
    rows.sort(key=lambda r: r[0])
    print(f"{args.grid}, d = p = {args.d}, seeds 0..{args.seeds}: predicted RMS gap to the paper over T = 1..6 at 1.5-2.25\n")
    print("| second layer | train keys | theory: large n (1.5-2.25) | monotone in T (>= 1.5) |")
    print("|---|---|---|---|")
    for s_, mono, law, keys in rows[: args.top]:
        print(f"| {law} | `{keys}` | {s_:.3f} | {'yes' if mono else 'no'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
