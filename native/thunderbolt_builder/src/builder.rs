//! From a [`ModelSpec`] to a `ModelProto`: check names and references, sort the layers,
//! infer every layer's output type (all validation happens here, before anything is
//! emitted), then emit nodes and initializers and assemble the model.

use crate::error::BuildError;
use crate::graph::{GraphBuilder, WeightSlot};
use crate::masks::{
    check_keras_mask, check_recorded_mask, clears_input_masks, recorded_inputs, Mask, MaskTracker,
    ATTENTION_MASK_RECORDS,
};
use crate::registry::{LayerConverter, LayerRegistry, Masking, ValueRef};
use crate::shape::{Dim, TensorInfo};
use crate::spec::{Layer, ModelSpec};
use crate::tensor::DType;
use onnx_protobuf::tensor_shape_proto::{dimension, Dimension};
use onnx_protobuf::{
    type_proto, GraphProto, ModelProto, OperatorSetIdProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
};
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet};

/// The opset used when [`ModelSpec::opset`] is `None`.
pub const DEFAULT_OPSET: i64 = 18;
/// The lowest opset the converters support (`ReduceMean` with `axes` as an input, `Mish`).
pub const MIN_OPSET: i64 = 18;
/// The highest opset the converters were checked against.
pub const MAX_OPSET: i64 = 22;

/// The ONNX IR version released together with `opset` (the `onnx` package's
/// `helper.VERSION_TABLE`): the lowest IR version that may carry that opset, so the model
/// loads in the widest range of runtimes.
pub fn ir_version_for(opset: i64) -> i64 {
    match opset {
        ..=18 => 8,
        19 | 20 => 9,
        _ => 10,
    }
}

/// The dimension name of a dynamic leading (batch) dimension in inputs and outputs.
const BATCH_DIM: &str = "batch";

#[derive(Clone, Copy)]
enum Source {
    Input(usize),
    Layer(usize),
}

pub(crate) fn build_model_with(
    spec: &ModelSpec,
    registry: &LayerRegistry,
) -> Result<ModelProto, BuildError> {
    let opset = check_opset(spec)?;
    let (graph, _) = build_graph(spec, registry, GraphBuilder::new())?;
    Ok(assemble(graph, opset))
}

/// Like [`build_model_with`], moving the weights' bytes into the initializers instead of
/// copying them, so the model costs no memory beyond the spec's own weights.
pub(crate) fn build_model_owned(
    mut spec: ModelSpec,
    registry: &LayerRegistry,
) -> Result<ModelProto, BuildError> {
    let opset = check_opset(&spec)?;
    let buffers: HashMap<(usize, usize), WeightSlot> = spec
        .layers
        .iter()
        .enumerate()
        .flat_map(|(l, layer)| {
            layer
                .weights
                .iter()
                .enumerate()
                .map(move |(w, t)| ((t.data.as_ptr() as usize, t.data.len()), (l, w)))
        })
        .collect();
    let (mut graph, deferred) = build_graph(&spec, registry, GraphBuilder::deferring(buffers))?;
    // A weight used by two initializers is moved into the first and copied into the second.
    let mut moved: HashMap<WeightSlot, usize> = HashMap::new();
    for (init, (l, w)) in deferred {
        let data = match moved.get(&(l, w)) {
            Some(&first) => graph.initializer[first].raw_data.clone(),
            None => {
                moved.insert((l, w), init);
                std::mem::take(&mut spec.layers[l].weights[w].data)
            }
        };
        graph.initializer[init].raw_data = data;
    }
    Ok(assemble(graph, opset))
}

fn check_opset(spec: &ModelSpec) -> Result<i64, BuildError> {
    let opset = spec.opset.unwrap_or(DEFAULT_OPSET);
    if !(MIN_OPSET..=MAX_OPSET).contains(&opset) {
        return Err(BuildError::UnsupportedOpset {
            opset,
            min: MIN_OPSET,
            max: MAX_OPSET,
        });
    }
    Ok(opset)
}

type Deferred = Vec<(usize, WeightSlot)>;

/// ONNX dimensions are int64, and ONNX Runtime refuses a shape whose known
/// dimensions multiply past that; such an input would make a model that
/// builds but never loads. So would a known dimension of 0 feeding a
/// Flatten or Reshape (a product of 0 beside -1), and no input of a Keras
/// model has one.
fn check_input_shapes(spec: &ModelSpec) -> Result<(), BuildError> {
    for input in &spec.inputs {
        if input.shape.contains(&Some(0)) {
            return Err(BuildError::InvalidSpec(format!(
                "input {:?}: the shape {} has a dimension of 0",
                input.name,
                crate::shape::format_shape(&input.shape)
            )));
        }
        let fits = input.shape.iter().flatten().try_fold(1i64, |n, &d| {
            i64::try_from(d).ok().and_then(|d| n.checked_mul(d))
        });
        if fits.is_none() {
            return Err(BuildError::InvalidSpec(format!(
                "input {:?}: the shape {} holds more than 2^63 elements",
                input.name,
                crate::shape::format_shape(&input.shape)
            )));
        }
    }
    Ok(())
}

