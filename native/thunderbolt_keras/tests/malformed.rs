//! Malformed and unsupported input: each case gives a clear error, never a panic. Cases are
//! made from a real fixture (`text_classifier.keras`) changed in one place.

mod support;

use serde_json::json;
use support::{fixture_dir, keras2_fixture_dir, keras_zip, H5Data, KerasParts};
use thunderbolt_keras::{convert, ImportError, ImportOptions};

fn base() -> KerasParts {
    KerasParts::read(&fixture_dir().join("text_classifier.keras"))
}

fn base_bytes() -> Vec<u8> {
    std::fs::read(fixture_dir().join("text_classifier.keras")).expect("fixture")
}

fn error_of(bytes: Vec<u8>) -> String {
    match convert(bytes, &ImportOptions::default()) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

fn assert_contains(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(
            message.contains(part),
            "{message:?} does not mention {part:?}"
        );
    }
}

/// Sets `keras_history` of the (single) tensor argument of `layer`'s first call.
fn point_input_at(parts: &mut KerasParts, layer: &str, source: &str) {
    parts.layer_mut(layer)["inbound_nodes"][0]["args"][0]["config"]["keras_history"] =
        json!([source, 0, 0]);
}

#[test]
fn not_a_zip() {
    let err = error_of(b"this is plain text, not a model".to_vec());
    assert_contains(
        &err,
        &[
            "not a Keras model",
            "expected a .keras zip archive or a legacy .h5",
        ],
    );
}

#[test]
fn zip_without_config_json() {
    let bytes = keras_zip(&[("model.weights.h5", base().weights_h5())]);
    let err = error_of(bytes);
    assert_contains(&err, &["no config.json entry", "model.weights.h5"]);
}

#[test]
fn zip_without_weights() {
    let bytes = keras_zip(&[("config.json", base().config.to_string().into_bytes())]);
    assert_contains(
        &error_of(bytes),
        &["no model.weights.h5 entry", "config.json"],
    );
}

#[test]
fn truncated_zip() {
    let bytes = base_bytes();
    for cut in [10, bytes.len() / 3, bytes.len() / 2, bytes.len() - 10] {
        let err = error_of(bytes[..cut].to_vec());
        assert_contains(&err, &["invalid .keras archive"]);
    }
}

#[test]
fn config_is_not_json_or_not_a_model() {
    let weights = base().weights_h5();
    let bytes = keras_zip(&[
        ("config.json", b"{\"class_name\": ".to_vec()),
        ("model.weights.h5", weights.clone()),
    ]);
    assert_contains(&error_of(bytes), &["invalid model config JSON"]);
    let bytes = keras_zip(&[
        ("config.json", b"[1, 2]".to_vec()),
        ("model.weights.h5", weights),
    ]);
    assert_contains(
        &error_of(bytes),
        &["invalid model config", "not a JSON object"],
    );
}

#[test]
fn truncated_hdf5_weights() {
    let parts = base();
    let config = parts.config.to_string().into_bytes();
    let h5 = parts.weights_h5();
    let mut cuts: Vec<usize> = (0..h5.len()).step_by(h5.len() / 40).collect();
    cuts.extend([0, 7, 8, 100, h5.len() - 1]);
    for cut in cuts {
        let bytes = keras_zip(&[
            ("config.json", config.clone()),
            ("model.weights.h5", h5[..cut].to_vec()),
        ]);
        let err = convert(bytes, &ImportOptions::default());
        assert!(
            err.is_err(),
            "weights cut to {cut} of {} bytes were accepted",
            h5.len()
        );
        assert!(
            matches!(err, Err(ImportError::Hdf5 { .. })),
            "cut {cut}: {:?}",
            err.err()
        );
    }
}

#[test]
fn corrupt_hdf5_weights_never_panic() {
    let parts = base();
    let config = parts.config.to_string().into_bytes();
    let h5 = parts.weights_h5();
    let mut errors = 0;
    // Every byte of the metadata at the start of the file, set to two different values.
    for pos in 0..h5.len().min(2048) {
        for value in [0x00, 0xff] {
            let mut bad = h5.clone();
            if bad[pos] == value {
                continue;
            }
            bad[pos] = value;
            let bytes = keras_zip(&[("config.json", config.clone()), ("model.weights.h5", bad)]);
            if convert(bytes, &ImportOptions::default()).is_err() {
                errors += 1;
            }
        }
    }
    assert!(errors > 100, "only {errors} corruptions were detected");
    let mut bad = h5.clone();
    bad[0] = b'X';
    let bytes = keras_zip(&[("config.json", config), ("model.weights.h5", bad)]);
    assert_contains(
        &error_of(bytes),
        &["invalid HDF5 weights (model.weights.h5)"],
    );
}

