//! What is in a unit's folder besides what its receipts and manifest name: one listing
//! per run, and the judgement of objects no receipt names (see [`super::unreceipted`])
//! and of receipts whose object is gone.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use super::completeness::Coverage;
use super::error::SealError;
use super::manifest::{part_generation, Manifest, RemovedCopy, UnreceiptedObject};
use super::plan::{RawRef, Unit};
use super::unreceipted::{self, Verdict};
use crate::lake::Lake;

/// The objects directly in a unit's folder (path → size).
pub(crate) struct Listing(BTreeMap<String, u64>);

impl Listing {
    pub(crate) async fn of(lake: &Lake, dir: &str) -> Result<Self, SealError> {
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

    pub(crate) fn has(&self, path: &str) -> bool {
        self.0.contains_key(path)
    }

    pub(crate) fn paths(&self) -> impl Iterator<Item = &String> {
        self.0.keys()
    }

    /// Generations of the compacted objects present.
    pub(crate) fn part_generations(&self) -> BTreeSet<u64> {
        self.0.keys().filter_map(|p| part_generation(file_name(p))).collect()
    }

    /// Data objects that are not `named` (by receipts or a manifest): named like data
    /// (`.jsonl`, `.jsonl.gz`, `.jsonl.zst`, not hidden), and not compacted objects.
    pub(crate) fn unreceipted<'a>(&'a self, named: &'a BTreeSet<&str>) -> impl Iterator<Item = (&'a String, u64)> + 'a {
        self.0.iter().filter_map(move |(path, size)| {
            let name = file_name(path);
            let data_like = crate::lake::codec::is_data_name(name) && !name.starts_with('_') && !name.starts_with('.');
            (data_like && part_generation(name).is_none() && !named.contains(path.as_str())).then_some((path, *size))
        })
    }
}

pub(crate) fn file_name(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(_, name)| name)
}

/// What the receipts prove durable for a unit: the batch range of every receipt with
/// an object in it. Each (partition, sequence number) of this route and hour in such
/// a range is in that receipt's object for the hour, hence in the sealed objects once
/// the manifest consumes it (object names, routes and hours are deterministic from
/// the events).
pub(crate) fn coverage(unit: &Unit, except: &BTreeSet<&str>) -> Coverage {
    Coverage::new(
        unit.raw
            .iter()
            .filter(|r| !except.contains(r.path.as_str()))
            .map(|r| (r.partition.partition_id.as_str(), r.batch)),
    )
}

/// Raw objects a receipt names that are gone although no manifest consumed them. That
/// happens when a delivery in flight wrote (or found) its object, the seal removed the
/// object as a redundant copy, and the delivery then wrote its receipt. Such an
/// object's events are in the sealed objects when the manifest recorded its removal
/// (same path and SHA-256) or when other receipts cover its whole range; it is then
/// recorded as consumed. Any other missing object is lost data: the unit is refused.
pub(crate) fn absorb_missing<'u>(
    unit: &'u Unit,
    listing: &Listing,
    manifest: Option<&Manifest>,
) -> Result<Vec<&'u RawRef>, SealError> {
    let consumed: HashSet<&str> = manifest
        .map(|m| m.inputs.raw_objects.iter().map(String::as_str).collect())
        .unwrap_or_default();
    let missing: Vec<&RawRef> = unit
        .raw
        .iter()
        .filter(|r| !listing.has(&r.path) && !consumed.contains(r.path.as_str()))
        .collect();
    if missing.is_empty() {
        return Ok(missing);
    }
    let removed: &[RemovedCopy] = manifest.map(|m| m.removed_copies.as_slice()).unwrap_or_default();
    let missing_paths: BTreeSet<&str> = missing.iter().map(|r| r.path.as_str()).collect();
    let others = coverage(unit, &missing_paths);
    for r in &missing {
        let was_removed = removed.iter().any(|c| c.path == r.path && c.sha256 == r.sha256);
        if !was_removed && !others.covers(&r.partition.partition_id, r.range) {
            return Err(SealError::Corrupt {
                path: r.path.clone(),
                reason: format!(
                    "is named by receipt {} but is not in the lake, and no other receipt covers its sequence numbers {}",
                    r.receipt, r.range
                ),
            });
        }
        tracing::info!(
            unit = %unit.key,
            path = %r.path,
            receipt = %r.receipt,
            "a receipt names a copy removed earlier; its events are sealed already"
        );
    }
    Ok(missing)
}

