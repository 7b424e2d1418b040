//! What the simulated Event Hub holds: realistic MongoDB change-stream events
//! (deterministic from a seed) or bodies read from a file, laid out over partitions with
//! contiguous sequence numbers and enqueued times spread over a time span.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde_json::json;

use hub2lake::host::wire::WireEvent;

/// Generated MongoDB change-stream events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeStreamConfig {
    /// Events in total, dealt evenly over the partitions.
    pub events: u64,
    /// Approximate size of one event body in bytes (inserts, updates and replaces are
    /// padded up to it; deletes and DDL events stay small, as in MongoDB).
    pub event_size: usize,
    /// The same seed gives the same events.
    pub seed: u64,
}

impl Default for ChangeStreamConfig {
    fn default() -> Self {
        Self {
            events: 4000,
            event_size: 700,
            seed: 42,
        }
    }
}

/// Where the event bodies come from.
#[derive(Debug, Clone)]
pub enum EventSource {
    ChangeStream(ChangeStreamConfig),
    /// Given bodies (e.g. the lines of a JSONL file), dealt round-robin over partitions.
    Bodies(Arc<Vec<Vec<u8>>>),
}

impl EventSource {
    /// Reads one body per non-empty line of a file.
    pub fn from_jsonl(path: &std::path::Path) -> Result<Self, super::SimError> {
        let text = std::fs::read(path).map_err(|e| super::SimError::Input {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let bodies: Vec<Vec<u8>> = text
            .split(|b| *b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
            .map(<[u8]>::to_vec)
            .collect();
        if bodies.is_empty() {
            return Err(super::SimError::Input {
                path: path.to_path_buf(),
                reason: "holds no events (one body per line expected)".into(),
            });
        }
        Ok(Self::Bodies(Arc::new(bodies)))
    }

    /// Events in total.
    pub fn total(&self) -> u64 {
        match self {
            Self::ChangeStream(c) => c.events,
            Self::Bodies(b) => b.len() as u64,
        }
    }
}

/// One partition of the simulated Event Hub.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PartitionPlan {
    pub partition_id: String,
    pub events: u64,
    pub first_sequence_number: i64,
}

impl PartitionPlan {
    /// Sequence number of the last event (`first - 1` when empty).
    pub fn last_sequence_number(&self) -> i64 {
        self.first_sequence_number + self.events as i64 - 1
    }
}

/// The simulated Event Hub: partitions, and every event on demand (nothing is kept in
/// memory for generated events, so benchmarks can be large).
#[derive(Debug, Clone)]
pub struct Hub {
    source: EventSource,
    pub partitions: Vec<PartitionPlan>,
    pub start: DateTime<Utc>,
    pub span: Duration,
}

impl Hub {
    pub fn new(
        source: EventSource,
        partitions: u32,
        first_sequence_number: i64,
        start: DateTime<Utc>,
        span: Duration,
    ) -> Self {
        let n = u64::from(partitions.max(1));
        let total = source.total();
        let plans = (0..n)
            .map(|p| PartitionPlan {
                partition_id: p.to_string(),
                events: total / n + u64::from(p < total % n),
                first_sequence_number,
            })
            .collect();
        Self {
            source,
            partitions: plans,
            start,
            span,
        }
    }

    /// The end of the simulated time span.
    pub fn end(&self) -> DateTime<Utc> {
        self.start + TimeDelta::from_std(self.span).unwrap_or(TimeDelta::zero())
    }

    /// When event `index` of partition `p` was enqueued: the span is cut into one slot
    /// per event and each event sits somewhere in its slot (millisecond precision, as
    /// Event Hubs reports), so times never go backwards within a partition.
    pub fn enqueued_time(&self, p: usize, index: u64) -> DateTime<Utc> {
        let n = self.partitions.get(p).map(|x| x.events).unwrap_or(1).max(1);
        let jitter = fastrand::Rng::with_seed(mix(&[0x7469_6d65, p as u64, index])).f64();
        let ms = self.span.as_millis() as f64 * (index as f64 + jitter) / n as f64;
        self.start + TimeDelta::milliseconds(ms as i64)
    }

    /// Event `index` (0-based) of partition `p`.
    pub fn event(&self, p: usize, index: u64) -> WireEvent {
        let plan = &self.partitions[p.min(self.partitions.len() - 1)];
        let enqueued_time = self.enqueued_time(p, index);
        let (body, stride, partition_key) = match &self.source {
            EventSource::ChangeStream(c) => {
                let (body, key) = change_event(c, p, index, enqueued_time, self.start);
                (body, c.event_size as i64 + 256, Some(key))
            }
            EventSource::Bodies(bodies) => {
                let i = index as usize * self.partitions.len() + p;
                (bodies.get(i).cloned().unwrap_or_default(), 1024, None)
            }
        };
        WireEvent {
            body,
            sequence_number: plan.first_sequence_number + index as i64,
            offset: index as i64 * stride,
            enqueued_time,
            partition_key,
            properties: json!({"source": "hub2lake-simulator"}),
        }
    }
}

/// FNV-1a of a name, to seed per-name values.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// SplitMix64 over several inputs: independent, reproducible random streams.
fn mix(parts: &[u64]) -> u64 {
    let mut h = 0x9E37_79B9_7F4A_7C15u64;
    for p in parts {
        h ^= *p;
        h = h.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = h;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        h = z ^ (z >> 31);
    }
    h
}

struct Collection {
    db: &'static str,
    coll: &'static str,
    weight: u32,
}

const COLLECTIONS: &[Collection] = &[
    Collection {
        db: "shop",
        coll: "orders",
        weight: 30,
    },
    Collection {
        db: "shop",
        coll: "customers",
        weight: 12,
    },
    Collection {
        db: "shop",
        coll: "products",
        weight: 8,
    },
    Collection {
        db: "crm",
        coll: "accounts",
        weight: 8,
    },
    Collection {
        db: "crm",
        coll: "contacts",
        weight: 10,
    },
    Collection {
        db: "inventory",
        coll: "stock",
        weight: 20,
    },
    Collection {
        db: "inventory",
        coll: "movements",
        weight: 12,
    },
];

/// Operation weights per 10 000 events.
const OPERATIONS: &[(&str, u32)] = &[
    ("insert", 4500),
    ("update", 3500),
    ("replace", 600),
    ("delete", 1250),
    ("drop", 50),
    ("rename", 50),
    ("dropDatabase", 15),
    ("invalidate", 35),
];

const WORDS: &[&str] = &[
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
    "incididunt",
    "ut",
    "labore",
    "et",
    "dolore",
    "magna",
    "aliqua",
    "enim",
    "ad",
    "minim",
    "veniam",
    "quis",
];
const CITIES: &[(&str, &str)] = &[
    ("Berlin", "DE"),
    ("Lyon", "FR"),
    ("Porto", "PT"),
    ("Utrecht", "NL"),
    ("Malmö", "SE"),
    ("Kraków", "PL"),
    ("Seattle", "US"),
    ("Osaka", "JP"),
];
const FIRST: &[&str] = &[
    "Ana", "Bruno", "Chloé", "Dmitri", "Eva", "Farid", "Greta", "Hiro", "Ines", "Jonas",
];
const LAST: &[&str] = &[
    "Silva", "Müller", "Dubois", "Ivanov", "Novak", "Haddad", "Berg", "Tanaka", "García",
];
const STATUSES: &[&str] = &["placed", "paid", "packed", "shipped", "delivered", "cancelled"];

/// Ordered JSON object text (serde_json's map would sort the keys; change events read
/// better in MongoDB's own field order).
fn obj(fields: &[(&str, String)]) -> String {
    let mut out = String::from("{");
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&json!(k).to_string());
        out.push(':');
        out.push_str(v);
    }
    out.push('}');
    out
}

