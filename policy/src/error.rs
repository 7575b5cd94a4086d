//! The one error type of `estate-policy`: malformed policy documents.

/// Why a policy document could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum PolicyError {
    /// The text is not JSON.
    #[error("invalid JSON at line {line} column {column}: {message}")]
    Json {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What serde_json reported.
        message: String,
    },
    /// The JSON is not a valid policy: `location` says where (document, statement index and
    /// Sid, field), `message` says what.
    #[error("{location}: {message}")]
    Invalid {
        /// Where, e.g. ``statement 1 (`PublicRead`), field `Effect` ``.
        location: String,
        /// What is wrong.
        message: String,
    },
}

impl PolicyError {
    pub(crate) fn invalid(location: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid { location: location.into(), message: message.into() }
    }
}
