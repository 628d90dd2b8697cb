"""The Rust extension behind :mod:`giantstep` (use the functions of the package instead)."""

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

def version() -> str: ...
def resolve_config(toml_text: str, source: str, overrides: Sequence[Tuple[str, str]]) -> str: ...
def run(
    toml_text: str,
    source: str,
    overrides: Sequence[Tuple[str, str]],
    w0: Optional[np.ndarray] = None,
    a: Optional[np.ndarray] = None,
    w_star: Optional[np.ndarray] = None,
    target: Optional[Callable[[np.ndarray], Any]] = None,
    target_name: Optional[str] = None,
    keep_weights: bool = False,
    progress: Optional[Callable[[str, int, int], None]] = None,
    keep_every_step: bool = False,
    resume_layer: Optional[np.ndarray] = None,
    resume_steps: Optional[str] = None,
    activation: Optional[Tuple[Callable[[np.ndarray], Any], Callable[[np.ndarray], Any]]] = None,
    activation_name: Optional[str] = None,
) -> Tuple[str, Optional[Dict[str, Any]], List[str]]: ...
def theory(query_json: str) -> str: ...
def theory_curve(query_json: str, curve_json: str, overrides: List[Tuple[str, str]]) -> str: ...
def theory_defaults() -> str: ...
def sweep(
    plan_text: str,
    source: str,
    out: str,
    jobs: int = 1,
    threads: Optional[int] = None,
    progress: Optional[Callable[[str, int, int], None]] = None,
    plan_json: Optional[str] = None,
    target: Optional[Callable[[np.ndarray], Any]] = None,
    target_name: Optional[str] = None,
) -> str: ...
def load_records(path: str) -> List[str]: ...

class ConfigError(ValueError):
    key: Optional[str]

class ConfigTypeError(TypeError):
    key: Optional[str]
