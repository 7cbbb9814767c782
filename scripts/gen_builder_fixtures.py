#!/usr/bin/env python3
"""Generates the ONNX builder's numerical fixtures in test/fixtures/builder/.

Each case is a small model spec (inputs, Keras-style layers with configs and weights,
outputs), input feeds, and the outputs expected for those feeds. The expected outputs
come from the NumPy reference implementations of the Keras layers and activations
below, written from the Keras 3 documentation and source, independently of the Rust
builder. They are computed in float64 from the float32 weights and inputs, then rounded
to the output type.

Every case is written twice, with the same content:
  <case>.json  for the Rust tests (tensor bytes as lowercase hex), and
  <case>.etf   Erlang external term format for the ExUnit tests (tensor bytes as
               binaries), read with :erlang.binary_to_term/1.

Tensors are {"dtype": "float32", "shape": [...], "data": <little-endian bytes>}.

Run: .venv/bin/python scripts/gen_builder_fixtures.py   (seeded; rerunning gives the same files)
"""

import json
import math
import struct
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent.parent / "test" / "fixtures" / "builder"
SEED = 20240611

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


# --- NumPy reference implementations (float64) ------------------------------------------

def softplus(x):
    return np.logaddexp(0.0, x)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def softmax(x, axis=-1):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def log_softmax(x, axis=-1):
    m = np.max(x, axis=axis, keepdims=True)
    return x - m - np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))


def softmax_multi(x, axes):
    # Keras Softmax layer with a list of axes: exp(x - logsumexp(x, axes)).
    m = np.max(x, axis=axes, keepdims=True)
    lse = m + np.log(np.sum(np.exp(x - m), axis=axes, keepdims=True))
    return np.exp(x - lse)


def gelu(x, approximate=False):
    if approximate:
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def hard_sigmoid(x):
    return np.clip(x / 6.0 + 0.5, 0.0, 1.0)


def elu(x, alpha=1.0):
    return np.where(x > 0, x, alpha * (np.exp(x) - 1.0))


ACTIVATIONS = {
    "linear": lambda x: x,
    "relu": lambda x: np.maximum(x, 0.0),
    "sigmoid": sigmoid,
    "tanh": np.tanh,
    "softmax": softmax,
    "softplus": softplus,
    "softsign": lambda x: x / (1.0 + np.abs(x)),
    "elu": elu,
    "selu": lambda x: SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * (np.exp(x) - 1.0)),
    "gelu": gelu,
    "silu": lambda x: x * sigmoid(x),
    "swish": lambda x: x * sigmoid(x),
    "leaky_relu": lambda x: np.where(x > 0, x, 0.2 * x),
    "relu6": lambda x: np.clip(x, 0.0, 6.0),
    "hard_sigmoid": hard_sigmoid,
    "hard_silu": lambda x: x * hard_sigmoid(x),
    "hard_swish": lambda x: x * hard_sigmoid(x),
    "exponential": np.exp,
    "mish": lambda x: x * np.tanh(softplus(x)),
    "log_softmax": log_softmax,
}

# Activations given as objects with parameters: (config value, reference function).
PARAMETRIZED = {
    "gelu_tanh": ({"name": "gelu", "approximate": True}, lambda x: gelu(x, approximate=True)),
    "leaky_relu_0_05": ({"name": "leaky_relu", "negative_slope": 0.05}, lambda x: np.where(x > 0, x, 0.05 * x)),
    "elu_0_5": ({"name": "elu", "alpha": 0.5}, lambda x: elu(x, 0.5)),
    "keras_fn_tanh": (
        {"module": "keras.activations", "class_name": "function", "config": "tanh", "registered_name": "function"},
        np.tanh,
    ),
}


def dense(x, kernel, bias=None, activation=lambda v: v):
    y = np.tensordot(x.astype(np.float64), kernel.astype(np.float64), axes=([x.ndim - 1], [0]))
    if bias is not None:
        y = y + bias.astype(np.float64)
    return activation(y)


def batch_norm(x, axis, mean, var, gamma, beta, eps):
    shape = [1] * x.ndim
    shape[axis] = -1
    r = lambda v: v.astype(np.float64).reshape(shape)
    y = (x.astype(np.float64) - r(mean)) / np.sqrt(r(var) + eps)
    if gamma is not None:
        y = y * r(gamma)
    if beta is not None:
        y = y + r(beta)
    return y


def layer_norm(x, axes, gamma, beta, eps):
    x = x.astype(np.float64)
    axes = tuple(a % x.ndim for a in axes)
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    y = (x - mean) / np.sqrt(var + eps)
    shape = [x.shape[a] if a in axes else 1 for a in range(x.ndim)]
    if gamma is not None:
        y = y * gamma.astype(np.float64).reshape(shape)
    if beta is not None:
        y = y + beta.astype(np.float64).reshape(shape)
    return y


def flatten(x, channels_first=False):
    if channels_first and x.ndim > 2:
        x = np.transpose(x, (0, *range(2, x.ndim), 1))
    return x.reshape(x.shape[0], -1)


# --- spec helpers -----------------------------------------------------------------------

class Case:
    def __init__(self, name, description, seed_offset):
        self.name = name
        self.description = description
        self.rng = np.random.default_rng(SEED + seed_offset)
        self.inputs, self.layers, self.outputs = [], [], []
        self.feeds, self.expected = {}, {}
        self.opset = None
        self.rtol, self.atol = 1e-5, 1e-6

    def input(self, name, dtype, shape, value):
        self.inputs.append({"name": name, "dtype": dtype, "shape": shape})
        self.feeds[name] = value
        return value

    def layer(self, name, class_name, config, inbound, weights=()):
        self.layers.append(
            {"name": name, "class_name": class_name, "config": config, "inbound": list(inbound), "weights": list(weights)}
        )

    def output(self, name, source, value, dtype=np.float32):
        self.outputs.append({"name": name, "source": source})
        self.expected[name] = np.asarray(value).astype(dtype)

    def normal(self, *shape, scale=1.0):
        return (self.rng.standard_normal(shape) * scale).astype(np.float32)

    def uniform(self, lo, hi, *shape):
        return self.rng.uniform(lo, hi, shape).astype(np.float32)

    def document(self):
        return {
            "name": self.name,
            "description": self.description,
            "rtol": self.rtol,
            "atol": self.atol,
            "spec": {
                "name": self.name,
                "opset": self.opset,
                "inputs": self.inputs,
                "layers": self.layers,
                "outputs": self.outputs,
            },
            "feeds": self.feeds,
            "expected": self.expected,
        }


def dense_layer(case, name, inbound, x, units, activation="linear", use_bias=True, act_fn=None):
    kernel = case.normal(x.shape[-1], units, scale=1.0 / math.sqrt(x.shape[-1]))
    bias = case.normal(units, scale=0.5) if use_bias else None
    config = {"name": name, "units": units, "activation": activation, "use_bias": use_bias}
    case.layer(name, "Dense", config, inbound, [kernel] + ([bias] if use_bias else []))
    fn = act_fn or ACTIVATIONS[activation]
    return dense(x, kernel, bias, fn)


# --- cases ------------------------------------------------------------------------------

def case_embedding():
    c = Case("embedding", "Embedding on int32, int64 and float32 ids (Gather; Cast for non-integer ids)", 1)
    ids = c.rng.integers(0, 12, size=(3, 5))
    ids[0, 0], ids[2, 4] = 0, 11
    for dtype in ["int32", "int64", "float32"]:
        x = c.input(f"ids_{dtype}", dtype, [None, 5], ids.astype(dtype))
        table = c.normal(12, 4)
        c.layer(f"embed_{dtype}", "Embedding", {"input_dim": 12, "output_dim": 4, "mask_zero": False}, [f"ids_{dtype}"], [table])
        c.output(f"out_{dtype}", f"embed_{dtype}", table[x.astype(np.int64)])
    return c


def case_dense_activations():
    c = Case("dense_activations", "Dense(5) with every Keras activation, plus parametrized forms, no bias and rank-3 input", 2)
    x = c.input("x", "float32", [None, 6], c.uniform(-3, 3, 4, 6))
    for act in ACTIVATIONS:
        # A large kernel scale so relu6, hard_sigmoid and friends see both saturated sides.
        kernel = c.normal(6, 5, scale=1.2)
        bias = c.normal(5, scale=0.5)
        c.layer(f"dense_{act}", "Dense", {"units": 5, "activation": act}, ["x"], [kernel, bias])
        c.output(f"out_{act}", f"dense_{act}", dense(x, kernel, bias, ACTIVATIONS[act]))
    for label, (config, fn) in PARAMETRIZED.items():
        kernel = c.normal(6, 5, scale=1.2)
        bias = c.normal(5, scale=0.5)
        c.layer(f"dense_{label}", "Dense", {"units": 5, "activation": config}, ["x"], [kernel, bias])
        c.output(f"out_{label}", f"dense_{label}", dense(x, kernel, bias, fn))
    kernel = c.normal(6, 3)
    c.layer("dense_no_bias", "Dense", {"units": 3, "activation": "tanh", "use_bias": False}, ["x"], [kernel])
    c.output("out_no_bias", "dense_no_bias", dense(x, kernel, None, np.tanh))
    seq = c.input("seq", "float32", [None, 3, 6], c.uniform(-2, 2, 4, 3, 6))
    kernel, bias = c.normal(6, 2), c.normal(2)
    c.layer("dense_rank3", "Dense", {"units": 2, "activation": "relu"}, ["seq"], [kernel, bias])
    c.output("out_rank3", "dense_rank3", dense(seq, kernel, bias, ACTIVATIONS["relu"]))
    return c


def case_activation_layers():
    c = Case("activation_layers", "Standalone Activation layers for every activation, on a rank-3 input", 3)
    x = c.input("x", "float32", [None, 3, 4], c.uniform(-7, 7, 2, 3, 4))
    for act, fn in ACTIVATIONS.items():
        c.layer(f"act_{act}", "Activation", {"activation": act}, ["x"])
        c.output(f"out_{act}", f"act_{act}", fn(x.astype(np.float64)))
    for label, (config, fn) in PARAMETRIZED.items():
        c.layer(f"act_{label}", "Activation", {"activation": config}, ["x"])
        c.output(f"out_{label}", f"act_{label}", fn(x.astype(np.float64)))
    return c


def case_softmax():
    c = Case("softmax", "Softmax layer over the last axis, a middle axis and a list of axes", 4)
    x = c.input("x", "float32", [None, 3, 4], c.uniform(-4, 4, 2, 3, 4)).astype(np.float64)
    c.layer("softmax_last", "Softmax", {"axis": -1}, ["x"])
    c.output("out_last", "softmax_last", softmax(x, -1))
    c.layer("softmax_mid", "Softmax", {"axis": 1}, ["x"])
    c.output("out_mid", "softmax_mid", softmax(x, 1))
    c.layer("softmax_multi", "Softmax", {"axis": [1, 2]}, ["x"])
    c.output("out_multi", "softmax_multi", softmax_multi(x, (1, 2)))
    c.layer("softmax_default", "Softmax", {}, ["x"])
    c.output("out_default", "softmax_default", softmax(x, -1))
    return c


def case_global_pooling():
    c = Case("global_pooling", "GlobalAveragePooling1D and GlobalMaxPooling1D: keepdims and data_format", 5)
    x = c.input("x", "float32", [None, 5, 3], c.normal(2, 5, 3)).astype(np.float64)
    for cls, fn in [("GlobalAveragePooling1D", np.mean), ("GlobalMaxPooling1D", np.max)]:
        tag = "avg" if "Average" in cls else "max"
        c.layer(f"{tag}_default", cls, {"data_format": "channels_last", "keepdims": False}, ["x"])
        c.output(f"out_{tag}_default", f"{tag}_default", fn(x, axis=1))
        c.layer(f"{tag}_keepdims", cls, {"keepdims": True}, ["x"])
        c.output(f"out_{tag}_keepdims", f"{tag}_keepdims", fn(x, axis=1, keepdims=True))
        c.layer(f"{tag}_channels_first", cls, {"data_format": "channels_first"}, ["x"])
        c.output(f"out_{tag}_channels_first", f"{tag}_channels_first", fn(x, axis=2))
    return c


def case_flatten_reshape():
    c = Case("flatten_reshape", "Flatten (channels_last/first, rank 2 and 4) and Reshape (static, -1)", 6)
    x = c.input("x", "float32", [None, 2, 3, 4], c.normal(2, 2, 3, 4))
    v = c.input("v", "float32", [None, 3], c.normal(2, 3))
    c.layer("flatten", "Flatten", {}, ["x"])
    c.output("out_flatten", "flatten", flatten(x))
    c.layer("flatten_cf", "Flatten", {"data_format": "channels_first"}, ["x"])
    c.output("out_flatten_cf", "flatten_cf", flatten(x, channels_first=True))
    c.layer("flatten_rank2", "Flatten", {}, ["v"])
    c.output("out_flatten_rank2", "flatten_rank2", flatten(v))
    c.layer("reshape", "Reshape", {"target_shape": [6, 4]}, ["x"])
    c.output("out_reshape", "reshape", x.reshape(2, 6, 4))
    c.layer("reshape_infer", "Reshape", {"target_shape": [-1, 2]}, ["x"])
    c.output("out_reshape_infer", "reshape_infer", x.reshape(2, -1, 2))
    c.layer("reshape_then_flatten", "Flatten", {}, ["reshape"])
    c.output("out_reshape_then_flatten", "reshape_then_flatten", flatten(x.reshape(2, 6, 4)))
    return c


