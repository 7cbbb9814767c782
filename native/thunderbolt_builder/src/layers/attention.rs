//! `Attention` (Luong-style) and `AdditiveAttention` (Bahdanau-style) → the scores, then
//! `Softmax` over the value steps and `MatMul` with the value, as Keras computes them:
//!
//! - `Attention`, `score_mode="dot"`: `MatMul(query, Transpose(key))`, times `scale` with
//!   `use_scale`; `score_mode="concat"`: `concat_score_weight · ReduceSum(Tanh(scale ·
//!   (query[:, :, None] + key[:, None])), -1)` (no `scale` without `use_scale`);
//! - `AdditiveAttention`: `ReduceSum(scale · Tanh(query[:, :, None] + key[:, None]), -1)`,
//!   `scale` a vector over the features (none without `use_scale`).
//!
//! Keras subtracts 1e9 (65504 for float16) from the scores of the key steps a query step may
//! not see: those the value's mask leaves out and, with `use_causal_mask` (a call argument,
//! which the Keras importer copies into the config), those after the query step. The
//! query's mask zeroes the output at its masked steps and is handed on; the key's mask is
//! not read (Keras reads the value's). Inputs are `[query, value]` or `[query, value,
//! key]`, float, `[batch, steps, features]`. Returned attention scores are not supported;
//! dropout is inference-time identity.

use super::multi_head_attention::lower_triangle;
use super::{expect_inputs, expect_weight_shape, expect_weights, require_float};
use crate::config::Config;
use crate::error::BuildError;
use crate::graph::{attr_int, attr_ints, GraphBuilder};
use crate::registry::{LayerConverter, Masking, ValueRef};
use crate::shape::{format_shape, TensorInfo};
use crate::spec::Layer;
use crate::tensor::DType;

/// What Keras subtracts from a masked score: float16's largest value for float16 scores.
fn masked_penalty(dtype: DType) -> f64 {
    if dtype == DType::F16 {
        65504.0
    } else {
        1e9
    }
}

pub enum Attention {
    /// `keras.layers.Attention`.
    Luong,
    /// `keras.layers.AdditiveAttention`.
    Additive,
}

struct Params {
    concat: bool,
    use_scale: bool,
    causal: bool,
}

impl Attention {
    fn params(&self, layer: &Layer) -> Result<Params, BuildError> {
        let cfg = Config::of(layer)?;
        let concat = match self {
            Attention::Additive => true,
            Attention::Luong => match cfg.str_or("score_mode", "dot")? {
                "dot" => false,
                "concat" => true,
                other => {
                    return Err(layer.error(format!(
                        "score_mode must be \"dot\" or \"concat\", got {other:?}"
                    )))
                }
            },
        };
        if cfg.bool_or("return_attention_scores", false)? {
            return Err(layer.error("returned attention scores are not supported"));
        }
        Ok(Params {
            concat,
            use_scale: cfg.bool_or("use_scale", matches!(self, Attention::Additive))?,
            // Older tf.keras kept it in the config as `causal`.
            causal: cfg.bool_or("use_causal_mask", false)? || cfg.bool_or("causal", false)?,
        })
    }
}

impl LayerConverter for Attention {
    // Keras: `compute_mask` gives the query's mask; the layer reads its inputs' masks.
    fn masking(&self, _layer: &Layer) -> Masking {
        Masking::Attends {
            passes_on: true,
            clears: false,
        }
    }

    fn infer(&self, layer: &Layer, inputs: &[TensorInfo]) -> Result<TensorInfo, BuildError> {
        let count = inputs.len();
        if !(2..=3).contains(&count) {
            return Err(layer.error(format!(
                "expects [query, value] or [query, value, key], got {count} input(s)"
            )));
        }
        expect_inputs(layer, inputs, count)?;
        let (q, v, k) = (&inputs[0], &inputs[1], inputs.get(2).unwrap_or(&inputs[1]));
        require_float(layer, "query", q.dtype)?;
        for (what, x) in [("query", q), ("value", v), ("key", k)] {
            if x.rank() != 3 {
                return Err(layer.error(format!(
                    "the {what} must be [batch, steps, features], got shape {}",
                    format_shape(&x.shape)
                )));
            }
            if x.dtype != q.dtype {
                return Err(layer.dtype_error(what, x.dtype, q.dtype.name()));
            }
        }
        let features = |x: &TensorInfo| x.shape[2];
        if let (Some(a), Some(b)) = (features(q), features(k)) {
            if a != b {
                return Err(layer.error(format!(
                    "query and key features differ: {} against {}",
                    format_shape(&q.shape),
                    format_shape(&k.shape)
                )));
            }
        }
        if let (Some(a), Some(b)) = (v.shape[1], k.shape[1]) {
            if a != b {
                return Err(layer.error(format!(
                    "value and key steps differ: {} against {}",
                    format_shape(&v.shape),
                    format_shape(&k.shape)
                )));
            }
        }
        let p = self.params(layer)?;
        let mut names = Vec::new();
        if p.use_scale {
            names.push("scale");
        }
        if p.concat && matches!(self, Attention::Luong) {
            names.push("concat_score_weight");
        }
        expect_weights(layer, &names)?;
        for (i, name) in names.iter().enumerate() {
            if *name == "scale" && matches!(self, Attention::Additive) {
                let Some(dim) = features(q) else {
                    return Err(layer.error("the query's features must be static"));
                };
                expect_weight_shape(layer, i, name, &[dim])?;
            } else {
                expect_weight_shape(layer, i, name, &[])?;
            }
            super::require_weight_dtype(layer, i, name, q.dtype)?;
        }
        Ok(TensorInfo::new(
            q.dtype,
            vec![q.shape[0].or(v.shape[0]), q.shape[1], v.shape[2]],
        ))
    }

