//! Flattens a Keras model tree into the builder's flat [`ModelSpec`].
//!
//! Every call of a layer (a Keras "node") becomes one builder layer, so a shared layer
//! appears once per call, with the same weights. Models nested inside models are inlined:
//! their `InputLayer`s are bound to the values they were called on, and their layers get
//! the nested model's name as a prefix (`encoder/embedding`). Only what the outputs need
//! is emitted.
//!
//! The walk is an explicit depth-first search (no recursion, so deep graphs cannot
//! overflow the small stacks of BEAM dirty schedulers), which also finds cycles.

use crate::config::{Arg, CallMask, LayerConfig, LayerKind, ModelConfig, Node, TensorRef};
use crate::custom::CustomLayers;
use crate::error::{ImportError, Result};
use crate::weights::{WeightFile, WeightLocation, WeightScope};
use crate::ImportOptions;
use serde_json::json;
use std::collections::{BTreeSet, HashMap, HashSet};
use thunderbolt_builder::layers::keras_operation::OPERATIONS;
use thunderbolt_builder::{
    concatenated_mask_source, DType, Input, Layer, LayerRegistry, Masking, ModelSpec, Output,
    Tensor,
};

/// One inlined instance of a model: the top-level model, or a nested model at one call.
struct Scope<'m> {
    model: &'m ModelConfig,
    /// Prefix of flat names: `""` at the top, `"encoder/"` inside a nested model.
    prefix: String,
    /// Flat value names of the model's `InputLayer`s.
    bindings: HashMap<&'m str, String>,
    /// Where each layer (by index) finds its weights.
    locations: Vec<WeightLocation>,
    index: HashMap<&'m str, usize>,
    depth: usize,
}

/// How many `Concatenate` layers a recorded mask may pass through: far more than a model
/// nests, and a bound on the importer's recursion for a hostile file.
const MAX_MASK_NESTING: usize = 64;

/// A call of a layer within a scope.
type NodeKey = (usize, usize, usize);

enum Frame {
    Visit(NodeKey),
    Emit(NodeKey),
    CollectNested(NodeKey, usize),
}

enum Resolved {
    Value(String),
    Node(NodeKey, usize),
}

pub struct Flattener<'a> {
    weights: &'a WeightFile,
    options: &'a ImportOptions,
    custom: &'a CustomLayers,
    registry: &'a LayerRegistry,
    scopes: Vec<Scope<'a>>,
    done: HashMap<NodeKey, Vec<String>>,
    in_progress: HashSet<NodeKey>,
    path: Vec<NodeKey>,
    layers: Vec<Layer>,
    used_names: HashSet<String>,
    weight_cache: HashMap<WeightLocation, Vec<Tensor>>,
    /// Marks every layer `"keras_2": true`, for Keras 2's mask rules.
    keras_2: bool,
    /// The Keras 3 release that saved the file, (3, minor), when known.
    keras_3_release: Option<(u32, u32)>,
}

impl<'a> Flattener<'a> {
    pub fn new(
        weights: &'a WeightFile,
        options: &'a ImportOptions,
        custom: &'a CustomLayers,
        registry: &'a LayerRegistry,
    ) -> Self {
        Flattener {
            weights,
            options,
            custom,
            registry,
            scopes: Vec::new(),
            done: HashMap::new(),
            in_progress: HashSet::new(),
            path: Vec::new(),
            layers: Vec::new(),
            used_names: HashSet::new(),
            weight_cache: HashMap::new(),
            keras_2: false,
            keras_3_release: None,
        }
    }

    /// Layers from a file Keras 2 (tf.keras) saved: they combine masks by its rules (see
    /// the builder's `"keras_2"` config key).
    pub fn saved_by_keras_2(mut self, keras_2: bool) -> Self {
        self.keras_2 = keras_2;
        self
    }

    /// The `keras_version` the file records, as (major, minor): attention layers of a Keras 3
    /// file get it (`"keras_version"`), since Keras 3 releases apply their masks differently.
    pub fn saved_by_release(mut self, version: Option<(u32, u32)>) -> Self {
        self.keras_3_release = version.filter(|&(major, _)| major == 3);
        self
    }

    /// Flattens `model` (the top-level model) into a spec.
    pub fn flatten(mut self, model: &'a ModelConfig, scope: WeightScope) -> Result<ModelSpec> {
        let inputs = self.graph_inputs(model)?;
        let mut bindings = HashMap::new();
        for (input, reference) in inputs.iter().zip(&model.inputs) {
            bindings.insert(reference.layer.as_str(), input.name.clone());
        }
        let root = self.push_scope(model, String::new(), bindings, &scope, 0)?;

        // An output keeps its Keras name even when a layer's value would take it (a shared
        // layer whose later call is the output, named after the layer): the value gives way.
        let names = self.output_names(model)?;
        for (name, reference) in names.iter().zip(&model.outputs) {
            let first_call =
                reference.layer == *name && reference.node == 0 && reference.tensor == 0;
            if !first_call {
                self.used_names.insert(name.clone());
            }
        }
        let mut outputs = Vec::with_capacity(model.outputs.len());
        for (name, reference) in names.into_iter().zip(&model.outputs) {
            let source = self.resolve_value(root, reference)?;
            outputs.push(Output { name, source });
        }
        Ok(ModelSpec {
            name: model.name.clone(),
            inputs,
            layers: self.layers,
            outputs,
            opset: self.options.opset,
        })
    }

