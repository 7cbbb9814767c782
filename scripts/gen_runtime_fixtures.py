"""Fixtures for the runtime tests: tiny ONNX models of every dtype and a
multi-input/multi-output graph, plus Python onnxruntime's outputs on the
reference models. Deterministic: re-running writes the same files.

    .venv/bin/python scripts/gen_runtime_fixtures.py

Needs ../shared/models for the reference-model expectations.
"""
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "test", "fixtures", "runtime")
SHARED = os.path.join(ROOT, "..", "shared", "models")

DTYPES = {
    "f16": TensorProto.FLOAT16,
    "bf16": TensorProto.BFLOAT16,
    "f32": TensorProto.FLOAT,
    "f64": TensorProto.DOUBLE,
    "s8": TensorProto.INT8,
    "s16": TensorProto.INT16,
    "s32": TensorProto.INT32,
    "s64": TensorProto.INT64,
    "u8": TensorProto.UINT8,
    "u16": TensorProto.UINT16,
    "u32": TensorProto.UINT32,
    "u64": TensorProto.UINT64,
    "bool": TensorProto.BOOL,
}


def save(model, name):
    onnx.checker.check_model(model, full_check=True)
    path = os.path.join(OUT, name)
    with open(path, "wb") as f:
        f.write(model.SerializeToString(deterministic=True))
    return path


def model_of(graph):
    # Every runtime fixture: opset 18, IR version 9.
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="thunderbolt-fixtures")
    model.ir_version = 9
    return model


def identity_models():
    # Identity keeps every dtype's bytes intact: the test checks the round
    # trip of each type through our NIF, byte for byte.
    for name, elem in DTYPES.items():
        x = helper.make_tensor_value_info("x", elem, [None, 3])
        y = helper.make_tensor_value_info("y", elem, [None, 3])
        graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], f"identity_{name}", [x], [y])
        model = model_of(graph)
        save(model, f"identity_{name}.onnx")


def string_output_model():
    # Numbers in, strings out: Thunderbolt must refuse the output cleanly.
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])
    y = helper.make_tensor_value_info("y", TensorProto.STRING, [None])
    node = helper.make_node("Cast", ["x"], ["y"], to=TensorProto.STRING)
    graph = helper.make_graph([node], "cast_to_string", [x], [y])
    model = model_of(graph)
    save(model, "cast_to_string.onnx")


def nonzero_model():
    # An output whose shape depends on the input's values, not only its
    # shape: the runtime must not assume one input shape gives one output
    # shape.
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])
    y = helper.make_tensor_value_info("y", TensorProto.INT64, [1, None])
    graph = helper.make_graph([helper.make_node("NonZero", ["x"], ["y"])], "nonzero", [x], [y])
    model = model_of(graph)
    save(model, "nonzero.onnx")


def constant_output_model():
    # One output passes the input through, the other is a constant: ONNX
    # Runtime must still fill output buffers handed to it.
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])
    c = helper.make_tensor_value_info("c", TensorProto.FLOAT, [2])
    init = helper.make_tensor("c", TensorProto.FLOAT, [2], [7.0, 8.0])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "constant_output", [x], [y, c], [init])
    model = model_of(graph)
    save(model, "constant_output.onnx")


def multi_io_model():
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [None, 4])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [None, 4])
    n = helper.make_tensor_value_info("n", TensorProto.INT64, [None])
    outs = [
        helper.make_tensor_value_info("sum", TensorProto.FLOAT, [None, 4]),
        helper.make_tensor_value_info("product", TensorProto.FLOAT, [None, 4]),
        helper.make_tensor_value_info("n_squared", TensorProto.INT64, [None]),
        helper.make_tensor_value_info("positive", TensorProto.BOOL, [None, 4]),
    ]
    zero = helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])
    nodes = [
        helper.make_node("Add", ["a", "b"], ["sum"]),
        helper.make_node("Mul", ["a", "b"], ["product"]),
        helper.make_node("Mul", ["n", "n"], ["n_squared"]),
        helper.make_node("Greater", ["sum", "zero"], ["positive"]),
    ]
    graph = helper.make_graph(nodes, "multi_io", [a, b, n], outs, initializer=[zero])
    model = model_of(graph)
    model.model_version = 3
    helper.set_model_props(model, {"author": "thunderbolt", "task": "fixture"})
    path = save(model, "multi_io.onnx")

    rng = np.random.default_rng(7)
    feeds = {
        "a": rng.normal(size=(3, 4)).astype(np.float32),
        "b": rng.normal(size=(3, 4)).astype(np.float32),
        "n": np.array([-3, 0, 5], dtype=np.int64),
    }
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    results = dict(zip(names, sess.run(names, feeds)))
    return {
        "inputs": {k: {"shape": list(v.shape), "data": v.ravel().tolist()} for k, v in feeds.items()},
        "outputs": {k: {"shape": list(v.shape), "data": v.astype(np.float64 if v.dtype != np.bool_ else np.uint8).ravel().tolist()} for k, v in results.items()},
    }


def sinusoidal(length, dim):
    pos = np.arange(length)[:, None]
    i = np.arange(dim)[None, :]
    angle = pos / np.power(10000.0, (2 * (i // 2)) / dim)
    return np.where(i % 2 == 0, np.sin(angle), np.cos(angle)).astype(np.float32)


def reference_expectations():
    trained = os.path.join(SHARED, "cerebros_trained.onnx")
    mini = os.path.join(SHARED, "cerebros_mini.onnx")
    if not (os.path.exists(trained) and os.path.exists(mini)):
        sys.exit(f"reference models not found in {SHARED}")
    rng = np.random.default_rng(42)
    ids = rng.integers(0, 1000, size=(3, 40))
    out = {"input_ids": ids.tolist()}

    sess = ort.InferenceSession(trained, providers=["CPUExecutionProvider"])
    (logits,) = sess.run(["logits"], {"input_ids": ids.astype(np.int64)})
    out["cerebros_trained"] = {"shape": list(logits.shape), "logits": logits.ravel().tolist()}

    pe = sinusoidal(40, 64)
    sess = ort.InferenceSession(mini, providers=["CPUExecutionProvider"])
    (logits,) = sess.run(["logits"], {"input_ids": ids.astype(np.int32), "functional_1/Add/y:0": pe})
    out["cerebros_mini"] = {"positional": pe.ravel().tolist(), "shape": list(logits.shape), "logits": logits.ravel().tolist()}
    out["onnxruntime"] = ort.__version__
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    identity_models()
    string_output_model()
    nonzero_model()
    constant_output_model()
    with open(os.path.join(OUT, "multi_io.json"), "w") as f:
        json.dump(multi_io_model(), f)
    with open(os.path.join(OUT, "reference_outputs.json"), "w") as f:
        json.dump(reference_expectations(), f)
    print(f"wrote fixtures to {OUT}")


if __name__ == "__main__":
    main()
