"""giantstep: feature learning in two-layer networks after a few giant gradient steps.

Simulation and theory after Dandi, Krzakala, Loureiro, Pesce, Stephan, *How Two-Layer Neural
Networks Learn, One (Giant) Step at a Time* (arXiv 2305.18270), on giantstep's Rust engine. The
model and notation are in the repository's ``docs/model.md``, the theory in ``docs/theory.md``.

>>> import giantstep
>>> r = giantstep.run({"network": {"d": 64, "p": 32}}, **{"train.steps": 2, "eval.n_test": 2000})
>>> r.test_error < r.rf_test_error
True

Every call takes the configuration of ``giantstep run`` (the same keys and defaults, the same
numbers bit for bit): a dict (nested like the TOML file, or with dotted keys), a TOML string,
or a path to a TOML file, plus keyword overrides with dotted keys.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import _core

__all__ = [
    "ConfigError",
    "ConfigTypeError",
    "RunResult",
    "run",
    "resolve",
    "theory",
    "theory_defaults",
    "sweep",
    "load_records",
    "records_frame",
    "__version__",
]

__version__: str = _core.version()

#: An invalid configuration value or an unknown key (a ``ValueError``); ``.key`` names the key.
ConfigError = _core.ConfigError
#: A configuration value of the wrong type (a ``TypeError``); ``.key`` names the key.
ConfigTypeError = _core.ConfigTypeError

_MAX_TEXT_FILE = 16 << 20

ConfigLike = Union[None, str, "os.PathLike[str]", Mapping[str, Any]]


def _plain(value: Any, key: str) -> Any:
    """A JSON-ready copy of ``value`` (numpy scalars and arrays become Python numbers and lists)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v, key) for v in value]
    if isinstance(value, Mapping):
        raise TypeError(f"{key} must be a value, but is a mapping")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"{key} must be a number, a string, a bool or a list, but is {type(value).__name__}")


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> List[Tuple[str, Any]]:
    """Dotted (key, value) pairs of a nested or dotted mapping."""
    out: List[Tuple[str, Any]] = []
    for key, value in mapping.items():
        if not isinstance(key, str):
            raise TypeError(f"configuration keys must be strings, but {key!r} is {type(key).__name__}")
        full = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.extend(_flatten(value, full + "."))
        else:
            out.append((full, _plain(value, full)))
    return out


def _config_args(config: ConfigLike, overrides: Mapping[str, Any]) -> Tuple[str, str, List[Tuple[str, str]]]:
    """(TOML text, its name for messages, dotted overrides as JSON texts) for ``_core``."""
    text, source, pairs = "", "config", []
    if config is None:
        pass
    elif isinstance(config, Mapping):
        pairs.extend(_flatten(config))
    elif isinstance(config, os.PathLike) or (
        isinstance(config, str) and "\n" not in config and "=" not in config and config.endswith(".toml")
    ):
        path = os.fspath(config)
        with open(path, encoding="utf-8") as f:
            # At most 16 MiB, as the command line reads (a /dev/zero given by mistake ends here).
            text, source = f.read(_MAX_TEXT_FILE + 1), path
        if len(text) > _MAX_TEXT_FILE:
            raise ValueError(f"{path}: larger than 16 MiB: not a configuration file")
    elif isinstance(config, str):
        text, source = config, "the TOML string"
    else:
        raise TypeError(
            "config must be None, a dict, a TOML string or a path, but is " + type(config).__name__
        )
    pairs.extend(_flatten(overrides))
    return text, source, [(k, json.dumps(v)) for k, v in pairs]


def resolve(config: ConfigLike = None, /, **overrides: Any) -> Dict[str, Any]:
    """The configuration with every default made explicit, as ``giantstep run`` records it.

    Raises ``ValueError`` (an invalid value or unknown key) or ``TypeError`` (a value of the
    wrong type) with the command line's one-line message naming the key.
    """
    return json.loads(_core.resolve_config(*_config_args(config, overrides)))