    fn graph_inputs(&mut self, model: &ModelConfig) -> Result<Vec<Input>> {
        for name in self.options.input_dtypes.keys() {
            if !model.inputs.iter().any(|r| &r.layer == name) {
                let known: Vec<&str> = model.inputs.iter().map(|r| r.layer.as_str()).collect();
                return Err(ImportError::Option(format!(
                    "input_dtypes names {name:?}, which is not an input of the model (inputs: {})",
                    known.join(", ")
                )));
            }
        }
        let mut inputs = Vec::with_capacity(model.inputs.len());
        for reference in &model.inputs {
            let (_, layer) = model.layer(&reference.layer).ok_or_else(|| {
                ImportError::config(format!(
                    "input_layers names {:?}, which is not a layer",
                    reference.layer
                ))
            })?;
            let LayerKind::Input { dtype, shape } = &layer.kind else {
                return Err(ImportError::config(format!(
                    "input_layers names {:?}, a {} and not an InputLayer",
                    layer.name, layer.class_name
                )));
            };
            let keras_dtype = DType::from_name(dtype).map_err(|_| {
                ImportError::config(format!(
                    "input {:?} has unsupported dtype {dtype:?}",
                    layer.name
                ))
            })?;
            let dtype = self
                .options
                .input_dtypes
                .get(&layer.name)
                .copied()
                .or(self.options.input_dtype)
                .unwrap_or(keras_dtype);
            if !self.used_names.insert(layer.name.clone()) {
                return Err(ImportError::config(format!(
                    "input {:?} is listed twice",
                    layer.name
                )));
            }
            inputs.push(Input {
                name: layer.name.clone(),
                dtype,
                shape: shape.clone(),
            });
        }
        Ok(inputs)
    }

    fn output_names(&self, model: &ModelConfig) -> Result<Vec<String>> {
        Ok(match &self.options.output_names {
            Some(names) => {
                if names.len() != model.outputs.len() {
                    return Err(ImportError::Option(format!(
                        "output_names has {} name(s) but the model has {} output(s)",
                        names.len(),
                        model.outputs.len()
                    )));
                }
                let unique: HashSet<&String> = names.iter().collect();
                if unique.len() != names.len() {
                    return Err(ImportError::Option(format!(
                        "output_names has duplicates: {names:?}"
                    )));
                }
                names.clone()
            }
            None => {
                let mut seen = HashSet::new();
                model
                    .outputs
                    .iter()
                    .map(|r| {
                        let base = if r.tensor == 0 {
                            r.layer.clone()
                        } else {
                            format!("{}_{}", r.layer, r.tensor)
                        };
                        let mut name = base.clone();
                        let mut n = 0;
                        while !seen.insert(name.clone()) {
                            n += 1;
                            name = format!("{base}_{n}");
                        }
                        name
                    })
                    .collect()
            }
        })
    }

