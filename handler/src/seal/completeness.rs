//! Completeness from receipts, as pure functions: tiling of sequence ranges per
//! partition (gaps and overlaps), watermarks, and the rule that says an hour is done.
//!
//! Event Hubs sequence numbers are contiguous within a partition, so the receipts of
//! consecutive batches must tile the sequence line: a hole between two receipts is a
//! batch that never landed (a *gap*), two receipts covering the same number are a
//! re-delivery with different batch boundaries (an *overlap*).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// An inclusive range of sequence numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SeqRange {
    pub first: i64,
    pub last: i64,
}

impl SeqRange {
    pub fn new(first: i64, last: i64) -> Self {
        Self { first, last }
    }

    /// How many sequence numbers the range holds (0 for an inverted range).
    pub fn len(&self) -> u64 {
        if self.last < self.first {
            0
        } else {
            self.last.abs_diff(self.first) + 1
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn intersects(&self, other: &SeqRange) -> bool {
        self.first <= other.last && other.first <= self.last
    }

    pub fn contains(&self, seq: i64) -> bool {
        self.first <= seq && seq <= self.last
    }
}

impl std::fmt::Display for SeqRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}..{}", self.first, self.last)
    }
}

/// Identity of a sequence line: sequence numbers are only contiguous per partition of
/// one Event Hub as read by one consumer group.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PartitionKey {
    pub eventhub: String,
    pub consumer_group: String,
    pub partition_id: String,
}

impl std::fmt::Display for PartitionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.eventhub, self.consumer_group, self.partition_id)
    }
}

/// One batch as tiling sees it: its range and a caller-chosen id (a receipt index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub range: SeqRange,
    pub id: usize,
}

/// Sequence numbers no receipt covers, between two receipts that do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GapSpan {
    pub missing: SeqRange,
    /// The span holding the last event before the gap.
    pub before: usize,
    /// The span holding the first event after the gap.
    pub after: usize,
}

/// Sequence numbers covered by more than one receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlapSpan {
    /// The doubly covered numbers: the later span's start up to the end of what the
    /// earlier spans already covered.
    pub range: SeqRange,
    /// Every span involved: the earlier ones that intersect, then the later one.
    pub ids: Vec<usize>,
}

/// The result of tiling one partition's spans.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tiling {
    pub gaps: Vec<GapSpan>,
    pub overlaps: Vec<OverlapSpan>,
    /// Lowest and highest sequence number covered (`None` without spans).
    pub hull: Option<SeqRange>,
}

/// Tiles one partition's spans. The first span defines the start (nothing before it
/// counts as missing) and nothing after the last is known yet, so neither end is a gap.
///
/// Runs in O(n log n): spans are sorted by start, and only the earlier spans still
/// reaching the current start are kept to name the spans of an overlap.
pub fn tile(spans: &[Span]) -> Tiling {
    let mut sorted: Vec<Span> = spans.iter().copied().filter(|s| !s.range.is_empty()).collect();
    sorted.sort_by_key(|s| (s.range.first, s.range.last, s.id));
    let mut out = Tiling::default();
    let Some(first) = sorted.first() else {
        return out;
    };
    let mut covered_to = first.range.last;
    let mut covered_by = first.id;
    let mut active: Vec<Span> = vec![*first];
    for span in &sorted[1..] {
        let r = span.range;
        // `covered_to + 1` cannot overflow in practice (sequence numbers are far below
        // i64::MAX), but saturate so a hostile receipt cannot panic the timer.
        active.retain(|a| a.range.last >= r.first);
        if r.first > covered_to.saturating_add(1) {
            out.gaps.push(GapSpan {
                missing: SeqRange::new(covered_to + 1, r.first - 1),
                before: covered_by,
                after: span.id,
            });
        } else if r.first <= covered_to {
            let mut ids: Vec<usize> = active.iter().map(|a| a.id).collect();
            ids.push(span.id);
            out.overlaps.push(OverlapSpan {
                range: SeqRange::new(r.first, r.last.min(covered_to)),
                ids,
            });
        }
        active.push(*span);
        if r.last > covered_to {
            covered_to = r.last;
            covered_by = span.id;
        }
    }
    out.hull = Some(SeqRange::new(first.range.first, covered_to));
    out
}

