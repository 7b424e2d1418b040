//! Sealing one unit: decide what is left to do from its folder, then compact, commit
//! the manifest, and clean up — in that order, so that a crash between any two steps
//! is finished (or harmlessly redone) by the next run.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};

use super::compact::{self, Key, MergeOutput, ObjectIo, PartSpec, PutResult, Source};
use super::completeness::{partition_cmp, SealReason};
use super::manifest::{manifest_path, part_generation, Inputs, Manifest, ManifestObject, PartitionSummary};
use super::plan::Unit;
use super::{FailPoint, SealError};
use crate::config::Settings;
use crate::ingest::event::format_time;
use crate::lake::{digest_hex, Lake, LakeError, ObjectAttributes, PutOutcome};

/// What a unit's work needs.
pub(crate) struct Ctx<'a> {
    pub settings: &'a Settings,
    pub lake: &'a Lake,
    pub now: DateTime<Utc>,
    pub fail_at: Option<FailPoint>,
}

impl Ctx<'_> {
    fn fail_if(&self, point: FailPoint) -> Result<(), SealError> {
        if self.fail_at == Some(point) {
            return Err(SealError::Injected(point));
        }
        Ok(())
    }
}

/// What processing a ready unit did.
#[derive(Debug)]
pub(crate) enum UnitOutcome {
    AlreadySealed,
    /// An earlier run wrote the manifest but did not finish deleting.
    CleanedUp {
        deleted: u64,
    },
    Sealed(Sealed),
}

#[derive(Debug)]
pub(crate) struct Sealed {
    pub generation: u64,
    pub records: u64,
    pub duplicates_found: u64,
    pub duplicates_removed: u64,
    pub objects_written: u64,
    pub deleted: u64,
}

/// What is left to do for a unit.
#[derive(Debug)]
pub(crate) enum Action {
    Done,
    Cleanup(Manifest),
    /// Seal, over the previous generation when there is one.
    Seal(Option<Manifest>),
}

/// The objects directly in a unit's folder (path → size).
struct Listing(BTreeMap<String, u64>);

impl Listing {
    async fn of(lake: &Lake, dir: &str) -> Result<Self, SealError> {
        let prefix = format!("{dir}/");
        let children = lake
            .list(dir)
            .await?
            .into_iter()
            .filter(|o| o.path.strip_prefix(&prefix).is_some_and(|name| !name.contains('/')))
            .map(|o| (o.path, o.size))
            .collect();
        Ok(Self(children))
    }

    fn has(&self, path: &str) -> bool {
        self.0.contains_key(path)
    }

    /// Generations of the compacted objects present.
    fn part_generations(&self) -> BTreeSet<u64> {
        self.0.keys().filter_map(|p| part_generation(file_name(p))).collect()
    }
}

fn file_name(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(_, name)| name)
}

/// Processes one unit that the sealing rule says is done.
pub(crate) async fn process(ctx: &Ctx<'_>, unit: &Unit, reason: SealReason) -> Result<UnitOutcome, SealError> {
    let listing = Listing::of(ctx.lake, &unit.dir).await?;
    match inspect(ctx, unit, &listing).await? {
        Action::Done => Ok(UnitOutcome::AlreadySealed),
        Action::Cleanup(manifest) => {
            let deleted = cleanup(ctx, &unit.dir, &manifest).await?;
            tracing::info!(unit = %unit.key, generation = manifest.generation, deleted, "finished an interrupted cleanup");
            Ok(UnitOutcome::CleanedUp { deleted })
        }
        Action::Seal(previous) => seal(ctx, unit, previous, reason, &listing)
            .await
            .map(UnitOutcome::Sealed),
    }
}

/// Decides from the folder (and the manifest, when needed) what is left to do.
async fn inspect(ctx: &Ctx<'_>, unit: &Unit, listing: &Listing) -> Result<Action, SealError> {
    let path = manifest_path(&unit.dir);
    if !listing.has(&path) {
        return Ok(Action::Seal(None));
    }
    let raw = unit.raw_paths();
    // Fast path, one LIST per sealed hour per run: after a finished compacted seal no
    // raw object is left and only one generation of parts is. Late data shows up as a
    // raw object (a receipt is written after its objects; one whose object is gone
    // could not be sealed anyway), an unfinished cleanup as raw objects or older parts
    // (cleanup deletes raw objects last for this reason).
    if !raw.iter().any(|p| listing.has(p)) && listing.part_generations().len() <= 1 {
        return Ok(Action::Done);
    }
    let manifest = read_manifest(ctx.lake, &path, unit).await?;
    let consumed: HashSet<&str> = manifest.inputs.raw_objects.iter().map(String::as_str).collect();
    if raw.iter().any(|p| !consumed.contains(p)) {
        return Ok(Action::Seal(Some(manifest)));
    }
    let (parts, inputs) = deletable(listing, &manifest);
    if parts.is_empty() && inputs.is_empty() {
        Ok(Action::Done)
    } else {
        Ok(Action::Cleanup(manifest))
    }
}

