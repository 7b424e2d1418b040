//! Sealing one unit: decide what is left to do from its folder, then compact, commit
//! the manifest, and clean up — in that order, so that a crash between any two steps
//! is finished (or harmlessly redone) by the next run. A sealed unit whose receipts
//! tell something new without new data (its gaps changed, an object no receipt names
//! appeared, a receipt names a copy removed earlier) gets its manifest rewritten in
//! place: same generation, same objects, nothing recompacted.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};

use super::compact::{self, Key, MergeOutput, ObjectIo, PartSpec, PutResult, Source};
use super::completeness::{partition_cmp, SealReason};
use super::error::{FailPoint, SealError};
use super::folder::{self, file_name, Examined, Listing};
use super::manifest::{
    manifest_path, part_generation, recheck_path, Inputs, Manifest, ManifestObject, PartitionSummary, UnreceiptedObject,
};
use super::plan::{RawRef, Unit};
use crate::config::Settings;
use crate::lake::{digest_hex, Lake, ObjectAttributes, PutOutcome, StorageFailure};
use crate::time::{format_time, parse_time};

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
    /// Sealed, and the folder holds nothing the manifest does not account for.
    AlreadySealed,
    /// Sealed earlier; its manifest was read and kept up to date (possibly with
    /// nothing to do).
    Maintained(Maintained),
    Sealed(Sealed),
}

