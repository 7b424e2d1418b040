//! Why a batch was not written, and whether the host should send it again.

use crate::lake::LakeError;

/// Why a batch was not written.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The batch cannot be written as sent (answered 400).
    #[error("{0}")]
    BadBatch(String),
    /// Storage failed (answered 500 so the host retries the batch).
    #[error(transparent)]
    Lake(#[from] LakeError),
    /// A bug or a crashed worker task (answered 500).
    #[error("internal error: {0}")]
    Internal(String),
}

impl IngestError {
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::BadBatch(_) => false,
            Self::Lake(e) => e.is_retryable(),
            Self::Internal(_) => true,
        }
    }
}
