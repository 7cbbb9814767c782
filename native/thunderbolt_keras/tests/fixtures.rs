//! End-to-end: every Keras fixture converts, runs in ONNX Runtime and matches Keras's own
//! predictions (written by scripts/gen_keras_fixtures.py) within 1e-5 relative + absolute
//! (a mixed-precision fixture within its own, wider `tolerance`).

mod support;

use support::{load_fixtures, mismatch_within, ort_env, run};

#[test]
fn every_fixture_matches_keras_predictions() {
    let env = ort_env();
    let fixtures = load_fixtures();
    let mut failures = Vec::new();
    for f in &fixtures {
        let bytes = std::fs::read(&f.model).expect("fixture model");
        let onnx = match thunderbolt_keras::convert(bytes, &f.import_options()) {
            Ok(onnx) => onnx,
            Err(e) => {
                failures.push(format!("{}: conversion failed: {e}", f.name));
                continue;
            }
        };
        let names: Vec<&str> = f.outputs.iter().map(|(n, _)| n.as_str()).collect();
        match run(env, &onnx, &f.inputs, &names) {
            Err(e) => failures.push(format!("{}: {e}", f.name)),
            Ok(got) => {
                for ((name, expected), got) in f.outputs.iter().zip(&got) {
                    if let Some(m) = mismatch_within(got, expected, f.tolerance()) {
                        failures.push(format!("{} output {name}: {m}", f.name));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches in {} fixtures:\n{}",
        failures.len(),
        fixtures.len(),
        failures.join("\n")
    );
    let wider = fixtures.iter().filter(|f| f.tolerance() != 1e-5).count();
    println!(
        "{} Keras fixtures match Keras within 1e-5 ({wider} mixed-precision within their own tolerance)",
        fixtures.len() - wider
    );
}

#[test]
fn conversion_is_deterministic() {
    for f in load_fixtures() {
        let bytes = std::fs::read(&f.model).expect("fixture model");
        let a = thunderbolt_keras::convert(bytes.clone(), &f.import_options()).expect("convert");
        let b = thunderbolt_keras::convert(bytes, &f.import_options()).expect("convert");
        assert!(a == b, "{}: two conversions differ", f.name);
    }
}
