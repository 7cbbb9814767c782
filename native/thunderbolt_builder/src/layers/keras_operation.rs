//! `KerasOperation` (not a Keras class: the name the Keras importer gives a `keras.ops` call
//! recorded in a functional graph, such as `ops.mean(x, axis=1)`, `x / 2.0` or
//! `ops.cast(ids != 0, "float32")`) → the ONNX ops of that operation.
//!
//! Config: `op`, the Keras operation class (`"Mean"`, `"TrueDivide"`, ...); `operands`, one
//! entry per call argument in order: `"tensor"` (the layer's inputs, in order), `"array"`
//! (a constant array, the layer's weights, in order), `"float"` or `"int"` (a Python
//! number, held as a 0-d float64 weight); then the operation's own keys as Keras writes
//! them (`axis`, `keepdims`, `dtype`, `newshape`, `axes`, `x_min`, `x_max`, ...). `GetItem`
//! (`x[:, 0]`) takes its key as `key`, one entry per index: `{"slice": [start, stop, step]}`
//! (nulls for the defaults), `{"index": i}`, `"..."` or `null` (a new axis).
//!
//! Types follow Keras 3's promotion: operands join along bool < integers < floats (the
//! wider type wins); a Python float meeting integers gives float32, a Python number
//! otherwise takes the tensors' type; true division, `mean` and the transcendental
//! functions give float32 for integer input. Masks end, as Keras' operations drop them.

use super::rms_normalization::{check_scale, norm_axes, normalization_type, rms_normalize};
use super::{cast_to, checked_axis, float_output, require_float};
use crate::activation::Activation;
use crate::config::Config;
use crate::einsum::Equation;
use crate::error::BuildError;
use crate::graph::{attr_int, attr_ints, attr_string, GraphBuilder};
use crate::registry::{LayerConverter, Masking, ValueRef};
use crate::shape::{broadcast, format_shape, static_dims, static_product, Dim, TensorInfo};
use crate::spec::Layer;
use crate::tensor::{DType, Tensor};

pub struct KerasOperation;

/// The `op` names this converter takes, for error messages and documentation.
#[rustfmt::skip]
pub const OPERATIONS: &[&str] = &[
    "Absolute", "Negative", "Sign", "Square", "Exp", "Log", "Sqrt", "Rsqrt", "Reciprocal",
    "Sin", "Cos", "Tan", "Erf", "Floor", "Ceil", "Round", "Log1p", "Expm1", "Relu", "Relu6",
    "Sigmoid", "Tanh", "Softplus", "Softsign", "Silu", "Swish", "Gelu", "Elu", "Selu",
    "Softmax", "LogSoftmax", "LogicalNot", "Add", "Subtract", "Multiply", "TrueDivide",
    "Divide", "Power", "Maximum", "Minimum", "Equal", "NotEqual", "Less", "LessEqual",
    "Greater", "GreaterEqual", "LogicalAnd", "LogicalOr", "LogicalXor", "Cast",
    "ExpandDims", "Squeeze", "Reshape", "Transpose", "Concatenate", "Stack", "Sum", "Mean",
    "Max", "Min", "Prod", "Matmul", "Clip", "Where", "Take", "Argmax", "Argmin", "GetItem",
    "LeakyRelu", "HardSigmoid", "HardSilu", "LogSigmoid", "Norm", "OneHot", "Any", "All",
    "Cumsum", "Tile", "Arctan", "Arcsin", "Arccos", "Sinh", "Cosh", "Arctanh", "Arcsinh",
    "Arccosh", "Log2", "Log10", "Trunc", "Isnan", "Isinf", "Isfinite", "Logsumexp", "OnesLike",
    "ZerosLike", "FullLike", "Moveaxis", "Swapaxes", "Mod", "FloorDivide", "Var", "Std", "Pad",
    "Flip", "Normalize", "Repeat", "Einsum", "RMSNorm", "LayerNorm", "Sort", "Argsort",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Tensor,
    Array,
    Float,
    Int,
}

/// One call argument: what it is, its type, and where its value comes from (an input or
/// a weight index).
#[derive(Debug, Clone)]
struct Operand {
    kind: Kind,
    info: TensorInfo,
    index: usize,
}

impl Operand {
    fn is_weak(&self) -> bool {
        matches!(self.kind, Kind::Float | Kind::Int)
    }
}

fn operands(layer: &Layer, inputs: &[TensorInfo]) -> Result<Vec<Operand>, BuildError> {
    let cfg = Config::of(layer)?;
    let list = cfg
        .get("operands")
        .and_then(|v| v.as_array())
        .ok_or_else(|| layer.error("config key \"operands\" (a list) is required"))?;
    let (mut tensors, mut weights) = (0usize, 0usize);
    let mut out = Vec::with_capacity(list.len());
    for entry in list {
        let kind = match entry.as_str() {
            Some("tensor") => Kind::Tensor,
            Some("array") => Kind::Array,
            Some("float") => Kind::Float,
            Some("int") => Kind::Int,
            _ => {
                return Err(layer.error(format!(
                    "operands must be \"tensor\", \"array\", \"float\" or \"int\", got {entry}"
                )))
            }
        };
        let operand = if kind == Kind::Tensor {
            let info = inputs.get(tensors).ok_or_else(|| {
                layer.error(format!(
                    "names more tensor operands than its {} input(s)",
                    inputs.len()
                ))
            })?;
            tensors += 1;
            Operand {
                kind,
                info: info.clone(),
                index: tensors - 1,
            }
        } else {
            let w = layer.weights.get(weights).ok_or_else(|| {
                layer.error(format!(
                    "names more constant operands than its {} weight(s)",
                    layer.weights.len()
                ))
            })?;
            weights += 1;
            if kind != Kind::Array && !w.shape.is_empty() {
                return Err(layer.error("a number operand must be a 0-d weight"));
            }
            let dtype = match kind {
                Kind::Float => DType::F32,
                Kind::Int => DType::I32,
                _ => w.dtype,
            };
            let shape = static_dims(&w.shape);
            Operand {
                kind,
                info: TensorInfo::new(dtype, shape),
                index: weights - 1,
            }
        };
        out.push(operand);
    }
    if tensors != inputs.len() || weights != layer.weights.len() {
        return Err(layer.error(format!(
            "operands name {tensors} tensor(s) and {weights} constant(s), but the layer has \
             {} input(s) and {} weight(s)",
            inputs.len(),
            layer.weights.len()
        )));
    }
    if tensors == 0 {
        return Err(layer.error("an operation needs at least one tensor operand"));
    }
    Ok(out)
}

fn type_rank(d: DType) -> u8 {
    match d {
        DType::Bool => 0,
        DType::U8 => 1,
        DType::I8 => 2,
        DType::I16 => 3,
        DType::I32 => 4,
        DType::I64 => 5,
        DType::F16 => 6,
        DType::F32 => 7,
        DType::F64 => 8,
    }
}

/// The type `operands` compute in, by Keras' promotion (see the module docs).
fn promote(operands: &[Operand]) -> DType {
    let strong = operands
        .iter()
        .filter(|o| !o.is_weak())
        .map(|o| o.info.dtype)
        .max_by_key(|&d| type_rank(d));
    let weak_float = operands.iter().any(|o| o.kind == Kind::Float);
    let weak_int = operands.iter().any(|o| o.kind == Kind::Int);
    match strong {
        Some(d) if weak_float && !d.is_float() => DType::F32,
        Some(DType::Bool) if weak_int => DType::I32,
        Some(d) => d,
        None if weak_float => DType::F32,
        None => DType::I32,
    }
}

fn broadcast_all(layer: &Layer, operands: &[Operand]) -> Result<Vec<Dim>, BuildError> {
    operands.iter().try_fold(Vec::new(), |acc, o| {
        broadcast(&acc, &o.info.shape).ok_or_else(|| {
            layer.error(format!(
                "operand shapes {} do not broadcast",
                operands
                    .iter()
                    .map(|o| format_shape(&o.info.shape))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    })
}

fn op_name(layer: &Layer) -> Result<&str, BuildError> {
    Config::of(layer)?
        .get("op")
        .and_then(|v| v.as_str())
        .ok_or_else(|| layer.error("config key \"op\" (the Keras operation) is required"))
}

fn numeric(layer: &Layer, what: &str, dtype: DType) -> Result<(), BuildError> {
    if dtype == DType::Bool {
        return Err(layer.dtype_error(what, dtype, "a number type"));
    }
    Ok(())
}

/// Axes given as `null` (all), one integer or a list, normalized against `rank`, sorted.
fn axes(layer: &Layer, key: &str, rank: usize) -> Result<Vec<usize>, BuildError> {
    let cfg = Config::of(layer)?;
    let mut axes = match cfg.get(key) {
        None => (0..rank).collect(),
        Some(_) => cfg
            .axes_or(key, 0)?
            .into_iter()
            .map(|a| checked_axis(layer, a, rank))
            .collect::<Result<Vec<_>, _>>()?,
    };
    axes.sort_unstable();
    if axes.windows(2).any(|w| w[0] == w[1]) {
        return Err(layer.error(format!("config key {key:?} names an axis twice")));
    }
    Ok(axes)
}

/// The unary activations `keras.ops` offers under the activation's own name.
fn activation(layer: &Layer, op: &str) -> Result<Option<Activation>, BuildError> {
    let cfg = Config::of(layer)?;
    Ok(Some(match op {
        "Relu" => Activation::Relu,
        "Relu6" => Activation::Relu6,
        "Sigmoid" => Activation::Sigmoid,
        "Tanh" => Activation::Tanh,
        "Softplus" => Activation::Softplus,
        "Softsign" => Activation::Softsign,
        "Silu" | "Swish" => Activation::Silu,
        "Selu" => Activation::Selu,
        "Elu" => Activation::Elu {
            alpha: cfg.f64_or("alpha", 1.0)?,
        },
        // `keras.ops.gelu` defaults to the tanh approximation (the activation does not).
        "Gelu" => Activation::Gelu {
            approximate: cfg.bool_or("approximate", true)?,
        },
        "LeakyRelu" => Activation::LeakyRelu {
            negative_slope: cfg.f64_or("negative_slope", 0.2)?,
        },
        "HardSigmoid" => Activation::HardSigmoid { slope: 1.0 / 6.0 },
        "HardSilu" => Activation::HardSilu,
        "Softmax" if cfg.get("axis").is_some_and(|a| a.is_array()) => return Ok(None),
        "Softmax" => Activation::Softmax {
            axis: one_axis(layer)?,
        },
        "LogSoftmax" => Activation::LogSoftmax {
            axis: one_axis(layer)?,
        },
        _ => return Ok(None),
    }))
}

fn one_axis(layer: &Layer) -> Result<i64, BuildError> {
    let cfg = Config::of(layer)?;
    match cfg.get("axis") {
        None => Ok(-1),
        Some(v) => v
            .as_i64()
            .ok_or_else(|| layer.error(format!("axis must be one integer here, got {v}"))),
    }
}

/// Elementwise ops of one operand that keep its type.
fn same_type_unary(op: &str) -> Option<&'static str> {
    Some(match op {
        "Absolute" => "Abs",
        "Negative" => "Neg",
        "Sign" => "Sign",
        "Square" => "Mul",
        _ => return None,
    })
}

/// Elementwise ops of one operand that compute in a float type.
fn float_unary(op: &str) -> Option<&'static str> {
    Some(match op {
        "Exp" => "Exp",
        "Log" => "Log",
        "Sqrt" => "Sqrt",
        "Rsqrt" => "Sqrt",
        "Reciprocal" => "Reciprocal",
        "Sin" => "Sin",
        "Cos" => "Cos",
        "Tan" => "Tan",
        "Erf" => "Erf",
        "Floor" => "Floor",
        "Ceil" => "Ceil",
        "Round" => "Round",
        "Log1p" => "Log",
        "Expm1" => "Exp",
        "LogSigmoid" => "Softplus",
        "Arctan" => "Atan",
        "Arcsin" => "Asin",
        "Arccos" => "Acos",
        "Sinh" => "Sinh",
        "Cosh" => "Cosh",
        "Arctanh" => "Atanh",
        "Arcsinh" => "Asinh",
        "Arccosh" => "Acosh",
        "Log2" => "Log",
        "Log10" => "Log",
        _ => return None,
    })
}

/// Elementwise ops of two operands in their promoted type.
fn arithmetic(op: &str) -> Option<&'static str> {
    Some(match op {
        "Add" => "Add",
        "Subtract" => "Sub",
        "Multiply" => "Mul",
        "Power" => "Pow",
        "Maximum" => "Max",
        "Minimum" => "Min",
        _ => return None,
    })
}

fn comparison(op: &str) -> Option<&'static str> {
    Some(match op {
        "Equal" | "NotEqual" => "Equal",
        "Less" => "Less",
        "LessEqual" => "LessOrEqual",
        "Greater" => "Greater",
        "GreaterEqual" => "GreaterOrEqual",
        _ => return None,
    })
}

