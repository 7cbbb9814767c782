//! Parses a Keras model config (`config.json` of a `.keras` file, or the `model_config`
//! attribute of a legacy `.h5` file) into a tree of models, layers and call nodes.
//!
//! Both serializations of a functional graph are read:
//! - Keras 3: `inbound_nodes: [{"args": [...], "kwargs": {...}}]`, where tensors are
//!   `{"class_name": "__keras_tensor__", "config": {"keras_history": [layer, node, index]}}`
//!   and constants computed eagerly are `__numpy__` / `__tensor__` objects or plain numbers;
//! - Keras 2 / tf.keras: `inbound_nodes: [[[layer, node, index, kwargs], ...], ...]`.
//!
//! Sequential models become a chain of single-input nodes.

use crate::error::{ImportError, Result};
use serde_json::{Map, Value};
use thunderbolt_builder::{DType, Tensor};

/// Deeper nesting of models inside models is refused (it only appears in hostile files).
const MAX_MODEL_DEPTH: usize = 32;

/// A reference to output `tensor` of call `node` of `layer`, within one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorRef {
    pub layer: String,
    pub node: usize,
    pub tensor: usize,
}

/// One argument of a layer call.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Tensor(TensorRef),
    /// A constant serialized in the call (for example `x + positional_encoding`).
    Constant(Tensor),
    /// A Python float (`0.5`, `2.0`); it takes the element type of the tensor it meets, or
    /// float32 against integers.
    Scalar(f64),
    /// A Python integer (`0` in `ids != 0`); it takes the element type of the tensor it meets.
    Int(i64),
}

impl Arg {
    /// The value of a Python number argument, whatever its kind.
    pub fn number(&self) -> Option<f64> {
        match self {
            Arg::Scalar(v) => Some(*v),
            Arg::Int(v) => Some(*v as f64),
            _ => None,
        }
    }
}

/// One call of a layer: its positional arguments, flattened in order, its keyword
/// arguments that are not tensors (`{"use_causal_mask": true}`), and its mask.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub args: Vec<Arg>,
    pub kwargs: Map<String, Value>,
    pub mask: CallMask,
    /// The masks an attention call was given as `query_mask`, `value_mask` and `key_mask`,
    /// which Keras 3 releases up to 3.7 record (`None`: recorded as none).
    pub attention_masks: Vec<(String, Option<TensorRef>)>,
    /// The call's positional arguments as a Keras 3 file writes them (`Null` elsewhere), for
    /// the calls whose structure the flattened `args` lose: a `GetItem` key of slices.
    pub raw_args: Value,
    /// A `keras.ops` call's tensors and constants passed by keyword
    /// (`ops.rms_normalization(x, scale=w)`), in the order the file lists them. Other
    /// layers' keyword tensors are refused while parsing.
    pub keyword_operands: Vec<(String, Arg)>,
}

/// The call keywords in which Keras records an attention layer's input masks.
pub const ATTENTION_MASK_KEYWORDS: [&str; 3] = ["query_mask", "value_mask", "key_mask"];

/// The `mask` a call was given. Keras 3's functional graphs record it for layers whose
/// `call` takes one: the mask that `Embedding(mask_zero=True)` starts, as the graph
/// computes it (`NotEqual`, `LogicalOr`).
#[derive(Debug, Clone, PartialEq)]
pub enum CallMask {
    /// Not recorded (a `Sequential` model, a Keras 2 config): masks follow from the layers.
    Implicit,
    /// Recorded, and the call had none.
    Absent,
    Given(TensorRef),
}

