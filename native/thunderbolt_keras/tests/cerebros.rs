//! `../shared/models/cerebros_trained.keras` converts to a model whose outputs equal those of
//! `cerebros_trained.onnx` (built from the same weights by the original Python exporter) on
//! the same token ids. Skipped, loudly, when the shared models are absent.

mod support;

use support::{mismatch, ort_env, run, shared_model};
use thunderbolt_builder::Tensor;
use thunderbolt_keras::{convert_file, DType, ImportOptions};

#[test]
fn cerebros_trained_matches_the_reference_onnx() {
    let (Some(keras), Some(reference)) = (
        shared_model("cerebros_trained.keras"),
        shared_model("cerebros_trained.onnx"),
    ) else {
        return;
    };
    let env = ort_env();
    // The reference model takes int64 ids, as the original tooling wrote it.
    let options = ImportOptions {
        input_dtype: Some(DType::I64),
        ..Default::default()
    };
    let converted = convert_file(&keras, &options).expect("convert cerebros_trained.keras");
    let reference = std::fs::read(reference).expect("read reference");

    // A fixed spread of ids over the 1000-token vocabulary, 4 rows of 40.
    let ids: Vec<i64> = (0..4 * 40).map(|i: i64| (i * 7919 + 13) % 1000).collect();
    let feeds = vec![("input_ids".to_string(), Tensor::from_i64(vec![4, 40], &ids))];
    let ours = run(env, &converted, &feeds, &["logits"]).expect("run converted");
    let theirs = run(env, &reference, &feeds, &["logits"]).expect("run reference");
    assert_eq!(ours[0].shape, vec![4, 1000]);
    assert_eq!(mismatch(&ours[0], &theirs[0]), None);
    let max_diff = ours[0]
        .to_f64_vec()
        .iter()
        .zip(theirs[0].to_f64_vec())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    println!("cerebros_trained: max |converted - reference| = {max_diff:e}");
    // Same weights, same ops (Gather, ReduceMean, MatMul, Add, Relu): bit for bit equal.
    assert_eq!(
        ours[0].data, theirs[0].data,
        "outputs differ by up to {max_diff:e}"
    );
}

#[test]
fn cerebros_trained_parameter_count() {
    let Some(keras) = shared_model("cerebros_trained.keras") else {
        return;
    };
    let onnx = convert_file(&keras, &ImportOptions::default()).expect("convert");
    // Embedding(1000, 64) + Dense(64->128) + Dense(128->128) + Dense(128->1000), per the
    // shared models README.
    assert_eq!(
        thunderbolt_keras::onnx_parameter_count(&onnx).expect("count"),
        217_832
    );
}
