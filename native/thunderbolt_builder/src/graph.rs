//! The ONNX graph under construction: nodes, initializers and a name allocator, used by the
//! layer converters to emit their ops.

use crate::tensor::{DType, Tensor};
use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::{AttributeProto, NodeProto, TensorProto};
use std::collections::{HashMap, HashSet};

/// Where a spec weight lives: (layer index, weight index).
pub(crate) type WeightSlot = (usize, usize);

/// Nodes and initializers emitted so far. Value names are unique across graph inputs,
/// initializers and node outputs; [`GraphBuilder::fresh`] hands out new ones.
#[derive(Debug, Default)]
pub struct GraphBuilder {
    pub(crate) nodes: Vec<NodeProto>,
    pub(crate) initializers: Vec<TensorProto>,
    values: HashSet<String>,
    node_names: HashSet<String>,
    /// When building from an owned spec: the spec's weight buffers by address, so their
    /// bytes can be moved into the initializers afterwards instead of copied now.
    owned_weights: Option<HashMap<(usize, usize), WeightSlot>>,
    /// (initializer index, weight) pairs whose `raw_data` is still to be moved in.
    pub(crate) deferred: Vec<(usize, WeightSlot)>,
}

impl GraphBuilder {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// A builder that leaves the bytes of the given weights (by buffer address) out of the
    /// initializers and records them in `deferred`, for the caller to move in.
    pub(crate) fn deferring(weights: HashMap<(usize, usize), WeightSlot>) -> Self {
        GraphBuilder {
            owned_weights: Some(weights),
            ..Self::default()
        }
    }

    fn deferred_slot(&self, tensor: &Tensor) -> Option<WeightSlot> {
        let key = (tensor.data.as_ptr() as usize, tensor.data.len());
        self.owned_weights
            .as_ref()
            .filter(|_| !tensor.data.is_empty())?
            .get(&key)
            .copied()
    }

    /// Claims a value name chosen by the caller of the builder; `false` if already taken.
    pub(crate) fn reserve(&mut self, name: &str) -> bool {
        self.values.insert(name.to_string())
    }

    /// A value name that is not in use yet: `base`, or `base_1`, `base_2`, ... .
    pub fn fresh(&mut self, base: &str) -> String {
        Self::unique(&mut self.values, base)
    }

    fn unique(set: &mut HashSet<String>, base: &str) -> String {
        let mut name = base.to_string();
        let mut n = 0usize;
        while set.contains(&name) {
            n += 1;
            name = format!("{base}_{n}");
        }
        set.insert(name.clone());
        name
    }

    /// Emits a single-output node writing to `output`, a name the caller already owns
    /// (from [`GraphBuilder::fresh`] or the layer's output name).
    pub fn node_into(
        &mut self,
        op_type: &str,
        inputs: &[&str],
        output: &str,
        attrs: Vec<AttributeProto>,
    ) {
        self.node_outputs(op_type, inputs, &[output], attrs);
    }

    /// Emits a node with several outputs, each a name the caller owns or `""` for an
    /// optional output left out (as the recurrent ops allow).
    pub fn node_outputs(
        &mut self,
        op_type: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: Vec<AttributeProto>,
    ) {
        let hint = outputs
            .iter()
            .find(|o| !o.is_empty())
            .copied()
            .unwrap_or(op_type);
        let mut node = NodeProto::new();
        node.op_type = op_type.to_string();
        node.name = Self::unique(&mut self.node_names, hint);
        node.input = inputs.iter().map(|s| s.to_string()).collect();
        node.output = outputs.iter().map(|s| s.to_string()).collect();
        node.attribute = attrs;
        self.nodes.push(node);
    }

    /// Emits a single-output node writing to a fresh name derived from `hint`; returns it.
    pub fn node(
        &mut self,
        op_type: &str,
        inputs: &[&str],
        hint: &str,
        attrs: Vec<AttributeProto>,
    ) -> String {
        let output = self.fresh(hint);
        self.node_into(op_type, inputs, &output, attrs);
        output
    }

    /// Folds the binary `op_type` over `values` from the left (`Or` over masks), each node
    /// writing to a fresh name derived from `hint`; returns the last, or the one value.
    pub fn fold(&mut self, op_type: &str, values: &[&str], hint: &str) -> Option<String> {
        let (first, rest) = values.split_first()?;
        let mut acc = first.to_string();
        for value in rest {
            acc = self.node(op_type, &[&acc, value], hint, vec![]);
        }
        Some(acc)
    }

    /// Stores `tensor` as an initializer under a fresh name derived from `hint`.
    pub fn initializer(&mut self, hint: &str, tensor: &Tensor) -> String {
        self.initializer_reshaped(hint, tensor, &tensor.shape)
    }

