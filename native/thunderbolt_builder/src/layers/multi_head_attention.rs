//! `MultiHeadAttention` over `[batch, steps, features]` inputs (query, value, and an
//! optional key that defaults to the value) → `MatMul`s, `Softmax` and reshapes:
//!
//! - each projection is `x · kernel + bias`, Keras' `[features, heads, dim]` kernel read
//!   as `[features, heads·dim]`, then split into heads: `[batch, heads, steps, dim]`;
//! - the query is scaled by `1/sqrt(key_dim)` before the dot product, as Keras does;
//! - Keras masks on the inputs (padding from `Embedding(mask_zero=True)` or `Masking`) and
//!   `use_causal_mask` (a call argument, which the Keras importer copies into the config)
//!   take the steps they exclude out of the softmax, as the Keras release that saved the
//!   model does (config `"keras_version"`; see `attention_weights`); the output carries the
//!   query's mask on, and from Keras 3.8 the layer clears its inputs' masks (see the
//!   builder's `masks` module);
//! - the heads are joined and projected back with the output kernel `[heads, value_dim,
//!   features]`.
//!
//! Weights, in Keras order: query kernel and bias, key kernel and bias, value kernel and
//! bias, output kernel and bias (the biases only with `use_bias`). `output_shape`,
//! `attention_axes` other than the steps, an explicit `attention_mask` and returned scores
//! are not supported; dropout does nothing at inference.

use super::{expect_inputs, expect_weight_shape, expect_weights, require_weight_dtype};
use crate::config::Config;
use crate::error::BuildError;
use crate::graph::{attr_int, attr_ints, GraphBuilder};
use crate::registry::{LayerConverter, Masking, ValueRef};
use crate::shape::{format_shape, TensorInfo};
use crate::spec::Layer;
use crate::tensor::{DType, Tensor};

pub struct MultiHeadAttention;

/// Keras' `_large_negative_number` for float32, negated: its `Softmax` layer adds `-LARGE`
/// to masked scores.
const LARGE: f64 = 1e9;

/// What Keras 3's `dot_product_attention` puts in masked scores on its JAX backend.
const DOT_PRODUCT_MASKED: f32 = (-0.7 * f32::MAX as f64) as f32;

struct Params {
    heads: usize,
    key_dim: usize,
    value_dim: usize,
    use_bias: bool,
    causal: bool,
    /// Keras 3 computes attention without `dot_product_attention` when it has dropout.
    dropout: bool,
}

fn params(layer: &Layer) -> Result<Params, BuildError> {
    let cfg = Config::of(layer)?;
    let positive = |key: &str, value: Option<usize>| {
        value.filter(|&n| n > 0 && n <= 1 << 20).ok_or_else(|| {
            layer.error(format!(
                "config key {key:?} must be a positive integer up to 2^20"
            ))
        })
    };
    let heads = positive("num_heads", cfg.opt_usize("num_heads")?)?;
    let key_dim = positive("key_dim", cfg.opt_usize("key_dim")?)?;
    let value_dim = match cfg.opt_usize("value_dim")? {
        None => key_dim,
        some => positive("value_dim", some)?,
    };
    if cfg.get("output_shape").is_some() {
        return Err(layer.error("output_shape is not supported"));
    }
    match cfg.opt_i64_list("attention_axes") {
        Ok(None) => {}
        Ok(Some(axes)) if axes == [1] || axes == [-2] => {}
        _ => {
            return Err(
                layer.error("attention_axes other than the steps axis ([1]) are not supported")
            )
        }
    }
    if cfg.bool_or("return_attention_scores", false)? {
        return Err(layer.error("return_attention_scores=true is not supported"));
    }
    Ok(Params {
        heads,
        key_dim,
        value_dim,
        use_bias: cfg.bool_or("use_bias", true)?,
        causal: cfg.bool_or("use_causal_mask", false)?,
        dropout: cfg.f64_or("dropout", 0.0)? > 0.0,
    })
}