fn logical(op: &str) -> Option<&'static str> {
    Some(match op {
        "LogicalAnd" => "And",
        "LogicalOr" => "Or",
        "LogicalXor" => "Xor",
        _ => return None,
    })
}

fn expect_operands(layer: &Layer, ops: &[Operand], n: usize) -> Result<(), BuildError> {
    if ops.len() != n {
        return Err(layer.error(format!(
            "{} takes {n} operand(s), got {}",
            op_name(layer)?,
            ops.len()
        )));
    }
    Ok(())
}

fn reduced_shape(shape: &[Dim], axes: &[usize], keepdims: bool) -> Vec<Dim> {
    shape
        .iter()
        .enumerate()
        .filter_map(|(i, &d)| match (axes.contains(&i), keepdims) {
            (false, _) => Some(d),
            (true, true) => Some(Some(1)),
            (true, false) => None,
        })
        .collect()
}

/// `newshape` with `-1` resolved where the input's size is static.
fn reshaped(layer: &Layer, x: &TensorInfo) -> Result<(Vec<i64>, Vec<Dim>), BuildError> {
    let target = Config::of(layer)?
        .opt_i64_list("newshape")?
        .ok_or_else(|| layer.error("config key \"newshape\" (a list) is required"))?;
    if target.iter().any(|&d| d == 0 || d < -1) || target.iter().filter(|&&d| d == -1).count() > 1 {
        return Err(layer.error(format!(
            "newshape {target:?} must hold positive sizes and at most one -1"
        )));
    }
    let total: Option<usize> = x
        .shape
        .iter()
        .try_fold(1usize, |n, d| d.and_then(|d| n.checked_mul(d)));
    let known = target
        .iter()
        .filter(|&&d| d > 0)
        .try_fold(1usize, |n, &d| n.checked_mul(d as usize))
        .ok_or_else(|| layer.error(format!("newshape {target:?} is too large")))?;
    let shape = target
        .iter()
        .map(|&d| match d {
            -1 => total
                .filter(|t| known > 0 && t % known == 0)
                .map(|t| t / known),
            d => Some(d as usize),
        })
        .collect::<Vec<_>>();
    if let (Some(total), false) = (total, target.contains(&-1)) {
        if total != known {
            return Err(layer.error(format!(
                "cannot reshape {} into {target:?}",
                format_shape(&x.shape)
            )));
        }
    }
    Ok((target, shape))
}

fn transpose_perm(layer: &Layer, rank: usize) -> Result<Vec<usize>, BuildError> {
    match Config::of(layer)?.opt_i64_list("axes")? {
        None => Ok((0..rank).rev().collect()),
        Some(axes) => {
            let perm = axes
                .iter()
                .map(|&a| checked_axis(layer, a, rank))
                .collect::<Result<Vec<_>, _>>()?;
            let mut sorted = perm.clone();
            sorted.sort_unstable();
            if sorted != (0..rank).collect::<Vec<_>>() {
                return Err(layer.error(format!(
                    "axes {axes:?} must order the {rank} axes of the input"
                )));
            }
            Ok(perm)
        }
    }
}

fn matmul_shape(layer: &Layer, a: &[Dim], b: &[Dim]) -> Result<Vec<Dim>, BuildError> {
    if a.is_empty() || b.is_empty() {
        return Err(layer.error("matmul operands must have rank 1 or more"));
    }
    let a2: Vec<Dim> = if a.len() == 1 {
        vec![Some(1), a[0]]
    } else {
        a.to_vec()
    };
    let b2: Vec<Dim> = if b.len() == 1 {
        vec![b[0], Some(1)]
    } else {
        b.to_vec()
    };
    let (ab, am) = a2.split_at(a2.len() - 2);
    let (bb, bm) = b2.split_at(b2.len() - 2);
    if let (Some(k1), Some(k2)) = (am[1], bm[0]) {
        if k1 != k2 {
            return Err(layer.error(format!(
                "matmul of {} and {}: inner sizes {k1} and {k2} differ",
                format_shape(a),
                format_shape(b)
            )));
        }
    }
    let mut shape = broadcast(ab, bb).ok_or_else(|| {
        layer.error(format!(
            "matmul batch dimensions of {} and {} do not broadcast",
            format_shape(a),
            format_shape(b)
        ))
    })?;
    if a.len() > 1 {
        shape.push(am[0]);
    }
    if b.len() > 1 {
        shape.push(bm[1]);
    }
    Ok(shape)
}

/// Checks that the operands have one rank and agree on every axis but `except` where both
/// sizes are static.
fn check_agree(layer: &Layer, ops: &[Operand], except: Option<usize>) -> Result<(), BuildError> {
    let first = &ops[0].info.shape;
    for o in ops {
        let shape = &o.info.shape;
        let differs = shape.len() != first.len()
            || shape
                .iter()
                .zip(first)
                .enumerate()
                .any(|(i, (&d, &f))| Some(i) != except && d.is_some() && f.is_some() && d != f);
        if differs {
            return Err(layer.error(format!(
                "operand shapes {} and {} do not agree{}",
                format_shape(first),
                format_shape(shape),
                except.map_or(String::new(), |a| format!(" off axis {a}"))
            )));
        }
    }
    Ok(())
}

/// The size along `axis` of the operands joined there, when every part is static.
fn check_concat(layer: &Layer, ops: &[Operand], axis: usize) -> Result<Dim, BuildError> {
    check_agree(layer, ops, Some(axis))?;
    Ok(ops
        .iter()
        .try_fold(0usize, |total, o| o.info.shape[axis].map(|d| total + d)))
}

