//! Why sending failed: [`SinkError`] for every sink, and [`ConnectionStringError`] for
//! a connection string that cannot work. A leaf of the module: `sink` and `producer`
//! both use it, it uses neither.

use std::path::PathBuf;

/// Why a batch could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Destination flags, connection string or credentials are unusable.
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    ConnectionString(#[from] ConnectionStringError),
    #[error("cannot connect to {destination}: {message}")]
    Connect { destination: String, message: String },
    #[error("sending to {target} failed: {message}")]
    Send { target: String, message: String },
    #[error(
        "event {partition}/{sequence_number} is about {bytes} bytes, over the batch limit of {limit} bytes \
         (raise --max-batch-bytes up to the namespace's limit: 1 MB Basic/Standard, 20 MB Premium/Dedicated)"
    )]
    TooLarge {
        partition: String,
        sequence_number: i64,
        bytes: u64,
        limit: u64,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl SinkError {
    /// Whether the operator must change flags or credentials (exit code 2).
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            Self::Config(_) | Self::ConnectionString(_) | Self::TooLarge { .. }
        )
    }
}

/// What is wrong with a connection string. Key values are never part of a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionStringError {
    #[error(
        "the connection string is empty; expected Endpoint=sb://<namespace>.servicebus.windows.net/;\
         SharedAccessKeyName=<policy>;SharedAccessKey=<key>[;EntityPath=<event hub>]"
    )]
    Empty,
    #[error("part {index} of the connection string is not Key=Value (parts are separated by ';')")]
    NotKeyValue { index: usize },
    #[error("part {index} of the connection string has an empty key before '='")]
    EmptyKey { index: usize },
    #[error("{key} appears more than once in the connection string")]
    Duplicate { key: &'static str },
    #[error("{key} is empty in the connection string")]
    EmptyValue { key: &'static str },
    #[error("the connection string has no Endpoint=sb://<namespace>.servicebus.windows.net/{hint}")]
    MissingEndpoint { hint: String },
    #[error("Endpoint {value:?} is not usable: {problem} (expected sb://<namespace>.servicebus.windows.net/)")]
    BadEndpoint { value: String, problem: String },
    #[error("the connection string has SharedAccessKey but no SharedAccessKeyName (the policy name){hint}")]
    MissingKeyName { hint: String },
    #[error("the connection string has SharedAccessKeyName but no SharedAccessKey{hint}")]
    MissingKey { hint: String },
    #[error(
        "the connection string has no credentials: give SharedAccessKeyName and SharedAccessKey, or \
         SharedAccessSignature{hint}"
    )]
    MissingCredentials { hint: String },
    #[error("EntityPath {value:?} is not an Event Hub name (letters, digits, '.', '-', '_'; 1-256 characters)")]
    BadEntityPath { value: String },
}
