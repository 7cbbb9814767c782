#!/usr/bin/env python3
"""Generate the Keras 2 import fixtures in test/fixtures/keras2/ with real tf.keras 2.15.

Keras 2 files (tf.keras `.h5`) do not record the masks layers receive, and Keras 2 combines
masks in merges by other rules than Keras 3 (the AND of those there are, where Keras 3 ORs
them and applies them inside Maximum, Minimum and Multiply). These fixtures hold the
importer to Keras 2's own predictions. Same manifest format as test/fixtures/keras/ (see
scripts/fixture_manifest.py); the Rust fixture tests read both folders.

Run (CI never needs this; the outputs are committed):

    python3 -m venv .venv-keras2
    .venv-keras2/bin/pip install -r scripts/requirements-keras2.txt
    .venv-keras2/bin/python scripts/gen_keras2_fixtures.py

The script is seeded and writes the same predictions on every run.
"""

import os
import shutil
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow import keras  # noqa: E402
from tensorflow.keras import layers  # noqa: E402

from fixture_inputs import padded_attention_ids  # noqa: E402
from fixture_manifest import Manifest  # noqa: E402

SEED = 20261128
BATCH = 3
OUT = Path(__file__).resolve().parent.parent / "test" / "fixtures" / "keras2"


def randomize_weights(model, rng):
    """Seeded random values for every variable (fresh layers have zero biases); variances
    and scales stay positive."""
    for var in model.weights:
        shape = tuple(var.shape)
        if var.name.split("/")[-1].split(":")[0] in ("mean", "variance", "count"):
            continue  # a Normalization's adapted statistics: a random variance could be < 0
        if "moving_variance" in var.name or "gamma" in var.name:
            value = rng.uniform(0.5, 1.5, shape)
        else:
            value = rng.normal(0.0, 0.5, shape)
        var.assign(value.astype(var.dtype.as_numpy_dtype))


def save_fixture(manifest, name, model, inputs, rng, zip_format=False):
    randomize_weights(model, rng)
    # tf.keras 2.13+ also writes the zip format, telling its version in metadata.json.
    fname = f"{name}.keras" if zip_format else f"{name}.h5"
    model.save(OUT / fname, save_format="keras" if zip_format else "h5")
    # Predict from the reloaded file, so the reference is what the file holds.
    reloaded = keras.models.load_model(OUT / fname, compile=False)
    outputs = reloaded(inputs if len(inputs) > 1 else inputs[0], training=False)
    outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
    manifest.model(name, fname)
    for tensor, array in zip(model.inputs, inputs):
        manifest.tensor(name, "input", tensor.name.split(":")[0], array)
    for output_name, array in zip(model.output_names, outputs):
        manifest.tensor(name, "output", output_name, np.asarray(array, dtype="float32"))


def padded_ids(rng, vocab, length):
    ids = rng.integers(1, vocab, (BATCH, length))
    ids[0, length - 2 :] = 0
    ids[1, 1] = 0
    ids[2, :2] = 0
    return ids.astype("int32")


def keras2_masked_merges(rng):
    """Embedding(mask_zero=True) from two token inputs padded at different steps, through
    every merge and Concatenate (along the features, with an unmasked input too, and along
    the steps) into masked averages, plus the merged values themselves."""
    ids_in = keras.Input((6,), dtype="int32", name="input_ids")
    other_in = keras.Input((6,), dtype="int32", name="other_ids")
    x_in = keras.Input((6, 4), name="x")
    e = layers.Embedding(20, 4, mask_zero=True, name="embedding")(ids_in)
    f = layers.Embedding(20, 4, mask_zero=True, name="other_embedding")(other_in)
    a = layers.Dense(4, name="branch_a")(e)
    merged = {
        "add": layers.Add(name="add")([a, f]),
        "subtract": layers.Subtract(name="subtract")([a, f]),
        "average": layers.Average(name="average")([a, f, e]),
        "multiply": layers.Multiply(name="multiply")([a, f]),
        "maximum": layers.Maximum(name="maximum")([a, f]),
        "minimum": layers.Minimum(name="minimum")([a, f]),
        "features": layers.Concatenate(name="features")([a, f]),
        "mixed": layers.Concatenate(name="mixed")([a, x_in]),
        "steps": layers.Concatenate(axis=1, name="steps")([a, f]),
        "mixed_add": layers.Add(name="mixed_add")([a, x_in]),
    }
    pools = [layers.GlobalAveragePooling1D(name=f"avg_{k}")(v) for k, v in merged.items()]
    outs = pools + [merged["multiply"], merged["maximum"]]
    other = padded_ids(rng, 20, 6)
    other[0, :3] = 0
    other[0, 4:] = rng.integers(1, 20, 2)
    inputs = [padded_ids(rng, 20, 6), other, rng.normal(size=(BATCH, 6, 4)).astype("float32")]
    return keras.Model([ids_in, other_in, x_in], outs, name="keras2_masked_merges"), inputs


