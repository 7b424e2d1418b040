//! `hub2lake get`: download a range of the lake into a local folder with the lake's
//! folder structure, concurrently and resumably, optionally decompressed, optionally
//! merged into one de-duplicated JSON Lines file for loaders.
//!
//! Resuming: a file that is already complete is skipped — same size as the object, or
//! with `--decompress` a sidecar marker `.<name>.hub2lake` that records the object it
//! was decoded from. Files are written under a temporary name and renamed when whole,
//! so an interrupted run never leaves a file that looks complete.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Component, Path, PathBuf};

use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::inventory::Inventory;
use super::merge::{self, DedupBy, MergeReport, SortOptions, Sorter};
use super::range::HourRange;
use super::{blocking, OpsError};
use hub2lake::lake::Lake;

/// What to download.
#[derive(Debug, Clone)]
pub struct GetOptions {
    pub range: HourRange,
    pub database: Option<String>,
    pub collection: Option<String>,
    pub out_dir: PathBuf,
    /// Write `.jsonl` files instead of `.jsonl.gz` / `.jsonl.zst`.
    pub decompress: bool,
    /// Only sealed hours: their manifest and the objects it lists.
    pub sealed_only: bool,
    /// Also the dead letters of the hours in range.
    pub dead_letters: bool,
    /// Objects downloaded at once.
    pub concurrency: usize,
    pub merge: Option<MergeTarget>,
}

/// `--merge FILE [--dedup-by seq|event_id]`.
#[derive(Debug, Clone)]
pub struct MergeTarget {
    pub path: PathBuf,
    pub dedup_by: DedupBy,
    /// Bytes of records sorted in memory before spilling to disk.
    pub memory_budget: usize,
}

/// Progress of a download, for a progress bar.
pub trait Progress: Send + Sync {
    /// Called once with what will be fetched (already complete files excluded).
    fn begin(&self, _objects: u64, _bytes: u64) {}
    /// An object was fetched.
    fn fetched(&self, _path: &str, _bytes: u64) {}
    fn finish(&self) {}
}

/// No progress output.
impl Progress for () {}

/// One object chosen for download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    /// Path relative to the lake root.
    pub path: String,
    pub size: u64,
    /// A data object (input of `--merge`), not a manifest or dead letter.
    pub data: bool,
}

/// What `get` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GetReport {
    pub lake: String,
    pub range: String,
    pub out_dir: PathBuf,
    pub folders: u64,
    pub selected_objects: u64,
    pub selected_bytes: u64,
    /// Objects downloaded by this run.
    pub fetched_objects: u64,
    pub fetched_bytes: u64,
    /// Objects whose local file was already complete (an earlier, interrupted run).
    pub skipped_objects: u64,
    pub skipped_bytes: u64,
    /// Objects deleted between the listing and the download (a seal run): run again.
    pub vanished: Vec<String>,
    pub merge: Option<MergeReport>,
}

impl GetReport {
    pub fn render(&self) -> String {
        let mut out = format!(
            "get {} — {}: {} objects ({}) in {} folders into {}\n  fetched {} objects ({}), {} already complete ({})\n",
            self.lake,
            self.range,
            self.selected_objects,
            super::ls::human_bytes(self.selected_bytes),
            self.folders,
            self.out_dir.display(),
            self.fetched_objects,
            super::ls::human_bytes(self.fetched_bytes),
            self.skipped_objects,
            super::ls::human_bytes(self.skipped_bytes),
        );
        for v in &self.vanished {
            out.push_str(&format!(
                "  warning: {v} was deleted while downloading (a seal run compacted it); run get again\n"
            ));
        }
        if let Some(m) = &self.merge {
            out.push_str(&format!(
                "  merged {} records into {} ({} repeated events dropped)\n",
                m.records_out,
                m.path.display(),
                m.duplicates_dropped
            ));
        }
        out
    }
}

