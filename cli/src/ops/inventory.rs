//! What the lake holds, indexed by (hour, database, collection): receipts, the objects
//! they name, manifests of sealed hours and the objects those list, dead letters,
//! objects nothing accounts for, and the gaps between receipts.
//!
//! Built from one listing of the lake plus a read of every receipt and manifest; no
//! data object is read here. Manifests are read through a small, lenient view of their
//! own (missing fields default), so an operator can still look at a lake written by an
//! older or newer handler; the pieces that are the same for both — receipts, sequence
//! lines, the tiling of receipts into gaps and overlaps, and the manifest's entry types
//! — are the seal's own ([`hub2lake::seal::completeness`], [`hub2lake::seal::plan`],
//! [`hub2lake::seal::manifest`]), so `ls` and `verify` judge a lake exactly as the seal does.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::range::{hour_of, HourRange};
use super::OpsError;
use hub2lake::lake::layout::{is_internal, PathTemplate, Piece, Token, DEADLETTER_DIR, MANIFEST_NAME, RECEIPTS_DIR};
use hub2lake::lake::receipt::{ObjectKind, Receipt, ReceiptObject};
use hub2lake::lake::{Lake, LakeError};
pub use hub2lake::seal::completeness::PartitionKey;
use hub2lake::seal::completeness::{self, SeqRange, Span};
use hub2lake::seal::manifest::RECHECK_NAME;
pub use hub2lake::seal::manifest::{PartitionSummary, RemovedCopy, UnreceiptedObject};
pub use hub2lake::seal::plan::LoadedReceipt;
/// A unit is named as the seal names it: `ls`, `verify` and the seal's own reports
/// print the same `database/collection YYYY-MM-DDTHH`.
pub use hub2lake::seal::UnitKey;
use hub2lake::time::parse_time;

/// The fields of `_manifest.json` operators need. Unknown fields are ignored and
/// missing optional ones default, so newer manifests still read.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ManifestView {
    pub database: String,
    pub collection: String,
    pub hour: String,
    #[serde(default)]
    pub generation: u64,
    /// Rewrites in place of this generation (gaps or objects without receipt changed).
    #[serde(default)]
    pub revision: u64,
    #[serde(default)]
    pub complete: bool,
    #[serde(default)]
    pub compacted: bool,
    #[serde(default)]
    pub total_records: u64,
    #[serde(default)]
    pub duplicates_found: u64,
    #[serde(default)]
    pub duplicates_removed: u64,
    #[serde(default)]
    pub objects: Vec<ManifestObjectView>,
    /// Objects in the folder no receipt names that the seal left in place.
    #[serde(default)]
    pub unreceipted: Vec<UnreceiptedObject>,
    /// Objects without receipt the seal deleted as copies of sealed events.
    #[serde(default)]
    pub removed_copies: Vec<RemovedCopy>,
    #[serde(default)]
    pub inputs: InputsView,
}

/// One object a manifest lists.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ManifestObjectView {
    pub path: String,
    #[serde(default)]
    pub records: u64,
    #[serde(default)]
    pub bytes: u64,
    #[serde(default)]
    pub partitions: Vec<PartitionSummary>,
}

/// What a seal consumed.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct InputsView {
    #[serde(default)]
    pub receipts: Vec<String>,
    #[serde(default)]
    pub raw_objects: Vec<String>,
    #[serde(default)]
    pub previous_objects: Vec<String>,
}

/// The sequence line a receipt belongs to.
pub fn partition_of(lr: &LoadedReceipt) -> PartitionKey {
    PartitionKey {
        eventhub: lr.receipt.eventhub.clone(),
        consumer_group: lr.receipt.consumer_group.clone(),
        partition_id: lr.receipt.partition_id.clone(),
    }
}

/// A data object as its receipt describes it.
#[derive(Debug, Clone)]
pub struct RawObject {
    pub entry: ReceiptObject,
    /// The receipt naming it.
    pub receipt: String,
    pub partition: PartitionKey,
    /// Size in the listing; `None` when the object is not in the lake.
    pub size: Option<u64>,
}