def keras2_masked_text(rng):
    """A Keras 2 text model over padded ids: the mask passes Dropout and Dense, skips the
    padding in an LSTM, a backwards GRU and a Bidirectional LSTM returning sequences, and
    shapes the averages; a Masking layer over float steps likewise."""
    ids_in = keras.Input((7,), dtype="int32", name="input_ids")
    steps_in = keras.Input((5, 3), name="steps")
    e = layers.Embedding(30, 6, mask_zero=True, name="embedding")(ids_in)
    h = layers.Dense(6, activation="relu", name="dense")(layers.Dropout(0.3, name="dropout")(e))
    lstm = layers.LSTM(3, name="lstm")(h)
    gru = layers.GRU(2, go_backwards=True, name="gru_back")(h)
    bi = layers.Bidirectional(layers.LSTM(2, return_sequences=True), name="bi_lstm")(h)
    avg = layers.GlobalAveragePooling1D(name="average")(bi)
    m = layers.Masking(mask_value=-1.0, name="masking")(steps_in)
    seq_avg = layers.GlobalAveragePooling1D(name="steps_average")(layers.Dense(2, name="steps_dense")(m))
    joined = layers.Concatenate(name="joined")([lstm, gru, avg, seq_avg])
    probs = layers.Dense(3, activation="softmax", name="probs")(joined)
    steps = rng.uniform(-0.9, 0.9, (BATCH, 5, 3))
    steps[0, 3:] = -1.0
    steps[1, :1] = -1.0
    inputs = [padded_ids(rng, 30, 7), steps.astype("float32")]
    return keras.Model([ids_in, steps_in], [probs, lstm, gru, bi, avg, seq_avg], name="keras2_masked_text"), inputs


def keras2_masked_sequential(rng):
    """Layers whose handling of a mask changed in Keras 3: Keras 2's Rescaling drops the
    mask (so the average after it counts the padding), in a Sequential model."""
    model = keras.Sequential(
        [
            keras.Input((6,), dtype="int32", name="input_ids"),
            layers.Embedding(20, 4, mask_zero=True, name="embedding"),
            layers.GaussianDropout(0.2, name="gaussian_dropout"),
            layers.Dense(4, name="dense"),
            layers.Rescaling(2.0, offset=0.5, name="rescaling"),
            layers.GlobalAveragePooling1D(name="average"),
        ],
        name="keras2_masked_sequential",
    )
    return model, [padded_ids(rng, 20, 6)]


def keras2_mask_endings(rng):
    """Normalization and Identity drop the mask in Keras 2 (Keras 3 passes it on); the
    dropouts, activations and normalizations pass it on in both."""
    ids_in = keras.Input((6,), dtype="int32", name="input_ids")
    e = layers.Embedding(20, 4, mask_zero=True, name="embedding")(ids_in)
    kept = layers.AlphaDropout(0.1, name="alpha_dropout")(e)
    kept = layers.SpatialDropout1D(0.1, name="spatial_dropout")(kept)
    kept = layers.LayerNormalization(name="layer_norm")(kept)
    kept = layers.BatchNormalization(name="batch_norm")(kept)
    kept = layers.LeakyReLU(name="leaky")(kept)
    kept = layers.TimeDistributed(layers.Dense(3), name="td_dense")(kept)
    normalized = layers.Normalization(mean=0.5, variance=2.0, name="normalization")(e)
    identity = layers.Identity(name="identity")(e)
    outs = [
        layers.GlobalAveragePooling1D(name="avg_kept")(kept),
        layers.GlobalAveragePooling1D(name="avg_normalized")(normalized),
        layers.GlobalAveragePooling1D(name="avg_identity")(identity),
    ]
    return keras.Model(ids_in, outs, name="keras2_mask_endings"), [padded_ids(rng, 20, 6)]


