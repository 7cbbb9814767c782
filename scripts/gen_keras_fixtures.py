#!/usr/bin/env python3
"""Generate the Keras import fixtures in test/fixtures/keras/ with real Keras 3.

Each fixture is a small model saved by Keras itself (`.keras`, or `.h5` for the
legacy format), a batch of inputs and Keras's own predictions on them. The
Rust and Elixir tests convert every model to ONNX, run it in ONNX Runtime and
compare with these predictions, so Keras (not our code) is the reference.

Everything is listed in `manifest.tsv`, one tab-separated row per file:

    fixture  role  name  dtype  shape  file

`role` is `model`, `input`, `output` or `option` (an import option the test
must pass, `name` = option, `file` = value). Tensors are raw little-endian
bytes; `shape` is comma-separated (`-` for a scalar or a model row). Inputs
and outputs are listed in the model's order.

Run (CI never needs this; the outputs are committed):

    python3 -m venv .venv-keras
    .venv-keras/bin/pip install -r scripts/requirements-keras.txt
    KERAS_BACKEND=jax .venv-keras/bin/python scripts/gen_keras_fixtures.py

The script is seeded and writes the same predictions on every run.
"""

import os
import shutil
import sys
from pathlib import Path

if os.environ.get("KERAS_BACKEND") != "jax":
    sys.exit("run with KERAS_BACKEND=jax (the pinned backend)")

import numpy as np  # noqa: E402
import keras  # noqa: E402
from keras import layers, ops  # noqa: E402

from fixture_inputs import padded_attention_ids  # noqa: E402
from fixture_manifest import Manifest  # noqa: E402

SEED = 20240611
BATCH = 3
OUT = Path(__file__).resolve().parent.parent / "test" / "fixtures" / "keras"

# Every activation name the builder supports for Dense and Activation.
ACTIVATIONS = [
    "linear",
    "relu",
    "sigmoid",
    "tanh",
    "softmax",
    "softplus",
    "softsign",
    "elu",
    "selu",
    "gelu",
    "silu",
    "swish",
    "leaky_relu",
    "relu6",
    "hard_sigmoid",
    "exponential",
    "mish",
    "log_softmax",
]


# --- Cerebros custom layers, ported from cerebrosllmutils/llm_utils.py -------
# The public source uses TensorFlow ops; this is the same arithmetic in
# keras.ops so that it runs on the JAX backend. Registered under the same
# package and names, so the saved config carries
# `registered_name: "cerebrosllmutils>InterleavedRoPE"` like Cerebros models.


@keras.saving.register_keras_serializable(package="cerebrosllmutils", name="RotaryEmbedding")
class RotaryEmbedding(layers.Layer):
    def __init__(self, dim, max_seq_len=1024, temperature=10000.0, **kwargs):
        super().__init__(**kwargs)
        if dim % 2 != 0:
            raise ValueError(f"dim ({dim}) must be even")
        self.dim = dim
        self.max_seq_len = max_seq_len
        self.temperature = temperature

    def call(self, x):
        batch = ops.shape(x)[0]
        seq_len = ops.shape(x)[1]
        inv_freq_base = ops.arange(0, self.dim, 2, dtype="float32")
        inv_freq = 1.0 / (self.temperature ** (inv_freq_base / self.dim))
        inv_freq = ops.cast(inv_freq, x.dtype)
        position = ops.arange(seq_len, dtype=x.dtype)
        sinusoid = ops.einsum("i,j->ij", position, inv_freq)
        sin = ops.repeat(ops.sin(sinusoid), 2, axis=-1)
        cos = ops.repeat(ops.cos(sinusoid), 2, axis=-1)
        sin = ops.tile(ops.expand_dims(sin, 0), [batch, 1, 1])
        cos = ops.tile(ops.expand_dims(cos, 0), [batch, 1, 1])
        return sin, cos

    def get_config(self):
        config = super().get_config()
        config.update(
            {"dim": self.dim, "max_seq_len": self.max_seq_len, "temperature": self.temperature}
        )
        return config