class RunResult:
    """The result of :func:`run`: the fields of ``giantstep run --json`` as attributes.

    Attributes
    ----------
    test_error, train_error : float
        Test and train error of the trained network with its ridge readout.
    rf_test_error, rf_train_error : float or None
        The same readout on the initial layer (random features); None with ``eval.baseline = false``.
    steps : list of dict
        One record per giant step (``t``, ``n``, ``eta``, ``batch_mse``, ``mean_abs_cos`` and the
        other overlaps, the gradient geometry, ``test_error`` with ``eval.every_step``).
    theory : dict or None
        The theory's predictions next to the measurements (``theory_note`` says why absent).
    config : dict
        The resolved configuration.
    W0, W, a, W_star, readout, rf_readout : numpy.ndarray
        Only with ``return_weights=True``: first layer at initialization and after training
        (p × d), second layer (p), teacher (r × d), ridge readouts (p).
    """

    _WEIGHTS = ("W0", "W", "a", "W_star", "readout", "rf_readout")

    def __init__(self, data: Dict[str, Any], weights: Optional[Dict[str, Any]] = None) -> None:
        self._data = data
        self._weights = weights

    def __getattr__(self, name: str) -> Any:
        data = self.__dict__.get("_data", {})
        if name in data:
            return data[name]
        if name in RunResult._WEIGHTS:
            weights = self.__dict__.get("_weights")
            if weights is None:
                raise AttributeError(f"{name}: the weights are returned with run(..., return_weights=True)")
            return weights[name]
        raise AttributeError(name)

    def __dir__(self) -> List[str]:
        extra = list(RunResult._WEIGHTS) if self._weights is not None else []
        return sorted(set(super().__dir__()) | set(self._data) | set(extra))

    def to_dict(self) -> Dict[str, Any]:
        """The result as the JSON object of ``giantstep run --json`` (without the weights)."""
        return json.loads(json.dumps(self._data))

    def __repr__(self) -> str:
        rf = self._data.get("rf_test_error")
        c = self._data["config"]
        return (
            f"RunResult(d={c['network']['d']}, p={c['network']['p']}, T={len(self._data['steps'])}, "
            f"test_error={self._data['test_error']:.4g}, rf_test_error={'None' if rf is None else f'{rf:.4g}'})"
        )


class _Bar:
    """A tqdm bar over the steps, the readout and the test (when tqdm is installed)."""

    def __init__(self, steps: int) -> None:
        try:
            from tqdm.auto import tqdm
        except ImportError:  # progress is optional
            self.bar = None
            return
        self.bar = tqdm(total=steps + 2, desc="giantstep", unit="phase")

    def __call__(self, kind: str, t: int, of: int) -> None:
        if self.bar is None:
            return
        if kind in ("step_done", "readout", "test"):
            self.bar.update(1)
        self.bar.set_postfix_str(f"step {t}/{of}" if kind == "step" else kind)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.update(self.bar.total - self.bar.n)
            self.bar.close()