/// The objects of `opts`' range and filters, in path order.
pub fn select(inv: &Inventory, opts: &GetOptions) -> (Vec<Selected>, u64) {
    let mut out = Vec::new();
    let mut folders = 0u64;
    for unit in inv.units_in(&opts.range, opts.database.as_deref(), opts.collection.as_deref()) {
        if opts.sealed_only && !unit.is_sealed() {
            continue;
        }
        folders += 1;
        if let (Some(m), Some(size)) = (&unit.manifest, unit.manifest_size) {
            out.push(Selected {
                path: m.path.clone(),
                size,
                data: false,
            });
        }
        let objects = if opts.sealed_only {
            unit.sealed
                .iter()
                .filter_map(|o| o.size.map(|s| (o.entry.path.clone(), s)))
                .collect()
        } else {
            unit.present_objects()
        };
        out.extend(
            objects
                .into_iter()
                .map(|(path, size)| Selected { path, size, data: true }),
        );
    }
    if opts.dead_letters {
        out.extend(
            inv.dead_letters
                .iter()
                .filter(|d| opts.range.contains(d.hour))
                .filter_map(|d| {
                    d.size.map(|size| Selected {
                        path: d.entry.path.clone(),
                        size,
                        data: false,
                    })
                }),
        );
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out.dedup_by(|a, b| a.path == b.path);
    (out, folders)
}

/// The sidecar of a decompressed file: which object it was decoded from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Marker {
    source: String,
    source_bytes: u64,
}

/// Where an object goes locally, and how.
#[derive(Debug, Clone)]
struct Plan {
    object: Selected,
    dest: PathBuf,
    /// `Some(marker path)` when the object is decompressed on the way.
    marker: Option<PathBuf>,
}

impl Plan {
    fn new(out_dir: &Path, object: Selected, decompress: bool) -> Result<Self, OpsError> {
        let rel = Path::new(&object.path);
        if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(OpsError::Corrupt {
                path: object.path.clone(),
                reason: "object path is not a plain relative path; refusing to write it".into(),
            });
        }
        let full = out_dir.join(rel);
        let compressed_suffix = [".gz", ".zst"].into_iter().find(|s| object.path.ends_with(s));
        let (dest, marker) = match compressed_suffix.and_then(|s| object.path.strip_suffix(s)) {
            Some(stripped) if decompress => {
                let dest = out_dir.join(stripped);
                let name = dest
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let marker = dest.with_file_name(format!(".{name}.hub2lake"));
                (dest, Some(marker))
            }
            _ => (full, None),
        };
        Ok(Self { object, dest, marker })
    }

    /// Whether an earlier run already wrote this file completely.
    fn is_complete(&self) -> bool {
        let Ok(meta) = std::fs::metadata(&self.dest) else {
            return false;
        };
        match &self.marker {
            None => meta.len() == self.object.size,
            Some(marker) => std::fs::read(marker)
                .ok()
                .and_then(|b| serde_json::from_slice::<Marker>(&b).ok())
                .is_some_and(|m| m.source == self.object.path && m.source_bytes == self.object.size),
        }
    }
}