impl Node {
    pub fn tensors(&self) -> impl Iterator<Item = &TensorRef> {
        let keywords = self.keyword_operands.iter().map(|(_, a)| a);
        self.args.iter().chain(keywords).filter_map(|a| match a {
            Arg::Tensor(t) => Some(t),
            _ => None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum LayerKind {
    /// An `InputLayer`: a placeholder bound to a graph input or to a nested model's argument.
    Input {
        dtype: String,
        shape: Vec<Option<usize>>,
    },
    /// A `Functional` or `Sequential` model used as a layer.
    Model(Box<ModelConfig>),
    /// A `keras.ops` operation recorded in a functional graph (`x + y`), not a `Layer`.
    Operation,
    /// Any other layer.
    Layer,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LayerConfig {
    pub name: String,
    pub class_name: String,
    pub registered_name: Option<String>,
    /// The layer's own `config` object, with Keras key names.
    pub config: Value,
    pub nodes: Vec<Node>,
    pub kind: LayerKind,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub name: String,
    /// `Functional` or `Sequential`.
    pub class_name: String,
    pub layers: Vec<LayerConfig>,
    pub inputs: Vec<TensorRef>,
    pub outputs: Vec<TensorRef>,
    /// Whether Keras made a node of its own for this model before any call: a functional
    /// model, or a `Sequential` whose config begins with its `InputLayer`. A graph holding
    /// it as a layer counts that node in some references (see `parse_functional`).
    pub builtin_node: bool,
}

impl ModelConfig {
    pub fn layer(&self, name: &str) -> Option<(usize, &LayerConfig)> {
        self.layers.iter().enumerate().find(|(_, l)| l.name == name)
    }

    /// Whether a functional graph here lists its calls as Keras 2 did
    /// (`[[layer, node, tensor, kwargs], ...]`, which records no masks).
    pub fn has_keras_2_layout(&self) -> bool {
        (self.class_name != "Sequential" && calls_listed_as_keras_2(&self.layers))
            || self.layers.iter().any(|layer| match &layer.kind {
                LayerKind::Model(inner) => inner.has_keras_2_layout(),
                _ => false,
            })
    }
}

/// Whether a functional graph's layers list their calls as Keras 2 did: only that layout
/// leaves a call's mask unrecorded (`Sequential` calls, made up here, are left aside by
/// the callers).
fn calls_listed_as_keras_2(layers: &[LayerConfig]) -> bool {
    layers
        .iter()
        .any(|l| l.nodes.iter().any(|n| n.mask == CallMask::Implicit))
}

/// Whether `value` is one `[layer, node, tensor, ...]` reference rather than a list of them
/// or of numbers.
fn is_reference(value: &Value) -> bool {
    value
        .as_array()
        .and_then(|items| items.first())
        .is_some_and(Value::is_string)
}

/// Parses the JSON text of a model config.
pub fn parse_model_json(text: &str) -> Result<ModelConfig> {
    let value: Value = serde_json::from_str(text)?;
    parse_model(&value, 0)
}

/// Parses a serialized model object (`{"class_name": "Functional", "config": {...}}`).
pub fn parse_model(value: &Value, depth: usize) -> Result<ModelConfig> {
    if depth > MAX_MODEL_DEPTH {
        return Err(ImportError::config(format!(
            "models are nested more than {MAX_MODEL_DEPTH} deep"
        )));
    }
    let obj = as_object(value, "the model")?;
    let class_name = str_field(obj, "class_name", "the model")?;
    let config = obj
        .get("config")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            ImportError::config(format!(
                "model of class {class_name} has no \"config\" object"
            ))
        })?;
    match class_name {
        "Functional" | "Model" => parse_functional(config, depth),
        "Sequential" => parse_sequential(config, depth),
        other => Err(ImportError::config(format!(
            "top-level class {other:?} is not a Functional or Sequential model \
             (subclassed models carry no graph and cannot be imported)"
        ))),
    }
}

fn parse_functional(config: &Map<String, Value>, depth: usize) -> Result<ModelConfig> {
    let name = config
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("model")
        .to_string();
    let what = format!("model {name:?}");
    let layer_values = config
        .get("layers")
        .and_then(Value::as_array)
        .ok_or_else(|| ImportError::config(format!("{what} has no \"layers\" list")))?;
    let mut layers = layer_values
        .iter()
        .map(|l| parse_layer(l, depth, true))
        .collect::<Result<Vec<_>>>()?;
    let inputs = parse_ref_list(config.get("input_layers"), &format!("{what} input_layers"))?;
    let mut outputs = parse_ref_list(
        config.get("output_layers"),
        &format!("{what} output_layers"),
    )?;
    // A nested model's built-in node comes before its calls in some references: Keras 3
    // counts it in `output_layers` for a functional model, though not in `inbound_nodes`
    // (`functional_from_config`); Keras 2 counts it in both, for any model that has one
    // (its `get_network_config` numbers the kept nodes from 1).
    let keras_2_layout = calls_listed_as_keras_2(&layers);
    let counted = |reference: &TensorRef, in_outputs: bool| {
        layers.iter().any(|l| {
            l.name == reference.layer
                && match &l.kind {
                    LayerKind::Model(m) if keras_2_layout => m.builtin_node,
                    LayerKind::Model(m) => in_outputs && m.class_name == "Functional",
                    _ => false,
                }
        })
    };
    for output in &mut outputs {
        if output.node > 0 && counted(output, true) {
            output.node -= 1;
        }
    }
    if keras_2_layout {
        let mut references: Vec<(usize, usize, usize)> = Vec::new();
        for (i, layer) in layers.iter().enumerate() {
            for (j, node) in layer.nodes.iter().enumerate() {
                for (k, arg) in node.args.iter().enumerate() {
                    if let Arg::Tensor(t) = arg {
                        if t.node > 0 && counted(t, false) {
                            references.push((i, j, k));
                        }
                    }
                }
            }
        }
        for (i, j, k) in references {
            if let Arg::Tensor(t) = &mut layers[i].nodes[j].args[k] {
                t.node -= 1;
            }
        }
    }
    if inputs.is_empty() || outputs.is_empty() {
        return Err(ImportError::config(format!(
            "{what} needs at least one input and one output"
        )));
    }
    let model = ModelConfig {
        name,
        class_name: "Functional".into(),
        layers,
        inputs,
        outputs,
        builtin_node: true,
    };
    check_unique_names(&model)?;
    Ok(model)
}

fn parse_sequential(config: &Map<String, Value>, depth: usize) -> Result<ModelConfig> {
    let name = config
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("sequential")
        .to_string();
    let what = format!("Sequential model {name:?}");
    let layer_values = config
        .get("layers")
        .and_then(Value::as_array)
        .ok_or_else(|| ImportError::config(format!("{what} has no \"layers\" list")))?;
    let mut layers = layer_values
        .iter()
        .map(|l| parse_layer(l, depth, false))
        .collect::<Result<Vec<_>>>()?;
    let builtin_node = layers
        .first()
        .is_some_and(|l| matches!(l.kind, LayerKind::Input { .. }));
    if layers.is_empty() {
        return Err(ImportError::config(format!("{what} has no layers")));
    }
    if !matches!(layers[0].kind, LayerKind::Input { .. }) {
        // Keras 2 and unbuilt Keras 3 models carry the input shape elsewhere.
        let shape = config
            .get("build_input_shape")
            .or_else(|| layers[0].config.get("batch_input_shape"))
            .or_else(|| layers[0].config.get("batch_shape"))
            .ok_or_else(|| {
                ImportError::config(format!("{what} has no InputLayer and no input shape"))
            })?;
        let shape = parse_shape(shape, &what)?;
        let dtype = layers[0]
            .config
            .get("dtype")
            .and_then(dtype_name)
            .unwrap_or("float32")
            .to_string();
        let input = LayerConfig {
            name: format!("{name}_input"),
            class_name: "InputLayer".into(),
            registered_name: None,
            config: Value::Null,
            nodes: vec![],
            kind: LayerKind::Input { dtype, shape },
        };
        layers.insert(0, input);
    }
    for i in 1..layers.len() {
        let previous = TensorRef {
            layer: layers[i - 1].name.clone(),
            node: 0,
            tensor: 0,
        };
        layers[i].nodes = vec![Node {
            args: vec![Arg::Tensor(previous)],
            kwargs: Map::new(),
            mask: CallMask::Implicit,
            attention_masks: Vec::new(),
            raw_args: Value::Null,
            keyword_operands: Vec::new(),
        }];
    }
    let first = TensorRef {
        layer: layers[0].name.clone(),
        node: 0,
        tensor: 0,
    };
    let last = TensorRef {
        layer: layers[layers.len() - 1].name.clone(),
        node: 0,
        tensor: 0,
    };
    let model = ModelConfig {
        name,
        class_name: "Sequential".into(),
        layers,
        inputs: vec![first],
        outputs: vec![last],
        builtin_node,
    };
    check_unique_names(&model)?;
    Ok(model)
}

fn check_unique_names(model: &ModelConfig) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for layer in &model.layers {
        if !seen.insert(layer.name.as_str()) {
            return Err(ImportError::config(format!(
                "model {:?} has two layers named {:?}",
                model.name, layer.name
            )));
        }
    }
    Ok(())
}

fn parse_layer(value: &Value, depth: usize, functional: bool) -> Result<LayerConfig> {
    let obj = as_object(value, "a layer entry")?;
    let class_name = str_field(obj, "class_name", "a layer entry")?.to_string();
    let config = obj
        .get("config")
        .cloned()
        .unwrap_or(Value::Object(Map::new()));
    let name = obj
        .get("name")
        .and_then(Value::as_str)
        .or_else(|| config.get("name").and_then(Value::as_str))
        .ok_or_else(|| ImportError::config(format!("a {class_name} layer has no name")))?
        .to_string();
    let registered_name = obj
        .get("registered_name")
        .and_then(Value::as_str)
        .map(str::to_string);
    let module = obj.get("module").and_then(Value::as_str).unwrap_or("");
    let what = format!("layer {name:?} ({class_name})");

    let kind = if class_name == "InputLayer" {
        let shape = config
            .get("batch_shape")
            .or_else(|| config.get("batch_input_shape"))
            .ok_or_else(|| ImportError::config(format!("{what} has no batch_shape")))?;
        let shape = parse_shape(shape, &what)?;
        let dtype = config
            .get("dtype")
            .and_then(dtype_name)
            .unwrap_or("float32")
            .to_string();
        LayerKind::Input { dtype, shape }
    } else if matches!(class_name.as_str(), "Functional" | "Sequential" | "Model")
        && registered_name.as_deref().is_none_or(|r| r == class_name)
        && config.get("layers").is_some()
    {
        LayerKind::Model(Box::new(parse_model(value, depth + 1)?))
    } else if module.starts_with("keras.src.ops")
        || module.starts_with("keras.ops")
        // tf.keras 2's record of a TensorFlow call in a functional graph (`x + pe`).
        || (matches!(class_name.as_str(), "TFOpLambda" | "SlicingOpLambda") && module.is_empty())
    {
        LayerKind::Operation
    } else {
        LayerKind::Layer
    };

    let nodes = if functional {
        match obj.get("inbound_nodes") {
            None | Some(Value::Null) => vec![],
            Some(Value::Array(nodes)) => nodes
                .iter()
                .map(|n| parse_node(n, &what, kind == LayerKind::Operation))
                .collect::<Result<_>>()?,
            Some(_) => {
                return Err(ImportError::config(format!(
                    "{what}: inbound_nodes is not a list"
                )))
            }
        }
    } else {
        vec![]
    };
    Ok(LayerConfig {
        name,
        class_name,
        registered_name,
        config,
        nodes,
        kind,
    })
}

/// One entry of `inbound_nodes`, in either serialization; `operation` for a `keras.ops`
/// call, whose keyword tensors and constants are kept as operands.
fn parse_node(value: &Value, what: &str, operation: bool) -> Result<Node> {
    let mut args = Vec::new();
    let mut keyword_operands = Vec::new();
    let mut plain_kwargs = Map::new();
    let mut mask = CallMask::Implicit;
    let mut attention_masks = Vec::new();
    let mut raw_args = Value::Null;
    match value {
        // Keras 3: {"args": [...], "kwargs": {...}}
        Value::Object(obj) => {
            mask = CallMask::Absent;
            if let Some(a) = obj.get("args") {
                collect_args(a, &mut args, what, 0)?;
                raw_args = a.clone();
            }
            if let Some(Value::Object(kwargs)) = obj.get("kwargs") {
                for (key, v) in kwargs {
                    let mut found = Vec::new();
                    collect_args(v, &mut found, what, 0)?;
                    if let (&"mask", [Arg::Tensor(reference)]) = (&key.as_str(), &found[..]) {
                        mask = CallMask::Given(reference.clone());
                        continue;
                    }
                    if ATTENTION_MASK_KEYWORDS.contains(&key.as_str()) {
                        match (&found[..], v) {
                            ([Arg::Tensor(reference)], _) => {
                                attention_masks.push((key.clone(), Some(reference.clone())))
                            }
                            ([], Value::Null) => attention_masks.push((key.clone(), None)),
                            _ => {
                                return Err(ImportError::config(format!(
                                    "{what}: keyword argument {key:?} is not one mask"
                                )))
                            }
                        }
                        continue;
                    }
                    if let (true, [one @ (Arg::Tensor(_) | Arg::Constant(_))]) =
                        (operation, &found[..])
                    {
                        keyword_operands.push((key.clone(), one.clone()));
                        continue;
                    }
                    if found.iter().any(|a| matches!(a, Arg::Tensor(_))) {
                        return Err(ImportError::config(format!(
                            "{what}: a tensor passed as keyword argument {key:?} is not supported"
                        )));
                    }
                    plain_kwargs.insert(key.clone(), v.clone());
                }
            }
        }
        // Keras 2: [[layer, node, tensor, kwargs], ...]. The kwargs of a call belong to its
        // first tensor's entry: the other tensors an attention layer takes (`value`, `key`,
        // as `[layer, node, tensor]` triples, placed after the query as Keras 3 passes them)
        // and plain options such as `use_causal_mask`.
        Value::Array(entries) => {
            // A `TFOpLambda` writes its one call as a bare entry, not a list of them.
            let bare = std::slice::from_ref(value);
            let entries = if is_reference(value) { bare } else { entries };
            let mut attention = [None, None];
            for entry in entries {
                let items = entry.as_array().map(Vec::as_slice).unwrap_or_default();
                match items {
                    // `0.5 * x`: tf.keras records a constant first operand in place of a
                    // tensor reference.
                    [Value::String(marker), _, constant, ..] if marker == "_CONSTANT_VALUE" => {
                        args.push(operand(constant, what)?)
                    }
                    _ => args.push(Arg::Tensor(parse_ref(entry, what)?)),
                }
                let Some(Value::Object(kwargs)) = entry.as_array().and_then(|e| e.get(3)) else {
                    continue;
                };
                for (key, v) in kwargs {
                    match (key.as_str(), v.as_array()) {
                        // A `TFOpLambda`'s other operands, by keyword: `y`, `tf.where`'s `x`
                        // (before `y`: the keywords come sorted), `tf.linalg.matmul`'s `b`.
                        ("x" | "y", _) => args.push(operand(v, what)?),
                        ("b", _) if is_reference(v) => args.push(Arg::Tensor(parse_ref(v, what)?)),
                        ("value", Some(_)) => attention[0] = Some(parse_ref(v, what)?),
                        ("key", Some(_)) => attention[1] = Some(parse_ref(v, what)?),
                        _ if is_reference(v) => {
                            return Err(ImportError::config(format!(
                                "{what}: a tensor passed as keyword argument {key:?} is not \
                                 supported"
                            )));
                        }
                        _ => {
                            plain_kwargs.insert(key.clone(), v.clone());
                        }
                    }
                }
            }
            match attention {
                [Some(value), key] => {
                    args.push(Arg::Tensor(value));
                    args.extend(key.map(Arg::Tensor));
                }
                [None, Some(_)] => {
                    return Err(ImportError::config(format!(
                        "{what}: an attention call with a key but no value"
                    )))
                }
                [None, None] => {}
            }
        }
        _ => {
            return Err(ImportError::config(format!(
                "{what}: an inbound node is neither an object nor a list"
            )))
        }
    }
    Ok(Node {
        args,
        kwargs: plain_kwargs,
        mask,
        attention_masks,
        raw_args,
        keyword_operands,
    })
}

/// Walks call arguments depth first, collecting tensors and constants in order.
fn collect_args(value: &Value, out: &mut Vec<Arg>, what: &str, depth: usize) -> Result<()> {
    if depth > 16 {
        return Err(ImportError::config(format!(
            "{what}: call arguments are nested too deep"
        )));
    }
    match value {
        Value::Array(items) => {
            for item in items {
                collect_args(item, out, what, depth + 1)?;
            }
        }
        Value::Object(obj) => match obj.get("class_name").and_then(Value::as_str) {
            Some("__keras_tensor__") => {
                let history = obj
                    .get("config")
                    .and_then(|c| c.get("keras_history"))
                    .ok_or_else(|| {
                        ImportError::config(format!("{what}: a keras tensor has no keras_history"))
                    })?;
                let reference = parse_ref(history, what)?;
                out.push(Arg::Tensor(reference));
            }
            Some("__numpy__") | Some("__tensor__") => {
                let config = obj
                    .get("config")
                    .and_then(Value::as_object)
                    .ok_or_else(|| {
                        ImportError::config(format!("{what}: a constant has no config"))
                    })?;
                out.push(Arg::Constant(parse_constant(config, what)?));
            }
            _ => {}
        },
        Value::Number(n) => match n.as_i64() {
            Some(v) if !n.is_f64() => out.push(Arg::Int(v)),
            _ => {
                if let Some(v) = n.as_f64() {
                    out.push(Arg::Scalar(v));
                }
            }
        },
        _ => {}
    }
    Ok(())
}

/// A Keras 2 call's operand written in place: a `[layer, node, tensor]` triple, a number,
/// or nested lists of numbers (a float32 constant, as tf.keras writes a NumPy array).
fn operand(value: &Value, what: &str) -> Result<Arg> {
    match value {
        _ if is_reference(value) => Ok(Arg::Tensor(parse_ref(value, what)?)),
        Value::Number(n) => match n.as_i64() {
            Some(v) if !n.is_f64() => Ok(Arg::Int(v)),
            _ => n
                .as_f64()
                .map(Arg::Scalar)
                .ok_or_else(|| ImportError::config(format!("{what}: an operand is not a number"))),
        },
        Value::Array(_) => {
            let mut config = Map::new();
            config.insert("value".into(), value.clone());
            Ok(Arg::Constant(parse_constant(&config, what)?))
        }
        other => Err(ImportError::config(format!(
            "{what}: an operand {other} is neither a tensor nor numbers"
        ))),
    }
}

/// A `[layer, node, tensor]` (Keras 3) or `[layer, node, tensor, kwargs]` (Keras 2) triple.
fn parse_ref(value: &Value, what: &str) -> Result<TensorRef> {
    let bad = || ImportError::config(format!("{what}: malformed tensor reference {value}"));
    let items = value.as_array().ok_or_else(bad)?;
    if items.len() < 3 {
        return Err(bad());
    }
    let layer = items[0].as_str().ok_or_else(bad)?.to_string();
    let node = items[1].as_u64().ok_or_else(bad)?;
    let tensor = items[2].as_u64().ok_or_else(bad)?;
    let node = usize::try_from(node).map_err(|_| bad())?;
    let tensor = usize::try_from(tensor).map_err(|_| bad())?;
    Ok(TensorRef {
        layer,
        node,
        tensor,
    })
}

/// `input_layers` / `output_layers`: one triple, a list of triples, or a dict of triples.
fn parse_ref_list(value: Option<&Value>, what: &str) -> Result<Vec<TensorRef>> {
    match value {
        None | Some(Value::Null) => Err(ImportError::config(format!("{what} is missing"))),
        Some(reference) if is_reference(reference) => Ok(vec![parse_ref(reference, what)?]),
        Some(Value::Array(items)) => items.iter().map(|v| parse_ref(v, what)).collect(),
        Some(Value::Object(map)) => map.values().map(|v| parse_ref(v, what)).collect(),
        Some(other) => Err(ImportError::config(format!(
            "{what}: unexpected value {other}"
        ))),
    }
}

/// A shape list such as `[null, 40]`.
pub fn parse_shape(value: &Value, what: &str) -> Result<Vec<Option<usize>>> {
    let items = value
        .as_array()
        .ok_or_else(|| ImportError::config(format!("{what}: shape {value} is not a list")))?;
    items
        .iter()
        .map(|d| match d {
            Value::Null => Ok(None),
            Value::Number(n) => n
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| {
                    ImportError::config(format!("{what}: bad dimension {n} in shape {value}"))
                }),
            other => Err(ImportError::config(format!(
                "{what}: bad dimension {other} in shape {value}"
            ))),
        })
        .collect()
}

/// A dtype given as a name or as a `DTypePolicy` object.
fn dtype_name(value: &Value) -> Option<&str> {
    match value {
        Value::String(s) => Some(s),
        Value::Object(obj) => obj
            .get("config")
            .and_then(|c| c.get("name"))
            .and_then(Value::as_str),
        _ => None,
    }
}

/// A `__numpy__` / `__tensor__` constant: `{"value": nested lists, "dtype": "float32"}`.
pub fn parse_constant(config: &Map<String, Value>, what: &str) -> Result<Tensor> {
    let dtype_name = config
        .get("dtype")
        .and_then(Value::as_str)
        .unwrap_or("float32");
    let dtype = DType::from_name(dtype_name).map_err(|_| {
        ImportError::config(format!(
            "{what}: constant of unsupported dtype {dtype_name:?}"
        ))
    })?;
    let value = config
        .get("value")
        .ok_or_else(|| ImportError::config(format!("{what}: a constant has no value")))?;
    let mut shape = Vec::new();
    let mut probe = value;
    while let Value::Array(items) = probe {
        shape.push(items.len());
        match items.first() {
            Some(first) => probe = first,
            None => break,
        }
        if shape.len() > 32 {
            return Err(ImportError::config(format!(
                "{what}: constant has more than 32 dimensions"
            )));
        }
    }
    let mut flat = Vec::new();
    flatten_constant(value, &shape, 0, &mut flat, what)?;
    Ok(Tensor::from_f64_values(dtype, shape, &flat))
}

fn flatten_constant(
    value: &Value,
    shape: &[usize],
    dim: usize,
    out: &mut Vec<f64>,
    what: &str,
) -> Result<()> {
    let ragged = || ImportError::config(format!("{what}: constant is not a rectangular array"));
    match value {
        Value::Array(items) => {
            if dim >= shape.len() || items.len() != shape[dim] {
                return Err(ragged());
            }
            for item in items {
                flatten_constant(item, shape, dim + 1, out, what)?;
            }
        }
        Value::Number(n) if dim == shape.len() => out.push(n.as_f64().ok_or_else(ragged)?),
        Value::Bool(b) if dim == shape.len() => out.push(f64::from(u8::from(*b))),
        _ => return Err(ragged()),
    }
    Ok(())
}

fn as_object<'a>(value: &'a Value, what: &str) -> Result<&'a Map<String, Value>> {
    value
        .as_object()
        .ok_or_else(|| ImportError::config(format!("{what} is not a JSON object")))
}