async fn read_manifest(lake: &Lake, path: &str, unit: &Unit) -> Result<Manifest, SealError> {
    let bytes = lake.get(path).await?;
    let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| SealError::Corrupt {
        path: path.to_string(),
        reason: format!("manifest does not parse: {e}"),
    })?;
    let hour = DateTime::parse_from_rfc3339(&manifest.hour)
        .map(|h| h.with_timezone(&Utc))
        .ok();
    if manifest.database != unit.key.database
        || manifest.collection != unit.key.collection
        || hour != Some(unit.key.hour)
    {
        return Err(SealError::Corrupt {
            path: path.to_string(),
            reason: format!(
                "manifest is for {}/{} {}, not this unit",
                manifest.database, manifest.collection, manifest.hour
            ),
        });
    }
    Ok(manifest)
}

/// What a committed compacted manifest supersedes in the folder: compacted objects it
/// does not list (older generations, leftovers of crashed runs) and previous objects
/// merged into it, then — to be deleted last — its raw inputs.
fn deletable(listing: &Listing, manifest: &Manifest) -> (Vec<String>, Vec<String>) {
    if !manifest.compacted {
        // Without compaction the manifest lists the raw objects themselves.
        return (Vec::new(), Vec::new());
    }
    let is_part = |p: &str| part_generation(file_name(p)).is_some();
    let parts: Vec<String> = listing
        .0
        .keys()
        .filter(|p| is_part(p) && !manifest.lists(p))
        .cloned()
        .collect();
    let inputs: BTreeSet<String> = manifest
        .inputs
        .raw_objects
        .iter()
        .chain(&manifest.inputs.previous_objects)
        .filter(|p| !is_part(p) && listing.has(p) && !manifest.lists(p))
        .cloned()
        .collect();
    (parts, inputs.into_iter().collect())
}

/// The objects a seal reads: the previous generation's objects and the raw objects no
/// earlier generation consumed. Returns them as merge sources and as manifest entries.
fn sources(unit: &Unit, previous: Option<&Manifest>) -> (Vec<Source>, Vec<ManifestObject>) {
    let consumed: HashSet<&str> = previous
        .map(|m| m.inputs.raw_objects.iter().map(String::as_str).collect())
        .unwrap_or_default();
    let mut sources = Vec::new();
    let mut objects = Vec::new();
    for o in previous.map(|m| m.objects.as_slice()).unwrap_or_default() {
        let first = o
            .partitions
            .iter()
            .map(|p| Key {
                partition: p.partition_id.clone(),
                seq: p.first_sequence_number,
            })
            .min();
        if let Some(first) = first {
            sources.push(Source {
                path: o.path.clone(),
                first,
                sha256: o.sha256.clone(),
                records: o.records,
                partition: None,
            });
            objects.push(o.clone());
        }
    }
    for r in unit.raw.iter().filter(|r| !consumed.contains(r.path.as_str())) {
        sources.push(Source {
            path: r.path.clone(),
            first: Key {
                partition: r.partition.partition_id.clone(),
                seq: r.range.first,
            },
            sha256: r.sha256.clone(),
            records: r.records,
            partition: Some(r.partition.partition_id.clone()),
        });
        objects.push(ManifestObject {
            path: r.path.clone(),
            records: r.records,
            bytes: r.bytes,
            uncompressed_bytes: r.uncompressed_bytes,
            sha256: r.sha256.clone(),
            partitions: vec![PartitionSummary {
                partition_id: r.partition.partition_id.clone(),
                records: r.records,
                first_sequence_number: r.range.first,
                last_sequence_number: r.range.last,
            }],
        });
    }
    (sources, objects)
}

