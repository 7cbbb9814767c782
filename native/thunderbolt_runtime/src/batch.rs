//! What a serving batches and how: the batch key of a request, the merged
//! inputs of a batch, and how each output is cut back into per-request
//! pieces. Used with [`crate::BatchQueue`]; independent of the BEAM.
//!
//! Requests merge only when their keys are equal. A key holds the requested
//! outputs and one slot per model input:
//!
//! * an input whose leading dimension is dynamic in the model is the batch
//!   axis: its type and non-batch shape are in the key, and the requests'
//!   row-major data are concatenated;
//! * an input with a fixed leading dimension (such as `cerebros_mini.onnx`'s
//!   positional table) must be equal, bytes and all, in every request of a
//!   batch, and is fed once.
//!
//! A model without any batch-axis input gives every request a key of its
//! own (see [`BatchKey::new`]'s `alone`).

use std::ops::Range;

use crate::element_type::ElementType;
use crate::error::{Result, RuntimeError};
use crate::model::ValueInfo;
use crate::tensor::TensorView;

/// One model input's part of a batch key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Slot {
    /// Batch axis: the rows are stacked; `rest` is the shape after axis 0.
    Rows { ty: ElementType, rest: Vec<i64> },
    /// Fed as is; only identical tensors share a batch.
    Shared {
        ty: ElementType,
        shape: Vec<i64>,
        data: Vec<u8>,
    },
}

/// Which requests may run as one call. See the module docs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BatchKey {
    pub outputs: Option<Vec<usize>>,
    pub slots: Vec<Slot>,
    /// Set when the model has no batch-axis input: a unique value, so the
    /// request is never merged.
    pub alone: Option<u64>,
}

/// A request's own data: its row count and, for each `Rows` slot in input
/// order, its rows, copied into aligned storage.
#[derive(Debug)]
pub struct RowData {
    pub rows: usize,
    pub columns: Vec<AlignedBytes>,
}

/// Bytes stored in `u64` words, so that ONNX Runtime can read any element
/// type in place.
#[derive(Clone, Debug, Default)]
pub struct AlignedBytes {
    words: Vec<u64>,
    len: usize,
}

impl AlignedBytes {
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            words: Vec::with_capacity(bytes.div_ceil(8)),
            len: 0,
        }
    }

    pub fn from_slice(bytes: &[u8]) -> Self {
        let mut out = Self::with_capacity(bytes.len());
        out.extend(bytes);
        out
    }

    pub fn extend(&mut self, bytes: &[u8]) {
        let new_len = self.len + bytes.len();
        self.words.resize(new_len.div_ceil(8), 0);
        let start = self.len;
        self.len = new_len;
        self.as_mut_slice()[start..].copy_from_slice(bytes);
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: u64 has no padding, any byte pattern is a valid u8, and
        // `len` never exceeds the words' byte length.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr() as *const u8, self.len) }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above; the borrow is unique.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr() as *mut u8, self.len) }
    }
}

