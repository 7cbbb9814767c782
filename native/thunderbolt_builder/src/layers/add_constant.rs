//! `AddConstant` (not a Keras class; the name the Keras importer uses for a constant tensor
//! added to a value, such as a precomputed positional encoding) → ONNX `Add` with the
//! constant stored as an initializer, so it never becomes a graph input. NumPy
//! broadcasting applies. One weight: `constant`, of the input's element type. Opset 13+.

use super::{expect_weights, require_weight_dtype, single_input};
use crate::error::BuildError;
use crate::graph::GraphBuilder;
use crate::registry::{LayerConverter, Masking, ValueRef};
use crate::shape::{broadcast, format_shape, static_dims, Dim, TensorInfo};
use crate::spec::Layer;
use crate::tensor::DType;

pub struct AddConstant;

impl LayerConverter for AddConstant {
    // A `keras.ops` addition, and Keras' operations drop masks.
    fn masking(&self, _layer: &Layer) -> Masking {
        Masking::Drops
    }

    fn infer(&self, layer: &Layer, inputs: &[TensorInfo]) -> Result<TensorInfo, BuildError> {
        let x = single_input(layer, inputs)?;
        expect_weights(layer, &["constant"])?;
        if x.dtype == DType::Bool {
            return Err(layer.dtype_error("input", x.dtype, "numeric types"));
        }
        require_weight_dtype(layer, 0, "constant", x.dtype)?;
        let constant: Vec<Dim> = static_dims(&layer.weights[0].shape);
        let shape = broadcast(&x.shape, &constant).ok_or_else(|| {
            super::weight_shape_error(
                layer,
                "constant",
                &layer.weights[0].shape,
                format!(
                    "a shape that broadcasts with the input shape {}",
                    format_shape(&x.shape)
                ),
            )
        })?;
        Ok(TensorInfo::new(x.dtype, shape))
    }

    fn emit(
        &self,
        layer: &Layer,
        inputs: &[ValueRef<'_>],
        output: ValueRef<'_>,
        g: &mut GraphBuilder,
    ) -> Result<String, BuildError> {
        let constant = g.initializer(&format!("{}/constant", layer.name), &layer.weights[0]);
        g.node_into("Add", &[inputs[0].name, &constant], output.name, vec![]);
        Ok(output.name.to_string())
    }
}
