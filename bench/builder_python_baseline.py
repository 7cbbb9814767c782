#!/usr/bin/env python3
"""Times the Python route the original application used to write its ONNX file: a
hand-written exporter on `onnx.helper` (Gather, ReduceMean, MatMul, Add, Relu), here
rebuilt for the same 217,832-parameter Cerebros architecture, from NumPy weights to
serialized bytes. Compare with `cargo run --release -p thunderbolt_builder --example
build_benchmark`.

The weights are read from ../shared/models/cerebros_trained.onnx when present (reading is
not timed), otherwise drawn from a seeded generator with the same shapes.

Run: .venv/bin/python bench/builder_python_baseline.py
"""

import statistics
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SHAPES = {
    "embed_weight": (1000, 64),
    "dense1_weight": (64, 128),
    "dense1_bias": (128,),
    "dense2_weight": (128, 128),
    "dense2_bias": (128,),
    "logits_weight": (128, 1000),
    "logits_bias": (1000,),
}


def load_weights():
    path = Path(__file__).resolve().parents[2] / "shared" / "models" / "cerebros_trained.onnx"
    if path.is_file():
        model = onnx.load(str(path))
        return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}, path.name
    rng = np.random.default_rng(42)
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in SHAPES.items()}, "seeded random weights"


def build(w):
    inits = [numpy_helper.from_array(w[k], name=k) for k in SHAPES]
    inits.append(numpy_helper.from_array(np.array([1], dtype=np.int64), name="pool_axes"))
    nodes = [
        helper.make_node("Gather", ["embed_weight", "input_ids"], ["embedded"], axis=0),
        helper.make_node("ReduceMean", ["embedded", "pool_axes"], ["pooled"], keepdims=0),
    ]
    x = "pooled"
    for layer, relu in [("dense1", True), ("dense2", True), ("logits", False)]:
        nodes.append(helper.make_node("MatMul", [x, f"{layer}_weight"], [f"{layer}_mm"]))
        out = f"{layer}_add" if relu else "logits"
        nodes.append(helper.make_node("Add", [f"{layer}_mm", f"{layer}_bias"], [out]))
        if relu:
            nodes.append(helper.make_node("Relu", [out], [f"{layer}_out"]))
            out = f"{layer}_out"
        x = out
    graph = helper.make_graph(
        nodes,
        "cerebros",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", 40])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1000])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)
    return model.SerializeToString()


def main():
    w, source = load_weights()
    weight_bytes = sum(a.nbytes for a in w.values())
    print(f"model: {weight_bytes // 4} parameters ({weight_bytes} bytes of float32 weights, from {source})")
    onnx.checker.check_model(onnx.load_from_string(build(w)), full_check=True)
    for _ in range(20):
        build(w)
    samples = []
    for _ in range(300):
        t = time.perf_counter()
        build(w)
        samples.append((time.perf_counter() - t) * 1e3)
    samples.sort()
    print(
        f"python onnx.helper build + SerializeToString: min {samples[0]:.3f} ms, "
        f"median {statistics.median(samples):.3f} ms, p95 {samples[int(0.95 * (len(samples) - 1))]:.3f} ms "
        f"over {len(samples)} runs (onnx {onnx.__version__})"
    )


if __name__ == "__main__":
    main()
