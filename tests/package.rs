//! `hub2lake package` builds the folder and zip the Functions host runs, with a
//! handler whose glibc floor is at most 2.28, and `hub2lake simulate --app` rehearses
//! exactly that folder.
//!
//! The first test to package builds the shippable handler with
//! scripts/build-handler.sh (cargo zigbuild; it installs the pinned zig and
//! cargo-zigbuild when missing): minutes the first time, seconds once built.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use hub2lake_cli::glibc_floor::{glibc_needs, glibc_needs_of, GlibcVersion, GLIBC_FLOOR};

/// The app `hub2lake package --out <dir>` made without `--handler`: the handler next
/// to the test binary is this machine's build (above the floor here), so package
/// builds the shippable one itself. Packaged once for all tests.
fn packaged() -> &'static Path {
    static OUT: OnceLock<PathBuf> = OnceLock::new();
    OUT.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("package-test");
        let _ = std::fs::remove_dir_all(&out);
        let result = hub2lake(&["package", "--out"], &[&out]);
        assert!(
            result.status.success(),
            "hub2lake package failed:\n{}",
            String::from_utf8_lossy(&result.stderr)
        );
        out
    })
}

#[test]
fn package_builds_the_app_folder_and_a_zip_that_keeps_the_exec_bit() {
    let out = packaged();
    let app = out.join("app");
    for f in ["host.json", "ingest/function.json", "seal/function.json", "handler"] {
        assert!(app.join(f).is_file(), "{f} missing");
    }
    let mode = std::fs::metadata(app.join("handler")).unwrap().permissions().mode();
    assert_eq!(mode & 0o111, 0o111, "handler must be executable");
    let host: serde_json::Value = serde_json::from_slice(&std::fs::read(app.join("host.json")).unwrap()).unwrap();
    assert_eq!(host["customHandler"]["description"]["defaultExecutablePath"], "handler");

    let zip_file = std::fs::File::open(out.join("hub2lake-app.zip")).unwrap();
    let mut zip = zip::ZipArchive::new(zip_file).unwrap();
    let mut names: Vec<String> = zip.file_names().map(|n| n.unwrap().to_string()).collect();
    names.sort();
    assert_eq!(
        names,
        ["handler", "host.json", "ingest/function.json", "seal/function.json"]
    );
    let mut handler = zip.by_name("handler").unwrap();
    assert_eq!(handler.unix_mode().unwrap() & 0o755, 0o755);
    let mut bytes = Vec::new();
    handler.read_to_end(&mut bytes).unwrap();
    assert_eq!(
        bytes,
        std::fs::read(app.join("handler")).unwrap(),
        "the zip ships the folder's handler"
    );
}

#[test]
fn the_packaged_handler_needs_glibc_2_28_at_most_by_our_reading_and_by_objdump() {
    let handler = packaged().join("app/handler");
    let needs = glibc_needs_of(&handler).unwrap();
    let newest = needs.newest().expect("a glibc build needs glibc");
    assert!(newest <= GLIBC_FLOOR, "packaged handler needs {newest}");
    // An independent reader of the same table.
    assert_eq!(objdump_newest_glibc(&handler), newest);
    if objdump_newest_glibc(&hub2lake_testkit::handler_exe()) > GLIBC_FLOOR {
        // package had to build it (scripts/build-handler.sh, the deploy profile):
        // shipped stripped, no .symtab left.
        let sections = Command::new("objdump").arg("-h").arg(&handler).output().unwrap();
        assert!(!String::from_utf8_lossy(&sections.stdout).contains(".symtab"));
    }
}

