//! Keras masks while a model is emitted: which mask each layer's result carries, as Keras
//! builds the model (and records for the layers that take a `mask` argument) and as it runs
//! it, and how each layer combines its inputs' masks.
//!
//! The two differ only through `MultiHeadAttention` in Keras 3.8 and later
//! ([`Masking::Attends`] with `clears`), which clears the masks of the very values it is given
//! when it runs (`backend.set_keras_mask(query, None)`, and the value's and the key's). A
//! layer that reads masks from its inputs afterwards (another attention layer, a merge, and
//! the layers between that hand masks on) then sees none, though Keras recorded one when
//! it built the model: the residual `Add` after the first attention block of an encoder
//! hands no mask on, so the second block attends to padding. Layers that take Keras' `mask`
//! argument (`GlobalAveragePooling1D`, the recurrent layers) get the mask Keras recorded,
//! which its own operations compute, whatever was cleared; so do the attention inputs whose
//! masks a file records (`"keras_value_mask"` and the like, up to Keras 3.9).

use crate::config::Config;
use crate::error::BuildError;
use crate::graph::{attr_int, GraphBuilder};
use crate::layers::{concatenate, saved_by_keras_2};
use crate::registry::{concatenated_mask_source, mask_part, Masking, ValueRef};
use crate::shape::TensorInfo;
use crate::spec::Layer;
use crate::tensor::DType;
use std::collections::BTreeSet;

/// The masks of every layer's result, in both of Keras' views (see the module doc).
pub(crate) struct MaskTracker {
    /// For each layer, the layers its inbound values come from (`None` for a model input).
    inbound: Vec<Vec<Option<usize>>>,
    consumers: Vec<Vec<usize>>,
    /// As Keras builds the model and records it.
    built: Vec<Option<Mask>>,
    /// As Keras runs it, before any clearing.
    running: Vec<Option<Mask>>,
    /// Results whose running mask an attention layer has cleared.
    cleared: Vec<bool>,
    /// Memo of [`MaskTracker::reads_running_masks`].
    reads: Vec<Option<bool>>,
}

/// The masks of one layer's inputs.
pub(crate) struct InputMasks<'a> {
    pub(crate) built: Vec<Option<&'a Mask>>,
    pub(crate) running: Vec<Option<&'a Mask>>,
}

impl InputMasks<'_> {
    /// The masks a layer computes with: for each input, the recorded one where Keras records
    /// it (`recorded[k]`), else the one the input carries when the layer runs.
    pub(crate) fn seen(&self, recorded: &[bool]) -> Vec<Option<&Mask>> {
        (0..self.built.len())
            .map(|k| {
                if recorded.get(k).copied().unwrap_or(false) {
                    self.built[k]
                } else {
                    self.running[k]
                }
            })
            .collect()
    }

    fn differ(&self) -> bool {
        self.built
            .iter()
            .zip(&self.running)
            .any(|(b, r)| b.map(|m| &m.value) != r.map(|m| &m.value))
    }
}

impl MaskTracker {
    /// `inbound[i]` lists, for each inbound value of layer `i`, the layer it comes from.
    pub(crate) fn new(inbound: Vec<Vec<Option<usize>>>) -> Self {
        let n = inbound.len();
        let mut consumers = vec![Vec::new(); n];
        for (i, sources) in inbound.iter().enumerate() {
            for &j in sources.iter().flatten() {
                // `i` only grows, so a layer taking `j` twice is the last consumer pushed.
                if consumers[j].last() != Some(&i) {
                    consumers[j].push(i);
                }
            }
        }
        MaskTracker {
            inbound,
            consumers,
            built: vec![None; n],
            running: vec![None; n],
            cleared: vec![false; n],
            reads: vec![None; n],
        }
    }

