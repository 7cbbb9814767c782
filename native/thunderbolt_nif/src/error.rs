use rustler::{Encoder, Env, Term};
use thunderbolt_runtime::RuntimeError;

rustler::atoms! {
    ok,
    error,
    library,
    load,
    invalid_input,
    invalid_option,
    onnxruntime,
    unsupported,
    kind,
    message,
    struct_key = "__struct__",
    exception_key = "__exception__",
    error_module = "Elixir.Thunderbolt.Error",
}

/// Errors cross into Elixir as `{kind, message}`; `Thunderbolt.Error`
/// wraps them. A NIF never raises for bad input.
pub struct NifError {
    kind: rustler::Atom,
    message: String,
}

impl NifError {
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self {
            kind: invalid_input(),
            message: message.into(),
        }
    }

    /// The same error, its message prefixed with `label: `.
    pub fn prefixed(self, label: &str) -> Self {
        Self {
            kind: self.kind,
            message: format!("{label}: {}", self.message),
        }
    }
}

impl From<RuntimeError> for NifError {
    fn from(e: RuntimeError) -> Self {
        let kind = match &e {
            RuntimeError::Library(_) => library(),
            RuntimeError::Load(_) => load(),
            RuntimeError::InvalidInput(_) => invalid_input(),
            RuntimeError::InvalidOption(_) => invalid_option(),
            RuntimeError::Ort(_) => onnxruntime(),
            RuntimeError::Unsupported(_) => unsupported(),
        };
        Self {
            kind,
            message: e.to_string(),
        }
    }
}

impl NifError {
    /// The error as Elixir sees it after wrapping: a `%Thunderbolt.Error{}`,
    /// for answers sent in messages rather than returned.
    pub fn exception<'a>(&self, env: Env<'a>) -> Term<'a> {
        let pairs = [
            (struct_key().encode(env), error_module().encode(env)),
            (exception_key().encode(env), true.encode(env)),
            (kind().encode(env), self.kind.encode(env)),
            (message().encode(env), self.message.as_str().encode(env)),
        ];
        Term::map_from_pairs(env, &pairs).unwrap_or_else(|_| self.encode(env))
    }
}

impl Encoder for NifError {
    fn encode<'a>(&self, env: Env<'a>) -> Term<'a> {
        (self.kind, self.message.as_str()).encode(env)
    }
}
