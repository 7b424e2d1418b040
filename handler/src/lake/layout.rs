//! Object naming: the path template filled in, sanitised path parts and the fixed
//! areas (`_receipts/`, `_deadletter/`) of the lake.

use std::fmt::Write as _;

use chrono::{DateTime, Datelike, Timelike, Utc};

pub use crate::config::template::{PathTemplate, Piece, Token};

/// The values a template is filled with. Text values are sanitised on the way in.
#[derive(Debug, Clone)]
pub struct PathValues<'a> {
    pub database: &'a str,
    pub collection: &'a str,
    pub operation: &'a str,
    pub eventhub: &'a str,
    pub partition: &'a str,
    pub hour: DateTime<Utc>,
    pub first_seq: i64,
    pub last_seq: i64,
}

/// Renders `template` with `values`; `extension` is appended after a dot.
pub fn render(template: &PathTemplate, values: &PathValues<'_>, extension: &str) -> String {
    let mut out = String::with_capacity(template.as_str().len() + 48);
    for piece in template.pieces() {
        match piece {
            Piece::Literal(text) => out.push_str(text),
            Piece::Token(token) => push_token(&mut out, *token, values),
        }
    }
    out.push('.');
    out.push_str(extension);
    out
}

fn push_token(out: &mut String, token: Token, v: &PathValues<'_>) {
    let _ = match token {
        Token::Database => write!(out, "{}", sanitize_segment(v.database)),
        Token::Collection => write!(out, "{}", sanitize_segment(v.collection)),
        Token::Operation => write!(out, "{}", sanitize_segment(v.operation)),
        Token::EventHub => write!(out, "{}", sanitize_segment(v.eventhub)),
        Token::Partition => write!(out, "{}", sanitize_segment(v.partition)),
        Token::Year => write!(out, "{:04}", v.hour.year()),
        Token::Month => write!(out, "{:02}", v.hour.month()),
        Token::Day => write!(out, "{:02}", v.hour.day()),
        Token::Hour => write!(out, "{:02}", v.hour.hour()),
        Token::FirstSeq => write!(out, "{}", v.first_seq),
        Token::LastSeq => write!(out, "{}", v.last_seq),
    };
}

/// Longest sanitised path part, in bytes (before the hash suffix of long names).
pub const MAX_SEGMENT_BYTES: usize = 96;

/// Makes an event-derived value safe as one segment of a data path (a route folder,
/// a partition in an object name).
///
/// Keeps letters and digits of any script plus `-_.=@+,`; everything else (path
/// separators of every kind, `%`, control characters, look-alike slashes) becomes `_`.
/// A leading or trailing dot becomes `_` (so `.` and `..` cannot occur, and Azure's
/// trailing-dot rule is met). A segment that would start with `_` gets an `x` in
/// front: Spark, Hive, Hadoop and Snowflake listings skip names starting with `_` or
/// `.`, and the lake's own areas (`_receipts`, `_deadletter`, `_manifest.json`) start
/// with `_`, so no route can take or hide among them. Long values are cut and
/// suffixed with a hash of the original so distinct values stay distinct. The
/// original value stays in the record. Sanitising a sanitised segment changes nothing.
pub fn sanitize_segment(raw: &str) -> String {
    let mut out = clean_segment(raw);
    if out.starts_with('_') {
        out.insert(0, 'x');
    }
    bounded_segment(out, raw)
}

/// Makes a value safe as one segment inside the lake's own `_`-areas (receipts, dead
/// letters), where hidden-name rules do not matter: like [`sanitize_segment`] without
/// the `x` in front. These names must not change between versions: a re-delivered
/// batch finds its receipt by name.
pub fn sanitize_area_segment(raw: &str) -> String {
    bounded_segment(clean_segment(raw), raw)
}

fn clean_segment(raw: &str) -> String {
    if raw.is_empty() {
        return "_empty".into();
    }
    let mut out: String = raw
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '=' | '@' | '+' | ',') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with('.') {
        out.replace_range(..1, "_");
    }
    if out.ends_with('.') {
        let len = out.len();
        out.replace_range(len - 1.., "_");
    }
    if RESERVED_NAMES.iter().any(|r| out.eq_ignore_ascii_case(r)) {
        out.insert(0, '_');
    }
    out
}

/// Cuts a long segment and appends a hash of the raw value (after `-`, a kept
/// character, so the result sanitises to itself).
fn bounded_segment(mut out: String, raw: &str) -> String {
    if out.len() > MAX_SEGMENT_BYTES {
        let mut cut = MAX_SEGMENT_BYTES - 9;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        let digest = super::digest::digest_hex(raw.as_bytes());
        out.push('-');
        out.push_str(&digest[..8]);
    }
    out
}

/// `YYYY/MM/DD/HH` of an hour.
pub fn hour_path(hour: DateTime<Utc>) -> String {
    hour.format("%Y/%m/%d/%H").to_string()
}

/// Receipt of one batch: `_receipts/<eventhub>/<consumer-group>/<partition>/<first>-<last>.json`.
pub fn receipt_path(eventhub: &str, consumer_group: &str, partition: &str, first: i64, last: i64) -> String {
    format!(
        "{}/{}/{}/{}/{first}-{last}.json",
        RECEIPTS_DIR,
        sanitize_area_segment(eventhub),
        sanitize_area_segment(consumer_group),
        sanitize_area_segment(partition)
    )
}

/// Dead letters of one batch in one hour: `_deadletter/YYYY/MM/DD/HH/<partition>-<first>-<last>.jsonl`.
pub fn deadletter_path(hour: DateTime<Utc>, partition: &str, first: i64, last: i64) -> String {
    format!(
        "{}/{}/{}-{first}-{last}.jsonl",
        DEADLETTER_DIR,
        hour_path(hour),
        sanitize_area_segment(partition)
    )
}

