//! From receipts to sealing units: which raw objects make up each (database,
//! collection, hour), which partitions wrote to it, where its manifest goes, and which
//! gaps and overlaps it must report. Pure: no storage calls.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, TimeDelta, Timelike, Utc};

use super::completeness::{self, PartitionKey, SeqRange, Span};
use super::manifest::{Gap, GapSide, Overlap};
use crate::config::TimeSource;
use crate::lake::receipt::{ObjectKind, Receipt, ReceiptObject};
use crate::time::{format_hour, parse_time};

/// A receipt read from the lake.
#[derive(Debug, Clone)]
pub struct LoadedReceipt {
    pub path: String,
    pub receipt: Receipt,
}

/// A raw data object as its receipt describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRef {
    pub path: String,
    pub partition: PartitionKey,
    /// The sequence numbers of its records (first and last).
    pub range: SeqRange,
    /// The sequence range of the whole batch (the receipt): every event in it is
    /// durable in one of the receipt's objects.
    pub batch: SeqRange,
    pub records: u64,
    pub bytes: u64,
    pub uncompressed_bytes: u64,
    pub sha256: String,
    /// Path of the receipt naming it.
    pub receipt: String,
}

/// What is sealed as one: a route and an hour (one folder of the lake). The seal, the
/// seal's reports and the operator tools all name a unit by this key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct UnitKey {
    /// Start of the hour. Oldest first: the field order makes that the sort order.
    pub hour: DateTime<Utc>,
    pub database: String,
    pub collection: String,
}

impl UnitKey {
    pub fn hour_end(&self) -> DateTime<Utc> {
        self.hour + TimeDelta::hours(1)
    }
}

impl std::fmt::Display for UnitKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{} {}", self.database, self.collection, format_hour(self.hour))
    }
}

/// One sealing unit.
#[derive(Debug, Clone)]
pub struct Unit {
    pub key: UnitKey,
    /// The folder of its raw objects, where the manifest and compacted objects go.
    pub dir: String,
    /// Its raw objects, sorted by path.
    pub raw: Vec<RawRef>,
    /// Receipts with a data object in the unit, sorted.
    pub receipts: Vec<String>,
    /// Partitions that wrote to the unit (only these can hold it open).
    pub writers: BTreeSet<PartitionKey>,
    /// Latest `written_at` of its receipts: grace counts from here.
    pub last_write: Option<DateTime<Utc>>,
    pub gaps: Vec<Gap>,
    pub overlaps: Vec<Overlap>,
    /// Why the unit cannot be sealed (reported as a warning, the unit is left alone).
    pub problem: Option<String>,
}

impl Unit {
    fn new(key: UnitKey) -> Self {
        Self {
            key,
            dir: String::new(),
            raw: Vec::new(),
            receipts: Vec::new(),
            writers: BTreeSet::new(),
            last_write: None,
            gaps: Vec::new(),
            overlaps: Vec::new(),
            problem: None,
        }
    }

    pub fn raw_paths(&self) -> BTreeSet<&str> {
        self.raw.iter().map(|r| r.path.as_str()).collect()
    }
}

/// Everything the receipts say.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Oldest hour first.
    pub units: Vec<Unit>,
    /// Per partition: the latest event time any of its receipts reports.
    pub watermarks: BTreeMap<PartitionKey, DateTime<Utc>>,
    pub gaps: usize,
    pub overlaps: usize,
    pub warnings: Vec<String>,
}

impl Plan {
    /// The watermark of each writer of `unit`, in writer order.
    pub fn writer_watermarks(&self, unit: &Unit) -> Vec<Option<DateTime<Utc>>> {
        unit.writers.iter().map(|w| self.watermarks.get(w).copied()).collect()
    }
}

