//! Reading layer weights out of HDF5, in both layouts Keras writes.
//!
//! - Keras 3 (`model.weights.h5` inside a `.keras` zip): `layers/<snake_case class>[_N]/vars/<i>`,
//!   where `_N` numbers layers of the same class in layer order within their model, and a
//!   nested model's layers sit below it (`layers/functional/layers/dense/vars/0`). Layer names
//!   do not appear in the paths.
//! - Legacy whole-model `.h5` (Keras 2, tf.keras, and Keras 3's `model.save("x.h5")`): the
//!   group `model_weights/<layer name>` lists its datasets in the `weight_names` attribute,
//!   trainable weights first. A nested model's group holds the weights of all its layers;
//!   a path component before each variable's own name is the layer that owns it.

use crate::error::{ImportError, Result};
use crate::naming::to_snake_case;
use hdf5_pure::{Datatype, DatatypeByteOrder, File};
use std::collections::HashMap;
use thunderbolt_builder::{DType, Tensor};

/// Where one layer's weights live.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum WeightLocation {
    /// A Keras 3 group such as `layers/dense_1`; the weights are `<group>/vars/0..n`, then
    /// those of each sublayer in `parts` (`<group>/<part>/vars/0..n`).
    Keras3 {
        group: String,
        parts: &'static [&'static str],
    },
    /// A legacy group such as `model_weights/dense`; `owner` restricts the weights to those of
    /// one layer inside a nested model's group.
    Legacy {
        group: String,
        owner: Option<String>,
    },
}

/// How the layers of one model (the top-level model or a nested one) find their weights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WeightScope {
    /// Keras 3: the model's group path, `""` at the top and `layers/functional/` below.
    Keras3 { prefix: String },
    /// Legacy top level: every layer has its own group under `model_weights/`.
    LegacyTop,
    /// Legacy nested model: all its layers share the group of the top-level layer.
    LegacyNested { group: String },
}

impl WeightScope {
    /// The locations of a model's layers, given `(class_name, is_layer)` for each layer in
    /// config order (`is_layer` is false for `keras.ops` operations, which Keras does not
    /// count), following Keras 3's numbering per class.
    pub fn locations(&self, layers: &[(&str, &str, bool)]) -> Vec<WeightLocation> {
        let mut used: HashMap<String, usize> = HashMap::new();
        layers
            .iter()
            .map(|&(name, class_name, is_layer)| match self {
                WeightScope::Keras3 { prefix } => {
                    let mut key = to_snake_case(class_name);
                    if is_layer {
                        match used.get_mut(&key) {
                            Some(n) => {
                                *n += 1;
                                key = format!("{key}_{n}");
                            }
                            None => {
                                used.insert(key.clone(), 0);
                            }
                        }
                    }
                    WeightLocation::Keras3 {
                        group: format!("{prefix}layers/{key}"),
                        parts: sublayers(class_name),
                    }
                }
                WeightScope::LegacyTop => WeightLocation::Legacy {
                    group: format!("model_weights/{name}"),
                    owner: None,
                },
                WeightScope::LegacyNested { group } => WeightLocation::Legacy {
                    group: group.clone(),
                    owner: Some(name.to_string()),
                },
            })
            .collect()
    }

    /// The scope of a model nested at `location`.
    pub fn nested(location: &WeightLocation) -> WeightScope {
        match location {
            WeightLocation::Keras3 { group, .. } => WeightScope::Keras3 {
                prefix: format!("{group}/"),
            },
            WeightLocation::Legacy { group, .. } => WeightScope::LegacyNested {
                group: group.clone(),
            },
        }
    }
}

/// The sublayers whose variables Keras 3 saves below a layer's own group, in the order of
/// the layer's `weights`: a recurrent layer keeps them in its `cell`, `Bidirectional` in
/// its two wrapped layers (forward first, as its `weights` list them), and
/// `MultiHeadAttention` in its four projections, `TimeDistributed` in its wrapped layer.
fn sublayers(class_name: &str) -> &'static [&'static str] {
    match class_name {
        "LSTM" | "GRU" | "SimpleRNN" => &["cell"],
        "Bidirectional" => &["forward_layer/cell", "backward_layer/cell"],
        "MultiHeadAttention" => &["query_dense", "key_dense", "value_dense", "output_dense"],
        "TimeDistributed" => &["layer"],
        _ => &[],
    }
}

