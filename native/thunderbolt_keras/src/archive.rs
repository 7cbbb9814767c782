//! Opening a saved model: a Keras 3 `.keras` zip (`config.json` + `model.weights.h5`) or a
//! legacy whole-model HDF5 file (`model_config` attribute + `model_weights` group).

use crate::config::{parse_model_json, ModelConfig};
use crate::error::{ImportError, Result};
use crate::weights::{WeightFile, WeightScope};
use std::io::{Cursor, Read};

const ZIP_MAGIC: &[u8] = b"PK\x03\x04";
const EMPTY_ZIP_MAGIC: &[u8] = b"PK\x05\x06";
const HDF5_MAGIC: &[u8] = b"\x89HDF\r\n\x1a\n";

/// `config.json` of real models is a few kilobytes to a few megabytes.
const MAX_CONFIG_BYTES: u64 = 64 << 20;
/// The largest weights file we unpack from a zip.
const MAX_WEIGHTS_BYTES: u64 = 16 << 30;
/// The most an entry's buffer is reserved at before its bytes arrive.
const RESERVE_AHEAD: u64 = 64 << 20;

/// Which file format a model came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Keras 3 `.keras` zip.
    Keras,
    /// Legacy whole-model `.h5`.
    LegacyH5,
}

/// A model's graph and the file its weights are read from.
pub struct SavedModel {
    pub config: ModelConfig,
    pub weights: WeightFile,
    /// The weight scope of the top-level model.
    pub scope: WeightScope,
    /// Saved by Keras 2 (tf.keras), whose mask rules differ from Keras 3's: the file's
    /// `keras_version`, or without one the Keras 2 layout of its config.
    pub keras_2: bool,
    /// The file's `keras_version` as (major, minor), when it has a readable one: some Keras
    /// 3 releases compute masked attention differently from others.
    pub keras_version: Option<(u32, u32)>,
}

/// (major, minor) of a `keras_version` string such as `"3.6.0"` (minor 0 when absent).
fn release(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.trim().split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = match parts.next() {
        None => 0,
        Some(minor) => minor.parse().ok()?,
    };
    Some((major, minor))
}

/// `metadata.json` is a few dozen bytes.
const MAX_METADATA_BYTES: u64 = 1 << 20;

/// The format of `bytes`, from the zip or HDF5 signature.
pub fn detect(bytes: &[u8]) -> Option<Format> {
    if bytes.starts_with(ZIP_MAGIC) || bytes.starts_with(EMPTY_ZIP_MAGIC) {
        Some(Format::Keras)
    } else if hdf5_signature_at(bytes).is_some() {
        Some(Format::LegacyH5)
    } else {
        None
    }
}

/// Detects the format from the first bytes and opens the model.
pub fn open(bytes: Vec<u8>) -> Result<SavedModel> {
    match detect(&bytes) {
        Some(Format::Keras) => open_keras(&bytes),
        Some(Format::LegacyH5) => open_legacy_h5(bytes),
        None => {
            let head: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
            Err(ImportError::UnknownFormat(format!(
            "expected a .keras zip archive or a legacy .h5 (HDF5) file, but the data starts with [{}] ({} bytes)",
            head.join(" "),
            bytes.len()
        )))
        }
    }
}

/// HDF5 allows a user block before the superblock, at 0, 512, 1024, 2048, ... bytes.
fn hdf5_signature_at(bytes: &[u8]) -> Option<usize> {
    let mut offset = 0usize;
    while offset + HDF5_MAGIC.len() <= bytes.len() {
        if &bytes[offset..offset + HDF5_MAGIC.len()] == HDF5_MAGIC {
            return Some(offset);
        }
        offset = if offset == 0 {
            512
        } else {
            offset.checked_mul(2)?
        };
    }
    None
}

fn open_keras(bytes: &[u8]) -> Result<SavedModel> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes))?;
    let config = read_entry(&mut archive, "config.json", MAX_CONFIG_BYTES)?;
    let config = String::from_utf8(config)
        .map_err(|_| ImportError::config("config.json is not valid UTF-8"))?;
    let weights = read_entry(&mut archive, "model.weights.h5", MAX_WEIGHTS_BYTES)?;
    // Keras 2.13 to 2.15 write this format too; only metadata.json says which Keras did.
    let version = match archive.index_for_name("metadata.json") {
        Some(_) => {
            let metadata = read_entry(&mut archive, "metadata.json", MAX_METADATA_BYTES)?;
            serde_json::from_slice::<serde_json::Value>(&metadata)
                .ok()
                .and_then(|m| m.get("keras_version")?.as_str().and_then(release))
        }
        None => None,
    };
    let mut saved = from_parts(&config, weights)?;
    if let Some((major, _)) = version {
        saved.keras_2 = major < 3;
    }
    saved.keras_version = version;
    Ok(saved)
}

/// A Keras 3 model from the contents of its `config.json` and `model.weights.h5`.
pub fn from_parts(config: &str, weights: Vec<u8>) -> Result<SavedModel> {
    let config = parse_model_json(config)?;
    let weights = WeightFile::from_bytes(weights, "model.weights.h5")?;
    Ok(SavedModel {
        keras_2: config.has_keras_2_layout(),
        keras_version: None,
        config,
        weights,
        scope: WeightScope::Keras3 {
            prefix: String::new(),
        },
    })
}

