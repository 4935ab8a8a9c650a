//! The library's one error type. Every variant names what went wrong and where (file, key, step),
//! because these messages are what a user reads when a gate fails at 3 a.m.

use std::path::PathBuf;

/// Errors returned by the lossdiff library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // === Tensor backend ===
    /// An error from candle (shape mismatch, unsupported dtype, …).
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),

    // === Files ===
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A JSON file did not parse.
    #[error("{}: invalid JSON at line {line}, column {column}: {message}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What the parser expected.
        message: String,
    },
    /// A TOML file did not parse.
    #[error("{}: invalid TOML: {message}", path.display())]
    Toml {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },

    // === Configuration ===
    /// A config key that no section knows.
    #[error("{origin}: unknown key `{key}`{}", suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
    UnknownKey {
        /// The file or flag the key came from.
        origin: String,
        /// The key as written.
        key: String,
        /// The closest valid key, when one is close.
        suggestion: Option<String>,
    },
    /// A config key with a value of the wrong kind or out of range.
    #[error("{origin}: `{key}` = {got}: expected {expected}")]
    InvalidValue {
        /// The file or flag the value came from.
        origin: String,
        /// The key.
        key: String,
        /// What would have been accepted.
        expected: String,
        /// What was given.
        got: String,
    },

    // === Traces ===
    /// A trace written with a schema this build does not read.
    #[error("{}: trace schema version {found} is newer than this lossdiff reads ({supported}); upgrade lossdiff", path.display())]
    TraceSchema {
        /// The trace file.
        path: PathBuf,
        /// Version found in the file.
        found: u32,
        /// Newest version this build reads.
        supported: u32,
    },
    /// A trace that parsed but breaks an invariant (lengths, step order).
    #[error("{}: invalid trace: {reason}", path.display())]
    InvalidTrace {
        /// The trace file (or a description of where the trace came from).
        path: PathBuf,
        /// Which invariant failed.
        reason: String,
    },

    // === Training ===
    /// Naive attention would materialise a score matrix larger than the configured cap.
    #[error("naive attention at sequence length {seq_len} needs {bytes} bytes ({:.2} GiB) for its score matrices, over the cap of {cap} bytes; use `attention = \"flash\"` or raise `max_attention_bytes`", *bytes as f64 / (1u64 << 30) as f64)]
    AttentionTooLarge {
        /// The sequence length requested.
        seq_len: usize,
        /// Bytes the score and probability matrices would take.
        bytes: u64,
        /// The configured cap.
        cap: u64,
    },

    // === Reports ===
    /// Figure input that cannot be drawn as given (mismatched lengths, unknown sweep value).
    #[error("figure '{figure}': {reason}")]
    InvalidFigure {
        /// The figure's title.
        figure: String,
        /// What is inconsistent.
        reason: String,
    },
    /// The plotting backend failed while drawing or encoding a figure.
    #[error("figure '{figure}': rendering failed: {message}")]
    Render {
        /// The figure's title.
        figure: String,
        /// The backend's message.
        message: String,
    },
    /// A report file could not be written into its directory.
    #[error("cannot write report into {}: {}: {source}; check that the directory is writable", dir.display(), file.display())]
    ReportWrite {
        /// The report directory.
        dir: PathBuf,
        /// The file being written (or read, for a figure given by path).
        file: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Shorthand for results with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Wraps a JSON error with the path it concerns.
    pub fn json(path: impl Into<PathBuf>, e: &serde_json::Error) -> Self {
        Error::Json {
            path: path.into(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        }
    }
}