fn build_graph(
    spec: &ModelSpec,
    registry: &LayerRegistry,
    mut g: GraphBuilder,
) -> Result<(GraphProto, Deferred), BuildError> {
    check_input_shapes(spec)?;
    let sources = index_names(spec)?;
    let converters = lookup_converters(spec, registry)?;
    check_references(spec, &sources)?;
    let order = topological_order(spec, &sources)?;
    let infos = infer_types(spec, &sources, &converters, &order)?;
    let output_owner = check_outputs(spec, &sources)?;

    for input in &spec.inputs {
        g.reserve(&input.name);
    }
    for layer in &spec.layers {
        g.reserve(&layer.name);
    }
    for output in &spec.outputs {
        g.reserve(&output.name);
    }

    // The value each layer's result ends up in; identity layers forward their input's.
    let mut values: Vec<String> = spec.layers.iter().map(|l| l.name.clone()).collect();
    let inbound_layers = spec
        .layers
        .iter()
        .map(|layer| {
            layer
                .inbound
                .iter()
                .map(|r| match sources[r.as_str()] {
                    Source::Input(_) => None,
                    Source::Layer(j) => Some(j),
                })
                .collect()
        })
        .collect();
    let mut masks = MaskTracker::new(inbound_layers);
    let maskings: Vec<Masking> = spec
        .layers
        .iter()
        .zip(&converters)
        .map(|(layer, c)| c.masking(layer))
        .collect();
    for &i in &order {
        let layer = &spec.layers[i];
        let masking = maskings[i];
        let recorded = recorded_inputs(layer, masking, layer.inbound.len());
        let input_infos = inbound_infos(spec, &sources, &infos, layer);
        let input_masks = masks.inputs(i);
        check_keras_mask(layer, input_masks.built.first().copied().flatten())?;
        for (key, mask) in ATTENTION_MASK_RECORDS.iter().zip(&input_masks.built) {
            check_recorded_mask(layer, key, *mask)?;
        }
        let seen = input_masks.seen(&recorded);
        if masking == Masking::Unsupported {
            if let Some(mask) = seen.iter().flatten().next() {
                return Err(layer.error(format!(
                    "receives the Keras mask made by {:?} (padding to skip), and the mask is \
                     not converted for this layer type",
                    mask.origin
                )));
            }
        }
        let seen: Vec<Option<String>> = seen.iter().map(|m| m.map(|m| m.value.clone())).collect();
        let inputs: Vec<ValueRef<'_>> = layer
            .inbound
            .iter()
            .zip(&input_infos)
            .zip(&seen)
            .map(|((r, info), mask)| ValueRef {
                name: value_name(spec, &sources, &values, r),
                info,
                mask: mask.as_deref(),
            })
            .collect();
        let planned = output_owner
            .get(&i)
            .map_or(layer.name.as_str(), |o| o.as_str());
        let output = ValueRef {
            name: planned,
            info: &infos[i],
            mask: None,
        };
        let result = converters[i].emit(layer, &inputs, output, &mut g)?;
        let made = converters[i]
            .emit_mask(layer, &inputs, &mut g)?
            .map(|made| Mask {
                value: made.value,
                origin: layer.name.clone(),
                ids: BTreeSet::from([made.source]),
            });
        masks.settle(
            &mut g,
            i,
            layer,
            masking,
            recorded.iter().all(|&r| r),
            &inputs,
            &infos[i],
            made,
        )?;
        if clears_input_masks(masking) {
            masks.clear_inputs(i, &spec.layers, &maskings)?;
        }
        values[i] = result;
    }

    let mut outputs = Vec::with_capacity(spec.outputs.len());
    for output in &spec.outputs {
        let (value, info) = match sources[output.source.as_str()] {
            Source::Input(j) => (spec.inputs[j].name.as_str(), input_info(spec, j)),
            Source::Layer(j) => (values[j].as_str(), infos[j].clone()),
        };
        if value != output.name {
            g.node_into("Identity", &[value], &output.name, vec![]);
        }
        outputs.push(value_info(&output.name, &info, false));
    }

    let mut graph = GraphProto::new();
    graph.name = if spec.name.is_empty() {
        "model".to_string()
    } else {
        spec.name.clone()
    };
    graph.input = (0..spec.inputs.len())
        .map(|j| value_info(&spec.inputs[j].name, &input_info(spec, j), true))
        .collect();
    graph.output = outputs;
    graph.node = std::mem::take(&mut g.nodes);
    graph.initializer = std::mem::take(&mut g.initializers);

    Ok((graph, std::mem::take(&mut g.deferred)))
}

fn assemble(graph: GraphProto, opset: i64) -> ModelProto {
    let mut opset_import = OperatorSetIdProto::new();
    opset_import.domain = String::new();
    opset_import.version = opset;

    let mut model = ModelProto::new();
    model.ir_version = ir_version_for(opset);
    model.opset_import = vec![opset_import];
    model.producer_name = "thunderbolt".to_string();
    model.producer_version = env!("CARGO_PKG_VERSION").to_string();
    model.graph = Some(graph).into();
    model
}

/// Every input and layer name, which must be unique and non-empty.
fn index_names(spec: &ModelSpec) -> Result<HashMap<&str, Source>, BuildError> {
    let mut sources: HashMap<&str, Source> = HashMap::new();
    let describe = |s: Source| match s {
        Source::Input(_) => "an input",
        Source::Layer(_) => "a layer",
    };
    let entries = spec
        .inputs
        .iter()
        .enumerate()
        .map(|(i, x)| (x.name.as_str(), Source::Input(i)))
        .chain(
            spec.layers
                .iter()
                .enumerate()
                .map(|(i, l)| (l.name.as_str(), Source::Layer(i))),
        );
    for (name, source) in entries {
        if name.is_empty() {
            return Err(BuildError::InvalidSpec(format!(
                "{} has an empty name",
                describe(source)
            )));
        }
        if let Some(previous) = sources.insert(name, source) {
            return Err(BuildError::DuplicateName {
                name: name.to_string(),
                message: format!("used by {} and by {}", describe(previous), describe(source)),
            });
        }
    }
    if spec.outputs.is_empty() {
        return Err(BuildError::InvalidSpec(
            "the model has no outputs".to_string(),
        ));
    }
    Ok(sources)
}

