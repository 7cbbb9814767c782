"""Fixtures for the serving-layer tests (KerasONNX, ModelServer, OnnxInference):
two tiny Cerebros-shaped text models and Python onnxruntime's outputs on them.
Deterministic: re-running writes the same files.

    .venv/bin/python scripts/gen_serving_fixtures.py

* tiny_text.onnx: `input_ids` int64 [batch, 8] -> Gather(Embedding 50x4) ->
  ReduceMean over the sequence -> Dense(6) -> `logits` [batch, 6], and
  Softmax(logits) -> `probabilities`, so a test can reach a second output.
* positional.onnx: the shape of ../shared/models/cerebros_mini.onnx in small:
  `input_ids` int32 [batch, 8] plus a positional table `positions` float32
  [8, 4] that has no batch axis, -> `logits` [batch, 6].
"""
import json
import os

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "test", "fixtures", "serving")
VOCAB, SEQ, DIM, CLASSES = 50, 8, 4, 6


def save(model, name):
    onnx.checker.check_model(model, full_check=True)
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(model.SerializeToString(deterministic=True))


def weights(rng):
    emb = rng.standard_normal((VOCAB, DIM)).astype(np.float32)
    w = rng.standard_normal((DIM, CLASSES)).astype(np.float32)
    b = rng.standard_normal((CLASSES,)).astype(np.float32)
    return [numpy_helper.from_array(emb, "embedding"), numpy_helper.from_array(w, "kernel"),
            numpy_helper.from_array(b, "bias")]


def head(pooled_from):
    return [
        helper.make_node("ReduceMean", [pooled_from], ["pooled"], axes=[1], keepdims=0),
        helper.make_node("MatMul", ["pooled", "kernel"], ["dense"]),
        helper.make_node("Add", ["dense", "bias"], ["logits"]),
    ]


def model(graph):
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                          producer_name="thunderbolt-fixtures")
    m.ir_version = 8
    return m


def tiny_text(rng):
    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", SEQ])
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", CLASSES])
    probs = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", CLASSES])
    nodes = [helper.make_node("Gather", ["embedding", "input_ids"], ["embedded"])] + head("embedded")
    nodes.append(helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1))
    graph = helper.make_graph(nodes, "tiny_text", [ids], [logits, probs], initializer=weights(rng))
    save(model(graph), "tiny_text.onnx")


def positional(rng):
    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT32, ["batch", SEQ])
    pos = helper.make_tensor_value_info("positions", TensorProto.FLOAT, [SEQ, DIM])
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", CLASSES])
    nodes = [
        helper.make_node("Gather", ["embedding", "input_ids"], ["embedded"]),
        helper.make_node("Add", ["embedded", "positions"], ["placed"]),
    ] + head("placed")
    graph = helper.make_graph(nodes, "positional", [ids, pos], [logits], initializer=weights(rng))
    save(model(graph), "positional.onnx")


def expectations(rng):
    ids = rng.integers(0, VOCAB, size=(3, SEQ))
    positions = rng.standard_normal((SEQ, DIM)).astype(np.float32)
    tiny = ort.InferenceSession(os.path.join(OUT, "tiny_text.onnx"))
    logits, probs = tiny.run(None, {"input_ids": ids.astype(np.int64)})
    pos = ort.InferenceSession(os.path.join(OUT, "positional.onnx"))
    (pos_logits,) = pos.run(None, {"input_ids": ids.astype(np.int32), "positions": positions})
    data = {
        "input_ids": ids.tolist(),
        "positions": positions.tolist(),
        "tiny_text": {"logits": logits.tolist(), "probabilities": probs.tolist()},
        "positional": {"logits": pos_logits.tolist()},
    }
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(data, f)
        f.write("\n")


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20240505)
    tiny_text(rng)
    positional(rng)
    expectations(rng)