def _float_array(name: str, value: Any) -> Optional[np.ndarray]:
    if value is None:
        return None
    try:
        return np.ascontiguousarray(value, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be an array of numbers: {e}") from None


def run(
    config: ConfigLike = None,
    /,
    *,
    W0: Any = None,
    a: Any = None,
    W_star: Any = None,
    target: Optional[Callable[[np.ndarray], Any]] = None,
    return_weights: bool = False,
    progress: Union[bool, Callable[[str, int, int], Any]] = False,
    **overrides: Any,
) -> RunResult:
    """One simulation: ``T`` giant steps, the ridge readout, the test errors (``giantstep run``).

    Parameters
    ----------
    config
        A dict (nested like the TOML or with dotted keys), a TOML string, or a path.
    W0, a, W_star
        Start from these arrays instead of drawing them: first layer (p × d), second layer (p),
        teacher (r × d, orthonormal rows). Checked for shape and finiteness.
    target
        A function of the teacher coordinates ``x = W* z`` (an array chunk × r, float64)
        returning one label per row; used instead of ``target.expr`` (give ``target.r``, default
        1). It is
        called once per chunk of ``chunk`` samples from the engine's threads, holding the GIL
        only for that call, so its cost adds to every pass (numpy at chunk = 4096 costs about a
        GEMM of the step); the theory is skipped. Its exceptions propagate unchanged.
    return_weights
        Attach the arrays ``W0``, ``W``, ``a``, ``W_star``, ``readout``, ``rf_readout``.
    progress
        ``True``: show a tqdm bar (when tqdm is installed). A callable: called as
        ``progress(kind, t, of)`` from the engine's thread with ``kind`` one of ``"step"`` (step
        ``t`` of ``of`` starts), ``"step_done"`` (step ``t`` finished), ``"readout"``, ``"test"``.
    **overrides
        Dotted keys, e.g. ``**{"train.steps": 2}``, or sections as dicts, e.g. ``network={"d": 64}``.

    The GIL is released while the engine runs; Ctrl-C raises ``KeyboardInterrupt`` within about a
    chunk's time.
    """
    text, source, pairs = _config_args(config, overrides)
    if target is not None:
        given = [k for k, _ in pairs if k in ("target.expr", "target.preset")]
        if given:
            raise ValueError(f"give target= or {given[0]}, not both")
        # The function replaces the expression; r comes from target.r (default 1).
        pairs.append(("target.expr", json.dumps("0")))
        overrides = {**overrides, "target.expr": "0"}
    if callable(progress):
        bar, callback = None, progress
    else:
        bar = _Bar(int(resolve(config, **overrides)["train"]["steps"])) if progress else None
        callback = bar
    name = getattr(target, "__qualname__", None) or getattr(target, "__name__", None) or "target"
    if target is not None and not callable(target):
        raise TypeError(f"target must be callable (a function of the coordinates), but is {type(target).__name__}")
    try:
        data, weights = _core.run(
            text,
            source,
            pairs,
            w0=_float_array("W0", W0),
            a=_float_array("a", a),
            w_star=_float_array("W_star", W_star),
            target=target,
            target_name=name,
            keep_weights=return_weights,
            progress=callback,
        )
    finally:
        if bar is not None:
            bar.close()
    return RunResult(json.loads(data), weights)


def theory(
    expr: str,
    *,
    activation: str = None,  # type: ignore[assignment]
    steps: int = None,  # type: ignore[assignment]
    kappa: float = None,  # type: ignore[assignment]
    alpha: float = None,  # type: ignore[assignment]
    eta0: float = None,  # type: ignore[assignment]
    eta_exp: float = None,  # type: ignore[assignment]
    gamma: Optional[float] = None,
    beta: float = None,  # type: ignore[assignment]
    d: int = None,  # type: ignore[assignment]
    p: int = None,  # type: ignore[assignment]
    preprocess: str = None,  # type: ignore[assignment]
    normalize: bool = None,  # type: ignore[assignment]
    correlation: bool = None,  # type: ignore[assignment]
    r: Optional[int] = None,
    degree: int = None,  # type: ignore[assignment]
    gamma_later: Optional[float] = None,
    second_layer: str = None,  # type: ignore[assignment]
    curve: bool = False,
    kappa_from: float = None,  # type: ignore[assignment]
    kappa_to: float = None,  # type: ignore[assignment]
    kappa_step: float = None,  # type: ignore[assignment]
    eta_max0: Optional[float] = None,
    eta_schedule: Optional[Sequence[float]] = None,
    seeds: int = None,  # type: ignore[assignment]
    config: Optional[Mapping[str, Any]] = None,
) -> Dict[str, Any]:
    """The theory of a target (``giantstep theory --json``): Hermite coefficients, leap index,
    the generic and activation-aware subspaces per step, closed forms, error floors, stability.

    ``expr`` is an expression over ``z1..zr`` or a preset name (e.g. ``"stairway-he124"``).

    With ``curve=True``: the predicted stairway (``giantstep theory --curve --json``), the test
    error after every step ``T = 1..steps`` at ``n = d^kappa`` for ``kappa`` from ``kappa_from``
    to ``kappa_to`` by ``kappa_step``, and random features, from the state evolution of all
    neurons and the ridge readout, averaged over ``seeds`` seeds. ``d``, ``p``, ``activation``,
    ``eta0``, ``eta_exp``, ``eta_max0``, ``eta_schedule``, ``preprocess``, ``normalize``,
    ``correlation``, ``second_layer`` and ``r`` set the configuration; ``config`` (nested or dotted
    keys, as for :func:`run`) sets any other key. Returns a dict with numpy arrays ``kappa``,
    ``n``, ``test_error`` (``steps × len(kappa)``, NaN where not reported: below
    ``log n / log d = 1``), ``rf_test_error``, ``mean_abs_cos`` (``steps × len(kappa) × r``),
    and ``notes`` and ``config``.
    """
    if not isinstance(expr, str):
        raise TypeError(f"expr must be a string (an expression or a preset name), but is {type(expr).__name__}")
    given = {
        "activation": activation, "steps": steps, "kappa": kappa, "alpha": alpha, "eta0": eta0,
        "eta_exp": eta_exp, "gamma": gamma, "beta": beta, "d": d, "p": p, "preprocess": preprocess,
        "normalize": normalize, "correlation": correlation, "r": r, "degree": degree,
        "gamma_later": gamma_later, "second_layer": second_layer, "kappa_from": kappa_from,
        "kappa_to": kappa_to, "kappa_step": kappa_step, "eta_max0": eta_max0,
        "eta_schedule": eta_schedule, "seeds": seeds,
    }
    # None leaves a field to the library's default (the signature shows those defaults).
    for k, v in given.items():
        _check_like_default(k, _plain(v, k))
    query = {"target": expr}
    query.update({k: _plain(given[k], k) for k in _THEORY_DEFAULTS["query"] if k in given and given[k] is not None})
    if not curve:
        return json.loads(_core.theory(json.dumps(query)))
    spec = {k: _plain(given[k], k) for k in _THEORY_DEFAULTS["curve"] if given[k] is not None}
    _, _, pairs = _config_args(None, config or {})
    out = json.loads(_core.theory_curve(json.dumps(query), json.dumps(spec), pairs))
    c = out["curve"]
    nan = float("nan")
    cos_rows = [v for row in c["mean_abs_cos"] for v in row if v is not None]
    r = len(cos_rows[0]) if cos_rows else 0
    return {
        "kappa": np.asarray(c["kappa"], dtype=float),
        "n": np.asarray(c["n"], dtype=np.int64),
        "test_error": np.array([[nan if v is None else v for v in row] for row in c["test_error"]], dtype=float),
        "rf_test_error": np.array([nan if v is None else v for v in c["rf_test_error"]], dtype=float),
        "mean_abs_cos": np.array(
            [[[nan] * r if v is None else v for v in row] for row in c["mean_abs_cos"]], dtype=float
        ).reshape(len(c["test_error"]), len(c["kappa"]), r),
        "seeds": c["seeds"],
        "notes": c["notes"],
        "config": out["config"],
    }


# The defaults of theory()'s keywords are the library's (giantstep::theory::Query and
# giantstep::prediction::CurveQuery), defined once there and shown in the signature here.
_THEORY_DEFAULTS: Dict[str, Dict[str, Any]] = json.loads(_core.theory_defaults())
theory.__kwdefaults__ = {  # type: ignore[attr-defined]
    **theory.__kwdefaults__,  # type: ignore[attr-defined]
    **{k: v for k, v in _THEORY_DEFAULTS["query"].items() if k != "target"},
    **_THEORY_DEFAULTS["curve"],
}


def _check_like_default(key: str, value: Any) -> None:
    """Raises ``TypeError`` naming ``key`` when ``value`` is not of its default's kind."""
    if value is None:
        return
    default = _THEORY_DEFAULTS["query"].get(key, _THEORY_DEFAULTS["curve"].get(key))
    if isinstance(default, bool):
        ok, kind = isinstance(value, bool), "a bool"
    elif isinstance(default, int):
        ok, kind = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif isinstance(default, float):
        ok, kind = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
    elif isinstance(default, str):
        ok, kind = isinstance(value, str), "a string"
    elif key == "eta_schedule":
        ok = isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        kind = "a list of numbers"
    else:  # optional numbers: gamma, gamma_later, eta_max0, r
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        kind = "an integer" if key == "r" else "a number"
        ok = ok and (key != "r" or isinstance(value, int))
    if not ok:
        err = ConfigTypeError(f"{key} must be {kind}, but is {value!r}")
        err.key = key
        raise err


def theory_defaults() -> Dict[str, Any]:
    """The defaults of :func:`theory`'s keywords (the same as ``giantstep theory``'s flags)."""
    return {**{k: v for k, v in _THEORY_DEFAULTS["query"].items() if k != "target"}, **_THEORY_DEFAULTS["curve"]}


def sweep(
    plan: Union[str, "os.PathLike[str]"],
    out: Union[str, "os.PathLike[str]"],
    *,
    jobs: Optional[int] = None,
    threads: Optional[int] = None,
    progress: bool = False,
) -> Dict[str, int]:
    """Runs the points of a plan (``giantstep sweep PLAN --out OUT``) that ``out`` does not hold
    yet, appending one JSON record per point; rerunning resumes. ``plan`` is a path or TOML text.

    Returns ``{"points", "skipped", "ran", "failed"}``. Ctrl-C stops it between chunks (finished
    records stay).
    """
    if isinstance(plan, os.PathLike) or (isinstance(plan, str) and "\n" not in plan and plan.endswith(".toml")):
        with open(os.fspath(plan), encoding="utf-8") as f:
            text, source = f.read(_MAX_TEXT_FILE + 1), os.fspath(plan)
        if len(text) > _MAX_TEXT_FILE:
            raise ValueError(f"{source}: larger than 16 MiB: not a plan file")
    else:
        text, source = plan, "the plan string"
    callback = None
    bar = None
    if progress:
        try:
            from tqdm.auto import tqdm

            bar = tqdm(desc="giantstep sweep", unit="point")

            def callback(kind: str, a: int, b: int) -> None:
                if kind == "start":
                    bar.reset(total=a)
                else:
                    bar.update(1)

        except ImportError:
            pass
    try:
        summary = _core.sweep(text, source, os.fspath(out), jobs=jobs or 1, threads=threads, progress=callback)
    finally:
        if bar is not None:
            bar.close()
    return json.loads(summary)


def load_records(path: Union[str, "os.PathLike[str]"]) -> List[Dict[str, Any]]:
    """The complete records of a record file, as dicts (``hash``, ``index``, ``config``,
    ``result`` or ``error``, ``wall_s``, ...)."""
    return [json.loads(line) for line in _core.load_records(os.fspath(path))]


def records_frame(path: Union[str, "os.PathLike[str]"]):  # -> pandas.DataFrame
    """A pandas DataFrame with one row per (point, step) of a record file.

    Columns: ``index`` (the point), ``seed``, ``d``, ``p``, ``n``, ``kappa`` (log n / log d),
    ``steps`` (T of the run), ``t`` (the step), ``eta``, ``mean_abs_cos`` (a tuple per direction),
    ``batch_mse``, the run's ``test_error`` / ``rf_test_error``, the step's ``step_test_error``
    (with ``eval.every_step``), ``target``, ``activation`` and ``error`` (failed points have one
    row with t = 0). Needs pandas.
    """
    try:
        import pandas as pd
    except ImportError:
        raise ImportError("records_frame needs pandas (pip install pandas)") from None
    import math

    rows = []
    for rec in load_records(path):
        c = rec["config"]
        res = rec.get("result")
        d = c["network"]["d"]
        base = {
            "index": rec["index"],
            "seed": c["seed"],
            "d": d,
            "p": c["network"]["p"],
            "steps": c["train"]["steps"],
            "target": c["target"].get("expr"),
            "activation": c["network"]["activation"],
            "error": rec.get("error"),
        }
        if res is None:
            rows.append({**base, "t": 0})
            continue
        for s in res["steps"]:
            rows.append(
                {
                    **base,
                    "n": s["n"],
                    "kappa": math.log(s["n"]) / math.log(d) if d > 1 else float("nan"),
                    "t": s["t"],
                    "eta": s["eta"],
                    "batch_mse": s["batch_mse"],
                    "mean_abs_cos": tuple(s["mean_abs_cos"]),
                    "step_test_error": s.get("test_error"),
                    "test_error": res["test_error"],
                    "rf_test_error": res.get("rf_test_error"),
                }
            )
    return pd.DataFrame(rows)
