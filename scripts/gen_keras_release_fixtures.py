"""Generate masked-attention fixtures in test/fixtures/keras_releases/ with a Keras 3
release other than the one scripts/gen_keras_fixtures.py pins.

Keras 3 releases apply masks differently in a few layers. Maximum, Minimum and Multiply
compute without masks up to 3.3 and with them from 3.4. A MultiHeadAttention: up to 3.3
its output carries no mask; up to 3.7 it uses the masks Keras records for its query, value
and key, and clears nothing; 3.7 moved the no-dropout case to `ops.dot_product_attention`;
from 3.8 it reads the query's mask from the query itself (3.8 and 3.9 still use the
recorded value and key masks; 3.10 and later record none) and clears the masks of its
inputs when it runs; from 3.10 its masked softmax with dropout multiplies by the mask. Each run writes one fixture, named
after the release that runs it (`masked_attention_3_6`), and keeps the other rows of the
folder's manifest. CI never needs this; the outputs are committed:

    python3 -m venv /tmp/keras-3.6
    /tmp/keras-3.6/bin/pip install keras==3.6.0 jax jaxlib h5py numpy
    KERAS_BACKEND=jax /tmp/keras-3.6/bin/python scripts/gen_keras_release_fixtures.py

The script is seeded and writes the same predictions on every run of one release.
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import keras  # noqa: E402
from keras import layers  # noqa: E402

from fixture_inputs import padded_attention_ids  # noqa: E402
from fixture_manifest import Manifest  # noqa: E402

SEED = 20261128
BATCH = 3
OUT = Path(__file__).resolve().parent.parent / "test" / "fixtures" / "keras_releases"


def masked_attention(name):
    """A two-block encoder over padded ids with its masked average, attention with dropout,
    a causal mask over padding, a masked query over a value of padding only, and Maximum
    and Multiply of sequences padded at different steps."""
    ids_in = keras.Input((8,), dtype="int32", name="input_ids")
    ctx_in = keras.Input((5,), dtype="int32", name="context_ids")
    other_in = keras.Input((8,), dtype="int32", name="other_ids")

    def embedding(layer_name):
        return layers.Embedding(30, 6, mask_zero=True, name=layer_name)

    h = embedding("embedding")(ids_in)
    for block in (1, 2):
        a = layers.MultiHeadAttention(2, 3, name=f"attention_{block}")(h, h)
        h = layers.LayerNormalization(name=f"norm_{block}")(layers.Add(name=f"residual_{block}")([h, a]))
    pooled = layers.GlobalAveragePooling1D(name="pool")(h)
    d = embedding("dropout_embedding")(ids_in)
    dropout = layers.MultiHeadAttention(2, 3, dropout=0.2, name="dropout_attention")(d, d)
    c = embedding("causal_embedding")(ids_in)
    causal = layers.MultiHeadAttention(2, 3, name="causal_attention")(c, c, use_causal_mask=True)
    query = embedding("query_embedding")(ids_in)
    context = embedding("context_embedding")(ctx_in)
    cross = layers.MultiHeadAttention(2, 4, name="masked_cross")(query, context)
    mine = embedding("merged_embedding")(ids_in)
    other = embedding("other_embedding")(other_in)
    maximum = layers.Maximum(name="maximum")([mine, other])
    product = layers.Multiply(name="product")([mine, other])
    outs = [pooled, h, dropout, causal, cross, maximum, product]
    return keras.Model([ids_in, ctx_in, other_in], outs, name=name)


def main():
    keras.utils.set_random_seed(SEED)
    rng = np.random.default_rng(SEED)
    major, minor = keras.__version__.split(".")[:2]
    if major != "3":
        sys.exit(f"run this with a Keras 3 release, not {keras.__version__}")
    name = f"masked_attention_{major}_{minor}"
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob(f"{name}.*"):
        old.unlink()
    manifest = Manifest(OUT, "scripts/gen_keras_release_fixtures.py")
    model = masked_attention(name)
    for var in model.weights:
        var.assign(rng.normal(0.0, 0.5, tuple(var.shape)).astype(var.dtype))
    other = rng.integers(1, 30, (BATCH, 8))
    other[0, :3] = 0
    other[1, 6:] = 0
    inputs = [*padded_attention_ids(rng, BATCH), other.astype("int32")]
    fname = f"{name}.keras"
    model.save(OUT / fname)
    reloaded = keras.saving.load_model(OUT / fname, compile=False)
    outputs = reloaded(inputs, training=False)
    manifest.model(name, fname)
    for tensor, array in zip(model.inputs, inputs):
        manifest.tensor(name, "input", tensor.name, array)
    output_names = [
        "pool", "norm_2", "dropout_attention", "causal_attention", "masked_cross", "maximum", "product"
    ]
    for output_name, array in zip(output_names, outputs):
        manifest.tensor(name, "output", output_name, np.asarray(array, dtype="float32"))
    # Keep the other releases' rows.
    existing = OUT / "manifest.tsv"
    if existing.exists():
        kept = [
            tuple(line.split("\t"))
            for line in existing.read_text().splitlines()
            if line and not line.startswith("#") and line.split("\t")[0] != name
        ]
        manifest.rows = sorted(kept + manifest.rows, key=lambda row: row[0])
    manifest.write()
    print(f"wrote {name} ({keras.__version__}) to {OUT}")


if __name__ == "__main__":
    main()