/// Sequence numbers covered by a set of ranges, per partition id: the receipts that
/// prove events durable, asked whether they also hold the events of an object no
/// receipt names. Ranges are kept merged and sorted, so a question is a binary search.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Coverage(BTreeMap<String, Vec<SeqRange>>);

impl Coverage {
    /// Builds the coverage of `(partition id, range)` pairs (any order, overlapping).
    pub fn new<'a>(ranges: impl IntoIterator<Item = (&'a str, SeqRange)>) -> Self {
        let mut by_partition: BTreeMap<String, Vec<SeqRange>> = BTreeMap::new();
        for (partition, range) in ranges {
            if !range.is_empty() {
                by_partition.entry(partition.to_string()).or_default().push(range);
            }
        }
        for ranges in by_partition.values_mut() {
            *ranges = merge_ranges(std::mem::take(ranges));
        }
        Self(by_partition)
    }

    /// The merged range holding `seq`, if any.
    fn range_of(&self, partition: &str, seq: i64) -> Option<SeqRange> {
        let ranges = self.0.get(partition)?;
        // The last range starting at or before `seq` is the only candidate.
        let i = ranges.partition_point(|r| r.first <= seq);
        let r = *ranges.get(i.checked_sub(1)?)?;
        r.contains(seq).then_some(r)
    }

    pub fn contains(&self, partition: &str, seq: i64) -> bool {
        self.range_of(partition, seq).is_some()
    }

    /// Whether every number of `range` is covered.
    pub fn covers(&self, partition: &str, range: SeqRange) -> bool {
        range.is_empty()
            || self
                .range_of(partition, range.first)
                .is_some_and(|r| r.last >= range.last)
    }

    /// Whether some number of `range` is covered.
    pub fn intersects(&self, partition: &str, range: SeqRange) -> bool {
        self.0
            .get(partition)
            .is_some_and(|ranges| ranges.iter().any(|r| r.intersects(&range)))
    }
}

/// Sorts ranges and merges the overlapping and adjacent ones (`0..9` and `10..19` are
/// one range: sequence numbers are integers).
fn merge_ranges(mut ranges: Vec<SeqRange>) -> Vec<SeqRange> {
    ranges.sort();
    let mut merged: Vec<SeqRange> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match merged.last_mut() {
            Some(last) if r.first <= last.last.saturating_add(1) => last.last = last.last.max(r.last),
            _ => merged.push(r),
        }
    }
    merged
}

/// Why an hour was sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SealReason {
    /// Every partition that wrote to the unit has receipts past the hour's end.
    Watermark,
    /// The grace period passed since the hour's end and the unit's last write.
    Grace,
}

impl std::fmt::Display for SealReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Watermark => "watermark",
            Self::Grace => "grace",
        })
    }
}

/// Whether a unit may be sealed now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Ready(SealReason),
    /// The hour has not ended yet: never sealed, whatever the watermarks say.
    CurrentHour,
    /// Some writer partitions are still before the hour's end; grace ends at `grace_at`.
    Waiting {
        behind: usize,
        grace_at: DateTime<Utc>,
    },
}

