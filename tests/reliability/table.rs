//! The summary table of the matrix: cells × outcomes, written to
//! `target/reliability-summary.txt` and printed to stderr.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::checker::Outcome;

/// One cell's row.
#[derive(Debug, Clone)]
pub struct Row {
    pub cell: String,
    pub backend: String,
    pub seed: u64,
    pub elapsed: Duration,
    pub result: Result<Outcome, String>,
}

/// The cargo target directory (`CARGO_TARGET_TMPDIR` is `<target>/tmp`).
pub fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("target"))
}

const HEADER: [&str; 14] = [
    "cell",
    "backend",
    "produced",
    "acked",
    "in lake",
    "dups",
    "gaps",
    "gap evts",
    "dead ltrs",
    "5xx",
    "restarts",
    "orphans",
    "secs",
    "result",
];

/// Renders the table (fixed-width text).
pub fn render(title: &str, rows: &[Row]) -> String {
    let mut cells: Vec<[String; 14]> = Vec::new();
    for r in rows {
        let o = r.result.as_ref().ok();
        let n = |f: fn(&Outcome) -> u64| o.map_or("-".to_string(), |o| f(o).to_string());
        cells.push([
            r.cell.clone(),
            r.backend.clone(),
            n(|o| o.produced),
            n(|o| o.acknowledged),
            n(|o| o.in_lake),
            n(|o| o.duplicates),
            n(|o| o.gap_ranges),
            n(|o| o.gap_events),
            n(|o| o.dead_letters),
            n(|o| o.answered_5xx),
            n(|o| o.restarts),
            n(|o| o.orphans),
            format!("{:.1}", r.elapsed.as_secs_f64()),
            match &r.result {
                Ok(_) => "ok".to_string(),
                Err(_) => "FAIL".to_string(),
            },
        ]);
    }
    let mut widths = HEADER.map(str::len);
    for c in &cells {
        for (w, v) in widths.iter_mut().zip(c.iter()) {
            *w = (*w).max(v.chars().count());
        }
    }
    let line = |vals: &[String]| {
        let mut s = String::new();
        for (i, (v, w)) in vals.iter().zip(widths.iter()).enumerate() {
            let pad = w - v.chars().count();
            if i < 2 || i == 14 {
                let _ = write!(s, "{v}{}  ", " ".repeat(pad));
            } else {
                let _ = write!(s, "{}{v}  ", " ".repeat(pad));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = String::new();
    let _ = writeln!(out, "{title}");
    let header: Vec<String> = HEADER.iter().map(|h| h.to_string()).collect();
    let _ = writeln!(out, "{}", line(&header));
    let _ = writeln!(
        out,
        "{}",
        "-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1))
    );
    for c in &cells {
        let _ = writeln!(out, "{}", line(c));
    }
    let _ = writeln!(out);
    for r in rows {
        match &r.result {
            Ok(o) if !o.notes.is_empty() => {
                let _ = writeln!(out, "{} (seed {}): {}", r.cell, r.seed, o.notes.join("; "));
            }
            Ok(_) => {}
            Err(e) => {
                let _ = writeln!(out, "{} (seed {}) FAILED: {e}", r.cell, r.seed);
            }
        }
    }
    out
}

/// Writes the table to `target/<file>` and prints it to stderr; returns the path.
pub fn publish(file: &str, text: &str) -> PathBuf {
    let path = target_dir().join(file);
    if let Err(e) = std::fs::write(&path, text) {
        eprintln!("cannot write {}: {e}", path.display());
    }
    eprintln!("{text}");
    eprintln!("(summary written to {})", path.display());
    path
}
