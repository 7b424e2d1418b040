//! Events into batches: one target (partition key, or any partition) per batch, at most
//! `--batch-size` events and the service's size limit each, in stream order per target.
//! Pure, so the rules are tested without Redis or a hub.

use std::collections::HashMap;

use hub2lake::eventhub::{OutEvent, Target};

/// The Event Hubs limit of one batch on the Basic and Standard tiers (1 MB).
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;

/// Batches ready to send, and the events too big for any batch.
#[derive(Debug, Default)]
pub struct Plan {
    pub batches: Vec<(Target, Vec<OutEvent>)>,
    pub oversized: Vec<OutEvent>,
}

/// Where an event goes: by its partition key, or wherever the service likes.
pub fn target_of(event: &OutEvent) -> Target {
    match &event.partition_key {
        Some(key) => Target::Key(key.clone()),
        None => Target::Any,
    }
}

/// Splits `events` (in stream order) into batches of at most `max_events` events and
/// `max_bytes` estimated bytes; what does not fit goes in the next batch of its target.
pub fn plan(events: Vec<OutEvent>, max_events: usize, max_bytes: usize) -> Plan {
    let max_events = max_events.max(1);
    let mut plan = Plan::default();
    // The batch still open for each target, and its estimated size.
    let mut open: HashMap<Target, (usize, usize)> = HashMap::new();
    for event in events {
        let size = event.estimated_size();
        if size > max_bytes {
            plan.oversized.push(event);
            continue;
        }
        let target = target_of(&event);
        match open.get_mut(&target) {
            Some((index, bytes)) if plan.batches[*index].1.len() < max_events && *bytes + size <= max_bytes => {
                *bytes += size;
                plan.batches[*index].1.push(event);
            }
            _ => {
                open.insert(target.clone(), (plan.batches.len(), size));
                plan.batches.push((target, vec![event]));
            }
        }
    }
    plan
}

/// The batches in waves: wave `n` holds the `n`-th batch of every target. Sending wave by
/// wave, each after the one before was accepted, keeps per-key order even when batches
/// of one wave are sent at once and some are retried.
pub fn waves(batches: Vec<(Target, Vec<OutEvent>)>) -> Vec<Vec<(Target, Vec<OutEvent>)>> {
    let mut rank: HashMap<Target, usize> = HashMap::new();
    let mut waves: Vec<Vec<(Target, Vec<OutEvent>)>> = Vec::new();
    for (target, events) in batches {
        let n = rank.entry(target.clone()).or_default();
        if waves.len() <= *n {
            waves.push(Vec::new());
        }
        waves[*n].push((target, events));
        *n += 1;
    }
    waves
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Map;

    fn event(n: i64, key: Option<&str>, body_len: usize) -> OutEvent {
        OutEvent {
            body: vec![b'x'; body_len],
            partition_key: key.map(str::to_string),
            properties: Map::new(),
            source_partition: "s".into(),
            source_sequence_number: n,
        }
    }

    #[test]
    fn a_full_batch_spills_into_the_next_one() {
        let events = (0..5).map(|n| event(n, None, 10)).collect();
        let plan = plan(events, 2, MAX_BATCH_BYTES);
        let sizes: Vec<usize> = plan.batches.iter().map(|(_, b)| b.len()).collect();
        assert_eq!(sizes, [2, 2, 1]);
    }

    #[test]
    fn the_byte_limit_cuts_batches_and_an_event_over_it_is_set_apart() {
        let one = event(0, None, 400).estimated_size();
        let events = vec![
            event(0, None, 400),
            event(1, None, 400),
            event(2, None, 5000),
            event(3, None, 400),
        ];
        let plan = plan(events, 100, one * 2);
        let seqs: Vec<Vec<i64>> = plan
            .batches
            .iter()
            .map(|(_, b)| b.iter().map(|e| e.source_sequence_number).collect())
            .collect();
        assert_eq!(seqs, [vec![0, 1], vec![3]]);
        assert_eq!(plan.oversized.len(), 1);
        assert_eq!(plan.oversized[0].source_sequence_number, 2);
    }

    #[test]
    fn each_key_gets_its_own_batches() {
        let events = vec![
            event(0, Some("a"), 1),
            event(1, Some("b"), 1),
            event(2, Some("a"), 1),
            event(3, None, 1),
        ];
        let plan = plan(events, 10, MAX_BATCH_BYTES);
        let targets: Vec<&Target> = plan.batches.iter().map(|(t, _)| t).collect();
        assert_eq!(
            targets,
            [&Target::Key("a".into()), &Target::Key("b".into()), &Target::Any]
        );
        assert_eq!(plan.batches[0].1.len(), 2);
    }

    #[test]
    fn the_second_batch_of_a_key_waits_for_the_next_wave() {
        let events = (0..5)
            .map(|n| event(n, Some(if n < 3 { "a" } else { "b" }), 1))
            .collect();
        let waves = waves(plan(events, 2, MAX_BATCH_BYTES).batches);
        let seqs: Vec<Vec<Vec<i64>>> = waves
            .iter()
            .map(|w| {
                w.iter()
                    .map(|(_, b)| b.iter().map(|e| e.source_sequence_number).collect())
                    .collect()
            })
            .collect();
        assert_eq!(seqs, vec![vec![vec![0, 1], vec![3, 4]], vec![vec![2]]]);
    }

    proptest! {
        #[test]
        fn every_event_is_planned_once_in_order_per_target_within_limits(
            spec in proptest::collection::vec((proptest::option::of(0u8..4), 0usize..3000), 0..200),
            max_events in 1usize..20,
            max_bytes in 500usize..8000,
        ) {
            let events: Vec<OutEvent> = spec
                .iter()
                .enumerate()
                .map(|(n, (key, len))| event(n as i64, key.map(|k| format!("k{k}")).as_deref(), *len))
                .collect();
            let plan = plan(events.clone(), max_events, max_bytes);
            let mut seen: Vec<i64> = plan.oversized.iter().map(|e| e.source_sequence_number).collect();
            for (target, batch) in &plan.batches {
                prop_assert!(!batch.is_empty() && batch.len() <= max_events);
                prop_assert!(batch.iter().map(OutEvent::estimated_size).sum::<usize>() <= max_bytes);
                prop_assert!(batch.iter().all(|e| &target_of(e) == target));
                seen.extend(batch.iter().map(|e| e.source_sequence_number));
            }
            seen.sort_unstable();
            prop_assert_eq!(seen, (0..events.len() as i64).collect::<Vec<_>>());
            // Per target, the batches in plan order hold the events in stream order.
            let mut last: HashMap<Target, i64> = HashMap::new();
            for (target, batch) in &plan.batches {
                for e in batch {
                    let previous = last.insert(target.clone(), e.source_sequence_number);
                    prop_assert!(previous.is_none_or(|p| p < e.source_sequence_number));
                }
            }
            prop_assert!(plan.oversized.iter().all(|e| e.estimated_size() > max_bytes));
        }
    }
}
