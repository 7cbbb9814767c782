use ort::sys::ONNXTensorElementDataType as Onnx;

/// A tensor element type, named as Nx names them (`f32`, `s64`, ...).
///
/// `Bool` travels as one byte per element, like Nx's `{:u, 8}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ElementType {
    F16,
    BF16,
    F32,
    F64,
    S8,
    S16,
    S32,
    S64,
    U8,
    U16,
    U32,
    U64,
    Bool,
    String,
}

impl ElementType {
    pub const ALL: [ElementType; 14] = [
        Self::F16,
        Self::BF16,
        Self::F32,
        Self::F64,
        Self::S8,
        Self::S16,
        Self::S32,
        Self::S64,
        Self::U8,
        Self::U16,
        Self::U32,
        Self::U64,
        Self::Bool,
        Self::String,
    ];

    /// Bytes per element; `None` for strings, which have no fixed width.
    pub fn byte_size(self) -> Option<usize> {
        Some(match self {
            Self::S8 | Self::U8 | Self::Bool => 1,
            Self::F16 | Self::BF16 | Self::S16 | Self::U16 => 2,
            Self::F32 | Self::S32 | Self::U32 => 4,
            Self::F64 | Self::S64 | Self::U64 => 8,
            Self::String => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::F16 => "f16",
            Self::BF16 => "bf16",
            Self::F32 => "f32",
            Self::F64 => "f64",
            Self::S8 => "s8",
            Self::S16 => "s16",
            Self::S32 => "s32",
            Self::S64 => "s64",
            Self::U8 => "u8",
            Self::U16 => "u16",
            Self::U32 => "u32",
            Self::U64 => "u64",
            Self::Bool => "bool",
            Self::String => "string",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Whether data of type `given` may be fed to an input declared as `self`.
    /// A `u8` tensor feeds a `bool` input because Nx has no boolean type.
    pub fn accepts(self, given: ElementType) -> bool {
        self == given || (self == Self::Bool && given == Self::U8)
    }

    pub(crate) fn to_onnx(self) -> Onnx {
        match self {
            Self::F16 => Onnx::ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16,
            Self::BF16 => Onnx::ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16,
            Self::F32 => Onnx::ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT,
            Self::F64 => Onnx::ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE,
            Self::S8 => Onnx::ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8,
            Self::S16 => Onnx::ONNX_TENSOR_ELEMENT_DATA_TYPE_INT16,
            Self::S32 => Onnx::ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32,
            Self::S64 => Onnx::ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64,
            Self::U8 => Onnx::ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8,
            Self::U16 => Onnx::ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT16,
            Self::U32 => Onnx::ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT32,
            Self::U64 => Onnx::ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT64,
            Self::Bool => Onnx::ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL,
            Self::String => Onnx::ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING,
        }
    }

    pub(crate) fn from_onnx(t: Onnx) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.to_onnx() == t)
    }

    pub(crate) fn from_ort(t: ort::value::TensorElementType) -> Option<Self> {
        Self::from_onnx(t.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in ElementType::ALL {
            assert_eq!(ElementType::from_name(t.name()), Some(t));
            assert_eq!(ElementType::from_onnx(t.to_onnx()), Some(t));
        }
        assert_eq!(ElementType::from_name("f128"), None);
    }

    #[test]
    fn bool_inputs_accept_u8_but_not_the_reverse() {
        assert!(ElementType::Bool.accepts(ElementType::U8));
        assert!(!ElementType::U8.accepts(ElementType::Bool));
        assert!(!ElementType::F32.accepts(ElementType::F64));
    }

    #[test]
    fn sizes() {
        assert_eq!(ElementType::BF16.byte_size(), Some(2));
        assert_eq!(ElementType::S64.byte_size(), Some(8));
        assert_eq!(ElementType::String.byte_size(), None);
    }
}
