//! hub2lake: an Azure Functions custom handler that lands Event Hubs batches as
//! hourly-partitioned JSON Lines in ADLS Gen2 (or a local-filesystem lake).
//!
//! Modules follow the data flow: [`config`] reads the settings once, [`host`] decodes
//! what the Functions host sends, [`ingest`] turns events into records and routes
//! them, [`lake`] names, encodes and writes objects, [`seal`] proves hours complete.
//! [`time`] holds the time formats they share. [`server`] is only transport;
//! [`telemetry`] and [`memory`] set up the process.
//! [`eventhub`] sends events to an Event Hub (the producer the operator tools share).

pub mod config;
pub mod eventhub;
pub mod host;
pub mod ingest;
pub mod lake;
pub mod memory;
pub mod seal;
pub mod server;
pub mod telemetry;
pub mod time;

/// The version written into object metadata, receipts and `/healthz`.
pub const WRITER_VERSION: &str = concat!("hub2lake/", env!("CARGO_PKG_VERSION"));