    fn push_scope(
        &mut self,
        model: &'a ModelConfig,
        prefix: String,
        bindings: HashMap<&'a str, String>,
        weights: &WeightScope,
        depth: usize,
    ) -> Result<usize> {
        let described: Vec<(&str, &str, bool)> = model
            .layers
            .iter()
            .map(|l| {
                (
                    l.name.as_str(),
                    l.class_name.as_str(),
                    !matches!(l.kind, LayerKind::Operation),
                )
            })
            .collect();
        let locations = weights.locations(&described);
        let index = model
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| (l.name.as_str(), i))
            .collect();
        self.scopes.push(Scope {
            model,
            prefix,
            bindings,
            locations,
            index,
            depth,
        });
        Ok(self.scopes.len() - 1)
    }

    /// Resolves a reference to a flat value name, emitting whatever it depends on.
    fn resolve_value(&mut self, scope: usize, reference: &TensorRef) -> Result<String> {
        match self.resolve(scope, reference)? {
            Resolved::Value(name) => Ok(name),
            Resolved::Node(key, tensor) => {
                self.run(key)?;
                self.node_output(key, tensor)
            }
        }
    }

    fn resolve(&self, scope: usize, reference: &TensorRef) -> Result<Resolved> {
        let s = &self.scopes[scope];
        let index = *s.index.get(reference.layer.as_str()).ok_or_else(|| {
            ImportError::config(format!(
                "model {:?} refers to layer {:?}, which it does not contain",
                s.model.name, reference.layer
            ))
        })?;
        let layer = &s.model.layers[index];
        if let LayerKind::Input { .. } = layer.kind {
            let name = s.bindings.get(layer.name.as_str()).ok_or_else(|| {
                ImportError::config(format!(
                    "model {:?} uses InputLayer {:?}, which is not one of its inputs",
                    s.model.name, layer.name
                ))
            })?;
            return Ok(Resolved::Value(name.clone()));
        }
        if reference.node >= layer.nodes.len() {
            return Err(ImportError::config(format!(
                "a reference to call {} of layer {:?}, which has {} call(s)",
                reference.node,
                layer.name,
                layer.nodes.len()
            )));
        }
        Ok(Resolved::Node(
            (scope, index, reference.node),
            reference.tensor,
        ))
    }

    fn node_output(&self, key: NodeKey, tensor: usize) -> Result<String> {
        let outputs = &self.done[&key];
        outputs.get(tensor).cloned().ok_or_else(|| {
            ImportError::config(format!(
                "a reference to output {tensor} of {:?}, which has {} output(s)",
                self.display_name(key),
                outputs.len()
            ))
        })
    }

    fn layer_of(&self, key: NodeKey) -> &'a LayerConfig {
        let model: &'a ModelConfig = self.scopes[key.0].model;
        &model.layers[key.1]
    }

    fn node_of(&self, key: NodeKey) -> &'a Node {
        &self.layer_of(key).nodes[key.2]
    }

    fn display_name(&self, key: NodeKey) -> String {
        let layer = self.layer_of(key);
        let mut name = format!("{}{}", self.scopes[key.0].prefix, layer.name);
        if key.2 > 0 {
            name.push_str(&format!(" (call {})", key.2));
        }
        name
    }

    /// The depth-first walk that emits `start` after everything it depends on.
    fn run(&mut self, start: NodeKey) -> Result<()> {
        let mut stack = vec![Frame::Visit(start)];
        while let Some(frame) = stack.pop() {
            match frame {
                Frame::Visit(key) => {
                    if self.done.contains_key(&key) {
                        continue;
                    }
                    if self.in_progress.contains(&key) {
                        return Err(self.cycle(key));
                    }
                    self.in_progress.insert(key);
                    self.path.push(key);
                    stack.push(Frame::Emit(key));
                    let node = self.node_of(key);
                    for reference in node.tensors().collect::<Vec<_>>().into_iter().rev() {
                        if let Resolved::Node(dep, _) = self.resolve(key.0, reference)? {
                            if self.in_progress.contains(&dep) {
                                return Err(self.cycle(dep));
                            }
                            if !self.done.contains_key(&dep) {
                                stack.push(Frame::Visit(dep));
                            }
                        }
                    }
                }
                Frame::Emit(key) => {
                    let inbound = self.inbound_values(key)?;
                    let layer = self.layer_of(key);
                    if let LayerKind::Model(nested) = &layer.kind {
                        let inner = self.enter_nested(key, nested, inbound)?;
                        stack.push(Frame::CollectNested(key, inner));
                        for reference in nested.outputs.iter().rev() {
                            if let Resolved::Node(dep, _) = self.resolve(inner, reference)? {
                                if !self.done.contains_key(&dep) {
                                    stack.push(Frame::Visit(dep));
                                }
                            }
                        }
                    } else {
                        let output = self.emit_layer(key, inbound)?;
                        self.finish(key, vec![output]);
                    }
                }
                Frame::CollectNested(key, inner) => {
                    let nested = match &self.layer_of(key).kind {
                        LayerKind::Model(nested) => nested,
                        _ => unreachable!("CollectNested is only pushed for nested models"),
                    };
                    let mut outputs = Vec::with_capacity(nested.outputs.len());
                    for reference in &nested.outputs {
                        outputs.push(match self.resolve(inner, reference)? {
                            Resolved::Value(name) => name,
                            Resolved::Node(dep, tensor) => self.node_output(dep, tensor)?,
                        });
                    }
                    self.finish(key, outputs);
                }
            }
        }
        Ok(())
    }

    fn finish(&mut self, key: NodeKey, outputs: Vec<String>) {
        self.in_progress.remove(&key);
        if self.path.last() == Some(&key) {
            self.path.pop();
        }
        self.done.insert(key, outputs);
    }

    fn cycle(&self, key: NodeKey) -> ImportError {
        let start = self.path.iter().position(|k| *k == key).unwrap_or(0);
        let mut path: Vec<String> = self.path[start..]
            .iter()
            .map(|k| self.display_name(*k))
            .collect();
        path.push(self.display_name(key));
        ImportError::Cycle { path }
    }

    /// The call arguments of a node whose dependencies are all emitted.
    fn inbound_values(&self, key: NodeKey) -> Result<Vec<String>> {
        let node = self.node_of(key);
        let mut values = Vec::new();
        for reference in node.tensors() {
            values.push(match self.resolve(key.0, reference)? {
                Resolved::Value(name) => name,
                Resolved::Node(dep, tensor) => self.node_output(dep, tensor)?,
            });
        }
        Ok(values)
    }

    fn enter_nested(
        &mut self,
        key: NodeKey,
        nested: &'a ModelConfig,
        inbound: Vec<String>,
    ) -> Result<usize> {
        let parent = &self.scopes[key.0];
        let layer = self.layer_of(key);
        if inbound.len() != nested.inputs.len() {
            return Err(ImportError::config(format!(
                "nested model {:?} takes {} input(s) but is called with {}",
                layer.name,
                nested.inputs.len(),
                inbound.len()
            )));
        }
        let mut prefix = format!("{}{}", parent.prefix, layer.name);
        if key.2 > 0 {
            prefix.push_str(&format!("/call_{}", key.2));
        }
        prefix.push('/');
        let weights = WeightScope::nested(&parent.locations[key.1]);
        let depth = parent.depth + 1;
        let bindings = nested
            .inputs
            .iter()
            .map(|r| r.layer.as_str())
            .zip(inbound)
            .collect();
        self.push_scope(nested, prefix, bindings, &weights, depth)
    }

    /// Emits the builder layer for one call of a leaf layer; returns its value name.
    fn emit_layer(&mut self, key: NodeKey, inbound: Vec<String>) -> Result<String> {
        let layer = self.layer_of(key);
        let base = {
            let mut base = format!("{}{}", self.scopes[key.0].prefix, layer.name);
            if key.2 > 0 {
                base.push_str(&format!("/call_{}", key.2));
            }
            base
        };
        let name = self.unique_name(&base);
        let node = self.node_of(key);

        let built = if let LayerKind::Operation = layer.kind {
            self.operation(layer, node, &name, inbound)?
        } else {
            let class_name = self
                .custom
                .builder_class(layer, self.options, self.registry)?;
            let location = self.scopes[key.0].locations[key.1].clone();
            let weights = match self.weight_cache.get(&location) {
                Some(w) => w.clone(),
                None => {
                    let w = self.weights.load(&location)?;
                    self.weight_cache.insert(location, w.clone());
                    w
                }
            };
            if node.args.iter().any(|a| !matches!(a, Arg::Tensor(_))) {
                return Err(ImportError::config(format!(
                    "layer {:?} ({}) is called with constant arguments, which only keras.ops \
                     operations take",
                    layer.name, layer.class_name
                )));
            }
            Layer {
                name: name.clone(),
                class_name,
                config: with_call_options(&layer.class_name, &layer.config, node),
                inbound,
                weights,
            }
        };
        let built = self.with_recorded_mask(key, built)?;
        let built = self.with_release(key, built)?;
        self.layers.push(built);
        Ok(name)
    }

    /// Adds `"keras_mask"` (see the builder's mask check) to a layer Keras recorded a `mask`
    /// for, and `[]` to a layer whose converter would apply a mask Keras did not give it
    /// (each of those takes Keras' `mask` argument, which Keras 3 records when it is set).
    ///
    /// A call with no record is from a `Sequential` model or a Keras 2 (tf.keras) file, whose
    /// layers combine masks by Keras 2's rules (`"keras_2": true`).
    fn with_recorded_mask(&self, key: NodeKey, mut built: Layer) -> Result<Layer> {
        let ids = match &self.node_of(key).mask {
            CallMask::Implicit => {
                if let (true, serde_json::Value::Object(map)) = (self.keras_2, &mut built.config) {
                    map.insert("keras_2".to_string(), json!(true));
                }
                return Ok(built);
            }
            CallMask::Absent => {
                let consumes = self.registry.get(&built.class_name).is_some_and(|c| {
                    matches!(c.masking(&built), Masking::Consumes | Masking::Uses)
                });
                if !consumes {
                    return Ok(built);
                }
                Vec::new()
            }
            CallMask::Given(reference) => self.mask_ids(key, reference, 0, &mut HashMap::new())?,
        };
        if let serde_json::Value::Object(map) = &mut built.config {
            map.insert("keras_mask".to_string(), json!(ids));
        }
        Ok(built)
    }

    /// For a layer of a Keras 3 file whose conversion depends on the release that saved it
    /// (attention, the merges that apply masks): that release, as `"keras_version"`. For an
    /// attention layer also the masks Keras recorded for its query, value and key (releases
    /// up to 3.9 record them), as `"keras_query_mask"` and so on, each checked by
    /// the builder like `"keras_mask"`. From 3.8 the query's recorded mask is not what the
    /// layer uses (it reads the mask the query carries), so it is left out.
    fn with_release(&self, key: NodeKey, mut built: Layer) -> Result<Layer> {
        let release_dependent = ["MultiHeadAttention", "Maximum", "Minimum", "Multiply"];
        if self.keras_2 || !release_dependent.contains(&built.class_name.as_str()) {
            return Ok(built);
        }
        let mut entries = Vec::new();
        if let Some((major, minor)) = self.keras_3_release {
            entries.push((
                "keras_version".to_string(),
                json!(format!("{major}.{minor}")),
            ));
        }
        let reads_query_record = self.keras_3_release.is_some_and(|(_, minor)| minor < 8);
        for (keyword, reference) in &self.node_of(key).attention_masks {
            if keyword == "query_mask" && !reads_query_record {
                continue;
            }
            let ids = match reference {
                Some(reference) => self.mask_ids(key, reference, 0, &mut HashMap::new())?,
                None => Vec::new(),
            };
            entries.push((format!("keras_{keyword}"), json!(ids)));
        }
        if let serde_json::Value::Object(map) = &mut built.config {
            map.extend(entries);
        }
        Ok(built)
    }

    /// The sources a recorded mask ORs together, named as the builder names them
    /// (`thunderbolt_builder::MadeMask::source`). Keras records `Embedding(mask_zero=True)`'s
    /// mask as `NotEqual(ids, 0)`, `Masking`'s as `Any(NotEqual(x, mask_value), axis=-1)`,
    /// merges as `LogicalOr`, and `Concatenate` as `Any(Concatenate(parts), axis=-1)` (see
    /// [`Self::concatenated_part`]); a mask computed any other way is refused. `depth` counts
    /// the `Concatenate`s around this mask; `known` holds the masks already named in this
    /// record, which branches of a lattice share.
    fn mask_ids(
        &self,
        key: NodeKey,
        reference: &TensorRef,
        depth: usize,
        known: &mut HashMap<NodeKey, Vec<String>>,
    ) -> Result<Vec<String>> {
        let refuse = |why: String| self.mask_refused(key, why);
        if depth > MAX_MASK_NESTING {
            return Err(refuse(format!(
                "nested in more than {MAX_MASK_NESTING} Concatenate layers"
            )));
        }
        let root = match self.resolve(key.0, reference)? {
            Resolved::Node(op, _) => Some(op),
            Resolved::Value(_) => None,
        };
        if let Some(ids) = root.and_then(|op| known.get(&op)) {
            return Ok(ids.clone());
        }
        let mut ids = BTreeSet::new();
        let mut pending = vec![reference];
        let mut seen = HashSet::new();
        while let Some(reference) = pending.pop() {
            let Resolved::Node(op, _) = self.resolve(key.0, reference)? else {
                return Err(refuse("that is a model input".into()));
            };
            if !seen.insert(op) {
                continue;
            }
            let layer = self.layer_of(op);
            let node = self.node_of(op);
            let tensors: Vec<&TensorRef> = node.tensors().collect();
            let operation = matches!(layer.kind, LayerKind::Operation);
            let unknown = || {
                refuse(format!(
                    "computed by {} {:?}",
                    layer.class_name,
                    self.display_name(op)
                ))
            };
            // Values this layer does not depend on cannot be the ones its mask propagates
            // from: they are not emitted yet, and refused.
            let value_of = |t: &TensorRef| -> Result<String> {
                let value = match self.resolve(key.0, t)? {
                    Resolved::Value(name) => Some(name),
                    Resolved::Node(dep, tensor) => self
                        .done
                        .get(&dep)
                        .and_then(|outputs| outputs.get(tensor).cloned()),
                };
                value.ok_or_else(|| refuse(format!("computed from {:?}", self.display_name(op))))
            };
            match (operation, layer.class_name.as_str(), &node.args[..]) {
                // Embedding(mask_zero=True): `ids != 0`.
                (true, "NotEqual", [Arg::Tensor(t), zero]) if zero.number() == Some(0.0) => {
                    ids.insert(value_of(t)?);
                }
                // Masking: `any(x != mask_value, axis=-1)`.
                (true, "Any", [Arg::Tensor(t)])
                    if layer.config.get("axis") == Some(&json!(-1))
                        && layer.config.get("keepdims") == Some(&json!(false)) =>
                {
                    let Some((inner_layer, inner_node)) = self.operation_at(key.0, t)? else {
                        return Err(unknown());
                    };
                    match (inner_layer.class_name.as_str(), &inner_node.args[..]) {
                        ("NotEqual", [Arg::Tensor(x), value]) if value.number().is_some() => {
                            let value = value.number().unwrap_or_default();
                            ids.insert(format!("any({} != {value})", value_of(x)?));
                        }
                        // Concatenate: the masks of its inputs, joined along its axis.
                        ("Concatenate", parts) => {
                            let axis = inner_layer
                                .config
                                .get("axis")
                                .and_then(serde_json::Value::as_i64)
                                .ok_or_else(unknown)?;
                            let parts = parts
                                .iter()
                                .map(|part| match part {
                                    Arg::Tensor(part) => {
                                        self.concatenated_part(key, part, depth, known)
                                    }
                                    _ => Err(unknown()),
                                })
                                .collect::<Result<Vec<_>>>()?;
                            ids.insert(concatenated_mask_source(axis, &parts));
                        }
                        _ => return Err(unknown()),
                    }
                }
                (true, "LogicalOr", [Arg::Tensor(_), Arg::Tensor(_)]) => pending.extend(tensors),
                // The query's mask as `Attention.compute_mask` hands it on.
                (true, "ConvertToTensor", [Arg::Tensor(_)]) => pending.extend(tensors),
                _ => return Err(unknown()),
            }
        }
        let ids: Vec<String> = ids.into_iter().collect();
        if let Some(op) = root {
            known.insert(op, ids.clone());
        }
        Ok(ids)
    }

    /// One input's part of a recorded `Concatenate` mask: `OnesLike(x)` for an input without
    /// a mask (`None`), or its mask broadcast over its last axis,
    /// `LogicalOr(ExpandDims(mask, -1), ZerosLike(x))`.
    fn concatenated_part(
        &self,
        key: NodeKey,
        part: &TensorRef,
        depth: usize,
        known: &mut HashMap<NodeKey, Vec<String>>,
    ) -> Result<Option<Vec<String>>> {
        let operation = |reference: &TensorRef| self.operation_at(key.0, reference);
        let refuse = |layer: &LayerConfig| {
            self.mask_refused(
                key,
                format!(
                    "joined by Concatenate from {} {:?}",
                    layer.class_name, layer.name
                ),
            )
        };
        let Some((layer, node)) = operation(part)? else {
            return Err(self.mask_refused(key, "joined by Concatenate from a model input".into()));
        };
        match (layer.class_name.as_str(), &node.args[..]) {
            ("OnesLike", [Arg::Tensor(_)]) => Ok(None),
            ("LogicalOr", [Arg::Tensor(expanded), Arg::Tensor(zeros)]) => {
                let expand = operation(expanded)?.filter(|(l, _)| {
                    l.class_name == "ExpandDims" && l.config.get("axis") == Some(&json!(-1))
                });
                let zeros = operation(zeros)?.filter(|(l, _)| l.class_name == "ZerosLike");
                match (expand, zeros) {
                    (Some((_, expand)), Some(_)) => match &expand.args[..] {
                        [Arg::Tensor(mask)] => self.mask_ids(key, mask, depth + 1, known).map(Some),
                        _ => Err(refuse(layer)),
                    },
                    _ => Err(refuse(layer)),
                }
            }
            _ => Err(refuse(layer)),
        }
    }

    /// The `keras.ops` operation whose call `reference` names in `scope`, with that call;
    /// `None` for a layer or a model input.
    fn operation_at(
        &self,
        scope: usize,
        reference: &TensorRef,
    ) -> Result<Option<(&'a LayerConfig, &'a Node)>> {
        Ok(match self.resolve(scope, reference)? {
            Resolved::Node(op, _) if matches!(self.layer_of(op).kind, LayerKind::Operation) => {
                Some((self.layer_of(op), self.node_of(op)))
            }
            _ => None,
        })
    }

    fn mask_refused(&self, key: NodeKey, why: String) -> ImportError {
        ImportError::config(format!(
            "layer {:?} is given a mask {why}; only the masks of Embedding(mask_zero=True) and \
             Masking, as Keras propagates them, are supported",
            self.display_name(key)
        ))
    }

    /// A `keras.ops` operation recorded in the graph, such as `x + positional_encoding` or
    /// `ops.mean(x, axis=1)`; in a tf.keras 2 file, a recorded TensorFlow call.
    fn operation(
        &self,
        layer: &LayerConfig,
        node: &Node,
        name: &str,
        inbound: Vec<String>,
    ) -> Result<Layer> {
        if matches!(layer.class_name.as_str(), "TFOpLambda" | "SlicingOpLambda") {
            self.tf_operation(layer, node, name, inbound)
        } else {
            keras_operation(layer, node, name, inbound)
        }
    }

    /// A tf.keras 2 `TFOpLambda` (or `SlicingOpLambda`): additions and subtractions of a
    /// constant and merges of two tensors as before, the other TensorFlow calls of
    /// [`TF_OPERATIONS`] as the `KerasOperation` of the same meaning.
    fn tf_operation(
        &self,
        layer: &LayerConfig,
        node: &Node,
        name: &str,
        inbound: Vec<String>,
    ) -> Result<Layer> {
        let constants: Vec<&Arg> = node
            .args
            .iter()
            .filter(|a| !matches!(a, Arg::Tensor(_)))
            .collect();
        let first_is_tensor = matches!(node.args.first(), Some(Arg::Tensor(_)));
        let config = json!({"name": layer.name});
        let merge = |class: &str| Layer {
            name: name.to_string(),
            class_name: class.to_string(),
            // Unlike the merge layers, operations drop masks.
            config: json!({"name": layer.name, "keras_operation": true}),
            inbound: inbound.clone(),
            weights: vec![],
        };
        let add_constant = |constant: Tensor| Layer {
            name: name.to_string(),
            class_name: "AddConstant".to_string(),
            config: config.clone(),
            inbound: inbound.clone(),
            weights: vec![constant],
        };
        // tf.keras 2 names the TensorFlow function it recorded.
        let function = layer
            .config
            .get("function")
            .and_then(serde_json::Value::as_str);
        let op = match (layer.class_name.as_str(), function) {
            ("TFOpLambda", Some("__operators__.add" | "math.add")) => "Add",
            ("TFOpLambda", Some("math.subtract")) => "Subtract",
            ("TFOpLambda", Some("math.multiply")) => "Multiply",
            (op, _) => op,
        };
        match (op, inbound.len(), constants.as_slice()) {
            ("Add", 2, []) => Ok(merge("Add")),
            ("Subtract", 2, []) => Ok(merge("Subtract")),
            ("Multiply", 2, []) => Ok(merge("Multiply")),
            // A table (a positional encoding); a Python number takes the tensor's type
            // through KerasOperation instead.
            ("Add", 1, [Arg::Constant(table)]) => Ok(add_constant(constant_tensor(table, false))),
            ("Subtract", 1, [Arg::Constant(table)]) if first_is_tensor => {
                Ok(add_constant(constant_tensor(table, true)))
            }
            _ => tf_keras_operation(layer, node, name, inbound, function.unwrap_or_default()),
        }
    }

    fn unique_name(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut n = 0;
        while !self.used_names.insert(name.clone()) {
            n += 1;
            name = format!("{base}_{n}");
        }
        name
    }
}

