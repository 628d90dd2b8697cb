"""The Python package against the command line and the library's guarantees (pytest)."""

import inspect
import json
import math
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import giantstep

ROOT = pathlib.Path(__file__).resolve().parents[3]
SMALL = {"network": {"d": 32, "p": 16}, "train": {"steps": 2}, "eval": {"n_test": 1000}}


def cli():
    """The giantstep binary: $GIANTSTEP_BIN (set by .ci/run), else a cargo build in target/."""
    path = os.environ.get("GIANTSTEP_BIN")
    if path:
        return path
    for profile in ("release", "debug"):
        p = ROOT / "target" / profile / "giantstep"
        if p.exists():
            return str(p)
    pytest.skip("no giantstep binary: set GIANTSTEP_BIN or run cargo build")


def without_time(d):
    d = dict(d)
    d.pop("elapsed_s", None)
    return d


def test_config_forms_resolve_alike(tmp_path):
    nested = giantstep.resolve(SMALL)
    dotted = giantstep.resolve({"network.d": 32, "network.p": 16, "train.steps": 2, "eval.n_test": 1000})
    text = "[network]\nd = 32\np = 16\n[train]\nsteps = 2\n[eval]\nn_test = 1000\n"
    from_text = giantstep.resolve(text)
    path = tmp_path / "c.toml"
    path.write_text(text)
    from_path = giantstep.resolve(path)
    from_str_path = giantstep.resolve(str(path))
    overrides = giantstep.resolve(None, network={"d": 32, "p": 16}, **{"train.steps": 2, "eval.n_test": 1000})
    for other in (dotted, from_text, from_path, from_str_path, overrides):
        assert other == nested
    assert nested["target"]["expr"] == "z1 + z1*z2" and nested["train"]["n"] == "4d"
    # Overrides win over the config; numpy scalars are accepted.
    assert giantstep.resolve(SMALL, **{"network.d": np.int64(40)})["network"]["d"] == 40
    # The result carries the same resolved configuration (threads aside).
    r = giantstep.run(SMALL, threads=1)
    assert r.config == giantstep.resolve(SMALL, threads=1)


def test_identical_to_the_cli():
    config = {"network.d": 48, "network.p": 24, "train.steps": 3, "train.n": "d^1.5", "eval.n_test": 3000,
              "eval.every_step": True, "precision": "f32", "seed": 7, "train.eta_schedule": [1.0, 0.5]}
    sets = [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in config.items()]
    out = subprocess.run([cli(), "run", "--json", "-q"] + sum((["--set", s] for s in sets), []),
                         check=True, capture_output=True, text=True).stdout
    want = json.loads(out)
    got = giantstep.run(config)
    assert without_time(got.to_dict()) == without_time(want)
    assert got.test_error == want["test_error"]  # bit for bit
    th = subprocess.run([cli(), "theory", "stairway-he124", "--steps", "2", "--json"],
                        check=True, capture_output=True, text=True).stdout
    assert giantstep.theory("stairway-he124", steps=2) == json.loads(th)


def test_weights_shapes_and_dtypes():
    r = giantstep.run(SMALL, return_weights=True)
    shapes = {"W0": (16, 32), "W": (16, 32), "a": (16,), "W_star": (2, 32), "readout": (16,), "rf_readout": (16,)}
    for name, shape in shapes.items():
        arr = getattr(r, name)
        assert isinstance(arr, np.ndarray) and arr.dtype == np.float64 and arr.shape == shape, name
    assert np.allclose(r.W_star @ r.W_star.T, np.eye(2), atol=1e-12)
    assert not np.array_equal(r.W0, r.W)
    with pytest.raises(AttributeError, match="return_weights=True"):
        giantstep.run(SMALL).W
    assert isinstance(r.steps, list) and len(r.steps) == 2 and "mean_abs_cos" in r.steps[0]
    assert r.rf_test_error > r.test_error and isinstance(r.theory, dict)