    pub(crate) fn inputs(&self, layer: usize) -> InputMasks<'_> {
        let masks = |running: bool| {
            self.inbound[layer]
                .iter()
                .map(|source| {
                    source.and_then(|j| {
                        if running {
                            self.running[j].as_ref().filter(|_| !self.cleared[j])
                        } else {
                            self.built[j].as_ref()
                        }
                    })
                })
                .collect()
        };
        InputMasks {
            built: masks(false),
            running: masks(true),
        }
    }

    /// Sets layer `i`'s result masks: `made` when the layer makes its own, else each view
    /// combined from the inputs' by the layer's `masking`; with `recorded` (the layer
    /// computes with recorded masks only) the running view is the built one.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn settle(
        &mut self,
        g: &mut GraphBuilder,
        i: usize,
        layer: &Layer,
        masking: Masking,
        recorded: bool,
        inputs: &[ValueRef<'_>],
        output: &TensorInfo,
        made: Option<Mask>,
    ) -> Result<(), BuildError> {
        let (built, running) = if let Some(made) = made {
            (Some(made.clone()), Some(made))
        } else {
            let masks = self.inputs(i);
            let built = propagate(g, layer, masking, inputs, &masks.built, output)?;
            let running = if recorded || !masks.differ() {
                built.clone()
            } else {
                propagate(g, layer, masking, inputs, &masks.running, output)?
            };
            (built, running)
        };
        self.built[i] = built;
        self.running[i] = running;
        Ok(())
    }

    /// Keras 3's `MultiHeadAttention` clearing the masks of the values layer `i` was given.
    /// Refused when a layer that reads one of those masks is neither before nor after it in
    /// every order Keras may run the model in: which of them sees the mask is not decided
    /// by the model.
    pub(crate) fn clear_inputs(
        &mut self,
        i: usize,
        spec_layers: &[Layer],
        maskings: &[Masking],
    ) -> Result<(), BuildError> {
        let sources: Vec<usize> = self.inbound[i].iter().flatten().copied().collect();
        for j in sources {
            if self.cleared[j] || self.running[j].is_none() {
                continue;
            }
            for c in self.consumers[j].clone() {
                if c == i
                    || !self.reads_running_masks(c, spec_layers, maskings)
                    || self.reaches(i, c)
                    || self.reaches(c, i)
                {
                    continue;
                }
                return Err(spec_layers[i].error(format!(
                    "clears the Keras mask of {:?} when it runs (as Keras 3 does), and {:?} \
                     reads that mask too with neither layer depending on the other: whether \
                     {:?} sees the mask depends on the order Keras runs them in, which the \
                     model does not fix",
                    spec_layers[j].name, spec_layers[c].name, spec_layers[c].name
                )));
            }
            self.cleared[j] = true;
        }
        Ok(())
    }

    fn reaches(&self, from: usize, to: usize) -> bool {
        let mut seen = vec![false; self.consumers.len()];
        let mut stack = vec![from];
        while let Some(k) = stack.pop() {
            if k == to {
                return true;
            }
            for &c in &self.consumers[k] {
                if !std::mem::replace(&mut seen[c], true) {
                    stack.push(c);
                }
            }
        }
        false
    }

    /// Whether what layer `c` computes, or what a layer after it computes, depends on the
    /// masks its inputs carry when it runs. Walked with a stack, not recursion: a hostile
    /// file may chain any number of layers.
    fn reads_running_masks(&mut self, c: usize, layers: &[Layer], maskings: &[Masking]) -> bool {
        let mut stack = vec![(c, false)];
        while let Some((k, consumers_known)) = stack.pop() {
            if self.reads[k].is_some() {
                continue;
            }
            let own = if takes_recorded_mask(&layers[k], maskings[k]) {
                Some(false)
            } else {
                match maskings[k] {
                    Masking::Attends { .. } | Masking::MergesWithOr | Masking::Unsupported => {
                        Some(true)
                    }
                    Masking::Drops | Masking::Consumes => Some(false),
                    Masking::Propagates
                    | Masking::Uses
                    | Masking::MergesWithAnd
                    | Masking::Concatenates => None,
                }
            };
            if let Some(reads) = own {
                self.reads[k] = Some(reads);
            } else if consumers_known {
                // The layers are acyclic, so every consumer was settled before this.
                let reads = self.consumers[k]
                    .iter()
                    .any(|&d| self.reads[d] == Some(true));
                self.reads[k] = Some(reads);
            } else {
                stack.push((k, true));
                stack.extend(self.consumers[k].iter().map(|&d| (d, false)));
            }
        }
        self.reads[c] == Some(true)
    }
}

/// Whether `layer` takes Keras' `mask` argument, which Keras 3 records and computes with
/// its own operations: the importer marks such a call with `"keras_mask"`, and a layer that
/// reads its mask for a last state or sequences takes one.
pub(crate) fn takes_recorded_mask(layer: &Layer, masking: Masking) -> bool {
    layer.config.get("keras_mask").is_some() || matches!(masking, Masking::Consumes | Masking::Uses)
}