fn lookup_converters<'r>(
    spec: &ModelSpec,
    registry: &'r LayerRegistry,
) -> Result<Vec<&'r dyn LayerConverter>, BuildError> {
    spec.layers
        .iter()
        .map(|layer| {
            for (i, w) in layer.weights.iter().enumerate() {
                w.validate(&format!(
                    "layer {:?} ({}) weight {i}",
                    layer.name, layer.class_name
                ))?;
            }
            registry
                .get(&layer.class_name)
                .ok_or_else(|| BuildError::UnknownLayer {
                    layer: layer.name.clone(),
                    class_name: layer.class_name.clone(),
                    supported: registry.class_names().join(", "),
                })
        })
        .collect()
}

fn check_references(spec: &ModelSpec, sources: &HashMap<&str, Source>) -> Result<(), BuildError> {
    for layer in &spec.layers {
        if let Some(r) = layer
            .inbound
            .iter()
            .find(|r| !sources.contains_key(r.as_str()))
        {
            return Err(BuildError::DanglingReference {
                from: format!("layer {:?}", layer.name),
                reference: r.clone(),
            });
        }
    }
    for output in &spec.outputs {
        if !sources.contains_key(output.source.as_str()) {
            return Err(BuildError::DanglingReference {
                from: format!("output {:?}", output.name),
                reference: output.source.clone(),
            });
        }
    }
    Ok(())
}

/// Kahn's algorithm, always taking the earliest listed ready layer, so the order (and the
/// emitted model) depends only on the spec.
fn topological_order(
    spec: &ModelSpec,
    sources: &HashMap<&str, Source>,
) -> Result<Vec<usize>, BuildError> {
    let n = spec.layers.len();
    let mut pending = vec![0usize; n];
    let mut consumers: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, layer) in spec.layers.iter().enumerate() {
        for r in &layer.inbound {
            if let Some(Source::Layer(j)) = sources.get(r.as_str()) {
                pending[i] += 1;
                consumers[*j].push(i);
            }
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> =
        (0..n).filter(|&i| pending[i] == 0).map(Reverse).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(Reverse(i)) = ready.pop() {
        order.push(i);
        for &c in &consumers[i] {
            pending[c] -= 1;
            if pending[c] == 0 {
                ready.push(Reverse(c));
            }
        }
    }
    if order.len() < n {
        return Err(BuildError::Cycle {
            layers: find_cycle(spec, sources, &pending),
        });
    }
    Ok(order)
}

/// Names one cycle among the layers Kahn's algorithm could not order: each of them still
/// waits on an unordered layer, so walking those edges backwards must revisit a layer.
fn find_cycle(spec: &ModelSpec, sources: &HashMap<&str, Source>, pending: &[usize]) -> Vec<String> {
    let blocked = |i: usize| pending[i] > 0;
    let Some(mut current) = (0..spec.layers.len()).find(|&i| blocked(i)) else {
        return Vec::new();
    };
    let mut path: Vec<usize> = Vec::new();
    let mut seen: HashSet<usize> = HashSet::new();
    while seen.insert(current) {
        path.push(current);
        let next =
            spec.layers[current]
                .inbound
                .iter()
                .find_map(|r| match sources.get(r.as_str()) {
                    Some(Source::Layer(j)) if blocked(*j) => Some(*j),
                    _ => None,
                });
        match next {
            Some(j) => current = j,
            None => break,
        }
    }
    let start = path.iter().position(|&i| i == current).unwrap_or(0);
    // The walk follows edges backwards; list the cycle in data-flow order.
    path[start..]
        .iter()
        .rev()
        .map(|&i| spec.layers[i].name.clone())
        .collect()
}

fn input_info(spec: &ModelSpec, j: usize) -> TensorInfo {
    TensorInfo::new(spec.inputs[j].dtype, spec.inputs[j].shape.clone())
}

fn inbound_infos(
    spec: &ModelSpec,
    sources: &HashMap<&str, Source>,
    infos: &[TensorInfo],
    layer: &Layer,
) -> Vec<TensorInfo> {
    layer
        .inbound
        .iter()
        .map(|r| match sources[r.as_str()] {
            Source::Input(j) => input_info(spec, j),
            Source::Layer(j) => infos[j].clone(),
        })
        .collect()
}

fn value_name<'a>(
    spec: &'a ModelSpec,
    sources: &HashMap<&str, Source>,
    values: &'a [String],
    reference: &str,
) -> &'a str {
    match sources[reference] {
        Source::Input(j) => &spec.inputs[j].name,
        Source::Layer(j) => &values[j],
    }
}

fn infer_types(
    spec: &ModelSpec,
    sources: &HashMap<&str, Source>,
    converters: &[&dyn LayerConverter],
    order: &[usize],
) -> Result<Vec<TensorInfo>, BuildError> {
    // Placeholder entries are overwritten in topological order before anyone reads them.
    let mut infos = vec![TensorInfo::new(DType::F32, Vec::new()); spec.layers.len()];
    for &i in order {
        let layer = &spec.layers[i];
        let inputs = inbound_infos(spec, sources, &infos, layer);
        infos[i] = converters[i].infer(layer, &inputs)?;
    }
    Ok(infos)
}

/// Output names are unique, differ from every input name, and may equal a layer name only
/// when that layer is their source. Returns, per layer, the output name its result is
/// written to directly (the first output it feeds).
fn check_outputs(
    spec: &ModelSpec,
    sources: &HashMap<&str, Source>,
) -> Result<HashMap<usize, String>, BuildError> {
    let mut seen = HashSet::new();
    let mut owner = HashMap::new();
    for output in &spec.outputs {
        if output.name.is_empty() {
            return Err(BuildError::InvalidSpec(format!(
                "the output of {:?} has an empty name",
                output.source
            )));
        }
        if !seen.insert(output.name.as_str()) {
            return Err(BuildError::DuplicateName {
                name: output.name.clone(),
                message: "used by two outputs".to_string(),
            });
        }
        match sources.get(output.name.as_str()) {
            Some(Source::Input(_)) => {
                return Err(BuildError::DuplicateName {
                    name: output.name.clone(),
                    message: "used by an input and by an output".to_string(),
                })
            }
            Some(Source::Layer(_)) if output.name != output.source => {
                return Err(BuildError::DuplicateName {
                    name: output.name.clone(),
                    message: format!("used by a layer and by the output of {:?}", output.source),
                })
            }
            _ => {}
        }
        if let Some(Source::Layer(j)) = sources.get(output.source.as_str()) {
            owner.entry(*j).or_insert_with(|| output.name.clone());
        }
    }
    Ok(owner)
}

