//! What can stop a seal run or one of its units, and the points where a test can
//! make a run stop as if the process had crashed there.

use crate::lake::LakeError;

/// Why a seal run (or one unit of it) failed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// Storage failed; the run stops and the timer function answers 500.
    #[error(transparent)]
    Lake(#[from] LakeError),
    /// An object does not hold what its receipt or manifest says, or is missing. The
    /// unit is skipped with a warning (an operator must look); other units go on.
    #[error("{path}: {reason}")]
    Corrupt { path: String, reason: String },
    /// A bug or a crashed worker task.
    #[error("internal error: {0}")]
    Internal(String),
    /// A failure injected by a test through [`super::SealOptions::fail_at`].
    #[error("injected failure at {0:?}")]
    Injected(FailPoint),
}

impl SealError {
    /// Whether the next run may succeed without anyone doing anything.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Lake(e) => e.is_retryable(),
            Self::Internal(_) | Self::Injected(_) => true,
            Self::Corrupt { .. } => false,
        }
    }
}

/// Points where a test can make a run stop as if the process had crashed there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailPoint {
    /// Compacted objects written, manifest not yet.
    AfterCompaction,
    /// Manifest written, nothing deleted yet.
    AfterManifest,
    /// Manifest written, the first superseded object deleted.
    DuringCleanup,
}