/// Whether two objects may hold the same event (same partition, intersecting ranges).
fn may_hold_copies(objects: &[ManifestObject]) -> bool {
    let mut ranges: Vec<&PartitionSummary> = objects.iter().flat_map(|o| o.partitions.iter()).collect();
    ranges.sort_by(|a, b| {
        partition_cmp(&a.partition_id, &b.partition_id).then(a.first_sequence_number.cmp(&b.first_sequence_number))
    });
    ranges
        .windows(2)
        .any(|w| w[0].partition_id == w[1].partition_id && w[1].first_sequence_number <= w[0].last_sequence_number)
}

/// Record counts from receipts and manifests alone, for objects that cannot overlap.
fn counts_from_metadata(objects: &[ManifestObject]) -> MergeOutput {
    let mut by_partition: BTreeMap<&str, PartitionSummary> = BTreeMap::new();
    for p in objects.iter().flat_map(|o| o.partitions.iter()) {
        let entry = by_partition.entry(&p.partition_id).or_insert_with(|| PartitionSummary {
            records: 0,
            ..p.clone()
        });
        entry.records += p.records;
        entry.first_sequence_number = entry.first_sequence_number.min(p.first_sequence_number);
        entry.last_sequence_number = entry.last_sequence_number.max(p.last_sequence_number);
    }
    let mut partitions: Vec<PartitionSummary> = by_partition.into_values().collect();
    partitions.sort_by(|a, b| partition_cmp(&a.partition_id, &b.partition_id));
    MergeOutput {
        records: partitions.iter().map(|p| p.records).sum(),
        partitions,
        ..MergeOutput::default()
    }
}

/// Seals a unit: compacts (or just counts), commits the manifest, cleans up.
async fn seal(
    ctx: &Ctx<'_>,
    unit: &Unit,
    previous: Option<Manifest>,
    reason: SealReason,
    listing: &Listing,
) -> Result<Sealed, SealError> {
    let generation = previous.as_ref().map_or(1, |m| m.generation + 1);
    let (sources, source_objects) = sources(unit, previous.as_ref());
    if let Some(missing) = sources.iter().find(|s| !listing.has(&s.path)) {
        return Err(SealError::Corrupt {
            path: missing.path.clone(),
            reason: "is named by a receipt or the previous manifest but is not in the lake".into(),
        });
    }
    let compacted = ctx.settings.seal_compact;
    let merged = if compacted {
        let spec = PartSpec {
            dir: unit.dir.clone(),
            generation,
            compression: ctx.settings.compression,
            target_bytes: ctx.settings.seal_target_object_bytes,
        };
        merge(ctx.lake, sources, Some(spec)).await?
    } else if may_hold_copies(&source_objects) {
        merge(ctx.lake, sources, None).await?
    } else {
        counts_from_metadata(&source_objects)
    };
    ctx.fail_if(FailPoint::AfterCompaction)?;

    let objects_written = if compacted { merged.objects.len() as u64 } else { 0 };
    let manifest = Manifest {
        manifest_version: Manifest::VERSION,
        writer: crate::WRITER_VERSION.to_string(),
        database: unit.key.database.clone(),
        collection: unit.key.collection.clone(),
        hour: format_time(unit.key.hour),
        generation,
        sealed_at: format_time(ctx.now),
        complete: unit.gaps.is_empty(),
        reason,
        compacted,
        total_records: merged.records,
        duplicates_found: merged.duplicates,
        duplicates_removed: if compacted { merged.duplicates } else { 0 },
        objects: if compacted { merged.objects } else { source_objects },
        partitions: merged.partitions,
        gaps: unit.gaps.clone(),
        overlaps: unit.overlaps.clone(),
        inputs: Inputs {
            receipts: unit.receipts.clone(),
            raw_objects: unit.raw.iter().map(|r| r.path.clone()).collect(),
            previous_generation: previous.as_ref().map(|m| m.generation),
            previous_objects: previous
                .map(|m| m.objects.into_iter().map(|o| o.path).collect())
                .unwrap_or_default(),
        },
    };
    write_manifest(ctx.lake, &unit.dir, &manifest).await?;
    tracing::info!(
        unit = %unit.key,
        generation,
        %reason,
        complete = manifest.complete,
        records = manifest.total_records,
        duplicates = manifest.duplicates_found,
        objects = manifest.objects.len(),
        reused = merged.objects_reused,
        replaced = merged.objects_replaced,
        "hour sealed"
    );
    ctx.fail_if(FailPoint::AfterManifest)?;

    let deleted = cleanup(ctx, &unit.dir, &manifest).await?;
    Ok(Sealed {
        generation,
        records: manifest.total_records,
        duplicates_found: manifest.duplicates_found,
        duplicates_removed: manifest.duplicates_removed,
        objects_written,
        deleted,
    })
}