fn value_info(name: &str, info: &TensorInfo, is_input: bool) -> ValueInfoProto {
    let dims = info
        .shape
        .iter()
        .enumerate()
        .map(|(i, d): (usize, &Dim)| {
            let mut dim = Dimension::new();
            dim.value = match d {
                Some(n) => Some(dimension::Value::DimValue(*n as i64)),
                None if i == 0 => Some(dimension::Value::DimParam(BATCH_DIM.to_string())),
                None if is_input => Some(dimension::Value::DimParam(format!("{name}_dim{i}"))),
                None => None,
            };
            dim
        })
        .collect();
    let mut shape = TensorShapeProto::new();
    shape.dim = dims;
    let mut tensor = type_proto::Tensor::new();
    tensor.elem_type = info.dtype.onnx() as i32;
    tensor.shape = Some(shape).into();
    let mut tp = TypeProto::new();
    tp.value = Some(type_proto::Value::TensorType(tensor));
    let mut v = ValueInfoProto::new();
    v.name = name.to_string();
    v.type_ = Some(tp).into();
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::concatenated_mask_source;
    use crate::spec::{Input, Output};
    use crate::tensor::Tensor;
    use serde_json::{json, Value};

    /// A small test-graph builder: `f32` input `x` of shape `(None, 4)`.
    #[derive(Clone)]
    struct Spec(ModelSpec);

    impl Spec {
        fn new() -> Self {
            Spec(ModelSpec {
                name: "test".into(),
                inputs: vec![Input {
                    name: "x".into(),
                    dtype: DType::F32,
                    shape: vec![None, Some(4)],
                }],
                layers: vec![],
                outputs: vec![],
                opset: None,
            })
        }

        fn layer(
            mut self,
            name: &str,
            class: &str,
            config: Value,
            inbound: &[&str],
            weights: Vec<Tensor>,
        ) -> Self {
            self.0.layers.push(Layer {
                name: name.into(),
                class_name: class.into(),
                config,
                inbound: inbound.iter().map(|s| s.to_string()).collect(),
                weights,
            });
            self
        }

        fn dense(self, name: &str, inbound: &str, fan_in: usize, units: usize) -> Self {
            let kernel = Tensor::from_f32(vec![fan_in, units], &vec![0.5; fan_in * units]);
            let bias = Tensor::from_f32(vec![units], &vec![0.0; units]);
            self.layer(
                name,
                "Dense",
                json!({"units": units}),
                &[inbound],
                vec![kernel, bias],
            )
        }

        fn output(mut self, name: &str, source: &str) -> Self {
            self.0.outputs.push(Output {
                name: name.into(),
                source: source.into(),
            });
            self
        }

        fn build(&self) -> Result<ModelProto, BuildError> {
            build_model_with(&self.0, &LayerRegistry::default())
        }

        fn error(&self) -> String {
            self.build()
                .expect_err("the spec should be rejected")
                .to_string()
        }
    }

    fn graph(model: &ModelProto) -> &onnx_protobuf::GraphProto {
        model.graph.as_ref().expect("graph")
    }

    #[test]
    fn builds_a_chain_with_caller_names_and_initializers() {
        let model = Spec::new()
            .dense("d1", "x", 4, 3)
            .dense("d2", "d1", 3, 2)
            .output("y", "d2")
            .build()
            .unwrap();
        let g = graph(&model);
        assert_eq!(model.ir_version, 8);
        assert_eq!(model.opset_import[0].version, 18);
        assert_eq!(g.input[0].name, "x");
        assert_eq!(g.output[0].name, "y");
        let inits: Vec<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(inits, ["d1/kernel", "d1/bias", "d2/kernel", "d2/bias"]);
        assert_eq!(g.node.last().unwrap().output, ["y"]);
        assert!(g.node.iter().all(|n| n.op_type != "Identity"));
    }

    #[test]
    fn layers_in_any_order_are_sorted_topologically() {
        let model = Spec::new()
            .dense("d2", "d1", 3, 2)
            .dense("d1", "x", 4, 3)
            .output("y", "d2")
            .build()
            .unwrap();
        let ops: Vec<&str> = graph(&model).node.iter().map(|n| n.name.as_str()).collect();
        let first_d2 = ops
            .iter()
            .position(|n| n.starts_with("d2") || *n == "y")
            .unwrap();
        assert!(
            ops[..first_d2].iter().all(|n| n.starts_with("d1")),
            "{ops:?}"
        );
    }

    #[test]
    fn output_names_from_identity_layers_inputs_and_shared_sources() {
        let model = Spec::new()
            .layer("drop", "Dropout", json!({"rate": 0.5}), &["x"], vec![])
            .dense("d", "drop", 4, 2)
            .output("a", "d")
            .output("b", "d")
            .output("c", "drop")
            .output("x_copy", "x")
            .build()
            .unwrap();
        let g = graph(&model);
        let outs: Vec<&str> = g.output.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(outs, ["a", "b", "c", "x_copy"]);
        let identities: Vec<(&str, &str)> = g
            .node
            .iter()
            .filter(|n| n.op_type == "Identity")
            .map(|n| (n.input[0].as_str(), n.output[0].as_str()))
            .collect();
        assert_eq!(identities, [("a", "b"), ("x", "c"), ("x", "x_copy")]);
        // Dropout emits nothing: the Dense reads the graph input directly.
        assert_eq!(g.node[0].input[0], "x");
    }

    #[test]
    fn same_spec_gives_same_bytes() {
        let spec = Spec::new()
            .dense("d1", "x", 4, 3)
            .dense("d2", "d1", 3, 2)
            .output("y", "d2");
        let a = crate::build(&spec.0).unwrap();
        let b = crate::build(&spec.0).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn unknown_layer_type() {
        let err = Spec::new()
            .layer("c", "Conv9D", json!({}), &["x"], vec![])
            .output("y", "c")
            .error();
        assert!(
            err.contains("layer \"c\": unknown layer type \"Conv9D\"") && err.contains("Dense"),
            "{err}"
        );
    }

    #[test]
    fn missing_weights() {
        let err = Spec::new()
            .layer("d", "Dense", json!({"units": 2}), &["x"], vec![])
            .output("y", "d")
            .error();
        assert!(
            err.contains("layer \"d\" (Dense): expects 2 weight tensor(s) [kernel, bias], got 0"),
            "{err}"
        );
    }

    #[test]
    fn kernel_that_does_not_match_the_incoming_tensor() {
        let err = Spec::new()
            .dense("d1", "x", 4, 3)
            .dense("d2", "d1", 5, 2)
            .output("y", "d2")
            .error();
        assert!(
            err.contains(
                "layer \"d2\" (Dense): weight \"kernel\" has shape [5, 2], expected (3, 2)"
            ),
            "{err}"
        );
    }

    #[test]
    fn weight_bytes_that_do_not_match_the_shape() {
        let bad = Tensor {
            dtype: DType::F32,
            shape: vec![4, 2],
            data: vec![0; 31],
        };
        let bias = Tensor::from_f32(vec![2], &[0.0, 0.0]);
        let err = Spec::new()
            .layer("d", "Dense", json!({}), &["x"], vec![bad, bias])
            .output("y", "d")
            .error();
        assert!(
            err.contains(
                "layer \"d\" (Dense) weight 0: shape [4, 2] of float32 needs 32 bytes, got 31"
            ),
            "{err}"
        );
    }

    #[test]
    fn dangling_references() {
        let err = Spec::new()
            .dense("d", "nope", 4, 2)
            .output("y", "d")
            .error();
        assert_eq!(
            err,
            "layer \"d\" refers to \"nope\", which is neither an input nor a layer"
        );
        let err = Spec::new()
            .dense("d", "x", 4, 2)
            .output("y", "missing")
            .error();
        assert_eq!(
            err,
            "output \"y\" refers to \"missing\", which is neither an input nor a layer"
        );
    }

    #[test]
    fn cycles_are_named() {
        let err = Spec::new()
            .dense("a", "x", 4, 4)
            .layer("b", "Add", json!({}), &["a", "c"], vec![])
            .dense("c", "b", 4, 4)
            .output("y", "c")
            .error();
        assert_eq!(err, "layers form a cycle: c, b");
        let err = Spec::new()
            .dense("self", "self", 4, 4)
            .output("y", "self")
            .error();
        assert_eq!(err, "layers form a cycle: self");
    }

    #[test]
    fn duplicate_names() {
        let err = Spec::new()
            .dense("d", "x", 4, 2)
            .dense("d", "x", 4, 2)
            .output("y", "d")
            .error();
        assert_eq!(err, "duplicate name \"d\": used by a layer and by a layer");
        let err = Spec::new().dense("x", "x", 4, 2).output("y", "x").error();
        assert_eq!(err, "duplicate name \"x\": used by an input and by a layer");
        let err = Spec::new()
            .dense("d", "x", 4, 2)
            .output("y", "d")
            .output("y", "x")
            .error();
        assert_eq!(err, "duplicate name \"y\": used by two outputs");
        let err = Spec::new()
            .dense("d", "x", 4, 2)
            .dense("e", "x", 4, 2)
            .output("e", "d")
            .error();
        assert!(
            err.contains("duplicate name \"e\": used by a layer and by the output of \"d\""),
            "{err}"
        );
        let err = Spec::new().dense("d", "x", 4, 2).output("x", "d").error();
        assert!(err.contains("used by an input and by an output"), "{err}");
    }

    #[test]
    fn unsupported_dtypes() {
        let mut spec = Spec::new().dense("d", "x", 4, 2).output("y", "d");
        spec.0.inputs[0].dtype = DType::I32;
        let err = spec.error();
        assert!(
            err.contains("layer \"d\" (Dense) input: unsupported dtype int32"),
            "{err}"
        );
        let table = Tensor::from_i32(vec![10, 4], &[0; 40]);
        let err = Spec::new()
            .layer("e", "Embedding", json!({}), &["x"], vec![table])
            .output("y", "e")
            .error();
        assert!(
            err.contains("layer \"e\" (Embedding) weight \"embeddings\": unsupported dtype int32"),
            "{err}"
        );
        let kernel = Tensor::from_f64(vec![4, 2], &[0.0; 8]);
        let err = Spec::new()
            .layer(
                "d",
                "Dense",
                json!({"use_bias": false}),
                &["x"],
                vec![kernel],
            )
            .output("y", "d")
            .error();
        assert!(
            err.contains("weight \"kernel\": unsupported dtype float64"),
            "{err}"
        );
    }

    #[test]
    fn input_shapes_past_int64_or_with_a_zero_are_refused() {
        let mut spec = Spec::new().output("y", "x");
        spec.0.inputs[0].shape = vec![None, Some(1 << 40), Some(1 << 31), Some(1 << 31)];
        assert_eq!(
            spec.error(),
            "invalid model spec: input \"x\": the shape (None, 1099511627776, 2147483648, \
             2147483648) holds more than 2^63 elements"
        );
        spec.0.inputs[0].shape = vec![None, Some(usize::MAX)];
        assert!(spec.error().contains("more than 2^63 elements"));
        spec.0.inputs[0].shape = vec![Some(0), None, Some(4)];
        assert_eq!(
            spec.error(),
            "invalid model spec: input \"x\": the shape (0, None, 4) has a dimension of 0"
        );
        // Large but representable: the model builds.
        spec.0.inputs[0].shape = vec![None, Some(1 << 31), Some(1 << 31)];
        assert!(spec.build().is_ok());
    }

    #[test]
    fn opset_and_empty_outputs() {
        let mut spec = Spec::new().dense("d", "x", 4, 2).output("y", "d");
        spec.0.opset = Some(11);
        assert_eq!(spec.error(), "unsupported opset 11 (supported: 18 to 22)");
        spec.0.opset = Some(21);
        assert_eq!(spec.build().unwrap().ir_version, 10);
        let err = Spec::new().dense("d", "x", 4, 2).error();
        assert_eq!(err, "invalid model spec: the model has no outputs");
    }

    #[test]
    fn custom_converters_extend_the_registry() {
        struct Double;
        impl LayerConverter for Double {
            fn infer(
                &self,
                _layer: &Layer,
                inputs: &[TensorInfo],
            ) -> Result<TensorInfo, BuildError> {
                Ok(inputs[0].clone())
            }
            fn emit(
                &self,
                _layer: &Layer,
                inputs: &[ValueRef<'_>],
                output: ValueRef<'_>,
                g: &mut GraphBuilder,
            ) -> Result<String, BuildError> {
                g.node_into(
                    "Add",
                    &[inputs[0].name, inputs[0].name],
                    output.name,
                    vec![],
                );
                Ok(output.name.to_string())
            }
        }
        let spec = Spec::new()
            .layer("twice", "Double", json!({}), &["x"], vec![])
            .output("y", "twice");
        let mut registry = LayerRegistry::default();
        registry.register("Double", Double);
        let model = build_model_with(&spec.0, &registry).unwrap();
        assert_eq!(graph(&model).node[0].op_type, "Add");
        assert!(spec.error().contains("unknown layer type \"Double\""));

        // A converter that says nothing about masks refuses a masked input.
        let spec = masked("twice", "Double", json!({}), vec![]);
        let err = build_model_with(&spec.0, &registry)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("layer \"twice\" (Double): receives the Keras mask made by \"emb\""),
            "{err}"
        );
    }

    #[test]
    fn concatenate_joins_masks_as_keras_does() {
        let dense = |spec: Spec, name: &str, from: &str| spec.dense(name, from, 4, 3);
        let average = |spec: Spec, from: &str, recorded: Value| {
            spec.layer(
                "avg",
                "GlobalAveragePooling1D",
                json!({ "keras_mask": recorded }),
                &[from],
                vec![],
            )
            .output("z", "avg")
        };

        // The masked `d` (5 steps of 4) concatenated with an unmasked float input `x`.
        let with_x = |axis: i64, inbound: &[&str], x_shape: [usize; 2]| {
            let mut spec = masked("d", "Dropout", json!({"rate": 0.5}), vec![]).layer(
                "cat",
                "Concatenate",
                json!({ "axis": axis }),
                inbound,
                vec![],
            );
            spec.0.inputs.push(Input {
                name: "x".into(),
                dtype: DType::F32,
                shape: vec![None, Some(x_shape[0]), Some(x_shape[1])],
            });
            spec
        };

        // Along the last axis, where masks have no axis, two masks are ORed ...
        let spec = dense(
            masked("d", "Dropout", json!({"rate": 0.5}), vec![]),
            "e",
            "emb",
        )
        .layer("cat", "Concatenate", json!({}), &["d", "e"], vec![]);
        let source =
            concatenated_mask_source(-1, &[Some(vec!["ids".into()]), Some(vec!["ids".into()])]);
        let model = average(spec.clone(), "cat", json!([source]))
            .build()
            .unwrap();
        let ops = op_types(&model);
        assert!(ops.contains(&"Or") && !ops.contains(&"Expand"), "{ops:?}");
        assert!(ops.contains(&"ReduceSum"), "a masked average: {ops:?}");

        // ... and Keras' record must name the same mask, not the embedding's alone.
        let err = average(spec, "cat", json!(["ids"])).error();
        assert!(
            err.contains("Keras computes this layer with the mask of"),
            "{err}"
        );

        // An input without a mask counts every step.
        let spec = with_x(2, &["d", "x"], [5, 2]);
        let source = concatenated_mask_source(2, &[Some(vec!["ids".into()]), None]);
        let model = average(spec, "cat", json!([source])).build().unwrap();
        let ops = op_types(&model);
        assert!(ops.contains(&"Expand") && !ops.contains(&"Or"), "{ops:?}");

        // Along the steps, the masks are joined, with all steps for the unmasked input.
        let spec = with_x(1, &["x", "d"], [2, 4]);
        let source = concatenated_mask_source(1, &[None, Some(vec!["ids".into()])]);
        let model = average(spec, "cat", json!([source])).build().unwrap();
        let concat = graph(&model)
            .node
            .iter()
            .filter(|n| n.op_type == "Concat")
            .count();
        assert_eq!(
            concat,
            2,
            "the values' Concat and the masks': {:?}",
            op_types(&model)
        );

        // Without a mask on any input, none.
        let mut spec = Spec::new().layer("cat", "Concatenate", json!({}), &["x", "x"], vec![]);
        spec.0.inputs = vec![Input {
            name: "x".into(),
            dtype: DType::F32,
            shape: vec![None, Some(5), Some(2)],
        }];
        let model = average(spec, "cat", json!([])).build().unwrap();
        assert!(op_types(&model).contains(&"ReduceMean"));
    }

    /// Int64 ids `(None, 5)`, an `Embedding(mask_zero=True)` of width 4 named `emb`, then
    /// `class` reading it (twice for a merge or attention), as the output.
    fn masked(name: &str, class: &str, config: Value, weights: Vec<Tensor>) -> Spec {
        let merge = [
            "Add",
            "Subtract",
            "Multiply",
            "Average",
            "Maximum",
            "Minimum",
            "Concatenate",
            "MultiHeadAttention",
        ];
        let inbound: &[&str] = if merge.contains(&class) {
            &["emb", "emb"]
        } else {
            &["emb"]
        };
        let mut spec = Spec::new()
            .layer(
                "emb",
                "Embedding",
                json!({"mask_zero": true}),
                &["ids"],
                vec![Tensor::from_f32(vec![10, 4], &[0.25; 40])],
            )
            .layer(name, class, config, inbound, weights)
            .output("y", name);
        spec.0.inputs = vec![Input {
            name: "ids".into(),
            dtype: DType::I64,
            shape: vec![None, Some(5)],
        }];
        spec
    }

    fn op_types(model: &ModelProto) -> Vec<&str> {
        graph(model)
            .node
            .iter()
            .map(|n| n.op_type.as_str())
            .collect()
    }

    /// `MultiHeadAttention(num_heads=1, key_dim=2)` weights for 4 features.
    fn attention_weights() -> Vec<Tensor> {
        let f32s =
            |shape: &[usize]| Tensor::from_f32(shape.to_vec(), &vec![0.5; shape.iter().product()]);
        [
            &[4, 1, 2][..],
            &[1, 2],
            &[4, 1, 2],
            &[1, 2],
            &[4, 1, 2],
            &[1, 2],
            &[1, 2, 4],
            &[4],
        ]
        .into_iter()
        .map(f32s)
        .collect()
    }

    fn op_of<'m>(model: &'m ModelProto, node: &str) -> Option<&'m str> {
        graph(model)
            .node
            .iter()
            .find(|n| n.name == node)
            .map(|n| n.op_type.as_str())
    }

    /// An encoder's two attention blocks over a masked embedding, `keras_2` marking the
    /// layers as a Keras 2 file's.
    fn two_blocks(keras_2: bool) -> Spec {
        let config = json!({"num_heads": 1, "key_dim": 2, "keras_2": keras_2});
        let mut residual = json!({});
        if keras_2 {
            residual = json!({"keras_2": true});
        }
        masked(
            "a1",
            "MultiHeadAttention",
            config.clone(),
            attention_weights(),
        )
        .layer("add", "Add", residual, &["emb", "a1"], vec![])
        .layer(
            "a2",
            "MultiHeadAttention",
            config,
            &["add", "add"],
            attention_weights(),
        )
        .output("z", "a2")
    }

    #[test]
    fn attention_clears_its_inputs_masks_as_keras_3_runs_it() {
        // Keras 3: the first block masks its scores; the residual Add then has no mask, so
        // the second attends to every step.
        let model = two_blocks(false).build().unwrap();
        assert_eq!(op_of(&model, "a1/masked_scores"), Some("Where"));
        assert_eq!(op_of(&model, "a2/masked_scores"), None);
        // Keras 2 clears nothing, and adds -1e9 to masked scores.
        let model = two_blocks(true).build().unwrap();
        assert_eq!(op_of(&model, "a1/masked_scores"), Some("Add"));
        assert_eq!(op_of(&model, "a2/masked_scores"), Some("Add"));
        assert_eq!(op_of(&model, "a2/masked_weights"), None);
        // Keras 3 with dropout multiplies the weights by the mask.
        let config = json!({"num_heads": 1, "key_dim": 2, "dropout": 0.1});
        let model = masked("a", "MultiHeadAttention", config, attention_weights())
            .build()
            .unwrap();
        assert_eq!(op_of(&model, "a/masked_scores"), Some("Add"));
        assert_eq!(op_of(&model, "a/masked_weights"), Some("Mul"));
    }

    #[test]
    fn attention_uses_and_checks_the_masks_keras_recorded() {
        // Keras 3.8 records the value's mask and uses it, though the first block cleared
        // the one the residual carries: the second block keeps its value mask only.
        let config = json!({"num_heads": 1, "key_dim": 2, "keras_version": "3.8"});
        let mut recorded = config.clone();
        recorded["keras_value_mask"] = json!(["ids"]);
        let spec = masked("a1", "MultiHeadAttention", config, attention_weights())
            .layer("add", "Add", json!({}), &["emb", "a1"], vec![])
            .layer(
                "a2",
                "MultiHeadAttention",
                recorded.clone(),
                &["add", "add"],
                attention_weights(),
            )
            .output("z", "a2");
        let model = spec.build().unwrap();
        assert_eq!(op_of(&model, "a2/value_mask"), Some("Unsqueeze"));
        assert_eq!(op_of(&model, "a2/query_mask"), None);

        recorded["keras_value_mask"] = json!(["elsewhere"]);
        let err = masked("a", "MultiHeadAttention", recorded, attention_weights()).error();
        assert_eq!(
            err,
            "layer \"a\" (MultiHeadAttention): Keras computes this layer's value with the mask \
             of {\"elsewhere\"}, but the mask propagated to it is the mask of {\"ids\"}"
        );
    }

    #[test]
    fn masked_merges_follow_the_keras_release() {
        let product =
            |release: &str| masked("m", "Multiply", json!({"keras_version": release}), vec![]);
        // Keras 3.3 multiplies as without masks; 3.4 counts a masked step as 1.
        let plain = product("3.3").build().unwrap();
        assert!(op_types(&plain).contains(&"Mul"));
        assert!(!op_types(&plain).contains(&"Where"));
        let masked_model = product("3.4").build().unwrap();
        assert!(op_types(&masked_model).contains(&"Where"));
    }

    #[test]
    fn attention_refuses_a_mask_reader_beside_it() {
        let config = json!({"num_heads": 1, "key_dim": 2});
        let beside = |class: &str, weights: Vec<Tensor>| {
            let (inbound, b_config): (&[&str], _) = if class == "MultiHeadAttention" {
                (&["emb", "emb"], config.clone())
            } else {
                (&["emb"], json!({}))
            };
            masked(
                "a",
                "MultiHeadAttention",
                config.clone(),
                attention_weights(),
            )
            .layer("b", class, b_config, inbound, weights)
            .output("w", "b")
        };
        assert_eq!(
            beside("MultiHeadAttention", attention_weights()).error(),
            "layer \"a\" (MultiHeadAttention): clears the Keras mask of \"emb\" when it runs \
             (as Keras 3 does), and \"b\" reads that mask too with neither layer depending on \
             the other: whether \"b\" sees the mask depends on the order Keras runs them in, \
             which the model does not fix"
        );
        // A layer given Keras' recorded mask, or one that ends the mask, reads no cleared one.
        beside("GlobalAveragePooling1D", vec![]).build().unwrap();
        beside("Flatten", vec![]).build().unwrap();
        // Nor does a Keras 2 file's attention clear anything.
        let config = json!({"num_heads": 1, "key_dim": 2, "keras_2": true});
        masked(
            "a",
            "MultiHeadAttention",
            config.clone(),
            attention_weights(),
        )
        .layer(
            "b",
            "MultiHeadAttention",
            config,
            &["emb", "emb"],
            attention_weights(),
        )
        .output("w", "b")
        .build()
        .unwrap();
    }

    #[test]
    fn attention_walks_a_long_chain_beside_it_without_recursion() {
        // 100,000 layers passing the embedding's mask on beside the attention, ending in no
        // mask reader: a walk recursing per layer would overflow the test thread's stack.
        let config = json!({"num_heads": 1, "key_dim": 2});
        let mut spec = masked("a", "MultiHeadAttention", config, attention_weights());
        let mut previous = "emb".to_string();
        for k in 0..100_000 {
            let name = format!("drop_{k}");
            spec = spec.layer(&name, "Dropout", json!({"rate": 0.1}), &[&previous], vec![]);
            previous = name;
        }
        spec.output("chain", &previous).build().unwrap();
    }

    #[test]
    fn masks_reach_only_layers_that_convert_them() {
        let err = masked("r", "Softmax", json!({}), vec![]).error();
        assert_eq!(
            err,
            "layer \"r\" (Softmax): receives the Keras mask made by \"emb\" (padding to skip), \
             and the mask is not converted for this layer type"
        );

        // Layers Keras drops the mask at compute as without one, and so does what follows.
        let model = masked("flat", "Flatten", json!({}), vec![])
            .layer("soft", "Softmax", json!({}), &["flat"], vec![])
            .output("z", "soft")
            .build()
            .unwrap();
        assert!(!op_types(&model).contains(&"ReduceSum"));

        // Passed on through Dense and a merge (OR of the two masks), it changes the average.
        let model = masked("sum", "Add", json!({}), vec![])
            .dense("d", "sum", 4, 3)
            .layer("avg", "GlobalAveragePooling1D", json!({}), &["d"], vec![])
            .output("z", "avg")
            .build()
            .unwrap();
        let ops = op_types(&model);
        for op in ["Equal", "Not", "Or", "Mul", "ReduceSum", "Div"] {
            assert!(ops.contains(&op), "{op} missing from {ops:?}");
        }
        assert!(!ops.contains(&"ReduceMean"), "{ops:?}");

        // Maximum, Minimum and Multiply compute with the masks (a masked step loses, or
        // counts as 1) and OR them; as keras.ops calls they do neither.
        let averaged = |class: &str, config: Value| {
            let model = masked("m", class, config, vec![])
                .layer("avg", "GlobalAveragePooling1D", json!({}), &["m"], vec![])
                .output("z", "avg")
                .build()
                .unwrap();
            op_types(&model)
                .into_iter()
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        for class in ["Maximum", "Minimum", "Multiply"] {
            let ops = averaged(class, json!({}));
            let has = |op: &str| ops.iter().any(|o| o == op);
            assert!(has("Where") && has("ReduceSum"), "{class}: {ops:?}");
            let ops = averaged(class, json!({"keras_operation": true}));
            let has = |op: &str| ops.iter().any(|o| o == op);
            assert!(!has("Where") && has("ReduceMean"), "{class}: {ops:?}");
            // A Keras 2 file's merge computes as without masks and ANDs them.
            let ops = averaged(class, json!({"keras_2": true}));
            let has = |op: &str| ops.iter().any(|o| o == op);
            assert!(
                !has("Where") && has("And") && !has("Or") && has("ReduceSum"),
                "{class}: {ops:?}"
            );
        }

        // keras.ops calls drop masks, as Keras' operations do: a plain mean follows.
        let constant = Tensor::from_f32(vec![4], &[1.0; 4]);
        for spec in [
            masked("shifted", "AddConstant", json!({}), vec![constant]),
            masked("shifted", "Add", json!({"keras_operation": true}), vec![]),
        ] {
            let model = spec
                .layer(
                    "avg",
                    "GlobalAveragePooling1D",
                    json!({}),
                    &["shifted"],
                    vec![],
                )
                .output("z", "avg")
                .build()
                .unwrap();
            assert!(op_types(&model).contains(&"ReduceMean"));
        }

        // Without mask_zero, nothing of the kind.
        let mut spec = masked("avg", "GlobalAveragePooling1D", json!({}), vec![]);
        spec.0.layers[0].config = json!({"mask_zero": false});
        let ops = spec.build().unwrap();
        assert_eq!(op_types(&ops), ["Gather", "ReduceMean"]);
    }
}