/// An object a manifest lists.
#[derive(Debug, Clone)]
pub struct SealedObject {
    pub entry: ManifestObjectView,
    pub size: Option<u64>,
}

/// A unit's manifest.
#[derive(Debug, Clone)]
pub struct UnitManifest {
    pub path: String,
    pub manifest: ManifestView,
}

impl UnitManifest {
    /// Whether the seal consumed (or lists) `path`: a raw object missing for this
    /// reason was compacted away, which is expected.
    pub fn accounts_for(&self, path: &str) -> bool {
        let m = &self.manifest;
        m.objects.iter().any(|o| o.path == path)
            || m.inputs.raw_objects.iter().any(|p| p == path)
            || m.inputs.previous_objects.iter().any(|p| p == path)
    }

    /// The removal record of the object a receipt names as `path` with `sha256`: the
    /// seal deleted it as a copy of events it had sealed, and a delivery that was in
    /// flight then wrote its receipt. The seal matches by path and SHA-256 too (a copy
    /// written again under the same name is another object).
    pub fn removed_copy(&self, path: &str, sha256: &str) -> Option<&RemovedCopy> {
        self.manifest
            .removed_copies
            .iter()
            .find(|c| c.path == path && c.sha256 == sha256)
    }

    /// The manifest's entry for an object without receipt it left in the folder, when
    /// the object there now is the one the seal judged (same size: objects are written
    /// create-only, so another size is another object, which the seal judges again).
    pub fn unreceipted(&self, path: &str, size: u64) -> Option<&UnreceiptedObject> {
        self.manifest
            .unreceipted
            .iter()
            .find(|u| u.path == path && u.bytes == size)
    }
}

/// One (hour, database, collection).
#[derive(Debug, Clone)]
pub struct Unit {
    pub key: UnitKey,
    /// The folder (relative to the lake root).
    pub dir: String,
    pub manifest: Option<UnitManifest>,
    /// Size of `_manifest.json`, when there is one.
    pub manifest_size: Option<u64>,
    /// Data objects receipts name for this unit (present or not).
    pub raw: Vec<RawObject>,
    /// Objects the manifest lists (present or not).
    pub sealed: Vec<SealedObject>,
    /// Data objects in the folder no receipt or manifest accounts for: (path, size).
    pub orphans: Vec<(String, u64)>,
    /// Data objects no receipt names that the manifest lists in `unreceipted` (left
    /// in place by the seal, reported there), with their size now.
    pub unreceipted: Vec<(UnreceiptedObject, u64)>,
    /// Whether the folder holds the seal's `_recheck` marker: the seal reads this
    /// hour's manifest again on every run (it lists gaps or objects without receipt,
    /// or a copy was removed within the hour, or an operator asked for it).
    pub recheck: bool,
    /// Gaps whose neighbouring receipts wrote to this unit.
    pub gaps: usize,
    /// Receipts with a data object in this unit.
    pub receipts: BTreeSet<String>,
}

impl Unit {
    fn new(key: UnitKey, dir: String) -> Self {
        Self {
            key,
            dir,
            manifest: None,
            manifest_size: None,
            raw: Vec::new(),
            sealed: Vec::new(),
            orphans: Vec::new(),
            unreceipted: Vec::new(),
            recheck: false,
            gaps: 0,
            receipts: BTreeSet::new(),
        }
    }

    pub fn is_sealed(&self) -> bool {
        self.manifest.is_some()
    }

    /// Files a data object in the folder that no receipt or manifest names: one the
    /// manifest lists in `unreceipted` was judged by the seal and is reported there;
    /// anything else is an orphan.
    fn place_unnamed(&mut self, path: String, size: u64) {
        let listed = self.manifest.as_ref().and_then(|m| m.unreceipted(&path, size)).cloned();
        match listed {
            Some(entry) => self.unreceipted.push((entry, size)),
            None => self.orphans.push((path, size)),
        }
    }

