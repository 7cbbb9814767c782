//! The Keras activation layer classes whose parameters live in the layer's config:
//! `ReLU` (`max_value`, `negative_slope`, `threshold`), `LeakyReLU` (`negative_slope`,
//! default 0.3; Keras 2 files call it `alpha`) and `ELU` (`alpha`, default 1.0).
//!
//! `ReLU` follows Keras 3's `ReLU.static_call` step by step, since its parameters
//! interact: with a `threshold` (at least 0), values at or below it become 0 before `max_value`
//! clips to `[0, max_value]`, and `negative_slope * relu(threshold - x)` is then
//! subtracted. The common cases are single ops: plain `Relu`, `Clip` for a
//! `max_value` alone, `LeakyRelu` for a slope alone.

use super::{cast_to, expect_weights, require_float, single_input};
use crate::activation::Activation;
use crate::config::Config;
use crate::error::BuildError;
use crate::graph::GraphBuilder;
use crate::registry::{LayerConverter, Masking, ValueRef};
use crate::shape::TensorInfo;
use crate::spec::Layer;
use crate::tensor::DType;

pub enum ActivationClass {
    ReLU,
    LeakyReLU,
    ELU,
}

/// `ReLU`'s parameters, checked as Keras checks them.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ReluParams {
    max_value: Option<f64>,
    negative_slope: f64,
    threshold: f64,
}

fn relu_params(layer: &Layer) -> Result<ReluParams, BuildError> {
    let cfg = Config::of(layer)?;
    let max_value = match cfg.get("max_value") {
        None => None,
        Some(_) => Some(cfg.f64_or("max_value", 0.0)?),
    };
    let negative_slope = cfg.f64_or("negative_slope", 0.0)?;
    let threshold = cfg.f64_or("threshold", 0.0)?;
    if max_value.is_some_and(|m| m < 0.0) {
        return Err(layer.error(format!(
            "max_value must be at least 0, got {}",
            max_value.unwrap_or_default()
        )));
    }
    if negative_slope < 0.0 {
        return Err(layer.error(format!(
            "negative_slope must be at least 0, got {negative_slope}"
        )));
    }
    if threshold < 0.0 {
        return Err(layer.error(format!("threshold must be at least 0, got {threshold}")));
    }
    Ok(ReluParams {
        max_value,
        negative_slope,
        threshold,
    })
}

impl ActivationClass {
    /// The equivalent `Activation` for `LeakyReLU` and `ELU`.
    fn activation(&self, layer: &Layer) -> Result<Activation, BuildError> {
        let cfg = Config::of(layer)?;
        Ok(match self {
            ActivationClass::LeakyReLU => {
                let slope = match cfg.get("negative_slope") {
                    Some(_) => cfg.f64_or("negative_slope", 0.3)?,
                    None => cfg.f64_or("alpha", 0.3)?,
                };
                if slope < 0.0 {
                    return Err(
                        layer.error(format!("negative_slope must be at least 0, got {slope}"))
                    );
                }
                Activation::LeakyRelu {
                    negative_slope: slope,
                }
            }
            ActivationClass::ELU => Activation::Elu {
                alpha: cfg.f64_or("alpha", 1.0)?,
            },
            ActivationClass::ReLU => Activation::Relu,
        })
    }
}

impl LayerConverter for ActivationClass {
    // Keras: `supports_masking`, and `call` ignores the mask.
    fn masking(&self, _layer: &Layer) -> Masking {
        Masking::Propagates
    }

