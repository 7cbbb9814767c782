//! Keras' random image augmentations at inference, where they change no value:
//! `RandomFlip`, `RandomRotation`, `RandomZoom` and `RandomTranslation` give their input as
//! float32 (a `Cast` unless it already is), and `RandomContrast` and `RandomBrightness` give
//! float input as float32. A model trained with its augmentation inside, as Keras' image
//! tutorials build them, imports as the model that serves.

use super::{cast_to, expect_weights, single_input};
use crate::error::BuildError;
use crate::graph::GraphBuilder;
use crate::registry::{LayerConverter, Masking, ValueRef};
use crate::shape::TensorInfo;
use crate::spec::Layer;
use crate::tensor::DType;

/// An augmentation layer at inference. With `casts_integers`, integer images become float32
/// (the geometric layers cast before they would transform); without, Keras 3 hands integer
/// images on unchanged while declaring float32, so they are refused.
pub struct Augmentation {
    pub casts_integers: bool,
}

impl LayerConverter for Augmentation {
    // Keras: no `supports_masking`, so the mask ends here (Keras warns).
    fn masking(&self, _layer: &Layer) -> Masking {
        Masking::Drops
    }

    fn infer(&self, layer: &Layer, inputs: &[TensorInfo]) -> Result<TensorInfo, BuildError> {
        let x = single_input(layer, inputs)?;
        expect_weights(layer, &[])?;
        if !self.casts_integers && !x.dtype.is_float() {
            return Err(layer.dtype_error(
                "input",
                x.dtype,
                "a float type (Keras passes integer images through unchanged at inference \
                 while declaring float32; rescale or cast them first)",
            ));
        }
        Ok(TensorInfo::new(DType::F32, x.shape.clone()))
    }

    fn emit(
        &self,
        layer: &Layer,
        inputs: &[ValueRef<'_>],
        _output: ValueRef<'_>,
        g: &mut GraphBuilder,
    ) -> Result<String, BuildError> {
        let x = inputs[0];
        Ok(cast_to(g, layer, x.name, x.info.dtype, DType::F32))
    }
}