/// Whether running a layer clears its inputs' masks (Keras 3.8+'s `MultiHeadAttention`).
pub(crate) fn clears_input_masks(masking: Masking) -> bool {
    matches!(masking, Masking::Attends { clears: true, .. })
}

/// The config keys in which the importer gives the masks Keras 3 (up to 3.7) recorded for
/// an attention layer's query, value and key.
pub(crate) const ATTENTION_MASK_RECORDS: [&str; 3] =
    ["keras_query_mask", "keras_value_mask", "keras_key_mask"];

/// For each of `layer`'s `n` inputs, whether it computes with the mask Keras recorded for
/// it rather than the one the input carries when it runs.
pub(crate) fn recorded_inputs(layer: &Layer, masking: Masking, n: usize) -> Vec<bool> {
    match masking {
        Masking::Attends { .. } => (0..n)
            .map(|k| {
                ATTENTION_MASK_RECORDS
                    .get(k)
                    .is_some_and(|key| layer.config.get(*key).is_some())
            })
            .collect(),
        _ => vec![takes_recorded_mask(layer, masking); n],
    }
}

/// The mask a layer that makes none hands on, from its inputs' masks.
fn propagate(
    g: &mut GraphBuilder,
    layer: &Layer,
    masking: Masking,
    inputs: &[ValueRef<'_>],
    masks: &[Option<&Mask>],
    output: &TensorInfo,
) -> Result<Option<Mask>, BuildError> {
    Ok(match masking {
        Masking::Propagates
        | Masking::Uses
        | Masking::Attends {
            passes_on: true, ..
        } => masks.first().copied().flatten().cloned(),
        Masking::Attends {
            passes_on: false, ..
        } => None,
        Masking::MergesWithOr => merged_mask(g, layer, masks),
        Masking::MergesWithAnd => all_of(g, layer, masks),
        Masking::Concatenates => concatenated_mask(g, layer, inputs, masks, output)?,
        Masking::Drops | Masking::Consumes | Masking::Unsupported => None,
    })
}

/// A Keras mask in the graph: its bool value, the layer that made it (for errors), and the
/// sources it ORs together (see [`crate::MadeMask::source`]).
#[derive(Debug, Clone)]
pub(crate) struct Mask {
    pub(crate) value: String,
    pub(crate) origin: String,
    pub(crate) ids: BTreeSet<String>,
}

/// A layer's config may hold `"keras_mask"`: the sources (see [`crate::MadeMask::source`])
/// Keras itself ORs into the mask this layer gets, as a Keras 3 file records it, with `[]`
/// for none. The Keras importer writes it; the mask that propagation brings must be the
/// same, or the model would compute over other steps than Keras does.
pub(crate) fn check_keras_mask(layer: &Layer, mask: Option<&Mask>) -> Result<(), BuildError> {
    check_recorded_mask(layer, "keras_mask", mask)
}

/// The check of [`check_keras_mask`] for the record under config key `key`.
pub(crate) fn check_recorded_mask(
    layer: &Layer,
    key: &str,
    mask: Option<&Mask>,
) -> Result<(), BuildError> {
    let Some(recorded) = layer.config.get(key) else {
        return Ok(());
    };
    let expected: BTreeSet<String> = recorded
        .as_array()
        .and_then(|ids| ids.iter().map(|v| v.as_str().map(str::to_string)).collect())
        .ok_or_else(|| {
            layer.error(format!(
                "config key {key:?} must be a list of mask sources, got {recorded}"
            ))
        })?;
    let empty = BTreeSet::new();
    let actual = mask.map_or(&empty, |m| &m.ids);
    if *actual == expected {
        return Ok(());
    }
    let describe = |ids: &BTreeSet<String>| {
        if ids.is_empty() {
            "no mask".to_string()
        } else {
            format!("the mask of {ids:?}")
        }
    };
    // "keras_value_mask" names the attention's value; "keras_mask" the layer's one input.
    let what = match key
        .strip_prefix("keras_")
        .and_then(|k| k.strip_suffix("_mask"))
    {
        Some(part) if !part.is_empty() => format!("this layer's {part}"),
        _ => "this layer".to_string(),
    };
    Err(layer.error(format!(
        "Keras computes {what} with {}, but the mask propagated to it is {}",
        describe(&expected),
        describe(actual)
    )))
}

/// Keras' `Merge.compute_mask`: the OR of the inputs' masks when every input has one.
fn merged_mask(g: &mut GraphBuilder, layer: &Layer, masks: &[Option<&Mask>]) -> Option<Mask> {
    let masks: Vec<&Mask> = masks.iter().copied().collect::<Option<_>>()?;
    let values: Vec<&str> = masks.iter().map(|m| m.value.as_str()).collect();
    let value = g.fold("Or", &values, &format!("{}/mask", layer.name))?;
    Some(Mask {
        value,
        origin: masks[0].origin.clone(),
        ids: masks.iter().flat_map(|m| m.ids.iter().cloned()).collect(),
    })
}

/// Keras 2's `_Merge.compute_mask`: the AND of the masks there are, or none.
fn all_of(g: &mut GraphBuilder, layer: &Layer, masks: &[Option<&Mask>]) -> Option<Mask> {
    let masks: Vec<&Mask> = masks.iter().copied().flatten().collect();
    let (first, rest) = masks.split_first()?;
    if rest.is_empty() {
        return Some((*first).clone());
    }
    let values: Vec<&str> = masks.iter().map(|m| m.value.as_str()).collect();
    let value = g.fold("And", &values, &format!("{}/mask", layer.name))?;
    let sources: Vec<String> = masks.iter().map(|m| mask_part(&m.ids)).collect();
    Some(Mask {
        value,
        origin: first.origin.clone(),
        ids: BTreeSet::from([format!("all of {}", sources.join(", "))]),
    })
}

/// Keras' `Concatenate.compute_mask`, when any input has a mask: each input's mask, or all
/// of its steps for an input without one, joined along the layer's axis. Masks lack the
/// last axis; along it Keras 3 ORs them (`any` over the axis), so one input without a mask
/// makes every step count, and Keras 2 ANDs them (`all`), so the masks there are.
fn concatenated_mask(
    g: &mut GraphBuilder,
    layer: &Layer,
    inputs: &[ValueRef<'_>],
    masks: &[Option<&Mask>],
    output: &TensorInfo,
) -> Result<Option<Mask>, BuildError> {
    let Some(first) = masks.iter().flatten().next() else {
        return Ok(None);
    };
    let origin = first.origin.clone();
    let axis = concatenate::axis(layer, output.rank())?;
    let keras_axis = Config::of(layer)?.i64_or("axis", -1)?;
    let name = format!("{}/mask", layer.name);
    let along_last = axis + 1 == output.rank();
    if along_last && saved_by_keras_2(layer) {
        return Ok(all_of(g, layer, masks));
    }
    let value = match masks.iter().position(Option::is_none) {
        Some(unmasked) if along_last => all_steps(g, inputs[unmasked].name, &name),
        _ if along_last => {
            let values: Vec<&str> = masks.iter().flatten().map(|m| m.value.as_str()).collect();
            g.fold("Or", &values, &name).unwrap_or_default()
        }
        _ => {
            let parts: Vec<String> = inputs
                .iter()
                .zip(masks)
                .map(|(input, mask)| match mask {
                    Some(mask) => mask.value.clone(),
                    None => all_steps(g, input.name, &name),
                })
                .collect();
            let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
            g.node("Concat", &parts, &name, vec![attr_int("axis", axis as i64)])
        }
    };
    let parts: Vec<Option<Vec<String>>> = masks
        .iter()
        .map(|mask| mask.map(|m| m.ids.iter().cloned().collect()))
        .collect();
    Ok(Some(Mask {
        value,
        origin,
        ids: BTreeSet::from([concatenated_mask_source(keras_axis, &parts)]),
    }))
}

/// A mask of `value`'s steps (its shape without the last axis) that skips none.
fn all_steps(g: &mut GraphBuilder, value: &str, name: &str) -> String {
    let shape = g.node("Shape", &[value], name, vec![]);
    let start = g.int64s(&format!("{name}/start"), &[0]);
    let end = g.int64s(&format!("{name}/end"), &[-1]);
    let steps = g.node("Slice", &[&shape, &start, &end], name, vec![]);
    let all = g.scalar(&format!("{name}/all"), DType::Bool, 1.0);
    g.node("Expand", &[&all, &steps], name, vec![])
}
