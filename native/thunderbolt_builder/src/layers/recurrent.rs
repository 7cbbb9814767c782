//! `LSTM`, `GRU` and `SimpleRNN` → ONNX `LSTM`, `GRU` and `RNN`, between two `Transpose`s
//! (Keras is batch-major, and ONNX Runtime runs these ops time-major only).
//!
//! Keras keeps each gate's weights side by side in `kernel` `[in, gates·units]`,
//! `recurrent_kernel` `[units, gates·units]` and `bias`; ONNX wants them transposed and
//! stacked per gate, in its own gate order (LSTM: Keras `i f c o`, ONNX `i o f c`; GRU:
//! `z r h` in both). The Keras bias is ONNX's input bias; the recurrent bias is zero,
//! except for a GRU with `reset_after`, whose second bias row is exactly ONNX's recurrent
//! bias under `linear_before_reset = 1`.
//!
//! `return_sequences` reads the op's `Y`, otherwise its last state `Y_h`. `go_backwards`
//! runs the op in reverse; Keras then returns the sequence in the order it was processed,
//! so the time axis is flipped back. `return_state` and `stateful` are not supported;
//! dropout does nothing at inference.
//!
//! With a mask (`Embedding(mask_zero=True)` upstream), Keras skips the masked steps and
//! carries the state over them. ONNX's ops skip only the steps past each sample's
//! `sequence_lens`, so each sample's unmasked steps are first moved to the front, in order,
//! and counted; the last state is then Keras' (zeros for a sample with every step masked).
//! With `return_sequences` the outputs are put back at their own steps, and a masked step
//! gets what Keras gives it: the output of the unmasked step processed just before it
//! (zeros before any), or zeros with `zero_output_for_mask` (which `Bidirectional` sets).

use super::{cast_to, expect_weight_shape, expect_weights, single_input};
use crate::activation::Activation;
use crate::config::Config;
use crate::error::BuildError;
use crate::graph::{attr_floats, attr_int, attr_ints, attr_string, attr_strings, GraphBuilder};
use crate::registry::{LayerConverter, Masking, ValueRef};
use crate::shape::{format_shape, TensorInfo};
use crate::spec::Layer;
use crate::tensor::{DType, Tensor};
use serde_json::Value;

/// The most units a recurrent layer may have (far above any real model).
const MAX_UNITS: usize = 1 << 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recurrent {
    Lstm,
    Gru,
    SimpleRnn,
}

impl Recurrent {
    /// The Keras class names this converter serves.
    pub fn from_class(class_name: &str) -> Option<Self> {
        match class_name {
            "LSTM" => Some(Recurrent::Lstm),
            "GRU" => Some(Recurrent::Gru),
            "SimpleRNN" => Some(Recurrent::SimpleRnn),
            _ => None,
        }
    }

    fn op(self) -> &'static str {
        match self {
            Recurrent::Lstm => "LSTM",
            Recurrent::Gru => "GRU",
            Recurrent::SimpleRnn => "RNN",
        }
    }

    /// The Keras gate of each ONNX gate, in ONNX order.
    fn gate_order(self) -> &'static [usize] {
        match self {
            Recurrent::Lstm => &[0, 3, 1, 2],
            Recurrent::Gru => &[0, 1, 2],
            Recurrent::SimpleRnn => &[0],
        }
    }

    fn gates(self) -> usize {
        self.gate_order().len()
    }
}

/// An activation inside an ONNX recurrent op: its name there and its parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
struct OpActivation {
    name: &'static str,
    alpha: Option<f32>,
    beta: Option<f32>,
}