fn s(text: &str) -> String {
    json!(text).to_string()
}

fn date(t: DateTime<Utc>) -> String {
    obj(&[("$date", s(&t.to_rfc3339_opts(SecondsFormat::Millis, true)))])
}

fn decimal(cents: u64) -> String {
    obj(&[("$numberDecimal", s(&format!("{}.{:02}", cents / 100, cents % 100)))])
}

fn oid_hex(secs: i64, a: u64, b: u64) -> String {
    format!("{:08x}{:010x}{:06x}", secs as u32, a & 0xff_ffff_ffff, b & 0xff_ffff)
}

fn oid(hex: &str) -> String {
    obj(&[("$oid", s(hex))])
}

fn pick<T: Copy>(rng: &mut fastrand::Rng, items: &[T]) -> T {
    items[rng.usize(..items.len())]
}

fn words(rng: &mut fastrand::Rng, bytes: usize) -> String {
    let mut out = String::with_capacity(bytes + 16);
    while out.len() < bytes {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(pick(rng, WORDS));
    }
    out.truncate(bytes);
    out
}

/// One change event (relaxed Extended JSON) and its partition key.
fn change_event(
    c: &ChangeStreamConfig,
    p: usize,
    index: u64,
    enqueued: DateTime<Utc>,
    start: DateTime<Utc>,
) -> (Vec<u8>, String) {
    let mut rng = fastrand::Rng::with_seed(mix(&[c.seed, p as u64, index]));
    let total: u32 = COLLECTIONS.iter().map(|x| x.weight).sum();
    let mut roll = rng.u32(..total);
    let coll = COLLECTIONS
        .iter()
        .find(|x| {
            if roll < x.weight {
                true
            } else {
                roll -= x.weight;
                false
            }
        })
        .unwrap_or(&COLLECTIONS[0]);
    let mut roll = rng.u32(..10_000);
    let op = OPERATIONS
        .iter()
        .find(|(_, w)| {
            if roll < *w {
                true
            } else {
                roll -= *w;
                false
            }
        })
        .map(|(o, _)| *o)
        .unwrap_or("insert");

    let lag_ms = rng.i64(20..1500);
    let wall = enqueued - TimeDelta::milliseconds(lag_ms);
    let cluster_secs = wall.timestamp();
    let inc = rng.u32(1..40);
    let coll_uuid = format!("{:016X}{:016X}", mix(&[c.seed, fnv(coll.db)]), mix(&[fnv(coll.coll)]));
    // Inserts create fresh documents; the other operations touch one of a pool of
    // existing ones (created in the weeks before the simulated span).
    let doc_hex = if op == "insert" {
        oid_hex(enqueued.timestamp(), mix(&[c.seed, p as u64]), index * 64 + p as u64)
    } else {
        let k = rng.u64(0..2000);
        let born = start - TimeDelta::seconds((mix(&[k, 1]) % (30 * 86_400)) as i64);
        oid_hex(born.timestamp(), mix(&[c.seed, k]), k)
    };
    let token = format!(
        "82{cluster_secs:08X}{inc:08X}2B022C0100296E5A1004{coll_uuid}46645F69640064{}0004",
        doc_hex.to_ascii_uppercase()
    );
    let id = obj(&[("_data", s(&token))]);
    let cluster_time = obj(&[(
        "$timestamp",
        obj(&[("t", cluster_secs.to_string()), ("i", inc.to_string())]),
    )]);
    let ns = obj(&[("db", s(coll.db)), ("coll", s(coll.coll))]);
    let key = format!("{}.{}", coll.db, coll.coll);
    let document_key = obj(&[("_id", oid(&doc_hex))]);

    let mut fields: Vec<(&str, String)> = vec![
        ("_id", id),
        ("operationType", s(op)),
        ("clusterTime", cluster_time),
        ("wallTime", date(wall)),
    ];
    let target = c.event_size;
    match op {
        "insert" | "replace" => {
            let doc = document(&mut rng, coll, &doc_hex, wall);
            fields.push(("fullDocument", doc));
            fields.push(("ns", ns));
            fields.push(("documentKey", document_key));
            pad(&mut fields, "fullDocument", target, &mut rng);
        }
        "update" => {
            let updated = updated_fields(&mut rng, coll, wall);
            let removed = if rng.u8(..10) == 0 { "[\"legacyFlag\"]" } else { "[]" };
            let with_lookup = rng.bool();
            if with_lookup {
                fields.push(("fullDocument", document(&mut rng, coll, &doc_hex, wall)));
            }
            fields.push(("ns", ns));
            fields.push(("documentKey", document_key));
            fields.push((
                "updateDescription",
                obj(&[
                    ("updatedFields", updated),
                    ("removedFields", removed.to_string()),
                    ("truncatedArrays", "[]".to_string()),
                ]),
            ));
            pad(
                &mut fields,
                if with_lookup {
                    "fullDocument"
                } else {
                    "updateDescription"
                },
                target,
                &mut rng,
            );
        }
        "delete" => {
            fields.push(("ns", ns));
            fields.push(("documentKey", document_key));
        }
        "drop" => fields.push(("ns", ns)),
        "rename" => {
            fields.push(("ns", ns));
            let to = format!("{}_{}", coll.coll, wall.format("%Y%m%d"));
            fields.push(("to", obj(&[("db", s(coll.db)), ("coll", s(&to))])));
        }
        "dropDatabase" => fields.push(("ns", obj(&[("db", s(coll.db))]))),
        // invalidate: no namespace at all.
        _ => {}
    }
    (obj(&fields).into_bytes(), key)
}