    /// Raw objects present that the manifest does not list: everything of an unsealed
    /// unit, late data of a sealed one, or inputs whose cleanup is unfinished.
    pub fn pending_raw(&self) -> impl Iterator<Item = &RawObject> {
        self.raw.iter().filter(|r| {
            r.size.is_some()
                && !self
                    .manifest
                    .as_ref()
                    .is_some_and(|m| m.manifest.objects.iter().any(|o| o.path == r.entry.path))
        })
    }

    /// Raw objects present that no manifest consumed yet (late data or unsealed).
    pub fn unconsumed_raw(&self) -> impl Iterator<Item = &RawObject> {
        self.pending_raw()
            .filter(|r| !self.manifest.as_ref().is_some_and(|m| m.accounts_for(&r.entry.path)))
    }

    /// Every data object in the folder now, as (path, size), sorted: what a reader
    /// globbing the folder sees.
    pub fn present_objects(&self) -> Vec<(String, u64)> {
        let mut out: BTreeMap<String, u64> = BTreeMap::new();
        for o in &self.sealed {
            if let Some(size) = o.size {
                out.insert(o.entry.path.clone(), size);
            }
        }
        for r in &self.raw {
            if let Some(size) = r.size {
                out.insert(r.entry.path.clone(), size);
            }
        }
        out.extend(self.orphans.iter().cloned());
        out.extend(self.unreceipted.iter().map(|(u, size)| (u.path.clone(), *size)));
        out.into_iter().collect()
    }

    /// The objects to read for each event once as far as the lake knows: a sealed
    /// unit's manifest objects plus raw objects no manifest consumed yet; every raw
    /// object of an unsealed unit.
    pub fn readable_objects(&self) -> Vec<(String, u64)> {
        let mut out: BTreeMap<String, u64> = BTreeMap::new();
        for o in &self.sealed {
            if let Some(size) = o.size {
                out.insert(o.entry.path.clone(), size);
            }
        }
        for r in self.unconsumed_raw() {
            out.insert(r.entry.path.clone(), r.size.unwrap_or(r.entry.bytes));
        }
        out.into_iter().collect()
    }

    /// Distinct partition ids that wrote to the unit.
    pub fn partitions(&self) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = self.raw.iter().map(|r| r.partition.partition_id.clone()).collect();
        for o in &self.sealed {
            out.extend(o.entry.partitions.iter().map(|p| p.partition_id.clone()));
        }
        out
    }
}

/// A dead-letter object a receipt names.
#[derive(Debug, Clone)]
pub struct DeadLetterObject {
    pub entry: ReceiptObject,
    pub receipt: String,
    pub hour: DateTime<Utc>,
    pub size: Option<u64>,
}

/// An object nothing accounts for, outside any unit folder (or a dead letter).
#[derive(Debug, Clone, Serialize)]
pub struct Stray {
    pub path: String,
    pub bytes: u64,
    /// The hour its path names, when it names one.
    pub hour: Option<DateTime<Utc>>,
}

/// Sequence numbers no receipt covers, between two receipts that do.
#[derive(Debug, Clone)]
pub struct Gap {
    pub partition: PartitionKey,
    pub first_missing: i64,
    pub last_missing: i64,
    pub before_receipt: String,
    pub after_receipt: String,
    /// Hour of the last event before the gap.
    pub before_hour: Option<DateTime<Utc>>,
    /// Hour of the first event after the gap.
    pub after_hour: Option<DateTime<Utc>>,
}

impl Gap {
    pub fn missing(&self) -> u64 {
        self.last_missing.abs_diff(self.first_missing) + 1
    }

    /// Whether the hours around the gap touch `range` (unknown hours always do).
    pub fn touches(&self, range: &HourRange) -> bool {
        match (self.before_hour, self.after_hour) {
            (Some(b), Some(a)) => {
                range.contains(b)
                    || range.contains(a)
                    || (range.first.is_none_or(|f| b < f) && range.last.is_none_or(|l| a > l))
            }
            _ => true,
        }
    }
}

/// Something in the lake that could not be read as what it claims to be.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub path: String,
    pub reason: String,
}

