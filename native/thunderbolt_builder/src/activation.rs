//! Keras activations (the `activation` config key of `Dense` and `Activation`) as ONNX ops.
//!
//! Semantics follow Keras 3 `keras.activations`: `leaky_relu` has slope 0.2, `hard_sigmoid`
//! is `relu6(x + 3) / 6` (in a layer of a Keras 2 file, config `"keras_2": true`, Keras 2's
//! `clip(0.2 x + 0.5, 0, 1)`), `gelu` is exact (erf) unless approximate, `selu` uses Keras'
//! full-precision constants.
//!
//! An activation is a name (`"relu"`), a Keras serialized function
//! (`{"class_name": "function", "config": "relu", ...}`), or an object with parameters:
//! `{"name": "gelu", "approximate": true}`, `{"name": "leaky_relu", "negative_slope": 0.1}`,
//! `{"name": "elu", "alpha": 0.5}`, `{"name": "softmax", "axis": 1}`.

use crate::error::BuildError;
use crate::graph::{attr_float, attr_int, GraphBuilder};
use crate::shape::{normalize_axis, TensorInfo};
use crate::spec::Layer;
use serde_json::Value;

/// Every activation name accepted, for error messages and docs.
pub const ACTIVATION_NAMES: &[&str] = &[
    "linear",
    "relu",
    "sigmoid",
    "tanh",
    "softmax",
    "softplus",
    "softsign",
    "elu",
    "selu",
    "gelu",
    "silu",
    "swish",
    "leaky_relu",
    "relu6",
    "hard_sigmoid",
    "hard_silu",
    "hard_swish",
    "exponential",
    "mish",
    "log_softmax",
];

const SELU_ALPHA: f64 = 1.673_263_242_354_377_3;
const SELU_SCALE: f64 = 1.050_700_987_355_480_5;

#[derive(Debug, Clone, PartialEq)]
pub enum Activation {
    Linear,
    Relu,
    Sigmoid,
    Tanh,
    Softmax {
        axis: i64,
    },
    Softplus,
    Softsign,
    Elu {
        alpha: f64,
    },
    Selu,
    Gelu {
        approximate: bool,
    },
    Silu,
    LeakyRelu {
        negative_slope: f64,
    },
    Relu6,
    /// `clip(slope * x + 0.5, 0, 1)`: slope 1/6 in Keras 3, 0.2 in Keras 2.
    HardSigmoid {
        slope: f64,
    },
    HardSilu,
    Exponential,
    Mish,
    LogSoftmax {
        axis: i64,
    },
}

impl Activation {
    /// Parses the value of an `activation` config key; absent or null means linear.
    pub fn parse(layer: &Layer, value: Option<&Value>) -> Result<Self, BuildError> {
        let Some(value) = value.filter(|v| !v.is_null()) else {
            return Ok(Activation::Linear);
        };
        let bad = |what: String| {
            layer.error(format!(
                "{what}; supported activations: {}",
                ACTIVATION_NAMES.join(", ")
            ))
        };
        let (name, params) = match value {
            Value::String(s) => (s.as_str(), None),
            Value::Object(map) => {
                let name = map
                    .get("name")
                    .and_then(Value::as_str)
                    .or_else(|| match map.get("class_name").and_then(Value::as_str) {
                        Some("function") => map.get("config").and_then(Value::as_str),
                        other => other,
                    })
                    .ok_or_else(|| bad(format!("cannot read activation {value}")))?;
                (name, Some(map))
            }
            other => return Err(bad(format!("cannot read activation {other}"))),
        };
        let num = |key: &str, default: f64| -> Result<f64, BuildError> {
            match params.and_then(|m| m.get(key)).filter(|v| !v.is_null()) {
                None => Ok(default),
                Some(v) => v.as_f64().filter(|x| x.is_finite()).ok_or_else(|| {
                    layer.error(format!(
                        "activation parameter {key:?} must be a number, got {v}"
                    ))
                }),
            }
        };
        let int = |key: &str, default: i64| -> Result<i64, BuildError> {
            match params.and_then(|m| m.get(key)).filter(|v| !v.is_null()) {
                None => Ok(default),
                Some(v) => v.as_i64().ok_or_else(|| {
                    layer.error(format!(
                        "activation parameter {key:?} must be an integer, got {v}"
                    ))
                }),
            }
        };
        let act = match name {
            "linear" => Activation::Linear,
            "relu" => Activation::Relu,
            "sigmoid" => Activation::Sigmoid,
            "tanh" => Activation::Tanh,
            "softmax" => Activation::Softmax {
                axis: int("axis", -1)?,
            },
            "softplus" => Activation::Softplus,
            "softsign" => Activation::Softsign,
            "elu" => Activation::Elu {
                alpha: num("alpha", 1.0)?,
            },
            "selu" => Activation::Selu,
            "gelu" => {
                let approximate = match params
                    .and_then(|m| m.get("approximate"))
                    .filter(|v| !v.is_null())
                {
                    None => false,
                    Some(v) => v.as_bool().ok_or_else(|| {
                        layer.error(format!(
                            "activation parameter \"approximate\" must be a boolean, got {v}"
                        ))
                    })?,
                };
                Activation::Gelu { approximate }
            }
            "silu" | "swish" => Activation::Silu,
            "leaky_relu" => Activation::LeakyRelu {
                negative_slope: num("negative_slope", 0.2)?,
            },
            "relu6" => Activation::Relu6,
            "hard_sigmoid" if crate::layers::saved_by_keras_2(layer) => {
                Activation::HardSigmoid { slope: 0.2 }
            }
            "hard_sigmoid" => Activation::HardSigmoid { slope: 1.0 / 6.0 },
            "hard_silu" | "hard_swish" => Activation::HardSilu,
            "exponential" => Activation::Exponential,
            "mish" => Activation::Mish,
            "log_softmax" => Activation::LogSoftmax {
                axis: int("axis", -1)?,
            },
            other => return Err(bad(format!("unknown activation {other:?}"))),
        };
        Ok(act)
    }

