//! Tier 2/3: every fixture from `scripts/gen_builder_fixtures.py` is built, run in ONNX
//! Runtime and compared with the NumPy reference outputs; every built model passes the
//! `onnx` checker with `full_check=True`.

mod support;

use support::{load_fixtures, mismatch, onnx_check, ort_env, python, run, scratch_dir};
use thunderbolt_builder::{build, build_model, build_owned, encode_into, encoded_len};

#[test]
fn every_fixture_matches_the_numpy_reference_in_onnx_runtime() {
    let env = ort_env();
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
    let py = python();
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
fn building_is_deterministic_and_every_entry_point_gives_the_same_bytes() {
    for f in load_fixtures() {
        let bytes = build(&f.spec).unwrap();
        assert_eq!(bytes, build(&f.spec).unwrap(), "{}", f.name);
        assert_eq!(
            bytes,
            build_owned(f.spec.clone()).unwrap(),
            "{}: build_owned",
            f.name
        );
        let model = build_model(&f.spec).unwrap();
        let mut out = vec![0u8; encoded_len(&model).unwrap()];
        encode_into(&model, &mut out).unwrap();
        assert_eq!(bytes, out, "{}: encode_into", f.name);
        let mut short = vec![0u8; out.len() - 1];
        assert!(
            encode_into(&model, &mut short).is_err(),
            "{}: short buffer",
            f.name
        );
    }
}