/// A constant call argument as a tensor, negated for `x - constant`.
/// The TensorFlow calls a tf.keras 2 graph records (`TFOpLambda`'s `function`) that the
/// importer converts, each with the `keras.ops` operation of the same meaning.
pub const TF_OPERATIONS: &[(&str, &str)] = &[
    ("math.abs", "Absolute"),
    ("math.negative", "Negative"),
    ("math.sign", "Sign"),
    ("math.square", "Square"),
    ("math.exp", "Exp"),
    ("math.log", "Log"),
    ("math.sqrt", "Sqrt"),
    ("math.rsqrt", "Rsqrt"),
    ("math.reciprocal", "Reciprocal"),
    ("math.sin", "Sin"),
    ("math.cos", "Cos"),
    ("math.erf", "Erf"),
    ("math.floor", "Floor"),
    ("math.ceil", "Ceil"),
    ("math.round", "Round"),
    ("math.tanh", "Tanh"),
    ("math.sigmoid", "Sigmoid"),
    ("nn.sigmoid", "Sigmoid"),
    ("nn.relu", "Relu"),
    ("nn.relu6", "Relu6"),
    ("nn.gelu", "Gelu"),
    ("nn.silu", "Silu"),
    ("nn.swish", "Silu"),
    ("math.softplus", "Softplus"),
    ("nn.softplus", "Softplus"),
    ("nn.elu", "Elu"),
    ("nn.leaky_relu", "LeakyRelu"),
    ("nn.softmax", "Softmax"),
    ("math.softmax", "Softmax"),
    ("nn.log_softmax", "LogSoftmax"),
    ("math.multiply", "Multiply"),
    ("__operators__.add", "Add"),
    ("math.add", "Add"),
    ("math.subtract", "Subtract"),
    ("math.truediv", "TrueDivide"),
    ("math.maximum", "Maximum"),
    ("math.minimum", "Minimum"),
    ("math.pow", "Power"),
    ("math.equal", "Equal"),
    ("math.not_equal", "NotEqual"),
    ("math.less", "Less"),
    ("math.less_equal", "LessEqual"),
    ("math.greater", "Greater"),
    ("math.greater_equal", "GreaterEqual"),
    ("math.logical_and", "LogicalAnd"),
    ("math.logical_or", "LogicalOr"),
    ("math.logical_not", "LogicalNot"),
    ("math.reduce_sum", "Sum"),
    ("math.reduce_mean", "Mean"),
    ("math.reduce_max", "Max"),
    ("math.reduce_min", "Min"),
    ("math.reduce_prod", "Prod"),
    ("math.reduce_any", "Any"),
    ("math.reduce_all", "All"),
    ("cast", "Cast"),
    ("reshape", "Reshape"),
    ("expand_dims", "ExpandDims"),
    ("compat.v1.squeeze", "Squeeze"),
    ("squeeze", "Squeeze"),
    ("compat.v1.transpose", "Transpose"),
    ("transpose", "Transpose"),
    ("concat", "Concatenate"),
    ("stack", "Stack"),
    ("compat.v1.gather", "Take"),
    ("gather", "Take"),
    ("clip_by_value", "Clip"),
    ("__operators__.getitem", "GetItem"),
    ("math.atan", "Arctan"),
    ("math.asin", "Arcsin"),
    ("math.acos", "Arccos"),
    ("math.sinh", "Sinh"),
    ("math.cosh", "Cosh"),
    ("math.atanh", "Arctanh"),
    ("math.asinh", "Arcsinh"),
    ("math.acosh", "Arccosh"),
    ("math.floormod", "Mod"),
    ("compat.v1.floor_div", "FloorDivide"),
    ("math.floordiv", "FloorDivide"),
    ("math.reduce_logsumexp", "Logsumexp"),
    ("math.reduce_variance", "Var"),
    ("math.reduce_std", "Std"),
    ("ones_like", "OnesLike"),
    ("zeros_like", "ZerosLike"),
    ("math.is_nan", "Isnan"),
    ("math.is_inf", "Isinf"),
    ("math.is_finite", "Isfinite"),
    ("reverse", "Flip"),
    ("compat.v1.pad", "Pad"),
    ("pad", "Pad"),
    ("math.l2_normalize", "Normalize"),
    ("nn.l2_normalize", "Normalize"),
    ("math.cumsum", "Cumsum"),
    ("tile", "Tile"),
    ("one_hot", "OneHot"),
    ("where", "Where"),
    ("linalg.matmul", "Matmul"),
    ("math.argmax", "Argmax"),
    ("math.argmin", "Argmin"),
];