def test_given_arrays_reproduce_a_run():
    first = giantstep.run(SMALL, return_weights=True)
    again = giantstep.run(SMALL, W0=first.W0, a=first.a, W_star=first.W_star)
    assert without_time(again.to_dict()) == without_time(first.to_dict())
    # Arrays from elsewhere (a list, float32) are taken too; another W0 changes the result.
    other = giantstep.run(SMALL, W0=(-first.W0).astype(np.float32).tolist())
    assert other.test_error != first.test_error


def test_python_target_equals_the_expression():
    want = giantstep.run(SMALL, threads=2)
    calls = []

    def staircase(x):
        calls.append(x.shape)
        assert x.dtype == np.float64 and x.ndim == 2 and x.shape[1] == 2
        return x[:, 0] + x[:, 0] * x[:, 1]

    got = giantstep.run(SMALL, target=staircase, threads=2, **{"target.r": 2})
    assert got.test_error == want.test_error and got.rf_test_error == want.rf_test_error
    assert got.steps == want.steps
    assert got.config["target"]["expr"] == "<python: test_python_target_equals_the_expression.<locals>.staircase>"
    assert got.theory is None and "given at run time" in got.theory_note
    assert calls and all(m <= 4096 for m, _ in calls)


def test_errors_name_the_key():
    cases = [
        ({"network.d": [1, 2]}, TypeError, "network.d"),
        ({"train.stepz": 1}, ValueError, "unknown configuration key 'train.stepz'"),
        ({"network.p": 5}, ValueError, "network.p must be even"),
        ({"target.expr": "z1 +* z2"}, ValueError, "target expression 'z1 +* z2'"),
        ({"network.activation": "sigmoid"}, ValueError, "activation"),
        ({"train.n": None}, ValueError, "train.n must be a value"),
        ({"network.d": object()}, TypeError, "network.d must be a number"),
    ]
    for overrides, kind, text in cases:
        with pytest.raises(kind, match=text.replace("(", r"\(").replace("*", r"\*").replace("+", r"\+")):
            giantstep.run(SMALL, **overrides)
    # The exception's class and key come from the error's kind, not from its text.
    typed = [
        ({"network.d": [1, 2]}, giantstep.ConfigTypeError, "network.d"),
        ({"train.stepz": 1}, giantstep.ConfigError, "train.stepz"),
        ({"network.p": 5}, giantstep.ConfigError, "network.p"),
        ({"train.steps": 0}, giantstep.ConfigError, "train.steps"),
    ]
    for overrides, kind, key in typed:
        with pytest.raises(kind) as info:
            giantstep.run(SMALL, **overrides)
        assert info.value.key == key, (overrides, info.value.key)
    with pytest.raises(giantstep.ConfigError) as info:
        giantstep.theory("z1", kappa=100)
    assert info.value.key == "kappa"
    with pytest.raises(ValueError, match=r"W0 must have shape \(16, 32\), but has shape \(3, 3\)"):
        giantstep.run(SMALL, W0=np.zeros((3, 3)))
    bad = np.zeros(16)
    bad[3] = np.nan
    with pytest.raises(ValueError, match="a must be finite"):
        giantstep.run(SMALL, a=bad)
    with pytest.raises(ValueError, match="orthonormal rows"):
        giantstep.run(SMALL, W_star=np.ones((2, 32)))
    with pytest.raises(TypeError, match="W0 must be an array of numbers"):
        giantstep.run(SMALL, W0=[["x"]])
    with pytest.raises(TypeError, match="target must be callable"):
        giantstep.run(SMALL, target=3)
    with pytest.raises(ValueError, match="malformed TOML in the TOML string at line 1"):
        giantstep.run("[network\nd = 3")
    with pytest.raises(ValueError, match="kappa must be in"):
        giantstep.theory("z1", kappa=100)
    with pytest.raises(ValueError, match="unknown function"):
        giantstep.theory("foo(z1)")

    def broken(x):
        return 1 / 0

    with pytest.raises(ZeroDivisionError):  # the target's own exception, unchanged
        giantstep.run(SMALL, target=broken, **{"target.r": 1})
    with pytest.raises(ValueError, match="one label per row"):
        giantstep.run(SMALL, target=lambda x: x[:3, 0], **{"target.r": 1})


