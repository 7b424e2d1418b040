//! `hub2lake package`: the folder and zip the Functions host runs.
//!
//! The handler it packs must start in the Functions Linux image, whose glibc may be
//! as old as 2.31 (Debian bullseye). So it reads the handler's ELF version needs and
//! refuses one above [`GLIBC_FLOOR`]; without `--handler`, when the handler next to
//! this program is above the floor (a plain `cargo build --release` on a recent
//! Linux), it builds one with `scripts/build-handler.sh` (cargo zigbuild for glibc
//! 2.28, the toolchain pinned there and installed when missing).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{bail, Context};

use crate::glibc_floor::{glibc_needs_of, GlibcNeeds, GLIBC_FLOOR};

/// The one command that builds the shippable handler (relative to the repository root).
pub const BUILD_SCRIPT: &str = "scripts/build-handler.sh";

#[derive(Debug, clap::Args)]
pub struct PackageArgs {
    /// Folder holding host.json, functions/<name>/function.json and scripts/build-handler.sh.
    #[arg(long, default_value = ".")]
    pub source: PathBuf,
    /// The `handler` executable to ship, as is (refused if it needs a glibc above 2.28)
    /// [default: the one next to this program if it meets the floor, else one built by
    /// scripts/build-handler.sh].
    #[arg(long)]
    pub handler: Option<PathBuf>,
    /// Output folder; the app goes to <out>/app and the zip to <out>/hub2lake-app.zip.
    #[arg(long, default_value = "dist")]
    pub out: PathBuf,
    /// Never run scripts/build-handler.sh: refuse a handler above the glibc floor instead.
    #[arg(long)]
    pub no_build: bool,
}

pub fn run(args: &PackageArgs) -> anyhow::Result<ExitCode> {
    let handler = shippable_handler(args)?;
    let built = build_app(&args.source, &handler.path, &args.out)?;
    println!("app folder: {}", built.app_dir.display());
    for f in &built.files {
        println!("  {f}");
    }
    println!("zip:        {}", built.zip.display());
    println!("handler:    {} ({})", handler.path.display(), handler.floor_note());
    println!(
        "\nrehearse:   hub2lake simulate --app {} --lake /tmp/lake",
        built.app_dir.display()
    );
    println!("run locally:  cd {} && func start", built.app_dir.display());
    println!(
        "deploy (zip): az functionapp deployment source config-zip -g <rg> -n <app> --src {}",
        built.zip.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// A handler that meets the glibc floor, and what it needs.
#[derive(Debug)]
pub struct ShippableHandler {
    pub path: PathBuf,
    pub needs: GlibcNeeds,
}

impl ShippableHandler {
    fn floor_note(&self) -> String {
        match self.needs.newest() {
            Some(v) => format!("needs {v} at most; floor {GLIBC_FLOOR}"),
            None => "needs no glibc".to_string(),
        }
    }
}

/// The handler to pack: the one given (checked), or the one next to this program if
/// it meets the floor, or one built by [`BUILD_SCRIPT`].
fn shippable_handler(args: &PackageArgs) -> anyhow::Result<ShippableHandler> {
    if let Some(given) = &args.handler {
        return check_floor(given)
            .map_err(|e| anyhow::anyhow!("{e:#}; or run `hub2lake package` without --handler, which builds it"));
    }
    let beside = std::env::current_exe()
        .context("cannot locate this program")?
        .with_file_name("handler");
    let why_build = if beside.is_file() {
        match check_floor(&beside) {
            Ok(ok) => return Ok(ok),
            Err(refusal) => format!("{refusal:#}"),
        }
    } else {
        format!("there is no handler next to this program ({})", beside.display())
    };
    if args.no_build {
        bail!("{why_build} (--no-build: not building one)");
    }
    let script = args.source.join(BUILD_SCRIPT);
    if !script.is_file() {
        bail!(
            "{why_build}; and {} is not there to build one (pass --source <repository root>, or build it \
             elsewhere with `{BUILD_SCRIPT}` and pass --handler)",
            script.display()
        );
    }
    eprintln!("hub2lake package: {why_build}");
    eprintln!("hub2lake package: building the shippable handler with {BUILD_SCRIPT} ...");
    let built = run_build_script(&script)?;
    check_floor(&built)
}

/// Runs the build script (its progress goes to our stderr) and returns the path it prints.
fn run_build_script(script: &Path) -> anyhow::Result<PathBuf> {
    let root = script
        .parent()
        .and_then(Path::parent)
        .context("the build script sits in <root>/scripts")?;
    let output = Command::new("bash")
        .arg(script)
        .current_dir(root)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run bash {}", script.display()))?;
    if !output.status.success() {
        bail!("{} failed ({}); its output is above", script.display(), output.status);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let path = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .with_context(|| format!("{} printed no handler path", script.display()))?;
    Ok(root.join(path.trim()))
}

/// Accepts `path` if it is a Linux x86-64 executable needing glibc <= [`GLIBC_FLOOR`].
pub fn check_floor(path: &Path) -> anyhow::Result<ShippableHandler> {
    if !path.is_file() {
        bail!(
            "handler executable {} not found: build it with `{BUILD_SCRIPT}` (or `cargo build --release --bin handler`) or pass --handler",
            path.display()
        );
    }
    let needs = glibc_needs_of(path).with_context(|| format!("{} cannot be shipped", path.display()))?;
    match needs.newest() {
        Some(newest) if !needs.within(GLIBC_FLOOR) => bail!(
            "{} needs {newest}, above the floor {GLIBC_FLOOR}: the Functions Linux images have glibc 2.31 \
             (bullseye) or 2.36 (bookworm), and a handler that needs more never starts (\"host cannot start \
             the worker\"). Build it with `{BUILD_SCRIPT}` (cargo zigbuild --target \
             x86_64-unknown-linux-gnu.2.28) and pack that",
            path.display()
        ),
        _ => Ok(ShippableHandler {
            path: path.to_path_buf(),
            needs,
        }),
    }
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