/// A tf.keras 2 TensorFlow call as a `KerasOperation`: TensorFlow's keyword names become
/// `keras.ops`' (`shape` → `newshape`, `perm` → `axes`, `alpha` → `negative_slope`, ...),
/// and `tf.gather`'s indices, kept with the call's keywords, become its last operand.
fn tf_keras_operation(
    layer: &LayerConfig,
    node: &Node,
    name: &str,
    inbound: Vec<String>,
    function: &str,
) -> Result<Layer> {
    let unsupported = || {
        let names: Vec<String> = TF_OPERATIONS
            .iter()
            .map(|(f, _)| format!("tf.{f}"))
            .collect();
        ImportError::UnsupportedLayer {
            layer: layer.name.clone(),
            class_name: format!("tf.{function}"),
            registered_name: None,
            hint: format!(
                "Of the TensorFlow calls a tf.keras 2 functional graph records, the importer \
                 converts {}, with the keyword arguments keras.ops would take.",
                names.join(", ")
            ),
        }
    };
    let op = TF_OPERATIONS
        .iter()
        .find(|(f, _)| *f == function)
        .map(|(_, op)| *op)
        .ok_or_else(unsupported)?;
    let kwargs = &node.kwargs;
    let mut config = serde_json::Map::new();
    config.insert("name".into(), json!(layer.name));
    config.insert("op".into(), json!(op));
    let rename = |config: &mut serde_json::Map<String, serde_json::Value>, from: &str, to: &str| {
        if let Some(v) = kwargs.get(from).filter(|v| !v.is_null()) {
            config.insert(to.into(), v.clone());
        }
    };
    for key in ["axis", "keepdims", "dtype", "constant_values"] {
        rename(&mut config, key, key);
    }
    rename(&mut config, "shape", "newshape");
    rename(&mut config, "perm", "axes");
    rename(&mut config, "alpha", "negative_slope");
    rename(&mut config, "clip_value_min", "x_min");
    rename(&mut config, "clip_value_max", "x_max");
    rename(&mut config, "paddings", "pad_width");
    rename(&mut config, "multiples", "repeats");
    rename(&mut config, "depth", "num_classes");
    // Options of TensorFlow's that keras.ops has no counterpart for are refused, not
    // dropped: a cumulative sum that is exclusive or reversed, a one_hot of other values,
    // a matmul of transposed operands.
    let set = |key: &str| {
        kwargs
            .get(key)
            .is_some_and(|v| !v.is_null() && *v != json!(false))
    };
    let unmatched = [
        "exclusive",
        "reverse",
        "on_value",
        "off_value",
        "transpose_a",
        "transpose_b",
        "adjoint_a",
        "adjoint_b",
    ];
    if unmatched.iter().any(|k| set(k)) {
        return Err(unsupported());
    }
    if let Some(mode) = kwargs.get("mode").and_then(|m| m.as_str()) {
        config.insert("mode".into(), json!(mode.to_lowercase()));
    }
    // tf.math.l2_normalize bounds the sum of squares by its epsilon (1e-12 by default),
    // keras.ops.normalize the norm: the same bound is the square root.
    if op == "Normalize" {
        let epsilon = kwargs
            .get("epsilon")
            .and_then(|e| e.as_f64())
            .unwrap_or(1e-12);
        config.insert("epsilon".into(), json!(epsilon.sqrt()));
    }
    // TensorFlow's argmax gives int64 indices unless told; keras.ops' int32.
    if matches!(op, "Argmax" | "Argmin") {
        let index = kwargs
            .get("output_type")
            .and_then(|t| t.as_str())
            .unwrap_or("int64");
        config.insert("index_dtype".into(), json!(index));
        config.entry("axis").or_insert(json!(0));
    }
    // TensorFlow's gelu is exact unless asked; keras.ops' is approximate by default.
    if op == "Gelu" {
        config.insert(
            "approximate".into(),
            json!(kwargs
                .get("approximate")
                .and_then(|v| v.as_bool())
                .unwrap_or(false)),
        );
    }
    let (mut operands, mut weights) = operands_of(node);
    match op {
        "Take" => {
            if kwargs
                .get("batch_dims")
                .and_then(|v| v.as_i64())
                .unwrap_or(0)
                != 0
            {
                return Err(unsupported());
            }
            let indices = kwargs.get("indices").ok_or_else(unsupported)?;
            let mut wrapped = serde_json::Map::new();
            wrapped.insert("value".into(), indices.clone());
            wrapped.insert("dtype".into(), json!("int64"));
            weights.push(crate::config::parse_constant(&wrapped, &layer.name)?);
            operands.push("array");
            config.entry("axis").or_insert(json!(0));
        }
        "GetItem" => {
            let spec = kwargs.get("slice_spec").ok_or_else(unsupported)?;
            let entries = match spec {
                serde_json::Value::Array(items) => items.clone(),
                one => vec![one.clone()],
            };
            let key = entries
                .iter()
                .map(|e| match e {
                    serde_json::Value::Null => Ok(serde_json::Value::Null),
                    serde_json::Value::Number(n) if n.is_i64() => Ok(json!({ "index": n })),
                    serde_json::Value::Object(o)
                        if ["start", "stop", "step"].iter().all(|k| o.contains_key(*k)) =>
                    {
                        Ok(json!({ "slice": [o["start"], o["stop"], o["step"]] }))
                    }
                    _ => Err(ImportError::config(format!(
                        "tf.keras operation {:?}: unsupported index {e}",
                        layer.name
                    ))),
                })
                .collect::<Result<Vec<_>>>()?;
            config.insert("key".into(), json!(key));
        }
        _ => {}
    }
    config.insert("operands".into(), json!(operands));
    Ok(operation_layer(name, config.into(), inbound, weights))
}