/// The static feature size of a float32 `[batch, steps, features]` input.
fn features(layer: &Layer, what: &str, x: &TensorInfo) -> Result<usize, BuildError> {
    if x.dtype != DType::F32 {
        return Err(layer.dtype_error(what, x.dtype, "float32"));
    }
    match x.shape.as_slice() {
        [_, _, Some(features)] => Ok(*features),
        _ => Err(layer.error(format!(
            "the {what} must have rank 3 (batch, steps, features) with static features, got {}",
            format_shape(&x.shape)
        ))),
    }
}

/// Query, value and key (the value when there is no third input).
fn parts<T>(inputs: &[T]) -> (&T, &T, &T) {
    (&inputs[0], &inputs[1], inputs.get(2).unwrap_or(&inputs[1]))
}

/// Which value steps each query step attends to, as Keras' `_compute_attention_mask` makes
/// it: the AND of the query's mask (`[batch, 1, T, 1]`), the value's and the key's
/// (`[batch, 1, 1, S]`) and the causal mask (`[T, S]`), a bool value that broadcasts to the
/// scores `[batch, heads, T, S]`; `None` when there is none of them.
fn allowed_steps(
    g: &mut GraphBuilder,
    name: &str,
    p: &Params,
    inputs: &[ValueRef<'_>],
) -> Option<String> {
    let (q, v) = (&inputs[0], &inputs[1]);
    let mut parts = Vec::new();
    let mut spread = |g: &mut GraphBuilder, mask: Option<&str>, part: &str, axes: &[i64]| {
        if let Some(mask) = mask {
            let axes = g.int64s(&format!("{name}/{part}_mask_axes"), axes);
            parts.push(g.node(
                "Unsqueeze",
                &[mask, &axes],
                &format!("{name}/{part}_mask"),
                vec![],
            ));
        }
    };
    spread(g, q.mask, "query", &[1, 3]);
    spread(g, v.mask, "value", &[1, 2]);
    // Keras reads a key's mask only when the key is given (it is the value's otherwise).
    spread(g, inputs.get(2).and_then(|k| k.mask), "key", &[1, 2]);
    if p.causal {
        // Keras masks with the query's and the value's step counts.
        let shape_of = |g: &mut GraphBuilder, x: &str, part: &str| {
            g.node(
                "Shape",
                &[x],
                &format!("{name}/{part}_steps"),
                vec![attr_int("start", 1), attr_int("end", 2)],
            )
        };
        let (t, s) = (shape_of(g, q.name, "query"), shape_of(g, v.name, "value"));
        let dims = g.node(
            "Concat",
            &[&t, &s],
            &format!("{name}/mask_shape"),
            vec![attr_int("axis", 0)],
        );
        let lower = lower_triangle(g, name, &dims, DType::F32);
        parts.push(g.node(
            "Cast",
            &[&lower],
            &format!("{name}/causal"),
            vec![attr_int("to", DType::Bool.onnx() as i64)],
        ));
    }
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    g.fold("And", &parts, &format!("{name}/allowed"))
}

/// Ones of shape `dims` (a `[query steps, key steps]` value) in `dtype`, with the part above
/// the diagonal zero: a query step sees the key steps up to its own, as Keras' causal masks.
pub(crate) fn lower_triangle(g: &mut GraphBuilder, name: &str, dims: &str, dtype: DType) -> String {
    let one = g.scalar(&format!("{name}/one"), dtype, 1.0);
    let ones = g.node("Expand", &[&one, dims], &format!("{name}/ones"), vec![]);
    g.node(
        "Trilu",
        &[&ones],
        &format!("{name}/lower"),
        vec![attr_int("upper", 0)],
    )
}

/// The attention weights: the softmax of `scores`, with the steps `allowed` (when given)
/// leaves out taken away as the Keras that saved the layer does it. The releases differ only
/// for a query step with nothing to attend to (a padded step, or a value of nothing but
/// padding):
/// - Keras 3.7 and later without dropout (`ops.dot_product_attention`): masked scores become
///   `-0.7 · f32::MAX`, so such a step averages every value step;
/// - Keras 3.10 and later with dropout (its `Softmax` layer with a mask): `-1e9` is added to
///   masked scores and the weights are multiplied by the mask, so such a step gets zeros;
/// - otherwise (Keras 2, earlier Keras 3): `-1e9` is added, with no product.
fn attention_weights(
    g: &mut GraphBuilder,
    layer: &Layer,
    p: &Params,
    scores: &str,
    allowed: Option<&str>,
) -> String {
    let name = &layer.name;
    let softmax = |g: &mut GraphBuilder, x: &str| {
        g.node(
            "Softmax",
            &[x],
            &format!("{name}/Softmax"),
            vec![attr_int("axis", -1)],
        )
    };
    let Some(allowed) = allowed else {
        return softmax(g, scores);
    };
    if !p.dropout && super::keras_3_from(layer, 7) {
        let lowest = g.scalar(
            &format!("{name}/masked_score"),
            DType::F32,
            f64::from(DOT_PRODUCT_MASKED),
        );
        let scores = g.node(
            "Where",
            &[allowed, scores, &lowest],
            &format!("{name}/masked_scores"),
            vec![],
        );
        return softmax(g, &scores);
    }
    let weights = super::cast_to(g, layer, allowed, DType::Bool, DType::F32);
    let one = g.scalar(&format!("{name}/one"), DType::F32, 1.0);
    let masked = g.node("Sub", &[&weights, &one], &format!("{name}/masked"), vec![]);
    let large = g.scalar(&format!("{name}/large"), DType::F32, LARGE);
    let adder = g.node(
        "Mul",
        &[&masked, &large],
        &format!("{name}/mask_adder"),
        vec![],
    );
    let scores = g.node(
        "Add",
        &[scores, &adder],
        &format!("{name}/masked_scores"),
        vec![],
    );
    let attention = softmax(g, &scores);
    if !p.dropout || !super::keras_3_from(layer, 10) {
        attention
    } else {
        g.node(
            "Mul",
            &[&attention, &weights],
            &format!("{name}/masked_weights"),
            vec![],
        )
    }
}

impl LayerConverter for MultiHeadAttention {
    fn masking(&self, layer: &Layer) -> Masking {
        // Keras 3.3 records no mask on the layer's output; 3.4 and later the query's.
        Masking::Attends {
            passes_on: super::saved_by_keras_2(layer) || super::keras_3_from(layer, 4),
            clears: super::keras_3_from(layer, 8),
        }
    }

    fn infer(&self, layer: &Layer, inputs: &[TensorInfo]) -> Result<TensorInfo, BuildError> {
        if inputs.len() != 2 {
            expect_inputs(layer, inputs, 3)?;
        }
        let p = params(layer)?;
        let (q, v, k) = parts(inputs);
        let (dq, dv, dk) = (
            features(layer, "query", q)?,
            features(layer, "value", v)?,
            features(layer, "key", k)?,
        );
        let (h, kd, vd) = (p.heads, p.key_dim, p.value_dim);
        let mut expected: Vec<(String, Vec<usize>)> = Vec::new();
        for (part, kernel, bias) in [
            ("query", vec![dq, h, kd], vec![h, kd]),
            ("key", vec![dk, h, kd], vec![h, kd]),
            ("value", vec![dv, h, vd], vec![h, vd]),
            ("output", vec![h, vd, dq], vec![dq]),
        ] {
            expected.push((format!("{part}/kernel"), kernel));
            if p.use_bias {
                expected.push((format!("{part}/bias"), bias));
            }
        }
        let names: Vec<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
        expect_weights(layer, &names)?;
        for (i, (name, shape)) in expected.iter().enumerate() {
            expect_weight_shape(layer, i, name, shape)?;
            require_weight_dtype(layer, i, name, DType::F32)?;
        }
        Ok(TensorInfo::new(
            DType::F32,
            vec![q.shape[0], q.shape[1], Some(dq)],
        ))
    }

    fn emit(
        &self,
        layer: &Layer,
        inputs: &[ValueRef<'_>],
        output: ValueRef<'_>,
        g: &mut GraphBuilder,
    ) -> Result<String, BuildError> {
        let p = params(layer)?;
        let name = &layer.name;
        let (q, v, k) = parts(inputs);
        let step = if p.use_bias { 2 } else { 1 };
        let weights = |i: usize| &layer.weights[i * step..(i + 1) * step];
        // [batch, steps, features] · [features, heads·dim] (+ bias), split into heads:
        // [batch, steps, heads, dim] transposed by `perm`.
        let project =
            |g: &mut GraphBuilder, x: &str, w: &[Tensor], dim: usize, part: &str, perm: &[i64]| {
                let kernel = &w[0];
                let cols = p.heads * dim;
                let kernel = g.initializer_reshaped(
                    &format!("{name}/{part}/kernel"),
                    kernel,
                    &[kernel.shape[0], cols],
                );
                let mut y = g.node(
                    "MatMul",
                    &[x, &kernel],
                    &format!("{name}/{part}/MatMul"),
                    vec![],
                );
                if p.use_bias {
                    let bias =
                        g.initializer_reshaped(&format!("{name}/{part}/bias"), &w[1], &[cols]);
                    y = g.node("Add", &[&y, &bias], &format!("{name}/{part}/Add"), vec![]);
                }
                let shape = g.int64s(
                    &format!("{name}/{part}/heads_shape"),
                    &[0, 0, p.heads as i64, dim as i64],
                );
                let heads = g.node(
                    "Reshape",
                    &[&y, &shape],
                    &format!("{name}/{part}/heads"),
                    vec![],
                );
                g.node(
                    "Transpose",
                    &[&heads],
                    &format!("{name}/{part}/Transpose"),
                    vec![attr_ints("perm", perm)],
                )
            };
        let query = project(g, q.name, weights(0), p.key_dim, "query", &[0, 2, 1, 3]);
        // The key goes straight to [batch, heads, dim, steps] for the dot product.
        let key = project(g, k.name, weights(1), p.key_dim, "key", &[0, 2, 3, 1]);
        let value = project(g, v.name, weights(2), p.value_dim, "value", &[0, 2, 1, 3]);
        let scale = g.scalar(
            &format!("{name}/scale"),
            DType::F32,
            1.0 / (p.key_dim as f64).sqrt(),
        );
        let query = g.node(
            "Mul",
            &[&query, &scale],
            &format!("{name}/scaled_query"),
            vec![],
        );
        let scores = g.node("MatMul", &[&query, &key], &format!("{name}/scores"), vec![]);
        let allowed = allowed_steps(g, name, &p, inputs);
        let attention = attention_weights(g, layer, &p, &scores, allowed.as_deref());
        let context = g.node(
            "MatMul",
            &[&attention, &value],
            &format!("{name}/context"),
            vec![],
        );
        let context = g.node(
            "Transpose",
            &[&context],
            &format!("{name}/context_steps"),
            vec![attr_ints("perm", &[0, 2, 1, 3])],
        );
        let joined_shape = g.int64s(
            &format!("{name}/joined_shape"),
            &[0, 0, (p.heads * p.value_dim) as i64],
        );
        let joined = g.node(
            "Reshape",
            &[&context, &joined_shape],
            &format!("{name}/joined"),
            vec![],
        );
        let out = weights(3);
        let kernel = &out[0];
        let kernel = g.initializer_reshaped(
            &format!("{name}/output/kernel"),
            kernel,
            &[p.heads * p.value_dim, kernel.shape[2]],
        );
        if p.use_bias {
            let y = g.node(
                "MatMul",
                &[&joined, &kernel],
                &format!("{name}/output/MatMul"),
                vec![],
            );
            let bias = g.initializer(&format!("{name}/output/bias"), &out[1]);
            g.node_into("Add", &[&y, &bias], output.name, vec![]);
        } else {
            g.node_into("MatMul", &[&joined, &kernel], output.name, vec![]);
        }
        Ok(output.name.to_string())
    }
}
