//! The one ONNX Runtime environment of this OS process.
//!
//! ONNX Runtime allows a single environment per process, and `ort` loads the
//! shared library once. Both happen lazily, on the first `load`, under a
//! `OnceLock`, so concurrent first callers race safely and later callers pay
//! nothing. A failure is remembered and reported to every caller, because the
//! library cannot be swapped inside a running process.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;

use crate::error::{Result, RuntimeError};

/// The ONNX Runtime release this build was written and tested against.
pub const EXPECTED_ORT_VERSION: &str = "1.31.1";
/// The oldest minor release `ort` 2.0.0-rc.15 accepts (it needs API 31).
const MIN_MINOR: u32 = 31;

const FIX_HINT: &str =
    "run `./scripts/setup.sh` (it fetches libonnxruntime.so.1.31.1 into priv/onnxruntime/), \
or point THUNDERBOLT_ORT_LIB or `config :thunderbolt, :ort_lib` at an ONNX Runtime >= 1.31 shared library";

struct Loaded {
    env: Environment,
    path: PathBuf,
    version: String,
}

static LOADED: OnceLock<std::result::Result<Loaded, String>> = OnceLock::new();

/// Returns the process-wide environment, loading ONNX Runtime from `path` on
/// first use. Later calls ignore `path`: the library is already in memory.
pub fn get_or_init(path: &Path) -> Result<&'static Environment> {
    match LOADED.get_or_init(|| init(path)) {
        Ok(loaded) => Ok(&loaded.env),
        Err(message) => Err(RuntimeError::Library(message.clone())),
    }
}

/// The environment, if it has been created.
pub fn get() -> Option<&'static Environment> {
    match LOADED.get() {
        Some(Ok(loaded)) => Some(&loaded.env),
        _ => None,
    }
}

/// The path and version of the loaded library, once loaded.
pub fn loaded_library() -> Option<(&'static Path, &'static str)> {
    match LOADED.get() {
        Some(Ok(loaded)) => Some((loaded.path.as_path(), loaded.version.as_str())),
        _ => None,
    }
}

fn init(path: &Path) -> std::result::Result<Loaded, String> {
    if !path.is_file() {
        return Err(format!(
            "ONNX Runtime library not found at {}: {FIX_HINT}",
            path.display()
        ));
    }
    let version = read_version(path)?;
    if !version_supported(&version) {
        return Err(format!(
            "ONNX Runtime at {} is version {version}, but Thunderbolt needs >= 1.{MIN_MINOR}: {FIX_HINT}",
            path.display()
        ));
    }
    // `ort` panics in a few internal asserts when handed a broken library;
    // a panic must never cross into the VM, so it becomes an error here.
    let built = std::panic::catch_unwind(|| -> std::result::Result<Environment, String> {
        let builder = ort::init_from(path).map_err(|e| e.to_string())?;
        builder
            .with_name("thunderbolt")
            .with_telemetry(false)
            .build()
            .map_err(|e| e.to_string())
    })
    .map_err(|_| {
        format!(
            "ONNX Runtime at {} could not be initialised: {FIX_HINT}",
            path.display()
        )
    })?;
    let env = built.map_err(|e| format!("{e}: {FIX_HINT}"))?;
    // As for sessions: what fails comes back as a value or a warning (an
    // accelerator that will not start, say), not as a line on the VM's
    // stderr.
    env.set_log_level(ort::logging::LogLevel::Fatal);
    Ok(Loaded {
        env,
        path: path.to_path_buf(),
        version,
    })
}

fn version_supported(version: &str) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    matches!((parts.next(), parts.next()), (Some(Some(1)), Some(Some(minor))) if minor >= MIN_MINOR)
}

/// Reads `OrtGetApiBase()->GetVersionString()` without initialising `ort`,
/// so a wrong library is refused before anything else touches it.
fn read_version(path: &Path) -> std::result::Result<String, String> {
    // SAFETY: loading a shared library runs its initialisers; that is the
    // documented way to use ONNX Runtime and the same thing `ort` does next.
    let lib = unsafe { libloading::Library::new(path) }
        .map_err(|e| format!("could not open {}: {e}: {FIX_HINT}", path.display()))?;
    type GetApiBase = unsafe extern "C" fn() -> *const ort::sys::OrtApiBase;
    // SAFETY: the symbol has this signature in every ONNX Runtime release.
    let getter = unsafe { lib.get::<GetApiBase>(b"OrtGetApiBase") }.map_err(|_| {
        format!(
            "{} is not an ONNX Runtime library (no OrtGetApiBase): {FIX_HINT}",
            path.display()
        )
    })?;
    // SAFETY: OrtGetApiBase returns a pointer to a static table.
    let base = unsafe { getter() };
    if base.is_null() {
        return Err(format!(
            "{} returned no API base: {FIX_HINT}",
            path.display()
        ));
    }
    // SAFETY: GetVersionString returns a static NUL-terminated string.
    let version = unsafe { std::ffi::CStr::from_ptr(((*base).GetVersionString)()) };
    let version = version.to_string_lossy().into_owned();
    // Keep the library mapped: `ort` opens it again and both handles share
    // one mapping, so dropping ours early would only cost a reload.
    std::mem::forget(lib);
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_library_is_an_error_that_says_how_to_fix_it() {
        let err = init(Path::new("/nonexistent/libonnxruntime.so"))
            .err()
            .unwrap();
        assert!(err.contains("not found"), "{err}");
        assert!(err.contains("scripts/setup.sh"), "{err}");
    }

    #[test]
    fn only_releases_with_api_31_are_supported() {
        assert!(version_supported("1.31.1"));
        assert!(version_supported("1.32.0"));
        assert!(!version_supported("1.20.1"));
        assert!(!version_supported("2.0.0"));
        assert!(!version_supported("garbage"));
    }

    #[test]
    fn a_file_that_is_not_a_library_is_refused() {
        let dir = std::env::temp_dir().join(format!("tb-notalib-{}", std::process::id()));
        std::fs::write(&dir, b"not an ELF file").unwrap();
        let err = init(&dir).err().unwrap();
        std::fs::remove_file(&dir).ok();
        assert!(err.contains("could not open"), "{err}");
    }
}