fn op_activation(
    layer: &Layer,
    value: Option<&Value>,
    default: &str,
) -> Result<OpActivation, BuildError> {
    let default = Value::String(default.to_string());
    let act = Activation::parse(layer, Some(value.unwrap_or(&default)))?;
    let plain = |name| OpActivation {
        name,
        alpha: None,
        beta: None,
    };
    Ok(match act {
        Activation::Tanh => plain("Tanh"),
        Activation::Sigmoid => plain("Sigmoid"),
        Activation::Relu => plain("Relu"),
        Activation::Softsign => plain("Softsign"),
        Activation::Softplus => plain("Softplus"),
        Activation::Linear => OpActivation {
            name: "Affine",
            alpha: Some(1.0),
            beta: Some(0.0),
        },
        // Keras 3: relu6(x + 3) / 6; Keras 2: clip(0.2 x + 0.5, 0, 1).
        Activation::HardSigmoid { slope } => OpActivation {
            name: "HardSigmoid",
            alpha: Some(slope as f32),
            beta: Some(0.5),
        },
        Activation::Elu { alpha } => OpActivation {
            name: "Elu",
            alpha: Some(alpha as f32),
            beta: None,
        },
        Activation::LeakyRelu { negative_slope } => OpActivation {
            name: "LeakyRelu",
            alpha: Some(negative_slope as f32),
            beta: None,
        },
        other => {
            return Err(layer.error(format!(
                "activation {other:?} has no counterpart inside ONNX recurrent ops; \
                 supported: tanh, sigmoid, relu, linear, hard_sigmoid, softsign, softplus, elu, leaky_relu"
            )))
        }
    })
}

/// One recurrent layer's settings, from its config (or a `Bidirectional`'s `layer`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Cell {
    pub kind: Recurrent,
    pub units: usize,
    activation: OpActivation,
    recurrent_activation: OpActivation,
    pub use_bias: bool,
    reset_after: bool,
    pub return_sequences: bool,
    pub go_backwards: bool,
}

impl Cell {
    pub(crate) fn parse(
        layer: &Layer,
        kind: Recurrent,
        config: &Value,
    ) -> Result<Self, BuildError> {
        let cfg = Config::within(layer, config)?;
        // Bounded so that `gates * units` cannot overflow on a hostile config.
        let units = cfg
            .opt_usize("units")?
            .filter(|&u| u > 0 && u <= MAX_UNITS)
            .ok_or_else(|| {
                layer.error(format!(
                    "config key \"units\" must be a positive integer up to {MAX_UNITS}"
                ))
            })?;
        for flag in ["return_state", "stateful", "time_major"] {
            if cfg.bool_or(flag, false)? {
                return Err(layer.error(format!("{flag}=true is not supported")));
            }
        }
        Ok(Cell {
            kind,
            units,
            activation: op_activation(layer, cfg.get("activation"), "tanh")?,
            recurrent_activation: op_activation(layer, cfg.get("recurrent_activation"), "sigmoid")?,
            use_bias: cfg.bool_or("use_bias", true)?,
            reset_after: kind == Recurrent::Gru && cfg.bool_or("reset_after", true)?,
            return_sequences: cfg.bool_or("return_sequences", false)?,
            go_backwards: cfg.bool_or("go_backwards", false)?,
        })
    }

    /// The same layer run the other way, as `Bidirectional` makes its backward layer.
    pub(crate) fn reversed(&self) -> Cell {
        Cell {
            go_backwards: !self.go_backwards,
            ..self.clone()
        }
    }

    /// Whether the two can be the directions of one ONNX op (activations may differ).
    pub(crate) fn pairs_with(&self, other: &Cell) -> bool {
        self.kind == other.kind
            && self.units == other.units
            && self.use_bias == other.use_bias
            && self.reset_after == other.reset_after
            && self.return_sequences == other.return_sequences
    }

