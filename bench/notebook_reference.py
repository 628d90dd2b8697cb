#!/usr/bin/env python3
"""The authors' single-step protocol in numpy, written as their notebook does it (dense batches).

Target stairway-he124, (f(z1) + f(z2))/2 with f = he1 + he2/2 + he4/24 and a random orthonormal
teacher; d = 512, p = 1024, ReLU, rows of W0 ~ N(0, I/d), gaussian second layer a ~ N(0, 1/p)
(no symmetric pairing), one step with eta = 10·sqrt(n p) on a batch of n samples whose labels
have their empirical mean and linear part removed (linear preprocessing), the ridge readout
(lambda = 1) on that same batch, and the test error on 10^5 samples with the test set's own mean
and linear part added back (as the notebook does). n = d^1.3, d^1.65, d^2; 2 seeds. No
random-features baseline (the notebook computes none).

The same work in giantstep: `giantstep run` with the keys printed by --giantstep-config and
eval.baseline = false (bench/notebook_side_by_side.py runs both and prints the ratios).

    python3 bench/notebook_reference.py [--precision f32] [--small] [--seeds 2]

Prints one JSON object: wall time, peak RSS, and the test error of every (n, seed).
"""
import argparse
import json
import resource
import time

import numpy as np


def he124(x):
    def f(t):
        return t + (t * t - 1) / 2 + (t**4 - 6 * t * t + 3) / 24

    return (f(x[:, 0]) + f(x[:, 1])) / 2


def one_run(d, p, n, n_test, seed, dt):
    rng = np.random.default_rng(seed)
    wstar, _ = np.linalg.qr(rng.standard_normal((d, 2)))
    wstar = wstar.T.astype(dt)
    w0 = (rng.standard_normal((p, d)) / np.sqrt(d)).astype(dt)
    a = (rng.standard_normal(p) / np.sqrt(p)).astype(dt)

    # The training batch, whole, and its labels without their mean and linear part.
    z = rng.standard_normal((n, d)).astype(dt)
    y = he124(z @ wstar.T)
    mean = y.mean()
    b = z.T @ y / n
    y_tilde = y - mean - z @ b

    # One giant step.
    h = z @ w0.T
    f = np.maximum(h, 0) @ a / np.sqrt(p)
    e = y_tilde - f
    g = ((e[:, None] * (a / np.sqrt(p))[None, :]) * (h > 0)).T @ z / n
    del h
    eta = 10 * np.sqrt(n * p)
    w = w0 + eta * g

    # Ridge readout on the same batch.
    x = np.maximum(z @ w.T, 0)
    amat = x.T @ x / p + np.eye(p, dtype=dt)
    coef = np.linalg.solve(amat.astype(np.float64), (x.T @ y_tilde / np.sqrt(p)).astype(np.float64))
    del x, z

    # Test, with the mean and linear part estimated on the test set and added back.
    zt = rng.standard_normal((n_test, d)).astype(dt)
    yt = he124(zt @ wstar.T)
    bt = zt.T @ yt / n_test
    pred = np.maximum(zt @ w.T, 0) @ coef.astype(dt) / np.sqrt(p) + yt.mean() + zt @ bt
    return float(np.mean((yt - pred) ** 2))


def main():
    ap = argparse.ArgumentParser(description="the authors' single-step notebook protocol in numpy")
    ap.add_argument("--precision", default="f64", choices=["f64", "f32"])
    ap.add_argument("--small", action="store_true", help="d = 256, p = 512, n_test = 2·10^4")
    ap.add_argument("--seeds", type=int, default=2)
    args = ap.parse_args()
    d, p, n_test = (256, 512, 20_000) if args.small else (512, 1024, 100_000)
    dt = np.float64 if args.precision == "f64" else np.float32
    start = time.perf_counter()
    errors = []
    for kappa in (1.3, 1.65, 2.0):
        n = int(d**kappa * (1 + 1e-12))
        for seed in range(args.seeds):
            errors.append({"kappa": kappa, "n": n, "seed": seed, "test_error": one_run(d, p, n, n_test, seed, dt)})
    wall = time.perf_counter() - start
    print(json.dumps({
        "d": d, "p": p, "n_test": n_test, "precision": args.precision, "seeds": args.seeds,
        "wall_s": wall, "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "runs": errors,
    }))


if __name__ == "__main__":
    main()
