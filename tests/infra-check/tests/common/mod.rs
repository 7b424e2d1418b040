//! A throw-away copy of `infra/`, `azure.yaml`, the workflows and docs/deploy.md plus small, fixed Functions app files, for
//! breaking things on purpose and checking that the checks notice.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

use hub2lake_infra_check::{repo_root, report, Problem};

pub const HOST_JSON: &str = r#"{
  "version": "2.0",
  "extensionBundle": { "id": "Microsoft.Azure.Functions.ExtensionBundle", "version": "[4.*, 5.0.0)" },
  "customHandler": { "description": { "defaultExecutablePath": "handler" } }
}
"#;

pub const INGEST_FUNCTION_JSON: &str = r#"{
  "bindings": [{
    "type": "eventHubTrigger", "direction": "in", "name": "events",
    "eventHubName": "%EVENTHUB_NAME%", "consumerGroup": "%EVENTHUB_CONSUMER_GROUP%",
    "connection": "EventHubConnection", "cardinality": "many", "dataType": "string"
  }]
}
"#;

pub const SEAL_FUNCTION_JSON: &str = r#"{
  "bindings": [{ "type": "timerTrigger", "direction": "in", "name": "timer",
                 "schedule": "%HUB2LAKE_SEAL_SCHEDULE%" }]
}
"#;

pub const CONFIG_RS: &str = r#"
pub const SETTINGS: &[&str] = &[
    "HUB2LAKE_LAKE_URL",
    "HUB2LAKE_SEAL_SCHEDULE",
    "HUB2LAKE_COMPRESSION",
    "HUB2LAKE_LOG_FORMAT",
];
"#;

pub const LOG_SETTINGS_RS: &str = r#"
pub const NAMESPACE: &str = "HUB2LAKE_LOG_EVENTHUB_NAMESPACE";
pub const NAME: &str = "HUB2LAKE_LOG_EVENTHUB_NAME";
"#;

pub struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    /// A copy of the real `infra/` and `azure.yaml` with fixed app files beside them.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        copy_dir(&repo_root().join("infra"), &dir.path().join("infra"));
        fs::copy(repo_root().join("azure.yaml"), dir.path().join("azure.yaml")).expect("azure.yaml");
        copy_dir(
            &repo_root().join(".github/workflows"),
            &dir.path().join(".github/workflows"),
        );
        fs::create_dir_all(dir.path().join("docs")).unwrap();
        fs::copy(repo_root().join("docs/deploy.md"), dir.path().join("docs/deploy.md")).expect("docs/deploy.md");
        let sandbox = Self { dir };
        sandbox.write("host.json", HOST_JSON);
        sandbox.write("functions/ingest/function.json", INGEST_FUNCTION_JSON);
        sandbox.write("functions/seal/function.json", SEAL_FUNCTION_JSON);
        sandbox.write("handler/src/config.rs", CONFIG_RS);
        sandbox.write("handler/src/telemetry/settings.rs", LOG_SETTINGS_RS);
        sandbox
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    pub fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    pub fn write(&self, rel: &str, contents: &str) {
        let path = self.path(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, contents).unwrap();
    }

    /// Replaces the one occurrence of `from` in `rel` (panics if it is not there
    /// exactly once, so a test cannot silently stop breaking anything).
    pub fn replace(&self, rel: &str, from: &str, to: &str) {
        let text = self.read(rel);
        let count = text.matches(from).count();
        assert_eq!(count, 1, "{rel} should contain {from:?} exactly once, found {count}");
        self.write(rel, &text.replacen(from, to, 1));
    }

    /// Removes the text from `start` up to (not including) `end`.
    pub fn cut(&self, rel: &str, start: &str, end: &str) {
        let text = self.read(rel);
        let a = text.find(start).unwrap_or_else(|| panic!("{rel} has no {start:?}"));
        let b = a + text[a..]
            .find(end)
            .unwrap_or_else(|| panic!("{rel} has no {end:?} after {start:?}"));
        self.write(rel, &format!("{}{}", &text[..a], &text[b..]));
    }
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Asserts the check found nothing.
pub fn assert_clean(what: &str, problems: &[Problem]) {
    assert!(problems.is_empty(), "{what} found problems:\n{}", report(problems));
}

/// Asserts some problem mentions every one of `needles`, and returns it.
pub fn assert_reported<'a>(problems: &'a [Problem], needles: &[&str]) -> &'a Problem {
    problems
        .iter()
        .find(|p| {
            let text = p.to_string();
            needles.iter().all(|n| text.contains(n))
        })
        .unwrap_or_else(|| {
            panic!(
                "expected a problem mentioning {needles:?}, got:\n{}",
                if problems.is_empty() {
                    "  (none)".to_string()
                } else {
                    report(problems)
                }
            )
        })
}