def keras2_zip_sequential(rng):
    """keras2_masked_sequential's layers saved as a `.keras` zip by tf.keras: a Sequential
    model has no Keras 2 layout to tell its version by, only metadata.json does."""
    model, inputs = keras2_masked_sequential(rng)
    model._name = "keras2_zip_sequential"
    return model, inputs


def keras2_layers(rng):
    """The layers the importer converts, as tf.keras 2.15 configures and saves them (list
    axes, call kwargs such as attention's value, key and use_causal_mask), without masks."""
    x_in = keras.Input((8, 6), name="x")
    context_in = keras.Input((5, 6), name="context")
    conv = layers.Conv1D(4, 3, padding="causal", dilation_rate=2, activation="relu", name="conv")(x_in)
    pooled = layers.GlobalAveragePooling1D(name="gap")(x_in)
    outs = [
        conv,
        layers.MaxPooling1D(2, name="maxpool")(conv),
        layers.AveragePooling1D(2, padding="same", name="avgpool")(conv),
        layers.GlobalMaxPooling1D(name="gmp")(conv),
        layers.LayerNormalization(name="ln")(x_in),
        layers.BatchNormalization(name="bn")(x_in),
        layers.GRU(3, return_sequences=True, name="gru")(x_in),
        layers.GRU(3, reset_after=False, name="gru_v1")(x_in),
        layers.SimpleRNN(2, go_backwards=True, name="rnn")(x_in),
        layers.Bidirectional(layers.LSTM(2), merge_mode="sum", name="bi_sum")(x_in),
        layers.TimeDistributed(layers.Dense(2, activation="gelu"), name="td")(x_in),
        layers.MultiHeadAttention(2, 3, name="self_attention")(x_in, x_in, use_causal_mask=True),
        layers.MultiHeadAttention(2, 3, value_dim=2, name="cross_attention")(
            x_in, context_in, key=layers.Dense(6, name="key_proj")(context_in)
        ),
        layers.Flatten(name="flat")(layers.Permute((2, 1), name="perm")(x_in)),
        layers.RepeatVector(3, name="rep")(pooled),
        layers.Reshape((4, 12), name="reshape")(x_in),
        layers.PReLU(name="prelu")(x_in),
        layers.ELU(0.5, name="elu")(x_in),
        layers.LeakyReLU(0.2, name="lrelu")(x_in),
        layers.ReLU(max_value=1.0, negative_slope=0.1, threshold=0.05, name="relu")(x_in),
        layers.Softmax(name="softmax")(x_in),
        layers.Dense(3, activation="selu", name="dense")(x_in),
        layers.Normalization(mean=0.2, variance=1.5, name="norm")(x_in),
        layers.Rescaling(0.5, offset=1.0, name="resc")(x_in),
    ]
    inputs = [rng.normal(size=(BATCH, 8, 6)).astype("float32"),
              rng.normal(size=(BATCH, 5, 6)).astype("float32")]
    return keras.Model([x_in, context_in], outs, name="keras2_layers"), inputs


def keras2_tf_ops(rng):
    """TensorFlow calls in a tf.keras 2 functional graph (TFOpLambda layers): a positional
    table added to masked embeddings, a product and a difference of two tensors, a scalar
    subtracted; each drops the mask, so the averages after them count the padding."""
    ids_in = keras.Input((5,), dtype="int32", name="input_ids")
    e = layers.Embedding(12, 4, mask_zero=True, name="embedding")(ids_in)
    positions = rng.normal(size=(5, 4)).astype("float32")
    h = e + positions
    gated = h * layers.Dense(4, activation="sigmoid", name="gate")(e)
    moved = tf.math.subtract(gated, layers.Dense(4, name="shift")(e)) - 1.5
    added = tf.math.add(e, 0.25)
    outs = [
        layers.GlobalAveragePooling1D(name="avg_positional")(h),
        layers.GlobalAveragePooling1D(name="avg_gated")(gated),
        layers.GlobalAveragePooling1D(name="avg_moved")(moved),
        layers.GlobalAveragePooling1D(name="avg_added")(added),
    ]
    return keras.Model(ids_in, outs, name="keras2_tf_ops"), [padded_ids(rng, 12, 5)]


