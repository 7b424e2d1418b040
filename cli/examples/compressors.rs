//! Compresses the data objects of a lake (its own records, object by object, as the
//! handler writes them) with every compressor the issue of compression compared, so
//! the choice of `HUB2LAKE_COMPRESSION`/level can be made on one's own data
//! (BENCHMARKS.md, "Compression"). libdeflate is not in the handler; it is here to
//! compare.
//!
//! ```text
//! cargo run --release -p hub2lake-cli --example compressors -- /path/to/local/lake [MAX_OBJECTS]
//! ```
//!
//! Objects of any encoding are read (decompressed first); receipts and `_` areas are
//! skipped. Each compressor runs three times over all objects; the best run counts.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use hub2lake::lake::codec::{decode_object, is_data_name};

type Compress = Box<dyn Fn(&[u8]) -> usize>;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .ok_or_else(|| anyhow::anyhow!("usage: compressors LAKE_DIR [MAX_OBJECTS]"))?,
    );
    let max: usize = args.next().map(|n| n.parse()).transpose()?.unwrap_or(300);
    let mut files = Vec::new();
    collect(&dir, &mut files)?;
    files.sort();
    files.truncate(max);
    let objects: Vec<Vec<u8>> = files
        .iter()
        .map(|f| Ok(decode_object(&std::fs::read(f)?)?))
        .collect::<anyhow::Result<_>>()?;
    let total: usize = objects.iter().map(Vec::len).sum();
    anyhow::ensure!(total > 0, "no data objects under {}", dir.display());
    println!(
        "{} objects, {:.1} MB of JSON Lines (median object {:.0} KB)",
        objects.len(),
        total as f64 / 1e6,
        median_kb(&objects)
    );
    println!("{:<34} {:>9} {:>7} {:>12}", "compressor", "MB/s", "ratio", "bytes");
    for (name, compress) in compressors() {
        let mut best = f64::MAX;
        let mut out = 0;
        for _ in 0..3 {
            let t = Instant::now();
            out = objects.iter().map(|o| compress(o)).sum();
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!(
            "{name:<34} {:>9.1} {:>7.2} {out:>12}",
            total as f64 / best / 1e6,
            total as f64 / out as f64
        );
    }
    Ok(())
}

fn compressors() -> Vec<(String, Compress)> {
    let mut list: Vec<(String, Compress)> = Vec::new();
    for level in [1u32, 6, 9] {
        list.push((
            format!("gzip {level} (flate2/zlib-rs, shipped)"),
            Box::new(move |o: &[u8]| {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
                // The handler hands deflate 64 KiB at a time (lake/encode.rs).
                for chunk in o.chunks(64 * 1024) {
                    let _ = e.write_all(chunk);
                }
                e.finish().map_or(0, |v| v.len())
            }),
        ));
    }
    for level in [1i32, 6, 9] {
        list.push((
            format!("gzip {level} (libdeflate, whole object)"),
            Box::new(move |o: &[u8]| {
                let Ok(lvl) = libdeflater::CompressionLvl::new(level) else {
                    return 0;
                };
                let mut c = libdeflater::Compressor::new(lvl);
                let mut out = vec![0; c.gzip_compress_bound(o.len())];
                c.gzip_compress(o, &mut out).unwrap_or(0)
            }),
        ));
    }
    for level in [1i32, 3, 5, 9] {
        list.push((
            format!("zstd {level} (libzstd, shipped)"),
            Box::new(move |o: &[u8]| zstd::stream::encode_all(o, level).map_or(0, |v| v.len())),
        ));
    }
    list
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('_') {
            continue;
        }
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            collect(&path, files)?;
        } else if is_data_name(&name) {
            files.push(path);
        }
    }
    Ok(())
}

fn median_kb(objects: &[Vec<u8>]) -> f64 {
    let mut sizes: Vec<usize> = objects.iter().map(Vec::len).collect();
    sizes.sort_unstable();
    sizes.get(sizes.len() / 2).copied().unwrap_or(0) as f64 / 1e3
}