#[test]
fn package_refuses_a_handler_above_the_glibc_floor_naming_the_version_and_the_fix() {
    // Real ELF bytes: the shippable handler with its base version GLIBC_2.2.5 (which
    // every x86-64 glibc binary needs) renamed in its string table to GLIBC_9.9.9.
    let good = std::fs::read(packaged().join("app/handler")).unwrap();
    let bad = replace_all(&good, b"GLIBC_2.2.5\0", b"GLIBC_9.9.9\0");
    assert_ne!(bad, good, "the handler names GLIBC_2.2.5");
    assert_eq!(
        glibc_needs(&bad).unwrap().newest(),
        Some(GlibcVersion { major: 9, minor: 9 })
    );
    let dir = tempfile::tempdir().unwrap();
    let patched = dir.path().join("handler");
    std::fs::write(&patched, bad).unwrap();
    let out = dir.path().join("dist");

    let result = hub2lake(&["package", "--handler"], &[&patched, Path::new("--out"), &out]);
    assert!(!result.status.success());
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        stderr.contains("needs GLIBC_9.9, above the floor GLIBC_2.28"),
        "{stderr}"
    );
    assert!(stderr.contains("scripts/build-handler.sh"), "{stderr}");
    assert!(!out.join("hub2lake-app.zip").exists(), "nothing is packaged");
}

#[test]
fn package_judges_the_host_built_handler_as_objdump_does() {
    let host_built = hub2lake_testkit::handler_exe();
    let newest = objdump_newest_glibc(&host_built);
    let out = tempfile::tempdir().unwrap();
    let result = hub2lake(
        &["package", "--handler"],
        &[&host_built, Path::new("--out"), out.path()],
    );
    let stderr = String::from_utf8_lossy(&result.stderr);
    if newest > GLIBC_FLOOR {
        // This machine (GLIBC_2.34 on Debian bookworm, 2.38+ on ubuntu-latest).
        assert!(!result.status.success());
        assert!(stderr.contains(&format!("needs {newest}, above the floor")), "{stderr}");
    } else {
        assert!(result.status.success(), "{stderr}");
    }
}

#[test]
fn package_with_no_build_refuses_instead_of_building() {
    let host_built = hub2lake_testkit::handler_exe();
    if objdump_newest_glibc(&host_built) <= GLIBC_FLOOR {
        return; // the handler beside hub2lake is shippable here: nothing to refuse
    }
    let out = tempfile::tempdir().unwrap();
    let result = hub2lake(&["package", "--no-build", "--out"], &[out.path()]);
    assert!(!result.status.success());
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("above the floor GLIBC_2.28"), "{stderr}");
    assert!(stderr.contains("scripts/build-handler.sh"), "{stderr}");
}

#[test]
fn package_without_a_built_handler_says_how_to_build_it() {
    let out = tempfile::tempdir().unwrap();
    let result = hub2lake(
        &["package", "--handler", "/nonexistent/handler", "--out"],
        &[out.path()],
    );
    assert!(!result.status.success());
    assert!(String::from_utf8_lossy(&result.stderr).contains("cargo build --release --bin handler"));
}

#[test]
fn the_packaged_folder_rehearses_end_to_end_on_a_local_lake() {
    let app = packaged().join("app");
    let work = tempfile::tempdir().unwrap();
    let lake = work.path().join("lake");
    let summary_path = work.path().join("summary.json");
    let result = hub2lake(
        &[
            "simulate",
            "--events",
            "400",
            "--partitions",
            "2",
            "--seal-at-end",
            "--no-progress",
            "--time-scale",
            "0.001",
            // What the template sets in Azure (infra/modules/function-app.bicep).
            "--set",
            "EVENTHUB_NAME=events",
            "--set",
            "EVENTHUB_CONSUMER_GROUP=hub2lake",
            "--set",
            "HUB2LAKE_SEAL_SCHEDULE=0 */5 * * * *",
            "--app",
        ],
        &[
            &app,
            Path::new("--lake"),
            &lake,
            Path::new("--summary-json"),
            &summary_path,
        ],
    );
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(
        result.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary_path).unwrap()).unwrap();
    assert_eq!(
        Path::new(summary["handler"].as_str().unwrap()),
        std::path::absolute(app.join("handler")).unwrap(),
        "the rehearsal ran the packaged handler"
    );
    assert_eq!(data_lines_in(&lake), 400, "every event landed once");
    assert!(
        files_under(&lake).iter().any(|p| p.ends_with("_manifest.json")),
        "the seal ran"
    );
}