/// The commit point: every object the manifest lists is durable before this.
async fn write_manifest(lake: &Lake, dir: &str, manifest: &Manifest) -> Result<(), SealError> {
    let body = serde_json::to_vec_pretty(manifest).map_err(|e| SealError::Internal(format!("manifest: {e}")))?;
    let attrs = ObjectAttributes {
        content_type: "application/json",
        content_encoding: None,
        metadata: vec![
            ("generation", manifest.generation.to_string()),
            ("record_count", manifest.total_records.to_string()),
            ("complete", manifest.complete.to_string()),
            ("writer_version", crate::WRITER_VERSION.to_string()),
        ],
    };
    lake.put_overwrite(&manifest_path(dir), Bytes::from(body), &attrs)
        .await?;
    Ok(())
}

/// Deletes what a committed manifest supersedes: compacted leftovers first, raw inputs
/// last (their presence is how the next run notices an unfinished cleanup).
async fn cleanup(ctx: &Ctx<'_>, dir: &str, manifest: &Manifest) -> Result<u64, SealError> {
    let listing = Listing::of(ctx.lake, dir).await?;
    let (parts, inputs) = deletable(&listing, manifest);
    let mut deleted = 0;
    for batch in [parts, inputs] {
        let mut batch = batch.into_iter();
        if ctx.fail_at == Some(FailPoint::DuringCleanup) {
            if let Some(first) = batch.next() {
                ctx.lake.delete(&first).await?;
                return Err(SealError::Injected(FailPoint::DuringCleanup));
            }
        }
        deleted += futures::stream::iter(batch.map(|p| async move { ctx.lake.delete(&p).await }))
            .buffer_unordered(ctx.settings.upload_concurrency.max(1))
            .try_fold(0u64, |n, ()| async move { Ok(n + 1) })
            .await?;
    }
    Ok(deleted)
}

/// Runs the CPU-bound merge on a blocking thread; its storage calls go back to the
/// runtime through [`LakeIo`].
async fn merge(lake: &Lake, sources: Vec<Source>, spec: Option<PartSpec>) -> Result<MergeOutput, SealError> {
    let mut io = LakeIo {
        lake: lake.clone(),
        runtime: tokio::runtime::Handle::current(),
    };
    tokio::task::spawn_blocking(move || compact::merge(&mut io, sources, spec))
        .await
        .map_err(|e| SealError::Internal(format!("merge task failed: {e}")))?
}

struct LakeIo {
    lake: Lake,
    runtime: tokio::runtime::Handle,
}

fn is_not_found(e: &LakeError) -> bool {
    matches!(
        e,
        LakeError::Storage {
            source: object_store::Error::NotFound { .. },
            ..
        }
    )
}

impl ObjectIo for LakeIo {
    fn get(&mut self, path: &str) -> Result<Bytes, SealError> {
        self.runtime.block_on(self.lake.get(path)).map_err(|e| {
            if is_not_found(&e) {
                SealError::Corrupt {
                    path: path.to_string(),
                    reason: "vanished while sealing (deleted, or another seal run on this hour)".into(),
                }
            } else {
                e.into()
            }
        })
    }

    fn put(&mut self, path: &str, bytes: Bytes, attrs: &ObjectAttributes) -> Result<PutResult, SealError> {
        let lake = &self.lake;
        self.runtime.block_on(async move {
            if lake.put_new(path, bytes.clone(), attrs).await? == PutOutcome::Created {
                return Ok(PutResult::Created);
            }
            // Left by a run that crashed before its manifest. Same inputs give the same
            // bytes; other bytes mean the inputs changed since (late data) and, as no
            // manifest lists this generation yet, replacing them is safe.
            let existing = lake.get(path).await?;
            if digest_hex(&existing) == digest_hex(&bytes) {
                tracing::info!(path, "compacted object left by an earlier run is identical; kept");
                return Ok(PutResult::Identical);
            }
            tracing::warn!(path, "compacted object left by an earlier run differs; replacing it");
            lake.put_overwrite(path, bytes, attrs).await?;
            Ok(PutResult::Replaced)
        })
    }
}
