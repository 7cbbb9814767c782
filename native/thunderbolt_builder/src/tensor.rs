//! Element types and raw little-endian tensors, as the caller hands them to the builder.

use crate::error::BuildError;
use onnx_protobuf::tensor_proto::DataType;

/// Element type of an input, a weight or a value flowing through the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F64,
    F16,
    I8,
    I16,
    I32,
    I64,
    U8,
    Bool,
}

impl DType {
    /// Every supported element type, in a fixed order (used in error messages).
    pub const ALL: [DType; 9] = [
        DType::F32,
        DType::F64,
        DType::F16,
        DType::I8,
        DType::I16,
        DType::I32,
        DType::I64,
        DType::U8,
        DType::Bool,
    ];

    /// Parses a NumPy/Keras dtype name (`"float32"`, `"int64"`, ...); short forms such as
    /// `"f32"` and `"s64"` are accepted too.
    pub fn from_name(name: &str) -> Result<Self, BuildError> {
        let dtype = match name {
            "float32" | "f32" | "float" => DType::F32,
            "float64" | "f64" | "double" => DType::F64,
            "float16" | "f16" | "half" => DType::F16,
            "int8" | "i8" | "s8" => DType::I8,
            "int16" | "i16" | "s16" => DType::I16,
            "int32" | "i32" | "s32" => DType::I32,
            "int64" | "i64" | "s64" => DType::I64,
            "uint8" | "u8" => DType::U8,
            "bool" => DType::Bool,
            other => {
                return Err(BuildError::UnsupportedDtype {
                    context: "dtype name".to_string(),
                    dtype: other.to_string(),
                    expected: DType::ALL
                        .iter()
                        .map(|d| d.name())
                        .collect::<Vec<_>>()
                        .join(", "),
                })
            }
        };
        Ok(dtype)
    }