/// A Keras 3 `keras.ops` call as a `KerasOperation` builder layer: its tensors become the
/// layer's inputs and its constants the layer's weights, in call order (see
/// `thunderbolt_builder::layers::keras_operation`).
fn keras_operation(
    layer: &LayerConfig,
    node: &Node,
    name: &str,
    inbound: Vec<String>,
) -> Result<Layer> {
    if !OPERATIONS.contains(&layer.class_name.as_str()) {
        return Err(ImportError::UnsupportedLayer {
            layer: layer.name.clone(),
            class_name: format!("keras.ops.{}", layer.class_name),
            registered_name: None,
            hint: format!(
                "Of the keras.ops operations recorded in functional graphs, the importer \
                 converts {}.",
                OPERATIONS.join(", ")
            ),
        });
    }
    if layer.class_name == "GetItem" {
        let config = json!({
            "name": layer.name,
            "op": "GetItem",
            "operands": ["tensor"],
            "key": index_key(layer, node)?,
        });
        return Ok(operation_layer(name, config, inbound, vec![]));
    }
    let (mut operands, mut weights) = operands_of(node);
    let mut extra = serde_json::Map::new();
    if layer.class_name == "LayerNorm" {
        // `ops.layer_normalization` passes `(x, gamma, beta)` with `None` for an absent
        // one, which the flattened operands leave out: say which are there.
        let positions: Vec<bool> = match node.raw_args.as_array() {
            Some(raw) => (1..3)
                .map(|i| raw.get(i).is_some_and(|v| !v.is_null()))
                .collect(),
            None => vec![false, false],
        };
        if operands.len() != 1 + positions.iter().filter(|p| **p).count() {
            return Err(ImportError::config(format!(
                "keras.ops operation {:?} (LayerNorm): expected x, gamma and beta",
                layer.name
            )));
        }
        extra.insert("gamma".into(), json!(positions[0]));
        extra.insert("beta".into(), json!(positions[1]));
    }
    for (key, arg) in &node.keyword_operands {
        // `ops.rms_normalization` passes its scale by keyword; elsewhere a keyword's
        // position among the operands is not known.
        if layer.class_name != "RMSNorm" || key != "scale" {
            return Err(ImportError::config(format!(
                "keras.ops operation {:?} ({}): a tensor or array passed as keyword argument \
                 {key:?} is not supported",
                layer.name, layer.class_name
            )));
        }
        match arg {
            Arg::Constant(t) => {
                operands.push("array");
                weights.push(t.clone());
            }
            _ => operands.push("tensor"),
        }
    }
    let mut config = layer.config.clone();
    if let serde_json::Value::Object(map) = &mut config {
        map.insert("op".into(), json!(layer.class_name));
        map.insert("operands".into(), json!(operands));
        map.extend(extra);
        // Arguments the call passed by keyword (`ops.pad(x, w, constant_values=7)`).
        for (key, value) in &node.kwargs {
            if !value.is_null() && !map.contains_key(key) {
                map.insert(key.clone(), value.clone());
            }
        }
    }
    Ok(operation_layer(name, config, inbound, weights))
}

