//! Micro benchmarks of the handler's CPU path on realistic change-stream batches:
//! decode (host request → typed batch), encode (batch → JSON Lines → gzip or zstd) at
//! gzip levels 1 and 6 and zstd levels 1 and 3 beside the raw compressors on the same
//! bytes (flate2/zlib-rs and libdeflate for gzip, libzstd for zstd; ratios printed to
//! stderr), and object naming; on two data sets (see [`DataSet`]).
//!
//! `cargo bench --bench ingest` (see BENCHMARKS.md).

use std::io::Write;

use chrono::{TimeDelta, TimeZone, Utc};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hub2lake::config::{EventEncoding, Settings};
use hub2lake::host::wire::{eventhub_request, WireDataType, WireEvent, WirePartition};
use hub2lake::host::{EventHubBatch, Invocation};
use hub2lake::ingest::prepare_batch;
use hub2lake::lake::layout::{self, PathTemplate, PathValues};
use hub2lake_cli::simulator::{ChangeStreamConfig, EventSource, Hub};
use serde_json::json;

/// A ~1 KB MongoDB change event (insert or update, relaxed Extended JSON).
fn change_event(n: i64) -> Vec<u8> {
    let oid = format!("{:024x}", 0x6787_90d5_0000_0000_u64 as i64 + n);
    let doc = json!({
        "_id": {"$oid": oid},
        "orderNo": format!("A-{n}"),
        "customer": {"name": "Zoë Müller", "email": format!("user{n}@example.com"), "tier": "gold"},
        "total": {"$numberDecimal": format!("{}.90", n % 1000)},
        "createdAt": {"$date": "2025-01-15T10:32:53.120Z"},
        "items": (0..4).map(|i| json!({"sku": format!("SKU-{i}-{n}"), "qty": i + 1, "price": {"$numberDecimal": "12.50"}, "note": "handle with care"})).collect::<Vec<_>>(),
        "shipping": {"street": "Hauptstraße 5", "city": "Berlin", "zip": "10115", "country": "DE"},
        "tags": ["priority", "gift", "repeat-customer"],
    });
    let op = if n % 3 == 0 { "update" } else { "insert" };
    let mut event = json!({
        "_id": {"_data": format!("82678790D5{n:016X}2B042C0100296E5A1004A1B2C3D4E5F6071829")},
        "operationType": op,
        "clusterTime": {"$timestamp": {"t": 1736937173 + n, "i": 1}},
        "wallTime": {"$date": "2025-01-15T10:32:53.120Z"},
        "ns": {"db": "shop", "coll": if n % 4 == 0 { "customers" } else { "orders" }},
        "documentKey": {"_id": {"$oid": oid}},
    });
    if op == "update" {
        event["updateDescription"] = json!({"updatedFields": {"status": "paid", "paidAt": {"$date": "2025-01-15T10:32:54.000Z"}}, "removedFields": ["draft"], "truncatedArrays": []});
    }
    event["fullDocument"] = doc;
    event.to_string().into_bytes()
}

/// The two data sets: `templated` (one document shape with few changing values:
/// compresses very well, the best case for gzip and so the hardest for the encoder's
/// ratio) and `simulator` (the simulator's generator, as `hub2lake bench` and
/// `hub2lake demo` use: several collections, inserts/updates/deletes, varied values
/// and free-text notes).
#[derive(Clone, Copy)]
enum DataSet {
    Templated,
    Simulator,
}

impl DataSet {
    fn name(self) -> &'static str {
        match self {
            Self::Templated => "templated",
            Self::Simulator => "simulator",
        }
    }
}

fn request(data: DataSet, events: usize) -> String {
    let t0 = Utc.with_ymd_and_hms(2025, 1, 15, 10, 0, 0).unwrap();
    let hub = Hub::new(
        EventSource::ChangeStream(ChangeStreamConfig {
            events: events as u64,
            event_size: 1024,
            seed: 7,
        }),
        1,
        5000,
        t0,
        std::time::Duration::from_secs(3000),
    );
    let events: Vec<WireEvent> = (0..events as i64)
        .map(|n| match data {
            DataSet::Templated => WireEvent {
                body: change_event(n),
                sequence_number: 5000 + n,
                offset: 1_048_576 + 768 * n,
                enqueued_time: t0 + TimeDelta::milliseconds(37 * n),
                partition_key: None,
                properties: json!({"source": "mongo-cdc"}),
            },
            DataSet::Simulator => hub.event(0, n as u64),
        })
        .collect();
    eventhub_request(
        "events",
        &WirePartition::default(),
        &events,
        WireDataType::String,
        None,
        "ingest",
    )
}

fn decode(body: &str) -> EventHubBatch {
    let inv = Invocation::parse(body.as_bytes()).unwrap();
    EventHubBatch::from_invocation(&inv, EventEncoding::String, "hub", "$Default").unwrap()
}