# A run of a few seconds here: d = 256, p = 512, n = d^2, 3 steps.
LONG = {"network": {"d": 256, "p": 512}, "train": {"n": "d^2", "steps": 3}, "eval": {"n_test": 100000}}


def test_keyboard_interrupt_stops_a_long_run():
    # Ctrl-C arrives when step 2 starts (from the run's own progress events, not a timer); the
    # run stops within that step: step 2 never finishes and no readout is fitted.
    events = []

    def progress(kind, t, of):
        events.append((kind, t))
        if (kind, t) == ("step", 2):
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        giantstep.run(LONG, progress=progress)
    assert ("step", 2) in events and ("step_done", 1) in events, events
    assert ("step_done", 2) not in events and ("readout", 0) not in events, events
    # The package still works afterwards.
    assert giantstep.run(SMALL).test_error > 0


def test_gil_is_released_during_a_run():
    # A Python thread counts while the engine computes: between the start of step 2 and the
    # readout (two progress events) it must have run, which it cannot while the GIL is held.
    count = [0]
    stop = threading.Event()
    seen = {}

    def spin():
        while not stop.is_set():
            count[0] += 1

    def progress(kind, t, of):
        seen.setdefault((kind, t), count[0])

    t = threading.Thread(target=spin)
    t.start()
    try:
        giantstep.run(LONG, progress=progress)
    finally:
        stop.set()
        t.join()
    during = seen[("readout", 0)] - seen[("step", 2)]
    assert during > 10_000, seen


def test_sweep_records_and_frame(tmp_path):
    plan = tmp_path / "plan.toml"
    plan.write_text(
        'name = "tiny"\n'
        "[base]\nnetwork = { d = 16, p = 8 }\neval = { n_test = 300 }\n"
        '[axes]\n"train.steps" = [1, 2]\nseed = "0..2"\n'
    )
    out = tmp_path / "records.jsonl"
    summary = giantstep.sweep(plan, out, jobs=2)
    assert summary == {"points": 4, "skipped": 0, "ran": 4, "failed": 0}
    assert giantstep.sweep(plan, out)["skipped"] == 4  # resumes
    records = giantstep.load_records(out)
    assert sorted(r["index"] for r in records) == [0, 1, 2, 3]
    # A record equals the run of its configuration.
    rec = next(r for r in records if r["index"] == 3)
    again = giantstep.run(rec["config"]).to_dict()
    again["config"]["threads"] = 0  # records do not keep the thread count
    assert without_time(again) == without_time(rec["result"])
    pd = pytest.importorskip("pandas")
    frame = giantstep.records_frame(out)
    assert isinstance(frame, pd.DataFrame)
    assert len(frame) == 1 + 2 + 1 + 2  # one row per (point, step)
    assert set(frame["t"]) == {1, 2} and math.isclose(frame["kappa"].iloc[0], math.log(64) / math.log(16))


def test_progress_without_tqdm_is_harmless(monkeypatch):
    # tqdm made unimportable (a None entry in sys.modules makes `import` raise ImportError).
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    with pytest.raises(ImportError):
        import tqdm.auto  # noqa: F401
    assert giantstep.run(SMALL, progress=True).test_error > 0


