//! `EinsumDense` → ONNX `Einsum` (or `MatMul` when the equation is `x @ kernel` over the
//! last axis), `Add` for the bias, then the activation's ops, as Keras computes
//! `activation(einsum(equation, x, kernel) + bias)`.
//!
//! Keras saves the kernel in the shape the equation's second term gives it (with LoRA
//! merged in) and the bias shaped to broadcast against the output from its first biased
//! axis, so both are used as saved. Quantized layers (`int8`, `int4`, `float8`, `gptq`)
//! save other variables and are refused by the weight check.

use super::dense::project;
use super::{
    expect_weights, require_float, require_weight_dtype, single_input, weight_shape_error,
};
use crate::activation::Activation;
use crate::config::Config;
use crate::einsum::Equation;
use crate::error::BuildError;
use crate::graph::{attr_string, GraphBuilder};
use crate::registry::{LayerConverter, Masking, ValueRef};
use crate::shape::{broadcast, format_shape, static_dims, TensorInfo};
use crate::spec::Layer;

pub struct EinsumDense;

fn equation(layer: &Layer) -> Result<Equation, BuildError> {
    let cfg = Config::of(layer)?;
    let text = cfg
        .get("equation")
        .and_then(|v| v.as_str())
        .ok_or_else(|| layer.error("config key \"equation\" (a string) is required"))?;
    Equation::parse(text, 2).map_err(|why| layer.error(why))
}

fn has_bias(layer: &Layer) -> Result<bool, BuildError> {
    Ok(match Config::of(layer)?.get("bias_axes") {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::String(axes)) => !axes.is_empty(),
        Some(other) => {
            return Err(layer.error(format!(
                "config key \"bias_axes\" must be a string of output labels, got {other}"
            )))
        }
    })
}

impl LayerConverter for EinsumDense {
    // Keras: no `supports_masking` and no `compute_mask`, so the mask ends here.
    fn masking(&self, _layer: &Layer) -> Masking {
        Masking::Drops
    }

    fn infer(&self, layer: &Layer, inputs: &[TensorInfo]) -> Result<TensorInfo, BuildError> {
        let x = single_input(layer, inputs)?;
        require_float(layer, "input", x.dtype)?;
        let bias = has_bias(layer)?;
        expect_weights(
            layer,
            if bias {
                &["kernel", "bias"]
            } else {
                &["kernel"]
            },
        )?;
        let equation = equation(layer)?;
        let kernel = &layer.weights[0];
        require_weight_dtype(layer, 0, "kernel", x.dtype)?;
        let kernel_dims = static_dims(&kernel.shape);
        let shape = equation
            .output_shape(&[&x.shape, &kernel_dims])
            .map_err(|why| {
                layer.error(format!(
                    "equation {:?} with input {} and kernel {}: {why}",
                    equation.render(),
                    format_shape(&x.shape),
                    format_shape(&kernel_dims)
                ))
            })?;
        if bias {
            require_weight_dtype(layer, 1, "bias", x.dtype)?;
            let bias_dims = static_dims(&layer.weights[1].shape);
            if broadcast(&shape, &bias_dims).as_deref() != Some(shape.as_slice()) {
                return Err(weight_shape_error(
                    layer,
                    "bias",
                    &layer.weights[1].shape,
                    format!(
                        "a shape that broadcasts to the output {}",
                        format_shape(&shape)
                    ),
                ));
            }
        }
        let out = TensorInfo::new(x.dtype, shape);
        Activation::parse(layer, Config::of(layer)?.get("activation"))?.check(layer, &out)?;
        Ok(out)
    }

    fn emit(
        &self,
        layer: &Layer,
        inputs: &[ValueRef<'_>],
        output: ValueRef<'_>,
        g: &mut GraphBuilder,
    ) -> Result<String, BuildError> {
        let equation = equation(layer)?;
        if equation.is_matmul() {
            project(layer, "MatMul", vec![], inputs[0].name, output, g)
        } else {
            let attrs = vec![attr_string("equation", &equation.render())];
            project(layer, "Einsum", attrs, inputs[0].name, output, g)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::{DType, Tensor};
    use serde_json::json;

    fn layer(config: serde_json::Value, weights: Vec<Tensor>) -> Layer {
        Layer {
            name: "proj".into(),
            class_name: "EinsumDense".into(),
            config,
            inbound: vec!["x".into()],
            weights,
        }
    }

    fn zeros(shape: &[usize]) -> Tensor {
        let n = shape.iter().product();
        Tensor::from_f64_values(DType::F32, shape.to_vec(), &vec![0.0; n])
    }

    fn infer(config: serde_json::Value, weights: Vec<Tensor>) -> Result<TensorInfo, String> {
        let x = TensorInfo::new(DType::F32, vec![None, Some(5), Some(8)]);
        EinsumDense
            .infer(&layer(config, weights), &[x])
            .map_err(|e| e.to_string())
    }

    #[test]
    fn shapes_follow_the_equation() {
        let heads = json!({"equation": "abc,cde->abde", "bias_axes": "de"});
        let out = infer(heads, vec![zeros(&[8, 2, 3]), zeros(&[2, 3])]).unwrap();
        assert_eq!(out.shape, [None, Some(5), Some(2), Some(3)]);
        let bias_from_d = json!({"equation": "abc,bd->adc", "bias_axes": "d"});
        let out = infer(bias_from_d, vec![zeros(&[5, 3]), zeros(&[3, 1])]).unwrap();
        assert_eq!(out.shape, [None, Some(3), Some(8)]);
    }

    #[test]
    fn malformed_layers_are_refused_with_the_reason() {
        let plain = json!({"equation": "abc,cd->abd"});
        let err = infer(plain.clone(), vec![zeros(&[7, 4])]).unwrap_err();
        assert!(
            err.contains("label 'c' has size 8 in one operand and 7"),
            "{err}"
        );
        // A quantized layer saves a kernel scale too.
        let err = infer(plain, vec![zeros(&[8, 4]), zeros(&[4])]).unwrap_err();
        assert!(
            err.contains("expects 1 weight tensor(s) [kernel], got 2"),
            "{err}"
        );
        let biased = json!({"equation": "abc,cd->abd", "bias_axes": "d"});
        let err = infer(biased, vec![zeros(&[8, 4]), zeros(&[5])]).unwrap_err();
        assert!(
            err.contains("broadcasts to the output (None, 5, 4)"),
            "{err}"
        );
        let err = infer(json!({"bias_axes": null}), vec![zeros(&[8, 4])]).unwrap_err();
        assert!(err.contains("\"equation\""), "{err}");
        let err = infer(json!({"equation": "abc->ab"}), vec![zeros(&[8, 4])]).unwrap_err();
        assert!(err.contains("1 input term(s) for 2 operand(s)"), "{err}");
        let bad_axes = json!({"equation": "abc,cd->abd", "bias_axes": 3});
        let err = infer(bad_axes, vec![zeros(&[8, 4])]).unwrap_err();
        assert!(err.contains("bias_axes"), "{err}");
    }
}
