//! The dry run: one line per batch that would be sent, nothing sent.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use hub2lake::eventhub::{EventSink, OutEvent, SinkError, Target};

/// Prints one line per batch that would be sent; sends nothing.
pub struct DryRunSink {
    out: Mutex<Box<dyn Write + Send>>,
}

impl DryRunSink {
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Self { out: Mutex::new(out) }
    }
}

impl EventSink for DryRunSink {
    async fn send_batch(&self, target: &Target, events: &[OutEvent]) -> Result<(), SinkError> {
        let (Some(first), Some(last)) = (events.first(), events.last()) else {
            return Ok(());
        };
        let bytes: usize = events.iter().map(OutEvent::estimated_size).sum();
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        writeln!(
            out,
            "would send {} events (~{}) from partition {} seq {}..{} to {target}",
            events.len(),
            super::super::ls::human_bytes(bytes as u64),
            first.source_partition,
            first.source_sequence_number,
            last.source_sequence_number
        )
        .map_err(|source| SinkError::Io {
            path: PathBuf::from("<stdout>"),
            source,
        })
    }

    fn describe(&self) -> String {
        "dry-run".into()
    }

    fn records_position(&self) -> bool {
        false
    }
}