def test_theory_defaults_are_the_librarys_and_the_clis():
    """The keywords' defaults come from the library, as the CLI's flags do: same question, same report."""
    defaults = giantstep.theory_defaults()
    params = inspect.signature(giantstep.theory).parameters
    assert set(defaults) <= set(params)
    assert all(params[k].default == v for k, v in defaults.items())
    want = json.loads(subprocess.run([cli(), "theory", "z1 + z1*z2", "--json"], check=True,
                                     capture_output=True, text=True).stdout)
    assert giantstep.theory("z1 + z1*z2") == want


def test_theory_curve_equals_the_cli():
    """`theory(curve=True)` returns the CLI's `theory --curve --json` as arrays, NaN below kappa = 1."""
    args = ["stairway-he124", "--curve", "--steps", "2", "--d", "64", "--p", "32", "--eta-max0", "5",
            "--kappa-from", "0.5", "--kappa-to", "1.5", "--kappa-step", "0.5", "--json"]
    want = json.loads(subprocess.run([cli(), "theory", *args], check=True, capture_output=True, text=True).stdout)
    got = giantstep.theory("stairway-he124", curve=True, steps=2, d=64, p=32, eta_max0=5.0,
                           kappa_from=0.5, kappa_to=1.5, kappa_step=0.5)
    c = want["curve"]
    assert got["kappa"].tolist() == c["kappa"] and got["n"].tolist() == c["n"]
    assert got["test_error"].shape == (2, 3) and got["mean_abs_cos"].shape == (2, 3, 2)
    assert np.isnan(got["test_error"][:, 0]).all() and np.isnan(got["rf_test_error"][0])
    for t in range(2):
        assert got["test_error"][t, 1:].tolist() == c["test_error"][t][1:]
    assert got["rf_test_error"][1:].tolist() == c["rf_test_error"][1:]
    with pytest.raises(ValueError, match="kappa_step"):
        giantstep.theory("z1", curve=True, kappa_step=0.0)
    assert got["form"] == "finite-p"


def test_theory_curve_mean_field_equals_the_cli():
    """`theory(curve=True, form="mean-field")` is the CLI's `--form mean-field`, bit for bit."""
    args = ["stairway-he124", "--curve", "--steps", "2", "--d", "64", "--p", "32", "--eta-max0", "5",
            "--kappa-from", "1.5", "--kappa-to", "1.5", "--form", "mean-field", "--particles", "128", "--json"]
    want = json.loads(subprocess.run([cli(), "theory", *args], check=True, capture_output=True, text=True).stdout)
    got = giantstep.theory("stairway-he124", curve=True, steps=2, d=64, p=32, eta_max0=5.0,
                           kappa_from=1.5, kappa_to=1.5, form="mean-field", particles=128)
    assert got["form"] == "mean-field"
    assert got["test_error"][:, 0].tolist() == [row[0] for row in want["curve"]["test_error"]]
    with pytest.raises(ValueError, match="form"):
        giantstep.theory("z1", curve=True, form="mean_field")


def test_curve_frame_is_tidy():
    """`curve_frame` has one row per (batch size, step) with the arrays' values, NaN below kappa 1."""
    pd = pytest.importorskip("pandas")
    c = giantstep.theory("stairway-he124", curve=True, steps=2, d=64, p=32, eta_max0=5.0,
                         kappa_from=0.5, kappa_to=1.5, kappa_step=0.5)
    f = giantstep.curve_frame(c)
    assert isinstance(f, pd.DataFrame) and len(f) == 3 * 2
    assert list(f.columns[:5]) == ["kappa", "n", "t", "predicted_test_error", "predicted_rf_test_error"]
    row = f[(f.kappa == 1.5) & (f.t == 2)].iloc[0]
    assert row.predicted_test_error == c["test_error"][1, 2] and row.mean_abs_cos_2 == c["mean_abs_cos"][1, 2, 1]
    assert row.n == c["n"][2] and row.d == 64 and row.p == 32 and row.form == "finite-p"
    assert f[f.kappa == 0.5].predicted_test_error.isna().all()


