//! Keras 3's `to_snake_case`, which names the weight groups of a `.keras` file
//! (`layers/<snake_case class name>[_N]/vars/<i>`).

/// A port of `keras.src.utils.naming.to_snake_case`:
///
/// ```python
/// name = re.sub(r"\W+", "", name)
/// name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
/// name = re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()
/// ```
pub fn to_snake_case(name: &str) -> String {
    let word: Vec<char> = name
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '_')
        .collect();

    // (.)([A-Z][a-z]+) -> \1_\2, scanning left to right without overlaps.
    let mut first = Vec::with_capacity(word.len() + 8);
    let mut i = 0;
    while i < word.len() {
        let upper_then_lower = i + 2 < word.len()
            && word[i + 1].is_ascii_uppercase()
            && word[i + 2].is_ascii_lowercase();
        if upper_then_lower {
            let mut end = i + 3;
            while end < word.len() && word[end].is_ascii_lowercase() {
                end += 1;
            }
            first.push(word[i]);
            first.push('_');
            first.extend_from_slice(&word[i + 1..end]);
            i = end;
        } else {
            first.push(word[i]);
            i += 1;
        }
    }

    // ([a-z])([A-Z]) -> \1_\2, then lower-case.
    let mut out = String::with_capacity(first.len() + 8);
    let mut i = 0;
    while i < first.len() {
        if i + 1 < first.len() && first[i].is_ascii_lowercase() && first[i + 1].is_ascii_uppercase()
        {
            out.push(first[i]);
            out.push('_');
            out.push(first[i + 1]);
            i += 2;
        } else {
            out.push(first[i]);
            i += 1;
        }
    }
    out.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::to_snake_case;

    /// Pairs printed by `keras.src.utils.naming.to_snake_case` (Keras 3.12).
    #[test]
    fn matches_keras() {
        let cases = [
            ("Dense", "dense"),
            ("InputLayer", "input_layer"),
            ("GlobalAveragePooling1D", "global_average_pooling1d"),
            ("BatchNormalization", "batch_normalization"),
            ("InterleavedRoPE", "interleaved_ro_pe"),
            ("Functional", "functional"),
            ("Sequential", "sequential"),
            ("ABCDef", "abc_def"),
            ("LSTMCell", "lstm_cell"),
            ("Conv2DTranspose", "conv2d_transpose"),
            ("PReLU", "p_re_lu"),
            ("My-Layer", "my_layer"),
            ("HTTPServer2Go", "http_server2_go"),
            ("ReLU", "re_lu"),
            ("aBcD", "a_bc_d"),
            ("Über2Layer", "über2_layer"),
        ];
        for (name, expected) in cases {
            assert_eq!(to_snake_case(name), expected, "{name}");
        }
    }
}