    fn infer(&self, layer: &Layer, inputs: &[TensorInfo]) -> Result<TensorInfo, BuildError> {
        let x = single_input(layer, inputs)?;
        expect_weights(layer, &[])?;
        require_float(layer, "input", x.dtype)?;
        match self {
            ActivationClass::ReLU => {
                relu_params(layer)?;
            }
            _ => {
                self.activation(layer)?;
            }
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
        let (x, info) = (inputs[0].name, inputs[0].info);
        match self {
            ActivationClass::ReLU => {
                emit_relu(g, &relu_params(layer)?, x, info, layer, output.name)
            }
            _ => self
                .activation(layer)?
                .emit(g, x, info, &layer.name, output.name),
        }
        Ok(output.name.to_string())
    }
}

fn emit_relu(
    g: &mut GraphBuilder,
    p: &ReluParams,
    x: &str,
    info: &TensorInfo,
    layer: &Layer,
    output: &str,
) {
    let dt = info.dtype;
    let prefix = &layer.name;
    let slope = p.negative_slope;
    if slope != 0.0 && p.max_value.is_none() && p.threshold == 0.0 {
        let act = Activation::LeakyRelu {
            negative_slope: slope,
        };
        return act.emit(g, x, info, prefix, output);
    }
    // Each step writes to `output` when it is the last one.
    let clip = p.max_value.filter(|&m| !(p.threshold == 0.0 && m == 6.0));
    let last_positive = clip.is_none() && slope == 0.0;
    let positive_out = |g: &mut GraphBuilder, step: &str| {
        if last_positive {
            output.to_string()
        } else {
            g.fresh(&format!("{prefix}/{step}"))
        }
    };
    let mut y = if p.threshold != 0.0 {
        let t = g.scalar(&format!("{prefix}/threshold"), dt, p.threshold);
        let above = g.node("Greater", &[x, &t], &format!("{prefix}/Greater"), vec![]);
        let mask = cast_to(g, layer, &above, DType::Bool, dt);
        let out = positive_out(g, "Mul");
        g.node_into("Mul", &[x, &mask], &out, vec![]);
        out
    } else if p.max_value == Some(6.0) {
        let out = positive_out(g, "Relu6");
        Activation::Relu6.emit(g, x, info, prefix, &out);
        out
    } else {
        let out = positive_out(g, "Relu");
        g.node_into("Relu", &[x], &out, vec![]);
        out
    };
    if let Some(max) = clip {
        let lo = g.scalar(&format!("{prefix}/clip_min"), dt, 0.0);
        let hi = g.scalar(&format!("{prefix}/clip_max"), dt, max);
        let out = if slope == 0.0 {
            output.to_string()
        } else {
            g.fresh(&format!("{prefix}/Clip"))
        };
        g.node_into("Clip", &[&y, &lo, &hi], &out, vec![]);
        y = out;
    }
    if slope != 0.0 {
        // negative_slope * relu(threshold - x), subtracted.
        let shifted = if p.threshold != 0.0 {
            let t = g.scalar(&format!("{prefix}/threshold_neg"), dt, p.threshold);
            g.node("Sub", &[&t, x], &format!("{prefix}/Sub"), vec![])
        } else {
            g.node("Neg", &[x], &format!("{prefix}/Neg"), vec![])
        };
        let negative = g.node("Relu", &[&shifted], &format!("{prefix}/NegRelu"), vec![]);
        let s = g.scalar(&format!("{prefix}/negative_slope"), dt, slope);
        let scaled = g.node("Mul", &[&negative, &s], &format!("{prefix}/Slope"), vec![]);
        g.node_into("Sub", &[&y, &scaled], output, vec![]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::DType;
    use serde_json::json;

    fn layer(class: &str, config: serde_json::Value) -> Layer {
        Layer {
            name: "r".into(),
            class_name: class.into(),
            config,
            inbound: vec!["x".into()],
            weights: vec![],
        }
    }

    fn ops(config: serde_json::Value) -> Vec<String> {
        let l = layer("ReLU", config);
        let info = TensorInfo::new(DType::F32, vec![None, Some(3)]);
        let mut g = GraphBuilder::new();
        emit_relu(&mut g, &relu_params(&l).unwrap(), "x", &info, &l, "y");
        assert_eq!(g.nodes.last().unwrap().output, vec!["y".to_string()]);
        g.nodes.iter().map(|n| n.op_type.clone()).collect()
    }

    #[test]
    fn relu_uses_one_op_where_keras_does() {
        assert_eq!(ops(json!({})), ["Relu"]);
        assert_eq!(ops(json!({"max_value": 6.0})), ["Clip"]);
        assert_eq!(ops(json!({"max_value": 2.5})), ["Relu", "Clip"]);
        assert_eq!(ops(json!({"negative_slope": 0.1})), ["LeakyRelu"]);
        assert_eq!(
            ops(json!({"threshold": 0.5, "max_value": 3.0, "negative_slope": 0.1})),
            ["Greater", "Cast", "Mul", "Clip", "Sub", "Relu", "Mul", "Sub"]
        );
    }

    #[test]
    fn relu_refuses_what_keras_refuses() {
        let err = relu_params(&layer("ReLU", json!({"max_value": -1.0})))
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_value must be at least 0"), "{err}");
        let err = relu_params(&layer("ReLU", json!({"negative_slope": -0.5})))
            .unwrap_err()
            .to_string();
        assert!(err.contains("negative_slope must be at least 0"), "{err}");
        let err = relu_params(&layer("ReLU", json!({"threshold": -0.5})))
            .unwrap_err()
            .to_string();
        assert!(err.contains("threshold must be at least 0"), "{err}");
        let err = ActivationClass::LeakyReLU
            .activation(&layer("LeakyReLU", json!({"negative_slope": -1})))
            .unwrap_err()
            .to_string();
        assert!(err.contains("negative_slope must be at least 0"), "{err}");
    }

    #[test]
    fn leaky_relu_reads_the_keras_2_name_too() {
        let keras2 = layer("LeakyReLU", json!({"alpha": 0.25}));
        assert_eq!(
            ActivationClass::LeakyReLU.activation(&keras2).unwrap(),
            Activation::LeakyRelu {
                negative_slope: 0.25
            }
        );
        let default = layer("LeakyReLU", json!({}));
        assert_eq!(
            ActivationClass::LeakyReLU.activation(&default).unwrap(),
            Activation::LeakyRelu {
                negative_slope: 0.3
            }
        );
    }
}