    fn emit(
        &self,
        layer: &Layer,
        inputs: &[ValueRef<'_>],
        output: ValueRef<'_>,
        g: &mut GraphBuilder,
    ) -> Result<String, BuildError> {
        let p = self.params(layer)?;
        let name = &layer.name;
        let (q, v) = (inputs[0].name, inputs[1].name);
        let k = inputs.get(2).map_or(v, |k| k.name);
        let mut weights = layer.weights.iter();
        let scale = if p.use_scale {
            Some(g.initializer(&format!("{name}/scale"), weights.next().expect("checked")))
        } else {
            None
        };
        let scores = if p.concat {
            let q_axis = g.int64s(&format!("{name}/query_axis"), &[2]);
            let k_axis = g.int64s(&format!("{name}/key_axis"), &[1]);
            let q = g.node(
                "Unsqueeze",
                &[q, &q_axis],
                &format!("{name}/query_steps"),
                vec![],
            );
            let k = g.node(
                "Unsqueeze",
                &[k, &k_axis],
                &format!("{name}/key_steps"),
                vec![],
            );
            let mut sum = g.node("Add", &[&q, &k], &format!("{name}/sum"), vec![]);
            if let (Some(scale), Attention::Luong) = (&scale, self) {
                sum = g.node("Mul", &[&sum, scale], &format!("{name}/scaled_sum"), vec![]);
            }
            let mut t = g.node("Tanh", &[&sum], &format!("{name}/tanh"), vec![]);
            if let (Some(scale), Attention::Additive) = (&scale, self) {
                t = g.node("Mul", &[&t, scale], &format!("{name}/scaled_tanh"), vec![]);
            }
            let last = g.int64s(&format!("{name}/feature_axis"), &[-1]);
            let mut scores = g.node(
                "ReduceSum",
                &[&t, &last],
                &format!("{name}/scores"),
                vec![attr_int("keepdims", 0)],
            );
            if let Attention::Luong = self {
                let w = weights.next().expect("checked");
                let w = g.initializer(&format!("{name}/concat_score_weight"), w);
                scores = g.node("Mul", &[&w, &scores], &format!("{name}/weighted"), vec![]);
            }
            scores
        } else {
            let kt = g.node(
                "Transpose",
                &[k],
                &format!("{name}/key_t"),
                vec![attr_ints("perm", &[0, 2, 1])],
            );
            let scores = g.node("MatMul", &[q, &kt], &format!("{name}/scores"), vec![]);
            match &scale {
                Some(scale) => g.node("Mul", &[&scores, scale], &format!("{name}/scaled"), vec![]),
                None => scores,
            }
        };
        let dtype = inputs[0].info.dtype;
        let scores = match allowed_steps(g, name, dtype, &scores, inputs[1].mask, p.causal) {
            Some(allowed) => {
                let one = g.scalar(&format!("{name}/one"), dtype, 1.0);
                let hidden = g.node("Sub", &[&one, &allowed], &format!("{name}/hidden"), vec![]);
                let large = g.scalar(&format!("{name}/large"), dtype, masked_penalty(dtype));
                let penalty = g.node(
                    "Mul",
                    &[&large, &hidden],
                    &format!("{name}/penalty"),
                    vec![],
                );
                g.node(
                    "Sub",
                    &[&scores, &penalty],
                    &format!("{name}/masked_scores"),
                    vec![],
                )
            }
            None => scores,
        };
        let weights = g.node(
            "Softmax",
            &[&scores],
            &format!("{name}/Softmax"),
            vec![attr_int("axis", -1)],
        );
        let Some(query_mask) = inputs[0].mask else {
            g.node_into("MatMul", &[&weights, v], output.name, vec![]);
            return Ok(output.name.to_string());
        };
        let attended = g.node(
            "MatMul",
            &[&weights, v],
            &format!("{name}/attended"),
            vec![],
        );
        let axis = g.int64s(&format!("{name}/query_mask_axis"), &[-1]);
        let keep = g.node(
            "Unsqueeze",
            &[query_mask, &axis],
            &format!("{name}/query_mask"),
            vec![],
        );
        let keep = super::cast_to(g, layer, &keep, DType::Bool, dtype);
        g.node_into("Mul", &[&attended, &keep], output.name, vec![]);
        Ok(output.name.to_string())
    }
}

/// Which key steps each query step may see, as 1 and 0 of the scores' type: the value's
/// mask (`[batch, 1, steps]`) and, when `causal`, the `[query steps, key steps]` lower
/// triangle of ones (a query step sees the key steps up to its own), multiplied as Keras
/// ANDs them; `None` when there is neither.
fn allowed_steps(
    g: &mut GraphBuilder,
    name: &str,
    dtype: DType,
    scores: &str,
    value_mask: Option<&str>,
    causal: bool,
) -> Option<String> {
    let value = value_mask.map(|mask| {
        let axis = g.int64s(&format!("{name}/value_mask_axis"), &[1]);
        let mask = g.node(
            "Unsqueeze",
            &[mask, &axis],
            &format!("{name}/value_mask"),
            vec![],
        );
        let to = vec![attr_int("to", dtype.onnx() as i64)];
        g.node("Cast", &[&mask], &format!("{name}/value_steps"), to)
    });
    let lower = causal.then(|| {
        let dims = g.node(
            "Shape",
            &[scores],
            &format!("{name}/score_steps"),
            vec![attr_int("start", 1)],
        );
        lower_triangle(g, name, &dims, dtype)
    });
    match (value, lower) {
        (Some(v), Some(l)) => Some(g.node("Mul", &[&v, &l], &format!("{name}/allowed"), vec![])),
        (v, l) => v.or(l),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::Tensor;
    use serde_json::json;

    fn infer(
        kind: Attention,
        config: serde_json::Value,
        weights: Vec<Tensor>,
        inputs: &[TensorInfo],
    ) -> Result<TensorInfo, String> {
        let layer = Layer {
            name: "att".into(),
            class_name: "Attention".into(),
            config,
            inbound: vec![],
            weights,
        };
        kind.infer(&layer, inputs).map_err(|e| e.to_string())
    }

    fn seq(steps: Option<usize>, features: usize) -> TensorInfo {
        TensorInfo::new(DType::F32, vec![None, steps, Some(features)])
    }

    #[test]
    fn output_takes_the_query_steps_and_the_value_features() {
        let out = infer(
            Attention::Luong,
            json!({}),
            vec![],
            &[seq(Some(4), 8), seq(None, 3), seq(None, 8)],
        );
        assert_eq!(out.unwrap().shape, [None, Some(4), Some(3)]);
        let scale = Tensor::from_f64_values(DType::F32, vec![8], &[1.0; 8]);
        let out = infer(
            Attention::Additive,
            json!({}),
            vec![scale],
            &[seq(Some(4), 8), seq(None, 8)],
        );
        assert_eq!(out.unwrap().shape, [None, Some(4), Some(8)]);
    }

    #[test]
    fn malformed_layers_are_refused_with_the_reason() {
        let two = [seq(Some(4), 8), seq(Some(6), 8)];
        let err = |kind, config, weights, inputs: &[TensorInfo]| {
            infer(kind, config, weights, inputs).unwrap_err()
        };
        assert!(err(Attention::Luong, json!({}), vec![], &two[..1]).contains("got 1 input(s)"));
        let flat = [
            TensorInfo::new(DType::F32, vec![None, Some(8)]),
            seq(Some(6), 8),
        ];
        assert!(
            err(Attention::Luong, json!({}), vec![], &flat).contains("[batch, steps, features]")
        );
        let wide_key = [seq(Some(4), 8), seq(Some(6), 8), seq(Some(6), 5)];
        assert!(err(Attention::Luong, json!({}), vec![], &wide_key).contains("features differ"));
        let short_key = [seq(Some(4), 8), seq(Some(6), 8), seq(Some(5), 8)];
        assert!(err(Attention::Luong, json!({}), vec![], &short_key).contains("steps differ"));
        let scores = json!({"return_attention_scores": true});
        assert!(err(Attention::Luong, scores, vec![], &two).contains("not supported"));
        let mode = json!({"score_mode": "general"});
        assert!(err(Attention::Luong, mode, vec![], &two).contains("score_mode"));
        // `use_scale` wants a scalar `scale` for Attention, a vector for AdditiveAttention.
        let scalar = Tensor::from_f64_values(DType::F32, vec![], &[1.0]);
        let e = err(Attention::Additive, json!({}), vec![scalar], &two);
        assert!(e.contains("scale"), "{e}");
        assert!(err(Attention::Luong, json!({"use_scale": true}), vec![], &two).contains("scale"));
    }
}