def keras2_nested(rng):
    """Nested models as tf.keras 2 numbers their calls (a functional encoder called twice
    through a shared layer, a Sequential head): references count each nested model's own
    first node, in the calls and in the outputs alike."""
    inner_in = keras.Input((6,), name="inner_in")
    encoder = keras.Model(
        inner_in, layers.Dense(4, activation="tanh", name="inner_dense")(inner_in), name="encoder"
    )
    head = keras.Sequential([layers.Dense(3, name="head_dense"), layers.ReLU(name="head_relu")], name="head")
    a_in = keras.Input((6,), name="a")
    b_in = keras.Input((6,), name="b")
    shared = layers.Dense(6, name="shared")
    encoded_a = encoder(shared(a_in))
    encoded_b = encoder(shared(b_in))
    out = head(layers.Concatenate(name="joined")([encoded_a, encoded_b]))
    inputs = [rng.normal(size=(BATCH, 6)).astype("float32") for _ in range(2)]
    return keras.Model([a_in, b_in], [out, encoded_a, encoded_b], name="keras2_nested"), inputs


def keras2_activations(rng):
    """Every activation name as tf.keras 2 computes it; its hard_sigmoid is
    clip(0.2 x + 0.5, 0, 1), not Keras 3's relu6(x + 3) / 6, in Dense, Activation,
    TimeDistributed and as recurrent_activation."""
    x_in = keras.Input((5, 4), name="x")
    names = ["linear", "relu", "sigmoid", "tanh", "softmax", "softplus", "softsign", "elu",
             "selu", "gelu", "swish", "relu6", "hard_sigmoid", "exponential", "mish"]
    outs = [layers.Dense(3, activation=a, name=f"dense_{a}")(x_in) for a in names]
    outs += [
        layers.Activation("hard_sigmoid", name="activation_hard_sigmoid")(x_in),
        layers.TimeDistributed(layers.Dense(2, activation="hard_sigmoid"), name="td_hard_sigmoid")(x_in),
        layers.LSTM(2, recurrent_activation="hard_sigmoid", name="lstm_hard_sigmoid")(x_in),
        layers.Bidirectional(layers.GRU(2, recurrent_activation="hard_sigmoid"), name="bi_gru_hard_sigmoid")(x_in),
    ]
    x = (3.0 * rng.normal(size=(BATCH, 5, 4))).astype("float32")
    return keras.Model(x_in, outs, name="keras2_activations"), [x]


def keras2_text_cnn(rng):
    """A tf.keras 2 text CNN beside adapted tabular features: Embedding, Conv1D,
    GlobalMaxPooling1D, an adapted Normalization called twice, its second call an output
    named after the layer."""
    ids_in = keras.Input((10,), dtype="int32", name="ids")
    feat_in = keras.Input((5,), name="features")
    norm = layers.Normalization(name="norm")
    norm.adapt(rng.normal(2.0, 3.0, size=(50, 5)).astype("float32"))
    pooled = layers.GlobalMaxPooling1D(name="gmp")(
        layers.Conv1D(6, 3, activation="relu", name="conv")(layers.Embedding(30, 8, name="emb")(ids_in))
    )
    tabular = layers.Dense(4, activation="relu", name="tabular")(norm(feat_in))
    out = layers.Dense(3, activation="softmax", name="out")(layers.Concatenate(name="cat")([pooled, tabular]))
    inputs = [rng.integers(0, 30, (BATCH, 10)).astype("int32"), rng.normal(size=(BATCH, 5)).astype("float32")]
    return keras.Model([ids_in, feat_in], [out, norm(feat_in)], name="keras2_text_cnn"), inputs