/// An opened HDF5 weights file.
pub struct WeightFile {
    file: File,
    len: u64,
}

impl WeightFile {
    pub fn from_bytes(bytes: Vec<u8>, context: &str) -> Result<Self> {
        let len = bytes.len() as u64;
        let file = File::from_bytes(bytes).map_err(|e| ImportError::hdf5(context, e))?;
        Ok(WeightFile { file, len })
    }

    /// The weights of the layer at `location`, in Keras order.
    pub fn load(&self, location: &WeightLocation) -> Result<Vec<Tensor>> {
        match location {
            WeightLocation::Keras3 { group, parts } => {
                let mut weights = self.load_keras3(group)?;
                for part in *parts {
                    weights.extend(self.load_keras3(&format!("{group}/{part}"))?);
                }
                Ok(weights)
            }
            WeightLocation::Legacy { group, owner } => self.load_legacy(group, owner.as_deref()),
        }
    }

    fn load_keras3(&self, group: &str) -> Result<Vec<Tensor>> {
        let vars_path = format!("{group}/vars");
        let vars = match self.file.group(&vars_path) {
            Ok(g) => g,
            // A layer without variables may have no group at all.
            Err(e) if is_not_found(&e) => return Ok(vec![]),
            Err(e) => return Err(ImportError::hdf5(vars_path, e)),
        };
        let names = vars
            .datasets()
            .map_err(|e| ImportError::hdf5(&vars_path, e))?;
        let mut tensors = Vec::with_capacity(names.len());
        for i in 0..names.len() {
            let path = format!("{vars_path}/{i}");
            if !names.iter().any(|n| n == &i.to_string()) {
                return Err(ImportError::Hdf5 {
                    context: vars_path,
                    message: format!("variables are not numbered 0..{}: {names:?}", names.len()),
                });
            }
            tensors.push(self.read_tensor(&path)?);
        }
        Ok(tensors)
    }

    fn load_legacy(&self, group: &str, owner: Option<&str>) -> Result<Vec<Tensor>> {
        let g = match self.file.group(group) {
            Ok(g) => g,
            Err(e) if is_not_found(&e) => return Ok(vec![]),
            Err(e) => return Err(ImportError::hdf5(group, e)),
        };
        let attrs = g.attrs().map_err(|e| ImportError::hdf5(group, e))?;
        let names = string_list_attr(&attrs, "weight_names").unwrap_or_default();
        let mut tensors = Vec::new();
        for name in names {
            if let Some(owner) = owner {
                // `dense/kernel`, `inner/dense/kernel`, or through a recurrent cell
                // `lstm/lstm_cell/kernel`: the owner is one of the components before the
                // variable's own name.
                let trimmed = name.trim_end_matches(":0");
                let mut parts = trimmed.rsplit('/');
                let _variable = parts.next();
                if !parts.any(|part| part == owner) {
                    continue;
                }
            }
            tensors.push(self.read_tensor(&format!("{group}/{name}"))?);
        }
        Ok(tensors)
    }

    /// String attributes of the root group (the legacy `model_config`).
    pub fn root_string_attr(&self, name: &str) -> Result<Option<String>> {
        let attrs = self
            .file
            .root()
            .attrs()
            .map_err(|e| ImportError::hdf5("root attributes", e))?;
        Ok(attrs
            .get(name)
            .and_then(|v| v.as_strings())
            .map(|s| s.concat()))
    }