/// The event time a receipt proves its partition has reached. With the processing
/// time as the hour source, hours follow the writer's clock, so `written_at` does.
fn receipt_watermark(r: &Receipt, time_source: TimeSource) -> Option<DateTime<Utc>> {
    match time_source {
        TimeSource::Processed => parse_time(&r.written_at),
        // clusterTime is close to (and never after) the enqueued time of a change
        // event; a lagging producer can still add to a sealed hour: that re-opens it.
        TimeSource::Enqueued | TimeSource::ClusterTime => r.last_enqueued_time.as_deref().and_then(parse_time),
    }
}

fn partition_of(r: &Receipt) -> PartitionKey {
    PartitionKey {
        eventhub: r.eventhub.clone(),
        consumer_group: r.consumer_group.clone(),
        partition_id: r.partition_id.clone(),
    }
}

/// The unit of a data object, or why it has none.
fn unit_key_of(o: &ReceiptObject) -> Result<UnitKey, String> {
    let hour = parse_time(&o.hour).ok_or_else(|| format!("hour {:?} is not an RFC 3339 time", o.hour))?;
    if hour.minute() != 0 || hour.second() != 0 || hour.nanosecond() != 0 {
        return Err(format!("hour {:?} is not the start of an hour", o.hour));
    }
    match (&o.database, &o.collection) {
        (Some(database), Some(collection)) => Ok(UnitKey {
            hour,
            database: database.clone(),
            collection: collection.clone(),
        }),
        _ => Err("data object without database/collection".into()),
    }
}

/// Builds the plan. Receipts that do not make sense are skipped with a warning; their
/// sequence range then shows up as a gap, which is what it is for the seal.
pub fn build(receipts: &[LoadedReceipt], time_source: TimeSource) -> Plan {
    let mut plan = Plan::default();
    let mut units: BTreeMap<UnitKey, Unit> = BTreeMap::new();
    let mut unit_of_path: HashMap<&str, UnitKey> = HashMap::new();
    let mut spans: BTreeMap<PartitionKey, Vec<Span>> = BTreeMap::new();

    for (i, lr) in receipts.iter().enumerate() {
        let r = &lr.receipt;
        if r.first_sequence_number > r.last_sequence_number {
            plan.warnings.push(format!(
                "receipt {} has first sequence number {} after last {}; ignored",
                lr.path, r.first_sequence_number, r.last_sequence_number
            ));
            continue;
        }
        let partition = partition_of(r);
        if let Some(w) = receipt_watermark(r, time_source) {
            let mark = plan.watermarks.entry(partition.clone()).or_insert(w);
            *mark = (*mark).max(w);
        }
        spans.entry(partition.clone()).or_default().push(Span {
            range: SeqRange::new(r.first_sequence_number, r.last_sequence_number),
            id: i,
        });
        let written_at = parse_time(&r.written_at);
        for o in r.objects.iter().filter(|o| o.kind == ObjectKind::Data) {
            let key = match unit_key_of(o) {
                Ok(k) => k,
                Err(e) => {
                    plan.warnings
                        .push(format!("{} in receipt {}: {e}; not sealed", o.path, lr.path));
                    continue;
                }
            };
            if unit_of_path.contains_key(o.path.as_str()) {
                // Only a custom template can name two batches' objects alike; the
                // first receipt keeps it.
                plan.warnings.push(format!(
                    "{} is named by more than one receipt (also {})",
                    o.path, lr.path
                ));
                continue;
            }
            unit_of_path.insert(&o.path, key.clone());
            let unit = units.entry(key.clone()).or_insert_with(|| Unit::new(key));
            unit.raw.push(RawRef {
                path: o.path.clone(),
                partition: partition.clone(),
                range: SeqRange::new(o.first_sequence_number, o.last_sequence_number),
                batch: SeqRange::new(r.first_sequence_number, r.last_sequence_number),
                records: o.records,
                bytes: o.bytes,
                uncompressed_bytes: o.uncompressed_bytes,
                sha256: o.sha256.clone(),
                receipt: lr.path.clone(),
            });
            unit.writers.insert(partition.clone());
            // A receipt's objects are visited together: comparing with the last
            // entry keeps the list free of repeats without searching it.
            if unit.receipts.last() != Some(&lr.path) {
                unit.receipts.push(lr.path.clone());
            }
            unit.last_write = unit.last_write.max(written_at);
        }
    }

    for (partition, spans) in &spans {
        let tiling = completeness::tile(spans);
        plan.gaps += tiling.gaps.len();
        plan.overlaps += tiling.overlaps.len();
        for g in &tiling.gaps {
            attribute_gap(&mut units, &unit_of_path, receipts, partition, g);
        }
        for o in &tiling.overlaps {
            attribute_overlap(&mut units, &unit_of_path, receipts, partition, o);
        }
    }

    let mut units: Vec<Unit> = units.into_values().collect();
    for unit in &mut units {
        unit.raw.sort_by(|a, b| a.path.cmp(&b.path));
        unit.receipts.sort();
        resolve_dir(unit);
        check_partition_ids(unit);
    }
    check_shared_dirs(&mut units);
    plan.units = units;
    plan
}

