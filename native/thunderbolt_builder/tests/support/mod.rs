//! Shared by the integration tests: fixture loading, running a model in ONNX Runtime,
//! comparing with a tolerance, and the Python `onnx` checker.

#![allow(dead_code)]

use ort::environment::Environment;
use ort::session::{Session, SessionInputValue};
use ort::value::Tensor as OrtTensor;
use serde_json::Value;
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use thunderbolt_builder::{DType, Input, Layer, ModelSpec, Output, Tensor};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

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

/// The process-wide ONNX Runtime environment, or `None` (with a message) when the library
/// that `scripts/setup.sh` installs is absent.
pub fn ort_env() -> Option<&'static Environment> {
    static ENV: OnceLock<Option<Environment>> = OnceLock::new();
    ENV.get_or_init(|| {
        let lib = repo_root().join("priv/onnxruntime/libonnxruntime.so.1.31.1");
        if !lib.is_file() {
            eprintln!(
                "SKIPPED: ONNX Runtime not found at {}; run scripts/setup.sh",
                lib.display()
            );
            return None;
        }
        Some(
            ort::init_from(&lib)
                .expect("load ONNX Runtime")
                .build()
                .expect("ORT environment"),
        )
    })
    .as_ref()
}

/// Runs `model` on `feeds` and returns the named outputs as raw tensors.
pub fn run(
    env: &Environment,
    model: &[u8],
    feeds: &[(String, Tensor)],
    outputs: &[&str],
) -> Result<Vec<Tensor>, String> {
    let mut session = Session::builder(env)
        .map_err(|e| e.to_string())?
        .commit_from_memory(model)
        .map_err(|e| format!("ORT rejected the model: {e}"))?;
    let mut inputs: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = Vec::new();
    for (name, t) in feeds {
        let shape: Vec<i64> = t.shape.iter().map(|&d| d as i64).collect();
        let values = t.to_f64_vec();
        let value: SessionInputValue<'_> = match t.dtype {
            DType::F32 => {
                OrtTensor::from_array((shape, values.iter().map(|&v| v as f32).collect::<Vec<_>>()))
                    .map(Into::into)
            }
            DType::F64 => OrtTensor::from_array((shape, values)).map(Into::into),
            DType::I32 => {
                OrtTensor::from_array((shape, values.iter().map(|&v| v as i32).collect::<Vec<_>>()))
                    .map(Into::into)
            }
            DType::I64 => {
                OrtTensor::from_array((shape, values.iter().map(|&v| v as i64).collect::<Vec<_>>()))
                    .map(Into::into)
            }
            other => return Err(format!("feed dtype {other} not handled by the test")),
        }
        .map_err(|e| e.to_string())?;
        inputs.push((Cow::Owned(name.clone()), value));
    }
    let results = session
        .run(inputs)
        .map_err(|e| format!("ORT run failed: {e}"))?;
    outputs
        .iter()
        .map(|name| {
            let v = results
                .get(name)
                .ok_or_else(|| format!("no output named {name}"))?;
            let err = |e: ort::Error| e.to_string();
            let (dtype, shape, data): (DType, Vec<i64>, Vec<u8>) =
                if let Ok((s, d)) = v.try_extract_tensor::<f32>() {
                    (
                        DType::F32,
                        s.to_vec(),
                        d.iter().flat_map(|x| x.to_le_bytes()).collect(),
                    )
                } else if let Ok((s, d)) = v.try_extract_tensor::<f64>() {
                    (
                        DType::F64,
                        s.to_vec(),
                        d.iter().flat_map(|x| x.to_le_bytes()).collect(),
                    )
                } else if let Ok((s, d)) = v.try_extract_tensor::<i32>() {
                    (
                        DType::I32,
                        s.to_vec(),
                        d.iter().flat_map(|x| x.to_le_bytes()).collect(),
                    )
                } else {
                    let (s, d) = v.try_extract_tensor::<i64>().map_err(err)?;
                    (
                        DType::I64,
                        s.to_vec(),
                        d.iter().flat_map(|x| x.to_le_bytes()).collect(),
                    )
                };
            Ok(Tensor {
                dtype,
                shape: shape.iter().map(|&d| d as usize).collect(),
                data,
            })
        })
        .collect()
}

/// `None` when `got` matches `expected` (same dtype and shape, every element within
/// `atol + rtol * |expected|`); otherwise a description of the first mismatch.
pub fn mismatch(got: &Tensor, expected: &Tensor, rtol: f64, atol: f64) -> Option<String> {
    if got.dtype != expected.dtype || got.shape != expected.shape {
        return Some(format!(
            "got {} {:?}, expected {} {:?}",
            got.dtype, got.shape, expected.dtype, expected.shape
        ));
    }
    let (g, e) = (got.to_f64_vec(), expected.to_f64_vec());
    let bad = g
        .iter()
        .zip(&e)
        .enumerate()
        .find(|(_, (g, e))| (*g - *e).abs() > atol + rtol * e.abs() || g.is_nan());
    bad.map(|(i, (g, e))| {
        format!(
            "element {i}: got {g}, expected {e} (|diff| {:.3e})",
            (g - e).abs()
        )
    })
}

/// The project's virtualenv Python, or `None` (with a message) when absent.
pub fn python() -> Option<PathBuf> {
    let py = repo_root().join(".venv/bin/python");
    if py.is_file() {
        Some(py)
    } else {
        eprintln!(
            "SKIPPED: {} not found; run scripts/setup.sh for the onnx checker",
            py.display()
        );
        None
    }
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
