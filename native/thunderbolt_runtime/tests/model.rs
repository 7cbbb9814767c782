//! Runs real models through the runtime crate alone, without the BEAM.
//! Needs `./scripts/setup.sh` (for the ONNX Runtime library); tests on the
//! reference models skip with a message when ../shared/models is absent.

use std::path::{Path, PathBuf};

use thunderbolt_runtime::{
    environment, ElementType, Model, ModelSource, RuntimeError, SessionOptions, TensorView,
};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn init() {
    let lib = std::env::var("THUNDERBOLT_ORT_LIB")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo().join("priv/onnxruntime/libonnxruntime.so.1.31.1"));
    environment::get_or_init(&lib).expect("run ./scripts/setup.sh to fetch ONNX Runtime");
}

fn bytes_f32(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_ne_bytes()).collect()
}

#[test]
fn runs_a_multi_output_model_and_selects_outputs() {
    init();
    let path = repo().join("test/fixtures/runtime/multi_io.onnx");
    let model = Model::load(ModelSource::File(&path), &SessionOptions::default()).unwrap();
    let info = model.info();
    assert_eq!(info.inputs.len(), 3);
    assert_eq!(info.outputs[3].element_type, Some(ElementType::Bool));

    let a = bytes_f32(&[1.0, -2.0, 3.0, 4.0]);
    let b = bytes_f32(&[0.5, 0.5, -5.0, 1.0]);
    let n: Vec<u8> = 3i64.to_ne_bytes().to_vec();
    let inputs = [
        TensorView::new(ElementType::F32, &[1, 4], &a).unwrap(),
        TensorView::new(ElementType::F32, &[1, 4], &b).unwrap(),
        TensorView::new(ElementType::S64, &[1], &n).unwrap(),
    ];
    let outputs = model
        .run(&inputs, Some(&[0, 2]), |out| {
            Ok((out.name.to_string(), out.shape, out.data.to_vec()))
        })
        .unwrap();
    assert_eq!(outputs[0].0, "sum");
    assert_eq!(outputs[0].2, bytes_f32(&[1.5, -1.5, -2.0, 5.0]));
    assert_eq!(outputs[1].0, "n_squared");
    assert_eq!(outputs[1].2, 9i64.to_ne_bytes().to_vec());
    assert!(model
        .timer()
        .estimate(a.len() + b.len() + n.len())
        .is_some());
}

#[test]
fn refuses_bad_inputs_and_models() {
    init();
    let path = repo().join("test/fixtures/runtime/multi_io.onnx");
    let model = Model::load(ModelSource::File(&path), &SessionOptions::default()).unwrap();
    let a = bytes_f32(&[1.0; 4]);
    let one = [TensorView::new(ElementType::F32, &[1, 4], &a).unwrap()];
    let err = model.run(&one, None, |_| Ok(())).unwrap_err();
    assert!(matches!(err, RuntimeError::InvalidInput(_)), "{err}");

    let garbage = Model::load(ModelSource::Bytes(b"garbage"), &SessionOptions::default());
    assert!(matches!(garbage, Err(RuntimeError::Load(_))));
    let dir = Model::load(ModelSource::File(&repo()), &SessionOptions::default());
    assert!(dir.unwrap_err().to_string().contains("is a directory"));
}

#[test]
fn matches_the_reference_model_shape() {
    let path = repo().join("../shared/models/cerebros_trained.onnx");
    if !path.exists() {
        eprintln!("skipping: {} is absent", path.display());
        return;
    }
    init();
    let model = Model::load(ModelSource::File(&path), &SessionOptions::default()).unwrap();
    let ids: Vec<u8> = (0..40i64).flat_map(|i| i.to_ne_bytes()).collect();
    let view = [TensorView::new(ElementType::S64, &[1, 40], &ids).unwrap()];
    let shapes = model
        .run(&view, None, |out| Ok(out.shape.to_vec()))
        .unwrap();
    assert_eq!(shapes, vec![vec![1, 1000]]);
}
