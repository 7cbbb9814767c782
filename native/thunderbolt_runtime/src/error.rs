use thiserror::Error;

/// Every failure the runtime reports. Messages are written for the person who
/// called `Thunderbolt.load/2` or `Thunderbolt.run/3`, so they say what to fix.
#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error("{0}")]
    Library(String),
    #[error("could not load model: {0}")]
    Load(String),
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error("invalid option: {0}")]
    InvalidOption(String),
    #[error("onnxruntime: {0}")]
    Ort(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

impl From<ort::Error> for RuntimeError {
    fn from(e: ort::Error) -> Self {
        RuntimeError::Ort(e.to_string())
    }
}