/// The sealing rule, for one unit (database, collection, hour):
///
/// 1. never while the hour is running (`hour_end > now`);
/// 2. *watermark*: every partition that wrote to the unit has a watermark (the latest
///    event time any of its receipts reports) at or past the hour's end. Partitions
///    that never wrote to the unit are not asked: an idle partition holds nothing open;
/// 3. *grace*: otherwise once `grace` has passed since the later of the hour's end and
///    the unit's last write (`now >= max(hour_end, last_write) + grace`), so a unit
///    that still receives data is not sealed under its writer's feet.
///
/// `writer_watermarks` holds one entry per writer partition (`None`: it reported no time).
pub fn readiness(
    hour_end: DateTime<Utc>,
    now: DateTime<Utc>,
    grace: TimeDelta,
    writer_watermarks: &[Option<DateTime<Utc>>],
    last_write: Option<DateTime<Utc>>,
) -> Readiness {
    if hour_end > now {
        return Readiness::CurrentHour;
    }
    let behind = writer_watermarks
        .iter()
        .filter(|w| !w.is_some_and(|w| w >= hour_end))
        .count();
    if behind == 0 && !writer_watermarks.is_empty() {
        return Readiness::Ready(SealReason::Watermark);
    }
    let quiet_since = last_write.map_or(hour_end, |w| w.max(hour_end));
    let grace_at = quiet_since
        .checked_add_signed(grace)
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    if now >= grace_at {
        Readiness::Ready(SealReason::Grace)
    } else {
        Readiness::Waiting { behind, grace_at }
    }
}