/// The data object holding `seq` in receipt `r`, or failing that (the event was
/// dead-lettered) the data object nearest to it on the given side.
fn object_near(r: &Receipt, seq: i64, before: bool) -> Option<&ReceiptObject> {
    let data = || r.objects.iter().filter(|o| o.kind == ObjectKind::Data);
    let exact = if before {
        data().find(|o| o.last_sequence_number == seq)
    } else {
        data().find(|o| o.first_sequence_number == seq)
    };
    exact.or_else(|| {
        if before {
            data().max_by_key(|o| o.last_sequence_number)
        } else {
            data().min_by_key(|o| o.first_sequence_number)
        }
    })
}

fn attribute_gap(
    units: &mut BTreeMap<UnitKey, Unit>,
    unit_of_path: &HashMap<&str, UnitKey>,
    receipts: &[LoadedReceipt],
    partition: &PartitionKey,
    g: &completeness::GapSpan,
) {
    let before_seq = g.missing.first - 1;
    let after_seq = g.missing.last + 1;
    let before_obj = object_near(&receipts[g.before].receipt, before_seq, true);
    let after_obj = object_near(&receipts[g.after].receipt, after_seq, false);
    let gap = Gap {
        eventhub: partition.eventhub.clone(),
        consumer_group: partition.consumer_group.clone(),
        partition_id: partition.partition_id.clone(),
        first_missing: g.missing.first,
        last_missing: g.missing.last,
        missing: g.missing.len(),
        before: GapSide {
            receipt: receipts[g.before].path.clone(),
            sequence_number: before_seq,
            object: before_obj.map(|o| o.path.clone()),
        },
        after: GapSide {
            receipt: receipts[g.after].path.clone(),
            sequence_number: after_seq,
            object: after_obj.map(|o| o.path.clone()),
        },
    };
    let keys: BTreeSet<&UnitKey> = [before_obj, after_obj]
        .into_iter()
        .flatten()
        .filter_map(|o| unit_of_path.get(o.path.as_str()))
        .collect();
    for key in keys {
        if let Some(unit) = units.get_mut(key) {
            unit.gaps.push(gap.clone());
        }
    }
}