def keras2_masked_attention(rng):
    """MultiHeadAttention over padded ids as tf.keras computes it: the query's, value's and
    key's masks leave the padding out of every softmax (adding -1e9, with no product, with
    dropout too), and tf.keras clears no mask, so both blocks of an encoder and a layer
    beside them attend to the tokens only. Also a causal mask with padding, an unmasked
    query over a masked value and key, and a value of nothing but padding."""
    ids_in = keras.Input((8,), dtype="int32", name="input_ids")
    ctx_in = keras.Input((5,), dtype="int32", name="context_ids")
    x_in = keras.Input((8, 4), name="x")
    e = layers.Embedding(30, 6, mask_zero=True, name="embedding")(ids_in)
    h = e
    for block in (1, 2):
        a = layers.MultiHeadAttention(2, 3, dropout=0.1 * (block - 1), name=f"attention_{block}")(h, h)
        h = layers.LayerNormalization(name=f"norm_{block}")(layers.Add(name=f"residual_{block}")([h, a]))
    probs = layers.Dense(3, activation="softmax", name="probs")(layers.GlobalAveragePooling1D(name="pool")(h))
    causal = layers.MultiHeadAttention(2, 3, name="causal_attention")(e, e, use_causal_mask=True)
    value = layers.Embedding(30, 6, mask_zero=True, name="value_embedding")(ctx_in)
    key = layers.Dense(4, name="key")(value)
    cross = layers.MultiHeadAttention(1, 4, name="cross_attention")(x_in, value, key)
    masked_cross = layers.MultiHeadAttention(2, 4, name="masked_cross")(e, value)
    inputs = [*padded_attention_ids(rng, BATCH), rng.normal(size=(BATCH, 8, 4)).astype("float32")]
    outs = [probs, h, causal, cross, masked_cross]
    return keras.Model([ids_in, ctx_in, x_in], outs, name="keras2_masked_attention"), inputs


def keras2_image(rng):
    """tf.keras 2 image layers: Conv2D, DepthwiseConv2D and SeparableConv2D (their weights
    named depthwise_kernel and pointwise_kernel in the HDF5 file), pooling, ZeroPadding2D,
    Cropping2D, UpSampling2D (nearest and bilinear) and a Conv3D."""
    x_in = keras.Input((8, 8, 3), name="image")
    v_in = keras.Input((4, 5, 6, 2), name="volume")
    h = layers.Conv2D(6, 3, padding="same", activation="relu", name="conv")(x_in)
    h = layers.DepthwiseConv2D(3, depth_multiplier=2, strides=2, name="depthwise")(h)
    h = layers.SeparableConv2D(4, 2, padding="same", activation="tanh", name="separable")(h)
    h = layers.ZeroPadding2D(((1, 0), (0, 1)), name="pad")(h)
    up = layers.UpSampling2D((2, 2), interpolation="bilinear", name="up_bilinear")(h)
    near = layers.UpSampling2D(3, name="up_nearest")(layers.Cropping2D(((0, 1), (1, 1)), name="crop")(h))
    pooled = layers.GlobalAveragePooling2D(name="gap")(layers.MaxPooling2D(2, padding="same", name="pool")(up))
    vol = layers.AveragePooling3D(2, name="pool_3d")(layers.Conv3D(3, 2, padding="same", name="conv_3d")(v_in))
    inputs = [rng.normal(size=(BATCH, 8, 8, 3)).astype("float32"), rng.normal(size=(BATCH, 4, 5, 6, 2)).astype("float32")]
    return keras.Model([x_in, v_in], [pooled, near, vol], name="keras2_image"), inputs


def keras2_transposed(rng):
    """tf.keras 2 transposed convolutions (TensorFlow's conv2d_transpose): valid and
    same, strides over and under the kernel, output_padding, Conv1DTranspose and
    Conv3DTranspose."""
    x_in = keras.Input((5, 4, 3), name="image")
    s_in = keras.Input((6, 2), name="seq")
    v_in = keras.Input((3, 4, 2, 2), name="volume")
    outs = [
        layers.Conv2DTranspose(2, 3, strides=2, name="valid_stride")(x_in),
        layers.Conv2DTranspose(3, (4, 3), strides=(2, 3), padding="same", activation="relu", name="same_even")(x_in),
        layers.Conv2DTranspose(2, 2, strides=3, use_bias=False, name="stride_over_kernel")(x_in),
        layers.Conv2DTranspose(2, 3, strides=2, padding="same", output_padding=(0, 1), name="same_output_padding")(x_in),
        layers.Conv1DTranspose(3, 3, strides=2, padding="same", name="transpose_1d")(s_in),
        layers.Conv3DTranspose(2, 2, strides=(1, 2, 2), name="transpose_3d")(v_in),
    ]
    inputs = [
        rng.normal(size=(BATCH, 5, 4, 3)).astype("float32"),
        rng.normal(size=(BATCH, 6, 2)).astype("float32"),
        rng.normal(size=(BATCH, 3, 4, 2, 2)).astype("float32"),
    ]
    return keras.Model([x_in, s_in, v_in], outs, name="keras2_transposed"), inputs