    /// The NumPy/Keras name of the type.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::F16 => "float16",
            DType::I8 => "int8",
            DType::I16 => "int16",
            DType::I32 => "int32",
            DType::I64 => "int64",
            DType::U8 => "uint8",
            DType::Bool => "bool",
        }
    }

    /// Bytes per element in the raw little-endian layout.
    pub fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::I16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64 | DType::F16)
    }

    pub fn is_integer(self) -> bool {
        matches!(
            self,
            DType::I8 | DType::I16 | DType::I32 | DType::I64 | DType::U8
        )
    }

    /// The ONNX `TensorProto.DataType` code.
    pub fn onnx(self) -> DataType {
        match self {
            DType::F32 => DataType::FLOAT,
            DType::F64 => DataType::DOUBLE,
            DType::F16 => DataType::FLOAT16,
            DType::I8 => DataType::INT8,
            DType::I16 => DataType::INT16,
            DType::I32 => DataType::INT32,
            DType::I64 => DataType::INT64,
            DType::U8 => DataType::UINT8,
            DType::Bool => DataType::BOOL,
        }
    }

    /// The type for an ONNX `DataType` code, if the builder supports it.
    pub fn from_onnx(code: i32) -> Option<Self> {
        DType::ALL.into_iter().find(|d| d.onnx() as i32 == code)
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A dense tensor: element type, shape and the elements as raw little-endian bytes in
/// row-major order. The fields are public; [`Tensor::validate`] (run by the builder on every
/// weight) checks that `data` holds exactly `shape.product() * dtype.size()` bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl Tensor {
    /// A checked constructor.
    pub fn new(dtype: DType, shape: Vec<usize>, data: Vec<u8>) -> Result<Self, BuildError> {
        let tensor = Tensor { dtype, shape, data };
        tensor.validate("tensor")?;
        Ok(tensor)
    }

    pub fn from_f32(shape: Vec<usize>, values: &[f32]) -> Self {
        Self::from_le(
            DType::F32,
            shape,
            values.iter().flat_map(|v| v.to_le_bytes()),
        )
    }

    pub fn from_f64(shape: Vec<usize>, values: &[f64]) -> Self {
        Self::from_le(
            DType::F64,
            shape,
            values.iter().flat_map(|v| v.to_le_bytes()),
        )
    }

    pub fn from_i32(shape: Vec<usize>, values: &[i32]) -> Self {
        Self::from_le(
            DType::I32,
            shape,
            values.iter().flat_map(|v| v.to_le_bytes()),
        )
    }

    pub fn from_i64(shape: Vec<usize>, values: &[i64]) -> Self {
        Self::from_le(
            DType::I64,
            shape,
            values.iter().flat_map(|v| v.to_le_bytes()),
        )
    }

    fn from_le(dtype: DType, shape: Vec<usize>, bytes: impl Iterator<Item = u8>) -> Self {
        Tensor {
            dtype,
            shape,
            data: bytes.collect(),
        }
    }

    /// Number of elements the shape describes, or `None` on overflow.
    pub fn element_count(&self) -> Option<usize> {
        self.shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
    }

    /// Checks that `data` matches `shape` and `dtype`; `context` names the tensor in the error.
    pub fn validate(&self, context: &str) -> Result<(), BuildError> {
        let expected = self
            .element_count()
            .and_then(|n| n.checked_mul(self.dtype.size()))
            .ok_or_else(|| BuildError::InvalidTensor {
                context: context.to_string(),
                message: format!("shape {:?} is too large", self.shape),
            })?;
        if self.data.len() != expected {
            return Err(BuildError::InvalidTensor {
                context: context.to_string(),
                message: format!(
                    "shape {:?} of {} needs {expected} bytes, got {}",
                    self.shape,
                    self.dtype,
                    self.data.len()
                ),
            });
        }
        Ok(())
    }

    /// The elements widened to `f64`, for folding constants (integers convert exactly up to
    /// 2^53). Call only on a validated tensor.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        let size = self.dtype.size();
        self.data
            .chunks_exact(size)
            .map(|c| match self.dtype {
                DType::F32 => f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64,
                DType::F64 => f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]),
                DType::F16 => half::f16::from_le_bytes([c[0], c[1]]).to_f64(),
                DType::I8 => c[0] as i8 as f64,
                DType::I16 => i16::from_le_bytes([c[0], c[1]]) as f64,
                DType::I32 => i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64,
                DType::I64 => {
                    i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f64
                }
                DType::U8 | DType::Bool => c[0] as f64,
            })
            .collect()
    }

    /// Encodes `values` as a tensor of the float type `dtype` (rounding to nearest).
    /// Returns `None` for a non-float `dtype`.
    pub fn from_f64_as(dtype: DType, shape: Vec<usize>, values: &[f64]) -> Option<Self> {
        let data: Vec<u8> = match dtype {
            DType::F32 => values
                .iter()
                .flat_map(|&v| (v as f32).to_le_bytes())
                .collect(),
            DType::F64 => values.iter().flat_map(|&v| v.to_le_bytes()).collect(),
            DType::F16 => values
                .iter()
                .flat_map(|&v| half::f16::from_f64(v).to_le_bytes())
                .collect(),
            _ => return None,
        };
        Some(Tensor { dtype, shape, data })
    }

    /// A tensor of any element type from `f64` values: floats rounded to the type, integers
    /// truncated toward zero (exact for the integers JSON and NumPy constants carry), bools
    /// true where nonzero.
    pub fn from_f64_values(dtype: DType, shape: Vec<usize>, values: &[f64]) -> Self {
        if let Some(t) = Tensor::from_f64_as(dtype, shape.clone(), values) {
            return t;
        }
        let data: Vec<u8> = match dtype {
            DType::I8 => values
                .iter()
                .flat_map(|&v| (v as i8).to_le_bytes())
                .collect(),
            DType::I16 => values
                .iter()
                .flat_map(|&v| (v as i16).to_le_bytes())
                .collect(),
            DType::I32 => values
                .iter()
                .flat_map(|&v| (v as i32).to_le_bytes())
                .collect(),
            DType::I64 => values
                .iter()
                .flat_map(|&v| (v as i64).to_le_bytes())
                .collect(),
            DType::U8 => values.iter().map(|&v| v as u8).collect(),
            DType::Bool => values.iter().map(|&v| u8::from(v != 0.0)).collect(),
            DType::F32 | DType::F64 | DType::F16 => unreachable!("floats are made above"),
        };
        Tensor { dtype, shape, data }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_f32_is_little_endian_and_validates() {
        let t = Tensor::from_f32(vec![2], &[1.0, -2.5]);
        assert_eq!(
            t.data,
            [1.0f32.to_le_bytes(), (-2.5f32).to_le_bytes()].concat()
        );
        t.validate("t").unwrap();
        assert_eq!(t.to_f64_vec(), vec![1.0, -2.5]);
    }

    #[test]
    fn validate_rejects_wrong_length() {
        let t = Tensor {
            dtype: DType::F32,
            shape: vec![2, 2],
            data: vec![0; 12],
        };
        let err = t.validate("layer \"d\" weight 0").unwrap_err().to_string();
        assert!(err.contains("needs 16 bytes, got 12"), "{err}");
        assert!(err.contains("layer \"d\" weight 0"), "{err}");
    }

    #[test]
    fn validate_rejects_overflowing_shape() {
        let t = Tensor {
            dtype: DType::F32,
            shape: vec![usize::MAX, 4],
            data: vec![],
        };
        assert!(t
            .validate("t")
            .unwrap_err()
            .to_string()
            .contains("too large"));
    }

    #[test]
    fn dtype_names_round_trip_and_unknown_names_fail() {
        for d in DType::ALL {
            assert_eq!(DType::from_name(d.name()).unwrap(), d);
            assert_eq!(DType::from_onnx(d.onnx() as i32), Some(d));
        }
        let err = DType::from_name("complex64").unwrap_err().to_string();
        assert!(err.contains("unsupported dtype complex64"), "{err}");
    }

    #[test]
    fn f16_round_trips_through_f64() {
        let t = Tensor::from_f64_as(DType::F16, vec![3], &[0.5, -1.0, 2.0]).unwrap();
        assert_eq!(t.to_f64_vec(), vec![0.5, -1.0, 2.0]);
        assert!(Tensor::from_f64_as(DType::I32, vec![1], &[1.0]).is_none());
        let ints = Tensor::from_f64_values(DType::I16, vec![2], &[-3.7, 2.0]);
        assert_eq!(
            ints.data,
            [(-3i16).to_le_bytes(), 2i16.to_le_bytes()].concat()
        );
        let bools = Tensor::from_f64_values(DType::Bool, vec![3], &[0.0, -2.0, 0.5]);
        assert_eq!(bools.data, vec![0, 1, 1]);
    }
}
