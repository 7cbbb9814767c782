"""Inputs shared by the Keras 3 and the Keras 2 fixture generators, which run under
different Keras versions (and so in different virtual environments)."""


def padded_attention_ids(rng, batch):
    """Token ids `(batch, 8)` and context ids `(batch, 5)` for the masked attention
    fixtures: padding after, before and between tokens, a row of one token, and a context
    row of nothing but padding (a value that masks every step)."""
    padded = rng.integers(1, 30, (batch, 8))
    padded[0, 5:] = 0
    padded[1, :2] = 0
    padded[1, 4] = 0
    padded[2, 1:] = 0
    ctx = rng.integers(1, 30, (batch, 5))
    ctx[0, 3:] = 0
    ctx[2, :] = 0
    return padded.astype("int32"), ctx.astype("int32")
