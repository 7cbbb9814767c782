//! The layer converters, looked up by Keras class name. [`LayerRegistry::default`] holds every
//! built-in converter, registered explicitly below; callers add their own (custom Keras
//! layers) with [`LayerRegistry::register`].

use crate::error::BuildError;
use crate::graph::GraphBuilder;
use crate::layers;
use crate::shape::TensorInfo;
use crate::spec::Layer;
use std::collections::HashMap;
use std::sync::Arc;

/// A graph value a converter reads or writes: its ONNX name and its static type.
#[derive(Debug, Clone, Copy)]
pub struct ValueRef<'a> {
    pub name: &'a str,
    pub info: &'a TensorInfo,
    /// The Keras mask travelling with an input (a bool value over its leading axes, false at
    /// the masked steps), as `Embedding(mask_zero=True)` makes one; `None` for outputs and
    /// unmasked values. See [`Masking`].
    pub mask: Option<&'a str>,
}

/// A mask a layer made ([`LayerConverter::emit_mask`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MadeMask {
    /// The bool value, false at the masked steps.
    pub value: String,
    /// What it is computed from, as the Keras importer names the computation a Keras 3 file
    /// records (the builder's `keras_mask` check compares the two): the ids' value name for
    /// `ids != 0`, `any(<value> != <mask_value>)` for `Masking`.
    pub source: String,
}

/// The source (see [`MadeMask::source`]) of the mask `Concatenate` makes along Keras'
/// `axis` (as configured) from its inputs' masks: for each input, the sources its mask ORs
/// together, or `None` for an input without one. The Keras importer names the mask a
/// Keras 3 file records for a `Concatenate` the same way.
///
/// A source longer than 256 bytes is named by a digest of itself instead, so that
/// the names stay short through a lattice of `Concatenate`s, each joining the one before.
///
/// ```
/// use thunderbolt_builder::concatenated_mask_source;
/// let parts = [Some(vec!["ids".to_string()]), None];
/// assert_eq!(
///     concatenated_mask_source(-1, &parts),
///     "concatenate(axis -1: [ids], [all steps])"
/// );
/// ```
pub fn concatenated_mask_source(axis: i64, parts: &[Option<Vec<String>>]) -> String {
    let parts: Vec<String> = parts
        .iter()
        .map(|part| match part {
            Some(ids) => mask_part(ids),
            None => "[all steps]".to_string(),
        })
        .collect();
    let source = format!("concatenate(axis {axis}: {})", parts.join(", "));
    if source.len() <= MAX_SOURCE_LEN {
        return source;
    }
    // FNV-1a: the builder and the importer must agree, whatever the build or the run.
    let digest = source.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!(
        "concatenate(axis {axis}: {} masks, digest {digest:016x})",
        parts.len()
    )
}

/// One mask among several in a mask source: the sources it ORs together, bracketed.
pub(crate) fn mask_part<'a>(ids: impl IntoIterator<Item = &'a String>) -> String {
    let ids: Vec<&str> = ids.into_iter().map(String::as_str).collect();
    format!("[{}]", ids.join(" or "))
}

/// The longest mask source [`concatenated_mask_source`] spells out.
const MAX_SOURCE_LEN: usize = 256;

/// What a layer does with a Keras mask on its inputs, as Keras 3 does it. A mask changes
/// what some layers compute (an average over the unmasked steps only), so a layer whose use
/// of it is not converted must refuse a masked input rather than compute over padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Masking {
    /// Computes as without a mask and hands the first input's mask on (Keras:
    /// `supports_masking`, no `mask` in `call`): `Dense`, dropouts, activations,
    /// normalizations.
    Propagates,
    /// Computes as without a mask and drops it (Keras: no `supports_masking`, so Keras warns
    /// and the mask ends): `Flatten`, `Conv1D`, `GlobalMaxPooling1D`.
    Drops,
    /// Reads the mask in `emit` (`inputs[0].mask`) and ends it: `GlobalAveragePooling1D`, a
    /// recurrent layer returning its last state.
    Consumes,
    /// Reads the mask in `emit` and hands it on: a recurrent layer returning sequences.
    Uses,
    /// Reads every input's mask in `emit`: `MultiHeadAttention` (query, value, key). Keras
    /// takes these masks from the inputs themselves, with no `mask` call argument; Keras 3
    /// files up to 3.9 record them (`query_mask`, `value_mask`, `key_mask`), which
    /// the importer hands on as `"keras_query_mask"` and so on. With `passes_on` the output
    /// carries the first input's mask (Keras 2, Keras 3.4 and later); with `clears` the layer
    /// then clears the masks its inputs carry, so that layers reading them afterwards see
    /// none (Keras 3.8 and later).
    Attends { passes_on: bool, clears: bool },
    /// A merge: its output mask is the OR of the inputs' masks when every input has one,
    /// else none (Keras' `Merge.compute_mask`). `Add` computes as without masks; `Multiply`,
    /// `Maximum` and `Minimum` read them in `emit`, as Keras 3 does.
    MergesWithOr,
    /// A merge as Keras 2 (tf.keras) does it: computes as without masks; its output mask is
    /// the AND of the masks its inputs have (none when none has one).
    MergesWithAnd,
    /// `Concatenate`: computes as without masks; when any input has a mask, its output mask
    /// is the inputs' masks (all steps for an input without one) joined along its axis, or
    /// their OR along the last axis, which masks do not have (Keras'
    /// `Concatenate.compute_mask`).
    Concatenates,
    /// Uses masks in a way that is not converted: a masked input is an error.
    Unsupported,
}

