//! The Python module `giantstep._core`: a thin layer over the library's typed API. The Python
//! package `giantstep` (python/giantstep/__init__.py) builds on it; see its docstrings.
//!
//! Long calls run the library on a worker thread with the GIL released; the calling thread
//! waits in slices of 50 ms and checks for signals between them, so that Ctrl-C sets the run's
//! cancel flag and raises `KeyboardInterrupt` within a chunk's time.

use giantstep::config::{parse_table, set_key, Config};
use giantstep::sweep::{read_records, run_sweep, Plan, Progress, SweepOptions};
use giantstep::{CustomTarget, Error, Observer, Phase, RunOptions, StepRecord, ValidConfig};
use numpy::{PyArray1, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::{PyKeyboardInterrupt, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pyo3::create_exception!(
    _core,
    ConfigError,
    PyValueError,
    "An invalid configuration value or an unknown key; `key` names it (None when no single key is at fault)."
);
pyo3::create_exception!(
    _core,
    ConfigTypeError,
    PyTypeError,
    "A configuration value of the wrong type; `key` names it."
);

/// The library's error as a Python exception: by variant, never by message text. Configuration
/// errors are `ConfigError` (a `ValueError`) or `ConfigTypeError` (a `TypeError`) carrying `key`.
fn to_py(e: Error) -> PyErr {
    let msg = e.to_string().trim_start_matches("invalid configuration: ").to_string();
    let key = e.key().map(str::to_string);
    let err = match e {
        Error::Cancelled => return PyKeyboardInterrupt::new_err("giantstep: cancelled"),
        Error::Io { .. } => return PyErr::new::<pyo3::exceptions::PyOSError, _>(msg),
        Error::Numerical(_) | Error::NonFinite { .. } | Error::NotPositiveDefinite { .. } | Error::Activation(_) => {
            return PyRuntimeError::new_err(msg)
        }
        Error::WrongType { .. } => ConfigTypeError::new_err(msg),
        _ => ConfigError::new_err(msg),
    };
    Python::attach(|py| {
        let _ = err.value(py).setattr("key", key);
    });
    err
}

/// A configuration from TOML text and dotted overrides whose values are JSON texts.
fn build_config(toml_text: &str, source: &str, overrides: &[(String, String)]) -> Result<Config, Error> {
    let mut table = parse_table(toml_text, source)?;
    set_overrides(&mut table, overrides)?;
    Config::from_table(table)
}

/// Sets dotted keys whose values are JSON texts (Python's keyword arguments) on a table.
fn set_overrides(table: &mut toml::Table, overrides: &[(String, String)]) -> Result<(), Error> {
    for (key, json) in overrides {
        // Python's json.dumps writes NaN and Infinity, which JSON (and a configuration) rejects.
        let value: serde_json::Value = serde_json::from_str(json).map_err(|_| {
            Error::invalid(
                key,
                "a finite number, a string, a bool or a list of them",
                giantstep::error::cut(json),
            )
        })?;
        if value.is_null() {
            return Err(Error::invalid(
                key,
                "a value (leave the key out for its default)",
                "None",
            ));
        }
        let value = toml::Value::try_from(&value).map_err(|e| Error::config(format!("{key}: {e}")))?;
        set_key(table, key, value)?;
    }
    Ok(())
}

/// Runs `work` on a worker thread with the GIL released, checking for signals every 50 ms; on a
/// signal, sets `cancel`, waits for the worker to stop, and raises the signal's exception.
fn interruptible<T: Send + 'static>(
    py: Python<'_>,
    cancel: Arc<AtomicBool>,
    work: impl FnOnce() -> T + Send + 'static,
) -> PyResult<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    // The receiver is polled with the GIL released, which needs it shareable.
    let rx = Mutex::new(rx);
    let handle = std::thread::spawn(move || {
        let _ = tx.send(work());
    });
    loop {
        let received = py.detach(|| match rx.lock() {
            Ok(rx) => rx.recv_timeout(Duration::from_millis(50)),
            Err(_) => Err(std::sync::mpsc::RecvTimeoutError::Disconnected),
        });
        match received {
            Ok(v) => {
                let _ = handle.join();
                return Ok(v);
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if let Err(e) = py.check_signals() {
                    cancel.store(true, Ordering::SeqCst);
                    let _ = py.detach(|| handle.join());
                    return Err(e);
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                let _ = handle.join();
                return Err(PyRuntimeError::new_err(
                    "giantstep: internal error: the worker thread stopped without a result (please report)",
                ));
            }
        }
    }
}

/// Resolves a configuration and returns it as JSON (every default explicit).
#[pyfunction]
fn resolve_config(toml_text: &str, source: &str, overrides: Vec<(String, String)>) -> PyResult<String> {
    let cfg = build_config(toml_text, source, &overrides)
        .and_then(|c| c.resolve())
        .map_err(to_py)?;
    serde_json::to_string(&cfg).map_err(|e| PyRuntimeError::new_err(e.to_string()))
}

/// A 2-D float64 array as a row-major vector, checking its shape.
fn array(name: &str, a: Option<PyReadonlyArrayDyn<'_, f64>>, shape: &[usize]) -> PyResult<Option<Vec<f64>>> {
    let Some(a) = a else { return Ok(None) };
    if a.shape() != shape {
        return Err(PyValueError::new_err(format!(
            "{name} must have shape {}, but has shape {}",
            tuple(shape),
            tuple(a.shape())
        )));
    }
    let v = a.as_array().iter().copied().collect::<Vec<f64>>();
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(PyValueError::new_err(format!(
            "{name} must be finite, but its entry {i} (flat index) is {}",
            v[i]
        )));
    }
    Ok(Some(v))
}

