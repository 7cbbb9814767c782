//! Shared by the integration tests: fixture loading, running a model in ONNX Runtime,
//! comparing with a tolerance, and the Python `onnx` checker.

#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use thunderbolt_builder::{DType, Input, Layer, ModelSpec, Output, Tensor};

pub use thunderbolt_testkit::{mismatch, ort_env, repo_root, run};

/// One case written by `scripts/gen_builder_fixtures.py`.
pub struct Fixture {
    pub name: String,
    pub rtol: f64,
    pub atol: f64,
    pub spec: ModelSpec,
    pub feeds: Vec<(String, Tensor)>,
    pub expected: Vec<(String, Tensor)>,
}

pub fn load_fixtures() -> Vec<Fixture> {
    let dir = repo_root().join("test/fixtures/builder");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    assert!(
        !paths.is_empty(),
        "no fixtures in {}; run scripts/gen_builder_fixtures.py",
        dir.display()
    );
    paths.iter().map(|p| load_fixture(p)).collect()
}

fn load_fixture(path: &Path) -> Fixture {
    let text = std::fs::read_to_string(path).expect("read fixture");
    let doc: Value = serde_json::from_str(&text).expect("fixture JSON");
    let spec = &doc["spec"];
    let str_of = |v: &Value| v.as_str().expect("string").to_string();
    let named_tensors = |v: &Value| -> Vec<(String, Tensor)> {
        v.as_object()
            .expect("object")
            .iter()
            .map(|(k, t)| (k.clone(), tensor(t)))
            .collect()
    };
    Fixture {
        name: str_of(&doc["name"]),
        rtol: doc["rtol"].as_f64().expect("rtol"),
        atol: doc["atol"].as_f64().expect("atol"),
        spec: ModelSpec {
            name: str_of(&spec["name"]),
            opset: spec["opset"].as_i64(),
            inputs: array(&spec["inputs"])
                .iter()
                .map(|i| Input {
                    name: str_of(&i["name"]),
                    dtype: DType::from_name(i["dtype"].as_str().expect("dtype"))
                        .expect("known dtype"),
                    shape: array(&i["shape"])
                        .iter()
                        .map(|d| d.as_u64().map(|n| n as usize))
                        .collect(),
                })
                .collect(),
            layers: array(&spec["layers"])
                .iter()
                .map(|l| Layer {
                    name: str_of(&l["name"]),
                    class_name: str_of(&l["class_name"]),
                    config: l["config"].clone(),
                    inbound: array(&l["inbound"]).iter().map(str_of).collect(),
                    weights: array(&l["weights"]).iter().map(tensor).collect(),
                })
                .collect(),
            outputs: array(&spec["outputs"])
                .iter()
                .map(|o| Output {
                    name: str_of(&o["name"]),
                    source: str_of(&o["source"]),
                })
                .collect(),
        },
        feeds: named_tensors(&doc["feeds"]),
        expected: named_tensors(&doc["expected"]),
    }
}

fn array(v: &Value) -> &Vec<Value> {
    v.as_array().expect("array")
}

fn tensor(v: &Value) -> Tensor {
    let hex = v["data"].as_str().expect("hex data");
    let data = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect();
    Tensor {
        dtype: DType::from_name(v["dtype"].as_str().expect("dtype")).expect("known dtype"),
        shape: array(&v["shape"])
            .iter()
            .map(|d| d.as_u64().expect("dim") as usize)
            .collect(),
        data,
    }
}

/// The project's virtualenv Python (with `onnx`), which `scripts/setup.sh` makes; the
/// checker tests fail, naming it, when it is absent.
pub fn python() -> PathBuf {
    let py = repo_root().join(".venv/bin/python");
    assert!(
        py.is_file(),
        "{} not found; run scripts/setup.sh for the onnx checker",
        py.display()
    );
    py
}

/// Runs `onnx.checker.check_model(model, full_check=True)` on every file; `Err` lists the
/// failures.
pub fn onnx_check(python: &Path, models: &[PathBuf]) -> Result<(), String> {
    const SCRIPT: &str = "
import sys, onnx
failed = []
for path in sys.argv[1:]:
    try:
        onnx.checker.check_model(onnx.load(path), full_check=True)
    except Exception as e:
        failed.append(f'{path}: {e}')
print('\\n'.join(failed))
sys.exit(1 if failed else 0)
";
    let out = Command::new(python)
        .arg("-c")
        .arg(SCRIPT)
        .args(models)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A fresh directory under the system temp dir for this test.
pub fn scratch_dir(tag: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("thunderbolt_builder_{tag}_{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}
