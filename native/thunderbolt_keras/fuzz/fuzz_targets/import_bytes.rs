//! Any bytes as a model file (`.keras` zip or legacy `.h5`), through the whole conversion.
#![no_main]

use libfuzzer_sys::fuzz_target;
use thunderbolt_keras::{convert, ImportOptions};

fuzz_target!(|data: &[u8]| {
    let _ = convert(data.to_vec(), &ImportOptions::default());
});