    fn weight_names(&self) -> &'static [&'static str] {
        if self.use_bias {
            &["kernel", "recurrent_kernel", "bias"]
        } else {
            &["kernel", "recurrent_kernel"]
        }
    }

    /// Checks one direction's weights (`weights` starting at `first`) against an input of
    /// `features` features.
    pub(crate) fn check_weights(
        &self,
        layer: &Layer,
        first: usize,
        features: usize,
    ) -> Result<(), BuildError> {
        let width = self.kind.gates() * self.units;
        let bias: Vec<usize> = if self.reset_after {
            vec![2, width]
        } else {
            vec![width]
        };
        let shapes = [vec![features, width], vec![self.units, width], bias];
        for (i, name) in self.weight_names().iter().enumerate() {
            expect_weight_shape(layer, first + i, name, &shapes[i])?;
            super::require_weight_dtype(layer, first + i, name, DType::F32)?;
        }
        Ok(())
    }

    /// The activations of one direction, in ONNX order (LSTM `f g h`, GRU `f g`, RNN `f`).
    fn activations(&self) -> Vec<OpActivation> {
        match self.kind {
            Recurrent::Lstm => vec![self.recurrent_activation, self.activation, self.activation],
            Recurrent::Gru => vec![self.recurrent_activation, self.activation],
            Recurrent::SimpleRnn => vec![self.activation],
        }
    }

    /// The output of a layer reading `x`: `[batch, steps, units]` or `[batch, units]`.
    fn output_shape(&self, x: &TensorInfo, directions: usize) -> Vec<Option<usize>> {
        let width = Some(self.units * directions);
        if self.return_sequences {
            vec![x.shape[0], x.shape[1], width]
        } else {
            vec![x.shape[0], width]
        }
    }
}

/// Checks the input of a recurrent layer: float32 `[batch, steps, features]` with static
/// features. Returns the features.
pub(crate) fn check_input(layer: &Layer, x: &TensorInfo) -> Result<usize, BuildError> {
    if x.dtype != DType::F32 {
        return Err(layer.dtype_error("input", x.dtype, "float32"));
    }
    match x.shape.as_slice() {
        [_, _, Some(features)] => Ok(*features),
        _ => Err(layer.error(format!(
            "expects an input of rank 3 (batch, steps, features) with static features, got {}",
            format_shape(&x.shape)
        ))),
    }
}

/// Keras' `[rows, gates·units]` matrix as ONNX's `[gates·units, rows]`, gates in ONNX order.
fn onnx_matrix(w: &[f64], rows: usize, units: usize, order: &[usize]) -> Vec<f64> {
    let cols = order.len() * units;
    let mut out = Vec::with_capacity(w.len());
    for &gate in order {
        for j in 0..units {
            out.extend((0..rows).map(|r| w[r * cols + gate * units + j]));
        }
    }
    out
}

fn onnx_vector(b: &[f64], units: usize, order: &[usize]) -> Vec<f64> {
    order
        .iter()
        .flat_map(|&gate| b[gate * units..(gate + 1) * units].iter().copied())
        .collect()
}

/// What a recurrent layer returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Returns {
    /// The last state.
    LastState,
    /// Every step's output. At a masked step Keras repeats the output of the step processed
    /// before it (zeros before any), or gives zeros with `zero_output_for_mask`.
    Sequences { zero_masked: bool },
}