/// Everything the lake holds, indexed.
#[derive(Debug, Default)]
pub struct Inventory {
    pub receipts: Vec<LoadedReceipt>,
    pub units: BTreeMap<UnitKey, Unit>,
    pub dead_letters: Vec<DeadLetterObject>,
    /// Objects nothing accounts for that are not in a unit folder.
    pub strays: Vec<Stray>,
    /// Other files (not JSON Lines, not ours): listed, not judged.
    pub foreign: Vec<(String, u64)>,
    pub gaps: Vec<Gap>,
    /// Sequence ranges covered by more than one receipt (re-deliveries).
    pub overlaps: u64,
    pub problems: Vec<Problem>,
    pub listed_objects: u64,
    pub listed_bytes: u64,
    /// When the lake was listed, and when each listed object was last written: an
    /// object no receipt names yet may belong to a delivery in flight.
    pub listed_at: Option<DateTime<Utc>>,
    pub last_modified: HashMap<String, DateTime<Utc>>,
}

/// What kind of object a listed path is.
enum Listed {
    Receipt,
    Manifest,
    /// The seal's `_recheck` marker in an hour folder.
    Marker,
    DeadLetter,
    Data,
    Internal,
    Foreign,
}

fn classify(path: &str) -> Listed {
    let name = path.rsplit('/').next().unwrap_or(path);
    if path.starts_with(&format!("{RECEIPTS_DIR}/")) {
        if name.ends_with(".json") {
            Listed::Receipt
        } else {
            Listed::Foreign
        }
    } else if is_internal(path) {
        // The start-up probe, left behind only if the handler died between writing
        // and deleting it.
        Listed::Internal
    } else if path.starts_with(&format!("{DEADLETTER_DIR}/")) {
        Listed::DeadLetter
    } else if name == MANIFEST_NAME {
        Listed::Manifest
    } else if name == RECHECK_NAME {
        Listed::Marker
    } else if hub2lake::lake::codec::is_data_name(name) {
        Listed::Data
    } else {
        Listed::Foreign
    }
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

impl Inventory {
    /// Lists the lake and reads every receipt and manifest (`concurrency` at a time).
    /// `template` is the path template (`HUB2LAKE_PATH_TEMPLATE`), used to place
    /// objects no receipt or manifest names.
    pub async fn load(lake: &Lake, template: &PathTemplate, concurrency: usize) -> Result<Self, OpsError> {
        let listed_at = Utc::now();
        let listed = lake.list("").await?;
        let mut inv = Inventory {
            listed_objects: listed.len() as u64,
            listed_bytes: listed.iter().map(|o| o.size).sum(),
            listed_at: Some(listed_at),
            ..Inventory::default()
        };
        let mut sizes: HashMap<String, u64> = HashMap::with_capacity(listed.len());
        let mut receipt_paths = Vec::new();
        let mut manifest_paths = Vec::new();
        let mut marker_dirs = HashSet::new();
        for o in listed {
            match classify(&o.path) {
                Listed::Receipt => receipt_paths.push(o.path.clone()),
                Listed::Manifest => manifest_paths.push(o.path.clone()),
                Listed::Marker => {
                    marker_dirs.insert(parent(&o.path).to_string());
                }
                Listed::Foreign => inv.foreign.push((o.path.clone(), o.size)),
                Listed::Data => {
                    inv.last_modified.insert(o.path.clone(), o.last_modified);
                }
                Listed::DeadLetter | Listed::Internal => {}
            }
            sizes.insert(o.path, o.size);
        }
        tracing::debug!(
            objects = inv.listed_objects,
            receipts = receipt_paths.len(),
            manifests = manifest_paths.len(),
            "listed the lake"
        );
        let receipts = read_all::<Receipt>(lake, receipt_paths, concurrency).await?;
        let manifests = read_all::<ManifestView>(lake, manifest_paths, concurrency).await?;
        inv.place_receipts(receipts, &sizes);
        inv.place_manifests(manifests, &sizes);
        inv.place_unaccounted(&sizes, &DirMatcher::new(template));
        for unit in inv.units.values_mut() {
            unit.recheck = marker_dirs.contains(&unit.dir);
        }
        inv.find_gaps();
        Ok(inv)
    }

    /// How long before the listing a data object was last written (zero if it is
    /// newer); `None` for paths not listed as data.
    pub fn age(&self, path: &str) -> Option<chrono::TimeDelta> {
        let (at, modified) = (self.listed_at?, self.last_modified.get(path)?);
        Some((at - *modified).max(chrono::TimeDelta::zero()))
    }

    fn unit_mut(&mut self, key: UnitKey, dir: &str) -> &mut Unit {
        self.units
            .entry(key.clone())
            .or_insert_with(|| Unit::new(key, dir.to_string()))
    }

    fn place_receipts(&mut self, loaded: Vec<(String, Result<Receipt, String>)>, sizes: &HashMap<String, u64>) {
        for (path, parsed) in loaded {
            let receipt = match parsed {
                Ok(r) => r,
                Err(reason) => {
                    self.problems.push(Problem { path, reason });
                    continue;
                }
            };
            let lr = LoadedReceipt { path, receipt };
            for o in &lr.receipt.objects {
                self.place_receipt_object(&lr, o, sizes);
            }
            self.receipts.push(lr);
        }
        self.receipts.sort_by(|a, b| a.path.cmp(&b.path));
    }

    fn place_receipt_object(&mut self, lr: &LoadedReceipt, o: &ReceiptObject, sizes: &HashMap<String, u64>) {
        let Some(hour) = parse_time(&o.hour).map(hour_of) else {
            self.problems.push(Problem {
                path: lr.path.clone(),
                reason: format!("object {} has hour {:?}, not an RFC 3339 time", o.path, o.hour),
            });
            return;
        };
        let size = sizes.get(&o.path).copied();
        match o.kind {
            ObjectKind::DeadLetter => self.dead_letters.push(DeadLetterObject {
                entry: o.clone(),
                receipt: lr.path.clone(),
                hour,
                size,
            }),
            ObjectKind::Data => {
                let key = UnitKey {
                    hour,
                    database: o.database.clone().unwrap_or_default(),
                    collection: o.collection.clone().unwrap_or_default(),
                };
                let unit = self.unit_mut(key, parent(&o.path));
                unit.receipts.insert(lr.path.clone());
                unit.raw.push(RawObject {
                    entry: o.clone(),
                    receipt: lr.path.clone(),
                    partition: partition_of(lr),
                    size,
                });
            }
        }
    }

    fn place_manifests(&mut self, loaded: Vec<(String, Result<ManifestView, String>)>, sizes: &HashMap<String, u64>) {
        for (path, parsed) in loaded {
            let manifest = match parsed {
                Ok(m) => m,
                Err(reason) => {
                    self.problems.push(Problem { path, reason });
                    continue;
                }
            };
            let Some(hour) = parse_time(&manifest.hour).map(hour_of) else {
                self.problems.push(Problem {
                    path,
                    reason: format!("manifest hour {:?} is not an RFC 3339 time", manifest.hour),
                });
                continue;
            };
            let key = UnitKey {
                hour,
                database: manifest.database.clone(),
                collection: manifest.collection.clone(),
            };
            let manifest_size = sizes.get(&path).copied();
            let unit = self.unit_mut(key, parent(&path));
            unit.sealed = manifest
                .objects
                .iter()
                .map(|o| SealedObject {
                    entry: o.clone(),
                    size: sizes.get(&o.path).copied(),
                })
                .collect();
            unit.manifest_size = manifest_size;
            unit.manifest = Some(UnitManifest { path, manifest });
        }
    }

    /// Data and dead-letter objects that no receipt or manifest names.
    fn place_unaccounted(&mut self, sizes: &HashMap<String, u64>, matcher: &DirMatcher) {
        let mut known: HashSet<&str> = HashSet::new();
        for unit in self.units.values() {
            known.extend(unit.raw.iter().map(|r| r.entry.path.as_str()));
            if let Some(m) = &unit.manifest {
                known.extend(m.manifest.objects.iter().map(|o| o.path.as_str()));
                known.extend(m.manifest.inputs.previous_objects.iter().map(String::as_str));
                known.extend(m.manifest.inputs.raw_objects.iter().map(String::as_str));
            }
        }
        known.extend(self.dead_letters.iter().map(|d| d.entry.path.as_str()));
        let mut unaccounted: Vec<(String, u64)> = sizes
            .iter()
            .filter(|(p, _)| matches!(classify(p), Listed::Data | Listed::DeadLetter) && !known.contains(p.as_str()))
            .map(|(p, s)| (p.clone(), *s))
            .collect();
        unaccounted.sort();
        let dirs: HashMap<String, UnitKey> = self.units.values().map(|u| (u.dir.clone(), u.key.clone())).collect();
        for (path, size) in unaccounted {
            let dir = parent(&path);
            if let Some(key) = dirs.get(dir) {
                self.unit_mut(key.clone(), dir).place_unnamed(path, size);
            } else if matches!(classify(&path), Listed::Data) {
                match matcher.unit_of(dir) {
                    Some(key) => self.unit_mut(key, dir).orphans.push((path, size)),
                    None => self.strays.push(Stray {
                        path,
                        bytes: size,
                        hour: None,
                    }),
                }
            } else {
                let hour = deadletter_hour(&path);
                self.strays.push(Stray {
                    path,
                    bytes: size,
                    hour,
                });
            }
        }
    }

    /// Tiles every partition's receipts with the seal's own tiling: holes are gaps,
    /// double cover overlaps.
    fn find_gaps(&mut self) {
        let mut lines: BTreeMap<PartitionKey, Vec<Span>> = BTreeMap::new();
        for (i, r) in self.receipts.iter().enumerate() {
            let (first, last) = (r.receipt.first_sequence_number, r.receipt.last_sequence_number);
            if first > last {
                self.problems.push(Problem {
                    path: r.path.clone(),
                    reason: format!("first sequence number {first} is after the last {last}"),
                });
                continue;
            }
            lines.entry(partition_of(r)).or_default().push(Span {
                range: SeqRange::new(first, last),
                id: i,
            });
        }
        for (partition, spans) in lines {
            let tiling = completeness::tile(&spans);
            self.overlaps += tiling.overlaps.len() as u64;
            for g in tiling.gaps {
                let gap = self.gap(&partition, &g);
                self.gaps.push(gap);
            }
        }
        let touched: Vec<(String, String)> = self
            .gaps
            .iter()
            .map(|g| (g.before_receipt.clone(), g.after_receipt.clone()))
            .collect();
        for unit in self.units.values_mut() {
            unit.gaps = touched
                .iter()
                .filter(|(b, a)| unit.receipts.contains(b) || unit.receipts.contains(a))
                .count();
        }
    }

    /// A gap of the tiling, with the receipts and hours on both sides.
    fn gap(&self, partition: &PartitionKey, g: &completeness::GapSpan) -> Gap {
        let before = &self.receipts[g.before];
        let after = &self.receipts[g.after];
        Gap {
            partition: partition.clone(),
            first_missing: g.missing.first,
            last_missing: g.missing.last,
            before_receipt: before.path.clone(),
            after_receipt: after.path.clone(),
            before_hour: edge_hour(&before.receipt, true),
            after_hour: edge_hour(&after.receipt, false),
        }
    }

    /// Receipts with at least one object in `range`.
    pub fn receipts_in<'a>(&'a self, range: &'a HourRange) -> impl Iterator<Item = &'a LoadedReceipt> + 'a {
        self.receipts.iter().filter(move |r| {
            r.receipt
                .objects
                .iter()
                .any(|o| parse_time(&o.hour).is_some_and(|h| range.contains(h)))
        })
    }

    /// Units in `range`, optionally of one database and/or collection, oldest first.
    pub fn units_in<'a>(
        &'a self,
        range: &'a HourRange,
        database: Option<&'a str>,
        collection: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Unit> + 'a {
        self.units.values().filter(move |u| {
            range.contains(u.key.hour)
                && database.is_none_or(|d| u.key.database == d)
                && collection.is_none_or(|c| u.key.collection == c)
        })
    }
}