    /// Like [`GraphBuilder::initializer`], taking ownership so the bytes are not copied.
    pub fn initializer_owned(&mut self, hint: &str, tensor: Tensor) -> String {
        self.push_initializer(hint, tensor.dtype, &tensor.shape, tensor.data)
    }

    /// A weight stored with a different shape (same elements, row-major), for example a
    /// per-channel vector laid out to broadcast along a given axis.
    pub fn initializer_reshaped(&mut self, hint: &str, tensor: &Tensor, shape: &[usize]) -> String {
        match self.deferred_slot(tensor) {
            Some(slot) => {
                self.deferred.push((self.initializers.len(), slot));
                self.push_initializer(hint, tensor.dtype, shape, Vec::new())
            }
            None => self.push_initializer(hint, tensor.dtype, shape, tensor.data.clone()),
        }
    }

    fn push_initializer(
        &mut self,
        hint: &str,
        dtype: DType,
        shape: &[usize],
        data: Vec<u8>,
    ) -> String {
        let name = self.fresh(hint);
        let mut proto = TensorProto::new();
        proto.name = name.clone();
        proto.data_type = dtype.onnx() as i32;
        proto.dims = shape.iter().map(|&d| d as i64).collect();
        proto.raw_data = data;
        self.initializers.push(proto);
        name
    }

    /// A scalar constant of type `dtype` (floats round to nearest, integers truncate).
    pub fn scalar(&mut self, hint: &str, dtype: DType, value: f64) -> String {
        let data: Vec<u8> = match dtype {
            DType::F32 => (value as f32).to_le_bytes().to_vec(),
            DType::F64 => value.to_le_bytes().to_vec(),
            DType::F16 => half::f16::from_f64(value).to_le_bytes().to_vec(),
            DType::I8 => (value as i8).to_le_bytes().to_vec(),
            DType::I16 => (value as i16).to_le_bytes().to_vec(),
            DType::I32 => (value as i32).to_le_bytes().to_vec(),
            DType::I64 => (value as i64).to_le_bytes().to_vec(),
            DType::U8 => (value as u8).to_le_bytes().to_vec(),
            DType::Bool => vec![u8::from(value != 0.0)],
        };
        self.push_initializer(hint, dtype, &[], data)
    }

    /// A 1-D int64 constant (axes, shapes).
    pub fn int64s(&mut self, hint: &str, values: &[i64]) -> String {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.push_initializer(hint, DType::I64, &[values.len()], data)
    }
}

/// An `INT` attribute.
pub fn attr_int(name: &str, value: i64) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.to_string();
    a.type_ = AttributeType::INT.into();
    a.i = value;
    a
}

/// A `FLOAT` attribute.
pub fn attr_float(name: &str, value: f32) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.to_string();
    a.type_ = AttributeType::FLOAT.into();
    a.f = value;
    a
}

/// An `INTS` attribute.
pub fn attr_ints(name: &str, values: &[i64]) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.to_string();
    a.type_ = AttributeType::INTS.into();
    a.ints = values.to_vec();
    a
}

/// A `FLOATS` attribute.
pub fn attr_floats(name: &str, values: &[f32]) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.to_string();
    a.type_ = AttributeType::FLOATS.into();
    a.floats = values.to_vec();
    a
}

/// A `STRING` attribute.
pub fn attr_string(name: &str, value: &str) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.to_string();
    a.type_ = AttributeType::STRING.into();
    a.s = value.as_bytes().to_vec();
    a
}

/// A `STRINGS` attribute.
pub fn attr_strings(name: &str, values: &[&str]) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.to_string();
    a.type_ = AttributeType::STRINGS.into();
    a.strings = values.iter().map(|v| v.as_bytes().to_vec()).collect();
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_names_never_collide_with_reserved_ones() {
        let mut g = GraphBuilder::new();
        assert!(g.reserve("dense"));
        assert!(!g.reserve("dense"));
        assert_eq!(g.fresh("dense"), "dense_1");
        assert_eq!(g.fresh("dense"), "dense_2");
        assert_eq!(g.fresh("dense/MatMul"), "dense/MatMul");
    }

    #[test]
    fn nodes_and_initializers_are_recorded_in_order() {
        let mut g = GraphBuilder::new();
        let k = g.initializer("d/kernel", &Tensor::from_f32(vec![2, 1], &[1.0, 2.0]));
        let y = g.node("MatMul", &["x", &k], "d/MatMul", vec![]);
        let axes = g.int64s("d/axes", &[1]);
        assert_eq!(g.initializers.len(), 2);
        assert_eq!(g.initializers[0].dims, vec![2, 1]);
        assert_eq!(g.initializers[1].raw_data, 1i64.to_le_bytes());
        assert_eq!(g.nodes[0].input, vec!["x".to_string(), k]);
        assert_eq!(g.nodes[0].output, vec![y]);
        assert_eq!(axes, "d/axes");
    }
}
