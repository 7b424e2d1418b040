//! `hub2lake ls`: per (hour, database, collection) whether it is sealed and what the
//! folder holds, from receipts, manifests and the listing (no data object is read).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::inventory::{Inventory, Unit};
use super::range::{format_hour, HourRange};

/// One row of `ls`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnitRow {
    /// `YYYY-MM-DDTHH` (UTC).
    pub hour: String,
    pub database: String,
    pub collection: String,
    pub sealed: bool,
    /// Manifest generation (0 when not sealed).
    pub generation: u64,
    /// Whether the manifest says no gap touches the hour (`None` when not sealed).
    pub complete: Option<bool>,
    /// Data objects in the folder now (what a glob of the folder reads, including
    /// objects without receipt the seal left).
    pub objects: u64,
    /// Records a reader of the folder gets: a sealed hour's manifest count plus late
    /// raw objects; an unsealed hour's receipt counts (re-deliveries included).
    pub records: u64,
    /// Stored bytes of the data objects in the folder.
    pub bytes: u64,
    pub partitions: u64,
    /// Gaps in the receipts next to this hour (see `verify` for the ranges).
    pub gaps: u64,
    /// Objects in the folder that no receipt or manifest accounts for.
    pub orphans: u64,
    /// Objects no receipt names that the seal left in the folder and lists in the
    /// manifest's `unreceipted` (their events are not in `records`; `verify` names them).
    pub unreceipted: u64,
    /// Objects without receipt the seal deleted as copies (the manifest's `removed_copies`).
    pub removed_copies: u64,
    /// The folder holds the seal's `_recheck` marker: the seal re-reads the manifest on
    /// every run (gaps or objects without receipt to watch, or a copy removed lately).
    pub recheck: bool,
}

/// Dead letters of one hour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetterRow {
    pub hour: String,
    pub objects: u64,
    pub records: u64,
    pub bytes: u64,
}

/// What `ls` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listing {
    pub lake: String,
    pub range: String,
    pub units: Vec<UnitRow>,
    pub dead_letters: Vec<DeadLetterRow>,
    pub totals: Totals,
}

/// Sums over the rows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub hours: u64,
    pub units: u64,
    pub sealed_units: u64,
    pub objects: u64,
    pub records: u64,
    pub bytes: u64,
    /// Distinct gaps next to the listed hours.
    pub gaps: u64,
    pub orphans: u64,
    pub unreceipted: u64,
    pub dead_letter_records: u64,
    /// Problems met while reading receipts and manifests.
    pub unreadable: u64,
}

/// Builds the listing of `range`, optionally of one database and/or collection.
pub fn listing(
    inv: &Inventory,
    lake: &str,
    range: &HourRange,
    database: Option<&str>,
    collection: Option<&str>,
) -> Listing {
    let units: Vec<UnitRow> = inv.units_in(range, database, collection).map(row).collect();
    let mut dead: std::collections::BTreeMap<DateTime<Utc>, DeadLetterRow> = Default::default();
    if database.is_none() && collection.is_none() {
        for d in inv.dead_letters.iter().filter(|d| range.contains(d.hour)) {
            let r = dead.entry(d.hour).or_insert_with(|| DeadLetterRow {
                hour: format_hour(d.hour),
                objects: 0,
                records: 0,
                bytes: 0,
            });
            r.objects += 1;
            r.records += d.entry.records;
            r.bytes += d.size.unwrap_or(0);
        }
    }
    let dead_letters: Vec<DeadLetterRow> = dead.into_values().collect();
    let hours: BTreeSet<&str> = units.iter().map(|u| u.hour.as_str()).collect();
    let gaps = inv.gaps.iter().filter(|g| g.touches(range)).count() as u64;
    let totals = Totals {
        hours: hours.len() as u64,
        units: units.len() as u64,
        sealed_units: units.iter().filter(|u| u.sealed).count() as u64,
        objects: units.iter().map(|u| u.objects).sum(),
        records: units.iter().map(|u| u.records).sum(),
        bytes: units.iter().map(|u| u.bytes).sum(),
        gaps,
        orphans: units.iter().map(|u| u.orphans).sum(),
        unreceipted: units.iter().map(|u| u.unreceipted).sum(),
        dead_letter_records: dead_letters.iter().map(|d| d.records).sum(),
        unreadable: inv.problems.len() as u64,
    };
    Listing {
        lake: lake.to_string(),
        range: range.to_string(),
        units,
        dead_letters,
        totals,
    }
}