fn attribute_overlap(
    units: &mut BTreeMap<UnitKey, Unit>,
    unit_of_path: &HashMap<&str, UnitKey>,
    receipts: &[LoadedReceipt],
    partition: &PartitionKey,
    o: &completeness::OverlapSpan,
) {
    let involved: Vec<&LoadedReceipt> = o.ids.iter().map(|i| &receipts[*i]).collect();
    let overlap = Overlap {
        eventhub: partition.eventhub.clone(),
        consumer_group: partition.consumer_group.clone(),
        partition_id: partition.partition_id.clone(),
        first: o.range.first,
        last: o.range.last,
        batches: involved
            .iter()
            .map(|r| SeqRange::new(r.receipt.first_sequence_number, r.receipt.last_sequence_number))
            .collect(),
        receipts: involved.iter().map(|r| r.path.clone()).collect(),
    };
    let keys: BTreeSet<&UnitKey> = involved
        .iter()
        .flat_map(|r| r.receipt.objects.iter())
        .filter(|obj| obj.kind == ObjectKind::Data)
        .filter(|obj| SeqRange::new(obj.first_sequence_number, obj.last_sequence_number).intersects(&o.range))
        .filter_map(|obj| unit_of_path.get(obj.path.as_str()))
        .collect();
    for key in keys {
        if let Some(unit) = units.get_mut(key) {
            unit.overlaps.push(overlap.clone());
        }
    }
}

/// The unit's folder: the one parent of all its raw objects. A template that spreads
/// a unit over several folders (e.g. `{operation}` as a folder) has no single place
/// for one manifest.
fn resolve_dir(unit: &mut Unit) {
    let dirs: BTreeSet<&str> = unit
        .raw
        .iter()
        .map(|r| r.path.rsplit_once('/').map_or("", |(d, _)| d))
        .collect();
    match dirs.iter().next() {
        Some(dir) if dirs.len() == 1 && !dir.is_empty() => unit.dir = (*dir).to_string(),
        Some(dir) if dirs.len() == 1 => {
            unit.dir = (*dir).to_string();
            unit.problem = Some("its objects are at the lake root; the path template needs a folder per hour".into());
        }
        _ => {
            unit.problem = Some(format!(
                "its objects are spread over {} folders ({}); the path template must put one route's hour in one \
                 folder (drop folder tokens such as {{operation}} or {{partition}} above the file name)",
                dirs.len(),
                dirs.iter().take(3).copied().collect::<Vec<_>>().join(", ")
            ));
        }
    }
}

/// De-duplication keys on (partition id, sequence number): two Event Hubs writing the
/// same partition ids into one unit would make different events look like copies.
fn check_partition_ids(unit: &mut Unit) {
    if unit.problem.is_some() {
        return;
    }
    let mut hubs: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for w in &unit.writers {
        hubs.entry(&w.partition_id).or_default().insert(&w.eventhub);
    }
    if let Some((pid, names)) = hubs.iter().find(|(_, names)| names.len() > 1) {
        unit.problem = Some(format!(
            "partition id {pid} comes from several Event Hubs ({}); records could not be de-duplicated by \
             partition and sequence number — give each Event Hub its own prefix or template",
            names.iter().copied().collect::<Vec<_>>().join(", ")
        ));
    }
}

