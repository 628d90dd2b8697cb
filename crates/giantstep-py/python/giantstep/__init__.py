"""giantstep: feature learning in two-layer networks after a few giant gradient steps.

Simulation and theory after Dandi, Krzakala, Loureiro, Pesce, Stephan, *How Two-Layer Neural
Networks Learn, One (Giant) Step at a Time* (arXiv 2305.18270), on giantstep's Rust engine.

The model in brief: inputs ``z ~ N(0, I_d)``, a target ``y = g*(W* z)`` of ``r`` teacher
directions (``W*`` is r × d with orthonormal rows; ``x = W* z`` are the teacher coordinates), a
student ``f(z) = Σ_i a_i σ(<w_i, z>) / √p`` with p neurons. Each giant step draws a fresh batch of
``n`` samples and moves the first layer ``W`` (p × d) by ``η`` times the gradient of the squared
loss (``a`` stays fixed); after T steps a ridge readout ``â`` is fitted on the features
``σ(W z)``, and the test error is that of ``<â, σ(W z)> / √p``. ``mean_abs_cos`` measures how much
of each teacher direction the neurons learned. The full notation (``docs/model.md``) and theory
(``docs/theory.md``) are in the source repository, not in the installed package.

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
import math
import os
import warnings
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import _core

__all__ = [
    "ConfigError",
    "ConfigTypeError",
    "GiantstepWarning",
    "RunResult",
    "run",
    "resolve",
    "theory",
    "theory_defaults",
    "sweep",
    "grid",
    "load_records",
    "records_frame",
    "curve_frame",
    "results_frame",
    "__version__",
]

__version__: str = _core.version()

#: An invalid configuration value or an unknown key (a ``ValueError``); ``.key`` names the key.
ConfigError = _core.ConfigError
#: A configuration value of the wrong type (a ``TypeError``); ``.key`` names the key.
ConfigTypeError = _core.ConfigTypeError


class GiantstepWarning(UserWarning):
    """What the command line prints as a warning or a theory note: later steps that blow up at
    the learning rate asked, a regime the theory does not cover, more threads than cores, a run of
    more than ten minutes. Filter with ``warnings.simplefilter("ignore", giantstep.GiantstepWarning)``."""


def _warn(messages: Sequence[str], stacklevel: int = 3) -> None:
    # Point at the caller's line, past this package's own frames (run() called from grid()).
    frame, level = __import__("sys")._getframe(stacklevel - 1), stacklevel
    while frame is not None and frame.f_globals.get("__name__") == __name__:
        frame, level = frame.f_back, level + 1
    for m in messages:
        warnings.warn(m, GiantstepWarning, stacklevel=level)


def __dir__() -> List[str]:
    return sorted(__all__)

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
        One record per giant step: ``t``, ``n`` (batch size), ``eta``, ``batch_mse`` (mean
        (ỹ − f)² on the batch before the step), ``mean_abs_cos`` / ``max_abs_cos`` (per teacher
        direction), ``teacher_gram_eigenvalues`` / ``teacher_gram_eigenvectors``,
        ``outside_mass``, ``grad_singular_values``, ``grad_cos``, ``grad_perp_cos``, and
        ``test_error`` / ``train_error`` with ``eval.every_step``.
    initial : dict
        The overlaps of the initial layer (as a step's).
    random_level : float
        Mean |cos| of a random direction, sqrt(2 / (π d)).
    r : int
        Teacher rank.
    test_label_second_moment : float
        E[y²] on the test set (the error of predicting 0).
    theory : dict or None
        The theory's predictions next to the measurements (``theory_note`` says why absent):
        ``predicted_mean_abs_cos`` per step, subspace dimensions, ``blocked`` directions,
        ``warnings``, ``test_error`` (the state evolution's prediction), ...
    theory_note : str or None
        Why ``theory`` is None.
    warnings : list of str
        Warnings about the run outside the theory (the stability check of a target function).
        Every warning is also issued as a :class:`GiantstepWarning`.
    elapsed_s : float
        Wall time of the run.
    version : str
        The engine's version.
    config : dict
        The resolved configuration.
    W0, W, a, W_star, readout, rf_readout : numpy.ndarray
        Only with ``return_weights=True``: first layer at initialization and after training
        (p × d), second layer (p), teacher (r × d), ridge readouts (p).
    state_t, M_t, Q_t : numpy.ndarray
        Only with ``return_weights=True``: the steps this run trained, ``M_t = W_t W*ᵀ``
        (steps × p × r) and ``Q_t = W_t W_tᵀ`` (steps × p × p).
    W_t : numpy.ndarray
        Only with ``keep_every_step=True``: the first layer after each step (steps × p × d).
    """

    _WEIGHTS = ("W0", "W", "a", "W_star", "readout", "rf_readout")
    _STATE = ("state_t", "M_t", "Q_t", "W_t")

    def __init__(self, data: Dict[str, Any], weights: Optional[Dict[str, Any]] = None) -> None:
        self._data = data
        self._weights = weights

    def __getattr__(self, name: str) -> Any:
        data = self.__dict__.get("_data", {})
        if name in data:
            return data[name]
        if name == "warnings":
            return []
        if name in RunResult._WEIGHTS or name in RunResult._STATE:
            weights = self.__dict__.get("_weights")
            if weights is None:
                raise AttributeError(f"{name}: the weights are returned with run(..., return_weights=True)")
            if name in RunResult._WEIGHTS:
                return weights[name]
            return self._state(name, weights["steps"])
        raise AttributeError(name)

    @staticmethod
    def _state(name: str, steps: List[Dict[str, Any]]) -> np.ndarray:
        if name == "state_t":
            return np.array([s["t"] for s in steps], dtype=np.int64)
        key = name[0]
        if key == "W" and any(s["W"] is None for s in steps):
            raise AttributeError("W_t: the layer after every step is returned with run(..., keep_every_step=True)")
        return np.stack([s[key] for s in steps]) if steps else np.empty((0,))

    def __dir__(self) -> List[str]:
        extra = list(RunResult._WEIGHTS + RunResult._STATE) if self._weights is not None else []
        return sorted(set(super().__dir__()) | set(self._data) | set(extra) | {"warnings"})

    def to_dict(self) -> Dict[str, Any]:
        """The result as the JSON object of ``giantstep run --json`` (without the weights)."""
        return json.loads(json.dumps(self._data))

    def to_frame(self):  # -> pandas.DataFrame
        """A tidy pandas DataFrame with one row per step (the columns of :func:`results_frame`)."""
        return results_frame([self])

    def __repr__(self) -> str:
        rf = self._data.get("rf_test_error")
        c = self._data["config"]
        return (
            f"RunResult(d={c['network']['d']}, p={c['network']['p']}, T={len(self._data['steps'])}, "
            f"test_error={self._data['test_error']:.4g}, rf_test_error={'None' if rf is None else f'{rf:.4g}'})"
        )

    def _repr_html_(self) -> str:
        """The command line's step table, for notebooks."""
        import html

        c = self._data["config"]
        head = html.escape(
            f"giantstep run: {c['target'].get('expr') or c['target'].get('preset')}, d = {c['network']['d']}, "
            f"p = {c['network']['p']}, {c['network']['activation']}"
        )
        rows = []
        for s in self._data["steps"]:
            cos = ", ".join(f"{v:.3f}" for v in s["mean_abs_cos"])
            te = s.get("test_error")
            rows.append(
                f"<tr><td>{s['t']}</td><td>{s['n']}</td><td>{s['eta']:.4g}</td><td>{s['batch_mse']:.4f}</td>"
                f"<td>{cos}</td><td>{'' if te is None else f'{te:.4f}'}</td></tr>"
            )
        rf = self._data.get("rf_test_error")
        foot = f"test error {self._data['test_error']:.4f}" + ("" if rf is None else f", random features {rf:.4f}")
        th = self._data.get("theory") or {}
        if th.get("test_error") is not None:
            foot += f", predicted {th['test_error']:.4f}"
        return (
            f"<div><b>{head}</b><table><tr><th>t</th><th>n</th><th>η</th><th>batch mse</th>"
            f"<th>mean |cos| per direction</th><th>test error</th></tr>{''.join(rows)}</table>{html.escape(foot)}</div>"
        )

    def __reduce__(self):
        return (RunResult, (self._data, self._weights))