fn row(unit: &Unit) -> UnitRow {
    let present = unit.present_objects();
    let manifest = unit.manifest.as_ref().map(|m| &m.manifest);
    let late: u64 = unit.unconsumed_raw().map(|r| r.entry.records).sum();
    let records = match manifest {
        Some(m) => m.total_records + late,
        None => unit
            .raw
            .iter()
            .filter(|r| r.size.is_some())
            .map(|r| r.entry.records)
            .sum(),
    };
    UnitRow {
        hour: format_hour(unit.key.hour),
        database: unit.key.database.clone(),
        collection: unit.key.collection.clone(),
        sealed: manifest.is_some(),
        generation: manifest.map_or(0, |m| m.generation),
        complete: manifest.map(|m| m.complete),
        objects: present.len() as u64,
        records,
        bytes: present.iter().map(|(_, s)| s).sum(),
        partitions: unit.partitions().len() as u64,
        gaps: unit.gaps as u64,
        orphans: unit.orphans.len() as u64,
        unreceipted: unit.unreceipted.len() as u64,
        removed_copies: manifest.map_or(0, |m| m.removed_copies.len() as u64),
        recheck: unit.recheck,
    }
}

/// Bytes for people: `812 B`, `84.1 KiB`, `1.2 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.1} {}", UNITS[i])
}

/// The human table of `ls`.
pub fn render_table(l: &Listing) -> String {
    let mut out = String::new();
    out.push_str(&format!("lake {} — {}\n", l.lake, l.range));
    if l.units.is_empty() {
        out.push_str("no data in this range\n");
    } else {
        let header = [
            "HOUR (UTC)",
            "DATABASE",
            "COLLECTION",
            "STATE",
            "OBJECTS",
            "RECORDS",
            "BYTES",
            "PARTITIONS",
            "GAPS",
        ];
        let rows: Vec<[String; 9]> = l.units.iter().map(table_row).collect();
        let mut widths = header.map(str::len);
        for r in &rows {
            for (w, cell) in widths.iter_mut().zip(r) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| -> String {
            let mut s = String::new();
            for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
                let pad = w - cell.chars().count();
                if i >= 4 {
                    s.push_str(&" ".repeat(pad));
                    s.push_str(cell);
                } else {
                    s.push_str(cell);
                    s.push_str(&" ".repeat(pad));
                }
                s.push_str("  ");
            }
            s.trim_end().to_string() + "\n"
        };
        out.push_str(&line(&header.map(String::from)));
        for r in &rows {
            out.push_str(&line(r));
        }
    }
    for d in &l.dead_letters {
        out.push_str(&format!(
            "dead letters {}: {} records in {} objects ({})\n",
            d.hour,
            d.records,
            d.objects,
            human_bytes(d.bytes)
        ));
    }
    let t = &l.totals;
    out.push_str(&format!(
        "{} hours, {} folders ({} sealed), {} objects, {} records, {}",
        t.hours,
        t.units,
        t.sealed_units,
        t.objects,
        t.records,
        human_bytes(t.bytes)
    ));
    if t.gaps > 0 {
        out.push_str(&format!(
            "; {} gap{} in the receipts (run `hub2lake verify` for the ranges)",
            t.gaps,
            if t.gaps == 1 { "" } else { "s" }
        ));
    }
    if t.orphans > 0 {
        out.push_str(&format!("; {} objects no receipt or manifest accounts for", t.orphans));
    }
    if t.unreceipted > 0 {
        out.push_str(&format!(
            "; {} object{} without receipt kept in sealed hours (`hub2lake verify` names the events only {} hold{})",
            t.unreceipted,
            if t.unreceipted == 1 { "" } else { "s" },
            if t.unreceipted == 1 { "it" } else { "they" },
            if t.unreceipted == 1 { "s" } else { "" },
        ));
    }
    if t.unreadable > 0 {
        out.push_str(&format!("; {} receipts or manifests unreadable", t.unreadable));
    }
    out.push('\n');
    out
}

fn table_row(u: &UnitRow) -> [String; 9] {
    let state = match (u.sealed, u.complete) {
        (true, Some(false)) => format!("sealed g{} (gaps)", u.generation),
        (true, _) => format!("sealed g{}", u.generation),
        (false, _) => "open".to_string(),
    };
    let mut objects = u.objects.to_string();
    if u.orphans > 0 {
        objects.push_str(&format!(" ({} orphan)", u.orphans));
    }
    if u.unreceipted > 0 {
        objects.push_str(&format!(" ({} unreceipted)", u.unreceipted));
    }
    [
        u.hour.clone(),
        u.database.clone(),
        u.collection.clone(),
        state,
        objects,
        u.records.to_string(),
        human_bytes(u.bytes),
        u.partitions.to_string(),
        u.gaps.to_string(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_well() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(86_118), "84.1 KiB");
        assert_eq!(human_bytes(u64::MAX), "16384.0 PiB");
    }

    #[test]
    fn an_empty_listing_says_so() {
        let l = listing(&Inventory::default(), "file:///x", &HourRange::all(), None, None);
        let text = render_table(&l);
        assert!(text.contains("no data in this range"), "{text}");
        assert!(text.contains("0 hours"), "{text}");
    }
}