/// Prefix of the handler's own internal objects (the start-up probe).
pub const INTERNAL_PREFIX: &str = "_hub2lake";

/// Whether a path is one of the handler's internal objects (any name starting with
/// [`INTERNAL_PREFIX`]: `_hub2lake-probe-…`, `_hub2lake/…`), which readers, listings
/// and checks skip.
pub fn is_internal(path: &str) -> bool {
    path.starts_with(INTERNAL_PREFIX)
}

/// Names the lake uses for itself; event-derived segments never take them.
const RESERVED_NAMES: &[&str] = &[RECEIPTS_DIR, DEADLETTER_DIR, MANIFEST_NAME, INTERNAL_PREFIX];

pub const RECEIPTS_DIR: &str = "_receipts";
pub const DEADLETTER_DIR: &str = "_deadletter";
pub const MANIFEST_NAME: &str = "_manifest.json";

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn values<'a>(db: &'a str, coll: &'a str) -> PathValues<'a> {
        PathValues {
            database: db,
            collection: coll,
            operation: "insert",
            eventhub: "hub",
            partition: "3",
            hour: Utc.with_ymd_and_hms(2025, 1, 15, 10, 0, 0).unwrap(),
            first_seq: 5812,
            last_seq: 5814,
        }
    }

    #[test]
    fn default_template_renders_the_design_layout() {
        let t = PathTemplate::parse(crate::config::DEFAULT_TEMPLATE).unwrap();
        assert_eq!(
            render(&t, &values("shop", "orders"), "jsonl.gz"),
            "shop/orders/2025/01/15/10/3-5812-5814.jsonl.gz"
        );
    }

    #[test]
    fn alternative_layouts_are_configuration() {
        let t = PathTemplate::parse("{eventhub}/{yyyy}/{mm}/{dd}/{hh}-{partition}-{first_seq}-{last_seq}").unwrap();
        assert_eq!(
            render(&t, &values("a", "b"), "jsonl"),
            "hub/2025/01/15/10-3-5812-5814.jsonl"
        );
    }

    #[test]
    fn traversal_attempts_become_plain_names() {
        assert_eq!(sanitize_segment(".."), "x__");
        assert_eq!(sanitize_segment("."), "x_");
        assert_eq!(sanitize_segment("a/../b"), "a_.._b");
        assert_eq!(sanitize_segment("%2e%2e"), "x_2e_2e");
        assert_eq!(sanitize_segment("x\0y"), "x_y");
        assert_eq!(sanitize_segment("a\\b"), "a_b");
        assert_eq!(sanitize_segment("a\u{FF0F}b"), "a_b");
        assert_eq!(sanitize_segment("Zoë"), "Zoë");
    }

    #[test]
    fn route_folders_are_never_hidden_nor_the_lakes_own_areas() {
        assert_eq!(sanitize_segment(""), "x_empty");
        assert_eq!(sanitize_segment("_audit"), "x_audit");
        assert_eq!(sanitize_segment(".hidden"), "x_hidden");
        assert_eq!(sanitize_segment("_receipts"), "x__receipts");
        assert_eq!(sanitize_segment("_Deadletter"), "x__Deadletter");
        assert_eq!(sanitize_segment("orders_"), "orders_");
    }

    #[test]
    fn names_inside_the_lakes_areas_keep_their_form() {
        assert_eq!(sanitize_area_segment("$Default"), "_Default");
        assert_eq!(sanitize_area_segment("0"), "0");
        assert_eq!(sanitize_area_segment(""), "_empty");
        assert_eq!(sanitize_area_segment(".."), "__");
    }

    #[test]
    fn long_names_are_cut_with_a_distinguishing_hash() {
        let a = sanitize_segment(&"a".repeat(10_000));
        let b = sanitize_segment(&format!("{}b", "a".repeat(9_999)));
        assert!(a.len() <= MAX_SEGMENT_BYTES);
        assert_ne!(a, b);
    }

    proptest! {
        #[test]
        fn sanitized_segments_are_always_safe(raw in any::<String>()) {
            let s = sanitize_segment(&raw);
            prop_assert!(!s.is_empty());
            prop_assert!(s.len() <= MAX_SEGMENT_BYTES);
            prop_assert!(!s.contains('/') && !s.contains('\\') && !s.contains('%'));
            prop_assert!(s != "." && s != "..");
            prop_assert!(!s.starts_with('.') && !s.ends_with('.'));
            prop_assert!(!s.chars().any(|c| c.is_control()));
            prop_assert!(!s.starts_with('_'), "hidden from Hadoop-style listings: {}", s);
            prop_assert!(object_store::path::Path::parse(&s).is_ok());
            prop_assert_eq!(sanitize_segment(&s), s.clone(), "sanitising is idempotent");
            let area = sanitize_area_segment(&raw);
            prop_assert!(area.len() <= MAX_SEGMENT_BYTES && object_store::path::Path::parse(&area).is_ok());
        }

        #[test]
        fn rendered_paths_stay_inside_the_prefix(db in any::<String>(), coll in any::<String>()) {
            let t = PathTemplate::parse(crate::config::DEFAULT_TEMPLATE).unwrap();
            let path = render(&t, &values(&db, &coll), "jsonl.gz");
            prop_assert_eq!(path.split('/').count(), 7);
            prop_assert!(!path.split('/').any(|s| s == ".." || s == "." || s.is_empty()));
            prop_assert!(object_store::path::Path::parse(&path).is_ok());
        }
    }
}