class _Bar:
    """A tqdm bar over the steps, the theory, the readout and the test (when tqdm is installed)."""

    _warned = False

    def __init__(self, steps: int) -> None:
        try:
            from tqdm.auto import tqdm
        except ImportError:  # progress is optional
            self.bar = None
            if not _Bar._warned:
                _Bar._warned = True
                _warn(["progress=True needs tqdm (pip install tqdm); running without a progress bar"], 4)
            return
        self.bar = tqdm(total=steps + 3, desc="giantstep", unit="phase")

    def __call__(self, kind: str, t: int, of: int) -> None:
        if self.bar is None:
            return
        if kind in ("step_done", "theory", "readout", "test"):
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


_RUN_KEYWORDS = ("W0", "a", "W_star", "target", "activation", "return_weights", "keep_every_step", "resume_from",
                 "progress")
_DEFAULT_CONFIG: Dict[str, Any] = json.loads(_core.resolve_config("", "config", []))
_CONFIG_KEYS = [k for k, _ in _flatten(_DEFAULT_CONFIG)] + list(_DEFAULT_CONFIG)


def _check_keywords(overrides: Mapping[str, Any], own: Sequence[str]) -> None:
    """A keyword that is neither a configuration key nor a parameter, with a close match among
    both: raises ``ConfigError`` suggesting it (the library lists configuration keys only)."""
    import difflib

    for k in overrides:
        if k.split(".")[0] in _DEFAULT_CONFIG:
            continue
        match = difflib.get_close_matches(k, list(own) + _CONFIG_KEYS, n=1, cutoff=0.6)
        if match:
            kind = "a parameter" if match[0] in own else "a configuration key"
            err = ConfigError(f"unknown keyword {k!r}: did you mean {match[0]!r} ({kind})?")
            err.key = k
            raise err