/// The hour of a receipt's last (`last = true`) or first event.
fn edge_hour(r: &Receipt, last: bool) -> Option<DateTime<Utc>> {
    let from_time = if last {
        r.last_enqueued_time.as_deref()
    } else {
        r.first_enqueued_time.as_deref()
    };
    let object_hours = r.objects.iter().filter_map(|o| parse_time(&o.hour));
    from_time
        .and_then(parse_time)
        .or_else(|| if last { object_hours.max() } else { object_hours.min() })
        .map(hour_of)
}

/// `_deadletter/YYYY/MM/DD/HH/…` → the hour.
fn deadletter_hour(path: &str) -> Option<DateTime<Utc>> {
    let rest = path.strip_prefix(DEADLETTER_DIR)?.strip_prefix('/')?;
    let parts: Vec<&str> = rest.splitn(5, '/').collect();
    let [y, m, d, h, _] = parts.as_slice() else {
        return None;
    };
    let text = format!("{y}-{m}-{d}T{h}:00:00Z");
    parse_time(&text)
}

/// Reads and parses JSON objects, `concurrency` at a time. A missing object (deleted
/// between the listing and the read, e.g. by a seal run) is skipped; one that does not
/// parse comes back as an error string.
async fn read_all<T: serde::de::DeserializeOwned + Send + 'static>(
    lake: &Lake,
    paths: Vec<String>,
    concurrency: usize,
) -> Result<Vec<(String, Result<T, String>)>, OpsError> {
    let results: Vec<Option<(String, Result<T, String>)>> = futures::stream::iter(paths)
        .map(|path| async move {
            match lake.get_if_exists(&path).await? {
                None => Ok::<_, LakeError>(None),
                Some(bytes) => {
                    let parsed = serde_json::from_slice::<T>(&bytes).map_err(|e| format!("does not parse: {e}"));
                    Ok(Some((path, parsed)))
                }
            }
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect()
        .await?;
    let mut out: Vec<_> = results.into_iter().flatten().collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Places a folder by the path template's folder part, for objects nothing names.
#[derive(Debug, Clone)]
pub struct DirMatcher {
    /// The template's pieces, one list per folder segment (the file name left out).
    segments: Vec<Vec<Piece>>,
}

impl DirMatcher {
    /// Built from the template the settings parsed (`HUB2LAKE_PATH_TEMPLATE`), so a
    /// folder is read back with the pieces the handler wrote it with.
    pub fn new(template: &PathTemplate) -> Self {
        let mut segments = folder_segments(template.pieces());
        segments.pop();
        Self { segments }
    }

    /// The unit a folder belongs to, when its path matches the template and names an hour.
    pub fn unit_of(&self, dir: &str) -> Option<UnitKey> {
        let parts: Vec<&str> = if dir.is_empty() {
            Vec::new()
        } else {
            dir.split('/').collect()
        };
        if parts.len() != self.segments.len() {
            return None;
        }
        let mut caps: Vec<(Token, String)> = Vec::new();
        for (pieces, part) in self.segments.iter().zip(&parts) {
            if !match_pieces(pieces, part, &mut caps) {
                return None;
            }
        }
        let get = |token: Token| caps.iter().find(|(t, _)| *t == token).map(|(_, v)| v.as_str());
        let text = format!(
            "{}-{}-{}T{}:00:00Z",
            get(Token::Year)?,
            get(Token::Month)?,
            get(Token::Day)?,
            get(Token::Hour)?
        );
        Some(UnitKey {
            hour: parse_time(&text)?,
            database: get(Token::Database).unwrap_or("unrouted").to_string(),
            collection: get(Token::Collection).unwrap_or("unrouted").to_string(),
        })
    }
}

/// The template's pieces split at every `/` of its literal text: one list per path
/// segment. Tokens never hold a `/` (their values are sanitised), so only literals split.
fn folder_segments(pieces: &[Piece]) -> Vec<Vec<Piece>> {
    let mut segments = Vec::new();
    let mut current = Vec::new();
    for piece in pieces {
        let Piece::Literal(text) = piece else {
            current.push(piece.clone());
            continue;
        };
        for (i, part) in text.split('/').enumerate() {
            if i > 0 {
                segments.push(std::mem::take(&mut current));
            }
            if !part.is_empty() {
                current.push(Piece::Literal(part.to_string()));
            }
        }
    }
    segments.push(current);
    segments
}

fn token_accepts(token: Token, value: &str) -> bool {
    let digits = |n: usize| value.len() == n && value.bytes().all(|b| b.is_ascii_digit());
    match token {
        Token::Year => digits(4),
        Token::Month | Token::Day | Token::Hour => digits(2),
        Token::FirstSeq | Token::LastSeq => {
            !value.is_empty() && value.trim_start_matches('-').bytes().all(|b| b.is_ascii_digit())
        }
        _ => !value.is_empty(),
    }
}

fn match_pieces(pieces: &[Piece], s: &str, caps: &mut Vec<(Token, String)>) -> bool {
    match pieces.split_first() {
        None => s.is_empty(),
        Some((Piece::Literal(lit), rest)) => s
            .strip_prefix(lit.as_str())
            .is_some_and(|r| match_pieces(rest, r, caps)),
        Some((Piece::Token(token), rest)) => {
            for end in (1..=s.len()).rev().filter(|e| s.is_char_boundary(*e)) {
                let (value, tail) = s.split_at(end);
                if !token_accepts(*token, value) {
                    continue;
                }
                caps.push((*token, value.to_string()));
                if match_pieces(rest, tail, caps) {
                    return true;
                }
                caps.pop();
            }
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn folders_are_placed_by_the_template() {
        let template = |raw: &str| PathTemplate::parse(raw).unwrap();
        let m = DirMatcher::new(&template(hub2lake::config::DEFAULT_TEMPLATE));
        let key = m.unit_of("shop/orders/2025/01/15/10").unwrap();
        assert_eq!(key.hour, Utc.with_ymd_and_hms(2025, 1, 15, 10, 0, 0).unwrap());
        assert_eq!((key.database.as_str(), key.collection.as_str()), ("shop", "orders"));
        assert!(m.unit_of("shop/orders/2025/01/15").is_none());
        assert!(m.unit_of("shop/orders/2025/01/15/xx").is_none());
        assert!(m.unit_of("").is_none());

        let m = DirMatcher::new(&template(
            "{eventhub}/{yyyy}{mm}{dd}-{hh}h/{partition}-{first_seq}-{last_seq}",
        ));
        let key = m.unit_of("hub/20250115-07h").unwrap();
        assert_eq!(key.hour, Utc.with_ymd_and_hms(2025, 1, 15, 7, 0, 0).unwrap());
        assert_eq!(key.database, "unrouted");
    }

    #[test]
    fn paths_are_classified() {
        assert!(matches!(classify("_receipts/h/c/0/1-2.json"), Listed::Receipt));
        assert!(matches!(classify("a/b/2025/01/15/10/_manifest.json"), Listed::Manifest));
        assert!(matches!(classify("a/b/2025/01/15/10/_recheck"), Listed::Marker));
        assert!(matches!(classify("a/b/2025/01/15/10/0-1-2.jsonl.gz"), Listed::Data));
        assert!(matches!(classify("a/b/2025/01/15/10/0-1-2.jsonl.zst"), Listed::Data));
        assert!(matches!(
            classify("_deadletter/2025/01/15/10/0-1-2.jsonl"),
            Listed::DeadLetter
        ));
        assert!(matches!(classify("_hub2lake/probe-1"), Listed::Internal));
        assert!(matches!(classify("_hub2lake-probe-1-2"), Listed::Internal));
        assert!(matches!(classify("notes.txt"), Listed::Foreign));
        assert_eq!(
            deadletter_hour("_deadletter/2025/01/15/10/0-1-2.jsonl"),
            Some(Utc.with_ymd_and_hms(2025, 1, 15, 10, 0, 0).unwrap())
        );
        assert_eq!(deadletter_hour("_deadletter/x.jsonl"), None);
    }
}