impl BatchKey {
    /// Forms the key and copies the row data of one request. `batch_axes`
    /// says, per model input, whether its leading dimension is dynamic.
    /// `alone` is called, for a unique value, only when no input is.
    /// The inputs were checked against the model by the caller; what is
    /// checked here is what merging relies on: one input per model input,
    /// a leading dimension on each batch-axis input, equal on all of them,
    /// and at least one row.
    pub fn new(
        batch_axes: &[bool],
        inputs: &[TensorView<'_>],
        outputs: Option<Vec<usize>>,
        alone: impl FnOnce() -> u64,
    ) -> Result<(BatchKey, RowData)> {
        if inputs.len() != batch_axes.len() {
            return Err(RuntimeError::InvalidInput(format!(
                "the model takes {} input(s), got {}",
                batch_axes.len(),
                inputs.len()
            )));
        }
        let mut slots = Vec::with_capacity(inputs.len());
        let mut columns = Vec::new();
        let mut rows: Option<usize> = None;
        for (i, (view, &batch_axis)) in inputs.iter().zip(batch_axes).enumerate() {
            if !batch_axis {
                slots.push(Slot::Shared {
                    ty: view.element_type(),
                    shape: view.shape().to_vec(),
                    data: view.data().to_vec(),
                });
                continue;
            }
            let Some((&n, rest)) = view.shape().split_first() else {
                return Err(RuntimeError::InvalidInput(format!(
                    "input {i} needs a batch axis, got a scalar"
                )));
            };
            let n = usize::try_from(n).unwrap_or(0);
            match rows {
                Some(r) if r != n => {
                    return Err(RuntimeError::InvalidInput(format!(
                        "inputs disagree on the batch size: input {i} has {n} rows, an earlier input {r}"
                    )))
                }
                _ => rows = Some(n),
            }
            slots.push(Slot::Rows {
                ty: view.element_type(),
                rest: rest.to_vec(),
            });
            columns.push(AlignedBytes::from_slice(view.data()));
        }
        let (rows, alone) = match rows {
            Some(0) => {
                return Err(RuntimeError::InvalidInput(
                    "a request needs at least one row".into(),
                ))
            }
            Some(n) => (n, None),
            None => (1, Some(alone())),
        };
        let key = BatchKey {
            outputs,
            slots,
            alone,
        };
        Ok((key, RowData { rows, columns }))
    }

    /// The model inputs of a batch, in input order: each `Rows` slot's
    /// columns concatenated in request order, each `Shared` slot as it is.
    pub fn concat(&self, requests: &[&RowData]) -> Vec<BatchInput<'_>> {
        let total: usize = requests.iter().map(|r| r.rows).sum();
        let mut column = 0;
        self.slots
            .iter()
            .map(|slot| match slot {
                Slot::Rows { ty, rest } => {
                    let bytes = requests.iter().map(|r| r.columns[column].len).sum();
                    let mut data = AlignedBytes::with_capacity(bytes);
                    for request in requests {
                        data.extend(request.columns[column].as_slice());
                    }
                    column += 1;
                    let mut shape = Vec::with_capacity(rest.len() + 1);
                    shape.push(total as i64);
                    shape.extend_from_slice(rest);
                    BatchInput::Owned(*ty, shape, data)
                }
                Slot::Shared { ty, shape, data } => BatchInput::Shared(*ty, shape, data),
            })
            .collect()
    }
}

/// One merged model input: stacked rows, or a shared tensor from the key.
#[derive(Debug)]
pub enum BatchInput<'k> {
    Owned(ElementType, Vec<i64>, AlignedBytes),
    Shared(ElementType, &'k [i64], &'k [u8]),
}

impl BatchInput<'_> {
    pub fn view(&self) -> Result<TensorView<'_>> {
        match self {
            BatchInput::Owned(ty, shape, data) => TensorView::new(*ty, shape, data.as_slice()),
            BatchInput::Shared(ty, shape, data) => TensorView::new(*ty, shape, data),
        }
    }
}