/// The verdicts on a unit's objects without receipt.
#[derive(Debug, Default)]
pub(crate) struct Examined {
    /// Left in place; listed in the manifest.
    pub kept: Vec<UnreceiptedObject>,
    /// Of those, the ones the previous manifest did not list (worth a warning).
    pub new: Vec<UnreceiptedObject>,
    /// To delete once a manifest recording them is committed.
    pub redundant: Vec<RemovedCopy>,
}

/// Judges the objects without receipt in the folder against `coverage`. Raw objects a
/// manifest consumed (`consumed`) are not among them even when their receipt can no
/// longer be read: their events are sealed, and cleanup deletes them as inputs.
/// Objects the manifest already lists (`known`) are read again only when the coverage
/// moved into what was uncovered; others are read once.
pub(crate) async fn examine(
    lake: &Lake,
    unit: &Unit,
    listing: &Listing,
    manifest: Option<&Manifest>,
    coverage: &Coverage,
    may_delete: bool,
    now: &str,
) -> Result<Examined, SealError> {
    let mut named = unit.raw_paths();
    let consumed = manifest.map(|m| m.inputs.raw_objects.as_slice()).unwrap_or_default();
    named.extend(consumed.iter().map(String::as_str));
    let known = manifest.map(|m| m.unreceipted.as_slice()).unwrap_or_default();
    let mut out = Examined::default();
    for (path, size) in listing.unreceipted(&named) {
        let earlier = known.iter().find(|k| k.path == *path);
        if let Some(k) = earlier.filter(|k| k.bytes == size) {
            if !unreceipted::needs_reading(k, coverage, may_delete) {
                out.kept.push(k.clone());
                continue;
            }
        }
        // Gone since the listing (an operator moved it): nothing to judge.
        let Some(bytes) = lake.get_if_exists(path).await? else {
            continue;
        };
        let (p, c, n) = (path.clone(), coverage.clone(), now.to_string());
        // Decompressing is CPU work: off the runtime's threads.
        let verdict = tokio::task::spawn_blocking(move || unreceipted::judge(&p, &bytes, &c, may_delete, &n))
            .await
            .map_err(|e| SealError::Internal(format!("judging {path} failed: {e}")))?;
        match verdict {
            Verdict::Redundant(copy) => out.redundant.push(copy),
            Verdict::Kept(kept) => {
                if earlier.is_none() {
                    out.new.push(kept.clone());
                }
                out.kept.push(kept);
            }
        }
    }
    Ok(out)
}

/// The removal records of a manifest after removing `new` copies: one per path, the
/// latest removal winning (a copy written again and removed again has a new SHA-256).
pub(crate) fn with_removed(earlier: &[RemovedCopy], new: &[RemovedCopy]) -> Vec<RemovedCopy> {
    let mut by_path: BTreeMap<&str, &RemovedCopy> = BTreeMap::new();
    for c in earlier.iter().chain(new) {
        by_path.insert(&c.path, c);
    }
    by_path.into_values().cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(names: &[&str]) -> Listing {
        Listing(names.iter().map(|n| (format!("d/{n}"), 7)).collect())
    }

    #[test]
    fn only_data_objects_nothing_names_are_without_receipt() {
        let l = listing(&[
            "_manifest.json",
            "_recheck",
            "part-g2-00000.jsonl.gz",
            "0-0-9.jsonl.gz",
            "0-10-19.jsonl.gz",
            "0-20-29.jsonl",
            ".0-30-39.jsonl.gz",
            "notes.txt",
        ]);
        let named: BTreeSet<&str> = ["d/0-0-9.jsonl.gz"].into_iter().collect();
        let found: Vec<(&String, u64)> = l.unreceipted(&named).collect();
        assert_eq!(
            found,
            [
                (&"d/0-10-19.jsonl.gz".to_string(), 7),
                (&"d/0-20-29.jsonl".to_string(), 7)
            ]
        );
        assert_eq!(l.part_generations(), [2].into_iter().collect());
    }

    #[test]
    fn the_latest_removal_of_a_path_is_kept() {
        let copy = |path: &str, sha: &str| RemovedCopy {
            path: path.into(),
            bytes: 1,
            sha256: sha.into(),
            records: 1,
            partitions: Vec::new(),
            removed_at: "t".into(),
        };
        let merged = with_removed(&[copy("b", "1"), copy("a", "1")], &[copy("b", "2")]);
        let got: Vec<(&str, &str)> = merged.iter().map(|c| (c.path.as_str(), c.sha256.as_str())).collect();
        assert_eq!(got, [("a", "1"), ("b", "2")]);
    }
}