/// The output type of the operation over `ops`; emit re-derives it the same way.
fn infer_output(layer: &Layer, ops: &[Operand]) -> Result<TensorInfo, BuildError> {
    let op = op_name(layer)?;
    let cfg = Config::of(layer)?;
    let x = ops
        .iter()
        .find(|o| o.kind == Kind::Tensor)
        .ok_or_else(|| layer.error("no tensor operand"))?;
    if same_type_unary(op).is_some() {
        expect_operands(layer, ops, 1)?;
        numeric(layer, "input", x.info.dtype)?;
        return Ok(x.info.clone());
    }
    if let Some(act) = activation(layer, op)? {
        expect_operands(layer, ops, 1)?;
        let info = TensorInfo::new(float_output(layer, x.info.dtype)?, x.info.shape.clone());
        act.check(layer, &info)?;
        return Ok(info);
    }
    if float_unary(op).is_some() {
        expect_operands(layer, ops, 1)?;
        if op == "Round" && cfg.i64_or("decimals", 0)? != 0 {
            return Err(layer.error("round with decimals other than 0 is not supported"));
        }
        return Ok(TensorInfo::new(
            float_output(layer, x.info.dtype)?,
            x.info.shape.clone(),
        ));
    }
    if arithmetic(op).is_some() || matches!(op, "TrueDivide" | "Divide" | "Mod" | "FloorDivide") {
        expect_operands(layer, ops, 2)?;
        let dtype = promote(ops);
        numeric(layer, "operand", dtype)?;
        let dtype = match dtype {
            d if d.is_float() || !matches!(op, "TrueDivide" | "Divide") => d,
            // TensorFlow's truediv, in a tf.keras 2 file: wide integers divide in float64.
            DType::I32 | DType::I64 if super::saved_by_keras_2(layer) => DType::F64,
            _ => DType::F32,
        };
        return Ok(TensorInfo::new(dtype, broadcast_all(layer, ops)?));
    }
    if comparison(op).is_some() {
        expect_operands(layer, ops, 2)?;
        if op != "Equal" && op != "NotEqual" {
            numeric(layer, "operand", promote(ops))?;
        }
        return Ok(TensorInfo::new(DType::Bool, broadcast_all(layer, ops)?));
    }
    if logical(op).is_some() {
        expect_operands(layer, ops, 2)?;
        return Ok(TensorInfo::new(DType::Bool, broadcast_all(layer, ops)?));
    }
    match op {
        "LogicalNot" => {
            expect_operands(layer, ops, 1)?;
            Ok(TensorInfo::new(DType::Bool, x.info.shape.clone()))
        }
        "Cast" => {
            expect_operands(layer, ops, 1)?;
            let name = cfg.str_or("dtype", "")?;
            let dtype = DType::from_name(name).map_err(|_| {
                layer.error(format!("cast to {name:?}: not a supported element type"))
            })?;
            Ok(TensorInfo::new(dtype, x.info.shape.clone()))
        }
        "ExpandDims" => {
            expect_operands(layer, ops, 1)?;
            let axes = expanded_axes(layer, x.info.rank())?;
            let rank = x.info.rank() + axes.len();
            let mut rest = x.info.shape.iter();
            let shape = (0..rank)
                .map(|i| {
                    if axes.contains(&i) {
                        Some(Some(1))
                    } else {
                        rest.next().copied()
                    }
                })
                .collect::<Option<Vec<Dim>>>()
                .ok_or_else(|| layer.error("axis out of range"))?;
            Ok(TensorInfo::new(x.info.dtype, shape))
        }
        "Squeeze" => {
            expect_operands(layer, ops, 1)?;
            let axes = squeeze_axes(layer, &x.info)?;
            Ok(TensorInfo::new(
                x.info.dtype,
                reduced_shape(&x.info.shape, &axes, false),
            ))
        }
        "Reshape" => {
            expect_operands(layer, ops, 1)?;
            Ok(TensorInfo::new(x.info.dtype, reshaped(layer, &x.info)?.1))
        }
        "Transpose" => {
            expect_operands(layer, ops, 1)?;
            let perm = transpose_perm(layer, x.info.rank())?;
            Ok(TensorInfo::new(
                x.info.dtype,
                perm.iter().map(|&a| x.info.shape[a]).collect(),
            ))
        }
        "Concatenate" | "Stack" => {
            let rank = x.info.rank();
            let stacked = op == "Stack";
            let axis = checked_axis(layer, cfg.i64_or("axis", 0)?, rank + usize::from(stacked))?;
            let dtype = promote(ops);
            if stacked {
                check_agree(layer, ops, None)?;
                let mut shape = x.info.shape.clone();
                shape.insert(axis, Some(ops.len()));
                Ok(TensorInfo::new(dtype, shape))
            } else {
                let total = check_concat(layer, ops, axis)?;
                let mut shape = x.info.shape.clone();
                shape[axis] = total;
                Ok(TensorInfo::new(dtype, shape))
            }
        }
        "Sum" | "Mean" | "Max" | "Min" | "Prod" => {
            expect_operands(layer, ops, 1)?;
            if cfg.get("initial").is_some() || cfg.get("dtype").is_some() {
                return Err(layer.error("initial and dtype arguments are not supported"));
            }
            let axes = axes(layer, "axis", x.info.rank())?;
            let shape = reduced_shape(&x.info.shape, &axes, cfg.bool_or("keepdims", false)?);
            let dtype = reduction_type(layer, op, x.info.dtype)?;
            Ok(TensorInfo::new(dtype, shape))
        }
        "Matmul" => {
            expect_operands(layer, ops, 2)?;
            let dtype = promote(ops);
            if !matches!(
                dtype,
                DType::F32 | DType::F64 | DType::F16 | DType::I32 | DType::I64
            ) {
                return Err(layer.dtype_error(
                    "operand",
                    dtype,
                    "float32, float64, float16, int32, int64",
                ));
            }
            Ok(TensorInfo::new(
                dtype,
                matmul_shape(layer, &ops[0].info.shape, &ops[1].info.shape)?,
            ))
        }
        "Einsum" => {
            let dtype = einsum_type(layer, ops)?;
            let shapes: Vec<&[Dim]> = ops.iter().map(|o| o.info.shape.as_slice()).collect();
            let shape = einsum_equation(layer, ops.len())?
                .output_shape(&shapes)
                .map_err(|why| layer.error(why))?;
            Ok(TensorInfo::new(dtype, shape))
        }
        "RMSNorm" => {
            if !(1..=2).contains(&ops.len()) {
                return Err(layer.error(format!(
                    "rms_normalization takes x and an optional scale, got {} operand(s)",
                    ops.len()
                )));
            }
            require_float(layer, "input", x.info.dtype)?;
            norm_axes(layer, "axis", x.info.rank())?;
            if let Some(scale) = ops.get(1) {
                numeric(layer, "scale", scale.info.dtype)?;
                check_scale(layer, &x.info.shape, &scale.info.shape)?;
            }
            Ok(x.info.clone())
        }
        "LayerNorm" => {
            let (gamma, beta) = layer_norm_parts(layer, ops)?;
            require_float(layer, "input", x.info.dtype)?;
            let axes = norm_axes(layer, "axis", x.info.rank())?;
            for (what, part) in [("gamma", gamma), ("beta", beta)] {
                if let Some(part) = part {
                    numeric(layer, what, part.info.dtype)?;
                    let shape = layer_norm_shape(layer, &x.info, &axes, &part.info)?;
                    check_scale(layer, &x.info.shape, &shape)?;
                }
            }
            Ok(x.info.clone())
        }
        "Sort" | "Argsort" => {
            expect_operands(layer, ops, 1)?;
            if !matches!(
                x.info.dtype,
                DType::F32 | DType::F64 | DType::I32 | DType::I64
            ) {
                let want = "float32, float64, int32, int64";
                return Err(layer.dtype_error("input", x.info.dtype, want));
            }
            required_axis(layer, "sort/argsort", x.info.rank())?;
            let dtype = if op == "Sort" {
                x.info.dtype
            } else {
                DType::I32
            };
            Ok(TensorInfo::new(dtype, x.info.shape.clone()))
        }
        "Clip" => {
            expect_operands(layer, ops, 1)?;
            let dtype = if x.info.dtype == DType::Bool {
                DType::I32
            } else {
                x.info.dtype
            };
            clip_bounds(layer)?;
            Ok(TensorInfo::new(dtype, x.info.shape.clone()))
        }
        "Where" => {
            expect_operands(layer, ops, 3)?;
            let dtype = promote(&ops[1..]);
            Ok(TensorInfo::new(dtype, broadcast_all(layer, ops)?))
        }
        "Take" => {
            expect_operands(layer, ops, 2)?;
            let (data, indices) = (&ops[0], &ops[1]);
            if !matches!(indices.info.dtype, DType::I32 | DType::I64) || indices.kind == Kind::Float
            {
                return Err(layer.dtype_error("indices", indices.info.dtype, "int32, int64"));
            }
            let axis = required_axis(layer, "take", data.info.rank())?;
            let mut shape = data.info.shape[..axis].to_vec();
            shape.extend(&indices.info.shape);
            shape.extend(&data.info.shape[axis + 1..]);
            Ok(TensorInfo::new(data.info.dtype, shape))
        }
        "Argmax" | "Argmin" => {
            expect_operands(layer, ops, 1)?;
            numeric(layer, "input", x.info.dtype)?;
            let axis = required_axis(layer, "argmax/argmin", x.info.rank())?;
            let shape = reduced_shape(&x.info.shape, &[axis], cfg.bool_or("keepdims", false)?);
            // keras.ops gives int32 indices; TensorFlow's argmax int64 unless told (the
            // importer passes its `output_type` as `index_dtype`).
            let index = match cfg.str_or("index_dtype", "int32")? {
                "int32" => DType::I32,
                "int64" => DType::I64,
                other => {
                    return Err(layer.error(format!("index_dtype {other:?} must be int32 or int64")))
                }
            };
            Ok(TensorInfo::new(index, shape))
        }
        "GetItem" => {
            expect_operands(layer, ops, 1)?;
            let plan = index_plan(layer, &x.info)?;
            Ok(TensorInfo::new(x.info.dtype, plan.shape))
        }
        "Trunc" => {
            expect_operands(layer, ops, 1)?;
            numeric(layer, "input", x.info.dtype)?;
            Ok(x.info.clone())
        }
        "Isnan" | "Isinf" | "Isfinite" => {
            expect_operands(layer, ops, 1)?;
            numeric(layer, "input", x.info.dtype)?;
            Ok(TensorInfo::new(DType::Bool, x.info.shape.clone()))
        }
        "Logsumexp" | "Var" | "Std" => {
            expect_operands(layer, ops, 1)?;
            let axes = axes(layer, "axis", x.info.rank())?;
            let shape = reduced_shape(&x.info.shape, &axes, cfg.bool_or("keepdims", false)?);
            Ok(TensorInfo::new(float_output(layer, x.info.dtype)?, shape))
        }
        "OnesLike" | "ZerosLike" | "FullLike" => {
            expect_operands(layer, ops, if op == "FullLike" { 2 } else { 1 })?;
            if op == "FullLike" && !ops[1].is_weak() {
                return Err(layer.error("full_like needs a number as its fill value"));
            }
            let dtype = match cfg.get("dtype").and_then(|d| d.as_str()) {
                None => x.info.dtype,
                Some(name) => DType::from_name(name)
                    .map_err(|_| layer.error(format!("dtype {name:?} is not supported")))?,
            };
            Ok(TensorInfo::new(dtype, x.info.shape.clone()))
        }
        "Moveaxis" | "Swapaxes" => {
            expect_operands(layer, ops, 1)?;
            let perm = moved_axes(layer, op, x.info.rank())?;
            Ok(TensorInfo::new(
                x.info.dtype,
                perm.iter().map(|&a| x.info.shape[a]).collect(),
            ))
        }
        "Pad" => {
            if !(ops.len() == 1 || (ops.len() == 2 && ops[1].is_weak())) {
                return Err(layer.error("pad takes a tensor and at most a number to pad with"));
            }
            if cfg.str_or("mode", "constant")? != "constant" {
                return Err(layer.error("only pad mode \"constant\" is supported"));
            }
            let pads = pad_widths(layer, x.info.rank())?;
            let shape = x
                .info
                .shape
                .iter()
                .zip(&pads)
                .map(|(d, &(before, after))| match d {
                    Some(d) => d
                        .checked_add(before)
                        .and_then(|d| d.checked_add(after))
                        .map(Some),
                    None => Some(None),
                })
                .collect::<Option<Vec<Dim>>>()
                .ok_or_else(|| layer.error("pad widths make the output too large"))?;
            Ok(TensorInfo::new(x.info.dtype, shape))
        }
        "Flip" => {
            expect_operands(layer, ops, 1)?;
            axes(layer, "axis", x.info.rank())?;
            Ok(x.info.clone())
        }
        "Normalize" => {
            expect_operands(layer, ops, 1)?;
            if !matches!(cfg.i64_or("order", 2)?, 1 | 2) {
                return Err(layer.error("normalize of an order other than 1 or 2 is not supported"));
            }
            axes(layer, "axis", x.info.rank())?;
            Ok(TensorInfo::new(
                float_output(layer, x.info.dtype)?,
                x.info.shape.clone(),
            ))
        }
        "Repeat" => {
            expect_operands(layer, ops, 1)?;
            let (axis, repeats) = repeat_of(layer, &x.info)?;
            let mut shape = x.info.shape.clone();
            shape[axis] = shape[axis].and_then(|d| d.checked_mul(repeats));
            if shape[axis].is_none() {
                return Err(layer.error("repeat makes the axis too large"));
            }
            Ok(TensorInfo::new(x.info.dtype, shape))
        }
        "Softmax" => {
            // Over several axes (one axis is the activation above).
            expect_operands(layer, ops, 1)?;
            axes(layer, "axis", x.info.rank())?;
            Ok(TensorInfo::new(
                float_output(layer, x.info.dtype)?,
                x.info.shape.clone(),
            ))
        }
        "Norm" => {
            expect_operands(layer, ops, 1)?;
            let (axes, _) = norm_kind(layer, x.info.rank())?;
            let shape = reduced_shape(&x.info.shape, &axes, cfg.bool_or("keepdims", false)?);
            Ok(TensorInfo::new(float_output(layer, x.info.dtype)?, shape))
        }
        "OneHot" => {
            expect_operands(layer, ops, 1)?;
            if !x.info.dtype.is_integer() {
                return Err(layer.dtype_error("input", x.info.dtype, "an integer type"));
            }
            if cfg.bool_or("sparse", false)? {
                return Err(layer.error("sparse one_hot is not supported"));
            }
            let classes = cfg
                .opt_usize("num_classes")?
                .filter(|&n| n > 0)
                .ok_or_else(|| layer.error("one_hot needs a positive num_classes"))?;
            super::generated_len(layer, &[classes])?;
            let axis = checked_axis(layer, cfg.i64_or("axis", -1)?, x.info.rank() + 1)?;
            let mut shape = x.info.shape.clone();
            shape.insert(axis, Some(classes));
            let dtype = match cfg.get("dtype").and_then(|d| d.as_str()) {
                None => DType::F32,
                Some(name) => DType::from_name(name)
                    .map_err(|_| layer.error(format!("one_hot dtype {name:?} is not supported")))?,
            };
            Ok(TensorInfo::new(dtype, shape))
        }
        "Any" | "All" => {
            expect_operands(layer, ops, 1)?;
            let axes = axes(layer, "axis", x.info.rank())?;
            let shape = reduced_shape(&x.info.shape, &axes, cfg.bool_or("keepdims", false)?);
            Ok(TensorInfo::new(DType::Bool, shape))
        }
        "Cumsum" => {
            expect_operands(layer, ops, 1)?;
            if cfg.get("dtype").is_some() {
                return Err(layer.error("cumsum with a dtype is not supported"));
            }
            required_axis(layer, "cumsum", x.info.rank())?;
            let dtype = reduction_type(layer, "Sum", x.info.dtype)?;
            if !matches!(dtype, DType::F32 | DType::F64 | DType::I32 | DType::I64) {
                return Err(layer.dtype_error("input", dtype, "float32, float64, int32, int64"));
            }
            Ok(TensorInfo::new(dtype, x.info.shape.clone()))
        }
        "Tile" => {
            expect_operands(layer, ops, 1)?;
            let repeats = tile_repeats(layer, x.info.rank())?;
            if repeats.len() > x.info.rank() {
                return Err(
                    layer.error("tile repeats longer than the input's rank are not supported")
                );
            }
            let shape = x
                .info
                .shape
                .iter()
                .zip(&repeats)
                .map(|(d, &r)| match d {
                    Some(d) => d.checked_mul(r as usize).map(Some),
                    None => Some(None),
                })
                .collect::<Option<Vec<Dim>>>()
                .ok_or_else(|| layer.error("tile repeats make the output too large"))?;
            Ok(TensorInfo::new(x.info.dtype, shape))
        }
        other => Err(layer.error(format!(
            "keras.ops operation {other:?} is not supported; supported: {}",
            OPERATIONS.join(", ")
        ))),
    }
}