#[test]
fn missing_weight() {
    let mut parts = base();
    parts.weights.remove("layers/dense_1/vars/1");
    assert_contains(
        &error_of(parts.to_keras()),
        &["\"dense2\"", "Dense", "expects 2 weight", "got 1"],
    );

    let mut parts = base();
    parts.weights.remove("layers/dense_1/vars/0");
    assert_contains(
        &error_of(parts.to_keras()),
        &["layers/dense_1/vars", "not numbered"],
    );
}

#[test]
fn misshapen_weight() {
    let mut parts = base();
    parts.weights.insert(
        "layers/dense_1/vars/0".into(),
        H5Data::F32(vec![16, 15], vec![0.5; 16 * 15]),
    );
    assert_contains(
        &error_of(parts.to_keras()),
        &["\"dense2\"", "kernel", "[16, 15]"],
    );
}

#[test]
fn unknown_weight_dtype() {
    let mut parts = base();
    parts.weights.insert(
        "layers/dense/vars/1".into(),
        H5Data::U32(vec![16], vec![1; 16]),
    );
    assert_contains(
        &error_of(parts.to_keras()),
        &["layers/dense/vars/1", "unsupported 32-bit unsigned integer"],
    );
}

#[test]
fn unknown_input_dtype() {
    let mut parts = base();
    parts.layer_mut("input_ids")["config"]["dtype"] = json!("complex64");
    assert_contains(
        &error_of(parts.to_keras()),
        &["input \"input_ids\"", "unsupported dtype \"complex64\""],
    );
}

#[test]
fn cyclic_graph() {
    let mut parts = base();
    point_input_at(&mut parts, "dense1", "dense2");
    let err = error_of(parts.to_keras());
    // Reached from the output: logits -> dense2 -> dense1 -> dense2.
    assert_contains(&err, &["cycle", "dense2 -> dense1 -> dense2"]);
}

#[test]
fn self_loop() {
    let mut parts = base();
    point_input_at(&mut parts, "dense1", "dense1");
    assert_contains(&error_of(parts.to_keras()), &["cycle", "dense1 -> dense1"]);
}

#[test]
fn dangling_reference() {
    let mut parts = base();
    point_input_at(&mut parts, "dense1", "nowhere");
    assert_contains(
        &error_of(parts.to_keras()),
        &["refers to layer \"nowhere\""],
    );
    let mut parts = base();
    parts.layer_mut("dense1")["inbound_nodes"][0]["args"][0]["config"]["keras_history"] =
        json!(["pooling", 3, 0]);
    assert_contains(
        &error_of(parts.to_keras()),
        &["call 3 of layer \"pooling\"", "1 call(s)"],
    );
}

#[test]
fn unsupported_layer_names_layer_class_and_registration() {
    let mut parts = base();
    parts.layer_mut("pooling")["class_name"] = json!("ConvLSTM2D");
    let err = error_of(parts.to_keras());
    assert_contains(
        &err,
        &[
            "layer \"pooling\"",
            "class ConvLSTM2D",
            "has no converter",
            "LayerRegistry",
            "custom_layers",
        ],
    );
}

/// A `keras.ops` call the importer does not convert is named with the ones it does; one it
/// converts but with an impossible argument gets the builder's message naming the layer.
#[test]
fn keras_operations_outside_the_supported_set_are_named() {
    let mut parts = base();
    let pooling = parts.layer_mut("pooling");
    pooling["class_name"] = json!("Split");
    pooling["module"] = json!("keras.src.ops.numpy");
    pooling["config"] = json!({"name": "pooling", "indices_or_sections": 2, "axis": -1});
    assert_contains(
        &error_of(parts.to_keras()),
        &[
            "layer \"pooling\"",
            "keras.ops.Split",
            "Matmul",
            "Einsum",
            "Argsort",
        ],
    );

    // Only rms_normalization's scale is taken by keyword: elsewhere its place is unknown.
    let mut parts = base();
    let pooling = parts.layer_mut("pooling");
    pooling["class_name"] = json!("Multiply");
    pooling["module"] = json!("keras.src.ops.numpy");
    pooling["config"] = json!({"name": "pooling"});
    let tensor = pooling["inbound_nodes"][0]["args"][0].clone();
    pooling["inbound_nodes"][0]["kwargs"] = json!({"x2": tensor});
    assert_contains(
        &error_of(parts.to_keras()),
        &[
            "\"pooling\" (Multiply)",
            "keyword argument \"x2\" is not supported",
        ],
    );

    let mut parts = base();
    let pooling = parts.layer_mut("pooling");
    pooling["class_name"] = json!("GetItem");
    pooling["module"] = json!("keras.src.ops.numpy");
    pooling["config"] = json!({"name": "pooling"});
    let tensor = pooling["inbound_nodes"][0]["args"][0].clone();
    pooling["inbound_nodes"][0]["args"] = json!([tensor.clone(), [tensor]]);
    assert_contains(
        &error_of(parts.to_keras()),
        &[
            "\"pooling\" (GetItem)",
            "indexing with a tensor is not supported",
        ],
    );

    let mut parts = base();
    let pooling = parts.layer_mut("pooling");
    pooling["class_name"] = json!("Mean");
    pooling["module"] = json!("keras.src.ops.numpy");
    pooling["config"] = json!({"name": "pooling", "axis": 7, "keepdims": false});
    assert_contains(
        &error_of(parts.to_keras()),
        &["pooling", "axis 7 is out of range for an input of rank 3"],
    );
}