def test_theory_and_run_name_the_parameter_of_a_wrong_value():
    """Wrong types name the parameter in plain words; NaN names its key (issue 21, item 6)."""
    for kwargs, text in [({"kappa": "2"}, "kappa must be a number"), ({"steps": 3.0}, "steps must be an integer"),
                         ({"normalize": 1}, "normalize must be a bool"), ({"r": 1.5}, "r must be an integer"),
                         ({"eta_schedule": ["a"]}, "eta_schedule must be a list of numbers")]:
        with pytest.raises(giantstep.ConfigTypeError, match=text) as info:
            giantstep.theory("z1", **kwargs)
        assert info.value.key == next(iter(kwargs))
    with pytest.raises(giantstep.ConfigError, match="train.eta0 must be a finite number") as info:
        giantstep.run(SMALL, **{"train.eta0": float("nan")})
    assert info.value.key == "train.eta0"
    with pytest.raises(ValueError, match="target must be a preset"):
        giantstep.theory("no-such-preset")


def test_continued_run_equals_the_uninterrupted_one():
    """run(steps=2) equals run(steps=1) continued by one step, bit for bit (f64), every step's
    state included; M_t and Q_t are the products of the layers W_t."""
    config = {**SMALL, "train": {"steps": 2, "eta_schedule": [1.0, 0.5]}, "eval": {"n_test": 1000, "every_step": True}}
    full = giantstep.run(config, return_weights=True, keep_every_step=True)
    first = giantstep.run(config, return_weights=True, **{"train.steps": 1})
    cont = giantstep.run(resume_from=first, return_weights=True, keep_every_step=True, **{"train.steps": 2})
    assert without_time(cont.to_dict()) == without_time(full.to_dict())
    assert np.array_equal(cont.W, full.W) and np.array_equal(cont.readout, full.readout)
    assert full.state_t.tolist() == [1, 2] and cont.state_t.tolist() == [2]
    assert np.array_equal(cont.W_t[0], full.W_t[1]) and np.array_equal(full.W_t[-1], full.W)
    assert full.M_t.shape == (2, 16, 2) and full.Q_t.shape == (2, 16, 16)
    for t in range(2):
        assert np.allclose(full.M_t[t], full.W_t[t] @ full.W_star.T, atol=1e-12)
        assert np.allclose(full.Q_t[t], full.W_t[t] @ full.W_t[t].T, atol=1e-12)
    with pytest.raises(AttributeError, match="keep_every_step=True"):
        first.W_t
    with pytest.raises(ValueError, match="return_weights=True"):
        giantstep.run(resume_from=giantstep.run(SMALL))
    with pytest.raises(giantstep.ConfigError, match="train.steps"):
        giantstep.run(resume_from=full, return_weights=True)  # nothing left to train


def test_warnings_are_python_warnings():
    """The CLI's warnings are GiantstepWarnings: the unstable later steps (also for a target
    function, whose stability is checked from its values), and theory notes."""
    unstable = {"network": {"d": 32, "p": 16}, "target": {"preset": "stairway-he124"},
                "train": {"steps": 2, "eta": 11.3 * 16, "n": "d^1.5"}, "eval": {"n_test": 500}}
    with pytest.warns(giantstep.GiantstepWarning, match="unstable at gamma = 11.300"):
        giantstep.run(unstable)

    def he124(x):
        return x[:, 0] + (x[:, 1] ** 2 - 1) / np.sqrt(2) + (x[:, 2] ** 4 - 6 * x[:, 2] ** 2 + 3) / np.sqrt(24)

    fn = {**unstable, "target": {"r": 3}}
    with pytest.warns(giantstep.GiantstepWarning, match="unstable at gamma = 11.300"):
        r = giantstep.run(fn, target=he124)
    assert r.theory is None and any("unstable" in w for w in r.warnings)
    stable = {**fn, "train": {**fn["train"], "eta": 5.0 * 16}}
    with warnings_recorded() as seen:
        giantstep.run(stable, target=he124)
    assert not [w for w in seen if "unstable" in str(w.message)]
    with pytest.warns(giantstep.GiantstepWarning):
        giantstep.theory("stairway-he124", gamma=11.3, steps=2)