fn read_entry(
    archive: &mut zip::ZipArchive<Cursor<&[u8]>>,
    name: &str,
    limit: u64,
) -> Result<Vec<u8>> {
    if archive.index_for_name(name).is_none() {
        let found: Vec<String> = (0..archive.len().min(20))
            .filter_map(|i| {
                archive
                    .name_for_index(i)
                    .and_then(|n| n.ok())
                    .map(|n| n.into_owned())
            })
            .collect();
        return Err(ImportError::MissingEntry {
            entry: name.to_string(),
            found: if found.is_empty() {
                "none".to_string()
            } else {
                found.join(", ")
            },
        });
    }
    let mut entry = archive.by_name(name)?;
    if entry.size() > limit {
        return Err(ImportError::EntryTooLarge {
            entry: name.to_string(),
            limit,
        });
    }
    // The declared size sizes the buffer only up to RESERVE_AHEAD (a header may claim up to
    // the limit, 16 GiB for weights, whatever the data holds), and the read is capped, so a
    // lying header can neither over-allocate nor run forever.
    let capacity = usize::try_from(entry.size().min(limit).min(RESERVE_AHEAD)).unwrap_or(0);
    let mut out = Vec::with_capacity(capacity);
    (&mut entry)
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| ImportError::Zip(zip::result::ZipError::Io(e)))?;
    if out.len() as u64 > limit {
        return Err(ImportError::EntryTooLarge {
            entry: name.to_string(),
            limit,
        });
    }
    Ok(out)
}

fn open_legacy_h5(bytes: Vec<u8>) -> Result<SavedModel> {
    let weights = WeightFile::from_bytes(bytes, "legacy .h5 file")?;
    let config = weights.root_string_attr("model_config")?.ok_or_else(|| {
        ImportError::config(
            "this HDF5 file has no model_config attribute: it holds weights only \
             (model.save_weights); save the whole model with model.save(\"model.keras\")",
        )
    })?;
    let config = parse_model_json(&config)?;
    let version = weights
        .root_string_attr("keras_version")?
        .and_then(|v| release(&v));
    Ok(SavedModel {
        keras_2: version.map_or_else(|| config.has_keras_2_layout(), |(major, _)| major < 3),
        keras_version: version,
        config,
        weights,
        scope: WeightScope::LegacyTop,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_bytes_name_both_formats() {
        let err = open(b"GIF89a....".to_vec()).err().unwrap().to_string();
        assert!(
            err.contains("expected a .keras zip archive or a legacy .h5"),
            "{err}"
        );
        assert!(err.contains("47 49 46 38"), "{err}");
    }

    #[test]
    fn keras_versions_read_as_releases() {
        assert_eq!(release("2.15.0"), Some((2, 15)));
        assert_eq!(release("1.2.2"), Some((1, 2)));
        assert_eq!(release("3.12.0"), Some((3, 12)));
        assert_eq!(release(" 3"), Some((3, 0)));
        assert_eq!(release("3.6"), Some((3, 6)));
        assert_eq!(release("3.x"), None);
        assert_eq!(release("tf-keras"), None);
        assert_eq!(release(""), None);
    }

    #[test]
    fn empty_input() {
        let err = open(vec![]).err().unwrap().to_string();
        assert!(err.contains("(0 bytes)"), "{err}");
    }

    /// A .keras archive whose weights entry claims `claimed` bytes while
    /// holding a few: its stored size fields are patched after writing.
    fn lying_archive(claimed: u32) -> Vec<u8> {
        use std::io::Write;
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let stored = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        zip.start_file("config.json", stored).unwrap();
        zip.write_all(b"{}").unwrap();
        zip.start_file("model.weights.h5", stored).unwrap();
        zip.write_all(b"not hdf5").unwrap();
        let mut bytes = zip.finish().unwrap().into_inner();
        let name = b"model.weights.h5";
        let found: Vec<usize> = (0..bytes.len() - name.len())
            .filter(|&i| &bytes[i..i + name.len()] == name)
            .collect();
        // The local header (size at 22 of 30 bytes before the name), then
        // the central directory's (size at 24 of 46).
        let (local, central) = (found[0] - 30 + 22, found[1] - 46 + 24);
        for at in [local, central] {
            bytes[at..at + 4].copy_from_slice(&claimed.to_le_bytes());
        }
        bytes
    }

    #[test]
    fn a_lying_entry_size_reserves_at_most_reserve_ahead() {
        probe::LARGEST.with(|l| l.set(0));
        let result = open(lying_archive(u32::MAX - 1));
        let largest = probe::LARGEST.with(|l| l.get());
        assert!(result.is_err());
        // It reserved the claimed 4 GiB before.
        assert!(
            largest <= RESERVE_AHEAD as usize,
            "{largest} bytes in one allocation"
        );
    }

    #[test]
    fn hdf5_user_block_offsets() {
        let mut bytes = vec![0u8; 600];
        bytes[512..520].copy_from_slice(HDF5_MAGIC);
        assert_eq!(hdf5_signature_at(&bytes), Some(512));
        assert_eq!(hdf5_signature_at(&bytes[..519]), None);
    }
}

/// The largest single allocation made on the current thread, for tests of
/// what a hostile header can make the importer reserve.
#[cfg(test)]
mod probe {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        pub static LARGEST: Cell<usize> = const { Cell::new(0) };
    }

    struct Probe;

    fn note(size: usize) {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
    }

    // SAFETY: every call is passed on to the system allocator unchanged.
    unsafe impl GlobalAlloc for Probe {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            note(layout.size());
            unsafe { System.alloc(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { System.dealloc(ptr, layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            note(new_size);
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static GLOBAL: Probe = Probe;
}
