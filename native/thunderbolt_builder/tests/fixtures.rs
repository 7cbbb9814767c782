//! Tier 2/3: every fixture from `scripts/gen_builder_fixtures.py` is built, run in ONNX
//! Runtime and compared with the NumPy reference outputs; every built model passes the
//! `onnx` checker with `full_check=True`.

mod support;

use support::{load_fixtures, mismatch, onnx_check, ort_env, python, run, scratch_dir};
use thunderbolt_builder::build;

#[test]
fn every_fixture_matches_the_numpy_reference_in_onnx_runtime() {
    let Some(env) = ort_env() else { return };
    let mut failures = Vec::new();
    let mut checked = 0;
    for f in load_fixtures() {
        let bytes = match build(&f.spec) {
            Ok(b) => b,
            Err(e) => {
                failures.push(format!("{}: build failed: {e}", f.name));
                continue;
            }
        };
        let names: Vec<&str> = f.expected.iter().map(|(n, _)| n.as_str()).collect();
        match run(env, &bytes, &f.feeds, &names) {
            Err(e) => failures.push(format!("{}: {e}", f.name)),
            Ok(outputs) => {
                for ((name, expected), got) in f.expected.iter().zip(&outputs) {
                    checked += 1;
                    if let Some(m) = mismatch(got, expected, f.rtol, f.atol) {
                        failures.push(format!("{} output {name}: {m}", f.name));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} outputs failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked > 100, "only {checked} outputs compared");
}

#[test]
fn every_fixture_model_passes_the_onnx_checker() {
    let Some(py) = python() else { return };
    let dir = scratch_dir("checker");
    let paths: Vec<_> = load_fixtures()
        .iter()
        .map(|f| {
            let path = dir.join(format!("{}.onnx", f.name));
            std::fs::write(&path, build(&f.spec).expect("build")).expect("write model");
            path
        })
        .collect();
    let result = onnx_check(&py, &paths);
    let _ = std::fs::remove_dir_all(&dir);
    result.unwrap();
}

#[test]
fn building_is_deterministic_across_fixtures() {
    for f in load_fixtures() {
        assert_eq!(
            build(&f.spec).unwrap(),
            build(&f.spec).unwrap(),
            "{}",
            f.name
        );
    }
}