    /// Reads one dataset as a builder tensor (little-endian, element type mapped).
    pub fn read_tensor(&self, path: &str) -> Result<Tensor> {
        let ds = self.file.dataset(path).map_err(|e| {
            if is_not_found(&e) {
                ImportError::Hdf5 {
                    context: path.to_string(),
                    message: "dataset not found".into(),
                }
            } else {
                ImportError::hdf5(path, e)
            }
        })?;
        let shape64 = ds.shape().map_err(|e| ImportError::hdf5(path, e))?;
        let datatype = ds.datatype().map_err(|e| ImportError::hdf5(path, e))?;
        let (stored, dtype) =
            element_type(&datatype).map_err(|message| ImportError::WeightDtype {
                path: path.to_string(),
                message,
            })?;
        let shape = shape64
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<std::result::Result<Vec<usize>, _>>()
            .map_err(|_| ImportError::hdf5(path, "dimension does not fit in memory"))?;
        let count = shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
            .ok_or_else(|| ImportError::hdf5(path, format!("shape {shape:?} overflows")))?;
        let bytes = count
            .checked_mul(stored.size as u64)
            .ok_or_else(|| ImportError::hdf5(path, format!("shape {shape:?} overflows")))?;
        // Keras writes weights uncompressed, so they fit in the file. Compressed (chunked)
        // data may be larger, within reason; anything beyond that is a corrupt header that
        // would otherwise make us allocate whatever it claims.
        let limit = if ds.is_chunked() {
            self.len.saturating_mul(1024)
        } else {
            self.len
        };
        if bytes > limit {
            return Err(ImportError::hdf5(
                path,
                format!(
                    "dataset claims {bytes} bytes but the file has {} bytes",
                    self.len
                ),
            ));
        }
        let raw = ds.read_raw().map_err(|e| ImportError::hdf5(path, e))?;
        if raw.len() as u64 != bytes {
            return Err(ImportError::hdf5(
                path,
                format!(
                    "read {} bytes for shape {shape:?}, expected {bytes}",
                    raw.len()
                ),
            ));
        }
        let data = stored.to_little_endian(raw, dtype);
        Ok(Tensor { dtype, shape, data })
    }
}

/// A list of strings stored under `name`, or split by h5py into `name0`, `name1`, ... when
/// too large for one attribute.
pub fn string_list_attr(
    attrs: &HashMap<String, hdf5_pure::AttrValue>,
    name: &str,
) -> Option<Vec<String>> {
    if let Some(v) = attrs.get(name) {
        return v.as_strings().map(<[String]>::to_vec);
    }
    let mut out = Vec::new();
    let mut chunk = 0;
    while let Some(v) = attrs.get(&format!("{name}{chunk}")) {
        out.extend_from_slice(v.as_strings()?);
        chunk += 1;
    }
    (chunk > 0).then_some(out)
}

fn is_not_found(e: &hdf5_pure::Error) -> bool {
    matches!(
        e,
        hdf5_pure::Error::Format(hdf5_pure::FormatError::PathNotFound(_))
    )
}

/// How an element is stored on disk.
#[derive(Debug, Clone, Copy)]
struct Stored {
    size: usize,
    big_endian: bool,
    /// bfloat16 is widened to float32 (exactly), as the builder has no bfloat16.
    bfloat16: bool,
}

impl Stored {
    fn to_little_endian(self, mut raw: Vec<u8>, dtype: DType) -> Vec<u8> {
        if self.big_endian && self.size > 1 {
            for element in raw.chunks_exact_mut(self.size) {
                element.reverse();
            }
        }
        if self.bfloat16 {
            debug_assert_eq!(dtype, DType::F32);
            return raw
                .chunks_exact(2)
                .flat_map(|b| [0, 0, b[0], b[1]])
                .collect();
        }
        raw
    }
}