def keras2_dot(rng):
    """tf.keras 2 Dot (plain and normalize=True, rank 2 and 3) and UnitNormalization."""
    left = keras.Input((6,), name="left")
    right = keras.Input((6,), name="right")
    a = keras.Input((3, 4), name="a")
    b = keras.Input((5, 4), name="b")
    outs = [
        layers.Dot(axes=1, normalize=True, name="cosine")([left, right]),
        layers.Dot(axes=(2, 2), name="dot_rows")([a, b]),
        layers.UnitNormalization(name="unit")(a),
    ]
    inputs = [rng.normal(size=(BATCH, 6)).astype("float32"), rng.normal(size=(BATCH, 6)).astype("float32"),
              rng.normal(size=(BATCH, 3, 4)).astype("float32"), rng.normal(size=(BATCH, 5, 4)).astype("float32")]
    return keras.Model([left, right, a, b], outs, name="keras2_dot"), inputs


def keras2_group_norm(rng):
    """tf.keras 2 GroupNormalization on an image and on features."""
    x = keras.Input((4, 5, 6), name="image")
    v = keras.Input((8,), name="features")
    outs = [
        layers.GroupNormalization(groups=3, name="groups")(x),
        layers.GroupNormalization(groups=4, center=False, name="features_groups")(v),
    ]
    inputs = [rng.normal(size=(BATCH, 4, 5, 6)).astype("float32"), rng.normal(size=(BATCH, 8)).astype("float32")]
    return keras.Model([x, v], outs, name="keras2_group_norm"), inputs


def keras2_tf_calls(rng):
    """More TensorFlow calls in a tf.keras 2 graph, as a TensorFlow text model writes
    them: a padding mask from tf.math.not_equal and tf.cast, a masked mean by hand
    (expand_dims, reduce_sum, maximum, truediv), tf.gather from a constant table, slicing,
    reshape, transpose, concat, the activations and reductions under their tf names."""
    ids_in = keras.Input((6,), dtype="int32", name="input_ids")
    x = keras.Input((3, 4), name="x")
    e = layers.Embedding(20, 4, name="embedding")(ids_in)
    mask = tf.cast(tf.math.not_equal(ids_in, 0), tf.float32)
    summed = tf.reduce_sum(e * tf.expand_dims(mask, -1), axis=1)
    pooled = summed / tf.maximum(tf.reduce_sum(mask, axis=1, keepdims=True), 1.0)
    outs = [
        pooled, e[:, 0], e[:, -1, 1:3], tf.gather(x, [2, 0], axis=1),
        tf.reshape(x, [-1, 12]), tf.transpose(x, [0, 2, 1]), tf.concat([x, -x], axis=-1),
        tf.nn.softmax(x, axis=1), tf.nn.gelu(x), tf.nn.relu(x), tf.math.sigmoid(x),
        tf.math.tanh(x), tf.math.sqrt(tf.abs(x)), tf.math.rsqrt(x * x + 1.0), tf.math.exp(x),
        tf.math.log(tf.abs(x) + 0.5), tf.math.square(x), tf.nn.leaky_relu(x, alpha=0.1),
        tf.reduce_mean(x, axis=[1, 2], keepdims=True), tf.reduce_max(x, axis=1),
        tf.reduce_min(x, 2), tf.clip_by_value(x, -0.5, 0.5), tf.squeeze(tf.expand_dims(x, 1), 1),
        tf.stack([x, x], axis=1), tf.math.minimum(x, 0.25), tf.math.pow(tf.abs(x), 1.5),
        tf.cast(tf.math.greater(x, 0.0), tf.float32), tf.cast(ids_in + 3, tf.float32),
        tf.cast(ids_in / 2, tf.float32),
    ]
    padded = rng.integers(1, 20, (BATCH, 6))
    padded[0, 4:] = 0
    inputs = [padded.astype("int32"), rng.normal(size=(BATCH, 3, 4)).astype("float32")]
    return keras.Model([ids_in, x], outs, name="keras2_tf_calls"), inputs