/// Grows the object in field `name` with a `notes` string until the event reaches
/// about `target` bytes.
fn pad(fields: &mut [(&str, String)], name: &str, target: usize, rng: &mut fastrand::Rng) {
    let size: usize = fields.iter().map(|(k, v)| k.len() + v.len() + 4).sum::<usize>() + 2;
    let Some((_, value)) = fields.iter_mut().find(|(k, _)| *k == name) else {
        return;
    };
    let needed = target.saturating_sub(size + 12);
    if needed == 0 || !value.ends_with('}') {
        return;
    }
    value.pop();
    if !value.ends_with('{') {
        value.push(',');
    }
    value.push_str("\"notes\":");
    value.push_str(&s(&words(rng, needed)));
    value.push('}');
}

fn document(rng: &mut fastrand::Rng, coll: &Collection, hex: &str, at: DateTime<Utc>) -> String {
    let id = ("_id", oid(hex));
    let created = at - TimeDelta::seconds(rng.i64(0..90 * 86_400));
    match coll.coll {
        "orders" => {
            let n = rng.usize(1..5);
            let mut total = 0u64;
            let items: Vec<String> = (0..n)
                .map(|_| {
                    let qty = rng.u64(1..4);
                    let price = rng.u64(199..25_000);
                    total += qty * price;
                    obj(&[
                        ("sku", s(&format!("SKU-{:05}", rng.u32(..20_000)))),
                        ("qty", qty.to_string()),
                        ("price", decimal(price)),
                    ])
                })
                .collect();
            let (city, country) = pick(rng, CITIES);
            obj(&[
                id,
                ("orderNo", s(&format!("SO-{:07}", rng.u32(..10_000_000)))),
                (
                    "customerId",
                    oid(&oid_hex(created.timestamp(), rng.u64(..), rng.u64(..))),
                ),
                ("status", s(pick(rng, STATUSES))),
                ("items", format!("[{}]", items.join(","))),
                ("total", decimal(total)),
                ("currency", s("EUR")),
                ("shipping", obj(&[("city", s(city)), ("country", s(country))])),
                ("createdAt", date(created)),
                ("updatedAt", date(at)),
            ])
        }
        "customers" | "contacts" => {
            let first = pick(rng, FIRST);
            let last = pick(rng, LAST);
            let (city, country) = pick(rng, CITIES);
            let uuid = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, rng.u128(..).to_be_bytes());
            obj(&[
                id,
                ("name", s(&format!("{first} {last}"))),
                (
                    "email",
                    s(&format!("{}.{}@example.com", first.to_lowercase(), rng.u32(..10_000))),
                ),
                (
                    "externalId",
                    obj(&[("$binary", obj(&[("base64", s(&uuid)), ("subType", s("04"))]))]),
                ),
                ("tier", s(pick(rng, &["free", "silver", "gold"]))),
                ("marketingOptIn", rng.bool().to_string()),
                ("address", obj(&[("city", s(city)), ("country", s(country))])),
                ("createdAt", date(created)),
            ])
        }
        "products" => obj(&[
            id,
            ("sku", s(&format!("SKU-{:05}", rng.u32(..20_000)))),
            ("title", s(&words(rng, 24))),
            ("price", decimal(rng.u64(199..25_000))),
            ("stock", rng.u32(..500).to_string()),
            ("tags", format!("[{},{}]", s(pick(rng, WORDS)), s(pick(rng, WORDS)))),
            ("createdAt", date(created)),
        ]),
        "accounts" => obj(&[
            id,
            (
                "name",
                s(&format!(
                    "{} {}",
                    pick(rng, LAST),
                    pick(rng, &["GmbH", "SA", "Ltd", "BV", "AB"])
                )),
            ),
            ("industry", s(pick(rng, &["retail", "logistics", "media", "energy"]))),
            ("employees", rng.u32(5..20_000).to_string()),
            ("arr", decimal(rng.u64(100_000..50_000_000))),
            ("createdAt", date(created)),
        ]),
        "stock" => obj(&[
            id,
            ("sku", s(&format!("SKU-{:05}", rng.u32(..20_000)))),
            ("warehouse", s(pick(rng, &["BER-1", "LYS-2", "OPO-1", "SEA-3"]))),
            ("onHand", rng.u32(..2000).to_string()),
            ("reserved", rng.u32(..100).to_string()),
            ("updatedAt", date(at)),
        ]),
        _ => obj(&[
            id,
            ("sku", s(&format!("SKU-{:05}", rng.u32(..20_000)))),
            ("delta", rng.i32(-50..50).to_string()),
            ("reason", s(pick(rng, &["sale", "return", "restock", "audit"]))),
            ("at", date(at)),
        ]),
    }
}