/// Converts one Keras layer class into ONNX nodes, in two steps:
/// [`infer`](LayerConverter::infer) validates the config and weights against the incoming
/// types and computes the output type, for every layer before anything is emitted; then
/// [`emit`](LayerConverter::emit) writes the nodes.
pub trait LayerConverter: Send + Sync {
    /// Validates `layer` (config, weights, the number and types of `inputs`) and returns the
    /// type of its output. Errors must name the layer (see [`Layer::error`]).
    fn infer(&self, layer: &Layer, inputs: &[TensorInfo]) -> Result<TensorInfo, BuildError>;

    /// Emits the nodes computing `layer`, after a successful `infer`. The last node should
    /// write to `output.name`; a layer that only forwards a value (an identity) may return
    /// that value's name instead. Returns the name of the value holding the result.
    fn emit(
        &self,
        layer: &Layer,
        inputs: &[ValueRef<'_>],
        output: ValueRef<'_>,
        graph: &mut GraphBuilder,
    ) -> Result<String, BuildError>;

    /// How the layer treats a mask on its inputs. The default refuses one, so a converter
    /// that does not say never computes over steps that Keras would skip.
    fn masking(&self, _layer: &Layer) -> Masking {
        Masking::Unsupported
    }

    /// A mask this layer makes for its output itself (`Embedding(mask_zero=True)`,
    /// `Masking`), emitted after [`emit`](LayerConverter::emit), or `None`. It replaces
    /// whatever [`masking`](LayerConverter::masking) would hand on.
    fn emit_mask(
        &self,
        _layer: &Layer,
        _inputs: &[ValueRef<'_>],
        _graph: &mut GraphBuilder,
    ) -> Result<Option<MadeMask>, BuildError> {
        Ok(None)
    }
}

/// Keras class name to converter.
#[derive(Clone)]
pub struct LayerRegistry {
    converters: HashMap<String, Arc<dyn LayerConverter>>,
}

impl LayerRegistry {
    /// A registry with no converters.
    pub fn empty() -> Self {
        LayerRegistry {
            converters: HashMap::new(),
        }
    }

    /// Registers `converter` for `class_name`, replacing and returning any previous one.
    pub fn register(
        &mut self,
        class_name: impl Into<String>,
        converter: impl LayerConverter + 'static,
    ) -> Option<Arc<dyn LayerConverter>> {
        self.converters
            .insert(class_name.into(), Arc::new(converter))
    }

    pub fn get(&self, class_name: &str) -> Option<&dyn LayerConverter> {
        self.converters.get(class_name).map(|c| c.as_ref())
    }

    /// The registered class names, sorted.
    pub fn class_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.converters.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}

impl Default for LayerRegistry {
    /// Every built-in converter.
    fn default() -> Self {
        use layers::*;
        let mut r = LayerRegistry::empty();
        r.register("Embedding", embedding::Embedding);
        r.register("Dense", dense::Dense);
        r.register("Activation", activation::ActivationLayer);
        r.register("Softmax", softmax::Softmax);
        r.register("ReLU", activation_classes::ActivationClass::ReLU);
        r.register("LeakyReLU", activation_classes::ActivationClass::LeakyReLU);
        r.register("ELU", activation_classes::ActivationClass::ELU);
        r.register("PReLU", prelu::PReLU);
        for (rank, d) in [(1, "1D"), (2, "2D"), (3, "3D")] {
            use pooling::PoolOp::{Average, Max};
            r.register(format!("Conv{d}"), conv::Conv { rank });
            r.register(
                format!("Conv{d}Transpose"),
                conv_transpose::ConvTranspose { rank },
            );
            r.register(format!("MaxPooling{d}"), pooling::Pooling { op: Max, rank });
            r.register(
                format!("AveragePooling{d}"),
                pooling::Pooling { op: Average, rank },
            );
            let global = |op| global_pooling::GlobalPooling { op, rank };
            r.register(format!("GlobalMaxPooling{d}"), global(Max));
            r.register(format!("GlobalAveragePooling{d}"), global(Average));
            r.register(
                format!("ZeroPadding{d}"),
                zero_padding::ZeroPadding { rank },
            );
            r.register(format!("Cropping{d}"), cropping::Cropping { rank });
            r.register(format!("UpSampling{d}"), upsampling::UpSampling { rank });
        }
        for (rank, d) in [(1, "1D"), (2, "2D")] {
            let depthwise = |separable| depthwise_conv::DepthwiseConv { rank, separable };
            r.register(format!("DepthwiseConv{d}"), depthwise(false));
            r.register(format!("SeparableConv{d}"), depthwise(true));
        }
        r.register("Resizing", resizing::Resizing);
        r.register("CenterCrop", center_crop::CenterCrop);
        r.register("Flatten", flatten::Flatten);
        r.register("Reshape", reshape::Reshape);
        r.register("Concatenate", concatenate::Concatenate);
        r.register("Add", merge::Merge::Add);
        r.register("Subtract", merge::Merge::Subtract);
        r.register("Multiply", merge::Merge::Multiply);
        r.register("Average", merge::Merge::Average);
        r.register("Maximum", merge::Merge::Maximum);
        r.register("Minimum", merge::Merge::Minimum);
        r.register("Dropout", identity::Identity);
        r.register("GaussianNoise", identity::Identity);
        r.register("GaussianDropout", identity::Identity);
        r.register("SpatialDropout1D", identity::Identity);
        r.register("AlphaDropout", identity::Identity);
        r.register("ActivityRegularization", identity::Identity);
        r.register("Identity", identity::Identity);
        for (class, casts_integers) in [
            ("RandomFlip", true),
            ("RandomRotation", true),
            ("RandomZoom", true),
            ("RandomTranslation", true),
            ("RandomContrast", false),
            ("RandomBrightness", false),
        ] {
            r.register(class, augmentation::Augmentation { casts_integers });
        }
        r.register("Permute", permute::Permute);
        r.register("KerasOperation", keras_operation::KerasOperation);
        r.register("RepeatVector", repeat_vector::RepeatVector);
        r.register("Rescaling", rescaling::Rescaling);
        r.register(
            "BatchNormalization",
            batch_normalization::BatchNormalization,
        );
        r.register(
            "LayerNormalization",
            layer_normalization::LayerNormalization,
        );
        r.register("Normalization", normalization::Normalization);
        r.register("CategoryEncoding", category_encoding::CategoryEncoding);
        r.register("Discretization", discretization::Discretization);
        r.register(
            "GroupNormalization",
            group_normalization::GroupNormalization,
        );
        r.register("UnitNormalization", unit_normalization::UnitNormalization);
        r.register("RMSNormalization", rms_normalization::RmsNormalization);
        r.register("EinsumDense", einsum_dense::EinsumDense);
        r.register("Dot", dot::Dot);
        r.register("Masking", masking::MaskingLayer);
        r.register("LSTM", recurrent::Recurrent::Lstm);
        r.register("GRU", recurrent::Recurrent::Gru);
        r.register("SimpleRNN", recurrent::Recurrent::SimpleRnn);
        r.register("Bidirectional", bidirectional::Bidirectional);
        r.register("TimeDistributed", time_distributed::TimeDistributed);
        r.register(
            "MultiHeadAttention",
            multi_head_attention::MultiHeadAttention,
        );
        r.register("Attention", attention::Attention::Luong);
        r.register("AdditiveAttention", attention::Attention::Additive);
        r.register("AddConstant", add_constant::AddConstant);
        r.register("InterleavedRoPE", interleaved_rope::InterleavedRoPE);
        r
    }
}

impl std::fmt::Debug for LayerRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerRegistry")
            .field("class_names", &self.class_names())
            .finish()
    }
}