/// The builder layer of a `keras.ops` or TensorFlow call.
fn operation_layer(
    name: &str,
    config: serde_json::Value,
    inbound: Vec<String>,
    weights: Vec<Tensor>,
) -> Layer {
    Layer {
        name: name.to_string(),
        class_name: "KerasOperation".to_string(),
        config,
        inbound,
        weights,
    }
}

/// A `GetItem` call's key (`x[:, 1:4, ::2]`, `x[..., 0]`, `x[:, None]`) in the form the
/// builder takes: per entry `{"slice": [start, stop, step]}` (nulls for defaults),
/// `{"index": i}`, `"..."` or `null` (a new axis).
fn index_key(layer: &LayerConfig, node: &Node) -> Result<serde_json::Value> {
    use serde_json::Value;
    let refuse = |why: &str| {
        ImportError::config(format!(
            "keras.ops operation {:?} (GetItem): {why}",
            layer.name
        ))
    };
    let key = match node.raw_args.as_array().map(Vec::as_slice) {
        Some([_, key]) => key,
        _ => return Err(refuse("expected a tensor and a key")),
    };
    let entries = match key {
        Value::Array(items) => items.as_slice(),
        one => std::slice::from_ref(one),
    };
    entries
        .iter()
        .map(|entry| match entry {
            Value::Null => Ok(Value::Null),
            Value::Number(n) => n
                .as_i64()
                .map(|i| json!({ "index": i }))
                .ok_or_else(|| refuse(&format!("index {n} is not an integer"))),
            Value::Object(obj) => match obj.get("class_name").and_then(Value::as_str) {
                Some("__ellipsis__") => Ok(json!("...")),
                Some("__slice__") => {
                    let config = obj.get("config");
                    let part = |k: &str| {
                        let v = config.and_then(|c| c.get(k)).unwrap_or(&Value::Null);
                        match v {
                            Value::Null => Ok(Value::Null),
                            Value::Number(n) if n.is_i64() => Ok(v.clone()),
                            _ => Err(refuse(&format!("slice {k} {v} is not an integer"))),
                        }
                    };
                    Ok(json!({ "slice": [part("start")?, part("stop")?, part("step")?] }))
                }
                Some("__keras_tensor__") => Err(refuse("indexing with a tensor is not supported")),
                _ => Err(refuse(&format!("unsupported index {entry}"))),
            },
            other => Err(refuse(&format!("unsupported index {other}"))),
        })
        .collect::<Result<Vec<_>>>()
        .map(Value::Array)
}

