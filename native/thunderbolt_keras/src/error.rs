//! The one error type of the importer. Every variant says what was wrong and where.

use thunderbolt_builder::BuildError;

/// Why a Keras model could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },

    #[error("not a Keras model: {0}")]
    UnknownFormat(String),

    #[error("invalid .keras archive: {0}")]
    Zip(#[from] zip::result::ZipError),

    #[error("invalid .keras archive: it has no {entry} entry (entries: {found})")]
    MissingEntry { entry: String, found: String },

    #[error("invalid .keras archive: entry {entry} is larger than {limit} bytes")]
    EntryTooLarge { entry: String, limit: u64 },

    #[error("invalid HDF5 weights ({context}): {message}")]
    Hdf5 { context: String, message: String },

    #[error("invalid model config JSON: {0}")]
    Json(#[from] serde_json::Error),

    #[error("invalid model config: {0}")]
    Config(String),

    #[error("layer {layer:?} ({class_name}): missing weight {path:?} in the weights file")]
    MissingWeight {
        layer: String,
        class_name: String,
        path: String,
    },

    #[error("weight {path:?}: {message}")]
    WeightDtype { path: String, message: String },

    #[error(
        "layer {layer:?} has class {class_name}{registered}, which has no converter. {hint}",
        registered = registered_name.as_deref().map(|r| format!(" (registered as {r:?})")).unwrap_or_default()
    )]
    UnsupportedLayer {
        layer: String,
        class_name: String,
        registered_name: Option<String>,
        hint: String,
    },

    #[error("the model graph has a cycle: {}", .path.join(" -> "))]
    Cycle { path: Vec<String> },

    #[error("invalid option: {0}")]
    Option(String),

    #[error(transparent)]
    Build(#[from] BuildError),
}

impl ImportError {
    pub(crate) fn config(message: impl Into<String>) -> Self {
        ImportError::Config(message.into())
    }

    pub(crate) fn hdf5(context: impl Into<String>, error: impl std::fmt::Display) -> Self {
        ImportError::Hdf5 {
            context: context.into(),
            message: error.to_string(),
        }
    }
}

pub type Result<T> = std::result::Result<T, ImportError>;