/// Emits the ONNX op over `x` (`[batch, steps, features]`) for one or two directions
/// (`cells[i]` with weights `weights[i]`), and returns the batch-major result:
/// `[batch, steps, directions, units]` for sequences, else `[batch, directions, units]`.
pub(crate) fn emit_op(
    g: &mut GraphBuilder,
    layer: &Layer,
    x: ValueRef<'_>,
    features: usize,
    cells: &[(&Cell, &[Tensor])],
    direction: &str,
    returns: Returns,
) -> Result<String, BuildError> {
    let sequences = returns != Returns::LastState;
    let prefix = &layer.name;
    let cell = cells[0].0;
    let (units, order) = (cell.units, cell.kind.gate_order());
    let width = order.len() * units;
    let dirs = cells.len();
    let (mut w, mut r, mut b) = (Vec::new(), Vec::new(), Vec::new());
    for (cell, weights) in cells {
        w.extend(onnx_matrix(
            &weights[0].to_f64_vec(),
            features,
            units,
            order,
        ));
        r.extend(onnx_matrix(&weights[1].to_f64_vec(), units, units, order));
        if cell.use_bias {
            let bias = weights[2].to_f64_vec();
            b.extend(onnx_vector(&bias[..width], units, order));
            if cell.reset_after {
                b.extend(onnx_vector(&bias[width..], units, order));
            } else {
                b.extend(std::iter::repeat_n(0.0, width));
            }
        }
    }
    let tensor = |shape: Vec<usize>, values: &[f64]| {
        Tensor::from_f64_as(DType::F32, shape, values)
            .ok_or_else(|| layer.dtype_error("weights", DType::F32, "float32"))
    };
    let w = g.initializer_owned(
        &format!("{prefix}/W"),
        tensor(vec![dirs, width, features], &w)?,
    );
    let r = g.initializer_owned(
        &format!("{prefix}/R"),
        tensor(vec![dirs, width, units], &r)?,
    );
    let (steps, compacted) = match x.mask {
        Some(mask) => {
            let compacted = unmasked_steps_first(g, layer, x.name, mask);
            (compacted.steps.clone(), Some(compacted))
        }
        None => (x.name.to_string(), None),
    };
    let mut inputs = vec![g.node(
        "Transpose",
        &[&steps],
        &format!("{prefix}/time_major"),
        vec![attr_ints("perm", &[1, 0, 2])],
    )];
    inputs.extend([w, r]);
    if cell.use_bias {
        let b = tensor(vec![dirs, 2 * width], &b)?;
        inputs.push(g.initializer_owned(&format!("{prefix}/B"), b));
    }
    if let Some(compacted) = &compacted {
        if !cell.use_bias {
            inputs.push(String::new());
        }
        inputs.push(compacted.lengths.clone());
    }
    let activations: Vec<OpActivation> = cells.iter().flat_map(|(c, _)| c.activations()).collect();
    let mut attrs = vec![
        attr_int("hidden_size", units as i64),
        attr_string("direction", direction),
        attr_strings(
            "activations",
            &activations.iter().map(|a| a.name).collect::<Vec<_>>(),
        ),
    ];
    // ONNX Runtime hands the values, in order, to the activations that take them.
    let alphas: Vec<f32> = activations.iter().filter_map(|a| a.alpha).collect();
    let betas: Vec<f32> = activations.iter().filter_map(|a| a.beta).collect();
    if !alphas.is_empty() {
        attrs.push(attr_floats("activation_alpha", &alphas));
    }
    if !betas.is_empty() {
        attrs.push(attr_floats("activation_beta", &betas));
    }
    if cell.kind == Recurrent::Gru {
        attrs.push(attr_int("linear_before_reset", i64::from(cell.reset_after)));
    }
    let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let out = g.fresh(&format!("{prefix}/{}", if sequences { "Y" } else { "Y_h" }));
    let outputs: [&str; 2] = if sequences { [&out, ""] } else { ["", &out] };
    g.node_outputs(cell.kind.op(), &inputs, &outputs, attrs);
    // Y is [steps, directions, batch, units]; Y_h is [directions, batch, units].
    let perm: &[i64] = if sequences { &[2, 0, 1, 3] } else { &[1, 0, 2] };
    let y = g.node(
        "Transpose",
        &[&out],
        &format!("{prefix}/batch_major"),
        vec![attr_ints("perm", perm)],
    );
    match (returns, &compacted) {
        (Returns::Sequences { zero_masked }, Some(compacted)) => {
            let reverse: Vec<bool> = match direction {
                "reverse" => vec![true],
                "bidirectional" => vec![false, true],
                _ => vec![false],
            };
            Ok(back_in_place(
                g,
                layer,
                &y,
                compacted,
                &reverse,
                zero_masked,
            ))
        }
        _ => Ok(y),
    }
}

