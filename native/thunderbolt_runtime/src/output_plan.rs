//! What a model's outputs looked like for recent input shapes, so that the
//! next run with the same input shapes can give ONNX Runtime buffers to
//! write its outputs into, instead of copying them out of its own.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use smallvec::SmallVec;

use crate::element_type::ElementType;
use crate::model::Dims;

/// One output as the last run with these input shapes produced it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PlannedOutput {
    pub element_type: ElementType,
    pub shape: Dims,
    pub bytes: usize,
}

#[derive(Clone, Debug)]
struct Entry {
    inputs: SmallVec<[Dims; 4]>,
    selected: SmallVec<[usize; 4]>,
    outputs: SmallVec<[PlannedOutput; 4]>,
}

/// A few recent entries: a serving alternates between a handful of batch
/// sizes, and a direct caller usually sends one shape.
const ENTRIES: usize = 4;

#[derive(Debug, Default)]
pub(crate) struct OutputPlans {
    entries: Mutex<(SmallVec<[Entry; ENTRIES]>, usize)>,
    disabled: AtomicBool,
}

impl OutputPlans {
    /// The outputs last seen for these input shapes and this selection.
    /// `None` when unknown, or when another thread holds the plans: a run
    /// never waits for them.
    pub fn lookup(
        &self,
        inputs: &[&[i64]],
        selected: &[usize],
    ) -> Option<SmallVec<[PlannedOutput; 4]>> {
        if self.disabled.load(Ordering::Relaxed) {
            return None;
        }
        let entries = self.entries.try_lock().ok()?;
        entries
            .0
            .iter()
            .find(|e| e.matches(inputs, selected))
            .map(|e| e.outputs.clone())
    }

    /// Records what a run produced, replacing the oldest entry when full.
    pub fn record(&self, inputs: &[&[i64]], selected: &[usize], outputs: &[PlannedOutput]) {
        if self.disabled.load(Ordering::Relaxed) {
            return;
        }
        let Ok(mut guard) = self.entries.try_lock() else {
            return;
        };
        let (entries, next) = &mut *guard;
        if let Some(e) = entries.iter_mut().find(|e| e.matches(inputs, selected)) {
            if e.outputs.as_slice() != outputs {
                e.outputs = outputs.iter().cloned().collect();
            }
            return;
        }
        let entry = Entry {
            inputs: inputs.iter().map(|s| Dims::from_slice(s)).collect(),
            selected: SmallVec::from_slice(selected),
            outputs: outputs.iter().cloned().collect(),
        };
        if entries.len() < ENTRIES {
            entries.push(entry);
        } else {
            entries[*next] = entry;
            *next = (*next + 1) % ENTRIES;
        }
    }

    /// Stops planning for good, after a plan turned out wrong (an output
    /// whose shape depends on the input's values, not only its shape).
    pub fn disable(&self) {
        self.disabled.store(true, Ordering::Relaxed);
        if let Ok(mut guard) = self.entries.lock() {
            guard.0.clear();
        }
    }
}

impl Entry {
    fn matches(&self, inputs: &[&[i64]], selected: &[usize]) -> bool {
        self.selected.as_slice() == selected
            && self.inputs.len() == inputs.len()
            && self
                .inputs
                .iter()
                .zip(inputs)
                .all(|(a, b)| a.as_slice() == *b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(shape: &[i64]) -> PlannedOutput {
        PlannedOutput {
            element_type: ElementType::F32,
            shape: Dims::from_slice(shape),
            bytes: shape.iter().product::<i64>() as usize * 4,
        }
    }

    #[test]
    fn remembers_by_input_shapes_and_selection() {
        let plans = OutputPlans::default();
        assert_eq!(plans.lookup(&[&[1, 40]], &[0]), None);
        plans.record(&[&[1, 40]], &[0], &[out(&[1, 1000])]);
        assert_eq!(
            plans.lookup(&[&[1, 40]], &[0]).unwrap().as_slice(),
            &[out(&[1, 1000])]
        );
        assert_eq!(plans.lookup(&[&[2, 40]], &[0]), None);
        assert_eq!(plans.lookup(&[&[1, 40]], &[1]), None);
        plans.record(&[&[1, 40]], &[0], &[out(&[1, 7])]);
        assert_eq!(
            plans.lookup(&[&[1, 40]], &[0]).unwrap().as_slice(),
            &[out(&[1, 7])]
        );
        plans.disable();
        assert_eq!(plans.lookup(&[&[1, 40]], &[0]), None);
        plans.record(&[&[1, 40]], &[0], &[out(&[1, 1000])]);
        assert_eq!(plans.lookup(&[&[1, 40]], &[0]), None, "for good");
    }

    #[test]
    fn keeps_the_most_recent_few() {
        let plans = OutputPlans::default();
        for rows in 1..=(ENTRIES as i64 + 1) {
            plans.record(&[&[rows, 40]], &[0], &[out(&[rows, 1000])]);
        }
        assert_eq!(plans.lookup(&[&[1, 40]], &[0]), None, "the oldest went");
        for rows in 2..=(ENTRIES as i64 + 1) {
            assert!(plans.lookup(&[&[rows, 40]], &[0]).is_some());
        }
    }
}