def case_concatenate():
    c = Case("concatenate", "Concatenate on the last axis (default), a middle axis, a negative axis, three inputs", 7)
    a = c.input("a", "float32", [None, 2, 3], c.normal(2, 2, 3))
    b = c.input("b", "float32", [None, 2, 5], c.normal(2, 2, 5))
    d = c.input("d", "float32", [None, 4, 3], c.normal(2, 4, 3))
    c.layer("concat_last", "Concatenate", {}, ["a", "b"])
    c.output("out_last", "concat_last", np.concatenate([a, b], axis=-1))
    c.layer("concat_mid", "Concatenate", {"axis": 1}, ["a", "d"])
    c.output("out_mid", "concat_mid", np.concatenate([a, d], axis=1))
    c.layer("concat_neg", "Concatenate", {"axis": -2}, ["d", "a"])
    c.output("out_neg", "concat_neg", np.concatenate([d, a], axis=-2))
    c.layer("concat_three", "Concatenate", {"axis": 2}, ["a", "b", "a"])
    c.output("out_three", "concat_three", np.concatenate([a, b, a], axis=2))
    return c


def case_merge():
    c = Case("merge", "Add, Subtract, Multiply, Average, Maximum, Minimum; several inputs and broadcasting", 8)
    a = c.input("a", "float32", [None, 4], c.normal(3, 4)).astype(np.float64)
    b = c.input("b", "float32", [None, 4], c.normal(3, 4)).astype(np.float64)
    d = c.input("d", "float32", [None, 4], c.normal(3, 4)).astype(np.float64)
    e = c.input("e", "float32", [None, 1], c.normal(3, 1)).astype(np.float64)
    cases = [
        ("add", "Add", ["a", "b", "d"], a + b + d),
        ("subtract", "Subtract", ["a", "b"], a - b),
        ("multiply", "Multiply", ["a", "b", "d"], a * b * d),
        ("multiply_two", "Multiply", ["b", "d"], b * d),
        ("average", "Average", ["a", "b", "d"], (a + b + d) / 3.0),
        ("maximum", "Maximum", ["a", "b", "d"], np.maximum(np.maximum(a, b), d)),
        ("minimum", "Minimum", ["a", "b"], np.minimum(a, b)),
        ("add_broadcast", "Add", ["a", "e"], a + e),
    ]
    for name, cls, inbound, value in cases:
        c.layer(name, cls, {}, inbound)
        c.output(f"out_{name}", name, value)
    return c


def case_merge_int():
    c = Case("merge_int", "Merge layers on int32 values (exact)", 9)
    a = c.input("a", "int32", [None, 3], c.rng.integers(-50, 50, size=(2, 3)).astype(np.int32))
    b = c.input("b", "int32", [None, 3], c.rng.integers(-50, 50, size=(2, 3)).astype(np.int32))
    for name, cls, value in [
        ("add", "Add", a + b),
        ("subtract", "Subtract", a - b),
        ("multiply", "Multiply", a * b),
        ("maximum", "Maximum", np.maximum(a, b)),
        ("minimum", "Minimum", np.minimum(a, b)),
    ]:
        c.layer(name, cls, {}, ["a", "b"])
        c.output(f"out_{name}", name, value, dtype=np.int32)
    c.rtol, c.atol = 0.0, 0.0
    return c


def case_identity_layers():
    c = Case("identity_layers", "Dropout, GaussianNoise and GaussianDropout are identities at inference", 10)
    x = c.input("x", "float32", [None, 4], c.normal(3, 4))
    c.layer("dropout", "Dropout", {"rate": 0.5, "noise_shape": None, "seed": None}, ["x"])
    c.layer("noise", "GaussianNoise", {"stddev": 1.0, "seed": None}, ["dropout"])
    c.layer("gdrop", "GaussianDropout", {"rate": 0.3, "seed": None}, ["noise"])
    y = dense_layer(c, "dense", ["gdrop"], x, 2, "relu")
    c.output("out_dense", "dense", y)
    c.output("out_dropout", "dropout", x)
    c.output("out_noise", "noise", x)
    c.output("out_gdrop", "gdrop", x)
    return c


def case_batch_normalization():
    c = Case("batch_normalization", "BatchNormalization (inference): axis -1 and 1, center/scale flags, epsilon", 11)
    x = c.input("x", "float32", [None, 3, 4], c.normal(2, 3, 4, scale=2.0))
    variants = [
        ("bn_last", -1, True, True, 1e-3),
        ("bn_axis1", 1, True, True, 1e-3),
        ("bn_no_center", -1, False, True, 1e-2),
        ("bn_no_scale", 1, True, False, 1e-3),
        ("bn_plain", 2, False, False, 1e-5),
    ]
    for name, axis, center, scale, eps in variants:
        ch = x.shape[axis]
        gamma = c.uniform(0.5, 1.5, ch) if scale else None
        beta = c.normal(ch) if center else None
        mean = c.normal(ch)
        var = c.uniform(0.2, 2.0, ch)
        weights = [w for w in (gamma, beta) if w is not None] + [mean, var]
        config = {"axis": axis, "momentum": 0.99, "epsilon": eps, "center": center, "scale": scale}
        c.layer(name, "BatchNormalization", config, ["x"], weights)
        c.output(f"out_{name}", name, batch_norm(x, axis, mean, var, gamma, beta, eps))
    return c


def case_layer_normalization():
    c = Case("layer_normalization", "LayerNormalization: trailing axes (ONNX op), other axes, center/scale flags", 12)
    x = c.input("x", "float32", [None, 3, 4], c.normal(2, 3, 4, scale=3.0))
    variants = [
        ("ln_last", -1, True, True, 1e-3),
        ("ln_last_two", [1, 2], True, True, 1e-5),
        ("ln_axis1", 1, True, True, 1e-3),
        ("ln_no_center", -1, False, True, 1e-3),
        ("ln_no_scale", -1, True, False, 1e-3),
        ("ln_plain", -1, False, False, 1e-3),
        ("ln_axis1_no_center", [-2], False, True, 1e-3),
        ("ln_axis1_plain", 1, False, False, 1e-3),
    ]
    for name, axis, center, scale, eps in variants:
        axes = axis if isinstance(axis, list) else [axis]
        pshape = [x.shape[a] for a in axes]
        gamma = c.uniform(0.5, 1.5, *pshape) if scale else None
        beta = c.normal(*pshape) if center else None
        weights = [w for w in (gamma, beta) if w is not None]
        config = {"axis": axis, "epsilon": eps, "center": center, "scale": scale, "rms_scaling": False}
        c.layer(name, "LayerNormalization", config, ["x"], weights)
        c.output(f"out_{name}", name, layer_norm(x, axes, gamma, beta, eps))
    return c