/// Maps an HDF5 datatype onto a builder element type.
fn element_type(datatype: &Datatype) -> std::result::Result<(Stored, DType), String> {
    let order = |o: &DatatypeByteOrder| match o {
        DatatypeByteOrder::LittleEndian => Ok(false),
        DatatypeByteOrder::BigEndian => Ok(true),
        DatatypeByteOrder::Vax => Err("VAX byte order is not supported".to_string()),
    };
    match datatype {
        Datatype::FloatingPoint {
            size,
            byte_order,
            layout,
        } => {
            let big_endian = order(byte_order)?;
            let stored = |bfloat16| Stored {
                size: *size as usize,
                big_endian,
                bfloat16,
            };
            match (size, layout.exponent_size, layout.mantissa_size) {
                (4, 8, 23) => Ok((stored(false), DType::F32)),
                (8, 11, 52) => Ok((stored(false), DType::F64)),
                (2, 5, 10) => Ok((stored(false), DType::F16)),
                (2, 8, 7) => Ok((stored(true), DType::F32)),
                _ => Err(format!(
                    "unsupported {}-byte float type (exponent {} bits, mantissa {} bits)",
                    size, layout.exponent_size, layout.mantissa_size
                )),
            }
        }
        Datatype::FixedPoint {
            size,
            byte_order,
            layout,
        } => {
            let big_endian = order(byte_order)?;
            let stored = Stored {
                size: *size as usize,
                big_endian,
                bfloat16: false,
            };
            let dtype = match (size, layout.signed) {
                (1, true) => DType::I8,
                (2, true) => DType::I16,
                (4, true) => DType::I32,
                (8, true) => DType::I64,
                (1, false) => DType::U8,
                (s, signed) => {
                    return Err(format!(
                        "unsupported {}-bit {} integer type (supported: int8, int16, int32, int64, uint8, bool)",
                        s * 8,
                        if signed { "signed" } else { "unsigned" }
                    ))
                }
            };
            Ok((stored, dtype))
        }
        // h5py stores NumPy bools as an int8 enum {FALSE, TRUE}.
        Datatype::Enumeration {
            size: 1, members, ..
        } if members.len() == 2 && members.iter().any(|m| m.name.eq_ignore_ascii_case("true")) => {
            Ok((
                Stored {
                    size: 1,
                    big_endian: false,
                    bfloat16: false,
                },
                DType::Bool,
            ))
        }
        other => Err(format!(
            "unsupported HDF5 datatype {}",
            datatype_kind(other)
        )),
    }
}

fn datatype_kind(datatype: &Datatype) -> &'static str {
    match datatype {
        Datatype::FixedPoint { .. } => "integer",
        Datatype::FloatingPoint { .. } => "float",
        Datatype::Time { .. } => "time",
        Datatype::String { .. } => "fixed-length string",
        Datatype::BitField { .. } => "bit field",
        Datatype::Opaque { .. } => "opaque",
        Datatype::Compound { .. } => "compound",
        Datatype::Reference { .. } => "reference",
        Datatype::Enumeration { .. } => "enumeration",
        Datatype::VariableLength { .. } => "variable-length",
        Datatype::Array { .. } => "array",
        _ => "of an unknown class",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recurrent_layers_read_their_cells_too() {
        let scope = WeightScope::Keras3 {
            prefix: String::new(),
        };
        let locations = scope.locations(&[
            ("l", "LSTM", true),
            ("b", "Bidirectional", true),
            ("d", "Dense", true),
        ]);
        let parts: Vec<&[&str]> = locations
            .iter()
            .map(|l| match l {
                WeightLocation::Keras3 { parts, .. } => *parts,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            parts,
            [
                &["cell"][..],
                &["forward_layer/cell", "backward_layer/cell"][..],
                &[][..]
            ]
        );
    }

    #[test]
    fn keras3_numbering_is_per_class_and_skips_operations() {
        let scope = WeightScope::Keras3 {
            prefix: String::new(),
        };
        let layers = [
            ("ids", "InputLayer", true),
            ("emb", "Embedding", true),
            ("add", "Add", false),
            ("d1", "Dense", true),
            ("merge", "Add", true),
            ("d2", "Dense", true),
            ("inner", "Functional", true),
        ];
        let groups: Vec<String> = scope
            .locations(&layers)
            .into_iter()
            .map(|l| match l {
                WeightLocation::Keras3 { group, .. } => group,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            groups,
            [
                "layers/input_layer",
                "layers/embedding",
                "layers/add",
                "layers/dense",
                "layers/add",
                "layers/dense_1",
                "layers/functional"
            ]
        );
        let nested = WeightScope::nested(&WeightLocation::Keras3 {
            group: "layers/functional".into(),
            parts: &[],
        });
        assert_eq!(
            nested.locations(&[("e", "Embedding", true)]),
            [WeightLocation::Keras3 {
                group: "layers/functional/layers/embedding".into(),
                parts: &[]
            }]
        );
    }

    #[test]
    fn legacy_nested_scope_filters_by_owner() {
        let nested = WeightScope::nested(&WeightLocation::Legacy {
            group: "model_weights/inner".into(),
            owner: None,
        });
        assert_eq!(
            nested.locations(&[("idense", "Dense", true)]),
            [WeightLocation::Legacy {
                group: "model_weights/inner".into(),
                owner: Some("idense".into())
            }]
        );
    }
}