/// The JSON Lines the encoder produces, uncompressed, for the raw-gzip baseline.
fn jsonl(batch: &EventHubBatch) -> Vec<u8> {
    let mut s = Settings::local("/tmp/hub2lake-bench-unused");
    s.compression = hub2lake::config::Compression::None;
    let prepared = prepare_batch(&s, batch, Utc::now()).unwrap();
    prepared
        .contents()
        .flat_map(|(_, bytes)| bytes.iter().copied())
        .collect()
}

/// Prints the compression ratio of one compressor on one data set (criterion reports
/// only time), so BENCHMARKS.md can show speed and size side by side.
fn report_ratio(data: &str, compressor: &str, raw: &[u8], compressed: &[u8]) {
    eprintln!(
        "ratio {data} {compressor}: {} -> {} bytes, {:.2}x",
        raw.len(),
        compressed.len(),
        raw.len() as f64 / compressed.len() as f64
    );
}

fn benches(c: &mut Criterion) {
    for (data, n) in [
        (DataSet::Templated, 100usize),
        (DataSet::Templated, 1000),
        (DataSet::Simulator, 1000),
    ] {
        let body = request(data, n);
        let batch = decode(&body);
        let input_bytes = batch.body_bytes() as u64;
        let n = format!("{}/{n}", data.name());

        let mut g = c.benchmark_group(format!("decode/{n}"));
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function("host_request_to_batch", |b| b.iter(|| decode(&body)));
        g.finish();

        let mut g = c.benchmark_group(format!("encode/{n}"));
        g.throughput(Throughput::Bytes(input_bytes));
        for level in [1u32, 6] {
            let mut s = Settings::local("/tmp/hub2lake-bench-unused");
            s.compression = hub2lake::config::Compression::Gzip { level };
            g.bench_with_input(BenchmarkId::new("records_jsonl_gzip", level), &s, |b, s| {
                b.iter(|| prepare_batch(s, &batch, Utc::now()).unwrap())
            });
            let raw = jsonl(&batch);
            let flate2_gzip = |raw: &[u8]| {
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::with_capacity(raw.len() / 4), flate2::Compression::new(level));
                enc.write_all(raw).unwrap();
                enc.finish().unwrap()
            };
            g.bench_with_input(BenchmarkId::new("raw_flate2_gzip_same_input", level), &raw, |b, raw| {
                b.iter(|| flate2_gzip(raw))
            });
            // libdeflate compresses a whole buffer at once (one gzip member, as flate2's).
            let libdeflate_gzip = |raw: &[u8]| {
                let mut c = libdeflater::Compressor::new(libdeflater::CompressionLvl::new(level as i32).unwrap());
                let mut out = vec![0; c.gzip_compress_bound(raw.len())];
                let n = c.gzip_compress(raw, &mut out).unwrap();
                out.truncate(n);
                out
            };
            g.bench_with_input(
                BenchmarkId::new("raw_libdeflate_gzip_same_input", level),
                &raw,
                |b, raw| b.iter(|| libdeflate_gzip(raw)),
            );
            report_ratio(&n, &format!("flate2 gzip {level}"), &raw, &flate2_gzip(&raw));
            report_ratio(&n, &format!("libdeflate gzip {level}"), &raw, &libdeflate_gzip(&raw));
        }
        for level in [1i32, 3] {
            let mut s = Settings::local("/tmp/hub2lake-bench-unused");
            s.compression = hub2lake::config::Compression::Zstd { level };
            g.bench_with_input(BenchmarkId::new("records_jsonl_zstd", level), &s, |b, s| {
                b.iter(|| prepare_batch(s, &batch, Utc::now()).unwrap())
            });
            let raw = jsonl(&batch);
            g.bench_with_input(BenchmarkId::new("raw_zstd_same_input", level), &raw, |b, raw| {
                b.iter(|| zstd::bulk::compress(raw, level).unwrap())
            });
            report_ratio(
                &n,
                &format!("zstd {level}"),
                &raw,
                &zstd::bulk::compress(&raw, level).unwrap(),
            );
        }
        let mut s = Settings::local("/tmp/hub2lake-bench-unused");
        s.compression = hub2lake::config::Compression::None;
        g.bench_with_input(BenchmarkId::new("records_jsonl_uncompressed", 0), &s, |b, s| {
            b.iter(|| prepare_batch(s, &batch, Utc::now()).unwrap())
        });
        g.finish();
    }

    let template = PathTemplate::parse(hub2lake::config::DEFAULT_TEMPLATE).unwrap();
    let hour = Utc.with_ymd_and_hms(2025, 1, 15, 10, 0, 0).unwrap();
    c.bench_function("naming/render_default_template", |b| {
        b.iter(|| {
            layout::render(
                &template,
                &PathValues {
                    database: "shop",
                    collection: "orders",
                    operation: "insert",
                    eventhub: "mongo-changes",
                    partition: "3",
                    hour,
                    first_seq: 5812,
                    last_seq: 6811,
                },
                "jsonl.gz",
            )
        })
    });
}

criterion_group! {
    name = ingest;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = benches
}
criterion_main!(ingest);
