//! `Dropout`, `SpatialDropout1D`, `AlphaDropout`, `GaussianNoise`, `GaussianDropout`,
//! `ActivityRegularization` and `Identity`: identities at inference. No node is
//! emitted; consumers read the input value directly (an `Identity` appears only when the
//! layer is itself a graph output).

use super::{expect_weights, propagates_since_keras_3, single_input};
use crate::error::BuildError;
use crate::graph::GraphBuilder;
use crate::registry::{LayerConverter, Masking, ValueRef};
use crate::shape::TensorInfo;
use crate::spec::Layer;

pub struct Identity;

impl LayerConverter for Identity {
    // Keras: `supports_masking`, and `call` ignores the mask; except Keras 2's `Identity`
    // layer, which did not support masking (its dropouts did).
    fn masking(&self, layer: &Layer) -> Masking {
        if layer.class_name == "Identity" {
            propagates_since_keras_3(layer)
        } else {
            Masking::Propagates
        }
    }

    fn infer(&self, layer: &Layer, inputs: &[TensorInfo]) -> Result<TensorInfo, BuildError> {
        expect_weights(layer, &[])?;
        Ok(single_input(layer, inputs)?.clone())
    }

    fn emit(
        &self,
        _layer: &Layer,
        inputs: &[ValueRef<'_>],
        _output: ValueRef<'_>,
        _g: &mut GraphBuilder,
    ) -> Result<String, BuildError> {
        Ok(inputs[0].name.to_string())
    }
}
