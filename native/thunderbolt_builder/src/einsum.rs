//! Einsum equations as NumPy and JAX read them (`keras.ops.einsum`, `EinsumDense`): their
//! terms, the shape they give, and the explicit equation ONNX `Einsum` takes.
//!
//! Spaces are ignored, labels are ASCII letters, each term may hold one `...`, and without
//! `->` the output is the labels used once, in ASCII order, after the broadcast `...` axes
//! (NumPy's implicit mode). Not taken, each with an error: a label whose static sizes
//! differ between operands (NumPy broadcasts a size of 1 there, ONNX Runtime does not),
//! and `...` axes an explicit output leaves out (JAX sums them, NumPy refuses).

use crate::shape::{broadcast, format_shape, Dim};

/// One side of an equation: its labels, and where `...` stands among them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Term {
    labels: Vec<u8>,
    ellipsis: Option<usize>,
}

impl Term {
    fn parse(text: &str) -> Result<Term, String> {
        let mut labels = Vec::with_capacity(text.len());
        let mut ellipsis = None;
        let mut rest = text;
        while let Some(c) = rest.chars().next() {
            if let Some(tail) = rest.strip_prefix("...") {
                if ellipsis.replace(labels.len()).is_some() {
                    return Err(format!("term {text:?} has more than one \"...\""));
                }
                rest = tail;
            } else if c.is_ascii_alphabetic() {
                labels.push(c as u8);
                rest = &rest[1..];
            } else {
                return Err(format!(
                    "term {text:?} holds {c:?}; labels are ASCII letters"
                ));
            }
        }
        Ok(Term { labels, ellipsis })
    }

    fn render(&self) -> String {
        let mut out: String = self.labels.iter().map(|&c| c as char).collect();
        if let Some(at) = self.ellipsis {
            out.insert_str(at, "...");
        }
        out
    }
}

/// A parsed equation whose output is always explicit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Equation {
    inputs: Vec<Term>,
    output: Term,
}