/// What a `GetItem` key does: one `Slice` over `slices` (axis, start, end, step), then a
/// `Squeeze` of the `dropped` axes (integer indices) and an `Unsqueeze` of the `added` ones
/// (`None`), giving `shape`.
struct IndexPlan {
    slices: Vec<(i64, i64, i64, i64)>,
    dropped: Vec<i64>,
    added: Vec<i64>,
    shape: Vec<Dim>,
}

/// The length of `start:stop:step` over `n` cells, as Python's `slice.indices` counts.
fn slice_len(n: usize, start: Option<i64>, stop: Option<i64>, step: i64) -> usize {
    let n = n as i64;
    let (lower, upper) = if step > 0 { (0, n) } else { (-1, n - 1) };
    let clamp = |v: Option<i64>, default: i64| match v {
        None => default,
        Some(v) if v < 0 => (v + n).max(lower),
        Some(v) => v.min(upper),
    };
    let (start, stop) = if step > 0 {
        (clamp(start, lower), clamp(stop, upper))
    } else {
        (clamp(start, upper), clamp(stop, lower))
    };
    let span = if step > 0 { stop - start } else { start - stop };
    if span > 0 {
        ((span - 1) as u64 / step.unsigned_abs() + 1) as usize
    } else {
        0
    }
}

fn index_plan(layer: &Layer, x: &TensorInfo) -> Result<IndexPlan, BuildError> {
    let key = Config::of(layer)?
        .get("key")
        .and_then(|v| v.as_array())
        .ok_or_else(|| layer.error("GetItem needs a \"key\" list"))?;
    let int = |v: &serde_json::Value| v.as_i64();
    let consuming = key.iter().filter(|e| e.is_object()).count();
    let ellipses = key.iter().filter(|e| e.as_str() == Some("...")).count();
    if ellipses > 1 || consuming > x.rank() {
        return Err(layer.error(format!(
            "key {} does not fit an input of shape {}",
            serde_json::Value::Array(key.clone()),
            format_shape(&x.shape)
        )));
    }
    let mut plan = IndexPlan {
        slices: vec![],
        dropped: vec![],
        added: vec![],
        shape: vec![],
    };
    let mut axis = 0usize;
    let full = |plan: &mut IndexPlan, axis: usize| plan.shape.push(x.shape[axis]);
    for entry in key {
        match entry {
            serde_json::Value::Null => {
                plan.added.push(plan.shape.len() as i64);
                plan.shape.push(Some(1));
            }
            serde_json::Value::String(s) if s == "..." => {
                for _ in 0..x.rank() - consuming {
                    full(&mut plan, axis);
                    axis += 1;
                }
            }
            serde_json::Value::Object(obj) if obj.contains_key("index") => {
                let i = obj
                    .get("index")
                    .and_then(int)
                    .ok_or_else(|| layer.error("index must be an integer"))?;
                if let Some(n) = x.shape[axis] {
                    if i >= n as i64 || i < -(n as i64) {
                        return Err(layer.error(format!(
                            "index {i} is out of range for axis {axis} of size {n}"
                        )));
                    }
                }
                let end = if i == -1 {
                    i64::MAX
                } else {
                    i.saturating_add(1)
                };
                plan.slices.push((axis as i64, i, end, 1));
                plan.dropped.push(axis as i64);
                axis += 1;
            }
            serde_json::Value::Object(obj) if obj.contains_key("slice") => {
                let parts = obj
                    .get("slice")
                    .and_then(|v| v.as_array())
                    .filter(|p| p.len() == 3);
                let parts = parts.ok_or_else(|| layer.error("a slice is [start, stop, step]"))?;
                let (start, stop) = (int(&parts[0]), int(&parts[1]));
                let step = int(&parts[2]).unwrap_or(1);
                if step == 0 {
                    return Err(layer.error("slice step cannot be zero"));
                }
                if start.is_some() || stop.is_some() || step != 1 {
                    let (from, to) = if step > 0 {
                        (0, i64::MAX)
                    } else {
                        (i64::MAX, i64::MIN)
                    };
                    plan.slices.push((
                        axis as i64,
                        start.unwrap_or(from),
                        stop.unwrap_or(to),
                        step,
                    ));
                }
                plan.shape
                    .push(x.shape[axis].map(|n| slice_len(n, start, stop, step)));
                axis += 1;
            }
            other => return Err(layer.error(format!("unsupported key entry {other}"))),
        }
    }
    while axis < x.rank() {
        full(&mut plan, axis);
        axis += 1;
    }
    Ok(plan)
}

/// The axes and ONNX reduction of `ops.norm`: the 2-norm (`ord` none or 2) or 1-norm of
/// vectors over one axis, the Frobenius norm (`ord` none or "fro") of matrices over two.
fn norm_kind(layer: &Layer, rank: usize) -> Result<(Vec<usize>, &'static str), BuildError> {
    let cfg = Config::of(layer)?;
    let axes = match cfg.get("axis") {
        None => (0..rank).collect(),
        Some(_) => axes(layer, "axis", rank)?,
    };
    let ord = cfg.get("ord");
    let reduce = match (
        axes.len(),
        ord.and_then(|o| o.as_f64()),
        ord.and_then(|o| o.as_str()),
    ) {
        (1, None, None) | (1, Some(2.0), _) => "ReduceL2",
        (1, Some(1.0), _) => "ReduceL1",
        (2, None, None) | (2, _, Some("fro")) => "ReduceL2",
        _ => {
            return Err(layer.error(format!(
                "norm with ord {} over {} axes is not supported (only the 1- and 2-norms of \
                 vectors and the Frobenius norm of matrices)",
                ord.map_or("null".to_string(), |o| o.to_string()),
                axes.len()
            )))
        }
    };
    Ok((axes, reduce))
}

/// `ops.tile`'s repeats, padded with ones in front to the input's rank (NumPy's rule for
/// fewer repeats than axes).
fn tile_repeats(layer: &Layer, rank: usize) -> Result<Vec<i64>, BuildError> {
    let cfg = Config::of(layer)?;
    let repeats = match cfg.get("repeats") {
        Some(v) if v.is_i64() => vec![v.as_i64().unwrap_or(1)],
        _ => cfg
            .opt_i64_list("repeats")?
            .ok_or_else(|| layer.error("tile needs repeats"))?,
    };
    if repeats.iter().any(|&r| r < 0) {
        return Err(layer.error("tile repeats must not be negative"));
    }
    let mut padded = vec![1; rank.saturating_sub(repeats.len())];
    padded.extend(repeats);
    Ok(padded)
}

/// NumPy's `mod` (the remainder takes the divisor's sign) or `floor_divide` of `a` and
/// `b`, both of `dtype`, written to `y`, computed as JAX does: from C's remainder (ONNX
/// `Mod` with `fmod`, the dividend's sign), the quotient `(a - r) / b` (exact, rounded for
/// floats), both corrected where the remainder is nonzero and the signs differ.
fn floor_mod(
    g: &mut GraphBuilder,
    name: &str,
    a: &str,
    b: &str,
    dtype: DType,
    modulo: bool,
    y: &str,
) {
    let r = g.node(
        "Mod",
        &[a, b],
        &format!("{name}/remainder"),
        vec![attr_int("fmod", 1)],
    );
    let zero = g.scalar(&format!("{name}/zero"), dtype, 0.0);
    let nonzero = g.node("Equal", &[&r, &zero], &format!("{name}/exact"), vec![]);
    let nonzero = g.node("Not", &[&nonzero], &format!("{name}/inexact"), vec![]);
    let r_negative = g.node(
        "Less",
        &[&r, &zero],
        &format!("{name}/remainder_negative"),
        vec![],
    );
    let b_negative = g.node(
        "Less",
        &[b, &zero],
        &format!("{name}/divisor_negative"),
        vec![],
    );
    let differ = g.node(
        "Xor",
        &[&r_negative, &b_negative],
        &format!("{name}/signs_differ"),
        vec![],
    );
    let fix = g.node(
        "And",
        &[&nonzero, &differ],
        &format!("{name}/corrected"),
        vec![],
    );
    if modulo {
        let moved = g.node("Add", &[&r, b], &format!("{name}/moved"), vec![]);
        g.node_into("Where", &[&fix, &moved, &r], y, vec![]);
    } else {
        let whole = g.node("Sub", &[a, &r], &format!("{name}/whole"), vec![]);
        let mut q = g.node("Div", &[&whole, b], &format!("{name}/quotient"), vec![]);
        if dtype.is_float() {
            q = g.node("Round", &[&q], &format!("{name}/rounded"), vec![]);
        }
        let one = g.scalar(&format!("{name}/one"), dtype, 1.0);
        let lower = g.node("Sub", &[&q, &one], &format!("{name}/lower"), vec![]);
        g.node_into("Where", &[&fix, &lower, &q], y, vec![]);
    }
}

/// The permutation `moveaxis` (`source`, `destination`: one axis or lists of one length)
/// or `swapaxes` (`axis1`, `axis2`) makes, as NumPy's.
fn moved_axes(layer: &Layer, op: &str, rank: usize) -> Result<Vec<usize>, BuildError> {
    let cfg = Config::of(layer)?;
    let list = |key: &str| -> Result<Vec<usize>, BuildError> {
        cfg.axes_or(key, 0)?
            .into_iter()
            .map(|a| checked_axis(layer, a, rank))
            .collect()
    };
    if op == "Swapaxes" {
        let (a, b) = (list("axis1")?, list("axis2")?);
        let (&[a], &[b]) = (a.as_slice(), b.as_slice()) else {
            return Err(layer.error("swapaxes takes one axis1 and one axis2"));
        };
        let mut perm: Vec<usize> = (0..rank).collect();
        perm.swap(a, b);
        return Ok(perm);
    }
    let (source, destination) = (list("source")?, list("destination")?);
    let mut unique = source.clone();
    unique.sort_unstable();
    unique.dedup();
    let mut targets = destination.clone();
    targets.sort_unstable();
    targets.dedup();
    if source.len() != destination.len()
        || unique.len() != source.len()
        || targets.len() != destination.len()
    {
        return Err(layer.error("moveaxis needs as many distinct sources as destinations"));
    }
    let mut rest = (0..rank).filter(|a| !source.contains(a));
    let mut perm = vec![usize::MAX; rank];
    for (&s, &d) in source.iter().zip(&destination) {
        perm[d] = s;
    }
    for slot in perm.iter_mut().filter(|p| **p == usize::MAX) {
        *slot = rest.next().unwrap_or_default();
    }
    Ok(perm)
}

/// `pad`'s widths as (before, after) per axis: one pair per axis, one pair for every axis,
/// or one number for every side.
fn pad_widths(layer: &Layer, rank: usize) -> Result<Vec<(usize, usize)>, BuildError> {
    let bad =
        || layer.error("pad_width must be a number, a pair, or a pair per axis, none negative");
    let value = Config::of(layer)?.get("pad_width").ok_or_else(bad)?;
    let width = |v: &serde_json::Value| v.as_u64().and_then(|n| usize::try_from(n).ok());
    let pair = |v: &serde_json::Value| match v.as_array().map(Vec::as_slice) {
        Some([a, b]) => width(a).zip(width(b)),
        Some([a]) => width(a).map(|a| (a, a)),
        _ => width(v).map(|a| (a, a)),
    };
    match value.as_array().map(Vec::as_slice) {
        Some(items) if items.len() == rank && items.iter().all(|i| i.is_array()) => {
            items.iter().map(|i| pair(i).ok_or_else(bad)).collect()
        }
        _ => pair(value).map(|p| vec![p; rank]).ok_or_else(bad),
    }
}

/// The one `axis` an operation needs (`take`, `argmax`, `cumsum`, `repeat`; Keras' `None`,
/// over the flattened input, is refused), as an index into a shape of `rank`.
fn required_axis(layer: &Layer, what: &str, rank: usize) -> Result<usize, BuildError> {
    let axis = match Config::of(layer)?.get("axis") {
        Some(v) => v
            .as_i64()
            .ok_or_else(|| layer.error("axis must be an integer"))?,
        None => {
            return Err(layer.error(format!(
                "{what} with axis=None (over the flattened input) is not supported"
            )))
        }
    };
    checked_axis(layer, axis, rank)
}

