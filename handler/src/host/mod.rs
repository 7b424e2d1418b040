//! The custom-handler protocol: what the Functions host POSTs to us and what we answer.
//!
//! The host wraps every trigger in `{"Data": {...}, "Metadata": {...}}` and, for arrays
//! and scalars, sends JSON *inside a JSON string* (see `shared/host-protocol.md`). This
//! module turns those requests into typed [`EventHubBatch`] and [`TimerInfo`] values and
//! reports anything it cannot use as a [`RequestError`] that names the field.

mod eventhub;
mod fast_array;
mod flexible;
mod invocation;
mod timer;
pub mod wire;

pub use eventhub::{EventBody, EventData, EventHubBatch, PartitionInfo, RetryInfo};
pub use invocation::{Invocation, InvocationResponse, RequestError};
pub use timer::TimerInfo;
