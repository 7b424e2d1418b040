//! The first-deploy checks hold on the real tree and bite on copies broken the way
//! a first `azd up` would meet them (the checks_bite.rs pattern).

mod common;

use common::{assert_clean, assert_reported, Sandbox};
use hub2lake_infra_check::{check_azd_alpha, check_first_deploy, check_flex_site, check_parameter_limits, repo_root};

#[test]
fn the_real_tree_passes_the_first_deploy_checks() {
    assert_clean("first-deploy checks", &check_first_deploy(&repo_root()));
}

#[test]
fn flex_check_catches_ftps_state_on_the_flex_site() {
    let sandbox = Sandbox::new();
    let rel = "infra/modules/function-site-flex.bicep";
    assert_clean("flex check on an intact copy", &check_flex_site(sandbox.root()));
    sandbox.replace(
        rel,
        "      minTlsVersion: '1.2'\n",
        "      minTlsVersion: '1.2'\n      ftpsState: 'Disabled'\n",
    );
    assert_reported(
        &check_flex_site(sandbox.root()),
        &[rel, "`ftpsState` on a Flex Consumption site", "FTPS not supported"],
    );
}

#[test]
fn flex_check_catches_other_deprecated_site_properties_in_any_case() {
    let sandbox = Sandbox::new();
    let rel = "infra/modules/function-site-flex.bicep";
    sandbox.replace(
        rel,
        "      minTlsVersion: '1.2'\n",
        "      minTlsVersion: '1.2'\n      use32BitWorkerProcess: false\n      LinuxFxVersion: 'custom'\n",
    );
    sandbox.replace(
        rel,
        "    httpsOnly: true\n",
        "    httpsOnly: true\n    alwaysOn: true\n",
    );
    let problems = check_flex_site(sandbox.root());
    assert_reported(&problems, &[rel, "`use32BitWorkerProcess`", "32-bit"]);
    assert_reported(&problems, &[rel, "`linuxFxVersion`"]);
    assert_reported(&problems, &[rel, "`alwaysOn`"]);
}

#[test]
fn flex_check_leaves_the_premium_site_its_ftps_state() {
    let sandbox = Sandbox::new();
    let premium = sandbox.read("infra/modules/function-site-premium.bicep");
    assert!(
        premium.contains("ftpsState: 'Disabled'"),
        "the Premium site keeps FTPS off"
    );
    assert_clean("flex check", &check_flex_site(sandbox.root()));
}

#[test]
fn flex_check_catches_a_deprecated_app_setting_on_the_flex_plan_only() {
    let sandbox = Sandbox::new();
    let rel = "infra/modules/function-app.bicep";
    // On the Premium side it is required; on the Flex side Flex rejects it.
    sandbox.replace(
        rel,
        "var flexOnlyAppSettings = {}",
        "var flexOnlyAppSettings = {\n  FUNCTIONS_WORKER_RUNTIME: 'custom'\n}",
    );
    assert_reported(
        &check_flex_site(sandbox.root()),
        &[rel, "`FUNCTIONS_WORKER_RUNTIME` on the Flex Consumption plan"],
    );
}

#[test]
fn flex_check_fails_when_there_is_no_flex_site_to_check() {
    let sandbox = Sandbox::new();
    sandbox.replace(
        "infra/modules/function-site-flex.bicep",
        "    functionAppConfig: {",
        "    functionAppConfiguration: {",
    );
    assert_reported(&check_flex_site(sandbox.root()), &["no Flex Consumption site"]);
}

#[test]
fn limits_check_catches_standard_retention_above_seven_days() {
    let sandbox = Sandbox::new();
    assert_clean(
        "limits check on an intact copy",
        &check_parameter_limits(sandbox.root()),
    );
    sandbox.replace(
        "infra/main.bicep",
        "@maxValue(7)\nparam eventHubMessageRetentionInDays",
        "@maxValue(90)\nparam eventHubMessageRetentionInDays",
    );
    assert_reported(
        &check_parameter_limits(sandbox.root()),
        &["infra/main.bicep", "`eventHubMessageRetentionInDays` accepts 8", "1-7"],
    );
}

