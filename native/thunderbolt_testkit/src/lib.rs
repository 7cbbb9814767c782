//! What the builder's and the importer's integration tests share: the repository root,
//! the ONNX Runtime environment that `scripts/setup.sh` installs, running a serialized
//! model on builder tensors, and comparing outputs with a tolerance. Tests only.

use ort::environment::Environment;
use ort::session::{Session, SessionInputValue};
use ort::value::Tensor as OrtTensor;
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use thunderbolt_builder::{DType, Tensor};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The process-wide ONNX Runtime environment. The suites need the library that
/// `scripts/setup.sh` installs: without it they fail, naming it, rather than pass having
/// run nothing.
pub fn ort_env() -> &'static Environment {
    static ENV: OnceLock<Environment> = OnceLock::new();
    ENV.get_or_init(|| {
        let lib = repo_root().join("priv/onnxruntime/libonnxruntime.so.1.31.1");
        assert!(
            lib.is_file(),
            "ONNX Runtime not found at {}; run scripts/setup.sh",
            lib.display()
        );
        ort::init_from(&lib)
            .expect("load ONNX Runtime")
            .build()
            .expect("ORT environment")
    })
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
            DType::U8 => {
                OrtTensor::from_array((shape, values.iter().map(|&v| v as u8).collect::<Vec<_>>()))
                    .map(Into::into)
            }
            DType::I8 => {
                OrtTensor::from_array((shape, values.iter().map(|&v| v as i8).collect::<Vec<_>>()))
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
                } else if let Ok((s, d)) = v.try_extract_tensor::<u8>() {
                    (DType::U8, s.to_vec(), d.to_vec())
                } else if let Ok((s, d)) = v.try_extract_tensor::<bool>() {
                    // Compared as uint8, the type Thunderbolt gives bool outputs.
                    (
                        DType::U8,
                        s.to_vec(),
                        d.iter().map(|&b| u8::from(b)).collect(),
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
/// `atol + rtol * |expected|`, NaN where and only where a NaN is expected); otherwise a
/// description of the first mismatch.
pub fn mismatch(got: &Tensor, expected: &Tensor, rtol: f64, atol: f64) -> Option<String> {
    if got.dtype != expected.dtype || got.shape != expected.shape {
        return Some(format!(
            "got {} {:?}, expected {} {:?}",
            got.dtype, got.shape, expected.dtype, expected.shape
        ));
    }
    let (g, e) = (got.to_f64_vec(), expected.to_f64_vec());
    let bad =
        g.iter().zip(&e).enumerate().find(|(_, (g, e))| {
            (*g - *e).abs() > atol + rtol * e.abs() || g.is_nan() != e.is_nan()
        });
    bad.map(|(i, (g, e))| {
        format!(
            "element {i}: got {g}, expected {e} (|diff| {:.3e})",
            (g - e).abs()
        )
    })
}
