//! Runs real models through the runtime crate alone, without the BEAM.
//! Needs `./scripts/setup.sh` (for the ONNX Runtime library); tests on the
//! reference models skip with a message when ../shared/models is absent.

use std::path::{Path, PathBuf};

use thunderbolt_runtime::{
    environment, ElementType, Model, ModelSource, OutputBytes, RuntimeError, SessionOptions,
    TensorView,
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

/// `multi_io.onnx`'s inputs `a`, `b` and `n` as bytes, and as views.
fn multi_io_bytes() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let a = bytes_f32(&[1.0, -2.0, 3.0, 4.0]);
    let b = bytes_f32(&[0.5, 0.5, -5.0, 1.0]);
    (a, b, 3i64.to_ne_bytes().to_vec())
}

fn multi_io_views<'a>(a: &'a [u8], b: &'a [u8], n: &'a [u8]) -> [TensorView<'a>; 3] {
    [
        TensorView::new(ElementType::F32, &[1, 4], a).unwrap(),
        TensorView::new(ElementType::F32, &[1, 4], b).unwrap(),
        TensorView::new(ElementType::S64, &[1], n).unwrap(),
    ]
}

#[test]
fn runs_a_multi_output_model_and_selects_outputs() {
    init();
    let path = repo().join("test/fixtures/runtime/multi_io.onnx");
    let model = Model::load(ModelSource::File(&path), &SessionOptions::default()).unwrap();
    let info = model.info();
    assert_eq!(info.inputs.len(), 3);
    assert_eq!(info.outputs[3].element_type, Some(ElementType::Bool));

    let (a, b, n) = multi_io_bytes();
    let inputs = multi_io_views(&a, &b, &n);
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

#[test]
fn writes_outputs_into_given_buffers_once_the_input_shape_was_seen() {
    init();
    let path = repo().join("test/fixtures/runtime/multi_io.onnx");
    let model = Model::load(ModelSource::File(&path), &SessionOptions::default()).unwrap();
    let (a, b, n) = multi_io_bytes();
    let inputs = multi_io_views(&a, &b, &n);
    let without_flags = |r: Vec<(Vec<i64>, Vec<u8>, bool)>| {
        r.into_iter().map(|(s, d, _)| (s, d)).collect::<Vec<_>>()
    };

    let first = run_offering_buffers(&model, &inputs, None);
    assert!(first.iter().all(|o| !o.2), "nothing planned yet");
    let second = run_offering_buffers(&model, &inputs, None);
    assert!(second.iter().all(|o| o.2));
    assert_eq!(
        without_flags(first),
        without_flags(second),
        "the same shapes and bytes"
    );

    // Another selection is planned on its own.
    assert!(!run_offering_buffers(&model, &inputs, Some(&[2, 0]))[0].2);
    assert!(run_offering_buffers(&model, &inputs, Some(&[2, 0]))
        .iter()
        .all(|o| o.2));

    // A caller that declines to allocate gets ONNX Runtime's bytes.
    let declined = model
        .run_into(
            &inputs,
            None,
            |_| None::<Vec<u8>>,
            |out| Ok(matches!(out.data, OutputBytes::Borrowed(_))),
        )
        .unwrap();
    assert!(declined.iter().all(|borrowed| *borrowed));
}

/// `run_into` with buffers offered, answering each output's shape, bytes
/// and whether ONNX Runtime wrote it into the offered buffer.
fn run_offering_buffers(
    model: &Model,
    inputs: &[TensorView<'_>],
    selected: Option<&[usize]>,
) -> Vec<(Vec<i64>, Vec<u8>, bool)> {
    model
        .run_into(
            inputs,
            selected,
            |bytes| Some(vec![0xAAu8; bytes]),
            |out| {
                Ok(match out.data {
                    OutputBytes::Borrowed(d) => (out.shape.to_vec(), d.to_vec(), false),
                    OutputBytes::Written(v) => (out.shape.to_vec(), v, true),
                })
            },
        )
        .unwrap()
}

#[test]
fn an_output_shape_that_depends_on_the_values_stops_the_planning() {
    init();
    let path = repo().join("test/fixtures/runtime/nonzero.onnx");
    let model = Model::load(ModelSource::File(&path), &SessionOptions::default()).unwrap();
    let two = bytes_f32(&[0.0, 1.0, 0.0, 2.0]);
    let three = bytes_f32(&[3.0, 1.0, 0.0, 2.0]);
    let view = |b| [TensorView::new(ElementType::F32, &[4], b).unwrap()];
    let indices = |v: &[i64]| v.iter().flat_map(|i| i.to_ne_bytes()).collect::<Vec<u8>>();

    assert_eq!(
        run_offering_buffers(&model, &view(&two), None),
        vec![(vec![1, 2], indices(&[1, 3]), false)]
    );
    // Planned as [1, 2] from the run before; the run needs [1, 3].
    assert_eq!(
        run_offering_buffers(&model, &view(&three), None),
        vec![(vec![1, 3], indices(&[0, 1, 3]), false)]
    );
    // And it is not planned again.
    assert_eq!(
        run_offering_buffers(&model, &view(&three), None),
        vec![(vec![1, 3], indices(&[0, 1, 3]), false)]
    );
}

#[test]
fn identity_and_empty_outputs_are_right_with_buffers_offered() {
    init();
    let path = repo().join("test/fixtures/runtime/identity_f32.onnx");
    let model = Model::load(ModelSource::File(&path), &SessionOptions::default()).unwrap();
    let data = bytes_f32(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let rows = [TensorView::new(ElementType::F32, &[2, 3], &data).unwrap()];
    let first = run_offering_buffers(&model, &rows, None);
    let second = run_offering_buffers(&model, &rows, None);
    assert_eq!(first, vec![(vec![2, 3], data.clone(), false)]);
    assert_eq!(second, vec![(vec![2, 3], data.clone(), true)]);

    let none = [TensorView::new(ElementType::F32, &[0, 3], &[]).unwrap()];
    for _ in 0..2 {
        let out = run_offering_buffers(&model, &none, None);
        assert_eq!(out[0].0, vec![0, 3]);
        assert!(out[0].1.is_empty());
    }
}

#[test]
fn constant_and_pass_through_outputs_fill_the_buffers_too() {
    init();
    let path = repo().join("test/fixtures/runtime/constant_output.onnx");
    let model = Model::load(ModelSource::File(&path), &SessionOptions::default()).unwrap();
    let data = bytes_f32(&[1.0, 2.0, 3.0]);
    let inputs = [TensorView::new(ElementType::F32, &[1, 3], &data).unwrap()];
    let expected = vec![
        (vec![1, 3], data.clone()),
        (vec![2], bytes_f32(&[7.0, 8.0])),
    ];
    for written in [false, true, true] {
        let out = run_offering_buffers(&model, &inputs, None);
        assert_eq!(
            out.iter()
                .map(|(s, d, _)| (s.clone(), d.clone()))
                .collect::<Vec<_>>(),
            expected
        );
        assert!(out.iter().all(|o| o.2 == written));
    }
}