fn tuple(shape: &[usize]) -> String {
    match shape {
        [n] => format!("({n},)"),
        s => format!("({})", s.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ")),
    }
}

/// Keeps the first Python exception a callback raised (to be raised unchanged once the run
/// stops) and returns its message for the engine's error.
fn keep_raised(raised: &Mutex<Option<PyErr>>, e: PyErr) -> String {
    let msg = Python::attach(|py| e.value(py).to_string());
    if let Ok(mut slot) = raised.lock() {
        slot.get_or_insert(e);
    }
    msg
}

/// A Python callable as the run's target: called once per chunk with the teacher coordinates
/// (`m × r` float64) and returning `m` labels; its exception is kept to be raised unchanged.
fn python_target(f: Py<PyAny>, name: String, r: usize, raised: Arc<Mutex<Option<PyErr>>>) -> CustomTarget {
    let call = move |x: &[f64], y: &mut [f64]| -> Result<(), String> {
        Python::attach(|py| -> PyResult<()> {
            let m = y.len();
            let coords = PyArray1::from_slice(py, x).reshape([m, r])?;
            let out = f.call1(py, (coords,))?;
            let out = py
                .import("numpy")?
                .call_method1("asarray", (out, "float64"))?
                .call_method0("ravel")?;
            let out: PyReadonlyArrayDyn<f64> = out.extract()?;
            let out = out.as_array();
            if out.len() != m {
                return Err(PyValueError::new_err(format!(
                    "the target function must return one label per row ({m}), but returned {}",
                    out.len()
                )));
            }
            if let Some(i) = out.iter().position(|v| !v.is_finite()) {
                let row: Vec<String> = x[i * r..(i + 1) * r].iter().map(|v| format!("{v:.4}")).collect();
                return Err(PyValueError::new_err(format!(
                    "the target function must return finite labels, but returned {} at row {i} (x = [{}])",
                    out[i],
                    row.join(", ")
                )));
            }
            y.iter_mut().zip(out.iter()).for_each(|(a, b)| *a = *b);
            Ok(())
        })
        .map_err(|e| keep_raised(&raised, e))
    };
    CustomTarget {
        name: format!("<python: {name}>"),
        f: Arc::new(call),
    }
}

/// A pair of Python callables `(σ, σ')` as the run's activation: each called once per chunk
/// with the pre-activations (`m × p` float64), returning arrays of that shape; their exception is
/// kept to be raised unchanged.
fn python_activation(
    sigma: Py<PyAny>,
    dsigma: Py<PyAny>,
    name: String,
    p: usize,
    raised: Arc<Mutex<Option<PyErr>>>,
) -> giantstep::activation::CustomActivation {
    let call = move |h: &[f64], s: &mut [f64], ds: Option<&mut [f64]>| -> Result<(), String> {
        Python::attach(|py| -> PyResult<()> {
            let m = h.len() / p.max(1);
            let pre = PyArray1::from_slice(py, h).reshape([m, p])?;
            let np = py.import("numpy")?;
            let fill = |f: &Py<PyAny>, what: &str, out: &mut [f64]| -> PyResult<()> {
                let v = f.call1(py, (pre.clone(),))?;
                let v = np.call_method1("asarray", (v, "float64"))?.call_method0("ravel")?;
                let v: PyReadonlyArrayDyn<f64> = v.extract()?;
                let v = v.as_array();
                if v.len() != out.len() {
                    return Err(PyValueError::new_err(format!(
                        "{what} must return an array of the pre-activations' shape ({m}, {p}), but returned {} values",
                        v.len()
                    )));
                }
                out.iter_mut().zip(v.iter()).for_each(|(a, b)| *a = *b);
                Ok(())
            };
            fill(&sigma, "the activation σ", s)?;
            if let Some(ds) = ds {
                fill(&dsigma, "the derivative σ'", ds)?;
            }
            Ok(())
        })
        .map_err(|e| keep_raised(&raised, e))
    };
    giantstep::activation::CustomActivation::new(format!("<python: {name}>"), Arc::new(call))
}

/// Reports phases and steps to a Python callable `progress(kind, t, of)`.
struct PyObserver(Py<PyAny>);

impl Observer for PyObserver {
    fn phase(&mut self, phase: Phase) {
        let (kind, t, of) = match phase {
            Phase::Step { t, of } => ("step", t, of),
            Phase::Theory => ("theory", 0, 0),
            Phase::Readout => ("readout", 0, 0),
            Phase::Test => ("test", 0, 0),
        };
        Python::attach(|py| {
            let _ = self.0.call1(py, (kind, t, of));
        });
    }
    fn step_finished(&mut self, record: &StepRecord) {
        Python::attach(|py| {
            let _ = self.0.call1(py, ("step_done", record.t, 0));
        });
    }
}

/// The warnings the command line prints before a run (threads beyond four per core, a run of
/// more than ten minutes here), for a configuration; lowers the threads as the CLI does.
fn before_run(
    toml_text: &str,
    source: &str,
    overrides: &[(String, String)],
) -> Result<(ValidConfig, Vec<String>), Error> {
    let mut cfg = build_config(toml_text, source, overrides)?;
    let mut warnings: Vec<String> = giantstep::config::cap_threads(&mut cfg).into_iter().collect();
    let cfg = cfg.resolve()?;
    warnings.extend(giantstep::bench::long_run_warning(&cfg));
    Ok((cfg, warnings))
}

/// Runs one simulation; returns the JSON of the result, the weights when asked (with the state
/// after every step), and the warnings of before the run.
#[pyfunction]
#[pyo3(signature = (toml_text, source, overrides, w0=None, a=None, w_star=None, target=None, target_name=None, keep_weights=false, progress=None, keep_every_step=false, resume_layer=None, resume_steps=None, activation=None, activation_name=None))]
#[allow(clippy::too_many_arguments)]
fn run(
    py: Python<'_>,
    toml_text: &str,
    source: &str,
    overrides: Vec<(String, String)>,
    w0: Option<PyReadonlyArrayDyn<'_, f64>>,
    a: Option<PyReadonlyArrayDyn<'_, f64>>,
    w_star: Option<PyReadonlyArrayDyn<'_, f64>>,
    target: Option<Py<PyAny>>,
    target_name: Option<String>,
    keep_weights: bool,
    progress: Option<Py<PyAny>>,
    keep_every_step: bool,
    resume_layer: Option<PyReadonlyArrayDyn<'_, f64>>,
    resume_steps: Option<String>,
    activation: Option<(Py<PyAny>, Py<PyAny>)>,
    activation_name: Option<String>,
) -> PyResult<(String, Option<Py<PyDict>>, Vec<String>)> {
    let (cfg, warnings) = before_run(toml_text, source, &overrides).map_err(to_py)?;
    let (d, p, r) = (cfg.network.d, cfg.network.p, cfg.r());
    let w0 = array("W0", w0, &[p, d])?;
    let a = array("a", a, &[p])?;
    let w_star = array("W_star", w_star, &[r, d])?;
    let resume_layer = array("the layer to continue from (resume_from.W)", resume_layer, &[p, d])?;
    let resume_steps: Option<Vec<StepRecord>> = match resume_steps {
        Some(json) => Some(
            serde_json::from_str(&json)
                .map_err(|e| PyValueError::new_err(format!("resume_from: its steps do not read back: {e}")))?,
        ),
        None => None,
    };
    let raised = Arc::new(Mutex::new(None));
    let custom = target.map(|f| python_target(f, target_name.unwrap_or_else(|| "target".into()), r, raised.clone()));
    let custom_activation = activation.map(|(s, ds)| {
        python_activation(
            s,
            ds,
            activation_name.unwrap_or_else(|| "activation".into()),
            p,
            raised.clone(),
        )
    });
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = cancel.clone();
    let outcome = interruptible(py, cancel, move || {
        let mut observer = progress.map(PyObserver);
        let options = RunOptions {
            observer: observer.as_mut().map(|o| o as &mut dyn Observer),
            first_layer: w0.as_deref(),
            second_layer: a.as_deref(),
            teacher: w_star.as_deref(),
            target: custom,
            activation: custom_activation,
            cancel: Some(flag),
            keep_weights,
            keep_every_step,
            resume: match (&resume_layer, &resume_steps) {
                (Some(layer), Some(steps)) => Some(giantstep::Resume { layer, steps }),
                _ => None,
            },
            baselines: None,
        };
        giantstep::run_with(&cfg, options)
    })?;
    let result = match outcome {
        Ok(r) => r,
        Err(e @ (Error::Target(_) | Error::Activation(_))) => {
            return Err(raised
                .lock()
                .ok()
                .and_then(|mut s| s.take())
                .unwrap_or_else(|| to_py(e)));
        }
        Err(e) => return Err(to_py(e)),
    };
    let json = serde_json::to_string(&result).map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
    let weights = match result.weights {
        None => None,
        Some(w) => {
            let dict = PyDict::new(py);
            dict.set_item("W0", PyArray1::from_vec(py, w.w0).reshape([w.p, w.d])?)?;
            dict.set_item("W", PyArray1::from_vec(py, w.w).reshape([w.p, w.d])?)?;
            dict.set_item("a", PyArray1::from_vec(py, w.a))?;
            dict.set_item("W_star", PyArray1::from_vec(py, w.w_star).reshape([w.r, w.d])?)?;
            dict.set_item("readout", PyArray1::from_vec(py, w.readout))?;
            match w.rf_readout {
                Some(v) => dict.set_item("rf_readout", PyArray1::from_vec(py, v))?,
                None => dict.set_item("rf_readout", py.None())?,
            }
            let states = pyo3::types::PyList::empty(py);
            for st in w.steps {
                let s = PyDict::new(py);
                s.set_item("t", st.t)?;
                s.set_item("M", PyArray1::from_vec(py, st.m).reshape([w.p, w.r])?)?;
                s.set_item("Q", PyArray1::from_vec(py, st.q).reshape([w.p, w.p])?)?;
                match st.w {
                    Some(v) => s.set_item("W", PyArray1::from_vec(py, v).reshape([w.p, w.d])?)?,
                    None => s.set_item("W", py.None())?,
                }
                states.append(s)?;
            }
            dict.set_item("steps", states)?;
            Some(dict.unbind())
        }
    };
    Ok((json, weights, warnings))
}

/// A question of the theory from JSON: the fields given, the library's defaults for the rest.
fn from_json<T: serde::de::DeserializeOwned>(json: &str) -> PyResult<T> {
    serde_json::from_str(json).map_err(|e| {
        let msg = e.to_string();
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
        if msg.contains("invalid type") {
            PyTypeError::new_err(msg)
        } else {
            PyValueError::new_err(msg)
        }
    })
}

/// The defaults of `theory()`'s keywords, defined once in the library (`Query` and
/// `CurveQuery`), as JSON: `{"query": {...}, "curve": {...}}`.
#[pyfunction]
fn theory_defaults() -> PyResult<String> {
    serde_json::to_string(&serde_json::json!({
        "query": giantstep::theory::Query::default(),
        "curve": giantstep::prediction::CurveQuery::default(),
    }))
    .map_err(|e| PyRuntimeError::new_err(e.to_string()))
}

/// The theory report (`giantstep theory --json`) for a question given as JSON.
#[pyfunction]
fn theory(py: Python<'_>, query_json: &str) -> PyResult<String> {
    let query: giantstep::theory::Query = from_json(query_json)?;
    let cancel = Arc::new(AtomicBool::new(false));
    let token = giantstep::error::Cancel::new(cancel.clone());
    let report = interruptible(py, cancel, move || query.analyze_with(token))?.map_err(to_py)?;
    serde_json::to_string(&report).map_err(|e| PyRuntimeError::new_err(e.to_string()))
}

/// The predicted stairway (`giantstep theory --curve --json`): a theory question and a curve
/// question as JSON, then further configuration keys as dotted overrides.
#[pyfunction]
#[pyo3(signature = (query_json, curve_json, overrides))]
fn theory_curve(
    py: Python<'_>,
    query_json: &str,
    curve_json: &str,
    overrides: Vec<(String, String)>,
) -> PyResult<String> {
    let query: giantstep::theory::Query = from_json(query_json)?;
    let c: giantstep::prediction::CurveQuery = from_json(curve_json)?;
    let mut table = c.base_table(&query).map_err(to_py)?;
    set_overrides(&mut table, &overrides).map_err(to_py)?;
    let base = Config::from_table(table).map_err(to_py)?;
    base.resolve().map_err(to_py)?;
    let kappas = c.kappas().map_err(to_py)?;
    let seeds = c.seed_list().map_err(to_py)?;
    let cancel = Arc::new(AtomicBool::new(false));
    let token = giantstep::error::Cancel::new(cancel.clone());
    let steps = query.steps;
    let work_base = base.clone();
    let form = c.form().map_err(to_py)?;
    let curve = interruptible(py, cancel, move || {
        giantstep::prediction::curve_form_with(&work_base, &kappas, steps, &seeds, form, &token)
    })?
    .map_err(to_py)?;
    serde_json::to_string(&serde_json::json!({ "config": base, "curve": curve, "form": form.name() }))
        .map_err(|e| PyRuntimeError::new_err(e.to_string()))
}

/// Runs the points of a plan that `out` does not hold yet; returns the summary as JSON.
#[pyfunction]
#[pyo3(signature = (plan_text, source, out, jobs=1, threads=None, progress=None, plan_json=None, target=None, target_name=None))]
#[allow(clippy::too_many_arguments)]
fn sweep(
    py: Python<'_>,
    plan_text: &str,
    source: &str,
    out: PathBuf,
    jobs: usize,
    threads: Option<usize>,
    progress: Option<Py<PyAny>>,
    plan_json: Option<&str>,
    target: Option<Py<PyAny>>,
    target_name: Option<String>,
) -> PyResult<String> {
    let plan = match plan_json {
        Some(json) => {
            let value: serde_json::Value = serde_json::from_str(json)
                .map_err(|e| PyValueError::new_err(format!("the plan is not a mapping of values: {e}")))?;
            let table: toml::Table = toml::Value::try_from(&value)
                .ok()
                .and_then(|v| v.as_table().cloned())
                .ok_or_else(|| PyTypeError::new_err("the plan must be a dict with base and axes"))?;
            Plan::from_table(table)
        }
        None => Plan::from_toml(plan_text, source),
    }
    .map_err(to_py)?;
    let mut plan = plan;
    if target.is_some() {
        // The function replaces the plan's target expression; r comes from base.target.r.
        let section = plan
            .base
            .entry("target")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let Some(section) = section.as_table_mut() else {
            return Err(PyTypeError::new_err("the plan's base.target must be a table"));
        };
        if section.contains_key("expr") || section.contains_key("preset") {
            return Err(PyValueError::new_err(
                "give target= or the plan's base.target.expr/preset, not both",
            ));
        }
        section.insert("expr".into(), toml::Value::String("0".into()));
    }
    let raised = Arc::new(Mutex::new(None));
    let custom = match target {
        Some(f) => {
            let r = Config::from_table(plan.base.clone())
                .and_then(|c| c.resolve())
                .map_err(to_py)?
                .r();
            Some(python_target(
                f,
                target_name.unwrap_or_else(|| "target".into()),
                r,
                raised.clone(),
            ))
        }
        None => None,
    };
    let cancel = Arc::new(AtomicBool::new(false));
    let options = SweepOptions {
        shard: None,
        jobs: jobs.max(1),
        threads,
        cancel: Some(cancel.clone()),
        target: custom,
    };
    let outcome = interruptible(py, cancel, move || {
        let report = |p: Progress<'_>| {
            let Some(cb) = &progress else { return };
            let (kind, a, b) = match p {
                Progress::Start { todo, total, .. } => ("start", todo, total),
                Progress::Done { point, .. } => ("done", point.index, 0),
            };
            Python::attach(|py| {
                let _ = cb.call1(py, (kind, a, b));
            });
        };
        run_sweep(&plan, &out, &options, &report)
    })?;
    if let Some(e) = raised.lock().ok().and_then(|mut s| s.take()) {
        return Err(e);
    }
    let summary = outcome.map_err(to_py)?;
    Ok(format!(
        "{{\"points\": {}, \"skipped\": {}, \"ran\": {}, \"failed\": {}}}",
        summary.shard_points, summary.skipped, summary.ran, summary.failed
    ))
}

/// The records of a record file as JSON lines (complete records only).
#[pyfunction]
fn load_records(py: Python<'_>, path: PathBuf) -> PyResult<Vec<String>> {
    let (records, _) = py.detach(|| read_records(&path)).map_err(to_py)?;
    records
        .iter()
        .map(|r| serde_json::to_string(r).map_err(|e| PyRuntimeError::new_err(e.to_string())))
        .collect()
}

/// The version of the Rust library.
#[pyfunction]
fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(resolve_config, m)?)?;
    m.add_function(wrap_pyfunction!(run, m)?)?;
    m.add_function(wrap_pyfunction!(theory, m)?)?;
    m.add_function(wrap_pyfunction!(theory_curve, m)?)?;
    m.add_function(wrap_pyfunction!(theory_defaults, m)?)?;
    m.add_function(wrap_pyfunction!(sweep, m)?)?;
    m.add_function(wrap_pyfunction!(load_records, m)?)?;
    m.add_function(wrap_pyfunction!(version, m)?)?;
    m.add("ConfigError", m.py().get_type::<ConfigError>())?;
    m.add("ConfigTypeError", m.py().get_type::<ConfigTypeError>())?;
    Ok(())
}
