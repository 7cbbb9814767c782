//! `PReLU` → ONNX `PRelu`: `x` where `x >= 0`, `alpha * x` elsewhere, with a learned
//! `alpha`. Keras gives `alpha` the input's shape without the batch axis, with 1 on each
//! of its `shared_axes`, which is exactly the trailing broadcast `PRelu` takes.

use super::{expect_weights, require_float, require_weight_dtype, single_input};
use crate::error::BuildError;
use crate::graph::GraphBuilder;
use crate::registry::{LayerConverter, Masking, ValueRef};
use crate::shape::{format_shape, TensorInfo};
use crate::spec::Layer;

pub struct PReLU;

impl LayerConverter for PReLU {
    // Keras: `supports_masking`, and `call` ignores the mask.
    fn masking(&self, _layer: &Layer) -> Masking {
        Masking::Propagates
    }

    fn infer(&self, layer: &Layer, inputs: &[TensorInfo]) -> Result<TensorInfo, BuildError> {
        let x = single_input(layer, inputs)?;
        require_float(layer, "input", x.dtype)?;
        expect_weights(layer, &["alpha"])?;
        require_weight_dtype(layer, 0, "alpha", x.dtype)?;
        let alpha = &layer.weights[0].shape;
        let features = x.shape.get(1..).unwrap_or_default();
        let fits = alpha.len() == features.len()
            && alpha
                .iter()
                .zip(features)
                .all(|(&a, &d)| a == 1 || d == Some(a));
        if !fits {
            let expected = format!(
                "the input shape without its batch axis, {}, with 1 on shared axes",
                format_shape(features)
            );
            return Err(super::weight_shape_error(layer, "alpha", alpha, expected));
        }
        Ok(x.clone())
    }

    fn emit(
        &self,
        layer: &Layer,
        inputs: &[ValueRef<'_>],
        output: ValueRef<'_>,
        g: &mut GraphBuilder,
    ) -> Result<String, BuildError> {
        let alpha = g.initializer(&format!("{}/alpha", layer.name), &layer.weights[0]);
        g.node_into("PRelu", &[inputs[0].name, &alpha], output.name, vec![]);
        Ok(output.name.to_string())
    }
}