/// A call's arguments as `KerasOperation` operands (`"tensor"`, `"array"`, `"float"`,
/// `"int"`) and, in the same order, its constants as weights (numbers as 0-d float64).
fn operands_of(node: &Node) -> (Vec<&'static str>, Vec<Tensor>) {
    let mut weights = Vec::new();
    let operands = node
        .args
        .iter()
        .map(|arg| match arg {
            Arg::Tensor(_) => "tensor",
            Arg::Constant(t) => {
                weights.push(t.clone());
                "array"
            }
            Arg::Scalar(v) => {
                weights.push(Tensor::from_f64(vec![], &[*v]));
                "float"
            }
            Arg::Int(v) => {
                weights.push(Tensor::from_f64(vec![], &[*v as f64]));
                "int"
            }
        })
        .collect();
    (operands, weights)
}

/// A constant table, negated for a subtraction.
fn constant_tensor(t: &Tensor, negate: bool) -> Tensor {
    if !negate {
        return t.clone();
    }
    let values: Vec<f64> = t.to_f64_vec().into_iter().map(|v| -v).collect();
    Tensor::from_f64_values(t.dtype, t.shape.clone(), &values)
}

/// The layer's config with the call arguments its converter reads added: Keras keeps
/// options such as `MultiHeadAttention`'s `use_causal_mask` with the call, not the layer.
fn with_call_options(
    class_name: &str,
    config: &serde_json::Value,
    node: &Node,
) -> serde_json::Value {
    let keys: &[&str] = match class_name {
        "MultiHeadAttention" | "Attention" | "AdditiveAttention" => {
            &["use_causal_mask", "return_attention_scores"]
        }
        _ => &[],
    };
    let mut config = config.clone();
    if let serde_json::Value::Object(map) = &mut config {
        for key in keys {
            if let Some(v) = node.kwargs.get(*key) {
                map.insert((*key).to_string(), v.clone());
            }
        }
    }
    config
}