/// Units sharing a folder would share (and overwrite) one manifest: refuse them all.
fn check_shared_dirs(units: &mut [Unit]) {
    let mut by_dir: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, u) in units.iter().enumerate() {
        if !u.dir.is_empty() {
            by_dir.entry(u.dir.clone()).or_default().push(i);
        }
    }
    for (dir, idx) in by_dir {
        if idx.len() < 2 {
            continue;
        }
        let names: Vec<String> = idx.iter().take(3).map(|i| units[*i].key.to_string()).collect();
        for i in &idx {
            units[*i].problem.get_or_insert_with(|| {
                format!(
                    "folder {dir} holds {} units ({}…); the path template must give each route and hour its own \
                     folder (put {{hh}} and the route tokens in folders)",
                    idx.len(),
                    names.join(", ")
                )
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake::receipt::ObjectKind;

    #[test]
    fn a_unit_prints_its_route_and_hour_as_operators_type_it() {
        let key = UnitKey {
            hour: parse_time("2025-01-15T10:00:00Z").unwrap(),
            database: "shop".into(),
            collection: "orders".into(),
        };
        assert_eq!(key.to_string(), "shop/orders 2025-01-15T10");
        assert_eq!(key.hour_end(), parse_time("2025-01-15T11:00:00Z").unwrap());
    }

    fn obj(
        path: &str,
        kind: ObjectKind,
        route: Option<(&str, &str)>,
        hour: &str,
        first: i64,
        last: i64,
    ) -> ReceiptObject {
        ReceiptObject {
            path: path.into(),
            kind,
            database: route.map(|r| r.0.into()),
            collection: route.map(|r| r.1.into()),
            hour: hour.into(),
            records: (last - first + 1) as u64,
            first_sequence_number: first,
            last_sequence_number: last,
            bytes: 10,
            uncompressed_bytes: 20,
            sha256: "x".into(),
        }
    }

    fn receipt(pid: &str, first: i64, last: i64, last_enqueued: &str, objects: Vec<ReceiptObject>) -> LoadedReceipt {
        LoadedReceipt {
            path: format!("_receipts/hub/cg/{pid}/{first}-{last}.json"),
            receipt: Receipt {
                receipt_version: 1,
                writer: "t".into(),
                namespace: None,
                eventhub: "hub".into(),
                consumer_group: "cg".into(),
                partition_id: pid.into(),
                first_sequence_number: first,
                last_sequence_number: last,
                event_count: (last - first + 1) as u64,
                dead_letter_count: 0,
                first_enqueued_time: None,
                last_enqueued_time: Some(last_enqueued.into()),
                written_at: "2025-01-15T11:00:01.000Z".into(),
                objects,
            },
        }
    }

    const H10: &str = "2025-01-15T10:00:00.000Z";
    const H11: &str = "2025-01-15T11:00:00.000Z";

    fn data(pid: &str, hour: &str, hh: &str, first: i64, last: i64) -> ReceiptObject {
        obj(
            &format!("shop/orders/2025/01/15/{hh}/{pid}-{first}-{last}.jsonl.gz"),
            ObjectKind::Data,
            Some(("shop", "orders")),
            hour,
            first,
            last,
        )
    }

    #[test]
    fn a_gap_is_listed_by_the_units_on_both_sides() {
        let receipts = vec![
            receipt("0", 0, 9, "2025-01-15T10:10:00Z", vec![data("0", H10, "10", 0, 9)]),
            receipt("0", 20, 29, "2025-01-15T11:10:00Z", vec![data("0", H11, "11", 20, 29)]),
        ];
        let plan = build(&receipts, TimeSource::Enqueued);
        assert_eq!(plan.gaps, 1);
        assert_eq!(plan.units.len(), 2);
        for u in &plan.units {
            assert_eq!(u.gaps.len(), 1, "{}", u.key);
            assert_eq!(
                (u.gaps[0].first_missing, u.gaps[0].last_missing, u.gaps[0].missing),
                (10, 19, 10)
            );
            assert!(u.problem.is_none());
        }
        assert_eq!(plan.units[0].dir, "shop/orders/2025/01/15/10");
        assert_eq!(
            plan.units[0].gaps[0].before.object.as_deref(),
            Some("shop/orders/2025/01/15/10/0-0-9.jsonl.gz")
        );
        assert_eq!(
            plan.units[0].gaps[0].after.object.as_deref(),
            Some("shop/orders/2025/01/15/11/0-20-29.jsonl.gz")
        );
        let w = plan.watermarks[&partition_of(&receipts[1].receipt)];
        assert_eq!(w, parse_time("2025-01-15T11:10:00Z").unwrap());
    }

    #[test]
    fn a_dead_lettered_boundary_falls_back_to_the_nearest_data_object() {
        let receipts = vec![
            receipt(
                "0",
                0,
                9,
                "2025-01-15T10:10:00Z",
                vec![
                    data("0", H10, "10", 0, 8),
                    obj("_deadletter/x/0-9-9.jsonl", ObjectKind::DeadLetter, None, H10, 9, 9),
                ],
            ),
            receipt("0", 20, 29, "2025-01-15T10:20:00Z", vec![data("0", H10, "10", 20, 29)]),
        ];
        let plan = build(&receipts, TimeSource::Enqueued);
        assert_eq!(plan.units.len(), 1, "dead letters are not sealed");
        let g = &plan.units[0].gaps;
        assert_eq!(g.len(), 1, "both sides in one unit: listed once");
        assert_eq!(g[0].before.sequence_number, 9);
        assert_eq!(
            g[0].before.object.as_deref(),
            Some("shop/orders/2025/01/15/10/0-0-8.jsonl.gz")
        );
    }

    #[test]
    fn only_partitions_that_wrote_are_writers() {
        let receipts = vec![
            receipt("0", 0, 9, "2025-01-15T10:10:00Z", vec![data("0", H10, "10", 0, 9)]),
            receipt(
                "1",
                0,
                9,
                "2025-01-15T10:10:00Z",
                vec![obj(
                    "shop/users/2025/01/15/10/1-0-9.jsonl.gz",
                    ObjectKind::Data,
                    Some(("shop", "users")),
                    H10,
                    0,
                    9,
                )],
            ),
        ];
        let plan = build(&receipts, TimeSource::Enqueued);
        let orders = plan.units.iter().find(|u| u.key.collection == "orders").unwrap();
        assert_eq!(
            orders
                .writers
                .iter()
                .map(|w| w.partition_id.as_str())
                .collect::<Vec<_>>(),
            ["0"]
        );
    }

    #[test]
    fn units_spread_over_folders_or_sharing_one_are_refused() {
        let spread = vec![receipt(
            "0",
            0,
            9,
            "2025-01-15T10:10:00Z",
            vec![
                obj(
                    "shop/orders/insert/10/0-0-4.jsonl.gz",
                    ObjectKind::Data,
                    Some(("shop", "orders")),
                    H10,
                    0,
                    4,
                ),
                obj(
                    "shop/orders/update/10/0-5-9.jsonl.gz",
                    ObjectKind::Data,
                    Some(("shop", "orders")),
                    H10,
                    5,
                    9,
                ),
            ],
        )];
        let plan = build(&spread, TimeSource::Enqueued);
        assert!(plan.units[0]
            .problem
            .as_deref()
            .unwrap()
            .contains("spread over 2 folders"));

        let shared = vec![receipt(
            "0",
            0,
            9,
            "2025-01-15T11:10:00Z",
            vec![
                obj(
                    "hub/2025/01/15/10-0-0-4.jsonl.gz",
                    ObjectKind::Data,
                    Some(("shop", "orders")),
                    H10,
                    0,
                    4,
                ),
                obj(
                    "hub/2025/01/15/11-0-5-9.jsonl.gz",
                    ObjectKind::Data,
                    Some(("shop", "orders")),
                    H11,
                    5,
                    9,
                ),
            ],
        )];
        let plan = build(&shared, TimeSource::Enqueued);
        assert_eq!(plan.units.len(), 2);
        for u in &plan.units {
            assert!(
                u.problem.as_deref().unwrap().contains("holds 2 units"),
                "{:?}",
                u.problem
            );
        }
    }

    #[test]
    fn overlaps_are_attributed_to_the_units_holding_the_copies() {
        let receipts = vec![
            receipt("0", 0, 19, "2025-01-15T10:10:00Z", vec![data("0", H10, "10", 0, 19)]),
            receipt("0", 10, 29, "2025-01-15T10:20:00Z", vec![data("0", H10, "10", 10, 29)]),
        ];
        let plan = build(&receipts, TimeSource::Enqueued);
        assert_eq!(plan.overlaps, 1);
        let o = &plan.units[0].overlaps;
        assert_eq!(o.len(), 1);
        assert_eq!((o[0].first, o[0].last), (10, 19));
        assert_eq!(o[0].batches, vec![SeqRange::new(0, 19), SeqRange::new(10, 29)]);
    }
}
