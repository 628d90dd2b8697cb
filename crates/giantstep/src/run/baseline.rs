//! Random-features baselines shared between the runs of a sweep.

use crate::config::ValidConfig;
use crate::engine::Readout;

/// Random-features baselines (the ridge readout of the initial layer and its test error) by
/// everything that determines them: the resolved configuration without the learning rate and
/// the number of steps, and the readout batch. Runs that differ only in the learning rate
/// (a sweep over `eta0`) or that read out the same batch share one baseline; a shared baseline
/// is bit-identical to a recomputed one, so records do not depend on sharing.
#[derive(Debug, Default)]
pub struct BaselineCache {
    entries: std::sync::Mutex<std::collections::HashMap<String, (Readout, f64)>>,
}

impl BaselineCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Baselines held.
    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    /// Whether no baseline is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(super) fn get(&self, key: &str) -> Option<(Readout, f64)> {
        self.entries.lock().ok()?.get(key).cloned()
    }

    pub(super) fn insert(&self, key: String, value: (Readout, f64)) {
        if let Ok(mut e) = self.entries.lock() {
            e.entry(key).or_insert(value);
        }
    }
}

/// The part of a resolved configuration a random-features baseline depends on.
pub(super) fn baseline_config_key(cfg: &ValidConfig) -> String {
    let mut v = serde_json::to_value(cfg).expect("serializable");
    if let Some(train) = v.get_mut("train").and_then(|t| t.as_object_mut()) {
        for k in [
            "steps",
            "eta0",
            "eta_exp",
            "eta",
            "eta_max0",
            "eta_schedule",
            "eta_max0_later",
        ] {
            train.remove(k);
        }
    }
    v.to_string()
}