/// What [`unmasked_steps_first`] made: the moved steps, `sequence_lens`, and for putting the
/// outputs back, the mask as int64 `[batch, steps]` and the unmasked count as `[batch, 1]`.
struct Compacted {
    steps: String,
    lengths: String,
    kept: String,
    count: String,
}

/// The outputs `y` (`[batch, steps, directions, units]`, each direction over the moved
/// steps) back at their own steps, as Keras gives them: an unmasked step's output from its
/// place among the unmasked steps; a masked step's from the unmasked step processed just
/// before it (the one before it forwards, after it backwards; zeros when there is none), or
/// zeros with `zero_masked`. For step `t` with `c` unmasked steps up to and including it,
/// the place is `c - 1` forwards and `c - kept[t]` backwards.
fn back_in_place(
    g: &mut GraphBuilder,
    layer: &Layer,
    y: &str,
    compacted: &Compacted,
    reverse: &[bool],
    zero_masked: bool,
) -> String {
    let prefix = &layer.name;
    let steps_axis = g.scalar(&format!("{prefix}/cumsum_axis"), DType::I64, 1.0);
    let upto = g.node(
        "CumSum",
        &[&compacted.kept, &steps_axis],
        &format!("{prefix}/unmasked_upto"),
        vec![],
    );
    let zero = g.scalar(&format!("{prefix}/place_zero"), DType::I64, 0.0);
    // Only a forwards direction shifts by one (a backwards layer alone would leave it unused).
    let one = reverse
        .contains(&false)
        .then(|| g.scalar(&format!("{prefix}/place_one"), DType::I64, 1.0));
    let units_axis = g.int64s(&format!("{prefix}/units_axis"), &[2]);
    let mut parts = Vec::new();
    for (d, &backwards) in reverse.iter().enumerate() {
        let name = |part: &str| format!("{prefix}/direction_{d}/{part}");
        let shift = match (&one, backwards) {
            (Some(one), false) => one,
            _ => &compacted.kept,
        };
        let place = g.node("Sub", &[&upto, shift], &name("place"), vec![]);
        // 1 where the step keeps what was gathered for it, 0 where Keras gives zeros.
        let valid = if zero_masked {
            cast_to(g, layer, &compacted.kept, DType::I64, DType::F32)
        } else {
            let has = if backwards {
                g.node(
                    "Less",
                    &[&place, &compacted.count],
                    &name("before_end"),
                    vec![],
                )
            } else {
                g.node(
                    "GreaterOrEqual",
                    &[&place, &zero],
                    &name("after_start"),
                    vec![],
                )
            };
            cast_to(g, layer, &has, DType::Bool, DType::F32)
        };
        let place = g.node("Max", &[&place, &zero], &name("clamped"), vec![]);
        let index = g.scalar(&name("index"), DType::I64, d as f64);
        let outputs = g.node(
            "Gather",
            &[y, &index],
            &name("outputs"),
            vec![attr_int("axis", 2)],
        );
        let gathered = gather_steps(g, &name("in_place"), &outputs, &place);
        let valid = g.node(
            "Unsqueeze",
            &[&valid, &units_axis],
            &name("valid_3d"),
            vec![],
        );
        let kept = g.node("Mul", &[&gathered, &valid], &name("kept"), vec![]);
        parts.push(g.node(
            "Unsqueeze",
            &[&kept, &units_axis],
            &name("with_axis"),
            vec![],
        ));
    }
    if parts.len() == 1 {
        return parts.remove(0);
    }
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    g.node(
        "Concat",
        &parts,
        &format!("{prefix}/in_place"),
        vec![attr_int("axis", 2)],
    )
}

