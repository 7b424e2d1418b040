//! The end of a run: what the lake holds (by listing it through [`hub2lake::lake::Lake`])
//! and the human-readable summary.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::path::PathBuf;

use indicatif::HumanBytes;
use serde::Serialize;

use hub2lake::lake::layout::{DEADLETTER_DIR, MANIFEST_NAME, RECEIPTS_DIR};
use hub2lake::lake::LakeObject;

use super::{Outcome, SimulationSummary};

/// Names listed per directory in the tree.
const NAMES_PER_DIR: usize = 3;
/// Directory lines in the tree before the rest is only counted.
const TREE_LINES: usize = 64;

/// One directory that directly holds objects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DirSummary {
    /// Relative to the lake root, without a trailing slash ("" for the root).
    pub path: String,
    pub objects: u64,
    pub bytes: u64,
    /// The first few object names, sorted.
    pub names: Vec<String>,
}

/// What the lake holds after a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LakeSummary {
    pub location: String,
    /// The directory of a local (`file://`) lake.
    pub local_root: Option<PathBuf>,
    pub objects: u64,
    pub bytes: u64,
    pub data_objects: u64,
    pub data_bytes: u64,
    pub receipts: u64,
    pub dead_letter_objects: u64,
    pub manifests: u64,
    pub directories: Vec<DirSummary>,
}

impl LakeSummary {
    /// Summarises a listing (paths relative to the lake root). Hidden files (such as
    /// the demo's marker) are not part of the lake and are left out.
    pub fn from_listing(location: String, local_root: Option<PathBuf>, objects: &[LakeObject]) -> Self {
        let mut s = Self {
            location,
            local_root,
            objects: 0,
            bytes: 0,
            data_objects: 0,
            data_bytes: 0,
            receipts: 0,
            dead_letter_objects: 0,
            manifests: 0,
            directories: Vec::new(),
        };
        let mut dirs: BTreeMap<String, DirSummary> = BTreeMap::new();
        for o in objects {
            let (dir, name) = o.path.rsplit_once('/').unwrap_or(("", o.path.as_str()));
            if name.starts_with('.') || hub2lake::lake::layout::is_internal(&o.path) {
                continue;
            }
            s.objects += 1;
            s.bytes += o.size;
            let top = o.path.split('/').next().unwrap_or_default();
            if top == RECEIPTS_DIR {
                s.receipts += 1;
            } else if top == DEADLETTER_DIR {
                s.dead_letter_objects += 1;
            } else if name == MANIFEST_NAME {
                s.manifests += 1;
            } else {
                s.data_objects += 1;
                s.data_bytes += o.size;
            }
            let d = dirs.entry(dir.to_string()).or_insert_with(|| DirSummary {
                path: dir.to_string(),
                objects: 0,
                bytes: 0,
                names: Vec::new(),
            });
            d.objects += 1;
            d.bytes += o.size;
            if d.names.len() < NAMES_PER_DIR {
                d.names.push(name.to_string());
            }
        }
        s.directories = dirs.into_values().collect();
        s
    }

    /// A tree of the directories that hold objects, single-child chains collapsed
    /// (`shop/orders/2025/01/15/`), each with its object count and first names.
    pub fn tree(&self) -> String {
        #[derive(Default)]
        struct Node {
            children: BTreeMap<String, Node>,
            dir: Option<DirSummary>,
        }
        let mut root = Node::default();
        for d in &self.directories {
            if d.path.is_empty() {
                root.dir = Some(d.clone());
                continue;
            }
            let mut node = &mut root;
            for part in d.path.split('/') {
                node = node.children.entry(part.to_string()).or_default();
            }
            node.dir = Some(d.clone());
        }
        fn describe(d: &DirSummary) -> String {
            let more = if d.objects as usize > d.names.len() {
                ", …"
            } else {
                ""
            };
            let noun = if d.objects == 1 { "object" } else { "objects" };
            format!(
                "{} {noun}, {}: {}{more}",
                d.objects,
                HumanBytes(d.bytes),
                d.names.join(", ")
            )
        }
        fn walk(node: &Node, prefix: &str, out: &mut Vec<String>) {
            let count = node.children.len();
            for (i, (name, child)) in node.children.iter().enumerate() {
                // Collapse chains of directories that only hold one directory.
                let mut label = format!("{name}/");
                let mut n = child;
                while n.dir.is_none() && n.children.len() == 1 {
                    let Some((next_name, next)) = n.children.iter().next() else {
                        break;
                    };
                    label.push_str(next_name);
                    label.push('/');
                    n = next;
                }
                let last = i + 1 == count;
                let branch = if last { "└── " } else { "├── " };
                let line = match &n.dir {
                    Some(d) => format!("{prefix}{branch}{label:<14} {}", describe(d)),
                    None => format!("{prefix}{branch}{label}"),
                };
                out.push(line);
                let next_prefix = format!("{prefix}{}", if last { "    " } else { "│   " });
                walk(n, &next_prefix, out);
            }
        }
        let mut lines = Vec::new();
        let head = match &self.local_root {
            Some(p) => p.display().to_string(),
            None => self.location.clone(),
        };
        lines.push(match &root.dir {
            Some(d) => format!("{head}  ({})", describe(d)),
            None => head,
        });
        walk(&root, "", &mut lines);
        let hidden = lines.len().saturating_sub(TREE_LINES + 1);
        let mut out: Vec<String> = lines.into_iter().take(TREE_LINES + 1).collect();
        if hidden > 0 {
            out.push(format!("… and {hidden} more lines"));
        }
        out.join("\n")
    }
}