fn str_field<'a>(obj: &'a Map<String, Value>, key: &str, what: &str) -> Result<&'a str> {
    obj.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| ImportError::config(format!("{what} has no {key:?} string")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tensor(layer: &str, node: usize) -> Value {
        json!({"class_name": "__keras_tensor__", "config": {"shape": [null, 2], "dtype": "float32", "keras_history": [layer, node, 0]}})
    }

    #[test]
    fn keras3_nodes_with_list_args_and_constants() {
        let node = json!({"args": [[tensor("a", 0), tensor("b", 1)], {"class_name": "__numpy__", "config": {"value": [[1.0, 2.0], [3.0, 4.0]], "dtype": "float32"}}, 0.5], "kwargs": {"mask": null}});
        let parsed = parse_node(&node, "layer", false).unwrap();
        assert_eq!(
            parsed
                .tensors()
                .map(|t| (t.layer.as_str(), t.node))
                .collect::<Vec<_>>(),
            [("a", 0), ("b", 1)]
        );
        match &parsed.args[2] {
            Arg::Constant(t) => {
                assert_eq!(t.shape, vec![2, 2]);
                assert_eq!(t.to_f64_vec(), vec![1.0, 2.0, 3.0, 4.0]);
            }
            other => panic!("expected a constant, got {other:?}"),
        }
        assert_eq!(parsed.args[3], Arg::Scalar(0.5));
    }

    #[test]
    fn keras2_nodes() {
        let node = json!([["dense_1", 0, 0, {}], ["input_2", 1, 0, {}]]);
        let parsed = parse_node(&node, "layer", false).unwrap();
        let refs: Vec<_> = parsed.tensors().cloned().collect();
        assert_eq!(
            refs[1],
            TensorRef {
                layer: "input_2".into(),
                node: 1,
                tensor: 0
            }
        );
    }

    #[test]
    fn keras2_attention_kwargs_follow_the_query() {
        let reference = |layer: &str| TensorRef {
            layer: layer.into(),
            node: 0,
            tensor: 0,
        };
        let node = json!([["q", 0, 0, {"key": ["k", 0, 0], "value": ["v", 0, 0],
                                       "use_causal_mask": true}]]);
        let parsed = parse_node(&node, "layer", false).unwrap();
        let refs: Vec<_> = parsed.tensors().cloned().collect();
        assert_eq!(refs, [reference("q"), reference("v"), reference("k")]);
        assert_eq!(parsed.kwargs.get("use_causal_mask"), Some(&json!(true)));

        let node = json!([["q", 0, 0, {"key": ["k", 0, 0]}]]);
        let err = parse_node(&node, "layer", false).unwrap_err().to_string();
        assert!(err.contains("a key but no value"), "{err}");
        let node = json!([["q", 0, 0, {"bias": ["b", 0, 0]}]]);
        let err = parse_node(&node, "layer", false).unwrap_err().to_string();
        assert!(err.contains("keyword argument \"bias\""), "{err}");
    }

    #[test]
    fn keras2_tensorflow_calls_take_their_operand() {
        // TFOpLambda writes its call as a bare entry; `y` is a tensor, a number or lists.
        let node = json!(["x", 0, 0, {"y": ["d", 0, 0], "name": null}]);
        let parsed = parse_node(&node, "layer", false).unwrap();
        assert_eq!(parsed.tensors().count(), 2);
        let node = json!(["x", 0, 0, {"y": 1.5}]);
        assert_eq!(
            parse_node(&node, "layer", false).unwrap().args[1],
            Arg::Scalar(1.5)
        );
        let node = json!(["x", 0, 0, {"y": [[1.0, 2.0], [3.0, 4.0]]}]);
        match &parse_node(&node, "layer", false).unwrap().args[1] {
            Arg::Constant(t) => assert_eq!(t.shape, vec![2, 2]),
            other => panic!("{other:?}"),
        }
        let node = json!(["x", 0, 0, {"y": "text"}]);
        let err = parse_node(&node, "layer", false).unwrap_err().to_string();
        assert!(err.contains("neither a tensor nor numbers"), "{err}");
    }

    #[test]
    fn tensor_in_kwargs_is_refused() {
        let node = json!({"args": [tensor("a", 0)], "kwargs": {"value": tensor("b", 0)}});
        let err = parse_node(&node, "layer \"mha\"", false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("keyword argument \"value\""), "{err}");
    }

    #[test]
    fn an_operations_keyword_tensors_and_constants_are_operands() {
        let scale =
            json!({"class_name": "__numpy__", "config": {"value": [1.0, 2.0], "dtype": "float32"}});
        let node = json!({"args": [tensor("x", 0)], "kwargs": {"scale": scale, "epsilon": 0.1}});
        let parsed = parse_node(&node, "layer", true).unwrap();
        assert!(matches!(&parsed.keyword_operands[..], [(k, Arg::Constant(_))] if k == "scale"));
        assert_eq!(parsed.kwargs.get("epsilon"), Some(&json!(0.1)));
        let node = json!({"args": [tensor("x", 0)], "kwargs": {"scale": tensor("s", 0)}});
        let parsed = parse_node(&node, "layer", true).unwrap();
        let names: Vec<&str> = parsed.tensors().map(|t| t.layer.as_str()).collect();
        assert_eq!(names, ["x", "s"]);
    }

    #[test]
    fn recorded_attention_masks_are_kept_apart() {
        let node = json!({"args": [tensor("q", 0), tensor("v", 0)],
                          "kwargs": {"query_mask": tensor("not_equal", 0), "key_mask": null,
                                     "value_mask": tensor("logical_or", 0)}});
        let parsed = parse_node(&node, "layer", false).unwrap();
        assert_eq!(parsed.tensors().count(), 2);
        let recorded: Vec<_> = parsed
            .attention_masks
            .iter()
            .map(|(k, r)| (k.as_str(), r.as_ref().map(|r| r.layer.as_str())))
            .collect();
        assert_eq!(
            recorded,
            [
                ("key_mask", None),
                ("query_mask", Some("not_equal")),
                ("value_mask", Some("logical_or"))
            ]
        );
        for bad in [json!(1), json!([tensor("a", 0), tensor("b", 0)])] {
            let node = json!({"args": [tensor("q", 0)], "kwargs": {"value_mask": bad}});
            let err = parse_node(&node, "layer", false).unwrap_err().to_string();
            assert!(err.contains("\"value_mask\" is not one mask"), "{err}");
        }
    }

    #[test]
    fn ragged_constant_is_refused() {
        let node = json!({"args": [{"class_name": "__numpy__", "config": {"value": [[1.0], [2.0, 3.0]], "dtype": "float32"}}]});
        let err = parse_node(&node, "layer", false).unwrap_err().to_string();
        assert!(err.contains("not a rectangular array"), "{err}");
    }

    #[test]
    fn constant_of_unknown_dtype_is_refused() {
        let node = json!({"args": [{"class_name": "__numpy__", "config": {"value": [1.0], "dtype": "complex64"}}]});
        let err = parse_node(&node, "layer", false).unwrap_err().to_string();
        assert!(err.contains("unsupported dtype \"complex64\""), "{err}");
    }

    #[test]
    fn sequential_without_input_layer_uses_build_input_shape() {
        let model = json!({"class_name": "Sequential", "config": {"name": "s", "layers": [
            {"class_name": "Dense", "config": {"name": "d1", "units": 2}},
            {"class_name": "Dense", "config": {"name": "d2", "units": 2}}
        ], "build_input_shape": [null, 3]}});
        let parsed = parse_model(&model, 0).unwrap();
        assert_eq!(
            parsed.layers[0].kind,
            LayerKind::Input {
                dtype: "float32".into(),
                shape: vec![None, Some(3)]
            }
        );
        assert_eq!(
            parsed.layers[2].nodes[0].args,
            vec![Arg::Tensor(TensorRef {
                layer: "d1".into(),
                node: 0,
                tensor: 0
            })]
        );
        assert_eq!(parsed.outputs[0].layer, "d2");
    }

    #[test]
    fn duplicate_layer_names_are_refused() {
        let model = json!({"class_name": "Sequential", "config": {"name": "s", "layers": [
            {"class_name": "InputLayer", "config": {"name": "x", "batch_shape": [null, 3]}},
            {"class_name": "Dense", "config": {"name": "d", "units": 2}},
            {"class_name": "Dense", "config": {"name": "d", "units": 2}}
        ]}});
        let err = parse_model(&model, 0).unwrap_err().to_string();
        assert!(err.contains("two layers named \"d\""), "{err}");
    }

    #[test]
    fn subclassed_models_are_refused() {
        let err = parse_model(&json!({"class_name": "MyModel", "config": {}}), 0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("subclassed"), "{err}");
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut model = json!({"class_name": "Sequential", "config": {"name": "s", "layers": [
            {"class_name": "InputLayer", "config": {"name": "x", "batch_shape": [null, 3]}}]}});
        for _ in 0..40 {
            model = json!({"class_name": "Sequential", "config": {"name": "s", "layers": [
                {"class_name": "InputLayer", "config": {"name": "x", "batch_shape": [null, 3]}}, model]}});
        }
        let err = parse_model(&model, 0).unwrap_err().to_string();
        assert!(err.contains("nested more than"), "{err}");
    }
}
