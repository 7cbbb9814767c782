//! `Dense` → ONNX `MatMul` (+ `Add` for the bias) + the activation's ops (opset 13+;
//! `Mish` needs 18).
//!
//! Keras layout: the kernel is `[input_dim, units]`, so `x @ kernel` needs no transpose; on
//! inputs of rank > 2 Keras contracts the last axis, which is what `MatMul` does too. Every
//! activation in [`crate::activation`] is supported.

use super::{
    expect_weight_shape, expect_weights, require_float, require_weight_dtype, single_input,
    weight_shape_error,
};
use crate::activation::Activation;
use crate::config::Config;
use crate::error::BuildError;
use crate::graph::GraphBuilder;
use crate::registry::{LayerConverter, Masking, ValueRef};
use crate::shape::{format_shape, TensorInfo};
use crate::spec::Layer;
use onnx_protobuf::AttributeProto;

pub struct Dense;

impl LayerConverter for Dense {
    // Keras: `supports_masking`, and `call` ignores the mask.
    fn masking(&self, _layer: &Layer) -> Masking {
        Masking::Propagates
    }

    fn infer(&self, layer: &Layer, inputs: &[TensorInfo]) -> Result<TensorInfo, BuildError> {
        let x = single_input(layer, inputs)?;
        let cfg = Config::of(layer)?;
        require_float(layer, "input", x.dtype)?;
        let use_bias = cfg.bool_or("use_bias", true)?;
        expect_weights(
            layer,
            if use_bias {
                &["kernel", "bias"]
            } else {
                &["kernel"]
            },
        )?;
        let Some(&Some(in_dim)) = x.shape.last() else {
            return Err(layer.error(format!(
                "the last dimension of the input must be static, got shape {}",
                format_shape(&x.shape)
            )));
        };
        let kernel = &layer.weights[0];
        let units = cfg
            .opt_usize("units")?
            .or(kernel.shape.get(1).copied())
            .unwrap_or(0);
        if kernel.shape.as_slice() != [in_dim, units] {
            return Err(weight_shape_error(
                layer,
                "kernel",
                &kernel.shape,
                format!(
                    "({in_dim}, {units}) = (last dimension of input shape {}, units)",
                    format_shape(&x.shape)
                ),
            ));
        }
        require_weight_dtype(layer, 0, "kernel", x.dtype)?;
        if use_bias {
            expect_weight_shape(layer, 1, "bias", &[units])?;
            require_weight_dtype(layer, 1, "bias", x.dtype)?;
        }
        let mut shape = x.shape.clone();
        *shape.last_mut().expect("rank checked above") = Some(units);
        let out = TensorInfo::new(x.dtype, shape);
        Activation::parse(layer, cfg.get("activation"))?.check(layer, &out)?;
        Ok(out)
    }

    fn emit(
        &self,
        layer: &Layer,
        inputs: &[ValueRef<'_>],
        output: ValueRef<'_>,
        g: &mut GraphBuilder,
    ) -> Result<String, BuildError> {
        project(layer, "MatMul", vec![], inputs[0].name, output, g)
    }
}

/// `activation(op(x, kernel) + bias)` into `output`, from the layer's `kernel` and optional
/// `bias` weights and its `activation`: `Dense` with `MatMul`, `EinsumDense` with `MatMul`
/// or `Einsum`.
pub(crate) fn project(
    layer: &Layer,
    op: &str,
    attrs: Vec<AttributeProto>,
    x: &str,
    output: ValueRef<'_>,
    g: &mut GraphBuilder,
) -> Result<String, BuildError> {
    let activation = Activation::parse(layer, Config::of(layer)?.get("activation"))?;
    let name = &layer.name;
    let kernel = g.initializer(&format!("{name}/kernel"), &layer.weights[0]);
    let pre = if activation.is_linear() {
        output.name.to_string()
    } else {
        g.fresh(&format!("{name}/pre_activation"))
    };
    if let Some(bias) = layer.weights.get(1) {
        let bias = g.initializer(&format!("{name}/bias"), bias);
        let product = g.node(op, &[x, &kernel], &format!("{name}/{op}"), attrs);
        g.node_into("Add", &[&product, &bias], &pre, vec![]);
    } else {
        g.node_into(op, &[x, &kernel], &pre, attrs);
    }
    if !activation.is_linear() {
        activation.emit(g, &pre, output.info, name, output.name);
    }
    Ok(output.name.to_string())
}
