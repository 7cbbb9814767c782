"""The manifest of a Keras fixture folder, shared by scripts/gen_keras_fixtures.py (Keras 3)
and scripts/gen_keras2_fixtures.py (Keras 2, tf.keras). No Keras import here: each
generator runs in its own virtual environment.

`manifest.tsv` has one tab-separated row per file:

    fixture  role  name  dtype  shape  file

`role` is `model`, `input`, `output` or `option` (an import option the test must pass,
`name` = option, `file` = value). Tensors are raw little-endian bytes; `shape` is
comma-separated (`-` for a scalar or a model row).
"""

import numpy as np


class Manifest:
    def __init__(self, out, generator):
        self.out = out
        self.generator = generator
        self.rows = []

    def tensor(self, fixture, role, name, array):
        array = np.ascontiguousarray(array)
        dtype = {
            np.dtype("float32"): "f32",
            np.dtype("int32"): "s32",
            np.dtype("int64"): "s64",
            np.dtype("uint8"): "u8",
            np.dtype("int8"): "s8",
        }[array.dtype]
        fname = f"{fixture}.{role}.{name}.bin".replace("/", "_")
        (self.out / fname).write_bytes(array.astype(array.dtype.newbyteorder("<")).tobytes())
        shape = ",".join(str(d) for d in array.shape) or "-"
        self.rows.append((fixture, role, name, dtype, shape, fname))

    def model(self, fixture, fname):
        self.rows.append((fixture, "model", fixture, "-", "-", fname))

    def option(self, fixture, key, value):
        self.rows.append((fixture, "option", key, "-", "-", value))

    def write(self):
        header = f"# fixture\trole\tname\tdtype\tshape\tfile (written by {self.generator})\n"
        body = "".join("\t".join(row) + "\n" for row in self.rows)
        (self.out / "manifest.tsv").write_text(header + body)
