//! Runs `prepare_batch` K times on one fixed batch of 1000 change events, so that two
//! versions of the encoder can be compared by instructions retired, which a busy
//! machine does not disturb (BENCHMARKS.md, "Ingest split by stage"):
//!
//! ```text
//! cargo build --release -p hub2lake-cli --example ingest_instructions
//! for k in 0 5; do valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/ingest_instructions 6 $k; done   # gzip level 6, or none
//! ```
//!
//! (K=5 minus K=0) / 5 is the cost of one batch.

use chrono::{TimeZone, Utc};
use hub2lake::config::{Compression, EventEncoding, Settings};
use hub2lake::host::wire::{eventhub_request, WireDataType, WireEvent, WirePartition};
use hub2lake::host::{EventHubBatch, Invocation};
use hub2lake::ingest::prepare_batch;
use serde_json::json;

fn change_event(n: i64) -> Vec<u8> {
    let oid = format!("{:024x}", 0x6787_90d5_0000_0000_u64 as i64 + n);
    let op = if n % 3 == 0 { "update" } else { "insert" };
    json!({
        "_id": {"_data": format!("82678790D5{n:016X}2B042C0100296E5A1004")},
        "operationType": op,
        "clusterTime": {"$timestamp": {"t": 1736937173 + n, "i": 1}},
        "ns": {"db": "shop", "coll": if n % 4 == 0 { "customers" } else { "orders" }},
        "documentKey": {"_id": {"$oid": oid}},
        "fullDocument": {"_id": {"$oid": oid}, "orderNo": format!("A-{n}"), "note": format!("order {n} for customer {} handled with care", n * 7919 % 1013),
            "items": (0..4).map(|i| json!({"sku": format!("SKU-{i}-{n}"), "qty": i + 1, "price": {"$numberDecimal": format!("{}.50", (n * 31 + i) % 97)}})).collect::<Vec<_>>()},
    }).to_string().into_bytes()
}

fn main() {
    const USAGE: &str = "usage: ingest_instructions <none|gzip level 1-9> <batches>";
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [compression, k] = args.as_slice() else {
        eprintln!("{USAGE}");
        std::process::exit(2);
    };
    let compression = match compression.as_str() {
        "none" => Compression::None,
        level => Compression::Gzip {
            level: level.parse().expect(USAGE),
        },
    };
    let k: usize = k.parse().expect(USAGE);
    let t0 = Utc.with_ymd_and_hms(2025, 1, 15, 10, 30, 0).unwrap();
    let events: Vec<WireEvent> = (0..1000)
        .map(|n| WireEvent {
            body: change_event(n),
            sequence_number: 1000 + n,
            offset: n * 1100,
            enqueued_time: t0 + chrono::TimeDelta::seconds(n * 3),
            partition_key: None,
            properties: json!({}),
        })
        .collect();
    let body = eventhub_request(
        "events",
        &WirePartition::default(),
        &events,
        WireDataType::String,
        None,
        "ingest",
    );
    let inv = Invocation::parse(body.as_bytes()).unwrap();
    let batch = EventHubBatch::from_invocation(&inv, EventEncoding::String, "hub", "$Default").unwrap();
    let mut s = Settings::local("/unused");
    s.compression = compression;
    let mut total = 0usize;
    for _ in 0..k {
        let p = prepare_batch(&s, &batch, t0).unwrap();
        total += p.contents().map(|(_, b)| b.len()).sum::<usize>();
    }
    println!("{total}");
}