/// Downloads `opts`' range of the lake. `inv` is the lake's inventory.
pub async fn get(
    lake: &Lake,
    inv: &Inventory,
    opts: &GetOptions,
    progress: &dyn Progress,
) -> Result<GetReport, OpsError> {
    let (selected, folders) = select(inv, opts);
    let mut report = GetReport {
        lake: lake.description().to_string(),
        range: opts.range.to_string(),
        out_dir: opts.out_dir.clone(),
        folders,
        selected_objects: selected.len() as u64,
        selected_bytes: selected.iter().map(|s| s.size).sum(),
        ..GetReport::default()
    };
    std::fs::create_dir_all(&opts.out_dir).map_err(OpsError::io(&opts.out_dir))?;
    let plans: Vec<Plan> = selected
        .into_iter()
        .map(|s| Plan::new(&opts.out_dir, s, opts.decompress))
        .collect::<Result<_, _>>()?;
    let (done, todo): (Vec<Plan>, Vec<Plan>) = plans.into_iter().partition(Plan::is_complete);
    report.skipped_objects = done.len() as u64;
    report.skipped_bytes = done.iter().map(|p| p.object.size).sum();
    progress.begin(todo.len() as u64, todo.iter().map(|p| p.object.size).sum());
    let merge_inputs: Vec<PathBuf> = done
        .iter()
        .chain(&todo)
        .filter(|p| p.object.data)
        .map(|p| p.dest.clone())
        .collect();
    let fetched: Vec<(Plan, Option<u64>)> = futures::stream::iter(todo)
        .map(|plan| async move {
            let bytes = fetch(lake, &plan).await?;
            if let Some(b) = bytes {
                progress.fetched(&plan.object.path, b);
            }
            Ok::<_, OpsError>((plan, bytes))
        })
        .buffer_unordered(opts.concurrency.max(1))
        .try_collect()
        .await?;
    progress.finish();
    for (plan, bytes) in fetched {
        match bytes {
            Some(b) => {
                report.fetched_objects += 1;
                report.fetched_bytes += b;
            }
            None => report.vanished.push(plan.object.path),
        }
    }
    report.vanished.sort();
    if let Some(target) = &opts.merge {
        let target = target.clone();
        let inputs: Vec<PathBuf> = merge_inputs.into_iter().filter(|p| p.exists()).collect();
        report.merge = Some(blocking(move || merge_files(&inputs, &target)).await?);
    }
    Ok(report)
}

/// Fetches one object to its file; `None` when it vanished since the listing.
async fn fetch(lake: &Lake, plan: &Plan) -> Result<Option<u64>, OpsError> {
    let Some(bytes) = lake.get_if_exists(&plan.object.path).await? else {
        return Ok(None);
    };
    let len = bytes.len() as u64;
    let plan = plan.clone();
    blocking(move || write_file(&plan, &bytes)).await?;
    Ok(Some(len))
}

fn write_file(plan: &Plan, bytes: &[u8]) -> Result<(), OpsError> {
    if let Some(dir) = plan.dest.parent() {
        std::fs::create_dir_all(dir).map_err(OpsError::io(dir))?;
    }
    let tmp = merge::partial_name(&plan.dest);
    let file = File::create(&tmp).map_err(OpsError::io(&tmp))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    match &plan.marker {
        None => w.write_all(bytes).map_err(OpsError::io(&tmp))?,
        Some(_) => {
            // gzip or zstd, as the object's first bytes say.
            let decoded = hub2lake::lake::codec::decoding_reader(bytes)
                .and_then(|mut decoder| std::io::copy(&mut decoder, &mut w));
            decoded.map_err(|e| OpsError::Corrupt {
                path: plan.object.path.clone(),
                reason: format!("does not decompress: {e}"),
            })?;
        }
    }
    w.flush().map_err(OpsError::io(&tmp))?;
    drop(w);
    std::fs::rename(&tmp, &plan.dest).map_err(OpsError::io(&plan.dest))?;
    if let Some(marker) = &plan.marker {
        let m = Marker {
            source: plan.object.path.clone(),
            source_bytes: bytes.len() as u64,
        };
        let text = serde_json::to_vec(&m).map_err(|e| OpsError::Internal(e.to_string()))?;
        std::fs::write(marker, text).map_err(OpsError::io(marker))?;
    }
    Ok(())
}

/// Sorts and de-duplicates local JSON Lines files (plain, gzip or zstd) into one file.
pub fn merge_files(inputs: &[PathBuf], target: &MergeTarget) -> Result<MergeReport, OpsError> {
    let temp_dir = target
        .path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&temp_dir).map_err(OpsError::io(&temp_dir))?;
    let mut sorter = Sorter::new(SortOptions {
        memory_budget: target.memory_budget,
        temp_dir,
    });
    for input in inputs {
        let file = File::open(input).map_err(OpsError::io(input))?;
        sorter.push_reader(file, &input.display().to_string())?;
    }
    merge::write_merged(sorter.finish()?, &target.path, target.dedup_by)
}