/// A custom layer (registered name `mypkg>MeanPool`) is refused until it is mapped onto a
/// converter, then converts and still matches Keras.
#[test]
fn custom_registered_layer_maps_onto_a_converter() {
    let mut parts = base();
    let pooling = parts.layer_mut("pooling");
    pooling["class_name"] = json!("MeanPool");
    pooling["registered_name"] = json!("mypkg>MeanPool");
    let bytes = parts.to_keras();
    let err = error_of(bytes.clone());
    assert_contains(
        &err,
        &[
            "layer \"pooling\"",
            "class MeanPool",
            "(registered as \"mypkg>MeanPool\")",
            "custom_layers",
        ],
    );

    let mut options = ImportOptions::default();
    options
        .custom_layers
        .insert("mypkg>MeanPool".into(), "GlobalAveragePooling1D".into());
    let onnx = convert(bytes.clone(), &options).expect("mapped custom layer converts");
    check_against_text_classifier(&onnx);

    // From Rust, a converter of one's own, registered under a new class name.
    let mut registry = thunderbolt_keras::LayerRegistry::default();
    registry.register(
        "MyMeanPool",
        thunderbolt_builder::layers::global_pooling::GlobalPooling {
            op: thunderbolt_builder::layers::pooling::PoolOp::Average,
            rank: 1,
        },
    );
    options
        .custom_layers
        .insert("mypkg>MeanPool".into(), "MyMeanPool".into());
    assert!(
        convert(bytes.clone(), &options).is_err(),
        "the default registry has no MyMeanPool"
    );
    let onnx =
        thunderbolt_keras::convert_with(bytes, &options, &registry).expect("custom converter");
    check_against_text_classifier(&onnx);
}

fn check_against_text_classifier(onnx: &[u8]) {
    let env = support::ort_env();
    let fixtures = support::load_fixtures();
    let f = fixtures
        .iter()
        .find(|f| f.name == "text_classifier")
        .expect("fixture");
    let got = support::run(env, onnx, &f.inputs, &["logits"]).expect("run");
    assert_eq!(support::mismatch(&got[0], &f.outputs[0].1), None);
}

#[test]
fn weights_only_h5_is_refused() {
    let parts = base();
    let err = error_of(parts.weights_h5());
    assert_contains(&err, &["no model_config attribute", "weights only"]);
}

#[test]
fn options_are_validated() {
    let bytes = base_bytes();
    let options = ImportOptions {
        output_names: Some(vec!["a".into(), "b".into()]),
        ..Default::default()
    };
    let err = convert(bytes.clone(), &options).unwrap_err().to_string();
    assert_contains(&err, &["output_names has 2 name(s)", "1 output(s)"]);

    let mut options = ImportOptions::default();
    options
        .input_dtypes
        .insert("tokens".into(), thunderbolt_keras::DType::I64);
    let err = convert(bytes.clone(), &options).unwrap_err().to_string();
    assert_contains(&err, &["\"tokens\"", "not an input", "input_ids"]);

    let options = ImportOptions {
        opset: Some(5),
        ..Default::default()
    };
    let err = convert(bytes, &options).unwrap_err().to_string();
    assert_contains(&err, &["unsupported opset 5"]);
}