def keras2_tf_more(rng):
    """The rest of the TensorFlow calls the importer converts from a tf.keras 2 graph:
    inverse and hyperbolic functions, floormod and floor division (negative operands
    too), logsumexp, variance and std, ones_like/zeros_like, is_nan/is_inf/is_finite
    (NaN and infinity among the inputs), reverse, pad, l2_normalize, cumsum, tile and
    one_hot (ids out of range included)."""
    finite = keras.Input((3, 4), name="x")
    x = keras.Input((3, 4), name="raw")
    ids_in = keras.Input((3,), dtype="int32", name="ids")
    outs = [
        tf.math.atan(finite), tf.math.asin(tf.tanh(finite)), tf.math.acos(tf.tanh(finite)),
        tf.math.sinh(finite), tf.math.cosh(finite), tf.math.atanh(tf.tanh(finite) * 0.9),
        tf.math.asinh(finite), tf.math.acosh(tf.abs(finite) + 1.0),
        tf.math.floormod(finite, 0.75), tf.math.floormod(finite, -0.75),
        tf.cast(tf.math.floormod(ids_in - 2, -3), tf.float32),
        tf.cast(tf.math.floordiv(ids_in - 2, 3), tf.float32),
        tf.math.reduce_logsumexp(finite, axis=1), tf.math.reduce_variance(finite, axis=1),
        tf.math.reduce_std(finite, axis=-1, keepdims=True), tf.ones_like(x),
        tf.cast(tf.zeros_like(ids_in), tf.float32), tf.cast(tf.math.is_nan(x), tf.float32),
        tf.cast(tf.math.is_inf(x), tf.float32), tf.cast(tf.math.is_finite(x), tf.float32),
        tf.reverse(finite, axis=[1]), tf.pad(finite, [[0, 0], [1, 2], [0, 1]], constant_values=3.0),
        tf.math.l2_normalize(finite, axis=-1), tf.math.cumsum(finite, axis=1),
        tf.tile(finite, [1, 2, 1]), tf.one_hot(ids_in, 5),
    ]
    data = rng.normal(size=(BATCH, 3, 4)).astype("float32")
    data[2, 0, 0] = 0.0
    raw = rng.normal(size=(BATCH, 3, 4)).astype("float32")
    raw[0, 0, 0] = np.nan
    raw[1, 2, 3] = np.inf
    raw[2, 1, 1] = -np.inf
    ids = rng.integers(-1, 7, (BATCH, 3)).astype("int32")
    return keras.Model([finite, x, ids_in], outs, name="keras2_tf_more"), [data, raw, ids]


def keras2_tf_operands(rng):
    """TensorFlow calls whose operands tf.keras records out of the usual place: a constant
    first (`0.1 * x`, `2.0 - x`, `1.0 / x`, recorded as `_CONSTANT_VALUE`), tf.where's x
    and y and tf.linalg.matmul's b passed by keyword; and argmax/argmin, whose int64
    indices (TensorFlow's default; axis 0 when none is given) are cast for the comparison."""
    x = keras.Input((3, 4), name="x")
    w = keras.Input((4, 2), name="w")
    outs = [
        0.1 * x, 2.0 - x, 1.0 / (1.0 + x * x), tf.where(x > 0, x, 0.1 * x),
        tf.where(x > 0.5, x, tf.zeros_like(x)), tf.matmul(x, w), tf.linalg.matmul(x, w),
        tf.cast(tf.math.argmax(x, axis=-1), tf.float32), tf.cast(tf.math.argmin(x, 1), tf.float32),
        tf.cast(tf.math.argmax(x), tf.float32),
    ]
    inputs = [rng.normal(size=(BATCH, 3, 4)).astype("float32"),
              rng.normal(size=(BATCH, 4, 2)).astype("float32")]
    return keras.Model([x, w], outs, name="keras2_tf_operands"), inputs


