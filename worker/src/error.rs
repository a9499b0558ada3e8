//! The worker's error type: every failure says what went wrong and where.

use std::path::PathBuf;

/// Errors of the worker library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting names nothing hint has (an architecture, a saliency method…) or is out
    /// of range.
    #[error(transparent)]
    Setting(#[from] hint_common::settings::SettingError),
    /// The dataset or the label map is unusable as a whole.
    #[error(transparent)]
    Images(#[from] hint_common::images::Error),
    /// The layer name does not address a layer of the model.
    #[error("model {arch} has no layer '{layer}'{}; valid layers: {}",
        why.as_ref().map(|w| format!(" ({w})")).unwrap_or_default(), valid.join(", "))]
    UnknownLayer {
        /// The architecture.
        arch: String,
        /// What the user asked for.
        layer: String,
        /// Why that name is no layer, where hint knows (`Architecture::not_addressable`).
        why: Option<String>,
        /// Every addressable layer, in forward order.
        valid: Vec<String>,
    },
    /// A weights file does not fit the architecture.
    #[error("weights {path}: {problem}")]
    Weights {
        /// The safetensors file.
        path: PathBuf,
        /// Which tensor and what is wrong with it.
        problem: String,
    },
    /// The input images or the label map are unusable as a whole (a single bad image is
    /// skipped and recorded instead).
    #[error("{0}")]
    Input(String),
    /// An invalid option value (method parameter, threshold, sizes…).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A libtorch operation failed (shapes, devices, out of memory).
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// Writing the region dataset failed.
    #[error(transparent)]
    Regions(#[from] hint_common::regions::RegionsError),
}

/// Result with the worker's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