    pub fn is_linear(&self) -> bool {
        *self == Activation::Linear
    }

    /// Checks that the activation applies to a value of type `info`.
    pub fn check(&self, layer: &Layer, info: &TensorInfo) -> Result<(), BuildError> {
        if !info.dtype.is_float() {
            return Err(layer.dtype_error(
                "activation input",
                info.dtype,
                "float32, float64, float16",
            ));
        }
        if let Activation::Softmax { axis } | Activation::LogSoftmax { axis } = self {
            if normalize_axis(*axis, info.rank()).is_none() {
                return Err(layer.error(format!(
                    "activation axis {axis} is out of range for rank {}",
                    info.rank()
                )));
            }
        }
        Ok(())
    }

    /// Emits the activation of `x` (typed `info`, already checked) with its last node writing
    /// to `output`. Intermediate names start with `prefix`. A linear activation emits an
    /// `Identity`; callers that can avoid the node check [`Activation::is_linear`] first.
    pub fn emit(
        &self,
        g: &mut GraphBuilder,
        x: &str,
        info: &TensorInfo,
        prefix: &str,
        output: &str,
    ) {
        let dt = info.dtype;
        let unary = |g: &mut GraphBuilder, op: &str, attrs| g.node_into(op, &[x], output, attrs);
        match self {
            Activation::Linear => unary(g, "Identity", vec![]),
            Activation::Relu => unary(g, "Relu", vec![]),
            Activation::Sigmoid => unary(g, "Sigmoid", vec![]),
            Activation::Tanh => unary(g, "Tanh", vec![]),
            Activation::Softplus => unary(g, "Softplus", vec![]),
            Activation::Softsign => unary(g, "Softsign", vec![]),
            Activation::Exponential => unary(g, "Exp", vec![]),
            Activation::Mish => unary(g, "Mish", vec![]),
            Activation::HardSilu => unary(g, "HardSwish", vec![]),
            Activation::Elu { alpha } => unary(g, "Elu", vec![attr_float("alpha", *alpha as f32)]),
            Activation::LeakyRelu { negative_slope } => unary(
                g,
                "LeakyRelu",
                vec![attr_float("alpha", *negative_slope as f32)],
            ),
            Activation::Selu => unary(
                g,
                "Selu",
                vec![
                    attr_float("alpha", SELU_ALPHA as f32),
                    attr_float("gamma", SELU_SCALE as f32),
                ],
            ),
            Activation::HardSigmoid { slope } => unary(
                g,
                "HardSigmoid",
                vec![attr_float("alpha", *slope as f32), attr_float("beta", 0.5)],
            ),
            Activation::Softmax { axis } | Activation::LogSoftmax { axis } => {
                let op = if matches!(self, Activation::Softmax { .. }) {
                    "Softmax"
                } else {
                    "LogSoftmax"
                };
                let axis = normalize_axis(*axis, info.rank()).unwrap_or(0) as i64;
                unary(g, op, vec![attr_int("axis", axis)])
            }
            Activation::Relu6 => {
                let lo = g.scalar(&format!("{prefix}/relu6_min"), dt, 0.0);
                let hi = g.scalar(&format!("{prefix}/relu6_max"), dt, 6.0);
                g.node_into("Clip", &[x, &lo, &hi], output, vec![]);
            }
            Activation::Silu => {
                let s = g.node("Sigmoid", &[x], &format!("{prefix}/Sigmoid"), vec![]);
                g.node_into("Mul", &[x, &s], output, vec![]);
            }
            Activation::Gelu { approximate: false } => {
                // 0.5 * x * (1 + erf(x / sqrt(2)))
                let sqrt2 = g.scalar(&format!("{prefix}/sqrt2"), dt, std::f64::consts::SQRT_2);
                let one = g.scalar(&format!("{prefix}/one"), dt, 1.0);
                let half = g.scalar(&format!("{prefix}/half"), dt, 0.5);
                let d = g.node("Div", &[x, &sqrt2], &format!("{prefix}/Div"), vec![]);
                let e = g.node("Erf", &[&d], &format!("{prefix}/Erf"), vec![]);
                let a = g.node("Add", &[&e, &one], &format!("{prefix}/Add"), vec![]);
                let m = g.node("Mul", &[x, &a], &format!("{prefix}/Mul"), vec![]);
                g.node_into("Mul", &[&m, &half], output, vec![]);
            }
            Activation::Gelu { approximate: true } => {
                // 0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3)))
                let c = g.scalar(
                    &format!("{prefix}/sqrt_2_over_pi"),
                    dt,
                    (2.0 / std::f64::consts::PI).sqrt(),
                );
                let k = g.scalar(&format!("{prefix}/coeff"), dt, 0.044715);
                let one = g.scalar(&format!("{prefix}/one"), dt, 1.0);
                let half = g.scalar(&format!("{prefix}/half"), dt, 0.5);
                let x2 = g.node("Mul", &[x, x], &format!("{prefix}/Square"), vec![]);
                let x3 = g.node("Mul", &[&x2, x], &format!("{prefix}/Cube"), vec![]);
                let kx3 = g.node("Mul", &[&x3, &k], &format!("{prefix}/MulCoeff"), vec![]);
                let inner = g.node("Add", &[x, &kx3], &format!("{prefix}/Inner"), vec![]);
                let scaled = g.node("Mul", &[&inner, &c], &format!("{prefix}/Scale"), vec![]);
                let t = g.node("Tanh", &[&scaled], &format!("{prefix}/Tanh"), vec![]);
                let a = g.node("Add", &[&t, &one], &format!("{prefix}/Add"), vec![]);
                let m = g.node("Mul", &[x, &a], &format!("{prefix}/Mul"), vec![]);
                g.node_into("Mul", &[&m, &half], output, vec![]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::DType;
    use serde_json::json;

    fn layer() -> Layer {
        Layer {
            name: "act".into(),
            class_name: "Activation".into(),
            config: json!({}),
            inbound: vec![],
            weights: vec![],
        }
    }

    #[test]
    fn parses_every_listed_name() {
        for name in ACTIVATION_NAMES {
            Activation::parse(&layer(), Some(&json!(name))).unwrap();
        }
        assert_eq!(
            Activation::parse(&layer(), None).unwrap(),
            Activation::Linear
        );
        assert_eq!(
            Activation::parse(&layer(), Some(&json!("swish"))).unwrap(),
            Activation::Silu
        );
    }

    #[test]
    fn hard_sigmoid_follows_the_keras_that_saved_the_layer() {
        let hard = Some(json!("hard_sigmoid"));
        assert_eq!(
            Activation::parse(&layer(), hard.as_ref()).unwrap(),
            Activation::HardSigmoid { slope: 1.0 / 6.0 }
        );
        let mut keras_2 = layer();
        keras_2.config = json!({"keras_2": true});
        assert_eq!(
            Activation::parse(&keras_2, hard.as_ref()).unwrap(),
            Activation::HardSigmoid { slope: 0.2 }
        );
    }

    #[test]
    fn parses_object_forms() {
        let gelu = json!({"name": "gelu", "approximate": true});
        assert_eq!(
            Activation::parse(&layer(), Some(&gelu)).unwrap(),
            Activation::Gelu { approximate: true }
        );
        let keras_fn = json!({"module": "keras.activations", "class_name": "function", "config": "tanh", "registered_name": "function"});
        assert_eq!(
            Activation::parse(&layer(), Some(&keras_fn)).unwrap(),
            Activation::Tanh
        );
        let leaky = json!({"name": "leaky_relu", "negative_slope": 0.1});
        assert_eq!(
            Activation::parse(&layer(), Some(&leaky)).unwrap(),
            Activation::LeakyRelu {
                negative_slope: 0.1
            }
        );
    }

    #[test]
    fn unknown_activation_names_the_layer() {
        let err = Activation::parse(&layer(), Some(&json!("swishy")))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("layer \"act\"") && err.contains("unknown activation \"swishy\""),
            "{err}"
        );
    }

    #[test]
    fn rejects_integer_inputs_and_bad_axes() {
        let info = TensorInfo::new(DType::I32, vec![None, Some(3)]);
        assert!(Activation::Relu.check(&layer(), &info).is_err());
        let info = TensorInfo::new(DType::F32, vec![None, Some(3)]);
        assert!(Activation::Softmax { axis: 2 }
            .check(&layer(), &info)
            .is_err());
        assert!(Activation::Softmax { axis: -2 }
            .check(&layer(), &info)
            .is_ok());
    }

    #[test]
    fn composite_activations_end_in_the_requested_output() {
        let info = TensorInfo::new(DType::F32, vec![None, Some(3)]);
        for act in [
            Activation::Gelu { approximate: true },
            Activation::Gelu { approximate: false },
            Activation::Silu,
            Activation::Relu6,
        ] {
            let mut g = GraphBuilder::new();
            act.emit(&mut g, "x", &info, "d", "y");
            assert_eq!(g.nodes.last().unwrap().output, vec!["y".to_string()]);
        }
    }
}
