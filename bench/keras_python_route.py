#!/usr/bin/env python3
"""What converting cerebros_trained.keras to ONNX costs through Python, for comparison
with `cargo run --release -p thunderbolt_keras --example convert_timing`.

The original application's route (build_onnx_manual.py): start Python, import Keras,
load the model with Keras, then write the ONNX graph by hand with the `onnx` package
(Gather -> ReduceMean -> MatMul/Add/Relu x2 -> MatMul/Add). tf2onnx, the other route,
needs TensorFlow and broke on NumPy 2, so it is not measured.

    KERAS_BACKEND=jax .venv-keras/bin/python bench/keras_python_route.py [MODEL.keras]

Needs scripts/requirements-keras.txt (keras, jax, onnx).
"""

import os
import sys
import time

t0 = time.perf_counter()
os.environ.setdefault("KERAS_BACKEND", "jax")
import keras  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

t_import = time.perf_counter() - t0

MODEL = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(__file__), "..", "..", "shared", "models", "cerebros_trained.keras"
)


def export(model):
    emb, d1, d2, d3 = [l for l in model.layers if l.weights]
    inits = [
        numpy_helper.from_array(emb.get_weights()[0], "emb"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axes"),
    ]
    nodes = [
        helper.make_node("Gather", ["input_ids", "emb"], ["g"]),
        helper.make_node("ReduceMean", ["g", "axes"], ["h0"], keepdims=0),
    ]
    prev = "h0"
    for i, layer in enumerate([d1, d2, d3]):
        k, b = layer.get_weights()
        inits += [numpy_helper.from_array(k, f"k{i}"), numpy_helper.from_array(b, f"b{i}")]
        nodes.append(helper.make_node("MatMul", [prev, f"k{i}"], [f"m{i}"]))
        out = "logits" if i == 2 else f"a{i}"
        nodes.append(helper.make_node("Add", [f"m{i}", f"b{i}"], [out if i == 2 else f"p{i}"]))
        if i < 2:
            nodes.append(helper.make_node("Relu", [f"p{i}"], [out]))
        prev = out
    graph = helper.make_graph(
        nodes,
        "cerebros",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [None, 40])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, 1000])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString()


def main():
    times_load, times_export = [], []
    for _ in range(5):
        t = time.perf_counter()
        model = keras.saving.load_model(MODEL, compile=False)
        times_load.append(time.perf_counter() - t)
        t = time.perf_counter()
        onnx_bytes = export(model)
        times_export.append(time.perf_counter() - t)
    onnx.checker.check_model(onnx.load_from_string(onnx_bytes))
    ms = lambda xs: f"min {min(xs) * 1e3:.1f} ms, median {sorted(xs)[len(xs) // 2] * 1e3:.1f} ms"
    print(f"import keras+jax+onnx: {t_import * 1e3:.0f} ms (once per process)")
    print(f"keras.saving.load_model: {ms(times_load)}")
    print(f"hand-written ONNX export: {ms(times_export)}")
    print(f"ONNX bytes: {len(onnx_bytes)}")


if __name__ == "__main__":
    main()