def run(
    config: ConfigLike = None,
    /,
    *,
    W0: Any = None,
    a: Any = None,
    W_star: Any = None,
    target: Optional[Callable[[np.ndarray], Any]] = None,
    activation: Union[None, str, Tuple[Callable[[np.ndarray], Any], Callable[[np.ndarray], Any]]] = None,
    return_weights: bool = False,
    keep_every_step: bool = False,
    resume_from: Optional[RunResult] = None,
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
        returning one finite label per row; used instead of ``target.expr`` (give ``target.r``,
        default 1). It is called once per chunk of ``chunk`` samples from the engine's threads,
        holding the GIL only for that call, so its cost adds to every pass (numpy at chunk = 4096
        costs about a GEMM of the step). The theory needs an expression and is skipped, except the
        stability check of the later steps, which calls the function on a quadrature grid (at most
        65536 points). Its exceptions propagate unchanged.
    activation
        A built-in name (``"tanh"``, ``"relu:0.5"``: the same as ``network.activation``) or a pair
        of functions ``(sigma, dsigma)`` of the pre-activations (an array chunk × p, float64)
        returning arrays of that shape: σ and σ'. Called once per chunk in every pass like a
        ``target`` function (σ' only in the gradient); the theory needs a built-in activation and
        is skipped (``theory_note`` names the function). ``(np.tanh, lambda h: 1 - np.tanh(h)**2)``
        reproduces ``"tanh"`` to about 1e-16 (numpy's tanh and the engine's differ in the last bit).
    return_weights
        Attach ``W0``, ``W``, ``a``, ``W_star``, ``readout``, ``rf_readout`` and the state after
        every step: ``M_t = W_t W*ᵀ`` (steps × p × r), ``Q_t = W_t W_tᵀ`` (steps × p × p).
    keep_every_step
        With ``return_weights``, also attach ``W_t``, the first layer after every step
        (steps × p × d: ``8·T·p·d`` bytes, e.g. 12.6 MB for T = 6, p = d = 512).
    resume_from
        Continue a result of ``run(..., return_weights=True)``: its configuration (plus the
        keywords given here) with ``train.steps`` the new total, from its layer ``W`` and its
        ``W0``, ``a`` and ``W*``. ``run(steps=2)`` equals ``run(steps=1)`` continued to 2 steps
        bit for bit (the batches are keyed by the step). A result trained with a ``target``
        function needs the same function again.
    progress
        ``True``: show a tqdm bar (warns once when tqdm is not installed). A callable: called as
        ``progress(kind, t, of)`` from the engine's thread with ``kind`` one of ``"step"`` (step
        ``t`` of ``of`` starts), ``"step_done"`` (step ``t`` finished), ``"theory"``,
        ``"readout"``, ``"test"``.
    **overrides
        Dotted keys, e.g. ``**{"train.steps": 2}``, or sections as dicts, e.g. ``network={"d": 64}``.

    The GIL is released while the engine runs; Ctrl-C raises ``KeyboardInterrupt`` within about a
    chunk's time (also during the attached theory). Every warning the command line prints is
    issued as a :class:`GiantstepWarning`.
    """
    _check_keywords(overrides, _RUN_KEYWORDS)
    act_pair = None
    if isinstance(activation, str):
        overrides = {**overrides, "network.activation": activation}
    elif activation is not None:
        if not (isinstance(activation, tuple) and len(activation) == 2 and all(map(callable, activation))):
            raise TypeError(
                "activation must be a name (e.g. 'tanh') or a pair of functions (sigma, dsigma), "
                f"but is {type(activation).__name__}"
            )
        act_pair = activation
    resume_layer = resume_steps = None
    if resume_from is not None:
        if not isinstance(resume_from, RunResult):
            raise TypeError(f"resume_from must be a RunResult, but is {type(resume_from).__name__}")
        weights = resume_from.__dict__.get("_weights")
        if weights is None:
            raise ValueError("resume_from needs the weights: run the first part with return_weights=True")
        if config is not None:
            raise ValueError("give resume_from or a config, not both (keywords override the resumed configuration)")
        if any(v is not None for v in (W0, a, W_star)):
            raise ValueError("resume_from supplies W0, a and W_star; do not give them too")
        base = {k: v for k, v in _flatten(resume_from.config) if v is not None}
        if target is not None or str(base.get("target.expr", "")).startswith("<python"):
            base.pop("target.expr", None)
        config = base
        W0, a, W_star = weights["W0"], weights["a"], weights["W_star"]
        resume_layer, resume_steps = weights["W"], json.dumps(resume_from.steps)
    text, source, pairs = _config_args(config, overrides)
    if target is not None:
        if not callable(target):
            raise TypeError(f"target must be callable (a function of the coordinates), but is {type(target).__name__}")
        given = [k for k, _ in _flatten(overrides) if k in ("target.expr", "target.preset")]
        if given:
            raise ValueError(f"give target= or {given[0]}, not both")
        # The function replaces the expression; r comes from target.r (default 1).
        pairs = [(k, v) for k, v in pairs if k not in ("target.expr", "target.preset")]
        pairs.append(("target.expr", json.dumps("0")))
    if callable(progress):
        bar, callback = None, progress
    elif progress:
        steps = json.loads(_core.resolve_config(text, source, pairs))["train"]["steps"]
        bar = _Bar(int(steps))
        callback = bar
    else:
        bar = callback = None
    name = getattr(target, "__qualname__", None) or getattr(target, "__name__", None) or "target"
    try:
        data, weights, before = _core.run(
            text,
            source,
            pairs,
            w0=_float_array("W0", W0),
            a=_float_array("a", a),
            w_star=_float_array("W_star", W_star),
            target=target,
            target_name=name,
            keep_weights=bool(return_weights),
            progress=callback,
            keep_every_step=bool(keep_every_step),
            resume_layer=_float_array("resume_from.W", resume_layer),
            resume_steps=resume_steps,
            activation=act_pair,
            activation_name=None if act_pair is None else (
                getattr(act_pair[0], "__qualname__", None) or getattr(act_pair[0], "__name__", None) or "activation"
            ),
        )
    finally:
        if bar is not None:
            bar.close()
    result = RunResult(json.loads(data), weights)
    th = result._data.get("theory") or {}
    _warn(list(before) + list(th.get("warnings", [])) + list(result._data.get("warnings", [])))
    return result


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
    form: str = None,  # type: ignore[assignment]
    particles: int = None,  # type: ignore[assignment]
    config: Optional[Mapping[str, Any]] = None,
) -> Dict[str, Any]:
    """The theory of a target (``giantstep theory --json``): Hermite coefficients, leap index,
    the generic and activation-aware subspaces per step, closed forms, error floors, stability.

    Parameters (the defaults are ``giantstep theory``'s, see :func:`theory_defaults`)
    ----------
    expr : str
        An expression over ``z1..zr`` (e.g. ``"z1 + z1*z2"``) or a preset name (e.g.
        ``"stairway-he124"``; ``giantstep presets`` lists them).
    activation : str
        The student's σ: ``relu``, ``tanh``, ``erf``, ``sigmoid``, ``he2``..., with an optional
        shift (``"relu:0.5"``).
    steps : int
        Number of giant steps ``T`` of the recursions.
    kappa : float
        Batch exponent, ``n = d^kappa`` (the generic rule learns at ``ℓ = floor(kappa)``).
    alpha : float
        ``n / d`` of the activation-aware recursion and the one-step closed form.
    eta0, eta_exp : float
        Learning rate ``η = eta0 · p · alpha^eta_exp`` (so ``γ = η / p``), unless ``gamma``.
    gamma : float, optional
        ``γ = η / p`` directly.
    beta : float
        ``n / d²`` of the quadratic closed form.
    d, p : int
        Dimension and width (the random-features floor, the one-step rule at finite d; with
        ``curve=True`` the network simulated).
    preprocess : str
        Label preprocessing: ``none``, ``mean`` or ``linear``.
    normalize : bool
        Row normalization after each step.
    correlation : bool
        Correlation loss instead of the residual.
    r : int, optional
        Teacher rank (default: the largest ``zk`` in ``expr``).
    degree : int
        Highest Hermite degree of the expansion.
    gamma_later : float, optional
        ``γ`` of the steps after the first (the stability check).
    second_layer : str
        Law of the second layer: ``hypercube`` (±1/√p), ``gaussian`` or ``uniform``.
    curve : bool
        Return the predicted stairway instead of the report (below).
    kappa_from, kappa_to, kappa_step : float
        The κ grid of the curve.
    eta_max0 : float, optional
        The curve's learning-rate cap (``train.eta_max0``).
    eta_schedule : list of float, optional
        The curve's per-step multipliers of the learning rate (``train.eta_schedule``).
    seeds : int
        Seeds the curve averages over.
    form : str
        ``"finite-p"`` (the state evolution of the network's p neurons) or ``"mean-field"`` (a
        population of ``particles`` neurons, the ``p → ∞`` limit; docs/theory.md §6).
    particles : int
        Particles of the mean-field form (at least ``p`` are used).
    config : dict, optional
        Any other configuration key of the curve's base (nested or dotted, as for :func:`run`).

    The report's ``warnings`` are also issued as :class:`GiantstepWarning`. Ctrl-C interrupts it
    within about a second.

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
        "eta_schedule": eta_schedule, "seeds": seeds, "form": form, "particles": particles,
    }
    # None leaves a field to the library's default (the signature shows those defaults).
    for k, v in given.items():
        _check_like_default(k, _plain(v, k))
    query = {"target": expr}
    query.update({k: _plain(given[k], k) for k in _THEORY_DEFAULTS["query"] if k in given and given[k] is not None})
    if not curve:
        report = json.loads(_core.theory(json.dumps(query)))
        _warn(report.get("warnings", []))
        return report
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
        "form": out["form"],
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
    plan: Union[str, "os.PathLike[str]", Mapping[str, Any]],
    out: Union[str, "os.PathLike[str]"],
    *,
    jobs: Optional[int] = None,
    threads: Optional[int] = None,
    target: Optional[Callable[[np.ndarray], Any]] = None,
    progress: bool = False,
) -> Dict[str, int]:
    """Runs the points of a plan (``giantstep sweep PLAN --out OUT``) that ``out`` does not hold
    yet, appending one JSON record per point; rerunning resumes.

    Parameters
    ----------
    plan
        A path, TOML text, or a dict like the TOML: ``{"name": ..., "base": {config},
        "axes": {"train.n": {"from": 1, "to": 2, "step": 0.25, "power_of_d": True},
        "seed": "0..3"}}`` (axis values as lists, ranges as text, or ``from/to/step`` tables).
    out
        The record file (JSON lines).
    jobs, threads
        Points run at a time, threads per point (default: all cores to one point).
    target
        A function of the teacher coordinates for every point, as in :func:`run` (in-process;
        the records show its name as ``target.expr``). Points are keyed by the plan, so another
        function into the same record file would skip the points already there: use a new file.
    progress
        A tqdm bar over the points (warns once when tqdm is not installed).

    Returns ``{"points", "skipped", "ran", "failed"}``. Ctrl-C stops it between chunks (finished
    records stay).
    """
    plan_json = None
    if isinstance(plan, Mapping):
        text, source = "", "the plan dict"
        plan_json = json.dumps(_plain_tree(plan, "plan"))
    elif isinstance(plan, os.PathLike) or (isinstance(plan, str) and "\n" not in plan and plan.endswith(".toml")):
        with open(os.fspath(plan), encoding="utf-8") as f:
            text, source = f.read(_MAX_TEXT_FILE + 1), os.fspath(plan)
        if len(text) > _MAX_TEXT_FILE:
            raise ValueError(f"{source}: larger than 16 MiB: not a plan file")
    elif isinstance(plan, str):
        text, source = plan, "the plan string"
    else:
        raise TypeError(f"plan must be a dict, TOML text or a path, but is {type(plan).__name__}")
    if target is not None and not callable(target):
        raise TypeError(f"target must be callable (a function of the coordinates), but is {type(target).__name__}")
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
            _warn(["progress=True needs tqdm (pip install tqdm); running without a progress bar"])
    name = getattr(target, "__qualname__", None) or getattr(target, "__name__", None) or "target"
    try:
        summary = _core.sweep(
            text,
            source,
            os.fspath(out),
            jobs=jobs or 1,
            threads=threads,
            progress=callback,
            plan_json=plan_json,
            target=target,
            target_name=name,
        )
    finally:
        if bar is not None:
            bar.close()
    return json.loads(summary)