#[test]
fn options_rename_outputs_and_retype_inputs() {
    let spec = thunderbolt_keras::import(
        base_bytes(),
        &ImportOptions {
            output_names: Some(vec!["scores".into()]),
            input_dtype: Some(thunderbolt_keras::DType::I64),
            opset: Some(19),
            ..Default::default()
        },
    )
    .expect("import");
    assert_eq!(spec.outputs[0].name, "scores");
    assert_eq!(spec.outputs[0].source, "logits");
    assert_eq!(spec.inputs[0].dtype, thunderbolt_keras::DType::I64);
    assert_eq!(spec.inputs[0].shape, vec![None, Some(6)]);
    assert_eq!(spec.opset, Some(19));
    assert_eq!(
        spec.layers
            .iter()
            .map(|l| l.name.as_str())
            .collect::<Vec<_>>(),
        ["embedding", "pooling", "dense1", "dense2", "logits"]
    );
}

/// `masked_text.keras`: Embedding(mask_zero=True), whose mask Keras records as
/// `NotEqual(input_ids, 0)`, OR'd by the residual `Add`, and passes to `td_dense` and the
/// `average` pooling as their `mask` argument.
fn masked() -> KerasParts {
    KerasParts::read(&fixture_dir().join("masked_text.keras"))
}

#[test]
fn masks_other_than_keras_own_are_refused() {
    // A mask argument that is not computed from token ids.
    let mut parts = masked();
    parts.layer_mut("average")["inbound_nodes"][0]["kwargs"]["mask"]["config"]["keras_history"] =
        json!(["dense", 0, 0]);
    assert_contains(
        &error_of(parts.to_keras()),
        &[
            "layer \"average\" is given a mask computed by Dense \"dense\"",
            "only the masks of Embedding(mask_zero=True)",
        ],
    );

    // Padding id 5 instead of 0.
    let mut parts = masked();
    parts.layer_mut("not_equal")["inbound_nodes"][0]["args"][1] = json!(5);
    assert_contains(
        &error_of(parts.to_keras()),
        &["is given a mask computed by NotEqual \"not_equal\""],
    );

    // Keras recorded no mask for the pooling, though propagation brings one: averaging
    // over the unpadded steps would differ from what Keras computes.
    let mut parts = masked();
    parts.layer_mut("average")["inbound_nodes"][0]["kwargs"]
        .as_object_mut()
        .expect("kwargs")
        .remove("mask");
    assert_contains(
        &error_of(parts.to_keras()),
        &[
            "layer \"average\" (GlobalAveragePooling1D): Keras computes this layer with no mask, \
             but the mask propagated to it is the mask of {\"input_ids\"}",
        ],
    );
}

#[test]
fn concatenated_masks_other_than_keras_own_are_refused() {
    let concatenated = || KerasParts::read(&fixture_dir().join("masked_concat.keras"));

    // An unmasked input's part must be all steps (OnesLike).
    let mut parts = concatenated();
    parts.layer_mut("ones_like")["class_name"] = json!("ZerosLike");
    assert_contains(
        &error_of(parts.to_keras()),
        &[
            "layer \"avg_mixed\" is given a mask joined by Concatenate from ZerosLike \"ones_like\"",
            "only the masks of Embedding(mask_zero=True)",
        ],
    );

    // A masked input's part must be its mask broadcast over the last axis.
    let mut parts = concatenated();
    parts.layer_mut("expand_dims")["config"]["axis"] = json!(0);
    assert_contains(
        &error_of(parts.to_keras()),
        &["is given a mask joined by Concatenate from LogicalOr \"logical_or_2\""],
    );

    // Joined along another axis than the layer's, the recorded mask is not the one the
    // layers propagate.
    let mut parts = concatenated();
    parts.layer_mut("concatenate")["config"]["axis"] = json!(1);
    assert_contains(
        &error_of(parts.to_keras()),
        &[
            "Keras computes this layer with the mask of {\"concatenate(axis 1: [input_ids], \
             [input_ids])\"}, but the mask propagated to it is the mask of \
             {\"concatenate(axis -1: [input_ids], [input_ids])\"}",
        ],
    );
}