impl UnitOutcome {
    /// Whether the unit cost more than its listing (counts against `max_units`).
    pub(crate) fn did_work(&self) -> bool {
        match self {
            Self::AlreadySealed => false,
            Self::Maintained(m) => m.cleaned_up || m.manifest_updated || m.deleted > 0,
            Self::Sealed(_) => true,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Sealed {
    pub generation: u64,
    pub records: u64,
    pub duplicates_found: u64,
    pub duplicates_removed: u64,
    pub objects_written: u64,
    pub deleted: u64,
    pub folder: FolderReport,
}

#[derive(Debug, Default)]
pub(crate) struct Maintained {
    /// An earlier run wrote the manifest but did not finish deleting.
    pub cleaned_up: bool,
    /// The manifest was rewritten in place.
    pub manifest_updated: bool,
    /// Its gaps were among what changed.
    pub gaps_changed: bool,
    pub deleted: u64,
    pub folder: FolderReport,
}

/// What a unit's folder held besides its own objects.
#[derive(Debug, Default)]
pub(crate) struct FolderReport {
    /// Objects without receipt deleted as redundant copies.
    pub copies_removed: u64,
    /// Objects without receipt left in place (listed in the manifest's `unreceipted`).
    pub unreceipted_left: u64,
    /// Of those, the ones no earlier manifest listed.
    pub new_unreceipted: Vec<UnreceiptedObject>,
}

impl FolderReport {
    fn new(examined: &Examined) -> Self {
        Self {
            copies_removed: examined.redundant.len() as u64,
            unreceipted_left: examined.kept.len() as u64,
            new_unreceipted: examined.new.clone(),
        }
    }
}

/// Processes one unit that the sealing rule says is done.
pub(crate) async fn process(ctx: &Ctx<'_>, unit: &Unit, reason: SealReason) -> Result<UnitOutcome, SealError> {
    let listing = Listing::of(ctx.lake, &unit.dir).await?;
    let path = manifest_path(&unit.dir);
    if !listing.has(&path) {
        return seal(ctx, unit, None, reason, &listing).await.map(UnitOutcome::Sealed);
    }
    if is_settled(unit, &listing) {
        return Ok(UnitOutcome::AlreadySealed);
    }
    let manifest = read_manifest(ctx.lake, &path, unit).await?;
    if has_late_data(unit, &listing, &manifest) {
        return seal(ctx, unit, Some(manifest), reason, &listing)
            .await
            .map(UnitOutcome::Sealed);
    }
    maintain(ctx, unit, manifest, &listing)
        .await
        .map(UnitOutcome::Maintained)
}

/// The fast path, one LIST per sealed hour per run and no read: after a finished
/// compacted seal no raw object is left, only one generation of parts is, no object
/// that no receipt names is there, and nothing asks for the manifest to be checked
/// (gaps touching the unit, or the recheck marker an earlier run left while the
/// manifest lists gaps or objects without receipt, or just removed copies: see
/// [`Manifest::needs_recheck`]). Late data shows up as a raw
/// object (a receipt is written after its objects), an unfinished cleanup as raw
/// objects or older parts (cleanup deletes raw objects last for this reason), a
/// failed or in-flight delivery as an object no receipt names.
fn is_settled(unit: &Unit, listing: &Listing) -> bool {
    let raw = unit.raw_paths();
    !raw.iter().any(|p| listing.has(p))
        && listing.part_generations().len() <= 1
        && listing.unreceipted(&raw).next().is_none()
        && unit.gaps.is_empty()
        && !listing.has(&recheck_path(&unit.dir))
}

/// Raw objects present that the manifest has not consumed: late data, a new generation.
fn has_late_data(unit: &Unit, listing: &Listing, manifest: &Manifest) -> bool {
    let consumed: HashSet<&str> = manifest.inputs.raw_objects.iter().map(String::as_str).collect();
    unit.raw
        .iter()
        .any(|r| listing.has(&r.path) && !consumed.contains(r.path.as_str()))
}

async fn read_manifest(lake: &Lake, path: &str, unit: &Unit) -> Result<Manifest, SealError> {
    let bytes = lake.get(path).await?;
    let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| SealError::Corrupt {
        path: path.to_string(),
        reason: format!("manifest does not parse: {e}"),
    })?;
    let hour = parse_time(&manifest.hour);
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
        .paths()
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
/// earlier generation consumed (except `absorbed` ones, whose events are sealed
/// already). Returns them as merge sources and as manifest entries.
fn sources(unit: &Unit, previous: Option<&Manifest>, absorbed: &[&RawRef]) -> (Vec<Source>, Vec<ManifestObject>) {
    let consumed: HashSet<&str> = previous
        .map(|m| m.inputs.raw_objects.iter().map(String::as_str).collect())
        .unwrap_or_default();
    let absorbed: HashSet<&str> = absorbed.iter().map(|r| r.path.as_str()).collect();
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
    let new = unit
        .raw
        .iter()
        .filter(|r| !consumed.contains(r.path.as_str()) && !absorbed.contains(r.path.as_str()));
    for r in new {
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
    let absorbed = folder::absorb_missing(unit, listing, previous.as_ref())?;
    let (sources, source_objects) = sources(unit, previous.as_ref(), &absorbed);
    if let Some(missing) = sources.iter().find(|s| !listing.has(&s.path)) {
        return Err(SealError::Corrupt {
            path: missing.path.clone(),
            reason: "is named by a receipt or the previous manifest but is not in the lake".into(),
        });
    }
    let compacted = ctx.settings.seal_compact;
    // Judged against every receipt of the unit: the new manifest consumes them all.
    let examined = folder::examine(
        ctx.lake,
        unit,
        listing,
        previous.as_ref(),
        &folder::coverage(unit, &BTreeSet::new()),
        compacted,
        &format_time(ctx.now),
    )
    .await?;
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
    let earlier_removed = previous
        .as_ref()
        .map(|m| m.removed_copies.as_slice())
        .unwrap_or_default();
    let manifest = Manifest {
        manifest_version: Manifest::VERSION,
        writer: crate::WRITER_VERSION.to_string(),
        database: unit.key.database.clone(),
        collection: unit.key.collection.clone(),
        hour: format_time(unit.key.hour),
        generation,
        revision: 0,
        sealed_at: format_time(ctx.now),
        updated_at: None,
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
        unreceipted: examined.kept.clone(),
        removed_copies: folder::with_removed(earlier_removed, &examined.redundant),
        inputs: Inputs {
            receipts: all_receipts(previous.as_ref(), unit),
            raw_objects: consumed_raw(previous.as_ref(), unit),
            previous_generation: previous.as_ref().map(|m| m.generation),
            previous_objects: previous
                .map(|m| m.objects.into_iter().map(|o| o.path).collect())
                .unwrap_or_default(),
        },
    };
    commit(ctx, &unit.dir, &manifest, listing).await?;
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
        unreceipted = manifest.unreceipted.len(),
        copies_removed = examined.redundant.len(),
        "hour sealed"
    );
    ctx.fail_if(FailPoint::AfterManifest)?;

    // Listed again: the compacted objects written since are in it, so it is the
    // folder as the manifest sees it.
    let now_listed = Listing::of(ctx.lake, &unit.dir).await?;
    let deleted = cleanup(ctx, &now_listed, &manifest, &examined).await?;
    Ok(Sealed {
        generation,
        records: manifest.total_records,
        duplicates_found: manifest.duplicates_found,
        duplicates_removed: manifest.duplicates_removed,
        objects_written,
        deleted,
        folder: FolderReport::new(&examined),
    })
}

/// Every raw object of the unit, and those earlier generations consumed: a consumed
/// object is never forgotten, even if its receipt can no longer be read, so it can
/// never come back as late data.
fn consumed_raw(previous: Option<&Manifest>, unit: &Unit) -> Vec<String> {
    let earlier = previous.map(|m| m.inputs.raw_objects.as_slice()).unwrap_or_default();
    sorted_union(earlier, unit.raw.iter().map(|r| r.path.as_str()))
}

/// Every receipt with an object in the unit, and those earlier generations recorded.
fn all_receipts(previous: Option<&Manifest>, unit: &Unit) -> Vec<String> {
    let earlier = previous.map(|m| m.inputs.receipts.as_slice()).unwrap_or_default();
    sorted_union(earlier, unit.receipts.iter().map(String::as_str))
}

fn sorted_union<'a>(earlier: &'a [String], now: impl Iterator<Item = &'a str>) -> Vec<String> {
    let all: BTreeSet<&str> = earlier.iter().map(String::as_str).chain(now).collect();
    all.into_iter().map(str::to_string).collect()
}

/// Keeps a sealed unit's manifest up to date with what its receipts and folder say
/// now, without touching its objects: gaps and overlaps, objects without receipt (the
/// redundant ones are removed), receipts naming copies removed earlier. The manifest
/// is rewritten in place, as the same generation with the next `revision`, only when
/// something changed; its objects are the same, so a reader holding the previous
/// revision still reads a consistent hour. Then whatever an interrupted run left to
/// delete is deleted.
async fn maintain(ctx: &Ctx<'_>, unit: &Unit, manifest: Manifest, listing: &Listing) -> Result<Maintained, SealError> {
    let absorbed = folder::absorb_missing(unit, listing, Some(&manifest))?;
    let examined = folder::examine(
        ctx.lake,
        unit,
        listing,
        Some(&manifest),
        &folder::coverage(unit, &BTreeSet::new()),
        manifest.compacted,
        &format_time(ctx.now),
    )
    .await?;
    let current = up_to_date(unit, &manifest, &examined);
    let mut out = Maintained {
        folder: FolderReport::new(&examined),
        ..Maintained::default()
    };
    let manifest = if current.same_content(&manifest) {
        sync_marker(ctx, &unit.dir, &manifest, listing).await?;
        manifest
    } else {
        let current = Manifest {
            writer: crate::WRITER_VERSION.to_string(),
            revision: manifest.revision + 1,
            updated_at: Some(format_time(ctx.now)),
            ..current
        };
        commit(ctx, &unit.dir, &current, listing).await?;
        out.manifest_updated = true;
        out.gaps_changed = current.gaps != manifest.gaps;
        tracing::info!(
            unit = %unit.key,
            generation = current.generation,
            revision = current.revision,
            complete = current.complete,
            gaps = current.gaps.len(),
            unreceipted = current.unreceipted.len(),
            copies_removed = examined.redundant.len(),
            receipts_of_removed_copies = absorbed.len(),
            "sealed hour's manifest updated"
        );
        current
    };
    let (parts, inputs) = deletable(listing, &manifest);
    out.cleaned_up = !parts.is_empty() || !inputs.is_empty();
    out.deleted = cleanup(ctx, listing, &manifest, &examined).await?;
    if out.cleaned_up {
        tracing::info!(unit = %unit.key, generation = manifest.generation, deleted = out.deleted, "finished an interrupted cleanup");
    }
    Ok(out)
}

/// The manifest as the receipts and the folder describe the unit now. Objects,
/// partitions and counts stay: the data did not change.
fn up_to_date(unit: &Unit, manifest: &Manifest, examined: &Examined) -> Manifest {
    Manifest {
        complete: unit.gaps.is_empty(),
        gaps: unit.gaps.clone(),
        overlaps: unit.overlaps.clone(),
        unreceipted: examined.kept.clone(),
        removed_copies: folder::with_removed(&manifest.removed_copies, &examined.redundant),
        inputs: Inputs {
            receipts: all_receipts(Some(manifest), unit),
            raw_objects: consumed_raw(Some(manifest), unit),
            ..manifest.inputs.clone()
        },
        ..manifest.clone()
    }
}

/// Writes a manifest — the commit point — keeping the recheck marker wherever the
/// manifest needs it: created before a manifest that needs it, deleted after one that
/// does not. A crash in between leaves at most a marker too many, which costs the next
/// run one read; never a manifest with gaps that no run would look at again.
async fn commit(ctx: &Ctx<'_>, dir: &str, manifest: &Manifest, listing: &Listing) -> Result<(), SealError> {
    let needed = manifest.needs_recheck(ctx.now);
    let present = listing.has(&recheck_path(dir));
    if needed && !present {
        put_marker(ctx.lake, dir).await?;
    }
    write_manifest(ctx.lake, dir, manifest).await?;
    if !needed && present {
        ctx.lake.delete(&recheck_path(dir)).await?;
    }
    Ok(())
}

/// Creates or deletes the recheck marker of an unchanged manifest (one written by an
/// earlier version, or whose copies were removed long enough ago).
async fn sync_marker(ctx: &Ctx<'_>, dir: &str, manifest: &Manifest, listing: &Listing) -> Result<(), SealError> {
    match (manifest.needs_recheck(ctx.now), listing.has(&recheck_path(dir))) {
        (true, false) => put_marker(ctx.lake, dir).await,
        (false, true) => Ok(ctx.lake.delete(&recheck_path(dir)).await?),
        _ => Ok(()),
    }
}

async fn put_marker(lake: &Lake, dir: &str) -> Result<(), SealError> {
    let body = Bytes::from_static(
        b"hub2lake seal: while this object exists, every seal run reads this hour's _manifest.json and brings it \
          up to date with the receipts (docs/seal.md)\n",
    );
    let attrs = ObjectAttributes {
        content_type: "text/plain",
        ..ObjectAttributes::default()
    };
    // Already there (a crashed run, an operator): just as good.
    lake.put_new(&recheck_path(dir), body, &attrs).await?;
    Ok(())
}

/// The commit point: every object the manifest lists is durable before this.
async fn write_manifest(lake: &Lake, dir: &str, manifest: &Manifest) -> Result<(), SealError> {
    let body = serde_json::to_vec_pretty(manifest).map_err(|e| SealError::Internal(format!("manifest: {e}")))?;
    let attrs = ObjectAttributes {
        content_type: "application/json",
        content_encoding: None,
        metadata: vec![
            ("generation", manifest.generation.to_string()),
            ("revision", manifest.revision.to_string()),
            ("record_count", manifest.total_records.to_string()),
            ("complete", manifest.complete.to_string()),
            ("writer_version", crate::WRITER_VERSION.to_string()),
        ],
    };
    lake.put_overwrite(&manifest_path(dir), Bytes::from(body), &attrs)
        .await?;
    Ok(())
}

/// Deletes what a committed manifest supersedes: compacted leftovers and the redundant
/// copies it records first, raw inputs last (their presence is how the next run
/// notices an unfinished cleanup).
async fn cleanup(ctx: &Ctx<'_>, listing: &Listing, manifest: &Manifest, examined: &Examined) -> Result<u64, SealError> {
    let (mut first, inputs) = deletable(listing, manifest);
    if manifest.compacted {
        first.extend(
            examined
                .redundant
                .iter()
                .filter(|c| listing.has(&c.path))
                .map(|c| c.path.clone()),
        );
    }
    let mut deleted = 0;
    for batch in [first, inputs] {
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

impl ObjectIo for LakeIo {
    fn get(&mut self, path: &str) -> Result<Bytes, SealError> {
        self.runtime.block_on(self.lake.get(path)).map_err(|e| {
            if e.failure() == StorageFailure::NotFound {
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
