//! Sending events to Azure Event Hubs: the one producer and sink module of the project.
//!
//! [`sink`] is the contract every sender implements (one batch of [`OutEvent`]s to one
//! [`Target`]) with the file sink for development and tests; [`producer`] parses
//! connection strings, builds identities and sends over AMQP (or AMQP over WebSockets
//! on 443) with the `azure_messaging_eventhubs` crate, in batches under the
//! service's size limit.
//!
//! Imports go one way: inside, `producer` → `sink` → `error`; outside, this module uses
//! [`crate::lake::layout`] for file names and nothing else of the handler, and `replay`,
//! the Redis bridge and the log stream use it.

pub mod error;
pub mod producer;
pub mod sink;

pub use error::{ConnectionStringError, SinkError};
pub use producer::{
    credential, qualify_namespace, valid_eventhub_name, ConnectionString, CredentialKind, Destination, EventHubSink,
};
pub use sink::{EventSink, FileSink, FileSinkLine, OutEvent, Target};
