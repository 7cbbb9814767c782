//! Static shapes and types of graph values, used to validate layers before anything is
//! emitted. `None` is a dimension only known at run time (the batch dimension, usually).

use crate::tensor::DType;

/// A dimension: `Some(n)` when known while building, `None` when dynamic.
pub type Dim = Option<usize>;

/// Element type and shape of a value in the graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub dtype: DType,
    pub shape: Vec<Dim>,
}

impl TensorInfo {
    pub fn new(dtype: DType, shape: Vec<Dim>) -> Self {
        TensorInfo { dtype, shape }
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }
}

/// Renders a shape the way Keras prints it: `(None, 40, 64)`.
pub fn format_shape(shape: &[Dim]) -> String {
    let dims: Vec<String> = shape
        .iter()
        .map(|d| d.map_or_else(|| "None".to_string(), |n| n.to_string()))
        .collect();
    if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    }
}

/// Maps a possibly negative Keras axis onto `0..rank`.
pub fn normalize_axis(axis: i64, rank: usize) -> Option<usize> {
    let rank = i64::try_from(rank).ok()?;
    let axis = if axis < 0 { axis + rank } else { axis };
    (0..rank).contains(&axis).then_some(axis as usize)
}

/// NumPy broadcasting of two shapes, aligned on the right. A dynamic dimension against a
/// static `n > 1` gives `n` (the run time checks the rest); `None` when the shapes conflict.
pub fn broadcast(a: &[Dim], b: &[Dim]) -> Option<Vec<Dim>> {
    let rank = a.len().max(b.len());
    let mut out = Vec::with_capacity(rank);
    for i in 0..rank {
        let da = (i + a.len()).checked_sub(rank).map_or(Some(1), |j| a[j]);
        let db = (i + b.len()).checked_sub(rank).map_or(Some(1), |j| b[j]);
        out.push(match (da, db) {
            (Some(1), d) | (d, Some(1)) => d,
            (Some(x), Some(y)) if x == y => Some(x),
            (Some(_), Some(_)) => return None,
            (None, None) => None,
            (None, Some(n)) | (Some(n), None) => Some(n),
        });
    }
    Some(out)
}

/// A shape known in full (a weight's, a constant's) as dimensions.
pub fn static_dims(shape: &[usize]) -> Vec<Dim> {
    shape.iter().map(|&d| Some(d)).collect()
}

/// Product of static dimensions; `None` if any is dynamic (or on overflow).
pub fn static_product(dims: &[Dim]) -> Option<usize> {
    dims.iter()
        .try_fold(1usize, |acc, d| d.and_then(|n| acc.checked_mul(n)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_negative_axes_and_rejects_out_of_range() {
        assert_eq!(normalize_axis(-1, 3), Some(2));
        assert_eq!(normalize_axis(0, 3), Some(0));
        assert_eq!(normalize_axis(-3, 3), Some(0));
        assert_eq!(normalize_axis(3, 3), None);
        assert_eq!(normalize_axis(-4, 3), None);
    }

    #[test]
    fn broadcasts_like_numpy() {
        assert_eq!(
            broadcast(&[None, Some(5), Some(4)], &[Some(5), Some(4)]),
            Some(vec![None, Some(5), Some(4)])
        );
        assert_eq!(
            broadcast(&[Some(1), Some(4)], &[Some(3), Some(1)]),
            Some(vec![Some(3), Some(4)])
        );
        assert_eq!(
            broadcast(&[None, Some(4)], &[Some(3), Some(4)]),
            Some(vec![Some(3), Some(4)])
        );
        assert_eq!(broadcast(&[Some(2)], &[Some(3)]), None);
    }

    #[test]
    fn formats_like_keras() {
        assert_eq!(format_shape(&[None, Some(40)]), "(None, 40)");
        assert_eq!(format_shape(&[Some(3)]), "(3,)");
    }
}