impl Equation {
    /// Parses `equation` for `operands` operands.
    pub fn parse(equation: &str, operands: usize) -> Result<Equation, String> {
        let text: String = equation.chars().filter(|c| *c != ' ').collect();
        let (lhs, rhs) = match text.split_once("->") {
            Some((lhs, rhs)) => (lhs, Some(rhs)),
            None => (text.as_str(), None),
        };
        let inputs = lhs
            .split(',')
            .map(Term::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if inputs.len() != operands {
            return Err(format!(
                "equation {equation:?} has {} input term(s) for {operands} operand(s)",
                inputs.len()
            ));
        }
        let output = match rhs {
            Some(rhs) => {
                let output = Term::parse(rhs)?;
                for (i, c) in output.labels.iter().enumerate() {
                    if output.labels[..i].contains(c) {
                        return Err(format!(
                            "equation {equation:?} names output label {:?} twice",
                            *c as char
                        ));
                    }
                    if !inputs.iter().any(|t| t.labels.contains(c)) {
                        return Err(format!(
                            "equation {equation:?}: output label {:?} is in no input",
                            *c as char
                        ));
                    }
                }
                output
            }
            None => {
                let mut once: Vec<u8> = inputs
                    .iter()
                    .flat_map(|t| t.labels.iter().copied())
                    .collect();
                once.sort_unstable();
                let counted = once.clone();
                once.dedup();
                once.retain(|c| counted.iter().filter(|d| *d == c).count() == 1);
                let ellipsis = inputs.iter().any(|t| t.ellipsis.is_some()).then_some(0);
                Term {
                    labels: once,
                    ellipsis,
                }
            }
        };
        Ok(Equation { inputs, output })
    }

    /// The equation with its output spelled out, as ONNX `Einsum` takes it.
    pub fn render(&self) -> String {
        let inputs: Vec<String> = self.inputs.iter().map(Term::render).collect();
        format!("{}->{}", inputs.join(","), self.output.render())
    }

    /// The shape of the result for operands of these shapes.
    pub fn output_shape(&self, shapes: &[&[Dim]]) -> Result<Vec<Dim>, String> {
        let mut sizes: [Option<Dim>; 128] = [None; 128];
        let mut broadcast_axes: Vec<Dim> = Vec::new();
        for (term, shape) in self.inputs.iter().zip(shapes) {
            let extra = shape
                .len()
                .checked_sub(term.labels.len())
                .filter(|&n| n == 0 || term.ellipsis.is_some());
            let Some(extra) = extra else {
                return Err(format!(
                    "term {:?} does not fit an operand of shape {}",
                    term.render(),
                    format_shape(shape)
                ));
            };
            let at = term.ellipsis.unwrap_or(0);
            let axes = &shape[at..at + extra];
            broadcast_axes = broadcast(&broadcast_axes, axes).ok_or_else(|| {
                format!(
                    "the \"...\" axes {} do not broadcast with {}",
                    format_shape(axes),
                    format_shape(&broadcast_axes)
                )
            })?;
            for (i, &label) in term.labels.iter().enumerate() {
                let dim = shape[if i < at { i } else { i + extra }];
                let known = &mut sizes[label as usize];
                *known = match (*known, dim) {
                    (None, d) => Some(d),
                    (Some(Some(a)), Some(b)) if a != b => {
                        return Err(format!(
                            "label {:?} has size {a} in one operand and {b} in another",
                            label as char
                        ))
                    }
                    (Some(None), d) => Some(d),
                    (Some(known), _) => Some(known),
                };
            }
        }
        if self.output.ellipsis.is_none() && broadcast_axes.iter().any(|&d| d != Some(1)) {
            return Err(format!(
                "the output {:?} leaves out the \"...\" axes {}",
                self.output.render(),
                format_shape(&broadcast_axes)
            ));
        }
        let mut out: Vec<Dim> = self
            .output
            .labels
            .iter()
            .map(|&c| sizes[c as usize].flatten())
            .collect();
        if let Some(at) = self.output.ellipsis {
            out.splice(at..at, broadcast_axes);
        }
        Ok(out)
    }

    /// Whether the equation is `x @ kernel` over its last axis: two operands, the second
    /// two labels `cd`, the first ending in `c` (and no `c` or `d` elsewhere), and the
    /// output the first's labels with `d` for `c`. `MatMul` does that without `Einsum`'s
    /// transposes.
    pub fn is_matmul(&self) -> bool {
        let [x, kernel] = self.inputs.as_slice() else {
            return false;
        };
        let [c, d] = kernel.labels.as_slice() else {
            return false;
        };
        if kernel.ellipsis.is_some() || c == d {
            return false;
        }
        let Some((&last, lead)) = x.labels.split_last() else {
            return false;
        };
        // `...` must sit before the contracted label.
        if last != *c || lead.contains(c) || lead.contains(d) || x.ellipsis > Some(lead.len()) {
            return false;
        }
        let mut expected = lead.to_vec();
        expected.push(*d);
        self.output.labels == expected && self.output.ellipsis == x.ellipsis
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape_of(eq: &str, shapes: &[&[Dim]]) -> Result<Vec<Dim>, String> {
        Equation::parse(eq, shapes.len())?.output_shape(shapes)
    }

    #[test]
    fn explicit_and_implicit_outputs() {
        let e = Equation::parse("ij , jk", 2).unwrap();
        assert_eq!(e.render(), "ij,jk->ik");
        assert_eq!(Equation::parse("ba,ab", 2).unwrap().render(), "ba,ab->");
        assert_eq!(Equation::parse("Ab,bc", 2).unwrap().render(), "Ab,bc->Ac");
        assert_eq!(
            Equation::parse("...ij,...jk", 2).unwrap().render(),
            "...ij,...jk->...ik"
        );
        assert_eq!(
            shape_of(
                "btc,bsc->bts",
                &[&[None, Some(5), Some(8)], &[None, Some(5), Some(8)]]
            ),
            Ok(vec![None, Some(5), Some(5)])
        );
    }

    #[test]
    fn ellipsis_axes_broadcast() {
        assert_eq!(
            shape_of(
                "...i,...i->...",
                &[&[Some(2), Some(1), Some(3)], &[Some(4), Some(3)]]
            ),
            Ok(vec![Some(2), Some(4)])
        );
        assert_eq!(
            shape_of(
                "...c,cde->...de",
                &[&[None, Some(5), Some(8)], &[Some(8), Some(3), Some(2)]]
            ),
            Ok(vec![None, Some(5), Some(3), Some(2)])
        );
        assert_eq!(
            shape_of(
                "ab...,bc->ac...",
                &[&[None, Some(8), Some(4)], &[Some(8), Some(2)]]
            ),
            Ok(vec![None, Some(2), Some(4)])
        );
    }

    #[test]
    fn refusals_say_why() {
        let err = |eq: &str, shapes: &[&[Dim]]| shape_of(eq, shapes).unwrap_err();
        assert!(
            err("ij,jk->ik", &[&[Some(2), Some(1)], &[Some(3), Some(4)]]).contains("label 'j'")
        );
        assert!(err("...i->i", &[&[Some(2), Some(3)]]).contains("leaves out"));
        assert!(err("ij->i", &[&[Some(2), Some(3), Some(4)]]).contains("does not fit"));
        assert!(Equation::parse("ij->ii", 1).unwrap_err().contains("twice"));
        assert!(Equation::parse("ij->k", 1)
            .unwrap_err()
            .contains("in no input"));
        assert!(Equation::parse("i.j->i", 1)
            .unwrap_err()
            .contains("ASCII letters"));
        assert!(Equation::parse("...i...->i", 1)
            .unwrap_err()
            .contains("more than one"));
        assert!(Equation::parse("ij,jk->ik", 1)
            .unwrap_err()
            .contains("2 input term(s)"));
        assert!(Equation::parse("ij->é", 1).unwrap_err().contains("ASCII"));
    }

    #[test]
    fn diagonal_labels_agree() {
        assert_eq!(shape_of("ii->i", &[&[Some(3), Some(3)]]), Ok(vec![Some(3)]));
        assert!(shape_of("ii->i", &[&[Some(3), Some(4)]]).is_err());
    }

    #[test]
    fn matmul_form() {
        let m = |eq: &str| Equation::parse(eq, 2).unwrap().is_matmul();
        assert!(m("abc,cd->abd"));
        assert!(m("...c,cd->...d"));
        assert!(m("bc,cd->bd"));
        assert!(!m("abc,cde->abde"));
        assert!(!m("abc,cd->adb"));
        assert!(!m("abc,bd->acd"));
        assert!(!m("abc,cd->abdc") && !m("acc,cd->acd"));
        assert!(m("ab...c,cd->ab...d"));
        assert!(!m("abc...,cd->abd..."));
    }
}
