//! `hub2lake package` builds the folder and zip the Functions host runs.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

#[test]
fn package_builds_the_app_folder_and_a_zip_that_keeps_the_exec_bit() {
    let out = tempfile::tempdir().unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_hub2lake"))
        .args(["package", "--source"])
        .arg(workspace_root())
        .arg("--handler")
        .arg(hub2lake_testkit::handler_exe())
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let app = out.path().join("app");
    for f in ["host.json", "ingest/function.json", "seal/function.json", "handler"] {
        assert!(app.join(f).is_file(), "{f} missing");
    }
    let mode = std::fs::metadata(app.join("handler")).unwrap().permissions().mode();
    assert_eq!(mode & 0o111, 0o111, "handler must be executable");
    let host: serde_json::Value = serde_json::from_slice(&std::fs::read(app.join("host.json")).unwrap()).unwrap();
    assert_eq!(host["customHandler"]["description"]["defaultExecutablePath"], "handler");

    let zip_file = std::fs::File::open(out.path().join("hub2lake-app.zip")).unwrap();
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
    assert_eq!(bytes, std::fs::read(hub2lake_testkit::handler_exe()).unwrap());
}

#[test]
fn package_without_a_built_handler_says_how_to_build_it() {
    let out = tempfile::tempdir().unwrap();
    let result = Command::new(env!("CARGO_BIN_EXE_hub2lake"))
        .args(["package", "--source"])
        .arg(workspace_root())
        .args(["--handler", "/nonexistent/handler", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    assert!(!result.status.success());
    assert!(String::from_utf8_lossy(&result.stderr).contains("cargo build --release --bin handler"));
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

/// The repository root, which holds host.json and functions/.
fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ sits in the workspace root")
        .to_path_buf()
}
