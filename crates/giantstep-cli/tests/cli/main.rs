//! Command-line tests in one binary: `run` and `theory` (run.rs), sweeps, merge, plots,
//! reproduce and record-file safety (sweep.rs). The helpers are shared.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod run;
mod sweep;

/// The `giantstep` binary under test.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_giantstep"))
}

/// Runs the binary with `args` and collects its output.
pub fn run(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

/// A fresh temporary directory per test, removed when the test ends (also when it fails).
pub struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh, empty temporary directory named after the test, of its own: the process id and a per-process counter make it unique even
/// when two tests of one binary ask for the same name at the same time.
pub fn tempdir(name: &str) -> TempDir {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let k = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("giantstep-test-{}-{k}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}