class warnings_recorded:
    def __enter__(self):
        import warnings

        self.cm = warnings.catch_warnings(record=True)
        seen = self.cm.__enter__()
        warnings.simplefilter("always")
        return seen

    def __exit__(self, *exc):
        return self.cm.__exit__(*exc)


def interrupt_after(seconds):
    """Sends SIGINT to this process after `seconds`; returns the time it was sent (a list)."""
    sent = []

    def fire():
        sent.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Timer(seconds, fire)
    timer.start()
    return timer, sent


def test_interrupt_lands_during_the_theory():
    """Ctrl-C during theory() and during a run's attached theory raises within a second (the
    recursions check the cancel flag between blocks of points); uninterrupted these take ~15 s."""
    for call in (
        lambda: giantstep.theory("tanh(z1*z2*z3)", activation="tanh", steps=30, kappa=1.0),
        lambda: giantstep.run({"network": {"d": 32, "p": 8, "activation": "tanh"}, "target": {"expr": "tanh(z1*z2*z3)"},
                               "train": {"steps": 16}, "eval": {"n_test": 200}}),
    ):
        timer, sent = interrupt_after(2.0)
        with pytest.raises(KeyboardInterrupt):
            try:
                call()
            finally:
                timer.cancel()
        assert sent and time.monotonic() - sent[0] < 1.0, time.monotonic() - sent[0]


def test_many_steps_skip_the_attached_theory():
    """Past 16 steps a run does not attach the theory (it would dominate the run) and says why."""
    r = giantstep.run({"network": {"d": 32, "p": 8, "activation": "tanh"}, "target": {"expr": "tanh(z1*z2*z3)"},
                       "train": {"steps": 40, "n": "d", "normalize": "spherical"}, "eval": {"n_test": 200}})
    assert r.theory is None and "up to 16 steps" in r.theory_note


def test_sweeps_grids_and_frames(tmp_path):
    """sweep() takes a dict and a target function; grid() runs a product in-process; frames are
    tidy: one row per step, the step's own test error, one column per direction."""
    pd = pytest.importorskip("pandas")
    base = {"network": {"d": 32, "p": 16}, "eval": {"n_test": 500, "every_step": True}, "train": {"steps": 2}}
    plan = {"name": "dict-plan", "base": base, "axes": {"seed": range(2)}}
    assert giantstep.sweep(plan, tmp_path / "a.jsonl") == {"points": 2, "skipped": 0, "ran": 2, "failed": 0}
    frame = giantstep.records_frame(tmp_path / "a.jsonl")
    rs = giantstep.grid(base, seed=range(2), jobs=2)
    mine = giantstep.results_frame(rs)
    assert len(frame) == len(mine) == 4
    cols = ["seed", "t", "test_error", "mean_abs_cos_1", "mean_abs_cos_2", "rf_test_error"]
    assert frame[cols].equals(mine[cols])  # a grid point is the sweep's point, bit for bit
    assert mine["test_error"].notna().all() and mine["test_error"].iloc[0] == rs[0].steps[0]["test_error"]
    assert mine.dtypes["mean_abs_cos_1"] == np.float64 and not (mine.dtypes == object).drop(["target", "activation"]).any()
    one = rs[0].to_frame()
    assert len(one) == 2 and one["t"].tolist() == [1, 2]
    # Without every_step only the last step has a test error.
    last = giantstep.run({**base, "eval": {"n_test": 500}}).to_frame()
    assert np.isnan(last["test_error"].iloc[0]) and last["test_error"].iloc[1] > 0

    def product(x):
        return x[:, 0] * x[:, 1]

    fn_plan = {"base": {**base, "target": {"r": 2}}, "axes": {"seed": [0]}}
    assert giantstep.sweep(fn_plan, tmp_path / "b.jsonl", target=product)["ran"] == 1
    fr = giantstep.records_frame(tmp_path / "b.jsonl")
    assert fr["target"].iloc[0].startswith("<python: ") and "product" in fr["target"].iloc[0]
    want = giantstep.run({**base, "target": {"expr": "z1*z2"}})
    assert fr["test_error"].iloc[-1] == want.test_error
    with pytest.raises(ValueError, match="not both"):
        giantstep.sweep({"base": {"target": {"expr": "z1"}}, "axes": {"seed": [0]}}, tmp_path / "c.jsonl",
                        target=product)
    # A TOML plan takes a target function too (no TOML parsing in Python: 3.9 has no tomllib).
    toml_plan = "[base]\nnetwork = { d = 32, p = 16 }\ntarget = { r = 2 }\ntrain = { steps = 2 }\n" \
                "eval = { n_test = 500, every_step = true }\n[axes]\nseed = [0]\n"
    assert giantstep.sweep(toml_plan, tmp_path / "d.jsonl", target=product)["ran"] == 1
    again = giantstep.records_frame(tmp_path / "d.jsonl")
    assert again["test_error"].iloc[-1] == want.test_error