/// Orders partition ids as numbers when both are numbers ("2" < "10"), numbers before
/// other names, then by text: the order of records in compacted objects.
pub fn partition_cmp(a: &str, b: &str) -> Ordering {
    let num = |s: &str| s.parse::<u64>().ok();
    match (num(a), num(b)) {
        (Some(x), Some(y)) => x.cmp(&y).then_with(|| a.cmp(b)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn spans(ranges: &[(i64, i64)]) -> Vec<Span> {
        ranges
            .iter()
            .enumerate()
            .map(|(id, (f, l))| Span {
                range: SeqRange::new(*f, *l),
                id,
            })
            .collect()
    }

    #[test]
    fn contiguous_batches_tile_without_gaps_or_overlaps() {
        let t = tile(&spans(&[(10, 19), (0, 9), (20, 20)]));
        assert!(t.gaps.is_empty() && t.overlaps.is_empty());
        assert_eq!(t.hull, Some(SeqRange::new(0, 20)));
    }

    #[test]
    fn a_missing_batch_is_a_gap_between_its_neighbours() {
        let t = tile(&spans(&[(0, 9), (10, 19), (30, 39), (40, 49)]));
        assert_eq!(
            t.gaps,
            vec![GapSpan {
                missing: SeqRange::new(20, 29),
                before: 1,
                after: 2
            }]
        );
        assert!(t.overlaps.is_empty());
    }

    #[test]
    fn the_first_receipt_defines_the_start() {
        let t = tile(&spans(&[(5000, 5009)]));
        assert!(t.gaps.is_empty());
        assert_eq!(t.hull, Some(SeqRange::new(5000, 5009)));
        assert_eq!(tile(&[]), Tiling::default());
    }

    #[test]
    fn redelivery_with_new_boundaries_is_an_overlap_naming_both_batches() {
        let t = tile(&spans(&[(0, 19), (10, 29), (30, 39)]));
        assert!(t.gaps.is_empty());
        assert_eq!(
            t.overlaps,
            vec![OverlapSpan {
                range: SeqRange::new(10, 19),
                ids: vec![0, 1]
            }]
        );
    }

    #[test]
    fn a_batch_inside_another_overlaps_only_its_own_range() {
        let t = tile(&spans(&[(0, 99), (40, 49), (100, 120)]));
        assert_eq!(t.overlaps.len(), 1);
        assert_eq!(t.overlaps[0].range, SeqRange::new(40, 49));
        assert!(t.gaps.is_empty());
    }

    #[test]
    fn the_gap_is_attributed_to_the_span_reaching_furthest() {
        // (0,50) reaches past (10,20): the gap after 50 starts after span 0, not 1.
        let t = tile(&spans(&[(0, 50), (10, 20), (60, 70)]));
        assert_eq!(
            t.gaps,
            vec![GapSpan {
                missing: SeqRange::new(51, 59),
                before: 0,
                after: 2
            }]
        );
    }

    #[test]
    fn coverage_merges_adjacent_ranges_and_answers_per_partition() {
        let c = Coverage::new([
            ("0", SeqRange::new(10, 19)),
            ("0", SeqRange::new(0, 9)),
            ("0", SeqRange::new(30, 39)),
            ("0", SeqRange::new(35, 36)),
            ("1", SeqRange::new(5, 5)),
        ]);
        assert!(c.covers("0", SeqRange::new(0, 19)), "adjacent batches tile");
        assert!(!c.covers("0", SeqRange::new(15, 30)), "20..29 is not covered");
        assert!(c.contains("0", 39) && !c.contains("0", 40) && !c.contains("0", -1));
        assert!(c.intersects("0", SeqRange::new(25, 30)));
        assert!(!c.intersects("0", SeqRange::new(20, 29)));
        assert!(c.contains("1", 5) && !c.contains("2", 5), "partitions are separate");
        assert!(c.covers("9", SeqRange::new(3, 2)), "an empty range is covered");
    }

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 15, h, m, 0).unwrap()
    }

    #[test]
    fn the_current_hour_is_never_ready() {
        let r = readiness(
            at(11, 0),
            at(10, 59),
            TimeDelta::zero(),
            &[Some(at(12, 0))],
            Some(at(10, 0)),
        );
        assert_eq!(r, Readiness::CurrentHour);
    }

    #[test]
    fn every_writer_past_the_end_seals_by_watermark() {
        let r = readiness(
            at(11, 0),
            at(11, 1),
            TimeDelta::minutes(15),
            &[Some(at(11, 0)), Some(at(11, 30))],
            Some(at(11, 1)),
        );
        assert_eq!(r, Readiness::Ready(SealReason::Watermark));
    }

    #[test]
    fn a_writer_behind_waits_for_grace_counted_from_the_last_write() {
        let grace = TimeDelta::minutes(15);
        let marks = [Some(at(11, 5)), Some(at(10, 59))];
        assert_eq!(
            readiness(at(11, 0), at(11, 14), grace, &marks, Some(at(10, 59))),
            Readiness::Waiting {
                behind: 1,
                grace_at: at(11, 15)
            }
        );
        assert_eq!(
            readiness(at(11, 0), at(11, 15), grace, &marks, Some(at(10, 59))),
            Readiness::Ready(SealReason::Grace)
        );
        // A late write restarts the quiet period.
        assert_eq!(
            readiness(at(11, 0), at(11, 20), grace, &marks, Some(at(11, 10))),
            Readiness::Waiting {
                behind: 1,
                grace_at: at(11, 25)
            }
        );
        // A writer that reported no event time never passes the watermark.
        assert!(matches!(
            readiness(at(11, 0), at(11, 1), grace, &[None], None),
            Readiness::Waiting { behind: 1, .. }
        ));
    }

    #[test]
    fn partition_ids_sort_numerically() {
        let mut ids = vec!["10", "2", "b", "0", "a", "1"];
        ids.sort_by(|a, b| partition_cmp(a, b));
        assert_eq!(ids, ["0", "1", "2", "10", "a", "b"]);
    }

    /// How many spans cover each sequence number, by brute force.
    fn coverage(ranges: &[(i64, i64)]) -> BTreeMap<i64, usize> {
        let mut m = BTreeMap::new();
        for (f, l) in ranges {
            for s in *f..=*l {
                *m.entry(s).or_insert(0) += 1;
            }
        }
        m
    }

    proptest! {
        #[test]
        fn gaps_are_exactly_the_uncovered_numbers_inside_the_hull(
            ranges in proptest::collection::vec((0i64..200, 0i64..15).prop_map(|(f, len)| (f, f + len)), 1..25)
        ) {
            let t = tile(&spans(&ranges));
            let cov = coverage(&ranges);
            let hull = t.hull.unwrap();
            prop_assert_eq!(hull.first, *cov.keys().next().unwrap());
            prop_assert_eq!(hull.last, *cov.keys().last().unwrap());
            let mut in_gaps = std::collections::BTreeSet::new();
            for g in &t.gaps {
                prop_assert!(!g.missing.is_empty());
                // The named neighbours really hold the events on either side.
                prop_assert!(ranges[g.before].1 == g.missing.first - 1);
                prop_assert!(ranges[g.after].0 == g.missing.last + 1);
                for s in g.missing.first..=g.missing.last {
                    prop_assert!(in_gaps.insert(s), "gaps are disjoint");
                }
            }
            for s in hull.first..=hull.last {
                prop_assert_eq!(in_gaps.contains(&s), !cov.contains_key(&s), "seq {}", s);
            }
        }

        #[test]
        fn overlaps_are_exactly_the_numbers_covered_twice(
            ranges in proptest::collection::vec((0i64..200, 0i64..15).prop_map(|(f, len)| (f, f + len)), 1..25)
        ) {
            let t = tile(&spans(&ranges));
            let cov = coverage(&ranges);
            let mut in_overlaps = std::collections::BTreeSet::new();
            for o in &t.overlaps {
                prop_assert!(o.ids.len() >= 2);
                in_overlaps.extend(o.range.first..=o.range.last);
                // Every named span intersects the overlap range.
                for id in &o.ids {
                    let (f, l) = ranges[*id];
                    prop_assert!(SeqRange::new(f, l).intersects(&o.range));
                }
            }
            for (s, n) in cov {
                prop_assert_eq!(in_overlaps.contains(&s), n >= 2, "seq {}", s);
            }
        }

        #[test]
        fn coverage_answers_like_brute_force(
            ranges in proptest::collection::vec((0i64..200, 0i64..15).prop_map(|(f, len)| (f, f + len)), 0..25),
            probe in (0i64..220, 0i64..20).prop_map(|(f, len)| (f, f + len)),
        ) {
            let c = Coverage::new(ranges.iter().map(|(f, l)| ("p", SeqRange::new(*f, *l))));
            let cov = coverage(&ranges);
            let (f, l) = probe;
            prop_assert_eq!(c.covers("p", SeqRange::new(f, l)), (f..=l).all(|s| cov.contains_key(&s)));
            prop_assert_eq!(c.intersects("p", SeqRange::new(f, l)), (f..=l).any(|s| cov.contains_key(&s)));
            prop_assert_eq!(c.contains("p", f), cov.contains_key(&f));
        }

        #[test]
        fn idle_partitions_and_the_current_hour_follow_the_rule(
            marks in proptest::collection::vec(proptest::option::of(0i64..240), 0..6),
            now_min in 0i64..240,
            last_write in proptest::option::of(0i64..240),
            grace_min in 0i64..60,
        ) {
            let base = at(10, 0);
            let hour_end = at(11, 0);
            let t = |m: i64| base + TimeDelta::minutes(m);
            let watermarks: Vec<_> = marks.iter().map(|m| m.map(t)).collect();
            let now = t(now_min);
            let r = readiness(hour_end, now, TimeDelta::minutes(grace_min), &watermarks, last_write.map(t));
            if hour_end > now {
                prop_assert_eq!(r, Readiness::CurrentHour);
            } else {
                let all_past = !watermarks.is_empty() && watermarks.iter().all(|w| w.is_some_and(|w| w >= hour_end));
                let quiet = now >= last_write.map_or(hour_end, |w| t(w).max(hour_end)) + TimeDelta::minutes(grace_min);
                match r {
                    Readiness::Ready(SealReason::Watermark) => prop_assert!(all_past),
                    Readiness::Ready(SealReason::Grace) => prop_assert!(!all_past && quiet),
                    Readiness::Waiting { .. } => prop_assert!(!all_past && !quiet),
                    Readiness::CurrentHour => prop_assert!(false),
                }
            }
        }
    }
}
