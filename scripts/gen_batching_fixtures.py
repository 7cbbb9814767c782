"""Writes the small models the Thunderbolt.Serving (dynamic batching) tests use,
into test/fixtures/batching/. Deterministic: re-running writes the same files.

    .venv/bin/python scripts/gen_batching_fixtures.py

  dynamic_rows.onnx   x f32 [batch, n] -> doubled = 2x [batch, n], row_sum = sum(x, axis 1) [batch]
                      (both dimensions dynamic, so requests with different n must not merge)
  shared_input.onnx   x f32 [batch, 4], w f32 [4, 3] -> y = x @ w [batch, 3], w_copy = w [4, 3]
                      (w has a fixed leading dimension: it is shared by a batch, not concatenated)
"""

import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "fixtures", "batching")


def save(model, name):
    onnx.checker.check_model(model)
    path = os.path.join(HERE, name)
    onnx.save(model, path)
    print("wrote", os.path.normpath(path))


def dynamic_rows():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "n"])
    doubled = helper.make_tensor_value_info("doubled", TensorProto.FLOAT, ["batch", "n"])
    row_sum = helper.make_tensor_value_info("row_sum", TensorProto.FLOAT, ["batch"])
    two = numpy_helper.from_array(np.array(2.0, dtype=np.float32), "two")
    axes = numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")
    nodes = [
        helper.make_node("Mul", ["x", "two"], ["doubled"]),
        helper.make_node("ReduceSum", ["x", "axes"], ["row_sum"], keepdims=0),
    ]
    graph = helper.make_graph(nodes, "dynamic_rows", [x], [doubled, row_sum], [two, axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    save(model, "dynamic_rows.onnx")


def shared_input():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    w = helper.make_tensor_value_info("w", TensorProto.FLOAT, [4, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])
    w_copy = helper.make_tensor_value_info("w_copy", TensorProto.FLOAT, [4, 3])
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["y"]),
        helper.make_node("Identity", ["w"], ["w_copy"]),
    ]
    graph = helper.make_graph(nodes, "shared_input", [x, w], [y, w_copy])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    save(model, "shared_input.onnx")


if __name__ == "__main__":
    dynamic_rows()
    shared_input()
