//! Checks the CUDA execution provider end to end on a machine with an
//! NVIDIA GPU: loads `cerebros_trained.onnx` once on the CPU and once with
//! `[Cuda, Cpu]`, as `Thunderbolt.load(path, execution_providers: [:cuda])`
//! does, and compares the two at batch 1 and 32 before timing both.
//!
//!     THUNDERBOLT_ORT_LIB=.../libonnxruntime.so.1.31.1 \
//!       cargo run --release -p thunderbolt_runtime --example cuda_check -- MODEL [ITERATIONS]
//!
//! The library must come from the `onnxruntime-gpu` wheel, with
//! `libonnxruntime_providers_shared.so` and
//! `libonnxruntime_providers_cuda.so` beside it. Prints one JSON object per
//! line; exits non-zero when CUDA is missing or the outputs disagree.

#[path = "common/latency.rs"]
mod latency;

use std::path::Path;

use thunderbolt_runtime::{
    environment, ElementType, ExecutionProvider, Model, ModelSource, SessionOptions, TensorView,
};

/// float32 logits from two providers differ in summation order only.
const TOLERANCE: f32 = 1e-3;

fn main() -> Result<(), latency::Error> {
    let (model, iterations, lib) = latency::args("cuda_check")?;
    environment::get_or_init(Path::new(&lib))?;
    let source = ModelSource::File(Path::new(&model));
    let cpu = Model::load(source, &options(vec![ExecutionProvider::Cpu]))?;
    let cuda = Model::load(
        source,
        &options(vec![ExecutionProvider::Cuda, ExecutionProvider::Cpu]),
    )?;
    println!(
        "{{\"providers\": {:?}, \"warnings\": {:?}}}",
        cuda.info().providers,
        cuda.info().warnings
    );
    if cuda.info().providers.first().map(String::as_str) != Some("CUDAExecutionProvider") {
        return Err("the session was not built with CUDAExecutionProvider".into());
    }

    for batch in [1usize, 32] {
        let ids: Vec<i64> = (0..batch * 40).map(|i| (i * 37 % 1000) as i64).collect();
        let expected = logits(&cpu, batch, &ids)?;
        let got = logits(&cuda, batch, &ids)?;
        let max_diff = expected
            .iter()
            .zip(&got)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        println!(
            "{{\"batch\": {batch}, \"elements\": {}, \"max_abs_diff\": {max_diff:e}}}",
            got.len()
        );
        if got.len() != expected.len() || max_diff.is_nan() || max_diff > TOLERANCE {
            return Err(format!("CUDA and CPU disagree at batch {batch}").into());
        }
    }

    for (name, model) in [("cpu", &cpu), ("cuda", &cuda)] {
        let report = latency::report(iterations, |batch, ids| {
            std::hint::black_box(logits(model, batch, ids)?);
            Ok(())
        })?;
        println!("{{\"provider\": \"{name}\", \"latency_us\": {report}}}");
    }
    Ok(())
}

fn options(execution_providers: Vec<ExecutionProvider>) -> SessionOptions {
    SessionOptions {
        intra_op_threads: Some(1),
        inter_op_threads: Some(1),
        execution_providers,
        ..SessionOptions::default()
    }
}

/// The model's first output as floats, for `batch` rows of 40 token ids.
fn logits(model: &Model, batch: usize, ids: &[i64]) -> Result<Vec<f32>, latency::Error> {
    let bytes: Vec<u8> = ids.iter().flat_map(|i| i.to_ne_bytes()).collect();
    let shape = [batch as i64, 40];
    let view = TensorView::new(ElementType::S64, &shape, &bytes)?;
    let mut outputs = model.run(&[view], Some(&[0]), |out| {
        Ok(out
            .data
            .chunks_exact(4)
            .map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect::<Vec<f32>>())
    })?;
    Ok(outputs.remove(0))
}