/// `x` (`[batch, steps, features]`) with each sample's steps taken in the order `index`
/// (int64 `[batch, steps]`) gives: `GatherElements` along the steps, the index repeated
/// over the features.
fn gather_steps(g: &mut GraphBuilder, name: &str, x: &str, index: &str) -> String {
    let shape = g.node("Shape", &[x], &format!("{name}/shape"), vec![]);
    let features_axis = g.int64s(&format!("{name}/features_axis"), &[2]);
    let index = g.node(
        "Unsqueeze",
        &[index, &features_axis],
        &format!("{name}/index_3d"),
        vec![],
    );
    let index = g.node(
        "Expand",
        &[&index, &shape],
        &format!("{name}/index"),
        vec![],
    );
    g.node(
        "GatherElements",
        &[x, &index],
        name,
        vec![attr_int("axis", 1)],
    )
}

/// Each sample of `x` (`[batch, steps, features]`) with its unmasked steps first, in order,
/// and how many there are (int32 `[batch]`, ONNX's `sequence_lens`): a stable sort of the
/// steps by `masked · steps + step`, then `GatherElements`.
fn unmasked_steps_first(g: &mut GraphBuilder, layer: &Layer, x: &str, mask: &str) -> Compacted {
    let prefix = &layer.name;
    let kept = cast_to(g, layer, mask, DType::Bool, DType::I64);
    let steps = g.node(
        "Shape",
        &[x],
        &format!("{prefix}/steps"),
        vec![attr_int("start", 1), attr_int("end", 2)],
    );
    let first = g.int64s(&format!("{prefix}/first_axis"), &[0]);
    let count = g.node(
        "Squeeze",
        &[&steps, &first],
        &format!("{prefix}/step_count"),
        vec![],
    );
    let zero = g.scalar(&format!("{prefix}/zero"), DType::I64, 0.0);
    let one = g.scalar(&format!("{prefix}/one"), DType::I64, 1.0);
    let step = g.node(
        "Range",
        &[&zero, &count, &one],
        &format!("{prefix}/step"),
        vec![],
    );
    let masked = g.node("Sub", &[&one, &kept], &format!("{prefix}/masked"), vec![]);
    let late = g.node(
        "Mul",
        &[&masked, &count],
        &format!("{prefix}/masked_late"),
        vec![],
    );
    let key = g.node(
        "Add",
        &[&late, &step],
        &format!("{prefix}/order_key"),
        vec![],
    );
    let sorted = g.fresh(&format!("{prefix}/sorted_keys"));
    let order = g.fresh(&format!("{prefix}/order"));
    g.node_outputs(
        "TopK",
        &[&key, &steps],
        &[&sorted, &order],
        vec![
            attr_int("axis", 1),
            attr_int("largest", 0),
            attr_int("sorted", 1),
        ],
    );
    let front = gather_steps(g, &format!("{prefix}/unmasked_first"), x, &order);
    let axis = g.int64s(&format!("{prefix}/steps_axis"), &[1]);
    let total = g.node(
        "ReduceSum",
        &[&kept, &axis],
        &format!("{prefix}/unmasked"),
        vec![attr_int("keepdims", 0)],
    );
    let lengths = cast_to(g, layer, &total, DType::I64, DType::I32);
    let count = g.node(
        "Unsqueeze",
        &[&total, &axis],
        &format!("{prefix}/unmasked_count"),
        vec![],
    );
    Compacted {
        steps: front,
        lengths,
        kept,
        count,
    }
}

/// `[batch, (steps,) directions, units]` → `[batch, (steps,) directions·units]`.
pub(crate) fn merge_directions(
    g: &mut GraphBuilder,
    prefix: &str,
    x: &str,
    sequences: bool,
    output: &str,
) {
    let shape: &[i64] = if sequences { &[0, 0, -1] } else { &[0, -1] };
    let shape = g.int64s(&format!("{prefix}/merged_shape"), shape);
    g.node_into("Reshape", &[x, &shape], output, vec![]);
}

impl LayerConverter for Recurrent {
    fn masking(&self, layer: &Layer) -> Masking {
        match Cell::parse(layer, *self, &layer.config) {
            Ok(cell) if cell.return_sequences => Masking::Uses,
            Ok(_) => Masking::Consumes,
            Err(_) => Masking::Unsupported,
        }
    }