def _split_alternate(x):
    _, s, d = ops.shape(x)
    x = ops.reshape(x, [-1, s, d // 2, 2])
    x = ops.transpose(x, [0, 1, 3, 2])
    return ops.reshape(x, [-1, s, d])


def _rotate_half(x):
    x = _split_alternate(x)
    d = ops.shape(x)[-1]
    return ops.concatenate([-x[..., d // 2 :], x[..., : d // 2]], axis=-1)


@keras.saving.register_keras_serializable(package="cerebrosllmutils", name="InterleavedRoPE")
class InterleavedRoPE(layers.Layer):
    def __init__(self, dim, max_seq_len=1024, **kwargs):
        super().__init__(**kwargs)
        if dim % 2 != 0:
            raise ValueError(f"dim ({dim}) must be even")
        self.dim = dim
        self.max_seq_len = max_seq_len
        self.rotary_emb = RotaryEmbedding(dim, max_seq_len, name="rotary_embedding")

    def call(self, x):
        sin, cos = self.rotary_emb(x)
        return x * cos + _rotate_half(x) * sin

    def get_config(self):
        config = super().get_config()
        config.update({"dim": self.dim, "max_seq_len": self.max_seq_len})
        return config


# --- helpers ------------------------------------------------------------------


def randomize_weights(model, rng):
    """Replace every variable with seeded random values.

    Fresh Keras layers have zero biases and unit batch-norm statistics, which
    would let a converter that ignores them pass. Variances stay positive.
    """
    for var in model.weights:
        path = var.path
        shape = tuple(var.shape)
        if path.rsplit("/", 1)[-1] in ("mean", "variance", "count"):
            # Normalization statistics, from adapt(): a random variance could be negative.
            continue
        if path.endswith("moving_variance"):
            value = rng.uniform(0.5, 1.5, shape)
        elif path.endswith("gamma"):
            value = rng.uniform(0.5, 1.5, shape)
        else:
            value = rng.normal(0.0, 0.5, shape)
        var.assign(value.astype(var.dtype))


def as_list(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


def save_fixture(manifest, name, model, inputs, rng, legacy=False, options=None):
    randomize_weights(model, rng)
    fname = f"{name}.h5" if legacy else f"{name}.keras"
    model.save(OUT / fname)
    # Predict from the reloaded file, so the reference is what the file holds.
    reloaded = keras.saving.load_model(OUT / fname, compile=False)
    outputs = as_list(reloaded(inputs if len(inputs) > 1 else inputs[0], training=False))
    manifest.model(name, fname)
    for (key, value) in (options or {}).items():
        manifest.option(name, key, value)
    input_names = [t.name for t in as_list(model.inputs)]
    for input_name, array in zip(input_names, inputs):
        cast = options and options.get("input_dtype") == "s64"
        manifest.tensor(name, "input", input_name, array.astype("int64") if cast else array)
    output_names = [ref[0] for ref in output_refs(model)]
    for output_name, array in zip(output_names, outputs):
        array = np.asarray(array)
        # uint8 images and int32 buckets keep their type, bools are compared as uint8 (the
        # type Thunderbolt gives them); the rest is compared as float32.
        if array.dtype == np.bool_:
            array = array.astype("uint8")
        keep = array.dtype in (np.uint8, np.int32)
        manifest.tensor(name, "output", output_name, array if keep else array.astype("float32"))


def output_refs(model):
    config = model.get_config()
    if "output_layers" in config:
        refs = config["output_layers"]
        if refs and isinstance(refs[0], str):
            refs = [refs]
        return refs
    return [[model.layers[-1].name, 0, 0]]


def floats(rng, *shape, low=-2.0, high=2.0):
    return rng.uniform(low, high, (BATCH, *shape)).astype("float32")


def ids(rng, vocab, length):
    return rng.integers(0, vocab, (BATCH, length)).astype("int32")


# --- the fixtures ---------------------------------------------------------------


def dense_activations(rng):
    """Dense with every supported activation, one output per activation."""
    x = keras.Input((5,), name="x")
    outs = [layers.Dense(3, activation=a, name=f"dense_{a}")(x) for a in ACTIVATIONS]
    no_bias = layers.Dense(4, use_bias=False, name="dense_no_bias")(x)
    return keras.Model(x, outs + [no_bias], name="dense_activations"), [floats(rng, 5)]


def activation_layers(rng):
    """Standalone Activation layers for every activation, and Softmax."""
    x = keras.Input((6,), name="x")
    outs = [layers.Activation(a, name=f"act_{a}")(x) for a in ACTIVATIONS]
    outs.append(layers.Softmax(name="softmax_layer")(x))
    seq = keras.Input((3, 4), name="seq")
    outs.append(layers.Softmax(axis=1, name="softmax_axis1")(seq))
    return keras.Model([x, seq], outs, name="activation_layers"), [floats(rng, 6), floats(rng, 3, 4)]


def merge_layers(rng):
    """Two inputs, every merge layer, Concatenate on two axes: multi-in/multi-out."""
    a = keras.Input((4, 3), name="a")
    b = keras.Input((4, 3), name="b")
    outs = [
        layers.Add(name="add")([a, b]),
        layers.Subtract(name="subtract")([a, b]),
        layers.Multiply(name="multiply")([a, b]),
        layers.Average(name="average")([a, b]),
        layers.Maximum(name="maximum")([a, b]),
        layers.Minimum(name="minimum")([a, b]),
        layers.Add(name="add3")([a, b, a]),
        layers.Concatenate(name="concat_last")([a, b]),
        layers.Concatenate(axis=1, name="concat_axis1")([a, b, a]),
    ]
    return keras.Model([a, b], outs, name="merge_layers"), [floats(rng, 4, 3), floats(rng, 4, 3)]


def shape_layers(rng):
    """Pooling (with keepdims), Flatten and Reshape."""
    x = keras.Input((4, 6), name="x")
    outs = [
        layers.GlobalAveragePooling1D(name="gap")(x),
        layers.GlobalAveragePooling1D(keepdims=True, name="gap_keepdims")(x),
        layers.GlobalMaxPooling1D(name="gmp")(x),
        layers.GlobalMaxPooling1D(keepdims=True, name="gmp_keepdims")(x),
        layers.Flatten(name="flatten")(x),
        layers.Reshape((3, 8), name="reshape")(x),
        layers.Reshape((-1, 2), name="reshape_infer")(x),
    ]
    return keras.Model(x, outs, name="shape_layers"), [floats(rng, 4, 6)]


def normalization_layers(rng):
    """BatchNormalization (axes, center/scale off) and LayerNormalization."""
    x = keras.Input((4, 6), name="x")
    outs = [
        layers.BatchNormalization(name="bn_last")(x),
        layers.BatchNormalization(axis=1, epsilon=0.01, name="bn_axis1")(x),
        layers.BatchNormalization(center=False, name="bn_no_center")(x),
        layers.BatchNormalization(scale=False, name="bn_no_scale")(x),
        layers.LayerNormalization(name="ln")(x),
        layers.LayerNormalization(epsilon=0.1, center=False, name="ln_no_center")(x),
        layers.LayerNormalization(scale=False, name="ln_no_scale")(x),
    ]
    return keras.Model(x, outs, name="normalization_layers"), [floats(rng, 4, 6)]


def noise_layers(rng):
    """Dropout, GaussianNoise and GaussianDropout are identities at inference."""
    x = keras.Input((5,), name="x")
    h = layers.Dropout(0.5, name="dropout")(x)
    h = layers.GaussianNoise(0.3, name="gaussian_noise")(h)
    h = layers.GaussianDropout(0.4, name="gaussian_dropout")(h)
    out = layers.Dense(3, name="out")(h)
    return keras.Model(x, out, name="noise_layers"), [floats(rng, 5)]


def nas_lattice(rng):
    """A Cerebros-style lattice: each unit is Concatenate -> BatchNorm -> Dense,
    fed by the outputs of every earlier level (the input counts as level 0)."""
    x = keras.Input((6,), name="x")
    levels = [[x]]
    unit_counts = [3, 2, 2]
    activations = ["relu", "elu", "gelu", "swish", "tanh", "softsign", "selu"]
    k = 0
    for level, count in enumerate(unit_counts, start=1):
        earlier = [t for lvl in levels for t in lvl]
        units = []
        for u in range(count):
            h = layers.Concatenate(name=f"l{level}_u{u}_concat")(earlier) if len(earlier) > 1 else earlier[0]
            h = layers.BatchNormalization(name=f"l{level}_u{u}_bn")(h)
            h = layers.Dense(4 + u, activation=activations[k % len(activations)], name=f"l{level}_u{u}_dense")(h)
            h = layers.Dropout(0.2, name=f"l{level}_u{u}_dropout")(h)
            units.append(h)
            k += 1
        levels.append(units)
    final = layers.Concatenate(name="final_concat")([t for lvl in levels[1:] for t in lvl])
    final = layers.BatchNormalization(name="final_bn")(final)
    out = layers.Dense(2, activation="softmax", name="output")(final)
    return keras.Model(x, out, name="nas_lattice"), [floats(rng, 6)]


TEXT_VOCAB, TEXT_LEN, TEXT_DIM = 40, 6, 8


def text_classifier(rng, positional=False):
    """The application's text model: Embedding -> GAP1D -> Dense(relu) x2 -> Dense,
    optionally with an eagerly computed positional encoding added as a constant."""
    ids_in = keras.Input((TEXT_LEN,), dtype="int32", name="input_ids")
    h = layers.Embedding(TEXT_VOCAB, TEXT_DIM, name="embedding")(ids_in)
    if positional:
        pos = np.arange(TEXT_LEN)[:, None] / np.power(10000.0, (2 * (np.arange(TEXT_DIM) // 2)) / TEXT_DIM)
        pos[:, 0::2] = np.sin(pos[:, 0::2])
        pos[:, 1::2] = np.cos(pos[:, 1::2])
        h = h + pos.astype("float32")
    h = layers.GlobalAveragePooling1D(name="pooling")(h)
    h = layers.Dense(16, activation="relu", name="dense1")(h)
    h = layers.Dense(16, activation="relu", name="dense2")(h)
    out = layers.Dense(TEXT_VOCAB, name="logits")(h)
    name = "text_classifier_posenc" if positional else "text_classifier"
    return keras.Model(ids_in, out, name=name), [ids(rng, TEXT_VOCAB, TEXT_LEN)]


def nested_models(rng):
    """A functional model and a Sequential model used as layers of an outer one."""
    inner_in = keras.Input((5,), dtype="int32", name="inner_ids")
    e = layers.Embedding(20, 6, name="inner_embedding")(inner_in)
    e = layers.GlobalAveragePooling1D(name="inner_pool")(e)
    e = layers.BatchNormalization(name="inner_bn")(e)
    encoder = keras.Model(inner_in, e, name="encoder")
    head = keras.Sequential(
        [keras.Input((6,)), layers.Dense(5, activation="tanh"), layers.Dense(3)], name="head"
    )
    ids_in = keras.Input((5,), dtype="int32", name="ids")
    h = encoder(ids_in)
    h = layers.Dense(6, activation="relu", name="middle")(h)
    out = head(h)
    return keras.Model(ids_in, out, name="nested_models"), [ids(rng, 20, 5)]


def multi_io(rng):
    """Token ids and dense features in, a class distribution and a score out."""
    tok = keras.Input((4,), dtype="int32", name="tokens")
    feat = keras.Input((3,), name="features")
    t = layers.Embedding(15, 4, name="embedding")(tok)
    t = layers.Flatten(name="flatten")(t)
    h = layers.Concatenate(name="concat")([t, feat])
    h = layers.Dense(8, activation="relu", name="trunk")(h)
    cls = layers.Dense(3, activation="softmax", name="class_probs")(h)
    score = layers.Dense(1, activation="sigmoid", name="score")(h)
    return keras.Model([tok, feat], [cls, score], name="multi_io"), [ids(rng, 15, 4), floats(rng, 3)]


def shared_layers(rng):
    """One Dense layer applied to two inputs (two nodes of one layer, one set of weights)."""
    a = keras.Input((4,), name="a")
    b = keras.Input((4,), name="b")
    shared = layers.Dense(3, activation="tanh", name="shared")
    out = layers.Subtract(name="diff")([shared(a), shared(b)])
    out = layers.Dense(2, name="out")(out)
    return keras.Model([a, b], out, name="shared_layers"), [floats(rng, 4), floats(rng, 4)]


def sequential(rng):
    model = keras.Sequential(
        [
            keras.Input((5,), name="x"),
            layers.Dense(8, activation="relu"),
            layers.BatchNormalization(),
            layers.Dropout(0.3),
            layers.Dense(8, activation="relu"),
            layers.Dense(3, activation="softmax"),
        ],
        name="sequential_model",
    )
    return model, [floats(rng, 5)]


def legacy_h5(rng):
    """Saved in the legacy whole-model HDF5 format (model_config + layer_names)."""
    x = keras.Input((6,), name="x")
    h = layers.Dense(5, activation="relu", name="hidden")(x)
    h = layers.BatchNormalization(name="bn")(h)
    inner_in = keras.Input((5,), name="inner_x")
    inner = keras.Model(inner_in, layers.Dense(4, activation="tanh", name="inner_dense")(inner_in), name="inner")
    h = inner(h)
    out = layers.Dense(2, name="out")(h)
    return keras.Model(x, out, name="legacy_h5"), [floats(rng, 6)]


def legacy_h5_sequential(rng):
    model = keras.Sequential(
        [keras.Input((4,), name="x"), layers.Dense(6, activation="sigmoid"), layers.Dense(2)],
        name="legacy_seq",
    )
    return model, [floats(rng, 4)]


def interleaved_rope(rng):
    """A Cerebros LLM-style stem: Embedding -> InterleavedRoPE -> pooling -> Dense."""
    ids_in = keras.Input((7,), dtype="int32", name="input_ids")
    h = layers.Embedding(30, 8, name="embedding")(ids_in)
    h = InterleavedRoPE(8, max_seq_len=7, name="rope")(h)
    seq_out = layers.Dense(3, name="per_token")(h)
    h = layers.GlobalAveragePooling1D(name="pool")(h)
    out = layers.Dense(5, name="logits")(h)
    return keras.Model(ids_in, [out, seq_out], name="interleaved_rope"), [ids(rng, 30, 7)]


def activation_classes(rng):
    """ReLU with each of its parameters, LeakyReLU, ELU and PReLU (shared axes too)."""
    x = keras.Input((6,), name="x")
    seq = keras.Input((3, 4), name="seq")
    outs = [
        layers.ReLU(name="relu")(x),
        layers.ReLU(max_value=6.0, name="relu_max6")(x),
        layers.ReLU(max_value=1.5, name="relu_max")(x),
        layers.ReLU(negative_slope=0.1, name="relu_slope")(x),
        layers.ReLU(threshold=0.5, name="relu_threshold")(x),
        layers.ReLU(max_value=1.0, negative_slope=0.2, threshold=0.5, name="relu_all")(x),
        layers.ReLU(max_value=6.0, threshold=0.25, name="relu_max6_threshold")(x),
        layers.LeakyReLU(name="leaky_default")(x),
        layers.LeakyReLU(negative_slope=0.05, name="leaky")(x),
        layers.ELU(name="elu_default")(x),
        layers.ELU(alpha=0.5, name="elu")(x),
        layers.PReLU(name="prelu")(x),
        layers.PReLU(name="prelu_seq")(seq),
        layers.PReLU(shared_axes=[1], name="prelu_shared")(seq),
    ]
    return keras.Model([x, seq], outs, name="activation_classes"), [floats(rng, 6), floats(rng, 3, 4)]


def preprocessing_layers(rng):
    """Normalization: adapted on several axes, given its statistics, inverted, on integers."""
    x = keras.Input((5,), name="x")
    seq = keras.Input((3, 4), name="seq")
    counts = keras.Input((4,), dtype="int32", name="counts")

    def adapted(data, **kwargs):
        layer = layers.Normalization(**kwargs)
        layer.adapt(data)
        return layer

    tabular = rng.normal(1.0, 2.0, (64, 5)).astype("float32")
    steps = rng.normal(-0.5, 3.0, (64, 3, 4)).astype("float32")
    outs = [
        adapted(tabular, name="norm")(x),
        adapted(tabular, axis=None, name="norm_global")(x),
        adapted(tabular, invert=True, name="norm_invert")(x),
        adapted(steps, axis=(1, 2), name="norm_steps")(seq),
        adapted(steps, axis=1, name="norm_axis1")(seq),
        layers.Normalization(mean=[0.5, -1.0, 2.0, 0.0, 1.0], variance=[1.0, 4.0, 0.25, 2.0, 9.0], name="norm_given")(x),
        layers.Normalization(mean=3.0, variance=4.0, name="norm_counts")(counts),
    ]
    model = keras.Model([x, seq, counts], outs, name="preprocessing_layers")
    return model, [floats(rng, 5), floats(rng, 3, 4), ids(rng, 9, 4)]


def recurrent_layers(rng):
    """LSTM, GRU and SimpleRNN (last state, sequences, backwards, options) and Bidirectional."""
    x = keras.Input((5, 3), name="x")
    steps = keras.Input((None, 3), name="steps")
    outs = [
        layers.LSTM(4, name="lstm")(x),
        layers.LSTM(4, return_sequences=True, name="lstm_seq")(x),
        layers.LSTM(3, go_backwards=True, name="lstm_back")(x),
        layers.LSTM(3, return_sequences=True, go_backwards=True, name="lstm_back_seq")(x),
        layers.LSTM(2, activation="relu", recurrent_activation="hard_sigmoid", use_bias=False, name="lstm_options")(x),
        layers.LSTM(3, return_sequences=True, name="lstm_dynamic")(steps),
        layers.GRU(4, name="gru")(x),
        layers.GRU(4, return_sequences=True, reset_after=False, name="gru_seq_v1")(x),
        layers.GRU(3, go_backwards=True, recurrent_activation="hard_sigmoid", name="gru_back")(x),
        layers.SimpleRNN(4, name="rnn")(x),
        layers.SimpleRNN(4, return_sequences=True, activation="relu", name="rnn_seq")(x),
        layers.Bidirectional(layers.LSTM(3), name="bi_lstm")(x),
        layers.Bidirectional(layers.GRU(2, return_sequences=True), merge_mode="sum", name="bi_gru_sum")(x),
        layers.Bidirectional(layers.LSTM(2, return_sequences=True), merge_mode="ave", name="bi_ave")(x),
        layers.Bidirectional(layers.SimpleRNN(2), merge_mode="mul", name="bi_rnn_mul")(x),
    ]
    model = keras.Model([x, steps], outs, name="recurrent_layers")
    return model, [floats(rng, 5, 3), floats(rng, 6, 3)]


def text_rnn(rng):
    """A text classifier over token ids: Embedding, a Bidirectional LSTM, a GRU, Dense softmax."""
    ids_in = keras.Input((7,), dtype="int32", name="input_ids")
    h = layers.Embedding(50, 8, name="embedding")(ids_in)
    h = layers.Bidirectional(layers.LSTM(6, return_sequences=True), name="bi_lstm")(h)
    h = layers.GRU(5, name="gru")(h)
    out = layers.Dense(3, activation="softmax", name="probs")(h)
    return keras.Model(ids_in, out, name="text_rnn"), [ids(rng, 50, 7)]


def legacy_h5_rnn(rng):
    """Recurrent layers in a legacy .h5, whose weight names run through their cells."""
    x = keras.Input((5, 3), name="x")
    inner_in = keras.Input((5, 3), name="inner_x")
    inner_out = layers.LSTM(3, name="inner_lstm")(inner_in)
    inner = keras.Model(inner_in, inner_out, name="inner")
    outs = [
        layers.LSTM(4, name="lstm")(x),
        layers.Bidirectional(layers.GRU(2, return_sequences=True), name="bi_gru")(x),
        inner(x),
    ]
    return keras.Model(x, outs, name="legacy_h5_rnn"), [floats(rng, 5, 3)]


def nested_outputs(rng):
    """A nested model called twice, its second call a model output: Keras counts a built-in
    node first in output references to a nested functional model."""
    a = keras.Input((4,), name="a")
    b = keras.Input((4,), name="b")
    inner_in = keras.Input((4,), name="inner_x")
    inner = keras.Model(inner_in, layers.Dense(3, activation="tanh", name="inner_dense")(inner_in), name="inner")
    seq = keras.Sequential([keras.Input((4,)), layers.Dense(2, name="seq_dense")], name="seq")
    outs = [layers.Dense(2, name="after")(inner(a)), inner(b), seq(a)]
    return keras.Model([a, b], outs, name="nested_outputs"), [floats(rng, 4), floats(rng, 4)]


def conv_layers(rng):
    """Conv1D (padding, strides, dilation, groups, channels_first) and 1-D pooling."""
    x = keras.Input((9, 4), name="x")
    cf = keras.Input((4, 9), name="cf")
    outs = [
        layers.Conv1D(3, 3, name="conv")(x),
        layers.Conv1D(3, 3, padding="same", strides=2, activation="relu", name="conv_same_stride")(x),
        layers.Conv1D(2, 2, padding="causal", dilation_rate=2, use_bias=False, name="conv_causal")(x),
        layers.Conv1D(4, 3, groups=2, padding="same", name="conv_groups")(x),
        layers.Conv1D(2, 3, data_format="channels_first", activation="tanh", name="conv_cf")(cf),
        layers.MaxPooling1D(name="max")(x),
        layers.MaxPooling1D(3, strides=2, padding="same", name="max_same")(x),
        layers.AveragePooling1D(2, strides=1, name="avg")(x),
        layers.AveragePooling1D(4, strides=3, padding="same", name="avg_same")(x),
        layers.MaxPooling1D(2, data_format="channels_first", name="max_cf")(cf),
    ]
    return keras.Model([x, cf], outs, name="conv_layers"), [floats(rng, 9, 4), floats(rng, 4, 9)]


def text_cnn(rng):
    """A text CNN over token ids: Embedding, Conv1D, MaxPooling1D, Conv1D, global max, Dense."""
    ids_in = keras.Input((12,), dtype="int32", name="input_ids")
    h = layers.Embedding(60, 8, name="embedding")(ids_in)
    h = layers.Conv1D(6, 3, activation="relu", padding="same", name="conv_a")(h)
    h = layers.MaxPooling1D(2, name="pool")(h)
    h = layers.Conv1D(5, 3, activation="relu", name="conv_b")(h)
    h = layers.GlobalMaxPooling1D(name="global_max")(h)
    out = layers.Dense(3, activation="softmax", name="probs")(h)
    return keras.Model(ids_in, out, name="text_cnn"), [ids(rng, 60, 12)]


def misc_layers(rng):
    """Inference-time identities, Permute, RepeatVector and Rescaling (on integers too)."""
    x = keras.Input((4, 3), name="x")
    v = keras.Input((5,), name="v")
    pixels = keras.Input((2, 3), dtype="int32", name="pixels")
    h = layers.SpatialDropout1D(0.3, name="spatial_dropout")(x)
    h = layers.AlphaDropout(0.2, name="alpha_dropout")(h)
    h = layers.ActivityRegularization(l1=0.01, name="activity_reg")(h)
    h = layers.Identity(name="identity")(h)
    outs = [
        layers.Permute((2, 1), name="permute")(h),
        layers.RepeatVector(3, name="repeat")(v),
        layers.Rescaling(1.0 / 255, name="rescale")(pixels),
        layers.Rescaling([0.5, 2.0, -1.0], offset=0.25, name="rescale_channels")(x),
    ]
    return keras.Model([x, v, pixels], outs, name="misc_layers"), [floats(rng, 4, 3), floats(rng, 5), ids(rng, 256, 6).reshape(BATCH, 2, 3)]


def attention_layers(rng):
    """MultiHeadAttention: self, causal, cross with a separate key, no bias. (Keras 3.12 on
    JAX fails when value_dim differs from key_dim; the NumPy fixture covers that.)"""
    x = keras.Input((5, 8), name="x")
    ctx = keras.Input((7, 6), name="ctx")
    key = keras.Input((7, 4), name="key")
    outs = [
        layers.MultiHeadAttention(2, 3, name="self_attention")(x, x),
        layers.MultiHeadAttention(2, 4, name="causal")(x, x, use_causal_mask=True),
        layers.MultiHeadAttention(3, 2, name="cross")(x, ctx, key),
        layers.MultiHeadAttention(1, 4, use_bias=False, name="no_bias")(x, ctx),
        layers.MultiHeadAttention(2, 3, name="cross_causal")(x, ctx, use_causal_mask=True),
    ]
    model = keras.Model([x, ctx, key], outs, name="attention_layers")
    return model, [floats(rng, 5, 8), floats(rng, 7, 6), floats(rng, 7, 4)]


def text_transformer(rng):
    """A small Transformer encoder over token ids: attention, residuals, LayerNormalization."""
    ids_in = keras.Input((10,), dtype="int32", name="input_ids")
    h = layers.Embedding(40, 8, name="embedding")(ids_in)
    a = layers.MultiHeadAttention(2, 4, name="attention")(h, h)
    h = layers.LayerNormalization(epsilon=1e-6, name="norm_1")(layers.Add(name="residual_1")([h, a]))
    f = layers.Dense(16, activation="relu", name="ffn_1")(h)
    f = layers.Dense(8, name="ffn_2")(f)
    h = layers.LayerNormalization(epsilon=1e-6, name="norm_2")(layers.Add(name="residual_2")([h, f]))
    h = layers.GlobalAveragePooling1D(name="pool")(h)
    out = layers.Dense(3, activation="softmax", name="probs")(h)
    return keras.Model(ids_in, out, name="text_transformer"), [ids(rng, 40, 10)]


def sequence_tagger(rng):
    """A token tagger: Embedding, a Bidirectional LSTM, TimeDistributed Dense softmax per step."""
    ids_in = keras.Input((9,), dtype="int32", name="input_ids")
    h = layers.Embedding(30, 6, name="embedding")(ids_in)
    h = layers.Bidirectional(layers.LSTM(4, return_sequences=True), name="bi_lstm")(h)
    h = layers.TimeDistributed(layers.Dropout(0.3), name="td_dropout")(h)
    h = layers.TimeDistributed(layers.Dense(6, name="hidden"), name="td_hidden")(h)
    h = layers.TimeDistributed(layers.Activation("tanh"), name="td_tanh")(h)
    out = layers.TimeDistributed(layers.Dense(5, activation="softmax"), name="tags")(h)
    return keras.Model(ids_in, out, name="sequence_tagger"), [ids(rng, 30, 9)]


def masked_text(rng):
    """Embedding(mask_zero=True) over padded ids: the mask passes Dropout, Dense,
    LayerNormalization, TimeDistributed and Add, makes GlobalAveragePooling1D average the
    unpadded steps only, and ends at GlobalMaxPooling1D."""
    ids_in = keras.Input((8,), dtype="int32", name="input_ids")
    e = layers.Embedding(30, 6, mask_zero=True, name="embedding")(ids_in)
    h = layers.Dropout(0.2, name="dropout")(e)
    h = layers.Dense(6, activation="relu", name="dense")(h)
    h = layers.LayerNormalization(name="norm")(h)
    h = layers.Add(name="residual")([e, h])
    h = layers.TimeDistributed(layers.Dense(4), name="td_dense")(h)
    avg = layers.GlobalAveragePooling1D(name="average")(h)
    top = layers.GlobalMaxPooling1D(name="max")(h)
    probs = layers.Dense(3, activation="softmax", name="probs")(layers.Concatenate(name="concat")([avg, top]))
    padded = rng.integers(1, 30, (BATCH, 8))
    lengths = rng.integers(1, 8, BATCH)
    for row, n in enumerate(lengths):
        # Alternately padded after and before the tokens, as pad_sequences does either way.
        if row % 2:
            padded[row, n:] = 0
        else:
            padded[row, : 8 - n] = 0
    padded[0, 3] = 0  # and a padding id between tokens
    return keras.Model(ids_in, [probs, avg, top], name="masked_text"), [padded.astype("int32")]


def masked_rnn(rng):
    """Embedding(mask_zero=True) into an LSTM, a backwards GRU and a Bidirectional LSTM, each
    returning its last state: Keras skips the padded steps (a row of padding alone keeps the
    initial zeros)."""
    ids_in = keras.Input((7,), dtype="int32", name="input_ids")
    e = layers.Embedding(20, 4, mask_zero=True, name="embedding")(ids_in)
    lstm = layers.LSTM(3, name="lstm")(e)
    gru = layers.GRU(2, go_backwards=True, name="gru_back")(e)
    bi = layers.Bidirectional(layers.LSTM(2), name="bi_lstm")(e)
    probs = layers.Dense(3, activation="softmax", name="probs")(layers.Concatenate(name="concat")([lstm, gru, bi]))
    padded = rng.integers(1, 20, (BATCH, 7))
    padded[0, 5:] = 0
    padded[1, :3] = 0
    padded[1, 4] = 0
    padded[2, :] = 0
    return keras.Model(ids_in, [probs, lstm, gru, bi], name="masked_rnn"), [padded.astype("int32")]


def masked_positional(rng):
    """Embedding(mask_zero=True) plus positional terms added with keras.ops: Keras' operations
    drop the mask, so the pooling after them averages every step, padding included."""
    ids_in = keras.Input((5,), dtype="int32", name="input_ids")
    e = layers.Embedding(12, 4, mask_zero=True, name="embedding")(ids_in)
    shifted = e + rng.normal(size=(5, 4)).astype("float32")
    both = e + layers.Embedding(12, 4, name="other")(ids_in)
    outs = [layers.GlobalAveragePooling1D(name="avg_shifted")(shifted),
            layers.GlobalAveragePooling1D(name="avg_both")(both)]
    padded = rng.integers(1, 12, (BATCH, 5))
    padded[0, 3:] = 0
    padded[1, :2] = 0
    return keras.Model(ids_in, outs, name="masked_positional"), [padded.astype("int32")]


def masked_tagger(rng):
    """A token tagger over padded ids: Embedding(mask_zero=True), a Bidirectional LSTM returning
    sequences (zeros at the padding), a TimeDistributed softmax; and an LSTM and a backwards
    GRU returning sequences, which repeat the last output at the padding."""
    ids_in = keras.Input((6,), dtype="int32", name="input_ids")
    e = layers.Embedding(15, 4, mask_zero=True, name="embedding")(ids_in)
    h = layers.Bidirectional(layers.LSTM(3, return_sequences=True), name="bi_lstm")(e)
    tags = layers.TimeDistributed(layers.Dense(4, activation="softmax"), name="tags")(h)
    lstm = layers.LSTM(2, return_sequences=True, name="lstm")(e)
    gru = layers.GRU(2, return_sequences=True, go_backwards=True, name="gru_back")(e)
    padded = rng.integers(1, 15, (BATCH, 6))
    padded[0, 4:] = 0
    padded[1, :2] = 0
    padded[1, 3] = 0
    padded[2, :] = 0
    return keras.Model(ids_in, [tags, lstm, gru], name="masked_tagger"), [padded.astype("int32")]


def masked_sequence(rng):
    """Masking(mask_value=-1) over float sequences: steps of nothing but -1 are skipped by an
    LSTM (its last state and its sequence) and left out of the average."""
    x_in = keras.Input((6, 3), name="x")
    h = layers.Masking(mask_value=-1.0, name="masking")(x_in)
    last = layers.LSTM(3, name="lstm")(h)
    seq = layers.LSTM(2, return_sequences=True, name="lstm_seq")(h)
    avg = layers.GlobalAveragePooling1D(name="average")(seq)
    x = rng.uniform(-0.9, 0.9, (BATCH, 6, 3))
    x[0, 4:] = -1.0
    x[1, :2] = -1.0
    x[1, 3, 0] = -1.0
    return keras.Model(x_in, [h, last, seq, avg], name="masked_sequence"), [x.astype("float32")]


def masked_concat(rng):
    """Concatenate over masked sequences, as a Cerebros lattice joins its branches: along the
    features the masks are ORed (all steps count once an input has none), along the steps
    they are joined (all steps for an unmasked input); the results feed masked averages, an
    LSTM, a merge and a second Concatenate."""
    ids_in = keras.Input((8,), dtype="int32", name="input_ids")
    x_in = keras.Input((8, 2), name="x")
    tail_in = keras.Input((4,), dtype="int32", name="tail_ids")
    e = layers.Embedding(30, 6, mask_zero=True, name="embedding")(ids_in)
    tail = layers.Embedding(30, 6, mask_zero=True, name="tail_embedding")(tail_in)
    a = layers.Dense(4, activation="relu", name="branch_a")(e)
    b = layers.Dense(3, name="branch_b")(e)
    features = layers.Concatenate(name="features")([a, b])
    mixed = layers.Concatenate(name="mixed")([features, x_in])
    deeper = layers.Concatenate(name="deeper")([features, layers.Dense(2, name="branch_c")(features)])
    merged = layers.Add(name="merged")([layers.Dense(7, name="branch_d")(e), features])
    steps = layers.Concatenate(axis=1, name="steps")([e, tail])
    prefixed = layers.Concatenate(axis=-2, name="prefixed")([layers.Dense(6, name="x_proj")(x_in), e])
    pools = [
        layers.GlobalAveragePooling1D(name="avg_features")(features),
        layers.GlobalAveragePooling1D(name="avg_mixed")(mixed),
        layers.GlobalAveragePooling1D(name="avg_deeper")(deeper),
        layers.GlobalAveragePooling1D(name="avg_merged")(merged),
        layers.GlobalAveragePooling1D(name="avg_steps")(steps),
        layers.GlobalAveragePooling1D(name="avg_prefixed")(prefixed),
        layers.LSTM(3, name="lstm_steps")(steps),
    ]
    probs = layers.Dense(3, activation="softmax", name="probs")(layers.Concatenate(name="pooled")(pools))
    ids = rng.integers(1, 30, (BATCH, 8))
    ids[0, 5:] = 0
    ids[1, :3] = 0
    ids[2, 2] = 0
    tails = rng.integers(1, 30, (BATCH, 4))
    tails[0, :] = 0
    tails[1, 1:3] = 0
    x = rng.normal(size=(BATCH, 8, 2))
    inputs = [ids.astype("int32"), x.astype("float32"), tails.astype("int32")]
    return keras.Model([ids_in, x_in, tail_in], [probs, *pools], name="masked_concat"), inputs


def masked_merges(rng):
    """Maximum, Minimum and Multiply over masked sequences, which Keras 3 computes with the
    masks: two token inputs padded at different steps (a step padded on one side takes the
    other side's value; Multiply counts it as 1 and zeroes the steps both pad), and a masked
    branch merged with an unmasked float input (no mask follows)."""
    ids_in = keras.Input((6,), dtype="int32", name="input_ids")
    other_in = keras.Input((6,), dtype="int32", name="other_ids")
    x_in = keras.Input((6, 4), name="x")
    e = layers.Embedding(20, 4, mask_zero=True, name="embedding")(ids_in)
    f = layers.Embedding(20, 4, mask_zero=True, name="other_embedding")(other_in)
    a = layers.Dense(4, name="branch_a")(e)
    c = layers.Dense(4, activation="tanh", name="branch_c")(e)
    both_max = layers.Maximum(name="both_max")([a, f])
    three_min = layers.Minimum(name="three_min")([a, f, c])
    both_product = layers.Multiply(name="both_product")([e, f])
    mixed_max = layers.Maximum(name="mixed_max")([a, x_in])
    mixed_product = layers.Multiply(name="mixed_product")([x_in, c])
    outs = [
        layers.GlobalAveragePooling1D(name="avg_max")(both_max),
        layers.GlobalAveragePooling1D(name="avg_min")(three_min),
        layers.GlobalAveragePooling1D(name="avg_product")(both_product),
        layers.GlobalAveragePooling1D(name="avg_mixed_max")(mixed_max),
        both_product,
        mixed_max,
        mixed_product,
    ]
    ids = rng.integers(1, 20, (BATCH, 6))
    other = rng.integers(1, 20, (BATCH, 6))
    ids[0, 4:] = 0
    other[0, :2] = 0
    ids[1, 1] = 0
    other[1, 1] = 0
    other[1, 3:] = 0
    ids[2, :3] = 0
    x = rng.normal(size=(BATCH, 6, 4))
    inputs = [ids.astype("int32"), other.astype("int32"), x.astype("float32")]
    return keras.Model([ids_in, other_in, x_in], outs, name="masked_merges"), inputs


def shared_output(rng):
    """A layer called twice whose second call is a model output, named after the layer: the
    output keeps the name, and the first call's value takes another."""
    x_in = keras.Input((5,), name="features")
    norm = layers.Dense(5, name="norm")
    hidden = layers.Dense(4, activation="relu", name="hidden")(norm(x_in))
    out = layers.Dense(2, name="out")(hidden)
    return keras.Model(x_in, [out, norm(x_in)], name="shared_output"), [floats(rng, 5)]


def masked_attention(rng):
    """MultiHeadAttention over padded ids, as Keras 3 runs it: each layer reads the masks its
    query, value and key carry, then clears them. A two-block encoder's first block attends
    to the tokens only, its second (after the residual Add, whose mask is then gone) to
    every step, padding included; the masked average still uses the recorded mask. Also:
    dropout (a padded query step gets zeros instead of an average of every step), a causal
    mask with padding, an unmasked query over a masked value and key, and a value of nothing
    but padding."""
    ids_in = keras.Input((8,), dtype="int32", name="input_ids")
    ctx_in = keras.Input((5,), dtype="int32", name="context_ids")
    x_in = keras.Input((8, 4), name="x")

    def embedding(name, dim=6):
        return layers.Embedding(30, dim, mask_zero=True, name=name)

    e = embedding("embedding")(ids_in)
    h = e
    for block in (1, 2):
        a = layers.MultiHeadAttention(2, 3, name=f"attention_{block}")(h, h)
        h = layers.LayerNormalization(name=f"norm_{block}")(layers.Add(name=f"residual_{block}")([h, a]))
    probs = layers.Dense(3, activation="softmax", name="probs")(layers.GlobalAveragePooling1D(name="pool")(h))
    d = embedding("dropout_embedding")(ids_in)
    dropout = layers.MultiHeadAttention(2, 3, dropout=0.2, name="dropout_attention")(d, d)
    c = embedding("causal_embedding")(ids_in)
    causal = layers.MultiHeadAttention(2, 3, name="causal_attention")(c, c, use_causal_mask=True)
    value = embedding("value_embedding")(ctx_in)
    key = embedding("key_embedding", 4)(ctx_in)
    cross = layers.MultiHeadAttention(1, 4, name="cross_attention")(x_in, value, key)
    query = embedding("query_embedding")(ids_in)
    context = embedding("context_embedding")(ctx_in)
    masked_cross = layers.MultiHeadAttention(2, 4, name="masked_cross")(query, context)
    outs = [probs, h, dropout, causal, cross, masked_cross]
    inputs = [*padded_attention_ids(rng, BATCH), floats(rng, 8, 4)]
    return keras.Model([ids_in, ctx_in, x_in], outs, name="masked_attention"), inputs


def masked_rope(rng):
    """Padded ids into InterleavedRoPE: the layer does not support masks, so Keras 3 warns and
    drops the mask there, and the attention and the average after it use every step."""
    ids_in = keras.Input((8,), dtype="int32", name="input_ids")
    e = layers.Embedding(30, 8, mask_zero=True, name="embedding")(ids_in)
    h = InterleavedRoPE(8, max_seq_len=8, name="rope")(e)
    a = layers.MultiHeadAttention(2, 4, name="attention")(h, h)
    pooled = layers.GlobalAveragePooling1D(name="pool")(layers.Add(name="residual")([h, a]))
    out = layers.Dense(3, name="logits")(pooled)
    padded, _ = padded_attention_ids(rng, BATCH)
    return keras.Model(ids_in, [out, a], name="masked_rope"), [padded]


def image_convolutions(rng):
    """Conv2D (padding, strides, dilation, groups, channels_first), DepthwiseConv2D,
    SeparableConv2D, Conv3D, and the 1-D depthwise and separable convolutions."""
    x = keras.Input((8, 9, 3), name="image")
    cf = keras.Input((3, 8, 9), name="image_cf")
    seq = keras.Input((9, 4), name="seq")
    vol = keras.Input((5, 6, 4, 2), name="volume")
    outs = [
        layers.Conv2D(4, 3, name="conv")(x),
        layers.Conv2D(4, (3, 2), strides=(2, 1), padding="same", activation="relu", name="conv_same_stride")(x),
        layers.Conv2D(2, 2, dilation_rate=(2, 1), use_bias=False, name="conv_dilated")(x),
        layers.Conv2D(6, 3, groups=3, padding="same", name="conv_groups")(x),
        layers.Conv2D(2, 3, data_format="channels_first", activation="tanh", name="conv_cf")(cf),
        layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="depthwise")(x),
        layers.DepthwiseConv2D((2, 3), strides=2, activation="relu6", use_bias=False, name="depthwise_stride")(x),
        layers.DepthwiseConv2D(2, data_format="channels_first", name="depthwise_cf")(cf),
        layers.SeparableConv2D(5, 3, depth_multiplier=2, activation="relu", name="separable")(x),
        layers.SeparableConv2D(3, 2, strides=2, padding="same", use_bias=False, name="separable_stride")(x),
        layers.SeparableConv2D(2, 3, dilation_rate=2, data_format="channels_first", name="separable_cf")(cf),
        layers.DepthwiseConv1D(3, depth_multiplier=2, padding="same", name="depthwise_1d")(seq),
        layers.SeparableConv1D(3, 2, strides=2, activation="tanh", name="separable_1d")(seq),
        layers.Conv3D(3, 2, name="conv_3d")(vol),
        layers.Conv3D(2, (2, 3, 1), strides=(1, 2, 1), padding="same", activation="sigmoid", name="conv_3d_same")(vol),
    ]
    inputs = [floats(rng, 8, 9, 3), floats(rng, 3, 8, 9), floats(rng, 9, 4), floats(rng, 5, 6, 4, 2)]
    return keras.Model([x, cf, seq, vol], outs, name="image_convolutions"), inputs


def image_pooling(rng):
    """MaxPooling2D, AveragePooling2D, global 2-D pooling and the 3-D poolings."""
    x = keras.Input((7, 9, 3), name="image")
    cf = keras.Input((3, 7, 9), name="image_cf")
    vol = keras.Input((5, 6, 4, 2), name="volume")
    outs = [
        layers.MaxPooling2D(name="max")(x),
        layers.MaxPooling2D(3, strides=2, padding="same", name="max_same")(x),
        layers.AveragePooling2D((2, 3), strides=1, name="avg")(x),
        layers.AveragePooling2D(3, strides=(2, 3), padding="same", name="avg_same")(x),
        layers.MaxPooling2D((2, 2), data_format="channels_first", name="max_cf")(cf),
        layers.AveragePooling2D(2, padding="same", data_format="channels_first", name="avg_cf")(cf),
        layers.GlobalAveragePooling2D(name="global_avg")(x),
        layers.GlobalMaxPooling2D(keepdims=True, name="global_max_keep")(x),
        layers.GlobalAveragePooling2D(data_format="channels_first", name="global_avg_cf")(cf),
        layers.MaxPooling3D(2, name="max_3d")(vol),
        layers.AveragePooling3D((2, 3, 2), strides=(1, 2, 2), padding="same", name="avg_3d")(vol),
        layers.GlobalAveragePooling3D(name="global_avg_3d")(vol),
        layers.GlobalMaxPooling3D(name="global_max_3d")(vol),
    ]
    inputs = [floats(rng, 7, 9, 3), floats(rng, 3, 7, 9), floats(rng, 5, 6, 4, 2)]
    return keras.Model([x, cf, vol], outs, name="image_pooling"), inputs


def image_resizing(rng):
    """ZeroPadding, Cropping and UpSampling in one, two and three dimensions."""
    seq = keras.Input((6, 4), name="seq")
    x = keras.Input((5, 6, 3), name="image")
    cf = keras.Input((3, 5, 6), name="image_cf")
    vol = keras.Input((4, 5, 3, 2), name="volume")
    outs = [
        layers.ZeroPadding1D((1, 2), name="pad_1d")(seq),
        layers.Cropping1D((2, 1), name="crop_1d")(seq),
        layers.UpSampling1D(3, name="up_1d")(seq),
        layers.ZeroPadding2D(1, name="pad")(x),
        layers.ZeroPadding2D(((1, 0), (2, 1)), name="pad_asymmetric")(x),
        layers.ZeroPadding2D((2, 1), data_format="channels_first", name="pad_cf")(cf),
        layers.Cropping2D(((1, 2), (0, 1)), name="crop")(x),
        layers.Cropping2D(1, data_format="channels_first", name="crop_cf")(cf),
        layers.UpSampling2D(name="up")(x),
        layers.UpSampling2D((2, 3), interpolation="bilinear", name="up_bilinear")(x),
        layers.UpSampling2D((3, 2), data_format="channels_first", name="up_cf")(cf),
        layers.UpSampling2D(2, interpolation="bilinear", data_format="channels_first", name="up_bilinear_cf")(cf),
        layers.ZeroPadding3D(((1, 0), (0, 2), (1, 1)), name="pad_3d")(vol),
        layers.Cropping3D(((1, 1), (2, 0), (0, 1)), name="crop_3d")(vol),
        layers.UpSampling3D((2, 1, 2), name="up_3d")(vol),
    ]
    inputs = [floats(rng, 6, 4), floats(rng, 5, 6, 3), floats(rng, 3, 5, 6), floats(rng, 4, 5, 3, 2)]
    return keras.Model([seq, x, cf, vol], outs, name="image_resizing"), inputs


def image_classifier(rng):
    """A small MobileNet-style image classifier on uint8 pixels: Rescaling, Conv2D,
    BatchNormalization, ReLU(6), ZeroPadding2D, strided DepthwiseConv2D, a residual
    SeparableConv2D block, MaxPooling2D, GlobalAveragePooling2D, Dense softmax."""
    pixels = keras.Input((16, 16, 3), dtype="uint8", name="pixels")
    h = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale")(pixels)
    h = layers.Conv2D(8, 3, padding="same", use_bias=False, name="stem")(h)
    h = layers.BatchNormalization(name="stem_bn")(h)
    h = layers.ReLU(6.0, name="stem_relu")(h)
    h = layers.ZeroPadding2D(((0, 1), (0, 1)), name="pad")(h)
    h = layers.DepthwiseConv2D(3, strides=2, use_bias=False, name="dw")(h)
    h = layers.BatchNormalization(name="dw_bn")(h)
    h = layers.ReLU(6.0, name="dw_relu")(h)
    h = layers.Conv2D(12, 1, use_bias=False, name="project")(h)
    branch = layers.SeparableConv2D(12, 3, padding="same", activation="relu", name="sep")(h)
    h = layers.Add(name="residual")([h, branch])
    h = layers.MaxPooling2D(name="pool")(h)
    h = layers.GlobalAveragePooling2D(name="gap")(h)
    h = layers.Dropout(0.2, name="dropout")(h)
    out = layers.Dense(10, activation="softmax", name="probs")(h)
    pixel_values = rng.integers(0, 256, (BATCH, 16, 16, 3)).astype("uint8")
    return keras.Model(pixels, out, name="image_classifier"), [pixel_values]


def image_any_size(rng):
    """A fully convolutional model declared for images of any size (None rows and
    columns), run on 9x11 images: every spatial dimension is dynamic in the ONNX graph,
    so the cropping counts from the end and the resizing scales whatever arrives."""
    x = keras.Input((None, None, 3), name="image")
    h = layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(x)
    h = layers.Cropping2D(((1, 2), (2, 0)), name="crop")(h)
    h = layers.ZeroPadding2D(((0, 1), (1, 0)), name="pad")(h)
    h = layers.SeparableConv2D(5, 3, strides=2, padding="same", name="separable")(h)
    h = layers.DepthwiseConv2D(2, name="depthwise")(h)
    up = layers.UpSampling2D((2, 3), interpolation="bilinear", name="up_bilinear")(h)
    near = layers.UpSampling2D(2, name="up_nearest")(h)
    pooled = layers.GlobalMaxPooling2D(name="global_max")(layers.AveragePooling2D(2, padding="same", name="avg")(up))
    return keras.Model(x, [near, pooled], name="image_any_size"), [floats(rng, 9, 11, 3)]


def image_augmented(rng):
    """A classifier with its training-time augmentation inside, as Keras' image tutorials
    build it: RandomFlip, RandomRotation, RandomZoom, RandomTranslation, RandomContrast
    and RandomBrightness change nothing at inference (the geometric ones give float32 for
    uint8 pixels), then Rescaling, Conv2D, pooling and Dense."""
    pixels = keras.Input((12, 12, 3), dtype="uint8", name="pixels")
    augment = keras.Sequential(
        [
            layers.RandomFlip("horizontal", name="flip"),
            layers.RandomRotation(0.1, name="rotation"),
            layers.RandomZoom(0.1, name="zoom"),
            layers.RandomTranslation(0.1, 0.1, name="translation"),
            layers.RandomContrast(0.2, name="contrast"),
            layers.RandomBrightness(0.1, value_range=(0, 255), name="brightness"),
        ],
        name="augment",
    )
    h = layers.Rescaling(1.0 / 255, name="rescale")(augment(pixels))
    h = layers.Conv2D(4, 3, activation="relu", name="conv")(h)
    h = layers.GlobalAveragePooling2D(name="gap")(h)
    out = layers.Dense(3, activation="softmax", name="probs")(h)
    pixel_values = rng.integers(0, 256, (BATCH, 12, 12, 3)).astype("uint8")
    return keras.Model(pixels, out, name="image_augmented"), [pixel_values]


def transposed_convolutions(rng):
    """Conv1DTranspose, Conv2DTranspose and Conv3DTranspose: valid and same padding,
    strides below, equal to and above the kernel size, output_padding, dilation,
    channels_first, and a small decoder that upsamples a code to an image."""
    x = keras.Input((5, 4, 3), name="image")
    cf = keras.Input((3, 5, 4), name="image_cf")
    seq = keras.Input((6, 2), name="seq")
    vol = keras.Input((3, 4, 2, 2), name="volume")
    code = keras.Input((4,), name="code")
    h = layers.Reshape((2, 2, 1), name="grid")(code)
    h = layers.Conv2DTranspose(4, 3, strides=2, padding="same", activation="relu", name="up_1")(h)
    decoded = layers.Conv2DTranspose(1, 4, strides=2, padding="same", activation="sigmoid", name="up_2")(h)
    outs = [
        layers.Conv2DTranspose(2, 3, name="valid")(x),
        layers.Conv2DTranspose(3, (3, 2), strides=2, name="valid_stride")(x),
        layers.Conv2DTranspose(2, 2, strides=3, use_bias=False, name="stride_over_kernel")(x),
        layers.Conv2DTranspose(4, 3, strides=2, padding="same", activation="tanh", name="same_stride")(x),
        layers.Conv2DTranspose(2, (4, 3), strides=(2, 3), padding="same", name="same_even")(x),
        layers.Conv2DTranspose(2, 3, strides=2, output_padding=1, name="output_padding")(x),
        layers.Conv2DTranspose(2, 3, strides=2, padding="same", output_padding=(0, 1), name="same_output_padding")(x),
        layers.Conv2DTranspose(2, 2, dilation_rate=2, padding="same", name="dilated")(x),
        layers.Conv2DTranspose(2, 3, strides=2, data_format="channels_first", name="channels_first")(cf),
        layers.Conv1DTranspose(3, 3, strides=2, padding="same", name="transpose_1d")(seq),
        layers.Conv3DTranspose(2, 2, strides=(1, 2, 2), name="transpose_3d")(vol),
        decoded,
    ]
    inputs = [floats(rng, 5, 4, 3), floats(rng, 3, 5, 4), floats(rng, 6, 2), floats(rng, 3, 4, 2, 2), floats(rng, 4)]
    return keras.Model([x, cf, seq, vol, code], outs, name="transposed_convolutions"), inputs


def image_preprocessing(rng):
    """Resizing (bilinear, down and up, on float and uint8 images, channels_first) and
    CenterCrop (float and uint8, odd margins), as an image model takes raw pixels."""
    x = keras.Input((10, 12, 3), name="image")
    pixels = keras.Input((9, 11, 3), dtype="uint8", name="pixels")
    cf = keras.Input((3, 10, 12), name="image_cf")
    outs = [
        layers.Resizing(6, 5, name="down")(x),
        layers.Resizing(13, 17, name="up")(x),
        layers.Resizing(7, 4, name="pixels_resized")(pixels),
        layers.Resizing(5, 8, data_format="channels_first", name="resized_cf")(cf),
        layers.CenterCrop(7, 8, name="crop")(x),
        layers.CenterCrop(6, 6, name="pixels_crop")(pixels),
        layers.CenterCrop(3, 7, data_format="channels_first", name="crop_cf")(cf),
    ]
    inputs = [floats(rng, 10, 12, 3), rng.integers(0, 256, (BATCH, 9, 11, 3)).astype("uint8"), floats(rng, 3, 10, 12)]
    return keras.Model([x, pixels, cf], outs, name="image_preprocessing"), inputs


def dot_products(rng):
    """Dot (rank 2 and 3, every axes form, normalize=True as cosine similarity) in a
    siamese similarity model with a shared encoder, and UnitNormalization (one axis and
    two, a zero vector staying zero)."""
    left = keras.Input((8,), name="left")
    right = keras.Input((8,), name="right")
    a = keras.Input((4, 6), name="a")
    b = keras.Input((5, 6), name="b")
    c = keras.Input((6, 3), name="c")
    encoder = layers.Dense(5, activation="tanh", name="encoder")
    cosine = layers.Dot(axes=1, normalize=True, name="cosine")([encoder(left), encoder(right)])
    unit_a = layers.UnitNormalization(name="unit")(a)
    outs = [
        cosine,
        layers.Dot(axes=1, name="dot")([left, right]),
        layers.Dot(axes=(2, 2), name="dot_rows")([a, b]),
        layers.Dot(axes=(2, 1), name="dot_matmul")([a, c]),
        layers.Dot(axes=-1, normalize=True, name="dot_cosine_rows")([a, b]),
        layers.Dot(axes=(1, 1), name="dot_columns")([layers.Permute((2, 1), name="a_t")(a), c]),
        unit_a,
        layers.UnitNormalization(axis=[1, 2], name="unit_both")(b),
    ]
    a_values = floats(rng, 4, 6)
    a_values[0, 1] = 0.0
    inputs = [floats(rng, 8), floats(rng, 8), a_values, floats(rng, 5, 6), floats(rng, 6, 3)]
    return keras.Model([left, right, a, b, c], outs, name="dot_products"), inputs


def group_normalization(rng):
    """GroupNormalization on images, sequences and feature vectors: groups of one channel
    (instance norm), of all (layer norm), and between; without centre or scale; dynamic
    spatial dimensions; as graph outputs and between layers."""
    x = keras.Input((5, 6, 8), name="image")
    seq = keras.Input((None, 6), name="seq")
    v = keras.Input((12,), name="features")
    outs = [
        layers.GroupNormalization(groups=4, name="groups_4")(x),
        layers.GroupNormalization(groups=8, epsilon=1e-5, name="instance")(x),
        layers.GroupNormalization(groups=1, center=False, name="one_group")(x),
        layers.GroupNormalization(groups=3, scale=False, name="seq_groups")(seq),
        layers.Dense(2, name="after")(layers.GroupNormalization(groups=2, center=False, scale=False, name="plain")(v)),
    ]
    inputs = [floats(rng, 5, 6, 8), floats(rng, 7, 6), floats(rng, 12)]
    return keras.Model([x, seq, v], outs, name="group_normalization"), inputs


def tabular_encoding(rng):
    """Tabular preprocessing inside the model: Discretization (int, one_hot, multi_hot
    and count; adapt() needs TensorFlow, so quantile boundaries are given) and CategoryEncoding (one_hot of one id
    and of several, multi_hot, count, an id out of range), feeding a Dense classifier."""
    age = keras.Input((1,), name="age")
    readings = keras.Input((3,), name="readings")
    category = keras.Input((1,), dtype="int32", name="category")
    tags = keras.Input((4,), dtype="int32", name="tags")
    quantiles = np.quantile(rng.normal(size=600), [0.25, 0.5, 0.75]).tolist()
    adapted = layers.Discretization(quantiles, name="quantiles")
    age_bucket = layers.Discretization([18.0, 30.0, 45.0, 60.0], output_mode="one_hot", name="age_one_hot")(age)
    kind = layers.CategoryEncoding(6, output_mode="one_hot", name="kind")(category)
    tag_hot = layers.CategoryEncoding(8, name="tag_multi_hot")(tags)
    # (Keras 3.12 declares Discretization's one_hot output with the input's shape, so it
    # cannot feed a Dense; it is an output of its own here.)
    features = layers.Concatenate(name="features")([kind, tag_hot])
    probs = layers.Dense(2, activation="softmax", name="probs")(features)
    outs = [
        probs,
        age_bucket,
        layers.Discretization([18.0, 30.0, 45.0, 60.0], name="age_bucket")(age),
        adapted(readings),
        layers.Discretization([-1.0, 0.0, 1.0], output_mode="multi_hot", name="multi_hot")(readings),
        layers.Discretization([-1.0, 0.0, 1.0], output_mode="count", name="count")(readings),
        layers.CategoryEncoding(8, output_mode="count", name="tag_count")(tags),
        layers.CategoryEncoding(8, output_mode="one_hot", name="tag_one_hot")(tags),
    ]
    ages = np.array([[17.0], [30.0], [61.5]], dtype="float32")
    tag_ids = rng.integers(0, 8, (BATCH, 4)).astype("int32")
    tag_ids[0, 0] = tag_ids[0, 1]
    tag_ids[2, 3] = 9
    inputs = [ages, floats(rng, 3), rng.integers(0, 6, (BATCH, 1)).astype("int32"), tag_ids]
    return keras.Model([age, readings, category, tags], outs, name="tabular_encoding"), inputs


def keras_ops_text(rng):
    """A text classifier written with keras.ops in the functional graph, as Keras 3 users
    write one: a padding mask from `ids != 0`, a masked mean by hand (cast, expand_dims,
    sum, maximum, true division), sinusoidal positions from constants, a lookup of a
    constant table with `take`, gelu, a softmax, `argmax` and `where`."""
    ids_in = keras.Input((6,), dtype="int32", name="input_ids")
    e = layers.Embedding(20, 8, name="embedding")(ids_in)
    angles = np.arange(6)[:, None] / np.power(100.0, np.arange(8)[None, :] / 8.0)
    e = e + ops.sin(angles.astype("float32")) * 0.1
    bias = ops.take(rng.normal(size=(20, 8)).astype("float32"), ids_in, axis=0)
    e = ops.gelu(e + 0.5 * bias)
    mask = ops.cast(ops.not_equal(ids_in, 0), "float32")
    summed = ops.sum(e * ops.expand_dims(mask, -1), axis=1)
    pooled = summed / ops.maximum(ops.sum(mask, axis=1, keepdims=True), 1.0)
    hidden = layers.Dense(8, name="hidden")(pooled)
    hidden = ops.where(hidden > 0, hidden, 0.1 * hidden)
    logits = layers.Dense(4, name="logits")(ops.concatenate([hidden, pooled], axis=-1))
    probs = ops.softmax(logits, axis=-1)
    outs = [probs, ops.argmax(logits, axis=-1), pooled]
    padded = rng.integers(1, 20, (BATCH, 6))
    padded[0, 4:] = 0
    padded[1, :] = 0
    return keras.Model(ids_in, outs, name="keras_ops_text"), [padded.astype("int32")]


def keras_ops_math(rng):
    """keras.ops operations recorded in a functional graph, one output each: the
    elementwise functions, comparisons and logic, type promotion between integer tensors,
    Python numbers and floats, and the shape, reduction and matrix operations."""
    x = keras.Input((3, 4), name="x")
    y = keras.Input((3, 4), name="y")
    n = keras.Input((3, 4), dtype="int32", name="n")
    pos = ops.abs(x) + 0.25
    outs = [
        ops.absolute(x), ops.negative(x), ops.sign(x), ops.square(x), ops.exp(x),
        ops.log(pos), ops.sqrt(pos), ops.rsqrt(pos), ops.reciprocal(pos), ops.sin(x),
        ops.cos(x), ops.tan(x * 0.5), ops.erf(x), ops.floor(x), ops.ceil(x), ops.round(x),
        ops.log1p(pos), ops.expm1(x), ops.relu(x), ops.relu6(x * 4.0), ops.sigmoid(x),
        ops.tanh(x), ops.softplus(x), ops.softsign(x), ops.silu(x),
        ops.gelu(x, approximate=False), ops.elu(x), ops.selu(x), ops.log_softmax(x, axis=1),
        ops.subtract(x, y), ops.multiply(y, 3), ops.divide(2.0, pos), ops.power(pos, y),
        ops.maximum(x, y), ops.minimum(x, 0.5), ops.equal(n, 2), ops.not_equal(x, y),
        ops.less(x, y), ops.less_equal(n, 1), ops.greater(x, 0.0), ops.greater_equal(y, x),
        ops.logical_not(x > 0), ops.logical_and(x > 0, y > 0), ops.logical_or(x > 0, n > 2),
        ops.logical_xor(x > 0, y > 0),
        n + 1, n * 0.5, n / 2, ops.sum(n > 1, axis=-1), ops.mean(n, axis=0), x + n,
        ops.cast(x * 3.0, "int32"), ops.cast(n, "bool"),
        ops.expand_dims(x, [0, -1]), ops.squeeze(ops.expand_dims(x, 2), axis=2),
        ops.reshape(x, (-1, 2, 6)), ops.transpose(x), ops.transpose(x, (0, 2, 1)),
        ops.stack([x, y], axis=1), ops.concatenate([x, y, n], axis=2),
        ops.mean(x, keepdims=True), ops.max(x, axis=[1, 2], keepdims=True), ops.min(y, axis=1),
        ops.prod(pos, axis=-1), ops.sum(x, axis=(0, 1)),
        ops.matmul(x, ops.transpose(y, (0, 2, 1))), ops.matmul(x, rng.normal(size=(4, 2)).astype("float32")),
        ops.clip(x, -0.5, 1.0), ops.clip(n, 1, 3), ops.where(n > 2, x, y), ops.argmin(y, axis=1),
        ops.take(x, np.array([2, 0]), axis=1),
    ]
    inputs = [floats(rng, 3, 4), floats(rng, 3, 4), rng.integers(0, 5, (BATCH, 3, 4)).astype("int32")]
    return keras.Model([x, y, n], outs, name="keras_ops_math"), inputs


def keras_ops_indexing(rng):
    """Indexing and slicing of tensors in a functional graph (`GetItem`): the first and
    last steps (as a transformer pools its class token), ranges with steps, reversal,
    ellipsis and new axes, over static and dynamic steps."""
    ids_in = keras.Input((None,), dtype="int32", name="input_ids")
    x = keras.Input((6, 4), name="x")
    e = layers.Embedding(10, 4, name="embedding")(ids_in)
    first = layers.Dense(3, name="head")(e[:, 0])
    outs = [
        first, e[:, -1], e[:, 1:], e[:, ::-1, 1:3], e[..., -2], e[:, None, 0],
        x[:, 0], x[:, -1, :], x[:, 1:4, ::2], x[..., 0], x[:, None, 2], x[:, -2:],
        x[:, :, 1:-1], x[:, ::-2], x[:, 4:1:-1, 3], x[:, 10:], x[None, :, 2:5],
    ]
    return keras.Model([ids_in, x], outs, name="keras_ops_indexing"), [ids(rng, 10, 5), floats(rng, 6, 4)]


def keras_ops_more(rng):
    """More keras.ops calls: one_hot (ids out of range included), any and all, cumsum,
    tile, the activations leaky_relu, hard_sigmoid, hard_silu and log_sigmoid, and a
    softmax over two axes. (Keras 3.12's JAX backend cannot run a loaded model that calls
    ops.norm, "unhashable type: 'list'" for its axis, so the builder fixture
    keras_operation checks norms against NumPy instead.)"""
    x = keras.Input((3, 4), name="x")
    n = keras.Input((3,), dtype="int32", name="n")
    outs = [
        ops.one_hot(n, 5), ops.one_hot(n, 4, axis=1),
        ops.any(x > 1.0, axis=-1), ops.all(x > -1.5, axis=1, keepdims=True),
        ops.cumsum(x, axis=1), ops.cumsum(n, axis=-1), ops.tile(x, (1, 2, 1)), ops.tile(n, 2),
        ops.leaky_relu(x, negative_slope=0.1), ops.hard_sigmoid(x * 3.0), ops.hard_silu(x * 3.0),
        ops.log_sigmoid(x), ops.softmax(x, axis=(1, 2)),
    ]
    ids_ = rng.integers(0, 5, (BATCH, 3)).astype("int32")
    ids_[0, 0] = 7
    ids_[1, 2] = -1
    return keras.Model([x, n], outs, name="keras_ops_more"), [floats(rng, 3, 4), ids_]


def mixed_precision(rng):
    """A model trained under Keras' mixed_float16 policy (float32 weights, float16
    compute): a text classifier with attention, a Conv1D, LayerNormalization,
    BatchNormalization and a float32 head, plus a float16 output. The import computes in
    float32, so it is compared within a float16 tolerance."""
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        ids_in = keras.Input((6,), dtype="int32", name="input_ids")
        e = layers.Embedding(30, 8, name="embedding")(ids_in)
        a = layers.MultiHeadAttention(2, 4, name="attention")(e, e)
        h = layers.LayerNormalization(name="norm")(e + a)
        h = layers.Conv1D(8, 3, padding="same", activation="relu", name="conv")(h)
        pooled = layers.GlobalAveragePooling1D(name="pool")(h)
        hidden = layers.BatchNormalization(name="batch_norm")(layers.Dense(8, activation="gelu", name="hidden")(pooled))
        probs = layers.Dense(4, activation="softmax", dtype="float32", name="probs")(hidden)
        half = layers.Dense(3, name="half")(hidden)
        model = keras.Model(ids_in, [probs, half], name="mixed_precision")
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    return model, [ids(rng, 30, 6)]


def keras_ops_extra(rng):
    """The rest of the converted keras.ops calls: inverse and hyperbolic functions, log2
    and log10, trunc, isnan/isinf/isfinite (NaN and infinity among the inputs), logsumexp,
    var and std, ones_like/zeros_like/full_like, moveaxis and swapaxes, mod and
    floor_divide with negative operands (NumPy's signs), pad, flip, normalize and repeat."""
    x = keras.Input((3, 4), name="x")
    n = keras.Input((3,), dtype="int32", name="n")
    finite = ops.where(ops.isfinite(x), x, 0.0)
    outs = [
        ops.arctan(finite), ops.arcsin(ops.tanh(finite)), ops.arccos(ops.tanh(finite)),
        ops.sinh(finite), ops.cosh(finite), ops.arctanh(ops.tanh(finite) * 0.9),
        ops.arcsinh(finite), ops.arccosh(ops.abs(finite) + 1.0), ops.log2(ops.abs(finite) + 1.0),
        ops.log10(ops.abs(finite) + 1.0), ops.trunc(finite * 3.0), ops.trunc(n),
        ops.isnan(x), ops.isinf(x), ops.isfinite(x), ops.logsumexp(finite, axis=-1),
        ops.var(finite, axis=1), ops.std(finite, axis=-1, keepdims=True), ops.ones_like(x),
        ops.zeros_like(n), ops.full_like(x, 2.5), ops.moveaxis(finite, 1, 2),
        ops.moveaxis(finite, [0, 1], [2, 0]), ops.swapaxes(finite, 1, 2), finite % 0.75,
        finite % -0.75, n % 3, (n - 2) % -3, finite // 0.5, (n - 2) // 3, (n - 2) // -2,
        ops.pad(finite, [[0, 0], [1, 2], [0, 1]]), ops.pad(n, [[0, 0], [2, 1]], constant_values=7),
        ops.flip(finite, axis=1), ops.flip(finite, axis=[1, 2]), ops.normalize(finite, axis=-1),
        ops.normalize(finite, axis=1, order=1), ops.repeat(finite, 2, axis=1),
    ]
    data = floats(rng, 3, 4)
    data[0, 0, 0] = np.nan
    data[1, 2, 3] = np.inf
    data[2, 1, 1] = -np.inf
    data[2, 0, 0] = 0.0
    return keras.Model([x, n], outs, name="keras_ops_extra"), [data, rng.integers(-6, 7, (BATCH, 3)).astype("int32")]


def einsum_layers(rng):
    """EinsumDense as transformer blocks use it (per-head projections, the output
    projection, a right-hand ellipsis, a MatMul-shaped one with LoRA merged in, one with an
    activation and a bias over two axes), keras.ops.einsum (explicit, implicit, ellipsis,
    diagonal, int8 operands accumulated as int32), RMSNormalization (one axis and two) and
    keras.ops.rms_normalization (no scale, an array scale, a tensor scale)."""
    x = keras.Input((5, 8), name="x")
    k = keras.Input((8,), dtype="int8", name="k")
    heads = layers.EinsumDense("abc,cde->abde", output_shape=(None, 2, 3), bias_axes="de",
                               name="heads")(x)
    merged = layers.EinsumDense("abcd,cde->abe", output_shape=(None, 4), bias_axes="e",
                                name="merge_heads")(heads)
    lora_out = layers.EinsumDense("...c,cd->...d", output_shape=6, bias_axes="d", lora_rank=2,
                                  name="lora_dense")(x)
    right = layers.EinsumDense("ab...,bc->ac...", output_shape=(3, 8), name="right_ellipsis")(x)
    gated = layers.EinsumDense("abc,cd->abd", output_shape=(5, 4), bias_axes="bd",
                               activation="gelu", name="gated")(x)
    scores = ops.einsum("btc,bsc->bts", x, x)
    summed = ops.einsum("bij->bj", x)
    implicit = ops.einsum("bij,jk", x, ops.ones((8, 3)) * 0.5)
    diagonal = ops.einsum("...ii->...i", ops.reshape(x[:, :4, :4], (-1, 4, 4)))
    ints = ops.einsum("bi,bi->b", k, k)
    rms = layers.RMSNormalization(name="rms")(x)
    rms_both = layers.RMSNormalization(axis=[1, 2], epsilon=1e-3, name="rms_both")(x)
    rms_op = ops.rms_normalization(x)
    rms_array = ops.rms_normalization(x, scale=np.linspace(0.5, 1.5, 8).astype("float32"))
    rms_tensor = ops.rms_normalization(x, scale=ops.sigmoid(x), axis=1, epsilon=1e-2)
    outs = [heads, merged, lora_out, right, gated, scores, summed, implicit, diagonal, ints,
            rms, rms_both, rms_op, rms_array, rms_tensor]
    # Every weight is randomized when saved, LoRA's too, so the file's merged kernel counts.
    model = keras.Model([x, k], outs, name="einsum_layers")
    return model, [floats(rng, 5, 8), rng.integers(-20, 21, (BATCH, 8)).astype("int8")]


def attention_classes(rng):
    """Attention (dot and concat scores, with and without scale, a separate key, causal
    self-attention) and AdditiveAttention (with and without scale, causal), on static and
    dynamic steps, and a small text model with causal self-attention."""
    q = keras.Input((4, 8), name="q")
    v = keras.Input((None, 8), name="v")
    k = keras.Input((None, 8), name="k")
    ids_in = keras.Input((7,), dtype="int32", name="ids")
    outs = [
        layers.Attention(name="dot")([q, v]),
        layers.Attention(use_scale=True, name="dot_scaled")([q, v, k]),
        layers.Attention(score_mode="concat", name="concat")([q, v]),
        layers.Attention(use_scale=True, score_mode="concat", name="concat_scaled")([q, v, k]),
        layers.Attention(use_scale=True, name="causal")([q, q], use_causal_mask=True),
        layers.Attention(name="causal_cross")([q, v], use_causal_mask=True),
        layers.AdditiveAttention(name="additive")([q, v, k]),
        layers.AdditiveAttention(use_scale=False, name="additive_plain")([q, v]),
        layers.AdditiveAttention(name="additive_causal")([v, v], use_causal_mask=True),
    ]
    x = layers.Embedding(50, 8)(ids_in)
    x = layers.Attention(use_scale=True, name="self_attention")([x, x], use_causal_mask=True)
    x = layers.GlobalAveragePooling1D()(x)
    outs.append(layers.Dense(3, activation="softmax", name="probs")(x))
    inputs = [floats(rng, 4, 8), floats(rng, 6, 8), floats(rng, 6, 8), ids(rng, 50, 7)]
    return keras.Model([q, v, k, ids_in], outs, name="attention_classes"), inputs


def masked_attention_classes(rng):
    """Attention and AdditiveAttention over padded token ids: the value's mask hides the
    padding from every query step (with and without the causal mask; a context of nothing
    but padding hides every step), the query's zeroes the padded output steps and travels
    on to the pooling (Keras records it as convert_to_tensor of the query's mask)."""
    ids_in = keras.Input((8,), dtype="int32", name="ids")
    ctx_in = keras.Input((5,), dtype="int32", name="ctx")
    x = layers.Embedding(30, 8, mask_zero=True)(ids_in)
    c = layers.Embedding(30, 8, mask_zero=True)(ctx_in)
    self_att = layers.Attention(use_scale=True, name="self_att")([x, x], use_causal_mask=True)
    cross = layers.Attention(score_mode="concat", name="cross")([x, c])
    additive = layers.AdditiveAttention(name="additive")([c, x, x])
    outs = [
        self_att, cross, additive,
        layers.GlobalAveragePooling1D(name="pooled")(self_att),
        layers.GlobalAveragePooling1D(name="pooled_additive")(additive),
    ]
    ids_data, ctx = padded_attention_ids(rng, BATCH)
    return keras.Model([ids_in, ctx_in], outs, name="masked_attention_classes"), [ids_data, ctx]

def layer_norm_ops(rng):
    """keras.ops.layer_normalization: no gamma or beta, arrays over the last axis, a tensor
    gamma, beta alone (gamma passed as None), over two axes, over a middle axis with a
    vector gamma (which Keras reshapes onto that axis), and the deprecated rms_scaling."""
    x = keras.Input((5, 8), name="x")
    g8 = np.linspace(0.5, 1.5, 8).astype("float32")
    b8 = np.linspace(-0.3, 0.3, 8).astype("float32")
    g5 = np.linspace(0.8, 1.2, 5).astype("float32")
    outs = [
        ops.layer_normalization(x),
        ops.layer_normalization(x, g8, b8, epsilon=1e-3),
        ops.layer_normalization(x, ops.sigmoid(x) + 0.5),
        ops.layer_normalization(x, None, b8),
        ops.layer_normalization(x, np.ones((5, 8), "float32") * 0.9, axis=[1, 2]),
        ops.layer_normalization(x, g5, None, axis=1),
        ops.layer_normalization(x, g8, rms_scaling=True),
    ]
    return keras.Model(x, outs, name="layer_norm_ops"), [floats(rng, 5, 8)]


def sort_ops(rng):
    """keras.ops.sort and argsort over the last axis, a middle one and a dynamic one, and
    over integers with ties (which JAX's stable sort keeps in their order)."""
    x = keras.Input((5, 6), name="x")
    n = keras.Input((8,), dtype="int32", name="n")
    d = keras.Input((None, 3), name="d")
    outs = [
        ops.sort(x), ops.sort(x, axis=1), ops.argsort(x), ops.argsort(x, axis=1),
        ops.sort(n), ops.argsort(n), ops.argsort(-n), ops.sort(d, axis=1), ops.argsort(d, axis=1),
    ]
    ties = rng.integers(-3, 4, (BATCH, 8)).astype("int32")
    return keras.Model([x, n, d], outs, name="sort_ops"), [floats(rng, 5, 6), ties, floats(rng, 7, 3)]


def main():
    keras.utils.set_random_seed(SEED)
    rng = np.random.default_rng(SEED)
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    manifest = Manifest(OUT, "scripts/gen_keras_fixtures.py")

    # In generation order: each draws from the one seeded generator, so fixtures are only
    # ever appended, and every earlier one keeps its values.
    legacy, int64_ids = {"legacy": True}, {"options": {"input_dtype": "s64"}}
    fixtures = [
        ("dense_activations", dense_activations, {}),
        ("activation_layers", activation_layers, {}),
        ("merge_layers", merge_layers, {}),
        ("shape_layers", shape_layers, {}),
        ("normalization_layers", normalization_layers, {}),
        ("noise_layers", noise_layers, {}),
        ("nas_lattice", nas_lattice, {}),
        ("text_classifier", lambda r: text_classifier(r), {}),
        ("text_classifier_posenc", lambda r: text_classifier(r, positional=True), {}),
        ("nested_models", nested_models, {}),
        ("multi_io", multi_io, {}),
        ("shared_layers", shared_layers, {}),
        ("sequential", sequential, {}),
        ("interleaved_rope", interleaved_rope, {}),
        # The same text classifier imported with int64 token ids, like the original tooling.
        ("text_classifier_int64", text_classifier, int64_ids),
        ("legacy_h5", legacy_h5, legacy),
        ("legacy_h5_sequential", legacy_h5_sequential, legacy),
        ("activation_classes", activation_classes, {}),
        ("preprocessing_layers", preprocessing_layers, {}),
        ("recurrent_layers", recurrent_layers, {}),
        ("text_rnn", text_rnn, {}),
        ("nested_outputs", nested_outputs, {}),
        ("legacy_h5_rnn", legacy_h5_rnn, legacy),
        ("conv_layers", conv_layers, {}),
        ("text_cnn", text_cnn, {}),
        ("misc_layers", misc_layers, {}),
        ("attention_layers", attention_layers, {}),
        ("text_transformer", text_transformer, {}),
        ("sequence_tagger", sequence_tagger, {}),
        ("masked_text", masked_text, {}),
        ("masked_rnn", masked_rnn, {}),
        ("masked_positional", masked_positional, {}),
        ("masked_tagger", masked_tagger, {}),
        ("masked_sequence", masked_sequence, {}),
        ("masked_concat", masked_concat, {}),
        ("masked_merges", masked_merges, {}),
        ("shared_output", shared_output, {}),
        ("masked_attention", masked_attention, {}),
        ("masked_rope", masked_rope, {}),
        ("image_convolutions", image_convolutions, {}),
        ("image_pooling", image_pooling, {}),
        ("image_resizing", image_resizing, {}),
        ("image_classifier", image_classifier, {}),
        ("image_any_size", image_any_size, {}),
        ("image_augmented", image_augmented, {}),
        ("transposed_convolutions", transposed_convolutions, {}),
        ("image_preprocessing", image_preprocessing, {}),
        ("dot_products", dot_products, {}),
        ("group_normalization", group_normalization, {}),
        ("tabular_encoding", tabular_encoding, {}),
        ("keras_ops_text", keras_ops_text, {}),
        ("keras_ops_math", keras_ops_math, {}),
        ("keras_ops_indexing", keras_ops_indexing, {}),
        ("keras_ops_more", keras_ops_more, {}),
        ("mixed_precision", mixed_precision, {"options": {"tolerance": "5e-3"}}),
        ("keras_ops_extra", keras_ops_extra, {}),
        ("einsum_layers", einsum_layers, {}),
        ("attention_classes", attention_classes, {}),
        ("masked_attention_classes", masked_attention_classes, {}),
        ("layer_norm_ops", layer_norm_ops, {}),
        ("sort_ops", sort_ops, {}),
    ]
    for name, build, how in fixtures:
        model, inputs = build(rng)
        save_fixture(manifest, name, model, inputs, rng, **how)

    manifest.write()
    print(f"wrote {len(manifest.rows)} manifest rows to {OUT}")


if __name__ == "__main__":
    main()