def _plain_tree(value: Any, key: str) -> Any:
    """A JSON-ready copy of a nested mapping (numpy values become Python ones)."""
    if isinstance(value, Mapping):
        return {str(k): _plain_tree(v, f"{key}.{k}") for k, v in value.items()}
    if isinstance(value, range):
        return list(value)
    return _plain(value, key)


def grid(
    config: ConfigLike = None,
    /,
    *,
    jobs: int = 1,
    target: Optional[Callable[[np.ndarray], Any]] = None,
    activation: Any = None,
    return_weights: bool = False,
    **axes: Any,
) -> List[RunResult]:
    """Runs the product of ``axes`` over ``config`` in this process and returns the results, in
    the order of the product (the first axis varies slowest).

    Each axis is a dotted key (use ``**{"train.n": [...]}``) or a top-level key (``seed=range(3)``)
    with a list, a range or a numpy array of values; a scalar is a one-value axis. Every point is
    exactly :func:`run` of its configuration. ``jobs`` runs that many points at a time (threads:
    the engine releases the GIL; each point still uses the configuration's ``threads``). A
    ``target`` function and an ``activation`` pair work as in :func:`run`. No record file: use :func:`sweep` for runs that
    should survive a restart.

    >>> rs = giantstep.grid({"network": {"d": 32, "p": 16}}, seed=range(2), **{"train.steps": [1, 2]})
    >>> giantstep.results_frame(rs)  # doctest: +SKIP
    """
    import itertools
    from concurrent.futures import ThreadPoolExecutor

    keys = list(axes)
    values = []
    for k in keys:
        v = axes[k]
        if isinstance(v, np.ndarray):
            v = v.tolist()
        if isinstance(v, (list, tuple, range)):
            v = list(v)
            if not v:
                raise ValueError(f"axis {k} is empty")
        else:
            v = [v]
        values.append(v)
    points = [dict(zip(keys, combo)) for combo in itertools.product(*values)]
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, but is {jobs!r}")

    def one(point: Dict[str, Any]) -> RunResult:
        return run(config, target=target, activation=activation, return_weights=return_weights, **point)

    if jobs == 1:
        return [one(p) for p in points]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(one, points))


