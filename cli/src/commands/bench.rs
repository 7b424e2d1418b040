//! `hub2lake bench`: the macro benchmark of the real handler.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::benchmark::{self, BenchConfig};

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// The handler executable (default: the one next to this program).
    #[arg(long)]
    pub handler: Option<PathBuf>,
    /// Lake URL (default: a fresh temporary local folder, removed afterwards).
    #[arg(long)]
    pub lake: Option<String>,
    #[arg(long, default_value_t = 2)]
    pub partitions: u32,
    #[arg(long, default_value_t = 10)]
    pub batches_per_partition: u64,
    #[arg(long, default_value_t = 1000)]
    pub batch_size: u64,
    /// Approximate bytes per event body.
    #[arg(long, default_value_t = 1024)]
    pub event_size: usize,
    /// gzip level, or 0 for uncompressed output.
    #[arg(long, default_value_t = 6)]
    pub gzip_level: u32,
    /// Write zstd (`.jsonl.zst`) at this level (1-22) instead of gzip.
    #[arg(long, value_name = "LEVEL", conflicts_with = "gzip_level", value_parser = clap::value_parser!(u32).range(1..=22))]
    pub zstd_level: Option<u32>,
    /// Extra app settings for the handler, KEY=VALUE (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Also write the result as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

pub fn run(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    let handler = match &args.handler {
        Some(h) => h.clone(),
        None => std::env::current_exe()?.with_file_name("handler"),
    };
    anyhow::ensure!(
        handler.is_file(),
        "handler executable {} not found: build it with `cargo build --release`",
        handler.display()
    );
    let tmp = tempfile_dir()?;
    let lake = args.lake.clone().unwrap_or_else(|| format!("file://{}", tmp.display()));
    let mut settings = BTreeMap::from([
        ("HUB2LAKE_LAKE_URL".to_string(), lake.clone()),
        ("HUB2LAKE_LOG_FORMAT".to_string(), "text".to_string()),
    ]);
    if let Some(level) = args.zstd_level {
        settings.insert("HUB2LAKE_COMPRESSION".into(), "zstd".into());
        settings.insert("HUB2LAKE_ZSTD_LEVEL".into(), level.to_string());
    } else if args.gzip_level == 0 {
        settings.insert("HUB2LAKE_COMPRESSION".into(), "none".into());
    } else {
        settings.insert("HUB2LAKE_GZIP_LEVEL".into(), args.gzip_level.to_string());
    }
    for kv in &args.set {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--set {kv:?}: expected KEY=VALUE"))?;
        settings.insert(k.to_string(), v.to_string());
    }
    // Azure lakes need the caller's AZURE_* credentials passed on.
    for (k, v) in std::env::vars().filter(|(k, _)| k.starts_with("AZURE") || k.starts_with("AZURITE")) {
        settings.entry(k).or_insert(v);
    }
    let config = BenchConfig {
        handler,
        settings,
        partitions: args.partitions,
        batches_per_partition: args.batches_per_partition,
        batch_size: args.batch_size,
        event_size: args.event_size,
        seed: args.seed,
    };
    eprintln!(
        "building {} batches of {} events (~{} B each), then driving the handler at {lake} ...",
        u64::from(args.partitions) * args.batches_per_partition,
        args.batch_size,
        args.event_size
    );
    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(benchmark::run(&config));
    let _ = std::fs::remove_dir_all(&tmp);
    let result = result?;
    println!("{result}");
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&result)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("json                {}", path.display());
    }
    Ok(if result.non_2xx == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("hub2lake-bench-{}-{}", std::process::id(), fastrand::u32(..)));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
