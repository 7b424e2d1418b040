//! `hub2lake package`: the folder and zip the Functions host runs from.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};

#[derive(Debug, clap::Args)]
pub struct PackageArgs {
    /// Folder holding host.json and functions/<name>/function.json.
    #[arg(long, default_value = ".")]
    pub source: PathBuf,
    /// The `handler` executable to ship (default: the one next to this program).
    #[arg(long)]
    pub handler: Option<PathBuf>,
    /// Output folder; the app goes to <out>/app and the zip to <out>/hub2lake-app.zip.
    #[arg(long, default_value = "dist")]
    pub out: PathBuf,
}

pub fn run(args: &PackageArgs) -> anyhow::Result<ExitCode> {
    let handler = match &args.handler {
        Some(h) => h.clone(),
        None => std::env::current_exe()
            .context("cannot locate this program")?
            .with_file_name("handler"),
    };
    let built = build_app(&args.source, &handler, &args.out)?;
    println!("app folder: {}", built.app_dir.display());
    for f in &built.files {
        println!("  {f}");
    }
    println!("zip:        {}", built.zip.display());
    println!("\nrun locally:  cd {} && func start", built.app_dir.display());
    println!(
        "deploy (zip): az functionapp deployment source config-zip -g <rg> -n <app> --src {}",
        built.zip.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// What [`build_app`] produced.
#[derive(Debug)]
pub struct BuiltApp {
    pub app_dir: PathBuf,
    pub zip: PathBuf,
    /// Files in the app, relative to its folder.
    pub files: Vec<String>,
}

/// Copies host.json, every functions/<name>/function.json (as <name>/function.json,
/// where the host looks for them) and the handler into `<out>/app`, then zips it.
pub fn build_app(source: &Path, handler: &Path, out: &Path) -> anyhow::Result<BuiltApp> {
    let host_json = source.join("host.json");
    if !host_json.is_file() {
        bail!(
            "{} not found: run from the repository root or pass --source",
            host_json.display()
        );
    }
    if !handler.is_file() {
        bail!(
            "handler executable {} not found: build it first with `cargo build --release --bin handler` or pass --handler",
            handler.display()
        );
    }
    let app_dir = out.join("app");
    if app_dir.exists() {
        std::fs::remove_dir_all(&app_dir).with_context(|| format!("cannot clear {}", app_dir.display()))?;
    }
    std::fs::create_dir_all(&app_dir)?;
    let mut files = vec!["host.json".to_string()];
    std::fs::copy(&host_json, app_dir.join("host.json"))?;
    let functions = source.join("functions");
    let mut names: Vec<_> = std::fs::read_dir(&functions)
        .with_context(|| format!("cannot read {}", functions.display()))?
        .filter_map(Result::ok)
        .filter(|e| e.path().join("function.json").is_file())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    if names.is_empty() {
        bail!("no functions/<name>/function.json under {}", source.display());
    }
    for name in &names {
        let text = std::fs::read_to_string(functions.join(name).join("function.json"))?;
        serde_json::from_str::<serde_json::Value>(&text)
            .with_context(|| format!("functions/{name}/function.json is not valid JSON"))?;
        std::fs::create_dir_all(app_dir.join(name))?;
        std::fs::write(app_dir.join(name).join("function.json"), text)?;
        files.push(format!("{name}/function.json"));
    }
    let target = app_dir.join("handler");
    std::fs::copy(handler, &target)?;
    set_executable(&target)?;
    files.push("handler".to_string());

    let zip = out.join("hub2lake-app.zip");
    write_zip(&app_dir, &files, &zip)?;
    Ok(BuiltApp { app_dir, zip, files })
}

#[cfg(unix)]
fn set_executable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}

#[cfg(not(unix))]
fn set_executable(_: &Path) -> std::io::Result<()> {
    Ok(())
}

fn write_zip(app_dir: &Path, files: &[String], zip_path: &Path) -> anyhow::Result<()> {
    let file = std::fs::File::create(zip_path).with_context(|| format!("cannot create {}", zip_path.display()))?;
    let mut zip = zip::ZipWriter::new(file);
    for rel in files {
        // The exec bit must survive: the host runs `handler` straight from the package.
        let mode = if rel == "handler" { 0o755 } else { 0o644 };
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(mode);
        zip.start_file(rel.as_str(), options)?;
        zip.write_all(&std::fs::read(app_dir.join(rel))?)?;
    }
    zip.finish()?;
    Ok(())
}
