//! Rebuilds `../shared/models/cerebros_trained.onnx` (Embedding(1000, 64) →
//! GlobalAveragePooling1D → Dense(128, relu) → Dense(128, relu) → Dense(1000)) from the
//! weights stored in that file, through the builder, and checks that ONNX Runtime gives the
//! same logits for both. Skips with a message when the shared models are absent.

mod support;

use onnx_protobuf::{Message, ModelProto};
use serde_json::json;
use support::{mismatch, onnx_check, ort_env, python, repo_root, run, scratch_dir};
use thunderbolt_builder::{build, DType, Input, Layer, ModelSpec, Output, Tensor};

const VOCAB: usize = 1000;
const SEQ: usize = 40;

fn reference_model() -> Option<(Vec<u8>, ModelProto)> {
    let path = repo_root().join("../shared/models/cerebros_trained.onnx");
    let Ok(bytes) = std::fs::read(&path) else {
        eprintln!(
            "SKIPPED: {} not found (the shared reference models are absent)",
            path.display()
        );
        return None;
    };
    let model = ModelProto::parse_from_bytes(&bytes).expect("parse cerebros_trained.onnx");
    Some((bytes, model))
}

fn weight(model: &ModelProto, name: &str) -> Tensor {
    let t = model
        .graph
        .initializer
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("initializer {name} missing"));
    assert_eq!(
        DType::from_onnx(t.data_type),
        Some(DType::F32),
        "{name} is not float32"
    );
    let shape = t.dims.iter().map(|&d| d as usize).collect();
    if t.raw_data.is_empty() {
        Tensor::from_f32(shape, &t.float_data)
    } else {
        Tensor {
            dtype: DType::F32,
            shape,
            data: t.raw_data.clone(),
        }
    }
}

fn dense(
    name: &str,
    inbound: &str,
    units: usize,
    activation: &str,
    model: &ModelProto,
    prefix: &str,
) -> Layer {
    Layer {
        name: name.into(),
        class_name: "Dense".into(),
        config: json!({"units": units, "activation": activation, "use_bias": true}),
        inbound: vec![inbound.into()],
        weights: vec![
            weight(model, &format!("{prefix}_weight")),
            weight(model, &format!("{prefix}_bias")),
        ],
    }
}

/// The spec the Keras importer would produce from `cerebros_trained.keras` (same layer
/// names and configs), with the weights of the ONNX file.
fn spec(model: &ModelProto, ids: DType) -> ModelSpec {
    ModelSpec {
        name: "cerebros".into(),
        inputs: vec![Input {
            name: "input_ids".into(),
            dtype: ids,
            shape: vec![None, Some(SEQ)],
        }],
        layers: vec![
            Layer {
                name: "embedding".into(),
                class_name: "Embedding".into(),
                config: json!({"input_dim": VOCAB, "output_dim": 64, "mask_zero": false}),
                inbound: vec!["input_ids".into()],
                weights: vec![weight(model, "embed_weight")],
            },
            Layer {
                name: "pooling".into(),
                class_name: "GlobalAveragePooling1D".into(),
                config: json!({"data_format": "channels_last", "keepdims": false}),
                inbound: vec!["embedding".into()],
                weights: vec![],
            },
            dense("dense1", "pooling", 128, "relu", model, "dense1"),
            dense("dense2", "dense1", 128, "relu", model, "dense2"),
            dense("logits", "dense2", VOCAB, "linear", model, "logits"),
        ],
        outputs: vec![Output {
            name: "logits".into(),
            source: "logits".into(),
        }],
        opset: None,
    }
}

/// Deterministic token ids covering the vocabulary's ends.
fn ids(batch: usize) -> Vec<i64> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut out: Vec<i64> = (0..batch * SEQ)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 33) % VOCAB as u64) as i64
        })
        .collect();
    out[0] = 0;
    out[batch * SEQ - 1] = VOCAB as i64 - 1;
    out
}

#[test]
fn rebuilt_cerebros_gives_the_original_logits() {
    let Some((original, model)) = reference_model() else {
        return;
    };
    let env = ort_env();
    let rebuilt = build(&spec(&model, DType::I64)).expect("build cerebros");
    let rebuilt_i32 = build(&spec(&model, DType::I32)).expect("build cerebros with int32 ids");
    for batch in [1, 7] {
        let ids = ids(batch);
        let feed64 = vec![(
            "input_ids".to_string(),
            Tensor::from_i64(vec![batch, SEQ], &ids),
        )];
        let ids32: Vec<i32> = ids.iter().map(|&i| i as i32).collect();
        let feed32 = vec![(
            "input_ids".to_string(),
            Tensor::from_i32(vec![batch, SEQ], &ids32),
        )];
        let expected = &run(env, &original, &feed64, &["logits"]).expect("run original")[0];
        assert_eq!(expected.shape, vec![batch, VOCAB]);
        for (label, bytes, feed) in [
            ("int64", &rebuilt, &feed64),
            ("int32", &rebuilt_i32, &feed32),
        ] {
            let got = &run(env, bytes, feed, &["logits"]).expect("run rebuilt")[0];
            if let Some(m) = mismatch(got, expected, 1e-5, 1e-6) {
                panic!("batch {batch}, {label} ids: {m}");
            }
        }
    }
}

#[test]
fn rebuilt_cerebros_passes_the_onnx_checker_and_has_all_parameters() {
    let Some((_, model)) = reference_model() else {
        return;
    };
    let spec = spec(&model, DType::I64);
    let params: usize = spec
        .layers
        .iter()
        .flat_map(|l| &l.weights)
        .map(|w| w.shape.iter().product::<usize>())
        .sum();
    assert_eq!(params, 217_832);
    let bytes = build(&spec).expect("build cerebros");
    let rebuilt = ModelProto::parse_from_bytes(&bytes).expect("parse rebuilt");
    let ops: Vec<&str> = rebuilt
        .graph
        .node
        .iter()
        .map(|n| n.op_type.as_str())
        .collect();
    assert_eq!(
        ops,
        [
            "Gather",
            "ReduceMean",
            "MatMul",
            "Add",
            "Relu",
            "MatMul",
            "Add",
            "Relu",
            "MatMul",
            "Add"
        ]
    );
    let py = python();
    let dir = scratch_dir("cerebros");
    let path = dir.join("cerebros_rebuilt.onnx");
    std::fs::write(&path, &bytes).expect("write");
    let result = onnx_check(&py, &[path]);
    let _ = std::fs::remove_dir_all(&dir);
    result.unwrap();
}