/// `repeat`'s axis and count: one count, over an axis of static size.
fn repeat_of(layer: &Layer, x: &TensorInfo) -> Result<(usize, usize), BuildError> {
    let cfg = Config::of(layer)?;
    let repeats = cfg.opt_usize("repeats").ok().flatten().ok_or_else(|| {
        layer.error("repeat needs one non-negative count (lists are not supported)")
    })?;
    let axis = required_axis(layer, "repeat", x.rank())?;
    if x.shape[axis].is_none() {
        return Err(layer.error(format!(
            "repeat over the dynamic axis {axis} is not supported"
        )));
    }
    Ok((axis, repeats))
}

/// [`axes`] of the `axis` key as ONNX takes them.
fn axis_list(layer: &Layer, rank: usize) -> Result<Vec<i64>, BuildError> {
    Ok(axes(layer, "axis", rank)?
        .iter()
        .map(|&a| a as i64)
        .collect())
}

/// `expand_dims`' axes (required), counted in the output's rank, sorted.
fn expanded_axes(layer: &Layer, rank: usize) -> Result<Vec<usize>, BuildError> {
    if Config::of(layer)?.get("axis").is_none() {
        return Err(layer.error("expand_dims needs an axis"));
    }
    let n = Config::of(layer)?.axes_or("axis", 0)?.len();
    axes(layer, "axis", rank + n)
}

fn squeeze_axes(layer: &Layer, x: &TensorInfo) -> Result<Vec<usize>, BuildError> {
    if Config::of(layer)?.get("axis").is_none() {
        if x.shape.iter().any(Option::is_none) {
            return Err(layer.error(format!(
                "squeeze with axis=None of {}: which dynamic dimensions are 1 is unknown",
                format_shape(&x.shape)
            )));
        }
        return Ok((0..x.rank()).filter(|&i| x.shape[i] == Some(1)).collect());
    }
    let axes = axes(layer, "axis", x.rank())?;
    if let Some(&a) = axes.iter().find(|&&a| x.shape[a].is_some_and(|d| d != 1)) {
        return Err(layer.error(format!(
            "cannot squeeze axis {a} of {}: its size is not 1",
            format_shape(&x.shape)
        )));
    }
    Ok(axes)
}

fn reduction_type(layer: &Layer, op: &str, dtype: DType) -> Result<DType, BuildError> {
    Ok(match (op, dtype) {
        ("Mean", d) if d.is_float() => d,
        ("Mean", DType::Bool) => return Err(layer.dtype_error("input", dtype, "a number type")),
        // TensorFlow's reduce_mean of integers divides as integers; not converted.
        ("Mean", _) if super::saved_by_keras_2(layer) => {
            return Err(layer.dtype_error("input", dtype, "a float type (tf.keras 2)"))
        }
        ("Mean", _) => DType::F32,
        // As Keras' JAX backend: sums of small integers and bools count in int32.
        ("Sum" | "Prod", DType::Bool | DType::I8 | DType::I16) => DType::I32,
        ("Sum" | "Prod", DType::U8) => {
            return Err(layer.dtype_error("input", dtype, "float, int32, int64, int8, int16, bool"))
        }
        ("Max" | "Min", DType::Bool) => {
            return Err(layer.dtype_error("input", dtype, "a number type"))
        }
        (_, d) => d,
    })
}

/// `ops.layer_normalization`'s gamma and beta among the operands, as the importer's
/// config keys `gamma` and `beta` say which follow `x`.
fn layer_norm_parts<'o>(
    layer: &Layer,
    ops: &'o [Operand],
) -> Result<(Option<&'o Operand>, Option<&'o Operand>), BuildError> {
    let cfg = Config::of(layer)?;
    let (has_gamma, has_beta) = (cfg.bool_or("gamma", false)?, cfg.bool_or("beta", false)?);
    let expected = 1 + usize::from(has_gamma) + usize::from(has_beta);
    if ops.len() != expected {
        return Err(layer.error(format!(
            "layer_normalization with gamma {has_gamma} and beta {has_beta} takes {expected} \
             operand(s), got {}",
            ops.len()
        )));
    }
    let mut rest = ops[1..].iter();
    let gamma = if has_gamma { rest.next() } else { None };
    let beta = if has_beta { rest.next() } else { None };
    Ok((gamma, beta))
}

/// The shape gamma or beta multiplies with, as Keras' `_broadcast` makes it: reshaped to
/// the normalized axes' dimensions (ones elsewhere) when its rank differs from the input's
/// and the axes are not the last one alone; otherwise as it is.
fn layer_norm_shape(
    layer: &Layer,
    x: &TensorInfo,
    axes: &[usize],
    part: &TensorInfo,
) -> Result<Vec<Dim>, BuildError> {
    let rank = x.rank();
    if part.rank() == rank || axes == [rank - 1] {
        return Ok(part.shape.clone());
    }
    let mut shape = vec![Some(1); rank];
    for &a in axes {
        shape[a] = x.shape[a];
    }
    match (static_product(&shape), static_product(&part.shape)) {
        (Some(a), Some(b)) if a == b => Ok(shape),
        _ => Err(layer.error(format!(
            "a gamma or beta of shape {} does not reshape to the normalized axes {}",
            format_shape(&part.shape),
            format_shape(&shape)
        ))),
    }
}

/// The config's `subscripts` for `operands` operands.
fn einsum_equation(layer: &Layer, operands: usize) -> Result<Equation, BuildError> {
    let subscripts = Config::of(layer)?
        .get("subscripts")
        .and_then(|v| v.as_str())
        .ok_or_else(|| layer.error("config key \"subscripts\" (a string) is required"))?;
    Equation::parse(subscripts, operands).map_err(|why| layer.error(why))
}

/// Keras' result type of an einsum: the operands' promoted type, except that int8
/// operands alone give int32 (Keras asks for int32 accumulation there).
fn einsum_type(layer: &Layer, ops: &[Operand]) -> Result<DType, BuildError> {
    let dtype = promote(ops);
    match dtype {
        DType::Bool => Err(layer.dtype_error("operand", dtype, "a number type")),
        DType::I8 if ops.iter().all(|o| o.info.dtype == DType::I8) => Ok(DType::I32),
        d => Ok(d),
    }
}

/// The type ONNX Runtime's `Einsum` computes `dtype` in: its own float and 32/64-bit
/// integer types; narrower integers in int32, whose wrapped result casts back to the
/// same value.
fn einsum_compute_type(dtype: DType) -> DType {
    match dtype {
        DType::I8 | DType::I16 | DType::U8 => DType::I32,
        d => d,
    }
}

fn clip_bounds(layer: &Layer) -> Result<(f64, f64), BuildError> {
    let cfg = Config::of(layer)?;
    let bound = |key: &str| {
        cfg.get(key)
            .and_then(|v| v.as_f64())
            .ok_or_else(|| layer.error(format!("clip needs a number {key:?}")))
    };
    Ok((bound("x_min")?, bound("x_max")?))
}

/// A constant operand's values as a weight of `dtype`.
fn converted(w: &Tensor, dtype: DType) -> Tensor {
    if w.dtype == dtype {
        return w.clone();
    }
    Tensor::from_f64_values(dtype, w.shape.clone(), &w.to_f64_vec())
}