fn updated_fields(rng: &mut fastrand::Rng, coll: &Collection, at: DateTime<Utc>) -> String {
    match coll.coll {
        "orders" => obj(&[("status", s(pick(rng, STATUSES))), ("updatedAt", date(at))]),
        "customers" | "contacts" => obj(&[
            ("tier", s(pick(rng, &["free", "silver", "gold"]))),
            ("lastSeenAt", date(at)),
        ]),
        "products" => obj(&[
            ("price", decimal(rng.u64(199..25_000))),
            ("stock", rng.u32(..500).to_string()),
        ]),
        "accounts" => obj(&[("arr", decimal(rng.u64(100_000..50_000_000)))]),
        "stock" => obj(&[("onHand", rng.u32(..2000).to_string()), ("updatedAt", date(at))]),
        _ => obj(&[("reason", s(pick(rng, &["sale", "return", "restock", "audit"])))]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::Value;

    fn hub(events: u64, partitions: u32) -> Hub {
        let start = Utc.with_ymd_and_hms(2025, 1, 15, 9, 40, 0).unwrap();
        Hub::new(
            EventSource::ChangeStream(ChangeStreamConfig {
                events,
                event_size: 600,
                seed: 7,
            }),
            partitions,
            0,
            start,
            Duration::from_secs(7200),
        )
    }

    #[test]
    fn events_are_deterministic_and_realistic() {
        let h = hub(2000, 4);
        assert_eq!(h.partitions.iter().map(|p| p.events).sum::<u64>(), 2000);
        let a = h.event(1, 10);
        let b = h.event(1, 10);
        assert_eq!(a.body, b.body);
        assert_eq!(a.sequence_number, 10);
        let mut ops = std::collections::BTreeMap::new();
        let mut sizes = Vec::new();
        for i in 0..500 {
            let e = h.event(2, i);
            let v: Value = serde_json::from_slice(&e.body).expect("bodies are JSON");
            let op = v["operationType"].as_str().unwrap().to_string();
            assert!(v["_id"]["_data"].as_str().unwrap().starts_with("82"));
            assert!(v["clusterTime"]["$timestamp"]["t"].is_i64());
            if op != "invalidate" {
                assert!(v["ns"]["db"].is_string(), "{v}");
            }
            if op == "insert" {
                assert!(v["fullDocument"]["_id"]["$oid"].is_string());
                assert_eq!(v["documentKey"]["_id"], v["fullDocument"]["_id"]);
                sizes.push(e.body.len());
            }
            if op == "update" {
                assert!(v["updateDescription"]["updatedFields"].is_object());
            }
            *ops.entry(op).or_insert(0) += 1;
        }
        assert!(ops["insert"] > ops["delete"] && ops["update"] > 50, "{ops:?}");
        let avg = sizes.iter().sum::<usize>() / sizes.len();
        assert!(
            (500..800).contains(&avg),
            "inserts are padded to about the event size: {avg}"
        );
    }

    #[test]
    fn enqueued_times_span_the_window_in_order() {
        let h = hub(400, 2);
        let times: Vec<_> = (0..200).map(|i| h.enqueued_time(0, i)).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
        assert!(times[0] >= h.start && *times.last().unwrap() < h.end());
        let hours: std::collections::BTreeSet<_> = times.iter().map(|t| t.format("%H").to_string()).collect();
        assert_eq!(hours.len(), 3, "09:40 + 2h crosses two hour boundaries");
    }

    #[test]
    fn bodies_are_dealt_round_robin() {
        let bodies: Vec<Vec<u8>> = (0..5).map(|i| format!("{{\"n\":{i}}}").into_bytes()).collect();
        let h = Hub::new(
            EventSource::Bodies(Arc::new(bodies)),
            2,
            100,
            Utc::now(),
            Duration::from_secs(60),
        );
        assert_eq!(h.partitions[0].events, 3);
        assert_eq!(h.partitions[1].events, 2);
        assert_eq!(h.event(0, 1).body, b"{\"n\":2}");
        assert_eq!(h.event(1, 1).body, b"{\"n\":3}");
        assert_eq!(h.event(1, 1).sequence_number, 101);
    }
}