/// `masked_concat`'s `avg_features` given a chain of `levels` Concatenate masks over its own,
/// each joining the one before with itself, as a lattice's branches share their masks.
fn chained_concatenate_masks(levels: usize) -> Vec<u8> {
    let tensor = |layer: &str| {
        json!({"class_name": "__keras_tensor__",
               "config": {"shape": [null, 8], "dtype": "bool", "keras_history": [layer, 0, 0]}})
    };
    let op = |name: &str, class: &str, config: serde_json::Value, args: serde_json::Value| {
        let mut config = config;
        config["name"] = json!(name);
        json!({"module": "keras.src.ops.numpy", "class_name": class, "config": config,
               "registered_name": null, "name": name,
               "inbound_nodes": [{"args": args, "kwargs": {}}]})
    };
    let mut parts = KerasParts::read(&fixture_dir().join("masked_concat.keras"));
    let mut previous = "any_2".to_string();
    let mut chain = Vec::new();
    for i in 0..levels {
        let (expand, or, cat, any) = (
            format!("chain_expand_{i}"),
            format!("chain_or_{i}"),
            format!("chain_concatenate_{i}"),
            format!("chain_any_{i}"),
        );
        chain.push(op(
            &expand,
            "ExpandDims",
            json!({"axis": -1}),
            json!([tensor(&previous)]),
        ));
        chain.push(op(
            &or,
            "LogicalOr",
            json!({}),
            json!([tensor(&expand), tensor("zeros_like_2")]),
        ));
        chain.push(op(
            &cat,
            "Concatenate",
            json!({"axis": -1}),
            json!([[tensor(&or), tensor(&or)]]),
        ));
        chain.push(op(
            &any,
            "Any",
            json!({"axis": -1, "keepdims": false}),
            json!([tensor(&cat)]),
        ));
        previous = any;
    }
    parts.config["config"]["layers"]
        .as_array_mut()
        .expect("layers")
        .extend(chain);
    parts.layer_mut("avg_features")["inbound_nodes"][0]["kwargs"]["mask"]["config"]
        ["keras_history"] = json!([previous, 0, 0]);
    parts.to_keras()
}

#[test]
fn masks_nested_in_concatenates_are_followed_within_a_bound() {
    // 40 levels: 2^40 paths, each mask named once; the names stay short (a digest), and
    // this record is not what the layers propagate.
    assert_contains(
        &error_of(chained_concatenate_masks(40)),
        &[
            "layer \"avg_features\" (GlobalAveragePooling1D): Keras computes this layer with \
             the mask of {\"concatenate(axis -1: 2 masks, digest ",
            "but the mask propagated to it is the mask of {\"concatenate(axis -1: \
             [input_ids], [input_ids])\"}",
        ],
    );
    assert_contains(
        &error_of(chained_concatenate_masks(70)),
        &["layer \"avg_features\" is given a mask nested in more than 64 Concatenate layers"],
    );
}

#[test]
fn keras2_tensorflow_calls_outside_the_converted_set_are_refused() {
    // A tf.keras 2 functional graph: x -> tf.math.bincount(x), then calls with options the
    // conversion does not take (tf.gather with batch_dims, an exclusive tf.math.cumsum).
    let graph = |function: &str, kwargs: serde_json::Value| {
        json!({"class_name": "Functional", "config": {
            "name": "m",
            "layers": [
                {"class_name": "InputLayer", "name": "x", "inbound_nodes": [],
                 "config": {"batch_input_shape": [null, 4], "dtype": "float32", "name": "x"}},
                {"class_name": "TFOpLambda", "name": "call",
                 "config": {"name": "call", "function": function, "dtype": "float32"},
                 "inbound_nodes": [["x", 0, 0, kwargs]]}
            ],
            "input_layers": [["x", 0, 0]],
            "output_layers": [["call", 0, 0]]
        }})
    };
    let mut parts = KerasParts::read(&keras2_fixture_dir().join("keras2_zip_sequential.keras"));
    parts.config = graph("math.bincount", json!({}));
    assert_contains(
        &error_of(parts.to_keras()),
        &[
            "tf.math.bincount",
            "TensorFlow calls a tf.keras 2 functional graph records",
            "tf.math.reduce_mean",
        ],
    );
    parts.config = graph(
        "compat.v1.gather",
        json!({"indices": [0], "axis": 1, "batch_dims": 1}),
    );
    assert_contains(&error_of(parts.to_keras()), &["tf.compat.v1.gather"]);
    parts.config = graph("math.cumsum", json!({"axis": 1, "exclusive": true}));
    assert_contains(&error_of(parts.to_keras()), &["tf.math.cumsum"]);
    parts.config = graph(
        "linalg.matmul",
        json!({"b": ["x", 0, 0], "transpose_b": true}),
    );
    assert_contains(&error_of(parts.to_keras()), &["tf.linalg.matmul"]);
    // One it converts, with an argument it checks: an axis beyond the input's rank.
    parts.config = graph("math.reduce_mean", json!({"axis": 5}));
    assert_contains(
        &error_of(parts.to_keras()),
        &["axis 5 is out of range for an input of rank 2"],
    );
}

#[test]
fn a_mask_reaching_a_layer_that_cannot_apply_it_is_refused() {
    let mut parts = masked();
    parts.layer_mut("dropout")["class_name"] = json!("Softmax");
    assert_contains(
        &error_of(parts.to_keras()),
        &[
            "layer \"dropout\" (Softmax): receives the Keras mask made by \"embedding\" \
             (padding to skip), and the mask is not converted for this layer type",
        ],
    );
}
