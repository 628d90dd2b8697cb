#!/usr/bin/env python3
"""A quick stairway to accuracy from Python: test error against log n / log d for T = 1..3
giant steps on the he124 target, from one sweep, as a pandas DataFrame and a matplotlib figure.

    pip install ./crates/giantstep-py pandas matplotlib
    python examples/python/stairway.py        # about a minute on two cores

The paper-scale version is `giantstep reproduce stairway-he124` (docs/stairway.md).
"""

import pathlib
import tempfile

import giantstep

PLAN = """
name = "stairway-quick"
[base]
target = { preset = "stairway-he124" }
network = { d = 64, p = 64 }
train = { eta_max0 = 5.0 }
eval = { n_test = 20000 }
[axes]
"train.n" = { from = 1.0, to = 2.0, step = 0.25, power_of_d = true }
"train.steps" = "1..=3"
seed = "0..2"
"""


def main() -> None:
    out = pathlib.Path(tempfile.gettempdir()) / "giantstep-stairway-quick.jsonl"
    print(giantstep.sweep(PLAN, out, progress=True))  # rerunning resumes from the records
    frame = giantstep.records_frame(out)
    # One row per (point, step): keep each run's last step, average the seeds.
    frame["kappa"] = frame["kappa"].round(3)
    last = frame[frame["t"] == frame["steps"]]
    table = last.groupby(["steps", "kappa"])[["test_error", "rf_test_error"]].mean().reset_index()
    print(table.pivot(index="kappa", columns="steps", values="test_error").round(3))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no figure")
        return
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for steps, g in table.groupby("steps"):
        ax.plot(g["kappa"], g["test_error"], marker="o", label=f"T = {steps}")
    rf = table.groupby("kappa")["rf_test_error"].mean()
    ax.plot(rf.index, rf.values, "k--", label="random features")
    ax.set_xlabel("log n / log d")
    ax.set_ylabel("test error")
    ax.legend()
    fig.tight_layout()
    fig.savefig("stairway-quick.png", dpi=120)
    print("wrote stairway-quick.png")


if __name__ == "__main__":
    main()