def load_records(path: Union[str, "os.PathLike[str]"]) -> List[Dict[str, Any]]:
    """The complete records of a record file, as dicts (``hash``, ``index``, ``config``,
    ``result`` or ``error``, ``wall_s``, ...)."""
    return [json.loads(line) for line in _core.load_records(os.fspath(path))]


def _rows(config: Dict[str, Any], result: Optional[Dict[str, Any]], base: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Tidy rows, one per step, of a run's configuration and result."""
    d = config["network"]["d"]
    r = int(result.get("r", 0)) if result else 0
    # A target function's name is in the result's configuration (the plan holds a placeholder).
    shown = result["config"]["target"] if result and "config" in result else config["target"]
    row0 = {
        **base,
        "seed": config["seed"],
        "d": d,
        "p": config["network"]["p"],
        "r": r,
        "steps": config["train"]["steps"],
        "target": shown.get("expr") or shown.get("preset"),
        "activation": config["network"]["activation"],
    }
    if result is None:
        return [{**row0, "t": 0}]
    nan = float("nan")
    T = len(result["steps"])
    th = result.get("theory") or {}
    rows = []
    for s in result["steps"]:
        t = s["t"]
        last = t == T
        te = s.get("test_error")
        tr = s.get("train_error")
        row = {
            **row0,
            "t": t,
            "n": s["n"],
            "kappa": math.log(s["n"]) / math.log(d) if d > 1 else nan,
            "eta": s["eta"],
            "batch_mse": s["batch_mse"],
            # The step's own errors: measured after every step with eval.every_step, else only
            # after the last one (NaN before).
            "test_error": te if te is not None else (result["test_error"] if last else nan),
            "train_error": tr if tr is not None else (result["train_error"] if last else nan),
            "rf_test_error": nan if result.get("rf_test_error") is None else result["rf_test_error"],
            "predicted_test_error": th["test_error"] if last and th.get("test_error") is not None else nan,
        }
        for k, v in enumerate(s["mean_abs_cos"], start=1):
            row[f"mean_abs_cos_{k}"] = v
        for k, v in enumerate(s.get("max_abs_cos", []), start=1):
            row[f"max_abs_cos_{k}"] = v
        rows.append(row)
    return rows


def _frame(rows: List[Dict[str, Any]]):
    try:
        import pandas as pd
    except ImportError:
        raise ImportError("frames need pandas (pip install pandas, or the extra giantstep[frame])") from None
    return pd.DataFrame(rows)


def results_frame(results: Sequence[RunResult]):  # -> pandas.DataFrame
    """A tidy pandas DataFrame of results of :func:`run` or :func:`grid`: one row per (run, step).

    Columns: ``run`` (position in ``results``), ``seed``, ``d``, ``p``, ``r``, ``steps`` (T of
    the run), ``t`` (the step), ``n``, ``kappa`` (log n / log d), ``eta``, ``batch_mse``,
    ``test_error`` and ``train_error`` of that step (every step with ``eval.every_step``, else the
    last step only, NaN before), ``rf_test_error`` (the run's random features), 
    ``predicted_test_error`` (the attached theory's, last step), ``mean_abs_cos_1..r`` and
    ``max_abs_cos_1..r`` (one column per teacher direction), ``target``, ``activation``. Needs pandas.
    """
    rows: List[Dict[str, Any]] = []
    for i, res in enumerate(results):
        if not isinstance(res, RunResult):
            raise TypeError(f"results_frame takes RunResult objects, but item {i} is {type(res).__name__}")
        rows.extend(_rows(res.config, res._data, {"run": i}))
    return _frame(rows)


def curve_frame(curve: Mapping[str, Any]):  # -> pandas.DataFrame
    """A tidy pandas DataFrame of a predicted stairway (:func:`theory` with ``curve=True``): one
    row per (batch size, step), in the layout of :func:`records_frame`, so that the two merge on
    ``n`` and ``t``.

    Columns: ``kappa``, ``n``, ``t``, ``predicted_test_error`` (NaN where not reported: below
    ``log n / log d = 1``), ``predicted_rf_test_error``, ``mean_abs_cos_1..r`` (predicted), ``d``,
    ``p``, ``form`` (``"finite-p"`` or ``"mean-field"``). Needs pandas.
    """
    cfg = curve["config"]
    te, cos = np.asarray(curve["test_error"]), np.asarray(curve["mean_abs_cos"])
    r = cos.shape[2] if cos.ndim == 3 else 0
    rows: List[Dict[str, Any]] = []
    for j, kappa in enumerate(np.asarray(curve["kappa"]).tolist()):
        for t in range(te.shape[0]):
            row = {
                "kappa": kappa,
                "n": int(curve["n"][j]),
                "t": t + 1,
                "predicted_test_error": float(te[t, j]),
                "predicted_rf_test_error": float(curve["rf_test_error"][j]),
            }
            row.update({f"mean_abs_cos_{k + 1}": float(cos[t, j, k]) for k in range(r)})
            row.update({"d": cfg["network"]["d"], "p": cfg["network"]["p"], "form": curve.get("form", "finite-p")})
            rows.append(row)
    return _frame(rows)


def records_frame(path: Union[str, "os.PathLike[str]"]):  # -> pandas.DataFrame
    """A tidy pandas DataFrame of a record file: one row per (point, step).

    The columns of :func:`results_frame`, with ``index`` (the point) instead of ``run`` and
    ``error`` (failed points have one row with ``t = 0``). Needs pandas.
    """
    rows: List[Dict[str, Any]] = []
    for rec in load_records(path):
        rows.extend(_rows(rec["config"], rec.get("result"), {"index": rec["index"], "error": rec.get("error")}))
    return _frame(rows)