/// How one output of a batch is handed back: per request, its shape and
/// its byte range of the output's data. An output whose leading dimension
/// is dynamic in the model is cut by row counts; any other does not depend
/// on the batch and every request gets all of it. `None` when a batch-axis
/// output does not have one row per input row, so it cannot be cut.
pub fn split(
    spec: &ValueInfo,
    shape: &[i64],
    data_len: usize,
    row_counts: &[usize],
) -> Option<Vec<(Vec<i64>, Range<usize>)>> {
    let batch_axis = matches!(spec.shape.first(), Some(None));
    if !batch_axis {
        return Some(vec![(shape.to_vec(), 0..data_len); row_counts.len()]);
    }
    let total: usize = row_counts.iter().sum();
    if shape.first().copied() != Some(total as i64) || total == 0 {
        return None;
    }
    let row_bytes = data_len / total;
    let mut offset = 0;
    Some(
        row_counts
            .iter()
            .map(|&rows| {
                let mut piece = shape.to_vec();
                piece[0] = rows as i64;
                let range = offset..offset + rows * row_bytes;
                offset = range.end;
                (piece, range)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32s(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_ne_bytes()).collect()
    }

    fn key(
        axes: &[bool],
        inputs: &[(ElementType, &[i64], &[u8])],
        outputs: Option<Vec<usize>>,
    ) -> Result<(BatchKey, RowData)> {
        let views: Vec<TensorView> = inputs
            .iter()
            .map(|(ty, shape, data)| TensorView::new(*ty, shape, data).unwrap())
            .collect();
        BatchKey::new(axes, &views, outputs, || 99)
    }

    #[test]
    fn the_non_batch_shape_is_in_the_key_the_row_count_is_not() {
        let three = f32s(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let (a, ra) = key(&[true], &[(ElementType::F32, &[3, 2], &three)], None).unwrap();
        let (b, rb) = key(&[true], &[(ElementType::F32, &[1, 2], &three[..8])], None).unwrap();
        let (c, _) = key(&[true], &[(ElementType::F32, &[2, 3], &three)], None).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!((ra.rows, rb.rows), (3, 1));
        assert_eq!(ra.columns[0].as_slice(), &three[..]);
    }

    #[test]
    fn types_and_requested_outputs_are_in_the_key() {
        let data = [0u8; 8];
        let (f, _) = key(&[true], &[(ElementType::F32, &[1, 2], &data)], None).unwrap();
        let (s, _) = key(&[true], &[(ElementType::S32, &[1, 2], &data)], None).unwrap();
        let (o, _) = key(
            &[true],
            &[(ElementType::F32, &[1, 2], &data)],
            Some(vec![1]),
        )
        .unwrap();
        assert_ne!(f, s);
        assert_ne!(f, o);
    }

    #[test]
    fn a_fixed_leading_input_is_shared_only_when_equal() {
        let x = f32s(&[1.0, 2.0]);
        let w = f32s(&[1.0, 2.0, 3.0, 4.0]);
        let other_w = f32s(&[1.0, 2.0, 3.0, 5.0]);
        let with = |w: &[u8]| {
            key(
                &[true, false],
                &[
                    (ElementType::F32, &[1, 2], &x),
                    (ElementType::F32, &[2, 2], w),
                ],
                None,
            )
            .unwrap()
        };
        let (a, ra) = with(&w);
        let (b, _) = with(&w);
        let (c, _) = with(&other_w);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(ra.columns.len(), 1, "only batch-axis inputs carry rows");
    }

    #[test]
    fn without_a_batch_axis_every_request_is_alone() {
        let w = f32s(&[1.0, 2.0]);
        let (k, rows) = key(&[false], &[(ElementType::F32, &[2], &w)], None).unwrap();
        assert_eq!((k.alone, rows.rows), (Some(99), 1));
    }

    #[test]
    fn refuses_what_merging_cannot_handle() {
        let data = f32s(&[1.0, 2.0, 3.0, 4.0]);
        let disagree = key(
            &[true, true],
            &[
                (ElementType::F32, &[1, 4], &data),
                (ElementType::F32, &[2, 2], &data),
            ],
            None,
        );
        assert!(disagree.unwrap_err().to_string().contains("disagree"));
        let empty = key(&[true], &[(ElementType::F32, &[0, 2], &[])], None);
        assert!(empty.unwrap_err().to_string().contains("at least one row"));
        let scalar = key(&[true], &[(ElementType::F32, &[], &data[..4])], None);
        assert!(scalar.is_err());
        assert!(key(&[true, true], &[(ElementType::F32, &[1, 4], &data)], None).is_err());
    }

    #[test]
    fn concat_stacks_rows_in_request_order_and_feeds_shared_inputs_once() {
        let w = f32s(&[9.0, 9.0]);
        let a = f32s(&[1.0, 2.0]);
        let b = f32s(&[3.0, 4.0, 5.0, 6.0]);
        let (k, ra) = key(
            &[true, false],
            &[
                (ElementType::F32, &[1, 2], &a),
                (ElementType::F32, &[2], &w),
            ],
            None,
        )
        .unwrap();
        let (_, rb) = key(
            &[true, false],
            &[
                (ElementType::F32, &[2, 2], &b),
                (ElementType::F32, &[2], &w),
            ],
            None,
        )
        .unwrap();
        let inputs = k.concat(&[&rb, &ra]);
        let x = inputs[0].view().unwrap();
        assert_eq!(x.shape(), &[3, 2]);
        assert_eq!(x.data(), &f32s(&[3.0, 4.0, 5.0, 6.0, 1.0, 2.0])[..]);
        assert_eq!(x.data().as_ptr() as usize % 8, 0);
        let shared = inputs[1].view().unwrap();
        assert_eq!((shared.shape(), shared.data()), (&[2i64][..], &w[..]));
    }

    fn spec(shape: Vec<Option<i64>>) -> ValueInfo {
        ValueInfo {
            name: "y".into(),
            element_type: Some(ElementType::F32),
            shape,
        }
    }

    #[test]
    fn split_cuts_batch_outputs_by_rows_and_shares_the_others() {
        let pieces = split(&spec(vec![None, Some(2)]), &[3, 2], 24, &[1, 2]).unwrap();
        assert_eq!(pieces, vec![(vec![1, 2], 0..8), (vec![2, 2], 8..24)]);

        let fixed = split(&spec(vec![Some(2)]), &[2], 8, &[1, 2, 1]).unwrap();
        assert_eq!(fixed, vec![(vec![2], 0..8); 3]);
    }

    #[test]
    fn split_refuses_a_batch_output_without_one_row_per_input_row() {
        assert_eq!(split(&spec(vec![None, Some(1)]), &[2, 1], 8, &[1, 2]), None);
    }
}