def keras2_einsum_dense(rng):
    """tf.keras 2's EinsumDense: per-head projections and their merge, an ellipsis, a bias
    over two axes with an activation, as in Keras 3 (same config, same weights)."""
    x = keras.Input((5, 8), name="x")
    heads = keras.layers.EinsumDense("abc,cde->abde", output_shape=(None, 2, 3), bias_axes="de",
                                     name="heads")(x)
    merged = keras.layers.EinsumDense("abcd,cde->abe", output_shape=(None, 4), bias_axes="e",
                                      name="merge_heads")(heads)
    proj = keras.layers.EinsumDense("...c,cd->...d", output_shape=6, bias_axes="d",
                                    name="proj")(x)
    gated = keras.layers.EinsumDense("abc,cd->abd", output_shape=(5, 4), bias_axes="bd",
                                     activation="gelu", name="gated")(x)
    inputs = [rng.normal(size=(BATCH, 5, 8)).astype("float32")]
    return keras.Model(x, [heads, merged, proj, gated], name="keras2_einsum_dense"), inputs


def keras2_attention_classes(rng):
    """tf.keras 2's Attention (dot and concat, scaled, causal) and AdditiveAttention, on
    plain floats and over padded token ids, whose masks tf.keras passes implicitly."""
    q = keras.Input((4, 8), name="q")
    v = keras.Input((6, 8), name="v")
    ids_in = keras.Input((8,), dtype="int32", name="ids")
    ctx_in = keras.Input((5,), dtype="int32", name="ctx")
    x = keras.layers.Embedding(30, 8, mask_zero=True)(ids_in)
    c = keras.layers.Embedding(30, 8, mask_zero=True)(ctx_in)
    self_att = keras.layers.Attention(use_scale=True, name="self_att")([x, x], use_causal_mask=True)
    outs = [
        keras.layers.Attention(name="dot")([q, v]),
        keras.layers.Attention(use_scale=True, score_mode="concat", name="concat")([q, v, v]),
        keras.layers.AdditiveAttention(name="additive")([q, v]),
        keras.layers.Attention(name="causal")([q, q], use_causal_mask=True),
        self_att,
        keras.layers.AdditiveAttention(name="masked_additive")([c, x, x]),
        keras.layers.GlobalAveragePooling1D(name="pooled")(self_att),
    ]
    ids_data, ctx = padded_attention_ids(rng, BATCH)
    inputs = [rng.normal(size=(BATCH, 4, 8)).astype("float32"),
              rng.normal(size=(BATCH, 6, 8)).astype("float32"), ids_data, ctx]
    return keras.Model([q, v, ids_in, ctx_in], outs, name="keras2_attention_classes"), inputs


def main():
    tf.keras.utils.set_random_seed(SEED)
    rng = np.random.default_rng(SEED)
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    manifest = Manifest(OUT, "scripts/gen_keras2_fixtures.py")
    # In generation order: append new fixtures so that earlier ones keep their values.
    for name, build in [
        ("keras2_masked_merges", keras2_masked_merges),
        ("keras2_masked_text", keras2_masked_text),
        ("keras2_masked_sequential", keras2_masked_sequential),
        ("keras2_mask_endings", keras2_mask_endings),
        ("keras2_zip_sequential", keras2_zip_sequential),
        ("keras2_layers", keras2_layers),
        ("keras2_tf_ops", keras2_tf_ops),
        ("keras2_nested", keras2_nested),
        ("keras2_activations", keras2_activations),
        ("keras2_text_cnn", keras2_text_cnn),
        ("keras2_masked_attention", keras2_masked_attention),
        ("keras2_image", keras2_image),
        ("keras2_transposed", keras2_transposed),
        ("keras2_dot", keras2_dot),
        ("keras2_group_norm", keras2_group_norm),
        ("keras2_tf_calls", keras2_tf_calls),
        ("keras2_tf_more", keras2_tf_more),
        ("keras2_tf_operands", keras2_tf_operands),
        ("keras2_einsum_dense", keras2_einsum_dense),
        ("keras2_attention_classes", keras2_attention_classes),
    ]:
        model, inputs = build(rng)
        save_fixture(manifest, name, model, inputs, rng, zip_format=name.startswith("keras2_zip"))
    manifest.write()
    print(f"wrote {len(manifest.rows)} manifest rows to {OUT}")


if __name__ == "__main__":
    main()
