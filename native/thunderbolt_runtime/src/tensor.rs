use crate::element_type::ElementType;
use crate::error::{Result, RuntimeError};

/// A tensor whose bytes are borrowed, not owned: the NIF hands ONNX Runtime
/// a view of the BEAM binary instead of copying it.
#[derive(Clone, Copy, Debug)]
pub struct TensorView<'a> {
    ty: ElementType,
    shape: &'a [i64],
    data: &'a [u8],
}

impl<'a> TensorView<'a> {
    /// Checks that `shape` is non-negative, that its element count does not
    /// overflow, and that `data` holds exactly that many elements.
    pub fn new(ty: ElementType, shape: &'a [i64], data: &'a [u8]) -> Result<Self> {
        let size = ty.byte_size().ok_or_else(|| {
            RuntimeError::Unsupported("string tensors are not supported as inputs".into())
        })?;
        let mut count: usize = 1;
        for &dim in shape {
            let dim = usize::try_from(dim).map_err(|_| {
                RuntimeError::InvalidInput(format!("shape {shape:?} has a negative dimension"))
            })?;
            count = count.checked_mul(dim).ok_or_else(|| {
                RuntimeError::InvalidInput(format!("shape {shape:?} overflows the element count"))
            })?;
        }
        let expected = count.checked_mul(size).ok_or_else(|| {
            RuntimeError::InvalidInput(format!("shape {shape:?} overflows the byte size"))
        })?;
        if expected != data.len() {
            return Err(RuntimeError::InvalidInput(format!(
                "a {} tensor of shape {shape:?} needs {expected} bytes, got {}",
                ty.name(),
                data.len()
            )));
        }
        Ok(Self { ty, shape, data })
    }

    pub fn element_type(&self) -> ElementType {
        self.ty
    }

    pub fn shape(&self) -> &'a [i64] {
        self.shape
    }

    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// Whether the bytes are aligned for their element type, so that ONNX
    /// Runtime may read them in place. Sub-binaries can start anywhere.
    pub(crate) fn is_aligned(&self) -> bool {
        let align = self.ty.byte_size().unwrap_or(1);
        (self.data.as_ptr() as usize).is_multiple_of(align)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_matching_buffer() {
        let data = [0u8; 24];
        let view = TensorView::new(ElementType::F32, &[2, 3], &data).unwrap();
        assert_eq!(view.shape(), &[2, 3]);
    }

    #[test]
    fn rejects_size_mismatch_negative_and_overflowing_shapes() {
        let data = [0u8; 8];
        let err = TensorView::new(ElementType::F32, &[3], &data).unwrap_err();
        assert!(err.to_string().contains("needs 12 bytes, got 8"), "{err}");
        assert!(TensorView::new(ElementType::F32, &[-1, 2], &data).is_err());
        let huge = [i64::MAX, i64::MAX];
        assert!(TensorView::new(ElementType::U8, &huge, &data)
            .unwrap_err()
            .to_string()
            .contains("overflows"));
    }

    #[test]
    fn empty_tensors_are_valid() {
        assert!(TensorView::new(ElementType::S64, &[0, 40], &[]).is_ok());
    }
}