    fn infer(&self, layer: &Layer, inputs: &[TensorInfo]) -> Result<TensorInfo, BuildError> {
        let x = single_input(layer, inputs)?;
        let cell = Cell::parse(layer, *self, &layer.config)?;
        let features = check_input(layer, x)?;
        expect_weights(layer, cell.weight_names())?;
        cell.check_weights(layer, 0, features)?;
        Ok(TensorInfo::new(DType::F32, cell.output_shape(x, 1)))
    }

    fn emit(
        &self,
        layer: &Layer,
        inputs: &[ValueRef<'_>],
        output: ValueRef<'_>,
        g: &mut GraphBuilder,
    ) -> Result<String, BuildError> {
        let cell = Cell::parse(layer, *self, &layer.config)?;
        let features = check_input(layer, inputs[0].info)?;
        let direction = if cell.go_backwards {
            "reverse"
        } else {
            "forward"
        };
        let seq = cell.return_sequences;
        let returns = if seq {
            Returns::Sequences {
                zero_masked: Config::of(layer)?.bool_or("zero_output_for_mask", false)?,
            }
        } else {
            Returns::LastState
        };
        let y = emit_op(
            g,
            layer,
            inputs[0],
            features,
            &[(&cell, &layer.weights)],
            direction,
            returns,
        )?;
        if seq && cell.go_backwards {
            // Keras lists the outputs in the order it processed the steps: last step first.
            let merged = g.fresh(&format!("{}/merged", layer.name));
            merge_directions(g, &layer.name, &y, seq, &merged);
            let starts = g.int64s(&format!("{}/flip_starts", layer.name), &[-1]);
            let ends = g.int64s(&format!("{}/flip_ends", layer.name), &[i64::MIN]);
            let axes = g.int64s(&format!("{}/flip_axes", layer.name), &[1]);
            let steps = g.int64s(&format!("{}/flip_steps", layer.name), &[-1]);
            g.node_into(
                "Slice",
                &[&merged, &starts, &ends, &axes, &steps],
                output.name,
                vec![],
            );
        } else {
            merge_directions(g, &layer.name, &y, seq, output.name);
        }
        Ok(output.name.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reorders_gates_and_transposes() {
        // Keras kernel [rows 2, gates 2 x units 1]: row r, gate k holds 10r + k.
        let w = [0.0, 1.0, 10.0, 11.0];
        assert_eq!(onnx_matrix(&w, 2, 1, &[1, 0]), [1.0, 11.0, 0.0, 10.0]);
        assert_eq!(
            onnx_vector(&[1.0, 2.0, 3.0, 4.0], 1, &[0, 3, 1, 2]),
            [1.0, 4.0, 2.0, 3.0]
        );
    }

    #[test]
    fn refuses_what_it_cannot_express() {
        let layer = |config: Value| Layer {
            name: "rnn".into(),
            class_name: "LSTM".into(),
            config,
            inbound: vec![],
            weights: vec![],
        };
        for (config, expected) in [
            (
                serde_json::json!({"units": 2, "return_state": true}),
                "return_state=true is not supported",
            ),
            (
                serde_json::json!({"units": 2, "stateful": true}),
                "stateful=true is not supported",
            ),
            (
                serde_json::json!({"units": 0}),
                "\"units\" must be a positive integer",
            ),
            (
                serde_json::json!({"units": 1u64 << 62}),
                "\"units\" must be a positive integer up to 16777216",
            ),
            (
                serde_json::json!({"units": 2, "activation": "gelu"}),
                "no counterpart inside ONNX recurrent ops",
            ),
        ] {
            let l = layer(config.clone());
            let err = Cell::parse(&l, Recurrent::Lstm, &l.config)
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{config}: {err}");
        }
    }
}
