#!/usr/bin/env python3
"""The giant-step protocol written the way a researcher writes it in numpy (dense batches).

Same workload as `giantstep bench`: target z1 + z1*z2 with a random orthonormal teacher, ReLU,
symmetric init with hypercube second layer, one step with n = d^2 fresh samples and
eta = p * sqrt(n/d), ridge readout (lambda = 1) on a fresh batch of n samples for the trained and
the initial first layer, test error on 10^4 samples. Prints one JSON object with wall time and peak
RSS. Needs numpy (`pip install numpy`).

    python3 bench/numpy_reference.py [--small] [--precision f32]
"""
import argparse
import json
import resource
import time

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", action="store_true", help="d = 256, p = 512 instead of 512, 1024")
    ap.add_argument("--precision", default="f64", choices=["f64", "f32"])
    args = ap.parse_args()
    d, p = (256, 512) if args.small else (512, 1024)
    n, n_test, lam = d * d, 10_000, 1.0
    dt = np.float64 if args.precision == "f64" else np.float32
    rng = np.random.default_rng(0)
    start = time.perf_counter()

    wstar, _ = np.linalg.qr(rng.standard_normal((d, 2)))
    wstar = wstar.T.astype(dt)  # 2 x d, orthonormal rows

    def target(z):
        x = z @ wstar.T
        return x[:, 0] + x[:, 0] * x[:, 1]

    half = rng.standard_normal((p // 2, d)).astype(dt) / np.sqrt(d)
    w0 = np.vstack([half, half])
    s = rng.choice([-1.0, 1.0], size=p // 2)
    a = (np.concatenate([s, -s]) / np.sqrt(p)).astype(dt)

    # One giant step on a fresh batch (the whole batch in memory).
    z = rng.standard_normal((n, d)).astype(dt)
    y = target(z)
    h = z @ w0.T
    f = np.maximum(h, 0) @ a / np.sqrt(p)
    e = y - f
    m = (e[:, None] * (a / np.sqrt(p))[None, :]) * (h > 0)
    g = m.T @ z / n
    del h, m
    eta = p * np.sqrt(n / d)
    w = w0 + eta * g

    # Ridge readout on a fresh batch, trained and initial layers.
    zr = rng.standard_normal((n, d)).astype(dt)
    yr = target(zr)
    zt = rng.standard_normal((n_test, d)).astype(dt)
    yt = target(zt)
    errors = {}
    for name, layer in (("trained", w), ("random_features", w0)):
        x = np.maximum(zr @ layer.T, 0)
        amat = x.T @ x / p + lam * np.eye(p, dtype=dt)
        coef = np.linalg.solve(amat.astype(np.float64), (x.T @ yr / np.sqrt(p)).astype(np.float64))
        del x
        pred = np.maximum(zt @ layer.T, 0) @ coef / np.sqrt(p)
        errors[name] = float(np.mean((yt - pred) ** 2))

    wall = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({
        "d": d, "p": p, "n": n, "precision": args.precision, "wall_s": wall, "peak_rss_bytes": rss,
        "test_error": errors["trained"], "rf_test_error": errors["random_features"],
    }))


if __name__ == "__main__":
    main()
