//! CUDA through a GPU build of ONNX Runtime, which CI does not fetch (the
//! `onnxruntime-gpu` wheel is 256 MB). Ignored unless asked for:
//!
//!     THUNDERBOLT_ORT_GPU_LIB=.../onnxruntime/capi/libonnxruntime.so.1.31.1 \
//!       cargo test --release -p thunderbolt_runtime --test gpu_build -- --ignored
//!
//! Its own test binary, since a process holds one ONNX Runtime environment.
//! On a machine with a working GPU the session must run on CUDA and agree
//! with the CPU; anywhere else (no CUDA libraries, no device) loading must
//! still succeed on the CPU and say why CUDA was dropped.

use std::path::{Path, PathBuf};

use thunderbolt_runtime::{
    environment, ElementType, ExecutionProvider, Model, ModelSource, SessionOptions, TensorView,
};

const CUDA: &str = "CUDAExecutionProvider";
const CPU: &str = "CPUExecutionProvider";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../test/fixtures/runtime")
        .join(name)
}

fn init() {
    let lib = std::env::var("THUNDERBOLT_ORT_GPU_LIB")
        .expect("THUNDERBOLT_ORT_GPU_LIB must name the onnxruntime-gpu wheel's library");
    environment::get_or_init(Path::new(&lib)).expect("the GPU build of ONNX Runtime loads");
}

fn options(execution_providers: Vec<ExecutionProvider>, pool_size: usize) -> SessionOptions {
    SessionOptions {
        execution_providers,
        pool_size,
        ..SessionOptions::default()
    }
}

fn sum_outputs(model: &Model) -> Vec<Vec<u8>> {
    let a: Vec<u8> = [1.0f32, -2.0, 3.0, 4.0]
        .iter()
        .flat_map(|v| v.to_ne_bytes())
        .collect();
    let b: Vec<u8> = [0.5f32, 0.5, -5.0, 1.0]
        .iter()
        .flat_map(|v| v.to_ne_bytes())
        .collect();
    let n = 3i64.to_ne_bytes();
    let views = [
        TensorView::new(ElementType::F32, &[1, 4], &a).unwrap(),
        TensorView::new(ElementType::F32, &[1, 4], &b).unwrap(),
        TensorView::new(ElementType::S64, &[1], &n).unwrap(),
    ];
    model
        .run(&views, None, |out| Ok(out.data.to_vec()))
        .unwrap()
}

#[test]
#[ignore = "needs THUNDERBOLT_ORT_GPU_LIB, a GPU build of ONNX Runtime"]
fn cuda_runs_or_degrades_to_cpu_with_a_reason() {
    init();
    let path = fixture("multi_io.onnx");
    let source = ModelSource::File(&path);
    let cpu = Model::load(source, &options(vec![ExecutionProvider::Cpu], 1)).unwrap();
    // A pool of three: the sessions after the first must agree with it.
    let cuda = Model::load(
        source,
        &options(vec![ExecutionProvider::Cuda, ExecutionProvider::Cpu], 3),
    )
    .expect("asking for CUDA never fails a load that CPU can do");
    let info = cuda.info();
    match info.providers.first().map(String::as_str) {
        Some(CUDA) => {
            assert_eq!(info.providers, [CUDA, CPU]);
            assert!(info.warnings.is_empty(), "{:?}", info.warnings);
        }
        _ => {
            assert_eq!(info.providers, [CPU]);
            assert_eq!(info.warnings.len(), 1, "one reason, not one per session");
            assert!(info.warnings[0].starts_with(CUDA), "{:?}", info.warnings);
        }
    }
    let expected = sum_outputs(&cpu);
    for _ in 0..3 {
        assert_eq!(sum_outputs(&cuda), expected);
    }
}

#[test]
#[ignore = "needs THUNDERBOLT_ORT_GPU_LIB, a GPU build of ONNX Runtime"]
fn a_model_that_cpu_cannot_load_gets_the_cpu_error() {
    init();
    let garbage = b"not an onnx model".to_vec();
    let err = Model::load(
        ModelSource::Bytes(&garbage),
        &options(vec![ExecutionProvider::Cuda, ExecutionProvider::Cpu], 1),
    )
    .expect_err("garbage does not load");
    let message = err.to_string();
    assert!(!message.contains(CUDA), "{message}");
}