def test_messages_and_discoverability():
    """Misspelled keywords are suggested from parameters and config keys; a NaN from a target
    function names its row; the module lists only its API; results render as HTML."""
    with pytest.raises(giantstep.ConfigError, match="did you mean 'return_weights'"):
        giantstep.run(SMALL, retrun_weights=True)
    with pytest.raises(giantstep.ConfigError, match="did you mean 'train.steps'"):
        giantstep.run(SMALL, **{"trian.steps": 2})
    with pytest.raises(ValueError, match=r"returned NaN at row \d+ \(x = \["):
        giantstep.run(SMALL, target=lambda x: np.where(x[:, 0] > 0.5, np.nan, x[:, 0]))
    assert dir(giantstep) == sorted(giantstep.__all__)
    html = giantstep.run(SMALL)._repr_html_()
    assert html.count("<tr>") == 3 and "test error" in html


def test_progress_without_tqdm_warns_once(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    monkeypatch.setattr(giantstep._Bar, "_warned", False)
    with warnings_recorded() as seen:
        giantstep.run(SMALL, progress=True)
        giantstep.run(SMALL, progress=True)
    assert len([w for w in seen if "needs tqdm" in str(w.message)]) == 1


def test_activation_as_a_pair_of_functions():
    """(σ, σ') as Python callables, called per chunk: numpy's tanh reproduces the built-in tanh
    to rounding; the theory is skipped with a note; wrong shapes and non-finite values are named."""
    config = {**SMALL, "network": {"d": 32, "p": 16, "activation": "tanh"}}
    want = giantstep.run(config)
    got = giantstep.run(config, activation=(np.tanh, lambda h: 1 - np.tanh(h) ** 2))
    assert abs(got.test_error - want.test_error) < 1e-12 and got.test_error != 0
    assert got.theory is None and "<python: tanh>" in got.theory_note
    assert giantstep.run(SMALL, activation="tanh").test_error == want.test_error  # a name is the config key
    with pytest.raises(ValueError, match=r"must return an array of the pre-activations' shape \(\d+, 16\)"):
        giantstep.run(SMALL, activation=(lambda h: h[:, :1], lambda h: h))
    with pytest.raises(RuntimeError, match="non-finite value"):
        giantstep.run(SMALL, activation=(np.log, lambda h: 1 / h))
    with pytest.raises(ZeroDivisionError):
        giantstep.run(SMALL, activation=(lambda h: 1 / 0, lambda h: h))
    with pytest.raises(TypeError, match="pair of functions"):
        giantstep.run(SMALL, activation=(np.tanh,))