#[test]
fn limits_check_catches_a_premium_capacity_arm_rejects() {
    let sandbox = Sandbox::new();
    sandbox.replace(
        "infra/main.bicep",
        "  8\n  16\n])\nparam eventHubPremiumProcessingUnits",
        "  8\n  12\n  16\n])\nparam eventHubPremiumProcessingUnits",
    );
    assert_reported(
        &check_parameter_limits(sandbox.root()),
        &["`eventHubPremiumProcessingUnits` allows 12", "one of 1, 2, 4, 8, 16"],
    );
}

#[test]
fn limits_check_catches_a_missing_bound_a_bad_default_and_a_dropped_parameter() {
    let sandbox = Sandbox::new();
    let rel = "infra/main.bicep";
    sandbox.replace(
        rel,
        "@maxValue(1000)\nparam flexMaximumInstanceCount",
        "param flexMaximumInstanceCount",
    );
    sandbox.replace(
        rel,
        "param logRetentionInDays int = 30",
        "param logRetentionInDays int = 7",
    );
    sandbox.replace(
        rel,
        "param eventHubPartitionCount int = 4",
        "param eventHubPartitions int = 4",
    );
    sandbox.replace(
        rel,
        "partitionCount: eventHubPartitionCount",
        "partitionCount: eventHubPartitions",
    );
    let problems = check_parameter_limits(sandbox.root());
    assert_reported(&problems, &["`flexMaximumInstanceCount` has no @maxValue bound"]);
    assert_reported(&problems, &["`logRetentionInDays` defaults to 7"]);
    assert_reported(&problems, &["`eventHubPartitionCount` is gone"]);
}

#[test]
fn alpha_check_catches_a_workflow_without_the_alpha_flag() {
    let sandbox = Sandbox::new();
    let rel = ".github/workflows/deploy.yml";
    assert_clean("alpha check on an intact copy", &check_azd_alpha(sandbox.root()));
    let text = sandbox.read(rel);
    let line = text
        .lines()
        .find(|l| l.contains("AZD_ALPHA_ENABLE_LANGUAGE_CUSTOM"))
        .expect("the deploy workflow enables the alpha feature")
        .to_string();
    sandbox.replace(rel, &format!("{line}\n"), "");
    assert_reported(
        &check_azd_alpha(sandbox.root()),
        &[rel, "without enabling it", "AZD_ALPHA_ENABLE_LANGUAGE_CUSTOM"],
    );
}

#[test]
fn alpha_check_catches_a_value_azd_reads_as_false_and_a_flag_outside_env() {
    let sandbox = Sandbox::new();
    let rel = ".github/workflows/deploy.yml";
    let text = sandbox.read(rel);
    let line = text
        .lines()
        .find(|l| l.contains("AZD_ALPHA_ENABLE_LANGUAGE_CUSTOM"))
        .unwrap()
        .to_string();
    let indent = &line[..line.len() - line.trim_start().len()];
    sandbox.replace(rel, &line, &format!("{indent}AZD_ALPHA_ENABLE_LANGUAGE_CUSTOM: 'on'"));
    assert_reported(&check_azd_alpha(sandbox.root()), &[rel, "strconv.ParseBool", "\"on\""]);

    sandbox.write(
        ".github/workflows/other.yml",
        "name: other\non: workflow_dispatch\njobs:\n  up:\n    runs-on: ubuntu-latest\n    steps:\n      - with:\n          AZD_ALPHA_ENABLE_LANGUAGE_CUSTOM: true\n        run: azd up --no-prompt\n",
    );
    assert_reported(
        &check_azd_alpha(sandbox.root()),
        &[".github/workflows/other.yml", "`env:` block"],
    );
}