#[test]
fn the_rehearsal_runs_the_folders_own_handler_not_the_one_beside_hub2lake() {
    // A packaged folder whose handler is not the real one: the rehearsal must fail.
    let work = tempfile::tempdir().unwrap();
    let app = work.path().join("app");
    copy_dir(&packaged().join("app"), &app);
    std::fs::write(app.join("handler"), "#!/bin/sh\necho 'not the handler' >&2\nexit 7\n").unwrap();
    std::fs::set_permissions(app.join("handler"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let lake = work.path().join("lake");
    let result = hub2lake(
        &[
            "simulate",
            "--events",
            "10",
            "--no-progress",
            "--set",
            "HUB2LAKE_SEAL_SCHEDULE=0 */5 * * * *",
            "--app",
        ],
        &[&app, Path::new("--lake"), &lake],
    );
    assert!(!result.status.success());
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("not the handler"), "{stderr}");

    // And a packaged folder without its handler is refused, not run with another one.
    std::fs::remove_file(app.join("handler")).unwrap();
    let result = hub2lake(
        &["simulate", "--events", "10", "--no-progress", "--app"],
        &[&app, Path::new("--lake"), &lake],
    );
    assert!(!result.status.success());
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("a packaged app must carry its handler"), "{stderr}");
}

#[test]
fn ingest_function_has_a_retry_policy_so_failed_batches_are_redelivered() {
    let text = std::fs::read_to_string(workspace_root().join("functions/ingest/function.json")).unwrap();
    let f: serde_json::Value = serde_json::from_str(&text).unwrap();
    let binding = &f["bindings"][0];
    assert_eq!(binding["type"], "eventHubTrigger");
    assert_eq!(binding["cardinality"], "many");
    assert_eq!(binding["dataType"], "string");
    assert!(
        f["retry"]["strategy"].is_string(),
        "without a retry policy the host checkpoints past failed batches"
    );
    assert_eq!(f["retry"]["maxRetryCount"], -1);
}

/// Runs `hub2lake <args> <paths>` from the repository root.
fn hub2lake(args: &[&str], paths: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hub2lake"))
        .args(args)
        .args(paths)
        .current_dir(workspace_root())
        .output()
        .unwrap()
}

/// The newest GLIBC_x.y in `objdump -T` (binutils).
fn objdump_newest_glibc(path: &Path) -> GlibcVersion {
    let out = Command::new("objdump")
        .arg("-T")
        .arg(path)
        .output()
        .expect("objdump (binutils) is needed to cross-check the ELF reader");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .filter_map(GlibcVersion::from_symbol_version)
        .max()
        .expect("objdump lists GLIBC versions")
}

fn replace_all(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let mut out = haystack.to_vec();
    let mut i = 0;
    while i + from.len() <= out.len() {
        if &out[i..i + from.len()] == from {
            out[i..i + from.len()].copy_from_slice(to);
            i += from.len();
        } else {
            i += 1;
        }
    }
    out
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// Lines in the lake's data objects (`*.jsonl.gz` outside the `_` folders).
fn data_lines_in(lake: &Path) -> usize {
    files_under(lake)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".jsonl.gz"))
        .filter(|p| {
            !p.strip_prefix(lake)
                .unwrap()
                .components()
                .any(|c| c.as_os_str().to_string_lossy().starts_with('_'))
        })
        .map(|p| {
            let mut text = String::new();
            flate2::read::MultiGzDecoder::new(std::fs::File::open(&p).unwrap())
                .read_to_string(&mut text)
                .unwrap();
            text.lines().filter(|l| !l.trim().is_empty()).count()
        })
        .sum()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The repository root, which holds host.json, functions/ and scripts/.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ sits in the workspace root")
        .to_path_buf()
}