fn plural(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else if let Some(stem) = noun.strip_suffix('y') {
        format!("{n} {stem}ies")
    } else if noun.ends_with("ch") {
        format!("{n} {noun}es")
    } else {
        format!("{n} {noun}s")
    }
}

fn ms(d: std::time::Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

/// The value at rank `q` (0..=1) of `sorted`, nearest rank; the default when empty.
/// The simulator's summary and the benchmark both report latencies with it.
pub fn percentile<T: Copy + Default>(sorted: &[T], q: f64) -> T {
    let Some(last) = sorted.len().checked_sub(1) else {
        return T::default();
    };
    let i = (last as f64 * q).round() as usize;
    sorted[i.min(last)]
}

impl fmt::Display for SimulationSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ok = self.invocations.iter().filter(|i| i.outcome.is_success()).count();
        writeln!(
            f,
            "events       {} in the hub, {} sent in {} invocations, {} acknowledged ({} distinct batches)",
            self.events_total(),
            self.events_sent(),
            self.invocations.len(),
            self.events_acknowledged(),
            self.batches()
        )?;
        writeln!(
            f,
            "failures     {}, {} (max RetryCount {}), {}, {}",
            plural(self.failed_invocations(), "failed invocation"),
            plural(self.retries(), "retry"),
            self.max_retry_count(),
            plural(self.restarts.len() as u64, "handler restart"),
            plural(self.redeliveries(), "re-delivered batch")
        )?;
        let lat = self.latencies();
        if !lat.is_empty() {
            writeln!(
                f,
                "latency      {ok} successful invocations: p50 {}, p95 {}, max {}",
                ms(percentile(&lat, 0.5)),
                ms(percentile(&lat, 0.95)),
                ms(percentile(&lat, 1.0))
            )?;
        }
        let scheduled = self.seals.iter().filter(|s| !s.at_end).count();
        let at_end = self.seals.iter().filter(|s| s.at_end).count();
        let seal_failed = self.seals.iter().filter(|s| s.error.is_some()).count();
        if !self.seals.is_empty() {
            write!(f, "seal timer   {scheduled} runs on schedule in simulated time")?;
            if at_end > 0 {
                write!(f, " + {at_end} at the end")?;
            }
            if seal_failed > 0 {
                write!(f, " ({seal_failed} failed)")?;
            }
            writeln!(f)?;
            if let Some(log) = self.seals.last().and_then(|s| s.logs.first()) {
                writeln!(f, "             last run said: {log}")?;
            }
        }
        writeln!(f, "elapsed      {:.2} s", self.elapsed.as_secs_f64())?;
        writeln!(f)?;
        writeln!(
            f,
            "  {:<9} {:>7}  {:<19} {:>10}  {:>7} {:>11} {:>7} {:>10}",
            "partition", "events", "sequence numbers", "checkpoint", "batches", "invocations", "retries", "redelivered"
        )?;
        for p in &self.partitions {
            let ck = p.checkpoint.map(|c| c.to_string()).unwrap_or_else(|| "-".into());
            writeln!(
                f,
                "  {:<9} {:>7}  {:<19} {:>10}  {:>7} {:>11} {:>7} {:>10}",
                p.partition_id,
                p.events,
                format!("{}..{}", p.first_sequence_number, p.last_sequence_number),
                ck,
                p.batches,
                p.invocations,
                p.retries,
                p.redeliveries
            )?;
        }
        for r in &self.restarts {
            let resume: Vec<String> = r.resume_from.iter().map(|(p, s)| format!("{p}@{s}")).collect();
            writeln!(
                f,
                "  restart: handler #{} {}; resumed partitions from their checkpoints ({})",
                r.generation,
                r.reason,
                resume.join(", ")
            )?;
        }
        let skipped = self.skipped_batches();
        if !skipped.is_empty() {
            writeln!(f)?;
            writeln!(
                f,
                "WARNING: checkpointed past {} failed batches (events skipped): {} events are NOT in the lake.",
                skipped.len(),
                self.events_skipped()
            )?;
            writeln!(
                f,
                "         The host checkpoints after every invocation, failed or not, once retries are exhausted;"
            )?;
            writeln!(
                f,
                "         keep a retry policy in functions/ingest/function.json (maxRetryCount -1) to prevent this."
            )?;
            for b in skipped.iter().take(10) {
                let err: String = b
                    .last_error
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .chars()
                    .take(120)
                    .collect();
                writeln!(
                    f,
                    "         partition {} seq {}..{} ({} events, {} attempts): {err}",
                    b.partition_id, b.first_sequence_number, b.last_sequence_number, b.events, b.attempts
                )?;
            }
        }
        let died = self
            .invocations
            .iter()
            .filter(|i| matches!(i.outcome, Outcome::HandlerDied { .. }))
            .count();
        if died > 0 {
            writeln!(
                f,
                "  {died} invocations were in flight when the handler died (re-delivered from the checkpoint)"
            )?;
        }
        writeln!(f)?;
        match (&self.lake, &self.lake_error) {
            (Some(l), _) => {
                let mut line = format!(
                    "lake         {}: {} objects, {} — {} data objects ({}), {} receipts",
                    l.location,
                    l.objects,
                    HumanBytes(l.bytes),
                    l.data_objects,
                    HumanBytes(l.data_bytes),
                    l.receipts
                );
                if l.dead_letter_objects > 0 {
                    let _ = write!(line, ", {} dead-letter objects", l.dead_letter_objects);
                }
                if l.manifests > 0 {
                    let _ = write!(line, ", {}", plural(l.manifests, "manifest"));
                }
                writeln!(f, "{line}")?;
                if l.local_root.is_some() {
                    writeln!(f)?;
                    writeln!(f, "{}", l.tree())?;
                }
            }
            (None, Some(e)) => writeln!(f, "lake         {} (could not be listed: {e})", self.lake_url)?,
            (None, None) => writeln!(f, "lake         {}", self.lake_url)?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(path: &str, size: u64) -> LakeObject {
        LakeObject {
            path: path.into(),
            size,
            last_modified: chrono::Utc::now(),
        }
    }

    #[test]
    fn listing_is_classified_and_drawn_as_a_tree() {
        let listing = vec![
            obj(".hub2lake-demo", 10),
            obj("_receipts/hub/cg/0/0-99.json", 500),
            obj("_receipts/hub/cg/0/100-199.json", 500),
            obj("shop/orders/2025/01/15/10/0-0-99.jsonl.gz", 1000),
            obj("shop/orders/2025/01/15/11/0-100-199.jsonl.gz", 1000),
            obj("shop/customers/2025/01/15/10/0-3-98.jsonl.gz", 300),
            obj("_deadletter/2025/01/15/10/0-0-99.jsonl", 50),
        ];
        let s = LakeSummary::from_listing("file:///x".into(), Some("/x".into()), &listing);
        assert_eq!(s.objects, 6);
        assert_eq!(s.data_objects, 3);
        assert_eq!(s.receipts, 2);
        assert_eq!(s.dead_letter_objects, 1);
        let tree = s.tree();
        assert!(tree.contains("_receipts/hub/cg/0/"), "{tree}");
        assert!(tree.contains("2 objects"), "{tree}");
        assert!(tree.contains("orders/2025/01/15/"), "{tree}");
        assert!(!tree.contains(".hub2lake-demo"), "{tree}");
    }
}