/// Operand `o` as a value of type `to`.
fn value(
    layer: &Layer,
    g: &mut GraphBuilder,
    inputs: &[ValueRef<'_>],
    o: &Operand,
    to: DType,
) -> Result<String, BuildError> {
    let hint = format!("{}/operand", layer.name);
    match o.kind {
        Kind::Tensor => Ok(cast_to(g, layer, inputs[o.index].name, o.info.dtype, to)),
        Kind::Array => {
            let t = converted(&layer.weights[o.index], to);
            Ok(g.initializer_owned(&hint, t))
        }
        Kind::Float | Kind::Int => {
            let v = layer.weights[o.index]
                .to_f64_vec()
                .first()
                .copied()
                .unwrap_or(0.0);
            Ok(g.scalar(&hint, to, v))
        }
    }
}

fn values(
    layer: &Layer,
    g: &mut GraphBuilder,
    inputs: &[ValueRef<'_>],
    ops: &[Operand],
    to: DType,
) -> Result<Vec<String>, BuildError> {
    ops.iter().map(|o| value(layer, g, inputs, o, to)).collect()
}

fn input_infos(layer: &Layer, inputs: &[ValueRef<'_>]) -> Result<Vec<Operand>, BuildError> {
    let infos: Vec<TensorInfo> = inputs.iter().map(|v| v.info.clone()).collect();
    operands(layer, &infos)
}

impl LayerConverter for KerasOperation {
    fn masking(&self, _layer: &Layer) -> Masking {
        Masking::Drops
    }

    fn infer(&self, layer: &Layer, inputs: &[TensorInfo]) -> Result<TensorInfo, BuildError> {
        let ops = operands(layer, inputs)?;
        infer_output(layer, &ops)
    }

    fn emit(
        &self,
        layer: &Layer,
        inputs: &[ValueRef<'_>],
        output: ValueRef<'_>,
        g: &mut GraphBuilder,
    ) -> Result<String, BuildError> {
        let ops = input_infos(layer, inputs)?;
        let out = infer_output(layer, &ops)?;
        let op = op_name(layer)?;
        let cfg = Config::of(layer)?;
        let name = layer.name.as_str();
        let y = output.name;
        let x = &ops[0];
        if let Some(onnx) = same_type_unary(op) {
            let v = value(layer, g, inputs, x, out.dtype)?;
            let args: Vec<&str> = if op == "Square" {
                vec![&v, &v]
            } else {
                vec![&v]
            };
            g.node_into(onnx, &args, y, vec![]);
        } else if let Some(act) = activation(layer, op)? {
            let v = value(layer, g, inputs, x, out.dtype)?;
            act.emit(g, &v, &out, name, y);
        } else if let Some(onnx) = float_unary(op) {
            let v = value(layer, g, inputs, x, out.dtype)?;
            match op {
                "Rsqrt" => {
                    let root = g.node("Sqrt", &[&v], &format!("{name}/sqrt"), vec![]);
                    g.node_into("Reciprocal", &[&root], y, vec![]);
                }
                "Log1p" => {
                    let one = g.scalar(&format!("{name}/one"), out.dtype, 1.0);
                    let sum = g.node("Add", &[&v, &one], &format!("{name}/plus_one"), vec![]);
                    g.node_into("Log", &[&sum], y, vec![]);
                }
                "Log2" | "Log10" => {
                    let base: f64 = if op == "Log2" { 2.0 } else { 10.0 };
                    let ln = g.node("Log", &[&v], &format!("{name}/ln"), vec![]);
                    let scale = g.scalar(&format!("{name}/scale"), out.dtype, 1.0 / base.ln());
                    g.node_into("Mul", &[&ln, &scale], y, vec![]);
                }
                "LogSigmoid" => {
                    let negated = g.node("Neg", &[&v], &format!("{name}/negated"), vec![]);
                    let soft = g.node("Softplus", &[&negated], &format!("{name}/softplus"), vec![]);
                    g.node_into("Neg", &[&soft], y, vec![]);
                }
                "Expm1" => {
                    let one = g.scalar(&format!("{name}/one"), out.dtype, 1.0);
                    let e = g.node("Exp", &[&v], &format!("{name}/exp"), vec![]);
                    g.node_into("Sub", &[&e, &one], y, vec![]);
                }
                _ => g.node_into(onnx, &[&v], y, vec![]),
            }
        } else if let Some(onnx) = arithmetic(op) {
            let v = values(layer, g, inputs, &ops, out.dtype)?;
            g.node_into(onnx, &[&v[0], &v[1]], y, vec![]);
        } else if matches!(op, "Mod" | "FloorDivide") {
            let v = values(layer, g, inputs, &ops, out.dtype)?;
            floor_mod(g, name, &v[0], &v[1], out.dtype, op == "Mod", y);
        } else if matches!(op, "TrueDivide" | "Divide") {
            let v = values(layer, g, inputs, &ops, out.dtype)?;
            g.node_into("Div", &[&v[0], &v[1]], y, vec![]);
        } else if let Some(onnx) = comparison(op) {
            let v = values(layer, g, inputs, &ops, promote(&ops))?;
            if op == "NotEqual" {
                let eq = g.node("Equal", &[&v[0], &v[1]], &format!("{name}/equal"), vec![]);
                g.node_into("Not", &[&eq], y, vec![]);
            } else {
                g.node_into(onnx, &[&v[0], &v[1]], y, vec![]);
            }
        } else if let Some(onnx) = logical(op) {
            let v = values(layer, g, inputs, &ops, DType::Bool)?;
            g.node_into(onnx, &[&v[0], &v[1]], y, vec![]);
        } else {
            self.emit_structural(layer, op, &cfg, &ops, &out, inputs, y, g)?;
        }
        Ok(y.to_string())
    }
}

impl KerasOperation {
    #[allow(clippy::too_many_arguments)]
    fn emit_structural(
        &self,
        layer: &Layer,
        op: &str,
        cfg: &Config<'_>,
        ops: &[Operand],
        out: &TensorInfo,
        inputs: &[ValueRef<'_>],
        y: &str,
        g: &mut GraphBuilder,
    ) -> Result<(), BuildError> {
        let name = layer.name.as_str();
        let x = &ops[0];
        match op {
            "LogicalNot" => {
                let v = value(layer, g, inputs, x, DType::Bool)?;
                g.node_into("Not", &[&v], y, vec![]);
            }
            "Cast" => {
                let v = value(layer, g, inputs, x, x.info.dtype)?;
                if out.dtype == x.info.dtype {
                    g.node_into("Identity", &[&v], y, vec![]);
                } else {
                    g.node_into(
                        "Cast",
                        &[&v],
                        y,
                        vec![attr_int("to", out.dtype.onnx() as i64)],
                    );
                }
            }
            "ExpandDims" => {
                let v = value(layer, g, inputs, x, x.info.dtype)?;
                let axes: Vec<i64> = expanded_axes(layer, x.info.rank())?
                    .iter()
                    .map(|&a| a as i64)
                    .collect();
                let axes = g.int64s(&format!("{name}/axes"), &axes);
                g.node_into("Unsqueeze", &[&v, &axes], y, vec![]);
            }
            "Squeeze" => {
                let v = value(layer, g, inputs, x, x.info.dtype)?;
                let axes: Vec<i64> = squeeze_axes(layer, &x.info)?
                    .iter()
                    .map(|&a| a as i64)
                    .collect();
                let axes = g.int64s(&format!("{name}/axes"), &axes);
                g.node_into("Squeeze", &[&v, &axes], y, vec![]);
            }
            "Reshape" => {
                let v = value(layer, g, inputs, x, x.info.dtype)?;
                let (target, _) = reshaped(layer, &x.info)?;
                let shape = g.int64s(&format!("{name}/shape"), &target);
                g.node_into("Reshape", &[&v, &shape], y, vec![]);
            }
            "Transpose" => {
                let v = value(layer, g, inputs, x, x.info.dtype)?;
                let perm: Vec<i64> = transpose_perm(layer, x.info.rank())?
                    .iter()
                    .map(|&a| a as i64)
                    .collect();
                g.node_into("Transpose", &[&v], y, vec![attr_ints("perm", &perm)]);
            }
            "Concatenate" => {
                let v = values(layer, g, inputs, ops, out.dtype)?;
                let axis = checked_axis(layer, cfg.i64_or("axis", 0)?, out.rank())? as i64;
                let refs: Vec<&str> = v.iter().map(String::as_str).collect();
                g.node_into("Concat", &refs, y, vec![attr_int("axis", axis)]);
            }
            "Stack" => {
                let v = values(layer, g, inputs, ops, out.dtype)?;
                let axis = checked_axis(layer, cfg.i64_or("axis", 0)?, out.rank())? as i64;
                let axes = g.int64s(&format!("{name}/axes"), &[axis]);
                let parts: Vec<String> = v
                    .iter()
                    .map(|p| g.node("Unsqueeze", &[p, &axes], &format!("{name}/part"), vec![]))
                    .collect();
                let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
                g.node_into("Concat", &refs, y, vec![attr_int("axis", axis)]);
            }
            "Sum" | "Mean" | "Max" | "Min" | "Prod" => {
                let v = value(layer, g, inputs, x, out.dtype)?;
                let reduce = match op {
                    "Sum" => "ReduceSum",
                    "Mean" => "ReduceMean",
                    "Max" => "ReduceMax",
                    "Min" => "ReduceMin",
                    _ => "ReduceProd",
                };
                let axes = axis_list(layer, x.info.rank())?;
                let keepdims = i64::from(cfg.bool_or("keepdims", false)?);
                let axes = g.int64s(&format!("{name}/axes"), &axes);
                g.node_into(
                    reduce,
                    &[&v, &axes],
                    y,
                    vec![attr_int("keepdims", keepdims)],
                );
            }
            "Matmul" => {
                let v = values(layer, g, inputs, ops, out.dtype)?;
                g.node_into("MatMul", &[&v[0], &v[1]], y, vec![]);
            }
            "Einsum" => {
                let compute = einsum_compute_type(out.dtype);
                let v = values(layer, g, inputs, ops, compute)?;
                let refs: Vec<&str> = v.iter().map(String::as_str).collect();
                let equation = einsum_equation(layer, ops.len())?.render();
                let attrs = vec![attr_string("equation", &equation)];
                if compute == out.dtype {
                    g.node_into("Einsum", &refs, y, attrs);
                } else {
                    let wide = g.node("Einsum", &refs, &format!("{name}/einsum"), attrs);
                    g.node_into(
                        "Cast",
                        &[&wide],
                        y,
                        vec![attr_int("to", out.dtype.onnx() as i64)],
                    );
                }
            }
            "RMSNorm" => {
                let axes = norm_axes(layer, "axis", x.info.rank())?;
                let epsilon = cfg.f64_or("epsilon", 1e-7)?;
                // Keras converts the scale to the type it computes in.
                let compute = normalization_type(x.info.dtype);
                let scale = match ops.get(1) {
                    Some(scale) => Some((value(layer, g, inputs, scale, compute)?, compute)),
                    None => None,
                };
                let v = value(layer, g, inputs, x, x.info.dtype)?;
                let input = ValueRef {
                    name: &v,
                    info: &x.info,
                    mask: None,
                };
                let scale = scale.as_ref().map(|(v, d)| (v.as_str(), *d));
                rms_normalize(g, input, &axes, epsilon, scale, name, y);
            }
            "LayerNorm" => {
                let (gamma, beta) = layer_norm_parts(layer, ops)?;
                let axes = norm_axes(layer, "axis", x.info.rank())?;
                let epsilon = cfg.f64_or("epsilon", 1e-7)?;
                // Keras converts gamma and beta to the type it computes in.
                let compute = normalization_type(x.info.dtype);
                let v = value(layer, g, inputs, x, compute)?;
                let axes_i64: Vec<i64> = axes.iter().map(|&a| a as i64).collect();
                let (centered, std) = super::layer_normalization::centered_and_deviation(
                    g, &v, &axes_i64, epsilon, compute, name,
                );
                // `rms_scaling` (deprecated in Keras) divides x itself by the deviation and
                // leaves beta out.
                let rms_scaling = cfg.bool_or("rms_scaling", false)?;
                let top = if rms_scaling { v.clone() } else { centered };
                let mut steps = vec![("normalized", "Div", std)];
                let beta = if rms_scaling { None } else { beta };
                for (what, part, op) in [("gamma", gamma, "Mul"), ("beta", beta, "Add")] {
                    let Some(part) = part else { continue };
                    let mut p = value(layer, g, inputs, part, compute)?;
                    let shape = layer_norm_shape(layer, &x.info, &axes, &part.info)?;
                    if shape != part.info.shape {
                        let dims: Vec<i64> =
                            shape.iter().map(|d| d.map_or(-1, |n| n as i64)).collect();
                        let dims = g.int64s(&format!("{name}/{what}_shape"), &dims);
                        p = g.node("Reshape", &[&p, &dims], &format!("{name}/{what}"), vec![]);
                    }
                    steps.push((what, op, p));
                }
                let last = steps.len() - 1;
                let mut acc = top;
                for (i, (what, op, operand)) in steps.into_iter().enumerate() {
                    if i == last && compute == out.dtype {
                        g.node_into(op, &[&acc, &operand], y, vec![]);
                    } else {
                        acc = g.node(op, &[&acc, &operand], &format!("{name}/{what}"), vec![]);
                    }
                }
                if compute != out.dtype {
                    let to = vec![attr_int("to", out.dtype.onnx() as i64)];
                    g.node_into("Cast", &[&acc], y, to);
                }
            }
            "Sort" | "Argsort" => {
                // TopK over the whole axis, smallest first; equal values keep their order,
                // as JAX's stable sort does.
                let v = value(layer, g, inputs, x, x.info.dtype)?;
                let axis = required_axis(layer, "sort/argsort", x.info.rank())? as i64;
                let count = g.node(
                    "Shape",
                    &[&v],
                    &format!("{name}/count"),
                    vec![attr_int("start", axis), attr_int("end", axis + 1)],
                );
                let attrs = vec![
                    attr_int("axis", axis),
                    attr_int("largest", 0),
                    attr_int("sorted", 1),
                ];
                // TopK's two outputs are both required: each gets a name.
                let order = g.fresh(&format!("{name}/order"));
                if op == "Sort" {
                    g.node_outputs("TopK", &[&v, &count], &[y, &order], attrs);
                } else {
                    let sorted = g.fresh(&format!("{name}/sorted"));
                    g.node_outputs("TopK", &[&v, &count], &[&sorted, &order], attrs);
                    let to = vec![attr_int("to", DType::I32.onnx() as i64)];
                    g.node_into("Cast", &[&order], y, to);
                }
            }
            "Clip" => {
                let v = value(layer, g, inputs, x, out.dtype)?;
                let (lo, hi) = clip_bounds(layer)?;
                let lo = g.scalar(&format!("{name}/min"), out.dtype, lo);
                let hi = g.scalar(&format!("{name}/max"), out.dtype, hi);
                g.node_into("Clip", &[&v, &lo, &hi], y, vec![]);
            }
            "Where" => {
                let c = value(layer, g, inputs, x, DType::Bool)?;
                let a = value(layer, g, inputs, &ops[1], out.dtype)?;
                let b = value(layer, g, inputs, &ops[2], out.dtype)?;
                g.node_into("Where", &[&c, &a, &b], y, vec![]);
            }
            "Take" => {
                let data = value(layer, g, inputs, x, out.dtype)?;
                let idx = value(layer, g, inputs, &ops[1], ops[1].info.dtype)?;
                let axis = required_axis(layer, "take", x.info.rank())? as i64;
                g.node_into("Gather", &[&data, &idx], y, vec![attr_int("axis", axis)]);
            }
            "Argmax" | "Argmin" => {
                let v = value(layer, g, inputs, x, x.info.dtype)?;
                let axis = required_axis(layer, "argmax/argmin", x.info.rank())? as i64;
                let keepdims = i64::from(cfg.bool_or("keepdims", false)?);
                let onnx = if op == "Argmax" { "ArgMax" } else { "ArgMin" };
                let attrs = vec![attr_int("axis", axis), attr_int("keepdims", keepdims)];
                if out.dtype == DType::I64 {
                    g.node_into(onnx, &[&v], y, attrs);
                } else {
                    let idx = g.node(onnx, &[&v], &format!("{name}/index"), attrs);
                    g.node_into(
                        "Cast",
                        &[&idx],
                        y,
                        vec![attr_int("to", out.dtype.onnx() as i64)],
                    );
                }
            }
            "Trunc" if !x.info.dtype.is_float() => {
                let v = value(layer, g, inputs, x, x.info.dtype)?;
                g.node_into("Identity", &[&v], y, vec![]);
            }
            "Trunc" => {
                let v = value(layer, g, inputs, x, x.info.dtype)?;
                let size = g.node("Abs", &[&v], &format!("{name}/abs"), vec![]);
                let whole = g.node("Floor", &[&size], &format!("{name}/floor"), vec![]);
                let sign = g.node("Sign", &[&v], &format!("{name}/sign"), vec![]);
                g.node_into("Mul", &[&sign, &whole], y, vec![]);
            }
            "Isnan" | "Isinf" | "Isfinite" => {
                let float = if x.info.dtype.is_float() {
                    x.info.dtype
                } else {
                    DType::F32
                };
                let v = value(layer, g, inputs, x, float)?;
                match op {
                    "Isnan" => g.node_into("IsNaN", &[&v], y, vec![]),
                    "Isinf" => g.node_into("IsInf", &[&v], y, vec![]),
                    _ => {
                        let nan = g.node("IsNaN", &[&v], &format!("{name}/nan"), vec![]);
                        let inf = g.node("IsInf", &[&v], &format!("{name}/inf"), vec![]);
                        let either =
                            g.node("Or", &[&nan, &inf], &format!("{name}/not_finite"), vec![]);
                        g.node_into("Not", &[&either], y, vec![]);
                    }
                }
            }
            "Logsumexp" | "Var" | "Std" => {
                let v = value(layer, g, inputs, x, out.dtype)?;
                let axes = axis_list(layer, x.info.rank())?;
                let axes = g.int64s(&format!("{name}/axes"), &axes);
                let keepdims = i64::from(cfg.bool_or("keepdims", false)?);
                if op == "Logsumexp" {
                    g.node_into(
                        "ReduceLogSumExp",
                        &[&v, &axes],
                        y,
                        vec![attr_int("keepdims", keepdims)],
                    );
                } else {
                    let mean = g.node(
                        "ReduceMean",
                        &[&v, &axes],
                        &format!("{name}/mean"),
                        vec![attr_int("keepdims", 1)],
                    );
                    let centered = g.node("Sub", &[&v, &mean], &format!("{name}/centered"), vec![]);
                    let squared = g.node(
                        "Mul",
                        &[&centered, &centered],
                        &format!("{name}/squared"),
                        vec![],
                    );
                    let variance = if op == "Var" {
                        y.to_string()
                    } else {
                        g.fresh(&format!("{name}/variance"))
                    };
                    g.node_into(
                        "ReduceMean",
                        &[&squared, &axes],
                        &variance,
                        vec![attr_int("keepdims", keepdims)],
                    );
                    if op == "Std" {
                        g.node_into("Sqrt", &[&variance], y, vec![]);
                    }
                }
            }
            "OnesLike" | "ZerosLike" | "FullLike" => {
                let v = value(layer, g, inputs, x, x.info.dtype)?;
                let fill = match op {
                    "OnesLike" => 1.0,
                    "ZerosLike" => 0.0,
                    _ => layer.weights[ops[1].index]
                        .to_f64_vec()
                        .first()
                        .copied()
                        .unwrap_or(0.0),
                };
                let fill = g.scalar(&format!("{name}/fill"), out.dtype, fill);
                let shape = g.node("Shape", &[&v], &format!("{name}/shape"), vec![]);
                g.node_into("Expand", &[&fill, &shape], y, vec![]);
            }
            "Moveaxis" | "Swapaxes" => {
                let v = value(layer, g, inputs, x, x.info.dtype)?;
                let perm: Vec<i64> = moved_axes(layer, op, x.info.rank())?
                    .iter()
                    .map(|&a| a as i64)
                    .collect();
                g.node_into("Transpose", &[&v], y, vec![attr_ints("perm", &perm)]);
            }
            "Pad" => {
                let v = value(layer, g, inputs, x, x.info.dtype)?;
                let widths = pad_widths(layer, x.info.rank())?;
                let mut pads: Vec<i64> = widths.iter().map(|&(b, _)| b as i64).collect();
                pads.extend(widths.iter().map(|&(_, a)| a as i64));
                let pads = g.int64s(&format!("{name}/pads"), &pads);
                let fill = match ops.get(1) {
                    Some(o) => layer.weights[o.index]
                        .to_f64_vec()
                        .first()
                        .copied()
                        .unwrap_or(0.0),
                    None => cfg.f64_or("constant_values", 0.0)?,
                };
                let fill = g.scalar(&format!("{name}/fill"), x.info.dtype, fill);
                g.node_into("Pad", &[&v, &pads, &fill], y, vec![]);
            }
            "Flip" => {
                let v = value(layer, g, inputs, x, x.info.dtype)?;
                let axes = axis_list(layer, x.info.rank())?;
                let n = axes.len();
                let starts = g.int64s(&format!("{name}/starts"), &vec![-1; n]);
                let ends = g.int64s(&format!("{name}/ends"), &vec![i64::MIN; n]);
                let steps = g.int64s(&format!("{name}/steps"), &vec![-1; n]);
                let axes = g.int64s(&format!("{name}/axes"), &axes);
                g.node_into("Slice", &[&v, &starts, &ends, &axes, &steps], y, vec![]);
            }
            "Normalize" => {
                let v = value(layer, g, inputs, x, out.dtype)?;
                let axes = axes(layer, "axis", x.info.rank())?;
                let epsilon = cfg.f64_or("epsilon", 1e-7)?;
                if cfg.i64_or("order", 2)? == 2 {
                    let input = ValueRef {
                        name: &v,
                        info: out,
                        mask: None,
                    };
                    super::unit_normalization::l2_normalize(
                        g,
                        input,
                        &axes,
                        1.0 / epsilon,
                        name,
                        Some(y),
                    );
                } else {
                    let axes: Vec<i64> = axes.iter().map(|&a| a as i64).collect();
                    let axes = g.int64s(&format!("{name}/axes"), &axes);
                    let norm = g.node(
                        "ReduceL1",
                        &[&v, &axes],
                        &format!("{name}/norm"),
                        vec![attr_int("keepdims", 1)],
                    );
                    let floor = g.scalar(&format!("{name}/epsilon"), out.dtype, epsilon);
                    let denominator = g.node(
                        "Max",
                        &[&norm, &floor],
                        &format!("{name}/denominator"),
                        vec![],
                    );
                    g.node_into("Div", &[&v, &denominator], y, vec![]);
                }
            }
            "Repeat" => {
                let v = value(layer, g, inputs, x, x.info.dtype)?;
                let (axis, repeats) = repeat_of(layer, &x.info)?;
                let size = x.info.shape[axis].unwrap_or(0);
                super::generated_len(layer, &[size, repeats])?;
                let indices: Vec<i64> = (0..size as i64)
                    .flat_map(|i| std::iter::repeat_n(i, repeats))
                    .collect();
                let indices = g.int64s(&format!("{name}/indices"), &indices);
                g.node_into(
                    "Gather",
                    &[&v, &indices],
                    y,
                    vec![attr_int("axis", axis as i64)],
                );
            }
            "Softmax" => {
                let v = value(layer, g, inputs, x, out.dtype)?;
                let axes = axis_list(layer, x.info.rank())?;
                let axes = g.int64s(&format!("{name}/axes"), &axes);
                let total = g.node(
                    "ReduceLogSumExp",
                    &[&v, &axes],
                    &format!("{name}/logsumexp"),
                    vec![attr_int("keepdims", 1)],
                );
                let shifted = g.node("Sub", &[&v, &total], &format!("{name}/shifted"), vec![]);
                g.node_into("Exp", &[&shifted], y, vec![]);
            }
            "Norm" => {
                let v = value(layer, g, inputs, x, out.dtype)?;
                let (axes, reduce) = norm_kind(layer, x.info.rank())?;
                let axes: Vec<i64> = axes.iter().map(|&a| a as i64).collect();
                let axes = g.int64s(&format!("{name}/axes"), &axes);
                let keepdims = i64::from(cfg.bool_or("keepdims", false)?);
                g.node_into(
                    reduce,
                    &[&v, &axes],
                    y,
                    vec![attr_int("keepdims", keepdims)],
                );
            }
            "OneHot" => {
                // As jax.nn.one_hot: an id outside 0..num_classes is all zeros.
                let axis = checked_axis(layer, cfg.i64_or("axis", -1)?, out.rank())?;
                let classes = out.shape[axis].unwrap_or(0);
                let axis = axis as i64;
                let ids = value(layer, g, inputs, x, DType::I64)?;
                let where_axis = g.int64s(&format!("{name}/axis"), &[axis]);
                let ids = g.node(
                    "Unsqueeze",
                    &[&ids, &where_axis],
                    &format!("{name}/ids"),
                    vec![],
                );
                let hot = super::category_encoding::category_hits(
                    g,
                    name,
                    &ids,
                    classes,
                    axis as usize,
                    out.rank(),
                );
                g.node_into(
                    "Cast",
                    &[&hot],
                    y,
                    vec![attr_int("to", out.dtype.onnx() as i64)],
                );
            }
            "Any" | "All" => {
                let v = value(layer, g, inputs, x, DType::Bool)?;
                let as_int = g.node(
                    "Cast",
                    &[&v],
                    &format!("{name}/as_int"),
                    vec![attr_int("to", DType::I32.onnx() as i64)],
                );
                let axes = axis_list(layer, x.info.rank())?;
                let axes = g.int64s(&format!("{name}/axes"), &axes);
                let keepdims = i64::from(cfg.bool_or("keepdims", false)?);
                let reduce = if op == "Any" {
                    "ReduceMax"
                } else {
                    "ReduceMin"
                };
                let r = g.node(
                    reduce,
                    &[&as_int, &axes],
                    &format!("{name}/reduced"),
                    vec![attr_int("keepdims", keepdims)],
                );
                g.node_into(
                    "Cast",
                    &[&r],
                    y,
                    vec![attr_int("to", DType::Bool.onnx() as i64)],
                );
            }
            "Cumsum" => {
                let v = value(layer, g, inputs, x, out.dtype)?;
                let axis = required_axis(layer, "cumsum", x.info.rank())? as i64;
                let axis = g.scalar(&format!("{name}/axis"), DType::I64, axis as f64);
                g.node_into("CumSum", &[&v, &axis], y, vec![]);
            }
            "Tile" => {
                let v = value(layer, g, inputs, x, x.info.dtype)?;
                let repeats = g.int64s(
                    &format!("{name}/repeats"),
                    &tile_repeats(layer, x.info.rank())?,
                );
                g.node_into("Tile", &[&v, &repeats], y, vec![]);
            }
            "GetItem" => {
                let v = value(layer, g, inputs, x, x.info.dtype)?;
                let plan = index_plan(layer, &x.info)?;
                let mut current = v;
                if !plan.slices.is_empty() {
                    let column = |f: fn(&(i64, i64, i64, i64)) -> i64| -> Vec<i64> {
                        plan.slices.iter().map(f).collect()
                    };
                    let starts = g.int64s(&format!("{name}/starts"), &column(|s| s.1));
                    let ends = g.int64s(&format!("{name}/ends"), &column(|s| s.2));
                    let axes = g.int64s(&format!("{name}/axes"), &column(|s| s.0));
                    let steps = g.int64s(&format!("{name}/steps"), &column(|s| s.3));
                    current = g.node(
                        "Slice",
                        &[&current, &starts, &ends, &axes, &steps],
                        &format!("{name}/slice"),
                        vec![],
                    );
                }
                if !plan.dropped.is_empty() {
                    let axes = g.int64s(&format!("{name}/dropped"), &plan.dropped);
                    current = g.node(
                        "Squeeze",
                        &[&current, &axes],
                        &format!("{name}/squeeze"),
                        vec![],
                    );
                }
                if !plan.added.is_empty() {
                    let axes = g.int64s(&format!("{name}/added"), &plan.added);
                    current = g.node(
                        "Unsqueeze",
                        &[&current, &axes],
                        &format!("{name}/unsqueeze"),
                        vec![],
                    );
                }
                g.node_into("Identity", &[&current], y, vec![]);
            }
            other => {
                return Err(layer.error(format!("keras.ops operation {other:?} is not supported")))
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn layer(config: serde_json::Value, weights: Vec<Tensor>) -> Layer {
        Layer {
            name: "op".into(),
            class_name: "KerasOperation".into(),
            config,
            inbound: vec![],
            weights,
        }
    }

    fn number(v: f64) -> Tensor {
        Tensor::from_f64(vec![], &[v])
    }

    fn info(dtype: DType, shape: &[Dim]) -> TensorInfo {
        TensorInfo::new(dtype, shape.to_vec())
    }

    fn infer(
        op: serde_json::Value,
        weights: Vec<Tensor>,
        inputs: &[TensorInfo],
    ) -> Result<TensorInfo, BuildError> {
        KerasOperation.infer(&layer(op, weights), inputs)
    }

    #[test]
    fn types_promote_as_keras_does() {
        let ints = info(DType::I32, &[None, Some(3)]);
        let floats = info(DType::F16, &[None, Some(3)]);
        let add = |operands: serde_json::Value, weights, inputs: &[TensorInfo]| {
            infer(json!({"op": "Add", "operands": operands}), weights, inputs)
                .unwrap()
                .dtype
        };
        // A Python integer takes the tensor's type, a Python float makes integers float32.
        assert_eq!(
            add(
                json!(["tensor", "int"]),
                vec![number(1.0)],
                std::slice::from_ref(&ints)
            ),
            DType::I32
        );
        assert_eq!(
            add(
                json!(["tensor", "float"]),
                vec![number(0.5)],
                std::slice::from_ref(&ints)
            ),
            DType::F32
        );
        assert_eq!(
            add(
                json!(["float", "tensor"]),
                vec![number(0.5)],
                std::slice::from_ref(&floats)
            ),
            DType::F16
        );
        // Tensors join along bool < integers < floats.
        assert_eq!(
            add(json!(["tensor", "tensor"]), vec![], &[ints.clone(), floats]),
            DType::F16
        );
        let bools = info(DType::Bool, &[None, Some(3)]);
        assert_eq!(
            add(json!(["tensor", "int"]), vec![number(1.0)], &[bools]),
            DType::I32
        );
        let divide = infer(
            json!({"op": "TrueDivide", "operands": ["tensor", "int"]}),
            vec![number(2.0)],
            &[ints],
        );
        assert_eq!(divide.unwrap().dtype, DType::F32);
    }

    #[test]
    fn shapes_broadcast_and_reduce() {
        let x = info(DType::F32, &[None, Some(3), Some(4)]);
        let row = info(DType::F32, &[Some(4)]);
        let sum = infer(
            json!({"op": "Add", "operands": ["tensor", "tensor"]}),
            vec![],
            &[x.clone(), row],
        );
        assert_eq!(sum.unwrap().shape, vec![None, Some(3), Some(4)]);
        let mean = infer(
            json!({"op": "Mean", "operands": ["tensor"], "axis": [1, -1], "keepdims": true}),
            vec![],
            std::slice::from_ref(&x),
        );
        assert_eq!(mean.unwrap().shape, vec![None, Some(1), Some(1)]);
        let flat = infer(
            json!({"op": "Reshape", "operands": ["tensor"], "newshape": [-1, 12]}),
            vec![],
            std::slice::from_ref(&x),
        );
        assert_eq!(flat.unwrap().shape, vec![None, Some(12)]);
        let gram = infer(
            json!({"op": "Matmul", "operands": ["tensor", "array"]}),
            vec![Tensor::from_f32(vec![4, 2], &[0.0; 8])],
            &[x],
        );
        assert_eq!(gram.unwrap().shape, vec![None, Some(3), Some(2)]);
    }

    #[test]
    fn slices_count_cells_as_python_does() {
        // len(range(10)[start:stop:step]) in Python.
        let cases = [
            (None, None, 1, 10),
            (Some(1), None, 1, 9),
            (Some(-2), None, 1, 2),
            (None, None, -1, 10),
            (None, None, -3, 4),
            (Some(8), Some(2), -2, 3),
            (Some(20), None, 1, 0),
            (Some(-20), Some(3), 1, 3),
            (Some(3), Some(3), 1, 0),
            (None, Some(-20), -1, 10),
        ];
        for (start, stop, step, expected) in cases {
            assert_eq!(
                slice_len(10, start, stop, step),
                expected,
                "{start:?}:{stop:?}:{step}"
            );
        }
    }

    #[test]
    fn indexing_plans_one_slice_then_squeeze_and_unsqueeze() {
        let x = info(DType::F32, &[None, Some(6), Some(4)]);
        let key =
            json!([{"slice": [null, null, null]}, {"index": -1}, null, {"slice": [1, null, 2]}]);
        let get = layer(
            json!({"op": "GetItem", "operands": ["tensor"], "key": key}),
            vec![],
        );
        let plan = index_plan(&get, &x).unwrap();
        assert_eq!(plan.slices, vec![(1, -1, i64::MAX, 1), (2, 1, i64::MAX, 2)]);
        assert_eq!((plan.dropped, plan.added), (vec![1], vec![1]));
        assert_eq!(plan.shape, vec![None, Some(1), Some(2)]);
        let out_of_range = json!({"op": "GetItem", "operands": ["tensor"], "key": [{"slice": [null, null, null]}, {"index": 6}]});
        let err = infer(out_of_range, vec![], std::slice::from_ref(&x)).unwrap_err();
        assert!(err
            .to_string()
            .contains("index 6 is out of range for axis 1 of size 6"));
    }

    #[test]
    fn axis_moves_and_pad_widths_read_as_numpy_does() {
        let moved = |config| moved_axes(&layer(config, vec![]), "Moveaxis", 3).unwrap();
        // np.moveaxis(np.zeros((2, 3, 4)), [0, 1], [2, 0]).shape == (3, 4, 2)
        assert_eq!(
            moved(json!({"source": [0, 1], "destination": [2, 0]})),
            vec![1, 2, 0]
        );
        assert_eq!(
            moved(json!({"source": 1, "destination": -1})),
            vec![0, 2, 1]
        );
        let widths = |w| pad_widths(&layer(json!({"pad_width": w}), vec![]), 2);
        assert_eq!(
            widths(json!([[0, 1], [2, 3]])).unwrap(),
            vec![(0, 1), (2, 3)]
        );
        assert_eq!(widths(json!([1, 2])).unwrap(), vec![(1, 2), (1, 2)]);
        assert_eq!(widths(json!(3)).unwrap(), vec![(3, 3), (3, 3)]);
        assert!(widths(json!([[0, -1], [2, 3]])).is_err());
        let x = info(DType::F32, &[None, None, Some(4)]);
        let repeat = json!({"op": "Repeat", "operands": ["tensor"], "repeats": 2, "axis": 1});
        let err = infer(repeat, vec![], std::slice::from_ref(&x)).unwrap_err();
        assert!(err.to_string().contains("dynamic axis 1"));
    }

    /// Sizes and steps at the ends of i64 (from a hostile file) give errors or valid
    /// plans, never an overflow.
    #[test]
    fn extreme_sizes_do_not_overflow() {
        let x = info(DType::F32, &[None, Some(6), Some(4)]);
        let one = std::slice::from_ref(&x);
        let huge = i64::MAX / 2;
        let reshape = json!({"op": "Reshape", "operands": ["tensor"], "newshape": [huge, huge, 3]});
        assert!(infer(reshape, vec![], one).is_err());
        let tile = json!({"op": "Tile", "operands": ["tensor"], "repeats": [1, huge, huge]});
        assert!(infer(tile, vec![], one).is_err());
        let key = json!([{"index": i64::MAX}, {"slice": [i64::MIN, i64::MAX, i64::MIN]}]);
        let get = json!({"op": "GetItem", "operands": ["tensor"], "key": key});
        // range(6)[i64::MIN:i64::MAX:i64::MIN] is empty in Python too.
        assert_eq!(
            infer(get, vec![], one).unwrap().shape,
            vec![Some(0), Some(4)]
        );
    }

    #[test]
    fn malformed_calls_are_refused_with_the_reason() {
        let x = info(DType::F32, &[None, Some(3)]);
        let message = |op, weights, inputs: &[TensorInfo]| {
            infer(op, weights, inputs).unwrap_err().to_string()
        };
        assert!(
            message(json!({"op": "Add"}), vec![], std::slice::from_ref(&x))
                .contains("\"operands\"")
        );
        assert!(message(
            json!({"op": "Add", "operands": ["tensor", "float"]}),
            vec![],
            std::slice::from_ref(&x)
        )
        .contains("more constant operands"));
        assert!(message(
            json!({"op": "Split", "operands": ["tensor"]}),
            vec![],
            std::slice::from_ref(&x)
        )
        .contains("\"Split\" is not supported"));
        assert!(message(
            json!({"op": "Einsum", "operands": ["tensor"]}),
            vec![],
            std::slice::from_ref(&x)
        )
        .contains("\"subscripts\" (a string) is required"));
        assert!(message(
            json!({"op": "Einsum", "operands": ["tensor"], "subscripts": "ab,bc->ac"}),
            vec![],
            std::slice::from_ref(&x)
        )
        .contains("2 input term(s) for 1 operand(s)"));
        assert!(message(
            json!({"op": "LayerNorm", "operands": ["tensor", "array"], "gamma": false}),
            vec![Tensor::from_f64(vec![3], &[1.0; 3])],
            std::slice::from_ref(&x)
        )
        .contains("takes 1 operand(s), got 2"));
        assert!(message(
            json!({"op": "LayerNorm", "operands": ["tensor", "array"], "gamma": true, "axis": 0}),
            vec![Tensor::from_f64(vec![2], &[1.0; 2])],
            std::slice::from_ref(&x)
        )
        .contains("does not reshape"));
        assert!(message(
            json!({"op": "Argsort", "operands": ["tensor"], "axis": null}),
            vec![],
            std::slice::from_ref(&x)
        )
        .contains("sort/argsort with axis=None (over the flattened input) is not supported"));
        assert!(message(
            json!({"op": "Sort", "operands": ["tensor"], "axis": -1}),
            vec![],
            &[info(DType::Bool, &[None, Some(3)])]
        )
        .contains("float32, float64, int32, int64"));
        assert!(message(
            json!({"op": "RMSNorm", "operands": ["tensor", "array"]}),
            vec![Tensor::from_f64(vec![5], &[1.0; 5])],
            std::slice::from_ref(&x)
        )
        .contains("does not broadcast"));
        assert!(message(
            json!({"op": "Squeeze", "operands": ["tensor"]}),
            vec![],
            std::slice::from_ref(&x)
        )
        .contains("dynamic dimensions"));
        assert!(message(
            json!({"op": "Take", "operands": ["tensor", "tensor"]}),
            vec![],
            &[x.clone(), info(DType::I64, &[Some(2)])]
        )
        .contains("axis=None"));
        assert!(message(
            json!({"op": "Matmul", "operands": ["tensor", "tensor"]}),
            vec![],
            &[x.clone(), info(DType::F32, &[Some(4), Some(2)])]
        )
        .contains("inner sizes 3 and 4 differ"));
        assert!(message(
            json!({"op": "Less", "operands": ["tensor", "tensor"]}),
            vec![],
            &[info(DType::Bool, &[Some(2)]), info(DType::Bool, &[Some(2)])]
        )
        .contains("a number type"));
    }
}