#[test]
fn alpha_check_accepts_azd_config_set_and_catches_docs_that_run_azd_first() {
    let sandbox = Sandbox::new();
    sandbox.write(
        ".github/workflows/other.yml",
        "jobs:\n  up:\n    steps:\n      - run: azd config set alpha.language.custom on\n      - run: azd provision --no-prompt\n",
    );
    assert_clean(
        "a workflow that runs azd config set first",
        &check_azd_alpha(sandbox.root()),
    );

    let rel = "docs/deploy.md";
    let docs = sandbox.read(rel);
    let without: String = docs
        .lines()
        .filter(|l| !l.trim_start().starts_with("azd config set alpha.language.custom on"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(without, docs, "docs/deploy.md enables the alpha feature");
    sandbox.write(rel, &without);
    assert_reported(
        &check_azd_alpha(sandbox.root()),
        &[rel, "put `azd config set alpha.language.custom on` first"],
    );
}

/// The Premium app runs from `WEBSITE_RUN_FROM_PACKAGE = <deployment container>/<blob>`;
/// scripts/deploy-premium.sh must upload exactly that blob, and azd must not try its
/// zip deploy (refused while that setting is a URL) on an EP plan.
#[test]
fn the_premium_deploy_path_uploads_the_blob_the_app_runs_from() {
    let root = repo_root();
    let read = |rel: &str| std::fs::read_to_string(root.join(rel)).unwrap();
    let app = read("infra/modules/function-app.bicep");
    let main = read("infra/main.bicep");
    let script = read("scripts/deploy-premium.sh");
    let azure_yaml = read("azure.yaml");

    assert!(app.contains("WEBSITE_RUN_FROM_PACKAGE: '${deploymentContainerUrl}/${premiumPackageBlobName}'"));
    assert!(app.contains("param premiumPackageBlobName string = 'hub2lake-app.zip'"));
    assert!(script.contains("blob_name=hub2lake-app.zip"));
    assert!(script.contains("hub2lake package") || script.contains("-- package --out dist"));
    assert!(main.contains("deploymentContainerName: 'app-package'"));
    assert!(script.contains("--container-name app-package"));
    assert!(script.contains(r#"package_url="${DEPLOYMENT_CONTAINER_URL%/}/$blob_name""#));
    assert!(
        script.contains(r#"if [ "$runs_from" != "$package_url" ]"#),
        "it checks the app runs from that blob"
    );
    assert!(azure_yaml.contains("predeploy:") && azure_yaml.contains("scripts/deploy-premium.sh"));
}

/// azure.yaml's predeploy hook, run as azd runs it (sh), lets Flex through and stops
/// an Elastic Premium deploy naming the script that does it.
#[test]
fn the_predeploy_hook_stops_azd_deploy_on_premium_only() {
    let azure_yaml = std::fs::read_to_string(repo_root().join("azure.yaml")).unwrap();
    let lines: Vec<&str> = azure_yaml.lines().collect();
    let hook = lines
        .iter()
        .position(|l| l.trim() == "predeploy:")
        .expect("a predeploy hook");
    let run = hook
        + lines[hook..]
            .iter()
            .position(|l| l.trim() == "run: |")
            .expect("an inline script");
    let indent = |l: &str| l.len() - l.trim_start().len();
    let body_indent = indent(lines[run + 1]);
    let script: String = lines[run + 1..]
        .iter()
        .take_while(|l| l.trim().is_empty() || indent(l) >= body_indent)
        .map(|l| format!("{}\n", l.get(body_indent..).unwrap_or("")))
        .collect();
    let run_with = |sku: Option<&str>| {
        let mut cmd = std::process::Command::new("sh");
        cmd.arg("-c").arg(&script).env_remove("AZURE_FUNCTION_PLAN_SKU");
        if let Some(sku) = sku {
            cmd.env("AZURE_FUNCTION_PLAN_SKU", sku);
        }
        cmd.output().unwrap()
    };
    assert!(run_with(Some("FC1")).status.success());
    assert!(run_with(None).status.success(), "FC1 is the default");
    let premium = run_with(Some("EP1"));
    assert!(!premium.status.success());
    assert!(String::from_utf8_lossy(&premium.stderr).contains("scripts/deploy-premium.sh"));
}