def case_add_constant():
    c = Case("add_constant", "Embedding + constant positional encoding (AddConstant) + pooling + Dense", 13)
    ids = c.input("input_ids", "int32", [None, 5], c.rng.integers(0, 10, size=(3, 5)).astype(np.int32))
    table = c.normal(10, 4)
    pos = np.array(
        [[math.sin(p / 10000 ** (2 * (i // 2) / 4)) if i % 2 == 0 else math.cos(p / 10000 ** (2 * (i // 2) / 4)) for i in range(4)] for p in range(5)],
        dtype=np.float32,
    )
    c.layer("embedding", "Embedding", {"input_dim": 10, "output_dim": 4}, ["input_ids"], [table])
    c.layer("positional", "AddConstant", {}, ["embedding"], [pos])
    c.layer("pool", "GlobalAveragePooling1D", {}, ["positional"])
    h = (table[ids].astype(np.float64) + pos).mean(axis=1)
    y = dense_layer(c, "dense", ["pool"], h, 3, "linear")
    c.output("logits", "dense", y)
    bias_row = c.normal(4)
    c.layer("add_row", "AddConstant", {}, ["embedding"], [bias_row])
    c.output("out_add_row", "add_row", table[ids].astype(np.float64) + bias_row)
    return c


def case_branching():
    c = Case("branching", "A DAG with two inputs, a split, a rejoin and two outputs; layers listed out of order", 14)
    x = c.input("x", "float32", [None, 4], c.normal(3, 4))
    z = c.input("z", "float32", [None, 6], c.normal(3, 6))
    h = dense_layer(c, "trunk", ["x"], x, 3, "relu")
    left = dense_layer(c, "left", ["trunk"], h, 3, "tanh")
    right = dense_layer(c, "right", ["trunk"], h, 3, "sigmoid")
    c.layer("join", "Concatenate", {"axis": -1}, ["left", "right"])
    joined = np.concatenate([left, right], axis=-1)
    c.layer("mix", "Add", {}, ["join", "z"])
    mixed = joined + z
    head = dense_layer(c, "head", ["mix"], mixed, 2, "softmax")
    c.output("probs", "head", head)
    c.output("left_features", "left", left)
    order = [4, 2, 0, 5, 3, 1]
    c.layers = [c.layers[i] for i in order]
    return c


def case_cerebros_like():
    c = Case("cerebros_like", "The original application's architecture, small: Embedding, pooling, Dense relu x2, Dense", 15)
    ids = c.input("input_ids", "int64", [None, 8], c.rng.integers(0, 50, size=(4, 8)))
    table = c.uniform(-0.05, 0.05, 50, 8)
    c.layer("embedding", "Embedding", {"input_dim": 50, "output_dim": 8}, ["input_ids"], [table])
    c.layer("pooling", "GlobalAveragePooling1D", {"data_format": "channels_last", "keepdims": False}, ["embedding"])
    h = table[ids].astype(np.float64).mean(axis=1)
    h = dense_layer(c, "dense1", ["pooling"], h, 16, "relu")
    h = dense_layer(c, "dense2", ["dense1"], h, 16, "relu")
    y = dense_layer(c, "logits", ["dense2"], h, 50, "linear")
    c.output("logits", "logits", y)
    return c


def case_dynamic_dims():
    c = Case("dynamic_dims", "A dynamic sequence dimension through Dense, LayerNormalization, pooling and Softmax", 16)
    x = c.input("x", "float32", [None, None, 4], c.normal(2, 3, 4))
    h = dense_layer(c, "proj", ["x"], x, 4, "gelu")
    gamma, beta = c.uniform(0.5, 1.5, 4), c.normal(4)
    c.layer("norm", "LayerNormalization", {"axis": -1, "epsilon": 1e-6}, ["proj"], [gamma, beta])
    h = layer_norm(h, [-1], gamma, beta, 1e-6)
    c.layer("pool", "GlobalMaxPooling1D", {}, ["norm"])
    c.layer("probs", "Softmax", {}, ["pool"])
    c.output("probs", "probs", softmax(h.max(axis=1)))
    c.output("normalized", "norm", h)
    return c


def case_float64():
    c = Case("float64", "A float64 model: Dense, BatchNormalization, Activation", 17)
    x = c.input("x", "float64", [None, 3], c.rng.standard_normal((2, 3)))
    kernel, bias = c.rng.standard_normal((3, 4)), c.rng.standard_normal(4)
    c.layer("dense", "Dense", {"units": 4, "activation": "relu"}, ["x"], [kernel, bias])
    gamma, beta, mean, var = c.rng.uniform(0.5, 1.5, 4), c.rng.standard_normal(4), c.rng.standard_normal(4), c.rng.uniform(0.5, 2, 4)
    c.layer("bn", "BatchNormalization", {"axis": -1, "epsilon": 1e-3}, ["dense"], [gamma, beta, mean, var])
    c.layer("act", "Activation", {"activation": "sigmoid"}, ["bn"])
    y = sigmoid(batch_norm(dense(x, kernel, bias, ACTIVATIONS["relu"]), -1, mean, var, gamma, beta, 1e-3))
    c.output("y", "act", y, dtype=np.float64)
    c.rtol, c.atol = 1e-12, 1e-12
    return c


def case_opset22():
    c = case_dense_activations()
    c.name = "dense_activations_opset22"
    c.description = "The dense_activations model at the highest supported opset (22, IR 10)"
    c.opset = 22
    return c


def keras_relu(x, max_value=None, negative_slope=0.0, threshold=0.0):
    # Keras 3 ReLU.static_call, step by step.
    if negative_slope != 0.0 and max_value is None and threshold == 0.0:
        return np.where(x > 0, x, negative_slope * x)
    negative_part = np.maximum(threshold - x, 0.0) if negative_slope != 0.0 else 1.0
    clip_max = max_value is not None
    if threshold != 0.0:
        y = x * (x > threshold)
    elif max_value == 6:
        y, clip_max = np.clip(x, 0.0, 6.0), False
    else:
        y = np.maximum(x, 0.0)
    if clip_max:
        y = np.clip(y, 0.0, max_value)
    if negative_slope != 0.0:
        y = y - negative_slope * negative_part
    return y


def case_activation_classes():
    c = Case("activation_classes", "ReLU with each parameter, LeakyReLU (Keras 3 and 2 names), ELU and PReLU", 19)
    x = c.input("x", "float32", [None, 3, 4], c.uniform(-3, 8, 2, 3, 4))
    x64 = x.astype(np.float64)
    relus = {
        "relu": {},
        "relu_max6": {"max_value": 6.0},
        "relu_max": {"max_value": 1.5},
        "relu_slope": {"negative_slope": 0.1},
        "relu_threshold": {"threshold": 0.5},
        "relu_max6_threshold": {"max_value": 6.0, "threshold": 0.25},
        "relu_all": {"max_value": 2.0, "negative_slope": 0.2, "threshold": 0.5},
    }
    for name, config in relus.items():
        c.layer(name, "ReLU", config, ["x"])
        c.output(f"out_{name}", name, keras_relu(x64, **config))
    for name, config, slope in [
        ("leaky_default", {}, 0.3),
        ("leaky", {"negative_slope": 0.05}, 0.05),
        ("leaky_keras2", {"alpha": 0.25}, 0.25),
    ]:
        c.layer(name, "LeakyReLU", config, ["x"])
        c.output(f"out_{name}", name, np.where(x64 > 0, x64, slope * x64))
    c.layer("elu_default", "ELU", {}, ["x"])
    c.output("out_elu_default", "elu_default", elu(x64))
    c.layer("elu", "ELU", {"alpha": 0.5}, ["x"])
    c.output("out_elu", "elu", elu(x64, 0.5))
    for name, shape in [("prelu", (3, 4)), ("prelu_shared", (1, 4)), ("prelu_shared_all", (1, 1))]:
        alpha = c.normal(*shape)
        c.layer(name, "PReLU", {"shared_axes": None}, ["x"], [alpha])
        c.output(f"out_{name}", name, np.where(x64 >= 0, x64, alpha * x64))
    return c


def case_normalization():
    c = Case("normalization", "Normalization: adapted weights on several axes, given statistics, invert, integer input", 20)
    x = c.input("x", "float32", [None, 3, 4], c.normal(2, 3, 4, scale=3.0))
    x64 = x.astype(np.float64)
    count = np.array(100, dtype=np.int64)

    def reference(mean, var, invert=False):
        divisor = np.maximum(np.sqrt(var), 1e-7)
        return mean + x64 * divisor if invert else (x64 - mean) / divisor

    for name, axis, kept in [("norm_last", [-1], (1, 1, 4)), ("norm_steps", [1, 2], (1, 3, 4)), ("norm_axis1", [1], (1, 3, 1)), ("norm_global", [], (1, 1, 1))]:
        stat_shape = tuple(kept[a] for a in sorted({a % 3 for a in axis}))
        # np.asarray: a 0-d draw comes back as a NumPy scalar.
        mean = np.asarray(c.normal(*stat_shape))
        var = np.asarray(c.uniform(0.1, 4.0, *stat_shape))
        c.layer(name, "Normalization", {"axis": axis, "invert": False, "mean": None, "variance": None}, ["x"], [mean, var, count])
        c.output(f"out_{name}", name, reference(mean.reshape(kept), var.reshape(kept)))
    mean, var = c.normal(4), c.uniform(0.1, 4.0, 4)
    c.layer("norm_invert", "Normalization", {"axis": [-1], "invert": True}, ["x"], [mean, var, count])
    c.output("out_norm_invert", "norm_invert", reference(mean, var, invert=True))
    # Statistics given to the constructor broadcast against the kept dimensions.
    given_mean, given_var = [[0.5], [-1.0], [2.0]], [[1.0], [4.0], [0.0]]
    c.layer("norm_given", "Normalization", {"axis": [1], "mean": given_mean, "variance": given_var}, ["x"])
    c.output("out_norm_given", "norm_given", reference(np.array(given_mean).reshape(1, 3, 1), np.array(given_var).reshape(1, 3, 1)))
    ids = c.input("ids", "int32", [None, 5], c.rng.integers(0, 9, size=(2, 5)).astype(np.int32))
    c.layer("norm_ids", "Normalization", {"axis": [-1], "mean": 3.0, "variance": 4.0}, ["ids"])
    c.output("out_norm_ids", "norm_ids", (ids.astype(np.float64) - 3.0) / 2.0)
    return c


def rnn(kind, x, kernel, rec, bias, units, act=np.tanh, rec_act=sigmoid, go_backwards=False,
        return_sequences=False, reset_after=True):
    # Keras 3 LSTMCell, GRUCell and SimpleRNNCell, stepped over axis 1 of x (float64).
    steps = x[:, ::-1] if go_backwards else x
    h = np.zeros((x.shape[0], units))
    c = np.zeros_like(h)
    outputs = []
    for t in range(steps.shape[1]):
        xt = steps[:, t]
        if kind == "LSTM":
            z = xt @ kernel + h @ rec + (0 if bias is None else bias)
            i, f, g, o = (z[:, k * units:(k + 1) * units] for k in range(4))
            c = rec_act(f) * c + rec_act(i) * act(g)
            h = rec_act(o) * act(c)
        elif kind == "GRU":
            in_bias, rec_bias = (bias[0], bias[1]) if reset_after else (bias, np.zeros_like(bias))
            xz, xr, xh = np.split(xt @ kernel + in_bias, 3, axis=1)
            if reset_after:
                rz, rr, rh = np.split(h @ rec + rec_bias, 3, axis=1)
                zg, rg = rec_act(xz + rz), rec_act(xr + rr)
                hh = act(xh + rg * rh)
            else:
                rz, rr = np.split(h @ rec[:, :2 * units], 2, axis=1)
                zg, rg = rec_act(xz + rz), rec_act(xr + rr)
                hh = act(xh + (rg * h) @ rec[:, 2 * units:])
            h = zg * h + (1 - zg) * hh
        else:
            h = act(xt @ kernel + h @ rec + bias)
        outputs.append(h)
    return np.stack(outputs, axis=1) if return_sequences else h


def rnn_weights(c, kind, units, use_bias=True, reset_after=True):
    # Keras' kernel, recurrent kernel and bias for 3 input features, and the bias alone.
    gates = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}[kind]
    kernel, rec = c.normal(3, gates * units, scale=0.6), c.normal(units, gates * units, scale=0.6)
    if not use_bias:
        return [kernel, rec], None
    bias = c.normal(2, gates * units, scale=0.5) if kind == "GRU" and reset_after else c.normal(gates * units, scale=0.5)
    return [kernel, rec, bias], bias


def case_recurrent():
    c = Case("recurrent", "LSTM, GRU (reset_after on and off) and SimpleRNN, forwards and backwards, and Bidirectional", 21)
    x = c.input("x", "float32", [None, None, 3], c.uniform(-2, 2, 2, 4, 3))
    x64 = x.astype(np.float64)

    variants = [
        ("lstm", "LSTM", 3, {}),
        ("lstm_seq_back", "LSTM", 2, {"return_sequences": True, "go_backwards": True}),
        ("lstm_options", "LSTM", 2, {"activation": "relu", "recurrent_activation": "hard_sigmoid", "use_bias": False}),
        ("gru", "GRU", 3, {"return_sequences": True}),
        ("gru_v1", "GRU", 2, {"reset_after": False, "go_backwards": True}),
        ("rnn", "SimpleRNN", 3, {"return_sequences": True, "activation": "softsign"}),
    ]
    for name, kind, units, config in variants:
        ws, bias = rnn_weights(c, kind, units, config.get("use_bias", True), config.get("reset_after", True))
        c.layer(name, kind, {"units": units, **config}, ["x"], ws)
        act = ACTIVATIONS[config.get("activation", "tanh")]
        rec_act = ACTIVATIONS[config.get("recurrent_activation", "sigmoid")]
        expected = rnn(kind, x64, ws[0], ws[1], bias, units, act, rec_act, config.get("go_backwards", False),
                       config.get("return_sequences", False), config.get("reset_after", True))
        c.output(f"out_{name}", name, expected)
    for name, kind, units, merge, seq in [("bi_concat", "LSTM", 2, "concat", True), ("bi_mul", "GRU", 2, "mul", False)]:
        fw, fb = rnn_weights(c, kind, units)
        bw, bb = rnn_weights(c, kind, units)
        inner = {"class_name": kind, "config": {"units": units, "return_sequences": seq}}
        c.layer(name, "Bidirectional", {"layer": inner, "merge_mode": merge}, ["x"], fw + bw)
        y = rnn(kind, x64, fw[0], fw[1], fb, units, return_sequences=seq)
        y_rev = rnn(kind, x64, bw[0], bw[1], bb, units, go_backwards=True, return_sequences=seq)
        if seq:
            y_rev = y_rev[:, ::-1]
        c.output(f"out_{name}", name, np.concatenate([y, y_rev], axis=-1) if merge == "concat" else y * y_rev)
    return c


def same_padding(steps, size, stride, dilation=1):
    # TensorFlow/XLA "same": the odd pad goes at the end.
    span = (size - 1) * dilation + 1
    out = -(-steps // stride)
    total = max((out - 1) * stride + span - steps, 0)
    return total // 2, total - total // 2


def conv1d(x, kernel, bias, stride=1, dilation=1, padding="valid", groups=1):
    # Keras Conv1D on channels_last x [batch, steps, channels]; kernel [k, channels/groups, filters].
    k = kernel.shape[0]
    span = (k - 1) * dilation + 1
    if padding == "same":
        x = np.pad(x, ((0, 0), same_padding(x.shape[1], k, stride, dilation), (0, 0)))
    elif padding == "causal":
        x = np.pad(x, ((0, 0), ((k - 1) * dilation, 0), (0, 0)))
    out_len = (x.shape[1] - span) // stride + 1
    cg, fg = x.shape[2] // groups, kernel.shape[2] // groups
    y = np.zeros((x.shape[0], out_len, kernel.shape[2]))
    for t in range(out_len):
        for g in range(groups):
            window = x[:, t * stride:t * stride + span:dilation, g * cg:(g + 1) * cg]
            y[:, t, g * fg:(g + 1) * fg] = np.einsum("nkc,kcf->nf", window, kernel[:, :, g * fg:(g + 1) * fg])
    return y + (0 if bias is None else bias)


def pool1d(x, size, stride, padding, op):
    # Keras MaxPooling1D / AveragePooling1D on channels_last x; padded steps never count.
    steps = x.shape[1]
    if padding == "same":
        out, left = -(-steps // stride), same_padding(steps, size, stride)[0]
    else:
        out, left = (steps - size) // stride + 1, 0
    rows = []
    for t in range(out):
        lo, hi = max(t * stride - left, 0), min(t * stride - left + size, steps)
        window = x[:, lo:hi]
        rows.append(window.max(axis=1) if op == "max" else window.mean(axis=1))
    return np.stack(rows, axis=1)


def case_conv1d():
    c = Case("conv1d", "Conv1D (valid, same, causal; strides, dilation, groups; channels_first) and 1-D pooling", 22)
    x = c.input("x", "float32", [None, 9, 4], c.uniform(-2, 2, 2, 9, 4))
    x64 = x.astype(np.float64)
    variants = [
        ("conv", 3, 3, {}, "linear"),
        ("conv_same_stride", 3, 3, {"padding": "same", "strides": [2]}, "relu"),
        ("conv_causal", 2, 2, {"padding": "causal", "dilation_rate": [2], "use_bias": False}, "linear"),
        ("conv_groups", 4, 3, {"padding": "same", "groups": 2}, "tanh"),
    ]
    for name, filters, size, config, act in variants:
        groups = config.get("groups", 1)
        kernel = c.normal(size, 4 // groups, filters, scale=0.5)
        bias = c.normal(filters, scale=0.5) if config.get("use_bias", True) else None
        weights = [kernel] + ([bias] if bias is not None else [])
        c.layer(name, "Conv1D", {"filters": filters, "kernel_size": [size], "activation": act, **config}, ["x"], weights)
        y = conv1d(x64, kernel, bias, config.get("strides", [1])[0], config.get("dilation_rate", [1])[0],
                   config.get("padding", "valid"), groups)
        c.output(f"out_{name}", name, ACTIVATIONS[act](y))
    cf = c.input("cf", "float32", [None, 4, 9], np.ascontiguousarray(x.transpose(0, 2, 1)))
    kernel, bias = c.normal(3, 4, 2, scale=0.5), c.normal(2, scale=0.5)
    c.layer("conv_cf", "Conv1D", {"filters": 2, "kernel_size": 3, "data_format": "channels_first"}, ["cf"], [kernel, bias])
    c.output("out_conv_cf", "conv_cf", conv1d(x64, kernel, bias).transpose(0, 2, 1))
    for name, cls, size, stride, padding in [
        ("max", "MaxPooling1D", 2, None, "valid"),
        ("max_same", "MaxPooling1D", 3, 2, "same"),
        ("avg", "AveragePooling1D", 2, 1, "valid"),
        ("avg_same", "AveragePooling1D", 4, 3, "same"),
    ]:
        config = {"pool_size": [size], "padding": padding, **({"strides": [stride]} if stride else {})}
        c.layer(name, cls, config, ["x"])
        op = "max" if cls.startswith("Max") else "avg"
        c.output(f"out_{name}", name, pool1d(x64, size, stride or size, padding, op))
    c.layer("max_cf", "MaxPooling1D", {"pool_size": 2, "data_format": "channels_first"}, ["cf"])
    c.output("out_max_cf", "max_cf", pool1d(x64, 2, 2, "valid", "max").transpose(0, 2, 1))
    return c


def case_misc_layers():
    c = Case("misc_layers", "Inference-time identities, Permute, RepeatVector and Rescaling (float and integer inputs)", 23)
    x = c.input("x", "float32", [None, 4, 3], c.uniform(-2, 2, 2, 4, 3))
    v = c.input("v", "float32", [None, 5], c.uniform(-2, 2, 2, 5))
    pixels = c.input("pixels", "int32", [None, 2, 3], c.rng.integers(0, 256, size=(2, 2, 3)).astype(np.int32))
    inbound = "x"
    for cls in ["SpatialDropout1D", "AlphaDropout", "ActivityRegularization", "Identity"]:
        c.layer(cls.lower(), cls, {}, [inbound])
        inbound = cls.lower()
    c.layer("permute", "Permute", {"dims": [2, 1]}, [inbound])
    c.output("out_permute", "permute", x.transpose(0, 2, 1))
    c.layer("permute3", "Permute", {"dims": [1, 2]}, ["x"])
    c.output("out_permute3", "permute3", x)
    c.layer("repeat", "RepeatVector", {"n": 3}, ["v"])
    c.output("out_repeat", "repeat", np.repeat(v[:, None, :], 3, axis=1))
    c.layer("rescale", "Rescaling", {"scale": 1.0 / 255, "offset": 0.0}, ["pixels"])
    c.output("out_rescale", "rescale", pixels.astype(np.float64) / 255)
    c.layer("rescale_channels", "Rescaling", {"scale": [0.5, 2.0, -1.0], "offset": 0.25}, ["x"])
    c.output("out_rescale_channels", "rescale_channels", x.astype(np.float64) * np.array([0.5, 2.0, -1.0]) + 0.25)
    return c


def mha(query, value, key, w, heads, key_dim, value_dim, use_bias=True, causal=False):
    # Keras 3 MultiHeadAttention on [batch, steps, features] (float64): project, scale the
    # query, softmax over the key steps (masked above the diagonal with -1e9), join heads.
    def project(x, kernel, bias):
        y = np.einsum("btd,dhe->bthe", x, kernel)
        return y + bias if bias is not None else y
    it = iter(w)
    take = lambda: (next(it), next(it) if use_bias else None)
    q = project(query, *take()) / math.sqrt(key_dim)
    k = project(key, *take())
    v = project(value, *take())
    scores = np.einsum("bshe,bthe->bhts", k, q)
    if causal:
        t, s = query.shape[1], value.shape[1]
        scores = scores + (np.tril(np.ones((t, s))) - 1.0) * 1e9
    attention = softmax(scores, axis=-1)
    context = np.einsum("bhts,bshe->bthe", attention, v)
    out_kernel, out_bias = take()
    y = np.einsum("bthe,hed->btd", context, out_kernel)
    return y + out_bias if out_bias is not None else y


def case_multi_head_attention():
    c = Case("multi_head_attention", "MultiHeadAttention: self, causal, cross with a key, value_dim, no bias", 24)
    x = c.input("x", "float32", [None, 4, 6], c.uniform(-2, 2, 2, 4, 6))
    ctx = c.input("ctx", "float32", [None, None, 5], c.uniform(-2, 2, 2, 6, 5))
    key = c.input("key", "float32", [None, None, 3], c.uniform(-2, 2, 2, 6, 3))
    variants = [
        ("self_attention", ["x", "x"], 2, 3, 3, True, False),
        ("causal", ["x", "x"], 2, 3, 3, True, True),
        ("cross_value_dim", ["x", "ctx", "key"], 3, 2, 4, True, False),
        ("no_bias_causal", ["x", "ctx"], 1, 4, 4, False, True),
    ]
    feeds = {"x": x, "ctx": ctx, "key": key}
    for name, inbound, heads, key_dim, value_dim, use_bias, causal in variants:
        q_in, v_in = feeds[inbound[0]], feeds[inbound[1]]
        k_in = feeds[inbound[2]] if len(inbound) == 3 else v_in
        dims = [(q_in.shape[-1], key_dim), (k_in.shape[-1], key_dim), (v_in.shape[-1], value_dim)]
        weights = []
        for features, dim in dims:
            weights.append(c.normal(features, heads, dim, scale=0.5))
            if use_bias:
                weights.append(c.normal(heads, dim, scale=0.3))
        weights.append(c.normal(heads, value_dim, q_in.shape[-1], scale=0.5))
        if use_bias:
            weights.append(c.normal(q_in.shape[-1], scale=0.3))
        config = {"num_heads": heads, "key_dim": key_dim, "value_dim": value_dim, "use_bias": use_bias,
                  "attention_axes": [1], "use_causal_mask": causal}
        c.layer(name, "MultiHeadAttention", config, inbound, weights)
        expected = mha(q_in.astype(np.float64), v_in.astype(np.float64), k_in.astype(np.float64),
                       [w.astype(np.float64) for w in weights], heads, key_dim, value_dim, use_bias, causal)
        c.output(f"out_{name}", name, expected)
    return c


def case_time_distributed():
    c = Case("time_distributed", "TimeDistributed around Dense (rank 3 and 4), Activation, ReLU and Dropout", 25)
    x = c.input("x", "float32", [None, 4, 3], c.uniform(-2, 2, 2, 4, 3))
    grid = c.input("grid", "float32", [None, 2, 3, 3], c.uniform(-2, 2, 2, 2, 3, 3))
    x64, grid64 = x.astype(np.float64), grid.astype(np.float64)
    kernel, bias = c.normal(3, 2), c.normal(2)
    wrap = lambda cls, config: {"layer": {"class_name": cls, "config": config}}
    c.layer("td_dense", "TimeDistributed", wrap("Dense", {"units": 2, "activation": "relu"}), ["x"], [kernel, bias])
    c.output("out_td_dense", "td_dense", dense(x64, kernel, bias, ACTIVATIONS["relu"]))
    c.layer("td_dense_grid", "TimeDistributed", wrap("Dense", {"units": 2}), ["grid"], [kernel, bias])
    c.output("out_td_dense_grid", "td_dense_grid", dense(grid64, kernel, bias))
    c.layer("td_sigmoid", "TimeDistributed", wrap("Activation", {"activation": "sigmoid"}), ["x"])
    c.output("out_td_sigmoid", "td_sigmoid", sigmoid(x64))
    c.layer("td_relu", "TimeDistributed", wrap("ReLU", {"max_value": 1.0}), ["x"])
    c.output("out_td_relu", "td_relu", np.clip(x64, 0.0, 1.0))
    c.layer("td_dropout", "TimeDistributed", wrap("Dropout", {"rate": 0.5}), ["x"])
    c.layer("after_dropout", "Activation", {"activation": "tanh"}, ["td_dropout"])
    c.output("out_after_dropout", "after_dropout", np.tanh(x64))
    return c


def masked_mean(x, mask):
    weights = mask.astype(x.dtype)[..., None]
    return (x * weights).sum(axis=1) / weights.sum(axis=1)


def case_masking():
    c = Case("masking", "Embedding(mask_zero=True): the mask through Dropout, Dense and Add (OR), "
             "a masked GlobalAveragePooling1D, dropped by GlobalMaxPooling1D and Flatten", 26)
    ids = c.rng.integers(1, 9, size=(4, 6))
    ids[0, 4:] = 0  # padding after
    ids[1, :3] = 0  # padding before
    ids[2, 2] = 0  # a padding id inside
    other = c.rng.uniform(1, 9, size=(4, 6))
    other[:, 0] = 0.0
    other[3, 5] = 0.5  # not masked (ids != 0), yet looks up row 0, as in Keras
    x = c.input("ids", "int32", [None, 6], ids.astype("int32"))
    y = c.input("ids_f", "float32", [None, 6], other.astype("float32"))
    table, table_f = c.normal(9, 4), c.normal(9, 4)
    c.layer("emb", "Embedding", {"input_dim": 9, "output_dim": 4, "mask_zero": True}, ["ids"], [table])
    c.layer("emb_f", "Embedding", {"input_dim": 9, "output_dim": 4, "mask_zero": True}, ["ids_f"], [table_f])
    e = table[x.astype(np.int64)].astype(np.float64)
    e_f = table_f[y.astype(np.int64)].astype(np.float64)
    mask, mask_f = x != 0, y != 0
    c.layer("drop", "Dropout", {"rate": 0.5}, ["emb"])
    h = dense_layer(c, "dense", ["drop"], e, 3, "tanh")
    c.layer("avg", "GlobalAveragePooling1D", {}, ["dense"])
    c.output("out_avg", "avg", masked_mean(h, mask))
    c.layer("avg_keep", "GlobalAveragePooling1D", {"keepdims": True}, ["dense"])
    c.output("out_avg_keep", "avg_keep", masked_mean(h, mask)[:, None, :])
    c.layer("max", "GlobalMaxPooling1D", {}, ["dense"])
    c.output("out_max", "max", h.max(axis=1))
    c.layer("sum", "Add", {}, ["emb", "emb_f"])
    c.layer("sum_avg", "GlobalAveragePooling1D", {}, ["sum"])
    c.output("out_sum_avg", "sum_avg", masked_mean(e + e_f, mask | mask_f))
    c.layer("flat", "Flatten", {}, ["emb"])
    c.output("out_flat", "flat", e.reshape(4, 24))
    # Ids of a type compared after a cast (uint8 to int64).
    for dtype in ["uint8"]:
        small = c.input(f"ids_{dtype}", dtype, [None, 6], ids.astype(dtype))
        c.layer(f"emb_{dtype}", "Embedding", {"input_dim": 9, "output_dim": 4, "mask_zero": True},
                [f"ids_{dtype}"], [table])
        c.layer(f"avg_{dtype}", "GlobalAveragePooling1D", {}, [f"emb_{dtype}"])
        c.output(f"out_avg_{dtype}", f"avg_{dtype}",
                 masked_mean(table[small.astype(np.int64)].astype(np.float64), small != 0))
    return c


def case_masked_recurrent():
    c = Case("masked_recurrent", "LSTM, GRU, SimpleRNN and Bidirectional after Embedding(mask_zero=True): "
             "the last state over the unmasked steps only, forwards and backwards, and every step's output "
             "as Keras fills in the masked steps", 27)
    ids = c.rng.integers(1, 7, size=(4, 5))
    ids[0, 3:] = 0  # padding after
    ids[1, :2] = 0  # padding before
    ids[1, 3] = 0  # and between
    ids[2, :] = 0  # nothing but padding: the initial state, zeros
    x = c.input("ids", "int64", [None, 5], ids.astype("int64"))
    table = c.normal(7, 3)
    c.layer("emb", "Embedding", {"input_dim": 7, "output_dim": 3, "mask_zero": True}, ["ids"], [table])
    e = table[x].astype(np.float64)
    mask = x != 0

    def last_states(kind, ws, bias, units, **options):
        # Keras skips the masked steps: each sample runs over its unmasked steps alone.
        rows = [rnn(kind, e[i:i + 1, mask[i]], ws[0], ws[1], bias, units, **options)[0]
                if mask[i].any() else np.zeros(units) for i in range(len(e))]
        return np.stack(rows)

    for name, kind, units, config in [("lstm", "LSTM", 3, {}), ("gru_back", "GRU", 2, {"go_backwards": True}),
                                      ("rnn", "SimpleRNN", 2, {})]:
        ws, bias = rnn_weights(c, kind, units)
        c.layer(name, kind, {"units": units, **config}, ["emb"], ws)
        c.output(f"out_{name}", name, last_states(kind, ws, bias, units, go_backwards=config.get("go_backwards", False)))
    fw, fb = rnn_weights(c, "LSTM", 2)
    bw, bb = rnn_weights(c, "LSTM", 2)
    c.layer("bi", "Bidirectional", {"layer": {"class_name": "LSTM", "config": {"units": 2}}, "merge_mode": "concat"},
            ["emb"], fw + bw)
    c.output("out_bi", "bi", np.concatenate([last_states("LSTM", fw, fb, 2),
                                             last_states("LSTM", bw, bb, 2, go_backwards=True)], axis=-1))

    def sequences(kind, ws, bias, units, go_backwards=False, zero_masked=False):
        # Keras' outputs in the order it processes the steps: an unmasked step's own; a
        # masked step's, the last output so far (zeros before any), or zeros.
        rows = []
        for i in range(len(e)):
            xi, mi = (e[i][::-1], mask[i][::-1]) if go_backwards else (e[i], mask[i])
            out = np.zeros((len(mi), units))
            if mi.any():
                own = rnn(kind, xi[None, mi], ws[0], ws[1], bias, units, return_sequences=True)[0]
                upto = np.cumsum(mi)
                for t in range(len(mi)):
                    if mi[t] or (not zero_masked and upto[t] > 0):
                        out[t] = own[upto[t] - 1]
            rows.append(out)
        return np.stack(rows)

    for name, kind, units, config in [
        ("lstm_seq", "LSTM", 2, {}),
        ("gru_seq_back", "GRU", 2, {"go_backwards": True}),
        ("rnn_seq_zero", "SimpleRNN", 3, {"zero_output_for_mask": True}),
    ]:
        ws, bias = rnn_weights(c, kind, units)
        c.layer(name, kind, {"units": units, "return_sequences": True, **config}, ["emb"], ws)
        c.output(f"out_{name}", name, sequences(kind, ws, bias, units, config.get("go_backwards", False),
                                                config.get("zero_output_for_mask", False)))
    fw, fb = rnn_weights(c, "GRU", 2)
    bw, bb = rnn_weights(c, "GRU", 2)
    inner = {"class_name": "GRU", "config": {"units": 2, "return_sequences": True}}
    c.layer("bi_seq", "Bidirectional", {"layer": inner, "merge_mode": "sum"}, ["emb"], fw + bw)
    # Bidirectional sets zero_output_for_mask; the backward outputs go back into step order.
    c.output("out_bi_seq", "bi_seq", sequences("GRU", fw, fb, 2, zero_masked=True)
             + sequences("GRU", bw, bb, 2, go_backwards=True, zero_masked=True)[:, ::-1])
    return c


def case_masking_layer():
    c = Case("masking_layer", "Masking(mask_value=-1): zeroed steps, a masked average and an LSTM "
             "over the steps left", 28)
    x = c.uniform(-0.9, 0.9, 3, 5, 3)
    x[0, 3:] = -1.0  # padding after
    x[1, 0] = -1.0  # before
    x[1, 2, 1] = -1.0  # one feature at the mask value: the step stays
    x = c.input("x", "float32", [None, 5, 3], x)
    x64 = x.astype(np.float64)
    kept = (x != -1.0).any(axis=-1)
    c.layer("masking", "Masking", {"mask_value": -1.0}, ["x"])
    c.output("out_masking", "masking", x64 * kept[..., None])
    c.layer("avg", "GlobalAveragePooling1D", {}, ["masking"])
    c.output("out_avg", "avg", masked_mean(x64 * kept[..., None], kept))
    ws, bias = rnn_weights(c, "LSTM", 2)
    c.layer("lstm", "LSTM", {"units": 2}, ["masking"], ws)
    c.output("out_lstm", "lstm", np.stack([rnn("LSTM", x64[i:i + 1, kept[i]], ws[0], ws[1], bias, 2)[0]
                                            for i in range(len(x64))]))
    return c


def same_pads(spatial, sizes, strides, dilations):
    # np.pad widths for a channels_last value with "same" padding on every spatial axis.
    return [(0, 0)] + [same_padding(n, k, s, d) for n, k, s, d in zip(spatial, sizes, strides, dilations)] + [(0, 0)]


def windows(x, sizes, strides, dilations, padding):
    # (output position, window [batch, *sizes, channels]) for each position of a channels_last x.
    rank = x.ndim - 2
    if padding == "same":
        x = np.pad(x, same_pads(x.shape[1:-1], sizes, strides, dilations))
    spans = [(k - 1) * d + 1 for k, d in zip(sizes, dilations)]
    out = [(x.shape[1 + i] - spans[i]) // strides[i] + 1 for i in range(rank)]
    for pos in np.ndindex(*out):
        index = tuple(slice(p * s, p * s + span, d) for p, s, span, d in zip(pos, strides, spans, dilations))
        yield out, pos, x[(slice(None),) + index]


def convnd(x, kernel, bias=None, strides=None, dilations=None, padding="valid", groups=1):
    # Keras Conv2D / Conv3D on channels_last x [batch, *spatial, channels];
    # kernel [*sizes, channels/groups, filters].
    rank = x.ndim - 2
    sizes = kernel.shape[:rank]
    strides, dilations = strides or [1] * rank, dilations or [1] * rank
    cg, fg = x.shape[-1] // groups, kernel.shape[-1] // groups
    y = None
    for out, pos, window in windows(x, sizes, strides, dilations, padding):
        if y is None:
            y = np.zeros((x.shape[0], *out, kernel.shape[-1]))
        for g in range(groups):
            part = window[..., g * cg:(g + 1) * cg]
            kern = kernel[..., g * fg:(g + 1) * fg]
            y[(slice(None),) + pos + (slice(g * fg, (g + 1) * fg),)] = np.tensordot(
                part, kern, axes=(list(range(1, rank + 2)), list(range(rank + 1))))
    return y + (0 if bias is None else bias)


def depthwise_convnd(x, kernel, bias=None, strides=None, dilations=None, padding="valid"):
    # Keras DepthwiseConv1D / 2D on channels_last x; kernel [*sizes, channels, multiplier];
    # output channel c * multiplier + m.
    rank = x.ndim - 2
    sizes, (channels, multiplier) = kernel.shape[:rank], kernel.shape[rank:]
    strides, dilations = strides or [1] * rank, dilations or [1] * rank
    taps = int(np.prod(sizes))
    y = None
    for out, pos, window in windows(x, sizes, strides, dilations, padding):
        if y is None:
            y = np.zeros((x.shape[0], *out, channels * multiplier))
        per_channel = np.einsum("bkc,kcm->bcm", window.reshape(x.shape[0], taps, channels),
                                kernel.reshape(taps, channels, multiplier))
        y[(slice(None),) + pos] = per_channel.reshape(x.shape[0], channels * multiplier)
    return y + (0 if bias is None else bias)


def separable_convnd(x, depthwise_kernel, pointwise_kernel, bias=None, strides=None, dilations=None, padding="valid"):
    # Keras SeparableConv1D / 2D: depthwise (no bias), then a 1x1 convolution with the bias.
    h = depthwise_convnd(x, depthwise_kernel, None, strides, dilations, padding)
    return dense(h, pointwise_kernel.reshape(-1, pointwise_kernel.shape[-1]), bias)


def poolnd(x, sizes, strides, padding, op):
    # Keras MaxPooling / AveragePooling on channels_last x; padded cells never count.
    rank = x.ndim - 2
    spatial = x.shape[1:-1]
    if padding == "same":
        out = [-(-n // s) for n, s in zip(spatial, strides)]
        left = [same_padding(n, k, s)[0] for n, k, s in zip(spatial, sizes, strides)]
    else:
        out = [(n - k) // s + 1 for n, k, s in zip(spatial, sizes, strides)]
        left = [0] * rank
    y = np.zeros((x.shape[0], *out, x.shape[-1]))
    axes = tuple(range(1, rank + 1))
    for pos in np.ndindex(*out):
        index = tuple(slice(max(p * s - l, 0), min(p * s - l + k, n))
                      for p, s, l, k, n in zip(pos, strides, left, sizes, spatial))
        window = x[(slice(None),) + index]
        y[(slice(None),) + pos] = window.max(axis=axes) if op == "max" else window.mean(axis=axes)
    return y


def to_channels_first(x):
    return np.ascontiguousarray(np.moveaxis(x, -1, 1))


def upsample_nearest(x, sizes):
    # Keras UpSampling1D/2D/3D (nearest): each cell repeated size times along its axis.
    for axis, s in enumerate(sizes, start=1):
        x = np.repeat(x, s, axis=axis)
    return x


def upsample_bilinear(x, sizes):
    # Keras UpSampling2D(interpolation="bilinear") = tf.image.resize(..., "bilinear") in TF2:
    # half-pixel centres, source coordinate clamped to the image, channels_last x.
    def taps(steps, scale):
        out = []
        for o in range(steps * scale):
            src = min(max((o + 0.5) / scale - 0.5, 0.0), steps - 1.0)
            lo = int(math.floor(src))
            out.append((lo, min(lo + 1, steps - 1), src - lo))
        return out

    rows, cols = taps(x.shape[1], sizes[0]), taps(x.shape[2], sizes[1])
    y = np.zeros((x.shape[0], len(rows), len(cols), x.shape[3]))
    for i, (r0, r1, fr) in enumerate(rows):
        for j, (c0, c1, fc) in enumerate(cols):
            top = x[:, r0, c0] * (1 - fc) + x[:, r0, c1] * fc
            bottom = x[:, r1, c0] * (1 - fc) + x[:, r1, c1] * fc
            y[:, i, j] = top * (1 - fr) + bottom * fr
    return y


def case_conv2d():
    c = Case("conv2d", "Conv2D (valid, same with strides, dilation, groups, channels_first), DepthwiseConv1D/2D, "
             "SeparableConv1D/2D and Conv3D", 29)
    c.atol = 1e-5  # sums of up to 36 float32 products
    img = c.input("img", "float32", [None, 7, 6, 4], c.uniform(-2, 2, 2, 7, 6, 4))
    img64 = img.astype(np.float64)
    variants = [
        # name, filters, kernel size, config, activation
        ("conv", 3, [3, 3], {}, "linear"),
        ("conv_same_stride", 3, [4, 2], {"padding": "same", "strides": [2, 1]}, "relu"),
        ("conv_dilation", 2, [2, 3], {"dilation_rate": [2, 1], "use_bias": False}, "linear"),
        ("conv_dilation_same", 2, [2, 2], {"padding": "same", "dilation_rate": [2, 1], "use_bias": False}, "linear"),
        ("conv_groups", 6, [3, 3], {"padding": "same", "groups": 2}, "tanh"),
    ]
    for name, filters, size, config, act in variants:
        groups = config.get("groups", 1)
        kernel = c.normal(*size, 4 // groups, filters, scale=0.4)
        bias = c.normal(filters, scale=0.5) if config.get("use_bias", True) else None
        weights = [kernel] + ([bias] if bias is not None else [])
        # The kernel size as one integer where it is square, as Keras allows.
        ks = size[0] if size[0] == size[1] else size
        c.layer(name, "Conv2D", {"filters": filters, "kernel_size": ks, "activation": act, **config}, ["img"], weights)
        y = convnd(img64, kernel, bias, config.get("strides"), config.get("dilation_rate"),
                   config.get("padding", "valid"), groups)
        c.output(f"out_{name}", name, ACTIVATIONS[act](y))
    img_cf = c.input("img_cf", "float32", [None, 4, 7, 6], to_channels_first(img))
    kernel, bias = c.normal(3, 2, 4, 2, scale=0.4), c.normal(2, scale=0.5)
    c.layer("conv_cf", "Conv2D", {"filters": 2, "kernel_size": [3, 2], "strides": 2, "data_format": "channels_first"},
            ["img_cf"], [kernel, bias])
    c.output("out_conv_cf", "conv_cf", np.moveaxis(convnd(img64, kernel, bias, [2, 2]), -1, 1))

    kernel, bias = c.normal(3, 3, 4, 2, scale=0.5), c.normal(8, scale=0.5)
    c.layer("depthwise", "DepthwiseConv2D", {"kernel_size": 3, "depth_multiplier": 2, "padding": "same"},
            ["img"], [kernel, bias])
    c.output("out_depthwise", "depthwise", depthwise_convnd(img64, kernel, bias, padding="same"))
    kernel = c.normal(2, 3, 4, 1, scale=0.5)
    c.layer("depthwise_stride", "DepthwiseConv2D",
            {"kernel_size": [2, 3], "strides": [2, 2], "use_bias": False, "activation": "relu"}, ["img"], [kernel])
    c.output("out_depthwise_stride", "depthwise_stride",
             ACTIVATIONS["relu"](depthwise_convnd(img64, kernel, None, [2, 2])))
    kernel, bias = c.normal(2, 2, 4, 3, scale=0.5), c.normal(12, scale=0.5)
    c.layer("depthwise_cf", "DepthwiseConv2D", {"kernel_size": 2, "depth_multiplier": 3, "data_format": "channels_first"},
            ["img_cf"], [kernel, bias])
    c.output("out_depthwise_cf", "depthwise_cf", np.moveaxis(depthwise_convnd(img64, kernel, bias), -1, 1))

    dw, pw, bias = c.normal(3, 2, 4, 2, scale=0.5), c.normal(1, 1, 8, 5, scale=0.4), c.normal(5, scale=0.5)
    config = {"filters": 5, "kernel_size": [3, 2], "depth_multiplier": 2, "dilation_rate": [1, 2],
              "padding": "same", "activation": "relu"}
    c.layer("separable", "SeparableConv2D", config, ["img"], [dw, pw, bias])
    c.output("out_separable", "separable",
             ACTIVATIONS["relu"](separable_convnd(img64, dw, pw, bias, dilations=[1, 2], padding="same")))

    seq = c.input("seq", "float32", [None, 9, 3], c.uniform(-2, 2, 2, 9, 3))
    seq64 = seq.astype(np.float64)
    kernel, bias = c.normal(3, 3, 2, scale=0.5), c.normal(6, scale=0.5)
    c.layer("depthwise_1d", "DepthwiseConv1D",
            {"kernel_size": 3, "depth_multiplier": 2, "padding": "same", "dilation_rate": 2, "activation": "tanh"},
            ["seq"], [kernel, bias])
    c.output("out_depthwise_1d", "depthwise_1d",
             np.tanh(depthwise_convnd(seq64, kernel, bias, dilations=[2], padding="same")))
    dw, pw, bias = c.normal(3, 3, 1, scale=0.5), c.normal(1, 3, 4, scale=0.5), c.normal(4, scale=0.5)
    c.layer("separable_1d", "SeparableConv1D", {"filters": 4, "kernel_size": [3], "strides": [2]},
            ["seq"], [dw, pw, bias])
    c.output("out_separable_1d", "separable_1d", separable_convnd(seq64, dw, pw, bias, strides=[2]))

    vol = c.input("vol", "float32", [None, 4, 5, 3, 2], c.uniform(-2, 2, 2, 4, 5, 3, 2))
    vol64 = vol.astype(np.float64)
    kernel, bias = c.normal(2, 3, 2, 2, 3, scale=0.4), c.normal(3, scale=0.5)
    c.layer("conv3d", "Conv3D", {"filters": 3, "kernel_size": [2, 3, 2]}, ["vol"], [kernel, bias])
    c.output("out_conv3d", "conv3d", convnd(vol64, kernel, bias))
    kernel, bias = c.normal(3, 3, 3, 2, 2, scale=0.4), c.normal(2, scale=0.5)
    c.layer("conv3d_same", "Conv3D",
            {"filters": 2, "kernel_size": 3, "strides": [1, 2, 1], "padding": "same", "activation": "relu"},
            ["vol"], [kernel, bias])
    c.output("out_conv3d_same", "conv3d_same",
             ACTIVATIONS["relu"](convnd(vol64, kernel, bias, [1, 2, 1], padding="same")))
    # Conv1D, "same" with a dilation: explicit pads (ONNX Runtime refuses auto_pad there).
    kernel, bias = c.normal(3, 3, 2, scale=0.4), c.normal(2, scale=0.5)
    c.layer("conv1d_dilation_same", "Conv1D",
            {"filters": 2, "kernel_size": 3, "dilation_rate": 3, "padding": "same"},
            ["seq"], [kernel, bias])
    c.output("out_conv1d_dilation_same", "conv1d_dilation_same",
             convnd(seq64, kernel, bias, dilations=[3], padding="same"))
    return c


def pads_per_axis(padding, rank):
    # Keras' ZeroPadding / Cropping settings: an int, one int per axis, or [before, after] per
    # axis; for one axis, a list of two ints is (before, after).
    if isinstance(padding, int):
        return [(padding, padding)] * rank
    if rank == 1 and len(padding) == 2 and all(isinstance(p, int) for p in padding):
        return [tuple(padding)]
    return [tuple(p) if isinstance(p, list) else (p, p) for p in padding]


def zero_pad(x, padding):
    # channels_last x.
    return np.pad(x, [(0, 0)] + pads_per_axis(padding, x.ndim - 2) + [(0, 0)])


def crop(x, cropping):
    # channels_last x.
    index = tuple(slice(b, n - a) for (b, a), n in zip(pads_per_axis(cropping, x.ndim - 2), x.shape[1:-1]))
    return x[(slice(None),) + index]


def case_spatial_2d():
    c = Case("spatial_2d", "2-D and 3-D pooling (valid, same, channels_first), global pooling, zero padding, "
             "cropping and upsampling (nearest, bilinear)", 30)
    img = c.input("img", "float32", [None, 7, 6, 3], c.uniform(-2, 2, 2, 7, 6, 3))
    img64 = img.astype(np.float64)
    img_cf = c.input("img_cf", "float32", [None, 3, 7, 6], to_channels_first(img))
    vol = c.input("vol", "float32", [None, 4, 5, 3, 2], c.uniform(-2, 2, 2, 4, 5, 3, 2))
    vol64 = vol.astype(np.float64)
    seq = c.input("seq", "float32", [None, 5, 3], c.uniform(-2, 2, 2, 5, 3))
    seq64 = seq.astype(np.float64)
    cf = lambda y: np.moveaxis(y, -1, 1)

    # name, class, pool size, strides (None: the pool size), padding, input
    for name, cls, size, stride, padding, source in [
        ("max", "MaxPooling2D", None, None, "valid", "img"),
        ("max_same", "MaxPooling2D", [3, 3], [2, 2], "same", "img"),
        ("avg", "AveragePooling2D", [2, 3], [1, 2], "valid", "img"),
        ("avg_same", "AveragePooling2D", [3, 3], [1, 1], "same", "img"),
        ("avg_same_stride", "AveragePooling2D", [2, 3], [2, 2], "same", "img"),
        ("max3d", "MaxPooling3D", [2, 2, 2], [1, 2, 1], "valid", "vol"),
        ("avg3d_same", "AveragePooling3D", [3, 2, 2], [2, 2, 2], "same", "vol"),
    ]:
        config = {"padding": padding}
        if size is not None:
            config["pool_size"] = size
        if stride is not None:
            config["strides"] = stride
        c.layer(name, cls, config, [source])
        x = img64 if source == "img" else vol64
        rank = x.ndim - 2
        sizes = size or [2] * rank
        op = "max" if cls.startswith("Max") else "avg"
        c.output(f"out_{name}", name, poolnd(x, sizes, stride or sizes, padding, op))
    c.layer("avg_cf", "AveragePooling2D", {"pool_size": 3, "strides": 2, "padding": "same", "data_format": "channels_first"},
            ["img_cf"])
    c.output("out_avg_cf", "avg_cf", cf(poolnd(img64, [3, 3], [2, 2], "same", "avg")))
    c.layer("max_cf", "MaxPooling2D", {"pool_size": [2, 2], "strides": [1, 1], "data_format": "channels_first"}, ["img_cf"])
    c.output("out_max_cf", "max_cf", cf(poolnd(img64, [2, 2], [1, 1], "valid", "max")))

    c.layer("gap_keepdims", "GlobalAveragePooling2D", {"keepdims": True}, ["img"])
    c.output("out_gap_keepdims", "gap_keepdims", img64.mean(axis=(1, 2), keepdims=True))
    c.layer("gmp_cf", "GlobalMaxPooling2D", {"data_format": "channels_first"}, ["img_cf"])
    c.output("out_gmp_cf", "gmp_cf", img64.max(axis=(1, 2)))
    c.layer("gmp3d", "GlobalMaxPooling3D", {}, ["vol"])
    c.output("out_gmp3d", "gmp3d", vol64.max(axis=(1, 2, 3)))
    # The volume read channels first: 4 channels over 5x3x2.
    c.layer("gap3d_cf_keepdims", "GlobalAveragePooling3D", {"data_format": "channels_first", "keepdims": True}, ["vol"])
    c.output("out_gap3d_cf_keepdims", "gap3d_cf_keepdims", vol64.mean(axis=(2, 3, 4), keepdims=True))

    for name, cls, padding, source in [
        ("pad_pairs", "ZeroPadding2D", [[1, 2], [0, 3]], "img"),
        ("pad_default", "ZeroPadding2D", None, "img"),
        ("pad_axes", "ZeroPadding2D", [2, 1], "img"),
        ("pad_1d", "ZeroPadding1D", [2, 1], "seq"),
        ("pad_1d_int", "ZeroPadding1D", 3, "seq"),
        ("pad_3d", "ZeroPadding3D", [1, 0, 2], "vol"),
    ]:
        c.layer(name, cls, {} if padding is None else {"padding": padding}, [source])
        x = {"img": img64, "seq": seq64, "vol": vol64}[source]
        c.output(f"out_{name}", name, zero_pad(x, 1 if padding is None else padding))
    c.layer("pad_cf", "ZeroPadding2D", {"padding": [[0, 1], [2, 0]], "data_format": "channels_first"}, ["img_cf"])
    c.output("out_pad_cf", "pad_cf", cf(zero_pad(img64, [[0, 1], [2, 0]])))

    for name, cls, cropping, source in [
        ("crop_pairs", "Cropping2D", [[1, 2], [0, 3]], "img"),
        ("crop_int", "Cropping2D", 1, "img"),
        ("crop_axes", "Cropping2D", [2, 1], "img"),
        ("crop_default", "Cropping2D", None, "img"),
        ("crop_1d", "Cropping1D", [1, 2], "seq"),
        ("crop_3d", "Cropping3D", [[1, 1], [0, 2], [1, 0]], "vol"),
    ]:
        c.layer(name, cls, {} if cropping is None else {"cropping": cropping}, [source])
        x = {"img": img64, "seq": seq64, "vol": vol64}[source]
        c.output(f"out_{name}", name, crop(x, 0 if cropping is None else cropping))
    c.layer("crop_cf", "Cropping2D", {"cropping": [[2, 0], [1, 1]], "data_format": "channels_first"}, ["img_cf"])
    c.output("out_crop_cf", "crop_cf", cf(crop(img64, [[2, 0], [1, 1]])))

    for name, cls, size, source in [
        ("up_nearest", "UpSampling2D", [2, 3], "img"),
        ("up_default", "UpSampling2D", None, "img"),
        ("up_1d", "UpSampling1D", 3, "seq"),
        ("up_3d", "UpSampling3D", [2, 1, 2], "vol"),
    ]:
        c.layer(name, cls, {} if size is None else {"size": size}, [source])
        x = {"img": img64, "seq": seq64, "vol": vol64}[source]
        rank = x.ndim - 2
        sizes = [2] * rank if size is None else [size] * rank if isinstance(size, int) else size
        c.output(f"out_{name}", name, upsample_nearest(x, sizes))
    c.layer("up_nearest_cf", "UpSampling2D", {"size": [3, 2], "data_format": "channels_first"}, ["img_cf"])
    c.output("out_up_nearest_cf", "up_nearest_cf", cf(upsample_nearest(img64, [3, 2])))
    for name, size in [("up_bilinear", [2, 2]), ("up_bilinear_3_2", [3, 2]), ("up_bilinear_int", 4)]:
        c.layer(name, "UpSampling2D", {"size": size, "interpolation": "bilinear"}, ["img"])
        sizes = [size, size] if isinstance(size, int) else size
        c.output(f"out_{name}", name, upsample_bilinear(img64, sizes))
    c.layer("up_bilinear_cf", "UpSampling2D", {"size": [2, 3], "interpolation": "bilinear",
                                               "data_format": "channels_first"}, ["img_cf"])
    c.output("out_up_bilinear_cf", "up_bilinear_cf", cf(upsample_bilinear(img64, [2, 3])))
    return c


def case_augmentation():
    c = Case("augmentation", "Random image augmentations change nothing at inference; the geometric ones give float32 for uint8 pixels", 31)
    pixels = c.input("pixels", "uint8", [None, 5, 4, 3], c.rng.integers(0, 256, (2, 5, 4, 3)).astype(np.uint8))
    x = c.input("x", "float32", [None, 5, 4, 3], c.normal(2, 5, 4, 3))
    c.layer("flip", "RandomFlip", {"mode": "horizontal", "seed": None}, ["pixels"])
    c.layer("rotation", "RandomRotation", {"factor": 0.1}, ["flip"])
    c.layer("zoom", "RandomZoom", {"height_factor": 0.1}, ["x"])
    c.layer("translation", "RandomTranslation", {"height_factor": 0.1, "width_factor": 0.1}, ["zoom"])
    c.layer("contrast", "RandomContrast", {"factor": 0.2}, ["translation"])
    c.layer("brightness", "RandomBrightness", {"factor": 0.1}, ["contrast"])
    c.output("out_pixels", "rotation", pixels.astype(np.float32))
    c.output("out_x", "brightness", x)
    return c


def conv_transpose_len(steps, size, stride, dilation, padding, output_padding):
    # Keras' output length (keras.src.ops.operation_utils.compute_conv_transpose_output_length).
    span = (size - 1) * dilation + 1
    if output_padding is None:
        return steps * stride + max(span - stride, 0) if padding == "valid" else steps * stride
    pad = span // 2 if padding == "same" else 0
    return (steps - 1) * stride + span - 2 * pad + output_padding


def conv_transpose_nd(x, kernel, bias=None, strides=None, dilations=None, padding="valid", output_padding=None):
    # TensorFlow's conv_transpose: the adjoint of a conv whose input has the output's length
    # (the first cell at -pad_before, "same" placing the odd pad at the end), channels_last x,
    # kernel [*sizes, filters, channels].
    rank = x.ndim - 2
    sizes = kernel.shape[:rank]
    strides, dilations = strides or [1] * rank, dilations or [1] * rank
    output_padding = output_padding or [None] * rank
    lengths = [conv_transpose_len(x.shape[1 + a], sizes[a], strides[a], dilations[a], padding, output_padding[a])
               for a in range(rank)]
    before = []
    for a in range(rank):
        span = (sizes[a] - 1) * dilations[a] + 1
        total = max((-(-lengths[a] // strides[a]) - 1) * strides[a] + span - lengths[a], 0)
        before.append(total // 2 if padding == "same" else 0)
    y = np.zeros((x.shape[0], *lengths, kernel.shape[-2]))
    for i in np.ndindex(*x.shape[1:-1]):
        for k in np.ndindex(*sizes):
            j = tuple(i[a] * strides[a] + k[a] * dilations[a] - before[a] for a in range(rank))
            if all(0 <= j[a] < lengths[a] for a in range(rank)):
                y[(slice(None),) + j] += x[(slice(None),) + i] @ kernel[k].T
    return y + (0 if bias is None else bias)


def case_conv_transpose():
    c = Case("conv_transpose", "Conv1D/2D/3DTranspose: valid, same, strides over and under the kernel, "
             "output_padding, dilation, channels_first", 32)
    c.atol = 1e-5
    img = c.input("img", "float32", [None, 4, 5, 3], c.uniform(-2, 2, 2, 4, 5, 3))
    img64 = img.astype(np.float64)
    variants = [
        # name, filters, kernel size, config
        ("valid", 2, [3, 3], {}),
        ("valid_stride", 3, [3, 2], {"strides": [2, 1]}),
        ("stride_over_kernel", 2, [2, 2], {"strides": 3, "use_bias": False}),
        ("same_stride", 2, [3, 4], {"strides": 2, "padding": "same", "activation": "tanh"}),
        ("output_padding", 2, [3, 3], {"strides": 2, "output_padding": [1, 0]}),
        ("same_output_padding", 2, [4, 3], {"strides": [3, 2], "padding": "same", "output_padding": 1}),
        ("dilated_same", 2, [2, 3], {"dilation_rate": [2, 1], "padding": "same"}),
    ]
    for name, filters, size, config in variants:
        use_bias = config.get("use_bias", True)
        kernel = c.normal(*size, filters, 3, scale=0.4)
        bias = c.normal(filters, scale=0.5) if use_bias else None
        c.layer(name, "Conv2DTranspose", {"filters": filters, "kernel_size": size, **config}, ["img"],
                [kernel] + ([bias] if use_bias else []))
        strides = config.get("strides", 1)
        strides = strides if isinstance(strides, list) else [strides] * 2
        op = config.get("output_padding")
        op = None if op is None else (op if isinstance(op, list) else [op] * 2)
        y = conv_transpose_nd(img64, kernel, bias, strides, config.get("dilation_rate"),
                              config.get("padding", "valid"), op)
        c.output(f"out_{name}", name, ACTIVATIONS[config.get("activation", "linear")](y))
    img_cf = c.input("img_cf", "float32", [None, 3, 4, 5], c.uniform(-2, 2, 2, 3, 4, 5))
    kernel, bias = c.normal(3, 3, 2, 3, scale=0.4), c.normal(2, scale=0.5)
    c.layer("channels_first", "Conv2DTranspose",
            {"filters": 2, "kernel_size": 3, "strides": 2, "data_format": "channels_first"}, ["img_cf"], [kernel, bias])
    y = conv_transpose_nd(img_cf.astype(np.float64).transpose(0, 2, 3, 1), kernel, bias, [2, 2])
    c.output("out_channels_first", "channels_first", y.transpose(0, 3, 1, 2))
    seq = c.input("seq", "float32", [None, 5, 2], c.uniform(-2, 2, 2, 5, 2))
    kernel, bias = c.normal(3, 4, 2, scale=0.4), c.normal(4, scale=0.5)
    c.layer("transpose_1d", "Conv1DTranspose", {"filters": 4, "kernel_size": 3, "strides": 2, "padding": "same"},
            ["seq"], [kernel, bias])
    c.output("out_transpose_1d", "transpose_1d",
             conv_transpose_nd(seq.astype(np.float64), kernel, bias, [2], padding="same"))
    vol = c.input("vol", "float32", [None, 2, 3, 2, 2], c.uniform(-2, 2, 2, 2, 3, 2, 2))
    kernel, bias = c.normal(2, 2, 2, 3, 2, scale=0.4), c.normal(3, scale=0.5)
    c.layer("transpose_3d", "Conv3DTranspose", {"filters": 3, "kernel_size": 2, "strides": [1, 2, 2]},
            ["vol"], [kernel, bias])
    c.output("out_transpose_3d", "transpose_3d",
             conv_transpose_nd(vol.astype(np.float64), kernel, bias, [1, 2, 2]))
    return c


def resize_bilinear(x, height, width):
    # Half-pixel-centre bilinear resizing of channels_last x, edges clamped, no antialiasing.
    def taps(n_in, n_out):
        pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        low = np.floor(pos).astype(int)
        high = np.minimum(low + 1, n_in - 1)
        return low, high, pos - low
    r0, r1, rw = taps(x.shape[1], height)
    c0, c1, cw = taps(x.shape[2], width)
    rows = x[:, r0] * (1 - rw)[None, :, None, None] + x[:, r1] * rw[None, :, None, None]
    return rows[:, :, c0] * (1 - cw)[None, None, :, None] + rows[:, :, c1] * cw[None, None, :, None]


def case_image_preprocessing():
    c = Case("image_preprocessing", "Resizing (bilinear, down and up; uint8 rounded and clipped) and CenterCrop", 33)
    x = c.input("x", "float32", [None, 6, 9, 2], c.normal(2, 6, 9, 2))
    pixels = c.input("pixels", "uint8", [None, 5, 7, 3], c.rng.integers(0, 256, (2, 5, 7, 3)).astype(np.uint8))
    c.layer("down", "Resizing", {"height": 4, "width": 5}, ["x"])
    c.output("out_down", "down", resize_bilinear(x.astype(np.float64), 4, 5))
    c.layer("up", "Resizing", {"height": 11, "width": 13}, ["x"])
    c.output("out_up", "up", resize_bilinear(x.astype(np.float64), 11, 13))
    c.layer("crop", "CenterCrop", {"height": 3, "width": 6}, ["x"])
    c.output("out_crop", "crop", x[:, 1:4, 1:7])
    c.layer("pixels_crop", "CenterCrop", {"height": 4, "width": 4}, ["pixels"])
    c.output("out_pixels_crop", "pixels_crop", pixels[:, 0:4, 1:5].astype(np.float32))
    return c


def case_image_preprocessing_uint8():
    c = Case("image_preprocessing_uint8", "Resizing uint8 pixels: resized as floats, rounded, clipped, cast back", 34)
    # A value that lands on .5 in float64 may round either way in ONNX Runtime's float32;
    # the Keras fixture image_preprocessing checks these exactly against Keras.
    c.atol = 1.0
    pixels = c.input("pixels", "uint8", [None, 5, 7, 3], c.rng.integers(0, 256, (2, 5, 7, 3)).astype(np.uint8))
    c.layer("pixels_resized", "Resizing", {"height": 8, "width": 4}, ["pixels"])
    resized = np.clip(np.round(resize_bilinear(pixels.astype(np.float64), 8, 4)), 0, 255).astype(np.uint8)
    c.output("out_pixels_resized", "pixels_resized", resized, dtype=np.uint8)
    return c


def unit_normalize(x, axes, cap):
    # Keras' ops.normalize: x * min(1 / sqrt(sum of squares), cap).
    squares = np.sum(np.square(x), axis=tuple(axes), keepdims=True)
    with np.errstate(divide="ignore"):
        return x * np.minimum(1 / np.sqrt(squares), cap)


def case_dot():
    c = Case("dot", "Dot (rank 2 and 3, axes forms, normalize) and UnitNormalization", 35)
    u = c.input("u", "float32", [None, 5], c.normal(2, 5))
    v = c.input("v", "float32", [None, 5], c.normal(2, 5))
    a = c.input("a", "float32", [None, 3, 4], c.normal(2, 3, 4))
    b = c.input("b", "float32", [None, 2, 4], c.normal(2, 2, 4))
    u64, v64, a64, b64 = (t.astype(np.float64) for t in (u, v, a, b))
    c.layer("dot", "Dot", {"axes": 1}, ["u", "v"])
    c.output("out_dot", "dot", np.sum(u64 * v64, axis=1, keepdims=True))
    c.layer("cosine", "Dot", {"axes": [1, 1], "normalize": True}, ["u", "v"])
    c.output("out_cosine", "cosine",
             np.sum(unit_normalize(u64, [1], 1e7) * unit_normalize(v64, [1], 1e7), axis=1, keepdims=True))
    c.layer("rows", "Dot", {"axes": [2, 2]}, ["a", "b"])
    c.output("out_rows", "rows", np.einsum("bik,bjk->bij", a64, b64))
    c.layer("columns", "Dot", {"axes": -1, "normalize": True}, ["a", "b"])
    c.output("out_columns", "columns",
             np.einsum("bik,bjk->bij", unit_normalize(a64, [2], 1e7), unit_normalize(b64, [2], 1e7)))
    c.layer("unit", "UnitNormalization", {"axis": -1}, ["a"])
    c.output("out_unit", "unit", unit_normalize(a64, [2], 1e12))
    c.layer("unit_both", "UnitNormalization", {"axis": [1, 2]}, ["b"])
    c.output("out_unit_both", "unit_both", unit_normalize(b64, [1, 2], 1e12))
    return c


def group_norm(x, groups, gamma=None, beta=None, eps=1e-3):
    # Keras' GroupNormalization over the last axis.
    shape = x.shape
    g = x.reshape(*shape[:-1], groups, shape[-1] // groups)
    axes = tuple(range(1, g.ndim - 2)) + (g.ndim - 1,)
    mean = g.mean(axis=axes, keepdims=True)
    var = ((g - mean) ** 2).mean(axis=axes, keepdims=True)
    y = ((g - mean) / np.sqrt(var + eps)).reshape(shape)
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    return y


def case_group_normalization():
    c = Case("group_normalization", "GroupNormalization: images, sequences, features; with and without gamma and beta", 36)
    img = c.input("img", "float32", [None, 3, 4, 6], c.normal(2, 3, 4, 6))
    seq = c.input("seq", "float32", [None, None, 4], c.normal(2, 5, 4))
    img64, seq64 = img.astype(np.float64), seq.astype(np.float64)
    gamma, beta = c.uniform(0.5, 1.5, 6), c.normal(6)
    c.layer("groups", "GroupNormalization", {"groups": 3}, ["img"], [gamma, beta])
    c.output("out_groups", "groups", group_norm(img64, 3, gamma, beta))
    c.layer("instance", "GroupNormalization", {"groups": 6, "epsilon": 1e-5, "center": False}, ["img"], [gamma])
    c.output("out_instance", "instance", group_norm(img64, 6, gamma, eps=1e-5))
    beta4 = c.normal(4)
    c.layer("seq_groups", "GroupNormalization", {"groups": 2, "scale": False}, ["seq"], [beta4])
    c.output("out_seq_groups", "seq_groups", group_norm(seq64, 2, beta=beta4))
    return c


def one_hot(ids, depth):
    # Keras' JAX one_hot: an id outside 0..depth encodes as zeros.
    return (ids[..., None] == np.arange(depth)).astype(np.float32)


def case_tabular_encoding():
    c = Case("tabular_encoding", "Discretization (int, one_hot, multi_hot, count) and CategoryEncoding", 37)
    x = c.input("x", "float32", [None, 3], np.array([[-2.0, 0.0, 0.5], [1.0, 3.0, -0.5]], dtype=np.float32))
    ids = c.input("ids", "int64", [None, 4], np.array([[0, 2, 2, 5], [7, -1, 1, 3]], dtype=np.int64))
    one = c.input("one", "int32", [None, 1], np.array([[4], [1]], dtype=np.int32))
    bounds = [-1.0, 0.0, 1.0]
    buckets = np.digitize(x, bounds)
    c.layer("buckets", "Discretization", {"bin_boundaries": bounds}, ["x"])
    c.output("out_buckets", "buckets", buckets, dtype=np.int32)
    c.layer("bucket_hot", "Discretization", {"bin_boundaries": bounds, "output_mode": "multi_hot"}, ["x"])
    c.output("out_bucket_hot", "bucket_hot", one_hot(buckets, 4).max(axis=1))
    c.layer("bucket_count", "Discretization", {"bin_boundaries": bounds, "output_mode": "count"}, ["x"])
    c.output("out_bucket_count", "bucket_count", one_hot(buckets, 4).sum(axis=1))
    c.layer("bucket_one_hot", "Discretization", {"bin_boundaries": bounds, "output_mode": "one_hot"}, ["x"])
    c.output("out_bucket_one_hot", "bucket_one_hot", one_hot(buckets, 4))
    c.layer("multi_hot", "CategoryEncoding", {"num_tokens": 6}, ["ids"])
    c.output("out_multi_hot", "multi_hot", one_hot(ids, 6).max(axis=1))
    c.layer("count", "CategoryEncoding", {"num_tokens": 6, "output_mode": "count"}, ["ids"])
    c.output("out_count", "count", one_hot(ids, 6).sum(axis=1))
    c.layer("one_hot", "CategoryEncoding", {"num_tokens": 5, "output_mode": "one_hot"}, ["one"])
    c.output("out_one_hot", "one_hot", one_hot(one[:, 0], 5))
    return c


def case_keras_operation():
    c = Case("keras_operation", "KerasOperation: keras.ops calls with tensors, arrays and Python numbers; type promotion", 38)
    x = c.input("x", "float32", [None, 3, 4], c.normal(2, 3, 4))
    n = c.input("n", "int32", [None, 3], np.array([[0, 2, 5], [3, 0, 1]], dtype=np.int32))
    x64 = x.astype(np.float64)
    num = lambda v: np.array(v, dtype=np.float64)  # noqa: E731
    c.layer("mean", "KerasOperation", {"op": "Mean", "operands": ["tensor"], "axis": 1, "keepdims": True}, ["x"])
    c.output("out_mean", "mean", x64.mean(axis=1, keepdims=True))
    c.layer("halved", "KerasOperation", {"op": "TrueDivide", "operands": ["tensor", "float"]}, ["x"], [num(2.0)])
    c.output("out_halved", "halved", x64 / 2.0)
    c.layer("ratio", "KerasOperation", {"op": "TrueDivide", "operands": ["tensor", "int"]}, ["n"], [num(4)])
    c.output("out_ratio", "ratio", n / 4.0)
    c.layer("shifted", "KerasOperation", {"op": "Add", "operands": ["int", "tensor"]}, ["n"], [num(7)])
    c.output("out_shifted", "shifted", n + 7, dtype=np.int32)
    c.layer("present", "KerasOperation", {"op": "NotEqual", "operands": ["tensor", "int"]}, ["n"], [num(0)])
    c.layer("mask", "KerasOperation", {"op": "Cast", "operands": ["tensor"], "dtype": "float32"}, ["present"])
    c.output("out_mask", "mask", (n != 0).astype(np.float64))
    c.layer("masked", "KerasOperation", {"op": "Multiply", "operands": ["tensor", "tensor"]}, ["x", "expanded"])
    c.layer("expanded", "KerasOperation", {"op": "ExpandDims", "operands": ["tensor"], "axis": -1}, ["mask"])
    c.output("out_masked", "masked", x64 * (n != 0)[..., None])
    table = c.normal(6, 4)
    c.layer("looked_up", "KerasOperation", {"op": "Take", "operands": ["array", "tensor"], "axis": 0}, ["n"], [table])
    c.output("out_looked_up", "looked_up", table.astype(np.float64)[n])
    c.layer("leaky", "KerasOperation", {"op": "Where", "operands": ["tensor", "tensor", "tensor"]}, ["positive", "x", "scaled"])
    c.layer("positive", "KerasOperation", {"op": "Greater", "operands": ["tensor", "float"]}, ["x"], [num(0.0)])
    c.layer("scaled", "KerasOperation", {"op": "Multiply", "operands": ["float", "tensor"]}, ["x"], [num(0.1)])
    c.output("out_leaky", "leaky", np.where(x64 > 0, x64, 0.1 * x64))
    c.layer("swapped", "KerasOperation", {"op": "Transpose", "operands": ["tensor"], "axes": [0, 2, 1]}, ["x"])
    c.layer("gram", "KerasOperation", {"op": "Matmul", "operands": ["tensor", "tensor"]}, ["x", "swapped"])
    c.output("out_gram", "gram", x64 @ x64.transpose(0, 2, 1))
    c.layer("stacked", "KerasOperation", {"op": "Stack", "operands": ["tensor", "tensor"], "axis": -1}, ["mean", "mean"])
    c.output("out_stacked", "stacked", np.stack([x64.mean(axis=1, keepdims=True)] * 2, axis=-1))
    c.layer("flat", "KerasOperation", {"op": "Reshape", "operands": ["tensor"], "newshape": [-1, 12]}, ["x"])
    c.output("out_flat", "flat", x64.reshape(-1, 12))
    c.layer("biggest", "KerasOperation", {"op": "Argmax", "operands": ["tensor"], "axis": -1}, ["x"])
    c.output("out_biggest", "biggest", x.argmax(axis=-1), dtype=np.int32)
    c.layer("soft", "KerasOperation", {"op": "Gelu", "operands": ["tensor"]}, ["x"])
    c.output("out_soft", "soft", 0.5 * x64 * (1 + np.tanh(np.sqrt(2 / np.pi) * (x64 + 0.044715 * x64 ** 3))))
    every, last = {"slice": [None, None, None]}, {"index": -1}
    c.layer("last_step", "KerasOperation", {"op": "GetItem", "operands": ["tensor"], "key": [every, last, {"slice": [1, 3, None]}]}, ["x"])
    c.output("out_last_step", "last_step", x64[:, -1, 1:3])
    c.layer("reversed", "KerasOperation", {"op": "GetItem", "operands": ["tensor"], "key": [every, None, {"slice": [None, None, -1]}, {"index": 0}]}, ["x"])
    c.output("out_reversed", "reversed", x64[:, None, ::-1, 0])
    c.layer("l2", "KerasOperation", {"op": "Norm", "operands": ["tensor"], "ord": None, "axis": -1, "keepdims": True}, ["x"])
    c.output("out_l2", "l2", np.linalg.norm(x64, axis=-1, keepdims=True))
    c.layer("l1", "KerasOperation", {"op": "Norm", "operands": ["tensor"], "ord": 1, "axis": 1, "keepdims": False}, ["x"])
    c.output("out_l1", "l1", np.linalg.norm(x64, ord=1, axis=1))
    c.layer("fro", "KerasOperation", {"op": "Norm", "operands": ["tensor"], "ord": "fro", "axis": [1, 2], "keepdims": False}, ["x"])
    c.output("out_fro", "fro", np.linalg.norm(x64, ord="fro", axis=(1, 2)))
    return c


def rms_norm(x, axes, scale=None, eps=1e-6):
    y = x / np.sqrt(np.mean(x * x, axis=tuple(axes), keepdims=True) + eps)
    return y if scale is None else y * scale


def case_einsum():
    c = Case("einsum", "EinsumDense (MatMul form, Einsum form, ellipses, bias axes, activation), RMSNormalization, keras.ops einsum and rms_normalization", 39)
    x = c.input("x", "float32", [None, 5, 8], c.normal(2, 5, 8))
    w = c.input("w", "float64", [None, 3, 4], c.normal(2, 3, 4).astype(np.float64))
    n = c.input("n", "int32", [None, 4], np.array([[1, -2, 3, 0], [4, 5, -6, 7]], dtype=np.int32))
    x64 = x.astype(np.float64)
    k1, b1 = c.normal(8, 6), c.normal(6)
    c.layer("proj", "EinsumDense", {"equation": "...c,cd->...d", "output_shape": 6, "bias_axes": "d"}, ["x"], [k1, b1])
    c.output("out_proj", "proj", np.einsum("...c,cd->...d", x64, k1) + b1)
    k2, b2 = c.normal(8, 2, 3), c.normal(2, 3)
    c.layer("heads", "EinsumDense", {"equation": "abc,cde->abde", "output_shape": [None, 2, 3], "bias_axes": "de"}, ["x"], [k2, b2])
    c.output("out_heads", "heads", np.einsum("abc,cde->abde", x64, k2) + b2)
    # Keras shapes a bias from its first biased output axis on: (d, 1) for "adc".
    k3, b3 = c.normal(5, 3), c.normal(3, 1)
    c.layer("gated", "EinsumDense", {"equation": "abc,bd->adc", "output_shape": [3, 8], "bias_axes": "d",
                                     "activation": "relu"}, ["x"], [k3, b3])
    c.output("out_gated", "gated", np.maximum(np.einsum("abc,bd->adc", x64, k3) + b3, 0.0))
    k4 = c.normal(4, 2).astype(np.float64)
    c.layer("plain64", "EinsumDense", {"equation": "abc,cd->abd", "output_shape": [3, 2]}, ["w"], [k4])
    c.output("out_plain64", "plain64", np.einsum("abc,cd->abd", w, k4), dtype=np.float64)
    s1 = c.uniform(0.5, 1.5, 8)
    c.layer("rms", "RMSNormalization", {"axis": [-1], "epsilon": 1e-6}, ["x"], [s1])
    c.output("out_rms", "rms", rms_norm(x64, [2], s1))
    s2 = c.uniform(0.5, 1.5, 5, 8)
    c.layer("rms_both", "RMSNormalization", {"axis": [1, 2], "epsilon": 1e-3}, ["x"], [s2])
    c.output("out_rms_both", "rms_both", rms_norm(x64, [1, 2], s2, 1e-3))
    c.layer("scores", "KerasOperation", {"op": "Einsum", "operands": ["tensor", "tensor"], "subscripts": "btc,bsc->bts"}, ["x", "x"])
    c.output("out_scores", "scores", np.einsum("btc,bsc->bts", x64, x64))
    t = c.normal(8, 3)
    c.layer("implicit", "KerasOperation", {"op": "Einsum", "operands": ["tensor", "array"], "subscripts": "bij,jk"}, ["x"], [t])
    c.output("out_implicit", "implicit", np.einsum("bij,jk", x64, t))
    c.layer("dots", "KerasOperation", {"op": "Einsum", "operands": ["tensor", "tensor"], "subscripts": "bi,bi->b"}, ["n", "n"])
    c.output("out_dots", "dots", np.einsum("bi,bi->b", n, n), dtype=np.int32)
    c.layer("rms_op", "KerasOperation", {"op": "RMSNorm", "operands": ["tensor"], "axis": -1, "epsilon": None}, ["x"])
    c.output("out_rms_op", "rms_op", rms_norm(x64, [2], None, 1e-7))
    c.layer("rms_scaled", "KerasOperation", {"op": "RMSNorm", "operands": ["tensor", "tensor"], "axis": 1, "epsilon": 1e-2}, ["x", "x"])
    c.output("out_rms_scaled", "rms_scaled", rms_norm(x64, [1], x64, 1e-2))
    return c


def luong_attention(q, v, k, scale=None, concat_weight=None, causal=False, additive_scale=None,
                    additive=False):
    if additive or concat_weight is not None:
        s = q[:, :, None, :] + k[:, None, :, :]
        if additive:
            t = np.tanh(s)
            scores = np.sum(t * (additive_scale if additive_scale is not None else 1.0), axis=-1)
        else:
            t = np.tanh(s * scale if scale is not None else s)
            scores = concat_weight * np.sum(t, axis=-1)
    else:
        scores = q @ k.transpose(0, 2, 1)
        if scale is not None:
            scores = scores * scale
    if causal:
        tq, tv = scores.shape[-2:]
        scores = scores - 1e9 * (1.0 - np.tril(np.ones((tq, tv))))
    return softmax(scores, axis=-1) @ v


def case_attention():
    c = Case("attention", "Attention (dot, concat, scaled, causal, separate key) and AdditiveAttention", 40)
    q = c.input("q", "float32", [None, 4, 8], c.normal(2, 4, 8))
    v = c.input("v", "float32", [None, None, 8], c.normal(2, 6, 8))
    k = c.input("k", "float32", [None, None, 8], c.normal(2, 6, 8))
    q64, v64, k64 = (t.astype(np.float64) for t in (q, v, k))
    c.layer("dot", "Attention", {}, ["q", "v"])
    c.output("out_dot", "dot", luong_attention(q64, v64, v64))
    scale = np.array(0.7, dtype=np.float32)
    c.layer("dot_scaled", "Attention", {"use_scale": True}, ["q", "v", "k"], [scale])
    c.output("out_dot_scaled", "dot_scaled", luong_attention(q64, v64, k64, scale=0.7))
    weight = np.array(1.3, dtype=np.float32)
    c.layer("concat", "Attention", {"use_scale": True, "score_mode": "concat"}, ["q", "v", "k"], [scale, weight])
    c.output("out_concat", "concat", luong_attention(q64, v64, k64, scale=0.7, concat_weight=1.3))
    c.layer("causal", "Attention", {"use_causal_mask": True}, ["q", "q"])
    c.output("out_causal", "causal", luong_attention(q64, q64, q64, causal=True))
    vec = c.normal(8)
    c.layer("additive", "AdditiveAttention", {}, ["q", "v", "k"], [vec])
    c.output("out_additive", "additive", luong_attention(q64, v64, k64, additive=True, additive_scale=vec))
    c.layer("additive_plain", "AdditiveAttention", {"use_scale": False, "use_causal_mask": True}, ["v", "v"])
    c.output("out_additive_plain", "additive_plain", luong_attention(v64, v64, v64, additive=True, causal=True))
    return c


CASES = [
    case_embedding,
    case_dense_activations,
    case_activation_layers,
    case_softmax,
    case_global_pooling,
    case_flatten_reshape,
    case_concatenate,
    case_merge,
    case_merge_int,
    case_identity_layers,
    case_batch_normalization,
    case_layer_normalization,
    case_add_constant,
    case_branching,
    case_cerebros_like,
    case_dynamic_dims,
    case_float64,
    case_opset22,
    case_activation_classes,
    case_normalization,
    case_recurrent,
    case_conv1d,
    case_misc_layers,
    case_multi_head_attention,
    case_time_distributed,
    case_masking,
    case_masked_recurrent,
    case_masking_layer,
    case_conv2d,
    case_spatial_2d,
    case_augmentation,
    case_conv_transpose,
    case_image_preprocessing,
    case_image_preprocessing_uint8,
    case_dot,
    case_group_normalization,
    case_tabular_encoding,
    case_keras_operation,
    case_einsum,
    case_attention,
]


# --- serialization ----------------------------------------------------------------------

def tensor_parts(value):
    # ascontiguousarray would make a 0-d array (a scalar weight) 1-d.
    a = np.asarray(value)
    a = np.ascontiguousarray(a) if a.ndim else a
    dtype = {"float32": "float32", "float64": "float64", "int32": "int32", "int64": "int64",
             "uint8": "uint8"}[str(a.dtype)]
    return {"dtype": dtype, "shape": list(a.shape), "data": a.astype(a.dtype.newbyteorder("<")).tobytes()}


def to_plain(obj, tensor_data):
    """Replaces NumPy arrays by tensor maps, with bytes rendered by `tensor_data`."""
    if isinstance(obj, np.ndarray):
        t = tensor_parts(obj)
        t["data"] = tensor_data(t["data"])
        return t
    if isinstance(obj, dict):
        return {k: to_plain(v, tensor_data) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v, tensor_data) for v in obj]
    return obj


def etf(obj):
    """Erlang external term format: maps with binary keys, strings as binaries, None as nil."""
    out = bytearray(b"\x83")

    def atom(name):
        out.extend(struct.pack(">BB", 119, len(name)) + name.encode())

    def enc(v):
        if v is None:
            atom("nil")
        elif v is True or v is False:
            atom("true" if v else "false")
        elif isinstance(v, int):
            if 0 <= v < 256:
                out.extend(struct.pack(">BB", 97, v))
            elif -(2**31) <= v < 2**31:
                out.extend(struct.pack(">Bi", 98, v))
            else:
                raise ValueError(f"integer {v} too large for this encoder")
        elif isinstance(v, float):
            out.extend(struct.pack(">Bd", 70, v))
        elif isinstance(v, str):
            b = v.encode()
            out.extend(struct.pack(">BI", 109, len(b)) + b)
        elif isinstance(v, (bytes, bytearray)):
            out.extend(struct.pack(">BI", 109, len(v)) + bytes(v))
        elif isinstance(v, list):
            if v:
                out.extend(struct.pack(">BI", 108, len(v)))
                for item in v:
                    enc(item)
            out.append(106)
        elif isinstance(v, dict):
            out.extend(struct.pack(">BI", 116, len(v)))
            for k, item in v.items():
                enc(k)
                enc(item)
        else:
            raise TypeError(f"cannot encode {type(v)}")

    enc(obj)
    return bytes(out)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for make in CASES:
        case = make()
        doc = case.document()
        (OUT / f"{case.name}.json").write_text(json.dumps(to_plain(doc, bytes.hex), indent=1) + "\n")
        (OUT / f"{case.name}.etf").write_bytes(etf(to_plain(doc, lambda b: b)))
        print(f"{case.name}: {len(case.layers)} layers, {len(case.outputs)} outputs")


if __name__ == "__main__":
    main()
